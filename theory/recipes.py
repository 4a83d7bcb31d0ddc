r"""The trainers' own settings that compute each objective, and the tables generated from them.

An objective's spec (``theory.objectives.ObjectiveSpec``) may carry

* ``verl``: a :class:`VerlRecipe`, when verl 0.9 ships the objective as a
  built-in ``policy_loss.loss_mode`` (with the settings under which verl's
  loss *is* the zoo's); without one, an objective that verl's policy-loss
  interface can run (:func:`runs_as_zoo_loss`) runs as the loss ``zoo_<name>``
  that ``sims.integrations.verl`` registers, with the recipe
  :func:`verl_recipe` derives from the spec; ``verl_note`` says why an
  objective cannot run in verl at all;
* ``trl``: a :class:`TrlRecipe`, when TRL 1.16 ships the objective as a
  ``GRPOConfig.loss_type``; every objective runs through
  ``sims.integrations.trl.ZooGRPOTrainer`` otherwise.

The integration tests check every recipe against the trainer's own loss (value
and gradient to 1e-6). Nothing here imports verl or TRL.

The README's and ``docs/integrations.md``'s objective-to-trainer table is
generated from these recipes (``theory.tables``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

__all__ = [
    "VerlRecipe",
    "fmt_value",
    "LOSS_BETA",
    "VERL_MEAN_ADVANTAGE",
    "TrlRecipe",
    "verl_recipe",
    "runs_as_zoo_loss",
    "verl_builtin",
    "trl_loss_types",
    "VERL_BUILTIN",
    "TRL_LOSS_TYPES",
    "VERL_ESTIMATOR_ALIASES",
    "VERL_ESTIMATOR_VERDICTS",
    "TRL_IS_MODES",
]

#: verl advantage estimators that are a zoo estimator (``theory.advantages``) under another name: the
#: vectorized variants compute the same numbers (equal on groups of two or more), and the tool-integrated
#: optimal-token baseline is the optimal-token baseline on contiguous response masks
#: (``tests/test_zoo_verl_advantages.py`` checks each against verl).
VERL_ESTIMATOR_ALIASES = MappingProxyType({
    "rloo": "loo",
    "rloo_vectorized": "loo",
    "grpo_vectorized": "grpo",
    "tir_optimal_token_baseline": "optimal_token_baseline",
})

#: verl advantage estimators the zoo does not model, and why (an explicit verdict instead of a target).
VERL_ESTIMATOR_VERDICTS = MappingProxyType({
    "gae": "GAE needs a learned critic (a value per token, trained alongside the policy); the toolkit's bandits "
           "and token MDP have no critic, so it has no induced target here",
})

#: TRL's ``vllm_importance_sampling_mode`` values as the parameters of ``theory.losses.rollout_corrected_loss``
#: (the weight between vLLM's sampler and the trainer; TRL computes it only when it samples with vLLM, so no
#: ``TrlRecipe`` runs it here: ``tests/test_zoo_corrections.py`` checks the weights against TRL's formula).
TRL_IS_MODES = MappingProxyType({
    "token_truncate": MappingProxyType({"is_level": "token", "is_mode": "truncate"}),
    "token_mask": MappingProxyType({"is_level": "token", "is_mode": "mask"}),
    "sequence_truncate": MappingProxyType({"is_level": "sequence", "is_mode": "truncate"}),
    "sequence_mask": MappingProxyType({"is_level": "sequence", "is_mode": "mask"}),
})


def fmt_value(v) -> str:
    """A setting's value as Hydra reads it (``true``/``false``, ``inf``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return str(v)


