"""The trainers' off-policy corrections, VESPO and LUSPO (``theory.zoo_corrections``).

Hand-worked weights and masks; the population weight against autograd and against its
closed form; induced targets against the KKT solver and the integrated flow (bandit and
token MDP); and, where verl or TRL is installed, equality with the trainers' own
functions and losses to 1e-6 in value and gradient on ragged random batches.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theory import losses as L
from theory.flow import logit_flow
from theory.induced import solve_kkt
from theory.objectives import autograd_weight, make_objective
from theory.zoo_corrections import SPECS

TOL = 1e-6
NAMES = [s.name for s in SPECS]
CORRECTIONS = [s.name for s in SPECS if s.loss is L.rollout_corrected_loss]
pytestmark = pytest.mark.usefixtures("single_torch_thread")


def f64(x):
    return torch.as_tensor(x, dtype=torch.float64)


# ---------------------------------------------------------------------------
# hand-worked weights and masks
# ---------------------------------------------------------------------------


def test_is_weight_hand_worked():
    s = f64([[math.log(3.0), math.log(0.5), 0.0], [math.log(0.25), 0.0, 0.0]])
    m = f64([[1, 1, 0], [1, 0, 0]])
    tok = L.rollout_is_weight(s, m, level="token", high=2.0)
    assert torch.allclose(tok, f64([[2.0, 0.5, 0.0], [0.25, 0.0, 0.0]]))
    seq = L.rollout_is_weight(s, m, level="sequence", low=0.5, high=2.0)  # 3 * 0.5 = 1.5; 0.25 -> 0.5
    assert torch.allclose(seq, f64([[1.5, 1.5, 0.0], [0.5, 0.0, 0.0]]))
    mask = L.rollout_is_weight(s, m, level="token", mode="mask", low=0.4, high=2.5)
    assert torch.allclose(mask, f64([[0.0, 0.5, 0.0], [0.0, 0.0, 0.0]]))
    seq_mask = L.rollout_is_weight(s, m, level="sequence", mode="mask", high=1.0)
    assert torch.allclose(seq_mask, f64([[0.0, 0.0, 0.0], [0.25, 0.0, 0.0]]))


def test_rejection_keep_hand_worked():
    s = f64([[0.1, -0.3, 5.0], [0.05, 0.02, 0.0]])
    m = f64([[1, 1, 0], [1, 1, 1]])
    # seq_mean_k1: mean of -s = 0.1 (row 0), -0.0233 (row 1); bounds [log 0.9, log 1.2] = [-0.105, 0.182]
    keep = L.rejection_keep(s, m, rs="seq_mean_k1", low=0.9, high=1.2)
    assert keep.tolist() == [[1, 1, 0], [1, 1, 1]]
    keep = L.rejection_keep(s, m, rs="seq_mean_k1", low=0.99, high=1.01)  # |mean| <= 0.00995: neither
    assert keep.tolist() == [[0, 0, 0], [0, 0, 0]]
    # token_k2: s^2/2 <= 0.01 keeps |s| <= 0.1414
    assert L.rejection_keep(s, m, rs="token_k2", high=0.01).tolist() == [[1, 0, 0], [1, 1, 1]]
    # seq_max_k3: e^-0.3 - 1 + 0.3 = 0.0408 on row 0 (the padded 5.0 is ignored)
    assert L.rejection_keep(s, m, rs="seq_max_k3", high=0.04).tolist() == [[0, 0, 0], [1, 1, 1]]
    assert L.rejection_keep(s, m, rs="seq_max_k3", high=0.041).tolist() == [[1, 1, 0], [1, 1, 1]]
    # seq_sum_k1 with one threshold: the lower ratio bound is its reciprocal; sum(-s) = 0.2 (row 0)
    assert L.rejection_keep(s, m, rs="seq_sum_k1", high=1.2).tolist() == [[0, 0, 0], [1, 1, 1]]


def test_offpolicy_sequence_keep_hand_worked():
    logp = f64([[-1.0, -2.0], [-1.0, -2.0], [-1.0, -2.0]])
    mu = f64([[-0.2, -1.9], [-0.2, -1.9], [-1.0, -1.0]])  # mean log(mu/pi) = 0.45, 0.45, 0.5
    m = f64([[1, 1], [1, 1], [1, 0]])  # row 2: one token, log(mu/pi) = 0
    keep = L.offpolicy_sequence_keep(logp, mu, f64([-1.0, 1.0, -1.0]), m, delta=0.4)
    assert keep.tolist() == [[0, 0], [1, 1], [1, 1]]
    assert L.offpolicy_sequence_keep(logp, mu, f64([-1.0, 1.0, -1.0]), m, delta=0.5).tolist() == [[1, 1]] * 3


def test_vespo_hand_worked():
    """phi(W) = e^lam W^k e^(-lam W): phi(1) = 1; at W = 0.3, A > 0 (k = 2, lam = 3): e^3 0.09 e^-0.9."""
    logp = f64([[math.log(0.3), -1.0], [0.0, -1.0]]).requires_grad_()
    mu = f64([[0.0, -1.0], [0.0, -1.0]])
    loss = L.vespo_loss(logp, mu, f64([1.0, -2.0]))
    phi0 = math.exp(3.0) * 0.09 * math.exp(-0.9)
    assert torch.allclose(loss.detach(), f64([[-phi0 * math.log(0.3), phi0], [0.0, -2.0]]))
    (g,) = torch.autograd.grad(loss.sum(), logp)
    assert torch.allclose(g, f64([[-phi0, -phi0], [2.0, 2.0]]))


def hand_weight(name, u, a):
    """The population weights of the module docstring, written out from the presets' settings."""
    kept = {
        "seq_tis": torch.minimum(u, f64(2.0)) * a,
        "bypass_seq_is": torch.minimum(u, f64(2.0)) * a,
        "icepop": ((u >= 0.5) & (u <= 5.0)) * u * a,
        "seq_mis": (u <= 3.0) * u * a,
        "geo_rs": ((-torch.log(u) >= math.log(0.999)) & (-torch.log(u) <= math.log(1.001))) * a,
        "bypass_ppo_k3_rs": (u - 1 - torch.log(u) <= 0.01) * torch.where(a >= 0, u < 1.2, u > 0.8) * u * a,
        "grpo_opsm": ((a >= 0) | (-torch.log(u) <= 0.5)) * torch.where(a >= 0, u < 1.2, u > 0.8) * u * a,
        "vespo": torch.where(a >= 0, math.exp(3.0) * u**2 * torch.exp(-3.0 * u),
                             math.exp(2.0) * u**3 * torch.exp(-2.0 * u)) * a,
        "luspo": torch.where(a >= 0, u < 1.0004, u > 0.9997) * u * a,
    }
    return kept[name]


