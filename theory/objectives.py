r"""The objective zoo: every off-policy objective, defined once, with the target it induces.

An :class:`Objective` bundles, for one published method:

* its **loss** — a function of ``theory.losses``, called unchanged by the
  bandit theory, the simulators, the LLM trainer and the verl / TRL wrappers;
* its **advantage estimator** — a name of ``theory.advantages`` (group form
  for training, population form for the theory) and its parameters;
* its **aggregation** — one of ``theory.losses.AGGREGATIONS``;
* its **population weight** :math:`h(u, A)` on :math:`\nabla\log\pi` — the
  expected gradient of the loss on a bandit is
  :math:`E_{y\sim\mu}[h(u_y, A_y)\nabla\log\pi(y)]`, :math:`u = \pi/\mu`
  (checked against autograd of the loss in ``tests/test_objectives.py``);
* its **induced target** — a closed form where one is derived, otherwise the
  generic KKT solver or the flow (``theory.induced``).

Usage::

    obj = make_objective("oapl")                  # published settings
    obj = make_objective("ppo", eps_low=0.1)      # override a parameter
    adv = obj.advantages(rewards)                 # (B, G) from rewards (B, G)
    loss = obj.loss(logp, logp_mu, adv, mask)     # per token (B, T) or per sequence (B,)
    scalar = obj.aggregate(loss, mask)
    pi = obj.induced_target(mu, r)                # population target on a bandit

``OBJECTIVES`` lists the names; ``describe(name)`` returns the row of the
comparison table (``python -m theory.zoo_table``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np
import torch

from . import losses as L
from .advantages import group_advantage, population_advantage

__all__ = ["Objective", "OBJECTIVES", "make_objective", "objective_names"]


# ---------------------------------------------------------------------------
# population weights h(u, A): torch, elementwise, float64
# ---------------------------------------------------------------------------


def _h_pg(u, a, p, mu=None):
    return u * a


def _h_ppo(u, a, p, mu=None):
    lo, hi = 1.0 - p["eps_low"], 1.0 + (p.get("eps_high") or p["eps_low"])
    active = torch.where(a >= 0, u < hi, u > lo)
    h = torch.where(active, u * a, torch.zeros_like(u))
    if p.get("dual_clip") is not None:
        h = torch.where((a < 0) & (u > p["dual_clip"]), torch.zeros_like(u), h)
    if p.get("kl_beta", 0.0) > 0:  # k3 to a reference, taken = mu on the bandit: -d/ds beta(e^-s - 1 + s)
        h = h + p["kl_beta"] * (1.0 / u - 1.0)
    return h


def _h_cispo(u, a, p, mu=None):
    lo = 0.0 if p.get("eps_low") is None else 1.0 - p["eps_low"]
    return u.clamp(min=lo, max=1.0 + p["eps_high"]) * a


def _h_decoupled(u, a, p, mu=None):
    cap = p.get("is_cap")
    return (u if cap is None else u.clamp(max=cap)) * a


def _h_sapo(u, a, p, mu=None):
    tau = torch.where(a > 0, torch.full_like(a, p["tau_pos"]), torch.full_like(a, p["tau_neg"]))
    sg = torch.sigmoid(tau * (u - 1.0))
    return 4.0 * a * u * sg * (1.0 - sg)


def _h_topr(u, a, p, mu=None):
    return torch.where(a >= 0, a, u.clamp(max=1.0) * a)


def _h_m2po(u, a, p, mu):
    """The population mask: arms leave in decreasing s^2 until E_mu[s^2 | kept] <= tau."""
    s2 = torch.log(u) ** 2
    order = torch.argsort(s2, dim=-1)
    s2_sorted = torch.gather(s2, -1, order)
    mu_sorted = torch.gather(torch.as_tensor(mu, dtype=u.dtype).expand_as(u), -1, order)
    mean_kept = torch.cumsum(mu_sorted * s2_sorted, -1) / torch.cumsum(mu_sorted, -1).clamp_min(1e-300)
    keep_sorted = (mean_kept <= p["tau"]).to(u.dtype)
    keep = torch.zeros_like(u).scatter(-1, order, keep_sorted)
    return keep * u * a


def _h_reinforce(u, a, p, mu=None):
    return a.expand_as(u)


def _h_kl(u, a, p, mu=None):
    beta, kind = p["beta"], p["kind"]
    if kind == "k1":
        return (a + beta).expand_as(u)
    if kind == "k2":
        return a - beta * torch.log(u)
    return a + beta - beta * u


def _h_gibbs(u, a, p, mu=None):
    return torch.exp(a / p["beta"]).clamp(max=p.get("max_weight", math.inf)).expand_as(u)


def _h_tpo(u, a, p, mu):
    z = a / p["beta"]
    w = torch.exp(z - z.amax(-1, keepdim=True))
    mu_t = torch.as_tensor(mu, dtype=u.dtype)
    return (w / (mu_t * w).sum(-1, keepdim=True)).expand_as(u)


def _h_regression(u, a, p, mu=None):
    beta = p["beta"]
    return 2.0 * beta * (a - beta * torch.log(u))


# ---------------------------------------------------------------------------
# closed-form targets (numpy, (..., K)); None means "use the solver / flow"
# ---------------------------------------------------------------------------


def _t_lambert(mu, adv, p):
    from .lambert import lambert_target

    return lambert_target(mu, adv, p["beta"])[0]


def _t_gibbs(mu, adv, p):
    # h = min(e^{A/beta}, w_max) does not depend on u, so h/u = kappa gives pi ∝ mu h
    z = np.minimum(adv / p["beta"], np.log(p.get("max_weight", math.inf)))
    with np.errstate(divide="ignore"):
        lw = np.where(mu > 0, np.log(np.where(mu > 0, mu, 1.0)) + z, -np.inf)
    lw = lw - lw.max(-1, keepdims=True)
    w = np.exp(lw)
    return w / w.sum(-1, keepdims=True)


#: |E_mu[A']| at or below this multiple of sum_y mu_y |A'_y| counts as the transition E_mu[A'] = 0:
#: below it the sign of E_mu[A'] is rounding (it is a sum of terms of size sum mu |A'| each rounded to
#: about 1e-16 of itself), so the flow's limit at E_mu[A'] = 0 exactly is returned.
TRANSITION_RTOL = 64 * np.finfo(np.float64).eps


def _argmax_set(mu, m):
    """Support arms at the maximum of ``m``, ties taken to 1e-12 (relative): bool (..., K)."""
    m = np.where(mu > 0, m, -np.inf)
    best = m.max(-1, keepdims=True)
    return m >= best - 1e-12 * np.maximum(np.abs(best), 1.0)


def _t_vertex(mu, adv, p):
    """Vertex at the best arm; among tied best arms the flow keeps the most probable one.

    (For :math:`h = uA` the logits move at :math:`\\pi_z(A_z - \\kappa)`: of two
    tied arms the more probable one grows faster, and the integral of
    :math:`A_{max} - \\kappa` diverges, so the face of tied best arms, every
    point of which is stationary, is left for its most probable vertex.) Exact
    ties in ``mu`` too split the mass equally.
    """
    top = _argmax_set(mu, adv)
    w = np.where(top, mu, -1.0)
    top = w == w.max(-1, keepdims=True)
    return top / top.sum(-1, keepdims=True)


def _linear_threshold(mu, a_eff):
    r"""Target of the weight :math:`h = A'` (constant in u), on both sides of :math:`E_\mu[A'] = 0`.

    With :math:`m_z = \mu_z A'_z` and :math:`\kappa = E_\mu[A'] = \sum_z m_z`
    (constant along the flow, since :math:`h` does not depend on :math:`u`),
    the logits move at :math:`\dot\theta_z = m_z - \pi_z\kappa`.

    * :math:`\kappa > 0`: :math:`\pi = (m - c)_+/\kappa` with ``c`` solving
      :math:`\sum_y(m_y - c)_+ = \kappa` (a sort and a cumulative sum, as in
      a projection onto the simplex). It is computed as :math:`(m - c)_+`
      normalized by its own sum, which is :math:`\kappa` in exact arithmetic
      and keeps the result on the simplex when :math:`\kappa` is tiny.
    * :math:`\kappa = 0` (the phase transition; AsymRE at offset 0): the rates
      :math:`m_z` are constant, :math:`\theta_z(t) = \log\mu_z + t m_z`, so the
      flow ends at the vertex :math:`\arg\max_z m_z`. Tied maxima keep their
      logit differences :math:`\log(\mu_i/\mu_j)` for ever, so the limit is
      :math:`\mu` restricted to them and renormalized. With a unique maximum
      this is also the limit of the :math:`\kappa > 0` form as
      :math:`\kappa \to 0^+` and of the collapse as :math:`\kappa \to 0^-`
      (ties split equally as :math:`\kappa \to 0^+`: the target jumps there). :math:`|\kappa| \le` ``TRANSITION_RTOL``
      :math:`\sum|m|` counts as 0: there its sign is rounding.
    * :math:`\kappa < 0`: no interior limit; the flow collapses onto one arm
      that depends on the path. These rows are returned as NaN and
      ``theory.induced`` hands them to the flow.
    """
    m = mu * a_eff
    total = m.sum(-1, keepdims=True)
    at_zero = np.abs(total) <= TRANSITION_RTOL * np.abs(m).sum(-1, keepdims=True)
    srt = -np.sort(-m, axis=-1)
    k = np.arange(1, m.shape[-1] + 1)
    csum = np.cumsum(srt, -1)
    c_k = (csum - total) / k
    valid = srt > c_k
    kstar = valid.shape[-1] - 1 - np.argmax(valid[..., ::-1], axis=-1)
    c = np.take_along_axis(c_k, kstar[..., None], -1)
    w = np.where(mu > 0, np.maximum(m - c, 0.0), 0.0)
    s = w.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        pi = w / s
    top = _argmax_set(mu, m)
    # s == 0 (kappa below the rounding of the sort's c) is the kappa -> 0+ limit: the tied maxima share
    pi = np.where(s > 0, pi, top / top.sum(-1, keepdims=True))
    on_top = np.where(top, mu, 0.0)
    pi = np.where(at_zero, on_top / on_top.sum(-1, keepdims=True), pi)
    return np.where((total > 0) | at_zero, pi, np.nan)


def _greedy_fill(mu, adv, cap):
    r"""The flow's point on the tied best arms' face for :math:`h = \min(u, C)A` (:math:`C` = ``cap``).

    Below the clip the tied best arms :math:`T` (advantage :math:`a`) move at
    :math:`\dot\theta_z = \pi_z(a - \kappa)` with :math:`\kappa \le a`, so
    :math:`\log(\pi_i/\pi_j)` grows at :math:`(\pi_i - \pi_j)(a - \kappa)`:
    the most probable arm reaches its cap :math:`u = C` first and stays there
    (the clipped weight holds it), then the next, and since
    :math:`\int(a - \kappa)\,dt` diverges (the other arms decay like
    :math:`1/t`), the arms are filled to :math:`\pi_z = C\mu_z` in decreasing
    :math:`\mu`, the last one partly, the rest emptied; arms with equal
    :math:`\mu` fill together. This is a face only when
    :math:`C\mu(T) \ge 1`; otherwise the target is a point (every tied arm at
    :math:`u = C a/\kappa`) and the rows are NaN (the solver's point stands).
    Ties below the best level are not covered (NaN: not certified).
    """
    mu = np.asarray(mu, dtype=np.float64)
    top = _argmax_set(mu, adv)
    cap_mass = np.where(top, cap * mu, 0.0)
    out = np.full(mu.shape, np.nan)
    M, C = mu.reshape(-1, mu.shape[-1]), cap_mass.reshape(-1, mu.shape[-1])
    T = top.reshape(-1, mu.shape[-1])
    O = out.reshape(-1, mu.shape[-1])
    for i in np.flatnonzero(C.sum(-1) >= 1.0 - 1e-12):
        left = 1.0
        row = np.zeros(M.shape[1])
        for m_val in sorted(set(M[i][T[i]]), reverse=True):  # groups of equal mu, largest first
            grp = T[i] & (M[i] == m_val)
            give = min(C[i][grp].sum(), left)
            row[grp] = give / grp.sum()
            left -= give
        O[i] = row / row.sum()
    return out


def _t_fill_cispo(mu, adv, p):
    if p.get("eps_low") is not None:  # a lower clip gives the weight a floor at u -> 0: not this rule
        return None
    return _greedy_fill(mu, adv, 1.0 + p["eps_high"])


def _t_fill_tis(mu, adv, p):
    return _t_vertex(mu, adv, p) if p.get("is_cap") is None else _greedy_fill(mu, adv, p["is_cap"])


def _t_reinforce(mu, adv, p):
    return _linear_threshold(mu, adv)


def _t_kl(mu, adv, p):
    if p["kind"] == "k2":
        from .lambert import lambert_target

        # h = A - beta s = (2 beta)^-1 x regression weight at temperature beta: same target
        return lambert_target(mu, adv, p["beta"])[0]
    # k1 (h = A + beta) and k3 (h = A + beta - beta u) have the same target: on the
    # survivors mu (A + beta - beta u - kappa u) = c gives u = (A + beta - c/mu)/(beta + kappa),
    # normalization fixes beta + kappa = sum_S (mu (A + beta) - c), and the drop rule
    # mu (A + beta) <= c and the drift c |S| = -sum_drop mu (A + beta) are k1's.
    return _linear_threshold(mu, adv + p["beta"])


def _t_topr(mu, adv, p):
    m = mu * np.maximum(adv, 0.0)
    tot = m.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, m / tot, np.nan)


def _induced_soft_value(p) -> str:
    r"""The induced target of a regression on ``r - V*_beta1 (- delta beta)``, rendered from its parameters.

    The regime is the sign of :math:`V^*_\beta - V` (``docs/theory.md`` section 3);
    :math:`V^*_b` decreases in :math:`b`, so with :math:`V = V^*_{\beta_1} + \delta\beta`
    the regime follows from :math:`\beta_1` against :math:`\beta` and the sign of
    :math:`\delta` unless the two pull in opposite directions.
    """
    b, b1, d = p["beta"], p["beta1"], p.get("delta", 0.0)
    at = f"beta = {b:g}, beta1 = {b1:g}" + (f", delta = {d:g}" if "delta" in p else "")
    v = "V = V*_beta1" + (" + delta beta" if "delta" in p else "")
    pos = "Lambert, positive regime: eta > 0 (pessimistic)"
    neg = ("Lambert, negative regime: eta < 0 (optimistic); global minimizer, the flow from mu may stop at "
           "another local minimum")
    if b1 == b and d == 0:
        return f"Gibbs (boundary, eta = 0) in the population; positive regime at finite G [{v}, {at}]"
    if (b1 > b and d <= 0) or (b1 == b and d < 0):
        return f"{pos} [{v}, {at}]"
    if (b1 < b and d >= 0) or (b1 == b and d > 0):
        return f"{neg} [{v}, {at}]"
    return f"Lambert; the regime depends on the bandit (sign of V*_beta - V) [{v}, {at}]"


# ---------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """One objective of the zoo (see the module docstring). Build with :func:`make_objective`.

    Attributes
    ----------
    name, family : str
        Registry name and family (``ratio``, ``ratio-free``, ``weighted-ce``, ``regression``).
    params : Mapping
        Hyperparameters of the loss and of the advantage estimator.
    advantage : str
        Name of the estimator in ``theory.advantages``.
    aggregation : str
        Default aggregation mode.
    level : str
        ``token`` (the loss is per token, ``(..., T)``) or ``sequence`` (``(...)``).
    needs : tuple of str
        Extra log-probabilities the loss needs: ``ref`` and/or ``prox``.
    equation, nominal, induced, source : str
        Documentation: the loss, the target it is named after, the target it
        induces on a tabular bandit, and the paper / reference code.
    target_kind : str
        How the induced target is computed: ``lambert``, ``gibbs``, ``linear``
        (closed form), ``vertex`` (closed form), ``kkt`` (generic solver),
        ``lp`` (set-valued; the flow's point is reported), ``numerical``
        (explicit Euler on the flow).
    """

    name: str
    family: str
    params: Mapping
    advantage: str
    aggregation: str
    level: str
    needs: tuple
    equation: str
    nominal: str
    induced: str
    source: str
    target_kind: str
    _loss: Callable = field(repr=False)
    _weight: Callable = field(repr=False)
    _closed_form: Callable | None = field(repr=False)
    _adv_params: tuple = field(repr=False, default=())
    _signal: str = field(repr=False, default="adv")
    kappa_min: float = field(repr=False, default=0.0)
    _face_point: Callable | None = field(repr=False, default=None)

    # -- training side -----------------------------------------------------
    def advantage_params(self) -> dict:
        return {k: self.params[k] for k in self._adv_params}

    def advantages(self, rewards) -> torch.Tensor:
        """The per-sample signal the loss expects, from rewards ``(..., G)``.

        For most objectives this is the advantage; for the weighted
        cross-entropies it is the sample weight (AWR :math:`e^{A/\\beta}`,
        TPO :math:`G\\,\\mathrm{softmax}(A/\\beta)` over the group).
        """
        adv = group_advantage(self.advantage, rewards, **self.advantage_params())
        if self._signal == "awr":
            return torch.exp(adv / self.params["beta"]).clamp(max=self.params["max_weight"])
        if self._signal == "tpo":
            return adv.shape[-1] * torch.softmax(adv / self.params["beta"], -1)
        return adv

    def loss(self, logp, logp_mu, adv, mask=None, *, logp_ref=None, logp_prox=None) -> torch.Tensor:
        """Per-token ``(..., T)`` or per-sequence ``(...)`` loss (see ``level``)."""
        p = self.params
        n = self.name
        if "ref" in self.needs and logp_ref is None:
            raise ValueError(f"objective {n!r} needs logp_ref (log-probabilities under the reference policy)")
        if "prox" in self.needs and logp_prox is None:
            raise ValueError(f"objective {n!r} needs logp_prox (log-probabilities under the proximal policy)")
        out = self._loss(self, logp, logp_mu, adv, mask, logp_ref, logp_prox)
        return out

    def aggregate(self, loss, mask=None, *, constant=None):
        """Reduce with this objective's aggregation mode (``theory.losses.aggregate``)."""
        const = constant if constant is not None else self.params.get("norm_constant")
        return L.aggregate(loss, mask, self.aggregation, constant=const)

    # -- theory side ---------------------------------------------------------
    def population_advantage(self, mu, r) -> np.ndarray:
        """Exact advantage ``(..., K)`` of this objective's estimator on a bandit."""
        return population_advantage(self.advantage, mu, r, **self.advantage_params())

    def weight(self, u, adv, mu=None):
        """Population weight :math:`h(u, A)` on :math:`\\nabla\\log\\pi` (torch, elementwise).

        ``mu`` is needed only by the batch-dependent weights (TPO's group
        normalization, M2PO's mask).
        """
        u = torch.as_tensor(u, dtype=torch.float64)
        adv = torch.as_tensor(adv, dtype=torch.float64)
        if self._weight in (_h_tpo, _h_m2po) and mu is None:
            raise ValueError(f"the weight of {self.name!r} depends on the whole distribution: pass mu")
        return self._weight(u, adv, self.params, mu)

    def closed_form_target(self, mu, adv):
        """Closed-form induced target for advantages ``adv`` ``(..., K)``, or None."""
        if self._closed_form is None:
            return None
        return self._closed_form(np.asarray(mu, dtype=np.float64), np.asarray(adv, dtype=np.float64), self.params)

    def face_point(self, mu, adv):
        """The point the flow from ``mu`` reaches on a face of tied stationary points, or None.

        ``(..., K)``; NaN rows where the derived rule does not cover the face.
        None when the objective has no such rule (its set-valued targets are
        then reported as sets, not certified as points).
        """
        if self._face_point is None:
            return None
        return self._face_point(np.asarray(mu, dtype=np.float64), np.asarray(adv, dtype=np.float64), self.params)

    @property
    def lp_clip(self) -> bool:
        """The target is the optimal face of PPO-clip's linear program (``theory.induced.ppo_clip_target_set``)."""
        return self.target_kind == "lp" and "eps_low" in self.params and not self.params.get("kl_beta", 0.0)

    def induced_target(self, mu, r, **kwargs):
        """Induced target on a bandit with rewards ``r``: see ``theory.induced.induced_target``."""
        from .induced import induced_target

        return induced_target(self, mu, r, **kwargs)


# loss adapters: (obj, logp, logp_mu, adv, mask, logp_ref, logp_prox) -> loss


def _ppo_family(o, lp, lm, a, m, lr, lx):
    p = o.params
    out = L.ppo_clip_loss(lp, lm, a, m, eps_low=p["eps_low"], eps_high=p.get("eps_high"), dual_clip=p.get("dual_clip"))
    if p.get("kl_beta", 0.0) > 0:
        if lr is None:
            raise ValueError(f"objective {o.name!r} with kl_beta > 0 needs logp_ref")
        lr = torch.as_tensor(lr, dtype=lp.dtype)
        out = out + p["kl_beta"] * L.kl_estimate(lr - lp, "k3")
    return out


_LOSSES = {
    "pg": lambda o, lp, lm, a, m, lr, lx: L.policy_gradient_loss(lp, lm, a, m),
    "ppo": _ppo_family,
    "gspo": lambda o, lp, lm, a, m, lr, lx: L.gspo_loss(
        lp, lm, a, m, eps_low=o.params["eps_low"], eps_high=o.params["eps_high"]
    ),
    "cispo": lambda o, lp, lm, a, m, lr, lx: L.cispo_loss(
        lp, lm, a, m, eps_low=o.params.get("eps_low"), eps_high=o.params["eps_high"]
    ),
    "decoupled": lambda o, lp, lm, a, m, lr, lx: L.decoupled_ppo_loss(
        lp,
        lm,
        a,
        m,
        logp_prox=lx,
        eps_low=o.params["eps_low"],
        eps_high=o.params.get("eps_high"),
        is_cap=o.params.get("is_cap"),
    ),
    "topr": lambda o, lp, lm, a, m, lr, lx: L.topr_loss(lp, lm, a, m),
    "sapo": lambda o, lp, lm, a, m, lr, lx: L.sapo_loss(
        lp, lm, a, m, tau_pos=o.params["tau_pos"], tau_neg=o.params["tau_neg"]
    ),
    "m2po": lambda o, lp, lm, a, m, lr, lx: L.m2po_loss(lp, lm, a, m, tau=o.params["tau"]),
    "reinforce": lambda o, lp, lm, a, m, lr, lx: L.reinforce_loss(lp, lm, a, m),
    "kl": lambda o, lp, lm, a, m, lr, lx: L.kl_reinforce_loss(lp, lm, a, m, beta=o.params["beta"], kind=o.params["kind"]),
    "ce": lambda o, lp, lm, a, m, lr, lx: L.weighted_ce_loss(lp, a, m),
    "regression": lambda o, lp, lm, a, m, lr, lx: L.regression_loss(
        lp, lm if o.params.get("anchor", "behaviour") == "behaviour" else lr, a, m,
        beta=o.params["beta"], level=o.level,
    ),
}

_WEIGHTS = {
    "pg": _h_pg,
    "ppo": _h_ppo,
    "gspo": _h_ppo,
    "cispo": _h_cispo,
    "decoupled": _h_decoupled,
    "topr": _h_topr,
    "sapo": _h_sapo,
    "m2po": _h_m2po,
    "reinforce": _h_reinforce,
    "kl": _h_kl,
    "ce": _h_gibbs,
    "tpo": _h_tpo,
    "regression": _h_regression,
}

_LP = ("LP on the simplex: set-valued on the clip plateaus; reported: the set (per-arm ranges) and the point of its "
       "optimal face reached by explicit Euler with decaying steps (a point of the face, not the exact flow's limit)")

#: name -> (loss key, weight key, closed form, target kind, advantage, adv params,
#:          aggregation, level, needs, params, family, equation, nominal, induced, source, extra)
_SPECS: dict[str, dict] = {
    "pg": dict(
        loss="pg", weight="pg", closed=_t_vertex, kind="vertex", advantage="mean", agg="token-mean",
        params=dict(), family="ratio", face=_t_vertex,
        equation="-u A", nominal="greedy (max E_pi[A])",
        induced="vertex at argmax A; tied best arms: every point on them is stationary, the flow ends at the most probable",
        source="Williams 1992; exact importance ratio pi/mu",
    ),
    "ppo": dict(
        loss="ppo", weight="ppo", closed=None, kind="lp", advantage="grpo", adv_params=("eps",),
        agg="token-mean", params=dict(eps_low=0.2, eps_high=0.2, dual_clip=None, kl_beta=0.0, eps=1e-6),
        family="ratio",
        equation="max(-uA, -clip(u, 1-e_l, 1+e_h) A); dual clip: min(., -cA) for A<0",
        nominal="greedy within a trust region", induced=_LP,
        source="Schulman et al. 2017 (PPO); Ye et al. 2020 (dual clip); verl 'vanilla'",
    ),
    "ppo_dual_clip": dict(
        loss="ppo", weight="ppo", closed=None, kind="lp", advantage="grpo", adv_params=("eps",),
        agg="token-mean", params=dict(eps_low=0.2, eps_high=0.2, dual_clip=3.0, kl_beta=0.0, eps=1e-6),
        family="ratio",
        equation="PPO-clip, then min(loss, -cA) for A<0 (c = 3)",
        nominal="greedy within a trust region", induced=_LP,
        source="Ye et al. 2020; verl 'vanilla' with clip_ratio_c = 3",
    ),
    "grpo": dict(
        loss="ppo", weight="ppo", closed=None, kind="lp", advantage="grpo", adv_params=("eps",),
        agg="seq-mean-token-mean", params=dict(eps_low=0.2, eps_high=0.2, dual_clip=None, kl_beta=0.0, eps=1e-6),
        family="ratio", needs=(),
        equation="PPO-clip on (r - mean)/(std + eps); optional k3 KL to a reference (kl_beta)",
        nominal="greedy within a trust region", induced=_LP,
        source="Shao et al. 2024 (DeepSeekMath); verl 'grpo' advantage",
    ),
    "dr_grpo": dict(
        loss="ppo", weight="ppo", closed=None, kind="lp", advantage="mean", agg="seq-mean-token-sum-norm",
        params=dict(eps_low=0.2, eps_high=0.2, dual_clip=None, kl_beta=0.0, norm_constant=None),
        family="ratio",
        equation="PPO-clip on r - mean; token sum / constant",
        nominal="greedy within a trust region", induced=_LP,
        source="Liu et al. 2025 (Dr. GRPO)",
    ),
    "dapo": dict(
        loss="ppo", weight="ppo", closed=None, kind="lp", advantage="grpo", adv_params=("eps",), agg="token-mean",
        params=dict(eps_low=0.2, eps_high=0.28, dual_clip=None, kl_beta=0.0, eps=1e-6),
        family="ratio",
        equation="PPO-clip with clip-higher (0.2, 0.28), token-mean",
        nominal="greedy within a trust region", induced=_LP,
        source="Yu et al. 2025 (DAPO)",
    ),
    "gspo": dict(
        loss="gspo", weight="gspo", closed=None, kind="lp", advantage="grpo", adv_params=("eps",),
        agg="seq-mean-token-mean", params=dict(eps_low=3e-4, eps_high=4e-4, eps=1e-6),
        family="ratio",
        equation="PPO-clip on the length-normalized sequence ratio exp(mean_t s_t)",
        nominal="greedy within a sequence trust region", induced=_LP,
        source="Zheng et al. 2025 (GSPO); verl 'gspo'",
    ),
    "cispo": dict(
        loss="cispo", weight="cispo", closed=None, kind="kkt", advantage="grpo", adv_params=("eps",),
        agg="token-mean", params=dict(eps_low=None, eps_high=0.28, eps=1e-6), face=_t_fill_cispo,
        family="ratio",
        equation="-sg(clip(u, 1-e_l, 1+e_h)) A log pi",
        nominal="greedy (clipped IS policy gradient)",
        induced="u = (1+e_h) A / kappa on arms with A > kappa; tied arms at A = kappa: a face of fixed points "
        "(reported as a set), the flow fills them to u = 1+e_h in decreasing mu",
        source="MiniMax 2025 (MiniMax-M1); verl 'cispo'",
    ),
    "tis": dict(
        loss="decoupled", weight="decoupled", closed=None, kind="kkt", advantage="grpo", adv_params=("eps",),
        agg="token-mean", params=dict(eps_low=0.2, eps_high=0.2, is_cap=2.0, eps=1e-6), needs=("prox",),
        face=_t_fill_tis,
        family="ratio",
        equation="min(pi_prox/mu, C) * PPO-clip(pi/pi_prox)",
        nominal="greedy within a trust region",
        induced="with pi_prox = pi: weight min(u, C) A, CISPO's with 1+e_h = C: u = C A / kappa on arms with "
        "A > kappa; tied arms at A = kappa: a face (reported as a set), the flow fills them to u = C in decreasing mu",
        source="Yao et al. 2025 (truncated importance sampling); verl rollout correction",
    ),
    "areal": dict(
        loss="decoupled", weight="decoupled", closed=_t_vertex, kind="vertex", advantage="grpo",
        adv_params=("eps",), agg="token-mean", params=dict(eps_low=0.2, eps_high=0.2, is_cap=None, eps=1e-6),
        needs=("prox",), family="ratio", face=_t_fill_tis,
        equation="(pi_prox/mu) * PPO-clip(pi/pi_prox)",
        nominal="greedy within a trust region",
        induced="with pi_prox = pi: weight u A, vertex at argmax A",
        source="Fu et al. 2025 (AReaL decoupled PPO)",
    ),
    "sapo": dict(
        loss="sapo", weight="sapo", closed=None, kind="numerical", advantage="grpo", adv_params=("eps",),
        agg="seq-mean-token-mean", params=dict(tau_pos=1.0, tau_neg=1.05, eps=1e-6), family="ratio",
        equation="-(4/tau) sigmoid(tau (u - 1)) A, tau = tau_pos (A > 0) or tau_neg",
        nominal="greedy within a soft trust region",
        induced="numerical (explicit Euler on the flow)",
        source="SAPO (soft adaptive policy optimization); verl 'sapo', TRL 'sapo'",
    ),
    "topr": dict(
        loss="topr", weight="topr", closed=_t_topr, kind="linear", advantage="raw", agg="token-mean",
        params=dict(), family="ratio",
        equation="-(1[A>=0] + 1[A<0] sg(clip(u, 0, 1))) A log pi",
        nominal="greedy", induced="pi ∝ mu A_+ (linear tilt on the positive arms)",
        source="Le Roux et al. 2025 (TOPR)",
    ),
    "m2po": dict(
        loss="m2po", weight="m2po", closed=None, kind="numerical", advantage="grpo", adv_params=("eps",),
        agg="token-mean", params=dict(tau=0.04, eps=1e-6), family="ratio",
        equation="-M u A, M drops largest s^2 until mean s^2 <= tau",
        nominal="greedy", induced="numerical (explicit Euler on the flow): the mask freezes arms once E[s^2] exceeds "
        "tau; tied kept arms form a face of fixed points (reported as a set, the point not certified)",
        source="Zheng et al. 2025 (M2PO); AReaL docs",
    ),
    "asymre": dict(
        loss="reinforce", weight="reinforce", closed=_t_reinforce, kind="linear", advantage="mean",
        adv_params=("offset",), agg="token-mean", params=dict(offset=0.1), family="ratio-free",
        equation="-(r - V) log pi, V = mean - offset",
        nominal="greedy (policy gradient)",
        induced="pi = (mu A - c)_+ / E_mu[A] (E_mu[A] > 0); one arm otherwise",
        source="Arnal et al. 2025 (asymmetric REINFORCE)",
    ),
    "reinforce_k1": dict(
        loss="kl", weight="kl", closed=_t_kl, kind="linear", advantage="mean", agg="token-mean",
        params=dict(beta=0.1, kind="k1"), family="ratio-free",
        equation="-A log pi + beta k1(s),  k1 = -s", nominal="Gibbs pi ∝ mu exp(A/beta)",
        induced="pi = (mu (A + beta) - c)_+ / E_mu[A + beta]",
        source="Schulman 2020 (KL estimators); penalty to the behaviour policy",
    ),
    "reinforce_k2": dict(
        loss="kl", weight="kl", closed=_t_kl, kind="lambert", advantage="mean", agg="token-mean",
        params=dict(beta=0.1, kind="k2"), family="ratio-free",
        equation="-A log pi + beta s^2/2", nominal="Gibbs pi ∝ mu exp(A/beta)",
        induced="Lambert: u = W0(eta e^{A/beta})/eta", source="Schulman 2020 (k2)",
    ),
    "reinforce_k3": dict(
        loss="kl", weight="kl", closed=_t_kl, kind="linear", advantage="mean", agg="token-mean",
        params=dict(beta=0.1, kind="k3"), family="ratio-free", kappa_min="-beta",
        equation="-A log pi + beta (e^s - 1 - s)", nominal="Gibbs pi ∝ mu exp(A/beta)",
        induced="pi = (mu (A + beta) - c)_+ / E_mu[A + beta] (same as k1)", source="Schulman 2020 (k3)",
    ),
    "awr": dict(
        loss="ce", weight="ce", closed=_t_gibbs, kind="gibbs", advantage="mean", agg="token-mean",
        params=dict(beta=1.0, max_weight=math.inf), signal="awr", family="weighted-ce",
        equation="-exp(A/beta) log pi", nominal="Gibbs pi ∝ mu exp(A/beta)",
        induced="Gibbs (exact, independent of V)", source="Peng et al. 2019 (AWR)",
    ),
    "tpo": dict(
        loss="ce", weight="tpo", closed=_t_gibbs, kind="gibbs", advantage="zscore", agg="token-mean",
        params=dict(beta=1.0, max_weight=math.inf), signal="tpo", family="weighted-ce",
        equation="-G softmax_group(z/beta) log pi, z = z-scored reward",
        nominal="q ∝ p_old exp(z/beta)", induced="Gibbs in the z-scored advantage (exact)",
        source="TPO (arXiv 2604.06159)",
    ),
    "astar_po": dict(
        loss="regression", weight="regression", closed=_t_lambert, kind="lambert", advantage="soft_value",
        adv_params=("beta1",), agg="sequence", level="sequence",
        params=dict(beta=1e-3, beta1=0.5, anchor="reference"), needs=("ref",), family="regression",
        equation="(beta2 log(pi/pi_ref) - (r - V*_beta1))^2",
        nominal="Gibbs at beta2 (near-greedy)", induced=_induced_soft_value,
        source="Brantley et al. 2025 (A*-PO); pi_ref = mu on the bandit",
    ),
    "oapl": dict(
        loss="regression", weight="regression", closed=_t_lambert, kind="lambert", advantage="soft_value",
        adv_params=("beta1",), agg="sequence", level="sequence",
        params=dict(beta=1e-3, beta1=1.0, anchor="behaviour"), family="regression",
        equation="(beta2 log(pi/mu) - (r - V_beta1))^2, V from the group soft value",
        nominal="Gibbs at beta2 (near-greedy)", induced=_induced_soft_value,
        source="OAPL: group soft value at beta1 = 1, beta2 = 1e-3",
    ),
    "opmd": dict(
        loss="regression", weight="regression", closed=_t_lambert, kind="lambert", advantage="mean",
        agg="sequence", level="sequence", params=dict(beta=0.1, anchor="behaviour"), family="regression",
        equation="(tau log(pi/mu) - (r - mean r))^2", nominal="Gibbs at tau",
        induced="Lambert with eta = KL(mu||pi) >= 0 (pessimistic)",
        source="Kimi k1.5 (2025) OPMD / PMD-mean",
    ),
    "opmd_loo": dict(
        loss="regression", weight="regression", closed=_t_lambert, kind="lambert", advantage="loo",
        agg="sequence", level="sequence", params=dict(beta=0.1, anchor="behaviour"), family="regression",
        equation="(tau log(pi/mu) - (r - mean_{-i} r))^2", nominal="Gibbs at tau",
        induced="Lambert with eta = KL(mu||pi) (population)", source="Kimi k1.5 OPMD, leave-one-out mean",
    ),
    "opmd_lme": dict(
        loss="regression", weight="regression", closed=_t_lambert, kind="lambert", advantage="soft_value",
        adv_params=("beta1",), agg="sequence", level="sequence",
        params=dict(beta=0.1, beta1=0.1, anchor="behaviour"), family="regression", ties=dict(beta1="beta"),
        equation="(tau log(pi/mu) - (r - tau log mean exp(r/tau)))^2 (tau = beta; beta1 = beta unless given)",
        nominal="Gibbs at tau", induced=_induced_soft_value,
        source="Kimi k1.5 OPMD, log-mean-exp baseline",
    ),
    "shifted_regression": dict(
        loss="regression", weight="regression", closed=_t_lambert, kind="lambert", advantage="shifted_mean",
        adv_params=("beta", "delta"), agg="sequence", level="sequence",
        params=dict(beta=0.1, delta=1.0, anchor="behaviour"), family="regression",
        equation="(beta log(pi/mu) - (r - mean r + delta beta))^2", nominal="Gibbs at beta",
        induced="Lambert with eta = delta + KL(mu||pi) >= delta (positive by construction)",
        source="arXiv 2605.28150 (beta-shifted-mean advantage)",
    ),
    # The optimistic control. delta = 0.5, not 1: on a group of equal rewards (the commonest group
    # under binary rewards) eta = -delta and eta e^{A/beta} = -delta e^{-delta}, which reaches the W0
    # branch point -1/e at delta = 1; at 0.5 the principal-branch solution still exists there.
    "opmd_above": dict(
        loss="regression", weight="regression", closed=_t_lambert, kind="lambert", advantage="soft_value",
        adv_params=("beta1", "beta", "delta"), agg="sequence", level="sequence",
        params=dict(beta=0.1, beta1=0.1, delta=0.5, anchor="behaviour"), family="regression", ties=dict(beta1="beta"),
        equation="(beta log(pi/mu) - (r - V_beta1 - delta beta))^2, V_beta1 the group soft value",
        nominal="Gibbs at beta",
        induced=_induced_soft_value,
        source="arXiv 2605.28150 (control: V above the soft value)",
    ),
}


def objective_names() -> tuple[str, ...]:
    """Every registered objective name."""
    return tuple(_SPECS)


OBJECTIVES = objective_names()

#: Parameter domains: name -> (lower, lower inclusive, upper, upper inclusive, finite required).
_DOMAINS = {
    "beta": (0.0, False, math.inf, False, True),
    "beta1": (0.0, False, math.inf, False, True),
    "eps_low": (0.0, False, 1.0, False, True),  # the lower clip 1 - eps_low must stay > 0
    "eps_high": (0.0, False, math.inf, False, True),
    "dual_clip": (1.0, False, math.inf, False, True),
    "kl_beta": (0.0, True, math.inf, False, True),
    "eps": (0.0, True, math.inf, False, True),
    "is_cap": (0.0, False, math.inf, False, True),
    "tau": (0.0, False, math.inf, False, True),
    "tau_pos": (0.0, False, math.inf, False, True),
    "tau_neg": (0.0, False, math.inf, False, True),
    "offset": (-math.inf, False, math.inf, False, True),
    "delta": (-math.inf, False, math.inf, False, True),
    "max_weight": (0.0, False, math.inf, True, False),  # inf: no cap
    "norm_constant": (0.0, False, math.inf, False, True),
}
_NUMERIC = set(_DOMAINS)


def _as_number(name: str, k: str, v):
    """A Python float from a number, a numpy scalar or a one-element torch tensor; else a named error."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"{name}: parameter {k} must be a number, got a tensor of shape {tuple(v.shape)}")
        v = v.detach().item()
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v.item()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{name}: parameter {k} must be a number, got {v!r} ({type(v).__name__})")
    v = float(v)
    lo, lo_inc, hi, hi_inc, finite = _DOMAINS[k]
    if math.isnan(v) or (finite and math.isinf(v)):
        raise ValueError(f"{name}: parameter {k} must be a finite number, got {v!r}")
    lb, ub = ("[" if lo_inc else "(") + f"{lo:g}", f"{hi:g}" + ("]" if hi_inc else ")")
    if v < lo or (v == lo and not lo_inc):
        raise ValueError(f"{name}: parameter {k} must be {'>=' if lo_inc else '>'} {lo:g} (valid: {lb}, {ub}), got {v!r}")
    if v > hi or (v == hi and not hi_inc):
        raise ValueError(f"{name}: parameter {k} must be {'<=' if hi_inc else '<'} {hi:g} (valid: {lb}, {ub}), got {v!r}")
    return v


def make_objective(name: str, **overrides) -> Objective:
    """The objective ``name`` with its published defaults, updated by ``overrides``.

    A parameter tied to another (``beta1 = beta`` for the soft-value baselines
    ``opmd_lme`` and ``opmd_above``, whose defining relation is V = V*_beta,
    resp. V*_beta + delta beta) follows it unless given explicitly, so an
    override of ``beta`` keeps the objective what it is named after. The
    ``induced`` description is rendered from the actual parameters.

    Numbers may be Python, numpy or one-element torch scalars. Raises
    :class:`ValueError` for an unknown name (listing the valid ones), an
    unknown parameter, or a parameter outside its meaning (``beta`` not in
    (0, inf), ``eps_low`` not in (0, 1), ``dual_clip <= 1``, NaN, ...).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be an objective name (str), got {type(name).__name__}; valid: {', '.join(_SPECS)}")
    if name not in _SPECS:
        raise ValueError(f"unknown objective {name!r}; valid objectives: {', '.join(_SPECS)}")
    spec = _SPECS[name]
    params = dict(spec["params"])
    extra = set(overrides) - set(params)
    if extra:
        raise ValueError(f"objective {name!r} has no parameter(s) {sorted(extra)}; its parameters: {sorted(params)}")
    params.update(overrides)
    for k, v in params.items():
        if k in _NUMERIC and v is not None:
            params[k] = _as_number(name, k, v)
    for k, source in spec.get("ties", {}).items():
        if k not in overrides:
            params[k] = params[source]
    if params.get("kind") is not None and params["kind"] not in ("k1", "k2", "k3"):
        raise ValueError(f"{name}: kind must be one of k1, k2, k3, got {params['kind']!r}")
    if params.get("anchor") is not None and params["anchor"] not in ("behaviour", "reference"):
        raise ValueError(f"{name}: anchor must be 'behaviour' or 'reference', got {params['anchor']!r}")
    kappa_min = spec.get("kappa_min", 0.0)
    if kappa_min == "-beta":
        kappa_min = -params["beta"]
    needs = tuple(spec.get("needs", ()))
    if params.get("kl_beta", 0.0) > 0 and "ref" not in needs:
        needs = needs + ("ref",)
    if params.get("anchor") == "reference" and "ref" not in needs:
        needs = needs + ("ref",)
    return Objective(
        name=name,
        family=spec["family"],
        params=MappingProxyType(params),
        advantage=spec["advantage"],
        aggregation=spec["agg"],
        level=spec.get("level", "token"),
        needs=needs,
        equation=spec["equation"],
        nominal=spec["nominal"],
        induced=spec["induced"](params) if callable(spec["induced"]) else spec["induced"],
        source=spec["source"],
        target_kind=spec["kind"],
        _loss=_LOSSES[spec["loss"]],
        _weight=_WEIGHTS[spec["weight"]],
        _closed_form=spec["closed"],
        _adv_params=tuple(spec.get("adv_params", ())),
        _face_point=spec.get("face"),
        _signal=spec.get("signal", "adv"),
        kappa_min=float(kappa_min),
    )
