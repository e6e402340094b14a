"""Zone discovery, validation, reading and writing of monthly NDVI GeoTIFFs.

A zone is a sub-folder of ``data.dir`` holding files ``<folder>-<NNN>.tif`` (NNN = 1-based month index,
any number of digits). Months are ordered by the parsed integer, never by directory listing; indices
missing inside a zone's range are gaps (all-nodata months). Folders whose names start with ``_`` or ``.``
are not zones (the sample's ``_oracle`` folder lives there). Every file of a zone must be a single-band
int16 GeoTIFF with the same size, CRS and transform, and whole: discovery reads headers only, and a file
whose TIFF block layout ends past its size on disk is reported as truncated (a cut file can still open,
having lost its georeference, and must not be blamed on a different CRS).

Values equal to ``data.fill_value`` or outside ``data.valid_range`` are nodata. ``read_zone`` returns the
int16 stack with every nodata pixel (and every gap month) set to ``fill_value``, so the valid mask is
simply ``stack != fill_value``; it never materialises floating-point zone stacks.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from phenocast.errors import PhenocastError
from phenocast.io import atomic_path

TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class GeoProfile:
    """The georeference every file of a zone shares (JSON-serialisable)."""

    height: int
    width: int
    crs: str | None  # WKT, or None when the files carry no CRS
    transform: tuple[float, ...]  # the 6 affine coefficients (a, b, c, d, e, f)

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GeoProfile:
        return cls(height=int(values["height"]), width=int(values["width"]), crs=values["crs"],
                   transform=tuple(float(v) for v in values["transform"]))


@dataclass(frozen=True)
class Zone:
    """One zone: its month files (by month index) and shared georeference."""

    name: str
    folder: Path
    files: dict[int, Path]  # month index → file, for the months present
    profile: GeoProfile

    @property
    def first(self) -> int:
        return min(self.files)

    @property
    def last(self) -> int:
        return max(self.files)

    @property
    def months(self) -> list[int]:
        """Every month index from the first to the last, gaps included."""
        return list(range(self.first, self.last + 1))

    @property
    def gaps(self) -> list[int]:
        return [month for month in self.months if month not in self.files]

    @property
    def shape(self) -> tuple[int, int]:
        return self.profile.height, self.profile.width


def month_file_name(zone: str, month: int) -> str:
    """``Z1``, 7 → ``Z1-007.tif``."""
    return f"{zone}-{month:03d}.tif"


def natural_key(name: str) -> list[Any]:
    """Sort key that orders Z2 before Z10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _month_files(folder: Path) -> dict[int, Path]:
    """Parse ``<folder>-<NNN>.tif`` names; raise on non-numeric or duplicate month indices."""
    prefix = folder.name + "-"
    files: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in TIFF_SUFFIXES or path.name.startswith("."):
            continue
        stem = path.stem
        if not stem.startswith(prefix):
            raise PhenocastError(
                f"expected files named {prefix}<NNN>.tif in zone folder {folder}, found {path.name}; "
                f"rename or move it")
        index_text = stem[len(prefix):]
        if not index_text.isdigit():
            raise PhenocastError(
                f"expected a numeric month index like {prefix}007.tif, found {path.name} in {folder}; "
                f"rename it")
        month = int(index_text)
        if month < 1:
            raise PhenocastError(f"expected month indices from 1, found {path.name} in {folder}; rename it")
        if month in files:
            raise PhenocastError(
                f"expected one file per month, found {files[month].name} and {path.name} both for month "
                f"{month} in {folder}; remove one")
        files[month] = path
    return files


def same_crs(first: str | None, second: str | None) -> bool:
    """Whether two WKT strings (or None) describe the same CRS (WKT text may differ for the same CRS)."""
    if first is None or second is None:
        return first is second
    return first == second or CRS.from_wkt(first) == CRS.from_wkt(second)


def _profile_of(path: Path, dataset: Any) -> GeoProfile:
    crs = dataset.crs.to_wkt() if dataset.crs else None
    return GeoProfile(height=dataset.height, width=dataset.width, crs=crs,
                      transform=tuple(dataset.transform)[:6])


def _describe(dtype: str, count: int, height: int, width: int) -> str:
    bands = "" if count == 1 else f" {count}-band"
    return f"{dtype}{bands} {height}×{width}"


