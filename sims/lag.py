r"""The exact delayed iteration on one bandit, and its linear stability (figure 5).

docs/theory.md section 7 (a) and (b). With lag ``L`` the update at step ``t`` is
anchored at :math:`\mu = \pi_{t-L}`:

.. math:: \pi_{t+1} = F\big(\pi_t, \pi_{t-L}\big),

with the step rules (population, no sampling; ``T`` is the objective's
induced-target map :math:`\mu \mapsto` ``obj.induced_target(mu, r).pi``):

* ``full``: :math:`\pi_{t+1} = T(\pi_{t-L})`;
* ``damped``: :math:`\theta_{t+1} = (1-a)\,\theta_t + a\log T(\pi_{t-L})`
  (logits; ``lr`` plays the role of ``a``);
* ``gradient``: ``k`` steps :math:`\theta \mathrel{+}= \mathrm{lr}\,
  \big(\mu h - \pi \textstyle\sum_y \mu_y h_y\big)` with
  :math:`h = h(\pi/\mu, A)` = ``obj.weight`` and the population advantage
  :math:`A` of :math:`\mu` (the exact expected logit gradient of the
  objective, docs/theory.md section 2).

**Linear stability.** Around a fixed point :math:`\pi^*` (``F(pi*, pi*) = pi*``)
a perturbation obeys the delay-difference equation

.. math:: x_{t+1} = J_0 x_t + J_L x_{t-L}, \qquad
    J_0 = \partial F/\partial\pi_t,\quad J_L = \partial F/\partial\pi_{t-L},

whose characteristic roots are the eigenvalues of the companion matrix of
size :math:`(L+1)K` (:func:`companion_matrix`). The Jacobians are taken in
log-probability coordinates by central finite differences (the step maps
include closed-form and solver targets that torch cannot differentiate);
the direction :math:`\mathbf 1` (the softmax gauge) maps to 0.

**Which fixed point.** On a bandit whose rewards differ, every step rule
improves the reward, so the only fixed points lie on the optimal face
(where ``T(mu) = mu``): the undelayed iteration ends at the best arm, reached
only sublinearly by the gradient rule, and there the linearization is
degenerate (every gradient rule has spectral radius 1 at a vertex, for any
lag). Interior fixed points exist only where the reward is constant on the
support, and then *every* policy is one. :func:`stability_map` therefore
works, by default (``flat=True``), on the bandit's behaviour policy with every
reward set to the best reward (the optimal face): the undelayed iteration
does not move, so its limit is the bandit's ``mu``, and the linearization
isolates the one place where lag enters the exact iteration besides the
advantage baseline: the pull of the update toward the lagged policy.
Ratio-based objectives (PG, PPO, GRPO, ...) have no such pull (their weight
vanishes at ``A = 0``): they are neutral, radius 1 at every step size and lag.
Ratio-free ones (regression, AsymRE, AWR, ...) pull toward :math:`\pi_{t-L}`;
that delayed restoring force is stable up to a step size and unstable beyond.
With ``flat=False`` the map linearizes at the limit of the undelayed
iteration on the real rewards, as the stability analysis of that limit (near
a vertex: marginal).

Every function takes one objective (``theory.objectives``) and never
re-implements it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import torch

from theory._numerics import flow_field, log_softmax, softmax
from theory.bandits import STANDARD_BANDITS, Bandit
from theory.objectives import OBJECTIVES, make_objective

from .bandit import torch_single_thread

__all__ = [
    "RULES",
    "FixedPoint",
    "flat_bandit",
    "target_map",
    "delayed_step",
    "delayed_iteration",
    "fixed_point",
    "jacobians",
    "companion_matrix",
    "characteristic_roots",
    "spectral_radius",
    "stability_map",
]

#: Step rules of the delayed iteration.
RULES = ("full", "damped", "gradient")

#: log of a probability the target map sets to exactly zero (a vertex, a thresholded arm).
LOG_FLOOR = -700.0
_FD_EPS = 1e-5
_DTYPE = torch.float64


# ----------------------------------------------------------------------------- inputs


def _as_bandit(bandit) -> Bandit:
    if isinstance(bandit, Bandit):
        return bandit
    if isinstance(bandit, str):
        if bandit not in STANDARD_BANDITS:
            raise ValueError(f"unknown bandit {bandit!r}; valid: {', '.join(STANDARD_BANDITS)} (or pass a Bandit)")
        return STANDARD_BANDITS[bandit]
    raise ValueError(f"bandit must be a theory.Bandit or a name in STANDARD_BANDITS, got {type(bandit).__name__}")


def _as_objective(obj, obj_params=None):
    if isinstance(obj, str):
        if obj not in OBJECTIVES:
            raise ValueError(f"unknown objective {obj!r}; valid objectives: {', '.join(OBJECTIVES)}")
        return make_objective(obj, **(obj_params or {}))
    if obj_params:
        raise ValueError("obj_params only apply to an objective given by name")
    return obj


def _check_rule(rule, lr, inner_steps):
    if rule not in RULES:
        raise ValueError(f"unknown step rule {rule!r}; valid: {', '.join(RULES)}")
    if rule in ("damped", "gradient"):
        if lr is None:
            raise ValueError(f"rule {rule!r} needs lr (the {'damping a' if rule == 'damped' else 'step size'})")
        lr_arr = np.asarray(lr, dtype=np.float64)
        if not (np.all(np.isfinite(lr_arr)) and np.all(lr_arr > 0)):
            raise ValueError(f"lr must be finite and > 0, got {lr!r}")
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, numbers.Integral) or inner_steps < 1:
        raise ValueError(f"inner_steps must be an integer >= 1, got {inner_steps!r}")


def _check_lag(lag):
    if isinstance(lag, bool) or not isinstance(lag, numbers.Integral):
        raise ValueError(f"lag must be an integer, got {lag!r}")
    if lag < 0:
        raise ValueError(f"lag must be >= 0 (0 = on-policy), got {lag}")
    return int(lag)


def flat_bandit(bandit) -> Bandit:
    """The bandit's ``mu`` with every reward set to its best reward (the optimal face).

    Every policy is a fixed point of every step rule on it; see the module docstring.
    """
    bd = _as_bandit(bandit)
    return Bandit(f"{bd.name}-flat", bd.mu, np.full_like(bd.r, bd.r.max()), f"{bd.name} with every reward = max r")


# ----------------------------------------------------------------------------- the step map


def target_map(obj, mu, r) -> np.ndarray:
    """:math:`T(\\mu)`, the objective's induced target (``obj.induced_target(mu, r).pi``), shape (..., K)."""
    return obj.induced_target(np.array(mu, dtype=np.float64), r).pi


