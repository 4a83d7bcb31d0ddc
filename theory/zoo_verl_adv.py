r"""verl 0.9.1's own advantage estimators as zoo objectives, each with the policy loss verl pairs it with.

verl ships these estimators (``verl/trainer/ppo/core_algos.py``, ``@register_adv_est``);
their group and population forms are in ``theory.advantages`` (the module table says
what each population form is and why). Each objective here is that estimator with
the policy loss verl uses by default, the vanilla PPO clip
(``policy_loss.loss_mode=vanilla``, clip 0.2, token-mean), except GPG, whose paper
and verl recipe use the ratio-free REINFORCE loss ``gpg``
(:math:`-A\log\pi`). ReMax's paper (Li et al. 2023) trains with plain REINFORCE; verl
runs it under the PPO clip, which is the same gradient on the first update of a
batch (:math:`u = 1`) and clips the later ones: verl's pairing is kept.

Induced targets. Under the PPO clip the target is the clip LP's optimal face for
the estimator's population advantage (set-valued on the clip plateaus,
``theory.induced``), as for ``ppo``. GPG's REINFORCE weight :math:`h = A` with
:math:`E_\mu[A] = 0` sits at the linear family's transition: the target is the
vertex :math:`\arg\max_y \mu_y (r_y - E_\mu r)` (``theory.zoo._linear_threshold``;
:math:`\alpha` and :math:`f` scale :math:`A` and do not move it).

verl's ``grpo_vectorized`` and ``rloo_vectorized`` are the zoo's ``grpo`` and ``loo``
estimators (objectives ``grpo`` / ``ppo`` with verl's ``grpo``), and
``tir_optimal_token_baseline`` is ``optimal_token_baseline`` on contiguous response
masks; they get no objective of their own.

Inputs the zoo's trainers do not pass are declared, not defaulted: ``lengths='equal'``
(every completion of one length, the one-token bandit; verl weighs by the actual
lengths, which ``theory.advantages.group_advantage`` takes as an array), and the
group forms of ``remax`` (the greedy completion's reward) and
``optimal_token_baseline`` (the score norms :math:`\sum_t 1 - 2\pi_t + \sum_v\pi_v^2`)
need inputs from the policy that the zoo's trainers do not compute: those two run on
the bandit theory (their population forms derive them from :math:`\mu`) and in verl,
and a zoo trainer refuses them with the error naming the input.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .objectives import ObjectiveSpec, Param, register_objective
from .recipes import VerlRecipe
from . import losses as L
from .zoo import VERL_PPO, argmax_set, h_reinforce, ppo_spec

__all__ = ["SPECS"]

_PPO_PARAMS = dict(eps_low=0.2, eps_high=0.2, dual_clip=None, kl_beta=0.0)
_CORE = "verl 0.9.1 verl/trainer/ppo/core_algos.py"


def _verl_ppo(name, advantage, params=(), adv_params=(), algorithm=None, actor=None, induced="", **fields):
    """verl's estimator ``advantage`` under verl's default policy loss, the vanilla PPO clip (0.2, token-mean)."""
    spec = ppo_spec(name, advantage=advantage, params=dict(_PPO_PARAMS, **dict(params)),
                     advantage_params=tuple(adv_params), aggregation="token-mean",
                     verl=VerlRecipe("vanilla", advantage, dict(VERL_PPO, **(actor or {})), dict(algorithm or {})),
                     **fields)
    return dataclasses.replace(spec, induced=f"{spec.induced}; {induced}")


def _t_centred_vertex(mu, adv, p):
    r"""Target of :math:`h = A` when :math:`E_\mu[A] = 0` for every bandit (GPG): the vertex :math:`\arg\max_y \mu_yA_y`.

    The weight does not depend on :math:`u`, so :math:`\kappa = E_\mu[A] = 0` along the
    whole flow and the logits move at the constant rates :math:`\mu_zA_z`: the flow ends
    at the arm of the largest rate; tied arms keep their logit differences, so their
    share is :math:`\mu` restricted to them (``theory.zoo._linear_threshold`` at the
    transition, taken here without testing :math:`E_\mu[A] = 0` against rounding).
    """
    top = argmax_set(mu, mu * adv)
    on_top = np.where(top, mu, 0.0)
    return on_top / on_top.sum(-1, keepdims=True)


#: verl's estimators, one objective each.
SPECS: tuple[ObjectiveSpec, ...] = (
    _verl_ppo(
        "remax", "remax",
        equation="PPO-clip on A = r - r(greedy completion)",
        induced="A = r - r_{argmax mu} (ties: the first arm)",
        source=f"Li et al. 2023 (ReMax, arXiv 2310.10505); {_CORE} compute_remax_outcome_advantage",
    ),
    _verl_ppo(
        "reinforce_plus_plus", "reinforce_plus_plus", params=dict(lengths="equal"), adv_params=("lengths",),
        algorithm={"gamma": 1.0},
        equation="PPO-clip on A = whiten_batch(r) (token-weighted mean and sd over the batch)",
        induced="one prompt: A = (r - m_L)/sqrt(v_L + 1e-8), the z-score at equal lengths",
        source=f"Hu 2025 (REINFORCE++, arXiv 2501.03262); {_CORE} compute_reinforce_plus_plus_outcome_advantage",
    ),
    _verl_ppo(
        "reinforce_plus_plus_baseline", "reinforce_plus_plus_baseline", params=dict(lengths="equal"),
        adv_params=("lengths",),
        equation="PPO-clip on A = whiten_batch(r - group mean r)",
        induced="one prompt: the group mean drops out, the same A as reinforce_plus_plus",
        source=f"Hu 2025 (REINFORCE++-baseline, arXiv 2501.03262); {_CORE} "
               "compute_reinforce_plus_plus_baseline_outcome_advantage",
    ),
    _verl_ppo(
        "opo", "opo", params=dict(lengths="equal"), adv_params=("lengths",),
        equation="PPO-clip on A = r - sum_i L_i r_i / sum_i L_i (length-weighted group baseline)",
        induced="V = E_mu[L r]/E_mu[L], the mean at equal lengths",
        source=f"Hao et al. 2025 (OPO, arXiv 2505.23585); {_CORE} compute_opo_outcome_advantage",
    ),
    _verl_ppo(
        "gdpo", "gdpo", params=dict(lengths="equal", eps=1e-6), adv_params=("eps", "lengths"),
        equation="PPO-clip on A = whiten_batch(sum_c w_c grpo(r_c)) (one component here: r)",
        induced="one prompt, one component: (z - m)/sqrt(v + 1e-8), z = (r - E r)/(sd r + eps)",
        source=f"GDPO (arXiv 2601.05242); {_CORE} compute_gdpo_outcome_advantage",
    ),
    _verl_ppo(
        "grpo_passk", "grpo_passk", params=dict(eps=1e-6), adv_params=("eps",),
        equation="PPO-clip on A_best = (r_(1) - r_(2))/(std + eps), 0 for the others",
        induced=("the population advantage is 0 on the support (G -> inf), so every policy on it is "
                            "stationary: the finite-G signal is conditional_group_advantage"),
        source=f"pass@k training (arXiv 2503.19595); {_CORE} compute_grpo_passk_outcome_advantage",
    ),
    _verl_ppo(
        "optimal_token_baseline", "optimal_token_baseline", params=dict(eps=1e-8), adv_params=("eps",),
        actor={"calculate_sum_pi_squared": True},
        equation="PPO-clip on A = r - sum_i W_i r_i/(sum_i W_i + eps), W_i = sum_t ||score_t||^2",
        induced="V = E_mu[w r]/E_mu[w], w_y = ||e_y - mu||^2 = 1 - 2 mu_y + sum mu^2",
        source=f"optimal token baseline; {_CORE} compute_optimal_token_baseline_advantage "
               "(and compute_multi_turn_optimal_token_baseline_advantage, the same on contiguous masks)",
    ),
    ObjectiveSpec(
        name="gpg",
        loss=L.reinforce_loss,
        advantage="gpg",
        params=dict(f_norm=Param(1.0, low=0.0, low_open=True, doc="GPG's normalizer of the advantage")),
        advantage_params=("f_norm",),
        aggregation="token-mean",
        family="ratio-free",
        weight=h_reinforce,
        closed_form=_t_centred_vertex,
        target_kind="vertex",
        equation="-A log pi, A = alpha (r - mean r)/f_norm, alpha = N/#{r != 0} over the batch",
        nominal="greedy (policy gradient)",
        induced="vertex at argmax mu (r - E_mu r): E_mu[A] = 0, the linear family's transition",
        verl=VerlRecipe("gpg", "gpg", dict(loss_agg_mode="token-mean")),
        source=f"Chu et al. 2025 (GPG, arXiv 2504.02546); {_CORE} compute_gpg_outcome_advantage and "
               "compute_policy_loss_gpg",
    ),
)

for _spec in SPECS:
    register_objective(_spec)
del _spec