@pytest.mark.parametrize("name", NAMES)
def test_population_weight_is_the_closed_form_and_autograds(name):
    """h(u, A) three ways: the spec's weight, autograd of the loss, the formula (grid away from the kinks)."""
    obj = make_objective(name)
    u = torch.exp(torch.linspace(-2.5, 2.5, 201, dtype=torch.float64))
    kinks = f64([0.5, 0.8, 0.9997, 1.0, 1.0004, 1.2, 2.0, 3.0, 5.0, math.exp(-0.5), 0.999, 1.001])
    u = torch.cat([u[(u[:, None] - kinks).abs().min(-1).values > 1e-3], f64([0.9995, 1.0002])])  # + two in windows
    for a in (1.3, -0.7):
        a = f64(a)
        want = hand_weight(name, u, a)
        assert torch.allclose(obj.weight(u, a), want, atol=1e-12), name
        assert torch.allclose(autograd_weight(obj, u, a), want, atol=1e-12), name


def test_bad_settings_raise_named_errors():
    lp = f64([[-1.0, -2.0]])
    with pytest.raises(ValueError, match="needs logp_prox"):
        L.rollout_corrected_loss(lp, lp, f64([1.0]))
    with pytest.raises(ValueError, match="applies no IS weight"):
        L.rollout_corrected_loss(lp, lp, f64([1.0]), bypass=True, is_level="token")
    with pytest.raises(ValueError, match="upper bound only"):
        L.rejection_keep(lp, rs="token_k3", low=0.5, high=1.0)
    with pytest.raises(ValueError, match="rs must be one of"):
        L.rejection_keep(lp, rs="seq_k9", high=1.0)
    with pytest.raises(ValueError, match="low must be <= high"):
        L.rollout_is_weight(lp, low=3.0, high=2.0)
    with pytest.raises(ValueError, match="is_level must be one of"):
        make_objective("seq_tis", is_level="prompt")
    with pytest.raises(ValueError, match="lambda_pos"):
        make_objective("vespo", lambda_pos=0.0)


