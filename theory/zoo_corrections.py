r"""The trainers' off-policy corrections as zoo objectives, and TRL's VESPO and LUSPO.

verl 0.9 (``algorithm.rollout_correction``) and TRL 1.16 (``vllm_importance_sampling_*``,
``off_policy_mask_threshold``) multiply a base loss by a weight or a 0/1 mask computed from
the rollout (behaviour) log-probabilities :math:`\mu` and the trainer's old (proximal) ones
:math:`\pi_{prox}`, or the current :math:`\pi`. On a bandit (:math:`\pi_{prox} = \pi`,
:math:`u = \pi/\mu`) each changes the population weight :math:`h(u, A)` of the base objective,
and so its induced target.

**Why one parametrized family.** A correction composes with any base surrogate and with the
other corrections (verl applies its IS weight and its rejection mask together; TRL its vLLM
ratio and the off-policy sequence mask together), so the corrections are the parameters of one
loss, :func:`theory.losses.rollout_corrected_loss`, shared by every spec here; each named spec
is one published preset of it, and any other combination is ``make_objective(preset,
**overrides)``. Two things cannot be parameters, because a spec's ``needs`` and recipes are
fixed: the **mode** (decoupled needs :math:`\pi_{prox}`; bypass does not), so each spec fixes
``bypass``. The parameters, all of them on every spec of the family:

=============  ============================================  =========================================
parameter      values                                        verl / TRL setting
=============  ============================================  =========================================
``bypass``     fixed per spec                                ``rollout_correction.bypass_mode``
``surrogate``  ``ppo_clip`` / ``reinforce``                  ``rollout_correction.loss_type`` (bypass)
``is_level``   None / ``token`` / ``sequence``               ``rollout_is``; TRL ``{token,sequence}_*``
``is_mode``    ``truncate`` / ``mask``                       float threshold (TIS) / ``"lo_hi"`` (IcePop);
                                                             TRL ``*_truncate`` / ``*_mask``
``is_low``,    bounds of the weight (None: absent)           ``rollout_is_threshold``; TRL
``is_high``                                                  ``vllm_importance_sampling_clip_min/_max``
``rs``         None or one of ``theory.losses.RS_OPTIONS``   ``rollout_rs`` (one option)
``rs_low``,    bounds (k1: ratio bounds on mu/pi_prox;       ``rollout_rs_threshold`` (``"lo_hi"`` or
``rs_high``    k2, k3: upper bound only)                     a float)
``opsm_delta`` None or :math:`\delta > 0`                    TRL ``off_policy_mask_threshold``
=============  ============================================  =========================================

Not modelled: verl's ``rollout_is_batch_normalize`` (divides by the batch mean of the weight:
couples the batch), several comma-separated ``rollout_rs`` options at once (their product), and
TRL's vLLM ratio on a sequence objective's per-sequence loss.

**Population weights** (bandit, one-token sequences, so token and sequence levels coincide):
decoupled, any base: :math:`h = w(u)K(u)A` (the base ratio :math:`\pi/\pi_{prox}` is 1);
bypass PPO-clip: :math:`h = K(u)h_{PPO}(u, A)`; bypass REINFORCE: :math:`h = w(u)K(u)A`;
the off-policy sequence mask multiplies by :math:`\mathbb 1[A \ge 0 \lor -\log u \le \delta]`.
Truncation :math:`w = \min(u, C)` gives TIS's target (``theory.zoo``'s ``tis``): certified by
the KKT solver, with the greedy fill on tied best arms. The masks make :math:`h` vanish outside
a window of :math:`u`, so arms freeze where they leave it: stationary points form sets, the
target is the explicit-Euler flow's point. Caveat, open: that route's certificate (the iterates
stopped and the point is stationary) also accepts a point an explicit step reached by jumping across
a window narrower than the step (``geo_rs``'s :math:`\pm 0.1\%`, where every arm then has
:math:`h = 0`): the masked presets' targets are not certified, whatever ``converged`` says.
On the token MDP (``sims.token_mdp``) the token level applies the bandit target state by state
and the sequence level over the leaves with :math:`u = \prod_t u_t`; they differ
(``tests/test_zoo_corrections.py``).

VESPO and LUSPO are TRL loss types: :func:`theory.losses.vespo_loss`, and GSPO's loss summed
over each sequence's tokens (LUSPO's length scaling is exactly that aggregation).
"""

