"""The baselines of a zone as fitted forecasters: fitted once on the zone's training period, asked for
``forecast(origin, lead)``, their fitted parameters saved once per run and zone; and the backtest and the
file scoring that put them (and any folder of forecasts) on a ``Scoreboard``.

What each baseline fits, and from which months (positions ``first .. fit_end`` of the zone, ``fit_end =
origins.fit_end``: the training period's end; nothing after it):

- persistence, climatology, ema: nothing (the EMA's α is the setting ``evaluate.ema_alpha``);
- ema_pixel: α per pixel from ``evaluate.alpha_grid`` (``baselines.fit_alpha``) on months first..fit_end;
- damped: φ per lead (and calendar phase with ``evaluate.damped_by_month``) by least squares
  (``features.fit_damped``) on the images ``origins.fitting_images(first, fit_end, horizon)``, with
  ``evaluate.damped_reference: fitted`` the weighted mean's β with it (``features.fit_damped_reference``);
  the same fit is the base of the network's input channels under ``model.base: damped``.

The fitted parameters live in ``<run>/baselines/``: ``<zone>-damped.json`` (φ and its fitting image counts)
and ``<zone>-ema_pixel.npz`` (the α map), each with the key it was fitted from: the zone's input files
(``zones.input_fingerprint``), its first and last month, and the settings the fit reads (``data.*`` and
``FIT_SETTINGS``). ``saved_baselines`` / ``saved_damped`` read a file whose key matches and otherwise
fit, write and log: the pipeline fits φ once per zone for its base channels, then postprocessing, the
report (through ``scores.json``) and ``python -m phenocast.evaluate`` read it. A stale file (inputs or
settings changed) is refitted and overwritten: the fit is a function of its key alone.

Every forecast is float32 ``(height, width)`` in stored units, with the fallbacks of
``baselines.baseline_forecasts`` (every method covers the same pixels).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from phenocast import baselines, features
from phenocast.config import Config, flatten
from phenocast.errors import PhenocastError
from phenocast.io import atomic_path, atomic_write_text
from phenocast.metrics import Scoreboard, image_mse
from phenocast.origins import fit_end, fitting_images, period_images
from phenocast.zones import Zone, input_fingerprint, natural_key, read_zone

ORACLE_FOLDER = "_oracle"
BASELINES_FOLDER = "baselines"
# the settings each fitted baseline reads beyond data.* (its key: a change refits it)
FIT_SETTINGS = {"ema_pixel": ("evaluate.alpha_grid", "evaluate.ema_alpha"), "damped": features.DAMPED_SETTINGS}

Image = tuple[int, int]  # (origin month, lead)


class ZoneForecaster(Protocol):
    """A forecaster of one zone, fitted on its training period."""

    def forecast(self, origin: int, lead: int) -> np.ndarray:
        """float32 (height, width), stored units: the forecast of month ``origin + lead`` made at ``origin``."""


@dataclass
class FittedBaselines:
    """The fitted parameters of the baselines of one zone, learned from months <= ``end``."""

    end: int  # the last month the fit saw
    alpha_map: np.ndarray  # per-pixel α of ``ema_pixel``, float32 (height, width)
    damped: features.DampedFit

    def to_dict(self) -> dict:
        return {"fit_end": self.end, "damped": self.damped.to_dict()}


# ---- fitting -------------------------------------------------------------------------------------------

def fit_alpha_zone(stack: np.ndarray, config: Config, first: int, end: int) -> np.ndarray:
    """The per-pixel α of ``ema_pixel``, fitted on the zone's months ``first .. end``: float32 (h, w).

    Args:
      stack: int16 (months, height, width); position 0 is month ``first``.
      end: the last month the fit may use (``origins.fit_end``).
    """
    evaluate = config.evaluate
    return baselines.fit_alpha(stack, end - first + 1, config.data.fill_value, evaluate.alpha_grid,
                               evaluate.ema_alpha)


def fit_damped_zone(stack: np.ndarray, config: Config, first: int, end: int) -> features.DampedFit:
    """The damped baseline's φ of a zone, fitted on its months ``first .. end`` (``origins.fit_end``): the
    one fit that the ``damped`` baseline and ``model.base: damped`` share."""
    evaluate = config.evaluate
    images = [(origin - first, lead) for origin, lead in fitting_images(first, end, config.predict.horizon)]
    return features.fit_damped_reference(stack, images, config.data.fill_value, evaluate.ema_alpha,
                                         evaluate.damped_smoothing, config.predict.horizon,
                                         evaluate.damped_reference, evaluate.alpha_grid,
                                         by_month=evaluate.damped_by_month, fill=evaluate.damped_fill)


def fit_baselines(stack: np.ndarray, config: Config, first: int, end: int) -> FittedBaselines:
    """Fit the per-pixel α and the damped φ of a zone on its months ``first .. end`` (nothing saved).

    Args:
      stack: int16 (months, height, width); position 0 is month ``first``.
      end: the last month the fit may use (``origins.fit_end``).
    """
    return FittedBaselines(end, fit_alpha_zone(stack, config, first, end), fit_damped_zone(stack, config, first, end))


# ---- fitted once per run and zone ----------------------------------------------------------------------

def fit_key(zone: Zone, config: Config, method: str) -> dict:
    """What a fitted baseline of a zone is computed from: its input files, months and settings (JSON)."""
    reads = (features.damped_settings(config.evaluate.damped_reference) if method == "damped"
             else FIT_SETTINGS[method])
    settings = {key: value for key, value in flatten(config.to_dict()).items()
                if key.startswith("data.") or key in reads}
    key = {"inputs": input_fingerprint(zone), "first": zone.first, "last": zone.last, "settings": settings}
    return json.loads(json.dumps(key))  # as it reads back


def baselines_path(run_dir: Path, zone: str, method: str) -> Path:
    """``<run>/baselines/<zone>-damped.json`` or ``<zone>-ema_pixel.npz``."""
    return Path(run_dir) / BASELINES_FOLDER / f"{zone}-{method}.{'json' if method == 'damped' else 'npz'}"


def _read_damped(path: Path, key: dict, by_month: bool) -> features.DampedFit | None:
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved.get("key") != key or "images" not in saved:  # stale, or written before the counts were kept
        return None
    return features.DampedFit(np.asarray(saved["phi"], np.float64), np.asarray(saved["images"], np.int64), by_month,
                              saved.get("beta"), saved.get("squared_error", float("nan")))


def _read_alpha(path: Path, key: dict) -> np.ndarray | None:
    if not path.is_file():
        return None
    with np.load(path) as archive:
        if json.loads(str(archive["key"])) != key:
            return None
        return archive["alpha"].astype(np.float32)


def _stack_reader(zone: Zone, config: Config, stack: np.ndarray | None) -> Callable[[], np.ndarray]:
    """The zone's int16 stack: ``stack`` if given, else read on first use (a cached fit reads nothing)."""
    if stack is not None:
        return lambda: stack
    return functools.cache(lambda: read_zone(zone, config.data.fill_value, config.data.valid_range))


