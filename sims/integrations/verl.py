r"""verl integration: the zoo's objectives as verl policy losses, its baselines as advantage estimators.

Importing this module (``VERL_USE_EXTERNAL_MODULES=sims.integrations.verl`` makes verl
import it in every Ray worker; see docs/integrations.md) registers, through verl's own
``register_policy_loss`` and ``register_adv_est``:

* a policy loss ``zoo_<name>`` for every zoo objective verl does not ship
  (:data:`REGISTERED`): ``pg``, ``cispo_scalerl``, ``topr``, ``m2po``, ``reinforce_k1``,
  ``reinforce_k3`` and the regression family ``oapl``, ``opmd``, ``opmd_loo``,
  ``opmd_lme``, ``shifted_regression``, ``opmd_above``. Each takes verl's call signature, computes
  the zoo's loss (``theory.objectives``) and reduces it with the zoo's aggregation
  under verl's ``loss_agg_mode`` (:func:`aggregate`). Every one reports the zoo's
  readings under ``actor/zoo/`` (:mod:`sims.integrations.diagnostics`: the off-policy gap
  between behaviour and current policy, the fitted eta where the objective has a
  temperature, the Lambert-predicted eta and the regime for the regression family;
  docs/diagnostics.md).
* the advantage estimators of :data:`ADVANTAGE_ESTIMATORS`: the beta-shifted mean
  ``zoo_shifted_mean``, the group soft value at beta ``zoo_soft_value`` and at a
  decoupled beta1 ``zoo_decoupled_soft_value``, the soft value shifted up by delta beta
  ``zoo_soft_value_above`` (the optimistic control ``opmd_above``), plus ``zoo_mean`` (mean minus an
  offset), ``zoo_raw``, ``zoo_awr`` and ``zoo_tpo`` (the weighted cross-entropies' weights).

The policy version of a sample is visible to neither a policy loss nor an advantage estimator;
verl's v1 trainer logs it as ``training/off_policy/trajectory_staleness/*`` (docs/diagnostics.md).

The zoo objectives verl already ships (PPO, dual clip, GRPO, Dr. GRPO, DAPO, GSPO,
CISPO, SAPO, TIS, AReaL, and the REINFORCE-type losses through ``gpg`` and ``dro``) run
with verl's built-in loss under the settings of :data:`BUILTIN` (the specs' ``verl`` recipes,
``theory.recipes``); the tests check that
verl's loss and the zoo's agree to 1e-6 (verl's ``sapo`` always aggregates with
``seq-mean-token-mean``, whatever ``loss_agg_mode`` says: the zoo's SAPO aggregation).
``recipe(name).overrides()`` gives the Hydra lines for any of them. A*-PO is not
available: verl's policy-loss interface does not pass reference log-probabilities.

Hyperparameters. A registered loss uses the zoo's published defaults, except that
``actor_rollout_ref.actor.policy_loss.dro_beta``, when set, is the objective's
:math:`\beta` (it is the same quantity: :math:`(\beta s - A)^2/(2\beta) = \beta s^2/2 - As
+ \mathrm{const}`, DRO's loss with ``dro_beta`` :math:`=\beta`). Any other parameter:
``register_objective(name, loss_mode=..., **params)`` in a module that verl imports.
The advantage estimators read ``+algorithm.zoo.<param>`` (``beta``, ``beta1``,
``delta``, ``offset``, ``max_weight``), defaulting to the zoo's.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from . import require

VERL_VERSION = require("verl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from verl.trainer.ppo import core_algos as _core  # noqa: E402

from theory._numerics import log_mean_exp  # noqa: E402
from theory import losses as L  # noqa: E402
from theory.objectives import OBJECTIVES, Objective, make_objective, objective_spec, on_register  # noqa: E402
from theory.recipes import VERL_BUILTIN as BUILTIN  # noqa: E402
from theory.recipes import VerlRecipe, runs_as_zoo_loss  # noqa: E402
from theory.recipes import verl_recipe as recipe  # noqa: E402

from .diagnostics import batch_sums, predicts_eta, readings, temperature  # noqa: E402
from .eta import group_regime, lambert_eta  # noqa: E402

__all__ = [
    "VERL_VERSION",
    "AGG_MODES",
    "REGISTERED",
    "BUILTIN",
    "ADVANTAGE_ESTIMATORS",
    "VerlRecipe",
    "recipe",
    "aggregate",
    "make_policy_loss",
    "register_objective",
    "runs_as_zoo_loss",
    "group_apply",
    "PREFIX",
    "READINGS_ENV",
    "readings_enabled",
    "LEGACY_NAMES",
]

#: verl's ``loss_agg_mode`` values, all supported.
AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")

#: Built-in zoo objectives registered at import as ``zoo_<name>`` (verl ships none of them): every objective
#: of the registry that verl does not ship (:data:`BUILTIN`) and that its policy-loss interface can run (no
#: reference or proximal log-probabilities, the advantage as the signal). Objectives registered later, by a
#: user's ``theory.objectives.register_objective``, are registered with verl as they come.
REGISTERED: tuple[str, ...] = ()



# ---------------------------------------------------------------------------
# aggregation: verl's loss_agg_mode onto theory.losses.aggregate
# ---------------------------------------------------------------------------


def aggregate(loss, mask, loss_agg_mode="token-mean", *, dp_size=1, batch_num_tokens=None,
              global_batch_size=None, loss_scale_factor=None):
    r"""Reduce a zoo loss under verl's ``loss_agg_mode`` and global-batch normalizers.

    The reduction is ``theory.losses.aggregate`` (the zoo's), times a detached
    normalizer that makes it verl's for the whole mini-batch across data-parallel
    ranks. With :math:`m` the mask, :math:`v_i = 1[\sum_t m_{it} > 0]`, ``dp`` the
    data-parallel size, ``N`` the mini-batch's token count, ``G`` its sequence count
    and ``S`` the scale factor:

    ===========================  ============================================  =====================================
    ``loss_agg_mode``            value                                         zoo mode used
    ===========================  ============================================  =====================================
    ``token-mean``               :math:`dp\sum_{it}m\ell/N`                    ``token-mean``
    ``token-sum``                :math:`dp\sum_{it}m\ell`                      ``token-mean`` times the token count
    ``seq-mean-token-mean``      :math:`\frac{dp}{G}\sum_i v_i\frac{\sum_t m\ell}{\sum_t m}`   ``seq-mean-token-mean``
    ``seq-mean-token-sum``       :math:`\frac{dp}{G}\sum_{it} m\ell`           ``seq-mean-token-sum``
    ``seq-mean-token-sum-norm``  :math:`\frac{dp}{GS}\sum_{it} m\ell`          ``seq-mean-token-sum-norm``, ``C = S``
    ===========================  ============================================  =====================================

    Defaults as verl: ``N`` the local token count, ``G`` the local count of
    non-empty rows, ``S`` the padded width ``T``.

    Parameters
    ----------
    loss : Tensor, shape (B, T) or (B,)
        Per-token loss, or per-sequence loss (the regression family). A
        per-sequence loss is spread over its sequence's tokens (every token carries
        :math:`\ell_i`, as verl does with GSPO's sequence ratio), so
        ``seq-mean-token-mean`` gives the zoo's ``sequence`` aggregation (the mean
        over sequences) and ``token-mean`` weighs sequence ``i`` by its length.
    mask : Tensor, shape (B, T), bool or float
    """
    if loss_agg_mode not in AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; valid: {', '.join(AGG_MODES)}")
    if dp_size != 1 and batch_num_tokens is None and loss_agg_mode == "token-mean":
        raise ValueError("token-mean with dp_size > 1 needs batch_num_tokens (verl's global token count)")
    if dp_size != 1 and global_batch_size is None and loss_agg_mode.startswith("seq-"):
        raise ValueError(f"{loss_agg_mode} with dp_size > 1 needs global_batch_size (verl's global sequence count)")
    m = mask.to(loss.dtype)
    per_sequence = loss.shape == m.shape[:-1]
    if not per_sequence and loss.shape != m.shape:
        raise ValueError(f"loss has shape {tuple(loss.shape)}; expected {tuple(m.shape)} or {tuple(m.shape[:-1])}")
    n_tok = m.sum(-1)
    valid = (n_tok > 0).to(loss.dtype)
    if per_sequence:
        if loss_agg_mode == "seq-mean-token-mean":
            rows = valid.numel()
            G = valid.sum() if global_batch_size is None else global_batch_size
            return L.aggregate(loss * valid, None, "sequence") * (dp_size * rows / G)
        loss = loss.unsqueeze(-1).expand_as(m)
    if loss_agg_mode in ("token-mean", "token-sum"):
        n = m.sum()
        base = L.aggregate(loss, m, "token-mean")  # sum(m l) / max(n, 1)
        if loss_agg_mode == "token-sum":
            return base * (dp_size * n.clamp_min(1.0))
        N = n if batch_num_tokens is None else batch_num_tokens
        return base * (dp_size * n.clamp_min(1.0) / N)
    constant = None
    if loss_agg_mode == "seq-mean-token-sum-norm":
        constant = float(m.shape[-1] if loss_scale_factor is None else loss_scale_factor)
    base = L.aggregate(loss, m, loss_agg_mode, constant=constant)  # mean over all rows
    rows = valid.numel()
    G = valid.sum() if global_batch_size is None else global_batch_size
    return base * (dp_size * rows / G)


# ---------------------------------------------------------------------------
# policy losses
# ---------------------------------------------------------------------------


def _check_usable(obj: Objective) -> None:
    if obj.spec.verl_note and "ref" in obj.needs:
        raise ValueError(f"objective {obj.name!r} cannot run in verl: {obj.spec.verl_note}")
    if "ref" in obj.needs:
        raise ValueError(f"objective {obj.name!r} needs reference log-probabilities, which verl's policy loss "
                         "does not receive; use verl's actor.use_kl_loss for a KL to the reference")
    if "expected" in obj.needs:
        raise ValueError(f"objective {obj.name!r} needs the rollout's distribution at every position "
                         "(logp_expected, e.g. from top-k log-probabilities), which verl's policy loss does not receive")
    if "prox" in obj.needs:
        raise ValueError(f"objective {obj.name!r} needs proximal log-probabilities; in verl it is the built-in "
                         f"'vanilla' loss with rollout-correction weights: see recipe({obj.name!r})")


def _configured(obj: Objective, config, cache: dict) -> Objective:
    """The objective with ``beta`` from ``config.policy_loss.dro_beta`` when that is set."""
    beta = None
    if config is not None and "beta" in obj.params:
        pl = config.get("policy_loss", None)
        beta = pl.get("dro_beta", None) if pl is not None else None
    if beta is None or float(beta) == obj.params["beta"]:
        return obj
    beta = float(beta)
    if beta not in cache:
        params = dict(obj.params, beta=beta)
        if obj.advantage == "soft_value" and obj.params.get("beta1") == obj.params["beta"]:
            params["beta1"] = beta  # the log-mean-exp baseline at the loss's own temperature stays tied to it
        cache[beta] = make_objective(obj.name, **params)
    return cache[beta]


def _baseline_residual(obj: Objective, adv: np.ndarray) -> np.ndarray | None:
    """Per-group residual of the identity the objective's advantage estimator satisfies, or None."""
    p, name = obj.params, obj.advantage
    if name in ("loo", "grpo"):
        return adv.mean(-1)
    if name == "mean":
        return adv.mean(-1) - p.get("offset", 0.0)
    if name == "shifted_mean":
        return adv.mean(-1) - p.get("delta", 1.0) * p["beta"]
    if name == "soft_value":  # the group soft value of A is -delta beta (0 without a shift)
        b1 = p["beta1"]
        return b1 * log_mean_exp(adv / b1) + p.get("delta", 0.0) * p["beta"]
    return None


