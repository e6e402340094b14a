"""Benchmark a training step of the network: the fused ConvLSTM (as built) against stock ``ConvLSTM2D``.

For every shape, both variants of the same architecture (``model.convlstm: fused`` and ``keras``) are built,
compiled with Adam (``model.compile_model``) and trained on random data. Each of ``--repeats`` rounds times
a dense matmul, one training step of each variant (alternating which goes first), the variants' ConvLSTM
layers alone, and the matmul again. Other jobs share this CPU: the main numbers come from each
measurement's best round (the least disturbed one, as ``timeit``'s documentation recommends), and the
medians of the ratios taken within each round (measurements seconds apart, under about the same load)
are printed as a check, with every round's value. Printed per shape:

- seconds per step (best and median) and per sample; the speed-up over the stock variant;
- achieved FLOP/s = the step's FLOPs / its time, and its ratio to the matmul's FLOP/s. FLOPs are counted
  analytically by ``model/flops.py`` over the convolution and dense layers: 2·MACs forward, 3× that for a
  training step (forward, input gradient, weight gradient; 2× for the stem, which needs no input
  gradient); a ConvLSTM counts its input convolution for every year and its state convolution for every
  year but the first (the same useful work for both variants). Element-wise work is not counted;
- peak memory of the step as seen by TensorFlow's CPU allocator, and the process's peak RSS at the end;
- the ConvLSTM layers alone (same shapes, forward and backward) for both variants, and what the rest of
  the fused step (encoder, decoder, loss, optimizer) costs;
- with ``--xla``: both variants again, compiled with ``jit_compile=True`` (XLA), timed in the same rounds
  (the order of all four alternating), and every variant's time ÷ the stock variant's without XLA (best
  rounds, and the median of the in-round ratios). XLA made a ConvLSTM step ~10× slower on CPU; it is
  measured here for GPUs. Rounds default to 2 with ``--xla``.

Usage::

    python bench/train_step.py [--config configs/default.yaml] [--shapes small,default,sample] [--repeats 5]
                                [--set model.key=value] [--inter-op-threads N] [--xla]
    python bench/train_step.py --backend jax|torch|tensorflow [--shapes default] [--batch-sizes 1,4,8,16]
                                [--precisions float32,bfloat16] [--jit on,off] [--steps 3]
                                [--peak-tflops 790] [--json table.json]

With ``--backend`` the script measures the network alone on one Keras backend instead, as on a GPU host
that has JAX or PyTorch but no TensorFlow (``bench/gpu_any_backend.sh``): the jax and torch backends never
import TensorFlow (the stock ``ConvLSTM2D`` replaces the fused layer, and the batches are random arrays of
the config's input and target shapes, ``model.flops.random_batch``). For every shape, precision (float32;
bfloat16 = the ``mixed_bfloat16`` policy), compilation (``jit``: XLA for TensorFlow and JAX,
``torch.compile`` for PyTorch; ``off``: TensorFlow graphs, JAX op by op, PyTorch eager) and batch size, one
row: seconds per step (best of ``--steps`` after two warm-up steps, which compile), samples/s, achieved
TFLOP/s = ``model.flops.training_flops`` ÷ step time, its share of ``--peak-tflops`` (the device's stated
peak for that precision), and the device's peak memory from the backend's own statistics (JAX
``memory_stats()["peak_bytes_in_use"]``: the process's peak so far, which JAX cannot reset, so a row shows
its own only where it exceeds every earlier row's; ``torch.cuda.max_memory_allocated``; TensorFlow's
allocator ``get_memory_info``), "n/a" where the backend keeps none (JAX and PyTorch on a CPU). ``--json``
writes the table. A row whose step fails (out of memory) is reported as such and the larger batches of its
series are skipped.

Shapes: ``default`` = the ``--config`` network at its window, years and input channels, batch 1 (288², 10
years, 24 channels); ``small`` = the same network at window 64, 4 years, batch 4; ``sample`` = the tiny
network of ``configs/sample.yaml`` at its own shape (64², 4 years, 24 channels), batch 4.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")


def requested_backend(argv: list[str]) -> str | None:
    """The ``--backend`` of a command line (None: the TensorFlow comparison), read before Keras starts."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--backend", choices=BACKENDS)
    return parser.parse_known_args(argv)[0].backend


