#!/usr/bin/env bash
# One batched GPU session (the device is lent in short slots): the [gpu] tests, the host
# overhead bars, and the decode/prefill tables with their torch baselines, all in one run.
# Usage: tools/bench/gpu_session.sh OUTDIR [quick]   (expects a built build/)
set -uo pipefail
out=${1:?outdir}
export PLX_SOURCE_DIR=$PWD PLX_CACHE_DIR=${PLX_CACHE_DIR:-/tmp/plx-cache}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader > "$out/gpu.txt"
date -u +%FT%TZ >> "$out/gpu.txt"
for t in test_driver_compiler test_c_api test_gpu_attention; do
  ( time ./build/tests/$t -r compact ) > "$out/$t.log" 2>&1; echo "$t rc=$?"
done
./build/plx-bench overhead > "$out/overhead.jsonl" 2>&1
# Decode grid of issue 4: the reference-figure shapes, B {1,32} x L {512..16384} MHA 8
# heads, and D 64.
ref="1x4096x16x8,1x4096x32x8,1x32768x16x8,1x32768x32x8,1x131072x16x8,1x131072x32x8,8x8192x16x8,8x8192x32x8"
ref="$ref,32x8192x16x8,32x8192x32x8,64x4096x16x8,64x4096x32x8,128x2048x16x8,128x2048x32x8,16x32768x16x8,16x32768x32x8"
mha="1x512x8x8,1x1024x8x8,1x4096x8x8,1x16384x8x8,32x512x8x8,32x1024x8x8,32x4096x8x8,32x16384x8x8"
d64="4x8192x32x8x64,32x4096x8x8x64"
shapes="$ref,$mha,$d64"
b=$out/bench.jsonl; : > "$b"
for fam in parallax softmax parallax_uncentered; do
  ./build/plx-bench decode --family $fam --shapes "$shapes" --reps 100 >> "$b" 2>&1
done
python3 tools/bench/torch_baseline.py decode --shapes "$shapes" --reps 100 >> "$b" 2>&1
# Paged KV cache against the contiguous rows above (same shapes).
for page in 16 64; do
  ./build/plx-bench decode --family parallax --page $page --reps 100 \
    --shapes 32x4096x8x8,32x16384x8x8,8x8192x32x8,1x32768x32x8 >> "$b" 2>&1
done
for fam in parallax softmax; do
  ./build/plx-bench prefill --family $fam --shapes 1x4096x16x8,1x16384x16x8,8x4096x16x8 --reps 10 >> "$b" 2>&1
done
python3 tools/bench/torch_baseline.py prefill --shapes 1x4096x16x8,1x16384x16x8,8x4096x16x8 --reps 10 >> "$b" 2>&1
