#!/usr/bin/env bash
# GPU run 1 (2026-11-29): lead build; tests; fused vs separate merge; split sweep; paged loader.
set -uo pipefail
B=$PWD/build-lead; O=${OUT:-/tmp/out}; mkdir -p $O
export PLX_SOURCE_DIR=$B/src PLX_CACHE_DIR=/tmp/plx-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
date -u +%FT%TZ | tee -a $O/gpu.txt
for t in test_driver_compiler test_c_api test_gpu_attention; do
  ( time $B/tests/$t -r compact ) > $O/$t.log 2>&1; echo "$t rc=$?"; tail -3 $O/$t.log
done
PLX_DECODE_MERGE=kernel $B/tests/test_gpu_attention -r compact "*split*" > $O/test_split_kernelmerge.log 2>&1; echo "split(kernel merge) rc=$?"; tail -2 $O/test_split_kernelmerge.log
J=$O/bench.jsonl; : > $J
S1="1x4096x16x8,1x4096x32x8,1x32768x16x8,1x32768x32x8,1x131072x32x8,1x512x8x8,1x1024x8x8,1x4096x8x8,1x16384x8x8,4x8192x32x8x64,32x4096x8x8x64,8x8192x32x8,32x16384x8x8"
for m in fused kernel; do
  PLX_DECODE_MERGE=$m $B/plx-bench decode --family parallax --shapes "$S1" --reps 100 | sed "s/^{/{\"merge\":\"$m\",/" >> $J
done
PLX_DECODE_MERGE=fused $B/plx-bench decode --family softmax --shapes "$S1" --reps 100 | sed 's/^{/{"merge":"fused",/' >> $J
python3 $B/src/tools/bench/torch_baseline.py decode --shapes "$S1" --reps 100 >> $J 2>&1
# split / stages sweep on the batch-1 long shapes
for s in 2 3 4; do for k in 8 16 24 33 48 66 99 132; do
  for sh in 1x32768x32x8 1x16384x8x8; do
    $B/plx-bench decode --family parallax --shapes $sh --reps 100 --variant plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s${s}_k${k}_sm90a | sed "s/^{/{\"sweep\":1,/" >> $J
  done
done; done
for page in 16 64; do
  $B/plx-bench decode --family parallax --page $page --reps 100 --shapes 32x4096x8x8,32x16384x8x8,8x8192x32x8,1x32768x32x8 >> $J 2>&1
done
echo done
