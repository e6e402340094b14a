"""The forecasting network: per-year DenseNet encoder, ConvLSTMs over the years per scale, DeepLabV3+ decoder.

Data flow (default config: window 288, 10 years, 24 channels, 3 scales, horizon 3)::

    input (batch, years, 288, 288, 24)
      input_scale                                 every channel at unit scale (``input_scaling``)
      fold_years                                  (years·batch, 288, 288, 24)   years into the batch axis
      [advection]                                 + the origin's anomaly moved by lead × the window's
                                                  velocity (``model/advection.py``), horizon channels
      stem conv                                   (years·batch, 288, 288, filters)
      per scale s (288, 144, 72):
        [2×2 average pool if s > 0] → dense block → squeeze-excite   (years·batch, H_s, W_s, C_s)
        ConvLSTM over the years, lstm_filters[s]  (years·batch, H_s, W_s, F_s), or the last year (batch, …)
      ASPP on the coarsest ConvLSTM states        (…, 72, 72, aspp_filters)
      per finer scale: upsample ×2, concatenate that scale's ConvLSTM states, conv → decoder_filters
      head: 1×1 conv → horizon, float32           (…, 288, 288, horizon)   zero-initialised
        [− its mean inside the zone]              model.centre_layers: no window-wide level from the layers
        [+ linear path]                           + a zero-initialised 1×1 conv of the scaled inputs
      unfold_years (per_year_outputs)             (batch, years, 288, 288, horizon)
      forecast = base channels + residual         (batch, years, 288, 288, horizon)

Every year-step is encoded independently (one batched convolution per layer); the ConvLSTMs carry
information across years; with ``per_year_outputs`` the decoder runs on every year-step's states (step k
predicts the horizon after year k's origin, the last step is the forecast), else only on the last one.

The network learns a residual over a base forecast (``model.base``): the base of every target month is an
input channel group (``Config.channel_slice("base")``, a difference from the climatology like the
targets), the forecast is base + the head's output, and the head's final convolution starts at zero, so
an untrained network forecasts exactly the base (the head is kept out of weight decay, which would
otherwise hold it at zero while the data cannot yet reach the layers below it). With
``model.masked_pooling`` the last input channel marks pixels inside the zone; pooled down with the
features, it keeps reflection padding out of the squeeze-excitation and ASPP image-pooling averages.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from model import blocks
from model.advection import Advection

FORECAST = "forecast"  # name of the forecast output layer
HEAD_SUFFIX = "_head"  # an output head's final convolution is named <output>_head: it starts at zero
LINEAR_HEAD = f"{FORECAST}_linear{HEAD_SUFFIX}"  # the forecast's linear path (``model.linear_path``)
INPUT_SCALING = "input_scale"  # the layer that brings every input channel to unit scale

# How each channel group (``Config.channel_groups``) reaches unit scale: NDVI differences (from the
# climatology) are divided by ``model.value_scale``; sin/cos and the 0/1 inside mask already are at unit
# scale; absolute values (the seasonal curve) are standardised with statistics of the training origins.
DIFFERENCE_GROUPS = ("months", "context", "zone", "base")
UNIT_GROUPS = ("calendar", "inside")
STANDARDIZED_GROUPS = ("climatology",)


def input_scaling(config) -> tuple[list[float], list[float], list[int]]:
    """Per input channel, the offset and scale that bring it to unit scale, and the channels whose offset
    and scale are statistics to measure on training samples (``set_input_statistics``; 0 and 1 until then).

    Returns:
      (offsets, scales, standardized channel indices), one entry per channel of ``config.input_channels``.
    """
    offsets, scales, standardized = [], [], []
    for group, width in config.channel_groups:
        if group in DIFFERENCE_GROUPS:
            scale = config.model.value_scale
        elif group in UNIT_GROUPS or group in STANDARDIZED_GROUPS:
            scale = 1.0
        else:
            raise ValueError(f"no input scaling is defined for the channel group {group!r}")
        if group in STANDARDIZED_GROUPS:
            standardized.extend(range(len(offsets), len(offsets) + width))
        offsets += [0.0] * width
        scales += [scale] * width
    return offsets, scales, standardized


@keras.saving.register_keras_serializable(package="phenocast")
class InputScaling(layers.Layer):
    """Per-channel ``(x − offset) / scale`` of ``(…, channels)`` inputs.

    ``offset`` and ``scale`` are non-trainable weights, so statistics set after building
    (``set_input_statistics``) are saved and loaded with the model; ``offsets`` and ``scales`` are their
    initial values (``input_scaling``).
    """

    def __init__(self, offsets: list[float], scales: list[float], **kwargs):
        super().__init__(**kwargs)
        self.offsets, self.scales = [float(v) for v in offsets], [float(v) for v in scales]

    def build(self, input_shape):
        channels = len(self.offsets)
        if input_shape[-1] != channels:
            raise ValueError(f"InputScaling has {channels} channels, received inputs of shape {input_shape}")
        self.offset = self.add_weight(shape=(channels,), initializer="zeros", trainable=False, name="offset")
        self.scale = self.add_weight(shape=(channels,), initializer="ones", trainable=False, name="scale")
        self.offset.assign(self.offsets)
        self.scale.assign(self.scales)

    def call(self, inputs):
        offset, scale = ops.cast(self.offset, inputs.dtype), ops.cast(self.scale, inputs.dtype)
        return (inputs - offset) / scale

    def get_config(self):
        return {**super().get_config(), "offsets": self.offsets, "scales": self.scales}


def set_input_statistics(model: keras.Model, channels: list[int], mean, std) -> None:
    """Set the offset and scale of the given input channels to measured means and standard deviations
    (a standard deviation below 1e-6 counts as 1: a constant channel is only centred)."""
    layer = model.get_layer(INPUT_SCALING)
    offset, scale = layer.offset.numpy(), layer.scale.numpy()
    for channel, mu, sigma in zip(channels, mean, std):
        offset[channel], scale[channel] = float(mu), float(sigma) if sigma > 1e-6 else 1.0
    layer.offset.assign(offset)
    layer.scale.assign(scale)


def linear_path_features(model: keras.Model) -> keras.Model:
    """The inputs of the forecast's linear path (``model.linear_path``) as a model of the network's input:
    the scaled input channels and the advection channels at each pixel, ``(years·batch, H, W, C)`` with
    per-year outputs, else the last year's ``(batch, H, W, C)``."""
    return keras.Model(model.input, model.get_layer(LINEAR_HEAD).input)


