#!/usr/bin/env bash
# Captures that need one GPU only (no NCCL between ranks), run on the lent single-H200 machine:
#   A. staging_transfer unsynced at world size 1 under both profilers: the host-side read races the
#      GPU gather on every step, so the race checker must call it manifest (issue #11.4);
#   B. deepseek_v4_tbo comm-stream at world size 1 under the torch profiler: the new pacing (#15.2).
# Usage (from the project root, on the GPU machine): source .device/env.sh && bash scripts/gpu_single_h200.sh OUT
set -uo pipefail
out=${1:?output directory}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl', torch.cuda.nccl.version())" | tee -a "$out/gpu.txt"
run() {  # name, then overlapscope run arguments
  local name=$1; shift
  local t0=$(date +%s)
  python3 -m overlapscope run "$@" --out "$out/$name" > "$out/$name.log" 2>&1
  echo "$name: exit $? in $(( $(date +%s) - t0 )) s"
}
run staging-unsynced-torch staging_transfer --variant unsynced --world-size 1 --profiler torch --steps 6
run staging-unsynced-nsys staging_transfer --variant unsynced --world-size 1 --profiler nsys --steps 6
run staging-synced-nsys staging_transfer --variant synced --world-size 1 --profiler nsys --steps 6
run tbo-comm-stream-torch deepseek_v4_tbo --variant comm-stream --world-size 1 --profiler torch --steps 6
for d in "$out"/*/; do
  n=$(basename "$d")
  python3 -m overlapscope races "$d" --json > "$out/$n.races.json" 2> "$out/$n.races.err"
  echo "$n races: exit $? $(python3 -c "import json,collections,sys; d=json.load(open('$out/$n.races.json')); print(d.get('verdict'), dict(collections.Counter(f['kind'] for f in d['findings'])))" 2>/dev/null)"
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for run in sorted(p for p in out.iterdir() if (p / "run.json").exists()):
    m = json.loads((run / "run.json").read_text())
    checks = [c for rank in m["numerics"] for c in rank]
    failed = sum(c["ok"] is False for c in checks)
    steps = [t for rank in m["step_times_ms"] for t in rank]
    print(f"{run.name}: numerics failed {failed}/{len(checks)}; step ms mean {sum(steps) / len(steps):.2f}; "
          f"fed_step_ms {m.get('fed_step_ms')}; exclude_kernels {m.get('exclude_kernels')}")
# the pacing spin, read without run.json's exclude_kernels (which leaves it out of every analysis)
from overlapscope.trace.classify import classified
from overlapscope.trace.load import read_trace_file, run_files
(f,) = run_files([out / "tbo-comm-stream-torch"]).traces
trace = classified(read_trace_file(f))
k = trace.gpu_ops[trace.gpu_ops["kind"] == "kernel"]
spin = k["name"].astype(str).str.contains("spin_kernel").to_numpy()
ms = ((k["end"] - k["start"]).to_numpy() / 1e6)
print(f"tbo pacing: {int(spin.sum())} spin kernels, ms each {[round(float(x), 2) for x in ms[spin]]}, "
      f"{ms[spin].sum():.2f} ms of {ms.sum():.2f} ms kernel time")
PY
tar -C "$out/.." -czf "$out.tgz" "$(basename "$out")" && rm -rf "$out"
