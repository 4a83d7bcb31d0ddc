"""Atomic checkpoints: everything a run needs to continue with identical metrics.

A checkpoint holds the model and optimizer states, the step, the state of every
random generator the run draws from (``torch.Generator`` and numpy
``Generator`` bit generators), an optional ring of past weight snapshots (the
lagged behaviour policies of asynchronous RL), the run's config and any extra
data (e.g. metrics so far).

Atomicity: the file is written through :func:`theory.outputs.atomic_write`
(a temporary file in the same directory, flushed and fsync'ed, given the
user's umask, then moved over the target with :func:`os.replace`, atomic on
POSIX). A run killed at any instant leaves either the previous checkpoint or
the new one, never a torn file.

Reading: :func:`read_checkpoint` turns a file that is not a checkpoint (a
CSV, a truncated copy, a missing path) into a one-line
:class:`theory.outputs.UsageError` naming the argument that gave it;
:func:`restore_checkpoint` sets states in place; :func:`load_checkpoint` does
both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from theory.outputs import UsageError, atomic_write

__all__ = [
    "FORMAT",
    "save_checkpoint",
    "read_checkpoint",
    "restore_checkpoint",
    "load_checkpoint",
    "config_differences",
]

FORMAT = 1


def _np_state_to_data(state):
    """numpy bit-generator state with ints as strings (they can exceed 64 bits)."""
    if isinstance(state, dict):
        return {k: _np_state_to_data(v) for k, v in state.items()}
    if isinstance(state, (int, np.integer)) and not isinstance(state, bool):
        return {"__int__": str(int(state))}
    if isinstance(state, np.ndarray):
        return {"__array__": torch.from_numpy(state.copy())}
    return state


def _np_state_from_data(data):
    if isinstance(data, dict):
        if set(data) == {"__int__"}:
            return int(data["__int__"])
        if set(data) == {"__array__"}:
            return data["__array__"].numpy()
        return {k: _np_state_from_data(v) for k, v in data.items()}
    return data


def save_checkpoint(
    path: str | os.PathLike,
    *,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    numpy_rngs: Mapping[str, np.random.Generator] | None = None,
    ring: Sequence[Mapping[str, torch.Tensor]] | None = None,
    config: Mapping | None = None,
    extra: Mapping | None = None,
) -> Path:
    """Write a checkpoint atomically.

    Parameters
    ----------
    path : path-like
        Target file; its directory is created if needed.
    step : int
        Optimizer steps completed.
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer, optional
    generators : mapping of name to torch.Generator, optional
        Their states are saved under the same names.
    numpy_rngs : mapping of name to numpy.random.Generator, optional
        Their bit-generator states are saved under the same names.
    ring : sequence of state dicts, optional
        Past weight snapshots, oldest first (copied to CPU).
    config : mapping, optional
        The run's config as plain data.
    extra : mapping, optional
        Anything else torch.save can store with ``weights_only`` loading (tensors,
        numbers, strings, lists, dicts).

    Returns
    -------
    pathlib.Path
        The checkpoint's path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "step": int(step),
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
        "numpy_rngs": {k: _np_state_to_data(r.bit_generator.state) for k, r in (numpy_rngs or {}).items()},
        "ring": [{k: v.detach().cpu().clone() for k, v in snap.items()} for snap in (ring or [])],
        "config": dict(config) if config is not None else None,
        "extra": dict(extra) if extra is not None else None,
    }
    return atomic_write(path, lambda f: torch.save(payload, f))  # fsyncs the file and the rename


def read_checkpoint(path: str | os.PathLike, *, arg: str = "path", fix: str = "pass a checkpoint file") -> dict:
    """The checkpoint at ``path`` as plain data, without restoring anything.

    Parameters
    ----------
    path : path-like
    arg : str
        The argument that named ``path`` (``sft``, ``resume``), first in any error.
    fix : str
        What the user can do, last in any error.

    Raises
    ------
    theory.outputs.UsageError
        One line: the file is missing, a folder, unreadable by :func:`torch.load`
        (truncated, or another kind of file) or not of this format.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{arg}: {path} is a folder, not a checkpoint file; {fix}")
    if not path.is_file():
        raise UsageError(f"{arg}: {path} does not exist; {fix}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a bad file
        raise UsageError(
            f"{arg}: {path} cannot be read as a checkpoint ({type(e).__name__}: the file is truncated or not a "
            f"checkpoint); {fix}"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or not isinstance(ckpt.get("config"), (dict, type(None))):
        raise UsageError(f"{arg}: {path} is not a checkpoint of format {FORMAT} (sims.llm.checkpoint); {fix}")
    ckpt["numpy_rngs"] = {k: _np_state_from_data(v) for k, v in ckpt.get("numpy_rngs", {}).items()}
    return ckpt


def restore_checkpoint(
    ckpt: dict,
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    numpy_rngs: Mapping[str, np.random.Generator] | None = None,
) -> dict:
    """Set the states of :func:`read_checkpoint`'s ``ckpt`` in place (see :func:`load_checkpoint`); returns ``ckpt``."""
    if model is not None:
        model.load_state_dict(ckpt["model"])
    if optimizer is not None:
        if ckpt["optimizer"] is None:
            raise ValueError("optimizer: the checkpoint holds no optimizer state")
        optimizer.load_state_dict(ckpt["optimizer"])
    for k, g in (generators or {}).items():
        g.set_state(ckpt["generators"][k])
    for k, r in (numpy_rngs or {}).items():
        r.bit_generator.state = ckpt["numpy_rngs"][k]
    return ckpt


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    numpy_rngs: Mapping[str, np.random.Generator] | None = None,
) -> dict:
    """Read a checkpoint and restore states in place.

    Parameters
    ----------
    path : path-like
    model, optimizer : optional
        Loaded from the checkpoint's states when given.
    generators, numpy_rngs : mapping of name to generator, optional
        Each is set to the saved state of the same name (a missing name raises KeyError).

    Returns
    -------
    dict
        The checkpoint: ``step``, ``model``, ``optimizer``, ``generators``,
        ``numpy_rngs`` (plain states), ``ring`` (list of state dicts), ``config``,
        ``extra``.
    """
    ckpt = read_checkpoint(path)
    return restore_checkpoint(ckpt, model=model, optimizer=optimizer, generators=generators, numpy_rngs=numpy_rngs)


def _plain(v):
    """JSON-like normal form of a config value (tuples as lists), for comparing configs."""
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def config_differences(saved: Mapping, now: Mapping, *, ignore=(), defaults: Mapping | None = None) -> list[str]:
    """The fields of ``now`` whose value differs in a checkpoint's ``saved`` config, sorted.

    Values are compared in JSON-like form (a tuple equals the list it was saved
    as). A field missing from ``saved`` (a checkpoint written before the field
    existed) counts as its value in ``defaults``. Fields in ``ignore`` (those
    that change neither the trajectory nor the record: progress bars, output
    places, stopping rules) are skipped.
    """
    defaults = defaults or {}
    out = []
    for k, v in now.items():
        if k in ignore:
            continue
        old = saved[k] if k in saved else defaults.get(k)
        if _plain(old) != _plain(v):
            out.append(k)
    return sorted(out)
