"""Regenerate the paper figures: ``python -m figures [NAME ...] [--smoke] [--out DIR]``."""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from . import FIGURES

DEFAULT_OUT = Path(__file__).resolve().parent / "output"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m figures", description=__doc__)
    p.add_argument("names", nargs="*", help=f"figures to make (default: all): {', '.join(FIGURES)}")
    p.add_argument("--smoke", action="store_true", help="quick low-resolution version")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (PNG and PDF)")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in FIGURES]
    if unknown:
        p.error(f"unknown figure(s) {unknown}; choose from {FIGURES}")
    for name in args.names or FIGURES:
        t0 = time.perf_counter()
        mod = importlib.import_module(f"figures.{name}")
        paths = mod.make(smoke=args.smoke, out=args.out)
        print(f"{name}: {time.perf_counter() - t0:.1f}s -> {', '.join(str(x) for x in paths)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