BACKEND = requested_backend(sys.argv[1:])
os.environ["KERAS_BACKEND"] = BACKEND or "tensorflow"  # Keras reads it once, at its import
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # before TensorFlow starts; see model/__init__.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import model as network  # noqa: E402
from model.flops import random_batch, training_flops  # noqa: E402
from phenocast.config import load_config  # noqa: E402

if keras.backend.backend() == "tensorflow":  # the other backends run without TensorFlow installed
    import tensorflow as tf

    from model.convlstm import ConvLSTM

SAMPLE_CONFIG = "configs/sample.yaml"
SHAPES = {  # name -> (config file or None for --config, config overrides, batch)
    "default": (None, [], 1),
    "small": (None, ["tiling.centre=48", "tiling.margin=8", "sequence.years=4"], 4),
    "sample": (SAMPLE_CONFIG, [], 4),  # the sample config's tiny network at its own shape (64², 4 years)
}
MATMUL_SIZE = 3072
BASE_VARIANTS = ("fused", "keras")  # model.convlstm values
XLA_VARIANTS = ("fused+xla", "keras+xla")  # the same, compiled with jit_compile=True
XLA_REPEATS = 2  # default rounds with --xla: an XLA ConvLSTM step is ~10× slower on CPU


def matmul_rate(size: int = MATMUL_SIZE, repeats: int = 2) -> float:
    """Best FLOP/s of a float32 ``size×size`` matmul."""
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    multiply = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    multiply().numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        multiply().numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def reset_peak_memory() -> None:
    """Start a new peak for TensorFlow's CPU allocator (only the BFC allocator keeps statistics)."""
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
    except ValueError:
        pass


def peak_memory() -> int | None:
    """Peak bytes of TensorFlow's CPU allocator since the last reset, or None without statistics."""
    try:
        return tf.config.experimental.get_memory_info("CPU:0")["peak"]
    except ValueError:
        return None


def build(config_path: str, overrides: list[str], implementation: str, xla: bool = False):
    """Build and compile the network of the config with the given ConvLSTM implementation (XLA if ``xla``)."""
    config = load_config(config_path, [*overrides, f"model.convlstm={implementation}",
                                       f"train.jit_compile={str(xla).lower()}"])
    network.set_precision(config)
    keras.utils.set_random_seed(config.seed)
    model = network.build_model(config)
    network.compile_model(model, config, network.make_optimizer(model, config.train.lr, config.train.weight_decay))
    return config, model


