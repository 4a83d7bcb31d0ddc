"""verl integration: verl's built-in losses equal the zoo's; registered losses, estimators, recipes, errors.

Skipped unless verl is installed (``pip install torch==2.13.0 -e ".[verl]"``). Every
comparison is to 1e-6 in value and in gradient, on random batches with ragged masks
(one full row, one empty row), for every ``loss_agg_mode``, with and without verl's
global-batch normalizers.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("verl", reason='verl is not installed: pip install torch==2.13.0 -e ".[verl]"')

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl.trainer.config import AlgoConfig  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_weights  # noqa: E402
from verl.workers.config import ActorConfig, PolicyLossConfig  # noqa: E402

import sims.integrations as integ  # noqa: E402
import sims.integrations.verl as zv  # noqa: E402
from theory.zoo_corrections import SPECS as CORRECTION_SPECS  # noqa: E402  (tests/test_zoo_corrections.py)
from sims.integrations.diagnostics import offpolicy_readings, predicts_eta, reading_names, temperature  # noqa: E402
from sims.integrations.eta import fitted_eta, group_regime, lambert_eta  # noqa: E402
from theory.objectives import builtin_objectives, make_objective, objective_spec  # noqa: E402
from _zoo_checks import assert_close, value_and_grad  # noqa: E402

TOL = 1e-6


#: tiny CPU tensors: one intra-op thread in this module (conftest.single_torch_thread)
pytestmark = pytest.mark.usefixtures("single_torch_thread")
GLOBAL = {"dp_size": 2, "batch_num_tokens": 100, "global_batch_size": 20, "loss_scale_factor": 16}


def actor_config(actor=None, rollout_n=1, global_info=None) -> ActorConfig:
    """verl's ActorConfig with a recipe's ``actor`` settings (``policy_loss.<key>`` for the nested ones)."""
    actor = dict(actor or {})
    pl = {k.split(".", 1)[1]: actor.pop(k) for k in list(actor) if k.startswith("policy_loss.")}
    cfg = ActorConfig(strategy="fsdp", rollout_n=rollout_n, ppo_micro_batch_size_per_gpu=1,
                      policy_loss=PolicyLossConfig(**pl), **actor)
    cfg.global_batch_info.update(global_info or {})
    return cfg


def make_batch(seed, B=8, T=12, spread=0.6, dtype=torch.float64):
    """Ragged (B, T) batch: row 0 full, row 1 empty; log-ratios ~ N(0, spread^2) so clips and dual clips bind."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, T + 1, (B,), generator=g)
    lens[0], lens[1] = T, 0
    mask = torch.arange(T)[None] < lens[:, None]
    lp = torch.randn(B, T, generator=g, dtype=dtype) * 0.5 - 1.5
    old = lp + spread * torch.randn(B, T, generator=g, dtype=dtype)
    mu = old + 0.3 * torch.randn(B, T, generator=g, dtype=dtype)
    adv_seq = torch.randn(B, generator=g, dtype=dtype)
    adv = adv_seq[:, None] * mask
    w = 2 * torch.rand(B, T, generator=g, dtype=dtype) * mask
    return dict(lp=lp.requires_grad_(), old=old, mu=mu, adv=adv, adv_seq=adv_seq, mask=mask, w=w)


# ---------------------------------------------------------------------------
# verl's built-in losses vs the zoo's functions
# ---------------------------------------------------------------------------


def builtin_and_zoo(name, mode, info, batch, with_is_weights=False):
    """(verl built-in, zoo) as (value, grad) for the zoo objective ``name`` under its recipe."""
    rec = zv.BUILTIN[name]
    cfg = actor_config(rec.actor, global_info=info)
    obj = make_objective(name)
    lp, old, mask, adv = batch["lp"], batch["old"], batch["mask"], batch["adv"]
    if obj.family == "weighted-ce":  # AWR / TPO: the signal is a nonnegative weight
        adv = adv.abs()
    m = mask.to(lp.dtype)
    w = batch["w"] if with_is_weights else None
    if "prox" in obj.needs:  # TIS / AReaL: verl's decoupled mode, IS weights from the rollout correction
        cap = rec.algorithm["rollout_correction.rollout_is_threshold"]
        w, _ = compute_rollout_correction_weights(old - batch["mu"], mask, rollout_is="token", rollout_is_threshold=cap)
        zoo_tok = obj.loss(lp, batch["mu"], adv, m, logp_prox=old)
    else:
        torch.manual_seed(0)  # clip_cov draws its detached tokens from the default generator, as verl does
        zoo_tok = obj.loss(lp, old, adv, m)
        if w is not None:
            zoo_tok = zoo_tok * w
    verl_fn = core_algos.get_policy_loss_fn(rec.loss_mode)
    torch.manual_seed(0)
    verl_loss, _ = verl_fn(old_log_prob=old, log_prob=lp, advantages=adv, response_mask=mask, loss_agg_mode=mode,
                           config=cfg, rollout_is_weights=w)
    agg = "seq-mean-token-mean" if rec.loss_mode == "sapo" else mode  # verl's sapo ignores loss_agg_mode
    # a per-sequence loss (GMPO): verl's geo_mean averages over the rows whatever loss_agg_mode says
    zoo = obj.aggregate(zoo_tok, m) if obj.level == "sequence" else zv.aggregate(zoo_tok, m, agg, **info)
    return value_and_grad(verl_loss, lp), value_and_grad(zoo, lp)


