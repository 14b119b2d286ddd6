#!/usr/bin/env bash
# GPU run 9 (2026-11-29, second session): run 8 again after the producer fast path (whole K/V tiles: one cp.async and one add per row); the head-major wgmma prefill and the new
# defaults (wgmma-pp at d 128, three consumers at d 64) against the oracle; the variant
# table; plx-bench vs torch SDPA (cuDNN, FA2) in the same run for prefill and a decode
# sanity check after the FFMA online-softmax change; the training step; backward and
# full attention suites. Carry build-run/; logs come back as one tarball after each step.
set -uo pipefail
O=${OUT:-/tmp/out}; L=/tmp/logs; mkdir -p $O $L
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main PLX_CACHE_DIR=/tmp/plx-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $L/gpu.txt
t0=$(date +%s); date -u +%FT%TZ | tee -a $L/gpu.txt
pack() { tar czf $O/logs.tgz -C $L .; }
run() {  # run NAME LIMIT_S CMD...
  local n=$1 lim=$2; shift 2; local s=$(date +%s)
  timeout $lim "$@" > $L/$n.log 2>&1; local rc=$?
  echo "== $n rc=$rc $(( $(date +%s) - s ))s"; grep -E 'test cases|assertions|FAIL|HANG|== .*failed' $L/$n.log | head -8; pack
}
run prefill_sm90 150 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
run prefill_table 120 build/tests/test_gpu_prefill_sm90 "[bench]"
grep -E '^--|default|best' $L/prefill_table.log | cut -c1-160
P=1x4096x16x8,1x16384x16x8,8x4096x16x8,2x8192x32x8x64
J=$L/bench.jsonl; : > $J
for f in parallax softmax; do timeout 60 build/plx-bench prefill --family $f --shapes $P --reps 10 >> $J 2>&1; done
timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P --reps 10 >> $J 2>&1
D=32x8192x16x8,1x32768x32x8,8x8192x32x8,32x4096x8x8x64,1x4096x16x8
for f in parallax softmax; do timeout 40 build/plx-bench decode --family $f --shapes $D --reps 100 >> $J 2>&1; done
timeout 40 python3 tools/bench/torch_baseline.py decode --shapes $D --reps 100 >> $J 2>&1
echo "== bench $(( $(date +%s) - t0 ))s"; pack
python3 - $J <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
for r in rows: print(r.get('op'), r.get('impl'), r.get('family', r.get('backend', '')), r.get('batch'), r.get('kv_len'), r.get('heads_q'), r.get('d'), r.get('median_us'), r.get('TFLOPs', r.get('GBps')))
PY
run train_step 60 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 5
grep '^|' $L/train_step.log
run backward 90 build/tests/test_gpu_backward -r compact
run attention 200 build/tests/test_gpu_attention -r compact
echo "total $(( $(date +%s) - t0 ))s"
