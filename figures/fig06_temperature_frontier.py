r"""Figure 6: decoupled temperatures and the beta-shift on the reward–KL and reward–entropy planes.

On the ``graded`` standard bandit, every curve is a family of induced targets
of the regression objective :math:`\sum_y\mu_y(\beta\log(\pi_y/\mu_y) - A_y)^2`
(``theory.lambert.lambert_target``):

* **Gibbs** (black): the nominal targets :math:`\pi_\beta\propto\mu e^{r/\beta}`
  over :math:`\beta\in[10^{-3}, 10^{2}]`. On the left panel it is the exact
  frontier: :math:`\pi_\beta` maximizes :math:`E_\pi[r]` at its
  :math:`\mathrm{KL}(\pi\|\mu)`, so every other target lies on or below it.
* **decoupled soft value** (orange; A*-PO, OAPL): :math:`V = V^*_{\beta_1}` with
  the log-ratio at :math:`\beta_2`, over :math:`\beta_1\in[\beta_2, 30]`, for
  :math:`\beta_2 = 10^{-3}` (solid) and :math:`\beta_2 = 0.1` (dashed); at
  :math:`\beta_1 = \beta_2` it is the Gibbs target at :math:`\beta_2`, and
  larger :math:`\beta_1` moves it down into the positive (pessimistic) regime.
  Markers: the published settings, A*-PO :math:`\beta_1 = 0.5` and OAPL
  :math:`\beta_1 = 1`, both at :math:`\beta_2 = 10^{-3}`, with arrows from
  the nominal target they are named after (Gibbs at :math:`\beta_2`).
* **mean baseline** (green): :math:`V = E_\mu[r]` over :math:`\beta`; the
  marker is :math:`\beta = 10^{-3}`, close to its :math:`\beta\to0` limit, the
  linear tilt :math:`\mu(A)_+` (normalized).
* **beta-shifted mean** (purple): :math:`V = E_\mu[r] - \delta\beta` over
  :math:`\delta\in[0, 4]` at three fixed :math:`\beta`; :math:`\delta = 0` is
  the mean baseline (circle), squares mark :math:`\delta = 1`.

Right: :math:`\eta` of the beta-shifted targets against :math:`\delta`, on
or above the line :math:`\eta = \delta` (:math:`\eta = \delta + \mathrm{KL}(\mu\|\pi)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import theory as T

from . import _style

BANDIT = "graded"
GIBBS_COLOR, DEC_COLOR, MEAN_COLOR = "k", "#e08214", "#1b7837"
SHIFT_COLORS = {0.03: "#c2a5cf", 0.1: "#9970ab", 0.3: "#542788"}
XLABELS = {"kl": r"$\mathrm{KL}(\pi\|\mu)$ [nats]", "H": r"entropy $H(\pi)$ [nats]"}
TITLES = {"kl": "reward against KL to the behaviour policy", "H": "reward against entropy"}
LABEL_OFFSETS = {"kl": {1e-3: (5, -11), 0.1: (-14, 7), 1.0: (5, -11)}, "H": {1e-3: (5, 3), 0.1: (5, 3), 1.0: (5, 3)}}


__all__ = ["Config", "SMOKE", "FULL", "compute", "plot_frontier", "plot_shift_eta", "make"]


@dataclass(frozen=True)
class Config:
    """Grid sizes of the curves."""

    n: int = 300  #: points per curve
    beta2s: tuple = (1e-3, 0.1)  #: log-ratio temperatures of the decoupled-soft-value curves
    shift_betas: tuple = (0.03, 0.1, 0.3)  #: temperatures of the beta-shifted-mean curves
    delta_max: float = 4.0  #: largest shift delta


SMOKE = Config(n=40)
FULL = Config()


def _measures(pi, mu, r):
    return T.kl(pi, mu), T.entropy(pi), T.expected_reward(pi, r)


def compute(cfg: Config) -> dict:
    """Curves as dicts of arrays ``kl``, ``H``, ``R`` (nats, nats, reward units) and their parameters."""
    b = T.STANDARD_BANDITS[BANDIT]
    mu, r = b.mu, b.r
    mean = T.mean_baseline(mu, r)
    res = {}
    betas = np.logspace(-3, 2, cfg.n)
    res["gibbs"] = dict(zip(("kl", "H", "R"), _measures(T.gibbs_target(mu, r, betas), mu, r)), beta=betas)
    pi, eta = T.lambert_target(mu, (r - mean)[None, :], betas)
    res["mean"] = dict(zip(("kl", "H", "R"), _measures(pi, mu, r)), beta=betas, eta=eta)
    for beta2 in cfg.beta2s:
        beta1 = np.logspace(np.log10(beta2), np.log10(30.0), cfg.n)
        V = T.soft_value(mu, r, beta1)
        pi, eta = T.lambert_target(mu, r[None, :] - V[:, None], beta2)
        res[("decoupled", beta2)] = dict(zip(("kl", "H", "R"), _measures(pi, mu, r)), beta1=beta1, eta=eta)
    for name, beta1 in (("A*-PO", 0.5), ("OAPL", 1.0)):
        V = T.soft_value(mu, r, beta1)
        pi, eta = T.lambert_target(mu, r - V, 1e-3)
        res[name] = dict(zip(("kl", "H", "R"), _measures(pi, mu, r)), eta=float(eta),
                         pessimism=float(T.beta_eff_kl(mu, r, T.kl(pi, mu))) / 1e-3)
    deltas = np.linspace(0.0, cfg.delta_max, cfg.n)
    for beta in cfg.shift_betas:
        pi, eta = T.lambert_target(mu, (r - mean)[None, :] + deltas[:, None] * beta, beta)
        res[("shift", beta)] = dict(zip(("kl", "H", "R"), _measures(pi, mu, r)), delta=deltas, eta=eta)
    return res


def _at(curve, key, value, field):
    """Value of ``field`` on ``curve`` where parameter ``key`` is closest to ``value``."""
    i = int(np.argmin(np.abs(np.log(curve[key]) - np.log(value)))) if key != "delta" else int(
        np.argmin(np.abs(curve[key] - value)))
    return curve[field][i]


def _gibbs_and_mean(ax, res, xf):
    """The Gibbs frontier with three temperatures marked, and the mean baseline's curve."""
    g = res["gibbs"]
    ax.plot(g[xf], g["R"], color=GIBBS_COLOR, lw=2.2, label=r"Gibbs $\pi_\beta$ (nominal), $\beta\in[10^{-3},10^2]$")
    for beta in (1e-3, 0.1, 1.0):
        ax.plot(_at(g, "beta", beta, xf), _at(g, "beta", beta, "R"), "o", color=GIBBS_COLOR, ms=3.5, zorder=5)
        ax.annotate(rf"$\beta={beta:g}$", (_at(g, "beta", beta, xf), _at(g, "beta", beta, "R")),
                    textcoords="offset points", xytext=LABEL_OFFSETS[xf][beta], fontsize=7)
    m = res["mean"]
    ax.plot(m[xf], m["R"], color=MEAN_COLOR, lw=1.6, label=r"mean baseline $V=E_\mu r$, $\beta\in[10^{-3},10^2]$")


