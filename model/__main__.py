"""Print the network of a config: parameters and output shape per block, and the total.

Usage::

    python -m model --config configs/default.yaml [--set model.filters=16 ...] [--layers]

In: a config file (and dotted overrides). Out: a table on stdout, one row per block (layers grouped by
their name prefix: ``stem``, ``scale0_dense``, ``scale0_convlstm``, ``aspp``, ``decoder_scale0``, …); with
``--layers`` Keras' full layer summary as well.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import model as network  # noqa: E402
from phenocast.config import load_config  # noqa: E402
from phenocast.errors import cli_main  # noqa: E402


def block_name(layer_name: str) -> str:
    """``scale0_dense_layer1_conv`` -> ``scale0_dense``; ``aspp_rate5`` -> ``aspp``; ``forecast`` stays."""
    parts = layer_name.split("_")
    for known in ("dense", "se", "convlstm", "down", "up"):
        if known in parts[1:]:
            return "_".join(parts[:parts.index(known, 1) + 1])
    if parts[0] in ("aspp", "stem", "forecast"):
        return parts[0]
    if parts[0] in ("decoder", "auxiliary"):
        return "_".join(parts[:2])
    return layer_name


def summarize(model) -> list[tuple[str, str, int]]:
    """Rows (block, output shape of its last layer, parameters) in layer order."""
    rows: dict[str, list] = {}
    for layer in model.layers:
        if not layer.weights and layer.__class__.__name__ == "InputLayer":
            continue
        name = block_name(layer.name)
        shape = tuple(layer.output.shape)
        row = rows.setdefault(name, [name, shape, 0])
        row[1] = shape
        row[2] += layer.count_params()
    return [(name, str(shape), params) for name, shape, params in rows.values()]


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/default.yaml", help="YAML config file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override, e.g. model.filters=16 (repeatable)")
    parser.add_argument("--layers", action="store_true", help="also print every layer (Keras summary)")
    arguments = parser.parse_args(argv)
    config = load_config(arguments.config, arguments.set)
    network.set_precision(config)
    model = network.build_model(config)
    print(f"config {arguments.config}: window {config.window}, years {config.sequence.years}, "
          f"{config.input_channels} input channels, horizon {config.predict.horizon}")
    print(f"input {tuple(model.input.shape)}")
    print(f"{'block':<24} {'output shape':<52} {'parameters':>10}")
    for name, shape, params in summarize(model):
        print(f"{name:<24} {shape:<52} {params:>10,}")
    total = model.count_params()
    print(f"total parameters: {total:,} ({total / 1e6:.3f} M)")
    print("(shapes are per layer output; a 4-D shape's leading None is years·batch where years are folded)")
    if arguments.layers:
        model.summary(line_length=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
