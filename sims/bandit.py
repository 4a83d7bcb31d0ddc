r"""Vectorized bandit training under lag: any objective of the zoo, G samples or exact expectations.

docs/theory.md section 7 (c): the stochastic delayed iteration. ``B`` contexts
(prompts), each a bandit over ``K`` arms with rewards ``r[b]``; a softmax
policy, tabular (logits ``(S, B, K)``) or linear over fixed random arm
features; ``S`` seeds simulated as a leading axis of one torch computation.
At step ``t`` the data come from the lagged policy :math:`\mu_t = \pi_{t-L}`
(:math:`\pi_0` while ``t < L``), kept in a ring buffer of past logits (the loop
of :func:`sims.lagged.run_lagged`, shared with :mod:`sims.token_train`):

.. math::

    y_{b,1..G} \sim \mu_t(\cdot\mid b),\quad
    \ell = \mathrm{aggregate}\big(\mathrm{loss}(\log\pi(y), \log\mu_t(y), \mathrm{signal}(r(y)))\big),
    \quad \theta \leftarrow \mathrm{opt}(\theta, \nabla_\theta\ell) \ (k \text{ times}).

The loss, the advantage (the per-sample *signal*) and the aggregation are the
objective's own (``theory.objectives``); nothing is re-implemented. A sample
is a one-token sequence (``logp`` of shape ``(S, B, G, 1)``, no mask). On a
bandit the reference policy is the behaviour (``logp_ref = logp_mu``) and the
proximal policy is the current one, detached (``logp_prox = logp.detach()``,
re-evaluated at every inner step). With ``population=True`` every arm is a
sample and the loss is the exact expectation
:math:`\sum_y \mu_t(y)\,\ell_y` with the population advantage
(``obj.population_advantage``; for the weighted cross-entropies the signal is
the population weight ``obj.weight``).

Each seed's loss is the sum over its contexts of the objective's aggregate
over that context's samples (for one-token samples every aggregation mode is
a uniform mean times a constant), so seeds, and contexts of a tabular policy,
are independent problems; the simulated loss is the sum over seeds.

Metrics, recorded at every step ``t`` (``T = steps`` rows; shapes in
:data:`METRIC_AXES`):

* of the policy :math:`\pi_t` before the update: ``reward`` :math:`E_{\pi_t}[r]`,
  ``entropy`` :math:`H(\pi_t)`, ``kl_mu_pi`` :math:`\mathrm{KL}(\mu_t\|\pi_t)`
  (the off-policyness of the data, 0 at lag 0), ``kl_init``
  :math:`\mathrm{KL}(\pi_t\|\pi_0)`, ``ess`` the effective sample size of the
  ratios :math:`u = \pi_t/\mu_t` on the group, :math:`(\sum u)^2/(G\sum u^2)`
  (population: :math:`1/E_\mu[u^2]`);
* of the update at step ``t`` (the policy :math:`\pi_{t+1}` after the ``k``
  inner steps, against its data :math:`\mu_t`): ``tv_target``, ``kl_target``
  (total variation and :math:`\mathrm{KL}(T\|\pi_{t+1})` to the induced target
  :math:`T(\mu_t)` = ``obj.induced_target``), ``tv_nominal``,
  ``kl_nominal`` (same, to the nominal Gibbs target
  :math:`\mu_t e^{A/\beta}/Z` at the objective's ``beta``, with the
  population advantage A), ``eta_hat`` the sample estimate
  :math:`\overline{-s} + \bar A/\beta` of
  :math:`\eta = \mathrm{KL}(\mu\|\pi) + E_\mu[A]/\beta`
  (:math:`s = \log\pi_{t+1}(y)/\mu_t(y)`), ``eta_pred`` the :math:`\eta` of
  ``theory.lambert_target`` at :math:`\mu_t` (objectives with a Lambert target, on
  the steps where the target is computed),
  ``grad_var`` the variance across seeds of the first inner step's gradient,
  averaged over parameters.

Quantities that do not apply are NaN (targets on steps that are not a
multiple of ``target_every`` or with ``track_target=False``; ``beta`` and
``eta`` for objectives without a temperature; ``grad_var`` for one seed).

Usage::

    cfg = BanditSimConfig.smoke().replace(objective="opmd", lag=4)
    res = simulate(cfg)              # BanditSimResult
    res.metrics["reward"]            # (T, S, B)
    save_results("out/run", res)     # out/run.npz + out/run.json, atomically
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import theory
from sims.lagged import OPTIMIZERS, Optimizer, UniformStream, loss_kwargs, population_signal, run_lagged
from theory._checks import as_int
from sims.lagged import check_batch, check_bool, check_training, checked_objective
from sims.lagged import normalized, policy_metrics, tv
from theory.bandits import STANDARD_BANDITS
from theory.objectives import make_objective
from theory.runtime import torch_single_thread
from theory.outputs import atomic_savez, atomic_write_bytes

__all__ = [
    "OPTIMIZERS",
    "POLICIES",
    "METRIC_AXES",
    "BanditSimConfig",
    "BanditSimResult",
    "bandit_tables",
    "arm_features",
    "simulate",
    "save_results",
    "load_results",
    "torch_single_thread",
]

#: Policies: ``tabular`` logits (S, B, K); ``linear`` logits log pi_0 + W phi^T.
POLICIES = ("tabular", "linear")

#: Axes of every recorded metric: T steps, S seeds, B contexts.
METRIC_AXES = {
    "reward": ("step", "seed", "context"),
    "entropy": ("step", "seed", "context"),
    "kl_mu_pi": ("step", "seed", "context"),
    "kl_init": ("step", "seed", "context"),
    "ess": ("step", "seed", "context"),
    "tv_target": ("step", "seed", "context"),
    "kl_target": ("step", "seed", "context"),
    "tv_nominal": ("step", "seed", "context"),
    "kl_nominal": ("step", "seed", "context"),
    "eta_hat": ("step", "seed", "context"),
    "eta_pred": ("step", "seed", "context"),
    "grad_var": ("step",),
}

_DTYPE = torch.float64


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class BanditSimConfig:
    """One simulated training run (all seeds). Every field is validated on construction.

    Invalid settings raise :class:`ValueError` naming the field and what to
    change, before anything is computed.
    """

    objective: str = "opmd"
    """Name in ``theory.objectives.OBJECTIVES``."""
    objective_params: tuple = ()
    """Overrides of the objective's published defaults: a dict or (name, value) pairs."""
    bandit: str = "graded"
    """A name of ``theory.STANDARD_BANDITS`` (same bandit in every context, pi_0 = its mu)
    or ``"random"`` (rewards U[0, 1] per context from ``reward_seed``, pi_0 uniform)."""
    num_contexts: int = 1
    """B, contexts (prompts)."""
    num_arms: int = 8
    """K, arms of a random bandit (ignored for a standard bandit)."""
    reward_seed: int = 0
    """Seed of the random reward table."""
    lag: int = 0
    """L >= 0: the data at step t come from pi_{t-L} (pi_0 while t < L)."""
    group_size: int = 16
    """G, samples per context and step (ignored when ``population``)."""
    population: bool = False
    """Exact expectations over y ~ mu instead of G samples."""
    optimizer: str = "adam"
    """One of ``OPTIMIZERS``."""
    lr: float = 0.05
    """Step size (> 0)."""
    inner_steps: int = 1
    """k, optimizer steps on each batch."""
    steps: int = 200
    """T, batches (outer steps)."""
    num_seeds: int = 8
    """S, seeds simulated together as a leading axis."""
    seed: int = 0
    """Seed s of the leading axis uses torch.Generator seeded with ``seed + s``."""
    policy: str = "tabular"
    """One of ``POLICIES``."""
    feature_dim: int = 4
    """d, features per arm of the linear policy."""
    shared_weights: bool = False
    """Linear policy: one weight vector per seed shared by all contexts (else one per context)."""
    feature_seed: int = 0
    """Seed of the fixed random arm features (K, d), N(0, 1/d)."""
    track_target: bool = True
    """Record the distance to the induced target (slow for set-valued targets, which use the flow)."""
    target_every: int = 1
    """Compute the induced target every this many steps (NaN in between)."""
    record_policies: bool = False
    """Keep pi_t (T + 1, S, B, K) and mu_t (T, S, B, K) in the result."""

    def __post_init__(self):
        params, obj = checked_objective(self.objective, self.objective_params)  # raises for bad parameters
        object.__setattr__(self, "objective_params", params)
        if self.bandit != "random" and self.bandit not in STANDARD_BANDITS:
            raise ValueError(
                f"unknown bandit {self.bandit!r}; use 'random' or one of {', '.join(STANDARD_BANDITS)}"
            )
        for name, minimum in (("num_contexts", 1), ("num_arms", 2), ("reward_seed", 0)):
            as_int(getattr(self, name), name, minimum)
        check_training(self)
        for name, minimum in (("num_seeds", 1), ("seed", 0)):
            as_int(getattr(self, name), name, minimum)
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; valid: {', '.join(POLICIES)}")
        for name, minimum in (("feature_dim", 1), ("feature_seed", 0), ("target_every", 1)):
            as_int(getattr(self, name), name, minimum)
        for name in ("shared_weights", "track_target", "record_policies"):
            check_bool(name, getattr(self, name))
        check_batch(obj, self.objective, self.group_size, self.population, self.num_seeds, "set num_seeds=1")

    # -- presets and helpers ----------------------------------------------------
    @classmethod
    def smoke(cls, **overrides) -> "BanditSimConfig":
        """A run of well under a second: 4 seeds, 50 steps, G = 8, targets every 5 steps."""
        base = dict(num_seeds=4, steps=50, group_size=8, target_every=5)
        return cls(**{**base, **overrides})

    @classmethod
    def full(cls, **overrides) -> "BanditSimConfig":
        """The figure setting: 32 seeds, 300 steps, G = 16, 2 inner Adam steps, targets every 10 steps."""
        base = dict(num_seeds=32, steps=300, group_size=16, inner_steps=2, target_every=10)
        return cls(**{**base, **overrides})

    def replace(self, **changes) -> "BanditSimConfig":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def make_objective(self):
        """The objective, ``theory.objectives.make_objective(objective, **objective_params)``."""
        return make_objective(self.objective, **dict(self.objective_params))

    def to_dict(self) -> dict:
        """JSON-able dict (``objective_params`` as a dict)."""
        d = dataclasses.asdict(self)
        d["objective_params"] = dict(self.objective_params)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BanditSimConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise."""
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - names
        if extra:
            raise ValueError(f"unknown BanditSimConfig field(s) {sorted(extra)}")
        return cls(**d)


# ----------------------------------------------------------------------------- bandit tables and features


def bandit_tables(config: BanditSimConfig) -> tuple[np.ndarray, np.ndarray]:
    """Initial policy ``pi0`` (B, K) and rewards ``r`` (B, K) of ``config``.

    A standard bandit repeats its ``(mu, r)`` in every context; ``random`` draws
    ``r ~ U[0, 1]`` from ``numpy.random.default_rng(reward_seed)`` with a
    uniform ``pi0``.
    """
    B = config.num_contexts
    if config.bandit == "random":
        K = config.num_arms
        r = np.random.default_rng(config.reward_seed).uniform(size=(B, K))
        return np.full((B, K), 1.0 / K), r
    bd = STANDARD_BANDITS[config.bandit]
    return np.tile(bd.mu, (B, 1)), np.tile(bd.r, (B, 1))


def arm_features(num_arms: int, dim: int, seed: int) -> np.ndarray:
    """Fixed random arm features (K, d), entries N(0, 1/d), from ``default_rng(seed)``."""
    return np.random.default_rng(seed).normal(scale=1.0 / math.sqrt(dim), size=(num_arms, dim))


# ----------------------------------------------------------------------------- result


@dataclass
class BanditSimResult:
    """Tidy output of :func:`simulate`.

    Attributes
    ----------
    config : BanditSimConfig
    metrics : dict of str -> ndarray
        Axes in :data:`METRIC_AXES`: ``(T, S, B)`` except ``grad_var`` ``(T,)``.
    behaviour_step : ndarray of int, shape (T,)
        The step whose policy generated the data of step t, ``max(t - L, 0)``.
    final_policy : ndarray, shape (S, B, K)
        :math:`\\pi_T`.
    policies, behaviours : ndarray or None
        With ``record_policies``: :math:`\\pi_t` ``(T + 1, S, B, K)`` and
        :math:`\\mu_t` ``(T, S, B, K)``.
    rewards, pi0 : ndarray, shape (B, K)
        The reward table and the initial policy.
    """

    config: BanditSimConfig
    metrics: dict
    behaviour_step: np.ndarray
    final_policy: np.ndarray
    rewards: np.ndarray
    pi0: np.ndarray
    policies: np.ndarray | None = None
    behaviours: np.ndarray | None = None

    def arrays(self) -> dict:
        """Every array, flat (metric names plus ``behaviour_step``, ``final_policy``, ...)."""
        out = dict(self.metrics)
        out.update(
            behaviour_step=self.behaviour_step, final_policy=self.final_policy, rewards=self.rewards, pi0=self.pi0
        )
        if self.policies is not None:
            out.update(policies=self.policies, behaviours=self.behaviours)
        return out

    def to_records(self) -> list[dict]:
        """Long format: one dict per (step, seed, context) with every metric."""
        T, S, B = self.metrics["reward"].shape
        recs = []
        for t in range(T):
            for s in range(S):
                for b in range(B):
                    rec = {"step": t, "seed": self.config.seed + s, "context": b}
                    for k, v in self.metrics.items():
                        rec[k] = float(v[t] if v.ndim == 1 else v[t, s, b])
                    recs.append(rec)
        return recs

    def to_csv(self, path) -> Path:
        """Write :meth:`to_records` as CSV (atomically); returns the path."""
        T, S, B = self.metrics["reward"].shape
        names = list(self.metrics)
        t, s, b = np.meshgrid(np.arange(T), np.arange(S), np.arange(B), indexing="ij")
        cols = [t.ravel(), self.config.seed + s.ravel(), b.ravel()]
        for k in names:
            v = self.metrics[k]
            cols.append(np.broadcast_to(v.reshape(v.shape + (1,) * (3 - v.ndim)), (T, S, B)).ravel())
        header = ",".join(["step", "seed", "context"] + names)
        lines = [header]
        for row in zip(*cols):
            lines.append(f"{int(row[0])},{int(row[1])},{int(row[2])}," + ",".join(repr(float(x)) for x in row[3:]))
        path = Path(path)
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
        return path


def _config_json(config) -> str:
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return json.dumps(d, sort_keys=True, indent=2)


def save_results(path, result, config=None) -> tuple[Path, Path]:
    """Write ``path.npz`` (arrays) and ``path.json`` (config), each atomically.

    ``result`` is a :class:`BanditSimResult` (its config is used) or a dict of
    arrays (then ``config`` is required: an object with ``to_dict()`` or a
    dict). The config is also stored inside the ``.npz`` (key ``__config__``),
    so :func:`load_results` never pairs arrays with another run's config.
    Returns the two paths.
    """
    if isinstance(result, BanditSimResult):
        arrays, config = result.arrays(), result.config if config is None else config
    else:
        arrays = dict(result)
    if config is None:
        raise ValueError("save_results needs the config of a dict of arrays (pass config=...)")
    text = _config_json(config)
    base = Path(path)
    if base.suffix in (".npz", ".json"):
        base = base.with_suffix("")
    npz, js = base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")
    atomic_savez(npz, {**arrays, "__config__": np.array(text)})
    atomic_write_bytes(js, (text + "\n").encode())
    return npz, js


def load_results(path) -> tuple[dict, dict]:
    """Read what :func:`save_results` wrote: ``(arrays, config_dict)``."""
    base = Path(path)
    if base.suffix in (".npz", ".json"):
        base = base.with_suffix("")
    with np.load(base.with_name(base.name + ".npz"), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "__config__"}
        config = json.loads(str(f["__config__"]))
    return arrays, config


# ----------------------------------------------------------------------------- simulation


def _distributions(x: torch.Tensor) -> np.ndarray:
    """Writable float64 numpy copy of a probability tensor (rows renormalized against rounding)."""
    return normalized(x.detach().numpy())


class _Policy:
    r"""Softmax policy: logits :math:`\log\pi_0 + \theta` (tabular, ``(S, B, K)``) or :math:`\log\pi_0 + W\phi^\top`.

    ``param0`` is the zero initial parameter, ``nblock`` the number of its
    trailing axes that form one block of the normalized optimizer (one context
    of one seed, or one seed when the linear weights are shared).
    """

    def __init__(self, cfg: BanditSimConfig, log_pi0: torch.Tensor, K: int):
        S, B = cfg.num_seeds, cfg.num_contexts
        self.log_pi0 = log_pi0  # (B, K)
        if cfg.policy == "tabular":
            self.phi = None
            self.param0 = torch.zeros(S, B, K, dtype=_DTYPE)
            self.nblock = 1
        else:
            self.phi = torch.as_tensor(arm_features(K, cfg.feature_dim, cfg.feature_seed), dtype=_DTYPE)  # (K, d)
            self.param0 = torch.zeros(S, 1 if cfg.shared_weights else B, cfg.feature_dim, dtype=_DTYPE)
            self.nblock = 2 if cfg.shared_weights else 1

    def logits(self, p: torch.Tensor) -> torch.Tensor:
        """Logits (S, B, K) of parameters ``p``."""
        if self.phi is None:
            return self.log_pi0 + p  # (S, B, K)
        return self.log_pi0 + p @ self.phi.T  # (S, B|1, K) -> (S, B, K)


@dataclass
class _Batch:
    """Step t's data from mu_t: G samples (``actions``) or every arm weighted by mu (``w_mu``)."""

    mu_np: np.ndarray  # (S, B, K)
    signal: torch.Tensor  # (S, B, G|K): the advantage, or the population signal
    adv_pop: np.ndarray | None  # (S, B, K) population advantage (sampled batches: only with a beta)
    logp_mu: torch.Tensor  # (S, B, G|K, 1)
    actions: torch.Tensor | None = None  # (S, B, G) sampled arms
    w_mu: torch.Tensor | None = None  # (S, B, K) behaviour probabilities (population)

    def logp(self, lp_all: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the batch's samples as one-token sequences, (S, B, G|K, 1)."""
        if self.actions is None:
            return lp_all.unsqueeze(-1)  # (S, B, K, 1)
        return lp_all.gather(-1, self.actions).unsqueeze(-1)  # (S, B, G, 1)


class _BanditRun:
    """The bandit's side of :func:`sims.lagged.run_lagged`: batches, loss and metrics (module docstring)."""

    def __init__(self, cfg: BanditSimConfig):
        self.cfg, obj = cfg, cfg.make_objective()
        self.obj = obj
        S, B, T = cfg.num_seeds, cfg.num_contexts, cfg.steps
        self.pi0_np, self.r_np = bandit_tables(cfg)
        K = self.r_np.shape[-1]
        self.S, self.B, self.K = S, B, K
        self.G = K if cfg.population else cfg.group_size
        self.beta = obj.params.get("beta")
        self.r_sbk = np.broadcast_to(self.r_np, (S, B, K)).copy()
        self.r_t = torch.as_tensor(self.r_np, dtype=_DTYPE)
        self.policy = _Policy(cfg, torch.log(torch.as_tensor(self.pi0_np, dtype=_DTYPE)), K)
        self.agg_scale = float(obj.aggregate(torch.ones((1, 1) if obj.level == "token" else (1,), dtype=_DTYPE)))
        # one generator per seed (seed + s): the numbers of seed s do not depend on S
        self.uniforms = UniformStream([cfg.seed + s for s in range(S)], (B, self.G), T)
        self.pi0_sbk = _distributions(torch.softmax(self.policy.logits(self.policy.param0).detach(), -1))
        nan = np.full((T, S, B), np.nan)
        self.m = {name: nan.copy() for name in METRIC_AXES if name != "grad_var"}
        self.m["grad_var"] = np.full(T, np.nan)
        self.pols = np.empty((T + 1, S, B, K)) if cfg.record_policies else None
        self.behs = np.empty((T, S, B, K)) if cfg.record_policies else None

    def logits(self, param):
        return self.policy.logits(param)

    def batch(self, t, logits_t, logits_mu) -> _Batch:
        """Record the metrics of pi_t and mu_t; the batch: G samples from mu (or every arm, weighted by mu)."""
        log_mu = torch.log_softmax(logits_mu, -1)  # (S, B, K)
        log_pi = torch.log_softmax(logits_t, -1)
        pi_np, mu_np = _distributions(log_pi.exp()), _distributions(log_mu.exp())
        if self.pols is not None:
            self.pols[t], self.behs[t] = pi_np, mu_np
        for name, value in policy_metrics(pi_np, mu_np, self.pi0_sbk, self.r_sbk).items():
            self.m[name][t] = value
        if self.cfg.population:
            return self._population_batch(t, log_pi, log_mu, mu_np)
        return self._sampled_batch(t, log_pi, log_mu, mu_np)

    def _population_batch(self, t, log_pi, log_mu, mu_np) -> _Batch:
        r"""Every arm, weighted by :math:`\mu`; ``ess`` :math:`1/E_\mu[u^2]`."""
        signal, adv_pop = population_signal(self.obj, mu_np, self.r_sbk)  # (S, B, K)
        u = torch.exp(log_pi - log_mu)
        self.m["ess"][t] = (1.0 / (log_mu.exp() * u * u).sum(-1)).numpy()
        return _Batch(mu_np, signal, adv_pop, log_mu.unsqueeze(-1), w_mu=log_mu.exp())

    def _sampled_batch(self, t, log_pi, log_mu, mu_np) -> _Batch:
        r"""G inverse-CDF samples from :math:`\mu`; ``ess`` :math:`(\sum u)^2/(G\sum u^2)`."""
        S, B, K, G, obj = self.S, self.B, self.K, self.G, self.obj
        u01 = self.uniforms.at(t)  # (S, B, G)
        cdf = torch.cumsum(log_mu.exp(), -1)
        actions = torch.searchsorted(cdf, u01, right=True).clamp_max(K - 1)  # (S, B, G)
        rewards = self.r_t.expand(S, B, K).gather(-1, actions)
        signal = obj.advantages(rewards)  # (S, B, G)
        adv_pop = obj.population_advantage(mu_np, self.r_sbk) if self.beta is not None else None
        uu = torch.exp(log_pi.gather(-1, actions) - log_mu.gather(-1, actions))
        self.m["ess"][t] = (uu.sum(-1) ** 2 / (G * (uu * uu).sum(-1))).numpy()
        return _Batch(mu_np, signal, adv_pop, log_mu.gather(-1, actions).unsqueeze(-1), actions=actions)

    def loss(self, t, p, b: _Batch):
        """Sum over seeds and contexts of the objective's aggregate (population: the mu-weighted sum)."""
        obj = self.obj
        log_pi = torch.log_softmax(self.policy.logits(p), -1)
        logp = b.logp(log_pi)
        expected = None
        if "expected" in obj.needs:  # E_{v~mu} log pi(v) of each context, at each of its samples
            expected = (torch.as_tensor(b.mu_np, dtype=log_pi.dtype) * log_pi).sum(-1)[..., None, None]
            expected = expected.expand_as(logp)
        loss = obj.loss(logp, b.logp_mu, b.signal, None, **loss_kwargs(obj, logp, b.logp_mu, expected))
        if self.cfg.population:
            per_arm = loss.reshape(self.S, self.B, self.K)
            return self.agg_scale * (b.w_mu * per_arm).sum()
        return obj.aggregate(loss) * (self.S * self.B)  # sum over seeds and contexts of per-context means

    def on_grad(self, t, i, grad):
        if i == 0 and self.S > 1:
            self.m["grad_var"][t] = float(grad.var(0).mean())

    def after_update(self, t, param, b: _Batch):
        """The update against its data: eta and distances to the targets of mu_t."""
        obj, beta, m, cfg = self.obj, self.beta, self.m, self.cfg
        log_new = torch.log_softmax(self.policy.logits(param).detach(), -1)
        new_np = _distributions(log_new.exp())
        if beta is not None:
            if obj.target_kind == "lambert":  # the signal is the advantage; eta = KL(mu||pi) + E_mu[A]/beta
                s_new = b.logp(log_new)[..., 0] - b.logp_mu[..., 0]  # (S, B, G|K)
                if cfg.population:
                    m["eta_hat"][t] = ((b.w_mu * (-s_new)).sum(-1) + (b.w_mu * b.signal).sum(-1) / beta).numpy()
                else:
                    m["eta_hat"][t] = ((-s_new).mean(-1) + b.signal.mean(-1) / beta).numpy()
            nominal = theory.gibbs_target(b.mu_np, b.adv_pop, beta)
            m["tv_nominal"][t] = tv(new_np, nominal)
            m["kl_nominal"][t] = theory.kl(nominal, new_np)
        if cfg.track_target and t % cfg.target_every == 0:
            tgt = obj.induced_target(b.mu_np, self.r_sbk).pi
            m["tv_target"][t] = tv(new_np, tgt)
            m["kl_target"][t] = theory.kl(tgt, new_np)
            if obj.target_kind == "lambert":
                m["eta_pred"][t] = theory.lambert_target(b.mu_np, b.adv_pop, beta)[1]

    def result(self, param) -> BanditSimResult:
        """The run's :class:`BanditSimResult`, ``param`` being pi_T's."""
        final = _distributions(torch.softmax(self.policy.logits(param).detach(), -1))
        if self.pols is not None:
            self.pols[self.cfg.steps] = final
        return BanditSimResult(
            config=self.cfg,
            metrics=self.m,
            behaviour_step=np.maximum(np.arange(self.cfg.steps) - self.cfg.lag, 0),
            final_policy=final,
            rewards=self.r_np,
            pi0=self.pi0_np,
            policies=self.pols,
            behaviours=self.behs,
        )


def simulate(config: BanditSimConfig, *, progress=None) -> BanditSimResult:
    """Run ``config`` (all seeds at once); see the module docstring for what is recorded.

    Parameters
    ----------
    config : BanditSimConfig
    progress : callable, optional
        Called as ``progress(1)`` after each step (e.g. a tqdm bar's ``update``).

    Returns
    -------
    BanditSimResult
    """
    with torch_single_thread():
        return _simulate(config, progress)


def _simulate(cfg: BanditSimConfig, progress) -> BanditSimResult:
    """The lagged loop of :mod:`sims.lagged` on the bandit (:class:`_BanditRun`)."""
    run = _BanditRun(cfg)
    param = run.policy.param0
    opt = Optimizer(cfg.optimizer, float(cfg.lr), param, run.policy.nblock)
    param = run_lagged(run, param, opt, lag=cfg.lag, steps=cfg.steps, inner_steps=cfg.inner_steps, progress=progress)
    return run.result(param)
