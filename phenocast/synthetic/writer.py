"""Writing the sample: zone geometry (one MODIS tile per zone), the month GeoTIFFs, the oracle files, the
staging folder that makes a sample appear all at once.

A sample folder holds ``Z1/Z1-001.tif`` … one int16 GeoTIFF per zone and month (NDVI × 10000, fill −3000,
no nodata tag, deflate, the MODIS sinusoidal CRS; zone i lies at the upper-left corner of its own MODIS
tile, Z1 at h26v04 like the real Z1, pixels of 926.625433055833 m), and ``_oracle/`` (``ORACLE_README``).
Same arguments → byte-identical files: zone i draws only from ``numpy`` generators seeded by (seed, i).
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from phenocast.config import Config
from phenocast.errors import PhenocastError
from phenocast.io import atomic_path, atomic_write_text
from phenocast.synthetic.world import FILL_VALUE, SCALE, VALID_RANGE, ZoneWorld
from phenocast.zones import GeoProfile, month_file_name, write_geotiff

ORACLE_FOLDER = "_oracle"
STAGING_FOLDER = ".sample-partial"  # where a sample is written before it is moved into place
SOFTWARE = "phenocast.sample synthetic MODIS-like NDVI"
ORACLE_ORIGINS = 48  # the backtest archive holds origins max(1, months - 48) .. months
MIN_MONTHS, MAX_MONTHS = 24, 999  # two years for a climatology; 3-digit file names
MIN_SIZE = 8  # pixels per side
GAP_STREAM = 1  # gap months draw from the generator seeded by (seed, zone index, GAP_STREAM)
MAX_HORIZON = 12  # months the oracle may forecast

# The MODIS sinusoidal grid: 36 × 18 tiles of 1200 pixels of 926.625433055833 m, the grid's upper-left
# corner at (-20015109.354, 10007554.677) m. The CRS is the real files' (a sphere of radius 6371007.181 m);
# written from this WKT it reads back equal (rasterio ``CRS.__eq__``) to that of the competition files.
PIXEL_SIZE = 926.625433055833
TILE_PIXELS = 1200
TILE_SIZE = TILE_PIXELS * PIXEL_SIZE
GRID_TILES = (36, 18)  # (h, v)
GRID_LEFT, GRID_TOP = -20015109.354, 10007554.677
SINUSOIDAL_WKT = (
    'PROJCS["Sinusoidal Modis Spheroid",GEOGCS["Unknown datum based upon the Authalic Sphere",'
    'DATUM["unknown",SPHEROID["Sphere",6371007.181,0]],PRIMEM["Greenwich",0],'
    'UNIT["degree",0.0174532925199433]],PROJECTION["Sinusoidal"],PARAMETER["longitude_of_center",0],'
    'PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1],AXIS["Easting",EAST],'
    'AXIS["Northing",NORTH]]')
FIRST_TILE = (26, 4)  # (h, v) of the real competition zone Z1
TILE_ORDER_LATITUDE = (2.0, 0.4)  # tile order: weight of the row distance, and the offset that puts the
#   rows towards the equator first (mid-latitudes first)


# ---- geometry -----------------------------------------------------------------------------------------

def zone_names(zones: int) -> list[str]:
    """Z1 … Zn."""
    return [f"Z{index + 1}" for index in range(zones)]


def zone_tiles(zones: int) -> list[tuple[int, int]]:
    """A different MODIS tile (h, v) per zone: h26v04 first, then the nearest tiles, mid-latitudes first."""
    columns, rows = GRID_TILES
    weight, offset = TILE_ORDER_LATITUDE
    tiles = [(h, v) for v in range(rows) for h in range(columns)]
    tiles.sort(key=lambda tile: (weight * abs(tile[1] - FIRST_TILE[1] - offset) + abs(tile[0] - FIRST_TILE[0]),
                                 tile))
    if zones > len(tiles):
        raise PhenocastError(f"expected at most {len(tiles)} sample zones (one MODIS tile each), got {zones}")
    return tiles[:zones]


def zone_profile(tile: tuple[int, int], size: int) -> GeoProfile:
    """The georeference of a zone of ``size`` pixels at the upper-left corner of MODIS tile (h, v)."""
    h, v = tile
    return GeoProfile(height=size, width=size, crs=SINUSOIDAL_WKT,
                      transform=(PIXEL_SIZE, 0.0, GRID_LEFT + h * TILE_SIZE, 0.0, -PIXEL_SIZE,
                                 GRID_TOP - v * TILE_SIZE))


# ---- writing ------------------------------------------------------------------------------------------

ORACLE_README = """\
The oracle of the built-in sample (phenocast.sample): the best achievable forecast of each zone.
<zone>/<zone>-<NNN>.tif holds, for the months after the zone's last month, the conditional mean of
the latent (noise-free, cloud-free) NDVI given everything the generator had drawn up to the last month:
its weather and its motion, its slow level and trend, its disturbances, the timing anomalies of the
seasons already drawn; anything drawn later enters at its expectation. <zone>-backtest.npz holds the same
forecast for every origin o from max(1, months - 48) to months: origins int64 (n,), leads int64
(horizon,), forecast int16 (n, horizon, height, width) of months o + lead in stored units (NDVI x 10000,
fill -3000 where the zone is permanently nodata). No method can beat it on average: its error is the
observation noise, the clouds and what the world draws after the origin.
"""


def zone_folders(data_dir: str | Path) -> list[Path]:
    """The zone folders of ``data_dir`` (names not starting with ``_`` or ``.``); [] if it is missing."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return []
    return sorted(path for path in data_dir.iterdir() if path.is_dir() and path.name[0] not in "._")


