"""Zone discovery, validation, reading and writing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError

from phenocast.errors import PhenocastError
from phenocast.zones import discover_zones, format_months, read_month, read_zone, same_crs, to_int16, write_geotiff

from conftest import FILL, VALID_RANGE, synthetic_stack, tiny_profile, write_zone


def test_discovery_orders_zones_and_months_by_number_not_listing(tmp_path: Path):
    data_dir = tmp_path / "data"
    stack = synthetic_stack(14, 8, 8)
    for name in ("Z10", "Z2", "Z1"):
        write_zone(data_dir, name, stack)
    # a month with an unpadded index sorts by value: 9 < 10 < 11 (not "10" < "11" < "9")
    folder = data_dir / "Z2"
    (folder / "Z2-009.tif").rename(folder / "Z2-9.tif")
    (data_dir / "_oracle").mkdir()  # underscore folders are not zones
    (data_dir / "Z1" / "notes.txt").write_text("ignored")
    reports = []
    zones = discover_zones(data_dir, report=reports.append)
    assert [zone.name for zone in zones] == ["Z1", "Z2", "Z10"]
    z2 = zones[1]
    assert z2.months == list(range(1, 15)) and z2.files[9].name == "Z2-9.tif"
    assert not reports
    assert [zone.name for zone in discover_zones(data_dir, ["Z10", "Z1"])] == ["Z1", "Z10"]


def test_gaps_are_reported_once_and_read_as_fill(tiny_data: Path):
    reports = []
    zones = discover_zones(tiny_data, report=reports.append)
    assert zones[1].gaps == [5, 17]
    assert reports == ["zone Z2: 2 missing month(s) treated as nodata: 5, 17"]
    stack = read_zone(zones[1], FILL, VALID_RANGE)
    assert stack.dtype == np.int16 and stack.shape == (40, 16, 16)
    assert (stack[4] == FILL).all() and (stack[16] == FILL).all()
    assert (stack[3] != FILL).mean() > 0.9
    assert format_months([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"


def test_values_outside_the_valid_range_are_masked(tmp_path: Path):
    stack = np.full((13, 4, 4), 5000, dtype=np.int16)
    stack[0, 0, 0] = -2500  # below valid_range: masked like the fill value
    stack[0, 0, 1] = FILL
    stack[0, 0, 2] = -2000  # water at the lower bound is valid
    write_zone(tmp_path, "Z1", stack)
    profile = tiny_profile(4, 4)
    with rasterio.open(tmp_path / "Z1" / "Z1-001.tif", "w", driver="GTiff", height=4, width=4, count=1,
                       dtype="int16", crs=profile.crs, transform=profile.affine) as dataset:
        dataset.write(stack[:1])  # raw values: the writer would clip -2500
    (zone,) = discover_zones(tmp_path, report=None)
    image = read_month(zone, 1, FILL, VALID_RANGE)
    assert image[0, 0] == FILL and image[0, 1] == FILL and image[0, 2] == -2000


def expect_error(data_dir: Path, *fragments: str) -> str:
    with pytest.raises(PhenocastError) as caught:
        zones = discover_zones(data_dir, report=None)
        for zone in zones:
            read_zone(zone, FILL, VALID_RANGE)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_or_empty_data_dir(tmp_path: Path):
    expect_error(tmp_path / "nowhere", "found no folder", "data.sample: true")
    (tmp_path / "empty").mkdir()
    expect_error(tmp_path / "empty", "expected zone folders like", "found none in")


def test_folder_without_matching_files(tmp_path: Path):
    (tmp_path / "Z1").mkdir()
    (tmp_path / "Z1" / "readme.md").write_text("x")
    expect_error(tmp_path, "expected files named Z1-<NNN>.tif", "found none")


def test_non_numeric_and_duplicate_month_index(tmp_path: Path):
    folder = write_zone(tmp_path, "Z1", synthetic_stack(13, 4, 4))
    shutil.copy(folder / "Z1-007.tif", folder / "Z1-7.tif")
    expect_error(tmp_path, "expected one file per month", "Z1-007.tif and Z1-7.tif")
    (folder / "Z1-7.tif").rename(folder / "Z1-abc.tif")
    expect_error(tmp_path, "expected a numeric month index", "Z1-abc.tif")


def test_unknown_zone_in_selection(tiny_data: Path):
    with pytest.raises(PhenocastError, match="data.zones asks for Z9, not found"):
        discover_zones(tiny_data, ["Z9"], report=None)


def first_cuts(path: Path, scratch: Path) -> dict[tuple[bool, bool], int]:
    """Truncate copies of ``path`` at growing lengths and classify the ones rasterio still opens.

    Returns:
      {(has a CRS, GDAL reports block offsets): the shortest length that opens in that state}.
    """
    data = path.read_bytes()
    cuts: dict[tuple[bool, bool], int] = {}
    for length in range(8, len(data), 2):
        scratch.write_bytes(data[:length])
        try:
            with rasterio.open(scratch) as dataset:
                state = (dataset.crs is not None,
                         dataset.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1) is not None)
        except RasterioError:
            continue
        cuts.setdefault(state, length)
        if state == (True, True):
            break
    return cuts


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_corrupt_and_truncated_tiffs(tmp_path: Path):
    stack = synthetic_stack(13, 256, 64)  # 4 strips of 64 rows: the block offset table lives outside the IFD
    folder = write_zone(tmp_path, "Z1", stack)
    (folder / "Z1-003.tif").write_bytes(b"not a tiff at all")
    message = expect_error(tmp_path, "could not open", "cannot read", "Z1-003.tif", "replace the file")
    assert "truncated" in message
    write_zone(tmp_path, "Z1", stack)
    cuts = first_cuts(folder / "Z1-004.tif", tmp_path / "scratch.tif")
    assert set(cuts) == {(False, False), (False, True), (True, True)}, cuts
    size = (folder / "Z1-004.tif").stat().st_size
    cases = [
        ("Z1-004.tif", cuts[(False, True)]),  # opens, CRS lost, block offsets known: the last block is cut
        ("Z1-001.tif", cuts[(False, True)]),  # the same for the zone's first month (the reference)
        ("Z1-004.tif", cuts[(False, False)]),  # opens, CRS and block offset table lost
        ("Z1-004.tif", cuts[(True, True)]),  # CRS kept, pixel data cut
        ("Z1-004.tif", (cuts[(True, True)] + size) // 2),
        ("Z1-004.tif", size - 1),  # one byte short
    ]
    for name, length in cases:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[:length])
        message = expect_error(tmp_path, "truncated", "cannot read", name, "replace it")
        assert "CRS" not in message, (name, length, message)
        (folder / name).write_bytes(data)
    (zone,) = discover_zones(tmp_path, report=None)  # whole files pass the check
    assert read_zone(zone, FILL, VALID_RANGE).shape == (13, 256, 64)


def test_size_dtype_crs_transform_and_band_mismatches(tmp_path: Path):
    folder = write_zone(tmp_path, "Z3", synthetic_stack(13, 8, 8))
    bad = folder / "Z3-005.tif"
    write_geotiff(bad, synthetic_stack(1, 8, 10)[0], tiny_profile(8, 10), FILL, VALID_RANGE)
    expect_error(tmp_path, "expected int16 8×8 GeoTIFF like the rest of zone Z3", "got int16 8×10",
                 "Z3-005.tif")
    write_geotiff(bad, synthetic_stack(1, 8, 8)[0], tiny_profile(8, 8, crs=CRS.from_epsg(32631)), FILL,
                  VALID_RANGE)
    expect_error(tmp_path, "expected the CRS of the rest of zone Z3", "Z3-005.tif")
    write_geotiff(bad, synthetic_stack(1, 8, 8)[0], tiny_profile(8, 8, pixel=500.0), FILL, VALID_RANGE)
    expect_error(tmp_path, "expected the transform of the rest of zone Z3", "Z3-005.tif")
    profile = tiny_profile(8, 8)
    with rasterio.open(bad, "w", driver="GTiff", height=8, width=8, count=1, dtype="float32",
                       crs=profile.crs, transform=profile.affine) as dataset:
        dataset.write(np.zeros((1, 8, 8), np.float32))
    expect_error(tmp_path, "expected a single-band int16 GeoTIFF", "got float32 8×8", "Z3-005.tif")
    with rasterio.open(bad, "w", driver="GTiff", height=8, width=8, count=2, dtype="int16",
                       crs=profile.crs, transform=profile.affine) as dataset:
        dataset.write(np.zeros((2, 8, 8), np.int16))
    expect_error(tmp_path, "expected a single-band int16 GeoTIFF", "got int16 2-band 8×8")


def test_writer_rounds_clips_fills_and_keeps_georeference(tmp_path: Path):
    profile = tiny_profile(2, 3)
    values = np.array([[1.5, -1.5, 2.4999], [12000.0, -2600.0, np.nan]])
    path = write_geotiff(tmp_path / "out" / "Z1-121.tif", values, profile, FILL, VALID_RANGE)
    with rasterio.open(path) as dataset:
        assert dataset.dtypes[0] == "int16" and dataset.nodata is None
        assert dataset.compression.name == "deflate"
        assert same_crs(dataset.crs.to_wkt(), profile.crs) and tuple(dataset.transform)[:6] == profile.transform
        written = dataset.read(1)
    assert written.tolist() == [[2, -2, 2], [10000, -2000, FILL]]
    assert not list(path.parent.glob(".tmp-*"))
    assert to_int16(np.array([FILL, 20000], np.int16), FILL, VALID_RANGE).tolist() == [FILL, 10000]


def test_writer_leaves_nothing_on_failure(tmp_path: Path):
    with pytest.raises(ValueError, match="expected a 2×3 image"):
        write_geotiff(tmp_path / "Z1-001.tif", np.zeros((3, 3)), tiny_profile(2, 3), FILL, VALID_RANGE)
    assert not list(tmp_path.iterdir())
