"""Bad and unusual input across the public theory API: each case is a named error or the right answer.

Every case below either

* is refused: a ``ValueError`` whose message names the argument (``match=``), and says
  what is wrong (and, where it helps, what to do), or
* is accepted: the answer equals a reference computed another way (the float64 array the
  input stands for, the plain Python number, the Fraction's float, mpmath).

None may return NaN or a silently wrong answer. Test ids name the class of input
(``none-mu``, ``float32-softmax``, ``numpy-scalar-beta``, ...) and the function.
"""

from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest
import torch

import theory as T
from theory.advantages import conditional_group_advantage, group_advantage, population_advantage

MU = np.array([0.2, 0.5, 0.3])
R = np.array([1.0, 0.0, 0.5])
ADV = R - MU @ R
BETA = 0.3


# ----------------------------------------------------------------------------- bad distributions

# (id, value, message pattern with {n} for the argument's name)
BAD_DISTRIBUTIONS = [
    ("none", None, "{n} must be an array of probabilities, got None"),
    ("string", "0.2,0.5,0.3", "{n} must be an array of probabilities, got the string"),
    ("list-of-strings", ["0.2", "0.5", "0.3"], "{n} must be an array of probabilities, got strings"),
    ("booleans", [True, False, False], "{n} must be an array of probabilities, got booleans"),
    ("complex", MU + 0j, "{n} is complex"),
    ("nan", [0.2, np.nan, 0.3], r"{n} contains NaN at index \(1,\)"),
    ("inf", [0.2, np.inf, 0.3], r"{n} contains inf at index \(1,\)"),
    ("negative", [0.7, -0.2, 0.5], r"{n} has negative entries .* index \(1,\)"),
    ("unnormalized", [0.2, 0.5, 0.4], "{n} is not normalized"),
    ("float32-unnormalized", np.float32([0.2, 0.5, 0.31]), "{n} is not normalized .* float32"),
    ("no-arms", [], "{n} has no arms"),
    ("scalar", 1.0, "{n} must have a last axis of arms"),
    ("ragged", [[0.5, 0.5], [1.0]], "{n} must be an array of probabilities .*rectangular"),
    ("tensor-requires-grad", torch.tensor(MU, requires_grad=True), r"{n} is a torch tensor that requires grad.*{n}\.detach\(\)"),
    ("list-with-none", [0.2, None, 0.8], r"{n} must be an array of probabilities, got None at index \(1,\)"),
    ("masked-array", np.ma.array(MU, mask=[0, 1, 0]), r"{n} is a masked array .*{n}\.filled"),
    ("wrong-arms", [0.5, 0.5], "{n} has 2 arms but"),
]

# functions of one distribution argument (name, call), everything else fixed and valid
DISTRIBUTION_TAKERS = {
    "lambert_target": ("mu", lambda x: T.lambert_target(x, ADV, BETA)),
    "lambert_stationary_points": ("mu", lambda x: T.lambert_stationary_points(x, ADV, BETA)),
    "relaxed_lambert_target": ("mu", lambda x: T.relaxed_lambert_target(x, ADV, BETA)),
    "regime_of": ("mu", lambda x: T.regime_of(x, ADV, BETA)),
    "soft_value": ("mu", lambda x: T.soft_value(x, R, BETA)),
    "gibbs_target": ("mu", lambda x: T.gibbs_target(x, R, BETA)),
    "mean_baseline": ("mu", lambda x: T.mean_baseline(x, R)),
    "soft_value_baseline": ("mu", lambda x: T.soft_value_baseline(x, R, BETA)),
    "decoupled_soft_value_baseline": ("mu", lambda x: T.decoupled_soft_value_baseline(x, R, 1.0)),
    "shifted_mean_baseline": ("mu", lambda x: T.shifted_mean_baseline(x, R, BETA, 1.0)),
    "kl-p": ("p", lambda x: T.kl(x, MU)),
    "kl-q": ("q", lambda x: T.kl(MU, x)),
    "entropy": ("p", lambda x: T.entropy(x)),
    "expected_reward": ("p", lambda x: T.expected_reward(x, R)),
    "beta_eff_kl": ("mu", lambda x: T.beta_eff_kl(x, R, 0.1)),
    "beta_eff_reward": ("mu", lambda x: T.beta_eff_reward(x, R, 0.5)),
    "pessimism_measures-pi": ("pi", lambda x: T.pessimism_measures(x, MU, R, BETA, 0.0)),
    "pessimism_measures-mu": ("mu", lambda x: T.pessimism_measures(MU, x, R, BETA, 0.0)),
    "population_advantage": ("mu", lambda x: population_advantage("grpo", x, R)),
    "conditional_group_advantage": ("mu", lambda x: conditional_group_advantage("mean", x, R, 3)),
    "Bandit": ("mu", lambda x: T.Bandit("b", x, R, "a bandit")),
}
# every kind on the main entry points, the kinds that exercise each check on all the others
ALL_KINDS = {"lambert_target", "soft_value", "kl-p"}
SOME_KINDS = {"none", "list-of-strings", "complex", "nan", "negative", "unnormalized", "tensor-requires-grad"}
NO_ARM_CHECK = {"entropy", "conditional_group_advantage", "Bandit"}  # one array: nothing to compare arms with


