"""The tf.data pipeline: samples equal a plain numpy construction; no validation month reaches training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from phenocast import baselines, features
from phenocast.config import load_config
from phenocast.dataset import (
    SampleAssembler,
    dihedral,
    inverse_dihedral,
    origin_dataset,
    sample_plan,
    training_dataset,
    zone_samples,
)
from phenocast.preprocess import load_zone_records, preprocess
from phenocast.records import iterate_windows, read_context
from phenocast.tiling import inside_mask

from conftest import FILL, ROOT, synthetic_stack, write_zone


def make_config(data_dir: Path, tmp_path: Path, *overrides: str):
    return load_config(ROOT / "configs" / "sample.yaml", [
        f"data.dir={data_dir}", "data.sample=false", f"output.dir={tmp_path / 'outputs'}",
        "tiling.centre=8", "tiling.margin=4", "sequence.years=2", "data.val_months=12", "data.test_months=12",
        "records.workers=1", "model.lstm_filters=[4, 4, 4]", "model.layers_per_block=[1, 1, 1]",
        "sequence.origins=all", "sequence.calendar=false", "sequence.climatology=false",  # the original's channels
        *overrides])


@pytest.fixture
def prepared(tmp_path: Path):
    data_dir = tmp_path / "data"
    write_zone(data_dir, "Z1", synthetic_stack(60, 12, 10, seed=1, fill_fraction=0.05))
    write_zone(data_dir, "Z2", synthetic_stack(54, 9, 9, seed=2), first=7, gaps=(20,))
    return data_dir


def reference_sample(stack: np.ndarray, context: np.ndarray, origin: int, config, position, zone_size,
                     first_month: int, damped: features.DampedFit | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy: per step, differences from the climatology as of that step's origin; the base from
    ``phenocast.features`` (the smoothed anomaly over pixels inside the zone)."""
    years, offsets, horizon = config.sequence.years, config.sequence.offsets, config.predict.horizon
    size, scale = config.window, config.data.scale

    def differences(source: np.ndarray, step_origin: int, positions: list[int]):
        values, valid = [], []
        for p in positions:
            if p < 0 or p >= len(source):
                values.append(np.zeros(source.shape[1:]))
                valid.append(np.zeros(source.shape[1:], bool))
                continue
            climatology = baselines.climatology(source, p, FILL, end=step_origin + 1)
            ok = (source[p] != FILL) & ~np.isnan(climatology)
            values.append(np.where(ok, (source[p].astype(np.float64) - np.nan_to_num(climatology)) / scale, 0))
            valid.append(ok)
        return np.stack(values, -1), np.stack(valid, -1)

    from phenocast.tiling import Window
    inside = inside_mask(Window(0, 0, position[2], position[3], size), *zone_size)
    inputs, targets = [], []
    for k in range(years):
        step_origin = origin - 12 * (years - 1 - k)
        channels, channel_valid = differences(stack, step_origin, [step_origin + d for d in offsets])
        if config.sequence.fill_missing:  # a missing pixel: the mean of the valid pixels inside the zone around it
            for c in range(len(offsets)):
                usable = channel_valid[..., c] & inside
                neighbours = features.smooth(np.where(usable, channels[..., c], np.nan), config.sequence.fill_missing)
                channels[..., c] = np.where(channel_valid[..., c], channels[..., c], np.nan_to_num(neighbours))
        context_values, context_valid = differences(context, step_origin, [step_origin + d for d in offsets])
        canvas = np.zeros((size, size, len(offsets)))
        top, left = (size - context.shape[1]) // 2, (size - context.shape[2]) // 2
        canvas[top:top + context.shape[1], left:left + context.shape[2]] = context_values
        parts = [channels, canvas]
        if config.sequence.zone_mean:  # each channel's mean over its valid context pixels, everywhere
            means = [context_values[..., c][context_valid[..., c]].mean() if context_valid[..., c].any() else 0.0
                     for c in range(len(offsets))]
            parts.append(np.broadcast_to(np.array(means), (size, size, len(offsets))))
        if config.sequence.climatology:
            curve = [np.nan_to_num(baselines.climatology(stack, step_origin + j, FILL, end=step_origin + 1))
                     / scale for j in range(12)]
            parts.append(np.stack([curve[0]] + [c - curve[0] for c in curve[1:]], -1))
        alpha = config.evaluate.ema_alpha
        if config.model.base != "climatology":  # the base itself, minus the climatology as of the step's origin
            anomaly = smoothed = None
            if config.model.base == "damped":
                anomaly, _ = features.anomaly_features(stack, step_origin, FILL, alpha, 1,
                                                       damped.reference(stack, step_origin, FILL, alpha))
                smoothed = features.smooth(np.where(inside, anomaly, np.nan), config.evaluate.damped_smoothing)
                if config.evaluate.damped_fill:  # a missing origin pixel takes the smoothed anomaly
                    anomaly = features.filled_anomaly(anomaly, smoothed)
            averages = []
            for lead in range(1, horizon + 1):
                average = baselines.ema(stack, step_origin + lead, FILL, alpha)
                if anomaly is not None:
                    average = features.damped(damped.reference(stack, step_origin + lead, FILL, alpha), anomaly,
                                              smoothed, damped.weights(lead, step_origin + lead))
                climatology = baselines.climatology(stack, step_origin + lead, FILL, end=step_origin + 1)
                defined = ~np.isnan(average) & ~np.isnan(climatology)
                averages.append(np.where(defined, (np.nan_to_num(average) - np.nan_to_num(climatology)) / scale, 0))
            parts.append(np.stack(averages, -1))
        if config.model.masked_pooling:
            parts.append(inside[..., None].astype(float))
        inputs.append(np.concatenate(parts, -1))
        values, valid = differences(stack, step_origin, [step_origin + lead for lead in range(1, horizon + 1)])
        targets.append(np.concatenate([values, (valid & inside[..., None]).astype(float)], -1))
    return np.stack(inputs), np.stack(targets)


