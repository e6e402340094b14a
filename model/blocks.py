"""The network's building blocks: small functions ``(x, …, name) -> x`` on the Keras functional API.

Every block takes its sizes as arguments (they come from ``config.model``) and names each of its layers
``<name>_<part>``. Per-year blocks see the years folded into the batch axis, ``(years × batch, H, W, C)``,
so one convolution call covers every year of every sample. Convolutions have a bias and their activation
built in (no normalization layers): TensorFlow's graph optimizer fuses convolution + bias + ReLU into one
oneDNN kernel on CPU, while a normalization layer would add several full passes over memory forward and
backward. Written on ``keras.layers`` and ``keras.ops``: any Keras 3 backend builds them.
"""

from __future__ import annotations

from typing import Literal

import keras
from keras import layers, ops


def conv_block(x, filters: int, kernel_size: int, activation: str | None, name: str, dilation_rate: int = 1):
    """Convolution ("same" padding) with bias and activation.

    Args:
      x: ``(batch, H, W, C)``.
      filters, kernel_size, dilation_rate: of the convolution.
      activation: Keras activation name, or None for a linear output.
      name: layer name.

    Returns:
      ``(batch, H, W, filters)``.
    """
    return layers.Conv2D(filters, kernel_size, padding="same", dilation_rate=dilation_rate,
                         activation=activation, name=name)(x)


def dense_block(x, num_layers: int, growth_rate: int, kernel_size: int, activation: str, name: str):
    """DenseNet block: each layer's ``growth_rate`` new channels are concatenated to its input.

    Args:
      x: ``(batch, H, W, C)``.
      num_layers: convolutions in the block (0 returns ``x``).
      growth_rate: channels each convolution adds.

    Returns:
      ``(batch, H, W, C + num_layers·growth_rate)``.
    """
    for index in range(1, num_layers + 1):
        new = conv_block(x, growth_rate, kernel_size, activation, f"{name}_layer{index}_conv")
        x = layers.Concatenate(name=f"{name}_layer{index}_concat")([x, new])
    return x


@keras.saving.register_keras_serializable(package="phenocast")
class MaskedGlobalAveragePooling(layers.Layer):
    """Global average over the pixels a mask marks: ``[x (batch, H, W, C), mask (batch, H, W, 1)]`` ->
    ``(batch, 1, 1, C)`` = Σ mask·x / Σ mask, so reflection padding (mask 0) never enters the average.
    A mask pooled down with the features (fractions in [0, 1]) weighs each pixel by its inside share.

    The sums are taken in float32 whatever the compute dtype: in float16 a sum over a large window can
    overflow, and the floor of the count (1e-6) is below float16's normal range (flushed to zero on CPUs).
    """

    def call(self, inputs):
        x, mask = inputs
        values, weights = ops.cast(x, "float32"), ops.cast(mask, "float32")
        total = ops.sum(values * weights, axis=(1, 2), keepdims=True)
        count = ops.sum(weights, axis=(1, 2), keepdims=True)
        return ops.cast(total / ops.maximum(count, 1e-6), x.dtype)

    def compute_output_shape(self, input_shape):
        shape = input_shape[0]
        return (shape[0], 1, 1, shape[-1])


def global_pool(x, mask, name: str):
    """``(batch, 1, 1, C)`` average of x over all pixels, or over the pixels ``mask`` marks (if not None)."""
    if mask is None:
        return layers.GlobalAveragePooling2D(keepdims=True, name=name)(x)
    return MaskedGlobalAveragePooling(name=name)([x, mask])


