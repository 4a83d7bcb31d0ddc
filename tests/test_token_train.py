"""Token-MDP training under lag: trained policies against the exact DP targets, lag semantics, seeds, errors."""

import numpy as np
import pytest
import torch

import theory
from sims import token_mdp as tm
from sims import token_train as tt

# A small tree with a structured reward; pi_0 = mu of the one-step tests: Dirichlet(10) rows, not uniform.
TREE = dict(
    V=3, T=3, reward="partial_credit", correct=(0, 1, 2), init="dirichlet", init_seed=3, init_concentration=10.0
)
# Plain gradient descent on exact expectations (population), one outer step on the fixed behaviour pi_0.
# Checked on this tree: the conditionals reach both targets to <= 1e-8 (lr 3, k 2000). Not Adam: at a
# constant lr it can settle into a cycle near the optimum (5e-4 off for k1 at lr 0.05, k 3000).
FIT = dict(population=True, lag=0, steps=1, inner_steps=2000, optimizer="sgd", lr=3.0, seeds=(0,))


def _fit(objective, beta, level):
    cfg = tt.TokenSimConfig(**TREE, **FIT, objective=objective, obj_params={"beta": beta}, level=level)
    return cfg, tt.simulate(cfg)


def _dp_targets(cfg, state_target):
    """Sequence- and token-level targets of pi_0 from sims.token_mdp (leaf distributions)."""
    tree, mu = cfg.tree, cfg.initial_conditionals()
    adv = cfg.make_objective().population_advantage(tm.sequence_probs(mu), cfg.rewards())
    p_seq = tm.sequence_level_target(mu, adv, tree, state_target)
    p_tok = tm.sequence_probs(tm.token_level_target(mu, adv, tree, state_target))
    return p_seq, p_tok, adv


# ---------------------------------------------------------------- 1, 2: trained policy = DP target


def test_regression_fits_its_level_target_and_the_levels_differ():
    beta = 0.5  # opmd's mean baseline: the positive regime of the Lambert target at both levels
    cfg_seq, res_seq = _fit("opmd", beta, "sequence")
    cfg_tok, res_tok = _fit("opmd", beta, "token")
    p_seq, p_tok, adv = _dp_targets(cfg_seq, tm.lambert_state_target(beta))

    # the two targets differ clearly, so fitting one is not fitting the other
    gap = float(theory.kl(p_seq, p_tok))
    assert gap > 1e-2
    assert np.abs(p_seq - p_tok).max() > 1e-2

    fit_seq, fit_tok = res_seq.final_leaf_probs()[0], res_tok.final_leaf_probs()[0]
    np.testing.assert_allclose(fit_seq, p_seq, atol=1e-7)
    np.testing.assert_allclose(fit_tok, p_tok, atol=1e-7)
    # the token level also matches per prefix, in sims.token_mdp's conditional format
    cond_tok = tm.token_level_target(cfg_tok.initial_conditionals(), adv, cfg_tok.tree, beta=beta)
    for got, want in zip(res_tok.final_conditionals(0), cond_tok):
        np.testing.assert_allclose(got, want, atol=1e-7)

    # the recorded metrics agree: ~0 to the own level's target, and the gap between the levels
    for res in (res_seq, res_tok):
        assert res.target_steps.tolist() == [0]
        assert res.metrics["kl_target"][0, 0] < 1e-10
        np.testing.assert_allclose(res.metrics["kl_seq_tok"][0, 0], gap, rtol=1e-6)


def test_k1_levels_coincide_with_the_linear_tilt():
    beta = 1.5  # > the reward range 1: every A + beta > 0, the tilt is not thresholded
    cfg, res_seq = _fit("reinforce_k1", beta, "sequence")
    _, res_tok = _fit("reinforce_k1", beta, "token")
    p_seq, p_tok, adv = _dp_targets(cfg, tm.linear_state_target(beta))
    mu = tm.sequence_probs(cfg.initial_conditionals())
    tilt = mu * (adv + beta) / beta  # by hand: E_mu[A] = 0 for the mean baseline, so E_mu[A + beta] = beta
    np.testing.assert_allclose(p_seq, tilt, atol=1e-12)
    np.testing.assert_allclose(p_tok, tilt, atol=1e-12)
    assert np.abs(tilt - mu).max() > 5e-3  # the tilt moved away from mu (the check is not vacuous)
    np.testing.assert_allclose(res_seq.final_leaf_probs()[0], tilt, atol=1e-7)
    np.testing.assert_allclose(res_tok.final_leaf_probs()[0], tilt, atol=1e-7)
    assert res_seq.metrics["kl_seq_tok"][0, 0] < 1e-12


