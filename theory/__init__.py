"""Exact induced targets of off-policy RL objectives on bandits: regimes and pessimism.

Public API (names follow docs/theory.md):

* :func:`lambert_target`, :func:`lambert_stationary_points`, :func:`regime_of`
  — the regression objective's target in every regime (``theory.lambert``);
  :func:`relaxed_lambert_target` for a policy that may leave mass off the
  behaviour's support;
* :func:`soft_value`, :func:`gibbs_target` and the baselines (``theory.values``);
* :func:`kl`, :func:`entropy`, :func:`expected_reward`, :func:`beta_eff_kl`,
  :func:`beta_eff_reward`, :func:`pessimism_measures` (``theory.measures``);
* :func:`logit_flow`, :func:`multistart_minimize` — the ground truth
  (``theory.flow``);
* :func:`make_objective`, ``OBJECTIVES`` — the objective zoo
  (``theory.objectives``: losses in ``theory.losses``, advantage estimators in
  ``theory.advantages``) and :func:`induced_target`, :func:`solve_kkt` (the
  generic boundary-aware KKT solver, ``theory.induced``);
* ``theory.symbolic`` — the sympy derivations; ``theory.strategies`` —
  hypothesis strategies for checking fixed points (needs ``hypothesis``).

Inputs (``theory._checks``): arrays may be lists, NumPy arrays or torch tensors
(a tensor that requires grad is refused: pass ``x.detach()``); numbers may be
Python, NumPy or 0-d torch scalars. Distributions sum to 1 within a tolerance
set by their dtype (a float32 softmax passes) and are renormalized in float64.
Bad input raises ``ValueError`` naming the argument; numbers at the extremes
of float64 give the exact answer or a ``ValueError`` that names the limit
(e.g. ``|adv/beta| <= 1e306`` for the Lambert target).
"""

from . import lambert, measures, values
from .bandits import STANDARD_BANDITS, Bandit
from .lambert import *  # noqa: F403 (re-exports lambert.__all__, listed in __all__ below)
from .measures import *  # noqa: F403
from .values import *  # noqa: F403

try:  # the zoo and the flow need torch; keep the closed forms importable without it
    from .induced import InducedTarget, induced_target, ppo_clip_target_set, solve_kkt
    from .objectives import OBJECTIVES, Objective, make_objective
except ImportError:  # pragma: no cover
    pass

try:  # the flow needs torch; keep the closed forms importable without it
    from .flow import FlowResult, MinimizeResult, logit_flow, multistart_minimize
except ImportError:  # pragma: no cover
    pass

# the closed forms' modules declare their own public names: the package re-exports them as they are
__all__ = [
    "make_objective",
    "OBJECTIVES",
    "Objective",
    "induced_target",
    "InducedTarget",
    "solve_kkt",
    "ppo_clip_target_set",
    *lambert.__all__,
    "Bandit",
    "STANDARD_BANDITS",
    *values.__all__,
    *measures.__all__,
    "logit_flow",
    "multistart_minimize",
    "FlowResult",
    "MinimizeResult",
]
