"""Wall time of the bandit sweeps that feed the lag figures (goal: the full figure-4 sweep in <= 2 minutes on 2 cores).

Times ``sims.sweeps.run_lag_sweep`` (figure 4: objectives x group sizes x
lags, all seeds of a cell in one torch computation) and
``run_stability_sweep`` (figure 5), without the cache and without writing
anything. ``--smoke`` times the smoke presets only.

    python benchmarks/bench_bandit_sweep.py [--smoke] [--repeats 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os

from _timing import best_time
from sims.sweeps import lag_sweep, run_lag_sweep, run_stability_sweep, stability_sweep

GOAL_S = 120.0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="time the smoke presets only")
    p.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    args = p.parse_args(argv)

    rows = []
    presets = [True] if args.smoke else [True, False]
    for smoke in presets:
        lsw = lag_sweep(smoke)
        t_lag, arrays = best_time(lambda: run_lag_sweep(lsw, progress=False), args.repeats)
        ssw = stability_sweep(smoke)
        t_stab, _ = best_time(lambda: run_stability_sweep(ssw, progress=False), args.repeats)
        cells = len(lsw.objectives) * len(lsw.group_sizes) * len(lsw.lags)
        rows.append(
            dict(
                preset="smoke" if smoke else "full",
                lag_sweep_s=round(t_lag, 2),
                cells=cells,
                seeds=lsw.base.num_seeds,
                steps=lsw.base.steps,
                inner_steps=lsw.base.inner_steps,
                seed_steps_per_s=round(cells * lsw.base.num_seeds * lsw.base.steps / t_lag),
                stability_sweep_s=round(t_stab, 2),
                stability_maps=f"{len(ssw.objectives)} objectives x {len(ssw.lags)} lags x {len(ssw.lrs)} step sizes",
                lag_sweep_within_goal=bool(t_lag <= GOAL_S) if not smoke else None,
            )
        )
    if args.json:
        print(json.dumps({"cpus": os.cpu_count(), "rows": rows}))
        return 0
    print(f"cpus: {os.cpu_count()}; goal for the full lag sweep: <= {GOAL_S:.0f} s")
    for r in rows:
        print(
            f"{r['preset']:>5}: lag sweep {r['lag_sweep_s']:.2f} s ({r['cells']} cells x {r['seeds']} seeds x "
            f"{r['steps']} steps x {r['inner_steps']} inner; {r['seed_steps_per_s']} seed-steps/s); "
            f"stability sweep {r['stability_sweep_s']:.2f} s ({r['stability_maps']})"
            + ("" if r["lag_sweep_within_goal"] is None else f"; within goal: {r['lag_sweep_within_goal']}")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
