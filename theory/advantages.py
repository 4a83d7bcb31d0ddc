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

verl 0.9.1's own estimators (``verl/trainer/ppo/core_algos.py``, ``@register_adv_est``),
outcome rewards (one reward per completion, at its last token; ``gamma = 1``):

================================  =====================================================================  ==========================================================
name                              group form                                                             population form (one prompt; the batch is its population)
================================  =====================================================================  ==========================================================
``remax``                         :math:`A_i = r_i - r(\bar y)`, ``baseline`` :math:`r(\bar y)` given      :math:`V = r_{\arg\max\mu}` (the greedy arm)
``opo``                           :math:`V = \sum_i L_i r_i / \sum_i L_i` (``lengths`` L)                :math:`V = E_\mu[Lr]/E_\mu[L]`
``reinforce_plus_plus``           whiten r over the batch's tokens                                       :math:`(r - m_L)/\sqrt{v_L + 10^{-8}}`
``reinforce_plus_plus_baseline``  whiten :math:`r - \bar r` over the batch's tokens                      the same as ``reinforce_plus_plus``
``gdpo``                          whiten :math:`\sum_c w_c\,\mathrm{grpo}(r^{(c)})` over the tokens      the same, with :math:`E_\mu`, :math:`\mathrm{sd}_\mu`
``grpo_passk``                    :math:`(r_{(1)} - r_{(2)})/(\mathrm{std}+\epsilon)` on the best only   :math:`(r - \max_{\mu>0} r)_+/(\mathrm{sd}_\mu(r)+\epsilon)`
``optimal_token_baseline``        :math:`V = \sum_i W_i r_i/(\sum_i W_i + \epsilon)` (``score_norms`` W)  :math:`V = E_\mu[wr]/E_\mu[w]`, :math:`w_y = \lVert e_y-\mu\rVert^2`
``gpg``                           :math:`\alpha (r - \bar r)/f`, :math:`\alpha = N/\#\{r \ne 0\}`          :math:`(r - E_\mu r)/(P_\mu(r\ne0)\,f)`
================================  =====================================================================  ==========================================================

Here :math:`m_L, v_L` are the token-weighted mean and variance (each completion
counts its length :math:`L`), as verl's ``masked_whiten`` takes them over the
response mask. verl's ``grpo_vectorized`` and ``rloo_vectorized`` are the zoo's
``grpo`` and ``loo`` (equal on groups of two or more; tested), and
``tir_optimal_token_baseline`` is ``optimal_token_baseline`` on contiguous masks.

Inputs the bandit does not have are explicit: ``lengths`` (``opo``, the
whitened ones: an array ``(..., G)``, per arm ``(K,)`` on a bandit, or the string
``'equal'``: every completion of one length, as on the one-token bandit),
``baseline`` (``remax``'s greedy reward, group form only: on a bandit it is the
reward of :math:`\arg\max\mu`), ``score_norms`` (``optimal_token_baseline``'s
:math:`W_i`, group form only: on a softmax bandit
:math:`w_y = \lVert\nabla_\theta\log\pi(y)\rVert^2 = \lVert e_y - \mu\rVert^2`), ``components``
(``gdpo``'s reward components ``(C, ..., G)``, or ``(C, ..., K)``; absent: the one
component ``r``, verl's fallback) with ``weights`` ``(C,)`` (absent: ones, verl's
default). A missing required input is a ``ValueError`` naming it.

The whitened estimators and ``gpg`` couple a batch: their group form takes the
whole ``rewards`` tensor as one batch. Their population form assumes the
batch is the one prompt's population (batch mean and sd are per-step
constants; across many prompts they mix prompts, which a one-prompt bandit
cannot show). Why each population form is what it is:

* ``remax``: greedy decoding picks :math:`\arg\max_y\mu_y`; exact ties take
  the first arm (``numpy.argmax``, as ``torch.argmax`` over a vocabulary).
* ``reinforce_plus_plus_baseline``: whitening removes any per-batch constant,
  so on one prompt the group mean drops out (it matters across prompts).
