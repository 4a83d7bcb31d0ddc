r"""The sweeps behind the lag figures: data (a sweep), a run, cached tidy results.

* ``fig04_lag`` (:class:`LagSweep`): pessimism against lag. For every
  objective x group size G x lag L, :func:`sims.bandit.simulate` trains all
  seeds at once on the ``graded`` bandit (docs/theory.md section 7 (c)); recorded
  over training: reward, entropy, KL(mu||pi), KL(pi||pi_0), distances to the
  induced and nominal targets, eta, gradient variance, ESS.
* ``fig05_stability`` (:class:`StabilitySweep`): spectral radius of the exact
  delayed iteration at its fixed point over lag x step size, ratio-based
  against ratio-free objectives (:func:`sims.lag.stability_map`).

Every grid is validated as a whole before anything is computed: a bad cell
(negative lag, unknown objective, G < 2 for an advantage that needs a
standard deviation or a leave-one-out, ...) raises one :class:`ValueError`
that lists every problem and what to change.

Results are written atomically, with their config, to a cache folder
(``NAME.npz`` + ``NAME.json``; ``NAME_smoke`` for the smoke preset): the
``results_dir`` argument, else the environment variable
``PESSIMISM_RESULTS_DIR``, else ``figures/results/`` (git-ignored; tests point
it to a temporary folder). :func:`load_or_run` returns the cached arrays when
the stored config equals the requested one, and recomputes otherwise::

    arrays, config = load_or_run("fig04_lag", smoke=True)
    arrays["reward"]          # (objective, group_size, lag, step, seed)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
import os
from pathlib import Path

import numpy as np

from .bandit import METRIC_AXES, BanditSimConfig, load_results, save_results, simulate
from .lag import stability_maps

__all__ = [
    "DEFAULT_RESULTS_DIR",
    "SWEEPS",
    "LagSweep",
    "StabilitySweep",
    "lag_sweep",
    "stability_sweep",
    "run_lag_sweep",
    "run_stability_sweep",
    "load_or_run",
    "result_path",
]

#: Where :func:`load_or_run` keeps results (the environment variable
#: ``PESSIMISM_RESULTS_DIR`` overrides it).
DEFAULT_RESULTS_DIR = Path(__file__).resolve().parents[1] / "figures" / "results"

#: Objectives whose induced target is set-valued (computed by the flow): not tracked per step in a sweep.
_SLOW_TARGETS = ("lp",)


def _freeze_overrides(overrides) -> tuple:
    """{objective: {param: value}} -> sorted ((objective, ((param, value), ...)), ...)."""
    if not overrides:
        return ()
    items = overrides.items() if isinstance(overrides, dict) else overrides
    out = []
    for name, params in items:
        p = params.items() if isinstance(params, dict) else params
        out.append((str(name), tuple(sorted((str(k), v) for k, v in p))))
    return tuple(sorted(out))


def _json_normal(d):
    """A dict as it comes back from JSON (tuples -> lists), for comparing configs."""
    return json.loads(json.dumps(d, sort_keys=True))


# ----------------------------------------------------------------------------- figure 4: pessimism against lag


@dataclass(frozen=True)
class LagSweep:
    """Objectives x group sizes x lags on one base simulator config (seeds inside each cell)."""

    objectives: tuple = ("pg", "grpo", "asymre", "opmd", "oapl", "shifted_regression", "awr")
    """Names in ``theory.objectives.OBJECTIVES``."""
    lags: tuple = (0, 1, 4, 16, 64)
    """L values (>= 0)."""
    group_sizes: tuple = (4, 16)
    """G values."""
    base: BanditSimConfig = field(default_factory=lambda: BanditSimConfig.full(objective="pg"))
    """Everything else (bandit, optimizer, lr, steps, seeds, ...); its objective, lag and G are replaced per cell."""
    objective_params: tuple = ()
    """Per-objective overrides of the zoo's defaults: {objective: {param: value}} or pairs."""
    track_set_valued_targets: bool = False
    """Also track the induced target of set-valued objectives (PPO-type: the flow, slow)."""

    def __post_init__(self):
        object.__setattr__(self, "objective_params", _freeze_overrides(self.objective_params))
        for name in ("objectives", "lags", "group_sizes"):
            v = getattr(self, name)
            if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
                raise ValueError(f"{name} must be a sequence, got {v!r}")
            object.__setattr__(self, name, tuple(v))
        if not isinstance(self.base, BanditSimConfig):
            raise ValueError(f"base must be a BanditSimConfig, got {type(self.base).__name__}")

    def cells(self) -> list[tuple[str, int, int, BanditSimConfig]]:
        """Every ``(objective, G, L, config)`` of the grid; raises one ValueError listing every invalid cell."""
        problems = []
        for label, values in (("objectives", self.objectives), ("lags", self.lags), ("group_sizes", self.group_sizes)):
            if len(values) == 0:
                problems.append(f"{label} is empty: give at least one value")
            elif len(set(values)) != len(values):
                problems.append(f"{label} has duplicates {list(values)}: list each value once")
        unknown_over = sorted({name for name, _ in self.objective_params} - set(self.objectives))
        if unknown_over:
            problems.append(
                f"objective_params names {unknown_over}, which are not in objectives {list(self.objectives)}"
            )
        overrides = dict(self.objective_params)
        out = []
        seen = set()
        for obj in self.objectives:
            for G in self.group_sizes:
                for L in self.lags:
                    try:
                        cfg = self.base.replace(
                            objective=obj, objective_params=overrides.get(obj, ()), lag=L, group_size=G
                        )
                        if cfg.track_target and not self.track_set_valued_targets:
                            if cfg.make_objective().target_kind in _SLOW_TARGETS:
                                cfg = cfg.replace(track_target=False)
                        out.append((obj, G, L, cfg))
                    except ValueError as err:
                        msg = f"objective={obj!r}, group_size={G!r}, lag={L!r}: {err}"
                        key = str(err)
                        if key not in seen:  # one line per distinct problem
                            problems.append(msg)
                            seen.add(key)
        if problems:
            raise ValueError("invalid sweep (nothing was run); fix these:\n  - " + "\n  - ".join(problems))
        return out

    def validate(self) -> None:
        """Raise :class:`ValueError` if any cell of the grid is invalid (see :meth:`cells`)."""
        self.cells()

    def to_dict(self) -> dict:
        return {
            "kind": "LagSweep",
            "objectives": list(self.objectives),
            "lags": list(self.lags),
            "group_sizes": list(self.group_sizes),
            "base": self.base.to_dict(),
            "objective_params": {k: dict(v) for k, v in self.objective_params},
            "track_set_valued_targets": self.track_set_valued_targets,
        }