def test_presets_compose_into_other_settings():
    """One family: a preset with another correction switched on is the product of the two weights."""
    obj = make_objective("seq_tis", rs="seq_mean_k3", rs_high=0.01)
    u = f64([0.5, 0.95, 1.05, 3.0])
    k3 = u - 1 - torch.log(u)
    assert torch.allclose(obj.weight(u, f64(1.0)), torch.minimum(u, f64(2.0)) * (k3 <= 0.01))


# ---------------------------------------------------------------------------
# induced targets: KKT solver vs the integrated flow; the token MDP's two levels
# ---------------------------------------------------------------------------

MU = np.array([[0.2, 0.3, 0.5], [0.3, 0.3, 0.4], [0.15, 0.45, 0.4]])
ADV = np.array([[1.0, -0.5, 0.2], [0.4, -1.0, 0.3], [0.6, 0.1, -0.4]])


@pytest.mark.parametrize("name", ["seq_tis", "bypass_seq_is"])
def test_truncated_targets_are_tis_and_the_flows(name):
    obj = make_objective(name)
    tis = make_objective("tis")
    sol = solve_kkt(lambda u, a: obj.weight(u, a), MU, ADV)
    assert sol.converged.all()
    ref = solve_kkt(lambda u, a: tis.weight(u, a), MU, ADV)
    np.testing.assert_allclose(sol.pi, ref.pi, atol=1e-10)
    fr = logit_flow(MU, ADV, weight=lambda u, a: obj.weight(u, a))
    np.testing.assert_allclose(sol.pi, fr.pi, atol=1e-6)


def test_vespo_target_kkt_and_flow_agree():
    obj = make_objective("vespo")
    fr = logit_flow(MU, ADV, weight=lambda u, a: obj.weight(u, a))  # an arm decays like 1/t: not "converged"
    sol = solve_kkt(lambda u, a: obj.weight(u, a), MU, ADV)
    ok = sol.converged & np.isfinite(sol.pi).all(-1)
    assert ok.all()
    np.testing.assert_allclose(sol.pi[ok], fr.pi[ok], atol=1e-6)


@pytest.mark.parametrize("name", ["geo_rs", "bypass_ppo_k3_rs", "grpo_opsm", "icepop"])
def test_masked_targets_are_stationary_or_flagged(name):
    """The Euler route's answer: certified rows are stationary points of the flow's field, the rest flagged."""
    from theory.induced import stationarity_residual

    obj = make_objective(name)
    r = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.3]])
    mu = MU[:2]
    it = obj.induced_target(mu, r)
    np.testing.assert_allclose(it.pi.sum(-1), 1.0, atol=1e-9)
    res = stationarity_residual(lambda u, a: obj.weight(u, a), mu, obj.population_advantage(mu, r), it.pi)
    assert (res[it.converged] < 1e-6).all()


def test_token_mdp_sequence_and_token_levels_of_sequence_tis():
    """Sequence-level TIS on the leaves (u = prod_t u_t) and token-level TIS state by state: both certified by the
    KKT solver, both distributions, and the sequence-level target is the flow's over the leaves."""
    from sims import token_mdp as tm

    tree = tm.TokenTree(V=3, T=2)
    cond = tm.random_policy(tree, 3, concentration=20.0)
    r = tm.partial_credit_reward(tree)
    adv = r - tm.sequence_probs(cond) @ r
    obj = make_objective("seq_tis")

    def state_target(mu, a):
        sol = solve_kkt(lambda u, x: obj.weight(u, x), mu, a)
        assert sol.converged.all()
        return sol.pi

    p_seq = tm.sequence_level_target(cond, adv, tree, state_target)
    fr = logit_flow(tm.sequence_probs(cond)[None], adv[None], weight=lambda u, a: obj.weight(u, a))
    np.testing.assert_allclose(p_seq, fr.pi[0], atol=1e-6)
    p_tok = tm.sequence_probs(tm.token_level_target(cond, adv, tree, state_target))
    assert abs(p_seq.sum() - 1) < 1e-9 and abs(p_tok.sum() - 1) < 1e-9