def check_arguments(zones: int, months: int, size: int, seed: int, first_month: int, missing_months: int,
                    horizon: int, label: str = "sample") -> None:
    """Raise a one-line ``PhenocastError`` for arguments no generator accepts (``label``: what is generated)."""
    if zones < 1:
        raise PhenocastError(f"expected at least 1 {label} zone, got zones = {zones}")
    if months < MIN_MONTHS:
        raise PhenocastError(
            f"expected at least {MIN_MONTHS} {label} months (two years for a climatology), got {months}")
    if months > MAX_MONTHS:
        raise PhenocastError(f"expected at most {MAX_MONTHS} {label} months (3-digit file names), got {months}")
    if size < MIN_SIZE:
        raise PhenocastError(f"expected a {label} size of at least {MIN_SIZE} pixels, got {size}")
    if seed < 0:
        raise PhenocastError(f"expected a seed >= 0, got {seed}")
    if not 1 <= first_month <= 12:
        raise PhenocastError(f"expected first_month to be a calendar month 1..12, got {first_month}")
    if not 0 <= missing_months <= months - 2:
        raise PhenocastError(
            f"expected 0..{months - 2} missing months (the first and last month are always written), got "
            f"{missing_months}")
    if not 1 <= horizon <= MAX_HORIZON:
        raise PhenocastError(f"expected an oracle horizon of 1..{MAX_HORIZON} months, got {horizon}")


def generate_sample(out_dir: str | Path, zones: int = 2, months: int = 120, size: int = 240, seed: int = 0,
                    first_month: int = 7, missing_months: int = 0, horizon: int = 3, progress: bool = True,
                    overwrite: bool = False) -> list[str]:
    """Write the sample zones and their oracle into ``out_dir``.

    Args:
      out_dir: the data folder; gets ``Z1/Z1-001.tif`` … and ``_oracle/``.
      zones, months, size: how many zones, months per zone, pixels per side.
      seed: the world's seed; zone i draws from generators seeded by (seed, i).
      first_month: calendar month (1..12) of month index 1.
      missing_months: whole months per zone left unwritten (gaps; never the first or last month).
      horizon: months after each origin the oracle forecasts.
      progress: show a progress bar over months.
      overwrite: replace the zone folders this call writes (and their oracle) if they exist; without
        it, a folder that already holds zone folders is an error. Everything is written under
        ``out_dir/.sample-partial/`` first and moved into place at the end, so an interrupted run leaves
        no zone folder behind (rerunning starts over).

    Returns:
      The zone names, Z1 … Zn.
    """
    check_arguments(zones, months, size, seed, first_month, missing_months, horizon)

    def write_zone(folder: Path, name: str, index: int, tile: tuple[int, int],
                   advance: Callable[[int], object]) -> None:
        _write_zone(folder, name, index, tile, months, size, seed, first_month, missing_months, horizon,
                    advance)

    return write_zones(out_dir, zone_names(zones), zone_tiles(zones), write_zone, ORACLE_README, months,
                       "sample", progress, overwrite)


