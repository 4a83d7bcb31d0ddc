r"""Ground-truth limits of policy flows on a tabular softmax bandit.

Every closed form in the package is tested against the two references here:

* :func:`logit_flow` integrates the continuous-time flow of a softmax policy
  to its limit, with an explicit, conservative convergence report;
* :func:`multistart_minimize` minimizes a population loss over the logits
  from many random starts and counts the distinct local minima it finds.

Setting
-------
A bandit has :math:`K` arms, a behaviour (data) distribution :math:`\mu` and
an advantage :math:`A` per arm. The policy is :math:`\pi = \mathrm{softmax}
(\theta)` and :math:`u = \pi/\mu` is the importance ratio. An objective is
given in one of two forms.

*Population loss* ``loss(log_pi, log_mu, adv)``: a torch callable returning
the loss of each bandit (shape ``(...)``) from inputs of shape ``(..., K)``,
already the expectation under :math:`\mu`, e.g.
``(mu * (beta * (log_pi - log_mu) - adv) ** 2).sum(-1)``. The flow is

.. math::

    \frac{d\theta}{dt} = -\nabla_\theta L(\theta).

*Per-sample score weight* ``weight(u, adv)``: a torch callable returning
:math:`h` of shape ``(..., K)``. The expected score-function gradient of a
tabular softmax is

.. math::

    g_z = \mu_z h_z - \pi_z \sum_y \mu_y h_y ,
    \qquad \frac{d\theta}{dt} = g

(ascent; for a loss :math:`l(s, A)` on :math:`\mu`-samples with
:math:`s = \log u`, :math:`h = -\partial l/\partial s`).

In both forms the probabilities move with

.. math::

    \frac{d\pi_z}{dt} = \pi_z \Bigl(g_z - \sum_y \pi_y g_y\Bigr).

Arms with :math:`\mu_z = 0` are outside the support. They are not part of the
integrated state and stay at :math:`\pi_z = 0` (:math:`\theta_z = -\infty`).
The callables are still handed full ``(..., K)`` arrays; on those arms they
see the finite stand-in ``log_pi = log_mu = -1000`` (so ``u = 1``, and
``exp(log_mu) == 0`` exactly, so a term ``mu * f(...)`` is exactly zero and
no ``0 * log 0`` NaN can arise), and whatever they return there is masked out
(:func:`torch.where`, which also blocks gradients).

A weight callable receives :math:`u = \exp(\log\pi - \log\mu)` floored
at the smallest normal float64 (about :math:`2.2\times 10^{-308}`), so that
``log u`` stays finite on arms whose probability underflows; this changes the
field only on arms with :math:`\pi_z < 2.2\times 10^{-308}\mu_z`, and a
bandit for which that matters is stopped and reported as not converged
(see :func:`logit_flow`). A loss callable receives :math:`\log\pi` itself
and needs no such floor.

The callables are always called with the full batch shape (the broadcast
shape of ``mu`` and ``adv``), so they may
close over per-bandit parameters (a ``beta`` of shape ``(B, 1)`` say) that
broadcast against ``(..., K)``. They must be written in torch operations that
support autograd (double backward for the loss form), be independent across
bandits, and return finite values on the support.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.optimize
import scipy.sparse
import torch
from scipy.integrate import BDF, Radau

from .runtime import torch_single_thread
from ._checks import as_float_array, as_int, broadcast_arms, check_distribution
from ._numerics import flow_field, log_softmax, softmax

__all__ = ["FlowResult", "MinimizeResult", "logit_flow", "multistart_minimize"]

#: Finite stand-in for ``log 0`` handed to the callables on arms outside the
#: support. ``exp(-1000.0) == 0.0`` exactly in float64.
LOG_ZERO = -1000.0

#: Floor of the ratio ``u`` handed to a weight callable (smallest normal
#: float64), so that ``log u`` is finite where ``pi`` underflows.
U_FLOOR = float(np.finfo(np.float64).tiny)

#: Relative tolerance for ``weight(U_FLOOR) == weight(0)`` on underflowed arms.
UNDERFLOW_RTOL = 1e-12

#: Default bound on ``max |pi(t) - pi(t/10)|`` for a flow to count as converged.
PLATEAU_TOL = 1e-10

#: Default bound on ``max_z d log pi_z / d tau`` for a flow to count as converged.
GROWTH_TOL = 1e-10

#: Rate (per unit rescaled time) at which logsumexp(theta) is pulled back to 0;
#: this changes no pi and removes the neutral direction of the flow.
NEUTRAL_RATE = 1.0

#: Largest absolute tolerance on log pi of one arm (see ``logit_flow`` Notes).
LOG_ATOL_CAP = 1e-3
#: Systems of at most this many states get a dense Jacobian (scipy then factors it with LAPACK; the
#: sparse LU's per-step overhead dominates a small system), larger ones the sparse block-diagonal one.
DENSE_JACOBIAN_MAX = 64

#: The per-arm tolerances are refreshed (solver restart) when one would change
#: by more than this factor.
ATOL_REFRESH = 10.0

#: Checkpoints per decade of flow time.
CHECKPOINTS_PER_DECADE = 4

#: Earliest checkpoint (in rescaled flow time) when ``t_max`` is larger.
FIRST_CHECKPOINT = 1e-3

#: Relative floor of the per-bandit time scale, as a fraction of the largest
#: initial velocity component (guards a start where the Jacobian vanishes).
SCALE_FLOOR = 1e-6

#: Two local minima are distinct when their policies differ by more than this
#: in max abs.
DISTINCT_ATOL = 1e-6

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
WeightFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FlowResult:
    """Limit of a softmax policy flow.

    Attributes
    ----------
    pi : numpy.ndarray
        (..., K): arms on the last axis. Policy at the returned point (the
        limit when ``converged``). Exactly 0 outside the support.
    theta : numpy.ndarray
        (..., K): logits at the returned point, normalized to
        ``theta = log pi`` (the flow is invariant to a constant shift of the
        logits): ``-inf`` outside the support, finite but very negative (with
        ``pi`` possibly underflowing to 0) on arms whose probability goes to
        0.
    converged : numpy.ndarray
        (...,) bool. See :func:`logit_flow` for the exact criterion.
    residual : numpy.ndarray
        (...,) probability-space speed :math:`\\max_z |d\\pi_z/d\\tau|` at the
        returned point, in rescaled flow time :math:`\\tau` (multiply by
        ``scale`` for the speed in the flow's own time).
    t_final : numpy.ndarray
        (...,) rescaled flow time :math:`\\tau` of the returned point (the
        checkpoint at which the bandit was declared converged, ``t_max``
        otherwise, or where the integration stopped: on failure, or for a
        weight-form ratio underflow, see :func:`logit_flow`). The flow's
        own time is ``t_final / scale``.
    scale : numpy.ndarray
        (...,) positive factor :math:`s` by which the vector field of each
        bandit was divided (1 when ``rescale=False``).
    plateau : numpy.ndarray
        (...,) :math:`\\max_z |\\pi_z(\\tau) - \\pi_z(\\tau/10)|` at the
        returned point (NaN if no checkpoint was reached).
    growth : numpy.ndarray
        (...,) :math:`\\max_z d\\log\\pi_z/d\\tau` over the support at
        the returned point (rescaled time): how fast the fastest-growing arm
        grows in log space. Positive and not small means some arm, however
        improbable now, is still on its way up.
    message : str
        Solver status: ``"ok"`` or the reason the integration stopped early.
    """

    pi: np.ndarray
    theta: np.ndarray
    converged: np.ndarray
    residual: np.ndarray
    t_final: np.ndarray
    scale: np.ndarray
    plateau: np.ndarray
    growth: np.ndarray
    message: str


@dataclass(frozen=True)
class MinimizeResult:
    """Best local minimum of a population loss found from many starts.

    Attributes
    ----------
    pi : numpy.ndarray
        (..., K): arms on the last axis. Policy at the lowest loss found.
    value : numpy.ndarray
        (...,) the loss there.
    n_distinct : numpy.ndarray
        (...,) int: number of distinct local minima found (end points whose
        policies differ by more than ``1e-6`` in max abs).
    theta : numpy.ndarray
        (..., K): logits of the best point, normalized to ``log pi``
        (``-inf`` outside the support).
    """

    pi: np.ndarray
    value: np.ndarray
    n_distinct: np.ndarray
    theta: np.ndarray


#: Fresh-solver retries of one step whose solver state went non-finite (see ``_Integration._step``).
STEP_RETRIES = 3

#: Returned by ``_Integration._step`` when every retry failed.
_RETRIES_EXHAUSTED = object()


class _FlowIntegrationError(RuntimeError):
    """The vector field could not be evaluated (non-finite values)."""


# ---------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------


def _prepare(mu, adv, theta0=None):
    """Validate and broadcast ``mu``, ``adv`` (and ``theta0``); flatten the batch."""
    mu_arr = check_distribution(mu, "mu")
    adv_arr = as_float_array(adv, "adv")
    mu_b, adv_b = broadcast_arms("mu", mu_arr, "adv", adv_arr)
    th_b = None
    if theta0 is not None:
        try:
            th_arr = np.asarray(theta0, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"theta0 must be numeric, got {type(theta0).__name__}") from err
        if np.isnan(th_arr).any():
            raise ValueError("theta0 contains NaN; every entry must be a number")
        mu_b, th_b = broadcast_arms("mu", mu_b, "theta0", th_arr)
        adv_b = np.broadcast_to(adv_b, mu_b.shape)
    batch_shape = mu_b.shape[:-1]
    K = mu_b.shape[-1]
    mask = mu_b > 0
    if th_b is not None:
        bad = mask & ~np.isfinite(th_b)
        if bad.any():
            raise ValueError("theta0 must be finite on every arm with mu > 0")
    return mu_b, adv_b, th_b, mask, batch_shape, K


def _check_objective(loss, weight):
    if (loss is None) == (weight is None):
        raise ValueError("give exactly one of loss= (population loss) or weight= (per-sample score weight)")
    fn = loss if loss is not None else weight
    if not callable(fn):
        raise ValueError(f"{'loss' if loss is not None else 'weight'} must be callable")


def _tensor(x: np.ndarray) -> torch.Tensor:
    """float64 torch copy (never a view of a read-only broadcast array)."""
    return torch.tensor(np.array(x, dtype=np.float64))


def _log_mu_safe(mu_b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.full(mu_b.shape, LOG_ZERO)
    out[mask] = np.log(mu_b[mask])
    return out


def _masked_log_softmax(theta: torch.Tensor, mask: torch.Tensor, full: bool = False):
    """``(log_pi, pi)`` with arms outside ``mask`` at exactly ``pi = 0``.

    The returned ``log_pi`` is ``LOG_ZERO`` outside the support. A detached
    per-bandit maximum is subtracted first, which changes neither the value
    nor any derivative of the (shift-invariant) softmax, and puts the masked
    arms at ``LOG_ZERO`` below the largest support logit: all finite.
    ``full``: every arm is in ``mask`` (the same numbers, without the selections).
    """
    if full:
        log_pi = log_softmax(theta - theta.amax(dim=-1, keepdim=True).detach())
        return log_pi, torch.exp(log_pi)
    masked_for_max = torch.where(mask, theta, torch.full_like(theta, -torch.inf))
    m = masked_for_max.amax(dim=-1, keepdim=True).detach()
    shifted = torch.where(mask, theta - m, torch.full_like(theta, LOG_ZERO))
    log_pi = log_softmax(shifted)
    pi = torch.where(mask, torch.exp(log_pi), torch.zeros_like(log_pi))
    log_pi = torch.where(mask, log_pi, torch.full_like(log_pi, LOG_ZERO))
    return log_pi, pi


def _check_callable_output(out: torch.Tensor, shape, what: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"{what} must return a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        try:
            out = torch.broadcast_to(out, shape)
        except RuntimeError as err:
            raise ValueError(f"{what} returned shape {tuple(out.shape)}, expected {tuple(shape)}") from err
    return out.to(torch.float64)


# ---------------------------------------------------------------------------
# vector field
# ---------------------------------------------------------------------------


class _Field:
    r"""Velocity of :math:`\log\pi` for a batch of bandits, in torch float64.

    The integrated velocity is :math:`v = g - \langle\pi, g\rangle`, which
    moves :math:`\pi` exactly as :math:`g` does (the two differ by a multiple
    of the all-ones vector, to which the softmax is blind) and keeps
    :math:`\mathrm{logsumexp}(\theta) = 0`, so the state *is*
    :math:`\log\pi`: finite on arms with a positive limit, diverging to
    :math:`-\infty` only on arms whose probability goes to 0.
    """

    def __init__(self, mu_b, adv_b, mask, loss, weight):
        self.shape = mu_b.shape
        self.mu = _tensor(mu_b)
        self.adv = _tensor(adv_b)
        self.mask = torch.tensor(np.array(mask, dtype=bool))
        self.full = bool(self.mask.all())  # every arm on the support: the masks select nothing
        self.log_mu = _tensor(_log_mu_safe(mu_b, mask))
        self.loss = loss
        self.weight = weight

    def _total_loss(self, theta: torch.Tensor) -> torch.Tensor:
        log_pi, _ = _masked_log_softmax(theta, self.mask, self.full)
        val = self.loss(log_pi, self.log_mu, self.adv)
        val = _check_callable_output(val, self.shape[:-1], "loss")
        return val.sum()

    def _g(self, theta: torch.Tensor, create_graph: bool, log_pi: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
        """The flow's direction at ``theta``; ``(log_pi, pi)``: its masked log-softmax."""
        mask = self.mask
        if self.loss is not None:
            th = theta if create_graph else theta.detach().requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(self._total_loss(th), th, create_graph=create_graph)
            g = -grad
        else:
            # floored at the smallest normal float so that log u stays finite
            # on arms whose probability underflows (pi_z < ~1e-308 mu_z)
            u = torch.exp(log_pi - self.log_mu).clamp_min(U_FLOOR)
            h = self.weight(u, self.adv)
            h = _check_callable_output(h, self.shape, "weight")
            if not self.full:
                h = torch.where(mask, h, torch.zeros_like(h))
            g = flow_field(pi, self.mu * h)
        return g if self.full else torch.where(mask, g, torch.zeros_like(g))

    def underflow_taint(self, log_pi: torch.Tensor) -> np.ndarray:
        """(B,) bool: weight form, ``u`` below ``U_FLOOR`` on a support arm, and
        the weight there not continuous at ``u = 0``.

        There the floored ``u`` handed to the callable misrepresents the flow
        (e.g. a weight in ``log u``), so the bandit cannot be trusted.
        """
        B = int(np.prod(self.shape[:-1], dtype=np.int64))
        if self.weight is None:
            return np.zeros(B, dtype=bool)
        mask = self.mask
        log_u = torch.where(mask, log_pi - self.log_mu, torch.zeros_like(log_pi))
        under = mask & (log_u < float(np.log(U_FLOOR)))
        if not bool(under.any()):
            return np.zeros(B, dtype=bool)
        u_floor = torch.exp(log_u).clamp_min(U_FLOOR)
        u_zero = torch.where(under, torch.zeros_like(u_floor), u_floor)
        with torch.no_grad():
            h_floor = _check_callable_output(self.weight(u_floor, self.adv), self.shape, "weight")
            h_zero = _check_callable_output(self.weight(u_zero, self.adv), self.shape, "weight")
        close = torch.isfinite(h_zero) & torch.isfinite(h_floor)
        close &= (h_floor - h_zero).abs() <= UNDERFLOW_RTOL * torch.clamp(h_zero.abs(), min=1.0)
        return (under & ~close).any(dim=-1).reshape(B).numpy()

    def velocity(self, theta: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """:math:`v = g - \\langle \\pi, g\\rangle` on the support, 0 elsewhere.

        With ``create_graph`` the result is differentiable with respect to
        ``theta`` (which must then require grad).
        """
        log_pi, pi = _masked_log_softmax(theta, self.mask, self.full)
        g = self._g(theta, create_graph, log_pi, pi)
        v = g - (pi * g).sum(dim=-1, keepdim=True)
        if not self.full:
            v = torch.where(self.mask, v, torch.zeros_like(v))
        return v if create_graph else v.detach()

    def blocks(self, theta: torch.Tensor):
        """Velocity and its per-bandit Jacobian blocks ``J[..., i, j] = dv_i/dtheta_j``.

        Bandits are independent, so one reverse pass with the cotangent
        :math:`e_i` in every bandit gives row :math:`i` of every block.
        """
        K = self.shape[-1]
        th = theta.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            v = self.velocity(th, create_graph=True)
            rows = []
            for i in range(K):
                cot = torch.zeros_like(v)
                cot[..., i] = 1.0
                (row,) = torch.autograd.grad(v, th, grad_outputs=cot, retain_graph=True, allow_unused=True)
                rows.append(torch.zeros_like(th) if row is None else row)
        J = torch.stack(rows, dim=-2).detach()
        mask = self.mask
        J = torch.where(mask[..., :, None] & mask[..., None, :], J, torch.zeros_like(J))
        return v.detach(), J


def _speed(pi: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``max_z |pi_z (v_z - <pi, v>)|``: the probability-space speed."""
    # pi (v - <pi, v>) is flow_field(pi, pi v) in exact arithmetic, but not to the last bit, and the
    # residual it gives is compared with tol: kept as is
    dpi = pi * (v - (pi * v).sum(axis=-1, keepdims=True))
    return np.abs(dpi).max(axis=-1)


def _support_lse(theta: np.ndarray, log_pi: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(B,) logsumexp of the logits over the support, from their log-softmax ``log_pi``."""
    return np.where(mask, theta - log_pi, -np.inf).max(axis=-1)


def _softmax_np(theta: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pi, log pi)`` of the logits ``theta`` on the arms in ``mask``: ``pi = 0``, ``log pi = -inf`` elsewhere."""
    th = np.where(mask, theta, -np.inf)
    return softmax(th), log_softmax(th)


# ---------------------------------------------------------------------------
# flow
# ---------------------------------------------------------------------------


def _checkpoints(t_max: float) -> np.ndarray:
    """Grid anchored at ``t_max``, ``CHECKPOINTS_PER_DECADE`` per decade.

    Anchoring at ``t_max`` makes ``tau / 10`` a checkpoint too (the one
    ``CHECKPOINTS_PER_DECADE`` places earlier), or earlier than the first one.
    """
    n_dec = max(0.0, np.log10(t_max / FIRST_CHECKPOINT))
    n = int(np.ceil(n_dec * CHECKPOINTS_PER_DECADE)) + 1
    k = np.arange(n - 1, -1, -1, dtype=np.float64)
    grid = t_max * 10.0 ** (-k / CHECKPOINTS_PER_DECADE)
    grid[-1] = t_max
    return grid


def _check_flow_args(loss, weight, t_max, tol, rtol, atol, plateau_tol, growth_tol, method):
    """Validate the arguments of :func:`logit_flow`; return ``t_max`` as a float and the scipy solver class."""
    _check_objective(loss, weight)
    t_max = float(t_max)
    if not np.isfinite(t_max) or t_max <= 0:
        raise ValueError(f"t_max must be a finite number > 0, got {t_max}")
    for name, val in (("rtol", rtol), ("atol", atol)):
        if not np.isfinite(val) or val <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {val}")
    for name, val in (("tol", tol), ("plateau_tol", plateau_tol), ("growth_tol", growth_tol)):
        if np.isnan(val) or val <= 0:
            raise ValueError(f"{name} must be > 0 (inf switches the check off), got {val}")
    solvers = {"BDF": BDF, "Radau": Radau}
    if method not in solvers:
        raise ValueError(f"method must be one of {sorted(solvers)}, got {method!r}")
    return t_max, solvers[method]


class _Layout:
    """Where the integrated state sits in the batch: the support arms of the ``(B, K)`` logits, flattened.

    The state is ``y = theta.ravel()[flat_idx]`` (arms with ``mu = 0`` are not in it).
    """

    def __init__(self, mask: np.ndarray, batch_shape: tuple):
        self.mask = mask  # (B, K)
        self.batch_shape = batch_shape
        self.B, self.K = mask.shape
        self.flat_idx = np.flatnonzero(mask.ravel())  # state index -> position in (B*K)
        self.n = self.flat_idx.size

    def theta(self, y: np.ndarray) -> np.ndarray:
        """(B, K) logits: the state ``y`` on the support, 0 elsewhere."""
        theta = np.zeros(self.B * self.K)
        theta[self.flat_idx] = y
        return theta.reshape(self.B, self.K)

    def to_torch(self, y: np.ndarray) -> torch.Tensor:
        """The logits of :meth:`theta` as a tensor of the batch shape ``(..., K)``."""
        return torch.as_tensor(self.theta(y).reshape(self.batch_shape + (self.K,)))

    def state(self, theta: np.ndarray) -> np.ndarray:
        """The state ``y`` of (B, K) logits."""
        return theta.ravel()[self.flat_idx]

    def jacobian_pattern(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, gather)`` of the block-diagonal Jacobian (one block per bandit).

        Entry ``i`` of the sparse matrix sits at ``(rows[i], cols[i])`` and is
        element ``gather[i]`` of the flattened ``(B, K, K)`` blocks.
        """
        B, K = self.B, self.K
        state_of_bk = np.full(B * K, -1, dtype=np.int64)
        state_of_bk[self.flat_idx] = np.arange(self.n)
        rows_l, cols_l, gather_l = [], [], []
        for b in range(B):
            arms = np.flatnonzero(self.mask[b])
            st = state_of_bk[b * K + arms]
            rows_l.append(np.repeat(st, arms.size))
            cols_l.append(np.tile(st, arms.size))
            gather_l.append(b * K * K + (arms[:, None] * K + arms[None, :]).ravel())
        return np.concatenate(rows_l), np.concatenate(cols_l), np.concatenate(gather_l)


def _initial_point(mu_b, th_b, mask_b, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """``(pi0, theta_start)``, (B, K): the start (``theta0``, default ``log mu``) normalized to ``log pi0``.

    ``theta_start`` is 0 outside the support.
    """
    B, K = layout.B, layout.K
    if th_b is None:
        theta_init = _log_mu_safe(mu_b, mask_b).reshape(B, K)
    else:
        theta_init = np.asarray(th_b, dtype=np.float64).reshape(B, K)
    pi0, log_pi0 = _softmax_np(theta_init, layout.mask)
    return pi0, np.where(layout.mask, log_pi0, 0.0)


def _flow_scale(field: _Field, layout: _Layout, theta_start: np.ndarray, rescale: bool) -> np.ndarray:
    r"""(B,) per-bandit scale :math:`s = \max(\rho(J_0), 10^{-6}\max_z|v_z|)` at the start (1 without ``rescale``).

    Raises ``ValueError`` where the field or its Jacobian is not finite at the start.
    """
    B, K = layout.B, layout.K
    v0, J0 = field.blocks(layout.to_torch(layout.state(theta_start)))
    v0 = v0.detach().numpy().reshape(B, K)
    J0 = J0.detach().numpy().reshape(B, K, K)
    if not (np.isfinite(v0[layout.mask]).all() and np.isfinite(J0).all()):
        raise ValueError("the vector field is not finite at the initial point; check the loss/weight callable")
    if not rescale:
        return np.ones(B)
    rho = np.abs(np.linalg.eigvals(J0)).max(axis=-1)
    scale = np.maximum(rho, SCALE_FLOOR * np.abs(v0).max(axis=-1))
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


class _FlowSystem:
    r"""The ODE handed to scipy, on the state :math:`y` (:class:`_Layout`).

    .. math:: \dot y = v(y)/s - \mathrm{NEUTRAL\_RATE}\cdot\mathrm{logsumexp}(\theta)\,\mathbf 1,

    set to 0 on bandits no longer ``active``; its block-diagonal Jacobian;
    the per-arm absolute tolerances; and the quantities checked at a
    checkpoint (see :func:`logit_flow`, Notes).
    """

    def __init__(self, field: _Field, layout: _Layout, scale: np.ndarray, atol: float):
        self.field = field
        self.layout = layout
        self.inv_scale = 1.0 / scale
        self.atol = atol
        self.active = np.ones(layout.B, dtype=bool)
        self.jac_rows, self.jac_cols, self.jac_gather = layout.jacobian_pattern()

    def velocity_np(self, y: np.ndarray) -> np.ndarray:
        """(B, K) velocity :math:`v` of :math:`\\log\\pi` (unscaled)."""
        lay = self.layout
        return self.field.velocity(lay.to_torch(y)).numpy().reshape(lay.B, lay.K)

    def state_softmax(self, y: np.ndarray):
        """``(theta, pi, lse)``: (B, K) logits, policy, and (B,) logsumexp over the support."""
        theta = self.layout.theta(y)
        mask = self.layout.mask
        pi, log_pi = _softmax_np(theta, mask)
        return theta, pi, _support_lse(theta, log_pi, mask)

    def fun(self, t: float, y: np.ndarray) -> np.ndarray:
        """The right-hand side; raises :class:`_FlowIntegrationError` where ``v`` is not finite."""
        v = self.velocity_np(y)
        if not np.isfinite(v[self.layout.mask]).all():
            raise _FlowIntegrationError(f"non-finite vector field at t = {t:.6g}")
        theta, mask = self.layout.theta(y), self.layout.mask
        lse = _support_lse(theta, log_softmax(np.where(mask, theta, -np.inf)), mask)
        # pi-preserving pull of logsumexp(theta) back to 0 (damps the neutral direction)
        v = (v * self.inv_scale[:, None] - NEUTRAL_RATE * lse[:, None]) * self.active[:, None]
        return v.ravel()[self.layout.flat_idx]

    def jac(self, t: float, y: np.ndarray) -> np.ndarray | scipy.sparse.csc_matrix:
        """(n, n) Jacobian of :meth:`fun` (dense up to :data:`DENSE_JACOBIAN_MAX` states, sparse beyond);
        :math:`\\partial\\,\\mathrm{lse}/\\partial\\theta_j = \\pi_j`."""
        lay = self.layout
        B, K = lay.B, lay.K
        _, J = self.field.blocks(lay.to_torch(y))
        J = J.numpy().reshape(B, K, K) * self.inv_scale[:, None, None]
        _, pi, _ = self.state_softmax(y)
        J = J - NEUTRAL_RATE * pi[:, None, :]  # d(lse)/d(theta_j) = pi_j, in every row
        J = J * self.active[:, None, None]
        data = J.reshape(B * K * K)[self.jac_gather]
        if not np.isfinite(data).all():
            raise _FlowIntegrationError(f"non-finite Jacobian at t = {t:.6g}")
        if lay.n <= DENSE_JACOBIAN_MAX:
            dense = np.zeros((lay.n, lay.n))
            dense[self.jac_rows, self.jac_cols] = data
            return dense
        return scipy.sparse.csc_matrix((data, (self.jac_rows, self.jac_cols)), shape=(lay.n, lay.n))

    def atol_for(self, y: np.ndarray) -> np.ndarray:
        """Per-component absolute tolerance on log pi: ``atol / pi_z`` (an error of
        ``atol`` in pi), between ``atol`` and ``LOG_ATOL_CAP``."""
        atol = self.atol
        _, pi, _ = self.state_softmax(y)
        p = pi.ravel()[self.layout.flat_idx]
        with np.errstate(divide="ignore", over="ignore"):
            return np.clip(atol / p, atol, max(atol, LOG_ATOL_CAP))

    def evaluate(self, y: np.ndarray):
        """``(theta, pi, speed, growth, finite)`` at ``y``, in rescaled time; (B, K) or (B,)."""
        mask = self.layout.mask
        theta = self.layout.theta(y)
        pi, _ = _softmax_np(theta, mask)
        v = self.velocity_np(y) * self.inv_scale[:, None]
        growth = np.where(mask, v, -np.inf).max(axis=-1)
        finite = np.where(mask, np.isfinite(v), True).all(axis=-1)
        return theta, pi, _speed(pi, v), growth, finite


class _FlowOutput:
    """The return point of every bandit, updated at each checkpoint and where a bandit stops."""

    def __init__(self, theta_start: np.ndarray):
        B, K = theta_start.shape
        self.state = np.zeros((B, K))
        self.state[:] = theta_start
        self.t = np.zeros(B)
        self.res = np.full(B, np.nan)
        self.plateau = np.full(B, np.nan)
        self.growth = np.full(B, np.nan)
        self.converged = np.zeros(B, dtype=bool)
        self.tainted = np.zeros(B, dtype=bool)
        self.message = "ok"

    def set(self, sel: np.ndarray, point, t: float, plateau) -> None:
        """Return point of the bandits ``sel``: ``point`` (from ``_FlowSystem.evaluate``) at time ``t``."""
        theta, _, speed, growth, _ = point
        self.state[sel] = theta[sel]
        self.t[sel] = t
        self.res[sel] = speed[sel]
        self.plateau[sel] = plateau if np.ndim(plateau) == 0 else plateau[sel]
        self.growth[sel] = growth[sel]

    def note_underflow(self) -> None:
        """Add to ``message`` the bandits stopped by a weight-form ratio underflow."""
        if not self.tainted.any():
            return
        bad = np.flatnonzero(self.tainted)
        note = (
            f"weight form: u = pi/mu fell below {U_FLOOR:.3g} on a support arm of {bad.size} bandit(s) "
            f"(flat indices {bad[:10].tolist()}{'...' if bad.size > 10 else ''}) where the weight is not "
            "continuous at u = 0; the flow there is not representable through weight(u, adv) "
            "(use the loss form); those bandits are marked not converged"
        )
        self.message = note if self.message == "ok" else f"{self.message}; {note}"

    def result(self, layout: _Layout, scale: np.ndarray) -> FlowResult:
        """The :class:`FlowResult` of the batch shape."""
        batch_shape, K = layout.batch_shape, layout.K
        pi_out, log_pi_out = _softmax_np(self.state, layout.mask)
        return FlowResult(
            pi=pi_out.reshape(batch_shape + (K,)),
            theta=log_pi_out.reshape(batch_shape + (K,)),
            converged=self.converged.reshape(batch_shape),
            residual=self.res.reshape(batch_shape),
            t_final=self.t.reshape(batch_shape),
            scale=scale.reshape(batch_shape),
            plateau=self.plateau.reshape(batch_shape),
            growth=self.growth.reshape(batch_shape),
            message=self.message,
        )


class _Integration:
    """The checkpointed, restartable integration of a :class:`_FlowSystem` (see :func:`logit_flow`, Notes).

    The solver runs from checkpoint to checkpoint; it is restarted where it
    stands (``t0``, ``y``) when a bandit converges or is stopped (its field
    is then 0), or when the per-arm tolerances are stale.
    """

    def __init__(self, system, out, solver_cls, grid, pi0, *, rtol, tol, plateau_tol, growth_tol, max_steps=None,
                 stall_steps=None):
        self.max_steps, self.steps = max_steps, 0
        self.stall_steps, self.since_checkpoint = stall_steps, 0
        self.system, self.out = system, out
        self.solver_cls, self.grid, self.pi0 = solver_cls, grid, pi0
        self.rtol, self.tol, self.plateau_tol, self.growth_tol = rtol, tol, plateau_tol, growth_tol
        self.ncheck = len(grid)
        self.pi_hist = np.empty((self.ncheck, system.layout.B, system.layout.K))
        self.k = 0  # next checkpoint
        self.t_checkpoint = 0.0  # the last one passed (0: none yet)
        self.solver = None
        self.t0 = 0.0  # (t0, y): the last (re)start point
        self.y = None
        self.atol_now = None

    def record(self, sel: np.ndarray, y: np.ndarray, t: float) -> None:
        """Return point of the bandits ``sel``: the state ``y`` at time ``t``, no plateau."""
        self.out.set(sel, self.system.evaluate(y), t, np.nan)

    def check_underflow(self, y: np.ndarray, t: float) -> bool:
        """Stop (not converged) the active bandits the weight form cannot represent at ``y``."""
        system, lay = self.system, self.system.layout
        if system.field.weight is None:
            return False
        _, log_pi = _softmax_np(lay.theta(y), lay.mask)
        log_pi = np.where(lay.mask, log_pi, LOG_ZERO).reshape(lay.batch_shape + (lay.K,))
        new = system.active & system.field.underflow_taint(_tensor(log_pi))
        if new.any():
            self.record(new, y, t)
            self.out.tainted[:] |= new
            system.active[:] &= ~new
        return bool(new.any())

    def run(self, y: np.ndarray) -> None:
        """Integrate from the state ``y`` at ``t = 0`` until every bandit stopped or the last checkpoint."""
        active = self.system.active
        self.y = y
        self.check_underflow(y, 0.0)
        while self.k < self.ncheck and active.any():
            restart = self._advance()
            if restart is None:
                break
            restart |= self._take_checkpoints()
            if not restart and active.any():
                restart = self._tolerances_stale()
            if restart and active.any() and self.k < self.ncheck:
                # restart where the solver stands, with the stopped bandits frozen (field 0)
                self.y = self.solver.y.copy()
                self.t0 = self.solver.t
                self.solver = None

    def _advance(self):
        """Step the solver (started first if needed) up to the next checkpoint.

        Returns whether a bandit was stopped by a ratio underflow (restart),
        or None when the integration failed: every active bandit is then
        returned, not converged, where the integration stopped.
        """
        system, out = self.system, self.out
        restart = False
        try:
            if self.solver is None:
                self.atol_now = system.atol_for(self.y)
                self.solver = self.solver_cls(
                    system.fun, self.t0, self.y, self.grid[-1], rtol=self.rtol, atol=self.atol_now, jac=system.jac
                )
            solver = self.solver
            while solver.t < self.grid[self.k] and solver.status == "running":
                msg = self._step()
                solver = self.solver  # a fresh solver after a retried step
                if msg is _RETRIES_EXHAUSTED:
                    out.message = (
                        f"solver failed at t = {solver.t:.6g}: non-finite solver state in "
                        f"{STEP_RETRIES} restarts from the last accepted step"
                    )
                    solver.status = "failed"
                    break
                self.steps += 1
                if self.max_steps is not None and self.steps > self.max_steps:
                    out.message = f"step budget exhausted: {self.max_steps} solver steps by t = {solver.t:.6g}"
                    return None
                self.since_checkpoint += 1
                if self.stall_steps is not None and self.since_checkpoint > self.stall_steps:
                    out.message = (f"step budget exhausted: {self.stall_steps} solver steps from t = {self.t_checkpoint:.6g} "
                                   f"without reaching the checkpoint t = {self.grid[self.k]:.6g} (at t = {solver.t:.6g})")
                    return None
                if solver.status == "failed":
                    out.message = f"solver failed at t = {solver.t:.6g}: {msg}"
                elif self.check_underflow(solver.y, solver.t):
                    restart = True
                    break
        except _FlowIntegrationError as err:
            out.message = str(err)
            if self.solver is None:  # could not even start from the last restart point
                self.record(system.active, self.y, self.t0)
                return None
            self.solver.status = "failed"
        if self.solver.status == "failed":
            # not converged: return where the integration stopped
            self.record(system.active, self.solver.y, self.solver.t)
            return None
        return restart

    def _step(self):
        """One solver step, with floating-point errors raised instead of warned.

        scipy's BDF can produce an overflow or ``inf - inf`` in its own
        difference table (a Newton step that diverged) even where the field is
        finite; the step is then retried with a fresh solver started at the
        last accepted point (first order, its own initial step), at most
        ``STEP_RETRIES`` times in a row. Returns the solver's message, or
        ``_RETRIES_EXHAUSTED``.
        """
        for _ in range(STEP_RETRIES + 1):
            t, y = self.solver.t, self.solver.y.copy()
            try:
                with np.errstate(over="raise", invalid="raise", divide="raise"):
                    return self.solver.step()
            except FloatingPointError:
                self.t0, self.y = t, y
                self.solver = self.solver_cls(
                    self.system.fun, t, y, self.grid[-1], rtol=self.rtol, atol=self.atol_now, jac=self.system.jac
                )
        return _RETRIES_EXHAUSTED

    def _take_checkpoints(self) -> bool:
        """Test every checkpoint the solver has passed; freeze the bandits converged there (True if any)."""
        system, out, solver, grid = self.system, self.out, self.solver, self.grid
        active = system.active
        any_ok = False
        dense = solver.dense_output()
        while self.k < self.ncheck and grid[self.k] <= solver.t and active.any():
            k = self.k
            yk = dense(grid[k]) if grid[k] < solver.t else solver.y.copy()
            point = system.evaluate(yk)
            _, pi, speed, growth, finite = point
            self.pi_hist[k] = pi
            prev = self.pi_hist[k - CHECKPOINTS_PER_DECADE] if k >= CHECKPOINTS_PER_DECADE else self.pi0
            plateau = np.abs(pi - prev).max(axis=-1)
            ok = active & finite & (speed <= self.tol) & (plateau <= self.plateau_tol) & (growth <= self.growth_tol)
            out.set(active.copy(), point, grid[k], plateau)
            out.converged |= ok
            any_ok |= ok.any()
            active &= ~ok
            self.k += 1
            self.since_checkpoint, self.t_checkpoint = 0, grid[k]
        return any_ok

    def _tolerances_stale(self) -> bool:
        """Some active bandit's per-arm tolerance would change by more than a factor ``ATOL_REFRESH``."""
        system, lay = self.system, self.system.layout
        ratio = system.atol_for(self.solver.y) / self.atol_now
        moving = np.repeat(system.active, lay.K).reshape(lay.B, lay.K).ravel()[lay.flat_idx]
        return bool(((ratio > ATOL_REFRESH) | (ratio < 1 / ATOL_REFRESH))[moving].any())


@torch_single_thread()
def logit_flow(
    mu,
    adv,
    *,
    loss: LossFn | None = None,
    weight: WeightFn | None = None,
    theta0=None,
    t_max: float = 1e9,
    tol: float = 1e-12,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    plateau_tol: float = PLATEAU_TOL,
    growth_tol: float = GROWTH_TOL,
    rescale: bool = True,
    method: str = "BDF",
    max_steps: int | None = None,
    stall_steps: int | None = None,
) -> FlowResult:
    r"""Integrate a softmax policy flow to its limit.

    Parameters
    ----------
    mu : array_like
        (..., K): arms on the last axis. Behaviour distribution; rows sum to
        1, zeros allowed (arms outside the support).
    adv : array_like
        (..., K): advantage per arm, broadcast against ``mu``.
    loss : callable, optional
        ``loss(log_pi, log_mu, adv) -> (...)``: population loss; the flow is
        :math:`\dot\theta = -\nabla_\theta L`.
    weight : callable, optional
        ``weight(u, adv) -> (..., K)``: per-sample score weight :math:`h`;
        the flow is :math:`\dot\theta_z = \mu_z h_z - \pi_z\sum_y\mu_y h_y`.
        Exactly one of ``loss`` and ``weight`` must be given.
    theta0 : array_like, optional
        (..., K): initial logits (finite on the support); default
        :math:`\log\mu`.
    t_max : float
        Largest rescaled flow time :math:`\tau` integrated to.
    tol : float
        Bound on the probability-space speed :math:`\max_z|d\pi_z/d\tau|`.
    rtol, atol : float
        Local error tolerances of the ODE solver (scipy's RMS error norm
        over the whole batch). ``atol`` is meant in probability: the
        absolute tolerance on :math:`\log\pi_z` is
        :math:`\mathrm{atol}/\pi_z` clipped to :math:`[\mathrm{atol},
        10^{-3}]` (see Notes).
    plateau_tol : float
        Bound on :math:`\max_z|\pi_z(\tau) - \pi_z(\tau/10)|`.
    growth_tol : float
        Bound on :math:`\max_z d\log\pi_z/d\tau` over the support.
    rescale : bool
        Divide each bandit's vector field by a positive scale (see Notes).
    method : {"BDF", "Radau"}
        Stiff scipy integrator.
    max_steps : int, optional
        Budget of integrator steps in all (None: none). A field that jumps
        (a clip or a mask switching on and off along the path) can make the
        stiff integrator crawl; past the budget the integration stops as a
        failure (``message`` says so; every bandit still moving is returned
        not converged where it stood).
    stall_steps : int, optional
        Budget of integrator steps between two checkpoints (None: none): a
        flow that crawls without reaching the next checkpoint (a field that
        chatters across a jump) stops there as a failure, like ``max_steps``,
        long before the total budget would stop it.

    Returns
    -------
    FlowResult

    Notes
    -----
    **Rescaling.** The limit of a flow is unchanged when its vector field is
    multiplied by a positive per-bandit constant (only the clock changes).
    With ``rescale=True`` each bandit's field is divided by

    .. math::

        s = \max\bigl(\rho(J_0),\ 10^{-6}\max_z |v_z(\theta_0)|\bigr),

    where :math:`\rho(J_0)` is the spectral radius of the Jacobian of the
    :math:`\log\pi` velocity :math:`v` at the start (the fastest linear
    rate there) and the second term only guards a start where that
    Jacobian vanishes (:math:`s = 1` if both vanish). A regression loss
    :math:`\sum_y\mu_y(\beta s_y - A_y)^2` has rates proportional to
    :math:`\beta^2`; after rescaling that factor is gone from the clock
    (its rates are :math:`O(1)` at the start for :math:`\beta = 1` and
    :math:`\beta = 10^{-3}` alike). **All times (``t_max``, ``t_final``)
    and speeds (``tol``, ``residual``, ``growth_tol``) are in the rescaled
    time** :math:`\tau = s\,t`; ``FlowResult.scale`` holds :math:`s`.
    Rates that differ within one bandit are not equalized: for a weight
    that does not depend on :math:`u` (e.g. the Gibbs weight
    :math:`e^{A/\beta}`) arm :math:`z` relaxes in log space at a rate
    proportional to its limit :math:`\pi_z`, so arms with limits near
    :math:`10^{-9}` need :math:`\tau` beyond the default ``t_max``.

    **Integration.** The state is :math:`\log\pi` on the support arms of
    every bandit, flattened into one vector (arms with :math:`\mu_z = 0` are
    not in it), integrated with scipy's ``BDF`` (variable order 1-5,
    implicit; ``Radau`` on request) because the rates can differ by many
    orders of magnitude between arms, between bandits, and between the
    initial transient and the final approach. The velocity
    :math:`v = g - \langle\pi, g\rangle` is computed in float64 torch and
    the solver is given the exact block-diagonal Jacobian (one
    :math:`K\times K` block per bandit, by reverse-mode autodiff of
    :math:`v`) as a sparse matrix. Subtracting :math:`\langle\pi,g\rangle`
    does not change :math:`\pi(t)` and keeps :math:`\theta = \log\pi`: the
    state stays bounded on arms with positive limit and diverges linearly
    (a polynomial the BDF formulas integrate exactly) only on arms whose
    probability goes to 0, which is how boundary limits are reached.

    Two details keep the solver from stalling late in the flow, where the
    field is of the size of its float64 rounding noise (about
    :math:`10^{-16}`) and any direction with a rate below :math:`1/h`
    turns that noise into Newton updates of size :math:`h\cdot 10^{-16}`.
    (i) The direction :math:`\theta \to \theta + c\mathbf 1`, to which
    the softmax is blind, is made contracting: the integrated field is
    :math:`v/s - \mathrm{logsumexp}(\theta)\,\mathbf 1`, which moves
    :math:`\pi` exactly as :math:`v/s` does. (ii) The absolute tolerance on
    :math:`\log\pi_z` is :math:`\mathrm{atol}/\pi_z` (an error of
    ``atol`` in :math:`\pi_z`) clipped to :math:`[\mathrm{atol},
    10^{-3}]`; it is set from the state whenever the solver (re)starts and
    the solver is restarted at a checkpoint when some arm's value would
    change by more than a factor 10. Without (ii) an arm with
    :math:`\pi_z \approx 10^{-7}`, whose log-space rate is
    :math:`\propto\pi_z` for a weight that does not depend on :math:`u`,
    cannot be followed to its limit. Bandits are restarted together (the
    solver restarts whenever one converges and is frozen). Torch runs on
    one intra-op thread during the call (restored afterwards): the tensors
    are small and the thread pool only adds overhead.

    **Convergence.** The flow is sampled at the checkpoints
    :math:`\tau = t_{\max} 10^{-k/4}`, :math:`k = 0, 1, \dots` (four per
    decade, down to about :math:`10^{-3}`). A bandit is declared converged
    at the first checkpoint :math:`\tau` where, at that very point, the
    field is finite and

    .. math::

        \max_z \Bigl|\frac{d\pi_z}{d\tau}\Bigr| \le \mathrm{tol},
        \qquad
        \max_z |\pi_z(\tau) - \pi_z(\tau/10)| \le \mathrm{plateau\_tol},
        \qquad
        \max_z \frac{d\log\pi_z}{d\tau} \le \mathrm{growth\_tol}

    (maxima over the support arms; :math:`\pi(0)` stands in for
    :math:`\pi(\tau/10)` before the first checkpoint), and the
    integration has not failed. It is then frozen there (its field is set
    to 0 from then on) and that point is returned. The second condition
    rejects slow motion that a small speed alone would accept: a plateau,
    or sublinear convergence to a vertex, where
    :math:`1 - \pi_{\max} \sim 1/\tau`. The third rejects an arm that is
    improbable but growing: at :math:`\pi_z = 10^{-40}` an arm climbing at
    a log-rate of order one moves neither the speed nor the plateau
    measure, yet its limit may be of order one. Arms heading to 0 have a
    negative log-rate and pass; arms with a positive limit have log-rate
    :math:`\to 0`. These are first-order checks at a point, not a proof:
    an arm that is shrinking now could in principle turn around later.
    Bandits that never meet all three are returned at :math:`t_{\max}`
    with ``converged = False``. If the solver fails or the field becomes
    non-finite, every bandit not yet converged is returned where the
    integration stopped, with ``converged = False``, and ``message`` says
    why.

    **Ratio underflow (weight form).** :math:`u = \pi/\mu` is handed to the
    weight callable as a float64 number, which cannot hold
    :math:`u < 2.2\times 10^{-308}` although the state :math:`\log\pi`
    can. After every accepted step, a bandit with such an arm is checked:
    if ``weight`` gives the same finite value at the floor and at
    :math:`u = 0` (``h = A``, ``h = u A``, ...), the floor is harmless and
    the integration goes on; otherwise (``h`` in :math:`\log u`, say) the
    bandit is stopped there with ``converged = False`` and ``message``
    says so. The loss form receives :math:`\log\pi` and has no such limit.
    """
    t_max, solver_cls = _check_flow_args(loss, weight, t_max, tol, rtol, atol, plateau_tol, growth_tol, method)
    max_steps = None if max_steps is None else as_int(max_steps, "max_steps", minimum=1)
    stall_steps = None if stall_steps is None else as_int(stall_steps, "stall_steps", minimum=1)
    mu_b, adv_b, th_b, mask_b, batch_shape, K = _prepare(mu, adv, theta0)
    field = _Field(mu_b, adv_b, mask_b, loss, weight)
    B = int(np.prod(batch_shape, dtype=np.int64))
    layout = _Layout(mask_b.reshape(B, K), batch_shape)
    pi0, theta_start = _initial_point(mu_b, th_b, mask_b, layout)
    scale = _flow_scale(field, layout, theta_start, rescale)
    system = _FlowSystem(field, layout, scale, atol)
    out = _FlowOutput(theta_start)
    integration = _Integration(
        system, out, solver_cls, _checkpoints(t_max), pi0,
        rtol=rtol, tol=tol, plateau_tol=plateau_tol, growth_tol=growth_tol, max_steps=max_steps,
        stall_steps=stall_steps,
    )
    integration.run(layout.state(theta_start).copy())
    out.note_underflow()
    return out.result(layout, scale)



# ---------------------------------------------------------------------------
# multistart minimization
# ---------------------------------------------------------------------------

#: Noise scales of the random starts around ``log mu`` (cycled).
START_SCALES = (0.1, 1.0, 5.0)

#: Logit added to one arm for the vertex starts.
VERTEX_LOGIT = 10.0

#: An end point counts as a local minimum when the max abs gradient of the
#: normalized loss there is at most ``MIN_GRAD`` and the smallest eigenvalue
#: of its Hessian in the logits is at least ``-MIN_CURVATURE``.
MIN_GRAD = 1e-6
MIN_CURVATURE = 1e-8


def _check_multistart_args(loss, n_starts, tol, seed) -> np.random.Generator:
    """Validate the arguments of :func:`multistart_minimize`; return ``numpy.random.default_rng(seed)``."""
    if not callable(loss):
        raise ValueError("loss must be callable")
    if isinstance(n_starts, bool) or not isinstance(n_starts, (int, np.integer)) or n_starts < 0:
        raise ValueError(f"n_starts must be an integer >= 0, got {n_starts!r}")
    if not np.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol must be a finite number > 0, got {tol}")
    if seed is None:
        raise ValueError("seed is required (an int or a numpy SeedSequence); None would read OS entropy")
    return np.random.default_rng(seed)


class _BanditLoss:
    """The population loss of bandit ``b`` of a batch as a function of the logits ``x`` of its support ``arms``.

    The other bandits sit at :math:`\\log\\mu`; the callable is always called
    with the full batch shape and only entry ``b`` of its output is used.
    """

    def __init__(self, loss: LossFn, mu_b, adv_b, mask_b, batch_shape):
        self.loss = loss
        self.batch_shape = batch_shape
        self.K = mu_b.shape[-1]
        self.B = int(np.prod(batch_shape, dtype=np.int64))
        self.log_mu_np = _log_mu_safe(mu_b, mask_b).reshape(self.B, self.K)
        self.mask_t = torch.tensor(np.array(mask_b, dtype=bool))
        self.log_mu_t = _tensor(_log_mu_safe(mu_b, mask_b))
        self.adv_t = _tensor(adv_b)
        self.base = _tensor(self.log_mu_np)

    def value_t(self, b: int, arms: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
        """The loss of bandit ``b`` (0-d tensor, differentiable in ``xt``)."""
        rows = torch.full_like(arms, b)
        th = self.base.index_put((rows, arms), xt)
        log_pi, _ = _masked_log_softmax(th.reshape(self.batch_shape + (self.K,)), self.mask_t)
        val = self.loss(log_pi, self.log_mu_t, self.adv_t)
        return _check_callable_output(val, self.batch_shape, "loss").reshape(self.B)[b]

    def value_and_grad(self, b: int, arms: torch.Tensor, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss of bandit ``b`` and its gradient in ``x``."""
        xt = _tensor(x).requires_grad_(True)
        with torch.enable_grad():
            val = self.value_t(b, arms, xt)
            (grad,) = torch.autograd.grad(val, xt)
        return float(val.detach()), grad.detach().numpy().astype(np.float64)

    def min_curvature(self, b: int, arms: torch.Tensor, x: np.ndarray) -> float:
        """Smallest eigenvalue of the Hessian of the loss of bandit ``b`` in ``x``."""
        with torch.enable_grad():
            H = torch.autograd.functional.hessian(lambda xt: self.value_t(b, arms, xt), _tensor(x))
        H = H.detach().numpy()
        return float(np.linalg.eigvalsh(0.5 * (H + H.T)).min())


def _starts(x_mu: np.ndarray, n_starts: int, rng: np.random.Generator) -> list[np.ndarray]:
    r"""Starts :math:`\log\mu`; :math:`\log\mu + \sigma\xi` (``n_starts``, :math:`\sigma` cycling ``START_SCALES``);
    :math:`\log\mu + \mathrm{VERTEX\_LOGIT}\,e_j` for every support arm :math:`j`."""
    m = x_mu.size
    starts = [x_mu.copy()]
    for i in range(n_starts):
        sigma = START_SCALES[i % len(START_SCALES)]
        starts.append(x_mu + sigma * rng.standard_normal(m))
    for j in range(m):
        x = x_mu.copy()
        x[j] += VERTEX_LOGIT
        starts.append(x)
    return starts


def _loss_scale(problem: _BanditLoss, b: int, arms: torch.Tensor, x_mu: np.ndarray) -> float:
    r""":math:`c = \max(|L(\log\mu)|, \max_z|\nabla_\theta L(\log\mu)|)` of bandit ``b`` (1 if that is 0)."""
    v0, g0 = problem.value_and_grad(b, arms, x_mu)
    if not (np.isfinite(v0) and np.isfinite(g0).all()):
        raise ValueError(f"loss is not finite at log mu for bandit {b}")
    c = max(abs(v0), float(np.abs(g0).max()))
    return c if np.isfinite(c) and c > 0 else 1.0


def _end_points(problem: _BanditLoss, b: int, arms: torch.Tensor, starts, c: float, tol: float) -> list[tuple]:
    """``(loss, logits, is a local minimum)`` at the end of BFGS on the loss of bandit ``b`` divided by ``c``,
    from every start (the one point of a single-arm support)."""
    m = starts[0].size

    def fun(x):
        val, grad = problem.value_and_grad(b, arms, x)
        return val / c, grad / c

    if m == 1:
        val, _ = problem.value_and_grad(b, arms, starts[0])
        return [(val, np.zeros(1), True)]
    ends = []
    for x0 in starts:
        res = scipy.optimize.minimize(fun, x0, jac=True, method="BFGS", options={"gtol": tol, "maxiter": 500 * m})
        val, grad = problem.value_and_grad(b, arms, res.x)
        is_min = bool(
            np.abs(grad).max() <= MIN_GRAD * c and problem.min_curvature(b, arms, res.x) >= -MIN_CURVATURE * c
        )
        ends.append((val, res.x, is_min))
    return ends


def _best_and_distinct(ends: list[tuple], arms_np: np.ndarray, mask_row: np.ndarray, b: int):
    """``(pi, log pi, loss, n_distinct)`` of the lowest finite end point, and the number of distinct
    local minima (greedy clusters at ``DISTINCT_ATOL`` in max abs of the policy)."""
    K = mask_row.size
    finite = [e for e in ends if np.isfinite(e[0])]
    if not finite:
        raise ValueError(f"loss is not finite at any end point for bandit {b}")
    best = min(finite, key=lambda e: e[0])
    full = np.zeros(K)
    full[arms_np] = best[1]
    pi_b, log_pi_b = _softmax_np(full[None], mask_row[None])

    reps: list[np.ndarray] = []
    for val, x, is_min in finite:
        if not is_min:
            continue
        full = np.zeros(K)
        full[arms_np] = x
        p = _softmax_np(full[None], mask_row[None])[0][0]
        if all(np.abs(p - q).max() > DISTINCT_ATOL for q in reps):
            reps.append(p)
    return pi_b[0], log_pi_b[0], best[0], len(reps)


@torch_single_thread()
def multistart_minimize(
    loss: LossFn,
    mu,
    adv,
    *,
    n_starts: int = 32,
    seed,
    tol: float = 1e-14,
) -> MinimizeResult:
    r"""Globally minimize a population loss over the logits from many starts.

    For each bandit, minimizes :math:`L(\theta)` with
    :math:`\pi = \mathrm{softmax}(\theta)` over the logits of its support
    arms (arms with :math:`\mu_z = 0` stay at :math:`\pi_z = 0`) with
    ``scipy.optimize.minimize(method="BFGS")`` and exact torch gradients,
    from these starts:

    * :math:`\theta = \log\mu`;
    * ``n_starts`` starts :math:`\theta = \log\mu + \sigma\,\xi`,
      :math:`\xi \sim N(0, I)`, with :math:`\sigma` cycling through
      0.1, 1, 5;
    * one start per support arm :math:`j` at
      :math:`\theta = \log\mu + 10\, e_j` (near the vertex :math:`j`), so
      that minima near the boundary of the simplex are found.

    Parameters
    ----------
    loss : callable
        ``loss(log_pi, log_mu, adv) -> (...)``, as in :func:`logit_flow`.
        It is always called with the full batch shape; while bandit
        :math:`b` is optimized the other bandits sit at :math:`\log\mu`
        and only entry :math:`b` of the output is used (so closures over
        per-bandit parameters work; the cost grows like the square of the
        batch size).
    mu : array_like
        (..., K): arms on the last axis. Behaviour distribution.
    adv : array_like
        (..., K): advantage per arm, broadcast against ``mu``.
    n_starts : int
        Number of random starts per bandit (in addition to the
        :math:`1 + K` deterministic ones).
    seed : int or numpy.random.SeedSequence
        Seed of ``numpy.random.default_rng``; required. No global random
        state is read or changed.
    tol : float
        ``gtol`` of BFGS on the loss divided by the per-bandit scale
        :math:`c = \max(|L(\log\mu)|, \max_z|\nabla_\theta L(\log\mu)|)`
        (1 if that is 0); minimizers do not depend on that scale.

    Returns
    -------
    MinimizeResult
        The policy and loss at the lowest loss found, and the number of
        distinct local minima among the end points. An end point counts as
        a local minimum when the max abs gradient of the normalized loss is
        at most ``1e-6`` and the smallest eigenvalue of its Hessian in the
        logits at least ``-1e-8`` (so a start that sits on a saddle or a
        maximum, where the gradient vanishes, is not counted); those are
        clustered greedily, a new cluster starting when the policy differs
        from every earlier cluster's first member by more than ``1e-6`` in
        max abs. A minimum at the boundary of the simplex (some
        :math:`\pi_z \to 0`, :math:`\theta_z \to -\infty`) is reached only
        approximately, with those :math:`\pi_z` small but positive.
    """
    rng = _check_multistart_args(loss, n_starts, tol, seed)
    mu_b, adv_b, _, mask_b, batch_shape, K = _prepare(mu, adv)
    problem = _BanditLoss(loss, mu_b, adv_b, mask_b, batch_shape)
    B = problem.B
    mask = mask_b.reshape(B, K)

    pi_best = np.zeros((B, K))
    theta_best = np.full((B, K), -np.inf)
    value_best = np.full(B, np.nan)
    n_distinct = np.zeros(B, dtype=np.int64)
    for b in range(B):
        arms_np = np.flatnonzero(mask[b])
        arms = torch.as_tensor(arms_np)
        x_mu = problem.log_mu_np[b, arms_np]
        starts = _starts(x_mu, n_starts, rng)
        c = _loss_scale(problem, b, arms, x_mu)
        ends = _end_points(problem, b, arms, starts, c, tol)
        pi_best[b], theta_best[b], value_best[b], n_distinct[b] = _best_and_distinct(ends, arms_np, mask[b], b)

    return MinimizeResult(
        pi=pi_best.reshape(batch_shape + (K,)),
        value=value_best.reshape(batch_shape),
        n_distinct=n_distinct.reshape(batch_shape),
        theta=theta_best.reshape(batch_shape + (K,)),
    )
