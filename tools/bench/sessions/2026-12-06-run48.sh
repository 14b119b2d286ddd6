#!/usr/bin/env bash
# GPU run 48 (2026-12-06, seventh session). Issue 5: the Hopper prefill's work-item
# boundary. Earlier runs put about two tile-times of overhead on every work item (1.87-1.92
# us a tile per SM at 4096 keys against 1.69 at 16384). This session's changes: the
# epilogue computes 1/d1 once per row (it was an IEEE reciprocal with a slow-path branch per
# column pair, ~750 SASS instructions), the item decode uses multiply-shift divisors from
# shared memory and runs once per item (it ran three times), and the row max runs on four
# independent chains. A/B against main's a16e96c (build-exp/E0) in the same run, twice,
# with torch's cuDNN / FA2 prefill before and after; then the mask and length scan that
# separates the per-tile from the per-item cost; then the Hopper prefill suite and the
# python tests on the new build. Carry build-run and build-exp (E0: main's plx-bench and
# plx; E2: the no-softmax skeleton).
source "$(dirname "$0")/lib.sh"
P128=1x4096x16x8,1x16384x16x8,8x4096x16x8
P64=2x8192x32x8x64
J=$L/prefill.jsonl; : > "$J"
torch() { timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P128,$P64 --reps 10 | sed "s/^{/{\"tag\":\"torch$1\",/" >> "$J" 2>&1; }
torch 1; pack
for rep in 1 2; do
  for tag in E0 new; do
    bin=build/plx-bench; [ $tag = E0 ] && bin=build-exp/E0/plx-bench
    fams="parallax"; [ $rep = 1 ] && fams="parallax softmax"
    for f in $fams; do
      PLX_CACHE_DIR=/tmp/cache-$tag timeout 90 $bin prefill --family $f --shapes $P128,$P64 --reps 10 \
        | sed "s/^{/{\"tag\":\"$tag$rep\",/" >> "$J" 2>&1
    done
    echo "== $tag rep $rep $(( $(date +%s) - T0 ))s"; pack
  done
done
# E2: the new build with the plain loop's softmax replaced by a bare pack of S (wrong
# results; 2026-12-06-e2-no-softmax.diff): the time of the MMA and synchronisation skeleton.
PLX_CACHE_DIR=/tmp/cache-E2 timeout 90 build-exp/E2/plx-bench prefill --family parallax --shapes $P128,$P64 --reps 10 \
  | sed 's/^{/{"tag":"E2",/' >> "$J" 2>&1
# The other d 128 consumer loops on the new build.
for m in wgmma-pp wgmma-pipe wgmma-pipe-pp; do
  PLX_CACHE_DIR=/tmp/cache-new timeout 60 build/plx-bench prefill --family parallax --shapes $P128 --reps 10 \
    --variant plx_prefill_parallax_bf16_d128_causal_m64_n128_w12_s3_k1_${m}_sm90a | sed "s/^{/{\"tag\":\"$m\",/" >> "$J" 2>&1
done
torch 2
prefill_table "$J" | sort -k3,3 -k4,4n -k5,5n -k1,1 > "$L/prefill_table.txt"; pack
cat "$L/prefill_table.txt"
# Per-tile against per-item cost: full mask (no masked or dead tiles) and causal lengths.
S=$L/scan.jsonl; : > "$S"
for tag in E0 new; do
  bin=build/plx; [ $tag = E0 ] && bin=build-exp/E0/plx
  for m in full causal; do
    PLX_CACHE_DIR=/tmp/cache-$tag timeout 90 $bin bench prefill --family parallax --mask $m --json --budget-s 1 \
      --shapes 1x2048x16x8,1x4096x16x8,1x8192x16x8,1x16384x16x8 | sed "s/^{/{\"tag\":\"$tag-$m\",/" >> "$S" 2>&1
  done
done
pack
python3 - "$S" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    print(r.get('tag'), r.get('kv_len'), r.get('median_us'), r.get('tflops', r.get('TFLOPs')), r.get('variant', '')[-40:])
PY
run prefill_sm90 200 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
PARALLAX_LIB=build/libparallax.so run python 150 python3 python/tests/test_attention.py
echo "total $(( $(date +%s) - T0 ))s"
