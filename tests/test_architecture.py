"""The layering of docs/architecture.md, checked on the source: trace → analyses → renderers → CLI.

Every import counts, also those inside functions (the lazy ones that keep --help fast)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from corpus import REPO

PACKAGE = REPO / "overlapscope"
# analyses and the library door: pure functions of a Trace, or the pipeline that feeds them
ANALYSES = ("overlap", "attribution", "ranges", "skew", "diff", "gate", "history", "report", "export", "pipeline",
            "presets", "intervals", "config", "cache", "errors", "races", "trace", "capture")
MAX_COMMAND_LINES = 25


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, absolute, whether at the top or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out |= {f"{module}.{a.name}" for a in node.names}  # `from . import intervals`
    return out


def ours(imports: set[str]) -> set[str]:
    """The overlapscope modules among `imports` (a name imported from a module counts as that module)."""
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in imports if m in known}


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", [p for p in SOURCES if "trace" in p.relative_to(PACKAGE).parts[:1]],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_trace_imports_only_trace_intervals_and_errors(path):
    allowed = ("overlapscope.trace", "overlapscope.intervals", "overlapscope.errors", "overlapscope")
    bad = {m for m in ours(imports_of(path)) if not m.startswith(allowed[:3]) and m != "overlapscope"}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", [p for p in SOURCES if p.relative_to(PACKAGE).parts[0] == "races"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_races_do_not_import_overlap(path):
    assert "overlapscope.overlap" not in ours(imports_of(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_imports_reference_models(path):
    assert not any(m == "reference_models" or m.startswith("reference_models.") for m in imports_of(path))


@pytest.mark.parametrize("path", [p for p in SOURCES if p.relative_to(PACKAGE).parts[0].removesuffix(".py") in ANALYSES],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_analyses_import_no_renderer_and_no_cli(path):
    bad = {m for m in ours(imports_of(path)) if m.startswith(("overlapscope.renderers", "overlapscope.cli"))}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def _commands() -> list[tuple[str, object]]:
    from overlapscope.cli import app, cache_app

    return [(c.callback.__name__, c.callback) for group in (app, cache_app) for c in group.registered_commands]


@pytest.mark.parametrize("name, callback", _commands(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_command_body_is_short(name, callback):
    """Options, one library call, a renderer: the body (after the signature and docstring) stays small."""
    source = inspect.getsource(callback)
    tree = ast.parse(source.lstrip() if not source.startswith("@") else source)
    func = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))
    body = func.body[1:] if isinstance(func.body[0], ast.Expr) and isinstance(func.body[0].value, ast.Constant) else func.body
    lines = body[-1].end_lineno - body[0].lineno + 1
    assert lines <= MAX_COMMAND_LINES, f"{name}: {lines} lines"


def test_each_command_calls_the_library_function_of_its_name():
    """sqlite-utils' convention: `overlapscope NAME` is `overlapscope.commands.NAME`."""
    from overlapscope import commands

    for name, callback in _commands():
        if name.startswith("cache_"):
            continue
        assert hasattr(commands, name), f"commands.{name} is missing"
        assert f"commands.{name}" in inspect.getsource(callback), f"the {name} command does not call commands.{name}"
