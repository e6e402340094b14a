"""Is the network alive? Kernel sizes per layer group, the gradient norm and the departure from the base.

A network can train without error and still be dead: with every kernel at zero the forecast is the base
plus a constant per lead, whatever the input, and no gradient can bring it back (each kernel's gradient is
a product of zeros). These measurements tell a live network from a dead one:

- **kernel RMS per layer group** (``kernel_rms``): the root mean square of every kernel (convolution,
  dense, ConvLSTM input and recurrent) of a block of the network — ``stem``, ``scale<s>`` (the dense block
  and squeeze-excitation of scale s), ``scale<s>_convlstm``, ``aspp``, ``decoder_scale<s>``, and the output
  heads ``forecast`` and ``auxiliary_scale<s>``. Below the heads they are compared with their values at
  the start of training; the heads start at zero, so their RMS is given as is;
- **the global gradient norm** of the training loss on a fixed batch (``gradient_norm``);
- **the departure from the base** (``departure``): forecast − base over the valid pixels of the last
  year-step, its RMS, and the RMS of its variation over pixels (departure minus its mean per sample and
  lead). A dead network departs by a constant per lead: its variation over pixels is zero.

``collapse_reasons`` turns them into words when the network has collapsed: a group's kernels below
``COLLAPSED_KERNEL_RATIO`` of their initial RMS, or a departure whose variation over pixels is below
``CONSTANT_DEPARTURE_RATIO`` of its RMS (or a departure of exactly zero once the head has grown).

Written on ``keras.ops`` and NumPy; only ``gradient_norm`` differentiates, with the backend's own
autodiff (TensorFlow's tape, ``jax.grad``, ``torch.autograd``).
"""

from __future__ import annotations

import re

import keras
import numpy as np
from keras import ops

from model.losses import MaskedRMSE, split_targets
from model.network import HEAD_SUFFIX, forecast_output

KERNEL_NAMES = ("kernel", "recurrent_kernel")
GROUP_PATTERN = re.compile(r"^(stem|scale\d+_convlstm|scale\d+|aspp|decoder_scale\d+|auxiliary_scale\d+|forecast)")
COLLAPSED_KERNEL_RATIO = 1e-3  # a group whose kernels' RMS fell below this share of its initial RMS is dead
CONSTANT_DEPARTURE_RATIO = 1e-3  # departure varying over pixels by less than this share of its RMS: constant


def layer_group(name: str) -> str | None:
    """The group of a layer name (``scale1_dense_layer1_conv`` → ``scale1``), None outside any group."""
    match = GROUP_PATTERN.match(name)
    return match.group(1) if match else None


def head_groups(model: keras.Model) -> list[str]:
    """The groups of the output heads (``forecast``, ``auxiliary_scale<s>``)."""
    return sorted({layer_group(layer.name) for layer in model.layers if layer.name.endswith(HEAD_SUFFIX)})


def kernel_rms(model: keras.Model) -> dict[str, float]:
    """Group → RMS of all its kernels, in the order the layers come."""
    squares: dict[str, list[float]] = {}
    for layer in model.layers:
        group = layer_group(layer.name)
        if group is None:
            continue
        for variable in layer.trainable_variables:
            if variable.name in KERNEL_NAMES:
                values = np.asarray(variable.numpy(), np.float64)
                entry = squares.setdefault(group, [0.0, 0.0])
                entry[0] += float(np.sum(values ** 2))
                entry[1] += values.size
    return {group: float(np.sqrt(total / max(count, 1))) for group, (total, count) in squares.items()}


