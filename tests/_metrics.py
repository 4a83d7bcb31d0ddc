"""Shared by the LLM trainer's tests: metric rows compared without their wall-clock columns."""

import csv

#: wall-clock columns, which differ between two runs of the same cell
VOLATILE = {"time_s", "tok_per_s"}


def rows_of(rows):
    """Rows as floats (None where a column is empty), wall-clock columns left out."""
    cols = sorted({k for r in rows for k in r} - VOLATILE)
    return [{k: (None if r.get(k) in ("", None) else float(r[k])) for k in cols} for r in rows]


def csv_rows(path):
    """The rows of a metrics CSV, as :func:`rows_of` gives them."""
    with open(path) as f:
        return rows_of(list(csv.DictReader(f)))
