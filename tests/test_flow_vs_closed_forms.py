"""The logit flow (ground truth) against lambert_target in every regime, including which
stationary point the flow from mu reaches in the negative regime."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory as T
from theory.flow import logit_flow
from theory.strategies import bandits, temperatures


def regression(beta):
    return lambda log_pi, log_mu, adv: (log_mu.exp() * (beta * (log_pi - log_mu) - adv) ** 2).sum(-1)


@settings(max_examples=15, deadline=None)
@given(bandits(max_arms=6), temperatures(0.05, 5.0), st.floats(0.0, 1.0))
def test_flow_reaches_lambert_target_in_positive_and_boundary_regimes(bandit, beta, shift):
    mu, r = bandit
    adv = r - T.soft_value(mu, r, beta) + shift * beta  # shift >= 0: eta >= 0
    pi, eta = T.lambert_target(mu, adv, beta)
    fr = logit_flow(mu, adv, loss=regression(beta))
    assert fr.converged
    np.testing.assert_allclose(fr.pi, pi, atol=1e-7)


def test_flow_from_mu_stays_on_the_principal_branch_even_when_it_is_not_global():
    # principal-branch solution exists; the global minimizer puts arm 1 (mu = 1e-6) on W_{-1}
    mu, a = np.array([1 - 1e-6, 1e-6]), np.array([-0.1, 0.0])
    sp = T.lambert_stationary_points(mu, a, 1.0)
    fr = logit_flow(mu, a, loss=regression(1.0))
    assert fr.converged
    principal = sp.pi[sp.branch_arm == -1][0]
    np.testing.assert_allclose(fr.pi, principal, atol=1e-9)
    pi_global, _ = T.lambert_target(mu, a, 1.0)
    assert np.abs(fr.pi - pi_global).max() > 0.09  # the flow misses the global minimizer


def test_flow_past_the_branch_point_reaches_the_best_arm_minimum_not_the_global_one():
    # no principal-branch solution; two local minima (arm 1 or arm 2 on W_{-1});
    # global: arm 1 (rare under mu); the flow from mu: arm 2 (the best arm)
    mu = np.array([0.85531249, 0.01162471, 0.1330628])
    a = np.array([-1.60566975, 0.12235363, 0.67260481])
    sp = T.lambert_stationary_points(mu, a, 1.0)
    fr = logit_flow(mu, a, loss=regression(1.0))
    assert fr.converged
    reached = int(np.argmin(np.abs(sp.pi - fr.pi).max(-1)))
    assert np.abs(sp.pi[reached] - fr.pi).max() < 1e-8
    assert sp.branch_arm[reached] == 2 == np.argmax(a)
    assert sp.branch_arm[sp.global_index] == 1
    assert sp.loss[reached] > sp.loss[sp.global_index]
