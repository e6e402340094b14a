"""From saved window predictions to the submission and its scores: stitch, back to NDVI, blend, score,
write, zip, check.

For every zone of a run (``predictions/raw/<zone>-{validation,test,forecast}.npz``, written by
``run.py``; validation and test by the model chosen on validation, the forecast by the submission model;
with ``finetune.refit_through: validation`` also ``<zone>-refit-test.npz``, the test origins by a refit
that stopped before them, scored on the test period as method ``refit``):

1. stitch the windows (``postprocess.blend``: ``centre`` pastes centres, ``weighted`` blends overlaps) and
   average test-time augmentations;
2. add the climatology as of the origin, giving stored units (NDVI × scale); pixels without a
   climatology for that calendar month fall back to the EMA;
3. blend with a fallback: blend = fallback + w·(model - fallback), decided on the *check* half of the
   validation period only (``origins.validation_part``: interleaved blocks of origins; the select half
   chose the checkpoints and epochs, so what chose the network never checks it), first for every zone
   (``zone_evidence``), then once (``decide_blends``): the fallback is the base the network corrects
   (``model.base``: ema, damped or climatology) or the baseline ``postprocess.fallback`` names, but with
   ``postprocess.shrink`` a fallback other than the EMA must beat the EMA on those images (the upper end
   of the paired-bootstrap interval of their RMSE ratio below 1, over at least ``MIN_VALIDATION_ORIGINS``
   origins), else the fallback is the EMA;
   ``postprocess.model_weight`` a number, or ``fit`` — w by least squares on those images, clipped to
   [0, 1], and with shrink set to 0 (the fallback alone) unless the model beats the fallback there in the
   same sense. ``postprocess.decision: pooled`` answers both on all zones' check images together and
   shrinks each zone's weight towards the pooled one; ``zone`` answers per zone. The blend is applied
   unchanged to the validation and test images and the forecast;
4. score the model, the blend and every baseline (persistence, climatology, EMA, per-pixel EMA, damped;
   the oracle on the built-in sample) on the same images of each period, every image as the int16 file
   it is written as (rounded, clipped); the fitted baselines learn from the training period only;
5. save the scored images: ``predictions/<period>/<zone>-<period>.tif``, one int16 GeoTIFF per zone and
   period with a band per (method, origin, lead) (methods ``SAVED_METHODS``; band descriptions such
   as ``blend origin 96 lead 1 month 97``), which ``report.py`` draws from;
6. write ``predictions/<zone>-<NNN>.tif`` for the forecast months (int16, rounded, clipped to
   ``data.valid_range``, ``data.fill_value`` where the zone never has data, the zone's CRS and transform);
7. zip them into ``submission.zip`` (flat ``Z1-213.tif`` or ``Z1/Z1-213.tif``), atomically, and check
   the zip (``check_submission``);
8. ``scores.json``: per period (test first), per method, pooled / per zone / per lead, every image's
   score, and the headline: the ratios of the model and of the submitted blend to the EMA and to the
   best baseline on the test period, with paired-bootstrap intervals over forecast origins; and every
   method's RMSE in each year after the training period (``years_after_training``).
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
from phenocast.config import Config, save_config
from phenocast.errors import PhenocastError
from phenocast.forecast import REFIT_TEST, add_climatology, load_meta, load_windows, raw_path, stitch_differences
from phenocast.forecasters import FittedBaselines, ZoneBaselines, load_oracle, saved_baselines
from phenocast.io import atomic_path, atomic_write_text
from phenocast.metrics import Scoreboard, image_mse, paired_bootstrap
from phenocast.origins import (
    VALIDATION_PARTS,
    forecast_leads,
    forecast_origin,
    measured_refit,
    minimum_training_months,
    period_images,
    refit_end,
    shortened_periods,
    trainable,
    validation_part,
    zone_periods,
)
from phenocast.zones import GeoProfile, Zone, month_file_name, read_month, read_zone, same_crs, to_int16, write_geotiff

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same files give the same zip
SAVED_METHODS = ("model", "blend", "ema")  # the methods of the scored-image files
SUBMITTED = "blend"  # the method the submission files are made of


@dataclass
class ZoneResult:
    """What postprocessing one zone produced."""

    zone: str
    files: list[Path]
    model_weight: float
    weight_reason: str = ""  # why the weight is what it is (fitted, shrunk, set)
    fallback: str = "ema"  # what the model is blended with: the base, or the EMA where the base did not validate
    scores: Scoreboard = field(default_factory=Scoreboard)
    scored_files: dict[str, Path] = field(default_factory=dict)  # period → file of its scored images
    fitted: dict = field(default_factory=dict)  # the fitted baselines, as JSON
    submission_model: str | list[str] | None = None  # the model file(s) that wrote the forecast
    trained_through: int | None = None  # the last month the submission model's targets reached


def model_images(path: Path, zone: Zone, stack: np.ndarray, config: Config, images: list[tuple[int, int]]
                 ) -> dict[tuple[int, int], np.ndarray]:
    """The model's images in stored units for the given (origin, lead) images of a raw prediction file.

    Returns:
      {(origin month, lead): float32 (h, w)}; NaN where the climatology of that month is undefined.

    Raises:
      PhenocastError: the file lacks an origin the images need (months changed after ``run.py``).
    """
    predictions = load_windows(path)
    available = predictions.origins.tolist()
    wanted = sorted({origin for origin, _ in images})
    missing = [origin for origin in wanted if origin not in available]
    if missing:
        raise PhenocastError(
            f"the predictions {path} hold origins {available[0]}..{available[-1]} but zone {zone.name} now "
            f"needs origin(s) {', '.join(map(str, missing[:3]))} (its months or the periods changed after "
            f"run.py predicted); rerun python run.py --stage predict,postprocess")
    differences = stitch_differences(predictions, zone.shape, config, mode=config.postprocess.blend)
    result = {}
    for origin in wanted:
        index = available.index(origin)
        position = origin - zone.first
        absolute = add_climatology(differences[index], stack, position, config)
        for lead in sorted(lead for o, lead in images if o == origin):
            result[origin, lead] = absolute[lead - 1]
    return result


def fit_sums(images: dict, stack: np.ndarray, first: int, config: Config, fallback: str) -> tuple[float, float]:
    """The sums of the least-squares model weight (blend = fallback + w·(model − fallback)) over images:
    (Σ d·(truth − fallback), Σ d²) with d = model − fallback, over valid pixels, stored units.

    Args:
      images: {(origin, lead): {"model": float32 (h, w), fallback: float32 (h, w), …}}.
      fallback: the fallback method's name.
    """
    numerator = denominator = 0.0
    for (origin, lead), image in images.items():
        position = origin - first + lead
        if position >= len(stack) or "model" not in image:
            continue
        truth = stack[position]
        valid = (truth != config.data.fill_value) & np.isfinite(image["model"]) & np.isfinite(image[fallback])
        difference = (image["model"] - image[fallback])[valid].astype(np.float64)
        numerator += float(difference @ (truth[valid] - image[fallback][valid]).astype(np.float64))
        denominator += float(difference @ difference)
    return numerator, denominator


def fit_weight(images: dict, stack: np.ndarray, first: int, config: Config, base: str) -> float:
    """Least-squares model weight w (blend = base + w·(model - base)) on the given images, in [0, 1]
    (``fit_sums``); 0 when model and base never differ."""
    numerator, denominator = fit_sums(images, stack, first, config, base)
    return _weight(numerator, denominator)


def _weight(numerator: float, denominator: float) -> float:
    return float(np.clip(numerator / denominator, 0.0, 1.0)) if denominator > 0 else 0.0


def blend(model: np.ndarray, base: np.ndarray, weight: float) -> np.ndarray:
    """base + w·(model - base)."""
    return (base + weight * (model - base)).astype(np.float32)


MIN_VALIDATION_ORIGINS = 12  # a bootstrap over fewer forecast origins proves nothing


@dataclass
class BlendEvidence:
    """What one zone's blend is decided from: the *check* part of its validation period
    (``origins.validation_part``), which chose nothing else.

    Attributes:
      board: the check images' scores (as written) of the model, the base and the EMA.
      sums: fallback name → ``fit_sums`` over the check images.
    """

    board: Scoreboard
    sums: dict[str, tuple[float, float]]


@dataclass
class Blend:
    """A zone's submitted forecast: fallback + weight·(model − fallback), and why."""

    fallback: str
    weight: float
    reason: str


