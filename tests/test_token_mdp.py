"""Token MDP: hand-worked trees, DP against brute force over leaves, identities between the two targets, errors."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from sims import token_mdp as tm
from theory.strategies import distributions, temperatures

ROOT = Path(__file__).resolve().parents[1]


@st.composite
def trees(draw, max_leaves=81):
    """A small TokenTree (V, T) with at most ``max_leaves`` leaves."""
    V = draw(st.integers(2, 4))
    T = draw(st.integers(1, 4))
    while V**T > max_leaves:
        T -= 1
    return tm.TokenTree(V, T)


@st.composite
def policies(draw, tree):
    """Dirichlet conditionals for ``tree`` (seed and concentration drawn)."""
    seed = draw(st.integers(0, 2**32 - 1))
    conc = draw(st.sampled_from([0.3, 1.0, 5.0]))
    return tm.random_policy(tree, seed, conc)


REWARDS = [tm.sparse_reward, tm.partial_credit_reward, tm.prefix_credit_reward]


# ---------------------------------------------------------------- tree and rewards by hand


def test_leaf_tokens_lexicographic():
    tree = tm.TokenTree(2, 3)
    tok = tree.leaf_tokens()
    assert tok.shape == (8, 3) and tok.dtype == np.int64
    assert tok.tolist() == [list(p) for p in itertools.product(range(2), repeat=3)]
    np.testing.assert_array_equal(tree.leaf_index(tok), np.arange(8))
    assert tree.num_leaves == 8 and tree.num_states(2) == 4


def test_rewards_hand_worked():
    tree = tm.TokenTree(2, 3)
    correct = [0, 1, 1]  # leaf 3
    np.testing.assert_array_equal(tm.sparse_reward(tree, correct), np.eye(8)[3])
    # leaf 0 = 000: matches at position 0 only; leaf 7 = 111: positions 1, 2; leaf 2 = 010: positions 0, 1
    partial = tm.partial_credit_reward(tree, correct)
    assert partial[[0, 3, 7, 2]].tolist() == [1 / 3, 1.0, 2 / 3, 2 / 3]
    prefix = tm.prefix_credit_reward(tree, correct)
    assert prefix[[0, 3, 7, 2]].tolist() == [1 / 3, 1.0, 0.0, 2 / 3]
    np.testing.assert_array_equal(tm.sparse_reward(tree), np.eye(8)[0])  # default: all-zeros sequence


def test_sequence_probs_and_conditional_advantage_hand_worked():
    # V = 2, T = 2: pi(0) = 0.3; pi(.|0) = (0.1, 0.9); pi(.|1) = (0.6, 0.4)
    tree = tm.TokenTree(2, 2)
    cond = [np.array([[0.3, 0.7]]), np.array([[0.1, 0.9], [0.6, 0.4]])]
    np.testing.assert_allclose(tm.sequence_probs(cond), [0.03, 0.27, 0.42, 0.28], rtol=1e-14)
    np.testing.assert_allclose(tm.sequence_log_probs(cond), np.log([0.03, 0.27, 0.42, 0.28]), rtol=1e-14)
    # A = (1, 2, 3, 4): Q_1 = [[1, 2], [3, 4]], Q_0 = [[0.1*1 + 0.9*2, 0.6*3 + 0.4*4]] = [[1.9, 3.4]]
    Q = tm.conditional_advantage(cond, [1.0, 2.0, 3.0, 4.0], tree)
    np.testing.assert_allclose(Q[1], [[1, 2], [3, 4]])
    np.testing.assert_allclose(Q[0], [[1.9, 3.4]], rtol=1e-15)


def test_gibbs_targets_hand_worked_two_by_two():
    # uniform mu, sparse reward on leaf 00, mean baseline: A = (3/4, -1/4, -1/4, -1/4), beta = 1
    tree = tm.TokenTree(2, 2)
    mu = tm.uniform_policy(tree)
    adv = tm.sparse_reward(tree) - 0.25
    g = tm.gibbs_state_target(1.0)
    e = np.e
    # sequence level: p ∝ exp(A) -> p(00) = e / (e + 3)
    p_seq = tm.sequence_level_target(mu, adv, tree, g)
    np.testing.assert_allclose(p_seq, np.array([e, 1, 1, 1]) / (e + 3), rtol=1e-14)
    # token level, plain Q: Q_0 = (1/4, -1/4) -> pi(0) = e^{1/2} / (e^{1/2} + 1); pi(0|0) = e / (e + 1)
    p_tok = tm.sequence_probs(tm.token_level_target(mu, adv, tree, g))
    pi0 = np.sqrt(e) / (np.sqrt(e) + 1)
    np.testing.assert_allclose(p_tok[0], pi0 * e / (e + 1), rtol=1e-14)
    assert abs(p_tok[0] - p_seq[0]) > 0.02  # 0.4551 vs 0.4754: plain Q does not give the Gibbs product
    # token level, soft Q: Q_0(0) = log((e^{3/4} + e^{-1/4})/2), Q_0(1) = -1/4 -> exactly the sequence target
    Qs = tm.soft_conditional_advantage(mu, adv, tree, 1.0)
    np.testing.assert_allclose(Qs[0], [[np.log((np.exp(0.75) + np.exp(-0.25)) / 2), -0.25]], rtol=1e-14)
    np.testing.assert_allclose(tm.sequence_probs(tm.state_targets(mu, Qs, tree, g)), p_seq, rtol=1e-13)


# ---------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_sequence_probs_normalized_and_match_leaf_loop(data):
    tree = data.draw(trees())
    cond = data.draw(policies(tree))
    p = tm.sequence_probs(cond)
    assert p.shape == (tree.num_leaves,)
    assert abs(p.sum() - 1.0) < 1e-12
    ref = np.ones(tree.num_leaves)
    for i, tok in enumerate(tree.leaf_tokens()):
        for t in range(tree.T):
            ref[i] *= cond[t][i // tree.V ** (tree.T - t), tok[t]]  # prefix of length t has index i // V**(T-t)
    np.testing.assert_allclose(p, ref, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_conditionals_round_trip(data):
    tree = data.draw(trees())
    p = data.draw(distributions(tree.num_leaves, allow_zeros=True))
    cond = tm.conditionals_from_sequence(p, tree)
    for t, c in enumerate(cond):
        assert c.shape == (tree.V**t, tree.V)
        np.testing.assert_allclose(c.sum(-1), 1.0, atol=1e-14)
    np.testing.assert_allclose(tm.sequence_probs(cond), p, rtol=1e-12, atol=1e-300)
    cond_mu = data.draw(policies(tree))
    for c0, c1 in zip(cond_mu, tm.conditionals_from_sequence(tm.sequence_probs(cond_mu), tree)):
        np.testing.assert_allclose(c1, c0, rtol=1e-10)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_conditional_advantage_equals_leaf_average(data):
    # independent route: Q_t(s, a) = sum over leaves under sa of mu(y) A(y) / mu(sa)
    tree = data.draw(trees())
    cond = data.draw(policies(tree))
    adv = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=tree.num_leaves)
    p = tm.sequence_probs(cond)
    Q = tm.conditional_advantage(cond, adv, tree)
    for t in range(tree.T):
        blocks = tree.V ** (tree.T - t - 1)  # leaves under each node at depth t + 1
        num = (p * adv).reshape(-1, blocks).sum(-1)
        den = p.reshape(-1, blocks).sum(-1)
        np.testing.assert_allclose(Q[t].ravel(), num / den, rtol=1e-9, atol=1e-12)



def _mean_baseline_problem(data):
    """(tree, behaviour conditionals, advantages): a drawn tree and policy, one of REWARDS minus its mean."""
    tree = data.draw(trees())
    cond = data.draw(policies(tree))
    r = data.draw(st.sampled_from(REWARDS))(tree)
    return tree, cond, r - theory.mean_baseline(tm.sequence_probs(cond), r)


@settings(max_examples=30, deadline=None)
@given(st.data(), temperatures(0.1, 10.0))
def test_targets_normalized_and_t1_levels_agree(data, beta):
    tree, cond, adv = _mean_baseline_problem(data)
    p_seq = tm.sequence_level_target(cond, adv, tree, beta=beta)
    tok = tm.token_level_target(cond, adv, tree, beta=beta)
    assert abs(p_seq.sum() - 1) < 1e-12 and np.all(p_seq >= 0)
    for c in tok:
        np.testing.assert_allclose(c.sum(-1), 1.0, atol=1e-12)
    if tree.T == 1:  # one token: the two levels are the same bandit
        np.testing.assert_allclose(tok[0][0], p_seq, rtol=1e-12, atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_t1_levels_agree_for_any_state_target(data):
    V = data.draw(st.integers(2, 8))
    tree = tm.TokenTree(V, 1)
    mu = [data.draw(distributions(V))[None]]
    adv = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=V)
    for target in (tm.lambert_state_target(0.5), tm.gibbs_state_target(0.5), tm.linear_state_target(10.0)):
        # equal up to the rounding of mu = exp(log mu) in sequence_probs
        np.testing.assert_allclose(
            tm.token_level_target(mu, adv, tree, target)[0][0],
            tm.sequence_level_target(mu, adv, tree, target),
            rtol=1e-13,
            atol=1e-16,
        )


@settings(max_examples=30, deadline=None)
@given(st.data(), temperatures(0.05, 5.0))
def test_gibbs_on_soft_q_equals_sequence_gibbs(data, beta):
    # soft Bellman: per-state normalizers telescope along each path
    tree, cond, adv = _mean_baseline_problem(data)
    g = tm.gibbs_state_target(beta)
    tok = tm.state_targets(cond, tm.soft_conditional_advantage(cond, adv, tree, beta), tree, g)
    p_seq = tm.sequence_level_target(cond, adv, tree, g)
    np.testing.assert_allclose(tm.sequence_probs(tok), p_seq, rtol=1e-9, atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(st.data(), temperatures(0.05, 5.0))
def test_linear_tilt_on_plain_q_equals_sequence_linear_tilt(data, beta):
    # pi ∝ mu (A + c) with A + c > 0: per-state normalizers are Q(parent) + c and telescope
    tree, cond, adv = _mean_baseline_problem(data)  # adv in [-1, 1]
    lin = tm.linear_state_target(1.0 + beta)
    p_tok = tm.sequence_probs(tm.token_level_target(cond, adv, tree, lin))
    np.testing.assert_allclose(p_tok, tm.sequence_level_target(cond, adv, tree, lin), rtol=1e-9, atol=1e-15)


def test_soft_q_tends_to_plain_q_at_large_beta():
    tree = tm.TokenTree(3, 3)
    cond = tm.random_policy(tree, 0)
    adv = tm.partial_credit_reward(tree) - 0.3
    plain = tm.conditional_advantage(cond, adv, tree)
    soft = tm.soft_conditional_advantage(cond, adv, tree, 1e6)
    for a, b in zip(plain, soft):
        np.testing.assert_allclose(b, a, atol=1e-6)
        assert np.all(b >= a - 1e-12)  # Jensen: the soft Q is never below the plain Q


def test_state_targets_batched_equals_row_loop():
    tree = tm.TokenTree(3, 3)
    cond = tm.random_policy(tree, 4)
    adv = tm.prefix_credit_reward(tree) - 0.2
    Q = tm.conditional_advantage(cond, adv, tree)
    tok = tm.token_level_target(cond, adv, tree, beta=0.3)
    for t in range(tree.T):
        for s in range(tree.V**t):
            pi, _ = theory.lambert_target(cond[t][s], Q[t][s], 0.3)
            np.testing.assert_allclose(tok[t][s], pi, rtol=1e-12, atol=1e-15)


def test_target_gap_measures():
    tree = tm.TokenTree(2, 3)
    mu = tm.random_policy(tree, 1)
    r = tm.partial_credit_reward(tree)
    adv = r - theory.mean_baseline(tm.sequence_probs(mu), r)
    gap = tm.target_gap(mu, r, adv, tree, beta=0.2)
    p_mu = tm.sequence_probs(mu)
    p_seq = tm.sequence_level_target(mu, adv, tree, beta=0.2)
    p_tok = tm.sequence_probs(tm.token_level_target(mu, adv, tree, beta=0.2))
    assert gap.kl_seq_mu == pytest.approx(float(theory.kl(p_seq, p_mu)), rel=1e-12)
    assert gap.kl_tok_seq == pytest.approx(float(theory.kl(p_tok, p_seq)), rel=1e-12)
    assert gap.reward_seq > gap.reward_mu and gap.reward_tok > gap.reward_mu
    assert gap.entropy_mu == pytest.approx(float(theory.entropy(p_mu)), rel=1e-12)
    assert gap.kl_seq_tok > 0 and gap.kl_tok_seq > 0  # the two targets differ here
    # a linear state target with A + c > 0 has no gap
    zero = tm.target_gap(mu, r, adv, tree, tm.linear_state_target(2.0))
    assert zero.kl_seq_tok < 1e-12 and zero.kl_tok_seq < 1e-12


def test_random_policy_deterministic():
    tree = tm.TokenTree(3, 2)
    a = tm.random_policy(tree, 11, 0.5)
    b = tm.random_policy(tree, np.random.default_rng(11), 0.5)
    c = tm.random_policy(tree, 12, 0.5)
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "V, T, match",
    [(1, 2, "V must be >= 2"), (2, 0, "T must be >= 1"), (2.0, 2, "V must be an integer"), (2, 30, "MAX_LEAVES")],
)
def test_tree_rejects_bad_sizes(V, T, match):
    with pytest.raises(ValueError, match=match):
        tm.TokenTree(V, T)


def test_bad_inputs_raise_named_errors():
    tree = tm.TokenTree(2, 2)
    mu = tm.uniform_policy(tree)
    adv = np.zeros(4)
    with pytest.raises(ValueError, match="cond_mu has 1 depths"):
        tm.conditional_advantage(mu[:1], adv, tree)
    with pytest.raises(ValueError, match=r"cond_mu\[1\] must have shape"):
        tm.conditional_advantage([mu[0], np.full((3, 2), 0.5)], adv, tree)
    with pytest.raises(ValueError, match="not normalized"):
        tm.conditional_advantage([mu[0], np.full((2, 2), 0.6)], adv, tree)
    with pytest.raises(ValueError, match="adv_leaves must have shape"):
        tm.conditional_advantage(mu, np.zeros(5), tree)
    with pytest.raises(ValueError, match="adv_leaves contains NaN"):
        tm.token_level_target(mu, [0.0, np.nan, 0.0, 0.0], tree, beta=1.0)
    with pytest.raises(ValueError, match="give beta"):
        tm.sequence_level_target(mu, adv, tree)
    with pytest.raises(ValueError, match="not both"):
        tm.token_level_target(mu, adv, tree, tm.gibbs_state_target(1.0), beta=1.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        tm.lambert_state_target(0.0)
    with pytest.raises(ValueError, match="state_target's output for .* is not normalized"):
        tm.token_level_target(mu, adv, tree, lambda m, a: 2 * m)
    # a float32 policy (sums to 1 only within ~1e-7) is accepted, as everywhere in theory
    p64 = tm.token_level_target(mu, adv, tree, tm.gibbs_state_target(1.0))
    p32 = tm.token_level_target(mu, adv, tree, lambda m, a: tm.gibbs_state_target(1.0)(m, a).astype(np.float32))
    for a64, a32 in zip(p64, p32):
        np.testing.assert_allclose(a32, a64, atol=1e-6)
    with pytest.raises(ValueError, match="returned shape"):
        tm.sequence_level_target(mu, adv, tree, lambda m, a: m[0])
    with pytest.raises(ValueError, match="collapses onto one arm"):
        tm.token_level_target(mu, adv - 5.0, tree, tm.linear_state_target(1.0))
    with pytest.raises(ValueError, match="p_leaves must have shape"):
        tm.conditionals_from_sequence(np.full(3, 1 / 3), tree)
    with pytest.raises(ValueError, match="correct must lie"):
        tm.sparse_reward(tree, [0, 2])
    with pytest.raises(ValueError, match="concentration must be > 0"):
        tm.random_policy(tree, 0, 0.0)
    with pytest.raises(ValueError, match="list of T arrays"):
        tm.sequence_probs(np.ones((1, 2)))
    with pytest.raises(ValueError, match="tree must be a TokenTree"):
        tm.uniform_policy((2, 2))


# ---------------------------------------------------------------- command


def test_benchmark_smoke():
    cmd = [sys.executable, "benchmarks/bench_token_mdp.py", "--smoke"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    out = json.loads(res.stdout)
    assert [(t["V"], t["T"]) for t in out["trees"]] == [(2, 4), (3, 3)]


# ---------------------------------------------------------------- global minimizer against the flow from mu
#
# Cases: a Dirichlet(1) behaviour (random_policy(tree, seed)), rewards either partial credit or
# uniform on [0, 1] drawn with the same seed, and the mean baseline E_mu[r] or the optimistic one
# V*_beta(mu) + beta / 2 (half a beta above the soft value over the leaves: the negative regime).


def _flow_case(V, T, seed, baseline, beta, reward):
    tree = tm.TokenTree(V, T)
    cond = tm.random_policy(tree, seed)
    if reward == "partial":
        r = tm.partial_credit_reward(tree)
    else:
        r = np.random.default_rng(seed).uniform(size=tree.num_leaves)
    p = tm.sequence_probs(cond)
    v = theory.mean_baseline(p, r) if baseline == "mean" else theory.soft_value(p, r, beta) + 0.5 * beta
    return tree, cond, r - v


def _token_loss(cond, cond_mu, adv, tree, beta):
    """The per-token regression summed over tokens, E_mu[sum_t (beta log(pi/mu)(a_t | y_<t) - A(y))^2], leaf by leaf."""
    tok = tree.leaf_tokens()
    p_mu = tm.sequence_probs(cond_mu)
    total = 0.0
    for t in range(tree.T):
        s = np.arange(tree.num_leaves) // tree.V ** (tree.T - t)
        lr = np.log(cond[t][s, tok[:, t]]) - np.log(cond_mu[t][s, tok[:, t]])
        total += (p_mu * (beta * lr - adv) ** 2).sum()
    return total


def _sequence_loss(p, p_mu, adv, beta):
    return (p_mu * (beta * (np.log(p) - np.log(p_mu)) - adv) ** 2).sum()


def _token_objective(cond_mu, adv, tree, beta):
    """The per-token regression as a batch of state bandits for ``theory.logit_flow``: row n = prefix (t, s).

    Written on the leaves, with A(y) itself (not Q): row (t, s) holds the terms of the tokens a_t
    of the leaves below s, weight[n, a, y] = mu(y) [y below sa]. The rows are the T depths stacked.
    """
    p_mu = tm.sequence_probs(cond_mu)
    w = []
    for t in range(tree.T):
        child = np.arange(tree.num_leaves) // tree.V ** (tree.T - t - 1)  # index of y's prefix of length t + 1
        w.append((child == np.arange(tree.V ** (t + 1))[:, None]) * p_mu)  # (V**(t+1), V**T)
    weight = torch.tensor(np.concatenate(w).reshape(-1, tree.V, tree.num_leaves))
    a = torch.tensor(adv)

    def loss(log_pi, log_mu, _adv):  # (N, V) each -> (N,)
        return (weight * (beta * (log_pi - log_mu)[..., None] - a) ** 2).sum((-1, -2))

    return np.concatenate(cond_mu), loss


def _token_hessian(cond, cond_mu, adv, tree, beta):
    """Gradient and Hessian of the per-token regression (``_token_objective``) in the logits, at the policy ``cond``."""
    mu_rows, loss = _token_objective(cond_mu, adv, tree, beta)
    log_mu = torch.tensor(np.log(mu_rows))

    def total(theta):
        return loss(torch.log_softmax(theta, -1), log_mu, None).sum()

    theta = torch.tensor(np.log(np.concatenate(cond)), requires_grad=True)
    (grad,) = torch.autograd.grad(total(theta), theta)
    hess = torch.autograd.functional.hessian(total, theta.detach()).reshape(theta.numel(), -1)
    return grad.numpy().ravel(), hess.numpy()


def _tree_hessian(cond, p_mu, adv, tree, beta):
    """Gradient and Hessian of the sequence-level loss in one row of logits per prefix, at the policy ``cond``."""
    tok = torch.tensor(tree.leaf_tokens())
    rows = [torch.arange(tree.num_leaves) // tree.V ** (tree.T - t) for t in range(tree.T)]
    sizes = [tree.V**t * tree.V for t in range(tree.T)]
    lp_mu, a = torch.tensor(np.log(p_mu)), torch.tensor(adv)

    def loss(theta):
        lp = sum(
            torch.log_softmax(th.reshape(-1, tree.V), -1)[rows[t], tok[:, t]]
            for t, th in enumerate(torch.split(theta, sizes))
        )
        return (lp_mu.exp() * (beta * (lp - lp_mu) - a) ** 2).sum()

    theta = torch.tensor(np.concatenate([np.log(c).ravel() for c in cond]), requires_grad=True)
    (grad,) = torch.autograd.grad(loss(theta), theta)
    return grad.numpy(), torch.autograd.functional.hessian(loss, theta.detach()).numpy()


def _assert_local_minimum(grad, hess, n_free):
    """Gradient 0 and a Hessian with ``n_free`` positive eigenvalues, the rest 0 (the softmax shifts)."""
    scale = np.abs(hess).max()
    assert np.abs(grad).max() <= 1e-9 * scale
    ev = np.linalg.eigvalsh(0.5 * (hess + hess.T))
    assert ev.min() >= -1e-9 * scale
    assert (ev > 1e-7 * scale).sum() == n_free


FLOW_CASES = [
    # (V, T, seed, baseline, beta, reward, level): max |p_global - p_flow| over the leaves, from flow_gap
    pytest.param(2, 3, 0, "mean", 0.1, "partial", "token", id="token-mean-two-arm-route-differs-0.0074"),
    pytest.param(3, 2, 0, "optimistic", 0.3, "uniform", "token", id="token-optimistic-flow-route-differs-0.42"),
    pytest.param(2, 3, 0, "optimistic", 0.3, "partial", "sequence", id="sequence-optimistic-differs-0.39"),
    pytest.param(2, 3, 0, "optimistic", 0.3, "uniform", "sequence", id="sequence-optimistic-two-minima-agree"),
]


@pytest.mark.parametrize("V, T, seed, baseline, beta, reward, level", FLOW_CASES)
def test_flow_target_is_where_the_flow_of_the_full_objective_stops(V, T, seed, baseline, beta, reward, level):
    # independent route: theory.logit_flow integrated on the whole objective, written on the leaves
    tree, cond, adv = _flow_case(V, T, seed, baseline, beta, reward)
    gap = tm.flow_gap(cond, adv, tree, beta=beta, level=level)
    p_mu = tm.sequence_probs(cond)
    if level == "token":
        mu_rows, loss = _token_objective(cond, adv, tree, beta)
        fr = theory.logit_flow(mu_rows, np.zeros_like(mu_rows), loss=loss)
        np.testing.assert_allclose(fr.pi, np.concatenate(gap.flow_target), atol=1e-9)
        # stationary and a strict local minimum of the full objective, in one row of logits per prefix
        grad, hess = _token_hessian(gap.flow_target, cond, adv, tree, beta)
        _assert_local_minimum(grad, hess, len(mu_rows) * (V - 1))
        loss_global = _token_loss(gap.global_target, cond, adv, tree, beta)
        loss_flow = _token_loss(gap.flow_target, cond, adv, tree, beta)
    else:
        fr = theory.logit_flow(p_mu, adv, loss=lambda lp, lm, a: (lm.exp() * (beta * (lp - lm) - a) ** 2).sum(-1))
        np.testing.assert_allclose(fr.pi, gap.flow_target, atol=1e-9)
        # a strict local minimum in the tree's own parametrization too (one row of logits per prefix)
        grad, hess = _tree_hessian(tm.conditionals_from_sequence(gap.p_flow, tree), p_mu, adv, tree, beta)
        _assert_local_minimum(grad, hess, tree.num_leaves - 1)
        loss_global = _sequence_loss(gap.p_global, p_mu, adv, beta)
        loss_flow = _sequence_loss(gap.p_flow, p_mu, adv, beta)
    assert fr.converged.all()
    if gap.differs:
        assert loss_global < loss_flow
    else:
        assert gap.max_abs_diff == 0.0 and loss_global == loss_flow


FLOW_SWEEP = [
    (V, T, seed, baseline) for V in (2, 3) for T in (2, 3) for seed in (0, 1) for baseline in ("mean", "optimistic")
]


def test_flow_gap_sweep_global_never_worse_and_count_pinned():
    # 16 trees per level, beta = 0.3, uniform rewards: the global minimizer's loss is never above the
    # flow point's, the two are equal bit for bit unless they differ, and which cases differ
    differ = {"token": {}, "sequence": {}}
    for V, T, seed, baseline in FLOW_SWEEP:
        tree, cond, adv = _flow_case(V, T, seed, baseline, 0.3, "uniform")
        p_mu = tm.sequence_probs(cond)
        for level in ("token", "sequence"):
            gap = tm.flow_gap(cond, adv, tree, beta=0.3, level=level)
            assert gap.differs == (gap.max_abs_diff > tm.FLOW_GAP_TOL)
            if level == "token":
                lg, lf = (_token_loss(c, cond, adv, tree, 0.3) for c in (gap.global_target, gap.flow_target))
                multi = any((n > 1).any() for n in gap.n_minima)
            else:
                lg, lf = (_sequence_loss(p, p_mu, adv, 0.3) for p in (gap.p_global, gap.p_flow))
                multi = gap.n_minima > 1
            assert lg <= lf * (1 + 1e-12)
            if gap.differs:
                assert multi and lg < lf
                differ[level][(V, T, seed, baseline)] = gap.max_abs_diff
            else:
                assert gap.max_abs_diff == 0.0  # bit for bit where the flow reaches the global minimizer
    # found by this sweep: the mean baseline differs once (by 2.4e-4), the optimistic one often (by ~0.4)
    expected = {
        "token": {
            (3, 2, 0, "optimistic"): 0.42416,
            (3, 3, 0, "optimistic"): 0.40603,
            (3, 3, 1, "mean"): 0.0002446,
            (3, 3, 1, "optimistic"): 0.36718,
        },
        "sequence": {
            (2, 3, 1, "optimistic"): 0.37061,
            (3, 2, 0, "optimistic"): 0.39343,
            (3, 2, 1, "optimistic"): 0.37947,
            (3, 3, 0, "optimistic"): 0.39347,
            (3, 3, 1, "optimistic"): 0.39296,
        },
    }
    for level in expected:
        assert differ[level] == pytest.approx(expected[level], rel=1e-3)


def _assert_stationary_bandit(pi, mu, adv, beta):
    """log u + eta u = A / beta with one eta across the arms (u = pi / mu), and pi sums to 1."""
    u = pi / mu
    eta = (adv / beta - np.log(u)) / u
    np.testing.assert_allclose(eta, eta[0], rtol=1e-8)
    assert abs(pi.sum() - 1) < 1e-14


def test_flow_gap_pinned_token_mean_baseline_differs():
    # V = 2, T = 3, seed 0, partial credit, mean baseline, beta = 0.1: one state of 7 has two local
    # minima; the flow (confirmed on the full objective above) stops at the one that is not global.
    # Values from flow_gap; both points are closed forms of theory.lambert_stationary_points,
    # checked here against the stationarity equations.
    tree, cond, adv = _flow_case(2, 3, 0, "mean", 0.1, "partial")
    gap = tm.flow_gap(cond, adv, tree, beta=0.1, level="token")
    assert [n.tolist() for n in gap.n_minima] == [[1], [1, 1], [1, 1, 1, 2]]
    assert gap.differs and gap.max_abs_diff == pytest.approx(0.007448825025959936, rel=1e-9)
    np.testing.assert_allclose(gap.global_target[2][3], [0.10430597791313755, 0.8956940220868624], rtol=1e-9)
    np.testing.assert_allclose(gap.flow_target[2][3], [0.99988405050379425, 1.1594949620560731e-04], rtol=1e-9)
    q = tm.conditional_advantage(cond, adv, tree)[2][3]
    for pi in (gap.global_target[2][3], gap.flow_target[2][3]):
        _assert_stationary_bandit(pi, cond[2][3], q, 0.1)
    for t in range(3):  # every other state: the same point, bit for bit
        same = np.ones(2**t, bool)
        if t == 2:
            same[3] = False
        np.testing.assert_array_equal(gap.flow_target[t][same], gap.global_target[t][same])
    # the same point through the state-target interface
    flow_map = tm.lambert_flow_state_target(0.1)
    for a, b in zip(tm.token_level_target(cond, adv, tree, flow_map), gap.flow_target):
        np.testing.assert_array_equal(a, b)
    gap_measures = tm.target_gap(cond, tm.partial_credit_reward(tree), adv, tree, flow_map)
    assert gap_measures.reward_tok == pytest.approx(float((gap.p_flow * tm.partial_credit_reward(tree)).sum()))


def test_flow_gap_pinned_sequence_optimistic_differs_and_one_that_agrees():
    # V = 2, T = 3, seed 0, optimistic baseline, beta = 0.3. Partial credit: the global minimizer puts
    # 0.392 on leaf 5, which mu samples with probability 5.9e-5 (its W_{-1} arm); the flow leaves it
    # at 1.2e-5. Uniform rewards: two local minima, and the flow reaches the global one.
    tree, cond, adv = _flow_case(2, 3, 0, "optimistic", 0.3, "partial")
    gap = tm.flow_gap(cond, adv, tree, beta=0.3, level="sequence")
    assert gap.n_minima == 2 and gap.differs
    assert gap.max_abs_diff == pytest.approx(0.3923732027624846, rel=1e-9)
    assert gap.p_global[5] == pytest.approx(0.3923852675420429, rel=1e-9)
    assert gap.p_flow[5] == pytest.approx(1.2064779558279127e-05, rel=1e-8)
    p_mu = tm.sequence_probs(cond)
    for p in (gap.p_global, gap.p_flow):
        _assert_stationary_bandit(p, p_mu, adv, 0.3)
    np.testing.assert_array_equal(gap.global_target, tm.sequence_level_target(cond, adv, tree, beta=0.3))
    flow_map = tm.lambert_flow_state_target(0.3)
    np.testing.assert_array_equal(gap.flow_target, tm.sequence_level_target(cond, adv, tree, flow_map))

    tree, cond, adv = _flow_case(2, 3, 0, "optimistic", 0.3, "uniform")
    gap = tm.flow_gap(cond, adv, tree, beta=0.3, level="sequence")
    assert gap.n_minima == 2 and not gap.differs and gap.max_abs_diff == 0.0


@settings(max_examples=15, deadline=None)
@given(st.data(), temperatures(0.05, 2.0), st.floats(0.05, 2.0))
def test_flow_gap_positive_regime_always_agrees(data, beta, delta):
    # beta-shifted mean V = E_mu[r] - delta beta: the leaf bandit is in the positive regime (Jensen),
    # so it has one local minimum. At token level a state's mean Q is its parent's, not 0; shifting
    # by the reward range (1) on top makes every Q > 0 and every state positive.
    V, T = data.draw(st.sampled_from([(2, 2), (2, 3), (3, 2), (3, 3)]))
    tree = tm.TokenTree(V, T)
    cond = data.draw(policies(tree))
    r = data.draw(st.sampled_from(REWARDS))(tree)
    adv = r - theory.shifted_mean_baseline(tm.sequence_probs(cond), r, beta, delta)
    gap = tm.flow_gap(cond, adv, tree, beta=beta, level="sequence")
    assert gap.n_minima == 1 and not gap.differs and gap.max_abs_diff == 0.0
    adv = adv + 1.0
    q = np.concatenate(tm.conditional_advantage(cond, adv, tree))
    assert (theory.regime_of(np.concatenate(cond), q, beta) == 1).all()
    gap = tm.flow_gap(cond, adv, tree, beta=beta, level="token")
    assert all((n == 1).all() for n in gap.n_minima) and not gap.differs and gap.max_abs_diff == 0.0


def test_flow_target_stays_at_a_stationary_mu():
    # sparse reward, optimistic baseline: below a wrong first token every leaf has A = -V with
    # A / beta < -1, so Q is constant there and mu(.|s) is stationary, a local maximum of that
    # state's loss (every arm on W_{-1}). The exact flow does not move; the global minimizer does.
    tree = tm.TokenTree(3, 2)
    cond = tm.random_policy(tree, 2)
    r = tm.sparse_reward(tree)
    adv = r - theory.soft_value(tm.sequence_probs(cond), r, 0.1) - 0.05
    gap = tm.flow_gap(cond, adv, tree, beta=0.1, level="token")
    for s in (1, 2):  # prefixes 1 and 2: no reward below
        assert np.all(adv[3 * s : 3 * s + 3] / 0.1 < -1)
        np.testing.assert_allclose(gap.flow_target[1][s], cond[1][s], rtol=1e-14)  # mu up to its renormalization
        assert np.abs(gap.global_target[1][s] - cond[1][s]).max() > 0.1
    grad, hess = _token_hessian(gap.flow_target, cond, adv, tree, 0.1)
    assert np.abs(grad).max() <= 1e-12 * np.abs(hess).max()  # the per-token objective is stationary there
    for s in (1, 2):  # rows 4..6 and 7..9 of the logits: negative curvature off the shift direction
        block = hess[3 * (s + 1) : 3 * (s + 2), 3 * (s + 1) : 3 * (s + 2)]
        ev = np.linalg.eigvalsh(block)
        assert ev[1] < -1e-3 * np.abs(block).max() and abs(ev[2]) < 1e-9 * np.abs(block).max()
    assert _token_loss(gap.global_target, cond, adv, tree, 0.1) < _token_loss(gap.flow_target, cond, adv, tree, 0.1)


def test_flow_gap_bad_inputs():
    tree, cond, adv = _flow_case(2, 2, 0, "mean", 0.3, "uniform")
    with pytest.raises(ValueError, match="level must be"):
        tm.flow_gap(cond, adv, tree, beta=0.3, level="leaf")
    with pytest.raises(ValueError, match="beta must be > 0"):
        tm.flow_gap(cond, adv, tree, beta=0.0)
    with pytest.raises(ValueError, match="adv_leaves must have shape"):
        tm.flow_gap(cond, adv[:3], tree, beta=0.3)
    # a flow stopped far too early reaches no listed minimum
    tree, cond, adv = _flow_case(2, 3, 0, "optimistic", 0.3, "partial")
    with pytest.raises(RuntimeError, match="did not end at a listed local minimum"):
        tm.flow_gap(cond, adv, tree, beta=0.3, level="sequence", flow_options={"t_max": 1e-2})
