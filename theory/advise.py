r"""The practitioner's questions, answered before launch: regime, pessimism, finite-group bias and lag stability.

``python -m theory.advise`` (or :func:`advise`, which returns the frozen
:class:`Advice`) takes one objective of the zoo, or several side by side, the
group size ``G``, the learning rate, the reward distribution per prompt class
and the lag, given as flags or read from a verl config (YAML file and/or Hydra
override lines), a TRL ``GRPOConfig`` / ``AsyncGRPOConfig`` (JSON, or a Python
file whose config is written with literal values) or AReaL's two settings.

**The model.** A prompt class with pass rate :math:`p` is a two-arm bandit:
completions that fail (reward 0) and pass (reward 1), behaviour
:math:`\mu = (1-p, p)`, a tabular softmax policy over the two arms. On each
class, with the toolkit's functions and nothing re-derived here:

* the **induced target** of the objective's population version (exact
  advantage ``Objective.population_advantage``, :math:`\mu` held fixed; the
  computation of ``theory.zoo_table``: closed form, KKT solver, the flow, or
  the optimal face of the clipped surrogate for the PPO family, reported as a
  range), its pass rate, entropy, :math:`\mathrm{KL}(\pi\|\mu)` and
  :math:`\mathrm{KL}(\pi\|\pi_\beta)` against the nominal Gibbs target
  (``theory.values.gibbs_target``), the regime and :math:`\eta`
  (``theory.lambert.lambert_target``, ``regime_of``; defined for the
  Lambert-type targets, docs/theory.md section 3) and
  :math:`\beta_{\mathrm{eff}}/\beta` by equal KL and by equal reward
  (``theory.measures``, docs/theory.md section 5) where the objective is named
  after a Gibbs target;
* the **finite-group bias** of the baseline: the conditional group advantage
  :math:`\bar A_k = E[A_1\mid y_1 = k]` with groups of ``G``
  (``theory.advantages.conditional_group_advantage``) against the population
  advantage, and, where the objective's weight :math:`h(u, A)` is affine in
  :math:`A` (checked on ``Objective.weight`` itself), the target with fresh
  groups, which is the population target at :math:`\bar A` (docs/theory.md
  section 3, "Finite-group soft value");
* the **largest stable lag** at the given learning rate: the spectral radius
  of the delayed gradient iteration :math:`\theta_{t+1} = \theta_t +
  \mathrm{lr}\,g(\pi_t;\ \mu = \pi_{t-L})`, linearized on the optimal face
  (``sims.lag.stability_map`` with ``flat=True``, docs/theory.md section 7 (b))
  for every lag ``0..max_lag`` and at the configured lag; and, from the same
  maps over a grid of step sizes, the largest grid step size that is stable at
  every searched lag.

Per objective the classes are aggregated with the classes' weights (the
pass-rate histogram), and a verdict in plain words states the numbers: the
regime, how conservative the target is against its nominal target and against
the other objectives, and whether the configured lag in optimizer steps
exceeds the largest stable lag.

**The lag in optimizer steps.** Every framework counts staleness in its own
unit (model versions); the extra optimizer steps that mini-batches and epochs
take on one batch of data are lag too, on top of the queue staleness. The
mapping per framework, with the exact configuration keys, is in
:data:`LAG_RULES` and docs/advise.md; the output states which keys it read and
the arithmetic.

Usage::

    python -m theory.advise --objective opmd --objective shifted_regression \
        --group-size 8 --lr 1e-6 --pass-rates 0.1 0.5 0.9 --lag 3
    python -m theory.advise --verl-config my_run.yaml --verl-override actor_rollout_ref.actor.ppo_epochs=2
    python -m theory.advise --trl-config grpo_config.json --json

Figure: ``--figure PATH`` draws one small panel per objective
(:func:`plot_objective`, which takes ``ax=None`` and returns the axes).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib.metadata
import importlib.util
import json
import math
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .advantages import conditional_group_advantage
from .bandits import Bandit
from .cli import add_dataclass_arguments, dataclass_from_args, option
from .induced import certify, solve_kkt
from .lambert import lambert_target, regime_of
from .measures import REGIME_NAMES, beta_eff_kl, beta_eff_reward, kl, kl_to_gibbs
from .objectives import KNOWN_PARAMS, Objective, make_objective, objective_names, objective_spec
from .outputs import CommandParser, UsageError, atomic_write_bytes, cli_main
from .zoo_table import nominal_temperature, target_measures  # the zoo table's per-bandit target and measures

__all__ = [
    "LagSpec",
    "ConfigReading",
    "ClassAdvice",
    "AggregateAdvice",
    "ObjectiveAdvice",
    "Advice",
    "advise",
    "parse_objective",
    "lag_from_areal",
    "read_verl",
    "read_trl",
    "render_table",
    "plot_objective",
    "plot_advice",
    "ASSUMPTIONS",
    "LAG_RULES",
    "VERL_KEYS",
    "TRL_KEYS",
    "AdviseOptions",
    "parser",
    "main",
]

#: Defaults of the command (and of :func:`advise`).
DEFAULT_OBJECTIVE = "opmd"
DEFAULT_GROUP_SIZE = 8
DEFAULT_LR = 1e-6
DEFAULT_PASS_RATES = (0.1, 0.5, 0.9)
DEFAULT_MAX_LAG = 64

#: Largest lag searched in full (companion matrices of size ``lag + 1``); a configured lag above it is
#: evaluated on its own up to :data:`LAG_EVAL_CAP`.
MAX_LAG_CAP = 512
LAG_EVAL_CAP = 1024

#: A spectral radius at or below ``1 + RADIUS_TOL`` is stable (radius 1: the neutral roots along the set of
#: fixed points of the flat face, docs/theory.md section 7 (b)).
RADIUS_TOL = 1e-6

#: Step sizes searched for the largest stable step size (log grid, 4 points per decade).
LR_GRID = tuple(float(x) for x in np.logspace(-4, 6, 41))

#: What the numbers rest on; printed with every report.
ASSUMPTIONS = (
    "Each prompt class is a two-arm bandit: failing (reward 0) and passing (reward 1) completions, behaviour "
    "mu = (1 - p, p), a tabular softmax policy over the two arms (no sharing between prompts or completions).",
    "Induced target: the objective's population version (exact advantage, mu held fixed), i.e. many gradient "
    "steps on one batch of lagged data (docs/theory.md section 1); a set-valued target (PPO-style clipping) is "
    "reported as the range of its face.",
    "Finite group: fresh groups of G from mu; the fixed point is the population target at the conditional group "
    "advantage E[A_1 | y_1], which holds when the objective's weight h(u, A) is affine in A (checked on its "
    "weight); otherwise only the advantage bias is reported.",
    "Stability: the delayed gradient iteration theta += lr * g(pi_t; mu = pi_{t-L}) (sims.lag, rule 'gradient', "
    "one step per optimizer step) with a constant lag L equal to the largest lag of the configuration (the real "
    "lag cycles between its smallest and largest value), linearized on the optimal face (flat=True: every reward "
    "set to the best one, where every policy is a fixed point): it measures the delayed pull toward the lagged "
    "policy. Ratio-based objectives have no such pull: radius 1 (neutral) at every lag and step size.",
    "The learning rate is the step size of that iteration on the bandit's logits (plain gradient steps on the "
    "population objective). An LLM optimizer's learning rate (Adam, per parameter, through a network) is not the "
    "same unit; the largest stable step size is reported so the margin can be read in this unit.",
    "Lag in optimizer steps: from the policy that generated the data to the policy being updated; the extra "
    "optimizer steps of mini-batches and epochs on one batch count as lag on top of the queue staleness.",
)

#: How each framework's settings become the lag in optimizer steps (``S``: queue staleness in model versions,
#: ``n``: optimizer steps per model version; largest lag ``(S + 1) n - 1``, smallest 0).
LAG_RULES = {
    "verl": "trainer.v1: one model version per global step of trainer.v1.<trainer_mode>.parameter_sync_step (P, 1 "
            "when absent) local updates of data.train_batch_size / P prompts, each ppo_epochs x ceil(train_batch_size "
            "/ P / ppo_mini_batch_size) optimizer steps, so n = P x ppo_epochs x ceil(train_batch_size / P / "
            "ppo_mini_batch_size); S = 0 in trainer_mode sync, else max_off_policy_threshold - 1 (a trajectory spans "
            "at most max_off_policy_threshold versions). Legacy trainer (trainer.use_v1=false): P = 1, S = 0.",
    "verl-fully-async": "verl.experimental.fully_async_policy: n = async_training.trigger_parameter_sync_step x "
                        "ppo_epochs x async_training.require_batches; each version generates at most (1 + "
                        "staleness_threshold) times the samples it consumes, so with first-in-first-out consumption "
                        "S = ceil(staleness_threshold).",
    "trl": "GRPOTrainer: one generation feeds steps_per_generation x num_iterations micro-steps, and "
           "gradient_accumulation_steps micro-steps make one optimizer step, so the largest lag is "
           "ceil(steps_per_generation x num_iterations / gradient_accumulation_steps) - 1 (0 when the generation is "
           "used within one optimizer step); steps_per_generation defaults to gradient_accumulation_steps, or is "
           "generation_batch_size / (per_device_train_batch_size x num_processes).",
    "trl-async": "trl.experimental.async_grpo.AsyncGRPOTrainer: one model version per weight_sync_steps optimizer "
                 "steps (n = weight_sync_steps), samples more than max_staleness versions old are dropped (S = "
                 "max_staleness).",
    "areal": "AReaL: one model version per training step of actor.ppo_n_minibatches optimizer steps (n), samples at "
             "most rollout.max_head_offpolicyness versions old (S).",
}


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class LagSpec:
    """The lag in optimizer steps and how it was obtained.

    Attributes
    ----------
    framework : str
        ``none`` (no lag given: 0), ``flag`` (``--lag``), ``verl``, ``verl-fully-async``, ``trl``,
        ``trl-async`` or ``areal``.
    lag_min, lag_max : int
        Smallest and largest lag in optimizer steps over one cycle of the schedule; the stability
        analysis uses ``lag_max`` as its constant lag.
    staleness_versions : int or None
        Queue staleness ``S``: model versions a sample may lag behind.
    steps_per_version : int or None
        Optimizer steps per model version ``n`` (mini-batches x epochs x local updates).
    how : str
        The arithmetic, with the keys' values.
    keys : tuple of (str, str)
        Every configuration key read for the lag, with its value as text.
    """

    framework: str
    lag_min: int
    lag_max: int
    staleness_versions: int | None
    steps_per_version: int | None
    how: str
    keys: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ConfigReading:
    """What a framework's configuration says: the objective, G, the learning rate and the lag."""

    source: str  #: the file(s) or override lines read
    framework: str  #: ``verl``, ``trl`` or ``trl-async``
    objective: str  #: zoo objective name
    params: tuple[tuple[str, float | str | None], ...]  #: its parameters (make_objective overrides)
    group_size: int  #: G
    lr: float  #: the optimizer's learning rate
    lag: LagSpec
    keys: tuple[tuple[str, str], ...]  #: every key read for the objective, G and lr, with its value
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClassAdvice:
    """One prompt class (pass rate ``p``), one objective: every number; None where not computed (``note`` says why)."""

    pass_rate: float  #: behaviour pass rate p (mu = (1 - p, p), rewards (0, 1))
    weight: float  #: share of the prompts (normalized over all classes)
    signal: bool  #: False for p = 0 or 1 (a one-arm bandit: every target is mu)
    method: str | None  #: how the induced target was computed
    certified: bool | None  #: the target passed its solver's certificate
    set_valued: bool | None  #: the target is a set (ranges reported)
    note: str
    regime: str | None  #: positive / boundary / negative (Lambert-type targets)
    eta: float | None
    beta_nominal: float | None  #: temperature of the nominal Gibbs target, reward units
    pessimism_kl: float | None  #: beta_eff / beta, equal KL(pi || mu)
    pessimism_kl_range: tuple[float | None, float | None] | None  #: set-valued: (at the largest KL, at the smallest)
    pessimism_reward: float | None  #: beta_eff / beta, equal expected reward
    target_pass_rate: float | None
    target_pass_rate_range: tuple[float, float] | None
    target_entropy: float | None  #: nats
    target_entropy_range: tuple[float | None, float | None] | None
    kl_target_mu: float | None  #: KL(pi || mu), nats
    kl_target_mu_range: tuple[float | None, float | None] | None
    kl_target_nominal: float | None  #: KL(pi || pi_beta) against the nominal Gibbs target, nats
    nominal_pass_rate: float | None
    nominal_entropy: float | None
    nominal_kl_mu: float | None
    advantage: tuple[float, ...] | None  #: population advantage (fail, pass)
    group_advantage: tuple[float, ...] | None  #: E[A_1 | y_1] with groups of G (fail, pass)
    group_bias: tuple[float, ...] | None  #: group_advantage - advantage
    group_note: str
    group_target_pass_rate: float | None  #: target with fresh groups of G
    group_eta: float | None
    group_regime: str | None
    group_pessimism_kl: float | None
    group_kl_target_mu: float | None
    largest_stable_lag: int | None  #: largest L with every lag 0..L stable at lr (searched up to max_lag)
    stable_through_search: bool | None  #: every lag 0..max_lag is stable at lr
    first_unstable_lag: int | None
    radius_at_lag: float | None  #: spectral radius at the configured (largest) lag
    stable_at_lag: bool | None
    largest_stable_lr: float | None  #: largest grid step size stable at every lag 1..max_lag (None: none)
    smallest_unstable_lr: float | None  #: the next grid step size (None: stable on the whole grid)
    lag_note: str


