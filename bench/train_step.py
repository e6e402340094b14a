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

Shapes: ``default`` = the ``--config`` network at its window, years and input channels, batch 1 (288², 10
years, 24 channels); ``small`` = the same network at window 64, 4 years, batch 4; ``sample`` = the tiny
network of ``configs/sample.yaml`` at its own shape (64², 4 years, 24 channels), batch 4.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # before TensorFlow starts; see model/__init__.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import model as network  # noqa: E402
from model.convlstm import ConvLSTM  # noqa: E402
from model.flops import random_batch, training_flops  # noqa: E402
from phenocast.config import load_config  # noqa: E402

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
    for implementation in BASE_VARIANTS:
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
    print(f"  ConvLSTM layers alone (forward + backward): fused {fused['layer_best']:.3f} s, "
          f"stock {stock['layer_best']:.3f} s, speed-up {stock['layer_best'] / fused['layer_best']:.2f}×; "
          f"the rest of the fused step ≈ {fused['best'] - fused['layer_best']:.3f} s")
    if "fused+xla" in result["variants"]:
        print("  time ÷ stock ConvLSTM2D without XLA (best rounds; median of in-round ratios; rounds):")
        for key, variant in result["variants"].items():
            print(f"    {labels[key]:<9} {variant['best'] / stock['best']:6.2f}×  "
                  f"{np.median(variant['to_stock']):6.2f}×  "
                  f"{' '.join(f'{value:.2f}' for value in variant['to_stock'])}")


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
    arguments = parser.parse_args(argv)
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
