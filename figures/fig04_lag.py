"""Figure 4: pessimism against lag — reward, entropy and KL(mu||pi) over training.

Reads the ``fig04_lag`` sweep of :mod:`sims.sweeps` (computed and cached under
``figures/results/``, or ``results_dir``, when missing): every objective family trained on the
standard bandits with lags 0 to 64, the mean over seeds and contexts with a
band of two standard errors over seeds, at the largest group size of the
sweep. Rows: reward, entropy, KL to the behaviour policy; columns: objectives.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from sims.sweeps import load_or_run

from . import _style

__all__ = ["load", "plot_lag_curves", "make"]

ROWS = (("reward", r"$E_\pi[r]$"), ("entropy", r"$H(\pi)$ [nats]"), ("kl_mu_pi", r"KL$(\mu\|\pi)$ [nats]"))


def load(smoke: bool = False, results_dir: Path | None = None) -> dict:
    """The arrays of the ``fig04_lag`` sweep (:func:`sims.sweeps.load_or_run`), computed and cached when missing.

    Each metric (``reward``, ``entropy``, ``kl_mu_pi``, ...) has the axes
    (objective, group size, lag, step, seed); ``objective``, ``group_size``,
    ``lag`` and ``step`` hold the coordinates.
    """
    arrays, _ = load_or_run("fig04_lag", smoke, results_dir=results_dir, progress=False)
    return arrays


def _lag_colors(n: int):
    """One viridis colour per lag, (n, 4): dark (lag 0) to yellow."""
    return plt.cm.viridis(np.linspace(0.0, 0.9, n))


@_style.panel_doc
def plot_lag_curves(step, values, lags, *, colors=None, ylabel: str | None = None, xlabel: bool = True, ax=None):
    """Draw one metric against the training step, one line per lag: the mean over seeds and a band of 2 s.e.

    Parameters
    ----------
    step : array
        Training steps, shape (T,).
    values : array
        The metric, shape (L, T, S): lag, step, seed (NaN ignored).
    lags : sequence of int
        The L lags, labels of the lines (``L=...``).
    colors : sequence, optional
        One colour per lag; by default viridis from dark (lag 0) to yellow.
    ylabel : str, optional
        Label of the y axis (none by default).
    xlabel : bool
        Whether to label the x axis ``step``.
    {ax}
    """
    ax = _style.panel_axes(ax)
    colors = _lag_colors(len(lags)) if colors is None else colors
    for k, lag in enumerate(lags):
        v = values[k]  # (step, seed)
        m = np.nanmean(v, -1)
        se = np.nanstd(v, -1) / np.sqrt(max(v.shape[-1], 1))
        ax.plot(step, m, color=colors[k], lw=1.4, label=f"L={int(lag)}")
        ax.fill_between(step, m - 2 * se, m + 2 * se, color=colors[k], alpha=0.2, lw=0)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if xlabel:
        ax.set_xlabel("step")
    return ax


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    arrays = load(smoke, results_dir)
    objectives = [str(o) for o in arrays["objective"]]
    lags = arrays["lag"]
    g = len(arrays["group_size"]) - 1
    colors = _lag_colors(len(lags))
    fig, axes = _style.subplots(len(ROWS), len(objectives), figsize=(2.6 * len(objectives), 7.2), sharex=True,
                                squeeze=False)
    for j, obj in enumerate(objectives):
        for i, (key, label) in enumerate(ROWS):
            plot_lag_curves(arrays["step"], arrays[key][j, g], lags, colors=colors, ylabel=label if j == 0 else None,
                            xlabel=i == len(ROWS) - 1, ax=axes[i, j])
        axes[0, j].set_title(obj)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(lags), frameon=False, title="lag")
    fig.suptitle(f"Pessimism against lag (G = {int(arrays['group_size'][g])}; mean over seeds, band: 2 s.e.)")
    fig.get_layout_engine().set(rect=(0, 0.07, 1, 0.93)) if fig.get_layout_engine() is not None else fig.subplots_adjust(bottom=0.15, top=0.9)
    return _style.save(fig, out, "fig04_lag", overwrite=overwrite)
