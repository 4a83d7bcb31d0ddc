"""The objective zoo: declared weights vs autograd, closed forms vs solver vs flow, aggregation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import strategies as tst
from theory.advantages import group_advantage, population_advantage
from theory.flow import logit_flow, multistart_minimize
from theory.induced import induced_target, ppo_clip_target_set, solve_kkt, stationarity_residual
from theory.lambert import lambert_stationary_points, lambert_target, regime_of
from theory.losses import AGGREGATIONS, aggregate, kl_estimate
from theory.measures import kl
from theory.objectives import OBJECTIVES, make_objective
from _zoo_checks import autograd_weight, random_bandit

RNG = np.random.default_rng(20261125)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_declared_weight_equals_autograd(name):
    obj = make_objective(name)
    if obj.couples_batch and name != "m2po":  # a batch share's limit: tests/test_zoo_verl_losses.py, N mu batches
        pytest.skip("the population weight of a batch selection (clip_cov, kl_cov) is its large-batch limit")
    for seed in range(3):
        mu, r = random_bandit(6, seed)
        if name in ("m2po", "m2po_clip"):  # a plain mean over samples: equal to the mu-weighted one at uniform mu
            mu = np.full(6, 1 / 6)
        adv = obj.population_advantage(mu, r)
        u = np.exp(np.random.default_rng(seed).normal(scale=0.4, size=6))
        h_auto = autograd_weight(obj, mu, adv, u)
        h_decl = obj.weight(u, adv, torch.tensor(mu)).numpy()
        np.testing.assert_allclose(h_auto, h_decl, rtol=1e-10, atol=1e-14)


def test_grpo_kl_weight_equals_autograd():
    obj = make_objective("grpo", kl_beta=0.04)
    mu, r = random_bandit(5, 3)
    adv = obj.population_advantage(mu, r)
    u = np.exp(np.random.default_rng(1).normal(scale=0.3, size=5))
    np.testing.assert_allclose(autograd_weight(obj, mu, adv, u), obj.weight(u, adv).numpy(), rtol=1e-10, atol=1e-14)


CLOSED = [n for n in OBJECTIVES if make_objective(n).target_kind in ("lambert", "gibbs", "linear")]
# flows at beta = 1e-3 from mu stall for astronomically long in suppressed arms; check them at moderate beta
MODERATE = {"astar_po": dict(beta=0.2, beta1=0.5), "oapl": dict(beta=0.2, beta1=1.0)}
# up_grpo's clipped negative arms decay only through the normalization (pi ~ 1/t): a longer horizon
FLOW_KW = {"up_grpo": dict(t_max=1e12)}


def _regression_loss(beta):
    return lambda log_pi, log_mu, adv: (log_mu.exp() * (beta * (log_pi - log_mu) - adv) ** 2).sum(-1)


@pytest.mark.parametrize("name", CLOSED)
def test_closed_form_agrees_with_flow_and_kkt(name):
    obj = make_objective(name, **MODERATE.get(name, {}))
    rng = np.random.default_rng(7)
    mu = rng.dirichlet(np.ones(4), size=3)
    r = rng.uniform(size=(3, 4))
    it = obj.induced_target(mu, r)
    assert it.method == "closed-form"
    adv = obj.population_advantage(mu, r)
    mu_t = torch.tensor(mu)
    fr = logit_flow(mu, adv, weight=lambda u, a: obj.weight(u, a, mu_t), **FLOW_KW.get(name, {}))
    assert fr.converged.all()
    # Negative regime (opmd_above): the closed form is the global minimizer, one of possibly several
    # local minima, and the flow from mu need not reach it (tests/test_flow_vs_closed_forms.py).
    neg = regime_of(mu, adv, obj.params["beta"]) < 0 if obj.target_kind == "lambert" else np.zeros(3, bool)
    np.testing.assert_allclose(it.pi[~neg], fr.pi[~neg], atol=1e-6)
    if neg.any():
        beta = obj.params["beta"]
        sp = lambert_stationary_points(mu[neg], adv[neg], beta)
        assert (np.abs(sp.pi - fr.pi[neg][:, None]).max(-1).min(-1) < 1e-6).all()  # the flow stops at one
        np.testing.assert_allclose(it.pi[neg], sp.pi[np.arange(neg.sum()), sp.global_index], atol=1e-12)
        # the global minimizer by an independent route: BFGS on the logits from many starts
        ms = multistart_minimize(_regression_loss(beta), mu[neg], adv[neg], n_starts=8, seed=0)
        np.testing.assert_allclose(it.pi[neg], ms.pi, atol=1e-6)
    # a weight that depends on the whole mu (TPO's batch normalization, score centering's E_mu[A]) has no per-arm
    # KKT system: its closed form is checked by the flow above
    if not obj.spec.weight_needs_mu:
        kk = solve_kkt(lambda u, a: obj.weight(u, a), mu, adv, kappa_min=obj.kappa_min)
        ok = kk.converged
        if name != "opmd_lme":  # boundary regime: kappa = 0 sits on the solver's edge
            assert ok[~neg].all()
        # negative regime: kappa = 2 beta^2 eta < 0 lies outside the solver's domain kappa > 0; it must
        # say so, not return a point
        assert not ok[neg].any()
        np.testing.assert_allclose(kk.pi[ok], it.pi[ok], atol=1e-9)


@pytest.mark.parametrize("name", ["cispo", "reinforce_k3"])
def test_kkt_solver_agrees_with_flow(name):
    obj = make_objective(name)
    rng = np.random.default_rng(11)
    mu = rng.dirichlet(np.ones(4), size=3)
    r = rng.uniform(size=(3, 4))
    it = obj.induced_target(mu, r, method="kkt")
    assert it.method == "kkt" and it.converged.all()
    adv = obj.population_advantage(mu, r)
    fr = logit_flow(mu, adv, weight=lambda u, a: obj.weight(u, a))
    np.testing.assert_allclose(it.pi, fr.pi, atol=1e-6)
    if obj.closed_form_target(mu, adv) is not None:  # k3: the closed form is k1's thresholded tilt
        np.testing.assert_allclose(obj.closed_form_target(mu, adv), it.pi, atol=1e-10)


def test_reinforce_threshold_hand_example():
    # mu = (1/2, 1/4, 1/4), A = (1, 1, -1): E[A] = 1/2, m = (1/2, 1/4, -1/4).
    # Survivors {0, 1}: c = 1/4 / 2 = 1/8 -> pi = ((1/2 - 1/8), (1/4 - 1/8)) / (1/2) = (3/4, 1/4).
    obj = make_objective("asymre")
    pi = obj.closed_form_target(np.array([0.5, 0.25, 0.25]), np.array([1.0, 1.0, -1.0]))
    np.testing.assert_allclose(pi, [0.75, 0.25, 0.0], atol=1e-15)


def test_k1_target_is_linear_tilt_when_all_positive():
    obj = make_objective("reinforce_k1", beta=0.5)
    mu, r = random_bandit(5, 2)
    adv = obj.population_advantage(mu, r)
    assert (adv + 0.5 > 0).all()
    expect = mu * (adv + 0.5) / (mu * (adv + 0.5)).sum()
    np.testing.assert_allclose(obj.closed_form_target(mu, adv), expect, atol=1e-14)


def test_ppo_flow_point_lies_on_the_lp_face():
    obj = make_objective("ppo")
    mu, r = random_bandit(5, 1)
    it = obj.induced_target(mu, r)
    assert it.method == "euler" and it.converged
    adv = obj.population_advantage(mu, r)
    value, lo, hi = ppo_clip_target_set(mu, adv, 0.2, 0.2)
    u = it.pi / mu
    j = (mu * np.minimum(u * adv, np.clip(u, 0.8, 1.2) * adv)).sum()
    assert j == pytest.approx(value, abs=1e-6)
    assert (it.pi >= lo - 1e-6).all() and (it.pi <= hi + 1e-6).all()
    assert (hi - lo).max() > 1e-3  # the target is genuinely a set here


def test_pg_and_topr_targets():
    mu, r = random_bandit(5, 4)
    pi = make_objective("pg").induced_target(mu, r).pi
    assert pi[np.argmax(r)] == 1.0
    obj = make_objective("topr")
    adv = obj.population_advantage(mu, r - 0.5)
    pi = obj.closed_form_target(mu, adv)
    pos = adv > 0
    np.testing.assert_allclose(pi[pos], (mu * adv)[pos] / (mu * adv)[pos].sum(), atol=1e-15)
    assert (pi[~pos] == 0).all()


@settings(max_examples=25, deadline=None)
@given(tst.bandits(), st.sampled_from(["asymre", "reinforce_k1", "topr", "opmd", "shifted_regression", "opmd_above", "awr"]))
def test_closed_forms_are_stationary_distributions(bandit, name):
    mu, r = bandit
    obj = make_objective(name)
    it = obj.induced_target(mu, r)
    ok = np.isfinite(it.pi).all(-1)
    assert np.all(it.pi[ok] >= 0)
    np.testing.assert_allclose(it.pi[ok].sum(-1), 1.0, atol=1e-12)
    assert np.all(it.residual[ok] < 1e-7)


@settings(max_examples=20, deadline=None)
@given(tst.bandits(), tst.temperatures())
def test_shifted_regression_eta_at_least_delta(bandit, beta):
    mu, r = bandit
    obj = make_objective("shifted_regression", beta=beta, delta=1.0)
    adv = obj.population_advantage(mu, r)
    from theory.lambert import lambert_target

    _, eta = lambert_target(mu, adv, beta)
    assert np.all(eta >= 1.0 - 1e-9)


@settings(max_examples=20, deadline=None)
@given(tst.bandits(), tst.temperatures(), st.floats(0.05, 2.0))
def test_opmd_above_is_in_the_negative_regime(bandit, beta, delta):
    """V = V*_beta + delta beta > V*_beta: log E_mu[e^{A/beta}] = -delta exactly, so eta < 0 (optimistic)."""
    mu, r = bandit
    obj = make_objective("opmd_above", beta=beta, beta1=beta, delta=delta)
    adv = obj.population_advantage(mu, r)
    assert regime_of(mu, adv, beta) == -1
    z = adv / beta
    m = z.max()
    assert m + np.log(np.sum(mu * np.exp(z - m))) == pytest.approx(-delta, abs=1e-9)
    pi, eta = lambert_target(mu, adv, beta)
    assert eta < 0
    # the identity eta = KL(mu || pi) + E_mu[A] / beta (docs/theory.md section 3) at the target
    assert eta == pytest.approx(float(kl(mu, pi)) + float(mu @ adv) / beta, abs=1e-8 * max(1.0, abs(eta)))


def test_opmd_above_group_advantage_by_hand():
    # r = (1, 0, 0, 1), beta = beta1 = 0.5, delta = 0.5:
    # V = 0.5 log((2 e^2 + 2) / 4) + 0.5 * 0.5 = 0.5 log((e^2 + 1) / 2) + 0.25
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    obj = make_objective("opmd_above", beta=0.5, beta1=0.5, delta=0.5)
    v = 0.5 * np.log((np.e**2 + 1) / 2) + 0.25
    want = torch.tensor([[1 - v, -v, -v, 1 - v]], dtype=torch.float64)
    torch.testing.assert_close(obj.advantages(r), want, rtol=0, atol=1e-15)
    torch.testing.assert_close(group_advantage("soft_value", r, beta1=0.5, beta=0.5, delta=0.5), want, rtol=0, atol=1e-15)
    # delta = 0 is the plain soft value (opmd_lme); the shift moves every advantage by -delta beta
    torch.testing.assert_close(
        obj.advantages(r) + 0.25, make_objective("opmd_lme", beta=0.5, beta1=0.5).advantages(r), rtol=0, atol=1e-15
    )
    # the population form on a bandit that the group enumerates exactly
    np.testing.assert_allclose(
        population_advantage("soft_value", np.full(4, 0.25), r[0].numpy(), beta1=0.5, beta=0.5, delta=0.5),
        want[0].numpy(), rtol=0, atol=1e-15,
    )
    with pytest.raises(ValueError, match="needs beta"):
        group_advantage("soft_value", r, beta1=0.5, delta=0.5)
    with pytest.raises(ValueError, match="delta must be a finite number"):
        population_advantage("soft_value", np.full(4, 0.25), r[0].numpy(), beta1=0.5, beta=0.5, delta=float("nan"))


# --- aggregation -----------------------------------------------------------


def test_aggregation_modes_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate(loss, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(loss, mask, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    assert aggregate(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx(10 / (2 * 3))
    assert aggregate(loss, mask, "seq-mean-token-sum-norm", constant=5).item() == pytest.approx(10 / 10)
    assert aggregate(torch.tensor([1.0, 3.0]), mask, "sequence").item() == pytest.approx(2.0)


def test_sequence_level_equals_token_level_for_one_token_sequences():
    logp = torch.log(torch.rand(6, 1, dtype=torch.float64))
    logp_mu = torch.log(torch.rand(6, 1, dtype=torch.float64))
    adv = torch.randn(6, dtype=torch.float64)
    seq = make_objective("opmd")
    tok = make_objective("opmd")
    from theory.losses import regression_loss

    a = aggregate(regression_loss(logp, logp_mu, adv, beta=0.1, level="sequence"), None, "sequence")
    b = aggregate(regression_loss(logp, logp_mu, adv, beta=0.1, level="token"), None, "token-mean")
    assert a.item() == pytest.approx(b.item(), rel=1e-14)
    assert seq.level == tok.level == "sequence"
    # GSPO on one-token sequences is PPO-clip with GSPO's eps
    g = make_objective("gspo")
    p = make_objective("ppo", eps_low=g.params["eps_low"], eps_high=g.params["eps_high"])
    lp = logp.clone()
    torch.testing.assert_close(g.loss(lp, logp_mu, adv), p.loss(lp, logp_mu, adv))


def test_equal_lengths_make_token_mean_and_seq_mean_agree():
    loss = torch.rand(4, 7)
    assert aggregate(loss, None, "token-mean").item() == pytest.approx(aggregate(loss, None, "seq-mean-token-mean").item())


def test_reward_scaling_changes_grpo_only_through_std():
    r = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
    grpo, dr = make_objective("grpo", eps=0.0), make_objective("dr_grpo")
    torch.testing.assert_close(grpo.advantages(3.0 * r), grpo.advantages(r))
    torch.testing.assert_close(dr.advantages(3.0 * r), 3.0 * dr.advantages(r))


def test_group_estimators_by_hand_and_population_limit():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(group_advantage("loo", r), r - torch.tensor([1 / 3, 2 / 3, 2 / 3, 1 / 3], dtype=torch.float64))
    v = group_advantage("soft_value", r, beta1=1.0)
    torch.testing.assert_close(r - v, torch.full((4,), np.log((2 * np.e + 2) / 4), dtype=torch.float64))
    # loo soft value: V_i = log mean_{j != i} e^{r_j}
    lv = group_advantage("loo_soft_value", r, beta1=1.0)
    torch.testing.assert_close(r - lv, torch.tensor([np.log((np.e + 2) / 3), np.log((2 * np.e + 1) / 3)] * 2, dtype=torch.float64)[[0, 1, 1, 0]])
    # population limit: a group that enumerates mu exactly (mu uniform) equals the population form
    mu = np.full(4, 0.25)
    np.testing.assert_allclose(population_advantage("soft_value", mu, r.numpy(), beta1=1.0), v.numpy(), atol=1e-14)
    np.testing.assert_allclose(population_advantage("shifted_mean", mu, r.numpy(), beta=0.5, delta=1.0),
                               group_advantage("shifted_mean", r, beta=0.5, delta=1.0).numpy(), atol=1e-15)


def test_kl_estimators():
    x = torch.tensor([-0.3, 0.0, 0.7], dtype=torch.float64)
    torch.testing.assert_close(kl_estimate(x, "k1"), -x)
    torch.testing.assert_close(kl_estimate(x, "k2"), 0.5 * x**2)
    torch.testing.assert_close(kl_estimate(x, "k3"), torch.exp(x) - 1 - x)


# --- errors ----------------------------------------------------------------


def test_unknown_objective_lists_valid_names():
    with pytest.raises(ValueError, match="valid objectives: pg, ppo"):
        make_objective("ppo2")


@pytest.mark.parametrize(
    "name, kw, match",
    [
        ("ppo", dict(eps_low=0.0), "eps_low must be > 0"),
        ("ppo", dict(eps_low=-0.1), "eps_low must be > 0"),
        ("ppo", dict(eps_low=1.0), r"eps_low must be < 1 \(valid: \(0, 1\)\)"),
        ("cispo", dict(eps_low=1.5), "eps_low must be < 1"),
        ("oapl", dict(beta=0.0), "beta must be > 0"),
        ("oapl", dict(beta=float("inf")), "beta must be a finite number"),
        ("opmd", dict(beta=float("nan")), "beta must be a finite number"),
        ("oapl", dict(beta1=-1.0), "beta1 must be > 0"),
        ("ppo_dual_clip", dict(dual_clip=0.5), "dual_clip must be > 1"),
        ("opmd", dict(beta="0.1"), "beta must be a number"),
        ("opmd", dict(beta=True), "beta must be a number"),
        ("opmd", dict(beta=torch.tensor([0.1, 0.2])), "tensor of shape"),
        ("asymre", dict(offset=float("inf")), "offset must be a finite number"),
        ("reinforce_k1", dict(kind="k4"), "kind must be one of"),
        ("ppo", dict(clip=0.2), "has no parameter"),
    ],
)
def test_bad_hyperparameters(name, kw, match):
    with pytest.raises(ValueError, match=match):
        make_objective(name, **kw)


def test_bad_shapes_and_groups():
    obj = make_objective("grpo")
    logp = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="mask has shape"):
        obj.loss(logp, logp, torch.zeros(2), torch.ones(2, 4))
    with pytest.raises(ValueError, match="adv has shape"):
        obj.loss(logp, logp, torch.zeros(3))
    with pytest.raises(ValueError, match="G >= 2"):
        obj.advantages(torch.zeros(4, 1))
    with pytest.raises(ValueError, match="unknown aggregation mode"):
        aggregate(logp, None, "mean")
    with pytest.raises(ValueError, match="needs logp_prox"):
        make_objective("tis").loss(logp, logp, torch.zeros(2))
    with pytest.raises(ValueError, match="NaN or inf"):
        obj.loss(torch.full((2, 3), float("nan")), logp, torch.zeros(2))
    with pytest.raises(ValueError, match="one advantage per sequence"):
        make_objective("opmd").loss(logp, logp, torch.zeros(2, 3))
    assert set(AGGREGATIONS) >= {make_objective(n).aggregation for n in OBJECTIVES}


def test_stationarity_residual_detects_a_non_fixed_point():
    obj = make_objective("opmd")
    mu, r = random_bandit(4, 5)
    adv = obj.population_advantage(mu, r)
    w = lambda u, a: obj.weight(u, a)  # noqa: E731
    assert stationarity_residual(w, mu, adv, mu) > 1e-3
    assert stationarity_residual(w, mu, adv, obj.induced_target(mu, r).pi) < 1e-10


def test_residual_is_scale_honest_when_the_weight_vanishes():
    # Found by hypothesis in CI: constant rewards make the regression's weight vanish at the
    # target and at u = 1; a rounding-level difference between pi and mu then gave residual O(1).
    obj = make_objective("opmd")
    mu = np.array([0.79421222, 0.20578778])
    adv = obj.population_advantage(mu, np.zeros(2))
    pi = mu * (1 + np.array([1e-16, -3.9e-16]))
    assert stationarity_residual(lambda u, a: obj.weight(u, a), mu, adv, pi) < 1e-12


def test_kkt_solver_leaves_float64_underflow_alone():
    # Found by benchmarks/bench_zoo_solver.py: at beta2 = 1e-3 an arm's target ratio can underflow
    # (u ~ e^-788); the solver took it for a left arm and gave it a drift, 6e-3 off the closed form.
    rng = np.random.default_rng(0)  # the benchmark's bandits: mu then r from one stream; row 736
    mu = rng.dirichlet(np.ones(16), size=1000)[736]
    r = rng.uniform(size=(1000, 16))[736]
    obj = make_objective("oapl")
    it = obj.induced_target(mu[None], r[None], method="kkt")
    cf = obj.closed_form_target(mu[None], obj.population_advantage(mu[None], r[None]))
    assert it.converged.all()
    np.testing.assert_allclose(it.pi, cf, atol=1e-11)


def test_cispo_scalerl_is_cispo_with_the_one_sided_cap_of_5():
    """The ScaleRL / TRL setting: truncate the ratio weight at 5, no lower clip; otherwise CISPO."""
    obj = make_objective("cispo_scalerl")
    assert obj.params["eps_low"] is None and 1.0 + obj.params["eps_high"] == 5.0
    ref = make_objective("cispo", eps_high=4.0)
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(6, 4, generator=g, dtype=torch.float64) - 1.0
    logp_mu = logp + 2.0 * torch.randn(6, 4, generator=g, dtype=torch.float64)  # ratios far outside [0.2, 5]
    adv = torch.randn(6, generator=g, dtype=torch.float64)[:, None].expand(6, 4)
    torch.testing.assert_close(obj.loss(logp, logp_mu, adv), ref.loss(logp, logp_mu, adv), rtol=0, atol=0)
    u = torch.exp(logp - logp_mu)
    clipped = obj.clipped(logp, logp_mu, adv, None)
    assert torch.equal(clipped, u > 5.0)  # only the upper end clips
    mu, r = random_bandit(6, 1)
    np.testing.assert_array_equal(obj.induced_target(mu, r).pi, ref.induced_target(mu, r).pi)
