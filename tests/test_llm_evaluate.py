"""pass@k: the unbiased estimator against hand-worked values and the binomial form; paired differences."""

from math import comb

import numpy as np
import pytest

from sims.llm.evaluate import mean_and_se, paired_difference, pass_at_k, pass_at_k_summary


def test_hand_values():
    # n = 5, c = 2: pass@1 = 2/5; pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10; pass@3 = 1 - C(3,3)/C(5,3) = 1 - 1/10
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4, abs=1e-15)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7, abs=1e-15)
    assert pass_at_k(5, 2, 3) == pytest.approx(0.9, abs=1e-15)
    assert pass_at_k(5, 2, 4) == 1.0 and pass_at_k(5, 0, 5) == 0.0 and pass_at_k(5, 5, 1) == 1.0


def test_equals_binomial_form():
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)


def test_vectorized_and_summary():
    n, c = np.array([4, 4, 4]), np.array([0, 2, 4])
    np.testing.assert_allclose(pass_at_k(n, c, 2), [0.0, 1 - 1 / 6, 1.0])
    s = pass_at_k_summary(n, c, (1, 2))
    assert s["pass@1"] == pytest.approx(0.5)
    # per-problem pass@1 = 0, 0.5, 1: sample std 0.5, se 0.5 / sqrt(3)
    assert s["pass@1_se"] == pytest.approx(0.5 / np.sqrt(3))
    assert mean_and_se([0.3]) == (0.3, 0.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="k"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="c"):
        pass_at_k(3, 4, 1)


def test_paired_difference_hand_values():
    # differences 1, 2, 1 on the common keys 0, 1, 2 (key 3 is b's alone): mean 4/3,
    # sd = sqrt(((1/3)^2 + (2/3)^2 + (1/3)^2) / 2) = sqrt(1/3), se = sd / sqrt(3) = 1/3
    d, se, n = paired_difference({0: 1.0, 1: 2.0, 2: 4.0}, {0: 2.0, 1: 4.0, 2: 5.0, 3: 100.0})
    assert n == 3 and d == pytest.approx(4 / 3, abs=1e-15) and se == pytest.approx(1 / 3, abs=1e-15)
    # a shared offset per unit cancels: b = a + 0.5 has no spread, whatever a's spread
    a = {k: float(v) for k, v in enumerate([0.0, 10.0, -7.0, 3.0])}
    d, se, n = paired_difference(a, {k: v + 0.5 for k, v in a.items()})
    assert (d, n) == (pytest.approx(0.5, abs=1e-15), 4) and se < 1e-15
    # ... while the combined s.e. of the two unpaired means sees a's spread (sd 7.05, se 3.52) twice
    se_a = mean_and_se(list(a.values()))[1]
    assert se_a == pytest.approx(np.std([0.0, 10.0, -7.0, 3.0], ddof=1) / 2, abs=1e-15) and np.hypot(se_a, se_a) > 4.9
    with pytest.raises(ValueError, match="at least 2 common keys"):
        paired_difference({0: 1.0, 1: 2.0}, {1: 3.0, 2: 4.0})
    with pytest.raises(ValueError, match="not finite"):
        paired_difference({0: 1.0, 1: 2.0}, {0: float("nan"), 1: 4.0})
