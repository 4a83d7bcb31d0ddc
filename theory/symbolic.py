r"""Symbolic derivations for the ratio-free regression objective (one prompt, K arms).

Setting and notation
--------------------
A single prompt has ``K`` arms :math:`y`. The behaviour policy is
:math:`\mu_y > 0`, the advantage is :math:`A_y`, the temperature is
:math:`\beta > 0`. For a policy :math:`\pi` write the ratio
:math:`u_y = \pi_y / \mu_y` and the log-ratio :math:`s_y = \log u_y`. The
ratio-free regression objective is

.. math::

    L(\pi) = \sum_y \mu_y \bigl(\beta \log(\pi_y/\mu_y) - A_y\bigr)^2,
    \qquad \text{minimized over } \sum_y \pi_y = 1 .

What is derived here (with sympy, not typed in)
-----------------------------------------------
1. **Stationarity** (:func:`stationarity_condition`). The Lagrangian
   :math:`L + \lambda(\sum_y \pi_y - 1)` is written for a general number of
   arms ``K`` with :class:`sympy.IndexedBase`, differentiated with respect to a
   generic arm :math:`\pi_j`, and rewritten with :math:`\pi_j = \mu_j u` and
   :math:`\lambda = 2\beta^2\eta`, which gives
   :math:`\beta\log u - A = -\beta\eta u`.
2. **Lambert form** (:func:`lambert_solution`, :func:`check_lambert_solution`,
   :func:`gibbs_limit`). :func:`sympy.solve` on :math:`\log u + \eta u = A/\beta`
   returns :math:`u = W(\eta e^{A/\beta})/\eta`; the residual of the
   stationarity condition is shown to simplify to 0 for both real branches
   :math:`W_0` and :math:`W_{-1}` via the defining identity
   :math:`W e^{W} = z`; the limit :math:`\eta \to 0` (from both sides) is the
   Gibbs ratio :math:`e^{A/\beta}`.
3. **eta identity** (:func:`eta_identity`, :func:`eta_identity_general`,
   :func:`check_eta_identity`). The :math:`\mu`-expectation of the stationarity
   condition together with :math:`\sum_y \mu_y u_y = 1` gives
   :math:`\eta = \mathrm{KL}(\mu\|\pi) + \mathbb{E}_\mu[A]/\beta`, shown for
   explicit ``K`` and for symbolic ``K`` with :class:`sympy.Sum`.
4. **Ratio derivative** (:func:`ratio_derivative`,
   :func:`constraint_derivative`). Implicit differentiation gives
   :math:`du/d\eta = -u^2/(1+\eta u)`, hence
   :math:`\frac{d}{d\eta}\sum_y \mu_y u_y = -S` with
   :math:`S = \sum_y \mu_y u_y^2/(1+\eta u_y)`.
5. **Second-order condition** (:func:`lagrangian_hessian_s`,
   :func:`second_order_condition`, :func:`second_order_condition_two_arms`).
   In the variables :math:`s_y` the Hessian of the Lagrangian is
   :math:`2\beta^2\,\mathrm{diag}(\mu_y(1+\eta u_y))`; restricted to the tangent
   space :math:`\{v : \sum_y \mu_y u_y v_y = 0\}` it satisfies exact determinant
   identities (K = 2, 3) from which: if exactly one arm has
   :math:`1+\eta u_j < 0`, the restricted Hessian is positive semidefinite iff
   :math:`S \le 0`. The factor :math:`1 + \eta u = 1 + W_k(\eta e^{A/\beta})`
   (:func:`curvature_factor`) is :math:`\ge 0` on :math:`W_0` and
   :math:`\le 0` on :math:`W_{-1}`.
6. :func:`latex_report` collects everything as a LaTeX fragment.

Re-running
----------
``python -m theory.symbolic`` prints the LaTeX report (every entry in it is
recomputed). The boolean ``check_*`` functions re-run each verification;
``pytest tests/test_symbolic.py`` runs them together with mpmath cross-checks.

All symbols are module-level constants with assumptions: :data:`beta`,
:data:`mu` and :data:`u` positive, :data:`A`, :data:`eta`, :data:`lam`, :data:`s`
and :data:`w` real. Functions are pure and build fresh expressions on every call.
"""

from __future__ import annotations

from typing import NamedTuple

import sympy as sp

__all__ = [
    "beta",
    "eta",
    "lam",
    "u",
    "mu",
    "A",
    "s",
    "w",
    "arm_symbols",
    "lagrangian",
    "lagrangian_derivative",
    "stationarity_condition",
    "stationarity_residual",
    "lambert_solution",
    "check_lambert_solution",
    "gibbs_limit",
    "check_gibbs_limit",
    "curvature_factor",
    "check_curvature_factor",
    "eta_identity",
    "eta_identity_general",
    "check_eta_identity",
    "ratio_derivative",
    "check_ratio_derivative",
    "constraint_derivative",
    "check_constraint_derivative",
    "lagrangian_hessian_s",
    "SecondOrderCondition",
    "second_order_condition",
    "second_order_condition_two_arms",
    "check_second_order_condition",
    "latex_report",
]

# --------------------------------------------------------------------------
# Module-level symbols (immutable sympy objects).
# --------------------------------------------------------------------------
#: Temperature :math:`\beta > 0`.
beta = sp.Symbol("beta", positive=True)
#: Scaled multiplier :math:`\eta = \lambda / (2\beta^2)` (real, any sign).
eta = sp.Symbol("eta", real=True)
#: Lagrange multiplier :math:`\lambda` of :math:`\sum_y \pi_y = 1`.
lam = sp.Symbol("lambda", real=True)
#: Ratio :math:`u = \pi/\mu > 0` of a generic arm.
u = sp.Symbol("u", positive=True)
#: Behaviour probability :math:`\mu > 0` of a generic arm.
mu = sp.Symbol("mu", positive=True)
#: Advantage :math:`A` of a generic arm.
A = sp.Symbol("A", real=True)
#: Log-ratio :math:`s = \log u` of a generic arm.
s = sp.Symbol("s", real=True)
#: Real value of a Lambert function, :math:`w = W_k(\eta e^{A/\beta})`.
w = sp.Symbol("w", real=True)