def delayed_step(obj, r, logits, logits_mu, rule, *, lr=None, inner_steps=1) -> np.ndarray:
    r"""One step of the delayed iteration: :math:`\log\pi_{t+1}` from the logits of :math:`\pi_t` and :math:`\pi_{t-L}`.

    Parameters
    ----------
    obj : theory.objectives.Objective
    r : array_like, shape (K,) or (..., K)
        Rewards.
    logits, logits_mu : ndarray, shape (..., K)
        Logits (any normalization) of the current and of the lagged policy.
    rule : {"full", "damped", "gradient"}
    lr : float or ndarray broadcastable to (...)
        Step size (``gradient``) or damping ``a`` (``damped``); unused by ``full``.
    inner_steps : int
        ``k`` gradient steps per outer step (``gradient`` only).

    Returns
    -------
    ndarray, shape (..., K)
        Normalized log-probabilities of :math:`\pi_{t+1}`.
    """
    _check_rule(rule, lr, inner_steps)
    log_mu = log_softmax(np.asarray(logits_mu, dtype=np.float64))
    mu = np.exp(log_mu)
    mu = mu / mu.sum(-1, keepdims=True)
    if rule == "full":
        return np.maximum(np.log(np.maximum(target_map(obj, mu, r), 1e-300)), LOG_FLOOR)
    lr_b = np.asarray(lr, dtype=np.float64)[..., None]
    z = np.asarray(logits, dtype=np.float64)
    if rule == "damped":
        log_t = np.maximum(np.log(np.maximum(target_map(obj, mu, r), 1e-300)), LOG_FLOOR)
        return log_softmax((1.0 - lr_b) * log_softmax(z) + lr_b * log_t)
    with torch_single_thread():
        adv = torch.tensor(obj.population_advantage(mu, r), dtype=_DTYPE)
        mu_t = torch.tensor(mu, dtype=_DTYPE)
        theta = torch.tensor(log_softmax(z), dtype=_DTYPE)
        lr_t = torch.tensor(lr_b, dtype=_DTYPE)
        for _ in range(inner_steps):
            pi = softmax(theta)
            h = obj.weight(pi / mu_t, adv, mu_t)
            theta = theta + lr_t * flow_field(pi, mu_t * h)
        return log_softmax(theta).numpy()


