"""Benchmark the training input, tf.data on the host against device-resident data, side by side in one run.

    python bench/input_pipeline.py [--config configs/default.yaml] [--size 576] [--months 160]
                                   [--batch-size 8] [--batches 4] [--steps 2] [--set key=value …]

Generates one zone of the built-in sample's world (competition format), preprocesses it, then measures at
``--batch-size`` (8, the default GPU batch):

1. tf.data (``dataset.training_dataset``, assembling samples on the host from the int16 records: decoding,
   climatology, channels, augmentation): seconds per batch, and the host cost per sample = process CPU
   seconds (every thread) per sample while it alone runs;
2. device data (``phenocast.device_data``): the one-off load, the host cost per sample of its index stream
   (the only host work left outside the compiled step), and the assembly alone, compiled as in the step
   (samples per second on the device: this machine's CPU when it has no GPU);
3. the training step of the config's model on a fixed batch (no input work at all), and the device-data
   step (assembly inside): the assembly's share of that step = 1 - plain step / device-data step.

Goals: host cost with device data <= 1/10 of tf.data's; input throughput >= 3 × step throughput. On a
CPU-only machine the "device" is the host itself, so the device path's assembly there costs host CPU too;
the host-cost numbers say what is left for the host when the device is a GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import phenocast  # noqa: E402  (sets the TensorFlow environment first)


def timed(function, repeats: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call of ``function`` over ``repeats`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - wall) / repeats, (time.process_time() - cpu) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--size", type=int, default=576, help="zone side in pixels")
    parser.add_argument("--months", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=8, help="global batch (8: the default GPU batch)")
    parser.add_argument("--batches", type=int, default=4, help="input batches to time per path")
    parser.add_argument("--steps", type=int, default=2, help="training steps to time (after one warm-up)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--workdir", type=Path, help="keep generated data and records here")
    arguments = parser.parse_args()
    phenocast.import_tensorflow_quietly()
    import keras
    import numpy as np
    import tensorflow as tf

    import model as network
    from phenocast.config import load_config
    from phenocast.dataset import training_dataset, zone_samples
    from phenocast.device_data import DeviceData
    from phenocast.preprocess import load_zone_records, preprocess
    from phenocast.sample import generate_sample

    batch = arguments.batch_size
    with tempfile.TemporaryDirectory() as temporary:
        workdir = arguments.workdir or Path(temporary)
        data_dir = workdir / f"zone-{arguments.size}-{arguments.months}"
        if not data_dir.is_dir():
            generate_sample(data_dir, zones=1, months=arguments.months, size=arguments.size, seed=0,
                            progress=False)
        config = load_config(arguments.config, [f"data.dir={data_dir}", f"output.dir={workdir / 'out'}",
                                                "data.sample=false", *arguments.overrides])
        preprocess(config, progress=False, log=lambda message: None)
        zones = zone_samples(load_zone_records(config)[1], config)
        network.set_precision(config)

        # 1. tf.data on the host
        iterator = iter(training_dataset(zones, config, batch, config.seed))
        inputs, y = next(iterator)  # start-up: tracing the map functions, opening files
        host_seconds, host_cpu = timed(lambda: next(iterator), arguments.batches)

        # 2. device data: load, index stream, assembly alone
        started = time.perf_counter()
        data = DeviceData(zones, config, config.seed)
        load_seconds = time.perf_counter() - started
        indices = iter(data.index_dataset(batch))
        next(indices)
        index_seconds, index_cpu = timed(lambda: next(indices), 50 * arguments.batches)
        assemble = tf.function(data.batch)
        example = next(indices)
        assemble(example)  # tracing
        assembly_seconds, _ = timed(lambda: [tensor.numpy() for tensor in assemble(example)], arguments.batches)

        # 3. the training step, plain and with the assembly inside
        model = network.build_model(config)
        network.compile_model(model, config, network.make_optimizer(model, 1e-4, config.train.weight_decay))
        class StepClock(keras.callbacks.Callback):
            """Wall seconds of every step of a ``fit`` (batch begin to end: a step's call returns once run)."""

            def on_train_begin(self, logs=None):
                self.seconds = []

            def on_train_batch_begin(self, batch, logs=None):
                self.started = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.seconds.append(time.perf_counter() - self.started)

        clock = StepClock()

        def step_time(dataset) -> float:
            model.fit(dataset, steps_per_epoch=1 + arguments.steps, epochs=1, verbose=0, shuffle=False,
                      callbacks=[clock])  # the first step traces
            return float(np.median(clock.seconds[1:]))

        step_seconds = step_time(tf.data.Dataset.from_tensors((inputs, y)).repeat())
        with data.training(model):
            device_step = step_time(data.index_dataset(batch))

    shape = "×".join(str(d) for d in inputs.shape)
    per_sample = host_cpu / batch, index_cpu / batch
    print(f"config {arguments.config} {' '.join(arguments.overrides)}: batch {shape}, zone {arguments.size}² × "
          f"{arguments.months} months, {data.window_count} windows ({data.bytes / 1e6:.0f} MB int16, loaded in "
          f"{load_seconds:.1f} s)")
    print(f"host cost per sample   : tf.data {per_sample[0]:.4f} CPU s, device data {per_sample[1]:.6f} CPU s "
          f"= 1/{per_sample[0] / max(per_sample[1], 1e-9):.0f} of tf.data (goal <= 1/10)")
    print(f"tf.data input          : {host_seconds:8.3f} s/batch ({batch / host_seconds:7.2f} samples/s)")
    print(f"device assembly alone  : {assembly_seconds:8.3f} s/batch ({batch / assembly_seconds:7.2f} samples/s)")
    print(f"training step (plain)  : {step_seconds:8.3f} s/step  ({batch / step_seconds:7.2f} samples/s)")
    print(f"step with assembly     : {device_step:8.3f} s/step  ({batch / device_step:7.2f} samples/s); "
          f"assembly share of the step {max(0.0, 1 - step_seconds / device_step):.1%} (alone: "
          f"{assembly_seconds / device_step:.1%})")
    print(f"input / step throughput: tf.data {step_seconds / host_seconds:.1f}×, device data "
          f"{step_seconds / assembly_seconds:.1f}× (goal >= 3×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
