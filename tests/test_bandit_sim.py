"""Bandit simulator and sweeps: determinism, seeds as an axis, exact limits, the lag buffer, results, errors."""

import json

import numpy as np
import pytest

import theory
from sims import bandit as sb
from sims import lag as sl
from sims import sweeps
from sims.bandit import BanditSimConfig, simulate
from theory.objectives import make_objective

TWO = theory.STANDARD_BANDITS["two-correct"]


def tiny(**kw):
    base = dict(num_seeds=3, steps=12, group_size=6, target_every=4, num_contexts=2)
    return BanditSimConfig(**{**base, **kw})


def assert_metrics_equal(a, b, **tol):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], err_msg=k, equal_nan=True, **tol)


# ----------------------------------------------------------------------------- determinism and seeds


@pytest.mark.parametrize("objective", ["opmd", "grpo", "pg", "tpo"])
def test_same_seed_same_numbers(objective):
    cfg = tiny(objective=objective, lag=2)
    a, b = simulate(cfg), simulate(cfg)
    assert_metrics_equal(a.metrics, b.metrics, rtol=0, atol=0)
    np.testing.assert_array_equal(a.final_policy, b.final_policy)
    c = simulate(cfg.replace(seed=7))
    assert not np.array_equal(a.final_policy, c.final_policy)


@pytest.mark.parametrize(
    "kw",
    [
        dict(objective="opmd", optimizer="adam"),
        dict(objective="grpo", optimizer="normalized", inner_steps=3),
        dict(objective="tis", optimizer="sgd", lr=0.5, track_target=False),  # its target needs the flow: slow
        dict(objective="awr", policy="linear", shared_weights=True, optimizer="normalized", bandit="random"),
        dict(objective="asymre", policy="linear", optimizer="adam", bandit="random", num_arms=5),
    ],
)
def test_seeds_as_axis_equal_a_loop_over_single_seeds(kw):
    """S seeds in one torch computation give, seed by seed, the numbers of S runs of one seed each."""
    cfg = tiny(lag=3, **kw)
    together = simulate(cfg)
    for s in range(cfg.num_seeds):
        alone = simulate(cfg.replace(seed=cfg.seed + s, num_seeds=1))
        for k, v in together.metrics.items():
            if k == "grad_var":  # a statistic across seeds
                continue
            np.testing.assert_allclose(v[:, s], alone.metrics[k][:, 0], rtol=1e-10, atol=1e-13, err_msg=k)
        np.testing.assert_allclose(together.final_policy[s], alone.final_policy[0], rtol=1e-10, atol=1e-13)


# ----------------------------------------------------------------------------- exact limits (population mode)


@pytest.mark.parametrize(
    "name, params",
    [
        ("opmd", {"beta": 0.5}),  # Lambert target, positive regime
        ("shifted_regression", {"beta": 0.5}),
        ("asymre", {}),  # thresholded linear tilt: two arms go to exactly 0
        ("asymre", {"offset": 1.0}),  # all A > 0: pi ∝ mu A
        ("awr", {}),  # Gibbs
    ],
)
def test_population_lag0_many_inner_steps_reach_the_induced_target(name, params):
    cfg = BanditSimConfig(
        objective=name, objective_params=params, bandit="two-correct", population=True, lag=0,
        optimizer="sgd", lr=5.0 if name != "awr" else 1.0, inner_steps=2000, steps=1, num_seeds=1,
    )
    res = simulate(cfg)
    target = make_objective(name, **params).induced_target(TWO.mu, TWO.r).pi
    np.testing.assert_allclose(res.final_policy[0, 0], target, atol=1e-6)
    assert res.metrics["tv_target"][0, 0, 0] < 1e-6
    if name in ("opmd", "shifted_regression"):
        # eta from the identity KL(mu||pi) + E_mu[A]/beta on the reached policy = lambert_target's eta
        np.testing.assert_allclose(res.metrics["eta_hat"][0, 0, 0], res.metrics["eta_pred"][0, 0, 0], rtol=1e-6)


