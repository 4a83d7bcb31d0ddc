"""Soft values, baselines and pessimism measures: hand values, limits, round trips, errors."""

import numpy as np
import pytest
from hypothesis import given, settings

import theory as T
from theory.strategies import bandits, temperatures


def test_soft_value_hand_value_and_limits():
    mu, r = np.array([0.5, 0.5]), np.array([0.0, 1.0])
    # beta log((1 + e^{1/beta})/2) at beta = 1: log((1+e)/2)
    assert T.soft_value(mu, r, 1.0) == pytest.approx(np.log((1 + np.e) / 2), abs=1e-15)
    assert T.soft_value(mu, r, 1e-4) == pytest.approx(1.0 - 1e-4 * np.log(2), abs=1e-12)
    assert T.soft_value(mu, r, 1e6) == pytest.approx(0.5 + 0.25 / (2 * 1e6), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(bandits(allow_zeros=True), temperatures())
def test_soft_value_between_mean_and_max_and_decreasing(bandit, beta):
    mu, r = bandit
    v = T.soft_value(mu, r, beta)
    assert T.mean_baseline(mu, r) - 1e-12 <= v <= r[mu > 0].max() + 1e-12
    assert T.soft_value(mu, r, 2 * beta) <= v + 1e-12


def test_soft_value_broadcasts_a_temperature_grid():
    b = T.STANDARD_BANDITS["graded"]
    betas = np.logspace(-2, 1, 7)
    v = T.soft_value(b.mu, b.r, betas)
    assert v.shape == (7,)
    assert v[0] == pytest.approx(T.soft_value(b.mu, b.r, betas[0]))


def test_group_soft_value_is_biased_low_and_shrinks_with_G():
    b = T.STANDARD_BANDITS["sparse"]
    beta = 0.2
    rng = np.random.default_rng(0)
    vstar = T.soft_value(b.mu, b.r, beta)
    bias = []
    for G in (4, 16, 64):
        idx = rng.choice(len(b.mu), p=b.mu, size=(20000, G))
        bias.append(T.group_soft_value(b.r[idx], beta).mean() - vstar)
    assert bias[0] < bias[1] < bias[2] < 0


def test_shifted_mean_and_decoupled_baselines():
    b = T.STANDARD_BANDITS["graded"]
    assert T.shifted_mean_baseline(b.mu, b.r, 0.3, 2.0) == pytest.approx(T.mean_baseline(b.mu, b.r) - 0.6)
    # V*_{beta1} < V*_{beta2} for beta1 > beta2: the decoupled baseline is below the soft value
    assert T.decoupled_soft_value_baseline(b.mu, b.r, 1.0) < T.soft_value(b.mu, b.r, 1e-3)


def test_gibbs_target_is_normalized_and_respects_zeros():
    mu = np.array([0.0, 0.3, 0.7])
    p = T.gibbs_target(mu, np.array([5.0, 1.0, 0.0]), 0.5)
    assert p[0] == 0 and p.sum() == pytest.approx(1.0)
    assert p[1] / p[2] == pytest.approx(0.3 / 0.7 * np.exp(2.0))


@settings(max_examples=60, deadline=None)
@given(bandits(), temperatures(0.05, 5.0))
def test_beta_eff_round_trips_on_the_gibbs_family(bandit, b):
    mu, r = bandit
    if np.ptp(r) < 1e-3:
        return
    g = T.gibbs_target(mu, r, b)
    assert T.beta_eff_kl(mu, r, T.kl(g, mu)) == pytest.approx(b, rel=1e-6)
    assert T.beta_eff_reward(mu, r, T.expected_reward(g, r)) == pytest.approx(b, rel=1e-6)


def test_mean_baseline_target_is_pessimistic():
    for b in T.STANDARD_BANDITS.values():
        for beta in (0.05, 0.3, 2.0):
            V = T.mean_baseline(b.mu, b.r)
            pi, eta = T.lambert_target(b.mu, b.r - V, beta)
            m = T.pessimism_measures(pi, b.mu, b.r, beta, V)
            assert m.regime == 1 and m.eta == pytest.approx(eta, abs=1e-12)
            assert m.pessimism_kl > 1 and m.pessimism_reward > 1
            assert m.expected_reward < T.expected_reward(T.gibbs_target(b.mu, b.r, beta), b.r)


def test_kl_entropy_hand_values():
    p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    assert T.kl(p, q) == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(2 / 3))
    assert T.kl(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == np.inf
    assert T.entropy(p) == pytest.approx(np.log(2))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: T.soft_value([0.5, 0.5], [0, 1], 0.0), "beta must be > 0"),
        (lambda: T.soft_value([0.5, 0.4], [0, 1], 1.0), "not normalized"),
        (lambda: T.soft_value([0.5, 0.5], [0, np.nan], 1.0), "NaN"),
        (lambda: T.group_soft_value(np.zeros((3, 0)), 1.0), "G >= 1"),
        (lambda: T.kl([0.5, 0.5], [1.0]), "arms"),
        (lambda: T.pessimism_measures([[0.5, 0.5]] * 2, [0.5, 0.5], [0, 1], 1.0, [0, 0, 0]), "broadcast"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- numeric extremes (mpmath references)


def mp_soft_value(mu, r, beta):
    """beta log E_mu[e^{r/beta}] in mpmath (arbitrary exponent range: e^{1e300} is representable), 60 digits."""
    import mpmath as mp

    with mp.workdps(60):
        m = [mp.mpf(float(x)) for x in mu]
        tot = mp.fsum(m)
        b = mp.mpf(float(beta))
        mean = mp.fsum(mi * mp.mpf(float(ri)) for mi, ri in zip(m, r)) / tot
        # centred, so that beta -> inf keeps the O(1/beta) excess over the mean
        e = mp.fsum(mi * mp.exp((mp.mpf(float(ri)) - mean) / b) for mi, ri in zip(m, r) if mi > 0) / tot
        return float(mean + b * mp.log(e))


def mp_gibbs(mu, r, beta):
    import mpmath as mp

    with mp.workdps(60):
        w = [mp.mpf(float(m)) * mp.exp(mp.mpf(float(x)) / mp.mpf(float(beta))) for m, x in zip(mu, r)]
        z = mp.fsum(w)
        return np.array([float(x / z) for x in w])


EXTREME_VALUE_CASES = [
    pytest.param([0.3, 0.7], [1.0, 0.0], 1e-320, id="beta-1e-320-subnormal"),
    pytest.param([0.3, 0.7], [1.0, 0.0], 1e-300, id="beta-1e-300"),
    pytest.param([0.3, 0.7], [1e4, 0.0], 1.0, id="r/beta-1e4"),
    pytest.param([0.3, 0.7], [1.0, 0.0], 1e-4, id="beta-1e-4"),
    pytest.param([0.3, 0.7], [1.0, 0.0], 1e20, id="beta-1e20"),
    pytest.param([0.3, 0.7], [1.0, 0.0], 1e300, id="beta-1e300"),
    pytest.param([0.3, 0.7], [1e300, -1e300], 1e-300, id="r-1e300-beta-1e-300"),
    pytest.param([0.3, 0.7], [1e300, -1e300], 1e300, id="r-1e300-beta-1e300"),
    pytest.param([0.3, 0.7], [1e300, -1e300], 1e308, id="r-1e300-beta-1e308"),
    pytest.param([0.3, 0.7], [1e-300, 0.0], 1e-300, id="r-1e-300-beta-1e-300"),
    pytest.param([0.2, 0.0, 0.8], [3.0, 1e308, -2.0], 1e-3, id="huge-reward-off-support"),
    # the best arm rare (mu 1.3e-6) yet dominant: log1p(E expm1) cancelled to 4e-11 relative
    pytest.param([1.2655192618402417e-06, 1 - 1.2655192618402417e-06], [0.4, -0.1], 0.03, id="rare-top-arm"),
]


@pytest.mark.parametrize("mu, r, beta", EXTREME_VALUE_CASES)
def test_soft_value_and_gibbs_target_are_exact_at_extremes(mu, r, beta):
    # they used to overflow e^{r/beta} or (r - E r)/beta into NaN/inf; the group estimate at beta = 1e20
    # returned 1.0 for rewards (1, 0) (log of 1 - 5e-21 rounds to 0) where the answer is 0.5
    # tolerance: a few ulps of the result, or of max|r| where V cancels against E_mu[r] (the backward error)
    mu = np.array(mu)
    supp = mu > 0
    g = np.asarray(r, float)[supp]
    tol = lambda ref: 4e-16 * abs(ref) + 4 * np.finfo(float).eps * np.abs(g).max()
    ref = mp_soft_value(mu, r, beta)
    assert abs(T.soft_value(mu, r, beta) - ref) <= tol(ref), (T.soft_value(mu, r, beta), ref)
    np.testing.assert_allclose(T.gibbs_target(mu, r, beta), mp_gibbs(mu, r, beta), rtol=1e-14, atol=1e-300)
    ref = mp_soft_value(np.full(g.size, 1.0 / g.size), g, beta)
    assert abs(T.group_soft_value(g, beta) - ref) <= tol(ref), (T.group_soft_value(g, beta), ref)


def test_rewards_that_span_beyond_float64_are_refused():
    for f in (T.soft_value, T.gibbs_target):
        with pytest.raises(ValueError, match="r spans .* overflow"):
            f([0.5, 0.5], [1e308, -1e308], 1.0)
    with pytest.raises(ValueError, match="rewards spans"):
        T.group_soft_value([1e308, -1e308], 1.0)
    with pytest.raises(ValueError, match="delta \\* beta overflows"):
        T.shifted_mean_baseline([0.5, 0.5], [0.0, 1.0], 1e308, 1e10)


@pytest.mark.parametrize("scale", [1e-300, 1e-20, 1.0, 1e20, 1e300])
def test_beta_eff_is_scale_invariant(scale):
    # beta_eff(c r) = c beta_eff(r): solved in units of the reward span; a fixed bracket and absolute
    # thresholds used to return inf ("no move") for rewards of size 1e-300
    mu, r = np.array([0.2, 0.3, 0.5]), np.array([1.0, 0.5, 0.0])
    for b in (0.1, 1.0, 10.0):
        g = T.gibbs_target(mu, r * scale, b * scale)
        assert T.beta_eff_kl(mu, r * scale, T.kl(g, mu)) / scale == pytest.approx(b, rel=1e-12)
        assert T.beta_eff_reward(mu, r * scale, T.expected_reward(g, r * scale)) / scale == pytest.approx(b, rel=1e-12)


def test_beta_eff_kl_with_the_best_rewards_closer_than_the_span_by_1e20():
    # rewards 1e-20, 0, -1: the temperature that splits mass between the two best arms is ~1e-21 of
    # the span, below the old bracket (span e^-40 = 4e-18 span), which returned its end instead
    mu, r = np.array([0.3, 0.3, 0.4]), np.array([1e-20, 0.0, -1.0])
    for b in (2e-21, 1e-20, 1e-19):
        g = T.gibbs_target(mu, r, b)
        assert 0.5 < g[0] < 1 - 1e-6 and g[2] == 0
        assert T.beta_eff_kl(mu, r, T.kl(g, mu)) == pytest.approx(b, rel=1e-9, abs=0)
