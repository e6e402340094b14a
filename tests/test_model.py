"""Tests of the network (model/): shapes, ConvLSTM equivalence with Keras, saving, budgets, training paths.

Tiny shapes throughout: 32-pixel windows, 2–3 years, batch 2.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import model as network  # noqa: E402
from model.convlstm import ConvLSTM  # noqa: E402
from phenocast.config import load_config  # noqa: E402

BATCH = 2
TINY = [  # 32-pixel windows (16 + 2·8), 3 years, a small network
    "tiling.centre=16", "tiling.margin=8", "sequence.years=3",
    "model.filters=4", "model.growth_rate=4", "model.layers_per_block=[1, 1, 1]",
    "model.lstm_filters=[4, 6, 8]",
    "model.aspp_filters=8", "model.dilation_rates=[2, 3]", "model.decoder_filters=4",
]

SMALLEST = ["sequence.years=2", "model.lstm_filters=[4, 6]", "model.layers_per_block=[1, 1]"]  # 2 scales


def tiny_config(*overrides: str):
    return load_config("configs/sample.yaml", [*TINY, *overrides])


def tiny_batch(config, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs and packed targets (targets, 80 % valid mask) shaped for ``config``."""
    rng = np.random.default_rng(seed)
    years, window, horizon = config.sequence.years, config.window, config.predict.horizon
    x = rng.normal(0, 0.1, (BATCH, years, window, window, config.input_channels)).astype(np.float32)
    inside = config.channel_slice("inside")
    if inside is not None:  # as at a zone's edge: the last quarter of the columns is reflection padding
        x[..., inside[0]] = 1.0
        x[..., 3 * window // 4:, inside[0]] = 0.0
    lead = (BATCH, years) if config.model.per_year_outputs else (BATCH,)
    target = rng.normal(0, 0.1, (*lead, window, window, horizon)).astype(np.float32)
    mask = (rng.random(target.shape) < 0.8).astype(np.float32)
    return x, np.concatenate([target, mask], axis=-1)


@pytest.fixture(autouse=True)
def float32_policy():
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_input_channels():
    bare = ["model.base=climatology", "model.masked_pooling=false"]
    assert load_config("configs/default.yaml", bare).input_channels == 24
    assert load_config("configs/default.yaml", [*bare, "sequence.calendar=true"]).input_channels == 26
    assert load_config("configs/default.yaml", [*bare, "sequence.context=false"]).input_channels == 12
    assert load_config("configs/default.yaml", [
        *bare, "sequence.offsets=[0, -1]", "sequence.context=false", "sequence.calendar=true"]).input_channels == 4
    config = load_config("configs/default.yaml")  # + 3 base channels (one per lead) + the inside mask
    assert config.input_channels == 28
    assert config.channel_slice("base") == (24, 27) and config.channel_slice("inside") == (27, 28)
    assert load_config("configs/default.yaml", ["model.base=climatology"]).channel_slice("base") is None


@pytest.mark.parametrize("overrides", [
    [],
    ["model.per_year_outputs=false"],
    ["model.upsampling=depth_to_space", "model.image_pooling=false", "model.se_ratio=0"],
    ["sequence.years=2", "sequence.calendar=true", "model.unroll=false", "model.activation=gelu"],
    ["model.lstm_filters=[4, 6]", "model.layers_per_block=[2, 0]", "model.dilation_rates=[1]"],
    ["model.convlstm=keras", "model.per_year_outputs=false"],
], ids=["default", "last_year_only", "depth_to_space", "two_years_loop", "two_scales", "stock_convlstm"])
def test_output_shapes(overrides):
    config = tiny_config(*overrides)
    built = network.build_model(config)
    x, _ = tiny_batch(config)
    years, window, horizon = config.sequence.years, config.window, config.predict.horizon
    assert tuple(built.input.shape) == (None, years, window, window, config.input_channels)
    output = built(x)
    expected = (BATCH, years, window, window, horizon) if config.model.per_year_outputs else (
        BATCH, window, window, horizon)
    assert tuple(output.shape) == expected
    assert output.dtype == tf.float32
    assert built.output_names == [network.network.FORECAST]
    assert np.isfinite(output.numpy()).all()


def test_per_year_outputs_are_causal():
    """Step k's prediction depends on years 0..k only: changing the last year leaves earlier steps alone."""
    config = tiny_config()
    built = network.build_model(config)
    x, _ = tiny_batch(config)
    changed = x.copy()
    changed[:, -1] += 1.0
    before, after = built(x).numpy(), built(changed).numpy()
    np.testing.assert_allclose(before[:, :-1], after[:, :-1], atol=1e-6)
    assert np.abs(before[:, -1] - after[:, -1]).max() > 1e-4


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("unroll", [True, False])
def test_convlstm_matches_keras_convlstm2d(return_sequences, unroll):
    """Weights copied from keras.layers.ConvLSTM2D give the same outputs (≤ 1e-5) and the same gradients."""
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(BATCH, 3, 32, 32, 5)).astype(np.float32))
    stock = keras.layers.ConvLSTM2D(6, 3, padding="same", return_sequences=return_sequences)
    fused = ConvLSTM(6, 3, return_sequences=return_sequences, unroll=unroll)
    stock(x)
    fused(x)
    weights = [rng.normal(0, 0.3, w.shape).astype(np.float32) for w in stock.get_weights()]
    stock.set_weights(weights)
    fused.set_weights(weights)

    def outputs_and_gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            output = layer(x)
            loss = tf.reduce_sum(tf.sin(3.0 * output))
        return output, tape.gradient(loss, [x, *layer.trainable_weights])

    expected, expected_gradients = outputs_and_gradients(stock)
    output, gradients = outputs_and_gradients(fused)
    np.testing.assert_allclose(output.numpy(), expected.numpy(), atol=1e-5)
    for gradient, reference in zip(gradients, expected_gradients):
        np.testing.assert_allclose(gradient.numpy(), reference.numpy(), atol=1e-4 * np.abs(reference).max())

    # The folded, year-major layout the network uses gives the same states.
    folded = ConvLSTM(6, 3, years=3, return_sequences=return_sequences, unroll=unroll)
    folded_input = tf.reshape(tf.transpose(x, [1, 0, 2, 3, 4]), (-1, 32, 32, 5))  # (years·batch, H, W, C)
    folded(folded_input)
    folded.set_weights(weights)
    result = folded(folded_input)
    if return_sequences:
        result = tf.transpose(tf.reshape(result, (3, BATCH, 32, 32, 6)), [1, 0, 2, 3, 4])
    np.testing.assert_allclose(result.numpy(), expected.numpy(), atol=1e-5)