def _distribution_cases():
    for fname, (arg, call) in DISTRIBUTION_TAKERS.items():
        for kind, value, pattern in BAD_DISTRIBUTIONS:
            if fname not in ALL_KINDS and kind not in SOME_KINDS:
                continue
            if kind == "wrong-arms" and fname in NO_ARM_CHECK:
                continue
            yield pytest.param(call, value, pattern.format(n=arg), id=f"{kind}-{arg}-{fname}")


@pytest.mark.parametrize("call, value, match", list(_distribution_cases()))
def test_bad_distribution_is_refused_naming_the_argument(call, value, match):
    with pytest.raises(ValueError, match=match):
        call(value)


# ----------------------------------------------------------------------------- bad temperatures and parameters

BAD_POSITIVE = [
    ("nan", np.nan, "{n} must be a finite number > 0, got nan"),
    ("inf", np.inf, "{n} must be a finite number > 0, got inf"),
    ("zero", 0.0, "{n} must be > 0, got 0"),
    ("negative", -0.5, "{n} must be > 0, got -0.5"),
    ("none", None, "{n} must be a number > 0 .*got None"),
    ("string", "0.3", "{n} must be a number > 0 .*got the string"),
    ("boolean", True, "{n} must be a number > 0 .*got the boolean"),
    ("complex", 0.3 + 0j, "{n} is complex"),
    ("tensor-requires-grad", torch.tensor(0.3, requires_grad=True), r"{n} is a torch tensor that requires grad.*\.detach\(\)"),
    ("array-with-nan", [0.3, np.nan], r"{n} contains NaN at index \(1,\)"),
    ("numpy-nan", np.float32("nan"), "{n} must be a finite number > 0, got nan"),
]

TEMPERATURE_TAKERS = {
    "lambert_target": ("beta", lambda b: T.lambert_target(MU, ADV, b)),
    "lambert_stationary_points": ("beta", lambda b: T.lambert_stationary_points(MU, ADV, b)),
    "relaxed_lambert_target": ("beta", lambda b: T.relaxed_lambert_target(MU, ADV, b)),
    "regime_of": ("beta", lambda b: T.regime_of(MU, ADV, b)),
    "soft_value": ("beta", lambda b: T.soft_value(MU, R, b)),
    "gibbs_target": ("beta", lambda b: T.gibbs_target(MU, R, b)),
    "soft_value_baseline": ("beta", lambda b: T.soft_value_baseline(MU, R, b)),
    "decoupled_soft_value_baseline": ("beta1", lambda b: T.decoupled_soft_value_baseline(MU, R, b)),
    "shifted_mean_baseline": ("beta", lambda b: T.shifted_mean_baseline(MU, R, b)),
    "group_soft_value": ("beta", lambda b: T.group_soft_value([[1.0, 0.0, 0.5]], b)),
    "pessimism_measures": ("beta", lambda b: T.pessimism_measures(MU, MU, R, b, 0.0)),
}
TEMPERATURE_KINDS_EVERYWHERE = {"nan", "inf", "zero", "none"}


def _temperature_cases():
    for fname, (arg, call) in TEMPERATURE_TAKERS.items():
        for kind, value, pattern in BAD_POSITIVE:
            if fname not in {"lambert_target", "soft_value"} and kind not in TEMPERATURE_KINDS_EVERYWHERE:
                continue
            if kind == "array-with-nan" and fname == "group_soft_value":
                continue  # one group: a (2,) beta does not broadcast (its own case below)
            yield pytest.param(call, value, pattern.format(n=arg), id=f"{kind}-{arg}-{fname}")