def delayed_iteration(
    obj, bandit, rule, lag, steps, *, lr=None, inner_steps=1, pi0=None, obj_params=None
) -> np.ndarray:
    r"""Run :math:`\pi_{t+1} = F(\pi_t, \pi_{t-L})` from :math:`\pi_0` (the history before 0 is :math:`\pi_0`).

    Parameters
    ----------
    obj : Objective or str
    bandit : theory.Bandit or str
    rule : {"full", "damped", "gradient"}
    lag : int
        L >= 0.
    steps : int
    lr : float or ndarray of batch shape (...), optional
        A batch of step sizes runs as a leading axis.
    inner_steps : int
    pi0 : array_like, shape (..., K), optional
        Initial policy; default the bandit's ``mu``.

    Returns
    -------
    ndarray, shape (steps + 1, ..., K)
        :math:`\pi_0, \dots, \pi_{steps}`.
    """
    obj = _as_objective(obj, obj_params)
    bd = _as_bandit(bandit)
    L = _check_lag(lag)
    _check_rule(rule, lr, inner_steps)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    p0 = bd.mu if pi0 is None else np.asarray(pi0, dtype=np.float64)
    batch = np.broadcast_shapes(p0.shape[:-1], np.shape(lr) if lr is not None else ())
    z0 = np.broadcast_to(np.log(np.maximum(p0, 1e-300)), batch + (bd.r.size,)).copy()
    hist = [z0] * (L + 1)  # hist[-1] = log pi_t, hist[0] = log pi_{t-L}
    out = np.empty((steps + 1,) + z0.shape)
    out[0] = np.exp(log_softmax(z0))
    for t in range(steps):
        z = delayed_step(obj, bd.r, hist[-1], hist[0], rule, lr=lr, inner_steps=inner_steps)
        hist = hist[1:] + [z]
        out[t + 1] = np.exp(z)
    return out


# ----------------------------------------------------------------------------- fixed points


@dataclass(frozen=True)
class FixedPoint:
    """The limit of the undelayed iteration (see :func:`fixed_point`).

    Attributes
    ----------
    pi : ndarray, shape (..., K)
    residual : ndarray, shape (...)
        :math:`\\max_y |F(\\pi,\\pi)_y - \\pi_y|` (probabilities): 0 at a fixed point.
    steps : int
        Undelayed steps taken.
    converged : ndarray of bool, shape (...)
        ``residual <= tol`` (False also where the iteration left the floats).
    """

    pi: np.ndarray
    residual: np.ndarray
    steps: int
    converged: np.ndarray