# ---------------------------------------------------------------------------
# verl: the rollout correction's weights, masks and losses
# ---------------------------------------------------------------------------

RS_THRESHOLDS = {"token_k1": "0.8_1.3", "seq_sum_k1": "0.3_3.0", "seq_mean_k1": "0.8_1.3", "token_k2": 0.05,
                 "seq_sum_k2": 2.0, "seq_mean_k2": 0.3, "seq_max_k2": 1.0, "token_k3": 0.04, "seq_sum_k3": 2.0,
                 "seq_mean_k3": 0.3, "seq_max_k3": 1.0}


def ragged(seed, B=8, T=10, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, T + 1, (B,), generator=g)
    lens[0], lens[1] = T, 0
    mask = torch.arange(T)[None] < lens[:, None]
    lp = torch.randn(B, T, generator=g, dtype=dtype) * 0.5 - 1.5
    old = lp + 0.3 * torch.randn(B, T, generator=g, dtype=dtype)
    mu = old + 0.4 * torch.randn(B, T, generator=g, dtype=dtype)
    adv_seq = torch.randn(B, generator=g, dtype=dtype)
    return dict(lp=lp.requires_grad_(), old=old, mu=mu, adv=adv_seq[:, None] * mask, adv_seq=adv_seq, mask=mask)


def _bounds(spec):
    """verl's threshold (float or 'lo_hi') as the zoo's (low, high)."""
    if isinstance(spec, str) and "_" in spec:
        lo, hi = spec.split("_")
        return float(lo), float(hi)
    return None, float(spec)


@pytest.mark.parametrize("rs", L.RS_OPTIONS)
def test_rejection_keep_is_verls(rs):
    helper = pytest.importorskip("verl.trainer.ppo.rollout_corr_helper")
    b = ragged(1)
    thr = RS_THRESHOLDS[rs]
    s = (b["old"] - b["mu"]) * 4  # spread so that every option rejects some and keeps some
    verl_mask, _ = helper.compute_rollout_rejection_mask(s, b["mask"].double(), rollout_rs=rs, rollout_rs_threshold=thr)
    lo, hi = _bounds(thr)
    zoo = L.rejection_keep(s, b["mask"], rs=rs, low=lo, high=hi)
    assert torch.equal(zoo, verl_mask.to(zoo.dtype)), rs
    assert 0 < zoo[b["mask"]].mean() < 1, rs


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("threshold", [2.0, 1.1, "0.5_1.5", "0.8_1.3"])
def test_is_weight_is_verls(level, threshold):
    helper = pytest.importorskip("verl.trainer.ppo.rollout_corr_helper")
    b = ragged(2)
    s = (b["old"] - b["mu"]) * 2
    w, _ = helper.compute_rollout_correction_weights(s, b["mask"].double(), rollout_is=level,
                                                     rollout_is_threshold=threshold)
    lo, hi = _bounds(threshold)
    zoo = L.rollout_is_weight(s, b["mask"], level=level, mode="truncate" if lo is None else "mask", low=lo, high=hi)
    assert (zoo - w).abs().max().item() <= TOL


def near(b):
    """Half the sequences within 1e-4 nats per token of the policy the corrections compare with (so that the
    tight windows, geo_rs's +-0.1% and the k3 bound 0.01, keep some and reject some)."""
    with torch.no_grad():
        b["mu"][::2] = b["old"][::2] + 1e-4 * torch.randn_like(b["old"][::2])
        b["old"][1::4] = b["lp"][1::4] + 1e-4 * torch.randn_like(b["old"][1::4])
    return b


def _verl_settings(rec):
    return {k.split(".", 1)[1]: v for k, v in rec.algorithm.items() if k.startswith("rollout_correction.")}


def _zoo_value_and_grad(name, b, mode, info):
    """The zoo's loss for the verl recipe's batch, aggregated over the tokens the rejection keeps."""
    import sims.integrations.verl as zv

    obj = make_objective(name)
    m = b["mask"].to(b["lp"].dtype)
    p = obj.params
    if p["bypass"]:  # verl bypass: old_log_prob is the rollout's; corrections from the current policy
        loss = obj.loss(b["lp"], b["old"], b["adv"], m)
        s = b["lp"].detach() - b["old"]
    else:
        loss = obj.loss(b["lp"], b["mu"], b["adv"], m, logp_prox=b["old"])
        s = b["old"] - b["mu"]
    keep = L.rejection_keep(s, m, rs=p["rs"], low=p["rs_low"], high=p["rs_high"]) if p["rs"] else m
    v = zv.aggregate(loss, m * keep, mode, **info)
    (g,) = torch.autograd.grad(v, b["lp"])
    return v.detach(), g