def gradient_norm(model: keras.Model, x, y) -> float:
    """The global norm of the gradient of the compiled training loss on one batch (x, y)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            prediction = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=prediction, training=True)
        gradients = tape.gradient(loss, model.trainable_variables)
        return float(tf.linalg.global_norm([tf.cast(g, tf.float32) for g in gradients if g is not None]))
    if backend == "jax":
        import jax

        non_trainable = [variable.value for variable in model.non_trainable_variables]
        metrics = [variable.value for variable in model.metrics_variables]

        def loss_of(trainable):
            prediction, _ = model.stateless_call(trainable, non_trainable, x, training=True)
            loss, _ = model.stateless_compute_loss(trainable, non_trainable, metrics, x=x, y=y, y_pred=prediction,
                                                   training=True)
            return loss

        gradients = jax.grad(loss_of)([variable.value for variable in model.trainable_variables])
    elif backend == "torch":
        import torch

        prediction = model(x, training=True)
        loss = model.compute_loss(x=x, y=ops.convert_to_tensor(y), y_pred=prediction, training=True)
        gradients = torch.autograd.grad(loss, [variable.value for variable in model.trainable_variables],
                                        allow_unused=True)
    else:
        raise ValueError(f"gradient_norm knows the tensorflow, jax and torch backends, not {backend!r}")
    squares = [np.sum(np.square(ops.convert_to_numpy(ops.cast(gradient, "float32")), dtype=np.float64))
               for gradient in gradients if gradient is not None]
    return float(np.sqrt(sum(squares)))


def departure(model: keras.Model, x, y, base_slice: tuple[int, int] | None) -> tuple[float, float]:
    """RMS of forecast − base over the valid pixels of the last year-step, and the RMS of its variation
    over pixels (its mean per sample and lead removed). Without a base channel (``model.base``
    climatology) the base is 0: the departure is the forecast itself.

    Args:
      x: inputs ``(batch, years, H, W, C)``; y: packed targets of the model's output shape.
      base_slice: ``Config.channel_slice("base")``.

    Returns:
      (rms, spatial rms) in NDVI units; (0, 0) without a valid pixel.
    """
    forecast = ops.convert_to_numpy(ops.cast(forecast_output(model(x, training=False)), "float32"))
    y = np.asarray(y, np.float32)
    if forecast.ndim == 5:  # (batch, years, H, W, horizon): the forecast is the last year-step
        forecast, y = forecast[:, -1], y[:, -1]
    horizon = forecast.shape[-1]
    base = (np.zeros_like(forecast) if base_slice is None
            else np.asarray(x, np.float32)[:, -1, ..., base_slice[0]:base_slice[1]])
    _, mask = split_targets(y, horizon)
    mask = mask.astype(np.float64)  # (batch, H, W, horizon)
    difference = (forecast - base).astype(np.float64) * mask
    count = mask.sum(axis=(1, 2))  # (batch, horizon)
    if count.sum() == 0:
        return 0.0, 0.0
    mean = difference.sum(axis=(1, 2)) / np.maximum(count, 1)
    rms = float(np.sqrt((difference ** 2).sum() / count.sum()))
    varying = (difference - mean[:, None, None, :]) * mask
    return rms, float(np.sqrt((varying ** 2).sum() / count.sum()))


def base_rmse(batches, base_slice: tuple[int, int] | None) -> float:
    """The base forecast's ``masked_rmse`` over batches of (inputs, y): what a network that never leaves
    its base scores (the base is 0 without a base channel). y has the model's output shape."""
    metric = MaskedRMSE()
    for x, y in batches:
        horizon = y.shape[-1] // 2
        base = (ops.zeros_like(y[..., :horizon]) if base_slice is None
                else x[..., base_slice[0]:base_slice[1]] if len(y.shape) == 5
                else x[:, -1, ..., base_slice[0]:base_slice[1]])
        metric.update_state(y, base)
    return float(metric.result())


def collapse_reasons(ratios: dict[str, float], heads: dict[str, float], departure_rms: float | None,
                     departure_spatial: float | None) -> list[str]:
    """Why the network counts as collapsed (empty: alive).

    Args:
      ratios: group → kernel RMS ÷ its initial RMS, for the groups below the heads.
      heads: head group → kernel RMS (they start at zero).
      departure_rms, departure_spatial: from ``departure`` (None: not measured).
    """
    reasons = []
    dead = [group for group, ratio in ratios.items() if ratio < COLLAPSED_KERNEL_RATIO]
    if dead:
        reasons.append(f"kernels of {', '.join(dead)} at {min(ratios[g] for g in dead):.1e} of their initial "
                       f"RMS (below {COLLAPSED_KERNEL_RATIO:g})")
    grown = any(value > 0 for value in heads.values())
    if departure_rms is not None and grown and (
            departure_rms == 0 or departure_spatial <= CONSTANT_DEPARTURE_RATIO * departure_rms):
        reasons.append(f"the departure from the base is constant over pixels (RMS {departure_rms:.2e}, "
                       f"varying by {departure_spatial:.2e})")
    return reasons
