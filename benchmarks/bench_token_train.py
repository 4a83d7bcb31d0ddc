"""Speed of the token-MDP trainer under lag (``sims.token_train.simulate``); prints one JSON line.

Workload: V = 4, T = 4 (256 leaves), G = 16 sampled completions per seed and
step, 8 seeds as one torch computation, 200 steps, lag 4, one Adam step per
batch, the partial-credit reward. Timed, each the best of ``--repeats``:

* ``opmd`` at level ``token`` without the targets (the training loop alone),
* the same with population updates (all 256 leaves weighted by mu),
* ``opmd`` at level ``token`` with the exact induced targets every
  ``--target-every`` steps (and the sequence/token gap): the token-level
  Lambert target, whose negative-regime rows need a solver, dominates,
* ``awr`` with the targets every ``--target-every`` steps (closed-form Gibbs).

``steps_per_s`` counts outer steps (all seeds together); ``seed_steps_per_s``
multiplies by the seeds.

    python benchmarks/bench_token_train.py [--steps 200] [--seeds 8] [--target-every 10] [--repeats 1] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os

from _timing import best_time
from sims.token_train import TokenSimConfig, simulate


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--group-size", type=int, default=16)
    p.add_argument("--target-every", type=int, default=10)
    p.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    p.add_argument("--smoke", action="store_true", help="20 steps, 2 seeds")
    args = p.parse_args(argv)
    steps, seeds = (20, 2) if args.smoke else (args.steps, args.seeds)
    base = TokenSimConfig(
        V=4, T=4, objective="opmd", level="token", lag=4, group_size=args.group_size, steps=steps,
        seeds=tuple(range(seeds)), optimizer="adam", lr=0.05, track_targets=False,
    )
    cases = {
        "opmd_token_sampled": base,
        "opmd_token_population": base.replace(population=True),
        "opmd_token_sampled_targets": base.replace(track_targets=True, target_every=args.target_every),
        "awr_token_sampled_targets": base.replace(objective="awr", track_targets=True, target_every=args.target_every),
    }
    rows = {}
    for name, cfg in cases.items():
        t, _ = best_time(lambda: simulate(cfg), args.repeats)
        rows[name] = dict(
            seconds=round(t, 3),
            steps_per_s=round(steps / t, 1),
            seed_steps_per_s=round(steps * seeds / t, 1),
            target_every=cfg.target_every if cfg.tracks_targets else None,
        )
    out = dict(cpus=os.cpu_count(), V=4, T=4, leaves=256, G=args.group_size, seeds=seeds, steps=steps, lag=4, rows=rows)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
