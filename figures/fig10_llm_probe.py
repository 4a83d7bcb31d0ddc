"""Figure 10: the converged probe — the LLM trained to convergence on one frozen behaviour lands on the
induced target of its baseline, not on the Gibbs target the objective is named after.

Reads ``results/llm_probe/`` (``probe.csv``, ``trajectory.csv``), written by

    python -m sims.llm.probe --out-dir results/llm_probe --seeds 0 1 2 3

(the character-level smoke model after its SFT warm start as the frozen mu; 4 prompts per seed whose
pass rate under mu lies in [0.15, 0.85]; fresh groups of G = 64 from mu at every step; 400 AdamW steps
of the objective's own loss). When the files are missing they are recomputed there (under ``--smoke``, a small
probe into the results cache instead, see :func:`load`). Colours are the five regression baselines at beta = 0.1.

Panels, one point per (seed, prompt), realized against predicted with the diagonal dotted: (1) the
failing class's log-ratio log pi(fail)/mu(fail), realized (importance estimate on mu's samples)
against the Lambert target at the conditional group advantage, with the nominal Gibbs target's mean
value dashed; (2) eta realized (the stationarity identity KL + E[A]/beta) against the Lambert target's
(filled) and, where it differs, the relaxed target's (hollow: mass may leave mu's support, which an
LLM can do); (3) the pass rate of pi, sampled from pi itself, against the same two predictions; (4) the
mass pi moves off mu's support (1 - mean of e^{s_i} over mu's samples) against the relaxed target's
deficit; (5) the failing class's log-ratio over training, mean over (seed, prompt), with the Lambert
prediction dashed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import _style

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


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None, folder: Path | None = None) -> list[Path]:
    _style.apply()
    rows, traj = load(smoke, folder, results_dir)
    objs = [o for o in LABEL if any(r["objective"] == o for r in rows)]
    objs += [o for o in dict.fromkeys(r["objective"] for r in rows) if o not in objs]
    colors = dict(zip(objs, plt.cm.tab10(np.arange(len(objs)))))
    fig, axes = plt.subplots(1, 5, figsize=(26, 4.9))

    def scatter(ax, real, pred, relaxed, xlabel, ylabel, title):
        """Realized against predicted per (seed, prompt): filled at the Lambert target, hollow at the
        relaxed target where the two differ (negative regime: mass may leave mu's support)."""
        lo, hi = np.inf, -np.inf
        for o in objs:
            cell = [r for r in rows if r["objective"] == o]
            x, y = np.array([r[pred] for r in cell]), np.array([r[real] for r in cell])
            ax.plot(x, y, "o", color=colors[o], ms=5, alpha=0.85, label=LABEL.get(o, o).replace("\n", " "))
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
            ax.plot([], [], "o", mfc="none", color="0.3", ms=7, mew=1.3, label="x: relaxed target (where it differs)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)

    scatter(axes[0], "log_u_fail", "log_u_fail_pred", None, r"predicted $\log\,\pi(\mathrm{fail})/\mu(\mathrm{fail})$",
            "realized (importance estimate) [nats]", "mass moved off the failing answers\n(higher = more conservative)")
    gibbs = np.mean([r["gibbs_log_u_fail"] for r in rows])
    axes[0].axvline(gibbs, color="0.5", ls="--", lw=1, label=f"nominal Gibbs target (mean, {gibbs:.1f})")
    axes[0].legend(frameon=False, fontsize=7)
    scatter(axes[1], "eta", "eta_pred", "eta_relaxed", r"predicted $\eta$",
            r"realized $\eta = \mathrm{KL}(\mu\|\pi) + E_\mu[\bar A]/\beta$", r"$\eta$ at convergence")
    axes[1].axhline(0.0, color="k", lw=0.6, ls=":")
    axes[1].legend(frameon=False, fontsize=7)
    scatter(axes[2], "pass_pi", "pass_pred", "pass_relaxed", r"predicted mass on reward 1",
            r"pass rate of $\pi$ (sampled from $\pi$)",
            "pass rate\n" + rf"($\mu$: {np.mean([r['mu_pass'] for r in rows]):.2f}; nominal Gibbs target: "
            rf"{np.mean([r['gibbs_reward'] for r in rows]):.3f})")
    axes[2].legend(frameon=False, fontsize=7)
    scatter(axes[3], "leak", "leak_relaxed", None, r"relaxed target's mass off $\mu$'s support",
            r"realized $1 - \frac{1}{n}\sum_i e^{s_i}$ (importance estimate)",
            "mass moved to completions " + r"$\mu$" + " does not sample\n(Lambert target: 0 by construction)")
    axes[3].legend(frameon=False, fontsize=7)
    ax = axes[4]
    for o in objs:
        cell = [t for t in traj if t["objective"] == o]
        steps = sorted({t["step"] for t in cell})
        m = [np.mean([t["log_u_fail"] for t in cell if t["step"] == s]) for s in steps]
        ax.plot(steps, m, color=colors[o], label=LABEL.get(o, o).replace("\n", " "))
        ax.axhline(np.mean([t["log_u_fail_pred"] for t in cell]), color=colors[o], ls="--", lw=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(r"$\log\,\pi(\mathrm{fail})/\mu(\mathrm{fail})$ [nats]")
    ax.set_title("training curves, mean over (seed, prompt)\n(dashed: Lambert target)")
    ax.legend(frameon=False, fontsize=7)
    fig.suptitle("Converged probe: the LLM (character-level smoke model, chain sums) fitted to one frozen behaviour "
                 r"with each $\beta = 0.1$ regression baseline; one point per (seed, prompt)")
    return _style.save(fig, out, "fig10_llm_probe", overwrite=overwrite)
