r"""Off-policy readings of a training batch, defined once for the verl and TRL adapters.

The readings compare the policy :math:`\mu` that the loss is anchored at (verl's
``old_log_prob``: the rollout policy in bypass mode; TRL's ``old_per_token_logps``) with
the current policy :math:`\pi`, on the sampled tokens. With the mask :math:`m` (``n``
tokens, ``N`` non-empty rows), the token log-ratios :math:`r_t = \log\pi_t - \log\mu_t`,
the sequence log-ratios :math:`s_i = \sum_t m_{it}r_{it}` and the importance weights
:math:`w_t = e^{\bar r_t}`, :math:`W_i = e^{\bar s_i}` (:math:`\bar x` is :math:`x`
clamped to :math:`\pm 20`, ``theory.losses.LOG_RATIO_CLAMP``, as verl clamps before it
exponentiates):

=================  ======================================================  ================================
reading            definition                                              verl's ``rollout_corr/`` name
=================  ======================================================  ================================
``kl``             :math:`\frac1n\sum_t(-r_t)`: k1 KL(mu||pi) per token    ``kl``
``k3_kl``          :math:`\frac1n\sum_t(e^{r_t} - r_t - 1)`: k3, >= 0      ``k3_kl``
``chi2_token``     :math:`\frac1n\sum_t w_t^2 - 1`                         ``chi2_token``
``chi2_seq``       :math:`\frac1N\sum_i W_i^2 - 1`                         ``chi2_seq``
``ess``            :math:`(\sum_t w_t)^2 / (n\sum_t w_t^2)`                ``rollout_is_eff_sample_size``
``ess_seq``        :math:`(\sum_i W_i)^2 / (N\sum_i W_i^2)`                (none)
``kl_mu_pi``       :math:`\frac1N\sum_i(-s_i)`: k1 KL(mu||pi) per row      (none)
``adv_over_beta``  the mean of :math:`A/\beta`, per sequence or per token  (none)
``eta_fit``        ``kl_mu_pi`` (sequence level) or ``kl`` (token level),  (none)
                   plus ``adv_over_beta``
=================  ======================================================  ================================

**ESS** is verl's normalized form, Kish's effective sample size divided by the
sample count: :math:`\mathrm{ess} = (\sum w)^2/(n\sum w^2) \in [1/n, 1]`, which is
:math:`1/(1 + \hat\chi^2)` with the self-normalized chi-square
:math:`\hat\chi^2 = n\sum w^2/(\sum w)^2 - 1`, and
:math:`\bar w^2/(1 + \mathrm{chi2\_token})` with :math:`\bar w` the mean weight (the
two chi-squares agree where :math:`\bar w = 1`, its expectation on samples of
:math:`\mu`). verl's ``rollout_is_eff_sample_size`` is this on its truncated IS weights,
with :math:`10^{-8}` added to the mean.

**The fitted eta** (``sims.integrations.eta.fitted_eta``, pooled over the batch) is
:math:`\widehat{\mathrm{KL}}(\mu\|\pi) + \bar A/\beta`, the identity of docs/theory.md
section 3 evaluated on the samples. A sequence-level objective (the regression family)
is a bandit over completions, so the KL term is per sequence (``kl_mu_pi``) and the
advantages are per sequence; a token-level objective (REINFORCE with a k1 or k3 penalty)
penalizes :math:`\beta k(r_t)` on every token, a bandit per visited prefix, so both
terms are token means (``kl``, the mean of :math:`A_t/\beta` over tokens).
docs/diagnostics.md says what it estimates for each objective.

Where verl differs: verl's ``chi2_seq`` averages over every row (an empty row adds
:math:`W = 1`), these readings over the non-empty ones; verl's ``k3_kl`` does not clamp
:math:`r_t` (the two differ only past :math:`|r_t| = 20`); verl adds :math:`10^{-8}` to
every token count. ``tests/test_diagnostics.py`` checks equality with verl's
``compute_offpolicy_metrics`` and ``compute_is_metrics`` on ragged batches.

**As sums.** Every reading is a ratio of sums over the batch (:data:`SUMS`):
:func:`batch_sums` returns them as one float64 vector, which data-parallel ranks add
(TRL's ``accelerator.reduce``) before :func:`readings` divides; so the readings of the
whole batch are the same whatever its split. Empty denominators give NaN. The Lambert-predicted
eta and the regime, the regression family's other readings, are :mod:`sims.integrations.eta`'s.
"""

from __future__ import annotations

import math

import torch

from theory.losses import LOG_RATIO_CLAMP, kl_estimate

__all__ = [
    "SUMS",
    "OFFPOLICY_READINGS",
    "batch_sums",
    "readings",
    "offpolicy_readings",
    "temperature",
    "predicts_eta",
    "reading_names",
    "clip_k3_threshold",
]

