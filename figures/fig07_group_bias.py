r"""Figure 7: the finite-group soft-value bias against the group size G, and the pessimism it implies.

The soft value estimated from a group of G samples,
:math:`\hat V_G = \beta\log\frac1G\sum_{i=1}^G e^{r_i/\beta}`
(``theory.values.group_soft_value``), is biased low (Jensen):
:math:`E[\hat V_G] \le V^*_\beta`, with :math:`E[\hat V_1] = E_\mu[r]` (the mean
baseline) and :math:`E[\hat V_G]\to V^*_\beta` as :math:`G\to\infty`.

Left: the bias in units of the temperature,
:math:`(V^*_\beta - E[\hat V_G])/\beta`, for several :math:`\beta`: exact
(lines; by enumerating the multinomial outcomes of the group over the distinct
reward values, while there are at most ``exact_max_outcomes`` of them),
Monte Carlo (markers with two standard errors; a seeded
``numpy.random.Generator``; hollow where the estimate is within two standard
errors of zero or negative, which a log axis cannot show) and the large-G
asymptote :math:`\mathrm{Var}_\mu(e^{r/\beta})/(2G\,E_\mu[e^{r/\beta}]^2)`
(dotted).

Middle and right: the induced target of the regression objective at the same
:math:`\beta` (``theory.lambert.lambert_target``), whose population version
with the exact soft value is the Gibbs target (:math:`\eta = 0`). Its loss is
quadratic in the baseline, so its target depends on a random baseline only
through the baseline's conditional mean given the sample: dashed, a baseline
independent of the sample (:math:`A = r - E[\hat V_G]`; e.g. a separate
group); solid, the sample's own group, as OAPL and OPMD-LME do
(:math:`A_y = r_y - E[\hat V_G \mid y\in\text{group}]`, exact too; from G = 2,
since at G = 1 the advantage is zero). Middle: :math:`\eta`; right: the
pessimism ratio :math:`\beta_{\mathrm{eff}}/\beta` (equal KL). Both use the
exact expectations where available and the Monte Carlo ones beyond.
Rows: the ``graded`` and ``sparse`` standard bandits.

With an independent baseline, :math:`\eta > 0` (positive regime) and
:math:`\beta_{\mathrm{eff}}/\beta > 1`, both falling to the boundary as G
grows. With the sample's own group, :math:`\eta < 0` although the target is
*more* conservative than the Gibbs target (:math:`\beta_{\mathrm{eff}}/\beta > 1`):
a sample raises its own group's soft value, which compresses the advantages
(:math:`A_y` is no longer :math:`r_y` minus a constant), and the sign of
:math:`\eta`, which reads the regime for a constant baseline, does not measure
that pessimism.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import gammaln, logsumexp

import theory as T

from . import _style


__all__ = ["Config", "SMOKE", "FULL", "exact_group_soft_value", "compute", "plot_group_bias", "plot_group_eta",
           "plot_group_pessimism", "make"]


@dataclass(frozen=True)
class Config:
    """What fig07 computes."""

    bandits: tuple = ("graded", "sparse")  #: standard bandits, one row each
    betas: tuple = (0.05, 0.1, 0.3, 1.0)  #: temperatures of the soft value (and of the regression)
    groups: tuple = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)  #: group sizes G
    draws: int = 20000  #: Monte Carlo groups per (bandit, G)
    exact_max_outcomes: int = 400_000  #: enumerate the multinomial outcomes only up to this many
    seed: int = 0  #: seed of the numpy Generator


SMOKE = Config(groups=(1, 2, 4, 8, 16, 32), draws=2000, exact_max_outcomes=20_000)
FULL = Config()


def _distinct(mu, r):
    """Distinct reward values ``vals`` (m,), their probabilities (m,), and each arm's index into them (K,)."""
    vals, inv = np.unique(r[mu > 0], return_inverse=True)
    p = np.bincount(inv, weights=mu[mu > 0], minlength=vals.size)
    arm_idx = np.searchsorted(vals, r)
    return vals, p / p.sum(), arm_idx


