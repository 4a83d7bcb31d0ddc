"""theory.measures.kl_to_gibbs: equal to kl(p, gibbs_target(...)) where nothing underflows, finite where it does.

The underflow reference is mpmath at 50 digits (the Gibbs target's small arm is exp(-1000)-scale).
"""

import mpmath as mp
import numpy as np
import pytest

from theory.measures import kl, kl_to_gibbs
from theory.values import gibbs_target


def test_equals_kl_against_the_gibbs_target_without_underflow():
    rng = np.random.default_rng(0)
    mu = rng.dirichlet(np.ones(6), size=20)
    p = rng.dirichlet(np.ones(6), size=20)
    r = rng.uniform(size=(20, 6))
    for beta in (0.1, 1.0, 10.0):
        np.testing.assert_allclose(kl_to_gibbs(p, mu, r, beta), kl(p, gibbs_target(mu, r, beta)), rtol=1e-10)


def test_finite_where_the_gibbs_target_underflows():
    # OAPL's published beta = 1e-3 on a pass/fail prompt: the Gibbs target's failing arm is ~e^{-1000}
    mu, r, beta = np.array([0.9, 0.1]), np.array([0.0, 1.0]), 1e-3
    p = np.array([1e-67, 1.0 - 1e-67])
    assert np.isinf(kl(p, gibbs_target(mu, r, beta)))  # the naive route: q underflows to 0
    mp.mp.dps = 50
    z = [mp.log(mp.mpf(0.9)), mp.log(mp.mpf(0.1)) + mp.mpf(1) / mp.mpf(beta)]
    lse = mp.log(mp.exp(z[0]) + mp.exp(z[1]))
    ps = [mp.mpf("1e-67"), 1 - mp.mpf("1e-67")]
    ref = sum(pi * (mp.log(pi) - (zi - lse)) for pi, zi in zip(ps, z))
    assert kl_to_gibbs(p, mu, r, beta) == pytest.approx(float(ref), rel=1e-6)


def test_mass_off_the_behaviour_support_is_infinite_and_zero_terms_vanish():
    mu, r = np.array([0.5, 0.5, 0.0]), np.array([0.0, 1.0, 2.0])
    assert np.isinf(kl_to_gibbs(np.array([0.5, 0.4, 0.1]), mu, r, 0.5))
    q = gibbs_target(mu, r, 0.5)
    assert kl_to_gibbs(q, mu, r, 0.5) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="beta"):
        kl_to_gibbs(q, mu, r, 0.0)
