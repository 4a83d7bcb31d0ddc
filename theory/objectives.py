r"""The objective registry: one typed spec per objective, and the :class:`Objective` every consumer uses.

An objective is defined once, as an :class:`ObjectiveSpec`:

* its **loss** — a function with the contract of ``theory.losses``,
  ``loss(logp, logp_mu, adv, mask=None, *, <parameters>)`` (plus the keywords
  ``logp_ref`` / ``logp_prox`` if it needs those log-probabilities), called
  unchanged by the bandit theory, both simulators, the LLM trainer and the verl /
  TRL wrappers;
* its **advantage estimator** — a name of ``theory.advantages`` and the
  parameters it takes;
* its **typed parameters** (:class:`Param`: default, bounds, choices) and the
  **ties** between them (``beta1`` follows ``beta`` unless given);
* its **aggregation** (one of ``theory.losses.AGGREGATIONS``) and **level**
  (``token``: the loss is ``(..., T)``; ``sequence``: ``(...)``);
* its **population weight** :math:`h(u, A)` on :math:`\nabla\log\pi`: the
  expected gradient of the loss on a bandit is
  :math:`E_{y\sim\mu}[h(u_y, A_y)\nabla\log\pi(y)]`, :math:`u = \pi/\mu`, so
  :math:`h = -\partial\ell/\partial\log\pi` at :math:`\log\mu = 0`. By default
  ``h`` is **derived by autograd** from the loss. A spec may give ``h`` by hand
  where the weight depends on the whole distribution (TPO's group
  normalization, M2PO's mask) or as a faster evaluation of the same function;
  ``tests/test_objectives.py`` checks every hand-written ``h`` against autograd;
* its **induced target** — a closed form where one is derived, otherwise the
  KKT solver or the flow (``theory.induced``), certified or flagged;
* **capability flags** in place of name switches: ``couples_batch`` (the loss
  couples the rows of a batch, so seeds cannot share one), ``sequence_ratio``
  (the ratio is the length-normalized sequence ratio), ``clip`` (the rule that
  says which tokens' gradient a clip or mask removed), ``needs`` (``ref`` /
  ``prox`` log-probabilities);
* its **documentation** (equation, nominal and induced target, source) and
  optional **verl / TRL recipes** (the trainers' own settings that compute it).

The built-in zoo is in ``theory.zoo``. A user registers their own objective from
their own file::

    from theory.objectives import register_objective, make_objective

    def capped_reinforce_loss(logp, logp_mu, adv, mask=None, *, cap=2.0):
        ...  # per-token loss, same contract as theory.losses

    register_objective("capped_reinforce", loss=capped_reinforce_loss, advantage="mean", cap=2.0)
    obj = make_objective("capped_reinforce", cap=1.0)   # works everywhere from here on

Usage::

    obj = make_objective("oapl")                  # published settings
    obj = make_objective("ppo", eps_low=0.1)      # override a parameter
    adv = obj.advantages(rewards)                 # (B, G) from rewards (B, G)
    loss = obj.loss(logp, logp_mu, adv, mask)     # per token (B, T) or per sequence (B,)
    scalar = obj.aggregate(loss, mask)
    pi = obj.induced_target(mu, r)                # population target on a bandit

``OBJECTIVES`` is a live view of the registered names; ``python -m
theory.zoo_table`` prints the comparison table.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import torch

from . import losses as L
from .advantages import ADVANTAGES, group_advantage, population_advantage
from .recipes import TrlRecipe, VerlRecipe

__all__ = [
    "Param",
    "ObjectiveSpec",
    "Objective",
    "OBJECTIVES",
    "TARGET_KINDS",
    "LOGP_INPUTS",
    "register_objective",
    "unregister_objective",
    "objective_spec",
    "builtin_objectives",
    "make_objective",
    "objective_names",
    "on_register",
]

#: What a spec's ``needs`` may name, and the loss keyword that carries it.
LOGP_INPUTS = MappingProxyType({"ref": "logp_ref", "prox": "logp_prox", "expected": "logp_expected"})

#: How an induced target is computed: closed forms (``lambert``, ``gibbs``, ``linear``, ``vertex``), the
#: generic KKT solver (``kkt``), PPO-type linear programs (``lp``), explicit Euler on the flow
#: (``numerical``), or the adaptive integrated flow with certification (``flow``, the default for a new spec).
TARGET_KINDS = ("lambert", "gibbs", "linear", "vertex", "kkt", "lp", "numerical", "flow")

_LEVELS = ("token", "sequence")
_SIGNALS = ("adv", "awr", "tpo")


# ---------------------------------------------------------------------------
# typed parameters
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its default and its domain.

    Numbers: ``low`` / ``high`` bounds (open or closed) and whether infinity is
    allowed (``finite``); ``None`` is always accepted and means "off" to the
    losses that take it (``eps_high=None``: symmetric clip). Strings: ``choices``.
    """

    default: Any = None
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    finite: bool = True
    choices: tuple | None = None
    doc: str = ""

    def with_default(self, value) -> "Param":
        return Param(value, self.low, self.high, self.low_open, self.high_open, self.finite, self.choices, self.doc)

    def check(self, objective: str, name: str, value):
        """``value`` as the parameter holds it (a Python float for numbers), or a ValueError naming the problem."""
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{objective}: {name} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
            return value
        if value is None:
            return None
        return self._number(objective, name, value)

    def _number(self, objective: str, name: str, v) -> float:
        if isinstance(v, torch.Tensor):
            if v.numel() != 1:
                raise ValueError(f"{objective}: parameter {name} must be a number, got a tensor of shape {tuple(v.shape)}")
            v = v.detach().item()
        if isinstance(v, np.ndarray) and v.shape == ():
            v = v.item()
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{objective}: parameter {name} must be a number, got {v!r} ({type(v).__name__})")
        v = float(v)
        if math.isnan(v) or (self.finite and math.isinf(v)):
            raise ValueError(f"{objective}: parameter {name} must be a finite number, got {v!r}")
        lo, hi = self.low, self.high
        lb, ub = ("(" if self.low_open else "[") + f"{lo:g}", f"{hi:g}" + (")" if self.high_open else "]")
        if v < lo or (v == lo and self.low_open):
            op = ">" if self.low_open else ">="
            raise ValueError(f"{objective}: parameter {name} must be {op} {lo:g} (valid: {lb}, {ub}), got {v!r}")
        if v > hi or (v == hi and self.high_open):
            op = "<" if self.high_open else "<="
            raise ValueError(f"{objective}: parameter {name} must be {op} {hi:g} (valid: {lb}, {ub}), got {v!r}")
        return v


