"""Hypothesis strategies for bandits, shared by the tests and by users checking their own objectives.

Named after the axis they draw (thinc style). Each returns NumPy arrays with
arms on the last axis. Example::

    from hypothesis import given
    from theory.strategies import bandits, temperatures

    @given(bandits(), temperatures())
    def test_my_target(bandit, beta):
        mu, r = bandit
        ...

Needs ``hypothesis`` (the ``test`` extra).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

__all__ = ["arm_counts", "distributions", "rewards", "bandits", "temperatures", "deltas"]


def arm_counts(min_arms: int = 2, max_arms: int = 8):
    """Number of arms K."""
    if not 1 <= min_arms <= max_arms:
        raise ValueError(f"need 1 <= min_arms <= max_arms, got min_arms={min_arms!r}, max_arms={max_arms!r}")
    return st.integers(min_arms, max_arms)


@st.composite
def distributions(draw, K: int | None = None, *, min_mass: float = 1e-3, allow_zeros: bool = False):
    """A distribution over K arms; entries >= ``min_mass`` before normalization.

    ``allow_zeros=True`` sets some arms (never all) exactly to zero.
    """
    K = draw(arm_counts()) if K is None else K
    if not 0 < min_mass <= 1:
        raise ValueError(f"min_mass must be in (0, 1], got {min_mass!r}")
    w = np.array(draw(st.lists(st.floats(min_mass, 1.0), min_size=K, max_size=K)))
    if allow_zeros and K > 1:
        zero = np.array(draw(st.lists(st.booleans(), min_size=K, max_size=K)))
        if zero.all():
            zero[draw(st.integers(0, K - 1))] = False
        w = np.where(zero, 0.0, w)
    return w / w.sum()


@st.composite
def rewards(draw, K: int, *, low: float = 0.0, high: float = 1.0):
    """Rewards in [low, high] for K arms."""
    return np.array(draw(st.lists(st.floats(low, high), min_size=K, max_size=K)))


@st.composite
def bandits(draw, min_arms: int = 2, max_arms: int = 8, *, min_mass: float = 1e-3, allow_zeros: bool = False):
    """A pair ``(mu, r)``: behaviour policy and rewards in [0, 1], same K."""
    K = draw(arm_counts(min_arms, max_arms))
    return draw(distributions(K, min_mass=min_mass, allow_zeros=allow_zeros)), draw(rewards(K))


def temperatures(low: float = 1e-2, high: float = 1e2):
    """A temperature beta > 0, log-uniform in [low, high]."""
    if not 0 < low <= high < np.inf:
        raise ValueError(f"temperatures need 0 < low <= high < inf, got low={low!r}, high={high!r}")
    return st.floats(np.log10(low), np.log10(high)).map(lambda x: float(10.0**x))


def deltas(low: float = 0.0, high: float = 3.0):
    """A shift delta for the beta-shifted-mean baseline."""
    return st.floats(low, high)
