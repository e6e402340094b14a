"""From saved window predictions to the submission: stitch, back to NDVI, blend with the EMA, zip, check.

For every zone of a run (``predictions/raw/<zone>-{validation,forecast}.npz``, written by ``run.py``):

1. stitch the windows (``postprocess.blend``: ``centre`` pastes centres, ``weighted`` blends overlaps) and
   average test-time augmentations;
2. add the climatology as of the origin, giving stored units (NDVI × scale); pixels without a
   climatology for that calendar month fall back to the EMA (then climatology, persistence);
3. blend with the original EMA baseline: ``ema_weight`` a number, or ``fit`` — least-squares weights
   on the validation months, per zone or per group of pixels sharing the same per-pixel-EMA α (the
   original's plan: trust the EMA where the series is stable);
4. write ``predictions/<zone>-<NNN>.tif`` for the forecast months (int16, rounded, clipped to
   ``data.valid_range``, ``data.fill_value`` where the zone never has data, the zone's CRS and transform);
5. zip them into ``submission.zip`` (flat ``Z1-213.tif`` or ``Z1/Z1-213.tif``), atomically, and check
   the zip (``check_submission``);
6. score the model, the blend and every baseline on the same validation images (``scores.json``).
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.io import MemoryFile

from phenocast import baselines
from phenocast.config import Config
from phenocast.errors import PhenocastError
from phenocast.evaluate import backtest_stack, load_oracle
from phenocast.forecast import add_climatology, load_windows, raw_path, stitch_differences
from phenocast.io import atomic_path, atomic_write_text
from phenocast.metrics import Scoreboard, image_mse
from phenocast.origins import forecast_leads, forecast_origin
from phenocast.zones import GeoProfile, Zone, month_file_name, read_zone, same_crs, write_geotiff

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same files give the same zip


@dataclass
class ZoneResult:
    """What postprocessing one zone produced."""

    zone: str
    files: list[Path]
    ema_weight: float | list[float]
    scores: Scoreboard = field(default_factory=Scoreboard)
    maps: dict = field(default_factory=dict)  # (origin, lead) → {"truth", "model", "ema"} images


def model_images(path: Path, zone: Zone, stack: np.ndarray, config: Config, alpha_map: np.ndarray
                 ) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """Model and EMA images in stored units for every (origin, lead) of a raw prediction file.

    The model's missing pixels (no climatology yet for that calendar month) take the EMA's value.

    Returns:
      {(origin month, lead): {"model": float32 (h, w), "ema": …, "ema_pixel": …}}.
    """
    predictions = load_windows(path)
    differences = stitch_differences(predictions, zone.shape, config, mode=config.postprocess.blend)
    images = {}
    cache: dict = {}
    for index, origin in enumerate(predictions.origins.tolist()):
        position = origin - zone.first
        absolute = add_climatology(differences[index], stack, position, config)
        leads = list(range(1, absolute.shape[0] + 1))
        targets = [position + lead for lead in leads]
        references = baselines.baseline_forecasts(stack, min(position, len(stack) - 1), targets,
                                                  config.data.fill_value, config.evaluate.ema_alpha,
                                                  alpha_map, cache)
        for lead, target in zip(leads, targets):
            ema = references["ema"][target]
            images[origin, lead] = {"model": baselines.fill_gaps(absolute[lead - 1], ema), "ema": ema,
                                    "ema_pixel": references["ema_pixel"][target]}
    return images


def fit_blend(images: dict, stack: np.ndarray, first: int, config: Config, groups: np.ndarray | None
              ) -> np.ndarray:
    """Least-squares EMA weights w (blend = w·EMA + (1-w)·model) on the validation images.

    Args:
      images: ``model_images`` of the validation origins.
      groups: int (h, w) group of every pixel (one weight per group), or None for one weight.

    Returns:
      float32 weights, one per group (index = group id), clipped to [0, 1]; 0 where a group has no data.
    """
    count = 1 if groups is None else int(groups.max()) + 1
    numerator = np.zeros(count)
    denominator = np.zeros(count)
    for (origin, lead), image in images.items():
        position = origin - first + lead
        if position >= len(stack):
            continue
        truth = stack[position]
        valid = truth != config.data.fill_value
        model, ema = image["model"], image["ema"]
        valid &= np.isfinite(model) & np.isfinite(ema)
        difference = (model - ema)[valid].astype(np.float64)
        error = (model - truth)[valid].astype(np.float64)
        group = np.zeros(valid.sum(), dtype=np.int64) if groups is None else groups[valid]
        numerator += np.bincount(group, difference * error, minlength=count)
        denominator += np.bincount(group, difference * difference, minlength=count)
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = np.where(denominator > 0, numerator / denominator, 0.0)
    return np.clip(weights, 0.0, 1.0).astype(np.float32)


def blend(model: np.ndarray, ema: np.ndarray, weight: np.ndarray | float) -> np.ndarray:
    """w·EMA + (1-w)·model (w per pixel or one number)."""
    return (weight * ema + (1 - weight) * model).astype(np.float32)


def _alpha_groups(alpha_map: np.ndarray, grid: list[float]) -> np.ndarray:
    """Pixel → index of its α in the grid (the per-pixel EMA's α)."""
    values = np.asarray(grid, dtype=np.float32)
    return np.abs(alpha_map[..., None] - values).argmin(axis=-1)


@dataclass
class ZoneValidation:
    """A zone's validation: blend weights, scores and images, plus what writing the forecast needs."""

    zone: Zone
    stack: np.ndarray
    alpha_map: np.ndarray
    weights: np.ndarray  # EMA weight per group (one group unless postprocess.fit: pixel)
    weight_map: np.ndarray | float
    scores: Scoreboard
    maps: dict  # (origin, lead) → {"truth", "model", "ema", "blend"} images, stored units


def validate_zone(zone: Zone, config: Config, run_dir: Path, log: Callable[[str], None] = print
                  ) -> ZoneValidation:
    """Fit the blend on a zone's validation predictions and score model, blend and baselines on them.

    Every method is scored on the same images: the validation origins of the zone (those the run
    predicted), leads 1..horizon within the zone.
    """
    fill, scale = config.data.fill_value, config.data.scale
    stack = read_zone(zone, fill, config.data.valid_range)
    validation_path = raw_path(run_dir, zone.name, "validation")
    validation_origins = (load_windows(validation_path).origins.tolist()
                          if validation_path.is_file() else [])
    fit_end = (min(validation_origins) - zone.first + 1) if validation_origins else len(stack)
    alpha_map = baselines.fit_alpha(stack, fit_end, fill, config.evaluate.alpha_grid,
                                    config.evaluate.ema_alpha)
    groups = (_alpha_groups(alpha_map, config.evaluate.alpha_grid)
              if config.postprocess.fit == "pixel" else None)
    validation = model_images(validation_path, zone, stack, config, alpha_map) if validation_origins else {}
    setting = config.postprocess.ema_weight
    if setting == "fit":
        if not validation:
            log(f"zone {zone.name}: no validation predictions to fit the EMA weight on; using 0")
            weights = np.zeros(1, np.float32)
        else:
            weights = fit_blend(validation, stack, zone.first, config, groups)
    else:
        weights = np.array([setting], np.float32)
    weight_map = weights[groups] if (groups is not None and setting == "fit") else float(weights[0])
    board = backtest_stack(stack, config, zone.name, zone.first, origins=validation_origins,
                           oracle=load_oracle(config.data.dir, zone.name), alpha_map=alpha_map)
    maps = {}
    for (origin, lead), image in validation.items():
        position = origin - zone.first + lead
        if position >= len(stack):
            continue
        truth = stack[position]
        blended = blend(image["model"], image["ema"], weight_map)
        board.add(zone.name, origin, lead, "model", image_mse(image["model"], truth, fill, scale))
        board.add(zone.name, origin, lead, "blend", image_mse(blended, truth, fill, scale))
        maps[origin, lead] = {"truth": truth, "model": image["model"], "ema": image["ema"],
                              "blend": blended}
    return ZoneValidation(zone, stack, alpha_map, weights, weight_map, board, maps)


def postprocess_zone(zone: Zone, config: Config, run_dir: Path, log: Callable[[str], None] = print
                     ) -> ZoneResult:
    """Validate (``validate_zone``), then blend and write the forecast GeoTIFFs of one zone.

    Raises:
      FileNotFoundError: the run has no forecast predictions for the zone.
    """
    forecast_path = raw_path(run_dir, zone.name, "forecast")
    if not forecast_path.is_file():
        raise FileNotFoundError(f"no forecast predictions for zone {zone.name} in {forecast_path.parent}")
    checked = validate_zone(zone, config, run_dir, log)
    never_valid = ~(checked.stack != config.data.fill_value).any(axis=0)
    weights = checked.weights
    result = ZoneResult(zone.name, [], weights.tolist() if weights.size > 1 else float(weights[0]),
                        checked.scores, checked.maps)
    origin = forecast_origin(zone.last, config)
    forecast = model_images(forecast_path, zone, checked.stack, config, checked.alpha_map)
    for lead in forecast_leads(zone.last, config):
        image = forecast[origin, lead]
        values = blend(image["model"], image["ema"], checked.weight_map)
        values[never_valid] = np.nan  # permanently nodata → fill
        path = run_dir / "predictions" / month_file_name(zone.name, origin + lead)
        result.files.append(write_geotiff(path, values, zone.profile, config.data.fill_value,
                                          config.data.valid_range, software="phenocast"))
    return result


def expected_files(zones: list[Zone], config: Config) -> dict[str, tuple[Zone, int]]:
    """Archive name → (zone, month) of every file a complete submission holds."""
    expected = {}
    for zone in zones:
        origin = forecast_origin(zone.last, config)
        for lead in forecast_leads(zone.last, config):
            name = month_file_name(zone.name, origin + lead)
            expected[name if config.postprocess.layout == "flat" else f"{zone.name}/{name}"] = (zone,
                                                                                                 origin + lead)
    return expected


def write_submission(files: dict[str, Path], path: Path) -> Path:
    """Zip ``{archive name: file}`` atomically with fixed entry times (reproducible bytes)."""
    with atomic_path(path) as temporary, zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name].read_bytes())
    return path


