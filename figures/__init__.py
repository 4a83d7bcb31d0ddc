"""Paper figures: one module per figure, each with ``make(smoke: bool, out: Path) -> list[Path]``.

Run ``python -m figures`` for all of them, ``python -m figures fig01_lambert_tilt`` for one,
``--smoke`` for a quick low-resolution version.
"""

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
]
