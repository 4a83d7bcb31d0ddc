"""The README's and docs' generated blocks are current, and they follow the registry (theory.tables, theory.recipes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from theory import recipes, tables
from theory.objectives import ObjectiveSpec, make_objective, objective_spec
from theory.outputs import UsageError

ROOT = Path(__file__).resolve().parents[1]


def test_committed_blocks_are_current():
    stale = [str(p.relative_to(ROOT)) for p, (old, new) in tables.render_blocks(ROOT).items() if old != new]
    assert not stale, f"stale generated blocks in {stale}: run python -m theory.tables"


def test_every_registered_objective_has_one_row_and_the_count_is_right():
    from theory.objectives import OBJECTIVES

    table = tables.integration_table()
    rows = [line.split(" | ")[0] for line in table.splitlines()]
    for name in OBJECTIVES:
        assert rows.count(f"| `{name}`") == 1, name
    assert tables.objective_list().startswith(f"{len(OBJECTIVES)} built-in objectives")


def test_recipes_come_from_the_specs():
    assert recipes.VERL_BUILTIN["grpo"] is objective_spec("grpo").verl
    assert recipes.verl_recipe("grpo") is objective_spec("grpo").verl
    assert "cispo_scalerl" not in recipes.VERL_BUILTIN and recipes.runs_as_zoo_loss("cispo_scalerl")
    settings, zoo = recipes.TRL_LOSS_TYPES["cispo"]
    # TRL caps the ratio at epsilon_high itself, the zoo at 1 + eps_high
    assert settings["epsilon_high"] == 1 + make_objective("cispo", **zoo).params["eps_high"]
    with pytest.raises(ValueError, match="cannot run in verl: A\\*-PO regresses"):
        recipes.verl_recipe("astar_po")
    with pytest.raises(ValueError, match="unknown objective 'ppo2'.*objectives that run in verl: .*grpo"):
        recipes.verl_recipe("ppo2")


def test_spec_recipes_are_typed():
    from theory import losses as L

    with pytest.raises(TypeError, match="verl must be a theory.recipes.VerlRecipe"):
        ObjectiveSpec(name="bad_recipe", loss=L.policy_gradient_loss, verl={"loss_mode": "vanilla"})
    with pytest.raises(TypeError, match="trl must be a theory.recipes.TrlRecipe"):
        ObjectiveSpec(name="bad_recipe", loss=L.policy_gradient_loss, trl={"loss_type": "grpo"})
    with pytest.raises(ValueError, match="verl recipe or a verl_note"):
        ObjectiveSpec(name="bad_recipe", loss=L.policy_gradient_loss,
                      verl=recipes.VerlRecipe("vanilla", "grpo"), verl_note="cannot")


def test_check_flags_a_stale_copy_and_the_writer_fixes_it(tmp_path, capsys):
    for rel in tables.GENERATED_BLOCKS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    doc = tmp_path / "docs" / "integrations.md"
    doc.write_text(doc.read_text().replace("| `grpo` |", "| `grpo_old` |"))
    with pytest.raises(SystemExit) as e:
        tables.main(["--root", str(tmp_path), "--check"])
    assert e.value.code == 1 and "stale" in capsys.readouterr().err
    assert tables.main(["--root", str(tmp_path)]) == [doc]
    assert doc.read_text() == (ROOT / "docs" / "integrations.md").read_text()
    assert tables.main(["--root", str(tmp_path), "--check"]) == []


def test_missing_markers_are_a_usage_error_naming_them(tmp_path):
    for rel in tables.GENERATED_BLOCKS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("no markers here\n")
    with pytest.raises(UsageError, match="no block <!-- generated: .* -->.*add the two markers"):
        tables.render_blocks(tmp_path)


# last in this file: the user_module fixture keeps the user's objectives registered to the end of the module
def test_a_registered_objective_appears_in_the_tables_and_views(user_module):
    name = "capped_reinforce"
    assert f"| `{name}` | `zoo_{name}` |" in tables.integration_table()
    assert f"`{name}`" in tables.objective_list()
    assert recipes.verl_recipe(name).loss_mode == f"zoo_{name}"
    assert name not in recipes.TRL_LOSS_TYPES
