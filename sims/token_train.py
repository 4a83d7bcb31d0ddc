r"""A tabular autoregressive policy trained under lag on the toy token MDP, any objective of the zoo.

docs/theory.md sections 6 and 7 (c): the stochastic delayed iteration of
:mod:`sims.bandit`, on the prefix tree of :mod:`sims.token_mdp` instead of a
bandit. A completion is a sequence of ``T`` tokens from a vocabulary of ``V``;
the reward lives on the ``V**T`` leaves. ``S`` seeds are simulated as a leading
axis of one torch computation.

**Policy.** Tabular logits, one row of ``V`` per prefix, all depths in one flat
tensor ``(S, N, V)`` with :math:`N = \sum_{t<T} V^t = (V^T - 1)/(V - 1)` rows
ordered depth by depth: the prefix of length ``t`` with index ``s`` (the
indexing of :mod:`sims.token_mdp`) is row ``state_offsets(V, T)[t] + s``, so
``softmax(logits)[:, off[t]:off[t+1]]`` is ``cond[t]`` of ``sims.token_mdp``.

**Lag.** At step ``t`` the data come from the behaviour policy
:math:`\mu_t = \pi_{t-L}` (:math:`\pi_0` while ``t < L``), kept in a ring of
``L + 1`` logit snapshots (the loop of :func:`sims.lagged.run_lagged`, shared with
:mod:`sims.bandit`). ``G`` completions per seed are sampled token by token
from :math:`\mu_t` (inverse CDF on uniforms from one ``torch.Generator`` per
seed, seeded with the seed's value), and their behaviour log-probabilities are
recorded at sampling time. With ``population=True`` every leaf is a sample,
weighted by :math:`\mu_t(y)`, with the objective's population signal
(``obj.population_advantage``; the weight :math:`h` for the weighted
cross-entropies), as in :mod:`sims.bandit`.

.. math::

    y_{1..G} \sim \mu_t,\quad
    \ell = \mathrm{aggregate}\big(\mathrm{loss}(\log\pi(y), \log\mu_t(y), \mathrm{signal}(r(y)))\big),
    \quad \theta \leftarrow \mathrm{opt}(\theta, \nabla_\theta\ell) \ (k \text{ times}).

**Levels.** The loss, signal and aggregation are the zoo's own
(``theory.objectives``); what ``level`` sets is what the objective sees:

* ``"sequence"``: one log-probability per completion,
  :math:`\log\pi(y) = \sum_t \log\pi(a_t\mid y_{<t})`, passed as a one-token
  sequence ``(S, G, 1)``; the log-ratio is the sequence log-ratio
  :math:`s(y) = \log\pi(y)/\mu(y)`. A sequence-level zoo objective (the
  regression family) gets its native input; a token-level one acts on the
  sequence ratio :math:`u(y) = \pi(y)/\mu(y)` (sequence-level PPO, REINFORCE with
  a sequence k1 penalty, ...).
* ``"token"``: per-token log-probabilities ``(S, G, T)``, the completion's
  signal broadcast to every token. A token-level zoo objective uses its own
  per-token loss and its own aggregation over the ``T`` tokens. A
  sequence-level zoo objective is applied to every token as a one-token
  sequence: :math:`\ell_t = \ell(s_t, A)`, e.g. the per-token regression
  :math:`(\beta s_t - A)^2` of docs/theory.md section 6, averaged over tokens (the
  zoo's ``sequence`` aggregation over the ``G T`` one-token sequences; the same
  as masking all tokens but ``t``).
* GSPO at level ``"sequence"`` raises: its defining ratio is the
  length-normalized mean of the token log-ratios, which a single summed
  log-probability cannot express (use ``level="token"``).

Completions all have length ``T`` (no padding), so every aggregation mode is a
uniform weight on the loss elements (``token-mean``: :math:`1/(GT)`;
``seq-mean-token-sum``: :math:`1/G`; ...) and length normalization is a
constant factor (it matters only with unequal lengths). Each seed's loss is that weighted
sum over its own elements (the weight read once from ``obj.aggregate``), so
seeds are independent problems and a seed's numbers do not depend on which
other seeds share the batch. The reference policy of ``logp_ref`` is the
behaviour and the proximal policy of ``logp_prox`` is the current one,
detached (as in :mod:`sims.bandit`).

**Induced targets.** For the objectives whose state target the DP supports
(:func:`supports_target`) the update at step ``t`` is compared with the exact
population target (:math:`G\to\infty`) of its data :math:`\mu_t` over the leaves:

* level ``"sequence"``: :math:`p_{\rm seq} = \mathcal T(\mu_t, A)` over the
  :math:`V^T` leaves (``sims.token_mdp.sequence_level_target``);
* level ``"token"``: the product of the per-prefix targets
  :math:`\mathcal T(\mu_t(\cdot\mid s), Q_t(s,\cdot))`
  (``sims.token_mdp.token_level_target``).

With :math:`A` the objective's population advantage and :math:`\mathcal T`:

* the regression family and ``reinforce_k2`` (``target_kind == "lambert"``):
  ``lambert_state_target(beta)`` with the plain :math:`Q_t = E_\mu[A\mid s, a]`
  (per state, :math:`E[(\beta s_t - A)^2\mid s,a] = (\beta s_t - Q_t)^2 + \mathrm{Var}`);
* AWR and TPO (``gibbs``, with ``max_weight = inf``): ``gibbs_state_target(beta)``
  with the soft :math:`Q^{\rm soft}_t` (the per-token weighted cross-entropy
  moves :math:`\pi(a\mid s)` to :math:`\propto \mu(a\mid s)E_\mu[e^{A/\beta}\mid s,a]`);
  both levels give the sequence Gibbs target;
* ``reinforce_k1`` and ``reinforce_k3`` (``linear``): ``linear_state_target(beta)``
  with the plain :math:`Q_t`, supported when :math:`\beta` exceeds the reward
  range (then every :math:`A + \beta > 0`, the tilt is not thresholded and both
  levels give :math:`\pi \propto \mu(A + \beta)`).

Every other objective has no closed-form target the DP supports (ratio
objectives: set-valued LP targets or the flow; REINFORCE / TOPR: the per-state
linear targets collapse on below-average subtrees; a finite ``max_weight``
breaks the soft Bellman recursion), and the target metrics are not recorded.

**Metrics** (``result.metrics``; axes in :data:`METRIC_AXES`):

* every step, of the policy :math:`\pi_t` before the update, exactly over the
  leaves: ``reward`` :math:`E_{\pi_t}[r]`, ``entropy`` :math:`H(\pi_t)`,
  ``kl_mu_pi`` :math:`\mathrm{KL}(\mu_t\|\pi_t)` (0 at lag 0), ``kl_init``
  :math:`\mathrm{KL}(\pi_t\|\pi_0)`; shape ``(S, steps)``;
* on the target steps (``result.target_steps``, every ``target_every``-th
  step), for a supported objective with target tracking on: ``kl_target``
  :math:`\mathrm{KL}(p_\star\|\pi_{t+1})` and ``tv_target`` between the
  update's result and the target :math:`p_\star` of its data at the configured
  level; with ``track_gap`` also ``kl_seq_tok``
  :math:`\mathrm{KL}(p_{\rm seq}\|p_{\rm tok})`, the gap between the two
  levels' targets of :math:`\mu_t`. Shape ``(S, len(target_steps))``.

Metrics that do not apply are absent from the dict, never NaN.

Usage::

    cfg = TokenSimConfig.smoke(objective="opmd", level="token", lag=4)
    res = simulate(cfg, progress=True)     # TokenSimResult
    res.metrics["kl_mu_pi"]                # (S, steps)
    res.final_conditionals(0)              # seed 0's policy, sims.token_mdp's cond format
    save_results("out/run", res)           # out/run.npz + out/run.json, atomically
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

import theory
from sims import bandit as _bandit
from sims.lagged import OPTIMIZERS, Optimizer, UniformStream, loss_kwargs, population_signal, run_lagged
from theory._checks import as_int
from sims.lagged import check_batch, check_bool, check_training, checked_objective
from sims.lagged import normalized, policy_metrics, tv
from theory.runtime import torch_single_thread
from sims.token_mdp import (
    TokenTree,
    conditional_advantage,
    gibbs_state_target,
    lambert_state_target,
    linear_state_target,
    partial_credit_reward,
    prefix_credit_reward,
    random_policy,
    soft_conditional_advantage,
    sparse_reward,
)
from theory._numerics import softmax
from theory.objectives import Objective, make_objective

__all__ = [
    "LEVELS",
    "REWARDS",
    "INITS",
    "OPTIMIZERS",
    "METRIC_AXES",
    "POPULATION_MAX_LEAVES",
    "SIM_MAX_LEAVES",
    "TokenSimConfig",
    "TokenSimResult",
    "state_offsets",
    "leaf_entries",
    "supports_target",
    "simulate",
    "save_results",
    "load_results",
]

#: What the objective sees: one summed log-probability per completion, or one per token.
LEVELS = ("sequence", "token")
#: Reward names -> ``sims.token_mdp`` functions ``(tree, correct) -> (V**T,)``, all in [0, 1].
REWARDS = {"sparse": sparse_reward, "partial_credit": partial_credit_reward, "prefix_credit": prefix_credit_reward}
#: Initial policies: uniform conditionals, or Dirichlet rows (``sims.token_mdp.random_policy``).
INITS = ("uniform", "dirichlet")
#: Largest tree for exact population updates (every leaf is a sample at every inner step).
POPULATION_MAX_LEAVES = 4096
#: Largest tree simulated at all (the metrics are exact sums over the leaves at every step).
SIM_MAX_LEAVES = 1 << 16
#: Largest tree on which the induced targets are tracked by default.
TARGET_DEFAULT_MAX_LEAVES = 4096

#: Axes of the recorded metrics (a metric is present only when it applies).
METRIC_AXES = {
    "reward": ("seed", "step"),
    "entropy": ("seed", "step"),
    "kl_mu_pi": ("seed", "step"),
    "kl_init": ("seed", "step"),
    "kl_target": ("seed", "target_step"),
    "tv_target": ("seed", "target_step"),
    "kl_seq_tok": ("seed", "target_step"),
}

_DTYPE = torch.float64
_RNG_CHUNK = 64  # steps of uniforms drawn per seed at a time (bounds memory)
_REWARD_RANGE = 1.0  # every reward of REWARDS lies in [0, 1] and takes both values


# ----------------------------------------------------------------------------- tree layout


def state_offsets(V: int, T: int) -> np.ndarray:
    """Row offsets of the depths in the flat logits: ``off[t] = (V**t - 1)/(V - 1)``, shape (T + 1,).

    Depth ``t`` occupies rows ``off[t]:off[t+1]`` (``V**t`` rows); ``off[T] = N``.
    """
    return np.array([(V**t - 1) // (V - 1) for t in range(T + 1)], dtype=np.int64)


def leaf_entries(V: int, T: int) -> np.ndarray:
    r"""Index of each leaf's token log-probabilities in the flattened ``(N V,)`` logits, shape (V**T, T).

    Token ``t`` of leaf ``y`` is entry :math:`\mathrm{off}[t]\,V + \lfloor y / V^{T-1-t}\rfloor`:
    the row of its prefix times ``V`` plus the token, i.e. the index of the
    length-``t+1`` prefix shifted by the depth's offset.
    """
    off = state_offsets(V, T)
    y = np.arange(V**T, dtype=np.int64)[:, None]
    place = V ** np.arange(T - 1, -1, -1, dtype=np.int64)  # V**(T-1-t)
    return off[:T] * V + y // place


# ----------------------------------------------------------------------------- supported targets


class _NoTarget(Exception):
    """The objective has no induced target the DP supports; the message says why."""


def _target_route(obj: Objective, reward_range: float = _REWARD_RANGE):
    """``(state_target, soft)`` of the objective's induced target, or raise :class:`_NoTarget`.

    ``soft`` selects the soft conditional advantage for the token-level target.
    """
    kind, beta = obj.target_kind, obj.params.get("beta")
    if kind == "lambert":
        return lambert_state_target(beta), False
    if kind == "gibbs":
        if math.isfinite(obj.params.get("max_weight", math.inf)):
            raise _NoTarget(
                f"{obj.name!r} with a finite max_weight: the clipped weight breaks the soft Bellman "
                "recursion that gives the token-level Gibbs target; use max_weight=inf"
            )
        return gibbs_state_target(beta), True
    if kind == "linear" and obj.params.get("kind") in ("k1", "k3"):
        if not beta > reward_range:
            raise _NoTarget(
                f"{obj.name!r} with beta = {beta} <= the reward range {reward_range}: some A + beta <= 0 can "
                "leave a prefix with E_mu[Q + beta] <= 0 (no interior target there); use beta > "
                f"{reward_range}"
            )
        return linear_state_target(beta), False
    raise _NoTarget(
        f"{obj.name!r} (target kind {kind!r}) has no closed-form state target the DP supports; supported: "
        "the Lambert (regression, reinforce_k2), Gibbs (awr, tpo) and linear k1/k3 objectives"
    )


def supports_target(objective, reward_range: float = _REWARD_RANGE) -> bool:
    """Whether :func:`simulate` can track the exact induced target of ``objective`` (see the module docstring).

    Parameters
    ----------
    objective : str or theory.objectives.Objective
        A zoo name (published defaults) or a made objective (with its overrides).
    reward_range : float
        ``max r - min r``; 1 for every reward of :data:`REWARDS`. Only the
        linear k1/k3 objectives depend on it (supported when ``beta > reward_range``).
    """
    obj = make_objective(objective) if isinstance(objective, str) else objective
    if not isinstance(obj, Objective):
        raise ValueError(f"objective must be a zoo name or an Objective, got {type(objective).__name__}")
    try:
        _target_route(obj, reward_range)
    except _NoTarget:
        return False
    return True


# ----------------------------------------------------------------------------- config


def _checked_correct(correct, V: int, T: int) -> tuple:
    """The correct sequence as a tuple of T ints in [0, V)."""
    if isinstance(correct, (str, bytes)) or not hasattr(correct, "__len__"):
        raise ValueError(f"correct must be None or a sequence of T = {T} tokens, got {correct!r}")
    corr = tuple(correct)
    if len(corr) != T:
        raise ValueError(f"correct must have T = {T} tokens, got {len(corr)}")
    for tok in corr:
        if isinstance(tok, bool) or not isinstance(tok, (int, np.integer)) or not 0 <= tok < V:
            raise ValueError(f"correct tokens must be integers in [0, {V - 1}], got {corr!r}")
    return tuple(int(t) for t in corr)


def _checked_seeds(seeds) -> tuple:
    """The seeds as a non-empty tuple of distinct ints >= 0."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ValueError(f"seeds must be a tuple of distinct integers >= 0, got {seeds!r}")
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds is empty; give at least one seed, e.g. seeds=(0,)")
    for s in seeds:
        as_int(s, "every seed", 0)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct (a repeated seed repeats its run), got {seeds}")
    return tuple(int(s) for s in seeds)


