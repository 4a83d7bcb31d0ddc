"""The regression objective's induced target: hand values, mpmath pins, identities, limits, domain."""

import math
import warnings

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq, minimize
from scipy.special import lambertw, logsumexp

import theory as T
from theory.strategies import bandits, deltas, temperatures


def regression_loss(pi, mu, adv, beta):
    s = np.log(pi / mu)
    return float((mu * (beta * s - adv) ** 2).sum())


def brute_force(mu, adv, beta, n_starts=60, seed=0):
    """Multi-start BFGS over logits: an independent route to the global minimizer.

    Loss and gradient in the logits: with ``s = beta (log pi - log mu) - adv``,
    ``L = sum mu s^2`` and ``dL/dth_j = 2 beta (mu_j s_j - pi_j sum_y mu_y s_y)``.
    """
    rng = np.random.default_rng(seed)
    lm = np.log(mu)

    def obj(th):
        lp = th - logsumexp(th)
        ms = mu * (beta * (lp - lm) - adv)
        return (ms * (beta * (lp - lm) - adv)).sum(), 2.0 * beta * (ms - np.exp(lp) * ms.sum())

    best = None
    for i in range(n_starts):
        th0 = lm + rng.normal(size=len(mu)) * (0.1, 1.0, 5.0)[i % 3]
        if i < len(mu):
            th0 = lm.copy()
            th0[i] += 8.0  # starts near each vertex find the far-side minima
        res = minimize(obj, th0, jac=True, method="BFGS", options={"gtol": 1e-13})
        if best is None or res.fun < best.fun:
            best = res
    return np.exp(best.x - logsumexp(best.x)), best.fun


def reference_positive(mu, adv, beta):
    """The loop a researcher writes: brentq on eta with scipy's lambertw."""
    x = np.exp(adv / beta)
    f = lambda eta: np.sum(mu * np.real(lambertw(eta * x)) / eta) - 1.0
    eta = brentq(f, 1e-14, adv.max() / beta + 1.0, xtol=1e-15, rtol=1e-15)
    return mu * np.real(lambertw(eta * x)) / eta, eta


# ---------------------------------------------------------------- hand-worked values


def test_single_arm_gives_eta_equal_to_advantage():
    # one arm: pi = 1, so beta*0 - A = -beta*eta*1  ->  eta = A/beta
    for adv in (0.7, -0.4, 0.0):
        pi, eta = T.lambert_target([1.0], [adv], 0.5)
        assert pi.tolist() == [1.0]
        assert eta == pytest.approx(adv / 0.5, abs=1e-14)


def test_constant_reward_mean_baseline_is_mu():
    mu = np.array([0.2, 0.5, 0.3])
    pi, eta = T.lambert_target(mu, np.zeros(3), 0.7)
    np.testing.assert_allclose(pi, mu, atol=1e-15)
    assert eta == 0.0


def test_soft_value_baseline_gives_gibbs_target_exactly():
    mu = np.array([0.1, 0.6, 0.3])
    r = np.array([1.0, 0.2, 0.5])
    beta = 0.25
    V = T.soft_value(mu, r, beta)
    pi, eta = T.lambert_target(mu, r - V, beta)
    np.testing.assert_allclose(pi, T.gibbs_target(mu, r, beta), atol=1e-13)
    assert abs(eta) < 1e-12


# ---------------------------------------------------------------- mpmath pins


def test_positive_regime_mpmath_reference():
    # Reference values from mpmath (mp.dps=40): findroot on eta of
    # sum_y mu_y lambertw(eta*exp(A_y/beta))/eta = 1, mu=(.5,.3,.2), r=(1,0,.5), beta=.3, V=E_mu[r].
    eta_ref = 0.47060239433897536009043180427104
    pi_ref = [0.85126654016145403747176168409187, 0.038236907253033109764920136823214, 0.11049655258551285276331817908491]
    mu, r = np.array([0.5, 0.3, 0.2]), np.array([1.0, 0.0, 0.5])
    pi, eta = T.lambert_target(mu, r - T.mean_baseline(mu, r), 0.3)
    np.testing.assert_allclose(pi, pi_ref, rtol=0, atol=2e-15)
    assert eta == pytest.approx(eta_ref, abs=2e-15)


def test_negative_regime_past_branch_point_mpmath_reference():
    # No principal-branch solution exists here; the global minimizer puts arm 1 (not the best
    # arm, which is arm 2) on W_{-1}. Reference from mpmath (mp.dps=40): findroot on eta of
    # sum_y mu_y W_{k_y}(eta e^{a_y})/eta = 1 with k = (0, -1, 0), started at the solver's eta.
    mu = np.array([0.85531249, 0.01162471, 0.1330628])
    a = np.array([-1.60566975, 0.12235363, 0.67260481])
    eta_ref = -0.083796936837632096678762930814127
    pi_ref = [0.1746720402710195744830692243576, 0.5066763443668759975323856326024, 0.31865161536210442798454514304]
    pi, eta = T.lambert_target(mu, a, 1.0)
    np.testing.assert_allclose(pi, pi_ref, rtol=0, atol=1e-12)
    assert eta == pytest.approx(eta_ref, abs=1e-12)
    sp = T.lambert_stationary_points(mu, a, 1.0)
    assert sp.count == 2  # two local minima: arm 1 or arm 2 on W_{-1}
    assert sp.branch_arm[sp.global_index] == 1 and np.argmax(a) == 2
    # and brute force agrees that this is the global minimum
    _, fmin = brute_force(mu, a, 1.0)
    assert regression_loss(pi, mu, a, 1.0) <= fmin + 1e-10