# Symbols used only for the general-K (indexed) derivations.
_K = sp.Symbol("K", integer=True, positive=True)
_y = sp.Symbol("y", integer=True, positive=True)
_j = sp.Symbol("j", integer=True, positive=True)
_m = sp.Symbol("m", integer=True, nonnegative=True)
_MU = sp.IndexedBase("mu", positive=True)
_PI = sp.IndexedBase("pi", positive=True)
_U = sp.IndexedBase("u", positive=True)
_AA = sp.IndexedBase("A", real=True)

_REAL_BRANCHES = (0, -1)


def arm_symbols(K: int) -> tuple[tuple[sp.Symbol, ...], tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    r"""Explicit per-arm symbols for a finite number of arms.

    Parameters
    ----------
    K : int
        Number of arms, ``K >= 1``.

    Returns
    -------
    mus, us, As : tuple of tuple of sympy.Symbol
        :math:`(\mu_1,\dots,\mu_K)` positive, :math:`(u_1,\dots,u_K)` positive,
        :math:`(A_1,\dots,A_K)` real.
    """
    K = _check_K(K, minimum=1)
    mus = sp.symbols(f"mu1:{K + 1}", positive=True)
    us = sp.symbols(f"u1:{K + 1}", positive=True)
    As = sp.symbols(f"A1:{K + 1}", real=True)
    return tuple(mus), tuple(us), tuple(As)


def _check_K(K, minimum: int) -> int:
    if isinstance(K, bool) or not isinstance(K, int):
        raise ValueError(f"K must be an int, got {type(K).__name__}")
    if K < minimum:
        raise ValueError(f"K must be >= {minimum}, got {K}")
    return K


def _check_branch(branch) -> int:
    if isinstance(branch, bool) or not isinstance(branch, int) or branch not in _REAL_BRANCHES:
        raise ValueError(f"branch must be 0 or -1 (the real branches of LambertW), got {branch!r}")
    return branch


def _is_zero(expr) -> bool:
    """True iff ``expr`` simplifies to exactly 0 (None-safe, never raises on unknowns)."""
    return sp.simplify(expr) == 0


# --------------------------------------------------------------------------
# 1. Stationarity
# --------------------------------------------------------------------------
def lagrangian() -> sp.Expr:
    r"""Lagrangian of the ratio-free objective for a symbolic number of arms.

    .. math::

        \mathcal{L}(\pi, \lambda) = \sum_{y=1}^{K} \mu_y
        \bigl(\beta \log(\pi_y/\mu_y) - A_y\bigr)^2
        + \lambda\Bigl(\sum_{y=1}^{K} \pi_y - 1\Bigr)

    Returns
    -------
    sympy.Expr
        The Lagrangian with ``IndexedBase`` objects ``mu``, ``pi``, ``A``,
        summation index ``y`` and symbolic ``K``.
    """
    term = _MU[_y] * (beta * sp.log(_PI[_y] / _MU[_y]) - _AA[_y]) ** 2
    return sp.Sum(term, (_y, 1, _K)) + lam * (sp.Sum(_PI[_y], (_y, 1, _K)) - 1)


def lagrangian_derivative() -> sp.Expr:
    r"""Partial derivative of :func:`lagrangian` with respect to a generic arm :math:`\pi_j`.

    sympy differentiates the indexed sums (producing Kronecker deltas), the
    sums are evaluated, and the range condition :math:`j \le K` is discharged by
    writing :math:`K = j + m` with :math:`m \ge 0`. The result is

    .. math::

        \frac{\partial \mathcal{L}}{\partial \pi_j}
        = \frac{2\beta\mu_j}{\pi_j}\bigl(\beta\log(\pi_j/\mu_j) - A_j\bigr) + \lambda .

    Returns
    -------
    sympy.Expr
        The derivative, in the indexed objects ``mu[j]``, ``pi[j]``, ``A[j]``.
    """
    d = sp.diff(lagrangian(), _PI[_j]).doit()
    d = sp.piecewise_fold(d).subs(_K, _j + _m)
    if d.has(sp.Piecewise):  # pragma: no cover - depends on sympy's evaluation of j <= j + m
        raise RuntimeError(f"could not discharge the range condition j <= K in {d}")
    return d


def stationarity_residual() -> sp.Expr:
    r"""Normalized stationarity residual of a generic arm, derived from the Lagrangian.

    Starting from :func:`lagrangian_derivative`, substitute
    :math:`\pi_j = \mu_j u`, :math:`\lambda = 2\beta^2\eta` and multiply by the
    positive factor :math:`\pi_j/(2\beta\mu_j)`:

    .. math::

        r(u) = \frac{\pi_j}{2\beta\mu_j}\,\frac{\partial\mathcal{L}}{\partial\pi_j}
        = \beta\log u - A + \beta\eta u .

    Returns
    -------
    sympy.Expr
        :math:`r` in the module symbols ``beta``, ``eta``, ``u``, ``A``.
    """
    d = lagrangian_derivative()
    d = d.subs(_PI[_j], _MU[_j] * u).subs(lam, 2 * beta**2 * eta)
    d = d.subs({_MU[_j]: mu, _AA[_j]: A})
    r = sp.expand(sp.expand_log(d * (mu * u) / (2 * beta * mu)))
    return r


def stationarity_condition() -> sp.Eq:
    r"""Stationarity condition of the Lagrangian for one arm.

    Setting :math:`\partial\mathcal{L}/\partial\pi_j = 0` (see
    :func:`lagrangian_derivative` for the raw derivative and
    :func:`stationarity_residual` for the normalized one) and solving for the
    advantage gives :math:`A = \beta\log u + \beta\eta u`; with
    :math:`\eta = \lambda/(2\beta^2)`:

    .. math::

        \beta \log u_y - A_y = -\beta\,\eta\,u_y .

    Returns
    -------
    sympy.Eq
        ``Eq(beta*log(u) - A, -beta*eta*u)``; the right-hand side is computed
        from the solved Lagrangian derivative, not typed in.
    """
    r = stationarity_residual()
    (A_sol,) = sp.solve(r, A)
    lhs = beta * sp.log(u) - A
    rhs = sp.simplify(lhs.subs(A, A_sol))
    return sp.Eq(lhs, rhs, evaluate=False)


# --------------------------------------------------------------------------
# 2. Lambert form
# --------------------------------------------------------------------------
def _lambert_argument() -> sp.Expr:
    return eta * sp.exp(A / beta)


def lambert_solution(branch: int = 0) -> sp.Expr:
    r"""Solution of the stationarity condition for the ratio :math:`u`.

    :func:`sympy.solve` applied to :math:`\log u + \eta u = A/\beta` (the
    stationarity condition divided by :math:`\beta`) returns the principal
    branch; the other real branch is obtained by changing the branch index:

    .. math::

        u = \frac{W_k\!\left(\eta\, e^{A/\beta}\right)}{\eta},
        \qquad k \in \{0, -1\},\ \eta \ne 0 .

    For :math:`\eta > 0` only :math:`W_0` is real; for
    :math:`-e^{-1-A/\beta} \le \eta < 0` both are real. At :math:`\eta = 0` the
    solution is the Gibbs ratio, see :func:`gibbs_limit`.

    Parameters
    ----------
    branch : {0, -1}
        Branch index ``k`` of :class:`sympy.LambertW`.

    Returns
    -------
    sympy.Expr
        :math:`u` as an expression in ``eta``, ``A``, ``beta``.
    """
    branch = _check_branch(branch)
    x = sp.Symbol("x")  # no assumptions: do not let solve discard candidates
    sols = sp.solve(sp.log(x) + eta * x - A / beta, x)
    if len(sols) != 1 or not sols[0].has(sp.LambertW):  # pragma: no cover - guards a sympy change
        raise RuntimeError(f"unexpected solve output {sols}")
    sol = sols[0]
    if branch != 0:
        sol = sol.replace(lambda e: isinstance(e, sp.LambertW), lambda e: sp.LambertW(e.args[0], branch))
    return sol


def _residual(expr: sp.Expr) -> sp.Expr:
    r"""Simplified residual of :math:`\log u + \eta u - A/\beta` at :math:`u =` ``expr``.

    Every ``LambertW(eta*exp(A/beta), k)`` in the substituted residual is
    replaced by a real symbol :math:`w`, and :math:`\eta` is eliminated with the
    defining identity :math:`w e^{w} = \eta e^{A/\beta}`, i.e.
    :math:`\eta = w e^{w - A/\beta}` (valid for :math:`w \ne 0` on either real
    branch). A Lambert function with any other argument is left in place, so a
    wrong candidate does not reduce to 0.

    Parameters
    ----------
    expr : sympy.Expr
        Candidate ratio :math:`u(\eta, A, \beta)`.

    Returns
    -------
    sympy.Expr
        The simplified residual; exactly 0 iff the check succeeds.
    """
    z = _lambert_argument()
    r = sp.log(expr) + eta * expr - A / beta
    r = r.replace(
        lambda e: isinstance(e, sp.LambertW) and sp.simplify(e.args[0] - z) == 0,
        lambda e: w,
    )
    r = r.subs(eta, w * sp.exp(w - A / beta))
    return sp.simplify(sp.expand_log(sp.powsimp(r, force=False)))


def check_lambert_solution(branch: int = 0) -> bool:
    r"""Verify that :func:`lambert_solution` solves the stationarity condition.

    Substitutes :math:`u = W_k(z)/\eta`, :math:`z = \eta e^{A/\beta}`, into
    :math:`\log u + \eta u - A/\beta` and simplifies with
    :math:`W_k(z) e^{W_k(z)} = z` (see :func:`_residual`):

    .. math::

        \log\frac{w}{w e^{w - A/\beta}} + w - \frac{A}{\beta}
        = \Bigl(\frac{A}{\beta} - w\Bigr) + w - \frac{A}{\beta} = 0 .

    Parameters
    ----------
    branch : {0, -1}

    Returns
    -------
    bool
        True iff the residual simplifies to exactly 0.
    """
    return _residual(lambert_solution(branch)) == 0


def gibbs_limit() -> sp.Expr:
    r"""Limit :math:`\eta \to 0` of the principal Lambert solution.

    .. math::

        \lim_{\eta \to 0} \frac{W_0(\eta e^{A/\beta})}{\eta} = e^{A/\beta} ,

    computed with :func:`sympy.limit` (two-sided: from :math:`\eta \to 0^+`).
    See :func:`check_gibbs_limit` for the two one-sided limits and the series.

    Returns
    -------
    sympy.Expr
        ``exp(A/beta)``.
    """
    return sp.limit(lambert_solution(0), eta, 0, "+")


def check_gibbs_limit() -> bool:
    r"""Verify :math:`\lim_{\eta\to 0^\pm} W_0(\eta e^{A/\beta})/\eta = e^{A/\beta}`.

    Checks both one-sided limits and that the Taylor series in :math:`\eta`
    starts :math:`e^{A/\beta} - \eta e^{2A/\beta} + O(\eta^2)`. Also checks
    that :math:`e^{A/\beta}` solves the stationarity condition at
    :math:`\eta = 0`.

    Returns
    -------
    bool
    """
    sol = lambert_solution(0)
    target = sp.exp(A / beta)
    plus = sp.limit(sol, eta, 0, "+")
    minus = sp.limit(sol, eta, 0, "-")
    ser = sp.series(sol, eta, 0, 2).removeO()
    at_zero = (sp.log(target) - A / beta)  # eta = 0 residual
    return (
        _is_zero(plus - target)
        and _is_zero(minus - target)
        and _is_zero(ser - (target - eta * sp.exp(2 * A / beta)))
        and _is_zero(at_zero)
        and _is_zero(gibbs_limit() - target)
    )


def curvature_factor(branch: int = 0) -> sp.Expr:
    r"""The factor :math:`1 + \eta u` on a Lambert branch.

    With :math:`u = W_k(z)/\eta`,

    .. math::

        1 + \eta u = 1 + W_k\!\left(\eta e^{A/\beta}\right) .

    The real branches are the inverses of :math:`w \mapsto w e^{w}` on either
    side of its critical point :math:`w = -1` (where
    :math:`\tfrac{d}{dw} w e^{w} = (1+w)e^{w} = 0`): :math:`W_0 \ge -1` and
    :math:`W_{-1} \le -1`. Hence :math:`1+\eta u \ge 0` on :math:`W_0` and
    :math:`1 + \eta u \le 0` on :math:`W_{-1}` (strict away from the branch
    point :math:`z = -1/e`). The range of each branch is a property of the
    branch definition; it is not re-derived symbolically here.

    Parameters
    ----------
    branch : {0, -1}

    Returns
    -------
    sympy.Expr
        ``1 + LambertW(eta*exp(A/beta), branch)``.
    """
    return sp.simplify(1 + eta * lambert_solution(branch))


def check_curvature_factor(branch: int = 0) -> bool:
    r"""Verify :math:`1+\eta u = 1 + W_k(z)` and that :math:`w = -1` is the critical point of :math:`w e^{w}`.

    Returns
    -------
    bool
    """
    branch = _check_branch(branch)
    expected = 1 + sp.LambertW(_lambert_argument(), branch)
    crit = sp.solve(sp.diff(w * sp.exp(w), w), w)
    return _is_zero(curvature_factor(branch) - expected) and crit == [-1]


# --------------------------------------------------------------------------
# 3. eta identity
# --------------------------------------------------------------------------
def eta_identity(K: int = 3) -> sp.Expr:
    r"""Difference :math:`\eta - \mathrm{KL}(\mu\|\pi) - \mathbb{E}_\mu[A]/\beta` at a stationary point, explicit ``K``.

    With :math:`\mathrm{KL}(\mu\|\pi) = -\sum_y \mu_y \log u_y` and
    :math:`\mathbb{E}_\mu[A] = \sum_y \mu_y A_y`, the stationarity condition
    :math:`A_y = \beta\log u_y + \beta\eta u_y` (solved from
    :func:`stationarity_condition`, one arm at a time) is substituted, giving
    :math:`\eta\,(1 - \sum_y \mu_y u_y)`; the constraint
    :math:`\sum_y \mu_y u_y = 1` is then imposed by eliminating
    :math:`\mu_K = (1 - \sum_{y<K}\mu_y u_y)/u_K`. The result is identically 0,
    i.e.

    .. math::

        \eta = \mathrm{KL}(\mu\|\pi) + \frac{\mathbb{E}_\mu[A]}{\beta} .

    Parameters
    ----------
    K : int
        Number of arms (``K >= 1``).

    Returns
    -------
    sympy.Expr
        The simplified difference (``0`` when the derivation succeeds).
    """
    mus, us, As = arm_symbols(K)
    eq = stationarity_condition()
    stat = {}
    for m_, u_, A_ in zip(mus, us, As):
        (A_sol,) = sp.solve(eq.subs({u: u_, A: A_}), A_)
        stat[A_] = A_sol
    kl = -sum(m_ * sp.log(u_) for m_, u_ in zip(mus, us))
    ea = sum(m_ * A_ for m_, A_ in zip(mus, As))
    diff = eta - kl - ea / beta
    diff = sp.expand(diff.subs(stat))
    constraint_mu_K = (1 - sum(m_ * u_ for m_, u_ in zip(mus[:-1], us[:-1]))) / us[-1]
    return sp.simplify(diff.subs(mus[-1], constraint_mu_K))


def _eta_identity_expectation(K: int) -> sp.Expr:
    r""":math:`\sum_y \mu_y r_y - \beta(\eta - \mathrm{KL} - \mathbb{E}_\mu[A]/\beta)` under :math:`\sum\mu u = 1` (explicit K)."""
    mus, us, As = arm_symbols(K)
    r = stationarity_residual()
    total = sum(m_ * r.subs({u: u_, A: A_}) for m_, u_, A_ in zip(mus, us, As))
    kl = -sum(m_ * sp.log(u_) for m_, u_ in zip(mus, us))
    ea = sum(m_ * A_ for m_, A_ in zip(mus, As))
    diff = sp.expand(total - beta * (eta - kl - ea / beta))
    constraint_mu_K = (1 - sum(m_ * u_ for m_, u_ in zip(mus[:-1], us[:-1]))) / us[-1]
    return sp.simplify(diff.subs(mus[-1], constraint_mu_K))


def eta_identity_general() -> sp.Expr:
    r"""The eta identity for a symbolic number of arms ``K`` (``Sum``/``IndexedBase``).

    The :math:`\mu`-expectation of the normalized residual
    :math:`r_y = \beta\log u_y - A_y + \beta\eta u_y` is split by linearity,
    constants are factored out of the sums, and
    :math:`\sum_{y=1}^K \mu_y u_y = 1` is substituted:

    .. math::

        \sum_{y=1}^{K}\mu_y r_y
        = \beta\eta - \beta\,\mathrm{KL}(\mu\|\pi) - \mathbb{E}_\mu[A]
        = \beta\Bigl(\eta - \mathrm{KL}(\mu\|\pi) - \frac{\mathbb{E}_\mu[A]}{\beta}\Bigr).

    Since :math:`r_y = 0` at a stationary point, the left side vanishes.

    Returns
    -------
    sympy.Expr
        :math:`\sum_y \mu_y r_y - \beta(\eta - \mathrm{KL} - \mathbb{E}_\mu[A]/\beta)`
        after the substitution; 0 when the derivation succeeds.
    """
    from sympy.simplify.simplify import factor_sum

    r = stationarity_residual().subs({u: _U[_y], A: _AA[_y]})
    total = sp.Sum(sp.expand(_MU[_y] * r), (_y, 1, _K)).expand()
    total = sp.Add(*[factor_sum(t) if isinstance(t, sp.Sum) else t for t in sp.Add.make_args(sp.expand(total))])
    total = total.subs(sp.Sum(_MU[_y] * _U[_y], (_y, 1, _K)), 1)
    kl = -sp.Sum(_MU[_y] * sp.log(_U[_y]), (_y, 1, _K))
    ea = sp.Sum(_MU[_y] * _AA[_y], (_y, 1, _K))
    return sp.expand(total - beta * (eta - kl - ea / beta))


def check_eta_identity(K: int = 3) -> bool:
    r"""Verify :math:`\eta = \mathrm{KL}(\mu\|\pi) + \mathbb{E}_\mu[A]/\beta` for ``K`` arms.

    Three independent reductions must all give exactly 0:

    * :func:`eta_identity` (stationarity substituted for :math:`A_y`,
      constraint imposed);
    * the :math:`\mu`-expectation form
      :math:`\sum_y\mu_y r_y = \beta(\eta - \mathrm{KL} - \mathbb{E}_\mu[A]/\beta)`
      for explicit ``K``;
    * :func:`eta_identity_general` (symbolic ``K``).

    Parameters
    ----------
    K : int

    Returns
    -------
    bool
    """
    return (
        _is_zero(eta_identity(K))
        and _is_zero(_eta_identity_expectation(K))
        and _is_zero(eta_identity_general())
    )


# --------------------------------------------------------------------------
# 4. Ratio derivative along the solution curve
# --------------------------------------------------------------------------
def ratio_derivative() -> sp.Expr:
    r"""Derivative of the stationary ratio with respect to :math:`\eta`, by implicit differentiation.

    Implicitly differentiating :math:`F(u,\eta) = \log u + \eta u - A/\beta = 0`
    (:func:`sympy.idiff`):

    .. math::

        \frac{du}{d\eta} = -\frac{F_\eta}{F_u} = -\frac{u^2}{1 + \eta u} .

    Returns
    -------
    sympy.Expr
        ``-u**2/(eta*u + 1)``.
    """
    F = stationarity_residual() / beta
    return sp.simplify(sp.idiff(F, u, eta))


def check_ratio_derivative() -> bool:
    r"""Verify :func:`ratio_derivative` two ways.

    * the implicit derivative equals :math:`-u^2/(1+\eta u)`;
    * differentiating the explicit branch solutions
      :math:`W_k(\eta e^{A/\beta})/\eta` (:math:`k=0,-1`) with sympy's
      derivative of ``LambertW`` gives the same expression at
      :math:`u = W_k/\eta`.

    Returns
    -------
    bool
    """
    expected = -(u**2) / (1 + eta * u)
    ok = _is_zero(ratio_derivative() - expected)
    for k in _REAL_BRANCHES:
        sol = lambert_solution(k)
        ok = ok and _is_zero(sp.diff(sol, eta) - expected.subs(u, sol))
    return ok


def constraint_derivative(K: int = 3) -> sp.Expr:
    r"""Derivative of :math:`\sum_y \mu_y u_y(\eta)` along the stationary curve.

    Each :math:`u_y` is a function of :math:`\eta`; its derivative is replaced
    by :func:`ratio_derivative`:

    .. math::

        \frac{d}{d\eta}\sum_y \mu_y u_y = -\sum_y \frac{\mu_y u_y^2}{1+\eta u_y} =: -S .

    Parameters
    ----------
    K : int

    Returns
    -------
    sympy.Expr
        The derivative in the explicit symbols ``mu1..muK``, ``u1..uK``.
    """
    mus, us, _ = arm_symbols(K)
    funcs = [sp.Function(f"U{i + 1}")(eta) for i in range(K)]
    total = sum(m_ * f for m_, f in zip(mus, funcs))
    d = sp.diff(total, eta)
    du = ratio_derivative()
    d = d.subs({sp.Derivative(f, eta): du.subs(u, f) for f in funcs})
    return d.subs({f: u_ for f, u_ in zip(funcs, us)})


def _S(mus, us) -> sp.Expr:
    return sum(m_ * u_**2 / (1 + eta * u_) for m_, u_ in zip(mus, us))


def check_constraint_derivative(K: int = 3) -> bool:
    r"""Verify :math:`\tfrac{d}{d\eta}\sum_y\mu_y u_y = -S` for ``K`` arms.

    Returns
    -------
    bool
    """
    mus, us, _ = arm_symbols(K)
    return _is_zero(constraint_derivative(K) + _S(mus, us))


# --------------------------------------------------------------------------
# 5. Second-order condition
# --------------------------------------------------------------------------
def lagrangian_hessian_s(K: int = 2) -> sp.Matrix:
    r"""Hessian of the Lagrangian in the log-ratios :math:`s_y`, at :math:`\lambda = 2\beta^2\eta`.

    With :math:`\pi_y = \mu_y e^{s_y}`,

    .. math::

        \mathcal{L}(s) = \sum_y \mu_y(\beta s_y - A_y)^2
        + \lambda\Bigl(\sum_y \mu_y e^{s_y} - 1\Bigr),
        \qquad
        \nabla^2_s \mathcal{L} = 2\beta^2\,\mathrm{diag}\bigl(\mu_y(1+\eta u_y)\bigr).

    Parameters
    ----------
    K : int
        Number of arms (``K >= 1``); the Hessian is taken in ``s1..sK`` and
        written with :math:`u_y = e^{s_y}`.

    Returns
    -------
    sympy.Matrix
        ``K x K`` Hessian in the explicit symbols ``mu1..``, ``u1..``, ``eta``.
    """
    mus, us, As = arm_symbols(K)
    ss = sp.symbols(f"s1:{K + 1}", real=True)
    L = sum(m_ * (beta * s_ - A_) ** 2 for m_, s_, A_ in zip(mus, ss, As))
    L = L + lam * (sum(m_ * sp.exp(s_) for m_, s_ in zip(mus, ss)) - 1)
    H = sp.hessian(L, ss)
    H = H.subs({sp.exp(s_): u_ for s_, u_ in zip(ss, us)}).subs(lam, 2 * beta**2 * eta)
    return H.applyfunc(sp.factor)


def _constraint_gradient_s(K: int) -> sp.Matrix:
    r"""Gradient of :math:`\sum_y \mu_y e^{s_y}` in :math:`s`, i.e. :math:`(\mu_y u_y)_y` as a row."""
    mus, us, _ = arm_symbols(K)
    ss = sp.symbols(f"s1:{K + 1}", real=True)
    g = sp.Matrix([sum(m_ * sp.exp(s_) for m_, s_ in zip(mus, ss))]).jacobian(ss)
    return g.subs({sp.exp(s_): u_ for s_, u_ in zip(ss, us)})


class SecondOrderCondition(NamedTuple):
    r"""Symbolic second-order data for ``K`` arms (all fields are sympy objects).

    Attributes
    ----------
    hessian : sympy.Matrix
        :math:`H = 2\beta^2\,\mathrm{diag}(\mu_y(1+\eta u_y))`.
    gradient : sympy.Matrix
        Constraint gradient :math:`g = (\mu_y u_y)_y` (row).
    tangent_basis : sympy.Matrix
        ``K x (K-1)`` matrix :math:`B` with columns
        :math:`g_{j} e_1 - g_1 e_{j}`, :math:`j = 2..K`; :math:`gB = 0`.
    restricted_hessian : sympy.Matrix
        :math:`R = B^\top H B`.
    S : sympy.Expr
        :math:`S = \sum_y \mu_y u_y^2/(1+\eta u_y)`.
    determinant_identity : sympy.Eq
        :math:`\det R = g_1^{2(K-2)}\,\prod_y h_y\, S/(2\beta^2)`, with
        :math:`h_y = 2\beta^2\mu_y(1+\eta u_y)` (unevaluated ``Eq``).
    bordered_identity : sympy.Eq
        :math:`\det\begin{pmatrix}0 & g\\ g^\top & H\end{pmatrix}
        = -\prod_y h_y\, S/(2\beta^2)` (unevaluated ``Eq``).
    sign_factor : sympy.Expr
        :math:`\det R / (-S\,g_1^{2(K-2)})` (note :math:`g_1 = \mu_1 u_1 > 0`)
        written with :math:`D_y = 1+\eta u_y`,
        :math:`D_1..D_{K-1} > 0` and :math:`D_K < 0` (sympy symbols with those
        assumptions); sympy reports it positive.
    """

    hessian: sp.Matrix
    gradient: sp.Matrix
    tangent_basis: sp.Matrix
    restricted_hessian: sp.Matrix
    S: sp.Expr
    determinant_identity: sp.Eq
    bordered_identity: sp.Eq
    sign_factor: sp.Expr


def second_order_condition(K: int = 2) -> SecondOrderCondition:
    r"""Second-order condition on the tangent space of the constraint, ``K`` = 2 or 3.

    The constraint in :math:`s` is :math:`\sum_y \mu_y e^{s_y} = 1` with
    gradient :math:`g_y = \mu_y u_y`, so the tangent space is
    :math:`\{v : \sum_y \mu_y u_y v_y = 0\}`, spanned by the columns of
    :math:`B` (pivot on arm 1). With :math:`h_y = 2\beta^2\mu_y(1+\eta u_y)`
    sympy verifies the exact identities

    .. math::

        \det(B^\top H B) = g_1^{2(K-2)} \Bigl(\prod_y h_y\Bigr)
        \frac{S}{2\beta^2},
        \qquad
        S = \sum_y \frac{\mu_y u_y^2}{1+\eta u_y}.

    For ``K = 2`` the restricted Hessian is the scalar
    :math:`Q = v^\top H v` along :math:`v = (\mu_2u_2, -\mu_1u_1)`:

    .. math::

        Q = 2\beta^2\mu_1\mu_2(1+\eta u_1)(1+\eta u_2)\,S .

    **Consequence.** If exactly one arm (labelled :math:`K`) has
    :math:`1+\eta u_K < 0` and the others have :math:`1+\eta u_y > 0`, then
    :math:`\prod_y h_y < 0`, so :math:`\det R = (\text{positive})\cdot(-S)`
    (``sign_factor`` is certified positive by sympy's assumption system). For
    ``K = 2``, :math:`R = Q`, hence :math:`R \succeq 0 \iff S \le 0`. For
    ``K = 3``, :math:`R_{11} = h_1 g_2^2 + h_2 g_1^2 > 0`, and a symmetric
    :math:`2\times 2` matrix with positive :math:`(1,1)` entry is PSD iff its
    determinant is :math:`\ge 0`, hence again :math:`R \succeq 0 \iff S \le 0`.

    Parameters
    ----------
    K : {2, 3}

    Returns
    -------
    SecondOrderCondition
    """
    K = _check_K(K, minimum=2)
    if K > 3:
        raise ValueError(f"second_order_condition is implemented for K = 2 or 3, got {K}")
    mus, us, _ = arm_symbols(K)
    H = lagrangian_hessian_s(K)
    g = _constraint_gradient_s(K)
    gg = [g[0, i] for i in range(K)]
    cols = []
    for j in range(1, K):
        col = [sp.Integer(0)] * K
        col[0] = gg[j]
        col[j] = -gg[0]
        cols.append(col)
    B = sp.Matrix(cols).T
    R = (B.T * H * B).applyfunc(sp.factor)
    S = _S(mus, us)
    h = [2 * beta**2 * m_ * (1 + eta * u_) for m_, u_ in zip(mus, us)]
    prod_h = sp.Mul(*h)
    det_R = sp.factor(R.det())
    det_identity = sp.Eq(det_R, gg[0] ** (2 * (K - 2)) * prod_h * S / (2 * beta**2), evaluate=False)
    M = sp.zeros(K + 1, K + 1)
    M[0, 1:] = g
    M[1:, 0] = g.T
    M[1:, 1:] = H
    bordered = sp.Eq(sp.factor(M.det()), -prod_h * S / (2 * beta**2), evaluate=False)
    # Sign factor det R / (-S g_1^{2(K-2)}) with D_y = 1 + eta*u_y; eta != 0 when some D_y < 0.
    Ds = [sp.Symbol(f"D{i + 1}", positive=True) for i in range(K - 1)] + [sp.Symbol(f"D{K}", negative=True)]
    ratio = sp.cancel(-det_R / (S * gg[0] ** (2 * (K - 2))))
    sign_factor = sp.factor(ratio.subs({u_: (D_ - 1) / eta for u_, D_ in zip(us, Ds)}))
    return SecondOrderCondition(H, g, B, R, S, det_identity, bordered, sign_factor)


def second_order_condition_two_arms() -> SecondOrderCondition:
    r"""Second-order condition for ``K = 2`` (see :func:`second_order_condition`).

    Along the tangent direction :math:`v = (\mu_2 u_2, -\mu_1 u_1)` the
    Hessian quadratic form is

    .. math::

        Q = v^\top H v = 2\beta^2\mu_1\mu_2(1+\eta u_1)(1+\eta u_2)\, S,
        \qquad S = \frac{\mu_1u_1^2}{1+\eta u_1} + \frac{\mu_2u_2^2}{1+\eta u_2}.

    With :math:`1+\eta u_1 > 0 > 1+\eta u_2`, :math:`Q` equals the positive
    factor :math:`2\beta^2\mu_1\mu_2(1+\eta u_1)\,|1+\eta u_2|` times
    :math:`-S`, so :math:`Q \ge 0 \iff S \le 0`. With both factors positive
    (e.g. both ratios on :math:`W_0`), :math:`S > 0` and :math:`Q > 0`.

    Returns
    -------
    SecondOrderCondition
        ``restricted_hessian`` is the ``1 x 1`` matrix ``[Q]``.
    """
    return second_order_condition(2)


def check_second_order_condition(K: int = 2) -> bool:
    r"""Verify the second-order identities for ``K`` = 2 or 3.

    Checks that

    * the Hessian in :math:`s` equals :math:`2\beta^2\mathrm{diag}(\mu_y(1+\eta u_y))`;
    * :math:`gB = 0` and :math:`B` has rank :math:`K-1` (it spans the tangent space);
    * the determinant and bordered-determinant identities hold exactly;
    * ``sign_factor`` is positive under :math:`D_1..D_{K-1} > 0 > D_K`;
    * for ``K = 3``, :math:`R_{11} = h_1 g_2^2 + h_2 g_1^2` (positive when arms 1, 2
      have :math:`1+\eta u > 0`).

    Parameters
    ----------
    K : {2, 3}

    Returns
    -------
    bool
    """
    soc = second_order_condition(K)
    mus, us, _ = arm_symbols(K)
    expected_H = sp.diag(*[2 * beta**2 * m_ * (1 + eta * u_) for m_, u_ in zip(mus, us)])
    ok = all(_is_zero(e) for e in (soc.hessian - expected_H))
    ok = ok and all(_is_zero(e) for e in (soc.gradient * soc.tangent_basis))
    ok = ok and soc.tangent_basis.rank() == K - 1
    ok = ok and _is_zero(sp.together(soc.determinant_identity.lhs - soc.determinant_identity.rhs))
    ok = ok and _is_zero(sp.together(soc.bordered_identity.lhs - soc.bordered_identity.rhs))
    ok = ok and soc.sign_factor.is_positive is True
    if K == 3:
        h = [2 * beta**2 * m_ * (1 + eta * u_) for m_, u_ in zip(mus, us)]
        g = [m_ * u_ for m_, u_ in zip(mus, us)]
        ok = ok and _is_zero(soc.restricted_hessian[0, 0] - (h[0] * g[1] ** 2 + h[1] * g[0] ** 2))
    return bool(ok)


# --------------------------------------------------------------------------
# 6. Report
# --------------------------------------------------------------------------
def latex_report() -> str:
    r"""LaTeX fragment listing every derived result, one sentence each.

    Every formula is recomputed and rendered with :func:`sympy.latex`; the
    fragment has no preamble and no ``document`` environment.

    Returns
    -------
    str
    """
    items = [*_stationarity_items(), *_lambert_items(), *_eta_items(), *_second_order_items()]
    lines = ["% Symbolic derivations for the ratio-free regression objective (theory.symbolic)"]
    lines.append("\\begin{itemize}")
    for sentence, formula in items:
        lines.append(f"  \\item {sentence}\n  \\[ {formula} \\]")
    lines.append("\\end{itemize}")
    return "\n".join(lines) + "\n"


def _stationarity_items() -> list[tuple[str, str]]:
    """(sentence, LaTeX formula) of the report's section 1: the Lagrangian, its derivative, stationarity."""
    L = sp.latex
    return [
        ("The Lagrangian of the ratio-free objective for $K$ arms is", L(lagrangian())),
        (
            "Its derivative with respect to a generic arm $\\pi_j$ is",
            L(sp.Eq(sp.Symbol(r"\partial \mathcal{L} / \partial \pi_j"), lagrangian_derivative(), evaluate=False)),
        ),
        (
            "Substituting $\\pi_j=\\mu_j u$, $\\lambda = 2\\beta^2\\eta$ and setting it to zero gives the stationarity condition",
            L(stationarity_condition()),
        ),
    ]


def _lambert_items() -> list[tuple[str, str]]:
    """Section 2: the Lambert solution on each real branch, its Gibbs limit and the curvature factor."""
    L = sp.latex
    items = [
        (
            f"Solving $\\log u + \\eta u = A/\\beta$ gives, on branch $k={k}$ "
            f"(residual check {'passed' if check_lambert_solution(k) else 'FAILED'}),",
            L(sp.Eq(u, lambert_solution(k), evaluate=False)),
        )
        for k in _REAL_BRANCHES
    ]
    items.append(
        (
            "The limit $\\eta\\to 0$ of the principal solution is the Gibbs ratio",
            L(sp.Eq(sp.Limit(lambert_solution(0), eta, 0), gibbs_limit(), evaluate=False)),
        )
    )
    items += [
        (
            f"On branch $k={k}$ the curvature factor is "
            + ("nonnegative since $W_0\\ge -1$:" if k == 0 else "nonpositive since $W_{-1}\\le -1$:"),
            L(sp.Eq(1 + eta * u, curvature_factor(k), evaluate=False)),
        )
        for k in _REAL_BRANCHES
    ]
    return items


def _eta_items() -> list[tuple[str, str]]:
    """Sections 3 and 4: the eta identity, the ratio derivative and the constraint's derivative."""
    L = sp.latex
    kl = sp.Symbol(r"\mathrm{KL}(\mu\|\pi)")
    ea = sp.Symbol(r"\mathbb{E}_\mu[A]")
    return [
        (
            "Taking the $\\mu$-expectation of the stationarity condition and using $\\sum_y \\mu_y u_y = 1$ gives "
            f"(verified for $K=3$: {'passed' if check_eta_identity(3) else 'FAILED'}, and for symbolic $K$)",
            L(sp.Eq(eta, kl + ea / beta, evaluate=False)),
        ),
        (
            "Implicit differentiation of the stationarity condition gives",
            L(sp.Eq(sp.Derivative(sp.Function("u")(eta), eta), ratio_derivative(), evaluate=False)),
        ),
        (
            "Hence along the stationary curve (shown for $K=3$) the constraint moves as",
            L(sp.Eq(sp.Symbol(r"\frac{d}{d\eta}\sum_y \mu_y u_y"), constraint_derivative(3), evaluate=False)),
        ),
    ]


def _second_order_items() -> list[tuple[str, str]]:
    """Section 5: the Hessian in the log-ratios and the second-order condition for K = 2 and 3."""
    L = sp.latex
    items = [("In the log-ratios $s_y$ the Hessian of the Lagrangian (shown for $K=2$) is", L(lagrangian_hessian_s(2)))]
    soc2 = second_order_condition_two_arms()
    items.append(
        (
            "For $K=2$ the Hessian along the tangent direction $(\\mu_2u_2,-\\mu_1u_1)$ factors as "
            "$2\\beta^2\\mu_1\\mu_2(1+\\eta u_1)(1+\\eta u_2)S$, so with one arm having $1+\\eta u<0$ it is "
            "nonnegative iff $S\\le 0$:",
            L(soc2.determinant_identity),
        )
    )
    soc3 = second_order_condition(3)
    items.append(
        (
            "For $K=3$ the determinant of the restricted Hessian satisfies the identity below; "
            "when arms 1 and 2 have $1+\\eta u>0$ (so $R_{11}>0$) and arm 3 has $1+\\eta u<0$, "
            "the restricted Hessian is positive semidefinite iff $S\\le 0$:",
            L(soc3.determinant_identity),
        )
    )
    return items


def main(argv=None) -> str:
    """``python -m theory.symbolic``: print the LaTeX report, or write it to ``--out`` (atomically).

    ``--out`` refuses to replace an existing file unless ``--overwrite``; a
    mistake on the command line ends in one line on stderr (exit status 2).
    Returns the report.
    """
    from pathlib import Path

    from theory.outputs import CommandParser, atomic_write_text, cli_main, guard_outputs

    @cli_main
    def run(argv):
        p = CommandParser(
            prog="python -m theory.symbolic",
            description="Recompute every symbolic derivation (sympy) and print them as a LaTeX fragment.",
        )
        p.add_argument("--out", default=None, metavar="FILE",
                       help="write the LaTeX fragment to FILE instead of stdout (default: stdout)")
        p.add_argument("--overwrite", action="store_true",
                       help="replace FILE if it exists (default: off; an existing FILE is refused)")
        args = p.parse_args(argv)
        if args.overwrite and args.out is None:
            p.error("--overwrite: only with --out FILE")
        if args.out is not None:
            for parent in Path(args.out).parents:
                if parent.exists() and not parent.is_dir():
                    p.error(f"--out: {parent} is a file, so {args.out} cannot be written; pass another path")
            guard_outputs([args.out], overwrite=args.overwrite, what="report", arg="--out")
        text = latex_report()
        if args.out is None:
            print(text)
        else:
            atomic_write_text(args.out, text)
        return text

    return run(argv)


if __name__ == "__main__":
    main()