@pytest.mark.parametrize(
    "objective, beta, levels_coincide",
    [
        ("awr", 1.0, True),  # Gibbs: the per-token weighted CE tilts by E_mu[e^{A/beta} | s, a] (soft Q)
        ("tpo", 1.0, True),
        ("reinforce_k3", 1.5, True),  # same linear tilt as k1
        ("reinforce_k2", 0.5, False),  # Lambert, plain Q: the levels differ
        ("astar_po", 0.5, False),  # the regression anchored at the reference (= behaviour here)
        ("opmd_lme", 0.5, False),  # Lambert at the boundary (eta = 0) at sequence level
    ],
)
def test_every_supported_family_fits_its_recorded_target(objective, beta, levels_coincide):
    for level in tt.LEVELS:
        cfg, res = _fit(objective, beta, level)
        assert res.metrics["kl_target"][0, 0] < 1e-9, level
        gap = res.metrics["kl_seq_tok"][0, 0]
        assert gap < 1e-12 if levels_coincide else gap > 1e-3


# ---------------------------------------------------------------- 3: lag semantics and determinism


def _manual_population_sgd(cfg):
    """Independent route: leaf log-probs by broadcasting over depths, the zoo loss, SGD, pi_{t-L} by hand."""
    obj, r, L, lr = cfg.make_objective(), cfg.rewards(), cfg.lag, cfg.lr

    def leaf_logp(logits):
        lp = torch.zeros(1, dtype=torch.float64)
        for lg in logits:
            lp = (lp[:, None] + torch.log_softmax(lg, -1)).reshape(-1)
        return lp

    hist = [[torch.tensor(np.log(c)) for c in cfg.initial_conditionals()]]
    for t in range(cfg.steps):
        lp_mu = leaf_logp(hist[max(t - L, 0)]).detach()
        mu = lp_mu.exp()
        adv = torch.as_tensor(obj.population_advantage((mu / mu.sum()).numpy(), r))
        params = [x.clone().requires_grad_(True) for x in hist[t]]
        lp = leaf_logp(params)
        loss = (mu * obj.loss(lp[:, None], lp_mu[:, None], adv, None)).sum()  # sequence loss, mean = E_mu
        grads = torch.autograd.grad(loss, params)
        hist.append([x.detach() - lr * g for x, g in zip(params, grads)])
    return np.stack([leaf_logp(h).exp().numpy() for h in hist])


@pytest.mark.parametrize("lag", [0, 1, 2])
def test_lag_uses_the_policy_from_lag_steps_ago(lag):
    cfg = tt.TokenSimConfig(
        **TREE, objective="opmd", obj_params={"beta": 0.5}, population=True, lag=lag, steps=3,
        optimizer="sgd", lr=1.0, seeds=(0,), record_policies=True, track_targets=False,
    )
    res = tt.simulate(cfg)
    manual = _manual_population_sgd(cfg)  # (steps + 1, V**T)
    np.testing.assert_allclose(res.policies[:, 0], manual, rtol=1e-10, atol=1e-13)
    assert np.abs(manual[-1] - manual[0]).max() > 1e-2  # the policy moved: lag matters
    for t in range(cfg.steps):
        np.testing.assert_array_equal(res.behaviours[t], res.policies[max(t - lag, 0)])
    assert res.behaviour_step.tolist() == [max(t - lag, 0) for t in range(3)]
    if lag == 0:  # on-policy: the data come from the current policy
        np.testing.assert_array_equal(res.metrics["kl_mu_pi"], 0.0)
    else:
        assert res.metrics["kl_mu_pi"][0, lag:].min() > 0


