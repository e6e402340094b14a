"""Stitch a run's window predictions into georeferenced GeoTIFFs, blend with the EMA, zip and check.

    python postprocess.py [--config configs/default.yaml] [--set key=value …]
    python postprocess.py --check path/to/submission.zip [--config …]

In: ``<output.dir>/<output.name>/predictions/raw/`` (from ``run.py``) and the zones of ``data.dir``.
Out: ``predictions/<zone>-<NNN>.tif``, ``submission.zip`` and ``scores.json`` in the run folder. Running it
again reproduces the same files; ``--check`` validates any submission zip against the zones (one line per
problem, exit code 1 if there is any).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phenocast.cli import add_config_arguments, config_from_arguments
from phenocast.errors import PhenocastError, cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--check", type=Path, metavar="ZIP", help="only check this submission zip")
    return parser


@cli_main
def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    config = config_from_arguments(arguments)
    from phenocast.postprocess import check_submission, run_postprocess
    from phenocast.zones import discover_zones

    zones = discover_zones(config.data.dir, config.data.zones, report=None)
    if arguments.check:
        if not arguments.check.is_file():
            raise PhenocastError(f"expected a submission zip at {arguments.check}, found nothing")
        problems = check_submission(arguments.check, zones, config)
        for problem in problems:
            print(problem)
        if problems:
            return 1
        print(f"{arguments.check}: OK ({len(zones)} zone(s))")
        return 0
    summary = run_postprocess(config, zones)
    print(f"postprocess: {len(summary['zones'])} zone(s), {summary['files']} GeoTIFF(s)"
          + (f", {summary['zip']}" if summary["zip"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
