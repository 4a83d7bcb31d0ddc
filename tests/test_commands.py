"""Smoke tests: every command the README and the docs name runs and writes what it says."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=True)


def test_figures_smoke_writes_png_and_pdf(tmp_path):
    from figures import FIGURES

    run("-m", "figures", "--smoke", "--out", str(tmp_path))
    for name in FIGURES:
        for ext in ("png", "pdf"):
            f = tmp_path / f"{name}.{ext}"
            assert f.exists() and f.stat().st_size > 1000


def test_figures_rejects_unknown_name():
    res = subprocess.run([sys.executable, "-m", "figures", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and "unknown figure" in res.stderr


def test_benchmark_runs_small_and_agrees():
    out = run("benchmarks/bench_lambert.py", "--n", "2000", "--n-ref", "50", "--repeats", "1").stdout
    res = json.loads(out)
    assert res["max_abs_diff_pi"] <= 1e-10 and res["max_abs_diff_eta"] <= 1e-10
