"""Record (or check) what the command line prints for every sample trace and corpus file.

The pipeline regression test (tests/test_pipeline_golden.py) runs the same cases and compares
them with the recorded files in tests/golden/pipeline/, bit for bit. Record again with
`python scripts/pipeline_golden.py --write` only for a deliberate behaviour change, and say in
the commit which cases changed and why.

A case is one command line; its record is the exit code, stdout (the JSON) and stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
GOLDEN = REPO / "tests" / "golden" / "pipeline"
SAMPLES = REPO / "sample_traces"


def cases() -> dict[str, list[str]]:
    """Case name -> the overlapscope arguments (paths relative to the repository root or the corpus)."""
    out: dict[str, list[str]] = {}
    for run in sorted(p.parent for p in SAMPLES.rglob("run.json")):
        rel = run.relative_to(REPO)
        manifest = json.loads((run / "run.json").read_text())
        name = "-".join(run.relative_to(SAMPLES).parts)
        region = manifest.get("overlap_region")
        out[f"analyze-{name}"] = ["analyze", str(rel), "--json", "--jobs", "1", "--no-cache",
                                  *(["--region", region] if region else [])]
        if "late_rank" not in name:
            out[f"races-{name}"] = ["races", str(rel), "--json"]
    for f in sorted(CORPUS.rglob("*")):
        if f.is_file() and f.name != "README.md":
            rel = f.relative_to(CORPUS)
            name = "corpus-" + "-".join(rel.parts)
            out[f"analyze-{name}"] = ["analyze", f"@corpus/{rel}", "--json", "--jobs", "1", "--no-cache"]
    return out


def resolve(args: list[str]) -> list[str]:
    return [str(CORPUS / a[len("@corpus/"):]) if a.startswith("@corpus/") else a for a in args]


def record(args: list[str]) -> dict:
    """Run one case in process, through the real command."""
    from typer.testing import CliRunner

    from overlapscope.cli import app

    result = CliRunner().invoke(app, resolve(args))
    stderr = result.stderr.replace(str(CORPUS), "@corpus")
    stdout = result.stdout.replace(str(CORPUS), "@corpus")
    return {"args": args, "exit_code": result.exit_code, "stdout": stdout, "stderr": stderr}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="record the cases into tests/golden/pipeline/")
    parser.add_argument("only", nargs="*", help="case names (default: all)")
    opts = parser.parse_args()
    import os

    os.chdir(REPO)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    changed = 0
    for name, args in cases().items():
        if opts.only and name not in opts.only:
            continue
        got = record(args)
        path = GOLDEN / f"{name}.json"
        old = json.loads(path.read_text()) if path.exists() else None
        if old != got:
            changed += 1
            print(f"{'recorded' if opts.write else 'DIFFERS'}: {name}")
            if opts.write:
                path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    print(f"{changed} case(s) {'recorded' if opts.write else 'differ'}")
    return 1 if changed and not opts.write else 0


if __name__ == "__main__":
    sys.exit(main())
