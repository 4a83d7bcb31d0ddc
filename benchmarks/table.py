"""The README's benchmark table, generated from what the benchmarks print (``python -m benchmarks``).

Runs every benchmark script of this folder in its own subprocess (one thread
for those that time a ratio), collects the JSON each prints, and writes
``benchmarks/results.json``: the raw numbers of each benchmark with its command,
date, wall time and the machine's load average before and after it, plus the
machine (CPU model, cores, library versions). The README's block between
``<!-- generated: benchmarks -->`` and ``<!-- end generated: benchmarks -->`` is
rendered from that file alone, so it cannot drift from the numbers:

    python -m benchmarks --table              # run all, write results.json and the README block
    python -m benchmarks --table --only lambert   # rerun one, keep the others' numbers
    python -m benchmarks --table --from-json  # re-render the README block, run nothing
    python -m benchmarks --check              # exit 1 when the README block is stale (runs nothing)
    python -m benchmarks --quick              # small sizes, to try; writes results.quick.json

``tests/test_benchmark_table.py`` runs ``--check``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.rows import BENCHMARKS, Benchmark, render_table
from theory.outputs import CommandParser, UsageError, atomic_write_text, cli_main
from theory.tables import replace_block

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"
QUICK_RESULTS = ROOT / "benchmarks" / "results.quick.json"
BLOCK = "benchmarks"
#: thread caps for the benchmarks that time a ratio (numpy/scipy and torch read these at start-up)
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def machine() -> dict:
    """CPU model, core count and the versions the numbers depend on."""
    import numpy
    import scipy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:  # the commit measured (none outside a git checkout)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip() or None
    except OSError:
        commit = None
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(), numpy=numpy.__version__,
                scipy=scipy.__version__, torch=torch.__version__, commit=commit)


def _last_json(stdout: str):
    """The JSON a benchmark printed: all of stdout, else its last line (when text lines come first)."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        return json.loads(stdout.strip().splitlines()[-1])


def run_one(bench: Benchmark, quick: bool) -> dict:
    """Run one benchmark script in a subprocess; its entry of results.json (numbers, command, date, load)."""
    stamp = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 threads=1 if bench.one_thread else os.cpu_count(), quick=quick)
    if bench.needs and not _importable(bench.needs):
        return dict(stamp, status=f"skipped: {bench.needs} is not installed (pip install -e '.[{bench.needs}]')")
    args = list(bench.quick if quick else bench.full)
    stamp["command"] = " ".join(["python", f"benchmarks/{bench.script}", *args])
    with tempfile.TemporaryDirectory() as tmp:
        out_file = Path(tmp) / "out.json"
        if bench.json_file:
            args += ["--json", str(out_file)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        if bench.one_thread:
            env.update(ONE_THREAD)
        load_before, t0 = os.getloadavg(), time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / bench.script), *args], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        stamp.update(wall_s=round(time.perf_counter() - t0, 1), load_avg_before=[round(x, 2) for x in load_before],
                     load_avg_after=[round(x, 2) for x in os.getloadavg()])
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            return dict(stamp, status=f"failed (exit {proc.returncode}): {tail}")
        result = json.loads(out_file.read_text()) if bench.json_file else _last_json(proc.stdout)
    return dict(stamp, status="ok", result=result)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def select(only) -> list[Benchmark]:
    """The benchmarks named by ``--only`` (a row's name, or a script's name with or without ``bench_``)."""
    if not only:
        return list(BENCHMARKS.values())
    chosen = [b for b in BENCHMARKS.values()
              if any(n in (b.name, b.script[:-3], b.script[len("bench_"):-3]) for n in only)]
    known = {n for b in BENCHMARKS.values() for n in (b.name, b.script[len("bench_"):-3])}
    bad = sorted(set(only) - known - {f"bench_{n}" for n in known})
    if bad:
        raise UsageError(f"--only: unknown benchmark {', '.join(bad)}; choose from {', '.join(sorted(known))}")
    return chosen


