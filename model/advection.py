"""Advection: the latest anomaly carried forward at the window's estimated velocity, as input channels.

Anomaly fields that drift (weather systems, a drought front) are what a convolutional network finds
hardest to forecast: it has to estimate the motion from a few noisy frames and then move a field by
several pixels per month, with kernels that each reach one pixel. Nowcasting in meteorology solves the
same problem with optical flow and semi-Lagrangian extrapolation; this layer does the simplest version
of it inside the network, with no trainable weight, and hands the result to the layers as channels:

1. the anomalies of the origin month a₀ and of the month before a₁ (the ``sequence.offsets`` channels 0
   and −1: differences from the climatology, inside the zone) are smoothed by a normalised Gaussian of
   ``model.advection_smoothing`` pixels (only pixels inside the zone count);
2. one velocity v per window and year-step, global over the window, by iterative Lucas–Kanade: a₁ moved by
   v should match a₀; each of ``ADVECTION_ITERATIONS`` steps solves the 2×2 least-squares system of the
   linearised mismatch over the pixels inside the zone (Tikhonov-damped, so a window without texture
   gets v ≈ 0) and moves a₁ again; |v| is capped at ``MAX_SPEED_SHARE`` of the window per month;
3. a₀ moved by lead·v for every lead 1..horizon (bilinear): ``(…, H, W, horizon)``. What moves in from
   outside the zone's pixels in the window (reflection padding, or beyond the window's edge) continues the
   nearest pixel inside (``edge="nearest"``, ``model.advection_edge``): the field is smooth, so its edge is
   a better guess than its mean (0) or the padding's mirror. On the planted moving world (4–5 px a month,
   64² zones) a forecast of these channels times one weight per lead went from 65 % to 77 % of the EMA →
   oracle gap with it, because at lead 3 a fifth of each window's centre is reached from outside the zone.
   ``edge="zero"`` moves in 0 there (the window's own edge continues beyond it): the layer before that.

The channels are the forecast of a field that keeps moving and does not change; the network decides how
far to trust them (where nothing moves, they are the persistent anomaly). A window at a zone's edge
estimates its motion from its inside pixels; a window too small to show motion gets a small v.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

ADVECTION_ITERATIONS = 3  # Lucas–Kanade steps (each moves a₁ by the current v and refines it)
MAX_SPEED_SHARE = 0.25  # |v| ≤ this share of the window side, per month
DAMPING = 1e-3  # Tikhonov damping of the 2×2 system, relative to its trace
OUTPUT_SMOOTHING = 1.0  # pixels: σ of the Gaussian that smooths the anomaly that is moved
EDGES = ("nearest", "zero")  # what moves in from outside the zone's pixels (``Advection``'s ``edge``)


def gaussian_kernel(sigma: float) -> list[float]:
    """Normalised 1-D Gaussian weights over ±3σ (at least one pixel each side)."""
    radius = max(1, math.ceil(3 * sigma))
    weights = [math.exp(-0.5 * (offset / sigma) ** 2) for offset in range(-radius, radius + 1)]
    return [weight / sum(weights) for weight in weights]


def _blur(images, kernel):
    """Separable blur of ``(batch, H, W, 1)`` images with a 1-D kernel (zero padding)."""
    size = len(kernel)
    column = ops.reshape(ops.convert_to_tensor(kernel, images.dtype), (size, 1, 1, 1))
    row = ops.reshape(column, (1, size, 1, 1))
    return ops.conv(ops.conv(images, column, padding="same"), row, padding="same")


def shift_images(images, shift, bounds=None):
    """Move images by a shift per sample: ``out[y, x] = image[y − s_y, x − s_x]``, bilinear, edges repeated.

    Args:
      images: ``(batch, H, W, C)``.
      shift: ``(batch, 2)``: rows, columns (pixels; content moves by +shift).
      bounds: ``(batch, 4)``: first and last row, first and last column (inclusive) the content is read
        from; a source position outside them reads their edge. None: the whole image.
    """
    height, width = images.shape[1], images.shape[2]
    if bounds is None:
        bounds = ops.convert_to_tensor([[0.0, height - 1.0, 0.0, width - 1.0]], images.dtype)
        bounds = ops.broadcast_to(bounds, (ops.shape(shift)[0], 4))

    def interpolate(values, axis, length, amount, first, last):
        positions = ops.arange(length, dtype=values.dtype)[None, :] - amount[:, None]  # (batch, length)
        positions = ops.minimum(ops.maximum(positions, first[:, None]), last[:, None])
        low = ops.floor(positions)
        fraction = positions - low
        low = ops.cast(low, "int32")
        high = ops.minimum(low + 1, length - 1)
        shape = [-1, 1, 1, 1]
        shape[axis] = length
        weight = ops.reshape(fraction, shape)
        return _take(values, low, axis) * (1.0 - weight) + _take(values, high, axis) * weight

    rows = interpolate(images, 1, height, shift[:, 0], bounds[:, 0], bounds[:, 1])
    return interpolate(rows, 2, width, shift[:, 1], bounds[:, 2], bounds[:, 3])


def _take(values, index, axis: int):
    """``values`` ``(batch, H, W, C)`` at ``index`` ``(batch, length)`` along ``axis`` (1 or 2), per sample.
    Under TensorFlow one batched gather; elsewhere ``_take_along_axis``, which broadcasts the index to the
    whole image first (the same values: ``bench/advection.py`` times both under TensorFlow)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.gather(values, index, axis=axis, batch_dims=1)
    return _take_along_axis(values, index, axis)


