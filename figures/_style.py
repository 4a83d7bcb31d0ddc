"""One shared style for every figure, and the PNG + PDF writer."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: Colours of the three regimes of eta, used everywhere.
REGIME_COLORS = {"positive": "#2166ac", "boundary": "#000000", "negative": "#b2182b"}

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "figure.constrained_layout.use": True,
}


def apply():
    plt.rcParams.update(STYLE)


def save(fig, out: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` under ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        tmp = p.with_suffix(p.suffix + ".tmp")
        fig.savefig(tmp, format=p.suffix[1:])
        tmp.replace(p)  # atomic: an interrupted run never leaves a half-written figure
    plt.close(fig)
    return paths
