"""The zoo comparison table (``theory.zoo_table``).

Its figures (3, 6, 7) are drawn by the figures smoke run (tests/test_commands.py), their panels by
tests/test_figure_panels.py.
"""

from __future__ import annotations

import difflib
import math

import numpy as np
import pytest

import theory.zoo_table as zt
from theory.bandits import STANDARD_BANDITS, Bandit
from theory.induced import solve_kkt
from theory.measures import entropy, expected_reward, kl
from theory.objectives import OBJECTIVES, make_objective
from theory.zoo_table import DEFAULT_OUT, main, polytope_ranges, render_markdown, zoo_rows

TWO = {"two-correct": STANDARD_BANDITS["two-correct"]}


@pytest.fixture(scope="module")
def rows_all():
    """Every objective on every standard bandit: the rows the committed table renders (computed once)."""
    return zoo_rows()


@pytest.fixture(scope="module")
def rows_two_correct(rows_all):
    return [dict(r, bandits={"two-correct": r["bandits"]["two-correct"]}) for r in rows_all]


def test_every_objective_has_a_row(rows_two_correct):
    assert [r["objective"] for r in rows_two_correct] == list(OBJECTIVES)
    md = render_markdown(rows_two_correct, TWO)
    for name in OBJECTIVES:
        assert f"| `{name}` |" in md
    for r in rows_two_correct:
        e = r["bandits"]["two-correct"]
        assert e["set_valued"] or e["pi"] is None or abs(e["pi"].sum() - 1) < 1e-9
        assert r["regime"]


def test_command_writes_the_table(tmp_path, quick_rows):
    out = tmp_path / "zoo.md"
    assert main(["--out", str(out), "--bandit", "two-correct"]) == 0
    text = out.read_text()
    assert text.startswith("# The objective zoo") and "## Bandit `two-correct`" in text
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically


def test_committed_table_is_current(rows_all):
    """docs/zoo_table.md is what ``python -m theory.zoo_table`` writes today (it renders these rows), byte for byte."""
    new, committed = render_markdown(rows_all).encode(), DEFAULT_OUT.read_bytes()
    if new != committed:
        diff = difflib.unified_diff(committed.decode().splitlines(), new.decode().splitlines(),
                                    "docs/zoo_table.md (committed)", "rendered now", n=0, lineterm="")
        pytest.fail("docs/zoo_table.md is stale; regenerate it with `python -m theory.zoo_table --overwrite`:\n"
                    + "\n".join(list(diff)[:40]))


@pytest.fixture
def quick_rows(monkeypatch):
    """The command with a two-objective table (the overwrite rule does not depend on the rows)."""
    real = zt.zoo_rows
    monkeypatch.setattr(zt, "zoo_rows", lambda bandits, progress=False: real(bandits, ["opmd", "awr"]))


def test_command_replaces_other_text_only_with_overwrite(tmp_path, capsys, quick_rows):
    out = tmp_path / "zoo.md"
    out.write_text("another run's table\n")
    with pytest.raises(SystemExit) as e:
        main(["--out", str(out), "--bandit", "two-correct"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert str(out) in err[-1] and "--overwrite" in err[-1] and "Traceback" not in "\n".join(err)
    assert out.read_text() == "another run's table\n"  # untouched
    assert main(["--out", str(out), "--bandit", "two-correct", "--overwrite"]) == 0
    text = out.read_text()
    assert text.startswith("# The objective zoo") and "| `awr` |" in text
    stamp = out.stat().st_mtime_ns
    assert main(["--out", str(out), "--bandit", "two-correct"]) == 0  # the same text: allowed, file left alone
    assert out.read_text() == text and out.stat().st_mtime_ns == stamp
    assert "up to date" in capsys.readouterr().err


def test_command_names_a_folder_given_as_out(tmp_path, capsys, quick_rows):
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path)])
    assert e.value.code == 2 and "is a folder" in capsys.readouterr().err


def test_table_holds_nothing_run_dependent(rows_two_correct):
    md = render_markdown(rows_two_correct, TWO)
    assert "Computed in" not in md and md == render_markdown(rows_two_correct, TWO)
    for r in rows_two_correct:  # the timing is kept in the rows, for the caller, not written
        assert r["bandits"]["two-correct"]["seconds"] >= 0


def test_help_lists_defaults_and_choices():
    text = " ".join(zt.parser().format_help().split())
    assert "docs/zoo_table.md" in text and "--overwrite" in text and "(default: all)" in text
    for name in STANDARD_BANDITS:
        assert name in text