def _compositions(n: int, m: int) -> np.ndarray:
    """Every vector of m non-negative integers summing to n, shape (C(n+m-1, m-1), m) (stars and bars)."""
    if m == 1:
        return np.array([[n]])
    bars = np.array(list(itertools.combinations(range(n + m - 1), m - 1)), dtype=np.int64).reshape(-1, m - 1)
    edges = np.concatenate([np.full((bars.shape[0], 1), -1), bars, np.full((bars.shape[0], 1), n + m - 1)], 1)
    return np.diff(edges, axis=1) - 1


def exact_group_soft_value(vals, p, G: int, beta: float) -> tuple[float, np.ndarray]:
    r"""Exact :math:`E[\hat V_G]` and :math:`E[\hat V_G \mid \text{one member has reward } v]` per value ``v`` (m,).

    Enumerates the counts of the other G - 1 members over the m distinct
    values (multinomial), so costs :math:`\binom{G+m-2}{m-1}` outcomes.
    :math:`E[\hat V_G] = \sum_v p_v E[\hat V_G\mid v]` (any member is distributed as :math:`\mu`).
    """
    m = vals.size
    c = _compositions(G - 1, m)  # (N, m)
    with np.errstate(divide="ignore"):
        logp = np.log(p)
        logprob = gammaln(G) - gammaln(c + 1).sum(-1) + np.where(c > 0, c * logp, 0.0).sum(-1)  # (N,)
    top = vals.max()
    z = (vals - top) / beta  # (m,)
    cond = np.empty(m)
    for v in range(m):
        cc = c + np.eye(m, dtype=np.int64)[v]
        with np.errstate(divide="ignore"):
            lse = logsumexp(np.log(cc) + z, axis=-1)  # (N,)
        vhat = top + beta * (lse - math.log(G))
        cond[v] = np.exp(logprob) @ vhat
    return float(p @ cond), cond


def _n_outcomes(G: int, m: int) -> int:
    return math.comb(G - 1 + m - 1, m - 1)


def compute(cfg: Config) -> dict:
    """Tidy arrays per (bandit, beta): bias (exact, MC, asymptote), eta and beta_eff/beta (independent, in-group)."""
    rng = np.random.default_rng(cfg.seed)
    Gs = np.array(cfg.groups)
    out = {}
    for bname in cfg.bandits:
        b = T.STANDARD_BANDITS[bname]
        vals, p, arm_idx = _distinct(b.mu, b.r)
        m = vals.size
        feasible = np.array([_n_outcomes(G, m) <= cfg.exact_max_outcomes for G in Gs])
        nb = len(cfg.betas)
        ex_mean = np.full((nb, Gs.size), np.nan)
        ex_cond = np.full((nb, Gs.size, m), np.nan)
        mc_mean = np.empty((nb, Gs.size))
        mc_se = np.empty((nb, Gs.size))
        mc_cond = np.empty((nb, Gs.size, m))
        for j, G in enumerate(Gs):
            idx = rng.choice(m, size=(cfg.draws, G), p=p)  # (S, G) indices of the members' reward values
            rewards = vals[idx]
            for i, beta in enumerate(cfg.betas):
                vh = T.group_soft_value(rewards, beta)  # (S,)
                mc_mean[i, j] = vh.mean()
                mc_se[i, j] = vh.std(ddof=1) / math.sqrt(cfg.draws)
                for v in range(m):  # one member fixed at value v, the other G - 1 are the draw's first G - 1
                    grp = np.concatenate([np.full((cfg.draws, 1), vals[v]), rewards[:, : G - 1]], 1)
                    mc_cond[i, j, v] = T.group_soft_value(grp, beta).mean()
                if feasible[j]:
                    ex_mean[i, j], ex_cond[i, j] = exact_group_soft_value(vals, p, int(G), beta)
        for i, beta in enumerate(cfg.betas):
            vstar = float(T.soft_value(b.mu, b.r, beta))
            x = np.exp((vals - vals.max()) / beta)
            asym = beta * (p @ x**2 - (p @ x) ** 2) / (2 * Gs * (p @ x) ** 2)
            best_mean = np.where(feasible, ex_mean[i], mc_mean[i])
            best_cond = np.where(feasible[:, None], ex_cond[i], mc_cond[i])
            adv_ind = b.r[None, :] - best_mean[:, None]  # (nG, K)
            adv_grp = b.r[None, :] - best_cond[:, arm_idx]
            row = {"vstar": vstar, "G": Gs, "exact": feasible, "bias_exact": (vstar - ex_mean[i]) / beta,
                   "bias_mc": (vstar - mc_mean[i]) / beta, "bias_mc_se": mc_se[i] / beta, "bias_asym": asym / beta}
            for tag, adv in (("indep", adv_ind), ("group", adv_grp)):
                pi, eta = T.lambert_target(b.mu, adv, beta)
                ratio = T.beta_eff_kl(b.mu, b.r, T.kl(pi, b.mu)) / beta
                if tag == "group":
                    eta, ratio = np.where(Gs >= 2, eta, np.nan), np.where(Gs >= 2, ratio, np.nan)
                row[f"eta_{tag}"], row[f"ratio_{tag}"] = eta, ratio
            out[(bname, beta)] = row
    return out