@pytest.mark.parametrize("info", [{}, GLOBAL], ids=["local", "global"])
@pytest.mark.parametrize("mode", zv.AGG_MODES)
@pytest.mark.parametrize("name", sorted(set(zv.BUILTIN) - {s.name for s in CORRECTION_SPECS}))  # those: their file
def test_builtin_loss_equals_zoo(name, mode, info):
    for seed in range(3):
        verl_vg, zoo_vg = builtin_and_zoo(name, mode, info, make_batch(seed))
        assert_close(verl_vg, zoo_vg, f"{name} vs verl {zv.BUILTIN[name].loss_mode}, {mode}, seed {seed}")


@pytest.mark.parametrize("mode", zv.AGG_MODES)
@pytest.mark.parametrize("name", ["ppo_dual_clip", "dapo", "gspo", "cispo", "sapo", "asymre", "reinforce_k2"])
def test_builtin_loss_equals_zoo_with_rollout_is_weights(name, mode):
    verl_vg, zoo_vg = builtin_and_zoo(name, mode, GLOBAL, make_batch(7), with_is_weights=True)
    assert_close(verl_vg, zoo_vg, f"{name} with rollout_is_weights, {mode}")


@pytest.mark.parametrize("name", ["ppo_dual_clip", "cispo", "gspo", "sapo"])
def test_log_ratio_clamps_agree(name):
    """Log-ratios past verl's clamps (+-20 per token; GSPO's sequence ratio at 10): same conventions."""
    b = make_batch(3)
    with torch.no_grad():
        b["old"][0, :3] = b["lp"][0, :3] - torch.tensor([25.0, -25.0, 21.0], dtype=b["lp"].dtype)
        b["old"][2] = b["lp"][2] - 12.0  # GSPO: sequence log-ratio 12 > 10
    for mode in ("token-mean", "seq-mean-token-mean"):
        verl_vg, zoo_vg = builtin_and_zoo(name, mode, {}, b)
        assert_close(verl_vg, zoo_vg, f"{name} with extreme log-ratios, {mode}")


def test_cispo_with_a_lower_clip():
    """verl's clip_ratio_low is the zoo's eps_low (the published CISPO has none: clip_ratio_low = 1)."""
    b = make_batch(5)
    cfg = actor_config(dict(clip_ratio_low=0.2, clip_ratio_high=0.28))
    m = b["mask"].to(b["lp"].dtype)
    v, _ = core_algos.get_policy_loss_fn("cispo")(old_log_prob=b["old"], log_prob=b["lp"], advantages=b["adv"],
                                                  response_mask=b["mask"], loss_agg_mode="token-mean", config=cfg)
    z = zv.aggregate(make_objective("cispo", eps_low=0.2).loss(b["lp"], b["old"], b["adv"], m), m, "token-mean")
    assert_close(value_and_grad(v, b["lp"]), value_and_grad(z, b["lp"]), "cispo eps_low=0.2")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("info", [{}, GLOBAL], ids=["local", "global"])
@pytest.mark.parametrize("taus", [(1.0, 1.05), (0.5, 2.0), (3.0, 0.7)], ids=["published", "soft-neg", "soft-pos"])
def test_sapo_temperatures_are_verls(taus, info, dtype):
    """The zoo's tau_pos / tau_neg are verl's actor.tau_pos / actor.tau_neg, at any temperatures, in both dtypes."""
    tau_pos, tau_neg = taus
    cfg = actor_config(dict(zv.BUILTIN["sapo"].actor, tau_pos=tau_pos, tau_neg=tau_neg), global_info=info)
    obj = make_objective("sapo", tau_pos=tau_pos, tau_neg=tau_neg)
    for seed in range(3):
        b = make_batch(seed, spread=1.5, dtype=dtype)  # ratios far from 1: the gates saturate on both sides
        b["adv"][2, :4] = 0.0  # A = 0 takes tau_neg in both (verl: tau_pos only if A > 0)
        m = b["mask"].to(dtype)
        v, met = core_algos.get_policy_loss_fn("sapo")(
            old_log_prob=b["old"], log_prob=b["lp"], advantages=b["adv"], response_mask=b["mask"],
            loss_agg_mode="seq-mean-token-mean", config=cfg)
        z = zv.aggregate(obj.loss(b["lp"], b["old"], b["adv"], m), m, "seq-mean-token-mean", **info)
        assert v.dtype == z.dtype == dtype
        assert_close(value_and_grad(v, b["lp"]), value_and_grad(z, b["lp"]), f"sapo tau={taus}, {dtype}, seed {seed}")
        assert met["actor/pg_clipfrac"] == 0.0


