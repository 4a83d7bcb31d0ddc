"""The shared kernels of theory._numerics against scipy and torch, including rows with -inf entries."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp
import torch

from theory._numerics import flow_field, log_mean_exp, log_softmax, logsumexp, softmax


@pytest.fixture
def z():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 7)) * 50
    z[1, 3] = -np.inf
    z[2, :] = -np.inf
    return z


def test_logsumexp_and_softmax_match_scipy(z):
    fin = z[[0, 1, 3, 4]]
    np.testing.assert_allclose(logsumexp(fin), sp.logsumexp(fin, axis=-1), rtol=1e-15, atol=0)
    np.testing.assert_allclose(softmax(fin), sp.softmax(fin, axis=-1), rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(log_softmax(fin), sp.log_softmax(fin, axis=-1), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(log_mean_exp(fin), sp.logsumexp(fin, axis=-1) - np.log(7), rtol=1e-15)
    assert softmax(fin)[1, 3] == 0.0


def test_all_minus_inf_row_gives_minus_inf_not_nan(z):
    assert logsumexp(z)[2] == -np.inf
    assert np.isfinite(logsumexp(z)[[0, 1, 3, 4]]).all()


def test_torch_and_numpy_agree(z):
    fin = z[[0, 1, 3, 4]]
    t = torch.tensor(fin)
    np.testing.assert_allclose(logsumexp(t).numpy(), logsumexp(fin), rtol=1e-14)
    np.testing.assert_allclose(softmax(t).numpy(), softmax(fin), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(log_softmax(t).numpy(), log_softmax(fin), rtol=1e-12, atol=1e-13)
    assert logsumexp(t, keepdims=True).shape == (4, 1)


def test_flow_field_is_orthogonal_to_the_softmax_null_direction():
    rng = np.random.default_rng(1)
    pi = softmax(rng.normal(size=(3, 6)))
    mh = rng.normal(size=(3, 6))
    g = flow_field(pi, mh)
    # d/dt sum(pi) = sum(pi * (g - <pi, g>)) = 0 and g sums to sum(mh) (1 - 1) = 0
    np.testing.assert_allclose(g.sum(-1), 0.0, atol=1e-14)
    np.testing.assert_allclose(flow_field(torch.tensor(pi), torch.tensor(mh)).numpy(), g, rtol=1e-13, atol=1e-15)
