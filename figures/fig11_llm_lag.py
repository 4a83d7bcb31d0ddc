"""Figure 11: the lag study — learning curves, final pass@1, entropy and collapse against lag, and
predicted pessimism against measured stability.

Reads ``results/llm_lag/cells.csv`` and ``steps.csv.gz``, the study of the current protocol, written by

    python -m sims.llm.lag_study --out-dir results/llm_lag

(countdown, the character-level smoke model after its SFT warm start; each arm
x lag x seed is one RL run of the ``lag`` preset; ``results/llm_lag/README.md``
states the protocol). ``load(False, ROOT / "results" / "llm_lag_v1")`` draws the
first protocol's study instead. When the files are missing the study is run into that
folder (under ``--smoke``, the smoke study into the results cache instead).
Every band and error bar is a 95% bootstrap interval over seeds
(:mod:`sims.llm.stats`).

Top row: held-out pass@1 against RL step at lag 0 (left) and at the largest lag
(middle); final pass@1 against lag (right; dotted: the SFT start). Bottom row:
token entropy of the samples over the last 10 steps against lag (left); the
fraction of runs that end below their SFT start (middle; descriptive), its title
counting the runs that collapse by the study's pre-registered definition (an
evaluation at least ``collapse_drop`` below the best before it); right, theory against
training: each regression arm's predicted eta (Lambert, from the advantages of
its groups, averaged over the run at lag 0) against the change of its final
pass@1 from lag 0 to the largest lag, paired by seed; the ratio-based arms have
no eta and are drawn at the left edge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sims.llm.lag_study import RATIO_ARMS, read_cells, read_steps
from sims.llm.stats import bootstrap_ci, paired

from . import _style

__all__ = ["load", "arms", "palette", "plot_curve", "plot_lag_metric", "plot_theory", "make"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "llm_lag"
FIGSIZE = (7.0, 5.6)
#: the parameters the panels share, filled into their docstrings (``_style.shared_doc``); ``params`` opens
#: the Parameters section with ``cells``
_doc = _style.shared_doc(
    params="Parameters\n----------\ncells : list of dict\n"
           "    Rows of ``cells.csv`` (:func:`load`): one per (arm, lag, seed) run.",
    colors="colors : dict, optional\n"
           "    Colour of each arm, in drawing order; :func:`palette` of ``cells`` by default.",
)


def load(smoke: bool, folder: Path | None = None, results_dir: Path | None = None) -> tuple[list[dict], list[dict]]:
    """``(cells, steps)`` of a study folder (default ``results/llm_lag``), running the study when they are missing.

    Under ``smoke`` with no committed study, the smoke study runs into
    ``llm_lag_smoke/`` of the results cache (``sims.sweeps.result_path``), never
    beside the committed results.
    """
    if folder is None:
        folder = RESULTS
        if not (folder / "cells.csv").exists():
            from sims.sweeps import result_path

            folder = result_path("llm_lag", True, results_dir) if smoke else RESULTS
            if not (folder / "cells.csv").exists():
                from sims.llm.lag_study import main

                main(["--out-dir", str(folder), *(["--preset", "smoke", "--jobs", "1"] if smoke else [])])
    return read_cells(folder), read_steps(folder)


def arms(cells) -> list[str]:
    """Arms in the order the study lists them."""
    return list(dict.fromkeys(r["arm"] for r in cells))


def palette(cells) -> dict:
    """One colour per arm (tab10), shared by every panel: ratio arms in browns and reds, the rest in the others."""
    return _style.tab10(arms(cells))


@_doc
def plot_curve(cells, steps, lag, *, colors=None, ax=None):
    """Draw held-out pass@1 against RL step at one lag: mean over seeds, 95% bootstrap band; dotted: the SFT start.

    {params}
    steps : list of dict
        Rows of ``steps.csv.gz`` (:func:`load`): one per (arm, lag, seed, step), with ``eval/pass@1`` where evaluated.
    lag : int
        The lag whose runs are drawn.
    {colors}
    {ax}
    """
    ax, colors = _style.panel_colors(ax, colors, palette, cells)
    for arm in colors:
        rows = [r for r in steps if r["arm"] == arm and r["lag"] == lag and r.get("eval/pass@1") is not None]
        if not rows:
            continue
        start = {r["seed"]: r["pass1_start"] for r in cells if r["arm"] == arm and r["lag"] == lag}
        xs = [0] + sorted({r["step"] for r in rows})
        mean, lo, hi = [], [], []
        for x in xs:
            vals = list(start.values()) if x == 0 else [r["eval/pass@1"] for r in rows if r["step"] == x]
            m, a, b = bootstrap_ci(vals)
            mean.append(m), lo.append(a), hi.append(b)
        ax.plot(xs, mean, color=colors[arm], lw=1.4, label=arm)
        ax.fill_between(xs, lo, hi, color=colors[arm], alpha=0.15, lw=0)
    start = np.mean([r["pass1_start"] for r in cells])
    ax.axhline(start, color="k", ls=":", lw=1)
    ax.set_xlabel("RL step")
    ax.set_ylabel("held-out pass@1")
    ax.set_title(f"learning at lag {lag}")
    return ax


def _by_lag(cells, arm, key):
    lags = sorted({r["lag"] for r in cells if r["arm"] == arm})
    out = []
    for lag in lags:
        vals = [r[key] for r in cells if r["arm"] == arm and r["lag"] == lag and r.get(key) is not None]
        out.append((lag, *bootstrap_ci(vals)) if vals else (lag, np.nan, np.nan, np.nan))
    return np.array(out, dtype=float).reshape(-1, 4)


@_doc
def plot_lag_metric(cells, key, ylabel, title, *, colors=None, start_line=False, ax=None):
    """Draw a per-cell metric against lag: mean over seeds with 95% bootstrap intervals, arms slightly offset.

    {params}
    key : str
        The column of ``cells`` drawn (e.g. ``pass1_final``, ``entropy_final``, ``collapsed``).
    ylabel, title : str
        Labels of the panel.
    start_line : bool
        Whether to draw the SFT start's mean pass@1 dotted.
    {colors}
    {ax}
    """
    ax, colors = _style.panel_colors(ax, colors, palette, cells)
    n = len(colors)
    for i, arm in enumerate(colors):
        t = _by_lag(cells, arm, key)
        if not len(t):
            continue
        x = t[:, 0] * (1 + 0.04 * (i - (n - 1) / 2)) + 0.06 * (i - (n - 1) / 2) * (t[:, 0] == 0)
        ax.errorbar(x, t[:, 1], yerr=[t[:, 1] - t[:, 2], t[:, 3] - t[:, 1]], color=colors[arm], marker="o", ms=3.5,
                    lw=1.2, capsize=2, label=arm)
    if start_line:
        ax.axhline(np.mean([r["pass1_start"] for r in cells]), color="k", ls=":", lw=1, label="SFT start")
    _style.lag_axis(ax, sorted({r["lag"] for r in cells}), "lag L (RL steps)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


@_doc
def plot_theory(cells, *, colors=None, ax=None):
    """Draw predicted eta at lag 0 against the change of final pass@1 from lag 0 to the largest lag (paired, 95% CI).

    Arms without eta (ratio-based) are drawn as squares at the left edge;
    arms with fewer than two seeds at both lags are left out.

    {params}
    {colors}
    {ax}
    """
    ax, colors = _style.panel_colors(ax, colors, palette, cells)
    L = max(r["lag"] for r in cells)
    etas = [r["eta_pred"] for r in cells if r["lag"] == 0 and r.get("eta_pred") is not None]
    left = min(etas) - 1 if etas else -1
    for arm in colors:
        d0 = {r["seed"]: r["pass1_final"] for r in cells if r["arm"] == arm and r["lag"] == 0}
        dL = {r["seed"]: r["pass1_final"] for r in cells if r["arm"] == arm and r["lag"] == L}
        if len(set(d0) & set(dL)) < 2:
            continue
        p = paired(d0, dL)
        eta = [r["eta_pred"] for r in cells if r["arm"] == arm and r["lag"] == 0 and r.get("eta_pred") is not None]
        x = float(np.mean(eta)) if eta else left
        marker = "s" if arm in RATIO_ARMS or not eta else "o"
        ax.errorbar(x, p.mean, yerr=[[p.mean - p.low], [p.high - p.mean]], color=colors[arm], marker=marker, ms=5,
                    capsize=2, lw=1.2)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("predicted eta at lag 0\n(squares: ratio arms, no eta)")
    ax.set_ylabel(f"final pass@1,\nlag {L} minus lag 0")
    ax.set_title("pessimism against\nstability under lag")
    return ax


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    cells, steps = load(smoke, results_dir=results_dir)
    colors = palette(cells)
    lags = sorted({r["lag"] for r in cells})
    fig, axes = _style.subplots(2, 3, figsize=FIGSIZE)
    plot_curve(cells, steps, lags[0], colors=colors, ax=axes[0, 0])
    plot_curve(cells, steps, lags[-1], colors=colors, ax=axes[0, 1])
    axes[0, 1].sharey(axes[0, 0])
    axes[0, 0].set_ylim(bottom=0.0)  # runs that fall to 0 under lag stay in view
    plot_lag_metric(cells, "pass1_final", "final held-out pass@1", "final pass@1", colors=colors,
                    start_line=True, ax=axes[0, 2])
    plot_lag_metric(cells, "entropy_final", "token entropy [nats]", "entropy (last 10 steps)", colors=colors,
                    ax=axes[1, 0])
    below = [dict(r, below_start=int(r["pass1_final"] < r["pass1_start"])) for r in cells]
    collapsed = sum(r["collapsed"] for r in cells)
    plot_lag_metric(below, "below_start", "fraction of runs", f"ending below the SFT start\n"
                    f"(collapses: {collapsed} of {len(cells)} runs)", colors=colors, ax=axes[1, 1])
    plot_theory(cells, colors=colors, ax=axes[1, 2])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False,
               columnspacing=1.2, handletextpad=0.4)
    n = len({r["seed"] for r in cells})
    fig.suptitle(f"Lag study (countdown, character-level smoke model): {n} seed{'s' if n != 1 else ''} per cell at most,\n"
                 "mean and 95% bootstrap interval over seeds")
    return _style.save(fig, out, "fig11_llm_lag", overwrite=overwrite)
