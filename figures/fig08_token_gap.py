"""Figure 8: the gap between token-level and sequence-level targets on the toy token MDP.

A complete prefix tree of depth T over V tokens, partial-credit reward (the
fraction of positions that match one correct sequence), behaviour policy with
Dirichlet(1) conditionals (seeded), advantage = reward minus its mean under
mu. For three per-state target maps (``sims.token_mdp``): the regression's
Lambert tilt, the linear tilt of REINFORCE + KL (k1/k3) and the Gibbs tilt,
the sequence-level target (the bandit target over the V**T leaves) against
the token-level one (the same map applied state by state to the conditional
advantage Q(prefix, token)); KL between them and their expected rewards,
against depth T for each V. Exact dynamic programming, no sampling.

Every target drawn is a global minimizer: the sequence-level one over the
leaves, the token-level one state by state (``theory.lambert_target`` returns
the global minimizer of the regression loss). In the negative regime (about
half of the token level's states with a mean baseline) that loss can have
other local minima, and gradient flow from mu can stop at one of them; the
figure does not show where the flow stops.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from sims import token_mdp as tm

from . import _style

__all__ = ["compute", "plot_token_kl", "plot_token_reward", "make"]

BETA = 1.0
MAPS = (
    ("regression (Lambert)", tm.lambert_state_target),
    ("REINFORCE + k1/k3 (linear)", tm.linear_state_target),
    ("AWR / TPO (Gibbs)", tm.gibbs_state_target),
)


def compute(smoke: bool, seed: int = 0) -> dict:
    """Gap measures over (map, V, T): arrays with those axes, and their coordinates ``map``, ``vocab``, ``depth``.

    ``kl_tok_seq`` and ``kl_seq_tok`` (nats) are the KL divergences between the
    token-level and the sequence-level target, ``reward_tok``, ``reward_seq``
    and ``reward_mu`` the expected rewards of the two targets and of mu.
    """
    vocab = (2, 3) if smoke else (2, 3, 4)
    depths = tuple(range(1, 5 if smoke else 7))
    out = {k: np.full((len(MAPS), len(vocab), len(depths)), np.nan)
           for k in ("kl_seq_tok", "kl_tok_seq", "reward_seq", "reward_tok", "reward_mu")}
    for j, V in enumerate(vocab):
        for k, T in enumerate(depths):
            tree = tm.TokenTree(V, T)
            cond_mu = tm.random_policy(tree, seed)
            r = tm.partial_credit_reward(tree)
            p_mu = tm.sequence_probs(cond_mu)
            adv = r - (p_mu * r).sum()
            for i, (_, make_map) in enumerate(MAPS):
                gap = tm.target_gap(cond_mu, r, adv, tree, make_map(BETA))
                for key in out:
                    out[key][i, j, k] = getattr(gap, key)
    out.update(map=[label for label, _ in MAPS], vocab=np.array(vocab), depth=np.array(depths))
    return out


#: the parameters the panels share, filled into their docstrings (``_style.shared_doc``); ``params`` opens
#: the Parameters section with ``res``, ``colors`` holds ``colors``, ``ylabel`` and ``xlabel``
_doc = _style.shared_doc(
    params="Parameters\n----------\nres : dict\n    The output of :func:`compute`: arrays over (map, V, T) and the\n"
           "    coordinates ``map`` (names), ``vocab`` (nV,) and ``depth`` (nT,).",
    colors="colors : sequence, optional\n    One colour per vocabulary size; plasma by default.\n"
           "ylabel, xlabel : bool\n    Whether to label the axes (off inside a grid that labels only its outer edge).",
)


def _vocab_colors(n: int):
    """One plasma colour per vocabulary size, (n, 4)."""
    return plt.cm.plasma(np.linspace(0.1, 0.8, n))


def _start(res, target_map, colors, ax):
    """``(ax, i, colors)``: the panel's axes, the index of ``target_map`` in ``res["map"]`` and its colours."""
    colors = _vocab_colors(len(res["vocab"])) if colors is None else colors
    return _style.panel_axes(ax), res["map"].index(target_map), colors


def _label(ax, text: str, ylabel: bool, xlabel: bool):
    """Label the y axis ``text`` (or nothing) and, with ``xlabel``, the x axis with the depth."""
    ax.set_ylabel(text if ylabel else "")
    if xlabel:
        ax.set_xlabel("depth T (tokens)")


@_doc
def plot_token_kl(res: dict, target_map: str, *, colors=None, ylabel: bool = True, xlabel: bool = True,
                  legend: bool = True, ax=None):
    """Draw KL(token-level target || sequence-level target) against depth T, one line per vocabulary size V.

    {params}
    target_map : str
        Which per-state target map to draw, one of ``res["map"]``; also the title.
    {colors}
    legend : bool
        Whether to draw the legend of the vocabulary sizes.
    {ax}
    """
    ax, i, colors = _start(res, target_map, colors, ax)
    for j, V in enumerate(res["vocab"]):
        ax.plot(res["depth"], res["kl_tok_seq"][i, j], "o-", color=colors[j], label=f"V = {V}")
    ax.set_title(target_map)
    _label(ax, r"KL(token-level $\|$ sequence-level) [nats]", ylabel, xlabel)
    if legend:
        ax.legend(frameon=False)
    return ax


@_doc
def plot_token_reward(res: dict, target_map: str, *, colors=None, ylabel: bool = True, xlabel: bool = True,
                      legend: bool = True, ax=None):
    """Draw the expected reward of the sequence-level (solid) and token-level (dashed) targets against depth T.

    {params}
    target_map : str
        Which per-state target map to draw, one of ``res["map"]``.
    {colors}
    legend : bool
        Whether to draw the legend of the two line styles.
    {ax}
    """
    ax, i, colors = _start(res, target_map, colors, ax)
    for j, V in enumerate(res["vocab"]):
        ax.plot(res["depth"], res["reward_seq"][i, j], "o-", color=colors[j])
        ax.plot(res["depth"], res["reward_tok"][i, j], "s--", color=colors[j], mfc="white")
    _label(ax, r"$E[r]$ of the target", ylabel, xlabel)
    if legend:
        ax.plot([], [], "ko-", label="sequence level")
        ax.plot([], [], "ks--", mfc="white", label="token level")
        ax.legend(frameon=False)
    return ax


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    res = compute(smoke)
    colors = _vocab_colors(len(res["vocab"]))
    fig, axes = _style.subplots(2, len(MAPS), figsize=(4.2 * len(MAPS), 6.4), sharex=True, squeeze=False)
    for i, name in enumerate(res["map"]):
        plot_token_kl(res, name, colors=colors, ylabel=i == 0, xlabel=False, legend=i == 0, ax=axes[0, i])
        plot_token_reward(res, name, colors=colors, ylabel=i == 0, legend=i == 0, ax=axes[1, i])
    fig.suptitle(rf"Token-level against sequence-level targets (partial-credit reward, mean baseline, $\beta$ = {BETA})"
                 "\nBoth targets are global minimizers; gradient flow from $\\mu$ can stop at another local minimum")
    return _style.save(fig, out, "fig08_token_gap", overwrite=overwrite)
