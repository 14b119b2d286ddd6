#!/usr/bin/env bash
# GPU run 11 (2026-11-29, second session): the final build (longest-first CTA order as the
# default again) against the oracle: wgmma prefill, backward, C API; and the default
# prefill rows once more. Carry build-run/.
set -uo pipefail
O=${OUT:-/tmp/out}; L=/tmp/logs; mkdir -p $O $L
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main PLX_CACHE_DIR=/tmp/plx-cache
t0=$(date +%s); date -u +%FT%TZ | tee $L/date.txt
for t in "test_gpu_prefill_sm90 [gpu]" "test_gpu_backward" "test_c_api"; do
  set -- $t; timeout 90 build/tests/$1 -r compact ${2:-} > $L/$1.log 2>&1; echo "== $1 rc=$?"
  grep -E 'test cases|assertions|== .*failed' $L/$1.log | head -6
done
timeout 40 build/plx-bench prefill --family parallax --shapes 1x4096x16x8,8x4096x16x8 --reps 10 | tee $L/bench.jsonl | cut -c1-220
echo "total $(( $(date +%s) - t0 ))s"; tar czf $O/logs.tgz -C $L .
