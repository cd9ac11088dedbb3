"""`overlapscope --help` must stay fast: the command module imports no heavy library."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "numpy", "plotly", "torch", "sqlite_utils", "msgspec", "pyarrow")


def test_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from overlapscope.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"--help imported: {out.stdout.strip()}"


def test_every_command_is_listed():
    from typer.testing import CliRunner

    from overlapscope.cli import app

    out = CliRunner().invoke(app, ["--help"]).stdout
    assert "analyze" in out
