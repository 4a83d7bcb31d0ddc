"""Exact delayed iteration and its linear stability: one-step limits, companion roots, hand-derived radii."""

import numpy as np
import pytest

import theory
from sims import lag as sl
from sims import sweeps
from theory.objectives import make_objective

GRADED = theory.STANDARD_BANDITS["graded"]


# ----------------------------------------------------------------------------- the delayed iteration


@pytest.mark.parametrize("name", ["opmd", "asymre", "awr", "pg"])
def test_full_rule_lag0_reaches_the_target_in_one_step(name):
    traj = sl.delayed_iteration(name, GRADED, "full", 0, 1)
    target = make_objective(name).induced_target(GRADED.mu, GRADED.r).pi
    np.testing.assert_allclose(traj[0], GRADED.mu)
    np.testing.assert_allclose(traj[1], target, atol=1e-14)


def test_full_rule_with_lag_runs_L_plus_1_interleaved_chains():
    """pi_{t+1} = T(pi_{t-L}): pi_1..pi_{L+1} = T(pi_0), pi_{L+2} = T(pi_1) = T(T(pi_0))."""
    L = 2
    obj = make_objective("opmd")
    traj = sl.delayed_iteration(obj, GRADED, "full", L, 6)
    t1 = sl.target_map(obj, GRADED.mu, GRADED.r)
    for t in range(1, L + 2):
        np.testing.assert_allclose(traj[t], t1, atol=1e-14)
    np.testing.assert_allclose(traj[L + 2], sl.target_map(obj, t1, GRADED.r), atol=1e-14)


def test_damped_rule_with_a1_is_the_full_rule_and_gradient_rule_is_batched_over_lr():
    full = sl.delayed_iteration("opmd", GRADED, "full", 1, 4)
    damped = sl.delayed_iteration("opmd", GRADED, "damped", 1, 4, lr=1.0)
    np.testing.assert_allclose(damped, full, atol=1e-12)
    lrs = np.array([0.5, 2.0])
    batch = sl.delayed_iteration("asymre", GRADED, "gradient", 3, 5, lr=lrs)
    assert batch.shape == (6, 2, GRADED.mu.size)
    for i, lr in enumerate(lrs):
        np.testing.assert_allclose(batch[:, i], sl.delayed_iteration("asymre", GRADED, "gradient", 3, 5, lr=lr))


def test_gradient_rule_converges_to_the_induced_target_with_many_inner_steps():
    obj = make_objective("opmd", beta=0.5)
    z = np.log(GRADED.mu)
    new = sl.delayed_step(obj, GRADED.r, z, z, "gradient", lr=5.0, inner_steps=3000)
    np.testing.assert_allclose(np.exp(new), obj.induced_target(GRADED.mu, GRADED.r).pi, atol=1e-8)


def test_fixed_point_of_the_undelayed_full_iteration_is_the_best_arm():
    fp = sl.fixed_point("opmd", GRADED, "full", max_steps=200)
    assert fp.converged and fp.pi.argmax() == GRADED.r.argmax() and fp.pi.max() > 1 - 1e-9


# ----------------------------------------------------------------------------- companion matrix


@pytest.mark.parametrize("a, b, L", [(0.5, 0.3, 0), (0.5, 0.3, 1), (0.9, -0.4, 3), (-0.2, 1.1, 7), (1.0, 0.0, 5)])
def test_companion_roots_match_numpy_roots_scalar(a, b, L):
    """x_{t+1} = a x_t + b x_{t-L}: roots of lambda^{L+1} - a lambda^L - b."""
    roots = sl.characteristic_roots(np.array([[a]]), np.array([[b]]), L)
    coeffs = np.zeros(L + 2)
    coeffs[0], coeffs[1] = 1.0, -a
    coeffs[-1] -= b
    ref = np.roots(coeffs)
    ref = np.concatenate([ref, np.zeros(L + 1 - ref.size)])  # numpy.roots drops the zero roots of b = 0
    key = lambda z: (np.round(z.real, 8), np.round(z.imag, 8))  # noqa: E731
    np.testing.assert_allclose(sorted(roots, key=key), sorted(ref, key=key), atol=1e-8)
    assert sl.spectral_radius(np.array([[a]]), np.array([[b]]), L) == pytest.approx(np.abs(ref).max())


def test_companion_matrix_block_layout():
    J0, JL = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[5.0, 6.0], [7.0, 8.0]])
    C = sl.companion_matrix(J0, JL, 2)
    assert C.shape == (6, 6)
    np.testing.assert_array_equal(C[:2, :2], J0)
    np.testing.assert_array_equal(C[:2, 4:], JL)
    np.testing.assert_array_equal(C[2:, :4], np.eye(4))
    np.testing.assert_array_equal(sl.companion_matrix(J0, JL, 0), J0 + JL)


def test_exclude_neutral_drops_the_unit_roots_of_a_set_of_fixed_points():
    # x_{t+1} = (1 - c) x_t + c x_{t-L} = (lambda - 1)(lambda^L + c sum_{j<L} lambda^j): one neutral root
    c, L = 0.5, 1
    J0, JL = np.array([[1 - c]]), np.array([[c]])
    assert sl.spectral_radius(J0, JL, L) == pytest.approx(1.0)
    assert sl.spectral_radius(J0, JL, L, exclude_neutral=True) == pytest.approx(c)