def test_lag_changes_sampled_runs_only_after_the_policy_moves():
    base = dict(V=3, T=3, objective="opmd", group_size=8, steps=5, seeds=(1, 2), track_targets=False)
    r0 = tt.simulate(tt.TokenSimConfig(**base, lag=0))
    r3 = tt.simulate(tt.TokenSimConfig(**base, lag=3))
    # step 0 samples from pi_0 in both; then lag 3 keeps sampling from pi_0 while lag 0 follows pi_t
    np.testing.assert_array_equal(r0.metrics["reward"][:, :2], r3.metrics["reward"][:, :2])
    assert not np.array_equal(r0.final_logits, r3.final_logits)


def test_deterministic_and_seeds_independent():
    base = dict(V=3, T=3, objective="grpo", level="token", lag=2, group_size=8, steps=30, track_targets=False)
    a = tt.simulate(tt.TokenSimConfig(**base, seeds=(3, 5)))
    b = tt.simulate(tt.TokenSimConfig(**base, seeds=(3, 5)))
    for k in a.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k])
    np.testing.assert_array_equal(a.final_logits, b.final_logits)
    alone = tt.simulate(tt.TokenSimConfig(**base, seeds=(5,)))
    more = tt.simulate(tt.TokenSimConfig(**base, seeds=(7, 5, 11)))
    for k in a.metrics:
        np.testing.assert_allclose(alone.metrics[k][0], a.metrics[k][1], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(more.metrics[k][1], a.metrics[k][1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(alone.final_logits[0], a.final_logits[1], rtol=1e-12, atol=1e-14)
    assert not np.allclose(a.final_logits[0], a.final_logits[1])  # different seeds, different runs


def test_aggregate_weight_matches_the_zoo_aggregation():
    torch.manual_seed(0)
    for name in ("grpo", "dr_grpo", "opmd", "reinforce_k1"):
        obj = theory.objectives.make_objective(name)
        for level in tt.LEVELS:
            T_eff = 1 if level == "sequence" else 4
            loss = torch.rand(6, T_eff, dtype=torch.float64)  # 6 samples of one seed
            if obj.level == "sequence" and level == "sequence":
                loss = loss[:, 0]
            want = float(obj.aggregate(loss))
            got = tt._aggregate_weight(obj, level, 4) / 6 * float(loss.sum())
            assert got == pytest.approx(want, rel=1e-12), (name, level)


# ---------------------------------------------------------------- 4: validation


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(lag=-1), "lag must be >= 0"),
        (dict(objective="nope"), "unknown objective 'nope'; valid objectives: .*opmd"),
        (dict(V=4, T=7, population=True), "POPULATION_MAX_LEAVES"),
        (dict(objective="grpo", group_size=1), "group_size=1.*G >= 2"),
        (dict(objective="opmd_loo", group_size=1), "set group_size >= 2 or population=True"),
        (dict(level="char"), "unknown level 'char'"),
        (dict(objective="gspo", level="sequence"), "gspo at level='sequence'"),
        (dict(objective="ppo", track_targets=True), "track_targets=True.*no closed-form state target"),
        (dict(objective="reinforce_k1", track_targets=True), "beta = 0.1 <= the reward range"),
        (dict(objective="m2po", seeds=(0, 1)), "m2po"),
        (dict(seeds=(1, 1)), "seeds must be distinct"),
        (dict(seeds=()), "seeds is empty"),
        (dict(correct=(0, 1)), "correct must have T = 3"),
        (dict(correct=(0, 1, 3)), r"correct tokens must be integers in \[0, 2\]"),
        (dict(obj_params={"temperature": 1.0}), "has no parameter"),
        (dict(optimizer="rmsprop"), "unknown optimizer"),
        (dict(lr=0.0), "lr must be"),
        (dict(inner_steps=0), "inner_steps must be >= 1"),
        (dict(init="zeros"), "unknown init"),
        (dict(V=2, T=17), "SIM_MAX_LEAVES"),
    ],
)
def test_invalid_configs_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        tt.TokenSimConfig(**{**dict(V=3, T=3), **overrides})