def test_convlstm_config_round_trip():
    layer = ConvLSTM(5, 3, years=4, activation="tanh", recurrent_activation="hard_sigmoid", unroll=False,
                     kernel_regularizer=keras.regularizers.L2(1e-3), name="lstm")
    clone = ConvLSTM.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="recurrent_activation"):
        ConvLSTM(5, 3, recurrent_activation="softplus")


@pytest.mark.parametrize("overrides", [[], ["model.aux_weight=0.3"], ["model.centre_layers=true"]],
                         ids=["plain", "auxiliary", "centred"])
def test_save_load_round_trip(tmp_path, overrides):
    config = tiny_config(*overrides)
    built = network.build_model(config)
    network.compile_model(built, config, keras.optimizers.Adam(1e-3))  # the loss and metric are saved too
    x, _ = tiny_batch(config)
    path = tmp_path / "model.keras"
    built.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: every class is registered
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), built.predict(x, verbose=0))
    np.testing.assert_array_equal(network.load_model(path)(x).numpy(), built(x).numpy())


def test_default_model_within_budget():
    config = load_config("configs/default.yaml")
    built = network.build_model(config)
    assert built.count_params() <= 2_000_000
    assert tuple(built.output.shape) == (None, 10, 288, 288, 3)


def test_sample_model_is_small():  # trains on 2 CPU cores in minutes: at most a fifth of the default's size
    assert network.build_model(load_config("configs/sample.yaml")).count_params() <= 200_000


