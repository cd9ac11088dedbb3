"""The walkthrough notebook is stored executed (so GitHub and nbconvert show it without a kernel), its
outputs are what a fresh run gives, it runs top to bottom (nbclient), and it uses only the public API.

It runs on a kernel spec written for this test that starts this interpreter (the venv's python),
so no installed or user kernel spec is needed and nothing is fetched. `scripts/run_notebook.py`
refreshes the stored outputs the same way.
"""

from __future__ import annotations

import ast
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import overlapscope

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "overlap_walkthrough.ipynb"
KERNEL = "overlapscope-test"
SVG_NS = "{http://www.w3.org/2000/svg}"
REFRESH = "run `.venv/bin/python scripts/run_notebook.py` to store fresh outputs"


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def source(cell) -> str:
    s = cell["source"]
    return s if isinstance(s, str) else "".join(s)


def svg_outputs(nb: dict) -> list[str]:
    out = []
    for cell in code_cells(nb):
        for o in cell["outputs"]:
            data = o.get("data", {}).get("image/svg+xml")
            if data is not None:
                out.append(data if isinstance(data, str) else "".join(data))
    return out


def lane_labels(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return [t.find(SVG_NS + "title").text for t in root.iter(SVG_NS + "text") if t.get("data-lane") is not None]


def test_stored_with_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = code_cells(nb)
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1)), REFRESH
    assert all(c["outputs"] for c in code), "a code cell without output: " + REFRESH
    outputs = [o for c in code for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error" or o.get("name") == "stderr"]
    assert str(ROOT) not in NOTEBOOK.read_text()  # no path of the machine that ran it


def test_stored_timeline_is_an_svg_with_the_lanes():
    nb = json.loads(NOTEBOOK.read_text())
    (svg,) = svg_outputs(nb)
    labels = lane_labels(svg)
    streams = [label for label in labels if label.startswith("stream ")]
    assert len(streams) >= 2
    assert labels[len(streams):len(streams) + 2] == ["comm hidden", "comm exposed"]
    assert "region /^tbo/block$/" in labels and labels[-1] == "profiler steps"
    assert "<script" not in svg and "ProfilerStep#" in svg


def used_names(code: str) -> tuple[set[str], list[str]]:
    """`overlapscope.X` attributes and `from overlapscope import X` names; imports of submodules."""
    names, submodules = set(), []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "overlapscope":
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "overlapscope":
            if node.module == "overlapscope":
                names |= {a.name for a in node.names}
            else:
                submodules.append(node.module)
        elif isinstance(node, ast.Import):
            submodules += [a.name for a in node.names if a.name.startswith("overlapscope.")]
    return names, submodules


def test_used_names_sees_what_it_must():
    names, submodules = used_names("import overlapscope.report\nfrom overlapscope.races import check_races\n"
                                   "from overlapscope import load\nx = overlapscope.report.rank_timeline")
    assert names == {"load", "report"} and submodules == ["overlapscope.report", "overlapscope.races"]


def test_uses_only_the_public_api():
    nb = json.loads(NOTEBOOK.read_text())
    names, submodules = set(), []
    for cell in code_cells(nb):
        n, s = used_names(source(cell))
        names |= n
        submodules += s
    assert not submodules, f"the notebook imports overlapscope submodules: {submodules}"
    assert names and names <= set(overlapscope.__all__), f"not public: {sorted(names - set(overlapscope.__all__))}"
    assert {"load", "analyze", "check_races", "timeline_svg", "format_ns", "format_pct"} <= names


def test_nbconvert_html_shows_the_timeline():
    """nbconvert's HTML (its default: SVG outputs as base64 data images) shows the timeline as drawn."""
    nbconvert = pytest.importorskip("nbconvert")
    import base64
    import re

    import nbformat

    body, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(NOTEBOOK, as_version=4))
    images = re.findall(r'<img [^>]*src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', body)
    assert len(images) == 1
    svg = base64.b64decode(images[0]).decode("utf-8")
    assert svg == svg_outputs(json.loads(NOTEBOOK.read_text()))[0]
    assert "comm exposed" in lane_labels(svg)
    assert "Where is it exposed?" in body and "combine_outputs" in body and " %</td>" in body


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


def shown(nb) -> list[list[tuple]]:
    """What each code cell shows: its outputs without their metadata."""
    def one(o):
        data = {k: v if isinstance(v, str) else "".join(v) for k, v in o.get("data", {}).items()}
        text = o.get("text", "")
        return o["output_type"], o.get("name"), text if isinstance(text, str) else "".join(text), data
    return [[one(o) for o in c["outputs"]] for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.slow
def test_walkthrough_runs_and_matches_the_stored_outputs(kernel_spec):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    NotebookClient(nb, kernel_name=kernel_spec, timeout=300, record_timing=False,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "\n".join(out.get("text", "") + json.dumps(out.get("data", {}))
                     for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)
    assert "run: " in text and "GPU ops" in text
    assert "overlap_pct" in text and " %" in text and " ms" in text  # the overlap table, formatted
    assert "combine_outputs" in text  # where it is exposed
    assert "image/svg+xml" in text  # the timeline
    assert "finding(s)" in text
    stored = json.loads(NOTEBOOK.read_text())
    assert shown(json.loads(nbformat.writes(nb))) == shown(stored), "stored outputs are stale: " + REFRESH
