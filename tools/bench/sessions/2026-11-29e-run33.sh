#!/usr/bin/env bash
# GPU run 33 (2026-11-29, fifth session): wgmma-red with two bulk requests of up to 8 KB
# per consumer and tile (accum laid out by d half, rows swizzled) instead of 64 of 256 B.
# Its oracle cases, then the training step A/B against the default loop.
source "$(dirname "$0")/lib.sh"
B=build/tests/test_gpu_backward
run bwd_wgmma 150 $B -r compact "[wgmma]"
run varlen_loops 100 $B -r compact "[varlen_wgmma_loops]"
S=1x4096x16x8,1x16384x16x8
for k in 1 2; do
  run "def_$k" 60 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 10 --no-check --shapes $S
  PLX_BACKWARD_MMA=wgmma-red run "red_$k" 60 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 10 \
    $([ $k = 2 ] && echo --no-check) --shapes $S
done
for f in def_1 red_1 def_2 red_2; do echo "$f"; grep '^| ' "$L/$f.log" | grep -v '| B'; done
echo "total $(( $(date +%s) - T0 ))s"
