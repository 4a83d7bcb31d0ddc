"""Every public ``plot_*`` function of every figure module draws on the axes it is given and returns them.

Each case calls one panel function twice on small data (the cheap settings of
the module's own data functions, the committed results of the LLM figures, or
arrays shaped like a sweep's): once with ``ax=`` an existing axes, which must
come back as the same object with something drawn on it, and once with
``ax=None``, which must give a new axes on a new one-panel figure. A module
whose ``__all__`` lists a ``plot_*`` function without a case here fails
:func:`test_every_panel_function_has_a_case`.
"""

from __future__ import annotations

import functools
import importlib
import inspect

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes

from figures import FIGURES, _style


def _mod(name):
    return importlib.import_module(f"figures.{name}")


@functools.cache
def _data(name):
    """Small inputs of one figure module's panels."""
    m = _mod(name)
    rng = np.random.default_rng(0)
    if name == "fig01_lambert_tilt":
        return {"curves": m.tilt_curves(np.linspace(-4.0, 6.0, 60)), "targets": m.induced_targets()}
    if name == "fig02_regime_map":
        return m.compute(10, 6)
    if name == "fig03_zoo_targets":
        return m.compute("graded", ["ppo", "opmd"])  # a set-valued target and a point target
    if name == "fig04_lag":
        return {"step": np.arange(12), "values": rng.random((3, 12, 4)), "lags": np.array([0, 4, 16])}  # (L, T, S)
    if name == "fig05_stability":
        lags, lrs = np.array([0, 1, 4]), np.array([0.01, 0.1, 1.0, 3.0])
        return {"lags": lags, "lrs": lrs, "radius": 1.0 + rng.random((3, 4)), "transverse": 0.5 + rng.random((3, 4)),
                "neutral": (np.ones((3, 4)), np.zeros((3, 4)))}
    if name == "fig06_temperature_frontier":
        return m.compute(m.Config(n=20))
    if name == "fig07_group_bias":
        return m.compute(m.Config(bandits=("graded",), betas=(0.1, 1.0), groups=(1, 2, 4, 8), draws=200,
                                  exact_max_outcomes=1000))
    if name == "fig08_token_gap":
        return m.compute(smoke=True)
    if name == "fig09_llm_confirmation":
        return {"rows": m.load(True, m.RESULTS / "summary.csv")}
    if name == "fig10_llm_probe":
        rows, traj = m.load(True, m.RESULTS)
        return {"rows": rows, "traj": traj}
    if name == "fig11_llm_lag":
        cells, steps = m.load(True, m.RESULTS)
        return {"cells": cells, "steps": steps}
    if name == "fig12_corrections":  # two thresholds of a certified and an uncertified family; 2 x 2 short lag runs
        cfg = m.BanditSimConfig.smoke(steps=5, num_seeds=3, track_target=False)
        return {"targets": m.compute_targets([2.0, 5.0], families=dict(list(m.FAMILIES.items())[::2])),
                "lag": m.compute_lag(cfg, objectives=("seq_tis", "geo_rs"), lags=(0, 4)),
                "tokens": m.compute_token_levels([2.0, 5.0], V=2, T_len=2)}
    raise KeyError(name)


#: module -> plot function -> (args, kwargs) from the module's data
CASES = {
    "fig01_lambert_tilt": {
        "plot_tilt": lambda d: ((d["curves"],), {}),
        "plot_induced_targets": lambda d: ((d["targets"],), {}),
    },
    "fig02_regime_map": {
        "plot_eta_map": lambda d: ((d,), {}),
        "plot_pessimism_map": lambda d: ((d,), {}),
    },
    "fig03_zoo_targets": {
        "plot_zoo_target": lambda d: ((d["panels"][0], d["mu"], d["r"]), {}),
    },
    "fig04_lag": {
        "plot_lag_curves": lambda d: ((d["step"], d["values"], d["lags"]), {"ylabel": "reward"}),
    },
    "fig05_stability": {
        "plot_stability": lambda d: ((d["lags"], d["lrs"], d["radius"], d["transverse"]), {"title": "opmd"}),
    },
    "fig06_temperature_frontier": {
        "plot_frontier": lambda d: ((d, "H"), {}),
        "plot_shift_eta": lambda d: ((d,), {}),
    },
    "fig07_group_bias": {
        "plot_group_bias": lambda d: ((d, "graded"), {}),
        "plot_group_eta": lambda d: ((d, "graded"), {}),
        "plot_group_pessimism": lambda d: ((d, "graded"), {}),
    },
    "fig08_token_gap": {
        "plot_token_kl": lambda d: ((d, d["map"][0]), {}),
        "plot_token_reward": lambda d: ((d, d["map"][-1]), {}),
    },
    "fig09_llm_confirmation": {
        "plot_eta": lambda d: ((d["rows"],), {}),
        "plot_ordering": lambda d: ((d["rows"],), {}),
        "plot_lag_metric": lambda d: ((d["rows"], "reward"), {}),
        "plot_ratio": lambda d: ((d["rows"],), {}),
    },
    "fig10_llm_probe": {
        "plot_scatter": lambda d: ((d["rows"], "eta", "eta_pred", "eta_relaxed"), {}),
        "plot_fail": lambda d: ((d["rows"],), {}),
        "plot_eta": lambda d: ((d["rows"],), {}),
        "plot_pass": lambda d: ((d["rows"],), {}),
        "plot_leak": lambda d: ((d["rows"],), {}),
        "plot_trajectory": lambda d: ((d["traj"],), {}),
    },
    "fig11_llm_lag": {
        "plot_curve": lambda d: ((d["cells"], d["steps"], 0), {}),
        "plot_lag_metric": lambda d: ((d["cells"], "pass1_final", "final pass@1", "final pass@1"), {"start_line": True}),
        "plot_theory": lambda d: ((d["cells"],), {}),
    },
    "fig12_corrections": {
        "plot_threshold_sweep": lambda d: ((d["targets"], "reward"), {"references": ((1.0, "greedy", "--"),)}),
        "plot_lag_ends": lambda d: ((d["lag"], "kl_mu_pi"), {"logy": True}),
        "plot_token_levels": lambda d: ((d["tokens"],), {}),
    },
}
PANELS = [(mod, fn) for mod, fns in CASES.items() for fn in fns]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _drawn(ax) -> int:
    """How many data artists (lines, collections, images, patches) ``ax`` holds."""
    return len(ax.lines) + len(ax.collections) + len(ax.images) + len(ax.patches)


