"""A tiny confirmation grid: fitted vs Lambert-predicted eta, reward and entropy across objectives, lags and seeds.

An experiment is data: :class:`ConfirmSweep` names the grid (objectives x lags x
seeds on one SFT warm start); :func:`run` trains every cell with
:func:`sims.llm.rl.train_rl` and writes one tidy row per cell (means over the
last ``tail`` steps, the final evaluation) to ``results.csv``; :func:`score`
averages over seeds with standard errors into ``summary.csv``.

    python -m sims.llm.confirm --out-dir runs/confirm_smoke
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .rl import RL_PRESETS, train_rl
from .sft import SFT_PRESETS, train_sft

METRICS = ("eta_fit", "eta_pred", "kl", "kl_after", "entropy", "reward", "pass_rate", "clip_frac", "ess", "ratio_max")


@dataclass(frozen=True)
class ConfirmSweep:
    """The grid of one confirmation run."""

    objectives: tuple[str, ...] = ("opmd", "shifted_regression", "grpo")
    """Objectives of the zoo, by name."""
    lags: tuple[int, ...] = (0, 4)
    """Lags L of the behaviour policy."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """RL seeds (the SFT warm start is shared)."""
    sft: str = "smoke"
    """SFT preset trained once (in out_dir/sft) or an SFT checkpoint file."""
    rl_preset: str = "smoke"
    """RL preset every cell starts from."""
    steps: int = 30
    """RL steps per cell."""
    inner_steps: int | None = None
    """k: optimizer steps on each batch (None: the RL preset's value)."""
    lr: float | None = None
    """AdamW learning rate (None: the RL preset's value)."""
    tail: int = 10
    """Metrics are averaged over the last this many steps."""
    num_threads: int = 2
    """torch intra-op threads."""


def resolve(sweep: ConfirmSweep) -> ConfirmSweep:
    """``sweep`` with ``inner_steps`` and ``lr`` left as None filled in from its RL preset."""
    base = RL_PRESETS[sweep.rl_preset]
    return dataclasses.replace(
        sweep,
        inner_steps=base.inner_steps if sweep.inner_steps is None else sweep.inner_steps,
        lr=base.lr if sweep.lr is None else sweep.lr,
    )


def run(sweep: ConfirmSweep, out_dir: str | Path) -> list[dict]:
    """Train every cell; write and return the tidy rows of ``results.csv``."""
    sweep = resolve(sweep)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sft_path = sweep.sft
    if sweep.sft in SFT_PRESETS:
        sft_cfg = dataclasses.replace(SFT_PRESETS[sweep.sft], num_threads=sweep.num_threads, progress=False)
        train_sft(sft_cfg, out_dir=out_dir / "sft", resume=True)
        sft_path = str(out_dir / "sft" / "ckpt.pt")
    rows = []
    for obj in sweep.objectives:
        for lag in sweep.lags:
            for seed in sweep.seeds:
                cfg = dataclasses.replace(
                    RL_PRESETS[sweep.rl_preset],
                    sft=sft_path,
                    objective=obj,
                    lag=lag,
                    seed=seed,
                    steps=sweep.steps,
                    inner_steps=sweep.inner_steps,
                    lr=sweep.lr,
                    eval_every=sweep.steps,
                    ckpt_every=sweep.steps,
                    num_threads=sweep.num_threads,
                    progress=False,
                )
                res = train_rl(cfg)
                tail = res.history[-sweep.tail :]
                row = {"objective": obj, "lag": lag, "seed": seed}
                for k in METRICS:
                    vals = [r[k] for r in tail if r.get(k) is not None]
                    row[k] = float(np.mean(vals)) if vals else None
                row["eval_pass@1"] = res.final_eval["pass@1"]
                row["eval_pass@1_se"] = res.final_eval["pass@1_se"]
                rows.append(row)
                print(json.dumps(row))
    cols = list(rows[0])
    with open(out_dir / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)
    (out_dir / "sweep.json").write_text(json.dumps(dataclasses.asdict(sweep), indent=2))
    return rows


def score(rows: list[dict]) -> list[dict]:
    """Mean and standard error over seeds of every metric, per (objective, lag)."""
    keys = sorted({(r["objective"], r["lag"]) for r in rows}, key=lambda x: (x[0], x[1]))
    out = []
    for obj, lag in keys:
        cell = [r for r in rows if r["objective"] == obj and r["lag"] == lag]
        row = {"objective": obj, "lag": lag, "seeds": len(cell)}
        for k in METRICS + ("eval_pass@1",):
            vals = np.array([r[k] for r in cell if r[k] is not None], dtype=float)
            row[k] = float(vals.mean()) if len(vals) else None
            row[f"{k}_se"] = float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else None
        out.append(row)
    return out


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m sims.llm.confirm", description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, required=True, help="write results.csv, summary.csv, sweep.json here")
    p.add_argument("--steps", type=int, default=ConfirmSweep.steps, help="RL steps per cell")
    p.add_argument("--seeds", type=int, nargs="+", default=list(ConfirmSweep.seeds), help="RL seeds")
    p.add_argument("--lags", type=int, nargs="+", default=list(ConfirmSweep.lags), help="lags")
    p.add_argument("--objectives", nargs="+", default=list(ConfirmSweep.objectives), help="objectives")
    p.add_argument("--sft", default=ConfirmSweep.sft, help="SFT preset or checkpoint file")
    p.add_argument("--inner-steps", type=int, default=None, help="k: optimizer steps per batch (default: the RL preset's)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default: the RL preset's)")
    args = p.parse_args(argv)
    if args.inner_steps is not None and args.inner_steps < 1:
        p.error(f"--inner-steps: must be >= 1, got {args.inner_steps}")
    if args.lr is not None and not args.lr > 0:
        p.error(f"--lr: must be > 0, got {args.lr}")
    sweep = ConfirmSweep(
        objectives=tuple(args.objectives),
        lags=tuple(args.lags),
        seeds=tuple(args.seeds),
        sft=args.sft,
        steps=args.steps,
        inner_steps=args.inner_steps,
        lr=args.lr,
    )
    summary = score(run(sweep, args.out_dir))
    with open(args.out_dir / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(summary[0]))
        w.writeheader()
        w.writerows(summary)
    return summary


if __name__ == "__main__":
    main()
