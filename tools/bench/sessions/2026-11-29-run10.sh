#!/usr/bin/env bash
# GPU run 10 (2026-11-29, second session, last of the session's device time): the final
# prefill defaults against the oracle, the backward suite (softmax training forwards now
# run wgmma-pipe-pp), and the CTA order A/B of the wgmma prefill (PLX_PREFILL_ORDER=lpt vs
# head-major) with torch SDPA in the same run. Carry build-run/.
set -uo pipefail
O=${OUT:-/tmp/out}; L=/tmp/logs; mkdir -p $O $L
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main PLX_CACHE_DIR=/tmp/plx-cache
t0=$(date +%s); date -u +%FT%TZ | tee $L/date.txt
pack() { tar czf $O/logs.tgz -C $L .; }
run() {  # run NAME LIMIT_S CMD...
  local n=$1 lim=$2; shift 2; local s=$(date +%s)
  timeout $lim "$@" > $L/$n.log 2>&1; local rc=$?
  echo "== $n rc=$rc $(( $(date +%s) - s ))s"; grep -E 'test cases|assertions|FAIL|HANG|== .*failed' $L/$n.log | head -8; pack
}
P=1x4096x16x8,1x16384x16x8,8x4096x16x8,2x8192x32x8x64
J=$L/order_ab.jsonl; : > $J
for rep in 1 2; do for order in head lpt; do for f in parallax softmax; do
  PLX_PREFILL_ORDER=$order timeout 40 build/plx-bench prefill --family $f --shapes $P --reps 10 | sed "s/^{/{\"order\":\"$order\",\"rep\":$rep,/" >> $J 2>&1
done; done; done
timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P --reps 10 >> $J 2>&1
python3 - $J <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    print(r.get('order', '-'), r.get('rep', '-'), r.get('impl'), r.get('family', r.get('backend', '')), r['batch'], r['kv_len'], r['heads_q'], r['d'], r['median_us'], r.get('TFLOPs'), r.get('variant', '')[-40:])
PY
echo "== ab $(( $(date +%s) - t0 ))s"; pack
run prefill_sm90 150 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
run backward 90 build/tests/test_gpu_backward -r compact
echo "total $(( $(date +%s) - t0 ))s"
