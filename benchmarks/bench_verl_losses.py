"""Speed of the zoo's losses inside verl against verl's built-in loss of the same family.

Workload: one micro-batch of 64 sequences x 2048 response tokens on CPU (float32),
ragged lengths U[256, 2048], rollout groups of 8 with binary rewards, log-ratios
N(0, drift^2), drift 0.05 by default (``--drift``). Each registered ``zoo_<name>`` loss is called through verl's interface
(``core_algos.get_policy_loss_fn``, the keywords verl's ``ppo_loss`` passes,
verl's ``ActorConfig``) and timed forward + backward, metrics included, against
the built-in of its family under the same ``loss_agg_mode``:

* ratio objectives (``pg``, ``m2po``) against ``vanilla`` (PPO clip);
* stop-gradient-weighted log-prob (``topr``) against ``cispo``;
* REINFORCE with a log-ratio penalty (``reinforce_k1``, ``reinforce_k3``) and the
  regression family (``oapl``, ``opmd``, ``opmd_loo``, ``opmd_lme``,
  ``shifted_regression``, ``opmd_above``: a quadratic log-ratio penalty) against ``dro``.

Both sides of a pair are timed alternately in one run (the machine is shared and
noisy); each time is the minimum (and the median) of ``--repeats`` calls after a
warm-up, and ``ratio`` is of the minima, the least disturbed by other load (as
``timeit`` advises); ``round_ratio`` is the median over the alternated rounds of
the per-round ratio, with its range (min-max over rounds). The goal is a ratio
of at most 1.1.
Requires the verl extra.

    python benchmarks/bench_verl_losses.py [--repeats 30] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

import sims.integrations.verl as zv
from theory.objectives import make_objective
from theory.outputs import atomic_write_text
from verl.trainer.ppo import core_algos
from verl.workers.config import ActorConfig, PolicyLossConfig

FAMILY = {
    "pg": "vanilla", "m2po": "vanilla", "topr": "cispo", "cispo_scalerl": "cispo",
    "reinforce_k1": "dro", "reinforce_k3": "dro",
    "oapl": "dro", "opmd": "dro", "opmd_loo": "dro", "opmd_lme": "dro", "shifted_regression": "dro",
    "opmd_above": "dro",
}


def make_batch(name, B=64, T=2048, G=8, seed=0, drift=0.05):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(256, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None] < lens[:, None]
    old = torch.randn(B, T, generator=g) * 0.5 - 1.5
    lp = old + drift * torch.randn(B, T, generator=g)
    rewards = torch.randint(0, 2, (B // G, G), generator=g).double()
    adv = make_objective(name).advantages(rewards).reshape(B).float()
    return dict(old=old, lp=lp, adv=adv[:, None] * mask, mask=mask)


def timed(fn, b, mode, cfg):
    lp = b["lp"].clone().requires_grad_()
    t0 = time.perf_counter()
    loss, _ = fn(old_log_prob=b["old"], log_prob=lp, advantages=b["adv"], response_mask=b["mask"],
                 loss_agg_mode=mode, config=cfg, rollout_is_weights=None)
    loss.backward()
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64, help="sequences per micro-batch")
    p.add_argument("--length", type=int, default=2048, help="padded response length")
    p.add_argument("--group", type=int, default=8, help="rollout.n (completions per prompt)")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--only", nargs="+", default=None, help="these zoo objectives only (default: all registered)")
    p.add_argument("--drift", type=float, default=0.05,
                   help="sd of the log-ratios log pi - log mu (0.05: M2PO's mask keeps every token; "
                        "0.3: it drops the largest ~7%%)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = []
    for name in args.only or zv.REGISTERED:
        builtin = FAMILY[name]
        rec = zv.recipe(name)
        mode = rec.actor["loss_agg_mode"]
        cfg = ActorConfig(strategy="fsdp", rollout_n=args.group, ppo_micro_batch_size_per_gpu=1,
                          clip_ratio_low=0.2, clip_ratio_high=0.28,
                          policy_loss=PolicyLossConfig(dro_beta=rec.actor.get("policy_loss.dro_beta", 0.1)))
        b = make_batch(name, args.batch, args.length, args.group, args.seed, args.drift)
        zoo_fn = core_algos.get_policy_loss_fn(f"zoo_{name}")
        ref_fn = core_algos.get_policy_loss_fn(builtin)
        for _ in range(3):  # warm-up
            timed(zoo_fn, b, mode, cfg), timed(ref_fn, b, mode, cfg)
        t_zoo, t_ref, t_read = [], [], []
        for _ in range(args.repeats):  # alternated: the loss alone, verl's built-in, the loss with its readings
            os.environ[zv.READINGS_ENV] = "0"
            t_zoo.append(timed(zoo_fn, b, mode, cfg))
            t_ref.append(timed(ref_fn, b, mode, cfg))
            os.environ[zv.READINGS_ENV] = "1"
            t_read.append(timed(zoo_fn, b, mode, cfg))
        z, r, zr = min(t_zoo), min(t_ref), min(t_read)
        zm, rm = statistics.median(t_zoo), statistics.median(t_ref)
        per_round = [a / b for a, b in zip(t_zoo, t_ref)]
        rows.append(dict(loss_mode=f"zoo_{name}", builtin=builtin, agg=mode, zoo_ms=1e3 * z, builtin_ms=1e3 * r,
                         zoo_median_ms=1e3 * zm, builtin_median_ms=1e3 * rm, ratio=z / r,
                         round_ratio=statistics.median(per_round), round_ratio_range=[min(per_round), max(per_round)],
                         readings_ms=1e3 * (zr - z), ratio_with_readings=zr / r))
        print(f"zoo_{name:20s} vs {builtin:8s} {mode:20s} min {1e3 * z:7.2f} / {1e3 * r:7.2f} ms  "
              f"(median {1e3 * zm:7.2f} / {1e3 * rm:7.2f})  ratio {z / r:5.2f} "
              f"(per round {rows[-1]['round_ratio']:5.2f}, {min(per_round):4.2f}-{max(per_round):4.2f}); "
              f"readings +{1e3 * (zr - z):5.2f} ms (ratio {zr / r:5.2f})", flush=True)
    worst = max(r["ratio"] for r in rows)
    print(f"worst ratio {worst:.2f} (goal <= 1.1, the loss alone; with the zoo's readings "
          f"{max(r['ratio_with_readings'] for r in rows):.2f}); {args.batch} x {args.length} tokens, "
          f"{args.threads} thread(s), torch {torch.__version__}, verl {zv.VERL_VERSION}")
    if args.json:
        atomic_write_text(args.json, json.dumps(dict(config=vars(args), rows=rows, worst_ratio=worst), indent=1))
    return rows


if __name__ == "__main__":
    main()