@dataclass(frozen=True)
class AggregateAdvice:
    """Weighted over the classes with a signal (weights renormalized); None where a class lacks the number."""

    weight_with_signal: float  #: share of the prompts in classes with 0 < p < 1
    regime_shares: tuple[tuple[str, float], ...]  #: regime -> share of the weight
    eta: float | None
    pessimism_kl: float | None
    behaviour_pass_rate: float | None
    target_pass_rate: float | None
    target_pass_rate_range: tuple[float, float] | None
    target_entropy: float | None
    target_entropy_range: tuple[float, float] | None
    kl_target_mu: float | None
    kl_target_mu_range: tuple[float, float] | None
    kl_target_nominal: float | None
    nominal_pass_rate: float | None
    group_target_pass_rate: float | None
    group_eta: float | None
    group_pessimism_kl: float | None
    largest_stable_lag: int | None  #: the smallest over the classes
    stable_through_search: bool | None
    stable_at_lag: bool | None


@dataclass(frozen=True)
class ObjectiveAdvice:
    """The report for one objective."""

    objective: str
    params: tuple[tuple[str, float | str | None], ...]
    family: str
    nominal: str
    induced: str
    classes: tuple[ClassAdvice, ...]
    aggregate: AggregateAdvice
    verdict: str


@dataclass(frozen=True)
class Advice:
    """Everything :func:`advise` computed; ``to_json`` / ``from_json`` round-trip every field."""

    source: str  #: ``flags`` or the configuration read
    group_size: int
    lr: float
    pass_rates: tuple[float, ...]
    weights: tuple[float, ...]  #: normalized
    max_lag: int  #: lags searched: 0..max_lag
    lag: LagSpec
    objectives: tuple[ObjectiveAdvice, ...]
    comparison: str
    notes: tuple[str, ...]
    assumptions: tuple[str, ...]

    def to_dict(self) -> dict:
        """Plain JSON types; non-finite floats as the strings ``inf``, ``-inf``, ``nan``."""
        return _encode(dataclasses.asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Advice":
        return _decode(cls, d)

    @classmethod
    def from_json(cls, text: str) -> "Advice":
        return cls.from_dict(json.loads(text))


def _encode(x):
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _encode(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_encode(v) for v in x]
    return x


_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _decode(tp, v):
    """``v`` (from JSON) as a value of type ``tp`` (dataclasses, tuples, unions, scalars)."""
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _decode(hints[f.name], v[f.name]) for f in dataclasses.fields(tp)})
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if v is None:
            return None
        opts = [a for a in args if a is not type(None)]
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if float in opts and (number or (isinstance(v, str) and v in _NONFINITE)):
            return _decode(float, v)
        for a in opts:
            if typing.get_origin(a) is tuple and isinstance(v, list):
                return _decode(a, v)
            if a in (str, bool, int) and isinstance(v, a):
                return v
        return v
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], x) for x in v)
        return tuple(_decode(a, x) for a, x in zip(args, v))
    if tp is float:
        return _NONFINITE[v] if isinstance(v, str) else float(v)
    return v


# ----------------------------------------------------------------------------- objectives from flags


def _parse_value(text: str):
    t = text.strip()
    if t.lower() in ("none", "null"):
        return None
    try:
        return float(t)
    except ValueError:
        return t


def parse_objective(spec: str) -> tuple[str, dict]:
    """``NAME`` or ``NAME:key=value,key=value`` -> (name, parameter overrides); UsageError naming the problem."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in objective_names():
        raise UsageError(f"--objective {spec!r}: unknown objective {name!r}; valid: {', '.join(objective_names())}")
    params = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise UsageError(f"--objective {spec!r}: {item!r} is not key=value; write e.g. {name}:beta=0.05")
        params[k.strip()] = _parse_value(v)
    try:
        make_objective(name, **params)
    except ValueError as e:
        raise UsageError(f"--objective {spec!r}: {e}") from None
    return name, params


def _as_objective(o) -> Objective:
    if isinstance(o, Objective):
        return o
    if isinstance(o, str):
        name, params = parse_objective(o)
        return make_objective(name, **params)
    if isinstance(o, (tuple, list)) and len(o) == 2 and isinstance(o[0], str):
        try:
            return make_objective(o[0], **dict(o[1] or {}))
        except (ValueError, TypeError) as e:
            raise UsageError(f"objective {o[0]!r}: {e}") from None
    raise UsageError(f"an objective is a zoo name, (name, params) or an Objective; got {o!r}")


def _params_tuple(obj: Objective) -> tuple:
    out = []
    for k, v in obj.params.items():
        out.append((k, v if v is None or isinstance(v, str) else float(v)))
    return tuple(out)


# ----------------------------------------------------------------------------- lag from AReaL and flags


def _lag(framework, S, n, how, keys) -> LagSpec:
    return LagSpec(framework, 0, (S + 1) * n - 1, S, n, how, tuple((k, _text(v)) for k, v in keys))


def _check_count(name, v, minimum):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        if isinstance(v, float) and v.is_integer() and v >= minimum:
            return int(v)
        raise UsageError(f"{name}: must be an integer >= {minimum}, got {v!r}")
    return int(v)


def lag_from_areal(max_head_offpolicyness: int, ppo_n_minibatches: int = 4) -> LagSpec:
    """AReaL: ``rollout.max_head_offpolicyness`` versions of staleness, ``actor.ppo_n_minibatches`` steps each."""
    S = _check_count("--areal-max-head-offpolicyness", max_head_offpolicyness, 0)
    n = _check_count("--areal-ppo-n-minibatches", ppo_n_minibatches, 1)
    how = (f"AReaL: largest lag = (max_head_offpolicyness {S} + 1) x (ppo_n_minibatches {n} optimizer steps per "
           f"version) - 1 = {(S + 1) * n - 1}")
    return _lag("areal", S, n, how, [("rollout.max_head_offpolicyness", S), ("actor.ppo_n_minibatches", n)])


def _lag_from_flag(lag) -> LagSpec:
    L = _check_count("--lag", lag, 0)
    return LagSpec("flag", 0, L, None, None, f"given: {L} optimizer steps (--lag)", (("--lag", str(L)),))


# ----------------------------------------------------------------------------- verl

A_ = "actor_rollout_ref.actor."
ALG = "algorithm."
#: The verl keys the advisor reads (every other verl key is accepted and ignored).
VERL_KEYS = (
    A_ + "policy_loss.loss_mode", A_ + "policy_loss.dro_beta", A_ + "clip_ratio", A_ + "clip_ratio_low",
    A_ + "clip_ratio_high", A_ + "clip_ratio_c", A_ + "tau_pos", A_ + "tau_neg", A_ + "loss_agg_mode",
    A_ + "use_kl_loss", A_ + "kl_loss_coef", A_ + "kl_loss_type", A_ + "entropy_coeff", A_ + "optim.lr",
    A_ + "ppo_epochs", A_ + "ppo_mini_batch_size", "actor_rollout_ref.rollout.n", "data.train_batch_size",
    ALG + "adv_estimator", ALG + "norm_adv_by_std_in_grpo", ALG + "use_kl_in_reward",
    ALG + "rollout_correction.rollout_is", ALG + "rollout_correction.rollout_is_threshold",
    ALG + "rollout_correction.bypass_mode", ALG + "zoo.beta", ALG + "zoo.beta1", ALG + "zoo.delta",
    ALG + "zoo.offset", ALG + "zoo.max_weight", "trainer.use_v1", "trainer.v1.trainer_mode",
    "trainer.v1.<trainer_mode>.parameter_sync_step", "trainer.v1.sampler.max_off_policy_threshold",
    "async_training.trigger_parameter_sync_step", "async_training.staleness_threshold",
    "async_training.require_batches",
)

#: ``algorithm.zoo.<key>``: the parameters the toolkit's verl advantage estimators read (sims.integrations.verl).
_ZOO_KEYS = ("beta", "beta1", "delta", "offset", "max_weight")

#: verl advantage estimator -> (the zoo's estimator name, the zoo objective whose estimator verl runs, zoo keys ->
#: objective parameters); ``grpo`` depends on ``norm_adv_by_std_in_grpo``. Mirrors sims.integrations.verl
#: (tests/test_advise.py reads every recipe back).
_VERL_ADV = {
    "rloo": ("loo", None, {}),
    "zoo_raw": ("raw", "topr", {}),
    "zoo_mean": ("mean", "asymre", {"offset": ("offset",)}),
    "zoo_shifted_mean": ("shifted_mean", "shifted_regression", {"beta": ("beta",), "delta": ("delta",)}),
    "zoo_soft_value": ("soft_value", "opmd_lme", {"beta": ("beta", "beta1")}),
    "zoo_decoupled_soft_value": ("soft_value", "oapl", {"beta1": ("beta1",)}),
    "zoo_soft_value_above": ("soft_value", "opmd_above", {"beta": ("beta", "beta1"), "delta": ("delta",)}),
    "zoo_awr": ("awr-weight", "awr", {"beta": ("beta",), "max_weight": ("max_weight",)}),
    "zoo_tpo": ("tpo-weight", "tpo", {"beta": ("beta",)}),
}
#: zoo_mean's offset default in sims.integrations.verl differs from asymre's own (0.1): 0.
_VERL_ADV_DEFAULTS = {"zoo_mean": {"offset": 0.0}}


def _verl_root() -> Path:
    spec = importlib.util.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("--verl-config / --verl-override: verl is not installed, and its defaults and key names are "
                         "read from the installed package; install it with `pip install torch==2.13.0 -e \".[verl]\"`")
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=1)
def _verl_defaults():
    """verl's trainer defaults: (the generated ppo_trainer config, the fully-async trainer's additions or None,
    verl's version, the path of the first)."""
    from omegaconf import OmegaConf

    root = _verl_root()
    base = root / "trainer" / "config" / "_generated_ppo_trainer.yaml"
    if not base.is_file():
        raise UsageError(f"--verl-config: {base} is missing from the installed verl; the advisor reads verl 0.9.x")
    cfg = OmegaConf.load(base)
    fa = root / "experimental" / "fully_async_policy" / "config" / "fully_async_ppo_trainer.yaml"
    extra = None
    if fa.is_file():
        loaded = OmegaConf.load(fa)
        extra = OmegaConf.masked_copy(loaded, [k for k in loaded if k not in ("defaults", "hydra")])
    try:
        version = importlib.metadata.version("verl")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        version = "?"
    return cfg, extra, version, base


def _leaf_paths(d, prefix=""):
    if isinstance(d, Mapping) and d:
        for k, v in d.items():
            yield from _leaf_paths(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1]


def _known_path(tree, path: str) -> bool:
    node = tree
    for part in path.split("."):
        if isinstance(node, Mapping):
            if part in node:
                node = node[part]
                continue
            return not node  # an empty mapping holds free-form keys
        return node is None  # a null default may hold a mapping
    return True


def _check_verl_key(key: str, tree, version, base) -> None:
    if key.startswith(ALG + "zoo."):
        sub = key[len(ALG + "zoo."):]
        if sub not in _ZOO_KEYS:
            raise UsageError(f"{key}: not a parameter of the toolkit's verl advantage estimators; they read "
                             + ", ".join(ALG + "zoo." + k for k in _ZOO_KEYS))
        return
    if not _known_path(tree, key):
        raise UsageError(
            f"{key}: not a key of verl {version}'s trainer config ({base.name} and the fully-async config); check the "
            f"spelling. The advisor reads {', '.join(VERL_KEYS)} and ignores every other verl key")


def read_verl(path=None, overrides: Sequence[str] = ()) -> ConfigReading:
    """The objective, G, learning rate and lag of a verl run: a YAML config file and/or Hydra override lines.

    The file and the lines are applied, in that order, over the installed verl's full default config
    (``verl/trainer/config/_generated_ppo_trainer.yaml``, plus the ``async_training`` section of the
    fully-async trainer); Hydra interpolations are resolved. A key verl does not have is an error naming
    it; a setting the zoo cannot represent (an entropy bonus, a KL in the reward, an unknown loss mode, an
    advantage estimator that does not match the loss) is an error naming the key and what is accepted.
    """
    _verl_root()  # verl installed, or a one-line error saying how to install it
    OmegaConf, _ = _omegaconf()
    defaults, fully_async, version, base = _verl_defaults()
    known = defaults if fully_async is None else OmegaConf.merge(defaults, fully_async)
    tree = OmegaConf.to_container(known, resolve=False)
    layers, given, sources = _verl_layers(path, overrides)
    for key in given:
        _check_verl_key(key, tree, version, base)
    # a fully-async run (any async_training.* key) starts from that trainer's defaults, which override some of
    # ppo_trainer's (e.g. bypass_mode=true)
    if fully_async is not None and any(k.startswith("async_training.") for k in given):
        layers.insert(0, fully_async)
        sources.insert(0, "verl fully-async defaults")
    get = _VerlGetter(OmegaConf.merge(defaults, *layers) if layers else defaults)
    name, params, notes = _verl_objective(get)
    G = _as_int_key("actor_rollout_ref.rollout.n", get("actor_rollout_ref.rollout.n"), 1)
    lr = _as_float_key(A_ + "optim.lr", get(A_ + "optim.lr"))
    lag, lag_notes = _verl_lag(get, given)
    keys = tuple((k, _text(v)) for k, v in get.read.items() if not k.startswith(("trainer.", "async_training."))
                 and not (k.startswith(ALG + "zoo.") and v is None))
    return _reading("verl config", name, params, source=" + ".join(sources) if sources else "verl defaults",
                    group_size=G, lr=lr, lag=lag, keys=keys, notes=tuple(notes + lag_notes))


def _omegaconf():
    """(``OmegaConf``, ``OmegaConfBaseException``), or a one-line error saying how to get them."""
    try:
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException
    except ImportError:
        raise UsageError("--verl-config / --verl-override: omegaconf (a dependency of verl) is not importable; "
                         "reinstall verl with `pip install torch==2.13.0 -e \".[verl]\"`") from None
    return OmegaConf, OmegaConfBaseException


def _verl_layers(path, overrides: Sequence[str]) -> tuple[list, list[str], list[str]]:
    """(configs to merge over verl's defaults, every key they set, where they come from): the file, then the lines."""
    layers, given, sources = [], [], []
    if path is not None:
        p = Path(path)
        user = _verl_file(p)
        given += list(_leaf_paths(_omegaconf()[0].to_container(user, resolve=False)))
        layers.append(user)
        sources.append(str(p))
    lines, keys = _verl_override_layer(overrides)
    given += keys
    if lines is not None:
        layers.append(lines)
        sources.append("override lines")
    return layers, given, sources


