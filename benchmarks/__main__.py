"""``python -m benchmarks [--table] [--from-json] [--check] [--quick] [--only NAME ...]`` (see benchmarks.table)."""

from benchmarks.table import main

if __name__ == "__main__":
    raise SystemExit(main())
