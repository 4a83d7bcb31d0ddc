r"""Advantage estimators: group (sample) form for training, population form for the theory.

Every estimator exists twice, under the same name:

* ``group_advantage(name, rewards, **params)`` — torch, from the rewards of G
  samples per prompt, shape ``(..., G)`` -> ``(..., G)``. This is what the
  trainers and the simulators use.
* ``population_advantage(name, mu, r, **params)`` — numpy, the exact
  :math:`A(y) = r(y) - V` on a bandit with behaviour ``mu`` and rewards ``r``,
  shape ``(..., K)``. The group form tends to it as G -> infinity (except the
  soft value, whose group form is biased low at finite G: that bias is the
  finite-group pessimism of docs/theory.md section 3).

Estimators (V is the baseline, :math:`A = r - V`):

==================  ==================================================================  ===================================================
name                group form                                                          population form
==================  ==================================================================  ===================================================
``raw``             :math:`A = r`                                                       :math:`A = r`
``mean``            :math:`V = \bar r` (Dr. GRPO, OPMD/PMD-mean)                        :math:`V = E_\mu[r]`
``grpo``            :math:`(r - \bar r)/(\mathrm{std}(r)+\epsilon)`                     :math:`(r - E_\mu r)/(\mathrm{sd}_\mu(r)+\epsilon)`
``loo``             :math:`V_i = \frac{1}{G-1}\sum_{j\ne i} r_j`                        :math:`V = E_\mu[r]`
``soft_value``      :math:`V = \beta_1\log\frac1G\sum_j e^{r_j/\beta_1} + \delta\beta`  :math:`V = V^*_{\beta_1} + \delta\beta`
``loo_soft_value``  leave-one-out soft value                                            :math:`V = V^*_{\beta_1}`
``shifted_mean``    :math:`V = \bar r - \delta\beta`                                    :math:`V = E_\mu[r] - \delta\beta`
``zscore``          :math:`(r-\bar r)/\mathrm{sd}_{pop}(r)` (TPO)                       :math:`(r - E_\mu r)/\mathrm{sd}_\mu(r)`
==================  ==================================================================  ===================================================

``soft_value`` takes an optional shift ``delta`` (default 0: no shift; a
nonzero ``delta`` also needs ``beta``): :math:`V` sits :math:`\delta\beta` *above* the soft value,
so with :math:`\beta_1 = \beta` and :math:`\delta > 0` the regression target
is in the negative (optimistic) regime, :math:`\eta < 0` (the control
``opmd_above`` of ``theory.objectives``). Note the sign: ``shifted_mean``'s
``delta`` moves :math:`V` *below* the mean; each is positive in the direction
its objective is named for.

``std`` in ``grpo`` is the unbiased (G-1) sample standard deviation, as in
the reference GRPO implementations; ``zscore`` uses the population standard
deviation and only centres when it is at most ``1e-6`` (TPO).

A third form, ``conditional_group_advantage(name, mu, r, G, **params)``, is
what a trainer that draws fresh groups of G samples from :math:`\mu` actually
regresses on: the group estimator's mean for a sample given its own arm,

.. math:: \bar A_k = E\big[A_1 \,\big|\, y_1 = k\big], \qquad y_2,\dots,y_G \sim \mu \text{ i.i.d.}

For a loss that is quadratic in the signal (the regression family) the expected
gradient over groups is the gradient of the population loss with :math:`\bar A`
in place of :math:`A` (exchangeability of the group), so the stochastic trainer's
fixed point is the population target at :math:`\bar A`. It is computed exactly
by enumerating the multinomial counts of the other G - 1 samples over the arms.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._checks import as_float_array, check_distribution
from .values import soft_value

__all__ = ["ADVANTAGES", "group_advantage", "population_advantage", "conditional_group_advantage"]

#: Estimator names and the parameters each one takes.
ADVANTAGES: dict[str, tuple[str, ...]] = {
    "raw": (),
    "mean": ("offset",),
    "grpo": ("eps",),
    "loo": (),
    "soft_value": ("beta1", "beta", "delta"),
    "loo_soft_value": ("beta1",),
    "shifted_mean": ("beta", "delta"),
    "zscore": (),
}

_NEEDS_PAIR = {"grpo", "loo", "loo_soft_value"}


def _check_params(name: str, params: dict) -> dict:
    if name not in ADVANTAGES:
        raise ValueError(f"unknown advantage estimator {name!r}; valid: {', '.join(ADVANTAGES)}")
    extra = set(params) - set(ADVANTAGES[name])
    if extra:
        raise ValueError(f"advantage {name!r} takes {ADVANTAGES[name] or 'no parameters'}, got {sorted(extra)}")
    for key in ("beta1", "beta"):
        if key in params and not (math.isfinite(params[key]) and params[key] > 0):
            raise ValueError(f"{key} must be a finite number > 0, got {params[key]!r}")
    if "delta" in params and not (isinstance(params["delta"], (int, float)) and math.isfinite(params["delta"])):
        raise ValueError(f"delta must be a finite number, got {params['delta']!r}")
    if name == "soft_value" and params.get("delta", 0.0) != 0 and "beta" not in params:
        raise ValueError("advantage 'soft_value' with delta != 0 needs beta (V = V*_beta1 + delta * beta)")
    if "eps" in params and not (params["eps"] >= 0):
        raise ValueError(f"eps must be >= 0, got {params['eps']!r}")
    return params


def _above(params: dict) -> float:
    """How far ``soft_value``'s baseline sits above the soft value: delta * beta (0 by default)."""
    delta = params.get("delta", 0.0)
    return delta * params["beta"] if delta != 0 else 0.0