def _verl_file(p: Path):
    """The settings of a verl YAML file (its ``defaults`` and ``hydra`` sections left out)."""
    OmegaConf, OmegaConfBaseException = _omegaconf()
    if not p.is_file():
        raise UsageError(f"--verl-config {p}: no such file; pass a verl YAML config")
    try:
        user = OmegaConf.load(p)
    except (OmegaConfBaseException, ValueError, OSError) as e:
        raise UsageError(f"--verl-config {p}: not a YAML mapping ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(OmegaConf.to_container(user, resolve=False), dict):
        raise UsageError(f"--verl-config {p}: the file must hold a mapping of verl settings")
    return OmegaConf.masked_copy(user, [k for k in user if k not in ("defaults", "hydra")])


def _verl_override_layer(overrides: Sequence[str]):
    """(the config of Hydra override lines ``key=value`` / ``+key=value``, or None if there are none; their keys)."""
    OmegaConf, OmegaConfBaseException = _omegaconf()
    given, dotlist = [], []
    for line in overrides:
        line = line.strip()
        if line.startswith("~"):
            raise UsageError(f"--verl-override {line!r}: deleting a key is not supported; set the value instead")
        key, eq, value = line.lstrip("+").partition("=")
        if not eq or not key:
            raise UsageError(f"--verl-override {line!r}: not key=value (e.g. actor_rollout_ref.actor.ppo_epochs=2)")
        given.append(key.strip())
        dotlist.append(f"{key.strip()}={value}")
    if not dotlist:
        return None, given
    try:
        return OmegaConf.from_dotlist(dotlist), given
    except (OmegaConfBaseException, ValueError) as e:
        raise UsageError(f"--verl-override: {' '.join(str(e).split())[:200]}") from None


class _VerlGetter:
    """``get(key, default=None)``: a key's value in a merged verl config (containers as plain types).

    Every key read is recorded, in the order first read, with its value in ``read``: the reading lists them.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.read: dict[str, Any] = {}

    def __call__(self, key, default=None):
        OmegaConf, OmegaConfBaseException = _omegaconf()
        try:
            v = OmegaConf.select(self.cfg, key, default=default, throw_on_missing=False)
        except OmegaConfBaseException as e:
            raise UsageError(f"{key}: cannot resolve its value ({' '.join(str(e).split())[:200]})") from None
        if OmegaConf.is_config(v):
            v = OmegaConf.to_container(v, resolve=True)
        self.read[key] = v
        return v


def _reading(where: str, name: str, params: dict, *, lag: LagSpec, **fields) -> ConfigReading:
    """The :class:`ConfigReading` of the zoo's ``name`` with ``params``; a UsageError from ``where`` if the zoo refuses."""
    try:
        obj = make_objective(name, **params)
    except ValueError as e:
        raise UsageError(f"{where}: the settings give the zoo's {name!r} with {params}, which it refuses: "
                         f"{e}") from None
    return ConfigReading(framework=lag.framework, objective=name, params=_params_tuple(obj), lag=lag, **fields)


def _text(v) -> str:
    return "null" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))


def _as_float_key(key, v, *, allow_none=False):
    if v is None and allow_none:
        return None
    try:
        if isinstance(v, bool):
            raise ValueError
        out = float(v)
    except (TypeError, ValueError):
        raise UsageError(f"{key}: expected a number, got {v!r}") from None
    if math.isnan(out):
        raise UsageError(f"{key}: expected a number, got NaN")
    return out


