r"""The lag study: ratio corrections, ratio-free objectives and the beta-shift, trained under lag.

An experiment is data (bsuite's sweep / run / score / plot):

* :class:`LagStudy` names the grid: arms (an objective of the zoo with its
  parameters) x lags x seeds, on one SFT warm start, with one RL preset;
* :func:`run` trains every cell not yet computed with :func:`sims.llm.rl.train_rl`
  (two processes side by side, one thread each, by default) and keeps, per cell,
  its per-step metrics and one row of results;
* :func:`score` turns the cells into ``summary.csv`` (one row per arm and lag, with
  bootstrap intervals over seeds) and :func:`claims` into ``claims.md`` (each of
  the paper's practical claims, tested by per-seed paired differences, with the
  seeds it would take to resolve what is not resolved);
* figure 11 (``python -m figures fig11_llm_lag``) draws the files.

Files in ``out_dir``: ``study.json`` (the grid and its settings), ``cells.csv``
(one row per cell), ``steps.csv.gz`` (one row per cell and step: the per-step
metrics of ``docs/llm_metrics.md``, evaluations on their cadence),
``summary.csv``, ``claims.md``; and, not committed, ``sft/`` (the warm start).
The study grows in place: cells already in ``cells.csv`` are kept, not retrained,
provided every setting outside the grid matches ``study.json``; the files are
rewritten atomically after every cell, so a killed study loses only the cells in
flight. Every cell is a deterministic function of its settings (one thread per
process), so rerunning a cell from scratch reproduces its row.

Collapse (defined before any cell was trained): a run *collapses* when one of its
held-out evaluations scores a pass@1 at least ``collapse_drop`` below the best
pass@1 of the evaluations before it (the SFT start, evaluated by the same
protocol, counts as the first).

    python -m sims.llm.lag_study --out-dir results/llm_lag
    python -m sims.llm.lag_study --preset smoke --out-dir runs/lag_smoke
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import gzip
import io
import json
import math
import multiprocessing as mp
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from theory.objectives import make_objective
from theory.outputs import UsageError, atomic_write_bytes, atomic_write_text, cli_main, grid_to_grow, require_folder

from ._cli import Parser, add_dataclass_arguments, usage_error
from .evaluate import evaluate
from .rl import RL_PRESETS, STEP_METRICS, RLConfig, column_mean, parse_objective_params, train_rl
from .rundir import config_from_args, grid_axes
from .sft import OUTPUT_NAMES, SFT_PRESETS, load_sft, warm_start
from .stats import MIN_SEEDS, bootstrap_ci, iqm, paired

__all__ = ["Arm", "LagStudy", "STUDY_PRESETS", "run", "score", "claims", "read_cells", "read_steps", "collapse_step"]

STEP_COLUMNS = tuple(
    c for c in STEP_METRICS if c not in ("step", "loss", "score", "ratio_mean", "tokens", "tok_per_s", "time_s")
) + ("eval/pass@1", "eval/greedy_acc")
"""Per-step columns kept in ``steps.csv.gz``: those of the RL metrics.csv (docs/llm_metrics.md defines each)
but the step, the loss, the score, the mean ratio and the token counts and timings, then two of the evaluation."""


@dataclass(frozen=True)
class Arm:
    """One arm of the study: an objective of the zoo with its parameters, under a label."""

    label: str
    objective: str
    params: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Arm":
        """``objective`` or ``label=objective:name=value,...`` (e.g. ``oapl_b0.1=oapl:beta=0.1``)."""
        label, _, spec = text.partition("=") if "=" in text.split(":", 1)[0] else (None, None, text)
        name, _, params = spec.partition(":")
        p = parse_objective_params(params) if params else {}
        make_objective(name, **p)  # refuses an unknown objective or a bad parameter, naming it
        return cls(label or name, name, tuple(sorted(p.items())))

    def __str__(self):
        spec = self.objective + (":" + ",".join(f"{k}={v}" for k, v in self.params) if self.params else "")
        return spec if self.label == self.objective and not self.params else f"{self.label}={spec}"


@dataclass(frozen=True)
class LagStudy:
    """The grid of the lag study; ``STUDY_PRESETS`` holds ``smoke`` and ``full``."""

    arms: tuple[str, ...] = (
        "grpo",
        "cispo",
        "opmd",
        "oapl",
        "shifted_regression",
        "opmd_lme",
        "opmd_above",
    )
    """Arms: an objective (its zoo defaults) or label=objective:name=value,... (see Arm.parse)."""
    lags: tuple[int, ...] = (0, 4, 16, 64)
    """Lags L of the behaviour policy, in RL steps."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """RL seeds: each draws its own problem stream and samples; the SFT warm start is shared."""
    sft: str = "countdown"
    """SFT preset trained once into out_dir/sft (or an SFT checkpoint file)."""
    rl_preset: str = "lag"
    """RL preset of every cell (sims.llm.rl.RL_PRESETS)."""
    steps: int | None = None
    """RL steps per cell (None: the preset's)."""
    collapse_drop: float = 0.15
    """A cell collapses when an evaluation's pass@1 is this far below the best evaluation before it."""

    def __post_init__(self):
        grid_axes(self, ("arms", "lags", "seeds"))
        try:
            labels = [Arm.parse(a).label for a in self.arms]
        except ValueError as e:
            raise ValueError(f"arms: {e}") from None
        if len(set(labels)) != len(labels):
            raise ValueError(f"arms: labels repeat in {labels}; give each arm its own label=")
        if any(not isinstance(x, int) or x < 0 for x in self.lags):
            raise ValueError(f"lags: must be integers >= 0, got {self.lags}")
        if any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds: must be integers >= 0, got {self.seeds}")
        if self.rl_preset not in RL_PRESETS:
            raise ValueError(f"rl_preset: unknown {self.rl_preset!r}; choose from {', '.join(sorted(RL_PRESETS))}")
        if self.sft not in SFT_PRESETS and not Path(self.sft).is_file():
            raise ValueError(f"sft: {self.sft!r} is neither an SFT preset ({', '.join(sorted(SFT_PRESETS))}) nor a file")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps: must be >= 1, got {self.steps}")
        if not 0 < self.collapse_drop < 1:
            raise ValueError(f"collapse_drop: must lie in (0, 1), got {self.collapse_drop}")

    def arm_list(self) -> list[Arm]:
        return [Arm.parse(a) for a in self.arms]

    def protocol(self) -> dict:
        """The settings the presets named by ``sft`` and ``rl_preset`` stand for, JSON-ready.

        ``study.json`` records them, so a folder whose cells were trained under other
        preset contents (a changed learning rate, SFT stop, ...) is refused, not grown.
        """
        sft = dataclasses.asdict(SFT_PRESETS[self.sft]) if self.sft in SFT_PRESETS else {"file": str(self.sft)}
        rl = dataclasses.asdict(RL_PRESETS[self.rl_preset])
        for per_cell in ("objective", "objective_params", "lag", "seed", "steps", "progress", "out_dir",
                         "tensorboard_dir", "num_threads"):
            rl.pop(per_cell)
        return json.loads(json.dumps({"sft": sft, "rl": rl}))

    def rl_config(self, arm: Arm, lag: int, seed: int) -> RLConfig:
        """The RL config of one cell (one thread, no output folder, no progress bar)."""
        base = RL_PRESETS[self.rl_preset]
        return dataclasses.replace(
            base,
            objective=arm.objective,
            objective_params=dict(arm.params),
            lag=lag,
            seed=seed,
            steps=self.steps or base.steps,
            num_threads=1,
            progress=False,
            out_dir=None,
            tensorboard_dir=None,
        )


STUDY_PRESETS = {
    "full": LagStudy(),
    # the first protocol (results/llm_lag_v1): SFT stopped at pass@1 >= 0.15, a constant RL learning rate
    "v1": LagStudy(sft="countdown_v1", rl_preset="lag_v1"),
    "smoke": LagStudy(arms=("grpo", "opmd"), lags=(0, 2), seeds=(0, 1), sft="smoke", rl_preset="smoke", steps=6),
}

GRID = ("arms", "lags", "seeds")
"""Fields a study grows along; every other field must match to keep its cells."""
STUDY_FILES = ("study.json", "cells.csv", "steps.csv.gz", "summary.csv", "claims.md")


# ----------------------------------------------------------------------------- one cell


def collapse_step(evals: list[tuple[int, float]], start: float, drop: float) -> int | None:
    """First evaluation step whose pass@1 is at least ``drop`` below the best before it (the start included).

    ``evals`` is ``[(step, pass@1), ...]`` in step order; ``start`` is the SFT
    start's pass@1 by the same protocol. None when the run never collapses.
    """
    best = start
    for step, p in evals:
        if p <= best - drop:
            return step
        best = max(best, p)
    return None


def _train_cell(job: tuple) -> tuple[dict, list[dict]]:
    """Train one cell in this process; return its result row and its per-step rows."""
    study, arm, lag, seed, sft_path, start = job
    import torch

    torch.set_num_threads(1)
    model, task, _ = load_sft(sft_path)
    cfg = study.rl_config(arm, lag, seed)
    t0 = time.perf_counter()
    res = train_rl(cfg, warm_start=(model, task))
    wall = time.perf_counter() - t0
    steps = [{"arm": arm.label, "lag": lag, "seed": seed, "step": r["step"], **{k: r.get(k) for k in STEP_COLUMNS}} for r in res.history]
    evals = [(r["step"], r["eval/pass@1"]) for r in res.history if r.get("eval/pass@1") is not None]
    tail, h = res.history[-10:], res.history
    cstep = collapse_step(evals, start, study.collapse_drop)
    row = {
        "arm": arm.label,
        "objective": arm.objective,
        "lag": lag,
        "seed": seed,
        "pass1_start": start,
        "pass1_final": evals[-1][1],
        "pass1_best": max(p for _, p in evals),
        "greedy_final": res.final_eval["greedy_acc"],
        "collapsed": int(cstep is not None),
        "collapse_step": cstep,
        "reward_last10": column_mean(tail, "reward"),
        "entropy_final": column_mean(tail, "entropy"),
        "kl_mean": column_mean(h, "kl"),
        "ess_mean": column_mean(h, "ess"),
        "clip_frac_mean": column_mean(h, "clip_frac"),
        "grad_norm_mean": column_mean(h, "grad_norm"),
        "eta_pred": column_mean(h, "eta_pred"),
        "eta_fit": column_mean(h, "eta_fit"),
        "steps": res.step,
        "wall_s": wall,
    }
    return row, steps


def sft_start(sft_path: str, study: LagStudy, seed: int) -> float:
    """Held-out pass@1 of the SFT warm start by the cells' own evaluation protocol (sampling seed ``seed + 1``)."""
    import torch

    torch.set_num_threads(1)
    model, task, _ = load_sft(sft_path)
    cfg = study.rl_config(study.arm_list()[0], 0, seed)
    ev = evaluate(model, task, n_samples=cfg.eval_samples, ks=cfg.eval_ks, temperature=1.0, seed=seed + 1)
    return float(ev["pass@1"])


# ----------------------------------------------------------------------------- files


def _csv_text(rows: list[dict], columns) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.10g}" if isinstance(r[k], float) else r[k])) for k in columns})
    return buf.getvalue()


