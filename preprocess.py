"""Tile every zone into overlapping windows and write compact, resumable TFRecords.

    python preprocess.py [--config configs/default.yaml] [--set key=value …] [--workers N]

In: the zones of ``data.dir`` (``<zone>/<zone>-<NNN>.tif``; with ``data.sample: true`` an empty data folder
first receives the built-in sample). Out: ``<records dir>/<zone>-<k>-of-<n>.tfrecord…`` (one record per
window), ``<zone>-context.tfrecord…`` (the zone-wide context), ``manifest.json`` and the resolved config.
A rerun skips up-to-date zones; an interrupted run resumes. See ``phenocast.preprocess``.
"""

from __future__ import annotations

import argparse
import sys

from phenocast.cli import add_config_arguments, config_from_arguments
from phenocast.config import save_config
from phenocast.errors import cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--workers", type=int, help="zones in parallel (default records.workers, else "
                        "the CPU count)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


@cli_main
def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    config = config_from_arguments(arguments)
    from phenocast.preprocess import preprocess  # starts TensorFlow once the zones passed their checks
    from phenocast.sample import ensure_sample

    ensure_sample(config)
    summary = preprocess(config, workers=arguments.workers, progress=not arguments.quiet)
    save_config(config, config.records_dir / "config.resolved.yaml")
    print(f"preprocess: {summary['zones']} zone(s) ({summary['built']} built, {summary['skipped']} "
          f"skipped), {summary['records']} records, {summary['bytes'] / 1e6:.1f} MB, "
          f"{summary['seconds']:.1f} s → {summary['folder']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