def blend_evidence(zone: Zone, stack: np.ndarray, config: Config, methods: dict) -> BlendEvidence | None:
    """The ``BlendEvidence`` of a zone from every method's image of its validation period (``period_methods``),
    or None when the run did not predict it."""
    validation = zone_periods(zone.first, zone.last, config).validation
    check = {key: values for key, values in methods.items() if "model" in values
             and validation_part(key[0], validation) == "check"}
    if not check:
        return None
    board = Scoreboard()
    candidates = sorted({fallback_method(config), "ema"})
    for (origin, lead), values in check.items():
        truth = stack[origin + lead - zone.first]
        for method in ("model", *candidates):
            board.add(zone.name, origin, lead, method, image_mse(_as_written(values[method], config), truth,
                                                                 config.data.fill_value, config.data.scale),
                      "validation")
    return BlendEvidence(board, {name: fit_sums(check, stack, zone.first, config, name) for name in candidates})


def _validated(board: Scoreboard, method: str, reference: str, config: Config) -> tuple[bool, str]:
    """Whether ``method`` beats ``reference`` on a board of check images (the upper end of the
    paired-bootstrap interval of their RMSE ratio below 1, over at least ``MIN_VALIDATION_ORIGINS``
    origins), and the interval in words."""
    evaluate = config.evaluate
    interval = paired_bootstrap(board, method, reference, max(evaluate.bootstrap, 200), evaluate.confidence,
                                seed=config.seed)
    said = (f"RMSE {method}/{reference} {interval['ratio']:.3f} [{interval['low']:.3f}–{interval['high']:.3f}] "
            f"on {interval['images']} check images")
    if interval["origins"] < MIN_VALIDATION_ORIGINS:
        return False, f"{said} from only {interval['origins']} origin(s), fewer than {MIN_VALIDATION_ORIGINS}"
    return interval["high"] < 1, said


