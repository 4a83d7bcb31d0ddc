"""The lagged loop of sims.lagged: behaviour = the policy L steps back, hooks, uniforms, optimizers, config checks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sims import bandit, lagged, token_train
from theory._checks import as_int
from sims.lagged import Optimizer, UniformStream, check_batch, check_training, run_lagged
from theory.objectives import make_objective


class _Recorder:
    """A toy simulator: logits = 2 * param, loss = sum((logits - target)^2); records what the loop hands it."""

    def __init__(self, target):
        self.target = target
        self.pi, self.mu, self.grads, self.after = [], [], [], []

    def logits(self, param):
        return 2.0 * param

    def batch(self, t, logits_pi, logits_mu):
        self.pi.append(logits_pi.clone())
        self.mu.append(logits_mu.clone())
        return t

    def loss(self, t, p, batch):
        assert batch == t and p.requires_grad
        return ((self.logits(p) - self.target) ** 2).sum()

    def on_grad(self, t, i, grad):
        self.grads.append((t, i))

    def after_update(self, t, param, batch):
        assert not param.requires_grad
        self.after.append(self.logits(param).clone())


@pytest.mark.parametrize("lag", [0, 1, 3, 7])
def test_behaviour_is_the_policy_lag_steps_back(lag):
    steps, k = 9, 2
    sim = _Recorder(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    param0 = torch.zeros(3, dtype=torch.float64)
    ticks = []
    final = run_lagged(sim, param0, Optimizer("sgd", 0.05, param0, 1), lag=lag, steps=steps, inner_steps=k,
                       progress=ticks.append)
    for t in range(steps):
        assert torch.equal(sim.mu[t], sim.pi[max(t - lag, 0)])  # mu_t = pi_{max(t-L, 0)}
    for t in range(steps - 1):
        assert torch.equal(sim.after[t], sim.pi[t + 1])  # after_update sees pi_{t+1}
    assert torch.equal(sim.after[-1], sim.logits(final))
    assert sim.grads == [(t, i) for t in range(steps) for i in range(k)]
    assert ticks == [1] * steps


def test_loop_equals_plain_gradient_descent_at_lag_0():
    target = torch.tensor([1.0, -2.0], dtype=torch.float64)
    param0 = torch.tensor([0.3, 0.1], dtype=torch.float64)
    got = run_lagged(_Recorder(target), param0, Optimizer("sgd", 0.1, param0, 1), lag=0, steps=5, inner_steps=3)
    ref = param0.clone()
    for _ in range(15):  # d/dp sum((2p - c)^2) = 4 (2p - c)
        ref = ref - 0.1 * 4.0 * (2.0 * ref - target)
    assert torch.equal(got, ref)


def test_uniform_stream_is_one_stream_per_seed_whatever_the_chunks():
    stream = UniformStream((3, 5), (2,), 130)  # 130 steps: chunks of 64, 64 and 2
    u = torch.stack([stream.at(t) for t in range(130)])  # (steps, S, 2)
    for i, seed in enumerate((3, 5)):
        ref = torch.rand(130, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(u[:, i], ref)


def test_optimizers_hand_worked():
    p = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    assert torch.equal(Optimizer("sgd", 0.5, p, 1).step(p, g), p - 0.5 * g)
    step = Optimizer("normalized", 0.5, p, 1).step(p, g)  # per row: g/||g|| = (0.6, 0.8); a zero row stays
    assert torch.allclose(step, torch.tensor([[0.7, 0.6], [0.0, 0.0]], dtype=torch.float64), rtol=0, atol=1e-15)
    adam = Optimizer("adam", 0.5, p, 1)  # first step: mhat = g, vhat = g^2, so the step is lr g/(|g| + eps)
    expect = p - 0.5 * g / (g.abs() + 1e-8)
    assert torch.allclose(adam.step(p, g), expect, rtol=0, atol=1e-15)
    assert adam.t == 1


def test_counts_name_the_argument_and_the_bound():
    assert as_int(np.int64(3), "V", 2) == 3 and isinstance(as_int(np.int64(3), "V", 2), int)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        as_int(0, "steps", 1)
    for bad in (2.0, True, "3", None):
        with pytest.raises(ValueError, match="V must be an integer"):
            as_int(bad, "V", 2)


_OK = dict(lag=0, group_size=4, population=False, optimizer="adam", lr=0.1, inner_steps=1, steps=3)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(lag=-2), r"lag must be >= 0 \(0 = on-policy data\), got -2"),
        (dict(lag=1.5), "lag must be an integer"),
        (dict(group_size=0), "group_size must be >= 1"),
        (dict(population=1), "population must be True or False"),
        (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'; valid: sgd, normalized, adam"),
        (dict(lr=float("inf")), "lr must be a finite number > 0"),
        (dict(lr=True), "lr must be a finite number > 0"),
        (dict(inner_steps=0), "inner_steps must be >= 1"),
        (dict(steps=0), "steps must be >= 1"),
    ],
)
def test_training_fields_are_checked(change, match):
    check_training(SimpleNamespace(**_OK))
    with pytest.raises(ValueError, match=match):
        check_training(SimpleNamespace(**{**_OK, **change}))


def test_batch_checks_group_size_and_coupled_seeds():
    check_batch(make_objective("grpo"), "grpo", 1, True, 4, "set num_seeds=1")  # population: any G
    with pytest.raises(ValueError, match="group_size=1: .*set group_size >= 2 or population=True"):
        check_batch(make_objective("grpo"), "grpo", 1, False, 4, "set num_seeds=1")
    check_batch(make_objective("m2po"), "m2po", 4, False, 1, "set num_seeds=1")
    with pytest.raises(ValueError, match=r"one batch; give one seed \(and loop over seeds outside\) for m2po"):
        check_batch(make_objective("m2po"), "m2po", 4, False, 2, "give one seed")


@pytest.mark.parametrize("lag", [0, 2])
def test_both_simulators_run_the_shared_loop(monkeypatch, lag):
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs["lag"])
        return lagged.run_lagged(*args, **kwargs)

    monkeypatch.setattr(bandit, "run_lagged", counting)
    monkeypatch.setattr(token_train, "run_lagged", counting)
    b = bandit.simulate(bandit.BanditSimConfig(lag=lag, num_seeds=2, steps=6, group_size=4, record_policies=True))
    tk = token_train.simulate(token_train.TokenSimConfig(V=2, T=2, lag=lag, seeds=(0, 1), steps=6, group_size=4,
                                                         record_policies=True))
    assert calls == [lag, lag]
    for res in (b, tk):  # the data of step t came from pi_{max(t-L, 0)}
        for t in range(6):
            np.testing.assert_array_equal(res.behaviours[t], res.policies[max(t - lag, 0)])
        np.testing.assert_array_equal(res.behaviour_step, np.maximum(np.arange(6) - lag, 0))
