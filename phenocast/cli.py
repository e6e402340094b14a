"""What every script shares: ``--config PATH`` and repeated ``--set key=value``; the benches' ``--seeds``."""

from __future__ import annotations

import argparse

from phenocast.config import DEFAULT_CONFIG, Config, load_config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config PATH`` (default configs/default.yaml) and repeated ``--set section.key=value``."""
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"YAML config (default {DEFAULT_CONFIG})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.lr=3e-4 (repeatable; values are "
                             "YAML)")


def config_from_arguments(arguments: argparse.Namespace) -> Config:
    """Load the config named by the parsed ``--config`` / ``--set`` arguments."""
    return load_config(arguments.config, arguments.overrides)


def seed_list(text: str) -> list[int]:
    """An argparse type for ``--seeds``: comma-separated distinct integers."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected at least one seed and no seed twice, got {text!r}")
    return seeds
