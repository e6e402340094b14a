"""postprocess: stitching back to NDVI, georeference, rounding, fill, EMA blend, the submission checker."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from phenocast import baselines
from phenocast.config import load_config
from phenocast.forecast import WindowPredictions, raw_path, save_windows
from phenocast.origins import forecast_origin, period_origins
from phenocast.postprocess import (
    BlendEvidence,
    check_submission,
    decide_blends,
    fit_sums,
    fit_weight,
    read_scored,
    run_postprocess,
)
from phenocast.tiling import extract_window, window_grid
from phenocast.zones import discover_zones, read_zone, same_crs

from conftest import FILL, ROOT, VALID_RANGE, synthetic_stack, tiny_profile, write_zone

SETTINGS = ["data.sample=false", "tiling.centre=8", "tiling.margin=4", "sequence.years=1", "sequence.origins=all",
            "data.val_months=24", "data.test_months=12"]  # 12 check origins: the blend's check can pass


def make_config(data_dir: Path, tmp_path: Path, *overrides: str):
    return load_config(ROOT / "configs" / "sample.yaml", [
        f"data.dir={data_dir}", f"output.dir={tmp_path / 'outputs'}", *SETTINGS, *overrides])


def cli_arguments(data_dir: Path, tmp_path: Path) -> list[str]:
    values = [f"data.dir={data_dir}", f"output.dir={tmp_path / 'outputs'}", *SETTINGS]
    return ["--config", str(ROOT / "configs" / "sample.yaml"), *[p for value in values for p in ("--set", value)]]


def oracle_predictions(zone, stack, origins, config, future=None, noise=0.0, seed=0):
    """Window predictions whose stitched differences reproduce ``stack`` (or ``future``) exactly."""
    grid = window_grid(*zone.shape, config.tiling.centre, config.tiling.margin)
    horizon = config.predict.horizon
    rng = np.random.default_rng(seed)
    fields = np.zeros((len(origins), horizon, *zone.shape), np.float32)
    for o, origin in enumerate(origins):
        position = origin - zone.first
        for lead in range(1, horizon + 1):
            target = position + lead
            if target >= len(stack) and future is None:  # a validation lead past the zone's end: unscored
                continue
            climatology = baselines.climatology(stack, target, FILL, end=position + 1)
            truth = stack[target] if target < len(stack) else future[lead - 1]
            fields[o, lead - 1] = (truth - climatology) / config.data.scale + rng.normal(0, noise, zone.shape)
    differences = np.stack([extract_window(fields, window) for window in grid.windows])
    return WindowPredictions(zone.name, np.array([w.row for w in grid.windows]),
                             np.array([w.col for w in grid.windows]), np.asarray(origins),
                             differences[:, :, None])  # (windows, origins, transforms, horizon, h, w)


@pytest.fixture
def run(tmp_path: Path):
    data_dir = tmp_path / "data"
    stacks = {"Z1": synthetic_stack(72, 20, 13, seed=1), "Z2": synthetic_stack(72, 9, 9, seed=2)}
    stacks["Z1"][:, 3, 4] = FILL  # permanently nodata
    for name, stack in stacks.items():
        write_zone(data_dir, name, stack)
    return data_dir, stacks


def write_run(data_dir: Path, tmp_path: Path, future: dict, *overrides: str, noise: float = 0.0,
              config_file: str = "sample"):
    """Oracle (or noisy) window predictions of every period of the run's zones; ``config_file`` default
    loads ``configs/default.yaml`` with only ``overrides``."""
    config = (make_config(data_dir, tmp_path, *overrides) if config_file == "sample"
              else load_config(ROOT / "configs" / "default.yaml", list(overrides)))
    zones = discover_zones(data_dir, report=None)
    for zone in zones:
        stack = read_zone(zone, FILL, VALID_RANGE)
        for period in ("validation", "test"):
            save_windows(oracle_predictions(zone, stack, period_origins(zone.first, zone.last, config, period),
                                            config, noise=noise), raw_path(config.run_dir, zone.name, period))
        save_windows(oracle_predictions(zone, stack, [forecast_origin(zone.last, config)], config,
                                        future=future[zone.name]),
                     raw_path(config.run_dir, zone.name, "forecast"), {"model": "checkpoints/oracle.keras"})
    return config, zones


@pytest.mark.parametrize("mode", ["centre", "weighted"])
def test_forecast_files_reproduce_the_predicted_ndvi(run, tmp_path: Path, mode: str):
    data_dir, stacks = run
    future = {name: np.clip(stack[-12:-9].astype(np.float64) + 0.4, *VALID_RANGE) for name, stack in stacks.items()}
    # (never valid), clipped, rounded (a truncation would give 123 and -123); float32 differences
    # cannot hold exact .5 ties, so the cases stay clear of them
    future["Z2"][2, 0, :4] = [12000.4, -2500.0, 123.6, -123.6]
    future["Z2"][2, 1, 0] = 12000.4  # clipped
    config, zones = write_run(data_dir, tmp_path, future, f"postprocess.blend={mode}")
    summary = run_postprocess(config, zones, log=lambda message: None)
    assert summary["missing"] == [] and summary["files"] == 6
    for zone in zones:
        for lead in (1, 2, 3):
            path = config.run_dir / "predictions" / f"{zone.name}-{zone.last + lead:03d}.tif"
            with rasterio.open(path) as dataset:
                assert dataset.dtypes[0] == "int16" and dataset.nodata is None
                assert same_crs(dataset.crs.to_wkt(), zone.profile.crs)
                assert tuple(dataset.transform)[:6] == zone.profile.transform
                written = dataset.read(1)
            expected = future[zone.name][lead - 1]
            never = (stacks[zone.name] == FILL).all(axis=0)  # (0, 0) everywhere, (3, 4) in Z1
            assert never.sum() == (2 if zone.name == "Z1" else 1) and (written[never] == FILL).all()
            rounded = np.clip(np.sign(expected) * np.floor(np.abs(expected) + 0.5), *VALID_RANGE)
            np.testing.assert_array_equal(written[~never], rounded[~never])
    assert written[0, :4].tolist() == [FILL, -2000, 124, -124]  # Z2 lead 3; (0, 0) is permanently nodata
    # the validation and test predictions were exact: the model scores 0, below every baseline
    scores = summary["scores"]
    for period in ("validation", "test"):
        assert scores[period]["pooled"]["model"] == pytest.approx(0, abs=1e-9)
        assert min(scores[period]["pooled"][m] for m in ("ema", "climatology", "persistence", "damped")) > 0.01
    assert scores["headline"]["period"] == "test" and scores["headline"]["methods"]["model"]["over_ema"] == 0
    assert check_submission(summary["zip"], zones, config) == []


def test_postprocess_alone_reproduces_the_same_files(run, tmp_path: Path):
    data_dir, stacks = run
    future = {name: stack[-12:-9] for name, stack in stacks.items()}
    config, zones = write_run(data_dir, tmp_path, future)
    first = run_postprocess(config, zones, log=lambda message: None)
    before = first["zip"].read_bytes()
    result = subprocess.run([sys.executable, "postprocess.py", *cli_arguments(data_dir, tmp_path)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert first["zip"].read_bytes() == before


def test_model_weight_fitted_where_the_answer_is_known():
    rng = np.random.default_rng(0)
    truth = rng.integers(1000, 8000, size=(5, 6, 6)).astype(np.int16)
    error = rng.normal(0, 300, size=truth.shape)
    config = make_config(Path("."), Path("."))
    images = {(1, lead): {"model": (truth[lead] + error[lead]).astype(np.float32),
                          "ema": (truth[lead] - error[lead]).astype(np.float32)} for lead in range(1, 5)}
    # opposite errors of equal size: the half-half blend is exact
    assert fit_weight(images, truth, 1, config, "ema") == pytest.approx(0.5, abs=1e-6)
    for image in images.values():
        image["damped"] = image["model"] - 2 * error[1].astype(np.float32)  # worse than the model
    images = {(1, lead): {"model": truth[lead].astype(np.float32), "ema": (truth[lead] + error[lead]).astype(
        np.float32)} for lead in range(1, 5)}
    assert fit_weight(images, truth, 1, config, "ema") == pytest.approx(1.0)  # the model is the truth
    images = {(1, lead): {"model": (truth[lead] + error[lead]).astype(np.float32),
                          "ema": truth[lead].astype(np.float32)} for lead in range(1, 5)}
    assert fit_weight(images, truth, 1, config, "ema") == 0.0  # the base is the truth: clipped at 0


def planted_evidence(config, zone: str, model_error: float, damped_error: float = 1.0, origins=range(1, 30),
                     seed: int = 1) -> tuple[BlendEvidence, np.ndarray]:
    """Check images of one zone whose model, damped and EMA forecasts err by the given shares of one noise
    field each: the evidence ``decide_blends`` reads."""
    from phenocast.metrics import Scoreboard

    rng = np.random.default_rng(seed)
    truth = rng.integers(1000, 8000, size=(40, 6, 6)).astype(np.int16)
    board, images = Scoreboard(), {}
    for origin in origins:
        for lead in (1, 2, 3):
            target = truth[origin + lead - 1].astype(np.float32)
            error = rng.normal(0, 300, size=target.shape).astype(np.float32)
            noise = rng.normal(0, 300, size=target.shape).astype(np.float32)
            images[origin, lead] = {"ema": target + error, "damped": target + damped_error * error,
                                    "model": target + model_error * error + (0.5 * noise if model_error >= 1 else 0)}
            for method, image in images[origin, lead].items():
                board.add(zone, origin, lead, method, (float(np.mean(((image - target) / 1e4) ** 2)), 36), "validation")
    sums = {name: fit_sums(images, truth, 1, config, name) for name in ("ema", "damped")}
    return BlendEvidence(board, sums), truth


@pytest.mark.parametrize("damped_error, fallback", [(0.5, "damped"), (1.1, "ema")])
def test_a_base_that_does_not_beat_the_ema_on_validation_falls_back_to_the_ema(damped_error: float,
                                                                                fallback: str):
    config = make_config(Path("."), Path("."), "model.base=damped", "evaluate.bootstrap=200")
    evidence, _ = planted_evidence(config, "Z1", 0.2, damped_error)
    chosen = decide_blends({"Z1": evidence}, config)["Z1"]
    assert chosen.fallback == fallback and f"fallback {fallback}" in chosen.reason
    assert 0.5 < chosen.weight <= 1 and chosen.reason.startswith("fitted")  # the model beats either fallback
    few, _ = planted_evidence(config, "Z1", 0.2, damped_error, origins=range(1, 6))  # 5 origins prove nothing
    chosen = decide_blends({"Z1": few}, config)["Z1"]
    assert chosen.fallback == "ema" and chosen.weight == 0.0 and "from only 5 origin(s)" in chosen.reason


@pytest.mark.parametrize("setting, damped_error, fallback", [
    ("damped", 0.5, "damped"), ("damped", 1.1, "ema"), ("base", 0.5, "ema")])
def test_a_named_fallback_replaces_the_base_where_it_beats_the_ema(setting: str, damped_error: float,
                                                                   fallback: str):
    """``postprocess.fallback: damped`` over a network whose base is the EMA: the damped forecast is the
    fallback where the check images say it beats the EMA, else the EMA; ``base`` keeps the EMA however good
    the damped forecast is. A model no better than the damped forecast gets weight 0."""
    config = make_config(Path("."), Path("."), "model.base=ema", f"postprocess.fallback={setting}",
                         "evaluate.bootstrap=200")
    evidence, _ = planted_evidence(config, "Z1", 0.2, damped_error)
    chosen = decide_blends({"Z1": evidence}, config)["Z1"]
    assert chosen.fallback == fallback and chosen.weight > 0.5 and chosen.reason.startswith("fitted")
    assert ("fallback damped" in chosen.reason) == (fallback == "damped")
    useless, _ = planted_evidence(config, "Z1", 1.0, damped_error)  # the EMA's error plus noise
    chosen = decide_blends({"Z1": useless}, config)["Z1"]
    assert chosen.fallback == fallback and chosen.weight == 0.0 and chosen.reason.startswith("shrunk")


@pytest.mark.parametrize("decision", ["pooled", "zone"])
def test_pooled_decisions_shrink_each_zone_towards_all_zones(decision: str):
    """Two zones where the model is clearly better and one where it only adds noise: pooled, the check
    passes once and the noisy zone's weight is pulled up towards the pooled one (but stays below the
    others); per zone, the noisy zone gets 0 and the others their own fit."""
    config = make_config(Path("."), Path("."), f"postprocess.decision={decision}", "evaluate.bootstrap=200")
    evidence = {zone: planted_evidence(config, zone, error, seed=seed)[0]
                for zone, error, seed in (("Z1", 0.3, 1), ("Z2", 0.4, 2), ("Z3", 1.0, 3))}
    blends = decide_blends(evidence, config)
    assert all(blend.fallback == "ema" for blend in blends.values())
    assert blends["Z1"].weight > 0.5 and blends["Z2"].weight > 0.5
    if decision == "pooled":
        assert "pooled over 3 zone(s)" in blends["Z3"].reason
        assert 0 < blends["Z3"].weight < min(blends["Z1"].weight, blends["Z2"].weight)
    else:
        assert blends["Z3"].weight == 0.0 and blends["Z3"].reason.startswith("shrunk")


@pytest.mark.parametrize("model, expected", [("noise", "shrunk"), ("truth", "fitted")])
@pytest.mark.parametrize("config_name", ["sample", "default"])
def test_the_validated_weight_falls_to_the_base_unless_validation_says_otherwise(run, tmp_path: Path, config_name: str,
                                                                                model: str, expected: str):
    """A planted model that only adds noise to the base gets weight 0; one that is the truth gets ~1. Also
    under the competition default (``sequence.origins: fixed``, 24 validation and 24 test months): the
    scored periods use every origin, so its check can say yes."""
    data_dir, stacks = run
    overrides = ["model.base=ema"]
    if config_name == "default":
        overrides = [f"data.dir={data_dir}", f"output.dir={tmp_path / 'outputs'}", "tiling.centre=8",
                     "tiling.margin=4", "sequence.years=1", "model.base=ema"]
    config, zones = write_run(data_dir, tmp_path, {name: stack[-12:-9] for name, stack in stacks.items()},
                              *overrides, config_file="default" if config_name == "default" else "sample")
    if config_name == "default":
        assert config.sequence.origins == "fixed" and config.postprocess.decision == "pooled"
    rng = np.random.default_rng(5)
    for zone in zones:
        stack = read_zone(zone, FILL, VALID_RANGE)
        for period in ("validation", "test"):
            origins = period_origins(zone.first, zone.last, config, period)
            predictions = oracle_predictions(zone, stack, origins, config)
            if model == "noise":  # the EMA (the base) plus noise of its own error's size: never better
                for o, origin in enumerate(origins):
                    position = origin - zone.first
                    for lead in range(1, 4):
                        ema = baselines.fill_gaps(baselines.ema(stack, position + lead, FILL, 0.4),
                                                  baselines.climatology(stack, position + lead, FILL))
                        climatology = baselines.climatology(stack, position + lead, FILL, end=position + 1)
                        field = (ema - climatology) / config.data.scale + rng.normal(0, 0.04, zone.shape)
                        grid = window_grid(*zone.shape, config.tiling.centre, config.tiling.margin)
                        for w, window in enumerate(grid.windows):
                            predictions.differences[w, o, 0, lead - 1] = extract_window(np.nan_to_num(field)[None],
                                                                                        window)[0]
            save_windows(predictions, raw_path(config.run_dir, zone.name, period))
    scores = run_postprocess(config, zones, log=lambda message: None)["scores"]
    for zone in zones:
        weight = scores["model_weight"][zone.name]
        assert weight["base"] == "ema" and weight["reason"].startswith(expected), weight
        if model == "noise":
            assert weight["weight"] == 0.0
            rmse = scores["test"]["zones"][zone.name]["rmse"]
            assert weight["fallback"] in ("ema", "damped")  # postprocess.fallback: damped, if it beats the EMA
            assert rmse["blend"] == rmse[weight["fallback"]]
        else:
            assert weight["weight"] > 0.95


def broken_zip(source: Path, target: Path, change: str, zones, config) -> Path:
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    name = sorted(members)[0]
    zone = zones[0]
    profile = zone.profile
    if change == "missing":
        del members[name]
    elif change == "size":
        members[name] = tiff_bytes(np.zeros((profile.height + 1, profile.width), np.int16), tiny_profile(
            profile.height + 1, profile.width))
    elif change == "dtype":
        members[name] = tiff_bytes(np.zeros((profile.height, profile.width), np.float32), profile)
    elif change == "crs":
        members[name] = tiff_bytes(np.zeros((profile.height, profile.width), np.int16),
                                   tiny_profile(profile.height, profile.width, crs=CRS.from_epsg(32631)))
    elif change == "extra":
        members["notes.txt"] = b"hello"
    elif change == "range":
        members[name] = tiff_bytes(np.full((profile.height, profile.width), -2500, np.int16), profile)
    with zipfile.ZipFile(target, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return target


def tiff_bytes(values: np.ndarray, profile) -> bytes:
    buffer = io.BytesIO()
    with rasterio.MemoryFile() as memory:
        with memory.open(driver="GTiff", height=values.shape[0], width=values.shape[1], count=1,
                         dtype=values.dtype.name, crs=profile.crs, transform=profile.affine) as dataset:
            dataset.write(values, 1)
        buffer.write(memory.read())
    return buffer.getvalue()


@pytest.mark.parametrize("change, expected", [
    ("missing", "missing Z1-073.tif (zone Z1, month 73)"),
    ("size", "expected 20×13 like the zone, got 21×13"),
    ("dtype", "expected a single-band int16 GeoTIFF, got 1 band(s) of float32"),
    ("crs", "CRS differs from the zone's inputs"),
    ("extra", "unexpected file notes.txt"),
    ("range", "outside [-2000, 10000]"),
])
def test_the_checker_catches_broken_submissions(run, tmp_path: Path, change: str, expected: str):
    data_dir, stacks = run
    config, zones = write_run(data_dir, tmp_path, {name: stack[-12:-9] for name, stack in stacks.items()})
    summary = run_postprocess(config, zones, log=lambda message: None)
    broken = broken_zip(summary["zip"], tmp_path / "broken.zip", change, zones, config)
    problems = check_submission(broken, zones, config)
    assert len(problems) == 1 and expected in problems[0], problems
    result = subprocess.run([sys.executable, "postprocess.py", *cli_arguments(data_dir, tmp_path), "--check",
                             str(broken)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and expected in result.stdout and len(result.stdout.splitlines()) == 1
    (tmp_path / "not.zip").write_bytes(b"garbage")
    assert "not a readable zip" in check_submission(tmp_path / "not.zip", zones, config)[0]


def test_zip_is_only_written_when_every_zone_has_a_forecast(run, tmp_path: Path):
    data_dir, stacks = run
    config, zones = write_run(data_dir, tmp_path, {name: stack[-12:-9] for name, stack in stacks.items()})
    raw_path(config.run_dir, "Z2", "forecast").unlink()
    messages = []
    summary = run_postprocess(config, zones, log=messages.append)
    assert summary["zip"] is None and summary["missing"] == ["Z2"]
    assert any("submission.zip not written" in message for message in messages)


@pytest.mark.parametrize("setting, expected", [("base", "ema"), ("damped", "damped"), ("climatology", "climatology")])
def test_the_submission_falls_back_to_the_named_baseline(run, tmp_path: Path, setting: str, expected: str):
    """With the model's weight set to 0 the submitted forecast is the fallback on every scored image of
    both periods: the EMA (the base) with ``base``, the named baseline with ``postprocess.fallback``."""
    data_dir, stacks = run
    future = {name: stack[-12:-9] for name, stack in stacks.items()}
    config, zones = write_run(data_dir, tmp_path / setting, future, "model.base=ema", "postprocess.model_weight=0",
                              f"postprocess.fallback={setting}", noise=0.03)
    scores = run_postprocess(config, zones, log=lambda message: None)["scores"]
    for zone in zones:
        assert scores["model_weight"][zone.name]["fallback"] == expected
        for period in ("validation", "test"):
            rmse = scores[period]["zones"][zone.name]["rmse"]
            assert rmse["blend"] == rmse[expected] != rmse["model"], (period, rmse)
    assert scores["test"]["pooled"]["damped"] != scores["test"]["pooled"]["ema"]


def test_blend_weight_is_fitted_on_validation_and_test_months_cannot_move_it(run, tmp_path: Path):
    data_dir, stacks = run
    future = {name: stack[-12:-9] for name, stack in stacks.items()}
    config, zones = write_run(data_dir, tmp_path, future, "postprocess.model_weight=fit", "postprocess.shrink=false",
                              noise=0.03)
    first = run_postprocess(config, zones, log=lambda message: None)["scores"]
    weights = first["model_weight"]
    assert all(0 < weight["weight"] < 1 for weight in weights.values()), weights  # a noisy model: some base helps
    # rewrite every test month of the truth (the raw predictions stay): the weights must not move
    for name, stack in stacks.items():
        changed = stack.copy()
        changed[-12:] = np.where(changed[-12:] == FILL, FILL, np.clip(changed[-12:] + 700, *VALID_RANGE))
        write_zone(data_dir, name, changed)
    second = run_postprocess(config, zones, log=lambda message: None)["scores"]
    assert second["model_weight"] == weights
    assert second["validation"]["pooled"] == first["validation"]["pooled"]
    assert second["test"]["pooled"]["ema"] != first["test"]["pooled"]["ema"]


def test_scores_recompute_from_the_scored_geotiffs_and_the_truth(run, tmp_path: Path):
    data_dir, stacks = run
    future = {name: stack[-12:-9] for name, stack in stacks.items()}
    config, zones = write_run(data_dir, tmp_path, future, "postprocess.model_weight=0.75", noise=0.02)
    scores = run_postprocess(config, zones, log=lambda message: None)["scores"]
    for period in ("validation", "test"):
        squared: dict[str, list[float]] = {"model": [], "blend": [], "ema": []}
        for zone in zones:
            path = config.run_dir / scores["scored_files"][zone.name][period]
            images = read_scored(path)
            with rasterio.open(path) as dataset:
                assert dataset.count == 3 * len(images) and dataset.crs is not None
                assert dataset.descriptions[0].startswith("model origin ")
            truth = read_zone(zone, FILL, VALID_RANGE)
            for (origin, lead), methods in images.items():
                target = truth[origin + lead - zone.first]
                valid = target != FILL
                if not valid.any():
                    continue
                assert (zone.last - 36 < origin + lead <= zone.last - 12) == (period == "validation")
                for method, image in methods.items():
                    squared[method].append(np.mean(((image[valid] - target[valid]) / 10000.0) ** 2))
        for method, values in squared.items():
            assert scores[period]["pooled"][method] == pytest.approx(np.sqrt(np.mean(values)), rel=1e-9), method
    headline = scores["headline"]
    blend = headline["methods"]["blend"]
    assert headline["period"] == "test" and headline["best_baseline"] in ("ema", "ema_pixel", "damped", "climatology")
    assert blend["over_ema_interval"][0] <= blend["over_ema"] <= blend["over_ema_interval"][1]
    assert blend["images"] == scores["test"]["images"] and "beats the EMA on" in headline["text"]
    assert scores["submission"]["Z1"]["model"] == "checkpoints/oracle.keras"
    # by year after training (through month 36 here): validation years 1 and 2, the test year 3
    years = scores["years_after_training"]
    assert [(row["period"], row["year"]) for row in years] == [("validation", 1), ("validation", 2), ("test", 3)]
    for period in ("validation", "test"):
        assert sum(row["images"] for row in years if row["period"] == period) == scores[period]["images"]
    for row in years:
        mses = [s["mse"] for s in scores["image_scores"] if s["method"] == "model" and s["period"] == row["period"]
                and 36 + 12 * (row["year"] - 1) < s["origin"] + s["lead"] <= 36 + 12 * row["year"]]
        assert row["rmse"]["model"] == pytest.approx(np.sqrt(np.mean(mses)), rel=1e-12) and len(mses) == row["images"]
        ratio, low, high = row["blend_over_ema"]
        assert ratio == pytest.approx(row["rmse"]["blend"] / row["rmse"]["ema"]) and low <= ratio <= high
        best = headline["best_baseline"]  # the headline's reference in every year
        ratio, low, high = row["blend_over_best_baseline"]
        assert row["best_baseline"] == best and low <= ratio <= high
        assert ratio == pytest.approx(row["rmse"]["blend"] / row["rmse"][best])


def test_the_checker_reports_fill_where_the_zone_has_data(run, tmp_path: Path):
    data_dir, stacks = run
    config, zones = write_run(data_dir, tmp_path, {name: stack[-12:-9] for name, stack in stacks.items()})
    summary = run_postprocess(config, zones, log=lambda message: None)
    with zipfile.ZipFile(summary["zip"]) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    name = sorted(members)[0]
    with rasterio.MemoryFile(members[name]) as memory, memory.open() as dataset:
        values = dataset.read(1)
    values[5:7, 5:9] = FILL
    members[name] = tiff_bytes(values, zones[0].profile)
    broken = tmp_path / "holes.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    (problem,) = check_submission(broken, zones, config)
    assert "8 pixel(s) are the fill value where the zone has valid data" in problem and name in problem