# ---------------------------------------------------------------- independent routes


def test_agrees_with_brentq_lambertw_loop_on_many_bandits():
    rng = np.random.default_rng(0)
    mu = rng.dirichlet(np.ones(16), size=200)
    r = rng.uniform(size=(200, 16))
    adv = r - (mu * r).sum(-1, keepdims=True)
    pi, eta = T.lambert_target(mu, adv, 0.5)
    for i in range(200):
        p_ref, e_ref = reference_positive(mu[i], adv[i], 0.5)
        np.testing.assert_allclose(pi[i], p_ref, rtol=0, atol=1e-12)
        assert eta[i] == pytest.approx(e_ref, abs=1e-12)


def test_global_minimum_when_principal_solution_exists_but_is_not_global():
    # mu puts 1e-6 on arm 1: moving mass there costs ~ mu log^2 u, far less than shifting arm 0.
    mu = np.array([1 - 1e-6, 1e-6])
    a = np.array([-0.1, 0.0])
    sp = T.lambert_stationary_points(mu, a, 1.0)
    assert sp.count == 2 and set(sp.branch_arm.tolist()) == {-1, 1}
    pi, _ = T.lambert_target(mu, a, 1.0)
    p_bf, f_bf = brute_force(mu, a, 1.0)
    np.testing.assert_allclose(pi, p_bf, atol=1e-6)
    assert regression_loss(pi, mu, a, 1.0) <= f_bf + 1e-12
    principal = sp.pi[sp.branch_arm == -1][0]
    assert regression_loss(principal, mu, a, 1.0) > 50 * regression_loss(pi, mu, a, 1.0)


@settings(max_examples=40, deadline=None)
@given(bandits(max_arms=5), temperatures(0.1, 10.0), st.floats(-1.0, 1.0))
def test_global_minimizer_matches_brute_force_in_every_regime(bandit, beta, shift):
    mu, r = bandit
    adv = r - T.soft_value(mu, r, beta) + shift * beta  # shift>0: positive regime, <0: negative
    pi, eta = T.lambert_target(mu, adv, beta)
    # 12 starts (one at each vertex, up to 5, the rest random at three scales), exact gradient: on these 40
    # examples they reach the minimum of 24 starts with a finite-difference gradient (or one lower by 2e-14
    # relative) in an eighth of the time of 12 such starts
    _, f_bf = brute_force(mu, adv, beta, n_starts=12)
    assert regression_loss(pi, mu, adv, beta) <= f_bf + 1e-9 * max(1.0, f_bf)


# ---------------------------------------------------------------- identities and properties


@settings(max_examples=200, deadline=None)
@given(bandits(allow_zeros=True), temperatures(), st.floats(-2.0, 2.0))
def test_eta_identity_and_normalization(bandit, beta, shift):
    mu, r = bandit
    adv = r - T.mean_baseline(mu, r) + shift
    pi, eta = T.lambert_target(mu, adv, beta)
    assert np.all(np.isfinite(pi)) and np.isfinite(eta)
    assert pi.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.all(pi[mu == 0] == 0)
    supp = mu > 0
    kl = float((mu[supp] * np.log(mu[supp] / pi[supp])).sum())
    assert eta == pytest.approx(kl + (mu * adv).sum() / beta, abs=1e-9 * max(1.0, abs(eta)))


@settings(max_examples=200, deadline=None)
@given(bandits(allow_zeros=True), temperatures(), st.floats(-1.0, 1.0))
def test_sign_of_eta_is_sign_of_soft_value_minus_baseline(bandit, beta, offset):
    mu, r = bandit
    vstar = T.soft_value(mu, r, beta)
    V = vstar + offset * beta
    _, eta = T.lambert_target(mu, r - V, beta)
    if abs(offset) > 1e-9:
        assert np.sign(eta) == -np.sign(offset)
        assert T.regime_of(mu, r - V, beta) == -np.sign(offset)


