#!/usr/bin/env bash
# GPU run 55 (2026-12-06, seventh session): the session's final build (tensor-core row
# sums also for the Parallax d 64 plain loop, after run 54's A/B). The issue-5 table with
# torch before and after, then the Hopper prefill and backward suites. Carry build-run.
source "$(dirname "$0")/lib.sh"
P=1x4096x16x8,1x16384x16x8,8x4096x16x8,2x8192x32x8x64
J=$L/prefill.jsonl; : > "$J"
torch() { timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P --reps 10 | sed "s/^{/{\"tag\":\"torch$1\",/" >> "$J" 2>&1; }
torch 1
for f in parallax softmax parallax; do
  timeout 90 build/plx-bench prefill --family $f --shapes $P --reps 10 | sed "s/^{/{\"tag\":\"final\",/" >> "$J" 2>&1
done
torch 2
prefill_table "$J" | sort -k3,3 -k4,4n -k5,5n -k1,1 > "$L/prefill_table.txt"; pack; cat "$L/prefill_table.txt"
run prefill_sm90 120 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
run backward 150 build/tests/test_gpu_backward -r compact "[gpu][backward]"
echo "total $(( $(date +%s) - T0 ))s"
