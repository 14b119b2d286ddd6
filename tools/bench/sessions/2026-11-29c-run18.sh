#!/usr/bin/env bash
# GPU run 18 (2026-11-29, third session, the last of its device time): the final build with
# the new Parallax d 128 prefill default (m64 w12, 3 stages, plain wgmma, persistent)
# against the oracle, the training forward's statistics and gradients (backward suite), the
# C API, and the training-step benchmark with torch SDPA in the same run.
source "$(dirname "$0")/lib.sh"
run prefill_sm90 200 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
run backward 120 build/tests/test_gpu_backward -r compact
run c_api 60 build/tests/test_c_api -r compact
run train_step 120 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 5
grep '^|' "$L/train_step.log"
echo "total $(( $(date +%s) - T0 ))s"