def test_sample_mode_with_large_groups_approaches_the_population_run():
    kw = dict(objective="opmd", objective_params={"beta": 0.5}, bandit="two-correct", optimizer="sgd", lr=1.0,
              steps=5, num_seeds=2, lag=1)
    pop = simulate(BanditSimConfig(population=True, **kw))
    smp = simulate(BanditSimConfig(group_size=20000, **kw))
    np.testing.assert_allclose(smp.final_policy, pop.final_policy, atol=0.02)


# ----------------------------------------------------------------------------- the lag buffer


def test_data_at_step_t_come_from_pi_t_minus_L():
    L = 3
    res = simulate(tiny(objective="opmd", lag=L, steps=9, record_policies=True))
    pols, behs = res.policies, res.behaviours
    # hand example, L = 3: steps 0..3 use pi_0, step 4 uses pi_1, ..., step 8 uses pi_5
    expected = [0, 0, 0, 0, 1, 2, 3, 4, 5]
    assert res.behaviour_step.tolist() == expected
    for t, src in enumerate(expected):
        np.testing.assert_array_equal(behs[t], pols[src])
    assert not np.allclose(pols[4], pols[1])  # the policy did move, so the check has teeth
    np.testing.assert_allclose(res.metrics["kl_mu_pi"][0], 0.0, atol=1e-15)


def test_population_sgd_with_lag_matches_the_weight_form_of_the_delayed_iteration():
    """Autograd of the zoo's loss (simulator) = the weight h of the zoo (sims.lag's gradient rule), with lag."""
    L, lr, T = 2, 3.0, 10
    cfg = BanditSimConfig(objective="opmd", objective_params={"beta": 0.3}, bandit="graded", population=True, lag=L,
                          optimizer="sgd", lr=lr, steps=T, num_seeds=1, record_policies=True)
    res = simulate(cfg)
    traj = sl.delayed_iteration("opmd", "graded", "gradient", L, T, lr=lr, obj_params={"beta": 0.3})
    np.testing.assert_allclose(res.policies[:, 0, 0], traj, rtol=1e-10, atol=1e-13)


# ----------------------------------------------------------------------------- metrics


def test_metric_shapes_and_definitions():
    cfg = tiny(objective="shifted_regression", lag=1)
    res = simulate(cfg)
    T, S, B = cfg.steps, cfg.num_seeds, cfg.num_contexts
    for k, axes in sb.METRIC_AXES.items():
        assert res.metrics[k].shape == (T, S, B)[: len(axes)], k
    # targets only every target_every steps
    tv = res.metrics["tv_target"]
    assert np.isfinite(tv[::4]).all() and np.isnan(tv[1::4]).all()
    assert ((res.metrics["ess"] > 0) & (res.metrics["ess"] <= 1 + 1e-12)).all()
    start = theory.expected_reward(res.pi0, res.rewards)
    np.testing.assert_allclose(res.metrics["reward"][0], np.broadcast_to(start, (S, B)))
    np.testing.assert_allclose(res.metrics["kl_init"][0], 0.0, atol=1e-15)
    # objectives without a temperature have no nominal target and no eta
    pg = simulate(tiny(objective="pg"))
    assert np.isnan(pg.metrics["eta_hat"]).all() and np.isnan(pg.metrics["tv_nominal"]).all()
    assert np.isnan(simulate(tiny(num_seeds=1)).metrics["grad_var"]).all()


def test_population_ess_is_exact():
    cfg = BanditSimConfig(objective="opmd", population=True, lag=2, steps=6, num_seeds=1, record_policies=True)
    res = simulate(cfg)
    pi, mu = res.policies[:-1, 0, 0], res.behaviours[:, 0, 0]
    np.testing.assert_allclose(res.metrics["ess"][:, 0, 0], 1.0 / (pi**2 / mu).sum(-1), rtol=1e-12)


# ----------------------------------------------------------------------------- results on disk


def test_save_load_roundtrip_and_csv(tmp_path):
    res = simulate(tiny(objective="opmd", steps=3))
    npz, js = sb.save_results(tmp_path / "run", res)
    assert npz.exists() and js.exists() and not list(tmp_path.glob(".*tmp"))
    arrays, config = sb.load_results(tmp_path / "run")
    assert BanditSimConfig.from_dict(config) == res.config
    np.testing.assert_array_equal(arrays["reward"], res.metrics["reward"])
    assert json.loads(js.read_text()) == config
    lines = res.to_csv(tmp_path / "run.csv").read_text().splitlines()
    assert lines[0].startswith("step,seed,context,reward,")
    assert len(lines) == 1 + 3 * 3 * 2
    assert len(res.to_records()) == 3 * 3 * 2