def _parse(value: str):
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def read_cells(out_dir) -> list[dict]:
    """The rows of ``out_dir/cells.csv`` (numbers parsed; [] when absent)."""
    path = Path(out_dir) / "cells.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]


def read_steps(out_dir) -> list[dict]:
    """The rows of ``out_dir/steps.csv.gz`` (numbers parsed; [] when absent)."""
    path = Path(out_dir) / "steps.csv.gz"
    if not path.exists():
        return []
    with gzip.open(path, "rt", newline="") as f:
        return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]


CELL_COLUMNS = (
    "arm", "objective", "lag", "seed", "pass1_start", "pass1_final", "pass1_best", "greedy_final", "collapsed",
    "collapse_step", "reward_last10", "entropy_final", "kl_mean", "ess_mean", "clip_frac_mean", "grad_norm_mean",
    "eta_pred", "eta_fit", "steps", "wall_s",
)  # fmt: skip


def _order(study: LagStudy, rows: list[dict]):
    arms = list(dict.fromkeys([*(a.label for a in study.arm_list()), *(r["arm"] for r in rows)]))
    return lambda r: (arms.index(r["arm"]), r["lag"], r["seed"], r.get("step", 0))


def _write(study: LagStudy, out_dir: Path, cells: list[dict], steps: list[dict]) -> None:
    key = _order(study, cells)
    cells, steps = sorted(cells, key=key), sorted(steps, key=key)
    settings = dataclasses.asdict(study)
    settings["protocol"] = study.protocol()
    record = out_dir / "study.json"
    earlier = json.loads(record.read_text()) if record.exists() else {"arms": [], "lags": [], "seeds": []}
    settings.update(
        arms=list(dict.fromkeys([*earlier["arms"], *(str(a) for a in study.arm_list())])),
        lags=sorted({*earlier["lags"], *study.lags}),
        seeds=sorted({*earlier["seeds"], *study.seeds}),
    )
    atomic_write_text(out_dir / "study.json", json.dumps(settings, indent=2) + "\n")
    atomic_write_text(out_dir / "cells.csv", _csv_text(cells, CELL_COLUMNS))
    raw = _csv_text(steps, ("arm", "lag", "seed", "step", *STEP_COLUMNS)).encode()
    atomic_write_bytes(out_dir / "steps.csv.gz", gzip.compress(raw, compresslevel=9, mtime=0))
    write_tables(study, out_dir, read_cells(out_dir))  # from the file, as --tables-only does: the same digits


