"""The built-in sample: synthetic zones of monthly MODIS-like NDVI, in exactly the competition's format.

    python -m phenocast.sample --out DIR [--zones 2 --months 120 --size 240 --seed 0 --first-month 7
                                          --missing-months 0 --horizon 3 --overwrite --quiet]

Out: ``DIR/Z1/Z1-001.tif`` … one int16 GeoTIFF per zone and month (NDVI × 10000, fill −3000, no nodata
tag, deflate, the MODIS sinusoidal CRS; zone i lies at the upper-left corner of its own MODIS tile, Z1 at
h26v04 like the real Z1, pixels of 926.625433055833 m), and ``DIR/_oracle/``: the best achievable
forecast (the conditional mean of the latent NDVI given everything drawn up to the origin; see
``ORACLE_README``). Same arguments → byte-identical files: zone i draws only from ``numpy`` generators
seeded by (seed, i).

The generative model, the oracle and the realism statistics live in ``phenocast.synthetic`` (its
docstring states the model formula by formula); this module is the command line and re-exports them.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

from phenocast.errors import cli_main
from phenocast.synthetic import (  # noqa: F401 (re-exported: the sample's public names)
    DEFAULT_WORLD,
    FILL_VALUE,
    LAND_COVERS,
    ORACLE_FOLDER,
    ORACLE_README,
    SCALE,
    VALID_RANGE,
    LandCover,
    SpectralGrid,
    World,
    ZoneWorld,
    ensure_sample,
    forecastability_statistics,
    generate_sample,
    realism_statistics,
    save_npz,
    zone_folders,
)

DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(generate_sample).parameters.items()
            if parameter.default is not inspect.Parameter.empty}  # the command line's defaults are the function's


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m phenocast.sample``."""
    parser = argparse.ArgumentParser(prog="python -m phenocast.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="data folder to write the zones into")
    parser.add_argument("--zones", type=int, default=DEFAULTS["zones"],
                        help=f"number of zones (default {DEFAULTS['zones']})")
    parser.add_argument("--months", type=int, default=DEFAULTS["months"],
                        help=f"months per zone (default {DEFAULTS['months']})")
    parser.add_argument("--size", type=int, default=DEFAULTS["size"],
                        help=f"pixels per side (default {DEFAULTS['size']})")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                        help=f"the world's seed (default {DEFAULTS['seed']})")
    parser.add_argument("--first-month", type=int, default=DEFAULTS["first_month"],
                        help=f"calendar month of month index 1 (default {DEFAULTS['first_month']}: month 001 "
                             f"is a summer month)")
    parser.add_argument("--missing-months", type=int, default=DEFAULTS["missing_months"],
                        help=f"gap months per zone (default {DEFAULTS['missing_months']})")
    parser.add_argument("--horizon", type=int, default=DEFAULTS["horizon"],
                        help=f"months the oracle forecasts (default {DEFAULTS['horizon']})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing sample zone folders")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Generate the sample as the command line says; print what was written. Returns the exit code."""
    arguments = build_parser().parse_args(argv)
    started = time.time()
    names = generate_sample(arguments.out, zones=arguments.zones, months=arguments.months,
                            size=arguments.size, seed=arguments.seed, first_month=arguments.first_month,
                            missing_months=arguments.missing_months, horizon=arguments.horizon,
                            progress=not arguments.quiet, overwrite=arguments.overwrite)
    written = [path for name in names for path in (arguments.out / name).glob(f"{name}-*.tif")]
    oracle = [path for path in (arguments.out / ORACLE_FOLDER).rglob("*") if path.is_file()]
    size = sum(path.stat().st_size for path in written + oracle)
    print(f"wrote {len(names)} zone(s) × {arguments.months} months of {arguments.size}×{arguments.size} "
          f"pixels to {arguments.out}: {len(written)} month files and {len(oracle)} oracle files, "
          f"{size / 1e6:.1f} MB in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
