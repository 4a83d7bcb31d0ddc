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