def convlstm_step(model: keras.Model, config, batch: int, implementation: str):
    """A function running the model's ConvLSTM layers alone, forward and backward, on random inputs.

    One standalone layer per ConvLSTM of ``model`` (same filters, kernel, input shape, return_sequences),
    gradients with respect to its input and weights, as inside the network's training step.
    """
    years = config.sequence.years
    layers, inputs = [], []
    for layer in model.layers:
        if not isinstance(layer, ConvLSTM):
            continue
        height, width, channels = layer.input.shape[1:]
        inputs.append(tf.random.normal((batch, years, height, width, channels), stddev=0.1))
        if implementation == "fused":
            layers.append(ConvLSTM(layer.filters, layer.kernel_size, return_sequences=layer.return_sequences,
                                   unroll=layer.unroll))
        else:
            layers.append(keras.layers.ConvLSTM2D(
                layer.filters, layer.kernel_size, padding="same", return_sequences=layer.return_sequences,
                unroll=layer.unroll))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.add_n([tf.reduce_mean(tf.square(layer(x))) for layer, x in zip(layers, inputs)])
        variables = [weight for layer in layers for weight in layer.trainable_weights]
        return tape.gradient(loss, [*inputs, *variables])

    return step


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def bench_shape(name: str, config_path: str, repeats: int, extra: list[str], xla: bool = False) -> dict:
    """Build both variants (and their XLA versions if ``xla``) at one shape and time ``repeats`` rounds.

    A round measures the matmul, a training step of each variant (alternating the order), the ConvLSTM
    layers alone of each variant without XLA, and the matmul again. Other jobs share the CPU, so ratios
    are taken within a round (seconds apart, under about the same load) and their median is reported.
    """
    config_file, overrides, batch = SHAPES[name]
    config_path = config_file or config_path
    overrides = [*overrides, *extra]
    variants = {}
    for label in (*BASE_VARIANTS, *(XLA_VARIANTS if xla else ())):
        implementation = label.split("+")[0]
        config, model = build(config_path, overrides, implementation, xla=label.endswith("+xla"))
        x, y = random_batch(config, batch)
        reset_peak_memory()
        for _ in range(2):  # trace (or compile with XLA), then one warm step
            model.train_on_batch(x, y)
        variants[label] = dict(model=model, x=x, y=y, times=[], layer_times=[], peak=peak_memory(),
                               flops=training_flops(model, config, batch))
    has_convlstm = any(isinstance(layer, ConvLSTM) for layer in variants["fused"]["model"].layers)
    for implementation in BASE_VARIANTS if has_convlstm else ():  # sequence.years 1 builds convolutions
        variant = variants[implementation]
        variant["layers"] = convlstm_step(variants["fused"]["model"], config, batch, implementation)
        variant["layers"]()  # trace
    for variant in variants.values():  # one untimed round: the allocator settles after the new functions
        variant["model"].train_on_batch(variant["x"], variant["y"])
        if "layers" in variant:
            variant["layers"]()
    matmul_rates = []
    for round_index in range(repeats):
        before = matmul_rate()
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for label in order:
            variant = variants[label]
            step = variant["model"].train_on_batch
            variant["times"].append(timed(lambda: step(variant["x"], variant["y"])))  # noqa: B023 (timed at once)
        for label in order:
            if "layers" in variants[label]:
                variants[label]["layer_times"].append(timed(variants[label]["layers"]))
        matmul_rates.append((before + matmul_rate()) / 2)
    fused, stock = variants["fused"], variants["keras"]
    shape = (batch, config.sequence.years, config.window, config.window, config.input_channels)
    result = dict(
        name=name, config=config_path, shape=shape, batch=batch, parameters=fused["model"].count_params(),
        matmul=max(matmul_rates),
        speedups=[s / f for s, f in zip(stock["times"], fused["times"])],
        efficiencies=[fused["flops"] / f / m for f, m in zip(fused["times"], matmul_rates)],
        variants={})
    for label, variant in variants.items():
        result["variants"][label] = dict(
            best=min(variant["times"]), median=float(np.median(variant["times"])), flops=variant["flops"],
            peak=variant["peak"], layer_best=min(variant["layer_times"], default=None),
            to_stock=[t / s for t, s in zip(variant["times"], stock["times"])])
    for variant in variants.values():
        del variant["model"]
        variant.pop("layers", None)
    keras.backend.clear_session()
    gc.collect()  # so that the next shape's peak memory starts from nothing
    return result


