"""The documentation says what the command does (sqlite-utils' tests/test_docs.py is the model):
every command and every option is in the README's command table, and every `overlapscope ...`
command line shown in the README and docs/ parses with the real command."""

from __future__ import annotations

import re
import shlex

import pytest
import typer

from corpus import REPO
from overlapscope.cli import app

README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
ROOT = typer.main.get_command(app)


# typer vendors its own click: recognise its objects by what they have, not by click's classes
def is_group(cmd) -> bool:
    return hasattr(cmd, "commands")


def is_option(param) -> bool:
    return getattr(param, "param_type_name", "") == "option"


def commands() -> dict:
    out = {}
    for name, cmd in ROOT.commands.items():
        if is_group(cmd):
            out |= {f"{name} {sub}": c for sub, c in cmd.commands.items()}
        else:
            out[name] = cmd
    return out


def command_table_row(name: str) -> str:
    """The README command table's row for `name` (its first cell starts with the command)."""
    for line in README.splitlines():
        if line.startswith("| `") and re.match(rf"\| `{re.escape(name)}(?: |`)", line):
            return line
    return ""


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_command_and_option_is_in_the_readme_table(name):
    row = command_table_row(name.split()[0])
    assert row, f"no row for `{name}` in the README's command table"
    cmd = commands()[name]
    if " " in name:  # `cache show|clear`: the subcommand name is in the row
        assert name.split()[1] in row
    for param in cmd.params:
        if is_option(param):
            if param.name == "help":
                continue
            assert any(flag in row for flag in param.opts), f"{name}: {param.opts[0]} is not in the README table"


def shown_command_lines() -> list[tuple[str, str]]:
    """(file, line) for each concrete `overlapscope ...` command in fenced code blocks (YAML `run:`
    steps and comments included; synopsis lines with PATH..., [optional] or a|b are not commands)."""
    out = []
    for doc in DOCS:
        in_code = False
        pending = ""
        for raw in doc.read_text(encoding="utf-8").splitlines():
            if raw.lstrip().startswith("```"):
                in_code = not in_code
                continue
            if not in_code:
                continue
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            m = re.search(r"(?:^|[#:]\s*|\$ )(overlapscope\s+[a-z].*)$", line)
            if not m:
                continue
            text = re.split(r"\s+#\s", m.group(1))[0].strip()  # a trailing shell comment
            if re.search(r"\.\.\.|\[|\||\bPATH\b|\bFILE\b|\bDIR\b|\bN\b|\bMODEL\b|<|\$\{", text):
                continue
            out.append((doc.name, text))
    return out


@pytest.mark.parametrize("doc, line", shown_command_lines())
def test_every_command_line_in_the_docs_parses(doc, line):
    args = shlex.split(line)[1:]
    name = args[0]
    cmd = ROOT.commands.get(name)
    assert cmd is not None, f"{doc}: `{line}`: no command {name!r}"
    rest = args[1:]
    if is_group(cmd):
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    try:
        ctx = cmd.make_context(name, list(rest), resilient_parsing=False)
    except Exception as e:  # typer's click: Exit for --help, UsageError for a bad line
        if type(e).__name__ == "Exit":
            return
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        pytest.fail(f"{doc}: `{line}` does not parse: {message}")
    if "variant" in ctx.params and ctx.params["variant"] and ctx.params.get("model"):
        from overlapscope.capture.workloads import REFERENCE_MODELS

        if ctx.params["model"] in REFERENCE_MODELS:
            import reference_models

            variants = reference_models.MODELS[ctx.params["model"]].variants
            assert ctx.params["variant"] in variants, f"{doc}: `{line}`: no variant {ctx.params['variant']!r}"


def test_the_docs_show_command_lines():
    assert len(shown_command_lines()) >= 10