# ----------------------------------------------------------------------------- stability maps


def _d_max(mu):
    """Largest eigenvalue of diag(mu) - mu mu^T: the stiffness of the pull of h = 1 toward mu."""
    return np.linalg.eigvalsh(np.diag(mu) - np.outer(mu, mu)).max()


def test_jacobians_of_the_cross_entropy_pull_by_hand():
    """AWR on the flat face: h = 1, F = log_softmax(theta + lr (mu - pi)); at pi = mu (log coords)
    J0 = P (I - lr D), JL = lr P D with D = diag(mu) - mu mu^T and P = I - 1 mu^T."""
    lr = 0.7
    bd = sl.flat_bandit(GRADED)
    J0, JL = sl.jacobians(make_objective("awr"), bd.r, bd.mu, "gradient", lr=lr)
    mu = bd.mu
    D = np.diag(mu) - np.outer(mu, mu)
    P = np.eye(mu.size) - np.outer(np.ones_like(mu), mu)
    np.testing.assert_allclose(J0, P @ (np.eye(mu.size) - lr * D), atol=1e-8)
    np.testing.assert_allclose(JL, lr * P @ D, atol=1e-8)


def test_awr_threshold_is_lr_dmax_1_at_every_positive_lag():
    """Per eigen-direction of D the roots solve lambda^{L+1} - (1 - c) lambda^L - c = 0, c = lr d:
    lambda = 1 and the roots of lambda^L + c sum_{j<L} lambda^j, all in the unit disc iff c <= 1
    (Enestrom-Kakeya; their product has modulus c). So the radius is 1 below lr = 1/d_max and > 1 above,
    for every L >= 1; at L = 1 the other root is -c."""
    d = _d_max(GRADED.mu)
    lrs = np.array([0.5, 0.9, 1.1, 2.0]) / d
    lags = [1, 2, 4, 16]
    rad = sl.stability_map("awr", lags, lrs, GRADED)
    assert np.allclose(rad[:, :2], 1.0, atol=1e-8)
    assert (rad[:, 2:] > 1.0 + 1e-6).all()
    trans = sl.stability_map("awr", [1], lrs, GRADED, exclude_neutral=True)
    np.testing.assert_allclose(trans[0], lrs * d, rtol=1e-6)
    # no lag, no pull: every step size is (neutrally) stable
    np.testing.assert_allclose(sl.stability_map("awr", [0], lrs, GRADED)[0], 1.0, atol=1e-8)


@pytest.mark.parametrize("name", ["pg", "ppo", "grpo"])
def test_ratio_based_objectives_are_neutral_at_every_lag_and_step_size(name):
    lags, lrs = [0, 1, 8], [0.1, 10.0, 1000.0]
    np.testing.assert_allclose(sl.stability_map(name, lags, lrs, GRADED), 1.0, atol=1e-8)
    np.testing.assert_allclose(sl.stability_map(name, lags, lrs, GRADED, exclude_neutral=True), 0.0, atol=1e-6)


def test_regression_pull_has_stiffness_2beta2_dmax():
    """The regression's h = 2 beta (A - beta log u) linearizes to the pull 2 beta^2 D: transverse radius at L = 1."""
    beta = 0.1
    d = _d_max(GRADED.mu)
    lrs = np.array([1.0, 10.0, 100.0])
    trans = sl.stability_map("opmd", [1], lrs, GRADED, exclude_neutral=True, obj_params={"beta": beta})
    np.testing.assert_allclose(trans[0], 2 * beta**2 * d * lrs, rtol=1e-5)


def test_tie_broken_vertex_target_is_not_a_fixed_point_on_the_flat_face():
    assert np.isnan(sl.stability_map("pg", [0, 1], [0.5], GRADED, rule="damped")).all()


def test_stability_sweep_smoke(tmp_path):
    arrays, cfg = sweeps.load_or_run("fig05_stability", smoke=True, results_dir=tmp_path, progress=False)
    assert arrays["radius"].shape == (len(cfg["objectives"]), len(cfg["lags"]), len(cfg["lrs"]))
    i_pg = cfg["objectives"].index("pg")
    np.testing.assert_allclose(arrays["radius"][i_pg], 1.0, atol=1e-8)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sl.delayed_iteration("opmd", GRADED, "full", -1, 3), "lag must be >= 0"),
        (lambda: sl.delayed_iteration("opmd", GRADED, "sprint", 1, 3), "unknown step rule"),
        (lambda: sl.delayed_iteration("opmd", GRADED, "gradient", 1, 3), "needs lr"),
        (lambda: sl.delayed_iteration("nope", GRADED, "full", 1, 3), "unknown objective"),
        (lambda: sl.stability_map("opmd", [1], [1.0], "nope"), "unknown bandit"),
        (lambda: sl.companion_matrix(np.eye(2), np.eye(3), 1), "square matrices of one shape"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