@settings(max_examples=100, deadline=None)
@given(bandits(), temperatures(), st.floats(-5.0, 5.0), st.randoms(use_true_random=False))
def test_invariances_shift_and_permutation(bandit, beta, c, rnd):
    mu, r = bandit
    V = T.mean_baseline(mu, r)
    pi, eta = T.lambert_target(mu, r - V, beta)
    pi_s, eta_s = T.lambert_target(mu, (r + c) - (V + c), beta)  # r and V shifted together
    np.testing.assert_allclose(pi_s, pi, atol=1e-12)
    perm = np.array(rnd.sample(range(len(mu)), len(mu)))
    pi_p, eta_p = T.lambert_target(mu[perm], (r - V)[perm], beta)
    np.testing.assert_allclose(pi_p, pi[perm], atol=1e-12)
    assert eta_p == pytest.approx(eta, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(bandits(), temperatures(), deltas(0.05, 3.0))
def test_shifted_mean_puts_eta_above_delta(bandit, beta, delta):
    mu, r = bandit
    V = T.shifted_mean_baseline(mu, r, beta, delta)
    pi, eta = T.lambert_target(mu, r - V, beta)
    kl = float((mu * np.log(mu / pi)).sum())
    assert eta >= delta - 1e-12
    assert eta == pytest.approx(delta + kl, abs=1e-9 * max(1, eta))


def test_batched_equals_loop_and_beta_broadcasts():
    rng = np.random.default_rng(1)
    mu = rng.dirichlet(np.ones(5), size=(3, 4))
    adv = rng.normal(size=(3, 4, 5))
    beta = np.array([0.1, 0.5, 1.0, 4.0])  # broadcasts over the last batch axis
    pi, eta = T.lambert_target(mu, adv, beta)
    assert pi.shape == (3, 4, 5) and eta.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            p1, e1 = T.lambert_target(mu[i, j], adv[i, j], beta[j])
            np.testing.assert_allclose(pi[i, j], p1, atol=1e-14)
            assert eta[i, j] == pytest.approx(e1, abs=1e-14)


# ---------------------------------------------------------------- limits


def test_beta_to_zero_mean_baseline_tends_to_linear_tilt():
    # u ~ (A/beta)/eta for A > 0 and u -> 0 for A < 0, so pi -> mu A_+ / E_mu[A_+].
    mu = np.array([0.1, 0.2, 0.3, 0.4])
    r = np.array([1.0, 0.7, 0.2, 0.0])
    A = r - T.mean_baseline(mu, r)
    lin = mu * np.maximum(A, 0) / (mu * np.maximum(A, 0)).sum()
    errs = [np.abs(T.lambert_target(mu, A, b)[0] - lin).max() for b in (1e-2, 1e-3, 1e-4)]
    assert errs[2] < 2e-3 and errs[2] < errs[1] < errs[0]  # error ~ beta log(1/beta)


def test_beta_to_infinity_tends_to_gibbs_and_mu():
    mu = np.array([0.1, 0.2, 0.3, 0.4])
    r = np.array([1.0, 0.7, 0.2, 0.0])
    A = r - T.mean_baseline(mu, r)
    for b in (1e2, 1e3, 1e4):
        pi, eta = T.lambert_target(mu, A, b)
        gap = np.abs(pi - T.gibbs_target(mu, r, b)).max()
        assert gap < 1.0 / b**2  # eta = KL = O(1/beta^2), so the Lambert and Gibbs tilts agree to O(1/beta^2)
        assert eta == pytest.approx(0.5 * (mu * (A - 0) ** 2).sum() / b**2, rel=0.05)


# ---------------------------------------------------------------- the whole domain


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e3, 1e6])
@pytest.mark.parametrize("beta", [1e-4, 1.0, 1e4])
def test_extreme_domain_has_no_nan_inf_or_warnings(scale, beta):
    rng = np.random.default_rng(int(scale * 7 + beta) % 2**32)
    K = 6
    mu = rng.dirichlet(np.ones(K) * 0.3, size=40)
    mu[:10, 0] = 1e-300
    mu[10:20, 1] = 0.0
    mu[20:30, :2] = [1e-300, 1e-200]
    mu = mu / mu.sum(-1, keepdims=True)
    a = rng.uniform(-1, 1, size=(40, K)) * scale  # a = adv/beta in [-1e6, 1e6]
    a[30:35] -= a[30:35].max(-1, keepdims=True) + 2.0  # deep negative regime
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pi, eta = T.lambert_target(mu, a * beta, beta)
    assert np.all(np.isfinite(pi)) and np.all(np.isfinite(eta))
    assert np.all(pi >= 0)
    np.testing.assert_allclose(pi.sum(-1), 1.0, atol=1e-13)
    assert np.all(pi[mu == 0] == 0)


def test_extreme_negative_regime_matches_brute_force():
    mu = np.array([0.6, 0.3, 0.1 - 1e-12, 1e-12])
    a = np.array([-3.0, -2.0, -1.0, -50.0])
    pi, eta = T.lambert_target(mu, a, 1.0)
    assert eta < 0 and np.isfinite(pi).all()
    _, f_bf = brute_force(mu, a, 1.0, n_starts=40)
    assert regression_loss(pi, mu, a, 1.0) <= f_bf + 1e-10


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "mu, adv, beta, match",
    [
        ([0.5, 0.6, -0.1], [0, 0, 0], 1.0, "negative"),
        ([0.5, 0.6, 0.1], [0, 0, 0], 1.0, "not normalized"),
        ([0.5, 0.5], [np.nan, 0], 1.0, "NaN"),
        ([0.5, 0.5], [np.inf, 0], 1.0, "inf"),
        ([0.5, 0.5], [0, 0], 0.0, "beta must be > 0"),
        ([0.5, 0.5], [0, 0], -1.0, "beta must be > 0"),
        ([0.5, 0.5], [0, 0, 0], 1.0, "arms"),
        ([[0.5, 0.5]] * 2, [[0, 0]] * 2, [1.0, 2.0, 3.0], "broadcast"),
        ([0.5, 0.5], [1e300, 0], 1e-100, r"adv/beta .* exceeds 1e\+306"),
    ],
)
def test_bad_input_raises_named_value_error(mu, adv, beta, match):
    with pytest.raises(ValueError, match=match):
        T.lambert_target(mu, adv, beta)