def _published(ax, res, xf):
    """The mean baseline at beta = 1e-3 and the published A*-PO and OAPL settings, arrows from their nominal target."""
    m, g = res["mean"], res["gibbs"]
    ax.plot(_at(m, "beta", 1e-3, xf), _at(m, "beta", 1e-3, "R"), "o", color=MEAN_COLOR, ms=6, mec="k", mew=0.6,
            zorder=6, label=r"mean baseline at $\beta=10^{-3}$ ($\approx$ linear tilt $\mu(A)_+$)")
    g_x, g_y = _at(g, "beta", 1e-3, xf), _at(g, "beta", 1e-3, "R")
    for name, mk in (("A*-PO", "^"), ("OAPL", "v")):
        p = res[name]
        ax.plot(p[xf], p["R"], mk, color=DEC_COLOR, ms=8, mec="k", mew=0.6, zorder=6,
                label=rf"{name} published ($\beta_1={0.5 if name == 'A*-PO' else 1:g}$, $\beta_2=10^{{-3}}$): "
                      rf"$\eta={p['eta']:.0f}$, $\beta_{{\rm eff}}/\beta_2={p['pessimism']:.0f}$")
        ax.annotate("", xy=(p[xf], p["R"]), xytext=(g_x, g_y), zorder=4,
                    arrowprops=dict(arrowstyle="->", color="0.55", lw=0.8, ls=(0, (2, 2)), shrinkA=4, shrinkB=6))


