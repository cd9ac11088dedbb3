#!/usr/bin/env bash
# `make demo`: analyse the bundled traces and write an HTML report.
set -euo pipefail
bin=$1 out=$2
mkdir -p "$out"
runs=()
for run in sample_traces/*/*/torch sample_traces/*/*/nsys; do
  [ -d "$run" ] && runs+=("$run")
done
if [ ${#runs[@]} -eq 0 ]; then
  # The reference models' GPU captures are not in sample_traces/ yet (see README, "Sample traces"):
  # analyse the hand-built fixture run instead, and the one real H200 capture there is.
  echo "(no reference-model sample traces yet: using the hand-built fixture tests/fixtures/tbo_demo)"
  runs=(tests/fixtures/tbo_demo)
fi
for run in "${runs[@]}"; do
  region=$("$bin/python" -c "import json,sys,pathlib; p=pathlib.Path(sys.argv[1],'run.json'); print(json.loads(p.read_text()).get('overlap_region','tbo') if p.exists() else 'tbo')" "$run")
  echo "== $run (region: $region)"
  "$bin/overlapscope" analyze "$run" --region "$region"
done
if [ -d sample_traces/late_rank ]; then
  echo "== sample_traces/late_rank (real 2 x H200 capture; one rank joined late)"
  "$bin/overlapscope" analyze sample_traces/late_rank --skew
fi
"$bin/overlapscope" report "${runs[0]}" -o "$out/report.html" --region tbo
