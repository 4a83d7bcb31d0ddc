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


def _no_local_constants():
    """Make a derandomized test's examples depend on the test alone.

    Hypothesis also draws literals it finds in every local module imported so far, so
    the examples of a derandomized test changed with the tests that ran before it in the
    process (the order, the xdist worker): a parallel run found a counterexample a serial
    run never drew. The deterministic profile switches that source off (a private hook;
    where a Hypothesis version lacks it there is nothing to switch off).
    """
    from hypothesis.internal.conjecture import providers

    if hasattr(providers, "_get_local_constants") and hasattr(providers, "Constants"):
        empty = providers.Constants()
        providers._get_local_constants = lambda: empty


if settings().derandomize:
    _no_local_constants()

MAX_WORKERS = 4  # test workers at most (each holds torch and the module fixtures it builds)


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject's addopts): one worker per core this process may use, at most :data:`MAX_WORKERS`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


if os.environ.get("PYTEST_XDIST_WORKER"):  # one torch thread per worker: the workers already fill the cores
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def single_torch_thread():
    """One torch intra-op thread for a module of tiny CPU tensors (two threads on a shared 2-core box are 100x
    slower there); the previous count is restored after the module."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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


# a user's objective, registered from a file outside the package (tests/test_user_objective.py)
USER_FILE = '''
"""My objectives (a user's file, not part of the package)."""
import torch

from theory.objectives import register_objective


def capped_reinforce_loss(logp, logp_mu, adv, mask=None, *, cap=2.0):
    """-sg(min(u, cap)) A log pi per token, u = pi/mu."""
    adv = torch.as_tensor(adv, dtype=logp.dtype)
    if adv.dim() < logp.dim():
        adv = adv.unsqueeze(-1)
    u = torch.exp((logp - logp_mu).detach()).clamp(max=cap)
    return -u * adv * logp


register_objective("capped_reinforce", loss=capped_reinforce_loss, advantage="mean", cap=2.0,
                   family="ratio", target_kind="kkt", source="a user's file")


def tempered_reinforce_loss(logp, logp_mu, adv, mask=None, *, beta=0.1):
    """-A log pi + beta s^2 / 2 per token, s = log pi - log mu."""
    adv = torch.as_tensor(adv, dtype=logp.dtype)
    if adv.dim() < logp.dim():
        adv = adv.unsqueeze(-1)
    s = logp - logp_mu.detach()
    return -adv * logp + 0.5 * beta * s * s


register_objective("tempered_reinforce", loss=tempered_reinforce_loss, advantage="mean", beta=0.1)
'''


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    """(module, folder): a user's file outside the package that registers ``capped_reinforce`` and ``tempered_reinforce``."""
    import importlib
    import sys

    from theory.objectives import OBJECTIVES, unregister_objective

    folder = tmp_path_factory.mktemp("user")
    (folder / "my_objectives.py").write_text(USER_FILE)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("my_objectives"), folder
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("my_objectives", None)
        for name in ("capped_reinforce", "tempered_reinforce"):
            if name in OBJECTIVES:
                unregister_objective(name)
