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

from ._checks import (
    to_real_array,
    as_float_array,
    as_int,
    as_positive_scalar,
    as_scalar,
    broadcast_arms,
    check_distribution,
)
from ._numerics import softmax
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


_REQUIRED = {"soft_value": ("beta1",), "loo_soft_value": ("beta1",), "shifted_mean": ("beta",)}


def _check_params(name: str, params: dict) -> dict:
    """Validate the estimator's name and parameters; return them as Python floats."""
    if not isinstance(name, str):
        raise ValueError(f"the advantage estimator name must be a string (one of {', '.join(ADVANTAGES)}), got {name!r}")
    if name not in ADVANTAGES:
        raise ValueError(f"unknown advantage estimator {name!r}; valid: {', '.join(ADVANTAGES)}")
    extra = set(params) - set(ADVANTAGES[name])
    if extra:
        raise ValueError(f"advantage {name!r} takes {ADVANTAGES[name] or 'no parameters'}, got {sorted(extra)}")
    missing = [k for k in _REQUIRED.get(name, ()) if k not in params]
    if missing:
        raise ValueError(f"advantage {name!r} needs {', '.join(missing)} (a finite number > 0)")
    out = {}
    for key, value in params.items():
        if key in ("beta1", "beta"):
            out[key] = as_positive_scalar(value, key)
        else:  # delta, offset, eps: finite numbers
            out[key] = as_scalar(value, key)
    if name == "soft_value" and out.get("delta", 0.0) != 0 and "beta" not in out:
        raise ValueError("advantage 'soft_value' with delta != 0 needs beta (V = V*_beta1 + delta * beta)")
    if "eps" in out and not out["eps"] >= 0:
        raise ValueError(f"eps must be a finite number >= 0, got {out['eps']!r}")
    return out


def _above(params: dict) -> float:
    """How far ``soft_value``'s baseline sits above the soft value: delta * beta (0 by default)."""
    delta = params.get("delta", 0.0)
    return delta * params["beta"] if delta != 0 else 0.0


def _as_rewards(rewards) -> torch.Tensor:
    """Rewards ``(..., G)`` as a real floating tensor (dtype and device kept; gradients kept)."""
    if isinstance(rewards, torch.Tensor):
        if rewards.is_complex():
            raise ValueError(f"rewards is a complex tensor ({rewards.dtype}); pass real rewards")
        if rewards.dtype == torch.bool:
            raise ValueError("rewards is a boolean tensor; pass numbers (e.g. rewards.double())")
        r = rewards
    else:
        raw, _ = to_real_array(rewards, "rewards", "an array of rewards")
        r = torch.as_tensor(np.array(raw))  # a copy, of any shape (0-d too)
    if not r.is_floating_point():
        r = r.to(torch.float64)
    if r.ndim == 0 or r.shape[-1] == 0:
        raise ValueError(f"rewards must have a last axis of G >= 1 samples per prompt, got shape {tuple(r.shape)}")
    bad = ~torch.isfinite(r)
    if bad.any():
        pos = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(f"rewards contain NaN or inf (first at index {pos}); every reward must be finite")
    return r


def _group_soft_value(r: torch.Tensor, b1: float, others: bool = False) -> torch.Tensor:
    r""":math:`b_1 \log \frac1n\sum_j e^{r_j/b_1}` over the group (``others``: leaving out each sample in turn).

    Exact at every scale: centred on the mean with ``expm1``/``log1p`` where the
    centred exponents are at most 1 (large :math:`b_1`, where the plain form
    loses :math:`b_1\epsilon`), else shifted by the maximum (no overflow of
    :math:`r/b_1` as :math:`b_1 \to 0`). Returns ``(..., 1)``, or ``(..., G)`` for ``others``.
    """
    G = r.shape[-1]
    if not others:
        mean = r.mean(-1, keepdim=True)
        d = (r - mean) / b1
        centred = mean + b1 * torch.log1p(torch.expm1(d.clamp(-1.0, 1.0)).mean(-1, keepdim=True))
        m = r.amax(-1, keepdim=True)
        top = m + b1 * (torch.logsumexp((r - m) / b1, -1, keepdim=True) - math.log(G))
        return torch.where(d.abs().amax(-1, keepdim=True) <= 1.0, centred, top)
    eye = torch.eye(G, dtype=torch.bool, device=r.device)
    R = r.unsqueeze(-2).expand(*r.shape[:-1], G, G)  # R[..., i, j] = r_j
    mean = (r.sum(-1, keepdim=True) - r) / (G - 1)  # (..., G): mean of the others
    d = ((R - mean.unsqueeze(-1)) / b1).masked_fill(eye, 0.0)
    e = torch.expm1(d.clamp(-1.0, 1.0)).masked_fill(eye, 0.0)
    centred = mean + b1 * torch.log1p(e.sum(-1) / (G - 1))
    Rm = R.masked_fill(eye, -math.inf)
    m = Rm.amax(-1)
    top = m + b1 * (torch.logsumexp((Rm - m.unsqueeze(-1)) / b1, -1) - math.log(G - 1))
    return torch.where(d.abs().amax(-1) <= 1.0, centred, top)