@dataclass(frozen=True)
class TokenSimConfig:
    """One simulated training run on the token MDP (all seeds). Validated on construction.

    Invalid settings raise :class:`ValueError` naming the field and what to
    change, before anything is computed.
    """

    V: int = 3
    """Vocabulary size, >= 2."""
    T: int = 3
    """Tokens per completion (tree depth), >= 1; ``V**T <= SIM_MAX_LEAVES``."""
    reward: str = "partial_credit"
    """A name of ``REWARDS``: ``sparse`` (1 on the correct sequence), ``partial_credit``
    (fraction of correct positions), ``prefix_credit`` (longest correct prefix / T)."""
    correct: tuple | None = None
    """The correct sequence, T tokens in [0, V); default all zeros."""
    objective: str = "opmd"
    """Name in ``theory.objectives.OBJECTIVES``."""
    obj_params: tuple = ()
    """Overrides of the objective's published defaults: a dict or (name, value) pairs."""
    level: str = "sequence"
    """One of ``LEVELS``: what the objective sees (module docstring)."""
    lag: int = 0
    """L >= 0: the data at step t come from pi_{t-L} (pi_0 while t < L)."""
    group_size: int = 16
    """G, completions sampled per seed and step (ignored when ``population``)."""
    population: bool = False
    """Exact expectations over all leaves weighted by mu (needs V**T <= POPULATION_MAX_LEAVES)."""
    optimizer: str = "adam"
    """One of ``OPTIMIZERS`` (``sims.lagged``'s; ``normalized``: one block per seed, all its logits)."""
    lr: float = 0.05
    """Step size (> 0)."""
    inner_steps: int = 1
    """k, optimizer steps on each batch."""
    steps: int = 200
    """Outer steps (batches)."""
    seeds: tuple = (0, 1, 2, 3)
    """Distinct seeds >= 0, simulated as a leading axis; seed s samples from torch.Generator().manual_seed(s)."""
    init: str = "uniform"
    """One of ``INITS``: pi_0 uniform, or Dirichlet rows drawn from ``init_seed`` (same pi_0 for every seed)."""
    init_seed: int = 0
    """Seed of the Dirichlet initial policy."""
    init_concentration: float = 1.0
    """Dirichlet concentration of the initial policy (> 0; small = peaked rows)."""
    track_targets: bool | None = None
    """Record the distance to the exact induced target (a DP per target step, all seeds batched).
    None: on when the objective is supported and V**T <= 4096; True for an unsupported objective raises."""
    target_every: int = 10
    """Compute the targets every this many steps (``result.target_steps``). The token-level Lambert
    target needs a solver on its negative-regime prefix rows, about 1 ms a row: ~0.7 s per target step
    for 8 seeds at V = 4, T = 4; the sequence-level, Gibbs and linear targets cost well under 1 ms."""
    track_gap: bool = True
    """With the targets, also the gap KL(p_seq || p_tok) (costs the other level's target: the token-level
    Lambert target dominates, its negative-regime rows need a solver)."""
    record_policies: bool = False
    """Keep the leaf distributions pi_t (steps + 1, S, V**T) and mu_t (steps, S, V**T)."""

    def __post_init__(self):
        V, T = self._check_tree()
        params, obj = checked_objective(self.objective, self.obj_params)  # raises for bad parameters
        object.__setattr__(self, "obj_params", params)
        if "expected" in obj.needs and self.level != "token":
            raise ValueError(f"level: objective {obj.name!r} subtracts the sampler-expected score at every "
                             f"position; set level='token' (got {self.level!r})")
        if self.level not in LEVELS:
            raise ValueError(f"unknown level {self.level!r}; valid levels: {', '.join(LEVELS)}")
        if obj.sequence_ratio and self.level == "sequence":
            raise ValueError(
                f"{obj.name} at level='sequence': its ratio is the length-normalized mean of the token log-ratios "
                "(GSPO's), which one summed log-probability per completion cannot express; use level='token'"
            )
        check_training(self)
        if self.population and V**T > POPULATION_MAX_LEAVES:
            raise ValueError(
                f"population=True sums over all V**T = {V**T} leaves, more than POPULATION_MAX_LEAVES = "
                f"{POPULATION_MAX_LEAVES}; use population=False (sampled groups) or a smaller tree"
            )
        object.__setattr__(self, "seeds", _checked_seeds(self.seeds))
        self._check_init_and_tracking(obj)
        check_batch(obj, self.objective, self.group_size, self.population, len(self.seeds), "give one seed")

    def _check_tree(self) -> tuple[int, int]:
        """Check V, T, the tree's size, the reward and the correct sequence (stored as a tuple); return (V, T)."""
        V = as_int(self.V, "V", 2)
        T = as_int(self.T, "T", 1)
        if V**T > SIM_MAX_LEAVES:
            raise ValueError(
                f"V**T = {V}**{T} = {V**T} leaves exceeds SIM_MAX_LEAVES = {SIM_MAX_LEAVES} "
                "(the metrics are exact sums over the leaves); use a smaller V or T"
            )
        if self.reward not in REWARDS:
            raise ValueError(f"unknown reward {self.reward!r}; valid rewards: {', '.join(REWARDS)}")
        if self.correct is not None:
            object.__setattr__(self, "correct", _checked_correct(self.correct, V, T))
        return V, T

    def _check_init_and_tracking(self, obj: Objective) -> None:
        """Check the initial policy's fields and the target-tracking switches (a supported target when forced on)."""
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; valid: {', '.join(INITS)}")
        as_int(self.init_seed, "init_seed", 0)
        c = self.init_concentration
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not (math.isfinite(c) and c > 0):
            raise ValueError(f"init_concentration must be a finite number > 0, got {c!r}")
        if self.track_targets is not None:
            check_bool("track_targets", self.track_targets)
        as_int(self.target_every, "target_every", 1)
        check_bool("track_gap", self.track_gap)
        check_bool("record_policies", self.record_policies)
        if self.track_targets:
            try:
                _target_route(obj)
            except _NoTarget as err:
                raise ValueError(f"track_targets=True: {err}; or set track_targets=False") from err

    # -- presets and helpers ----------------------------------------------------
    @classmethod
    def smoke(cls, **overrides) -> "TokenSimConfig":
        """A run of about a second: V = 3, T = 3, 4 seeds, 40 steps, G = 8, targets every 5 steps."""
        base = dict(V=3, T=3, seeds=(0, 1, 2, 3), steps=40, group_size=8, target_every=5)
        return cls(**{**base, **overrides})

    @classmethod
    def full(cls, **overrides) -> "TokenSimConfig":
        """A figure setting: V = 4, T = 4, 16 seeds, 300 steps, G = 16, 2 inner Adam steps, targets every 10."""
        base = dict(V=4, T=4, seeds=tuple(range(16)), steps=300, group_size=16, inner_steps=2, target_every=10)
        return cls(**{**base, **overrides})

    def replace(self, **changes) -> "TokenSimConfig":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def make_objective(self) -> Objective:
        """The objective, ``theory.objectives.make_objective(objective, **obj_params)``."""
        return make_objective(self.objective, **dict(self.obj_params))

    @property
    def tree(self) -> TokenTree:
        """The prefix tree ``TokenTree(V, T)``."""
        return TokenTree(self.V, self.T)

    @property
    def num_seeds(self) -> int:
        """S, the number of seeds."""
        return len(self.seeds)

    @property
    def tracks_targets(self) -> bool:
        """Whether the run records the target metrics (``track_targets`` with its default resolved)."""
        if self.track_targets is not None:
            return self.track_targets
        return self.V**self.T <= TARGET_DEFAULT_MAX_LEAVES and supports_target(self.make_objective())

    def rewards(self) -> np.ndarray:
        """Leaf rewards, shape (V**T,)."""
        return REWARDS[self.reward](self.tree, self.correct)

    def initial_conditionals(self) -> list[np.ndarray]:
        """pi_0 as T arrays (V**t, V) (``sims.token_mdp`` format)."""
        tree = self.tree
        if self.init == "uniform":
            return [np.full((self.V**t, self.V), 1.0 / self.V) for t in range(self.T)]
        return random_policy(tree, self.init_seed, self.init_concentration)

    def to_dict(self) -> dict:
        """JSON-able dict (``obj_params`` as a dict, tuples as lists)."""
        d = dataclasses.asdict(self)
        d["obj_params"] = dict(self.obj_params)
        d["seeds"] = list(self.seeds)
        d["correct"] = None if self.correct is None else list(self.correct)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TokenSimConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise."""
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - names
        if extra:
            raise ValueError(f"unknown TokenSimConfig field(s) {sorted(extra)}")
        return cls(**d)


# ----------------------------------------------------------------------------- result


@dataclass
class TokenSimResult:
    r"""Tidy output of :func:`simulate`.

    Attributes
    ----------
    config : TokenSimConfig
    metrics : dict of str -> ndarray
        Axes in :data:`METRIC_AXES`: ``(S, steps)``, or ``(S, len(target_steps))``
        for the target metrics (present only when tracked).
    target_steps : ndarray of int
        The steps whose update was compared with its target (empty when not tracked).
    behaviour_step : ndarray of int, shape (steps,)
        The step whose policy generated the data of step t, ``max(t - L, 0)``.
    final_logits : ndarray, shape (S, N, V)
        :math:`\pi_{\rm steps}` as flat logits (layout: :func:`state_offsets`).
    init_logits : ndarray, shape (N, V)
        :math:`\log\pi_0`.
    rewards : ndarray, shape (V**T,)
    policies, behaviours : ndarray or None
        With ``record_policies``: leaf distributions :math:`\pi_t` ``(steps + 1, S, V**T)``
        and :math:`\mu_t` ``(steps, S, V**T)``.
    """

    config: TokenSimConfig
    metrics: dict
    target_steps: np.ndarray
    behaviour_step: np.ndarray
    final_logits: np.ndarray
    init_logits: np.ndarray
    rewards: np.ndarray
    policies: np.ndarray | None = None
    behaviours: np.ndarray | None = None

    def final_conditionals(self, seed_index: int = 0) -> list[np.ndarray]:
        """Seed ``seed_index``'s final policy as T arrays (V**t, V) (``sims.token_mdp`` format)."""
        return _conditionals(self.final_logits[seed_index], self.config.V, self.config.T)

    def final_leaf_probs(self) -> np.ndarray:
        """Leaf distributions of the final policies, shape (S, V**T)."""
        return _leaf_probs_np(self.final_logits, self.config.V, self.config.T)

    def arrays(self) -> dict:
        """Every array, flat (metric names plus ``target_steps``, ``final_logits``, ...)."""
        out = dict(self.metrics)
        out.update(
            target_steps=self.target_steps,
            behaviour_step=self.behaviour_step,
            final_logits=self.final_logits,
            init_logits=self.init_logits,
            rewards=self.rewards,
        )
        if self.policies is not None:
            out.update(policies=self.policies, behaviours=self.behaviours)
        return out