def _public_plot_functions(name):
    m = _mod(name)
    return sorted(n for n in m.__all__ if n.startswith("plot_"))


@pytest.mark.parametrize("name", FIGURES)
def test_every_panel_function_has_a_case(name):
    m = _mod(name)
    assert "make" in m.__all__
    defined = sorted(n for n, f in inspect.getmembers(m, inspect.isfunction)
                     if n.startswith("plot_") and f.__module__ == m.__name__)
    assert defined, f"{name} has no plot_* function"
    assert _public_plot_functions(name) == defined, f"{name}.__all__ and its plot_* functions differ"
    assert sorted(CASES.get(name, {})) == defined, f"{name}: every plot_* function needs a case in CASES"


@pytest.mark.parametrize("name, fn", PANELS, ids=[f"{m}.{f}" for m, f in PANELS])
def test_panel_draws_on_the_given_axes_and_returns_them(name, fn):
    args, kwargs = CASES[name][fn](_data(name))
    fig, (left, ax) = plt.subplots(1, 2)
    got = getattr(_mod(name), fn)(*args, **kwargs, ax=ax)
    assert got is ax
    assert _drawn(ax) > 0, f"{fn} drew nothing"
    assert _drawn(left) == 0  # nothing strays onto the other axes of the figure
    assert plt.gcf() is fig


@pytest.mark.parametrize("name, fn", PANELS, ids=[f"{m}.{f}" for m, f in PANELS])
def test_panel_without_axes_makes_a_one_panel_figure(name, fn):
    args, kwargs = CASES[name][fn](_data(name))
    before = set(plt.get_fignums())
    got = getattr(_mod(name), fn)(*args, **kwargs)
    assert isinstance(got, Axes)
    assert got.figure.number not in before
    assert _drawn(got) > 0
    np.testing.assert_allclose(got.figure.get_size_inches(), _style.PANEL_SIZE)


def test_stability_panel_says_so_when_every_root_is_neutral():
    d = _data("fig05_stability")
    m = _mod("fig05_stability")
    _, ax = plt.subplots()
    assert m.plot_stability(d["lags"], d["lrs"], *d["neutral"], title="pg", ax=ax) is ax
    assert not ax.collections and [t.get_text() for t in ax.texts] == [
        "all roots at 1:\nneutral, no pull\ntowards the lagged\npolicy"]
    assert ax.get_title() == "pg"


def test_panel_axes_returns_the_given_axes_or_a_new_one():
    _, ax = plt.subplots()
    assert _style.panel_axes(ax) is ax
    new = _style.panel_axes()
    assert isinstance(new, Axes) and new is not ax and new.figure is not ax.figure


@pytest.mark.parametrize("name", FIGURES)
def test_panel_docstrings_are_filled_and_document_ax(name):
    """``_style.shared_doc`` leaves no ``{placeholder}`` line, and every panel documents ``ax`` and what it returns."""
    m = _mod(name)
    for fn in _public_plot_functions(name):
        doc = getattr(m, fn).__doc__
        assert not [line for line in doc.split("\n") if line.strip().startswith("{") and line.strip().endswith("}")]
        assert "    ax : matplotlib.axes.Axes, optional\n" in doc, fn
        assert doc.rstrip().endswith("Returns\n    -------\n    matplotlib.axes.Axes\n        The axes drawn on."), fn


def test_fill_doc_indents_the_shared_text_and_leaves_other_braces():
    doc = 'Draw it.\n\n    Parameters\n    ----------\n    {x}\n    y : float\n        In :math:`\\beta_{\\rm eff}`.\n    {ax}\n    '
    got = _style.fill_doc(doc, {**_style.DOCS, "x": "x : int\n    The count."})
    assert got == ("Draw it.\n\n    Parameters\n    ----------\n    x : int\n        The count.\n    y : float\n"
                   "        In :math:`\\beta_{\\rm eff}`.\n    ax : matplotlib.axes.Axes, optional\n"
                   "        Axes to draw on; a new one-panel figure when None.\n\n    Returns\n    -------\n"
                   "    matplotlib.axes.Axes\n        The axes drawn on.\n    ")
    with pytest.raises(KeyError):
        _style.fill_doc("    {missing}", _style.DOCS)


def test_tab10_and_lag_axis():
    colors = _style.tab10(["b", "a", "c"])
    assert list(colors) == ["b", "a", "c"]
    np.testing.assert_array_equal(colors["a"], plt.cm.tab10(1))
    _, ax = plt.subplots()
    _style.lag_axis(ax, [0, 4, 16], "lag L")
    assert ax.get_xscale() == "symlog" and ax.get_xlabel() == "lag L"
    assert list(ax.get_xticks()) == [0, 4, 16] and [t.get_text() for t in ax.get_xticklabels()] == ["0", "4", "16"]
