"""What the LLM trainers log: every column is defined in docs/llm_metrics.md, and the optional
TensorBoard scalars are the metrics.csv numbers."""

import csv
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sims.llm import confirm, probe, rl, sft
from sims.llm.rl import RL_PRESETS, train_rl
from sims.llm.sft import SFT_PRESETS, train_sft

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "llm_metrics.md"

SFT_CFG = replace(
    SFT_PRESETS["smoke"],
    train_size=200,
    eval_size=8,
    max_steps=4,
    eval_every=2,
    checkpoint_every=4,
    batch_size=16,
    stop_low=1.0,
    stop_high=1.0,
    progress=False,
    num_threads=1,
)


# ----------------------------------------------------------------------------- the doc


def _doc_names(section: str) -> list[str]:
    """First-column names of the tables under the heading that starts with ``section``."""
    text = DOC.read_text()
    start = text.index(f"\n{section}")
    nxt = text.find("\n## ", start + 1)
    body = text[start : nxt if nxt != -1 else len(text)]
    names = []
    for line in body.splitlines():
        if not line.startswith("| ") or line.startswith("|---"):
            continue
        first = line.split("|")[1].strip()
        if first in ("column", "name", "field"):
            continue
        names += [n.strip().strip("`") for n in first.split(",")]
    return names


def _pattern(name: str) -> re.Pattern:
    """A doc name as a regex: ``pass@k`` stands for any k, ``eval/*`` for every eval column,
    ``<metric>`` for every metric the confirmation grid averages, ``<probe>`` for every probe column
    the probe's summary averages (both with an optional ``_se``)."""
    metrics = "|".join(re.escape(m) for m in (*confirm.METRICS, "eval_pass@1"))
    probes = "|".join(re.escape(m) for m in probe.SUMMARY_METRICS)
    rx = re.escape(name).replace(r"pass@k", r"pass@\d+").replace(r"/\*", r"/.+")
    rx = rx.replace(re.escape("<metric>"), f"(?:{metrics})").replace(re.escape("<probe>"), f"(?:{probes})(?:_se)?")
    return re.compile(rx + r"\Z")


def _check_defined(columns, section):
    names = _doc_names(section)
    pats = [_pattern(n) for n in names]
    undefined = [c for c in columns if not any(p.match(c) for p in pats)]
    assert not undefined, f"columns logged but not defined under {section!r} in docs/llm_metrics.md: {undefined}"
    stale = [n for n, p in zip(names, pats) if not any(p.match(c) for c in columns)]
    assert not stale, f"defined under {section!r} in docs/llm_metrics.md but never logged: {stale}"


@pytest.mark.parametrize("preset", sorted(SFT_PRESETS))
def test_every_sft_column_is_defined_in_the_doc(preset):
    _check_defined(sft._csv_columns(SFT_PRESETS[preset]), "## SFT: `metrics.csv`")


@pytest.mark.parametrize("preset", sorted(RL_PRESETS))
def test_every_rl_column_is_defined_in_the_doc(preset):
    _check_defined(rl._csv_columns(RL_PRESETS[preset]), "## RL: `metrics.csv`")


def test_every_confirmation_column_is_defined_in_the_doc():
    results = ["objective", "lag", "seed", *confirm.METRICS, "eval_pass@1", "eval_pass@1_se"]
    rows = [{"objective": "opmd", "lag": 0, "seed": s, **{k: float(s) for k in results[3:]}} for s in range(2)]
    summary = list(confirm.score(rows)[0])
    _check_defined(list(dict.fromkeys(results + summary)), "## Confirmation grid")
    assert set(confirm.METRICS) <= set(rl._csv_columns(RL_PRESETS["smoke"]))  # averages of defined RL columns


def test_every_probe_column_is_defined_in_the_doc():
    import numpy as np

    from theory.objectives import make_objective

    pr = probe.predict(make_objective("opmd"), np.array([0.7, 0.3]), np.array([0.0, 1.0]), 8)
    cls = np.repeat([0, 1], [7, 3])
    re_ = probe.realized(pr["log_u"][cls], cls, pr["adv"], 0.1)
    assert set(re_) == {"log_u", "spread", "eta", "kl", "leak"}
    # the columns probe_cell writes, read from its source: every key of its row dicts
    import inspect

    src = inspect.getsource(probe.probe_cell)
    row_cols = re.findall(r'^\s+"([a-z_]+)": ', src, flags=re.M)
    assert {"eta_pred", "pass_pi", "leak_relaxed", "train_s", "log_u_fail"} <= set(row_cols)
    rows = [{k: (0.5 + i if k not in ("objective",) else "opmd") for k in row_cols} for i in range(2)]
    summary = list(probe.summarize(rows)[0])
    _check_defined(list(dict.fromkeys(row_cols + summary)), "## Converged probe")


# ----------------------------------------------------------------------------- TensorBoard


def _csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def _assert_events_equal_csv(log_dir, csv_path):
    rows = _csv_rows(csv_path)
    want: dict[str, list] = {}
    for r in rows:
        for k, v in r.items():
            if k != "step" and v not in ("", None):
                want.setdefault(k, []).append((int(r["step"]), float(np.float32(float(v)))))
    got = _events(log_dir)
    assert set(got) == set(want)
    for tag, points in want.items():
        assert got[tag] == points, tag  # float32 of the CSV's number, exactly, at the CSV's steps


@pytest.fixture(scope="module")
def tb_sft(tmp_path_factory):
    """An SFT run logging to TensorBoard: (result, out_dir, tensorboard_dir)."""
    pytest.importorskip("tensorboard")
    out = tmp_path_factory.mktemp("sft")
    res = train_sft(replace(SFT_CFG, tensorboard_dir=str(out / "tb")), out_dir=out)
    return res, out, out / "tb"


def test_sft_tensorboard_scalars_equal_metrics_csv(tb_sft):
    _, out, tb = tb_sft
    _assert_events_equal_csv(tb, out / "metrics.csv")
    assert "eval/pass@1" in _events(tb) and "loss" in _events(tb)


def test_rl_tensorboard_scalars_equal_metrics_csv_also_after_resuming(tb_sft, tmp_path):
    res, out, _ = tb_sft
    cfg = replace(RL_PRESETS["smoke"], sft=str(out / "ckpt.pt"), objective="opmd_above", steps=5, eval_every=2,
                  ckpt_every=2, progress=False, num_threads=1, lag=1, out_dir=str(tmp_path / "rl"),
                  tensorboard_dir=str(tmp_path / "tb"))
    # killed after step 3, checkpoint at step 2: the event of step 3 must not survive the resumption
    assert train_rl(cfg, warm_start=(res.model, res.task), stop_after=3).status == "interrupted"
    assert train_rl(cfg, warm_start=(res.model, res.task), resume=True).status == "done"
    _assert_events_equal_csv(tmp_path / "tb", tmp_path / "rl" / "metrics.csv")
    got = _events(tmp_path / "tb")
    assert [s for s, _ in got["eta_fit"]] == [1, 2, 3, 4, 5] and all(v < 0 for _, v in got["eta_pred"])


def test_missing_tensorboard_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as without the package
    cfg = replace(RL_PRESETS["smoke"], tensorboard_dir=str(tmp_path / "tb"), progress=False)
    with pytest.raises(ImportError, match=r"pessimism-toolkit\[tensorboard\]"):
        train_rl(cfg)
    with pytest.raises(ImportError, match=r"pessimism-toolkit\[tensorboard\]"):
        train_sft(replace(SFT_CFG, tensorboard_dir=str(tmp_path / "tb")))
    assert not (tmp_path / "tb").exists()  # refused before training or writing anything