def write_tables(study: LagStudy, out_dir: Path, cells: list[dict]) -> None:
    """Rewrite ``summary.csv`` (:func:`score`) and ``claims.md`` (:func:`claims`) from the cells."""
    summary = score(cells)
    atomic_write_text(out_dir / "summary.csv", _csv_text(summary, list(summary[0])))
    atomic_write_text(out_dir / "claims.md", claims(cells, study))


# ----------------------------------------------------------------------------- run


def run(study: LagStudy, out_dir, *, jobs: int = 2, overwrite: bool = False, progress: bool | None = None) -> list[dict]:
    """Train every cell of ``study`` not yet in ``out_dir/cells.csv``; write and return all cells.

    ``jobs`` cells train side by side, one process each with one torch thread
    (a cell's numbers do not depend on ``jobs``).

    A folder whose ``study.json`` records other settings (outside the grid) is
    refused, naming the setting, unless ``overwrite`` (which removes the study's
    files and its ``sft/`` warm start and starts over).
    """
    if not isinstance(study, LagStudy):
        raise UsageError(f"study: expected a LagStudy (see STUDY_PRESETS), got {type(study).__name__}")
    if not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"jobs: must be an integer >= 1, got {jobs!r}")
    out_dir = require_folder(out_dir, "out_dir")
    settings = json.loads(json.dumps(dataclasses.asdict(study)))
    settings["arms"] = [str(a) for a in study.arm_list()]
    settings["protocol"] = study.protocol()
    keep = grid_to_grow(out_dir, out_dir / "study.json", settings, GRID, OUTPUT_NAMES + STUDY_FILES, overwrite=overwrite)
    if overwrite:
        from theory.outputs import remove_outputs

        remove_outputs([out_dir / n for n in STUDY_FILES], [out_dir / "sft"])
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = read_cells(out_dir) if keep else []
    steps = read_steps(out_dir) if keep else []
    done = {(r["arm"], r["lag"], r["seed"]) for r in cells}
    sft_path = warm_start(study.sft, out_dir, 1)
    starts = {}
    for r in cells:
        starts.setdefault(r["seed"], r["pass1_start"])
    for s in study.seeds:
        if s not in starts:
            starts[s] = sft_start(sft_path, study, s)
    # lag 0 first (the learning goal), then the largest lag, then the rest: a study run in parts answers the
    # extremes first; a cell's numbers do not depend on the order
    lags = sorted(study.lags, key=lambda L: (L != 0, L != max(study.lags), L))
    todo = [
        (study, arm, lag, seed, sft_path, starts[seed])
        for lag in lags
        for seed in study.seeds
        for arm in study.arm_list()
        if (arm.label, lag, seed) not in done
    ]
    if not todo:
        if cells:
            _write(study, out_dir, cells, steps)
        return cells
    show = sys.stderr.isatty() if progress is None else progress
    # a terminated study stops its workers too (the pool is closed in the finally below)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if main_thread else None
    bar = tqdm(total=len(todo), desc="lag study cells", disable=not show)
    if jobs == 1:
        results = map(_train_cell, todo)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(jobs, maxtasksperchild=1)
        results = pool.imap_unordered(_train_cell, todo)
    try:
        for row, rows in results:
            cells.append(row)
            steps.extend(rows)
            _write(study, out_dir, cells, steps)
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return cells


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


