"""Tests for theory.symbolic: the symbolic checks, mpmath cross-checks and the report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import symbolic as sym

REPO_ROOT = Path(__file__).resolve().parents[1]


def _real(x, tol=mpmath.mpf("1e-28")):
    """Real part of an mpmath number, asserting the imaginary part is negligible."""
    x = mpmath.mpmathify(x)
    assert abs(mpmath.im(x)) <= tol
    return mpmath.re(x)


def _numeric_ratio(branch, eta_v, A_v, beta_v):
    f = sp.lambdify((sym.eta, sym.A, sym.beta), sym.lambert_solution(branch), modules="mpmath")
    return _real(f(mpmath.mpf(eta_v), mpmath.mpf(A_v), mpmath.mpf(beta_v)))


# ---------------------------------------------------------------------------
# Symbolic checks
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "check, args",
    [
        (sym.check_lambert_solution, (0,)),
        (sym.check_lambert_solution, (-1,)),
        (sym.check_gibbs_limit, ()),
        (sym.check_curvature_factor, (0,)),
        (sym.check_curvature_factor, (-1,)),
        (sym.check_eta_identity, (3,)),
        (sym.check_eta_identity, (5,)),
        (sym.check_ratio_derivative, ()),
        (sym.check_constraint_derivative, (3,)),
        (sym.check_second_order_condition, (2,)),
        (sym.check_second_order_condition, (3,)),
    ],
)
def test_checks_pass(check, args):
    assert check(*args) is True


def test_stationarity_condition_is_derived_form():
    eq = sym.stationarity_condition()
    assert isinstance(eq, sp.Eq)
    b, e, u, A = sym.beta, sym.eta, sym.u, sym.A
    assert sp.simplify(eq.lhs - (b * sp.log(u) - A)) == 0
    assert sp.simplify(eq.rhs - (-b * e * u)) == 0
    assert sp.simplify(sym.stationarity_residual() - (b * sp.log(u) - A + b * e * u)) == 0
    # The raw derivative of the Lagrangian contains the multiplier and the arm's log-ratio.
    d = sym.lagrangian_derivative()
    assert d.has(sym.lam) and d.has(sp.log)
    assert not d.has(sp.Piecewise)


def test_lambert_solution_shape():
    z = sym.eta * sp.exp(sym.A / sym.beta)
    assert sp.simplify(sym.lambert_solution(0) - sp.LambertW(z) / sym.eta) == 0
    assert sp.simplify(sym.lambert_solution(-1) - sp.LambertW(z, -1) / sym.eta) == 0


def test_gibbs_limit_value():
    assert sp.simplify(sym.gibbs_limit() - sp.exp(sym.A / sym.beta)) == 0


def test_ratio_derivative_value():
    expected = -(sym.u**2) / (1 + sym.eta * sym.u)
    assert sp.simplify(sym.ratio_derivative() - expected) == 0


def test_eta_identity_expressions_vanish():
    assert sym.eta_identity(3) == 0
    assert sym.eta_identity(4) == 0
    assert sym.eta_identity_general() == 0


def test_second_order_two_arms_factorization():
    soc = sym.second_order_condition_two_arms()
    (m1, m2), (u1, u2), _ = sym.arm_symbols(2)
    b, e = sym.beta, sym.eta
    Q = soc.restricted_hessian[0, 0]
    S = m1 * u1**2 / (1 + e * u1) + m2 * u2**2 / (1 + e * u2)
    factored = 2 * b**2 * m1 * m2 * (1 + e * u1) * (1 + e * u2) * S
    assert sp.simplify(Q - factored) == 0
    assert soc.restricted_hessian.shape == (1, 1)
    assert soc.sign_factor.is_positive is True


# ---------------------------------------------------------------------------
# Negative tests: the checks can fail
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "wrong",
    [
        sp.exp(sym.A / sym.beta),  # Gibbs ratio is only right at eta = 0
        sp.LambertW(sym.eta * sp.exp(sym.A / sym.beta)) / sym.eta**2,
        sp.LambertW(sym.eta * sp.exp(2 * sym.A / sym.beta)) / sym.eta,  # wrong Lambert argument
        2 * sp.LambertW(sym.eta * sp.exp(sym.A / sym.beta)) / sym.eta,
    ],
)
def test_residual_detects_wrong_solution(wrong):
    assert sym._residual(wrong) != 0


def test_residual_accepts_right_solution():
    assert sym._residual(sym.lambert_solution(0)) == 0
    assert sym._residual(sym.lambert_solution(-1)) == 0


def test_invalid_arguments():
    with pytest.raises(ValueError, match="branch"):
        sym.lambert_solution(1)
    with pytest.raises(ValueError, match="K"):
        sym.eta_identity(0)
    with pytest.raises(ValueError, match="K"):
        sym.second_order_condition(4)


# ---------------------------------------------------------------------------
# Numeric cross-checks (mpmath, 30 digits)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "branch, eta_v, A_v, beta_v",
    [
        (0, "0.3", "0.7", "0.5"),
        (0, "-0.05", "0.2", "1"),
        (-1, "-0.05", "0.2", "1"),
    ],
)
def test_lambert_solution_numeric_residual(branch, eta_v, A_v, beta_v):
    with mpmath.workdps(30):
        uu = _numeric_ratio(branch, eta_v, A_v, beta_v)
        e, a, b = mpmath.mpf(eta_v), mpmath.mpf(A_v), mpmath.mpf(beta_v)
        assert uu > 0
        assert abs(mpmath.log(uu) + e * uu - a / b) < mpmath.mpf("1e-25")


def test_lambert_solution_pinned_value():
    with mpmath.workdps(30):
        uu = _numeric_ratio(0, "0.3", "0.7", "0.5")
        # reference value from mpmath (mp.dps=30): mpmath.lambertw(0.3*exp(0.7/0.5))/0.3
        ref = mpmath.mpf("2.13634509776281680646214442706")
        assert abs(uu - ref) < mpmath.mpf("1e-25")
        uu_m1 = _numeric_ratio(-1, "-0.05", "0.2", "1")
        # reference value from mpmath (mp.dps=30): mpmath.lambertw(-0.05*exp(0.2/1), -1)/(-0.05)
        ref_m1 = mpmath.mpf("84.8077350853393272945277494968")
        assert abs(uu_m1 - ref_m1) < mpmath.mpf("1e-23")


def test_gibbs_limit_numeric():
    with mpmath.workdps(30):
        a, b = mpmath.mpf("0.7"), mpmath.mpf("0.5")
        uu = _numeric_ratio(0, "1e-20", "0.7", "0.5")
        assert abs(uu - mpmath.exp(a / b)) < mpmath.mpf("1e-15")


@settings(max_examples=30, deadline=None)
@given(t=st.floats(min_value=0.01, max_value=0.99), a=st.floats(min_value=-2.0, max_value=2.0))
def test_curvature_factor_sign_by_branch(t, a):
    # z = eta*exp(a) ranges over (-1/e, 0), where both real branches exist.
    with mpmath.workdps(30):
        z = -mpmath.mpf(t) / mpmath.e
        e = z / mpmath.exp(mpmath.mpf(a))
        u0 = _real(mpmath.lambertw(z, 0)) / e
        um1 = _real(mpmath.lambertw(z, -1)) / e
        assert 1 + e * u0 > 0
        assert 1 + e * um1 < 0
        for uu in (u0, um1):
            assert uu > 0
            assert abs(mpmath.log(uu) + e * uu - mpmath.mpf(a)) < mpmath.mpf("1e-24")


def test_eta_identity_numeric_k4():
    rng = np.random.default_rng(0)
    K = 4
    mu_np = rng.dirichlet(np.ones(K))
    r_np = rng.normal(size=K)
    beta_np = rng.uniform(0.3, 2.0)
    with mpmath.workdps(30):
        mu_ = [mpmath.mpf(float(x)) for x in mu_np]
        total = mpmath.fsum(mu_)
        mu_ = [m / total for m in mu_]
        b = mpmath.mpf(float(beta_np))
        r = [mpmath.mpf(float(x)) for x in r_np]
        mean_r = mpmath.fsum(m * x for m, x in zip(mu_, r))
        A_ = [x - mean_r for x in r]  # E_mu[A] = 0

        def ratios(e):
            return [_real(mpmath.lambertw(e * mpmath.exp(a / b))) / e for a in A_]

        def constraint(e):
            return mpmath.fsum(m * x for m, x in zip(mu_, ratios(e))) - 1

        # f(0+) = E_mu[exp(A/beta)] - 1 > 0 (Jensen) and f -> -1 as eta -> inf.
        lo, hi = mpmath.mpf("1e-12"), mpmath.mpf(50)
        assert constraint(lo) > 0 > constraint(hi)
        eta_star = mpmath.findroot(constraint, (lo, hi), solver="anderson")
        assert eta_star > 0
        uu = ratios(eta_star)
        pi_ = [m * x for m, x in zip(mu_, uu)]
        assert abs(mpmath.fsum(pi_) - 1) < mpmath.mpf("1e-25")
        kl = -mpmath.fsum(m * mpmath.log(x) for m, x in zip(mu_, uu))
        ea = mpmath.fsum(m * a for m, a in zip(mu_, A_))
        assert abs(eta_star - (kl + ea / b)) < mpmath.mpf("1e-20")
        # stationarity holds arm by arm
        for a, x in zip(A_, uu):
            assert abs(b * mpmath.log(x) - a + b * eta_star * x) < mpmath.mpf("1e-25")


def test_second_order_numeric_k3():
    """With arm 3 having 1 + eta*u < 0, the restricted Hessian is PSD iff S <= 0."""
    soc = sym.second_order_condition(3)
    mus, us, _ = sym.arm_symbols(3)
    args = (sym.beta, sym.eta, *mus, *us)
    R_f = sp.lambdify(args, soc.restricted_hessian, modules="numpy")
    S_f = sp.lambdify(args, soc.S, modules="numpy")
    rng = np.random.default_rng(1)
    seen = {True: 0, False: 0}
    for _ in range(400):
        b = rng.uniform(0.2, 2.0)
        e = -rng.uniform(0.1, 2.0)
        m = rng.dirichlet(np.ones(3))
        # arms 1, 2: 1 + e*u > 0  <=> u < 1/|e|;  arm 3: u > 1/|e|
        u12 = rng.uniform(0.01, 0.99, size=2) / abs(e)
        u3 = rng.uniform(1.01, 5.0) / abs(e)
        vals = (b, e, *m, *u12, u3)
        S_v = float(S_f(*vals))
        if abs(S_v) < 1e-6:
            continue
        eig = np.linalg.eigvalsh(np.asarray(R_f(*vals), dtype=float))
        psd = bool(eig.min() >= -1e-12 * max(1.0, abs(eig).max()))
        assert psd == (S_v <= 0)
        seen[psd] += 1
    assert seen[True] > 0 and seen[False] > 0


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def script_run():
    """``python -m theory.symbolic`` run once: it prints ``latex_report()`` (the derivations take most of a minute,
    so the report's content is checked on this output rather than recomputed in-process)."""
    return subprocess.run(
        [sys.executable, "-m", "theory.symbolic"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_latex_report_content(script_run):
    rep = script_run.stdout
    assert rep.strip()
    assert "W" in rep or "LambertW" in rep
    assert "FAILED" not in rep
    assert "\\documentclass" not in rep and "\\begin{document}" not in rep


def test_module_runs_as_script(script_run):
    proc = script_run
    assert proc.returncode == 0, proc.stderr
    assert "W" in proc.stdout
