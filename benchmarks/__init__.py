"""Benchmarks: each ``bench_*.py`` runs alone (``python benchmarks/bench_x.py``); ``python -m benchmarks`` runs
them all and renders the README's benchmark table (:mod:`benchmarks.table`)."""
