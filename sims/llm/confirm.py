"""A tiny confirmation grid: fitted vs Lambert-predicted eta, reward and entropy across objectives, lags and seeds.

An experiment is data: :class:`ConfirmSweep` names the grid (objectives x lags x
seeds on one SFT warm start); :func:`run` trains every cell with
:func:`sims.llm.rl.train_rl` and writes one tidy row per cell (means over the
last ``tail`` steps, the final evaluation) to ``results.csv``; :func:`score`
averages over seeds with standard errors into ``summary.csv``; :func:`report`
writes the orderings to ``tables.md``, each adjacent difference paired by seed.

    python -m sims.llm.confirm --out-dir runs/confirm_smoke

A grid grows in place: run again into the same ``out_dir`` with more seeds (or
lags, or objectives) and the cells already in ``results.csv`` are kept, not
retrained, provided every other setting of the sweep is the one recorded in
``sweep.json`` (otherwise the run stops before training and names the setting).
``results.csv`` is rewritten atomically (through :mod:`theory.outputs`) after
every cell, so a killed run loses at most the cell it was training. A folder
whose ``sweep.json`` records other settings, or that holds results of another
command without one, is refused unless ``--overwrite`` (which removes the grid's files and its
``sft/`` warm start, nothing else, and starts over). A progress bar (stderr,
when it is a terminal) counts the cells.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from theory.objectives import make_objective, objective_names
from theory.outputs import UsageError, atomic_write_text, cli_main, grid_to_grow, remove_outputs, require_folder

from ._cli import Parser, require_config, usage_error
from .evaluate import paired_difference
from .rl import RL_PRESETS, column_mean, train_rl
from .rundir import OUTPUT_NAMES, SFT_FILES, add_grid_arguments, config_from_args, grid_axes
from .sft import SFT_PRESETS, check_sft_arg, warm_start

__all__ = [
    "METRICS",
    "ConfirmSweep",
    "resolve",
    "GRID",
    "GRID_FILES",
    "SFT_FILES",
    "write_tables",
    "run",
    "score",
    "ORDER",
    "LABELS",
    "report",
]

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

    def __post_init__(self):
        grid_axes(self, ("objectives", "lags", "seeds"))
        for o in self.objectives:
            try:
                make_objective(o)
            except ValueError as e:
                raise ValueError(f"objectives: {e}") from None
        if any(lag < 0 for lag in self.lags):
            raise ValueError(f"lags: must be >= 0, got {self.lags}")
        if any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds: must be >= 0, got {self.seeds}")
        if self.rl_preset not in RL_PRESETS:
            raise ValueError(f"rl_preset: unknown {self.rl_preset!r}; choose from {', '.join(sorted(RL_PRESETS))}")
        if self.sft not in SFT_PRESETS and not Path(self.sft).is_file():
            raise ValueError(
                f"sft: {self.sft!r} is neither an SFT preset ({', '.join(sorted(SFT_PRESETS))}) nor a checkpoint file"
            )
        for name in ("steps", "tail", "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.inner_steps is not None and self.inner_steps < 1:
            raise ValueError(f"inner_steps: must be >= 1, got {self.inner_steps}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")


def resolve(sweep: ConfirmSweep) -> ConfirmSweep:
    """``sweep`` with ``inner_steps`` and ``lr`` left as None filled in from its RL preset."""
    base = RL_PRESETS[sweep.rl_preset]
    return dataclasses.replace(
        sweep,
        inner_steps=base.inner_steps if sweep.inner_steps is None else sweep.inner_steps,
        lr=base.lr if sweep.lr is None else sweep.lr,
    )


GRID = ("objectives", "lags", "seeds")
"""The fields of :class:`ConfirmSweep` a grid may grow along; every other field must match to reuse cells."""


def _parse_row(row: dict) -> dict:
    out = {"objective": row["objective"], "lag": int(row["lag"]), "seed": int(row["seed"])}
    for k, v in row.items():
        if k not in out:
            out[k] = None if v == "" else float(v)
    return out


GRID_FILES = ("sweep.json", "results.csv", "summary.csv", "tables.md")
"""The files the grid writes into its ``out_dir`` (besides its SFT warm start in ``sft/``)."""


def _existing_rows(sweep: ConfirmSweep, out_dir: Path, overwrite: bool = False) -> list[dict]:
    """The rows already in ``out_dir/results.csv`` that this run may keep, or [].

    Kept when every setting outside ``GRID`` matches ``sweep.json``. UsageError
    (naming the setting, and ``--overwrite``) when one differs, when
    ``sweep.json`` is unreadable, or when ``out_dir`` holds results of another
    command (a file named in ``sims.llm.sft.OUTPUT_NAMES``) without a
    ``sweep.json``; other files (a README) are left alone. With ``overwrite``:
    nothing is kept.
    """
    path = out_dir / "results.csv"
    settings = json.loads(json.dumps(dataclasses.asdict(sweep)))
    if not grid_to_grow(out_dir, out_dir / "sweep.json", settings, GRID, OUTPUT_NAMES, overwrite=overwrite):
        return []
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [_parse_row(r) for r in csv.DictReader(f)]


def _ordered(rows: list[dict], sweep: ConfirmSweep) -> list[dict]:
    """Rows by cell: objectives in the order first seen (earlier rows, then the sweep's), then lag, then seed."""
    order = {o: i for i, o in enumerate(dict.fromkeys([*(r["objective"] for r in rows), *sweep.objectives]))}
    return sorted(rows, key=lambda r: (order[r["objective"]], r["lag"], r["seed"]))


def _write(rows: list[dict], sweep: ConfirmSweep, out_dir: Path) -> None:
    """Atomically write ``results.csv`` (rows sorted by cell) and ``sweep.json`` (the union grid)."""
    rows = _ordered(rows, sweep)
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    grid = {
        "objectives": list(dict.fromkeys(r["objective"] for r in rows)),
        "lags": sorted({r["lag"] for r in rows}),
        "seeds": sorted({r["seed"] for r in rows}),
    }
    meta = {**dataclasses.asdict(sweep), **grid}
    atomic_write_text(out_dir / "sweep.json", json.dumps(meta, indent=2))
    atomic_write_text(out_dir / "results.csv", buf.getvalue())


def write_tables(rows: list[dict], out_dir: Path) -> list[dict]:
    """Atomically write ``summary.csv`` (:func:`score`) and ``tables.md`` (:func:`report`); return the summary."""
    summary = score(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(summary[0]))
    w.writeheader()
    w.writerows(summary)
    atomic_write_text(out_dir / "summary.csv", buf.getvalue())
    atomic_write_text(out_dir / "tables.md", report(summary, rows))
    return summary


def run(
    sweep: ConfirmSweep, out_dir: str | Path, *, overwrite: bool = False, progress: bool | None = False
) -> list[dict]:
    """Train every cell not already in ``out_dir/results.csv``; write and return all its rows.

    Rows of earlier runs into ``out_dir`` are kept (also those outside this
    sweep's grid), provided the sweep's other settings match ``sweep.json``;
    otherwise (or when ``out_dir`` holds another command's results) the folder is refused.
    ``overwrite`` removes the earlier grid's files (``GRID_FILES`` and the
    ``sft/`` warm start; nothing else) and starts over. ``progress``: a bar over
    the cells on stderr (None: only when stderr is a terminal).
    """
    require_config(sweep, ConfirmSweep, "confirm.run")
    sweep = resolve(sweep)
    out_dir = require_folder(out_dir, "out_dir")
    rows = _existing_rows(sweep, out_dir, overwrite)
    check_sft_arg(sweep.sft)  # before anything is removed
    if overwrite:
        remove_outputs([out_dir / n for n in (*GRID_FILES, *SFT_FILES)], [out_dir / "sft"])
    done = {(r["objective"], r["lag"], r["seed"]) for r in rows}
    todo = [(o, lag, s) for o in sweep.objectives for lag in sweep.lags for s in sweep.seeds if (o, lag, s) not in done]
    out_dir.mkdir(parents=True, exist_ok=True)
    if not todo:
        return rows
    sft_path = warm_start(sweep.sft, out_dir, sweep.num_threads)
    bar = tqdm(todo, desc="confirm cells", unit="cell", disable=None if progress is None else not progress)
    for obj, lag, seed in bar:
        bar.set_postfix_str(f"{obj} L={lag} seed {seed}")
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
            row[k] = column_mean(tail, k)
        row["eval_pass@1"] = res.final_eval["pass@1"]
        row["eval_pass@1_se"] = res.final_eval["pass@1_se"]
        rows.append(row)
        _write(rows, sweep, out_dir)
        tqdm.write(json.dumps(row), file=sys.stdout)
        sys.stdout.flush()
    bar.close()
    return _ordered(rows, sweep)


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


ORDER = ("opmd_above", "opmd_lme", "opmd", "shifted_regression")
"""The beta = 0.1 regression baselines in their predicted order of pessimism (eta increasing)."""
LABELS = {
    "opmd_above": "V above soft value (`opmd_above`)",
    "opmd_lme": "soft value (`opmd_lme`)",
    "opmd": "mean (`opmd`)",
    "shifted_regression": "beta-shifted mean (`shifted_regression`)",
    "oapl": "decoupled beta1 (`oapl`)",
    "grpo": "`grpo`",
}


def _fmt(x: float, se: float | None) -> str:
    def f(v):
        return f"{v:.3f}" if 1e-3 <= abs(v) < 1e3 or v == 0 else f"{v:.2g}"

    return f(x) if se is None else f"{f(x)} ± {f(se)}"


def report(summary: list[dict], rows: list[dict] | None = None) -> str:
    """Markdown tables of eta_fit, eta_pred and kl_after by objective and lag, with the adjacent
    differences along ``ORDER``.

    With the per-cell ``rows`` (``results.csv``) the differences are paired by seed
    (``sims.llm.evaluate.paired_difference``: the two objectives of a pair start from the
    same SFT model with the same seed); without them, difference ± combined s.e.
    sqrt(se_a^2 + se_b^2) of the two means. z = difference / s.e. either way.
    """
    per_seed = {}
    for r in rows or ():
        per_seed.setdefault((r["objective"], int(r["lag"])), []).append(r)
    cell = {(r["objective"], int(r["lag"])): r for r in summary}
    lags = sorted({int(r["lag"]) for r in summary})
    objs = [o for o in (*ORDER, "oapl", "grpo") if any((o, lag) in cell for lag in lags)]
    seeds = sorted({int(r["seeds"]) for r in summary})
    out = []
    for metric, title, sign in [
        ("eta_fit", "fitted eta (eta_fit)", +1),
        ("eta_pred", "predicted eta (eta_pred, Lambert on each group)", +1),
        ("kl_after", "KL(mu || pi_{t+1}) after the update (kl_after, nats)", -1),
    ]:
        listed = [o for o in objs if any(cell.get((o, lag), {}).get(metric) is not None for lag in lags)]
        out.append(f"**{title}**, mean ± s.e. over {'/'.join(map(str, seeds))} seeds\n")
        out.append("| baseline | " + " | ".join(f"lag {lag}" for lag in lags) + " |")
        out.append("|---|" + "---|" * len(lags))
        for o in listed:
            vals = [cell.get((o, lag), {}) for lag in lags]
            out.append(f"| {LABELS.get(o, o)} | " + " | ".join(_fmt(v[metric], v.get(f"{metric}_se")) if v else "" for v in vals) + " |")
        pairs = [(a, b) for a, b in zip(ORDER, ORDER[1:]) if a in listed and b in listed]
        if pairs:
            want = "increase" if sign > 0 else "decrease"
            how = "paired by seed, mean ± s.e. of the per-seed differences" if rows else "difference ± combined s.e."
            out.append(f"\nadjacent differences along the predicted order (predicted to {want}; {how}; z = difference / s.e.):\n")
            out.append("| pair | " + " | ".join(f"lag {lag}" for lag in lags) + " |")
            out.append("|---|" + "---|" * len(lags))
            for a, b in pairs:
                cells = []
                for lag in lags:
                    if rows:
                        va, vb = ({int(x["seed"]): x[metric] for x in per_seed.get((o, lag), []) if x[metric] is not None}
                                  for o in (a, b))
                        if sum(k in vb for k in va) < 2:
                            cells.append("")
                            continue
                        d, se, _ = paired_difference(va, vb)
                    else:
                        ra, rb = cell[(a, lag)], cell[(b, lag)]
                        d = rb[metric] - ra[metric]
                        se = math.hypot(ra[f"{metric}_se"] or 0.0, rb[f"{metric}_se"] or 0.0)
                    cells.append(f"{d:+.3g} ± {se:.2g} (z = {d / se:+.1f})" if se > 0 else f"{d:+.3g}")
                out.append(f"| `{a}` → `{b}` | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


@cli_main
def main(argv=None) -> list[dict]:
    """``python -m sims.llm.confirm``: the grid into ``--out-dir``, then ``summary.csv`` and ``tables.md``."""
    d = ConfirmSweep()
    p = Parser(prog="python -m sims.llm.confirm", description=__doc__.splitlines()[0])
    add_grid_arguments(p, "results.csv, summary.csv, tables.md, sweep.json", "grid")
    p.add_argument("--steps", type=int, default=d.steps, help=f"RL steps per cell (default: {d.steps})")
    p.add_argument("--seeds", type=int, nargs="+", default=list(d.seeds), help=f"RL seeds (default: {list(d.seeds)})")
    p.add_argument("--lags", type=int, nargs="+", default=list(d.lags), help=f"lags L (default: {list(d.lags)})")
    p.add_argument("--objectives", nargs="+", default=list(d.objectives), choices=objective_names(), metavar="OBJECTIVE",
                   help=f"objectives of the zoo (default: {list(d.objectives)}; choices: {', '.join(objective_names())})")
    p.add_argument("--sft", default=d.sft,
                   help=f"SFT preset ({', '.join(sorted(SFT_PRESETS))}) trained once in OUT_DIR/sft, or the ckpt.pt "
                   f"of a sims.llm.sft run (default: {d.sft!r})")
    p.add_argument("--rl-preset", default=d.rl_preset, choices=sorted(RL_PRESETS),
                   help=f"RL preset every cell starts from (default: {d.rl_preset!r}; choices: "
                   f"{', '.join(sorted(RL_PRESETS))})")
    p.add_argument("--inner-steps", type=int, default=None, help="k: optimizer steps per batch (default: the RL preset's)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default: the RL preset's)")
    p.add_argument("--tail", type=int, default=d.tail, help=f"average the metrics over the last this many steps (default: {d.tail})")
    p.add_argument("--num-threads", type=int, default=d.num_threads, help=f"torch intra-op threads (default: {d.num_threads})")
    args, sweep = config_from_args(p, argv, ConfirmSweep, d)
    try:
        rows = run(sweep, args.out_dir, overwrite=args.overwrite, progress=args.progress)
    except UsageError as e:
        raise usage_error(e, ConfirmSweep) from None
    return write_tables(rows, args.out_dir)


if __name__ == "__main__":
    main()
