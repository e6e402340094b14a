"""Can the network learn what a world holds? The shipped network trained on planted worlds with a known optimum.

Each planted world (``phenocast.synthetic.planted``) isolates one thing a forecaster must be able to learn
and comes with its oracle, the forecast that knows the physics (the conditional mean). For every world this
bench generates the zones, builds their records and runs the real pipeline with the ``--config`` network
and training budget (``configs/sample.yaml`` by default: its epochs × steps × batch; fine-tuning and the
refit off, so the chosen pre-trained model is what is scored), then prints, on the world's *test* period
(the last ``data.test_months`` months, held out of training and of every choice):

- base/EMA: the forecast the network corrects (``model.base``) ÷ the EMA (RMSE, pooled over images);
- optimum/EMA: the oracle ÷ the EMA;
- model/EMA with its 95 % paired-bootstrap interval over forecast origins (``scores.json``), and the
  number of images;
- gap: the share of the base → optimum gap the model closes, (base − model) / (base − optimum);
- ridge/EMA and its gap share: a ridge regression of the targets on the network's raw input channels at
  each pixel (the last year-step, ``model.ridge_samples`` (window, origin) pairs per table; λ chosen on the
  select half of validation; ``phenocast.ridge``), the reference a per-pixel linear model reaches
  (``model.linear_path: ridge`` starts the network at the same regression on its scaled inputs and
  advection channels);
- the learning curve: the gap share on the test period of the network pre-training starts from (step 0:
  the base, or base + the ridge with ``model.linear_path: ridge``, ``Pipeline.starting_model``) and after
  every epoch (``train.keep_epochs``), by training step; with ``train.ensemble`` above 1, member 0's
  (the model row is the members' mean).

With ``--seeds 0,1,2,…`` every world is generated and trained once per seed, and a pooled row follows the
per-seed rows: each RMSE pooled over the seeds' images (the root of the image-weighted mean square), the
gap share of those pooled RMSEs, and 95 % intervals of model/EMA and of the gap share from a bootstrap
over seeds. A world's test period is two years of one realisation: where what the network must learn is
one number per zone and month (``regional``), two zones give only a few independent values of it in two
years, and a single seed's interval over origins does not show how much another realisation would
differ. The goals are then judged on the pooled row.

Then the goals, each ``met`` or ``NOT met``: ``persistence`` (a) ≥ 90 % of what the damped baseline gains
over the EMA; ``moving``, ``regional``, ``landcover`` (b–d) ≥ 70 % of the base → optimum gap and below the
ridge; ``control`` (e) ≤ 1.01 × the base.

Usage::

    python bench/learnability.py [--worlds persistence,moving,regional,landcover,control]
        [--config configs/sample.yaml] [--set train.epochs=3 …] [--zones 2] [--months 120] [--size N]
        [--knob anomaly_scale=4 …]
        [--seed 0 | --seeds 0,1,2] [--out outputs/learnability] [--json results.json]

``--knob KNOB=VALUE`` replaces a knob of the worlds (``python -m phenocast.synthetic.planted --set``), e.g. a
finer or faster moving field; the knobs are part of the world's folder name.

Worlds are generated once into ``<out>/<world>-…/data`` and runs go to ``<out>/<world>-…/<config name>``:
a rerun reuses finished stages (the pipeline's resumability), so an interrupted bench continues.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import model as network  # noqa: E402
from model.network import ChannelSlice  # noqa: E402
from phenocast.cli import seed_list  # noqa: E402
from phenocast.config import Config, load_config  # noqa: E402
from phenocast.errors import PhenocastError  # noqa: E402
from phenocast.forecast import Forecaster, predict_windows, raw_path, save_windows  # noqa: E402
from phenocast.forecasters import fit_baselines, load_oracle  # noqa: E402
from phenocast.io import atomic_write_text  # noqa: E402
from phenocast.metrics import Scoreboard, image_mse  # noqa: E402
from phenocast.origins import fit_end  # noqa: E402
from phenocast.pipeline import Pipeline  # noqa: E402
from phenocast.postprocess import period_methods  # noqa: E402
from phenocast.preprocess import preprocess  # noqa: E402
from phenocast.ridge import fit_zones  # noqa: E402
from phenocast.synthetic.planted import PLANTED_WORLDS, generate_planted, parse_knob  # noqa: E402
from phenocast.training import epoch_model  # noqa: E402
from phenocast.zones import read_zone, to_int16  # noqa: E402

WORLDS = tuple(PLANTED_WORLDS)
SPATIAL_WORLDS = ("moving", "regional", "landcover")  # goal: ≥ 70 % of the gap, above the ridge
GAP_GOAL = 0.7
DAMPED_GAIN_GOAL = 0.9  # persistence: the share of the damped baseline's gain over the EMA
CONTROL_LIMIT = 1.01  # control: model ÷ base


def world_config(args, world: str, data_dir: Path, out: Path) -> Config:
    """The ``--config`` run on a world's data: its own output folder, every epoch's model kept, no
    fine-tuning or refit (the pre-trained model chosen on validation is scored)."""
    overrides = [f"data.dir={data_dir}", "data.sample=false", "data.zones=null", f"output.dir={out}",
                 f"output.name={Path(args.config).stem}", "train.keep_epochs=true", "finetune.enabled=false",
                 "finetune.refit=false", "report.maps=false", *args.set]
    return load_config(args.config, overrides)


def period_scores(config: Config, run: Pipeline, scratch: Path, model_of, period: str = "test") -> dict[str, float]:
    """Pooled RMSE of every method on a period's images, the model being ``model_of`` (a Keras model):
    its window predictions are stitched and scored as postprocessing scores them."""
    board = Scoreboard()
    forecaster = Forecaster(model_of)
    for zone in run.zones:
        sample = run.samples[zone.name]
        origins = sample.origins(period)
        save_windows(predict_windows(forecaster, sample, origins, config), raw_path(scratch, zone.name, period))
        stack = read_zone(zone, config.data.fill_value, config.data.valid_range)
        fitted = fit_baselines(stack, config, zone.first, fit_end(zone.first, zone.last, config))
        images = period_methods(zone, stack, config, scratch, period, fitted, load_oracle(config.data.dir, zone.name))
        for (origin, lead), methods in images.items():
            truth = stack[origin + lead - zone.first]
            for method, values in methods.items():
                board.add(zone.name, origin, lead, method,
                          image_mse(to_int16(values, config.data.fill_value, config.data.valid_range), truth,
                                    config.data.fill_value, config.data.scale))
    return board.summary()["pooled"]


def ridge_model(config: Config, run: Pipeline) -> tuple[keras.Model, float]:
    """A ridge regression of the targets on the raw input channels at each pixel (``phenocast.ridge``: the
    last year-step, fitted on training origins, the penalty chosen on the select half of validation); as a
    Keras model of the network's interface."""
    fit = fit_zones(list(run.samples.values()), config, residual=False)
    inputs = keras.Input((config.sequence.years, config.window, config.window, config.input_channels))
    last = ChannelSlice(0, config.input_channels, last_year=True, name="last_year")(inputs)
    dense = keras.layers.Dense(config.predict.horizon, name="ridge")
    model = keras.Model(inputs, dense(last))
    dense.set_weights([fit.kernel.astype(np.float32), fit.bias.astype(np.float32)])
    return model, fit.penalty


