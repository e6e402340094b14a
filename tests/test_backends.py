"""The network on another Keras backend: weights saved under TensorFlow give the same forecast under JAX.

This process (TensorFlow) builds a tiny network (32-pixel windows, 3 years, the stock ConvLSTM2D: the fused
layer is TensorFlow-only), moves every weight that starts at zero (the head, the biases) to random values, as
training would, saves its weights, and forecasts a fixed batch. A subprocess with ``KERAS_BACKEND=jax``
builds the same network from the same config, forecasts the batch untrained, loads the weights and forecasts
it again, without importing TensorFlow. Both backends' untrained networks must forecast their base exactly
(the head starts at zero).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from test_model import TINY, tiny_batch  # noqa: E402

import model as network  # noqa: E402
from phenocast.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = [*TINY, "model.convlstm=keras"]  # the stock ConvLSTM2D runs on every backend
TOLERANCE = dict(rtol=1e-5, atol=1e-6)  # float32: convolutions sum in another order on each backend

# Run with KERAS_BACKEND=jax: argv = config overrides as JSON, the folder with weights.h5 and batch.npz.
# Writes forecasts.npz (trained, untrained) and prints the modules it imported that matter here.
JAX_SCRIPT = """
import json, sys
import numpy as np
import keras
import model as network
from phenocast.config import load_config

overrides, folder = json.loads(sys.argv[1]), sys.argv[2]
config = load_config("configs/sample.yaml", overrides)
built = network.build_model(config)  # one network (building costs more than calling it under JAX)
x = np.load(f"{folder}/batch.npz")["x"]
untrained = np.asarray(built(x, training=False))
built.load_weights(f"{folder}/weights.weights.h5")
np.savez(f"{folder}/forecasts.npz", trained=np.asarray(built(x, training=False)), untrained=untrained)
print(json.dumps({"backend": keras.backend.backend(), "tensorflow": "tensorflow" in sys.modules}))
"""


def base_of(config, x: np.ndarray) -> np.ndarray:
    """The base forecast channels of inputs ``(batch, years, H, W, C)``: ``(batch, years, H, W, horizon)``."""
    start, stop = config.channel_slice("base")
    return x[..., start:stop]


def test_weights_saved_under_tensorflow_forecast_the_same_under_jax(tmp_path):
    pytest.importorskip("jax", reason="jax is not installed: pip install 'jax[cpu]' (requirements-dev.txt)")
    assert keras.backend.backend() == "tensorflow"
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    config = load_config("configs/sample.yaml", OVERRIDES)
    assert config.model.per_year_outputs and config.channel_slice("base") is not None
    built = network.build_model(config)
    x, _ = tiny_batch(config)
    np.testing.assert_array_equal(built(x, training=False), base_of(config, x))  # untrained: the base
    rng = np.random.default_rng(0)
    for variable in built.trainable_variables:  # the zero-initialised head and biases leave zero
        value = variable.numpy()
        if not value.any():
            variable.assign(rng.normal(0, 0.1, value.shape).astype(np.float32))
    forecast = np.asarray(built(x, training=False))
    assert np.abs(forecast - base_of(config, x)).max() > 1e-3  # the head now moves the forecast
    built.save_weights(tmp_path / "weights.weights.h5")
    np.savez(tmp_path / "batch.npz", x=x)

    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-c", JAX_SCRIPT, json.dumps(OVERRIDES), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"backend": "jax", "tensorflow": False}  # built, loaded and ran without TensorFlow
    forecasts = np.load(tmp_path / "forecasts.npz")
    assert forecasts["trained"].shape == forecast.shape and forecasts["trained"].dtype == np.float32
    np.testing.assert_allclose(forecasts["trained"], forecast, **TOLERANCE)
    np.testing.assert_array_equal(forecasts["untrained"], base_of(config, x))