_POS = dict(low=0.0, low_open=True, high_open=True)

#: Domains of the parameters the zoo uses, by name: a spec (built-in or a user's) that gives a plain default
#: for one of these names gets this domain. Other names: any finite number (or the choices of a string).
KNOWN_PARAMS: Mapping[str, Param] = MappingProxyType({
    "beta": Param(**_POS, doc="temperature of the loss (nats of reward per nat of log-ratio)"),
    "beta1": Param(**_POS, doc="temperature of the soft-value baseline"),
    "eps_low": Param(low=0.0, high=1.0, low_open=True, high_open=True, doc="lower clip 1 - eps_low"),
    "eps_high": Param(**_POS, doc="upper clip 1 + eps_high"),
    "dual_clip": Param(low=1.0, low_open=True, high_open=True, doc="dual-clip constant c > 1"),
    "kl_beta": Param(low=0.0, high_open=True, doc="coefficient of the k3 penalty to the reference"),
    "eps": Param(low=0.0, high_open=True, doc="added to the group std"),
    "is_cap": Param(**_POS, doc="cap of the importance weight"),
    "tau": Param(**_POS, doc="M2PO's second-moment budget"),
    "tau_pos": Param(**_POS, doc="SAPO temperature for A > 0"),
    "tau_neg": Param(**_POS, doc="SAPO temperature for A < 0"),
    "offset": Param(high_open=True, low_open=True, doc="baseline offset (V = mean - offset)"),
    "delta": Param(high_open=True, low_open=True, doc="shift of the baseline in units of beta"),
    "max_weight": Param(**dict(_POS, high_open=False), finite=False, doc="cap of AWR's weight (inf: none)"),
    "norm_constant": Param(**_POS, doc="Dr. GRPO's token-sum normalizer"),
    "kind": Param(choices=("k1", "k2", "k3"), doc="KL estimator"),
    "anchor": Param(choices=("behaviour", "reference"), doc="policy the log-ratio is taken against"),
})


