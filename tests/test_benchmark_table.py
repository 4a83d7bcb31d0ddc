"""The README's benchmark table is what benchmarks/results.json renders (python -m benchmarks --check), and the
runner saves, merges and renders what the benchmark scripts print."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def table(monkeypatch):
    """``benchmarks.table`` (the folder is not an installed package: it is imported from the checkout)."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import table

    return table


@pytest.fixture
def readme_copy(tmp_path):
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    return tmp_path / "README.md"


def test_committed_table_is_what_the_saved_numbers_render(table, capsys):
    assert table.main(["--check"]) == 0, "stale benchmark table: run python -m benchmarks --table --from-json"
    assert "up to date" in capsys.readouterr().err


def test_check_flags_an_edited_number_and_from_json_restores_it(table, readme_copy, capsys):
    text = readme_copy.read_text()
    block = text[text.index("<!-- generated: benchmarks -->"): text.index("<!-- end generated: benchmarks -->")]
    assert "| `lambert` |" in block and " faster " in block
    readme_copy.write_text(text.replace(block, block.replace(" faster ", " quicker ", 1)))
    assert table.main(["--check", "--readme", str(readme_copy)]) == 1
    assert "stale" in capsys.readouterr().err
    assert table.main(["--table", "--from-json", "--readme", str(readme_copy)]) == 0
    assert readme_copy.read_text() == text
    assert table.main(["--check", "--readme", str(readme_copy)]) == 0


def test_rows_say_what_was_skipped_failed_or_not_run(table):
    from benchmarks.rows import BENCHMARKS, render_table

    saved = json.loads(table.RESULTS.read_text())
    results = copy.deepcopy(saved)
    results["benchmarks"]["verl_losses"] = dict(status="skipped: verl is not installed (pip install -e '.[verl]')")
    results["benchmarks"]["tpo"] = dict(saved["benchmarks"]["tpo"], status="failed (exit 1): boom")
    del results["benchmarks"]["figures"]
    rows = {line.split(" | ")[0]: line for line in render_table(results).splitlines() if line.startswith("| `")}
    assert set(rows) == {f"| `{name}`" for name in BENCHMARKS}
    assert "skipped: verl is not installed" in rows["| `verl_losses`"]
    assert rows["| `tpo`"].endswith("failed (exit 1): boom |")
    assert "not run yet (`python -m benchmarks --table --only figures`)" in rows["| `figures`"]


def test_lambert_row_by_hand(table):
    from benchmarks.rows import lambert

    def spread(med, lo, hi):
        return {"median": med, "min": lo, "max": hi, "rounds": [lo, med, hi]}

    s = dict(n=100_000, n_ref=2_000, arms=16, beta=0.5, vectorized_us_per_bandit=spread(1.234, 1.1, 1.5),
             speedup_wall=spread(108.7, 99.6, 115.6), speedup_cpu=spread(120.2, 110.0, 130.4),
             max_abs_diff_pi=2e-16, max_abs_diff_eta=1e-16)
    d = {"speedup": s, "k_sweep": {"16": {"ns_per_element": spread(70.0, 60, 80), "ratio_to_K16": 1.0},
                                   "256": {"ns_per_element": spread(77.0, 70, 90), "ratio_to_K16": 1.1}}}
    what, res = lambert(d)
    assert "100,000 bandits x 16 arms" in what and "2,000 of them" in what and "3 alternated rounds" in what
    assert res == ("109x (100x-116x) faster in wall time, 120x (110x-130x) in CPU time (1.23 us per bandit); "
                   "agreement 2e-16; cost per element at the same element count (ratio to K=16): K=16: 70 ns (1.00), "
                   "K=256: 77 ns (1.10)")


def test_quick_run_of_one_benchmark_merges_and_renders(table, tmp_path, readme_copy, capsys):
    results = tmp_path / "results.json"
    saved = json.loads(table.RESULTS.read_text())
    results.write_text(json.dumps(dict(saved, machine=table.machine())))  # the others' numbers, as if from here
    assert table.main(["--quick", "--only", "bench_tpo", "--results", str(results),
                       "--table", "--readme", str(readme_copy)]) == 0
    new = json.loads(results.read_text())
    tpo = new["benchmarks"]["tpo"]
    assert tpo["status"] == "ok" and tpo["quick"] and tpo["command"] == "python benchmarks/bench_tpo.py --smoke"
    assert tpo["result"]["num_seeds"] == 10 and set(tpo["result"]["final_mean_error"]) == {"pg", "grpo", "tpo"}
    assert {k: v for k, v in new["benchmarks"].items() if k != "tpo"} == {
        k: v for k, v in saved["benchmarks"].items() if k != "tpo"}
    text = readme_copy.read_text()
    assert "with `--quick` sizes" in text and "10 seeds x 3 methods" in text


def test_usage_mistakes_are_one_line(table, capsys):
    with pytest.raises(SystemExit) as e:
        table.main(["--quick", "--table"])
    assert e.value.code == 2 and "quick numbers do not go into the README" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        table.main(["--only", "lambertt", "--from-json"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "unknown benchmark lambertt" in err and "zoo_solver" in err
    with pytest.raises(SystemExit) as e:
        table.main(["--from-json", "--results", "/nonexistent/r.json"])
    assert e.value.code == 2 and "no saved results" in capsys.readouterr().err
