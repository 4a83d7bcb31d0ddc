"""verl 0.9.1's DPPO (TV, KL), GMPO, Clip-Cov and KL-Cov in the zoo (``theory.zoo_verl``).

* each zoo loss equals verl's built-in (value and gradient to 1e-6) on ragged random batches, at verl's
  default settings and at others, for every ``loss_agg_mode`` with and without the global-batch
  normalizers (skipped without verl, like ``tests/test_integrations_verl.py``; CI step 2 runs it with verl);
  verl's ``bypass_mode`` is the zoo's ``ppo`` / ``cispo`` (it is a way to run those, not a loss of its own);
* hand-worked values, one case per loss;
* the population weights: against the autograd of the loss on a batch whose token counts are
  ``N mu`` (the batch statistics of Clip-Cov and KL-Cov are then the population's);
* the targets: DPPO-TV's linear program (scipy's ``linprog``) against explicit Euler on the flow in a
  regime where the flow stops in finite time; GMPO's against PPO's LP face with the ratio range
  ``[e^-eps, e^eps]`` (``theory.induced.ppo_clip_target_set``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch

from theory import losses as L
from theory.induced import euler_flow, population_surrogate, ppo_clip_target_set
from theory.objectives import make_objective

TOL = 1e-6
NAMES = ("dppo_tv", "dppo_kl", "gmpo", "clip_cov", "kl_cov")
GLOBAL = {"dp_size": 2, "batch_num_tokens": 100, "global_batch_size": 20, "loss_scale_factor": 16}
AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")

#: settings other than verl's defaults: per objective, (actor settings, zoo parameters)
OTHER = {
    "dppo_tv": ({"clip_ratio_low": 0.05, "clip_ratio_high": 0.1, "clip_ratio_c": 1.5},
                dict(delta_low=0.05, delta_high=0.1, is_cap=1.5)),
    "dppo_kl": ({"clip_ratio_low": 0.02, "clip_ratio_high": 0.05, "clip_ratio_c": 20.0},
                dict(delta_low=0.02, delta_high=0.05, is_cap=20.0)),
    "gmpo": ({"clip_ratio_low": 0.1, "clip_ratio_high": 0.3}, dict(log_eps_low=0.1, log_eps_high=0.3)),
    # a wide covariance band and a large share: many candidates, and fewer drawn than there are
    "clip_cov": ({"clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "policy_loss.clip_cov_ratio": 0.1,
                  "policy_loss.clip_cov_lb": 0.02, "policy_loss.clip_cov_ub": 3.0},
                 dict(eps_high=0.28, cov_ratio=0.1, cov_low=0.02, cov_high=3.0)),
    "kl_cov": ({"policy_loss.kl_cov_ratio": 0.2, "policy_loss.ppo_kl_coef": 1.0}, dict(cov_ratio=0.2, kl_coef=1.0)),
}


def make_batch(seed, B=8, T=12, spread=0.6, dtype=torch.float64):
    """Ragged (B, T) batch (row 0 full, row 1 empty); probabilities up to ~0.9 so DPPO's masks bind."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, T + 1, (B,), generator=g)
    lens[0], lens[1] = T, 0
    mask = torch.arange(T)[None] < lens[:, None]
    lp = -torch.rand(B, T, generator=g, dtype=dtype) * 2.5 - 0.1
    old = (lp + spread * torch.randn(B, T, generator=g, dtype=dtype)).clamp(max=-1e-3)
    adv = torch.randn(B, generator=g, dtype=dtype)[:, None] * mask
    return dict(lp=lp.requires_grad_(), old=old, adv=adv, mask=mask)


def value_and_grad(loss, lp):
    (g,) = torch.autograd.grad(loss, lp)
    return loss.detach(), g


def assert_close(a, b, what):
    (va, ga), (vb, gb) = a, b
    dv, dg = (va - vb).abs().max().item(), (ga - gb).abs().max().item()
    assert dv <= TOL and dg <= TOL, f"{what}: |value diff| = {dv:.2e}, |grad diff| = {dg:.2e}"


# ---------------------------------------------------------------------------
# verl's built-in losses vs the zoo's
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def verl_api():
    pytest.importorskip("verl", reason='verl is not installed: pip install torch==2.13.0 -e ".[verl]"')
    import sims.integrations.verl as zv
    from verl.trainer.ppo import core_algos
    from verl.workers.config import ActorConfig, PolicyLossConfig

    def config(actor, info):
        actor = dict(actor)
        pl = {k.split(".", 1)[1]: actor.pop(k) for k in list(actor) if k.startswith("policy_loss.")}
        cfg = ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1,
                          policy_loss=PolicyLossConfig(**pl), **actor)
        cfg.global_batch_info.update(info)
        return cfg

    return core_algos, zv, config


def verl_and_zoo(verl_api, name, actor, params, mode, info, b, seed=0):
    """(verl, zoo) as (value, grad); the random draw of Clip-Cov seeded alike on both sides."""
    core_algos, zv, config = verl_api
    obj = make_objective(name, **params)
    m = b["mask"].to(b["lp"].dtype)
    torch.manual_seed(seed)  # Clip-Cov draws with torch.randperm on the default generator, in verl and the zoo
    v, _ = core_algos.get_policy_loss_fn(obj.spec.verl.loss_mode)(
        old_log_prob=b["old"], log_prob=b["lp"], advantages=b["adv"], response_mask=b["mask"], loss_agg_mode=mode,
        config=config(actor, info))
    torch.manual_seed(seed)
    tok = obj.loss(b["lp"], b["old"], b["adv"], m)
    # GMPO is one loss per sequence and verl averages it over the rows whatever loss_agg_mode says
    z = obj.aggregate(tok, m) if obj.level == "sequence" else zv.aggregate(tok, m, mode, **info)
    return value_and_grad(v, b["lp"]), value_and_grad(z, b["lp"])


