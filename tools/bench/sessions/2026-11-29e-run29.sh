#!/usr/bin/env bash
# GPU run 29 (2026-11-29, fifth session).
#  1. mma wgmma-red (the dK/dV pass also reduces dQ/dR into an fp32 workspace with
#     cp.reduce.async.bulk): its [wgmma] oracle cases, under timeout;
#  2. training step A/B, parallax d 128: the default backward vs PLX_BACKWARD_MMA=wgmma-red,
#     interleaved, twice;
#  3. the TMA decode ring of branch decode-tma (build-tma/, its specs in build-tma/src):
#     its [tma] cases, then cp.async vs TMA decode on the issue-4 paged shapes.
source "$(dirname "$0")/lib.sh"
run bwd_wgmma 150 build/tests/test_gpu_backward -r compact "[wgmma]"
for k in 1 2; do
  nc=$([ $k = 2 ] && echo --no-check)
  run "train_def_$k" 80 python3 tools/bench/train_step.py --family parallax --lib build/libparallax.so --reps 10 \
    --shapes 1x4096x16x8,1x16384x16x8 $nc
  PLX_BACKWARD_MMA=wgmma-red run "train_red_$k" 80 python3 tools/bench/train_step.py --family parallax \
    --lib build/libparallax.so --reps 10 --shapes 1x4096x16x8,1x16384x16x8 $nc
  for m in def red; do echo "$m $k"; grep '^| ' "$L/train_${m}_$k.log" | grep -v '| B'; done
done
PLX_SOURCE_DIR=$PWD/build-tma/src run tma_tests 150 build-tma/test_gpu_attention -r compact "[tma]"
b=$L/decode_tma_ab.jsonl; : > "$b"
P=plx_decode_parallax_bf16_d128_causal_m8_n64_w4
for S in 1x32768x32x8 32x16384x8x8; do
  for pg in 0 16 64; do
    for V in ${P}_s3_kauto_sm90a ${P}_s3_kauto_tma_sm90a ${P}_s4_kauto_tma_sm90a; do
      timeout 60 build-tma/plx-bench decode --family parallax --shapes $S --page $pg --reps 100 --variant $V >> "$b" 2>&1
    done
  done
done
pack
python3 - "$b" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    print(f"{r['batch']}x{r['kv_len']}x{r['heads_q']}x{r['heads_kv']}", r.get('page', 0),
          r['variant'].split('_w4_')[-1], r['splits'], r['median_us'])
PY
grep -v '^{' "$b" | head -10
echo "total $(( $(date +%s) - T0 ))s"
