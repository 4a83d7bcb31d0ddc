"""The advisor (``theory.advise``): hand-worked cases, comparison, config readers, JSON, CLI and the lag analysis."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from theory import advise as A
from theory.advantages import population_advantage
from theory.lambert import lambert_target
from theory.objectives import make_objective, objective_spec
from theory.outputs import UsageError
from theory.values import gibbs_target

HAS_VERL = importlib.util.find_spec("verl") is not None and importlib.util.find_spec("omegaconf") is not None
HAS_TRL = importlib.util.find_spec("trl") is not None
MU, R = np.array([0.5, 0.5]), np.array([0.0, 1.0])  # the p = 0.5 class: a 2-arm bandit


def one(name, p=0.5, **kw):
    """The report of objective ``name`` on a single class of pass rate ``p`` (small lag search: fast)."""
    kw.setdefault("max_lag", 8)
    return A.advise([name], pass_rates=[p], **kw).objectives[0]


# ----------------------------------------------------------------------------- hand-worked cases


def test_opmd_mean_baseline_is_positive_with_the_lambert_eta():
    o = one("opmd")
    c = o.classes[0]
    adv = population_advantage("mean", MU, R)
    np.testing.assert_allclose(adv, [-0.5, 0.5])  # A = r - E_mu[r]
    pi, eta = lambert_target(MU, adv, 0.1)
    assert c.regime == "positive" and c.eta == pytest.approx(float(eta), rel=1e-12) and c.eta > 0
    assert c.target_pass_rate == pytest.approx(float(pi[1]), rel=1e-12)
    # the mean baseline: eta = KL(mu || pi) (docs/theory.md section 3)
    assert c.eta == pytest.approx(float(np.sum(MU * np.log(MU / pi))), rel=1e-9)
    assert c.pessimism_kl > 1  # more conservative than the Gibbs target at beta
    nominal = gibbs_target(MU, R, 0.1)
    assert c.nominal_pass_rate == pytest.approx(float(nominal[1]), rel=1e-12)
    assert c.kl_target_nominal == pytest.approx(float(np.sum(pi * np.log(pi / nominal))), rel=1e-9)
    assert o.aggregate.regime_shares == (("positive", 1.0),)


def test_opmd_lme_is_the_boundary_gibbs_target_and_opmd_above_is_negative():
    c = one("opmd_lme").classes[0]
    assert c.regime == "boundary" and abs(c.eta) <= 1e-12
    assert c.target_pass_rate == pytest.approx(float(gibbs_target(MU, R, 0.1)[1]), rel=1e-12)
    assert c.pessimism_kl == pytest.approx(1.0, abs=1e-6) and c.kl_target_nominal == pytest.approx(0.0, abs=1e-12)
    c = one("opmd_above").classes[0]
    assert c.regime == "negative" and c.eta < 0
    assert c.eta == pytest.approx(float(lambert_target(MU, population_advantage(
        "soft_value", MU, R, beta1=0.1, beta=0.1, delta=0.5), 0.1)[1]), rel=1e-12)


def test_finite_group_bias_of_the_mean_baseline_is_a_shrink_by_one_over_g():
    """E[A_1 | y_1] = (1 - 1/G)(r - E_mu r) for the group mean (theory.advantages docstring)."""
    G = 4
    c = one("opmd", group_size=G).classes[0]
    np.testing.assert_allclose(c.group_advantage, (1 - 1 / G) * np.array([-0.5, 0.5]), atol=1e-12)
    np.testing.assert_allclose(c.group_bias, -np.array([-0.5, 0.5]) / G, atol=1e-12)
    pi, eta = lambert_target(MU, np.array(c.group_advantage), 0.1)
    assert c.group_target_pass_rate == pytest.approx(float(pi[1]), rel=1e-12)
    assert c.group_eta == pytest.approx(float(eta), rel=1e-12)
    # PPO's weight is not affine in A: the bias is reported, the finite-G target is not computed
    c = one("ppo", group_size=G).classes[0]
    assert c.group_bias is not None and c.group_target_pass_rate is None and "not affine" in c.group_note


def test_set_valued_target_is_a_range_and_a_one_arm_class_has_no_signal():
    o = A.advise(["ppo"], pass_rates=[0.0, 0.5], weights=[1, 3], max_lag=4).objectives[0]
    empty, c = o.classes
    assert not empty.signal and empty.target_pass_rate is None and "one-arm" in empty.note
    assert c.set_valued and c.target_pass_rate is None
    lo, hi = c.target_pass_rate_range
    assert 0.5 < lo < hi == pytest.approx(1.0)
    assert o.aggregate.weight_with_signal == pytest.approx(0.75)
    assert o.aggregate.target_pass_rate_range == pytest.approx((lo, hi))  # only the class with a signal
    assert c.lag_note.startswith("neutral")  # no pull toward the lagged policy: radius 1 everywhere


# ----------------------------------------------------------------------------- comparison


def test_comparison_ranks_by_the_weighted_kl():
    adv = A.advise(["opmd", "shifted_regression", "ppo"], pass_rates=[0.2, 0.6], max_lag=4)
    names = [o.objective for o in adv.objectives]
    assert names == ["opmd", "shifted_regression", "ppo"]
    kl = {o.objective: o.aggregate.kl_target_mu for o in adv.objectives}
    assert kl["shifted_regression"] < kl["opmd"]  # eta >= delta: closer to mu than the mean baseline
    assert adv.comparison.index("shifted_regression (KL") < adv.comparison.index("opmd (KL")
    assert "ppo's target is a set" in adv.comparison
    assert "shifted_regression" in A.render_table(adv) and "Verdict" in A.render_table(adv)


# ----------------------------------------------------------------------------- the lag analysis


def test_largest_stable_lag_shrinks_or_stays_as_the_learning_rate_grows():
    lags = []
    for lr in (1.0, 50.0, 150.0, 1000.0):
        c = one("opmd", lr=lr, max_lag=12, lag=3).classes[0]
        lags.append(c.largest_stable_lag)
    assert all(a >= b for a, b in zip(lags, lags[1:])) and lags[0] == 12 and lags[-1] == 0
    # the regression's pull on the flat face has stiffness 2 beta^2 d, d = 2 p (1 - p) (tests/test_lag.py): at p = 0.5,
    # beta = 0.1 the grid edge brackets lr = 1 / (2 beta^2 d) = 100
    c = one("opmd", lr=1000.0, max_lag=12, lag=3).classes[0]
    assert c.largest_stable_lr <= 100.0 < c.smallest_unstable_lr
    assert c.stable_at_lag is False and c.radius_at_lag > 1
    verdict = A.advise(["opmd"], pass_rates=[0.5], lr=1000.0, lag=3, max_lag=12).objectives[0].verdict
    assert "EXCEEDS" in verdict


def test_a_lag_beyond_the_search_is_evaluated_on_its_own():
    c = one("opmd", lr=1.0, max_lag=4, lag=40).classes[0]
    assert c.stable_through_search and c.largest_stable_lag == 4 and c.stable_at_lag is True


def test_areal_lag_counts_the_minibatches():
    lag = A.lag_from_areal(2, 4)
    assert (lag.lag_min, lag.lag_max, lag.staleness_versions, lag.steps_per_version) == (0, 11, 2, 4)


# ----------------------------------------------------------------------------- config readers


@pytest.mark.skipif(not HAS_VERL, reason="verl (and omegaconf) not installed")
def test_verl_yaml_file(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text(
        "data:\n  train_batch_size: 512\n"
        "actor_rollout_ref:\n  rollout:\n    n: 16\n  actor:\n    ppo_mini_batch_size: 128\n    ppo_epochs: 2\n"
        "    optim:\n      lr: 3e-6\n    policy_loss:\n      loss_mode: zoo_shifted_regression\n      dro_beta: 0.05\n"
        "algorithm:\n  adv_estimator: zoo_shifted_mean\n  zoo:\n    beta: 0.05\n    delta: 2.0\n"
        "trainer:\n  v1:\n    trainer_mode: colocate_async\n    sampler:\n      max_off_policy_threshold: 3\n")
    r = A.read_verl(f)
    assert r.objective == "shifted_regression" and dict(r.params)["beta"] == 0.05 and dict(r.params)["delta"] == 2.0
    assert r.group_size == 16 and r.lr == pytest.approx(3e-6)
    # n = 1 local update x 2 epochs x 512/128 mini-batches = 8 optimizer steps per version; S = 3 - 1 versions
    assert (r.lag.steps_per_version, r.lag.staleness_versions, r.lag.lag_max) == (8, 2, 23)
    assert "ppo_epochs 2" in r.lag.how and "max_off_policy_threshold 3" in r.lag.how


@pytest.mark.skipif(not HAS_VERL, reason="verl (and omegaconf) not installed")
def test_verl_override_lines_count_minibatches_and_epochs_as_lag():
    lines = ["algorithm.adv_estimator=grpo", "actor_rollout_ref.rollout.n=8", "data.train_batch_size=256",
             "actor_rollout_ref.actor.ppo_mini_batch_size=64", "actor_rollout_ref.actor.ppo_epochs=2",
             "actor_rollout_ref.actor.optim.lr=2e-6"]
    r = A.read_verl(None, lines)
    assert r.objective == "ppo_dual_clip"  # verl's vanilla loss has clip_ratio_c = 3 by default
    assert r.group_size == 8 and r.lr == pytest.approx(2e-6)
    assert (r.lag.staleness_versions, r.lag.steps_per_version, r.lag.lag_max) == (0, 8, 7)  # sync: 2 x 4 - 1
    r = A.read_verl(None, lines + ["+async_training.trigger_parameter_sync_step=4",
                                   "+async_training.staleness_threshold=0.5"])
    assert r.lag.framework == "verl-fully-async"
    assert (r.lag.staleness_versions, r.lag.steps_per_version, r.lag.lag_max) == (1, 8, 15)  # 4 x 2 epochs x 1


@pytest.mark.skipif(not HAS_VERL, reason="verl (and omegaconf) not installed")
def test_verl_unknown_and_unmappable_keys_are_named():
    with pytest.raises(UsageError, match=r"^actor_rollout_ref\.actor\.ppo_epoch: not a key of verl"):
        A.read_verl(None, ["actor_rollout_ref.actor.ppo_epoch=2"])
    with pytest.raises(UsageError, match=r"^algorithm\.adv_estimator=gae: not mapped.*accepts grpo"):
        A.read_verl(None, [])  # verl's default estimator is a critic's GAE
    with pytest.raises(UsageError, match=r"^algorithm\.zoo\.gamma"):
        A.read_verl(None, ["+algorithm.zoo.gamma=1"])
    with pytest.raises(UsageError, match=r"^actor_rollout_ref\.actor\.entropy_coeff=0\.01: an entropy bonus"):
        A.read_verl(None, ["algorithm.adv_estimator=grpo", "actor_rollout_ref.actor.entropy_coeff=0.01"])
    with pytest.raises(UsageError, match=r"^algorithm\.adv_estimator=grpo .* zoo_shifted_regression"):
        A.read_verl(None, ["actor_rollout_ref.actor.policy_loss.loss_mode=zoo_shifted_regression",
                           "algorithm.adv_estimator=grpo"])  # the loss with another loss's advantage


@pytest.mark.skipif(not HAS_VERL, reason="verl (and omegaconf) not installed")
def test_every_verl_recipe_reads_back_as_its_objective():
    """Each objective's Hydra lines (sims.integrations.verl.recipe) map back to it with its published parameters."""
    import sims.integrations.verl as V

    for name in sorted(set(V.BUILTIN) | set(V.REGISTERED)):
        r = A.read_verl(None, V.recipe(name).overrides())
        want = dict(make_objective(name).params)
        got = dict(make_objective(r.objective, **dict(r.params)).params)
        assert r.objective == name, name
        assert {k: v for k, v in got.items() if k != "eps"} == {k: v for k, v in want.items() if k != "eps"}, name