def _verl_value_and_grad(name, b, mode, info):
    core = pytest.importorskip("verl.trainer.ppo.core_algos")
    from verl.trainer.config.algorithm import RolloutCorrectionConfig
    from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_rejection_mask
    from verl.workers.config import ActorConfig, PolicyLossConfig

    rec = make_objective(name).spec.verl
    rc = _verl_settings(rec)
    actor = {k: v for k, v in rec.actor.items() if not k.startswith("policy_loss.")}
    pl = PolicyLossConfig(loss_mode=rec.loss_mode, rollout_correction=RolloutCorrectionConfig(**rc))
    cfg = ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, policy_loss=pl, **actor)
    cfg.global_batch_info.update(info)
    mask = b["mask"].to(b["lp"].dtype)
    if rc.get("bypass_mode"):
        v, _ = core.get_policy_loss_fn("bypass_mode")(old_log_prob=b["old"], log_prob=b["lp"], advantages=b["adv"],
                                                     response_mask=mask, loss_agg_mode=mode, config=cfg)
    else:
        w, kept, _ = compute_rollout_correction_and_rejection_mask(
            b["old"], b["mu"], mask, rollout_is=rc.get("rollout_is"), rollout_is_threshold=rc.get(
                "rollout_is_threshold", 2.0), rollout_rs=rc.get("rollout_rs"),
            rollout_rs_threshold=rc.get("rollout_rs_threshold"))
        w = None if w is None else w.batch["rollout_is_weights"]
        v, _ = core.get_policy_loss_fn(rec.loss_mode)(old_log_prob=b["old"], log_prob=b["lp"], advantages=b["adv"],
                                                      response_mask=kept, loss_agg_mode=mode, config=cfg,
                                                      rollout_is_weights=w)
    (g,) = torch.autograd.grad(v, b["lp"])
    return v.detach(), g


VERL_NAMES = [s.name for s in SPECS if s.verl is not None]
GLOBAL = {"dp_size": 2, "batch_num_tokens": 100, "global_batch_size": 20, "loss_scale_factor": 16}
MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