def _as_param(name: str, value) -> Param:
    if isinstance(value, Param):
        return value
    known = KNOWN_PARAMS.get(name)
    if known is not None:
        return known.with_default(value)
    if isinstance(value, str):
        return Param(value, choices=(value,))
    return Param(value)


# ---------------------------------------------------------------------------
# the spec
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectiveSpec:
    """The one definition of an objective (module docstring). Register with :func:`register_objective`.

    Attributes
    ----------
    name : str
        Registry name.
    loss : callable
        ``loss(logp, logp_mu, adv, mask=None, *, <parameters>)`` with the contract
        of ``theory.losses``; its keyword parameters are filled from ``params``
        (by name), plus ``logp_ref`` / ``logp_prox`` when it declares them.
    advantage : str
        Estimator of ``theory.advantages``; ``advantage_params`` are the
        parameters passed to it.
    params : Mapping[str, Param]
        Every hyperparameter (of the loss, the estimator or the signal).
    ties : Mapping[str, str]
        ``{"beta1": "beta"}``: ``beta1`` follows ``beta`` unless given.
    aggregation, level : str
        Default reduction (``theory.losses.AGGREGATIONS``) and ``token`` / ``sequence``.
    family : str
        ``ratio``, ``ratio-free``, ``weighted-ce``, ``regression`` or the user's word.
    signal : str
        What the loss receives: ``adv`` (the advantage), ``awr``
        (:math:`\\min(e^{A/\\beta}, w_{max})`), ``tpo`` (:math:`G\\,\\mathrm{softmax}(A/\\beta)` over the group).
    weight : callable or None
        Hand-written :math:`h(u, A, params, mu)`; None: autograd of the loss.
    weight_needs_mu : bool
        ``weight`` depends on the whole distribution ``mu`` (batch-dependent).
    closed_form, face_point : callable or None
        ``f(mu, adv, params) -> pi`` (numpy ``(..., K)``; NaN rows: not covered).
    target_kind : str
        One of :data:`TARGET_KINDS`.
    kappa_min : float or callable
        Lower end of the KKT multiplier's bracket (``params -> float`` if it depends on them).
    needs : tuple of str
        ``ref`` / ``prox``: log-probabilities the loss always needs (the reference
        is also needed at ``kl_beta > 0`` and at ``anchor='reference'``);
        ``expected``: the current policy's log-probability averaged over the
        sampler's distribution at every position, :math:`E_{v\\sim\\mu(\\cdot\\mid s_t)}\\log\\pi(v\\mid s_t)`
        (``logp_expected``; such a loss couples the arms, so its ``weight`` is given by hand).
    couples_batch, sequence_ratio : bool
        Capability flags (module docstring).
    clip : callable or None
        ``clip(s, adv, mask, params) -> bool (..., T)``: tokens whose gradient the
        loss clips, truncates or masks, from token log-ratios ``s`` (the clip
        fraction of every trainer); None: the loss clips nothing.
    equation, nominal, induced, source : str
        Documentation; ``induced`` may be ``params -> str``.
    verl : VerlRecipe or None
        verl's built-in loss and settings that compute this objective, where verl ships it
        (``theory.recipes``); None: it runs as ``zoo_<name>`` where verl's interface allows.
    verl_note : str
        Why the objective cannot run in verl at all (empty if it can).
    trl : TrlRecipe or None
        TRL's ``loss_type`` and settings that compute it, where TRL ships it.
    """

    name: str
    loss: Callable
    advantage: str = "mean"
    params: Mapping[str, Param] = field(default_factory=dict)
    advantage_params: tuple = ()
    ties: Mapping[str, str] = field(default_factory=dict)
    aggregation: str = "token-mean"
    level: str = "token"
    family: str = "custom"
    signal: str = "adv"
    weight: Callable | None = None
    weight_needs_mu: bool = False
    closed_form: Callable | None = None
    face_point: Callable | None = None
    target_kind: str = "flow"
    kappa_min: float | Callable = 0.0
    needs: tuple = ()
    couples_batch: bool = False
    sequence_ratio: bool = False
    clip: Callable | None = None
    equation: str = ""
    nominal: str = ""
    induced: str | Callable = ""
    source: str = ""
    verl: VerlRecipe | None = None
    verl_note: str = ""
    trl: TrlRecipe | None = None

    def __post_init__(self):
        _check_spec(self)
        object.__setattr__(self, "params", MappingProxyType({k: _as_param(k, v) for k, v in self.params.items()}))
        object.__setattr__(self, "ties", MappingProxyType(dict(self.ties)))
        sig = inspect.signature(self.loss).parameters  # the loss's keywords, read once: parameters and logps
        object.__setattr__(self, "_keywords", tuple(k for k in self.params if k in sig))
        object.__setattr__(self, "_logps", tuple(k for k in LOGP_INPUTS.values() if k in sig))


