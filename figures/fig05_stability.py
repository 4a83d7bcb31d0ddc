"""Figure 5: stability of the delayed iteration against lag and step size.

Reads the ``fig05_stability`` sweep of :mod:`sims.sweeps` (cached under
``figures/results/``, or ``results_dir``): for each objective, the spectral radius of the
delay-difference equation linearized at a fixed point (``sims.lag``), over
lag L and step size, leaving out the root at exactly 1 that every rule has
along the directions in which any policy is a fixed point
(``radius_transverse``). Radius > 1 (red) is unstable; ratio-based objectives
sit at exactly 1 (neutral), ratio-free ones pull back towards the lagged
policy and turn unstable above a step size that does not depend on L >= 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import TwoSlopeNorm

from sims.sweeps import load_or_run

from . import _style

__all__ = ["load", "radius_norm", "plot_stability", "make"]

CMAP = "RdBu_r"
#: radii above this are drawn at it
CLIP = 3.0


def load(smoke: bool = False, results_dir: Path | None = None) -> dict:
    """The arrays of the ``fig05_stability`` sweep (:func:`sims.sweeps.load_or_run`), computed and cached when missing.

    ``radius`` and ``radius_transverse`` have the axes (objective, lag, step
    size); ``objective``, ``lag`` and ``lr`` hold the coordinates.
    """
    arrays, _ = load_or_run("fig05_stability", smoke, results_dir=results_dir, progress=False)
    return arrays


def radius_norm(radius_transverse) -> TwoSlopeNorm:
    """Colour scale of the spectral radius: 0 to 1 (stable, blue), 1 to at least 2 (unstable, red), clipped at 3."""
    return TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=max(2.0, float(np.nanmax(np.minimum(radius_transverse, CLIP)))))


@_style.panel_doc
def plot_stability(lags, lrs, radius, radius_transverse, *, title: str | None = None, norm=None,
                   label_y: bool = True, colorbar: bool = True, ax=None):
    """Draw one objective's spectral radius without the neutral root over (step size, lag) as a heat map.

    Parameters
    ----------
    lags, lrs : array
        The lags (L,) and step sizes (N,) of the grid, drawn as equally spaced cells.
    radius, radius_transverse : array
        Spectral radius with and without the root at exactly 1, shape (L, N)
        each. Where every root is neutral (``radius`` 1, ``radius_transverse``
        0) the panel says so in place of the map.
    title : str, optional
        Panel title (the objective's name).
    norm : matplotlib.colors.Normalize, optional
        Colour scale shared with other panels; :func:`radius_norm` of this panel's radii by default.
    label_y : bool
        Whether to label the lags on the y axis (off where a panel to the left shares it).
    colorbar : bool
        Whether to add a colorbar beside the axes (off where one colorbar serves several panels).
    {ax}
    """
    ax = _style.panel_axes(ax)
    norm = radius_norm(radius_transverse) if norm is None else norm
    im = ax.pcolormesh(np.arange(len(lrs) + 1), np.arange(len(lags) + 1), np.minimum(radius_transverse, CLIP),
                       cmap=CMAP, norm=norm, shading="flat")
    ax.set_title(title)
    neutral = np.isclose(radius, 1.0, atol=1e-9) & (radius_transverse <= 1e-12)
    if neutral.all():  # every root is neutral: the update has no pull towards the lagged policy
        ax.cla()
        ax.set_facecolor("0.85")
        ax.set_xlim(0, len(lrs))
        ax.set_ylim(0, len(lags))
        ax.text(0.5 * len(lrs), 0.5 * len(lags), "all roots at 1:\nneutral, no pull\ntowards the lagged\npolicy", ha="center",
                va="center", fontsize=9)
        ax.set_title(title)
    elif colorbar:
        ax.figure.colorbar(im, ax=ax, label=f"radius without the neutral root (clipped at {CLIP:g})")
    idx = np.arange(0, len(lrs), max(1, len(lrs) // 5))
    ax.set_xticks(idx + 0.5, [f"{lrs[i]:.2g}" for i in idx])
    ax.grid(False)
    ax.set_xlabel("step size")
    if label_y:
        _lag_ticks(ax, lags)
    return ax


def _lag_ticks(ax, lags):
    ax.set_yticks(np.arange(len(lags)) + 0.5, [str(int(x)) for x in lags])
    ax.set_ylabel("lag L")


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    arrays = load(smoke, results_dir)
    objectives = [str(o) for o in arrays["objective"]]
    lags, lrs, rad = arrays["lag"], arrays["lr"], arrays["radius_transverse"]
    n = len(objectives)
    fig, axes = _style.subplots(1, n, figsize=(2.6 * n, 3.6), sharey=True, squeeze=False)
    norm = radius_norm(rad)
    for j, obj in enumerate(objectives):
        plot_stability(lags, lrs, arrays["radius"][j], rad[j], title=obj, norm=norm, label_y=False, colorbar=False,
                       ax=axes[0, j])
    _lag_ticks(axes[0, 0], lags)  # after every panel: clearing a neutral one resets the shared ticks
    fig.colorbar(ScalarMappable(norm=norm, cmap=CMAP), ax=axes[0, :].tolist(),
                 label="spectral radius without the neutral root (clipped at 3)", shrink=0.9)
    fig.suptitle("Stability of the delayed iteration (radius > 1: unstable)")
    return _style.save(fig, out, "fig05_stability", overwrite=overwrite)
