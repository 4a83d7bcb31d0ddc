"""One shared style for every figure, the one routine that writes its PNG and PDF, and what panels share.

Besides :func:`save`: :func:`subplots` (the figure of a ``make``, in the
style), :func:`panel_axes` and :func:`panel_colors` (how a ``plot_*`` function
starts), :func:`shared_doc` (numpydoc texts that several panels' docstrings
share, written once), :func:`tab10` and :func:`lag_axis`.

The files are reproducible: the same figure gives the same bytes on every run
(no creation or modification date, no software or version string in the
metadata; ``SOURCE_DATE_EPOCH`` plays no part). :func:`save` renders both
formats to memory first and then applies the overwrite rule of
``python -m figures``: a file that does not exist, or that already holds
exactly these bytes, is fine to write (nothing is lost, so regenerating the
committed gallery on a clean clone just works); a file with other bytes is
replaced only with ``overwrite=True`` (``--overwrite``), and otherwise nothing
is written and :class:`theory.outputs.OutputExistsError` names the file.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import matplotlib

if "MPLBACKEND" not in os.environ and "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")  # files only; a notebook or a caller that chose a backend keeps its own
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from theory.outputs import atomic_write_bytes, guard_outputs  # noqa: E402

#: The committed gallery: where ``python -m figures`` writes by default.
OUTPUT = Path(__file__).resolve().parent / "output"
#: Where ``python -m figures --smoke`` writes by default (git-ignored, so a smoke run never touches the gallery).
SMOKE_OUTPUT = Path(__file__).resolve().parent / "output-smoke"

#: File formats written for every figure, in this order.
FORMATS = ("png", "pdf")

#: Metadata of each format: None removes a key matplotlib would fill with a date or its version.
METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
}

#: Size (inches) of one panel drawn on its own, when a ``plot_*`` function is given no axes.
PANEL_SIZE = (4.2, 3.4)

#: Colours of the three regimes of eta, used everywhere.
REGIME_COLORS = {"positive": "#2166ac", "boundary": "#000000", "negative": "#b2182b"}

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "figure.constrained_layout.use": True,
    "svg.hashsalt": "pessimism",  # fixed ids should a figure ever be saved as SVG
}


def apply():
    plt.rcParams.update(STYLE)


def subplots(*args, **kwargs):
    """Apply :data:`STYLE`, then ``plt.subplots(*args, **kwargs)``: the figure of a ``make``, in the shared style."""
    apply()
    return plt.subplots(*args, **kwargs)


#: Numpydoc texts shared by the ``plot_*`` docstrings (see :func:`shared_doc`): ``ax``, the ``ax`` parameter
#: and the Returns section, which end every panel function's docstring.
DOCS = {
    "ax": """ax : matplotlib.axes.Axes, optional
    Axes to draw on; a new one-panel figure when None.

Returns
-------
matplotlib.axes.Axes
    The axes drawn on.""",
}


def fill_doc(doc: str, texts: dict) -> str:
    """``doc`` with each line that holds only ``{name}`` replaced by ``texts[name]``, indented as that line was.

    Any other line, braces included (LaTeX), is left as it is; a name missing
    from ``texts`` raises KeyError.
    """
    lines = []
    for line in doc.split("\n"):
        name = line.strip()
        if name.startswith("{") and name.endswith("}") and name[1:-1].isidentifier():
            pad = line[: len(line) - len(line.lstrip())]
            lines += [pad + t if t else t for t in texts[name[1:-1]].split("\n")]
        else:
            lines.append(line)
    return "\n".join(lines)


def shared_doc(**texts):
    """Decorator filling the placeholders of a function's docstring (:func:`fill_doc`) from ``texts`` and :data:`DOCS`.

    A module whose panels share parameters writes their texts once, e.g.
    ``_doc = shared_doc(rows=ROWS_DOC)``, and decorates each panel function
    with ``@_doc``; its docstring then names ``{rows}`` and ``{ax}`` on lines
    of their own, and ``help`` shows the filled text. Docstrings stripped by
    ``python -OO`` stay None.
    """
    table = {**DOCS, **texts}

    def fill(f):
        if f.__doc__ is not None:
            f.__doc__ = fill_doc(f.__doc__, table)
        return f

    return fill


#: Decorator filling only the :data:`DOCS` placeholders (``{ax}``) of a panel function's docstring.
panel_doc = shared_doc()


def tab10(names) -> dict:
    """One tab10 colour per name, in the order given (the palettes of the LLM figures)."""
    names = list(names)
    return dict(zip(names, plt.cm.tab10(np.arange(len(names)))))


def lag_axis(ax, lags, label: str):
    """Put ``lags`` on a symlog x axis (linear below 1), one tick labelled as an integer per lag, titled ``label``."""
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(lags, [str(int(x)) for x in lags])
    ax.set_xlabel(label)


def panel_axes(ax=None):
    """``ax``, or the axes of a new one-panel figure of :data:`PANEL_SIZE` when ``ax`` is None.

    Every ``plot_*`` function of the figure modules starts with this, so that
    a panel can be drawn into a notebook's axes or on its own.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=PANEL_SIZE, layout="constrained")
    return ax


def panel_colors(ax, colors, palette, data):
    """``(panel_axes(ax), colors)``, the colours being ``palette(data)`` when ``colors`` is None.

    The start of the panels that share one colour per series with the rest of
    their figure (``colors``) and pick their own otherwise.
    """
    return panel_axes(ax), (palette(data) if colors is None else colors)


def render(fig, fmt: str) -> bytes:
    """The bytes of ``fig`` in format ``fmt`` (one of :data:`FORMATS`), with the reproducible metadata."""
    if fmt not in METADATA:
        raise ValueError(f"unknown figure format {fmt!r}; valid: {', '.join(METADATA)}")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata=METADATA[fmt])
    return buf.getvalue()


def save(fig, out: Path, name: str, *, overwrite: bool = False) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` under ``out`` (each atomically) and close ``fig``; return the paths.

    Both files are rendered to memory first. A file that already holds the
    same bytes is left as it is; one with other bytes is replaced only when
    ``overwrite``, and otherwise :class:`theory.outputs.OutputExistsError`
    (one line naming the file and ``--overwrite``) is raised before either file
    is written.
    """
    out = Path(out)
    try:
        data = {out / f"{name}.{fmt}": render(fig, fmt) for fmt in FORMATS}
    finally:
        plt.close(fig)
    same = {p for p, b in data.items() if p.is_file() and p.read_bytes() == b}
    differ = [p for p in data if p.is_file() and p not in same]
    guard_outputs(differ, overwrite=overwrite, what="figure")
    for p, b in data.items():
        if p not in same:
            atomic_write_bytes(p, b)
    return list(data)
