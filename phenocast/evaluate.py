"""Backtest the baselines on every zone; score folders of predicted GeoTIFFs; tabulate finished runs.

    python -m phenocast.evaluate [--config C] [--set key=value …] [--json PATH]
    python -m phenocast.evaluate --predictions DIR [--config C] [--json PATH]
    python -m phenocast.evaluate --runs outputs/* [--markdown [README.md]]

In: the zones of ``data.dir``. Out: printed tables of RMSE (NDVI units) per zone and lead, per zone and
pooled, for persistence, climatology, the original EMA (``evaluate.ema_alpha``), the per-pixel EMA (α
fitted per pixel on the training period, from ``evaluate.alpha_grid``), the damped anomaly (φ fitted on
the training period, see ``phenocast.features``) and, on the built-in sample, the oracle; one table per
scored period (validation, test: ``phenocast.origins``), and a JSON file ``{"validation": {...}, "test":
{...}}`` (default ``<output.dir>/<output.name>/evaluate.json``). Every image with any valid truth pixel
is scored (see ``phenocast.metrics``). The baselines are the forecasters of ``phenocast.forecasters``, their
fitted parameters read from the run's ``baselines/`` (fitted and saved there when missing or stale).

``--predictions DIR`` scores GeoTIFFs ``<zone>-<NNN>.tif`` against the zones' truth. A pixel whose truth
is valid but whose prediction is the fill value (or missing) is scored as a forecast of NDVI 0 there:
leaving pixels out can never improve a score.

``--runs`` is the leaderboard: every run's ``scores.json`` (written by ``postprocess.py``: the model, its
blend and the baselines on that run's test images) in one table sorted by test RMSE, with each
method's ratio to its run's EMA and best baseline, the bootstrap interval and the validation RMSE.
``--markdown`` prints the same as Markdown tables; ``--markdown README.md`` rewrites the part of that
file between ``<!-- results:start -->`` and ``<!-- results:end -->`` with them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from phenocast.cli import add_config_arguments, config_from_arguments
from phenocast.config import save_config
from phenocast.errors import PhenocastError, cli_main
from phenocast.forecasters import backtest_zones, score_predictions
from phenocast.io import atomic_write_text
from phenocast.origins import shortened_notes, zone_periods
from phenocast.zones import discover_zones

RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"


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
                        help="leaderboard: collect the scores.json of these run folders (e.g. outputs/*) "
                             "into one table sorted by test RMSE")
    parser.add_argument("--markdown", nargs="?", const="-", metavar="FILE",
                        help="with --runs: Markdown tables, printed, or written into FILE between "
                             f"{RESULTS_START} and {RESULTS_END}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _load_scores(run: Path) -> tuple[Path, dict] | None:
    path = run / "scores.json" if run.is_dir() else run
    if not path.is_file():
        return None
    return path, json.loads(path.read_text())


def run_rows(path: Path, summary: dict) -> list[dict]:
    """One row per method of a run's ``scores.json`` on its headline period (test when there is one):
    pooled RMSE, ratios to the run's EMA and best baseline, the bootstrap interval of the ratio to the
    EMA (model and blend) and the validation RMSE — every number read, none recomputed."""
    headline = summary.get("headline", {})
    period = headline.get("period", "test")
    pooled = summary.get(period, {}).get("pooled", {})
    validation = summary.get("validation", {}).get("pooled", {}) if period == "test" else {}
    ema, best = pooled.get("ema"), headline.get("best_baseline")
    rows = []
    for method, value in pooled.items():
        if value is None:
            continue
        rows.append({"run": str(path.parent), "period": period, "method": method, "rmse": value,
                     "images": summary.get(period, {}).get("images"),
                     "over_ema": value / ema if ema else None,
                     "over_best_baseline": value / pooled[best] if best in pooled else None,
                     "over_ema_interval": headline.get("methods", {}).get(method, {}).get("over_ema_interval"),
                     "validation_rmse": validation.get(method)})
    return sorted(rows, key=lambda row: row["rmse"])


def _loaded_runs(runs: list[Path]) -> list[tuple[Path, dict]]:
    loaded = [item for item in map(_load_scores, runs) if item is not None]
    if not loaded:
        raise PhenocastError(f"expected scores.json in the run folders {', '.join(map(str, runs))}, found none; "
                             f"finish a run (python run.py) first")
    return loaded


def leaderboard(runs: list[Path]) -> tuple[list[dict], str]:
    """Every (run, method) of the given runs (``run_rows``), best first (runs may be scored on different
    images; the ratios compare within a run).

    Returns:
      (rows, printable table).
    """
    rows = sorted((row for path, summary in _loaded_runs(runs) for row in run_rows(path, summary)),
                  key=lambda row: row["rmse"])
    header = ["rank", "run", "period", "method", "rmse", "÷ ema", "95% interval", "÷ best baseline",
              "validation", "images"]
    table = [[str(rank + 1), row["run"], row["period"], row["method"], f"{row['rmse']:.4f}",
              _ratio(row["over_ema"]), _interval(row["over_ema_interval"]), _ratio(row["over_best_baseline"]),
              _value(row["validation_rmse"]), str(row["images"])]
             for rank, row in enumerate(rows)]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [header, *table])
    return rows, text


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _interval(interval: list[float] | None) -> str:
    return "-" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def markdown_results(runs: list[Path]) -> str:
    """One Markdown section per run: its headline and a table of every method (``run_rows``)."""
    sections = []
    for path, summary in _loaded_runs(runs):
        rows = run_rows(path, summary)
        period = summary.get("headline", {}).get("period", "test")
        with_validation = any(row["validation_rmse"] is not None for row in rows)
        lines = [f"**{summary.get('name', path.parent.name)}** (`{path.parent}`): "
                 f"{summary.get('headline', {}).get('text', '')}", "",
                 f"| method | {period} RMSE | ÷ EMA | 95 % interval | ÷ best baseline |"
                 + (" validation RMSE |" if with_validation else ""),
                 "|---|---|---|---|---|" + ("---|" if with_validation else "")]
        for row in rows:
            cells = [row["method"], _value(row["rmse"]), _ratio(row["over_ema"]), _interval(row["over_ema_interval"]),
                     _ratio(row["over_best_baseline"])] + ([_value(row["validation_rmse"])] if with_validation else [])
            lines.append("| " + " | ".join(cells) + " |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def write_markdown_section(path: Path, text: str) -> Path:
    """Replace the text between the results markers of ``path`` with ``text``, atomically."""
    if not path.is_file():
        raise PhenocastError(f"expected a Markdown file at {path} to write the results into, found none")
    content = path.read_text()
    if RESULTS_START not in content or RESULTS_END not in content:
        raise PhenocastError(f"expected the markers {RESULTS_START} and {RESULTS_END} in {path}, found "
                             f"{'neither' if RESULTS_START not in content and RESULTS_END not in content else 'one'}; "
                             f"add them around the results section")
    before, rest = content.split(RESULTS_START, 1)
    _, after = rest.split(RESULTS_END, 1)
    return atomic_write_text(path, f"{before}{RESULTS_START}\n{text}{RESULTS_END}{after}")


@cli_main
def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.runs:
        if arguments.markdown:
            text = markdown_results(arguments.runs)
            if arguments.markdown == "-":
                print(text, end="")
            else:
                written = write_markdown_section(Path(arguments.markdown), text)
                print(f"results of {len(arguments.runs)} run(s) → {written}")
            return 0
        rows, table = leaderboard(arguments.runs)
        print(table)
        if arguments.json:
            atomic_write_text(arguments.json, json.dumps(rows, indent=2) + "\n")
        return 0
    if arguments.markdown:
        raise PhenocastError("--markdown needs --runs")
    config = config_from_arguments(arguments)
    from phenocast.sample import ensure_sample

    ensure_sample(config)
    started = time.time()
    zones = discover_zones(config.data.dir, config.data.zones)
    if arguments.predictions:
        scoreboard = score_predictions(arguments.predictions, zones, config)
        if not scoreboard.scores:
            raise PhenocastError(f"nothing to score in {arguments.predictions}: no predicted month has valid truth")
        print(scoreboard.table(f"RMSE (NDVI) of {arguments.predictions} against {config.data.dir}"))
        output = scoreboard.summary()
    else:
        for line in shortened_notes(zones, config):
            print(line)
        scoreboard = backtest_zones(zones, config, config.run_dir, progress=not arguments.quiet)
        if not scoreboard.scores:
            raise PhenocastError(f"nothing to score in {config.data.dir}: no validation or test month has "
                                 f"valid truth (data.val_months {config.data.val_months}, data.test_months "
                                 f"{config.data.test_months})")
        output = {}
        for period in scoreboard.periods:
            board = scoreboard.restrict_period(period)
            months = sorted({(p.start, p.end) for z in zones
                             for p in zone_periods(z.first, z.last, config).scored if p.name == period})
            print(board.table(f"{period} RMSE (NDVI), target months "
                              f"{', '.join(f'{a}..{b}' for a, b in months)}, leads 1..{config.predict.horizon}"))
            print()
            output[period] = board.summary()
    json_path = arguments.json or config.run_dir / "evaluate.json"
    atomic_write_text(json_path, json.dumps(output, indent=2) + "\n")
    save_config(config, json_path.with_name(json_path.stem + ".config.yaml"))
    images = len({(s.zone, s.origin, s.lead, s.period) for s in scoreboard.scores})
    print(f"scored {len(scoreboard.zones)} zone(s), {images} images in {time.time() - started:.1f} s → {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
