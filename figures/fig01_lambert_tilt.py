r"""Figure 1: the Lambert-tempered tilt beside the Gibbs tilt, in the three regimes.

Left: the ratio :math:`u = \pi/\mu` that the regression objective assigns to an
arm of scaled advantage :math:`a = A/\beta`, :math:`\log u + \eta u = a`, for
several :math:`\eta`; :math:`\eta = 0` is the Gibbs tilt :math:`u = e^{a}`.
Positive :math:`\eta` bends the exponential into a near-linear growth
(:math:`u \approx a/\eta`): the pessimistic regime. Negative :math:`\eta` lifts
:math:`u` above :math:`e^{a}` up to the branch point
:math:`a = -1 - \log(-\eta)` where the principal branch ends (dot) and meets
:math:`W_{-1}` (dashed). Right: the induced targets on the ``graded`` standard
bandit for baselines that put :math:`\eta` in each regime.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import theory as T

from . import _style

ETAS_POS = [0.05, 0.3, 1.0, 3.0]
ETAS_NEG = [-0.02, -0.1]
BANDIT = "graded"
BETA = 0.2
#: bar opacity of an induced target, by regime
ALPHA = {"positive": 0.9, "boundary": 0.9, "negative": 0.65}

__all__ = ["tilt_curves", "induced_targets", "plot_tilt", "plot_induced_targets", "make"]


def tilt_curves(a, etas_pos=ETAS_POS, etas_neg=ETAS_NEG) -> dict:
    r"""The log-ratio :math:`\log u` solving :math:`\log u + \eta u = a` on a grid of ``a``, per :math:`\eta`.

    Returns ``{"a": a, "positive": [...], "negative": [...]}``: for each positive
    eta a dict ``eta``, ``log_u`` (same shape as ``a``); for each negative eta
    also the principal branch only up to the branch point (``a``, ``log_u``),
    the :math:`W_{-1}` branch over the 3 units of ``a`` below it (``a_w1``,
    ``log_u_w1``) and the branch point itself (``branch``, a pair).
    """
    out = {"a": a, "positive": [{"eta": eta, "log_u": T.lambert_log_ratio(a, eta)} for eta in etas_pos],
           "negative": []}
    for eta in etas_neg:
        abp = -1.0 - np.log(-eta)  # branch point
        ok = a <= abp
        ok1 = ok & (a > abp - 3.0)
        out["negative"].append({"eta": eta, "a": a[ok], "log_u": T.lambert_log_ratio(a[ok], eta),
                                "a_w1": a[ok1], "log_u_w1": T.lambert_log_ratio(a[ok1], eta, branch=-1),
                                "branch": (abp, np.log(-1.0 / eta))})
    return out


def induced_targets(bandit: str = BANDIT, beta: float = BETA) -> dict:
    """Induced targets of the regression objective on a standard bandit for one baseline in each regime.

    Returns ``{"bandit", "beta", "mu", "r", "cases"}``: ``mu`` and ``r`` of
    shape (K,), and ``cases`` a list of dicts ``label``, ``regime``, ``pi``
    (K,) and ``eta`` (a float): the mean baseline (positive), the soft value
    (boundary, the Gibbs target) and the soft value plus 0.3 beta (negative).
    """
    b = T.STANDARD_BANDITS[bandit]
    vstar = T.soft_value(b.mu, b.r, beta)
    baselines = [
        ("mean baseline", T.mean_baseline(b.mu, b.r), "positive"),
        (r"$V=V^*_\beta$ (Gibbs)", vstar, "boundary"),
        (r"$V=V^*_\beta+0.3\beta$", vstar + 0.3 * beta, "negative"),
    ]
    cases = []
    for label, V, regime in baselines:
        pi, eta = T.lambert_target(b.mu, b.r - V, beta)
        cases.append({"label": label, "regime": regime, "pi": pi, "eta": float(eta)})
    return {"bandit": bandit, "beta": beta, "mu": b.mu, "r": b.r, "cases": cases}


@_style.panel_doc
def plot_tilt(curves: dict, *, legend: bool = True, ax=None):
    r"""Draw :math:`\log u` against the scaled advantage :math:`a` for each :math:`\eta`, beside the Gibbs tilt.

    Parameters
    ----------
    curves : dict
        The output of :func:`tilt_curves`: the grid ``a`` (N,) and the curves
        of positive eta (blues) and negative eta (reds; the :math:`W_{-1}`
        branch dashed, the branch point a dot).
    legend : bool
        Whether to draw the legend of the eta values.
    {ax}
    """
    ax = _style.panel_axes(ax)
    a = curves["a"]
    ax.plot(a, a, color=_style.REGIME_COLORS["boundary"], lw=2, label=r"$\eta=0$: Gibbs, $u=e^{a}$")
    blues = plt.cm.Blues(np.linspace(0.45, 0.95, len(curves["positive"])))
    for c, curve in zip(blues, curves["positive"]):
        ax.plot(a, curve["log_u"], color=c, label=rf"$\eta={curve['eta']:g}$ (positive)")
    reds = plt.cm.Reds(np.linspace(0.55, 0.9, len(curves["negative"])))
    for c, curve in zip(reds, curves["negative"]):
        ax.plot(curve["a"], curve["log_u"], color=c, label=rf"$\eta={curve['eta']:g}$ (negative)")
        ax.plot(curve["a_w1"], curve["log_u_w1"], color=c, ls="--", lw=1)
        ax.plot([curve["branch"][0]], [curve["branch"][1]], "o", color=c, ms=4)
    ax.set(xlabel=r"scaled advantage $a = A/\beta$", ylabel=r"$\log u = \log(\pi/\mu)$", ylim=(-4.5, 6.5))
    ax.set_title(r"tilt solving $\log u + \eta u = a$")
    if legend:
        ax.legend(loc="upper left", frameon=False)
    ax.annotate("dashed: $W_{-1}$ branch\ndot: branch point", xy=(0.98, 0.03), xycoords="axes fraction",
                ha="right", va="bottom", fontsize=7, color="0.3")
    return ax


@_style.panel_doc
def plot_induced_targets(targets: dict, *, ax=None):
    """Draw the behaviour policy and the induced targets of each case as grouped bars, one group per arm.

    Parameters
    ----------
    targets : dict
        The output of :func:`induced_targets`: ``mu`` and ``r`` (K,), ``beta``,
        ``bandit`` and the ``cases`` (each with ``pi`` (K,), ``eta``,
        ``label`` and ``regime``, which sets its colour).
    {ax}
    """
    ax = _style.panel_axes(ax)
    mu, r = targets["mu"], targets["r"]
    x = np.arange(len(mu))
    width = 0.2
    ax.bar(x - 1.5 * width, mu, width, color="0.75", label=r"$\mu$")
    for k, case in enumerate(targets["cases"]):
        ax.bar(x + (k - 0.5) * width, case["pi"], width, color=_style.REGIME_COLORS[case["regime"]],
               alpha=ALPHA[case["regime"]], label=rf"{case['label']}, $\eta={case['eta']:.2f}$")
    ax.set_xticks(x, [f"{v:g}" for v in r])
    ax.set(xlabel="arm reward $r$", ylabel=r"$\pi$",
           title=rf"induced targets, {targets['bandit']} bandit, $\beta={targets['beta']}$")
    ax.legend(frameon=False, loc="upper right")
    return ax


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    a = np.linspace(-4.0, 6.0, 200 if smoke else 1200)
    fig, (ax, bx) = _style.subplots(1, 2, figsize=(9.0, 3.6), width_ratios=[1.15, 1])
    plot_tilt(tilt_curves(a), ax=ax)
    plot_induced_targets(induced_targets(), ax=bx)
    return _style.save(fig, out, "fig01_lambert_tilt", overwrite=overwrite)