@pytest.mark.parametrize("call, value, match", list(_temperature_cases()))
def test_bad_temperature_is_refused_naming_the_parameter(call, value, match):
    with pytest.raises(ValueError, match=match):
        call(value)


# ----------------------------------------------------------------------------- bad rewards, advantages, shapes

BAD_ARRAYS = [
    ("none", None, "{n} must be an array of .*, got None"),
    ("nan", [1.0, 0.0, np.nan], r"{n} contains NaN at index \(2,\)"),
    ("neg-inf", [1.0, -np.inf, 0.5], r"{n} contains -inf at index \(1,\)"),
    ("complex", R + 1j, "{n} is complex"),
    ("list-of-strings", ["1", "0", "0.5"], "{n} must be an array of .*, got strings"),
    ("wrong-arms", [1.0, 0.0], "has 3 arms but {n} has 2|{n} has 2 arms"),
    ("scalar", 0.5, "{n} is a scalar|{n} must have a last axis"),
]

ARRAY_TAKERS = {
    "lambert_target": ("adv", lambda x: T.lambert_target(MU, x, BETA)),
    "regime_of": ("adv", lambda x: T.regime_of(MU, x, BETA)),
    "soft_value": ("r", lambda x: T.soft_value(MU, x, BETA)),
    "gibbs_target": ("r", lambda x: T.gibbs_target(MU, x, BETA)),
    "mean_baseline": ("r", lambda x: T.mean_baseline(MU, x)),
    "expected_reward": ("r", lambda x: T.expected_reward(MU, x)),
    "beta_eff_reward": ("r", lambda x: T.beta_eff_reward(MU, x, 0.5)),
    "population_advantage": ("r", lambda x: population_advantage("mean", MU, x)),
}


def _array_cases():
    for fname, (arg, call) in ARRAY_TAKERS.items():
        for kind, value, pattern in BAD_ARRAYS:
            if fname not in {"lambert_target", "soft_value"} and kind not in {"none", "nan", "complex"}:
                continue
            yield pytest.param(call, value, pattern.format(n=arg), id=f"{kind}-{arg}-{fname}")


@pytest.mark.parametrize("call, value, match", list(_array_cases()))
def test_bad_rewards_and_advantages_are_refused_naming_the_argument(call, value, match):
    with pytest.raises(ValueError, match=match):
        call(value)