def fixed_point(obj, bandit, rule, *, lr=None, inner_steps=1, max_steps=2000, tol=1e-12, obj_params=None) -> FixedPoint:
    """The limit of the undelayed iteration (L = 0) of ``rule`` from the bandit's ``mu``.

    Iterates until the step changes no probability by more than ``tol`` or
    ``max_steps`` is reached (batched over ``lr``). On a bandit whose rewards
    differ the limit is on the optimal face and the gradient rule approaches
    it sublinearly: expect ``converged`` False there.
    """
    obj = _as_objective(obj, obj_params)
    bd = _as_bandit(bandit)
    _check_rule(rule, lr, inner_steps)
    batch = np.shape(lr) if lr is not None else ()
    z = np.broadcast_to(np.log(bd.mu), batch + (bd.r.size,)).copy()
    res = np.full(batch, np.inf)
    n = 0
    with np.errstate(invalid="ignore", over="ignore"):
        for n in range(1, max_steps + 1):
            zn = delayed_step(obj, bd.r, z, z, rule, lr=lr, inner_steps=inner_steps)
            res = np.abs(np.exp(zn) - np.exp(z)).max(-1)
            res = np.where(np.isfinite(res), res, np.inf)
            z = np.where(np.isfinite(zn), zn, z)
            if np.all(res <= tol):
                break
    return FixedPoint(pi=np.exp(log_softmax(z)), residual=res, steps=n, converged=res <= tol)


# ----------------------------------------------------------------------------- linearization


def jacobians(obj, r, pi, rule, *, lr=None, inner_steps=1, eps=_FD_EPS):
    r"""Jacobians of the step map at a constant history :math:`\pi_t = \pi_{t-L} = \pi`.

    In log-probability coordinates :math:`x = \log\pi`, by central differences
    of :func:`delayed_step` (all ``2K`` perturbations of each argument in one
    batched call).

    Parameters
    ----------
    obj : Objective
    r : array_like, shape (K,)
    pi : array_like, shape (..., K)
        The point (a fixed point for a stability analysis).
    rule, lr, inner_steps :
        As in :func:`delayed_step`; ``lr`` broadcastable to (...).

    Returns
    -------
    J0, JL : ndarray, shape (..., K, K)
        :math:`\partial\log\pi_{t+1}/\partial\log\pi_t` and
        :math:`\partial\log\pi_{t+1}/\partial\log\pi_{t-L}`.
    """
    _check_rule(rule, lr, inner_steps)
    pi = np.asarray(pi, dtype=np.float64)
    batch = np.broadcast_shapes(pi.shape[:-1], np.shape(lr) if lr is not None else ())
    K = pi.shape[-1]
    x = np.broadcast_to(np.log(np.maximum(pi, 1e-300)), batch + (K,))
    E = eps * np.eye(K)
    pert = np.concatenate([x[..., None, :] + E, x[..., None, :] - E], -2)  # (..., 2K, K)
    base = np.broadcast_to(x[..., None, :], pert.shape)
    lr_b = None if lr is None else np.broadcast_to(np.asarray(lr, dtype=np.float64), batch)[..., None]
    f0 = delayed_step(obj, r, pert, base, rule, lr=lr_b, inner_steps=inner_steps)
    fL = delayed_step(obj, r, base, pert, rule, lr=lr_b, inner_steps=inner_steps)

    def central(f):
        d = (f[..., :K, :] - f[..., K:, :]) / (2 * eps)  # (..., j, i) = d out_i / d x_j
        return np.swapaxes(d, -1, -2)

    return central(f0), central(fL)


