"""What does the damped forecast's fitted reference cost at a zone's full size, against the EMA reference?

``evaluate.damped_reference: fitted`` fits φ once per candidate β of ``evaluate.alpha_grid`` and keeps the
β whose fit leaves the smallest squared error (``features.fit_damped_reference``); ``ema`` fits φ once. Each
fit is one pass over the zone's training months, so the cost grows with the pixels × months and the grid.
This bench reads one zone, tiles it in space and time to ``--size`` × ``--size`` pixels and ``--months``
months (the fit's cost depends on those counts, not on the values), and fits both references side by side
in one process through ``forecasters.fit_damped_zone``, the fit a run makes once per zone. It prints the
seconds and the peak memory the fit allocated (``tracemalloc``, which numpy reports to) of each, and their
ratio.

Usage::

    python bench/damped_fit.py --data ../shared/data/benelux-mod13a3 [--zone Z1] [--size 1200]
        [--months 212] [--config configs/default.yaml] [--set KEY=VALUE …] [--json results.json]

Measured on the 2-core CPU (the machine is shared: ratios, not seconds), Benelux tiled to the competition's
1200² and 212 months, ``configs/default.yaml``'s settings: ``ema`` 17.5 s, ``fitted`` 195.7 s (β 0.2), 11.2×
the time; a peak of 169 MB against 235 MB (1.39×); at 300², 1.1 s against 12.6 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from phenocast.config import load_config  # noqa: E402
from phenocast.errors import PhenocastError, cli_main  # noqa: E402
from phenocast.io import atomic_write_text  # noqa: E402

REFERENCES = ("ema", "fitted")


def tiled(stack: np.ndarray, size: int, months: int) -> np.ndarray:
    """``stack`` (months, height, width) repeated in time and space and cut to (months, size, size)."""
    reps = (-(-months // stack.shape[0]), -(-size // stack.shape[1]), -(-size // stack.shape[2]))
    return np.tile(stack, reps)[:months, :size, :size]


def measure(stack: np.ndarray, config_path: str, overrides: list[str], reference: str) -> dict:
    """Seconds, peak traced memory and the result of the zone's damped fit with ``reference``."""
    from phenocast.forecasters import fit_damped_zone
    from phenocast.origins import fit_end

    config = load_config(config_path, [*overrides, f"evaluate.damped_reference={reference}"])
    end = fit_end(1, len(stack), config)  # the training period's last month, as a run fits it
    tracemalloc.start()
    start = time.perf_counter()
    fit = fit_damped_zone(stack, config, 1, end)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": seconds, "peak_mb": peak / 2**20, "beta": fit.beta, "phi_lead1": fit.phi[0, 0].tolist()}


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a folder of zones (<zone>/<zone>-NNN.tif)")
    parser.add_argument("--zone", help="the zone to tile (default: the first by name)")
    parser.add_argument("--size", type=int, default=1200, help="pixels per side after tiling (default 1200)")
    parser.add_argument("--months", type=int, default=212, help="months after tiling (default 212)")
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--json", help="also write the results as JSON here")
    arguments = parser.parse_args(argv)

    from phenocast.zones import discover_zones, read_zone

    overrides = [f"data.dir={arguments.data}", *arguments.set]
    config = load_config(arguments.config, overrides)
    needed = config.data.val_months + config.data.test_months + 2 * 12
    if arguments.months < needed or arguments.size < 1:
        raise PhenocastError(f"expected --months of at least {needed} (validation, test and two training years) "
                             f"and a positive --size, got {arguments.months} and {arguments.size}")
    zones = discover_zones(arguments.data, [arguments.zone] if arguments.zone else None)
    zone = zones[0]
    stack = tiled(read_zone(zone, config.data.fill_value, config.data.valid_range), arguments.size, arguments.months)
    print(f"zone {zone.name} tiled to {arguments.months} months of {arguments.size}² pixels; "
          f"{len(config.evaluate.alpha_grid)} candidate β for fitted", flush=True)
    results = {}
    for reference in REFERENCES:
        results[reference] = measure(stack, arguments.config, overrides, reference)
        entry = results[reference]
        print(f"{reference:7s} {entry['seconds']:8.1f} s  peak {entry['peak_mb']:8.1f} MB  β {entry['beta']}",
              flush=True)
    ratio = results["fitted"]["seconds"] / results["ema"]["seconds"]
    print(f"ratio (fitted ÷ ema): {ratio:.1f}× the time, "
          f"{results['fitted']['peak_mb'] / results['ema']['peak_mb']:.2f}× the peak memory")
    if arguments.json:
        atomic_write_text(Path(arguments.json), json.dumps(
            {"zone": zone.name, "size": arguments.size, "months": arguments.months, "results": results,
             "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