@pytest.mark.parametrize("climatology, base, masked, zone_mean, fill_missing, damped_fill, reference", [
    (False, "climatology", False, False, 0, False, "ema"), (True, "climatology", True, False, 3, False, "ema"),
    (False, "ema", True, True, 0, False, "ema"), (True, "damped", True, False, 5, False, "ema"),
    (False, "damped", True, False, 0, True, "ema"), (False, "damped", True, False, 0, True, "fitted")])
def test_assembled_samples_equal_the_numpy_construction(prepared: Path, tmp_path: Path, climatology: bool,
                                                        base: str, masked: bool, zone_mean: bool, fill_missing: int,
                                                        damped_fill: bool, reference: str):
    config = make_config(prepared, tmp_path, f"sequence.climatology={str(climatology).lower()}",
                         f"model.base={base}", f"model.masked_pooling={str(masked).lower()}",
                         f"sequence.zone_mean={str(zone_mean).lower()}", f"sequence.fill_missing={fill_missing}",
                         f"evaluate.damped_fill={str(damped_fill).lower()}", f"evaluate.damped_reference={reference}")
    preprocess(config, progress=False, log=lambda message: None)
    _, zone_records = load_zone_records(config)
    rng = np.random.default_rng(3)
    betas = {"Z1": 0.15, "Z2": 0.7}  # each zone its own weighted mean (with the fitted reference)
    fits = {records.name: features.DampedFit(rng.uniform(-0.5, 0.8, (3, 12, 2)).astype(np.float32), None, True,
                                             betas[records.name] if reference == "fitted" else None)
            for records in zone_records}
    assembler = SampleAssembler(config, fits)
    assert config.input_channels == (24 + (12 if zone_mean else 0) + (12 if climatology else 0)
                                     + (3 if base != "climatology" else 0) + (1 if masked else 0))
    for records in zone_records:
        context = read_context(records, config.records.compression)
        for window in list(iterate_windows(records, config.records.compression))[:2]:
            for origin in (35, 47, records.last - records.first):  # 0-based positions
                tensors = {key: tf.constant(value) for key, value in window.items()}
                inputs, y = assembler(tensors, {"stack": tf.constant(context["stack"])}, origin)
                expected_inputs, expected_y = reference_sample(
                    window["stack"], context["stack"], origin, config, window["position"],
                    window["zone_size"], records.first, fits[records.name])
                np.testing.assert_allclose(inputs.numpy(), expected_inputs, atol=2e-6)
                np.testing.assert_allclose(y.numpy(), expected_y, atol=1e-6)


