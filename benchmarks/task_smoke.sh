#!/usr/bin/env bash
# Short runs of v, np and gru on every task (one capped epoch each): the test metric and the seconds an
# epoch took, as a markdown table. Takes ~15 min on 2 CPU cores.
#   ODYSSEY_DATA_DIR=../shared/data bash benchmarks/task_smoke.sh [steps per epoch, default 50]
set -u
steps=${1:-50}
out=${OUT:-/tmp/task_smoke}; mkdir -p "$out"
args="epochs=1 max_steps_per_epoch=$steps wandb.mode=disabled"
declare -A extra=([mnist]="" [smnist]="eval_batch_size=500" [psmnist]="eval_batch_size=500" [adding]=""
  [jsb]="batch_size=16 eval_batch_size=100" [nottingham]="batch_size=16 eval_batch_size=100"
  [piano]="batch_size=8 eval_batch_size=25" [muse]="batch_size=16 eval_batch_size=50"
  [fsdd]="batch_size=32" [fsdd_strings]="batch_size=32 eval_batch_size=200")
echo "| task | cell | steps × batch | test metric | epoch s (incl. compile) | train seq/s |"
echo "|---|---|---|---|---:|---:|"
for task in mnist smnist psmnist adding jsb nottingham piano muse fsdd fsdd_strings; do
  for cell in v np gru; do
    dir="$out/$task-$cell"
    python train.py task=$task cell=$cell $args ${extra[$task]} hydra.run.dir="$dir" > "$dir.log" 2>&1
    python - "$dir" <<'PY'
import json, sys
r = json.load(open(f"{sys.argv[1]}/result.json"))
if r["status"] != "completed":
    print(f"| {r['task']} | {r['cell']} | | {r['status']}: {r.get('error', '')[:80]} | | |"); sys.exit()
line = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")][-1]
name = r["objective"]["name"]; c = r["config"]
print(f"| {r['task']} | {r['cell']} | {c['max_steps_per_epoch']} × {c['batch_size']} | {name} {r['test'][name]:.4g} | "
      f"{line['epoch_seconds']:.1f} | {line['seq_per_s']:.0f} |")
PY
  done
done
