"""Smoke tests of the LLM trainer's commands: every --help, the SFT CLI and the benchmark."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sims.llm import confirm, probe, rl, smollm2_demo
from sims.llm.sft import main as sft_main

ROOT = Path(__file__).resolve().parents[1]


def test_sft_help_shows_field_docstrings(capsys):
    with pytest.raises(SystemExit) as e:
        sft_main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "--eval-samples" in out and "Sampled completions per held-out problem" in out
    assert "(default: 0.15)" in out


@pytest.mark.parametrize(
    "main, wants",
    [
        (rl.main, ["--objective", "(default: 'opmd'; choices: pg, ppo", "--device", "(default: 'cpu')", "--overwrite",
                   "--resume", "choices: default, lag, lag_v1, smoke", "A stopping rule"]),
        (sft_main, ["--task", "choices: basic_arithmetic, chain_sum", "--model", "(default: 'default'", "--overwrite",
                    "--resume cannot change it", "chain_sum: easy, hard, medium, tiny"]),
        (probe.main, ["--objectives", "(default: ('opmd_above'", "--overwrite", "--progress", "(default: 400)",
                      "oapl, opmd, opmd_loo, opmd_lme, shifted_regression, opmd_above"]),
        (confirm.main, ["--objectives", "choices: pg, ppo", "(default: 30)", "--overwrite", "--progress",
                        "--rl-preset", "(default: 'smoke'"]),
        (smollm2_demo.main, ["--objective", "(default: 'shifted_regression'", "(default: 4)", "(default: 32)",
                             'pip install torch==2.13.0 -e ".[smollm2]"']),
    ],
    ids=["rl", "sft", "probe", "confirm", "smollm2_demo"],
)
def test_every_command_help_lists_defaults_and_choices(capsys, main, wants):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # help wraps lines
    assert e.value.code == 0
    for want in wants:
        assert want in out, want


def test_sft_cli_rejects_a_bad_config_naming_the_field(capsys):
    with pytest.raises(SystemExit) as e:
        sft_main(["--preset", "smoke", "--stop-low", "0.9"])
    assert e.value.code != 0 and "stop_low" in capsys.readouterr().err


def test_benchmark_smoke_reports_every_number():
    res = subprocess.run(
        [sys.executable, "benchmarks/bench_llm.py", "--smoke", "--threads", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    res = json.loads(res.stdout)
    assert res["preset"] == "smoke" and res["params"] <= 1_000_000
    for v in (
        res["peak_gflops"],
        res["train"]["tok_per_s"],
        res["train"]["mfu"],
        res["sample"]["tok_per_s"],
        res["peak_rss_gb"],
        res["rl_step"]["plain_tok_per_s"],
        res["rl_step"]["rl_tok_per_s"],
        res["rl_step"]["rl_seq_tok_per_s"],
    ):
        assert v > 0
    rl = res["rl_step"]
    assert rl["rl_over_train"] == pytest.approx(rl["rl_tok_per_s"] / rl["plain_tok_per_s"])  # one round in smoke
    assert rl["rl_seq_tok_per_s"] > rl["rl_tok_per_s"]  # prompts count too
    assert set(res["targets"]) == {"mfu>=0.5", "sample>=train", "rss<=4GB", "rl>=0.5x_train"}
