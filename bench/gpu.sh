#!/usr/bin/env bash
# Benchmark phenocast on a GPU machine: input pipeline, training steps, memory, and the projected run.
#
#   bash bench/gpu.sh [--no-install] [--zones 2] [--size 1200] [--months 230]
#
# In: nothing but the arguments (run from anywhere; uses $PYTHON, default `python`, e.g. a venv's).
# Steps: installs requirements.txt (unless --no-install); runs bench/scale.py, which generates (or reuses)
# a synthetic world of --zones zones of --size² × --months months in the competition layout, preprocesses
# it and measures input and training steps; runs bench/train_step.py (fused vs stock ConvLSTM, with XLA on
# a GPU). While they run, nvidia-smi (when present) samples the GPU's utilisation and memory every second.
# Out: outputs/bench-gpu/{scale.txt,scale.json,train_step.txt,nvidia-smi.csv} and a summary at the end.
# Without a GPU it still runs to the end, on small shapes (64² × 72 months, 64-pixel windows, 2 years,
# the `small` train_step shape), so a CPU-only machine can check the script.
set -euo pipefail

usage() { sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; }

install=1 zones=2 size=1200 months=230
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-install) install=0; shift ;;
    --zones|--size|--months)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || { echo "gpu.sh: $1 expects a positive integer, got '${2:-}'" >&2; exit 2; }
      declare "${1#--}=$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python}"
out="$root/outputs/bench-gpu"
mkdir -p "$out"
say() { echo "[gpu.sh $(date +%H:%M:%S)] $*"; }

if [[ $install -eq 1 ]]; then
  say "installing requirements.txt with $python -m pip"
  "$python" -m pip install -r requirements.txt
else
  say "--no-install: using the installed packages of $python"
fi

gpus="$("$python" -c 'import phenocast; tf = phenocast.import_tensorflow_quietly(); print(len(tf.config.list_physical_devices("GPU")))')"
scale_extra=() shapes="small,default" batch_sizes="1,4,8,16" xla=(--xla)
if [[ "$gpus" -eq 0 ]]; then
  say "no GPU visible to TensorFlow: running small shapes instead (64² × 72 months, 64-pixel windows, 2 years)"
  size=64 months=72 zones=1 shapes="small" batch_sizes="1,2" xla=()
  scale_extra=(--set tiling.centre=48 --set tiling.margin=8 --set sequence.years=2
               --set data.val_months=12 --set data.test_months=12 --input-samples 4)
else
  say "$gpus GPU(s) visible to TensorFlow"
fi

monitor_pid=""
stop_monitor() { if [[ -n "$monitor_pid" ]]; then kill "$monitor_pid" 2>/dev/null || true; wait "$monitor_pid" 2>/dev/null || true; monitor_pid=""; fi; }
trap stop_monitor EXIT
: > "$out/nvidia-smi.csv"
if command -v nvidia-smi > /dev/null; then
  say "sampling the GPU every second into $out/nvidia-smi.csv"
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 > "$out/nvidia-smi.csv" &
  monitor_pid=$!
else
  say "no nvidia-smi: the GPU's busy share is not sampled"
fi

say "bench/scale.py: $zones zone(s) of ${size}² × $months months (world reused if generated before)"
"$python" bench/scale.py --zones "$zones" --size "$size" --months "$months" --batch-sizes "$batch_sizes" \
  --workdir "$out" --json "$out/scale.json" "${scale_extra[@]}" 2>&1 | tee "$out/scale.txt"
say "bench/train_step.py --shapes $shapes ${xla[*]}"
"$python" bench/train_step.py --shapes "$shapes" --repeats 3 "${xla[@]}" 2>&1 | tee "$out/train_step.txt"
stop_monitor

echo
echo "=== summary ($out) ==="
"$python" - "$out/scale.json" <<'EOF'
import json, sys
values = json.load(open(sys.argv[1]))
device = values["device"]
print(f"device: {device['name']} ({device['kind']}); world {values['world']['zones']} zone(s) × "
      f"{values['world']['size']}² × {values['world']['months']} months")
print(f"preprocess: {values['preprocess']['seconds']:.1f} s ({values['preprocess']['per_zone']:.1f} s per zone), measured")
for name, source in values["input"].items():
    print(f"input {name}: {source['samples_per_second']:.2f} samples/s, "
          f"{source['core_seconds_per_sample']:.3f} host core-s/sample, measured")
for step in values["train_steps"]:
    if step["status"] == "measured":
        print(f"train step {step['precision']} batch {step['batch']}: {step['seconds_per_step']:.3f} s/step, "
              f"{step['batch'] / step['seconds_per_step']:.2f} samples/s, {step['peak_source']} "
              f"{step['peak_bytes'] / 1e9:.2f} GB, measured")
    else:
        print(f"train step {step['precision']} batch {step['batch']}: {step['reason']}")
projection = values["projection"]
total = projection["total_this_device"]
print(f"projected run ({projection['zones']} zones × {projection['size']}² × {projection['months']}): "
      f"{'n/a' if total is None else f'{total / 3600:.1f} h'} on this device, "
      f"{projection['total_flops_based'] / 3600:.1f} h at {values['device_flops'] / 1e12:.0f} TFLOP/s")
EOF
grep -E "^shape |^  (fused|stock)|speed-up over stock|^    (fused|stock)" "$out/train_step.txt" || true
if [[ "$gpus" -eq 0 ]]; then
  echo "note: no GPU, so small shapes: this checked the script; its projection extrapolates a 64-pixel, 2-year model"
fi
if [[ -s "$out/nvidia-smi.csv" ]]; then
  awk -F', *' '{ n++; u += $1; if ($1 > 0) busy++; if ($2 > m) m = $2 }
    END { printf "GPU over %d one-second samples: mean utilisation %.0f %%, busy (>0 %%) %.0f %% of the time, peak memory used %d MiB\n", n, u / n, 100 * busy / n, m }' \
    "$out/nvidia-smi.csv"
else
  echo "GPU busy share: not sampled (no nvidia-smi)"
fi