@pytest.mark.skipif(not HAS_TRL, reason="trl not installed")
def test_trl_json_python_and_async(tmp_path):
    f = tmp_path / "grpo.json"
    f.write_text(json.dumps({"loss_type": "grpo", "num_generations": 16, "learning_rate": 3e-6,
                             "steps_per_generation": 8, "gradient_accumulation_steps": 2, "num_iterations": 2}))
    r = A.read_trl(f)
    assert r.objective == "grpo" and r.group_size == 16 and r.lr == pytest.approx(3e-6)
    assert r.lag.lag_max == 7  # 8 x 2 micro-steps / 2 accumulation = 8 optimizer steps per generation
    py = tmp_path / "grpo.py"
    py.write_text("from trl import GRPOConfig\nargs = GRPOConfig(output_dir='out', loss_type='cispo', epsilon_high=5.0,"
                  " num_generations=4, learning_rate=1e-6)\n")
    r = A.read_trl(py)
    assert r.objective == "cispo" and dict(r.params)["eps_high"] == pytest.approx(4.0) and r.lag.lag_max == 0
    f.write_text(json.dumps({"max_staleness": 2, "weight_sync_steps": 3, "num_generations": 4}))
    r = A.read_trl(f)
    assert r.source.endswith("(AsyncGRPOConfig)") and r.lag.lag_max == 8  # (2 + 1) x 3 - 1
    f.write_text(json.dumps({"num_generation": 8}))
    with pytest.raises(UsageError, match=r"num_generation is not a key of TRL's GRPOConfig"):
        A.read_trl(f)
    f.write_text(json.dumps({"scale_rewards": "batch"}))
    with pytest.raises(UsageError, match=r"^scale_rewards='batch'"):
        A.read_trl(f)


