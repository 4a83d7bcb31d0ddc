"""Speed of ``theory.lambert_target`` against the per-bandit loop a researcher would write.

Workload: 100,000 bandits x 16 arms, mu ~ Dirichlet(1), r ~ U[0, 1], mean
baseline, beta = 0.5 (positive regime). Reference: per bandit,
``scipy.optimize.brentq`` on eta with ``scipy.special.lambertw`` (timed on a
subset and reported per bandit). The two are timed alternately, ``--repeats``
rounds of (solver on all ``n``, loop on ``n_ref``) in this one run, since the
machine is shared and noisy; the speed-up is the median over rounds of the
per-round ratio of per-bandit times, with its range (min-max over rounds).

    python benchmarks/bench_lambert.py [--n 100000] [--n-ref 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from scipy.optimize import brentq
from scipy.special import lambertw

from theory import lambert_target


def reference(mu, adv, beta):
    x = np.exp(adv / beta)
    f = lambda eta: np.sum(mu * np.real(lambertw(eta * x)) / eta) - 1.0
    eta = brentq(f, 1e-14, adv.max() / beta + 1.0, xtol=1e-15, rtol=1e-15)
    return mu * np.real(lambertw(eta * x)) / eta, eta


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="bandits for the vectorized solver")
    p.add_argument("--n-ref", type=int, default=2_000, help="bandits for the reference loop")
    p.add_argument("--arms", type=int, default=16)
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=5, help="alternated rounds (solver, loop)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    mu = rng.dirichlet(np.ones(args.arms), size=args.n)
    r = rng.uniform(size=(args.n, args.arms))
    adv = r - (mu * r).sum(-1, keepdims=True)

    lambert_target(mu[:1000], adv[:1000], args.beta)  # warm-up
    n_ref = min(args.n_ref, args.n)
    t_vec, t_ref = [], []
    for _ in range(args.repeats):  # alternated: the solver on all n, then the loop on n_ref
        t0 = time.perf_counter()
        pi, eta = lambert_target(mu, adv, args.beta)
        t_vec.append((time.perf_counter() - t0) / args.n)
        t0 = time.perf_counter()
        ref = [reference(mu[i], adv[i], args.beta) for i in range(n_ref)]
        t_ref.append((time.perf_counter() - t0) / n_ref)
    ratios = [r / v for r, v in zip(t_ref, t_vec)]

    err_pi = max(np.abs(ref[i][0] - pi[i]).max() for i in range(n_ref))
    err_eta = max(abs(ref[i][1] - eta[i]) for i in range(n_ref))
    out = {
        "n": args.n,
        "n_ref": n_ref,
        "arms": args.arms,
        "beta": args.beta,
        "rounds": args.repeats,
        "vectorized_s_total": min(t_vec) * args.n,
        "vectorized_us_per_bandit": statistics.median(t_vec) * 1e6,
        "reference_us_per_bandit": statistics.median(t_ref) * 1e6,
        "speedup_per_bandit": statistics.median(ratios),
        "speedup_range": [min(ratios), max(ratios)],
        "max_abs_diff_pi": err_pi,
        "max_abs_diff_eta": err_eta,
    }
    print(json.dumps(out, indent=2))
    if err_pi > 1e-10 or err_eta > 1e-10:
        raise SystemExit(f"answers disagree beyond 1e-10: pi {err_pi:.2e}, eta {err_eta:.2e}")
    return out


if __name__ == "__main__":
    main()
