"""Speed and memory of the LLM trainer's model: MFU, sampling against training, peak memory.

Measures in one run, on this machine:

* ``peak_gflops``: fp32 matrix-multiply peak, ``torch.mm`` of square matrices
  (2048 and 4096; 256 and 512 with ``--smoke``), 2 n^3 FLOPs per product,
  best over all repeats;
* training throughput of the model (``default`` preset; ``smoke`` with
  ``--smoke``): tokens per second of a full AdamW step (forward, backward,
  update) on a ``(batch, seq)`` batch, and model FLOPs utilization
  ``MFU = flops_per_token(seq) * tok_per_s / peak`` with
  ``flops_per_token = 6 N + 12 n_layer n_embd seq`` (``GPT.flops_per_token``);
* sampling throughput with the KV cache: sampled tokens per second for
  ``prompts * group`` rows, ``new_tokens`` each (temperature 1);
* peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of this process.

The three timings are interleaved ``--repeats`` times and the best of each is
kept, since the machine is shared and other work slows single measurements; the
load average before and after is reported with them.

Targets (issue 6): MFU >= 0.5, sampling tok/s >= training tok/s, peak memory <= 4 GB.

    python benchmarks/bench_llm.py [--smoke] [--threads 2] [--batch 64] [--seq 64] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sims.llm.model import GPT, GPTConfig  # noqa: E402
from sims.llm.tokenizer import BOS  # noqa: E402


def matmul_peak(sizes, reps: int = 3) -> float:
    """Best fp32 FLOP/s of ``torch.mm`` over square sizes and repetitions."""
    best = 0.0
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        torch.mm(a, b)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2.0 * n**3 / (time.perf_counter() - t0))
    return best


def train_step_time(step_fn, idx, steps: int) -> float:
    """Fastest of ``steps`` AdamW steps on ``idx`` (seconds)."""
    best = float("inf")
    for _ in range(steps):
        t0 = time.perf_counter()
        step_fn(idx)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="smoke preset and small sizes, for CI")
    p.add_argument("--preset", default=None, help="model preset (default: default, or smoke with --smoke)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--batch", type=int, default=64, help="training sequences per step")
    p.add_argument("--seq", type=int, default=64, help="training sequence length")
    p.add_argument("--prompts", type=int, default=64, help="prompts per sampling call")
    p.add_argument("--group", type=int, default=8, help="completions per prompt (rows = prompts * group)")
    p.add_argument("--prompt-len", type=int, default=16, help="prompt length in tokens, BOS included")
    p.add_argument("--new-tokens", type=int, default=48, help="sampled tokens per row")
    p.add_argument("--vocab", type=int, default=32, help="vocabulary size")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the best of each timing is kept")
    p.add_argument("--steps", type=int, default=3, help="training steps timed per round")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step's model")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.smoke:
        args.batch, args.seq, args.prompts, args.group, args.new_tokens = 16, 32, 8, 4, 16
        args.repeats, args.steps = 1, 2
    preset = args.preset or ("smoke" if args.smoke else "default")
    sizes = (256, 512) if args.smoke else (2048, 4096)

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    gen = torch.Generator().manual_seed(args.seed)
    block = max(args.seq, args.prompt_len + args.new_tokens)
    model = GPT(GPTConfig.preset(preset, vocab_size=args.vocab, block_size=block), generator=gen)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    fwd = torch.compile(model) if args.compile else model

    def step(idx):
        logits = fwd(idx[:, :-1])  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    idx = torch.randint(3, args.vocab, (args.batch, args.seq + 1), generator=gen)  # (B, T + 1)
    prompts = torch.randint(3, args.vocab, (args.prompts, args.prompt_len), generator=gen)  # (B, Tp)
    prompts[:, 0] = BOS
    t0 = time.perf_counter()
    step(idx)  # warm-up (and compilation)
    warmup_s = time.perf_counter() - t0
    model.sample(prompts[:2], 1, 2, 1.0, gen)

    peak, t_train, sample_tps = 0.0, float("inf"), 0.0
    for _ in range(args.repeats):
        peak = max(peak, matmul_peak(sizes))
        t_train = min(t_train, train_step_time(step, idx, args.steps))
        t0 = time.perf_counter()
        roll = model.sample(prompts, args.group, args.new_tokens, 1.0, gen)
        sample_tps = max(sample_tps, int(roll.mask.sum()) / (time.perf_counter() - t0))

    train_tps = args.batch * args.seq / t_train
    fpt = model.flops_per_token(args.seq)
    mfu = fpt * train_tps / peak
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux
    out = {
        "preset": preset,
        "params": model.num_params(),
        "threads": args.threads,
        "compile": args.compile,
        "peak_gflops": peak / 1e9,
        "train": {
            "batch": args.batch,
            "seq": args.seq,
            "step_s": t_train,
            "tok_per_s": train_tps,
            "flops_per_token": fpt,
            "achieved_gflops": fpt * train_tps / 1e9,
            "mfu": mfu,
            "first_step_s": warmup_s,
        },
        "sample": {
            "rows": args.prompts * args.group,
            "prompt_len": args.prompt_len,
            "new_tokens": args.new_tokens,
            "tok_per_s": sample_tps,
        },
        "sample_over_train": sample_tps / train_tps,
        "peak_rss_gb": rss_gb,
        "load_avg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "targets": {
            "mfu>=0.5": mfu >= 0.5,
            "sample>=train": sample_tps >= train_tps,
            "rss<=4GB": rss_gb <= 4.0,
        },
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