def test_negative_regime_two_close_roots_on_one_branch_are_found():
    # Found by hypothesis: the W_{-1} branch of the low-reward arm has two roots in
    # c = log(-eta) that an earlier scan grid stepped over; the global minimum
    # (loss 45.256997, eta = -0.46096, from multistart_minimize with 32 starts) is
    # one of them, the principal point (loss 45.426) is not global.
    mu = np.array([0.28646032, 0.20350375, 0.07395649, 0.23257571, 0.20350375])
    mu = mu / mu.sum()
    r = np.array([0.61584315, 0.4375, 0.0, 0.5, 0.4375])
    beta = 9.252987861705837
    adv = r - T.soft_value(mu, r, beta) - 0.7287118343620622 * beta
    pi, eta = T.lambert_target(mu, adv, beta)
    assert eta == pytest.approx(-0.460958383660389, rel=1e-8)
    assert regression_loss(pi, mu, adv, beta) == pytest.approx(45.25699729292948, rel=1e-9)


# ---------------------------------------------------------------- numeric extremes (mpmath references)
#
# References below are computed in mpmath at a precision that keeps O(1) differences of numbers
# of size max|a| (about 40 + log10 max|a| + log10(1/min|a|) digits): the positive regime by the
# defining equations in c = log eta (bisection, then Anderson's bracketing root finder), two-arm
# bandits in every regime by an independent route that never uses Lambert W (a scan of the loss's
# logit derivative). Tolerances: pi to 1e-14 absolute; eta to 1e-13 relative plus 64 ulps of
# max|a|, the backward-error floor (eta moves by ~|a| eps when each a_y is rounded), which only
# matters where eta << max|a|.

EPS = np.finfo(float).eps


def _dps(a):
    """Digits that keep O(1) differences of numbers of size max|a| (and of size min|a| > 0)."""
    a = np.abs(np.asarray(a, float))
    big = a.max() if a.size else 1.0
    small = a[a > 0].min() if (a > 0).any() else 1.0
    return 40 + int(max(0.0, math.log10(max(big, 1.0)))) + int(max(0.0, -math.log10(min(small, 1.0))))


def mp_positive_target(mu, a):
    """Lambert target in the positive regime, all in mpmath: bisection then Newton in c = log eta.

    Per arm t_y = log omega(a_y + c) (t + e^t = a + c) and log u_y = t_y - c; c solves
    log sum_y mu_y u_y = 0 (mu renormalized exactly), decreasing in c.
    """
    with mp.workdps(_dps(a)):
        mu = [mp.mpf(float(m)) for m in mu]
        tot = mp.fsum(mu)
        mu = [m / tot for m in mu]
        a = [mp.mpf(float(x)) for x in a]
        sup = [i for i, m in enumerate(mu) if m > 0]
        tol = mp.mpf(2) ** (-mp.mp.prec + 8)

        def log_omega(x):
            t = x if x < 1 else mp.log(x)
            for _ in range(100):
                w = mp.exp(t)
                step = (t + w - x) / (1 + w)
                t -= step
                if abs(step) <= tol * max(1, abs(t)):
                    break
            return t

        def G(c):
            return mp.log(mp.fsum(mu[i] * mp.exp(log_omega(a[i] + c) - c) for i in sup))

        lo, hi = mp.mpf(-1500), mp.log(max(a[i] for i in sup)) + 2
        for _ in range(70):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if G(mid) > 0 else (lo, mid)
        c = mp.findroot(G, (lo, hi), solver="anderson")
        s = {i: log_omega(a[i] + c) - c for i in sup}
        pi = [mu[i] * mp.exp(s[i]) if i in s else mp.mpf(0) for i in range(len(mu))]
        z = mp.fsum(pi)
        return np.array([float(p / z) for p in pi]), float(mp.exp(c))


def mp_two_arm_target(mu, a):
    """Global minimizer of sum_y mu_y (log(pi_y/mu_y) - a_y)^2 over two-arm pi, in mpmath.

    An independent route (no Lambert function): scan the logit z = log(pi_1/pi_2) on a
    signed geometric grid for sign changes of dL/dz from - to + (local minima), refine each,
    keep the smallest loss; eta = KL(mu||pi) + E_mu[a].
    """
    with mp.workdps(_dps(a)):
        m1, m2 = (mp.mpf(float(m)) for m in mu)
        m1, m2 = m1 / (m1 + m2), m2 / (m1 + m2)
        a1, a2 = (mp.mpf(float(x)) for x in a)
        lm1, lm2 = mp.log(m1), mp.log(m2)

        def parts(z):
            lp1 = -mp.log1p(mp.exp(-z)) if z > -50 else z - mp.log1p(mp.exp(z))
            lp2 = -mp.log1p(mp.exp(z)) if z < 50 else -z - mp.log1p(mp.exp(-z))
            return lp1, lp2

        def L(z):
            lp1, lp2 = parts(z)
            return m1 * (lp1 - lm1 - a1) ** 2 + m2 * (lp2 - lm2 - a2) ** 2

        def dL(z):
            lp1, lp2 = parts(z)
            return 2 * m1 * (lp1 - lm1 - a1) * mp.exp(lp2) - 2 * m2 * (lp2 - lm2 - a2) * mp.exp(lp1)

        zmax = 4 * (abs(a1) + abs(a2)) + 100
        pos = [mp.mpf(10) ** k for k in np.linspace(-8, float(mp.log10(zmax)), 400)]
        grid = [-p for p in reversed(pos)] + [mp.mpf(0)] + pos
        vals = [dL(z) for z in grid]
        minima = []
        for i in range(len(grid) - 1):
            if vals[i] < 0 <= vals[i + 1]:
                minima.append(mp.findroot(dL, (grid[i], grid[i + 1]), solver="anderson"))
        z = min(minima, key=L)
        lp1, lp2 = parts(z)
        eta = m1 * (lm1 - lp1) + m2 * (lm2 - lp2) + m1 * a1 + m2 * a2
        return np.array([float(mp.exp(lp1)), float(mp.exp(lp2))]), float(eta)