def save_results(path, result: TokenSimResult) -> tuple[Path, Path]:
    """Write ``path.npz`` (arrays) and ``path.json`` (config), each atomically (``sims.bandit.save_results``)."""
    if not isinstance(result, TokenSimResult):
        raise ValueError(f"result must be a TokenSimResult, got {type(result).__name__}")
    return _bandit.save_results(path, result.arrays(), config=result.config)


def load_results(path) -> TokenSimResult:
    """Read what :func:`save_results` wrote back into a :class:`TokenSimResult`."""
    arrays, cfg = _bandit.load_results(path)
    config = TokenSimConfig.from_dict(cfg)
    metrics = {k: arrays.pop(k) for k in list(arrays) if k in METRIC_AXES}
    return TokenSimResult(config=config, metrics=metrics, **arrays)


# ----------------------------------------------------------------------------- helpers


def _conditionals(logits_nv: np.ndarray, V: int, T: int) -> list[np.ndarray]:
    """Flat logits (N, V) -> T arrays (V**t, V) of softmax rows."""
    p = softmax(logits_nv)
    off = state_offsets(V, T)
    return [p[off[t] : off[t + 1]].copy() for t in range(T)]


def _leaf_probs_np(logits: np.ndarray, V: int, T: int) -> np.ndarray:
    """Flat logits (..., N, V) -> leaf distributions (..., V**T)."""
    lt = torch.log_softmax(torch.as_tensor(logits, dtype=_DTYPE), -1)
    lp = lt.reshape(*lt.shape[:-2], -1)[..., torch.as_tensor(leaf_entries(V, T))].sum(-1)
    return normalized(lp.exp().numpy())


