"""Analytic cost of a training step of the network: FLOPs and the activation memory kept for the backward.

Used by ``bench/train_step.py`` and ``bench/scale.py`` (one definition for both benches). Both walk the
layers of a built model (``model.build_model``), so every size comes from the model itself.

- ``conv_flops(kernel_size, in_channels, out_channels, pixels)``: forward FLOPs of one convolution.
- ``training_flops(model, config, batch)``: FLOPs of one training step, counted over the convolution,
  ConvLSTM and dense layers only: 2·MACs forward, 3× that for a training step (forward, input gradient,
  weight gradient; 2× for the stem, which needs no input gradient); a ConvLSTM counts its input
  convolution for every year and its state convolution for every year but the first (the same useful
  work for the fused and the stock layer). Element-wise work (activations, normalisation, the optimizer)
  is not counted.
- ``activation_bytes(model, config, batch)``: bytes of the layer outputs one training step keeps for
  its backward pass (see its docstring for the assumptions).

No TensorFlow: the counts read only Keras layers, so they work under every Keras backend (the fused
ConvLSTM is recognised when its TensorFlow module has been imported, as it must be for a model to hold one).
"""

from __future__ import annotations

import math
import sys

import keras

from model.network import FoldYears, UnfoldYears

CONVLSTM_STATE_TENSORS = 5  # per year the four gates (4·filters channels) and the cell state (filters)


def conv_flops(kernel_size: int, in_channels: int, out_channels: int, pixels: int) -> int:
    """Forward FLOPs (2 per multiply-add) of a 2-D convolution producing ``pixels`` output pixels."""
    return 2 * kernel_size * kernel_size * in_channels * out_channels * pixels


def _is_fused_convlstm(layer) -> bool:
    """Whether ``layer`` is the fused ``model.convlstm.ConvLSTM`` (only loaded with TensorFlow)."""
    fused = sys.modules.get("model.convlstm")
    return fused is not None and isinstance(layer, fused.ConvLSTM)


def _is_convlstm(layer) -> bool:
    return isinstance(layer, keras.layers.ConvLSTM2D) or _is_fused_convlstm(layer)


def dtype_size(dtype) -> int:
    """Bytes per element of a Keras dtype (``float32`` 4, ``bfloat16`` 2, ``bool`` 1)."""
    name = keras.backend.standardize_dtype(dtype)
    if name == "bool":
        return 1
    bits = name.lstrip("abcdefghijklmnopqrstuvwxyz_")
    if not bits.isdigit():
        raise ValueError(f"no element size is known for the dtype {name!r}; expected a name ending in its bits")
    return int(bits) // 8


def _kernel_side(layer) -> int:
    return layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]


def training_flops(model: keras.Model, config, batch: int) -> int:
    """FLOPs of one training step of ``model`` at ``batch`` samples (see the module docstring).

    Args:
      model: a built network (fused or stock ConvLSTM).
      config: its config; reads ``sequence.years`` and ``model.per_year_outputs``.
      batch: samples per step.

    Returns:
      FLOPs (forward + backward) of the convolution, ConvLSTM and dense layers.
    """
    years = config.sequence.years
    total = 0
    for layer in model.layers:
        # Encoder layers (stem, scale…) see every year; decoder layers too when predicting every year.
        encoder = layer.name.startswith(("stem", "scale"))
        images = batch * years if (encoder or config.model.per_year_outputs) else batch
        backward = 1 if layer.name == "stem_conv" else 2
        if _is_convlstm(layer):
            shape = layer.input.shape  # (years·batch, H, W, C) or (batch, years, H, W, C)
            height, width, channels = shape[-3:]
            size = _kernel_side(layer)
            pixels = batch * height * width
            forward = (conv_flops(size, channels, 4 * layer.filters, pixels * years)
                       + conv_flops(size, layer.filters, 4 * layer.filters, pixels * (years - 1)))
        elif isinstance(layer, keras.layers.Conv2D):
            height, width, channels = layer.input.shape[-3:]
            out_height, out_width, filters = layer.output.shape[-3:]
            forward = conv_flops(_kernel_side(layer), channels, filters, images * out_height * out_width)
        elif isinstance(layer, keras.layers.Dense):
            forward = 2 * layer.input.shape[-1] * layer.units * images
        else:
            continue
        total += forward * (1 + backward)
    return total


def _tensors(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def activation_bytes(model: keras.Model, config, batch: int) -> int:
    """Estimated bytes of activations a training step keeps for its backward pass.

    Assumptions: every layer's output (the input included) is kept once, at the layer's compute dtype
    (float32: 4 bytes, float16/bfloat16: 2); outputs of layers between ``FoldYears`` and ``UnfoldYears``
    (the per-year encoder, the ConvLSTM sequences, the decoder with ``per_year_outputs``) hold
    ``years × batch`` images, as the model folds years into the batch axis; every ConvLSTM (fused or stock)
    also keeps, per year, its four gates and its cell state (5 × filters channels). Not counted: weights,
    gradients, optimizer slots, the temporaries of a single op, and what the runtime frees or fuses early,
    so the real peak differs by a factor of order one.

    Args:
      model: a built network.
      config: its config; reads ``sequence.years``.
      batch: samples per step.

    Returns:
      Bytes; linear in ``batch``.
    """
    years = config.sequence.years
    folded: set[int] = set()  # ids of the symbolic tensors that carry years × batch images
    total = 0
    for layer in model.layers:
        inputs = [] if isinstance(layer, keras.layers.InputLayer) else _tensors(layer.input)
        outputs = _tensors(layer.output)
        if isinstance(layer, FoldYears):
            is_folded = True
        elif isinstance(layer, UnfoldYears):
            is_folded = False
        elif _is_fused_convlstm(layer):
            is_folded = layer.years is not None and layer.return_sequences
        else:
            is_folded = any(id(tensor) in folded for tensor in inputs)
        images = batch * years if is_folded else batch
        for tensor in outputs:
            if is_folded:
                folded.add(id(tensor))
            itemsize = dtype_size(tensor.dtype)
            total += math.prod(tensor.shape[1:]) * images * itemsize
        if _is_convlstm(layer):
            height, width = layer.input.shape[-3:-1]
            itemsize = dtype_size(layer.compute_dtype)
            total += CONVLSTM_STATE_TENSORS * layer.filters * height * width * years * batch * itemsize
    return total


def random_batch(config, batch: int) -> tuple:
    """Inputs ``(batch, years, window, window, channels)`` and packed targets with a 90 % valid mask."""
    import numpy as np

    rng = np.random.default_rng(0)
    years, window, horizon = config.sequence.years, config.window, config.predict.horizon
    x = rng.normal(0, 0.1, (batch, years, window, window, config.input_channels)).astype("float32")
    lead = (batch, years) if config.model.per_year_outputs else (batch,)
    target = rng.normal(0, 0.1, (*lead, window, window, horizon)).astype("float32")
    mask = (rng.random(target.shape) < 0.9).astype("float32")
    return x, np.concatenate([target, mask], axis=-1)
