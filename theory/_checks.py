"""Input validation shared by every public function.

Every check raises :class:`ValueError` whose message names the argument and the
problem. Nothing in the package returns a silent NaN for bad input.

What is accepted where an array is expected: anything NumPy turns into a real
numeric array (lists, tuples, NumPy arrays of any real float or integer dtype,
NumPy scalars) and torch tensors on any device. A torch tensor that requires
grad is refused: the theory functions are NumPy code through which no gradient
flows, so the caller says so with ``x.detach()``. Refused with a named error:
``None``, strings (also lists of strings, even numeric ones), booleans, complex
numbers, ragged lists, object arrays that do not convert to float, and NaN or
inf (the message gives the first position).

Distributions may be float32 (or lower precision): a row must sum to 1 within
a tolerance that follows the input's dtype (:func:`simplex_atol`), and every row
is then renormalized in float64, so a torch softmax is accepted as it is.
"""

from __future__ import annotations

import math
import operator
import sys

import numpy as np

#: Tolerance on ``|sum(mu) - 1|`` for a float64 distribution over arms.
SIMPLEX_ATOL = 1e-9


def simplex_atol(dtype, K: int = 1) -> float:
    r"""Tolerance on ``|sum - 1|`` for a distribution of ``K`` arms stored in ``dtype``.

    :math:`\max(10^{-9},\ 16\,\epsilon\sqrt{K})` with :math:`\epsilon` the
    machine epsilon of ``dtype`` (a NumPy or torch dtype; float64 for integer
    dtypes): 1e-9 for float64, about :math:`2\cdot 10^{-6}\sqrt{K}` for float32,
    so the rounding of a float32 softmax over a vocabulary passes while a wrong
    distribution does not.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(dtype, torch.dtype):
        eps = float(torch.finfo(dtype).eps) if dtype.is_floating_point else float(np.finfo(np.float64).eps)
    else:
        dtype = np.dtype(dtype)
        eps = float(np.finfo(dtype).eps) if dtype.kind == "f" else float(np.finfo(np.float64).eps)
    return max(SIMPLEX_ATOL, 16.0 * eps * math.sqrt(max(int(K), 1)))


def _torch_tensor_to_numpy(x, name: str):
    """(float64 array, the tensor's dtype for the tolerance) for a torch tensor; refuses one that requires grad."""
    torch = sys.modules["torch"]
    if x.requires_grad:
        raise ValueError(
            f"{name} is a torch tensor that requires grad; the theory functions are NumPy code through which "
            f"no gradient flows: pass {name}.detach()"
        )
    if x.is_complex():
        raise ValueError(f"{name} is a complex tensor ({x.dtype}); pass a real tensor")
    if x.dtype == torch.bool:
        raise ValueError(f"{name} is a boolean tensor; pass numbers")
    x = x.detach().cpu()
    return x.to(torch.float64).numpy(), (x.dtype if x.is_floating_point() else np.dtype(np.float64))


def to_real_array(x, name: str, what: str):
    """NumPy array of ``x`` with its original dtype (for the tolerance); named errors for non-numbers."""
    if x is None:
        raise ValueError(f"{name} must be {what}, got None")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return _torch_tensor_to_numpy(x, name)
    if isinstance(x, (str, bytes)):
        raise ValueError(f"{name} must be {what}, got the string {x!r}")
    if isinstance(x, (bool, np.bool_)):
        raise ValueError(f"{name} must be {what}, got the boolean {x!r}")
    if np.ma.is_masked(x):
        raise ValueError(f"{name} is a masked array with masked entries; fill them ({name}.filled(value)) or drop them")
    try:
        raw = np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as err:  # ragged nested lists; tensors that require grad
        if "requires grad" in str(err):
            raise ValueError(
                f"{name} holds torch tensors that require grad; no gradient flows through the theory functions: "
                f"detach them (.detach()) first"
            ) from err
        raise ValueError(f"{name} must be {what} (a rectangular array), got {type(x).__name__}: {err}") from err
    kind = raw.dtype.kind
    if kind in "US":
        raise ValueError(f"{name} must be {what}, got strings (dtype {raw.dtype}); convert them to numbers first")
    if kind == "b":
        raise ValueError(f"{name} must be {what}, got booleans; convert them to numbers first")
    if kind == "c":
        raise ValueError(f"{name} is complex (dtype {raw.dtype}); pass a real array (e.g. {name}.real)")
    if kind in "mMV":
        raise ValueError(f"{name} must be {what}, got dtype {raw.dtype}")
    if kind == "O":  # lists mixing numbers with other objects (0-d tensors, None, strings, Fractions)
        flat = raw.reshape(-1)
        out = np.empty(flat.size, dtype=np.float64)
        for i, v in enumerate(flat):
            pos = tuple(int(p) for p in np.unravel_index(i, raw.shape)) if raw.ndim else ()
            at = f" at index {pos}" if raw.ndim else ""
            if torch is not None and isinstance(v, torch.Tensor):
                v = _torch_tensor_to_numpy(v, f"{name}{at}")[0]
            if v is None or isinstance(v, (str, bytes, bool, np.bool_, complex, np.complexfloating)):
                raise ValueError(f"{name} must be {what}, got {v!r}{at}")
            try:
                out[i] = float(v)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{name} must be {what} (a rectangular array), got {type(v).__name__}{at}") from err
        return out.reshape(raw.shape), np.dtype(np.float64)
    dtype = raw.dtype if kind == "f" else np.dtype(np.float64)
    return raw, dtype


def _first_nonfinite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        val = arr[pos]
        kind = "NaN" if np.isnan(val) else ("inf" if val > 0 else "-inf")
        where = f" at index {pos}" if arr.ndim else ""
        count = int(bad.sum())
        more = f" ({count} non-finite entries)" if count > 1 else ""
        raise ValueError(f"{name} contains {kind}{where}{more}; every entry must be finite")


def as_float_array(x, name: str, what: str = "an array of numbers") -> np.ndarray:
    """Return ``x`` as a float64 array; reject NaN, inf and non-numbers with a named error."""
    raw, _ = to_real_array(x, name, what)
    with np.errstate(over="ignore"):
        arr = np.asarray(raw, dtype=np.float64)  # float128 beyond float64's range becomes inf: refused below
    _first_nonfinite(arr, name)
    return arr


def as_scalar(x, name: str) -> float:
    """A finite real number as a Python float (Python, NumPy and 0-d torch scalars alike)."""
    raw, _ = to_real_array(x, name, "a number")
    if raw.size != 1:
        raise ValueError(f"{name} must be a single number, got shape {raw.shape}")
    with np.errstate(over="ignore"):
        v = float(np.asarray(raw, dtype=np.float64).reshape(()))
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    return v


def as_positive_scalar(x, name: str) -> float:
    """A finite number > 0 as a Python float (a temperature, a step size)."""
    v = as_scalar(x, name)
    if not v > 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return v


def as_int(x, name: str, minimum: int | None = None) -> int:
    """An integer (Python, NumPy or 0-d torch integer) as a Python int; floats, even 2.0, are refused."""
    if x is None or isinstance(x, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer, got {x!r}")
    try:
        v = operator.index(x)
    except TypeError as err:
        raise ValueError(f"{name} must be an integer, got {x!r} ({type(x).__name__})") from err
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return int(v)


def check_distribution(mu, name: str = "mu") -> np.ndarray:
    """Validate a batch of distributions over the last axis (arms); return them renormalized in float64.

    Entries must be finite and >= 0 and each row must sum to 1 within
    :func:`simplex_atol` of the input's dtype (1e-9 for float64). Exact zeros
    are allowed (arms outside the support). Rows are divided by their sum, so
    the result sums to 1 to float64 rounding whatever the input precision.
    An empty batch (shape ``(0, K)``) is returned as it is.
    """
    raw, dtype = to_real_array(mu, name, "an array of probabilities")
    arr = np.asarray(raw, dtype=np.float64)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have a last axis of arms, got a scalar")
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} has no arms (last axis has length 0)")
    _first_nonfinite(arr, name)
    if (arr < 0).any():
        pos = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ValueError(
            f"{name} has negative entries (min {arr.min():.3g}, first at index {pos}); probabilities must be >= 0"
        )
    if arr.size == 0:
        return arr
    total = arr.sum(axis=-1, keepdims=True)
    err = np.abs(total - 1.0)
    atol = simplex_atol(dtype, arr.shape[-1])
    if (err > atol).any():
        row = tuple(int(i) for i in np.argwhere(err[..., 0] > atol)[0]) if arr.ndim > 1 else ()
        where = f" (first at row {row})" if row else ""
        raise ValueError(
            f"{name} is not normalized over the last axis: max |sum - 1| = {err.max():.3g} > {atol:.3g}"
            f"{where} (the tolerance for {str(dtype).replace('torch.', '')} inputs)"
        )
    if np.any(total != 1.0):
        arr = arr / total
    return arr


def check_positive(x, name: str) -> np.ndarray:
    """Validate a strictly positive, finite array (a temperature, a step size)."""
    raw, _ = to_real_array(x, name, "a number > 0 (or an array of them)")
    with np.errstate(over="ignore"):
        arr = np.asarray(raw, dtype=np.float64)
    if arr.ndim == 0 and not math.isfinite(float(arr)):
        raise ValueError(f"{name} must be a finite number > 0, got {float(arr)!r}")
    _first_nonfinite(arr, name)
    if (arr <= 0).any():
        got = f"{float(arr):.3g}" if arr.ndim == 0 else f"min {arr.min():.3g}"
        raise ValueError(f"{name} must be > 0, got {got}")
    return arr


def broadcast_arms(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast two (..., K) arrays; the arm axes must match exactly."""
    if a.ndim == 0 or b.ndim == 0:
        scalar = name_a if a.ndim == 0 else name_b
        raise ValueError(f"{name_a} and {name_b} must have a last axis of arms; {scalar} is a scalar")
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


def support_range(mu: np.ndarray, r: np.ndarray, rname: str = "r") -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of ``r`` over the support of ``mu``, shape (...,); refuses a spread that overflows float64."""
    supp = mu > 0
    rmax = np.where(supp, r, -np.inf).max(-1)
    rmin = np.where(supp, r, np.inf).min(-1)
    with np.errstate(over="ignore"):
        span = rmax - rmin
    if not np.all(np.isfinite(span)):
        raise ValueError(
            f"{rname} spans [{rmin.min():.3g}, {rmax.max():.3g}] on mu's support: differences of rewards overflow "
            f"float64; rescale {rname} (and beta with it: V*_beta(c r) = c V*_(beta/c)(r))"
        )
    return rmin, rmax
