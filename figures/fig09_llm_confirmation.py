"""Figure 9: the LLM trainer's confirmation — eta fitted against predicted, the ordering of the baselines,
and reward, entropy, KL against lag.

Reads ``results/llm_confirm/summary.csv``, written by

    python -m sims.llm.confirm --out-dir results/llm_confirm \\
        --objectives opmd opmd_lme shifted_regression oapl grpo opmd_above --lags 0 4 16 \\
        --seeds 0 1 2 3 4 5 6 7 8 9 --steps 30

(the character-level smoke model after its SFT warm start, 30 RL steps per cell,
metrics averaged over the last 10 steps; mean and standard error over seeds).
When the file is missing the grid is recomputed into that folder (under
``--smoke``, a small grid into the results cache instead, see :func:`load`).
Two rows of three panels (:data:`FIGSIZE`, a two-column paper's full text
width); the objectives' colours are in one legend below them. Top left: eta
fitted from the realized log-ratios (identity estimator, after the update)
against the Lambert prediction from the group's advantages; hollow markers
there: the grid of ``results/llm_confirm_k8`` (8 inner steps per batch, 8 steps;
its README has the commands), where the fit moves towards the prediction. Top
middle: the regression baselines at beta = 0.1 in their predicted order of
pessimism (V above the soft value, the exact soft value, the mean, the
beta-shifted mean), fitted (filled) and predicted (hollow) eta at each lag; OAPL
(beta = 1e-3, |eta| ~ 10^2) is off this scale and stays in the top-left panel.
Top right, bottom left, bottom middle: reward, entropy and KL(mu||pi_{t+1})
after the update against lag; bottom right: the ratio-based objective's clip
fraction and ratio ESS against lag. Each panel is drawn by its own function
(:func:`plot_eta`, :func:`plot_ordering`, :func:`plot_lag_metric`,
:func:`plot_ratio`), which takes ``ax=None`` and returns the axes.
results/llm_confirm/README.md states the orderings with their
standard errors (``tables.md`` there). Figure 10 (``fig10_llm_probe``) trains
to convergence on one frozen behaviour, where the fitted eta can be compared with
the prediction directly.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from . import _style

__all__ = ["load", "objectives", "palette", "plot_eta", "plot_ordering", "plot_lag_metric", "plot_ratio", "make"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "llm_confirm"
#: the same grid with 8 inner steps per batch (see its README); drawn hollow in the eta panel when present
RESULTS_K8 = ROOT / "results" / "llm_confirm_k8"
FULL_GRID = ["--objectives", "opmd", "opmd_lme", "shifted_regression", "oapl", "grpo", "opmd_above", "--lags", "0", "4", "16",
             "--seeds", *map(str, range(10)), "--steps", "30"]
#: the regression baselines at beta = 0.1 in their predicted order of pessimism (eta increasing)
ORDER = ["opmd_above", "opmd_lme", "opmd", "shifted_regression"]
BASELINE = {"opmd_above": "V above\nsoft\nvalue", "opmd_lme": "soft\nvalue", "opmd": "mean",
            "shifted_regression": "beta-\nshifted\nmean"}
SMOKE_GRID = ["--objectives", "opmd", "shifted_regression", "grpo", "--lags", "0", "4", "--seeds", "0", "1",
              "--steps", "8"]
#: two rows of three panels at a two-column paper's full text width (inches)
FIGSIZE = (7.0, 6.4)
#: the parameters the panels share, filled into their docstrings (``_style.shared_doc``); ``params`` opens
#: the Parameters section with ``rows``
_doc = _style.shared_doc(
    params="Parameters\n----------\nrows : list of dict\n"
           "    Rows of ``summary.csv`` (:func:`load`): one per (objective, lag), with\n"
           "    the means over seeds and their standard errors (``<column>_se``).",
    colors="colors : dict, optional\n"
           "    Colour of each objective, in drawing order; :func:`palette` of ``rows`` by default.",
)


def load(smoke: bool, path: Path | None = None, results_dir: Path | None = None) -> list[dict]:
    """Rows of a summary.csv, numbers as floats (None when empty).

    ``path`` defaults to ``results/llm_confirm/summary.csv``. When that file is
    missing the grid is recomputed: the full grid into ``results/llm_confirm/``;
    the smoke grid into ``llm_confirm_smoke/`` of the results cache
    (``results_dir``, resolved by :func:`sims.sweeps.result_path`), so smoke
    numbers never land beside the committed results.
    """
    if path is None:
        path = RESULTS / "summary.csv"
        if not path.exists():
            from sims.sweeps import result_path

            folder = result_path("llm_confirm", True, results_dir) if smoke else RESULTS
            path = folder / "summary.csv"
            if not path.exists():
                from sims.llm.confirm import main

                main(["--out-dir", str(folder), *(SMOKE_GRID if smoke else FULL_GRID)])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k != "objective":
                r[k] = float(v) if v not in ("", None) else None
    return rows


def _series(rows, obj, key):
    cell = sorted((r for r in rows if r["objective"] == obj), key=lambda r: r["lag"])
    lag = np.array([r["lag"] for r in cell])
    m = np.array([np.nan if r[key] is None else r[key] for r in cell])
    se = np.array([0.0 if r.get(f"{key}_se") is None else r[f"{key}_se"] for r in cell])
    return lag, m, se


def objectives(rows) -> list[str]:
    """The objectives of ``rows`` in drawing order: :data:`ORDER`, then OAPL and GRPO, then any others."""
    found = list(dict.fromkeys(r["objective"] for r in rows))
    known = ORDER + ["oapl", "grpo"]
    return [o for o in known if o in found] + [o for o in found if o not in known]


def palette(rows) -> dict:
    """One tab10 colour per objective of ``rows``, in the order of :func:`objectives` (shared by every panel)."""
    return _style.tab10(objectives(rows))


def _lag_axis(ax, rows):
    _style.lag_axis(ax, sorted({r["lag"] for r in rows}), "lag L")


def _eta_point(ax, r, color, **hollow):
    """Draw one row's fitted against predicted eta with both standard errors; the marker grows with the lag."""
    ax.errorbar(r["eta_pred"], r["eta_fit"], xerr=r["eta_pred_se"] or 0, yerr=r["eta_fit_se"] or 0,
                fmt="o", color=color, ms=4 + r["lag"] / 4, **hollow)