ZoneWriter = Callable[[Path, str, int, tuple[int, int], Callable[[int], object]], None]
"""Writes one zone: (folder, zone name, zone index, MODIS tile, advance) → None. Into ``folder`` it writes
``<name>/<name>-NNN.tif`` and ``_oracle/<name>/…`` + ``_oracle/<name>-backtest.npz`` (``save_oracle``),
calling ``advance(1)`` after each month."""


def write_zones(out_dir: str | Path, names: list[str], tiles: list[tuple[int, int]],
                write_zone: ZoneWriter, readme: str, months: int, label: str = "sample",
                progress: bool = True, overwrite: bool = False) -> list[str]:
    """Write generated zones and their oracle into ``out_dir`` so that they appear all at once.

    Everything is written under ``out_dir/.sample-partial/`` first (ignored by zone discovery), then
    moved into place: the oracle first, the zone folders last (a zone folder means a finished set), so an
    interrupted run leaves no zone folder behind (rerunning starts over).

    Args:
      out_dir: the data folder; gets ``<name>/`` per zone and ``_oracle/``.
      names: the zone names, in order (zone index = position).
      tiles: each zone's MODIS tile (``zone_tiles``).
      write_zone: writes one zone into the staging folder (``ZoneWriter``).
      readme: the text of ``_oracle/README.txt`` (written on one line).
      months: months per zone (the progress bar's steps per zone).
      label: what is generated, for the progress bar and the error message.
      progress: show a progress bar over months.
      overwrite: replace the zone folders this call writes (and their oracle) if they exist; without it,
        a folder that already holds zone folders is an error.

    Returns:
      ``names``.
    """
    out_dir = Path(out_dir)
    existing = zone_folders(out_dir)
    if existing and not overwrite:
        listed = ", ".join(path.name for path in existing[:5]) + (", …" if len(existing) > 5 else "")
        raise PhenocastError(
            f"expected a data folder without zone folders to write the {label} into, found {len(existing)} "
            f"({listed}) in {out_dir}; choose another folder or pass --overwrite (overwrite=True)")
    staging = out_dir / STAGING_FOLDER  # ignored by zone discovery: an interrupted run leaves no zone
    if staging.exists():
        shutil.rmtree(staging)
    with tqdm(total=len(names) * months, desc=label, unit="month", disable=not progress) as bar:
        for index, (name, tile) in enumerate(zip(names, tiles)):
            bar.set_postfix_str(name)
            write_zone(staging, name, index, tile, bar.update)
    atomic_write_text(staging / ORACLE_FOLDER / "README.txt", " ".join(readme.split()) + "\n")
    # move into place: the oracle first, the zone folders last (a zone folder means a finished set)
    moves = [Path(ORACLE_FOLDER) / item for name in names for item in (name, f"{name}-backtest.npz")]
    moves += [Path(ORACLE_FOLDER) / "README.txt", *(Path(name) for name in names)]
    (out_dir / ORACLE_FOLDER).mkdir(parents=True, exist_ok=True)
    for item in moves:
        target = out_dir / item
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staging / item, target)
    shutil.rmtree(staging)
    return names


