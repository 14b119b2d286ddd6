# Shared preamble of the GPU session scripts (sourced). Run from the repository root on the
# device machine with build-run/ carried (tools/bench/stage_build_run.sh fills it). Logs
# land in $L and go back as ONE tarball, $OUT/logs.tgz, refreshed after every step: the
# device returns at most 8 files, and a run killed at its time limit still returns what
# was packed so far.
set -uo pipefail
O=${OUT:-/tmp/out}; L=/tmp/logs; mkdir -p "$O" "$L"
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main PLX_CACHE_DIR=${PLX_CACHE_DIR:-/tmp/plx-cache}
T0=$(date +%s); date -u +%FT%TZ | tee "$L/date.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv \
  > "$L/gpu.csv" 2>&1
pack() { tar czf "$O/logs.tgz" -C "$L" .; }
# run NAME LIMIT_S CMD...: CMD's output in $L/NAME.log; prints status, time and Catch2's
# summary lines.
run() {
  local n=$1 lim=$2; shift 2; local s; s=$(date +%s)
  timeout "$lim" "$@" > "$L/$n.log" 2>&1; local rc=$?
  echo "== $n rc=$rc $(( $(date +%s) - s ))s"
  grep -E 'test cases|assertions|FAIL|HANG|== .*failed' "$L/$n.log" | head -8; pack
}
# prefill_table JSONL: one line per plx-bench / torch_baseline.py record of a prefill run.
prefill_table() {
  python3 - "$1" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    print(r.get('tag', '-'), r.get('impl'), r.get('family', r.get('backend', '')), r['batch'], r['kv_len'],
          r['heads_q'], r['d'], r['median_us'], r.get('TFLOPs'), r.get('variant', '')[-44:])
PY
}
