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
* peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of this process;
* the end-to-end RL step of the trainer (:func:`sims.llm.rl.train_rl`, RL preset
  ``lag``: sample ``B x G`` completions, score them, one update, diagnostics on
  their cadence) against a plain training step of the *same* model on a dense
  batch of the same number of rows and the model's full length, in alternated
  rounds. The model is the preset sized for the countdown task, with random
  weights, so every completion runs to the token budget (the most sampling work
  a step can have). Two token counts for the RL step: ``tok_per_s`` counts the
  completion tokens it trains on (the trainer's ``tok_per_s`` column), and
  ``seq_tok_per_s`` every real token of the sequences (prompt and completion, as
  the plain step counts every token it reads); the first step of each round,
  which also generates the first chunk of fresh problems, is left out.
  ``rl_over_train`` is the median over rounds of the per-round ratio. Both
  steps' MFU use the same accounting: ``flops_per_token`` at the model's full
  length times every real token the step trains on per second of the whole step
  (``plain_mfu`` on the dense batch, ``rl_mfu`` with ``seq_tok_per_s``: sampling,
  scoring and diagnostics take wall time but their forward FLOPs are not
  counted), over the same peak.

The three timings are interleaved ``--repeats`` times and the best of each is
kept, since the machine is shared and other work slows single measurements; the
load average before and after is reported with them.

Targets: MFU >= 0.5, sampling tok/s >= training tok/s, peak memory <= 4 GB, end-to-end RL
tok/s >= 0.5 x the plain step's.

    python benchmarks/bench_llm.py [--smoke] [--threads 2] [--batch 64] [--seq 64] [--compile]
"""

from __future__ import annotations

import argparse
import copy
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
from _timing import best_time  # noqa: E402


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


def rl_vs_plain(preset: str, rounds: int, steps: int, threads: int) -> dict:
    """End-to-end RL step of the trainer against a plain step of the same model, alternated ``rounds`` times."""
    import dataclasses
    import statistics

    from sims.llm.rl import RL_PRESETS, train_rl
    from sims.llm.tasks import make_task

    task = make_task("countdown", size=512, eval_size=8, difficulty="tiny")
    gen = torch.Generator().manual_seed(0)
    model = GPT(GPTConfig.preset(preset, vocab_size=task.tokenizer.vocab_size, block_size=task.block_size), generator=gen)
    cfg = dataclasses.replace(RL_PRESETS["lag"], steps=steps, eval_every=10**6, eval_samples=1, eval_ks=(1,),
                              num_threads=threads, progress=False)
    rows = cfg.prompts_per_step * cfg.group_size
    plain = copy.deepcopy(model)
    opt = torch.optim.AdamW(plain.parameters(), lr=1e-4, betas=(0.9, 0.95))
    idx = torch.randint(3, task.tokenizer.vocab_size, (rows, task.block_size), generator=gen)  # (N, T + 1)

    def plain_step():
        logits = plain(idx[:, :-1])  # (N, T, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    plain_step()  # warm-up
    ratios, rl_tps, seq_tps, plain_tps = [], [], [], []
    for r in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            plain_step()
        p = steps * idx[:, :-1].numel() / (time.perf_counter() - t0)
        # the trainer's own loop; the last step also evaluates, after its tok_per_s is taken
        seen = []
        res = train_rl(dataclasses.replace(cfg, seed=r), warm_start=(model, task),
                       on_step=lambda step, roll, mu, m: seen.append(int((roll.prompts != 0).sum() + roll.mask.sum())))
        seen = seen[1:]
        hist = res.history[1:]  # the first step also builds the problem stream's first chunk
        secs = sum(h["tokens"] / h["tok_per_s"] for h in hist)
        rl = sum(h["tokens"] for h in hist) / secs
        seq = sum(seen) / secs
        ratios.append(rl / p)
        rl_tps.append(rl)
        seq_tps.append(seq)
        plain_tps.append(p)
    return {
        "preset": preset,
        "rows": rows,
        "steps_per_round": steps,
        "plain_tok_per_s": statistics.median(plain_tps),
        "rl_tok_per_s": statistics.median(rl_tps),
        "rl_seq_tok_per_s": statistics.median(seq_tps),
        "rl_over_train": statistics.median(ratios),
        "rl_over_train_range": [min(ratios), max(ratios)],
        "rl_seq_over_train": statistics.median([s / p for s, p in zip(seq_tps, plain_tps)]),
        "rl_seq_tok_per_s_range": [min(seq_tps), max(seq_tps)],
        "plain_tok_per_s_range": [min(plain_tps), max(plain_tps)],
        "flops_per_token": plain.flops_per_token(idx.shape[1] - 1),
    }


def with_mfu(rl: dict, peak: float) -> dict:
    """``rl`` with the plain and the RL step's MFU: ``flops_per_token`` x tokens per second / ``peak`` for both."""
    fpt = rl["flops_per_token"]
    return dict(rl, plain_mfu=fpt * rl["plain_tok_per_s"] / peak,
                plain_mfu_range=[fpt * t / peak for t in rl["plain_tok_per_s_range"]],
                rl_mfu=fpt * rl["rl_seq_tok_per_s"] / peak,
                rl_mfu_range=[fpt * t / peak for t in rl["rl_seq_tok_per_s_range"]])


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, with the ``--smoke`` sizes applied."""
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
    p.add_argument("--rl-steps", type=int, default=10, help="RL steps per round of the RL-vs-plain comparison")
    args = p.parse_args(argv)
    if args.smoke:
        args.batch, args.seq, args.prompts, args.group, args.new_tokens = 16, 32, 8, 4, 16
        args.repeats, args.steps = 1, 2
    return args


def main(argv=None):
    args = parse_args(argv)
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
        t_train = min(t_train, best_time(lambda: step(idx), args.steps)[0])
        t0 = time.perf_counter()
        roll = model.sample(prompts, args.group, args.new_tokens, 1.0, gen)
        sample_tps = max(sample_tps, int(roll.mask.sum()) / (time.perf_counter() - t0))

    rl = with_mfu(rl_vs_plain(preset, 1 if args.smoke else args.repeats, 2 if args.smoke else args.rl_steps,
                              args.threads), peak)
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
        "rl_step": rl,
        "peak_rss_gb": rss_gb,
        "load_avg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "targets": {
            "mfu>=0.5": mfu >= 0.5,
            "sample>=train": sample_tps >= train_tps,
            "rss<=4GB": rss_gb <= 4.0,
            "rl>=0.5x_train": rl["rl_over_train"] >= 0.5,
        },
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
