"""Standard bandits: fixed, named test cases shared by figures, tables and notebooks.

Each is data (behaviour policy ``mu`` and rewards ``r`` over K arms), not code,
so results computed on them are comparable across the toolkit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import as_float_array, check_distribution

__all__ = ["Bandit", "STANDARD_BANDITS"]


@dataclass(frozen=True)
class Bandit:
    """One prompt with K completions: behaviour policy ``mu`` (K,) and rewards ``r`` (K,)."""

    name: str
    mu: np.ndarray
    r: np.ndarray
    description: str

    def __post_init__(self):
        mu = check_distribution(self.mu, "mu")
        r = as_float_array(self.r, "r")
        if mu.shape != r.shape or mu.ndim != 1:
            raise ValueError(f"mu and r must both have shape (K,), got {mu.shape} and {r.shape}")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "r", r)


def _graded():
    r = np.array([1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0.0, 0.0])
    mu = np.array([0.05, 0.10, 0.10, 0.15, 0.15, 0.15, 0.15, 0.15])
    return Bandit("graded", mu, r, "8 arms, partial credit; the best arm is the least likely under mu")


def _sparse():
    K = 16
    mu = np.full(K, 0.9 / (K - 1))
    mu[0] = 0.1
    r = np.zeros(K)
    r[0] = 1.0
    return Bandit("sparse", mu, r, "16 arms, one correct arm with mu = 0.1 (pass@1 = 10%), reward 1 else 0")


def _two_correct():
    mu = np.array([0.02, 0.28, 0.35, 0.35])
    r = np.array([1.0, 1.0, 0.0, 0.0])
    return Bandit("two-correct", mu, r, "4 arms, two correct arms, one of them rare (mu = 0.02)")


#: The standard bandits by name.
STANDARD_BANDITS = {b.name: b for b in (_graded(), _sparse(), _two_correct())}
