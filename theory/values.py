r"""Soft values, the nominal Gibbs target, and the baselines V that set the regime.

Notation (docs/theory.md section 1): behaviour policy :math:`\mu`, reward :math:`r`,
temperature :math:`\beta`. The nominal target of KL-regularized RL,
:math:`\max_\pi E_\pi[r] - \beta\,\mathrm{KL}(\pi\|\mu)`, is

.. math::

    \pi_\beta(y) = \mu(y)\, e^{(r(y) - V^*_\beta)/\beta}, \qquad
    V^*_\beta = \beta \log E_\mu\bigl[e^{r/\beta}\bigr].

Every baseline below returns :math:`V` with the batch shape; the advantage fed
to an objective is :math:`A = r - V`. For the regression objective the sign of
:math:`V^*_\beta - V` is the sign of :math:`\eta` (``theory.lambert``).
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float_array, broadcast_arms, broadcast_with_batch, check_distribution, check_positive

__all__ = [
    "soft_value",
    "gibbs_target",
    "mean_baseline",
    "soft_value_baseline",
    "decoupled_soft_value_baseline",
    "group_soft_value",
    "shifted_mean_baseline",
]


def _mu_r(mu, r):
    mu = check_distribution(mu, "mu")
    r = as_float_array(r, "r")
    return broadcast_arms("mu", mu, "r", r)


def _lse(mu, z):
    """log E_mu[e^z] over the support of mu (mu normalized), accurate when z is tiny.

    With m = max_{mu>0} z: log E_mu[e^z] = m + log1p(sum_y mu_y expm1(z_y - m)), which keeps
    full relative precision as z -> 0 (beta -> inf), where the plain form cancels.
    """
    supp = mu > 0
    m = np.where(supp, z, -np.inf).max(-1, keepdims=True)
    d = np.where(supp, z - m, 0.0)
    s = (mu * np.expm1(d)).sum(-1) / mu.sum(-1)
    return m[..., 0] + np.log1p(np.maximum(s, -1.0))


def soft_value(mu, r, beta):
    r"""Soft value :math:`V^*_\beta = \beta \log E_\mu[e^{r/\beta}]`.

    Decreases from :math:`\max_{\mu>0} r` (:math:`\beta \to 0`) to :math:`E_\mu[r]`
    (:math:`\beta \to \infty`).

    Parameters
    ----------
    mu : array_like, shape (..., K)
        Behaviour policy over arms (last axis).
    r : array_like, shape (..., K)
        Rewards.
    beta : float or array_like broadcastable to the batch shape (...)
        Temperature, > 0.

    Returns
    -------
    ndarray, shape (...)
    """
    mu, r = _mu_r(mu, r)
    (mu, r), (beta,), _ = broadcast_with_batch({"mu": mu, "r": r}, {"beta": check_positive(beta, "beta")})
    mean = (mu * r).sum(-1) / mu.sum(-1)
    return mean + beta * _lse(mu, (r - mean[..., None]) / beta[..., None])


def gibbs_target(mu, r, beta):
    r"""Nominal target :math:`\pi_\beta \propto \mu\, e^{r/\beta}` (arms on the last axis)."""
    mu, r = _mu_r(mu, r)
    (mu, r), (beta,), _ = broadcast_with_batch({"mu": mu, "r": r}, {"beta": check_positive(beta, "beta")})
    z = np.where(mu > 0, r / beta[..., None], -np.inf)
    with np.errstate(divide="ignore"):
        z = z + np.log(np.where(mu > 0, mu, 1.0))
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(-1, keepdims=True)


def mean_baseline(mu, r):
    r""":math:`V = E_\mu[r]` (GRPO-style, PMD-mean). Gives :math:`\eta = \mathrm{KL}(\mu\|\pi) \ge 0`."""
    mu, r = _mu_r(mu, r)
    return (mu * r).sum(-1)


def soft_value_baseline(mu, r, beta):
    r""":math:`V = V^*_\beta`, the exact soft value: the boundary regime, :math:`\eta = 0`."""
    return soft_value(mu, r, beta)


def decoupled_soft_value_baseline(mu, r, beta1):
    r""":math:`V = V^*_{\beta_1}`, a soft value at a second temperature (A*-PO, OAPL).

    With the regression at :math:`\beta_2 < \beta_1`, :math:`V^*_{\beta_1} < V^*_{\beta_2}`
    (the soft value decreases in the temperature), so the target is in the
    positive (pessimistic) regime. Published settings: A*-PO :math:`\beta_1 = 0.5`,
    OAPL :math:`\beta_1 = 1`, both with :math:`\beta_2 = 10^{-3}`.
    """
    return soft_value(mu, r, beta1)


def group_soft_value(rewards, beta):
    r"""Finite-group estimate :math:`\hat V = \beta \log \frac1G \sum_{i=1}^G e^{r_i/\beta}`.

    By Jensen, :math:`E[\hat V] \le V^*_\beta` when :math:`r_i \sim \mu`: the
    estimate is biased low, which pushes the target into the positive regime,
    less so as G grows.

    Parameters
    ----------
    rewards : array_like, shape (..., G)
        Rewards of G samples per prompt (group on the last axis).
    beta : float or array_like broadcastable to (...)

    Returns
    -------
    ndarray, shape (...)
    """
    r = as_float_array(rewards, "rewards")
    if r.ndim == 0 or r.shape[-1] == 0:
        raise ValueError("rewards must have a last axis of G >= 1 samples")
    (r,), (beta,), _ = broadcast_with_batch({"rewards": r}, {"beta": check_positive(beta, "beta")})
    z = r / beta[..., None]
    m = z.max(-1, keepdims=True)
    return beta * (m[..., 0] + np.log(np.exp(z - m).mean(-1)))


def shifted_mean_baseline(mu, r, beta, delta=1.0):
    r""":math:`V = E_\mu[r] - \delta\beta`: the beta-shifted mean.

    The advantage is :math:`A = r - E_\mu[r] + \delta\beta`, so
    :math:`\eta = \delta + \mathrm{KL}(\mu\|\pi) \ge \delta`: for
    :math:`\delta > 0` the target is in the positive regime by construction, at
    every :math:`\beta`, without a second temperature.
    """
    mu, r = _mu_r(mu, r)
    (mu, r), (beta, delta), _ = broadcast_with_batch(
        {"mu": mu, "r": r}, {"beta": check_positive(beta, "beta"), "delta": as_float_array(delta, "delta")}
    )
    return (mu * r).sum(-1) - delta * beta
