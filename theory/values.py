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

from ._checks import (
    as_float_array, broadcast_arms, broadcast_with_batch, check_distribution, check_positive, support_range
)
from ._numerics import logsumexp, softmax

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
    r = as_float_array(r, "r", "an array of rewards")
    return broadcast_arms("mu", mu, "r", r)


def _support_max(mu, r, rname):
    """max of r over the support of mu, (...,); refuses rewards whose spread overflows float64."""
    return support_range(mu, r, rname)[1]


def _lse(mu, z):
    """log E_mu[e^z] over the support of mu (rows of mu summing to 1 up to rounding), at every scale.

    Where every ``|z| <= 1`` (on the support): ``log1p(E_mu[expm1(z)])``, which keeps full relative
    precision as z -> 0 (beta -> inf), where the plain form cancels; ``1 + E_mu[expm1 z]`` is then
    at least 1/e, so the log1p does not cancel. Elsewhere the log-sum-exp of log mu + z, shifted
    by its largest term (a rare arm far up dominates without cancelling anything).
    """
    supp = mu > 0
    msum = mu.sum(-1)
    zs = np.where(supp, z, 0.0)
    small = (np.abs(zs) <= 1.0).all(-1)
    with np.errstate(divide="ignore", over="ignore"):
        near = np.log1p((mu * np.expm1(np.clip(zs, -1.0, 1.0))).sum(-1) / msum)
        lz = np.where(supp, np.log(np.where(supp, mu, 1.0)) + z, -np.inf)
        far = logsumexp(lz) - np.log(msum)
    return np.where(small, near, far)


def _soft_value(mu, r, beta, rname="r"):
    r""":math:`\beta \log E_\mu[e^{r/\beta}]` for (..., K) rows and beta (...), exact at every scale.

    Centred on :math:`E_\mu[r]` (relative precision as :math:`\beta \to \infty`);
    where :math:`(r - E_\mu r)/\beta` overflows (:math:`\beta \to 0`) it is taken
    from the top instead, :math:`\max r + \beta \log E_\mu[e^{(r - \max r)/\beta}]`,
    whose exponents are all :math:`\le 0`.
    """
    rmax = _support_max(mu, r, rname)
    supp = mu > 0
    mean = np.where(supp, mu * r, 0.0).sum(-1) / mu.sum(-1)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        z = np.where(supp, (r - mean[..., None]) / beta[..., None], 0.0)
        centred = mean + beta * _lse(mu, z)
        top = np.where(supp, (r - rmax[..., None]) / beta[..., None], -np.inf)
        tm = np.exp(top)  # <= 1, 1 at the best arms
        from_top = rmax + beta * np.log((mu * tm).sum(-1) / mu.sum(-1))
    return np.where(np.isfinite(z).all(-1), centred, from_top)


def soft_value(mu, r, beta):
    r"""Soft value :math:`V^*_\beta = \beta \log E_\mu[e^{r/\beta}]`.

    Decreases from :math:`\max_{\mu>0} r` (:math:`\beta \to 0`) to :math:`E_\mu[r]`
    (:math:`\beta \to \infty`). Exact (to rounding of the result) for every
    finite ``r`` and every ``beta > 0``, from ``1e-300`` to ``1e300`` and beyond:
    log-space evaluation, centred on the mean, never forms :math:`e^{r/\beta}`.

    Parameters
    ----------
    mu : array_like, shape (..., K)
        Behaviour policy over arms (last axis).
    r : array_like, shape (..., K)
        Rewards.
    beta : float or array_like broadcastable to the batch shape (...)
        Temperature, > 0 and finite.

    Returns
    -------
    ndarray, shape (...)

    Raises
    ------
    ValueError
        For bad ``mu`` (see ``theory._checks``), non-finite ``r``, ``beta`` not
        finite and > 0, or rewards whose differences overflow float64.
    """
    return _soft_value_named(mu, r, beta, "beta")


