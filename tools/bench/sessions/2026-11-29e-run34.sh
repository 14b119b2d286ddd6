#!/usr/bin/env bash
# GPU run 34 (2026-11-29, fifth session), main after the varlen merge: the prefill table
# with torch SDPA in the same run (SeqView changed), paged decode page 16 / 64 against the
# contiguous cache at the two issue-4 shapes (twice, with torch's decode baseline), and
# wgmma-red at 2 stages against 3 and the default loop on the training step.
source "$(dirname "$0")/lib.sh"
P128=1x4096x16x8,1x16384x16x8,8x4096x16x8
P64=2x8192x32x8x64
J=$L/prefill.jsonl; : > "$J"
timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P128,$P64 --reps 10 | sed 's/^{/{"tag":"torch",/' >> "$J" 2>&1
for f in parallax softmax; do timeout 60 build/plx-bench prefill --family $f --shapes $P128,$P64 --reps 10 \
  | sed 's/^{/{"tag":"default",/' >> "$J" 2>&1; done
prefill_table "$J" | sort -k2,2 -k3,3 -k4,4n -k5,5n > "$L/prefill_table.txt"; pack
cat "$L/prefill_table.txt"
D=$L/decode.jsonl; : > "$D"
for rep in 1 2; do
  timeout 60 python3 tools/bench/torch_baseline.py decode --shapes 1x32768x32x8,8x8192x32x8 --reps 100 \
    | sed "s/^{/{\"tag\":\"torch$rep\",/" >> "$D" 2>&1
  for pg in 0 16 64; do
    timeout 60 build/plx-bench decode --family parallax --shapes 1x32768x32x8,8x8192x32x8 --page $pg --reps 100 \
      | sed "s/^{/{\"tag\":\"plx$rep\",/" >> "$D" 2>&1
  done
done
pack
python3 - "$D" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    print(r.get('tag'), r.get('impl', r.get('backend', '')), f"{r['batch']}x{r['kv_len']}x{r['heads_q']}x{r['heads_kv']}",
          'page', r.get('page', 0), r.get('splits', ''), r['median_us'])
PY
S=1x4096x16x8,1x16384x16x8
run train_def 60 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 10 --no-check --shapes $S
PLX_BACKWARD_MMA=wgmma-red run train_red3 60 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 10 --no-check --shapes $S
PLX_BACKWARD_MMA=wgmma-red PLX_BACKWARD_TILE=128,32,12,2 run train_red2 60 python3 tools/bench/train_step.py \
  --lib build/libparallax.so --reps 10 --no-check --shapes $S
for f in train_def train_red3 train_red2; do echo "$f"; grep '^| ' "$L/$f.log" | grep -v '| B'; done
echo "total $(( $(date +%s) - T0 ))s"