def assert_matches_reference(mu, adv, beta, pi_ref, eta_ref):
    a = np.asarray(adv, float) / beta
    pi, eta = T.lambert_target(mu, adv, beta)
    np.testing.assert_allclose(pi, pi_ref, rtol=0, atol=1e-14)
    assert abs(eta - eta_ref) <= 1e-13 * abs(eta_ref) + 64 * EPS * np.abs(a).max(), (eta, eta_ref)
    if abs(eta_ref) > 64 * EPS * np.abs(a).max():  # the sign is determined by the input
        assert T.regime_of(mu, adv, beta) == np.sign(eta_ref)


MU3, ADV3 = np.array([0.2, 0.5, 0.3]), np.array([1.0, -0.5, 0.25])


@pytest.mark.parametrize(
    "adv, beta",
    [
        pytest.param(ADV3, 1e-8, id="A/beta-1e8"),
        pytest.param(ADV3, 1e-12, id="A/beta-1e12"),
        pytest.param(ADV3, 1e-16, id="A/beta-1e16"),
        pytest.param(ADV3, 1e-20, id="beta-1e-20"),
        pytest.param(ADV3, 1e-300, id="beta-1e-300"),
        pytest.param(ADV3 * 1e300, 1.0, id="A-1e300-beta-1"),
        pytest.param(ADV3 * 1e306, 1.0, id="A-1e306-the-limit"),
        pytest.param(ADV3 + 0.1, 1e300, id="beta-1e300"),
        pytest.param(ADV3 * 1e-300 + 1e-301, 1.0, id="A-1e-300"),
    ],
)
def test_positive_regime_at_numeric_extremes_matches_mpmath(adv, beta):
    # Before the log-space solve eta lost 1e-7 at |A/beta| = 1e8 and 0.5 at 1e16, and came out 0
    # (with regime +1) at beta = 1e-20; at beta = 1e300 it was reported 0 for any sign.
    pi_ref, eta_ref = mp_positive_target(MU3, np.asarray(adv) / beta)
    assert_matches_reference(MU3, adv, beta, pi_ref, eta_ref)


@pytest.mark.parametrize("mu", [[0.3, 0.7], [1e-6, 1 - 1e-6]], ids=["mu-0.3", "mu-1e-6"])
@pytest.mark.parametrize(
    "adv, beta",
    [
        pytest.param([2.0, 1.0], 1e-12, id="positive-1e12"),
        pytest.param([1.0, -1.0], 1e-16, id="positive-1e16"),
        pytest.param([-1.0, -2.0], 1e-8, id="negative-1e8"),
        pytest.param([-2.0, -1.0], 1e-16, id="negative-1e16"),
        pytest.param([-1.0, -2.0], 1e-300, id="negative-beta-1e-300"),
        pytest.param([-2.0, -1.0], 1e-300, id="negative-other-arm-beta-1e-300"),
        pytest.param([1.0, -1.0], 1e300, id="beta-1e300"),
        pytest.param([-2.0, -1.0], 1e300, id="negative-beta-1e300"),
        pytest.param([2.0, 1.0], 1e300, id="positive-beta-1e300"),
    ],
)
def test_two_arm_targets_at_numeric_extremes_match_a_lambert_free_route(mu, adv, beta):
    # e.g. at beta = 1e-300 the two W_{-1} candidates' losses (~1e600) used to overflow and tie, and
    # the solver kept the wrong vertex.
    pi_ref, eta_ref = mp_two_arm_target(mu, np.asarray(adv) / beta)
    assert_matches_reference(mu, adv, beta, pi_ref, eta_ref)


def test_small_advantages_keep_eta_to_relative_precision():
    # eta ~ |a| while the old bracket in log(eta) knew the log-mass only to ~1e-16 absolute: 7% off at 1e-14
    mu = np.array([0.3, 0.7])
    for scale in (1e-14, 1e-10, 1e-5, 1e-3):
        for adv in ([2.0, 1.0], [-2.0, -1.0], [1.0, -1.0]):
            a = np.array(adv) * scale
            pi_ref, eta_ref = mp_two_arm_target(mu, a)
            assert_matches_reference(mu, a, 1.0, pi_ref, eta_ref)


