r"""Every objective of the zoo as a pure torch loss, plus the named aggregation step.

Each function here maps per-token (or per-sequence) log-probabilities to a
per-token (or per-sequence) loss; nothing is reduced. Reduction is the separate
:func:`aggregate` step, because several published objectives differ only there.
The bandit theory, the simulators, the LLM trainer and the verl / TRL wrappers
all call these same functions.

Conventions
-----------
* ``logp`` — log pi(y_t | prefix) under the current policy, shape ``(..., T)``;
  carries the gradient.
* ``logp_mu`` — behaviour log-probabilities (the lagged policy that generated
  the data), same shape; treated as data (no gradient flows into it).
* ``adv`` — advantages, shape ``(...)`` (one per sequence, broadcast to its
  tokens) or ``(..., T)`` (per token).
* ``mask`` — ``(..., T)``, 1 on completion tokens and 0 on padding (bool or
  float). ``None`` means all ones.
* The token log-ratio is :math:`s_t = \log\pi(y_t) - \log\mu(y_t)` and the
  token ratio :math:`u_t = e^{s_t}`. Sequence quantities sum ``s_t`` over the
  mask.

A loss :math:`\ell(s, A)` on behaviour samples yields the expected logit
gradient :math:`E_{y\sim\mu}[h(u_y, A_y)\nabla\log\pi(y)]` with the per-sample
weight :math:`h = -\partial\ell/\partial s`; ``theory.objectives`` declares
``h`` for every objective and the tests check it against autograd of these
functions.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "AGGREGATIONS",
    "aggregate",
    "check_inputs",
    "kl_estimate",
    "policy_gradient_loss",
    "ppo_clip_loss",
    "gspo_loss",
    "cispo_loss",
    "decoupled_ppo_loss",
    "sapo_loss",
    "topr_loss",
    "m2po_mask",
    "m2po_loss",
    "reinforce_loss",
    "kl_reinforce_loss",
    "weighted_ce_loss",
    "regression_loss",
    "ppo_clip_kl_loss",
    "sample_weighted_ce_loss",
    "anchored_regression_loss",
    "dppo_mask",
    "dppo_loss",
    "geo_mean_loss",
    "covariance_score",
    "clip_cov_loss",
    "kl_cov_selection",
    "kl_cov_loss",
    "m2po_harmful",
    "m2po_budget_level",
    "m2po_clip_bounds",
    "m2po_clip_loss",
    "kpop_keep",
    "kpop_loss",
    "up_grpo_loss",
    "rollout_is_weight",
    "rejection_keep",
    "offpolicy_sequence_keep",
    "rollout_corrected_loss",
    "vespo_loss",
    "score_centered_loss",
]

#: Named aggregation modes (verl's ``loss_agg_mode`` names where verl has one).
AGGREGATIONS = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
    "sequence",
)

#: Log-ratios are clamped to this range before exponentiation, as verl does,
#: so that a ratio never overflows; the clamp is inactive for |s| < 20.
LOG_RATIO_CLAMP = 20.0


# ---------------------------------------------------------------------------
# input checks and aggregation
# ---------------------------------------------------------------------------


def _mask_like(mask, ref: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return torch.ones_like(ref)
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(mask)
    if mask.shape != ref.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)} but the log-probabilities have shape {tuple(ref.shape)}")
    return mask.to(ref.dtype)


def check_inputs(logp, logp_mu, adv, mask=None):
    """Validate shapes and return ``(logp, logp_mu, adv_tokens, mask)`` as tensors.

    ``adv`` of shape ``(...)`` is broadcast to ``(..., T)``; a per-token ``adv``
    must match ``logp``. Raises :class:`ValueError` naming the mismatch.
    """
    if not isinstance(logp, torch.Tensor):
        raise ValueError(f"logp must be a torch.Tensor, got {type(logp).__name__}")
    if logp.ndim == 0:
        raise ValueError("logp must have a token axis (shape (..., T)); got a scalar")
    logp_mu = torch.as_tensor(logp_mu, dtype=logp.dtype, device=logp.device)
    if logp_mu.shape != logp.shape:
        raise ValueError(f"logp_mu has shape {tuple(logp_mu.shape)} but logp has shape {tuple(logp.shape)}")
    adv = torch.as_tensor(adv, dtype=logp.dtype, device=logp.device)
    if adv.shape == logp.shape[:-1]:
        adv = adv.unsqueeze(-1).expand_as(logp)
    elif adv.shape != logp.shape:
        raise ValueError(
            f"adv has shape {tuple(adv.shape)}; expected one value per sequence {tuple(logp.shape[:-1])} "
            f"or per token {tuple(logp.shape)}"
        )
    m = _mask_like(mask, logp)
    # fast path: one reduction; the masked check (which names the culprit) runs only when it fails
    if not torch.isfinite(logp.detach().sum() + logp_mu.sum() + adv.sum()):
        for name, x in (("logp", logp), ("logp_mu", logp_mu), ("adv", adv)):
            if not torch.isfinite(torch.where(m > 0, x.detach(), torch.zeros_like(x))).all():
                raise ValueError(f"{name} has NaN or inf on unmasked tokens")
    return logp, logp_mu.detach(), adv.detach(), m


def _check_eps(**eps):
    for name, val in eps.items():
        if val is None:
            continue
        if not (isinstance(val, (int, float)) and math.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {val!r}")


def aggregate(loss: torch.Tensor, mask=None, mode: str = "token-mean", *, constant: float | None = None):
    r"""Reduce a per-token loss ``(..., T)`` (or per-sequence ``(...)``) to a scalar.

    Modes, with :math:`m_{it}` the mask and :math:`n` the number of sequences:

    * ``token-mean``: :math:`\sum_{it} m\ell / \sum_{it} m` (DAPO; every token
      weighs the same).
    * ``seq-mean-token-mean``: :math:`\frac1n\sum_i \sum_t m\ell / \sum_t m`
      (GRPO; every sequence weighs the same, long ones are diluted).
    * ``seq-mean-token-sum``: :math:`\frac1n\sum_i\sum_t m\ell`.
    * ``seq-mean-token-sum-norm``: :math:`\sum_{it} m\ell / (n\,C)` with a
      constant ``C`` (Dr. GRPO; default ``C = T``, the padded length).
    * ``sequence``: the loss is already one value per sequence (shape ``(...)``);
      mean over sequences.
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation mode {mode!r}; valid modes: {', '.join(AGGREGATIONS)}")
    if mode == "sequence":
        if mask is not None and loss.shape == torch.as_tensor(mask).shape:
            raise ValueError("mode 'sequence' needs a per-sequence loss of shape (...), got a per-token loss")
        return loss.mean()
    if loss.ndim == 0:
        raise ValueError(f"mode {mode!r} needs a per-token loss of shape (..., T), got a scalar")
    m = _mask_like(mask, loss)
    if mode == "token-mean":
        return (loss * m).sum() / m.sum().clamp_min(1.0)
    per_seq = (loss * m).sum(-1)
    if mode == "seq-mean-token-mean":
        return (per_seq / m.sum(-1).clamp_min(1.0)).mean()
    if mode == "seq-mean-token-sum":
        return per_seq.mean()
    c = float(loss.shape[-1]) if constant is None else constant
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"constant must be a finite number > 0, got {constant!r}")
    return per_seq.sum() / (per_seq.numel() * c)


def kl_estimate(log_ratio: torch.Tensor, kind: str) -> torch.Tensor:
    r"""Per-sample estimators of :math:`\mathrm{KL}(p\|q)` from samples of ``p``.

    With :math:`x = \log q(y)/p(y)`, :math:`y\sim p` (Schulman's k1, k2, k3):

    * ``k1``: :math:`-x` (unbiased, high variance);
    * ``k2``: :math:`x^2/2` (biased, low variance; its gradient is the regression's);
    * ``k3``: :math:`e^x - 1 - x` (unbiased, nonnegative).

    GRPO's penalty to a reference is ``k3`` with :math:`x = \log\pi_{ref} - \log\pi`
    on samples of the current policy; the behaviour-anchored penalties of
    :func:`kl_reinforce_loss` use :math:`p=\mu`, :math:`q=\pi`, i.e. :math:`x = s`.
    """
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        x = log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        return torch.expm1(x) - x
    raise ValueError(f"unknown KL estimator {kind!r}; valid: k1, k2, k3")


def _ratio(logp, logp_anchor):
    return torch.exp((logp - logp_anchor).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))