def _aggregate_weight(obj: Objective, level: str, T: int) -> float:
    r"""Weight of one loss element per sample, for samples of equal length with no mask.

    The per-seed loss of ``n`` samples is :math:`(c/n)\sum` of its loss elements,
    ``c`` read from ``obj.aggregate`` on one all-ones sample of the shape the
    loss has here: ``(1, 1)`` / ``(1,)`` at level ``sequence`` (token- /
    sequence-level objective), ``(1, T)`` / ``(T,)`` (T one-token sequences) at
    level ``token``.
    """
    T_eff = 1 if level == "sequence" else T
    if obj.level == "token":
        shape = (1, T_eff)
    else:
        shape = (T_eff,) if level == "token" else (1,)
    return float(obj.aggregate(torch.ones(shape, dtype=_DTYPE))) / T_eff


def _objective_loss(obj, level, lp_tok, lp_mu_tok, signal, expected_tok=None):
    """The zoo loss on a batch, as elements (S, n, T_eff); see the module docstring for the levels.

    ``lp_tok``, ``lp_mu_tok``: token log-probabilities (S, n, T) under pi (with
    gradient) and mu; ``signal``: (S, n), one value per completion;
    ``expected_tok``: (S, n, T) :math:`E_{v\\sim\\mu(\\cdot\\mid s_t)}\\log\\pi(v\\mid s_t)`
    where the objective needs it (level ``token`` only).
    """
    if level == "sequence":
        lp = lp_tok.sum(-1, keepdim=True)  # (S, n, 1): log pi(y)
        lp_mu = lp_mu_tok.sum(-1, keepdim=True)
        loss = obj.loss(lp, lp_mu, signal, None, **loss_kwargs(obj, lp, lp_mu))
        return loss if obj.level == "token" else loss.unsqueeze(-1)  # (S, n, 1)
    if obj.level == "token":
        kw = loss_kwargs(obj, lp_tok, lp_mu_tok, expected_tok)
        return obj.loss(lp_tok, lp_mu_tok, signal, None, **kw)  # (S, n, T)
    # a sequence-level objective on every token as a one-token sequence: (S, n, T, 1) -> (S, n, T)
    lp, lp_mu = lp_tok.unsqueeze(-1), lp_mu_tok.unsqueeze(-1)
    adv = signal.unsqueeze(-1).expand(lp_tok.shape)
    return obj.loss(lp, lp_mu, adv, None, **loss_kwargs(obj, lp, lp_mu))


