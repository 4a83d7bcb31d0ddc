r"""Figure 3: the objective zoo's induced targets on the ``graded`` bandit, beside the nominal targets.

One panel per objective of ``theory.objectives.OBJECTIVES`` (published
settings), arms on the x axis labelled by their reward. Bars: the induced
target :math:`\pi` (population advantages, :math:`\mu` held fixed), coloured
by family; for the PPO-clip family the target is set-valued (the optimal face
of a linear program) and each arm's range :math:`[\pi^{\min}_y, \pi^{\max}_y]`
is drawn as a shaded bar with caps. Grey outline: the behaviour policy
:math:`\mu`. Black diamonds: the nominal target the objective is named after
(the Gibbs target at its temperature, or the greedy policy; none for a trust
region), on the arms where it exceeds 0.005. Every number comes from
``theory.zoo_table.zoo_rows``, the same code that writes ``docs/zoo_table.md``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import theory as T
from theory.objectives import OBJECTIVES, make_objective
from theory.zoo_table import nominal_temperature, zoo_rows

from . import _style

BANDIT = "graded"
FAMILY_COLORS = {"ratio": "#d6604d", "ratio-free": "#4d9221", "weighted-ce": "#8073ac", "regression": "#2166ac"}
NCOLS = 6

__all__ = ["compute", "plot_zoo_target", "make"]


def _nominal(obj, mu, r):
    beta = nominal_temperature(obj, mu, r)
    if beta is not None:
        return T.gibbs_target(mu, r, beta), rf"Gibbs, $\beta={beta:.3g}$"
    if obj.nominal.startswith("greedy") and "trust region" not in obj.nominal:
        best = r >= r[mu > 0].max()
        return np.where(best, mu, 0.0) / mu[best].sum(), "greedy"
    return None, "trust region"


def _summary(e) -> str:
    if e["pi"] is None and not e["set_valued"]:
        return "not computed"
    if e["set_valued"]:
        lo, hi = e["reward"]
        return rf"set; $E r\in[{lo:.2f}, {hi:.2f}]$"
    txt = rf"$E r={e['reward']:.2f}$"
    if e["eta"] is not None:
        txt += rf", $\eta={e['eta']:.3g}$"
    return txt


def compute(bandit: str = BANDIT, objectives=None) -> dict:
    """Every objective's induced target and nominal target on one standard bandit.

    ``objectives`` (names of ``theory.objectives.OBJECTIVES``) restricts the
    panels to those; by default every objective of the zoo.

    Returns a dict: ``bandit`` (its name), ``mu`` and ``r`` (K,), and
    ``panels``, one dict per objective of the zoo in table order: ``objective``
    (its name), ``family``, ``target`` (the bandit's entry of
    :func:`theory.zoo_table.zoo_rows`: ``pi`` (K,) or, when ``set_valued``,
    ``pi_min`` and ``pi_max`` (K,), with ``reward``, ``eta``, ``certified`` and
    ``note``) and ``nominal`` (K,), or None for a trust region.
    """
    b = T.STANDARD_BANDITS[bandit]
    panels = []
    for row in zoo_rows({bandit: b}, objectives):
        nominal, _ = _nominal(make_objective(row["objective"]), b.mu, b.r)
        panels.append({"objective": row["objective"], "family": row["family"], "target": row["bandits"][bandit],
                       "nominal": nominal})
    return {"bandit": bandit, "mu": b.mu, "r": b.r, "panels": panels}


@_style.panel_doc
def plot_zoo_target(panel: dict, mu, r, *, label_axes: bool = True, ax=None):
    """Draw one objective's induced target as bars over the arms, beside the behaviour policy and its nominal target.

    Parameters
    ----------
    panel : dict
        One entry of the ``panels`` of :func:`compute`. A point target is a bar
        per arm (paler when not certified), a set-valued one a shaded range
        with caps; the nominal target is black diamonds where it exceeds 0.005.
    mu, r : array
        Behaviour policy and rewards of the bandit, shape (K,) each.
    label_axes : bool
        Whether to label the arms by their reward and name both axes (off in a
        grid of panels, which labels only its outer edge).
    {ax}
    """
    ax = _style.panel_axes(ax)
    e, nom = panel["target"], panel["nominal"]
    color = FAMILY_COLORS.get(panel["family"], "0.4")
    x = np.arange(mu.size)
    ax.bar(x, mu, 0.86, fill=False, edgecolor="0.55", lw=0.8, zorder=1)
    if e["set_valued"]:
        ax.bar(x, e["pi_max"] - e["pi_min"], 0.6, bottom=e["pi_min"], color=color, alpha=0.35, zorder=2)
        mid = 0.5 * (e["pi_min"] + e["pi_max"])
        ax.errorbar(x, mid, yerr=0.5 * (e["pi_max"] - e["pi_min"]), fmt="none", ecolor=color,
                    elinewidth=1.2, capsize=2.5, zorder=3)
    elif e["pi"] is not None:
        ax.bar(x, e["pi"], 0.6, color=color, alpha=0.9 if e["certified"] else 0.55, zorder=2)
    else:
        why = "\n(the flow's integrator\nfailed)" if "integrator failed" in e["note"] else ""
        ax.text(0.5, 0.5, "not computed" + why, transform=ax.transAxes,
                ha="center", va="center", fontsize=7, color="0.3")
    if nom is not None:
        show = nom > 5e-3  # arms the nominal target leaves empty are not marked
        ax.plot(x[show], nom[show], "D", color="k", ms=2.8, zorder=4, clip_on=False)
    ax.set_title(panel["objective"], fontsize=8.5, pad=2, color=color)
    ax.text(0.98, 0.97, _summary(e), transform=ax.transAxes, ha="right", va="top", fontsize=6.5)
    ax.set_ylim(0, 1.02)
    ax.grid(axis="x", visible=False)
    if label_axes:
        ax.set_xticks(x, [f"{v:g}" for v in r], fontsize=6.5)
        ax.set_xlabel("arm reward $r$", fontsize=7.5)
        ax.set_ylabel(r"$\pi(y)$")
    return ax


def _legend(fig):
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in FAMILY_COLORS.values()]
    labels = [f"induced target: {f}" for f in FAMILY_COLORS]
    handles += [
        plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.35),
        plt.Rectangle((0, 0), 1, 1, fill=False, edgecolor="0.55"),
        plt.Line2D([], [], marker="D", color="k", ls="none", ms=3),
    ]
    labels += [r"set-valued target: range of $\pi(y)$", r"behaviour $\mu$",
               r"nominal target (Gibbs at its $\beta$, or greedy; where $>0.005$)"]
    fig.legend(handles, labels, loc="outside lower center", ncol=4, frameon=False, fontsize=7.5)


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    # --smoke draws the objectives whose target is solved, not integrated (seconds each): the same code paths
    names = [n for n in OBJECTIVES if make_objective(n).target_kind not in ("numerical", "flow")] if smoke else None
    data = compute(BANDIT, names)
    mu, r = data["mu"], data["r"]
    n = len(data["panels"])
    nrows = -(-n // NCOLS)
    fig, axes = _style.subplots(nrows, NCOLS, figsize=(2.2 * NCOLS, 1.95 * nrows + 0.9), sharex=True, sharey=True)
    axes = np.atleast_2d(axes)
    for ax, panel in zip(axes.flat, data["panels"]):
        plot_zoo_target(panel, mu, r, label_axes=False, ax=ax)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    x = np.arange(mu.size)
    for ax in axes[-1]:
        ax.set_xticks(x, [f"{v:g}" for v in r], fontsize=6.5)
    for ax in axes[-1]:
        ax.set_xlabel("arm reward $r$", fontsize=7.5)
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$\pi(y)$")
    _legend(fig)
    fig.suptitle(f"Induced targets of the objective zoo on the '{BANDIT}' bandit (published settings); "
                 "paler bars: numerical point not certified by its solver", fontsize=9.5)
    return _style.save(fig, out, "fig03_zoo_targets", overwrite=overwrite)
