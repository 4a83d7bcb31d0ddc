r"""Figure 12: what each off-policy correction converges to, against its threshold and against lag.

The trainers' off-policy corrections (``theory.zoo_corrections``: verl's rollout
correction, TRL's vLLM importance sampling and off-policy sequence mask) are all
named after the greedy policy within a trust region. Top row, on the ``graded``
bandit (``theory.bandits.STANDARD_BANDITS``): each correction family's induced
target (``Objective.induced_target``, population advantages, :math:`\mu` fixed)
as its threshold :math:`C` varies, measured by how far it stays from that nominal
target: its expected reward :math:`E_\pi[r]` (the greedy policy's is the best
reward) and its entropy :math:`H(\pi)` (the greedy policy's is 0). The families,
each one preset of ``theory.losses.rollout_corrected_loss`` with its threshold
overridden:

* truncate: :math:`\min(u, C)` (``seq_tis``, TIS), certified by the KKT solver;
* mask: :math:`u\,\mathbb 1[u \le C]` (``seq_mis``, TRL's sequence mask);
* IcePop window: :math:`u\,\mathbb 1[1/C \le u \le C]` (``icepop``);
* rejection window: :math:`\mathbb 1[1/C \le \mu/\pi \le C]` (``geo_rs``, verl's
  geometric-mean rejection sampling).

On a bandit the token and sequence levels coincide (one-token sequences,
``theory.zoo_corrections``). The masked families' targets are the explicit-Euler
flow's point, never certified: they are drawn as hollow markers, not dropped.
Top right, where the levels differ: truncation (``seq_tis``) on a token MDP
(``sims.token_mdp``, :math:`V = 3`, :math:`T = 3`, a random behaviour policy,
partial-credit reward), its sequence-level target (the bandit target over the
leaves, :math:`u = \prod_t u_t`) against its token-level one (state by state on
:math:`Q_t`), both by the KKT solver: expected reward and entropy over the leaves.

Bottom row: the lagged stochastic iteration of :mod:`sims.bandit` (data from
:math:`\mu_t = \pi_{t-L}`, groups of 16, two Adam steps per batch: the ``full``
preset) for four published corrections at lags 0, 4 and 16, where the policy
stands after a fixed number of steps: its expected reward, the mismatch
:math:`\mathrm{KL}(\mu_t\|\pi_t)` the correction sees, and
:math:`\mathrm{KL}(\pi_T\|\pi_0)`. Each seed is a dot; the bar is the mean with
two standard errors over seeds. Every number comes from the library
(``Objective.induced_target``, ``sims.bandit.simulate``); this module only calls
and plots.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import theory as T
from sims import token_mdp as tm
from sims.bandit import BanditSimConfig, simulate
from theory.induced import solve_kkt
from theory.objectives import make_objective

from . import _style

__all__ = ["FAMILIES", "LAG_OBJECTIVES", "compute_targets", "compute_lag", "compute_token_levels",
           "plot_threshold_sweep", "plot_lag_ends", "plot_token_levels", "make"]

BANDIT = "graded"

#: Correction families of the threshold sweep: label -> (preset, threshold C -> parameter overrides).
FAMILIES = {
    r"truncate $\min(u, C)$": ("seq_tis", lambda c: dict(is_high=c)),
    r"mask $u\,1[u\leq C]$": ("seq_mis", lambda c: dict(is_high=c)),
    r"IcePop $u\,1[1/C\leq u\leq C]$": ("icepop", lambda c: dict(is_low=1.0 / c, is_high=c)),
    r"reject $1[1/C\leq \mu/\pi\leq C]$": ("geo_rs", lambda c: dict(rs_low=1.0 / c, rs_high=c)),
}

#: Published corrections of the lag panels (``theory.zoo_corrections``, published settings).
LAG_OBJECTIVES = ("seq_tis", "icepop", "geo_rs", "grpo_opsm")
LAGS = (0, 4, 16)
#: Outer steps of the lag runs: few enough that the corrections have not all reached the best arm.
LAG_STEPS = 60

_FAMILY_COLORS = ("#d6604d", "#4393c3", "#5aae61", "#8073ac")
_OTHER_COLORS = ("#bf812d", "#35978f", "0.35")


def _lag_colors(objectives, families=None) -> list:
    """One colour per objective: its family's colour in the threshold panels when it is a family's preset."""
    families = FAMILIES if families is None else families
    by_preset = {p: _FAMILY_COLORS[i % len(_FAMILY_COLORS)] for i, (p, _) in enumerate(families.values())}
    others = iter(_OTHER_COLORS * len(objectives))
    return [by_preset[o] if o in by_preset else next(others) for o in objectives]


def compute_targets(thresholds, bandit: str = BANDIT, families=None) -> dict:
    r"""Induced targets of each correction family on one standard bandit, over a sweep of its threshold.

    Parameters
    ----------
    thresholds : array_like, shape (N,)
        Thresholds :math:`C > 1` (the upper bound; windows are :math:`[1/C, C]`).
    bandit : str
        A name of ``theory.STANDARD_BANDITS``.
    families : dict, optional
        Label -> (preset, ``C -> overrides``); default :data:`FAMILIES`.

    Returns
    -------
    dict
        ``thresholds`` (N,), ``families`` (F labels), ``presets`` (F names),
        ``reward`` and ``entropy`` (F, N) of the induced target, ``certified``
        and ``set_valued`` (F, N) bool, ``method`` (F, N) str, and for reference
        ``mu_reward``, ``mu_entropy`` and ``greedy_reward`` (floats).
    """
    families = FAMILIES if families is None else families
    c = np.asarray(thresholds, dtype=float)
    if c.ndim != 1 or c.size == 0 or not np.all(c > 1.0):
        raise ValueError(f"thresholds must be a non-empty 1-d array of values > 1, got {thresholds!r}")
    b = T.STANDARD_BANDITS[bandit]
    shape = (len(families), c.size)
    out = {k: np.zeros(shape) for k in ("reward", "entropy")}
    out.update(certified=np.zeros(shape, bool), set_valued=np.zeros(shape, bool), method=np.empty(shape, object))
    for i, (preset, overrides) in enumerate(families.values()):
        for j, cj in enumerate(c):
            it = make_objective(preset, **overrides(float(cj))).induced_target(b.mu, b.r)
            out["reward"][i, j] = T.expected_reward(it.pi, b.r)
            out["entropy"][i, j] = T.entropy(it.pi)
            out["certified"][i, j] = bool(it.converged)
            out["set_valued"][i, j] = bool(it.set_valued) if it.set_valued is not None else False
            out["method"][i, j] = it.method
    return dict(out, thresholds=c, families=list(families), presets=[p for p, _ in families.values()],
                bandit=bandit, mu_reward=float(T.expected_reward(b.mu, b.r)), mu_entropy=float(T.entropy(b.mu)),
                greedy_reward=float(b.r.max()))


def compute_lag(config: BanditSimConfig, objectives=LAG_OBJECTIVES, lags=LAGS) -> dict:
    r"""Where the lagged stochastic iteration leaves the policy, per correction and lag, seeds as data.

    Parameters
    ----------
    config : sims.bandit.BanditSimConfig
        The run (bandit, steps, seeds, optimizer); ``objective`` and ``lag`` are replaced.
    objectives : sequence of str
        Names of ``theory.objectives.OBJECTIVES``, O of them.
    lags : sequence of int
        The L lags.

    Returns
    -------
    dict
        ``objectives`` (O names), ``lags`` (L,), ``steps`` (int), and at the last
        step, averaged over contexts: ``reward`` (:math:`E_{\pi_T}[r]`),
        ``kl_mu_pi`` (:math:`\mathrm{KL}(\mu_T\|\pi_T)`) and ``kl_init``
        (:math:`\mathrm{KL}(\pi_T\|\pi_0)`), each (O, L, S).
    """
    keys = ("reward", "kl_mu_pi", "kl_init")
    out = {k: np.zeros((len(objectives), len(lags), config.num_seeds)) for k in keys}
    for i, obj in enumerate(objectives):
        for j, lag in enumerate(lags):
            res = simulate(config.replace(objective=obj, lag=int(lag)))
            for k in keys:
                out[k][i, j] = res.metrics[k][-1].mean(-1)  # (S, B) -> (S,)
    return dict(out, objectives=list(objectives), lags=np.asarray(lags), steps=config.steps)


def _kkt_state_target(obj, certified: list):
    """The state target ``(mu_rows, adv_rows) -> pi_rows`` of ``obj`` by the KKT solver; appends its certificates."""
    def target(mu, adv):
        sol = solve_kkt(lambda u, a: obj.weight(u, a), mu, adv, kappa_min=obj.kappa_min)
        certified.append(bool(np.all(sol.converged)))
        return sol.pi
    return target


def compute_token_levels(thresholds, *, preset: str = "seq_tis", V: int = 3, T_len: int = 3, seed: int = 0,
                         concentration: float = 1.0) -> dict:
    r"""Token- against sequence-level induced target of a truncating correction on a token MDP, over its threshold.

    The sequence level applies the bandit target over the :math:`V^T` leaves
    (:math:`u = \prod_t u_t`, ``sims.token_mdp.sequence_level_target``); the
    token level applies it state by state to :math:`Q_t(s, \cdot)`
    (``token_level_target``); both by the KKT solver (``theory.induced.solve_kkt``
    on the objective's weight), with the mean-baseline leaf advantage
    :math:`A = r - E_\mu[r]` of the partial-credit reward.

    Parameters
    ----------
    thresholds : array_like, shape (N,)
        Values of ``is_high`` (:math:`C > 1`).
    preset : str
        A KKT-certified truncating correction of ``theory.zoo_corrections``.
    V, T_len : int
        Vocabulary and depth of the tree (``sims.token_mdp.TokenTree``).
    seed, concentration : int, float
        The behaviour policy ``sims.token_mdp.random_policy(tree, seed, concentration)``.

    Returns
    -------
    dict
        ``thresholds`` (N,); ``reward_seq``, ``reward_tok``, ``entropy_seq``,
        ``entropy_tok`` (N,) over the leaves (``sims.token_mdp.TargetGap``);
        ``certified`` (N,) bool (every solver call of that threshold converged);
        ``reward_mu``, ``entropy_mu`` (floats) and ``preset``, ``V``, ``T``.
    """
    c = np.asarray(thresholds, dtype=float)
    tree = tm.TokenTree(V=V, T=T_len)
    cond = tm.random_policy(tree, seed, concentration=concentration)
    r = tm.partial_credit_reward(tree)
    adv = r - tm.sequence_probs(cond) @ r
    keys = ("reward_seq", "reward_tok", "entropy_seq", "entropy_tok")
    out = {k: np.zeros(c.size) for k in keys}
    out["certified"] = np.zeros(c.size, bool)
    for j, cj in enumerate(c):
        flags = []
        gap = tm.target_gap(cond, r, adv, tree, _kkt_state_target(make_objective(preset, is_high=float(cj)), flags))
        for k in keys:
            out[k][j] = getattr(gap, k)
        out["certified"][j] = all(flags)
    return dict(out, thresholds=c, reward_mu=gap.reward_mu, entropy_mu=gap.entropy_mu, preset=preset, V=V, T=T_len)


def _marked_line(ax, c, y, ok, color, *, ls="-", label=None, ms=4.0):
    """A line through ``(c, y)``: filled markers where ``ok`` (certified), hollow ones elsewhere."""
    ax.plot(c, y, ls, color=color, lw=1.2, label=label)
    ax.plot(c[ok], y[ok], "o", color=color, ms=ms)
    ax.plot(c[~ok], y[~ok], "o", mfc="white", mec=color, mew=1.0, ms=ms)


def _threshold_axis(ax, label: str):
    """Log x axis of the threshold C from 1.1 to 10, labelled ``label``."""
    ax.set_xscale("log")
    ax.set_xticks([1.1, 2, 5, 10], ["1.1", "2", "5", "10"])
    ax.set_xlabel(label)


_doc = _style.shared_doc(ylabel="""ylabel : str, optional
    Label of the y axis.""", legend="""legend : bool
    Whether to add a legend of the series.""")


@_doc
def plot_threshold_sweep(data: dict, key: str, *, ylabel: str | None = None, references=(), colors=None,
                         legend: bool = True, ax=None):
    """Draw one measure of each family's induced target against the threshold C (log axis).

    Parameters
    ----------
    data : dict
        The output of :func:`compute_targets`.
    key : str
        ``reward`` or ``entropy``: the (F, N) array of ``data`` to draw.
    {ylabel}
    references : sequence of (value, label, linestyle)
        Horizontal reference lines (the behaviour policy, the nominal target).
    colors : sequence, optional
        One colour per family.
    {legend}
    {ax}
    """
    ax = _style.panel_axes(ax)
    colors = _FAMILY_COLORS if colors is None else colors
    c = data["thresholds"]
    for i, label in enumerate(data["families"]):
        _marked_line(ax, c, data[key][i], data["certified"][i], colors[i % len(colors)], label=label)
    for value, label, ls in references:
        ax.axhline(value, color="0.3", lw=0.9, ls=ls, label=label)
    _threshold_axis(ax, r"threshold $C$ ($u = \pi/\mu$)")
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if legend:
        ax.legend(fontsize=6.5, frameon=False)
    return ax


@_doc
def plot_lag_ends(data: dict, key: str, *, ylabel: str | None = None, colors=None, logy: bool = False,
                  legend: bool = True, ax=None):
    """Draw one end-of-training measure against lag: a dot per seed, and the mean with 2 s.e. over seeds.

    Parameters
    ----------
    data : dict
        The output of :func:`compute_lag`.
    key : str
        ``reward``, ``kl_mu_pi`` or ``kl_init``: the (O, L, S) array of ``data``.
    {ylabel}
    colors : sequence, optional
        One colour per objective; by default a family's colour of :data:`FAMILIES` for its preset.
    logy : bool
        Symlog y axis (linear below 1e-3, from 0), for KLs spanning decades.
    {legend}
    {ax}
    """
    ax = _style.panel_axes(ax)
    colors = _lag_colors(data["objectives"]) if colors is None else colors
    lags = np.asarray(data["lags"], dtype=float)
    n = len(data["objectives"])
    pos = np.arange(lags.size, dtype=float)
    for i, name in enumerate(data["objectives"]):
        v = data[key][i]  # (L, S)
        x = pos + 0.18 * (i - (n - 1) / 2)
        col = colors[i % len(colors)]
        s = v.shape[-1]
        jitter = np.linspace(-0.05, 0.05, s) if s > 1 else np.zeros(1)
        ax.scatter((x[:, None] + jitter).ravel(), v.ravel(), s=4, color=col, alpha=0.35, lw=0)
        m, se = v.mean(-1), v.std(-1) / np.sqrt(s)
        ax.errorbar(x, m, yerr=2 * se, fmt="o-", color=col, ms=3.5, lw=1.0, capsize=2, label=name)
    ax.set_xticks(pos, [str(int(x)) for x in lags])
    ax.set_xlabel(r"lag $L$ ($\mu_t = \pi_{t-L}$)")
    if logy:
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_ylim(bottom=0.0)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if legend:
        ax.legend(fontsize=6.5, frameon=False)
    return ax


@_style.panel_doc
def plot_token_levels(data: dict, *, color=None, ax=None):
    """Draw the expected reward and entropy of the sequence- and token-level targets against the threshold C.

    Parameters
    ----------
    data : dict
        The output of :func:`compute_token_levels`. Solid: sequence level;
        dashed: token level; hollow markers where a solver call was not certified.
    color : str, optional
        Colour of the reward lines (entropy in grey); by default the first family's.
    {ax}
    """
    ax = _style.panel_axes(ax)
    c, ok = data["thresholds"], data["certified"]
    for what, col in (("reward", _FAMILY_COLORS[0] if color is None else color), ("entropy", "0.45")):
        for level, ls, name in (("seq", "-", "sequence"), ("tok", "--", "token")):
            unit = "$E[r]$" if what == "reward" else "$H$ [nats]"
            _marked_line(ax, c, data[f"{what}_{level}"], ok, col, ls=ls, label=f"{name}: {unit}", ms=3.5)
    ax.axhline(data["reward_mu"], color="0.3", lw=0.9, ls=":")
    _threshold_axis(ax, r"threshold $C$ (on $u_{\rm seq}$ or $u_t$)")
    ax.set_ylabel("reward, entropy of the target")
    ax.legend(fontsize=6.5, frameon=False, loc="upper right")
    return ax


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    thresholds = np.geomspace(1.1, 10.0, 2 if smoke else 13)
    targets = compute_targets(thresholds)
    base = dict(track_target=False, bandit=BANDIT)
    cfg = (BanditSimConfig.smoke(steps=20, **base) if smoke
           else BanditSimConfig.full(steps=LAG_STEPS, **base))
    lag = compute_lag(cfg)
    tokens = compute_token_levels(thresholds)
    fig, axes = _style.subplots(2, 3, figsize=(7.2, 5.6))
    ref_r = ((targets["greedy_reward"], "greedy (nominal)", "--"), (targets["mu_reward"], r"behaviour $\mu$", ":"))
    ref_h = ((0.0, "greedy (nominal)", "--"), (targets["mu_entropy"], r"behaviour $\mu$", ":"))
    plot_threshold_sweep(targets, "reward", ylabel=r"$E_{\pi^*}[r]$ of the induced target", references=ref_r,
                         legend=False, ax=axes[0, 0])
    plot_threshold_sweep(targets, "entropy", ylabel=r"$H(\pi^*)$ [nats]", references=ref_h, legend=False,
                         ax=axes[0, 1])
    plot_token_levels(tokens, ax=axes[0, 2])
    axes[0, 2].set_ylim(0.0, 1.15 * max(np.max(tokens["entropy_seq"]), np.max(tokens["entropy_tok"]), 1.0))
    panels = (("reward", r"$E_{\pi_T}[r]$", False), ("kl_mu_pi", r"KL$(\mu_T\|\pi_T)$ [nats]", True),
              ("kl_init", r"KL$(\pi_T\|\pi_0)$ [nats]", False))
    for ax, (key, label, logy) in zip(axes[1], panels):
        plot_lag_ends(lag, key, ylabel=label, logy=logy, legend=key == "reward", ax=ax)
    titles = (f"(a) bandit '{BANDIT}'", f"(b) bandit '{BANDIT}'",
              f"(c) {tokens['preset']}, token MDP", "(d)", "(e)", "(f)")
    for ax, title in zip(axes.flat, titles):
        ax.set_title(title, loc="left", fontsize=8)
    _target_legend(fig, axes[0, 0])
    fig.suptitle(f"Off-policy corrections. Top: induced target against the threshold $C$.\n"
                 f"Bottom: where training ends after {lag['steps']} steps against lag (dots: {cfg.num_seeds} seeds; "
                 "bars: mean, 2 s.e.)", fontsize=8.5)
    return _style.save(fig, out, "fig12_corrections", overwrite=overwrite)


def _target_legend(fig, source):
    """The legend of the threshold panels (families, markers, references), below the figure."""
    handles, labels = source.get_legend_handles_labels()
    handles += [plt.Line2D([], [], marker="o", color="0.3", ls="none", ms=4),
                plt.Line2D([], [], marker="o", mfc="white", mec="0.3", ls="none", ms=4)]
    labels += ["certified target (KKT)", "not certified (Euler flow's point)"]
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=7, frameon=False,
               title="(a, b): token = sequence level on a bandit", title_fontsize=7)
