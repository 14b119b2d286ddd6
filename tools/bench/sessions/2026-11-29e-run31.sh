#!/usr/bin/env bash
# GPU run 31 (2026-11-29, fifth session): (1) the training step on main after the varlen
# merge, parallax and softmax at the issue-7 shapes and d 64, gradients checked; (2) Nsight
# Compute on the backward at 1 x 4096 x 16/8 x 128, the default loop and wgmma-red, to see
# why the reduced form (27% fewer FLOPs) ran 17% slower in run 29.
source "$(dirname "$0")/lib.sh"
for fam in parallax softmax; do
  run "train_$fam" 120 python3 tools/bench/train_step.py --family $fam --lib build/libparallax.so --reps 10 \
    --shapes 1x4096x16x8,1x16384x16x8,2x8192x32x8x64
  echo "$fam"; grep '^| ' "$L/train_$fam.log" | grep -v '| B'
done
for m in wgmma wgmma-red; do
  s=$(date +%s)
  PLX_BACKWARD_MMA=$m timeout 120 ncu --clock-control none --set full --import-source no -k regex:backward_sm90 -c 1 \
    -o "$L/prof_$m" python3 tools/bench/train_step.py --lib build/libparallax.so --reps 1 --no-check \
    --shapes 1x4096x16x8 > "$L/ncu_$m.log" 2>&1
  echo "ncu $m rc=$? $(( $(date +%s) - s ))s"
  ncu --import "$L/prof_$m.ncu-rep" --page details > "$L/details_$m.txt" 2>&1
  grep -E 'Duration|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|L2 Hit|Registers|Local' \
    "$L/details_$m.txt" | head -16
  ncu --import "$L/prof_$m.ncu-rep" --page raw --csv > "$L/raw_$m.csv" 2>&1
  rm -f "$L/prof_$m.ncu-rep"; pack
done
python3 - "$L" <<'PY'
import csv, sys, os
keys = ['sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active',
        'sm__inst_executed_pipe_tensor_op_gmma.sum', 'l1tex__data_pipe_lsu_wavefronts_mem_shared.sum',
        'lts__t_sectors_op_red.sum', 'lts__t_requests_op_red.sum',
        'smsp__average_warp_latency_issue_stalled_barrier.ratio', 'smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio',
        'smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio',
        'smsp__average_warps_issue_stalled_wait_per_issue_active.ratio',
        'smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio',
        'smsp__average_warps_issue_stalled_membar_per_issue_active.ratio',
        'smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio',
        'smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio',
        'smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio',
        'gpu__time_duration.sum']
for m in ['wgmma', 'wgmma-red']:
    p = os.path.join(sys.argv[1], f'raw_{m}.csv')
    if not os.path.exists(p): continue
    rows = list(csv.reader(open(p)))
    hdr = next((r for r in rows if 'gpu__time_duration.sum' in r), None)
    if not hdr: print(m, 'no raw'); continue
    data = rows[rows.index(hdr) + 2]
    print('==', m)
    for k in keys:
        for i, h in enumerate(hdr):
            if h == k: print(f'  {k} = {data[i]}')
PY
echo "total $(( $(date +%s) - T0 ))s"
