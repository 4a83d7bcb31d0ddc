"""No induced target is reported as certified unless it is a distribution and stationary; set-valued
targets are reported as sets with the point the flow from mu reaches.

Independent routes: the flow (``theory.flow.logit_flow``, and scipy's LSODA on the logit ODE for the
slow plateau faces), and the gradient of each objective's own loss by autograd (not its weight h).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from theory.flow import logit_flow
from theory.losses import LOG_RATIO_CLAMP
from theory.induced import DIST_ATOL, RESIDUAL_TOL, induced_target, stationarity_residual
from theory.objectives import OBJECTIVES, make_objective
from theory.strategies import bandits


def _ode_limit(obj, mu, r, t_end=1e7):
    """pi(t_end) of the logit flow from log mu, by LSODA on the K logits (one bandit).

    On a face of tied arms the flow can overshoot and return very slowly (CISPO, seed 1 below: the
    larger arm is at 0.9993 at t = 1e5 and back at its cap 0.9659 by t = 1e6), hence the long horizon.
    """
    adv = obj.population_advantage(mu, r)
    mu_t = torch.as_tensor(mu)

    def f(t, th):
        pi = np.exp(th - th.max())
        pi /= pi.sum()
        h = obj.weight(torch.as_tensor(pi / mu), torch.as_tensor(adv), mu_t).numpy()
        return mu * h - pi * (mu * h).sum()

    sol = solve_ivp(f, [0, t_end], np.log(mu), method="LSODA", rtol=1e-10, atol=1e-12)
    th = sol.y[:, -1]
    pi = np.exp(th - th.max())
    return pi / pi.sum()


# --- AsymRE at its phase transition E_mu[A] = 0 ----------------------------------------------


@pytest.mark.parametrize("offset", [0.0, 1e-12, -1e-12, 1e-9, -1e-9])
def test_asymre_at_the_transition_is_a_certified_distribution(offset):
    rng = np.random.default_rng(0)
    mu = rng.dirichlet(np.ones(6), size=60)
    r = rng.normal(size=(60, 6))
    t = make_objective("asymre", offset=offset).induced_target(mu, r)
    assert np.all(np.abs(t.pi.sum(-1) - 1) <= DIST_ATOL)
    assert np.all(t.pi >= 0)
    assert t.converged.all()


def test_asymre_at_zero_is_the_vertex_of_the_constant_rate_flow():
    # at E_mu[A] = 0 the logits move at mu_z A_z exactly: theta_z(t) = log mu_z + t mu_z A_z
    mu = np.array([0.5, 0.3, 0.2])
    r = np.array([1.0, 0.0, 0.5])  # m = mu A = (0.225, -0.135, 0.01): argmax is arm 0
    t = make_objective("asymre", offset=0.0).induced_target(mu, r)
    np.testing.assert_array_equal(t.pi, [1.0, 0.0, 0.0])
    assert bool(t.converged)
    # tied rates keep their logit difference log(mu_i / mu_j): mu restricted to the tie
    mu2 = np.array([0.2, 0.3, 0.5])
    a = np.array([0.6, 0.4, -0.48])  # mu a = (0.12, 0.12, -0.24): sum 0, arms 0 and 1 tie
    obj = make_objective("asymre", offset=0.0)
    pi = obj.closed_form_target(mu2, a)
    np.testing.assert_allclose(pi, [0.4, 0.6, 0.0], atol=1e-15)


@pytest.mark.parametrize("offset", [1e-4, 1e-2, -1e-4, -1e-2])
def test_asymre_near_the_transition_matches_the_flow_from_both_sides(offset):
    mu = np.array([0.5, 0.3, 0.2])
    r = np.array([1.0, 0.0, 0.5])
    obj = make_objective("asymre", offset=offset)
    t = obj.induced_target(mu, r)
    ref = _ode_limit(obj, mu, r)
    np.testing.assert_allclose(t.pi, ref, atol=2e-3)
    # and the same vertex as at the transition itself
    np.testing.assert_allclose(t.pi, [1.0, 0.0, 0.0], atol=2e-3)


# --- tied advantages: faces of fixed points ---------------------------------------------------


def test_cispo_tied_binary_rewards_report_the_set_and_the_flows_point():
    mu, r = np.array([0.5, 0.4, 0.1]), np.array([1.0, 1.0, 0.0])
    obj = make_objective("cispo")  # eps_high = 0.28
    t = obj.induced_target(mu, r)
    assert bool(t.set_valued) and bool(t.converged)
    # the face: pi_0 <= 1.28 * 0.5, pi_1 <= 1.28 * 0.4, pi_0 + pi_1 = 1 (worked by hand)
    np.testing.assert_allclose(t.pi_min, [1 - 0.512, 1 - 0.64, 0.0], atol=1e-9)
    np.testing.assert_allclose(t.pi_max, [0.64, 0.512, 0.0], atol=1e-9)
    # the flow from mu fills the more probable arm to its cap first
    np.testing.assert_allclose(t.pi, [0.64, 0.36, 0.0], atol=1e-12)
    np.testing.assert_allclose(_ode_limit(obj, mu, r), t.pi, atol=2e-3)


@pytest.mark.parametrize("name", ["cispo", "tis"])
@pytest.mark.parametrize("seed", range(6))
def test_capped_ratio_objectives_on_binary_rewards_agree_with_the_flow(name, seed):
    rng = np.random.default_rng(seed)
    K = 4
    mu = rng.dirichlet(np.ones(K))
    r = (rng.random(K) < 0.5).astype(float)
    r[0], r[1] = 1.0, 0.0  # mixed rewards
    obj = make_objective(name)
    t = obj.induced_target(mu, r)
    assert bool(t.converged)
    np.testing.assert_allclose(_ode_limit(obj, mu, r), t.pi, atol=5e-3)
    assert np.all(t.pi_min <= t.pi + 1e-12) and np.all(t.pi <= t.pi_max + 1e-12)


def test_pg_tie_face_is_reported_and_the_flow_ends_at_the_most_probable_arm():
    mu, r = np.array([0.5, 0.4, 0.1]), np.array([1.0, 1.0, 0.0])
    t = make_objective("pg").induced_target(mu, r)
    assert bool(t.set_valued) and bool(t.converged)
    np.testing.assert_allclose(t.pi, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(t.pi_max, [1.0, 1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(t.pi_min, [0.0, 0.0, 0.0], atol=1e-9)


def test_m2po_tied_face_is_reported_and_not_certified_as_a_point():
    mu, r = np.array([0.5, 0.4, 0.1]), np.array([1.0, 1.0, 0.0])
    t = make_objective("m2po").induced_target(mu, r)
    assert not bool(t.converged)  # no derived rule for the flow's point on M2PO's face


def test_untied_targets_are_points():
    mu, r = np.array([0.5, 0.3, 0.2]), np.array([1.0, 0.2, 0.6])
    for name in ("cispo", "tis", "pg", "opmd", "sapo"):
        t = make_objective(name).induced_target(mu, r)
        assert not bool(t.set_valued), name
        np.testing.assert_array_equal(t.pi_min, t.pi)


def test_ppo_family_reports_its_lp_face_and_a_point_on_it():
    mu, r = np.array([0.4, 0.3, 0.2, 0.1]), np.array([1.0, 0.0, 0.5, 0.8])
    for name in ("ppo", "grpo", "dapo", "gspo"):
        t = make_objective(name).induced_target(mu, r)
        assert np.all(t.pi_min <= t.pi + 1e-7) and np.all(t.pi <= t.pi_max + 1e-7), name
        assert bool(t.converged), name


# --- the general guard ------------------------------------------------------------------------

#: parameters at and near each objective's regime boundaries (V = V*_beta, E_mu[A] = 0, clips)
_EDGE_PARAMS = [
    ("asymre", dict(offset=0.0)), ("asymre", dict(offset=1e-9)), ("asymre", dict(offset=-1e-9)),
    ("reinforce_k1", dict(beta=1e-6)), ("reinforce_k3", dict(beta=1e-6)),
    ("opmd_above", dict(delta=0.0)), ("opmd_above", dict(delta=1e-9)), ("opmd_above", dict(delta=1.0)),
    ("opmd_lme", dict(beta1=0.1 * (1 + 1e-9))), ("shifted_regression", dict(delta=0.0)),
    ("cispo", dict(eps_high=1e-6)), ("tis", dict(is_cap=1.0)), ("ppo", dict(eps_low=0.999)),
    ("oapl", dict(beta=1e-3)), ("awr", dict(beta=1e-3)),
]
_CASES = [(n, {}) for n in OBJECTIVES] + _EDGE_PARAMS


def _own_loss_gradient(obj, mu, adv, pi):
    """Expected logit gradient of the objective's own loss (autograd; not its weight h), (K,)."""
    theta = torch.log(torch.as_tensor(pi).clamp_min(1e-300)).requires_grad_(True)
    logp = torch.log_softmax(theta, -1)
    logmu = torch.log(torch.as_tensor(mu))
    a = torch.as_tensor(adv)
    # K one-token completions: (K, T=1) log-probabilities, one advantage each
    loss = obj.loss(logp[:, None], logmu[:, None], a, torch.ones(len(mu), 1),
                    logp_ref=logmu[:, None], logp_prox=logp[:, None].detach())
    loss = loss[:, 0] if loss.ndim == 2 else loss  # token level (K, 1), sequence level (K,)
    (torch.as_tensor(mu) * loss).sum().backward()
    return -theta.grad.numpy()


