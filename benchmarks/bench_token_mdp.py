"""Speed and memory of the exact token-MDP targets (``sims.token_mdp``).

Workload per tree (V, T): behaviour conditionals ~ Dirichlet(1) rows, the
partial-credit reward, beta = 0.1, the regression (Lambert) state target.
Times, each the best of ``--repeats``:

* ``conditional_advantage`` (the DP for Q_t),
* ``token_level_target`` with the mean baseline (A = r - E_mu[r]); the
  per-state rows whose Q is mostly negative are in the negative regime, and
  their count is reported since that solver path dominates the time,
* the same with the minimum baseline (A = r - min r >= 0: every state in the
  positive or boundary regime),
* ``sequence_level_target`` with the mean baseline (one ``lambert_target`` row
  of V**T arms),

then one more run of the mean-baseline pipeline under ``tracemalloc`` for its
peak traced memory, and the process's peak resident set size.

    python benchmarks/bench_token_mdp.py [--trees 4x8 8x6] [--repeats 1] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tracemalloc

import numpy as np

import theory
from _timing import best_time
from sims.token_mdp import (
    TokenTree,
    conditional_advantage,
    partial_credit_reward,
    random_policy,
    sequence_level_target,
    sequence_probs,
    token_level_target,
)


def parse_tree(text):
    V, T = text.lower().split("x")
    return TokenTree(int(V), int(T))


def bench_tree(tree, beta, repeats, seed):
    mu = random_policy(tree, seed, 1.0)
    r = partial_credit_reward(tree)
    p_mu = sequence_probs(mu)
    adv_mean = r - theory.mean_baseline(p_mu, r)
    adv_min = r - r.min()
    q = conditional_advantage(mu, adv_mean, tree)
    negative = sum(int((theory.regime_of(mu[t], q[t], beta) < 0).sum()) for t in range(tree.T))
    states = sum(tree.V**t for t in range(tree.T))

    def pipeline():
        conditional_advantage(mu, adv_mean, tree)
        token_level_target(mu, adv_mean, tree, beta=beta)
        sequence_level_target(mu, adv_mean, tree, beta=beta)

    out = {
        "V": tree.V,
        "T": tree.T,
        "leaves": tree.num_leaves,
        "states": states,
        "negative_regime_states_mean_baseline": negative,
        "conditional_advantage_s": best_time(lambda: conditional_advantage(mu, adv_mean, tree), repeats)[0],
        "token_level_mean_baseline_s": best_time(lambda: token_level_target(mu, adv_mean, tree, beta=beta), repeats)[0],
        "token_level_min_baseline_s": best_time(lambda: token_level_target(mu, adv_min, tree, beta=beta), repeats)[0],
        "sequence_level_mean_baseline_s": best_time(
            lambda: sequence_level_target(mu, adv_mean, tree, beta=beta), repeats
        )[0],
    }
    out["total_mean_baseline_s"] = (
        out["conditional_advantage_s"] + out["token_level_mean_baseline_s"] + out["sequence_level_mean_baseline_s"]
    )
    tracemalloc.start()
    pipeline()
    out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trees", nargs="+", default=["4x8", "8x6"], help="trees as VxT")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="trees 2x4 and 3x3, 1 repeat")
    args = p.parse_args(argv)
    if args.smoke:
        args.trees, args.repeats = ["2x4", "3x3"], 1

    bench_tree(TokenTree(2, 2), args.beta, 1, args.seed)  # warm-up
    results = [bench_tree(parse_tree(t), args.beta, args.repeats, args.seed) for t in args.trees]
    scale = 1024 if sys.platform != "darwin" else 1024**2  # ru_maxrss: KiB on Linux, bytes on macOS
    out = {
        "beta": args.beta,
        "repeats": args.repeats,
        "trees": results,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale,
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