def _take_along_axis(values, index, axis: int):
    """``_take`` with ``keras.ops.take_along_axis`` on any backend."""
    shape = [-1, 1, 1, 1]
    shape[axis] = values.shape[axis]
    return ops.take_along_axis(values, ops.broadcast_to(ops.reshape(index, shape), ops.shape(values)), axis=axis)


def inside_bounds(weight):
    """The rectangle of pixels inside the zone of each window, as ``shift_images``'s ``bounds``.

    Args:
      weight: ``(batch, H, W, 1)``: 1 inside the zone (a window's inside is a rectangle: the zone's
        pixels; padding surrounds them), 0 elsewhere.

    Returns:
      ``(batch, 4)`` float: first and last inside row, first and last inside column; the whole window
      when no pixel is inside.
    """
    def extent(covered, length):  # covered: (batch, length) 1/0
        index = ops.arange(length, dtype=weight.dtype)[None, :]
        far = float(length)
        first = ops.min(index + (1.0 - covered) * far, axis=1)
        last = ops.max(index - (1.0 - covered) * far, axis=1)
        empty = ops.max(covered, axis=1) < 0.5
        return ops.where(empty, 0.0, first), ops.where(empty, length - 1.0, last)

    inside = ops.cast(weight > 0.5, weight.dtype)
    first_row, last_row = extent(ops.max(inside, axis=(2, 3)), weight.shape[1])
    first_column, last_column = extent(ops.max(inside, axis=(1, 3)), weight.shape[2])
    return ops.stack([first_row, last_row, first_column, last_column], axis=1)


def _gradients(images):
    """Central differences along rows and columns (one-sided at the edges) of ``(batch, H, W, 1)``."""
    down = ops.concatenate([images[:, 1:], images[:, -1:]], axis=1)
    up = ops.concatenate([images[:, :1], images[:, :-1]], axis=1)
    right = ops.concatenate([images[:, :, 1:], images[:, :, -1:]], axis=2)
    left = ops.concatenate([images[:, :, :1], images[:, :, :-1]], axis=2)
    return (down - up) / 2.0, (right - left) / 2.0