def set_linear_path(model: keras.Model, kernel, bias, value_scale: float) -> None:
    """Set the linear path to ``residual = features · kernel + bias`` (NDVI differences per unit of the
    ``linear_path_features``): ``kernel`` (C, horizon), ``bias`` (horizon,). The head adds it before its
    × ``value_scale``, so both are divided by it here."""
    layer = model.get_layer(LINEAR_HEAD)
    layer.kernel.assign(ops.reshape(ops.convert_to_tensor(kernel, "float32") / value_scale, layer.kernel.shape))
    layer.bias.assign(ops.convert_to_tensor(bias, "float32") / value_scale)


def _static(tensor, start: int) -> tuple:
    """The sizes of ``tensor``'s axes from ``start`` on: static where known, else read at run time."""
    dynamic = ops.shape(tensor)
    return tuple(dynamic[axis] if size is None else size
                 for axis, size in enumerate(tensor.shape[start:], start))


@keras.saving.register_keras_serializable(package="phenocast")
class FoldYears(layers.Layer):
    """``(batch, years, H, W, C)`` -> year-major ``(years·batch, H, W, C)``, for per-year layers."""

    def call(self, inputs):
        return ops.reshape(ops.transpose(inputs, (1, 0, 2, 3, 4)), (-1, *_static(inputs, 2)))

    def compute_output_shape(self, input_shape):
        batch, years = input_shape[:2]
        folded = None if batch is None or years is None else batch * years
        return (folded, *input_shape[2:])


