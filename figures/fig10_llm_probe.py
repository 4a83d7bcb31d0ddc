"""Figure 10: the converged probe — the LLM trained to convergence on one frozen behaviour lands on the
induced target of its baseline, not on the Gibbs target the objective is named after.

Reads ``results/llm_probe/`` (``probe.csv``, ``trajectory.csv``), written by

    python -m sims.llm.probe --out-dir results/llm_probe --seeds 0 1 2 3

(the character-level smoke model after its SFT warm start as the frozen mu; 4 prompts per seed whose
pass rate under mu lies in [0.15, 0.85]; fresh groups of G = 64 from mu at every step; 400 AdamW steps
of the objective's own loss). When the files are missing they are recomputed there (under ``--smoke``, a small
probe into the results cache instead, see :func:`load`). Colours are the five regression baselines at beta = 0.1.

Two rows of three cells (:data:`FIGSIZE`, a two-column paper's full text width): panels (1), (2), (3)
on top; below, the legend of colours and markers shared by the panels (bottom left), then (4) (bottom
middle) and (5) (bottom right). Each panel is drawn by its own function (:func:`plot_fail`,
:func:`plot_eta`, :func:`plot_pass`, :func:`plot_leak`, :func:`plot_trajectory`, the first four through
:func:`plot_scatter`), which takes ``ax=None`` and returns the axes.

Panels (1) to (4), one point per (seed, prompt), realized against predicted with the diagonal dotted: (1) the
failing class's log-ratio log pi(fail)/mu(fail), realized (importance estimate on mu's samples)
against the Lambert target at the conditional group advantage, with the nominal Gibbs target's mean
value dashed; (2) eta realized (the stationarity identity KL + E[A]/beta) against the Lambert target's
(filled) and, where it differs, the relaxed target's (hollow: mass may leave mu's support, which an
LLM can do); (3) the pass rate of pi, sampled from pi itself, against the same two predictions; (4) the
mass pi moves off mu's support (1 - mean of e^{s_i} over mu's samples) against the relaxed target's
deficit. Panel (5): the failing class's log-ratio over training, mean over (seed, prompt), with the
Lambert prediction dashed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _style

__all__ = ["load", "objectives", "palette", "plot_scatter", "plot_fail", "plot_eta", "plot_pass", "plot_leak",
           "plot_trajectory", "make"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "llm_probe"
FULL = ["--seeds", "0", "1", "2", "3"]
SMOKE = ["--seeds", "0", "--objectives", "opmd", "shifted_regression", "--steps", "60", "--eval-samples", "256",
         "--prompts", "2"]
LABEL = {
    "opmd_above": "V above\nsoft value",
    "opmd_lme": "soft value",
    "opmd_lme:beta1=1": "decoupled\n" + r"$\beta_1 = 1$",
    "opmd": "mean",
    "shifted_regression": "beta-shifted\nmean",
}
#: two rows of three panels at a two-column paper's full text width (inches); one cell holds the shared legend
FIGSIZE = (7.0, 6.2)
#: the parameters the panels share, filled into their docstrings (``_style.shared_doc``); ``params``: all of
#: a panel of (seed, prompt) points, with its Returns section
_ROWS = "rows : list of dict\n    Rows of ``probe.csv`` (:func:`load`): one per (objective, seed, prompt)."
_COLORS = ("colors : dict, optional\n"
           "    Colour of each objective, in drawing order; :func:`palette` of ``rows`` by default.")
_LEGEND = "legend : bool\n    With False the colours and markers are left to a legend shared by the figure."
_doc = _style.shared_doc(rows=_ROWS, colors=_COLORS, legend=_LEGEND, params="\n".join(
    ["Parameters", "----------", _ROWS, _COLORS, _LEGEND, _style.DOCS["ax"]]))


def load(smoke: bool, folder: Path | None = None, results_dir: Path | None = None) -> tuple[list[dict], list[dict]]:
    """(probe rows, trajectory rows) of ``folder`` (default ``RESULTS``), recomputed there when missing.

    Under ``smoke``, when ``RESULTS`` is missing, the small probe goes to
    ``llm_probe_smoke/`` of the results cache (``results_dir``, resolved by
    :func:`sims.sweeps.result_path`), never beside the committed results.
    """
    from sims.llm.probe import main, read_rows

    if folder is None:
        folder = RESULTS
        if smoke and not (folder / "probe.csv").exists():
            from sims.sweeps import result_path

            folder = result_path("llm_probe", True, results_dir)
    if not (folder / "probe.csv").exists():
        main(["--out-dir", str(folder), *(SMOKE if smoke else FULL)])
    return read_rows(folder / "probe.csv"), read_rows(folder / "trajectory.csv")


def objectives(rows) -> list[str]:
    """The objectives of ``rows`` in drawing order: those of :data:`LABEL` first, in its order, then any others."""
    objs = [o for o in LABEL if any(r["objective"] == o for r in rows)]
    return objs + [o for o in dict.fromkeys(r["objective"] for r in rows) if o not in objs]


def palette(rows) -> dict:
    """One tab10 colour per objective of ``rows``, in the order of :func:`objectives` (shared by every panel)."""
    return _style.tab10(objectives(rows))


def _label(o) -> str:
    return LABEL.get(o, o).replace("\n", " ")


@_doc
def plot_scatter(rows, real, pred, relaxed=None, *, xlabel="", ylabel="", title="", colors=None, legend=True,
                 ax=None):
    """Draw a realized column against a predicted one, one point per (seed, prompt), with the diagonal dotted.

    Parameters
    ----------
    {rows}
    real, pred : str
        Columns of the realized (y) and the predicted (x, the Lambert target's) value.
    relaxed : str, optional
        Column of the relaxed target's prediction (negative regime: mass may
        leave mu's support); where given and different, the point is repeated
        hollow at it.
    xlabel, ylabel, title : str
        Labels of the panel.
    {colors}
    {legend}
    {ax}
    """
    ax, colors = _style.panel_colors(ax, colors, palette, rows)
    lo, hi = np.inf, -np.inf
    for o in colors:
        cell = [r for r in rows if r["objective"] == o]
        x, y = np.array([r[pred] for r in cell]), np.array([r[real] for r in cell])
        ax.plot(x, y, "o", color=colors[o], ms=5, alpha=0.85, label=_label(o))
        lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
        if relaxed is not None:
            xr = np.array([r[relaxed] for r in cell])
            moved = np.abs(xr - x) > 1e-3 * max(1.0, np.abs(x).max())
            if moved.any():
                ax.plot(xr[moved], y[moved], "o", mfc="none", color=colors[o], ms=7, mew=1.3)
                lo, hi = min(lo, xr.min()), max(hi, xr.max())
    pad = 0.05 * (hi - lo)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k:", lw=1, label="realized = predicted")
    if relaxed is not None:
        ax.plot([], [], "o", color="0.3", ms=5, label="x: Lambert target")
        ax.plot([], [], "o", mfc="none", color="0.3", ms=7, mew=1.3, label="x: relaxed target\n(where it differs)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(frameon=False)
    return ax


@_doc
def plot_fail(rows, *, colors=None, legend=True, ax=None):
    """Draw the failing class's log-ratio, realized (importance estimate) against the Lambert target.

    The nominal Gibbs target's mean value is dashed; its legend entry stays in
    the panel under ``legend=False``.

    {params}
    """
    ax = plot_scatter(rows, "log_u_fail", "log_u_fail_pred", None,
                      xlabel=r"predicted $\log\,\pi(\mathrm{fail})/\mu(\mathrm{fail})$",
                      ylabel="realized (importance estimate) [nats]",
                      title="mass moved off the\nfailing answers\n(higher = more conservative)",
                      colors=colors, legend=False, ax=ax)
    gibbs = np.mean([r["gibbs_log_u_fail"] for r in rows])
    line = ax.axvline(gibbs, color="0.5", ls="--", lw=1, label=f"nominal\nGibbs target\n(mean, {gibbs:.1f})")
    ax.legend(**({} if legend else {"handles": [line]}), frameon=False, loc="lower right", handlelength=1.2,
              borderaxespad=0.2)
    return ax


@_doc
def plot_eta(rows, *, colors=None, legend=True, ax=None):
    """Draw eta realized (KL + E[A]/beta) against the Lambert target's (filled) and the relaxed target's (hollow).

    {params}
    """
    ax = plot_scatter(rows, "eta", "eta_pred", "eta_relaxed", xlabel=r"predicted $\eta$",
                      ylabel=r"realized $\eta = \mathrm{KL}(\mu\|\pi) + E_\mu[\bar A]/\beta$",
                      title=r"$\eta$ at convergence", colors=colors, legend=legend, ax=ax)
    ax.axhline(0.0, color="k", lw=0.6, ls=":")
    return ax


@_doc
def plot_pass(rows, *, colors=None, legend=True, ax=None):
    """Draw the pass rate of pi (sampled from pi) against the Lambert (filled) and relaxed (hollow) targets'.

    {params}
    """
    return plot_scatter(rows, "pass_pi", "pass_pred", "pass_relaxed", xlabel="predicted mass\non reward 1",
                        ylabel=r"pass rate of $\pi$ (sampled from $\pi$)",
                        title="pass rate\n" + rf"($\mu$: {np.mean([r['mu_pass'] for r in rows]):.2f}; nominal"
                              "\nGibbs target: " + rf"{np.mean([r['gibbs_reward'] for r in rows]):.3f})",
                        colors=colors, legend=legend, ax=ax)


@_doc
def plot_leak(rows, *, colors=None, legend=True, ax=None):
    """Draw the mass pi moves off mu's support (1 - mean of e^{s_i} over mu's samples) against the relaxed target's.

    {params}
    """
    return plot_scatter(rows, "leak", "leak_relaxed", None,
                        xlabel=r"relaxed target's mass" + "\n" + r"off $\mu$'s support",
                        ylabel=r"realized $1 - \frac{1}{n}\sum_i e^{s_i}$" + "\n(importance estimate)",
                        title="mass moved to completions\n" + r"$\mu$" + " does not sample (Lambert\n"
                              "target: 0 by construction)",
                        colors=colors, legend=legend, ax=ax)


@_doc
def plot_trajectory(traj, *, colors=None, legend=True, ax=None):
    """Draw the failing class's log-ratio over training, mean over (seed, prompt); the Lambert target dashed.

    Parameters
    ----------
    traj : list of dict
        Rows of ``trajectory.csv`` (:func:`load`): one per (objective, seed, prompt, step).
    colors : dict, optional
        Colour of each objective, in drawing order; :func:`palette` of ``traj`` by default.
    {legend}
    {ax}
    """
    ax, colors = _style.panel_colors(ax, colors, palette, traj)
    for o in colors:
        cell = [t for t in traj if t["objective"] == o]
        steps = sorted({t["step"] for t in cell})
        m = [np.mean([t["log_u_fail"] for t in cell if t["step"] == s]) for s in steps]
        ax.plot(steps, m, color=colors[o], label=_label(o))
        ax.axhline(np.mean([t["log_u_fail_pred"] for t in cell]), color=colors[o], ls="--", lw=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(r"$\log\,\pi(\mathrm{fail})/\mu(\mathrm{fail})$ [nats]")
    ax.set_title("training curves, mean\nover (seed, prompt)\n(dashed: Lambert target)")
    if legend:
        ax.legend(frameon=False)
    return ax


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None, folder: Path | None = None) -> list[Path]:
    rows, traj = load(smoke, folder, results_dir)
    colors = palette(rows)
    fig, axes = _style.subplots(2, 3, figsize=FIGSIZE, width_ratios=[0.92, 1.0, 1.08])
    plot_fail(rows, colors=colors, legend=False, ax=axes[0, 0])
    plot_eta(rows, colors=colors, legend=False, ax=axes[0, 1])
    plot_pass(rows, colors=colors, legend=False, ax=axes[0, 2])
    plot_leak(rows, colors=colors, legend=False, ax=axes[1, 1])
    plot_trajectory(traj, colors=colors, legend=False, ax=axes[1, 2])
    key = axes[1, 0]  # the colours and markers shared by the five panels
    key.axis("off")
    key.legend(*axes[0, 1].get_legend_handles_labels(), loc="center", frameon=False)
    fig.suptitle("Converged probe: the LLM (character-level smoke model, chain sums) fitted to one\nfrozen behaviour "
                 r"with each $\beta = 0.1$ regression baseline; one point per (seed, prompt)")
    return _style.save(fig, out, "fig10_llm_probe", overwrite=overwrite)
