"""Checkpoints: atomic writes, full state round trip, and SFT runs that resume with identical metrics."""

import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from sims.llm.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from sims.llm.model import GPT, GPTConfig
from sims.llm.sft import SFT_PRESETS, SFTConfig, build_task, load_sft, train_sft
from theory.outputs import UsageError
from _metrics import csv_rows, kill_at_first_checkpoint_then_resume, rows_of

ROOT = Path(__file__).resolve().parents[1]
# a few seconds of smoke SFT: evaluations at steps 6 and 12, checkpoints every 4 steps
CFG = replace(
    SFT_PRESETS["smoke"],
    train_size=200,
    eval_size=16,
    max_steps=12,
    eval_every=6,
    checkpoint_every=4,
    batch_size=32,
    stop_low=1.0,
    stop_high=1.0,
    progress=False,
    num_threads=1,
)


def _model():
    return GPT(GPTConfig.preset("smoke", vocab_size=20, block_size=16), generator=torch.Generator().manual_seed(0))


def test_round_trip_restores_every_state(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randint(3, 20, (2, 8))).sum().backward()
    opt.step()
    g, rng = torch.Generator().manual_seed(5), np.random.default_rng(9)
    torch.rand(3, generator=g)
    rng.random(4)
    ring = [{k: v + i for k, v in model.state_dict().items()} for i in range(3)]
    path = save_checkpoint(
        tmp_path / "c.pt",
        step=7,
        model=model,
        optimizer=opt,
        generators={"g": g},
        numpy_rngs={"np": rng},
        ring=ring,
        config={"a": 1},
        extra={"rows": [{"x": 1.5}]},
    )
    expect_t, expect_np = torch.rand(4, generator=g), rng.random(4)

    model2, g2, rng2 = _model(), torch.Generator(), np.random.default_rng(0)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    ck = load_checkpoint(path, model=model2, optimizer=opt2, generators={"g": g2}, numpy_rngs={"np": rng2})
    assert ck["step"] == 7 and ck["config"] == {"a": 1} and ck["extra"] == {"rows": [{"x": 1.5}]}
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], opt2.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.rand(4, generator=g2), expect_t)
    np.testing.assert_array_equal(rng2.random(4), expect_np)
    assert len(ck["ring"]) == 3 and torch.equal(ck["ring"][2]["wte.weight"], ring[2]["wte.weight"])


def test_a_failed_write_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    model = _model()
    path = save_checkpoint(tmp_path / "c.pt", step=1, model=model)
    before = path.read_bytes()

    def torn_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, step=2, model=model)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_a_checkpoint_gets_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = save_checkpoint(tmp_path / "c.pt", step=1, model=_model())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_a_file_that_is_not_a_checkpoint_is_one_line_naming_the_argument(tmp_path):
    good = save_checkpoint(tmp_path / "c.pt", step=1, model=_model())
    (tmp_path / "torn.pt").write_bytes(good.read_bytes()[:1000])
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    for path, why in [(tmp_path / "torn.pt", "cannot be read"), (tmp_path / "table.csv", "cannot be read"),
                      (tmp_path / "nope.pt", "does not exist"), (tmp_path, "is a folder")]:
        with pytest.raises(UsageError, match=f"^sft: .*{why}.*; pass an SFT checkpoint$") as e:
            read_checkpoint(path, arg="sft", fix="pass an SFT checkpoint")
        assert "\n" not in str(e.value)
    assert read_checkpoint(good)["step"] == 1




@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    task = build_task(CFG)
    res = train_sft(CFG, out_dir=out, task=task)
    assert res.step == CFG.max_steps and res.status == "max_steps"
    return out, task, res


def test_sft_resume_reproduces_metrics_exactly(uninterrupted, tmp_path):
    out_full, task, full = uninterrupted
    first = train_sft(CFG, out_dir=tmp_path, stop_after=8, task=task)
    assert first.status == "interrupted" and first.step == 8
    del first  # resume from the file only: fresh model, optimizer and generator
    second = train_sft(CFG, out_dir=tmp_path, resume=True, task=build_task(CFG))
    assert second.step == CFG.max_steps
    assert csv_rows(tmp_path / "metrics.csv") == csv_rows(out_full / "metrics.csv")
    assert rows_of(second.history) == rows_of(full.history)
    for a, b in zip(full.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)