def _clipped_surrogate(ratio, adv, eps_low, eps_high, dual_clip):
    """PPO's pessimistic surrogate as a loss: max(-rA, -clip(r)A), dual-clipped for A < 0."""
    loss = torch.maximum(-adv * ratio, -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high))
    if dual_clip is not None:
        loss = torch.where(adv < 0, torch.minimum(loss, -adv * dual_clip), loss)
    return loss


# ---------------------------------------------------------------------------
# ratio-based objectives
# ---------------------------------------------------------------------------


def policy_gradient_loss(logp, logp_mu, adv, mask=None):
    r"""On-policy policy gradient through an exact importance ratio.

    .. math:: \ell_t = -u_t A_t,\qquad h(u, A) = uA

    Unbiased for :math:`\nabla E_\pi[A]` at any behaviour policy; on a bandit
    the population flow goes to the best arm (a vertex): no regularization.
    """
    logp, logp_mu, adv, _ = check_inputs(logp, logp_mu, adv, mask)
    return -adv * _ratio(logp, logp_mu)


def ppo_clip_loss(logp, logp_mu, adv, mask=None, *, eps_low=0.2, eps_high=None, dual_clip=None):
    r"""PPO's clipped surrogate (Schulman et al. 2017), with clip-higher and dual clip.

    .. math::
        \ell_t = \max\big(-u_tA_t,\; -\mathrm{clip}(u_t, 1-\epsilon_l, 1+\epsilon_h)A_t\big),
        \quad\text{and for } A_t<0:\ \ell_t \leftarrow \min(\ell_t, -cA_t)

    (dual clip, Ye et al. 2020, ``c = dual_clip > 1``). GRPO uses it with
    group-normalized advantages; DAPO with :math:`\epsilon_l=0.2,\epsilon_h=0.28`
    and token-mean aggregation. Weight: :math:`h = uA` where the surrogate is
    unclipped, 0 on the plateaus. The population target is the solution set of
    a linear program on the simplex (``theory.induced.ppo_clip_target_set``).
    """
    eps_high = eps_low if eps_high is None else eps_high
    _check_eps(eps_low=eps_low, eps_high=eps_high)
    if dual_clip is not None and not (math.isfinite(dual_clip) and dual_clip > 1.0):
        raise ValueError(f"dual_clip must be a finite number > 1, got {dual_clip!r}")
    logp, logp_mu, adv, _ = check_inputs(logp, logp_mu, adv, mask)
    return _clipped_surrogate(_ratio(logp, logp_mu), adv, eps_low, eps_high, dual_clip)