def companion_matrix(J0, JL, lag) -> np.ndarray:
    r"""Companion matrix of :math:`x_{t+1} = J_0x_t + J_Lx_{t-L}`, shape (..., (L+1)K, (L+1)K).

    State :math:`X_t = (x_t, x_{t-1}, \dots, x_{t-L})`; first block row
    :math:`(J_0, 0, \dots, 0, J_L)`, identity blocks below the diagonal
    (for ``L = 0``: :math:`J_0 + J_L`).
    """
    L = _check_lag(lag)
    J0 = np.asarray(J0, dtype=np.float64)
    JL = np.asarray(JL, dtype=np.float64)
    if J0.shape != JL.shape or J0.ndim < 2 or J0.shape[-1] != J0.shape[-2]:
        raise ValueError(f"J0 and JL must be square matrices of one shape (..., K, K), got {J0.shape} and {JL.shape}")
    K = J0.shape[-1]
    if L == 0:
        return J0 + JL
    n = (L + 1) * K
    C = np.zeros(J0.shape[:-2] + (n, n))
    C[..., :K, :K] = J0
    C[..., :K, L * K :] += JL
    C[..., K:, :-K] = np.eye(L * K)
    return C


def characteristic_roots(J0, JL, lag) -> np.ndarray:
    r"""Roots of :math:`\det(\lambda^{L+1} - J_0\lambda^L - J_L) = 0`: the companion eigenvalues, (..., (L+1)K).

    Computed by single-threaded LAPACK through torch (numpy's threaded BLAS
    is many times slower on a shared CPU).
    """
    C = companion_matrix(J0, JL, lag)
    with torch_single_thread():
        return torch.linalg.eigvals(torch.tensor(C, dtype=_DTYPE)).numpy()


def _drop_gauge(J: np.ndarray) -> np.ndarray:
    """``V^T J V`` with V an orthonormal basis of the vectors summing to 0 (K -> K - 1).

    Valid because every step map ignores the softmax gauge (``J 1 = 0``): the
    eigenvalues are those of ``J`` less one zero, and the companion matrix
    shrinks by ``L + 1`` rows.
    """
    K = J.shape[-1]
    q, _ = np.linalg.qr(np.eye(K) - 1.0 / K)
    V = q[:, : K - 1]
    return np.swapaxes(V, 0, 1) @ J @ V


def spectral_radius(J0, JL, lag, *, exclude_neutral=False, neutral_tol=1e-6) -> np.ndarray:
    r"""Largest :math:`|\lambda|` of :func:`characteristic_roots`, shape (...).

    ``radius < 1``: perturbations die out (asymptotically stable); ``> 1``:
    unstable. Where the fixed points form a set (a flat face), ``lambda = 1``
    is a root once per direction along the set (a shifted constant history is
    another fixed point): the radius is then at least 1, and 1 means stable.
    ``exclude_neutral=True`` drops those roots (as many as :math:`J_0 + J_L`
    has eigenvalues within ``neutral_tol`` of 1, the ones closest to 1) and
    returns the largest remaining modulus: how fast a history perturbation
    settles onto the set.
    """
    full, transverse = _radii(J0, JL, lag, neutral_tol)
    return transverse if exclude_neutral else full


def _radii(J0, JL, lag, neutral_tol=1e-6):
    """(radius, radius without the neutral roots) from one eigenvalue computation."""
    roots = characteristic_roots(J0, JL, lag)
    mod = np.abs(roots)
    with torch_single_thread():
        ev = torch.linalg.eigvals(torch.tensor(np.asarray(J0) + np.asarray(JL), dtype=_DTYPE)).numpy()
    m = (np.abs(ev - 1.0) < neutral_tol).sum(-1)  # (...)
    rank = np.argsort(np.argsort(np.abs(roots - 1.0), -1), -1)  # 0 = closest to 1
    keep = rank >= np.asarray(m)[..., None]
    return mod.max(-1), np.where(keep, mod, 0.0).max(-1)