@pytest.mark.skipif(not HAS_TRL, reason="trl not installed")
def test_every_trl_loss_type_reads_back_as_its_objective(tmp_path):
    """The GRPOConfig settings under which TRL's loss is the zoo's (sims.integrations.trl) map back to that objective."""
    import sims.integrations.trl as T

    f = tmp_path / "c.json"
    for name, (settings, zoo_params) in T.TRL_LOSS_TYPES.items():
        f.write_text(json.dumps(dict(settings)))
        r = A.read_trl(f)
        # TRL's cispo at epsilon_high = 5 is cispo_scalerl's default, i.e. cispo at eps_high = 4: either name
        same_loss = objective_spec(r.objective).loss is objective_spec(name).loss
        assert r.objective == name or (same_loss and name == "cispo_scalerl"), name
        assert dict(make_objective(r.objective, **dict(r.params)).params) == dict(
            make_objective(name, **zoo_params).params), name


# ----------------------------------------------------------------------------- the command


def test_json_round_trips_to_the_dataclass(capsys):
    adv = A.main(["--objective", "opmd", "--objective", "ppo", "--pass-rates", "0", "0.3", "--weights", "1", "2",
                  "--max-lag", "4", "--lag", "2", "--json"])
    text = capsys.readouterr().out
    data = json.loads(text)
    assert set(data) == {f.name for f in dataclasses.fields(A.Advice)}
    assert set(data["objectives"][0]["classes"][1]) == {f.name for f in dataclasses.fields(A.ClassAdvice)}
    back = A.Advice.from_json(text)
    assert back == adv
    assert "Infinity" not in text and "NaN" not in text  # strict JSON