def fallback_method(config: Config) -> str:
    """The baseline the model is blended with: ``postprocess.fallback``, or with ``base`` the base the
    network corrects (``model.base``)."""
    chosen = config.postprocess.fallback
    return config.model.base if chosen == "base" else chosen


def decide_blends(evidence: dict[str, BlendEvidence | None], config: Config) -> dict[str, Blend]:
    """Every zone's ``Blend`` from the check part of the validation period.

    With ``postprocess.model_weight: fit`` the fallback is ``fallback_method`` (the base, ``model.base``,
    unless ``postprocess.fallback`` names another baseline); with ``postprocess.shrink`` a fallback other
    than the EMA must itself beat the EMA on the check images, else
    the fallback is the EMA (the competition's reference), and the model's weight is 0 unless the model
    beats the fallback there. With ``postprocess.decision: pooled`` both questions are answered once, on
    the check images of all zones together (the zones share the pre-trained network), and each zone's
    least-squares weight is shrunk towards the pooled one as if the pooled weight were worth one average
    zone's evidence: w_z = (n_z + k·w) / (d_z + k), k = Σ d / zones, clipped to [0, 1] (n, d the sums of
    ``fit_sums``). With ``zone`` every zone answers on its own images with its own weight.
    """
    preferred, setting, shrink = fallback_method(config), config.postprocess.model_weight, config.postprocess.shrink
    if setting != "fit":
        return {zone: Blend(preferred, float(setting), f"set (postprocess.model_weight {setting})")
                for zone in evidence}
    blends = {zone: Blend("ema" if shrink else preferred, 0.0, "no validation predictions (or no validation "
                          f"period): {'ema' if shrink else preferred} alone") for zone, found in evidence.items()
              if found is None}
    present = [zone for zone, found in evidence.items() if found is not None]
    groups = [present] if config.postprocess.decision == "pooled" and present else [[zone] for zone in present]
    for group in groups:
        board = Scoreboard(score for zone in group for score in evidence[zone].board.scores)
        where = f"pooled over {len(group)} zone(s)" if len(group) > 1 else "this zone"
        fallback, notes = preferred, []
        if shrink and preferred != "ema":
            better, said = _validated(board, preferred, "ema", config)
            fallback = preferred if better else "ema"
            notes.append(f"fallback {fallback} ({where}: {said}{', below 1' if better else ', not below 1'})")
        sums = [evidence[zone].sums[fallback] for zone in group]
        pooled = _weight(sum(n for n, _ in sums), sum(d for _, d in sums))
        prior = sum(d for _, d in sums) / len(group)
        weights = {zone: _weight(n + prior * pooled, d + prior) if len(group) > 1 else _weight(n, d)
                   for zone, (n, d) in zip(group, sums)}
        better, said = _validated(board, "model", fallback, config) if shrink else (True, "")
        for zone in group:
            own = (f"{weights[zone]:.2f}, pooled {pooled:.2f}" if len(group) > 1 else f"{weights[zone]:.2f}")
            if not shrink:
                reason = f"fitted on the check half of validation ({own})"
            elif better:
                reason = f"fitted on the check half of validation ({own}): {where}: {said}, below 1"
            else:
                reason = (f"shrunk to 0 ({fallback} alone): {where}: {said} does not lie below 1 "
                          f"(fitted {own})")
            blends[zone] = Blend(fallback, weights[zone] if better else 0.0, "; ".join([reason, *notes]))
    return blends


