"""A trainer's output folder: metrics.csv, TensorBoard scalars, an atomic ckpt.pt, resumption, summary.json.

:class:`RunDir` is what :func:`sims.llm.sft.train_sft` and :func:`sims.llm.rl.train_rl`
share about their ``out_dir``; the loop of a trainer only says what to record:

* :meth:`RunDir.check` refuses, before anything is trained or written, a folder
  that holds another run's files (``RUN_FILES``, the trainer's extra files, a
  ``tensorboard_dir`` with event files) unless ``resume`` or ``overwrite``;
* :meth:`RunDir.resume_checkpoint` reads ``ckpt.pt`` and refuses a checkpoint
  of another command or one whose config differs (outside the fields that may
  change on resume);
* :meth:`RunDir.clear` removes the earlier run's files for ``--overwrite``, and
  nothing else;
* :meth:`RunDir.open` rewrites ``metrics.csv`` with the rows a checkpoint holds
  (a killed run's rows past it are dropped) and opens the TensorBoard log
  (``sims.llm.tblog``: events past the checkpoint are purged);
  :meth:`RunDir.log` appends one row to both;
* :meth:`RunDir.save_checkpoint` writes ``ckpt.pt`` atomically
  (:func:`sims.llm.checkpoint.save_checkpoint`), :meth:`RunDir.write_summary`
  ``summary.json`` (:func:`theory.outputs.atomic_write_text`).

Without ``out_dir`` nothing is written (and, without ``tensorboard_dir``, nothing
logged): every method is then a no-op, so a trainer calls them unconditionally.
:class:`Progress` is the run's record that the checkpoint carries (step, rows,
wall time, last evaluation).

The commands share their flags through here too: :func:`config_from_args` (the
config from the flags, a one-line error naming a bad one), :func:`add_run_arguments`
(a trainer's ``--resume``, ``--overwrite``, ``--stop-after``) and, for grids of
runs (``sims.llm.probe``, ``sims.llm.confirm``), :func:`add_grid_arguments`
(``--out-dir``, ``--overwrite``, ``--progress``), :func:`grid_axes` (the check
of a grid's axes) and ``SFT_FILES`` (a warm start trained into ``out_dir/sft``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from theory.outputs import UsageError, atomic_write_text, guard_outputs, remove_outputs, require_folder

from ._cli import dataclass_from_args, flag_message
from .checkpoint import config_differences, read_checkpoint, save_checkpoint
from .tblog import ScalarLog, event_files, require_tensorboard

__all__ = [
    "RunDir",
    "Progress",
    "RUN_FILES",
    "OUTPUT_NAMES",
    "SFT_FILES",
    "prepare_out_dir",
    "read_resume_checkpoint",
    "check_resume_config",
    "clear_run",
    "write_metrics",
    "append_metrics",
    "config_from_args",
    "add_run_arguments",
    "add_grid_arguments",
    "grid_axes",
]

RUN_FILES = ("metrics.csv", "ckpt.pt", "summary.json")
"""The files a run writes into its ``out_dir`` (RL adds its SFT warm start in ``sft/``)."""
OUTPUT_NAMES = RUN_FILES + ("probe.json", "probe.csv", "trajectory.csv", "sweep.json", "results.csv", "summary.csv",
                           "tables.md")
"""Names of the files the ``sims.llm`` commands write. A grid's folder that holds one of them without the grid's
own record (``probe.json``, ``sweep.json``) holds another command's results; other files (a README) are left alone."""
SFT_FILES = tuple(f"sft/{n}" for n in RUN_FILES)
"""The files of an SFT warm start trained into ``out_dir/sft`` (by an RL run, a probe or a grid)."""


# ----------------------------------------------------------------------------- the pieces


