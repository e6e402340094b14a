"""Training health: kernel sizes per layer group, gradient norm, departure from the base, collapse warnings.

Tiny shapes (32-pixel windows, 3 years, batch 2), as tests/test_model.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from test_model import tiny_batch, tiny_config  # noqa: E402

import model as network  # noqa: E402
from model.health import collapse_reasons, departure, head_groups, kernel_rms, layer_group  # noqa: E402
from phenocast.training import HealthProbes, TrainingHealth  # noqa: E402


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)


def compiled(config):
    built = network.build_model(config)
    network.compile_model(built, config, network.make_optimizer(built, 1e-3, 0.0))
    return built


def health_callback(built, config, tmp_path, messages: list[str]) -> TrainingHealth:
    x, y = tiny_batch(config)
    callback = TrainingHealth("stage", tmp_path, HealthProbes(train=(x, y), validation=(x, y), base_rmse=0.05),
                              config.channel_slice("base"), fresh=True, log=messages.append)
    callback.set_model(built)
    callback.on_train_begin()
    return callback


def test_every_kernel_belongs_to_a_group():
    built = network.build_model(tiny_config("model.aux_weight=0.5"))
    for layer in built.layers:
        if any(variable.name in ("kernel", "recurrent_kernel") for variable in layer.trainable_variables):
            assert layer_group(layer.name) is not None, layer.name
    assert head_groups(built) == ["auxiliary_scale1", "auxiliary_scale2", "forecast"]
    rms = kernel_rms(built)
    assert rms["forecast"] == 0 and all(rms[group] > 0 for group in rms if group not in head_groups(built))
    assert {"stem", "scale0", "scale0_convlstm", "aspp", "decoder_scale0"} <= set(rms)


def test_a_live_network_logs_its_health_without_warning(tmp_path):
    config = tiny_config()
    built = compiled(config)
    messages: list[str] = []
    callback = health_callback(built, config, tmp_path, messages)
    x, y = tiny_batch(config)
    for _ in range(3):
        built.train_on_batch(x, y)
    logs: dict = {}
    callback.on_epoch_end(0, logs)
    assert logs["collapsed"] == 0 and not messages
    assert logs["head_rms"] > 0 and logs["gradient_norm"] > 0 and logs["val_base_rmse"] == 0.05
    assert 0 < logs["departure_spatial_rms"] <= logs["departure_rms"]
    assert all(0.5 < logs[f"kernel_ratio_{group}"] < 2 for group in ("stem", "scale0", "aspp"))
    # the initial sizes are kept for a resumed stage
    resumed = TrainingHealth("stage", tmp_path, HealthProbes(train=None), None, fresh=False, log=messages.append)
    resumed.set_model(compiled(config))  # other weights: the stored initial values still count
    resumed.on_train_begin()
    assert resumed.initial == callback.initial


def test_the_collapse_warning_fires_on_a_dead_network(tmp_path):
    """The failure the L2 penalty under Adam caused: every kernel at zero, the head and biases alive, so the
    forecast is the base plus a constant per lead."""
    config = tiny_config()
    built = compiled(config)
    messages: list[str] = []
    callback = health_callback(built, config, tmp_path, messages)
    for layer in built.layers:
        for variable in layer.trainable_variables:
            if variable.name in ("kernel", "recurrent_kernel") and not layer.name.endswith("_head"):
                variable.assign(np.zeros(variable.shape, variable.dtype))
            elif variable.name == "bias":
                variable.assign(np.full(variable.shape, 0.1, variable.dtype))
    head = built.get_layer("forecast_head")
    head.kernel.assign(np.full(head.kernel.shape, 0.5, "float32"))
    logs: dict = {}
    callback.on_epoch_end(4, logs)
    assert logs["collapsed"] == 1
    assert len(messages) == 1 and messages[0].startswith("WARNING stage epoch 5: the network has collapsed")
    assert "kernels of stem" in messages[0] and "constant over pixels" in messages[0]
    x, y = tiny_batch(config)
    rms, spatial = departure(built, x, y, config.channel_slice("base"))
    assert rms > 1e-3 and spatial < 1e-6


def test_collapse_reasons():
    assert collapse_reasons({"stem": 0.9, "aspp": 1.1}, {"forecast": 0.01}, 0.01, 0.005) == []
    assert "aspp" in collapse_reasons({"stem": 0.9, "aspp": 5e-4}, {"forecast": 0.01}, 0.01, 0.005)[0]
    assert collapse_reasons({"stem": 0.9}, {"forecast": 0.01}, 0.01, 1e-7)  # constant departure
    assert collapse_reasons({"stem": 0.9}, {"forecast": 0.01}, 0.0, 0.0)  # a grown head that moves nothing
    assert collapse_reasons({"stem": 0.9}, {"forecast": 0.0}, 0.0, 0.0) == []  # untrained: exactly the base
