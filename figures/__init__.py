"""Paper figures: one module per figure, each with
``make(smoke=False, out=OUTPUT, *, overwrite=False, results_dir=None) -> list[Path]``.

Simulate, then plot: a module's data functions return arrays and dicts, and each
panel is a public ``plot_*(data, ..., ax=None) -> Axes`` function (listed in
the module's ``__all__``) that draws on ``ax``, or on a new one-panel figure
when ``ax`` is None (``_style.panel_axes``), and returns the axes; ``make``
lays the panels out and writes the files.

Run ``python -m figures`` for all of them, ``python -m figures fig01_lambert_tilt`` for one,
``--smoke`` for a quick low-resolution version (into ``figures/output-smoke/``). Every figure is
written by ``figures._style.save``: reproducible bytes, and a file with other bytes is replaced
only with ``overwrite`` (``--overwrite``). ``results_dir`` is the cache of what a figure recomputes
(the sweeps of figures 4 and 5, the smoke runs of figures 9 and 10); figures that recompute
nothing ignore it.
"""

__all__ = ["FIGURES"]

FIGURES = [
    "fig01_lambert_tilt",
    "fig02_regime_map",
    "fig03_zoo_targets",
    "fig04_lag",
    "fig05_stability",
    "fig06_temperature_frontier",
    "fig07_group_bias",
    "fig08_token_gap",
    "fig09_llm_confirmation",
    "fig10_llm_probe",
    "fig11_llm_lag",
    "fig12_corrections",
]
