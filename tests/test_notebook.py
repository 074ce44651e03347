"""The notebook API in a real kernel: the gallery notebook, executed headlessly (nbclient)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO

from candle_lab import api

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = REPO / "gallery" / "notebooks" / "notebook_api.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_gallery_notebook_runs_an_experiment(tmp_path: Path) -> None:
    notebook = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, notebook)
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(  # what the live Gantt chart holds once the search ended
        "import time\n"
        "gantt = dashboard.gantt\n"
        "deadline = time.time() + 15\n"
        "while sum(len(t.x) for t in gantt.data) < 4 and time.time() < deadline:\n"
        "    time.sleep(0.2)\n"
        "print('bars', sum(len(t.x) for t in gantt.data))"
    ))
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    views = [o for o in outputs if WIDGET_VIEW in o.get("data", {})]
    assert len(views) >= 2  # the form and the live dashboard
    yaml_text = "".join(o.get("text", "") for o in nb.cells[3].outputs)
    assert "max_trials: 4" in yaml_text

    [exp_id] = [p.name for p in (tmp_path / "experiments").iterdir()]
    exp = api.open_experiment(exp_id, tmp_path / "experiments")
    assert exp.status().completed == 4
    best = exp.best
    assert best is not None
    assert "bars 4" in "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    shown = "".join(str(o.get("data", {}).get("text/plain", "")) for o in nb.cells[-2].outputs)
    assert f"{best.objective:.6}"[:6] in shown  # the notebook printed the same best trial
