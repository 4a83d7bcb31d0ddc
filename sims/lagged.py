r"""The lagged training loop that :mod:`sims.bandit` and :mod:`sims.token_train` share, and its config checks.

docs/theory.md section 7 (c): the stochastic delayed iteration. At step ``t``
the data come from the behaviour policy :math:`\mu_t = \pi_{t-L}`
(:math:`\pi_0` while ``t < L``), kept in a ring of ``L + 1`` logit snapshots;
each batch drawn from :math:`\mu_t` gets ``k`` optimizer steps:

.. math::

    \mu_t = \pi_{\max(t - L, 0)},\quad
    \mathcal D_t \sim \mu_t,\quad
    \theta \leftarrow \mathrm{opt}\big(\theta, \nabla_\theta \ell(\theta; \mathcal D_t)\big) \ (k \text{ times}).

:func:`run_lagged` is that loop, once. A simulator supplies what differs (the
:class:`LaggedSimulator` protocol): how parameters become logits, how a batch
is drawn from :math:`\mu_t` (recording the metrics of :math:`\pi_t` and
:math:`\mu_t` on the way), the loss of a batch, and what to record after each
gradient and after each update.

Also here, used by both simulators: the optimizers (:class:`Optimizer`), the
per-seed uniform streams (:class:`UniformStream`), the objective's loss
keywords and population signal on a bandit-like batch, the policy metrics of a
step, and the checks of the config fields the two share (each raises
:class:`ValueError` naming the field and what to change).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

import theory
from theory._checks import as_int
from theory.objectives import OBJECTIVES, make_objective

__all__ = [
    "OPTIMIZERS",
    "Optimizer",
    "UniformStream",
    "LaggedSimulator",
    "run_lagged",
    "loss_kwargs",
    "population_signal",
    "policy_metrics",
    "normalized",
    "tv",
    "check_bool",
    "check_training",
    "check_batch",
    "freeze_params",
    "checked_objective",
]

#: Optimizers: ``sgd`` (theta -= lr g), ``normalized`` (theta -= lr g/||g|| per
#: parameter block), ``adam`` (Kingma & Ba 2015, betas 0.9/0.999, eps 1e-8,
#: bias-corrected, state kept across steps).
OPTIMIZERS = ("sgd", "normalized", "adam")

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_RNG_CHUNK = 64  # steps of uniforms drawn per seed at a time (bounds memory; does not change the numbers)
_DTYPE = torch.float64


# ----------------------------------------------------------------------------- the loop


class Optimizer:
    """SGD, normalized step or Adam on one parameter tensor; blocks for the norm are its last ``nblock`` axes."""

    def __init__(self, kind, lr, param, nblock):
        self.kind, self.lr, self.nblock = kind, lr, nblock
        if kind == "adam":
            self.m = torch.zeros_like(param)
            self.v = torch.zeros_like(param)
            self.t = 0

    def step(self, param, grad):
        r"""The parameters after one step along ``grad``.

        ``sgd``: :math:`\theta - \eta g`; ``normalized``: :math:`\theta - \eta g/\|g\|`
        (norm over each block, 0 where :math:`g = 0`); ``adam``:
        :math:`\theta - \eta \hat m/(\sqrt{\hat v} + \epsilon)`.
        """
        if self.kind == "sgd":
            return param - self.lr * grad
        if self.kind == "normalized":
            dims = tuple(range(grad.ndim - self.nblock, grad.ndim))
            norm = torch.linalg.vector_norm(grad, dim=dims, keepdim=True)
            return param - self.lr * torch.where(norm > 0, grad / norm.clamp_min(1e-300), torch.zeros_like(grad))
        b1, b2 = _ADAM_BETAS
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        mhat = self.m / (1 - b1**self.t)
        vhat = self.v / (1 - b2**self.t)
        return param - self.lr * mhat / (vhat.sqrt() + _ADAM_EPS)


class UniformStream:
    """U[0, 1) draws of shape ``(S, *shape)`` per step, one ``torch.Generator`` per seed.

    Seed ``s`` draws from ``torch.Generator().manual_seed(seeds[s])``, so its
    numbers do not depend on the other seeds. The draws come in chunks of
    ``_RNG_CHUNK`` steps (``(n, *shape)`` per generator, stacked on axis 1);
    call :meth:`at` for every step in order.
    """

    def __init__(self, seeds, shape, steps):
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.shape, self.steps = tuple(shape), steps
        self.chunk = None

    def at(self, t: int) -> torch.Tensor:
        """The uniforms of step ``t``, shape (S, *shape)."""
        if t % _RNG_CHUNK == 0:
            n = min(_RNG_CHUNK, self.steps - t)
            self.chunk = torch.stack(
                [torch.rand(n, *self.shape, dtype=_DTYPE, generator=g) for g in self.gens], 1
            )  # (n, S, *shape)
        return self.chunk[t % _RNG_CHUNK]


class LaggedSimulator(Protocol):
    """What :func:`run_lagged` asks of a simulator (``batch`` is whatever the simulator needs)."""

    def logits(self, param: torch.Tensor) -> torch.Tensor:
        """Logits of the policy with parameters ``param`` (differentiable)."""

    def batch(self, t: int, logits_pi: torch.Tensor, logits_mu: torch.Tensor):
        """Record the metrics of pi_t and mu_t, and draw step ``t``'s batch from mu_t."""

    def loss(self, t: int, param: torch.Tensor, batch) -> torch.Tensor:
        """The scalar loss of ``batch`` at ``param`` (requires grad)."""

    def on_grad(self, t: int, i: int, grad: torch.Tensor) -> None:
        """Record what the ``i``-th gradient of step ``t`` shows."""

    def after_update(self, t: int, param: torch.Tensor, batch) -> None:
        """Record the update of step ``t``: ``param`` is pi_{t+1}'s (detached)."""


