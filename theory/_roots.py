"""Vectorized scalar root finding and the three real Lambert branches in log form.

Everything here works on arrays of independent scalar problems (any shape) and
never leaves float64 range: the Lambert functions are evaluated through the
logarithm of their value, so arguments up to ``exp(1e6)`` are fine.

Notation. The principal branch of Lambert W at ``z = e^x`` is the Wright omega
function :math:`\\omega(x)`, the solution of :math:`\\omega + \\log\\omega = x`.
For the negative regime we need :math:`W_k(-e^x)` on both real branches,
:math:`k = 0` (values in ``[-1, 0)``) and :math:`k = -1` (values ``<= -1``),
which exist for :math:`x \\le -1`.
"""

from __future__ import annotations

import numpy as np


def safeguarded_newton(fun, lo, hi, x0=None, *, xtol=4e-16, maxiter=200, sign_lo=None, bracket=False):
    """Solve ``fun(x) = 0`` on brackets ``[lo, hi]`` for a 1-D array of problems.

    Newton steps are taken when they land strictly inside the current bracket,
    bisection otherwise; the bracket shrinks at every iteration, so the method
    converges whenever the bracket is valid. A problem stops, at its current
    point, when ``f = 0``, when ``|f|`` is at its rounding level (the optional
    third output of ``fun``), or when the Newton correction ``f/f'`` (finite
    ``f'``) is below ``xtol`` wherever it lands (a correction that rounds onto
    the bracket end just moved to ``x`` is convergence: bisecting from there
    would only walk the far end in); it stops after its step when the bracket
    or the step is below ``xtol``.

    Parameters
    ----------
    fun : callable
        ``fun(x, idx) -> (f, df)`` or ``(f, df, f_tol)`` for the problems
        ``idx`` (an integer index array); ``x`` holds their current points and
        ``f_tol`` (broadcast against ``f``) is the rounding level of ``f``
        there: ``|f| <= f_tol`` is a root to working precision.
    lo, hi : ndarray, shape (N,)
        Brackets: ``f(lo)`` and ``f(hi)`` have opposite signs or one is zero.
    x0 : ndarray, shape (N,), optional
        Starting points (clipped into the brackets; midpoints by default).
    xtol : float
        Tolerance on ``x``, relative to ``max(|x|, 1)``.
    maxiter : int
        Iterations at most.
    sign_lo : float or ndarray, shape (N,), optional
        The sign of ``f`` at ``lo`` (``+1`` for a decreasing ``f``); by default
        ``f(lo)`` is evaluated. Pass it where ``f(lo)`` is only known to lie
        within rounding of its sign: a point with ``f`` of that sign moves
        ``lo``, any other moves ``hi``.
    bracket : bool
        Also return the final brackets.

    Returns
    -------
    x : ndarray, shape (N,)
    lo, hi : ndarray, shape (N,)
        Only with ``bracket=True``: the final brackets (they hold ``x``).
    """
    lo = np.array(lo, dtype=np.float64, copy=True)
    hi = np.array(hi, dtype=np.float64, copy=True)
    x = 0.5 * (lo + hi) if x0 is None else np.clip(np.asarray(x0, dtype=np.float64), lo, hi)
    if sign_lo is None:
        sign_lo = np.sign(fun(lo, np.arange(lo.size))[0])
    sign_lo = np.broadcast_to(np.asarray(sign_lo, dtype=np.float64), lo.shape)
    idx = np.arange(lo.size)
    for _ in range(maxiter):
        if idx.size == 0:
            break
        x[idx], lo[idx], hi[idx], done = _newton_step(fun, x[idx], lo[idx], hi[idx], idx, sign_lo[idx], xtol)
        idx = idx[~done]
    return (x, lo, hi) if bracket else x