# ----------------------------------------------------------------------------- score


def _by(cells, *keys):
    out = {}
    for r in cells:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def score(cells: list[dict]) -> list[dict]:
    """One row per (arm, lag): means over seeds with 95% bootstrap intervals, IQM, collapse fraction.

    Columns: ``objective`` (the arm's label), ``lag``, ``n_seeds``, ``pass1_start``,
    ``pass1_final`` (mean) with ``pass1_final_ci_low`` / ``_high``,
    ``pass1_final_iqm`` with its interval, ``gain`` (final minus start, paired by
    seed) with its interval, ``greedy_final``, ``entropy_final``,
    ``collapse_fraction``, ``below_start_fraction`` (runs that end below the SFT
    start: descriptive, added after the first cells showed runs that decay from
    the start without a drop of ``collapse_drop`` from a best), ``kl_mean``, ``ess_mean``, ``clip_frac_mean``,
    ``eta_pred``, ``eta_fit``, ``wall_s`` (mean per cell).
    """
    out = []
    groups = _by(cells, "arm", "lag")
    order = list(dict.fromkeys(r["arm"] for r in cells))
    for (arm, lag) in sorted(groups, key=lambda k: (order.index(k[0]), k[1])):
        rows = sorted(groups[(arm, lag)], key=lambda r: r["seed"])
        final = np.array([r["pass1_final"] for r in rows])
        gain = final - np.array([r["pass1_start"] for r in rows])
        m, lo, hi = bootstrap_ci(final)
        qm, qlo, qhi = bootstrap_ci(final, iqm)
        g, glo, ghi = bootstrap_ci(gain)
        mean = functools.partial(column_mean, rows)
        out.append(
            {
                "objective": arm,
                "lag": lag,
                "n_seeds": len(rows),
                "pass1_start": mean("pass1_start"),
                "pass1_final": m,
                "pass1_final_ci_low": lo,
                "pass1_final_ci_high": hi,
                "pass1_final_iqm": qm,
                "pass1_final_iqm_ci_low": qlo,
                "pass1_final_iqm_ci_high": qhi,
                "gain": g,
                "gain_ci_low": glo,
                "gain_ci_high": ghi,
                "greedy_final": mean("greedy_final"),
                "entropy_final": mean("entropy_final"),
                "collapse_fraction": mean("collapsed"),
                "below_start_fraction": float(np.mean(gain < 0)),
                "kl_mean": mean("kl_mean"),
                "ess_mean": mean("ess_mean"),
                "clip_frac_mean": mean("clip_frac_mean"),
                "eta_pred": mean("eta_pred"),
                "eta_fit": mean("eta_fit"),
                "wall_s": mean("wall_s"),
            }
        )
    return out


