#!/usr/bin/env bash
# GPU run 17 (2026-11-29, third session): with the persistent prefill (run 15's kernel),
# every legal bf16 causal variant of specs/prefill_sm90_wgmma.yaml for parallax and
# softmax, d 128 on the three d 128 issue-5 shapes and d 64 on the d 64 one, to re-check
# the defaults (chosen before persistence); torch SDPA before and after in the same run.
source "$(dirname "$0")/lib.sh"
P128=1x4096x16x8,1x16384x16x8,8x4096x16x8
P64=2x8192x32x8x64
J=$L/sweep.jsonl; : > "$J"
timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P128,$P64 --reps 10 | sed 's/^{/{"tag":"torch-1",/' >> "$J" 2>&1
build/plx gen specs/prefill_sm90_wgmma.yaml 2>/dev/null | grep -oE "plx_prefill_(parallax|softmax)_bf16_d(128|64)_causal_m[^ :]*_sm90a( |$)" \
  | sort -u > "$L/names.txt"
wc -l < "$L/names.txt"
for n in $(cat "$L/names.txt"); do
  f=${n#plx_prefill_}; f=${f%%_bf16*}
  case $n in *_d64_*) S=$P64 ;; *) S=$P128 ;; esac
  [ $(( $(date +%s) - T0 )) -lt 230 ] || { echo "sweep stopped at 230 s"; break; }
  timeout 30 build/plx-bench prefill --family $f --shapes $S --variant $n --reps 10 \
    | sed 's/^{/{"tag":"sweep",/' >> "$J" 2>&1
done
pack
for f in parallax softmax; do timeout 60 build/plx-bench prefill --family $f --shapes $P128,$P64 --reps 10 \
  | sed 's/^{/{"tag":"default",/' >> "$J" 2>&1; done
timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P128,$P64 --reps 10 | sed 's/^{/{"tag":"torch-2",/' >> "$J" 2>&1
prefill_table "$J" | sort -k2,2 -k3,3 -k4,4n -k5,5n -k8,8n > "$L/sweep_table.txt"; pack
grep -E "^(default|torch)" "$L/sweep_table.txt"
echo "best per family/shape:"; awk '$1=="sweep" && !seen[$3" "$4" "$5" "$7]++' "$L/sweep_table.txt"
echo "total $(( $(date +%s) - T0 ))s"
