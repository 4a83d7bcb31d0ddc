r"""Figure 2: regime map of the regression objective on the ``graded`` standard bandit.

Axes: the baseline's offset from the soft value in units of the temperature,
:math:`(V - V^*_\beta)/\beta` (symlog), and the temperature :math:`\beta` of the
log-ratio. Left: :math:`\eta` (sign = regime; the boundary :math:`V = V^*_\beta`
is the vertical line at 0). Hatched: the global minimizer has one arm on the
:math:`W_{-1}` branch. Right: the pessimism ratio
:math:`\beta_{\mathrm{eff}}/\beta` (equal-KL definition). Curves show where the
practical baselines sit as :math:`\beta` varies: the mean baseline, the
beta-shifted mean (:math:`\delta = 1`), and the decoupled soft values of A*-PO
(:math:`\beta_1 = 0.5`) and OAPL (:math:`\beta_1 = 1`); markers are their
published settings (:math:`\beta_2 = 10^{-3}`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm, SymLogNorm

import theory as T

from . import _style

BANDIT = "graded"
SETTINGS = {  # name: (marker, colour); all use beta2 = 1e-3 for the log-ratio
    "mean": ("o", "#1b7837"),
    r"$\beta$-shifted mean, $\delta=1$": ("s", "#762a83"),
    r"A*-PO, $\beta_1=0.5$": ("^", "#e08214"),
    r"OAPL, $\beta_1=1$": ("v", "#8c510a"),
}
BETA2 = 1e-3

__all__ = ["compute", "baseline_curves", "plot_eta_map", "plot_pessimism_map", "make"]


def compute(nx: int, nb: int) -> dict:
    """The regime map on a grid of ``nx`` baseline offsets by ``nb`` temperatures.

    Returns a dict: ``x`` (nx',) the offsets :math:`(V - V^*_\beta)/\beta`
    (sorted, duplicates dropped), ``beta`` (nb,) the temperatures, ``eta``,
    ``ratio`` (the pessimism ratio, NaN where the target is greedy) and ``w1``
    (True where the global minimizer has an arm on :math:`W_{-1}`), each of
    shape (nb, nx'); ``curves``, the offset of each practical baseline at each
    beta (:func:`baseline_curves`), and ``bandit``, the bandit's name.
    """
    b = T.STANDARD_BANDITS[BANDIT]
    x = np.concatenate([-np.logspace(3.3, 0, nx // 2), np.linspace(-1, 3, nx - nx // 2)])
    x = np.unique(x)
    betas = np.logspace(-3, 1, nb)
    X, B = np.meshgrid(x, betas)  # (nb, nx)
    vstar = T.soft_value(b.mu, b.r, B)
    V = vstar + X * B
    adv = b.r - V[..., None]
    pi, eta = T.lambert_target(b.mu, adv, B)
    m = T.pessimism_measures(pi, b.mu, b.r, B, V)
    neg = X > 0
    w1 = np.zeros_like(eta, bool)
    if neg.any():
        sp = T.lambert_stationary_points(b.mu, adv[neg], B[neg])
        w1[neg] = np.take_along_axis(sp.branch_arm, sp.global_index[..., None], -1)[..., 0] >= 0
    ratio = np.where(m.beta_eff_kl > 0, m.pessimism_kl, np.nan)  # 0: KL at the greedy limit, ratio undefined
    return {"bandit": BANDIT, "x": x, "beta": betas, "eta": eta, "ratio": ratio, "w1": w1,
            "curves": baseline_curves(b, betas)}


def baseline_curves(b, betas) -> dict:
    """Offset :math:`(V - V^*_\beta)/\beta` of each baseline of :data:`SETTINGS` at each temperature, (nb,) each."""
    vstar = T.soft_value(b.mu, b.r, betas)
    mean = T.mean_baseline(b.mu, b.r)
    curves = {
        "mean": (mean - vstar) / betas,
        r"$\beta$-shifted mean, $\delta=1$": (mean - betas - vstar) / betas,
        r"A*-PO, $\beta_1=0.5$": (T.soft_value(b.mu, b.r, 0.5) - vstar) / betas,
        r"OAPL, $\beta_1=1$": (T.soft_value(b.mu, b.r, 1.0) - vstar) / betas,
    }
    return curves


def _map(ax, data, Z, norm, cmap, title, ylabel):
    """One map of ``Z`` (nb, nx) over (offset, beta) with its colorbar, the W_{-1} hatching and the baselines."""
    x, betas = data["x"], data["beta"]
    ax.set_facecolor("0.8")
    im = ax.pcolormesh(x, betas, Z, norm=norm, cmap=cmap, shading="nearest", rasterized=True)
    ax.figure.colorbar(im, ax=ax, shrink=0.9)
    if data["w1"].any():
        ax.contourf(x, betas, data["w1"].astype(float), levels=[0.5, 1.5], colors="none", hatches=["////"])
    ax.axvline(0.0, color="k", lw=1)
    for name, xs in data["curves"].items():
        mk, col = SETTINGS[name]
        ax.plot(xs, betas, color=col, lw=1.6, label=name)
        x2 = np.interp(np.log(BETA2), np.log(betas), xs)
        ax.plot([x2], [BETA2], mk, color=col, ms=7, mec="w", clip_on=False, zorder=5)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("log")
    ax.set_xlim(x.min(), x.max())
    ax.set_xlabel(r"$(V - V^*_\beta)/\beta$")
    ax.set_title(title)
    ax.grid(False)
    if ylabel:
        ax.set_ylabel(r"$\beta$ (temperature of the log-ratio)")
    return ax


#: the last parameters and the Returns section of both maps, filled into their docstrings (``_style.shared_doc``)
_doc = _style.shared_doc(ylabel_ax="\n".join([
    "ylabel : bool\n    Whether to label the temperature axis (off where a panel to the left shares it).",
    "ax : matplotlib.axes.Axes, optional\n"
    "    Axes to draw on; a new one-panel figure when None. A colorbar is added beside it.",
    "", "Returns\n-------\nmatplotlib.axes.Axes\n    The axes drawn on."]))


@_doc
def plot_eta_map(data: dict, *, ylabel: bool = True, ax=None):
    r"""Draw :math:`\eta` over (baseline offset, temperature) on a symmetric log colour scale.

    Parameters
    ----------
    data : dict
        The output of :func:`compute`: offsets ``x`` (nx,), temperatures
        ``beta`` (nb,), ``eta`` and ``w1`` (nb, nx), the baselines' ``curves``.
    {ylabel_ax}
    """
    ax = _style.panel_axes(ax)
    lim = np.abs(data["eta"]).max()
    _map(ax, data, data["eta"], SymLogNorm(linthresh=1e-2, vmin=-lim, vmax=lim), "RdBu",
         r"$\eta$ (blue: positive, red: negative)", ylabel)
    ax.text(0.15, 5.0, "negative", color="k", fontsize=8)
    ax.text(-0.3, 5.0, "positive (pessimistic)", color="k", fontsize=8, ha="right")
    return ax


@_doc
def plot_pessimism_map(data: dict, *, ylabel: bool = True, ax=None):
    r"""Draw the pessimism ratio :math:`\beta_{\rm eff}/\beta` (equal KL) over (baseline offset, temperature).

    Parameters
    ----------
    data : dict
        The output of :func:`compute`: offsets ``x`` (nx,), temperatures
        ``beta`` (nb,), ``ratio`` and ``w1`` (nb, nx), the baselines' ``curves``.
        The ratio is drawn on a log scale clipped to [1e-2, 1e4]; NaN (greedy target) stays grey.
    {ylabel_ax}
    """
    ax = _style.panel_axes(ax)
    return _map(ax, data, np.clip(data["ratio"], 1e-2, 1e4), LogNorm(1e-2, 1e4), "viridis",
                r"pessimism $\beta_{\rm eff}/\beta$ (equal KL; grey: target $\approx$ greedy)", ylabel)


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    nx, nb = (40, 24) if smoke else (160, 90)
    data = compute(nx, nb)
    fig, axes = _style.subplots(1, 2, figsize=(10.0, 4.6), sharey=True)
    plot_eta_map(data, ax=axes[0])
    plot_pessimism_map(data, ylabel=False, ax=axes[1])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, frameon=False,
               title="baselines across beta; markers: published setting, beta2 = 1e-3; hatched: global minimizer uses W_{-1}")
    return _style.save(fig, out, "fig02_regime_map", overwrite=overwrite)
