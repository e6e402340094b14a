"""Backtest the baselines on every zone; score folders of predicted GeoTIFFs against truth.

    python -m phenocast.evaluate [--config C] [--set key=value …] [--json PATH]
    python -m phenocast.evaluate --predictions DIR [--config C] [--json PATH]
    python -m phenocast.evaluate --runs outputs/*

In: the zones of ``data.dir``. Out: a printed table of RMSE (NDVI units) per zone and lead, per zone and
pooled, for persistence, climatology, the original EMA (``evaluate.ema_alpha``), the per-pixel EMA (α fitted
per pixel on the months up to the first backtest origin, from ``evaluate.alpha_grid``) and, on the built-in
sample, the oracle; and a JSON file ``{"pooled": {method: rmse}, "zones": {...}}`` (default
``<output.dir>/<output.name>/evaluate.json``).

Backtest: for each origin o among the last ``evaluate.origins`` months of a zone (o = last-origins+1 ..
last-1; the last month has nothing after it to score), forecast months o+1 .. o+``predict.horizon``
(those that exist) from months <= o; every image with any valid truth pixel is scored (see ``phenocast.metrics``).

``--runs`` is the leaderboard: every run's ``scores.json`` (model, blend and baselines on that run's
validation images) in one table sorted by RMSE, with each method's ratio to its run's EMA.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from phenocast import baselines
from phenocast.cli import add_config_arguments, config_from_arguments
from phenocast.config import Config, save_config
from phenocast.errors import PhenocastError, cli_main
from phenocast.io import atomic_write_text
from phenocast.metrics import Scoreboard, image_mse
from phenocast.origins import evaluation_origins
from phenocast.zones import Zone, discover_zones, natural_key, read_zone

ORACLE_FOLDER = "_oracle"


def load_oracle(data_dir: str | Path, zone: str) -> dict[tuple[int, int], np.ndarray] | None:
    """The sample's oracle forecasts {(origin month, lead): int16 image}, or None if there are none."""
    path = Path(data_dir) / ORACLE_FOLDER / f"{zone}-backtest.npz"
    if not path.is_file():
        return None
    with np.load(path) as archive:
        origins, leads, forecast = archive["origins"], archive["leads"], archive["forecast"]
    return {(int(origin), int(lead)): forecast[i, j]
            for i, origin in enumerate(origins) for j, lead in enumerate(leads)}


def backtest_stack(stack: np.ndarray, config: Config, zone: str = "zone", first: int = 1,
                   origins: list[int] | None = None, scoreboard: Scoreboard | None = None,
                   oracle: dict[tuple[int, int], np.ndarray] | None = None,
                   alpha_map: np.ndarray | None = None) -> Scoreboard:
    """Backtest every baseline on one zone's stack.

    Args:
      stack: int16 (months, height, width), nodata = ``data.fill_value``; position 0 is month ``first``.
      config: uses data.fill_value, data.scale, predict.horizon, evaluate.*.
      zone: the zone's name in the scores.
      first: month index of position 0.
      origins: origin month indices (default: the last ``evaluate.origins`` months).
      scoreboard: add to this one (default: a new one).
      oracle: {(origin, lead): int16 image} scored as method ``oracle`` where present.
      alpha_map: per-pixel α for ``ema_pixel`` (default: fitted on the months up to the first origin).

    Returns:
      The scoreboard.
    """
    fill, scale = config.data.fill_value, config.data.scale
    last = first + len(stack) - 1
    origins = evaluation_origins(first, last, config.evaluate.origins) if origins is None else origins
    scoreboard = Scoreboard() if scoreboard is None else scoreboard
    if not origins:
        return scoreboard
    if alpha_map is None:
        alpha_map = baselines.fit_alpha(stack, min(origins) - first + 1, fill, config.evaluate.alpha_grid,
                                        config.evaluate.ema_alpha)
    cache: dict = {}
    for origin in origins:
        leads = [lead for lead in range(1, config.predict.horizon + 1) if origin + lead <= last]
        targets = [origin + lead - first for lead in leads]
        forecasts = baselines.baseline_forecasts(stack, origin - first, targets, fill,
                                                 config.evaluate.ema_alpha, alpha_map, cache)
        for lead, target in zip(leads, targets):
            truth = stack[target]
            for method, images in forecasts.items():
                scoreboard.add(zone, origin, lead, method, image_mse(images[target], truth, fill, scale))
            if oracle is not None and (origin, lead) in oracle:
                scoreboard.add(zone, origin, lead, "oracle", image_mse(oracle[origin, lead], truth, fill,
                                                                       scale))
    return scoreboard


