"""Tests of model/losses.py: hand-computed values, masking (values, gradients), year weights, the metric."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from model.losses import MaskedForecastLoss, MaskedRMSE, make_loss, pool_targets, year_weights  # noqa: E402
from phenocast.config import load_config  # noqa: E402

HORIZON = 3


def pack(target: np.ndarray, mask: np.ndarray) -> tf.Tensor:
    return tf.constant(np.concatenate([target, mask], axis=-1), tf.float32)


def hand_example():
    """Two samples of 2×2 pixels × 3 months. Sample 0: 4 valid errors of 0.1, 0.2, 0.3, 0.4 (others masked,
    with garbage targets); sample 1: every pixel valid, every error 0.5."""
    prediction = np.zeros((2, 2, 2, HORIZON), np.float32)
    target = np.full((2, 2, 2, HORIZON), 7.0, np.float32)  # masked garbage unless set below
    mask = np.zeros_like(target)
    places = [(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 0)]  # (row, column, month)
    for value, (row, column, month) in zip([0.1, 0.2, 0.3, 0.4], places):
        target[0, row, column, month] = value
        mask[0, row, column, month] = 1.0
    target[1] = 0.5
    mask[1] = 1.0
    return prediction, target, mask


@pytest.mark.parametrize("kind", ["mse", "rmse", "sqrt_sqrt_mse"])
def test_loss_values_by_hand(kind):
    prediction, target, mask = hand_example()
    mse_0 = (0.01 + 0.04 + 0.09 + 0.16) / 4  # 0.075, over sample 0's valid pixels only
    mse_1 = 0.25
    epsilon = 1e-8
    per_sample = {
        "mse": [mse_0, mse_1],
        "rmse": [np.sqrt(mse_0 + epsilon), np.sqrt(mse_1 + epsilon)],
        "sqrt_sqrt_mse": [(mse_0 + epsilon) ** 0.25, (mse_1 + epsilon) ** 0.25],
    }[kind]
    loss = MaskedForecastLoss(kind=kind, epsilon=epsilon)
    value = loss(pack(target, mask), tf.constant(prediction))
    np.testing.assert_allclose(float(value), np.mean(per_sample), rtol=1e-6)
    np.testing.assert_allclose(loss.call(pack(target, mask), tf.constant(prediction)).numpy(), per_sample,
                               rtol=1e-6)


@pytest.mark.parametrize("kind", ["mse", "sqrt_sqrt_mse"])
def test_pooled_normalization_weighs_pixels_not_windows(kind):
    """Sample 0 has 4 valid pixels, sample 1 has 12: pooled, each pixel counts once (as in the metric)."""
    prediction, target, mask = hand_example()
    pooled = (0.01 + 0.04 + 0.09 + 0.16 + 12 * 0.25) / 16
    expected = pooled if kind == "mse" else (pooled + 1e-8) ** 0.25
    loss = MaskedForecastLoss(kind=kind, normalization="pooled")
    np.testing.assert_allclose(float(loss(pack(target, mask), tf.constant(prediction))), expected, rtol=1e-6)
    per_sample = MaskedForecastLoss(kind=kind)(pack(target, mask), tf.constant(prediction))
    assert abs(float(per_sample) - expected) > 0.01  # the per-sample mean weighs sample 0's few pixels up
    with pytest.raises(ValueError, match="normalization"):
        MaskedForecastLoss(normalization="batch")


def test_sample_without_valid_pixels_contributes_zero():
    prediction, target, mask = hand_example()
    mask[0] = 0.0
    target[0] = np.nan
    loss = MaskedForecastLoss()
    per_sample = loss.call(pack(target, mask), tf.constant(prediction)).numpy()
    np.testing.assert_allclose(per_sample, [0.0, 0.25 ** 0.25], rtol=1e-6)
    batch_mean = float(loss(pack(target, mask), tf.constant(prediction)))
    assert batch_mean == pytest.approx(0.25 ** 0.25 / 2, rel=1e-6)


@pytest.mark.parametrize("kind", ["mse", "rmse", "sqrt_sqrt_mse"])
@pytest.mark.parametrize("per_year", [False, True])
def test_masked_targets_change_neither_loss_nor_gradients(kind, per_year):
    rng = np.random.default_rng(0)
    shape = (2, 3, 4, 4, HORIZON) if per_year else (2, 4, 4, HORIZON)
    prediction = tf.Variable(rng.normal(size=shape).astype(np.float32))
    target = rng.normal(size=shape).astype(np.float32)
    mask = (rng.random(shape) < 0.6).astype(np.float32)
    loss = MaskedForecastLoss(kind=kind)

    def value_and_gradient(targets):
        with tf.GradientTape() as tape:
            value = loss(pack(targets, mask), prediction)
        return float(value), tape.gradient(value, prediction).numpy()

    reference_value, reference_gradient = value_and_gradient(target)
    for garbage in (rng.normal(0, 1e3, shape), np.full(shape, np.nan), np.full(shape, np.inf)):
        changed = np.where(mask > 0, target, garbage).astype(np.float32)
        value, gradient = value_and_gradient(changed)
        assert value == reference_value
        np.testing.assert_array_equal(gradient, reference_gradient)
    assert np.isfinite(reference_gradient).all() and np.abs(reference_gradient).sum() > 0


def test_gradient_finite_at_zero_error():
    target = np.full((1, 2, 2, HORIZON), 0.3, np.float32)
    prediction = tf.Variable(target.copy())
    with tf.GradientTape() as tape:
        value = MaskedForecastLoss()(pack(target, np.ones_like(target)), prediction)
    gradient = tape.gradient(value, prediction).numpy()
    assert np.isfinite(float(value)) and np.isfinite(gradient).all()
    np.testing.assert_array_equal(gradient, 0.0)


def test_year_weighting():
    np.testing.assert_allclose(year_weights(3, "linear").numpy(), [1 / 6, 2 / 6, 3 / 6])
    np.testing.assert_allclose(year_weights(2, "uniform").numpy(), [0.5, 0.5])
    # One sample, 3 year-steps with every error e_k = k+1 (k = 0..2): mse_k = (k+1)².
    errors = np.stack([np.full((2, 2, HORIZON), k + 1.0) for k in range(3)])[None].astype(np.float32)
    targets = pack(np.zeros_like(errors), np.ones_like(errors))
    for weighting, weights in (("linear", [1, 2, 3]), ("uniform", [1, 1, 1])):
        loss = MaskedForecastLoss(kind="mse", year_weighting=weighting)
        expected = np.dot(weights, [1.0, 4.0, 9.0]) / sum(weights)
        assert float(loss(targets, tf.constant(errors))) == pytest.approx(expected, rel=1e-6)


def test_pool_targets_by_hand():
    target = np.array([[1.0, 3.0], [5.0, np.nan]], np.float32)  # one 2×2 block, one month
    mask = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)
    packed = tf.constant(np.stack([target, mask], axis=-1)[None])  # (1, 2, 2, 2): horizon 1
    pooled = pool_targets(packed, 1, 2).numpy()
    np.testing.assert_allclose(pooled[0, 0, 0], [3.0, 1.0])  # mean of the valid 1, 3, 5; block valid
    empty = pool_targets(tf.constant(np.stack([target, np.zeros_like(mask)], axis=-1)[None]), 1, 2).numpy()
    np.testing.assert_array_equal(empty[0, 0, 0], [0.0, 0.0])


def test_masked_rmse_metric_accumulates_valid_pixels_of_last_year():
    metric = MaskedRMSE()
    assert metric.name == "masked_rmse"
    prediction, target, mask = hand_example()
    metric.update_state(pack(target, mask), tf.constant(prediction))
    expected_squares, expected_count = 0.30 + 12 * 0.25, 4 + 12
    assert float(metric.result()) == pytest.approx(np.sqrt(expected_squares / expected_count), rel=1e-6)
    # With a years axis only the last step counts: the first step's huge errors are ignored.
    metric.reset_state()
    years_prediction = np.stack([prediction + 100.0, prediction], axis=1)
    years_targets = np.stack([pack(target, mask).numpy()] * 2, axis=1)
    metric.update_state(tf.constant(years_targets), tf.constant(years_prediction))
    assert float(metric.result()) == pytest.approx(np.sqrt(expected_squares / expected_count), rel=1e-6)


def test_make_loss_follows_config():
    config = load_config("configs/sample.yaml", ["model.loss=rmse", "model.year_weighting=uniform",
                                                 "model.loss_epsilon=0.001"])
    loss = make_loss(config)
    assert (loss.kind, loss.year_weighting, loss.epsilon) == ("rmse", "uniform", 0.001)
    restored = MaskedForecastLoss.from_config(loss.get_config())
    assert (restored.kind, restored.epsilon, restored.pool) == ("rmse", 0.001, 1)