# ----------------------------------------------------------------------------- claims

RATIO_ARMS = ("grpo", "cispo", "tis")
"""Arms that correct with importance ratios (the rest of the study's arms are ratio-free)."""


def _seedwise(cells, arm, lag, key="pass1_final") -> dict:
    return {r["seed"]: r[key] for r in cells if r["arm"] == arm and r["lag"] == lag and r.get(key) is not None}


def _fmt(p) -> str:
    if p.n < MIN_SEEDS:
        verdict = f"too few seeds to resolve (fewer than {MIN_SEEDS})"
    elif p.resolved:
        verdict = "resolved"
    else:
        verdict = f"not resolved (about {p.seeds_needed():.0f} seeds needed)"
    return f"{p.mean:+.3f} [{p.low:+.3f}, {p.high:+.3f}], n = {p.n}, {verdict}"


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown section: ``## title``, then the table."""
    return (
        [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(r) + " |" for r in rows]
        + [""]
    )


def _claims_header(cells: list[dict], study: LagStudy) -> list[str]:
    return [
        "# Lag study: the paper's practical claims, tested",
        "",
        "Generated by `python -m sims.llm.lag_study` from `cells.csv` (do not edit by hand). Every difference is",
        "paired by seed (the two cells share the SFT start, the problem stream and the evaluation draws): mean",
        "[95% bootstrap interval], number of seeds; where the interval covers 0, the seeds a difference of this",
        "size and spread would need (two-sided 5% test, power 0.8).",
        "",
        f"Collapse: an evaluation's pass@1 at least {study.collapse_drop:g} below the best before it (SFT start included).",
        "",
        f"Compute: {len(cells)} of the grid's {len(study.arms) * len(study.lags) * len(study.seeds)} cells, {sum(float(c['wall_s']) for c in cells) / 3600:.1f} h of cell wall time in all "
        "(the sum of `wall_s`; the cells run two at a time, one thread each, so about half that on 2 cores).",
        "",
    ]