def _gather_tokens(logsm_flat, idx):
    """Token log-probabilities (S, n, T) at entries ``idx`` (S, n, T) of flat log-probs (S, N V)."""
    S, n, T = idx.shape
    return logsm_flat.gather(1, idx.reshape(S, n * T)).reshape(S, n, T)


def _sample(mu_logits, uniforms, off, V):
    """Sample completions token by token from mu.

    Parameters
    ----------
    mu_logits : (S, N, V) behaviour logits
    uniforms : (S, G, T) U[0, 1)
    off : ndarray, state offsets

    Returns
    -------
    leaves (S, G), entries (S, G, T) into the flat (N V) logits, behaviour token log-probs (S, G, T)
    """
    S, G, T = uniforms.shape
    log_mu = torch.log_softmax(mu_logits, -1)  # (S, N, V)
    state = torch.zeros(S, G, dtype=torch.int64)
    entries = torch.empty(S, G, T, dtype=torch.int64)
    lp_mu = torch.empty(S, G, T, dtype=_DTYPE)
    for t in range(T):
        rows = int(off[t]) + state  # (S, G)
        lrow = log_mu.gather(1, rows.unsqueeze(-1).expand(S, G, V))  # (S, G, V)
        cdf = torch.cumsum(lrow.exp(), -1)
        a = torch.searchsorted(cdf, uniforms[..., t : t + 1].contiguous(), right=True).clamp_max(V - 1)  # (S, G, 1)
        lp_mu[..., t] = lrow.gather(-1, a)[..., 0]
        entries[..., t] = rows * V + a[..., 0]
        state = state * V + a[..., 0]
    return state, entries, lp_mu