def test_supported_targets_and_defaults():
    assert tt.supports_target("opmd") and tt.supports_target("oapl") and tt.supports_target("reinforce_k2")
    assert tt.supports_target("awr") and tt.supports_target("tpo")
    assert not tt.supports_target("reinforce_k1")  # published beta 0.1 < the reward range
    assert tt.supports_target(theory.objectives.make_objective("reinforce_k1", beta=1.5))
    assert not tt.supports_target(theory.objectives.make_objective("awr", max_weight=20.0))
    for name in ("ppo", "grpo", "cispo", "pg", "asymre", "topr", "sapo"):
        assert not tt.supports_target(name), name
    assert tt.TokenSimConfig(objective="opmd").tracks_targets
    assert not tt.TokenSimConfig(objective="grpo").tracks_targets  # unsupported: off, not an error
    assert not tt.TokenSimConfig(objective="opmd", V=4, T=7).tracks_targets  # 16384 leaves: off by default
    res = tt.simulate(tt.TokenSimConfig(objective="grpo", steps=2, seeds=(0,)))
    assert set(res.metrics) == {"reward", "entropy", "kl_mu_pi", "kl_init"}  # absent, never NaN


def test_diverging_step_size_raises():
    # the regression's gradient grows with the log-ratio: GD at lr 20 on a fixed mu blows up (checked)
    cfg = tt.TokenSimConfig(V=3, T=3, objective="opmd", obj_params={"beta": 0.5}, population=True,
                            optimizer="sgd", lr=20.0, steps=1, inner_steps=1000, seeds=(0,), track_targets=False)
    with pytest.raises(ValueError, match="diverged.*lower lr"):
        tt.simulate(cfg)


# ---------------------------------------------------------------- 5: what lag does


def test_larger_lag_larger_off_policyness_and_slower_progress():
    # sampled groups (G = 8), Adam at lr 0.05: KL(mu_t || pi_t) grows with the lag in every seed (checked
    # for 6 seeds and both levels); GRPO's reward after 60 steps falls with lag 8 in every seed
    # (about 0.70 against 0.94 at lag 0 here)
    seeds = tuple(range(4))
    kl, rew = {}, {}
    for lag in (0, 1, 4, 8):
        res = tt.simulate(tt.TokenSimConfig(V=3, T=3, objective="grpo", lag=lag, group_size=8, steps=60,
                                            seeds=seeds, track_targets=False))
        kl[lag], rew[lag] = res.metrics["kl_mu_pi"].mean(1), res.metrics["reward"][:, -10:].mean(1)
    np.testing.assert_array_equal(kl[0], 0.0)
    assert np.all(kl[1] > 0) and np.all(kl[4] > 2 * kl[1]) and np.all(kl[8] > 1.5 * kl[4])
    assert np.all(rew[8] < rew[0] - 0.1)


# ---------------------------------------------------------------- results on disk, progress


def test_save_load_roundtrip_and_progress(tmp_path):
    cfg = tt.TokenSimConfig.smoke(objective="opmd", level="token", lag=1, steps=6, target_every=3,
                                  record_policies=True, obj_params={"beta": 0.5})
    ticks = []
    res = tt.simulate(cfg, progress=ticks.append)
    assert ticks == [1] * 6
    assert res.target_steps.tolist() == [0, 3] and res.metrics["kl_target"].shape == (4, 2)
    assert res.metrics["reward"].shape == (4, 6) and res.policies.shape == (7, 4, 27)
    npz, js = tt.save_results(tmp_path / "run", res)
    assert npz.exists() and js.exists()
    back = tt.load_results(tmp_path / "run")
    assert back.config == cfg
    for k in res.metrics:
        np.testing.assert_array_equal(back.metrics[k], res.metrics[k])
    np.testing.assert_array_equal(back.final_logits, res.final_logits)
    np.testing.assert_array_equal(back.policies, res.policies)
    np.testing.assert_allclose(back.final_leaf_probs(), res.policies[-1], rtol=1e-12)
