"""Timing shared by the benchmark scripts (run as ``python benchmarks/bench_*.py``, so this folder is on the path)."""

import time


def best_time(fn, repeats: int):
    """(fastest wall time in seconds of ``repeats`` calls of ``fn()``, the last call's return value)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out
