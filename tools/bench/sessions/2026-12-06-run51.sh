#!/usr/bin/env bash
# GPU run 51 (2026-12-06, seventh session). Issue 5 after run 50: the tensor-core row sums
# only in the pipelined loop (they slowed the plain loop by 4-7%), and the Parallax d 128
# default is now wgmma-pipe. A/B against run 49's build (build-exp/L1, commit b500032) in
# the same run, twice, torch before and after; the Hopper prefill and backward suites on
# the final templates; issue 7's training step in rounds, three times, on the new default
# forward. Carry build-run and build-exp.
source "$(dirname "$0")/lib.sh"
P128=1x4096x16x8,1x16384x16x8,8x4096x16x8
P64=2x8192x32x8x64
J=$L/prefill.jsonl; : > "$J"
torch() { timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P128,$P64 --reps 10 | sed "s/^{/{\"tag\":\"torch$1\",/" >> "$J" 2>&1; }
torch 1; pack
for rep in 1 2; do
  for tag in L1 new; do
    bin=build/plx-bench; [ $tag = L1 ] && bin=build-exp/L1/plx-bench
    for f in parallax softmax; do
      PLX_CACHE_DIR=/tmp/cache-$tag timeout 90 $bin prefill --family $f --shapes $P128,$P64 --reps 10 \
        | sed "s/^{/{\"tag\":\"$tag$rep\",/" >> "$J" 2>&1
    done
    echo "== $tag rep $rep $(( $(date +%s) - T0 ))s"; pack
  done
done
torch 2
prefill_table "$J" | sort -k3,3 -k4,4n -k5,5n -k1,1 > "$L/prefill_table.txt"; pack
cat "$L/prefill_table.txt"
run prefill_sm90 120 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
run backward 150 build/tests/test_gpu_backward -r compact "[gpu][backward]"
for i in 1 2 3; do
  run "train_rounds_$i" 40 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 30 --no-check \
    --shapes 1x4096x16x8,1x16384x16x8
done
grep -h "^| 1 " $L/train_rounds_*.log
echo "total $(( $(date +%s) - T0 ))s"