OTHER_REFUSALS = [
    # shapes
    ("batch-mismatch-lambert_target", lambda: T.lambert_target([MU, MU], [ADV] * 3, BETA), "shapes do not broadcast|do not broadcast"),
    ("beta-grid-mismatch-soft_value", lambda: T.soft_value([MU, MU], [R, R], [0.1, 0.2, 0.3]), "do not broadcast"),
    ("beta-vs-one-group-group_soft_value", lambda: T.group_soft_value([[1.0, 0.0]], [0.3, np.nan]), "beta contains NaN"),
    ("empty-group-group_soft_value", lambda: T.group_soft_value(np.zeros((3, 0)), 1.0), "rewards must have a last axis of G >= 1"),
    ("none-rewards-group_soft_value", lambda: T.group_soft_value(None, 1.0), "rewards must be an array of rewards, got None"),
    ("string-rewards-group_soft_value", lambda: T.group_soft_value("1 0", 1.0), "rewards must be .*string"),
    # other parameters
    ("nan-delta-shifted_mean_baseline", lambda: T.shifted_mean_baseline(MU, R, BETA, np.nan), "delta must be a .*, got nan|delta contains NaN"),
    ("inf-delta-shifted_mean_baseline", lambda: T.shifted_mean_baseline(MU, R, BETA, np.inf), "delta"),
    ("none-delta-shifted_mean_baseline", lambda: T.shifted_mean_baseline(MU, R, BETA, None), "delta must be a number, got None"),
    ("string-delta-shifted_mean_baseline", lambda: T.shifted_mean_baseline(MU, R, BETA, "1"), "delta must be a number, got the string"),
    ("overflow-delta-beta-shifted_mean_baseline", lambda: T.shifted_mean_baseline(MU, R, 1e300, 1e10), r"delta \* beta overflows"),
    ("nan-kl_value-beta_eff_kl", lambda: T.beta_eff_kl(MU, R, np.nan), r"kl_value contains NaN"),
    ("none-kl_value-beta_eff_kl", lambda: T.beta_eff_kl(MU, R, None), "kl_value must be .*None"),
    ("nan-reward-beta_eff_reward", lambda: T.beta_eff_reward(MU, R, np.nan), "reward contains NaN"),
    ("nan-baseline-pessimism_measures", lambda: T.pessimism_measures(MU, MU, R, BETA, np.nan), "baseline contains NaN"),
    ("negative-regime_atol-pessimism_measures", lambda: T.pessimism_measures(MU, MU, R, BETA, 0.0, regime_atol=-1e-12), "regime_atol must be a finite number >= 0"),
    ("nan-regime_atol-pessimism_measures", lambda: T.pessimism_measures(MU, MU, R, BETA, 0.0, regime_atol=np.nan), "regime_atol must be a finite number"),
    ("overflow-eta-pessimism_measures", lambda: T.pessimism_measures(MU, MU, R * 1e300, 1e-300, 0.0), r"E_mu\[r - baseline\]/beta overflows"),
    # numeric extremes that are refused, with what to do
    ("adv/beta-above-1e306-lambert_target", lambda: T.lambert_target(MU, ADV, 1e-307), r"adv/beta .* exceeds 1e\+306 .*rescale adv or raise beta"),
    ("adv/beta-above-1e306-regime_of", lambda: T.regime_of(MU, ADV * 1e307, 1.0), r"adv/beta .* exceeds 1e\+306"),
    ("loss-beyond-float64-lambert_stationary_points", lambda: T.lambert_stationary_points(MU, ADV * 1e200, 1.0), r"loss .* beyond float64; lambert_target gives"),
    ("r-span-overflow-soft_value", lambda: T.soft_value(MU, [1e308, -1e308, 0.0], 1.0), "r spans .* overflow float64; rescale r"),
    ("r-span-overflow-gibbs_target", lambda: T.gibbs_target(MU, [1e308, -1e308, 0.0], 1.0), "r spans .* overflow"),
    ("r-span-overflow-beta_eff_kl", lambda: T.beta_eff_kl(MU, [1e308, -1e308, 0.0], 0.1), "r spans .* overflow float64; rescale r"),
    # lambert_log_ratio
    ("branch-2-lambert_log_ratio", lambda: T.lambert_log_ratio(0.5, -0.1, 2), "branch must be 0 or -1, got 2"),
    ("float-branch-lambert_log_ratio", lambda: T.lambert_log_ratio(0.5, -0.1, 0.5), "branch must be an integer"),
    ("string-branch-lambert_log_ratio", lambda: T.lambert_log_ratio(0.5, -0.1, "0"), "branch must be an integer"),
    ("lower-branch-positive-eta-lambert_log_ratio", lambda: T.lambert_log_ratio(-2.0, 0.1, -1), r"branch=-1 .* needs eta < 0"),
    ("past-branch-point-lambert_log_ratio", lambda: T.lambert_log_ratio(0.5, -1.0, 0), "no real solution"),
    ("none-a-lambert_log_ratio", lambda: T.lambert_log_ratio(None, 0.1), "a must be an array of numbers, got None"),
    ("nan-eta-lambert_log_ratio", lambda: T.lambert_log_ratio([0.5, 1.0], [0.1, np.nan]), r"eta contains NaN at index \(1,\)"),
    ("shape-mismatch-lambert_log_ratio", lambda: T.lambert_log_ratio([0.5, 1.0], [0.1, 0.2, 0.3]), "shapes of a .* and eta .* do not broadcast"),
    # Bandit
    ("rewards-shape-Bandit", lambda: T.Bandit("b", MU, [1.0, 0.0], "d"), "mu and r must both have shape"),
    ("none-r-Bandit", lambda: T.Bandit("b", MU, None, "d"), "r must be an array of numbers, got None"),
]


@pytest.mark.parametrize("call, match", [pytest.param(c, m, id=i) for i, c, m in OTHER_REFUSALS])
def test_other_bad_input_is_refused_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- advantage estimators

G4 = torch.tensor([[1.0, 0.0, 0.5, 0.25]], dtype=torch.float64)

