#!/usr/bin/env bash
# GPU run 41 (2026-11-29, sixth session): the backward suite on main after the DkvQueries
# and forwarding-lambda refactors (never run on the GPU), on the default kernel and under
# PLX_BACKWARD_MMA=sync, and every shipped backward variant.
source "$(dirname "$0")/lib.sh"
B=build/tests/test_gpu_backward
run bwd_default 220 $B -r compact "[gpu][backward]"
PLX_BACKWARD_MMA=sync run bwd_sync 200 $B -r compact "[gpu][backward]"
run bwd_shipped 170 $B -r compact "[shipped]"
echo "total $(( $(date +%s) - T0 ))s"