def _newton_step(fun, xa, la, ha, idx, sign_lo, xtol):
    """One safeguarded Newton step of :func:`safeguarded_newton` on the problems ``idx``: (x, lo, hi, done)."""
    out = fun(xa, idx)
    f, df = out[0], out[1]
    zero = f == 0
    at_rounding = zero if len(out) < 3 else zero | (np.abs(f) <= out[2])
    same = np.sign(f) == sign_lo
    la = np.where(same & ~zero, xa, la)
    ha = np.where(~same & ~zero, xa, ha)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        step = xa - f / df
    ok = np.isfinite(step) & (step > la) & (step < ha)
    # a Newton correction below the tolerance is convergence, even where it does not land strictly
    # inside the bracket (it rounds onto the end just set to xa): bisecting from there would only
    # walk the far end in
    tiny = np.isfinite(step) & np.isfinite(df) & (np.abs(step - xa) <= 0.5 * xtol * np.maximum(np.abs(xa), 1.0))
    stop = at_rounding | tiny
    xn = np.where(stop, xa, np.where(ok, step, 0.5 * (la + ha)))
    scale = np.maximum(np.abs(xn), 1.0)
    done = stop | (ha - la <= xtol * scale) | (np.abs(xn - xa) <= 0.5 * xtol * scale)
    return xn, la, ha, done


def log_omega(x):
    """``log(omega(x))``: the log of the Wright omega function, ``t + exp(t) = x``.

    Newton's method on the increasing convex function ``t + e^t - x`` started to
    the right of the root converges monotonically; the start ``t = x`` (x < 1)
    or ``t = log x`` (x >= 1) is always to the right.
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.where(x < 1.0, x, np.log(np.maximum(x, 1.0)))
    for _ in range(100):
        w = np.exp(t)
        step = (t + w - x) / (1.0 + w)
        t = t - step
        if np.all(np.abs(step) <= 4e-16 * np.maximum(np.abs(t), 1.0)):
            break
    return t


def log_neg_lambert(x, branch: int):
    r"""``t = log(-W_k(-e^x))`` for ``x <= -1``: the roots of ``t - e^t = x``.

    ``branch=0`` gives the root ``t <= 0`` (principal branch, ``W_0`` in
    ``[-1, 0)``); ``branch=-1`` gives ``t >= 0`` (``W_{-1} <= -1``). At the
    branch point ``x = -1`` both are ``t = 0``.

    Written as :math:`g(t) = e^t - t - 1 = d` with :math:`d = -1 - x \ge 0`, solved
    by Halley's method from a start that is already close: the branch-point
    series :math:`-W = 1 - s + s^2/3 - 11s^3/72 + 43s^4/540`,
    :math:`s = \pm\sqrt{2(1 - e^{-d})}` (+ for ``W_0``) when :math:`|s| < 0.7`; away
    from it :math:`t = x + e^{x + e^x}` (``W_0``) and :math:`t = \log(\log(\log(-x) - x) - x)`
    (``W_{-1}``, the fixed point of :math:`t = \log(t - x)` iterated twice). Three to
    five iterations reach the rounding level; iterates are kept on their branch
    (``[x, 0]``, ``[0, 2\log(1 - x) + 2]``). Every problem runs the same
    iterations (no per-element bookkeeping: the callers make many small calls).
    """
    x = np.asarray(x, dtype=np.float64)
    if np.any(x > -1.0):
        raise ValueError("log_neg_lambert needs x <= -1 (real branches of W(-e^x))")
    if branch not in (0, -1):
        raise ValueError(f"branch must be 0 or -1, got {branch}")
    d = -1.0 - x
    s = np.sqrt(-2.0 * np.expm1(-d))
    near = s < 0.7
    if branch == 0:
        lo, hi = x, 0.0
        far = x + np.exp(x + np.exp(x))
    else:
        s = -s
        lo, hi = 0.0, 2.0 * np.log1p(d) + 2.0
        with np.errstate(divide="ignore"):
            far = np.log(np.log(np.log(np.maximum(-x, 1.0)) - x) - x)
    series = np.log1p(s * (-1.0 + s * (1.0 / 3.0 + s * (-11.0 / 72.0 + s * (43.0 / 540.0)))))
    t = np.clip(np.where(near, series, far), lo, hi)
    for _ in range(8):
        e = np.expm1(t)
        f = e - t - d  # g(t) - d; g' = e^t - 1 = e, g'' = e^t = e + 1
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            r = f / e  # Halley 2 f g' / (2 g'^2 - f g''), divided through by g'^2 (no overflow at large t)
            step = 2.0 * r / (2.0 - r * (1.0 + 1.0 / e))
        step = np.where(np.isfinite(step), step, 0.0)
        t = np.clip(t - step, lo, hi)
        if np.all(np.abs(step) <= 1e-15 * np.maximum(np.abs(t), 1.0)):
            break
    return t