def untrained_blend(zone: Zone, config: Config) -> Blend:
    """The ``Blend`` of a zone too short to train on (``origins.trainable``): the EMA alone, which needs no
    fitted parameter and no validation period."""
    return Blend("ema", 0.0, f"{zone.last - zone.first + 1} months, fewer than the "
                             f"{minimum_training_months(config)} a training period needs: the EMA alone")


def scored_path(run_dir: Path, zone: str, period: str) -> Path:
    """``<run>/predictions/<period>/<zone>-<period>.tif``."""
    return Path(run_dir) / "predictions" / period / f"{zone}-{period}.tif"


def write_scored(path: Path, images: dict[tuple[int, int], dict[str, np.ndarray]], profile: GeoProfile,
                 config: Config) -> Path:
    """One int16 GeoTIFF of a zone's scored images: a band per (method, origin, lead), atomically.

    Bands are ordered by method (``SAVED_METHODS``), then origin, then lead; each band's description is
    ``<method> origin <o> lead <l> month <o + l>``, and the file's tags list them as JSON (``BANDS``).
    """
    keys = sorted(images)
    bands = [(method, origin, lead) for method in SAVED_METHODS for origin, lead in keys
             if method in images[origin, lead]]
    options = dict(driver="GTiff", height=profile.height, width=profile.width, count=len(bands),
                   dtype="int16", crs=profile.crs, transform=profile.affine, compress="deflate",
                   interleave="band", BIGTIFF="IF_SAFER")
    with atomic_path(path) as temporary, warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(temporary, "w", **options) as dataset:
            for index, (method, origin, lead) in enumerate(bands, start=1):
                dataset.write(images[origin, lead][method], index)
                dataset.set_band_description(index, f"{method} origin {origin} lead {lead} month {origin + lead}")
            dataset.update_tags(BANDS=json.dumps([list(band) for band in bands]), TIFFTAG_SOFTWARE="phenocast")
    return path


def read_scored(path: Path) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """The images of a ``write_scored`` file: {(origin, lead): {method: int16 (h, w)}}."""
    with rasterio.open(path) as dataset:
        bands = json.loads(dataset.tags()["BANDS"])
        images: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for index, (method, origin, lead) in enumerate(bands, start=1):
            images.setdefault((origin, lead), {})[method] = dataset.read(index)
    return images


def _as_written(image: np.ndarray, config: Config) -> np.ndarray:
    """An image in stored units as it is written: int16, rounded, clipped."""
    return to_int16(image, config.data.fill_value, config.data.valid_range)


def period_methods(zone: Zone, stack: np.ndarray, config: Config, run_dir: Path, period: str,
                   fitted: FittedBaselines, oracle: dict | None) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """Every method's float32 image of every image of a period: the baselines, the oracle where known
    and, when the run predicted the period, the model (its missing pixels take the base's value), and on
    the test period of a measured refit (``origins.measured_refit``) the refit's raw forecast (``refit``)."""
    images = period_images(zone.first, zone.last, config, period)
    methods = ZoneBaselines(stack, config, zone.first, fitted).forecasts(images)
    base = config.model.base
    sources = {"model": raw_path(run_dir, zone.name, period)}
    if period == "test" and measured_refit(config):
        sources["refit"] = raw_path(run_dir, zone.name, REFIT_TEST)
    for method, path in sources.items():
        if path.is_file():
            for key, image in model_images(path, zone, stack, config, images).items():
                methods[key][method] = baselines.fill_gaps(image, methods[key][base])
    for key in methods:
        if oracle is not None and key in oracle:
            methods[key]["oracle"] = oracle[key].astype(np.float32)
    return methods


