"""Execute notebooks/overlap_walkthrough.ipynb top to bottom and store it with its outputs, in place.

    .venv/bin/python scripts/run_notebook.py [NOTEBOOK]

The notebook is kept executed so that GitHub and nbconvert show its tables and its timeline (a static
SVG) without a kernel; tests/test_notebook.py checks that the stored outputs are what a fresh run
gives, so run this after changing the notebook or anything it prints.

Like tests/test_notebook.py it runs on a kernel spec written to a temporary directory that starts
this interpreter, so no installed or user kernel spec is needed and nothing is fetched. The
notebook's own kernelspec metadata is kept as it was; no timings are recorded (stable diffs).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "overlap_walkthrough.ipynb"
KERNEL = "overlapscope-run-notebook"


def kernel_spec(root: Path, name: str = KERNEL) -> str:
    """A kernel spec under `root/kernels` that starts this interpreter; point JUPYTER_PATH at `root`."""
    spec = root / "kernels" / name
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "overlapscope", "language": "python",
    }))
    return name


def execute(path: Path, kernel_name: str, timeout: int = 600):
    """The notebook at `path`, executed in its own directory (not written)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    kept = nb.metadata.get("kernelspec")
    NotebookClient(nb, kernel_name=kernel_name, timeout=timeout, record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    if kept is not None:
        nb.metadata["kernelspec"] = kept
    return nb


def main(argv: list[str]) -> int:
    import nbformat

    path = Path(argv[0]).resolve() if argv else NOTEBOOK
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["JUPYTER_PATH"] = tmp
        os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
        nb = execute(path, kernel_spec(Path(tmp)))
    nbformat.write(nb, path)
    outputs = sum(len(c.outputs) for c in nb.cells if c.cell_type == "code")
    print(f"{path}: executed, {outputs} output(s) stored")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
