"""The 2026 objectives: weights vs autograd, equality with the reference code's formulas, targets vs flow / KKT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theory import losses as L
from theory.flow import logit_flow
from theory.induced import solve_kkt, stationarity_residual
from theory.objectives import make_objective, objective_spec
from _zoo_checks import autograd_weight, random_bandit

NEW = ("m2po_clip", "kpop", "up_grpo", "score_centering")


@pytest.mark.parametrize("name", NEW)
def test_weight_equals_autograd(name):
    obj = make_objective(name)
    for seed in range(5):
        mu, r = random_bandit(6, seed)
        if name == "m2po_clip":  # the batch's budget is a plain mean over samples: the mu-weighted one at uniform mu
            mu = np.full(6, 1 / 6)
        adv = obj.population_advantage(mu, r)
        u = np.exp(np.random.default_rng(seed).normal(scale=0.5, size=6))
        np.testing.assert_allclose(obj.weight(u, adv, torch.tensor(mu)).numpy(), autograd_weight(obj, mu, adv, u),
                                   rtol=1e-10, atol=1e-14)


# --- M2PO, the authors' code -------------------------------------------------------------------


def _reference_tau(sorted_delta2, target_sum):
    """Transcription of _solve_tau_from_sorted_delta2 (Infini-AI-Lab/M2PO, core_algos.py): the loop as written."""
    total = float(sorted_delta2.sum())
    if target_sum >= total - 1e-12:
        return 100000
    csum = torch.cumsum(sorted_delta2, 0)
    n = sorted_delta2.numel()
    for k in range(n):
        if (sorted_delta2[k].item() - 1e-12) * (n - k - 1) + float(csum[k]) >= target_sum - 1e-12:
            return 0.0 if k == 0 else float(sorted_delta2[k - 1].item() - 1e-12) ** 0.5
    return 100000


def _reference_m2po_loss(old_logp, logp, adv, mask, budget, miniclip_low=None, miniclip_high=None):
    """Transcription of compute_m2po_policy_loss + kpo_clip_harmful_tokens: per-token clipped loss (B, T)."""
    a = adv[:, 0]
    delta = old_logp - logp
    ratio = torch.exp(-delta)
    m = mask.bool()
    pos, neg = a > 1e-12, a < -1e-12
    d2 = delta.detach().pow(2)
    harm = torch.cat([d2[pos][(ratio[pos] > 1 + 1e-12) & m[pos]], d2[neg][(ratio[neg] < 1 - 1e-12) & m[neg]]])
    clip_low, clip_high = 0.0, 100000
    if harm.numel() and float(harm.sum()) / harm.numel() > budget + 1e-12:
        tau = _reference_tau(torch.sort(harm).values, budget * harm.numel())
        clip_low, clip_high = math.exp(-tau), math.exp(tau)
    lo, hi = 1 - clip_low, clip_high - 1
    if miniclip_low is not None and lo < miniclip_low:
        lo = miniclip_low
    if miniclip_high is not None and hi < miniclip_high:
        hi = miniclip_high
    return torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1 - lo, 1 + hi))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("floors", [(None, None), (0.3, 0.5)])
def test_m2po_clip_equals_the_reference_code(seed, floors):
    g = torch.Generator().manual_seed(seed)
    B, T = 8, 12
    logp_mu = torch.log(torch.rand(B, T, generator=g, dtype=torch.float64) * 0.9 + 0.05)
    logp = (logp_mu + 0.4 * torch.randn(B, T, generator=g, dtype=torch.float64)).requires_grad_(True)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    mask = (torch.rand(B, T, generator=g) < 0.85).double()
    mask[:, 0] = 1
    ours = L.m2po_clip_loss(logp, logp_mu, adv, mask, tau=0.04, min_eps_low=floors[0], min_eps_high=floors[1])
    ref = _reference_m2po_loss(logp_mu, logp, adv[:, None].expand(B, T), mask, 0.04, *floors)
    np.testing.assert_allclose(ours.detach().numpy() * mask.numpy(), ref.detach().numpy() * mask.numpy(), rtol=1e-12)
    (g_ours,) = torch.autograd.grad(L.aggregate(ours, mask), logp)
    (g_ref,) = torch.autograd.grad((ref * mask).sum() / mask.sum(), logp)
    np.testing.assert_allclose(g_ours.numpy(), g_ref.numpy(), rtol=1e-12, atol=1e-15)


def test_m2po_budget_level_by_hand():
    # v = (.01, .04, .09, .16), mean .075 > tau = .04, target sum .16: capping at .04 gives .13 < .16,
    # at .09 gives .23 >= .16, so the level is the breakpoint below: .04 (t = 0.2)
    v = torch.tensor([0.09, 0.01, 0.16, 0.04], dtype=torch.float64)
    level = L.m2po_budget_level(v, torch.ones(4, dtype=torch.float64), 0.04)
    assert abs(float(level) - 0.04) < 1e-11
    lo, hi = L.m2po_clip_bounds(level)
    assert abs(float(lo) - (1 - math.exp(-0.2))) < 1e-10 and abs(float(hi) - (math.exp(0.2) - 1)) < 1e-10
    # within budget, or nothing harmful: no cap, the reference's open clip [0, 1e5]
    assert math.isinf(float(L.m2po_budget_level(v, torch.ones(4, dtype=torch.float64), 0.1)))
    assert math.isinf(float(L.m2po_budget_level(v, torch.zeros(4, dtype=torch.float64), 0.04)))
    lo, hi = L.m2po_clip_bounds(torch.tensor(math.inf))
    assert float(lo) == 1.0 and float(hi) == L.M2PO_CLIP_OPEN - 1
    # the smallest value already breaks the budget: level 0, every harmful token clipped at u = 1
    assert float(L.m2po_budget_level(torch.tensor([1.0, 2.0]), torch.ones(2), 0.04)) == 0.0


def test_m2po_and_m2po_clip_sources_say_which_is_which():
    assert "AReaL" in objective_spec("m2po").source and "m2po_clip" in objective_spec("m2po").source
    assert "Infini-AI-Lab/M2PO" in objective_spec("m2po_clip").source


# --- KPop (prime-rl) -----------------------------------------------------------------------------


def _reference_kpop(trainer, inference, adv, mask, threshold=0.1, adv_tau=1.0, kl_tau=1e-3):
    """Transcription of kpop_loss_fn (prime-rl, branch feat/kpop-loss): per-token loss before the sum."""
    log_ratio = trainer - inference
    ratio = torch.exp(log_ratio)
    p = torch.exp(trainer).clamp(min=1e-6, max=1 - 1e-6)
    q = torch.exp(inference).clamp(min=1e-6, max=1 - 1e-6)

    def bkl(a, b):
        return a * torch.log(a / b) + (1 - a) * torch.log((1 - a) / (1 - b))

    masked = (bkl(p, q) > threshold) | (bkl(q, p) > threshold)
    keep = mask & ~masked
    return -(keep * (adv_tau * adv) * ratio) + kl_tau * (mask * log_ratio**2)


@pytest.mark.parametrize("seed", range(5))
def test_kpop_equals_the_reference_code(seed):
    g = torch.Generator().manual_seed(seed)
    B, T = 6, 10
    logp_mu = torch.log(torch.rand(B, T, generator=g, dtype=torch.float64) * 0.98 + 0.01)
    logp = (logp_mu + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64)).clamp(max=0).requires_grad_(True)
    adv = torch.randn(B, generator=g, dtype=torch.float64)[:, None].expand(B, T)
    mask = torch.rand(B, T, generator=g) < 0.9
    ours = L.kpop_loss(logp, logp_mu, adv, mask, kpop_threshold=0.1, adv_tau=0.7, kl_tau=0.01)
    ref = _reference_kpop(logp, logp_mu, adv, mask, 0.1, 0.7, 0.01)
    np.testing.assert_allclose((ours * mask).detach().numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-15)
    (g_ours,) = torch.autograd.grad(L.aggregate(ours, mask), logp)
    (g_ref,) = torch.autograd.grad(ref.sum() / mask.sum(), logp)
    np.testing.assert_allclose(g_ours.numpy(), g_ref.numpy(), rtol=1e-12, atol=1e-15)


def test_kpop_band_by_hand():
    # p = q = 0.5: d = 0, kept; p = 0.9, q = 0.5: d(p||q) = 0.9 ln 1.8 + 0.1 ln 0.2 = 0.3681 > 0.1, dropped;
    # p = 0.02, q = 0.01 (ratio 2, a rare token): d(p||q) = 0.02 ln 2 + 0.98 ln(0.98/0.99) = 0.00371, kept
    lp = torch.log(torch.tensor([[0.5, 0.9, 0.02]], dtype=torch.float64))
    lq = torch.log(torch.tensor([[0.5, 0.5, 0.01]], dtype=torch.float64))
    assert L.kpop_keep(lp, lq, 0.1).tolist() == [[1.0, 0.0, 1.0]]
    d = 0.9 * math.log(1.8) + 0.1 * math.log(0.2)
    assert abs(d - 0.36806) < 1e-5


# --- UP-GRPO ---------------------------------------------------------------------------------------


def test_up_grpo_by_hand():
    # A = 2: -A log pi, no ratio; A = -1 at u = 0.5 < 0.8: the plateau -(0.8)(-1) = 0.8, no gradient;
    # A = -1 at u = 1.5: unclipped -uA = 1.5 with gradient u = 1.5 on log pi
    logp = torch.log(torch.tensor([[0.3], [0.1], [0.3]], dtype=torch.float64)).requires_grad_(True)
    logp_mu = torch.log(torch.tensor([[0.6], [0.2], [0.2]], dtype=torch.float64))
    adv = torch.tensor([2.0, -1.0, -1.0], dtype=torch.float64)
    loss = L.up_grpo_loss(logp, logp_mu, adv)
    np.testing.assert_allclose(loss[:, 0].detach().numpy(), [-2 * math.log(0.3), 0.8, 1.5], rtol=1e-12)
    (g,) = torch.autograd.grad(loss.sum(), logp)
    np.testing.assert_allclose(g[:, 0].numpy(), [-2.0, 0.0, 1.5], rtol=1e-12)


def test_up_grpo_target_agrees_with_flow_and_kkt():
    obj = make_objective("up_grpo")
    rng = np.random.default_rng(11)
    mu = rng.dirichlet(np.ones(5), size=4)
    r = rng.uniform(size=(4, 5))
    it = obj.induced_target(mu, r)
    assert it.method == "closed-form" and bool(np.all(it.converged))
    adv = obj.population_advantage(mu, r)
    np.testing.assert_allclose(it.pi, mu * np.maximum(adv, 0) / (mu * np.maximum(adv, 0)).sum(-1, keepdims=True))
    # clipped negative arms carry no weight and decay only through the normalization (pi ~ 1/t): the flow
    # needs a longer horizon than the default 1e9 to certify (at 1e9 they still hold ~6e-10)
    fr = logit_flow(mu, adv, weight=lambda u, a: obj.weight(u, a), t_max=1e12)
    assert fr.converged.all()
    np.testing.assert_allclose(fr.pi, it.pi, atol=1e-6)
    kk = solve_kkt(lambda u, a: obj.weight(u, a), mu, adv, kappa_min=obj.kappa_min)
    assert kk.converged.all()
    np.testing.assert_allclose(kk.pi, it.pi, atol=1e-9)


# --- score centering ----------------------------------------------------------------------------------


def test_score_centering_by_hand():
    # two samples at one position: the expected score term is E_mu log pi = 0.5 log 0.2 + 0.5 log 0.8
    lp_all = torch.log(torch.tensor([0.2, 0.8], dtype=torch.float64)).requires_grad_(True)
    logp = lp_all.reshape(2, 1)
    expected = (0.5 * lp_all).sum().reshape(1, 1).expand(2, 1)
    adv = torch.tensor([1.0, 3.0], dtype=torch.float64)
    loss = L.score_centered_loss(logp, torch.log(torch.tensor([[0.5], [0.5]], dtype=torch.float64)), adv,
                                 logp_expected=expected)
    e = 0.5 * math.log(0.2) + 0.5 * math.log(0.8)
    np.testing.assert_allclose(loss[:, 0].detach().numpy(), [-(math.log(0.2) - e), -3 * (math.log(0.8) - e)])
    (g,) = torch.autograd.grad(loss.sum(), lp_all)
    # d/d log pi_0: -1 + (1 + 3) 0.5 = 1; d/d log pi_1: -3 + (1 + 3) 0.5 = -1 (the A's mean is removed)
    np.testing.assert_allclose(g.numpy(), [1.0, -1.0], rtol=1e-12)
    with pytest.raises(ValueError, match="needs logp_expected"):
        L.score_centered_loss(logp, logp.detach(), adv)
    with pytest.raises(ValueError, match="one expected log-probability per position"):
        L.score_centered_loss(logp, logp.detach(), adv, logp_expected=expected[:1])
    with pytest.raises(ValueError, match="needs logp_expected"):
        make_objective("score_centering").loss(logp, logp.detach(), adv)


def test_score_centering_target_agrees_with_flow_and_ignores_the_baseline():
    rng = np.random.default_rng(17)
    mu = rng.dirichlet(np.ones(5), size=6)
    r = rng.uniform(size=(6, 5))
    obj = make_objective("score_centering")
    it = obj.induced_target(mu, r)
    assert it.method == "closed-form" and bool(np.all(it.converged))
    adv = obj.population_advantage(mu, r)
    rate = mu * (adv - (mu * adv).sum(-1, keepdims=True))
    np.testing.assert_array_equal(it.pi.argmax(-1), rate.argmax(-1))
    # independent route 1: the flow, integrated with the hand weight
    fr = logit_flow(mu, adv, weight=lambda u, a: obj.weight(u, a, torch.tensor(mu)))
    assert fr.converged.all()
    np.testing.assert_allclose(fr.pi, it.pi, atol=1e-6)
    # independent route 2: the flow is constant, theta(t) = log mu + t rate, so pi(t) is known at every t
    theta = np.log(mu) + 1e4 * rate
    pi_t = np.exp(theta - theta.max(-1, keepdims=True))
    np.testing.assert_allclose(pi_t / pi_t.sum(-1, keepdims=True), it.pi, atol=1e-9)
    for offset in (-0.2, 0.1, 0.3):  # score centering's target does not move with the baseline
        np.testing.assert_array_equal(make_objective("score_centering", offset=offset).induced_target(mu, r).pi, it.pi)
    for offset in (0.1, 0.3):  # AsymRE's does: V below the mean gives an interior target, (mu A - c)_+ / E_mu[A]
        assert np.abs(make_objective("asymre", offset=offset).induced_target(mu, r).pi - it.pi).max() > 0.1
    np.testing.assert_allclose(make_objective("asymre", offset=0.0).induced_target(mu, r).pi, it.pi, atol=1e-12)


def test_score_centering_in_the_bandit_simulator_is_offset_free():
    from sims.bandit import BanditSimConfig, simulate

    def final(name, offset):
        cfg = BanditSimConfig(objective=name, objective_params=(("offset", offset),), num_contexts=3, lag=8,
                              population=True, steps=40, lr=0.3, optimizer="sgd", num_seeds=1)
        return simulate(cfg).final_policy

    base = final("score_centering", 0.0)
    # the offset's part of the loss, offset (log pi(y) - E_mu log pi), has mu-expectation 0: in the population
    # batch it cancels exactly (sampled groups cancel it only on average)
    np.testing.assert_allclose(final("score_centering", 0.4), base, rtol=0, atol=1e-12)
    assert np.abs(final("asymre", 0.4) - final("asymre", 0.0)).max() > 1e-3


def test_score_centering_in_the_token_simulator_centres_every_state():
    from sims.token_train import TokenSimConfig, simulate

    def final(name, offset, level="token"):
        cfg = TokenSimConfig(objective=name, obj_params=(("offset", offset),), V=3, T=3, lag=4, steps=30, lr=0.3,
                             optimizer="sgd", seeds=(0,), population=True, level=level, track_targets=False)
        return simulate(cfg).final_logits

    # an offset shifts every Q(s, .) and V(s) alike: centred at every state (exactly, in the population batch)
    np.testing.assert_allclose(final("score_centering", 0.5), final("score_centering", 0.0), rtol=0, atol=1e-10)
    assert np.abs(final("asymre", 0.5) - final("asymre", 0.0)).max() > 1e-3
    with pytest.raises(ValueError, match="level='token'"):
        final("score_centering", 0.0, "sequence")


def test_score_centering_says_why_verl_cannot_run_it():
    assert "top-k" in objective_spec("score_centering").verl_note


# --- targets of the numerical ones --------------------------------------------------------------


@pytest.mark.parametrize("name", ("m2po_clip", "kpop"))
def test_certified_numerical_targets_are_stationary(name):
    obj = make_objective(name)
    rng = np.random.default_rng(5)
    mu = rng.dirichlet(np.ones(4), size=6)
    r = rng.uniform(size=(6, 4))
    it = obj.induced_target(mu, r)
    adv = obj.population_advantage(mu, r)
    for i in np.flatnonzero(np.asarray(it.converged)):
        w = lambda u, a, m=torch.tensor(mu[i]): obj.weight(u, a, m)  # noqa: E731
        assert stationarity_residual(w, mu[i], adv[i], it.pi[i]) <= 1e-6
    assert np.allclose(it.pi.sum(-1), 1.0)


# --- docs/related.md -------------------------------------------------------------------------------


def test_related_doc_table_is_the_module_output():
    from pathlib import Path

    from theory.related import format_table, related_targets

    doc = (Path(__file__).resolve().parents[1] / "docs" / "related.md").read_text()
    assert format_table() in doc
    rows = {name: pi for name, _, pi in related_targets()}
    # PMD-mean's Lambert solution is the zoo's opmd target; LPO's and ideal PMD's Gibbs tilt is awr's
    np.testing.assert_array_equal(rows["PMD-mean (2602.05933)"], rows["zoo: opmd"])
    np.testing.assert_array_equal(rows["LPO (2605.06139)"], rows["zoo: awr"])
    # the Gibbs tilt by hand: mu e^{r/beta} normalized (the baseline cancels)
    mu, r = np.array([0.4, 0.3, 0.2, 0.1]), np.array([1.0, 0.0, 0.5, 0.8])
    w = mu * np.exp((r - r.max()) / 0.1)
    np.testing.assert_allclose(rows["LPO (2605.06139)"], w / w.sum(), rtol=1e-12)
    assert "eta = 1.6894" in doc
    from theory.lambert import lambert_target

    adv = make_objective("opmd", beta=0.1).population_advantage(mu, r)
    assert f"{float(lambert_target(mu, adv, 0.1)[1]):.4f}" == "1.6894"


def test_score_centering_token_level_target_is_the_vertex_of_each_state():
    from sims.token_mdp import (TokenTree, conditional_advantage, partial_credit_reward, random_policy,
                                sequence_level_target, sequence_probs, token_level_target)

    obj = make_objective("score_centering")
    tree = TokenTree(V=3, T=3)
    state = lambda m, a: obj.closed_form_target(m, a)  # noqa: E731
    differs = 0
    for seed in range(6):
        mu = random_policy(tree, seed)
        r = partial_credit_reward(tree)
        adv = r - sequence_probs(mu) @ r
        tok = token_level_target(mu, adv, tree, state)
        for m, q, p in zip(mu, conditional_advantage(mu, adv, tree), tok):  # per state: argmax mu(a|s)(Q - V)
            rate = m * (q - (m * q).sum(-1, keepdims=True))
            np.testing.assert_array_equal(p.argmax(-1), rate.argmax(-1))
            np.testing.assert_array_equal(p.max(-1), 1.0)
        seq = sequence_level_target(mu, adv, tree, state)
        leaf_mu = sequence_probs(mu)
        assert seq.argmax() == (leaf_mu * (adv - leaf_mu @ adv)).argmax()
        differs += int(sequence_probs(tok).argmax() != seq.argmax())
    assert differs >= 1  # the per-state rule and the whole-sequence rule pick different completions
