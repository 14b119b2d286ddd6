#!/usr/bin/env bash
# GPU run 42 (2026-11-29, sixth session). (1) Paged decode's block-table reads, three
# variants of KvLoader against main (run 40: the L1 prefetch 8 tiles ahead changed
# nothing): E1 prefetches the split's table lines into L2 at the start (prefetch.global.L2,
# one line per thread); E2 reads page numbers two tiles ahead instead of one; E3 both.
# build-exp/E*/ hold plx-bench and test_gpu_attention of each. Oracle cases on E3, then
# decode A/B twice. (2) train_step.py timed in rounds vs sequentially (main's library).
source "$(dirname "$0")/lib.sh"
run paged_e3 120 build-exp/E3/test_gpu_attention -r compact "paged KV cache: pages 16 to 256, shuffled, with live lengths"
run split_e3 120 build-exp/E3/test_gpu_attention -r compact "split-KV on and off give the same answer as the oracle"
D=$L/decode_table_reads.jsonl; : > "$D"
for rep in 1 2; do
  for tag in main E1 E2 E3; do
    bin=$( [ $tag = main ] && echo build/plx-bench || echo build-exp/$tag/plx-bench )
    for args in "--shapes 1x32768x32x8" "--shapes 1x32768x32x8 --page 16" "--shapes 1x32768x32x8 --page 16 --page-order linear" \
                "--shapes 1x32768x32x8 --page 32" "--shapes 1x32768x32x8 --page 64" "--shapes 8x8192x32x8 --page 16"; do
      timeout 60 $bin decode --family parallax $args --reps 100 | sed "s/^{/{\"rep\":$rep,\"tag\":\"$tag\",/" >> "$D" 2>&1
    done
  done
  pack
done
python3 - "$D" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): print(l.strip()[:200]); continue
    r = json.loads(l)
    print(r['rep'], r['tag'], r['batch'], r['kv_len'], 'page', r.get('page'), r.get('page_order', ''), 'splits', r.get('splits'), r['median_us'])
PY
S=1x4096x16x8,1x16384x16x8
for rep in 1 2; do
  run "train_rounds_$rep" 90 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 20 --no-check --shapes $S
  run "train_seq_$rep" 90 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 10 --no-check --order sequential --shapes $S
done
grep -h "^| 1 " $L/train_*.log
echo "total $(( $(date +%s) - T0 ))s"