@pytest.mark.parametrize("info", [{}, GLOBAL], ids=["local", "global"])
@pytest.mark.parametrize("mode", zv.AGG_MODES)
def test_aggregate_equals_verl_agg_loss(mode, info):
    b = make_batch(11)
    g = torch.Generator().manual_seed(0)
    loss = torch.randn(b["mask"].shape, generator=g, dtype=torch.float64)
    expect = core_algos.agg_loss(loss, b["mask"], mode, **info)
    assert abs(zv.aggregate(loss, b["mask"], mode, **info) - expect) <= TOL
    seq = torch.randn(b["mask"].shape[0], generator=g, dtype=torch.float64)  # per-sequence: spread over tokens
    expect = core_algos.agg_loss(seq[:, None].expand_as(loss), b["mask"], mode, **info)
    assert abs(zv.aggregate(seq, b["mask"], mode, **info) - expect) <= TOL


def test_aggregate_rejects_unknown_mode_and_missing_global_counts():
    b = make_batch(0)
    with pytest.raises(ValueError, match="valid: token-mean"):
        zv.aggregate(b["adv"], b["mask"], "token-max")
    with pytest.raises(ValueError, match="batch_num_tokens"):
        zv.aggregate(b["adv"], b["mask"], "token-mean", dp_size=2)


# ---------------------------------------------------------------------------
# the registered zoo losses
# ---------------------------------------------------------------------------


def test_registration_covers_the_zoo():
    """Every zoo objective runs in verl: registered as zoo_<name>, or a built-in, or refused with a reason."""
    unrunnable = {n for n in builtin_objectives() if objective_spec(n).verl_note}
    assert set(zv.REGISTERED) | set(zv.BUILTIN) | unrunnable == set(builtin_objectives())
    assert not set(zv.REGISTERED) & set(zv.BUILTIN)
    for name in zv.REGISTERED:
        assert core_algos.get_policy_loss_fn(f"zoo_{name}").objective.name == name
    for name in zv.ADVANTAGE_ESTIMATORS:
        assert core_algos.get_adv_estimator_fn(name).__name__ == name


@pytest.mark.parametrize("mode", zv.AGG_MODES)
@pytest.mark.parametrize("name", zv.REGISTERED)
def test_registered_loss_is_the_zoo_loss(name, mode):
    b = make_batch(2)
    cfg = actor_config(global_info=GLOBAL)
    fn = core_algos.get_policy_loss_fn(f"zoo_{name}")
    v, metrics = fn(old_log_prob=b["old"], log_prob=b["lp"], advantages=b["adv"], response_mask=b["mask"],
                    loss_agg_mode=mode, config=cfg, rollout_is_weights=None)
    obj = make_objective(name)
    m = b["mask"].to(b["lp"].dtype)
    adv = b["adv_seq"] * (m.sum(-1) > 0) if obj.level == "sequence" else b["adv"]
    z = zv.aggregate(obj.loss(b["lp"], b["old"], adv, m), m, mode, **GLOBAL)
    assert_close(value_and_grad(v, b["lp"]), value_and_grad(z, b["lp"]), f"zoo_{name}, {mode}")
    assert all(isinstance(x, float) for x in metrics.values())
    assert set(metrics) == documented_keys(obj)


def documented_keys(obj) -> set[str]:
    """The keys docs/diagnostics.md lists for a registered verl loss, with the former names of the eta readings."""
    keys = {"actor/ppo_kl"} | {zv.PREFIX + n for n in reading_names(obj)}
    if obj.clips:
        keys.add("actor/pg_clipfrac")
    if predicts_eta(obj):
        keys |= {zv.PREFIX + "eta_groups"} | set(zv.LEGACY_NAMES.values())
    return keys


