"""A trainer's run folder (sims.llm.rundir): refusals before anything is written, resumption, atomic checkpoints,
metrics.csv across a resume, and the flags the commands share."""

import csv
import dataclasses
import os
from dataclasses import dataclass

import pytest
import torch

from sims.llm.checkpoint import read_checkpoint
from sims.llm.rundir import (
    SFT_FILES,
    Progress,
    RunDir,
    add_grid_arguments,
    add_run_arguments,
    config_from_args,
    grid_axes,
)
from theory.outputs import CommandParser, OutputExistsError, UsageError

COLUMNS = ["step", "loss", "time_s"]


@dataclass(frozen=True)
class Cfg:
    """A trainer's config in miniature."""

    lr: float = 0.1
    """Learning rate."""
    steps: int = 10
    """Steps."""
    progress: bool = True
    """Progress bar."""

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps: must be >= 1, got {self.steps}")


def _save(run: RunDir, cfg: Cfg, progress: Progress) -> None:
    run.save_checkpoint(step=progress.step, model=torch.nn.Linear(2, 2), config=dataclasses.asdict(cfg),
                        extra=progress.extra())


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _finished_run(folder) -> RunDir:
    """A run of two steps that ended normally: metrics.csv, ckpt.pt, summary.json."""
    run = RunDir(folder)
    run.check()
    progress = Progress()
    run.open(COLUMNS, progress.history, first_step=1)
    for loss in (0.5, 0.25):
        progress.step += 1
        row = {"step": progress.step, "loss": loss}
        progress.record(row, 1.0)
        run.log(row)
    _save(run, Cfg(), progress)
    run.close()
    run.write_summary({"step": progress.step})
    return run


# ----------------------------------------------------------------------------- resumption


def test_resume_continues_the_same_config_up_to_the_ignored_fields(tmp_path):
    _finished_run(tmp_path)
    ckpt = RunDir(tmp_path).resume_checkpoint(Cfg(progress=False), "test", ignore={"progress"})
    assert ckpt["step"] == 2 and [r["loss"] for r in ckpt["extra"]["history"]] == [0.5, 0.25]
    p = Progress()
    p.resume(ckpt)
    assert (p.step, p.elapsed, p.final_eval, len(p.history)) == (2, 2.0, None, 2)


def test_resume_refuses_a_changed_config_naming_the_field(tmp_path):
    _finished_run(tmp_path)
    run = RunDir(tmp_path)
    with pytest.raises(UsageError, match=r"^lr: differs from the checkpoint's config \(0\.1 vs 0\.2\)"):
        run.resume_checkpoint(Cfg(lr=0.2), "test", ignore={"progress"})
    with pytest.raises(UsageError, match="steps: differs .*; a longer run is a new run"):
        run.resume_checkpoint(Cfg(steps=20), "test", ignore=set(), hints={"steps": "a longer run is a new run"})


def test_resume_without_a_checkpoint_starts_afresh_and_refuses_another_commands(tmp_path):
    assert RunDir(tmp_path).resume_checkpoint(Cfg(), "test", ignore=set()) is None

    @dataclass(frozen=True)
    class Other:
        objective: str = "opmd"

    run = RunDir(tmp_path)
    run.save_checkpoint(step=1, model=torch.nn.Linear(2, 2), config=dataclasses.asdict(Other()))
    with pytest.raises(UsageError, match="is a checkpoint of sims.llm.rl, not of test"):
        run.resume_checkpoint(Cfg(), "test", ignore=set())


# ----------------------------------------------------------------------------- refusals and --overwrite


def test_a_finished_run_is_not_overwritten_without_overwrite(tmp_path):
    _finished_run(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(OutputExistsError, match="^out_dir: .*already exists.*--resume.*--overwrite"):
        RunDir(tmp_path).check()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing touched
    RunDir(tmp_path).check(resume=True)  # continuing it is fine
    RunDir(tmp_path).check(overwrite=True)  # so is replacing it, on request


def test_overwrite_removes_the_runs_files_and_nothing_else(tmp_path):
    _finished_run(tmp_path / "sft")  # an RL run's warm start
    (tmp_path / "metrics.csv").write_text("step\n")
    (tmp_path / "README.md").write_text("notes")
    run = RunDir(tmp_path, extra_files=SFT_FILES, extra_folders=("sft",))
    with pytest.raises(OutputExistsError):
        run.check()
    run.check(overwrite=True)
    run.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


def test_tensorboard_events_of_another_run_are_refused(tmp_path):
    pytest.importorskip("tensorboard")
    tb = tmp_path / "tb"
    run = RunDir(tmp_path / "run", tb)
    run.check()
    run.open(COLUMNS, [], first_step=1)
    run.log({"step": 1, "loss": 0.5, "time_s": 1.0})
    run.close()
    with pytest.raises(OutputExistsError, match="^tensorboard_dir: "):
        RunDir(tmp_path / "other", tb).check()
    RunDir(tmp_path / "other", tb).check(overwrite=True)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"resume": True, "overwrite": True}, "^resume, overwrite: pass one of them"),
        ({"stop_after": 0}, "^stop_after: must be >= 1, got 0"),
        pytest.param({"device": "cuda"}, "^device: cuda requested but CUDA is not available",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available")),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, kw, match):
    with pytest.raises(UsageError, match=match):
        RunDir(tmp_path / "run").check(**kw)
    assert not (tmp_path / "run").exists()


def test_without_out_dir_nothing_is_written_and_resume_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="^resume: needs --out-dir"):
        RunDir().check(resume=True)
    with pytest.raises(UsageError, match="^out_dir: .* is a file"):
        (tmp_path / "f").write_text("")
        RunDir(tmp_path / "f").check()
    run = RunDir()
    run.check()
    run.open(COLUMNS, [], first_step=1)
    run.log({"step": 1, "loss": 0.5})
    _save(run, Cfg(), Progress(step=1))
    run.write_summary({})
    run.close()
    assert run.ckpt_path is None and sorted(os.listdir(tmp_path)) == ["f"]