def report(result: dict) -> None:
    """Print one shape's table and ratios.

    Primary numbers use each measurement's best round (the least disturbed by other jobs, as ``timeit``
    recommends); the medians of the ratios taken within each round follow as a check.
    """
    fused, stock = result["variants"]["fused"], result["variants"]["keras"]
    matmul = result["matmul"]
    print(f"shape {result['name']} ({result['config']}): input {result['shape']} "
          f"(batch, years, H, W, channels), "
          f"{result['parameters']:,} parameters; matmul {MATMUL_SIZE}² {matmul / 1e9:.1f} GFLOP/s (best)")
    print(f"  {'variant':<9} {'s/step':>8} {'median':>8} {'s/sample':>9} {'GFLOP/step':>11} {'GFLOP/s':>8} "
          f"{'÷ matmul':>9} {'peak MB':>8}")
    labels = {"fused": "fused", "keras": "stock", "fused+xla": "fused+XLA", "keras+xla": "stock+XLA"}
    for label, variant in ((labels[key], value) for key, value in result["variants"].items()):
        peak = "n/a" if variant["peak"] is None else f"{variant['peak'] / 2 ** 20:.0f}"
        rate = variant["flops"] / variant["best"]
        print(f"  {label:<9} {variant['best']:>8.3f} {variant['median']:>8.3f} "
              f"{variant['best'] / result['batch']:>9.3f} {variant['flops'] / 1e9:>11.1f} "
              f"{rate / 1e9:>8.1f} {rate / matmul:>9.2f} {peak:>8}")
    print(f"  speed-up over stock ConvLSTM2D: {stock['best'] / fused['best']:.2f}×  "
          f"(median of in-round ratios {np.median(result['speedups']):.2f}×; rounds "
          f"{' '.join(f'{value:.2f}' for value in result['speedups'])})")
    print(f"  fused model FLOP/s ÷ matmul FLOP/s: {fused['flops'] / fused['best'] / matmul:.2f}  "
          f"(median of in-round ratios {np.median(result['efficiencies']):.2f}; rounds "
          f"{' '.join(f'{value:.2f}' for value in result['efficiencies'])})")
    if fused["layer_best"] is None:
        print("  ConvLSTM layers alone: none in this network (one year-step builds a convolution instead)")
    else:
        print(f"  ConvLSTM layers alone (forward + backward): fused {fused['layer_best']:.3f} s, "
              f"stock {stock['layer_best']:.3f} s, speed-up {stock['layer_best'] / fused['layer_best']:.2f}×; "
              f"the rest of the fused step ≈ {fused['best'] - fused['layer_best']:.3f} s")
    if "fused+xla" in result["variants"]:
        print("  time ÷ stock ConvLSTM2D without XLA (best rounds; median of in-round ratios; rounds):")
        for key, variant in result["variants"].items():
            print(f"    {labels[key]:<9} {variant['best'] / stock['best']:6.2f}×  "
                  f"{np.median(variant['to_stock']):6.2f}×  "
                  f"{' '.join(f'{value:.2f}' for value in variant['to_stock'])}")


# --- --backend: the network alone on one Keras backend (no TensorFlow for jax and torch) ---------------

PRECISIONS = {"float32": "false", "bfloat16": "bfloat16"}  # -> train.mixed_precision
PROJECTED_SHARE = 0.10  # README's projection: the default network at 10 % of a large GPU's peak
WARM_STEPS = 2  # untimed steps per row: the first traces and compiles for the batch's shape


def device_description() -> str:
    """The backend, its version and the device it computes on."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"jax {jax.__version__} on {device.platform}: {device.device_kind} ({len(jax.devices())} devices)"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"torch {torch.__version__} on cuda: {torch.cuda.get_device_name(0)}"
        return f"torch {torch.__version__} on cpu ({torch.get_num_threads()} threads)"
    gpus = tf.config.list_physical_devices("GPU")
    return f"tensorflow {tf.__version__} on {'GPU: ' + gpus[0].name if gpus else 'CPU'}"


def _tensorflow_device() -> str:
    return "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"


def reset_device_peak() -> None:
    """Start a new peak of the device's memory where the backend can (JAX cannot: its peak is the process's)."""
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    elif backend == "tensorflow":
        try:
            tf.config.experimental.reset_memory_stats(_tensorflow_device())
        except ValueError:
            pass


def device_peak() -> int | None:
    """Peak bytes of device memory by the backend's own statistics, None where it keeps none."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats()
        return None if not stats or "peak_bytes_in_use" not in stats else int(stats["peak_bytes_in_use"])
    if backend == "torch":
        import torch

        return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
    try:
        return int(tf.config.experimental.get_memory_info(_tensorflow_device())["peak"])
    except ValueError:
        return None


def build_for_backend(config_path: str, overrides: list[str], precision: str, jit: bool):
    """The config's network with the stock ConvLSTM2D (every backend has it), compiled as for training."""
    config = load_config(config_path, [*overrides, "model.convlstm=keras",
                                       f"train.mixed_precision={PRECISIONS[precision]}",
                                       f"train.jit_compile={str(jit).lower()}"])
    network.set_precision(config, capabilities=[])  # an explicit precision: no device query needed
    if keras.backend.backend() == "tensorflow":  # (it would import TensorFlow, where installed, to seed it)
        keras.utils.set_random_seed(config.seed)  # other backends: unseeded weights, which time the same
    model = network.build_model(config)
    network.compile_model(model, config, network.make_optimizer(model, config.train.lr, config.train.weight_decay))
    return config, model


