"""Hypothesis profiles (deterministic by default, random exploration on request) and the shared tiny SFT warm start.

The default profile derandomizes every property test (examples fixed by each
test's source), so a run of the suite, and CI, is reproducible. To search for
new counterexamples run ``HYPOTHESIS_PROFILE=explore python -m pytest``; a
failure found that way is turned into a regression test (as in
``tests/test_lambert.py`` and ``tests/test_objectives.py``).
"""

import os
from dataclasses import replace

import pytest
from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="session")
def tiny_sft(tmp_path_factory):
    """(model, task, checkpoint path) of a few seconds of SFT: the warm start of the LLM trainer's tests."""
    from sims.llm.sft import SFT_PRESETS, train_sft

    cfg = replace(
        SFT_PRESETS["smoke"],
        train_size=200,
        eval_size=16,
        max_steps=12,
        eval_every=12,
        checkpoint_every=12,
        batch_size=32,
        stop_low=1.0,
        stop_high=1.0,
        progress=False,
        num_threads=1,
    )
    out = tmp_path_factory.mktemp("tiny_sft")
    res = train_sft(cfg, out_dir=out)
    return res.model, res.task, out / "ckpt.pt"
