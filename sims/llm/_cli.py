"""Command-line flags from a frozen dataclass: one flag per field, its docstring as the help.

Also what every command of ``sims.llm`` shares: :class:`Parser`
(:class:`theory.outputs.CommandParser`: errors in one line, no usage block),
:func:`flag_message`, which turns a config error ``field: ...`` into
``--field: ...``, and :func:`require_config`, the type check of a trainer's
config argument.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import sys
import textwrap
import types as _types
import typing

from theory.outputs import CommandParser as Parser
from theory.outputs import UsageError


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
    if origin in (typing.Union, _types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    if origin is tuple:
        return typing.get_args(tp)[0], True
    return tp, False


def add_dataclass_arguments(
    parser: argparse.ArgumentParser,
    cls,
    defaults,
    *,
    types: dict | None = None,
    choices: dict | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """Add ``--field-name`` for each field of ``cls``; shown defaults come from ``defaults``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    cls : dataclass type
    defaults : instance of ``cls``
        The values ``--help`` shows (a preset).
    types : dict, optional
        Field name -> the callable that parses the flag's text, for fields whose
        annotation is not int, float, str, bool or a tuple of them (e.g. a mapping).
    choices : dict, optional
        Field name -> the valid values (``--help`` lists them; anything else is
        refused by the parser, in one line).
    skip : tuple of str
        Fields that get no flag (the command sets them otherwise).
    """
    types, choices = types or {}, choices or {}
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, is_tuple = _base_type(hints[f.name])
        tp = types.get(f.name, tp)
        flag = "--" + f.name.replace("_", "-")
        kw = {"dest": f.name, "default": None}
        listed = ""
        if f.name in choices:
            kw["choices"] = list(choices[f.name])
            kw["metavar"] = f.name.upper()
            listed = f"; choices: {', '.join(map(str, choices[f.name]))}"
        help_ = f"{docs.get(f.name, '')} (default: {getattr(defaults, f.name)!r}{listed})"
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_, **kw)
        elif is_tuple:
            parser.add_argument(flag, type=tp, nargs="+", help=help_, **kw)
        else:
            parser.add_argument(flag, type=tp, help=help_, **kw)


def dataclass_from_args(cls, args: argparse.Namespace, base):
    """``base`` with every field given on the command line replaced."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return dataclasses.replace(base, **given)


def flag_message(message, fields=()) -> str:
    """``message`` with a leading ``name:`` (a config field in ``fields``, or ``out_dir``/``resume``) as ``--name:``.

    Config classes name the field in their errors (``steps: must be >= 1``); on
    the command line the user typed ``--steps``.
    """
    text = " ".join(str(message).split())
    m = re.match(r"([a-z_]+)(, [a-z_]+)*:", text)
    if m is None:
        return text
    names = [n.strip() for n in m.group(0)[:-1].split(",")]
    known = set(fields) | {"out_dir", "resume", "overwrite", "sft", "stop_after", "tensorboard_dir", "device"}
    if not all(n in known for n in names):
        return text
    return ", ".join("--" + n.replace("_", "-") for n in names) + text[len(m.group(0)) - 1 :]


def usage_error(err: Exception, cls=None) -> UsageError:
    """A :class:`UsageError` with ``err``'s message in flag form (:func:`flag_message`)."""
    fields = [f.name for f in dataclasses.fields(cls)] if cls is not None else ()
    return UsageError(flag_message(err, fields))


def require_config(cfg, cls, func: str, presets: str | None = None) -> None:
    """TypeError unless ``cfg`` is a ``cls``; the message says how to build one.

    ``presets`` names the module-level dict of presets (e.g. ``RL_PRESETS``), if any.
    """
    if isinstance(cfg, cls):
        return
    got = "None" if cfg is None else type(cfg).__name__
    name, mod = cls.__name__, cls.__module__
    how = f"{name}(**fields)" if isinstance(cfg, dict) else f"{name}(field=value, ...)"
    if presets is not None:
        how += f" or dataclasses.replace({presets}['smoke'], field=value, ...)"
    raise TypeError(f"{func}: expected a {name} (from {mod} import {name}), got {got}; build one with {how}")


def note(text: str) -> None:
    """One line of information on stderr (not part of the command's output)."""
    print(text, file=sys.stderr, flush=True)


def import_user_modules(argv, prog: str) -> list[str]:
    """Import the modules named by ``--import MODULE`` in ``argv`` (repeatable); return the names.

    A user's module registers its own objectives (``theory.objectives.register_objective``)
    before the command checks ``--objective``. A module that cannot be imported is a
    one-line usage error naming it.
    """
    import importlib

    pre = Parser(prog=prog, add_help=False)
    pre.add_argument("--import", dest="imports", action="append", default=[])
    names = pre.parse_known_args(argv)[0].imports
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 (any failure of the user's module is reported as such)
            pre.error(f"--import {name}: cannot import it ({type(e).__name__}: {e}); the module must be on "
                      "sys.path (run from its folder, or set PYTHONPATH)")
    return names