def _write_zone(out_dir: Path, name: str, index: int, tile: tuple[int, int], months: int, size: int,
                seed: int, first_month: int, missing_months: int, horizon: int,
                advance: Callable[[int], object]) -> None:
    """Generate one zone month by month: its files, its oracle GeoTIFFs and its backtest archive."""
    zone = ZoneWorld(size, months, first_month, seed, index)
    profile = zone_profile(tile, size)
    gap_rng = np.random.default_rng(np.random.SeedSequence([seed, index, GAP_STREAM]))
    gaps = set(gap_rng.choice(np.arange(2, months), size=missing_months, replace=False).tolist())
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    first_origin = oracle_first_origin(months)
    forecast = np.empty((months - first_origin + 1, horizon, size, size), dtype=np.int16)  # (origins,
    #   leads, h, w)
    for month in range(1, months + 1):
        stored = zone.observe(zone.step())
        if month not in gaps:
            write_geotiff(folder / month_file_name(name, month), stored, profile, FILL_VALUE, VALID_RANGE,
                          software=SOFTWARE)
        if month >= first_origin:
            for lead in range(1, horizon + 1):
                forecast[month - first_origin, lead - 1] = zone.stored_forecast(lead)
        advance(1)
    save_oracle(out_dir, name, profile, months, forecast, SOFTWARE)


def oracle_first_origin(months: int) -> int:
    """The first origin of the backtest archive: max(1, months - 48) (origins run to ``months``)."""
    return max(1, months - ORACLE_ORIGINS)


def save_oracle(out_dir: Path, name: str, profile: GeoProfile, months: int, forecast: np.ndarray,
                software: str) -> None:
    """Write a zone's oracle: ``_oracle/<name>-backtest.npz`` and the GeoTIFFs of the months after its last.

    Args:
      out_dir: the (staging) data folder.
      profile: the zone's georeference.
      months: the zone's last month.
      forecast: int16 (origins, horizon, height, width), stored units, of origins
        ``oracle_first_origin(months)`` .. ``months`` and leads 1..horizon.
      software: the GeoTIFFs' software tag.
    """
    horizon = forecast.shape[1]
    oracle_dir = out_dir / ORACLE_FOLDER
    for lead in range(1, horizon + 1):
        write_geotiff(oracle_dir / name / month_file_name(name, months + lead), forecast[-1, lead - 1],
                      profile, FILL_VALUE, VALID_RANGE, software=software)
    save_npz(oracle_dir / f"{name}-backtest.npz",
             origins=np.arange(oracle_first_origin(months), months + 1, dtype=np.int64),
             leads=np.arange(1, horizon + 1, dtype=np.int64), forecast=forecast)


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    """Write a compressed ``.npz`` (the format of ``np.savez_compressed``, zlib level 1), atomically."""
    with atomic_path(path) as temporary, zipfile.ZipFile(
            temporary, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    return Path(path)


def ensure_sample(config: Config) -> bool:
    """Generate the built-in sample into ``data.dir`` when ``data.sample`` is set and it holds no zone.

    Uses ``sample.*`` (zones, months, size, seed, missing_months), ``data.first_month`` and
    ``predict.horizon``; prints one line when it generates.

    Returns:
      True if the sample was generated now.
    """
    if not config.data.sample or zone_folders(config.data.dir):
        return False
    if config.data.fill_value != FILL_VALUE or config.data.scale != SCALE:
        raise PhenocastError(
            f"the built-in sample is written with fill {FILL_VALUE} and scale {SCALE:g}, but the config "
            f"has data.fill_value {config.data.fill_value} and data.scale {config.data.scale:g}; use those "
            f"values with data.sample: true")
    sample = config.sample
    started = time.time()
    generate_sample(config.data.dir, zones=sample.zones, months=sample.months, size=sample.size,
                    seed=sample.seed, first_month=config.data.first_month,
                    missing_months=sample.missing_months, horizon=config.predict.horizon)
    print(f"generated the built-in sample in {config.data.dir}: {sample.zones} zone(s) × {sample.months} "
          f"months of {sample.size}×{sample.size} pixels (seed {sample.seed}) in "
          f"{time.time() - started:.0f} s")
    return True


