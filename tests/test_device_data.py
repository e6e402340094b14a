"""Training data resident on the device: the same batches as tf.data bit for bit, the auto/on/off rules,
and a pre-training stage through ``Pipeline`` with the same weights as the tf.data one."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_dataset import make_config
from test_run import TINY

from phenocast.config import load_config
from phenocast.dataset import training_dataset, zone_samples
from phenocast.device_data import DeviceData, stage_bytes, use_device_data
from phenocast.errors import PhenocastError
from phenocast.features import DampedFit
from phenocast.preprocess import load_zone_records, preprocess

from conftest import ROOT, synthetic_stack, write_zone


@pytest.fixture
def zones(tmp_path: Path):
    """Two zones of different sizes and month counts (Z2 starts later and has a gap), preprocessed; Z1's
    missing pixels are filled from their neighbours (``sequence.fill_missing``)."""
    data_dir = tmp_path / "data"
    write_zone(data_dir, "Z1", synthetic_stack(60, 12, 10, seed=1, fill_fraction=0.05))
    write_zone(data_dir, "Z2", synthetic_stack(54, 9, 9, seed=2), first=7, gaps=(20,))
    config = make_config(data_dir, tmp_path, "sequence.climatology=true", "sequence.calendar=true",
                         "sequence.fill_missing=3", "train.augment=true", "train.device_data=on")
    preprocess(config, progress=False, log=lambda message: None)
    return config, zone_samples(load_zone_records(config)[1], config)


@contextlib.contextmanager
def grappler_options(**options):
    saved = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options(options)
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({key: saved.get(key, True) for key in options})


@pytest.mark.parametrize("kind, base", [("train", "ema"), ("refit", "ema"), ("train", "damped")])
def test_device_batches_equal_the_tf_data_batches_bit_for_bit(zones, kind: str, base: str):
    config, samples = zones
    if base == "damped":  # the damped base channels need each zone's φ; the calendar its own month 1 here
        config = copy.deepcopy(config)
        config.model.base = "damped"
        config.data.first_month = {"Z1": 3, "Z2": 10}
        rng = np.random.default_rng(2)
        samples = [dataclasses.replace(zone, damped=DampedFit(rng.uniform(-0.5, 0.8, (3, 12, 2)), None, True))
                   for zone in samples]
    data = DeviceData(samples, config, seed=5, kind=kind)
    assemble, unfolded = tf.function(data.batch), tf.function(data.batch)
    for start_batch in (0, 7):
        expected = list(training_dataset(samples, config, 3, seed=5, kind=kind, start_batch=start_batch).take(3))
        indices = list(data.index_dataset(3, start_batch).take(3))
        # the same ops on the same values: bit for bit, as long as Grappler's constant folding leaves the
        # step's divisions by constants alone (it turns x / 10000 into x · 1e-4, which tf.data's map
        # functions do not: up to a few float32 ulps, so training differs by rounding only)
        with grappler_options(constant_folding=False):
            exact = [unfolded(batch) for batch in indices]
        folded = [assemble(batch) for batch in indices]
        for number, ((inputs, y), batch, (exact_inputs, exact_y), (device_inputs, device_y)) in enumerate(zip(
                expected, indices, exact, folded)):
            first = 3 * (start_batch + number)
            assert batch.numpy().tolist() == [first, first + 1, first + 2]
            assert device_inputs.shape == inputs.shape and device_y.shape == y.shape
            np.testing.assert_array_equal(exact_inputs.numpy(), inputs.numpy())
            np.testing.assert_array_equal(exact_y.numpy(), y.numpy())
            np.testing.assert_allclose(device_inputs.numpy(), inputs.numpy(), rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(device_y.numpy(), y.numpy(), rtol=1e-6, atol=1e-7)
    windows, contexts = stage_bytes(samples, kind)
    assert data.bytes == windows + contexts > 0


def test_auto_is_off_on_a_cpu_and_a_too_large_on_is_one_line(zones):
    config, samples = zones
    assert not tf.config.list_physical_devices("GPU")
    config.train.device_data = "auto"
    assert not use_device_data(config, samples, "train")
    config.train.device_data = "on"
    assert use_device_data(config, samples, "train")
    config.train.device_memory_share = 1e-12
    with pytest.raises(PhenocastError) as error:
        use_device_data(config, samples, "train")
    message = str(error.value)
    assert "\n" not in message and "train.device_data: on needs" in message and "train.device_memory_share" in message
    assert "int16 windows" in message and "contexts" in message


def test_config_reads_on_and_off_and_refuses_on_with_xla(tmp_path: Path):
    path = ROOT / "configs" / "sample.yaml"
    assert load_config(path).train.device_data == "auto"
    assert load_config(path, ["train.device_data=on"]).train.device_data == "on"
    assert load_config(path, ["train.device_data=off"]).train.device_data == "off"
    with pytest.raises(PhenocastError, match="jit_compile"):
        load_config(path, ["train.device_data=on", "train.jit_compile=true"])
    with pytest.raises(PhenocastError, match="device_memory_share"):
        load_config(path, ["train.device_memory_share=0"])


def test_a_pretraining_stage_on_device_data_trains_as_the_tf_data_one(tmp_path: Path):
    import keras

    import model as network
    from phenocast.pipeline import Pipeline

    write_zone(tmp_path / "data", "Z1", synthetic_stack(60, 20, 14, seed=1))
    write_zone(tmp_path / "data", "Z2", synthetic_stack(60, 10, 10, seed=2), gaps=(33,))

    def config(output: str, *overrides: str):
        return load_config(ROOT / "configs" / "sample.yaml", [
            *TINY, f"data.dir={tmp_path / 'data'}", f"records.dir={tmp_path / 'records'}",
            f"output.dir={tmp_path / output}", "train.epochs=2", "train.steps_per_epoch=2", "report.maps=false",
            "train.validation_samples=8", "train.ensemble=1",
            *overrides])

    preprocess(config("unused"), progress=False, log=lambda message: None)
    weights, logs = {}, {}
    for source in ("off", "on"):
        messages: list[str] = []
        run = Pipeline(config(source, f"train.device_data={source}"), log=messages.append)
        done = run.pretrain()
        assert done.epochs == 2
        logs[source] = [m for m in messages if "training data:" in m]
        stage = run.stage_folder("pretrain")
        weights[source] = [network.load_model(stage / name).get_weights() for name in ("best.keras", "last.keras")]
        assert not (stage / "backup").exists()
    assert logs["off"] == ["pretrain: training data: tf.data"]
    assert len(logs["on"]) == 1 and logs["on"][0].startswith("pretrain: training data: device-resident (")
    assert logs["on"][0].endswith(" on CPU:0)")
    # the plain model is saved (no data variables), with weights equal to the tf.data run's up to the float32
    # rounding of the batches (Grappler folds the step's divisions by constants, see the first test)
    for device_model, host_model in zip(weights["on"], weights["off"]):
        assert len(device_model) == len(host_model)
        for device_weight, host_weight in zip(device_model, host_model):
            np.testing.assert_allclose(device_weight, host_weight, rtol=1e-4, atol=1e-6)
    # interrupted in the second epoch and resumed from the backup: the same bytes as uninterrupted
    original = keras.callbacks.CSVLogger.on_train_batch_end

    def dying(self, batch, logs=None):
        if self.keys and batch == 0:  # the keys are known once an epoch ended
            raise KeyboardInterrupt("killed in the second epoch")
        return original(self, batch, logs)

    resumed = Pipeline(config("resumed", "train.device_data=on"), log=lambda message: None)
    keras.callbacks.CSVLogger.on_train_batch_end = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            resumed.pretrain()
    finally:
        keras.callbacks.CSVLogger.on_train_batch_end = original
    stage = resumed.stage_folder("pretrain")
    assert (stage / "backup").is_dir() and not (stage / "done.json").exists()
    Pipeline(config("resumed", "train.device_data=on"), log=lambda message: None).pretrain()
    for name, expected in zip(("best.keras", "last.keras"), weights["on"]):
        for actual, weight in zip(network.load_model(stage / name).get_weights(), expected):
            np.testing.assert_array_equal(actual, weight)
