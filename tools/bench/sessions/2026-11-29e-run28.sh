#!/usr/bin/env bash
# GPU run 28 (2026-11-29, fifth session): the dK/dV role of the wgmma backward computes
# S1^T and S2^T with one m64 n(2 BN) wgmma against a stacked [q; r] slot tile (branch
# bwd-qr). The backward suite on the new kernel, then the training step A/B against the
# previous kernel (build-old/libparallax.so, main at ac15464), interleaved new/old/new/old.
source "$(dirname "$0")/lib.sh"
run bwd_default 150 build/tests/test_gpu_backward -r compact "[gpu][backward]"
for k in 1 2; do
  for lib in new old; do
    l=build/libparallax.so; [ $lib = old ] && l=build-old/libparallax.so
    run "train_${lib}_$k" 100 python3 tools/bench/train_step.py --family parallax --lib $l --reps 10 \
      --shapes 1x4096x16x8,1x16384x16x8,2x8192x32x8x64 $([ $k = 2 ] && echo --no-check)
    echo "$lib $k"; grep '^| ' "$L/train_${lib}_$k.log" | grep -v '| B'
  done
done
echo "total $(( $(date +%s) - T0 ))s"