class _LambertCache:
    """Memoized Lambert eta of a group: it depends only on the sorted advantages and beta.

    With binary rewards a group's advantages take at most G + 1 distinct sorted values,
    so after a few steps every group is a dictionary lookup; the first ``maxsize``
    distinct groups are kept.
    """

    def __init__(self, maxsize: int = 65536):
        self.maxsize = maxsize
        self.table: dict[tuple, float] = {}

    def __call__(self, adv: np.ndarray, beta: float) -> np.ndarray:
        adv = np.sort(adv, axis=-1)  # (n, G)
        keys = [(beta, row.tobytes()) for row in adv]
        missing = [i for i, k in enumerate(keys) if k not in self.table]
        fresh = dict(zip([keys[i] for i in missing], lambert_eta(adv[missing], beta))) if missing else {}
        out = np.array([self.table[k] if k in self.table else fresh[k] for k in keys])
        if len(self.table) + len(fresh) <= self.maxsize:
            self.table.update(fresh)
        return out


def _group_starts(obj: Objective, adv: np.ndarray, valid: np.ndarray, G) -> list[int]:
    """Start rows of the groups of G consecutive rows in a micro-batch, or [] when none is recognized.

    verl keeps a prompt's completions next to each other on a rank (its balancing sorts each rank's
    rows), so the groups that lie whole in the micro-batch sit at one phase ``p``: rows ``p + kG``
    onward. A window counts as a group if its advantages satisfy the objective's estimator identity
    (mean A = the offset, or the soft value of A = 0); the phase with the most such windows is used,
    which discards windows that pass by coincidence (discrete rewards) at other phases.
    """
    if not G or G < 1 or len(adv) < G:
        return []
    win = np.lib.stride_tricks.sliding_window_view(adv, G)  # (B - G + 1, G): every window of G rows
    res = _baseline_residual(obj, win)
    if res is None:
        return []
    ok = np.abs(res) <= 1e-5 * (1.0 + np.abs(win).max(-1))
    ok &= np.lib.stride_tricks.sliding_window_view(valid, G).all(-1)
    counts = [int(ok[p::G].sum()) for p in range(min(G, len(ok)))]
    best = int(np.argmax(counts))
    return [i for i in range(best, len(ok), G) if ok[i]]