def _as_int_key(key, v, minimum):
    if isinstance(v, bool) or v is None:
        raise UsageError(f"{key}: expected an integer >= {minimum}, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise UsageError(f"{key}: expected an integer >= {minimum}, got {v!r}") from None
    if not f.is_integer() or f < minimum:
        raise UsageError(f"{key}: expected an integer >= {minimum}, got {v!r}")
    return int(f)


def _as_bool_key(key, v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise UsageError(f"{key}: expected true or false, got {v!r}")


def _pick_name(candidates, params) -> str:
    """The first candidate whose published parameters equal ``params`` (the std's ``eps`` aside), else the first."""
    for c in candidates:
        d = make_objective(c).params
        if all(k in d and d[k] == v for k, v in params.items() if k not in ("eps", "norm_constant")):
            return c
    return candidates[0]


@dataclass(frozen=True)
class _VerlSettings:
    """The verl settings that every loss mode checks, read in this order (the reading lists the keys in it)."""

    get: Any  #: ``get(key, default=None)`` (:class:`_VerlGetter`), for the settings of one loss mode
    mode: Any  #: actor.policy_loss.loss_mode
    adv: Any  #: algorithm.adv_estimator
    norm: bool  #: algorithm.norm_adv_by_std_in_grpo
    use_kl: bool  #: actor.use_kl_loss
    rollout_is: Any  #: algorithm.rollout_correction.rollout_is
    bypass: bool  #: algorithm.rollout_correction.bypass_mode
    zoo: Mapping[str, Any]  #: the algorithm.zoo.* keys that are set
    adv_name: str  #: the zoo's name of the advantage that verl's estimator computes

    @classmethod
    def read(cls, get) -> "_VerlSettings":
        """Read the settings; UsageError for a KL in the reward or an entropy bonus (no zoo objective has them)."""
        mode = get(A_ + "policy_loss.loss_mode")
        adv = get(ALG + "adv_estimator")
        norm = _as_bool_key(ALG + "norm_adv_by_std_in_grpo", get(ALG + "norm_adv_by_std_in_grpo"))
        if _as_bool_key(ALG + "use_kl_in_reward", get(ALG + "use_kl_in_reward")):
            raise UsageError(f"{ALG}use_kl_in_reward=true: a KL penalty in the reward is not an objective of the zoo; "
                             "the advisor accepts false (use actor_rollout_ref.actor.use_kl_loss with the PPO family)")
        ent = _as_float_key(A_ + "entropy_coeff", get(A_ + "entropy_coeff", 0.0))
        if ent != 0:
            raise UsageError(f"{A_}entropy_coeff={ent:g}: an entropy bonus is not part of any zoo objective; the "
                             "advisor accepts 0")
        use_kl = _as_bool_key(A_ + "use_kl_loss", get(A_ + "use_kl_loss"))
        rollout_is = get(ALG + "rollout_correction.rollout_is")
        bypass = _as_bool_key(ALG + "rollout_correction.bypass_mode", get(ALG + "rollout_correction.bypass_mode"))
        zoo = {k: get(ALG + "zoo." + k) for k in _ZOO_KEYS}
        zoo = {k: v for k, v in zoo.items() if v is not None}
        return cls(get, mode, adv, norm, use_kl, rollout_is, bypass, zoo, _verl_adv_name(adv, norm))

    def adv_params(self, est) -> dict:
        """Parameters the verl estimator ``est`` sets, from algorithm.zoo.* (else its objective's defaults)."""
        if est not in _VERL_ADV or _VERL_ADV[est][1] is None:
            return {}
        _, owner, keys = _VERL_ADV[est]
        base = dict(make_objective(owner).params)
        base.update(_VERL_ADV_DEFAULTS.get(est, {}))
        out = {}
        for key, targets in keys.items():
            for t in targets:
                out[t] = float(self.zoo[key]) if key in self.zoo else base[t]
        return out

    def no_kl(self, what: str) -> None:
        """UsageError if actor.use_kl_loss is on: ``what`` has no KL-to-reference term in the zoo."""
        if self.use_kl:
            raise UsageError(f"{A_}use_kl_loss=true with loss_mode {self.mode}: {what} has no KL-to-reference term in "
                             "the zoo; the advisor accepts use_kl_loss=false (or loss_mode vanilla, whose kl_beta is "
                             "the k3 KL)")

    def no_is(self) -> None:
        """UsageError if rollout importance weights are on (only loss_mode vanilla maps them: tis / areal)."""
        if self.rollout_is:
            raise UsageError(f"{ALG}rollout_correction.rollout_is={self.rollout_is} with loss_mode {self.mode}: the "
                             "rollout correction weights are not part of this zoo objective; the advisor accepts them "
                             "only with loss_mode vanilla (the zoo's tis / areal)")

    def clip_eps(self) -> tuple[float, float]:
        """(eps_low, eps_high): clip_ratio_low / clip_ratio_high, each clip_ratio when null."""
        c = self.get(A_ + "clip_ratio")
        lo = self.get(A_ + "clip_ratio_low")
        hi = self.get(A_ + "clip_ratio_high")
        lo = _as_float_key(A_ + "clip_ratio_low", c if lo is None else lo)
        hi = _as_float_key(A_ + "clip_ratio_high", c if hi is None else hi)
        return lo, hi


def _verl_adv_name(adv, norm: bool) -> str:
    """The zoo's advantage for verl's estimator ``adv`` (``grpo``: the std-normalized one if ``norm``, else ``mean``)."""
    if adv == "grpo":
        return "grpo" if norm else "mean"
    if adv in _VERL_ADV:
        return _VERL_ADV[adv][0]
    raise UsageError(
        f"{ALG}adv_estimator={adv}: not mapped to a zoo advantage (a critic's GAE, or an estimator the zoo does not "
        f"have); the advisor accepts grpo (with {ALG}norm_adv_by_std_in_grpo), {', '.join(_VERL_ADV)}")


def _verl_objective(get):
    """(zoo name, parameter overrides, notes) from the verl settings; the loss mode picks the reader.

    ``zoo_<name>`` is the zoo's own loss (:func:`_verl_zoo_loss`); verl's built-in loss modes are read by
    the functions of :data:`_VERL_MODES`.
    """
    mode, adv = get(A_ + "policy_loss.loss_mode"), get(ALG + "adv_estimator")
    if _needs_recipe_match(get, mode, adv):
        return _verl_recipe_match(get, mode, adv)
    s = _VerlSettings.read(get)
    if isinstance(s.mode, str) and s.mode.startswith("zoo_"):
        return _verl_zoo_loss(s)
    reader = _VERL_MODES.get(s.mode) if isinstance(s.mode, str) else None
    if reader is None:
        raise UsageError(f"{A_}policy_loss.loss_mode={s.mode}: not mapped to a zoo objective; the advisor accepts "
                         f"{', '.join(_VERL_LOSS_MODES)} and zoo_<name> (sims.integrations.verl)")
    return reader(s)


#: verl settings that only the recipe match reads (the hand-written readers above do not): rejection sampling,
#: bypass mode, sequence-level or two-sided (``"lo_hi"``) rollout importance weights.
_RECIPE_ONLY_KEYS = (ALG + "rollout_correction.rollout_rs",)


def _needs_recipe_match(get, mode, adv) -> bool:
    """Whether the settings name a loss mode, estimator or correction that only a spec's recipe maps."""
    if isinstance(mode, str) and mode.startswith("zoo_"):
        return False  # the zoo's own losses: read by _verl_zoo_loss (bypass mode is how they run)
    if isinstance(mode, str) and mode in _VERL_MODES and (adv == "grpo" or adv in _VERL_ADV):
        is_level = get(ALG + "rollout_correction.rollout_is")
        threshold = get(ALG + "rollout_correction.rollout_is_threshold")
        bypass = get(ALG + "rollout_correction.bypass_mode")
        return (any(get(k) is not None for k in _RECIPE_ONLY_KEYS) or is_level == "sequence"
                or (isinstance(threshold, str) and "_" in threshold) or bypass in (True, "true", "True"))
    return True


def _same_setting(have, want: str) -> bool:
    """A verl setting as read equals a recipe's Hydra value (numbers by value, the rest as Hydra writes them)."""
    if have is None:
        return want == "null"
    try:
        return math.isclose(float(have), float(want), rel_tol=1e-12) or (math.isinf(float(have)) and float(have) == float(want))
    except (TypeError, ValueError):
        return str(have).lower() == want.lower()


def _verl_recipe_match(get, mode, adv):
    """(zoo name, its parameters, notes): the built-in objective whose verl recipe these settings are.

    Every setting of the objective's recipe (``theory.recipes.verl_recipe``) must hold; the objective is then
    read at its published parameters. UsageError naming the closest recipe's first differing setting otherwise.
    """
    from .objectives import builtin_objectives

    candidates, matches = [], []
    for name in builtin_objectives():
        recipe = objective_spec(name).verl
        if recipe is None or recipe.loss_mode != mode or recipe.adv_estimator != adv:
            continue
        lines = [line.split("=", 1) for line in recipe.overrides()]
        diff = [(k, v, get(k)) for k, v in lines if not _same_setting(get(k), v)]
        if diff:
            candidates.append((len(diff), name, diff[0]))
        else:
            matches.append((-len(lines), name))  # the most specific recipe that holds
    if matches:
        name = min(matches)[1]
        keys = {line.split("=", 1)[0] for line in objective_spec(name).verl.overrides()}
        for key in (ALG + "rollout_correction.rollout_rs", ALG + "rollout_correction.rollout_is"):
            if get(key) is not None and key not in keys:
                raise UsageError(f"{key}={get(key)}: the zoo objective these settings otherwise are ({name}) has no such "
                                 "correction; the advisor accepts the corrections of the zoo_corrections recipes")
        return name, dict(make_objective(name).params), [f"read as the zoo's {name} at its published settings "
                                                         "(its verl recipe)"]
    recipe_advs = {objective_spec(n).verl.adv_estimator for n in builtin_objectives() if objective_spec(n).verl}
    if adv not in recipe_advs and adv not in _VERL_ADV:
        from .recipes import VERL_ESTIMATOR_VERDICTS

        why = VERL_ESTIMATOR_VERDICTS.get(adv, "an estimator the zoo does not have")
        raise UsageError(f"{ALG}adv_estimator={adv}: not mapped to a zoo advantage ({why}); the advisor accepts grpo "
                         f"(with {ALG}norm_adv_by_std_in_grpo), {', '.join(sorted(recipe_advs | set(_VERL_ADV)))}")
    if not candidates:
        raise UsageError(f"{A_}policy_loss.loss_mode={mode} with {ALG}adv_estimator={adv}: not mapped to a zoo "
                         f"objective; the advisor accepts {', '.join(_VERL_LOSS_MODES)}, zoo_<name> and the recipes of "
                         "sims.integrations.verl.recipe(name)")
    _, name, (key, want, have) = min(candidates)
    raise UsageError(f"{key}={have}: the closest zoo objective for loss_mode={mode}, adv_estimator={adv} is {name}, "
                     f"whose recipe sets {want}; the advisor reads these objectives at their published settings")


def _verl_zoo_loss(s: _VerlSettings):
    """loss_mode ``zoo_<name>``: the zoo's ``name``, its parameters from dro_beta and the estimator's algorithm.zoo.*."""
    name = s.mode[4:]
    if name not in objective_names():
        raise UsageError(f"{A_}policy_loss.loss_mode={s.mode}: no zoo objective {name!r}; valid: "
                         + ", ".join("zoo_" + n for n in objective_names()))
    obj0 = make_objective(name)
    s.no_kl(f"the zoo's {name}")
    s.no_is()
    want = obj0.advantage
    params: dict = {}
    beta = s.get(A_ + "policy_loss.dro_beta")
    if beta is not None and "beta" in obj0.params:
        params["beta"] = _as_float_key(A_ + "policy_loss.dro_beta", beta)
    if s.adv_name != want or (want == "mean" and s.adv == "grpo" and obj0.params.get("offset", 0.0)):
        raise UsageError(
            f"{ALG}adv_estimator={s.adv} (norm_adv_by_std_in_grpo={str(s.norm).lower()}) gives the {s.adv_name!r} "
            f"advantage, but loss_mode {s.mode} is the zoo's {name} with the {want!r} advantage; use the settings of "
            f"sims.integrations.verl.recipe({name!r})")
    ap = s.adv_params(s.adv)
    baseline = _VERL_ZOO_BASELINES.get(want)
    if baseline is not None:
        params.update(baseline(s, obj0, params, ap))
    notes: list[str] = []
    if obj0.family == "regression" and not s.bypass:
        notes.append(f"{ALG}rollout_correction.bypass_mode=false: verl recomputes old_log_prob with the weights at "
                     "the start of each local update and the regression anchors there, not at the policy that "
                     "generated the data; the advisor models the anchor as the data's policy (bypass_mode=true, "
                     f"as recipe({name!r}) sets)")
    return name, params, notes


def _soft_value_params(s: _VerlSettings, obj0: Objective, params: dict, ap: dict) -> dict:
    """The soft-value baseline's beta1 (and delta): the estimator must be this loss's, with the loss's beta."""
    name = s.mode[4:]
    expected = ("zoo_soft_value_above" if "delta" in obj0.params else
                "zoo_soft_value" if obj0.params["beta1"] == obj0.params["beta"] else "zoo_decoupled_soft_value")
    if s.adv != expected:
        raise UsageError(f"{ALG}adv_estimator={s.adv} is not the baseline of loss_mode {s.mode} (the zoo's {name} "
                         f"regresses on {expected}'s advantage); use the settings of "
                         f"sims.integrations.verl.recipe({name!r})")
    loss_beta = params.get("beta", obj0.params["beta"])
    if s.adv == "zoo_soft_value_above" and ap["beta"] != loss_beta:
        raise UsageError(
            f"{ALG}zoo.beta={ap['beta']:g} differs from the loss's beta {loss_beta:g} ({A_}policy_loss.dro_beta):"
            f" V sits delta x zoo.beta above the soft value, so the pair is not the zoo's {name}; set "
            f"+{ALG}zoo.beta=${{{A_}policy_loss.dro_beta}}")
    return {"beta1": ap["beta1"], **({"delta": ap["delta"]} if "delta" in ap else {})}


def _shifted_mean_params(s: _VerlSettings, obj0: Objective, params: dict, ap: dict) -> dict:
    """The shifted mean baseline's delta; its beta must be the loss's (the shifted regression has one beta)."""
    loss_beta = params.get("beta", obj0.params["beta"])
    if ap["beta"] != loss_beta:
        raise UsageError(
            f"{ALG}zoo.beta={ap['beta']:g} differs from the loss's beta {loss_beta:g} ({A_}policy_loss.dro_beta):"
            f" the shifted regression has one beta; set +{ALG}zoo.beta=${{{A_}policy_loss.dro_beta}}")
    return {"delta": ap["delta"]}


def _mean_params(s: _VerlSettings, obj0: Objective, params: dict, ap: dict) -> dict:
    """The mean baseline's offset, for an objective that has one (zoo_mean's default: 0)."""
    return {"offset": ap.get("offset", 0.0)} if "offset" in obj0.params else {}


#: The zoo's advantage of a ``zoo_<name>`` loss -> the parameters its verl estimator sets (checked against the loss).
_VERL_ZOO_BASELINES = {"soft_value": _soft_value_params, "shifted_mean": _shifted_mean_params, "mean": _mean_params}


def _verl_clip_range(s: _VerlSettings) -> tuple[float, float]:
    """(eps_low, eps_high) of verl's built-in clipped losses, which the advisor maps with the grpo advantage only."""
    if s.adv_name not in ("grpo", "mean"):
        raise UsageError(f"{ALG}adv_estimator={s.adv} with loss_mode {s.mode}: the advisor maps verl's built-in "
                         f"{s.mode} loss with the grpo advantage (norm_adv_by_std_in_grpo true or false)")
    return s.clip_eps()


def _verl_vanilla(s: _VerlSettings):
    """loss_mode vanilla: the zoo's PPO family (dual clip = clip_ratio_c, kl_beta = the k3 KL's coefficient)."""
    lo, hi = _verl_clip_range(s)
    c = _as_float_key(A_ + "clip_ratio_c", s.get(A_ + "clip_ratio_c"), allow_none=True)
    dual = None if c is None or math.isinf(c) else c
    if s.rollout_is:
        return _verl_decoupled(s, lo, hi, c, dual)
    kl_beta = 0.0
    if s.use_kl:
        kind = s.get(A_ + "kl_loss_type")
        if kind not in ("low_var_kl", "k3"):
            raise UsageError(f"{A_}kl_loss_type={kind}: the zoo's PPO family has the k3 KL to the reference "
                             "(kl_beta); the advisor accepts low_var_kl or k3")
        kl_beta = _as_float_key(A_ + "kl_loss_coef", s.get(A_ + "kl_loss_coef"))
    params = {"eps_low": lo, "eps_high": hi, "dual_clip": dual, "kl_beta": kl_beta}
    if s.adv_name == "mean":
        return "dr_grpo", params, []
    agg = s.get(A_ + "loss_agg_mode")
    cands = ["grpo", "ppo", "ppo_dual_clip", "dapo"] if agg == "seq-mean-token-mean" else [
        "ppo", "ppo_dual_clip", "dapo", "grpo"]
    return _pick_name(cands, params), params, []


def _verl_decoupled(s: _VerlSettings, lo: float, hi: float, c, dual):
    """loss_mode vanilla with token-level rollout importance weights: the zoo's tis (capped) or areal (uncapped)."""
    if s.rollout_is != "token" or s.bypass:
        raise UsageError(f"{ALG}rollout_correction.rollout_is={s.rollout_is} (bypass_mode="
                         f"{str(s.bypass).lower()}): the advisor maps token-level rollout importance weights "
                         "with bypass_mode=false (the zoo's tis / areal)")
    if dual is not None:
        raise UsageError(f"{A_}clip_ratio_c={c:g} with rollout importance weights: the zoo's tis / areal "
                         f"have no dual clip; the advisor accepts {A_}clip_ratio_c=inf there")
    s.no_kl("decoupled PPO (tis / areal)")
    if s.adv_name != "grpo":
        raise UsageError(f"{ALG}norm_adv_by_std_in_grpo=false with rollout importance weights: the zoo's "
                         "tis / areal use the grpo advantage; the advisor accepts true")
    thr = _as_float_key(ALG + "rollout_correction.rollout_is_threshold",
                        s.get(ALG + "rollout_correction.rollout_is_threshold"), allow_none=True)
    if thr is None or math.isinf(thr):
        return "areal", {"eps_low": lo, "eps_high": hi}, []
    return "tis", {"eps_low": lo, "eps_high": hi, "is_cap": thr}, []


def _verl_ratio_loss(s: _VerlSettings):
    """loss_mode gspo, cispo or sapo: the zoo's objective of that name, with the grpo advantage."""
    lo, hi = _verl_clip_range(s)
    s.no_is()
    if s.adv_name != "grpo":
        raise UsageError(f"{ALG}norm_adv_by_std_in_grpo=false with loss_mode {s.mode}: the zoo's {s.mode} uses the "
                         "grpo advantage; the advisor accepts true")
    s.no_kl(f"the zoo's {s.mode}")
    if s.mode == "gspo":
        return "gspo", {"eps_low": lo, "eps_high": hi}, []
    if s.mode == "cispo":
        return "cispo", {"eps_low": None if lo >= 1.0 else lo, "eps_high": hi}, []
    return "sapo", {"tau_pos": _as_float_key(A_ + "tau_pos", s.get(A_ + "tau_pos")),
                    "tau_neg": _as_float_key(A_ + "tau_neg", s.get(A_ + "tau_neg"))}, []


#: loss_mode gpg: verl's estimator -> the zoo's REINFORCE-type objective it makes.
_VERL_GPG_OWNERS = {"zoo_mean": "asymre", "zoo_awr": "awr", "zoo_tpo": "tpo"}


def _verl_gpg(s: _VerlSettings):
    """loss_mode gpg (plain REINFORCE): the objective whose estimator verl runs (:data:`_VERL_GPG_OWNERS`)."""
    s.no_is()
    s.no_kl("REINFORCE (gpg)")
    if s.adv not in _VERL_GPG_OWNERS:
        raise UsageError(f"{ALG}adv_estimator={s.adv} with loss_mode gpg: the advisor maps gpg with zoo_mean "
                         "(asymre), zoo_awr (awr) or zoo_tpo (tpo)")
    return _VERL_GPG_OWNERS[s.adv], s.adv_params(s.adv), []


def _verl_dro(s: _VerlSettings):
    """loss_mode dro: the zoo's reinforce_k2 (the mean baseline, beta = dro_beta)."""
    s.no_is()
    s.no_kl("REINFORCE with the k2 penalty (dro)")
    if s.adv_name != "mean":
        raise UsageError(f"{ALG}adv_estimator={s.adv} (norm_adv_by_std_in_grpo={str(s.norm).lower()}) with loss_mode "
                         "dro: the zoo's reinforce_k2 uses the mean baseline; the advisor accepts grpo with "
                         "norm_adv_by_std_in_grpo=false")
    beta = s.get(A_ + "policy_loss.dro_beta")
    if beta is None:
        raise UsageError(f"{A_}policy_loss.dro_beta is null with loss_mode dro: set it (it is reinforce_k2's beta)")
    return "reinforce_k2", {"beta": _as_float_key(A_ + "policy_loss.dro_beta", beta)}, []


#: verl's built-in loss modes -> the function that maps each to the zoo (besides ``zoo_<name>``).
_VERL_MODES = {"vanilla": _verl_vanilla, "gspo": _verl_ratio_loss, "cispo": _verl_ratio_loss,
               "sapo": _verl_ratio_loss, "gpg": _verl_gpg, "dro": _verl_dro}
_VERL_LOSS_MODES = tuple(_VERL_MODES)


def _verl_lag(get, given) -> tuple[LagSpec, list[str]]:
    notes: list[str] = []
    B = _as_int_key("data.train_batch_size", get("data.train_batch_size"), 1)
    mini = _as_int_key(A_ + "ppo_mini_batch_size", get(A_ + "ppo_mini_batch_size"), 1)
    epochs = _as_int_key(A_ + "ppo_epochs", get(A_ + "ppo_epochs"), 1)
    keys = [("data.train_batch_size", B), (A_ + "ppo_mini_batch_size", mini), (A_ + "ppo_epochs", epochs)]
    if any(k.startswith("async_training.") for k in given):
        T = _as_int_key("async_training.trigger_parameter_sync_step",
                        get("async_training.trigger_parameter_sync_step"), 1)
        rb = _as_int_key("async_training.require_batches", get("async_training.require_batches"), 1)
        st = _as_float_key("async_training.staleness_threshold", get("async_training.staleness_threshold"))
        if st < 0:
            raise UsageError(f"async_training.staleness_threshold={st:g}: must be >= 0")
        S = int(math.ceil(st))
        n = T * epochs * rb
        keys = [("async_training.trigger_parameter_sync_step", T), ("async_training.require_batches", rb),
                ("async_training.staleness_threshold", st), (A_ + "ppo_epochs", epochs),
                (A_ + "ppo_mini_batch_size", mini)]
        how = (f"verl fully async: n = trigger_parameter_sync_step {T} x ppo_epochs {epochs} x require_batches {rb} = "
               f"{n} optimizer steps per version; S = ceil(staleness_threshold {st:g}) = {S}; largest lag = (S + 1) n - 1"
               f" = {(S + 1) * n - 1}")
        return _lag("verl-fully-async", S, n, how, keys), notes
    use_v1 = _as_bool_key("trainer.use_v1", get("trainer.use_v1"))
    keys.append(("trainer.use_v1", use_v1))
    if not use_v1:
        per = math.ceil(B / mini)
        n = epochs * per
        how = (f"verl legacy trainer (synchronous): n = ppo_epochs {epochs} x ceil(train_batch_size {B} / "
               f"ppo_mini_batch_size {mini}) = {n} optimizer steps per batch, S = 0; largest lag = n - 1 = {n - 1}")
        return _lag("verl", 0, n, how, keys), notes
    tm = get("trainer.v1.trainer_mode")
    if tm not in ("sync", "colocate_async", "separate_async"):
        raise UsageError(f"trainer.v1.trainer_mode={tm}: the advisor accepts sync, colocate_async, separate_async")
    P = get(f"trainer.v1.{tm}.parameter_sync_step")
    P = 1 if P is None else _as_int_key(f"trainer.v1.{tm}.parameter_sync_step", P, 1)
    if B % P:
        raise UsageError(f"data.train_batch_size={B} is not divisible by trainer.v1.{tm}.parameter_sync_step={P} (verl "
                         "refuses it too)")
    per = math.ceil(B // P / mini)
    n = P * epochs * per
    keys += [("trainer.v1.trainer_mode", tm), (f"trainer.v1.{tm}.parameter_sync_step", P)]
    if tm == "sync":
        S, s_text = 0, "S = 0 (sync: each global step generates its own data)"
    else:
        thr = get("trainer.v1.sampler.max_off_policy_threshold")
        keys.append(("trainer.v1.sampler.max_off_policy_threshold", thr))
        if thr is None:
            raise UsageError(f"trainer.v1.sampler.max_off_policy_threshold=null with trainer_mode {tm}: the staleness "
                             "is then unbounded; set it, or give the lag with --lag")
        thr = _as_int_key("trainer.v1.sampler.max_off_policy_threshold", thr, 1)
        S, s_text = thr - 1, f"S = max_off_policy_threshold {thr} - 1 = {thr - 1}"
    how = (f"verl trainer.v1 ({tm}): n = parameter_sync_step {P} x ppo_epochs {epochs} x ceil(train_batch_size {B} / "
           f"{P} / ppo_mini_batch_size {mini}) = {n} optimizer steps per version; {s_text}; largest lag = (S + 1) n - 1"
           f" = {(S + 1) * n - 1}")
    return _lag("verl", S, n, how, keys), notes


# ----------------------------------------------------------------------------- TRL

#: The TRL keys the advisor reads (every other GRPOConfig / AsyncGRPOConfig key is accepted and ignored).
TRL_KEYS = (
    "loss_type", "epsilon", "epsilon_high", "delta", "beta", "scale_rewards", "importance_sampling_level",
    "sapo_temperature_pos", "sapo_temperature_neg", "num_generations", "learning_rate", "steps_per_generation",
    "generation_batch_size", "per_device_train_batch_size", "gradient_accumulation_steps", "num_iterations",
    "top_entropy_quantile", "entropy_coef", "use_adaptive_entropy", "off_policy_mask_threshold",
    "max_staleness", "weight_sync_steps",
)


def _trl_classes():
    try:
        from trl.trainer.grpo_config import GRPOConfig
    except ImportError:
        raise UsageError("--trl-config: TRL is not installed, and its config fields are read from the installed "
                         "package; install it with `pip install torch==2.13.0 -e \".[trl]\"`") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from trl.experimental.async_grpo import AsyncGRPOConfig
    except ImportError:  # pragma: no cover - older TRL
        AsyncGRPOConfig = None
    return GRPOConfig, AsyncGRPOConfig


def _literal(node, path, key):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError):
        raise UsageError(f"--trl-config {path}: {key} = {ast.unparse(node)} is not a literal; the advisor reads literal "
                         "values only (numbers, strings, booleans, None), without running the file") from None


def _load_trl_values(path: Path) -> tuple[dict, str | None]:
    """(settings, class name or None) from a JSON file or a Python file (read with ``ast``, never run)."""
    if not path.is_file():
        raise UsageError(f"--trl-config {path}: no such file; pass a JSON file (or a .py file) with the GRPOConfig")
    text = path.read_text()
    if path.suffix == ".py":
        try:
            tree = ast.parse(text)
        except SyntaxError as e:
            raise UsageError(f"--trl-config {path}: not valid Python ({e.msg}, line {e.lineno})") from None
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(
            n.func, "id", getattr(n.func, "attr", None)) in ("GRPOConfig", "AsyncGRPOConfig")]
        if len(calls) > 1:
            raise UsageError(f"--trl-config {path}: {len(calls)} GRPOConfig(...) calls; the file must make one")
        if calls:
            call = calls[0]
            if call.args or any(k.arg is None for k in call.keywords):
                raise UsageError(f"--trl-config {path}: write the GRPOConfig with keyword arguments only "
                             "(no *args / **d)")
            cls = getattr(call.func, "id", getattr(call.func, "attr", None))
            return {k.arg: _literal(k.value, path, k.arg) for k in call.keywords}, cls
        dicts = [n.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Dict)]
        if len(dicts) != 1:
            raise UsageError(f"--trl-config {path}: found no GRPOConfig(...) call and {len(dicts)} top-level dict "
                             "literals; the file must define one of them")
        d = _literal(dicts[0], path, "the dict")
        return d, None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--trl-config {path}: not valid JSON ({e.msg}, line {e.lineno}); pass a JSON object of "
                         "GRPOConfig settings") from None
    if not isinstance(d, dict):
        raise UsageError(f"--trl-config {path}: the JSON must be an object of GRPOConfig settings")
    return d, None