#: the parameters and Returns section of every panel, filled into their docstrings (``_style.shared_doc``)
_doc = _style.shared_doc(params="\n".join([
    "Parameters", "----------",
    "res : dict\n    The output of :func:`compute`, keyed by (bandit, beta); each entry\n"
    "    holds arrays over the group sizes ``G`` (nG,).",
    "bandit : str\n    The bandit whose curves are drawn, one colour per temperature.",
    "colors : dict, optional\n    Colour of each beta; viridis over the temperatures by default.",
    _style.DOCS["ax"]]))


def _beta_colors(betas) -> dict:
    """One viridis colour per temperature, dark (smallest beta) to green."""
    return dict(zip(betas, plt.cm.viridis(np.linspace(0.05, 0.85, len(betas)))))


def _curves(res, bandit, colors):
    """(beta, its entry of ``res``, its colour) for every temperature of ``bandit``, in the order computed."""
    betas = [beta for b, beta in res if b == bandit]
    if colors is None:
        colors = _beta_colors(betas)
    return [(beta, res[(bandit, beta)], colors[beta]) for beta in betas]


def _plain_ticks(axis, ticks):
    """Ticks of a log ``axis`` (``ax.xaxis`` or ``ax.yaxis``) at ``ticks`` only, labelled as plain numbers."""
    axis.set_ticks(ticks, labels=None)
    axis.set_major_formatter(plt.ScalarFormatter())
    axis.set_minor_formatter(plt.NullFormatter())


def _group_axis(ax, G):
    """Group sizes on a log axis with plain numbers at a few powers of 2."""
    _plain_ticks(ax.xaxis, [1, 4, 16, 64, 256] if max(G) > 64 else [1, 2, 4, 8, 16, 32])


def _baselines(ax, res, bandit, colors, key):
    """Draw ``key`` (``eta`` or ``ratio``) against G per beta for both baselines; return the group sizes.

    Dashed: the baseline independent of the sample; solid with dots: the
    sample's own group (from G = 2).
    """
    for _, d, c in _curves(res, bandit, colors):
        G = d["G"]
        g2 = G >= 2
        ax.plot(G, d[f"{key}_indep"], "--", color=c, lw=1.4)
        ax.plot(G[g2], d[f"{key}_group"][g2], "-", color=c, lw=1.8, marker=".", ms=4)
    return G