def test_stationary_points_and_relaxed_target_at_extremes():
    mu = np.array([0.3, 0.7])
    adv = np.array([-2.0, -1.0])
    sp = T.lambert_stationary_points(mu, adv, 1e-300)  # loss = beta^2 (eta u)^2 ~ 1: representable
    pi, eta = T.lambert_target(mu, adv, 1e-300)
    assert sp.count == 2 and np.all(np.isfinite(sp.loss)) and np.all(sp.loss > 0)
    np.testing.assert_array_equal(sp.pi[sp.global_index], pi)
    assert sp.eta[sp.global_index] == eta
    pi_r, eta_r, leak = T.relaxed_lambert_target(mu, adv, 1e-300)  # negative regime: mu e^a = 0, all mass leaks
    assert eta_r == 0 and leak == 1.0 and np.all(pi_r == 0)
    pi_r, eta_r, leak = T.relaxed_lambert_target(MU3, ADV3, 1e-300)  # positive: the Lambert target
    np.testing.assert_array_equal(pi_r, T.lambert_target(MU3, ADV3, 1e-300)[0])
    assert leak == 0
    # the loss itself ~1e400 is not a float64: refused, with what to do
    with pytest.raises(ValueError, match="loss .* beyond float64; lambert_target gives the global minimizer"):
        T.lambert_stationary_points(mu, adv * 1e200, 1.0)
    with pytest.raises(ValueError, match=r"adv/beta .* exceeds 1e\+306"):
        T.lambert_target(mu, adv, 1e-307)


def test_root_at_the_branch_point_is_found():
    # The principal mass reaches 1 at the branch point itself and arm 1's W_{-1} interval
    # [log mu_1, -1 - a_1] is empty by rounding: both tests missed it and the solver raised
    # "a bandit without any stationary point". Reference: the Lambert-free two-arm route (mpmath).
    mu = [0.924447166349722, 0.07555283365027794]
    adv, beta = np.array([-0.8533407675309646, 0.015829230840140436]), 0.01
    pi_ref, eta_ref = mp_two_arm_target(mu, adv / beta)
    assert_matches_reference(mu, adv, beta, pi_ref, eta_ref)
    sp = T.lambert_stationary_points(mu, adv, beta)
    assert sp.count >= 1 and np.all(np.isfinite(sp.pi)) and np.all(np.isfinite(sp.loss))


@pytest.mark.parametrize(
    "a, eta, branch",
    [
        (1e300, 1e300, 0), (1e300, 1e-300, 0), (-1e300, 1e300, 0), (1e-300, 1e-300, 0), (5.0, 1e-300, 0),
        (-1e300, -1e300, 0), (-1e300, -1e300, -1), (-1e-3, -1e-300, 0), (-1e-3, -1e-300, -1), (-800.0, -1.0, -1),
    ],
)
def test_lambert_log_ratio_at_extremes_matches_mpmath(a, eta, branch):
    # reference in mpmath at 40 + (digits of the scale) digits: with x = a + log|eta| and t = log|eta u|,
    # t + e^t = x (eta > 0) or t - e^t = x (eta < 0; t <= 0 principal, t >= 0 on W_{-1}), each
    # monotone on its bracket, solved by bisection to full precision; log u = t - log|eta|
    with mp.workdps(_dps([a, eta])):
        A, E = mp.mpf(a), mp.mpf(eta)
        c = mp.log(abs(E))
        x = A + c
        if eta > 0:
            f, bracket = (lambda t: t + mp.exp(t) - x), (min(x, 0) - 1, mp.log(abs(x) + 1) + 1)
        else:
            f = lambda t: t - mp.exp(t) - x
            bracket = (x - 1, mp.mpf(0)) if branch == 0 else (mp.mpf(0), 2 * mp.log(1 - x) + 2)
        lo, hi = bracket
        up = f(hi) > 0
        for _ in range(mp.mp.prec + 20):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if (f(mid) > 0) == up else (mid, hi)
        ref = float((lo + hi) / 2 - c)
    got = T.lambert_log_ratio(a, eta, branch)
    assert abs(got - ref) <= 4 * EPS * max(1.0, abs(ref)), (got, ref)


# ---------------------------------------------------------------- the negative-regime solver's parts


def test_log_neg_lambert_matches_mpmath_within_its_conditioning():
    import mpmath as mp

    from theory._roots import log_neg_lambert

    mp.mp.dps = 40
    xs = np.concatenate([[-1.0], -1 - np.logspace(-17, 0, 60), -np.logspace(0, 8, 60), [-1e300]])
    for branch in (0, -1):
        exact = np.array([float(mp.log(-mp.lambertw(-mp.exp(mp.mpf(x)), branch))) for x in xs])
        got = log_neg_lambert(xs, branch)
        # dt/dx = 1/(1 - e^t): an input rounding of |x| eps moves t by that much
        cond = 2.2e-16 * np.abs(xs) / np.maximum(np.abs(1 - np.exp(exact)), 1e-300) + 2.2e-16 * np.abs(exact)
        assert np.all(np.abs(got - exact) <= 2 * cond + 1e-300), branch


def test_safeguarded_newton_stops_when_the_correction_rounds_onto_the_bracket():
    # Newton from inside converges; its last correction rounds onto the bracket end it just set,
    # which must count as convergence rather than start ~50 bisections from the far end
    from theory._roots import safeguarded_newton

    targets = np.random.default_rng(0).uniform(0.1, 50, 2000)
    calls = []

    def fun(x, idx):
        calls.append(idx.size)
        return np.exp(x) - targets[idx], np.exp(x)

    x = safeguarded_newton(fun, np.full(2000, -5.0), np.full(2000, 10.0))
    np.testing.assert_allclose(x, np.log(targets), rtol=0, atol=2e-15)
    assert len(calls) <= 20  # 13 here; 65 when the rounded correction fell back to bisection