@_style.panel_doc
def plot_frontier(res: dict, x: str = "kl", *, ax=None):
    r"""Draw expected reward against KL to the behaviour policy (or against entropy) for every family of targets.

    Parameters
    ----------
    res : dict
        The output of :func:`compute`: each curve a dict of arrays ``kl``,
        ``H`` (nats) and ``R`` (reward units) of equal length, with its
        parameter (``beta``, ``beta1`` or ``delta``); the published settings
        ``"A*-PO"`` and ``"OAPL"`` single points.
    x : {"kl", "H"}
        The x axis: :math:`\mathrm{KL}(\pi\|\mu)` (from 0) or the entropy :math:`H(\pi)`.
    {ax}
    """
    ax = _style.panel_axes(ax)
    _gibbs_and_mean(ax, res, x)
    beta2s = [k[1] for k in res if isinstance(k, tuple) and k[0] == "decoupled"]
    for beta2, ls in zip(beta2s, ("-", "--")):
        d = res[("decoupled", beta2)]
        ax.plot(d[x], d["R"], color=DEC_COLOR, lw=1.6, ls=ls,
                label=rf"decoupled $V=V^*_{{\beta_1}}$, $\beta_2={beta2:g}$, $\beta_1\in[\beta_2,30]$")
    for beta, c in SHIFT_COLORS.items():
        s = res[("shift", beta)]
        ax.plot(s[x], s["R"], color=c, lw=1.4, label=rf"$\beta$-shifted mean, $\beta={beta:g}$, $\delta\in[0,4]$")
        ax.plot(s[x][0], s["R"][0], "o", color=c, ms=4, mfc="w", zorder=5)
        ax.plot(_at(s, "delta", 1.0, x), _at(s, "delta", 1.0, "R"), "s", color=c, ms=4.5, zorder=5)
    _published(ax, res, x)
    ax.set(xlabel=XLABELS[x], ylabel=r"expected reward $E_\pi[r]$")
    ax.set_title(TITLES[x])
    if x == "kl":
        ax.set_xlim(left=0)
    return ax


@_style.panel_doc
def plot_shift_eta(res: dict, *, ax=None):
    r"""Draw :math:`\eta` of the beta-shifted-mean targets against the shift :math:`\delta`, above :math:`\eta=\delta`.

    Parameters
    ----------
    res : dict
        The output of :func:`compute`; reads the curves ``("shift", beta)``
        for the temperatures of :data:`SHIFT_COLORS` (arrays ``delta`` and
        ``eta`` of equal length), squares at :math:`\delta = 1`.
    {ax}
    """
    ax = _style.panel_axes(ax)
    for beta, c in SHIFT_COLORS.items():
        s = res[("shift", beta)]
        ax.plot(s["delta"], s["eta"], color=c, lw=1.6, label=rf"$\beta={beta:g}$")
        ax.plot(1.0, _at(s, "delta", 1.0, "eta"), "s", color=c, ms=4.5)
    delta_max = max(res[("shift", beta)]["delta"][-1] for beta in SHIFT_COLORS)
    ax.plot([0, delta_max], [0, delta_max], color="0.4", ls=":", lw=1.2, label=r"$\eta=\delta$")
    ax.set(xlabel=r"shift $\delta$ (advantage $r - E_\mu r + \delta\beta$)", ylabel=r"$\eta$ of the target",
           title=r"$\beta$-shift: $\eta = \delta + \mathrm{KL}(\mu\|\pi) \geq \delta$")
    ax.legend(frameon=False, loc="upper left")
    return ax


def make(smoke: bool = False, out: Path = _style.OUTPUT, *, overwrite: bool = False,
         results_dir: Path | None = None) -> list[Path]:
    res = compute(SMOKE if smoke else FULL)
    fig, axes = _style.subplots(1, 3, figsize=(13.0, 4.5), width_ratios=[1.1, 1.1, 0.8])
    plot_frontier(res, "kl", ax=axes[0])
    plot_frontier(res, "H", ax=axes[1])
    plot_shift_eta(res, ax=axes[2])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False, fontsize=7.5,
               title=f"'{BANDIT}' bandit; open circles: $\\delta=0$ (mean baseline); squares: $\\delta=1$; "
               "grey arrows: nominal target of A*-PO / OAPL (Gibbs at $\\beta_2=10^{-3}$) to the induced one",
               title_fontsize=8)
    return _style.save(fig, out, "fig06_temperature_frontier", overwrite=overwrite)