@pytest.mark.parametrize("name", zv.REGISTERED)
def test_every_registered_loss_reports_the_documented_readings(name):
    """Whole groups in the micro-batch: every documented key, finite, equal to sims.integrations.diagnostics."""
    obj = make_objective(name)
    b = grouped_batch(6, name if obj.family == "regression" else "opmd")
    lp = b["lp"].detach().requires_grad_()
    _, met = core_algos.get_policy_loss_fn(f"zoo_{name}")(
        old_log_prob=b["old"], log_prob=lp, advantages=b["adv"], response_mask=b["mask"],
        loss_agg_mode="seq-mean-token-mean", config=actor_config(rollout_n=4))
    assert set(met) == documented_keys(obj)
    assert all(math.isfinite(v) for v in met.values()), met
    expect = offpolicy_readings(lp, b["old"], b["mask"], b["adv"], temperature(obj), obj.level)
    assert {k: met[zv.PREFIX + k] for k in expect} == pytest.approx(expect, rel=1e-12)
    assert met["actor/zoo/kl"] == pytest.approx(met["actor/ppo_kl"], rel=1e-12, abs=1e-15)
    if predicts_eta(obj):
        beta = obj.params["beta"]
        blocks = b["adv_seq"].reshape(4, 4)
        assert met["actor/zoo/eta_lambert"] == pytest.approx(lambert_eta(blocks, beta).mean(), rel=1e-9)
        assert met["actor/zoo/regime"] == pytest.approx(group_regime(blocks, beta).mean())
        assert all(met[old] == met[zv.PREFIX + new] for new, old in zv.LEGACY_NAMES.items())


@pytest.mark.parametrize("name", ["opmd", "reinforce_k1"])
def test_readings_can_be_turned_off_and_the_loss_is_the_same(name, monkeypatch):
    obj = make_objective(name)
    b = grouped_batch(7, name if obj.family == "regression" else "opmd")
    fn = core_algos.get_policy_loss_fn(f"zoo_{name}")
    kw = dict(old_log_prob=b["old"], log_prob=b["lp"], advantages=b["adv"], response_mask=b["mask"],
              loss_agg_mode="seq-mean-token-mean", config=actor_config(rollout_n=4))
    on, met_on = fn(**kw)
    monkeypatch.setenv(zv.READINGS_ENV, "0")
    off, met_off = fn(**kw)
    assert not zv.readings_enabled() and torch.equal(on, off)
    assert not any(k.startswith(zv.PREFIX) or k in zv.LEGACY_NAMES.values() for k in met_off)
    assert set(met_on) - set(met_off) == documented_keys(obj) - set(met_off)


@pytest.mark.parametrize("name", ["oapl", "shifted_regression", "reinforce_k3"])
def test_dro_beta_is_the_objectives_beta(name):
    b = make_batch(4)
    cfg = actor_config({"policy_loss.dro_beta": 0.05})
    v, _ = core_algos.get_policy_loss_fn(f"zoo_{name}")(
        old_log_prob=b["old"], log_prob=b["lp"], advantages=b["adv"], response_mask=b["mask"],
        loss_agg_mode="seq-mean-token-mean", config=cfg)
    z, _ = zv.make_policy_loss(name, beta=0.05)(
        old_log_prob=b["old"], log_prob=b["lp"], advantages=b["adv"], response_mask=b["mask"],
        loss_agg_mode="seq-mean-token-mean")
    assert abs(v - z) <= TOL


def grouped_batch(seed, name="shifted_regression", n_groups=4, G=4, T=10, shuffle=False):
    """Rows in contiguous groups of G with objective ``name``'s advantages of random binary rewards."""
    g = torch.Generator().manual_seed(seed)
    B = n_groups * G
    lens = torch.randint(2, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None] < lens[:, None]
    old = (torch.randn(B, T, generator=g, dtype=torch.float64) * 0.3 - 1.0) * mask
    lp = (old + 0.05 * torch.randn(B, T, generator=g, dtype=torch.float64)).requires_grad_()
    r = torch.randint(0, 2, (n_groups, G), generator=g).double()
    adv_seq = make_objective(name).advantages(r).reshape(-1)
    perm = torch.randperm(B, generator=g) if shuffle else torch.arange(B)
    lp = lp.detach()[perm].requires_grad_()
    return dict(lp=lp, old=old[perm], mask=mask[perm], adv_seq=adv_seq[perm], adv=adv_seq[perm, None] * mask[perm])


def test_eta_metrics_are_the_eta_estimators():
    b = grouped_batch(0)
    cfg = actor_config(rollout_n=4)
    _, met = core_algos.get_policy_loss_fn("zoo_shifted_regression")(
        old_log_prob=b["old"], log_prob=b["lp"], advantages=b["adv"], response_mask=b["mask"],
        loss_agg_mode="seq-mean-token-mean", config=cfg)
    m = b["mask"].double()
    s = ((b["lp"].detach() - b["old"]) * m).sum(-1)
    assert met["actor/zoo/eta_fit"] == pytest.approx(float(fitted_eta(s, b["adv_seq"], 0.1)), abs=1e-9)
    expect = lambert_eta(b["adv_seq"].reshape(4, 4), 0.1).mean()
    assert met["actor/zoo/eta_lambert"] == pytest.approx(expect, rel=1e-9)
    assert met["actor/zoo/eta_groups"] == 1.0
    assert met["actor/zoo/eta_lambert"] >= 1.0 - 1e-9  # the shifted regression: eta >= delta = 1
    assert met["actor/zoo/regime"] == 1.0
    assert met["actor/zoo_eta_fit"] == met["actor/zoo/eta_fit"]  # the former names still report
    assert met["actor/zoo_eta_lambert"] == met["actor/zoo/eta_lambert"]