def _open(path: Path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as error:
        raise PhenocastError(
            f"expected a readable GeoTIFF, cannot read {path}: could not open it "
            f"({' '.join(str(error).split())}); the file is truncated, corrupt or not a GeoTIFF: "
            f"replace the file") from None


ALL_BLOCKS_LIMIT = 64  # images with up to this many blocks have every block checked, larger ones the first and last


def _data_end(dataset: Any) -> int | None:
    """Where band 1's pixel data ends in the file, from the TIFF block layout GDAL reports.

    The end is the max of offset + size over every block of a small image, else over the first and last
    blocks (writers store blocks in order). Costs a few header look-ups, no pixel decoding.

    Args:
      dataset: an open rasterio dataset.

    Returns:
      The end in bytes, or None when the file is not a GTiff or GDAL reports no block offsets.
    """
    if dataset.driver != "GTiff":
        return None
    block_height, block_width = dataset.block_shapes[0]
    columns = -(-dataset.width // block_width)
    rows = -(-dataset.height // block_height)
    if columns * rows <= ALL_BLOCKS_LIMIT:
        blocks = [(column, row) for row in range(rows) for column in range(columns)]
    else:
        blocks = [(0, 0), (columns - 1, rows - 1)]
    end = None
    for column, row in blocks:  # BLOCK_OFFSET_<x>_<y>: x = block column, y = block row
        offset = dataset.get_tag_item(f"BLOCK_OFFSET_{column}_{row}", "TIFF", bidx=1)
        size = dataset.get_tag_item(f"BLOCK_SIZE_{column}_{row}", "TIFF", bidx=1)
        if offset is not None and size is not None:
            end = max(end or 0, int(offset) + int(size))
    return end


def check_integrity(path: Path, dataset: Any) -> None:
    """Raise when a GeoTIFF that opens is truncated: its last data block ends beyond the file's size.

    A truncated file can still open (its header survives) yet lose its georeference tags, so this runs
    before any comparison with the zone's other files. When GDAL reports no block layout for a GTiff
    (the cut went through the block offset table, or the file is sparse), the first block is decoded
    instead; other formats are not checked.

    Args:
      path: the file on disk.
      dataset: ``path`` opened with rasterio.
    """
    size = path.stat().st_size
    needed = _data_end(dataset)
    if needed is not None:
        if needed > size:
            raise PhenocastError(
                f"expected a readable GeoTIFF, cannot read {path}: the file is truncated ({size} bytes, its "
                f"data needs {needed}); replace it")
        return
    if dataset.driver != "GTiff":
        return
    block_height, block_width = dataset.block_shapes[0]
    window = Window(0, 0, min(block_width, dataset.width), min(block_height, dataset.height))
    try:
        dataset.read(1, window=window)
    except RasterioError:
        raise PhenocastError(
            f"expected a readable GeoTIFF, cannot read {path}: its block offsets are missing and its first "
            f"block does not decode, so the file ({size} bytes) is truncated or corrupt; replace it") from None


def check_zone_files(name: str, folder: Path, files: dict[int, Path]) -> GeoProfile:
    """Open every file's header: not truncated, single-band int16, and the same size, CRS and transform.

    Returns:
      The zone's shared ``GeoProfile`` (from its first month).
    """
    reference: GeoProfile | None = None
    reference_path: Path | None = None
    for month in sorted(files):
        path = files[month]
        with _open(path) as dataset:
            check_integrity(path, dataset)
            found = _describe(dataset.dtypes[0], dataset.count, dataset.height, dataset.width)
            profile = _profile_of(path, dataset)
            if dataset.count != 1 or dataset.dtypes[0] != "int16":
                raise PhenocastError(
                    f"expected a single-band int16 GeoTIFF (NDVI × 10000) in zone {name}, got {found} "
                    f"in {path}; convert it to int16 NDVI × 10000 with fill -3000")
        if reference is None:
            reference, reference_path = profile, path
            continue
        expected = _describe("int16", 1, reference.height, reference.width)
        if (profile.height, profile.width) != (reference.height, reference.width):
            raise PhenocastError(
                f"expected int16 {reference.height}×{reference.width} GeoTIFF like the rest of zone "
                f"{name} ({reference_path.name}), got {found} in {path}; fix or remove the file")
        if not same_crs(profile.crs, reference.crs):
            raise PhenocastError(
                f"expected the CRS of the rest of zone {name} ({reference_path.name}), got a different "
                f"CRS in {path}; reproject the file to the zone's grid")
        if not np.allclose(profile.transform, reference.transform, rtol=0, atol=1e-6):
            raise PhenocastError(
                f"expected the transform of the rest of zone {name} {reference.transform} "
                f"({expected}), got {profile.transform} in {path}; resample the file to the zone's grid")
    assert reference is not None
    return reference


def discover_zones(data_dir: str | Path, selected: Iterable[str] | None = None,
                   report: Callable[[str], None] | None = print) -> list[Zone]:
    """Find, check and order the zones of ``data_dir``.

    Args:
      data_dir: the folder holding one sub-folder per zone.
      selected: zone names to keep (``data.zones``); None = all. Unknown names are an error.
      report: called once per zone with gaps, with a one-line message (None = silent).

    Returns:
      Zones in natural name order (Z1, Z2, …, Z10).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise PhenocastError(
            f"expected a data folder with one sub-folder per zone (like {data_dir}/Z1/Z1-001.tif), found "
            f"no folder {data_dir}; create it, set data.dir, or set data.sample: true for the sample")
    folders = sorted((p for p in data_dir.iterdir() if p.is_dir() and p.name[0] not in "._"),
                     key=lambda p: natural_key(p.name))
    if not folders:
        raise PhenocastError(
            f"expected zone folders like {data_dir}/Z1/Z1-001.tif, found none in {data_dir}; put the "
            f"zones there or set data.sample: true to generate the sample")
    names = [folder.name for folder in folders]
    if selected is not None:
        missing = [name for name in selected if name not in names]
        if missing:
            raise PhenocastError(
                f"data.zones asks for {', '.join(missing)}, not found in {data_dir} (zones there: "
                f"{', '.join(names)}); fix data.zones")
        keep = set(selected)
        folders = [folder for folder in folders if folder.name in keep]
    zones = []
    for folder in folders:
        files = _month_files(folder)
        if not files:
            others = sum(1 for p in folder.iterdir() if p.is_file())
            raise PhenocastError(
                f"expected files named {folder.name}-<NNN>.tif in zone folder {folder}, found none "
                f"({others} other files); rename them or move the folder out of {data_dir}")
        profile = check_zone_files(folder.name, folder, files)
        zone = Zone(name=folder.name, folder=folder, files=files, profile=profile)
        if zone.gaps and report is not None:
            report(f"zone {zone.name}: {len(zone.gaps)} missing month(s) treated as nodata: "
                   f"{format_months(zone.gaps)}")
        zones.append(zone)
    return zones


FINGERPRINT_PREFIX = "content-"  # input fingerprints of file contents; older ones (16 hex digits) hashed times


def input_fingerprint(zone: Zone) -> str:
    """Hash of a zone's input files' contents, month by month.

    The same files give the same fingerprint wherever they are copied or restored, whatever their
    modification times, so moving ``data/`` to another disk or machine keeps the records, baselines and
    trained stages made from it; a changed month changes it. Each file is read once per process (about 5 s
    per 10 GB on one core, besides the disk).
    """
    digest = hashlib.sha256()
    for month in sorted(zone.files):
        digest.update(f"{month}:{file_digest(zone.files[month])};".encode())
    return FINGERPRINT_PREFIX + digest.hexdigest()[:16]


def inputs_unchanged(fingerprint: str, zone: Zone) -> bool:
    """Whether ``fingerprint``, stored when records were written, still describes the zone's files: equal to
    ``input_fingerprint``, or for one stored before fingerprints hashed contents, equal to that older hash
    of names, sizes and modification times (so an upgrade does not rebuild records whose files stayed)."""
    if fingerprint.startswith(FINGERPRINT_PREFIX):
        return fingerprint == input_fingerprint(zone)
    digest = hashlib.sha256()
    for month in sorted(zone.files):
        status = zone.files[month].stat()
        digest.update(f"{month}:{zone.files[month].name}:{status.st_size}:{status.st_mtime_ns};".encode())
    return fingerprint == digest.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (hex), read once per process while its size, times and inode stay."""
    status = path.stat()  # a rewritten file changes one of these, so the cache never answers for old bytes
    return _content_digest(str(path.resolve()), status.st_size, status.st_mtime_ns, status.st_ctime_ns,
                           status.st_ino)


@functools.cache
def _content_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def format_months(months: list[int]) -> str:
    """[3, 4, 5, 9] → '3-5, 9'."""
    parts, start = [], None
    for index, month in enumerate(months):
        if start is None:
            start = month
        if index + 1 == len(months) or months[index + 1] != month + 1:
            parts.append(str(start) if start == month else f"{start}-{month}")
            start = None
    return ", ".join(parts)


def mask_invalid(values: np.ndarray, fill_value: int, valid_range: list[int] | tuple[int, int]) -> None:
    """Set, in place, every value outside ``valid_range`` (the fill value included) to ``fill_value``."""
    low, high = valid_range
    values[(values < low) | (values > high)] = fill_value


def read_month(zone: Zone, month: int, fill_value: int, valid_range: list[int] | tuple[int, int],
               out: np.ndarray | None = None) -> np.ndarray:
    """Read one month as int16 (height, width), nodata set to ``fill_value``; a gap month is all fill."""
    if out is None:
        out = np.empty(zone.shape, dtype=np.int16)
    path = zone.files.get(month)
    if path is None:
        out[...] = fill_value
        return out
    try:
        with _open(path) as dataset:
            dataset.read(1, out=out)
    except RasterioError as error:
        raise PhenocastError(
            f"expected a readable GeoTIFF, cannot read {path}: could not decode it "
            f"({' '.join(str(error).split())}); the file is truncated or corrupt: replace it") from None
    mask_invalid(out, fill_value, valid_range)
    return out


def read_zone(zone: Zone, fill_value: int, valid_range: list[int] | tuple[int, int],
              months: list[int] | None = None, progress: Callable[[int], None] | None = None,
              threads: int = 1) -> np.ndarray:
    """Read a zone's months into one int16 stack.

    Args:
      zone: the zone.
      fill_value, valid_range: ``data.fill_value`` and ``data.valid_range``.
      months: month indices to read (default every month from first to last, gaps included).
      progress: called with 1 after every month read (e.g. ``tqdm.update``).
      threads: months decoded in parallel (rasterio releases the GIL while decoding).

    Returns:
      int16 array (months, height, width); gaps and nodata pixels are ``fill_value``.
    """
    months = zone.months if months is None else months
    stack = np.empty((len(months), *zone.shape), dtype=np.int16)  # (months, height, width)

    def read(index: int) -> None:
        read_month(zone, months[index], fill_value, valid_range, out=stack[index])
        if progress is not None:
            progress(1)

    if threads <= 1:
        for index in range(len(months)):
            read(index)
    else:  # warning filters are process-wide: set them once here, not only inside each thread
        with warnings.catch_warnings(), concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            list(pool.map(read, range(len(months))))  # re-raises the first error
    return stack


def to_int16(values: np.ndarray, fill_value: int, valid_range: list[int] | tuple[int, int]
             ) -> np.ndarray:
    """Stored units (NDVI × scale, float) → int16: rounded half away from zero, clipped, NaN → fill."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        out = np.clip(values, *valid_range).astype(np.int16)
        out[values == fill_value] = fill_value
        return out
    finite = np.isfinite(values)
    values = np.where(finite, values, 0)
    rounded = np.sign(values) * np.floor(np.abs(values) + 0.5)
    out = np.clip(rounded, *valid_range).astype(np.int16)
    out[~finite] = fill_value
    return out


def write_geotiff(path: str | Path, values: np.ndarray, profile: GeoProfile, fill_value: int,
                  valid_range: list[int] | tuple[int, int], software: str | None = None) -> Path:
    """Write one month as an int16, deflate GeoTIFF in the zone's CRS and transform, atomically.

    Float input is in stored units (NDVI × scale): it is rounded (never truncated) and clipped to
    ``valid_range``; NaN becomes ``fill_value``. Integer input equal to ``fill_value`` stays fill. Like
    the competition files, no nodata tag is written.

    Args:
      path: target file.
      values: (height, width) array.
      profile: the zone's ``GeoProfile``.
      software: optional TIFFTAG_SOFTWARE.

    Returns:
      The path written.
    """
    values = np.asarray(values)
    if values.shape != (profile.height, profile.width):
        raise ValueError(f"expected a {profile.height}×{profile.width} image for {path}, "
                         f"got {values.shape}")
    data = to_int16(values, fill_value, valid_range)
    options = dict(driver="GTiff", height=profile.height, width=profile.width, count=1, dtype="int16",
                   crs=profile.crs, transform=profile.affine, compress="deflate")
    with atomic_path(path) as temporary, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(temporary, "w", **options) as dataset:
            dataset.write(data, 1)
            if software:
                dataset.update_tags(TIFFTAG_SOFTWARE=software)
    return Path(path)


def read_profile(path: str | Path) -> GeoProfile:
    """The georeference of one GeoTIFF."""
    path = Path(path)
    with _open(path) as dataset:
        return _profile_of(path, dataset)
