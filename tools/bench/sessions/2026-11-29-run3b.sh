#!/usr/bin/env bash
# GPU run 3b: the decode grid of issue 4 and the prefill shapes of issue 5, baselines in the same run.
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p $O
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main PLX_CACHE_DIR=/tmp/plx-cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader > $O/gpu.txt; date -u +%FT%TZ >> $O/gpu.txt
T=build-run/src/tools/bench
ref="1x4096x16x8,1x4096x32x8,1x32768x16x8,1x32768x32x8,1x131072x16x8,1x131072x32x8,8x8192x16x8,8x8192x32x8"
ref="$ref,32x8192x16x8,32x8192x32x8,64x4096x16x8,64x4096x32x8,128x2048x16x8,128x2048x32x8,16x32768x16x8,16x32768x32x8"
mha="1x512x8x8,1x1024x8x8,1x4096x8x8,1x16384x8x8,32x512x8x8,32x1024x8x8,32x4096x8x8,32x16384x8x8"
shapes="$ref,$mha,4x8192x32x8x64,32x4096x8x8x64"
b=$O/bench.jsonl; : > $b
for fam in parallax softmax parallax_uncentered; do build/plx-bench decode --family $fam --shapes "$shapes" --reps 100 >> $b 2>&1; done
python3 $T/torch_baseline.py decode --shapes "$shapes" --reps 100 >> $b 2>&1
for page in 16 64; do build/plx-bench decode --family parallax --page $page --reps 100 --shapes 32x4096x8x8,32x16384x8x8,8x8192x32x8,1x32768x32x8 >> $b 2>&1; done
P="1x4096x16x8,1x16384x16x8,8x4096x16x8,2x8192x32x8x64"
for fam in parallax softmax; do build/plx-bench prefill --family $fam --shapes $P --reps 10 >> $b 2>&1; done
python3 $T/torch_baseline.py prefill --shapes $P --reps 10 >> $b 2>&1
build/plx-bench overhead >> $b 2>&1
echo run3b-done; wc -l $b