def test_branch_mass_convexity_threshold_is_the_golden_ratio():
    # the scan prunes dips where branch j's mass is convex: e^{w(x)} is convex on W_0 and on W_{-1}
    # where w >= (1 + sqrt 5)/2; the threshold is tight (concave just above w = 1)
    from theory._roots import log_neg_lambert

    golden = (1 + np.sqrt(5)) / 2
    x = np.linspace(-8, -1 - 1e-4, 20001)  # coarse enough that rounding (~1e-8 here) stays below the curvature
    h = x[1] - x[0]
    for branch in (0, -1):
        w = np.exp(log_neg_lambert(x, branch))
        f = np.exp(w)
        second = (f[2:] - 2 * f[1:-1] + f[:-2]) / h**2
        wm = w[1:-1]
        if branch == 0:
            assert second.min() > 0
        else:
            assert second[wm >= golden * (1 + 1e-3)].min() > 0
            assert second[(wm > 1.01) & (wm < golden * (1 - 1e-3))].max() < 0


def _dense_branch_roots(mu, a, grid_points=4000):
    """Every root of the one-arm-on-W_{-1} mass equations by a dense scan with scipy's lambertw.

    An independent route: branch j's mass sum_y mu_y W_k(-m e^{a_y})/(-m) on a fine grid of
    c = log m over [log mu_j, -1 - max a], sign changes refined by brentq.
    """
    K = mu.size
    cmax = -1.0 - a.max()

    def mass(c, j):  # c: a scalar, or an array of grid points (evaluated at once)
        m = np.exp(np.asarray(c, dtype=float))[..., None]
        w = -np.real(lambertw(-m * np.exp(a), 0))
        w[..., j] = -np.real(lambertw(-m[..., 0] * np.exp(a[j]), -1))
        return (mu * w).sum(-1) / m[..., 0] - 1.0

    roots = []
    for j in range(K):
        lo = np.log(mu[j])
        if lo >= cmax:
            continue
        grid = np.concatenate([np.linspace(lo, cmax, grid_points), cmax - np.logspace(-1, -12, 200)])
        grid = np.unique(np.clip(grid, lo, cmax))
        vals = mass(grid, j)
        for k in np.flatnonzero(np.sign(vals[:-1]) * np.sign(vals[1:]) < 0):
            roots.append((j, brentq(lambda c: float(mass(c, j)), grid[k], grid[k + 1], xtol=1e-14)))
    return roots


def test_negative_regime_roots_match_a_dense_scan():
    from theory.lambert import _log_mass0, _neg_candidates

    rng = np.random.default_rng(7)
    checked = pairs = 0
    for _ in range(60):
        K = int(rng.integers(2, 7))
        mu = rng.dirichlet(np.full(K, rng.choice([0.3, 1.0, 5.0])))
        a = rng.normal(0, rng.choice([0.5, 2.0, 6.0]), K)
        g0 = _log_mass0(np.log(mu)[None], a[None])[0]
        a = a - max(g0, 0.0) - rng.exponential(0.5)  # negative regime
        lmu = np.log(mu)[None]
        got = sorted(
            (int(j), float(c))
            for rows, br, cs in _neg_candidates(lmu, a[None], _log_mass0(lmu, a[None]))
            for j, c in zip(br, cs, strict=True)
            if j >= 0
        )
        want = sorted(_dense_branch_roots(mu, a))
        assert [j for j, _ in got] == [j for j, _ in want], (mu, a)
        np.testing.assert_allclose([c for _, c in got], [c for _, c in want], rtol=0, atol=1e-9)
        checked += len(want)
        pairs += len(want) - len({j for j, _ in want})
    assert checked >= 30 and pairs >= 3  # roots to find, some of them two on one branch


# ----------------------------------------------------------------------------- relaxed (sub-stochastic) target


@given(bandits(min_arms=2, max_arms=5, min_mass=1e-2), st.floats(-1.5, 1.5), temperatures(0.05, 2.0))
@settings(max_examples=60, deadline=None)
def test_relaxed_target_is_the_constrained_minimizer(bandit, shift, beta):
    """Independent route: SLSQP on the convex problem in s = log u with sum mu e^s <= 1, from several starts."""
    from scipy.optimize import minimize

    from theory.lambert import relaxed_lambert_target
    from theory.values import soft_value

    mu, r = bandit
    adv = r - soft_value(mu, r, beta) - shift * beta  # shift > 0: negative regime, < 0: positive
    pi, eta, leak = relaxed_lambert_target(mu, adv, beta)
    a = adv / beta

    def f(s):
        return float(mu @ (s - a) ** 2)

    cons = {"type": "ineq", "fun": lambda s: 1 - mu @ np.exp(s), "jac": lambda s: -mu * np.exp(s)}
    best = None
    for start in (np.zeros_like(a), a - 1.0, np.full_like(a, -3.0)):
        res = minimize(f, start, jac=lambda s: 2 * mu * (s - a), constraints=[cons], method="SLSQP", options=dict(ftol=1e-14, maxiter=500))
        if best is None or res.fun < best.fun:
            best = res
    s_ref = best.x
    assert f(np.log(pi / mu)) <= best.fun + 1e-8 * (1 + best.fun)
    assert np.allclose(np.log(pi / mu), s_ref, atol=2e-4)
    assert eta >= 0 and leak >= 0 and abs(pi.sum() + leak - 1) < 1e-12
    if shift > 1e-6:  # the negative regime: no W_{-1} branch, the deficit is left off the support
        assert eta == 0 and np.isclose(leak, -np.expm1(-shift), atol=1e-12) and np.allclose(pi, mu * np.exp(a))
    if shift < -1e-6:  # positive regime: the relaxation changes nothing
        pi_l, eta_l = T.lambert_target(mu, adv, beta)
        assert leak == 0 and np.allclose(pi, pi_l, atol=1e-14) and eta == eta_l


