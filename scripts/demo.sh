#!/usr/bin/env bash
# `make demo`: analyse the bundled traces and write an HTML report.
set -euo pipefail
bin=$1 out=$2
mkdir -p "$out"
if [ -d sample_traces/deepseek_v4_tbo ]; then
  runs=(sample_traces/*/*/torch)
else
  # No captured sample traces yet: analyse a small trace built by the test fixtures instead.
  echo "(no GPU sample traces in sample_traces/ yet: using the hand-built fixture trace tests/fixtures/tbo_demo)"
  runs=(tests/fixtures/tbo_demo)
fi
for run in "${runs[@]}"; do
  region=$("$bin/python" -c "import json,sys,pathlib; p=pathlib.Path(sys.argv[1],'run.json'); print(json.loads(p.read_text()).get('overlap_region','') if p.exists() else 'tbo')" "$run")
  echo "== $run (region: $region)"
  "$bin/overlapscope" analyze "$run" --region "$region"
done
if "$bin/overlapscope" report --help >/dev/null 2>&1; then
  "$bin/overlapscope" report "${runs[0]}" -o "$out/report.html"
  echo "report written to $out/report.html"
fi
