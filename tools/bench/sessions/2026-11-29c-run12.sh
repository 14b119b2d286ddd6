#!/usr/bin/env bash
# GPU run 12 (2026-11-29, third session): varlen (cu_seqlens) forward against the oracle
# and bitwise against batch-1 calls, in both prefill kernels; the whole wgmma prefill suite
# again (the three-consumer register split 40 / 152 had not run on a GPU); the harness's
# interleave rotation; the C API; the issue-5 prefill table with torch SDPA in the same run.
source "$(dirname "$0")/lib.sh"
run measure_gpu 60 build/tests/test_measure -r compact "[gpu][measure]"
run prefill_sm90 200 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
run attention_varlen 120 build/tests/test_gpu_attention -r compact "[varlen]"
run c_api 60 build/tests/test_c_api -r compact
P=1x4096x16x8,1x16384x16x8,8x4096x16x8,2x8192x32x8x64
J=$L/prefill.jsonl; : > "$J"
for f in parallax softmax; do timeout 60 build/plx-bench prefill --family $f --shapes $P --reps 10 >> "$J" 2>&1; done
timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P --reps 10 >> "$J" 2>&1
prefill_table "$J"; pack
echo "total $(( $(date +%s) - T0 ))s"
