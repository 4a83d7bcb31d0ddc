"""verl 0.9.1's own advantage estimators in the zoo (theory.advantages, theory.zoo_verl_adv).

Two kinds of checks: the zoo's group form equals verl's function on random batches
with uid grouping (skipped without verl), and the population forms are what they are
(hand values, the finite-G conditional form tending to them, an independent route).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from theory.advantages import (
    ADVANTAGES,
    BATCH_COUPLED,
    conditional_group_advantage,
    group_advantage,
    population_advantage,
)
from theory.flow import logit_flow
from theory.objectives import make_objective, objective_spec
from theory.zoo_verl_adv import SPECS

VERL_NAMES = ("remax", "reinforce_plus_plus", "reinforce_plus_plus_baseline", "opo", "gdpo", "grpo_passk",
              "optimal_token_baseline", "gpg")
LENGTHS = {"opo", "reinforce_plus_plus", "reinforce_plus_plus_baseline", "gdpo"}


@pytest.fixture(scope="module")
def core():
    pytest.importorskip("verl", reason='verl is not installed: pip install torch==2.13.0 -e ".[verl]"')
    from verl.trainer.ppo import core_algos

    return core_algos


def batch(seed, sizes, T=6, equal_lengths=False):
    """A verl batch: outcome rewards at each response's last token, uids shuffled, lengths ragged (or all T)."""
    g = torch.Generator().manual_seed(seed)
    uid = np.concatenate([[f"p{k}"] * n for k, n in enumerate(sizes)]).astype(object)
    B = len(uid)
    uid = uid[torch.randperm(B, generator=g).numpy()]
    lens = torch.full((B,), T) if equal_lengths else torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lens[:, None]).float()
    score = torch.randint(0, 5, (B,), generator=g).float() / 4
    tlr = torch.zeros(B, T)
    tlr[torch.arange(B), lens - 1] = score
    return tlr, mask, uid, score, lens


def grouped(uid, *xs):
    """Rows of each uid stacked as (B_prompts, G) (equal group sizes), plus the row index of each entry."""
    keys = sorted(set(uid))
    rows = np.stack([np.flatnonzero(uid == k) for k in keys])
    return rows, [x[torch.as_tensor(rows)] for x in xs]


def scatter(rows, adv_bg, B):
    out = torch.zeros(B, dtype=adv_bg.dtype)
    out[torch.as_tensor(rows.reshape(-1))] = adv_bg.reshape(-1)
    return out


def assert_tokens(adv_verl, adv_zoo, mask, atol=1e-6):
    """verl's (B, T) advantage carries the zoo's per-sample one on every response token, 0 elsewhere."""
    want = adv_zoo.double()[:, None] * mask.double()
    assert torch.allclose(adv_verl.double(), want, atol=atol), (adv_verl, want)


# ---------------------------------------------------------------------------
# group forms against verl's functions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_per_group_estimators_equal_verls_on_ragged_groups(core, seed):
    """opo, grpo_passk and remax group by uid: ragged group sizes (>= 2) and ragged lengths."""
    tlr, mask, uid, score, lens = batch(seed, sizes=(4, 2, 3, 5, 4))
    B = len(uid)
    greedy = {k: float(i) / 3 for i, k in enumerate(sorted(set(uid)))}  # the greedy completion's reward per prompt
    base = torch.tensor([greedy[u] for u in uid])
    got = {
        "opo": core.compute_opo_outcome_advantage(tlr, mask, uid)[0],
        "grpo_passk": core.compute_grpo_passk_outcome_advantage(tlr, mask, uid, config={"norm_adv_by_std_in_grpo": True})[0],
        "remax": core.compute_remax_outcome_advantage(tlr, base, mask)[0],
    }
    for name, adv in got.items():
        zoo = torch.zeros(B, dtype=torch.float64)
        for u in set(uid):
            rows = np.flatnonzero(uid == u)
            kw = {"opo": {"lengths": lens[rows].double()}, "grpo_passk": {}, "remax": {"baseline": greedy[u]}}[name]
            zoo[rows] = group_advantage(name, score[rows].double(), **kw)
        assert_tokens(adv, zoo, mask)