from __future__ import annotations


import torch

from . import losses as L
from .objectives import ObjectiveSpec, Param, register_objective
from .recipes import TrlRecipe, VerlRecipe
from .zoo import VERL_PPO, clip_range, greedy_fill, h_ppo

__all__ = ["SPECS"]

_POS = dict(low=0.0, low_open=True, high_open=True)


def _family_params(bypass: bool, **preset) -> dict:
    """Every parameter of the correction family, at the preset's values (the rest off)."""
    params = dict(
        bypass=Param(bypass, choices=(bypass,), doc="verl's bypass_mode (fixed: it decides whether pi_prox is needed)"),
        surrogate=Param("ppo_clip", choices=("ppo_clip", "reinforce"), doc="base loss (verl's bypass loss_type)"),
        eps_low=0.2, eps_high=0.2,
        is_level=Param(None, choices=(None, "token", "sequence"), doc="level of the IS weight (None: no weight)"),
        is_mode=Param("truncate", choices=("truncate", "mask"), doc="truncate the IS weight, or zero it outside"),
        is_low=Param(None, **_POS, doc="lower bound of the IS weight (None: none)"),
        is_high=Param(2.0, **dict(_POS, high_open=False), finite=False, doc="upper bound of the IS weight"),
        rs=Param(None, choices=(None,) + L.RS_OPTIONS, doc="verl's rejection-sampling option (None: none)"),
        rs_low=Param(None, **_POS, doc="lower ratio bound of a k1 rejection option (None: 1/rs_high)"),
        rs_high=Param(None, **_POS, doc="upper bound of the rejection statistic"),
        opsm_delta=Param(None, **_POS, doc="DeepSeek-V3.2 off-policy sequence mask threshold (None: off)"),
        eps=1e-6,
    )
    for k, v in preset.items():
        params[k] = params[k].with_default(v) if isinstance(params[k], Param) else v
    return params


def _h_corrected(u, a, p, mu=None):
    """The family's population weight (module docstring), a fast evaluation of the loss's autograd weight."""
    one = torch.ones_like(u)
    w = one
    if p["is_level"] is not None:
        inside = L._bounded(u, p["is_low"], p["is_high"])
        w = u.clamp(min=p["is_low"], max=p["is_high"]) if p["is_mode"] == "truncate" else torch.where(inside, u, 0.0)
    keep = one
    if p["rs"] is not None:  # one token: the sequence mean is the token's value over (1 + 1e-8), as verl's
        keep = L.rejection_keep(torch.log(u).unsqueeze(-1), rs=p["rs"], low=p["rs_low"], high=p["rs_high"])[..., 0]
    if p["opsm_delta"] is not None:
        keep = keep * ((a >= 0) | (-torch.log(u) <= p["opsm_delta"])).to(u.dtype)
    if p["bypass"] and p["surrogate"] == "ppo_clip":
        return keep * h_ppo(u, a, p)
    return keep * w * a


def _t_fill(mu, adv, p):
    """The flow's point on tied best arms for h = min(u, C) A (C = is_high), as for TIS."""
    return greedy_fill(mu, adv, p["is_high"])


def _correction_spec(name, *, bypass, preset, **fields):
    """One preset of the correction family (module docstring)."""
    return ObjectiveSpec(name=name, loss=L.rollout_corrected_loss, advantage="grpo",
                         params=_family_params(bypass, **preset), advantage_params=("eps",),
                         family="ratio", weight=_h_corrected, needs=() if bypass else ("prox",), **fields)


_RC = "rollout_correction."
_BYPASS_OTHER = {"actor_rollout_ref.rollout.calculate_log_probs": True}
_NUMERICAL = ("numerical (explicit Euler on the flow): the mask freezes arms where u leaves its window; "
              "tied stationary points form a set (reported as a set, the point not certified)")
