r"""Toy token MDP: exact sequence-level and token-level targets by DP over the prefix tree.

docs/theory.md section 6. A completion is a sequence of :math:`T` tokens from a
vocabulary of :math:`V`; the completions are the :math:`V^T` leaves of a
complete prefix tree, indexed in lexicographic order (leaf index = the base-V
number whose digits are the tokens, first token most significant). A tabular
autoregressive policy is a list ``cond`` of :math:`T` arrays, ``cond[t]`` of
shape :math:`(V^t, V)`: row ``s`` is :math:`\pi(\cdot \mid s)` for the prefix of
length :math:`t` with index ``s``; the child of prefix ``s`` by token ``a`` has
index :math:`sV + a`. The probability of a leaf is the product of its
conditionals, :math:`\pi(y) = \prod_t \pi(a_t \mid y_{<t})`.

Two induced targets of one per-distribution *state target* map
:math:`(\mu, A) \mapsto \pi` (the bandit target of an objective, e.g.
:func:`theory.lambert_target`):

* **sequence level** (log-ratio summed over tokens): the bandit target over
  the :math:`V^T` leaves with :math:`\mu(y) = \prod_t \mu(a_t \mid y_{<t})` and
  the leaf advantages :math:`A(y)`;
* **token level** (per-token objective, advantage broadcast to every token):
  state by state, the bandit target of :math:`\mu(\cdot \mid s)` with the
  advantage replaced by its conditional expectation

  .. math::

      Q_t(s, a) = E_\mu[A \mid y_{<t} = s,\ a_t = a], \qquad
      Q_{T-1}(s, a) = A(sa), \quad
      Q_t(s, a) = \sum_b \mu(b \mid sa)\, Q_{t+1}(sa, b).

The product of per-state targets differs from the sequence-level target in
general. Two state targets make them coincide exactly (both by telescoping the
per-state normalizers along a path): the linear tilt
:math:`\pi \propto \mu\,(A + \beta)` with plain :math:`Q` while every
:math:`A + \beta > 0` (:func:`linear_state_target`), and the Gibbs target
:math:`\pi \propto \mu e^{A/\beta}` with the *soft* :math:`Q`,
:math:`Q^{\rm soft}_t(s,a) = \beta \log E_\mu[e^{A/\beta} \mid s, a]`
(:func:`soft_conditional_advantage`), the soft Bellman recursion. Gibbs with the
plain conditional expectation does not (Jensen's gap at each state).

**Global minimizer or where the flow stops.** For the regression objective the
targets above are *global* minimizers (``theory.lambert_target``). In its
negative regime (:math:`V` above the soft value; at token level about half the
states with a mean baseline) the loss has other local minima, and the gradient
flow from :math:`\pi = \mu`, which is what a learner follows, can stop at one
of them. :func:`lambert_flow_state_target` is the state target of that flow's
limit, and :func:`flow_gap` returns both targets of one level side by side
with a flag saying where they differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import theory
from theory.flow import logit_flow
from theory.losses import regression_loss
from theory.objectives import make_objective
from theory._checks import as_float_array, as_int, check_distribution, check_positive
from theory._numerics import logsumexp

__all__ = [
    "MAX_LEAVES",
    "TokenTree",
    "sparse_reward",
    "partial_credit_reward",
    "prefix_credit_reward",
    "uniform_policy",
    "random_policy",
    "sequence_log_probs",
    "sequence_probs",
    "conditionals_from_sequence",
    "conditional_advantage",
    "soft_conditional_advantage",
    "lambert_state_target",
    "gibbs_state_target",
    "linear_state_target",
    "state_targets",
    "sequence_level_target",
    "token_level_target",
    "FLOW_GAP_TOL",
    "lambert_flow_state_target",
    "FlowGap",
    "flow_gap",
    "TargetGap",
    "gap_measures",
    "target_gap",
]

#: Largest tree accepted (leaves); one float64 leaf array is then 128 MiB.
MAX_LEAVES = 1 << 24


# ----------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class TokenTree:
    """Complete prefix tree of depth ``T`` over a vocabulary of ``V`` tokens.

    Attributes
    ----------
    V : int
        Vocabulary size, >= 2.
    T : int
        Depth (tokens per completion), >= 1; ``V**T`` must not exceed :data:`MAX_LEAVES`.
    """

    V: int
    T: int

    def __post_init__(self):
        V = as_int(self.V, "V", 2)
        T = as_int(self.T, "T", 1)
        if V**T > MAX_LEAVES:
            raise ValueError(f"V**T = {V}**{T} = {V**T} leaves exceeds MAX_LEAVES = {MAX_LEAVES}")
        object.__setattr__(self, "V", V)
        object.__setattr__(self, "T", T)

    @property
    def num_leaves(self) -> int:
        """Number of completions, ``V**T``."""
        return self.V**self.T

    def num_states(self, t: int) -> int:
        """Number of prefixes of length ``t`` (``0 <= t <= T``), ``V**t``."""
        t = as_int(t, "t", 0)
        if t > self.T:
            raise ValueError(f"t must be <= T = {self.T}, got {t}")
        return self.V**t

    def leaf_tokens(self) -> np.ndarray:
        """Tokens of every leaf, shape (V**T, T), int64; row ``i`` spells ``i`` in base V."""
        place = self.V ** np.arange(self.T - 1, -1, -1, dtype=np.int64)  # (T,)
        return (np.arange(self.num_leaves, dtype=np.int64)[:, None] // place) % self.V

    def leaf_index(self, tokens) -> np.ndarray:
        """Leaf index of token sequences, shape (..., T) -> (...); the inverse of :meth:`leaf_tokens`."""
        tok = self._check_tokens(tokens, "tokens")
        place = self.V ** np.arange(self.T - 1, -1, -1, dtype=np.int64)
        return tok @ place

    def _check_tokens(self, tokens, name):
        tok = np.asarray(tokens)
        if tok.ndim == 0 or tok.shape[-1] != self.T:
            raise ValueError(f"{name} must have a last axis of T = {self.T} tokens, got shape {tok.shape}")
        if tok.size and not np.issubdtype(tok.dtype, np.integer):
            raise ValueError(f"{name} must be integers, got dtype {tok.dtype}")
        tok = tok.astype(np.int64)
        if tok.size and (tok.min() < 0 or tok.max() >= self.V):
            raise ValueError(f"{name} must lie in [0, {self.V - 1}]")
        return tok


def _check_tree(tree):
    if not isinstance(tree, TokenTree):
        raise ValueError(f"tree must be a TokenTree, got {type(tree).__name__}")
    return tree


# ----------------------------------------------------------------------------- rewards


def _matches(tree, correct):
    tree = _check_tree(tree)
    correct = np.zeros(tree.T, np.int64) if correct is None else tree._check_tokens(correct, "correct")
    if correct.ndim != 1:
        raise ValueError(f"correct must be one sequence of shape (T,), got {correct.shape}")
    return tree.leaf_tokens() == correct  # (V**T, T)


def sparse_reward(tree, correct=None) -> np.ndarray:
    r"""Reward 1 on the correct sequence, 0 elsewhere: :math:`r(y) = [y = y^*]`.

    ``correct`` is the (T,) token sequence :math:`y^*` (default all zeros, leaf 0).
    Returns shape (V**T,).
    """
    return _matches(tree, correct).all(-1).astype(np.float64)


def partial_credit_reward(tree, correct=None) -> np.ndarray:
    r"""Fraction of positions that match: :math:`r(y) = \frac1T\sum_t [a_t = a^*_t]`. Shape (V**T,)."""
    return _matches(tree, correct).mean(-1)


def prefix_credit_reward(tree, correct=None) -> np.ndarray:
    r"""Length of the longest correct prefix over T, shape (V**T,).

    .. math::

        r(y) = \frac1T \max\{t : y_{<t} = y^*_{<t}\}.
    """
    return np.cumprod(_matches(tree, correct), axis=-1).sum(-1) / _check_tree(tree).T


# ----------------------------------------------------------------------------- policies


def _check_policy(cond, tree=None, name="cond"):
    """Validate a list of T conditionals (V**t, V); infer the tree when not given."""
    if isinstance(cond, np.ndarray) or not isinstance(cond, (list, tuple)):
        raise ValueError(f"{name} must be a list of T arrays of shape (V**t, V), got {type(cond).__name__}")
    if len(cond) == 0:
        raise ValueError(f"{name} is empty; it needs one array per depth")
    first = np.shape(cond[0])
    if tree is None:
        if len(first) != 2 or first[0] != 1:
            raise ValueError(f"{name}[0] must have shape (1, V), got {first}")
        tree = TokenTree(int(first[1]), len(cond))
    tree = _check_tree(tree)
    if len(cond) != tree.T:
        raise ValueError(f"{name} has {len(cond)} depths, the tree has T = {tree.T}")
    out = []
    for t, c in enumerate(cond):
        c = check_distribution(c, f"{name}[{t}]")
        if c.shape != (tree.V**t, tree.V):
            raise ValueError(f"{name}[{t}] must have shape {(tree.V**t, tree.V)}, got {c.shape}")
        out.append(c)
    return out, tree


def uniform_policy(tree) -> list[np.ndarray]:
    r"""Uniform conditionals :math:`\pi(a \mid s) = 1/V`: a list of T arrays (V**t, V)."""
    tree = _check_tree(tree)
    return [np.full((tree.V**t, tree.V), 1.0 / tree.V) for t in range(tree.T)]


def random_policy(tree, rng_or_seed, concentration=1.0) -> list[np.ndarray]:
    r"""Conditionals drawn row by row from :math:`\mathrm{Dirichlet}(c\,\mathbf 1_V)`.

    Parameters
    ----------
    tree : TokenTree
    rng_or_seed : int, numpy.random.SeedSequence or numpy.random.Generator
        Fed to ``numpy.random.default_rng``; depths are drawn in order 0..T-1.
    concentration : float or array_like, shape (V,)
        Dirichlet parameter, > 0 (small values give peaked rows).

    Returns
    -------
    list of T arrays, shape (V**t, V)
    """
    tree = _check_tree(tree)
    conc = check_positive(concentration, "concentration")
    try:
        conc = np.broadcast_to(conc, (tree.V,))
    except ValueError as err:
        raise ValueError(f"concentration must be a scalar or have shape ({tree.V},), got {conc.shape}") from err
    rng = np.random.default_rng(rng_or_seed)
    out = []
    for t in range(tree.T):
        c = rng.dirichlet(conc, size=tree.V**t)
        out.append(c / c.sum(-1, keepdims=True))
    return out


def sequence_log_probs(cond) -> np.ndarray:
    r"""Log-probability of every leaf, :math:`\log\pi(y) = \sum_t \log\pi(a_t \mid y_{<t})`.

    Built depth by depth by broadcasting: with :math:`\ell_t` the (V**t,) prefix
    log-probabilities, :math:`\ell_{t+1}[sV + a] = \ell_t[s] + \log\pi(a \mid s)`.
    Exact zeros give ``-inf``.

    Parameters
    ----------
    cond : list of T arrays, shape (V**t, V)

    Returns
    -------
    ndarray, shape (V**T,)
    """
    cond, _ = _check_policy(cond)
    lp = np.zeros(1)
    with np.errstate(divide="ignore"):
        for c in cond:
            lp = (lp[:, None] + np.log(c)).ravel()
    return lp


def sequence_probs(cond) -> np.ndarray:
    r"""Probability of every leaf, :math:`\pi(y) = \prod_t \pi(a_t \mid y_{<t})`, shape (V**T,).

    Computed as ``exp`` of :func:`sequence_log_probs`.
    """
    return np.exp(sequence_log_probs(cond))


def conditionals_from_sequence(p_leaves, tree) -> list[np.ndarray]:
    r"""Conditionals of a leaf distribution, by summing subtrees bottom-up.

    .. math::

        m_T = p, \qquad m_t(s) = \sum_a m_{t+1}(sa), \qquad \pi(a \mid s) = m_{t+1}(sa) / m_t(s),

    with :math:`\pi(\cdot \mid s) = 1/V` where :math:`m_t(s) = 0`. Inverse of
    :func:`sequence_probs` on the support.

    Parameters
    ----------
    p_leaves : array_like, shape (V**T,)
        Distribution over the leaves.
    tree : TokenTree

    Returns
    -------
    list of T arrays, shape (V**t, V)
    """
    tree = _check_tree(tree)
    p = check_distribution(p_leaves, "p_leaves")
    if p.shape != (tree.num_leaves,):
        raise ValueError(f"p_leaves must have shape ({tree.num_leaves},), got {p.shape}")
    cond = [None] * tree.T
    m = p
    for t in range(tree.T - 1, -1, -1):
        M = m.reshape(tree.V**t, tree.V)
        m = M.sum(-1)
        pos = m > 0
        cond[t] = np.where(pos[:, None], M / np.where(pos, m, 1.0)[:, None], 1.0 / tree.V)
    return cond


# ----------------------------------------------------------------------------- state-action advantages


def _check_leaf_values(x, tree, name):
    x = as_float_array(x, name)
    if x.shape != (tree.num_leaves,):
        raise ValueError(f"{name} must have shape ({tree.num_leaves},) (one value per leaf), got {x.shape}")
    return x


def conditional_advantage(cond_mu, adv_leaves, tree) -> list[np.ndarray]:
    r"""State-action advantage :math:`Q_t(s, a) = E_\mu[A \mid y_{<t} = s, a_t = a]` at every depth.

    .. math::

        Q_{T-1}(s, a) = A(sa), \qquad Q_t(s, a) = \sum_b \mu(b \mid sa)\, Q_{t+1}(sa, b).

    Parameters
    ----------
    cond_mu : list of T arrays, shape (V**t, V)
        Behaviour conditionals.
    adv_leaves : array_like, shape (V**T,)
        Advantage of every leaf (reward units).
    tree : TokenTree

    Returns
    -------
    list of T arrays, shape (V**t, V)
    """
    cond_mu, tree = _check_policy(cond_mu, _check_tree(tree), "cond_mu")
    adv = _check_leaf_values(adv_leaves, tree, "adv_leaves")
    Q = [None] * tree.T
    Q[-1] = adv.reshape(-1, tree.V)
    for t in range(tree.T - 2, -1, -1):
        Q[t] = np.einsum("ij,ij->i", cond_mu[t + 1], Q[t + 1]).reshape(-1, tree.V)
    return Q


def soft_conditional_advantage(cond_mu, adv_leaves, tree, beta) -> list[np.ndarray]:
    r"""Soft state-action advantage :math:`Q^{\rm soft}_t(s,a) = \beta\log E_\mu[e^{A/\beta} \mid s, a]`.

    .. math::

        Q^{\rm soft}_{T-1}(s, a) = A(sa), \qquad
        Q^{\rm soft}_t(s, a) = \beta \log \sum_b \mu(b \mid sa)\, e^{Q^{\rm soft}_{t+1}(sa, b)/\beta},

    the soft Bellman recursion of KL-regularized RL (the soft value
    :math:`V^*_\beta` of docs/theory.md section 1, per state). With it the per-state
    Gibbs targets multiply to the sequence-level Gibbs target. Shapes as
    :func:`conditional_advantage`; ``beta`` is a scalar > 0.
    """
    cond_mu, tree = _check_policy(cond_mu, _check_tree(tree), "cond_mu")
    adv = _check_leaf_values(adv_leaves, tree, "adv_leaves")
    beta = check_positive(beta, "beta")
    if beta.ndim != 0:
        raise ValueError(f"beta must be a scalar, got shape {beta.shape}")
    beta = float(beta)
    Q = [None] * tree.T
    Q[-1] = adv.reshape(-1, tree.V)
    for t in range(tree.T - 2, -1, -1):
        mu = cond_mu[t + 1]
        supp = mu > 0
        with np.errstate(divide="ignore"):
            z = np.where(supp, np.log(np.where(supp, mu, 1.0)) + Q[t + 1] / beta, -np.inf)
        Q[t] = (beta * logsumexp(z)).reshape(-1, tree.V)
    return Q


# ----------------------------------------------------------------------------- state targets


def lambert_state_target(beta):
    r"""State target of the regression objective: ``(mu, A) -> theory.lambert_target(mu, A, beta)[0]``.

    :math:`\pi = \mu\, W_k(\eta e^{A/\beta})/\eta` (docs/theory.md section 3), rows (N, K).
    """
    beta = float(_scalar_beta(beta))
    return lambda mu, adv: theory.lambert_target(mu, adv, beta)[0]


def gibbs_state_target(beta):
    r"""Gibbs state target :math:`\pi \propto \mu\, e^{A/\beta}` (``theory.gibbs_target``), rows (N, K)."""
    beta = float(_scalar_beta(beta))
    return lambda mu, adv: theory.gibbs_target(mu, adv, beta)


def linear_state_target(beta):
    r"""State target of REINFORCE + a KL(mu||pi) penalty on mu-samples (k1 or k3), rows (N, K).

    The zoo's closed form (``theory.objectives``, ``reinforce_k1``):
    :math:`\pi = (\mu(A + \beta) - c)_+ / E_\mu[A + \beta]`, the linear tilt
    :math:`\pi\propto\mu(A+\beta)` thresholded when some :math:`A + \beta < 0`.
    Raises ``ValueError`` for a row with :math:`E_\mu[A + \beta] \le 0` (no
    interior limit: the flow collapses onto one arm).
    """
    obj = make_objective("reinforce_k1", beta=float(_scalar_beta(beta)))

    def target(mu, adv):
        pi = obj.closed_form_target(mu, adv)
        if not np.isfinite(pi).all():
            raise ValueError("linear state target: a row has E_mu[A + beta] <= 0 (the flow collapses onto one arm)")
        return pi

    return target


def _scalar_beta(beta):
    beta = check_positive(beta, "beta")
    if beta.ndim != 0:
        raise ValueError(f"beta must be a scalar, got shape {beta.shape}")
    return beta


def _resolve_state_target(state_target, beta):
    if state_target is None:
        if beta is None:
            raise ValueError("give beta (for the default Lambert state target) or a state_target")
        return lambert_state_target(beta)
    if beta is not None:
        raise ValueError("give either state_target or beta, not both (beta only selects the default Lambert target)")
    if not callable(state_target):
        kind = type(state_target).__name__
        raise ValueError(f"state_target must be callable (mu_rows, adv_rows) -> pi_rows, got {kind}")
    return state_target


def _apply(state_target, mu, adv, what):
    try:
        out = state_target(mu, adv)
    except (TypeError, ValueError) as err:
        raise ValueError(f"state_target failed on {what}: {err}") from err
    if np.shape(out) != mu.shape:
        raise ValueError(f"state_target returned shape {np.shape(out)} for {what}, expected {mu.shape}")
    # the shared check: finite, >= 0, rows summing to 1 within a tolerance that follows the dtype
    # (a float32 policy is accepted and renormalized in float64)
    checked = check_distribution(out, f"state_target's output for {what}")
    # float64 rows are returned as given (bit for bit); lower precision comes back renormalized
    return np.asarray(out, dtype=np.float64) if np.asarray(out).dtype == np.float64 else checked


def state_targets(cond_mu, q, tree, state_target=None, *, beta=None) -> list[np.ndarray]:
    r"""Per-state targets :math:`\pi(\cdot \mid s) = \mathcal T(\mu(\cdot \mid s), Q_t(s, \cdot))` at every depth.

    One batched call of the state target per depth, on :math:`V^t` rows.

    Parameters
    ----------
    cond_mu : list of T arrays, shape (V**t, V)
    q : list of T arrays, shape (V**t, V)
        State-action advantages (:func:`conditional_advantage`, :func:`soft_conditional_advantage`).
    tree : TokenTree
    state_target : callable ``(mu_rows (N, K), adv_rows (N, K)) -> pi_rows (N, K)``, optional
        Default: :func:`lambert_state_target` at ``beta``.
    beta : float, optional
        Temperature of the default state target; give it only without ``state_target``.

    Returns
    -------
    list of T arrays, shape (V**t, V)
    """
    cond_mu, tree = _check_policy(cond_mu, _check_tree(tree), "cond_mu")
    fn = _resolve_state_target(state_target, beta)
    if not isinstance(q, (list, tuple)) or len(q) != tree.T:
        raise ValueError(f"q must be a list of T = {tree.T} arrays of shape (V**t, V)")
    out = []
    for t in range(tree.T):
        qt = as_float_array(q[t], f"q[{t}]")
        if qt.shape != cond_mu[t].shape:
            raise ValueError(f"q[{t}] must have shape {cond_mu[t].shape}, got {qt.shape}")
        out.append(_apply(fn, cond_mu[t], qt, f"depth {t}"))
    return out


def token_level_target(cond_mu, adv_leaves, tree, state_target=None, *, beta=None) -> list[np.ndarray]:
    r"""Token-level induced target: the state target applied at every prefix to :math:`Q_t`.

    .. math::

        \pi(\cdot \mid s) = \mathcal T\bigl(\mu(\cdot \mid s),\ Q_t(s, \cdot)\bigr), \qquad
        Q_t(s, a) = E_\mu[A \mid s, a],

    the minimizer, state by state, of a per-token objective whose advantage is
    the sequence advantage broadcast to every token (docs/theory.md section 6).
    Arguments as :func:`state_targets`, with ``adv_leaves`` (V**T,) the leaf
    advantages. Returns the conditionals of the target, T arrays (V**t, V).

    Notes
    -----
    :math:`E_\mu[Q_t(s, \cdot) \mid s]` is the parent's :math:`Q`, not 0: states
    below average have mostly negative :math:`Q` rows and, for the default
    Lambert target, fall in its negative regime (typically about half of all
    states with a mean baseline). That solver path of ``theory.lambert_target``
    dominates the cost of this function.
    """
    q = conditional_advantage(cond_mu, adv_leaves, tree)
    return state_targets(cond_mu, q, tree, state_target, beta=beta)


def sequence_level_target(cond_mu, adv_leaves, tree, state_target=None, *, beta=None) -> np.ndarray:
    r"""Sequence-level induced target: the bandit target over the leaves.

    .. math::

        p = \mathcal T\bigl(\mu_{\rm seq}, A\bigr), \qquad \mu_{\rm seq}(y) = \prod_t \mu(a_t \mid y_{<t}),

    one call of the state target on a single row of :math:`V^T` arms. Arguments
    as :func:`token_level_target`. Returns the leaf distribution, shape (V**T,).

    Notes
    -----
    With the default Lambert target the positive regime (e.g. the mean
    baseline) costs time linear in :math:`V^T`. The negative regime
    (:math:`V > V^*_\beta`) has a candidate per arm that may sit on its
    :math:`W_{-1}` branch; a lower bound on each candidate's loss
    (``theory.lambert``) leaves a handful to solve, O(:math:`V^T`) time and
    memory each, after a scan of O(:math:`V^T`) per grid point. Measured
    (``benchmarks/bench_lambert_negative.py``: ``V = 4``, Dirichlet(1)
    conditionals, partial credit, ``beta = 0.1``, soft value + 0.05; one core):
    0.13 s at 4,096 leaves, 1.0 s at 65,536 and 3.6 s at 262,144, with peak
    resident memory 30, 70 and 120 MiB above the interpreter's (the previous,
    exhaustive search took 25 s and 2.2 GiB at 4,096 leaves and gave no answer
    within 5 minutes at 65,536).
    """
    cond_mu, tree = _check_policy(cond_mu, _check_tree(tree), "cond_mu")
    adv = _check_leaf_values(adv_leaves, tree, "adv_leaves")
    fn = _resolve_state_target(state_target, beta)
    mu = sequence_probs(cond_mu)
    return _apply(fn, mu[None], adv[None], "the leaves")[0]


# ----------------------------------------------------------------------------- where the flow from mu stops

#: ``FlowGap.differs`` is set when the two targets differ by more than this on some leaf probability.
FLOW_GAP_TOL = 1e-9

# logit_flow only has to pick the basin: the point returned is the closed-form local minimum nearest
# the flow's end point. A first pass at these loose tolerances (measured end-point error <= 1e-11,
# a third of the time of logit_flow's defaults) is followed, for the rows it leaves farther than
# _SNAP_ATOL from every listed minimum, by a second pass at logit_flow's defaults.
_LOOSE_FLOW = dict(tol=1e-7, rtol=1e-6, atol=1e-9, plateau_tol=1e-7, growth_tol=1e-7)

# a flow end point is identified with a listed local minimum within this max-abs distance
_SNAP_ATOL = 1e-6


def _population_regression_loss(beta):
    r"""``loss(log_pi, log_mu, adv) -> (...)`` for ``theory.logit_flow``: :math:`\sum_y \mu_y (\beta s_y - A_y)^2`.

    The per-element loss is ``theory.losses.regression_loss`` (arms as tokens).
    """

    def loss(log_pi, log_mu, adv):
        return (torch.exp(log_mu) * regression_loss(log_pi, log_mu, adv, beta=beta, level="token")).sum(-1)

    return loss


def _two_arm_basin(mu, adv, cand, count):
    r"""Index of the local minimum the flow reaches, for rows with two support arms: (n,) int, -1 if none.

    On two arms the simplex is the line :math:`z = \log(\pi_j/\pi_i)`, the flow a
    1-d gradient flow along it. It starts at :math:`z_0 = \log(\mu_j/\mu_i)` in the
    direction of :math:`\mathrm{sign}(A_j - A_i)` (the start velocity is
    :math:`\dot z = 4\beta\mu_i\mu_j(A_j - A_i)`) and descends until the first
    stationary point on its way, which is not a maximum: the nearest listed
    minimum in that direction.
    """
    n, P, K = cand.shape
    arms = np.argsort(mu <= 0, axis=-1, kind="stable")[:, :2]  # the two support arms, in order
    i, j = arms[:, 0], arms[:, 1]
    rows = np.arange(n)
    with np.errstate(divide="ignore"):
        z = np.log(cand[rows, :, j]) - np.log(cand[rows, :, i]) - (np.log(mu[rows, j]) - np.log(mu[rows, i]))[:, None]
    ahead = z * np.sign(adv[rows, j] - adv[rows, i])[:, None]  # (n, P): > 0 in the direction of motion
    ahead = np.where((np.arange(P)[None, :] < count[:, None]) & (ahead > 0), ahead, np.inf)
    return np.where(np.isfinite(ahead).any(-1), ahead.argmin(-1), -1)


def _flow_basin(mu, adv, beta, cand, count, flow_options):
    """Index of the listed minimum nearest the end of ``logit_flow`` from ``mu``, (n,) int, -1 if none is near."""
    n = len(mu)
    valid = np.arange(cand.shape[1])[None, :] < count[:, None]
    out = np.full(n, -1)
    todo = np.arange(n)
    for opts in ({**_LOOSE_FLOW, **flow_options}, flow_options):
        fr = logit_flow(mu[todo], adv[todo], loss=_population_regression_loss(beta), **opts)
        dist = np.where(valid[todo], np.abs(fr.pi[:, None, :] - cand[todo]).max(-1), np.inf)  # (m, P)
        near = dist.argmin(-1)
        ok = fr.converged & (dist[np.arange(todo.size), near] <= _SNAP_ATOL)
        out[todo[ok]] = near[ok]
        todo = todo[~ok]
        if not todo.size:
            break
    return out


def _flow_rows(mu, adv, beta, pi_global, flow_options=None):
    r"""Where the flow of the regression loss from each row of ``mu`` stops: ``(pi_flow, n_minima)``.

    ``mu``, ``adv``, ``pi_global`` (the rows' ``theory.lambert_target``) have shape
    (N, K); returns ``pi_flow`` (N, K), equal to ``pi_global`` bit for bit on the
    rows whose flow reaches it, and ``n_minima`` (N,) int. See
    :func:`lambert_flow_state_target` for the procedure.
    """
    sp = theory.lambert_stationary_points(mu, adv, beta)
    count = np.asarray(sp.count, dtype=np.int64)
    supp = mu > 0
    hi = np.where(supp, adv, -np.inf).max(-1)
    lo = np.where(supp, adv, np.inf).min(-1)
    scale = np.where(supp, np.abs(adv), 0.0).max(-1)
    still = hi - lo <= 64 * np.finfo(float).eps * scale  # mu itself is stationary: the flow does not move
    pi_flow = pi_global.copy()
    moved = still & (np.abs(pi_global - mu).max(-1) > _SNAP_ATOL)
    pi_flow[moved] = mu[moved]
    run = np.flatnonzero((count > 1) & ~still)
    if not run.size:
        return pi_flow, count
    cand = sp.pi[run]  # (n, P, K)
    basin = np.full(run.size, -1)
    two = supp[run].sum(-1) == 2
    if two.any():
        basin[two] = _two_arm_basin(mu[run[two]], adv[run[two]], cand[two], count[run[two]])
    rest = basin < 0
    if rest.any():
        basin[rest] = _flow_basin(mu[run[rest]], adv[run[rest]], beta, cand[rest], count[run[rest]], flow_options or {})
    if (basin < 0).any():
        bad = run[basin < 0]
        raise RuntimeError(
            f"the flow from mu did not end at a listed local minimum on {bad.size} row(s) (first: row {bad[0]}); "
            "pass flow_options for theory.logit_flow (a larger t_max, say)"
        )
    reached = cand[np.arange(run.size), basin]
    other = np.abs(reached - pi_global[run]).max(-1) > _SNAP_ATOL
    pi_flow[run[other]] = reached[other]
    return pi_flow, count


def lambert_flow_state_target(beta, **flow_options):
    r"""State target of the regression objective's gradient flow from :math:`\mu`: its limit, row by row.

    The loss :math:`L(\pi) = \sum_a \mu_a (\beta\log(\pi_a/\mu_a) - A_a)^2` of one
    row, followed by the flow :math:`\dot\theta = -\nabla_\theta L` of the
    softmax logits from :math:`\theta = \log\mu`. Where :math:`L` has a single
    local minimum (the positive and boundary regimes, and most rows of the
    negative one) that is :func:`lambert_state_target`'s global minimizer.
    Otherwise it is the local minimum in whose basin :math:`\mu` lies, which
    need not be the global one. Per row:

    1. ``theory.lambert_stationary_points`` lists every local minimum in closed form;
    2. with one, it is the limit: :math:`L \to \infty` as any :math:`\pi_a \to 0`
       with :math:`\mu_a > 0`, so the flow stays in a compact set of the open
       simplex and converges to a stationary point, a local minimum from every
       start but a set of measure zero;
    3. with several on two support arms, the simplex is a line and the flow a
       1-d descent along it, starting towards the arm of larger advantage
       (:math:`\dot z = 4\beta\mu_i\mu_j(A_j - A_i)` for
       :math:`z = \log(\pi_j/\pi_i)`): it stops at the first stationary point on
       its way, which is no maximum, so at the nearest listed minimum in that
       direction;
    4. with several on more arms, ``theory.logit_flow`` integrates the flow
       (batched over those rows, loss form, :math:`L` from
       ``theory.losses.regression_loss``) and the result is the listed minimum
       within ``1e-6`` (max abs) of its end point, so at the precision of the
       closed form. A first pass runs at loose tolerances (``tol=1e-7,
       rtol=1e-6, atol=1e-9, plateau_tol=1e-7, growth_tol=1e-7``: the flow only
       picks the basin), a second at ``logit_flow``'s defaults for the rows the
       first leaves unconverged or far from every listed minimum;
       ``RuntimeError`` for rows the second leaves so too;
    5. a row whose advantages are equal on the support (to 64 ulp) has
       :math:`\mu` itself stationary (:math:`u = 1`, :math:`\eta = A/\beta`):
       the flow does not move and the result is :math:`\mu`. It is a local
       minimum when :math:`A/\beta > -1` and a local *maximum* on the simplex
       when :math:`A/\beta < -1` (every arm on the :math:`W_{-1}` branch), e.g.
       a subtree without reward under an optimistic baseline: any perturbation
       (sampling noise) leaves it, the exact flow does not.

    Parameters
    ----------
    beta : float
        Temperature, > 0.
    **flow_options
        Passed to ``theory.logit_flow`` in both passes of step 4 (over the
        loose tolerances in the first).

    Returns
    -------
    callable ``(mu_rows (N, K), adv_rows (N, K)) -> pi_rows (N, K)``
        For :func:`token_level_target`, :func:`sequence_level_target`,
        :func:`state_targets`, :func:`target_gap`.
    """
    beta = float(_scalar_beta(beta))

    def target(mu, adv):
        mu = check_distribution(mu, "mu")
        adv = np.broadcast_to(as_float_array(adv, "adv"), mu.shape)
        if mu.ndim != 2:
            raise ValueError(f"mu must be rows (N, K), got shape {mu.shape}")
        return _flow_rows(mu, adv, beta, theory.lambert_target(mu, adv, beta)[0], flow_options)[0]

    return target


@dataclass(frozen=True)
class FlowGap:
    r"""The global minimizer of the regression loss at one level and the point its flow from mu reaches.

    Attributes
    ----------
    level : str
        ``"token"`` or ``"sequence"``.
    global_target, flow_target : list of T arrays (V**t, V), or ndarray (V**T,)
        Token level: conditionals (``global_target`` is :func:`token_level_target`'s).
        Sequence level: leaf distributions (``global_target`` is
        :func:`sequence_level_target`'s). Equal bit for bit wherever the flow
        reaches the global minimizer.
    p_global, p_flow : ndarray, shape (V**T,)
        Both as leaf distributions (:func:`sequence_probs` at token level).
    max_abs_diff : float
        :math:`\max_y |p_{\rm global}(y) - p_{\rm flow}(y)|`.
    differs : bool
        ``max_abs_diff > FLOW_GAP_TOL`` (1e-9).
    n_minima : list of T int arrays (V**t,), or int
        Number of local minima of each state's loss (token level) or of the
        leaf bandit's (sequence level); the two targets can differ only where
        it exceeds 1.
    """

    level: str
    global_target: list[np.ndarray] | np.ndarray
    flow_target: list[np.ndarray] | np.ndarray
    p_global: np.ndarray
    p_flow: np.ndarray
    max_abs_diff: float
    differs: bool
    n_minima: list[np.ndarray] | int


def flow_gap(cond_mu, adv_leaves, tree, *, beta, level="token", flow_options=None) -> FlowGap:
    r"""Global minimizer and gradient-flow limit of the regression objective at one level, side by side.

    **Token level.** The per-token regression on completions from :math:`\mu`,

    .. math::

        E_{y\sim\mu}\Bigl[\sum_t \bigl(\beta\log\tfrac{\pi(a_t\mid y_{<t})}{\mu(a_t\mid y_{<t})} - A(y)\bigr)^2\Bigr]
        = \sum_t \sum_s \mu(s) \sum_a \mu(a\mid s)\bigl(\beta\log\tfrac{\pi(a\mid s)}{\mu(a\mid s)} - Q_t(s, a)\bigr)^2
          + \mathrm{const},

    with :math:`Q_t(s, a) = E_\mu[A \mid s, a]` (the constant is
    :math:`E_\mu[\mathrm{Var}(A \mid s, a)]`). The data come from :math:`\mu`, so
    :math:`Q_t` is :math:`\mu`'s and does not move with :math:`\pi` (the
    definition of :func:`token_level_target`). With one row of logits per prefix
    the gradient flow of this loss from :math:`\theta = \log\mu` decouples into
    the flows of the per-state losses, each slowed by the constant
    :math:`\mu(s)`, which changes the clock and not the limit. The flow target is
    therefore :func:`lambert_flow_state_target` applied state by state to
    :math:`(\mu(\cdot\mid s), Q_t(s, \cdot))` (a state with :math:`\mu(s) = 0`
    carries no loss; like :func:`token_level_target` it gets its own state's limit).

    **Sequence level.** The sequence-level target is defined over the leaves, so
    its flow is that of :math:`\sum_y \mu(y)(\beta\log(p(y)/\mu(y)) - A(y))^2` in
    the logits of a softmax over the :math:`V^T` leaves, from :math:`\log\mu`:
    :func:`lambert_flow_state_target` on that one row. (One row of logits per
    prefix has the same local minima, the simplex's interior being reparametrized,
    but a different flow, whose basins can differ.)

    Parameters
    ----------
    cond_mu : list of T arrays, shape (V**t, V)
        Behaviour conditionals.
    adv_leaves : array_like, shape (V**T,)
        Leaf advantages (reward units).
    tree : TokenTree
    beta : float
        Temperature of the regression, > 0.
    level : {"token", "sequence"}
    flow_options : dict, optional
        Passed to ``theory.logit_flow`` (see :func:`lambert_flow_state_target`).

    Returns
    -------
    FlowGap

    Notes
    -----
    Measured on two shared cores: token level, about 1 s both for the 4,096
    leaves of ``V = 4, T = 6`` with a mean baseline (23 states with several
    minima) and for ``V = 4, T = 4`` with an optimistic one (48); sequence level,
    5 s for the 256 leaves of ``V = 4, T = 4`` with an optimistic baseline (206
    local minima over the leaves; the flow there is one bandit of ``V**T`` arms
    with a dense Jacobian). Rows with one local minimum cost no flow.
    """
    if level not in ("token", "sequence"):
        raise ValueError(f"level must be 'token' or 'sequence', got {level!r}")
    cond_mu, tree = _check_policy(cond_mu, _check_tree(tree), "cond_mu")
    adv = _check_leaf_values(adv_leaves, tree, "adv_leaves")
    beta = float(_scalar_beta(beta))
    if level == "token":
        glob = token_level_target(cond_mu, adv, tree, beta=beta)
        q = conditional_advantage(cond_mu, adv, tree)
        # every depth in one batch: one flow integration for all the states that need one
        pi, n = _flow_rows(np.concatenate(cond_mu), np.concatenate(q), beta, np.concatenate(glob), flow_options)
        cut = np.cumsum([tree.V**t for t in range(tree.T - 1)], dtype=np.int64)  # first row of depths 1..T-1
        flow, n_minima = np.split(pi, cut), np.split(n, cut)
        p_global, p_flow = sequence_probs(glob), sequence_probs(flow)
    else:
        glob = sequence_level_target(cond_mu, adv, tree, beta=beta)
        mu = sequence_probs(cond_mu)
        pi, n = _flow_rows(mu[None], adv[None], beta, glob[None], flow_options)
        flow, n_minima = pi[0], int(n[0])
        p_global, p_flow = glob, flow
    diff = float(np.abs(p_global - p_flow).max())
    return FlowGap(
        level=level,
        global_target=glob,
        flow_target=flow,
        p_global=p_global,
        p_flow=p_flow,
        max_abs_diff=diff,
        differs=diff > FLOW_GAP_TOL,
        n_minima=n_minima,
    )


# ----------------------------------------------------------------------------- measures


@dataclass(frozen=True)
class TargetGap:
    """Measures of the sequence-level and token-level targets against mu and each other (floats)."""

    kl_seq_mu: float  #: KL(p_seq || mu), nats
    kl_tok_mu: float  #: KL(p_tok || mu), nats
    kl_seq_tok: float  #: KL(p_seq || p_tok), nats
    kl_tok_seq: float  #: KL(p_tok || p_seq), nats
    reward_mu: float  #: E_mu[r]
    reward_seq: float  #: E_{p_seq}[r]
    reward_tok: float  #: E_{p_tok}[r]
    entropy_mu: float  #: H(mu) over leaves, nats
    entropy_seq: float  #: H(p_seq), nats
    entropy_tok: float  #: H(p_tok), nats


def gap_measures(p_mu, p_seq, p_tok, reward_leaves) -> TargetGap:
    r"""KLs, expected rewards and entropies of two leaf distributions against :math:`\mu`.

    Uses ``theory.kl``, ``theory.entropy``, ``theory.expected_reward``. All
    arguments have shape (V**T,) (any common length).
    """
    p_mu = check_distribution(p_mu, "p_mu")
    p_seq = check_distribution(p_seq, "p_seq")
    p_tok = check_distribution(p_tok, "p_tok")
    r = as_float_array(reward_leaves, "reward_leaves")
    shapes = {p_mu.shape, p_seq.shape, p_tok.shape, r.shape}
    if len(shapes) != 1 or p_mu.ndim != 1:
        raise ValueError(f"p_mu, p_seq, p_tok and reward_leaves must be 1-d of one length, got shapes {shapes}")
    return TargetGap(
        kl_seq_mu=float(theory.kl(p_seq, p_mu)),
        kl_tok_mu=float(theory.kl(p_tok, p_mu)),
        kl_seq_tok=float(theory.kl(p_seq, p_tok)),
        kl_tok_seq=float(theory.kl(p_tok, p_seq)),
        reward_mu=float(theory.expected_reward(p_mu, r)),
        reward_seq=float(theory.expected_reward(p_seq, r)),
        reward_tok=float(theory.expected_reward(p_tok, r)),
        entropy_mu=float(theory.entropy(p_mu)),
        entropy_seq=float(theory.entropy(p_seq)),
        entropy_tok=float(theory.entropy(p_tok)),
    )


def target_gap(cond_mu, reward_leaves, adv_leaves, tree, state_target=None, *, beta=None) -> TargetGap:
    r"""Gap between the sequence-level and the token-level target of one state target.

    Computes :func:`sequence_level_target` and :func:`token_level_target` (as leaf
    distributions via :func:`sequence_probs`) and returns :func:`gap_measures`.

    Parameters
    ----------
    cond_mu : list of T arrays, shape (V**t, V)
    reward_leaves : array_like, shape (V**T,)
        Rewards, for the expected rewards.
    adv_leaves : array_like, shape (V**T,)
        Advantages fed to the targets (e.g. ``reward - E_mu[reward]``).
    tree, state_target, beta
        As :func:`token_level_target`.
    """
    cond_mu, tree = _check_policy(cond_mu, _check_tree(tree), "cond_mu")
    r = _check_leaf_values(reward_leaves, tree, "reward_leaves")
    fn = _resolve_state_target(state_target, beta)
    p_seq = sequence_level_target(cond_mu, adv_leaves, tree, fn)
    p_tok = sequence_probs(token_level_target(cond_mu, adv_leaves, tree, fn))
    return gap_measures(sequence_probs(cond_mu), p_seq, p_tok, r)