def test_help_lists_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit) as e:
        A.main(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    fields = dataclasses.fields(A.AdviseOptions)
    for f in fields:
        assert f"--{f.name.replace('_', '-')} " in out, f.name
    assert out.count("default: ") == len(fields)  # one per flag (--help has none)


def test_the_options_are_the_flags_and_their_defaults():
    """Nothing given is AdviseOptions(); each flag sets its field (the parser is built from the dataclass)."""
    from theory.cli import dataclass_from_args

    p = A.parser()
    assert dataclass_from_args(A.AdviseOptions, p.parse_args([]), A.AdviseOptions()) == A.AdviseOptions()
    argv = ["--objective", "opmd", "--objective", "ppo:eps_low=0.1", "--group-size", "4", "--lr", "0.5",
            "--pass-rates", "0.2", "0.8", "--weights", "1", "3", "--lag", "2", "--max-lag", "6", "--verl-override",
            "a=1", "b=2", "--verl-override", "c=3", "--trl-num-processes", "2", "--areal-ppo-n-minibatches", "3",
            "--json", "--figure", "f.png"]
    got = dataclass_from_args(A.AdviseOptions, p.parse_args(argv), A.AdviseOptions())
    assert got == A.AdviseOptions(objective=("opmd", "ppo:eps_low=0.1"), group_size=4, lr=0.5, pass_rates=(0.2, 0.8),
                                  weights=(1.0, 3.0), lag=2, max_lag=6, verl_override=("a=1", "b=2", "c=3"),
                                  trl_num_processes=2, areal_ppo_n_minibatches=3, json=True, figure="f.png")


@pytest.mark.parametrize("argv, start", [
    (["--pass-rates", "1.5"], "--pass-rates: each must be in [0, 1]"),
    (["--objective", "opmd:beta=-1"], "--objective 'opmd:beta=-1'"),
    (["--objective", "nope"], "--objective 'nope': unknown objective"),
    (["--weights", "1", "2"], "--weights: one per pass rate"),
])
def test_a_mistake_is_one_line(argv, start, capsys):
    with pytest.raises(SystemExit) as e:
        A.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"python -m theory.advise: error: {start}")


