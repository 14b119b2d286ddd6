#!/usr/bin/env bash
# GPU run 36 (2026-11-29, fifth session), run from branch try-cluster (main + red-cluster,
# recorded in main's history without its changes): wgmma-red in 2-CTA clusters (
# rank 1 sends its dQ^T/dR^T fragments to rank 0 over distributed shared memory, one bulk
# reduction per pair). First GPU run: its own cases alone under timeout, then the other
# wgmma and varlen loop cases, then the training step against the default loop.
source "$(dirname "$0")/lib.sh"
B=build/tests/test_gpu_backward
run wgmma_red 120 $B -r compact "[wgmma_red]"
if grep -q "Passed" "$L/wgmma_red.log"; then
  run wgmma 150 $B -r compact "[wgmma]"
  run varlen_loops 100 $B -r compact "[varlen_wgmma_loops]"
  S=1x4096x16x8,1x16384x16x8
  for k in 1 2; do
    run "def_$k" 60 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 10 --no-check --shapes $S
    PLX_BACKWARD_MMA=wgmma-red run "red_$k" 60 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 10 \
      $([ $k = 1 ] && echo "" || echo --no-check) --shapes $S
  done
  for f in def_1 red_1 def_2 red_2; do echo "$f"; grep '^| ' "$L/$f.log" | grep -v '| B'; done
fi
echo "total $(( $(date +%s) - T0 ))s"
