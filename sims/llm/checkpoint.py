"""Atomic checkpoints: everything a run needs to continue with identical metrics.

A checkpoint holds the model and optimizer states, the step, the state of every
random generator the run draws from (``torch.Generator`` and numpy
``Generator`` bit generators), an optional ring of past weight snapshots (the
lagged behaviour policies of asynchronous RL), the run's config and any extra
data (e.g. metrics so far).

Atomicity: the file is written to a temporary file in the same directory,
flushed and fsync'ed, then moved over the target with :func:`os.replace`
(atomic on POSIX). A run killed at any instant leaves either the previous
checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:  # make the rename itself durable
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


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
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != FORMAT:
        raise ValueError(f"path: {path} is not a checkpoint of format {FORMAT}")
    ckpt["numpy_rngs"] = {k: _np_state_from_data(v) for k, v in ckpt["numpy_rngs"].items()}
    if model is not None:
        model.load_state_dict(ckpt["model"])
    if optimizer is not None:
        if ckpt["optimizer"] is None:
            raise ValueError(f"optimizer: {path} holds no optimizer state")
        optimizer.load_state_dict(ckpt["optimizer"])
    for k, g in (generators or {}).items():
        g.set_state(ckpt["generators"][k])
    for k, r in (numpy_rngs or {}).items():
        r.bit_generator.state = ckpt["numpy_rngs"][k]
    return ckpt
