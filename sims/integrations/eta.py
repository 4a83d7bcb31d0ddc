r"""The regression family's eta from a training batch: fitted, and predicted by the Lambert target.

For the regression objective :math:`\sum_y\mu_y(\beta\log(\pi_y/\mu_y) - A_y)^2`
(OAPL, A*-PO, Kimi OPMD, the shifted regression) every stationary point satisfies
:math:`\beta\log u_y - A_y = -\beta\eta u_y` with :math:`u = \pi/\mu`, and taking the
:math:`\mu`-expectation (``theory.symbolic`` derives it)

.. math:: \eta = \mathrm{KL}(\mu\|\pi) + E_\mu[A]/\beta .

**Fitted eta.** The G completions :math:`y_i\sim\mu` of one prompt give the
Monte-Carlo estimate of both terms, with the realized sequence log-ratios
:math:`s_i = \log\pi(y_i) - \log\mu(y_i)` (nats, summed over the completion's tokens):

.. math:: \hat\eta = \frac1G\sum_i(-s_i) + \frac{1}{G\beta}\sum_i A_i

(:math:`-s` is the k1 estimator of :math:`\mathrm{KL}(\mu\|\pi)` on samples of
:math:`\mu`). Averaged over groups of equal size it equals the same formula pooled
over all their completions, so a trainer that does not know the groups (verl's
policy loss) can still report it. It is the eta of the policy being fitted, so it
moves during training; where the policy fits the group's regression exactly
(:math:`\log u_i + \eta u_i = A_i/\beta` with :math:`\frac1G\sum_i u_i = 1`) it equals the
prediction below.

**Predicted eta.** The regression's target depends on :math:`\mu` only through the
law of :math:`A(y)` under :math:`y\sim\mu`: :math:`\eta` solves
:math:`E_\mu[W(\eta e^{A/\beta})/\eta] = 1` (the limit :math:`e^{A/\beta}` at :math:`\eta = 0`;
``theory.lambert`` picks the branches in every regime). The group's G samples estimate that law by
their empirical distribution, so the prediction is ``theory.lambert_target(1/G, A, beta)``
on the bandit whose arms are the sampled completions with equal mass (default,
``logp_mu_seq=None``). This is the plug-in of the same sample averages as the fitted
eta: with it the shifted regression's prediction is :math:`\ge\delta` and the mean
baseline's :math:`\ge 0` in every group, as in the population theory; it converges to
the population eta as G grows.

The alternative ``logp_mu_seq=...`` weighs the arms by the behaviour probabilities
renormalized over the group, :math:`\hat\mu_i = \mu(y_i)/\sum_j\mu(y_j)`. It is an
approximation: the samples already come from :math:`\mu`, so weighing them by
:math:`\mu(y_i)` again estimates the law of A under a :math:`\mu^2`-tilted
distribution (not consistent as G grows), :math:`E_{\hat\mu}[A]` is not the baseline's
value (the shifted regression's prediction can fall below :math:`\delta`), it ignores the
completions that were not sampled, and it counts a duplicated completion twice. The
two agree when the sampled completions are equally likely.

**Regime.** The sign of the predicted eta is the regime of docs/theory.md section 3:
:math:`\operatorname{sign}\eta = \operatorname{sign}\log E_\mu[e^{A/\beta}]`, here
:math:`\log\frac1G\sum_i e^{A_i/\beta}` (:func:`group_regime`, ``theory.lambert.regime_of`` on the
same plug-in bandit, computed without solving): +1 positive (pessimistic), 0 the boundary
(the Gibbs target), -1 negative (optimistic).

Shapes: ``(..., G)`` in, ``(...)`` out (one value per group). Inputs may be torch
tensors or arrays; outputs are float64 numpy arrays (diagnostics, no gradient).
"""

from __future__ import annotations

import numpy as np

from theory._numerics import softmax
from theory.lambert import lambert_target, regime_of

