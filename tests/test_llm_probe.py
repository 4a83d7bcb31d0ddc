"""The converged probe: its prediction against theory, its estimators on exact log-ratios, runs, resumption, errors."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sims.llm import probe
from theory.advantages import conditional_group_advantage
from theory.lambert import lambert_stationary_points
from theory.objectives import make_objective

ROOT = Path(__file__).resolve().parents[1]
MU, R = np.array([0.77, 0.23]), np.array([0.0, 1.0])


@pytest.fixture(scope="module")
def sft_path(tiny_sft):
    return str(tiny_sft[2])


@pytest.mark.parametrize("spec", probe.DEFAULT_OBJECTIVES)
def test_prediction_is_the_lambert_target_at_the_conditional_advantage(spec):
    name, params = probe.parse_spec(spec)
    obj = make_objective(name, **params)
    beta = obj.params["beta"]
    pr = probe.predict(obj, MU, R, 64)
    adv = conditional_group_advantage(obj.advantage, MU, R, 64, **obj.advantage_params())
    assert np.allclose(pr["adv"], adv, rtol=0, atol=1e-15)
    sp = lambert_stationary_points(MU, adv, beta)
    pi = sp.pi[int(sp.global_index)]
    assert np.allclose(pr["log_u"], np.log(pi / MU), atol=1e-12) and pr["eta"] == float(sp.eta[int(sp.global_index)])
    # the stationary point's identity eta = KL(mu || pi) + E_mu[A] / beta
    assert math.isclose(pr["eta"], pr["kl"] + MU @ adv / beta, abs_tol=1e-9)
    assert math.isclose(np.exp(pr["log_u"]) @ MU, 1.0, abs_tol=1e-12)
    # the relaxed target: the same in the positive regime, e^{A/beta} with a deficit otherwise
    if pr["eta"] > 0:
        assert pr["relaxed_leak"] == 0 and np.allclose(pr["relaxed_log_u"], pr["log_u"], atol=1e-12)
    else:
        assert pr["relaxed_eta"] == 0 and np.allclose(pr["relaxed_log_u"], adv / beta, atol=1e-12)
        assert math.isclose(pr["relaxed_leak"], 1 - MU @ np.exp(adv / beta), abs_tol=1e-12)
    # the nominal Gibbs target is the most aggressive: more mass moved off the failing class
    assert pr["gibbs_log_u"][0] < pr["log_u"][0] or name == "opmd_above"


def test_predicted_order_of_pessimism_across_the_baselines():
    eta = []
    for spec in probe.DEFAULT_OBJECTIVES:
        name, params = probe.parse_spec(spec)
        eta.append(probe.predict(make_objective(name, **params), MU, R, 64)["eta"])
    assert eta == sorted(eta) and eta[0] < 0 < eta[2]  # above < soft value (~0) < decoupled < mean < shifted


def test_realized_estimators_recover_an_exact_target():
    """Log-ratios equal to the predicted class log-ratios give back the predicted eta and KL exactly."""
    obj = make_objective("opmd")
    counts = np.array([770, 230])
    cls = np.repeat([0, 1], counts)
    pr = probe.predict(obj, counts / counts.sum(), R, 64)
    s = pr["log_u"][cls]
    out = probe.realized(s, cls, pr["adv"], obj.params["beta"])
    assert np.allclose(out["log_u"], pr["log_u"], atol=1e-12) and np.all(out["spread"] < 1e-12)
    assert math.isclose(out["eta"], pr["eta"], abs_tol=1e-9) and math.isclose(out["kl"], pr["kl"], abs_tol=1e-9)
    assert abs(out["leak"]) < 1e-12  # the exact target stays on mu's support
    # halving pi on every sampled completion leaves half its mass off mu's support
    assert math.isclose(probe.realized(s - math.log(2), cls, pr["adv"], obj.params["beta"])["leak"], 0.5, abs_tol=1e-12)
    # spread within a class raises the class log-ratio (log-mean-exp) above the mean log-ratio
    s2 = s.copy()
    s2[cls == 0] += np.tile([-0.5, 0.5], 385)
    out2 = probe.realized(s2, cls, pr["adv"], obj.params["beta"])
    assert out2["log_u"][0] > pr["log_u"][0] and math.isclose(out2["spread"][0], 0.5)


def _cfg(sft_path, **kw):
    base = dict(
        sft=sft_path,
        objectives=("opmd",),
        seeds=(0,),
        prompts=2,
        pass_low=0.0,
        pass_high=1.0,
        screen_samples=4,
        group_size=4,
        steps=3,
        eval_samples=16,
        log_every=1,
        num_threads=1,
    )
    base.update(kw)
    return probe.ProbeConfig(**base)


def test_run_writes_every_file_and_grows_in_place(sft_path, tmp_path, capsys):
    rows = probe.run(_cfg(sft_path), tmp_path)
    assert len(rows) == 2 and {r["prompt"] for r in rows} == {0, 1}
    for name in ("probe.csv", "trajectory.csv", "summary.csv", "probe.json", "tables.md"):
        assert (tmp_path / name).exists()
    with open(tmp_path / "trajectory.csv") as f:
        traj = list(csv.DictReader(f))
    assert [int(t["step"]) for t in traj] == [0, 1, 2, 3]
    assert abs(float(traj[0]["kl"])) < 1e-5  # at step 0 the model is mu
    for r in rows:
        assert 0 <= r["pass_pi"] <= 1 and np.isfinite(r["eta"]) and r["stationary_points"] >= 1
    capsys.readouterr()
    rows = probe.run(_cfg(sft_path, seeds=(0, 1)), tmp_path)  # seed 0 is kept
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(out) == 1 and len(rows) == 4 and sorted({r["seed"] for r in rows}) == [0, 1]
    assert json.loads((tmp_path / "probe.json").read_text())["seeds"] == [0, 1]
    with pytest.raises(ValueError, match="steps: 4 differs from 3"):
        probe.run(_cfg(sft_path, steps=4, seeds=(2,)), tmp_path)
    assert (tmp_path / "probe.csv").read_text().count("\n") == 5
    summary = probe.summarize(rows)
    assert summary[0]["n"] == 4 and summary[0]["eta_gap_se"] is not None
    (tmp_path / "summary.csv").unlink()  # derived files come back from probe.csv without training
    (tmp_path / "tables.md").unlink()
    assert len(probe.run(_cfg(sft_path, seeds=(1,)), tmp_path)) == 4
    assert (tmp_path / "summary.csv").exists() and "| `opmd` |" in (tmp_path / "tables.md").read_text()


def test_the_cli_and_bad_configs(sft_path, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        probe.main(["--out-dir", str(tmp_path), "--sft", sft_path, "--objectives", "grpo"])
    assert e.value.code != 0 and "not a sequence-level regression" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        probe.main(["--out-dir", str(tmp_path), "--sft", sft_path, "--objectives", "nope"])
    assert e.value.code != 0 and "nope" in capsys.readouterr().err
    for kw, msg in [
        (dict(pass_low=0.6, pass_high=0.5), "pass_low"),
        (dict(group_size=1), "group_size"),
        (dict(steps=0), "steps"),
        (dict(lr=0.0), "lr"),
        (dict(sft="missing.pt"), "sft"),
        (dict(objectives=("opmd_lme:beta1=-1",)), "beta1"),
    ]:
        with pytest.raises(ValueError, match=msg):
            _cfg(sft_path, **kw)
    # no prompt with a pass rate in range: a clear error, nothing written
    with pytest.raises(ValueError, match="screened pass rate"):
        probe.run(_cfg(sft_path, pass_low=0.4, pass_high=0.6, screen_samples=1), tmp_path / "none")
    assert not (tmp_path / "none" / "probe.csv").exists()


def test_report_pairs_the_differences_by_seed_and_prompt():
    """Two objectives whose realized eta shares a large per-(seed, prompt) offset: paired, the
    ordering is resolved (z = 1.0 / (0.1 / sqrt 3) = 17.3); unpaired it is not (z = 0.1)."""
    keys = {k for k in probe.SUMMARY_METRICS} | {k for _, a, b in probe.GAPS for k in (a, b)}
    rows = []
    for spec, eta in [("opmd", [0.0, 10.0, 20.0]), ("shifted_regression", [1.1, 10.9, 21.0])]:
        for i, e in enumerate(eta):
            rows.append({"objective": spec, "seed": i // 2, "prompt": i % 2, **dict.fromkeys(keys, 0.0), "eta": e})
    summary = probe.summarize(rows)
    paired, unpaired = probe.report(summary, rows), probe.report(summary)
    assert "| `opmd` → `shifted_regression` | +1.000 ± 0.058 (z = +17.3)" in paired
    assert "| `opmd` → `shifted_regression` | +1.000 ± 8.145 (z = +0.1)" in unpaired
    assert "paired by (seed, prompt)" in paired and "combined s.e." in unpaired
