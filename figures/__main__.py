"""Regenerate the paper figures: ``python -m figures [NAME ...] [--smoke] [--out DIR] [--overwrite]``.

Each figure is written as ``NAME.png`` and ``NAME.pdf``; the same inputs give
the same bytes. Writing a file that does not exist, or that already holds the
same bytes, is always allowed, so ``python -m figures`` regenerates the
committed gallery in ``figures/output/`` and leaves ``git status`` clean. A
file with other bytes (another run's, or an older version of the figure) is
replaced only with ``--overwrite``; otherwise the command stops with one line
naming it. ``--smoke`` writes into ``figures/output-smoke/`` (not in git)
unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from theory.outputs import cli_main

from . import FIGURES, _style

DEFAULT_OUT = _style.OUTPUT
DEFAULT_SMOKE_OUT = _style.SMOKE_OUTPUT


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m figures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME", help=f"figures to make (default: all); one of: {', '.join(FIGURES)}")
    p.add_argument("--smoke", action="store_true", help="quick low-resolution version (default: off)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"output folder (default: {_rel(DEFAULT_OUT)}, or {_rel(DEFAULT_SMOKE_OUT)} with --smoke)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing files whose bytes differ (default: off; refuse and name the file)")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="cache of the sweeps and recomputed runs the figures read (default: $PESSIMISM_RESULTS_DIR, "
                        "else figures/results/)")
    return p


@cli_main
def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in FIGURES]
    if unknown:
        p.error(f"unknown figure(s) {unknown}; choose from {FIGURES}")
    out = args.out if args.out is not None else (DEFAULT_SMOKE_OUT if args.smoke else DEFAULT_OUT)
    for name in args.names or FIGURES:
        t0 = time.perf_counter()
        mod = importlib.import_module(f"figures.{name}")
        paths = mod.make(smoke=args.smoke, out=out, overwrite=args.overwrite, results_dir=args.results_dir)
        print(f"{name}: {time.perf_counter() - t0:.1f}s -> {', '.join(str(x) for x in paths)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
