"""Train, validate and forecast: the main job after ``python preprocess.py``.

    python run.py [--config configs/default.yaml] [--set key=value …] [--stage all] [--zones Z3,Z7]

In: the records written by ``preprocess.py`` and the zones of ``data.dir``. Out, under
``<output.dir>/<output.name>/``: ``config.resolved.yaml``, ``checkpoints/``, ``logs/``,
``predictions/<zone>-<NNN>.tif``, ``submission.zip``, ``scores.json``, ``report.md``. Stages
(``--stage``, comma-separated or ``all``): pretrain, finetune, refit, predict, postprocess, report.
Rerunning the same command resumes an interrupted run and skips finished stages and zones; a finished
stage whose settings changed is refused with the keys named: ``--restart STAGE`` rebuilds it and every
later stage (for ``--zones`` only, where a stage is per zone). With ``TF_CONFIG`` set, the same command on
every machine trains one model over all of them (``phenocast.devices``): worker 0 writes the run, the
others only ``.workers/worker-<k>/`` inside it; a malformed ``TF_CONFIG`` is refused in one line.

    python run.py --sweep configs/sweeps/lambda.yaml [--member K] [--set key=value …]

runs every member of a sweep (see ``phenocast.sweep``) and writes ``<output.dir>/sweeps/<name>/sweep.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phenocast import import_tensorflow_quietly
from phenocast.cli import add_config_arguments, config_from_arguments
from phenocast.cluster import worker
from phenocast.errors import PhenocastError, cli_main
from phenocast.pipeline import STAGES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--stage", default="all",
                        help=f"comma-separated stages to run: {', '.join(STAGES)}, or all (default)")
    parser.add_argument("--zones", help="comma-separated zones to fine-tune, refit and predict (default: "
                        "all); run pretrain once first, then fan zones out over processes or machines")
    parser.add_argument("--restart", metavar="STAGE", choices=STAGES,
                        help="delete the outputs of this stage and every later one, then run")
    parser.add_argument("--sweep", type=Path, help="run every member of a sweep file (configs/sweeps/*.yaml) "
                        "instead of one config; --set applies to every member")
    parser.add_argument("--member", type=int, help="with --sweep: run only this member (0-based)")
    return parser


def parse_stages(text: str) -> tuple[str, ...]:
    if text == "all":
        return STAGES
    stages = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown or not stages:
        raise PhenocastError(f"expected --stage all or some of {', '.join(STAGES)}, got {text!r}")
    return tuple(stage for stage in STAGES if stage in stages)  # always in pipeline order


@cli_main
def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.sweep:
        from phenocast.sweep import load_sweep, run_sweep

        sweep = load_sweep(arguments.sweep)
        if arguments.member is not None and not 0 <= arguments.member < len(sweep.members):
            raise PhenocastError(f"--member {arguments.member}: the sweep {sweep.name} has members "
                                 f"0..{len(sweep.members) - 1}")
        import_tensorflow_quietly()
        run_sweep(sweep, arguments.overrides, arguments.member)
        return 0
    if arguments.member is not None:
        raise PhenocastError("--member needs --sweep")
    config = config_from_arguments(arguments)
    worker()  # a malformed TF_CONFIG fails here, in one line, before TensorFlow starts
    stages = parse_stages(arguments.stage)
    zones = [zone.strip() for zone in arguments.zones.split(",")] if arguments.zones else None
    from phenocast.pipeline import Pipeline
    from phenocast.sample import ensure_sample

    if ensure_sample(config):
        raise PhenocastError(f"the sample was just generated into {config.data.dir}; run python "
                             f"preprocess.py --config {arguments.config} first")
    Pipeline(config, zones).run(stages, restart=arguments.restart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
