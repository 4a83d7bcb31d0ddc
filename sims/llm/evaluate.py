"""pass@1 and pass@k on held-out problems, with standard errors across problems.

For one problem with ``n`` sampled completions of which ``c`` are correct, the
unbiased estimator of pass@k (Chen et al. 2021, "Evaluating Large Language
Models Trained on Code", eq. 1) is

.. math:: \\widehat{\\mathrm{pass@}k} = 1 - \\binom{n - c}{k} \\Big/ \\binom{n}{k}
          = 1 - \\prod_{i = n - c + 1}^{n} \\left(1 - \\frac{k}{i}\\right),

computed with the product form (numerically stable). Averaged over ``P``
problems; the standard error is the sample standard deviation of the
per-problem estimates over ``sqrt(P)`` (it covers the spread across problems
and the sampling noise within each). pass@1 is ``c / n``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "pass_at_k",
    "mean_and_se",
    "paired_difference",
    "pass_at_k_summary",
    "evaluate",
]


def pass_at_k(n, c, k: int) -> np.ndarray:
    """Unbiased pass@k for each problem.

    Parameters
    ----------
    n : int or array of int
        Samples per problem.
    c : int or array of int
        Correct samples per problem, ``0 <= c <= n``.
    k : int
        ``1 <= k <= n``.

    Returns
    -------
    ndarray of float
        Broadcast shape of ``n`` and ``c``.
    """
    n, c = np.broadcast_arrays(np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64))
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    if np.any(n < k):
        raise ValueError(f"k: {k} exceeds the number of samples {int(n.min())}")
    if np.any((c < 0) | (c > n)):
        raise ValueError("c: must satisfy 0 <= c <= n")
    out = np.empty(n.shape, dtype=np.float64)
    for idx in np.ndindex(n.shape):
        ni, ci = int(n[idx]), int(c[idx])
        if ni - ci < k:
            out[idx] = 1.0
        else:
            out[idx] = 1.0 - np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1, dtype=np.float64))
    return out


def mean_and_se(x) -> tuple[float, float]:
    """Mean over problems and its standard error ``std(ddof=1) / sqrt(P)`` (0 for P = 1)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        raise ValueError("x: need at least one problem")
    se = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else 0.0
    return float(x.mean()), se


def paired_difference(a: dict, b: dict) -> tuple[float, float, int]:
    r"""Mean of ``b[k] - a[k]`` over the keys both hold, its standard error, and the number of pairs.

    .. math:: \bar d = \frac1n\sum_k (b_k - a_k), \qquad \mathrm{se} = \mathrm{sd}(b - a) / \sqrt{n}

    For two settings measured on the same units (the same seeds, or the same
    (seed, prompt) pairs with one frozen behaviour policy), the differences
    cancel what the units share, so this s.e. is the one to test an ordering
    with; ``sqrt(se_a^2 + se_b^2)`` of two unpaired means ignores it. Keys present
    in only one of the two are left out. Needs at least two common keys
    (a standard error from one pair does not exist).
    """
    keys = [k for k in a if k in b]
    if len(keys) < 2:
        raise ValueError(f"paired_difference: need at least 2 common keys, got {len(keys)}")
    d = np.array([b[k] - a[k] for k in keys], dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise ValueError("paired_difference: a difference is not finite")
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size)), len(keys)


def pass_at_k_summary(n, c, ks=(1,)) -> dict[str, float]:
    """``{"pass@k": mean, "pass@k_se": standard error}`` for each k in ``ks`` (k <= n)."""
    out = {}
    for k in ks:
        m, se = mean_and_se(pass_at_k(n, c, k))
        out[f"pass@{k}"], out[f"pass@{k}_se"] = m, se
    return out


@torch.no_grad()
def evaluate(
    model,
    task,
    problems=None,
    *,
    n_samples: int = 8,
    ks=(1, 4, 8),
    temperature: float = 1.0,
    greedy: bool = True,
    seed: int = 0,
    prompts_per_batch: int = 64,
) -> dict[str, float]:
    """Sampled pass@1 / pass@k and greedy accuracy of ``model`` on held-out problems.

    pass@k uses ``n_samples`` completions per problem drawn at ``temperature``
    (1 = the policy itself, as RL samples it); ``greedy_acc`` decodes greedily.
    Sampling draws from ``torch.Generator(device).manual_seed(seed)`` on the
    model's device, so one model evaluated twice gives the same numbers.

    Parameters
    ----------
    model : sims.llm.model.GPT
    task : sims.llm.tasks.Task
    problems : list of Problem, optional
        Defaults to ``task.eval``.
    n_samples : int
        Completions per problem (>= max(ks)).
    ks : sequence of int
        The k of each pass@k.
    temperature : float
        Sampling temperature (> 0).
    greedy : bool
        Whether to add ``greedy_acc``.
    seed : int
        Seed of the sampling generator.
    prompts_per_batch : int
        Prompts per call to ``model.sample`` (rows = prompts * n_samples).

    Returns
    -------
    dict
        ``pass@k`` and ``pass@k_se`` per k; ``score`` and ``score_se`` (mean
        reasoning-gym reward of the samples); ``len`` (mean completion length in
        tokens, EOS included); ``finished`` (fraction ending in EOS); and
        ``greedy_acc``, ``greedy_acc_se`` when ``greedy``.
    """
    problems = task.eval if problems is None else problems
    if n_samples < max(ks):
        raise ValueError(f"n_samples: {n_samples} is fewer than max(ks)={max(ks)}")
    if temperature <= 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    tok, device = task.tokenizer, next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    correct, scores, lengths, finished, greedy_ok = [], [], [], [], []
    for i in range(0, len(problems), prompts_per_batch):
        chunk = problems[i : i + prompts_per_batch]
        prompts = tok.encode_prompts([p.prompt for p in chunk]).to(device)  # (b, Tp)
        roll = model.sample(prompts, n_samples, task.max_new_tokens, temperature, gen)
        texts = tok.decode_batch(roll.tokens)  # b * n_samples
        s = np.array([task.score(t, chunk[j // n_samples]) for j, t in enumerate(texts)]).reshape(len(chunk), n_samples)
        scores.append(s.mean(1))
        correct.append((s == 1.0).sum(1))
        lengths.append(roll.lengths.float().mean().item() * len(chunk))
        finished.append(roll.finished.float().mean().item() * len(chunk))
        if greedy:
            g = model.sample(prompts, 1, task.max_new_tokens, 0.0)
            greedy_ok += [task.is_correct(t, p) for t, p in zip(tok.decode_batch(g.tokens), chunk)]
    c = np.concatenate(correct)
    out = pass_at_k_summary(np.full_like(c, n_samples), c, ks)
    out["score"], out["score_se"] = mean_and_se(np.concatenate(scores))
    out["len"] = sum(lengths) / len(problems)
    out["finished"] = sum(finished) / len(problems)
    if greedy:
        out["greedy_acc"], out["greedy_acc_se"] = mean_and_se(np.array(greedy_ok, dtype=np.float64))
    return out
