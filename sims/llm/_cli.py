"""What every command of ``sims.llm`` shares on the command line.

The flags from a frozen dataclass (one flag per field, its docstring as the help) come from
:mod:`theory.cli`, the builder of every command: :func:`add_dataclass_arguments`,
:func:`dataclass_from_args` and :func:`field_docs`, re-exported here. Also :class:`Parser`
(:class:`theory.outputs.CommandParser`: errors in one line, no usage block),
:func:`flag_message`, which turns a config error ``field: ...`` into
``--field: ...``, and :func:`require_config`, the type check of a trainer's
config argument.
"""

from __future__ import annotations

import dataclasses
import re
import sys

from theory.cli import add_dataclass_arguments, dataclass_from_args, field_docs
from theory.outputs import CommandParser as Parser
from theory.outputs import UsageError

__all__ = [
    "Parser",
    "field_docs",
    "add_dataclass_arguments",
    "dataclass_from_args",
    "flag_message",
    "usage_error",
    "require_config",
    "note",
    "import_user_modules",
]


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