# ----------------------------------------------------------------------------- atomic checkpoints


def test_a_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    run = _finished_run(tmp_path)
    before = run.ckpt_path.read_bytes()

    def torn_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        _save(run, Cfg(), Progress(step=3))
    monkeypatch.undo()
    assert run.ckpt_path.read_bytes() == before  # the old checkpoint, whole
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt", "metrics.csv", "summary.json"]  # no temporary file left
    assert read_checkpoint(run.ckpt_path)["step"] == 2


# ----------------------------------------------------------------------------- metrics.csv across a resume


def test_metrics_after_a_resume_keep_the_earlier_rows_and_drop_a_killed_runs_tail(tmp_path):
    run = RunDir(tmp_path)
    run.check()
    progress = Progress()
    run.open(COLUMNS, progress.history, first_step=1)
    for step in (1, 2, 3):
        row = {"step": step, "loss": 1.0 / step}
        progress.step = step
        progress.record(row, 0.5)
        run.log(row)
        if step == 2:
            _save(run, Cfg(), progress)  # the kill comes after step 3: its row is not in the checkpoint
    run.close()
    assert [r["step"] for r in _rows(tmp_path / "metrics.csv")] == ["1", "2", "3"]

    resumed = RunDir(tmp_path)
    resumed.check(resume=True)
    p = Progress()
    p.resume(resumed.resume_checkpoint(Cfg(), "test", ignore=set()))
    resumed.open(COLUMNS, p.history, first_step=p.step + 1)
    assert [r["step"] for r in _rows(tmp_path / "metrics.csv")] == ["1", "2"]
    for step in (3, 4):
        row = {"step": step, "loss": 0.1 * step}
        p.step = step
        p.record(row, 0.5)
        resumed.log(row)
    resumed.close()
    rows = _rows(tmp_path / "metrics.csv")
    assert list(rows[0]) == COLUMNS
    assert [(r["step"], r["loss"], r["time_s"]) for r in rows] == [
        ("1", "1.0", "0.5"), ("2", "0.5", "1.0"), ("3", "0.30000000000000004", "1.5"), ("4", "0.4", "2.0"),
    ]


def test_progress_records_wall_time_into_the_row():
    p = Progress()
    rows = [{"step": 1}, {"step": 2}]
    p.record(rows[0], 1.5)
    p.record(rows[1], 0.25)
    assert p.elapsed == 1.75 and [r["time_s"] for r in p.history] == [1.5, 1.75]
    assert p.extra() == {"history": p.history, "elapsed_s": 1.75, "final_eval": None}


# ----------------------------------------------------------------------------- flags


def test_config_from_args_names_the_flag_of_a_bad_value(capsys):
    p = CommandParser(prog="test")
    p.add_argument("--steps", type=int, default=None)
    args, cfg = config_from_args(p, ["--steps", "3"], Cfg, Cfg(lr=0.5))
    assert cfg == Cfg(lr=0.5, steps=3) and args.steps == 3
    with pytest.raises(SystemExit) as e:
        config_from_args(p, ["--steps", "0"], Cfg, Cfg())
    assert e.value.code == 2 and "--steps: must be >= 1, got 0" in capsys.readouterr().err


def test_run_and_grid_flags():
    p = CommandParser(prog="test")
    add_run_arguments(p, ", --steps included", "metrics.csv")
    args = p.parse_args(["--resume", "--stop-after", "3"])
    assert (args.resume, args.overwrite, args.stop_after) == (True, False, 3)
    assert "the config must match, --steps included; default: off" in " ".join(p.format_help().split())
    g = CommandParser(prog="test")
    add_grid_arguments(g, "a.csv", "probe")
    args = g.parse_args(["--out-dir", "x", "--no-progress"])
    assert (str(args.out_dir), args.overwrite, args.progress) == ("x", False, False)
    assert "without it a probe with other settings" in " ".join(g.format_help().split())


def test_grid_axes_become_tuples_and_may_not_be_empty():
    @dataclass(frozen=True)
    class Grid:
        seeds: tuple = (0,)
        lags: tuple = (0,)

        def __post_init__(self):
            grid_axes(self, ("seeds", "lags"))

    assert Grid(seeds=[1, 2]).seeds == (1, 2)
    with pytest.raises(ValueError, match="^lags: need at least one$"):
        Grid(lags=[])
