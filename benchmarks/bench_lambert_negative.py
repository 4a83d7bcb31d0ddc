"""Time and peak memory of the negative-regime Lambert target on one large bandit.

Workloads, each in a fresh subprocess (so the peak resident set size is that of
the one call; ``rss_after_import_mib`` is the interpreter and imports alone):

* ``bandit K``: ``theory.lambert_target`` on one bandit of K arms,
  mu ~ Dirichlet(1), r ~ U[0, 1], beta = 0.5, baseline V = V*_beta + 0.05
  (the negative regime: ``theory.regime_of`` is -1);
* ``sequence L``: ``sims.token_mdp.sequence_level_target`` on the tree V = 4,
  T = log4(L) (L leaves), conditionals ~ Dirichlet(1), the partial-credit reward,
  beta = 0.1, baseline V*_beta + 0.05 over the leaves: one ``lambert_target`` row
  of L arms in the negative regime.

A case that runs past ``--timeout`` seconds, or dies (e.g. out of memory), is
reported as such. Defaults: K = 2,000 / 8,000 / 100,000 and L = 4,096 / 65,536;
``--huge`` adds K = 10^6 and L = 262,144; ``--smoke``: K = 500 and L = 1,024.

    python benchmarks/bench_lambert_negative.py [--arms 2000 8000 100000] [--leaves 4096 65536]
        [--huge] [--smoke] [--timeout 300] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

_SCALE = 1024 if sys.platform != "darwin" else 1024**2  # ru_maxrss: KiB on Linux, bytes on macOS


def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / _SCALE


def run_bandit(K, seed):
    """One negative-regime bandit of K arms: seconds, eta and the arm on W_{-1} (-1: none)."""
    import theory

    rng = np.random.default_rng(seed)
    mu = rng.dirichlet(np.ones(K))
    r = rng.uniform(size=K)
    beta = 0.5
    adv = r - theory.soft_value(mu, r, beta) - 0.05
    assert int(theory.regime_of(mu, adv, beta)) == -1
    t0 = time.perf_counter()
    pi, eta = theory.lambert_target(mu, adv, beta)
    dt = time.perf_counter() - t0
    w = -float(eta) * pi / mu
    return {"seconds": dt, "eta": float(eta), "w_minus1_arm": int(np.argmax(w)) if w.max() > 1.0 else -1}


def run_sequence(leaves, seed):
    """The sequence-level target of the V = 4 tree with ``leaves`` leaves: seconds and the largest leaf probability."""
    import theory
    from sims.token_mdp import TokenTree, partial_credit_reward, random_policy, sequence_level_target, sequence_probs

    T = round(math.log(leaves, 4))
    tree = TokenTree(4, T)
    if tree.num_leaves != leaves:
        raise SystemExit(f"--leaves must be a power of 4, got {leaves}")
    mu = random_policy(tree, seed, 1.0)
    r = partial_credit_reward(tree)
    beta = 0.1
    p_mu = sequence_probs(mu)
    adv = r - theory.soft_value(p_mu, r, beta) - 0.05
    assert int(theory.regime_of(p_mu, adv, beta)) == -1
    t0 = time.perf_counter()
    p = sequence_level_target(mu, adv, tree, beta=beta)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "max_leaf_prob": float(p.max())}


def one(kind, size, seed):
    """Run one case in this process and print its JSON line."""
    for name in ("theory", "sims.token_mdp"):  # imported before the baseline reading
        importlib.import_module(name)
    base = _rss_mib()
    res = (run_bandit if kind == "bandit" else run_sequence)(size, seed)
    print(json.dumps({"case": kind, "size": size, **res, "peak_rss_mib": _rss_mib(), "rss_after_import_mib": base}))


def spawn(kind, size, seed, timeout):
    """Run one case in a subprocess: its JSON result, or a record of why there is none."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", kind, str(size), "--seed", str(seed)]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return {"case": kind, "size": size, "seconds": None, "status": f"no answer within {timeout} s"}
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        why = f"failed after {time.perf_counter() - t0:.0f} s (exit {out.returncode}): {tail}"
        return {"case": kind, "size": size, "seconds": None, "status": why}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["status"] = "ok"
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", type=int, nargs="*", default=[2_000, 8_000, 100_000], help="bandit sizes K (none: skip)")
    p.add_argument("--leaves", type=int, nargs="*", default=[4_096, 65_536], help="leaves, powers of 4 (none: skip)")
    p.add_argument("--huge", action="store_true", help="add K = 10^6 arms and 262,144 leaves")
    p.add_argument("--smoke", action="store_true", help="K = 500 and 1,024 leaves only")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object {cases: [...]} at the end instead of "
                   "a line per case (what python -m benchmarks reads)")
    p.add_argument("--one", nargs=2, metavar=("KIND", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        return one(args.one[0], int(args.one[1]), args.seed)
    if args.smoke:
        args.arms, args.leaves = [500], [1_024]
    if args.huge:
        args.arms, args.leaves = args.arms + [1_000_000], args.leaves + [262_144]
    cases = [("bandit", K) for K in args.arms] + [("sequence", L) for L in args.leaves]
    results = []
    for kind, size in cases:
        results.append(spawn(kind, size, args.seed, args.timeout))
        if not args.json:
            print(json.dumps(results[-1]), flush=True)
    if args.json:
        print(json.dumps({"cases": results}))
    return results


if __name__ == "__main__":
    main()
