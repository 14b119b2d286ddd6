#!/usr/bin/env bash
# GPU run 24 (2026-11-29, fourth session): the wgmma backward as the engine's sm_90a
# default (stages 4; block_n 64 at d 64; pipelined loop for softmax d 128). The whole
# backward suite on the default and under PLX_BACKWARD_MMA=sync, every shipped backward
# variant, the C API, then the training step (gradients checked against fp32 autograd)
# for parallax and softmax at the issue-7 shapes and d 64, with torch SDPA in the same run.
source "$(dirname "$0")/lib.sh"
run bwd_default 200 build/tests/test_gpu_backward -r compact "[gpu][backward]"
PLX_BACKWARD_MMA=sync run bwd_sync 200 build/tests/test_gpu_backward -r compact "[gpu][backward]"
run bwd_shipped 240 build/tests/test_gpu_backward -r compact "[shipped]"
run c_api 60 build/tests/test_c_api -r compact
for fam in parallax softmax; do
  run "train_$fam" 150 python3 tools/bench/train_step.py --family $fam --lib build/libparallax.so --reps 10 \
    --shapes 1x4096x16x8,1x16384x16x8,2x8192x32x8x64
  echo "$fam"; grep '^| ' "$L/train_$fam.log" | grep -v '| B'
done
echo "total $(( $(date +%s) - T0 ))s"
