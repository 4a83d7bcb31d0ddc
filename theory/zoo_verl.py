r"""verl 0.9.1's remaining built-in policy losses as zoo objectives: DPPO (TV, KL), GMPO, Clip-Cov, KL-Cov.

Each is one :class:`theory.objectives.ObjectiveSpec` in :data:`SPECS`, registered at import of
``theory.objectives``; its loss is in ``theory.losses`` and equals verl's
(``verl/trainer/ppo/core_algos.py``, ``@register_policy_loss``) in value and gradient
(``tests/test_zoo_verl_losses.py``). Weights, clip rules and helpers of ``theory.zoo`` are reused.

Population readings (a bandit: one token per arm, behaviour :math:`\mu`, :math:`u = \pi/\mu`):

* **DPPO** masks a token that left a divergence ball around :math:`\mu(y)` in the direction its
  advantage pushes it; the ball is in probabilities, so the weight needs :math:`\mu`:
  :math:`h = M(\pi_y, \mu_y, A)\min(u, C)A`. Without the truncation (:math:`C = \infty`)
  :math:`\mu h = \pi\,\partial J/\partial\pi` for the concave
  :math:`J(\pi) = \sum_{A>0}A\min(\pi, b^+) + \sum_{A<0}A\max(\pi, b^-)` (:math:`b^\pm` the ball's
  edges: :math:`\mu\pm\delta` for TV, the binary-KL roots for KL), so the flow is gradient ascent
  on :math:`J` and ends on the optimal face of that linear program: a set, not a point.
* **GMPO** on one-token sequences is PPO-clip with the ratio range :math:`[e^{-\epsilon_l}, e^{\epsilon_h}]`.
* **Clip-Cov** detaches :math:`\max(1, \lfloor rN\rfloor)` tokens drawn from the candidates
  :math:`C` (covariance :math:`(A - E_\mu A)(\log\pi - E_\mu\log\pi)` in ``(cov_low, cov_high)``,
  not clipped by PPO). The expected gradient of a random mask is the gradient with its expectation,
  so as :math:`N\to\infty` an arm of :math:`C` keeps the share :math:`1 - \min(1, r/\mu(C))`:
  :math:`h = h_{PPO}(u, A)\,(1 - \mathbb 1[y\in C]\min(1, r/\mu(C)))`.
* **KL-Cov** adds :math:`\beta|s|` on the top-:math:`r` share of tokens by covariance; in the
  population the arms fill that share in decreasing covariance, arm :math:`y` contributing
  :math:`q_y = \mathrm{clip}((r - \mu(\text{arms above } y))/\mu_y, 0, 1)`:
  :math:`h = uA - \beta q\,\mathrm{sgn}(\log u)`.

The batch-coupled weights (Clip-Cov, KL-Cov, and DPPO's through :math:`\mu`) are the limits of
the loss's autograd on a batch whose token counts are :math:`N\mu` (checked in the tests).

verl's ``bypass_mode`` is not a loss of its own: it sets ``old_log_prob`` to the rollout's
log-probabilities and dispatches to PPO-clip (``loss_type='ppo_clip'``: the zoo's ``ppo``) or to
REINFORCE with verl's rollout importance weights (``loss_type='reinforce'``; token-level weights
truncated at :math:`C` give :math:`-\mathrm{sg}(\min(u, C))A\log\pi`, the zoo's ``cispo`` with no
lower clip and :math:`1 + \epsilon_h = C`), both checked against verl in the tests.

The zoo's clip rules see token log-ratios only, so DPPO (whose mask reads probabilities) has none,
and Clip-Cov's reports PPO's clipped tokens, not its random detached ones.
"""

from __future__ import annotations

import math

import torch

from . import losses as L
from .objectives import ObjectiveSpec, Param, register_objective
from .recipes import VerlRecipe
from .zoo import clip_range, h_ppo

__all__ = ["SPECS"]

_POS = dict(low=0.0, low_open=True, high_open=True)


# ---------------------------------------------------------------------------
# population weights h(u, A, params, mu): torch, elementwise, float64
# ---------------------------------------------------------------------------


def _log_pi(u, mu):
    """(log pi, log mu, support) from u = pi/mu and mu (arms outside the support: log = -inf)."""
    mu = torch.as_tensor(mu, dtype=u.dtype).expand_as(u)
    sup = mu > 0
    log_mu = torch.where(sup, torch.log(torch.where(sup, mu, 1.0)), -math.inf)
    return torch.log(u) + log_mu, log_mu, sup


def _h_dppo(u, a, p, mu):
    """DPPO's mask on the arm's probabilities times the truncated ratio weight."""
    log_pi, log_mu, sup = _log_pi(u, mu)
    keep = L.dppo_mask(log_pi, log_mu, a, divergence=p["divergence"], delta_low=p["delta_low"],
                       delta_high=p["delta_high"])
    w = u if p["is_cap"] is None else u.clamp(max=p["is_cap"])
    return torch.where(sup, keep * w * a, torch.zeros_like(u))