* ``grpo_passk``: as :math:`G\to\infty` the best reward on the support is
  drawn twice, so the gap :math:`r_{(1)} - r_{(2)}` vanishes, except for an arm
  off the support above every supported reward; the finite-G signal is
  ``conditional_group_advantage``.
* ``optimal_token_baseline``: :math:`b` minimizing
  :math:`E_\mu\lVert(r-b)\nabla\log\pi\rVert^2` is
  :math:`E_\mu[r\lVert s\rVert^2]/E_\mu[\lVert s\rVert^2]`; a softmax score is
  :math:`s_y = e_y - \mu` (:math:`V = 0` at a vertex :math:`\mu = e_y`, as verl's
  :math:`\epsilon` makes it).
* ``gpg``: :math:`\alpha \to 1/P_\mu(r\ne 0)` (:math:`A = 0` where
  :math:`P_\mu(r\ne0) = 0`: every sampled reward, and the mean, is 0).

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
from types import MappingProxyType

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

__all__ = ["ADVANTAGES", "BATCH_COUPLED", "GROUP_INPUTS", "group_advantage", "population_advantage", "conditional_group_advantage"]

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
    # verl 0.9.1's estimators
    "remax": ("baseline",),
    "opo": ("lengths",),
    "reinforce_plus_plus": ("lengths",),
    "reinforce_plus_plus_baseline": ("lengths",),
    "gdpo": ("eps", "lengths", "components", "weights"),
    "grpo_passk": ("eps",),
    "optimal_token_baseline": ("eps", "score_norms"),
    "gpg": ("f_norm",),
}

_NEEDS_PAIR = {"grpo", "loo", "loo_soft_value", "opo", "reinforce_plus_plus_baseline", "gdpo", "grpo_passk", "gpg"}


_REQUIRED = {"soft_value": ("beta1",), "loo_soft_value": ("beta1",), "shifted_mean": ("beta",),
             "opo": ("lengths",), "reinforce_plus_plus": ("lengths",), "reinforce_plus_plus_baseline": ("lengths",),
             "gdpo": ("lengths",)}

#: Inputs that are arrays (per sample, per arm or per component), not numbers, and what each one is.
_INPUTS = {
    "lengths": "the completions' lengths in tokens, (..., G) (per arm (K,) on a bandit), or 'equal' "
               "(every completion of one length, as on the one-token bandit)",
    "baseline": "the reward of the prompt's greedy completion, (...) or (..., 1)",
    "score_norms": "each completion's squared score norm W_i = sum_t (1 - 2 pi_t + sum_v pi_v^2), (..., G)",
    "components": "the reward components, (C, ..., G) (or (C, ..., K) on a bandit)",
    "weights": "one weight per reward component, (C,)",
}
#: Inputs of the group form that a bandit derives from mu (the population and conditional forms refuse them).
_FROM_MU = {"remax": "baseline", "optimal_token_baseline": "score_norms"}
#: Estimators whose group form needs a per-group input beyond the rewards, which a trainer must compute
#: (read-only): ``remax`` the greedy completion's reward, ``optimal_token_baseline`` the squared score norms.
GROUP_INPUTS = MappingProxyType(dict(_FROM_MU))
#: Estimators whose group form couples the whole batch (the rewards tensor is one batch).
BATCH_COUPLED = frozenset({"reinforce_plus_plus", "reinforce_plus_plus_baseline", "gdpo", "gpg"})
#: verl's masked_whiten: (x - mean) / sqrt(var + 1e-8) over the response tokens
_WHITEN_EPS = 1e-8


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
        what = "; ".join(f"{k}: {_INPUTS[k]}" if k in _INPUTS else f"{k} (a finite number > 0)" for k in missing)
        raise ValueError(f"advantage {name!r} needs {what}")
    out = {}
    for key, value in params.items():
        if key in _INPUTS:
            out[key] = _check_input(name, key, value)
        elif key in ("beta1", "beta", "f_norm"):
            out[key] = as_positive_scalar(value, key)
        else:  # delta, offset, eps: finite numbers
            out[key] = as_scalar(value, key)
    if name == "soft_value" and out.get("delta", 0.0) != 0 and "beta" not in out:
        raise ValueError("advantage 'soft_value' with delta != 0 needs beta (V = V*_beta1 + delta * beta)")
    if "eps" in out and not out["eps"] >= 0:
        raise ValueError(f"eps must be a finite number >= 0, got {out['eps']!r}")
    return out