@pytest.mark.parametrize("first_month, expected", [
    ("7", {"Z1": 6, "Z2": 6}),  # both zones end at month 60: the first target month is 61; month 1 July → July
    ("{Z1: 7, Z2: 2}", {"Z1": 6, "Z2": 1}),  # Z2's month 1 is February → its month 61 is February
])
def test_calendar_channels(prepared: Path, tmp_path: Path, first_month: str, expected: dict[str, int]):
    config = make_config(prepared, tmp_path, "sequence.calendar=true", f"data.first_month={first_month}")
    preprocess(config, progress=False, log=lambda message: None)
    _, zone_records = load_zone_records(config)
    zones = zone_samples(zone_records, config)
    dataset = origin_dataset(zones, config, lambda z: [z.forecast], with_targets=False)
    start, stop = config.channel_slice("calendar")
    seen = set()
    for inputs, key in dataset:
        assert inputs.shape == (2, config.window, config.window, config.input_channels)
        zone = key[0].numpy().decode()
        assert key[3].numpy() == 60
        angle = 2 * np.pi * expected[zone] / 12  # calendar month index 0 = January
        np.testing.assert_allclose(inputs[..., start:stop], np.broadcast_to(
            [np.sin(angle), np.cos(angle)], inputs[..., start:stop].shape), atol=1e-6)
        seen.add(zone)
    assert seen == {"Z1", "Z2"}


def test_dihedral_transforms_invert():
    tensor = tf.reshape(tf.range(2 * 5 * 5 * 3, dtype=tf.float32), (2, 5, 5, 3))
    seen = set()
    for transform in range(8):
        moved = dihedral(tensor, transform)
        seen.add(moved.numpy().tobytes())
        np.testing.assert_array_equal(inverse_dihedral(moved, transform).numpy(), tensor.numpy())
    assert len(seen) == 8


@pytest.mark.parametrize("transform", range(8))
def test_dihedral_of_a_batch_of_sequences_moves_every_image_alike(transform: int):
    batch = tf.reshape(tf.range(2 * 3 * 5 * 5 * 4, dtype=tf.float32), (2, 3, 5, 5, 4))  # (batch, years, h, w, c)
    moved = dihedral(batch, transform)
    assert moved.shape == batch.shape
    for sample in range(2):
        np.testing.assert_array_equal(moved[sample].numpy(), dihedral(batch[sample], transform).numpy())
    np.testing.assert_array_equal(inverse_dihedral(moved, transform).numpy(), batch.numpy())


def test_no_period_reaches_a_later_one(tmp_path: Path):
    # training months read 2000..5000, validation months 9000, test months -1500: a validation month in a
    # training input, target or climatology would show as a difference of 0.4 or more, a test month in a
    # validation target as one of -0.35 or less
    rng = np.random.default_rng(0)
    data_dir = tmp_path / "data"
    config = make_config(data_dir, tmp_path, "model.per_year_outputs=true")
    validation, test = config.data.val_months, config.data.test_months
    for name, first, months in (("Z1", 1, 60), ("Z2", 7, 54)):
        stack = rng.integers(2000, 5000, size=(months, 9, 9)).astype(np.int16)
        stack[-validation - test:-test] = 9000
        stack[-test:] = -1500
        write_zone(data_dir, name, stack, first=first)
    preprocess(config, progress=False, log=lambda message: None)
    zones = zone_samples(load_zone_records(config)[1], config)
    for zone in zones:
        held_out_from = zone.records.last - validation - test + 1
        assert zone.train and max(zone.train) + config.predict.horizon < held_out_from
        assert zone.validation and all(origin >= held_out_from - 1 for origin in zone.validation)
        assert zone.test and min(zone.test) == zone.records.last - test and max(zone.refit) == zone.records.last - 3
    sampled = set()
    dataset = training_dataset(zones, config, batch_size=4, seed=1, with_origins=True)
    values = slice(0, config.channel_slice("inside")[0])  # every channel but the inside mask (1 in the zone)
    for inputs, y, origin_keys in dataset.take(60):
        assert np.abs(inputs.numpy()[..., values]).max() < 0.31 and np.abs(y.numpy()).max() <= 1
        targets = y.numpy()[..., :config.predict.horizon]
        assert np.abs(targets).max() < 0.31 and y.numpy()[..., config.predict.horizon:].sum() > 0
        sampled.update((zone.decode(), int(origin)) for zone, origin in zip(*[k.numpy() for k in origin_keys]))
    by_zone = {zone.name: zone for zone in zones}
    for name, origin in sampled:
        assert origin in by_zone[name].train
    assert sampled == {(zone.name, origin) for zone in zones for origin in zone.train}  # 240 samples: all seen
    # the validation samples do see the validation months (as targets): the check above can fail; but no
    # validation target is a test month, although the last validation origins' leads reach into them
    validation = origin_dataset(zones, config, lambda zone: zone.validation,
                                target_end_of=lambda zone: zone.target_end("validation"))
    targets = [(y.numpy()[..., :3], y.numpy()[..., 3:] > 0) for _, y in validation]
    assert max(values[mask].max() for values, mask in targets) > 0.4
    assert min(values[mask].min() for values, mask in targets if mask.any()) > -0.31
    unmasked = origin_dataset(zones, config, lambda zone: zone.validation)  # the mask is what keeps them out
    assert min(y.numpy()[..., :3][y.numpy()[..., 3:] > 0].min() for _, y in unmasked) < -0.35


