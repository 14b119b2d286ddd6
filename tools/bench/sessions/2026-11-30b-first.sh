#!/usr/bin/env bash
# Prepared at the end of the sixth session of 2026-11-29 (not yet run): the first GPU run
# of the next session. What the sixth session changed after its last GPU run (47):
#   - tests: variant_of (test_gpu_attention's varlen and TMA helpers, the Hopper prefill
#     suite's wgmma_variant), tma.cuh without the unused mbar_test_wait;
#   - bucket keys: paged calls have their own buckets (engine path, host only);
#   - python tests: paged page 16 (TMA) and a CUDA graph captured through a paged cache;
#   - PLX_TUNE=sync races both decode loaders on sm_90a (test_measure "[gpu][tune]").
# Then issue 7's training step in rounds, three times, for the spread of the ratio.
source "$(dirname "$0")/lib.sh"
run attn 330 build/tests/test_gpu_attention -r compact "[gpu]"
run prefill_sm90 150 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
run sync_tune 120 build/tests/test_measure -r compact "[gpu][tune]"
PARALLAX_LIB=build/libparallax.so run python 150 python3 python/tests/test_attention.py
for i in 1 2 3; do
  run "train_rounds_$i" 90 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 30 --no-check \
    --shapes 1x4096x16x8,1x16384x16x8
done
grep -h "^| 1 " $L/train_rounds_*.log
echo "total $(( $(date +%s) - T0 ))s"
