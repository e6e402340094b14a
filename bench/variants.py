"""Does a config hold up on zones unlike the one it was chosen on? Variants of one real zone, run together.

A config chosen on one real zone (``configs/small.yaml`` on Benelux) is meant for zones nobody measured:
other sizes, sensors, climates. This bench writes nine variants of a real zone that stand in for them, runs
the real pipeline on all nine together (they share the pre-trained network, as a user's zones do), and
prints, per zone and pooled, what validation saw and what the test period then scored:

- ``small``: an 8 × 8 crop (the smallest zones the competition has);
- ``whole``: the zone as it is;
- ``short``: a 12 × 20 crop whose last ``SHORT_CUT`` months are dropped (the periods end earlier);
- ``cloudy``: a 16 × 16 crop with ``CLOUD_SHARE`` of the pixels set to fill at random every month (a
  sensor with gaps);
- ``shifted``: a 10 × 24 crop whose first ``SHIFT`` months are dropped and the rest renumbered, so the
  seasons fall 6 months off the calendar the config declares (the other hemisphere's calendar);
- ``flat``: a 14 × 14 crop whose values are pulled to ``FLAT_SCALE`` of their distance from the zone's
  mean, with noise of ``FLAT_NOISE`` NDVI (a low-amplitude, semi-arid-like zone);
- ``snowy``: a 16 × 16 crop with ``SNOW_SHARE`` of the pixels set to fill at random in the zone's
  ``SNOW_MONTHS`` calendar months of lowest mean NDVI, every year (a boreal zone: snow and winter cloud);
- ``noisy``: a 16 × 16 crop where ``NOISY_SHARE`` of the pixels at random every month are lowered by
  ``NOISY_DROP`` NDVI (uniform), not marked as fill (cloud residue a coarser cloud mask lets through);
- ``tropical``: a 14 × 20 crop whose seasonal curve (each pixel's mean per calendar month) is cut to
  ``TROPICAL_SEASON`` of its amplitude, its anomalies kept (a weakly seasonal zone where the anomaly is
  most of the signal).

Crops are clipped to the zone (a zone smaller than a crop gives it whole) and placed at the seed's offsets;
month numbers keep the zone's gaps. The columns, from the run's ``scores.json`` (each RMSE pooled over the
period's images; the test period chose nothing): validation model ÷ EMA and ÷ damped, test model ÷ EMA,
the submitted blend ÷ EMA and ÷ damped, the blend's weight on the model. Then the pooled test headline with
its 95 % paired-bootstrap intervals over forecast origins and the number of images.

Usage::

    python bench/variants.py --data ../shared/data/benelux-mod13a3 --set data.first_month=2
        [--zone Z1] [--config configs/small.yaml] [--set key=value …] [--seed 0] [--out outputs/variants]
        [--json results.json] [--last-months 60]

The variants are written once into ``<out>/data`` (kept when they exist) and the run goes to
``<out>/<config name>``: a rerun reuses finished stages, so an interrupted bench continues.
``--last-months N`` keeps each variant's last N months only (``<out>/data-lastN``, ``<config name>-lastN``):
short records, whose test and validation periods the pipeline shortens (``phenocast.origins.period_lengths``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from rasterio import windows  # noqa: E402

from phenocast.config import load_config  # noqa: E402
from phenocast.errors import PhenocastError, cli_main  # noqa: E402
from phenocast.io import atomic_write_text  # noqa: E402
from phenocast.zones import GeoProfile, Zone, discover_zones, month_file_name, read_zone, write_geotiff  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHORT_CUT = 14  # months dropped from the end of ``short``
CLOUD_SHARE = 0.15  # share of ``cloudy``'s pixels set to fill each month
SHIFT = 6  # months dropped from the start of ``shifted`` (its seasons move by as much)
FLAT_SCALE = 0.35  # ``flat``: values pulled to this share of their distance from the zone's mean
FLAT_NOISE = 0.015  # ``flat``: NDVI SD of the noise added
SNOW_MONTHS = 3  # ``snowy``: the calendar months of lowest mean NDVI that snow hides …
SNOW_SHARE = 0.8  # … in this share of the pixels
NOISY_SHARE = 0.1  # ``noisy``: share of the pixels lowered each month …
NOISY_DROP = (0.05, 0.3)  # … by this much NDVI (uniform)
TROPICAL_SEASON = 0.25  # ``tropical``: the seasonal curve's amplitude kept
VARIANTS = {  # name: (rows, columns of the crop or None for the whole zone, kind)
    "small": ((8, 8), "plain"),
    "whole": (None, "plain"),
    "short": ((12, 20), "short"),
    "cloudy": ((16, 16), "cloudy"),
    "shifted": ((10, 24), "shifted"),
    "flat": ((14, 14), "flat"),
    "snowy": ((16, 16), "snowy"),
    "noisy": ((16, 16), "noisy"),
    "tropical": ((14, 20), "tropical"),
}


def crop_profile(profile: GeoProfile, row: int, column: int, height: int, width: int) -> GeoProfile:
    """The georeference of the window (row, column, height, width) of a zone."""
    affine = windows.transform(windows.Window(column, row, width, height), profile.affine)
    return GeoProfile(height=height, width=width, crs=profile.crs, transform=tuple(affine)[:6])


def write_variants(zone: Zone, out: Path, fill_value: int, valid_range: list[int], scale: float,
                   seed: int = 0, last_months: int | None = None) -> dict[str, str]:
    """Write the ``VARIANTS`` of ``zone`` into ``out/<name>/<name>-NNN.tif``; with ``last_months`` only each
    variant's last ``last_months`` months (by month number, gaps included: a younger sensor's record).

    Returns:
      {zone name: the variant's description}.
    """
    rng = np.random.default_rng(seed)
    height, width = zone.shape
    months = sorted(zone.files)
    stack = read_zone(zone, fill_value, valid_range)  # gap months are all fill
    valid_values = stack[stack != fill_value]
    centre = float(valid_values.mean()) if valid_values.size else 0.0
    values = np.where(stack == fill_value, np.nan, stack.astype(np.float64))
    phases = (np.arange(len(stack)) + zone.first) % 12  # month number mod 12: a calendar month
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        season = np.stack([np.nanmean(values[phases == phase], axis=0) for phase in range(12)])
        season -= np.nanmean(season, axis=0)  # each pixel's seasonal curve around its mean
        snow_phases = np.argsort([np.nanmean(values[phases == phase]) for phase in range(12)])[:SNOW_MONTHS]
    described = {}
    for name, (size, kind) in VARIANTS.items():
        rows, columns = (height, width) if size is None else (min(size[0], height), min(size[1], width))
        row, column = int(rng.integers(0, height - rows + 1)), int(rng.integers(0, width - columns + 1))
        profile = crop_profile(zone.profile, row, column, rows, columns)
        kept = months[:-SHORT_CUT] if kind == "short" else months
        shift = SHIFT if kind == "shifted" else 0
        renumbered = [(month, month - shift) for month in kept if month > shift]  # (read, written)
        if last_months:
            renumbered = [pair for pair in renumbered if pair[0] > renumbered[-1][0] - last_months]
        noise = np.random.default_rng([seed, len(described)])
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for month, written in renumbered:
            image = stack[month - zone.first, row:row + rows, column:column + columns].astype(np.float64)
            missing = image == fill_value
            if kind == "cloudy":
                missing |= noise.random(image.shape) < CLOUD_SHARE
            if kind == "flat":
                image = centre + FLAT_SCALE * (image - centre) + noise.normal(0, FLAT_NOISE * scale, image.shape)
            if kind == "snowy" and month % 12 in snow_phases:
                missing |= noise.random(image.shape) < SNOW_SHARE
            if kind == "noisy":
                drop = noise.uniform(*NOISY_DROP, image.shape) * scale
                image -= np.where(noise.random(image.shape) < NOISY_SHARE, drop, 0.0)
            if kind == "tropical":
                image -= (1 - TROPICAL_SEASON) * np.nan_to_num(
                    season[month % 12, row:row + rows, column:column + columns])
            image[missing] = np.nan
            write_geotiff(folder / month_file_name(name, written), image, profile, fill_value, valid_range)
        described[name] = (f"{kind}, {rows}×{columns} px at ({row}, {column}), months {renumbered[0][1]}.."
                           f"{renumbered[-1][1]}")
    return described


def ratio(rmse: dict, method: str, reference: str) -> float:
    return rmse[method] / rmse[reference] if rmse.get(reference) else float("nan")


def table(scores: dict, blends: dict) -> list[dict]:
    """One row per zone from a run's ``scores.json`` (NaN where a zone has no such period)."""
    rows = []
    for zone in scores["periods"]:
        test = scores.get("test", {}).get("zones", {}).get(zone, {}).get("rmse", {})
        validation = scores.get("validation", {}).get("zones", {}).get(zone, {}).get("rmse", {})
        rows.append({"zone": zone,
                     "validation_model_over_ema": ratio(validation, "model", "ema"),
                     "validation_model_over_damped": ratio(validation, "model", "damped"),
                     "test_model_over_ema": ratio(test, "model", "ema"),
                     "test_blend_over_ema": ratio(test, "blend", "ema"),
                     "test_blend_over_damped": ratio(test, "blend", "damped"),
                     "weight": blends.get(zone, {}).get("weight", float("nan"))})
    return rows


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="a data folder holding the real zone")
    parser.add_argument("--zone", help="the zone to vary (default: the first)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "small.yaml"))
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=0, help="the crops' offsets and the added noise")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "variants"))
    parser.add_argument("--json", help="also write the rows and the headline here")
    parser.add_argument("--last-months", type=int, metavar="N",
                        help="keep only each variant's last N months (a younger sensor's record: the pipeline "
                             "shortens the test, then the validation period of a zone too short for them); "
                             "written to <out>/data-last<N>, run as <config name>-last<N>")
    args = parser.parse_args(argv)
    if args.last_months is not None and args.last_months < 1:
        raise PhenocastError(f"--last-months: expected a number of months >= 1, got {args.last_months}")

    out = Path(args.out).resolve()
    config = load_config(args.config, args.overrides)
    zones = discover_zones(args.data, [args.zone] if args.zone else None, report=None)
    if not zones:
        raise PhenocastError(f"expected at least one zone folder in {args.data}, found none; point --data at "
                             f"the folder that holds <zone>/<zone>-NNN.tif")
    suffix = f"-last{args.last_months}" if args.last_months else ""
    data = out / f"data{suffix}"
    if not data.is_dir():
        staging = out / f"data{suffix}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        described = write_variants(zones[0], staging, config.data.fill_value, config.data.valid_range,
                                   config.data.scale, args.seed, args.last_months)
        staging.rename(data)
        for name, text in described.items():
            print(f"variant {name}: {text}")
    name = Path(args.config).stem + suffix
    sets = [*args.overrides, f"data.dir={data}", "data.sample=false", f"output.dir={out}", f"output.name={name}"]
    command = [arg for value in sets for arg in ("--set", value)]
    for script in ("preprocess.py", "run.py"):
        subprocess.run([sys.executable, str(ROOT / script), "--config", args.config, *command], check=True)

    scores = json.loads((out / name / "scores.json").read_text())
    rows = table(scores, scores.get("model_weight", {}))
    print(f"\n{'zone':8s} {'val model/ema':>13s} {'val model/damped':>16s} {'test model/ema':>14s} "
          f"{'test blend/ema':>14s} {'blend/damped':>12s} {'w':>5s}")
    for row in rows:
        print(f"{row['zone']:8s} {row['validation_model_over_ema']:13.3f} {row['validation_model_over_damped']:16.3f} "
              f"{row['test_model_over_ema']:14.3f} {row['test_blend_over_ema']:14.3f} "
              f"{row['test_blend_over_damped']:12.3f} {row['weight']:5.2f}")
    print(f"\npooled: {scores['headline']['text']}")
    if args.json:
        atomic_write_text(args.json, json.dumps({"rows": rows, "headline": scores["headline"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
