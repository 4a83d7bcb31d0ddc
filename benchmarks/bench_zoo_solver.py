"""Benchmark: the zoo's target solvers against integrating the flow to the same answer.

For each objective with a closed form or a KKT target, on N bandits x 16 arms
(N = 10,000 by default): time ``obj.induced_target`` on all N, time
``theory.flow.logit_flow`` on a subset of ``--flow-bandits`` of them (the flow
costs the same per bandit, so its time for N is extrapolated linearly; this is
stated in the output), and the generic KKT solver (``method="kkt"``) on all N,
check that they agree to 1e-6 on the subset, and print the speed ratios. The
three are timed alternately, ``--rounds`` rounds of (solver, flow, KKT) in this
one run (the machine is shared and noisy); each ratio is the median over rounds
of the per-round ratio, with its range (min-max over rounds).

    python benchmarks/bench_zoo_solver.py            # 10,000 x 16
    python benchmarks/bench_zoo_solver.py --smoke    # 200 x 16, one round
    python benchmarks/bench_zoo_solver.py --json     # one JSON line instead of the text table
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from theory.flow import logit_flow
from theory.objectives import OBJECTIVES, make_objective

# moderate temperatures: the flow needs astronomically long at beta = 1e-3 (see the zoo's notes)
OVERRIDES = {"astar_po": dict(beta=0.2, beta1=0.5), "oapl": dict(beta=0.2, beta1=1.0)}
# the generic solver on every objective whose weight is per-arm, except in the negative regime
# (opmd_above: kappa < 0 is outside its domain; there the flow from mu may also stop at another
# local minimum than the closed form's global one, so its max|diff| is not an error)
NO_KKT = ("tpo", "opmd_above")


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _spread(ratios):
    return dict(median=statistics.median(ratios), range=[min(ratios), max(ratios)])


def bench_objective(name, mu, r, flow_bandits: int, rounds: int) -> dict:
    """Alternated rounds of (closed-form solver on all N, flow on ``flow_bandits`` scaled to N, KKT on all N)."""
    obj = make_objective(name, **OVERRIDES.get(name, {}))
    n, k = len(mu), flow_bandits
    adv = obj.population_advantage(mu[:k], r[:k])
    mu_t = torch.as_tensor(mu[:k])
    solver_s, flow_s, kkt_s = [], [], []
    for _ in range(rounds):
        t, it = _timed(lambda: obj.induced_target(mu, r))
        solver_s.append(t)
        t, fr = _timed(lambda: logit_flow(mu[:k], adv, weight=lambda u, a: obj.weight(u, a, mu_t), tol=1e-10))
        flow_s.append(t * n / k)
        if name not in NO_KKT:
            t, kk = _timed(lambda: obj.induced_target(mu, r, method="kkt"))
            kkt_s.append(t)
    row = dict(objective=name, route=it.method, solver_s=statistics.median(solver_s),
               flow_s_scaled=statistics.median(flow_s), flow_converged=bool(fr.converged.all()),
               flow_over_solver=_spread([f / s for f, s in zip(flow_s, solver_s)]),
               max_abs_diff=float(np.abs(fr.pi - it.pi[:k]).max()), kkt=None)
    if kkt_s:
        ok = kk.converged
        row["kkt"] = dict(kkt_s=statistics.median(kkt_s), flow_over_kkt=_spread([f / s for f, s in zip(flow_s, kkt_s)]),
                          converged_fraction=float(ok.mean()),
                          max_abs_diff=float(np.abs(fr.pi - kk.pi[:k]).max()) if ok[:k].all() else None)
    return row


def _text_row(row) -> str:
    kk = row["kkt"]
    kkt = "        -         -             -"
    if kk is not None:
        kdiff = float("nan") if kk["max_abs_diff"] is None else kk["max_abs_diff"]
        kkt = f" {kk['kkt_s']:8.3f} {kk['flow_over_kkt']['median']:9.0f} {kdiff:13.1e}" + (
            "" if kk["converged_fraction"] == 1.0 else f" ({kk['converged_fraction']:.1%} conv.)")
    return (f"{row['objective']:20s} {row['route']:12s} {row['solver_s']:9.3f} {row['flow_s_scaled']:16.1f} "
            f"{row['flow_over_solver']['median']:9.0f} {row['max_abs_diff']:10.1e}" + kkt
            + ("" if row["flow_converged"] else "  (flow not converged)"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="200 bandits, one round")
    ap.add_argument("--bandits", type=int, default=10_000)
    ap.add_argument("--arms", type=int, default=16)
    ap.add_argument("--flow-bandits", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="alternated rounds (solver, flow, KKT)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--objectives", nargs="+", default=None, help="these objectives only (default: every one)")
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of the text table")
    args = ap.parse_args(argv)
    n, rounds = (200, 1) if args.smoke else (args.bandits, args.rounds)
    rng = np.random.default_rng(args.seed)
    mu = rng.dirichlet(np.ones(args.arms), size=n)
    r = rng.uniform(size=(n, args.arms))
    if not args.json:
        print(f"{n} bandits x {args.arms} arms; flow timed on {args.flow_bandits} and scaled "
              f"x{n / args.flow_bandits:.0f}; medians over {rounds} alternated rounds")
        print(f"{'objective':20s} {'route':12s} {'solver s':>9s} {'flow s (scaled)':>16s} {'ratio':>9s} "
              f"{'max|diff|':>10s} {'kkt s':>8s} {'kkt ratio':>9s} {'kkt max|diff|':>13s}")
    rows = []
    for name in args.objectives or OBJECTIVES:
        if make_objective(name, **OVERRIDES.get(name, {})).target_kind not in ("lambert", "gibbs", "linear", "kkt"):
            continue
        rows.append(bench_objective(name, mu, r, args.flow_bandits, rounds))
        if not args.json:
            print(_text_row(rows[-1]), flush=True)
    if args.json:
        print(json.dumps(dict(bandits=n, arms=args.arms, flow_bandits=args.flow_bandits, rounds=rounds, rows=rows)))


if __name__ == "__main__":
    main()