def stability_map(
    obj_name,
    lags,
    lrs,
    bandit="graded",
    *,
    rule="gradient",
    inner_steps=1,
    obj_params=None,
    flat=True,
    exclude_neutral=False,
    max_steps=2000,
    fixed_point_tol=1e-9,
) -> np.ndarray:
    r"""Spectral radius of the delayed iteration at its fixed point, over lags x step sizes.

    Parameters
    ----------
    obj_name : str
        Objective of the zoo.
    lags : sequence of int
    lrs : sequence of float
        Step sizes (``gradient``) or dampings (``damped``); ignored by ``full``.
    bandit : theory.Bandit or str
    rule : {"gradient", "damped", "full"}
    inner_steps : int
    obj_params : dict, optional
        Overrides of the objective's defaults.
    flat : bool
        True (default): the fixed point is the bandit's ``mu`` on
        :func:`flat_bandit` (every reward = the best one), where every policy
        is a fixed point and the undelayed iteration does not move — the
        analysis of the pull toward the lagged policy (module docstring).
        False: the limit of the undelayed iteration on the real rewards
        (:func:`fixed_point`, per step size), linearized there.
    exclude_neutral : bool
        See :func:`spectral_radius`.
    max_steps : int
        Undelayed steps allowed to find the limit (``flat=False``).

    fixed_point_tol : float
        The point is used only where :math:`\max_y|F(\pi,\pi)_y - \pi_y|`
        is at most this (with ``flat=True`` a tie-breaking target, e.g. PG's
        vertex under ``full`` or ``damped``, does not fix ``mu``).

    Returns
    -------
    ndarray, shape (len(lags), len(lrs))
        Radius; NaN where the point is not a fixed point (see
        ``fixed_point_tol``) or the undelayed iteration diverged. With
        ``flat=False`` the gradient rule's limit is approached sublinearly,
        so the point is checked only for finiteness.
    """
    return stability_maps(
        obj_name, lags, lrs, bandit, rule=rule, inner_steps=inner_steps, obj_params=obj_params, flat=flat,
        max_steps=max_steps, fixed_point_tol=fixed_point_tol,
    )[1 if exclude_neutral else 0]


def stability_maps(obj_name, lags, lrs, bandit, *, rule, inner_steps, obj_params, flat, max_steps, fixed_point_tol):
    """(radius, transverse radius), each (len(lags), len(lrs)); see :func:`stability_map`."""
    obj = _as_objective(obj_name, obj_params)
    bd = flat_bandit(bandit) if flat else _as_bandit(bandit)
    lags = [_check_lag(L) for L in lags]
    lrs = np.asarray(lrs, dtype=np.float64)
    if lrs.ndim != 1 or lrs.size == 0:
        raise ValueError(f"lrs must be a non-empty 1-d sequence, got shape {lrs.shape}")
    lr = None if rule == "full" else lrs
    _check_rule(rule, lr, inner_steps)
    if flat:
        pi = np.broadcast_to(bd.mu, lrs.shape + bd.mu.shape)
        z = np.log(pi)
        with np.errstate(invalid="ignore", over="ignore"):
            res = np.abs(np.exp(delayed_step(obj, bd.r, z, z, rule, lr=lr, inner_steps=inner_steps)) - pi).max(-1)
        ok = res <= fixed_point_tol
    else:
        fp = fixed_point(obj, bd, rule, lr=lr, inner_steps=inner_steps, max_steps=max_steps)
        pi = np.broadcast_to(fp.pi, lrs.shape + bd.mu.shape)
        ok = np.broadcast_to(np.isfinite(fp.residual), lrs.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        J0, JL = jacobians(obj, bd.r, pi, rule, lr=lr, inner_steps=inner_steps)
    J0, JL = _drop_gauge(J0), _drop_gauge(JL)
    finite = ok & np.isfinite(J0).all((-1, -2)) & np.isfinite(JL).all((-1, -2))
    J0 = np.where(finite[:, None, None], J0, 0.0)
    JL = np.where(finite[:, None, None], JL, 0.0)
    full = np.empty((len(lags), lrs.size))
    trans = np.empty((len(lags), lrs.size))
    for i, L in enumerate(lags):
        a, b = _radii(J0, JL, L)
        full[i] = np.where(finite, a, np.nan)
        trans[i] = np.where(finite, b, np.nan)
    return full, trans