#: Environment variable that turns the zoo's readings off (``0``) in every process; default on. They cost a few
#: elementwise passes over the micro-batch (``benchmarks/bench_verl_losses.py`` times the loss with and without).
READINGS_ENV = "PESSIMISM_TOOLKIT_ZOO_READINGS"


def readings_enabled() -> bool:
    """Whether the zoo's losses report their readings (``READINGS_ENV`` is not ``0``)."""
    return os.environ.get(READINGS_ENV, "1") != "0"


#: Prefix of the zoo's readings in verl's logs (verl's own off-policy readings are ``rollout_corr/*``).
PREFIX = "actor/zoo/"

#: Former names of the regression family's readings, still reported (the README and older dashboards use them).
LEGACY_NAMES = MappingProxyType({"kl_mu_pi": "actor/zoo_kl_mu_pi", "adv_over_beta": "actor/zoo_adv_over_beta",
                                 "eta_fit": "actor/zoo_eta_fit", "eta_lambert": "actor/zoo_eta_lambert",
                                 "eta_groups": "actor/zoo_eta_groups"})


def _lambert_readings(obj, adv_seq: torch.Tensor, valid: torch.Tensor, group_size, lambert) -> dict[str, float]:
    """Lambert-predicted eta, regime (mean over groups of the sign) and the share of rows in the groups found.

    ``adv_seq`` (B,) sequence advantages, ``valid`` (B,) non-empty rows; groups: windows of ``rollout.n``
    consecutive rows at one phase (:func:`_group_starts`). NaN (and share 0) when none is found.
    """
    beta = obj.params["beta"]
    a_np = adv_seq.detach().double().cpu().numpy()
    out = {"eta_lambert": math.nan, "regime": math.nan, "eta_groups": 0.0}
    starts = _group_starts(obj, a_np, valid.cpu().numpy(), group_size)
    if starts:
        blocks = np.stack([a_np[i:i + group_size] for i in starts])
        out["eta_lambert"] = float(lambert(blocks, beta).mean())
        out["regime"] = float(group_regime(blocks, beta).mean())
        out["eta_groups"] = len(starts) * group_size / len(a_np)
    return out