_TIS_TARGET = ("weight min(u, C) A, TIS's: u = C A / kappa on arms with A > kappa; tied arms at A = kappa: a face, "
               "the flow fills them to u = C in decreasing mu")
_PAPER = "Liu et al. 2025 (When speed kills stability: RL collapse from the training-inference mismatch)"

SPECS = (
    _correction_spec(
        "seq_tis", bypass=False, preset=dict(is_level="sequence", is_high=2.0),
        aggregation="token-mean", target_kind="kkt", face_point=_t_fill,
        equation="min(prod_t pi_prox/mu, C) * PPO-clip(pi/pi_prox), C = 2",
        nominal="greedy within a trust region (sequence-corrected)", induced=_TIS_TARGET,
        verl=VerlRecipe("vanilla", "grpo", dict(VERL_PPO),
                        {_RC + "rollout_is": "sequence", _RC + "rollout_is_threshold": 2.0, _RC + "bypass_mode": False}),
        source=f"verl rollout_correction decoupled_seq_is (rollout_corr_helper.py); {_PAPER}; TRL "
               "vllm_importance_sampling_mode='sequence_truncate' (vLLM only)",
    ),
    _correction_spec(
        "icepop", bypass=False, preset=dict(is_level="token", is_mode="mask", is_low=0.5, is_high=5.0),
        aggregation="token-mean", target_kind="numerical",
        equation="pi_prox/mu * 1[0.5 <= pi_prox/mu <= 5] * PPO-clip(pi/pi_prox) (token)",
        nominal="greedy within a trust region", induced=_NUMERICAL,
        verl=VerlRecipe("vanilla", "grpo", dict(VERL_PPO),
                        {_RC + "rollout_is": "token", _RC + "rollout_is_threshold": "0.5_5.0",
                         _RC + "bypass_mode": False}),
        source="IcePop (Ling team 2025); verl rollout_correction decoupled_token_icepop; TRL "
               "vllm_importance_sampling_mode='token_mask' with clip_min 0.5, clip_max 5 (vLLM only)",
    ),
    _correction_spec(
        "seq_mis", bypass=False, preset=dict(is_level="sequence", is_mode="mask", is_high=3.0),
        aggregation="seq-mean-token-mean", target_kind="numerical",
        equation="prod_t pi_prox/mu * 1[prod_t pi_prox/mu <= 3] * PPO-clip(pi/pi_prox)",
        nominal="greedy within a trust region", induced=_NUMERICAL,
        verl_note=("verl masks a sequence IS weight only between two positive bounds ('lo_hi'); TRL's default "
                   "sequence mask has no lower bound"),
        source="TRL GRPOConfig default with vLLM: vllm_importance_sampling_mode='sequence_mask', clip_max 3 "
               "(trl/trainer/grpo_trainer.py); applied only when use_vllm",
    ),
    _correction_spec(
        "geo_rs", bypass=False, preset=dict(rs="seq_mean_k1", rs_low=0.999, rs_high=1.001),
        aggregation="token-mean", target_kind="numerical",
        equation="1[0.999 <= exp(mean_t log(mu/pi_prox)) <= 1.001] * PPO-clip(pi/pi_prox)",
        nominal="greedy within a trust region", induced=_NUMERICAL,
        verl=VerlRecipe("vanilla", "grpo", dict(VERL_PPO),
                        {_RC + "rollout_rs": "seq_mean_k1", _RC + "rollout_rs_threshold": "0.999_1.001",
                         _RC + "bypass_mode": False}),
        source=f"verl rollout_correction decoupled_geo_rs (geometric-mean rejection sampling); {_PAPER}",
    ),
    _correction_spec(
        "bypass_seq_is", bypass=True, preset=dict(surrogate="reinforce", is_level="sequence", is_high=2.0),
        aggregation="token-mean", target_kind="kkt", face_point=_t_fill,
        equation="-sg(min(prod_t pi/mu, C)) A log pi, C = 2",
        nominal="greedy (truncated IS policy gradient)", induced=_TIS_TARGET,
        verl=VerlRecipe("bypass_mode", "grpo", dict(loss_agg_mode="token-mean"),
                        {_RC + "bypass_mode": True, _RC + "loss_type": "reinforce", _RC + "rollout_is": "sequence",
                         _RC + "rollout_is_threshold": 2.0}, dict(_BYPASS_OTHER)),
        source=f"verl rollout_correction bypass_pg_is (core_algos.compute_policy_loss_bypass_mode); {_PAPER}",
    ),
    _correction_spec(
        "bypass_ppo_k3_rs", bypass=True, preset=dict(rs="seq_mean_k3", rs_high=0.01),
        aggregation="token-mean", target_kind="numerical", clip=clip_range,
        equation="1[mean_t k3(log pi/mu) <= 0.01] * PPO-clip(pi/mu)",
        nominal="greedy within a trust region", induced=_NUMERICAL,
        verl=VerlRecipe("bypass_mode", "grpo", dict(VERL_PPO),
                        {_RC + "bypass_mode": True, _RC + "loss_type": "ppo_clip", _RC + "rollout_rs": "seq_mean_k3",
                         _RC + "rollout_rs_threshold": 0.01}, dict(_BYPASS_OTHER)),
        source=f"verl rollout_correction bypass_ppo_clip_k3_rs; {_PAPER}",
    ),
    _correction_spec(
        "grpo_opsm", bypass=True, preset=dict(opsm_delta=0.5),
        aggregation="seq-mean-token-mean", target_kind="numerical", clip=clip_range,
        equation="1[A >= 0 or mean_t log(mu/pi) <= delta] * PPO-clip(pi/mu), delta = 0.5",
        nominal="greedy within a trust region", induced=_NUMERICAL,
        trl=TrlRecipe({"loss_type": "grpo", "epsilon": 0.2, "epsilon_high": 0.2, "off_policy_mask_threshold": 0.5},
                      {"eps": 1e-4}),
        source="DeepSeek-AI 2025 (DeepSeek-V3.2, arXiv 2512.02556, eq. 9); TRL off_policy_mask_threshold "
               "(GRPOTrainer.get_off_policy_mask)",
    ),
    ObjectiveSpec(
        name="vespo", loss=L.vespo_loss, advantage="grpo",
        params=dict(k_pos=2.0, lambda_pos=Param(3.0, **_POS), k_neg=3.0, lambda_neg=Param(2.0, **_POS), eps=1e-6),
        advantage_params=("eps",), aggregation="token-mean", family="ratio", target_kind="flow",
        equation="-sg(phi(W)) A log pi, phi(W) = e^lam W^k e^(-lam W), W = prod_t pi/mu; (k, lam) by sign of A",
        nominal="greedy within a soft trust region",
        induced="flow (certified where the integrated flow converges): h = phi(u) A peaks at u = k/lambda",
        trl=TrlRecipe({"loss_type": "vespo"}, {"eps": 1e-4}),
        source="VESPO (arXiv 2602.10693); TRL loss_type='vespo' (GRPOTrainer.get_gamma_weights)",
    ),
    ObjectiveSpec(
        name="luspo", loss=L.gspo_loss, advantage="grpo",
        params=dict(eps_low=0.0003, eps_high=0.0004, eps=1e-6), advantage_params=("eps",),
        aggregation="seq-mean-token-sum", family="ratio", weight=h_ppo, target_kind="lp", sequence_ratio=True,
        clip=clip_range,
        equation="|y| x GSPO's clipped surrogate on exp(mean_t s_t): GSPO summed, not averaged, over tokens",
        nominal="greedy within a sequence trust region",
        induced=("LP on the simplex (one-token arms: PPO-clip's): set-valued on the clip plateaus; reported: "
                 "the set and the point of its optimal face reached by explicit Euler"),
        trl=TrlRecipe({"loss_type": "luspo", "importance_sampling_level": "sequence", "epsilon": 3e-4,
                       "epsilon_high": 4e-4}, {"eps": 1e-4}),
        source="LUSPO (arXiv 2602.05261); TRL loss_type='luspo' with importance_sampling_level='sequence'",
    ),
)

for _spec in SPECS:
    register_objective(_spec)
del _spec
