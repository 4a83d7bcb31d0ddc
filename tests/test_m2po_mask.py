"""M2PO's second-moment mask against its definition, computed by a full sort in float64."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.losses import m2po_mask


def reference_mask(logp, logp_mu, mask, tau):
    """Keep the n smallest s^2 with the largest n whose mean is <= tau (ties at the cut kept)."""
    s2 = (logp.double() - logp_mu.double()).numpy() ** 2
    valid = mask.numpy() > 0
    vals = np.sort(s2[valid])
    means = np.cumsum(vals) / np.arange(1, vals.size + 1)
    n_keep = int((means <= tau).sum())
    if n_keep == 0:
        return np.zeros_like(s2)
    return (valid & (s2 <= vals[n_keep - 1])).astype(float)


@settings(max_examples=200, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 700)),
    scale=st.sampled_from([0.01, 0.1, 0.3, 1.0, 3.0]),
    tau=st.sampled_from([1e-3, 0.04, 0.5]),
    ties=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_mask_equals_definition(shape, scale, tau, ties, seed):
    g = torch.Generator().manual_seed(seed)
    old = torch.randn(shape, generator=g, dtype=torch.float64) - 1.0
    d = scale * torch.randn(shape, generator=g, dtype=torch.float64) * torch.rand(shape, generator=g, dtype=torch.float64).pow(4).reciprocal().clamp(max=30)
    if ties:
        d = torch.round(d * 4) / 4  # many exact ties, also at the cut
    lp = old + d
    mask = (torch.rand(shape, generator=g) < 0.8).double()
    got = m2po_mask(lp, old, mask, tau=tau).numpy()
    np.testing.assert_array_equal(got, reference_mask(lp, old, mask, tau))


@pytest.mark.parametrize("n", [1, 255, 256, 257, 1025, 5000])
def test_cut_at_every_topk_boundary(n):
    """Drop exactly d of n tokens, from none to all: the edges of the sampled estimate's top-k and of the tail bound."""
    tau = 0.04
    for d in sorted({0, 1, n // 2, 255, 256, 257, 1023, 1024, 1025, n - 1, n}):
        if d > n:
            continue
        s = torch.full((n,), 0.01, dtype=torch.float64)
        s[:d] = 10.0 * tau * n + torch.arange(d, dtype=torch.float64)  # any one of them alone breaks the mean
        lp = s.sqrt()
        got = m2po_mask(lp, torch.zeros(n, dtype=torch.float64), tau=tau)
        want = reference_mask(lp, torch.zeros(n, dtype=torch.float64), torch.ones(n), tau)
        np.testing.assert_array_equal(got.numpy(), want)
        assert int(got.sum()) == (n - d if d < n else 0)


def test_all_pass_and_empty():
    lp = torch.zeros(3, 4)
    assert torch.equal(m2po_mask(lp, lp, torch.ones(3, 4)), torch.ones(3, 4))
    assert torch.equal(m2po_mask(lp, lp, torch.zeros(3, 4)), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="tau"):
        m2po_mask(lp, lp, tau=0.0)


def test_tail_exactly_at_tau():
    """Values equal to tau pass (mean <= tau), whatever the rounding of their sum."""
    tau = 0.1
    s2 = torch.cat([torch.full((1000,), tau, dtype=torch.float64), torch.tensor([5.0, 7.0], dtype=torch.float64)])
    got = m2po_mask(s2.sqrt(), torch.zeros_like(s2), tau=tau)
    assert got[:1000].all() and not got[1000:].any()


def test_sample_that_misses_the_tail():
    """The strided sample sees none of the large values (all at odd positions): the fallback top-k finds the cut."""
    n, tau = 8192, 0.04
    s2 = torch.full((n,), 0.01, dtype=torch.float64)
    odd = torch.arange(1, n, 2)[: n // 5]
    s2[odd] = 10.0 * tau * n + torch.arange(odd.numel(), dtype=torch.float64)
    got = m2po_mask(s2.sqrt(), torch.zeros(n, dtype=torch.float64), tau=tau)
    want = reference_mask(s2.sqrt(), torch.zeros(n, dtype=torch.float64), torch.ones(n), tau)
    np.testing.assert_array_equal(got.numpy(), want)
    assert int(got.sum()) == n - odd.numel()
