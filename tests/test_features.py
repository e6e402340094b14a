"""The features defined once: the TF functions of the sample assembly equal the numpy ones of the baselines."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from phenocast import features

from conftest import FILL, synthetic_stack


@pytest.fixture
def stack() -> np.ndarray:
    return synthetic_stack(50, 11, 9, seed=4, fill_fraction=0.08)


def test_climatology_as_of_each_step_equals_numpy(stack: np.ndarray):
    origin = 41
    step_origins = tf.constant([origin - 24, origin - 12, origin])
    sums, counts = features.tf_cumulative_sums(tf.constant(stack), tf.constant(origin), FILL)
    mean, exists = features.tf_climatology_per_step(sums, counts, step_origins)
    for k, step_origin in enumerate(step_origins.numpy()):
        for phase in range(12):
            target = step_origin + 1 + (phase - step_origin - 1) % 12  # the next position with this phase
            expected = features.climatology(stack, target, FILL, end=step_origin + 1)
            np.testing.assert_array_equal(exists[k, phase].numpy(), np.isfinite(expected))
            np.testing.assert_allclose(mean[k, phase].numpy()[np.isfinite(expected)],
                                       expected[np.isfinite(expected)], rtol=1e-6)


def test_ema_equals_numpy(stack: np.ndarray):
    targets = np.array([[13, 14, 30], [37, 38, 49]], np.int32)
    value, seen = features.tf_ema(tf.constant(stack), tf.constant(targets), FILL, 0.4)
    for index in np.ndindex(targets.shape):
        expected = features.ema(stack, int(targets[index]), FILL, 0.4)
        np.testing.assert_array_equal(seen[index].numpy(), np.isfinite(expected))
        np.testing.assert_allclose(value[index].numpy()[np.isfinite(expected)], expected[np.isfinite(expected)],
                                   rtol=1e-6)


def test_one_ema_step_equals_numpy():
    """The one recursion of each framework: ``tf_ema_update`` is ``ema_update`` up to float32 rounding (NaN ↔
    not seen/valid)."""
    rng = np.random.default_rng(1)
    running = np.where(rng.random((3, 4, 5)) < 0.3, np.nan, rng.normal(3000, 900, (3, 4, 5))).astype(np.float32)
    image = np.where(rng.random((4, 5)) < 0.3, np.nan, rng.normal(3000, 900, (4, 5))).astype(np.float32)
    alpha = np.array([0.2, 0.4, 1.0], np.float32)[:, None, None]  # a grid of α, as the per-pixel fit runs it
    expected = features.ema_update(running, image, alpha)
    value, seen = features.tf_ema_update(tf.constant(np.nan_to_num(running)), tf.constant(np.isfinite(running)),
                                         tf.constant(np.nan_to_num(image)), tf.constant(np.isfinite(image)),
                                         tf.constant(alpha))
    np.testing.assert_array_equal(seen.numpy(), np.isfinite(expected))
    np.testing.assert_allclose(value.numpy()[np.isfinite(expected)], expected[np.isfinite(expected)], rtol=1e-6)


def test_smooth_equals_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 10, 7)).astype(np.float32)
    values[rng.random(values.shape) < 0.3] = np.nan
    values[1, :4, :4] = np.nan  # a box with no valid value → NaN (numpy) and 0 (TF)
    smoothed = features.tf_smooth(tf.constant(np.nan_to_num(values)), tf.constant(np.isfinite(values)), 5).numpy()
    for image in range(2):
        expected = features.smooth(values[image], 5)
        np.testing.assert_allclose(smoothed[image], np.nan_to_num(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fill", [False, True])
def test_damped_equals_numpy(stack: np.ndarray, fill: bool):
    rng = np.random.default_rng(1)
    phi = rng.uniform(-0.3, 0.9, (3, 12, 2)).astype(np.float32)
    step_origins = np.array([29, 41], np.int32)
    targets = step_origins[:, None] + np.arange(1, 4, dtype=np.int32)[None, :]
    tensor = tf.constant(stack)
    target_ema, _ = features.tf_ema(tensor, tf.constant(targets), FILL, 0.4)
    origin_ema, origin_seen = features.tf_ema(tensor, tf.constant(step_origins[:, None]), FILL, 0.4)
    inside = tf.ones(stack.shape[1:], tf.bool)
    values = features.tf_damped(target_ema, tensor, tf.constant(step_origins), origin_ema[:, 0], origin_seen[:, 0],
                                inside, tf.constant(phi), tf.constant(targets), FILL, 5, fill).numpy()
    filled_pixels = 0
    for k, origin in enumerate(step_origins):
        anomaly, smoothed = features.anomaly_features(stack, int(origin), FILL, 0.4, 5, fill=fill)
        filled_pixels += int(np.sum(np.isfinite(anomaly) & (stack[origin] == FILL)))
        for lead in range(1, 4):
            target = int(origin) + lead
            expected = features.damped(features.ema(stack, target, FILL, 0.4), anomaly, smoothed,
                                       phi[lead - 1, target % 12])
            defined = np.isfinite(expected)
            assert defined.sum() > 50
            np.testing.assert_allclose(values[k, lead - 1][defined], expected[defined], rtol=1e-5, atol=1e-2)
    assert (filled_pixels > 5) if fill else filled_pixels == 0  # the filled origin pixels are compared too
