"""Speed of ``theory.lambert_target`` in the positive regime: against a per-bandit loop, across K, and one huge row.

1. **Speedup.** 100,000 bandits x 16 arms, mu ~ Dirichlet(1), r ~ U[0, 1],
   mean baseline, beta = 0.5 (positive regime), against the loop a researcher
   would write: per bandit, ``scipy.optimize.brentq`` on eta with
   ``scipy.special.lambertw`` (timed on ``--n-ref`` bandits, per bandit). The
   machine is shared and noisy, so solver and reference rounds alternate in this
   one process and the report is the median ratio over ``--rounds`` rounds with
   its spread (wall clock, and CPU time of this process, which other processes
   disturb less). The answers must equal the reference's to 1e-10.
2. **Cost per element across K.** The same workload at K = 16, 64, 256, 1024,
   4096 arms with the same total element count (bandits x arms), rounds
   alternating over K: ns per element and its ratio to K = 16.
3. **One huge row.** A single bandit of 10^6 arms in a child process with 2
   BLAS threads while another process keeps a core busy: the solver, and the
   row sum of a (1, 10^6) array as ``x @ ones`` (a BLAS matrix-vector product,
   whose threads wait on each other when a core is taken) and as
   ``np.einsum("ij->i", x)`` (no BLAS). Median and worst of ``--stall-repeats``;
   only with ``--huge-row`` (it keeps a core busy for a few seconds).

    python benchmarks/bench_lambert.py [--n 100000] [--n-ref 2000] [--rounds 3] [--no-sweep] [--huge-row]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from scipy.optimize import brentq
from scipy.special import lambertw

from theory import lambert_target

SWEEP_ARMS = (16, 64, 256, 1024, 4096)


def reference(mu, adv, beta):
    x = np.exp(adv / beta)
    f = lambda eta: np.sum(mu * np.real(lambertw(eta * x)) / eta) - 1.0
    eta = brentq(f, 1e-14, adv.max() / beta + 1.0, xtol=1e-15, rtol=1e-15)
    return mu * np.real(lambertw(eta * x)) / eta, eta


def workload(n, K, seed):
    """mu ~ Dirichlet(1), r ~ U[0, 1], adv = r - E_mu[r] (mean baseline): (mu, adv), shape (n, K)."""
    rng = np.random.default_rng(seed)
    mu = rng.dirichlet(np.ones(K), size=n)
    r = rng.uniform(size=(n, K))
    return mu, r - (mu * r).sum(-1, keepdims=True)


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def _summary(x):
    x = np.asarray(x, float)
    return {"median": float(np.median(x)), "min": float(x.min()), "max": float(x.max()), "rounds": x.tolist()}


def speedup(args):
    """Goal 1: alternate solver and reference rounds; median ratio of per-bandit times and its spread."""
    mu, adv = workload(args.n, args.arms, args.seed)
    n_ref = min(args.n_ref, args.n)
    lambert_target(mu[:1000], adv[:1000], args.beta)  # warm-up
    wall, cpu, t_vec = [], [], []
    err_pi = err_eta = 0.0
    for k in range(args.rounds):
        tv, cv, (pi, eta) = _timed(lambda: lambert_target(mu, adv, args.beta))
        rows = range(k * n_ref % args.n, k * n_ref % args.n + n_ref)  # a fresh reference subset each round
        rows = [i % args.n for i in rows]
        tr, cr, ref = _timed(lambda: [reference(mu[i], adv[i], args.beta) for i in rows])
        wall.append((tr / n_ref) / (tv / args.n))
        cpu.append((cr / n_ref) / (cv / args.n))
        t_vec.append(tv / args.n)
        err_pi = max(err_pi, max(np.abs(p - pi[i]).max() for i, (p, _) in zip(rows, ref)))
        err_eta = max(err_eta, max(abs(e - eta[i]) for i, (_, e) in zip(rows, ref)))
    return {
        "n": args.n,
        "arms": args.arms,
        "beta": args.beta,
        "n_ref": n_ref,
        "vectorized_us_per_bandit": _summary(np.array(t_vec) * 1e6),
        "speedup_wall": _summary(wall),
        "speedup_cpu": _summary(cpu),
        "max_abs_diff_pi": err_pi,
        "max_abs_diff_eta": err_eta,
    }


def sweep(args):
    """Goal 2: ns per element at each K of SWEEP_ARMS, same total element count, rounds alternating over K."""
    total = args.n * args.arms
    data = {K: workload(max(1, total // K), K, args.seed) for K in SWEEP_ARMS}
    for K, (mu, adv) in data.items():
        lambert_target(mu[:8], adv[:8], args.beta)
    ns = {K: [] for K in SWEEP_ARMS}
    for _ in range(args.rounds):
        for K, (mu, adv) in data.items():
            tw, _, _ = _timed(lambda: lambert_target(mu, adv, args.beta))
            ns[K].append(tw / mu.size * 1e9)
    base = np.median(ns[SWEEP_ARMS[0]])
    return {
        str(K): {"ns_per_element": _summary(v), "ratio_to_K16": float(np.median(v) / base)} for K, v in ns.items()
    }


_STALL_CHILD = r"""
import json, sys, time
import numpy as np
from theory import lambert_target
K, reps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
mu = rng.dirichlet(np.ones(K))[None]
r = rng.uniform(size=(1, K))
adv = r - (mu * r).sum(-1, keepdims=True)
x, ones = rng.uniform(size=(1, K)), np.ones(K)
cases = {"lambert_target": lambda: lambert_target(mu, adv, 0.5),
         "x @ ones": lambda: x @ ones, "einsum('ij->i')": lambda: np.einsum("ij->i", x)}
out = {}
for name, fn in cases.items():
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    out[name] = {"median_ms": 1e3 * float(np.median(ts)), "max_ms": 1e3 * float(np.max(ts))}
print(json.dumps(out))
"""


def stall(args):
    """Goal 3: a 10^6-arm row with 2 BLAS threads while a busy-loop process holds a core."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        out = subprocess.run(
            [sys.executable, "-c", _STALL_CHILD, str(args.stall_arms), str(args.stall_repeats)],
            env=env, capture_output=True, text=True, check=True,
        )
    finally:
        busy.kill()
        busy.wait()
    return {"arms": args.stall_arms, "blas_threads": 2, **json.loads(out.stdout)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="bandits for the vectorized solver")
    p.add_argument("--n-ref", type=int, default=2_000, help="bandits for the reference loop, per round")
    p.add_argument("--arms", type=int, default=16)
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--rounds", "--repeats", type=int, default=3, help="alternated solver/reference rounds (and K-sweep rounds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the K sweep (goal 2)")
    p.add_argument("--huge-row", dest="stall", action="store_true", help="also time one 10^6-arm row under contention")
    p.add_argument("--stall-arms", type=int, default=1_000_000)
    p.add_argument("--stall-repeats", type=int, default=20)
    args = p.parse_args(argv)

    s = speedup(args)
    out = {"speedup": s, "max_abs_diff_pi": s["max_abs_diff_pi"], "max_abs_diff_eta": s["max_abs_diff_eta"]}
    if args.sweep:
        out["k_sweep"] = sweep(args)
    if args.stall:
        out["huge_row"] = stall(args)
    print(json.dumps(out, indent=2))
    if s["max_abs_diff_pi"] > 1e-10 or s["max_abs_diff_eta"] > 1e-10:
        raise SystemExit(f"answers disagree beyond 1e-10: pi {s['max_abs_diff_pi']:.2e}, eta {s['max_abs_diff_eta']:.2e}")
    return out


if __name__ == "__main__":
    main()