ADVANTAGE_REFUSALS = [
    ("unknown-name", lambda: group_advantage("nope", G4), "unknown advantage estimator 'nope'"),
    ("none-name", lambda: group_advantage(None, G4), "advantage estimator name must be a string"),
    ("list-name", lambda: population_advantage(["mean"], MU, R), "advantage estimator name must be a string"),
    ("unknown-parameter", lambda: group_advantage("mean", G4, beta=0.1), r"advantage 'mean' takes \('offset',\)"),
    ("missing-beta1", lambda: group_advantage("soft_value", G4), "advantage 'soft_value' needs beta1"),
    ("missing-beta1-loo", lambda: population_advantage("loo_soft_value", MU, R), "needs beta1"),
    ("missing-beta-shifted_mean", lambda: group_advantage("shifted_mean", G4, delta=1.0), "advantage 'shifted_mean' needs beta"),
    ("nan-beta1", lambda: group_advantage("soft_value", G4, beta1=np.nan), "beta1 must be a finite number, got nan"),
    ("zero-beta1", lambda: population_advantage("soft_value", MU, R, beta1=0.0), "beta1 must be a finite number > 0, got 0.0"),
    ("inf-beta", lambda: group_advantage("shifted_mean", G4, beta=np.inf), "beta must be a finite number, got inf"),
    ("string-beta1", lambda: group_advantage("soft_value", G4, beta1="0.5"), "beta1 must be a number, got the string"),
    ("array-beta1", lambda: group_advantage("soft_value", G4, beta1=[0.5, 1.0]), "beta1 must be a single number"),
    ("nan-delta", lambda: group_advantage("shifted_mean", G4, beta=0.1, delta=np.nan), "delta must be a finite number"),
    ("delta-without-beta", lambda: group_advantage("soft_value", G4, beta1=0.5, delta=0.5), "needs beta"),
    ("negative-eps", lambda: group_advantage("grpo", G4, eps=-1e-6), "eps must be a finite number >= 0"),
    ("inf-offset", lambda: population_advantage("mean", MU, R, offset=np.inf), "offset must be a finite number, got inf"),
    ("none-rewards", lambda: group_advantage("mean", None), "rewards must be an array of rewards, got None"),
    ("list-of-strings-rewards", lambda: group_advantage("mean", ["1", "0"]), "rewards must be an array of rewards, got strings"),
    ("bool-tensor-rewards", lambda: group_advantage("mean", torch.tensor([True, False])), "rewards is a boolean tensor"),
    ("complex-tensor-rewards", lambda: group_advantage("mean", torch.tensor([1 + 0j, 0j])), "rewards is a complex tensor"),
    ("nan-rewards", lambda: group_advantage("mean", [[1.0, np.nan]]), r"rewards contain NaN or inf \(first at index \(0, 1\)\)"),
    ("empty-group", lambda: group_advantage("mean", torch.zeros(2, 0)), "rewards must have a last axis of G >= 1"),
    ("scalar-rewards", lambda: group_advantage("raw", 1.0), "rewards must have a last axis"),
    ("single-sample-grpo", lambda: group_advantage("grpo", [[1.0]]), "needs groups of G >= 2"),
    ("mean-overflow-mean", lambda: group_advantage("mean", torch.tensor([[3e38, 3e38]])), "overflows torch.float32"),
    ("overflow-population-shifted_mean", lambda: population_advantage("shifted_mean", MU, R, beta=1e308, delta=1e10), "advantage 'shifted_mean' overflows float64"),
    ("G-zero", lambda: conditional_group_advantage("mean", MU, R, 0), "G must be >= 1, got 0"),
    ("G-float", lambda: conditional_group_advantage("mean", MU, R, 2.0), "G must be an integer, got 2.0"),
    ("G-numpy-float", lambda: conditional_group_advantage("mean", MU, R, np.float64(3.0)), "G must be an integer"),
    ("G-bool", lambda: conditional_group_advantage("mean", MU, R, True), "G must be an integer, got True"),
    ("G-string", lambda: conditional_group_advantage("mean", MU, R, "3"), "G must be an integer"),
    ("G-none", lambda: conditional_group_advantage("mean", MU, R, None), "G must be an integer, got None"),
    ("G-1-loo", lambda: conditional_group_advantage("loo", MU, R, 1), "needs groups of G >= 2"),
    ("max_outcomes-zero", lambda: conditional_group_advantage("mean", MU, R, 3, max_outcomes=0), "max_outcomes must be >= 1"),
    ("batched-mu-conditional", lambda: conditional_group_advantage("mean", [MU, MU], [R, R], 3), "mu and r must be 1-d"),
]


