r"""Interval estimates for multi-seed comparisons: bootstrap CIs, IQM, paired differences, seeds to resolve.

Every comparison in the lag study is over a handful of seeds, so every number
comes with a 95% confidence interval from the bootstrap over seeds (percentile
intervals, ``n_boot`` resamples from a seeded generator: the same data give the
same interval). Two settings trained with the same seeds share the SFT start,
the problem stream and the evaluation draws, so they are compared through the
per-seed differences (paired), not through two unpaired means.

* :func:`bootstrap_ci` — a statistic of one sample and its percentile interval;
* :func:`stratified_bootstrap_ci` — a statistic of an ``(S, K)`` table whose
  columns are strata (lags, say), resampling the seeds of each column
  independently (rliable's stratified bootstrap);
* :func:`iqm` — the interquartile mean (mean of the middle 50%, rliable's
  ``aggregate_iqm``: ``scipy.stats.trim_mean(x, 0.25)``);
* :func:`paired` — mean per-seed difference with its interval;
* :func:`seeds_to_resolve` — how many seeds a paired difference of the observed
  size and spread needs to be resolved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["bootstrap_ci", "stratified_bootstrap_ci", "iqm", "Paired", "paired", "seeds_to_resolve"]

N_BOOT = 10_000
"""Bootstrap resamples of every interval."""
MIN_SEEDS = 5
"""Fewest seeds whose bootstrap interval may resolve a difference (with 2 seeds it has 3 distinct values)."""


def iqm(x, axis=None) -> float | np.ndarray:
    """Interquartile mean: the mean of the middle 50% (25% trimmed from each end)."""
    return stats.trim_mean(np.asarray(x, dtype=np.float64), 0.25, axis=axis)


def _finite(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        raise ValueError(f"{name}: need at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: holds a value that is not finite; drop the cell or fix its run")
    return x


def bootstrap_ci(x, stat=np.mean, *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """``(stat(x), low, high)``: the statistic of the sample ``x`` (S,) and its percentile bootstrap interval.

    ``stat`` maps an array ``(n_boot, S)`` along its last axis (``np.mean``,
    :func:`iqm`). One value gives a zero-width interval.
    """
    x = _finite(x, "x")
    point = float(stat(x[None], axis=-1)[0])
    if x.size == 1:
        return point, point, point
    rng = np.random.default_rng(seed)
    boot = stat(x[rng.integers(0, x.size, (n_boot, x.size))], axis=-1)  # (n_boot,)
    a = (1 - level) / 2
    return point, float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))


def stratified_bootstrap_ci(table, stat=np.mean, *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0):
    """``(stat, low, high)`` of a table ``(S, K)``: seeds ``S`` resampled within each stratum (column) ``K``.

    ``stat`` is applied to the flattened resampled table (``(n_boot, S * K)``
    along the last axis), so ``np.mean`` averages over strata with equal weight
    and :func:`iqm` takes the IQM of all runs, as rliable does across tasks.
    """
    t = _finite(table, "table")
    if t.ndim != 2:
        raise ValueError(f"table: must be (seeds, strata), got shape {t.shape}")
    S, K = t.shape
    point = float(stat(t.reshape(1, -1), axis=-1)[0])
    if S == 1:
        return point, point, point
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, S, (n_boot, S, K))  # (n_boot, S, K)
    boot = stat(np.take_along_axis(np.broadcast_to(t, (n_boot, S, K)), idx, axis=1).reshape(n_boot, -1), axis=-1)
    a = (1 - level) / 2
    return point, float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))


@dataclass(frozen=True)
class Paired:
    """A paired difference ``b - a`` over seeds."""

    mean: float
    """Mean per-seed difference."""
    low: float
    """Lower end of its 95% bootstrap interval."""
    high: float
    """Upper end."""
    sd: float
    """Standard deviation of the per-seed differences (ddof = 1; nan for one pair)."""
    n: int
    """Seeds both settings have."""

    @property
    def resolved(self) -> bool:
        """Whether the interval excludes 0, from at least ``MIN_SEEDS`` seeds (fewer give no usable interval)."""
        return self.n >= MIN_SEEDS and (self.low > 0 or self.high < 0)

    def seeds_needed(self) -> float:
        """Seeds to resolve a difference of this size and spread (:func:`seeds_to_resolve`)."""
        return seeds_to_resolve(self.mean, self.sd)


def paired(a: dict, b: dict, *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Paired:
    """``b[s] - a[s]`` over the seeds ``s`` both dicts hold: mean, bootstrap interval, spread.

    Raises ValueError with fewer than two common seeds.
    """
    keys = sorted(k for k in a if k in b)
    if len(keys) < 2:
        raise ValueError(f"paired: need at least 2 common seeds, got {len(keys)}")
    d = np.array([b[k] - a[k] for k in keys], dtype=np.float64)
    m, lo, hi = bootstrap_ci(d, level=level, n_boot=n_boot, seed=seed)
    return Paired(m, lo, hi, float(d.std(ddof=1)), len(keys))


def seeds_to_resolve(mean: float, sd: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    r"""Seeds a paired difference needs to be resolved: the normal-approximation sample size

    .. math:: n = \left(\frac{(z_{1-\alpha/2} + z_{\mathrm{power}})\, \mathrm{sd}}{\mathrm{mean}}\right)^2

    (two-sided test at level ``alpha`` with the given power). ``inf`` for a zero
    mean; ``nan`` when the spread is unknown.
    """
    if not math.isfinite(sd):
        return math.nan
    if mean == 0:
        return math.inf
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(math.ceil((z * sd / abs(mean)) ** 2))
