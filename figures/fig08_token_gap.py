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

BETA = 1.0
MAPS = (
    ("regression (Lambert)", tm.lambert_state_target),
    ("REINFORCE + k1/k3 (linear)", tm.linear_state_target),
    ("AWR / TPO (Gibbs)", tm.gibbs_state_target),
)


def compute(smoke: bool, seed: int = 0) -> dict:
    """Gap measures over (map, V, T); returns arrays with those axes."""
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
    out.update(vocab=np.array(vocab), depth=np.array(depths))
    return out


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    _style.apply()
    res = compute(smoke)
    vocab, depth = res["vocab"], res["depth"]
    colors = plt.cm.plasma(np.linspace(0.1, 0.8, len(vocab)))
    fig, axes = plt.subplots(2, len(MAPS), figsize=(4.2 * len(MAPS), 6.4), sharex=True, squeeze=False)
    for i, (label, _) in enumerate(MAPS):
        ax = axes[0, i]
        for j, V in enumerate(vocab):
            ax.plot(depth, res["kl_tok_seq"][i, j], "o-", color=colors[j], label=f"V = {V}")
        ax.set_title(label)
        ax.set_ylabel(r"KL(token-level $\|$ sequence-level) [nats]" if i == 0 else "")
        ax = axes[1, i]
        for j, V in enumerate(vocab):
            ax.plot(depth, res["reward_seq"][i, j], "o-", color=colors[j])
            ax.plot(depth, res["reward_tok"][i, j], "s--", color=colors[j], mfc="white")
        ax.set_xlabel("depth T (tokens)")
        ax.set_ylabel(r"$E[r]$ of the target" if i == 0 else "")
    axes[0, 0].legend(frameon=False)
    axes[1, 0].plot([], [], "ko-", label="sequence level")
    axes[1, 0].plot([], [], "ks--", mfc="white", label="token level")
    axes[1, 0].legend(frameon=False)
    fig.suptitle(rf"Token-level against sequence-level targets (partial-credit reward, mean baseline, $\beta$ = {BETA})"
                 "\nBoth targets are global minimizers; gradient flow from $\\mu$ can stop at another local minimum")
    return _style.save(fig, out, "fig08_token_gap", overwrite=overwrite)
