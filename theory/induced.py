r"""Induced targets of any objective on a tabular bandit: a generic KKT solver and a dispatcher.

The expected logit gradient of an objective with per-sample weight
:math:`h(u, A)` (``u = pi/mu``) on a softmax bandit is

.. math:: g_z = \mu_z h(u_z, A_z) - \pi_z\,\kappa,\qquad \kappa = \sum_y \mu_y h(u_y, A_y).

**Fixed points, with boundary faces.** Let ``S`` be the arms whose
probability stays positive in the limit. On ``S`` the logits may all drift at
one common rate ``c`` (the softmax is blind to it) while the arms outside
``S`` fall behind (:math:`\theta_w \to -\infty`). So the limit satisfies

.. math::
    \mu_z\big(h(u_z, A_z) - \kappa u_z\big) = c \quad (z \in S),\qquad
    \sum_{z\in S}\mu_z u_z = 1,\qquad
    c\,|S| = -\sum_{w\notin S}\mu_w h(0^+, A_w),

and an arm leaves ``S`` exactly when :math:`\mu_w h(0^+, A_w) \le c` (its
logit then falls behind the common drift). The drift ``c`` is zero whenever
the leaving arms carry no weight at ``u = 0`` (ratio-weighted losses) or no
arm leaves (the regression, whose weight is :math:`+\infty` at ``u = 0``);
it is what turns REINFORCE's linear tilt :math:`\mu A/E_\mu[A]` into the
thresholded :math:`(\mu A - c)_+/E_\mu[A]`.

:func:`solve_kkt` solves this system for any weight for which
:math:`\psi_z(u) = h(u, A_z) - \kappa u` is non-increasing in ``u`` for every
:math:`\kappa >` ``kappa_min``: per arm a safeguarded Newton in
:math:`\log u`; per bandit a bracketed Newton in
:math:`\log(\kappa - \kappa_{min})` on :math:`\sum\mu u(\kappa) = 1` (both
:func:`theory._roots.safeguarded_newton`, stopped at the rounding level of the
equation); an outer fixed point on the support. Where :math:`\sum\mu u(\kappa)` jumps (a
weight with a plateau, e.g. CISPO's clipped ratio), the last bracket is
interpolated, which picks a point of the (set-valued) fixed-point face.
Rows with no solution at :math:`\kappa > \kappa_{min}` (a collapse onto one
arm) are reported, not guessed.

:func:`induced_target` dispatches per objective: closed form, KKT solver, or
the flow (``theory.flow.logit_flow``, the ground truth) for the objectives
whose target is set-valued (PPO-type clipping: see
:func:`ppo_clip_target_set` for the set itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch

from ._checks import as_float_array, broadcast_arms, check_distribution
from ._numerics import flow_field
from ._roots import safeguarded_newton
from .runtime import torch_single_thread

__all__ = [
    "InducedTarget",
    "solve_kkt",
    "euler_flow",
    "induced_target",
    "certify",
    "stationary_face",
    "stationarity_residual",
    "ppo_clip_target_set",
    "population_surrogate",
]

#: |sum mu u - 1| below which the normalization counts as met (a vertex: mu * (1/mu) - 1 is
#: rounding, not a sign)
_F_TOL = 1e-13

#: ``u`` at which ``h(0+, A)`` is evaluated (smallest normal float64, as in the flow).
U_ZERO = float(np.finfo(np.float64).tiny)

#: ``xtol`` of the per-arm Newton in ``log u`` and of the Newton in ``log(kappa - kappa_min)``
#: (:func:`theory._roots.safeguarded_newton`)
_ARM_XTOL = 2e-15
_KAPPA_XTOL = 1e-15


#: Tolerance of the certificate every reported target must pass (:func:`certify`): a distribution
#: to ``DIST_ATOL`` and a stationarity residual (:func:`stationarity_residual`) below ``RESIDUAL_TOL``.
DIST_ATOL = 1e-9
RESIDUAL_TOL = 1e-8


@dataclass(frozen=True)
class InducedTarget:
    """An induced target and how it was obtained.

    Attributes
    ----------
    pi : ndarray, shape (..., K)
        The target. Where the fixed points form a set (``set_valued``), the
        point of that set that the flow from :math:`\\pi = \\mu` reaches.
    method : str
        ``closed-form``, ``kkt``, ``flow``, ``euler`` or a ``+``-joined mix
        (rows that a closed form leaves undefined go to the flow).
    converged : ndarray of bool, shape (...)
        Certified: ``pi`` is a distribution (finite, >= 0, sums to 1 within
        :data:`DIST_ATOL`), passes the route's stationarity check
        (:func:`stationarity_residual` below :data:`RESIDUAL_TOL`, or for the
        Euler route the iterates stopped moving), and, on a set-valued row, is
        the flow's point by a derived rule. See :func:`certify`.
    residual : ndarray, shape (...)
        :func:`stationarity_residual` at ``pi`` (0 for closed forms is not
        assumed: it is computed); for the Euler route, the last movement.
    kappa, drift : ndarray, shape (...), or None
        The multiplier :math:`\\kappa = E_\\mu[h]` and the common drift ``c``
        (KKT solver only).
    set_valued : ndarray of bool, shape (...), or None
        The stationary points through ``pi`` form a set of positive dimension
        (tied advantages on a plateau of :math:`h/u`; see :func:`stationary_face`).
    pi_min, pi_max : ndarray, shape (..., K), or None
        Per-arm range of :math:`\\pi` over that set (equal to ``pi`` where the
        target is a point).
    """

    pi: np.ndarray
    method: str
    converged: np.ndarray
    residual: np.ndarray
    kappa: np.ndarray | None = None
    drift: np.ndarray | None = None
    set_valued: np.ndarray | None = None
    pi_min: np.ndarray | None = None
    pi_max: np.ndarray | None = None


def _h_and_dh(weight, u: np.ndarray, a: np.ndarray):
    ut = torch.tensor(u, dtype=torch.float64, requires_grad=True)
    at = torch.as_tensor(a, dtype=torch.float64)
    h = weight(ut, at)
    if h.shape != ut.shape:
        h = h.expand_as(ut)
    if not h.requires_grad:  # a weight that does not depend on u
        dh = None
    else:
        (dh,) = torch.autograd.grad(h.sum(), ut, allow_unused=True)
    h_np = h.detach().numpy()
    dh_np = np.zeros_like(u) if dh is None else dh.numpy()
    if not np.all(np.isfinite(h_np)):
        raise ValueError("weight returned NaN or inf on the support")
    return h_np, dh_np


def _h(weight, u, a):
    with torch.no_grad():
        h = weight(torch.tensor(np.asarray(u), dtype=torch.float64), torch.tensor(np.asarray(a), dtype=torch.float64))
    return np.broadcast_to(h.numpy(), np.shape(u)).copy()


@dataclass(frozen=True)
class _ArmEquation:
    r"""One arm's equation of :func:`_arm_ratios` in :math:`x = \log u`, for :func:`safeguarded_newton`.

    :math:`f(x) = h(e^x, A) - \kappa e^x - t` (decreasing on the arms that keep
    mass), :math:`f' = (\partial_u h - \kappa)e^x`, and the rounding level of
    ``f``, :math:`8\cdot10^{-16}(|h| + |\kappa e^x| + |t|)`. Flat (M,) arrays.
    """

    weight: object
    a: np.ndarray
    kappa: np.ndarray
    target: np.ndarray

    def __call__(self, x, idx):
        ue = np.exp(x)
        h, dh = _h_and_dh(self.weight, ue, self.a[idx])
        k, t = self.kappa[idx], self.target[idx]
        f = h - k * ue - t
        df = (dh - k) * ue
        return f, df, 8e-16 * (np.abs(h) + np.abs(k * ue) + np.abs(t))


def _arm_ratios(weight, mu, a, kappa, c, h0):
    """Per-arm root of h(u, A) - kappa u = c / mu on u in (0, 1/mu]; flat (M,) arrays.

    Returns ``u`` and ``du/dkappa``; a safeguarded Newton in ``log u`` (:class:`_ArmEquation`).
    """
    u = np.zeros_like(mu)
    dudk = np.zeros_like(mu)
    target = c / mu
    alive = h0 - kappa * U_ZERO > target  # psi(0+) > c/mu: the arm keeps mass
    umax = 1.0 / mu
    h_max = _h(weight, umax, a)
    capped = alive & (h_max - kappa * umax >= target)
    u[capped] = umax[capped]
    idx = np.flatnonzero(alive & ~capped)
    if idx.size:
        lo = np.full(idx.size, np.log(U_ZERO))
        hi = np.log(umax[idx])
        x0 = np.log(np.clip(umax[idx] * mu[idx], U_ZERO, None))  # start at u = 1 (pi = mu)
        a_i, k_i = a[idx], kappa[idx]
        eq = _ArmEquation(weight, a_i, k_i, target[idx])
        x = safeguarded_newton(eq, lo, hi, x0, xtol=_ARM_XTOL, sign_lo=1.0)
        ue = np.exp(x)
        _, dh = _h_and_dh(weight, ue, a_i)
        u[idx] = ue
        with np.errstate(divide="ignore", invalid="ignore"):
            d = ue / (dh - k_i)
        dudk[idx] = np.where(np.isfinite(d), d, 0.0)
    return u, dudk


def stationarity_residual(weight, mu, adv, pi) -> np.ndarray:
    r"""``max_z |g_z - c|/max(kappa_scale)`` over the support arms that keep mass, per bandit.

    With :math:`g_z = \mu_z h_z - \pi_z\sum_y\mu_y h_y` the logit velocity, a
    limit has :math:`g_z` equal to the common drift on arms with
    :math:`\pi_z > 0` and :math:`g_w` below it elsewhere. Returns the spread
    of :math:`g` over the arms with :math:`\pi_z > 10^{-12}`, divided by
    :math:`\max_z|\mu_z h_z|` (0 for an exact fixed point), plus any excess
    of a dropped arm's :math:`g_w` over the drift.
    """
    mu = np.asarray(mu, dtype=np.float64)
    pi = np.asarray(pi, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(mu > 0, pi / np.where(mu > 0, mu, 1.0), 1.0)
    u = np.maximum(u, U_ZERO)
    h = _h(weight, u, np.broadcast_to(adv, u.shape))
    # arms whose ratio sits below float64 range under a weight unbounded at u = 0 (the regression's
    # log u) cannot be represented: their true target is positive but < 1e-250 mu, where the true
    # mu h = mu kappa u is 0 to float precision; h at the floor is an artefact, so they count as 0
    a_b = np.broadcast_to(adv, u.shape)
    # a weight that overflows float64 on the support (e.g. e^{A/beta} at tiny beta) cannot certify a
    # point: such rows get an infinite residual (reported, not certified) instead of a NaN
    overflow = ~np.where(mu > 0, np.isfinite(h), True).all(-1)
    h = np.where(np.isfinite(h), h, 0.0)
    h_far = _h(weight, np.full_like(u, 1e-250), a_b)
    h_zero = _h(weight, np.full_like(u, U_ZERO), a_b)
    with np.errstate(invalid="ignore"):
        unrepresentable = (u <= 1e-250) & (np.abs(h_zero - h_far) > 1e-12 * (np.abs(h_zero) + np.abs(h_far)))
    mh = np.where((mu > 0) & ~unrepresentable, mu * h, 0.0)
    g = flow_field(pi, mh)
    keep = (pi > 1e-12) & (mu > 0)
    gk = np.where(keep, g, np.nan)
    with np.errstate(invalid="ignore"):
        c = np.nanmean(gk, -1, keepdims=True)
        spread = np.nanmax(np.abs(gk - c), -1)
        excess = np.nanmax(np.where((mu > 0) & ~keep & ~unrepresentable, g - c, np.nan), -1, initial=-np.inf)
    # scale: the size of mu h at the point, at u = 1 and at u = e^{+-1} (the last two keep the
    # scale honest when the weight vanishes at the target and at u = 1, e.g. the regression at A = 0)
    scale = np.abs(mh).max(-1)
    for u_ref in (1.0, np.e, 1.0 / np.e):
        h_ref = _h(weight, np.full_like(u, u_ref), np.broadcast_to(adv, u.shape))
        scale = np.maximum(scale, np.abs(np.where(mu > 0, mu * h_ref, 0.0)).max(-1))
    # a weight that vanishes at the target and at u = 1 (e.g. the regression with A = 0): absolute scale
    scale = np.where(scale > 0, scale, 1.0)
    with np.errstate(invalid="ignore"):
        res = np.maximum(np.nan_to_num(spread, nan=0.0), np.maximum(excess, 0.0)) / scale
    return np.where(overflow | ~np.isfinite(res), np.inf, res)


def _is_distribution(pi) -> np.ndarray:
    """Rows of ``pi`` that are distributions: finite, >= 0, summing to 1 within :data:`DIST_ATOL`."""
    pi = np.asarray(pi, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(pi).all(-1) & (pi >= 0).all(-1)
        return ok & (np.abs(np.where(np.isfinite(pi), pi, 0.0).sum(-1) - 1.0) <= DIST_ATOL)


#: Points per arm of the grid on which :func:`stationary_face` looks for the plateau around a target.
_FACE_GRID = 129


def _tied_rows(mu, adv) -> np.ndarray:
    """Rows with two support arms whose advantages agree to 1e-12 (relative): (N,) bool."""
    a = np.where(mu > 0, adv, np.nan)
    srt = np.sort(a, -1)
    d = np.diff(srt, axis=-1)
    scale = np.maximum(np.nanmax(np.abs(a), -1, keepdims=True), 1.0)
    with np.errstate(invalid="ignore"):
        return (d <= 1e-12 * scale).any(-1)


def _masked_rows(weight, mu, adv, pi) -> np.ndarray:
    """Rows where a support arm with a nonzero advantage carries no weight at ``pi`` (a clip or mask
    plateau: the weight is 0 there whatever the advantage, so its value does not single the arm out): (N,) bool."""
    ok = _is_distribution(pi)
    out = np.zeros(mu.shape[0], dtype=bool)
    if not ok.any():
        return out
    M, A, P = mu[ok], adv[ok], np.asarray(pi, dtype=np.float64)[ok]
    sup = M > 0
    u = torch.as_tensor(np.where(sup, np.maximum(P / np.where(sup, M, 1.0), U_ZERO), 1.0))
    h = weight(u, torch.as_tensor(A), torch.as_tensor(M)).expand_as(u).numpy()
    out[ok] = (sup & (A != 0) & (h == 0)).any(-1)
    return out


class _Plateau:
    r"""The level set :math:`|q_z(u) - \kappa| \le` ``qtol`` of :math:`q_z(u) = h(u, A_z)/u`, arm by arm.

    Rows ``M``, ``A``, ``U`` (n, K): behaviour, advantages and the ratios at
    the stationary point. Arm ``z`` is moved while the others stay at ``U``
    (so batch-dependent weights such as M2PO's mask are handled).
    :math:`\kappa = \sum_z\mu_z h_z` at ``U`` and
    :math:`\mathrm{qtol} = \mathrm{tol}\cdot\max(|\kappa|, \max_y|h(1, A_y)|)`;
    rows whose weight overflows get ``qtol = -1`` (no plateau is claimed).
    """

    def __init__(self, weight, M, A, U, tol):
        self.weight = weight
        self.U = U
        self.Mt = torch.as_tensor(M, dtype=torch.float64)
        self.At = torch.as_tensor(A, dtype=torch.float64)
        sup = M > 0
        with torch.no_grad():
            h_pt = np.broadcast_to(weight(torch.as_tensor(np.maximum(U, U_ZERO)), self.At, self.Mt).numpy(), U.shape)
            h_one = np.broadcast_to(weight(torch.ones_like(self.Mt), self.At, self.Mt).numpy(), U.shape)
        with np.errstate(all="ignore"):
            kappa = np.where(sup, M * h_pt, 0.0).sum(-1)
            qtol = tol * np.maximum(np.abs(kappa), np.abs(np.where(sup, h_one, 0.0)).max(-1))
        bad = ~(np.isfinite(kappa) & np.isfinite(qtol))  # overflowing weights: no face is claimed
        self.kappa, self.qtol = np.where(bad, 0.0, kappa), np.where(bad, -1.0, qtol)

    def q(self, u_arm):
        """q_z(u) = h/u with arm z at u_arm[:, z, j] and the others at U: (n, K, J) (NaN where not finite)."""
        n, K = self.U.shape
        arm = np.arange(K)
        J = u_arm.shape[-1]
        full = np.broadcast_to(np.maximum(self.U, U_ZERO)[:, None, None, :], (n, K, J, K)).copy()
        full[:, arm, :, arm] = u_arm.transpose(1, 0, 2)
        with torch.no_grad():
            h = self.weight(torch.as_tensor(full), self.At[:, None, None, :], self.Mt[:, None, None, :])
        h = np.broadcast_to(h.numpy(), full.shape)[:, arm, :, arm].transpose(1, 0, 2)
        with np.errstate(all="ignore"):  # an overflowing weight (e^{A/beta}) has no plateau: NaN, never flat
            out = h / u_arm
        return np.where(np.isfinite(out), out, np.nan)

    def on(self, u_arm):
        """Whether arm z at u_arm[:, z, j] lies on the plateau: (n, K, J) bool."""
        return np.abs(self.q(u_arm) - self.kappa[:, None, None]) <= self.qtol[:, None, None]


def _face_start(plateau, U, umax, sup):
    """The grid of ``_FACE_GRID`` points per arm over ``(0, 1/mu]`` and where each arm's plateau run starts.

    Returns ``grid`` (n, K, J), its plateau mask ``flat`` (n, K, J), the start
    index ``j0`` (n, K) (each arm's grid neighbour of its own ``u``; an arm at
    a plateau's edge starts on the plateau's side) and ``start`` (n, K): the
    arm is on the plateau at its own ``u`` and at ``j0``.
    """
    frac = np.linspace(0.0, 1.0, _FACE_GRID)
    frac[0] = 1e-9  # (0, 1/mu]: q is h/u
    grid = frac[None, None, :] * umax[..., None]  # (n, K, J)
    flat = plateau.on(grid)
    # each arm starts from its own u (its grid neighbour), arms with pi = 0 from u -> 0
    pos = U / umax * (_FACE_GRID - 1)
    j_dn = np.clip(np.floor(pos).astype(int), 0, _FACE_GRID - 1)
    j_up = np.clip(np.ceil(pos).astype(int), 0, _FACE_GRID - 1)
    flat_dn = np.take_along_axis(flat, j_dn[..., None], -1)[..., 0]
    j0 = np.where(flat_dn, j_dn, j_up)  # an arm at a plateau's edge starts on the plateau's side
    own = plateau.on(np.maximum(U, 1e-9 * umax)[..., None])[..., 0]
    start = sup & own & np.take_along_axis(flat, j0[..., None], -1)[..., 0]
    return grid, flat, j0, start


def _plateau_end(plateau, grid, flat, j0, start, U, direction):
    """The end of each arm's plateau run from grid index ``j0`` in ``direction`` (-1: down, +1: up), (n, K).

    Walks the grid while it stays flat, then bisects 50 times between the
    last plateau point and the first point off it (a boundary of a level set,
    located by a yes/no test: the end kept is the one on the plateau). A run
    down to the first grid point reaches ``u = 0``. Arms not on a plateau
    (``~start``) keep ``U``.
    """
    last = j0.copy()
    alive = start.copy()
    for k in range(1, _FACE_GRID):
        jc = np.clip(j0 + direction * k, 0, _FACE_GRID - 1)
        ok = alive & (jc == j0 + direction * k) & np.take_along_axis(flat, jc[..., None], -1)[..., 0]
        last = np.where(ok, jc, last)
        alive = ok
        if not alive.any():
            break
    nxt = np.clip(last + direction, 0, _FACE_GRID - 1)
    edge = start & (nxt != last)
    u_in = np.take_along_axis(grid, last[..., None], -1)[..., 0]
    u_out = np.take_along_axis(grid, nxt[..., None], -1)[..., 0]
    for _ in range(50):  # bisection between the last plateau point and the first point off it
        mid = 0.5 * (u_in + u_out)
        fm = plateau.on(mid[..., None])[..., 0]
        u_in = np.where(edge & fm, mid, u_in)
        u_out = np.where(edge & ~fm, mid, u_out)
    if direction < 0:  # a plateau that reaches the first grid point reaches u = 0
        u_in = np.where(start & (last == 0), 0.0, u_in)
    return np.where(start, u_in, U)


def _face_ranges(M, P, U, sup, start, ends):
    r"""Per-arm range of :math:`\pi` over :math:`\{u: u_z\in[l_z, h_z], \sum\mu u = 1\}`: ``(pmin, pmax)``, (n, K).

    ``ends`` are the plateau ends below and above ``U``; an arm with
    :math:`\pi_z = 0` joins the face only if its plateau reaches ``u = 0``.
    """
    lo_u, hi_u = np.minimum(ends[0], U), np.maximum(ends[1], U)
    # an arm with pi = 0 joins the face only if its plateau reaches u = 0
    lo_u = np.where(sup & (P <= 0) & (lo_u > 0), 0.0, lo_u)
    hi_u = np.where(sup & (P <= 0) & ~(start & (ends[0] <= 0)), 0.0, hi_u)
    lo_p, hi_p = M * lo_u, np.minimum(M * hi_u, 1.0)
    tot_lo, tot_hi = lo_p.sum(-1, keepdims=True), hi_p.sum(-1, keepdims=True)
    pmin = np.minimum(np.maximum(lo_p, 1.0 - (tot_hi - hi_p)), P)
    pmax = np.maximum(np.minimum(hi_p, 1.0 - (tot_lo - lo_p)), P)
    return pmin, pmax


def stationary_face(weight, mu, adv, pi, *, tol: float = 1e-9):
    r"""The set of stationary points through a stationary ``pi``, as per-arm ranges.

    At a stationary point with no drift (every weight of the zoo that can have
    a plateau vanishes at :math:`u = 0`) each support arm with
    :math:`\pi_z > 0` satisfies :math:`q_z(u_z) = \kappa` with
    :math:`q_z(u) = h(u, A_z)/u`, and :math:`\sum_z\mu_zu_z = 1`;
    :math:`\kappa = E_\mu[h]` then holds by itself. Where :math:`q_z` is
    constant on an interval (a plateau: :math:`h = uA` below a clip, as in PG,
    CISPO, TIS and M2PO's kept arms), an arm whose plateau value equals
    :math:`\kappa` can sit anywhere on it, and so can every arm tied with it
    (an arm with :math:`\pi_z = 0` too, when its plateau reaches
    :math:`u = 0`): the fixed points form the polytope
    :math:`\{u: u_z\in[l_z, h_z], \sum\mu u = 1\}`. Each arm's interval is the
    run of :math:`\{u\in(0, 1/\mu_z]: |q_z(u) - \kappa| \le
    \mathrm{tol}\cdot\max(|\kappa|, \max_y|h(1, A_y)|)\}` around :math:`u_z`,
    found on a grid of ``_FACE_GRID`` points and refined by bisection at each
    end, with the other arms held at ``pi`` (so batch-dependent weights such as
    M2PO's mask are handled). Only rows with tied advantages, or with an arm
    that a clip or mask leaves without weight, are examined: a plateau value
    depends on the arm only through :math:`A_z`, so two free arms must tie,
    except on a zero-weight plateau, where every arm's value is 0 (a mask
    window narrower than an integrator's step is crossed in one step, and
    the point it lands on is one of that set, not the flow's).

    Parameters
    ----------
    weight : callable
        ``weight(u, adv, mu) -> h`` in torch (``mu`` broadcast against ``u``).
    mu, adv, pi : ndarray, shape (N, K)

    Returns
    -------
    set_valued : ndarray of bool, shape (N,)
        Some :math:`\pi_z` ranges over more than ``1e-9``.
    pi_min, pi_max : ndarray, shape (N, K)
    """
    mu = np.asarray(mu, dtype=np.float64)
    N, _ = mu.shape
    pi_min = np.array(pi, dtype=np.float64, copy=True)
    pi_max = pi_min.copy()
    set_valued = np.zeros(N, dtype=bool)
    rows = np.flatnonzero((_tied_rows(mu, adv) | _masked_rows(weight, mu, adv, pi)) & _is_distribution(pi))
    if rows.size == 0:
        return set_valued, pi_min, pi_max
    M, A, P = mu[rows], adv[rows], pi_min[rows]
    sup = M > 0
    U = np.where(sup, P / np.where(sup, M, 1.0), 0.0)
    plateau = _Plateau(weight, M, A, U, tol)
    umax = np.where(sup, 1.0 / np.where(sup, M, 1.0), 1.0)
    grid, flat, j0, start = _face_start(plateau, U, umax, sup)
    ends = [_plateau_end(plateau, grid, flat, j0, start, U, direction) for direction in (-1, 1)]
    pmin, pmax = _face_ranges(M, P, U, sup, start, ends)
    pi_min[rows], pi_max[rows] = pmin, pmax
    set_valued[rows] = (pmax - pmin > 1e-9).any(-1)
    return set_valued, pi_min, pi_max


@dataclass(frozen=True)
class _KKTSystem:
    r"""The per-bandit normalization of :func:`solve_kkt` on flat rows ``M``, ``A`` (N, K).

    ``sup`` is ``M > 0`` and ``h0`` is :math:`h(0^+, A)` on the support (0 off it).
    """

    weight: object
    M: np.ndarray
    A: np.ndarray
    sup: np.ndarray
    h0: np.ndarray
    kappa_min: float

    def mass(self, y, rows, c_rows):
        r""":math:`F = \sum\mu u(\kappa) - 1` and :math:`dF/dy` on ``rows`` at :math:`\kappa = \kappa_{min} + e^y`, and ``u`` (n, K).

        ``c_rows`` is each row's common drift ``c``; the arms' ratios solve
        :math:`h(u, A) - \kappa u = c/\mu` (:func:`_arm_ratios`).
        """
        kappa = self.kappa_min + np.exp(y)
        m, a, hz = self.M[rows], self.A[rows], self.h0[rows]
        s = self.sup[rows]
        mm = m[s]
        kk = np.broadcast_to(kappa[:, None], m.shape)[s]
        cc = np.broadcast_to(c_rows[:, None], m.shape)[s]
        u_s, d_s = _arm_ratios(self.weight, mm, a[s], kk, cc, hz[s])
        u = np.zeros_like(m)
        d = np.zeros_like(m)
        u[s], d[s] = u_s, d_s
        F = (m * u).sum(-1) - 1.0
        dF = np.exp(y) * (m * d).sum(-1)
        return F, dF, u


def _drift_weights(weight, M, A, sup, h0):
    r"""The weights :math:`h(0^+, A)` that enter the drift, and the arms whose weight is unbounded at ``u = 0``.

    A weight that vanishes at ``u = 0`` (a ratio times something) contributes
    no drift: its float64 dust (``U_ZERO * A ~ 1e-308``) is kept out of ``c``.
    A weight unbounded at ``u = 0`` (the regression's ``log u``) never lets an
    arm leave: an arm that underflows there (``u < 1e-308``) is a float64
    artefact, not a face of the KKT system, so it gives no drift either.
    Returns ``(h0_drift, unbounded)``, both (N, K).
    """
    h0_drift = np.where(np.abs(h0) <= 1e-250, 0.0, h0)
    h0_far = np.where(sup, _h(weight, np.full_like(M, 1e-250), A), 0.0)
    unbounded = np.abs(h0 - h0_far) > 1e-12 * (np.abs(h0) + np.abs(h0_far))
    return np.where(unbounded, 0.0, h0_drift), unbounded


def _sorted_drift(M, sup, h0_drift):
    r"""The drift at which the support iteration starts, from a sort (as a projection onto the simplex).

    Arms leave iff :math:`m = \mu h(0^+) \le c` and :math:`c|S| = -\sum_{left} m`, so
    ``S`` is the top ``k`` by ``m`` with the largest ``k`` such that
    :math:`m_{(k)} > c_k = (\sum_{top\ k} m - \sum m)/k`. Arms whose :math:`h(0^+)`
    is 0 leave or stay by :math:`\kappa`, which the per-arm solve decides; the
    support iteration settles them. Returns ``c``, shape (N,).
    """
    K = M.shape[-1]
    m = np.where(sup, M * h0_drift, -np.inf)
    srt = -np.sort(-m, axis=-1)
    fin = np.isfinite(srt)
    csum = np.cumsum(np.where(fin, srt, 0.0), -1)
    k = np.arange(1, K + 1)
    c_k = (csum - csum[:, -1:]) / k
    valid = fin & (srt > c_k)
    kstar = np.where(valid.any(-1), K - 1 - np.argmax(valid[:, ::-1], axis=-1), 0)
    return np.where(valid.any(-1), np.take_along_axis(c_k, kstar[:, None], -1)[:, 0], 0.0)


def _kappa_brackets(system, rows, c_rows, y0):
    r"""Brackets in :math:`y = \log(\kappa - \kappa_{min})` around ``y0`` with :math:`F(lo) \ge 0 \ge F(hi)`.

    Starts at ``y0 -+ 40`` and widens each end by 40 (up to 30 times) until the
    sign holds within :data:`_F_TOL`. Returns ``(lo, hi, valid)``; rows not
    ``valid`` have no solution at :math:`\kappa > \kappa_{min}`.
    """
    lo = y0 - 40.0
    hi = y0 + 40.0
    F_lo, _, _ = system.mass(lo, rows, c_rows)
    F_hi, _, _ = system.mass(hi, rows, c_rows)
    for _ in range(30):  # widen brackets
        need_lo = F_lo < -_F_TOL
        need_hi = F_hi > _F_TOL
        if not (need_lo.any() or need_hi.any()):
            break
        lo = np.where(need_lo, lo - 40.0, lo)
        hi = np.where(need_hi, hi + 40.0, hi)
        F_lo, _, _ = system.mass(lo, rows, c_rows)
        F_hi, _, _ = system.mass(hi, rows, c_rows)
    valid = (F_lo >= -_F_TOL) & (F_hi <= _F_TOL)
    return lo, hi, valid


def _solve_kappa(system, rows, c_rows, y0, lo, hi):
    r"""Bracketed Newton in :math:`y = \log(\kappa - \kappa_{min})` on :math:`F(y) = 0` (``F`` decreasing).

    Stops where :math:`|F| \le 10^{-15}`. Returns ``(y, lo, hi)``: the point and
    its final bracket (:func:`_kappa_ratios` interpolates across a jump of ``F``).
    """

    def fun(y, idx):
        F, dF, _ = system.mass(y, rows[idx], c_rows[idx])
        return F, dF, 1e-15

    return safeguarded_newton(fun, lo, hi, y0, xtol=_KAPPA_XTOL, maxiter=300, sign_lo=1.0, bracket=True)


def _kappa_ratios(system, rows, c_rows, y, lo, hi):
    r"""The ratios ``u`` (n, K) at the solved :math:`\kappa`: at ``y`` where :math:`|F(y)| \le 10^{-13}`, else
    interpolated linearly between the bracket ends, :math:`u = u_{hi} + \lambda(u_{lo} - u_{hi})` with
    :math:`\lambda = -F_{hi}/(F_{lo} - F_{hi})` (where :math:`\sum\mu u` jumps: a point of the fixed-point face)."""
    F_l, _, u_l = system.mass(lo, rows, c_rows)
    F_h, _, u_h = system.mass(hi, rows, c_rows)
    F_x, _, u_x = system.mass(y, rows, c_rows)
    gap = F_l - F_h
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(gap > 0, (0.0 - F_h) / gap, 0.0)
    use_x = np.abs(F_x) <= 1e-13
    return np.where(use_x[:, None], u_x, u_h + lam[:, None] * (u_l - u_h))


def _drift_update(system, h0_drift, pi_rows, rows, c_rows, valid, scale_rows):
    r"""The drift the support at ``pi_rows`` implies, :math:`c = -\sum_{left}\mu h(0^+)/|S|`, and the rows
    (``valid`` ones) whose drift moved beyond rounding; ``(c_new, moved)``, shape (n,)."""
    M, sup = system.M, system.sup
    keep = (pi_rows > 0) & sup[rows]
    n_keep = keep.sum(-1)
    left = np.where(sup[rows] & ~keep, M[rows] * h0_drift[rows], 0.0).sum(-1)
    c_new = np.where(n_keep > 0, -left / np.maximum(n_keep, 1), 0.0)
    moved = valid & ~np.isclose(c_new, c_rows, rtol=1e-13, atol=0.0) & (np.abs(c_new - c_rows) > 1e-15 * scale_rows)
    return c_new, moved


def _support_iteration(system, h0_drift, c, scale, max_iter):
    r"""Outer fixed point on the support: solve :math:`\kappa` at the current drifts, update the drifts, repeat.

    ``c`` (N,) is updated in place. Returns ``(pi, kappa, ok_rows)``: ``pi``
    not yet renormalized, NaN (and ``kappa`` NaN) on rows with no solution at
    :math:`\kappa > \kappa_{min}`.
    """
    M = system.M
    N = M.shape[0]
    pi = np.full_like(M, np.nan)
    kap = np.full(N, np.nan)
    ok_rows = np.zeros(N, dtype=bool)
    pending = np.arange(N)  # rows whose support / drift is not settled yet
    for _ in range(max_iter):
        rows = pending
        if rows.size == 0:
            break
        y0 = np.log(scale[rows])
        lo, hi, valid = _kappa_brackets(system, rows, c[rows], y0)
        act = rows[valid]
        if act.size:
            y, lo_a, hi_a = _solve_kappa(system, act, c[act], y0[valid], lo[valid], hi[valid])
            pi[act] = M[act] * _kappa_ratios(system, act, c[act], y, lo_a, hi_a)
            kap[act] = system.kappa_min + np.exp(y)
        ok_rows[rows] = valid
        # support update: arms that left, and the drift they imply; rows whose drift moved go again
        c_new, moved = _drift_update(system, h0_drift, pi[rows], rows, c[rows], valid, scale[rows])
        c[rows] = np.where(valid, c_new, c[rows])
        pending = rows[moved]
    return pi, kap, ok_rows


def _kkt_result(weight, M, A, pi, kap, drift, ok_rows, unbounded, shape) -> InducedTarget:
    r"""Renormalize ``pi``, recompute :math:`\kappa = E_\mu[h]` at the returned point (the bracket
    interpolation moves it) and the stationarity residual, and reshape to the batch ``shape``."""
    N = M.shape[0]
    pi = np.where(ok_rows[:, None], pi / np.where(ok_rows, pi.sum(-1), 1.0)[:, None], np.nan)
    if ok_rows.any():
        Mo, Po = M[ok_rows], pi[ok_rows]
        uo = np.maximum(np.where(Mo > 0, Po / np.where(Mo > 0, Mo, 1.0), 1.0), U_ZERO)
        art = unbounded[ok_rows] & (uo <= 1e-250)  # float64 artefacts (see stationarity_residual)
        kap[ok_rows] = np.where((Mo > 0) & ~art, Mo * _h(weight, uo, A[ok_rows]), 0.0).sum(-1)
    res = np.full(N, np.inf)
    if ok_rows.any():
        res[ok_rows] = stationarity_residual(weight, M[ok_rows], A[ok_rows], pi[ok_rows])
    return InducedTarget(
        pi=pi.reshape(shape),
        method="kkt",
        converged=(ok_rows & (res < 1e-8)).reshape(shape[:-1]),
        residual=res.reshape(shape[:-1]),
        kappa=kap.reshape(shape[:-1]),
        drift=drift.reshape(shape[:-1]),
    )


@torch_single_thread()
def solve_kkt(weight, mu, adv, *, kappa_min: float = 0.0, max_support_iter: int = 20):
    r"""Solve the boundary-aware fixed-point system of the module docstring.

    Parameters
    ----------
    weight : callable
        ``weight(u, adv) -> h`` in torch, elementwise, differentiable in ``u``.
    mu : array_like, shape (..., K)
    adv : array_like, shape (..., K)
    kappa_min : float
        :math:`h(u, A) - \kappa u` must be non-increasing in ``u`` for every
        :math:`\kappa > \kappa_{min}` (0 for weights non-increasing in ``u``;
        :math:`-\beta` for the k3 penalty).

    Returns
    -------
    InducedTarget
        ``converged`` is False on rows with no solution at
        :math:`\kappa > \kappa_{min}` (their ``pi`` is NaN there, and
        :func:`induced_target` hands them to the flow).
    """
    mu = check_distribution(mu)
    adv = as_float_array(adv, "adv")
    mu, adv = broadcast_arms("mu", mu, "adv", adv)
    shape = mu.shape
    K = shape[-1]
    M = mu.reshape(-1, K)
    A = adv.reshape(-1, K)
    sup = M > 0
    h0 = np.where(sup, _h(weight, np.full_like(M, U_ZERO), A), 0.0)
    h1 = np.where(sup, _h(weight, np.ones_like(M), A), 0.0)
    scale = np.maximum(np.abs((M * h1).sum(-1)), np.abs(M * h1).max(-1))
    scale = np.maximum(scale, 1e-12)
    system = _KKTSystem(weight, M, A, sup, h0, kappa_min)
    h0_drift, unbounded = _drift_weights(weight, M, A, sup, h0)
    c = _sorted_drift(M, sup, h0_drift)
    pi, kap, ok_rows = _support_iteration(system, h0_drift, c, scale, max_support_iter)
    return _kkt_result(weight, M, A, pi, kap, c, ok_rows, unbounded, shape)


def _flow(obj, mu, adv, flow_kwargs):
    from .flow import logit_flow

    mu_t = torch.as_tensor(mu, dtype=torch.float64)
    res = logit_flow(mu, adv, weight=lambda u, a: obj.weight(u, a, mu_t), **(flow_kwargs or {}))
    return res


@torch_single_thread()
def euler_flow(weight, mu, adv, *, lr: float = 0.5, max_steps: int = 20_000, tol: float = 1e-8):
    r"""Explicit Euler on the logit flow, for fields with plateaus (PPO-type clipping).

    :math:`\theta \leftarrow \theta + \alpha_t\,g/\bar g`, with
    :math:`g_z = \mu_z h_z - \pi_z\sum_y\mu_yh_y`, :math:`\bar g` the
    initial speed and a harmonically decaying step
    :math:`\alpha_t = \mathrm{lr}/(1 + t/100)` (the steps still sum to
    infinity, so the iterate travels as far as the flow; the chatter across a
    clip boundary shrinks like :math:`\alpha_t`). The stiff integrators of
    ``theory.flow`` assume a smooth field; a clipped surrogate's field jumps
    to zero on its plateaus. A bandit is converged when
    :math:`\max_z|\pi_z(t) - \pi_z(t - 500)| \le` ``tol``; the limit
    then lies on the optimal face of the linear program
    (:func:`ppo_clip_target_set`) up to the last step size.
    Vectorized over bandits (torch, float64).
    """
    mu = check_distribution(mu)
    adv = as_float_array(adv, "adv")
    mu, adv = broadcast_arms("mu", mu, "adv", adv)
    mu_t = torch.as_tensor(mu, dtype=torch.float64)
    a_t = torch.as_tensor(adv, dtype=torch.float64)
    sup = mu_t > 0
    mu_safe, ones, zeros = torch.where(sup, mu_t, 1.0), torch.ones_like(mu_t), torch.zeros_like(mu_t)
    full = bool(sup.all())  # every arm on the support: the selections below select nothing
    theta = torch.where(sup, torch.log(mu_safe), torch.full_like(mu_t, -torch.inf))
    g0 = None
    pi_prev = torch.softmax(theta, -1)
    move = torch.full(mu.shape[:-1], np.inf, dtype=torch.float64)
    with torch.no_grad():
        for t in range(max_steps):
            pi = torch.softmax(theta, -1)
            if t % 500 == 0 and t > 0:
                move = (pi - pi_prev).abs().amax(-1)
                pi_prev = pi
                if bool((move <= tol).all()):
                    break
            u = (pi / mu_safe if full else torch.where(sup, pi / mu_safe, ones)).clamp_min(U_ZERO)
            h = weight(u, a_t).expand_as(u)
            g = flow_field(pi, mu_t * h if full else torch.where(sup, mu_t * h, zeros))
            if g0 is None:
                g0 = g.abs().amax(-1, keepdim=True).clamp_min(1e-300)
            step = theta + (lr / (1.0 + t / 100.0)) * g / g0
            theta = step if full else torch.where(sup, step, theta)
    pi = torch.softmax(theta, -1).numpy()
    return InducedTarget(pi=pi, method="euler", converged=(move <= tol).numpy(), residual=move.numpy())


def induced_target(obj, mu, r, *, method: str = "auto", flow_kwargs=None) -> InducedTarget:
    """Induced target of objective ``obj`` on bandits ``(mu, r)`` (population advantages).

    Parameters
    ----------
    obj : theory.objectives.Objective
    mu, r : array_like, shape (..., K)
    method : {"auto", "closed-form", "kkt", "flow", "euler"}
        ``auto``: the closed form where the objective has one, the KKT solver
        for ``target_kind == 'kkt'``, explicit Euler (:func:`euler_flow`)
        for set-valued clipped targets and non-smooth numerical ones, the flow
        otherwise; rows the first route cannot answer (a collapse) go to the
        flow.
    flow_kwargs : dict, optional
        Passed to :func:`theory.flow.logit_flow`.

    Returns
    -------
    InducedTarget
        Every route passes the same certificate (:func:`certify`): a row is
        ``converged`` only if its ``pi`` is a distribution and stationary, and
        on a set-valued row only if ``pi`` is the flow's point by a derived rule
        (the objective's ``face_point``; for PPO-type clipping, a point of the
        LP's optimal face).
    """
    from .objectives import Objective

    if not isinstance(obj, Objective):
        hint = f"make_objective({obj!r})" if isinstance(obj, str) else "theory.objectives.make_objective(name)"
        raise TypeError(f"obj must be an Objective, got {type(obj).__name__}; build one with {hint}")
    if method not in ("auto", "closed-form", "kkt", "flow", "euler"):
        raise ValueError(f"method must be auto, closed-form, kkt, flow or euler, got {method!r}")
    mu = check_distribution(mu)
    r = as_float_array(r, "r")
    mu, r = broadcast_arms("mu", mu, "r", r)
    adv = obj.population_advantage(mu, r)
    mu_t = torch.as_tensor(mu, dtype=torch.float64)

    def wfun(u, a):
        return obj.weight(u, a, mu_t if u.shape == mu_t.shape else None)

    if method == "auto":
        if obj.target_kind in ("lambert", "gibbs", "linear", "vertex") and obj.spec.closed_form is not None:
            method = "closed-form"
        elif obj.target_kind == "kkt":
            method = "kkt"
        elif obj.target_kind in ("lp", "numerical"):
            method = "euler"
        else:
            method = "flow"
    kap = drift = None
    if method == "closed-form":
        pi = obj.closed_form_target(mu, adv)
        if pi is None:
            raise ValueError(f"objective {obj.name!r} has no closed-form target; use method='kkt' or 'flow'")
        converged = np.ones(mu.shape[:-1], dtype=bool)
        used = "closed-form"
    elif method == "kkt":
        sol = solve_kkt(wfun, mu, adv, kappa_min=obj.kappa_min)
        pi, kap, drift, used = sol.pi, sol.kappa, sol.drift, "kkt"
        converged = np.where(np.isfinite(sol.pi).all(-1), sol.converged, True)
    elif method == "euler":
        eu = euler_flow(wfun, mu, adv)
        return certify(obj, mu, adv, eu.pi, "euler", eu.converged, movement=eu.residual)
    else:
        fr = _flow(obj, mu, adv, flow_kwargs)
        return certify(obj, mu, adv, fr.pi, "flow", fr.converged)
    bad = (~np.isfinite(pi).all(-1)).reshape(-1)
    if bad.any():  # rows with no interior solution (a collapse): the flow decides
        mu2, adv2 = mu.reshape(-1, mu.shape[-1]), adv.reshape(-1, mu.shape[-1])
        fr = _flow(obj, mu2[bad], adv2[bad], flow_kwargs)
        pi = pi.reshape(-1, mu.shape[-1]).copy()
        pi[bad] = fr.pi
        pi = pi.reshape(mu.shape)
        converged = converged.reshape(-1).copy()
        converged[bad] = fr.converged
        converged = converged.reshape(mu.shape[:-1])
        used = used + "+flow"
    return certify(obj, mu, adv, pi, used, converged, kappa=kap, drift=drift)


def certify(obj, mu, adv, pi, method, converged, *, movement=None, kappa=None, drift=None) -> InducedTarget:
    r"""The one certificate every route of :func:`induced_target` passes.

    A row is reported ``converged`` only if (i) the route itself converged,
    (ii) ``pi`` is a distribution (finite, >= 0, summing to 1 within
    :data:`DIST_ATOL`), (iii) it is stationary: :func:`stationarity_residual`
    below :data:`RESIDUAL_TOL` (for the Euler route, whose clipped fields jump
    at the clip, the iterates stopped moving, and for PPO-type clipping
    ``pi`` lies on the optimal face of :func:`ppo_clip_target_set`), and
    (iv) where the stationary points form a set (:func:`stationary_face`, or
    the LP face), ``pi`` is the point the flow from :math:`\mu` reaches by the
    objective's derived rule (``face_point``); without such a rule the set is
    reported and the point is not certified.
    """
    shape = mu.shape
    K = shape[-1]
    M, A = mu.reshape(-1, K), adv.reshape(-1, K)
    P = np.array(pi, dtype=np.float64).reshape(-1, K)
    conv = np.asarray(converged, dtype=bool).reshape(-1).copy()
    mu_t = torch.as_tensor(M, dtype=torch.float64)

    def wfun(u, a):
        return obj.weight(u, a, mu_t if u.shape == mu_t.shape else None)

    dist = _is_distribution(P)
    if obj.lp_clip:
        set_valued, pmin, pmax, on_face = _lp_faces(obj, M, A, P)
        conv &= on_face
    else:
        set_valued, pmin, pmax = stationary_face(lambda u, a, m: obj.weight(u, a, m), M, A, P)
        if set_valued.any():
            fp = obj.face_point(M[set_valued], A[set_valued])
            if fp is None:
                conv[set_valued] = False
            else:
                ok = _is_distribution(fp) & ((fp >= pmin[set_valued] - 1e-9) & (fp <= pmax[set_valued] + 1e-9)).all(-1)
                rows = np.flatnonzero(set_valued)
                P[rows[ok]] = fp[ok]
                conv[rows] &= ok
                dist = _is_distribution(P)
    res = np.full(P.shape[0], np.inf)
    if dist.any():
        res[dist] = stationarity_residual(wfun, M[dist], A[dist], P[dist])
    if movement is None:
        conv &= dist & (res <= RESIDUAL_TOL)
        residual = res
    else:
        conv &= dist
        residual = np.asarray(movement, dtype=np.float64).reshape(-1)
    return InducedTarget(
        pi=P.reshape(shape),
        method=method,
        converged=conv.reshape(shape[:-1]),
        residual=residual.reshape(shape[:-1]),
        kappa=kappa,
        drift=drift,
        set_valued=set_valued.reshape(shape[:-1]),
        pi_min=pmin.reshape(shape),
        pi_max=pmax.reshape(shape),
    )


def _lp_faces(obj, M, A, P):
    """PPO-type clipping: the LP face per row, and whether ``P`` lies on it (surrogate within 1e-7)."""
    n, K = M.shape
    set_valued = np.zeros(n, dtype=bool)
    on_face = np.zeros(n, dtype=bool)
    pmin = np.full_like(P, np.nan)
    pmax = np.full_like(P, np.nan)
    p = obj.params
    for i in range(n):
        value, lo, hi = ppo_clip_target_set(M[i], A[i], p["eps_low"], p.get("eps_high"))
        pmin[i], pmax[i] = lo, hi
        set_valued[i] = bool((hi - lo > 1e-9).any())
        if _is_distribution(P[i]):
            J = population_surrogate(obj, P[i][None], M[i], A[i])[0]
            on_face[i] = J >= value - 1e-7 * max(1.0, abs(value))
    return set_valued, pmin, pmax, on_face


def population_surrogate(obj, pi, mu, adv) -> np.ndarray:
    r"""The population objective :math:`J(\pi) = -\sum_y \mu_y\,\ell_y` of ``obj``'s own loss on one-token
    sequences, for policies ``pi`` (N, K) on one bandit ``(mu, adv)`` (K,); (N,)."""
    sup = mu > 0
    logp = torch.log(torch.as_tensor(pi, dtype=torch.float64).clamp_min(1e-300))[..., None]  # (N, K, T=1)
    logmu = torch.as_tensor(np.where(sup, np.log(np.where(sup, mu, 1.0)), -1000.0)).expand_as(logp[..., 0])[..., None]
    a = torch.as_tensor(adv, dtype=torch.float64).expand_as(logp[..., 0])
    mask = torch.as_tensor(sup).expand_as(logp[..., 0])[..., None]
    with torch.no_grad():
        loss = obj.loss(logp, logmu, a, mask)[..., 0]  # (N, K)
    return -(torch.as_tensor(mu) * loss).sum(-1).numpy()


def ppo_clip_target_set(mu, adv, eps_low=0.2, eps_high=None):
    r"""The set-valued target of PPO-clip on one bandit, by linear programming.

    The population surrogate :math:`J(u) = \sum_y\mu_y\min(u_yA_y,\,
    \mathrm{clip}(u_y, 1-\epsilon_l, 1+\epsilon_h)A_y)` is concave and
    piecewise linear in :math:`u = \pi/\mu`; its maximizers over the simplex
    :math:`\{u\ge0, \sum\mu u = 1\}` form a face. With the epigraph variables
    :math:`t_y \le A_y u_y`, :math:`t_y \le A_y\,\mathrm{clip}` (two linear
    pieces per arm) this is an LP; the face is reported by the optimal value
    and, per arm, the least and greatest ``pi_y`` on it (2K more LPs).

    Returns
    -------
    value : float
        :math:`\max J`.
    pi_min, pi_max : ndarray, shape (K,)
        Range of each arm's probability over the optimal face.
    """
    eps_high = eps_low if eps_high is None else eps_high
    if not (eps_low > 0 and eps_high > 0):
        raise ValueError(f"eps_low and eps_high must be > 0, got {eps_low!r}, {eps_high!r}")
    mu = check_distribution(mu)
    adv = as_float_array(adv, "adv")
    if mu.ndim != 1 or adv.shape != mu.shape:
        raise ValueError("ppo_clip_target_set takes one bandit: mu and adv of shape (K,)")
    K = mu.size
    lo, hi = 1.0 - eps_low, 1.0 + eps_high
    # variables x = (u_1..u_K, t_1..t_K); maximize sum mu t
    # per arm: piece 1: t <= A u; piece 2: t <= A * clip(u) is min/max of linear pieces:
    #   A >= 0: A*clip(u) with the min => t <= A u and t <= A hi  (u >= lo side never binds the min)
    #   A <  0: min(uA, clip(u)A) = A max(u, lo) => t <= A u and t <= A lo
    A_ub, b_ub = [], []
    for y in range(K):
        row = np.zeros(2 * K)
        row[K + y] = 1.0
        row[y] = -adv[y]
        A_ub.append(row)
        b_ub.append(0.0)
        row = np.zeros(2 * K)
        row[K + y] = 1.0
        A_ub.append(row)
        b_ub.append(adv[y] * (hi if adv[y] >= 0 else lo))
    A_eq = np.concatenate([mu, np.zeros(K)])[None]
    bounds = [(0, None if m > 0 else 0) for m in mu] + [(None, None)] * K
    c = np.concatenate([np.zeros(K), -mu])
    res = scipy.optimize.linprog(c, A_ub=np.array(A_ub), b_ub=b_ub, A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs")
    if not res.success:  # pragma: no cover - the LP is always feasible and bounded
        raise RuntimeError(f"PPO LP failed: {res.message}")
    value = -res.fun
    # optimal face: add sum mu t >= value - tol
    tol = 1e-10 * max(1.0, abs(value))
    A_face = np.vstack([np.array(A_ub), -np.concatenate([np.zeros(K), mu])[None]])
    b_face = np.concatenate([b_ub, [-(value - tol)]])
    pi_min = np.zeros(K)
    pi_max = np.zeros(K)
    for y in range(K):
        if mu[y] == 0:
            continue
        obj = np.zeros(2 * K)
        obj[y] = mu[y]
        r1 = scipy.optimize.linprog(obj, A_ub=A_face, b_ub=b_face, A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs")
        r2 = scipy.optimize.linprog(-obj, A_ub=A_face, b_ub=b_face, A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs")
        pi_min[y], pi_max[y] = r1.fun, -r2.fun
    return value, pi_min, pi_max
