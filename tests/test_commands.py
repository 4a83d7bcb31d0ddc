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

    # the sweep cache goes to tmp_path too: the test suite writes nothing inside the repository
    run("-m", "figures", "--smoke", "--out", str(tmp_path / "out"), "--results-dir", str(tmp_path / "cache"))
    for name in FIGURES:
        for ext in ("png", "pdf"):
            f = tmp_path / "out" / f"{name}.{ext}"
            assert f.exists() and f.stat().st_size > 1000


def test_figures_rejects_unknown_name():
    res = subprocess.run([sys.executable, "-m", "figures", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and "unknown figure" in res.stderr


def test_benchmark_runs_small_and_agrees():
    out = run("benchmarks/bench_lambert.py", "--n", "2000", "--n-ref", "50", "--repeats", "1").stdout
    res = json.loads(out)
    assert res["max_abs_diff_pi"] <= 1e-10 and res["max_abs_diff_eta"] <= 1e-10


def test_help_and_a_mistake_end_to_end(tmp_path):
    """--help of a command runs nothing; a mistake is one line on stderr, exit status 2."""
    for module in ("theory.symbolic", "sims.llm.rl"):
        res = run("-m", module, "--help", timeout=120)
        assert res.stdout.startswith(f"usage: python -m {module}") and "default" in res.stdout
    (tmp_path / "report.tex").write_text("earlier")
    res = subprocess.run([sys.executable, "-m", "theory.symbolic", "--out", str(tmp_path / "report.tex")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("python -m theory.symbolic: error: --out:") and "--overwrite" in res.stderr
    assert (tmp_path / "report.tex").read_text() == "earlier"


def test_symbolic_prints_the_report_or_writes_it_with_the_umask(tmp_path, monkeypatch, capsys):
    import os
    import stat

    from theory import symbolic

    monkeypatch.setattr(symbolic, "latex_report", lambda: "% report\n")
    assert symbolic.main([]) == "% report\n"
    assert capsys.readouterr().out == "% report\n\n"  # as print(latex_report()) always did
    old = os.umask(0o022)
    try:
        symbolic.main(["--out", str(tmp_path / "r.tex")])
        (tmp_path / "r.tex").write_text("edited")
        symbolic.main(["--out", str(tmp_path / "r.tex"), "--overwrite"])
    finally:
        os.umask(old)
    assert (tmp_path / "r.tex").read_text() == "% report\n"
    assert stat.S_IMODE((tmp_path / "r.tex").stat().st_mode) == 0o644
