"""A user's objective, registered from a file outside the package, works everywhere.

The user's file (``tests/conftest.py``, fixture ``user_module``; verl and TRL are
tested in their own files) defines a truncated-IS REINFORCE,
``-sg(min(u, cap)) A log pi``, registered as ``capped_reinforce``: its weight (by
autograd) is ``min(u, cap) A``, CISPO's with ``1 + eps_high = cap`` and no lower
clip, so its induced target must be CISPO's. It also defines ``tempered_reinforce``,
``-A log pi + beta s^2 / 2``, whose target found by the integrated flow (no closed
form given) must be reinforce_k2's Lambert closed form.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from theory import objectives as O
from theory.objectives import make_objective, register_objective, unregister_objective

ROOT = Path(__file__).resolve().parents[1]

def test_registered_with_typed_parameters(user_module):
    assert "capped_reinforce" in O.OBJECTIVES and "capped_reinforce" in O.objective_names()
    obj = make_objective("capped_reinforce", cap=1.5)
    assert obj.params["cap"] == 1.5 and obj.advantage == "mean" and obj.target_kind == "kkt"
    assert make_objective("tempered_reinforce").target_kind == "flow"  # the default for a new spec
    with pytest.raises(ValueError, match="parameter cap must be a finite number"):
        make_objective("capped_reinforce", cap=float("nan"))
    with pytest.raises(ValueError, match="has no parameter"):
        make_objective("capped_reinforce", beta=1.0)
    with pytest.raises(ValueError, match="already registered"):
        register_objective("capped_reinforce", loss=user_module[0].capped_reinforce_loss)


def test_weight_by_autograd(user_module):
    obj = make_objective("capped_reinforce", cap=1.5)
    u = torch.tensor([[0.2, 1.0, 1.4, 1.6, 3.0]], dtype=torch.float64)
    a = torch.tensor([[0.5, -1.0, 2.0, -0.3, 1.0]], dtype=torch.float64)
    assert torch.allclose(obj.weight(u, a), u.clamp(max=1.5) * a, rtol=0, atol=1e-15)


def test_induced_target_is_cispos(user_module):
    """KKT on the autograd weight min(u, cap) A against CISPO's hand-written weight and face rule."""
    rng = np.random.default_rng(3)
    for cap in (1.3, 2.0):
        mu = rng.dirichlet(np.ones(5))
        r = rng.uniform(size=5)
        mine = make_objective("capped_reinforce", cap=cap).induced_target(mu, r)
        ref = make_objective("cispo", eps_high=cap - 1.0).induced_target(mu, r)
        assert mine.converged.all() and ref.converged.all()
        np.testing.assert_allclose(mine.pi, ref.pi, atol=1e-8)


def test_flow_target_is_the_lambert_closed_form(user_module):
    """The integrated flow on the autograd weight A - beta log u against reinforce_k2's Lambert closed form."""
    rng = np.random.default_rng(4)
    for beta in (0.1, 0.5):
        mu = rng.dirichlet(np.ones(4))
        r = rng.uniform(size=4)
        mine = make_objective("tempered_reinforce", beta=beta).induced_target(mu, r)
        assert mine.method == "flow"
        ref = make_objective("reinforce_k2", beta=beta).induced_target(mu, r)
        np.testing.assert_allclose(mine.pi, ref.pi, atol=1e-7)


def test_zoo_table_row(user_module):
    from theory.bandits import STANDARD_BANDITS
    from theory.zoo_table import zoo_rows

    name = next(iter(STANDARD_BANDITS))
    rows = zoo_rows({name: STANDARD_BANDITS[name]}, ["capped_reinforce", "tempered_reinforce"])
    assert [r["objective"] for r in rows] == ["capped_reinforce", "tempered_reinforce"]
    assert all(r["bandits"][name]["certified"] for r in rows)
    assert all(abs(sum(r["bandits"][name]["pi"]) - 1) < 1e-9 for r in rows)


def test_bandit_and_token_simulators(user_module):
    from sims.bandit import BanditSimConfig
    from sims.bandit import simulate as simulate_bandit
    from sims.token_train import TokenSimConfig
    from sims.token_train import simulate as simulate_tokens

    res = simulate_bandit(BanditSimConfig.smoke(objective="capped_reinforce", objective_params={"cap": 1.5}, steps=20))
    assert np.isfinite(res.final_policy).all() and not np.allclose(res.final_policy, res.pi0)
    res = simulate_tokens(TokenSimConfig.smoke(objective="tempered_reinforce", steps=10))
    assert np.isfinite(res.final_logits).all() and not np.allclose(res.final_logits, res.init_logits)


def test_trainer_cli_imports_the_users_file(user_module, tiny_sft):
    folder = user_module[1]
    args = [sys.executable, "-m", "sims.llm.rl", "--import", "my_objectives", "--preset", "smoke", "--sft",
            str(tiny_sft[2]), "--objective", "capped_reinforce", "--objective-params", "cap=1.5", "--steps", "2",
            "--eval-every", "2", "--num-threads", "1", "--no-progress"]
    env = {"PYTHONPATH": f"{ROOT}{':' + str(folder)}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(args, cwd=folder, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"step": 2' in out.stdout
    bad = subprocess.run(args[:3] + ["--objective", "capped_reinforce", "--preset", "smoke"], cwd=folder,
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode != 0 and "capped_reinforce" in bad.stderr  # without --import: not a valid choice


def test_spec_errors_name_the_problem():
    def bad_loss(logp, logp_mu):
        return logp

    with pytest.raises(ValueError, match=r"loss must take \(logp, logp_mu, adv, mask=None\)"):
        register_objective("bad_one", loss=bad_loss)
    with pytest.raises(ValueError, match="level must be one of token, sequence"):
        register_objective("bad_two", loss=lambda logp, logp_mu, adv, mask=None: logp, level="tokens")
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        unregister_objective("nope")
    with pytest.raises(ValueError, match="built in"):
        unregister_objective("opmd")
    assert "bad_one" not in O.OBJECTIVES and "bad_two" not in O.OBJECTIVES
