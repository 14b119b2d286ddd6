#!/usr/bin/env bash
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p $O
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main PLX_CACHE_DIR=/tmp/plx-cache PYTHONUNBUFFERED=1
date -u +%FT%TZ
b=$O/bench_d64.jsonl; : > $b
S="4x8192x32x8x64,32x4096x8x8x64,1x16384x8x8x64"
for fam in parallax softmax parallax_uncentered; do build/plx-bench decode --family $fam --shapes $S --reps 100 >> $b 2>&1; done
python3 build-run/src/tools/bench/torch_baseline.py decode --shapes $S --reps 100 >> $b 2>&1
cat $b | cut -c1-260
(timeout 300 build/tests/test_gpu_attention -r compact "odd lengths*","sliding windows","non-causal*","fully masked*","every GQA*","seqused_k*" > $O/attn_subset.log 2>&1; echo "attention subset rc=$?"); tail -c 1500 $O/attn_subset.log
echo run4-done
