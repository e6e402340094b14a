"""The phenocast network: ConvLSTM over the years between a DenseNet encoder and a DeepLabV3+ decoder.

Public API, on any Keras 3 backend (``KERAS_BACKEND=tensorflow|jax|torch``): the network, its layers, the
losses, the metric, ``flops`` and ``health`` are written on ``keras.ops`` and import no TensorFlow. Only the
fused ConvLSTM (``model.convlstm: fused``) needs TensorFlow; under that backend it is imported with the
package, under the others never (a config that asks for it is an error there). The pipeline around the
network (``phenocast/``: tf.data, TFRecords, tf.distribute) stays TensorFlow.

- ``build_model(config) -> keras.Model``: input ``(batch, years, window, window, config.input_channels)``
  (month channels, their context versions, sin/cos calendar, the seasonal curve, the EMA: see
  ``phenocast.config.Config.input_channels``); output
  ``forecast`` (float32, also under mixed precision): ``(batch, years, window, window, horizon)`` when
  ``model.per_year_outputs`` (step k predicts the horizon after year k's origin; the last step is the
  forecast), else ``(batch, window, window, horizon)``. Every size comes from ``config.model``. Its first
  layer ``input_scale`` (``InputScaling``) brings every channel to unit scale (``input_scaling``: NDVI
  differences ÷ ``model.value_scale``, absolute channels standardised with statistics of training samples
  that ``set_input_statistics`` writes into the model, so they are saved and loaded with it).
  With ``model.aux_weight > 0`` the model is an ``AuxiliaryOutputsModel``: its auxiliary heads (one per
  decoder stage above full resolution) are only returned by training calls and only used by its loss;
  ``model(x)``, ``predict`` and ``evaluate`` see just the forecast tensor, as for the plain model.
- ``linear_path_features(model)`` and ``set_linear_path(model, kernel, bias, value_scale)``: with
  ``model.linear_path`` the forecast adds a 1×1 convolution of the scaled inputs (and advection channels)
  beside the head; the first gives those features as a model, the second sets the map (the pipeline fits
  it by ridge regression, ``phenocast.ridge``).
- ``make_loss(config)``: ``loss(y_true, y_pred)`` with ``y_true = concat([targets, mask], -1)``
  (``(…, 2·horizon)``): masked ``sqrt_sqrt_mse`` / ``rmse`` / ``mse`` per sample, year-steps weighted, then
  the batch mean; masked targets (even NaN) never reach the value or the gradients.
- ``make_optimizer(model, learning_rate, weight_decay)``: AdamW whose decoupled weight decay shrinks only
  ``decayed_variables(model)`` (kernels outside the zero-initialised output heads).
- ``compile_model(model, config, optimizer)``: compiles with ``make_loss``, the ``masked_rmse`` metric
  (logged as ``val_masked_rmse`` on validation; RMSE over valid pixels of the last year-step) and
  ``jit_compile=train.jit_compile``; attaches the auxiliary losses (``aux_weight``) if the model has heads.
- ``set_precision(config)``: global ``float32``, ``mixed_float16`` or ``mixed_bfloat16`` policy from
  ``train.mixed_precision`` (``precision_policy``: auto = bfloat16 on GPUs of compute capability ≥ 8,
  float16 on older ones, float32 on a CPU); call before ``build_model``.
- ``load_model(path)``: ``keras.models.load_model`` (works directly too once ``model`` is imported: every
  custom class is registered under the ``phenocast`` package). Saving: ``model.save("x.keras")``.
- ``forecast_output(outputs)``: the forecast of a model's outputs (identity for single-output models).
- ``ConvLSTM``: the fused ConvLSTM layer (``model/convlstm.py``, TensorFlow only, imported on first use),
  weight-compatible with ``keras.layers.ConvLSTM2D``; ``model.convlstm: keras`` builds the same network with
  the stock layer, on any backend.

``python -m model --config configs/default.yaml [--set model.filters=16 …]`` prints the summary.

Importing this package sets ``TF_CPU_ALLOCATOR_USE_BFC=true`` unless the variable is already set (before
TensorFlow starts): TensorFlow's default CPU allocator returns large buffers to the system and takes a page
fault on every page of every new activation, which made element-wise ops run at ~5 GB/s instead of ~20 GB/s
on the development machine; the BFC allocator reuses its memory.
"""

import os

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import keras  # noqa: E402

from model.losses import MaskedForecastLoss, MaskedRMSE, make_loss  # noqa: E402
from model.network import (  # noqa: E402
    AuxiliaryOutputsModel,
    FoldYears,
    InputScaling,
    UnfoldYears,
    build_model,
    forecast_output,
    input_scaling,
    linear_path_features,
    set_input_statistics,
    set_linear_path,
)
from model.training import (  # noqa: E402
    compile_model,
    decayed_variables,
    initialise_from,
    load_model,
    make_optimizer,
    precision_policy,
    set_precision,
)

if keras.backend.backend() == "tensorflow":  # register the fused layer, so saved fused models load
    from model.convlstm import ConvLSTM  # noqa: E402, F401

__all__ = [
    "AuxiliaryOutputsModel", "ConvLSTM", "FoldYears", "InputScaling", "MaskedForecastLoss", "MaskedRMSE",
    "UnfoldYears", "build_model", "compile_model", "decayed_variables", "forecast_output", "initialise_from",
    "input_scaling", "linear_path_features", "load_model", "make_loss", "make_optimizer", "precision_policy",
    "set_input_statistics", "set_linear_path", "set_precision",
]


def __getattr__(name: str):
    """``model.ConvLSTM`` under another backend than TensorFlow: imported (with TensorFlow) when asked for."""
    if name == "ConvLSTM":
        from model.convlstm import ConvLSTM

        return ConvLSTM
    raise AttributeError(f"module 'model' has no attribute {name!r}")