def test_eta_lambert_finds_whole_groups_behind_a_partial_one():
    """A micro-batch that starts with the tail of a group (a rank's share under verl's balancing)."""
    b = grouped_batch(2)
    b = {k: v[2:] for k, v in b.items()}  # rows 2, 3 of group 0, then groups 1-3 whole
    lp = b["lp"].detach().requires_grad_()
    _, met = core_algos.get_policy_loss_fn("zoo_shifted_regression")(
        old_log_prob=b["old"], log_prob=lp, advantages=b["adv"], response_mask=b["mask"],
        loss_agg_mode="seq-mean-token-mean", config=actor_config(rollout_n=4))
    assert met["actor/zoo/eta_groups"] == pytest.approx(12 / 14)
    expect = lambert_eta(b["adv_seq"][2:].reshape(3, 4), 0.1).mean()
    assert met["actor/zoo/eta_lambert"] == pytest.approx(expect, rel=1e-9)


def test_eta_lambert_needs_contiguous_groups():
    b = grouped_batch(1, shuffle=True)
    _, met = core_algos.get_policy_loss_fn("zoo_shifted_regression")(
        old_log_prob=b["old"], log_prob=b["lp"], advantages=b["adv"], response_mask=b["mask"],
        loss_agg_mode="seq-mean-token-mean", config=actor_config(rollout_n=4))
    assert met["actor/zoo/eta_groups"] < 1.0  # mixed blocks fail the estimator's group identity
    assert math.isfinite(met["actor/zoo/eta_fit"])


# ---------------------------------------------------------------------------
# the eta estimators (sims.integrations.eta; no verl needed, run here because CI installs the extra)
# ---------------------------------------------------------------------------


def test_lambert_eta_of_a_constant_advantage():
    """Hand value: equal advantages c leave pi = mu (u = 1), so eta = c / beta."""
    assert lambert_eta([[0.3, 0.3, 0.3]], 0.1) == pytest.approx([3.0], rel=1e-12)
    assert lambert_eta([[0.3]], 0.1, logp_mu_seq=[[-7.0]]) == pytest.approx([3.0], rel=1e-12)


def test_fitted_eta_equals_lambert_eta_at_the_fitted_target():
    """Two routes: the fitted eta of the exact Lambert fit of each group equals the predicted eta."""
    from theory.lambert import lambert_log_ratio, lambert_target

    rng = np.random.default_rng(0)
    for name in ("shifted_regression", "opmd", "oapl", "opmd_lme"):
        obj = make_objective(name)
        adv = obj.advantages(torch.as_tensor(rng.integers(0, 2, (32, 8)).astype(float))).numpy()
        beta = obj.params["beta"]
        _, eta = lambert_target(np.full_like(adv, 1 / 8), adv, beta)
        s = lambert_log_ratio(adv / beta, eta[:, None])  # log(pi / mu) on each sampled completion
        assert np.allclose(fitted_eta(s, adv, beta), eta, rtol=1e-8, atol=1e-8), name
        assert np.allclose(lambert_eta(adv, beta), eta, rtol=1e-12), name


def test_lambert_eta_keeps_the_regime_of_the_baseline():
    """The shifted mean gives eta >= delta, the mean baseline eta >= 0, in every group (empirical weights)."""
    rng = np.random.default_rng(1)
    r = torch.as_tensor(rng.random((64, 8)))
    assert (lambert_eta(make_objective("shifted_regression").advantages(r), 0.1) >= 1.0 - 1e-9).all()
    assert (lambert_eta(make_objective("opmd").advantages(r), 0.1) >= -1e-9).all()
    # behaviour weights equal for equally likely completions: the two predictions agree
    adv = make_objective("opmd").advantages(r)
    assert np.allclose(lambert_eta(adv, 0.1, logp_mu_seq=np.full((64, 8), -5.0)), lambert_eta(adv, 0.1))


def test_eta_input_checks():
    from sims.integrations.eta import sequence_log_ratio

    with pytest.raises(ValueError, match="beta"):
        fitted_eta([[0.0]], [[0.0]], 0.0)
    with pytest.raises(ValueError, match="same shape"):
        fitted_eta([[0.0, 1.0]], [[0.0]], 0.1)
    s = sequence_log_ratio([[1.0, 2.0, 9.0]], [[0.5, 0.5, 0.0]], [[1, 1, 0]])
    assert s == pytest.approx([2.0])


