r"""Writing results: atomically, with the user's umask, and never over another run's files unless told.

One routine per concern, used by every command that writes (the LLM trainer,
SFT, the probe, the confirmation grid, the sweeps, ``theory.zoo_table`` and
``figures``):

* :func:`atomic_write` (and ``_bytes`` / ``_text`` / ``savez``): the data go
  to a temporary file beside the target, are flushed and fsync'ed, get the
  permissions a plain ``open(path, "w")`` would give (``0o666 & ~umask``),
  and are moved over the target with :func:`os.replace`. A crash leaves the
  earlier file (or none), never a torn one.
* :func:`guard_outputs`: before a command writes into a place that already
  holds files of another run, it stops with :class:`OutputExistsError`, whose
  message names ``--resume`` (where the command can continue a run) and
  ``--overwrite``.
* :func:`remove_outputs`: what ``--overwrite`` does first, removing only the
  files the command writes.
* :class:`UsageError` and :func:`cli_main`: a reasonable mistake on the
  command line (a wrong file, a folder that is a file, a value out of range)
  ends in one line on stderr that names the problem and the fix, and exit
  status 2; never a traceback. :class:`CommandParser` does the same for the
  mistakes ``argparse`` catches (no usage block before the line).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

__all__ = [
    "UsageError",
    "OutputExistsError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_savez",
    "guard_outputs",
    "remove_outputs",
    "require_folder",
    "cli_main",
    "grid_to_grow",
    "CommandParser",
]


class UsageError(ValueError):
    """A mistake a user can fix; its message names the argument, what was expected and what to do."""


class OutputExistsError(UsageError, FileExistsError):
    """A command would replace files of another run."""


def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once (process-wide, not thread-safe,
    # but the writers here run in the main thread)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write: Callable) -> Path:
    """Write ``path`` through ``write(fileobj)`` (binary) into a temp file beside it, fsync, then rename.

    The file gets mode ``0o666 & ~umask`` (what ``open`` gives), not the
    ``0o600`` of :func:`tempfile.mkstemp`. A failure leaves any earlier file at
    ``path`` untouched and removes the temporary file.
    """
    path = Path(path)
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"cannot write {path}: {parent} is a file, not a folder; choose another output folder")
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder; choose another file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems refuse to open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> Path:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path, text: str) -> Path:
    """:func:`atomic_write` of ``text`` in UTF-8 (newlines written as given)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savez(path, arrays: dict) -> Path:
    """:func:`atomic_write` of ``numpy.savez(**arrays)``."""
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def guard_outputs(
    paths: Iterable, *, overwrite: bool = False, resume: bool | None = None, what: str = "run", arg: str | None = None
) -> None:
    """Refuse to replace existing ``paths`` unless ``overwrite``.

    Parameters
    ----------
    paths : iterable of path-like
        The files the command is about to write (a folder counts as existing
        when it holds any file).
    overwrite : bool
        The user asked to replace them (``--overwrite``).
    resume : bool or None
        None when the command cannot continue a run; otherwise whether the
        user asked to (``--resume``). When resuming, existing files are the
        run being continued, not a clash.
    what : str
        What the files are, for the message (``run``, ``table``, ``figure``).
    arg : str, optional
        The argument that named the place (``out_dir``), put first in the message.

    Raises
    ------
    OutputExistsError
        One line naming the first existing file (and how many more), with
        ``--resume`` (when the command has it) and ``--overwrite``.
    """
    if overwrite or resume:
        return
    found = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            if any(q.is_file() for q in p.rglob("*")):
                found.append(p)
        elif p.exists():
            found.append(p)
    if not found:
        return
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    fix = "pass --resume to continue it, or --overwrite to replace it" if resume is not None else (
        "pass --overwrite to replace it")
    head = f"{arg}: " if arg else ""
    raise OutputExistsError(
        f"{head}{found[0]}{more} already exists (another {what}'s output); {fix} (or choose another output path)"
    )


def remove_outputs(files: Iterable, folders: Iterable = ()) -> None:
    """Remove an earlier run's ``files`` (those that exist), then each of ``folders`` left empty.

    For ``--overwrite``: only the files a command itself writes are named, so
    nothing else a folder holds is touched, and no file of the old run stays
    mixed with the new one.
    """
    for p in files:
        p = Path(p)
        if p.is_file() or p.is_symlink():
            p.unlink()
    for d in folders:
        with contextlib.suppress(OSError):  # not empty, or absent: leave it
            Path(d).rmdir()


def require_folder(path, arg: str) -> Path | None:
    """``path`` as a Path (None stays None); :class:`UsageError` naming ``arg`` when it is an existing non-folder."""
    if path is None:
        return None
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{arg}: {path} is a file, not a folder; pass a folder (it is created if missing)")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"{arg}: {parent} is a file, so {path} cannot be a folder; pass another folder")
    return path


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _prog(main: Callable) -> str:
    """``python -m <the command's module>``, also when it runs as ``python -m`` (module ``__main__``)."""
    name = getattr(main, "__module__", "") or ""
    if name == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is None:  # a script
            return os.path.basename(sys.argv[0])
        name = spec.name
    return f"python -m {name.removesuffix('.__main__')}"


def grid_to_grow(out_dir, record, settings: dict, grid_keys, output_names, *, overwrite: bool = False) -> bool:
    """Whether ``out_dir`` holds a grid of cells this run may keep and grow in place.

    Parameters
    ----------
    out_dir : path-like
        The grid's folder.
    record : path-like
        Its settings file (``sweep.json``, ``probe.json``).
    settings : dict
        This run's settings, JSON-ready.
    grid_keys : collection of str
        The settings that span the grid (objectives, lags, seeds ...): they may
        differ from the record's, every other one must match.
    output_names : iterable of str
        Files of other commands that make a folder without a record foreign.

    Returns
    -------
    bool
        True when the record exists and matches; False when there is nothing to
        keep (``overwrite``, no folder, or a folder with no record and no
        foreign results: other files, a README say, are left alone).

    Raises
    ------
    UsageError
        A setting differs (named, with ``--overwrite``), the record is not
        valid JSON, or the folder holds another command's results without a
        record.
    """
    out_dir, record = Path(out_dir), Path(record)
    if overwrite or not out_dir.exists():
        return False
    if not record.exists():
        guard_outputs([out_dir / n for n in output_names], what="command", arg="out_dir")
        return False
    try:
        saved = json.loads(record.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"out_dir: {record} is not valid JSON; pass --overwrite to start over, or another --out-dir") from None
    for k, v in settings.items():
        if k not in grid_keys and saved.get(k) != v:
            raise UsageError(
                f"{k}: {v!r} differs from {saved.get(k)!r} in {record}; the cells there cannot be reused: pass the "
                "same setting to grow the grid, --overwrite to replace it, or another --out-dir"
            )
    return True


def cli_main(main: Callable) -> Callable:
    """Decorate a command's ``main(argv)``: a :class:`UsageError` becomes one line on stderr and exit 2.

    Only errors the command raised as :class:`UsageError` are shortened; any
    other exception is a bug and keeps its traceback.
    """

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except UsageError as e:
            print(f"{_prog(main)}: error: {_one_line(e)}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (exit status 2), pointing at ``--help``."""

    def error(self, message):
        hint = " (see --help)" if self.add_help else ""
        self.exit(2, f"{self.prog}: error: {_one_line(message)}{hint}\n")
