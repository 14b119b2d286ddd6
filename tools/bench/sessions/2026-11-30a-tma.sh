#!/usr/bin/env bash
# Prepared for the next GPU session (not yet run). Issue 4, second TMA decode ring (branch
# decode-tma2): a producer warp of its own issues the boxes and waits on `empty`; the four
# consumer warps only wait on `full`, compute and release (run 29's ring had consumer warp
# 0's thread 0 do the copies, and ran slower than cp.async everywhere).
# The kernels' templates travel inside the library (build-run/, filled by
# tools/bench/stage_build_run.sh /work/wt-tma2/build); the [tma-spec] case also reads
# specs/decode_sm90_tma.yaml. Either check the branch out in /work/main and run
#   bash tools/bench/sessions/2026-11-30a-tma.sh
# or, leaving main's working tree alone, copy this script, lib.sh and the branch's specs/
# into build-run/src/ and run  bash build-run/src/2026-11-30a-tma.sh  (carry build-run).
#  1. correctness: each [tma-*] case of test_gpu_attention alone, under its own timeout (a
#     hang is an mbarrier that never completes; a case compiles 1-6 variants, ~10 s);
#  2. A/B, same binary, interleaved per shape: cp.async s3 vs TMA s3 and s4 of tile
#     m8_n64_w4, on 1x32768x32x8 contiguous / page 16 / page 64, 32x16384x8x8 and
#     8x8192x32x8; a second round if time is left. Whole script under 400 s: every step's
#     timeout is cut to what is left of a 390 s budget (tests may use up to 230 s of it).
source "$(dirname "$0")/lib.sh"
[ -f specs/decode_sm90_tma.yaml ] || export PLX_SOURCE_DIR=$PWD/build-run/src
echo "specs from $PLX_SOURCE_DIR"
left() { echo $(( 390 - ($(date +%s) - T0) )); }
cap() { local l; l=$(left); [ "$l" -lt "$1" ] && echo $(( l > 1 ? l : 1 )) || echo "$1"; }

for t in spec odd gqa split window seqused paged empty; do
  if [ $(( $(date +%s) - T0 )) -gt 230 ]; then echo "== tma_$t skipped (test budget spent)"; continue; fi
  run "tma_$t" "$(cap 45)" build/tests/test_gpu_attention -r compact "[tma-$t]"
done

b=$L/decode_tma_ab.jsonl; : > "$b"
P=plx_decode_parallax_bf16_d128_causal_m8_n64_w4
for rep in 1 2; do
  [ "$rep" = 2 ] && [ "$(left)" -lt 120 ] && { echo "== second A/B round skipped ($(left) s left)"; break; }
  for cfg in 1x32768x32x8:0 1x32768x32x8:16 1x32768x32x8:64 32x16384x8x8:0 8x8192x32x8:0; do
    S=${cfg%%:*} pg=${cfg##*:}
    for V in ${P}_s3_kauto_sm90a ${P}_s3_kauto_tma_sm90a ${P}_s4_kauto_tma_sm90a; do
      [ "$(left)" -lt 5 ] && break 3
      timeout "$(cap 30)" build/plx-bench decode --family parallax --shapes "$S" --page "$pg" --reps 100 --variant "$V" \
        2>&1 | sed "s/^{/{\"rep\":$rep,/" >> "$b"
    done
  done
  pack
done
python3 - "$b" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
# One line per (rep, shape, page): the cp.async time and each TMA time with its ratio.
by = {}
for r in rows:
    key = (r['rep'], f"{r['batch']}x{r['kv_len']}x{r['heads_q']}x{r['heads_kv']}", r.get('page', 0))
    tail = r['variant'].split('_w4_')[-1].replace('_kauto', '').replace('_sm90a', '')
    by.setdefault(key, {})[tail] = (r['median_us'], r['splits'])
print(f"{'rep':>3} {'shape':>14} {'page':>4} {'cp s3 us':>9} {'tma s3 us':>10} {'ratio':>6} {'tma s4 us':>10} {'ratio':>6}  splits cp/tma3/tma4")
for (rep, shape, page), v in sorted(by.items()):
    cp = v.get('s3', (None, '-'))
    t3 = v.get('s3_tma', (None, '-'))
    t4 = v.get('s4_tma', (None, '-'))
    f = lambda x: f"{x:.2f}" if x is not None else '-'
    q = lambda x: f"{x / cp[0]:.3f}" if x is not None and cp[0] else '-'
    print(f"{rep:>3} {shape:>14} {page:>4} {f(cp[0]):>9} {f(t3[0]):>10} {q(t3[0]):>6} {f(t4[0]):>10} {q(t4[0]):>6}"
          f"  {cp[1]}/{t3[1]}/{t4[1]}")
PY
grep -v '^{' "$b" | head -20
pack
echo "total $(( $(date +%s) - T0 ))s"
