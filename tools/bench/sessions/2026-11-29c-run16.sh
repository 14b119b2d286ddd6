#!/usr/bin/env bash
# GPU run 16 (2026-11-29, third session): the grouped work order of the persistent Hopper
# prefill (cta_order 2: (batch, q head) pairs in groups whose K/V fit half the L2, each
# longest first) against the oracle with small uneven groups (PLX_PREFILL_GROUP=3), the
# default order again, then the three orders (lpt, group, head) on the issue-5 shapes,
# twice, with torch SDPA timed before and after. Order 2 measured slower than order 0 on
# every shape and was reverted (commit 839ca06); run it from commit d6af541.
source "$(dirname "$0")/lib.sh"
PLX_PREFILL_ORDER=group PLX_PREFILL_GROUP=3 run prefill_sm90_group3 200 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
PLX_PREFILL_ORDER=group run prefill_sm90_group 200 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
P=1x4096x16x8,1x16384x16x8,8x4096x16x8,2x8192x32x8x64
J=$L/prefill_orders.jsonl; : > "$J"
timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P --reps 10 | sed 's/^{/{"tag":"torch-1",/' >> "$J" 2>&1
for rep in 1 2; do for order in lpt group head; do for f in parallax softmax; do
  PLX_PREFILL_ORDER=$order timeout 60 build/plx-bench prefill --family $f --shapes $P --reps 10 \
    | sed "s/^{/{\"tag\":\"$order-$rep\",/" >> "$J" 2>&1
done; done; done
timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P --reps 10 | sed 's/^{/{"tag":"torch-2",/' >> "$J" 2>&1
prefill_table "$J"; pack
echo "total $(( $(date +%s) - T0 ))s"