@_doc
def plot_group_bias(res: dict, bandit: str, *, colors=None, ax=None):
    r"""Draw the soft-value bias :math:`(V^*_\beta - E[\hat V_G])/\beta` against G, one colour per beta.

    Lines: exact (where enumerated); markers: Monte Carlo with 2 s.e. (hollow
    where within 2 s.e. of zero); dotted: the large-G asymptote. Log-log.

    {params}
    """
    ax = _style.panel_axes(ax)
    for _, d, c in _curves(res, bandit, colors):
        G, ex = d["G"], d["exact"]
        ax.plot(G[ex], d["bias_exact"][ex], "-", color=c, lw=1.8)
        ax.plot(G, d["bias_asym"], ":", color=c, lw=1.2)
        mc, se = d["bias_mc"], d["bias_mc_se"]
        sig = mc > 2 * se
        ax.errorbar(G[sig], mc[sig], yerr=2 * se[sig], fmt="o", color=c, ms=3.5, capsize=2, lw=0.8)
        weak = ~sig & (mc > 0)
        ax.plot(G[weak], mc[weak], "o", mfc="none", color=c, ms=3.5)
    ax.set(xscale="log", yscale="log", xlabel="group size $G$",
           ylabel=r"$(V^*_\beta - E[\hat V_G])/\beta$", title=f"soft-value bias, '{bandit}' bandit")
    _group_axis(ax, G)
    return ax


@_doc
def plot_group_eta(res: dict, bandit: str, *, colors=None, ax=None):
    r"""Draw :math:`\eta` of the regression's target against G, one colour per beta (symlog).

    Dashed: a baseline independent of the sample; solid with dots: the
    sample's own group (from G = 2).

    {params}
    """
    ax = _style.panel_axes(ax)
    G = _baselines(ax, res, bandit, colors, "eta")
    ax.axhline(0.0, color="0.4", lw=0.8)
    ax.set_yscale("symlog", linthresh=1e-2, linscale=0.6)
    ax.set(xscale="log", xlabel="group size $G$", ylabel=r"$\eta$ of the target (symlog)",
           title=rf"implied $\eta$ (regression at the same $\beta$), '{bandit}'")
    _group_axis(ax, G)
    return ax


@_doc
def plot_group_pessimism(res: dict, bandit: str, *, colors=None, ax=None):
    r"""Draw the pessimism ratio :math:`\beta_{\rm eff}/\beta` (equal KL) of the regression's target against G.

    Dashed: a baseline independent of the sample; solid with dots: the
    sample's own group (from G = 2); dotted: 1, the Gibbs target. Log-log.

    {params}
    """
    ax = _style.panel_axes(ax)
    G = _baselines(ax, res, bandit, colors, "ratio")
    ax.axhline(1.0, color="0.4", lw=0.8, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="group size $G$", ylabel=r"$\beta_{\rm eff}/\beta$ (equal KL)",
           title=f"implied pessimism, '{bandit}'")
    _plain_ticks(ax.yaxis, [1, 1.5, 2, 3, 4, 5])
    _group_axis(ax, G)
    return ax


def _legend(fig, colors, cfg):
    handles = [plt.Line2D([], [], color=colors[b], lw=2) for b in cfg.betas]
    labels = [rf"$\beta={b:g}$" for b in cfg.betas]
    handles += [
        plt.Line2D([], [], color="0.3", lw=1.8),
        plt.Line2D([], [], color="0.3", ls="none", marker="o", ms=4),
        plt.Line2D([], [], color="0.3", ls=":", lw=1.2),
        plt.Line2D([], [], color="0.3", ls="--", lw=1.4),
        plt.Line2D([], [], color="0.3", lw=1.8, marker=".", ms=4),
    ]
    labels += ["left: exact (enumeration)", f"left: Monte Carlo, {cfg.draws} groups, ±2 s.e. (hollow: < 2 s.e.)",
               "left: large-G asymptote", "middle/right: baseline independent of the sample",
               "middle/right: the sample's own group (OAPL, OPMD-LME)"]
    fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False, fontsize=7.5)


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    cfg = SMOKE if smoke else FULL
    res = compute(cfg)
    colors = _beta_colors(cfg.betas)
    fig, axes = _style.subplots(len(cfg.bandits), 3, figsize=(12.5, 3.5 * len(cfg.bandits) + 0.6), squeeze=False)
    for (ax, bx, cx), bname in zip(axes, cfg.bandits):
        plot_group_bias(res, bname, colors=colors, ax=ax)
        plot_group_eta(res, bname, colors=colors, ax=bx)
        plot_group_pessimism(res, bname, colors=colors, ax=cx)
    _legend(fig, colors, cfg)
    return _style.save(fig, out, "fig07_group_bias", overwrite=overwrite)