def test_figure_panels(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    adv = A.advise(["opmd", "ppo"], pass_rates=[0.3, 0.7], max_lag=2)
    ax = A.plot_objective(adv.objectives[0])
    assert ax.get_xlabel() == "behaviour pass rate p"
    path = A.plot_advice(adv, tmp_path / "advice.png")
    assert path.stat().st_size > 1000


@pytest.mark.skipif(not HAS_VERL, reason="verl (and omegaconf) not installed")
def test_the_example_in_docs_is_current(capsys):
    """docs/advise.md pastes the output of the command it shows: rerun it and compare (a staleness test)."""
    import re
    import shlex
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "advise.md").read_text()
    cmd = re.search(r"## Example.*?```bash\n(.*?)\n```", doc, re.S).group(1).replace("\\\n", " ")
    argv = shlex.split(cmd)
    assert argv[:3] == ["python", "-m", "theory.advise"]
    A.main(argv[3:])
    pasted = re.search(r"## Example.*?```text\n(.*?)\n```", doc, re.S).group(1)
    assert capsys.readouterr().out.rstrip("\n") == pasted


def test_parameter_flags_set_the_objectives_parameters(capsys):
    """The issue's command: --beta / --beta1 as flags, applied to every objective that has them."""
    adv = A.main(["--objective", "oapl", "--beta", "1e-3", "--beta1", "1", "--group-size", "8", "--pass-rates", "0.3",
                  "--json"])
    capsys.readouterr()
    rep = adv.objectives[0]
    assert dict(rep.params)["beta"] == 1e-3 and dict(rep.params)["beta1"] == 1.0
    c = rep.classes[0]
    assert c.regime == "positive" and c.eta > 0 and c.largest_stable_lag is not None
    assert c.target_pass_rate is not None and c.target_entropy is not None
    own = A.main(["--objective", "opmd:beta=0.2", "--objective", "oapl", "--beta", "0.05", "--pass-rates", "0.3"])
    capsys.readouterr()
    assert [dict(o.params)["beta"] for o in own.objectives] == [0.2, 0.05]  # the objective's own k=v wins


