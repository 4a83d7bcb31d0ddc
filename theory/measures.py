r"""Pessimism measures of a target policy (docs/theory.md section 5).

For a target :math:`\pi` against the behaviour :math:`\mu`, rewards :math:`r`
and the nominal temperature :math:`\beta`:

* :math:`\mathrm{KL}(\pi\|\mu)`, :math:`\mathrm{KL}(\mu\|\pi)`, entropy
  :math:`H(\pi)` and expected reward :math:`E_\pi[r]` (nats, reward units);
* :math:`\eta = \mathrm{KL}(\mu\|\pi) + E_\mu[A]/\beta` (the identity every
  stationary point of the regression objective satisfies);
* effective temperatures: :math:`\beta_{\mathrm{eff}}^{\mathrm{KL}}` with
  :math:`\mathrm{KL}(\pi_{\beta_{\mathrm{eff}}}\|\mu) = \mathrm{KL}(\pi\|\mu)` and
  :math:`\beta_{\mathrm{eff}}^{r}` with :math:`E_{\pi_{\beta_{\mathrm{eff}}}}[r] = E_\pi[r]`,
  where :math:`\pi_b \propto \mu e^{r/b}` is the Gibbs family. Both maps are
  strictly decreasing in :math:`b`, so each has at most one solution;
  ``0`` means "at least as greedy as the best arm", ``inf`` "no move from mu".
  "Pessimism" is :math:`\beta_{\mathrm{eff}}/\beta > 1`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import (
    as_float_array,
    as_scalar,
    broadcast_arms,
    broadcast_with_batch,
    check_distribution,
    check_positive,
    support_range,
)
from ._numerics import log_softmax
from ._roots import safeguarded_newton

__all__ = [
    "kl",
    "kl_to_gibbs",
    "entropy",
    "expected_reward",
    "beta_eff_kl",
    "beta_eff_reward",
    "PessimismMeasures",
    "pessimism_measures",
    "REGIME_NAMES",
]

#: Names of the sign of eta.
REGIME_NAMES = {1: "positive", 0: "boundary", -1: "negative"}


def kl(p, q):
    r""":math:`\mathrm{KL}(p\|q) = \sum_y p_y \log(p_y/q_y)` in nats over the last axis.

    Terms with :math:`p_y = 0` are 0; :math:`p_y > 0 = q_y` gives ``inf``.
    """
    p = check_distribution(p, "p")
    q = check_distribution(q, "q")
    p, q = broadcast_arms("p", p, "q", q)
    pos = p > 0
    with np.errstate(divide="ignore"):
        terms = np.where(pos, p * (np.log(np.where(pos, p, 1.0)) - np.log(np.where(pos, q, 1.0))), 0.0)
    out = terms.sum(-1)
    return np.where((pos & (q == 0)).any(-1), np.inf, np.maximum(out, 0.0))


def kl_to_gibbs(p, mu, r, beta):
    r""":math:`\mathrm{KL}(p\|\pi_\beta)` against the Gibbs target :math:`\pi_\beta \propto \mu e^{r/\beta}`, in nats.

    The Gibbs log-probabilities are taken in log space (:math:`\log\mu + r/\beta` minus its
    log-sum-exp over the support), so an arm whose Gibbs probability underflows to 0 still
    gives its finite term; ``inf`` only where :math:`p_y > 0` off the support of :math:`\mu`.
    Shapes as :func:`kl`; ``beta > 0``.
    """
    p = check_distribution(p, "p")
    mu = check_distribution(mu, "mu")
    beta = check_positive(beta, "beta")
    p, mu = broadcast_arms("p", p, "mu", mu)
    r = np.broadcast_to(as_float_array(r, "r", "an array of rewards"), p.shape)
    supp = mu > 0
    with np.errstate(divide="ignore"):
        z = np.where(supp, np.log(np.where(supp, mu, 1.0)) + r / np.asarray(beta)[..., None], -np.inf)
    log_q = log_softmax(z)
    pos = p > 0
    terms = np.where(pos & supp, p * (np.log(np.where(pos, p, 1.0)) - np.where(supp, log_q, 0.0)), 0.0)
    return np.where((pos & ~supp).any(-1), np.inf, np.maximum(terms.sum(-1), 0.0))


def entropy(p):
    r""":math:`H(p) = -\sum_y p_y \log p_y` in nats over the last axis."""
    p = check_distribution(p, "p")
    pos = p > 0
    return -np.where(pos, p * np.log(np.where(pos, p, 1.0)), 0.0).sum(-1)


def expected_reward(p, r):
    r""":math:`E_p[r]` over the last axis."""
    p = check_distribution(p, "p")
    p, r = broadcast_arms("p", p, "r", as_float_array(r, "r", "an array of rewards"))
    out = (p * r).sum(-1)
    if not np.all(np.isfinite(out)):
        raise ValueError("E_p[r] overflows float64; rescale r")
    return out


def _gibbs_moments(lmu, r, b):
    """E, Var of r and KL(pi_b || mu) for pi_b ∝ mu e^{r/b}; b (N,), arrays (N, K), r in [-1, 0]."""
    # softmax and log-softmax from one exponentiation inside Newton (theory._numerics would take two)
    with np.errstate(over="ignore", under="ignore"):
        z = lmu + r / b[:, None]
    z = z - z.max(-1, keepdims=True)
    w = np.exp(z)
    s = w.sum(-1, keepdims=True)
    p = w / s
    E = (p * r).sum(-1)
    var = np.maximum((p * (r - E[:, None]) ** 2).sum(-1), 0.0)
    logp = z - np.log(s)  # log pi_b, O(1) numbers: no cancellation at small b
    with np.errstate(invalid="ignore"):  # arms off the support: 0 * (-inf), dropped by the where
        klv = np.maximum(np.where(p > 0, p * (logp - np.where(np.isfinite(lmu), lmu, 0.0)), 0.0).sum(-1), 0.0)
    return E, var, klv


def _beta_eff(mu, r, value, which, vname):
    """Solve for the Gibbs temperature in units of the reward span (any scale of r), then scale back."""
    mu = check_distribution(mu, "mu")
    mu, r = broadcast_arms("mu", mu, "r", as_float_array(r, "r", "an array of rewards"))
    (mu, r), (value,), batch = broadcast_with_batch({"mu": mu, "r": r}, {vname: as_float_array(value, vname)})
    K = mu.shape[-1]
    value = value.reshape(-1)
    mu2, r2 = mu.reshape(-1, K), r.reshape(-1, K)
    with np.errstate(divide="ignore"):
        lmu = np.where(mu2 > 0, np.log(np.where(mu2 > 0, mu2, 1.0)), -np.inf)
    supp = mu2 > 0
    rmin, rmax = support_range(mu2, r2, "r")
    span = rmax - rmin
    flat = span <= 0
    unit = np.where(flat, 1.0, span)
    rs = np.where(supp, (r2 - rmax[:, None]) / unit[:, None], 0.0)  # in [-1, 0], 0 at the best arms
    if which == "reward":
        with np.errstate(over="ignore", invalid="ignore"):
            v = (value - rmax) / unit  # b -> 0 gives 0, b -> inf gives E_mu[rs]
        top, bottom = np.zeros_like(rmax), (mu2 * rs).sum(-1) / mu2.sum(-1)
        greedy = v >= -1e-12
    else:
        v = value
        top = -np.log(np.where(supp & (rs == 0.0), mu2, 0.0).sum(-1) / mu2.sum(-1))  # KL of the greedy limit
        bottom = np.zeros_like(rmax)
        greedy = v >= top * (1 - 1e-12)
    out = np.empty(value.shape)
    still = ~flat & (v <= bottom + 1e-15 * np.maximum(np.abs(bottom), 1.0))
    greedy &= ~flat & ~still
    out[flat | still] = np.inf
    out[greedy] = 0.0
    idx = np.flatnonzero(~(flat | greedy | still))
    if idx.size:
        # below b = gap/800 every arm under the best has weight e^{-800}: the greedy band covers it
        gap = np.where(supp[idx] & (rs[idx] < 0), -rs[idx], np.inf).min(-1)
        lo = np.minimum(-40.0, np.log(gap) - np.log(800.0))
        hi = np.full(idx.size, 40.0)

        def fun(lb, j):
            b = np.exp(lb)
            E, var, klv = _gibbs_moments(lmu[idx[j]], rs[idx[j]], b)
            if which == "reward":
                return E - v[idx[j]], -var / b
            return klv - v[idx[j]], -var / b**2

        with np.errstate(over="ignore"):
            out[idx] = np.exp(safeguarded_newton(fun, lo, hi)) * unit[idx]  # beyond float64: inf (no move)
    return out.reshape(batch)


def beta_eff_kl(mu, r, kl_value):
    r"""Temperature :math:`b` of the Gibbs target with :math:`\mathrm{KL}(\pi_b\|\mu)` = ``kl_value``.

    Shapes: ``mu``, ``r`` (..., K); ``kl_value`` broadcastable to (...). Returns (...);
    ``inf`` for ``kl_value <= 0`` or constant rewards, ``0`` when ``kl_value``
    reaches the KL of the greedy limit.
    """
    return _beta_eff(mu, r, kl_value, "kl", "kl_value")


def beta_eff_reward(mu, r, reward):
    r"""Temperature :math:`b` of the Gibbs target with :math:`E_{\pi_b}[r]` = ``reward`` (shapes as :func:`beta_eff_kl`)."""
    return _beta_eff(mu, r, reward, "reward", "reward")


@dataclass(frozen=True)
class PessimismMeasures:
    """Measures of one batch of targets; every field has the batch shape (...)."""

    kl_pi_mu: np.ndarray  #: KL(pi || mu), nats
    kl_mu_pi: np.ndarray  #: KL(mu || pi), nats
    entropy: np.ndarray  #: H(pi), nats
    expected_reward: np.ndarray  #: E_pi[r]
    eta: np.ndarray  #: KL(mu||pi) + E_mu[A]/beta
    regime: np.ndarray  #: sign of eta: +1 positive, 0 boundary, -1 negative
    beta_eff_kl: np.ndarray  #: Gibbs temperature with the same KL(pi||mu)
    beta_eff_reward: np.ndarray  #: Gibbs temperature with the same expected reward
    pessimism_kl: np.ndarray  #: beta_eff_kl / beta
    pessimism_reward: np.ndarray  #: beta_eff_reward / beta


def pessimism_measures(pi, mu, r, beta, baseline, *, regime_atol=1e-12):
    r"""All measures of docs/theory.md section 5 for targets ``pi`` of bandits ``(mu, r)``.

    Parameters
    ----------
    pi, mu, r : array_like, shape (..., K)
    beta : float or array_like broadcastable to (...)
        Nominal temperature.
    baseline : float or array_like broadcastable to (...)
        The V of the advantage :math:`A = r - V` (for :math:`\eta`).
    regime_atol : float
        :math:`|\eta|` at or below this is reported as the boundary regime.
    """
    regime_atol = as_scalar(regime_atol, "regime_atol")
    if regime_atol < 0:
        raise ValueError(f"regime_atol must be a finite number >= 0, got {regime_atol!r}")
    pi = check_distribution(pi, "pi")
    mu = check_distribution(mu, "mu")
    r = as_float_array(r, "r", "an array of rewards")
    pi, mu = broadcast_arms("pi", pi, "mu", mu)
    mu, r = broadcast_arms("mu", mu, "r", r)
    (pi, mu, r), (beta, V), batch = broadcast_with_batch(
        {"pi": pi, "mu": mu, "r": r},
        {"beta": check_positive(beta, "beta"), "baseline": as_float_array(baseline, "baseline")},
    )
    kpm, kmp = kl(pi, mu), kl(mu, pi)
    with np.errstate(over="ignore", invalid="ignore"):
        adv = r - V[..., None]
        mean_a = (mu * adv).sum(-1) / beta
    if not np.all(np.isfinite(mean_a)):
        raise ValueError("E_mu[r - baseline]/beta overflows float64; rescale r and baseline, or raise beta")
    eta = kmp + mean_a  # inf where pi leaves part of mu's support (KL(mu||pi) = inf)
    regime = np.where(np.abs(eta) <= regime_atol, 0, np.sign(eta)).astype(int)
    ER = expected_reward(pi, r)
    bk = beta_eff_kl(mu, r, kpm)
    br = beta_eff_reward(mu, r, ER)
    return PessimismMeasures(
        kl_pi_mu=kpm,
        kl_mu_pi=kmp,
        entropy=entropy(pi),
        expected_reward=ER,
        eta=eta,
        regime=regime,
        beta_eff_kl=bk,
        beta_eff_reward=br,
        pessimism_kl=bk / beta,
        pessimism_reward=br / beta,
    )
