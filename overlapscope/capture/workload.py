"""`python -m overlapscope.capture.workload WORKLOAD.json`: the ranks of one run, as the process that
`nsys profile` starts (the ranks it spawns are traced into the same report)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import RunFailed
from .plan import Workload
from .runner import execute


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m overlapscope.capture.workload WORKLOAD.json", file=sys.stderr)
        return 2
    work = Workload(**json.loads(Path(argv[0]).read_text()))
    try:
        execute(work)
    except RunFailed as e:
        print(f"overlapscope: run failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