def _lme(z: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(z, dim) - math.log(z.shape[dim])


def group_advantage(name: str, rewards, **params) -> torch.Tensor:
    """Advantages of G samples per prompt from their rewards, shape ``(..., G)``."""
    params = _check_params(name, params)
    r = torch.as_tensor(rewards)
    if not r.is_floating_point():
        r = r.to(torch.float64)
    if r.ndim == 0 or r.shape[-1] == 0:
        raise ValueError("rewards must have a last axis of G >= 1 samples per prompt")
    if not torch.isfinite(r).all():
        raise ValueError("rewards contain NaN or inf")
    G = r.shape[-1]
    if name in _NEEDS_PAIR and G < 2:
        raise ValueError(f"advantage {name!r} needs groups of G >= 2 samples (a std or a leave-one-out), got G = {G}")
    mean = r.mean(-1, keepdim=True)
    if name == "raw":
        return r
    if name == "mean":
        return r - mean + params.get("offset", 0.0)
    if name == "grpo":
        return (r - mean) / (r.std(-1, keepdim=True) + params.get("eps", 1e-6))
    if name == "loo":
        return (r - mean) * (G / (G - 1))
    if name == "zscore":
        sd = r.std(-1, keepdim=True, correction=0)
        return torch.where(sd > 1e-6, (r - mean) / sd.clamp_min(1e-6), r - mean)
    if name == "shifted_mean":
        return r - mean + params.get("delta", 1.0) * params["beta"]
    b1 = params["beta1"]
    z = r / b1
    if name == "soft_value":
        return r - b1 * _lme(z, -1).unsqueeze(-1) - _above(params)
    # leave-one-out soft value: V_i = b1 log mean_{j != i} exp(r_j / b1)
    eye = torch.eye(G, dtype=torch.bool, device=r.device)
    zz = z.unsqueeze(-2).expand(*z.shape[:-1], G, G).masked_fill(eye, -math.inf)
    v = b1 * (torch.logsumexp(zz, -1) - math.log(G - 1))
    return r - v


def population_advantage(name: str, mu, r, **params) -> np.ndarray:
    """Exact advantages on a bandit, shape ``(..., K)`` (see the module table)."""
    params = _check_params(name, params)
    mu = check_distribution(mu)
    r = as_float_array(r, "r")
    mu, r = np.broadcast_arrays(mu, r)
    mean = (mu * r).sum(-1, keepdims=True)
    if name == "raw":
        return r.copy()
    if name in ("mean", "loo"):
        return r - mean + params.get("offset", 0.0)
    if name in ("grpo", "zscore"):
        sd = np.sqrt((mu * (r - mean) ** 2).sum(-1, keepdims=True))
        if name == "grpo":
            return (r - mean) / (sd + params.get("eps", 1e-6))
        return np.where(sd > 1e-6, (r - mean) / np.maximum(sd, 1e-6), r - mean)
    if name == "shifted_mean":
        return r - mean + params.get("delta", 1.0) * params["beta"]
    return r - soft_value(mu, r, params["beta1"])[..., None] - _above(params)


def conditional_group_advantage(name: str, mu, r, G: int, *, max_outcomes: int = 2_000_000, **params) -> np.ndarray:
    r"""Exact :math:`\bar A_k = E[A_1 \mid y_1 = k]` of the group estimator ``name`` with groups of ``G``.

    The other :math:`G-1` samples of the group are i.i.d. from ``mu``; their
    arm counts are enumerated (:math:`\binom{G-1+K-1}{K-1}` outcomes) and the
    estimator is ``group_advantage`` itself, applied to each outcome's rewards.
    Closed forms that follow (tested): ``mean`` gives
    :math:`(1 - 1/G)(r_k - E_\mu r)`, ``loo`` gives :math:`r_k - E_\mu r`; as
    :math:`G\to\infty` every estimator tends to ``population_advantage``.

    Parameters
    ----------
    name : str
        Estimator (``ADVANTAGES``).
    mu : array_like, shape (K,)
        Behaviour distribution over the arms (one bandit; zeros allowed).
    r : array_like, shape (K,)
        Rewards of the arms.
    G : int
        Group size, >= 1 (>= 2 for estimators that need a pair).
    max_outcomes : int
        Refuse (ValueError) when the enumeration would exceed this many outcomes.
    **params
        The estimator's parameters.

    Returns
    -------
    ndarray, shape (K,)
        :math:`\bar A_k` (for arms with :math:`\mu_k = 0` too: the mean advantage a
        sample of that arm would get).
    """
    params = _check_params(name, params)
    mu = check_distribution(mu)
    r = as_float_array(r, "r")
    if mu.ndim != 1 or r.shape != mu.shape:
        raise ValueError(f"mu and r must be 1-d of the same length K, got {mu.shape} and {r.shape}")
    if isinstance(G, bool) or not isinstance(G, (int, np.integer)) or G < 1:
        raise ValueError(f"G must be an integer >= 1, got {G!r}")
    G = int(G)
    if name in _NEEDS_PAIR and G < 2:
        raise ValueError(f"advantage {name!r} needs groups of G >= 2 samples (a std or a leave-one-out), got G = {G}")
    live = np.flatnonzero(mu > 0)  # arms the others can land on
    m, n = live.size, G - 1
    outcomes = math.comb(n + m - 1, m - 1)
    if outcomes > max_outcomes:
        raise ValueError(
            f"{outcomes} multinomial outcomes for G = {G} over {m} arms exceed max_outcomes = {max_outcomes}"
        )
    counts = _compositions(n, m)  # (outcomes, m)
    logmu = np.log(mu[live])
    logp = (
        math.lgamma(n + 1)
        - np.array([sum(math.lgamma(c + 1) for c in row) for row in counts])
        + (counts * logmu).sum(1)
    )
    w = np.exp(logp - logp.max())
    w /= w.sum()
    others = np.repeat(np.broadcast_to(r[live], counts.shape).reshape(-1), counts.reshape(-1)).reshape(len(counts), n)
    K = r.size
    group = np.empty((K, len(counts), G))
    group[:, :, 0] = r[:, None]
    group[:, :, 1:] = others[None]
    adv = group_advantage(name, torch.from_numpy(group), **params)[..., 0].numpy()  # (K, outcomes)
    return adv @ w


def _compositions(n: int, m: int) -> np.ndarray:
    """All nonnegative integer vectors of length ``m`` summing to ``n``, shape ``(C(n+m-1, m-1), m)``."""
    import itertools

    rows = []
    for bars in itertools.combinations(range(n + m - 1), m - 1):
        edges = (-1, *bars, n + m - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(m)])
    return np.array(rows, dtype=np.int64).reshape(-1, m)