def lag_sweep(smoke: bool = False) -> LagSweep:
    """Figure 4's sweep. Full: 32 seeds x 300 steps; smoke: 4 seeds x 50 steps (same grid)."""
    if smoke:
        base = BanditSimConfig(objective="pg", num_seeds=4, steps=50, group_size=16, inner_steps=2, target_every=10)
    else:
        base = BanditSimConfig.full(objective="pg")
    return LagSweep(base=base)


def run_lag_sweep(sweep: LagSweep, *, progress: bool = True) -> dict:
    """Run every cell (validated first); returns tidy arrays.

    Returns
    -------
    dict of str -> ndarray
        Every metric of :data:`sims.bandit.METRIC_AXES`, averaged over
        contexts, with axes ``(objective, group_size, lag, step, seed)``
        (``grad_var``: ``(objective, group_size, lag, step)``); coordinates
        ``objective`` (str), ``group_size``, ``lag``, ``step``, ``seed``; and
        ``final_policy`` ``(objective, group_size, lag, seed, context, K)``.
    """
    cells = sweep.cells()  # validates the whole grid before any compute
    nO, nG, nL = len(sweep.objectives), len(sweep.group_sizes), len(sweep.lags)
    T, S = sweep.base.steps, sweep.base.num_seeds
    arrays = {}
    for name, axes in METRIC_AXES.items():
        shape = (nO, nG, nL, T) if axes == ("step",) else (nO, nG, nL, T, S)
        arrays[name] = np.full(shape, np.nan)
    final = None
    bar = _progress_bar(total=len(cells) * T, enabled=progress, desc="fig04 lag sweep")
    try:
        for obj, G, L, cfg in cells:
            i, j, k = sweep.objectives.index(obj), sweep.group_sizes.index(G), sweep.lags.index(L)
            bar.set_postfix_str(f"{obj} G={G} L={L}")
            res = simulate(cfg, progress=bar.update)
            for name, v in res.metrics.items():
                arrays[name][i, j, k] = v if v.ndim == 1 else v.mean(-1)
            if final is None:
                final = np.full((nO, nG, nL) + res.final_policy.shape, np.nan)
            final[i, j, k] = res.final_policy
    finally:
        bar.close()
    arrays.update(
        final_policy=final,
        objective=np.array(sweep.objectives),
        group_size=np.array(sweep.group_sizes),
        lag=np.array(sweep.lags),
        step=np.arange(T),
        seed=sweep.base.seed + np.arange(S),
    )
    return arrays


