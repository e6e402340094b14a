"""Does a change to the sample's config hold up on other draws of the sample? The quick start on several sample worlds.

The built-in sample (``configs/sample.yaml``) is one draw of a synthetic world (``sample.seed``). A change
chosen on it may only fit that draw: its validation months are a few years of two zones. This bench runs
the real pipeline (``preprocess.py``, then ``run.py``) once per ``--seeds`` value, each on its own world
(``sample.seed``, generated into ``<out>/data/sample-s<seed>`` on first use) with the same config and
``--set`` overrides, and prints per world and pooled over the worlds, from each run's ``scores.json``:

- validation, the select half (what chose epochs and members) and the check half (what chose nothing
  but the blend): the network ÷ the EMA and ÷ damped;
- test (chose nothing, reported only): the network ÷ damped, the submitted blend ÷ the EMA with its 95 %
  paired-bootstrap interval over origins, and the blend's weight on the network per zone.

Pooled rows pool the images of every world: each RMSE is the root of the mean image MSE over all of them,
as a run pools its own zones. A change is chosen on the validation columns (both halves should agree);
the test columns only report. Compare two settings by running the bench twice with different ``--set``
and ``--name`` (finished runs are reused, so an interrupted bench continues).

Usage::

    python bench/sample_worlds.py [--seeds 0,1,2,3] [--config configs/sample.yaml] [--set key=value …]
        [--name sample] [--out outputs/sample-worlds] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phenocast.cli import seed_list  # noqa: E402
from phenocast.errors import PhenocastError, cli_main  # noqa: E402
from phenocast.io import atomic_write_text  # noqa: E402
from phenocast.metrics import Score, Scoreboard, rmse  # noqa: E402
from phenocast.origins import Period, validation_part  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (  # (key, header, format)
    ("select_model_over_ema", "select ÷EMA", "{:.4f}"),
    ("select_model_over_damped", "select ÷damped", "{:.4f}"),
    ("check_model_over_ema", "check ÷EMA", "{:.4f}"),
    ("check_model_over_damped", "check ÷damped", "{:.4f}"),
    ("test_model_over_damped", "test model÷damped", "{:.3f}"),
    ("test_blend_over_ema", "test blend÷EMA", "{:.3f}"),
)


def part_of(score: Score, periods: dict) -> str:
    """``select``, ``check`` or ``test``: where one image score of a run belongs (``periods``: its
    ``scores.json`` periods)."""
    if score.period != "validation":
        return score.period
    start, end = periods[score.zone]["validation"]
    return validation_part(score.origin, Period("validation", start, end))


def ratios(runs: list[dict]) -> dict[str, float]:
    """The bench's columns for a set of runs' ``scores.json``, their images pooled as a run pools its zones
    (``phenocast.metrics.rmse``; one run: that world's row)."""
    groups: dict[tuple[str, str], list[Score]] = defaultdict(list)  # (part, method) → image scores
    for scores in runs:
        for score in Scoreboard.from_summary(scores).scores:
            groups[part_of(score, scores["periods"]), score.method].append(score)

    def ratio(part: str, method: str, reference: str) -> float:
        below = rmse(groups.get((part, reference), []))
        return rmse(groups.get((part, method), [])) / below if below else float("nan")

    return {"select_model_over_ema": ratio("select", "model", "ema"),
            "select_model_over_damped": ratio("select", "model", "damped"),
            "check_model_over_ema": ratio("check", "model", "ema"),
            "check_model_over_damped": ratio("check", "model", "damped"),
            "test_model_over_damped": ratio("test", "model", "damped"),
            "test_blend_over_ema": ratio("test", "blend", "ema"),
            "test_images": len(groups.get(("test", "blend"), []))}


def world_row(seed: int, scores: dict) -> dict:
    """One world's row: its ratios, the blend's interval over origins and the weight per zone."""
    blend = scores["headline"]["methods"]["blend"]
    return {"seed": seed, **ratios([scores]), "test_blend_over_ema_interval": blend.get("over_ema_interval"),
            "weights": {zone: entry["weight"] for zone, entry in scores.get("model_weight", {}).items()}}


def run_world(args, seed: int) -> dict:
    """Preprocess and run one sample world (finished stages are reused); returns its ``scores.json``."""
    out = Path(args.out).resolve()
    name = f"{args.name}-s{seed}"
    sets = [*args.overrides, "data.sample=true", f"sample.seed={seed}", f"data.dir={out / 'data' / f'sample-s{seed}'}",
            f"output.dir={out}", f"output.name={name}"]
    command = [arg for value in sets for arg in ("--set", value)]
    for script in ("preprocess.py", "run.py"):
        subprocess.run([sys.executable, str(ROOT / script), "--config", args.config, *command], check=True)
    path = out / name / "scores.json"
    if not path.is_file():
        raise PhenocastError(f"expected {path} after run.py, found none: is the config's test period on "
                             f"(data.test_months > 0) and does run.py end with postprocess?")
    return json.loads(path.read_text())


def print_table(rows: list[dict], pooled: dict) -> None:
    print(f"\n{'world':>8s} " + " ".join(f"{header:>{max(len(header), 8)}s}" for _, header, _ in COLUMNS)
          + "  interval (blend÷EMA)   w")
    for row in [*rows, pooled]:
        label = f"seed {row['seed']}" if "seed" in row else "pooled"
        cells = " ".join(f"{fmt.format(row[key]):>{max(len(header), 8)}s}" for key, header, fmt in COLUMNS)
        interval = row.get("test_blend_over_ema_interval")
        low_high = f"{interval[0]:.3f}–{interval[1]:.3f}" if interval else f"{row['test_images']} images"
        weights = ", ".join(f"{weight:.2f}" for weight in row.get("weights", {}).values())
        print(f"{label:>8s} {cells}  {low_high:>20s}   {weights}")


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2, 3], help="sample.seed values (default 0,1,2,3)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "sample.yaml"))
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--name", default="sample", help="run name: runs go to <out>/<name>-s<seed>")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "sample-worlds"))
    parser.add_argument("--json", help="also write the rows and the pooled row here")
    args = parser.parse_args(argv)

    runs = {seed: run_world(args, seed) for seed in args.seeds}
    rows = [world_row(seed, scores) for seed, scores in runs.items()]
    pooled = ratios(list(runs.values()))
    print_table(rows, pooled)
    print(f"\npooled over {len(rows)} world(s), {pooled['test_images']} test images; choose on the select and "
          f"check columns, the test columns only report")
    if args.json:
        atomic_write_text(args.json, json.dumps({"config": args.config, "overrides": args.overrides, "rows": rows,
                                                 "pooled": pooled}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
