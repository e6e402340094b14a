"""Shared fixtures: tiny seeded zones of int16 GeoTIFFs written into tmp dirs (nothing binary committed)."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import from_origin

from phenocast.zones import GeoProfile, month_file_name, write_geotiff

ROOT = Path(__file__).resolve().parents[1]
FILL = -3000
VALID_RANGE = (-2000, 10000)
# the sample network shrunk for planted-world tests through the real pipeline (32² zones, 32-px windows)
TINY_NETWORK = ["tiling.centre=16", "tiling.margin=8", "model.filters=8", "model.growth_rate=8",
                "model.lstm_filters=[8,8,8]", "model.aspp_filters=8", "model.dilation_rates=[1,2]",
                "model.decoder_filters=8"]
SINUSOIDAL = CRS.from_proj4("+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs")


def tiny_profile(height: int, width: int, crs: CRS | None = SINUSOIDAL, pixel: float = 926.625433055833
                 ) -> GeoProfile:
    transform = from_origin(8895604.157333, 5559752.598333, pixel, pixel)
    return GeoProfile(height=height, width=width, crs=crs.to_wkt() if crs else None,
                      transform=tuple(transform)[:6])


def synthetic_stack(months: int, height: int, width: int, seed: int = 0, fill_fraction: float = 0.01,
                    permanent: bool = True) -> np.ndarray:
    """int16 (months, height, width): a seasonal cycle + persistent anomalies + noise, with fill pixels."""
    rng = np.random.default_rng(seed)
    time = np.arange(months)[:, None, None]
    base = rng.uniform(2000, 6000, size=(1, height, width))
    amplitude = rng.uniform(500, 3000, size=(1, height, width))
    anomaly = np.zeros((months, 1, 1))
    for t in range(1, months):
        anomaly[t] = 0.7 * anomaly[t - 1] + rng.normal(0, 300)
    values = base + amplitude * np.sin(2 * np.pi * time / 12) + anomaly + rng.normal(0, 200, (months, height,
                                                                                             width))
    stack = np.clip(np.round(values), -2000, 10000).astype(np.int16)
    stack[rng.random(stack.shape) < fill_fraction] = FILL
    if permanent:
        stack[:, 0, 0] = FILL
    return stack


def write_zone(data_dir: Path, name: str, stack: np.ndarray, first: int = 1, gaps: tuple[int, ...] = (),
               profile: GeoProfile | None = None) -> Path:
    """Write ``stack`` as ``data_dir/name/name-NNN.tif`` from month ``first``, skipping ``gaps``."""
    folder = data_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    profile = profile or tiny_profile(*stack.shape[1:])
    for position, image in enumerate(stack):
        month = first + position
        if month in gaps:
            continue
        write_geotiff(folder / month_file_name(name, month), image, profile, FILL, VALID_RANGE)
    return folder


def in_process(script: str, *args: str) -> subprocess.CompletedProcess:
    """``preprocess.py``, ``run.py`` or ``postprocess.py`` run in this process, with its exit code and output:
    TensorFlow starts once per test process instead of once per command (seconds each). A command that must
    start clean (killed, resumed, devices configured before TensorFlow starts) runs as a subprocess."""
    import importlib

    module = importlib.import_module(script.removesuffix(".py"))
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = module.main(list(args))
    return subprocess.CompletedProcess([script, *args], code, stdout.getvalue(), stderr.getvalue())


def held_out_rmse(run, trained) -> tuple[float, float]:
    """The masked RMSE of the ``trained`` model and of its base on a finished run's test months (held out of
    training and of every choice), in batches of 8 of a dataset whose size Keras knows."""
    import tensorflow as tf

    import model as network
    from model.health import base_rmse
    from phenocast.dataset import origin_dataset, steps_in

    config, samples = run.config, list(run.samples.values())
    test = origin_dataset(samples, config, lambda zone: zone.test, target_end_of=lambda zone: zone.target_end("test"))
    test = test.apply(tf.data.experimental.assert_cardinality(steps_in(samples, lambda zone: zone.test))).batch(8)
    network.compile_model(trained, config, network.make_optimizer(trained, 1e-3, 0.0))
    return (trained.evaluate(test, verbose=0, return_dict=True)["masked_rmse"],
            base_rmse(test, config.channel_slice("base")))


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """Two zones of 40 months, 24×20 and 16×16 pixels; Z2 has gaps at months 5 and 17."""
    data_dir = tmp_path / "data"
    write_zone(data_dir, "Z1", synthetic_stack(40, 24, 20, seed=1))
    write_zone(data_dir, "Z2", synthetic_stack(40, 16, 16, seed=2), gaps=(5, 17))
    return data_dir