def _ratio_range(p) -> dict:
    """GMPO's log-space clip as PPO's ratio clip: [e^-eps_l, e^eps_h] = [1 - eps_low, 1 + eps_high]."""
    return {"eps_low": -math.expm1(-p["log_eps_low"]), "eps_high": math.expm1(p["log_eps_high"])}


def _h_geo_mean(u, a, p, mu=None):
    return h_ppo(u, a, _ratio_range(p))


def _population_cov(u, a, mu):
    """(A - E_mu A)(log pi - E_mu log pi) per arm, and the support (the population covariance_score)."""
    log_pi, _, sup = _log_pi(u, mu)
    m = torch.where(sup, torch.as_tensor(mu, dtype=u.dtype).expand_as(u), torch.zeros_like(u))
    a = a.expand_as(u)
    lp = torch.where(sup, log_pi, torch.zeros_like(u))
    return (a - (m * a).sum(-1, keepdim=True)) * (lp - (m * lp).sum(-1, keepdim=True)), m, sup


def _h_clip_cov(u, a, p, mu):
    """PPO's weight; the covariance band C keeps the share 1 - min(1, r / mu(C))."""
    clip = {"eps_low": p["eps_low"], "eps_high": p["eps_high"]}
    cov, m, sup = _population_cov(u, a, mu)
    a = a.expand_as(u)
    by_clip = ((a > 0) & (u > 1 + p["eps_high"])) | ((a < 0) & (u < 1 - p["eps_low"]))
    cand = sup & ~by_clip & (cov > p["cov_low"]) & (cov < p["cov_high"])
    mass = torch.where(cand, m, torch.zeros_like(m)).sum(-1, keepdim=True)
    share = (p["cov_ratio"] / mass.clamp_min(1e-300)).clamp(max=1.0)
    return h_ppo(u, a, clip) * (1.0 - torch.where(cand, share, torch.zeros_like(u)))


def _h_kl_cov(u, a, p, mu):
    """u A - beta q sgn(log u), q the arm's share of the top-r covariance mass."""
    cov, m, sup = _population_cov(u, a, mu)
    cov = torch.where(sup, cov, torch.full_like(cov, -math.inf))
    order = torch.argsort(cov, dim=-1, descending=True, stable=True)
    m_sorted = torch.gather(m, -1, order)
    before = torch.cumsum(m_sorted, -1) - m_sorted
    q_sorted = ((p["cov_ratio"] - before) / m_sorted.clamp_min(1e-300)).clamp(0.0, 1.0)
    q = torch.zeros_like(u).scatter(-1, order, q_sorted)
    return u * a - p["kl_coef"] * torch.where(sup, q, torch.zeros_like(q)) * torch.sign(torch.log(u))


# ---------------------------------------------------------------------------
# clip rules: clip(s, adv, mask, params) -> bool (..., T)
# ---------------------------------------------------------------------------


def _clip_geo_mean(s, a, m, p):
    """Tokens whose log-ratio GMPO's one-sided clip holds: s > eps_h with A > 0, s < -eps_l with A < 0."""
    return ((a > 0) & (s > p["log_eps_high"])) | ((a < 0) & (s < -p["log_eps_low"]))


# ---------------------------------------------------------------------------
# the specs
# ---------------------------------------------------------------------------

_DELTA = Param(0.2, **_POS, doc="DPPO's divergence threshold (verl clip_ratio_low / clip_ratio_high)")
_LOG_EPS = Param(0.4, **_POS, doc="GMPO's clip of the token log-ratio (verl clip_ratio_low / clip_ratio_high)")
_COV_RATIO = Param(2e-4, low=0.0, high=1.0, low_open=True, doc="share of the batch's tokens Clip-Cov / KL-Cov pick")

_DPPO_LP = ("set-valued: the optimal face of the LP max_pi sum_{A>0} A min(pi, b+) + sum_{A<0} A max(pi, b-) "
            "({ball}); reported: the point explicit Euler reaches on it (not certified as the flow's point)")


def _dppo_spec(name, divergence, ball, source):
    return ObjectiveSpec(
        name=name,
        loss=L.dppo_loss,
        advantage="grpo",
        params=dict(divergence=divergence, delta_low=_DELTA, delta_high=_DELTA, is_cap=3.0, eps=1e-06),
        advantage_params=("eps",),
        aggregation="token-mean",
        family="ratio",
        weight=_h_dppo,
        weight_needs_mu=True,
        target_kind="numerical",
        equation=f"-M sg(min(u, C)) A log pi, M: binary {divergence.upper()}(pi(y), mu(y)) within (d_l, d_h) "
                 "on the side A pushes",
        nominal="greedy within a divergence trust region",
        induced=_DPPO_LP.replace("{ball}", ball),
        verl=VerlRecipe(name, "grpo", dict(clip_ratio_low=0.2, clip_ratio_high=0.2, clip_ratio_c=3.0,
                                           loss_agg_mode="token-mean")),
        source=source,
    )


