"""The derandomized property tests draw the same examples whatever was imported before them (tests/conftest.py)."""

import importlib
import sys

import pytest
from hypothesis import given, settings

from theory.strategies import bandits, temperatures


def _draws():
    seen = []

    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(bandits(min_arms=2, max_arms=6, min_mass=1e-9, allow_zeros=True), temperatures(0.03, 30.0))
    def record(bandit, beta):
        seen.append((bandit[0].tolist(), bandit[1].tolist(), beta))

    record()
    return seen


def test_examples_do_not_depend_on_the_modules_imported_before(tmp_path, monkeypatch):
    if not settings().derandomize:
        pytest.skip("the explore profile draws fresh examples on purpose")
    first = _draws()
    # a local module full of literals Hypothesis would otherwise add to its pool of constants
    (tmp_path / "literals_module.py").write_text(
        "VALUES = [" + ", ".join(f"{0.1 + k / 7:.17g}, {k * 1e-9!r}, {-k}" for k in range(200)) + "]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("literals_module")
    try:
        assert _draws() == first
    finally:
        sys.modules.pop("literals_module", None)
