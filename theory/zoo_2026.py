r"""Objectives published in 2026 (and M2PO's own code): their specs, population weights and clip rules.

Registered at import of ``theory.objectives``, after the built-in zoo:

* ``m2po_clip`` — M2PO as its authors' code runs it (github.com/Infini-AI-Lab/M2PO):
  the second-moment budget turns into adaptive PPO clip bounds on the tokens whose
  ratio moved with their advantage. The zoo's ``m2po`` is AReaL's reading (a token
  mask); both are kept, and each spec's ``source`` says which is which.
* ``kpop`` — prime-rl's KPop loss: the unclipped ratio surrogate inside a symmetric
  binary-KL trust region on token probabilities, plus a squared log-ratio.
* ``up_grpo`` — UP-GRPO: advantage-weighted SFT on positive advantages, GRPO's
  clipped surrogate on negative ones.
* ``score_centering`` — ratio-free REINFORCE minus the sampler-expected score at
  every position (arXiv 2609.20807): the baseline inside the advantage stops
  mattering, and the drift towards the sampler, which makes AsymRE's target
  conservative, is gone.

The losses are in ``theory.losses``. Weights :math:`h(u, A, \mu)` are given by hand
where they depend on the whole distribution (``m2po_clip``'s bounds) or on the
arm's own probability (``kpop``'s band); ``tests/test_zoo_2026.py`` checks each
against autograd of its loss, and each target against the flow and the KKT solver.
"""

from __future__ import annotations

import numpy as np
import torch

from . import losses as L
from .objectives import ObjectiveSpec, Param, objective_spec, register_objective
from .zoo import argmax_set

__all__ = ["SPECS"]


# ---------------------------------------------------------------------------
# population weights h(u, A, params, mu): torch, elementwise in the arms, float64
# ---------------------------------------------------------------------------


def _m2po_clip_bounds(s, a, w, p):
    """(eps_low, eps_high) (..., 1) from log-ratios s, advantages a and weights w of the arms or tokens (..., K)."""
    harm = L.m2po_harmful(s, a).to(s.dtype) * w
    level = L.m2po_budget_level(s * s, harm, p["tau"])
    lo, hi = L.m2po_clip_bounds(level, p.get("min_eps_low"), p.get("min_eps_high"))
    return lo.unsqueeze(-1), hi.unsqueeze(-1)


def _h_m2po_clip(u, a, p, mu):
    """h = uA inside the batch's bounds, 0 beyond; the bounds from the mu-weighted harmful arms."""
    s = torch.log(u)
    w = torch.as_tensor(mu, dtype=u.dtype).expand_as(u)
    lo, hi = _m2po_clip_bounds(s, a.expand_as(u), w, p)
    active = torch.where(a >= 0, u < 1.0 + hi, u > 1.0 - lo)
    return torch.where(active, u * a, torch.zeros_like(u))


def _h_kpop(u, a, p, mu):
    """h = M(mu u, mu) alpha u A - 2 lambda log u: the band is on the arm's probabilities."""
    logmu = torch.log(torch.as_tensor(mu, dtype=u.dtype)).expand_as(u)
    keep = L.kpop_keep(logmu + torch.log(u), logmu, p["kpop_threshold"])
    return keep * p["adv_tau"] * u * a - 2.0 * p["kl_tau"] * torch.log(u)


def _h_score_centering(u, a, p, mu):
    """h = A - E_mu[A]: the expected score mu - pi, times A, is subtracted (the arms are coupled through mu)."""
    a = a.expand_as(u)
    return a - (torch.as_tensor(mu, dtype=a.dtype) * a).sum(-1, keepdim=True)


def _h_up_grpo(u, a, p, mu=None):
    return torch.where(a > 0, a, torch.where(u > 1.0 - p["eps_low"], u * a, torch.zeros_like(u)))


# ---------------------------------------------------------------------------
# clip rules (which tokens' gradient the loss removes) and closed forms
# ---------------------------------------------------------------------------


def _clip_m2po_clip(s, a, m, p):
    """Tokens beyond the batch's adaptive bounds on the side their advantage pushes."""
    lo, hi = _m2po_clip_bounds(s.reshape(-1), a.reshape(-1), m.reshape(-1).to(s.dtype), p)
    u = s.exp()
    return ((a > 0) & (u > 1.0 + hi)) | ((a < 0) & (u < 1.0 - lo))


def _clip_up_grpo(s, a, m, p):
    """Negative-advantage tokens below the lower clip 1 - eps_low."""
    return (a < 0) & (s.exp() < 1.0 - p["eps_low"])


def _t_positive_tilt(mu, adv, p):
    """pi ∝ mu A_+: TOPR's closed form (the weight is A on positive arms; negative arms carry none at the target)."""
    return objective_spec("topr").closed_form(mu, adv, p)


def _t_score_centering(mu, adv, p):
    """The vertex argmax mu_y (A_y - E_mu[A]); tied maxima keep their logit differences: mu restricted to them.

    The rates m = mu (A - E_mu[A]) sum to 0 by construction, so this is AsymRE's target at the
    transition E_mu[A] = 0 (``theory.zoo``), taken directly: no sign test on a sum that is 0 up to rounding.
    """
    top = argmax_set(mu, mu * (adv - (mu * adv).sum(-1, keepdims=True)))
    on_top = np.where(top, mu, 0.0)
    return on_top / on_top.sum(-1, keepdims=True)


