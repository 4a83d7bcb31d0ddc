"""The learning trainer and the lag study: fresh problems, binary reward, the packed pass, statistics, the study's files."""

import csv
import dataclasses
import gzip
import math

import numpy as np
import pytest
import torch

from sims.llm import lag_study
from sims.llm.lag_study import STUDY_PRESETS, Arm, LagStudy, collapse_step, read_cells, run
from sims.llm.model import GPT, GPTConfig
from sims.llm.rl import RL_PRESETS, RLConfig, train_rl
from sims.llm.stats import bootstrap_ci, iqm, paired, seeds_to_resolve, stratified_bootstrap_ci
from sims.llm.tasks import ProblemStream, make_task
from sims.llm.tokenizer import PAD
from theory.outputs import UsageError


@pytest.fixture(scope="module")
def sft(tiny_sft):
    return tiny_sft


# ----------------------------------------------------------------------------- fresh problems


@pytest.fixture(scope="module")
def task():
    return make_task("chain_sum", size=300, eval_size=40, difficulty="medium")


def test_the_stream_never_repeats_and_never_serves_a_pool_or_held_out_prompt(task):
    s = task.stream(3)
    got = [p.prompt for p in s.take(60)] + [p.prompt for p in s.take(60)]
    assert len(set(got)) == len(got) == 120
    assert not set(got) & {p.prompt for p in task.eval}
    assert not set(got) & {p.prompt for p in task.train}
    for p in s.take(20):  # everything fits the task's model
        assert len(p.prompt) <= task.max_prompt_len and len(p.completion) <= task.max_completion_len
        assert task.score(p.completion, p) == 1.0


def test_the_stream_is_a_function_of_task_and_seed_and_skip_replays_it(task):
    a = [p.prompt for p in task.stream(0).take(50)]
    assert a == [p.prompt for p in task.stream(0).take(50)]
    assert a != [p.prompt for p in task.stream(1).take(50)]
    s = task.stream(0)
    s.skip(30)
    assert [p.prompt for p in s.take(20)] == a[30:]


def test_a_spent_problem_space_is_an_error_not_a_repeat():
    tiny = make_task("chain_sum", size=400, eval_size=20, difficulty="tiny")  # 200 prompts, all in the pool
    with pytest.raises(RuntimeError, match="ran out"):
        tiny.stream(0).take(300)


@pytest.mark.parametrize("seed", [-1, 10**5, 1.5])
def test_the_stream_refuses_a_bad_seed(task, seed):
    with pytest.raises(ValueError, match="seed"):
        ProblemStream(task, seed)


# ----------------------------------------------------------------------------- the packed teacher-forced pass


def _padded_logprobs(model, roll):
    """The reference: teacher forcing on the padded [prompt | completion] rows, as sampling lays them out."""
    seq = roll.sequences()
    Tp = roll.prompts.shape[1]
    mask = torch.cat([torch.zeros_like(roll.prompts[:, 1:], dtype=torch.bool), roll.mask], 1)
    return model.token_logprobs(seq[:, :-1], seq[:, 1:], mask)[:, Tp - 1 :]


