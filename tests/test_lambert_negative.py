"""The negative-regime search of ``theory.lambert``: the pruned search against the exhaustive one, its loss bound."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

import theory as T
from theory import lambert as L
from theory.strategies import bandits, deltas, temperatures


def _negative_rows(rng, n, K):
    """Random negative-regime rows (n, K): Dirichlet mu with small and large alpha, near-degenerate
    mu (one arm holds almost all mass), zeros, tied rewards; baseline above the soft value."""
    mu, adv, beta = np.empty((n, K)), np.empty((n, K)), np.empty(n)
    for i in range(n):
        kind = i % 4
        if kind == 0:
            m = rng.dirichlet(np.full(K, rng.choice([0.05, 0.3, 1.0, 30.0])))
        elif kind == 1:  # near-degenerate: tiny masses around one big arm
            m = 10.0 ** rng.uniform(-12, -3, K)
            m[rng.integers(K)] = 1.0
        else:
            m = rng.dirichlet(np.ones(K))
            m[rng.uniform(size=K) < 0.25] = 0.0
            m[rng.integers(K)] += 0.1
        mu[i] = m / m.sum()
        r = rng.uniform(size=K) if kind != 3 else rng.integers(0, 3, K).astype(float)  # ties
        beta[i] = 10.0 ** rng.uniform(-1.3, 0.7)
        adv[i] = r - T.soft_value(mu[i], r, beta[i]) - beta[i] * 10.0 ** rng.uniform(-6, 1)
    return mu, adv, beta


def _search(mu, adv, beta, exhaustive=False):
    """The candidates ``_solve_negative`` evaluates on negative-regime rows."""
    mu, a, beta, _ = L._prepare(mu, adv, beta)
    lmu = L._logmu(mu)
    g0, noise = L._g0_and_noise(mu, lmu, a)
    assert np.all(g0 < -noise)
    return L._solve_negative(mu, lmu, a, g0, beta, exhaustive=exhaustive)


def _check_same_minimizer(mu, adv, beta):
    """The pruned search's global minimizer is the exhaustive search's; returns the two candidate counts.

    Exception checked here too: where arms j < k share (mu, adv), their branches are mirror images
    with equal losses; the pruned search then answers with the first arm j, the exhaustive one with
    whichever rounds lowest, and the two targets are equal after swapping arms j and k. Where the
    (mu, adv) of two arms agree only to a few ulps, their losses tie to rounding and either branch is
    a global minimizer: the losses must agree to 1e-12.
    """
    mu, adv = np.atleast_2d(mu), np.atleast_2d(adv)
    n = len(mu)
    rows_p, branch_p, pi_p, eta_p, loss_p, _ = _search(mu, adv, beta)
    rows_f, branch_f, pi_f, eta_f, loss_f, _ = _search(mu, adv, beta, exhaustive=True)
    bp, bf = L._argmin_by_row(rows_p, loss_p, n), L._argmin_by_row(rows_f, loss_f, n)
    want, same = pi_f[bf].copy(), np.ones(n, bool)
    for i in np.flatnonzero(branch_p[bp] != branch_f[bf]):
        j, k = branch_p[bp][i], branch_f[bf][i]
        assert loss_p[bp][i] == pytest.approx(loss_f[bf][i], rel=1e-12)  # both global to rounding
        if mu[i, j] == mu[i, k] and adv[i, j] == adv[i, k]:
            assert 0 <= j < k
            want[i, [j, k]] = want[i, [k, j]]
        else:  # arms whose (mu, adv) agree to a few ulps: a tie float64 cannot break (module docstring)
            assert j >= 0 and k >= 0 and mu[i, j] == pytest.approx(mu[i, k], rel=1e-12)
            assert adv[i, j] == pytest.approx(adv[i, k], rel=1e-12, abs=1e-12)
            same[i] = False
    np.testing.assert_allclose(pi_p[bp][same], want[same], rtol=0, atol=1e-13)
    np.testing.assert_allclose(eta_p[bp][same], eta_f[bf][same], rtol=1e-13, atol=0)
    # the pruned search evaluates a subset of the exhaustive one's candidates
    for r, b, e in zip(rows_p, branch_p, eta_p, strict=True):
        same = eta_f[(rows_f == r) & (branch_f == b)]
        assert np.abs(same - e).min() <= 1e-12 * abs(e)
    return rows_p.size, rows_f.size


@pytest.mark.parametrize("K", [2, 3, 5, 9, 17, 33, 60])
def test_pruned_search_finds_the_exhaustive_minimizer(K):
    # Exhaustive reference: every bracket's roots polished and compared (the search before pruning).
    rng = np.random.default_rng(1000 + K)
    mu, adv, beta = _negative_rows(rng, 120, K)
    evaluated, total = _check_same_minimizer(mu, adv, beta)
    if K >= 17:
        assert evaluated < total  # the bound prunes (otherwise this test would not test it)


@pytest.mark.parametrize("scale", [1e-200, 1e-8, 1.0, 1e3, 1e100, 1e300])
def test_pruned_search_finds_the_exhaustive_minimizer_at_every_scale(scale):
    # Every a = adv/beta < 0, so the regime stays negative under scaling; the logs of the losses
    # then range from ~ -900 to ~ 1e300, and the pruning tolerance must follow them.
    rng = np.random.default_rng(21)
    mu, adv, _ = _negative_rows(rng, 60, 12)
    r = rng.uniform(size=adv.shape)
    adv = (r - r.max(-1, keepdims=True) - rng.uniform(0.01, 1.0, (len(r), 1))) * scale
    _check_same_minimizer(mu, adv, 1.0)


def test_pruned_search_on_a_few_hundred_arms():
    rng = np.random.default_rng(5)
    for alpha in (0.1, 1.0):
        mu = rng.dirichlet(np.full(400, alpha))
        r = rng.uniform(size=400)
        adv = r - T.soft_value(mu, r, 0.5) - 0.05
        evaluated, total = _check_same_minimizer(mu, adv, 0.5)
        assert total > 50 and evaluated <= 10


def test_arms_sharing_mu_and_adv_are_searched_once():
    # One heavy arm and K - 1 identical light ones: the K - 1 one-arm branches are mirror images
    # with equal losses (the exhaustive search picks one by rounding); the pruned search answers
    # with the first and evaluates a handful of roots, not K - 1.
    for K, big, delta in [(60, 0.99, 0.5), (60, 0.5, 1.0), (200, 0.9, 0.3)]:
        mu = np.full(K, (1.0 - big) / (K - 1))
        mu[0] = big
        r = np.ones(K)
        r[0] = 0.0
        adv = r - T.soft_value(mu, r, 0.5) - delta
        evaluated, total = _check_same_minimizer(mu, adv, 0.5)
        assert total >= K - 1 and evaluated <= 3
        pi, _ = T.lambert_target(mu, adv, 0.5)
        assert pi[1] > pi[2] == pi[K - 1]  # arm 1 carries the W_{-1} branch


@settings(max_examples=150, deadline=None)
@given(bandits(min_arms=2, max_arms=12, min_mass=1e-9, allow_zeros=True), temperatures(0.03, 30.0), deltas(1e-6, 3.0))
def test_pruned_search_matches_exhaustive_on_hypothesis_bandits(bandit, beta, delta):
    mu, r = bandit
    adv = r - T.soft_value(mu, r, beta) - delta * beta  # baseline above the soft value: negative regime
    if T.regime_of(mu, adv, beta) != -1:  # delta within the rounding of the soft value
        return
    _check_same_minimizer(mu, adv, beta)
    pi, _ = T.lambert_target(mu, adv, beta)
    sp = T.lambert_stationary_points(mu, adv, beta)
    hit = np.flatnonzero(np.abs(sp.pi[: sp.count] - pi).max(-1) <= 1e-13)  # lambert_target's point is listed
    assert hit.size, "lambert_target's answer is not among the stationary points"
    assert sp.loss[hit[0]] == pytest.approx(sp.loss[sp.global_index], rel=1e-12)  # and global to rounding


def test_mirror_minima_of_equal_arms_are_marked_as_lambert_target_answers():
    # Arms 2 and 3 share (mu, r): two global minima, mirror images (arm 2 or arm 3 on W_{-1}), whose
    # losses differ by rounding only. A run of the hypothesis test above found global_index on the
    # second while lambert_target answers with the first arm of the class.
    mu, r, beta = np.full(4, 0.25), np.array([0.0, 0.0, 1.0, 1.0]), 1.0
    adv = r - T.soft_value(mu, r, beta) - 1.0
    pi, _ = T.lambert_target(mu, adv, beta)
    sp = T.lambert_stationary_points(mu, adv, beta)
    assert sorted(sp.branch_arm[: sp.count]) == [2, 3] and sp.loss[0] == pytest.approx(sp.loss[1], rel=1e-14)
    assert sp.branch_arm[sp.global_index] == 2 and pi[2] > pi[3]
    np.testing.assert_allclose(pi, sp.pi[sp.global_index], rtol=0, atol=1e-13)
    # the class is found by equal (mu, adv), whatever their position
    perm = [3, 0, 2, 1]
    pi_p, _ = T.lambert_target(mu[perm], adv[perm], beta)
    sp_p = T.lambert_stationary_points(mu[perm], adv[perm], beta)
    assert sp_p.branch_arm[sp_p.global_index] == 0
    np.testing.assert_allclose(pi_p, sp_p.pi[sp_p.global_index], rtol=0, atol=1e-13)


def test_loss_bound_is_below_the_loss_of_every_root_in_its_bracket():
    # The exactness of the pruning rests on this: the bound of a bracket never exceeds the loss
    # (polished, as compared by the search) of a root found in it.
    rng = np.random.default_rng(11)
    gaps = []
    for K in (3, 8, 30, 90):
        mu, adv, beta = _negative_rows(rng, 60, K)
        mu, a, beta, _ = L._prepare(mu, adv, beta)
        lmu = L._logmu(mu)
        g0, _ = L._g0_and_noise(mu, lmu, a)
        cmax = -1.0 - np.where(mu > 0, a, -np.inf).max(-1)
        br = L._scan_brackets(lmu, a, cmax)
        rows, arms, c, key = L._bracket_roots(lmu, a, br)
        _, _, log_loss, _ = L._score(mu, lmu, a, g0, beta, rows, arms, c)
        cell = key % (L._GRID + L._EDGE)
        index = {(r, j, k): b for r, j, k, b in zip(br.row, br.arm, br.cell, br.bound, strict=True)}
        bound = np.array([index[(r, j, k)] for r, j, k in zip(rows, arms, cell, strict=True)])
        gap = log_loss - 2.0 * np.log(beta[rows]) - bound
        assert gap.min() >= -1e-12
        gaps.append(gap)
    assert np.median(np.concatenate(gaps)) < 0.5  # and it is tight: within a factor e^0.5 for most roots


def test_scan_in_stretches_equals_one_pass(monkeypatch):
    # The grid is walked a few points at a time (O(K) memory); the seam between stretches loses nothing.
    rng = np.random.default_rng(3)
    mu, adv, beta = _negative_rows(rng, 40, 12)
    mu, a, beta, _ = L._prepare(mu, adv, beta)
    lmu = L._logmu(mu)
    cmax = -1.0 - np.where(mu > 0, a, -np.inf).max(-1)
    one = L._scan_brackets(lmu, a, cmax)
    monkeypatch.setattr(L, "_SCAN_ENTRIES", 1)  # one grid point per stretch
    many = L._scan_brackets(lmu, a, cmax)
    assert one.row.size > 40
    for name in ("row", "arm", "cell", "dip", "side"):
        np.testing.assert_array_equal(getattr(one, name), getattr(many, name))
    for name in ("lo", "hi", "bound"):
        np.testing.assert_allclose(getattr(one, name), getattr(many, name), rtol=1e-15, atol=0)


def test_large_bandit_minimizer_is_stationary_and_beats_its_neighbours():
    # K = 20,000: the exhaustive search would evaluate thousands of roots at O(K) each; check the
    # answer directly: it solves the stationarity equations with one arm on W_{-1} and no other
    # evaluated candidate is lower.
    rng = np.random.default_rng(0)
    K = 20_000
    mu = rng.dirichlet(np.ones(K))
    r = rng.uniform(size=K)
    adv = r - T.soft_value(mu, r, 0.5) - 0.05
    pi, eta = T.lambert_target(mu, adv, 0.5)
    assert eta < 0 and pi.sum() == pytest.approx(1.0, abs=1e-14)
    w = -eta * pi / mu
    assert (w > 1).sum() == 1
    s, a = np.log(pi / mu), adv / 0.5
    np.testing.assert_allclose(s + eta * pi / mu, a, rtol=0, atol=1e-9 * np.abs(a).max())
    rows, branch, _, _, log_loss, _ = _search(mu[None], adv[None], 0.5)
    assert branch[np.argmin(log_loss)] == int(np.argmax(w))


def test_benchmark_smoke():
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "benchmarks/bench_lambert_negative.py", "--smoke"]
    res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True, timeout=600)
    out = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert [(r["case"], r["size"], r["status"]) for r in out] == [("bandit", 500, "ok"), ("sequence", 1024, "ok")]
    assert out[0]["eta"] < 0 and out[0]["peak_rss_mib"] >= out[0]["rss_after_import_mib"] > 0
