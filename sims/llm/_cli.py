"""Command-line flags from a frozen dataclass: one flag per field, its docstring as the help."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing


def field_docs(cls) -> dict[str, str]:
    """The string literal that follows each annotated field in the class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _base_type(tp):
    """(scalar type, is_tuple) for int, float, str, bool, X | None and tuple[X, ...]."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    if origin is tuple:
        return typing.get_args(tp)[0], True
    return tp, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, defaults) -> None:
    """Add ``--field-name`` for each field of ``cls``; shown defaults come from ``defaults``."""
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, is_tuple = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{docs.get(f.name, '')} (default: {getattr(defaults, f.name)!r})"
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif is_tuple:
            parser.add_argument(flag, dest=f.name, type=tp, nargs="+", default=None, help=help_)
        else:
            parser.add_argument(flag, dest=f.name, type=tp, default=None, help=help_)


def dataclass_from_args(cls, args: argparse.Namespace, base):
    """``base`` with every field given on the command line replaced."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return dataclasses.replace(base, **given)