def test_sft_resume_after_kill_9(uninterrupted, tmp_path):
    """A killed CLI run continues from its last checkpoint with identical metrics."""
    out_full, _, _ = uninterrupted
    args = [
        sys.executable,
        "-m",
        "sims.llm.sft",
        "--preset",
        "smoke",
        "--out-dir",
        str(tmp_path),
        "--train-size",
        "200",
        "--eval-size",
        "16",
        "--max-steps",
        "12",
        "--eval-every",
        "6",
        "--checkpoint-every",
        "4",
        "--batch-size",
        "32",
        "--stop-low",
        "1.0",
        "--stop-high",
        "1.0",
        "--num-threads",
        "1",
        "--no-progress",
    ]
    kill_at_first_checkpoint_then_resume(args, tmp_path, ROOT)
    assert csv_rows(tmp_path / "metrics.csv") == csv_rows(out_full / "metrics.csv")


def test_load_sft_rebuilds_the_trained_model(uninterrupted):
    out_full, task, full = uninterrupted
    model, task2, cfg = load_sft(out_full / "ckpt.pt")
    assert cfg == CFG and [p.prompt for p in task2.eval] == [p.prompt for p in task.eval]
    for a, b in zip(full.model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_refuses_to_extend_max_steps_naming_the_lr_schedule(uninterrupted):
    """max_steps is the horizon of the cosine decay: a longer run is not the same run extended."""
    out_full, task, _ = uninterrupted
    before = {p.name: p.stat().st_mtime_ns for p in out_full.iterdir()}
    with pytest.raises(UsageError, match="max_steps: .*horizon of the cosine learning-rate decay"):
        train_sft(replace(CFG, max_steps=24), out_dir=out_full, resume=True, task=task)
    assert {p.name: p.stat().st_mtime_ns for p in out_full.iterdir()} == before


def test_a_run_is_replaced_only_with_overwrite_and_then_entirely(uninterrupted, tmp_path):
    out_full, task, _ = uninterrupted
    train_sft(replace(CFG, lr=0.01, max_steps=4, eval_every=4), out_dir=tmp_path, task=task)  # a finished run
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["ckpt.pt", "metrics.csv", "summary.json"]
    with pytest.raises(UsageError, match="out_dir: .*--resume.*--overwrite"):
        train_sft(CFG, out_dir=tmp_path, task=task)
    with pytest.raises(UsageError, match="resume, overwrite"):
        train_sft(CFG, out_dir=tmp_path, task=task, resume=True, overwrite=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    res = train_sft(CFG, out_dir=tmp_path, task=task, overwrite=True, stop_after=6)  # killed: no summary yet
    assert res.step == 6 and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "metrics.csv"]
    assert csv_rows(tmp_path / "metrics.csv") == csv_rows(out_full / "metrics.csv")[:6]  # no row of the lr=0.01 run


def test_resume_refuses_a_different_config(uninterrupted, tmp_path):
    out_full, task, _ = uninterrupted
    with pytest.raises(ValueError, match="lr"):
        train_sft(replace(CFG, lr=0.5), out_dir=out_full, resume=True, task=task)


def test_bad_sft_configs_name_the_field():
    with pytest.raises(ValueError, match="eval_ks"):
        SFTConfig(eval_ks=(2, 4))
    with pytest.raises(ValueError, match="stop_low"):
        SFTConfig(stop_low=0.6, stop_high=0.5)
    with pytest.raises(ValueError, match="difficulty"):
        SFTConfig(task="countdown", difficulty="hard")
    with pytest.raises(ValueError, match="batch_size"):
        SFTConfig(batch_size=0)
    with pytest.raises(ValueError, match="device"):
        SFTConfig(device="tpu")
