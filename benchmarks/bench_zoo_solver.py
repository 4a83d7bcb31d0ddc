"""Benchmark: the zoo's target solvers against integrating the flow to the same answer.

For each objective with a closed form or a KKT target, on N bandits x 16 arms
(N = 10,000 by default): time ``obj.induced_target`` on all N, time
``theory.flow.logit_flow`` on a subset of ``--flow-bandits`` of them (the flow
costs the same per bandit, so its time for N is extrapolated linearly; this is
stated in the output), check that both agree to 1e-6 on the subset, and print
the speed ratio. Both timings are taken in the same run (the machine is shared).

    python benchmarks/bench_zoo_solver.py            # 10,000 x 16
    python benchmarks/bench_zoo_solver.py --smoke    # 200 x 16
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from theory.flow import logit_flow
from theory.objectives import OBJECTIVES, make_objective

# moderate temperatures: the flow needs astronomically long at beta = 1e-3 (see the zoo's notes)
OVERRIDES = {"astar_po": dict(beta=0.2, beta1=0.5), "oapl": dict(beta=0.2, beta1=1.0)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--bandits", type=int, default=10_000)
    ap.add_argument("--arms", type=int, default=16)
    ap.add_argument("--flow-bandits", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n = 200 if args.smoke else args.bandits
    rng = np.random.default_rng(args.seed)
    mu = rng.dirichlet(np.ones(args.arms), size=n)
    r = rng.uniform(size=(n, args.arms))
    print(f"{n} bandits x {args.arms} arms; flow timed on {args.flow_bandits} and scaled x{n / args.flow_bandits:.0f}")
    print(f"{'objective':20s} {'route':12s} {'solver s':>9s} {'flow s (scaled)':>16s} {'ratio':>9s} {'max|diff|':>10s}"
          f" {'kkt s':>8s} {'kkt ratio':>9s} {'kkt max|diff|':>13s}")
    for name in OBJECTIVES:
        obj = make_objective(name, **OVERRIDES.get(name, {}))
        if obj.target_kind not in ("lambert", "gibbs", "linear", "kkt"):
            continue
        t0 = time.perf_counter()
        it = obj.induced_target(mu, r)
        t_solver = time.perf_counter() - t0
        k = args.flow_bandits
        adv = obj.population_advantage(mu[:k], r[:k])
        mu_t = torch.as_tensor(mu[:k])
        t0 = time.perf_counter()
        fr = logit_flow(mu[:k], adv, weight=lambda u, a: obj.weight(u, a, mu_t), tol=1e-10)
        t_flow = (time.perf_counter() - t0) * n / k
        diff = float(np.abs(fr.pi - it.pi[:k]).max())
        kkt = "        -         -             -"
        # the generic solver on every objective whose weight is per-arm, except in the negative regime
        # (opmd_above: kappa < 0 is outside its domain; there the flow from mu may also stop at another
        # local minimum than the closed form's global one, so its max|diff| is not an error)
        if name not in ("tpo", "opmd_above"):
            t0 = time.perf_counter()
            kk = obj.induced_target(mu, r, method="kkt")
            t_kkt = time.perf_counter() - t0
            ok = kk.converged
            kdiff = float(np.abs(fr.pi - kk.pi[:k]).max()) if ok[:k].all() else float("nan")
            kkt = f" {t_kkt:8.3f} {t_flow / t_kkt:9.0f} {kdiff:13.1e}" + ("" if ok.all() else f" ({ok.mean():.1%} conv.)")
        print(f"{name:20s} {it.method:12s} {t_solver:9.3f} {t_flow:16.1f} {t_flow / t_solver:9.0f} {diff:10.1e}" + kkt
              + ("" if fr.converged.all() else "  (flow not converged)"))


if __name__ == "__main__":
    main()