@pytest.mark.parametrize("info", [{}, GLOBAL], ids=["local", "global"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", VERL_NAMES)
def test_verl_rollout_correction_equals_zoo(name, mode, info):
    """verl's loss under the spec's recipe (decoupled: IS weights and rejection from the helper; bypass: inside
    verl's bypass_mode loss) equals the zoo's, on batches where the corrections bind."""
    pytest.importorskip("verl")
    for seed in range(3):
        b = ragged(seed)
        near(b)
        (va, ga), (vb, gb) = _verl_value_and_grad(name, b, mode, info), _zoo_value_and_grad(name, b, mode, info)
        assert (va - vb).abs().item() <= TOL and (ga - gb).abs().max().item() <= TOL, (name, mode, seed)


def test_verl_batches_exercise_the_corrections():
    """The equality above is not vacuous: on its batches each correction changes some weight or rejects some
    sequence."""
    seen: dict = {}
    for name, seed in [(n, k) for n in VERL_NAMES for k in range(3)]:
        b = near(ragged(seed))
        obj = make_objective(name)
        p, m = obj.params, b["mask"].double()
        s = b["lp"].detach() - b["old"] if p["bypass"] else b["old"] - b["mu"]
        changed = torch.zeros_like(m, dtype=torch.bool)
        if p["is_level"]:
            w = L.rollout_is_weight(s, m, level=p["is_level"], mode=p["is_mode"], low=p["is_low"], high=p["is_high"])
            raw = L.rollout_is_weight(s, m, level=p["is_level"], high=math.inf)
            changed |= (w != raw) & (m > 0)
        if p["rs"]:
            changed |= (L.rejection_keep(s, m, rs=p["rs"], low=p["rs_low"], high=p["rs_high"]) == 0) & (m > 0)
        seen.setdefault(name, []).append((bool(changed.any()), bool(changed[m > 0].all())))
    for name, flags in seen.items():
        assert any(c for c, _ in flags) and not all(a for _, a in flags), name


def test_verl_recipes_are_the_parameters():
    """Each recipe's rollout_correction settings are the spec's parameters (threshold strings read as bounds)."""
    for name in VERL_NAMES:
        p = make_objective(name).params
        rc = _verl_settings(make_objective(name).spec.verl)
        assert rc.get("bypass_mode", False) == p["bypass"]
        assert rc.get("loss_type", "ppo_clip") == p["surrogate"]
        assert rc.get("rollout_is") == p["is_level"]
        if p["is_level"]:
            lo, hi = _bounds(rc["rollout_is_threshold"])
            assert (lo, hi) == (p["is_low"], p["is_high"])
            assert p["is_mode"] == ("truncate" if lo is None else "mask")
        assert rc.get("rollout_rs") == p["rs"]
        if p["rs"]:
            lo, hi = _bounds(rc["rollout_rs_threshold"])
            assert (lo, hi) == (p["rs_low"], p["rs_high"])


# ---------------------------------------------------------------------------
# TRL: the off-policy sequence mask, VESPO's weights, the vLLM ratio's multiplication
# ---------------------------------------------------------------------------


def test_trl_off_policy_mask_is_the_zoos():
    trl = pytest.importorskip("trl")
    b = ragged(4)
    m = b["mask"].double()
    adv = b["adv_seq"][:, None]
    for delta in (0.01, 0.05, 0.2):
        want = trl.GRPOTrainer.get_off_policy_mask(adv, b["lp"], b["mu"], m, delta)  # (B, 1)
        got = L.offpolicy_sequence_keep(b["lp"], b["mu"], b["adv_seq"], m, delta=delta)
        assert torch.equal(got, want.expand_as(got)), delta


def test_trl_vespo_loss_is_the_zoos():
    trl = pytest.importorskip("trl")
    for seed in range(3):
        b = ragged(seed)
        m = b["mask"].double()
        adv = b["adv_seq"][:, None]
        phi = trl.GRPOTrainer.get_gamma_weights(adv, b["lp"] - b["old"], m, None)
        want = (-phi * adv * b["lp"] * m).sum()
        got = (L.vespo_loss(b["lp"], b["old"], b["adv_seq"], m) * m).sum()
        (gw,) = torch.autograd.grad(want, b["lp"])
        (gg,) = torch.autograd.grad(got, b["lp"])
        assert abs(want.item() - got.item()) <= TOL and (gw - gg).abs().max().item() <= TOL, seed
        assert 0.05 < phi[b["mask"].any(-1)].std().item()  # the weights vary: not a constant factor


def test_trl_loss_types_are_listed():
    """vespo, luspo and grpo + off_policy_mask_threshold are TRL recipes: tests/test_integrations_trl.py's
    test_trl_loss_type_equals_zoo runs each through GRPOTrainer._compute_loss against ZooGRPOTrainer."""
    from theory.recipes import TRL_LOSS_TYPES

    assert {"vespo", "luspo", "grpo_opsm"} <= set(TRL_LOSS_TYPES)
    assert TRL_LOSS_TYPES["grpo_opsm"][0]["off_policy_mask_threshold"] == make_objective("grpo_opsm").params[
        "opsm_delta"]


@pytest.mark.parametrize("mode", ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"])
def test_trl_vllm_modes_are_the_zoo_weight(mode):
    """TRL's vLLM importance ratio (grpo_trainer.py, _generate_and_score_completions; it runs only with vLLM, so
    its four modes are written out here from that code) is rollout_is_weight at (level, mode, clip_min, clip_max)."""
    b = ragged(5)
    m = b["mask"].double()
    lo, hi = 0.8, 1.25
    diff = (b["old"] - b["mu"]) * m * 2
    level, kind = mode.split("_")
    if level == "sequence":
        diff = diff.sum(-1, keepdim=True)
    ratio = torch.exp(diff)
    if kind == "truncate":
        ratio = torch.clamp(ratio, min=lo, max=hi)
    else:
        ratio = ratio.masked_fill((ratio < lo) | (ratio > hi), 0.0)
    zoo = L.rollout_is_weight((b["old"] - b["mu"]) * 2, m, level=level, mode=kind, low=lo, high=hi)
    assert ((ratio.expand_as(m) * m - zoo).abs().max().item()) <= TOL