@pytest.mark.parametrize("seed", range(3))
def test_batch_coupled_estimators_equal_verls(core, seed):
    """The whitened estimators and gpg on a batch of equal group sizes (the zoo's (B, G)), ragged lengths."""
    tlr, mask, uid, score, lens = batch(seed, sizes=(4, 4, 4, 4))
    rows, (s, L) = grouped(uid, score.double(), lens.double())
    cfg = {"gamma": 1.0}
    from verl.trainer.config import AlgoConfig

    got = {
        "reinforce_plus_plus": core.compute_reinforce_plus_plus_outcome_advantage(tlr, mask, config=AlgoConfig())[0],
        "reinforce_plus_plus_baseline": core.compute_reinforce_plus_plus_baseline_outcome_advantage(tlr, mask, uid)[0],
        "gdpo": core.compute_gdpo_outcome_advantage(tlr, mask, uid)[0],
        "gpg": core.compute_gpg_outcome_advantage(tlr, mask, uid)[0],
    }
    assert AlgoConfig().gamma == cfg["gamma"]
    for name, adv in got.items():
        kw = {"lengths": L} if name in LENGTHS else {}
        zoo = scatter(rows, group_advantage(name, s, **kw), len(uid))
        assert_tokens(adv, zoo, mask)
        if name in LENGTHS:  # token weighting matters: 'equal' lengths give another answer on this batch
            eq = scatter(rows, group_advantage(name, s, lengths="equal"), len(uid))
            assert not torch.allclose(eq, zoo, atol=1e-3)


def test_gdpo_with_several_components_equals_verls(core):
    """Two reward components (weights 1 and 2) from non_tensor_batch, as verl's trainer passes them."""
    from omegaconf import OmegaConf

    tlr, mask, uid, score, lens = batch(5, sizes=(3, 3, 3, 3, 3))
    B, P = len(uid), 2
    g = np.random.default_rng(5)
    comps = {"fmt": g.integers(0, 2, B).astype(np.float32), "acc": (g.integers(0, 5, B) / 4).astype(np.float32)}
    cfg = OmegaConf.create({"gdpo_reward_keys": ["fmt", "acc"], "gdpo_reward_weights": [1.0, 2.0]})
    bt = {"prompts": torch.zeros(B, P, dtype=torch.long), "attention_mask": torch.cat([torch.ones(B, P), mask], 1).long()}
    adv, _ = core.compute_gdpo_outcome_advantage(tlr, mask, uid, config=cfg, non_tensor_batch=comps, batch=bt)
    c = torch.stack([torch.as_tensor(comps[k]).double() for k in ("fmt", "acc")])  # (C, B)
    rows, (L,) = grouped(uid, lens.double())
    zoo = group_advantage("gdpo", score.double()[torch.as_tensor(rows)], lengths=L,
                          components=c[:, torch.as_tensor(rows)], weights=[1.0, 2.0])
    assert_tokens(adv, scatter(rows, zoo, B), mask, atol=2e-6)  # verl computes the components in float32


@pytest.mark.parametrize("fn", ["compute_optimal_token_baseline_advantage",
                                "compute_multi_turn_optimal_token_baseline_advantage"])
def test_optimal_token_baseline_equals_verls_at_every_token(core, fn):
    """Equal lengths: at token t verl's baseline is the zoo's with W_i = sum_{j<=t} (1 - 2 pi_j + sum pi^2)."""
    tlr, mask, uid, score, lens = batch(2, sizes=(4, 3, 5, 1), T=5, equal_lengths=True)
    g = torch.Generator().manual_seed(3)
    old = -torch.rand(mask.shape, generator=g, dtype=torch.float64) * 3
    pi = old.exp()  # sum_v pi_v^2 of a distribution with pi_y = pi lies in [pi^2, pi^2 + (1 - pi)^2]
    spi2 = pi**2 + torch.rand(mask.shape, generator=g, dtype=torch.float64) * (1 - pi) ** 2
    adv, _ = getattr(core, fn)(tlr.double(), mask.double(), uid, old, spi2)
    W = ((1 - 2 * old.exp() + spi2) * mask).cumsum(-1)
    for u in set(uid):
        rows = np.flatnonzero(uid == u)
        for t in range(mask.shape[1]):
            zoo = group_advantage("optimal_token_baseline", score[rows].double(), score_norms=W[rows, t])
            assert torch.allclose(adv[rows, t], zoo, atol=1e-6), (fn, u, t)