def backtest_zones(zones: list[Zone], config: Config, progress: bool = True) -> Scoreboard:
    """Read each zone (one at a time) and backtest the baselines on it."""
    scoreboard = Scoreboard()
    for zone in tqdm(zones, desc="zones", unit="zone", disable=not progress or len(zones) < 2):
        with tqdm(total=len(zone.months), desc=f"read {zone.name}", unit="month", leave=False,
                  disable=not progress) as bar:
            stack = read_zone(zone, config.data.fill_value, config.data.valid_range, progress=bar.update)
        backtest_stack(stack, config, zone.name, zone.first, scoreboard=scoreboard,
                       oracle=load_oracle(config.data.dir, zone.name))
    return scoreboard


def score_predictions(folder: str | Path, zones: list[Zone], config: Config, method: str = "predictions"
                      ) -> Scoreboard:
    """Score GeoTIFFs ``<zone>-<NNN>.tif`` (flat or in ``<zone>/`` sub-folders) against the zones' truth.

    The lead of a file is counted from the zone's last month before the earliest predicted month of
    that zone. Months without truth (the future) or with no valid truth pixel are not scored.
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
            valid_prediction = prediction != fill
            result = image_mse(np.where(valid_prediction, prediction, 0), np.where(
                valid_prediction, truth, fill), fill, config.data.scale)
            scoreboard.add(name, origin, month - origin, method, result)
    return scoreboard


def _single_file_zone(path: Path, profile) -> Zone:
    name, _, index = path.stem.rpartition("-")
    return Zone(name=name, folder=path.parent, files={int(index): path}, profile=profile)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m phenocast.evaluate", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--json", type=Path, help="where to write the JSON scores "
                        "(default <output.dir>/<output.name>/evaluate.json)")
    parser.add_argument("--predictions", type=Path, help="score this folder of <zone>-<NNN>.tif files "
                        "against the zones' truth instead of backtesting the baselines")
    parser.add_argument("--runs", type=Path, nargs="+", metavar="RUN",
                        help="leaderboard: collect the scores.json of these run folders (e.g. outputs/*) into "
                             "one table sorted by validation RMSE")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def leaderboard(runs: list[Path]) -> tuple[list[dict], str]:
    """Every (run, method) pooled validation RMSE of the given runs, best first, with its ratio to the
    same run's EMA (runs may be validated on different images; the ratio compares within a run).

    Returns:
      (rows, printable table).
    """
    rows = []
    for run in runs:
        path = run / "scores.json" if run.is_dir() else run
        if not path.is_file():
            continue
        summary = json.loads(path.read_text())
        ema = summary["pooled"].get("ema")
        for method, value in summary["pooled"].items():
            if value is None:
                continue
            rows.append({"run": str(path.parent), "method": method, "rmse": value, "images": summary["images"],
                         "over_ema": value / ema if ema else None})
    if not rows:
        raise PhenocastError(f"expected scores.json in the run folders {', '.join(map(str, runs))}, found none; "
                             f"finish a run (python run.py) first")
    rows.sort(key=lambda row: row["rmse"])
    header = ["rank", "run", "method", "rmse", "÷ ema", "images"]
    table = [[str(rank + 1), row["run"], row["method"], f"{row['rmse']:.4f}",
              "-" if row["over_ema"] is None else f"{row['over_ema']:.3f}", str(row["images"])]
             for rank, row in enumerate(rows)]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [header, *table])
    return rows, text


@cli_main
def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.runs:
        rows, table = leaderboard(arguments.runs)
        print(table)
        if arguments.json:
            atomic_write_text(arguments.json, json.dumps(rows, indent=2) + "\n")
        return 0
    config = config_from_arguments(arguments)
    from phenocast.sample import ensure_sample

    ensure_sample(config)
    started = time.time()
    zones = discover_zones(config.data.dir, config.data.zones)
    if arguments.predictions:
        scoreboard = score_predictions(arguments.predictions, zones, config)
        title = f"RMSE (NDVI) of {arguments.predictions} against {config.data.dir}"
    else:
        scoreboard = backtest_zones(zones, config, progress=not arguments.quiet)
        title = (f"backtest RMSE (NDVI): last {config.evaluate.origins} origins, leads 1..."
                 f"{config.predict.horizon}")
    if not scoreboard.scores:
        raise PhenocastError(f"nothing to score in {config.data.dir}: no forecast month has valid truth")
    print(scoreboard.table(title))
    json_path = arguments.json or config.run_dir / "evaluate.json"
    atomic_write_text(json_path, scoreboard.to_json() + "\n")
    save_config(config, json_path.with_name(json_path.stem + ".config.yaml"))
    print(f"scored {len(scoreboard.zones)} zone(s), {scoreboard.summary()['images']} images in "
          f"{time.time() - started:.1f} s → {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
