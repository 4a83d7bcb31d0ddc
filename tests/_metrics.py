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


def kill_at_first_checkpoint_then_resume(args, out_dir, cwd):
    """Run the command ``args``, SIGKILL it once ``out_dir/ckpt.pt`` exists, then rerun it with ``--resume``."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (out_dir / "ckpt.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.kill()  # SIGKILL
    assert proc.wait() == -signal.SIGKILL and (out_dir / "ckpt.pt").exists()
    subprocess.run(args + ["--resume"], cwd=cwd, check=True, capture_output=True, timeout=120)
