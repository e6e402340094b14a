"""The forecasting network: per-year DenseNet encoder, ConvLSTMs over the years per scale, DeepLabV3+ decoder.

Data flow (default config: window 288, 10 years, 24 channels, 3 scales, horizon 3)::

    input (batch, years, 288, 288, 24)
      fold_years                                  (years·batch, 288, 288, 24)   years into the batch axis
      stem conv                                   (years·batch, 288, 288, filters)
      per scale s (288, 144, 72):
        [2×2 average pool if s > 0] → dense block → squeeze-excite   (years·batch, H_s, W_s, C_s)
        ConvLSTM over the years, lstm_filters[s]  (years·batch, H_s, W_s, F_s), or the last year (batch, …)
      ASPP on the coarsest ConvLSTM states        (…, 72, 72, aspp_filters)
      per finer scale: upsample ×2, concatenate that scale's ConvLSTM states, conv → decoder_filters
      forecast 1×1 conv → horizon, float32        (…, 288, 288, horizon)
      unfold_years (per_year_outputs)             (batch, years, 288, 288, horizon)

Every year-step is encoded independently (one batched convolution per layer); the ConvLSTMs carry
information across years; with ``per_year_outputs`` the decoder runs on every year-step's states (step k
predicts the horizon after year k's origin, the last step is the forecast), else only on the last one.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from model import blocks
from model.convlstm import ConvLSTM

FORECAST = "forecast"  # name of the forecast output layer


@keras.saving.register_keras_serializable(package="phenocast")
class FoldYears(layers.Layer):
    """``(batch, years, H, W, C)`` -> year-major ``(years·batch, H, W, C)``, for per-year layers."""

    def call(self, inputs):
        shape = tf.shape(inputs)
        return tf.reshape(tf.transpose(inputs, [1, 0, 2, 3, 4]), tf.concat([[-1], shape[2:]], axis=0))

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
        shape = tf.shape(inputs)
        unfolded = tf.reshape(inputs, tf.concat([[self.years, -1], shape[1:]], axis=0))
        return tf.transpose(unfolded, [1, 0, 2, 3, 4])

    def compute_output_shape(self, input_shape):
        folded = input_shape[0]
        return (None if folded is None else folded // self.years, self.years, *input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "years": self.years}


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


def _convlstm(x, filters: int, years: int, return_sequences: bool, config, regularizer, name: str):
    """ConvLSTM over folded years ``(years·batch, H, W, C)`` with the configured implementation."""
    model = config.model
    if model.convlstm == "fused":
        return ConvLSTM(filters, model.kernel_size, years=years, activation=model.cell_activation,
                        recurrent_activation=model.recurrent_activation, return_sequences=return_sequences,
                        unroll=model.unroll, kernel_regularizer=regularizer,
                        recurrent_regularizer=regularizer, name=name)(x)
    # Stock Keras layer, for comparison: it wants (batch, years, H, W, C).
    x = UnfoldYears(years, name=f"{name}_unfold")(x)
    x = layers.ConvLSTM2D(filters, model.kernel_size, padding="same", activation=model.cell_activation,
                          recurrent_activation=model.recurrent_activation, return_sequences=return_sequences,
                          unroll=model.unroll, kernel_regularizer=regularizer,
                          recurrent_regularizer=regularizer, name=name)(x)
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
    regularizer = blocks.regularizer_for(model.l2)
    size, activation = model.kernel_size, model.activation

    inputs = keras.Input((years, window, window, config.input_channels), name="sequence")
    # NDVI differences are ~0.05: bring them to unit scale for the layers (and back at the output)
    x = layers.Rescaling(1.0 / model.value_scale, name="input_scale")(inputs)
    x = FoldYears(name="fold_years")(x)  # (years·batch, window, window, channels)
    x = blocks.conv_block(x, model.filters, size, activation, regularizer, "stem_conv")
    states = []
    for scale in range(scales):
        name = f"scale{scale}"
        if scale > 0:
            x = blocks.downsample(x, f"{name}_down")  # (years·batch, H/2, W/2, C)
        x = blocks.dense_block(x, model.layers_per_block[scale], model.growth_rate, size, activation,
                               regularizer, f"{name}_dense")
        if model.se_ratio > 0:
            x = blocks.squeeze_excite(x, model.se_ratio, activation, regularizer, f"{name}_se")
        # (years·batch, H_s, W_s, F_s) with per_year_outputs, else the last year's (batch, H_s, W_s, F_s)
        states.append(_convlstm(x, model.lstm_filters[scale], years, per_year, config, regularizer,
                                f"{name}_convlstm"))

    x = blocks.aspp(states[-1], model.aspp_filters, size, model.dilation_rates, model.image_pooling,
                    activation, regularizer, "aspp")
    auxiliary = []
    for scale in reversed(range(scales - 1)):
        if model.aux_weight > 0:
            auxiliary.append(_output_head(x, horizon, years, per_year, regularizer, model.value_scale,
                                          f"auxiliary_scale{scale + 1}"))
        x = blocks.decoder_stage(x, states[scale], model.decoder_filters, size, model.upsampling, activation,
                                 regularizer, f"decoder_scale{scale}")
    forecast = _output_head(x, horizon, years, per_year, regularizer, model.value_scale, FORECAST)
    if auxiliary:
        return AuxiliaryOutputsModel(inputs, [forecast, *auxiliary], name="phenocast")
    return keras.Model(inputs, forecast, name="phenocast")


def _output_head(x, horizon: int, years: int, per_year: bool, regularizer, value_scale: float, name: str):
    """Linear float32 1×1 convolution to ``horizon`` channels, rescaled to NDVI differences (× value_scale),
    unfolded to ``(batch, years, …)`` if per year.

    1×1 as DeepLabV3+'s classifier: the decoder's last 3×3 convolution already mixes neighbours.
    """
    x = layers.Conv2D(horizon, 1, kernel_regularizer=regularizer, dtype="float32",
                      name=f"{name}_conv")(x)  # (…, H, W, horizon)
    x = layers.Rescaling(value_scale, dtype="float32", name=f"{name}_scale" if per_year else name)(x)
    if per_year:
        x = UnfoldYears(years, dtype="float32", name=name)(x)  # (batch, years, H, W, horizon)
    return x