def test_load_or_run_caches_by_config(tmp_path, monkeypatch):
    small = sweeps.LagSweep(objectives=("opmd",), lags=(0, 2), group_sizes=(4,),
                            base=BanditSimConfig(num_seeds=2, steps=5, target_every=5))
    a, cfg = sweeps.load_or_run("fig04_lag", smoke=True, results_dir=tmp_path, sweep=small, progress=False)
    assert a["reward"].shape == (1, 1, 2, 5, 2) and a["grad_var"].shape == (1, 1, 2, 5)
    assert a["objective"].tolist() == ["opmd"] and a["lag"].tolist() == [0, 2]

    def boom(*args, **kwargs):
        raise AssertionError("recomputed although the cached config matches")

    monkeypatch.setitem(sweeps.SWEEPS, "fig04_lag", (sweeps.lag_sweep, boom))
    b, _ = sweeps.load_or_run("fig04_lag", smoke=True, results_dir=tmp_path, sweep=small, progress=False)
    np.testing.assert_array_equal(a["reward"], b["reward"])
    with pytest.raises(AssertionError, match="recomputed"):  # another config: recomputes
        sweeps.load_or_run("fig04_lag", smoke=True, results_dir=tmp_path, progress=False,
                           sweep=sweeps.LagSweep(objectives=("opmd",), lags=(1,), group_sizes=(4,), base=small.base))


# ----------------------------------------------------------------------------- errors before compute


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(lag=-1), "lag must be >= 0"),
        (dict(objective="nope"), "unknown objective 'nope'"),
        (dict(objective="grpo", group_size=1), "group_size >= 2 or population=True"),
        (dict(objective="opmd_loo", group_size=1), "G >= 2"),
        (dict(optimizer="rmsprop"), "unknown optimizer"),
        (dict(lr=0.0), "lr must be"),
        (dict(objective_params={"beta": -1.0}), "beta must be > 0"),
        (dict(objective_params={"temperature": 1.0}), "has no parameter"),
        (dict(bandit="nope"), "unknown bandit"),
        (dict(policy="mlp"), "unknown policy"),
        (dict(objective="m2po", num_seeds=2), "num_seeds=1"),
        (dict(steps=0), "steps must be >= 1"),
    ],
)
def test_bad_configs_raise_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        BanditSimConfig(**kw)


def test_population_mode_accepts_g1_for_std_advantages():
    BanditSimConfig(objective="grpo", group_size=1, population=True)


def test_invalid_sweep_fails_before_any_compute_listing_every_problem(monkeypatch, tmp_path):
    def boom(*a, **k):
        raise AssertionError("computed something")

    monkeypatch.setattr(sweeps, "simulate", boom)
    bad = sweeps.LagSweep(objectives=("opmd", "grpo", "nope"), lags=(0, -2), group_sizes=(1, 4),
                          base=BanditSimConfig(num_seeds=2, steps=3))
    with pytest.raises(ValueError) as err:
        sweeps.load_or_run("fig04_lag", results_dir=tmp_path, sweep=bad, progress=False)
    msg = str(err.value)
    assert "nothing was run" in msg
    assert "lag must be >= 0" in msg and "unknown objective 'nope'" in msg and "group_size >= 2" in msg
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unknown sweep"):
        sweeps.load_or_run("fig99", results_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown objective"):
        sweeps.StabilitySweep(objectives=("nope",)).validate()


def test_presets_are_valid_and_small():
    assert BanditSimConfig.smoke().num_seeds == 4
    assert BanditSimConfig.full().num_seeds == 32
    smoke, full = sweeps.lag_sweep(True), sweeps.lag_sweep(False)
    assert smoke.base.num_seeds == 4 and full.base.num_seeds == 32
    assert smoke.lags == (0, 1, 4, 16, 64) and smoke.group_sizes == (4, 16)
    assert len(full.cells()) == 7 * 2 * 5