@pytest.mark.parametrize("call, match", [pytest.param(c, m, id=i) for i, c, m in ADVANTAGE_REFUSALS])
def test_bad_advantage_input_is_refused_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- accepted input: the right answer

_gen = torch.Generator().manual_seed(0)
SOFTMAX32 = torch.softmax(torch.randn(3, 200, generator=_gen), -1)  # float32: rows sum to 1 only within ~1e-7
DIRICHLET32 = np.random.default_rng(2).dirichlet(np.ones(7), size=4).astype(np.float32)


def _as64(x):
    """The float64 distribution a lower-precision one stands for: its values, renormalized in float64."""
    x = x.double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    return x / x.sum(-1, keepdims=True)


def _data(K):
    rng = np.random.default_rng(K)
    return rng.normal(size=K), rng.uniform(size=K)  # advantages, rewards (broadcast over the batch)


# functions of (distribution, advantages, rewards)
LOW_PRECISION = {
    "lambert_target": lambda m, a, r: T.lambert_target(m, a, 0.5),
    "lambert_target-negative-regime": lambda m, a, r: T.lambert_target(m, a - 3.0, 0.5),
    "relaxed_lambert_target": lambda m, a, r: T.relaxed_lambert_target(m, a, 0.5),
    "regime_of": lambda m, a, r: T.regime_of(m, a, 0.5),
    "soft_value": lambda m, a, r: T.soft_value(m, r, 0.1),
    "gibbs_target": lambda m, a, r: T.gibbs_target(m, r, 0.1),
    "mean_baseline": lambda m, a, r: T.mean_baseline(m, r),
    "kl": lambda m, a, r: T.kl(m, _as64(m)[..., ::-1]),
    "entropy": lambda m, a, r: T.entropy(m),
    "beta_eff_reward": lambda m, a, r: T.beta_eff_reward(m, r, 0.8),
    "pessimism_measures": lambda m, a, r: T.pessimism_measures(_as64(m), m, r, 0.5, 0.1).eta,
    "population_advantage": lambda m, a, r: population_advantage("zscore", m, r),
}


def _low_precision_cases():
    for fname, call in LOW_PRECISION.items():
        yield pytest.param(call, SOFTMAX32, id=f"float32-softmax-{fname}")
        yield pytest.param(call, DIRICHLET32, id=f"numpy-float32-{fname}")
    yield pytest.param(LOW_PRECISION["lambert_target"], SOFTMAX32.to(torch.bfloat16), id="bfloat16-softmax-lambert_target")
    yield pytest.param(LOW_PRECISION["soft_value"], SOFTMAX32.to(torch.float16), id="float16-softmax-soft_value")
    yield pytest.param(LOW_PRECISION["entropy"], torch.softmax(SOFTMAX32.double(), -1), id="torch-float64-entropy")
    yield pytest.param(LOW_PRECISION["lambert_target"], list(map(list, DIRICHLET32)), id="list-of-float32-lambert_target")


@pytest.mark.parametrize("call, mu", list(_low_precision_cases()))
def test_low_precision_distributions_give_the_float64_answer(call, mu):
    # the reference: the same function on the float64 values of the input, renormalized in float64
    adv, r = _data(mu.shape[-1] if hasattr(mu, "shape") else len(mu[0]))
    got, want = call(mu, adv, r), call(_as64(mu), adv, r)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, w, rtol=1e-14, atol=1e-15)


# (id, value, the plain Python number it stands for)
SCALARS = [
    ("numpy-float32-scalar", np.float32(0.3), float(np.float32(0.3))),
    ("numpy-float64-scalar", np.float64(0.3), 0.3),
    ("numpy-int64-scalar", np.int64(2), 2.0),
    ("python-int", 2, 2.0),
    ("numpy-0d-array", np.array(0.3), 0.3),
    ("torch-float32-scalar", torch.tensor(0.3), float(torch.tensor(0.3))),
    ("torch-float64-scalar", torch.tensor(0.3, dtype=torch.float64), 0.3),
    ("torch-int-scalar", torch.tensor(2), 2.0),
    ("fraction", Fraction(3, 10), 0.3),
]
SCALAR_TAKERS = {
    "lambert_target": lambda b: T.lambert_target(MU, ADV, b),
    "soft_value": lambda b: T.soft_value(MU, R, b),
    "gibbs_target": lambda b: T.gibbs_target(MU, R, b),
    "group_soft_value": lambda b: T.group_soft_value([1.0, 0.0, 0.5], b),
    "shifted_mean_baseline-delta": lambda d: T.shifted_mean_baseline(MU, R, BETA, d),
    "group_advantage-beta1": lambda b: group_advantage("soft_value", G4, beta1=b).numpy(),
    "population_advantage-beta": lambda b: population_advantage("shifted_mean", MU, R, beta=b, delta=1.0),
}


