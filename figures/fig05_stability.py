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

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm

from sims.sweeps import load_or_run

from . import _style


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    _style.apply()
    arrays, _ = load_or_run("fig05_stability", smoke, results_dir=results_dir, progress=False)
    objectives = [str(o) for o in arrays["objective"]]
    lags, lrs, rad = arrays["lag"], arrays["lr"], arrays["radius_transverse"]
    n = len(objectives)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.6), sharey=True, squeeze=False)
    norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=max(2.0, float(np.nanmax(np.minimum(rad, 3.0)))))
    for j, obj in enumerate(objectives):
        ax = axes[0, j]
        im = ax.pcolormesh(np.arange(len(lrs) + 1), np.arange(len(lags) + 1), np.minimum(rad[j], 3.0),
                           cmap="RdBu_r", norm=norm, shading="flat")
        ax.set_title(obj)
        neutral = np.isclose(arrays["radius"][j], 1.0, atol=1e-9) & (rad[j] <= 1e-12)
        if neutral.all():  # every root is neutral: the update has no pull towards the lagged policy
            ax.cla()
            ax.set_facecolor("0.85")
            ax.set_xlim(0, len(lrs))
            ax.set_ylim(0, len(lags))
            ax.text(0.5 * len(lrs), 0.5 * len(lags), "all roots at 1:\nneutral, no pull\ntowards the lagged\npolicy", ha="center",
                    va="center", fontsize=9)
            ax.set_title(obj)
        idx = np.arange(0, len(lrs), max(1, len(lrs) // 5))
        ax.set_xticks(idx + 0.5, [f"{lrs[i]:.2g}" for i in idx])
        ax.grid(False)
        ax.set_xlabel("step size")
    axes[0, 0].set_yticks(np.arange(len(lags)) + 0.5, [str(int(x)) for x in lags])
    axes[0, 0].set_ylabel("lag L")
    fig.colorbar(im, ax=axes[0, :].tolist(), label="spectral radius without the neutral root (clipped at 3)", shrink=0.9)
    fig.suptitle("Stability of the delayed iteration (radius > 1: unstable)")
    return _style.save(fig, out, "fig05_stability", overwrite=overwrite)
