r"""The objective zoo's comparison table: nominal target, induced target, regime and pessimism.

``python -m theory.zoo_table [--out docs/zoo_table.md] [--bandit NAME ...] [--overwrite]`` writes one markdown
table with a row per objective of ``theory.objectives.OBJECTIVES`` and, on each
standard bandit (``theory.bandits.STANDARD_BANDITS``), the measures of
docs/theory.md section 5 for the objective's induced target, followed by one detail
table per bandit (the target itself, arm by arm).

The table holds nothing that depends on the run (no timing, no date), so the
command regenerates ``docs/zoo_table.md`` byte for byte and a test checks that
the committed file is current. Writing over a file that holds the same text is
allowed; a file with other text is replaced only with ``--overwrite``.

How each target is obtained, and what is reported:

* **closed form** (``target_kind`` ``lambert``, ``gibbs``, ``linear``,
  ``vertex``): ``obj.induced_target(..., method="closed-form")``; rows the
  closed form leaves undefined (a collapse) go to the flow inside that call.
  A ``vertex`` target with several arms tied for the largest advantage is
  *set-valued*: every policy supported on the tied arms maximizes
  :math:`E_\pi[A]`. The face is reported, not the arm the closed form happens
  to pick.
* **KKT solver** (``target_kind == "kkt"``): ``method="kkt"`` (again with the
  flow for rows that collapse onto one arm).
* **PPO-clip family** (``target_kind == "lp"`` with a clip range and no
  importance cap: PPO, dual-clip PPO, GRPO, Dr. GRPO, DAPO, GSPO): the target
  is the optimal face of the clipped surrogate, a linear program on the
  simplex (``theory.induced.ppo_clip_target_set``), reported as the range
  :math:`[\pi^{\min}_y, \pi^{\max}_y]` of every arm. When that face is the
  polytope :math:`P = \{\pi^{\min}\le\pi\le\pi^{\max},\ \sum_y\pi_y = 1\}`
  (checked: every vertex of :math:`P` attains the LP's optimal value of the
  objective's own population surrogate, computed with ``obj.loss``; the face
  is convex and always inside :math:`P`), the ranges of reward, entropy and
  :math:`\mathrm{KL}(\pi\|\mu)` over the face are exact: linear and convex
  extremes in closed form (greedy filling, clipped tilts), concave / convex
  maxima at a vertex of :math:`P`, enumerated. Otherwise those columns say
  "not computed".
* **other ``lp`` objectives** (TIS, M2PO): the logit flow
  (``theory.flow.logit_flow`` with ``obj.weight``). Its point is reported
  when the integration succeeds, marked certified or not by the flow's own
  convergence test (and, if not, compared with the KKT solver when that
  solver converges). A failed integration is reported as "not computed".

Measures per target (nats, reward units): :math:`\eta` for the Lambert-type
targets (:math:`u = W_0(\eta e^{A/\beta})/\eta`, from
``theory.lambert.lambert_target``) and their regime (``regime_of``); the
pessimism ratio :math:`\beta_{\mathrm{eff}}/\beta` (equal KL,
``theory.measures.beta_eff_kl``) for objectives whose nominal target is a
Gibbs target at a temperature :math:`\beta` (TPO's is Gibbs in the z-scored
reward, i.e. temperature :math:`\beta\,\mathrm{sd}_\mu(r)` in reward units);
:math:`\mathrm{KL}(\pi\|\mu)`, :math:`E_\pi[r]` and :math:`H(\pi)` for all.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .bandits import STANDARD_BANDITS, Bandit
from .induced import population_surrogate, ppo_clip_target_set
from .lambert import lambert_target, regime_of
from .measures import REGIME_NAMES, beta_eff_kl, entropy, expected_reward, kl
from .objectives import OBJECTIVES, make_objective
from .outputs import CommandParser, UsageError, atomic_write_text, cli_main, guard_outputs
from .values import gibbs_target

__all__ = ["zoo_rows", "render_markdown", "nominal_temperature", "polytope_ranges", "main"]

#: Default output of ``python -m theory.zoo_table`` (relative to the repository root).
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "zoo_table.md"

#: A point target counts as certified when its stationarity residual is below this.
RESIDUAL_TOL = 1e-8

#: Largest number of free arms (``pi_min < pi_max``) for which the vertices of a face are enumerated.
MAX_ENUM_ARMS = 18

#: Character of the induced target, by ``target_kind``, for the non-Lambert objectives.
_CHARACTER = {
    "gibbs": "Gibbs",
    "vertex": "vertex (greedy)",
    "linear": "linear tilt",
    "kkt": "thresholded linear tilt (KKT)",
    "numerical": "numerical (flow)",
    "flow": "numerical (integrated flow)",
}


# ---------------------------------------------------------------------------
# nominal targets
# ---------------------------------------------------------------------------


def nominal_temperature(obj, mu, r) -> float | None:
    r"""Temperature, in reward units, of the objective's nominal Gibbs target on ``(mu, r)``; None if it has none.

    Objectives with a parameter ``beta`` are named after :math:`\pi_\beta \propto \mu e^{r/\beta}`
    (a constant baseline does not change a Gibbs target). TPO's advantage is
    the z-scored reward, so its nominal :math:`\mu e^{z/\beta}` is the Gibbs
    target at :math:`\beta\,\mathrm{sd}_\mu(r)`.
    """
    if "beta" not in obj.params:
        return None
    beta = float(obj.params["beta"])
    if obj.advantage == "zscore":
        mean = float(mu @ r)
        sd = math.sqrt(float(mu @ (r - mean) ** 2))
        return beta * sd if sd > 1e-6 else beta
    return beta


def _nominal_measures(obj, mu, r) -> dict:
    """Reward, entropy and KL(pi||mu) of the nominal target (Gibbs, greedy, or None for a trust region)."""
    beta = nominal_temperature(obj, mu, r)
    if beta is not None:
        pi = gibbs_target(mu, r, beta)
    elif obj.nominal.startswith("greedy") and "trust region" not in obj.nominal:
        best = (mu > 0) & (r >= np.max(r[mu > 0]) - 1e-12 * max(1.0, abs(np.max(r))))
        pi = np.where(best, mu, 0.0) / mu[best].sum()
    else:
        return {"nominal_reward": None, "nominal_entropy": None, "nominal_kl": None}
    return {
        "nominal_reward": float(expected_reward(pi, r)),
        "nominal_entropy": float(entropy(pi)),
        "nominal_kl": float(kl(pi, mu)),
    }


# ---------------------------------------------------------------------------
# set-valued targets: the polytope {lo <= pi <= hi, sum pi = 1}
# ---------------------------------------------------------------------------


def _fill(lo, hi, order):
    """The vertex of P that fills the arms in ``order`` up to ``hi``, starting from ``lo``."""
    pi = lo.copy()
    left = 1.0 - lo.sum()
    for y in order:
        add = min(hi[y] - lo[y], max(left, 0.0))
        pi[y] += add
        left -= add
    return pi


def _clipped_tilt(lo, hi, base, log_scale: bool):
    """``clip(t * base, lo, hi)`` (or ``clip(t, lo, hi)``) with t chosen so the sum is 1 (bisection)."""

    def total(t):
        return np.clip(t * base if log_scale else np.full_like(lo, t), lo, hi).sum()

    if log_scale:
        a, b = 1e-300, 1e300
        for _ in range(2000):
            m = math.sqrt(a * b)
            if total(m) < 1.0:
                a = m
            else:
                b = m
            if b / a - 1.0 < 1e-15:
                break
        t = math.sqrt(a * b)
        return np.clip(t * base, lo, hi)
    a, b = 0.0, 1.0
    for _ in range(200):
        m = 0.5 * (a + b)
        if total(m) < 1.0:
            a = m
        else:
            b = m
    return np.clip(0.5 * (a + b), lo, hi)


def _vertices(lo, hi):
    """All vertices of P = {lo <= pi <= hi, sum = 1}, shape (N, K); None if there are too many free arms."""
    free = np.flatnonzero(hi - lo > 1e-15)
    K = lo.size
    if free.size == 0:
        return lo[None].copy()
    if free.size > MAX_ENUM_ARMS:
        return None
    nf = free.size
    out = []
    bits = (np.arange(2 ** (nf - 1))[:, None] >> np.arange(nf - 1)) & 1  # (2^(nf-1), nf-1)
    for jj, j in enumerate(free):
        others = np.delete(free, jj)
        base = np.broadcast_to(lo, (bits.shape[0], K)).copy()
        base[:, others] = np.where(bits == 1, hi[others], lo[others])
        base[:, j] = 0.0
        pj = 1.0 - base.sum(-1)
        ok = (pj >= lo[j] - 1e-12) & (pj <= hi[j] + 1e-12)
        base[:, j] = np.clip(pj, lo[j], hi[j])
        out.append(base[ok])
    v = np.concatenate(out)
    return np.unique(np.round(v, 15), axis=0)


def polytope_ranges(lo, hi, mu, r, vertices=None) -> dict:
    r"""Ranges of :math:`E_\pi[r]`, :math:`H(\pi)` and :math:`\mathrm{KL}(\pi\|\mu)` over ``P``.

    ``P = {lo <= pi <= hi, sum pi = 1}`` (shapes ``(K,)``, ``mu > 0`` where
    ``hi > 0``). Reward: greedy filling (exact). Entropy maximum: the clipped
    uniform :math:`\mathrm{clip}(t, lo, hi)`; KL minimum: the clipped tilt
    :math:`\mathrm{clip}(t\mu, lo, hi)` (the KKT points of these convex
    problems, exact up to the bisection). Entropy minimum and KL maximum (a
    concave / convex function's extreme over a polytope): at a vertex, by
    enumeration (``None`` past :data:`MAX_ENUM_ARMS` free arms).

    Returns a dict of ``(min, max)`` pairs: ``reward``, ``entropy``, ``kl``.
    """
    order = np.argsort(-r, kind="stable")
    r_max = float(_fill(lo, hi, order) @ r)
    r_min = float(_fill(lo, hi, order[::-1]) @ r)
    h_max = float(entropy(_clipped_tilt(lo, hi, None, log_scale=False)))
    kl_min = float(kl(_clipped_tilt(lo, hi, np.where(mu > 0, mu, 0.0), log_scale=True), mu))
    v = _vertices(lo, hi) if vertices is None else vertices
    if v is None:
        return {"reward": (r_min, r_max), "entropy": (None, h_max), "kl": (kl_min, None)}
    v = np.clip(v, 0.0, None)
    v = v / v.sum(-1, keepdims=True)
    return {
        "reward": (r_min, r_max),
        "entropy": (float(entropy(v).min()), h_max),
        "kl": (kl_min, float(kl(v, mu).max())),
    }


# ---------------------------------------------------------------------------
# one objective on one bandit
# ---------------------------------------------------------------------------


def _point_measures(pi, mu, r) -> dict:
    return {"kl": float(kl(pi, mu)), "reward": float(expected_reward(pi, r)), "entropy": float(entropy(pi))}


def _face_entry(obj, b: Bandit, adv, lo, hi, method: str, certify) -> dict:
    verts = _vertices(lo, hi)
    note = ""
    exact = True
    if certify is not None:
        if verts is None:
            exact, note = False, "face not enumerated (too many free arms)"
        else:
            exact, note = certify(verts)
    e = {"method": method, "set_valued": True, "certified": exact, "note": note, "pi": None,
         "pi_min": lo, "pi_max": hi}
    if exact:
        e.update(polytope_ranges(lo, hi, b.mu, b.r, verts))
    else:
        e.update({"reward": None, "entropy": None, "kl": None})
    return e


#: Integrator steps a numerical target's flow may take (``theory.flow.logit_flow``'s ``max_steps``): past
#: them the entry says the integrator failed instead of the table taking minutes on one bandit.
FLOW_STEP_BUDGET = 5_000
#: Integrator steps between two checkpoints of that flow (``logit_flow``'s ``stall_steps``): a flow that
#: reaches its limit in this table takes at most 471 between checkpoints; the three that exhaust the budget
#: take thousands without reaching the next one (they chatter across a mask), and stop after this many.
FLOW_STALL_STEPS = 1_500


def _flow_entry(obj, b: Bandit, adv) -> dict:
    from .flow import logit_flow

    mu_t = torch.as_tensor(b.mu, dtype=torch.float64)
    fr = logit_flow(b.mu, adv, weight=lambda u, a: obj.weight(u, a, mu_t), max_steps=FLOW_STEP_BUDGET,
                    stall_steps=FLOW_STALL_STEPS)
    if fr.message != "ok":
        return _euler_entry(obj, b, f"the flow's integrator failed ({fr.message.split(':')[0]})")
    conv = bool(np.all(fr.converged))
    note = ""
    if not conv:
        note = f"not certified: flow plateau {float(fr.plateau):.1e} at tau = {float(fr.t_final):.0e}"
        try:
            sol = obj.induced_target(b.mu[None], b.r[None], method="kkt")
            if sol.method == "kkt" and bool(sol.converged[0]):
                note += f"; max |pi_KKT - pi_flow| = {np.abs(sol.pi[0] - fr.pi).max():.0e}"
        except ValueError:
            pass
    e = {"method": "flow", "set_valued": False, "certified": conv, "note": note, "pi": fr.pi}
    e.update(_point_measures(fr.pi, b.mu, b.r))
    return e


def _euler_entry(obj, b: Bandit, why: str) -> dict:
    """Explicit Euler's point (``induced_target(method='euler')``, its certificate) where the stiff flow failed."""
    it = obj.induced_target(b.mu[None], b.r[None], method="euler")
    pi, ok = it.pi[0], bool(it.converged[0]) and bool(np.isfinite(it.pi[0]).all())
    note = f"{why}; explicit Euler's point" + ("" if ok else ", not certified (it stopped on a clip or mask plateau, "
                                                            "or did not stop)")
    e = {"method": "Euler", "set_valued": False, "certified": ok, "note": note, "pi": pi}
    e.update(_point_measures(pi, b.mu, b.r))
    return e


def _entry(obj, b: Bandit) -> dict:
    mu, r = b.mu, b.r
    adv = obj.population_advantage(mu, r)
    kind = obj.target_kind
    if obj.lp_clip:
        value, lo, hi = ppo_clip_target_set(mu, adv, obj.params["eps_low"], obj.params.get("eps_high"))
        tol = 1e-7 * max(1.0, abs(value))

        def certify(verts):
            J = population_surrogate(obj, verts, mu, adv)
            ok = bool(np.all(np.abs(J - value) <= tol))
            return ok, "" if ok else f"face is not the box of arm ranges (max |J - J*| = {np.abs(J - value).max():.1e})"

        return _face_entry(obj, b, adv, lo, hi, "LP face", certify)
    if kind in ("lp", "numerical", "flow"):
        return _flow_entry(obj, b, adv)
    method = "closed-form" if kind in ("lambert", "gibbs", "linear", "vertex") else "kkt"
    it = obj.induced_target(mu[None], r[None], method=method)
    pi = it.pi[0]
    if bool(it.set_valued[0]):  # tied advantages on a plateau of h/u: a face of fixed points
        e = _face_entry(obj, b, adv, it.pi_min[0], it.pi_max[0], "tie face", None)
        free = int(((it.pi_max[0] - it.pi_min[0]) > 1e-9).sum())
        reached = ("the flow from mu reaches " + _runs([_num(x) for x in pi])) if bool(it.converged[0]) else (
            "the flow's point on it is not certified")
        e["note"] = f"{free} tied arms: every point of the face is stationary; {reached}"
        return e
    ok = bool(it.converged[0]) and bool(np.isfinite(pi).all())
    if ok and "flow" not in it.method:
        ok = float(it.residual[0]) <= RESIDUAL_TOL
    note = "" if ok else f"not certified (residual {float(it.residual[0]):.1e})"
    if "flow" in it.method:
        note = ("limit reached by the flow (no interior solution)" if ok else
                "flow to the boundary, not certified by its convergence test")
    e = {"method": it.method, "set_valued": False, "certified": ok, "note": note, "pi": pi}
    e.update(_point_measures(pi, mu, r))
    return e


def target_measures(obj, b: Bandit) -> dict:
    """The table's entry for ``obj`` on bandit ``b``: its induced target (or target set), how it was found and
    certified, its reward, entropy and KL, eta and the regime, and the nominal target's measures."""
    t0 = time.perf_counter()
    e = _entry(obj, b)
    adv = obj.population_advantage(b.mu, b.r)
    e["eta"] = e["regime"] = None
    if obj.target_kind == "lambert":
        beta = float(obj.params["beta"])
        e["eta"] = float(lambert_target(b.mu, adv, beta)[1])
        e["regime"] = REGIME_NAMES[int(regime_of(b.mu, adv, beta))]
    beta_nom = nominal_temperature(obj, b.mu, b.r)
    e["beta_nominal"] = beta_nom
    e["pessimism"] = None
    if beta_nom is not None and e["kl"] is not None:
        if e["set_valued"]:
            hi_kl, lo_kl = e["kl"][1], e["kl"][0]
            e["pessimism"] = (
                None if hi_kl is None else float(beta_eff_kl(b.mu, b.r, hi_kl)) / beta_nom,
                float(beta_eff_kl(b.mu, b.r, lo_kl)) / beta_nom,
            )
        elif e["certified"]:  # beta_eff is ill-conditioned near the greedy limit: only for certified points
            e["pessimism"] = float(beta_eff_kl(b.mu, b.r, e["kl"])) / beta_nom
    e.update(_nominal_measures(obj, b.mu, b.r))
    e["seconds"] = time.perf_counter() - t0
    return e


def _character(obj, entries: dict) -> str:
    if obj.target_kind == "lambert":
        regimes = {e["regime"] for e in entries.values()}
        if len(regimes) == 1:
            return regimes.pop()
        return ", ".join(f"{n}: {e['regime']}" for n, e in entries.items())
    if obj.lp_clip:
        return "set-valued (LP face)"
    if obj.target_kind == "lp":
        return "numerical (flow)"
    char = _CHARACTER[obj.target_kind]
    if any(e["method"] == "tie face" for e in entries.values()):
        char += "; set-valued on ties"
    return char


def _induced_text(obj) -> str:
    if obj.lp_clip:
        return "set-valued: optimal face of the clipped-surrogate LP (per-arm ranges)"
    if obj.target_kind == "lp":
        return obj.induced if obj.induced.startswith("numerical") else f"numerical: flow ({obj.induced})"
    return obj.induced


def zoo_rows(bandits=None, objectives=None, *, progress: bool = False) -> list[dict]:
    """One dict per objective: its description and, per bandit, the induced target and its measures.

    Parameters
    ----------
    bandits : dict of name -> Bandit, optional
        Default: ``STANDARD_BANDITS``.
    objectives : sequence of str, optional
        Default: every name in ``OBJECTIVES`` (published settings).
    progress : bool
        Show a progress bar over the objectives on stderr (tqdm).

    Returns
    -------
    list of dict
        Keys ``objective``, ``family``, ``params``, ``nominal``, ``induced``,
        ``target_kind``, ``regime`` (the regime, or the target's character) and
        ``bandits``: bandit name -> dict with ``method``, ``set_valued``,
        ``certified``, ``note``, ``pi`` ((K,) or None), ``pi_min``/``pi_max``
        (set-valued only), ``eta``, ``regime``, ``beta_nominal``,
        ``pessimism`` (:math:`\\beta_{eff}/\\beta`), ``kl``, ``reward``,
        ``entropy`` (floats, ``(min, max)`` pairs for a set, or None when not
        computed), ``nominal_reward``/``nominal_entropy``/``nominal_kl`` and
        ``seconds``.
    """
    bandits = STANDARD_BANDITS if bandits is None else bandits
    names = OBJECTIVES if objectives is None else tuple(objectives)
    rows = []
    bar = tqdm(names, desc="zoo table", unit="objective", disable=not progress, leave=False, file=sys.stderr)
    for name in bar:
        bar.set_postfix_str(name)
        obj = make_objective(name)
        entries = {bn: target_measures(obj, b) for bn, b in bandits.items()}
        rows.append({
            "objective": name,
            "family": obj.family,
            "params": dict(obj.params),
            "nominal": obj.nominal,
            "induced": _induced_text(obj),
            "target_kind": obj.target_kind,
            "regime": _character(obj, entries),
            "bandits": entries,
        })
    return rows


# ---------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------


def _num(x, digits=3) -> str:
    if x is None:
        return "n/c"
    if isinstance(x, tuple):
        return f"[{_num(x[0], digits)}, {_num(x[1], digits)}]"
    if x == 0:
        return "0"
    if math.isinf(x):
        return "∞"
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _code(s: str) -> str:
    return "`" + s.replace("|", "\\|") + "`"


def _runs(values: list[str]) -> str:
    """Comma-joined values with repeats folded: ``0.1, 0.05×15``."""
    out, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        out.append(values[i] + (f"×{j - i + 1}" if j > i else ""))
        i = j + 1
    return ", ".join(out)


def _pi_text(e) -> str:
    if e["set_valued"]:
        return _runs([f"[{_num(a)}, {_num(b)}]" for a, b in zip(e["pi_min"], e["pi_max"])])
    if e["pi"] is None:
        return "not computed"
    return _runs([_num(p) for p in e["pi"]])


def _pessimism_text(e) -> str:
    if e["eta"] is not None:
        return f"η {_num(e['eta'])}" + (f" (β_eff/β {_ratio_text(e['pessimism'])})" if e["pessimism"] is not None else "")
    if e["beta_nominal"] is not None:
        return f"β_eff/β {_ratio_text(e['pessimism'])}"
    return f"KL {_num(e['kl'])}"


def _ratio_text(p) -> str:
    if p is None:
        return "n/c"
    if isinstance(p, tuple):
        return "[" + ", ".join(_ratio_text(x) for x in p) + "]"
    if p == 0:
        return "→0 (KL ≥ greedy)"
    return _num(p)


def _cell(e) -> str:
    if e["pi"] is None and not e["set_valued"]:
        return "not computed"
    star = "" if e["certified"] or e["set_valued"] else " †"
    return f"{_pessimism_text(e)}{star}<br>E r {_num(e['reward'])} · H {_num(e['entropy'])}"


def render_markdown(rows, bandits=None) -> str:
    """The comparison table (and one detail table per bandit) as markdown; nothing in it depends on the run."""
    bandits = STANDARD_BANDITS if bandits is None else bandits
    bn = list(bandits)
    L = [
        "# The objective zoo: nominal against induced targets",
        "",
        "Generated by `python -m theory.zoo_table` (do not edit by hand). Every objective of",
        "`theory.objectives.OBJECTIVES` at its published settings, on the standard bandits of",
        "`theory.bandits` (population advantages, `mu` held fixed: the target that many gradient",
        "steps on one batch of lagged data drive a tabular softmax policy to). See the module",
        "docstring of `theory/zoo_table.py` for how each target is computed.",
        "",
        "Per bandit: **η** (Lambert-type targets, `u = W0(η e^{A/β})/η`; sign = regime), or the",
        "**pessimism ratio β_eff/β** (the Gibbs temperature with the same KL(π‖μ), over the",
        "nominal temperature; > 1 = more conservative than the nominal target) for objectives",
        "named after a Gibbs target, or **KL(π‖μ)** (nats) for objectives without a temperature;",
        "then the target's expected reward **E r** and entropy **H** (nats). `[a, b]`: range",
        "over a set-valued target. † : a numerical point not certified by its solver (see the",
        "detail tables; no β_eff/β is given for those). `n/c`: not computed. `→0 (KL ≥ greedy)`:",
        "the target is at least as far from μ as the greedy limit of the Gibbs family, so the",
        "equal-KL temperature is 0 and KL cannot measure pessimism there.",
        "",
        "| bandit | arms | μ | r |",
        "|---|---|---|---|",
    ]
    for name, b in bandits.items():
        L.append(f"| {name} | {b.mu.size} | {_runs([_num(x) for x in b.mu])} | {_runs([_num(x) for x in b.r])} |")
    L += ["", "## Comparison", ""]
    L.append("| objective | family | nominal target | induced target | regime / character | " + " | ".join(bn) + " |")
    L.append("|---" * (5 + len(bn)) + "|")
    for row in rows:
        cells = [f"`{row['objective']}`", row["family"], _code(row["nominal"]), _code(row["induced"]), row["regime"]]
        cells += [_cell(row["bandits"][n]) for n in bn]
        L.append("| " + " | ".join(cells) + " |")
    for name in bn:
        b = bandits[name]
        L += ["", f"## Bandit `{name}`", "", b.description + ".", ""]
        L.append("| objective | computed by | π (per arm) | η | β_eff/β | KL(π‖μ) | E_π[r] | H(π) | nominal E[r] | nominal H | note |")
        L.append("|---" * 11 + "|")
        for row in rows:
            e = row["bandits"][name]
            L.append("| " + " | ".join([
                f"`{row['objective']}`",
                e["method"],
                _pi_text(e),
                "—" if e["eta"] is None else _num(e["eta"]),
                _ratio_text(e["pessimism"]) if e["beta_nominal"] is not None else "—",
                _num(e["kl"]),
                _num(e["reward"]),
                _num(e["entropy"]),
                "—" if e["nominal_reward"] is None else _num(e["nominal_reward"]),
                "—" if e["nominal_entropy"] is None else _num(e["nominal_entropy"]),
                e["note"].replace("|", "\\|"),
            ]) + " |")
    flagged = [(row["objective"], n, e["note"]) for row in rows for n, e in row["bandits"].items()
               if (e["pi"] is None and not e["set_valued"]) or not e["certified"]]
    if flagged:
        L += ["", "## Not computed or not certified", ""]
        L += [f"- `{o}` on `{n}`: {note}" for o, n, note in flagged]
    return "\n".join(L) + "\n"


def parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="python -m theory.zoo_table",
        description="Write the objective zoo's comparison table (markdown). The same code gives the same bytes; "
                    "an existing file with other text is replaced only with --overwrite.",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="markdown file to write (default: docs/zoo_table.md of the repository)")
    p.add_argument("--bandit", action="append", choices=list(STANDARD_BANDITS), default=None, metavar="NAME",
                   help=f"standard bandit to include, repeatable; one of: {', '.join(STANDARD_BANDITS)} (default: all)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing file whose text differs (default: off; refuse and name the file)")
    return p


@cli_main
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    out = args.out
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name, e.g. {out / 'zoo_table.md'}")
    if out.parent.exists() and not out.parent.is_dir():
        raise UsageError(f"--out {out}: {out.parent} is a file, not a folder; choose another output path")
    bandits = {n: STANDARD_BANDITS[n] for n in dict.fromkeys(args.bandit or STANDARD_BANDITS)}
    t0 = time.perf_counter()
    rows = zoo_rows(bandits, progress=True)
    secs = time.perf_counter() - t0
    text = render_markdown(rows, bandits)
    if out.is_file() and out.read_bytes() == text.encode("utf-8"):
        print(f"{out} is up to date ({len(rows)} objectives, {secs:.1f}s)", file=sys.stderr)
        return 0
    guard_outputs([out] if out.is_file() else [], overwrite=args.overwrite, what="table")
    atomic_write_text(out, text)
    print(f"wrote {out} ({len(rows)} objectives, {secs:.1f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