def test_training_batches_mix_zones_and_are_reproducible(prepared: Path, tmp_path: Path):
    config = make_config(prepared, tmp_path, "sequence.origins=all")
    preprocess(config, progress=False, log=lambda message: None)
    zones = zone_samples(load_zone_records(config)[1], config)
    first = [y.numpy() for _, y in training_dataset(zones, config, 2, seed=5).take(6)]
    second = [y.numpy() for _, y in training_dataset(zones, config, 2, seed=5).take(6)]
    other = [y.numpy() for _, y in training_dataset(zones, config, 2, seed=6).take(6)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_every_batch_is_a_pure_function_of_seed_and_batch_index(prepared: Path, tmp_path: Path):
    config = make_config(prepared, tmp_path)
    preprocess(config, progress=False, log=lambda message: None)
    zones = zone_samples(load_zone_records(config)[1], config)
    stream = [y.numpy() for _, y in training_dataset(zones, config, 3, seed=5).take(7)]
    resumed = [y.numpy() for _, y in training_dataset(zones, config, 3, seed=5, start_batch=4).take(3)]
    assert all(np.array_equal(a, b) for a, b in zip(stream[4:], resumed))
    assert not np.array_equal(stream[4], stream[5])
    # each pass over the windows visits every window once, in an order of its own; origins come from the
    # window's zone
    window_zone = tf.constant([0] * 5 + [1] * 3, tf.int32)
    zone_origins = tf.ragged.constant([[30, 31, 32], [40]], dtype=tf.int32)
    plans = [[int(v) for v in sample_plan(index, 7, 8, window_zone, zone_origins, augment=True)]
             for index in range(16)]
    first_pass, second_pass = [p[0] for p in plans[:8]], [p[0] for p in plans[8:]]
    assert sorted(first_pass) == sorted(second_pass) == list(range(8)) and first_pass != second_pass
    assert all(origin in ([30, 31, 32] if window < 5 else [40]) for window, origin, _ in plans)
    assert {transform for *_, transform in plans} <= set(range(8)) and len({t for *_, t in plans}) > 1
    assert plans == [[int(v) for v in sample_plan(index, 7, 8, window_zone, zone_origins, augment=True)]
                     for index in range(16)]


def test_refit_samples_reach_the_last_month(prepared: Path, tmp_path: Path):
    config = make_config(prepared, tmp_path)
    preprocess(config, progress=False, log=lambda message: None)
    zones = zone_samples(load_zone_records(config)[1], config)
    origins = set()
    for _, _, (zone, origin) in training_dataset(zones, config, 4, seed=2, kind="refit", with_origins=True).take(80):
        origins.update((name.decode(), int(o)) for name, o in zip(zone.numpy(), origin.numpy()))
    last = {zone.name: zone.records.last for zone in zones}
    assert any(origin + config.predict.horizon == last[name] for name, origin in origins)
    assert all(origin in {z.name: z.refit for z in zones}[name] for name, origin in origins)


def test_test_time_augmentation_undoes_every_transform(prepared: Path, tmp_path: Path):
    import keras

    from phenocast.forecast import predict_windows

    config = make_config(prepared, tmp_path)
    preprocess(config, progress=False, log=lambda message: None)
    _, zone_records = load_zone_records(config)
    zone = zone_samples(zone_records, config)[0]
    inputs = keras.Input((config.sequence.years, config.window, config.window, config.input_channels))
    last_year = keras.layers.Lambda(lambda x: x[:, -1])(inputs)
    pointwise = keras.Model(inputs, keras.layers.Conv2D(config.predict.horizon, 1)(last_year))  # commutes with
    # flips and rotations: every augmented prediction, moved back, must equal the plain one
    origins = zone.validation[:2]
    augmented = predict_windows(pointwise, zone, origins, config, tta=True, batch_size=3)
    plain = predict_windows(pointwise, zone, origins, config, tta=False, batch_size=3)
    assert augmented.differences.shape[2] == 8 and plain.differences.shape[2] == 1
    assert np.abs(plain.differences).max() > 0
    for transform in range(8):
        np.testing.assert_allclose(augmented.differences[:, :, transform], plain.differences[:, :, 0], atol=1e-5)
