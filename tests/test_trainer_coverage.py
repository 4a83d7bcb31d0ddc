"""Every policy loss, advantage estimator and off-policy correction the installed verl and TRL ship maps to a zoo
objective, estimator or option, or to an explicit verdict. The registries are enumerated, so a trainer release
that adds one fails here until it is mapped (``theory.recipes``, the specs' ``verl`` / ``trl`` recipes)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from theory.advantages import ADVANTAGES
from theory.losses import RS_OPTIONS
from theory.objectives import builtin_objectives, make_objective, objective_spec
from theory.recipes import TRL_IS_MODES, TRL_LOSS_TYPES, VERL_ESTIMATOR_ALIASES, VERL_ESTIMATOR_VERDICTS


def _verl_specs():
    return [objective_spec(n) for n in builtin_objectives() if objective_spec(n).verl is not None]


def test_every_verl_policy_loss_is_a_zoo_objective():
    core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
    shipped = {n for n in core_algos.POLICY_LOSS_REGISTRY if not n.startswith("zoo_")}
    mapped = {s.verl.loss_mode for s in _verl_specs()}
    assert shipped - mapped == set(), f"verl policy losses without a zoo objective: {sorted(shipped - mapped)}"


def test_every_verl_advantage_estimator_is_mapped():
    core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
    shipped = {n for n in core_algos.ADV_ESTIMATOR_REGISTRY if not n.startswith("zoo_")}  # zoo_*: the zoo's own
    as_spec = {s.verl.adv_estimator for s in _verl_specs()}
    missing = shipped - as_spec - set(VERL_ESTIMATOR_ALIASES) - set(VERL_ESTIMATOR_VERDICTS)
    assert missing == set(), f"verl advantage estimators the zoo does not map: {sorted(missing)}"
    assert set(VERL_ESTIMATOR_ALIASES.values()) <= set(ADVANTAGES)
    stale = (set(VERL_ESTIMATOR_ALIASES) | set(VERL_ESTIMATOR_VERDICTS)) - shipped
    assert stale == set(), f"mapped names verl no longer ships: {sorted(stale)}"


def test_every_verl_rollout_correction_option_is_a_zoo_option():
    helper = pytest.importorskip("verl.trainer.ppo.rollout_corr_helper")
    assert set(helper.SUPPORTED_ROLLOUT_RS_OPTIONS) == set(RS_OPTIONS)
    for rs in RS_OPTIONS:  # each runs as a parameter of the rollout-corrected loss
        assert make_objective("geo_rs", rs=rs).params["rs"] == rs
    for level in ("token", "sequence"):
        assert make_objective("seq_tis", is_level=level).params["is_level"] == level


def _trl_supported(field_name: str) -> set[str]:
    """The values TRL's GRPOConfig declares for a field (its help text's 'Supported values/options are ...')."""
    GRPOConfig = pytest.importorskip("trl").GRPOConfig
    text = next(f for f in dataclasses.fields(GRPOConfig) if f.name == field_name).metadata["help"]
    sentence = re.search(r"Supported (?:values|options) are:?(.*?)\.(?:\s|$)", text, re.S).group(1)
    return set(re.findall(r"'(\w+)'", sentence))


def test_every_trl_loss_type_is_a_zoo_objective():
    shipped = _trl_supported("loss_type")
    assert len(shipped) >= 8
    mapped = {config["loss_type"] for config, _ in TRL_LOSS_TYPES.values()}
    assert shipped - mapped == set(), f"TRL loss types without a zoo objective: {sorted(shipped - mapped)}"


def test_every_trl_importance_sampling_mode_is_a_zoo_option():
    assert _trl_supported("vllm_importance_sampling_mode") == set(TRL_IS_MODES)
    for mode, params in TRL_IS_MODES.items():
        obj = make_objective("seq_mis", **params)
        assert {k: obj.params[k] for k in params} == dict(params), mode
    assert "opsm_delta" in objective_spec("grpo_opsm").params  # off_policy_mask_threshold