def group_advantage(name: str, rewards, **params) -> torch.Tensor:
    """Advantages of G samples per prompt from their rewards, shape ``(..., G)``.

    ``rewards``: a tensor (dtype, device and autograd kept), array or list;
    integer rewards become float64. Raises ``ValueError`` for an unknown name,
    bad parameters, non-finite or non-numeric rewards, and where a statistic of
    the group (mean, standard deviation) overflows the rewards' dtype.
    """
    params = _check_params(name, params)
    r = _as_rewards(rewards)
    G = r.shape[-1]
    if name in _NEEDS_PAIR and G < 2:
        raise ValueError(f"advantage {name!r} needs groups of G >= 2 samples (a std or a leave-one-out), got G = {G}")
    out = _group_advantage(name, r, G, params)
    if not torch.isfinite(out).all():
        raise ValueError(
            f"advantage {name!r}: a group statistic of the rewards overflows {r.dtype} "
            f"(rewards up to {float(r.abs().max()):.3g}); rescale the rewards or use float64"
        )
    return out


def _group_advantage(name, r, G, params):
    mean = r.mean(-1, keepdim=True)
    if name == "raw":
        return r
    if name == "mean":
        return r - mean + params.get("offset", 0.0)
    if name == "grpo":
        sd = r.std(-1, keepdim=True)
        _check_spread(sd, r)
        return (r - mean) / (sd + params.get("eps", 1e-6))
    if name == "loo":
        return (r - mean) * (G / (G - 1))
    if name == "zscore":
        sd = r.std(-1, keepdim=True, correction=0)
        _check_spread(sd, r)
        return torch.where(sd > 1e-6, (r - mean) / sd.clamp_min(1e-6), r - mean)
    if name == "shifted_mean":
        return r - mean + params.get("delta", 1.0) * params["beta"]
    if name == "soft_value":
        return r - _group_soft_value(r, params["beta1"]) - _above(params)
    return r - _group_soft_value(r, params["beta1"], others=True)  # leave-one-out soft value


def _check_spread(sd, r):
    if not torch.isfinite(sd).all():
        raise ValueError(
            f"the standard deviation of the rewards overflows {r.dtype} (rewards up to {float(r.abs().max()):.3g}); "
            "rescale the rewards or use float64"
        )


def population_advantage(name: str, mu, r, **params) -> np.ndarray:
    """Exact advantages on a bandit, shape ``(..., K)`` (see the module table)."""
    params = _check_params(name, params)
    mu = check_distribution(mu, "mu")
    r = as_float_array(r, "r", "an array of rewards")
    mu, r = broadcast_arms("mu", mu, "r", r)
    with np.errstate(over="ignore", invalid="ignore"):
        out = _population_advantage(name, mu, r, params)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"advantage {name!r} overflows float64 on these rewards (up to {np.abs(r).max():.3g}); rescale r")
    return out


def _population_advantage(name, mu, r, params):
    mean = (mu * r).sum(-1, keepdims=True)
    if name == "raw":
        return r.copy()
    if name in ("mean", "loo"):
        return r - mean + params.get("offset", 0.0)
    if name in ("grpo", "zscore"):
        d = r - mean
        scale = np.where(mu > 0, np.abs(d), 0.0).max(-1, keepdims=True)
        unit = np.where(scale > 0, scale, 1.0)
        sd = unit * np.sqrt((mu * (d / unit) ** 2).sum(-1, keepdims=True))  # no overflow of d**2
        if name == "grpo":
            return d / (sd + params.get("eps", 1e-6))
        return np.where(sd > 1e-6, d / np.maximum(sd, 1e-6), d)
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
    mu = check_distribution(mu, "mu")
    r = as_float_array(r, "r", "an array of rewards")
    if mu.ndim != 1 or r.shape != mu.shape:
        raise ValueError(f"mu and r must be 1-d of the same length K, got {mu.shape} and {r.shape}")
    G = as_int(G, "G", minimum=1)
    max_outcomes = as_int(max_outcomes, "max_outcomes", minimum=1)
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
    w = softmax(logp)
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