def estimate_velocity(frames, weight, smoothing: float, iterations: int = ADVECTION_ITERATIONS,
                      max_speed: float | None = None):
    """The global velocity that moves each of ``frames`` onto the next (iterative Lucas–Kanade).

    Args:
      frames: anomalies ``(batch, H, W, 1)`` of consecutive months, oldest first (at least two); every
        consecutive pair adds its equations, with the same velocity.
      weight: ``(batch, H, W, 1)``: 1 where pixels count (inside the zone), 0 elsewhere.
      smoothing: the Gaussian's σ in pixels.
      max_speed: cap of |v| in pixels (None: the window's side × ``MAX_SPEED_SHARE``).

    Returns:
      ``(batch, 2)``: rows, columns per month.
    """
    kernel = gaussian_kernel(smoothing)
    mass = _blur(weight, kernel)
    covered = ops.cast(mass > 1e-3, weight.dtype) * weight
    frames = [_blur(frame * weight, kernel) / ops.maximum(mass, 1e-3) for frame in frames]
    cap = max_speed if max_speed is not None else MAX_SPEED_SHARE * weight.shape[1]
    velocity = ops.zeros((ops.shape(weight)[0], 2), weight.dtype)

    def total(values):
        return ops.sum(values * covered, axis=(1, 2, 3))

    def step(_, velocity):
        a = b = d = e = f = 0.0
        for previous, current in zip(frames[:-1], frames[1:]):
            moved = shift_images(previous, velocity)
            rows, columns = _gradients(moved)
            mismatch = current - moved
            a, b, d = a + total(rows * rows), b + total(rows * columns), d + total(columns * columns)
            e, f = e + total(rows * mismatch), f + total(columns * mismatch)
        damping = DAMPING * (a + d) / 2.0 + 1e-12
        a, d = a + damping, d + damping
        determinant = a * d - b * b
        # moved(v + δ) ≈ moved − ∇·δ: minimise Σ (mismatch + ∇·δ)² → (∇∇ᵀ) δ = −Σ ∇·mismatch
        step_rows = -(d * e - b * f) / determinant
        step_columns = -(a * f - b * e) / determinant
        velocity = velocity + ops.stack([step_rows, step_columns], axis=1)
        speed = ops.sqrt(ops.sum(velocity ** 2, axis=1, keepdims=True))
        return velocity * ops.minimum(1.0, cap / ops.maximum(speed, 1e-12))

    velocity = ops.fori_loop(0, iterations, step, velocity)
    return velocity


@keras.saving.register_keras_serializable(package="phenocast")
class Advection(layers.Layer):
    """``(batch, H, W, C)`` channels → ``(batch, H, W, horizon)``: the origin month's anomaly (the last of
    the channels ``months``, consecutive months oldest first) moved by lead·v, v estimated over every
    consecutive pair of them (module docstring). Pixels count where channel ``inside`` is 1 (every pixel when
    it is None). ``edge``: what moves in from outside those pixels, ``"nearest"`` or ``"zero"`` (module
    docstring). No weights; computed in float32 and without gradients (it only reads the inputs)."""

    def __init__(self, months: list[int], inside: int | None, horizon: int, smoothing: float,
                 edge: str = "nearest", **kwargs):
        if edge not in EDGES:
            raise ValueError(f"Advection edge: expected one of {', '.join(EDGES)}, found {edge!r}")
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.months, self.inside = list(months), inside
        self.horizon, self.smoothing, self.edge = horizon, smoothing, edge

    def call(self, inputs):
        inputs = ops.stop_gradient(ops.cast(inputs, "float32"))
        frames = [inputs[..., channel:channel + 1] for channel in self.months]
        weight = (ops.ones_like(frames[0]) if self.inside is None
                  else ops.cast(inputs[..., self.inside:self.inside + 1] > 0.5, "float32"))
        velocity = estimate_velocity(frames, weight, self.smoothing)
        # lightly smoothed (the noise does not move); what moves in from outside the zone continues the
        # nearest pixel inside, or is 0 (module docstring)
        kernel = gaussian_kernel(OUTPUT_SMOOTHING)
        known = _blur(frames[-1] * weight, kernel) / ops.maximum(_blur(weight, kernel), 1e-3) * weight
        bounds = inside_bounds(weight) if self.edge == "nearest" else None
        moved = [shift_images(known, velocity * float(lead), bounds) for lead in range(1, self.horizon + 1)]
        return ops.concatenate(moved, axis=-1) * weight

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.horizon)

    def get_config(self):
        return {**super().get_config(), "months": self.months, "inside": self.inside, "horizon": self.horizon,
                "smoothing": self.smoothing, "edge": self.edge}