SPECS: tuple[ObjectiveSpec, ...] = (
    _dppo_spec("dppo_tv", "tv", "b+- = mu +- delta",
               "Qi et al. 2026 (DPPO-Binary-TV, arXiv 2602.04879); verl 'dppo_tv' "
               "(core_algos.compute_policy_loss_dppo_tv), verl's defaults"),
    _dppo_spec("dppo_kl", "kl", "b+- = the edges of the binary-KL ball KL(Ber(mu)||Ber(pi)) <= delta",
               "Qi et al. 2026 (DPPO-Binary-KL, arXiv 2602.04879); verl 'dppo_kl' "
               "(core_algos.compute_policy_loss_dppo_kl), verl's defaults"),
    ObjectiveSpec(
        name="gmpo",
        loss=L.geo_mean_loss,
        advantage="grpo",
        params=dict(log_eps_low=_LOG_EPS, log_eps_high=_LOG_EPS, eps=1e-06),
        advantage_params=("eps",),
        aggregation="sequence",
        level="sequence",
        family="ratio",
        weight=_h_geo_mean,
        target_kind="numerical",
        clip=_clip_geo_mean,
        equation="-mean_t(A) exp(mean_t sgn(A) min(sgn(A) s, sgn(A) clip(s, -e_l, e_h)))",
        nominal="greedy within a trust region (geometric-mean ratio)",
        induced=("one-token sequences: PPO-clip's LP face with the ratio range [e^-e_l, e^e_h] (set-valued); "
                 "reported: the point explicit Euler reaches on it"),
        verl=VerlRecipe("geo_mean", "grpo", dict(clip_ratio_low=0.4, clip_ratio_high=0.4)),
        source="Zhao et al. 2025 (GMPO, arXiv 2507.20673); verl 'geo_mean' (core_algos.compute_policy_loss_geo_mean); "
               "TRL ships it only as trl.experimental.gmpo, not as a GRPOConfig loss_type",
    ),
    ObjectiveSpec(
        name="clip_cov",
        loss=L.clip_cov_loss,
        advantage="grpo",
        params=dict(eps_low=0.2, eps_high=0.2, cov_ratio=_COV_RATIO, cov_low=1.0, cov_high=5.0, eps=1e-06),
        advantage_params=("eps",),
        aggregation="token-mean",
        family="ratio",
        weight=_h_clip_cov,
        weight_needs_mu=True,
        target_kind="numerical",
        couples_batch=True,
        clip=clip_range,
        equation="PPO-clip, the loss of max(1, rN) random tokens with covariance in (lb, ub) detached",
        nominal="greedy within a trust region (entropy kept by detaching high-covariance tokens)",
        induced=("numerical (explicit Euler on the flow), not certified: PPO's weight times 1 - min(1, r/mu(C)) on the "
                 "covariance band C; at r -> 0 PPO-clip's LP face"),
        verl=VerlRecipe("clip_cov", "grpo", {"clip_ratio_low": 0.2, "clip_ratio_high": 0.2,
                                             "policy_loss.clip_cov_ratio": 2e-4, "policy_loss.clip_cov_lb": 1.0,
                                             "policy_loss.clip_cov_ub": 5.0, "loss_agg_mode": "token-mean"}),
        source="Cui et al. 2025 (Clip-Cov, arXiv 2505.22617); verl 'clip_cov' (core_algos.compute_policy_loss_clip_cov)",
    ),
    ObjectiveSpec(
        name="kl_cov",
        loss=L.kl_cov_loss,
        advantage="grpo",
        params=dict(cov_ratio=_COV_RATIO, kl_coef=Param(0.1, **_POS, doc="KL-Cov's coefficient"),
                    eps=1e-06),
        advantage_params=("eps",),
        aggregation="token-mean",
        family="ratio",
        weight=_h_kl_cov,
        weight_needs_mu=True,
        target_kind="numerical",
        couples_batch=True,
        equation="-u A + beta |s| on the top max(1, rN) tokens by covariance",
        nominal="greedy (entropy kept by a KL pull on high-covariance tokens)",
        induced=("numerical (explicit Euler on the flow), not certified: weight u A - beta q sgn(s), q the arm's share "
                 "of the top-r covariance mass"),
        verl=VerlRecipe("kl_cov", "grpo", {"policy_loss.kl_cov_ratio": 2e-4, "policy_loss.ppo_kl_coef": 0.1,
                                           "loss_agg_mode": "token-mean"}),
        source="Cui et al. 2025 (KL-Cov, arXiv 2505.22617); verl 'kl_cov' (core_algos.compute_policy_loss_kl_cov; "
               "ppo_kl_coef = verl's default 0.1)",
    ),
)

for _spec in SPECS:
    register_objective(_spec)
del _spec
