r"""The built-in objective zoo: every published objective's spec, its population weight and its closed form.

Each objective is one :class:`theory.objectives.ObjectiveSpec`, registered at import
of ``theory.objectives``. The functions here are the pieces the specs point to:

* population weights :math:`h(u, A)` (torch, elementwise, float64) — kept by hand
  where the weight depends on the whole distribution (TPO, M2PO) and, for the
  others, as a fast evaluation of the function autograd gives (the solvers and
  the lag iteration call it at every step; ``tests/test_objectives.py`` checks
  each against ``theory.objectives.autograd_weight``, and at the clip kinks,
  where autograd's subgradient is a convention, the weight is the one-sided
  limit the theory uses);
* closed-form targets (numpy, ``(..., K)``) and face points;
* clip rules (which tokens a clip or mask removes: every trainer's clip fraction).

The zoo spans several modules, registered in this order by ``theory.objectives``: this one (the
objectives the toolkit started with), ``theory.zoo_verl`` (verl's DPPO, GMPO, Clip-Cov and KL-Cov
losses), ``theory.zoo_verl_adv`` (verl's own advantage estimators), ``theory.zoo_corrections`` (the
trainers' off-policy corrections, TRL's VESPO and LUSPO) and ``theory.zoo_2026`` (M2PO's own code, KPop,
UP-GRPO). Adding a built-in objective: its loss in ``theory.losses``, its spec in the module of its
source, its test.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from . import losses as L
from .objectives import ObjectiveSpec, register_objective
from .recipes import VERL_MEAN_ADVANTAGE, TrlRecipe, VerlRecipe

__all__ = [
    "BUILTIN_SPECS",
    "TRANSITION_RTOL",
    "VERL_PPO",
    "argmax_set",
    "clip_range",
    "greedy_fill",
    "h_ppo",
    "h_reinforce",
    "ppo_spec",
]



# ---------------------------------------------------------------------------
# population weights h(u, A, params, mu): torch, elementwise, float64
# ---------------------------------------------------------------------------


def _h_pg(u, a, p, mu=None):
    return u * a


def h_ppo(u, a, p, mu=None):
    lo, hi = 1.0 - p["eps_low"], 1.0 + (p.get("eps_high") or p["eps_low"])
    active = torch.where(a >= 0, u < hi, u > lo)
    h = torch.where(active, u * a, torch.zeros_like(u))
    if p.get("dual_clip") is not None:
        h = torch.where((a < 0) & (u > p["dual_clip"]), torch.zeros_like(u), h)
    if p.get("kl_beta", 0.0) > 0:  # k3 to a reference, taken = mu on the bandit: -d/ds beta(e^-s - 1 + s)
        h = h + p["kl_beta"] * (1.0 / u - 1.0)
    return h


def _h_cispo(u, a, p, mu=None):
    lo = 0.0 if p.get("eps_low") is None else 1.0 - p["eps_low"]
    return u.clamp(min=lo, max=1.0 + p["eps_high"]) * a


def _h_decoupled(u, a, p, mu=None):
    cap = p.get("is_cap")
    return (u if cap is None else u.clamp(max=cap)) * a


def _h_sapo(u, a, p, mu=None):
    tau = torch.where(a > 0, torch.full_like(a, p["tau_pos"]), torch.full_like(a, p["tau_neg"]))
    sg = torch.sigmoid(tau * (u - 1.0))
    return 4.0 * a * u * sg * (1.0 - sg)


def _h_topr(u, a, p, mu=None):
    return torch.where(a >= 0, a, u.clamp(max=1.0) * a)


def _h_m2po(u, a, p, mu):
    """The population mask: arms leave in decreasing s^2 until E_mu[s^2 | kept] <= tau."""
    s2 = torch.log(u) ** 2
    order = torch.argsort(s2, dim=-1)
    s2_sorted = torch.gather(s2, -1, order)
    mu_sorted = torch.gather(torch.as_tensor(mu, dtype=u.dtype).expand_as(u), -1, order)
    mean_kept = torch.cumsum(mu_sorted * s2_sorted, -1) / torch.cumsum(mu_sorted, -1).clamp_min(1e-300)
    keep_sorted = (mean_kept <= p["tau"]).to(u.dtype)
    keep = torch.zeros_like(u).scatter(-1, order, keep_sorted)
    return keep * u * a


def h_reinforce(u, a, p, mu=None):
    return a.expand_as(u)


def _h_kl(u, a, p, mu=None):
    beta, kind = p["beta"], p["kind"]
    if kind == "k1":
        return (a + beta).expand_as(u)
    if kind == "k2":
        return a - beta * torch.log(u)
    return a + beta - beta * u


def _h_gibbs(u, a, p, mu=None):
    return torch.exp(a / p["beta"]).clamp(max=p.get("max_weight", math.inf)).expand_as(u)


def _h_tpo(u, a, p, mu):
    z = a / p["beta"]
    w = torch.exp(z - z.amax(-1, keepdim=True))
    mu_t = torch.as_tensor(mu, dtype=u.dtype)
    return (w / (mu_t * w).sum(-1, keepdim=True)).expand_as(u)


def _h_regression(u, a, p, mu=None):
    beta = p["beta"]
    return 2.0 * beta * (a - beta * torch.log(u))


# ---------------------------------------------------------------------------
# closed-form targets (numpy, (..., K)); None means "use the solver / flow"
# ---------------------------------------------------------------------------


def _t_lambert(mu, adv, p):
    from .lambert import lambert_target

    return lambert_target(mu, adv, p["beta"])[0]


def _t_gibbs(mu, adv, p):
    # h = min(e^{A/beta}, w_max) does not depend on u, so h/u = kappa gives pi ∝ mu h
    z = np.minimum(adv / p["beta"], np.log(p.get("max_weight", math.inf)))
    with np.errstate(divide="ignore"):
        lw = np.where(mu > 0, np.log(np.where(mu > 0, mu, 1.0)) + z, -np.inf)
    lw = lw - lw.max(-1, keepdims=True)
    w = np.exp(lw)
    return w / w.sum(-1, keepdims=True)


#: |E_mu[A']| at or below this multiple of sum_y mu_y |A'_y| counts as the transition E_mu[A'] = 0:
#: below it the sign of E_mu[A'] is rounding (it is a sum of terms of size sum mu |A'| each rounded to
#: about 1e-16 of itself), so the flow's limit at E_mu[A'] = 0 exactly is returned.
TRANSITION_RTOL = 64 * np.finfo(np.float64).eps


def argmax_set(mu, m):
    """Support arms at the maximum of ``m``, ties taken to 1e-12 (relative): bool (..., K)."""
    m = np.where(mu > 0, m, -np.inf)
    best = m.max(-1, keepdims=True)
    return m >= best - 1e-12 * np.maximum(np.abs(best), 1.0)


def _t_vertex(mu, adv, p):
    """Vertex at the best arm; among tied best arms the flow keeps the most probable one.

    (For :math:`h = uA` the logits move at :math:`\\pi_z(A_z - \\kappa)`: of two
    tied arms the more probable one grows faster, and the integral of
    :math:`A_{max} - \\kappa` diverges, so the face of tied best arms, every
    point of which is stationary, is left for its most probable vertex.) Exact
    ties in ``mu`` too split the mass equally.
    """
    top = argmax_set(mu, adv)
    w = np.where(top, mu, -1.0)
    top = w == w.max(-1, keepdims=True)
    return top / top.sum(-1, keepdims=True)


def _linear_threshold(mu, a_eff):
    r"""Target of the weight :math:`h = A'` (constant in u), on both sides of :math:`E_\mu[A'] = 0`.

    With :math:`m_z = \mu_z A'_z` and :math:`\kappa = E_\mu[A'] = \sum_z m_z`
    (constant along the flow, since :math:`h` does not depend on :math:`u`),
    the logits move at :math:`\dot\theta_z = m_z - \pi_z\kappa`.

    * :math:`\kappa > 0`: :math:`\pi = (m - c)_+/\kappa` with ``c`` solving
      :math:`\sum_y(m_y - c)_+ = \kappa` (a sort and a cumulative sum, as in
      a projection onto the simplex). It is computed as :math:`(m - c)_+`
      normalized by its own sum, which is :math:`\kappa` in exact arithmetic
      and keeps the result on the simplex when :math:`\kappa` is tiny.
    * :math:`\kappa = 0` (the phase transition; AsymRE at offset 0): the rates
      :math:`m_z` are constant, :math:`\theta_z(t) = \log\mu_z + t m_z`, so the
      flow ends at the vertex :math:`\arg\max_z m_z`. Tied maxima keep their
      logit differences :math:`\log(\mu_i/\mu_j)` for ever, so the limit is
      :math:`\mu` restricted to them and renormalized. With a unique maximum
      this is also the limit of the :math:`\kappa > 0` form as
      :math:`\kappa \to 0^+` and of the collapse as :math:`\kappa \to 0^-`
      (ties split equally as :math:`\kappa \to 0^+`: the target jumps there). :math:`|\kappa| \le` ``TRANSITION_RTOL``
      :math:`\sum|m|` counts as 0: there its sign is rounding.
    * :math:`\kappa < 0`: no interior limit; the flow collapses onto one arm
      that depends on the path. These rows are returned as NaN and
      ``theory.induced`` hands them to the flow.
    """
    m = mu * a_eff
    total = m.sum(-1, keepdims=True)
    at_zero = np.abs(total) <= TRANSITION_RTOL * np.abs(m).sum(-1, keepdims=True)
    srt = -np.sort(-m, axis=-1)
    k = np.arange(1, m.shape[-1] + 1)
    csum = np.cumsum(srt, -1)
    c_k = (csum - total) / k
    valid = srt > c_k
    kstar = valid.shape[-1] - 1 - np.argmax(valid[..., ::-1], axis=-1)
    c = np.take_along_axis(c_k, kstar[..., None], -1)
    w = np.where(mu > 0, np.maximum(m - c, 0.0), 0.0)
    s = w.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        pi = w / s
    top = argmax_set(mu, m)
    # s == 0 (kappa below the rounding of the sort's c) is the kappa -> 0+ limit: the tied maxima share
    pi = np.where(s > 0, pi, top / top.sum(-1, keepdims=True))
    on_top = np.where(top, mu, 0.0)
    pi = np.where(at_zero, on_top / on_top.sum(-1, keepdims=True), pi)
    return np.where((total > 0) | at_zero, pi, np.nan)


def greedy_fill(mu, adv, cap):
    r"""The flow's point on the tied best arms' face for :math:`h = \min(u, C)A` (:math:`C` = ``cap``).

    Below the clip the tied best arms :math:`T` (advantage :math:`a`) move at
    :math:`\dot\theta_z = \pi_z(a - \kappa)` with :math:`\kappa \le a`, so
    :math:`\log(\pi_i/\pi_j)` grows at :math:`(\pi_i - \pi_j)(a - \kappa)`:
    the most probable arm reaches its cap :math:`u = C` first and stays there
    (the clipped weight holds it), then the next, and since
    :math:`\int(a - \kappa)\,dt` diverges (the other arms decay like
    :math:`1/t`), the arms are filled to :math:`\pi_z = C\mu_z` in decreasing
    :math:`\mu`, the last one partly, the rest emptied; arms with equal
    :math:`\mu` fill together. This is a face only when
    :math:`C\mu(T) \ge 1`; otherwise the target is a point (every tied arm at
    :math:`u = C a/\kappa`) and the rows are NaN (the solver's point stands).
    Ties below the best level are not covered (NaN: not certified).
    """
    mu = np.asarray(mu, dtype=np.float64)
    top = argmax_set(mu, adv)
    cap_mass = np.where(top, cap * mu, 0.0)
    out = np.full(mu.shape, np.nan)
    M, C = mu.reshape(-1, mu.shape[-1]), cap_mass.reshape(-1, mu.shape[-1])
    T = top.reshape(-1, mu.shape[-1])
    O = out.reshape(-1, mu.shape[-1])
    for i in np.flatnonzero(C.sum(-1) >= 1.0 - 1e-12):
        left = 1.0
        row = np.zeros(M.shape[1])
        for m_val in sorted(set(M[i][T[i]]), reverse=True):  # groups of equal mu, largest first
            grp = T[i] & (M[i] == m_val)
            give = min(C[i][grp].sum(), left)
            row[grp] = give / grp.sum()
            left -= give
        O[i] = row / row.sum()
    return out


def _t_fill_cispo(mu, adv, p):
    if p.get("eps_low") is not None:  # a lower clip gives the weight a floor at u -> 0: not this rule
        return None
    return greedy_fill(mu, adv, 1.0 + p["eps_high"])


def _t_fill_tis(mu, adv, p):
    return _t_vertex(mu, adv, p) if p.get("is_cap") is None else greedy_fill(mu, adv, p["is_cap"])


def _t_reinforce(mu, adv, p):
    return _linear_threshold(mu, adv)


def _t_kl(mu, adv, p):
    if p["kind"] == "k2":
        from .lambert import lambert_target

        # h = A - beta s = (2 beta)^-1 x regression weight at temperature beta: same target
        return lambert_target(mu, adv, p["beta"])[0]
    # k1 (h = A + beta) and k3 (h = A + beta - beta u) have the same target: on the
    # survivors mu (A + beta - beta u - kappa u) = c gives u = (A + beta - c/mu)/(beta + kappa),
    # normalization fixes beta + kappa = sum_S (mu (A + beta) - c), and the drop rule
    # mu (A + beta) <= c and the drift c |S| = -sum_drop mu (A + beta) are k1's.
    return _linear_threshold(mu, adv + p["beta"])


def _t_topr(mu, adv, p):
    m = mu * np.maximum(adv, 0.0)
    tot = m.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, m / tot, np.nan)


def _induced_soft_value(p) -> str:
    r"""The induced target of a regression on ``r - V*_beta1 (- delta beta)``, rendered from its parameters.

    The regime is the sign of :math:`V^*_\beta - V` (``docs/theory.md`` section 3);
    :math:`V^*_b` decreases in :math:`b`, so with :math:`V = V^*_{\beta_1} + \delta\beta`
    the regime follows from :math:`\beta_1` against :math:`\beta` and the sign of
    :math:`\delta` unless the two pull in opposite directions.
    """
    b, b1, d = p["beta"], p["beta1"], p.get("delta", 0.0)
    at = f"beta = {b:g}, beta1 = {b1:g}" + (f", delta = {d:g}" if "delta" in p else "")
    v = "V = V*_beta1" + (" + delta beta" if "delta" in p else "")
    pos = "Lambert, positive regime: eta > 0 (pessimistic)"
    neg = ("Lambert, negative regime: eta < 0 (optimistic); global minimizer, the flow from mu may stop at "
           "another local minimum")
    if b1 == b and d == 0:
        return f"Gibbs (boundary, eta = 0) in the population; positive regime at finite G [{v}, {at}]"
    if (b1 > b and d <= 0) or (b1 == b and d < 0):
        return f"{pos} [{v}, {at}]"
    if (b1 < b and d >= 0) or (b1 == b and d > 0):
        return f"{neg} [{v}, {at}]"
    return f"Lambert; the regime depends on the bandit (sign of V*_beta - V) [{v}, {at}]"


# ---------------------------------------------------------------------------
# clip rules: clip(s, adv, mask, params) -> bool (..., T), s the token log-ratios
# ---------------------------------------------------------------------------


def clip_range(s, a, m, p):
    """Tokens whose ratio lies outside [1 - eps_low, 1 + eps_high] (no lower end when eps_low is None)."""
    hi = p.get("eps_high") or p.get("eps_low")
    u = s.exp()
    out = u > 1 + hi
    if p.get("eps_low") is not None:
        out = out | (u < 1 - p["eps_low"])
    return out


def _clip_topr(s, a, m, p):
    """Negative-advantage tokens whose ratio TOPR truncates at 1 (u > 1)."""
    return (a < 0) & (s > 0)


def _clip_m2po(s, a, m, p):
    """Tokens with a nonzero advantage that M2PO's second-moment mask drops."""
    kept = L.m2po_mask(s, torch.zeros_like(s), m, tau=p["tau"]).bool()
    return ~kept & (a != 0)


def _minus_beta(p):
    return -p["beta"]


# verl settings shared by the recipes: PPO's clip at 0.2 without dual clip; token-level rollout importance
# sampling (the truncated-IS family); verl's grpo estimator without the std is theory.recipes.VERL_MEAN_ADVANTAGE
VERL_PPO = dict(clip_ratio_low=0.2, clip_ratio_high=0.2, clip_ratio_c=math.inf, loss_agg_mode="token-mean")
_VERL_IS = {"rollout_correction.rollout_is": "token", "rollout_correction.bypass_mode": False}

_LP = ("LP on the simplex: set-valued on the clip plateaus; reported: the set (per-arm ranges) and the point of its "
       "optimal face reached by explicit Euler with decaying steps (a point of the face, not the exact flow's limit)")

def ppo_spec(name, **fields):
    """A PPO-clip objective (optional dual clip and k3 penalty): its target is the clip LP's optimal face."""
    return ObjectiveSpec(name=name, loss=L.ppo_clip_kl_loss, family="ratio", weight=h_ppo, target_kind="lp",
                         clip=clip_range, nominal="greedy within a trust region", induced=_LP, **fields)


def _kl_spec(name, **fields):
    """REINFORCE with a KL penalty to the behaviour policy (k1, k2, k3): nominally Gibbs at beta."""
    return ObjectiveSpec(name=name, loss=L.kl_reinforce_loss, advantage="mean", aggregation="token-mean",
                         family="ratio-free", weight=_h_kl, closed_form=_t_kl,
                         nominal="Gibbs pi ∝ mu exp(A/beta)", **fields)


def _regression_spec(name, **fields):
    """A sequence-level regression on beta log(pi/anchor) (OAPL, A*-PO, OPMD): its target is Lambert's."""
    return ObjectiveSpec(name=name, loss=L.anchored_regression_loss, aggregation="sequence", level="sequence",
                         family="regression", weight=_h_regression, closed_form=_t_lambert, target_kind="lambert",
                         **fields)



_CISPO = ObjectiveSpec(
    name='cispo',
    loss=L.cispo_loss,
    advantage='grpo',
    params=dict(eps_low=None, eps_high=0.28, eps=1e-06),
    advantage_params=('eps',),
    aggregation='token-mean',
    family='ratio',
    weight=_h_cispo,
    face_point=_t_fill_cispo,
    target_kind='kkt',
    clip=clip_range,
    equation='-sg(clip(u, 1-e_l, 1+e_h)) A log pi',
    nominal='greedy (clipped IS policy gradient)',
    induced=(
        'u = (1+e_h) A / kappa on arms with A > kappa; tied arms at A = kappa: a face of fixed points '
        '(reported as a set), the flow fills them to u = 1+e_h in decreasing mu'
    ),
    verl=VerlRecipe("cispo", "grpo", dict(clip_ratio_low=1.0, clip_ratio_high=0.28, loss_agg_mode="token-mean")),
    # TRL caps the ratio at epsilon_high itself, the zoo at 1 + eps_high
    trl=TrlRecipe({"loss_type": "cispo", "epsilon_high": 1.28}, {"eps": 1e-4}),
    source="MiniMax 2025 (MiniMax-M1); verl 'cispo'",
)


#: The built-in objectives, in the order of the comparison table.
BUILTIN_SPECS: tuple[ObjectiveSpec, ...] = (
    ObjectiveSpec(
        name='pg',
        loss=L.policy_gradient_loss,
        advantage='mean',
        aggregation='token-mean',
        family='ratio',
        weight=_h_pg,
        closed_form=_t_vertex,
        face_point=_t_vertex,
        target_kind='vertex',
        equation='-u A',
        nominal='greedy (max E_pi[A])',
        induced=(
            'vertex at argmax A; tied best arms: every point on them is stationary, the flow ends at the most'
            ' probable'
        ),
        source='Williams 1992; exact importance ratio pi/mu',
    ),
    ppo_spec(
        name='ppo',
        advantage='grpo',
        params=dict(eps_low=0.2, eps_high=0.2, dual_clip=None, kl_beta=0.0, eps=1e-06),
        advantage_params=('eps',),
        aggregation='token-mean',
        equation='max(-uA, -clip(u, 1-e_l, 1+e_h) A); dual clip: min(., -cA) for A<0',
        verl=VerlRecipe("vanilla", "grpo", dict(VERL_PPO)),
        trl=TrlRecipe({"loss_type": "bnpo", "epsilon": 0.2, "epsilon_high": 0.2}, {"eps": 1e-4}),
        source="Schulman et al. 2017 (PPO); Ye et al. 2020 (dual clip); verl 'vanilla'",
    ),
    ppo_spec(
        name='ppo_dual_clip',
        advantage='grpo',
        params=dict(eps_low=0.2, eps_high=0.2, dual_clip=3.0, kl_beta=0.0, eps=1e-06),
        advantage_params=('eps',),
        aggregation='token-mean',
        equation='PPO-clip, then min(loss, -cA) for A<0 (c = 3)',
        verl=VerlRecipe("vanilla", "grpo", dict(VERL_PPO, clip_ratio_c=3.0)),
        source="Ye et al. 2020; verl 'vanilla' with clip_ratio_c = 3",
    ),
    ppo_spec(
        name='grpo',
        advantage='grpo',
        params=dict(eps_low=0.2, eps_high=0.2, dual_clip=None, kl_beta=0.0, eps=1e-06),
        advantage_params=('eps',),
        aggregation='seq-mean-token-mean',
        equation='PPO-clip on (r - mean)/(std + eps); optional k3 KL to a reference (kl_beta)',
        verl=VerlRecipe("vanilla", "grpo", dict(VERL_PPO, loss_agg_mode="seq-mean-token-mean")),
        trl=TrlRecipe({"loss_type": "grpo", "epsilon": 0.2, "epsilon_high": 0.2}, {"eps": 1e-4}),
        source="Shao et al. 2024 (DeepSeekMath); verl 'grpo' advantage",
    ),
    ppo_spec(
        name='dr_grpo',
        advantage='mean',
        params=dict(eps_low=0.2, eps_high=0.2, dual_clip=None, kl_beta=0.0, norm_constant=None),
        aggregation='seq-mean-token-sum-norm',
        equation='PPO-clip on r - mean; token sum / constant',
        verl=VerlRecipe("vanilla", "grpo", dict(VERL_PPO, loss_agg_mode="seq-mean-token-sum-norm"),
                        dict(VERL_MEAN_ADVANTAGE)),
        trl=TrlRecipe({"loss_type": "dr_grpo", "epsilon": 0.2, "epsilon_high": 0.2, "scale_rewards": "none"}),
        source='Liu et al. 2025 (Dr. GRPO)',
    ),
    ppo_spec(
        name='dapo',
        advantage='grpo',
        params=dict(eps_low=0.2, eps_high=0.28, dual_clip=None, kl_beta=0.0, eps=1e-06),
        advantage_params=('eps',),
        aggregation='token-mean',
        equation='PPO-clip with clip-higher (0.2, 0.28), token-mean',
        verl=VerlRecipe("vanilla", "grpo", dict(VERL_PPO, clip_ratio_high=0.28)),
        trl=TrlRecipe({"loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.28}, {"eps": 1e-4}),
        source='Yu et al. 2025 (DAPO)',
    ),
    ObjectiveSpec(
        name='gspo',
        loss=L.gspo_loss,
        advantage='grpo',
        params=dict(eps_low=0.0003, eps_high=0.0004, eps=1e-06),
        advantage_params=('eps',),
        aggregation='seq-mean-token-mean',
        family='ratio',
        weight=h_ppo,
        target_kind='lp',
        sequence_ratio=True,
        clip=clip_range,
        equation='PPO-clip on the length-normalized sequence ratio exp(mean_t s_t)',
        nominal='greedy within a sequence trust region',
        induced=_LP,
        verl=VerlRecipe("gspo", "grpo",
                        dict(clip_ratio_low=3e-4, clip_ratio_high=4e-4, loss_agg_mode="seq-mean-token-mean")),
        trl=TrlRecipe({"loss_type": "grpo", "importance_sampling_level": "sequence", "epsilon": 3e-4,
                       "epsilon_high": 4e-4}, {"eps": 1e-4}),
        source="Zheng et al. 2025 (GSPO); verl 'gspo'",
    ),
    _CISPO,
    # the one-sided bound recommended at scale: CISPO's ratio weight truncated at 5, no lower end
    dataclasses.replace(
        _CISPO,
        name='cispo_scalerl',
        verl=None,  # runs as zoo_cispo_scalerl
        trl=TrlRecipe({"loss_type": "cispo", "epsilon_high": 5.0}, {"eps": 1e-4}),
        params=dict(eps_low=None, eps_high=4.0, eps=1e-06),
        equation='-sg(min(u, 1+e_h)) A log pi, 1 + e_h = 5 (no lower clip)',
        nominal='greedy (truncated IS policy gradient)',
        source="Khatri et al. 2025 (ScaleRL, arXiv 2510.13786): CISPO with a one-sided truncation; "
        "TRL loss_type='cispo' with epsilon_high = 5",
    ),
    ObjectiveSpec(
        name='tis',
        loss=L.decoupled_ppo_loss,
        advantage='grpo',
        params=dict(eps_low=0.2, eps_high=0.2, is_cap=2.0, eps=1e-06),
        advantage_params=('eps',),
        aggregation='token-mean',
        family='ratio',
        weight=_h_decoupled,
        face_point=_t_fill_tis,
        target_kind='kkt',
        needs=('prox',),
        clip=clip_range,
        equation='min(pi_prox/mu, C) * PPO-clip(pi/pi_prox)',
        nominal='greedy within a trust region',
        induced=(
            "with pi_prox = pi: weight min(u, C) A, CISPO's with 1+e_h = C: u = C A / kappa on arms with A > "
            'kappa; tied arms at A = kappa: a face (reported as a set), the flow fills them to u = C in '
            'decreasing mu'
        ),
        verl=VerlRecipe("vanilla", "grpo", dict(VERL_PPO),
                        dict(_VERL_IS, **{"rollout_correction.rollout_is_threshold": 2.0})),
        source='Yao et al. 2025 (truncated importance sampling); verl rollout correction',
    ),
    ObjectiveSpec(
        name='areal',
        loss=L.decoupled_ppo_loss,
        advantage='grpo',
        params=dict(eps_low=0.2, eps_high=0.2, is_cap=None, eps=1e-06),
        advantage_params=('eps',),
        aggregation='token-mean',
        family='ratio',
        weight=_h_decoupled,
        closed_form=_t_vertex,
        face_point=_t_fill_tis,
        target_kind='vertex',
        needs=('prox',),
        clip=clip_range,
        equation='(pi_prox/mu) * PPO-clip(pi/pi_prox)',
        nominal='greedy within a trust region',
        induced='with pi_prox = pi: weight u A, vertex at argmax A',
        verl=VerlRecipe("vanilla", "grpo", dict(VERL_PPO),
                         dict(_VERL_IS, **{"rollout_correction.rollout_is_threshold": math.inf})),
        source='Fu et al. 2025 (AReaL decoupled PPO)',
    ),
    ObjectiveSpec(
        name='sapo',
        loss=L.sapo_loss,
        advantage='grpo',
        params=dict(tau_pos=1.0, tau_neg=1.05, eps=1e-06),
        advantage_params=('eps',),
        aggregation='seq-mean-token-mean',
        family='ratio',
        weight=_h_sapo,
        target_kind='numerical',
        equation='-(4/tau) sigmoid(tau (u - 1)) A, tau = tau_pos (A > 0) or tau_neg',
        nominal='greedy within a soft trust region',
        induced='numerical (explicit Euler on the flow)',
        # the zoo's tau_pos / tau_neg are actor.tau_pos / actor.tau_neg (TRL: sapo_temperature_pos / _neg); verl's
        # sapo ignores loss_agg_mode and always reduces with seq-mean-token-mean (the zoo's), set so the logs say so
        verl=VerlRecipe("sapo", "grpo", dict(tau_pos=1.0, tau_neg=1.05, loss_agg_mode="seq-mean-token-mean")),
        trl=TrlRecipe({"loss_type": "sapo", "sapo_temperature_pos": 1.0, "sapo_temperature_neg": 1.05}, {"eps": 1e-4}),
        source="SAPO (soft adaptive policy optimization); verl 'sapo', TRL 'sapo'",
    ),
    ObjectiveSpec(
        name='topr',
        loss=L.topr_loss,
        advantage='raw',
        aggregation='token-mean',
        family='ratio',
        weight=_h_topr,
        closed_form=_t_topr,
        target_kind='linear',
        clip=_clip_topr,
        equation='-(1[A>=0] + 1[A<0] sg(clip(u, 0, 1))) A log pi',
        nominal='greedy',
        induced='pi ∝ mu A_+ (linear tilt on the positive arms)',
        source='Le Roux et al. 2025 (TOPR)',
    ),
    ObjectiveSpec(
        name='m2po',
        loss=L.m2po_loss,
        advantage='grpo',
        params=dict(tau=0.04, eps=1e-06),
        advantage_params=('eps',),
        aggregation='token-mean',
        family='ratio',
        weight=_h_m2po,
        weight_needs_mu=True,
        target_kind='numerical',
        couples_batch=True,
        clip=_clip_m2po,
        equation='-M u A, M drops largest s^2 until mean s^2 <= tau',
        nominal='greedy',
        induced=(
            'numerical (explicit Euler on the flow): the mask freezes arms once E[s^2] exceeds tau; tied kept'
            ' arms form a face of fixed points (reported as a set, the point not certified)'
        ),
        source=("M2PO (Zheng et al. 2025, arXiv 2510.01161) as AReaL reads it (AReaL docs): a token mask, largest "
                "s^2 dropped; the authors' own code clips instead: 'm2po_clip'"),
    ),
    ObjectiveSpec(
        name='asymre',
        loss=L.reinforce_loss,
        advantage='mean',
        params=dict(offset=0.1),
        advantage_params=('offset',),
        aggregation='token-mean',
        family='ratio-free',
        weight=h_reinforce,
        closed_form=_t_reinforce,
        target_kind='linear',
        equation='-(r - V) log pi, V = mean - offset',
        nominal='greedy (policy gradient)',
        induced='pi = (mu A - c)_+ / E_mu[A] (E_mu[A] > 0); one arm otherwise',
        verl=VerlRecipe("gpg", "zoo_mean", dict(loss_agg_mode="token-mean"), {"zoo.offset": 0.1}),
        source='Arnal et al. 2025 (asymmetric REINFORCE)',
    ),
    _kl_spec(
        name='reinforce_k1',
        params=dict(beta=0.1, kind='k1'),
        target_kind='linear',
        equation='-A log pi + beta k1(s),  k1 = -s',
        induced='pi = (mu (A + beta) - c)_+ / E_mu[A + beta]',
        source='Schulman 2020 (KL estimators); penalty to the behaviour policy',
    ),
    _kl_spec(
        name='reinforce_k2',
        params=dict(beta=0.1, kind='k2'),
        target_kind='lambert',
        equation='-A log pi + beta s^2/2',
        induced='Lambert: u = W0(eta e^{A/beta})/eta',
        verl=VerlRecipe("dro", "grpo", {"policy_loss.dro_beta": 0.1, "loss_agg_mode": "token-mean"},
                        dict(VERL_MEAN_ADVANTAGE)),
        source='Schulman 2020 (k2)',
    ),
    _kl_spec(
        name='reinforce_k3',
        params=dict(beta=0.1, kind='k3'),
        target_kind='linear',
        kappa_min=_minus_beta,
        equation='-A log pi + beta (e^s - 1 - s)',
        induced='pi = (mu (A + beta) - c)_+ / E_mu[A + beta] (same as k1)',
        source='Schulman 2020 (k3)',
    ),
    ObjectiveSpec(
        name='awr',
        loss=L.sample_weighted_ce_loss,
        advantage='mean',
        params=dict(beta=1.0, max_weight=math.inf),
        aggregation='token-mean',
        family='weighted-ce',
        signal='awr',
        weight=_h_gibbs,
        closed_form=_t_gibbs,
        target_kind='gibbs',
        equation='-exp(A/beta) log pi',
        nominal='Gibbs pi ∝ mu exp(A/beta)',
        induced='Gibbs (exact, independent of V)',
        verl=VerlRecipe("gpg", "zoo_awr", dict(loss_agg_mode="token-mean"), {"zoo.beta": 1.0}),
        source='Peng et al. 2019 (AWR)',
    ),
    ObjectiveSpec(
        name='tpo',
        loss=L.sample_weighted_ce_loss,
        advantage='zscore',
        params=dict(beta=1.0, max_weight=math.inf),
        aggregation='token-mean',
        family='weighted-ce',
        signal='tpo',
        weight=_h_tpo,
        weight_needs_mu=True,
        closed_form=_t_gibbs,
        target_kind='gibbs',
        equation='-G softmax_group(z/beta) log pi, z = z-scored reward',
        nominal='q ∝ p_old exp(z/beta)',
        induced='Gibbs in the z-scored advantage (exact)',
        verl=VerlRecipe("gpg", "zoo_tpo", dict(loss_agg_mode="token-mean"), {"zoo.beta": 1.0}),
        source='TPO (arXiv 2604.06159)',
    ),
    _regression_spec(
        name='astar_po',
        advantage='soft_value',
        params=dict(beta=0.001, beta1=0.5, anchor='reference'),
        advantage_params=('beta1',),
        needs=('ref',),
        equation='(beta2 log(pi/pi_ref) - (r - V*_beta1))^2',
        nominal='Gibbs at beta2 (near-greedy)',
        induced=_induced_soft_value,
        verl_note=("A*-PO regresses on log(pi/pi_ref), and verl's policy-loss interface does not pass the reference "
                   "log-probabilities; use 'oapl' (the same regression anchored at the behaviour policy)"),
        source='Brantley et al. 2025 (A*-PO); pi_ref = mu on the bandit',
    ),
    _regression_spec(
        name='oapl',
        advantage='soft_value',
        params=dict(beta=0.001, beta1=1.0, anchor='behaviour'),
        advantage_params=('beta1',),
        equation='(beta2 log(pi/mu) - (r - V_beta1))^2, V from the group soft value',
        nominal='Gibbs at beta2 (near-greedy)',
        induced=_induced_soft_value,
        source='OAPL: group soft value at beta1 = 1, beta2 = 1e-3',
    ),
    _regression_spec(
        name='opmd',
        advantage='mean',
        params=dict(beta=0.1, anchor='behaviour'),
        equation='(tau log(pi/mu) - (r - mean r))^2',
        nominal='Gibbs at tau',
        induced='Lambert with eta = KL(mu||pi) >= 0 (pessimistic)',
        source='Kimi k1.5 (2025) OPMD / PMD-mean',
    ),
    _regression_spec(
        name='opmd_loo',
        advantage='loo',
        params=dict(beta=0.1, anchor='behaviour'),
        equation='(tau log(pi/mu) - (r - mean_{-i} r))^2',
        nominal='Gibbs at tau',
        induced='Lambert with eta = KL(mu||pi) (population)',
        source='Kimi k1.5 OPMD, leave-one-out mean',
    ),
    _regression_spec(
        name='opmd_lme',
        advantage='soft_value',
        params=dict(beta=0.1, beta1=0.1, anchor='behaviour'),
        advantage_params=('beta1',),
        ties={'beta1': 'beta'},
        equation='(tau log(pi/mu) - (r - tau log mean exp(r/tau)))^2 (tau = beta; beta1 = beta unless given)',
        nominal='Gibbs at tau',
        induced=_induced_soft_value,
        source='Kimi k1.5 OPMD, log-mean-exp baseline',
    ),
    _regression_spec(
        name='shifted_regression',
        advantage='shifted_mean',
        params=dict(beta=0.1, delta=1.0, anchor='behaviour'),
        advantage_params=('beta', 'delta'),
        equation='(beta log(pi/mu) - (r - mean r + delta beta))^2',
        nominal='Gibbs at beta',
        induced='Lambert with eta = delta + KL(mu||pi) >= delta (positive by construction)',
        source='arXiv 2605.28150 (beta-shifted-mean advantage)',
    ),
    # The optimistic control. delta = 0.5, not 1: on a group of equal rewards (the commonest group
    # under binary rewards) eta = -delta and eta e^{A/beta} = -delta e^{-delta}, which reaches the W0
    # branch point -1/e at delta = 1; at 0.5 the principal-branch solution still exists there.
    _regression_spec(
        name='opmd_above',
        advantage='soft_value',
        params=dict(beta=0.1, beta1=0.1, delta=0.5, anchor='behaviour'),
        advantage_params=('beta1', 'beta', 'delta'),
        ties={'beta1': 'beta'},
        equation='(beta log(pi/mu) - (r - V_beta1 - delta beta))^2, V_beta1 the group soft value',
        nominal='Gibbs at beta',
        induced=_induced_soft_value,
        source='arXiv 2605.28150 (control: V above the soft value)',
    ),
)

for _spec in BUILTIN_SPECS:
    register_objective(_spec)
del _spec
