"""Input validation shared by every public function.

Every check raises :class:`ValueError` whose message names the argument and the
problem. Nothing in the package returns a silent NaN for bad input.
"""

from __future__ import annotations

import numpy as np

#: Tolerance on ``|sum(mu) - 1|`` for a distribution over arms.
SIMPLEX_ATOL = 1e-9


def as_float_array(x, name: str) -> np.ndarray:
    """Return ``x`` as a float64 array; reject NaN and inf with a named error."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric, got {type(x).__name__}") from err
    if not np.all(np.isfinite(arr)):
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise ValueError(f"{name} contains {bad}; every entry must be finite")
    return arr


def check_distribution(mu, name: str = "mu") -> np.ndarray:
    """Validate a batch of distributions over the last axis (arms).

    Entries must be finite and >= 0 and each row must sum to 1 within
    :data:`SIMPLEX_ATOL`. Exact zeros are allowed (arms outside the support).
    """
    arr = as_float_array(mu, name)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have a last axis of arms, got a scalar")
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} has no arms (last axis has length 0)")
    if (arr < 0).any():
        raise ValueError(f"{name} has negative entries (min {arr.min():.3g}); probabilities must be >= 0")
    total = arr.sum(axis=-1)
    err = np.abs(total - 1.0)
    if (err > SIMPLEX_ATOL).any():
        raise ValueError(
            f"{name} is not normalized over the last axis: max |sum - 1| = {err.max():.3g} > {SIMPLEX_ATOL:g}"
        )
    return arr


def check_positive(x, name: str) -> np.ndarray:
    """Validate a strictly positive, finite array (a temperature, a step size)."""
    arr = as_float_array(x, name)
    if (arr <= 0).any():
        raise ValueError(f"{name} must be > 0, got min {arr.min():.3g}")
    return arr


def broadcast_arms(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast two (..., K) arrays; the arm axes must match exactly."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"{name_a} and {name_b} must have a last axis of arms")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{name_a} has {a.shape[-1]} arms but {name_b} has {b.shape[-1]} (shapes {a.shape} and {b.shape})"
        )
    try:
        return np.broadcast_arrays(a, b)
    except ValueError as err:
        raise ValueError(f"shapes of {name_a} {a.shape} and {name_b} {b.shape} do not broadcast") from err


def broadcast_with_batch(arm_arrays: dict, params: dict):
    """Broadcast (..., K) arrays and per-bandit parameters to one common batch shape.

    ``arm_arrays`` maps names to (..., K) arrays, ``params`` names to arrays of
    batch shape. Returns ``(arm_list, param_list, batch_shape)``; a parameter
    grid (e.g. beta of shape (B,)) expands a single bandit of shape (K,).
    """
    shapes = [a.shape[:-1] for a in arm_arrays.values()] + [p.shape for p in params.values()]
    try:
        batch = np.broadcast_shapes(*shapes)
    except ValueError as err:
        desc = ", ".join(f"{n} {a.shape}" for n, a in {**arm_arrays, **params}.items())
        raise ValueError(f"shapes do not broadcast to one batch ({desc}); the arm axis is the last axis") from err
    K = next(iter(arm_arrays.values())).shape[-1]
    arms = [np.broadcast_to(a, batch + (K,)) for a in arm_arrays.values()]
    return arms, [np.broadcast_to(p, batch) for p in params.values()], batch