@keras.saving.register_keras_serializable(package="phenocast")
class UnfoldYears(layers.Layer):
    """``(years·batch, H, W, C)`` year-major -> ``(batch, years, H, W, C)``; the inverse of ``FoldYears``."""

    def __init__(self, years: int, **kwargs):
        super().__init__(**kwargs)
        self.years = years

    def call(self, inputs):
        unfolded = ops.reshape(inputs, (self.years, -1, *_static(inputs, 1)))
        return ops.transpose(unfolded, (1, 0, 2, 3, 4))

    def compute_output_shape(self, input_shape):
        folded = input_shape[0]
        return (None if folded is None else folded // self.years, self.years, *input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "years": self.years}


@keras.saving.register_keras_serializable(package="phenocast")
class ChannelSlice(layers.Layer):
    """Channels ``[start, stop)`` of ``(batch, years, H, W, C)`` inputs, float32; ``last_year`` keeps only
    the last year-step ``(batch, H, W, stop - start)``.

    Always a float32 layer: under a mixed precision policy Keras would round a layer's inputs to the
    compute dtype before ``call``, and the base and inside-mask channels must reach the output exactly."""

    def __init__(self, start: int, stop: int, last_year: bool = False, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.start, self.stop, self.last_year = start, stop, last_year

    def call(self, inputs):
        values = ops.cast(inputs[..., self.start:self.stop], "float32")
        return values[:, -1] if self.last_year else values

    def compute_output_shape(self, input_shape):
        shape = (*input_shape[:-1], self.stop - self.start)
        return (shape[0], *shape[2:]) if self.last_year else shape

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop, "last_year": self.last_year}


@keras.saving.register_keras_serializable(package="phenocast")
class MaskedCentring(layers.Layer):
    """Each channel minus its mean over a window's pixels inside the zone (``model.centre_layers``):
    ``[x (batch, H, W, C), inside (batch, H, W, 1)]`` → ``(batch, H, W, C)``; a window with no pixel inside
    keeps its values. Float32, as the head it follows."""

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, inputs):
        x, inside = (ops.cast(value, "float32") for value in inputs)
        weight = ops.sum(inside, axis=(1, 2), keepdims=True)  # 0 only where the sum below is 0 too
        return x - ops.sum(x * inside, axis=(1, 2), keepdims=True) / ops.maximum(weight, 1e-6)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@keras.saving.register_keras_serializable(package="phenocast")