# ---------------------------------------------------------------------------
# advantage estimators
# ---------------------------------------------------------------------------


def rewards_batch(seed, sizes=(4, 4, 3, 1, 4), T=6):
    g = torch.Generator().manual_seed(seed)
    uid = np.concatenate([[f"p{k}"] * n for k, n in enumerate(sizes)]).astype(object)
    B = len(uid)
    perm = torch.randperm(B, generator=g)
    uid = uid[perm.numpy()]
    lens = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None] < lens[:, None]
    score = torch.randint(0, 3, (B,), generator=g).float() / 2
    tlr = torch.zeros(B, T)
    tlr[torch.arange(B), lens - 1] = score
    return tlr, mask, uid, score


@pytest.mark.parametrize("config_kind", ["none", "algo", "hydra"])
@pytest.mark.parametrize("name", sorted(zv.ADVANTAGE_ESTIMATORS))
def test_advantage_estimators_are_the_zoos(name, config_kind):
    tlr, mask, uid, score = rewards_batch(0)
    zoo = {"beta": 0.3, "beta1": 0.7, "delta": 2.0, "offset": 0.1, "max_weight": 5.0}
    config = {"none": None, "algo": AlgoConfig(), "hydra": OmegaConf.create({"adv_estimator": name, "zoo": zoo})}
    fn = core_algos.get_adv_estimator_fn(name)
    adv, ret = fn(token_level_rewards=tlr, response_mask=mask, config=config[config_kind], index=uid)
    assert adv.shape == mask.shape and torch.equal(adv, ret)
    assert torch.all(adv[~mask] == 0)
    spec = zv._ADV_SPECS[name]
    params = dict(spec.defaults)
    if config_kind == "hydra":
        for key, targets in spec.keys.items():
            params.update({t: zoo[key] for t in targets})
    obj = make_objective(spec.objective, **params)
    for u in np.unique(uid):
        rows = np.flatnonzero(uid == u)
        expect = obj.advantages(score[rows].double()[None])[0]
        got = adv[rows, 0]
        assert torch.allclose(got.double(), expect, atol=1e-6), (name, u)


def test_shifted_mean_and_soft_values_on_one_group():
    """Hand values: rewards (0, 1, 1, 0), beta = 0.5, delta = 1, beta1 = 1."""
    tlr = torch.tensor([[0.0], [1.0], [1.0], [0.0]])
    mask = torch.ones(4, 1, dtype=torch.bool)
    uid = np.array(["a"] * 4, dtype=object)
    cfg = OmegaConf.create({"zoo": {"beta": 0.5, "delta": 1.0, "beta1": 1.0}})
    adv, _ = core_algos.get_adv_estimator_fn("zoo_shifted_mean")(tlr, mask, config=cfg, index=uid)
    assert torch.allclose(adv[:, 0], torch.tensor([0.0, 1.0, 1.0, 0.0]))  # r - 0.5 + 1 * 0.5
    adv, _ = core_algos.get_adv_estimator_fn("zoo_soft_value")(tlr, mask, config=cfg, index=uid)
    v = 0.5 * math.log((1 + math.exp(2.0)) / 2)
    assert torch.allclose(adv[:, 0], torch.tensor([0.0, 1.0, 1.0, 0.0]) - v)
    adv, _ = core_algos.get_adv_estimator_fn("zoo_decoupled_soft_value")(tlr, mask, config=cfg, index=uid)
    v = math.log((1 + math.e) / 2)
    assert torch.allclose(adv[:, 0], torch.tensor([0.0, 1.0, 1.0, 0.0]) - v)
    adv, _ = core_algos.get_adv_estimator_fn("zoo_soft_value_above")(tlr, mask, config=cfg, index=uid)
    v = 0.5 * math.log((1 + math.exp(2.0)) / 2) + 1.0 * 0.5  # the soft value at beta, plus delta beta
    assert torch.allclose(adv[:, 0], torch.tensor([0.0, 1.0, 1.0, 0.0]) - v)
    # beta given as a Hydra interpolation of the loss's dro_beta, as the recipes write it
    cfg = OmegaConf.create({"actor_rollout_ref": {"actor": {"policy_loss": {"dro_beta": 0.5}}},
                            "algorithm": {"zoo": {"beta": "${actor_rollout_ref.actor.policy_loss.dro_beta}"}}})
    adv, _ = core_algos.get_adv_estimator_fn("zoo_shifted_mean")(tlr, mask, config=cfg.algorithm, index=uid)
    assert torch.allclose(adv[:, 0], torch.tensor([0.0, 1.0, 1.0, 0.0]))


