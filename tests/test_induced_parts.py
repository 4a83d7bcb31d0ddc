"""The parts of the KKT solver and of the face search, one at a time, and the shared root finder's options.

Hand-worked values: REINFORCE's weight ``h = A`` (no ratio) has the closed-form
per-arm root ``u = (A - c/mu)/kappa`` and, with every arm kept and no drift,
``kappa = E_mu[A]``; PG's weight ``h = u A`` with tied advantages has a plateau
``q = h/u = A`` over every ``u``, so the whole simplex is stationary.
"""

from __future__ import annotations

import numpy as np
import torch

from theory._roots import safeguarded_newton
from theory.induced import (
    _arm_ratios,
    _face_ranges,
    _face_start,
    _kappa_brackets,
    _KKTSystem,
    _Plateau,
    _plateau_end,
    _solve_kappa,
    _sorted_drift,
    solve_kkt,
    stationary_face,
)


def _reinforce(u, a):
    return a * torch.ones_like(u)


def _pg(u, a, m=None):
    return u * a


# ---- the shared root finder


def test_safeguarded_newton_stops_at_the_rounding_level_of_f():
    calls = []

    def fun(x, idx):
        calls.append(x.size)
        return x - 0.3, np.ones_like(x), np.full_like(x, 1.0)  # every |f| below its "rounding level"

    x = safeguarded_newton(fun, np.zeros(3), np.ones(3), np.full(3, 0.9), sign_lo=-1.0)
    np.testing.assert_array_equal(x, 0.9)  # stopped at the start
    assert calls == [3]  # sign_lo given: f(lo) is not evaluated


def test_safeguarded_newton_sign_lo_orients_a_bracket_whose_low_end_is_within_rounding():
    """A decreasing f with f(lo) = -1e-14 (rounding): sign_lo=+1 still finds the root at lo."""

    def fun(x, idx):
        return -(x - 1e-14), -np.ones_like(x)

    x, lo, hi = safeguarded_newton(fun, np.array([0.0]), np.array([5.0]), sign_lo=1.0, bracket=True)
    assert abs(x[0] - 1e-14) < 1e-15
    assert lo[0] <= x[0] <= hi[0]


def test_safeguarded_newton_bisects_where_there_is_no_derivative_and_returns_the_bracket():
    """f = sign(x - 0.3) has no Newton step (f' = NaN): bisection to the jump, bracket around it."""

    def fun(x, idx):
        return np.sign(x - 0.3), np.full_like(x, np.nan)

    x, lo, hi = safeguarded_newton(fun, np.array([0.0]), np.array([1.0]), bracket=True)
    assert lo[0] <= 0.3 <= hi[0]
    assert hi[0] - lo[0] <= 4e-16
    assert abs(x[0] - 0.3) <= 4e-16


# ---- the KKT solver's parts


def test_arm_ratios_match_the_closed_form_of_a_ratio_free_weight():
    mu = np.array([0.2, 0.3, 0.5, 0.5])
    a = np.array([1.0, 2.0, 0.5, 3.0])
    kappa = np.array([1.5, 1.5, 2.0, 1.0])
    c = np.array([0.0, 0.1, 0.0, 0.2])
    u, dudk = _arm_ratios(_reinforce, mu, a, kappa, c, h0=a)
    want = np.minimum((a - c / mu) / kappa, 1.0 / mu)  # the last arm is capped at u = 1/mu
    np.testing.assert_allclose(u, want, rtol=1e-14)
    np.testing.assert_allclose(dudk[:3], -u[:3] / kappa[:3], rtol=1e-14)  # du/dkappa = u/(h' - kappa)
    assert dudk[3] == 0.0


def test_sorted_drift_by_hand():
    """m = mu h(0+) = (0.4, 0.32, -0.2): the last arm leaves (m <= c), c = -(-0.2)/2 = 0.1."""
    M = np.array([[0.4, 0.4, 0.2]])
    h0 = np.array([[1.0, 0.8, -1.0]])
    np.testing.assert_allclose(_sorted_drift(M, M > 0, h0), [0.1], rtol=1e-14)


def test_kappa_solve_of_a_ratio_free_weight_is_the_mean_advantage():
    M = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    A = np.array([[1.0, 2.0, 1.5], [0.5, 0.5, 2.0]])
    sup = M > 0
    system = _KKTSystem(_reinforce, M, A, sup, np.where(sup, A, 0.0), 0.0)
    rows, c = np.arange(2), np.zeros(2)
    y0 = np.zeros(2)
    lo, hi, valid = _kappa_brackets(system, rows, c, y0)
    assert valid.all()
    y, lo_f, hi_f = _solve_kappa(system, rows, c, y0, lo, hi)
    np.testing.assert_allclose(np.exp(y), (M * A).sum(-1), rtol=1e-14)  # sum mu A/kappa = 1
    assert np.all((lo_f <= y) & (y <= hi_f))
    F, _, _ = system.mass(y, rows, c)
    assert np.all(np.abs(F) <= 1e-14)


def test_solve_kkt_thresholds_reinforce_by_the_drift():
    """REINFORCE's target (mu A - c)_+ / kappa: the arm with mu A <= c leaves."""
    mu = np.array([0.4, 0.4, 0.2])
    adv = np.array([1.0, 0.8, -1.0])
    sol = solve_kkt(_reinforce, mu, adv)
    c = 0.1  # test_sorted_drift_by_hand
    want = np.maximum(mu * adv - c, 0.0)
    np.testing.assert_allclose(sol.pi, want / want.sum(), atol=1e-12)
    np.testing.assert_allclose(sol.drift, c, rtol=1e-12)
    np.testing.assert_allclose(sol.kappa, want.sum(), rtol=1e-12)
    assert sol.converged


# ---- the face search's parts


def test_plateau_of_pg_with_tied_advantages_spans_every_ratio():
    M = np.array([[0.25, 0.25, 0.5]])
    A = np.ones((1, 3))
    U = np.ones((1, 3))
    sup = M > 0
    plateau = _Plateau(_pg, M, A, U, 1e-9)
    np.testing.assert_allclose(plateau.kappa, [1.0])
    umax = 1.0 / M
    grid, flat, j0, start = _face_start(plateau, U, umax, sup)
    assert flat.all() and start.all()
    lo = _plateau_end(plateau, grid, flat, j0, start, U, -1)
    hi = _plateau_end(plateau, grid, flat, j0, start, U, 1)
    np.testing.assert_array_equal(lo, 0.0)  # the run reaches the first grid point: u = 0
    np.testing.assert_allclose(hi, umax)
    pmin, pmax = _face_ranges(M, M * U, U, sup, start, [lo, hi])
    np.testing.assert_array_equal(pmin, 0.0)
    np.testing.assert_array_equal(pmax, 1.0)
    set_valued, pi_min, pi_max = stationary_face(_pg, M, A, M * U)
    assert set_valued.all()
    np.testing.assert_array_equal(pi_min, pmin)
    np.testing.assert_array_equal(pi_max, pmax)


def test_face_ranges_respect_the_normalization():
    """Arm 0 may move on [0.5, 2] (u), arm 1 is fixed: pi_0 is pinned by sum pi = 1."""
    M = np.array([[0.5, 0.5]])
    U = np.ones((1, 2))
    start = np.array([[True, False]])
    ends = [np.array([[0.5, 1.0]]), np.array([[2.0, 1.0]])]
    pmin, pmax = _face_ranges(M, M * U, U, M > 0, start, ends)
    np.testing.assert_allclose(pmin, [[0.5, 0.5]])
    np.testing.assert_allclose(pmax, [[0.5, 0.5]])