def backend_series(name: str, config_path: str, extra: list[str], precision: str, jit: bool,
                   batch_sizes: list[int], steps: int, peak_tflops: float | None) -> list[dict]:
    """Rows of one (shape, precision, jit) series: one model, the batch sizes in increasing order.

    A failing step (out of memory) ends the series: its row says why, the larger batches are skipped.
    """
    config_file, overrides, _ = SHAPES[name]
    config, model = build_for_backend(config_file or config_path, [*overrides, *extra], precision, jit)
    rows, failed = [], None
    for batch in sorted(batch_sizes):
        row = dict(shape=name, precision=precision, jit=jit, batch=batch,
                   flops=training_flops(model, config, batch))
        rows.append(row)
        if failed:
            row.update(status="skipped", reason=f"batch {failed} failed")
            continue
        try:
            x, y = (keras.ops.convert_to_tensor(value) for value in random_batch(config, batch))
            step = model.train_on_batch
            reset_device_peak()
            for _ in range(WARM_STEPS):
                step(x, y)
            times = [timed(lambda: step(x, y)) for _ in range(steps)]  # noqa: B023 (timed at once)
        except Exception as error:  # noqa: BLE001 (out of memory differs by backend; the row records it)
            failed = batch
            row.update(status="failed", reason=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
            continue
        best = min(times)
        rate = row["flops"] / best
        row.update(status="measured", seconds_per_step=best, median_seconds=float(np.median(times)),
                   samples_per_second=batch / best, tflops_per_second=rate / 1e12,
                   peak_share=None if not peak_tflops else rate / (peak_tflops * 1e12), peak_bytes=device_peak())
    del model
    keras.backend.clear_session()
    gc.collect()
    return rows


def report_backend_rows(rows: list[dict]) -> None:
    print(f"  {'precision':<9} {'jit':<4} {'batch':>5} {'s/step':>8} {'median':>8} {'samples/s':>10} "
          f"{'TFLOP/s':>8} {'% peak':>7} {'peak MB':>8}")
    for row in rows:
        jit = "on" if row["jit"] else "off"
        if row["status"] != "measured":
            print(f"  {row['precision']:<9} {jit:<4} {row['batch']:>5} {row['status']}: {row['reason']}")
            continue
        share = "n/a" if row["peak_share"] is None else f"{100 * row['peak_share']:.2f}"
        peak = "n/a" if row["peak_bytes"] is None else f"{row['peak_bytes'] / 2 ** 20:.0f}"
        print(f"  {row['precision']:<9} {jit:<4} {row['batch']:>5} {row['seconds_per_step']:>8.3f} "
              f"{row['median_seconds']:>8.3f} {row['samples_per_second']:>10.2f} {row['tflops_per_second']:>8.3f} "
              f"{share:>7} {peak:>8}")


def run_backend_table(arguments) -> dict:
    """Every (shape, precision, jit) series of ``--backend``; prints each and returns the JSON table."""
    jits = [{"on": True, "off": False}[value] for value in arguments.jit.split(",")]
    batch_sizes = [int(value) for value in arguments.batch_sizes.split(",")]
    table = dict(backend=keras.backend.backend(), keras=keras.__version__, device=device_description(),
                 tensorflow_imported="tensorflow" in sys.modules, peak_tflops=arguments.peak_tflops,
                 steps=arguments.steps, shapes=[], rows=[])
    print(f"backend {table['device']}; Keras {keras.__version__}; {os.cpu_count()} CPUs; "
          f"TensorFlow imported: {table['tensorflow_imported']}")
    for name in arguments.shapes.split(","):
        config_file, overrides, _ = SHAPES[name]
        config = load_config(config_file or arguments.config, [*overrides, *arguments.set])
        per_sample = None
        for precision in arguments.precisions.split(","):
            for jit in jits:
                rows = backend_series(name, arguments.config, arguments.set, precision, jit, batch_sizes,
                                      arguments.steps, arguments.peak_tflops)
                if per_sample is None:
                    per_sample = rows[0]["flops"] // rows[0]["batch"]
                    shape = (config.sequence.years, config.window, config.window, config.input_channels)
                    print(f"\nshape {name} ({config_file or arguments.config}): sample {shape} (years, H, W, "
                          f"channels), horizon {config.predict.horizon}; {per_sample / 1e12:.4f} TFLOP per "
                          f"training sample (model/flops.py)")
                    entry = dict(name=name, sample_shape=shape, flops_per_sample=per_sample)
                    if arguments.peak_tflops:
                        entry["projected_samples_per_second"] = (PROJECTED_SHARE * arguments.peak_tflops * 1e12
                                                                 / per_sample)
                        print(f"  projection at {PROJECTED_SHARE:.0%} of the stated {arguments.peak_tflops:g} TFLOP/s: "
                              f"{entry['projected_samples_per_second']:.1f} samples/s")
                    table["shapes"].append(entry)
                report_backend_rows(rows)
                table["rows"].extend(rows)
    table["tensorflow_imported"] = "tensorflow" in sys.modules
    return table


def write_json(path: str, values: dict) -> None:
    """Write ``values`` as JSON atomically (a temporary file beside it, then a rename)."""
    from phenocast.io import atomic_write_text

    atomic_write_text(path, json.dumps(values, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--shapes", default="small,default,sample",
                        help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed rounds per shape (best one counts); default 5, {XLA_REPEATS} with --xla")
    parser.add_argument("--xla", action="store_true",
                        help="also time both variants compiled with jit_compile=True (XLA)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override applied to both variants, e.g. model.lstm_filters=[16,24,32]")
    parser.add_argument("--inter-op-threads", type=int, default=0,
                        help="TensorFlow inter-op threads; 0 = its default")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="time the network alone on this Keras backend (a table; see the module docstring) "
                             "instead of the TensorFlow fused-vs-stock comparison")
    parser.add_argument("--batch-sizes", default="1,4,8,16", help="with --backend: comma-separated batch sizes")
    parser.add_argument("--precisions", default="float32,bfloat16",
                        help="with --backend: of float32, bfloat16 (mixed_bfloat16 policy)")
    parser.add_argument("--jit", default="on,off", help="with --backend: compile with XLA/jit (on), without (off)")
    parser.add_argument("--steps", type=int, default=3, help="with --backend: timed steps per row (best counts)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="with --backend: the device's stated peak TFLOP/s, for each row's share of it")
    parser.add_argument("--json", default=None, metavar="PATH", help="with --backend: write the table as JSON")
    arguments = parser.parse_args(argv)
    if arguments.backend != BACKEND:
        raise ValueError(f"--backend {arguments.backend} must be on the command line of the script (Keras chose "
                         f"its backend at import, from the command line's {BACKEND})")
    if arguments.backend:
        for name in arguments.shapes.split(","):
            if name not in SHAPES:
                raise ValueError(f"unknown shape {name!r}; expected some of {', '.join(SHAPES)}")
        unknown = set(arguments.precisions.split(",")) - set(PRECISIONS)
        if unknown or set(arguments.jit.split(",")) - {"on", "off"}:
            raise ValueError(f"--precisions takes {', '.join(PRECISIONS)} and --jit takes on, off; received "
                             f"{arguments.precisions!r} and {arguments.jit!r}")
        table = run_backend_table(arguments)
        if arguments.json:
            write_json(arguments.json, table)
            print(f"\nwrote {arguments.json} ({len(table['rows'])} rows)")
        return 0
    repeats = arguments.repeats or (XLA_REPEATS if arguments.xla else 5)
    if arguments.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(arguments.inter_op_threads)
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"TF_CPU_ALLOCATOR_USE_BFC={os.environ.get('TF_CPU_ALLOCATOR_USE_BFC')}, "
          f"inter-op threads {tf.config.threading.get_inter_op_parallelism_threads() or 'default'}")
    for name in arguments.shapes.split(","):
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
        result = bench_shape(name, arguments.config, repeats, arguments.set, arguments.xla)
        print(f"\nload average (1, 5, 15 min) before: {load}; after: "
              f"{' '.join(f'{value:.2f}' for value in os.getloadavg())}")
        report(result)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10
    print(f"\nprocess peak RSS: {peak_rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
