"""Token MDP: hand-worked trees, DP against brute force over leaves, identities between the two targets, errors."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
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


@settings(max_examples=30, deadline=None)
@given(st.data(), temperatures(0.1, 10.0))
def test_targets_normalized_and_t1_levels_agree(data, beta):
    tree = data.draw(trees())
    cond = data.draw(policies(tree))
    r = data.draw(st.sampled_from(REWARDS))(tree)
    adv = r - theory.mean_baseline(tm.sequence_probs(cond), r)
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
    tree = data.draw(trees())
    cond = data.draw(policies(tree))
    r = data.draw(st.sampled_from(REWARDS))(tree)
    adv = r - theory.mean_baseline(tm.sequence_probs(cond), r)
    g = tm.gibbs_state_target(beta)
    tok = tm.state_targets(cond, tm.soft_conditional_advantage(cond, adv, tree, beta), tree, g)
    p_seq = tm.sequence_level_target(cond, adv, tree, g)
    np.testing.assert_allclose(tm.sequence_probs(tok), p_seq, rtol=1e-9, atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(st.data(), temperatures(0.05, 5.0))
def test_linear_tilt_on_plain_q_equals_sequence_linear_tilt(data, beta):
    # pi ∝ mu (A + c) with A + c > 0: per-state normalizers are Q(parent) + c and telescope
    tree = data.draw(trees())
    cond = data.draw(policies(tree))
    r = data.draw(st.sampled_from(REWARDS))(tree)
    adv = r - theory.mean_baseline(tm.sequence_probs(cond), r)  # in [-1, 1]
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
    with pytest.raises(ValueError, match="do not sum to 1"):
        tm.token_level_target(mu, adv, tree, lambda m, a: 2 * m)
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