# ----------------------------------------------------------------------------- targets


def _targets(route, obj, cfg, mu_logits, r_leaves, leaf_idx, off, need):
    """Exact induced targets of the behaviours, leaf distributions (S, V**T) per level in ``need``.

    The sequence-level target is one batched call of the state target on the
    S rows of ``V**T`` leaves (``sims.token_mdp.sequence_level_target`` row by
    row). The token-level target computes ``Q`` per seed with
    ``sims.token_mdp.conditional_advantage`` (or the soft one), then calls the
    state target once per depth on the rows of all seeds stacked
    (``sims.token_mdp.token_level_target`` / ``state_targets``, batched).
    """
    fn, soft = route
    V, T = cfg.V, cfg.T
    tree = cfg.tree
    mu_np = torch.softmax(mu_logits, -1).numpy()  # (S, N, V)
    mu_np = mu_np / mu_np.sum(-1, keepdims=True)
    mu_leaf = _leaf_probs_np(mu_logits.numpy(), V, T)  # (S, Y)
    r_sy = np.broadcast_to(r_leaves, mu_leaf.shape)
    adv = obj.population_advantage(mu_leaf, r_sy)  # (S, Y)
    out = {}
    if "sequence" in need:
        out["sequence"] = _checked(fn(mu_leaf, adv), mu_leaf.shape, "the sequence-level target")
    if "token" in need:
        S = mu_np.shape[0]
        qs = []
        for s in range(S):  # the DP per seed (cheap); the state targets below are batched over seeds
            cond = [mu_np[s, off[t] : off[t + 1]] for t in range(T)]
            if soft:
                qs.append(soft_conditional_advantage(cond, adv[s], tree, obj.params["beta"]))
            else:
                qs.append(conditional_advantage(cond, adv[s], tree))
        rows = np.empty_like(mu_np)
        for t in range(T):
            mu_rows = mu_np[:, off[t] : off[t + 1]].reshape(-1, V)
            q_rows = np.stack([q[t] for q in qs]).reshape(-1, V)
            pi = _checked(fn(mu_rows, q_rows), mu_rows.shape, f"the token-level target at depth {t}")
            rows[:, off[t] : off[t + 1]] = pi.reshape(S, -1, V)
        with np.errstate(divide="ignore"):
            lp = np.log(rows).reshape(S, -1)[:, leaf_idx].sum(-1)
        out["token"] = normalized(np.exp(lp))
    return out


