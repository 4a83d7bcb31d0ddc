"""The zoo's objectives and their diagnostics inside verl and TRL.

* :mod:`sims.integrations.verl` — importing it registers the zoo's objectives that
  verl does not ship as verl policy losses (``zoo_<name>``) and the zoo's group
  baselines as verl advantage estimators; needs ``pip install torch==2.13.0 -e ".[verl]"``.
* :mod:`sims.integrations.trl` — :class:`~sims.integrations.trl.ZooGRPOTrainer`,
  TRL's ``GRPOTrainer`` with any zoo objective; needs ``pip install torch==2.13.0 -e ".[trl]"``.
* :mod:`sims.integrations.eta` — the fitted and the Lambert-predicted eta of the
  regression family, shared by both (no third-party dependency).
* :mod:`sims.integrations.diagnostics` — the off-policy readings both log (k3-KL,
  chi-square, ESS, eta, regime), computed once (no third-party dependency).

This package itself imports neither verl nor TRL. docs/integrations.md has the
install lines, the Hydra overrides and every logged metric; docs/diagnostics.md
what each reading means and the thresholds the theory derives.
"""

from __future__ import annotations

import importlib.metadata
import os

__all__ = ["TESTED", "SKIP_VERSION_CHECK_ENV", "require"]

#: Tested version ranges ``(lowest, first untested)`` of each integration's package.
TESTED: dict[str, tuple[str, str]] = {
    "verl": ("0.9.1", "0.10"),
    "trl": ("1.16.0", "1.17"),
}

#: Set this environment variable to ``1`` to use an untested version at your own risk.
SKIP_VERSION_CHECK_ENV = "PESSIMISM_TOOLKIT_SKIP_VERSION_CHECK"


def _release(version: str) -> tuple[int, ...]:
    """The numeric release part of a PEP 440 version: ``'0.10.0rc1' -> (0, 10, 0)``."""
    out = []
    for part in version.split("+")[0].split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
        if len(digits) != len(part):  # a pre/post/dev suffix ends the release segment
            break
    return tuple(out)


def _older(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)) < b + (0,) * (n - len(b))


def require(package: str, *, extra: str | None = None) -> str:
    """Check that ``package`` is installed in its tested range; return its version.

    Raises :class:`ImportError` naming the extra to install when the package is
    missing, and naming the installed version and the tested range when it is
    outside that range (unless ``PESSIMISM_TOOLKIT_SKIP_VERSION_CHECK=1``).
    """
    extra = extra or package
    low, high = TESTED[package]
    spec = f"{package}>={low},<{high}"
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            f"{package} is not installed: install the toolkit's extra with "
            f'`pip install torch==2.13.0 -e ".[{extra}]"` (tested range: {spec})',
            name=package,
        ) from None
    rel = _release(version)
    outside = _older(rel, _release(low)) or not _older(rel, _release(high))
    if outside and os.environ.get(SKIP_VERSION_CHECK_ENV) != "1":
        raise ImportError(
            f"{package} {version} is installed, outside the tested range {spec}: install it with "
            f'`pip install torch==2.13.0 -e ".[{extra}]"`, or set {SKIP_VERSION_CHECK_ENV}=1 to try it anyway',
            name=package,
        )
    return version
