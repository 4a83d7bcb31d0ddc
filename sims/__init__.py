"""Simulations of training under lag, finite groups and every objective (bandits, token MDPs, LLM trainer).

The simulators call the objective definitions and the exact targets of :mod:`theory`;
nothing here re-implements an objective.
"""

__all__ = ["replicate_tpo_single"]


def __getattr__(name):
    """``sims.replicate_tpo_single`` (the TPO protocol, :func:`sims.tpo.replicate_tpo_single`), imported on use."""
    if name == "replicate_tpo_single":
        from .tpo import replicate_tpo_single

        return replicate_tpo_single
    raise AttributeError(f"module 'sims' has no attribute {name!r}")