def run_lagged(sim: LaggedSimulator, param, optimizer, *, lag, steps, inner_steps, progress=None):
    r"""Train ``param`` for ``steps`` steps on data from the policy ``lag`` steps behind; return the last ``param``.

    A ring of ``lag + 1`` logit snapshots: slot :math:`(t - L) \bmod (L + 1)`
    holds :math:`\pi_{t-L}` (:math:`\pi_0` before step ``L``), so after writing
    :math:`\pi_t` into slot :math:`t \bmod (L + 1)` the next slot holds
    :math:`\mu_t = \pi_{\max(t-L, 0)}`. Each step: ``sim.batch`` on
    :math:`(\pi_t, \mu_t)`, then ``inner_steps`` times the gradient of
    ``sim.loss`` and ``optimizer.step``, then ``sim.after_update``, then
    ``progress(1)`` when given.
    """
    logits0 = sim.logits(param).detach()
    ring = logits0.unsqueeze(0).repeat(lag + 1, *([1] * logits0.ndim))  # (L+1, *logits.shape)
    for t in range(steps):
        logits_pi = sim.logits(param).detach()
        ring[t % (lag + 1)] = logits_pi
        logits_mu = ring[(t + 1) % (lag + 1)].clone()  # = logits of pi_{max(t-L, 0)}
        batch = sim.batch(t, logits_pi, logits_mu)
        for i in range(inner_steps):
            p = param.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(sim.loss(t, p, batch), p)
            sim.on_grad(t, i, grad)
            param = optimizer.step(param.detach(), grad)
        sim.after_update(t, param.detach(), batch)
        if progress is not None:
            progress(1)
    return param


# ----------------------------------------------------------------------------- shared pieces of a step


def loss_kwargs(obj, logp, logp_mu, logp_expected=None):
    """``logp_ref`` (the behaviour), ``logp_prox`` (the current policy, detached) and ``logp_expected``
    (:math:`E_{v\\sim\\mu}\\log\\pi(v)` at each sample's position, computed by the simulator), as the loss needs them."""
    kw = {}
    if "ref" in obj.needs:
        kw["logp_ref"] = logp_mu
    if "prox" in obj.needs:
        kw["logp_prox"] = logp.detach()
    if "expected" in obj.needs:
        if logp_expected is None:
            raise ValueError(f"objective {obj.name!r} needs logp_expected, which this loss call does not provide")
        kw["logp_expected"] = logp_expected
    return kw


