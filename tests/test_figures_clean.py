"""Figures are reproducible, never silently replace another run's files, and tests write only into tmp_path.

``python -m figures`` regenerates the committed gallery; run twice it must
give the same bytes (no dates or version strings in the PNG and PDF), and a
file with other bytes is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import importlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

import figures.__main__ as cli
from figures import FIGURES, _style

ROOT = Path(__file__).resolve().parents[1]
#: Cheap in its full (gallery) version: about 1 s to compute and render.
CHEAP = "fig01_lambert_tilt"


@pytest.fixture(autouse=True)
def _results_in_tmp(tmp_path, monkeypatch):
    """Any sweep a figure recomputes is cached under tmp_path, not in figures/results/."""
    monkeypatch.setenv("PESSIMISM_RESULTS_DIR", str(tmp_path / "results-cache"))


def _figures(*args, env=None):
    return subprocess.run([sys.executable, "-m", "figures", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The full version of one figure made by two separate processes (other hash seed, SOURCE_DATE_EPOCH set)."""
    base = tmp_path_factory.mktemp("figs")
    outs = []
    for i, extra in enumerate(({}, {"SOURCE_DATE_EPOCH": "1234567890", "PYTHONHASHSEED": "7"})):
        out = base / f"run{i}"
        env = {k: v for k, v in os.environ.items() if k not in ("SOURCE_DATE_EPOCH", "PYTHONHASHSEED")}
        env.update(extra, PESSIMISM_RESULTS_DIR=str(base / "cache"))
        res = _figures(CHEAP, "--out", str(out), env=env)
        assert res.returncode == 0, res.stderr
        outs.append(out)
    return outs


def test_figure_made_twice_is_byte_identical(two_runs):
    a, b = two_runs
    for ext in _style.FORMATS:
        fa, fb = a / f"{CHEAP}.{ext}", b / f"{CHEAP}.{ext}"
        assert fa.stat().st_size > 1000
        assert fa.read_bytes() == fb.read_bytes(), f"{ext} differs between two runs"


def _png_text_keys(data: bytes) -> list[bytes]:
    """Keys of the tEXt / iTXt / zTXt chunks of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    keys, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        if kind in (b"tEXt", b"iTXt", b"zTXt"):
            keys.append(body.split(b"\0", 1)[0])
        i += 12 + n
    return keys


def test_files_carry_no_date_or_version(two_runs):
    pdf = (two_runs[0] / f"{CHEAP}.pdf").read_bytes()
    png = (two_runs[0] / f"{CHEAP}.png").read_bytes()
    assert pdf.startswith(b"%PDF")
    for key in (b"/CreationDate", b"/ModDate", b"/Producer", b"/Creator"):
        assert key not in pdf
    assert b"Software" not in _png_text_keys(png)
    version = matplotlib.__version__.encode()
    assert version not in pdf and version not in png


def test_rewriting_identical_files_is_allowed_and_leaves_them_alone(two_runs, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_runs[0], out)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    assert cli.main([CHEAP, "--out", str(out)]) == 0  # in-process: the same bytes as the two subprocesses
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before


def test_other_bytes_are_replaced_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main([CHEAP, "--smoke", "--out", str(out)]) == 0
    png, pdf = out / f"{CHEAP}.png", out / f"{CHEAP}.pdf"
    good_png, good_pdf = png.read_bytes(), pdf.read_bytes()
    png.write_bytes(b"another run's figure")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main([CHEAP, "--smoke", "--out", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(png) in err and "--overwrite" in err
    assert png.read_bytes() == b"another run's figure" and pdf.read_bytes() == good_pdf  # nothing written
    assert not list(out.glob(".*.tmp"))
    assert cli.main([CHEAP, "--smoke", "--out", str(out), "--overwrite"]) == 0
    assert png.read_bytes() == good_png and pdf.read_bytes() == good_pdf


def test_smoke_goes_to_an_ignored_folder_not_the_gallery(monkeypatch):
    calls = []
    mod = importlib.import_module(f"figures.{CHEAP}")
    monkeypatch.setattr(mod, "make", lambda **kw: calls.append(kw) or [])
    assert cli.main([CHEAP, "--smoke"]) == 0
    assert cli.main([CHEAP]) == 0
    assert [c["out"] for c in calls] == [cli.DEFAULT_SMOKE_OUT, cli.DEFAULT_OUT]
    assert calls[0]["smoke"] and not calls[1]["smoke"] and not calls[0]["overwrite"]
    assert cli.DEFAULT_OUT == ROOT / "figures" / "output" and cli.DEFAULT_SMOKE_OUT != cli.DEFAULT_OUT
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    probe = cli.DEFAULT_SMOKE_OUT / f"{CHEAP}.png"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=ROOT)
    assert ignored.returncode == 0, f"{probe.relative_to(ROOT)} is not git-ignored"


def test_help_lists_defaults_and_choices(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in FIGURES:
        assert name in text
    for word in ("--overwrite", "--smoke", "--results-dir", "output-smoke", "figures/output", "PESSIMISM_RESULTS_DIR"):
        assert word in text


def test_sweep_cache_goes_to_results_dir(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert cli.main(["fig05_stability", "--smoke", "--out", str(out), "--results-dir", str(cache)]) == 0
    assert sorted(p.name for p in cache.iterdir()) == ["fig05_stability_smoke.json", "fig05_stability_smoke.npz"]
    assert sorted(p.name for p in out.iterdir()) == ["fig05_stability.pdf", "fig05_stability.png"]