def _check_spec(spec: ObjectiveSpec) -> None:
    where = f"objective spec {spec.name!r}"
    if not isinstance(spec.name, str) or not spec.name.isidentifier():
        raise ValueError(f"objective name must be an identifier (letters, digits, _), got {spec.name!r}")
    if not callable(spec.loss):
        raise TypeError(f"{where}: loss must be a function loss(logp, logp_mu, adv, mask=None, *, ...)")
    positional = [p for p in inspect.signature(spec.loss).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 4:
        raise ValueError(f"{where}: loss must take (logp, logp_mu, adv, mask=None) positionally, "
                         f"got {[p.name for p in positional]}")
    if spec.level not in _LEVELS:
        raise ValueError(f"{where}: level must be one of {', '.join(_LEVELS)}, got {spec.level!r}")
    if spec.aggregation not in L.AGGREGATIONS:
        raise ValueError(f"{where}: aggregation must be one of {', '.join(L.AGGREGATIONS)}, got {spec.aggregation!r}")
    if spec.target_kind not in TARGET_KINDS:
        raise ValueError(f"{where}: target_kind must be one of {', '.join(TARGET_KINDS)}, got {spec.target_kind!r}")
    if spec.signal not in _SIGNALS:
        raise ValueError(f"{where}: signal must be one of {', '.join(_SIGNALS)}, got {spec.signal!r}")
    if spec.signal == "tpo" and spec.weight is None:
        raise ValueError(f"{where}: the tpo signal normalizes over the group, so the weight must be given by hand")
    if spec.closed_form is None and spec.target_kind in ("lambert", "gibbs", "linear", "vertex"):
        raise ValueError(f"{where}: target_kind {spec.target_kind!r} needs a closed_form")
    for k in set(spec.needs) - set(LOGP_INPUTS):
        raise ValueError(f"{where}: needs may hold {sorted(LOGP_INPUTS)}, got {k!r}")
    if "expected" in spec.needs and spec.weight is None:
        raise ValueError(f"{where}: a loss that needs logp_expected couples the arms; give its weight h(u, A, p, mu)")
    for k in (*spec.advantage_params, *spec.ties, *spec.ties.values()):
        if k not in spec.params:
            raise ValueError(f"{where}: {k!r} is named in advantage_params or ties but is not a parameter")
    if spec.verl is not None and not isinstance(spec.verl, VerlRecipe):
        raise TypeError(f"{where}: verl must be a theory.recipes.VerlRecipe or None, got {type(spec.verl).__name__}")
    if spec.trl is not None and not isinstance(spec.trl, TrlRecipe):
        raise TypeError(f"{where}: trl must be a theory.recipes.TrlRecipe or None, got {type(spec.trl).__name__}")
    if spec.verl is not None and spec.verl_note:
        raise ValueError(f"{where}: give a verl recipe or a verl_note (why verl cannot run it), not both")


# ---------------------------------------------------------------------------
# the objective (a spec at given parameters)
# ---------------------------------------------------------------------------


def _signal(kind: str, adv: torch.Tensor, p: Mapping) -> torch.Tensor:
    if kind == "awr":
        return torch.exp(adv / p["beta"]).clamp(max=p["max_weight"])
    if kind == "tpo":
        return adv.shape[-1] * torch.softmax(adv / p["beta"], -1)
    return adv


@dataclass(frozen=True)
class Objective:
    """An objective at given parameters. Build with :func:`make_objective`.

    Attributes
    ----------
    name, family : str
        Registry name and family.
    params : Mapping
        Hyperparameters of the loss, the estimator and the signal (checked, ties applied).
    advantage, aggregation, level, target_kind : str
        As in the spec.
    needs : tuple of str
        Extra log-probabilities the loss needs at these parameters: ``ref`` and/or ``prox``.
    equation, nominal, induced, source : str
        Documentation (``induced`` rendered from the parameters).
    kappa_min : float
        Lower end of the KKT multiplier's bracket.
    spec : ObjectiveSpec
        The definition.
    """

    name: str
    family: str
    params: Mapping
    advantage: str
    aggregation: str
    level: str
    needs: tuple
    equation: str
    nominal: str
    induced: str
    source: str
    target_kind: str
    kappa_min: float
    spec: ObjectiveSpec = field(repr=False)

    # -- capability flags ----------------------------------------------------
    @property
    def couples_batch(self) -> bool:
        """The loss couples the rows of a batch (seeds must not share one)."""
        return self.spec.couples_batch

    @property
    def sequence_ratio(self) -> bool:
        """The ratio is the length-normalized sequence ratio (needs per-token log-probs)."""
        return self.spec.sequence_ratio

    @property
    def clips(self) -> bool:
        """The loss clips, truncates or masks some tokens' gradient (it has a clip fraction)."""
        return self.spec.clip is not None

    # -- training side -----------------------------------------------------
    def advantage_params(self) -> dict:
        return {k: self.params[k] for k in self.spec.advantage_params}

    def advantages(self, rewards) -> torch.Tensor:
        """The per-sample signal the loss expects, from rewards ``(..., G)``.

        For most objectives this is the advantage; for the weighted
        cross-entropies it is the sample weight (AWR :math:`e^{A/\\beta}`,
        TPO :math:`G\\,\\mathrm{softmax}(A/\\beta)` over the group).
        """
        adv = group_advantage(self.advantage, rewards, **self.advantage_params())
        return _signal(self.spec.signal, adv, self.params)

    def loss(self, logp, logp_mu, adv, mask=None, *, logp_ref=None, logp_prox=None,
             logp_expected=None) -> torch.Tensor:
        """Per-token ``(..., T)`` or per-sequence ``(...)`` loss (see ``level``)."""
        if "ref" in self.needs and logp_ref is None:
            raise ValueError(f"objective {self.name!r} needs logp_ref (log-probabilities under the reference policy)")
        if "prox" in self.needs and logp_prox is None:
            raise ValueError(f"objective {self.name!r} needs logp_prox (log-probabilities under the proximal policy)")
        if "expected" in self.needs and logp_expected is None:
            raise ValueError(f"objective {self.name!r} needs logp_expected (E over the sampler's distribution of "
                             "the current log-probabilities, at every position)")
        kw = {k: self.params[k] for k in self.spec._keywords}
        given = {"logp_ref": logp_ref, "logp_prox": logp_prox, "logp_expected": logp_expected}
        kw.update({k: given[k] for k in self.spec._logps})
        return self.spec.loss(logp, logp_mu, adv, mask, **kw)

    def aggregate(self, loss, mask=None, *, constant=None):
        """Reduce with this objective's aggregation mode (``theory.losses.aggregate``)."""
        const = constant if constant is not None else self.params.get("norm_constant")
        return L.aggregate(loss, mask, self.aggregation, constant=const)

    def clipped(self, logp, logp_anchor, adv, mask) -> torch.Tensor | None:
        """Bool ``(..., T)``: tokens whose gradient the loss clips, truncates or masks; None if it clips nothing.

        ``logp_anchor`` is the policy the ratio is taken against (the behaviour
        policy, or the proximal one for decoupled losses); ``adv`` ``(...)`` or ``(..., T)``.
        """
        if self.spec.clip is None:
            return None
        m = torch.as_tensor(mask).bool() if mask is not None else torch.ones_like(logp, dtype=torch.bool)
        s = (logp.detach() - logp_anchor).double()
        if self.sequence_ratio:  # every token carries its sequence's length-normalized log-ratio
            s = (torch.where(m, s, 0.0).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1)).expand_as(s)
        a = torch.as_tensor(adv, dtype=s.dtype)
        a = a.unsqueeze(-1).expand_as(s) if a.shape == s.shape[:-1] else a.expand_as(s)
        return self.spec.clip(s, a, m, self.params) & m

    # -- theory side ---------------------------------------------------------
    def population_advantage(self, mu, r) -> np.ndarray:
        """Exact advantage ``(..., K)`` of this objective's estimator on a bandit."""
        return population_advantage(self.advantage, mu, r, **self.advantage_params())

    def population_signal(self, adv, mu) -> torch.Tensor:
        """What the loss receives on a bandit, in expectation: the advantage, or the sample weight ``(..., K)``."""
        adv = torch.as_tensor(adv, dtype=torch.float64)
        if self.spec.signal == "adv":
            return adv
        return self.weight(torch.ones(adv.shape, dtype=torch.float64), adv, torch.as_tensor(mu))

    def weight(self, u, adv, mu=None):
        """Population weight :math:`h(u, A)` on :math:`\\nabla\\log\\pi` (torch, elementwise, float64).

        Hand-written where the spec gives one, else autograd of the loss
        (:func:`autograd_weight`). ``mu`` is needed only by the batch-dependent
        weights (TPO's group normalization, M2PO's mask).
        """
        u = torch.as_tensor(u, dtype=torch.float64)
        adv = torch.as_tensor(adv, dtype=torch.float64)
        if self.spec.weight_needs_mu and mu is None:
            raise ValueError(f"the weight of {self.name!r} depends on the whole distribution: pass mu")
        if self.spec.weight is None:
            return autograd_weight(self, u, adv)
        return self.spec.weight(u, adv, self.params, mu)

    def closed_form_target(self, mu, adv):
        """Closed-form induced target for advantages ``adv`` ``(..., K)``, or None."""
        if self.spec.closed_form is None:
            return None
        return self.spec.closed_form(np.asarray(mu, dtype=np.float64), np.asarray(adv, dtype=np.float64), self.params)

    def face_point(self, mu, adv):
        """The point the flow from ``mu`` reaches on a face of tied stationary points, or None.

        ``(..., K)``; NaN rows where the derived rule does not cover the face.
        None when the objective has no such rule (its set-valued targets are
        then reported as sets, not certified as points).
        """
        if self.spec.face_point is None:
            return None
        return self.spec.face_point(np.asarray(mu, dtype=np.float64), np.asarray(adv, dtype=np.float64), self.params)

    @property
    def lp_clip(self) -> bool:
        """The target is the optimal face of PPO-clip's linear program (``theory.induced.ppo_clip_target_set``)."""
        return self.target_kind == "lp" and "eps_low" in self.params and not self.params.get("kl_beta", 0.0)

    def induced_target(self, mu, r, **kwargs):
        """Induced target on a bandit with rewards ``r``: see ``theory.induced.induced_target``."""
        from .induced import induced_target

        return induced_target(self, mu, r, **kwargs)