@_doc
def plot_eta(rows, k8_rows=None, *, colors=None, legend=True, ax=None):
    """Draw the fitted against the Lambert-predicted eta per (objective, lag), symlog; marker size grows with lag.

    {params}
    k8_rows : list of dict, optional
        Rows of ``results/llm_confirm_k8/summary.csv`` (8 inner steps per
        batch), drawn hollow when given.
    {colors}
    legend : bool
        With False the panel's legend keeps only its own entries (hollow
        markers, diagonal) and leaves the objective colours to a legend shared
        by the figure.
    {ax}
    """
    ax, colors = _style.panel_colors(ax, colors, palette, rows)
    own = []
    lim = 0.0
    for obj in colors:
        for r in rows:
            if r["objective"] != obj or r["eta_fit"] is None or r["eta_pred"] is None:
                continue
            _eta_point(ax, r, colors[obj])
            lim = max(lim, r["eta_pred"], r["eta_fit"])
        ax.plot([], [], "o", color=colors[obj], label=obj)
    if k8_rows is not None:
        for r in k8_rows:
            if r["eta_fit"] is None or r["eta_pred"] is None or r["objective"] not in colors:
                continue
            _eta_point(ax, r, colors[r["objective"]], mfc="white")
            lim = max(lim, r["eta_pred"], abs(r["eta_fit"]))
        own += ax.plot([], [], "o", mfc="white", color="0.3", label="8 inner steps\nper batch")
    own += ax.plot([-lim * 1.05, lim * 1.05], [-lim * 1.05, lim * 1.05], "k:", lw=1, label="fitted = predicted")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("symlog", linthresh=1)
    # every other decade on x, so the labels stay apart at print width
    ax.set_xticks([0.0] + [s * 10.0**k for k in range(0, 9, 2) if 10.0**k <= max(lim, 1.0) for s in (-1, 1)])
    ax.set_ylim(top=10.0 * max(lim, 1.0) * 1.05)  # an empty decade on top holds the legend, clear of the diagonal
    ax.set_xlabel(r"predicted $\eta$ (Lambert, from $A$, $\beta$)")
    ax.set_ylabel(r"fitted $\eta$ (after the update)")
    ax.set_title(r"$\eta$: fitted against predicted" + "\n(symlog; marker size\ngrows with lag)")
    ax.legend(**({} if legend else {"handles": own}), frameon=False, loc="upper left", handlelength=1.2,
              borderaxespad=0.2)
    return ax


