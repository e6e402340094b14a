#!/usr/bin/env bash
# Time the network's training step on a GPU host that has JAX (or PyTorch) but no TensorFlow.
#
#   bash bench/gpu_any_backend.sh --wheels DIR [--backend jax|torch] [--small] [--peak-tflops T] [--steps N]
#
# In: Python >= 3.11 ($PYTHON, default python3) with jax (or torch) installed, and DIR, a folder of wheels
# for keras and what the bench needs beyond the framework (namex, optree, ml-dtypes, h5py, rich, absl-py,
# packaging, pyyaml, pydantic and theirs), made where PyPI is reachable, for the host's Python and platform:
#   python -m pip download -d DIR keras pyyaml pydantic [--python-version 3.12 --platform manylinux2014_x86_64 --only-binary=:all:]
# Steps: every wheel of DIR whose distribution the host's Python lacks is installed offline
# (pip install --no-index --find-links DIR --no-deps --target TMP) into a temporary folder, removed at the end
# (the host's own packages, jax's numpy among them, are never replaced or shadowed); then, with TMP on
# PYTHONPATH, bench/train_step.py --backend times the stock-ConvLSTM2D network of configs/default.yaml at its
# own shape (288², 10 years), batch sizes 1, 4, 8, 16, float32 and bfloat16, with and without jit (XLA),
# while nvidia-smi (when present) samples the GPU every second.
# Out: outputs/bench-any-backend/{train_step.txt,train_step.json,nvidia-smi.csv} and a summary set against
# the README's projection (63 samples/s at 10 % of a 790 TFLOP/s bf16 peak; --peak-tflops states the GPU's
# own). With --small, or when the framework sees no GPU, it runs the small shape (64², 4 years), batch sizes
# 1 and 2, jit on, so a CPU-only machine runs it to the end (no peak then, unless --peak-tflops is given).
set -euo pipefail

DEFAULT_PEAK_TFLOPS=790  # the README's large GPU (bf16 dense); on a GPU without --peak-tflops; none on a CPU

usage() { sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; }

wheels="" backend=jax small=0 peak_tflops="" steps=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheels) [[ $# -ge 2 ]] || { echo "gpu_any_backend.sh: --wheels expects a folder of wheels" >&2; exit 2; }
      wheels="$2"; shift 2 ;;
    --backend) [[ "${2:-}" =~ ^(jax|torch)$ ]] || { echo "gpu_any_backend.sh: --backend expects jax or torch, got '${2:-}'" >&2; exit 2; }
      backend="$2"; shift 2 ;;
    --peak-tflops) [[ "${2:-}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "gpu_any_backend.sh: --peak-tflops expects a number, got '${2:-}'" >&2; exit 2; }
      peak_tflops="$2"; shift 2 ;;
    --steps) [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_any_backend.sh: --steps expects a positive integer, got '${2:-}'" >&2; exit 2; }
      steps="$2"; shift 2 ;;
    --small) small=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_any_backend.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
if [[ -z "$wheels" || ! -d "$wheels" ]] || ! compgen -G "$wheels/*.whl" > /dev/null; then
  echo "gpu_any_backend.sh: --wheels must name a folder of .whl files (keras and its dependencies), got '${wheels}';" \
       "make one with: python -m pip download -d DIR keras pyyaml pydantic" >&2
  exit 2
fi
wheels="$(cd "$wheels" && pwd)"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
out="$root/outputs/bench-any-backend"
mkdir -p "$out"
say() { echo "[gpu_any_backend.sh $(date +%H:%M:%S)] $*"; }

"$python" - "$backend" <<'EOF' || exit 2
import importlib.util, sys
if sys.version_info < (3, 11):
    sys.exit(f"gpu_any_backend.sh: needs Python >= 3.11, this is {sys.version.split()[0]} ({sys.executable}); set PYTHON")
if importlib.util.find_spec(sys.argv[1]) is None:
    sys.exit(f"gpu_any_backend.sh: {sys.executable} has no {sys.argv[1]}; install it or choose --backend")
EOF

target="$(mktemp -d "${TMPDIR:-/tmp}/phenocast-wheels.XXXXXX")"
monitor_pid=""
cleanup() {
  if [[ -n "$monitor_pid" ]]; then kill "$monitor_pid" 2>/dev/null || true; wait "$monitor_pid" 2>/dev/null || true; fi
  rm -rf "$target"
}
trap cleanup EXIT

# The wheels whose distribution the host lacks (names compared as PEP 503 normalises them).
missing="$("$python" - "$wheels" <<'EOF'
import importlib.metadata, pathlib, re, sys
installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in importlib.metadata.distributions()}
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
    if name not in installed:
        print(wheel)