def test_weight_decay_shrinks_only_kernels_below_the_head():
    config = tiny_config("model.aux_weight=0.5")
    built = network.build_model(config)
    assert not built.losses  # no penalty term in the loss: the decay is the optimizer's
    decayed = network.decayed_variables(built)
    assert {variable.name for variable in decayed} == {"kernel", "recurrent_kernel"}
    heads = [layer for layer in built.layers if layer.name.endswith("_head")]
    assert sorted(layer.name for layer in heads) == ["auxiliary_scale1_head", "auxiliary_scale2_head",
                                                     "forecast_head", "forecast_linear_head"]
    spared = {id(variable) for layer in heads for variable in layer.trainable_variables}
    assert not spared & {id(variable) for variable in decayed}
    # with every target masked the data gives no gradient: only the decay moves the weights, by exactly
    # lr·weight_decay per step on the decayed kernels, and nothing else moves (the head stays at zero)
    rate, decay, steps = 1e-2, 0.5, 5
    network.compile_model(built, config, network.make_optimizer(built, rate, decay))
    before = {variable.path: variable.numpy() for variable in built.trainable_variables}
    x, y = tiny_batch(config)
    y[..., config.predict.horizon:] = 0
    for _ in range(steps):
        built.train_on_batch(x, y)
    shrunk = {id(variable) for variable in decayed}
    for variable in built.trainable_variables:
        factor = (1 - rate * decay) ** steps if id(variable) in shrunk else 1.0
        np.testing.assert_allclose(variable.numpy(), factor * before[variable.path], rtol=1e-5, atol=1e-7,
                                   err_msg=variable.path)
    assert not np.any(built.get_layer("forecast_head").kernel.numpy())


@pytest.mark.parametrize("per_year", [True, False], ids=["per_year", "last_year"])
def test_the_linear_path_maps_the_scaled_inputs_to_the_forecast(per_year):
    """``model.linear_path``: a zero-initialised 1×1 convolution from the scaled inputs, kept out of weight
    decay; with its kernel picking the origin month's channel the forecast is the base plus that
    difference (÷ value_scale at the input, × value_scale at the output), whatever the layers hold."""
    config = tiny_config("model.linear_path=zero", f"model.per_year_outputs={str(per_year).lower()}")
    built = network.build_model(config)
    linear = built.get_layer("forecast_linear_head")
    assert not np.any(linear.kernel.numpy())
    assert not {id(variable) for variable in linear.trainable_variables} & {
        id(variable) for variable in network.decayed_variables(built)}
    x, _ = tiny_batch(config)
    base_channels = slice(*config.channel_slice("base"))
    origin = config.channel_slice("months")[0] + config.sequence.offsets.index(0)
    base = x[..., base_channels] if per_year else x[:, -1, ..., base_channels]
    np.testing.assert_allclose(np.asarray(built(x)), base, atol=1e-6)
    kernel = np.zeros(linear.kernel.shape, np.float32)
    kernel[0, 0, origin, :] = 1.0
    linear.kernel.assign(kernel)
    moved = x[..., origin:origin + 1] if per_year else x[:, -1, ..., origin:origin + 1]
    np.testing.assert_allclose(np.asarray(built(x)), base + moved, atol=1e-5)


