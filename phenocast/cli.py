"""What every script shares: ``--config PATH`` and repeated ``--set key=value``."""

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