def _zone_inputs(zone: Zone, config: Config, run_dir: Path, log: Callable[[str], None] = print
                 ) -> tuple[np.ndarray, FittedBaselines]:
    """A zone's months (int16 stack) and its baselines fitted on the training period, as the run saved them
    (``forecasters.saved_baselines``)."""
    stack = read_zone(zone, config.data.fill_value, config.data.valid_range)
    return stack, saved_baselines(zone, config, run_dir, stack, log)


def zone_evidence(zone: Zone, config: Config, run_dir: Path, log: Callable[[str], None] = print
                  ) -> tuple[BlendEvidence | None, FittedBaselines]:
    """The ``BlendEvidence`` of a zone (None without validation predictions) and its fitted baselines."""
    stack, fitted = _zone_inputs(zone, config, run_dir, log)
    if zone_periods(zone.first, zone.last, config).validation is None:
        return None, fitted
    methods = period_methods(zone, stack, config, run_dir, "validation", fitted, None)
    return blend_evidence(zone, stack, config, methods), fitted


def postprocess_zone(zone: Zone, config: Config, run_dir: Path, decided: Blend, fitted: FittedBaselines | None = None,
                     log: Callable[[str], None] = print) -> ZoneResult:
    """Score the validation and test periods, apply the zone's blend (``decide_blends``), write the scored
    images and the forecast GeoTIFFs of one zone.

    Raises:
      FileNotFoundError: the run has no forecast predictions for the zone (one that can train).
    """
    fill, scale = config.data.fill_value, config.data.scale
    forecast_path = raw_path(run_dir, zone.name, "forecast")
    trained = trainable(zone.first, zone.last, config)
    if trained and not forecast_path.is_file():
        raise FileNotFoundError(f"no forecast predictions for zone {zone.name} in {forecast_path.parent}")
    if fitted is None:
        stack, fitted = _zone_inputs(zone, config, run_dir, log)
    else:
        stack = read_zone(zone, fill, config.data.valid_range)
    oracle = load_oracle(config.data.dir, zone.name)
    board = Scoreboard()
    fallback, weight = decided.fallback, decided.weight

    def score(key: tuple[int, int], method: str, image: np.ndarray, period: str) -> None:
        truth = stack[key[0] + key[1] - zone.first]
        board.add(zone.name, key[0], key[1], method, image_mse(image, truth, fill, scale), period)

    result = ZoneResult(zone.name, [], weight, decided.reason, fallback, fitted=fitted.to_dict())
    for period in zone_periods(zone.first, zone.last, config).scored:
        methods = period_methods(zone, stack, config, run_dir, period.name, fitted, oracle)
        scored, saved = {}, {}
        for key, values in methods.items():
            scored[key] = {method: _as_written(image, config) for method, image in values.items()}
            if "model" in values:
                scored[key][SUBMITTED] = _as_written(blend(values["model"], values[fallback], weight), config)
            for method, image in scored[key].items():
                score(key, method, image, period.name)
            saved[key] = {method: scored[key][method] for method in SAVED_METHODS if method in scored[key]}
        if any("model" in values for values in methods.values()):
            result.scored_files[period.name] = write_scored(scored_path(run_dir, zone.name, period.name), saved,
                                                            zone.profile, config)
    result.scores = board
    result.submission_model = load_meta(forecast_path).get("model") if trained else None
    result.trained_through = None if not trained else (
        refit_end(zone.first, zone.last, config) if config.finetune.refit
        else zone_periods(zone.first, zone.last, config).training_end)
    never_valid = ~(stack != fill).any(axis=0)
    origin = forecast_origin(zone.last, config)
    leads = forecast_leads(zone.last, config)
    forecast = (model_images(forecast_path, zone, stack, config, [(origin, lead) for lead in leads]) if trained
                else {})  # a zone too short to train on: the fallback (the EMA, ``untrained_blend``) alone
    # the fallback of the forecast, with the φ the network's base channels had (fitted on the training
    # period); the baselines already fill their gaps (climatology, persistence)
    bases = ZoneBaselines(stack, config, zone.first, fitted).forecasts([(origin, lead) for lead in leads])
    for lead in leads:
        reference = bases[origin, lead][fallback]
        values = (blend(baselines.fill_gaps(forecast[origin, lead], reference), reference, weight) if trained
                  else reference.copy())
        values[never_valid] = np.nan  # permanently nodata → fill
        path = run_dir / "predictions" / month_file_name(zone.name, origin + lead)
        result.files.append(write_geotiff(path, values, zone.profile, fill, config.data.valid_range,
                                          software="phenocast"))
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
    transform; values are within ``data.valid_range`` or equal ``data.fill_value``; no pixel is the fill
    value where the zone had valid data in any of its last 12 months (``phenocast.evaluate`` scores such a
    pixel as a forecast of NDVI 0).
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
        observed: dict[str, np.ndarray] = {}
        for name in sorted(set(names) & set(expected)):
            zone = expected[name][0]
            if zone.name not in observed:
                observed[zone.name] = recently_valid(zone, config)
            problems.extend(_check_member(archive.read(name), f"{path}!{name}", zone.profile, config,
                                          observed[zone.name]))
    return problems


