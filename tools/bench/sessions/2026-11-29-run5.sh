#!/usr/bin/env bash
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p $O
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main PLX_CACHE_DIR=/tmp/plx-cache
date -u +%FT%TZ
b=$O/paged_sweep.jsonl; : > $b
S=1x32768x32x8,8x8192x32x8
build/plx-bench decode --family parallax --shapes $S --reps 100 >> $b 2>&1
for pg in 16 64; do build/plx-bench decode --family parallax --page $pg --shapes $S --reps 100 >> $b 2>&1; done
for s in 3 4; do for k in 2 4 8 12 16 24 33; do
  build/plx-bench decode --family parallax --page 16 --shapes $S --reps 100 --variant plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s${s}_k${k}_sm90a | sed 's/^{/{"sweep":1,/' >> $b 2>&1
done; done
build/plx-bench decode --family parallax --shapes $S --reps 100 >> $b 2>&1
python3 -c "
import json
for l in open('$b'):
    if not l.startswith('{'): print(l.strip()); continue
    r=json.loads(l); print(r.get('sweep',0), r['batch'], r['kv_len'], r['page'], r['variant'][-18:], r['splits'], r['median_us'])
"
