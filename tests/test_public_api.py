"""The curated public API: ``__all__`` in every public module, and no module imports another's private names."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("theory", "sims", "figures")
#: modules that need an optional extra to import (checked by their own tests when it is installed)
OPTIONAL = {"sims.integrations.verl": "verl", "sims.integrations.trl": "trl", "sims.llm.smollm2_demo": None}


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts
            if parts[-1] == "__main__" or any(p.startswith("_") and p != "__init__" for p in parts):
                continue
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


MODULES = list(_modules())


@pytest.mark.parametrize("name,path", MODULES, ids=[m for m, _ in MODULES])
def test_public_module_declares_all(name, path):
    tree = ast.parse(path.read_text())
    declared = [n for n in tree.body if isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)]
    assert declared, f"{name} has no __all__"
    if name in OPTIONAL:
        extra = OPTIONAL[name]
        if extra is None:
            return
        pytest.importorskip(extra)
    mod = importlib.import_module(name)
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"


def _is_module(path: Path, node: ast.ImportFrom, name: str) -> bool:
    """``from <package> import _name`` where ``_name`` is the package's own private module (``figures._style``)."""
    base = path.parent
    for _ in range(max(node.level - 1, 0)):
        base = base.parent
    if node.level == 0:
        base = ROOT
    if node.module:
        base = base.joinpath(*node.module.split("."))
    return (base / f"{name}.py").is_file() or (base / name / "__init__.py").is_file()


@pytest.mark.parametrize("name,path", MODULES, ids=[m for m, _ in MODULES])
def test_no_private_names_imported_from_other_modules(name, path):
    """Library code uses other modules through their public names only (tests may reach into internals)."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0 and (node.module or "").split(".")[0] not in PACKAGES:
            continue  # third-party
        bad += [a.name for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__") and not _is_module(path, node, a.name)]
    assert not bad, f"{name} imports private names of another module: {bad}"


def test_replicate_tpo_single_is_exported():
    import sims
    import sims.tpo

    assert "replicate_tpo_single" in sims.__all__
    assert sims.replicate_tpo_single is sims.tpo.replicate_tpo_single