def saved_damped(zone: Zone, config: Config, run_dir: Path, stack: np.ndarray | None = None,
                 log: Callable[[str], None] = print) -> features.DampedFit:
    """The zone's damped φ (``fit_damped_zone`` on its training period), read from
    ``<run>/baselines/<zone>-damped.json`` when its key matches, else fitted and written there.

    Args:
      stack: the zone's int16 stack if already read (default: read when a fit is needed).
    """
    return _saved_damped(zone, config, run_dir, _stack_reader(zone, config, stack), log)


def _saved_damped(zone: Zone, config: Config, run_dir: Path, stack: Callable[[], np.ndarray],
                  log: Callable[[str], None]) -> features.DampedFit:
    path, key = baselines_path(run_dir, zone.name, "damped"), fit_key(zone, config, "damped")
    fit = _read_damped(path, key, config.evaluate.damped_by_month)
    if fit is None:
        end = fit_end(zone.first, zone.last, config)
        fit = fit_damped_zone(stack(), config, zone.first, end)
        reference = {} if fit.beta is None else {"beta": fit.beta, "squared_error": fit.squared_error}
        atomic_write_text(path, json.dumps({"key": key, "phi": fit.phi.tolist(), "images": fit.images.tolist(),
                                            **reference}) + "\n")
        beta = "" if fit.beta is None else f" over the weighted mean of β {fit.beta:g}"
        log(f"baselines: zone {zone.name} damped φ per lead {fit.to_dict()['phi']}{beta} fitted on months "
            f"{zone.first}..{end} → {path}")
    return fit


def _saved_alpha(zone: Zone, config: Config, run_dir: Path, stack: Callable[[], np.ndarray],
                 log: Callable[[str], None]) -> np.ndarray:
    path, key = baselines_path(run_dir, zone.name, "ema_pixel"), fit_key(zone, config, "ema_pixel")
    alpha = _read_alpha(path, key)
    if alpha is None:
        end = fit_end(zone.first, zone.last, config)
        alpha = fit_alpha_zone(stack(), config, zone.first, end)
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.savez(handle, key=np.array(json.dumps(key)), alpha=alpha)
        log(f"baselines: zone {zone.name} per-pixel α (median {float(np.median(alpha)):.2f}) fitted on months "
            f"{zone.first}..{end} → {path}")
    return alpha


