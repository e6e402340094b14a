"""The built-in sample: deterministic, in the competition's format, with gaps, an exact oracle and
realistic statistics."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from phenocast import sample
from phenocast.config import load_config
from phenocast.errors import PhenocastError
from phenocast.forecasters import backtest_stack, load_oracle
from phenocast.sample import (
    DEFAULT_WORLD,
    ORACLE_FOLDER,
    ZoneWorld,
    ensure_sample,
    forecastability_statistics,
    generate_sample,
    realism_statistics,
)
from phenocast.zones import discover_zones, read_zone

from conftest import FILL, ROOT, VALID_RANGE

# The CRS of the real competition file Z1-001.tif (tile h26v04), as rasterio reads it.
REAL_WKT = (
    'PROJCS["Sinusoidal Modis Spheroid",GEOGCS["Unknown datum based upon the Authalic Sphere",'
    'DATUM["Not_specified_based_on_Authalic_Sphere",SPHEROID["Sphere",6371007.181,0,'
    'AUTHORITY["EPSG","7035"]],AUTHORITY["EPSG","6035"]],PRIMEM["Greenwich",0],'
    'UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AUTHORITY["EPSG","4035"]],'
    'PROJECTION["Sinusoidal"],PARAMETER["longitude_of_center",0],PARAMETER["false_easting",0],'
    'PARAMETER["false_northing",0],UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],'
    'AXIS["Northing",NORTH]]')
REAL_PIXEL = 926.625433055833
REAL_CORNER = (8895604.157333, 5559752.598333)  # upper-left of h26v04
# Ranges measured on real MODIS and GIMMS zones (see the project issue).
REALISM_RANGES = {"anomaly_sd": (0.03, 0.08), "lag1_autocorrelation": (0.2, 0.5),
                  "spatial_correlation_5": (0.4, 0.8), "spatial_correlation_20": (0.3, 0.7)}
# The damped anomaly's gain over the EMA on the last 24 months (φ fitted before them) and the best global
# EMA α, as measured on real MODIS and GIMMS zones (gains of 1-2.5 % at lead 1, none later; φ₂ 0.04-0.13;
# α 0.3-0.5).
FORECASTABILITY_RANGES = {"damped_ratio_1": (0.96, 1.0), "damped_ratio_2": (0.99, 1.01),
                          "damped_ratio_3": (0.99, 1.01), "smoothed_weight_1": (0.0, 0.2),
                          "best_alpha": (0.25, 0.55)}


def all_files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory) -> Path:
    """2 zones × 40 months of 48² pixels, 3 gap months each."""
    folder = tmp_path_factory.mktemp("sample")
    generate_sample(folder, zones=2, months=40, size=48, seed=3, missing_months=3, progress=False)
    return folder


def test_generation_is_deterministic(tmp_path: Path, small_sample: Path):
    generate_sample(tmp_path, zones=2, months=40, size=48, seed=3, missing_months=3, progress=False)
    first, second = all_files(small_sample), all_files(tmp_path)
    assert first.keys() == second.keys()
    assert all(first[name] == second[name] for name in first)
    other = tmp_path / "other"
    generate_sample(other, zones=1, months=40, size=48, seed=4, progress=False)
    assert (other / "Z1" / "Z1-001.tif").read_bytes() != first["Z1/Z1-001.tif"]


def test_files_have_the_competition_format(small_sample: Path):
    real_crs = CRS.from_wkt(REAL_WKT)
    corners = {}
    for zone in ("Z1", "Z2"):
        with rasterio.open(small_sample / zone / f"{zone}-001.tif") as dataset:
            assert (dataset.count, dataset.dtypes[0], dataset.nodata) == (1, "int16", None)
            assert dataset.profile["compress"] == "deflate"
            assert dataset.crs == real_crs
            transform = dataset.transform
            assert (transform.a, transform.e) == pytest.approx((REAL_PIXEL, -REAL_PIXEL), abs=1e-9)
            corners[zone] = (transform.c, transform.f)
            assert dataset.tags()["TIFFTAG_SOFTWARE"]
    assert corners["Z1"] == pytest.approx(REAL_CORNER, abs=1e-3)  # the real Z1's tile, h26v04
    assert corners["Z2"] != corners["Z1"]  # a different tile per zone
    for zone in discover_zones(small_sample, report=None):
        stack = read_zone(zone, FILL, VALID_RANGE)
        raw = np.stack([rasterio.open(path).read(1) for path in zone.files.values()])
        valid = raw[raw != FILL]
        assert (raw == FILL).any() and valid.min() >= VALID_RANGE[0] and valid.max() <= VALID_RANGE[1]
        assert (valid < 0).any() and np.percentile(valid, 99) > 5000  # water and dense vegetation
        assert (stack == FILL).all(axis=0).any()  # permanent nodata clusters


def test_missing_months_are_gaps_in_the_numbering(small_sample: Path):
    for zone in discover_zones(small_sample, report=None):
        assert (zone.first, zone.last) == (1, 40)
        assert len(zone.gaps) == 3 and 1 not in zone.gaps and 40 not in zone.gaps


def test_oracle_files_follow_the_contract(small_sample: Path):
    oracle = small_sample / ORACLE_FOLDER
    assert (oracle / "README.txt").read_text().strip()
    zones = {zone.name: zone for zone in discover_zones(small_sample, report=None)}
    assert set(zones) == {"Z1", "Z2"}  # _oracle is not a zone
    for name, zone in zones.items():
        with np.load(oracle / f"{name}-backtest.npz") as archive:
            origins, leads, forecast = archive["origins"], archive["leads"], archive["forecast"]
        assert origins.dtype == leads.dtype == np.int64 and forecast.dtype == np.int16
        assert origins.tolist() == list(range(1, 41)) and leads.tolist() == [1, 2, 3]
        assert forecast.shape == (40, 3, 48, 48)
        permanent = (read_zone(zone, FILL, VALID_RANGE) == FILL).all(axis=0)
        assert (forecast[:, :, permanent] == FILL).all()
        assert (forecast[:, :, ~permanent] != FILL).all()
        for lead in (1, 2, 3):
            path = oracle / name / f"{name}-{40 + lead:03d}.tif"
            with rasterio.open(path) as dataset:
                assert dataset.dtypes[0] == "int16" and dataset.crs == zone_crs(zone)
                np.testing.assert_array_equal(dataset.read(1), forecast[-1, lead - 1])
        assert load_oracle(small_sample, name)[(40, 2)].shape == (48, 48)


def zone_crs(zone) -> CRS:
    return CRS.from_wkt(zone.profile.crs)


def test_oracle_origins_cover_the_last_48_months(tmp_path: Path):
    generate_sample(tmp_path, zones=1, months=60, size=16, horizon=2, progress=False)
    with np.load(tmp_path / ORACLE_FOLDER / "Z1-backtest.npz") as archive:
        assert archive["origins"].tolist() == list(range(12, 61))
        assert archive["forecast"].shape == (49, 2, 16, 16)
    assert sorted(p.name for p in (tmp_path / ORACLE_FOLDER / "Z1").iterdir()) == ["Z1-061.tif", "Z1-062.tif"]


# a world of strong, persistent, small-scale weather that wanders, and of a trending slow level: the oracle's
# shift, blur and level terms matter at every lead (with the default world's weak persistence they barely do)
STRONG_WORLD = dataclasses.replace(DEFAULT_WORLD, weather_phi=0.95, weather_scale=5.0, weather_sd=0.1,
                                   weather_velocity_sd=3.0, weather_velocity_persistence=0.7, level_sd=0.01,
                                   level_persistence=0.8, level_scale=4.0)
DRAWN_AFTER_THE_ORIGIN = ("timing_rng", "weather_rng", "disturbance_rng", "level_rng")


@pytest.mark.parametrize("origin, world", [(44, DEFAULT_WORLD), (46, DEFAULT_WORLD), (50, DEFAULT_WORLD),
                                           (44, STRONG_WORLD), (50, STRONG_WORLD)],
                         ids=["44", "46", "50", "44-strong", "50-strong"])  # before, at and after the
#   draws of the year's timing
def test_oracle_is_the_conditional_mean(origin: int, world):
    """Average many continuations of the same world state: the mean latent NDVI is the oracle."""
    # rare disturbances would never be sampled by 300 runs: tested on their own below
    no_disturbances = dataclasses.replace(world, disturbance_rate=0.0)
    zone = ZoneWorld(size=24, months=60, first_month=7, seed=5, zone_index=0, world=no_disturbances)
    for _ in range(origin):
        zone.step()
    oracle = [zone.forecast(lead) for lead in (1, 2, 3)]
    runs = 300
    total = [np.zeros(24 * 24) for _ in oracle]
    squares = [np.zeros(24 * 24) for _ in oracle]
    for run in range(runs):
        future = copy.deepcopy(zone)
        for index, name in enumerate(DRAWN_AFTER_THE_ORIGIN):
            setattr(future, name, np.random.default_rng([7, run, index]))
        for lead in range(3):
            latent = future.step().astype(np.float64)
            total[lead] += latent
            squares[lead] += latent ** 2
    for lead in range(3):
        mean = total[lead] / runs
        standard_error = np.sqrt(np.maximum(squares[lead] / runs - mean ** 2, 0) / runs)
        error = oracle[lead] - mean
        assert np.all(np.abs(error) <= 5 * standard_error + 1e-5), lead + 1


def test_disturbances_hit_at_the_rate_the_oracle_expects():
    world = ZoneWorld(size=24, months=60, first_month=7, seed=5, zone_index=0,
                      world=dataclasses.replace(DEFAULT_WORLD, disturbance_rate=0.5))
    _, hazard, _ = world.disturbance_constants()
    total = np.zeros(24 * 24)
    draws = 4000
    for _ in range(draws):
        world.disturbed[:] = 0
        world._disturb()
        total -= world.disturbed
    eligible = world.disturbance_weight > 0
    per_weight = total[eligible] / draws / world.disturbance_weight[eligible]
    assert per_weight.mean() == pytest.approx(hazard * np.mean(DEFAULT_WORLD.disturbance_depth), rel=0.05)


@pytest.fixture(scope="module")
def default_zone(tmp_path_factory) -> tuple[Path, object, np.ndarray]:
    """The default sample's first zone (240² × 120 months, seed 0), generated once: (folder, zone, stack)."""
    folder = tmp_path_factory.mktemp("default-sample")
    generate_sample(folder, zones=1, progress=False)
    (zone,) = discover_zones(folder, report=None)
    return folder, zone, read_zone(zone, FILL, VALID_RANGE)


