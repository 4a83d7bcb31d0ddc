"""The one dataclass-to-CLI builder (``theory.cli``): flags from fields, docstrings as help, metadata refinements."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from theory import cli
from theory.outputs import CommandParser


@dataclass(frozen=True)
class Toy:
    """A config with one field of each kind the builder handles."""

    steps: int = 3
    """optimizer steps"""
    lr: float | None = None
    """learning rate"""
    names: tuple[str, ...] = ("a",)
    """names, one or more"""
    progress: bool = True
    """show a progress bar"""
    mode: str = "fast"
    """how to run"""
    objective: tuple[str, ...] = cli.option((), metavar="NAME", shown="opmd", action="append")
    """an objective, repeatable"""
    lines: tuple[str, ...] = cli.option((), metavar="K=V", shown="none", action="extend")
    """override lines"""
    json: bool = cli.option(False, shown="off", action="store_true")
    """print JSON"""
    cap: int = cli.option(64, note="at most 512")
    """largest lag searched"""


def _parser(**kw):
    p = CommandParser(prog="toy")
    cli.add_dataclass_arguments(p, Toy, Toy(), **kw)
    return p


def test_field_docs_are_the_string_after_each_field():
    docs = cli.field_docs(Toy)
    assert docs["steps"] == "optimizer steps" and docs["cap"] == "largest lag searched"
    assert set(docs) == {f.name for f in dataclasses.fields(Toy)}


def test_nothing_given_keeps_the_preset():
    base = Toy(steps=9)
    args = _parser().parse_args([])
    assert all(getattr(args, f.name) is None for f in dataclasses.fields(Toy))
    assert cli.dataclass_from_args(Toy, args, base) == base


def test_each_kind_of_flag_parses_into_the_dataclass():
    argv = ["--steps", "5", "--lr", "0.5", "--names", "x", "y", "--no-progress", "--mode", "slow",
            "--objective", "ppo", "--objective", "grpo:beta=1", "--lines", "a=1", "b=2", "--lines", "c=3", "--json",
            "--cap", "8"]
    got = cli.dataclass_from_args(Toy, _parser(choices={"mode": ["fast", "slow"]}).parse_args(argv), Toy())
    assert got == Toy(steps=5, lr=0.5, names=("x", "y"), progress=False, mode="slow",
                      objective=("ppo", "grpo:beta=1"), lines=("a=1", "b=2", "c=3"), json=True, cap=8)


def test_help_is_the_docstring_with_the_default(capsys):
    with pytest.raises(SystemExit):
        _parser(choices={"mode": ["fast", "slow"]}, listed={"objective": ["ppo", "grpo"]}).parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--steps STEPS optimizer steps (default: 3)" in out
    assert "--progress, --no-progress show a progress bar (default: True)" in out
    assert "--mode MODE how to run (default: 'fast'; choices: fast, slow)" in out
    assert "--objective NAME an objective, repeatable; one of: ppo, grpo (default: opmd)" in out
    assert "--lines K=V [K=V ...] override lines (default: none)" in out
    assert "--json print JSON (default: off)" in out and "--no-json" not in out
    assert "--cap CAP largest lag searched (at most 512; default: 64)" in out


def test_a_choice_is_enforced_and_a_listed_name_is_not(capsys):
    p = _parser(choices={"mode": ["fast", "slow"]}, listed={"objective": ["ppo"]})
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--mode", "medium"])
    assert e.value.code == 2 and "--mode" in capsys.readouterr().err
    assert p.parse_args(["--objective", "other"]).objective == ["other"]


def test_skip_and_types():
    p = CommandParser(prog="toy")
    cli.add_dataclass_arguments(p, Toy, Toy(), skip=("lr",), types={"steps": lambda s: int(s) * 2})
    args = p.parse_args(["--steps", "4"])
    assert not hasattr(args, "lr") and args.steps == 8


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError, match="action"):
        cli.option(1, action="count")


def test_sims_llm_keeps_the_same_builder():
    from sims.llm import _cli

    assert _cli.add_dataclass_arguments is cli.add_dataclass_arguments
    assert _cli.dataclass_from_args is cli.dataclass_from_args
    assert _cli.field_docs is cli.field_docs
    assert isinstance(_cli.Parser(prog="x"), argparse.ArgumentParser)