def _field_default(f):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def read_trl(path, *, num_processes: int = 1) -> ConfigReading:
    """The objective, G, learning rate and lag of a TRL run from its ``GRPOConfig`` (or ``AsyncGRPOConfig``).

    ``path``: a JSON object of settings, or a Python file defining ``GRPOConfig(...)`` (or a dict) with literal
    values (parsed, never run). The class is ``AsyncGRPOConfig`` (trl.experimental.async_grpo) when the file
    names it or sets one of its own keys (``max_staleness``, ``weight_sync_steps``, ...), else ``GRPOConfig``.
    A key the class does not have is an error naming it; a setting the zoo cannot represent is an error
    naming the key and what is accepted. ``num_processes`` converts ``generation_batch_size`` to steps.
    """
    path = Path(path)
    values, cls_name = _load_trl_values(path)
    GRPOConfig, AsyncGRPOConfig = _trl_classes()
    grpo_fields = {f.name: f for f in dataclasses.fields(GRPOConfig)}
    async_fields = {f.name: f for f in dataclasses.fields(AsyncGRPOConfig)} if AsyncGRPOConfig else {}
    only_async = [k for k in values if k in async_fields and k not in grpo_fields]
    if cls_name == "AsyncGRPOConfig" or (cls_name is None and only_async):
        if AsyncGRPOConfig is None:  # pragma: no cover
            raise UsageError(f"--trl-config {path}: {only_async[0]} is an AsyncGRPOConfig key, which this TRL lacks")
        fields, cls_name = async_fields, "AsyncGRPOConfig"
    else:
        fields, cls_name = grpo_fields, "GRPOConfig"
    for k in values:
        if k not in fields:
            other = " (an AsyncGRPOConfig key: do not mix the two)" if k in async_fields else ""
            raise UsageError(f"--trl-config {path}: {k} is not a key of TRL's {cls_name}{other}; check the spelling. "
                             f"The advisor reads {', '.join(k2 for k2 in TRL_KEYS if k2 in fields)} and ignores every "
                             f"other {cls_name} key")
    read: dict[str, Any] = {}

    def get(k):
        v = values[k] if k in values else _field_default(fields[k])
        read[k] = v
        return v

    G = _as_int_key("num_generations", get("num_generations"), 1)
    lr = _as_float_key("learning_rate", get("learning_rate"))
    eps = _as_float_key("epsilon", get("epsilon"))
    eh = get("epsilon_high")
    eh = eps if eh is None else _as_float_key("epsilon_high", eh)
    notes: list[str] = []
    if cls_name == "AsyncGRPOConfig":
        name, params = "ppo", {"eps_low": eps, "eps_high": eh, "eps": 1e-8}
        notes.append("AsyncGRPOTrainer: PPO-clip on (r - mean)/(std + 1e-8) with the group's population std; the zoo's "
                     "grpo estimator (used for the finite-group bias) divides by the unbiased std, the population "
                     "target is the same")
        S = _as_int_key("max_staleness", get("max_staleness"), 0)
        n = _as_int_key("weight_sync_steps", get("weight_sync_steps"), 1)
        how = (f"TRL AsyncGRPOTrainer: n = weight_sync_steps {n} optimizer steps per version; S = max_staleness {S}; "
               f"largest lag = (S + 1) n - 1 = {(S + 1) * n - 1}")
        lag = _lag("trl-async", S, n, how, [("max_staleness", S), ("weight_sync_steps", n)])
    else:
        name, params = _trl_objective(get, eps, eh)
        GA = _as_int_key("gradient_accumulation_steps", get("gradient_accumulation_steps"), 1)
        mu_it = _as_int_key("num_iterations", get("num_iterations"), 1)
        spg, gbs = get("steps_per_generation"), get("generation_batch_size")
        if spg is not None and gbs is not None:  # a config TRL has filled in (GRPOConfig.to_dict() writes both)
            spg, gbs = _as_int_key("steps_per_generation", spg, 1), _as_int_key("generation_batch_size", gbs, 1)
            bs = _as_int_key("per_device_train_batch_size", get("per_device_train_batch_size"), 1)
            procs = _check_count("--trl-num-processes", num_processes, 1)
            if gbs != spg * bs * procs:
                raise UsageError(f"steps_per_generation={spg} and generation_batch_size={gbs} are both set and "
                                 f"disagree: generation_batch_size = per_device_train_batch_size {bs} x num_processes "
                                 f"{procs} x steps_per_generation; keep one, or check --trl-num-processes")
        if spg is not None:
            spg = _as_int_key("steps_per_generation", spg, 1)
            src = f"steps_per_generation {spg}"
        elif gbs is not None:
            gbs = _as_int_key("generation_batch_size", gbs, 1)
            bs = _as_int_key("per_device_train_batch_size", get("per_device_train_batch_size"), 1)
            procs = _check_count("--trl-num-processes", num_processes, 1)
            if gbs % (bs * procs):
                raise UsageError(f"generation_batch_size={gbs} is not divisible by per_device_train_batch_size {bs} x "
                                 f"num_processes {procs} (TRL refuses it too); check --trl-num-processes")
            spg = gbs // (bs * procs)
            src = f"steps_per_generation = generation_batch_size {gbs} / ({bs} x {procs} processes) = {spg}"
        else:
            spg = GA
            src = f"steps_per_generation = gradient_accumulation_steps = {GA} (default)"
        n = math.ceil(spg * mu_it / GA)
        how = (f"TRL GRPOTrainer: {src}; one generation feeds steps_per_generation x num_iterations {mu_it} = "
               f"{spg * mu_it} micro-steps, n = ceil({spg * mu_it} / gradient_accumulation_steps {GA}) = {n} optimizer "
               f"steps; largest lag = n - 1 = {n - 1}")
        lag = LagSpec("trl", 0, n - 1, 0, n, how, tuple(
            (k, str(v)) for k, v in [("steps_per_generation", spg), ("num_iterations", mu_it),
                                     ("gradient_accumulation_steps", GA)]))
    return _reading(f"--trl-config {path}", name, params, source=f"{path} ({cls_name})", group_size=G, lr=lr,
                    lag=lag, keys=tuple((k, _text(v)) for k, v in read.items()), notes=tuple(notes))


def _trl_objective(get, eps, eh):
    """(zoo name, parameter overrides) from GRPOConfig's loss settings."""
    for key, ok, accepts in (
        ("top_entropy_quantile", lambda v: v is None or float(v) >= 1.0, "1.0"),
        ("entropy_coef", lambda v: v is None or float(v) == 0.0, "0"),
        ("use_adaptive_entropy", lambda v: not v, "false"),
    ):
        v = get(key)
        if not ok(v):
            raise UsageError(f"{key}={v!r}: changes the loss beyond any zoo objective; the advisor accepts {accepts}")
    lt = get("loss_type")
    scale = get("scale_rewards")
    scale = {True: "group", False: "none"}.get(scale, scale)
    if scale not in ("group", "none"):
        raise UsageError(f"scale_rewards={scale!r}: the batch-wide std is not a zoo advantage; the advisor accepts "
                         "group (the grpo advantage) or none (the mean baseline)")
    kl_beta = _as_float_key("beta", get("beta"))
    level = get("importance_sampling_level")
    delta = get("delta")

    def plain(what):
        if kl_beta:
            raise UsageError(f"beta={kl_beta:g} with loss_type {lt}: {what} has no KL-to-reference term in the zoo; the "
                             "advisor accepts beta=0 there")
        if delta is not None:
            raise UsageError(f"delta={delta!r} with loss_type {lt}: {what} has no dual clip in the zoo; the advisor "
                             "accepts delta=null there")
        if scale != "group":
            raise UsageError(f"scale_rewards={scale} with loss_type {lt}: the zoo's {what} uses the grpo advantage; the "
                             "advisor accepts scale_rewards=group")

    opsm = get("off_policy_mask_threshold")
    if opsm is not None:
        if lt != "grpo" or level not in ("token", None):
            raise UsageError(f"off_policy_mask_threshold={opsm!r} with loss_type {lt} (importance_sampling_level "
                             f"{level}): the zoo's grpo_opsm is the mask on loss_type grpo at token level; the advisor "
                             "accepts that, or null")
        plain("grpo with the off-policy mask (grpo_opsm)")
        return "grpo_opsm", {"eps_low": eps, "eps_high": eh, "opsm_delta": _as_float_key("off_policy_mask_threshold", opsm),
                             "eps": 1e-4}
    if lt == "vespo":
        plain("VESPO")
        return "vespo", {k: _as_float_key(f"vespo_{k}", get(f"vespo_{k}"))
                         for k in ("k_pos", "lambda_pos", "k_neg", "lambda_neg")} | {"eps": 1e-4}
    if lt == "luspo":
        plain("LUSPO")
        if level != "sequence":
            raise UsageError(f"importance_sampling_level={level!r} with loss_type luspo: TRL requires sequence")
        return "luspo", {"eps_low": eps, "eps_high": eh, "eps": 1e-4}
    if lt in ("grpo", "dapo", "bnpo", "dr_grpo"):
        if level == "sequence":
            plain("GSPO")
            return "gspo", {"eps_low": eps, "eps_high": eh, "eps": 1e-4}
        if level not in ("token", None):
            raise UsageError(f"importance_sampling_level={level!r}: the advisor accepts token or sequence")
        dual = None
        if delta is not None:
            dual = _as_float_key("delta", delta)
            if dual < 1.0 + eh:
                raise UsageError(f"delta={dual:g} < 1 + epsilon_high: TRL's two-sided clip then also caps positive "
                                 "advantages, which no zoo objective does; the advisor accepts delta >= 1 + epsilon_high "
                                 "(the zoo's dual clip) or null")
        params = {"eps_low": eps, "eps_high": eh, "dual_clip": dual, "kl_beta": kl_beta}
        if scale == "none":
            return "dr_grpo", params
        params["eps"] = 1e-4
        # TRL's loss type names its counterpart (the aggregations differ; on a bandit the target does not)
        return {"grpo": "grpo", "dapo": "dapo", "bnpo": "ppo", "dr_grpo": "ppo"}[lt], params
    if lt == "cispo":
        plain("CISPO")
        if eh <= 1.0:
            raise UsageError(f"epsilon_high={eh:g} with loss_type cispo: TRL caps the ratio at epsilon_high itself, so it "
                             "must be > 1 (ScaleRL: 5.0); the zoo's eps_high is epsilon_high - 1")
        return "cispo", {"eps_low": None, "eps_high": eh - 1.0, "eps": 1e-4}
    if lt == "sapo":
        plain("SAPO")
        return "sapo", {"tau_pos": _as_float_key("sapo_temperature_pos", get("sapo_temperature_pos")),
                        "tau_neg": _as_float_key("sapo_temperature_neg", get("sapo_temperature_neg")), "eps": 1e-4}
    raise UsageError(f"loss_type={lt!r}: not mapped to a zoo objective (the advisor accepts grpo, dapo, bnpo, dr_grpo, "
                     "cispo, sapo, luspo and vespo)")