def _check_input(name: str, key: str, value):
    """An array input (``_INPUTS``) as a float64 array (or the string ``'equal'`` for ``lengths``)."""
    if key == "lengths" and isinstance(value, str):
        if value != "equal":
            raise ValueError(f"advantage {name!r}: lengths must be an array or 'equal', got {value!r}")
        return value
    arr = as_float_array(value, key, _INPUTS[key])
    if key == "lengths" and not (arr > 0).all():
        raise ValueError(f"advantage {name!r}: lengths must be > 0 (tokens per completion), got min {arr.min():g}")
    if key == "score_norms" and not (arr >= 0).all():
        raise ValueError(f"advantage {name!r}: score_norms must be >= 0 (squared norms), got min {arr.min():g}")
    if key == "weights" and arr.ndim != 1:
        raise ValueError(f"advantage {name!r}: weights must be 1-d (one per component), got shape {arr.shape}")
    if key == "components" and arr.ndim < 2:
        raise ValueError(f"advantage {name!r}: components must be (C, ..., G), got shape {arr.shape}")
    return arr


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
    if name in _FROM_MU and _FROM_MU[name] not in params:
        key = _FROM_MU[name]
        raise ValueError(f"advantage {name!r} needs {key}: {_INPUTS[key]} (on a bandit the population and "
                         "conditional forms derive it from mu)")
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


def _group_advantage(name, r, G, params, per_group=False):
    """The group form; ``per_group``: a batch-coupled estimator takes each group as its own batch."""
    if name in _VERL_GROUP:
        return _VERL_GROUP[name](r, params, per_group)
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


# ---------------------------------------------------------------------------
# verl 0.9.1's estimators: group forms (torch), from verl/trainer/ppo/core_algos.py (formulas only)
# ---------------------------------------------------------------------------


def _input_like(params, key, r, lead=0):
    """The array input ``key`` as a tensor like ``r``, broadcast to ``r``'s shape (after ``lead`` leading axes)."""
    x = torch.as_tensor(params[key], dtype=r.dtype, device=r.device)
    shape = (*x.shape[:lead], *r.shape)
    try:
        return torch.broadcast_to(x, shape)
    except RuntimeError as err:
        raise ValueError(f"{key} of shape {tuple(x.shape)} does not broadcast to the rewards' {tuple(r.shape)}"
                         + (f" (after its {lead} leading axis)" if lead else "")) from err


def _lengths(params, r):
    """Per-sample token counts ``(..., G)``: ones for ``'equal'`` (then the whitening counts samples)."""
    return torch.ones_like(r) if isinstance(params["lengths"], str) else _input_like(params, "lengths", r)


def _batch_dims(r, per_group):
    return (-1,) if per_group else tuple(range(r.ndim))


def _whiten(x, L, per_group):
    r"""verl's ``masked_whiten`` over the batch's tokens: :math:`(x - m)/\sqrt{v + 10^{-8}}`.

    Each sample counts its length ``L`` (its tokens all carry ``x``); :math:`m` is the
    token mean, :math:`v` the token variance with Bessel's :math:`N/(N-1)`, :math:`N = \sum L`.
    """
    dims = _batch_dims(x, per_group)
    n = L.sum(dims, keepdim=True)
    if not (n > 1).all():
        raise ValueError(f"whitening over the batch needs more than one token, got {float(n.min()):g}")
    m = (L * x).sum(dims, keepdim=True) / n
    var = (L * (x - m) ** 2).sum(dims, keepdim=True) / (n - 1)
    return (x - m) * torch.rsqrt(var + _WHITEN_EPS)


