"""A progress bar on stderr while big trace files are read (only on a terminal)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from ..trace.load import ProgressFn

BIG_FILE = 64 << 20  # below this, reading is quick enough to need no bar


def _total_size(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        files = [p] if p.is_file() else (list(p.iterdir()) if p.is_dir() else [])
        total += sum(f.stat().st_size for f in files if f.is_file())
    return total


@contextlib.contextmanager
def loading_progress(paths: list[Path]) -> Iterator[ProgressFn | None]:
    if not sys.stderr.isatty() or _total_size(paths) < BIG_FILE:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    tasks: dict[str, int] = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:

        def on_progress(source: str, done: int, total: int) -> None:
            if source not in tasks:
                tasks[source] = bar.add_task(f"reading {Path(source).name}", total=total)
            bar.update(tasks[source], completed=done)

        yield on_progress
