"""Benchmark: wall time of ``python -m figures`` (full) and ``--smoke``, from a cold result cache.

Both runs write into a temporary directory and use a temporary result cache
(``PESSIMISM_RESULTS_DIR``), so nothing already written under ``figures/`` is
touched and the sweeps are recomputed. Budgets (issue: figures): full <= 10
minutes, smoke <= 2 minutes on the 2-core development machine.

    python benchmarks/bench_figures.py            # smoke and full
    python benchmarks/bench_figures.py --smoke    # smoke only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str]) -> float:
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, PESSIMISM_RESULTS_DIR=cache)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "figures", *args, "--out", out], cwd=ROOT, env=env, check=True,
                       capture_output=True, text=True)
        return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="time the smoke build only")
    args = ap.parse_args(argv)
    res = {"smoke_s": round(timed(["--smoke"]), 1)}
    if not args.smoke:
        res["full_s"] = round(timed([]), 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