def _learning_table(cells: list[dict], arms: list[str]) -> list[str]:
    """Claim 4: each arm's gain over the SFT start at lag 0."""
    rows = []
    for a in arms:
        start, fin = _seedwise(cells, a, 0, "pass1_start"), _seedwise(cells, a, 0)
        if len(fin) >= 2:
            rows.append([a, f"{np.mean(list(start.values())):.3f}", f"{np.mean(list(fin.values())):.3f}", _fmt(paired(start, fin))])
    return _table("Learning at lag 0: final held-out pass@1 minus the SFT start", ["arm", "start", "final", "gain"], rows)


def _degradation_table(cells: list[dict], arms: list[str], L: int) -> list[str]:
    """Claim 1: each arm's pass@1 at the largest lag ``L`` minus at lag 0, and its collapse fraction at ``L``."""
    rows = []
    for a in arms:
        d0, dL = _seedwise(cells, a, 0), _seedwise(cells, a, L)
        coll = [r["collapsed"] for r in cells if r["arm"] == a and r["lag"] == L]
        if len(d0) >= 2 and len(dL) >= 2:
            kind = "ratio" if a in RATIO_ARMS else "ratio-free"
            rows.append([a, kind, _fmt(paired(d0, dL)), f"{np.mean(coll):.2f}" if coll else ""])
    return _table(f"Claim 1: pass@1 at lag {L} minus lag 0, and collapse fraction at lag {L}", ["arm", "kind", "change", "collapsed"], rows)


def _below_start_table(cells: list[dict], arms: list[str], lags: list[int]) -> list[str]:
    """Descriptive: the fraction of each arm's runs that end below the SFT start, by lag."""
    rows = []
    for a in arms:
        row = [a]
        for lag in lags:
            g = [r["pass1_final"] - r["pass1_start"] for r in cells if r["arm"] == a and r["lag"] == lag]
            row.append(f"{np.mean(np.array(g) < 0):.2f} of {len(g)}" if g else "")
        rows.append(row)
    return _table("Descriptive (not pre-registered): fraction of runs that end below the SFT start", ["arm"] + [f"lag {x}" for x in lags], rows)


def _ratio_vs_free_table(cells: list[dict], arms: list[str], L: int) -> list[str]:
    """Claim 1: each ratio-free arm's change (lag ``L`` vs 0) minus each ratio arm's, paired by seed."""
    rows = []
    for a in [a for a in arms if a in RATIO_ARMS]:
        for b in [b for b in arms if b not in RATIO_ARMS]:
            da = {s: _seedwise(cells, a, L)[s] - v for s, v in _seedwise(cells, a, 0).items() if s in _seedwise(cells, a, L)}
            db = {s: _seedwise(cells, b, L)[s] - v for s, v in _seedwise(cells, b, 0).items() if s in _seedwise(cells, b, L)}
            if len(set(da) & set(db)) >= 2:
                rows.append([f"{b} - {a}", _fmt(paired(da, db))])
    return _table(f"Claim 1: ratio-free arm's change minus ratio arm's change (lag {L} vs 0)", ["difference", "value"], rows)


def _ratio_free_table(cells: list[dict], arms: list[str], lags: list[int]) -> list[str]:
    """Claim 2: each ratio-free arm's final pass@1 minus grpo's, at every lag."""
    rows = []
    for b in [b for b in arms if b not in RATIO_ARMS]:
        cells_row = [b]
        for lag in lags:
            a_, b_ = _seedwise(cells, "grpo", lag), _seedwise(cells, b, lag)
            cells_row.append(_fmt(paired(a_, b_)) if len(set(a_) & set(b_)) >= 2 else "")
        rows.append(cells_row)
    return _table("Claim 2: final pass@1, ratio-free arm minus grpo", ["arm"] + [f"lag {x}" for x in lags], rows)


