r"""The small numerical kernels every solver and simulator shares: softmax, log-sum-exp and the logit flow.

Each works on the last axis of a NumPy array or a torch tensor (the same
expression either way), shifts by the row maximum before exponentiating, and
never divides by zero on a row with a finite entry.

The logit-flow field. For a population weight :math:`h(u, A)` at
:math:`u = \pi/\mu`, the gradient flow of an objective in logit space is

.. math::

    \dot\theta_z = \mu_z h_z - \pi_z \sum_{z'} \mu_{z'} h_{z'},

the projection of :math:`\mu h` off the softmax's null direction. Its zeros
on the support are the stationary points (the induced target); its size is
the speed of the flow.
"""

from __future__ import annotations

import numpy as np

__all__ = ["logsumexp", "log_mean_exp", "log_softmax", "softmax", "flow_field"]


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def logsumexp(z, *, keepdims: bool = False):
    r""":math:`\log\sum_z e^{z}` over the last axis, shifted by the row maximum (rows of ``-inf`` give ``-inf``)."""
    if _is_torch(z):
        return z.logsumexp(-1, keepdim=keepdims)
    zmax = z.max(axis=-1, keepdims=True)
    shift = np.where(np.isfinite(zmax), zmax, 0.0)
    with np.errstate(divide="ignore"):
        out = shift + np.log(np.exp(z - shift).sum(axis=-1, keepdims=True))
    return out if keepdims else out[..., 0]


def log_mean_exp(z, *, keepdims: bool = False):
    r""":math:`\log\frac1n\sum_z e^{z}` over the last axis of length ``n``."""
    return logsumexp(z, keepdims=keepdims) - np.log(z.shape[-1])


def log_softmax(z):
    r""":math:`z - \log\sum e^{z}` over the last axis."""
    if _is_torch(z):
        return z.log_softmax(-1)
    zmax = z.max(axis=-1, keepdims=True)
    z = z - np.where(np.isfinite(zmax), zmax, 0.0)
    with np.errstate(divide="ignore"):
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(z):
    r""":math:`e^{z}/\sum e^{z}` over the last axis (entries of ``-inf`` get probability 0)."""
    if _is_torch(z):
        return z.softmax(-1)
    zmax = z.max(axis=-1, keepdims=True)
    e = np.exp(z - np.where(np.isfinite(zmax), zmax, 0.0))
    return e / e.sum(axis=-1, keepdims=True)


def flow_field(pi, mu_h):
    r"""The logit-flow field :math:`\mu h - \pi\sum\mu h` over the last axis, given ``mu_h`` = :math:`\mu h`."""
    if _is_torch(mu_h):
        return mu_h - pi * mu_h.sum(-1, keepdim=True)
    return mu_h - pi * mu_h.sum(axis=-1, keepdims=True)