@pytest.mark.parametrize("per_year", [True, False], ids=["per_year", "last_year"])
def test_centred_layers_add_no_level_to_a_window(per_year):
    """``model.centre_layers``: the layers' part of the forecast has mean 0 over each window's pixels inside
    the zone, per lead (so only the base and the linear path set the window's level); without it a head
    with a bias shifts the whole window."""
    means = {}
    for centred in (True, False):
        config = tiny_config(f"model.centre_layers={str(centred).lower()}", "model.linear_path=zero",
                             f"model.per_year_outputs={str(per_year).lower()}")
        built = network.build_model(config)
        head = built.get_layer("forecast_head")
        rng = np.random.default_rng(1)
        head.kernel.assign(rng.normal(0, 0.5, head.kernel.shape).astype(np.float32))
        head.bias.assign(np.full(head.bias.shape, 0.3, np.float32))
        x, _ = tiny_batch(config)
        base_channels = slice(*config.channel_slice("base"))
        base = x[..., base_channels] if per_year else x[:, -1, ..., base_channels]
        layers_part = np.asarray(built(x)) - base
        inside = x[..., config.channel_slice("inside")[0]]
        inside = (inside if per_year else inside[:, -1])[..., None]  # (batch[, years], H, W, 1)
        scale = config.model.value_scale  # the head's output is in units of value_scale
        assert np.abs(layers_part).max() > 0.1 * scale
        means[centred] = (layers_part * inside).sum(axis=(-3, -2)) / inside.sum(axis=(-3, -2))
    np.testing.assert_allclose(means[True], 0.0, atol=1e-3 * scale)
    assert np.abs(means[False]).min() > 0.1 * scale


def test_centred_layers_need_the_inside_channel():
    with pytest.raises(ValueError, match="model.centre_layers: true needs model.masked_pooling: true"):
        tiny_config("model.centre_layers=true", "model.masked_pooling=false")


def test_training_step_and_metric():
    config = tiny_config(*SMALLEST, "model.unroll=false")
    built = network.build_model(config)
    network.compile_model(built, config, keras.optimizers.Adam(1e-3))
    x, y = tiny_batch(config)
    history = built.fit(x, y, batch_size=BATCH, epochs=2, validation_data=(x, y), verbose=0)
    assert {"loss", "masked_rmse", "val_loss", "val_masked_rmse"} <= set(history.history)
    assert all(np.isfinite(value) for values in history.history.values() for value in values)


def test_auxiliary_heads_train_and_stay_out_of_predictions():
    config = tiny_config(*SMALLEST, "model.aux_weight=0.5")
    built = network.build_model(config)
    assert isinstance(built, network.AuxiliaryOutputsModel) and len(built.outputs) == 2
    network.compile_model(built, config, keras.optimizers.SGD(0.0))  # rate 0: the weights stay put
    (auxiliary_loss,) = built.auxiliary_losses
    assert auxiliary_loss.pool == 2
    x, y = tiny_batch(config)
    forecast = built(x)  # inference calls: the forecast only
    assert tuple(forecast.shape) == (BATCH, 2, 32, 32, 3)
    training_outputs = built(x, training=True)
    assert [tuple(output.shape) for output in training_outputs] == [
        (BATCH, 2, 32, 32, 3), (BATCH, 2, 16, 16, 3)]
    assert tuple(built.predict(x, verbose=0).shape) == (BATCH, 2, 32, 32, 3)
    # The training loss is the forecast loss + aux_weight × the auxiliary loss + the L2 penalty.
    expected = (float(network.make_loss(config)(y, forecast))
                + 0.5 * float(auxiliary_loss(y, training_outputs[1])) + float(sum(built.losses)))
    assert built.train_on_batch(x, y, return_dict=True)["loss"] == pytest.approx(expected, rel=1e-5)