# ----------------------------------------------------------------------------- figure 5: stability maps


@dataclass(frozen=True)
class StabilitySweep:
    """Spectral radius of the delayed iteration over objectives x lags x step sizes (:func:`sims.lag.stability_map`)."""

    objectives: tuple = ("pg", "ppo", "grpo", "asymre", "awr", "opmd", "shifted_regression")
    lags: tuple = (0, 1, 2, 4, 8, 16, 32, 64)
    lrs: tuple = tuple(float(x) for x in np.logspace(-1, 3, 25))
    bandit: str = "graded"
    rule: str = "gradient"
    inner_steps: int = 1
    flat: bool = True

    def __post_init__(self):
        for name in ("objectives", "lags", "lrs"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def validate(self) -> None:
        """Check the grid before any compute (one ValueError listing every problem)."""
        from theory.bandits import STANDARD_BANDITS
        from theory.objectives import OBJECTIVES

        from .lag import RULES

        problems = []
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad:
            problems.append(f"unknown objective(s) {bad}; valid: {', '.join(OBJECTIVES)}")
        badL = [L for L in self.lags if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 0]
        if badL:
            problems.append(f"lags must be integers >= 0, got {badL}")
        badlr = [x for x in self.lrs if not (isinstance(x, (int, float)) and np.isfinite(x) and x > 0)]
        if badlr or not self.lrs:
            problems.append(f"lrs must be a non-empty list of finite numbers > 0, got {list(self.lrs)}")
        if self.bandit not in STANDARD_BANDITS:
            problems.append(f"unknown bandit {self.bandit!r}; valid: {', '.join(STANDARD_BANDITS)}")
        if self.rule not in RULES:
            problems.append(f"unknown rule {self.rule!r}; valid: {', '.join(RULES)}")
        if isinstance(self.inner_steps, bool) or not isinstance(self.inner_steps, int) or self.inner_steps < 1:
            problems.append(f"inner_steps must be an integer >= 1, got {self.inner_steps!r}")
        if problems:
            raise ValueError("invalid stability sweep (nothing was run); fix these:\n  - " + "\n  - ".join(problems))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["kind"] = "StabilitySweep"
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def stability_sweep(smoke: bool = False) -> StabilitySweep:
    """Figure 5's sweep; smoke: lags up to 16 and 9 step sizes."""
    if smoke:
        return StabilitySweep(lags=(0, 1, 2, 4, 16), lrs=tuple(float(x) for x in np.logspace(-1, 3, 9)))
    return StabilitySweep()


def run_stability_sweep(sweep: StabilitySweep, *, progress: bool = True) -> dict:
    """``radius`` and ``radius_transverse`` (objective, lag, lr), plus the coordinates."""
    sweep.validate()
    nO = len(sweep.objectives)
    radius = np.full((nO, len(sweep.lags), len(sweep.lrs)), np.nan)
    trans = np.full_like(radius, np.nan)
    bar = _progress_bar(total=nO, enabled=progress, desc="fig05 stability")
    try:
        for i, obj in enumerate(sweep.objectives):
            bar.set_postfix_str(obj)
            radius[i], trans[i] = stability_maps(
                obj, sweep.lags, sweep.lrs, sweep.bandit, rule=sweep.rule, inner_steps=sweep.inner_steps,
                obj_params=None, flat=sweep.flat, max_steps=2000, fixed_point_tol=1e-9,
            )
            bar.update(1)
    finally:
        bar.close()
    return {
        "radius": radius,
        "radius_transverse": trans,
        "objective": np.array(sweep.objectives),
        "lag": np.array(sweep.lags),
        "lr": np.array(sweep.lrs),
    }


# ----------------------------------------------------------------------------- registry and cache

#: name -> (preset(smoke) -> sweep, run(sweep, progress=) -> arrays)
SWEEPS = {
    "fig04_lag": (lag_sweep, run_lag_sweep),
    "fig05_stability": (stability_sweep, run_stability_sweep),
}


class _NoBar:
    """Stand-in for a tqdm bar when progress is off or tqdm is not installed."""

    def update(self, n=1):
        pass

    def set_postfix_str(self, s):
        pass

    def close(self):
        pass


def _progress_bar(total, enabled, desc):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency of the sweeps
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)