def test_vectorized_variants_are_the_zoos_grpo_and_loo(core):
    """verl's grpo_vectorized / rloo_vectorized are the zoo's grpo / loo on groups of two or more."""
    tlr, mask, uid, score, lens = batch(7, sizes=(4, 2, 3, 5))
    pairs = {"grpo_vectorized": ("grpo", {"eps": 1e-6}), "rloo_vectorized": ("loo", {})}
    for verl_name, (zoo_name, kw) in pairs.items():
        adv, _ = core.get_adv_estimator_fn(verl_name)(token_level_rewards=tlr, response_mask=mask, index=uid)
        zoo = torch.zeros(len(uid), dtype=torch.float64)
        for u in set(uid):
            rows = np.flatnonzero(uid == u)
            zoo[rows] = group_advantage(zoo_name, score[rows].double(), **kw)
        assert_tokens(adv, zoo, mask)


def test_verl_singleton_groups(core):
    """A prompt with one completion: rloo keeps its reward, rloo_vectorized zeroes it, grpo divides by 1 + eps,
    otb keeps it; the zoo's pair estimators refuse G = 1 instead of picking one of these conventions."""
    tlr = torch.tensor([[0.0, 0.75]])
    mask = torch.ones(1, 2)
    uid = np.array(["a"], dtype=object)
    assert core.compute_rloo_outcome_advantage(tlr, mask, uid)[0][0, 0] == 0.75
    assert core.compute_rloo_vectorized_outcome_advantage(tlr, mask, uid)[0][0, 0] == 0.0
    assert torch.isclose(core.compute_grpo_outcome_advantage(tlr, mask, uid)[0][0, 0], torch.tensor(0.75 / (1 + 1e-6)))
    otb = core.compute_optimal_token_baseline_advantage(tlr, mask, uid, torch.zeros(1, 2), torch.ones(1, 2))[0]
    assert torch.allclose(otb, torch.tensor([[0.75, 0.75]]))
    assert group_advantage("optimal_token_baseline", [0.75], score_norms=[1.0]).item() == 0.75
    for name in ("loo", "grpo", "opo", "gpg", "grpo_passk"):
        kw = {"lengths": "equal"} if name in LENGTHS else {}
        with pytest.raises(ValueError, match="G >= 2"):
            group_advantage(name, [0.75], **kw)


def test_recipes_name_verls_estimators(core):
    for spec in SPECS:
        assert spec.verl.adv_estimator in core.ADV_ESTIMATOR_REGISTRY, spec.name
        assert spec.verl.loss_mode in core.POLICY_LOSS_REGISTRY, spec.name


# ---------------------------------------------------------------------------
# population forms
# ---------------------------------------------------------------------------

MU, R, L3 = np.array([0.5, 0.3, 0.2]), np.array([1.0, 0.0, 0.5]), np.array([3.0, 1.0, 2.0])


def test_population_hand_values():
    # remax: the greedy arm is arm 0 (reward 1)
    assert np.allclose(population_advantage("remax", MU, R), [0.0, -1.0, -0.5])
    # a tie in mu takes the first arm (numpy.argmax)
    assert np.allclose(population_advantage("remax", [0.4, 0.4, 0.2], [0.0, 1.0, 0.0]), [0.0, 1.0, 0.0])
    # opo: V = E[L r]/E[L] = (1.5 + 0.2)/2.2
    assert np.allclose(population_advantage("opo", MU, R, lengths=L3), R - 1.7 / 2.2)
    assert np.allclose(population_advantage("opo", MU, R, lengths="equal"), R - 0.6)
    # optimal token baseline: w = 1 - 2 mu + 0.38 = (0.38, 0.78, 0.98); V = 0.288 / 0.62
    assert np.allclose(population_advantage("optimal_token_baseline", MU, R), R - 0.288 / 0.62)
    # gpg: P(r != 0) = 0.7, E r = 0.6
    assert np.allclose(population_advantage("gpg", MU, R, f_norm=2.0), (R - 0.6) / 0.7 / 2.0)
    assert np.allclose(population_advantage("gpg", [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]), 0.0)
    # pass@k: only an arm off the support above the support's best reward keeps a signal; sd_mu = 0.5
    assert np.allclose(population_advantage("grpo_passk", [0.5, 0.5, 0.0], [0.0, 1.0, 2.0]), [0, 0, 1 / (0.5 + 1e-6)])
    # reinforce++ at equal lengths is the z-score (up to verl's 1e-8 under the square root)
    assert np.allclose(population_advantage("reinforce_plus_plus", MU, R, lengths="equal"),
                       population_advantage("zscore", MU, R), rtol=1e-6)


