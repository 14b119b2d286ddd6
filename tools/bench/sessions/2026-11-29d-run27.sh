#!/usr/bin/env bash
# GPU run 27 (2026-11-29, fourth session; NO RESULT: the device machine stopped answering
# during this run and the session had no device time left to retry): the varlen backward (branch varlen-bwd) on top of
# the wgmma default and backward tuning: its varlen cases on both kernels, every backward
# case on the default and under PLX_BACKWARD_MMA=sync, the wgmma loops, the shipped
# variants, the prefill and attention suites (SeqView changed), the C API, and the final
# training step with gradients checked and torch SDPA in the same run.
source "$(dirname "$0")/lib.sh"
run bwd_varlen 150 build/tests/test_gpu_backward -r compact "[varlen]"
run bwd_default 200 build/tests/test_gpu_backward -r compact "[gpu][backward]"
PLX_BACKWARD_MMA=sync run bwd_sync 150 build/tests/test_gpu_backward -r compact "[gpu][backward]"
run bwd_shipped 200 build/tests/test_gpu_backward -r compact "[shipped]"
run prefill_sm90 200 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
run attention 200 build/tests/test_gpu_attention -r compact "[gpu]"
run c_api 60 build/tests/test_c_api -r compact
for fam in parallax softmax; do
  run "train_$fam" 150 python3 tools/bench/train_step.py --family $fam --lib build/libparallax.so --reps 10 \
    --shapes 1x4096x16x8,1x16384x16x8,2x8192x32x8x64
  echo "$fam"; grep '^| ' "$L/train_$fam.log" | grep -v '| B'
done
echo "total $(( $(date +%s) - T0 ))s"
