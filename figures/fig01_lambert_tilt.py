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


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    _style.apply()
    n = 200 if smoke else 1200
    a = np.linspace(-4.0, 6.0, n)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.0, 3.6), width_ratios=[1.15, 1])

    ax.plot(a, a, color=_style.REGIME_COLORS["boundary"], lw=2, label=r"$\eta=0$: Gibbs, $u=e^{a}$")
    blues = plt.cm.Blues(np.linspace(0.45, 0.95, len(ETAS_POS)))
    for eta, c in zip(ETAS_POS, blues):
        ax.plot(a, T.lambert_log_ratio(a, eta), color=c, label=rf"$\eta={eta:g}$ (positive)")
    reds = plt.cm.Reds(np.linspace(0.55, 0.9, len(ETAS_NEG)))
    for eta, c in zip(ETAS_NEG, reds):
        abp = -1.0 - np.log(-eta)  # branch point
        ok = a <= abp
        ax.plot(a[ok], T.lambert_log_ratio(a[ok], eta), color=c, label=rf"$\eta={eta:g}$ (negative)")
        ok1 = ok & (a > abp - 3.0)
        ax.plot(a[ok1], T.lambert_log_ratio(a[ok1], eta, branch=-1), color=c, ls="--", lw=1)
        ax.plot([abp], [np.log(-1.0 / eta)], "o", color=c, ms=4)
    ax.set(xlabel=r"scaled advantage $a = A/\beta$", ylabel=r"$\log u = \log(\pi/\mu)$", ylim=(-4.5, 6.5))
    ax.set_title(r"tilt solving $\log u + \eta u = a$")
    ax.legend(loc="upper left", frameon=False)
    ax.annotate("dashed: $W_{-1}$ branch\ndot: branch point", xy=(0.98, 0.03), xycoords="axes fraction",
                ha="right", va="bottom", fontsize=7, color="0.3")

    b = T.STANDARD_BANDITS["graded"]
    beta = 0.2
    vstar = T.soft_value(b.mu, b.r, beta)
    cases = [
        ("mean baseline", T.mean_baseline(b.mu, b.r), "positive"),
        (r"$V=V^*_\beta$ (Gibbs)", vstar, "boundary"),
        (r"$V=V^*_\beta+0.3\beta$", vstar + 0.3 * beta, "negative"),
    ]
    K = len(b.mu)
    x = np.arange(K)
    width = 0.2
    bx.bar(x - 1.5 * width, b.mu, width, color="0.75", label=r"$\mu$")
    for k, (label, V, regime) in enumerate(cases):
        pi, eta = T.lambert_target(b.mu, b.r - V, beta)
        bx.bar(x + (k - 0.5) * width, pi, width, color=_style.REGIME_COLORS[regime],
               alpha=[0.9, 0.9, 0.65][k], label=rf"{label}, $\eta={float(eta):.2f}$")
    bx.set_xticks(x, [f"{v:g}" for v in b.r])
    bx.set(xlabel="arm reward $r$", ylabel=r"$\pi$", title=rf"induced targets, graded bandit, $\beta={beta}$")
    bx.legend(frameon=False, loc="upper right")
    return _style.save(fig, out, "fig01_lambert_tilt", overwrite=overwrite)
