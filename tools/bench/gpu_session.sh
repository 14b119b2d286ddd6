#!/usr/bin/env bash
# One batched GPU session (the device is lent in short slots): the [gpu] tests, the host
# overhead bars, and the decode/prefill tables with their torch baselines, all in one run.
# Usage: tools/bench/gpu_session.sh OUTDIR   (expects a built build/)
set -uo pipefail
out=${1:?outdir}
export PLX_SOURCE_DIR=$PWD PLX_CACHE_DIR=${PLX_CACHE_DIR:-/tmp/plx-cache}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader > "$out/gpu.txt"
date -u +%FT%TZ >> "$out/gpu.txt"
./build/tests/test_driver_compiler -r compact > "$out/test_driver.log" 2>&1; echo "test_driver_compiler rc=$?"
( time ./build/tests/test_gpu_attention -r compact ) > "$out/test_gpu.log" 2>&1; echo "test_gpu_attention rc=$?"
./build/plx-bench overhead > "$out/overhead.jsonl" 2>&1
b=$out/bench.jsonl; : > "$b"
for hq in 8 32; do
  for fam in parallax softmax; do ./build/plx-bench decode --family $fam --heads-q $hq --heads-kv 8 --reps 100 >> "$b" 2>&1; done
  python3 tools/bench/torch_baseline.py decode --heads-q $hq --heads-kv 8 --reps 100 >> "$b" 2>&1
done
for fam in parallax softmax; do
  ./build/plx-bench prefill --family $fam --batch 1 --kv 1024,4096,8192 --heads-q 32 --heads-kv 8 --reps 20 >> "$b" 2>&1
done
python3 tools/bench/torch_baseline.py prefill --batch 1 --kv 1024,4096,8192 --heads-q 32 --heads-kv 8 --reps 20 >> "$b" 2>&1
# Alternative decode tiles at large batch (what the tuner will search).
for v in m8_n128_w4_s2 m8_n64_w4_s3 m8_n128_w4_s3; do
  ./build/plx-bench decode --family parallax --batch 32 --kv 4096,16384 --heads-q 32 --heads-kv 8 --reps 100 \
    --variant plx_decode_parallax_bf16_d128_causal_${v}_kauto_sm90a >> "$b" 2>&1
done
