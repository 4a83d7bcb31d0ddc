"""The finite-group conditional advantage E[A_1 | y_1 = k]: closed forms, Monte Carlo, the large-G limit, errors."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.advantages import conditional_group_advantage, group_advantage, population_advantage
from theory.strategies import bandits

SMALL = dict(min_arms=2, max_arms=4, min_mass=1e-2)


@given(bandits(**SMALL), st.integers(1, 12))
@settings(max_examples=60, deadline=None)
def test_mean_and_loo_closed_forms(bandit, G):
    mu, r = bandit
    centred = r - mu @ r
    assert np.allclose(conditional_group_advantage("mean", mu, r, G), (1 - 1 / G) * centred, atol=1e-12)
    if G >= 2:
        assert np.allclose(conditional_group_advantage("loo", mu, r, G), centred, atol=1e-12)


@given(bandits(**SMALL), st.integers(2, 8), st.sampled_from(["soft_value", "grpo", "zscore", "shifted_mean"]))
@settings(max_examples=40, deadline=None)
def test_equals_the_average_over_every_group_drawn_by_brute_force(bandit, G, name):
    """Independent route: list every ordered group (K^(G-1) of them) with its probability."""
    mu, r = bandit
    params = {"soft_value": dict(beta1=0.3), "shifted_mean": dict(beta=0.1, delta=1.0)}.get(name, {})
    K = len(mu)
    if K ** (G - 1) > 20_000:
        G = 1 + int(math.log(20_000) / math.log(K))
        if name in ("grpo",) and G < 2:
            return
    idx = np.array(np.meshgrid(*[np.arange(K)] * (G - 1), indexing="ij")).reshape(G - 1, -1).T  # (K^(G-1), G-1)
    prob = np.prod(mu[idx], axis=1) if G > 1 else np.ones(1)
    expect = np.empty(K)
    for k in range(K):
        grp = np.concatenate([np.full((len(prob), 1), k), idx], 1) if G > 1 else np.array([[k]])
        a = group_advantage(name, torch.from_numpy(r[grp]), **params)[:, 0].numpy()
        expect[k] = a @ prob
    assert np.allclose(conditional_group_advantage(name, mu, r, G, **params), expect, atol=1e-10)


def test_soft_value_matches_monte_carlo_and_is_biased_low():
    mu, r, G = np.array([0.7, 0.3]), np.array([0.0, 1.0]), 8
    exact = conditional_group_advantage("soft_value", mu, r, G, beta1=0.1)
    rng = np.random.default_rng(0)
    n = 200_000
    for k in range(2):
        ys = rng.choice(2, size=(n, G), p=mu)
        ys[:, 0] = k
        a = group_advantage("soft_value", torch.from_numpy(r[ys]), beta1=0.1)[:, 0].numpy()
        assert abs(a.mean() - exact[k]) < 5 * a.std() / math.sqrt(n)
    pop = population_advantage("soft_value", mu, r, beta1=0.1)
    # a correct sample raises its own group's soft value: its advantage is below the population one
    assert exact[1] < pop[1]


def test_tends_to_the_population_advantage():
    mu, r = np.array([0.5, 0.2, 0.3]), np.array([0.0, 0.4, 1.0])
    for name, params in [("mean", {}), ("soft_value", dict(beta1=0.5)), ("grpo", {})]:
        pop = population_advantage(name, mu, r, **params)
        Gs = (8, 32, 128)  # exact enumeration: G = 512 costs ~100x G = 128 and checks nothing more
        errs = [np.abs(conditional_group_advantage(name, mu, r, G, **params) - pop).max() for G in Gs]
        assert errs[0] > errs[1] > errs[2] and errs[2] < 0.02, (name, errs)
        # the bias is O(1/G): err * G settles (within 10% between G = 32 and 128)
        assert abs(errs[2] * Gs[2] / (errs[1] * Gs[1]) - 1) < 0.1, (name, errs)


def test_arms_of_zero_mass_and_bad_input():
    mu, r = np.array([0.6, 0.0, 0.4]), np.array([0.0, 5.0, 1.0])
    a = conditional_group_advantage("mean", mu, r, 4)
    assert np.allclose(a, 0.75 * (r - 0.4))  # the zero-mass arm gets the advantage it would have
    with pytest.raises(ValueError, match="G must be >= 1, got 0"):
        conditional_group_advantage("mean", mu, r, 0)
    with pytest.raises(ValueError, match="needs groups of G >= 2"):
        conditional_group_advantage("loo", mu, r, 1)
    with pytest.raises(ValueError, match="exceed max_outcomes"):
        conditional_group_advantage("mean", np.full(6, 1 / 6), np.arange(6.0), 200, max_outcomes=1000)
    with pytest.raises(ValueError, match="same length"):
        conditional_group_advantage("mean", mu, r[:2], 4)
    with pytest.raises(ValueError, match="unknown|advantage"):
        conditional_group_advantage("nope", mu, r, 4)