def knob_label(value) -> str:
    """A knob's value in a folder name: 4.0 → 4, (5.0, 6.0) → 5_6."""
    values = value if isinstance(value, tuple | list) else (value,)
    return "_".join(f"{item:g}" if isinstance(item, float) else str(item) for item in values)


def bench_world(args, world: str, seed: int) -> dict:
    """Generate (with the world seed ``seed``), preprocess, train and score one world; returns its row."""
    knobs = dict(parse_knob(world, text) for text in args.knob)
    label = (f"{world}-seed{seed}-z{args.zones}-m{args.months}" + (f"-s{args.size}" if args.size else "")
             + "".join(f"-{name}{knob_label(value)}" for name, value in sorted(knobs.items())))
    folder = Path(args.out) / label
    data_dir = folder / "data"
    if not (data_dir / "Z1").is_dir():
        generate_planted(data_dir, world, zones=args.zones, months=args.months, size=args.size, seed=seed, **knobs)
    config = world_config(args, world, data_dir, folder)
    started = time.time()
    preprocess(config, progress=False, log=lambda message: None)
    run = Pipeline(config)
    run.run(("pretrain", "predict", "postprocess"))
    trained = time.time() - started
    summary = json.loads((config.run_dir / "scores.json").read_text())
    pooled = summary["test"]["pooled"]
    entry = summary["headline"]["methods"]["model"]
    base = config.model.base
    scratch = folder / "scratch"
    curve = [(0, period_scores(config, run, scratch, run.starting_model())["model"])]  # the start: epoch 0
    stage = run.stage_folder("pretrain")
    for epoch in range(1, config.train.epochs + 1):
        path = epoch_model(stage, epoch)
        if not path.is_file():  # early stopping ended the stage
            break
        scores = period_scores(config, run, scratch, network.load_model(path))
        curve.append((epoch * config.train.steps_per_epoch, scores["model"]))
    ridge, penalty = ridge_model(config, run)
    ridge_rmse = period_scores(config, run, scratch, ridge)["model"]

    def gap(rmse: float) -> float:
        return gap_share(pooled[base], pooled["oracle"], rmse)

    row = {"world": world, "seed": seed, "images": summary["headline"]["images"], "ema": pooled["ema"],
           "base": pooled[base], "base_method": base, "oracle": pooled["oracle"], "damped": pooled["damped"],
           "model": pooled["model"],
           "model_over_ema_interval": entry.get("over_ema_interval"), "gap": gap(pooled["model"]),
           "ridge": ridge_rmse, "ridge_penalty": penalty, "ridge_gap": gap(ridge_rmse),
           "curve": [(steps, gap(rmse)) for steps, rmse in curve], "seconds": trained,
           "best_epoch": json.loads((stage / "done.json").read_text())["best_epoch"]}
    row["goal"], row["met"] = goal(row)
    return row


