"""The walkthrough notebook is stored without outputs and runs top to bottom (nbclient).

It runs on a kernel spec written for this test that starts this interpreter (the venv's python),
so no installed or user kernel spec is needed and nothing is fetched.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "overlap_walkthrough.ipynb"
KERNEL = "overlapscope-test"


def test_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


@pytest.fixture
def kernel_spec(tmp_path, monkeypatch):
    spec = tmp_path / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "overlapscope (test)", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    return KERNEL


@pytest.mark.slow
def test_walkthrough_runs(kernel_spec):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name=kernel_spec, timeout=300,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "\n".join(out.get("text", "") + json.dumps(out.get("data", {}))
                     for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)
    assert "run: " in text and "GPU ops" in text
    assert "overlap_pct" in text  # the overlap table
    assert "application/vnd.plotly.v1+json" in text  # the timeline figure
    assert "finding(s)" in text