def test_realism_statistics_of_the_default_sample_lie_in_the_real_ranges(default_zone):
    folder, zone, stack = default_zone
    statistics = realism_statistics(stack)
    for key, (low, high) in REALISM_RANGES.items():
        assert low <= statistics[key] <= high, (key, statistics[key])
    config = load_config(ROOT / "configs" / "sample.yaml")
    pooled = backtest_stack(stack, config, zone.name, oracle=load_oracle(folder, zone.name)
                            ).summary()["pooled"]
    assert 0.8 <= pooled["ema"] / pooled["climatology"] <= 1.0, pooled
    assert 0.2 <= pooled["ema"] / pooled["persistence"] <= 0.6, pooled
    assert pooled["oracle"] < pooled["ema"], pooled  # room for a model to beat the EMA


def test_forecastability_of_the_default_sample_lies_in_the_real_ranges(default_zone):
    """Beyond the EMA the anomaly forecasts little, as in real zones; the best global α is moderate."""
    _, _, stack = default_zone
    statistics = forecastability_statistics(stack)
    for key, (low, high) in FORECASTABILITY_RANGES.items():
        assert low <= statistics[key] <= high, (key, statistics[key])


def test_realism_statistics_on_known_stacks():
    rng = np.random.default_rng(0)
    months, size = 48, 40
    seasonal = 3000 + 2000 * np.sin(2 * np.pi * np.arange(months) / 12)[:, None, None]
    white = np.round(seasonal + rng.normal(0, 300, (months, size, size))).astype(np.int16)
    statistics = realism_statistics(white)
    assert statistics["anomaly_sd"] == pytest.approx(0.03 * math.sqrt(3 / 4), rel=0.05)
    assert abs(statistics["lag1_autocorrelation"]) < 0.05
    assert abs(statistics["spatial_correlation_5"]) < 0.05
    common = np.round(seasonal + rng.normal(0, 300, (months, 1, 1))).astype(np.int16) * np.ones(
        (1, size, size), dtype=np.int16)
    common[5] = FILL  # a gap month
    common[:, 0, 0] = 20000  # outside the valid range: nodata
    statistics = realism_statistics(common)
    assert statistics["spatial_correlation_5"] == pytest.approx(1)
    assert statistics["spatial_correlation_20"] == pytest.approx(1)