def recently_valid(zone: Zone, config: Config, months: int = 12) -> np.ndarray:
    """bool (h, w): pixels with valid data in any of the zone's last ``months`` months."""
    valid = np.zeros(zone.shape, dtype=bool)
    for month in range(max(zone.first, zone.last - months + 1), zone.last + 1):
        valid |= read_month(zone, month, config.data.fill_value, config.data.valid_range) != config.data.fill_value
    return valid


def _check_member(data: bytes, where: str, profile: GeoProfile, config: Config,
                  observed: np.ndarray | None = None) -> list[str]:
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
        if observed is not None and values.shape == observed.shape:
            unforecast = (values == config.data.fill_value) & observed
            if unforecast.any():
                problems.append(f"{where}: {int(unforecast.sum())} pixel(s) are the fill value where the zone "
                                f"has valid data in its last 12 months (scored as a forecast of NDVI 0 there)")
    return problems


def headline_period(board: Scoreboard) -> str:
    """The period a run is judged on: test, or validation when there is none."""
    return "test" if "test" in board.periods else "validation"


def best_baseline(pooled: dict[str, float | None]) -> str | None:
    """The best baseline: the lowest pooled RMSE among ``baselines.BASELINES`` in ``pooled`` (the headline
    period's, ``headline_period``)."""
    present = [m for m in baselines.BASELINES if pooled.get(m) is not None]
    return min(present, key=lambda m: pooled[m]) if present else None


def headline(board: Scoreboard, config: Config) -> dict:
    """The numbers a run is judged by, on its test period (validation when there is none): for the model
    and the submitted blend, the pooled RMSE, its ratio to the EMA and to the best baseline (lowest
    pooled RMSE among ``baselines.BASELINES`` on the same period) with paired-bootstrap intervals over
    forecast origins (``metrics.paired_bootstrap``), the images where it beats the EMA, and on the
    sample the share of the EMA → oracle gap it closes. ``text`` says it in one sentence."""
    period = headline_period(board)
    scored = board.restrict_period(period)
    pooled = scored.summary()["pooled"]
    best = best_baseline(pooled)
    evaluate = config.evaluate
    result = {"period": period, "images": len({(s.zone, s.origin, s.lead) for s in scored.scores}),
              "origins": len({s.origin for s in scored.scores}), "zones": len(scored.zones),
              "best_baseline": best, "chose_nothing": period == "test", "methods": {}}
    for method in ("model", SUBMITTED):
        if pooled.get(method) is None or pooled.get("ema") is None:
            continue
        entry = {"rmse": pooled[method]}
        for reference, key in (("ema", "over_ema"), (best, "over_best_baseline")):
            if evaluate.bootstrap:
                interval = paired_bootstrap(scored, method, reference, evaluate.bootstrap, evaluate.confidence,
                                            seed=config.seed)
                entry[key], entry[f"{key}_interval"] = interval["ratio"], [interval["low"], interval["high"]]
                if reference == "ema":
                    entry["wins_over_ema"], entry["images"] = interval["wins"], interval["images"]
                    entry["bootstrap_block"] = interval["block"]
            else:
                entry[key], entry[f"{key}_interval"] = pooled[method] / pooled[reference], None
        if pooled.get("oracle") is not None and pooled["ema"] != pooled["oracle"]:
            entry["gap_closed"] = (pooled["ema"] - pooled[method]) / (pooled["ema"] - pooled["oracle"])
        result["methods"][method] = entry
    if pooled.get("refit") is not None and pooled.get("model") is not None and evaluate.bootstrap:
        interval = paired_bootstrap(scored, "refit", "model", evaluate.bootstrap, evaluate.confidence,
                                    seed=config.seed)
        result["refit"] = {"rmse": pooled["refit"], "over_model": interval["ratio"],
                           "over_model_interval": [interval["low"], interval["high"]], "images": interval["images"],
                           "wins_over_model": interval["wins"]}
    result["text"] = headline_text(result, evaluate.confidence)
    return result


