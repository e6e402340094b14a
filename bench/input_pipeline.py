"""Benchmark the tf.data input pipeline against the training step it feeds, side by side in one run.

    python bench/input_pipeline.py [--config configs/default.yaml] [--size 1200] [--months 160]
                                   [--batches 20] [--steps 3]

Generates one zone of the built-in sample's world (competition format), preprocesses it, then measures
(1) batches per second of ``phenocast.dataset.training_dataset`` alone (assembling samples from the int16
records: decoding, climatology, channels, augmentation; no cache, as for full-size data), and
(2) training steps per second of the config's model on those batches. Goal: the pipeline at least 5×
faster than the step, so the accelerator never waits for data.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--size", type=int, default=1200)
    parser.add_argument("--months", type=int, default=160)
    parser.add_argument("--batches", type=int, default=20, help="pipeline batches to time")
    parser.add_argument("--steps", type=int, default=3, help="training steps to time (after one warm-up)")
    parser.add_argument("--workdir", type=Path, help="keep generated data and records here")
    arguments = parser.parse_args()
    phenocast.import_tensorflow_quietly()
    import keras

    import model as network
    from phenocast.config import load_config
    from phenocast.dataset import training_dataset, zone_samples
    from phenocast.preprocess import load_zone_records, preprocess
    from phenocast.sample import generate_sample

    with tempfile.TemporaryDirectory() as temporary:
        workdir = arguments.workdir or Path(temporary)
        data_dir = workdir / f"zone-{arguments.size}-{arguments.months}"
        if not data_dir.is_dir():
            generate_sample(data_dir, zones=1, months=arguments.months, size=arguments.size, seed=0,
                            progress=False)
        config = load_config(arguments.config, [f"data.dir={data_dir}", f"output.dir={workdir / 'out'}",
                                                "data.sample=false"])
        preprocess(config, progress=False, log=lambda message: None)
        zones = zone_samples(load_zone_records(config)[1], config)
        batch = config.train.batch_size
        dataset = training_dataset(zones, config, batch, config.seed)
        iterator = iter(dataset)
        next(iterator)  # start-up: tracing the map functions, opening files
        started = time.perf_counter()
        for _ in range(arguments.batches):
            inputs, y = next(iterator)
        pipeline_seconds = (time.perf_counter() - started) / arguments.batches

        network.set_precision(config)
        model = network.build_model(config)
        network.compile_model(model, config, keras.optimizers.Adam(1e-4))
        fixed = dataset.take(1).cache().repeat()
        model.fit(fixed, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # warm-up: tracing
        started = time.perf_counter()
        model.fit(fixed, steps_per_epoch=arguments.steps, epochs=1, verbose=0, shuffle=False)
        step_seconds = (time.perf_counter() - started) / arguments.steps

    shape = "×".join(str(d) for d in inputs.shape)
    print(f"config {arguments.config}: batch {shape}, zone {arguments.size}² × {arguments.months} months")
    print(f"input pipeline : {pipeline_seconds:8.3f} s/batch  ({1 / pipeline_seconds:7.2f} batches/s)")
    print(f"training step  : {step_seconds:8.3f} s/step   ({1 / step_seconds:7.2f} steps/s)")
    print(f"pipeline / step speed ratio: {step_seconds / pipeline_seconds:.1f}× (goal >= 5×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
