"""The notebooks run top to bottom with SMOKE=1, and are committed without outputs.

Execution needs ``nbclient`` and ``ipykernel`` (skipped when ``nbclient`` is not
installed). Each notebook is copied to a temporary folder and executed there
with the kernel ``python3``, ``SMOKE=1`` and this checkout first on
``PYTHONPATH`` and hypothesis' cache in the temporary folder; nothing is
written back into the repository.
"""

import gc
import json
import os
import shutil
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = (
    "01_pessimism_against_lag.ipynb",
    "02_checking_a_fixed_point.ipynb",
    "03_tour_of_the_regimes.ipynb",
    "04_before_you_launch.ipynb",
)
CELL_TIMEOUT_S = 120


def test_the_listed_notebooks_are_the_notebooks():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == list(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name):
    nb = json.loads((NOTEBOOK_DIR / name).read_text(encoding="utf-8"))
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{name}: cells {dirty} have outputs or an execution count; clear them before committing"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_with_smoke_setting(name, tmp_path, monkeypatch):
    with warnings.catch_warnings():
        # Depending on their versions, jupyter_core, jupyter_client and pyzmq warn on import and at kernel
        # start-up (path migration, deprecated datetime and event-loop APIs); those warnings say nothing
        # about the notebooks, and pytest here turns every warning into an error.
        warnings.simplefilter("ignore")
        nbclient = pytest.importorskip("nbclient", reason="executing notebooks needs nbclient and ipykernel")
        import nbformat

        workdir = tmp_path / "run"
        workdir.mkdir()
        copy = workdir / name
        shutil.copyfile(NOTEBOOK_DIR / name, copy)
        monkeypatch.setenv("SMOKE", "1")
        monkeypatch.setenv("HYPOTHESIS_STORAGE_DIRECTORY", str(tmp_path / "hypothesis"))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, whatever the caller set
        nb = nbformat.read(copy, as_version=4)
        client = nbclient.NotebookClient(
            nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
        )
        client.execute()  # raises CellExecutionError, with the traceback, at the first failing cell
        del client
        gc.collect()  # close the kernel's sockets inside the filter
    assert sorted(p.name for p in workdir.iterdir()) == [name], "the notebook wrote files into its working folder"
