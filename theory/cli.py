"""Command-line flags from a frozen dataclass: one flag per field, the field's docstring as its help.

A command whose options form a config (:class:`sims.llm.rl.RLConfig`,
:class:`theory.advise.AdviseOptions`, ...) declares them once, as a frozen
dataclass with a string literal after each field; :func:`add_dataclass_arguments`
turns every field ``name`` into a flag ``--name`` (underscores as dashes) whose
``--help`` line is that docstring and the default, and
:func:`dataclass_from_args` puts the flags the user gave into a copy of the
preset. A flag not given is ``None`` in the parsed namespace, so the preset's
value stays.

How a field becomes a flag follows its annotation: ``bool`` is ``--name`` /
``--no-name``, ``tuple[X, ...]`` takes one or more values, ``X | None`` is
``X``. A field may refine its flag through ``dataclasses.field(metadata=...)``
(:func:`option` writes it):

* ``metavar``: the name ``--help`` shows for the value;
* ``shown``: the default as ``--help`` states it, in words, where the preset
  holds ``None`` for "not given" (e.g. "the config's, else 8");
* ``note``: text put before the default in the parentheses, e.g. a bound;
* ``action``: ``"store_true"`` (a switch with no ``--no-`` form), ``"append"``
  (one value per flag, the flag repeatable) or ``"extend"`` (one or more values
  per flag, the flag repeatable), as in :mod:`argparse`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing

__all__ = ["field_docs", "option", "add_dataclass_arguments", "dataclass_from_args"]

#: The keys of a field's metadata that :func:`add_dataclass_arguments` reads.
_OPTION_KEYS = ("metavar", "shown", "note", "action")


def field_docs(cls) -> dict[str, str]:
    """The string literal that follows each annotated field in the class body (whitespace collapsed)."""
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


def option(default=None, *, metavar: str | None = None, shown: str | None = None, note: str | None = None,
           action: str | None = None):
    """A dataclass field whose flag has the given ``metavar``, ``shown`` default, ``note`` and ``action``.

    ``dataclasses.field(default=default, metadata=...)`` with the keys the module docstring lists; ``None``
    leaves a key out (the flag then looks as its annotation says).
    """
    if action not in (None, "store_true", "append", "extend"):
        raise ValueError(f"action: one of store_true, append, extend, or None; got {action!r}")
    given = dict(zip(_OPTION_KEYS, (metavar, shown, note, action)))
    return dataclasses.field(default=default, metadata={k: v for k, v in given.items() if v is not None})


def _base_type(tp):
    """(scalar type, is_tuple) for int, float, str, bool, X | None and tuple[X, ...]."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    if origin is tuple:
        return typing.get_args(tp)[0], True
    return tp, False


def _help(doc: str, default, meta, choices=None, listed=None) -> str:
    """``doc; one of: ... (note; default: value; choices: ...)``: the field's docstring, then its default."""
    shown = meta.get("shown", repr(default))
    note = f"{meta['note']}; " if "note" in meta else ""
    names = f"; one of: {', '.join(map(str, listed))}" if listed is not None else ""
    valid = f"; choices: {', '.join(map(str, choices))}" if choices is not None else ""
    return f"{doc}{names} ({note}default: {shown}{valid})"


def _flag_kwargs(tp, is_tuple: bool, meta) -> dict:
    """``add_argument``'s type, nargs and action for a field of scalar type ``tp`` (a tuple of them if ``is_tuple``)."""
    action = meta.get("action")
    if action == "store_true":
        return {"action": "store_true"}
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if action == "append":
        return {"type": tp, "action": "append"}
    if action == "extend":
        return {"type": tp, "nargs": "+", "action": "extend"}
    return {"type": tp, "nargs": "+"} if is_tuple else {"type": tp}


def add_dataclass_arguments(
    parser: argparse.ArgumentParser,
    cls,
    defaults,
    *,
    types: dict | None = None,
    choices: dict | None = None,
    listed: dict | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """Add ``--field-name`` for each field of ``cls``; shown defaults come from ``defaults``.

    Every flag's parsed value is ``None`` unless given (:func:`dataclass_from_args` keeps the preset's then).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    cls : dataclass type
        Each field's docstring is its flag's help; its metadata may refine the flag (module docstring).
    defaults : instance of ``cls``
        The values ``--help`` shows (a preset), unless a field's metadata says ``shown``.
    types : dict, optional
        Field name -> the callable that parses the flag's text, for fields whose
        annotation is not int, float, str, bool or a tuple of them (e.g. a mapping).
    choices : dict, optional
        Field name -> the valid values (``--help`` lists them; anything else is
        refused by the parser, in one line).
    listed : dict, optional
        Field name -> the valid names, listed after the docstring but not enforced
        by the parser (a value may carry more than a name, e.g. its parameters).
    skip : tuple of str
        Fields that get no flag (the command sets them otherwise).
    """
    types, choices, listed = types or {}, choices or {}, listed or {}
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, is_tuple = _base_type(hints[f.name])
        kw = {"dest": f.name, "default": None, **_flag_kwargs(types.get(f.name, tp), is_tuple, f.metadata)}
        if "metavar" in f.metadata:
            kw["metavar"] = f.metadata["metavar"]
        if f.name in choices:
            kw["choices"] = list(choices[f.name])
            kw["metavar"] = f.name.upper()
        kw["help"] = _help(docs.get(f.name, ""), getattr(defaults, f.name), f.metadata, choices.get(f.name),
                           listed.get(f.name))
        parser.add_argument("--" + f.name.replace("_", "-"), **kw)


def dataclass_from_args(cls, args: argparse.Namespace, base):
    """``base`` with every field given on the command line replaced (lists become tuples)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return dataclasses.replace(base, **given)