@pytest.mark.parametrize("chunks", [None, 1, 3, 64])
def test_packed_logprobs_equal_the_padded_pass_in_value_and_gradient(task, chunks):
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("smoke", vocab_size=task.tokenizer.vocab_size, block_size=task.block_size + 4))
    prompts = task.tokenizer.encode_prompts(["1+2=", "13-4+5=", "7=", "99+1="])  # left padding of several widths
    roll = model.sample(prompts, 5, task.max_new_tokens, 1.0, torch.Generator().manual_seed(1))
    assert roll.lengths.unique().numel() > 1  # ragged completions
    ref = _padded_logprobs(model, roll)
    got = model.completion_logprobs(roll, chunks=chunks)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=0)
    assert torch.all(got[~roll.mask] == 0)
    torch.testing.assert_close(got, roll.logp, atol=2e-5, rtol=0)  # what sampling recorded
    w = torch.randn(roll.mask.shape, generator=torch.Generator().manual_seed(2))
    g_ref = torch.autograd.grad((ref * w).sum(), model.wte.weight)[0]
    g_got = torch.autograd.grad((model.completion_logprobs(roll, chunks=chunks) * w).sum(), model.wte.weight)[0]
    torch.testing.assert_close(g_got, g_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("chunks", [None, 3])
def test_expected_logprobs_over_the_sampling_distribution(task, chunks):
    """completion_logprobs(expected=True): sum_v d_t(v) log pi(v | s_t) against the padded teacher-forced pass."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("smoke", vocab_size=task.tokenizer.vocab_size, block_size=task.block_size + 4))
    prompts = task.tokenizer.encode_prompts(["1+2=", "13-4+5=", "7=", "99+1="])
    roll = model.sample(prompts, 5, task.max_new_tokens, 0.7, torch.Generator().manual_seed(1), keep_dist=True)
    plain = model.sample(prompts, 5, task.max_new_tokens, 0.7, torch.Generator().manual_seed(1))
    assert torch.equal(roll.tokens, plain.tokens) and plain.dist is None  # keeping d_t changes no draw
    d = roll.dist  # (N, Tc, V): the tempered distribution each token was drawn from, zero off the mask
    torch.testing.assert_close(d.sum(-1), roll.mask.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.log(d.gather(2, roll.tokens[..., None]).squeeze(2).clamp_min(1e-30))[roll.mask],
                               roll.logp[roll.mask], atol=1e-5, rtol=0)
    logp, exp_lp = model.completion_logprobs(roll, 0.7, chunks=chunks, expected=True)
    seq, Tp = roll.sequences(), roll.prompts.shape[1]
    lsm = torch.log_softmax(model(seq[:, :-1]) / 0.7, -1)[:, Tp - 1 :]  # padded reference (the rows' layout)
    ref = torch.where(roll.mask, (d * lsm.masked_fill(d == 0, 0.0)).sum(-1), 0.0)  # PAD, BOS: log pi = -inf
    torch.testing.assert_close(exp_lp, ref, atol=2e-5, rtol=0)
    torch.testing.assert_close(logp, roll.logp, atol=2e-5, rtol=0)
    w = torch.randn(roll.mask.shape, generator=torch.Generator().manual_seed(2))
    g_ref = torch.autograd.grad((ref * w).sum(), model.wte.weight)[0]
    g_got = torch.autograd.grad((model.completion_logprobs(roll, 0.7, chunks=chunks, expected=True)[1] * w).sum(),
                                model.wte.weight)[0]
    torch.testing.assert_close(g_got, g_ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="keep_dist=True"):
        model.completion_logprobs(plain, expected=True)


# ----------------------------------------------------------------------------- trainer options


def _cfg(**kw):
    base = dict(steps=4, eval_every=4, ckpt_every=2, progress=False, num_threads=1)
    return dataclasses.replace(RL_PRESETS["smoke"], **{**base, **kw})


def test_correct_reward_is_binary_and_fresh_problems_train(sft):
    model, task, _ = sft
    res = train_rl(_cfg(reward="correct", problems="fresh"), warm_start=(model, task))
    for r in res.history:
        assert r["reward"] == r["pass_rate"] == r["score"]


def test_diagnostics_run_on_their_cadence(sft):
    model, task, _ = sft
    res = train_rl(_cfg(objective="opmd", diag_every=3, steps=5), warm_start=(model, task))
    has = [r["kl_after"] is not None for r in res.history]
    assert has == [False, False, True, False, True]  # every third step and the last
    assert [r["eta_fit"] is not None for r in res.history] == has
    assert all(r["eta_pred"] is not None for r in res.history)


def test_resume_with_fresh_problems_reproduces_the_straight_run(sft, tmp_path):
    model, task, path = sft
    cfg = _cfg(sft=str(path), reward="correct", problems="fresh", out_dir=str(tmp_path / "a"))
    straight = train_rl(cfg)
    cut = dataclasses.replace(cfg, out_dir=str(tmp_path / "b"))
    train_rl(cut, stop_after=2)
    resumed = train_rl(cut, resume=True)
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("tok_per_s", "time_s")} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)


@pytest.mark.parametrize(
    "field, value", [("reward", "partial"), ("problems", "replay"), ("diag_every", 0)]
)
def test_bad_trainer_options_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        RLConfig(sft="smoke", **{field: value})


# ----------------------------------------------------------------------------- statistics


def test_iqm_and_bootstrap_by_hand():
    assert iqm([1.0, 2.0, 3.0, 4.0]) == pytest.approx(2.5)  # the middle two
    assert iqm([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0]) == pytest.approx(3.5)  # the outlier is trimmed
    assert bootstrap_ci([0.3] * 5) == (0.3, 0.3, 0.3)
    m, lo, hi = bootstrap_ci([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    assert m == 0.5 and 0.1 < lo < 0.5 < hi < 0.9
    assert bootstrap_ci([1.0, 2.0, 3.0], seed=4) == bootstrap_ci([1.0, 2.0, 3.0], seed=4)  # seeded


def test_stratified_bootstrap_resamples_within_strata():
    t = np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])  # no spread within a stratum
    assert stratified_bootstrap_ci(t) == (5.0, 5.0, 5.0)
    with pytest.raises(ValueError, match="seeds, strata"):
        stratified_bootstrap_ci(np.zeros(3))


def test_paired_differences_and_seeds_to_resolve():
    a = {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4, 4: 0.5}
    b = {s: v + 0.05 for s, v in a.items()}  # a constant shift: resolved however noisy a is
    p = paired(a, b)
    assert p.mean == pytest.approx(0.05) and p.low == pytest.approx(0.05) and p.resolved and p.n == 5
    # (1.95996 + 0.84162)^2 * (sd / mean)^2 = 7.849 * 4 -> 32 seeds
    assert seeds_to_resolve(0.05, 0.1) == 32
    assert seeds_to_resolve(0.0, 0.1) == math.inf
    assert not paired({0: 0.0, 1: 1.0}, {0: 1.0, 1: 2.0}).resolved  # two seeds never resolve
    with pytest.raises(ValueError, match="2 common seeds"):
        paired({0: 1.0}, {0: 2.0, 1: 3.0})
    with pytest.raises(ValueError, match="not finite"):
        bootstrap_ci([0.1, float("nan")])


def test_collapse_is_a_drop_from_the_best_evaluation_before():
    assert collapse_step([(20, 0.30), (40, 0.40), (60, 0.26)], 0.2, 0.15) is None  # 0.14 below the best
    assert collapse_step([(20, 0.30), (40, 0.40), (60, 0.25)], 0.2, 0.15) == 60
    assert collapse_step([(20, 0.04)], 0.2, 0.15) == 20  # below the SFT start
    assert collapse_step([], 0.2, 0.15) is None


# ----------------------------------------------------------------------------- the study


def test_arms_parse_with_labels_and_refuse_bad_ones():
    assert Arm.parse("opmd") == Arm("opmd", "opmd")
    arm = Arm.parse("oapl_b0.1=oapl:beta=0.1")
    assert (arm.label, arm.objective, dict(arm.params)) == ("oapl_b0.1", "oapl", {"beta": 0.1})
    assert Arm.parse(str(arm)) == arm
    with pytest.raises(ValueError, match="arms"):
        LagStudy(arms=("opmd", "no_such_objective"))
    with pytest.raises(ValueError, match="labels repeat"):
        LagStudy(arms=("opmd", "opmd=opmd:beta=0.2"))


@pytest.fixture(scope="module")
def study_dir(sft, tmp_path_factory):
    _, _, path = sft
    study = LagStudy(arms=("grpo", "opmd"), lags=(0, 2), seeds=(0, 1), sft=str(path), rl_preset="smoke", steps=3)
    out = tmp_path_factory.mktemp("lag")
    run(study, out, jobs=1, progress=False)
    return study, out


def test_the_study_writes_its_files(study_dir):
    study, out = study_dir
    cells = read_cells(out)
    assert sorted((r["arm"], r["lag"], r["seed"]) for r in cells) == sorted(
        (a, lag, s) for a in ("grpo", "opmd") for lag in (0, 2) for s in (0, 1)
    )
    with open(out / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    need = {"objective", "lag", "n_seeds", "pass1_start", "pass1_final", "pass1_final_ci_low", "pass1_final_ci_high",
            "entropy_final", "collapse_fraction", "eta_pred"}
    assert need <= set(summary[0]) and len(summary) == 4
    for r in summary:
        assert float(r["pass1_final_ci_low"]) <= float(r["pass1_final"]) <= float(r["pass1_final_ci_high"])
    with gzip.open(out / "steps.csv.gz", "rt") as f:
        steps = list(csv.DictReader(f))
    assert len(steps) == 8 * 3
    text = (out / "claims.md").read_text()
    assert "Learning at lag 0" in text and "Claim 1" in text and "Claim 2" in text


def test_the_study_grows_in_place_and_refuses_other_settings(study_dir, monkeypatch, tmp_path):
    study, out = study_dir
    before = (out / "cells.csv").read_text()
    monkeypatch.setattr(lag_study, "_train_cell", lambda job: pytest.fail(f"retrained {job[1:4]}"))
    run(study, out, jobs=1, progress=False)  # every cell present: nothing trains
    assert (out / "cells.csv").read_text() == before
    with pytest.raises(UsageError, match="collapse_drop"):
        run(dataclasses.replace(study, collapse_drop=0.2), out, jobs=1, progress=False)


def test_a_cell_rerun_from_scratch_reproduces_its_row(study_dir, tmp_path):
    study, out = study_dir
    one = dataclasses.replace(study, arms=("opmd",), lags=(2,), seeds=(1,))
    run(one, tmp_path, jobs=1, progress=False)
    (new,) = read_cells(tmp_path)
    (old,) = [r for r in read_cells(out) if (r["arm"], r["lag"], r["seed"]) == ("opmd", 2, 1)]
    assert {k: v for k, v in new.items() if k != "wall_s"} == {k: v for k, v in old.items() if k != "wall_s"}


def test_the_cli_help_and_a_bad_flag(capsys):
    with pytest.raises(SystemExit) as e:
        lag_study.main(["--help"])
    assert e.value.code == 0
    assert "--out-dir" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        lag_study.main(["--out-dir", "x", "--collapse-drop", "2"])
    assert e.value.code == 2
    assert "--collapse-drop: must lie in (0, 1)" in capsys.readouterr().err


@pytest.mark.parametrize("folder, preset", [("llm_lag", "full"), ("llm_lag_v1", "v1")])
def test_committed_tables_are_current(tmp_path, folder, preset):
    """results/<folder>/summary.csv and claims.md are what the committed cells give (rebuild: --tables-only), and
    study.json records what the study preset's SFT and RL presets hold today (else its cells are another protocol's)."""
    import json
    import shutil
    from pathlib import Path

    committed = Path(__file__).resolve().parents[1] / "results" / folder
    for name in ("study.json", "cells.csv"):
        shutil.copy(committed / name, tmp_path / name)
    settings = json.loads((committed / "study.json").read_text())
    protocol = settings.pop("protocol")
    study = LagStudy(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
    assert study.sft == STUDY_PRESETS[preset].sft and study.rl_preset == STUDY_PRESETS[preset].rl_preset
    assert protocol == study.protocol(), f"results/{folder} was trained under other preset settings than today's"
    lag_study.write_tables(study, tmp_path, read_cells(tmp_path))
    for name in ("summary.csv", "claims.md"):
        assert (tmp_path / name).read_text() == (committed / name).read_text(), (
            f"results/{folder}/{name} is stale: run python -m sims.llm.lag_study --preset {preset} "
            f"--out-dir results/{folder} --tables-only"
        )


def test_readme_results_quote_the_committed_claims():
    """Every interval the README's results section quotes is one of the committed claims (either protocol)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    section = text[text.index("## Results: the LLM trainer under lag"):text.index("## Using the objectives at scale")]
    claims = "".join((root / "results" / f / "claims.md").read_text() for f in ("llm_lag", "llm_lag_v1"))
    quoted = re.findall(r"[+-]?\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", section)
    assert len(quoted) >= 10
    missing = [q for q in quoted if q not in claims]
    assert not missing, f"README quotes intervals that no claims.md holds: {missing}"
