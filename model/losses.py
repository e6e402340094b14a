"""Masked forecast losses and the ``masked_rmse`` metric.

Targets arrive packed with their mask: ``y_true`` has the shape of ``y_pred`` with twice its last axis,
``y_true[..., :horizon]`` the target NDVI differences and ``y_true[..., horizon:]`` the mask (1 valid,
0 masked: fill, gaps, padding). Masked targets may hold anything, NaN included: they are replaced with
``ops.where`` before any arithmetic, so neither the loss nor its gradients can see them.

The loss per sample (and per year-step when the model predicts every year) is the mean squared error over
the valid pixels of all horizon months, then:

* ``mse``: as is;
* ``rmse``: ``sqrt(mse + epsilon)``;
* ``sqrt_sqrt_mse``: ``sqrt(sqrt(mse + epsilon))`` ≈ RMSE^½, the original's loss, which weighs easy and hard
  windows more evenly than the MSE (the epsilon keeps the gradient finite at zero error).

With ``normalization: sample`` each sample (and year-step) has its own mean over its valid pixels, so
a window that is mostly padding or fill weighs as much as a full one, and the square roots weigh easy
windows up against hard ones. With ``normalization: pooled`` the mean squared error is pooled over the
valid pixels of the whole batch (per year-step), as the ``masked_rmse`` metric and the competition's RMSE
pool pixels; every sample then carries that one value, so Keras' batch mean is the pooled loss.

A sample (or year-step) without any valid pixel counts 0. Year-steps are averaged with weights
(``uniform``, or ``linear``: step k of Y weighs k+1, so later years weigh more); then Keras averages the
samples of the batch. Auxiliary heads use the same loss against targets average-pooled over the valid
pixels of each ``pool×pool`` block.

Written on ``keras.ops`` only: the same code runs under the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

from typing import Literal

import keras
from keras import ops

LossKind = Literal["sqrt_sqrt_mse", "rmse", "mse"]
Normalization = Literal["sample", "pooled"]


def split_targets(y_true, horizon: int) -> tuple:
    """Packed ``(..., 2·horizon)`` -> (targets ``(..., horizon)``, boolean mask ``(..., horizon)``)."""
    return y_true[..., :horizon], y_true[..., horizon:] > 0.5


def pool_targets(y_true, horizon: int, pool: int):
    """Average-pool packed targets over the valid pixels of each ``pool×pool`` block.

    Args:
      y_true: ``(batch, [years,] H, W, 2·horizon)`` targets and mask.
      pool: block side; 1 returns ``y_true``.

    Returns:
      ``(batch, [years,] H/pool, W/pool, 2·horizon)``: the mean of each block's valid targets, and a mask
      that is 1 where the block had at least one valid pixel.
    """
    if pool == 1:
        return y_true
    target, mask = split_targets(y_true, horizon)
    mask = ops.cast(mask, y_true.dtype)
    packed = ops.concatenate([ops.where(mask > 0, target, ops.zeros_like(target)), mask], axis=-1)
    leading = tuple(packed.shape[:-3])  # (batch,) or (batch, years): static, as the model's outputs
    folded = ops.reshape(packed, (-1, *packed.shape[-3:]))  # (batch·years, H, W, 2h)
    pooled = ops.average_pool(folded, pool, pool, "valid")
    total, fraction = pooled[..., :horizon], pooled[..., horizon:]
    valid = fraction > 0
    mean = ops.where(valid, total / ops.where(valid, fraction, ops.ones_like(fraction)), ops.zeros_like(total))
    pooled = ops.concatenate([mean, ops.cast(valid, y_true.dtype)], axis=-1)
    batch = ops.shape(packed)[0] if leading[0] is None else leading[0]
    return ops.reshape(pooled, (batch, *leading[1:], *pooled.shape[1:]))


def year_weights(years: int, weighting: Literal["uniform", "linear"]):
    """Weights of the year-steps, summing to 1: uniform, or linear (step k weighs k+1). Shape ``(years,)``."""
    if weighting == "uniform":
        weights = [1.0] * years
    elif weighting == "linear":
        weights = [float(step + 1) for step in range(years)]
    else:
        raise ValueError(f"year_weighting must be 'uniform' or 'linear', received {weighting!r}")
    return ops.convert_to_tensor(weights, "float32") / sum(weights)


def masked_mse(y_true, y_pred) -> tuple:
    """Per-image masked mean squared error.

    Args:
      y_true: ``(..., H, W, 2·horizon)`` packed targets.
      y_pred: ``(..., H, W, horizon)``.

    Returns:
      (mse, count), both ``(...)``: the mean over valid pixels (0 where none) and the number of valid pixels.
    """
    horizon = y_pred.shape[-1]
    target, mask = split_targets(y_true, horizon)
    error = ops.where(mask, y_pred - target, ops.zeros_like(y_pred))  # never touches a masked target
    squared = ops.sum(ops.square(error), axis=(-3, -2, -1))
    count = ops.sum(ops.cast(mask, y_pred.dtype), axis=(-3, -2, -1))
    return squared / ops.maximum(count, 1.0), count


@keras.saving.register_keras_serializable(package="phenocast")
class MaskedForecastLoss(keras.losses.Loss):
    """Masked (sqrt(sqrt(mse)) | rmse | mse) per sample, weighted over year-steps; Keras averages the batch.

    Args:
      kind: ``sqrt_sqrt_mse``, ``rmse`` or ``mse``.
      epsilon: added to the MSE under the square roots.
      year_weighting: ``uniform`` or ``linear``; used when predictions have a years axis.
      pool: compare against targets average-pooled by this factor (auxiliary heads); 1 = full resolution.
      normalization: ``sample`` (each sample's own mean) or ``pooled`` (the batch's mean over valid pixels).

    Call: ``y_true`` ``(batch, [years,] H·pool, W·pool, 2·horizon)``, ``y_pred`` ``(batch, [years,] H, W,
    horizon)`` -> per-sample losses ``(batch,)``.
    """

    def __init__(self, kind: LossKind = "sqrt_sqrt_mse", epsilon: float = 1e-8,
                 year_weighting: Literal["uniform", "linear"] = "linear", pool: int = 1,
                 normalization: Normalization = "sample", name: str = "masked_forecast_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if kind not in ("sqrt_sqrt_mse", "rmse", "mse"):
            raise ValueError(f"loss kind must be 'sqrt_sqrt_mse', 'rmse' or 'mse', received {kind!r}")
        if normalization not in ("sample", "pooled"):
            raise ValueError(f"loss normalization must be 'sample' or 'pooled', received {normalization!r}")
        self.kind = kind
        self.normalization = normalization
        self.epsilon = epsilon
        self.year_weighting = year_weighting
        self.pool = pool

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = pool_targets(ops.cast(y_true, "float32"), y_pred.shape[-1], self.pool)
        mse, count = masked_mse(y_true, y_pred)  # (batch,) or (batch, years)
        if self.normalization == "pooled":  # every sample carries the batch's pooled MSE (per year-step)
            pooled = ops.sum(mse * count, axis=0) / ops.maximum(ops.sum(count, axis=0), 1.0)
            count = ops.broadcast_to(ops.sum(count, axis=0), ops.shape(count))
            mse = ops.broadcast_to(pooled, ops.shape(mse))
        if self.kind == "mse":
            value = mse
        elif self.kind == "rmse":
            value = ops.sqrt(mse + self.epsilon)
        else:
            value = ops.sqrt(ops.sqrt(mse + self.epsilon))
        value = ops.where(count > 0, value, ops.zeros_like(value))  # no valid pixel: contributes 0
        if len(value.shape) == 2:  # (batch, years)
            value = ops.sum(value * year_weights(value.shape[1], self.year_weighting), axis=1)
        return value  # (batch,)

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, epsilon=self.epsilon, year_weighting=self.year_weighting,
                      pool=self.pool, normalization=self.normalization)
        return config


@keras.saving.register_keras_serializable(package="phenocast")
class MaskedRMSE(keras.metrics.Metric):
    """RMSE over all valid pixels seen (NDVI-difference units): sqrt(Σ squared error / Σ valid pixels).

    With a years axis, only the last year-step (the forecast) counts. Sample weights are ignored: every
    valid pixel counts once, as in the competition's metric.
    """

    def __init__(self, name: str = "masked_rmse", **kwargs):
        super().__init__(name=name, **kwargs)
        self.squared_error = self.add_variable(shape=(), initializer="zeros", name="squared_error")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        if len(y_pred.shape) == 5:  # (batch, years, H, W, horizon): the forecast is the last step
            y_pred, y_true = y_pred[:, -1], y_true[:, -1]
        mse, count = masked_mse(y_true, y_pred)
        self.squared_error.assign_add(ops.sum(mse * count))
        self.count.assign_add(ops.sum(count))

    def result(self):
        return ops.sqrt(self.squared_error / ops.maximum(self.count, 1.0))

    def reset_state(self):
        self.squared_error.assign(0.0)
        self.count.assign(0.0)


def make_loss(config) -> MaskedForecastLoss:
    """The training loss of ``config.model`` (kind, epsilon, year weighting) at full resolution."""
    model = config.model
    return MaskedForecastLoss(kind=model.loss, epsilon=model.loss_epsilon,
                              year_weighting=model.year_weighting, normalization=model.loss_normalization)


def make_auxiliary_losses(config, pools: list[int]) -> list[MaskedForecastLoss]:
    """One loss per auxiliary head, comparing against targets pooled by that head's factor."""
    model = config.model
    return [MaskedForecastLoss(kind=model.loss, epsilon=model.loss_epsilon,
                               year_weighting=model.year_weighting, pool=pool,
                               normalization=model.loss_normalization,
                               name=f"auxiliary_loss_pool{pool}") for pool in pools]