def _weight_by_autograd(obj: Objective, u: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """-d loss / d log pi at log mu = 0, log pi = log u (no graph to u: see :func:`autograd_weight`)."""
    with torch.enable_grad():
        logp = torch.log(u.detach()).requires_grad_(True)
        lp = logp if obj.level == "sequence" else logp.unsqueeze(-1)  # a sequence of one token per arm
        zero = torch.zeros_like(lp)
        sig = _signal(obj.spec.signal, adv.detach(), obj.params)
        loss = obj.loss(lp, zero, sig, None, logp_ref=zero, logp_prox=lp.detach())
        (grad,) = torch.autograd.grad(loss.sum(), logp)
    return -grad


class _AutogradWeight(torch.autograd.Function):
    """h(u, A) by autograd of the loss; its derivative in u by a central difference (the loss's stop-gradients
    hide it from autograd), for the solvers' Newton steps and the flow's Jacobian."""

    @staticmethod
    def forward(ctx, u, adv, obj):
        ctx.save_for_backward(u, adv)
        ctx.obj = obj
        return _weight_by_autograd(obj, u, adv)

    @staticmethod
    def backward(ctx, g):
        u, adv = ctx.saved_tensors
        step = 1e-6 * u
        with torch.no_grad():
            hi = _weight_by_autograd(ctx.obj, u + step, adv)
            lo = _weight_by_autograd(ctx.obj, u - step, adv)
        return g * (hi - lo) / (2.0 * step), None, None


def autograd_weight(obj: Objective, u: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    r"""The population weight of ``obj``'s loss by autograd: :math:`h(u, A) = -\partial\ell/\partial\log\pi`.

    Each arm is a one-token completion with :math:`\log\mu = 0` and
    :math:`\log\pi = \log u`; the reference policy is the behaviour policy and the
    proximal policy the current one (detached), as on the bandit of the theory.
    The loss receives the objective's elementwise signal of ``adv``. The result is
    differentiable in ``u`` (the KKT solver's Newton steps and the flow's Jacobian
    need :math:`\partial h/\partial u`): a loss's stop-gradients hide that derivative
    from autograd, so it is taken by a central difference of relative step 1e-6.
    """
    u, adv = torch.broadcast_tensors(torch.as_tensor(u, dtype=torch.float64), torch.as_tensor(adv, dtype=torch.float64))
    return _AutogradWeight.apply(u, adv, obj)


# ---------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------

_REGISTRY: dict[str, ObjectiveSpec] = {}
_LISTENERS: list[Callable[[ObjectiveSpec], None]] = []


class _Names(Sequence):
    """A live, read-only view of the registered names (``OBJECTIVES``): ``in``, iteration, ``len``, indexing."""

    def __getitem__(self, i):
        return tuple(_REGISTRY)[i]

    def __len__(self):
        return len(_REGISTRY)

    def __contains__(self, name):
        return name in _REGISTRY

    def __iter__(self):
        return iter(tuple(_REGISTRY))

    def __eq__(self, other):
        return tuple(self) == tuple(other) if isinstance(other, (Sequence, tuple)) else NotImplemented

    def __hash__(self):
        return hash(tuple(self))

    def __repr__(self):
        return repr(tuple(self))


#: Every registered objective name, in registration order (a live view: user registrations appear in it).
OBJECTIVES = _Names()


def objective_names() -> tuple[str, ...]:
    """Every registered objective name."""
    return tuple(_REGISTRY)


def builtin_objectives() -> tuple[str, ...]:
    """The objectives the toolkit itself registers (every module of the zoo), in registration order."""
    return tuple(n for n in _REGISTRY if n in _BUILTIN)


def on_register(listener: Callable[[ObjectiveSpec], None]) -> None:
    """Call ``listener(spec)`` for every objective registered from now on (the verl adapter registers its loss).

    A listener with the same module and name as one already held (its module imported again) replaces it.
    """
    key = (listener.__module__, listener.__qualname__)
    _LISTENERS[:] = [f for f in _LISTENERS if (f.__module__, f.__qualname__) != key] + [listener]


def register_objective(name: str | ObjectiveSpec, *, loss: Callable | None = None, replace: bool = False,
                       **fields_and_params) -> ObjectiveSpec:
    """Register an objective and return its spec.

    Either a ready :class:`ObjectiveSpec`, or a name, a ``loss`` and keywords:
    the spec's fields (``advantage``, ``aggregation``, ``level``, ``family``,
    ``target_kind``, ``equation``, ``source``, ...) and, under any other name,
    the parameters with their defaults (a plain value, or a :class:`Param` with
    bounds; a known name such as ``beta`` gets its known domain). Example::

        register_objective("capped_reinforce", loss=capped_reinforce_loss, advantage="mean", cap=2.0)

    A name already registered is refused unless ``replace=True``.
    """
    if isinstance(name, ObjectiveSpec):
        if loss is not None or fields_and_params:
            raise ValueError("pass either an ObjectiveSpec or a name with loss= and keywords, not both")
        spec = name
    else:
        if loss is None:
            raise ValueError(f"register_objective({name!r}, ...): give loss=, the per-token loss function")
        spec_fields = set(ObjectiveSpec.__dataclass_fields__) - {"name", "loss", "params"}
        kw = {k: v for k, v in fields_and_params.items() if k in spec_fields}
        params = {k: v for k, v in fields_and_params.items() if k not in spec_fields}
        if "params" in fields_and_params:
            raise ValueError("give parameters as keywords (cap=2.0), not params=")
        if "advantage_params" not in kw:  # the estimator's parameters, by name, default to those it takes
            takes = ADVANTAGES.get(kw.get("advantage", "mean"), ())
            kw["advantage_params"] = tuple(k for k in params if k in takes)
        spec = ObjectiveSpec(name=name, loss=loss, params=params, **kw)
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"objective {spec.name!r} is already registered; pass replace=True to redefine it")
    _REGISTRY[spec.name] = spec
    for listener in _LISTENERS:
        listener(spec)
    return spec


def unregister_objective(name: str) -> None:
    """Remove a user's objective (built-ins cannot be removed)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown objective {name!r}; valid objectives: {', '.join(_REGISTRY)}")
    if name in _BUILTIN:
        raise ValueError(f"objective {name!r} is built in and cannot be removed")
    del _REGISTRY[name]


def objective_spec(name: str) -> ObjectiveSpec:
    """The registered spec of ``name``."""
    if not isinstance(name, str):
        raise TypeError(f"name must be an objective name (str), got {type(name).__name__}; "
                        f"valid: {', '.join(_REGISTRY)}")
    if name not in _REGISTRY:
        raise ValueError(f"unknown objective {name!r}; valid objectives: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def _resolve_params(spec: ObjectiveSpec, overrides: Mapping) -> dict:
    params = {k: p.default for k, p in spec.params.items()}
    extra = set(overrides) - set(params)
    if extra:
        raise ValueError(f"objective {spec.name!r} has no parameter(s) {sorted(extra)}; its parameters: {sorted(params)}")
    params.update(overrides)
    for k, v in params.items():
        params[k] = spec.params[k].check(spec.name, k, v)
    for k, source in spec.ties.items():
        if k not in overrides:
            params[k] = params[source]
    return params


def make_objective(name: str, **overrides) -> Objective:
    """The objective ``name`` with its published defaults, updated by ``overrides``.

    A parameter tied to another (``beta1 = beta`` for the soft-value baselines
    ``opmd_lme`` and ``opmd_above``, whose defining relation is V = V*_beta,
    resp. V*_beta + delta beta) follows it unless given explicitly, so an
    override of ``beta`` keeps the objective what it is named after. The
    ``induced`` description is rendered from the actual parameters.

    Numbers may be Python, numpy or one-element torch scalars. Raises
    :class:`ValueError` for an unknown name (listing the valid ones), an
    unknown parameter, or a parameter outside its domain (``beta`` not in
    (0, inf), ``eps_low`` not in (0, 1), ``dual_clip <= 1``, NaN, ...).
    """
    spec = objective_spec(name)
    params = _resolve_params(spec, overrides)
    kappa_min = spec.kappa_min(params) if callable(spec.kappa_min) else spec.kappa_min
    needs = tuple(spec.needs)
    if (params.get("kl_beta") or 0.0) > 0 or params.get("anchor") == "reference":
        needs = needs if "ref" in needs else needs + ("ref",)
    return Objective(
        name=spec.name,
        family=spec.family,
        params=MappingProxyType(params),
        advantage=spec.advantage,
        aggregation=spec.aggregation,
        level=spec.level,
        needs=needs,
        equation=spec.equation,
        nominal=spec.nominal,
        induced=spec.induced(params) if callable(spec.induced) else spec.induced,
        source=spec.source,
        target_kind=spec.target_kind,
        kappa_min=float(kappa_min),
        spec=spec,
    )


from . import zoo as _zoo  # noqa: E402,F401  (registers the built-in objectives)
from . import zoo_verl as _zoo_verl  # noqa: E402,F401  (verl's DPPO, GMPO, Clip-Cov, KL-Cov)
from . import zoo_verl_adv as _zoo_verl_adv  # noqa: E402,F401  (verl's own advantage estimators)
from . import zoo_corrections as _zoo_corrections  # noqa: E402,F401  (the trainers' off-policy corrections)
from . import zoo_2026 as _zoo_2026  # noqa: E402,F401  (registers the 2026 objectives)

_BUILTIN = frozenset(_REGISTRY)