POOLED = ("ema", "base", "oracle", "damped", "model", "ridge")  # RMSEs a pooled row pools


def gap_share(base: float, oracle: float, rmse: float) -> float:
    """The share of the base → optimum gap an RMSE closes: (base − rmse) / (base − oracle)."""
    return (base - rmse) / (base - oracle)


def pool_seeds(rows: list[dict], replicates: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """One world's rows of several seeds → its pooled row.

    Each RMSE in ``POOLED`` is pooled as the root of the image-weighted mean of the seeds' mean squares
    (each seed's RMSE is already pooled over its images); the gap shares are those of the pooled RMSEs.
    ``model_over_ema_interval`` and ``gap_interval`` come from a percentile bootstrap over seeds (each
    replicate draws as many seeds as there are, with replacement, and pools them the same way), so they
    include how much one realisation of the world differs from another, which an interval over one
    seed's origins does not.

    Returns:
      the pooled row: the keys of ``bench_world``'s rows that pooling defines, plus ``seeds``,
      ``seed_gaps`` (each seed's own gap share) and ``gap_interval``; ``goal`` and ``met`` judged on it.
    """
    if not rows:
        raise ValueError("expected the rows of at least one seed, got none")
    worlds = {row["world"] for row in rows}
    if len(worlds) != 1:
        raise ValueError(f"expected rows of one world, got {sorted(worlds)}")
    images = np.array([row["images"] for row in rows], dtype=np.float64)
    squares = {key: np.array([row[key] ** 2 for row in rows]) for key in POOLED}

    def pooled(picks: np.ndarray) -> dict[str, float]:
        weights = images[picks]
        return {key: float(np.sqrt((values[picks] * weights).sum() / weights.sum()))
                for key, values in squares.items()}

    def gap(values: dict[str, float], key: str = "model") -> float:
        return gap_share(values["base"], values["oracle"], values[key])

    everything = pooled(np.arange(len(rows)))
    draws = np.random.default_rng(seed).integers(0, len(rows), size=(replicates, len(rows)))
    replicated = [pooled(picks) for picks in draws]
    tail = 100 * (1 - confidence) / 2

    def interval(values: list[float]) -> list[float]:
        return np.percentile(values, [tail, 100 - tail]).tolist()

    row = {"world": rows[0]["world"], "seed": "pooled", "seeds": [row["seed"] for row in rows],
           "images": int(images.sum()), "base_method": rows[0]["base_method"], **everything,
           "model_over_ema_interval": interval([values["model"] / values["ema"] for values in replicated]),
           "gap": gap(everything), "gap_interval": interval([gap(values) for values in replicated]),
           "ridge_gap": gap(everything, "ridge"), "seed_gaps": [row["gap"] for row in rows], "curve": [],
           "seconds": float(sum(row["seconds"] for row in rows)), "best_epoch": None}
    row["goal"], row["met"] = goal(row)
    return row


def goal(row: dict) -> tuple[str, bool]:
    """The world's goal in words, and whether the row meets it."""
    world = row["world"]
    if world == "persistence":
        share = (row["ema"] - row["model"]) / (row["ema"] - row["damped"])
        return f"{share:.0%} of damped's gain over the EMA (≥ {DAMPED_GAIN_GOAL:.0%})", share >= DAMPED_GAIN_GOAL
    if world == "control":
        ratio = row["model"] / row["base"]
        return f"model/base {ratio:.3f} (≤ {CONTROL_LIMIT})", ratio <= CONTROL_LIMIT
    above = row["model"] < row["ridge"]
    return (f"gap {row['gap']:.0%} (≥ {GAP_GOAL:.0%}), ridge {row['ridge_gap']:.0%} (the model above it: "
            f"{'yes' if above else 'no'})", row["gap"] >= GAP_GOAL and above)


def print_table(rows: list[dict], config_path: str) -> None:
    print(f"\nlearnability of {config_path} on planted worlds: test period, RMSE ratios to the EMA")
    print(f"{'world':<12} {'seed':>6} {'images':>6} {'base/EMA':>9} {'optimum/EMA':>11} {'model/EMA [95 %]':>24} "
          f"{'gap':>5} {'ridge/EMA':>9} {'ridge gap':>9}  goal")
    for row in rows:
        interval = row["model_over_ema_interval"]
        within = f" [{interval[0]:.3f}–{interval[1]:.3f}]" if interval else ""
        print(f"{row['world']:<12} {row['seed']:>6} {row['images']:>6} {row['base'] / row['ema']:>9.3f} "
              f"{row['oracle'] / row['ema']:>11.3f} {row['model'] / row['ema']:>9.3f}{within:>15} "
              f"{row['gap']:>5.0%} {row['ridge'] / row['ema']:>9.3f} {row['ridge_gap']:>9.0%}  "
              f"{'met' if row['met'] else 'NOT met'}: {row['goal']}")
        if "gap_interval" in row:
            low, high = row["gap_interval"]
            seeds = ", ".join(f"{seed}: {share:.0%}" for seed, share in zip(row["seeds"], row["seed_gaps"]))
            print(f"{'':<12} {'':>6} pooled over {len(row['seeds'])} seeds (intervals: bootstrap over seeds); "
                  f"gap {row['gap']:.0%} [{low:.0%}–{high:.0%}]; each seed's gap: {seeds}")
    curves = [row for row in rows if row["curve"]]
    if curves:
        print("\nlearning curves (share of the base → optimum gap closed on the test period, by training step):")
    for row in curves:
        points = ", ".join(f"{steps}: {share:.0%}" for steps, share in row["curve"])
        print(f"  {row['world']:<12} seed {row['seed']}: {points}  (chosen epoch {row['best_epoch']}, "
              f"{row['seconds']:.0f} s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", default=",".join(WORLDS), help=f"comma-separated, of {', '.join(WORLDS)}")
    parser.add_argument("--config", default="configs/sample.yaml", help="the network and budget to bench")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--zones", type=int, default=2)
    parser.add_argument("--months", type=int, default=120)
    parser.add_argument("--size", type=int, default=None, help="pixels per side (the world's default if unset)")
    parser.add_argument("--knob", action="append", default=[], metavar="KNOB=VALUE",
                        help="replace a knob of every world benched (repeatable; python -m "
                             "phenocast.synthetic.planted --set), e.g. --knob anomaly_scale=4")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="the worlds' seed")
    seeds.add_argument("--seeds", type=seed_list, default=None,
                       help="comma-separated world seeds: every world once per seed, then a row pooled over them")
    parser.add_argument("--out", default="outputs/learnability")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    worlds = [world.strip() for world in args.worlds.split(",") if world.strip()]
    unknown = [world for world in worlds if world not in WORLDS]
    if unknown:
        print(f"error: unknown world(s) {', '.join(unknown)}; expected some of {', '.join(WORLDS)}", file=sys.stderr)
        return 2
    try:  # every knob must name a knob of every world benched, before anything runs
        for world in worlds:
            for text in args.knob:
                parse_knob(world, text)
    except PhenocastError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seeds = args.seeds or [args.seed]
    rows = []
    for world in worlds:
        print(f"{world}: {PLANTED_WORLDS[world]}", flush=True)
        runs = []
        for seed in seeds:
            runs.append(bench_world(args, world, seed))
            print_table(runs[-1:], args.config)
        rows += runs
        if len(seeds) > 1:
            rows.append(pool_seeds(runs))
            print_table(rows[-1:], args.config)
    print_table(rows, args.config)
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
