#!/usr/bin/env bash
# GPU run 6 (2026-11-29, second session): ping-pong wgmma prefill and the FFMA/packed-P
# online softmax against the fp64 oracle, then the variant table on the issue-5 shapes;
# the full [gpu] attention suite (every kernel shares online_state.cuh); the backward suite
# (training forwards now on the wgmma kernel); the installed decode example (issue 8).
# Carry build-run/ (see tools/bench/sessions/README.md); logs come back as one tarball.
set -uo pipefail
O=${OUT:-/tmp/out}; L=/tmp/logs; mkdir -p $O $L
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main PLX_CACHE_DIR=/tmp/plx-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $L/gpu.txt
t0=$(date +%s); date -u +%FT%TZ | tee -a $L/gpu.txt
run() {  # run NAME LIMIT_S CMD...
  local n=$1 lim=$2; shift 2; local s=$(date +%s)
  timeout $lim "$@" > $L/$n.log 2>&1; local rc=$?
  echo "== $n rc=$rc $(( $(date +%s) - s ))s"; grep -E 'test cases|assertions|FAIL|HANG' $L/$n.log | head -8
  tar czf $O/logs.tgz -C $L .  # after every step: what ran comes back even if a later one is cut
}
run prefill_sm90 200 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
run prefill_bench 150 build/tests/test_gpu_prefill_sm90 "[bench]"
grep -E '^--|TFLOP|best' $L/prefill_bench.log | cut -c1-150
run backward 120 build/tests/test_gpu_backward -r compact
OUT=$L/example timeout 150 tools/bench/sessions/2026-11-29-example-gpu.sh 2 4096 20 > $L/example.log 2>&1; echo "== example rc=$?"
grep -E 'PASS|FAIL|step' $L/example.log | head -20
run c_api 60 build/tests/test_c_api -r compact
run attention 240 build/tests/test_gpu_attention -r compact
echo "total $(( $(date +%s) - t0 ))s"
tar czf $O/logs.tgz -C $L .
