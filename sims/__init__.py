"""Simulations of training under lag, finite groups and every objective (bandits, token MDPs, LLM trainer).

The simulators call the objective definitions and the exact targets of :mod:`theory`;
nothing here re-implements an objective.
"""
