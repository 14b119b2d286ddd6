#!/usr/bin/env bash
# GPU run 19 (2026-11-29, fourth session): the first GPU run of the wgmma backward draft
# (backward_sm90.cuh, merged from branch wgmma-bwd-wip): its oracle cases, then the
# training step with PLX_BACKWARD_MMA=wgmma against the mma.sync default and torch SDPA in
# the same run, then every backward case and the shipped variants under the wgmma choice.
# Every step under `timeout` (a wrong mbarrier phase hangs rather than fails).
source "$(dirname "$0")/lib.sh"
run bwd_wgmma 120 build/tests/test_gpu_backward -r compact "[wgmma]"
run train_mma 120 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 5
grep '^|' "$L/train_mma.log"
PLX_BACKWARD_MMA=wgmma run train_wgmma 120 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 5
grep '^|' "$L/train_wgmma.log"
PLX_BACKWARD_MMA=wgmma run bwd_all_wgmma 150 build/tests/test_gpu_backward -r compact "[gpu][backward]"
run bwd_shipped 200 build/tests/test_gpu_backward -r compact "[shipped]"
echo "total $(( $(date +%s) - T0 ))s"
