r"""Generated text: the README's and the docs' tables and lists, rendered from the objective registry.

* :func:`integration_table`: every registered objective's verl loss and
  estimator and TRL loss type (``theory.recipes``), in the README and
  ``docs/integrations.md``;
* :func:`objective_list`: the README's objective count and names by family.

``python -m theory.tables`` rewrites the marked blocks of those files
(``<!-- generated: NAME -->`` ... ``<!-- end generated: NAME -->``);
``--check`` only compares. ``tests/test_generated_docs.py`` fails when a
committed block is stale. (``docs/zoo_table.md`` is written by
``python -m theory.zoo_table``, which solves for every target.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping

from .outputs import CommandParser, UsageError, atomic_write_text, cli_main
from .recipes import LOSS_BETA, fmt_value, runs_as_zoo_loss, verl_recipe

__all__ = ["integration_table", "objective_list", "GENERATED_BLOCKS", "replace_block", "render_blocks", "main"]


def _settings(items: Mapping) -> str:
    return ", ".join(f"`{k}={'dro_beta' if v == LOSS_BETA else fmt_value(v)}`" for k, v in items.items())


def _verl_cells(name: str) -> tuple[str, str]:
    """The verl loss and estimator cells of ``name``'s row (the full lines: ``verl_recipe(name).overrides()``).

    Rollout-correction settings belong to the loss; every other ``algorithm.*`` setting to the estimator;
    the operational settings of the regression family (bypass mode, micro-batching) are left to the lines.
    """
    from .objectives import objective_spec

    spec = objective_spec(name)
    if spec.verl is None and spec.verl_note:
        return f"— ({spec.verl_note.split(';')[0]})", "—"
    if spec.verl is None and not runs_as_zoo_loss(name):
        return "—", "—"
    rec = verl_recipe(name)
    zoo = rec.loss_mode.startswith("zoo_")
    actor = {k: v for k, v in rec.actor.items() if not (zoo and k == "loss_agg_mode")}
    correction = {k: v for k, v in rec.algorithm.items() if k.startswith("rollout_correction.")}
    estimator = {k: v for k, v in rec.algorithm.items() if k not in correction}
    loss = f"`{rec.loss_mode}`" + (f" ({_settings(actor)})" if actor else "")
    loss += f" + {_settings(correction)}" if correction else ""
    adv = f"`{rec.adv_estimator}`" + (f" ({_settings(estimator)})" if estimator else "")
    return loss, adv


def _trl_cell(name: str) -> str:
    from .objectives import objective_spec

    spec = objective_spec(name)
    if "expected" in spec.needs:
        return "not runnable (it needs the sampler's distribution at every position)"
    rec = spec.trl
    if rec is None:
        return "—"
    cfg = dict(rec.config)
    loss = f"`{cfg.pop('loss_type')}`"
    parts = [_settings(cfg)] if cfg else []
    if rec.zoo_params:
        parts.append("zoo " + _settings(rec.zoo_params))
    return loss + (f" ({'; '.join(parts)})" if parts else "")


def integration_table() -> str:
    """The Markdown table: every registered objective's verl loss and estimator and TRL loss type."""
    from .objectives import OBJECTIVES

    rows = ["| zoo objective | verl `policy_loss.loss_mode` (settings) | verl `algorithm.adv_estimator` "
            "| TRL `loss_type` (settings) |", "|---|---|---|---|"]
    for name in OBJECTIVES:
        loss, adv = _verl_cells(name)
        rows.append(f"| `{name}` | {loss} | {adv} | {_trl_cell(name)} |")
    return "\n".join(rows) + "\n"


#: families in the order the list names them, with their words
_FAMILIES = {
    "ratio": "importance-ratio (PPO-type)",
    "ratio-free": "ratio-free policy gradient",
    "weighted-ce": "weighted cross-entropy",
    "regression": "regression (soft-value family)",
}


def objective_list() -> str:
    """One Markdown paragraph: how many objectives are registered and their names by family."""
    from .objectives import OBJECTIVES, objective_spec

    by_family: dict[str, list[str]] = {}
    for n in OBJECTIVES:
        by_family.setdefault(objective_spec(n).family, []).append(n)
    parts = [f"{_FAMILIES.get(fam, fam)}: {', '.join(f'`{n}`' for n in names)}" for fam, names in by_family.items()]
    return f"{len(OBJECTIVES)} built-in objectives, by family: " + "; ".join(parts) + ".\n"


#: file -> block name -> renderer; a block is the text between ``<!-- generated: NAME -->`` and
#: ``<!-- end generated: NAME -->`` (regenerate with ``python -m theory.tables``)
GENERATED_BLOCKS = {
    "README.md": {"objectives": objective_list, "integrations": integration_table},
    "docs/integrations.md": {"integrations": integration_table},
}


def replace_block(text: str, name: str, body: str, path: str) -> str:
    """``text`` with the block between ``<!-- generated: name -->`` and ``<!-- end generated: name -->`` replaced by
    ``body`` (also used by ``python -m benchmarks``); ``path`` names the file in the error when a marker is missing."""
    start, end = f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise UsageError(f"{path}: no block {start} ... {end}; add the two markers where the text goes")
    return text[: i + len(start)] + "\n" + body + text[j:]


def render_blocks(root: Path) -> dict[Path, tuple[str, str]]:
    """``{path: (committed text, text with every generated block rendered anew)}`` under ``root``."""
    rendered = {render: render() for blocks in GENERATED_BLOCKS.values() for render in blocks.values()}
    out = {}
    for rel, blocks in GENERATED_BLOCKS.items():
        path = Path(root) / rel
        if not path.is_file():
            raise UsageError(f"--root {root}: no {rel} there; give the repository's root folder")
        old = new = path.read_text()
        for name, render in blocks.items():
            new = replace_block(new, name, rendered[render], rel)
        out[path] = (old, new)
    return out


@cli_main
def main(argv=None) -> list[Path]:
    """Rewrite (or, with --check, compare) the README's and docs/integrations.md's generated blocks."""
    p = CommandParser(prog="python -m theory.tables", description=main.__doc__)
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                   help="the repository root (default: this checkout)")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when a block is stale")
    args = p.parse_args(argv)
    blocks = render_blocks(args.root)
    stale = [path for path, (old, new) in blocks.items() if old != new]
    for path in stale:
        if args.check:
            print(f"stale: {path} (run python -m theory.tables)", file=sys.stderr)
        else:
            atomic_write_text(path, blocks[path][1])
            print(f"wrote {path}", file=sys.stderr)
    if args.check and stale:
        raise SystemExit(1)
    if not stale:
        print("every generated block is up to date", file=sys.stderr)
    return stale


if __name__ == "__main__":
    main()
