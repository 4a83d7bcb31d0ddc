"""Speed of ``sims.tpo.replicate_tpo_single`` and the error curves it produces.

Workload: the single-context tabular protocol of arXiv 2604.06159, section 4.1
(K = 100 arms, B = 100 samples per step, 150 steps, step length 0.1), all
seeds and the three methods (PG, GRPO, TPO) in one call. Reports the best of
``--repeats`` wall-clock times and, per method, the mean error 1 - pi(y*) at
the last step and the mean first step at which a seed's error falls below 0.5,
0.1 and 0.01 (``steps`` when it never does).

    python benchmarks/bench_tpo.py [--num-seeds 100] [--steps 150] [--repeats 5] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from sims.tpo import METHODS, replicate_tpo_single

THRESHOLDS = (0.5, 0.1, 0.01)


def first_below(err, threshold):
    """Mean over seeds of the first step with error < threshold; err (S, steps)."""
    below = err < threshold
    return float(np.where(below.any(-1), below.argmax(-1), err.shape[-1]).mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-seeds", type=int, default=100)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--num-arms", type=int, default=100)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="10 seeds, 20 steps, 1 repeat")
    args = p.parse_args(argv)
    if args.smoke:
        args.num_seeds, args.steps, args.repeats = 10, 20, 1

    kw = dict(num_arms=args.num_arms, batch=args.batch, steps=args.steps, alpha=args.alpha)
    replicate_tpo_single(2, args.seed, **{**kw, "steps": 2})  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        err = replicate_tpo_single(args.num_seeds, args.seed, **kw)
        times.append(time.perf_counter() - t0)

    out = {
        "num_seeds": args.num_seeds,
        **kw,
        "repeats": args.repeats,
        "best_s": min(times),
        "times_s": times,
        "final_mean_error": {m: float(err[m][:, -1].mean()) for m in METHODS},
        "mean_first_step_below": {m: {str(th): first_below(err[m], th) for th in THRESHOLDS} for m in METHODS},
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