def test_refuses_to_write_over_zone_folders(tmp_path: Path):
    (tmp_path / "_cache").mkdir()
    (tmp_path / "notes.txt").write_text("not a zone")
    generate_sample(tmp_path, zones=1, months=24, size=8, progress=False)  # only _ folders and files: fine
    with pytest.raises(PhenocastError, match="found 1 .*Z1.*overwrite"):
        generate_sample(tmp_path, zones=1, months=24, size=8, progress=False)
    (tmp_path / "Z1" / "Z1-999.tif").write_bytes(b"stale")
    generate_sample(tmp_path, zones=1, months=24, size=8, seed=1, progress=False, overwrite=True)
    assert len(list((tmp_path / "Z1").iterdir())) == 24


def test_an_interrupted_generation_leaves_no_zone_folder(tmp_path: Path, monkeypatch):
    calls = []

    def interrupt(self, latent):
        calls.append(1)
        if len(calls) == 30:
            raise KeyboardInterrupt
        return original(self, latent)

    original = ZoneWorld.observe
    monkeypatch.setattr(ZoneWorld, "observe", interrupt)
    with pytest.raises(KeyboardInterrupt):
        generate_sample(tmp_path, zones=2, months=24, size=8, progress=False)
    assert sample.zone_folders(tmp_path) == []  # discovery sees no zone: ensure_sample would start over
    monkeypatch.setattr(ZoneWorld, "observe", original)
    assert generate_sample(tmp_path, zones=2, months=24, size=8, progress=False) == ["Z1", "Z2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Z1", "Z2", ORACLE_FOLDER]