EOF
)"
if [[ -n "$missing" ]]; then
  say "installing offline into $target: $(echo "$missing" | xargs -n1 basename | sed 's/-[0-9].*//' | tr '\n' ' ')"
  # shellcheck disable=SC2086 (one wheel path per word)
  "$python" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$wheels" --no-deps \
    --target "$target" $missing
else
  say "the host already has every distribution of $wheels"
fi
export PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND="$backend"
"$python" -c 'import keras, pydantic, yaml; print(f"keras {keras.__version__} on {keras.backend.backend()}")' \
  || { echo "gpu_any_backend.sh: keras, pydantic or yaml does not import with $wheels; a wheel is missing or is for another Python/platform" >&2; exit 1; }

gpus="$("$python" - "$backend" <<'EOF'
import sys
if sys.argv[1] == "jax":
    import jax
    print(sum(device.platform == "gpu" for device in jax.devices()))
else:
    import torch
    print(torch.cuda.device_count())
EOF
)"
shapes="default" batch_sizes="1,4,8,16" jit="on,off"
if [[ $small -eq 1 || "$gpus" -eq 0 ]]; then
  say "$([[ $small -eq 1 ]] && echo "--small" || echo "no GPU visible to $backend"): the small shape (64², 4 years), batches 1 and 2, jit on"
  shapes="small" batch_sizes="1,2" jit="on"
else
  say "$gpus GPU(s) visible to $backend"
  peak_tflops="${peak_tflops:-$DEFAULT_PEAK_TFLOPS}"
fi
peak=()
if [[ -n "$peak_tflops" ]]; then peak=(--peak-tflops "$peak_tflops"); fi

: > "$out/nvidia-smi.csv"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 > "$out/nvidia-smi.csv" &
  monitor_pid=$!
fi
say "bench/train_step.py --backend $backend --shapes $shapes --batch-sizes $batch_sizes --jit $jit"
"$python" bench/train_step.py --backend "$backend" --shapes "$shapes" --batch-sizes "$batch_sizes" \
  --precisions float32,bfloat16 --jit "$jit" --steps "$steps" "${peak[@]}" \
  --json "$out/train_step.json" 2>&1 | tee "$out/train_step.txt"

echo
echo "=== summary ($out) ==="
"$python" - "$out/train_step.json" <<'EOF'
import json, sys
table = json.load(open(sys.argv[1]))
print(f"{table['device']}, keras {table['keras']}; TensorFlow imported: {table['tensorflow_imported']}")
for shape in table["shapes"]:
    projected = shape.get("projected_samples_per_second")
    line = f"shape {shape['name']} {tuple(shape['sample_shape'])}: {shape['flops_per_sample'] / 1e12:.4f} TFLOP/sample"
    if projected:
        line += f"; projection {projected:.1f} samples/s (10 % of {table['peak_tflops']:g} TFLOP/s)"
    print(line)
    rows = [row for row in table["rows"] if row["shape"] == shape["name"] and row["status"] == "measured"]
    for row in rows:
        line = (f"  {row['precision']:<8} jit {'on ' if row['jit'] else 'off'} batch {row['batch']:>2}: "
                f"{row['seconds_per_step']:.3f} s/step, {row['samples_per_second']:.2f} samples/s")
        if projected:
            line += f" = {row['samples_per_second'] / projected:.3f} × the projection"
        if row["peak_share"] is not None:
            line += f", {100 * row['peak_share']:.2f} % of peak"
        if row["peak_bytes"] is not None:
            line += f", peak {row['peak_bytes'] / 2 ** 30:.2f} GiB"
        print(line + ", measured")
    for row in table["rows"]:
        if row["shape"] == shape["name"] and row["status"] != "measured":
            print(f"  {row['precision']:<8} jit {'on ' if row['jit'] else 'off'} batch {row['batch']:>2}: "
                  f"{row['status']} ({row['reason']})")
EOF
if [[ -s "$out/nvidia-smi.csv" ]]; then
  awk -F', *' '{ n++; u += $1; if ($2 > m) m = $2 } END { printf "GPU: mean utilisation %.0f %% over %d s, peak memory used %d MiB\n", u / n, n, m }' \
    "$out/nvidia-smi.csv"
fi
if [[ "$shapes" == "small" ]]; then
  echo "note: small shape, so this checked the script; the GPU figures come from a run on a GPU at the default shape"
fi