# ---------------------------------------------------------------------------
# recipes: Hydra overrides that compose, and run through verl's own ppo_loss
# ---------------------------------------------------------------------------

STOCK_GRPO = [
    "algorithm.adv_estimator=grpo", "data.train_batch_size=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16", "actor_rollout_ref.rollout.n=4",
    "actor_rollout_ref.actor.use_kl_loss=true", "actor_rollout_ref.actor.kl_loss_coef=0.001",
    "actor_rollout_ref.actor.kl_loss_type=low_var_kl", "actor_rollout_ref.model.path=/nonexistent",
]


@pytest.fixture(scope="module")
def compose():
    """Compose verl's ppo_trainer config with the stock GRPO lines plus the given overrides, as Hydra does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import verl

    cfgdir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=cfgdir, version_base=None):
        yield lambda overrides: hydra_compose(config_name="ppo_trainer", overrides=STOCK_GRPO + overrides)


def ppo_loss_through_verl(actor_cfg, b):
    """verl's own actor loss (verl.workers.utils.losses.ppo_loss) on a padded batch."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.losses import ppo_loss

    B, T = b["mask"].shape
    P = 2
    lens = b["mask"].sum(-1)
    flat = []
    for i in range(B):  # verl's flat log-prob layout: prompt then response, shifted left by one token
        seq = torch.zeros(P + int(lens[i]), dtype=b["lp"].dtype)
        flat.append(torch.cat([seq[: P - 1], b["lp"][i, : lens[i]], seq[-1:]]))
    am = torch.cat([torch.ones(B, P, dtype=torch.long), b["mask"].long()], 1)
    data = tu.get_tensordict(
        {"prompts": torch.zeros(B, P, dtype=torch.long), "responses": torch.zeros(B, T, dtype=torch.long),
         "attention_mask": am, "response_mask": b["mask"].long(), "old_log_probs": b["old"], "advantages": b["adv"]},
        non_tensor_dict={"dp_size": 1, "batch_num_tokens": int(b["mask"].sum()), "global_batch_size": B})
    loss, metrics = ppo_loss(actor_cfg, {"log_probs": torch.cat(flat)}, data)
    return loss, {k: v.aggregate() for k, v in metrics.items()}


@pytest.mark.parametrize("name", ["oapl", "shifted_regression", "opmd_lme", "opmd_above", "ppo_dual_clip", "gspo",
                                  "cispo", "sapo"])
def test_recipe_overrides_compose_and_run_through_ppo_loss(compose, name):
    from verl.utils.config import omega_conf_to_dataclass

    rec = zv.recipe(name)
    cfg = compose(rec.overrides() + ["actor_rollout_ref.actor.use_kl_loss=false"])  # the policy loss alone
    assert cfg.actor_rollout_ref.actor.policy_loss.loss_mode == rec.loss_mode
    assert cfg.algorithm.adv_estimator == rec.adv_estimator
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    b = grouped_batch(3, name) if name in zv.REGISTERED else make_batch(3, B=16)
    b = {k: (v.detach().float() if v.is_floating_point() else v) for k, v in b.items()}
    loss, metrics = ppo_loss_through_verl(actor, b)
    obj = make_objective(name)
    m = b["mask"].float()
    adv = b["adv_seq"] * (m.sum(-1) > 0) if obj.level == "sequence" else b["adv"]
    zoo = zv.aggregate(obj.loss(b["lp"], b["old"], adv, m), m, actor.loss_agg_mode, dp_size=1,
                       batch_num_tokens=int(m.sum()), global_batch_size=m.shape[0])
    assert abs(loss.item() - zoo.item()) <= 1e-5  # float32 end to end
    if obj.family == "regression":
        assert metrics["actor/zoo/eta_groups"] == 1.0 and math.isfinite(metrics["actor/zoo/eta_lambert"])
        assert math.isfinite(metrics["actor/zoo/regime"]) and math.isfinite(metrics["actor/zoo/k3_kl"])


def test_every_recipe_names_existing_keys(compose):
    """Every override line of every recipe sets a key of verl's config (or adds one with '+')."""
    cfg = compose([])
    for name in sorted(set(zv.BUILTIN) | set(zv.REGISTERED)):
        for line in zv.recipe(name).overrides():
            key = line.split("=", 1)[0]
            if key.startswith("+"):
                assert OmegaConf.select(cfg, key[1:]) is None, (name, line)  # a new key, in an existing section
                assert OmegaConf.select(cfg, key[1:].split(".")[0]) is not None, (name, line)
            else:
                assert OmegaConf.select(cfg, key, default="<missing>") != "<missing>", (name, line)


