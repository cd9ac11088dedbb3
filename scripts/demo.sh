#!/usr/bin/env bash
# `make demo`: analyse the bundled sample traces, check the buggy variants for races, write HTML reports.
set -euo pipefail
bin=$1 out=$2
mkdir -p "$out"
region_of() { "$bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['overlap_region'])" "$1/run.json"; }
# the staging transfer moves data with a copy, not a collective: no overlap to measure (analyze exits 2)
for run in sample_traces/deepseek_*/*/torch; do
  echo "== $run (region: $(region_of "$run"))"
  "$bin/overlapscope" analyze "$run" --region "$(region_of "$run")"
done
for run in sample_traces/deepseek_v4_tbo/wrong-join/nsys sample_traces/deepseek_v32_nsa_cp/missing-join/nsys \
           sample_traces/staging_transfer/unsynced/nsys; do
  echo "== races in $run (a buggy variant: findings expected, exit 1)"
  found=$("$bin/overlapscope" races "$run" --json 2>/dev/null) || [ $? -eq 1 ]  # 1: findings
  "$bin/python" -c "import collections,json,sys; f=json.loads(sys.argv[1])['findings']; print(dict(collections.Counter((x['rule'], x['kind']) for x in f)))" "$found"
done
echo "== sample_traces/late_rank (one rank joined late)"
"$bin/overlapscope" analyze sample_traces/late_rank --skew
"$bin/overlapscope" report sample_traces/deepseek_v4_tbo/comm-stream/torch -o "$out/report.html" --region '^tbo/block$'
"$bin/overlapscope" report sample_traces/deepseek_v4_tbo/wrong-join/nsys -o "$out/report-wrong-join.html" --region '^tbo/block$'