def write_metrics(path: Path, columns: list[str], rows: list[dict]) -> None:
    """``metrics.csv`` with ``rows``, atomically (a resumed run rewrites it from the checkpoint's rows)."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, columns)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def append_metrics(path: Path, columns: list[str], row: dict) -> None:
    """One more row of ``metrics.csv`` (a kill may tear it; ``--resume`` rewrites the file from the checkpoint)."""
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, columns).writerow(row)


def prepare_out_dir(
    out_dir, *, resume: bool, overwrite: bool, tensorboard_dir=None, extra_files=(), extra_folders=()
) -> Path | None:
    """Check a run's output folder before anything is trained or written.

    Refuses (:class:`theory.outputs.UsageError`) a folder that is a file, ``resume``
    without ``out_dir``, ``resume`` with ``overwrite``, a folder holding another
    run's files (``RUN_FILES``, ``extra_files``) and a ``tensorboard_dir`` holding
    event files, unless ``resume`` or ``overwrite``. Returns ``out_dir``
    as a Path (or None). Nothing is removed here: see :func:`clear_run`.
    """
    out_dir = require_folder(out_dir, "out_dir")
    require_folder(tensorboard_dir, "tensorboard_dir")
    if resume and overwrite:
        raise UsageError("resume, overwrite: pass one of them (--resume continues the run in --out-dir, --overwrite replaces it)")
    if out_dir is None and resume:
        raise UsageError("resume: needs --out-dir, the folder of the run to continue")
    if out_dir is None and tensorboard_dir is None and overwrite:
        raise UsageError("overwrite: needs --out-dir, the folder of the run to replace")
    if out_dir is not None:
        files = [out_dir / n for n in (*RUN_FILES, *extra_files)] + [out_dir / d for d in extra_folders]
        guard_outputs(files, overwrite=overwrite, resume=resume, arg="out_dir")
    # events of an earlier run would mix with this run's in TensorBoard
    guard_outputs(event_files(tensorboard_dir), overwrite=overwrite, resume=resume if out_dir is not None else None,
                  arg="tensorboard_dir")
    return out_dir


def clear_run(out_dir: Path | None, tensorboard_dir=None, extra_files=(), extra_folders=()) -> None:
    """``--overwrite``: remove the earlier run's files (and its TensorBoard events), nothing else."""
    if out_dir is not None:
        remove_outputs([out_dir / n for n in (*RUN_FILES, *extra_files)], [out_dir / d for d in extra_folders])
    remove_outputs(event_files(tensorboard_dir))


def read_resume_checkpoint(path: Path, cls, command: str) -> dict | None:
    """The run's ``ckpt.pt`` to continue (None when there is none yet), checked to be one of ``command``'s."""
    if not path.exists():
        return None
    fix = "move it away to start afresh, or pass --overwrite to replace the run"
    ckpt = read_checkpoint(path, arg="resume", fix=fix)
    fields = {f.name for f in dataclasses.fields(cls)}
    saved = ckpt.get("config") or {}
    if not saved or set(saved) - fields:
        other = "sims.llm.rl" if "objective" in saved else "sims.llm.sft" if "task" in saved else "another command"
        raise UsageError(
            f"resume: {path} is a checkpoint of {other}, not of {command}; pass the folder of a {command} run "
            "as --out-dir, or another folder"
        )
    return ckpt


def check_resume_config(ckpt: dict, cfg, ignore: set, path: Path, hints: dict | None = None) -> None:
    """UsageError naming the first field of ``cfg`` that differs from the checkpoint's config."""
    now = dataclasses.asdict(cfg)
    defaults = dataclasses.asdict(type(cfg)())
    diff = config_differences(ckpt["config"], now, ignore=ignore, defaults=defaults)
    if diff:
        k = diff[0]
        saved = ckpt["config"].get(k, defaults.get(k))
        why = (hints or {}).get(k, "pass the run's setting, or --overwrite to start over")
        raise UsageError(f"{k}: differs from the checkpoint's config ({saved!r} vs {now[k]!r}) in {path}; {why}")


# ----------------------------------------------------------------------------- one run's folder