def squeeze_excite(x, ratio: int, activation: str, name: str, mask=None):
    """Squeeze-and-excitation: rescale channels by a gate computed from their global averages.

    Args:
      x: ``(batch, H, W, C)``.
      ratio: the bottleneck has ``max(1, C // ratio)`` units.
      mask: ``(batch, H, W, 1)`` share of each pixel inside the zone, or None: average every pixel.

    Returns:
      ``(batch, H, W, C)``.
    """
    channels = x.shape[-1]
    squeezed = global_pool(x, mask, f"{name}_pool")  # (batch, 1, 1, C)
    squeezed = layers.Dense(max(1, channels // ratio), activation=activation, name=f"{name}_reduce")(squeezed)
    gate = layers.Dense(channels, activation="sigmoid", name=f"{name}_expand")(squeezed)  # (batch, 1, 1, C)
    return layers.Multiply(name=f"{name}_scale")([x, gate])


def downsample(x, name: str):
    """Halve the resolution with 2×2 average pooling, as DenseNet's transitions.

    ``(batch, H, W, C)`` -> ``(batch, H/2, W/2, C)``.
    """
    return layers.AveragePooling2D(2, name=f"{name}_pool")(x)


def aspp(x, filters: int, kernel_size: int, dilation_rates: list[int], image_pooling: bool, activation: str,
         name: str, mask=None):
    """Atrous spatial pyramid pooling (DeepLabV3): parallel 1×1, dilated and image-pooling branches, merged.

    Args:
      x: ``(batch, H, W, C)``.
      filters: channels of every branch and of the projection.
      dilation_rates: one ``kernel_size`` convolution per rate.
      image_pooling: add the branch that pools the whole image and broadcasts it back.
      mask: ``(batch, H, W, 1)`` share of each pixel inside the zone for the image pooling, or None.

    Returns:
      ``(batch, H, W, filters)``.
    """
    height, width = x.shape[1], x.shape[2]
    branches = [conv_block(x, filters, 1, activation, f"{name}_1x1")]
    for rate in dilation_rates:
        branches.append(conv_block(x, filters, kernel_size, activation, f"{name}_rate{rate}",
                                   dilation_rate=rate))
    if image_pooling:
        pooled = global_pool(x, mask, f"{name}_image_pool")  # (batch, 1, 1, C)
        pooled = conv_block(pooled, filters, 1, activation, f"{name}_image_conv")
        branches.append(layers.UpSampling2D((height, width), name=f"{name}_image_broadcast")(pooled))
    merged = layers.Concatenate(name=f"{name}_concat")(branches) if len(branches) > 1 else branches[0]
    return conv_block(merged, filters, 1, activation, f"{name}_project")


def upsample(x, mode: Literal["bilinear", "depth_to_space"], activation: str, name: str):
    """Double the resolution: bilinear resize, or a 1×1 convolution to 4·C channels then depth-to-space.

    Depth-to-space moves each pixel's channel groups (dy, dx, c) to the 2×2 block of output pixels
    (unlike the original's plain reshape, which scrambled pixels).

    Args:
      x: ``(batch, H, W, C)``.

    Returns:
      ``(batch, 2H, 2W, C)``.
    """
    if mode == "bilinear":
        return layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_resize")(x)
    if mode != "depth_to_space":
        raise ValueError(f"upsampling must be 'bilinear' or 'depth_to_space', received {mode!r}")
    height, width, channels = x.shape[1:]
    x = conv_block(x, 4 * channels, 1, activation, f"{name}_expand")  # (b, H, W, 4C)
    x = layers.Reshape((height, width, 2, 2, channels), name=f"{name}_split")(x)  # (b, H, W, dy, dx, C)
    x = layers.Permute((1, 3, 2, 4, 5), name=f"{name}_interleave")(x)  # (b, H, dy, W, dx, C)
    return layers.Reshape((2 * height, 2 * width, channels), name=f"{name}_merge")(x)


def decoder_stage(x, skip, filters: int, kernel_size: int, upsampling: str, activation: str, name: str):
    """DeepLabV3+ decoder step: upsample the coarse features, concatenate the finer skip, convolve.

    Args:
      x: coarse features ``(batch, H, W, C)``.
      skip: finer features ``(batch, 2H, 2W, S)`` (a ConvLSTM state).
      filters: output channels.

    Returns:
      ``(batch, 2H, 2W, filters)``.
    """
    x = upsample(x, upsampling, activation, f"{name}_up")
    x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    return conv_block(x, filters, kernel_size, activation, f"{name}_conv")