def _grpo_scores(c, eps):
    r"""verl's grpo on one reward component: :math:`(c - \bar c)/(\mathrm{std}(c) + \epsilon)` (unbiased std)."""
    sd = c.std(-1, keepdim=True)
    _check_spread(sd, c)
    return (c - c.mean(-1, keepdim=True)) / (sd + eps)


def _g_remax(r, p, per_group):
    b = torch.as_tensor(p["baseline"], dtype=r.dtype, device=r.device)
    if b.shape == r.shape[:-1]:
        b = b.unsqueeze(-1)
    return r - _input_like({"baseline": b}, "baseline", r)


def _g_opo(r, p, per_group):
    L = _lengths(p, r)
    return r - (L * r).sum(-1, keepdim=True) / L.sum(-1, keepdim=True)


def _g_rfpp(r, p, per_group):
    return _whiten(r, _lengths(p, r), per_group)


def _g_rfpp_baseline(r, p, per_group):
    return _whiten(r - r.mean(-1, keepdim=True), _lengths(p, r), per_group)


def _g_gdpo(r, p, per_group):
    comps = _input_like(p, "components", r, lead=1) if "components" in p else r.unsqueeze(0)
    C = comps.shape[0]
    if "weights" in p and p["weights"].shape != (C,):
        raise ValueError(f"gdpo: weights must have one entry per component ({C}), got shape {p['weights'].shape}")
    w = torch.as_tensor(p["weights"], dtype=r.dtype, device=r.device) if "weights" in p else torch.ones(C, dtype=r.dtype)
    total = sum(w[c] * _grpo_scores(comps[c], p.get("eps", 1e-6)) for c in range(C))
    return _whiten(total, _lengths(p, r), per_group)


def _g_passk(r, p, per_group):
    top = torch.topk(r, 2, dim=-1)
    gap = (top.values[..., 0] - top.values[..., 1]).unsqueeze(-1)
    sd = r.std(-1, keepdim=True)
    _check_spread(sd, r)
    return torch.zeros_like(r).scatter(-1, top.indices[..., :1], gap / (sd + p.get("eps", 1e-6)))


def _g_otb(r, p, per_group):
    if r.shape[-1] == 1:  # verl: a lone completion has no baseline
        return r.clone()
    w = _input_like(p, "score_norms", r)
    return r - (w * r).sum(-1, keepdim=True) / (w.sum(-1, keepdim=True) + p.get("eps", 1e-8))


def _g_gpg(r, p, per_group):
    dims = _batch_dims(r, per_group)
    n = torch.ones_like(r).sum(dims, keepdim=True)
    alpha = n / (r != 0).sum(dims, keepdim=True).clamp(min=1)
    return alpha * (r - r.mean(-1, keepdim=True)) / p.get("f_norm", 1.0)


_VERL_GROUP = {"remax": _g_remax, "opo": _g_opo, "reinforce_plus_plus": _g_rfpp,
               "reinforce_plus_plus_baseline": _g_rfpp_baseline, "gdpo": _g_gdpo, "grpo_passk": _g_passk,
               "optimal_token_baseline": _g_otb, "gpg": _g_gpg}


def _check_spread(sd, r):
    if not torch.isfinite(sd).all():
        raise ValueError(
            f"the standard deviation of the rewards overflows {r.dtype} (rewards up to {float(r.abs().max()):.3g}); "
            "rescale the rewards or use float64"
        )


def population_advantage(name: str, mu, r, **params) -> np.ndarray:
    """Exact advantages on a bandit, shape ``(..., K)`` (see the module table)."""
    params = _check_params(name, params)
    _refuse_from_mu(name, params)
    mu = check_distribution(mu, "mu")
    r = as_float_array(r, "r", "an array of rewards")
    mu, r = broadcast_arms("mu", mu, "r", r)
    with np.errstate(over="ignore", invalid="ignore"):
        out = _population_advantage(name, mu, r, params)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"advantage {name!r} overflows float64 on these rewards (up to {np.abs(r).max():.3g}); rescale r")
    return out