def saved_baselines(zone: Zone, config: Config, run_dir: Path, stack: np.ndarray | None = None,
                    log: Callable[[str], None] = print) -> FittedBaselines:
    """The zone's ``FittedBaselines``: each parameter read from ``<run>/baselines/`` when its key matches,
    else fitted on the training period and written there (``saved_damped``)."""
    reader = _stack_reader(zone, config, stack)
    return FittedBaselines(fit_end(zone.first, zone.last, config), _saved_alpha(zone, config, run_dir, reader, log),
                           _saved_damped(zone, config, run_dir, reader, log))


# ---- forecasting ---------------------------------------------------------------------------------------

class ZoneBaselines:
    """Every baseline of one zone with its fitted parameters: ``forecast(origin, lead)`` gives each
    method's image (``forecaster(method)`` one method's ``ZoneForecaster``).

    Args:
      stack: int16 (months, height, width), nodata = ``data.fill_value``; position 0 is month ``first``.
      fitted: the fitted parameters (``fit_baselines``, ``saved_baselines``).
    """

    def __init__(self, stack: np.ndarray, config: Config, first: int, fitted: FittedBaselines):
        self.stack, self.config, self.first, self.fitted = stack, config, first, fitted

    @classmethod
    def fit(cls, stack: np.ndarray, config: Config, first: int) -> ZoneBaselines:
        """Fitted on the training period of the stack (``origins.fit_end``), nothing saved."""
        end = fit_end(first, first + len(stack) - 1, config)
        return cls(stack, config, first, fit_baselines(stack, config, first, end))

    def forecast(self, origin: int, lead: int) -> dict[str, np.ndarray]:
        """{method: float32 (height, width)}: every baseline's forecast of month ``origin + lead``."""
        return self.forecasts([(origin, lead)])[origin, lead]

    def forecaster(self, method: str) -> ZoneForecaster:
        """One method (``baselines.BASELINES``) as a ``ZoneForecaster``."""
        if method not in baselines.BASELINES:
            raise ValueError(f"expected a baseline among {', '.join(baselines.BASELINES)}, got {method!r}")
        return _Method(self, method)

    def forecasts(self, images: list[Image], cache: dict | None = None) -> dict[Image, dict[str, np.ndarray]]:
        """Every baseline's forecast of the given (origin month, lead) images, one pass per origin.

        Args:
          cache: kept across calls on this zone (``baselines.baseline_forecasts``).

        Returns:
          {(origin, lead): {method: float32 (height, width)}}, stored units.
        """
        config, first = self.config, self.first
        cache = {} if cache is None else cache
        by_origin: dict[int, list[int]] = {}
        for origin, lead in images:
            by_origin.setdefault(origin, []).append(lead)
        result = {}
        for origin, leads in by_origin.items():
            targets = [origin + lead - first for lead in leads]
            forecasts = baselines.baseline_forecasts(
                self.stack, origin - first, targets, config.data.fill_value, config.evaluate.ema_alpha,
                self.fitted.alpha_map, cache, damped_fit=self.fitted.damped,
                smoothing=config.evaluate.damped_smoothing, fill=config.evaluate.damped_fill)
            for lead, target in zip(leads, targets):
                result[origin, lead] = {method: values[target] for method, values in forecasts.items()}
        return result


@dataclass
class _Method:
    baselines: ZoneBaselines
    method: str

    def forecast(self, origin: int, lead: int) -> np.ndarray:
        return self.baselines.forecast(origin, lead)[self.method]


def load_oracle(data_dir: str | Path, zone: str) -> dict[Image, np.ndarray] | None:
    """The sample's oracle forecasts {(origin month, lead): int16 image}, or None if there are none."""
    path = Path(data_dir) / ORACLE_FOLDER / f"{zone}-backtest.npz"
    if not path.is_file():
        return None
    with np.load(path) as archive:
        origins, leads, forecast = archive["origins"], archive["leads"], archive["forecast"]
    return {(int(origin), int(lead)): forecast[i, j]
            for i, origin in enumerate(origins) for j, lead in enumerate(leads)}


# ---- scoring -------------------------------------------------------------------------------------------

def score_images(board: Scoreboard, zone: str, images: dict[Image, dict[str, np.ndarray]],
                 stack: np.ndarray, first: int, config: Config, period: str) -> None:
    """Add the score of every method of every image to ``board`` (images without valid truth: none)."""
    fill, scale = config.data.fill_value, config.data.scale
    for (origin, lead), methods in images.items():
        truth = stack[origin + lead - first]
        for method, values in methods.items():
            board.add(zone, origin, lead, method, image_mse(values, truth, fill, scale), period)


