#!/usr/bin/env bash
# GPU run 30 (2026-11-29, fifth session): correctness after merging branch varlen-bwd
# (varlen batches in the backward) into the [q; r] score merge and wgmma-red. Every varlen
# backward group alone under timeout first (their own 60 s watchdog prints HANG), then the
# whole backward suite on the default and under PLX_BACKWARD_MMA=sync, every shipped
# backward variant, the Hopper prefill suite and the varlen prefill cases (SeqView
# changed), and the C API.
source "$(dirname "$0")/lib.sh"
B=build/tests/test_gpu_backward
for t in varlen_sync varlen_wgmma varlen_wgmma_loops varlen_engine; do run "$t" 120 $B -r compact "[$t]"; done
run bwd_default 200 $B -r compact "[gpu][backward]"
PLX_BACKWARD_MMA=sync run bwd_sync 200 $B -r compact "[gpu][backward]"
run bwd_shipped 200 $B -r compact "[shipped]"
run prefill_sm90 150 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
run attn_varlen 100 build/tests/test_gpu_attention -r compact "[varlen]"
run c_api 60 build/tests/test_c_api -r compact
echo "total $(( $(date +%s) - T0 ))s"