class RunDir:
    """The output folder of one trainer run (see the module docstring); a no-op without ``out_dir``.

    Parameters
    ----------
    out_dir : path, optional
        Where ``metrics.csv``, ``ckpt.pt`` and ``summary.json`` go (None: nowhere);
        :meth:`check` it before anything else.
    tensorboard_dir : path, optional
        Where the rows also go as TensorBoard scalars (None: not logged).
    extra_files, extra_folders : tuple of str
        Files and folders of the run besides ``RUN_FILES`` (relative to
        ``out_dir``: an RL run's ``sft/`` warm start), refused and removed with them.
    """

    def __init__(self, out_dir=None, tensorboard_dir=None, *, extra_files=(), extra_folders=()):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.tensorboard_dir = tensorboard_dir
        self.extra_files, self.extra_folders = tuple(extra_files), tuple(extra_folders)
        self.columns: list[str] | None = None
        self._tb: ScalarLog | None = None

    @property
    def ckpt_path(self) -> Path | None:
        """``out_dir/ckpt.pt`` (None without ``out_dir``)."""
        return self.out_dir / "ckpt.pt" if self.out_dir is not None else None

    def check(self, *, resume: bool = False, overwrite: bool = False, stop_after=None, device: str = "cpu") -> None:
        """The checks a trainer makes before reading a checkpoint, in this order.

        UsageError for a ``stop_after`` below 1, a bad folder, ``resume`` with
        ``overwrite`` or another run's files (:func:`prepare_out_dir`), a CUDA
        ``device`` without CUDA; ImportError (naming the extra) for a
        ``tensorboard_dir`` without TensorBoard installed.
        """
        if stop_after is not None and stop_after < 1:
            raise UsageError(f"stop_after: must be >= 1, got {stop_after}")
        prepare_out_dir(self.out_dir, resume=resume, overwrite=overwrite, tensorboard_dir=self.tensorboard_dir,
                        extra_files=self.extra_files, extra_folders=self.extra_folders)
        if self.tensorboard_dir is not None:
            require_tensorboard()  # fail before any training
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError(f"device: {device} requested but CUDA is not available; pass --device cpu")

    def resume_checkpoint(self, cfg, command: str, ignore: set, hints: dict | None = None) -> dict | None:
        """The ``ckpt.pt`` to continue (None when there is none), refused when not ``command``'s or its config
        differs from ``cfg`` outside ``ignore`` (``hints``: field -> what to do instead)."""
        ckpt = read_resume_checkpoint(self.ckpt_path, type(cfg), command)
        if ckpt is not None:
            check_resume_config(ckpt, cfg, ignore, self.ckpt_path, hints)
        return ckpt

    def clear(self) -> None:
        """``--overwrite``: remove the earlier run's files and TensorBoard events (:func:`clear_run`)."""
        clear_run(self.out_dir, self.tensorboard_dir, self.extra_files, self.extra_folders)

    def open(self, columns: list[str], rows: list[dict], first_step: int) -> None:
        """Start recording: ``metrics.csv`` rewritten with ``rows`` (the checkpoint's; rows after it, a killed
        run's tail, are dropped) and the TensorBoard log opened at ``first_step`` (later events purged)."""
        self.columns = list(columns)
        if self.out_dir is not None:
            write_metrics(self.out_dir / "metrics.csv", self.columns, rows)
        self._tb = ScalarLog(self.tensorboard_dir, first_step=first_step)

    def log(self, row: dict) -> None:
        """One row: a TensorBoard scalar per numeric column, one more line of ``metrics.csv``."""
        self._tb.write(row)
        if self.out_dir is not None:
            append_metrics(self.out_dir / "metrics.csv", self.columns, row)

    def save_checkpoint(self, **state) -> None:
        """:func:`sims.llm.checkpoint.save_checkpoint` of ``state`` to ``ckpt.pt``, atomically (nothing without ``out_dir``)."""
        if self.out_dir is not None:
            save_checkpoint(self.ckpt_path, **state)

    def close(self) -> None:
        """Flush and close the TensorBoard log."""
        if self._tb is not None:
            self._tb.close()

    def write_summary(self, data: dict) -> None:
        """``summary.json``, atomically (nothing without ``out_dir``)."""
        if self.out_dir is not None:
            atomic_write_text(self.out_dir / "summary.json", json.dumps(data, indent=2))


