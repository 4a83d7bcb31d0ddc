r"""Single-context tabular bandit of the TPO paper: PG, GRPO and TPO on one prompt.

Reproduces the protocol of arXiv 2604.06159, section 4.1. One context with
:math:`K = 100` arms; arm :math:`y^* = 0` is the only correct one (reward 1,
every other arm reward 0). The policy is :math:`\pi = \mathrm{softmax}(\theta)`
with :math:`\theta = 0` at the start. Each step draws :math:`B = 100` actions
from :math:`\pi`, forms a direction :math:`d` in logit space and moves the
logits by a step of fixed L2 length :math:`\alpha = 0.1`:

.. math::

    \theta \leftarrow \theta + \alpha\, d / \|d\|_2 \qquad (\theta \text{ unchanged when } d = 0),

for 150 steps. The error :math:`1 - \pi(y^*)` is recorded before each update,
so the first recorded error is :math:`1 - 1/K`.

Directions (samples :math:`a_b`, rewards :math:`r_b`, :math:`b = 1..B`):

* **PG**: :math:`A_b = r_b - 1/2`, :math:`d = \frac1B\sum_b A_b (e_{a_b} - \pi)`.
* **GRPO**: :math:`A_b = (r_b - \bar r)/\sqrt{\sigma_r^2 + 10^{-8}}` with the
  population variance over the B samples; :math:`d = \frac1B\sum_b A_b (e_{a_b} - \pi)`.
  Equal rewards give :math:`A = 0` exactly, hence no step.
* **TPO**: per-arm scores :math:`s = \frac1B\sum_b (r_b - 1/2)\, e_{a_b}` (a K-vector,
  zero on arms not drawn); :math:`u` = z-score of :math:`s` across arms
  (population std; only centred when that std is :math:`\le 10^{-6}`); target
  :math:`q = \mathrm{softmax}(\log(\pi + 10^{-8}) + u)`; :math:`d = q - \pi`.

The directions are the pure functions :func:`pg_direction`,
:func:`grpo_direction`, :func:`tpo_direction`; :func:`replicate_tpo_single`
runs all seeds of all three methods at once, looping only over steps.
"""

from __future__ import annotations

import numpy as np

from theory._checks import as_float_array, as_int, check_distribution
from theory._numerics import softmax

__all__ = [
    "CORRECT_ARM",
    "METHODS",
    "pg_direction",
    "grpo_direction",
    "tpo_direction",
    "sample_actions",
    "replicate_tpo_single",
]

#: Index of the single correct arm y*.
CORRECT_ARM = 0
#: Methods, in the order their random streams are spawned.
METHODS = ("pg", "grpo", "tpo")

_PG_BASELINE = 0.5  # fixed baseline of PG and of the TPO scores
_GRPO_EPS = 1e-8  # inside the square root of the GRPO standardization
_TPO_LOG_EPS = 1e-8  # log(pi + eps) in the TPO target
_TPO_STD_FLOOR = 1e-6  # at or below: TPO scores are only centred
_SEED_CHUNK = 256  # seeds simulated together; bounds the memory of the pre-drawn uniforms


# ----------------------------------------------------------------------------- directions (unchecked cores)


def _arm_sums(weights, actions, K):
    """sum_b w_b e_{a_b}: (..., B) weights and actions -> (..., K)."""
    lead = actions.shape[:-1]
    n = int(np.prod(lead))
    idx = actions.reshape(n, -1) + K * np.arange(n)[:, None]
    return np.bincount(idx.ravel(), weights=weights.reshape(-1), minlength=n * K).reshape(lead + (K,))


def _score_direction(pi, actions, adv):
    """mean_b A_b (e_{a_b} - pi) for (..., K) pi, (..., B) actions and advantages."""
    B = actions.shape[-1]
    return _arm_sums(adv, actions, pi.shape[-1]) / B - adv.mean(-1, keepdims=True) * pi


def _pg(pi, actions, rewards):
    return _score_direction(pi, actions, rewards - _PG_BASELINE)


def _grpo(pi, actions, rewards):
    m = rewards.mean(-1, keepdims=True)
    equal = rewards.max(-1, keepdims=True) == rewards.min(-1, keepdims=True)
    c = np.where(equal, 0.0, rewards - m)  # exactly 0, not the rounding of mean(r) - r
    var = (c * c).mean(-1, keepdims=True)
    return _score_direction(pi, actions, c / np.sqrt(var + _GRPO_EPS))


def _tpo(pi, actions, rewards):
    B = actions.shape[-1]
    s = _arm_sums(rewards - _PG_BASELINE, actions, pi.shape[-1]) / B  # (..., K)
    s = s - s.mean(-1, keepdims=True)
    sd = np.sqrt((s * s).mean(-1, keepdims=True))
    u = np.where(sd > _TPO_STD_FLOOR, s / np.where(sd > _TPO_STD_FLOOR, sd, 1.0), s)
    q = softmax(np.log(pi + _TPO_LOG_EPS) + u)
    return q - pi