_TAU = Param(0.04, low=0.0, low_open=True, high_open=True, doc="M2PO's second-moment budget")
_FLOOR = dict(low=0.0, high_open=True, doc="floor of the adaptive clip width (the reference's miniclip; None: none)")

SPECS = (
    ObjectiveSpec(
        name="m2po_clip",
        loss=L.m2po_clip_loss,
        advantage="grpo",
        params=dict(tau=_TAU, min_eps_low=Param(None, **_FLOOR), min_eps_high=Param(None, **_FLOOR), eps=1e-6),
        advantage_params=("eps",),
        aggregation="token-mean",
        family="ratio",
        weight=_h_m2po_clip,
        weight_needs_mu=True,
        target_kind="numerical",
        couples_batch=True,
        clip=_clip_m2po_clip,
        equation="PPO-clip with bounds [e^-t, e^t], t^2 capping s^2 of the harmful tokens so their mean <= tau",
        nominal="greedy within an adaptive trust region",
        induced=("numerical (explicit Euler on the flow): harmful arms are clipped once their capped second moment "
                 "exceeds tau; clipped arms form faces of fixed points (reported as a set, the point not certified)"),
        source=("M2PO, the authors' code (github.com/Infini-AI-Lab/M2PO, verl/trainer/ppo/core_algos.py: "
                "compute_m2po_policy_loss, kpo_clip_harmful_tokens; arXiv 2510.01161); published runs leave "
                "miniclip unset (None). 'm2po' is AReaL's token-mask reading"),
    ),
    ObjectiveSpec(
        name="kpop",
        loss=L.kpop_loss,
        advantage="mean",
        params=dict(kpop_threshold=Param(0.1, low=0.0, low_open=True, high_open=True, doc="binary-KL band phi"),
                    adv_tau=Param(1.0, low=0.0, high_open=True, doc="scale of the advantage term"),
                    kl_tau=Param(1e-3, low=0.0, high_open=True, doc="coefficient of the squared log-ratio")),
        aggregation="token-mean",
        family="ratio",
        weight=_h_kpop,
        weight_needs_mu=True,
        target_kind="numerical",
        # no clip rule: the band needs the token probabilities, not only the log-ratios a clip rule receives
        equation="-M u A + kl_tau s^2, M = 1[max(d(pi||mu), d(mu||pi)) <= phi], d the binary KL of the token",
        nominal="greedy within a probability-dependent trust region",
        induced=("numerical (explicit Euler on the flow): the band freezes an arm's policy-gradient term where its "
                 "binary KL exceeds phi; the squared log-ratio then pulls it back toward mu"),
        source=("KPop (ringtech.notion.site/kpop); prime-rl kpop_loss_fn, src/prime_rl/trainer/rl/loss.py on branch "
                "feat/kpop-loss (commit b9ba0608d), advantage r - mean (prime-rl's grpo)"),
    ),
    ObjectiveSpec(
        name="up_grpo",
        loss=L.up_grpo_loss,
        advantage="grpo",
        params=dict(eps_low=0.2, eps=1e-6),
        advantage_params=("eps",),
        aggregation="seq-mean-token-mean",
        family="ratio",
        weight=_h_up_grpo,
        closed_form=_t_positive_tilt,
        target_kind="linear",
        clip=_clip_up_grpo,
        equation="-A log pi for A > 0; max(-uA, -clip(u, 1-e, 1+e) A) for A <= 0",
        nominal="greedy (AW-SFT on positives)",
        induced="pi ∝ mu A_+ (TOPR's target: negative arms go to zero)",
        source=("UP-GRPO (rocfly88.github.io/2026/02/26/UP-GRPO.html); the arXiv text (2607.06987) was not "
                "reachable, the rule is the page's"),
    ),
    ObjectiveSpec(
        name="score_centering",
        loss=L.score_centered_loss,
        advantage="mean",
        params=dict(offset=Param(0.0, doc="baseline below the group mean (AsymRE's offset); the target ignores it")),
        advantage_params=("offset",),
        aggregation="token-mean",
        family="ratio-free",
        weight=_h_score_centering,
        weight_needs_mu=True,
        needs=("expected",),
        verl_note=("it needs the rollout's distribution at every position (top-k log-probabilities), which verl's "
                   "policy loss does not receive"),
        closed_form=_t_score_centering,
        target_kind="vertex",  # argmax mu (A - E_mu[A]), not argmax A
        equation="-A (log pi(y_t) - E_{v~mu(.|s_t)} log pi(v)), A = r - (mean - offset)",
        nominal="greedy (policy gradient)",
        induced=("the vertex argmax mu_y (A_y - E_mu[A]), whatever the offset: the flow mu (A - E_mu[A]) is "
                 "constant; on the token MDP the same rule at every state, on Q - V"),
        source=("Marek & Ryabinin, 'Score Centering Stabilizes Off-policy Reinforcement Learning' (arXiv "
                "2609.20807); the rule as SkyRL's PR #2244 states it (subtract A E_q[grad log p] at every prefix, "
                "q the sampler's top-k head with a proportional tail); verl 0.9.1 and TRL 1.16 do not ship it"),
    ),
)

for _spec in SPECS:
    register_objective(_spec)
del _spec