class AuxiliaryOutputsModel(keras.Model):
    """Functional model with outputs ``[forecast, auxiliary…]`` whose training adds the auxiliary losses.

    Built by ``build_model`` when ``model.aux_weight > 0``. Only a training call (``training=True``, as in
    ``fit``) returns the list; any other call, ``evaluate`` and ``predict`` return the forecast alone, so the
    model is used like the single-output one. ``compile_model`` sets ``auxiliary_losses`` (one
    ``MaskedForecastLoss`` per head, against pooled targets) and ``auxiliary_weight``; the compiled loss and
    metrics see only the forecast (validation losses have no auxiliary terms).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.auxiliary_losses: list = []
        self.auxiliary_weight = 0.0

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        return outputs if training else forecast_output(outputs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, (list, tuple)):  # an inference call: no auxiliary outputs
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        forecast, *auxiliary = y_pred
        loss = super().compute_loss(x, y, forecast, sample_weight, training)
        for auxiliary_loss, prediction in zip(self.auxiliary_losses, auxiliary):
            loss = loss + self.auxiliary_weight * auxiliary_loss(y, prediction, sample_weight)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, forecast_output(y_pred), sample_weight)


def forecast_output(outputs):
    """The forecast tensor of a model's outputs (the first of ``AuxiliaryOutputsModel``'s list)."""
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def _convlstm(x, filters: int, years: int, return_sequences: bool, config, name: str):
    """ConvLSTM over folded years ``(years·batch, H, W, C)`` with the configured implementation.

    With a single year-step the ConvLSTM would run one step from a zero state: its recurrent kernel and
    forget gate would never get a gradient. A plain convolution (``model.activation``) takes its place.
    """
    model = config.model
    if years == 1:
        return blocks.conv_block(x, filters, model.kernel_size, model.activation, f"{name}_conv")
    if model.convlstm == "fused":
        if keras.backend.backend() != "tensorflow":
            raise ValueError(f"model.convlstm: fused is written in TensorFlow, but the Keras backend is "
                             f"{keras.backend.backend()!r}; use model.convlstm=keras (the same weights) there")
        from model.convlstm import ConvLSTM  # TensorFlow only: imported when a config asks for it

        return ConvLSTM(filters, model.kernel_size, years=years, activation=model.cell_activation,
                        recurrent_activation=model.recurrent_activation, return_sequences=return_sequences,
                        unroll=model.unroll, name=name)(x)
    # Stock Keras layer, for comparison: it wants (batch, years, H, W, C).
    x = UnfoldYears(years, name=f"{name}_unfold")(x)
    x = layers.ConvLSTM2D(filters, model.kernel_size, padding="same", activation=model.cell_activation,
                          recurrent_activation=model.recurrent_activation, return_sequences=return_sequences,
                          unroll=model.unroll, name=name)(x)
    return FoldYears(name=f"{name}_fold")(x) if return_sequences else x


def build_model(config) -> keras.Model:
    """Build the network of ``config.model`` for ``config.sequence``/``config.window``/``config.predict``.

    Args:
      config: a ``phenocast.config.Config``.

    Returns:
      A Keras functional model. Input ``(batch, years, window, window, config.input_channels)``; output
      named ``forecast``, float32: ``(batch, years, window, window, horizon)`` with ``per_year_outputs``,
      else ``(batch, window, window, horizon)``. With ``aux_weight > 0`` an ``AuxiliaryOutputsModel`` whose
      extra outputs ``auxiliary_scale<s>`` predict the targets pooled by ``2**s``.
    """
    model = config.model
    years, window, horizon = config.sequence.years, config.window, config.predict.horizon
    scales = len(model.lstm_filters)
    per_year = model.per_year_outputs
    size, activation = model.kernel_size, model.activation

    inputs = keras.Input((years, window, window, config.input_channels), name="sequence")
    # every channel at unit scale for the layers (NDVI differences ÷ value_scale; back × it at the output)
    offsets, channel_scales, _ = input_scaling(config)
    x = InputScaling(offsets, channel_scales, name=INPUT_SCALING)(inputs)
    x = FoldYears(name="fold_years")(x)  # (years·batch, window, window, channels)
    if model.advection:  # the origin's anomaly moved at the window's velocity, one channel per lead
        moved = _advection(x, config)  # (years·batch, window, window, horizon)
        x = layers.Concatenate(name="advection_concat")([x, moved])
    linear = _linear_inputs(x, years, per_year) if model.linear_path != "none" else None
    masks = _inside_masks(inputs, config, scales)  # per scale: (years·batch, H_s, W_s, 1), or Nones
    x = blocks.conv_block(x, model.filters, size, activation, "stem_conv")
    states = []
    for scale in range(scales):
        name = f"scale{scale}"
        if scale > 0:
            x = blocks.downsample(x, f"{name}_down")  # (years·batch, H/2, W/2, C)
        x = blocks.dense_block(x, model.layers_per_block[scale], model.growth_rate, size, activation,
                               f"{name}_dense")
        if model.se_ratio > 0:
            x = blocks.squeeze_excite(x, model.se_ratio, activation, f"{name}_se", mask=masks[scale])
        # (years·batch, H_s, W_s, F_s) with per_year_outputs, else the last year's (batch, H_s, W_s, F_s)
        states.append(_convlstm(x, model.lstm_filters[scale], years, per_year, config, f"{name}_convlstm"))

    # without per-year outputs, the last year's inside channel (batch, H, W, 1): ASPP pools it, centring uses it
    last_inside = None if per_year or masks[0] is None else ChannelSlice(
        *config.channel_slice("inside"), last_year=True, name="inside_last_year")(inputs)
    last_mask = masks[-1] if last_inside is None else _coarsest(last_inside, scales)
    x = blocks.aspp(states[-1], model.aspp_filters, size, model.dilation_rates, model.image_pooling,
                    activation, "aspp", mask=last_mask)
    auxiliary = []
    for scale in reversed(range(scales - 1)):
        if model.aux_weight > 0:
            auxiliary.append(_output_head(x, horizon, years, per_year, model.value_scale,
                                          f"auxiliary_scale{scale + 1}", _base(inputs, config, 2 ** (scale + 1))))
        x = blocks.decoder_stage(x, states[scale], model.decoder_filters, size, model.upsampling, activation,
                                 f"decoder_scale{scale}")
    # the pixels model.centre_layers averages over, shaped as the head's input
    centre_mask = (masks[0] if per_year else last_inside) if model.centre_layers else None
    forecast = _output_head(x, horizon, years, per_year, model.value_scale, FORECAST, _base(inputs, config, 1),
                            linear, centre_mask)
    if auxiliary:
        return AuxiliaryOutputsModel(inputs, [forecast, *auxiliary], name="phenocast")
    return keras.Model(inputs, forecast, name="phenocast")


def _advection(x, config):
    """``Advection`` of the scaled, folded inputs: the month channels of the consecutive months up to the
    origin among ``sequence.offsets`` (…, −2, −1, 0: at least −1 and 0), weighted by the inside channel."""
    offsets = config.sequence.offsets
    start, _ = config.channel_slice("months")
    inside = config.channel_slice("inside")
    months = [0]
    while -len(months) in offsets:
        months.insert(0, -len(months))
    return Advection([start + offsets.index(offset) for offset in months], None if inside is None else inside[0],
                     config.predict.horizon, config.model.advection_smoothing, config.model.advection_edge,
                     name="advection")(x)


def _inside_masks(inputs, config, scales: int) -> list:
    """The inside-the-zone channel folded and pooled down to every scale (None each without
    ``model.masked_pooling``): ``(years·batch, H_s, W_s, 1)``, the share of each pixel inside the zone."""
    where = config.channel_slice("inside")
    if where is None:
        return [None] * scales
    mask = FoldYears(name="inside_fold")(ChannelSlice(*where, name="inside_mask")(inputs))
    masks = [mask]
    for scale in range(1, scales):
        masks.append(layers.AveragePooling2D(2, dtype="float32", name=f"inside_scale{scale}")(masks[-1]))
    return masks


def _coarsest(mask, scales: int):
    """A full-resolution inside mask pooled to the coarsest scale (the ASPP's): ``(…, H_s, W_s, 1)``."""
    factor = 2 ** (scales - 1)
    return layers.AveragePooling2D(factor, dtype="float32", name="inside_last_pool")(mask) if factor > 1 else mask


def _base(inputs, config, pool: int):
    """The base forecast channels, ``(batch, years, H/pool, W/pool, horizon)`` (the last year's
    ``(batch, H/pool, W/pool, horizon)`` without per-year outputs), or None for ``model.base`` climatology."""
    where = config.channel_slice("base")
    if where is None:
        return None
    per_year = config.model.per_year_outputs
    name = "base" if pool == 1 else f"base_pool{pool}"
    base = ChannelSlice(*where, last_year=not per_year, name=name)(inputs)
    if pool == 1:
        return base
    if per_year:
        folded = FoldYears(dtype="float32", name=f"{name}_fold")(base)
        pooled = layers.AveragePooling2D(pool, dtype="float32", name=f"{name}_avg")(folded)
        return UnfoldYears(config.sequence.years, dtype="float32", name=f"{name}_unfold")(pooled)
    return layers.AveragePooling2D(pool, dtype="float32", name=f"{name}_avg")(base)


def _linear_inputs(x, years: int, per_year: bool):
    """The inputs of ``model.linear_path``: the scaled, folded inputs ``(years·batch, H, W, C)`` as they are
    with per-year outputs, else the last year's ``(batch, H, W, C)``."""
    if per_year:
        return x
    unfolded = UnfoldYears(years, name="linear_unfold")(x)
    return ChannelSlice(0, x.shape[-1], last_year=True, name="linear_last_year")(unfolded)


def _output_head(x, horizon: int, years: int, per_year: bool, value_scale: float, name: str, base=None,
                 linear=None, centre_mask=None):
    """Linear float32 1×1 convolution to ``horizon`` channels, rescaled to NDVI differences (× value_scale),
    unfolded to ``(batch, years, …)`` if per year, plus the base forecast (if not None).

    1×1 as DeepLabV3+'s classifier: the decoder's last 3×3 convolution already mixes neighbours. The
    convolution starts at zero (kernel and bias), so the untrained head outputs exactly the base. With
    ``linear`` (the scaled inputs, ``model.linear_path``) a second zero-initialised 1×1 convolution maps them
    to the same ``horizon`` channels, added before the rescaling: the per-pixel linear model (the damped
    anomaly, the advected field) is one step of gradient away, and the layers learn what it misses. With
    ``centre_mask`` (``model.centre_layers``) the head's output is first centred on each window's pixels
    inside the zone (``MaskedCentring``), so the layers add no window-wide level.
    """
    residual = name if base is None else f"{name}_residual"
    x = layers.Conv2D(horizon, 1, kernel_initializer="zeros", dtype="float32",
                      name=f"{name}{HEAD_SUFFIX}")(x)  # (…, H, W, horizon)
    if centre_mask is not None:  # model.centre_layers: the layers add no window-wide level
        x = MaskedCentring(name=f"{name}_centring")([x, centre_mask])
    if linear is not None:
        direct = layers.Conv2D(horizon, 1, kernel_initializer="zeros", dtype="float32",
                               name=LINEAR_HEAD)(linear)
        x = layers.Add(dtype="float32", name=f"{name}_linear_sum")([x, direct])
    x = layers.Rescaling(value_scale, dtype="float32", name=f"{residual}_scale" if per_year else residual)(x)
    if per_year:
        x = UnfoldYears(years, dtype="float32", name=residual)(x)  # (batch, years, H, W, horizon)
    if base is not None:
        x = layers.Add(dtype="float32", name=name)([base, x])
    return x