@pytest.mark.parametrize("info", [{}, GLOBAL], ids=["local", "global"])
@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("settings", ["verl-default", "other"])
@pytest.mark.parametrize("name", NAMES)
def test_loss_equals_verls(verl_api, name, settings, mode, info):
    rec = make_objective(name).spec.verl
    actor, params = (dict(rec.actor), {}) if settings == "verl-default" else OTHER[name]
    actor.setdefault("loss_agg_mode", mode)
    actor["loss_agg_mode"] = mode
    for seed in range(3):
        verl_vg, zoo_vg = verl_and_zoo(verl_api, name, actor, params, mode, info, make_batch(seed), seed)
        assert_close(verl_vg, zoo_vg, f"{name} ({settings}) vs verl {rec.loss_mode}, {mode}, seed {seed}")


def test_verl_defaults_are_the_zoos(verl_api):
    """The recipes' settings are verl's own defaults (ActorConfig / PolicyLossConfig), except GMPO's 0.4."""
    _, _, config = verl_api
    cfg = config({}, {})
    for name in ("dppo_tv", "dppo_kl"):
        p = make_objective(name).params
        assert (p["delta_low"], p["delta_high"], p["is_cap"]) == (cfg.clip_ratio_low, cfg.clip_ratio_high,
                                                                  cfg.clip_ratio_c)
    pc, pk = make_objective("clip_cov").params, make_objective("kl_cov").params
    pl = cfg.policy_loss
    assert (pc["cov_ratio"], pc["cov_low"], pc["cov_high"]) == (pl.clip_cov_ratio, pl.clip_cov_lb, pl.clip_cov_ub)
    assert (pk["cov_ratio"], pk["kl_coef"]) == (pl.kl_cov_ratio, pl.ppo_kl_coef)


def test_the_test_batches_exercise_the_masks_and_the_draw():
    """The comparisons above can fail: masks bind on some tokens, Clip-Cov draws fewer tokens than it has candidates."""
    b = make_batch(0)
    m = b["mask"]
    for div, (lo, hi) in (("tv", (0.2, 0.2)), ("kl", (0.02, 0.05))):
        keep = L.dppo_mask(b["lp"], b["old"], b["adv"], divergence=div, delta_low=lo, delta_high=hi)[m]
        assert 0 < keep.sum() < keep.numel()
    _, p = OTHER["clip_cov"]
    tok = make_objective("clip_cov", **p).loss(b["lp"], b["old"], b["adv"], m)
    ppo = make_objective("ppo", eps_high=0.28).loss(b["lp"], b["old"], b["adv"], m)
    detached = ((tok == 0) & (ppo != 0) & m).sum()
    cov = L.covariance_score(b["lp"], b["adv"], m)
    assert 0 < detached < ((cov > 0.02) & (cov < 3.0) & m).sum()


@pytest.mark.parametrize("cap", [2.0, 5.0])
def test_bypass_reinforce_is_cispo_without_a_lower_clip(verl_api, cap):
    """verl's bypass_mode, loss_type='reinforce', token IS truncated at C: -sg(min(u, C)) A log pi = cispo(1+e_h = C)."""
    core_algos, zv, config = verl_api
    b = make_batch(4)
    cfg = config({"policy_loss.rollout_correction": {"loss_type": "reinforce", "rollout_is": "token",
                                                     "rollout_is_threshold": cap}}, {})
    v, _ = core_algos.get_policy_loss_fn("bypass_mode")(old_log_prob=b["old"], log_prob=b["lp"],
                                                        advantages=b["adv"], response_mask=b["mask"],
                                                        loss_agg_mode="token-mean", config=cfg)
    m = b["mask"].to(b["lp"].dtype)
    obj = make_objective("cispo", eps_low=None, eps_high=cap - 1.0)
    z = zv.aggregate(obj.loss(b["lp"], b["old"], b["adv"], m), m, "token-mean")
    assert_close(value_and_grad(v, b["lp"]), value_and_grad(z, b["lp"]), f"bypass reinforce, C = {cap}")


def test_bypass_ppo_clip_is_ppo(verl_api):
    core_algos, zv, config = verl_api
    b = make_batch(5)
    cfg = config({"policy_loss.rollout_correction": {"loss_type": "ppo_clip"}}, {})
    v, _ = core_algos.get_policy_loss_fn("bypass_mode")(old_log_prob=b["old"], log_prob=b["lp"],
                                                        advantages=b["adv"], response_mask=b["mask"],
                                                        loss_agg_mode="token-mean", config=cfg)
    m = b["mask"].to(b["lp"].dtype)
    z = zv.aggregate(make_objective("ppo").loss(b["lp"], b["old"], b["adv"], m), m, "token-mean")
    assert_close(value_and_grad(v, b["lp"]), value_and_grad(z, b["lp"]), "bypass ppo_clip")
