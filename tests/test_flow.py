"""Tests of the ground-truth flow and the multistart minimizer (theory.flow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.special import lambertw

from theory.flow import FlowResult, MinimizeResult, _Field, logit_flow, multistart_minimize


def _bandits(seed: int, B: int, K: int, spread: float = 0.5):
    rng = np.random.default_rng(seed)
    mu = rng.dirichlet(np.full(K, 2.0), size=B)
    r = spread * rng.standard_normal((B, K))
    adv = r - (mu * r).sum(-1, keepdims=True)  # mean baseline: E_mu[A] = 0
    return mu, adv


def _regression_loss(beta):
    bt = torch.as_tensor(np.asarray(beta, dtype=np.float64))

    def loss(log_pi, log_mu, adv):
        return (torch.exp(log_mu) * (bt * (log_pi - log_mu) - adv) ** 2).sum(-1)

    return loss


def _regression_weight(beta):
    bt = torch.as_tensor(np.asarray(beta, dtype=np.float64))

    def weight(u, adv):
        return -2.0 * bt * (bt * torch.log(u) - adv)

    return weight


def _regression_reference(mu, adv, beta):
    """Positive-regime target u = W0(eta e^{A/beta}) / eta with sum mu u = 1."""
    a = adv / beta

    def u_of(eta):
        return np.real(lambertw(eta * np.exp(a))) / eta

    def excess(eta):
        return float((mu * u_of(eta)).sum() - 1.0)

    lo, hi = 1e-12, 1.0
    assert excess(lo) > 0  # positive regime: E_mu[e^{A/beta}] > 1
    while excess(hi) > 0:
        hi *= 2.0
    eta = brentq(excess, lo, hi, xtol=1e-15, rtol=1e-15, maxiter=500)
    return mu * u_of(eta), eta


def _assert_clean(res: FlowResult):
    for name in ("pi", "residual", "t_final", "scale"):
        assert not np.isnan(getattr(res, name)).any(), name
    assert not np.isnan(res.theta).any()


# 1 -------------------------------------------------------------------------
def test_gibbs_limit_of_advantage_weighted_ce():
    mu, adv = _bandits(0, 6, 5)
    beta = np.array([2.0, 1.0, 0.5, 0.3, 0.2, 0.1])[:, None]
    bt = torch.as_tensor(beta)
    res = logit_flow(mu, adv, weight=lambda u, a: torch.exp(a / bt))
    ref = mu * np.exp(adv / beta)
    ref /= ref.sum(-1, keepdims=True)
    assert res.converged.all()
    np.testing.assert_allclose(res.pi, ref, rtol=0, atol=1e-9)
    assert (res.residual <= 1e-12).all()


def test_gibbs_with_very_improbable_arms():
    # a weight that ignores u relaxes arm z in log space at a rate ~ pi_z: arms
    # with limit pi ~ 1e-8 need flow time ~ 1e8, arms with pi ~ 1e-9 need more
    mu = np.array([0.028, 0.007, 0.532, 0.091, 0.174, 0.121, 0.006, 0.041])
    mu /= mu.sum()
    beta = 0.112
    gibbs = lambda u, a: torch.exp(a / beta)  # noqa: E731
    adv = np.array([-0.35, -0.57, 0.8, -0.2, -0.32, -0.75, -0.55, -0.3])
    ref = mu * np.exp(adv / beta)
    ref /= ref.sum()
    assert 1e-8 < ref.min() < 1e-7
    res = logit_flow(mu, adv, weight=gibbs)
    assert res.converged
    np.testing.assert_allclose(res.pi, ref, rtol=1e-7, atol=1e-13)

    adv[5:7] = [-0.95, -0.85]
    ref = mu * np.exp(adv / beta)
    ref /= ref.sum()
    assert 1e-9 < ref.min() < 1e-8
    short = logit_flow(mu, adv, weight=gibbs)  # t_max = 1e9 is not enough
    assert not short.converged and short.plateau > 1e-10
    long = logit_flow(mu, adv, weight=gibbs, t_max=1e11)
    assert long.converged
    np.testing.assert_allclose(long.pi, ref, rtol=1e-6, atol=1e-13)


# 2 -------------------------------------------------------------------------
def test_linear_weight_limit_is_mu_times_shifted_advantage():
    mu, adv = _bandits(1, 5, 6)
    beta = -adv.min(-1, keepdims=True) + np.array([0.01, 0.1, 0.5, 1.0, 3.0])[:, None]
    assert (adv + beta > 0).all()
    bt = torch.as_tensor(beta)
    res = logit_flow(mu, adv, weight=lambda u, a: a + bt)
    ref = mu * (adv + beta)
    ref /= ref.sum(-1, keepdims=True)
    assert res.converged.all()
    np.testing.assert_allclose(res.pi, ref, rtol=0, atol=1e-9)


# 3 -------------------------------------------------------------------------
def test_regression_positive_regime_matches_lambert_target():
    mu, adv = _bandits(2, 5, 6, spread=0.3)
    adv[4] += 0.05  # E_mu[A] = 0.05 > 0: still positive regime, eta = KL + E[A]/beta
    beta = np.array([1.0, 0.3, 0.05, 1e-2, 1e-3])[:, None]
    res = logit_flow(mu, adv, loss=_regression_loss(beta))
    assert res.converged.all(), res
    for b in range(mu.shape[0]):
        ref, eta = _regression_reference(mu[b], adv[b], beta[b, 0])
        np.testing.assert_allclose(res.pi[b], ref, rtol=0, atol=1e-8)
        pi = res.pi[b]
        kl = float((mu[b] * np.log(mu[b] / pi)).sum())
        identity = kl + float((mu[b] * adv[b]).sum()) / beta[b, 0]
        assert identity == pytest.approx(eta, rel=1e-6, abs=1e-9)


def test_improbable_growing_arm_is_not_mistaken_for_a_limit():
    # beta = 1e-3 bandit of the test above: the flow first drives arm 3 to
    # pi ~ 1e-37, then that arm climbs back (log-rate ~ 0.08) to pi ~ 0.014.
    mu, adv = _bandits(2, 5, 6, spread=0.3)
    mu, adv = mu[4], adv[4] + 0.05
    loss = _regression_loss(1e-3)
    ref, _ = _regression_reference(mu, adv, 1e-3)
    blind = logit_flow(mu, adv, loss=loss, growth_tol=np.inf)
    assert blind.converged and blind.pi[3] < 1e-30  # speed and plateau alone are fooled
    assert blind.growth > 1e-3
    res = logit_flow(mu, adv, loss=loss)
    assert res.converged and res.growth <= 1e-10
    np.testing.assert_allclose(res.pi, ref, rtol=0, atol=1e-8)


def test_weight_form_reports_ratio_underflow_instead_of_a_wrong_limit():
    # arm 1 has A/beta = -800: its limit pi_1 ~ e^-800 is below float range, so
    # u = pi/mu underflows; a weight in log u cannot be evaluated there.
    mu = np.array([0.5, 0.3, 0.2])
    adv = np.array([0.4, -0.8, 0.2])
    beta = 1e-3
    by_loss = logit_flow(mu, adv, loss=_regression_loss(beta))
    assert by_loss.converged
    ref, _ = _regression_reference(mu, adv, beta)
    np.testing.assert_allclose(by_loss.pi, ref, rtol=0, atol=1e-8)
    assert by_loss.theta[1] < -700  # log pi is carried exactly in the loss form
    by_weight = logit_flow(mu, adv, weight=_regression_weight(beta))
    assert not by_weight.converged
    assert "not representable" in by_weight.message
    _assert_clean(by_weight)


# 4 -------------------------------------------------------------------------
def test_loss_form_and_weight_form_reach_the_same_limit():
    mu, adv = _bandits(3, 4, 5)
    beta = np.array([1.0, 0.2, 0.05, 0.01])[:, None]
    by_loss = logit_flow(mu, adv, loss=_regression_loss(beta))
    by_weight = logit_flow(mu, adv, weight=_regression_weight(beta))
    assert by_loss.converged.all() and by_weight.converged.all()
    np.testing.assert_allclose(by_loss.pi, by_weight.pi, rtol=0, atol=1e-9)
    # the per-bandit rescaling changes the clock, never the limit
    plain = logit_flow(mu[:2], adv[:2], weight=_regression_weight(beta[:2]), rescale=False)
    assert plain.converged.all()
    np.testing.assert_array_equal(plain.scale, 1.0)
    np.testing.assert_allclose(plain.pi, by_weight.pi[:2], rtol=0, atol=1e-9)


# 5 -------------------------------------------------------------------------
def _reinforce_formula(mu, adv):
    """pi_y = (mu_y A_y - c)_+ / E_mu[A], c such that sum pi = 1."""
    ea = float((mu * adv).sum())
    ma = mu * adv

    def excess(c):
        return float(np.clip(ma - c, 0, None).sum() / ea - 1.0)

    c = brentq(excess, ma.min() - ea, ma.max(), xtol=1e-15, rtol=1e-15)
    return np.clip(ma - c, 0, None) / ea


def test_reinforce_without_ratio_reaches_the_boundary():
    mu = np.full(4, 0.25)
    adv = np.array([2.0, 1.0, -0.5, -1.0])
    assert (mu * adv).sum() > 0
    res = logit_flow(mu, adv, weight=lambda u, a: a)
    assert res.converged
    assert (res.pi[adv < 0] < 1e-8).all()
    # team's boundary form, here [5/6, 1/6, 0, 0]
    np.testing.assert_allclose(res.pi, _reinforce_formula(mu, adv), rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.pi, [5 / 6, 1 / 6, 0.0, 0.0], rtol=0, atol=1e-8)
    _assert_clean(res)


# 6 -------------------------------------------------------------------------
def test_arms_outside_support_stay_at_zero_without_nan():
    mu = np.array([[0.5, 0.0, 0.3, 0.2], [0.0, 0.6, 0.0, 0.4], [0.0, 0.0, 1.0, 0.0]])
    adv = np.array([[0.3, 5.0, -0.2, 0.1], [9.0, 0.2, -3.0, -0.3], [1.0, 2.0, 3.0, 4.0]])
    beta = 0.5
    seen = []

    def weight(u, a):
        seen.append(torch.isfinite(torch.log(u)).all().item())
        return -2.0 * beta * (beta * torch.log(u) - a)

    results = [
        logit_flow(mu, adv, loss=_regression_loss(beta)),
        logit_flow(mu, adv, weight=weight),
        logit_flow(mu, adv, weight=lambda u, a: torch.exp(a / beta)),
        logit_flow(mu, adv, weight=lambda u, a: a),
    ]
    assert all(seen)  # the weight never saw u = 0 (or 0/0)
    for res in results:
        _assert_clean(res)
        assert res.converged.all()
        assert (res.pi[mu == 0] == 0.0).all()
        assert np.isneginf(res.theta[mu == 0]).all()
        np.testing.assert_allclose(res.pi.sum(-1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(results[0].pi, results[1].pi, rtol=0, atol=1e-9)
    gibbs = mu * np.exp(adv / beta)
    np.testing.assert_allclose(results[2].pi, gibbs / gibbs.sum(-1, keepdims=True), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(results[0].pi[2], [0.0, 0.0, 1.0, 0.0])
    for b in range(2):  # the support-restricted problem is the positive regime here
        s = mu[b] > 0
        ref, _ = _regression_reference(mu[b, s], adv[b, s], beta)
        np.testing.assert_allclose(results[0].pi[b, s], ref, rtol=0, atol=1e-8)


# 7 -------------------------------------------------------------------------
def test_multistart_agrees_with_flow_and_is_deterministic():
    mu, adv = _bandits(4, 3, 5)
    mu[0, 2] = 0.0
    mu[0] /= mu[0].sum()
    adv[0] -= (mu[0] * adv[0]).sum()
    beta = np.array([1.0, 0.1, 0.01])[:, None]
    loss = _regression_loss(beta)
    flow = logit_flow(mu, adv, loss=loss)
    assert flow.converged.all()
    m1 = multistart_minimize(loss, mu, adv, n_starts=6, seed=7)
    m2 = multistart_minimize(loss, mu, adv, n_starts=6, seed=7)
    m3 = multistart_minimize(loss, mu, adv, n_starts=6, seed=8)
    assert isinstance(m1, MinimizeResult)
    np.testing.assert_allclose(m1.pi, flow.pi, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(m1.n_distinct, 1)  # convex in the positive regime
    for field in ("pi", "value", "n_distinct", "theta"):
        np.testing.assert_array_equal(getattr(m1, field), getattr(m2, field))
    np.testing.assert_allclose(m3.pi, m1.pi, rtol=0, atol=1e-8)
    s = mu > 0
    safe = np.where(s, flow.pi / np.where(s, mu, 1.0), 1.0)
    expected = np.where(s, mu * (beta * np.log(safe) - adv) ** 2, 0.0).sum(-1)
    np.testing.assert_allclose(m1.value, expected, rtol=1e-10, atol=0)
    assert m1.pi[0, 2] == 0.0


def test_multistart_finds_two_minima_of_a_double_well():
    # L = (pi_0 - 1/2)^2 ((pi_0 - 1/2)^2 - 1/16): minima at pi_0 = 1/2 +- 1/(4 sqrt 2)
    def loss(log_pi, log_mu, adv):
        x = torch.exp(log_pi[..., 0]) - 0.5
        return x**2 * (x**2 - 1 / 16)

    mu = np.array([0.5, 0.5])
    res = multistart_minimize(loss, mu, np.zeros(2), n_starts=12, seed=0)
    assert res.n_distinct == 2
    assert abs(res.pi[0] - 0.5) == pytest.approx(1 / (4 * np.sqrt(2)), abs=1e-8)
    assert res.value == pytest.approx(-1 / 1024, rel=1e-10)


# 8 -------------------------------------------------------------------------
def test_on_policy_gradient_goes_to_a_vertex_and_is_reported_honestly():
    mu = np.array([0.1, 0.2, 0.3, 0.4])
    adv = np.array([1.0, 0.2, -0.3, 0.1])  # unique best arm 0
    pg = lambda u, a: u * a  # noqa: E731  (exact importance ratio, on-policy PG)
    early = logit_flow(mu, adv, weight=pg, t_max=1e-3)
    assert not early.converged
    assert early.t_final == pytest.approx(1e-3)
    late = logit_flow(mu, adv, weight=pg)
    # 1 - pi_best decays like 1/t: it approaches the vertex ...
    assert late.pi[0] > 1 - 1e-8
    assert late.pi[0] > early.pi[0]
    # ... the speed is below tol, yet pi still moves by more than 1e-10 per decade
    assert late.residual <= 1e-12
    assert late.plateau > 1e-10
    assert not late.converged
    assert late.message == "ok"


# 9 -------------------------------------------------------------------------
def test_invalid_input_raises_value_error():
    mu = np.full(3, 1 / 3)
    adv = np.array([0.1, -0.2, 0.3])
    w = lambda u, a: a  # noqa: E731
    loss = _regression_loss(1.0)
    with pytest.raises(ValueError, match="exactly one"):
        logit_flow(mu, adv)
    with pytest.raises(ValueError, match="exactly one"):
        logit_flow(mu, adv, loss=loss, weight=w)
    with pytest.raises(ValueError, match="not normalized"):
        logit_flow(np.array([0.5, 0.4, 0.2]), adv, weight=w)
    with pytest.raises(ValueError, match="NaN"):
        logit_flow(mu, np.array([0.1, np.nan, 0.3]), weight=w)
    with pytest.raises(ValueError, match="arms"):
        logit_flow(mu, np.zeros(4), weight=w)
    with pytest.raises(ValueError, match="broadcast"):
        logit_flow(np.full((2, 3), 1 / 3), np.zeros((3, 3)), weight=w)
    with pytest.raises(ValueError, match="t_max"):
        logit_flow(mu, adv, weight=w, t_max=0.0)
    with pytest.raises(ValueError, match="not normalized"):
        multistart_minimize(loss, np.array([0.5, 0.4, 0.2]), adv, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        multistart_minimize(loss, mu, np.array([0.1, np.nan, 0.3]), seed=0)
    with pytest.raises(ValueError, match="seed"):
        multistart_minimize(loss, mu, adv, seed=None)


# supporting checks ------------------------------------------------------------
def test_theta0_does_not_change_a_unique_limit():
    mu, adv = _bandits(5, 2, 4)
    beta = np.array([[0.5], [0.1]])
    theta0 = np.array([[3.0, -2.0, 0.0, 1.0], [-4.0, 0.5, 2.0, 0.0]])
    a = logit_flow(mu, adv, weight=_regression_weight(beta))
    b = logit_flow(mu, adv, weight=_regression_weight(beta), theta0=theta0)
    assert a.converged.all() and b.converged.all()
    np.testing.assert_allclose(a.pi, b.pi, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.exp(b.theta), b.pi, rtol=1e-12, atol=0)


@pytest.mark.parametrize("form", ["loss", "weight"])
def test_jacobian_blocks_match_finite_differences(form):
    mu, adv = _bandits(6, 3, 4)
    mu[1, 1] = 0.0
    mu[1] /= mu[1].sum()
    beta = np.array([[0.7], [0.3], [0.1]])
    if form == "loss":
        field = _Field(mu, adv, mu > 0, _regression_loss(beta), None)
    else:
        field = _Field(mu, adv, mu > 0, None, _regression_weight(beta))
    theta = torch.as_tensor(np.where(mu > 0, np.log(np.where(mu > 0, mu, 1.0)), 0.0) + 0.1)
    v, J = field.blocks(theta)
    eps = 1e-6
    for j in range(4):
        d = torch.zeros_like(theta)
        d[..., j] = eps
        fd = (field.velocity(theta + d) - field.velocity(theta - d)) / (2 * eps)
        col = J[..., :, j].clone()
        col[~field.mask[..., j]] = 0.0
        fd[~field.mask[..., j]] = 0.0
        np.testing.assert_allclose(col.numpy(), fd.numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(v.numpy(), field.velocity(theta).numpy(), rtol=0, atol=1e-15)


def test_batch_shape_is_preserved():
    mu, adv = _bandits(7, 6, 3)
    res = logit_flow(mu.reshape(2, 3, 3), adv.reshape(2, 3, 3), weight=lambda u, a: torch.exp(a))
    assert res.pi.shape == (2, 3, 3) and res.theta.shape == (2, 3, 3)
    for name in ("converged", "residual", "t_final", "scale", "plateau"):
        assert getattr(res, name).shape == (2, 3)
    ref = mu * np.exp(adv)
    np.testing.assert_allclose(res.pi.reshape(6, 3), ref / ref.sum(-1, keepdims=True), rtol=0, atol=1e-9)


@pytest.mark.parametrize("batch", [1, 12])  # 1 x 6 states: dense LU; 12 x 6 = 72 > 64 states: sparse LU
def test_dense_and_sparse_jacobians_reach_the_same_limit(monkeypatch, batch):
    import theory.flow as F

    mu, adv = _bandits(11, batch, 6)
    default = logit_flow(mu, adv, weight=lambda u, a: torch.exp(a))
    monkeypatch.setattr(F, "DENSE_JACOBIAN_MAX", 0 if batch == 1 else 10**6)  # the other factorization
    other = logit_flow(mu, adv, weight=lambda u, a: torch.exp(a))
    ref = mu * np.exp(adv)
    for res in (default, other):
        assert res.converged.all()
        np.testing.assert_allclose(res.pi, ref / ref.sum(-1, keepdims=True), rtol=0, atol=1e-9)
    np.testing.assert_allclose(default.pi, other.pi, rtol=0, atol=1e-10)


def test_dense_jacobian_is_the_sparse_one():
    import theory.flow as F

    mu, adv = _bandits(12, 3, 5)
    mu[1, 2] = 0.0  # an arm outside the support: not a state
    mu /= mu.sum(-1, keepdims=True)
    field = F._Field(mu, adv, mu > 0, None, lambda u, a: u * a)
    layout = F._Layout(mu > 0, (3,))
    system = F._FlowSystem(field, layout, np.array([1.0, 2.0, 0.5]), 1e-10)
    y = np.random.default_rng(0).normal(size=layout.n)
    dense = system.jac(0.0, y)
    assert isinstance(dense, np.ndarray) and dense.shape == (14, 14)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(F, "DENSE_JACOBIAN_MAX", 0)
        sparse = system.jac(0.0, y)
    assert not isinstance(sparse, np.ndarray)
    np.testing.assert_array_equal(dense, sparse.toarray())  # tests/test_flow_parts.py: it is the derivative


def test_stall_budget_stops_a_chattering_flow_and_spares_a_moving_one():
    from theory.bandits import STANDARD_BANDITS
    from theory.objectives import make_objective

    def flow(name, bandit, **kw):
        obj, b = make_objective(name), STANDARD_BANDITS[bandit]
        mu_t = torch.as_tensor(b.mu, dtype=torch.float64)
        return logit_flow(b.mu, obj.population_advantage(b.mu, b.r), weight=lambda u, a: obj.weight(u, a, mu_t), **kw)

    # kl_cov on two-correct chatters across its covariance mask: thousands of steps short of the first checkpoint
    res = flow("kl_cov", "two-correct", max_steps=5_000, stall_steps=200)
    assert res.message.startswith("step budget exhausted: 200 solver steps from t = 0 without reaching the checkpoint")
    assert not res.converged.any() and np.isfinite(res.pi).all()
    # sapo on graded takes at most ~110 steps between checkpoints on its way to its limit: untouched
    free, budgeted = flow("sapo", "graded"), flow("sapo", "graded", stall_steps=150)
    assert budgeted.message == "ok" and np.array_equal(free.pi, budgeted.pi) and free.t_final == budgeted.t_final
    for bad in (0, 2.5, "10"):
        with pytest.raises(ValueError, match="stall_steps"):
            flow("sapo", "graded", stall_steps=bad)


def _faulty_bdf(fail_from: int, fail_to: float):
    """A BDF whose steps ``fail_from <= n < fail_to`` (counted over every instance) compute ``inf - inf`` in its
    difference table, as scipy's BDF can after a diverged Newton step."""
    from scipy.integrate import BDF

    calls = [0]

    class Faulty(BDF):
        def _step_impl(self):
            calls[0] += 1
            if fail_from <= calls[0] < fail_to:
                np.float64(np.inf) - np.float64(np.inf)  # a RuntimeWarning, or FloatingPointError under errstate
            return super()._step_impl()

    return Faulty


def test_a_step_with_a_non_finite_solver_state_is_retried(monkeypatch):
    import theory.flow as flow

    mu, adv = _bandits(7, 6, 3)
    monkeypatch.setattr(flow, "BDF", _faulty_bdf(40, 42))  # two failures in a row: retried from the last good step
    res = logit_flow(mu, adv, weight=lambda u, a: torch.exp(a))
    assert res.converged.all() and res.message == "ok"
    ref = mu * np.exp(adv)
    np.testing.assert_allclose(res.pi, ref / ref.sum(-1, keepdims=True), rtol=0, atol=1e-9)


def test_a_step_that_keeps_failing_is_reported_not_converged(monkeypatch):
    import theory.flow as flow

    mu, adv = _bandits(7, 6, 3)
    monkeypatch.setattr(flow, "BDF", _faulty_bdf(40, np.inf))
    res = logit_flow(mu, adv, weight=lambda u, a: torch.exp(a))
    assert not res.converged.any()
    assert "non-finite solver state" in res.message and np.isfinite(res.pi).all()