def population_signal(obj, mu_np, r_np):
    """The per-arm signal the loss expects, in expectation: the advantage, or the CE weight h."""
    adv = obj.population_advantage(mu_np, r_np)
    return obj.population_signal(adv, mu_np), adv


def policy_metrics(pi, mu, pi0, r) -> dict:
    r"""``reward`` :math:`E_\pi[r]`, ``entropy`` :math:`H(\pi)`, ``kl_mu_pi`` :math:`\mathrm{KL}(\mu\|\pi)`,
    ``kl_init`` :math:`\mathrm{KL}(\pi\|\pi_0)`; distributions over the last axis, shape (...,) each."""
    return {
        "reward": theory.expected_reward(pi, r),
        "entropy": theory.entropy(pi),
        "kl_mu_pi": theory.kl(mu, pi),
        "kl_init": theory.kl(pi, pi0),
    }


def normalized(p) -> np.ndarray:
    """Writable float64 copy of distributions over the last axis, renormalized against rounding."""
    p = np.array(p, dtype=np.float64, copy=True)
    return p / p.sum(-1, keepdims=True)


def tv(p, q):
    r"""Total variation :math:`\frac12\sum|p - q|` over the last axis."""
    return 0.5 * np.abs(p - q).sum(-1)


# ----------------------------------------------------------------------------- config checks


def check_bool(name: str, value) -> None:
    """Refuse anything but ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_training(cfg) -> None:
    """Check the fields of the lagged loop: ``lag``, ``group_size``, ``population``, ``optimizer``, ``lr``,
    ``inner_steps`` and ``steps`` (in that order)."""
    lag = as_int(cfg.lag, "lag")
    if lag < 0:
        raise ValueError(f"lag must be >= 0 (0 = on-policy data), got {lag}")
    as_int(cfg.group_size, "group_size", 1)
    check_bool("population", cfg.population)
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    lr = cfg.lr
    lr_ok = isinstance(lr, (int, float)) and not isinstance(lr, bool)
    if not (lr_ok and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    as_int(cfg.inner_steps, "inner_steps", 1)
    as_int(cfg.steps, "steps", 1)


def check_batch(obj, objective: str, group_size, population: bool, num_seeds: int, fix: str) -> None:
    """Check that the objective accepts the batches: its advantage on sampled groups of ``group_size``
    (std / leave-one-out estimators need G >= 2), and a loss that couples a batch's rows only with one
    seed (``fix`` says how to give one)."""
    if not population:
        try:  # the zoo's own check
            obj.advantages(torch.zeros(1, group_size, dtype=_DTYPE))
        except ValueError as err:
            raise ValueError(
                f"objective {objective!r} with group_size={group_size}: {err}; "
                "set group_size >= 2 or population=True"
            ) from err
    if obj.couples_batch and num_seeds > 1:
        raise ValueError(
            f"{objective}'s loss couples the rows of a batch (m2po: its mask is computed over the whole batch), "
            f"which would couple seeds simulated as one batch; {fix} (and loop over seeds outside) for {objective}"
        )


def freeze_params(params) -> tuple:
    """Objective overrides as a sorted tuple of (name, value) pairs (hashable, JSON-able)."""
    if params is None:
        return ()
    items = params.items() if isinstance(params, dict) else params
    try:
        pairs = tuple(sorted((str(k), v) for k, v in items))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"objective_params must be a dict or (name, value) pairs, got {params!r}"
        ) from err
    return pairs


def checked_objective(objective: str, params) -> tuple:
    """``(freeze_params(params), make_objective(objective, **params))`` after checking the name.

    Bad parameters raise in ``make_objective``.
    """
    params = freeze_params(params)
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid objectives: {', '.join(OBJECTIVES)}")
    return params, make_objective(objective, **dict(params))