# ----------------------------------------------------------------------------- directions (public)


def _check_samples(pi, actions, rewards):
    pi = check_distribution(pi, "pi")
    actions = np.asarray(actions)
    if not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(f"actions must be integers (arm indices), got dtype {actions.dtype}")
    rewards = as_float_array(rewards, "rewards")
    if actions.ndim == 0 or actions.shape[-1] == 0:
        raise ValueError("actions must have a last axis of B >= 1 samples")
    if rewards.shape != actions.shape:
        raise ValueError(f"rewards {rewards.shape} and actions {actions.shape} must have the same shape (..., B)")
    if actions.shape[:-1] != pi.shape[:-1]:
        raise ValueError(f"leading axes of actions {actions.shape} and pi {pi.shape} differ")
    K = pi.shape[-1]
    if actions.min() < 0 or actions.max() >= K:
        raise ValueError(f"actions must lie in [0, {K - 1}], got range [{actions.min()}, {actions.max()}]")
    return pi, actions.astype(np.int64), rewards


def pg_direction(pi, actions, rewards):
    r"""Policy-gradient logit direction with the fixed baseline 1/2.

    .. math::

        d = \frac1B \sum_{b=1}^B (r_b - \tfrac12)\,(e_{a_b} - \pi),

    the sample score-function gradient :math:`\nabla_\theta \frac1B\sum_b A_b \log\pi(a_b)`
    of a softmax policy. Source: arXiv 2604.06159, section 4.1.

    Parameters
    ----------
    pi : array_like, shape (..., K)
        Current policy; arms on the last axis.
    actions : array_like of int, shape (..., B)
        Sampled arms, in ``[0, K)``.
    rewards : array_like, shape (..., B)
        Reward of each sample.

    Returns
    -------
    ndarray, shape (..., K)
    """
    return _pg(*_check_samples(pi, actions, rewards))


def grpo_direction(pi, actions, rewards):
    r"""GRPO logit direction: group-standardized advantages on the score function.

    .. math::

        A_b = \frac{r_b - \bar r}{\sqrt{\frac1B\sum_c (r_c - \bar r)^2 + 10^{-8}}}, \qquad
        d = \frac1B \sum_{b=1}^B A_b\,(e_{a_b} - \pi).

    Equal rewards across the group (e.g. no correct sample) give :math:`A = 0`
    exactly and :math:`d = 0`. Shapes as :func:`pg_direction`.
    Source: arXiv 2604.06159, section 4.1.
    """
    return _grpo(*_check_samples(pi, actions, rewards))


def tpo_direction(pi, actions, rewards):
    r"""TPO logit direction :math:`q - \pi` towards the target built from per-arm scores.

    .. math::

        s = \frac1B\sum_{b=1}^B (r_b - \tfrac12)\, e_{a_b}, \qquad
        u = \frac{s - \bar s}{\mathrm{sd}(s)}, \qquad
        q = \mathrm{softmax}\bigl(\log(\pi + 10^{-8}) + u\bigr), \qquad d = q - \pi,

    with :math:`\bar s`, :math:`\mathrm{sd}(s)` the mean and population standard
    deviation across the K arms; when :math:`\mathrm{sd}(s) \le 10^{-6}`,
    :math:`u = s - \bar s`. :math:`q - \pi` is the logit gradient of
    :math:`-\mathrm{CE}(q, \pi)`: the step moves :math:`\pi` towards the target :math:`q`.
    Shapes as :func:`pg_direction`. Source: arXiv 2604.06159, section 4.1.
    """
    return _tpo(*_check_samples(pi, actions, rewards))


_DIRECTIONS = {"pg": _pg, "grpo": _grpo, "tpo": _tpo}


# ----------------------------------------------------------------------------- sampling


def _sample(pi, u):
    """Inverse-CDF draws: pi (N, K), uniforms u (N, B) in [0, 1) -> actions (N, B).

    One ``searchsorted`` for all rows: row n's CDF is shifted by n, so the
    concatenation stays sorted. The shift costs the last ~log2(N) bits of each
    CDF value (about 1e-14 at N = 300). A draw that rounds past the end of its
    row goes to the row's last arm of positive probability.
    """
    N, K = pi.shape
    cdf = np.cumsum(pi, axis=-1)
    cdf /= cdf[:, -1:]
    off = np.arange(N, dtype=np.float64)[:, None]
    idx = np.searchsorted((cdf + off).ravel(), (u + off).ravel(), side="right").reshape(u.shape)
    idx -= K * np.arange(N)[:, None]
    last = K - 1 - np.argmax(pi[:, ::-1] > 0, axis=-1)  # (N,)
    return np.minimum(idx, last[:, None])