def _refuse_from_mu(name, params):
    if name in _FROM_MU and _FROM_MU[name] in params:
        raise ValueError(f"advantage {name!r}: on a bandit {_FROM_MU[name]} follows from mu; pass it to the group "
                         "form only")


def _population_advantage(name, mu, r, params):
    if name in _VERL_POP:
        return _VERL_POP[name](mu, r, params)
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


# ---------------------------------------------------------------------------
# verl 0.9.1's estimators: population forms (numpy, (..., K)); the module docstring says why each is so
# ---------------------------------------------------------------------------


def _arm_input(params, key, r, lead=0):
    """A per-arm input broadcast to ``r`` (after ``lead`` leading axes)."""
    x = params[key]
    try:
        return np.broadcast_to(x, (*x.shape[:lead], *r.shape))
    except ValueError as err:
        raise ValueError(f"{key} of shape {x.shape} does not broadcast to the arms' {r.shape}") from err


def _moments(wt, x):
    """Mean and variance of ``x`` under the (unnormalized) weights ``wt``, over the last axis."""
    m = (wt * x).sum(-1, keepdims=True) / wt.sum(-1, keepdims=True)
    return m, (wt * (x - m) ** 2).sum(-1, keepdims=True) / wt.sum(-1, keepdims=True)


def _p_whiten(mu, x, params):
    """Whitening over the prompt's population of tokens: arm weights mu * L (an infinite batch: no Bessel)."""
    L = np.ones_like(x) if isinstance(params["lengths"], str) else _arm_input(params, "lengths", x)
    m, v = _moments(mu * L, x)
    return (x - m) / np.sqrt(v + _WHITEN_EPS)


def _p_remax(mu, r, params):
    greedy = np.argmax(mu, axis=-1)[..., None]  # ties: the first arm
    return r - np.take_along_axis(r, greedy, -1)


def _p_opo(mu, r, params):
    L = np.ones_like(r) if isinstance(params["lengths"], str) else _arm_input(params, "lengths", r)
    return r - (mu * L * r).sum(-1, keepdims=True) / (mu * L).sum(-1, keepdims=True)


def _p_rfpp_baseline(mu, r, params):
    return _p_whiten(mu, r - (mu * r).sum(-1, keepdims=True), params)


def _p_gdpo(mu, r, params):
    comps = _arm_input(params, "components", r, lead=1) if "components" in params else r[None]
    C = comps.shape[0]
    w = params.get("weights", np.ones(C))
    if w.shape != (C,):
        raise ValueError(f"gdpo: weights must have one entry per component ({C}), got shape {w.shape}")
    eps = params.get("eps", 1e-6)
    total = 0.0
    for c in range(C):
        m, v = _moments(mu, comps[c])
        total = total + w[c] * (comps[c] - m) / (np.sqrt(v) + eps)
    return _p_whiten(mu, total, params)


def _p_passk(mu, r, params):
    best = np.where(mu > 0, r, -np.inf).max(-1, keepdims=True)
    _, v = _moments(mu, r)
    return np.maximum(r - best, 0.0) / (np.sqrt(v) + params.get("eps", 1e-6))


def _score_norms(mu):
    r""":math:`\lVert e_y - \mu\rVert^2 = 1 - 2\mu_y + \sum_z\mu_z^2`: the squared softmax score of each arm."""
    return 1.0 - 2.0 * mu + (mu**2).sum(-1, keepdims=True)


def _p_otb(mu, r, params):
    w = _score_norms(mu)
    ew = (mu * w).sum(-1, keepdims=True)
    v = np.where(ew > 0, (mu * w * r).sum(-1, keepdims=True) / np.where(ew > 0, ew, 1.0), 0.0)
    return r - v