def _checked(pi, shape, what):
    pi = np.asarray(pi, dtype=np.float64)
    if pi.shape != shape or not np.isfinite(pi).all() or (pi < 0).any():
        raise ValueError(f"{what} is not a finite distribution of shape {shape} (the state target failed)")
    return normalized(pi)


# ----------------------------------------------------------------------------- simulation


def simulate(config: TokenSimConfig, progress=None) -> TokenSimResult:
    """Run ``config`` (all seeds at once); see the module docstring for what is recorded.

    Parameters
    ----------
    config : TokenSimConfig
    progress : None, bool or callable, optional
        ``True``: a tqdm bar over the steps; a callable: called as
        ``progress(1)`` after each step (e.g. a tqdm bar's ``update``).

    Returns
    -------
    TokenSimResult
    """
    if not isinstance(config, TokenSimConfig):
        raise ValueError(f"config must be a TokenSimConfig, got {type(config).__name__}")
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc=f"token {config.objective} L={config.lag}", unit="step", leave=False)
        progress = bar.update
    elif progress is not None and progress is not False and not callable(progress):
        raise ValueError(f"progress must be None, a bool or a callable, got {type(progress).__name__}")
    try:
        with torch_single_thread():
            return _simulate(config, progress or None)
    finally:
        if bar is not None:
            bar.close()


class _TokenBatch(NamedTuple):
    """Step t's data from mu_t: G sampled completions, or every leaf weighted by mu."""

    logits_mu: torch.Tensor  # (S, N, V) behaviour logits
    idx: torch.Tensor  # (S, n, T) entries of the samples' tokens in the flat (N V) logits
    lp_mu_tok: torch.Tensor  # (S, n, T) behaviour token log-probabilities
    signal: torch.Tensor  # (S, n) one value per completion
    w: object  # weight of one loss element: c/G, or (S, Y, 1) c mu(y) for the population