def _integrated(case) -> bool:
    """Whether the case's target comes from integrating the flow (Euler or the stiff integrator): seconds each."""
    return make_objective(case[0], **case[1]).target_kind in ("numerical", "flow")


_SOLVED = [c for c in _CASES if not _integrated(c)]
_INTEGRATED = [c for c in _CASES if _integrated(c)]


@pytest.mark.parametrize("case", _SOLVED, ids=[f"{n}-{p}" if p else n for n, p in _SOLVED])
@settings(max_examples=6, deadline=None)
@given(b=bandits(min_arms=2, max_arms=5), binary=st.booleans())
def test_every_certified_target_is_a_stationary_distribution(case, b, binary):
    _check_certified_target(case, b, binary)


@pytest.mark.parametrize("case", _INTEGRATED, ids=[f"{n}-{p}" if p else n for n, p in _INTEGRATED])
@settings(max_examples=3, deadline=None)
@given(b=bandits(min_arms=2, max_arms=5), binary=st.booleans())
def test_every_certified_integrated_target_is_a_stationary_distribution(case, b, binary):
    """The same check on the objectives whose target is integrated (seconds per bandit): 3 bandits each."""
    _check_certified_target(case, b, binary)


def _check_certified_target(case, b, binary):
    name, params = case
    mu, r = b
    if binary:
        r = (r > np.median(r)).astype(float)
    obj = make_objective(name, **params)
    t = obj.induced_target(mu, r)
    assert t.pi.shape == mu.shape and t.set_valued is not None
    if not bool(t.converged):
        return
    assert np.all(np.isfinite(t.pi)) and np.all(t.pi >= 0)
    assert abs(t.pi.sum() - 1) <= DIST_ATOL
    assert np.all(t.pi_min <= t.pi + 1e-9) and np.all(t.pi <= t.pi_max + 1e-9)
    adv = obj.population_advantage(mu, r)
    if t.method == "euler":  # clipped fields: certified on the LP face (checked in the route)
        return
    mu_t = torch.as_tensor(mu)
    assert stationarity_residual(lambda u, a: obj.weight(u, a, mu_t), mu, adv, t.pi) <= RESIDUAL_TOL
    with np.errstate(divide="ignore"):
        s_min = np.log(t.pi[mu > 0] / mu[mu > 0]).min()
    if obj.spec.signal == "adv" and s_min > -LOG_RATIO_CLAMP:
        # (the losses clamp log-ratios at +-LOG_RATIO_CLAMP for numerical safety, so on an arm with
        # pi = 0 their gradient is the clamp's, not the weight's limit at u -> 0: such points skip this)
        # independent route: the loss's own gradient is a common drift on the arms that keep mass
        g = _own_loss_gradient(obj, mu, adv, t.pi)
        keep = t.pi > 1e-9
        scale = max(np.abs(g).max(), np.abs(mu * adv).max(), 1e-9)
        spread = g[keep].max() - g[keep].min()
        assert spread <= 1e-6 * scale, (name, params, g, t.pi)


def test_flow_reference_agrees_on_a_smooth_objective():
    # the ODE helper used above against the package's own flow integrator
    mu, r = np.array([0.5, 0.3, 0.2]), np.array([1.0, 0.2, 0.6])
    obj = make_objective("opmd")
    fr = logit_flow(mu, obj.population_advantage(mu, r), weight=lambda u, a: obj.weight(u, a))
    np.testing.assert_allclose(_ode_limit(obj, mu, r, t_end=2e3), fr.pi, atol=1e-6)