def test_relaxed_target_is_lambert_target_bit_for_bit_in_the_positive_regime():
    # a counterexample a parallel run drew: mu = w / w.sum() sums to 1 - 1 ulp, and normalizing it a second
    # time (the relaxed target passed its normalized mu back through lambert_target) moved eta by 4 ulps
    w = np.array([1.0, 0.04, 0.04])
    mu = w / w.sum()
    assert mu.sum() != 1.0
    from theory.lambert import relaxed_lambert_target

    for adv in (np.ones(3), np.array([1.0, 0.3, -0.2])):
        pi, eta, leak = relaxed_lambert_target(mu, adv, 1.0)
        pi_l, eta_l = T.lambert_target(mu, adv, 1.0)
        assert leak == 0 and eta == eta_l and np.array_equal(pi, pi_l)
    sp = T.lambert_stationary_points(mu, np.ones(3), 1.0)  # its candidate is lambert_target's answer too
    assert np.array_equal(sp.pi[0], T.lambert_target(mu, np.ones(3), 1.0)[0])


def test_relaxed_target_batches_and_checks_input():
    from theory.lambert import relaxed_lambert_target

    mu = np.array([[0.77, 0.23], [0.5, 0.5]])
    adv = np.array([[-0.903, 0.097], [-0.3, 0.7]])
    pi, eta, leak = relaxed_lambert_target(mu, adv, 0.1)
    assert pi.shape == (2, 2) and eta.shape == (2,) and leak.shape == (2,)
    assert eta[0] == 0 and leak[0] > 0.3 and eta[1] > 0 and leak[1] == 0
    with pytest.raises(ValueError):
        relaxed_lambert_target([0.5, 0.6], [0.0, 1.0], 0.1)
    with pytest.raises(ValueError):
        relaxed_lambert_target([0.5, 0.5], [0.0, 1.0], -1.0)


def test_chunking_does_not_change_the_answers(monkeypatch):
    """Rows of every regime spread over many chunks (and the slow rows gathered across them) give the
    answers of one row at a time, bit for bit up to rounding, at two chunk sizes."""
    from theory import lambert

    rng = np.random.default_rng(7)
    n, K = 600, 5
    mu = rng.dirichlet(np.ones(K), size=n)
    r = rng.uniform(size=(n, K))
    base = (mu * r).sum(-1, keepdims=True)
    shift = rng.choice([0.0, 0.0, 0.3, -0.3, 1e-9], size=(n, 1))  # positive, optimistic, pessimistic, near boundary
    adv = r - base + shift
    beta = 10.0 ** rng.uniform(-1.5, 0.5, size=n)
    one = [T.lambert_target(mu[i], adv[i], beta[i]) for i in range(n)]
    pi1 = np.array([p for p, _ in one])
    eta1 = np.array([e for _, e in one])
    assert (eta1 > 0).any() and (eta1 < 0).any() and (np.abs(eta1) < 0.05).any()
    for elements in (40, 1000):  # 8 and 200 bandits per chunk
        monkeypatch.setattr(lambert, "_CHUNK_ELEMENTS", elements)
        pi, eta = T.lambert_target(mu, adv, beta)
        np.testing.assert_allclose(pi, pi1, rtol=0, atol=1e-15)
        np.testing.assert_allclose(eta, eta1, rtol=1e-13, atol=1e-15)


def test_fast_positive_path_equals_the_bracketed_route():
    """Two routes to the positive-regime target: the float32-then-float64 joint Newton and the bracketed
    solve in log eta with exact Wright omega, polished in eta (the route of badly scaled rows)."""
    from theory import lambert

    rng = np.random.default_rng(3)
    for K in (2, 16, 300):
        n = 200
        mu = rng.dirichlet(np.full(K, 0.5), size=n)
        r = rng.uniform(size=(n, K))
        a = (r - (mu * r).sum(-1, keepdims=True)) / 10.0 ** rng.uniform(-2, 0.5, size=(n, 1))
        lmu = lambert._logmu(mu)
        g0 = np.log(np.einsum("ij,ij->i", mu, np.exp(a)))
        keep = g0 > 1e-6
        mu, a, lmu, g0 = mu[keep], a[keep], lmu[keep], g0[keep]
        pi_f, eta_f, ok = lambert._fast_positive(mu, a, g0)
        assert ok.all()
        s, eta_b, F = lambert._polish(mu, lmu, a, lambert._robust_positive(lmu, a, g0))
        pi_b = lambert._from_log_ratio(lmu, s)
        np.testing.assert_allclose(pi_f, pi_b, rtol=0, atol=1e-14)
        # the fast path's eta is exact to a few ulps of 1 (absolute); relative where it is not small
        # (smaller ones are polished by lambert_target)
        np.testing.assert_allclose(eta_f, eta_b, rtol=1e-13, atol=1e-14)
        big = eta_b >= 0.05
        assert big.sum() > 10
        np.testing.assert_allclose(eta_f[big], eta_b[big], rtol=1e-13)