def years_after_training(board: Scoreboard, training_ends: dict[str, int], config: Config) -> list[dict]:
    """Every scored method's pooled RMSE in each year after the training period (``Scoreboard.by_year_after``:
    the validation years first, then the test years), with the submitted blend's ratio to the EMA and to the
    best baseline of the headline (``best_baseline``, named in each row), each with its paired-bootstrap
    interval: whether a gain that validation saw in the years it chose on holds in the later years nothing
    chose on, or fades."""
    evaluate = config.evaluate
    best = best_baseline(board.restrict_period(headline_period(board)).summary()["pooled"])
    rows = []
    for (period, year), scored in board.by_year_after(training_ends).items():
        summary = scored.summary()
        pooled = summary["pooled"]
        row = {"period": period, "year": year, "images": summary["images"], "origins": summary["origins"],
               "rmse": pooled, "best_baseline": best}
        for reference, key in (("ema", "blend_over_ema"), (best, "blend_over_best_baseline")):
            if pooled.get(SUBMITTED) is None or pooled.get(reference) is None:
                continue
            if evaluate.bootstrap:
                interval = paired_bootstrap(scored, SUBMITTED, reference, evaluate.bootstrap, evaluate.confidence,
                                            seed=config.seed)
                row[key] = [interval["ratio"], interval["low"], interval["high"]]
            else:
                row[key] = [pooled[SUBMITTED] / pooled[reference], None, None]
        rows.append(row)
    return rows


def headline_text(numbers: dict, confidence: float) -> str:
    """The headline in one sentence (Markdown)."""
    entry = numbers["methods"].get(SUBMITTED) or numbers["methods"].get("model")
    if entry is None:
        return f"no model predictions on the {numbers['period']} period"
    name = "the submitted forecast (blend)" if SUBMITTED in numbers["methods"] else "the model"

    def ratio(key: str) -> str:
        interval = entry.get(f"{key}_interval")
        bounds = f" ({confidence:.0%} interval {interval[0]:.3f}–{interval[1]:.3f})" if interval else ""
        return f"**{entry[key]:.3f}**{bounds}"

    caveat = "" if numbers["chose_nothing"] else " (these validation months also chose the model)"
    text = (f"on the {numbers['period']} period{caveat}, {numbers['images']} images from {numbers['origins']} "
            f"origins in {numbers['zones']} zone(s): {name} has RMSE {entry['rmse']:.4f}, {ratio('over_ema')} × "
            f"the EMA and {ratio('over_best_baseline')} × the best baseline ({numbers['best_baseline']})")
    if "wins_over_ema" in entry:
        text += f"; it beats the EMA on {entry['wins_over_ema']} of {entry['images']} images"
    if "gap_closed" in entry:
        share = round(100 * entry["gap_closed"]) + 0  # + 0: no "-0"
        text += (f"; it closes {share} % of the EMA → oracle gap" if share >= 0 else
                 f"; it widens the EMA → oracle gap by {-share} %")
    refit = numbers.get("refit")
    if refit is not None:
        low, high = refit["over_model_interval"]
        text += (f"; the refit (trained through the validation months, the selected epochs) scores "
                 f"**{refit['over_model']:.3f}** ({confidence:.0%} interval {low:.3f}–{high:.3f}) × the selected "
                 f"model, better on {refit['wins_over_model']} of {refit['images']} images")
    return text + "."