def result_path(name: str, smoke: bool = False, results_dir=None) -> Path:
    """``results_dir/NAME[_smoke]`` (no suffix; ``.npz`` and ``.json`` are added).

    ``results_dir`` None: ``$PESSIMISM_RESULTS_DIR`` when set, else :data:`DEFAULT_RESULTS_DIR`.
    """
    env = os.environ.get("PESSIMISM_RESULTS_DIR")
    d = Path(results_dir) if results_dir is not None else (Path(env) if env else DEFAULT_RESULTS_DIR)
    return d / (f"{name}_smoke" if smoke else name)


def load_or_run(name: str, smoke: bool = False, *, results_dir=None, sweep=None, force=False, progress=True):
    """Cached results of the sweep ``name``, recomputed when absent or made with another config.

    Parameters
    ----------
    name : str
        A key of :data:`SWEEPS`.
    smoke : bool
        The smoke preset (stored under ``NAME_smoke``).
    results_dir : path, optional
        The cache folder. Default: ``$PESSIMISM_RESULTS_DIR`` when set, else
        :data:`DEFAULT_RESULTS_DIR` (see :func:`result_path`).
    sweep : LagSweep or StabilitySweep, optional
        Overrides the preset (validated before anything is computed).
    force : bool
        Recompute even if a matching result exists.

    Returns
    -------
    (dict of ndarray, dict)
        The arrays and the config they were made with.
    """
    if name not in SWEEPS:
        raise ValueError(f"unknown sweep {name!r}; valid: {', '.join(SWEEPS)}")
    preset, run = SWEEPS[name]
    sweep = preset(smoke) if sweep is None else sweep
    (sweep.cells if hasattr(sweep, "cells") else sweep.validate)()  # fail before touching the cache
    want = _json_normal(sweep.to_dict())
    path = result_path(name, smoke, results_dir)
    if not force and path.with_name(path.name + ".npz").exists():
        try:
            arrays, stored = load_results(path)
        except (OSError, ValueError, KeyError):
            arrays, stored = None, None
        if stored == want:
            return arrays, stored
    arrays = run(sweep, progress=progress)
    save_results(path, arrays, config=want)
    return arrays, want