def test_gdpo_population_by_hand():
    comps = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.5]])
    w = np.array([1.0, 2.0])
    got = population_advantage("gdpo", MU, R, lengths=L3, components=comps, weights=w)
    z = [(c - MU @ c) / (np.sqrt(MU @ (c - MU @ c) ** 2) + 1e-6) for c in comps]
    s = w[0] * z[0] + w[1] * z[1]
    tw = MU * L3 / (MU @ L3)
    m = tw @ s
    assert np.allclose(got, (s - m) / np.sqrt(tw @ (s - m) ** 2 + 1e-8))
    one = population_advantage("gdpo", MU, R, lengths="equal")  # one component: the z-score, whitened again
    assert np.allclose(one, population_advantage("zscore", MU, R), rtol=1e-5)


def test_whitening_removes_the_group_baseline_on_one_prompt():
    rng = np.random.default_rng(0)
    for _ in range(5):
        mu, r, L = rng.dirichlet(np.ones(5)), rng.normal(size=5), rng.integers(1, 9, 5).astype(float)
        a = population_advantage("reinforce_plus_plus", mu, r, lengths=L)
        b = population_advantage("reinforce_plus_plus_baseline", mu, r, lengths=L)
        assert np.allclose(a, b, atol=1e-12)
    # across prompts the two differ: each prompt's mean is removed before the batch whitening
    r = torch.tensor([[0.0, 1.0, 1.0], [3.0, 4.0, 3.0]], dtype=torch.float64)
    a = group_advantage("reinforce_plus_plus", r, lengths="equal")
    b = group_advantage("reinforce_plus_plus_baseline", r, lengths="equal")
    assert not torch.allclose(a, b, atol=0.1)


def test_optimal_token_baseline_minimizes_the_gradient_variance():
    """Independent route: b* = argmin_b E_mu[(r - b)^2 ||e_y - mu||^2] by a scalar minimization."""
    rng = np.random.default_rng(1)
    for K in (2, 4, 7):
        mu, r = rng.dirichlet(np.ones(K)), rng.uniform(size=K)
        score2 = np.array([np.sum((np.eye(K)[y] - mu) ** 2) for y in range(K)])
        res = minimize_scalar(lambda b: mu @ ((r - b) ** 2 * score2), bracket=(0.0, 1.0), tol=1e-12)
        assert np.allclose(r - population_advantage("optimal_token_baseline", mu, r), res.x, atol=1e-7)
    # a vertex mu has zero score: no baseline (verl's eps gives V = 0 there)
    assert np.allclose(population_advantage("optimal_token_baseline", [1.0, 0.0], [0.3, 1.0]), [0.3, 1.0])


def _case(name):
    kw = {"lengths": L3} if name in LENGTHS else {}
    if name == "gdpo":
        kw["components"] = np.array([R, [0.0, 1.0, 0.5]])
        kw["weights"] = np.array([1.0, 0.5])
    return kw


@pytest.mark.parametrize("name", VERL_NAMES)
def test_conditional_tends_to_population(name):
    """The exact finite-G mean advantage tends to the population form, at rate O(1/G) (err * G within 25%)."""
    kw = _case(name)
    pop = population_advantage(name, MU, R, **kw)
    err = {G: np.abs(conditional_group_advantage(name, MU, R, G, **kw) - pop).max() for G in (32, 128)}
    if name in ("remax", "grpo_passk"):  # a constant baseline; the gap vanishes geometrically fast
        assert err[128] < 1e-9, err
        return
    assert err[128] < 0.02 and 0.75 < (err[32] * 32) / (err[128] * 128) < 1.33, err


def test_passk_finite_group_hand_value():
    """G = 2, r = (1, 0): the better arm gets 1/(sd(1, 0) + eps) when the other sample is the worse arm."""
    for p in (0.2, 0.5, 0.9):
        got = conditional_group_advantage("grpo_passk", [p, 1 - p], [1.0, 0.0], 2)
        assert np.allclose(got, [(1 - p) / (np.sqrt(0.5) + 1e-6), 0.0])


def test_remax_conditional_is_exact_at_every_group_size():
    for G in (1, 3, 6):
        assert np.allclose(conditional_group_advantage("remax", MU, R, G), population_advantage("remax", MU, R))