# ----------------------------------------------------------------------------- one class


def _binary_bandit(p: float) -> Bandit:
    return Bandit(f"p={p:g}", np.array([1.0 - p, p]), np.array([0.0, 1.0]), f"binary reward, pass rate {p:g}")


def _affine_in_advantage(obj: Objective, mu: np.ndarray) -> bool:
    """Whether ``obj.weight(u, A)`` is affine in ``A`` (then the expected gradient over groups is the one at Ā)."""
    rng = np.random.default_rng(0)
    K, n = mu.size, 64  # 64 random (u, a, b) per arm: ratios on both sides of 1, advantages of both signs
    mu_t = torch.as_tensor(np.broadcast_to(mu, (n, K)).copy(), dtype=torch.float64)
    u = torch.as_tensor(rng.uniform(0.05, 3.0, (n, K)))
    a, b = (torch.as_tensor(rng.normal(0.0, 2.0, (n, K))) for _ in range(2))
    z = torch.zeros((n, K), dtype=torch.float64)
    lhs = obj.weight(u, a + b, mu_t) + obj.weight(u, z, mu_t)
    rhs = obj.weight(u, a, mu_t) + obj.weight(u, b, mu_t)
    return bool(torch.allclose(lhs, rhs, rtol=1e-9, atol=1e-12))


def _target_at(obj: Objective, mu: np.ndarray, adv: np.ndarray):
    """The population target at advantages ``adv`` (closed form or KKT, certified), or (None, reason)."""
    M, Av = mu[None], adv[None]
    pi = obj.closed_form_target(M, Av)
    if pi is not None and np.isfinite(pi).all():
        it = certify(obj, M, Av, pi, "closed-form", np.ones(1, dtype=bool))
    elif obj.target_kind == "kkt":
        mu_t = torch.as_tensor(M, dtype=torch.float64)
        sol = solve_kkt(lambda u, a: obj.weight(u, a, mu_t if u.shape == mu_t.shape else None), M, Av,
                        kappa_min=obj.kappa_min)
        if not np.isfinite(sol.pi).all():
            return None, "the KKT solver finds no interior target at the group advantage (a collapse)"
        it = certify(obj, M, Av, sol.pi, "kkt", sol.converged, kappa=sol.kappa, drift=sol.drift)
    else:
        return None, "no closed form or KKT route for this objective at a shifted advantage"
    if not bool(it.converged[0]):
        return None, "the target at the group advantage is not certified"
    return it.pi[0], ""


def _class_numbers(obj: Objective, p: float, weight: float, G: int, lr: float, lag: LagSpec,
                   max_lag: int) -> ClassAdvice:
    none = {f.name: None for f in dataclasses.fields(ClassAdvice)}
    if p <= 0.0 or p >= 1.0:
        none.update(pass_rate=p, weight=weight, signal=False,
                    note="a one-arm bandit (every completion has the same reward): every objective's target is mu",
                    group_note="", lag_note="")
        return ClassAdvice(**none)
    b = _binary_bandit(p)
    mu, r = b.mu, b.r
    out = dict(none)
    out.update(pass_rate=p, weight=weight, signal=True)
    try:
        with np.errstate(all="ignore"):  # the solvers' own certificates judge the result
            e = target_measures(obj, b)
    except ValueError as err:  # a route that refuses this bandit: say so
        out.update(note=f"target not computed: {' '.join(str(err).split())}")
        out.update(_group_numbers(obj, mu, r, G, nominal_temperature(obj, mu, r)))
        out.update(_stability_numbers(obj, b, lr, lag, max_lag))
        return ClassAdvice(**out)
    out.update(pass_rate=p, weight=weight, signal=True, method=e["method"], certified=bool(e["certified"]),
               set_valued=bool(e["set_valued"]), note=e["note"] or "", regime=e["regime"],
               eta=None if e["eta"] is None else float(e["eta"]), beta_nominal=e["beta_nominal"])
    if e["set_valued"]:
        out.update(target_pass_rate_range=_pair(e["reward"]), target_entropy_range=_pair(e["entropy"]),
                   kl_target_mu_range=_pair(e["kl"]),
                   pessimism_kl_range=_pair(e["pessimism"]) if isinstance(e["pessimism"], tuple) else None)
    elif e["pi"] is not None:
        pi = np.asarray(e["pi"], dtype=np.float64)
        out.update(target_pass_rate=float(e["reward"]), target_entropy=float(e["entropy"]),
                   kl_target_mu=float(e["kl"]))
        if e["beta_nominal"] is not None:
            out["kl_target_nominal"] = float(kl_to_gibbs(pi, mu, r, e["beta_nominal"]))
            if e["certified"]:
                out["pessimism_kl"] = None if e["pessimism"] is None else float(e["pessimism"])
                out["pessimism_reward"] = float(beta_eff_reward(mu, r, e["reward"])) / e["beta_nominal"]
    out.update(nominal_pass_rate=e["nominal_reward"], nominal_entropy=e["nominal_entropy"],
               nominal_kl_mu=e["nominal_kl"])
    out.update(_group_numbers(obj, mu, r, G, nominal_temperature(obj, mu, r)))
    out.update(_stability_numbers(obj, b, lr, lag, max_lag))
    return ClassAdvice(**out)


def _pair(x):
    return None if x is None else (None if x[0] is None else float(x[0]), None if x[1] is None else float(x[1]))


def _group_numbers(obj, mu, r, G, beta_nom) -> dict:
    out = {"group_note": ""}
    adv = obj.population_advantage(mu, r)
    out["advantage"] = tuple(float(x) for x in adv)
    try:
        gadv = conditional_group_advantage(obj.advantage, mu, r, G, **obj.advantage_params())
    except ValueError as e:
        out["group_note"] = f"not computed: {' '.join(str(e).split())}"
        return out
    out["group_advantage"] = tuple(float(x) for x in gadv)
    out["group_bias"] = tuple(float(x) for x in gadv - adv)
    if not _affine_in_advantage(obj, mu):
        out["group_note"] = ("the weight is not affine in the advantage: the target with fresh groups is not the "
                             "population target at E[A_1 | y_1] (not computed)")
        return out
    try:
        with np.errstate(all="ignore"):
            pi, why = _target_at(obj, mu, gadv)
    except ValueError as err:
        pi, why = None, f"not computed: {' '.join(str(err).split())}"
    if pi is None:
        out["group_note"] = why
        return out
    out["group_target_pass_rate"] = float(pi @ r)
    out["group_kl_target_mu"] = float(kl(pi, mu))
    if obj.target_kind == "lambert":
        beta = float(obj.params["beta"])
        out["group_eta"] = float(lambert_target(mu, gadv, beta)[1])
        out["group_regime"] = REGIME_NAMES[int(regime_of(mu, gadv, beta))]
        if (gadv - adv).std() > 1e-12 * max(1.0, float(np.abs(adv).max())):
            out["group_note"] = ("the sample's own reward enters its group baseline (E[A_1 | y_1] is not A shifted by a "
                                 "constant): the sign of eta(G) need not read the pessimism (figure 7); "
                                 "beta_eff/beta(G) does")
    if beta_nom is not None:
        out["group_pessimism_kl"] = float(beta_eff_kl(mu, r, out["group_kl_target_mu"])) / beta_nom
    return out


def _stability_numbers(obj, b: Bandit, lr: float, lag: LagSpec, max_lag: int) -> dict:
    from sims.lag import stability_map  # the delayed iteration lives with the simulations (docs/theory.md section 7)

    params = dict(obj.params)
    lags = list(range(max_lag + 1))
    lrs = [lr, *LR_GRID]
    out: dict = {"lag_note": ""}
    try:
        with np.errstate(all="ignore"):
            rad = stability_map(obj.name, lags, lrs, b, obj_params=params)  # (lags, lrs)
    except ValueError as err:
        out["lag_note"] = f"not computed: {' '.join(str(err).split())}"
        return out
    if not np.isfinite(rad).all():
        out["lag_note"] = "not analysable: mu is not a fixed point of the undelayed iteration on the flat face"
        return out
    stable = rad <= 1.0 + RADIUS_TOL
    at_lr = stable[:, 0]
    bad = np.flatnonzero(~at_lr)
    if bad.size:
        out.update(largest_stable_lag=int(bad[0]) - 1, first_unstable_lag=int(bad[0]), stable_through_search=False)
    else:
        out.update(largest_stable_lag=max_lag, first_unstable_lag=None, stable_through_search=True)
    grid_ok = stable[1:, 1:].all(0)  # every lag 1..max_lag, per grid step size
    first_bad = np.flatnonzero(~grid_ok)
    if first_bad.size == 0:
        out.update(largest_stable_lr=LR_GRID[-1], smallest_unstable_lr=None)
    else:
        j = int(first_bad[0])
        out.update(largest_stable_lr=LR_GRID[j - 1] if j > 0 else None, smallest_unstable_lr=LR_GRID[j])
    L = lag.lag_max
    if L <= max_lag:
        out["radius_at_lag"] = float(rad[L, 0])
        out["stable_at_lag"] = bool(stable[L, 0])
    elif L <= LAG_EVAL_CAP:
        rL = float(stability_map(obj.name, [L], [lr], b, obj_params=params)[0, 0])
        out["radius_at_lag"] = rL
        out["stable_at_lag"] = bool(rL <= 1.0 + RADIUS_TOL) if math.isfinite(rL) else None
    else:
        out["lag_note"] = f"the configured lag {L} is above {LAG_EVAL_CAP}: not evaluated on its own"
    if bool(np.all(np.abs(rad - 1.0) <= RADIUS_TOL)):
        out["lag_note"] = ("neutral: no pull toward the lagged policy (radius 1 at every lag and step size); the "
                           "linearization neither certifies nor refutes stability beyond that")
    return out


# ----------------------------------------------------------------------------- aggregate and words


def _wmean(vals, w):
    if any(v is None for v in vals) or not vals:
        return None
    return float(np.dot(w, np.asarray(vals, dtype=np.float64)))


def _wrange(classes, w, point, rng):
    """Weighted range (lo, hi) from point values or per-class ranges; None if a class lacks both."""
    lo, hi = [], []
    for c in classes:
        x, r_ = getattr(c, point), getattr(c, rng)
        if x is not None:
            lo.append(x)
            hi.append(x)
        elif r_ is not None and r_[0] is not None and r_[1] is not None:
            lo.append(r_[0])
            hi.append(r_[1])
        else:
            return None
    return (float(np.dot(w, lo)), float(np.dot(w, hi)))


def _aggregate(classes: Sequence[ClassAdvice]) -> AggregateAdvice:
    live = [c for c in classes if c.signal]
    share = float(sum(c.weight for c in live))
    if not live:
        return AggregateAdvice(share, (), *([None] * 17))
    w = np.array([c.weight for c in live]) / share
    regimes: dict[str, float] = {}
    for c, wi in zip(live, w):
        key = c.regime if c.regime is not None else "not defined"
        regimes[key] = regimes.get(key, 0.0) + float(wi)
    pr = _wrange(live, w, "target_pass_rate", "target_pass_rate_range")
    en = _wrange(live, w, "target_entropy", "target_entropy_range")
    kr = _wrange(live, w, "kl_target_mu", "kl_target_mu_range")
    lags = [c.largest_stable_lag for c in live]
    return AggregateAdvice(
        weight_with_signal=share,
        regime_shares=tuple(regimes.items()),
        eta=_wmean([c.eta for c in live], w),
        pessimism_kl=_wmean([c.pessimism_kl for c in live], w),
        behaviour_pass_rate=_wmean([c.pass_rate for c in live], w),
        target_pass_rate=pr[0] if pr is not None and pr[0] == pr[1] else None,
        target_pass_rate_range=pr if pr is not None and pr[0] != pr[1] else None,
        target_entropy=en[0] if en is not None and en[0] == en[1] else None,
        target_entropy_range=en if en is not None and en[0] != en[1] else None,
        kl_target_mu=kr[0] if kr is not None and kr[0] == kr[1] else None,
        kl_target_mu_range=kr if kr is not None and kr[0] != kr[1] else None,
        kl_target_nominal=_wmean([c.kl_target_nominal for c in live], w),
        nominal_pass_rate=_wmean([c.nominal_pass_rate for c in live], w),
        group_target_pass_rate=_wmean([c.group_target_pass_rate for c in live], w),
        group_eta=_wmean([c.group_eta for c in live], w),
        group_pessimism_kl=_wmean([c.group_pessimism_kl for c in live], w),
        largest_stable_lag=None if any(x is None for x in lags) else int(min(lags)),
        stable_through_search=None if any(c.stable_through_search is None for c in live) else all(
            c.stable_through_search for c in live),
        stable_at_lag=None if any(c.stable_at_lag is None for c in live) else all(c.stable_at_lag for c in live),
    )