def check_submission(path: Path, zones: list[Zone], config: Config) -> list[str]:
    """Every problem of a submission zip, one line each (empty = valid).

    Checks: the zip opens; exactly the expected files (every selected zone × forecast month, named by
    ``postprocess.layout``); each opens as a single-band int16 GeoTIFF of the zone's size, CRS and
    transform; values are within ``data.valid_range`` or equal ``data.fill_value``.
    """
    problems = []
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        return [f"{path}: not a readable zip ({error})"]
    expected = expected_files(zones, config)
    with archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
        for name in sorted(set(expected) - set(names)):
            problems.append(f"{path}: missing {name} (zone {expected[name][0].name}, month "
                            f"{expected[name][1]})")
        for name in sorted(set(names) - set(expected)):
            problems.append(f"{path}: unexpected file {name}")
        for name in sorted(set(names) & set(expected)):
            zone = expected[name][0]
            problems.extend(_check_member(archive.read(name), f"{path}!{name}", zone.profile, config))
    return problems


def _check_member(data: bytes, where: str, profile: GeoProfile, config: Config) -> list[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with MemoryFile(io.BytesIO(data)) as memory, memory.open() as dataset:
                found = (dataset.count, dataset.dtypes[0], dataset.height, dataset.width)
                crs = dataset.crs.to_wkt() if dataset.crs else None
                transform = tuple(dataset.transform)[:6]
                values = dataset.read(1) if dataset.count else None
    except rasterio.errors.RasterioError as error:
        return [f"{where}: does not open as a GeoTIFF ({' '.join(str(error).split())})"]
    problems = []
    count, dtype, height, width = found
    if count != 1 or dtype != "int16":
        problems.append(f"{where}: expected a single-band int16 GeoTIFF, got {count} band(s) of {dtype}")
    if (height, width) != (profile.height, profile.width):
        problems.append(f"{where}: expected {profile.height}×{profile.width} like the zone, got "
                        f"{height}×{width}")
    if not same_crs(crs, profile.crs):
        problems.append(f"{where}: CRS differs from the zone's inputs")
    if not np.allclose(transform, profile.transform, rtol=0, atol=1e-6):
        problems.append(f"{where}: transform {transform} differs from the zone's {profile.transform}")
    if values is not None and dtype == "int16":
        low, high = config.data.valid_range
        bad = ((values < low) | (values > high)) & (values != config.data.fill_value)
        if bad.any():
            problems.append(f"{where}: {int(bad.sum())} value(s) outside {config.data.valid_range} that "
                            f"are not the fill value {config.data.fill_value}")
    return problems


def write_scores(board: Scoreboard, path: Path, extra: dict | None = None) -> dict:
    """``scores.json``: validation RMSE per zone and pooled for the model, the blend and every baseline,
    plus every image's score (``image_scores``) so reports can regroup them."""
    summary = board.summary()
    summary.update(extra or {})
    summary["image_scores"] = [score.__dict__ for score in board.scores]
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return summary


def run_postprocess(config: Config, zones: list[Zone], log: Callable[[str], None] = print) -> dict:
    """Postprocess every zone of the run that has forecast predictions; zip and check when all have.

    Returns:
      {"zones": processed zone names, "missing": zones without predictions, "files": n, "zip": path or
      None, "scores": scores.json summary}.
    """
    run_dir = config.run_dir
    results: list[ZoneResult] = []
    missing = []
    for zone in zones:
        if not raw_path(run_dir, zone.name, "forecast").is_file():
            missing.append(zone.name)
            continue
        result = postprocess_zone(zone, config, run_dir, log)
        results.append(result)
        log(f"postprocess {zone.name}: {len(result.files)} GeoTIFF(s), EMA weight {_weights(result)}")
    if not results:
        raise PhenocastError(f"expected window predictions in {run_dir / 'predictions' / 'raw'}, found "
                             f"none; run python run.py --stage predict first")
    board = Scoreboard(score for result in results for score in result.scores.scores)
    summary = write_scores(board, run_dir / "scores.json", {
        "ema_weight": {result.zone: result.ema_weight for result in results},
        "blend": config.postprocess.blend})
    zip_path = None
    if missing:
        log(f"postprocess: no predictions yet for zone(s) {', '.join(missing)}: submission.zip not written")
    else:
        files = {}
        for result in results:
            for path in result.files:
                files[path.name if config.postprocess.layout == "flat" else f"{result.zone}/{path.name}"] = path
        zip_path = write_submission(files, run_dir / config.postprocess.zip_name)
        problems = check_submission(zip_path, zones, config)
        if problems:
            raise PhenocastError(f"the submission {zip_path} failed its check: {problems[0]} "
                                 f"(+{len(problems) - 1} more)")
        log(f"postprocess: {zip_path} ({len(files)} files) passed its check")
    return {"zones": [result.zone for result in results], "missing": missing,
            "files": sum(len(result.files) for result in results), "zip": zip_path, "scores": summary}


def _weights(result: ZoneResult) -> str:
    weight = result.ema_weight
    return f"{weight:.2f}" if isinstance(weight, float) else "per α: " + ", ".join(f"{w:.2f}" for w in weight)