__all__ = ["sequence_log_ratio", "behaviour_weights", "fitted_eta", "lambert_eta", "group_regime"]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").double().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_beta(beta) -> float:
    beta = float(beta)
    if not (np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    return beta


def _check_groups(adv) -> np.ndarray:
    a = _np(adv)
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ValueError("adv must have a last axis of G >= 1 completions")
    return a


def sequence_log_ratio(logp, logp_mu, mask=None) -> np.ndarray:
    r"""Sequence log-ratios :math:`s = \sum_t m_t(\log\pi_t - \log\mu_t)`, shape ``(...)`` from ``(..., T)``."""
    lp, lm = _np(logp), _np(logp_mu)
    if lp.shape != lm.shape:
        raise ValueError(f"logp has shape {lp.shape} but logp_mu has shape {lm.shape}")
    m = np.ones_like(lp) if mask is None else _np(mask)
    if m.shape != lp.shape:
        raise ValueError(f"mask has shape {m.shape} but logp has shape {lp.shape}")
    return np.where(m > 0, lp - lm, 0.0).sum(-1)


def behaviour_weights(logp_mu_seq) -> np.ndarray:
    r"""The group's behaviour mass :math:`\hat\mu = \mathrm{softmax}(\log\mu(y_i))` over the last axis ``G``."""
    z = _np(logp_mu_seq)
    if z.ndim == 0 or z.shape[-1] == 0:
        raise ValueError("logp_mu_seq must have a last axis of G >= 1 completions")
    if not np.isfinite(z).all():
        raise ValueError("logp_mu_seq has NaN or inf")
    return softmax(z)


def fitted_eta(log_ratio, adv, beta) -> np.ndarray:
    r"""Fitted eta per group: :math:`\mathrm{mean}_i(-s_i) + \mathrm{mean}_i(A_i)/\beta` over the last axis.

    Parameters
    ----------
    log_ratio : array_like, shape (..., G)
        Sequence log-ratios :math:`s_i = \log\pi(y_i)/\mu(y_i)` (nats), e.g. from :func:`sequence_log_ratio`.
    adv : array_like, shape (..., G)
        The advantages the regression was given, in reward units.
    beta : float
        The regression's temperature (reward units per nat), > 0.

    Returns
    -------
    ndarray, shape (...)
    """
    s, a, beta = _np(log_ratio), _np(adv), _check_beta(beta)
    if s.shape != a.shape or s.ndim == 0:
        raise ValueError(f"log_ratio {s.shape} and adv {a.shape} must have the same shape (..., G)")
    return (-s).mean(-1) + a.mean(-1) / beta


def lambert_eta(adv, beta, *, logp_mu_seq=None) -> np.ndarray:
    r"""Lambert-predicted eta per group: the eta of ``theory.lambert_target(mu_hat, adv, beta)``.

    Parameters
    ----------
    adv : array_like, shape (..., G)
        Advantages of the G completions of each group, reward units.
    beta : float
        Temperature, > 0.
    logp_mu_seq : array_like, shape (..., G), optional
        Behaviour log-probabilities :math:`\log\mu(y_i)` (nats, summed over tokens). None
        (default): equal mass :math:`1/G` on every sample (the consistent plug-in); given:
        :math:`\hat\mu = \mathrm{softmax}(\log\mu(y_i))` (module docstring for why that is an approximation).

    Returns
    -------
    ndarray, shape (...)
    """
    a, beta = _check_groups(adv), _check_beta(beta)
    if logp_mu_seq is None:
        mu = np.full_like(a, 1.0 / a.shape[-1])
    else:
        mu = behaviour_weights(logp_mu_seq)
        if mu.shape != a.shape:
            raise ValueError(f"logp_mu_seq {mu.shape} and adv {a.shape} must have the same shape (..., G)")
    return lambert_target(mu, a, beta)[1]


def group_regime(adv, beta) -> np.ndarray:
    r"""Regime of each group's predicted eta: +1, 0 or -1, the sign of :math:`\log\frac1G\sum_i e^{A_i/\beta}`.

    ``theory.lambert.regime_of`` on the bandit of :func:`lambert_eta` (mass :math:`1/G` on each
    sampled completion): the sign of ``lambert_eta(adv, beta)``, 0 within rounding of the boundary.
    ``adv`` ``(..., G)`` and ``beta`` as in :func:`lambert_eta`; returns an int array of shape ``(...)``.
    """
    a, beta = _check_groups(adv), _check_beta(beta)
    return regime_of(np.full_like(a, 1.0 / a.shape[-1]), a, beta)
