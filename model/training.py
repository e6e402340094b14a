"""Compiling, precision and loading: how the rest of the project trains and restores the network."""

from __future__ import annotations

import os

import keras

from model.losses import MaskedRMSE, make_auxiliary_losses, make_loss
from model.network import HEAD_SUFFIX, AuxiliaryOutputsModel

DECAYED_WEIGHTS = ("kernel", "recurrent_kernel")  # the weights weight decay applies to (outside the heads)


def decayed_variables(model: keras.Model) -> list:
    """The variables weight decay shrinks: convolution, dense and ConvLSTM kernels of every layer except
    the output heads (``<output>_head``, zero at initialisation). Biases, normalisation weights and the
    heads are left alone."""
    heads = {id(variable) for layer in model.layers if layer.name.endswith(HEAD_SUFFIX)
             for variable in layer.trainable_variables}
    return [variable for variable in model.trainable_variables
            if variable.name in DECAYED_WEIGHTS and id(variable) not in heads]


def make_optimizer(model: keras.Model, learning_rate, weight_decay: float) -> keras.optimizers.Optimizer:
    """AdamW with decoupled weight decay on ``decayed_variables`` only; call before ``compile_model``.

    Decoupled decay (w ← w − lr·weight_decay·w each step, apart from the adaptive gradient step) cannot
    collapse the network the way an L2 penalty under Adam did: Adam normalised the penalty's gradient to a
    step of about one learning rate towards zero for every kernel, whatever its size, while the
    zero-initialised head still kept the data's gradient from the layers below it.

    Args:
      model: the network (its variables must exist).
      learning_rate: a number or a Keras schedule.
      weight_decay: 0 = plain Adam updates.
    """
    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    decayed = {id(variable) for variable in decayed_variables(model)}
    optimizer.exclude_from_weight_decay(
        var_list=[variable for variable in model.trainable_variables if id(variable) not in decayed])
    return optimizer


def precision_policy(setting: bool | str, capabilities: list[tuple[int, int]]) -> str:
    """The Keras dtype policy for ``train.mixed_precision`` on GPUs of these compute capabilities.

    ``auto`` or ``true``: ``mixed_bfloat16`` when every GPU has compute capability ≥ 8 (Ampere and
    later), ``mixed_float16`` (with loss scaling) on older GPUs, ``float32`` without a GPU.
    ``float16`` / ``bfloat16`` force ``mixed_float16`` / ``mixed_bfloat16`` (valid on a CPU, for tests);
    ``false`` is ``float32``.

    Args:
      setting: ``train.mixed_precision``.
      capabilities: (major, minor) per visible GPU; empty on a CPU-only machine.
    """
    if setting is False:
        return "float32"
    if setting in ("float16", "bfloat16"):
        return f"mixed_{setting}"
    if setting is True or setting == "auto":
        if not capabilities:
            return "float32"
        return "mixed_bfloat16" if min(capabilities) >= (8, 0) else "mixed_float16"
    raise ValueError(f"train.mixed_precision must be auto, true, false, float16 or bfloat16, received "
                     f"{setting!r}")


def gpu_capabilities() -> list[tuple[int, int]]:
    """(major, minor) compute capability of every visible GPU, asked of the Keras backend's framework
    ((0, 0) where it does not say)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        capabilities = []
        for device in jax.devices():
            if device.platform != "gpu":
                continue
            major, _, minor = str(getattr(device, "compute_capability", "0.0")).partition(".")
            capabilities.append((int(major or 0), int(minor or 0)))
        return capabilities
    if backend == "torch":
        import torch

        return [tuple(torch.cuda.get_device_capability(index)) for index in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0))
            for gpu in tf.config.list_physical_devices("GPU")]


def set_precision(config, capabilities: list[tuple[int, int]] | None = None) -> str:
    """Set Keras' global dtype policy from ``config.train.mixed_precision``; call before ``build_model``.

    Under a mixed policy layers compute in float16/bfloat16 and keep float32 variables; the output
    layers, the loss and the metric stay float32, and for ``mixed_float16`` ``compile`` wraps the
    optimizer in a loss-scale optimizer (bfloat16 has float32's range and needs none). See
    ``precision_policy`` for the choice.

    Args:
      capabilities: the GPUs' compute capabilities; None asks the backend (``gpu_capabilities``).

    Returns:
      The policy name: ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.
    """
    if capabilities is None:
        capabilities = gpu_capabilities()
    policy = precision_policy(config.train.mixed_precision, capabilities)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def compile_model(model: keras.Model, config, optimizer) -> keras.Model:
    """Compile with the masked loss of ``config.model``, the ``masked_rmse`` metric and XLA if configured.

    Weight decay is the optimizer's (``make_optimizer``): the loss has no penalty term. For an
    ``AuxiliaryOutputsModel`` (``model.aux_weight > 0``) the auxiliary losses are attached to the model:
    each head's loss against targets pooled by its head's factor, times ``aux_weight``.

    Args:
      model: from ``build_model`` or ``load_model``.
      config: the run's ``Config``.
      optimizer: a Keras optimizer.

    Returns:
      The same model, compiled.
    """
    model.compile(optimizer=optimizer, loss=make_loss(config), metrics=[MaskedRMSE()],
                  jit_compile=config.train.jit_compile)
    # Build the optimizer's slots now: created lazily inside the first training step they would make
    # TensorFlow trace that step twice (once to create the variables), doubling its start-up time.
    model.optimizer.build(model.trainable_variables)
    if isinstance(model, AuxiliaryOutputsModel):
        # Outputs after the forecast are named auxiliary_scale<s>[_conv]: targets pooled by 2**s.
        scales = [int(name.rsplit("auxiliary_scale", 1)[1].split("_")[0]) for name in model.output_names[1:]]
        pools = [2 ** scale for scale in scales]
        model.auxiliary_losses = make_auxiliary_losses(config, pools)
        model.auxiliary_weight = config.model.aux_weight
    return model


def initialise_from(model: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Copy the weights of another run's ``.keras`` file into ``model`` (transfer: pre-training starts there).

    Raises:
      ValueError: the file cannot be read, or its weights differ in number or shape from ``model``'s
        (the first mismatch is named).
    """
    try:
        source = load_model(path)
    except Exception as error:  # noqa: BLE001 (any unreadable file gets the same one-line error)
        raise ValueError(f"cannot read {path} as a Keras model ({type(error).__name__}); expected a .keras "
                         f"file written by run.py") from None
    ours, theirs = model.weights, source.weights
    for index, variable in enumerate(ours):
        other = theirs[index] if index < len(theirs) else None
        if other is None or tuple(other.shape) != tuple(variable.shape):
            found = "nothing" if other is None else f"{tuple(other.shape)} ({other.path})"
            raise ValueError(f"{path} does not fit this network: weight {variable.path} has shape "
                             f"{tuple(variable.shape)} here but {found} there; model.*, sequence.* and the input "
                             f"channels must match the run that wrote it")
    if len(theirs) != len(ours):
        raise ValueError(f"{path} has {len(theirs)} weights, this network {len(ours)}; model.*, sequence.* "
                         f"and the input channels must match the run that wrote it")
    model.set_weights(source.get_weights())
    return model


def load_model(path: str | os.PathLike, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` file written by ``model.save`` (the custom layers register on ``import model``).

    Args:
      path: the ``.keras`` file.
      compile: restore the saved compile state too (else call ``compile_model`` before training).
    """
    return keras.models.load_model(path, compile=compile)