@dataclass(frozen=True)
class VerlRecipe:
    """The verl settings that run one zoo objective.

    Attributes
    ----------
    loss_mode : str
        ``actor_rollout_ref.actor.policy_loss.loss_mode``.
    adv_estimator : str
        ``algorithm.adv_estimator``.
    actor : Mapping
        ``actor_rollout_ref.actor.<key>`` settings (``policy_loss.<key>`` for the nested ones).
    algorithm : Mapping
        ``algorithm.<key>`` settings; ``zoo.<key>`` ones are new keys (Hydra ``+``).
    other : Mapping
        Other settings, by full key (trainer, rollout).
    """

    loss_mode: str
    adv_estimator: str
    actor: Mapping = field(default_factory=dict)
    algorithm: Mapping = field(default_factory=dict)
    other: Mapping = field(default_factory=dict)

    def overrides(self) -> list[str]:
        """Hydra override lines, to append to a stock verl GRPO command (quote the ``${...}`` ones in a shell)."""
        lines = [f"actor_rollout_ref.actor.policy_loss.loss_mode={self.loss_mode}",
                 f"algorithm.adv_estimator={self.adv_estimator}"]
        lines += [f"actor_rollout_ref.actor.{k}={fmt_value(v)}" for k, v in self.actor.items()]
        lines += [f"{'+' if k.startswith('zoo.') else ''}algorithm.{k}={fmt_value(v)}" for k, v in self.algorithm.items()]
        lines += [f"{k}={fmt_value(v)}" for k, v in self.other.items()]
        return lines


@dataclass(frozen=True)
class TrlRecipe:
    """The TRL ``GRPOConfig`` settings under which TRL's own loss is the zoo objective's.

    Attributes
    ----------
    config : Mapping
        ``GRPOConfig`` keyword arguments (``loss_type`` first).
    zoo_params : Mapping
        The objective's parameters that match them (``make_objective(name, **zoo_params)``),
        e.g. ``eps = 1e-4``: TRL divides the group advantage by ``std + 1e-4``.
    """

    config: Mapping[str, Any]
    zoo_params: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# recipes from the registry
# ---------------------------------------------------------------------------

#: verl's ``grpo`` advantage estimator without the std: :math:`r - \mathrm{mean}` (the zoo's ``mean`` advantage)
VERL_MEAN_ADVANTAGE: Mapping[str, Any] = MappingProxyType({"norm_adv_by_std_in_grpo": False})
_ZOO_ADV = {"raw": "zoo_raw", "loo": "rloo", "grpo": "grpo", "shifted_mean": "zoo_shifted_mean"}
#: the advantage's beta is the loss's beta: a Hydra interpolation keeps the two equal
LOSS_BETA = "${actor_rollout_ref.actor.policy_loss.dro_beta}"
# the regression family anchors its log-ratio at the behaviour policy: verl's bypass mode (v1 trainer) makes
# old_log_prob the rollout's log-probs; fixed-size micro-batches keep each prompt's completions together for
# the Lambert-predicted eta; the regression is its own regularizer (no KL loss, no entropy bonus)
_REGRESSION_OTHER = {
    "trainer.use_v1": True,
    "algorithm.rollout_correction.bypass_mode": True,
    "actor_rollout_ref.rollout.calculate_log_probs": True,
    "actor_rollout_ref.actor.use_dynamic_bsz": False,
    "actor_rollout_ref.actor.use_kl_loss": False,
    "actor_rollout_ref.actor.entropy_coeff": 0,
}


def runs_as_zoo_loss(name: str) -> bool:
    """Whether the objective ``name`` runs as a registered ``zoo_<name>`` verl policy loss.

    True for a registered objective that verl does not ship (no ``verl`` recipe), whose
    loss needs no reference or proximal log-probabilities and takes the advantage as its signal.
    """
    from .objectives import OBJECTIVES, make_objective, objective_spec

    if name not in OBJECTIVES:
        return False
    spec = objective_spec(name)
    return spec.verl is None and spec.signal == "adv" and not make_objective(name).needs