@_doc
def plot_ordering(rows, *, colors=None, ax=None):
    """Draw the fitted (filled) and predicted (hollow) eta of the beta = 0.1 baselines, in predicted order, per lag.

    {params}
        Only the objectives of :data:`ORDER` are drawn, one marker per lag.
    {colors}
    {ax}
    """
    ax, colors = _style.panel_colors(ax, colors, palette, rows)
    base = [o for o in ORDER if any(r["objective"] == o for r in rows)]
    lags = sorted({r["lag"] for r in rows})
    markers = dict(zip(lags, "os^Dv<>"))
    width = 0.6
    for j, lag in enumerate(lags):
        dx = (j - (len(lags) - 1) / 2) * width / max(len(lags), 1)
        for i, obj in enumerate(base):
            r = next((r for r in rows if r["objective"] == obj and r["lag"] == lag), None)
            if r is None or r["eta_fit"] is None:
                continue
            ax.errorbar(i + dx, r["eta_fit"], yerr=r["eta_fit_se"] or 0, fmt=markers[lag], color=colors[obj], ms=5,
                        capsize=2)
            ax.errorbar(i + dx, r["eta_pred"], yerr=r["eta_pred_se"] or 0, fmt=markers[lag], mfc="white",
                        color=colors[obj], ms=5, capsize=2)
    for lag in lags:
        ax.plot([], [], markers[lag], color="0.3", label=f"lag {int(lag)}")
    ax.plot([], [], "o", color="0.3", label="fitted")
    ax.plot([], [], "o", mfc="white", color="0.3", label="predicted")
    ax.axhline(0.0, color="k", lw=0.6, ls=":")
    ax.set_xticks(range(len(base)), [BASELINE[o] for o in base], fontsize=8)
    ax.set_xlim(-0.6, len(base) - 0.4)
    ax.set_ylabel(r"$\eta$")
    ax.set_title("regression baselines at " + r"$\beta = 0.1$" + ",\npredicted order of pessimism\n(left to right)")
    ax.legend(frameon=False, loc="lower right")
    return ax


#: the per-lag quantities of :func:`plot_lag_metric`: summary.csv column -> panel title
LAG_PANELS = {
    "reward": "reward of the samples",
    "entropy": "entropy proxy [nats/token]",
    "kl_after": r"KL$(\mu\|\pi_{t+1})$ after the update" + "\n[nats]",
}


@_doc
def plot_lag_metric(rows, key, *, colors=None, ax=None):
    """Draw the mean ± s.e. of one summary.csv column against lag, one line per objective.

    {params}
    key : str
        The column, e.g. one of :data:`LAG_PANELS` (whose value is then the title).
    {colors}
    {ax}
    """
    ax, colors = _style.panel_colors(ax, colors, palette, rows)
    for obj in colors:
        lag, m, se = _series(rows, obj, key)
        ax.errorbar(lag, m, yerr=se, marker="o", color=colors[obj], capsize=2, label=obj)
    _lag_axis(ax, rows)
    ax.set_title(LAG_PANELS.get(key, key))
    return ax


@_doc
def plot_ratio(rows, *, colors=None, ax=None):
    """Draw the clip fraction (solid) and 1 - ratio ESS (dashed) against lag, for the objectives that clip a ratio.

    {params}
        Objectives without a ``clip_frac`` are left out.
    {colors}
    {ax}
    """
    ax, colors = _style.panel_colors(ax, colors, palette, rows)
    for obj in colors:
        lag, clip, se = _series(rows, obj, "clip_frac")
        if np.isfinite(clip).any():
            ax.errorbar(lag, clip, yerr=se, marker="o", color=colors[obj], capsize=2, label=f"{obj}: clip fraction")
            lag, ess, se = _series(rows, obj, "ess")
            ax.errorbar(lag, 1 - ess, yerr=se, marker="s", ls="--", color=colors[obj], capsize=2,
                        label=f"{obj}: 1 - ratio ESS")
    _lag_axis(ax, rows)
    ax.set_title("ratio-based:\nclipping and ESS loss")
    ax.legend(frameon=False, loc="upper left")
    return ax


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    rows = load(smoke, results_dir=results_dir)
    colors = palette(rows)
    k8 = RESULTS_K8 / "summary.csv"
    k8_rows = load(smoke, k8) if k8.exists() else None
    fig, axes = _style.subplots(2, 3, figsize=FIGSIZE)
    plot_eta(rows, k8_rows, colors=colors, legend=False, ax=axes[0, 0])
    plot_ordering(rows, colors=colors, ax=axes[0, 1])
    for ax, key in zip([axes[0, 2], axes[1, 0], axes[1, 1]], LAG_PANELS):
        plot_lag_metric(rows, key, colors=colors, ax=ax)
    plot_ratio(rows, colors=colors, ax=axes[1, 2])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    keep = [i for i, lab in enumerate(labels) if lab in colors]
    fig.legend([handles[i] for i in keep], [labels[i] for i in keep], loc="outside lower center",
               ncol=min(len(keep), 6), frameon=False, columnspacing=1.2, handletextpad=0.3)
    fig.suptitle("LLM trainer (character-level smoke model, reasoning-gym chain sums):\nmean ± s.e. over seeds")
    return _style.save(fig, out, "fig09_llm_confirmation", overwrite=overwrite)