def _zoo_readings(obj, log_prob, old_log_prob, advantages, adv, m, group_size, lambert) -> dict[str, float]:
    """The zoo's readings of a micro-batch (``sims.integrations.diagnostics``), named for verl's logs."""
    beta = temperature(obj)
    values = readings(batch_sums(log_prob, old_log_prob, m, advantages), beta, obj.level)
    if predicts_eta(obj):
        values.update(_lambert_readings(obj, adv, m.sum(-1) > 0, group_size, lambert))
    out = {PREFIX + k: v for k, v in values.items()}
    if predicts_eta(obj):
        out.update({old: values[k] for k, old in LEGACY_NAMES.items()})
    return out


def make_policy_loss(objective: Objective | str, **params) -> Callable:
    """A verl policy loss computing the zoo objective ``objective`` (a name or an :class:`Objective`).

    The returned function has verl's signature (verl passes every argument by
    keyword)::

        fn(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
           config=None, rollout_is_weights=None) -> (loss, metrics)

    ``old_log_prob`` is the anchor :math:`\\mu` of the zoo loss (the rollout policy in
    verl's bypass mode, the recomputed old policy otherwise), ``advantages`` the
    per-token advantages verl broadcasts (a sequence-level objective takes their
    masked mean per row), ``response_mask`` a bool ``(B, T)`` mask,
    ``rollout_is_weights`` (if given) multiplies the per-token loss, as in every
    verl loss. Metrics (python floats): ``actor/ppo_kl`` (mean of
    :math:`\\log\\mu - \\log\\pi` over tokens), ``actor/pg_clipfrac`` for the objectives that clip
    (TOPR: negative-advantage tokens whose ratio is truncated; M2PO: tokens the mask drops), and
    ``actor/zoo/<name>`` for each name of ``diagnostics.reading_names(objective)`` (plus
    ``actor/zoo/eta_groups`` and the :data:`LEGACY_NAMES` for the regression family);
    docs/diagnostics.md defines them.
    """
    obj = objective if isinstance(objective, Objective) else make_objective(objective, **params)
    if params and isinstance(objective, Objective):
        raise ValueError("pass parameters either in the Objective or as keywords, not both")
    _check_usable(obj)
    cache: dict = {}
    lambert = _LambertCache()

    def policy_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None,
                    rollout_is_weights=None):
        o = _configured(obj, config, cache)
        info = dict(config.get("global_batch_info", None) or {}) if config is not None else {}
        m = response_mask.to(log_prob.dtype)
        old_log_prob = old_log_prob.detach()
        if o.level == "sequence":
            adv = (advantages * m).sum(-1) / m.sum(-1).clamp_min(1.0)
        else:
            adv = advantages
        loss = o.loss(log_prob, old_log_prob, adv, m)
        if rollout_is_weights is not None:
            if loss.shape != m.shape:
                loss = loss.unsqueeze(-1).expand_as(m)
            loss = loss * rollout_is_weights
        value = aggregate(loss, m, loss_agg_mode, **info)

        with torch.no_grad():
            s = ((log_prob.detach() - old_log_prob) * m).sum(-1)  # (B,) sequence log-ratios log pi/mu
            n = m.sum().clamp_min(1.0)
            metrics = {"actor/ppo_kl": float(-s.sum() / n)}
            if o.clips:  # tokens whose gradient the loss clips, truncates or masks (Objective.clipped)
                clipped = o.clipped(log_prob, old_log_prob, advantages, m)
                metrics["actor/pg_clipfrac"] = float((clipped.to(m.dtype) * m).sum() / n)
            group = config.get("rollout_n", None) if config is not None else None
            if readings_enabled():
                metrics.update(_zoo_readings(o, log_prob, old_log_prob, advantages, adv, m, group, lambert))
        return value, metrics

    policy_loss.objective = obj
    policy_loss.__name__ = f"zoo_{obj.name}"
    policy_loss.__qualname__ = policy_loss.__name__
    policy_loss.__doc__ = f"verl policy loss for the zoo objective {obj.name!r}: {obj.equation} ({obj.source})."
    return policy_loss