def load_results(path: Path) -> dict:
    """The saved results, or a clear error naming the command that writes them."""
    if not path.is_file():
        raise UsageError(f"{path}: no saved results; run python -m benchmarks (without --from-json) first")
    return json.loads(path.read_text())


def run_all(benches, quick: bool, path: Path) -> dict:
    """Run ``benches``, merged into the results saved at ``path`` (others kept when measured on this machine)."""
    here = machine()
    old = json.loads(path.read_text()) if path.is_file() else {}
    kept = old.get("benchmarks", {})
    if kept and {k: old["machine"].get(k) for k in ("cpu", "cores")} != {k: here[k] for k in ("cpu", "cores")}:
        if len(benches) < len(BENCHMARKS):
            raise UsageError(f"{path} was measured on {old['machine']['cpu']} ({old['machine']['cores']} cores), "
                             f"this is {here['cpu']} ({here['cores']} cores): run every benchmark (drop --only)")
        kept = {}
    results = dict(machine=here, benchmarks=dict(kept))
    for bench in benches:
        print(f"{bench.name}: {' '.join(bench.quick if quick else bench.full) or '(defaults)'} ...",
              file=sys.stderr, flush=True)
        entry = run_one(bench, quick)
        print(f"  {entry['status']} ({entry.get('wall_s', 0)} s)", file=sys.stderr, flush=True)
        results["benchmarks"][bench.name] = entry
        atomic_write_text(path, json.dumps(results, indent=1) + "\n")  # after each: a long run keeps what it has
    return results


def readme_block(results: dict) -> str:
    """The README's generated block: the table and its caption, from the saved results alone."""
    return render_table(results)


def stale(readme: Path, results: dict) -> tuple[str, str]:
    """(the README's text, the text with the benchmark block rendered from ``results``)."""
    if not readme.is_file():
        raise UsageError(f"--readme {readme}: no such file")
    old = readme.read_text()
    return old, replace_block(old, BLOCK, readme_block(results), str(readme))


@cli_main
def main(argv=None) -> int:
    """Run the benchmarks, save their numbers, and render (or check) the README's benchmark table."""
    p = CommandParser(prog="python -m benchmarks", description=main.__doc__)
    p.add_argument("--table", action="store_true", help="also rewrite the README's generated benchmark block")
    p.add_argument("--from-json", action="store_true", help="run nothing: render from the saved results")
    p.add_argument("--check", action="store_true", help="run nothing: exit 1 when the README block is stale")
    p.add_argument("--quick", action="store_true", help="small sizes, to try (saved to results.quick.json)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (others keep their numbers)")
    p.add_argument("--results", type=Path, default=None, help="results file (default: benchmarks/results.json)")
    p.add_argument("--readme", type=Path, default=None, help="file with the generated block (default: README.md)")
    args = p.parse_args(argv)
    path = args.results or (QUICK_RESULTS if args.quick else RESULTS)
    if args.quick and args.table and args.readme is None:
        raise UsageError("--quick --table: quick numbers do not go into the README; give --readme PATH for a copy")
    readme = args.readme or ROOT / "README.md"
    benches = select(args.only)
    if args.check or args.from_json:
        results = load_results(path)
    else:
        results = run_all(benches, args.quick, path)
        print(f"wrote {path}", file=sys.stderr)
    if not (args.check or args.table):
        print(readme_block(results))
        return _failed(results)
    old, new = stale(readme, results)
    if args.check:
        if old != new:
            print(f"stale: the benchmark block of {readme} (run python -m benchmarks --table --from-json)",
                  file=sys.stderr)
            return 1
        print(f"the benchmark block of {readme} is up to date", file=sys.stderr)
        return 0
    if old != new:
        atomic_write_text(readme, new)
    print(f"wrote the benchmark block of {readme}", file=sys.stderr)
    return _failed(results)


def _failed(results: dict) -> int:
    """Exit status: 1 when a benchmark failed (its row says how), else 0."""
    failed = [n for n, e in results["benchmarks"].items() if e["status"].startswith("failed")]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0