@pytest.mark.parametrize("arguments, message", [
    ({"months": 12}, "at least 24"), ({"missing_months": 30, "months": 24}, "missing"),
    ({"first_month": 13}, "calendar month"), ({"horizon": 0}, "horizon")])
def test_rejects_bad_arguments(tmp_path: Path, arguments: dict, message: str):
    with pytest.raises(PhenocastError, match=message):
        generate_sample(tmp_path, **{"size": 8, "progress": False, **arguments})


def test_ensure_sample_generates_only_into_a_folder_without_zones(tmp_path: Path, capsys):
    overrides = [f"data.dir={tmp_path / 'data'}", "sample.zones=1", "sample.months=24", "sample.size=8",
                 "sample.missing_months=1", "predict.horizon=2"]
    config = load_config(ROOT / "configs" / "sample.yaml", overrides)
    assert ensure_sample(config) is True
    assert "generated the built-in sample" in capsys.readouterr().out
    (zone,) = discover_zones(tmp_path / "data", report=None)
    assert len(zone.gaps) == 1 and len(list((tmp_path / "data" / ORACLE_FOLDER / "Z1").iterdir())) == 2
    assert ensure_sample(config) is False
    config.data.sample = False
    config.data.dir = str(tmp_path / "empty")
    assert ensure_sample(config) is False and not (tmp_path / "empty").exists()


def test_command_line(tmp_path: Path, capsys):
    assert sample.main(["--out", str(tmp_path), "--zones", "1", "--months", "24", "--size", "8",
                        "--first-month", "1", "--quiet"]) == 0
    assert "1 zone(s) × 24 months" in capsys.readouterr().out
    assert sample.main(["--out", str(tmp_path), "--zones", "1", "--months", "24", "--quiet"]) == 2
    assert "overwrite" in capsys.readouterr().err