def register_objective(objective: Objective | str, *, loss_mode: str | None = None, **params) -> str:
    """Register a zoo objective as the verl policy loss ``loss_mode`` (default ``zoo_<name>``); return the name.

    For settings other than the published ones, call this in a module that verl
    imports (``VERL_USE_EXTERNAL_MODULES``), e.g.
    ``register_objective("m2po", loss_mode="zoo_m2po_tau01", tau=0.1)``.
    Raises :class:`ValueError` for an unknown objective (listing the valid ones) and
    for objectives verl cannot run (A*-PO: no reference log-probabilities).
    """
    if isinstance(objective, str) and objective in OBJECTIVES and objective_spec(objective).verl_note:
        raise ValueError(f"objective {objective!r} cannot run in verl: {objective_spec(objective).verl_note}")
    fn = make_policy_loss(objective, **params)
    name = loss_mode or f"zoo_{fn.objective.name}"
    _core.register_policy_loss(name)(fn)
    return name


# ---------------------------------------------------------------------------
# advantage estimators
# ---------------------------------------------------------------------------


def group_apply(scores: torch.Tensor, index, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply a group function ``(n, G) -> (n, G)`` to per-row ``scores`` (B,) grouped by ``index`` (B,).

    Rows are grouped by equal ``index`` values (verl's ``uid``), in any order and with
    groups of any sizes (each size is one batched call).
    """
    if index is None:
        raise ValueError("a group advantage needs verl's per-row group ids (non_tensor_batch['uid'])")
    index = np.asarray(index)
    if index.shape != (scores.shape[0],):
        raise ValueError(f"index has shape {index.shape}; expected ({scores.shape[0]},)")
    _, inverse, counts = np.unique(index, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    size = counts[inverse]
    out = torch.empty_like(scores)
    for g in np.unique(counts):
        rows = np.flatnonzero(size == g)
        order = torch.as_tensor(rows[np.argsort(inverse[rows], kind="stable")], device=scores.device)
        out[order] = fn(scores[order].reshape(-1, int(g))).reshape(-1).to(out.dtype)
    return out


def _zoo_config(config) -> dict:
    if config is None or not hasattr(config, "get"):
        return {}
    zoo = config.get("zoo", None)
    if zoo is None:
        return {}
    if not hasattr(zoo, "items"):
        raise ValueError(f"algorithm.zoo must be a mapping of parameters, got {zoo!r}")
    return {str(k): v for k, v in zoo.items()}


@dataclass(frozen=True)
class _AdvSpec:
    objective: str  # whose advantages() is used
    keys: Mapping[str, tuple[str, ...]]  # algorithm.zoo key -> objective parameters it sets
    defaults: Mapping[str, Any] = field(default_factory=dict)  # objective parameters that differ from its own
    doc: str = ""


_ADV_SPECS = {
    "zoo_raw": _AdvSpec("topr", {}, doc="A = r"),
    "zoo_mean": _AdvSpec("asymre", {"offset": ("offset",)}, {"offset": 0.0}, doc="A = r - mean + offset"),
    "zoo_shifted_mean": _AdvSpec("shifted_regression", {"beta": ("beta",), "delta": ("delta",)},
                                 doc="A = r - mean + delta beta (beta-shifted mean)"),
    "zoo_soft_value": _AdvSpec("opmd_lme", {"beta": ("beta", "beta1")},
                               doc="A = r - beta log mean exp(r/beta) (group soft value at beta)"),
    "zoo_decoupled_soft_value": _AdvSpec("oapl", {"beta1": ("beta1",)},
                                         doc="A = r - beta1 log mean exp(r/beta1) (decoupled beta1)"),
    "zoo_soft_value_above": _AdvSpec("opmd_above", {"beta": ("beta", "beta1"), "delta": ("delta",)},
                                     doc="A = r - beta log mean exp(r/beta) - delta beta (V above the soft value)"),
    "zoo_awr": _AdvSpec("awr", {"beta": ("beta",), "max_weight": ("max_weight",)},
                        doc="w = min(exp((r - mean)/beta), max_weight) (AWR weight)"),
    "zoo_tpo": _AdvSpec("tpo", {"beta": ("beta",)}, doc="w = G softmax(z/beta), z the z-scored reward (TPO)"),
}

#: verl advantage estimators registered at import: name -> formula (``algorithm.zoo.*`` sets the parameters).
ADVANTAGE_ESTIMATORS = MappingProxyType({k: v.doc for k, v in _ADV_SPECS.items()})


def _make_adv_estimator(name: str, spec: _AdvSpec) -> Callable:
    def estimator(token_level_rewards, response_mask, config=None, index=None, **kwargs):
        params = dict(spec.defaults)
        zoo = _zoo_config(config)
        for key, targets in spec.keys.items():
            if key in zoo and zoo[key] is not None:
                for t in targets:
                    params[t] = float(zoo[key])
        obj = make_objective(spec.objective, **params)
        scores = token_level_rewards.sum(-1).to(torch.float64)
        with torch.no_grad():
            adv = group_apply(scores, index, obj.advantages)
        adv = adv.to(token_level_rewards.dtype).unsqueeze(-1) * response_mask
        return adv, adv

    estimator.__name__ = estimator.__qualname__ = name
    estimator.__doc__ = f"verl advantage estimator {name}: {spec.doc} (zoo: {spec.objective!r}'s estimator)."
    return estimator


# ---------------------------------------------------------------------------
# registration at import
# ---------------------------------------------------------------------------

REGISTERED = tuple(n for n in OBJECTIVES if runs_as_zoo_loss(n))
for _name in REGISTERED:
    register_objective(_name)


def _register_new(spec) -> None:
    """Listener of ``theory.objectives``: a user's objective registered after this import becomes ``zoo_<name>``."""
    if runs_as_zoo_loss(spec.name):
        register_objective(spec.name)


on_register(_register_new)

for _name, _spec in _ADV_SPECS.items():
    _fn = _make_adv_estimator(_name, _spec)
    _prev = _core.ADV_ESTIMATOR_REGISTRY.get(_name)
    if _prev is not None and getattr(_prev, "__module__", None) == __name__:
        del _core.ADV_ESTIMATOR_REGISTRY[_name]  # this module imported again (reload): replace our own entry
    _core.register_adv_est(_name)(_fn)

del _name, _spec, _fn, _prev
