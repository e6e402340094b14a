"""preprocess: round trip, context, skip/rebuild, interrupted runs, parallel workers, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from phenocast import records
from phenocast.config import load_config
from phenocast.errors import PhenocastError
from phenocast.preprocess import context_stack, load_zone_records, preprocess
from phenocast.tiling import extract_window, inside_mask, window_grid
from phenocast.zones import discover_zones, month_file_name, read_zone, write_geotiff

from conftest import FILL, ROOT, VALID_RANGE, synthetic_stack, write_zone


def tiny_config(data_dir: Path, tmp_path: Path, *overrides: str):
    return load_config(ROOT / "configs" / "sample.yaml", [
        f"data.dir={data_dir}", "data.sample=false", f"output.dir={tmp_path / 'outputs'}",
        "tiling.centre=8", "tiling.margin=4", "sequence.years=1", "data.val_months=12", "records.workers=1",
        *overrides])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.tfrecord*"))}


@pytest.mark.parametrize("compression", ["SPLIT_ZLIB", "SHUFFLE_ZLIB", "GZIP", "NONE"])
def test_round_trip_windows_context_and_masks(tiny_data: Path, tmp_path: Path, compression: str):
    config = tiny_config(tiny_data, tmp_path, f"records.compression={compression}",
                         "records.windows_per_shard=4")
    summary = preprocess(config, progress=False, log=lambda message: None)
    assert summary["built"] == 2 and summary["records"] == 3 * 3 + 2 * 2
    manifest, zone_records = load_zone_records(config)
    assert manifest["zones"]["Z2"]["gaps"] == [5, 17]
    for zone, stored in zip(discover_zones(tiny_data, report=None), zone_records):
        stack = read_zone(zone, FILL, VALID_RANGE)
        grid = window_grid(*zone.shape, 8, 4)
        assert [p.name for p in stored.shards] == [
            records.shard_name(zone.name, k, len(stored.shards), compression)
            for k in range(len(stored.shards))]
        parsed = list(records.iterate_windows(stored, compression))
        assert len(parsed) == len(grid)
        for window, record in zip(grid.windows, parsed):
            assert record["zone"].decode() == zone.name
            assert record["position"].tolist() == [window.row, window.col, window.top, window.left]
            assert record["zone_size"].tolist() == list(zone.shape)
            assert (record["first_month"], record["months"]) == (1, 40)
            np.testing.assert_array_equal(record["stack"], extract_window(stack, window))
            inside = inside_mask(window, *zone.shape)
            valid = record["stack"] != FILL
            # masks: a gap month is all fill; inside pixels are valid exactly where the source is
            if zone.name == "Z2":
                assert not valid[4].any() and not valid[16].any()
            rows = np.arange(window.top, window.top + grid.size)[:, None]
            cols = np.arange(window.left, window.left + grid.size)[None, :]
            source = stack[:, np.clip(rows, 0, zone.shape[0] - 1), np.clip(cols, 0, zone.shape[1] - 1)]
            np.testing.assert_array_equal(valid[:, inside], (source != FILL)[:, inside])
        context = records.read_context(stored, compression)
        factor = records.context_factor(*zone.shape, 8)
        np.testing.assert_array_equal(context["stack"], context_stack(stack, factor, FILL))
        assert context["factor"] == factor == {"Z1": 3, "Z2": 2}[zone.name]
        assert context["stack"].shape[1:] == (-(-zone.shape[0] // factor), -(-zone.shape[1] // factor))


def test_records_follow_file_contents_not_times_and_accept_the_older_fingerprint(tiny_data: Path, tmp_path: Path):
    """Data copied elsewhere (new modification times, same bytes) keeps its records; a record made when the
    fingerprint hashed names, sizes and times is kept while those stay, and rebuilt once they change."""
    import os
    import shutil

    from phenocast.zones import FINGERPRINT_PREFIX

    copied = tmp_path / "copied"
    shutil.copytree(tiny_data, copied)  # copytree keeps times: give every file a new one, as a copy would
    for path in sorted(copied.rglob("*.tif")):
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    config = tiny_config(copied, tmp_path, f"records.dir={tmp_path / 'records'}")
    preprocess(config, progress=False, log=lambda message: None)
    manifest_file = config.records_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    assert all(entry["inputs"].startswith(FINGERPRINT_PREFIX) for entry in manifest["zones"].values())
    for path in sorted(copied.rglob("*.tif")):  # moved once more: the same bytes, other times
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 7_000_000_000))
    assert preprocess(config, progress=False, log=lambda message: None)["built"] == 0
    load_zone_records(config, zones=discover_zones(copied, report=None))  # the run accepts them

    # a manifest from before: Z1's fingerprint the older hash of the files' names, sizes and times
    import hashlib

    zone = discover_zones(copied, report=None)[0]
    older = hashlib.sha256()
    for month in sorted(zone.files):
        status = zone.files[month].stat()
        older.update(f"{month}:{zone.files[month].name}:{status.st_size}:{status.st_mtime_ns};".encode())
    manifest["zones"][zone.name]["inputs"] = older.hexdigest()[:16]
    manifest_file.write_text(json.dumps(manifest))
    load_zone_records(config, zones=discover_zones(copied, report=None))
    assert preprocess(config, progress=False, log=lambda message: None)["built"] == 0
    manifest_file.write_text(json.dumps(manifest))  # the older entry again, whatever the skip wrote
    path = zone.files[min(zone.files)]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    with pytest.raises(PhenocastError, match="older than its files"):
        load_zone_records(config, zones=discover_zones(copied, report=None))
    assert preprocess(config, progress=False, log=lambda message: None)["built"] == 1
    rebuilt = json.loads(manifest_file.read_text())["zones"][zone.name]["inputs"]
    assert rebuilt.startswith(FINGERPRINT_PREFIX)


def test_context_is_the_mean_of_valid_pixels_per_block():
    stack = np.array([[[1, 3, 10], [FILL, 5, FILL]]], dtype=np.int16)  # (1 month, 2, 3)
    context = context_stack(stack, 2, FILL)
    assert context.tolist() == [[[3, 10]]]  # (1+3+5)/3 = 3; the right block has only 10
    assert context_stack(np.full((1, 2, 2), FILL, np.int16), 2, FILL).tolist() == [[[FILL]]]


def test_rerun_skips_and_changes_rebuild_only_what_they_affect(tiny_data: Path, tmp_path: Path):
    config = tiny_config(tiny_data, tmp_path)
    messages: list[str] = []
    preprocess(config, progress=False, log=messages.append)
    first = snapshot(config.records_dir)
    messages.clear()
    summary = preprocess(config, progress=False, log=messages.append)
    assert summary["built"] == 0 and summary["skipped"] == 2
    assert "zone Z1: records up to date, skipped" in messages
    # a changed input file rebuilds its zone only
    zone = discover_zones(tiny_data, report=None)[0]
    image = read_zone(zone, FILL, VALID_RANGE)[2].astype(np.float64) + 50
    write_geotiff(tiny_data / "Z1" / month_file_name("Z1", 3), image, zone.profile, FILL, VALID_RANGE)
    summary = preprocess(config, progress=False, log=messages.append)
    assert summary["built"] == 1 and summary["skipped"] == 1
    after = snapshot(config.records_dir)
    assert after["Z2-context.tfrecord"] == first["Z2-context.tfrecord"]
    assert after["Z1-context.tfrecord"] != first["Z1-context.tfrecord"]
    # a changed record setting rebuilds every zone (same folder when records.dir is fixed)
    fixed = [f"records.dir={tmp_path / 'fixed'}"]
    preprocess(tiny_config(tiny_data, tmp_path, *fixed), progress=False, log=messages.append)
    messages.clear()
    summary = preprocess(tiny_config(tiny_data, tmp_path, *fixed, "tiling.margin=2"), progress=False,
                         log=messages.append)
    margin = tiny_config(tiny_data, tmp_path).tiling.margin
    assert summary["built"] == 2 and f"record settings changed (tiling.margin {margin} → 2)" in " ".join(messages)
    # a new overlap by default goes to its own folder, so sweeps keep both
    assert tiny_config(tiny_data, tmp_path, "tiling.margin=2").records_dir != config.records_dir
    # a model or training change does not touch records
    summary = preprocess(tiny_config(tiny_data, tmp_path, "train.lr=0.1", "train.weight_decay=0.5"), progress=False,
                         log=messages.append)
    assert summary["built"] == 0
    # another data folder of the same name shares the default records folder: the line names the folders
    twin = tmp_path / "elsewhere" / tiny_data.name
    shutil.copytree(tiny_data, twin)
    assert tiny_config(twin, tmp_path).records_dir == config.records_dir
    messages.clear()
    summary = preprocess(tiny_config(twin, tmp_path), progress=False, log=messages.append)
    assert summary["built"] == 2
    assert f'record settings changed (data.dir "{tiny_data.resolve()}" → "{twin.resolve()}")' in " ".join(messages)


def test_reading_refuses_missing_or_stale_records(tiny_data: Path, tmp_path: Path):
    config = tiny_config(tiny_data, tmp_path)
    with pytest.raises(PhenocastError, match="found none; run python preprocess.py"):
        load_zone_records(config)
    preprocess(config, progress=False, log=lambda message: None)
    with pytest.raises(PhenocastError, match="written with other settings"):
        load_zone_records(tiny_config(tiny_data, tmp_path, f"records.dir={config.records_dir}",
                                      "data.fill_value=-5000"))
    next(config.records_dir.glob("Z2-00000-*")).unlink()
    with pytest.raises(PhenocastError, match="expected complete records of zone Z2"):
        load_zone_records(config)


KILLER = textwrap.dedent("""
    import os, signal, sys
    import phenocast.preprocess as preprocess
    original = preprocess._write_records
    calls = []
    kill_at = int(sys.argv.pop(1))
    def dying(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # killed while writing: after the previous file
        return original(path, *args, **kwargs)
    preprocess._write_records = dying
    import preprocess as script
    sys.exit(script.main())
""")


@pytest.mark.parametrize("kill_at", [2, 4])
def test_a_killed_run_resumes_to_the_same_records_as_a_clean_run(tmp_path: Path, kill_at: int):
    data_dir = tmp_path / "data"
    for index in range(3):
        write_zone(data_dir, f"Z{index + 1}", synthetic_stack(30, 12, 12, seed=index))
    arguments = ["--config", str(ROOT / "configs" / "sample.yaml"), "--set", f"data.dir={data_dir}",
                 "--set", "data.sample=false", "--set", "tiling.centre=8", "--set", "tiling.margin=2",
                 "--set", "records.windows_per_shard=2", "--set", "sequence.years=1", "--set",
                 "data.val_months=6", "--workers", "1", "--quiet"]
    killed = subprocess.run([sys.executable, "-c", KILLER, str(kill_at), *arguments, "--set",
                             f"output.dir={tmp_path / 'killed'}"], cwd=ROOT, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    folder = next((tmp_path / "killed" / "records").iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["zones"]) < 3  # the kill left work undone
    resumed = subprocess.run([sys.executable, "preprocess.py", *arguments, "--set",
                              f"output.dir={tmp_path / 'killed'}"], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean = subprocess.run([sys.executable, "preprocess.py", *arguments, "--set",
                            f"output.dir={tmp_path / 'clean'}"], cwd=ROOT, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    clean_folder = next((tmp_path / "clean" / "records").iterdir())
    assert snapshot(folder) == snapshot(clean_folder)
    assert not list(folder.glob(".tmp-*"))
    assert "3 zone(s)" in resumed.stdout


def test_parallel_workers_write_the_same_records(tiny_data: Path, tmp_path: Path):
    serial = tiny_config(tiny_data, tmp_path / "serial")
    parallel = tiny_config(tiny_data, tmp_path / "parallel")
    preprocess(serial, workers=1, progress=False, log=lambda message: None)
    preprocess(parallel, workers=2, progress=False, log=lambda message: None)  # two processes
    assert snapshot(serial.records_dir) == snapshot(parallel.records_dir)


@pytest.mark.parametrize("breakage, expected", [
    ("missing", "found no folder"),
    ("float", "expected a single-band int16 GeoTIFF"),
    ("duplicate", "expected one file per month"),
    ("unknown_key", "unknown config key records.sharding"),
])
def test_bad_input_gives_one_line_exit_2_and_writes_nothing(tiny_data: Path, tmp_path: Path, breakage: str,
                                                            expected: str):
    import rasterio

    data_dir = tiny_data
    extra = []
    if breakage == "missing":
        data_dir = tmp_path / "nothing-here"
    elif breakage == "float":
        with rasterio.open(tiny_data / "Z2" / "Z2-009.tif", "r+") as source:
            profile = source.profile
        profile.update(dtype="float32")
        with rasterio.open(tiny_data / "Z2" / "Z2-009.tif", "w", **profile) as target:
            target.write(np.zeros((1, 16, 16), np.float32))
    elif breakage == "duplicate":
        (tiny_data / "Z1" / "Z1-7.tif").write_bytes((tiny_data / "Z1" / "Z1-007.tif").read_bytes())
    else:
        extra = ["--set", "records.sharding=2"]
    result = subprocess.run(
        [sys.executable, "preprocess.py", "--config", str(ROOT / "configs" / "sample.yaml"), "--set",
         f"data.dir={data_dir}", "--set", "data.sample=false", "--set", f"output.dir={tmp_path / 'out'}",
         *extra], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("compression", ["SPLIT_ZLIB", "SHUFFLE_ZLIB", "GZIP", "NONE"])
def test_stack_encoding_round_trips_in_numpy_and_tensorflow(compression: str):
    import tensorflow as tf

    stack = np.random.default_rng(3).integers(-3000, 10000, (5, 7, 6)).astype(np.int16)
    payload = records.encode_stack(stack, compression)
    np.testing.assert_array_equal(records.decode_stack(payload, stack.shape, compression), stack)
    decoded = records._decode_tensor(tf.constant(payload), tf.constant(stack.shape, tf.int64), compression)
    np.testing.assert_array_equal(decoded.numpy(), stack)