def _advantage_settings(obj) -> tuple[str, dict]:
    """verl's ``adv_estimator`` and ``algorithm.*`` settings that compute ``obj``'s advantage."""
    p = obj.params
    if obj.advantage == "mean":
        if p.get("offset", 0.0):
            return "zoo_mean", {"zoo.offset": p["offset"]}
        return "grpo", dict(VERL_MEAN_ADVANTAGE)
    if obj.advantage == "soft_value" and p.get("delta", 0.0):
        return "zoo_soft_value_above", {"zoo.beta": LOSS_BETA, "zoo.delta": p["delta"]}  # beta1 = beta
    if obj.advantage == "soft_value":
        if p.get("beta1") == p.get("beta"):
            return "zoo_soft_value", {"zoo.beta": LOSS_BETA}
        return "zoo_decoupled_soft_value", {"zoo.beta1": p["beta1"]}
    if obj.advantage == "shifted_mean":
        return _ZOO_ADV[obj.advantage], {"zoo.beta": LOSS_BETA, "zoo.delta": p["delta"]}
    return _ZOO_ADV[obj.advantage], {}


def _zoo_loss_recipe(obj) -> VerlRecipe:
    """The recipe of an objective that runs as verl loss ``zoo_<name>``."""
    actor: dict = {}
    if "beta" in obj.params:
        actor["policy_loss.dro_beta"] = obj.params["beta"]
    actor["loss_agg_mode"] = "seq-mean-token-mean" if obj.aggregation == "sequence" else obj.aggregation
    adv, algo = _advantage_settings(obj)
    other = dict(_REGRESSION_OTHER) if obj.family == "regression" else {}
    return VerlRecipe(f"zoo_{obj.name}", adv, actor, algo, other)


def verl_recipe(name: str) -> VerlRecipe:
    """The verl settings that run the zoo objective ``name`` with its published parameters.

    The spec's own recipe where verl ships the objective; otherwise the ``zoo_<name>`` loss's.
    Raises :class:`ValueError` for an unknown name (listing the valid ones) or an objective
    verl cannot run (with the reason).
    """
    from .objectives import OBJECTIVES, make_objective, objective_spec

    if name in OBJECTIVES:
        spec = objective_spec(name)
        if spec.verl is not None:
            return spec.verl
        if spec.verl_note:
            raise ValueError(f"objective {name!r} cannot run in verl: {spec.verl_note}")
    if not runs_as_zoo_loss(name):
        valid = sorted(set(verl_builtin()) | {n for n in OBJECTIVES if runs_as_zoo_loss(n)})
        raise ValueError(f"unknown objective {name!r}; objectives that run in verl: {', '.join(valid)} "
                         f"(the zoo: {', '.join(OBJECTIVES)})")
    return _zoo_loss_recipe(make_objective(name))


def verl_builtin() -> dict[str, VerlRecipe]:
    """``{name: recipe}`` for the registered objectives that verl ships as a built-in loss."""
    from .objectives import OBJECTIVES, objective_spec

    return {n: objective_spec(n).verl for n in OBJECTIVES if objective_spec(n).verl is not None}


def trl_loss_types() -> dict[str, tuple[Mapping, Mapping]]:
    """``{name: (GRPOConfig settings, zoo parameters)}`` for the objectives TRL ships as a ``loss_type``."""
    from .objectives import OBJECTIVES, objective_spec

    out = {}
    for n in OBJECTIVES:
        rec = objective_spec(n).trl
        if rec is not None:
            out[n] = (dict(rec.config), dict(rec.zoo_params))
    return out


class _LiveView(Mapping):
    """A read-only mapping recomputed from the registry on every access (objectives registered later show)."""

    def __init__(self, build, doc: str):
        self._build = build
        self.__doc__ = doc

    def __getitem__(self, key):
        return self._build()[key]

    def __iter__(self):
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._build()!r})"


#: ``{name: VerlRecipe}`` of the objectives verl ships (live view of :func:`verl_builtin`).
VERL_BUILTIN: Mapping[str, VerlRecipe] = _LiveView(verl_builtin, "objective -> verl recipe, where verl ships it")
#: ``{name: (GRPOConfig settings, zoo parameters)}`` (live view of :func:`trl_loss_types`).
TRL_LOSS_TYPES: Mapping[str, tuple] = _LiveView(trl_loss_types, "objective -> TRL settings, where TRL ships it")