def gspo_loss(logp, logp_mu, adv, mask=None, *, eps_low=3e-4, eps_high=4e-4):
    r"""GSPO (Zheng et al. 2025): the clipped surrogate on a length-normalized sequence ratio.

    .. math::
        \bar s_i = \frac{1}{|y_i|}\sum_t s_{it},\qquad
        u_{it} = \mathrm{sg}\big(e^{\bar s_i}\big)\,e^{\log\pi_{it} - \mathrm{sg}(\log\pi_{it})}

    and the PPO surrogate of :func:`ppo_clip_loss` on :math:`u_{it}` (value
    :math:`e^{\bar s_i}` at every token; gradient that of the sequence ratio,
    spread over tokens). Aggregated by ``seq-mean-token-mean``. For one-token
    sequences it equals PPO-clip.
    """
    _check_eps(eps_low=eps_low, eps_high=eps_high)
    logp, logp_mu, adv, m = check_inputs(logp, logp_mu, adv, mask)
    seq_s = ((logp - logp_mu) * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    log_u = seq_s.detach().unsqueeze(-1) + logp - logp.detach()
    ratio = torch.exp(log_u.clamp(max=10.0))
    return _clipped_surrogate(ratio, adv, eps_low, eps_high, None)


def cispo_loss(logp, logp_mu, adv, mask=None, *, eps_low=None, eps_high=0.28):
    r"""CISPO (MiniMax-M1, 2025): a clipped ratio as a stop-gradient weight on log pi.

    .. math:: \ell_t = -\,\mathrm{sg}\big(\mathrm{clip}(u_t, 1-\epsilon_l, 1+\epsilon_h)\big)\,A_t\log\pi_t,
        \qquad h(u,A) = \mathrm{clip}(u, 1-\epsilon_l, 1+\epsilon_h)\,A

    Every token keeps a gradient (no plateau); ``eps_low=None`` means no lower
    bound (the published setting).
    """
    _check_eps(eps_low=eps_low, eps_high=eps_high)
    logp, logp_mu, adv, _ = check_inputs(logp, logp_mu, adv, mask)
    w = _ratio(logp, logp_mu).detach()
    lower = 0.0 if eps_low is None else 1.0 - eps_low
    w = w.clamp(min=lower, max=1.0 + eps_high)
    return -w * adv * logp


def decoupled_ppo_loss(logp, logp_mu, adv, mask=None, *, logp_prox, eps_low=0.2, eps_high=None, is_cap=None):
    r"""Decoupled PPO (AReaL, Fu et al. 2025) and truncated IS on PPO (TIS, Yao et al. 2025).

    Three policies: behaviour :math:`\mu` (generated the data), proximal
    :math:`\pi_{prox}` (the trust-region centre) and the current :math:`\pi`:

    .. math::
        \ell_t = \mathrm{sg}(w_t)\,\max\big(-r_tA_t, -\mathrm{clip}(r_t,1-\epsilon_l,1+\epsilon_h)A_t\big),
        \quad r_t = \pi_t/\pi_{prox,t},\quad w_t = \min(\pi_{prox,t}/\mu_t,\,C)

    ``is_cap=None`` is AReaL's uncapped behaviour weight; a finite ``C`` is TIS.
    With :math:`\pi_{prox} = \pi` (detached; one gradient step per batch) the
    weight is :math:`h = \min(u, C)A`.
    """
    eps_high = eps_low if eps_high is None else eps_high
    _check_eps(eps_low=eps_low, eps_high=eps_high, is_cap=is_cap)
    logp, logp_mu, adv, _ = check_inputs(logp, logp_mu, adv, mask)
    logp_prox = torch.as_tensor(logp_prox, dtype=logp.dtype).detach()
    if logp_prox.shape != logp.shape:
        raise ValueError(f"logp_prox has shape {tuple(logp_prox.shape)} but logp has shape {tuple(logp.shape)}")
    w = _ratio(logp_prox, logp_mu)
    if is_cap is not None:
        w = w.clamp(max=is_cap)
    return w * _clipped_surrogate(_ratio(logp, logp_prox), adv, eps_low, eps_high, None)


def sapo_loss(logp, logp_mu, adv, mask=None, *, tau_pos=1.0, tau_neg=1.05):
    r"""SAPO: a soft, sigmoid-gated surrogate in place of the hard clip (verl ``sapo``, TRL ``sapo``).

    .. math::
        \ell_t = -\frac{4}{\tau}\,\sigma\big(\tau(u_t - 1)\big)A_t,\qquad
        \tau = \tau_+ \text{ if } A_t > 0 \text{ else } \tau_-,
        \qquad h(u, A) = 4A\,u\,\sigma(x)(1-\sigma(x)),\ x = \tau(u-1)

    The gate equals the ratio's gradient at :math:`u = 1` and fades smoothly
    away from it (no plateau, no hard cut). Aggregated by
    ``seq-mean-token-mean``.
    """
    _check_eps(tau_pos=tau_pos, tau_neg=tau_neg)
    logp, logp_mu, adv, _ = check_inputs(logp, logp_mu, adv, mask)
    tau = torch.where(adv > 0, torch.full_like(adv, tau_pos), torch.full_like(adv, tau_neg))
    return -torch.sigmoid(tau * (_ratio(logp, logp_mu) - 1.0)) * (4.0 / tau) * adv


def topr_loss(logp, logp_mu, adv, mask=None):
    r"""TOPR (Le Roux et al. 2025): tapered off-policy REINFORCE.

    .. math::
        \ell_t = -\big(\mathbb 1[A\ge0] + \mathbb 1[A<0]\,\mathrm{sg}(\mathrm{clip}(u_t,0,1))\big)A\log\pi_t,
        \qquad h(u, A) = A_+ - \min(u, 1)A_-

    No ratio on positive advantages; on negative ones the ratio is truncated
    to :math:`[0, 1]`, so pushed-down samples stop pushing once :math:`\pi < \mu`.
    Population target: :math:`\pi \propto \mu A_+` (arms with :math:`A\le0` go
    to zero without distorting the rest).
    """
    logp, logp_mu, adv, _ = check_inputs(logp, logp_mu, adv, mask)
    w = torch.where(adv >= 0, torch.ones_like(adv), _ratio(logp, logp_mu).detach().clamp(max=1.0))
    return -w * adv * logp


def m2po_mask(logp, logp_mu, mask=None, *, tau=0.04):
    r"""M2PO's second-moment mask (Zheng et al. 2025, "Prosperity before collapse").

    Tokens are dropped in decreasing order of :math:`s_t^2` until the mean of
    :math:`s_t^2` over the kept tokens of the batch is at most :math:`\tau`
    (tokens tied exactly at the cut are all kept).
    Returns a 0/1 tensor of ``logp``'s shape (no gradient).

    Cost: one masked sum when the batch already passes (the usual case: the
    mean over all tokens is at most :math:`\tau`). Otherwise only values above
    :math:`\tau` can need dropping (dropping all of them leaves a mean
    :math:`\le\tau`). The same rule on a strided sample of about 4096 values
    estimates how many to drop; one top-k a little larger than that estimate
    holds the cut (if not, a top-k over every value above :math:`\tau` does), so
    only the dropped tail is ever sorted. Running sums are float64.
    """
    _check_eps(tau=tau)
    m = _mask_like(mask, logp)
    valid = m > 0
    m2 = (logp.detach() - torch.as_tensor(logp_mu, dtype=logp.dtype)) ** 2
    n = int(valid.sum())
    if n == 0:
        return torch.zeros_like(m)
    zero = torch.zeros_like(m2)
    total = torch.where(valid, m2, zero).sum(dtype=torch.float64)
    if float(total) <= tau * n:
        return valid.to(m.dtype)
    n_big = int((valid & (m2 > tau)).sum())
    if n_big == n:  # every token alone exceeds tau: no nonempty set passes
        return torch.zeros_like(m)
    vals = m2[valid]
    sample = torch.sort(vals[:: max(1, n // 4096)].double()).values
    means = torch.cumsum(sample, 0) / torch.arange(1, sample.numel() + 1, dtype=torch.float64)
    frac = 1.0 - int((means <= tau).sum()) / sample.numel()  # estimated fraction to drop
    guess = int(n * (frac + 4.0 * math.sqrt((frac * (1.0 - frac) + 1.0) / sample.numel()))) + 64
    for k in (min(guess, n_big) + 1, n_big + 1):
        top = torch.topk(vals, k, sorted=True).values.double()  # descending
        rest = total - torch.cumsum(top, 0)  # rest[i]: sum after dropping top[0..i]
        kept = n - torch.arange(1, k + 1, dtype=torch.float64)
        passing = torch.nonzero(rest[: k - 1] <= tau * kept[: k - 1])
        if passing.numel():
            d = int(passing[0]) + 1  # drop top[0..d-1]; the largest kept value is top[d]
            return (valid & (m2 <= top[d].to(m2.dtype))).to(m.dtype)
    # only rounding can get here (a tail of values equal to tau): dropping every value above tau passes
    return (valid & (m2 <= tau)).to(m.dtype)


def m2po_loss(logp, logp_mu, adv, mask=None, *, tau=0.04):
    r"""M2PO: the unclipped ratio surrogate on tokens that pass the second-moment mask.

    .. math:: \ell_t = -M_t\,u_tA_t,\qquad h(u, A) = M\,uA

    with :math:`M` from :func:`m2po_mask`; aggregated by ``token-mean``.
    """
    logp, logp_mu, adv, m = check_inputs(logp, logp_mu, adv, mask)
    keep = m2po_mask(logp, logp_mu, m, tau=tau)
    return -keep * adv * _ratio(logp, logp_mu)


# ---------------------------------------------------------------------------
# ratio-free objectives
# ---------------------------------------------------------------------------


def reinforce_loss(logp, logp_mu, adv, mask=None):
    r"""Off-policy REINFORCE without a ratio (asymmetric REINFORCE, Arnal et al. 2025).

    .. math:: \ell_t = -A\log\pi_t,\qquad h(u, A) = A

    The baseline sits in the advantage (AsymRE: :math:`V` below the mean).
    Population target: :math:`\pi \propto \mu A` when all :math:`A > 0`;
    with mixed signs the thresholded :math:`\pi_y = (\mu_yA_y - c)_+/E_\mu[A]`
    when :math:`E_\mu[A] > 0`; a single arm otherwise. ``logp_mu`` only
    validates shapes.
    """
    logp, _, adv, _ = check_inputs(logp, logp_mu, adv, mask)
    return -adv * logp


def kl_reinforce_loss(logp, logp_mu, adv, mask=None, *, beta=0.1, kind="k3"):
    r"""REINFORCE plus a KL(mu || pi) penalty estimated on the behaviour samples.

    .. math:: \ell_t = -A\log\pi_t + \beta\,k(s_t),

    with :math:`k` from :func:`kl_estimate` at :math:`x = s_t`. Weights:
    k1 :math:`h = A + \beta`; k2 :math:`h = A - \beta s`; k3
    :math:`h = A + \beta - \beta u`. Targets: k1 and k3 give the linear tilt
    :math:`\pi\propto\mu(A+\beta)` (thresholded when some :math:`A+\beta<0`);
    k2 is the regression, i.e. the Lambert-tempered target.
    """
    _check_eps(beta=beta)
    logp, logp_mu, adv, _ = check_inputs(logp, logp_mu, adv, mask)
    return -adv * logp + beta * kl_estimate(logp - logp_mu, kind)


def weighted_ce_loss(logp, weights, mask=None):
    r"""Advantage-weighted cross-entropy (AWR, TPO): :math:`\ell_t = -\mathrm{sg}(w)\log\pi_t`.

    ``weights`` (shape ``(...)`` or ``(..., T)``, no gradient) come from
    ``theory.advantages``: AWR's :math:`w = e^{A/\beta}` or TPO's group target
    :math:`q_i \propto e^{A_i/\beta}` normalized over the group. Population
    target: the Gibbs tilt :math:`\pi\propto\mu e^{A/\beta}`, independent of V.
    """
    logp, _, w, _ = check_inputs(logp, logp.detach(), weights, mask)
    if (w < 0).any():
        raise ValueError("weights must be >= 0 for a weighted cross-entropy")
    return -w * logp


def regression_loss(logp, logp_anchor, adv, mask=None, *, beta=1e-3, level="sequence"):
    r"""The ratio-free regression (OAPL, A*-PO, Kimi OPMD; k2-penalized REINFORCE).

    .. math:: \ell = \big(\beta\,s - A\big)^2,\qquad s = \log\frac{\pi(y)}{\pi_{anchor}(y)}

    ``level='sequence'`` uses the sequence log-ratio :math:`s = \sum_t m_t s_t`
    and returns one loss per sequence (aggregate with ``'sequence'``);
    ``level='token'`` regresses every token's :math:`s_t` on the sequence's
    advantage and returns ``(..., T)``. The anchor is the behaviour policy
    (OAPL, OPMD) or a reference policy (A*-PO). Weight (anchor = behaviour):
    :math:`h = 2\beta(A - \beta\log u)`. Population target: the
    Lambert-tempered :math:`u = W_0(\eta e^{A/\beta})/\eta` with
    :math:`\eta = \mathrm{KL}(\mu\|\pi) + E_\mu[A]/\beta` (``theory.lambert``).
    """
    _check_eps(beta=beta)
    if level not in ("sequence", "token"):
        raise ValueError(f"level must be 'sequence' or 'token', got {level!r}")
    if level == "sequence" and isinstance(logp, torch.Tensor) and torch.as_tensor(adv).shape == logp.shape:
        raise ValueError("level='sequence' needs one advantage per sequence (shape (...)), got per-token advantages")
    logp, logp_anchor, adv, m = check_inputs(logp, logp_anchor, adv, mask)
    s = (logp - logp_anchor) * m
    if level == "token":
        return (beta * s - adv) ** 2
    return (beta * s.sum(-1) - adv[..., 0]) ** 2


# ---------------------------------------------------------------------------
# the objective contract: loss(logp, logp_mu, adv, mask=None, *, <parameters>)
# ---------------------------------------------------------------------------


def ppo_clip_kl_loss(logp, logp_mu, adv, mask=None, *, eps_low=0.2, eps_high=None, dual_clip=None, kl_beta=0.0,
                     logp_ref=None):
    r"""PPO-clip plus an optional k3 penalty to a reference policy (GRPO's KL term).

    .. math:: \ell_t = \ell^{\mathrm{clip}}_t + \beta_{KL}\,k_3(\log\pi_{ref}(y_t) - \log\pi(y_t))

    with :math:`\ell^{\mathrm{clip}}` of :func:`ppo_clip_loss` and :math:`k_3(x) = e^x - 1 - x`.
    ``logp_ref`` (same shape as ``logp``) is needed only when ``kl_beta > 0``.
    Weight (reference = behaviour on a bandit): PPO's plus :math:`\beta_{KL}(1/u - 1)`.
    """
    out = ppo_clip_loss(logp, logp_mu, adv, mask, eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip)
    if kl_beta > 0:
        if logp_ref is None:
            raise ValueError("ppo_clip_kl_loss with kl_beta > 0 needs logp_ref (reference log-probabilities)")
        out = out + kl_beta * kl_estimate(torch.as_tensor(logp_ref, dtype=logp.dtype) - logp, "k3")
    return out


def sample_weighted_ce_loss(logp, logp_mu, weights, mask=None):
    r""":func:`weighted_ce_loss` in the objective contract: ``logp_mu`` is not used.

    .. math:: \ell_t = -\mathrm{sg}(w)\log\pi_t

    The weights are the objective's signal (AWR's :math:`\min(e^{A/\beta}, w_{max})`,
    TPO's :math:`G\,\mathrm{softmax}(A/\beta)`); the weight on :math:`\nabla\log\pi` is :math:`w`.
    """
    return weighted_ce_loss(logp, weights, mask)


def anchored_regression_loss(logp, logp_mu, adv, mask=None, *, beta=1e-3, anchor="behaviour", logp_ref=None):
    r"""The sequence-level regression of :func:`regression_loss`, anchored at the behaviour or a reference policy.

    .. math:: \ell = \big(\beta \log\frac{\pi(y)}{\pi_{anchor}(y)} - A\big)^2

    ``anchor='behaviour'`` (OAPL, OPMD) uses ``logp_mu``; ``anchor='reference'``
    (A*-PO) uses ``logp_ref``. Returns one loss per sequence.
    """
    if anchor not in ("behaviour", "reference"):
        raise ValueError(f"anchor must be 'behaviour' or 'reference', got {anchor!r}")
    if anchor == "reference" and logp_ref is None:
        raise ValueError("anchor='reference' needs logp_ref (reference log-probabilities)")
    return regression_loss(logp, logp_mu if anchor == "behaviour" else logp_ref, adv, mask, beta=beta,
                           level="sequence")


# ---------------------------------------------------------------------------
# objectives added in 2026 (specs in theory.zoo_2026)
# ---------------------------------------------------------------------------

#: M2PO's reference code leaves the clip open, ratio in [0, 1e5], when the budget holds.
M2PO_CLIP_OPEN = 1e5


def m2po_budget_level(delta_sq: torch.Tensor, weight: torch.Tensor, tau: float) -> torch.Tensor:
    r"""M2PO's cap level :math:`\tau_c^2` from a second-moment budget (Zheng et al. 2025, the authors' rule).

    Over the weighted set (``weight`` 0 leaves a value out), with
    :math:`M_2 = \sum w\,\delta^2 / \sum w`: no cap (``inf``) when the set is
    empty or :math:`M_2 \le \tau`; otherwise, with the values sorted ascending,
    the first :math:`k` whose cap at :math:`v_k` keeps
    :math:`\sum_{i\le k} w_iv_i + v_k\sum_{i>k} w_i \ge \tau\sum w` gives
    :math:`\tau_c^2 = v_{k-1}` (0 when :math:`k` is the first), so the capped
    second moment :math:`E_w[\min(\delta^2, \tau_c^2)]` stays at or below
    :math:`\tau` (a breakpoint, not the exact solution of
    :math:`E_w[\min(\delta^2, t)] = \tau`).

    Source: ``_solve_tau_from_sorted_delta2`` and ``kpo_clip_harmful_tokens`` in
    ``verl/trainer/ppo/core_algos.py`` of github.com/Infini-AI-Lab/M2PO (unit
    weights there; the tolerance 1e-12 of that code, on sums, is kept).

    Parameters
    ----------
    delta_sq, weight : torch.Tensor, shape (..., N)
        Squared log-ratios and their weights (>= 0).
    tau : float
        The budget.

    Returns
    -------
    torch.Tensor, shape (...)
        :math:`\tau_c^2`, ``inf`` where nothing is capped.
    """
    w_all = weight.sum(-1)
    m2_sum = (weight * delta_sq).sum(-1)
    open_ = (w_all <= 0) | (m2_sum <= (tau + 1e-12) * w_all)
    v, order = torch.sort(torch.where(weight > 0, delta_sq, torch.zeros_like(delta_sq)), dim=-1)
    w = torch.gather(weight, -1, order)
    csum = torch.cumsum(w * v, -1)
    rest = w_all.unsqueeze(-1) - torch.cumsum(w, -1)
    hit = (w > 0) & (csum + v * rest >= (tau * w_all).unsqueeze(-1) - 1e-12)
    k = torch.argmax(hit.to(torch.int8), dim=-1, keepdim=True)  # first hit (one always exists when not open)
    below = torch.gather(v, -1, (k - 1).clamp(min=0)).squeeze(-1)
    level = torch.where(k.squeeze(-1) > 0, (below - 1e-12).clamp(min=0.0), torch.zeros_like(below))
    return torch.where(open_, torch.full_like(level, math.inf), level)


def m2po_clip_bounds(level: torch.Tensor, min_eps_low=None, min_eps_high=None):
    r"""PPO clip widths from M2PO's cap level: :math:`1-\epsilon_l = e^{-\tau_c}`, :math:`1+\epsilon_h = e^{\tau_c}`.

    Floored at ``min_eps_low`` / ``min_eps_high`` when given (the reference
    code's ``miniclip_low`` / ``miniclip_high``); where nothing is capped
    (``level`` inf) the ratio is left in :math:`[0, 10^5]` as the reference does.
    Returns ``(eps_low, eps_high)``, tensors of ``level``'s shape.
    """
    t = torch.sqrt(level)
    eps_low = torch.where(torch.isinf(level), torch.ones_like(t), -torch.expm1(-t))
    eps_high = torch.where(torch.isinf(level), torch.full_like(t, M2PO_CLIP_OPEN - 1.0), torch.expm1(t))
    if min_eps_low is not None:
        eps_low = eps_low.clamp(min=min_eps_low)
    if min_eps_high is not None:
        eps_high = eps_high.clamp(min=min_eps_high)
    return eps_low, eps_high


def m2po_harmful(s: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """Tokens whose ratio moved with their advantage: (A > 0, u > 1) or (A < 0, u < 1), at M2PO's 1e-12."""
    return ((adv > 1e-12) & (s > math.log1p(1e-12))) | ((adv < -1e-12) & (s < math.log1p(-1e-12)))


def m2po_clip_loss(logp, logp_mu, adv, mask=None, *, tau=0.04, min_eps_low=None, min_eps_high=None):
    r"""M2PO as its authors' code runs it: PPO-clip with bounds set by the second-moment budget.

    .. math::
        \ell_t = \max\big(-u_tA_t,\; -\mathrm{clip}(u_t, e^{-\tau_c}, e^{\tau_c})A_t\big)

    where :math:`\tau_c` (one per batch, :func:`m2po_budget_level`) caps the
    squared log-ratios :math:`s_t^2` of the batch's harmful tokens (those whose
    ratio moved with their advantage, :func:`m2po_harmful`) so that their capped
    mean is at most :math:`\tau`; no clip when their mean already is. Unlike
    :func:`m2po_loss` (AReaL's token mask over all tokens), only the
    harmful tokens set the budget, and the excess is clipped, not dropped.
    Weight: :math:`h = uA` inside the bounds, 0 beyond. The advantage sign is
    read per token (per sequence in the reference, equal for sequence advantages).

    Source: ``compute_m2po_policy_loss`` in ``verl/trainer/ppo/core_algos.py``
    of github.com/Infini-AI-Lab/M2PO (commit af54a3e); arXiv 2510.01161.
    """
    _check_eps(tau=tau, min_eps_low=min_eps_low, min_eps_high=min_eps_high)
    logp, logp_mu, adv, m = check_inputs(logp, logp_mu, adv, mask)
    s = (logp.detach() - logp_mu).double()
    harm = (m > 0) & m2po_harmful(s, adv)
    level = m2po_budget_level((s * s)[harm], torch.ones(int(harm.sum()), dtype=s.dtype), tau)
    eps_low, eps_high = m2po_clip_bounds(level, min_eps_low, min_eps_high)
    return _clipped_surrogate(_ratio(logp, logp_mu), adv, float(eps_low), float(eps_high), None)


def kpop_keep(logp, logp_mu, threshold: float) -> torch.Tensor:
    r"""KPop's symmetric binary-KL trust region: 1 where both binary KLs are at most the threshold.

    With token probabilities :math:`p = \pi(y_t)`, :math:`q = \mu(y_t)` (clamped
    to :math:`[10^{-6}, 1 - 10^{-6}]`) and
    :math:`d(a\|b) = a\log\frac ab + (1-a)\log\frac{1-a}{1-b}` (this token
    against the rest of the vocabulary), keep the token iff
    :math:`\max(d(p\|q), d(q\|p)) \le \phi`. Float tensor, no gradient.
    """
    p = torch.exp(torch.as_tensor(logp).detach().double()).clamp(1e-6, 1 - 1e-6)
    q = torch.exp(torch.as_tensor(logp_mu).detach().double()).clamp(1e-6, 1 - 1e-6)

    def d(a, b):
        return a * torch.log(a / b) + (1 - a) * torch.log((1 - a) / (1 - b))

    return ((d(p, q) <= threshold) & (d(q, p) <= threshold)).to(torch.as_tensor(logp).dtype)


def kpop_loss(logp, logp_mu, adv, mask=None, *, kpop_threshold=0.1, adv_tau=1.0, kl_tau=1e-3):
    r"""KPop: the unclipped ratio surrogate inside a binary-KL trust region, plus a squared log-ratio.

    .. math::
        \ell_t = -M_t\,\alpha\,u_tA_t + \lambda s_t^2,\qquad
        h(u, A; \mu) = M(\mu u, \mu)\,\alpha uA - 2\lambda\log u

    with :math:`M` of :func:`kpop_keep` (threshold :math:`\phi`), :math:`\alpha`
    = ``adv_tau``, :math:`\lambda` = ``kl_tau``. The mask depends on the token
    probabilities themselves, not only on their ratio: the band is wide in
    ratio for rare tokens and tight for likely ones.

    Source: ``kpop_loss_fn`` in ``src/prime_rl/trainer/rl/loss.py`` of
    github.com/PrimeIntellect-ai/prime-rl, branch ``feat/kpop-loss`` (commit
    b9ba0608d; not on main at 559b447), after ringtech.notion.site/kpop.
    """
    _check_eps(kpop_threshold=kpop_threshold)
    if not (math.isfinite(adv_tau) and adv_tau >= 0 and math.isfinite(kl_tau) and kl_tau >= 0):
        raise ValueError(f"adv_tau and kl_tau must be finite numbers >= 0, got {adv_tau!r}, {kl_tau!r}")
    logp, logp_mu, adv, _ = check_inputs(logp, logp_mu, adv, mask)
    keep = kpop_keep(logp, logp_mu, kpop_threshold)
    return -keep * adv_tau * adv * _ratio(logp, logp_mu) + kl_tau * (logp - logp_mu) ** 2


def up_grpo_loss(logp, logp_mu, adv, mask=None, *, eps_low=0.2):
    r"""UP-GRPO: ratio-free, unclipped on positive advantages; GRPO's clipped surrogate on negative ones.

    .. math::
        \ell_t = \begin{cases} -A\log\pi_t & A > 0 \\
        \max\big(-u_tA, -\max(u_t, 1-\epsilon_l)A\big) & A \le 0 \end{cases},
        \qquad h(u, A) = A_+ + uA\,\mathbb 1[A<0,\ u > 1-\epsilon_l]

    (for :math:`A<0` only PPO's lower clip binds). Population target:
    :math:`\pi \propto \mu A_+`, TOPR's.

    Source: "UP-GRPO: Unbounded Positive Group Relative Policy Optimization",
    rocfly88.github.io/2026/02/26/UP-GRPO.html (positive advantages: no
    importance ratio, no clip, advantage-weighted SFT; negative advantages:
    GRPO's trust region).
    """
    _check_eps(eps_low=eps_low)
    logp, logp_mu, adv, _ = check_inputs(logp, logp_mu, adv, mask)
    neg = _clipped_surrogate(_ratio(logp, logp_mu), adv, eps_low, eps_low, None)
    return torch.where(adv > 0, -adv * logp, neg)


def score_centered_loss(logp, logp_mu, adv, mask=None, *, logp_expected=None):
    r"""Score centering: ratio-free REINFORCE minus the sampler-expected score at every position.

    .. math:: \ell_t = -A\,\big(\log\pi(y_t\mid s_t) - E_{v\sim\mu(\cdot\mid s_t)}\log\pi(v\mid s_t)\big)

    ``logp_expected`` is :math:`E_{v\sim\mu(\cdot\mid s_t)}\log\pi(v\mid s_t)`, shape
    ``(..., T)``, computed from the sampler's distribution at each position and
    the current policy's log-probabilities, and it carries the gradient. At a
    position the expected update of plain REINFORCE is
    :math:`E_\mu[A]\,E_\mu[\nabla\log\pi] + \mathrm{Cov}_\mu(A, \nabla\log\pi)`;
    the subtracted term removes the first (a drift towards the sampler,
    :math:`E_\mu[\nabla_\theta\log\pi] = \mu - \pi` in logits) and keeps the
    covariance. On a bandit the weight is therefore
    :math:`h = A - E_\mu[A]` whatever the baseline inside :math:`A`, and the
    flow :math:`\dot\theta = \mu\odot(A - E_\mu[A])` is constant: the policy
    goes to the arm that maximizes :math:`\mu_y(A_y - E_\mu[A])`.

    Source: Marek & Ryabinin, "Score Centering Stabilizes Off-policy
    Reinforcement Learning" (arXiv 2609.20807), as SkyRL's pull request #2244
    describes it (an additive correction; the sampler's top-k distribution with a
    proportional tail stands for :math:`\mu(\cdot\mid s_t)` there).
    """
    logp, logp_mu, adv, m = check_inputs(logp, logp_mu, adv, mask)
    if logp_expected is None:
        raise ValueError(
            "score_centered_loss needs logp_expected: E_{v~mu(.|s_t)} log pi(v|s_t) at every position, "
            "from the sampler's distribution (e.g. its top-k log-probabilities) and the current policy"
        )
    if not isinstance(logp_expected, torch.Tensor):
        logp_expected = torch.as_tensor(logp_expected, dtype=logp.dtype)
    if logp_expected.shape != logp.shape:
        raise ValueError(
            f"logp_expected has shape {tuple(logp_expected.shape)} but the log-probabilities have shape "
            f"{tuple(logp.shape)}: give one expected log-probability per position"
        )
    if not torch.isfinite(torch.where(m > 0, logp_expected.detach(), torch.zeros_like(logp))).all():
        raise ValueError("logp_expected has NaN or inf on unmasked tokens")
    return -adv * (logp - logp_expected)


# ---------------------------------------------------------------------------
# verl 0.9.1's remaining built-in policy losses (verl/trainer/ppo/core_algos.py)
# ---------------------------------------------------------------------------

#: verl's smoothing of 1 - p inside DPPO's binary KL (``compute_policy_loss_dppo_kl``)
DPPO_KL_SMOOTHING = 1e-8


def _binary_kl(logq, logp):
    """KL(Bernoulli(q) || Bernoulli(p)) from log-probabilities, 1 - p smoothed by :data:`DPPO_KL_SMOOTHING` (verl's)."""
    eps, q, p = DPPO_KL_SMOOTHING, logq.exp(), logp.exp()
    return q * (logq - logp) + (1 - q) * torch.log((1 - q + eps) / (1 - p + eps))


def dppo_mask(logp, logp_mu, adv, *, divergence="tv", delta_low=0.2, delta_high=0.2):
    r"""DPPO's trust-region mask (Qi et al. 2026, arXiv 2602.04879): 1 where a token keeps its gradient.

    With :math:`p = \pi(y_t)`, :math:`q = \mu(y_t)` (probabilities, not ratios):

    * ``divergence='tv'`` (DPPO-Binary-TV): :math:`M = \mathbb 1[p - q \le \delta_h]` for
      :math:`A > 0` and :math:`\mathbb 1[p - q \ge -\delta_l]` otherwise;
    * ``divergence='kl'`` (DPPO-Binary-KL), with the binary KL
      :math:`D = q\log\frac qp + (1-q)\log\frac{1-q+10^{-8}}{1-p+10^{-8}}`:
      :math:`M = \mathbb 1[D \le \delta_h \text{ or } p \le q]` for :math:`A > 0` and
      :math:`\mathbb 1[D \le \delta_l \text{ or } p \ge q]` otherwise.

    A token is masked only when it has left the divergence ball in the direction its advantage
    pushes it. ``logp``, ``logp_mu``: ``(..., T)``; ``adv`` broadcastable to them. Returns a 0/1
    tensor of ``logp``'s shape (no gradient). Source: verl ``compute_policy_loss_dppo_tv`` /
    ``compute_policy_loss_dppo_kl``.
    """
    if divergence not in ("tv", "kl"):
        raise ValueError(f"divergence must be 'tv' or 'kl', got {divergence!r}")
    _check_eps(delta_low=delta_low, delta_high=delta_high)
    lp, lq = logp.detach(), torch.as_tensor(logp_mu, dtype=logp.dtype)
    p, q = lp.exp(), lq.exp()
    a = torch.as_tensor(adv, dtype=logp.dtype)
    if divergence == "tv":
        up, down = p - q <= delta_high, p - q >= -delta_low
    else:
        d = _binary_kl(lq, lp)
        up, down = (d <= delta_high) | (p <= q), (d <= delta_low) | (p >= q)
    return torch.where(a > 0, up, down).to(logp.dtype)


def dppo_loss(logp, logp_mu, adv, mask=None, *, divergence="tv", delta_low=0.2, delta_high=0.2, is_cap=3.0):
    r"""DPPO (Qi et al. 2026, "Rethinking the trust region in LLM RL"): truncated IS inside a divergence mask.

    .. math::
        \ell_t = -M_t\,\mathrm{sg}\big(\min(u_t, C)\big)\,A_t\log\pi_t,\qquad
        h(u, A) = M\,\min(u, C)\,A

    with the mask :math:`M` of :func:`dppo_mask` (binary TV or binary KL between
    :math:`\pi(y_t)` and :math:`\mu(y_t)`, thresholds :math:`\delta_l, \delta_h`) and the
    truncation :math:`C` = ``is_cap`` (verl's ``clip_ratio_c``; ``None``: no truncation). The mask
    reads the token's probabilities, not only its ratio, so the weight depends on :math:`\mu` itself.
    Induced target on a bandit (``theory.zoo_verl``): the optimal face of the linear program
    :math:`\max_\pi \sum_{A>0} A\min(\pi, b^+) + \sum_{A<0} A\max(\pi, b^-)` with the ball's
    edges :math:`b^\pm`. Source: verl ``compute_policy_loss_dppo_tv`` / ``_dppo_kl``
    (``verl/trainer/ppo/core_algos.py``). Per-token loss ``(..., T)``.
    """
    _check_eps(is_cap=is_cap)
    logp, logp_mu, adv, _ = check_inputs(logp, logp_mu, adv, mask)
    keep = dppo_mask(logp, logp_mu, adv, divergence=divergence, delta_low=delta_low, delta_high=delta_high)
    w = _ratio(logp, logp_mu).detach()
    if is_cap is not None:
        w = w.clamp(max=is_cap)
    return -adv * w * logp * keep


def geo_mean_loss(logp, logp_mu, adv, mask=None, *, log_eps_low=0.4, log_eps_high=0.4):
    r"""GMPO (Zhao et al. 2025, arXiv 2507.20673): the geometric mean of token ratios, clipped in log space.

    .. math::
        \tilde s_t = \mathrm{sgn}(A_t)\min\big(\mathrm{sgn}(A_t)s_t,\ \mathrm{sgn}(A_t)
        \mathrm{clip}(s_t, -\epsilon_l, \epsilon_h)\big),\qquad
        \ell_i = -\bar A_i\exp\Big(\frac{1}{|y_i|}\sum_t \tilde s_{it}\Big)

    (:math:`\bar A_i` the mean advantage over the sequence's tokens). One loss per sequence
    ``(...)``; aggregate with ``'sequence'`` (verl: ``torch.mean`` over the rows, whatever
    ``loss_agg_mode``). For one-token sequences it is PPO-clip with the ratio range
    :math:`[e^{-\epsilon_l}, e^{\epsilon_h}]`: weight :math:`h = uA` inside, 0 outside, and the
    induced target the optimal face of PPO's linear program with those bounds.
    Source: verl ``compute_policy_loss_geo_mean``; TRL ``trl/experimental/gmpo`` (GMPO recommends 0.4).
    """
    _check_eps(log_eps_low=log_eps_low, log_eps_high=log_eps_high)
    logp, logp_mu, adv, m = check_inputs(logp, logp_mu, adv, mask)
    s = logp - logp_mu
    sgn = torch.sign(adv)
    s_clip = sgn * torch.minimum(sgn * s, sgn * s.clamp(-log_eps_low, log_eps_high))
    n = m.sum(-1).clamp_min(1.0)
    ratio = torch.exp((s_clip * m).sum(-1) / n)
    return -(adv * m).sum(-1) / n * ratio


def covariance_score(logp, adv, mask=None):
    r"""Per-token centred covariance :math:`(A_t - \bar A)(\log\pi_t - \overline{\log\pi})` (no gradient).

    Means over the unmasked tokens of the whole batch (every leading axis); masked tokens get
    :math:`-\infty`. Clip-Cov and KL-Cov (Cui et al. 2025, arXiv 2505.22617) pick the tokens
    whose score is high: the tokens whose update lowers the entropy most. ``(..., T)``.
    """
    m = _mask_like(mask, logp) > 0
    lp = logp.detach()
    a = torch.as_tensor(adv, dtype=lp.dtype).expand_as(lp)
    if not m.any():
        return torch.full_like(lp, -math.inf)
    cov = (a - a[m].mean()) * (lp - lp[m].mean())
    return torch.where(m, cov, torch.full_like(cov, -math.inf))


def clip_cov_loss(logp, logp_mu, adv, mask=None, *, eps_low=0.2, eps_high=0.2, cov_ratio=2e-4, cov_low=1.0,
                  cov_high=5.0, generator=None):
    r"""Clip-Cov (Cui et al. 2025, arXiv 2505.22617): PPO-clip with a few high-covariance tokens detached.

    .. math::
        \ell_t = (1 - D_t)\max\big(-u_tA_t,\ -\mathrm{clip}(u_t, 1-\epsilon_l, 1+\epsilon_h)A_t\big)

    :math:`D_t = 1` on :math:`\max(1, \lfloor rN\rfloor)` tokens (:math:`r` = ``cov_ratio``,
    :math:`N` the batch's unmasked tokens) drawn uniformly without replacement from the candidates:
    unmasked tokens that PPO's clip leaves alone and whose :func:`covariance_score` lies in
    ``(cov_low, cov_high)``; all candidates when there are fewer. The draw is ``torch.randperm``
    with ``generator`` (``None``: torch's default generator, the stream verl's own draw uses, so a
    seeded default generator reproduces verl's choice). The loss couples the whole batch.
    Population weight (``theory.zoo_verl``): PPO's times :math:`1 - \mathbb 1[y\in C]\min(1, r/\mu(C))`.
    Source: verl ``compute_policy_loss_clip_cov`` (``verl/trainer/ppo/core_algos.py``).
    Per-token loss ``(..., T)``.
    """
    _check_eps(eps_low=eps_low, eps_high=eps_high, cov_ratio=cov_ratio)
    if not (math.isfinite(cov_low) and math.isfinite(cov_high) and cov_low < cov_high):
        raise ValueError(f"need finite cov_low < cov_high, got {cov_low!r}, {cov_high!r}")
    logp, logp_mu, adv, m = check_inputs(logp, logp_mu, adv, mask)
    ratio = _ratio(logp, logp_mu)
    loss = _clipped_surrogate(ratio, adv, eps_low, eps_high, None)
    valid = m > 0
    by_clip = (-adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high) > -adv * ratio) & valid
    cov = torch.where(by_clip, -math.inf, covariance_score(logp, adv, m))
    idx = torch.nonzero(((cov > cov_low) & (cov < cov_high) & valid).reshape(-1)).reshape(-1)
    detach = torch.zeros(loss.numel(), dtype=torch.bool, device=loss.device)
    if idx.numel():
        n_clip = max(int(cov_ratio * valid.sum().item()), 1)
        detach[idx[torch.randperm(idx.numel(), generator=generator)[:n_clip]]] = True
    return loss * (~detach.reshape(loss.shape)).to(loss.dtype)


def kl_cov_selection(logp, adv, mask=None, *, cov_ratio=2e-4):
    r"""KL-Cov's token set: the top :math:`\max(1, \lfloor rN\rfloor)` unmasked tokens by :func:`covariance_score`.

    ``torch.topk`` over the unmasked tokens in row-major order (verl's order, so ties break alike).
    Returns a 0/1 tensor of ``logp``'s shape (no gradient); all zeros on an empty mask.
    """
    _check_eps(cov_ratio=cov_ratio)
    m = _mask_like(mask, logp) > 0
    sel = torch.zeros(logp.numel(), dtype=logp.dtype, device=logp.device)
    n = int(m.sum())
    if n:
        cov = covariance_score(logp, adv, m)[m]
        top = torch.topk(cov, max(1, int(n * cov_ratio))).indices
        sel[torch.nonzero(m.reshape(-1)).reshape(-1)[top]] = 1.0
    return sel.reshape(logp.shape)


def kl_cov_loss(logp, logp_mu, adv, mask=None, *, cov_ratio=2e-4, kl_coef=0.1):
    r"""KL-Cov (Cui et al. 2025, arXiv 2505.22617): the ratio surrogate plus :math:`|s|` on high-covariance tokens.

    .. math:: \ell_t = -u_tA_t + \beta_{KL}\,S_t\,|s_t|,\qquad h = uA - \beta_{KL}\,q\,\mathrm{sgn}(s)

    :math:`S` from :func:`kl_cov_selection` (fraction :math:`r` = ``cov_ratio`` of the batch's
    tokens, at least one). The loss couples the whole batch; :math:`q` is the population share of
    an arm in the selected top-:math:`r` mass (``theory.zoo_verl``).
    Source: verl ``compute_policy_loss_kl_cov`` (``verl/trainer/ppo/core_algos.py``; its
    ``ppo_kl_coef`` is :math:`\beta_{KL}`). Per-token loss ``(..., T)``.
    """
    _check_eps(kl_coef=kl_coef)
    logp, logp_mu, adv, m = check_inputs(logp, logp_mu, adv, mask)
    sel = kl_cov_selection(logp, adv, m, cov_ratio=cov_ratio)
    return -adv * _ratio(logp, logp_mu) + kl_coef * (logp - logp_mu).abs() * sel


# ---------------------------------------------------------------------------
# off-policy corrections of the trainers (verl rollout_correction, TRL vLLM IS and OPSM) and VESPO
# ---------------------------------------------------------------------------

#: verl's rejection-sampling options (``algorithm.rollout_correction.rollout_rs``): an aggregation
#: (``token``, ``seq_sum``, ``seq_mean``, ``seq_max``) of a per-token divergence estimator (k1, k2, k3).
RS_OPTIONS = ("token_k1", "token_k2", "token_k3", "seq_sum_k1", "seq_sum_k2", "seq_sum_k3", "seq_mean_k1",
              "seq_mean_k2", "seq_mean_k3", "seq_max_k2", "seq_max_k3")


def _bounded(x, low, high):
    """Bool: ``low <= x <= high`` (a None bound is absent)."""
    keep = torch.ones_like(x, dtype=torch.bool)
    if low is not None:
        keep = keep & (x >= low)
    if high is not None:
        keep = keep & (x <= high)
    return keep


def rollout_is_weight(log_ratio, mask=None, *, level="token", mode="truncate", low=None, high=2.0):
    r"""The trainers' importance weight of the data, truncated or masked (no gradient).

    .. math::
        \rho = e^{s_t}\ (\text{token}),\qquad \rho = e^{\sum_t m_t s_t}\ (\text{sequence}),\qquad
        w = \mathrm{clip}(\rho, c_{lo}, c_{hi})\ (\text{truncate}),\quad
        w = \rho\,\mathbb 1[c_{lo}\le\rho\le c_{hi}]\ (\text{mask})

    with :math:`s_t` = ``log_ratio`` clamped to :math:`\pm 20` (the sequence sum
    clamped after summing). A None bound is absent. verl 0.9
    (``verl/trainer/ppo/rollout_corr_helper.py``, ``compute_rollout_correction_weights``):
    ``rollout_is`` = level, a float ``rollout_is_threshold`` C is truncate at
    ``high = C`` (no lower end; TIS), a ``"lo_hi"`` string is mask on
    ``[lo, hi]`` (IcePop). TRL 1.16 (``trl/trainer/grpo_trainer.py``,
    ``_generate_and_score_completions``): ``vllm_importance_sampling_mode``
    ``{token,sequence}_{truncate,mask}`` with ``low, high`` =
    ``vllm_importance_sampling_clip_min, _clip_max`` (TRL does not clamp the
    log-ratio). The ratio is the trainer's old (proximal) policy over the
    rollout engine's: ``log_ratio`` = :math:`\log\pi_{prox} - \log\mu`.

    Args: ``log_ratio`` ``(..., T)``, ``mask`` ``(..., T)``. Returns ``(..., T)``,
    0 on padding.
    """
    if level not in ("token", "sequence"):
        raise ValueError(f"level must be 'token' or 'sequence', got {level!r}")
    if mode not in ("truncate", "mask"):
        raise ValueError(f"mode must be 'truncate' or 'mask', got {mode!r}")
    if low is not None and not (math.isfinite(low) and low > 0):
        raise ValueError(f"low must be a finite number > 0 or None, got {low!r}")
    if high is not None and not (high > 0):
        raise ValueError(f"high must be a number > 0 (inf allowed) or None, got {high!r}")
    if mode == "truncate" and low is None and high is None:
        raise ValueError("mode 'truncate' needs a bound: give low, high or both")
    if low is not None and high is not None and low > high:
        raise ValueError(f"low must be <= high, got low = {low!r}, high = {high!r}")
    s = torch.as_tensor(log_ratio).detach()
    m = _mask_like(mask, s)
    if level == "sequence":
        s = (s * m).sum(-1, keepdim=True).expand_as(s)
    rho = torch.exp(s.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    w = rho.clamp(min=low, max=high) if mode == "truncate" else torch.where(_bounded(rho, low, high), rho, 0.0)
    return w * m


def rejection_keep(log_ratio, mask=None, *, rs="seq_mean_k1", low=None, high=None):
    r"""verl's rejection sampling: 1 on the tokens a divergence bound keeps, 0 on those it rejects (no gradient).

    Per token, from :math:`s_t` = ``log_ratio`` (clamped to :math:`\pm 20`):
    :math:`k_1 = -s`, :math:`k_2 = s^2/2`, :math:`k_3 = e^s - 1 - s`; aggregated
    over the sequence's tokens by ``seq_sum``, ``seq_mean`` or ``seq_max`` (every
    token of the sequence then shares the decision) or not at all (``token``).
    Keep

    .. math:: k_1:\ \log c_{lo} \le \bar k_1 \le \log c_{hi},\qquad
        k_2, k_3:\ \bar k \le c_{hi}

    (``low = None`` for a k1 option is :math:`1/c_{hi}`, as verl reads a single
    threshold). Note the k1 bounds act on :math:`-s`, i.e. on
    :math:`\mu/\pi_{prox}`. Source: verl 0.9
    ``verl/trainer/ppo/rollout_corr_helper.py`` (``compute_rollout_rejection_mask``;
    ``rollout_rs`` = ``rs``, ``rollout_rs_threshold`` = ``"low_high"`` or
    ``high``); Liu et al. 2025, "When speed kills stability".

    Args: ``log_ratio``, ``mask`` ``(..., T)``. Returns ``(..., T)`` in {0, 1}, 0 on padding.
    """
    if rs not in RS_OPTIONS:
        raise ValueError(f"rs must be one of {', '.join(RS_OPTIONS)}, got {rs!r}")
    if high is None or not (high > 0):
        raise ValueError(f"rejection sampling {rs!r} needs an upper bound high > 0, got {high!r}")
    k1 = rs.endswith("k1")
    if k1:
        low = 1.0 / high if low is None else low
        if not (0 < low <= high):
            raise ValueError(f"{rs}: need 0 < low <= high, got low = {low!r}, high = {high!r}")
    elif low is not None:
        raise ValueError(f"{rs} has an upper bound only; set low=None")
    s = torch.as_tensor(log_ratio).detach().clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    m = _mask_like(mask, s)
    stat = {"1": -s, "2": 0.5 * s**2, "3": torch.expm1(s) - s}[rs[-1]]
    agg = rs.rsplit("_", 1)[0]
    if agg == "seq_sum":
        stat = (stat * m).sum(-1, keepdim=True)
    elif agg == "seq_mean":
        stat = (stat * m).sum(-1, keepdim=True) / (m.sum(-1, keepdim=True) + 1e-8)
    elif agg == "seq_max":
        top = torch.where(m > 0, stat, -math.inf).amax(-1, keepdim=True)
        stat = torch.where(torch.isinf(top), 0.0, top)
    keep = _bounded(stat, math.log(low), math.log(high)) if k1 else stat <= high
    return keep.expand_as(s).to(m.dtype) * m


def offpolicy_sequence_keep(logp, logp_mu, adv, mask=None, *, delta=0.5):
    r"""DeepSeek-V3.2's off-policy sequence mask (TRL ``off_policy_mask_threshold``): 1 keep, 0 drop (no gradient).

    .. math:: M_i = \mathbb 1\Big[A_i \ge 0\ \lor\ \frac{1}{|y_i|}\sum_t m_t(\log\mu_t - \log\pi_t)
        \le \delta\Big]

    Negative-advantage sequences on which the current policy has drifted from the
    behaviour policy by more than :math:`\delta` nats per token are dropped.
    Source: DeepSeek-AI 2025 (DeepSeek-V3.2, arXiv 2512.02556, eq. 9); TRL 1.16
    ``trl/trainer/grpo_trainer.py`` (``GRPOTrainer.get_off_policy_mask``).

    Args: ``logp``, ``logp_mu``, ``mask`` ``(..., T)``; ``adv`` ``(...)`` or ``(..., T)``.
    Returns ``(..., T)`` (or the advantage's shape broadcast to tokens).
    """
    _check_eps(delta=delta)
    logp, logp_mu, a, m = check_inputs(logp, logp_mu, adv, mask)
    kl = ((logp_mu - logp.detach()) * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0)
    return ((a >= 0) | (kl <= delta)).to(m.dtype)


def rollout_corrected_loss(logp, logp_mu, adv, mask=None, *, logp_prox=None, bypass=False, surrogate="ppo_clip",
                           eps_low=0.2, eps_high=None, is_level=None, is_mode="truncate", is_low=None, is_high=2.0,
                           rs=None, rs_low=None, rs_high=None, opsm_delta=None):
    r"""A base surrogate times the trainers' off-policy corrections (verl ``rollout_correction``, TRL OPSM).

    .. math::
        \ell_t = \mathrm{sg}(w_t)\,K_t\,M_t\,\ell^{\rm base}_t,\qquad
        \ell^{\rm base}_t = \begin{cases}\text{PPO-clip of } \pi_t/\pi_{a,t} & \texttt{ppo\_clip}\\
        -A\log\pi_t & \texttt{reinforce}\end{cases}

    with :math:`w` of :func:`rollout_is_weight` (1 when ``is_level`` is None),
    :math:`K` of :func:`rejection_keep` (1 when ``rs`` is None) and :math:`M` of
    :func:`offpolicy_sequence_keep` (1 when ``opsm_delta`` is None). Two modes (verl's
    ``rollout_correction.bypass_mode``):

    * **decoupled** (``bypass=False``, three policies): :math:`w, K` from
      :math:`\log\pi_{prox} - \log\mu` and the PPO ratio against
      :math:`\pi_a = \pi_{prox}` (verl's ``old_log_prob``); needs ``logp_prox``;
    * **bypass** (two policies, :math:`\pi_{prox} = \mu`): :math:`w, K` from the
      current :math:`\log\pi` (detached) :math:`- \log\mu` and the PPO ratio against
      :math:`\mu`. verl's bypass PPO-clip applies no IS weight (the ratio is the
      correction), so ``is_level`` must then be None.

    :math:`M` compares the current policy with the behaviour one in both modes (TRL).
    Population weight (bandit, :math:`\pi_{prox} = \pi`, :math:`u = \pi/\mu`):
    decoupled :math:`h = w(u)K(u)M(u, A)A` whatever the base (its ratio is 1);
    bypass :math:`h = K(u)M(u,A)\,h^{\rm base}(u, A)` with :math:`h^{\rm base}`
    PPO's or :math:`w(u)A` (reinforce). Sources: verl 0.9
    ``verl/trainer/ppo/core_algos.py`` (``compute_policy_loss_vanilla``,
    ``compute_policy_loss_bypass_mode``, ``compute_policy_loss_reinforce``) and
    ``rollout_corr_helper.py``; TRL 1.16 ``grpo_trainer.py`` (``_compute_loss``).

    verl drops rejected tokens from ``response_mask``: aggregating this loss over
    ``mask * K`` reproduces verl's denominators (for sequence-level ``rs`` and
    verl's global-batch normalizers they are the same as over ``mask``).
    Returns ``(..., T)``.
    """
    if surrogate not in ("ppo_clip", "reinforce"):
        raise ValueError(f"surrogate must be 'ppo_clip' or 'reinforce', got {surrogate!r}")
    if bypass and surrogate == "ppo_clip" and is_level is not None:
        raise ValueError("bypass mode with the PPO-clip surrogate applies no IS weight (verl ignores "
                         "rollout_is there): set is_level=None")
    logp, logp_mu, a, m = check_inputs(logp, logp_mu, adv, mask)
    if bypass:
        prox = logp.detach()
    elif logp_prox is None:
        raise ValueError("decoupled mode (bypass=False) needs logp_prox (the trainer's old log-probabilities)")
    else:
        prox = torch.as_tensor(logp_prox, dtype=logp.dtype).detach()
        if prox.shape != logp.shape:
            raise ValueError(f"logp_prox has shape {tuple(prox.shape)} but logp has shape {tuple(logp.shape)}")
    if surrogate == "reinforce":
        out = -a * logp
    else:
        eps_high = eps_low if eps_high is None else eps_high
        _check_eps(eps_low=eps_low, eps_high=eps_high)
        out = _clipped_surrogate(_ratio(logp, logp_mu if bypass else prox), a, eps_low, eps_high, None)
    s = prox - logp_mu
    if is_level is not None:
        out = out * rollout_is_weight(s, m, level=is_level, mode=is_mode, low=is_low, high=is_high)
    if rs is not None:
        out = out * rejection_keep(s, m, rs=rs, low=rs_low, high=rs_high)
    if opsm_delta is not None:
        out = out * offpolicy_sequence_keep(logp, logp_mu, adv, m, delta=opsm_delta)
    return out


def vespo_loss(logp, logp_mu, adv, mask=None, *, k_pos=2.0, lambda_pos=3.0, k_neg=3.0, lambda_neg=2.0):
    r"""VESPO: REINFORCE weighted by a Gamma-shaped function of the sequence importance ratio.

    .. math::
        \ell_t = -\mathrm{sg}\big(\phi(W)\big)A\log\pi_t,\qquad
        \phi(W) = e^{\lambda}W^k e^{-\lambda W},\qquad W = \prod_t \frac{\pi_t}{\mu_t}

    (:math:`\phi(1) = 1`), :math:`(k, \lambda) = (k_+, \lambda_+)` for
    :math:`A \ge 0` and :math:`(k_-, \lambda_-)` otherwise; :math:`\log W` is the
    masked sum of the token log-ratios clamped to :math:`\pm 20`, then clamped
    to :math:`[\log 10^{-8}, 20]`. Population weight (bandit): :math:`h = \phi(u)A`,
    maximal at :math:`u = k/\lambda`. Source: VESPO (arXiv 2602.10693); TRL 1.16
    ``trl/trainer/grpo_trainer.py`` (``GRPOTrainer.get_gamma_weights``; with vLLM,
    TRL adds the log of its token IS ratio to :math:`\log W`, i.e. :math:`\mu` is the
    rollout engine's policy). Aggregated by ``token-mean``. Returns ``(..., T)``.
    """
    for name, v in (("k_pos", k_pos), ("k_neg", k_neg)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    _check_eps(lambda_pos=lambda_pos, lambda_neg=lambda_neg)
    logp, logp_mu, a, m = check_inputs(logp, logp_mu, adv, mask)
    s = (logp.detach() - logp_mu).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    log_w = (s * m).sum(-1, keepdim=True).clamp(math.log(1e-8), LOG_RATIO_CLAMP)
    pos = a >= 0
    k = torch.where(pos, k_pos, k_neg)
    lam = torch.where(pos, lambda_pos, lambda_neg)
    phi = torch.exp(lam + k * log_w - lam * torch.exp(log_w)).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
    return -phi * a * logp