@dataclass
class Progress:
    """Where a trainer's run stands: what its ``ckpt.pt`` holds besides the model, optimizer and generator states."""

    step: int = 0
    """Steps done."""
    history: list = field(default_factory=list)
    """The rows of metrics.csv so far."""
    elapsed: float = 0.0
    """Wall-clock seconds of the run (resumed runs add up)."""
    final_eval: dict | None = None
    """The last evaluation (None if none ran)."""

    def resume(self, ckpt: dict) -> None:
        """Continue from the step and ``extra`` of a checkpoint that :meth:`extra` wrote."""
        extra = ckpt["extra"]
        self.step, self.history = ckpt["step"], list(extra["history"])
        self.elapsed, self.final_eval = extra["elapsed_s"], extra["final_eval"]

    def extra(self) -> dict:
        """The checkpoint's ``extra``: ``history``, ``elapsed_s``, ``final_eval``."""
        return {"history": self.history, "elapsed_s": self.elapsed, "final_eval": self.final_eval}

    def record(self, row: dict, seconds: float) -> None:
        """Add a step's ``row`` to the history; its ``seconds`` of wall time go to ``elapsed`` and ``row['time_s']``."""
        self.elapsed += seconds
        row["time_s"] = self.elapsed
        self.history.append(row)


# ----------------------------------------------------------------------------- commands


def config_from_args(parser: argparse.ArgumentParser, argv, cls, base):
    """Parse ``argv``; return the arguments and ``base`` with every field given as a flag replaced.

    A config that refuses the values is a one-line parser error (exit 2) naming the
    flag (:func:`sims.llm._cli.flag_message`).
    """
    args = parser.parse_args(argv)
    fields = [f.name for f in dataclasses.fields(cls)]
    try:
        return args, dataclass_from_args(cls, args, base)
    except ValueError as e:
        parser.error(flag_message(e, fields))


# ----------------------------------------------------------------------------- grids of runs


def add_run_arguments(parser: argparse.ArgumentParser, resume: str, files: str) -> None:
    """A trainer's ``--resume``, ``--overwrite`` and ``--stop-after`` flags.

    ``resume``: what the config may not change, as the help says it (after "the
    config must match"); ``files``: what ``--overwrite`` removes.
    """
    parser.add_argument("--resume", action="store_true",
                        help=f"continue the run in OUT_DIR from its ckpt.pt (the config must match{resume}; default: off)")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"remove the run already in OUT_DIR ({files}) and start over (default: off; without it "
                        "such a folder is refused)")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="end after this many steps, as a kill would (default: none)")


def add_grid_arguments(parser: argparse.ArgumentParser, files: str, what: str) -> None:
    """The ``--out-dir``, ``--overwrite`` and ``--progress`` flags of a grid that grows in place.

    ``files``: the files it writes, as the help lists them; ``what``: what the
    folder holds (``grid``, ``probe``).
    """
    parser.add_argument("--out-dir", type=Path, required=True,
                        help=f"write {files} here; the cells of an earlier {what} with the same settings are kept "
                        "(required)")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"remove the {what} already in OUT_DIR (its files and sft/) and start over (default: off; "
                        f"without it a {what} with other settings, or another command's results, is refused)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar over the cells on stderr (default: when stderr is a terminal)")


def grid_axes(cfg, names) -> None:
    """Set each field of the frozen dataclass ``cfg`` named in ``names`` to a tuple; ValueError naming an empty one."""
    for name in names:
        object.__setattr__(cfg, name, tuple(getattr(cfg, name)))
        if not getattr(cfg, name):
            raise ValueError(f"{name}: need at least one")