@pytest.mark.parametrize("argv, match", [
    (["--objective", "grpo", "--beta", "0.1"], "--beta: none of the objectives \\(grpo\\) has a parameter 'beta'"),
    (["--objective", "opmd", "--beta", "-1"], "--objective opmd: .*beta must be > 0"),
])
def test_parameter_flag_mistakes_name_the_flag(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        A.main(argv)
    assert e.value.code == 2 and re.search(match, capsys.readouterr().err)


# ----------------------------------------------------------------------------- the frameworks' own configs


@pytest.mark.skipif(not HAS_VERL, reason="verl (and omegaconf) not installed")
def test_verls_own_trainer_config_reads_or_names_the_key():
    """verl 0.9.1's shipped ppo_trainer configs: PPO with GAE is named as unmappable; switched to GRPO it reads."""
    import verl

    folder = Path(verl.__file__).parent / "trainer" / "config"
    for name in ("_generated_ppo_trainer.yaml", "ppo_trainer.yaml"):
        with pytest.raises(UsageError, match="algorithm.adv_estimator=gae: not mapped"):
            A.read_verl(folder / name)
        r = A.read_verl(folder / name, ["algorithm.adv_estimator=grpo"])
        # verl's defaults: vanilla loss with clip_ratio_c = 3 (dual clip), rollout.n = 1, lr 1e-6,
        # train_batch_size 1024 / ppo_mini_batch_size 256 = 4 optimizer steps per generation
        assert r.objective == "ppo_dual_clip" and r.group_size == 1 and r.lr == pytest.approx(1e-6)
        assert r.lag.lag_max == 3


@pytest.mark.skipif(not HAS_TRL, reason="trl not installed")
def test_trls_own_grpo_config_as_written_by_to_dict_reads(tmp_path):
    """TRL 1.16's GRPOConfig defaults, dumped by to_dict() (which writes steps_per_generation and
    generation_batch_size both): read as TRL's default loss; an inconsistent pair is named."""
    from trl import GRPOConfig

    cfg = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
    f = tmp_path / "grpo_config.json"
    f.write_text(json.dumps(cfg.to_dict(), default=str))
    r = A.read_trl(f)
    assert r.objective == "dapo" and r.group_size == cfg.num_generations and r.lr == cfg.learning_rate
    assert r.lag.lag_max == 0  # one generation per optimizer step by default
    d = cfg.to_dict()
    d["generation_batch_size"] = d["generation_batch_size"] + 1
    f.write_text(json.dumps(d, default=str))
    with pytest.raises(UsageError, match="both set and disagree"):
        A.read_trl(f)


# ----------------------------------------------------------------------------- the lag bound against the exact iteration


def _exact_gap_after(c_lr, L, beta=0.5, steps=400, eps=1e-6):
    """The exact delayed iteration pi_{t+1} = F(pi_t, pi_{t-L}) (sims.lag.delayed_step, rule 'gradient') of opmd on
    the flat two-arm bandit mu = (1/2, 1/2), from a history at mu with the current policy nudged by eps: the last
    step's change |pi_t - pi_{t-1}|, or inf once it exceeds 1e-2 (the perturbation grew)."""
    from sims.lag import delayed_step

    obj, r = make_objective("opmd", beta=beta), np.array([1.0, 1.0])
    hist = [np.log(np.array([0.5, 0.5]))] * L + [np.log(np.array([0.5 + eps, 0.5 - eps]))]
    gap = 2 * eps
    for _ in range(steps):
        hist = hist[1:] + [delayed_step(obj, r, hist[-1], hist[0], "gradient", lr=c_lr)]
        gap = abs(np.exp(hist[-1][0]) - np.exp(hist[-2][0]))
        if not np.isfinite(gap) or gap > 1e-2:
            return np.inf
    return gap


@pytest.mark.parametrize("L", [1, 2, 3])
def test_lag_bound_is_where_the_exact_delayed_iteration_turns_unstable(L):
    """The advisor's stable step-size bracket and the analytic bound lr* = 1 / (2 beta^2 d) (d = 1/2 at p = 1/2)
    against the exact iteration: the perturbation dies just below and grows just above, at every lag."""
    beta = 0.5
    c = A.advise([f"opmd:beta={beta}"], pass_rates=[0.5], lr=1.0, lag=L, max_lag=4).objectives[0].classes[0]
    lr_star = 1 / (2 * beta**2 * 0.5)
    assert c.largest_stable_lr <= lr_star < c.smallest_unstable_lr
    assert _exact_gap_after(c.largest_stable_lr, L) < 1e-9 and _exact_gap_after(c.smallest_unstable_lr, L) == np.inf
    assert _exact_gap_after(0.97 * lr_star, L) < 2e-6 and _exact_gap_after(1.03 * lr_star, L) > 2e-5


@pytest.mark.skipif(not HAS_VERL, reason="verl (and omegaconf) not installed")
def test_verl_correction_without_a_recipe_is_refused_not_dropped():
    """A rejection option no zoo recipe has is named, not silently read as the plain PPO it sits on."""
    import sims.integrations.verl as V

    lines = [*V.recipe("ppo").overrides(), "algorithm.rollout_correction.rollout_rs=token_k1",
             "algorithm.rollout_correction.rollout_rs_threshold=0.5"]
    with pytest.raises(UsageError, match=r"rollout_rs=token_k1.*ppo"):
        A.read_verl(None, lines)
    with pytest.raises(UsageError, match=r"^actor_rollout_ref\.actor\.clip_ratio_high=0\.3: the closest zoo objective.*clip_cov"):
        A.read_verl(None, [*V.recipe("clip_cov").overrides(), "actor_rollout_ref.actor.clip_ratio_high=0.3"])
