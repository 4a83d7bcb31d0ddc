"""The parts of theory.flow's logit_flow and multistart_minimize, each on its own (hand-worked values)."""

import numpy as np
import pytest
import torch

from theory.flow import (
    CHECKPOINTS_PER_DECADE,
    NEUTRAL_RATE,
    START_SCALES,
    VERTEX_LOGIT,
    _BanditLoss,
    _best_and_distinct,
    _check_multistart_args,
    _checkpoints,
    _Field,
    _flow_scale,
    _FlowOutput,
    _FlowSystem,
    _initial_point,
    _Layout,
    _softmax_np,
    _starts,
)

MU = np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4], [0.25, 0.0, 0.25, 0.5]])
ADV = np.array([[1.0, -0.5, 0.2, 0.0], [0.3, 0.1, -0.2, 0.4], [0.5, 0.0, -1.0, 0.2]])


def _regression_loss(beta):
    return lambda log_pi, log_mu, adv: (log_mu.exp() * (beta * (log_pi - log_mu) - adv) ** 2).sum(-1)


def _layout():
    return _Layout(MU > 0, (3,))


def test_softmax_np_masks_arms():
    theta = np.array([[1.0, 2.0, 3.0, 50.0], [0.0, 0.0, 0.0, 0.0], [-1.0, 9.0, 0.5, 0.5]])
    pi, log_pi = _softmax_np(theta, MU > 0)
    assert (pi[MU == 0] == 0).all() and np.isneginf(log_pi[MU == 0]).all()
    np.testing.assert_allclose(pi.sum(-1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(pi[1], 0.25, rtol=0, atol=0)
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(pi[0, :3], e / e.sum(), rtol=1e-15)
    np.testing.assert_allclose(np.exp(log_pi[MU > 0]), pi[MU > 0], rtol=1e-15)


def test_layout_state_round_trip_and_jacobian_pattern():
    lay = _layout()
    assert (lay.B, lay.K, lay.n) == (3, 4, 10)
    theta = np.arange(12.0).reshape(3, 4) + 1.0
    y = lay.state(theta)
    np.testing.assert_array_equal(y, theta[MU > 0])
    np.testing.assert_array_equal(lay.theta(y), np.where(MU > 0, theta, 0.0))
    assert lay.to_torch(y).shape == (3, 4)
    rows, cols, gather = lay.jacobian_pattern()
    assert rows.size == 3 * 3 + 4 * 4 + 3 * 3
    # every nonzero couples two support arms of one bandit, and gathers that entry of its block
    b, i, j = np.unravel_index(gather, (3, 4, 4))
    pos = np.flatnonzero((MU > 0).ravel())
    np.testing.assert_array_equal(pos[rows], b * 4 + i)
    np.testing.assert_array_equal(pos[cols], b * 4 + j)


def test_checkpoints_four_per_decade_anchored_at_t_max():
    grid = _checkpoints(1e3)
    assert grid[-1] == 1e3 and np.all(np.diff(grid) > 0)
    assert grid.size == 6 * CHECKPOINTS_PER_DECADE + 1
    np.testing.assert_allclose(grid[-1 - CHECKPOINTS_PER_DECADE], 1e2, rtol=1e-15)
    np.testing.assert_allclose(grid[0], 1e-3, rtol=1e-12)
    np.testing.assert_array_equal(_checkpoints(1e-4), [1e-4])


def test_initial_point_normalizes_theta0():
    lay = _layout()
    pi0, start = _initial_point(MU, None, MU > 0, lay)
    np.testing.assert_allclose(pi0, MU, rtol=1e-15, atol=0)
    assert (start[MU == 0] == 0).all()
    th = np.where(MU > 0, 5.0, 0.0)
    pi0, start = _initial_point(MU, th, MU > 0, lay)
    np.testing.assert_allclose(start[1], np.log(0.25), rtol=1e-15)


def test_flow_scale_is_the_regression_rate():
    # with A = 0 the Hessian of sum_y mu_y (beta s_y)^2 at s = log(pi/mu) = 0 is 2 beta^2 times that of
    # sum_y mu_y s_y^2: every rate, hence the scale, is proportional to beta^2
    lay = _layout()
    _, start = _initial_point(MU, None, MU > 0, lay)
    zero = np.zeros_like(ADV)
    s1 = _flow_scale(_Field(MU, zero, MU > 0, _regression_loss(1.0), None), lay, start, True)
    s2 = _flow_scale(_Field(MU, zero, MU > 0, _regression_loss(0.1), None), lay, start, True)
    np.testing.assert_allclose(s2, 0.01 * s1, rtol=1e-12)
    field = _Field(MU, ADV, MU > 0, _regression_loss(0.1), None)
    np.testing.assert_array_equal(_flow_scale(field, lay, start, False), 1)
    with pytest.raises(ValueError, match="not finite at the initial point"):
        _flow_scale(_Field(MU, ADV, MU > 0, None, lambda u, a: a / 0.0), lay, start, True)


def test_flow_system_jacobian_matches_finite_differences():
    lay = _layout()
    _, start = _initial_point(MU, None, MU > 0, lay)
    field = _Field(MU, ADV, MU > 0, None, lambda u, a: a - 0.5 * torch.log(u))
    system = _FlowSystem(field, lay, np.array([1.0, 2.0, 0.5]), 1e-12)
    y = lay.state(start) + 0.1 * np.sin(np.arange(lay.n))
    J = system.jac(0.0, y)  # dense for this small system (tests/test_flow.py checks it equals the sparse one)
    eps = 1e-6
    fd = np.stack([(system.fun(0.0, y + eps * e) - system.fun(0.0, y - eps * e)) / (2 * eps) for e in np.eye(lay.n)], 1)
    np.testing.assert_allclose(J, fd, atol=1e-7)
    # the neutral direction contracts at NEUTRAL_RATE; a frozen bandit does not move
    _, _, lse = system.state_softmax(y)
    system.active[1] = False
    f = system.fun(0.0, y)
    assert (f[3:7] == 0).all()
    ones = lay.state(np.ones((3, 4)))
    moving = lay.state(np.repeat(system.active, 4).reshape(3, 4))
    np.testing.assert_allclose(system.fun(0.0, y + ones) - f, -NEUTRAL_RATE * ones * moving, atol=1e-12)
    assert lse.shape == (3,)


def test_flow_system_atol_and_evaluate():
    lay = _layout()
    pi0, start = _initial_point(MU, None, MU > 0, lay)
    system = _FlowSystem(_Field(MU, ADV, MU > 0, None, lambda u, a: a), lay, np.ones(3), 1e-8)
    y = lay.state(start)
    np.testing.assert_allclose(system.atol_for(y), np.clip(1e-8 / MU[MU > 0], 1e-8, 1e-3), rtol=1e-14)
    theta, pi, speed, growth, finite = system.evaluate(y)
    np.testing.assert_allclose(pi, pi0, rtol=1e-15)
    assert finite.all() and speed.shape == growth.shape == (3,)
    # PG at pi = mu: g = mu A - pi <mu, A>, v = g - <pi, g>, dpi/dt = pi (v - <pi, v>)
    g = MU * ADV - MU * (MU * ADV).sum(-1, keepdims=True)
    v = g - (MU * g).sum(-1, keepdims=True)
    dpi = MU * (v - (MU * v).sum(-1, keepdims=True))
    np.testing.assert_allclose(speed, np.abs(dpi).max(-1), rtol=1e-12)
    np.testing.assert_allclose(growth, np.where(MU > 0, v, -np.inf).max(-1), rtol=1e-12)


def test_flow_output_records_and_reports_underflow():
    lay = _layout()
    _, start = _initial_point(MU, None, MU > 0, lay)
    out = _FlowOutput(start)
    point = (start + 1.0, None, np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]), None)
    out.set(np.array([False, True, False]), point, 7.0, np.array([8.0, 9.0, 10.0]))
    assert out.t.tolist() == [0.0, 7.0, 0.0] and out.plateau[1] == 9.0 and np.isnan(out.plateau[0])
    out.set(np.array([True, False, False]), point, 2.0, np.nan)
    assert out.res[0] == 1.0 and np.isnan(out.plateau[0])
    out.note_underflow()
    assert out.message == "ok"
    out.tainted[2] = True
    out.message = "solver failed"
    out.note_underflow()
    assert out.message.startswith("solver failed; weight form") and "flat indices [2]" in out.message
    res = out.result(lay, np.ones(3))
    assert res.pi.shape == (3, 4) and not res.converged.any()