def test_docs_show_the_recipes():
    """docs/integrations.md's Hydra lines for (a) and (b) are recipe(...).overrides(), verbatim."""
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "integrations.md")) as f:
        doc = f.read()
    for name, title in [("shifted_regression", "### (a)"), ("oapl", "### (b)")]:
        block = doc.split(title, 1)[1].split("```bash", 1)[1].split("```", 1)[0]
        lines = [line.strip().rstrip("\\").strip().strip("'") for line in block.strip().splitlines()]
        assert lines == zv.recipe(name).overrides(), name


def test_verl_imports_the_module_in_its_processes():
    """VERL_USE_EXTERNAL_MODULES=sims.integrations.verl: a fresh process that imports verl has the zoo losses."""
    code = ("import verl\nfrom verl.trainer.ppo import core_algos as c\n"
            "print(sorted(k for k in c.POLICY_LOSS_REGISTRY if k.startswith('zoo_')))\n"
            "print(sorted(k for k in c.ADV_ESTIMATOR_REGISTRY if k.startswith('zoo_')))")
    env = dict(os.environ, VERL_USE_EXTERNAL_MODULES="sims.integrations.verl")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    losses, advs = out.stdout.strip().splitlines()
    assert eval(losses) == sorted(f"zoo_{n}" for n in zv.REGISTERED)
    assert eval(advs) == sorted(zv.ADVANTAGE_ESTIMATORS)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_unknown_objective_lists_the_valid_names():
    for call in (lambda: zv.recipe("ppo2"), lambda: zv.register_objective("ppo2"), lambda: zv.make_policy_loss("ppo2")):
        with pytest.raises(ValueError, match="oapl") as err:
            call()
        assert "ppo2" in str(err.value)


def test_objectives_verl_cannot_run_are_refused():
    with pytest.raises(ValueError, match="reference log-probabilities"):
        zv.recipe("astar_po")
    with pytest.raises(ValueError, match="reference log-probabilities"):
        zv.register_objective("astar_po")
    with pytest.raises(ValueError, match="rollout-correction"):
        zv.make_policy_loss("tis")


def test_version_outside_the_tested_range(monkeypatch):
    monkeypatch.setattr(integ.importlib.metadata, "version", lambda name: "0.8.2")
    monkeypatch.delenv(integ.SKIP_VERSION_CHECK_ENV, raising=False)
    with pytest.raises(ImportError, match=r"verl 0\.8\.2 .* tested range verl>=0\.9\.1,<0\.10"):
        integ.require("verl")
    monkeypatch.setattr(integ.importlib.metadata, "version", lambda name: "0.10.0rc1")
    with pytest.raises(ImportError, match=r"0\.10\.0rc1"):
        integ.require("verl")
    monkeypatch.setenv(integ.SKIP_VERSION_CHECK_ENV, "1")
    assert integ.require("verl") == "0.10.0rc1"


def test_missing_verl_names_the_extra(monkeypatch):
    def missing(name):
        raise integ.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(integ.importlib.metadata, "version", missing)
    with pytest.raises(ImportError, match=r'pip install torch==2\.13\.0 -e "\.\[verl\]"'):
        integ.require("verl")


def test_verl_registers_before_and_after_import(user_module):
    from verl.trainer.ppo.core_algos import get_policy_loss_fn

    from theory.objectives import register_objective, unregister_objective

    fn = get_policy_loss_fn("zoo_capped_reinforce")  # registered after this module imported the adapter
    assert fn.objective.name == "capped_reinforce"
    # and in a fresh process, registered before the adapter is imported
    code = ("import my_objectives, sims.integrations.verl; from verl.trainer.ppo.core_algos import get_policy_loss_fn; "
            "print(get_policy_loss_fn('zoo_capped_reinforce').objective.params['cap'])")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=user_module[1], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": f"{root}:{user_module[1]}"})
    assert out.returncode == 0 and out.stdout.strip() == "2.0", out.stderr[-2000:]
    spec = register_objective("capped_reinforce_late", loss=user_module[0].capped_reinforce_loss, cap=3.0)
    try:
        late = get_policy_loss_fn("zoo_capped_reinforce_late")  # registered after the import
        assert late.objective.params["cap"] == 3.0
        lp = torch.randn(4, 3, dtype=torch.float64)
        old = lp + 0.3 * torch.randn(4, 3, dtype=torch.float64)
        adv = torch.randn(4, 1, dtype=torch.float64).expand(4, 3)
        m = torch.ones(4, 3, dtype=torch.bool)
        value, _ = late(old_log_prob=old, log_prob=lp, advantages=adv, response_mask=m)
        want = make_objective(spec.name).loss(lp, old, adv, m).mean()
        assert torch.allclose(value, want, rtol=1e-12)
        assert zv.recipe("capped_reinforce_late").loss_mode == "zoo_capped_reinforce_late"
    finally:
        unregister_objective("capped_reinforce_late")