def _scalar_cases():
    for fname, call in SCALAR_TAKERS.items():
        for kind, value, plain in SCALARS:
            if fname not in {"lambert_target", "soft_value"} and kind not in {"numpy-float32-scalar", "torch-float32-scalar", "numpy-int64-scalar"}:
                continue
            yield pytest.param(call, value, plain, id=f"{kind}-{fname}")


@pytest.mark.parametrize("call, value, plain", list(_scalar_cases()))
def test_numpy_and_torch_scalars_are_numbers(call, value, plain):
    got, want = call(value), call(plain)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_array_equal(g, w)


def _mp_soft_value(mu, r, beta):
    with mp.workdps(60):
        m = [mp.mpf(float(x)) for x in mu]
        b = mp.mpf(float(beta))
        mean = mp.fsum(mi * mp.mpf(float(ri)) for mi, ri in zip(m, r)) / mp.fsum(m)
        e = mp.fsum(mi * mp.exp((mp.mpf(float(ri)) - mean) / b) for mi, ri in zip(m, r)) / mp.fsum(m)
        return float(mean + b * mp.log(e))


ACCEPTED = [
    # other array types
    ("torch-float64-tensors-lambert_target",
     lambda: T.lambert_target(torch.tensor(MU), torch.tensor(ADV), torch.tensor(BETA, dtype=torch.float64)),
     lambda: T.lambert_target(MU, ADV, BETA)),
    ("torch-float32-adv-lambert_target",
     lambda: T.lambert_target(MU, torch.tensor(ADV, dtype=torch.float32), BETA),
     lambda: T.lambert_target(MU, ADV.astype(np.float32).astype(float), BETA)),
    ("detached-tensor-soft_value",
     lambda: T.soft_value(torch.tensor(MU, requires_grad=True).detach(), R, BETA), lambda: T.soft_value(MU, R, BETA)),
    ("list-of-0d-tensors-mu-soft_value",
     lambda: T.soft_value([torch.tensor(x, dtype=torch.float64) for x in MU], R, BETA), lambda: T.soft_value(MU, R, BETA)),
    ("tuple-mu-kl", lambda: T.kl(tuple(MU), MU[::-1]), lambda: T.kl(MU, MU[::-1].copy())),
    ("fractions-mu-lambert_target",
     lambda: T.lambert_target([Fraction(1, 5), Fraction(1, 2), Fraction(3, 10)], ADV, BETA), lambda: T.lambert_target(MU, ADV, BETA)),
    ("int64-rewards-soft_value", lambda: T.soft_value(MU, np.array([1, 0, 2]), BETA), lambda: T.soft_value(MU, [1.0, 0.0, 2.0], BETA)),
    ("int-rewards-group_advantage", lambda: group_advantage("grpo", [[1, 0, 1, 1]]).numpy(),
     lambda: group_advantage("grpo", torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)).numpy()),
    ("torch-beta-grid-soft_value", lambda: T.soft_value(MU, R, torch.tensor([0.1, 1.0], dtype=torch.float64)),
     lambda: np.array([T.soft_value(MU, R, 0.1), T.soft_value(MU, R, 1.0)])),
    ("numpy-int64-G-conditional", lambda: conditional_group_advantage("mean", MU, R, np.int64(4)),
     lambda: conditional_group_advantage("mean", MU, R, 4)),
    ("torch-int-G-conditional", lambda: conditional_group_advantage("mean", MU, R, torch.tensor(4)),
     lambda: conditional_group_advantage("mean", MU, R, 4)),
    ("numpy-params-group_advantage", lambda: group_advantage("shifted_mean", G4, beta=np.float64(0.1), delta=np.int64(2)).numpy(),
     lambda: group_advantage("shifted_mean", G4, beta=0.1, delta=2.0).numpy()),
    # slack and zeros
    ("sum-1-plus-5e-10-lambert_target", lambda: T.lambert_target(MU * (1 + 5e-10), ADV, BETA), lambda: T.lambert_target(MU, ADV, BETA)),
    ("exact-zeros-mu-lambert_target", lambda: T.lambert_target([0.0, 0.6, 0.4], ADV, BETA)[0][0], lambda: 0.0),
    # arms off the support: the same answer as the bandit without them (and no 0 * log 0 warnings)
    ("zero-arm-lambert_stationary_points", lambda: T.lambert_stationary_points([0.0, 0.6, 0.4], [0.0, -1.0, -2.0], 1.0).pi[..., 1:],
     lambda: T.lambert_stationary_points([0.6, 0.4], [-1.0, -2.0], 1.0).pi),
    ("integer-mu-lambert_stationary_points", lambda: T.lambert_stationary_points(np.array([0, 1, 0]), ADV, BETA).pi,
     lambda: np.array([[0.0, 1.0, 0.0]])),
    ("zero-arm-beta_eff_kl", lambda: T.beta_eff_kl([0.0, 0.6, 0.4], [5.0, 1.0, 0.0], 0.1),
     lambda: T.beta_eff_kl([0.6, 0.4], [1.0, 0.0], 0.1)),
    # empty batches
    ("empty-batch-lambert_target", lambda: tuple(x.shape for x in T.lambert_target(np.zeros((0, 3)), np.zeros((0, 3)), BETA)),
     lambda: ((0, 3), (0,))),
    ("empty-batch-soft_value", lambda: T.soft_value(np.zeros((0, 3)), np.zeros((0, 3)), BETA).shape, lambda: (0,)),
    # numeric extremes with the right answer (reference: mpmath at 60 digits)
    ("beta-1e-320-soft_value", lambda: T.soft_value(MU, R, 1e-320), lambda: _mp_soft_value(MU, R, 1e-320)),
    ("beta-1e300-soft_value", lambda: T.soft_value(MU, R, 1e300), lambda: _mp_soft_value(MU, R, 1e300)),
    ("r/beta-1e4-soft_value", lambda: T.soft_value(MU, R * 1e4, 1.0), lambda: _mp_soft_value(MU, R * 1e4, 1.0)),
    ("beta-1e-300-gibbs_target", lambda: T.gibbs_target(MU, R, 1e-300), lambda: np.array([1.0, 0.0, 0.0])),
    ("beta1-1e-300-group_advantage", lambda: group_advantage("soft_value", G4, beta1=1e-300).numpy(),
     lambda: (G4 - 1.0 - 1e-300 * np.log(0.25)).numpy()),
    ("beta1-1e20-group_advantage", lambda: group_advantage("soft_value", G4, beta1=1e20).numpy(),
     lambda: (G4 - G4.mean()).numpy()),  # V -> the mean as beta1 -> inf (excess ~ var/(2 beta1) = 1e-21)
    ("rewards-1.7e308-mean_baseline", lambda: T.mean_baseline([0.5, 0.5], [1.7e308, 1.7e308]), lambda: 1.7e308),
    # (r - E r)/sd with sd formed without squaring 1e200 (eps = 1e-6 is nothing at that scale: the z-score)
    ("rewards-1e200-population-grpo", lambda: population_advantage("grpo", MU, R * 1e200), lambda: population_advantage("zscore", MU, R)),
    ("rewards-1e20-float32-group-grpo", lambda: group_advantage("grpo", torch.tensor([[1e20, -1e20, 0.0]])).double().numpy(),
     lambda: np.array([[1.0, -1.0, 0.0]])),  # float32 rewards whose squares overflow float32
]


@pytest.mark.parametrize("call, reference", [pytest.param(c, w, id=i) for i, c, w in ACCEPTED])
def test_accepted_input_gives_the_right_answer(call, reference):
    got, want = call(), reference()
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        if isinstance(g, tuple):
            assert g == w
            continue
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, w, rtol=4e-16, atol=4e-16 * np.abs(np.asarray(w, float)).max(initial=0.0))


def test_enough_cases():
    """The brief of this file: at least 100 parametrized cases across the public theory API."""
    n = (
        len(list(_distribution_cases())) + len(list(_temperature_cases())) + len(list(_array_cases()))
        + len(OTHER_REFUSALS) + len(ADVANTAGE_REFUSALS) + len(list(_low_precision_cases()))
        + len(list(_scalar_cases())) + len(ACCEPTED)
    )
    assert n >= 100