class _TokenRun:
    """The token MDP's side of :func:`sims.lagged.run_lagged`: batches, loss and metrics (module docstring)."""

    def __init__(self, cfg: TokenSimConfig):
        self.cfg, self.obj = cfg, cfg.make_objective()
        V, T, steps = cfg.V, cfg.T, cfg.steps
        S, Y = cfg.num_seeds, V**T
        self.S, self.Y = S, Y
        self.off = state_offsets(V, T)
        self.N = N = int(self.off[T])
        self.leaf_idx_np = leaf_entries(V, T)  # (Y, T)
        self.leaf_idx = torch.as_tensor(self.leaf_idx_np)
        self.r_np = cfg.rewards()  # (Y,)
        self.r_t = torch.as_tensor(self.r_np, dtype=_DTYPE)
        self.r_sy = np.broadcast_to(self.r_np, (S, Y)).copy()
        self.c_elem = _aggregate_weight(self.obj, cfg.level, T)
        self._init_targets()
        # policy: flat logits (S, N, V), pi_0 the same for every seed
        self.init_np = np.log(np.concatenate(cfg.initial_conditionals(), 0))  # (N, V)
        self.param0 = torch.as_tensor(self.init_np, dtype=_DTYPE).expand(S, N, V).clone()
        # one generator per seed, seeded with its value: a seed's numbers do not depend on the others
        self.uniforms = UniformStream(cfg.seeds, (cfg.group_size, T), steps)
        self.pi0_leaf = _leaf_probs_np(self.param0.numpy(), V, T)
        self.m = {name: np.empty((S, steps)) for name in ("reward", "entropy", "kl_mu_pi", "kl_init")}
        if self.track:
            nt = len(self.target_steps)
            self.m["kl_target"], self.m["tv_target"] = np.empty((S, nt)), np.empty((S, nt))
            if cfg.track_gap:
                self.m["kl_seq_tok"] = np.empty((S, nt))
        self.pols = np.empty((steps + 1, S, Y)) if cfg.record_policies else None
        self.behs = np.empty((steps, S, Y)) if cfg.record_policies else None

    def _init_targets(self):
        """Whether targets are tracked, their route, the levels needed and the steps (``ti`` the next one)."""
        cfg = self.cfg
        self.track = track = cfg.tracks_targets
        self.route = _target_route(self.obj) if track else None
        other = "token" if cfg.level == "sequence" else "sequence"
        self.need = (cfg.level, other) if (track and cfg.track_gap) else (cfg.level,)
        self.target_steps = np.arange(0, cfg.steps, cfg.target_every) if track else np.zeros(0, dtype=np.int64)
        self.ti = 0

    def logits(self, param):
        return param

    def batch(self, t, logits_t, logits_mu) -> _TokenBatch:
        """Record the metrics of pi_t and mu_t; the batch: G completions from mu (or every leaf, weighted by mu)."""
        cfg, obj, S, Y, N, V, T = self.cfg, self.obj, self.S, self.Y, self.N, self.cfg.V, self.cfg.T
        lsm_pi = torch.log_softmax(logits_t, -1).reshape(S, N * V)
        lsm_mu = torch.log_softmax(logits_mu, -1).reshape(S, N * V)
        lp_pi_leaf = lsm_pi[:, self.leaf_idx].sum(-1)  # (S, Y)
        lp_mu_leaf = lsm_mu[:, self.leaf_idx].sum(-1)
        pi_np, mu_np = normalized(lp_pi_leaf.exp().numpy()), normalized(lp_mu_leaf.exp().numpy())
        if self.pols is not None:
            self.pols[t], self.behs[t] = pi_np, mu_np
        for name, value in policy_metrics(pi_np, mu_np, self.pi0_leaf, self.r_sy).items():
            self.m[name][:, t] = value
        if cfg.population:
            signal, _ = population_signal(obj, mu_np, self.r_sy)  # (S, Y)
            idx = self.leaf_idx.expand(S, Y, T)
            lp_mu_tok = _gather_tokens(lsm_mu, idx)
            w = self.c_elem * torch.as_tensor(mu_np).unsqueeze(-1)  # (S, Y, 1)
        else:
            leaves, idx, lp_mu_tok = _sample(logits_mu, self.uniforms.at(t), self.off, V)
            signal = obj.advantages(self.r_t[leaves])  # (S, G)
            w = self.c_elem / cfg.group_size
        return _TokenBatch(logits_mu, idx, lp_mu_tok, signal, w)

    def loss(self, t, p, b: _TokenBatch):
        """Each seed's loss is its own weighted sum (seeds stay independent); their sum."""
        lsm = torch.log_softmax(p, -1)
        if not torch.isfinite(lsm).all():
            raise ValueError(
                f"the policy diverged (a log-probability is not finite) at step {t}; "
                f"lower lr (now {self.cfg.lr}) or use optimizer='adam'"
            )
        lp_tok = _gather_tokens(lsm.reshape(self.S, self.N * self.cfg.V), b.idx)
        expected = None
        if "expected" in self.obj.needs:  # E_{v~mu(.|s)} log pi(v|s) at each token's state s (level 'token')
            per_state = (torch.softmax(b.logits_mu, -1) * lsm).sum(-1)  # (S, N)
            expected = per_state.gather(1, (b.idx // self.cfg.V).reshape(self.S, -1)).reshape(b.idx.shape)
        loss = _objective_loss(self.obj, self.cfg.level, lp_tok, b.lp_mu_tok, b.signal, expected)  # (S, n, T_eff)
        return (b.w * loss).sum()

    def on_grad(self, t, i, grad):
        pass

    def after_update(self, t, param, b: _TokenBatch):
        """On a target step: the update against the exact induced target of its data."""
        if not (self.track and self.ti < len(self.target_steps) and self.target_steps[self.ti] == t):
            return
        cfg, m, ti = self.cfg, self.m, self.ti
        tg = _targets(self.route, self.obj, cfg, b.logits_mu, self.r_np, self.leaf_idx_np, self.off, self.need)
        new_np = _leaf_probs_np(param.numpy(), cfg.V, cfg.T)
        p_star = tg[cfg.level]
        m["kl_target"][:, ti] = theory.kl(p_star, new_np)
        m["tv_target"][:, ti] = tv(p_star, new_np)
        if cfg.track_gap:
            m["kl_seq_tok"][:, ti] = theory.kl(tg["sequence"], tg["token"])
        self.ti += 1

    def result(self, param) -> TokenSimResult:
        """The run's :class:`TokenSimResult`, ``param`` being pi_steps's logits."""
        cfg = self.cfg
        final = param.detach().numpy().copy()
        if self.pols is not None:
            self.pols[cfg.steps] = _leaf_probs_np(final, cfg.V, cfg.T)
        return TokenSimResult(
            config=cfg,
            metrics=self.m,
            target_steps=self.target_steps.astype(np.int64),
            behaviour_step=np.maximum(np.arange(cfg.steps) - cfg.lag, 0),
            final_logits=final,
            init_logits=self.init_np,
            rewards=self.r_np,
            policies=self.pols,
            behaviours=self.behs,
        )


def _simulate(cfg: TokenSimConfig, progress) -> TokenSimResult:
    """The lagged loop of :mod:`sims.lagged` on the token MDP (:class:`_TokenRun`)."""
    run = _TokenRun(cfg)
    param = run.param0
    opt = Optimizer(cfg.optimizer, float(cfg.lr), param, 2)  # normalized: one block per seed
    param = run_lagged(run, param, opt, lag=cfg.lag, steps=cfg.steps, inner_steps=cfg.inner_steps, progress=progress)
    return run.result(param)