def _f(x, d=3) -> str:
    if x is None:
        return "n/c"
    if isinstance(x, tuple):
        return f"[{_f(x[0], d)}, {_f(x[1], d)}]"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.{d - 1}e}"
    return f"{x:.{d}g}"


def _lag_words(o: ObjectiveAdvice, lag: LagSpec, lr: float, max_lag: int) -> str:
    live = [c for c in o.classes if c.signal]
    if not live:
        return ""
    if all(c.lag_note.startswith("neutral") for c in live):
        return (f"Lag: {o.objective} has no pull toward the lagged policy on the flat face (radius 1 at every lag and "
                "step size): the linearized analysis sets no lag limit for it, and none is certified either.")
    if any(c.largest_stable_lag is None for c in live):
        return "Lag: the stability analysis could not be carried out on every class (see lag notes)."
    agg = o.aggregate
    where = ", ".join(f"p={c.pass_rate:g}" for c in live if not c.stable_through_search)
    crit = [c for c in live if c.smallest_unstable_lr is not None]
    crit_txt = ""
    if crit:
        c0 = min(crit, key=lambda c: c.smallest_unstable_lr)
        crit_txt = (f" Stable step sizes (every lag 1..{max_lag}) end between {_f(c0.largest_stable_lr)} and "
                    f"{_f(c0.smallest_unstable_lr)} (class p={c0.pass_rate:g}).")
    if agg.stable_through_search:
        head = f"stable up to at least {max_lag} on every class"
    else:
        head = (f"stable only up to lag {agg.largest_stable_lag} (unstable from lag "
                f"{min(c.first_unstable_lag for c in live if c.first_unstable_lag is not None)} on {where})")
    L = lag.lag_max
    if agg.stable_at_lag is None:
        cmp_ = f"the configured lag {L} was not evaluated"
    elif agg.stable_at_lag and (L <= agg.largest_stable_lag):
        cmp_ = f"the configured lag of {L} optimizer steps is within it"
    elif agg.stable_at_lag:
        cmp_ = f"the configured lag of {L} optimizer steps is beyond the search but stable there"
    else:
        cmp_ = f"the configured lag of {L} optimizer steps EXCEEDS it (unstable at lag {L})"
    return (f"Lag: at lr = {_f(lr)} (the step size of the bandit iteration) the linearized delayed iteration is "
            f"{head}; {cmp_}.{crit_txt}")


def _verdict(o: ObjectiveAdvice, obj: Objective, G: int, lag: LagSpec, lr: float, max_lag: int) -> str:
    live = [c for c in o.classes if c.signal]
    if not live:
        return f"{o.objective}: every class has pass rate 0 or 1; there is nothing to move."
    a = o.aggregate
    parts = []
    if obj.target_kind == "lambert":
        regs = ", ".join(f"{k} on {v:.0%} of the prompts" for k, v in a.regime_shares)
        etas = [c.eta for c in live if c.eta is not None]
        span = ("eta not computed" if not etas else f"eta {_f(etas[0])}" if len(etas) == 1 else
                f"eta from {_f(min(etas))} to {_f(max(etas))} (weighted {_f(a.eta)})")
        parts.append(f"{o.objective}: {regs}; {span}.")
    else:
        parts.append(f"{o.objective}: eta and the regime are defined for the regression family only; its target is "
                     f"{obj.induced.split(';')[0]}.")
    beh = a.behaviour_pass_rate
    if a.target_pass_rate is not None:
        t = f"Target pass rate {_f(a.target_pass_rate)} (behaviour {_f(beh)}"
        if a.nominal_pass_rate is not None:
            t += f", nominal target {_f(a.nominal_pass_rate)}"
        t += f"), KL(pi||mu) {_f(a.kl_target_mu)} nats"
        if a.kl_target_nominal is not None:
            t += f", KL to the nominal target {_f(a.kl_target_nominal)} nats"
        if a.pessimism_kl is not None:
            more = ("more conservative than" if a.pessimism_kl > 1 + 1e-9 else
                    "less conservative than" if a.pessimism_kl < 1 - 1e-9 else "as conservative as")
            t += f"; beta_eff/beta = {_f(a.pessimism_kl)}: {more} the nominal target"
        parts.append(t + ".")
    elif a.target_pass_rate_range is not None:
        parts.append(f"The target is a set: pass rate {_f(a.target_pass_rate_range)} (behaviour {_f(beh)}), "
                     f"KL(pi||mu) {_f(a.kl_target_mu_range)} nats.")
    else:
        parts.append("The target was not computed on every class (see the notes).")
    if a.group_target_pass_rate is not None:
        g = f"With groups of G = {G} the fixed point has pass rate {_f(a.group_target_pass_rate)}"
        if a.group_eta is not None:
            g += f" and eta {_f(a.group_eta)}"
        parts.append(g + ".")
    elif any(c.group_bias is not None for c in live):
        c = max(live, key=lambda c: 0 if c.group_bias is None else max(abs(x) for x in c.group_bias))
        parts.append(f"With groups of G = {G} the advantage shifts by up to {_f(max(abs(x) for x in c.group_bias))} "
                     f"(class p={c.pass_rate:g}); its target at that G is not computed ({c.group_note.split(':')[0]}).")
    unsure = [f"p={c.pass_rate:g}" for c in live if c.certified is False or c.method is None]
    if unsure:
        parts.append(f"The target on {', '.join(unsure)} is not certified or not computed (see the notes).")
    parts.append(_lag_words(o, lag, lr, max_lag))
    return " ".join(p for p in parts if p)


def _comparison(reports: Sequence[ObjectiveAdvice]) -> str:
    if len(reports) < 2:
        return ""
    pts, sets = [], []
    for o in reports:
        a = o.aggregate
        if a.kl_target_mu is not None:
            pts.append((a.kl_target_mu, o))
        elif a.kl_target_mu_range is not None:
            sets.append(o)
    txt = []
    if pts:
        pts.sort(key=lambda t: t[0])
        order = " < ".join(f"{o.objective} (KL {_f(k)} nats, pass rate {_f(o.aggregate.target_pass_rate)})"
                           for k, o in pts)
        txt.append(f"Most conservative first (weighted KL(pi||mu) of the target, smaller = closer to the behaviour): "
                   f"{order}.")
    for o in sets:
        a = o.aggregate
        txt.append(f"{o.objective}'s target is a set (KL {_f(a.kl_target_mu_range)} nats, pass rate "
                   f"{_f(a.target_pass_rate_range)}); it cannot be ranked by one number.")
    lags = [(o.aggregate.largest_stable_lag, o) for o in reports if o.aggregate.largest_stable_lag is not None]
    if lags and len({x for x, _ in lags}) > 1:
        txt.append("Largest stable lag at this lr: " + ", ".join(f"{o.objective} {x}" for x, o in lags) + ".")
    return " ".join(txt)


# ----------------------------------------------------------------------------- the entry point


def advise(objectives=(DEFAULT_OBJECTIVE,), *, group_size: int = DEFAULT_GROUP_SIZE, lr: float = DEFAULT_LR,
           pass_rates: Sequence[float] = DEFAULT_PASS_RATES, weights: Sequence[float] | None = None,
           lag: LagSpec | int | None = None, max_lag: int = DEFAULT_MAX_LAG, source: str = "flags",
           notes: Sequence[str] = ()) -> Advice:
    """The report for one objective or several side by side (module docstring).

    Parameters
    ----------
    objectives : sequence
        Zoo names (``"opmd"`` or ``"opmd:beta=0.05"``), ``(name, params)`` pairs or ``Objective`` instances.
    group_size : int
        G, completions per prompt (>= 1).
    lr : float
        Learning rate, > 0: the step size of the delayed gradient iteration (see :data:`ASSUMPTIONS`).
    pass_rates : sequence of float in [0, 1]
        One prompt class per value.
    weights : sequence of float >= 0, optional
        The classes' shares (a pass-rate histogram); default equal. Normalized.
    lag : LagSpec or int, optional
        The lag in optimizer steps (an int is the largest lag); default 0.
    max_lag : int
        Lags searched for the largest stable lag: 0..max_lag (1 to 512).

    Returns
    -------
    Advice
        Frozen; ``to_json()`` / ``Advice.from_json`` round-trip it. Raises :class:`UsageError` (a
        ``ValueError``) naming the argument for bad input.
    """
    objs = [_as_objective(o) for o in objectives]
    if not objs:
        raise UsageError("objectives: give at least one zoo objective")
    G = _check_count("group_size", group_size, 1)
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise UsageError(f"lr: must be a finite number > 0, got {lr!r}") from None
    if not (math.isfinite(lr) and lr > 0):
        raise UsageError(f"lr: must be a finite number > 0, got {lr!r}")
    rates = [float(x) for x in pass_rates]
    if not rates or any(not (0.0 <= x <= 1.0) for x in rates):
        raise UsageError(f"pass_rates: each must be in [0, 1] (a class's share of passing completions), got {rates}")
    w = np.ones(len(rates)) if weights is None else np.asarray([float(x) for x in weights])
    if w.shape != (len(rates),):
        raise UsageError(f"weights: one per pass rate ({len(rates)}), got {w.size}")
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise UsageError(f"weights: must be finite, >= 0 and not all 0, got {w.tolist()}")
    w = w / w.sum()
    max_lag = _check_count("max_lag", max_lag, 1)
    if max_lag > MAX_LAG_CAP:
        raise UsageError(f"max_lag: at most {MAX_LAG_CAP} (the companion matrix grows with the lag), got {max_lag}")
    if lag is None:
        lag = LagSpec("none", 0, 0, None, None, "no lag given: 0 (on-policy)", ())
    elif not isinstance(lag, LagSpec):
        lag = _lag_from_flag(lag)
    reports = []
    for obj in objs:
        classes = tuple(_class_numbers(obj, p, float(wi), G, lr, lag, max_lag) for p, wi in zip(rates, w))
        agg = _aggregate(classes)
        o = ObjectiveAdvice(obj.name, _params_tuple(obj), obj.family, obj.nominal, obj.induced, classes, agg, "")
        reports.append(dataclasses.replace(o, verdict=_verdict(o, obj, G, lag, lr, max_lag)))
    note_list = list(notes)
    if any(not (0.0 < p < 1.0) for p in rates):
        note_list.append("classes with pass rate 0 or 1 carry no signal: they are left out of the weighted numbers "
                         "(weights renormalized over the others)")
    return Advice(source=source, group_size=G, lr=lr, pass_rates=tuple(rates), weights=tuple(float(x) for x in w),
                  max_lag=max_lag, lag=lag, objectives=tuple(reports), comparison=_comparison(reports),
                  notes=tuple(note_list), assumptions=ASSUMPTIONS)


# ----------------------------------------------------------------------------- the table


def _table(header, rows) -> list[str]:
    cols = list(zip(*([header] + rows)))
    width = [max(len(x) for x in c) for c in cols]

    def line(r):
        return "  ".join(x.rjust(wd) if i else x.ljust(wd) for i, (x, wd) in enumerate(zip(r, width))).rstrip()

    return [line(header), "  ".join("-" * wd for wd in width)] + [line(r) for r in rows]


def _pt(point, rng):
    return _f(point) if point is not None else _f(rng)