def backtest_stack(stack: np.ndarray, config: Config, zone: str = "zone", first: int = 1,
                   periods: tuple[str, ...] = ("validation", "test"), scoreboard: Scoreboard | None = None,
                   oracle: dict[Image, np.ndarray] | None = None,
                   fitted: FittedBaselines | None = None) -> Scoreboard:
    """Backtest every baseline on one zone's stack over its validation and test periods.

    Args:
      stack: int16 (months, height, width), nodata = ``data.fill_value``; position 0 is month ``first``.
      config: uses data.*, predict.horizon, evaluate.*, sequence.origins.
      zone: the zone's name in the scores.
      first: month index of position 0.
      periods: the periods to score (``origins.PERIODS``).
      scoreboard: add to this one (default: a new one).
      oracle: {(origin, lead): int16 image} scored as method ``oracle`` where present.
      fitted: the fitted baselines (default: fitted on the zone's training period).

    Returns:
      The scoreboard; every score carries its period.
    """
    last = first + len(stack) - 1
    scoreboard = Scoreboard() if scoreboard is None else scoreboard
    zone_baselines = (ZoneBaselines.fit(stack, config, first) if fitted is None
                      else ZoneBaselines(stack, config, first, fitted))
    cache: dict = {}
    for period in periods:
        forecasts = zone_baselines.forecasts(period_images(first, last, config, period), cache)
        if oracle is not None:
            for key, methods in forecasts.items():
                if key in oracle:
                    methods["oracle"] = oracle[key]
        score_images(scoreboard, zone, forecasts, stack, first, config, period)
    return scoreboard


def backtest_zones(zones: list[Zone], config: Config, run_dir: Path | None = None, progress: bool = True,
                   log: Callable[[str], None] = print) -> Scoreboard:
    """Read each zone (one at a time) and backtest the baselines on it, with the parameters saved in
    ``run_dir`` (``saved_baselines``; fitted without saving when None)."""
    scoreboard = Scoreboard()
    for zone in tqdm(zones, desc="zones", unit="zone", disable=not progress or len(zones) < 2):
        with tqdm(total=len(zone.months), desc=f"read {zone.name}", unit="month", leave=False,
                  disable=not progress) as bar:
            stack = read_zone(zone, config.data.fill_value, config.data.valid_range, progress=bar.update)
        fitted = None if run_dir is None else saved_baselines(zone, config, run_dir, stack, log)
        backtest_stack(stack, config, zone.name, zone.first, scoreboard=scoreboard,
                       oracle=load_oracle(config.data.dir, zone.name), fitted=fitted)
    return scoreboard


def score_predictions(folder: str | Path, zones: list[Zone], config: Config, method: str = "predictions"
                      ) -> Scoreboard:
    """Score GeoTIFFs ``<zone>-<NNN>.tif`` (flat or in ``<zone>/`` sub-folders) against the zones' truth.

    The lead of a file is counted from the zone's last month before the earliest predicted month of
    that zone. Months without truth (the future) or with no valid truth pixel are not scored. A pixel
    with valid truth and a fill (or out-of-range) prediction is scored as a forecast of NDVI 0.
    """
    from phenocast.zones import read_month, read_profile

    folder = Path(folder)
    if not folder.is_dir():
        raise PhenocastError(f"expected a folder of predicted GeoTIFFs, found no folder {folder}")
    by_zone = {zone.name: zone for zone in zones}
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.rglob("*.tif")):
        name, _, index = path.stem.rpartition("-")
        if name in by_zone and index.isdigit():
            found.setdefault(name, {})[int(index)] = path
    if not found:
        raise PhenocastError(
            f"expected predicted files named <zone>-<NNN>.tif for zones {', '.join(by_zone)} in {folder}, "
            f"found none")
    scoreboard = Scoreboard()
    fill, valid_range = config.data.fill_value, config.data.valid_range
    for name in sorted(found, key=natural_key):
        zone = by_zone[name]
        origin = min(found[name]) - 1
        for month, path in sorted(found[name].items()):
            if month not in zone.files:
                continue
            profile = read_profile(path)
            if (profile.height, profile.width) != zone.shape:
                raise PhenocastError(
                    f"expected a {zone.shape[0]}×{zone.shape[1]} prediction like zone {name}, got "
                    f"{profile.height}×{profile.width} in {path}")
            prediction = read_month(_single_file_zone(path, profile), month, fill, valid_range)
            truth = read_month(zone, month, fill, valid_range)
            scored = np.where(prediction == fill, 0, prediction)  # a missing forecast counts as NDVI 0
            scoreboard.add(name, origin, month - origin, method, image_mse(scored, truth, fill,
                                                                            config.data.scale))
    return scoreboard


def _single_file_zone(path: Path, profile) -> Zone:
    name, _, index = path.stem.rpartition("-")
    return Zone(name=name, folder=path.parent, files={int(index): path}, profile=profile)
