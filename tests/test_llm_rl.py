"""The RL trainer: runs, lag ring, determinism, resumption (in process and after kill -9), bad configs."""

import csv
import json
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sims.llm.rl import RL_PRESETS, RLConfig, main as rl_main, parse_objective_params, train_rl
from theory.advantages import GROUP_INPUTS
from theory.objectives import objective_names, objective_spec
from theory.outputs import UsageError
from _metrics import csv_rows, kill_at_first_checkpoint_then_resume, rows_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sft(tiny_sft):
    """(model, task, path of its checkpoint): the session's tiny SFT warm start (tests/conftest.py)."""
    return tiny_sft


def _cfg(sft, **kw):
    base = dict(steps=6, eval_every=3, ckpt_every=2, progress=False, num_threads=1, lag=2)
    base.update(kw)
    return replace(RL_PRESETS["smoke"], sft=str(sft[2]), **base)


def test_smoke_preset_runs_20_steps_and_logs_every_metric(sft, tmp_path):
    cfg = replace(RL_PRESETS["smoke"], sft=str(sft[2]), out_dir=str(tmp_path), progress=False)
    res = train_rl(cfg, warm_start=sft[:2])
    assert res.step == 20 and res.status == "done" and len(res.history) == 20
    rows = csv_rows(tmp_path / "metrics.csv")
    assert len(rows) == 20 and (tmp_path / "summary.json").exists() and (tmp_path / "ckpt.pt").exists()
    for r in rows:
        for k in ("loss", "reward", "pass_rate", "entropy", "kl", "kl_after", "ratio_mean", "ess", "grad_norm"):
            assert r[k] is not None and r[k] == r[k], k
        assert 0 < r["ess"] <= 1 + 1e-9 and r["entropy"] > 0 and r["clip_frac"] is None
        # opmd: mean baseline, so the fitted eta is the realized KL(mu || pi_new)
        assert r["eta_fit"] == pytest.approx(r["kl_after"], abs=1e-6) and r["eta_pred"] >= -1e-9
    assert rows[9]["eval/pass@1"] is not None and rows[19]["eval/pass@4_se"] is not None
    assert rows[0]["eval/pass@1"] is None


@pytest.mark.parametrize("lag", [0, 3])
def test_each_rollout_comes_from_the_weights_of_lag_steps_earlier(sft, lag):
    """Recorded behaviour log-probs match re-scoring under the snapshot of step t - L."""
    model0 = sft[0]
    weights = [{k: v.clone() for k, v in model0.state_dict().items()}]  # weights[t] = after t steps
    seen = []

    def on_step(t, roll, behaviour_state, model):
        seen.append((t, roll, {k: v.clone() for k, v in behaviour_state.items()}))
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    train_rl(_cfg(sft, lag=lag, steps=6, eval_every=100), warm_start=sft[:2], on_step=on_step)
    scorer = type(model0)(model0.config)
    for t, roll, beh in seen:
        src = weights[max(0, t - lag)]
        assert all(torch.equal(beh[k], src[k]) for k in src)
        scorer.load_state_dict(src)
        with torch.no_grad():
            torch.testing.assert_close(scorer.completion_logprobs(roll), roll.logp, atol=1e-5, rtol=0)
        if lag > 0 and t >= 1:  # the current weights would not have recorded these numbers
            scorer.load_state_dict(weights[t])
            with torch.no_grad():
                assert (scorer.completion_logprobs(roll) - roll.logp).abs().max() > 1e-4


def test_runs_are_deterministic_and_the_seed_matters(sft):
    a = train_rl(_cfg(sft, steps=4), warm_start=sft[:2])
    b = train_rl(_cfg(sft, steps=4), warm_start=sft[:2])
    c = train_rl(_cfg(sft, steps=4, seed=1), warm_start=sft[:2])
    assert rows_of(a.history) == rows_of(b.history)
    assert rows_of(a.history) != rows_of(c.history)
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(x, y)