def render_table(adv: Advice) -> str:
    """The report for people: per objective a table of targets and one of the finite group and the lag."""
    L = [f"Advisor: {', '.join(o.objective for o in adv.objectives)}; G = {adv.group_size}, lr = {_f(adv.lr)}, "
         f"largest lag {adv.lag.lag_max} optimizer steps; source: {adv.source}",
         f"Lag: {adv.lag.how}"]
    if adv.lag.keys:
        L.append("  read: " + ", ".join(f"{k}={v}" for k, v in adv.lag.keys))
    for o in adv.objectives:
        params = ", ".join(f"{k}={_f(v) if isinstance(v, float) else v}" for k, v in o.params)
        L += ["", f"== {o.objective} ({params}) ==", f"nominal: {o.nominal}", f"induced: {o.induced}", ""]
        rows, rows2 = [], []
        for c in o.classes:
            if not c.signal:
                rows.append([f"p={c.pass_rate:g}", _f(c.weight)] + ["—"] * 8)
                rows2.append([f"p={c.pass_rate:g}"] + ["—"] * 7)
                continue
            rows.append([f"p={c.pass_rate:g}", _f(c.weight), c.regime or "—", _f(c.eta) if c.eta is not None else "—",
                         _pt(c.pessimism_kl, c.pessimism_kl_range) if c.beta_nominal is not None else "—",
                         _pt(c.target_pass_rate, c.target_pass_rate_range), _f(c.nominal_pass_rate),
                         _pt(c.target_entropy, c.target_entropy_range), _pt(c.kl_target_mu, c.kl_target_mu_range),
                         _f(c.kl_target_nominal)])
            bias = "n/c" if c.group_bias is None else "(" + ", ".join(_f(x) for x in c.group_bias) + ")"
            if c.lag_note.startswith("neutral"):
                stab = "neutral"
            elif c.largest_stable_lag is None:
                stab = "n/c"
            else:
                stab = f">= {c.largest_stable_lag}" if c.stable_through_search else str(c.largest_stable_lag)
            at = "n/c" if c.radius_at_lag is None else (
                f"{_f(c.radius_at_lag, 4)} ({'stable' if c.stable_at_lag else 'UNSTABLE'})")
            lr_edge = "n/c" if c.largest_stable_lr is None and c.smallest_unstable_lr is None else (
                f"> {_f(c.largest_stable_lr)}" if c.smallest_unstable_lr is None else
                f"{_f(c.largest_stable_lr)}..{_f(c.smallest_unstable_lr)}")
            rows2.append([f"p={c.pass_rate:g}", bias, _f(c.group_target_pass_rate), _f(c.group_eta),
                          _f(c.group_pessimism_kl) if c.beta_nominal is not None else "—", stab, at, lr_edge])
        a = o.aggregate
        if a.weight_with_signal > 0:
            rows.append(["weighted", _f(a.weight_with_signal),
                         ", ".join(f"{k} {v:.0%}" for k, v in a.regime_shares), _f(a.eta), _f(a.pessimism_kl),
                         _pt(a.target_pass_rate, a.target_pass_rate_range), _f(a.nominal_pass_rate),
                         _pt(a.target_entropy, a.target_entropy_range), _pt(a.kl_target_mu, a.kl_target_mu_range),
                         _f(a.kl_target_nominal)])
            neutral = all(c.lag_note.startswith("neutral") for c in o.classes if c.signal)
            rows2.append(["weighted", "", _f(a.group_target_pass_rate), _f(a.group_eta), _f(a.group_pessimism_kl),
                          "neutral" if neutral else "n/c" if a.largest_stable_lag is None else (
                              f">= {a.largest_stable_lag}" if a.stable_through_search else str(a.largest_stable_lag)),
                          "n/c" if a.stable_at_lag is None else ("stable" if a.stable_at_lag else "UNSTABLE"), ""])
        L += _table(["class", "weight", "regime", "eta", "beta_eff/beta", "pass(target)", "pass(nominal)", "H(target)",
                     "KL(pi||mu)", "KL(pi||nominal)"], rows)
        L.append("")
        L += _table(["class", f"group bias G={adv.group_size} (fail, pass)", "pass(target, G)", "eta(G)",
                     "beta_eff/beta(G)", f"largest stable lag (searched 0..{adv.max_lag})",
                     f"radius at lag {adv.lag.lag_max}",
                     "stable step sizes (grid)"], rows2)
        by_text: dict[str, list[str]] = {}
        for c in o.classes:
            for t in (c.note, c.group_note, c.lag_note):
                if t and f"{c.pass_rate:g}" not in by_text.setdefault(t, []):
                    by_text[t].append(f"{c.pass_rate:g}")
        L += [f"  note (p = {', '.join(ps)}): {t}" for t, ps in by_text.items()]
        L += ["", "Verdict: " + o.verdict]
    if adv.comparison:
        L += ["", "Comparison: " + adv.comparison]
    if adv.notes:
        L += [""] + [f"Note: {n}" for n in adv.notes]
    L += ["", "Assumptions:"] + [f"  {i}. {t}" for i, t in enumerate(adv.assumptions, 1)]
    return "\n".join(L) + "\n"


# ----------------------------------------------------------------------------- the figure


def plot_objective(report: ObjectiveAdvice, ax=None):
    """One panel: per class, the behaviour, induced-target, nominal-target and finite-G pass rates; returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 2.8))
    live = [c for c in report.classes if c.signal]
    p = np.array([c.pass_rate for c in live])
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, label="behaviour")
    pts = [(c.pass_rate, c.target_pass_rate) for c in live if c.target_pass_rate is not None]
    if pts:
        ax.plot(*zip(*pts), "o", color="C0", ms=5, label="induced target")
    for c in live:
        if c.target_pass_rate_range is not None:
            lo, hi = c.target_pass_rate_range
            ax.vlines(c.pass_rate, lo, hi, color="C0", lw=3, alpha=0.6)
    nom = [(c.pass_rate, c.nominal_pass_rate) for c in live if c.nominal_pass_rate is not None]
    if nom:
        ax.plot(*zip(*nom), "x", color="C3", ms=6, label="nominal target")
    grp = [(c.pass_rate, c.group_target_pass_rate) for c in live if c.group_target_pass_rate is not None]
    if grp:
        ax.plot(*zip(*grp), "s", mfc="none", color="C2", ms=6, label="fresh groups")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("behaviour pass rate p")
    ax.set_ylabel("target pass rate")
    a = report.aggregate
    lag = "neutral" if live and all(c.lag_note.startswith("neutral") for c in live) else (
        "n/c" if a.largest_stable_lag is None else
        (f"≥{a.largest_stable_lag}" if a.stable_through_search else str(a.largest_stable_lag)))
    regime = ", ".join(k for k, _ in a.regime_shares)
    ax.set_title(f"{report.objective}\n{regime}; stable lag {lag}", fontsize=8)
    ax.tick_params(labelsize=7)
    if p.size:
        ax.legend(fontsize=6, loc="lower right", frameon=False)
    return ax


def plot_advice(adv: Advice, path) -> Path:
    """One panel per objective (:func:`plot_objective`), written to ``path`` (PNG, PDF or SVG by its suffix)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import io

    import matplotlib.pyplot as plt

    path = Path(path)
    n = len(adv.objectives)
    # the layout is chosen here, whatever rcParams another module set (figures' style turns on constrained layout)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 2.9), squeeze=False, layout="tight")
    for o, ax in zip(adv.objectives, axes[0]):
        plot_objective(o, ax=ax)
    buf = io.BytesIO()
    fmt = path.suffix.lstrip(".").lower() or "png"
    try:
        fig.savefig(buf, format=fmt, dpi=150)
    except ValueError as e:
        raise UsageError(f"--figure {path}: {e}; use .png, .pdf or .svg") from None
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class AdviseOptions:
    """The options of ``python -m theory.advise``, one flag per field (:func:`parser`, built by :mod:`theory.cli`).

    ``None`` (or an empty tuple) is "not given": the value then comes from the framework config read, else
    from the defaults (``DEFAULT_*``).
    """

    objective: tuple[str, ...] = option((), metavar="NAME[:k=v,...]", action="append",
                                        shown=f"{DEFAULT_OBJECTIVE} when no config is given")
    """zoo objective with optional parameters, e.g. opmd or shifted_regression:beta=0.05,delta=2; repeat to compare
    (added to a config's objective)"""
    group_size: int | None = option(metavar="G", shown=f"the config's, else {DEFAULT_GROUP_SIZE}")
    """completions per prompt; overrides a config's"""
    lr: float | None = option(shown=f"the config's, else {DEFAULT_LR:g}")
    """learning rate = step size of the delayed gradient iteration; overrides a config's"""
    pass_rates: tuple[float, ...] = option(DEFAULT_PASS_RATES, metavar="P",
                                           shown=" ".join(map(str, DEFAULT_PASS_RATES)))
    """pass rate of each prompt class, in [0, 1]"""
    weights: tuple[float, ...] | None = option(metavar="W", shown="equal")
    """share of the prompts in each class (a pass-rate histogram), one per pass rate"""
    lag: int | None = option(metavar="L", shown="the config's, else 0")
    """largest lag in optimizer steps; overrides a config's"""
    max_lag: int = option(DEFAULT_MAX_LAG, note=f"at most {MAX_LAG_CAP}")
    """search the largest stable lag over 0..MAX_LAG"""
    verl_config: str | None = option(metavar="YAML", shown="none")
    """verl config file (Hydra YAML) read over the installed verl's defaults"""
    verl_override: tuple[str, ...] = option((), metavar="KEY=VALUE", action="extend", shown="none")
    """verl Hydra override lines, applied after --verl-config"""
    trl_config: str | None = option(metavar="FILE", shown="none")
    """TRL GRPOConfig or AsyncGRPOConfig settings: a JSON object, or a .py file calling GRPOConfig(...) with literal
    values (read, not run)"""
    trl_num_processes: int = option(1, metavar="N")
    """processes of the TRL run, to turn generation_batch_size into steps"""
    areal_max_head_offpolicyness: int | None = option(metavar="N", shown="none")
    """AReaL rollout.max_head_offpolicyness: the lag comes from it"""
    areal_ppo_n_minibatches: int = option(4, metavar="M", shown="4, AReaL's")
    """AReaL actor.ppo_n_minibatches, optimizer steps per version"""
    json: bool = option(False, action="store_true", shown="off")
    """print every number as JSON instead of the table"""
    figure: str | None = option(metavar="PATH", shown="none")
    """also write a figure, one panel per objective (.png, .pdf or .svg)"""


def parser() -> argparse.ArgumentParser:
    """The command's parser: a flag per field of :class:`AdviseOptions`, its docstring as the help."""
    p = CommandParser(
        prog="python -m theory.advise",
        description="Before launch: the regime, eta, pessimism, finite-group bias and largest stable lag of one zoo "
                    "objective or several side by side, on prompt classes of binary reward (docs/advise.md).",
    )
    add_dataclass_arguments(p, AdviseOptions, AdviseOptions(), listed={"objective": objective_names()})
    group = p.add_argument_group("objective parameters", "each sets that parameter of every objective that has it "
                                 "(an objective's own NAME:k=v wins); e.g. --objective oapl --beta 1e-3 --beta1 1")
    for name, prm in KNOWN_PARAMS.items():
        group.add_argument("--" + name.replace("_", "-"), dest=_PARAM_DEST + name, metavar="V", default=None,
                           help=prm.doc)
    return p


_PARAM_DEST = "param__"


def _param_flags(args) -> dict:
    """``{parameter: value}`` of the objective-parameter flags given on the command line."""
    return {k[len(_PARAM_DEST):]: _parse_value(v) for k, v in vars(args).items()
            if k.startswith(_PARAM_DEST) and v is not None}


def _apply_param_flags(objectives: list, flags: dict) -> list:
    """Each flag's value into every objective that has the parameter and does not set it itself."""
    out = [(name, dict(p)) for name, p in objectives]
    for key, value in flags.items():
        takers = [p for name, p in out if key in objective_spec(name).params]
        if not takers:
            names = ", ".join(name for name, _ in out)
            raise UsageError(f"--{key.replace('_', '-')}: none of the objectives ({names}) has a parameter {key!r}")
        for p in takers:
            p.setdefault(key, value)
    for name, p in out:
        try:
            make_objective(name, **p)
        except ValueError as e:
            raise UsageError(f"--objective {name}: {e}") from None
    return out


@cli_main
def main(argv=None) -> Advice:
    args = parser().parse_args(argv)
    opts = dataclass_from_args(AdviseOptions, args, AdviseOptions())
    adv = _advise_options(opts, _param_flags(args))
    if opts.figure is not None:
        plot_advice(adv, opts.figure)
    if opts.json:
        print(adv.to_json())
    else:
        print(render_table(adv), end="")
    return adv


def _read_config(opts: AdviseOptions) -> ConfigReading | None:
    """The framework config the options name (verl or TRL, not both), or None."""
    if opts.verl_config is not None or opts.verl_override:
        if opts.trl_config is not None:
            raise UsageError("--trl-config with --verl-config/--verl-override: give one framework's config")
        return read_verl(opts.verl_config, opts.verl_override)
    if opts.trl_config is not None:
        return read_trl(opts.trl_config, num_processes=opts.trl_num_processes)
    return None


def _options_lag(opts: AdviseOptions, reading: ConfigReading | None, notes: list[str]) -> LagSpec | None:
    """The lag from AReaL's settings, ``--lag`` (which replaces a config's; noted) or the config; None: not given."""
    if opts.areal_max_head_offpolicyness is not None:
        if opts.lag is not None or reading is not None:
            raise UsageError("--areal-max-head-offpolicyness with --lag or a config: give the lag one way")
        return lag_from_areal(opts.areal_max_head_offpolicyness, opts.areal_ppo_n_minibatches)
    if opts.lag is not None:
        if reading is not None:
            notes.append(f"--lag {opts.lag} replaces the config's lag ({reading.lag.how})")
        return _lag_from_flag(opts.lag)
    return reading.lag if reading is not None else None


def _advise_options(opts: AdviseOptions, param_flags: dict | None = None) -> Advice:
    """:func:`advise` on the options: a config's objective, G, lr and lag, which the flags add to or replace;
    ``param_flags`` (``--beta`` ...) set those parameters of every objective that has them."""
    reading = _read_config(opts)
    objectives = []
    notes: list[str] = []
    if reading is not None:
        objectives.append((reading.objective, dict(reading.params)))
        notes += [f"{reading.framework} config: objective {reading.objective}, G and lr from "
                  + ", ".join(f"{k}={v}" for k, v in reading.keys)] + list(reading.notes)
    objectives += [parse_objective(s) for s in opts.objective]
    if not objectives:
        objectives = [(DEFAULT_OBJECTIVE, {})]
    objectives = _apply_param_flags(objectives, param_flags or {})
    lag = _options_lag(opts, reading, notes)
    G = opts.group_size if opts.group_size is not None else (reading.group_size if reading else DEFAULT_GROUP_SIZE)
    lr = opts.lr if opts.lr is not None else (reading.lr if reading else DEFAULT_LR)
    if reading is not None and opts.group_size is not None and opts.group_size != reading.group_size:
        notes.append(f"--group-size {opts.group_size} replaces the config's {reading.group_size}")
    if reading is not None and opts.lr is not None and opts.lr != reading.lr:
        notes.append(f"--lr {opts.lr:g} replaces the config's {reading.lr:g}")
    try:
        return advise(objectives, group_size=G, lr=lr, pass_rates=opts.pass_rates, weights=opts.weights, lag=lag,
                      max_lag=opts.max_lag, source=reading.source if reading else "flags", notes=notes)
    except UsageError as e:
        raise UsageError(_flagged(str(e))) from None


def _flagged(msg: str) -> str:
    for name in ("group_size", "lr", "pass_rates", "weights", "max_lag"):
        if msg.startswith(name + ":"):
            return "--" + name.replace("_", "-") + msg[len(name):]
    return msg


if __name__ == "__main__":
    main()