def test_xla_matches_default_compilation():
    """A training step compiled with XLA computes the same loss (SGD at rate 0 keeps the weights)."""
    config = tiny_config(*SMALLEST)
    built = network.build_model(config)
    x, y = tiny_batch(config)
    network.compile_model(built, config, keras.optimizers.SGD(0.0))
    reference = built.train_on_batch(x, y, return_dict=True)
    network.compile_model(built, tiny_config(*SMALLEST, "train.jit_compile=true"), keras.optimizers.SGD(0.0))
    compiled = built.train_on_batch(x, y, return_dict=True)
    for key in ("loss", "masked_rmse"):
        assert np.isfinite(compiled[key]) and compiled[key] == pytest.approx(reference[key], rel=1e-4)


@pytest.mark.parametrize("setting, capabilities, policy", [
    ("auto", [], "float32"), (True, [], "float32"), (False, [(9, 0)], "float32"),
    ("auto", [(8, 0)], "mixed_bfloat16"), (True, [(9, 0), (8, 6)], "mixed_bfloat16"),
    ("auto", [(7, 5)], "mixed_float16"), ("auto", [(8, 0), (7, 0)], "mixed_float16"),
    ("float16", [], "mixed_float16"), ("bfloat16", [], "mixed_bfloat16"), ("float16", [(9, 0)], "mixed_float16"),
])
def test_precision_policy_follows_the_setting_and_the_gpus(setting, capabilities, policy):
    assert network.precision_policy(setting, capabilities) == policy


def test_auto_precision_is_float32_on_this_cpu():
    assert not tf.config.list_physical_devices("GPU")
    assert network.set_precision(tiny_config("train.mixed_precision=auto")) == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize("precision, compute", [("float16", "float16"), ("bfloat16", "bfloat16")])
def test_forced_mixed_precision_outputs_float32_and_trains(precision: str, compute: str):
    config = tiny_config(*SMALLEST, f"train.mixed_precision={precision}")
    assert network.set_precision(config) == f"mixed_{precision}"
    built = network.build_model(config)
    lstm = built.get_layer("scale0_convlstm")
    assert lstm.compute_dtype == compute and lstm.kernel.dtype == "float32"
    network.compile_model(built, config, keras.optimizers.Adam(1e-3))
    # loss scaling for float16 only: bfloat16 has float32's exponent range
    assert isinstance(built.optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "float16")
    x, y = tiny_batch(config)
    assert built(x).dtype == tf.float32
    losses = [built.train_on_batch(x, y, return_dict=True)["loss"] for _ in range(3)]
    assert all(np.isfinite(loss) for loss in losses), losses
    assert built(x).dtype == tf.float32


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("overrides", [[], ["model.per_year_outputs=false", "model.advection=true"],
                                       ["model.linear_path=zero"]],
                         ids=["per_year", "last_year_advection", "per_year_linear"])
def test_an_untrained_model_is_its_base_exactly_under_mixed_precision(policy, overrides):
    """The base and inside-mask channels stay float32 from the input to the final Add: a layer of the
    mixed policy would round them to 8 (bfloat16) or 11 (float16) significant bits first."""
    keras.mixed_precision.set_global_policy(policy)
    config = tiny_config(*overrides)
    built = network.build_model(config)
    x, _ = tiny_batch(config)
    where = slice(*config.channel_slice("base"))
    x[..., where] = np.random.default_rng(1).normal(0, 0.07, x[..., where].shape)  # NDVI differences
    base = x[..., where] if config.model.per_year_outputs else x[:, -1, ..., where]
    forecast = built(x)
    assert forecast.dtype == tf.float32
    np.testing.assert_allclose(np.asarray(forecast), base, rtol=0, atol=1e-6)


def test_profile_batches_reach_the_tensorboard_callback(tmp_path):
    from phenocast.training import tensorboard

    profiled = tensorboard(tmp_path / "profiled", tiny_config("train.profile_batches=[2, 4]").train)
    assert (profiled._start_batch, profiled._stop_batch) == (2, 4)
    plain = tensorboard(tmp_path / "plain", tiny_config().train)
    assert (plain._start_batch, plain._stop_batch) == (0, 0)