def _soft_value_named(mu, r, beta, bname):
    mu, r = _mu_r(mu, r)
    (mu, r), (beta,), _ = broadcast_with_batch({"mu": mu, "r": r}, {bname: check_positive(beta, bname)})
    return _soft_value(mu, r, beta)


def gibbs_target(mu, r, beta):
    r"""Nominal target :math:`\pi_\beta \propto \mu\, e^{r/\beta}` (arms on the last axis).

    Evaluated as a softmax of :math:`\log\mu + (r - \max r)/\beta`, so exact for
    every finite ``r`` and ``beta > 0`` (no overflow of :math:`r/\beta`). Arms with
    :math:`\mu = 0` stay at 0. Shapes as in :func:`soft_value`, result (..., K).
    """
    mu, r = _mu_r(mu, r)
    (mu, r), (beta,), _ = broadcast_with_batch({"mu": mu, "r": r}, {"beta": check_positive(beta, "beta")})
    rmax = _support_max(mu, r, "r")
    supp = mu > 0
    with np.errstate(divide="ignore", under="ignore", over="ignore"):
        z = np.where(supp, (r - rmax[..., None]) / beta[..., None] + np.log(np.where(supp, mu, 1.0)), -np.inf)
    return softmax(z)


def mean_baseline(mu, r):
    r""":math:`V = E_\mu[r]` (GRPO-style, PMD-mean). Gives :math:`\eta = \mathrm{KL}(\mu\|\pi) \ge 0`."""
    mu, r = _mu_r(mu, r)
    return _finite((mu * r).sum(-1), "E_mu[r]", "r")


def _finite(v, what, rname):
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what} overflows float64; rescale {rname}")
    return v


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
    return _soft_value_named(mu, r, beta1, "beta1")


def group_soft_value(rewards, beta):
    r"""Finite-group estimate :math:`\hat V = \beta \log \frac1G \sum_{i=1}^G e^{r_i/\beta}`.

    By Jensen, :math:`E[\hat V] \le V^*_\beta` when :math:`r_i \sim \mu`: the
    estimate is biased low, which pushes the target into the positive regime,
    less so as G grows. The soft value of the group's empirical distribution,
    evaluated like :func:`soft_value` (exact at every scale of ``rewards`` and ``beta``).

    Parameters
    ----------
    rewards : array_like, shape (..., G)
        Rewards of G samples per prompt (group on the last axis).
    beta : float or array_like broadcastable to (...)

    Returns
    -------
    ndarray, shape (...)
    """
    r = as_float_array(rewards, "rewards", "an array of rewards")
    if r.ndim == 0 or r.shape[-1] == 0:
        raise ValueError(f"rewards must have a last axis of G >= 1 samples, got shape {r.shape}")
    (r,), (beta,), _ = broadcast_with_batch({"rewards": r}, {"beta": check_positive(beta, "beta")})
    return _soft_value(np.full(r.shape, 1.0 / r.shape[-1]), r, beta, "rewards")


def shifted_mean_baseline(mu, r, beta, delta=1.0):
    r""":math:`V = E_\mu[r] - \delta\beta`: the beta-shifted mean.

    The advantage is :math:`A = r - E_\mu[r] + \delta\beta`, so
    :math:`\eta = \delta + \mathrm{KL}(\mu\|\pi) \ge \delta`: for
    :math:`\delta > 0` the target is in the positive regime by construction, at
    every :math:`\beta`, without a second temperature. ``delta`` is any finite
    number (0: the mean baseline); a result beyond float64 is refused.
    """
    mu, r = _mu_r(mu, r)
    (mu, r), (beta, delta), _ = broadcast_with_batch(
        {"mu": mu, "r": r}, {"beta": check_positive(beta, "beta"), "delta": as_float_array(delta, "delta", "a number")}
    )
    mean = _finite((mu * r).sum(-1), "E_mu[r]", "r")
    with np.errstate(over="ignore", invalid="ignore"):
        v = mean - delta * beta
    if not np.all(np.isfinite(v)):
        raise ValueError("E_mu[r] - delta * beta overflows float64; rescale r, beta or delta")
    return v