def sample_actions(pi, u):
    r"""Arms drawn from each row of ``pi`` by inverse CDF: :math:`a = \min\{k : F_k > u\}`.

    Parameters
    ----------
    pi : array_like, shape (..., K)
        Distributions over arms.
    u : array_like, shape (..., B)
        Uniform draws in [0, 1), one per sample.

    Returns
    -------
    ndarray of int64, shape (..., B)
    """
    pi = check_distribution(pi, "pi")
    u = as_float_array(u, "u")
    if u.ndim == 0 or u.shape[:-1] != pi.shape[:-1]:
        raise ValueError(f"u {u.shape} must have the leading axes of pi {pi.shape} and a last axis of samples")
    if u.size and (u.min() < 0 or u.max() >= 1):
        raise ValueError("u must lie in [0, 1)")
    K, B = pi.shape[-1], u.shape[-1]
    return _sample(pi.reshape(-1, K), u.reshape(-1, B)).reshape(u.shape)


# ----------------------------------------------------------------------------- the experiment


def _simulate(u, K, alpha):
    """Run every method on its uniforms u (M, S, steps, B); returns errors (M, S, steps)."""
    M, S, steps, B = u.shape
    theta = np.zeros((M, S, K))
    rewards_of_arm = np.zeros(K)
    rewards_of_arm[CORRECT_ARM] = 1.0
    err = np.empty((M, S, steps))
    d = np.empty_like(theta)
    for t in range(steps):
        pi = softmax(theta)  # (M, S, K)
        err[:, :, t] = 1.0 - pi[:, :, CORRECT_ARM]
        actions = _sample(pi.reshape(M * S, K), u[:, :, t].reshape(M * S, B)).reshape(M, S, B)
        r = rewards_of_arm[actions]  # (M, S, B)
        for m, fn in enumerate(_DIRECTIONS.values()):
            d[m] = fn(pi[m], actions[m], r[m])
        norm = np.sqrt(np.einsum("msk,msk->ms", d, d))[..., None]
        theta += np.where(norm > 0, alpha / np.where(norm > 0, norm, 1.0), 0.0) * d
    return err


def replicate_tpo_single(num_seeds=100, seed=0, *, num_arms=100, batch=100, steps=150, alpha=0.1):
    r"""Error curves :math:`1 - \pi(y^*)` of PG, GRPO and TPO on the single-context bandit.

    Protocol of arXiv 2604.06159, section 4.1 (module docstring): ``num_arms``
    arms, the correct arm :data:`CORRECT_ARM` = 0 with reward 1, zero logits at
    the start, ``batch`` inverse-CDF samples per step, a logit step
    :math:`\theta \leftarrow \theta + \alpha d/\|d\|_2` along each method's
    direction, ``steps`` steps.

    Seeds are a leading array axis. Each method draws its uniforms from its own
    stream, ``numpy.random.SeedSequence(seed).spawn(3)`` in the order of
    :data:`METHODS`; within a stream, seed index ``j`` uses the ``j``-th block of
    ``steps * batch`` draws, so a seed's curve does not depend on ``num_seeds``.

    Parameters
    ----------
    num_seeds : int
        Independent runs S, >= 1.
    seed : int
        Root seed, >= 0.
    num_arms : int
        K, >= 2.
    batch : int
        Samples per step B, >= 1.
    steps : int
        Updates, >= 1.
    alpha : float
        L2 length of each logit step, > 0.

    Returns
    -------
    dict
        ``{"pg", "grpo", "tpo"}`` -> float64 arrays of shape (S, steps): the
        error before each update (``[:, 0] == 1 - 1/K``).
    """
    num_seeds = as_int(num_seeds, "num_seeds", 1)
    seed = as_int(seed, "seed", 0)
    K = as_int(num_arms, "num_arms", 2)
    B = as_int(batch, "batch", 1)
    steps = as_int(steps, "steps", 1)
    alpha = as_float_array(alpha, "alpha")
    if alpha.ndim != 0:
        raise ValueError(f"alpha must be a scalar, got shape {alpha.shape}")
    alpha = float(alpha)
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")

    gens = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(METHODS))]
    err = np.empty((len(METHODS), num_seeds, steps))
    for lo in range(0, num_seeds, _SEED_CHUNK):
        n = min(_SEED_CHUNK, num_seeds - lo)
        u = np.stack([g.random((n, steps, B)) for g in gens])  # (M, S, steps, B)
        err[:, lo : lo + n] = _simulate(u, K, alpha)
    return {name: err[m] for m, name in enumerate(METHODS)}