#: The sums every reading is a ratio of, in the order of :func:`batch_sums`'s vector.
SUMS = ("tokens", "k1", "k3", "w", "w2", "sequences", "seq_k1", "seq_w", "seq_w2", "adv_tokens", "adv_sequences")

#: Readings reported for every objective (the off-policy gap between behaviour and current policy).
OFFPOLICY_READINGS = ("kl", "k3_kl", "chi2_token", "chi2_seq", "ess", "ess_seq")

_LEVELS = ("token", "sequence")


def _dtypes(x: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(elementwise, accumulation) dtypes: the input's float32/float64 (half precisions: float32), and
    float64 sums (float32 on Apple MPS, which has no float64)."""
    work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    return work, (torch.float32 if x.device.type == "mps" else torch.float64)


def _advantage_sums(adv, m: torch.Tensor, valid: torch.Tensor, work, acc) -> tuple[torch.Tensor, torch.Tensor]:
    r"""(:math:`\sum_{it} m A_{it}`, :math:`\sum_{i\,\mathrm{valid}} A_i`) from ``adv`` ``(B,)`` or ``(B, T)``.

    A per-token advantage's sequence value is its mean over the row's tokens (verl broadcasts
    the sequence advantage to every token).
    """
    zero = torch.zeros((), dtype=acc, device=m.device)
    if adv is None:
        return zero, zero
    a = torch.as_tensor(adv, device=m.device).detach()
    n_tok = m.sum(-1).to(acc)
    if a.shape == m.shape:
        tok = torch.where(m, a.to(work), 0.0).sum(-1, dtype=acc)
        seq = tok / n_tok.clamp_min(1.0)
    elif a.shape == m.shape[:-1]:
        seq = a.to(acc)
        tok = seq * n_tok
    else:
        raise ValueError(f"adv has shape {tuple(a.shape)}; expected {tuple(m.shape)} or {tuple(m.shape[:-1])}")
    return tok.sum(), torch.where(valid, seq, zero).sum()


def _check_shapes(logp, logp_mu, mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lp = torch.as_tensor(logp).detach()
    lm = torch.as_tensor(logp_mu, device=lp.device).detach()
    if lp.shape != lm.shape or lp.dim() == 0:
        raise ValueError(f"logp has shape {tuple(lp.shape)} but logp_mu has shape {tuple(lm.shape)}")
    m = torch.ones_like(lp, dtype=torch.bool) if mask is None else torch.as_tensor(mask, device=lp.device) > 0
    if m.shape != lp.shape:
        raise ValueError(f"mask has shape {tuple(m.shape)} but logp has shape {tuple(lp.shape)}")
    return lp, lm, m


def batch_sums(logp, logp_mu, mask=None, adv=None) -> torch.Tensor:
    r"""The sums of :data:`SUMS` over a batch, one vector (float64; float32 on MPS), no gradient.

    Parameters
    ----------
    logp, logp_mu : Tensor, shape (..., T)
        Per-token log-probabilities of the current and the behaviour policy (nats).
    mask : Tensor, shape (..., T), optional
        Valid tokens (nonzero); default all.
    adv : Tensor, shape (...) or (..., T), optional
        Advantages (reward units), needed for ``adv_over_beta`` and ``eta_fit``.

    Returns
    -------
    Tensor, shape (len(SUMS),)
        Add the vectors of several batches (or ranks) to pool them; :func:`readings` divides.
        Elementwise work is in the input's precision (float32 at least), every sum in float64.
    """
    lp, lm, m = _check_shapes(logp, logp_mu, mask)
    work, acc = _dtypes(lp)
    r = torch.where(m, lp.to(work) - lm.to(work), 0.0)  # (..., T) log pi/mu; 0 off the mask, where w = 1, k3 = 0
    w = torch.exp(r.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    n = m.sum()
    off = m.numel() - n  # tokens off the mask, each adding exactly 1 to the sums of w and w^2
    valid = m.any(-1)  # (...) non-empty rows
    s = r.sum(-1, dtype=acc)  # (...) sequence log-ratios
    W = torch.where(valid, torch.exp(s.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)), 0.0)
    adv_tok, adv_seq = _advantage_sums(adv, m, valid, work, acc)
    out = [n, -r.sum(dtype=acc), kl_estimate(r, "k3").sum(dtype=acc), w.sum(dtype=acc) - off,
           (w * w).sum(dtype=acc) - off, valid.sum(), -s.sum(), W.sum(), (W * W).sum(), adv_tok, adv_seq]
    return torch.stack([x.to(acc) for x in out])


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def readings(sums, beta=None, level="sequence") -> dict[str, float]:
    r"""The readings (module docstring) from :func:`batch_sums`'s vector, as python floats.

    Parameters
    ----------
    sums : Tensor or sequence, shape (len(SUMS),)
        Sums of one batch, or of several added together.
    beta : float, optional
        The objective's temperature (reward units per nat). Given: ``adv_over_beta`` and
        ``eta_fit`` (and ``kl_mu_pi`` at the sequence level) are added; None: they are not.
    level : {"sequence", "token"}
        The objective's level, which sets the terms of ``eta_fit``.

    Returns
    -------
    dict
        :data:`OFFPOLICY_READINGS`, then the temperature's readings; NaN where the batch has no token.
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
    values = torch.as_tensor(sums).detach().to("cpu", torch.float64).reshape(-1).tolist()  # one device sync
    if len(values) != len(SUMS):
        raise ValueError(f"sums must have {len(SUMS)} entries ({', '.join(SUMS)})")
    v = dict(zip(SUMS, values))
    n, N = v["tokens"], v["sequences"]
    out = {
        "kl": _ratio(v["k1"], n),
        "k3_kl": _ratio(v["k3"], n),
        "chi2_token": _ratio(v["w2"], n) - 1.0,
        "chi2_seq": _ratio(v["seq_w2"], N) - 1.0,
        "ess": _ratio(v["w"] ** 2, n * v["w2"]),
        "ess_seq": _ratio(v["seq_w"] ** 2, N * v["seq_w2"]),
    }
    if beta is None:
        return out
    beta = float(beta)
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    if level == "sequence":
        out["kl_mu_pi"] = _ratio(v["seq_k1"], N)
        out["adv_over_beta"] = _ratio(v["adv_sequences"], N) / beta
        out["eta_fit"] = out["kl_mu_pi"] + out["adv_over_beta"]
    else:
        out["adv_over_beta"] = _ratio(v["adv_tokens"], n) / beta
        out["eta_fit"] = out["kl"] + out["adv_over_beta"]
    return out


def offpolicy_readings(logp, logp_mu, mask=None, adv=None, beta=None, level="sequence") -> dict[str, float]:
    """:func:`readings` of one batch: ``readings(batch_sums(logp, logp_mu, mask, adv), beta, level)``."""
    if beta is not None and adv is None:
        raise ValueError("the temperature's readings (eta_fit, adv_over_beta) need adv")
    return readings(batch_sums(logp, logp_mu, mask, adv), beta, level)


# ---------------------------------------------------------------------------
# which readings an objective has
# ---------------------------------------------------------------------------


def temperature(obj) -> float | None:
    r"""The objective's :math:`\beta` where its fitted eta is defined, else None.

    Defined for an objective with a temperature ``beta`` on an advantage signal, anchored at
    the behaviour policy: the regression family but A*-PO, and REINFORCE with a k1, k2 or k3
    penalty. Not for the weighted cross-entropies (AWR, TPO: the signal is a weight and the
    target is the Gibbs tilt whatever the baseline) nor for A*-PO (anchored at the reference,
    which is not the sampling policy, so the identity's KL term is not the one estimated here).
    """
    if "beta" not in obj.params or obj.spec.signal != "adv" or "ref" in obj.needs:
        return None
    return float(obj.params["beta"])


def predicts_eta(obj) -> bool:
    """Whether the Lambert-predicted eta and the regime apply: the regression family, anchored at the behaviour."""
    return obj.family == "regression" and temperature(obj) is not None


def reading_names(obj) -> tuple[str, ...]:
    """Names of the readings the adapters report for ``obj`` (prefixed ``actor/zoo/`` in verl, ``zoo/`` in TRL)."""
    names = OFFPOLICY_READINGS
    if temperature(obj) is not None:
        names += ("kl_mu_pi",) if obj.level == "sequence" else ()
        names += ("adv_over_beta", "eta_fit")
    if predicts_eta(obj):
        names += ("eta_lambert", "regime")
    return names


def clip_k3_threshold(eps_low=None, eps_high=None) -> float:
    r"""Smallest per-token k3 of a token outside the clip range :math:`[1-\epsilon_l, 1+\epsilon_h]`.

    The per-token k3, :math:`f(r) = e^r - r - 1`, is convex with its minimum 0 at
    :math:`r = 0`, so outside the range it is at least
    :math:`\kappa = \min\big(\epsilon_h - \log(1+\epsilon_h),\ -\epsilon_l - \log(1-\epsilon_l)\big)`
    (a missing side, or :math:`\epsilon_l \ge 1`, counts as :math:`\infty`). Hence the fraction of
    tokens outside the range is at most ``k3_kl`` / :math:`\kappa` (Markov), and a drift that moves
    every token alike reaches the range's edge at ``k3_kl`` :math:`= \kappa`.
    PPO's :math:`\epsilon = 0.2`: :math:`\kappa = 0.2 - \log 1.2 = 0.0177`.
    """
    for e in (eps_low, eps_high):
        if e is not None and not float(e) > 0:
            raise ValueError(f"clip ranges must be > 0, got {e!r}")
    sides = []
    if eps_high is not None:
        sides.append(float(eps_high) - math.log1p(float(eps_high)))
    if eps_low is not None and float(eps_low) < 1.0:
        sides.append(-float(eps_low) - math.log1p(-float(eps_low)))
    return min(sides) if sides else math.inf