def test_batch_coupled_group_form_whitens_the_whole_tensor():
    """One (G,) group and the same rewards split into a (2, G/2) batch: one whitening over all of them."""
    r = torch.tensor([0.0, 1.0, 0.5, 0.25, 1.0, 0.0], dtype=torch.float64)
    L = torch.tensor([1.0, 2.0, 3.0, 1.0, 2.0, 4.0])
    one = group_advantage("reinforce_plus_plus", r, lengths=L)
    two = group_advantage("reinforce_plus_plus", r.view(2, 3), lengths=L.view(2, 3))
    assert torch.allclose(one, two.reshape(-1))
    n = L.sum()  # by hand: token mean, Bessel-corrected token variance
    m = (L * r).sum() / n
    v = (L * (r - m) ** 2).sum() / (n - 1)
    assert torch.allclose(one, (r - m) / torch.sqrt(v + 1e-8))
    assert BATCH_COUPLED == {"reinforce_plus_plus", "reinforce_plus_plus_baseline", "gdpo", "gpg"}


# ---------------------------------------------------------------------------
# inputs, errors and specs
# ---------------------------------------------------------------------------


def test_missing_and_misplaced_inputs_are_named():
    r = torch.rand(2, 4)
    for name in LENGTHS:
        with pytest.raises(ValueError, match="needs lengths"):
            group_advantage(name, r)
        with pytest.raises(ValueError, match="needs lengths"):
            population_advantage(name, MU, R)
    with pytest.raises(ValueError, match="needs baseline: the reward of the prompt's greedy completion"):
        group_advantage("remax", r)
    with pytest.raises(ValueError, match="needs score_norms"):
        group_advantage("optimal_token_baseline", r)
    with pytest.raises(ValueError, match="follows from mu"):
        population_advantage("remax", MU, R, baseline=0.0)
    with pytest.raises(ValueError, match="follows from mu"):
        conditional_group_advantage("optimal_token_baseline", MU, R, 3, score_norms=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="lengths must be > 0"):
        group_advantage("opo", r, lengths=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="'equal'"):
        group_advantage("opo", r, lengths="same")
    with pytest.raises(ValueError, match="does not broadcast"):
        group_advantage("opo", r, lengths=torch.ones(3))
    with pytest.raises(ValueError, match="one entry per component"):
        group_advantage("gdpo", r, lengths="equal", components=torch.rand(2, 2, 4), weights=[1.0])
    with pytest.raises(ValueError, match="more than one token"):
        group_advantage("reinforce_plus_plus", [1.0], lengths="equal")
    with pytest.raises(ValueError, match="takes"):
        group_advantage("gpg", r, lengths="equal")


def test_every_estimator_has_a_spec_with_verls_recipe():
    assert set(VERL_NAMES) <= set(ADVANTAGES)
    assert [s.name for s in SPECS] == list(VERL_NAMES)
    for name in VERL_NAMES:
        spec = objective_spec(name)
        assert spec.advantage == name and spec.verl.adv_estimator == name
        obj = make_objective(name)
        assert np.all(np.isfinite(obj.population_advantage(MU, R)))
        if name not in ("remax", "optimal_token_baseline"):  # their group forms need the policy's inputs
            assert obj.advantages(torch.rand(3, 4)).shape == (3, 4)
        else:
            with pytest.raises(ValueError, match="needs"):
                obj.advantages(torch.rand(3, 4))
    assert make_objective("gpg").spec.verl.loss_mode == "gpg"
    assert all(objective_spec(n).verl.loss_mode == "vanilla" for n in VERL_NAMES if n != "gpg")


def test_gpg_target_is_the_vertex_of_mu_times_the_centred_reward():
    """Closed form (the linear family at E_mu[A] = 0) against the integrated flow."""
    rng = np.random.default_rng(3)
    obj = make_objective("gpg")
    mu, r = rng.dirichlet(np.ones(4), size=3), rng.uniform(size=(3, 4))
    t = obj.induced_target(mu, r)
    assert t.method == "closed-form"
    best = np.argmax(mu * (r - (mu * r).sum(-1, keepdims=True)), -1)
    assert np.allclose(t.pi, np.eye(4)[best])
    adv = obj.population_advantage(mu, r)
    fr = logit_flow(mu, adv, weight=lambda u, a: obj.weight(u, a))
    assert np.allclose(fr.pi, t.pi, atol=1e-6)