def write_scores(board: Scoreboard, path: Path, config: Config, extra: dict | None = None) -> dict:
    """``scores.json``: the headline, then per period (``test``, ``validation``) the RMSE per method, pooled,
    per zone and per lead, plus every image's score (``image_scores``) so reports can regroup them."""
    summary: dict = {"name": config.output.name, "data": config.data.dir, "headline": headline(board, config)}
    for period in reversed(board.periods):  # test first
        summary[period] = board.restrict_period(period).summary()
    summary.update(extra or {})
    summary["image_scores"] = [score.__dict__ for score in board.scores]
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return summary


def run_postprocess(config: Config, zones: list[Zone], log: Callable[[str], None] = print) -> dict:
    """Postprocess every zone of the run that has forecast predictions, and every zone too short to train on
    (``origins.trainable``: its EMA, ``untrained_blend``); zip and check when all have.

    Returns:
      {"zones": processed zone names, "missing": zones without predictions, "files": n, "zip": path or
      None, "scores": scores.json summary}.
    """
    run_dir = config.run_dir
    untrained = {zone.name for zone in zones if not trainable(zone.first, zone.last, config)}  # the EMA alone
    predicted = {zone.name for zone in zones if raw_path(run_dir, zone.name, "forecast").is_file()}
    present = [zone for zone in zones if zone.name in predicted | untrained]
    missing = [zone.name for zone in zones if zone not in present]
    if not predicted:
        raise PhenocastError(f"expected window predictions in {run_dir / 'predictions' / 'raw'}, found "
                             f"none; run python run.py --stage predict first")
    # first the evidence of every zone (the check half of its validation period), then one decision
    evidence, fitted = {}, {}
    for zone in present:
        evidence[zone.name], fitted[zone.name] = zone_evidence(zone, config, run_dir, log)
    decided = {**decide_blends(evidence, config), **{zone.name: untrained_blend(zone, config) for zone in present
                                                     if zone.name in untrained}}
    results: list[ZoneResult] = []
    for zone in present:
        result = postprocess_zone(zone, config, run_dir, decided[zone.name], fitted[zone.name], log)
        results.append(result)
        log(f"postprocess {zone.name}: {len(result.files)} GeoTIFF(s), " + (
            f"{result.fallback} + {result.model_weight:.2f}·(model − {result.fallback}): "
            if result.submission_model is not None else "") + result.weight_reason)
    board = Scoreboard(score for result in results for score in result.scores.scores)
    periods, validations = {}, {}
    for zone in zones:
        spans = zone_periods(zone.first, zone.last, config)
        validations[zone.name] = spans.validation
        periods[zone.name] = {"months": [zone.first, zone.last], "training_end": spans.training_end,
                              **{p.name: [p.start, p.end] for p in spans.scored},
                              "shortened": shortened_periods(zone.name, zone.first, zone.last, config) is not None,
                              "trained": zone.name not in untrained}
    validation = board.restrict_period("validation")
    parts = {part: Scoreboard(score for score in validation.scores
                              if validation_part(score.origin, validations[score.zone]) == part).summary()["pooled"]
             for part in VALIDATION_PARTS} if validation.scores else {}
    summary = write_scores(board, run_dir / "scores.json", config, {
        "validation_parts": parts,  # pooled RMSE of the select half (chose) and the check half (checked)
        "years_after_training": years_after_training(
            board, {zone: values["training_end"] for zone, values in periods.items()}, config),
        "model_weight": {result.zone: {"base": config.model.base, "fallback": result.fallback,
                                       "weight": result.model_weight, "reason": result.weight_reason}
                         for result in results},
        "blend": config.postprocess.blend,
        "submission": {result.zone: {"method": SUBMITTED, "model": result.submission_model,
                                     "trained_through": result.trained_through} for result in results},
        "periods": periods,
        "fitted_baselines": {result.zone: result.fitted for result in results},
        "scored_files": {result.zone: {period: str(path.relative_to(run_dir)) for period, path in
                                       result.scored_files.items()} for result in results}})
    log(f"postprocess: {summary['headline']['text']}")
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
    save_config(config, run_dir / "config.resolved.yaml")
    return {"zones": [result.zone for result in results], "missing": missing,
            "files": sum(len(result.files) for result in results), "zip": zip_path, "scores": summary}
