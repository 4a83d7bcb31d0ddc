r"""The exact target of the ratio-free regression objective, in every regime.

The objective (OAPL, A*-PO, Kimi OPMD / PMD-mean; docs/theory.md section 3) is

.. math::

    L(\pi) = \sum_y \mu_y \bigl(\beta \log(\pi_y/\mu_y) - A_y\bigr)^2 ,

minimized over the probability simplex. With :math:`u = \pi/\mu` and
:math:`a = A/\beta` every stationary point satisfies

.. math::

    \log u_y + \eta\, u_y = a_y , \qquad \sum_y \mu_y u_y = 1 ,

for one scalar :math:`\eta` (``theory.symbolic`` derives this). Its real
solutions are :math:`u_y = W_k(\eta e^{a_y})/\eta` and, taking the
:math:`\mu`-expectation, :math:`\eta = \mathrm{KL}(\mu\|\pi) + E_\mu[a]`.
Arms with :math:`\mu_y = 0` carry no loss and stay at :math:`\pi_y = 0`.

Regimes, by the sign of :math:`g_0 = \log E_\mu[e^{a}] = (V^*_\beta - V)/\beta`:

* **positive** (:math:`g_0 > 0`, :math:`\eta > 0`). The problem is convex in
  :math:`s = \log u` over the convex set :math:`\{\sum \mu e^s \le 1\}` whose
  boundary it touches, so the stationary point with :math:`\eta > 0` is the
  unique global minimizer. :math:`\eta u_y = \omega(a_y + \log\eta)` with
  :math:`\omega` the Wright omega function.
* **boundary** (:math:`g_0 = 0`): :math:`\eta = 0`, the Gibbs target
  :math:`u = e^{a}`.
* **negative** (:math:`g_0 < 0`, :math:`\eta < 0`). The unconstrained minimizer
  :math:`s = a` lies strictly inside the convex set, so the problem is a
  minimization over the *boundary* of a convex set: non-convex, with possibly
  several local minima. With :math:`m = -\eta`, every arm is on the principal
  branch (:math:`1 + \eta u_y > 0`) or on the :math:`W_{-1}` branch
  (:math:`1 + \eta u_y < 0`). The Hessian of the Lagrangian in :math:`s` is
  :math:`2\beta^2\,\mathrm{diag}(\mu_y(1 + \eta u_y))` on the tangent space
  :math:`\sum \mu_y u_y v_y = 0`, hence

  - at a local minimum **at most one arm** is on :math:`W_{-1}` (two such arms
    span a direction of negative curvature inside the tangent space);
  - with one such arm the point is a local minimum iff
    :math:`S = \sum_y \mu_y u_y^2 / (1 + \eta u_y) \le 0`, i.e. iff the mass
    :math:`\sum \mu u` *increases* with :math:`\eta` along that branch;
  - all stationary points are found by following each branch ("all
    principal", or "arm *j* on :math:`W_{-1}`") in :math:`c = \log m` over
    :math:`[\log \mu_j, -1 - \max_y a_y]` and the global minimizer is the one of
    smallest loss, :math:`L = \beta^2 \sum_y \mu_y (\eta u_y)^2`.

  The principal-branch solution exists iff the mass at the branch point
  :math:`\eta = -e^{-1 - a_{\max}}` reaches 1. Even when it exists it need not
  be the global minimizer: moving mass onto an arm of tiny :math:`\mu_j` costs
  only :math:`\mu_j \log^2(\pi_j/\mu_j) \to 0`, so the arm that leaves the
  principal branch is chosen by small :math:`\mu_j` as much as by large
  :math:`a_j`, and is often not the best arm.

**Relaxed (sub-stochastic) target.** A policy over a space far larger than the
behaviour's samples (an LLM over sequences) can put mass where :math:`\mu`
almost never samples, and that mass carries no loss. The regression then
minimizes over :math:`\{\sum_y \mu_y u_y \le 1\}` rather than the simplex:
a convex problem in :math:`s = \log u` with the unique solution
:func:`relaxed_lambert_target` — the Lambert target with :math:`\eta > 0` in the
positive regime (the constraint binds), and :math:`s = a`, :math:`\eta = 0` with
the deficit :math:`1 - e^{g_0}` left off the support in the boundary and
negative regimes. The KKT multiplier is :math:`\eta \ge 0`, so the relaxation
removes the negative regime: an optimistic baseline does not reach the
:math:`W_{-1}` branch but loses :math:`1 - e^{g_0}` of the mass to completions the
behaviour does not produce.

**Numerics.** The target depends on :math:`a = A/\beta` only, and every
function here is exact to rounding for every :math:`|a| \le 10^{306}`
(:data:`A_MAX`; beyond it a ``ValueError`` says so), from :math:`\beta = 10^{300}`
(:math:`a \sim 10^{-300}`, where :math:`\eta \approx E_\mu[a]` is tiny) to
:math:`\beta = 10^{-300}`: the bracketed solvers work in :math:`\log|\eta|` and
:math:`\log u` (never forming :math:`e^{a}` or :math:`a - \omega`, which cancels
once :math:`\omega \sim a`), and a final Newton polish in :math:`\eta` itself,
with the mass evaluated as :math:`\log(1 + E_\mu[e^{s} - 1])`, restores the
relative precision of :math:`\eta` that a step in :math:`\log|\eta|` lacks.
"Exact" means: :math:`\pi` to ~1e-16 absolute and :math:`\eta` to a few ulps,
or to :math:`\sim 10\epsilon\max|a|` where :math:`\eta \ll \max|a|` (rounding
each :math:`a_y` moves :math:`\eta` that much); :math:`|g_0|` below its own
rounding level is reported as the boundary, :math:`\eta = 0`. The tests pin
this against mpmath at up to 400 digits. One limit no precision removes: in the
negative regime two local minima can tie in loss (arms whose :math:`(\mu, a)`
are equal, or agree to a few ulps, give mirror-image minima); an exact tie is
broken by the lower arm index, a tie within rounding by the rounding, and
:func:`lambert_stationary_points` lists both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from ._checks import (
    as_float_array,
    as_int,
    broadcast_arms,
    broadcast_with_batch,
    check_distribution,
    check_positive,
)
from ._numerics import logsumexp, softmax
from ._roots import log_neg_lambert, log_omega, safeguarded_newton

__all__ = [
    "lambert_target",
    "lambert_stationary_points",
    "lambert_log_ratio",
    "relaxed_lambert_target",
    "StationaryPoints",
    "regime_of",
]

# Elements (bandits x arms) per chunk, whatever K: each (n, K) work array is 256 KiB, so the working set
# stays in a core's L2 and every temporary stays under glibc's mmap/trim thresholds (larger ones are
# returned to the kernel when freed and page-faulted back in on the next allocation, ~3x slower).
_CHUNK_ELEMENTS = 32768
_FAST_MAXITER = 12  # float64 Newton steps at most
_FAST_F32_STEPS = 3  # float32 Newton steps before the float64 ones (error ~1e-5 of the float32 rounding)
_FAST_TOL = 1e-9  # a step below this leaves an error ~1e-18 (quadratic convergence): converged


#: Largest |adv/beta| the solver accepts (differences of a and log-space brackets stay finite).
A_MAX = 1e306
_EPS = float(np.finfo(np.float64).eps)
_LOG_MAX = math.log(np.finfo(np.float64).max)


def _prepare(mu, adv, beta):
    """Validate; return mu, a = adv/beta (both (N, K)), beta (N,) and the batch shape."""
    mu = check_distribution(mu, "mu")  # renormalized in float64
    adv = as_float_array(adv, "adv")
    beta = check_positive(beta, "beta")
    mu, adv = broadcast_arms("mu", mu, "adv", adv)
    (mu, adv), (beta,), batch = broadcast_with_batch({"mu": mu, "adv": adv}, {"beta": beta})
    with np.errstate(over="ignore", under="ignore"):
        a = adv / beta[..., None]
    if a.size and not (a.max() <= A_MAX and a.min() >= -A_MAX):  # two reductions, no temporary
        big = ~(np.abs(a) <= A_MAX)
        pos = tuple(int(i) for i in np.argwhere(big)[0])
        raise ValueError(
            f"adv/beta = {float(adv[pos]):.3g}/{float(beta[pos[:-1]]):.3g} at index {pos} exceeds {A_MAX:g} in "
            f"magnitude (the largest ratio the solver handles exactly); rescale adv or raise beta"
        )
    K = mu.shape[-1]
    return mu.reshape(-1, K), a.reshape(-1, K), beta.reshape(-1), batch


def _logmu(mu):
    with np.errstate(divide="ignore"):
        return np.log(mu)


def _log_mass0(lmu, a):
    """g0 = log E_mu[exp(a)] over the support (lmu = -inf off support), any scale."""
    return logsumexp(lmu + a)


def _g0_and_noise(mu, lmu, a):
    r"""g0 = log E_mu[e^a] per row and its rounding level: below it the sign of eta is not determined.

    For rows with :math:`\max_{\mu>0}|a| \le 1` the form ``log1p(E_mu[expm1(a)])``
    keeps the precision relative to the size of ``a`` (as beta -> inf, where
    g0 -> E_mu[a] is tiny), with rounding ~ eps max|a|; otherwise the
    log-sum-exp, whose rounding is ~ eps max(1, |log mu + a|).
    """
    supp = mu > 0
    K = a.shape[-1]
    amag = np.where(supp, np.abs(a), 0.0).max(-1)
    small = amag <= 1.0
    g0 = _log_mass0(lmu, a)
    noise = 16 * _EPS * np.maximum(1.0, np.abs(np.where(supp, lmu + a, 0.0)).max(-1))
    if small.any():
        r = np.flatnonzero(small)
        e = (mu[r] * np.expm1(np.where(supp[r], a[r], 0.0))).sum(-1) / mu[r].sum(-1)
        g0[r] = np.log1p(e)
        noise[r] = 16 * _EPS * max(1.0, math.log2(K)) * amag[r]
    return g0, noise


def _fast_positive(mu, a, g0, work=None):
    r"""Joint Newton on (t_y = log(eta u_y), c = log eta) for well-scaled positive-regime bandits.

    Equations: ``t_y + e^{t_y} = a_y + c`` and ``log sum_y mu_y e^{t_y - c} = 0``.
    Eliminating ``dt_y = (dc - F_y)/(1 + e^{t_y})`` from the linearization leaves
    one scalar equation for ``dc`` per bandit, so a step costs one ``exp`` per arm
    (:func:`_newton_step`). The start ``eta = g0/(1 + g0)`` interpolates the
    small-eta expansion (``eta ~ g0``) and the saturation of eta at large
    advantages; ``t = min(x, log1p(max(x, 0)))`` with ``x = a + c`` follows the
    Wright omega function's two limits (``log omega(x) = x - omega(x)``). The
    first :data:`_FAST_F32_STEPS` steps run in float32 (to its rounding, ~1e-5
    in ``c`` and ``t`` for ``|a| < 300``), the rest in float64 until a step moves
    ``log u`` and ``eta`` by at most :data:`_FAST_TOL`: quadratic convergence
    leaves an error ~1e-18 after it, so no further step is taken.
    Returns (pi, eta, converged), ``pi`` normalized; rows that diverge (overflow
    on the way) come back unconverged, without warnings, for the bracketed solver.
    ``work``: optional scratch ``(float64 (4, >= n, K), float32 (4, >= n, K))``,
    reused across chunks (a fresh 1 MiB block per chunk is page-faulted in each time).
    """
    if work is None:
        work = (np.empty((4,) + a.shape), np.empty((4,) + a.shape, np.float32))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _fast_positive_steps(mu, a, g0, work[0][:, : len(a)], work[1][:, : len(a)])


def _fast_start(a, g0, dtype):
    """Newton start (t, c) in ``dtype``: c = log(g0/(1 + g0)), t = min(x, log1p(max(x, 0))), x = a + c."""
    c = np.log(g0 / (1.0 + g0)).astype(dtype)
    x = a.astype(dtype)
    x += c[:, None]
    t = np.maximum(x, 0.0)
    np.log1p(t, out=t)
    np.minimum(x, t, out=t)
    return t, c


def _newton_step(mu, a, t, c, work):
    """One joint Newton step on (t, c), in place, in the dtype of the arrays; returns (-dt, dc).

    ``work``: four (n, K) scratch arrays. The row sums are ``einsum`` reductions (no BLAS call).
    """
    w = np.exp(t, out=work[0])
    q = np.multiply(mu, w, out=work[1])
    S0 = np.einsum("ij->i", q)  # sum mu e^t = eta E_mu[u]
    d = np.add(w, 1.0, out=work[2])
    np.divide(1.0, d, out=d)  # 1/(1 + w) = dt/dx along the curve
    F = np.add(t, w, out=work[3])
    F -= a
    F -= c[:, None]  # F_y = t_y + e^{t_y} - a_y - c
    q *= d
    S1 = np.einsum("ij,ij->i", q, F)
    S2 = np.einsum("ij,ij->i", q, w)
    dc = ((np.log(S0) - c) * S0 - S1) / S2
    F -= dc[:, None]
    F *= d
    t -= F
    c += dc
    return F, dc


def _fast_positive_steps(mu, a, g0, work64, work32):
    t, c = _fast_start(a, g0, np.float32)
    mu32, a32 = mu.astype(np.float32), a.astype(np.float32)
    for _ in range(_FAST_F32_STEPS):
        _newton_step(mu32, a32, t, c, work32)
    t, c = t.astype(np.float64), c.astype(np.float64)
    if not (np.isfinite(c).all() and np.isfinite(t.max()) and np.isfinite(t.min())):
        bad = ~(np.isfinite(c) & np.isfinite(t).all(-1))  # diverged in float32: restart in float64
        t[bad], c[bad] = _fast_start(a[bad], g0[bad], np.float64)
    converged = _fast_refine(mu, a, t, c, work64)
    if not (np.isfinite(c).all() and np.isfinite(t.max()) and np.isfinite(t.min())):
        converged &= np.isfinite(c) & np.isfinite(t).all(-1)
    pi = np.exp(t, out=t)
    pi *= mu
    pi /= np.einsum("ij->i", pi)[:, None]
    return pi, np.exp(c), converged


def _fast_refine(mu, a, t, c, work):
    """float64 Newton steps on (t, c) in place until each row's last step is below :data:`_FAST_TOL`.

    Convergence is judged on the whole chunk first (``max|dt| + max|dc|``), then per
    row (``|dt|_2 + |dc|``, which bounds ``max |d log u|``), and the rows still moving
    continue alone. ``work``: (4, n, K) float64 scratch. Returns the per-row flag.
    """
    n = len(c)
    converged = np.zeros(n, bool)
    rows = np.arange(n)
    T, C, M, A = t, c, mu, a
    for it in range(_FAST_MAXITER):
        F, dc = _newton_step(M, A, T, C, work[:, : len(C)])
        adc = np.abs(dc)
        deta = adc * np.minimum(np.exp(C), 1.0)
        if max(F.max(), -F.min()) + adc.max() <= _FAST_TOL and deta.max() <= _FAST_TOL:
            done = np.ones(len(C), bool)
        elif it == 0:
            continue
        else:
            done = (np.sqrt(np.einsum("ij,ij->i", F, F)) + adc <= _FAST_TOL) & (deta <= _FAST_TOL)
        if T is not t:
            t[rows], c[rows] = T, C
        converged[rows] = done
        if done.all():
            break
        rows = rows[~done]
        T, C, M, A = t[rows], c[rows], mu[rows], a[rows]
    else:
        if T is not t:
            t[rows], c[rows] = T, C
    return converged


def _robust_positive(lmu, a, g0):
    """Bracketed solve of log sum mu u = 0 in c = log(eta) with exact omega; any scale.

    Returns eta; :func:`_polish` then makes it exact to rounding. ``log u`` is
    taken as ``log omega(a + c) - c``, never as ``a - omega(a + c)``, which
    cancels catastrophically once ``a`` is large (``omega ~ a``).
    """
    # softmax-like sums stay inline here: G reuses its exponentials for the derivative inside Newton
    # (theory._numerics would exponentiate twice)
    amax = np.where(np.isfinite(lmu), a, -np.inf).max(-1)
    hi = np.log(amax)  # eta <= a_max: the arm with u >= 1 has eta <= eta u = a - log u <= a
    lo = np.log(0.5 * g0) - amax  # G(lo) >= g0 - e^{a_max + lo} = g0/2 > 0
    emean = (np.where(np.isfinite(lmu), np.exp(lmu) * a, 0.0)).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(emean > 0, np.maximum(lo, np.log(emean) - 1e-9), lo)  # eta = KL + E_mu[a] >= E_mu[a]
    lo = np.minimum(lo, hi)

    def G(c, idx):
        t = log_omega(a[idx] + c[:, None])
        w = np.exp(t)
        z = lmu[idx] + t - c[:, None]  # log pi_y = log mu + log omega - c
        zmax = z.max(-1, keepdims=True)
        e = np.exp(z - zmax)
        s = e.sum(-1)
        dG = -(e * w / (1.0 + w)).sum(-1) / s  # d(t - c)/dc = -w/(1 + w)
        return zmax[:, 0] + np.log(s), dG

    return np.exp(safeguarded_newton(G, lo, hi))


def _tilt(a, eta, lower=False, s0=None):
    r"""``s = log u`` solving :math:`s + \eta e^{s} = a` elementwise; ``lower``: the :math:`W_{-1}` root.

    Arrays broadcast. A start from the log-space Lambert routines (accurate to a
    few ulps of :math:`\log|\eta|`), or the warm start ``s0`` (a solution at a
    nearby eta), then Newton steps on :math:`f(s) = s + \eta e^s - a`, whose
    rounding is relative to the sizes of :math:`s`, :math:`a` and
    :math:`w = \eta e^s` and whose slope is :math:`1 + w`: the result is exact to
    a few ulps of :math:`\max(|s|, 1)` at any scale, from :math:`|a| \sim 10^{-300}`
    to :math:`10^{300}`. Near the branch point (:math:`1 + w \to 0`, where the
    problem itself is ill-conditioned) the log-space start is kept. NaN where
    :math:`\eta < 0` and :math:`a + \log(-\eta) > -1` (no real solution).
    """
    a, eta, lower = np.broadcast_arrays(np.asarray(a, float), np.asarray(eta, float), np.asarray(lower, bool))
    warm = s0 is not None
    if warm:
        s = np.array(np.broadcast_to(s0, a.shape), dtype=np.float64, copy=True)
    else:
        s = np.array(a, dtype=np.float64, copy=True)  # eta == 0: the Gibbs tilt s = a
        pos, neg = eta > 0, eta < 0
        if pos.any():
            c = np.log(eta[pos])
            s[pos] = log_omega(a[pos] + c) - c
        if neg.any():
            c = np.log(-eta[neg])
            x = a[neg] + c
            xc = np.minimum(x, -1.0)
            low = lower[neg]
            t = log_neg_lambert(xc, 0)
            if low.any():
                t[low] = log_neg_lambert(xc[low], -1)
            # past the branch point by no more than the rounding of x = a + log(-eta): at it
            slack = 8 * _EPS * np.maximum(1.0, np.maximum(np.abs(a[neg]), np.abs(c)))
            s[neg] = np.where(x <= -1.0 + slack, t - c, np.nan)
    logabs = np.log(np.abs(np.where(eta != 0, eta, 1.0)))
    side = np.where(lower, -1.0, 1.0)  # sign of 1 + w on the branch
    for _ in range(3 if warm else 2):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            w = np.where(s <= 700.0, eta * np.exp(np.minimum(s, 700.0)), np.sign(eta) * np.exp(logabs + s))
            step = ((s - a) + w) / (1.0 + w)
        if warm:
            good = np.isfinite(step) & (side * (1.0 + w) > 1e-6)
        else:  # the start is already close; a large step means ill-conditioning, not progress
            good = np.isfinite(step) & (np.abs(step) <= 1e-8 * np.maximum(1.0, np.abs(s)))
        s = np.where(good, s - step, s)
    if warm:  # entries the warm start did not settle (near the branch point): start cold
        redo = ~(good & (np.abs(step) <= 1e-10 * np.maximum(1.0, np.abs(s)))) & (eta != 0)
        if redo.any():
            s[redo] = _tilt(a[redo], eta[redo], lower[redo])
    return s


def _mass_eq(mu, lmu, a, eta, lower, s0=None):
    """F(eta) = log E_mu[u(eta)] (zero at a solution), dF/deta and s = log u, rows (n, K).

    F is evaluated as ``log1p(E_mu[expm1(s)])`` (rounding relative to the size of
    s, so tiny eta at tiny a keeps its relative precision) unless some
    ``s > 700`` (an arm of tiny mu far up), then as a log-sum-exp. Arms off the
    support of mu do not enter.
    """
    supp = mu > 0
    s = _tilt(a, eta[:, None], lower, s0)
    ss = np.where(supp, s, 0.0)
    msum = mu.sum(-1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        z = np.where(supp, lmu + s, -np.inf)
        lse = logsumexp(z)
        small = np.log1p((mu * np.expm1(np.minimum(ss, 700.0))).sum(-1) / msum)
        F = np.where((ss > 700.0).any(-1), lse - np.log(msum), small)
        p = np.exp(z - lse[:, None])  # pi, normalized
        q = 1.0 / (np.exp(-ss) + eta[:, None])  # ds/deta = -u/(1 + eta u)
        dF = -np.where(supp, p * q, 0.0).sum(-1)
    F = np.where(np.isnan(ss).any(-1), np.nan, F)
    return F, dF, s


def _polish(mu, lmu, a, eta, lower=None, s0=None, iters=12):
    r"""Newton on :math:`\eta` itself for :math:`\log E_\mu[u] = 0`: exact eta and ``s = log u``.

    The bracketed solvers work in :math:`c = \log|\eta|`, where a float64 step is
    :math:`|c|` ulps of :math:`\eta` and the log-mass is known only to an
    absolute rounding (so a tiny :math:`\eta` has no relative precision). Here
    the unknown is :math:`\eta` and every quantity keeps its relative precision
    (:func:`_tilt`, :func:`_mass_eq`), so a few steps from a close start give
    :math:`\eta` to a few ulps. A step is kept only where it lowers
    :math:`|F|` and keeps the sign of :math:`\eta` (and every arm on its branch).
    ``s0``: log-ratios at the starting eta, if known. Returns ``(s, eta, F)``.
    """
    eta = np.array(eta, dtype=np.float64, copy=True)
    if lower is None:
        lower = np.zeros(a.shape, bool)
    if s0 is not None:
        s0 = np.where(np.isfinite(s0), s0, _tilt(a, eta[:, None], lower))
    F, dF, s = _mass_eq(mu, lmu, a, eta, lower, s0)
    act = np.flatnonzero(np.isfinite(F) & (F != 0) & (eta != 0))
    for _ in range(iters):
        if act.size == 0:
            break
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            new = eta[act] - F[act] / dF[act]
        new = np.where(np.sign(new) == np.sign(eta[act]), new, 0.125 * eta[act])  # overshoot past 0: back off
        # a correction within rounding of eta: converged (quadratic steps, so the last one was already exact)
        cand = np.isfinite(new) & (np.abs(new - eta[act]) > 2 * _EPS * np.abs(eta[act]))
        idx, new = act[cand], new[cand]
        if idx.size == 0:
            break
        Fn, dFn, sn = _mass_eq(mu[idx], lmu[idx], a[idx], new, lower[idx], s[idx])
        better = np.isfinite(Fn) & (np.abs(Fn) < np.abs(F[idx]))
        j = idx[better]
        eta[j], F[j], dF[j], s[j] = new[better], Fn[better], dFn[better], sn[better]
        act = j[F[j] != 0]
    return s, eta, F


def _from_log_ratio(lmu, s):
    """pi = mu e^s renormalized (arms off the support stay at 0), rows (n, K)."""
    z = np.where(np.isfinite(lmu), lmu + s, -np.inf)
    return softmax(z)


def _fast_chunk(mu, a, work=None):
    """The fast path for one chunk: (pi normalized, eta, converged, todo); ``todo`` rows need :func:`_solve_chunk`.

    Well-scaled rows (``exp(a)`` neither overflows nor underflows, ``mu`` zero or
    >= 1e-200) with a plain ``g0 = log E_mu[e^a] > 1e-6`` (its rounding immaterial)
    take :func:`_fast_positive`; the others, the rows it leaves unconverged, and
    those with ``eta < 0.05`` (the fast path's eta has an absolute error of a few
    ulps of 1: they are polished) are ``todo``. ``work``: as in :func:`_fast_positive`.
    """
    n, K = a.shape
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        if a.max() < 300.0 and a.min() > -300.0 and not (mu < 1e-200).any():  # the whole chunk, cheaply
            well = np.ones(n, bool)
        else:
            well = (np.abs(a).max(-1) < 300.0) & ~((mu > 0) & (mu < 1e-200)).any(-1)
        g0 = np.full(n, -np.inf)
        if well.all():
            g0 = np.log(np.einsum("ij,ij->i", mu, np.exp(a)))
        else:
            w = np.flatnonzero(well)
            g0[w] = np.log(np.einsum("ij,ij->i", mu[w], np.exp(a[w])))
    fast = g0 > 1e-6
    if fast.all():
        pi, eta, ok = _fast_positive(mu, a, g0, work)
    else:
        pi, eta, ok = np.full_like(a, np.nan), np.zeros(n), np.zeros(n, bool)
        r = np.flatnonzero(fast)
        if r.size:
            pi[r], eta[r], ok[r] = _fast_positive(mu[r], a[r], g0[r], work)
    return pi, eta, ok, ~ok | (eta < 0.05)


def _solve_chunk(mu, a, beta, pi, eta, ok):
    """Induced target for rows the fast path did not finish: (pi, eta), pi normalized.

    ``pi, eta, ok``: the fast path's answers and convergence flags for these rows
    (converged rows are only polished, from their ``pi`` as a warm start).
    """
    n, K = a.shape
    pi, eta, ok = pi.copy(), eta.copy(), ok.copy()
    rough = np.flatnonzero(ok)
    g0 = np.zeros(n)
    lmu = _logmu(mu)
    rest = np.flatnonzero(~ok)  # g0 to the precision the regime needs, with its rounding level
    noise = np.zeros(n)
    g0[rest], noise[rest] = _g0_and_noise(mu[rest], lmu[rest], a[rest])
    # boundary: |g0| within the rounding of log E_mu[e^a] itself; the Gibbs target is then exact
    # to that precision (eta = O(g0)), and the brackets below would rest on noise.
    zero = np.flatnonzero(~ok & (np.abs(g0) <= noise))
    pi[zero], eta[zero] = np.exp(lmu[zero] + a[zero] - g0[zero, None]), 0.0
    ok[zero] = True
    pos = np.flatnonzero(~ok & (g0 > 0))
    if pos.size:
        # near the boundary eta = g0 / E_mu[u0^2] (u0 = e^{a - g0}, the Gibbs tilt) to first order in g0:
        # a better start for Newton than a bracket resting on rounding
        near = np.abs(g0[pos]) < 1e-8
        eta[pos[near]] = _boundary_eta(lmu[pos[near]], a[pos[near]], g0[pos[near]])
        far = pos[~near]
        if far.size:
            eta[far] = _robust_positive(lmu[far], a[far], g0[far])
        rough = np.concatenate([rough, pos])
    if rough.size:
        with np.errstate(divide="ignore", invalid="ignore"):
            s0 = np.where(ok[rough, None], np.log(pi[rough]) - lmu[rough], np.nan)  # fast rows: warm start
        s, eta[rough], F = _polish(mu[rough], lmu[rough], a[rough], eta[rough], s0=s0)
        _check_residual(F)
        pi[rough] = _from_log_ratio(lmu[rough], s)
    neg = np.flatnonzero(~ok & (g0 < 0))
    if neg.size:
        rows, branch, pi_c, eta_c, log_loss, _ = _solve_negative(mu[neg], lmu[neg], a[neg], g0[neg], beta[neg])
        best = _argmin_by_row(rows, log_loss, neg.size)
        pi[neg], eta[neg] = pi_c[best], eta_c[best]
    return pi / np.einsum("ij->i", pi)[:, None], eta


def _boundary_eta(lmu, a, g0):
    r"""First-order eta near the boundary: :math:`\eta \approx g_0 / E_\mu[e^{2(a - g_0)}]`.

    At :math:`g_0 = 0` the target is the Gibbs tilt :math:`u_0 = e^{a}`; shifting every
    :math:`a` by :math:`\kappa` moves :math:`\eta` by :math:`\kappa / E_{\pi_0}[u_0]`.
    """
    z = np.where(np.isfinite(lmu), lmu + 2.0 * (a - g0[:, None]), -np.inf)
    return g0 * np.exp(-logsumexp(z))


def _check_residual(F, tol=1e-10):
    """The polished mass equation must hold; anything else is a solver bug, not bad input."""
    bad = ~(np.abs(F) <= tol)
    if bad.any():  # pragma: no cover - guarded by the tests
        raise RuntimeError(f"Lambert target: mass residual {np.nanmax(np.abs(F)):.3g} after polishing (please report)")


@dataclass(frozen=True)
class StationaryPoints:
    r"""All local minima of the regression loss on the simplex for one batch of bandits.

    Attributes
    ----------
    pi : ndarray, shape (..., P, K)
        Candidate policies; rows beyond ``count`` are NaN-free copies of the global minimizer.
    eta : ndarray, shape (..., P)
    loss : ndarray, shape (..., P)
        :math:`\sum_y \mu_y(\beta\log u_y - A_y)^2` at each point.
    branch_arm : ndarray of int, shape (..., P)
        ``-1`` for "every arm on the principal branch", else the arm on :math:`W_{-1}`.
    count : ndarray of int, shape (...,)
        Number of valid candidates.
    global_index : ndarray of int, shape (...,)
        Index of the global minimizer.
    """

    pi: np.ndarray
    eta: np.ndarray
    loss: np.ndarray
    branch_arm: np.ndarray
    count: np.ndarray
    global_index: np.ndarray


_GRID = 48  # uniform points per row in the branch scan over c = log(-eta)
_EDGE = 16  # geometric points towards the branch point c_max
_SCAN_ROWS = 1024  # rows per scan block
_SCAN_ENTRIES = 1 << 18  # (rows, points, arms) entries per scan step: work arrays of a few MiB at any K
# A bracket is skipped when the log of its loss bound exceeds the log of the best loss found by more than
# this times max(1, |log loss|): far above the rounding of either (a few ulps of the log-space quantities
# they are formed from), so rounding never drops the minimizer.
_PRUNE_TOL = 1e-9


def _neg_branch_values(lmu, a, c, j):
    """log-mass phi(c) = log sum_y mu_y u_y on branch j (-1: all principal), and t (arm log(m u)).

    ``j`` is one branch for all rows, or an int array (n,) with one branch per row of (n, K) inputs.
    """
    x = np.minimum(a + c[..., None], -1.0)
    t = log_neg_lambert(x, 0)
    j = np.asarray(j)
    if j.ndim == 0:
        if j >= 0:
            t[..., j] = log_neg_lambert(x[..., j], -1)
    else:
        r = np.flatnonzero(j >= 0)
        if r.size:
            t[r, j[r]] = log_neg_lambert(x[r, j[r]], -1)
    phi = logsumexp(lmu + t - c[..., None])
    return phi, t


def _exclusive_sum(v):
    """sum over the last axis leaving out each entry in turn (prefix + suffix sums: no cancellation)."""
    pre = np.cumsum(v, -1)
    suf = np.cumsum(v[..., ::-1], -1)[..., ::-1]
    out = np.zeros_like(v)
    out[..., 1:] += pre[..., :-1]
    out[..., :-1] += suf[..., 1:]
    return out


def _branch_scan(lmu, a, c):
    r"""Mass minus one and its c-derivative on every one-arm branch at once, shape (..., K) each.

    ``c`` has shape (...,) (points); ``lmu``, ``a`` broadcast to (..., K). With
    :math:`w = m u` (:math:`w_0 \le 1` principal, :math:`w_1 \ge 1` on :math:`W_{-1}`)
    each arm's mass is :math:`p = \mu u` and :math:`dp/dc = p\,w/(1 - w)`, so
    branch j's mass is the principal masses of the other arms plus arm j's
    :math:`W_{-1}` mass: two Lambert evaluations per arm serve all K branches.
    Masses are scaled by a common positive factor :math:`e^{-z}` per point (signs
    are exact); the third output is that :math:`z`, shape (...,); the last two are
    :math:`t_0 = \log w_0` and :math:`t_1 = \log w_1`, shape (..., K).
    """
    # the scaling below is by max(zmax, 0), not a log-sum-exp: not theory._numerics.logsumexp
    x = np.minimum(a + c[..., None], -1.0)
    t0 = log_neg_lambert(x, 0)
    t1 = log_neg_lambert(x, -1)
    z0 = lmu + t0 - c[..., None]
    z1 = lmu + t1 - c[..., None]
    zmax = np.maximum(np.where(np.isfinite(z0), z0, -np.inf).max(-1), np.where(np.isfinite(z1), z1, -np.inf).max(-1))
    zmax = np.maximum(zmax, 0.0)[..., None]  # the scale must keep "1" representable
    p0 = np.exp(z0 - zmax)
    p1 = np.exp(z1 - zmax)
    w0, w1 = np.exp(t0), np.exp(t1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d0 = np.where(p0 > 0, p0 * w0 / (1.0 - w0), 0.0)
        d1 = np.where(p1 > 0, p1 * w1 / (1.0 - w1), 0.0)
    one = np.exp(-zmax)
    f = _exclusive_sum(p0) + p1 - one
    df = _exclusive_sum(d0) + d1
    return f, df, zmax[..., 0], t0, t1


@dataclass(frozen=True)
class _Brackets:
    """Intervals of c = log(-eta) that may hold roots of one-arm branches; one entry per interval, shape (n,) each."""

    row: np.ndarray  # bandit
    arm: np.ndarray  # the arm on W_{-1}
    cell: np.ndarray  # index of the left grid point
    dip: np.ndarray  # equal signs at both ends (0 or 2 roots) instead of a sign change
    lo: np.ndarray
    hi: np.ndarray
    side: np.ndarray  # sign of the branch's mass - 1 at lo
    bound: np.ndarray  # log of a lower bound on loss / beta^2 at every root in [lo, hi]

    def take(self, sel):
        return _Brackets(*(getattr(self, f.name)[sel] for f in fields(self)))

    @staticmethod
    def concat(parts):
        if not parts:
            ints, floats = np.zeros(0, int), np.zeros(0)
            return _Brackets(ints, ints, ints, np.zeros(0, bool), floats, floats, floats, floats)
        return _Brackets(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Brackets)))


def _loss_bound(lmu, lp2, t0, t1, lo):
    r"""Log of a lower bound on :math:`L/\beta^2` at every root of branch j in a grid cell :math:`[c_l, c_r]`.

    At a stationary point the loss is :math:`\beta^2\sum_y \mu_y w_y^2` with :math:`w_y = m u_y`
    (:math:`s - a = w`). On branch j, :math:`w_y = w_0(a_y + c)` for :math:`y \ne j` and
    :math:`w_j = w_1(a_j + c)`, with :math:`w_0 = -W_0(-e^x) \in (0, 1]` increasing and
    :math:`w_1 = -W_{-1}(-e^x) \ge 1` decreasing in :math:`x`. Hence, along the branch,

    .. math::

        \frac{L_j(c)}{\beta^2} = P(c) + \mu_j E(a_j + c), \quad
        P(c) = \sum_y \mu_y w_0(a_y + c)^2 \ \uparrow, \quad E = w_1^2 - w_0^2 \ \downarrow,

    so :math:`L_j/\beta^2 \ge P(c_l) + \mu_j E(a_j + c_r)` on the cell. Also
    :math:`\sum_y \mu_y w_y^2 \ge (\sum_y \mu_y w_y)^2 = m^2` (Jensen; the mass
    constraint is :math:`\sum_y \mu_y w_y = m`), so :math:`L_j/\beta^2 \ge e^{2 c_l}`. Returns
    the larger. Inputs per bracket, shape (n,): ``lmu`` :math:`\log\mu_j`, ``lp2``
    :math:`\log P(c_l)`, ``t0``, ``t1`` :math:`\log w_{0,1}(a_j + c_r)`, ``lo`` :math:`c_l`.
    :math:`t_1 - t_0` is shrunk by its rounding (it is ~0 near the branch point), so the
    bound stays below the exact one.
    """
    slack = 8 * _EPS * (np.maximum(1.0, np.abs(t0)) + np.maximum(1.0, np.abs(t1)))
    gap = np.maximum(t1 - t0 - slack, 0.0)
    with np.errstate(divide="ignore"):
        lE = 2.0 * (t1 - slack) + np.log(-np.expm1(-2.0 * gap))  # w1^2 (1 - (w0/w1)^2)
    return np.maximum(np.logaddexp(lp2, lmu + lE), 2.0 * lo)


def _cell_brackets(lmu, a, has, grid, vals, k0, rows):
    """The brackets between consecutive points of one stretch of the scan grid (see :func:`_scan_brackets`)."""
    f, df, zs, t0, t1, lp2 = vals
    sgn = np.sign(f)
    left, right = sgn[:, :-1], sgn[:, 1:]
    live = has[:, None, :]
    change = (left * right <= 0) & (left != 0) & live
    dl, dr = df[:, :-1], df[:, 1:]
    with np.errstate(invalid="ignore"):  # df is inf - inf = NaN exactly at the branch point: no dip there
        dip = (left == right) & (left != 0) & live & (left * dl < 0) & (left * dr > 0)
    dip &= ~_dip_excluded(f, df, zs, grid, a)
    r, k, j = np.nonzero(change | dip)
    lo = grid[r, k]
    bound = _loss_bound(lmu[r, j], lp2[r, k], t0[r, k + 1, j], t1[r, k + 1, j], lo)
    return _Brackets(rows[r], j, k0 + k, dip[r, k, j], lo, grid[r, k + 1], left[r, k, j], bound)


def _scan_block(lmu, a, has, grid, rows):
    """Brackets of a block of rows (n, K) over their grids (n, G), a few points at a time (O(n K) memory)."""
    n, K = a.shape
    step = max(1, _SCAN_ENTRIES // (n * K))
    out, prev = [], None
    for g in range(0, grid.shape[1], step):
        f, df, zs, t0, t1 = _branch_scan(lmu[:, None, :], a[:, None, :], grid[:, g : g + step])
        vals = (f, df, zs, t0, t1, logsumexp(lmu[:, None, :] + 2.0 * t0))  # last: log P(c)
        start = g
        if prev is not None:  # the previous stretch's last point closes the cell across the seam
            vals = tuple(np.concatenate([p, v], axis=1) for p, v in zip(prev, vals, strict=True))
            start = g - 1
        out.append(_cell_brackets(lmu, a, has, grid[:, start : start + vals[0].shape[1]], vals, start, rows))
        prev = tuple(v[:, -1:] for v in vals)
    return out


def _scan_brackets(lmu, a, cmax):
    r"""Every bracket of a one-arm-branch root, with its loss bound, for negative-regime rows (N, K).

    Branch j's roots lie in :math:`[\log\mu_j, c_{\max}]` (:math:`\mu_j u_j \le 1`
    and :math:`m u_j \ge 1`); below :math:`\log\mu_j` its mass exceeds 1. One grid
    per row over :math:`[\min_j\log\mu_j, c_{\max}]` (uniform, plus geometric points
    towards the branch point) serves every branch. A bracket is a sign change of
    mass - 1, or a *dip*: equal signs at both ends with the derivative turning
    towards zero between them (a possible pair of roots between two grid points)
    that :func:`_dip_excluded` does not rule out. The grid is walked a few points
    at a time, so memory is O(K) per row at any K; each bracket carries
    :func:`_loss_bound`. Sorted by row, then bound.
    """
    N, K = a.shape
    has = np.isfinite(lmu) & (lmu < cmax[:, None])
    todo = np.flatnonzero(has.any(-1))
    q = np.linspace(0.0, 1.0, _GRID)
    edge = np.logspace(-1, -13, _EDGE)
    block = max(1, min(_SCAN_ROWS, (1 << 20) // ((_GRID + _EDGE) * K)))
    parts = []
    for s in range(0, todo.size, block):
        rows = todo[s : s + block]
        lo, hi = np.where(has[rows], lmu[rows], np.inf).min(-1), cmax[rows]
        width = np.minimum(1.0, hi - lo)
        grid = np.concatenate([lo[:, None] + q * (hi - lo)[:, None], hi[:, None] - edge * width[:, None]], axis=1)
        grid = np.sort(grid, axis=1)
        grid[:, -1] = hi
        parts += _scan_block(lmu[rows], a[rows], has[rows], grid, rows)
    br = _Brackets.concat(parts)
    return br.take(np.lexsort((br.bound, br.row)))


def _principal_root(lmu, a, g0, cmax):
    r"""The all-principal stationary point where it exists: (rows, c).

    :math:`\phi(c) = \log\sum_y\mu_y u_y` is increasing in c on the principal branch, with
    :math:`\phi(-\infty) = g_0 < 0`: a root iff :math:`\phi(c_{\max}) \ge 0`.
    """
    amax = -1.0 - cmax
    lo0 = np.minimum(np.log(-0.5 * g0) - amax - 1.0, cmax - 1.0)
    phi_hi, _ = _neg_branch_values(lmu, a, cmax, -1)
    r0 = np.flatnonzero(phi_hi >= 0)
    c0 = np.empty(r0.size)
    for sl in _blocks(r0.size, a.shape[1]):
        c0[sl] = _refine_branch(lmu[r0[sl]], a[r0[sl]], lo0[r0[sl]], cmax[r0[sl]], -1)
    return r0, c0


def _bracket_roots(lmu, a, br):
    r"""The roots in brackets ``br``: (rows, branch, c, key), one per sign change and two per split dip.

    A dip's turning point is located by bisection on the derivative's sign and splits it
    into two brackets when the mass crosses 1 there. Roots are polished by
    :func:`_refine_branch`. ``key`` orders a row's candidates: principal first, then by
    arm, kind (sign change, left and right half of a dip) and grid cell.
    """
    K = a.shape[1]
    d, ch = np.flatnonzero(br.dip), np.flatnonzero(~br.dip)
    rows, arms, cells = [br.row[ch]], [br.arm[ch]], [br.cell[ch]]
    lo, hi, kind = [br.lo[ch]], [br.hi[ch]], [np.zeros(ch.size, int)]
    if d.size:
        cstar, fstar = np.empty(d.size), np.empty(d.size)
        for sl in _blocks(d.size, K):
            i = d[sl]
            cstar[sl], fstar[sl] = _turning_point(lmu[br.row[i]], a[br.row[i]], br.arm[i], br.lo[i], br.hi[i])
        split = np.sign(fstar) != br.side[d]
        d, cstar = d[split], cstar[split]
        rows += [br.row[d]] * 2
        arms += [br.arm[d]] * 2
        cells += [br.cell[d]] * 2
        lo += [br.lo[d], cstar]
        hi += [cstar, br.hi[d]]
        kind += [np.ones(d.size, int), np.full(d.size, 2)]
    rows, arms, cells, lo, hi, kind = (np.concatenate(v) for v in (rows, arms, cells, lo, hi, kind))
    c = np.empty(rows.size)
    for sl in _blocks(rows.size, K):
        c[sl] = _refine_branch(lmu[rows[sl]], a[rows[sl]], lo[sl], hi[sl], arms[sl])
    return rows, arms, c, ((arms + 1) * 3 + kind) * (_GRID + _EDGE) + cells


def _neg_candidates(lmu, a, g0):
    r"""All stationary points with at most one W_{-1} arm, for negative-regime rows (N, K).

    Returns a list of (rows, branch, c) root arrays; branch -1 is "all principal":
    :func:`_principal_root`, then the root of every bracket of :func:`_scan_brackets`
    (:func:`_bracket_roots`), then the branch point of rows left without any.
    """
    cmax = -1.0 - np.where(np.isfinite(lmu), a, -np.inf).max(-1)
    r0, c0 = _principal_root(lmu, a, g0, cmax)
    rows, arms, c, _ = _bracket_roots(lmu, a, _scan_brackets(lmu, a, cmax))
    roots = [(r0, np.full(r0.size, -1), c0), (rows, arms, c)]
    # A root at the branch point itself (principal mass reaching 1 exactly there, where the W_{-1}
    # interval [log mu_j, c_max] of the top arm is empty) can fall between the two tests by rounding;
    # the branch point is then the stationary point, to the sqrt(eps) the problem allows there.
    lost = np.setdiff1d(np.arange(a.shape[0]), np.concatenate([r0, rows]))
    roots.append((lost, np.full(lost.size, -1), cmax[lost]))
    return roots


def _blocks(n, K, budget=1 << 21):
    """Slices of ``range(n)`` holding at most ``budget`` candidate-arm entries each (bounded memory)."""
    step = max(1, budget // max(K, 1))
    return [slice(s, s + step) for s in range(0, n, step)]


# Branch j's mass is convex in c wherever its W_{-1} arm has w = m u_j >= golden ratio, i.e. at
# x_j = a_j + c <= log(phi) - phi (the principal arms' masses are convex everywhere).
_CONVEX_X = math.log((1.0 + math.sqrt(5.0)) / 2.0) - (1.0 + math.sqrt(5.0)) / 2.0


def _dip_excluded(f, df, zs, grid, a):
    r"""Dips (n, G-1, K) that provably hold no root: the mass is convex on the interval.

    Branch j's mass :math:`M_j(c)` is a sum of :math:`\mu_y e^{a_y} e^{w_y}` with
    :math:`dw/dx = w/(1 - w)`; the second derivative of :math:`e^{w(x)}` is
    :math:`e^w w (1 + w - w^2)/(1 - w)^3`, positive for every principal arm
    (:math:`w < 1`) and for the :math:`W_{-1}` arm once :math:`w \ge` the golden ratio.
    On an interval where :math:`M_j` is convex, a dip below 1 (both ends negative)
    has no root, and a dip above 1 has none when the two end tangents meet above
    1 (a convex function lies above its tangents).
    """
    convex = (a[:, None, :] + grid[:, 1:, None]) <= _CONVEX_X  # w1 is smallest at the right end
    # rescale the right end to the left end's factor e^{-z_l}
    shift = np.clip(zs[:, 1:] - zs[:, :-1], -700.0, 700.0)[..., None]
    fl, dl = f[:, :-1], df[:, :-1]
    fr, dr = f[:, 1:] * np.exp(shift), df[:, 1:] * np.exp(shift)
    cl, cr = grid[:, :-1, None], grid[:, 1:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        cstar = (fr - fl + dl * cl - dr * cr) / (dl - dr)
        low = fl + dl * (np.clip(cstar, cl, cr) - cl)
    below = (fl < 0) & (fr < 0)
    above = (fl > 0) & np.isfinite(low) & (low > 0)
    return convex & (below | above)


def _turning_point(lmu, a, j, lo, hi):
    """The turning point of branch j[i]'s mass on [lo[i], hi[i]]: (c*, mass(c*) - 1 up to scale).

    The root of d mass/dc by :func:`safeguarded_newton` on the sign of the
    derivative alone (its own derivative is not formed, so every step bisects).
    """
    idx = np.arange(lo.size)

    def fun(c, i):
        return _branch_scan(lmu[i], a[i], c)[1][np.arange(i.size), j[i]], np.nan  # no Newton step: bisection

    c = safeguarded_newton(fun, lo, hi)
    return c, _branch_scan(lmu, a, c)[0][idx, j]


def _refine_branch(lmu, a, lo, hi, j):
    """The root of branch j's log-mass in each bracket [lo, hi] (safeguarded Newton); ``j`` int or (n,) ints."""
    j = np.asarray(j)

    def fun(c, idx):
        phi, t = _neg_branch_values(lmu[idx], a[idx], c, j[idx] if j.ndim else j)
        # d phi/dc = sum_y p_y dl_y/dc with l = t - c and dt/dc = 1/(1 - e^t)
        z = lmu[idx] + t - c[:, None]
        p = np.exp(z - phi[:, None])
        e = np.exp(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            dl = np.where(np.isfinite(z), e / (1.0 - e), 0.0)
        return phi, (p * dl).sum(-1)

    return safeguarded_newton(fun, lo, hi)


def _score(mu, lmu, a, g0, beta, rows, branch, c):
    r"""Polish candidates (row, branch, c) into ``(pi, eta, log_loss, is_min)``; memory-bounded blocks.

    The loss is kept as its logarithm, :math:`\log(\beta^2 \sum_y \mu_y (\eta u_y)^2)`,
    which neither overflows nor underflows at any scale; ``is_min`` is the second-order
    test (module docstring): :math:`S = \sum_y \mu_y u_y^2/(1 + \eta u_y) \le 0` with one
    :math:`W_{-1}` arm, always for the principal point.
    """
    K = a.shape[1]
    n = rows.size
    pi, eta, log_loss, is_min = np.empty((n, K)), np.empty(n), np.empty(n), np.empty(n, bool)
    for sl in _blocks(rows.size, K):
        r, br = rows[sl], branch[sl]
        eta0 = -np.exp(c[sl])
        near = (br < 0) & (np.abs(g0[r]) < 1e-8)  # the boundary expansion beats a bracket resting on rounding
        eta0[near] = _boundary_eta(lmu[r[near]], a[r[near]], g0[r[near]])
        lower = np.arange(K)[None, :] == br[:, None]
        s, eta[sl], _ = _polish(mu[r], lmu[r], a[r], eta0, lower)  # at a branch point F ~ sqrt(eps)
        lm = lmu[r]
        supp = np.isfinite(lm)
        pi[sl] = _from_log_ratio(lm, s)
        lw = np.log(-eta[sl])[:, None] + s  # log |eta u|
        log_loss[sl] = 2.0 * np.log(beta[r]) + logsumexp(np.where(supp, lm + 2.0 * lw, -np.inf))
        # Terms of S scaled by the largest mu u^2 (signs exact at any scale).
        z2 = np.where(supp, lm + 2.0 * s, -np.inf)
        scaled = np.exp(z2 - z2.max(-1, keepdims=True))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            terms = np.where(
                lw > 700.0, -scaled * np.exp(-np.minimum(lw, 745.0)), scaled / (1.0 - np.exp(np.minimum(lw, 700.0)))
            )
            S = np.where(supp & np.isfinite(terms), terms, 0.0).sum(-1)
        is_min[sl] = (br < 0) | (S <= 0)
    return pi, eta, log_loss, is_min


def _class_first(lmu, a):
    """(N, K) int: the first arm of each arm's class of equal (mu, a) in its row (the arm itself if it is first)."""
    order = np.lexsort((a, lmu), axis=-1)  # stable: within a run of equal (mu, a), arms in increasing index
    ls, as_ = np.take_along_axis(lmu, order, -1), np.take_along_axis(a, order, -1)
    start = np.ones(a.shape, bool)
    start[:, 1:] = (ls[:, 1:] != ls[:, :-1]) | (as_[:, 1:] != as_[:, :-1])
    run = np.maximum.accumulate(np.where(start, np.arange(a.shape[-1]), 0), axis=-1)  # position of the run's start
    first = np.empty_like(order)
    np.put_along_axis(first, order, np.take_along_axis(order, run, -1), -1)
    return first


def _duplicate_arms(lmu, a):
    """(N, K) bool: arm j repeats the (mu, a) of an earlier arm of its row (its branch mirrors that arm's)."""
    return _class_first(lmu, a) != np.arange(a.shape[-1])


def _solve_negative(mu, lmu, a, g0, beta, exhaustive=False):
    r"""Global minimizer (and, with ``exhaustive``, every stationary point) for negative-regime rows.

    Returns ``(rows, branch, pi, eta, log_loss, is_min)`` per evaluated candidate (see
    :func:`_score`), in the order of :func:`_neg_candidates` (principal first, then by
    arm). The stationary points are the principal root and one or two roots per
    bracket of :func:`_scan_brackets`; ``exhaustive`` evaluates them all (for
    :func:`lambert_stationary_points`). Otherwise a branch-and-bound search: each
    bracket carries a lower bound :math:`B` on the loss of every root in it
    (:func:`_loss_bound`); the principal root is evaluated first, then per row the
    brackets in increasing :math:`B`, 1, 2, 4, ... at a time, and a bracket is
    dropped once :math:`\log B > \log L_{\rm best} + 10^{-9}\max(1, |\log L_{\rm best}|)`,
    :math:`L_{\rm best}` the least loss evaluated so far in its row.

    **Exact.** A dropped bracket's roots all have loss :math:`\ge B > L_{\rm best}`,
    so none of them is (or ties with) the global minimizer; the tolerance exceeds
    the rounding of :math:`B` and of the losses. Hence the minimizer (ties: first in
    the order above) is the one the exhaustive search returns. One exception, by
    design: an arm whose :math:`(\mu_j, a_j)` repeats an earlier arm's
    (:func:`_duplicate_arms`) has the same branch up to swapping the two arms, so the
    same losses; only the first arm of such a class is searched. Where such a class
    holds the minimizer, the answer is its first arm, where the exhaustive search
    picks whichever of the equal losses rounds lowest (an equally global minimizer). Typically the
    smallest bound is the minimizer's and a handful of roots are evaluated, O(K)
    time each; the scan itself is O(K) per grid point and O(K) memory. At worst
    (all bounds below the minimum loss) every bracket is evaluated, as exhaustively.
    """
    N, K = a.shape
    cmax = -1.0 - np.where(np.isfinite(lmu), a, -np.inf).max(-1)
    r0, c0 = _principal_root(lmu, a, g0, cmax)
    b0 = np.full(r0.size, -1)
    found = [(r0, b0, np.zeros(r0.size, int), *_score(mu, lmu, a, g0, beta, r0, b0, c0))]  # key 0: first
    best = np.full(N, np.inf)
    np.fmin.at(best, r0, found[0][5])
    br, width = _scan_brackets(lmu, a, cmax), 1
    if not exhaustive:
        br = br.take(~_duplicate_arms(lmu, a)[br.row, br.arm])
    while br.row.size:
        if not exhaustive:
            tol = _PRUNE_TOL * np.maximum(1.0, np.abs(best[br.row]))  # logs of losses as large as ~1e300
            br = br.take(br.bound + 2.0 * np.log(beta[br.row]) <= best[br.row] + tol)
        rank = np.arange(br.row.size) - np.searchsorted(br.row, br.row)  # sorted by (row, bound)
        take = np.ones(br.row.size, bool) if exhaustive else rank < width
        rows, arms, c, key = _bracket_roots(lmu, a, br.take(take))
        found.append((rows, arms, key, *_score(mu, lmu, a, g0, beta, rows, arms, c)))
        np.fmin.at(best, rows, found[-1][5])
        br, width = br.take(~take), 2 * width
    lost = np.flatnonzero(~np.isin(np.arange(N), np.concatenate([f[0] for f in found])))
    if lost.size:  # a root at the branch point itself, between the two tests by rounding (see _neg_candidates)
        b0, last = np.full(lost.size, -1), np.full(lost.size, np.iinfo(int).max)
        found.append((lost, b0, last, *_score(mu, lmu, a, g0, beta, lost, b0, cmax[lost])))
    rows, branch, key, pi, eta, log_loss, is_min = (np.concatenate(v) for v in zip(*found, strict=True))
    if np.unique(rows).size < N:  # pragma: no cover - guarded by theory
        raise RuntimeError("negative regime: a bandit without any stationary point (please report)")
    order = np.lexsort((key, rows))
    return rows[order], branch[order], pi[order], eta[order], log_loss[order], is_min[order]


def lambert_log_ratio(a, eta, branch: int = 0):
    r"""The Lambert-tempered tilt :math:`\log u` solving :math:`\log u + \eta u = a`, elementwise.

    :math:`u = W_k(\eta e^{a})/\eta` (``branch`` k = 0 or -1); :math:`u = e^{a}` at
    :math:`\eta = 0` (the Gibbs tilt). For :math:`\eta > 0` it grows like
    :math:`\log(a/\eta)` instead of :math:`a`; for :math:`\eta < 0` it is real only
    while :math:`a \le -1 - \log(-\eta)` (the branch point), where both branches meet.
    The ``-1`` branch exists only for :math:`\eta < 0`.

    Parameters
    ----------
    a : array_like
        :math:`A/\beta`, nats.
    eta : array_like, broadcast against ``a``
    branch : {0, -1}

    Returns
    -------
    ndarray
        :math:`\log u`; NaN-free: raises ``ValueError`` where no real solution exists.
    """
    a = as_float_array(a, "a")
    eta = as_float_array(eta, "eta")
    branch = as_int(branch, "branch")
    if branch not in (0, -1):
        raise ValueError(f"branch must be 0 or -1, got {branch}")
    try:
        a, eta = np.broadcast_arrays(a, eta)
    except ValueError as err:
        raise ValueError(f"shapes of a {a.shape} and eta {eta.shape} do not broadcast") from err
    neg = eta < 0
    if branch == -1 and not neg.all():
        raise ValueError("branch=-1 (the W_{-1} branch) needs eta < 0 everywhere")
    if neg.any():
        x = a[neg] + np.log(-eta[neg])
        if np.any(x > -1.0):
            raise ValueError("no real solution: a > -1 - log(-eta) (past the branch point) for some entries of a, eta")
    return _tilt(a, eta, branch == -1)


def regime_of(mu, adv, beta):
    r"""Sign of :math:`\eta` for the regression objective, without solving: +1, 0 or -1.

    :math:`\mathrm{sign}\,\eta = \mathrm{sign}\log E_\mu[e^{A/\beta}]`: positive
    (pessimistic) when :math:`V < V^*_\beta`, negative (optimistic) when :math:`V > V^*_\beta`.
    Shapes as in :func:`lambert_target`; returns an int array of the batch shape.
    0 (boundary) where :math:`|g_0|` is below its own rounding level,
    :math:`16\epsilon\max|a|` for :math:`\max|a| \le 1` (so a tiny
    :math:`E_\mu[a]` at :math:`\beta \to \infty` keeps its sign) and
    :math:`16\epsilon\max(1, |\log\mu + a|)` otherwise; consistent with the sign of
    the ``eta`` that :func:`lambert_target` returns.
    """
    mu, a, _, batch = _prepare(mu, adv, beta)
    g0, noise = _g0_and_noise(mu, _logmu(mu), a)
    return np.where(np.abs(g0) <= noise, 0, np.sign(g0)).astype(int).reshape(batch)


def lambert_target(mu, adv, beta):
    r"""Global minimizer of :math:`\sum_y \mu_y(\beta\log(\pi_y/\mu_y) - A_y)^2` on the simplex.

    .. math::

        \pi_y = \mu_y\,\frac{W_k(\eta\, e^{A_y/\beta})}{\eta}, \qquad
        \eta = \mathrm{KL}(\mu\|\pi) + E_\mu[A]/\beta ,

    with :math:`k = 0` on every arm when :math:`\eta \ge 0` (the Gibbs target
    :math:`\mu e^{A/\beta}` at :math:`\eta = 0`), and :math:`k = -1` on at most one
    arm when :math:`\eta < 0` (see the module docstring for when and which).

    Parameters
    ----------
    mu : array_like, shape (..., K)
        Behaviour policy; arms on the last axis; rows sum to 1 (within 1e-9 for
        float64, within the dtype's rounding for float32: a torch softmax is
        accepted; renormalized in float64); zeros allowed (those arms stay at zero).
        NumPy arrays, lists and torch tensors (detached) alike.
    adv : array_like, shape (..., K)
        Advantages :math:`A = r - V`, in reward units; broadcast against ``mu``.
    beta : float or array_like, shape broadcastable to the batch shape ``(...)``
        Temperature of the log-ratio, finite and > 0, in reward units per nat
        (Python, NumPy or 0-d torch scalars).

    Returns
    -------
    pi : ndarray, shape (..., K)
        The induced target.
    eta : ndarray, shape (...)
        The scalar of the stationarity condition :math:`\beta\log u - A = -\beta\eta u`.

    Raises
    ------
    ValueError
        For negative, non-finite or unnormalized ``mu``, non-finite ``adv``,
        ``beta`` not finite and > 0, non-numeric or complex input, shapes that do
        not broadcast, or :math:`|A/\beta| > 10^{306}` (:data:`A_MAX`). Inside
        that domain the answer is exact to rounding (module docstring, "Numerics").
    """
    mu, a, beta, batch = _prepare(mu, adv, beta)
    pi, eta = _target_rows(mu, a, beta)
    return pi.reshape(batch + (mu.shape[-1],)), eta.reshape(batch)


def _target_rows(mu, a, beta):
    """:func:`lambert_target` on validated rows: ``mu`` (N, K) normalized, ``a = adv/beta`` (N, K), ``beta`` (N,)."""
    N, K = a.shape
    pi = np.empty((N, K))
    eta = np.empty(N)
    ok = np.empty(N, bool)
    todo = np.empty(N, bool)
    step = max(1, _CHUNK_ELEMENTS // K)
    shape = (4, min(step, N), K)
    work = (np.empty(shape), np.empty(shape, np.float32))
    for s in range(0, N, step):
        sl = slice(s, s + step)
        pi[sl], eta[sl], ok[sl], todo[sl] = _fast_chunk(mu[sl], a[sl], work)
    rest = np.flatnonzero(todo)  # gathered from every chunk: the slower paths run on few, large batches
    for s in range(0, rest.size, step):
        r = rest[s : s + step]
        pi[r], eta[r] = _solve_chunk(mu[r], a[r], beta[r], pi[r], eta[r], ok[r])
    return pi, eta


def _argmin_by_row(rows, loss, n):
    """Index into the candidate arrays of the smallest loss per row (ties: first candidate)."""
    order = np.lexsort((loss, rows))
    first = np.ones(order.size, bool)
    first[1:] = rows[order][1:] != rows[order][:-1]
    best = np.empty(n, int)
    best[rows[order][first]] = order[first]
    return best


def _first_of_mirrors(gidx, arms, valid, first):
    """Point ``gidx`` (in place) at the mirror image whose W_{-1} arm is the first of its class of equal (mu, a).

    Swapping two arms of equal (mu, a) maps a stationary point to one of the same loss; the losses
    of the two differ only by rounding, so the tie is broken as :func:`lambert_target` breaks it.
    """
    rows = np.arange(len(gidx))
    b = arms[rows, gidx]
    f = first[rows, np.maximum(b, 0)]
    match = valid & (arms == f[:, None])  # the candidates whose W_{-1} arm is that first arm
    move = (b >= 0) & (f != b) & match.any(-1)
    gidx[move] = match[move].argmax(-1)


def lambert_stationary_points(mu, adv, beta) -> StationaryPoints:
    r"""Every local minimum of the regression loss on the simplex, the global one marked.

    In the positive and boundary regimes there is exactly one (the global
    minimizer). In the negative regime the candidates are the all-principal
    solution (when it exists) and, for each arm ``j``, the solutions with arm
    ``j`` on the :math:`W_{-1}` branch that pass the second-order test. Shapes
    as in :func:`lambert_target`, with a candidate axis ``P`` before the arms,
    padded to the largest count in the batch by repeating the global minimizer.
    Candidates are compared by the logarithm of their loss (exact at every
    scale); a loss beyond float64 (:math:`\beta^2\eta^2 \sum\pi^2/\mu > 10^{308}`,
    e.g. ``adv ~ 1e200``) raises ``ValueError`` (:func:`lambert_target` still
    gives the global minimizer there). Arms with equal ``(mu, adv)`` give
    mirror-image minima of equal loss; ``global_index`` marks the one whose
    :math:`W_{-1}` arm comes first, the one :func:`lambert_target` returns.
    """
    mu, a, beta_b, batch = _prepare(mu, adv, beta)
    N, K = a.shape
    lmu = _logmu(mu)
    pi_g, eta_g = _target_rows(mu, a, beta_b)  # what lambert_target returns on these inputs
    cands = [[(pi_g[i], eta_g[i], -1)] for i in range(N)]
    g0, noise = _g0_and_noise(mu, lmu, a)
    neg = np.flatnonzero(g0 < -noise)
    if neg.size:
        for i in neg:
            cands[i] = []
        rows, branch, pi_c, eta_c, log_loss, is_min = _solve_negative(
            mu[neg], lmu[neg], a[neg], g0[neg], beta_b[neg], exhaustive=True
        )
        is_min[_argmin_by_row(rows, log_loss, neg.size)] = True  # the global minimizer (its test can sit at 0/0)
        for r, b, p, e in zip(rows[is_min], branch[is_min], pi_c[is_min], eta_c[is_min]):
            cands[neg[r]].append((p, e, int(b)))
    P = max(len(c) for c in cands)
    pis = np.empty((N, P, K))
    etas = np.empty((N, P))
    arms = np.empty((N, P), int)
    count = np.array([len(c) for c in cands])
    for i, c in enumerate(cands):
        for k in range(P):
            pis[i, k], etas[i, k], arms[i, k] = c[min(k, len(c) - 1)]
    # at a stationary point beta log u - A = -beta eta u, so the loss is beta^2 eta^2 sum_y pi_y^2/mu_y,
    # formed in logs (eta u and 1/mu can each be ~1e300)
    with np.errstate(divide="ignore", invalid="ignore"):
        lpi = np.log(pis)
        log_loss = (
            2.0 * np.log(beta_b)[:, None]
            + 2.0 * np.log(np.abs(etas))
            + logsumexp(np.where((pis > 0) & (mu[:, None, :] > 0), 2.0 * lpi - lmu[:, None, :], -np.inf))
        )
    if np.any(log_loss > _LOG_MAX):
        i = int(np.argwhere(log_loss > _LOG_MAX)[0][0])
        where = tuple(int(j) for j in np.unravel_index(i, batch)) if batch else ()
        raise ValueError(
            f"the regression loss of the stationary points of bandit {where} is ~1e{log_loss.max() / math.log(10):.0f} "
            f"(beta^2 (eta u)^2 with |adv/beta| up to {np.abs(a).max():.3g}), beyond float64; lambert_target "
            f"gives the global minimizer without it, or pass adv and beta with a smaller |adv|"
        )
    loss = np.exp(log_loss)
    valid = np.arange(P)[None, :] < count[:, None]
    gidx = np.where(valid, log_loss, np.inf).argmin(-1)
    _first_of_mirrors(gidx, arms, valid, _class_first(lmu, a))
    for i in range(N):  # pad with the global minimizer
        pis[i, count[i]:], etas[i, count[i]:], arms[i, count[i]:] = pis[i, gidx[i]], etas[i, gidx[i]], arms[i, gidx[i]]
        loss[i, count[i]:] = loss[i, gidx[i]]
    return StationaryPoints(
        pi=pis.reshape(batch + (P, K)),
        eta=etas.reshape(batch + (P,)),
        loss=loss.reshape(batch + (P,)),
        branch_arm=arms.reshape(batch + (P,)),
        count=count.reshape(batch),
        global_index=gidx.reshape(batch),
    )


def relaxed_lambert_target(mu, adv, beta):
    r"""Minimizer of :math:`\sum_y \mu_y(\beta\log(\pi_y/\mu_y) - A_y)^2` over :math:`\{\pi \ge 0: \sum_y \pi_y \le 1\}`.

    The problem of a policy that may leave mass off the behaviour's support
    (module docstring): convex in :math:`s = \log(\pi/\mu)`, with KKT conditions
    :math:`\log u_y + \eta u_y = A_y/\beta`, :math:`\eta \ge 0`,
    :math:`\eta(1 - \sum_y\pi_y) = 0`. Hence

    .. math::

        \pi = \text{lambert\_target}(\mu, A, \beta) \ \text{if}\ g_0 > 0, \qquad
        \pi = \mu\, e^{A/\beta},\ \eta = 0 \ \text{otherwise},

    with :math:`g_0 = \log E_\mu e^{A/\beta}`; the mass off the support is
    :math:`1 - \sum_y \pi_y = 1 - e^{\min(g_0, 0)}`.

    Parameters
    ----------
    mu, adv, beta
        As in :func:`lambert_target`.

    Returns
    -------
    pi : ndarray, shape (..., K)
        The sub-stochastic target (rows sum to :math:`e^{\min(g_0, 0)} \le 1`).
    eta : ndarray, shape (...)
        The multiplier, :math:`\ge 0`.
    leak : ndarray, shape (...)
        :math:`1 - \sum_y \pi_y`, the mass left off the support.
    """
    mu_, a, beta_, batch = _prepare(mu, adv, beta)
    lmu = _logmu(mu_)
    g0, noise = _g0_and_noise(mu_, lmu, a)
    pos = g0 > noise
    pi = np.zeros_like(a)
    pi[~pos] = np.exp(lmu[~pos] + a[~pos])  # mu e^a, exact at eta = 0 (log E_mu e^a <= 0: no overflow)
    eta = np.zeros(len(a))
    if pos.any():
        pi[pos], eta[pos] = _target_rows(mu_[pos], a[pos], beta_[pos])  # mu_ as lambert_target normalizes it
    leak = np.where(pos, 0.0, -np.expm1(np.minimum(g0, 0.0)))
    return pi.reshape(batch + (a.shape[-1],)), eta.reshape(batch), leak.reshape(batch)
