#!/usr/bin/env bash
# GPU run 43 (2026-11-29, sixth session). (1) Paged decode: run 42 ruled out block-table
# latency (L2 prefetch of the split's table lines, page numbers two tiles ahead: no gain),
# yet with the same K/V addresses (linear page order) page 16 costs ~3 us over contiguous
# and page 64 nothing, same code. Nsight Compute on all three at 16 splits: stall reasons
# and per-instruction SASS samples. (2) The prepared prefill profile for issue 5
# (2026-11-30-ncu-prefill.sh). (3) The training step timed in rounds once more (issue 7).
source "$(dirname "$0")/lib.sh"
V=plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s3_k16_sm90a
prof() {  # NAME KERNEL_REGEX CMD...
  local n=$1 k=$2; shift 2; local s; s=$(date +%s)
  timeout 120 ncu --clock-control none --set full --import-source no -k "regex:$k" -s 3 -c 1 -o "$L/prof_$n" "$@" \
    > "$L/ncu_$n.log" 2>&1
  echo "ncu $n rc=$? $(( $(date +%s) - s ))s"
  ncu --import "$L/prof_$n.ncu-rep" --page details > "$L/details_$n.txt" 2>&1
  ncu --import "$L/prof_$n.ncu-rep" --page source --csv --print-source sass > "$L/sass_$n.csv" 2>&1
  grep -E 'Duration|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|DRAM Throughput|L2 Hit|Registers' \
    "$L/details_$n.txt" | head -12
  rm -f "$L/prof_$n.ncu-rep"; pack
}
B="build/plx-bench decode --family parallax --shapes 1x32768x32x8 --reps 5 --variant $V"
prof dec_contig decode_kernel $B
prof dec_p16lin decode_kernel $B --page 16 --page-order linear
prof dec_p64lin decode_kernel $B --page 64 --page-order linear
for S in 1x4096x16x8 8x4096x16x8; do
  prof "pre_$S" prefill_sm90 build/plx-bench prefill --family parallax --shapes $S --reps 3
done
run train_rounds 90 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 30 --no-check --shapes 1x16384x16x8
grep -h "^| 1 " $L/train_*.log
echo "total $(( $(date +%s) - T0 ))s"