def _beta_shift_table(cells: list[dict], lags: list[int]) -> list[str]:
    """Claim 3: shifted_regression minus opmd (the mean baseline it shifts) at every lag, and their collapse fractions."""
    rows = []
    for lag in lags:
        a_, b_ = _seedwise(cells, "opmd", lag), _seedwise(cells, "shifted_regression", lag)
        ca = np.mean([r["collapsed"] for r in cells if r["arm"] == "opmd" and r["lag"] == lag] or [math.nan])
        cb = np.mean([r["collapsed"] for r in cells if r["arm"] == "shifted_regression" and r["lag"] == lag] or [math.nan])
        if len(set(a_) & set(b_)) >= 2:
            rows.append([str(lag), _fmt(paired(a_, b_)), f"{cb:.2f} vs {ca:.2f}"])
    return _table("Claim 3: final pass@1, shifted_regression minus opmd", ["lag", "difference", "collapsed (shifted vs opmd)"], rows)


def claims(cells: list[dict], study: LagStudy) -> str:
    """``claims.md``: each practical claim of the paper tested by per-seed paired differences.

    The tests (fixed before any cell was trained):

    1. *Ratio corrections degrade under lag*: for each ratio arm, final pass@1 at
       the largest lag minus at lag 0 (paired by seed), against the same
       difference for each ratio-free arm; collapse fractions side by side.
    2. *Ratio-free objectives are stronger*: each ratio-free arm minus ``grpo``, at
       every lag (paired by seed).
    3. *The beta-shift stabilizes and improves off-policy learning*:
       ``shifted_regression`` minus ``opmd`` (the mean baseline it shifts) at every
       lag, and the same difference in collapse fraction.
    4. *Lag-0 learning*: the best arm's gain over the SFT start at lag 0.

    A difference is *resolved* when its 95% interval excludes 0; a claim is
    confirmed when its differences are resolved in its direction, refuted when
    resolved against it, and otherwise not resolved at this scale.
    """
    arms = list(dict.fromkeys(r["arm"] for r in cells))
    lags = sorted({r["lag"] for r in cells})
    lines = _claims_header(cells, study)
    if 0 in lags:
        lines += _learning_table(cells, arms)
    if len(lags) > 1:
        L = max(lags)
        lines += _degradation_table(cells, arms, L) + _below_start_table(cells, arms, lags)
        lines += _ratio_vs_free_table(cells, arms, L)
    if "grpo" in arms:
        lines += _ratio_free_table(cells, arms, lags)
    if "shifted_regression" in arms and "opmd" in arms:
        lines += _beta_shift_table(cells, lags)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


@cli_main
def main(argv=None) -> list[dict]:
    """``python -m sims.llm.lag_study``: train the missing cells, then rewrite the tables."""
    pre = Parser(prog="python -m sims.llm.lag_study", add_help=False)
    pre.add_argument("--preset", choices=sorted(STUDY_PRESETS), default="full")
    base = STUDY_PRESETS[pre.parse_known_args(argv)[0].preset]
    p = Parser(prog="python -m sims.llm.lag_study", description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(STUDY_PRESETS), default="full", help="base study (default: full)")
    p.add_argument("--out-dir", required=True, help="folder of the study's files (grown in place)")
    p.add_argument("--overwrite", action="store_true", help="remove the study already in OUT_DIR and start over")
    p.add_argument("--jobs", type=int, default=2, help="cells trained side by side, one process and one thread each (default: 2)")
    p.add_argument("--tables-only", action="store_true", help="train nothing; rewrite summary.csv and claims.md from cells.csv")
    add_dataclass_arguments(p, LagStudy, base)
    args, study = config_from_args(p, argv, LagStudy, base)
    try:
        if args.tables_only:
            cells = read_cells(args.out_dir)
            if not cells:
                raise UsageError(f"out_dir: {args.out_dir} holds no cells.csv; run the study first (without --tables-only)")
            write_tables(study, Path(args.out_dir), cells)
        else:
            cells = run(study, args.out_dir, jobs=args.jobs, overwrite=args.overwrite)
    except UsageError as e:
        raise usage_error(e, LagStudy) from None
    print(f"{len(cells)} cells in {args.out_dir}")
    return cells


if __name__ == "__main__":
    main()