def test_multistart_args_and_starts():
    with pytest.raises(ValueError, match="seed is required"):
        _check_multistart_args(lambda *a: 0, 3, 1e-12, None)
    with pytest.raises(ValueError, match="n_starts"):
        _check_multistart_args(lambda *a: 0, True, 1e-12, 0)
    x_mu = np.log([0.5, 0.3, 0.2])
    rng = _check_multistart_args(lambda *a: 0, 4, 1e-12, 5)
    starts = _starts(x_mu, 4, rng)
    assert len(starts) == 1 + 4 + 3
    np.testing.assert_array_equal(starts[0], x_mu)
    np.testing.assert_array_equal(starts[-1], x_mu + VERTEX_LOGIT * np.eye(3)[2])
    noise = np.random.default_rng(5).standard_normal((4, 3))
    for i in range(4):
        np.testing.assert_array_equal(starts[1 + i], x_mu + START_SCALES[i % 3] * noise[i])


def test_bandit_loss_gradient_and_curvature():
    beta = 0.5
    prob = _BanditLoss(_regression_loss(beta), MU, ADV, MU > 0, (3,))
    arms = torch.as_tensor(np.flatnonzero(MU[1] > 0))
    x = prob.log_mu_np[1]
    val, grad = prob.value_and_grad(1, arms, x)
    np.testing.assert_allclose(val, (MU[1] * ADV[1] ** 2).sum(), rtol=1e-14)  # log pi = log mu
    # dL/dtheta_j = sum_y mu_y 2 (beta s_y - A_y) beta (delta_yj - pi_j) at s = 0
    r = -2 * beta * MU[1] * ADV[1]
    np.testing.assert_allclose(grad, r - MU[1] * r.sum(), rtol=1e-12, atol=1e-15)
    assert prob.min_curvature(1, arms, x) > -1e-12  # convex at the start (a Gauss-Newton PSD part)


def test_best_and_distinct_clusters_end_points():
    mask_row = np.array([True, True, False])
    arms = np.flatnonzero(mask_row)
    ends = [
        (2.0, np.array([0.0, 0.0]), True),
        (1.0, np.array([3.0, 0.0]), True),
        (1.0 + 1e-9, np.array([3.0, 1e-9]), True),  # the same minimum
        (0.5, np.array([0.0, 5.0]), False),  # lowest, but not a local minimum: still the best point
        (np.nan, np.array([1.0, 1.0]), True),
    ]
    pi, log_pi, value, n = _best_and_distinct(ends, arms, mask_row, 0)
    assert value == 0.5 and n == 2
    np.testing.assert_allclose(pi, [1 / (1 + np.exp(5.0)), np.exp(5.0) / (1 + np.exp(5.0)), 0.0], rtol=1e-15)
    assert np.isneginf(log_pi[2])
    with pytest.raises(ValueError, match="not finite at any end point for bandit 4"):
        _best_and_distinct([(np.inf, np.zeros(2), True)], arms, mask_row, 4)