@pytest.fixture(scope="module")
def uninterrupted(sft, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    cfg = _cfg(sft, objective="tis", out_dir=str(out))  # needs prox; lag 2 exercises the ring
    return cfg, train_rl(cfg, warm_start=sft[:2])


def test_resume_reproduces_metrics_exactly(sft, uninterrupted, tmp_path):
    cfg, full = uninterrupted
    cfg = replace(cfg, out_dir=str(tmp_path))
    first = train_rl(cfg, warm_start=sft[:2], stop_after=3)  # last checkpoint at step 2: step 3 is redone
    assert first.status == "interrupted" and first.step == 3
    second = train_rl(cfg, warm_start=sft[:2], resume=True)
    assert second.step == cfg.steps
    assert csv_rows(tmp_path / "metrics.csv") == csv_rows(Path(full.config.out_dir) / "metrics.csv")
    for x, y in zip(full.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(x, y)


def test_resume_after_kill_9(sft, tmp_path):
    """A killed CLI run continues from its last checkpoint with identical metrics."""
    steps = 30
    ref = train_rl(_cfg(sft, steps=steps, eval_every=10, lag=4, ckpt_every=2), warm_start=sft[:2])
    args = [sys.executable, "-m", "sims.llm.rl", "--preset", "smoke", "--sft", str(sft[2]), "--objective", "opmd"]
    args += ["--lag", "4", "--steps", str(steps), "--eval-every", "10", "--ckpt-every", "2", "--num-threads", "1"]
    args += ["--no-progress", "--out-dir", str(tmp_path)]
    kill_at_first_checkpoint_then_resume(args, tmp_path, ROOT)
    assert csv_rows(tmp_path / "metrics.csv") == rows_of(ref.history)


def test_resume_extends_a_finished_run_to_the_straight_run(sft, tmp_path):
    """steps is a stopping rule: N steps, then --resume with 2N, is the straight 2N run, bit for bit (the
    learning rate is constant; the evaluation at the old last step N falls on eval_every here)."""
    straight = train_rl(_cfg(sft, steps=4, eval_every=2, out_dir=str(tmp_path / "straight")), warm_start=sft[:2])
    short = _cfg(sft, steps=2, eval_every=2, out_dir=str(tmp_path / "grown"))
    assert train_rl(short, warm_start=sft[:2]).status == "done"
    grown = train_rl(replace(short, steps=4), warm_start=sft[:2], resume=True)
    assert grown.step == 4 and grown.status == "done"
    assert csv_rows(tmp_path / "grown" / "metrics.csv") == csv_rows(tmp_path / "straight" / "metrics.csv")
    for x, y in zip(straight.model.state_dict().values(), grown.model.state_dict().values()):
        assert torch.equal(x, y)
    assert json.loads((tmp_path / "grown" / "summary.json").read_text())["step"] == 4
    # and from the command line, where --steps may differ on --resume (as may --ckpt-every)
    args = ["--preset", "smoke", "--sft", str(sft[2]), "--lag", "2", "--eval-every", "2", "--num-threads", "1"]
    args += ["--no-progress", "--out-dir", str(tmp_path / "grown"), "--resume"]
    assert rl_main(args + ["--steps", "5", "--ckpt-every", "5"])["step"] == 5


def test_a_run_is_never_replaced_unless_overwrite_and_then_nothing_stale_is_left(sft, tmp_path, capsys):
    out = tmp_path / "run"
    first = _cfg(sft, steps=3, out_dir=str(out))
    train_rl(first, warm_start=sft[:2])
    (out / "sft").mkdir()  # an earlier run's SFT warm start (an SFT preset trains it there)
    (out / "sft" / "ckpt.pt").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")  # not a file of the run: kept
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    second = replace(first, steps=2, seed=1)
    with pytest.raises(UsageError, match="--resume.*--overwrite"):
        train_rl(second, warm_start=sft[:2])
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    res = train_rl(second, warm_start=sft[:2], overwrite=True)
    assert not (out / "sft").exists() and (out / "notes.txt").read_text() == "mine"
    assert csv_rows(out / "metrics.csv") == rows_of(res.history) and len(res.history) == 2
    assert json.loads((out / "summary.json").read_text())["config"]["seed"] == 1
    fresh = train_rl(replace(second, out_dir=None), warm_start=sft[:2])
    assert rows_of(fresh.history) == rows_of(res.history)  # the same as a run into an empty folder


def test_run_files_get_the_users_umask(sft, tmp_path):
    old = os.umask(0o022)
    try:
        train_rl(_cfg(sft, steps=2, out_dir=str(tmp_path)), warm_start=sft[:2])
    finally:
        os.umask(old)
    for name in ("ckpt.pt", "metrics.csv", "summary.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "metrics.csv", "summary.json"]  # no temp files


def test_the_cli_without_out_dir_says_nothing_is_saved(sft, capsys):
    rl_main(["--preset", "smoke", "--sft", str(sft[2]), "--steps", "1", "--num-threads", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert "no --out-dir given, so nothing will be saved" in err


def test_resume_refuses_a_different_config(sft, uninterrupted):
    cfg, _ = uninterrupted
    with pytest.raises(ValueError, match="lr"):
        train_rl(replace(cfg, lr=0.5), warm_start=sft[:2], resume=True)


def test_every_objective_of_the_zoo_trains_one_step(sft):
    for name in objective_names():
        adv = objective_spec(name).advantage
        if adv in GROUP_INPUTS:  # remax's greedy reward, the optimal baseline's score norms: refused up front
            with pytest.raises(ValueError, match=f"objective: '{name}' uses the '{adv}' estimator.*{GROUP_INPUTS[adv]}"):
                _cfg(sft, objective=name, steps=1, lag=1)
            continue
        res = train_rl(_cfg(sft, objective=name, steps=1, lag=1), warm_start=sft[:2])
        row = res.history[0]
        assert row["loss"] == row["loss"] and row["grad_norm"] == row["grad_norm"], name
        assert (row["eta_fit"] is not None) == (res.config.make_objective().family == "regression"), name


def test_shifted_regression_predicts_eta_at_least_delta(sft):
    res = train_rl(_cfg(sft, objective="shifted_regression", objective_params={"delta": 2.0}, steps=2), warm_start=sft[:2])
    assert all(r["eta_pred"] >= 2.0 - 1e-9 for r in res.history)


def test_bad_configs_name_the_field(sft):
    with pytest.raises(ValueError, match="lag"):
        _cfg(sft, lag=-1)
    with pytest.raises(ValueError, match="group_size.*G >= 2"):
        _cfg(sft, objective="grpo", group_size=1)
    with pytest.raises(ValueError, match="objective.*valid objectives: pg, ppo"):
        _cfg(sft, objective="nope")
    with pytest.raises(ValueError, match="objective.*no parameter"):
        _cfg(sft, objective="opmd", objective_params={"gamma": 1})
    with pytest.raises(ValueError, match="sft"):
        RLConfig(sft="/no/such/ckpt.pt")
    with pytest.raises(ValueError, match="eval_ks"):
        _cfg(sft, eval_ks=(2,))
    _cfg(sft, objective="opmd", group_size=1)  # the mean baseline works with G = 1


def test_cli_help_and_errors(capsys):
    with pytest.raises(SystemExit) as e:
        rl_main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--lag" in out and "samples come from the weights of L steps earlier" in out
    with pytest.raises(SystemExit) as e:
        rl_main(["--preset", "smoke", "--lag", "-2"])
    assert e.value.code != 0 and "lag" in capsys.readouterr().err
    assert parse_objective_params("beta=0.05,delta=2,eps_low=none") == {"beta": 0.05, "delta": 2, "eps_low": None}
    assert parse_objective_params('{"beta": 0.5}') == {"beta": 0.5}


def test_confirm_grid_writes_tidy_results(sft, tmp_path):
    from sims.llm.confirm import main as confirm_main

    old = os.umask(0o022)
    try:
        summary = confirm_main(
            ["--out-dir", str(tmp_path), "--sft", str(sft[2]), "--steps", "2", "--seeds", "0", "1"]
            + ["--lags", "1", "--objectives", "opmd", "grpo"]
        )
    finally:
        os.umask(old)
    for name in ("results.csv", "sweep.json", "summary.csv", "tables.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["objective"] for r in rows} == {"opmd", "grpo"}
    assert [r["eta_fit"] == "" for r in rows] == [False, False, True, True]
    assert len(summary) == 2 and summary[0]["seeds"] == 2 and summary[0]["reward_se"] is not None
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep["inner_steps"] == RL_PRESETS["smoke"].inner_steps and sweep["lr"] == RL_PRESETS["smoke"].lr
    with pytest.raises(SystemExit) as e:
        confirm_main(["--out-dir", str(tmp_path / "bad"), "--inner-steps", "0"])
    assert e.value.code != 0


def test_confirm_grid_grows_in_place_and_refuses_other_settings(sft, tmp_path, capsys):
    from sims.llm.confirm import main as confirm_main

    common = ["--out-dir", str(tmp_path), "--sft", str(sft[2]), "--steps", "2", "--lags", "0", "--objectives", "opmd"]
    confirm_main(common + ["--seeds", "0"])
    first = (tmp_path / "results.csv").read_text()
    capsys.readouterr()
    summary = confirm_main(common + ["--seeds", "0", "1"])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["objective"], r["seed"]) for r in printed] == [("opmd", 1)]  # seed 0 was kept, not retrained
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["seed"] for r in rows] == ["0", "1"] and summary[0]["seeds"] == 2
    assert first.splitlines()[1] == (tmp_path / "results.csv").read_text().splitlines()[1]  # row kept verbatim
    assert json.loads((tmp_path / "sweep.json").read_text())["seeds"] == [0, 1]
    confirm_main(common + ["--seeds", "1"])  # a subset: nothing to train, nothing lost
    assert (tmp_path / "results.csv").read_text().count("\n") == 3  # header + 2 rows
    with pytest.raises(SystemExit) as e:
        confirm_main(["--out-dir", str(tmp_path), "--sft", str(sft[2]), "--steps", "3", "--seeds", "2"])
    assert e.value.code != 0 and "steps: 3 differs from 2" in capsys.readouterr().err
    assert (tmp_path / "results.csv").read_text().count("\n") == 3  # header + 2 rows
    # --overwrite starts over: the earlier cells are gone, not mixed in; --progress shows a bar per cell
    confirm_main(["--out-dir", str(tmp_path), "--sft", str(sft[2]), "--steps", "3", "--seeds", "2", "--lags", "0"]
                 + ["--objectives", "opmd", "--overwrite", "--progress"])
    assert "confirm cells" in capsys.readouterr().err
    with open(tmp_path / "results.csv") as f:
        assert [(r["seed"], r["lag"]) for r in csv.DictReader(f)] == [("2", "0")]
    assert json.loads((tmp_path / "sweep.json").read_text())["steps"] == 3


def test_confirm_report_pairs_the_differences_by_seed():
    """A per-seed offset shared by two objectives cancels in the paired difference (z = 17.3), not in
    the combined s.e. of the two means (z = 0.1); a lag with fewer than 2 common seeds is left blank."""
    from sims.llm import confirm

    rows = []
    for obj, eta in [("opmd", [0.0, 10.0, 20.0]), ("shifted_regression", [1.1, 10.9, 21.0])]:
        for seed, e in enumerate(eta):
            rows.append({"objective": obj, "lag": 0, "seed": seed, **dict.fromkeys(confirm.METRICS, 0.5),
                         "eval_pass@1": 0.1, "eta_fit": e})
    rows += [{**rows[0], "lag": 4}, {**rows[3], "lag": 4, "seed": 1}]
    summary = confirm.score(rows)
    paired, unpaired = confirm.report(summary, rows), confirm.report(summary)
    line = next(x for x in paired.splitlines() if x.startswith("| `opmd` → `shifted_regression`"))
    assert line == "| `opmd` → `shifted_regression` | +1 ± 0.058 (z = +17.3) |  |"
    assert "| `opmd` → `shifted_regression` | +1 ± 8.1 (z = +0.1) |" in unpaired
    assert "paired by seed" in paired


def test_cosine_learning_rate_schedule_and_its_checks():
    """lr_at: constant without min_lr; with it, cosine from lr to min_lr over decay_steps, then min_lr."""
    import math as _m

    from sims.llm.rl import RLConfig, lr_at

    const = RLConfig(lr=3e-4)
    assert [lr_at(s, const) for s in (0, 10, 10_000)] == [3e-4] * 3
    cos = RLConfig(lr=3e-4, min_lr=3e-5, decay_steps=240)
    assert lr_at(0, cos) == pytest.approx(3e-4, rel=1e-15)
    assert lr_at(120, cos) == pytest.approx((3e-4 + 3e-5) / 2, rel=1e-12)
    assert lr_at(60, cos) == pytest.approx(3e-5 + 0.5 * (3e-4 - 3e-5) * (1 + _m.cos(_m.pi / 4)), rel=1e-12)
    assert lr_at(240, cos) == lr_at(1000, cos) == pytest.approx(3e-5, rel=1e-15)
    with pytest.raises(ValueError, match="min_lr: must lie in"):
        RLConfig(lr=1e-4, min_lr=1e-3, decay_steps=10)
    with pytest.raises(ValueError, match="decay_steps: the cosine decay"):
        RLConfig(lr=1e-4, min_lr=1e-5)