def _p_gpg(mu, r, params):
    nonzero = (mu * (r != 0)).sum(-1, keepdims=True)
    d = r - (mu * r).sum(-1, keepdims=True)
    return np.where(nonzero > 0, d / (np.where(nonzero > 0, nonzero, 1.0) * params.get("f_norm", 1.0)), 0.0)


_VERL_POP = {"remax": _p_remax, "opo": _p_opo, "reinforce_plus_plus": lambda mu, r, p: _p_whiten(mu, r, p),
             "reinforce_plus_plus_baseline": _p_rfpp_baseline, "gdpo": _p_gdpo, "grpo_passk": _p_passk,
             "optimal_token_baseline": _p_otb, "gpg": _p_gpg}


def conditional_group_advantage(name: str, mu, r, G: int, *, max_outcomes: int = 2_000_000, **params) -> np.ndarray:
    r"""Exact :math:`\bar A_k = E[A_1 \mid y_1 = k]` of the group estimator ``name`` with groups of ``G``.

    The other :math:`G-1` samples of the group are i.i.d. from ``mu``; their
    arm counts are enumerated (:math:`\binom{G-1+K-1}{K-1}` outcomes) and the
    estimator is ``group_advantage`` itself, applied to each outcome's rewards.
    Closed forms that follow (tested): ``mean`` gives
    :math:`(1 - 1/G)(r_k - E_\mu r)`, ``loo`` gives :math:`r_k - E_\mu r`; as
    :math:`G\to\infty` every estimator tends to ``population_advantage``.
    verl's estimators read the bandit's own inputs: ``remax``'s baseline is the
    reward of :math:`\arg\max\mu`, ``optimal_token_baseline``'s score norms are
    :math:`\lVert e_y - \mu\rVert^2`, and ``lengths`` / ``components`` are given per
    arm (``(K,)``, ``(C, K)``); a batch-coupled estimator (``BATCH_COUPLED``)
    takes the group as its whole batch (one prompt per step).

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
    _refuse_from_mu(name, params)
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
    others = np.repeat(np.broadcast_to(live, counts.shape).reshape(-1), counts.reshape(-1)).reshape(len(counts), n)
    K = r.size
    arms = np.empty((K, len(counts), G), dtype=np.int64)  # arms[k, o, j]: the arm of sample j, sample 0 = k
    arms[:, :, 0] = np.arange(K)[:, None]
    arms[:, :, 1:] = others[None]
    group = torch.from_numpy(r[arms])
    inputs = _per_sample_inputs(name, mu, r, arms, params)
    adv = _group_advantage(name, group, G, {**params, **inputs}, per_group=True)[..., 0].numpy()  # (K, outcomes)
    if not np.all(np.isfinite(adv)):
        raise ValueError(f"advantage {name!r}: a group statistic overflows float64 on these rewards; rescale r")
    return adv @ w


def _per_sample_inputs(name, mu, r, arms, params) -> dict:
    """The per-arm inputs of a bandit as per-sample arrays of the enumerated groups (``arms`` (K, outcomes, G))."""
    out = {}
    if name == "remax":
        out["baseline"] = np.full(arms.shape[:-1], r[np.argmax(mu)])
    if name == "optimal_token_baseline":
        out["score_norms"] = _score_norms(mu)[arms]
    for key in ("lengths", "components"):
        if key in params and not isinstance(params[key], str):
            x = params[key]
            if x.shape[-1:] != r.shape:
                raise ValueError(f"{key} must have one entry per arm ({r.size}) on its last axis, got shape {x.shape}")
            out[key] = x[..., arms]
    return out


def _compositions(n: int, m: int) -> np.ndarray:
    """All nonnegative integer vectors of length ``m`` summing to ``n``, shape ``(C(n+m-1, m-1), m)``."""
    import itertools

    rows = []
    for bars in itertools.combinations(range(n + m - 1), m - 1):
        edges = (-1, *bars, n + m - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(m)])
    return np.array(rows, dtype=np.int64).reshape(-1, m)
