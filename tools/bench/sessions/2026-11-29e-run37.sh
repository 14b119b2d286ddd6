#!/usr/bin/env bash
# GPU run 37 (2026-11-29, fifth session): is the page-16 decode gap the kernel's paging or
# the scattered pages? The same paged kernel with a shuffled block table (the default) and
# with a linear one (page i of batch b at b * pages + i: the contiguous layout's order),
# against the contiguous cache, twice.
source "$(dirname "$0")/lib.sh"
D=$L/decode_pages.jsonl; : > "$D"
for rep in 1 2; do
  for S in 1x32768x32x8 8x8192x32x8; do
    timeout 60 build/plx-bench decode --family parallax --shapes $S --reps 100 | sed "s/^{/{\"rep\":$rep,/" >> "$D" 2>&1
    for pg in 16 64; do
      for o in shuffled linear; do
        timeout 60 build/plx-bench decode --family parallax --shapes $S --page $pg --page-order $o --reps 100 \
          | sed "s/^{/{\"rep\":$rep,/" >> "$D" 2>&1
      done
    done
  done
  pack
done
python3 - "$D" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): print(l.strip()[:200]); continue
    r = json.loads(l)
    print(r['rep'], f"{r['batch']}x{r['kv_len']}x{r['heads_q']}x{r['heads_kv']}", 'page', r['page'], r['page_order'],
          'splits', r['splits'], r['median_us'])
PY
echo "total $(( $(date +%s) - T0 ))s"