def test_regression_rows_match_theory(rows_two_correct):
    """Hand-checkable facts: mean baselines are positive, the exact soft value is the boundary."""
    by = {r["objective"]: r for r in rows_two_correct}
    for name in ("opmd", "opmd_loo", "shifted_regression", "astar_po", "oapl", "reinforce_k2"):
        assert by[name]["regime"] == "positive" and by[name]["bandits"]["two-correct"]["eta"] > 0
    assert by["opmd_lme"]["regime"] == "boundary"
    assert abs(by["opmd_lme"]["bandits"]["two-correct"]["eta"]) < 1e-9
    # beta-shifted mean: eta = delta + KL(mu||pi) >= delta = 1
    e = by["shifted_regression"]["bandits"]["two-correct"]
    mu = STANDARD_BANDITS["two-correct"].mu
    assert e["eta"] == pytest.approx(1.0 + float(kl(mu, e["pi"])), rel=1e-10)
    # V above the soft value (opmd_above): the negative regime, eta < 0, less conservative than nominal
    e = by["opmd_above"]["bandits"]["two-correct"]
    assert by["opmd_above"]["regime"] == "negative" and e["eta"] < 0
    b = STANDARD_BANDITS["two-correct"]
    adv = make_objective("opmd_above").population_advantage(b.mu, b.r)
    beta = make_objective("opmd_above").params["beta"]
    assert e["eta"] == pytest.approx(float(kl(mu, e["pi"])) + float(mu @ adv) / beta, rel=1e-8)  # docs/theory.md section 3
    assert e["pessimism"] < 1
    # AWR's induced target is its nominal Gibbs target
    assert by["awr"]["bandits"]["two-correct"]["pessimism"] == pytest.approx(1.0, rel=1e-8)


@pytest.mark.parametrize("bandit", list(STANDARD_BANDITS))
def test_closed_form_rows_agree_with_the_kkt_solver(bandit):
    """Every closed-form row of the table equals the generic KKT solver's answer where that solver converges."""
    b = STANDARD_BANDITS[bandit]
    names = [n for n in OBJECTIVES
             if (spec := make_objective(n).spec).closed_form is not None and not spec.weight_needs_mu]
    # tpo, score_centering: their weights depend on the whole mu (TPO's batch normalization, E_mu[A]), which the
    # per-arm KKT solver cannot take; tests/test_zoo_2026.py checks score centering's against the flow
    rows = {r["objective"]: r["bandits"][bandit] for r in zoo_rows({bandit: b}, names)}
    compared = 0
    for name in names:
        obj = make_objective(name)
        e = rows[name]
        if e["set_valued"]:  # a tie of the vertex target: the face, not a point
            continue
        adv = obj.population_advantage(b.mu, b.r)
        sol = solve_kkt(lambda u, a, o=obj: o.weight(u, a), b.mu[None], adv[None], kappa_min=obj.kappa_min)
        if not sol.converged[0]:
            continue  # no interior solution: the collapse goes to the flow, not to the KKT solver
        pi = sol.pi[0]
        np.testing.assert_allclose(e["pi"], pi, atol=1e-9, err_msg=name)
        assert e["reward"] == pytest.approx(float(expected_reward(pi, b.r)), abs=1e-9)
        assert e["entropy"] == pytest.approx(float(entropy(pi)), abs=1e-7)
        assert e["kl"] == pytest.approx(float(kl(pi, b.mu)), abs=1e-7)
        compared += 1
    assert compared >= 10


def test_polytope_ranges_exact_on_a_hand_example():
    # P = {pi_0 in [0.5, 1], pi_1 in [0, 0.5], pi_2 = 0}: a segment from (0.5, 0.5, 0) to (1, 0, 0)
    lo, hi = np.array([0.5, 0.0, 0.0]), np.array([1.0, 0.5, 0.0])
    mu, r = np.array([0.2, 0.3, 0.5]), np.array([1.0, 0.0, 0.0])
    out = polytope_ranges(lo, hi, mu, r)
    assert out["reward"] == pytest.approx((0.5, 1.0))
    assert out["entropy"] == pytest.approx((0.0, math.log(2)))
    # KL grows along the segment from (0.5, 0.5, 0) to (1, 0, 0): min and max at its two ends
    assert out["kl"][0] == pytest.approx(0.5 * math.log(0.5 / 0.2) + 0.5 * math.log(0.5 / 0.3))
    assert out["kl"][1] == pytest.approx(math.log(1 / 0.2))


def test_ppo_face_matches_its_lp_and_is_certified():
    b = Bandit("small", np.array([0.1, 0.3, 0.6]), np.array([1.0, 0.5, 0.0]), "3 arms")
    (row,) = zoo_rows({"small": b}, ["ppo"])
    e = row["bandits"]["small"]
    assert e["set_valued"] and e["certified"]
    assert np.all(e["pi_min"] <= e["pi_max"] + 1e-12)
    lo, hi = e["reward"]
    assert 0.0 <= lo <= hi <= 1.0


def test_tied_binary_rewards_give_a_cispo_face_in_the_table():
    """The table reads set-valued targets from induced_target: CISPO on tied binary rewards is a face."""
    from theory.bandits import Bandit

    b = {"tied": Bandit("tied", np.array([0.5, 0.4, 0.1]), np.array([1.0, 1.0, 0.0]), "two tied correct arms")}
    (row,) = zoo_rows(b, objectives=["cispo"])
    e = row["bandits"]["tied"]
    assert e["set_valued"] and e["method"] == "tie face"
    np.testing.assert_allclose(e["pi_min"], [0.488, 0.36, 0.0], atol=1e-9)  # pi_0 <= 0.64, pi_1 <= 0.512
    np.testing.assert_allclose(e["pi_max"], [0.64, 0.512, 0.0], atol=1e-9)
    assert "the flow from mu reaches 0.64, 0.36, 0" in e["note"]
