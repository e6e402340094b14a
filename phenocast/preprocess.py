"""Zones → overlapping windows → compact, resumable TFRecords (the library behind ``preprocess.py``).

For every selected zone: read its months (int16), block-average it into the context stack, cut the
window grid (``phenocast.tiling``) and write one record per window into shards plus one context record
(schema in ``phenocast.records``). Every file is written under a temporary name and renamed when
complete; the manifest (``manifest.json``) lists a zone only once all its files are in place, and is
rewritten atomically after each zone. A rerun skips zones whose manifest entry matches the current
record settings (``RECORD_KEYS`` and the schema version) and input files (names, sizes, modification
times); any other zone is rebuilt. Readers take the file list from the manifest, so a half-written or
leftover file is never mistaken for a complete shard.

Zones are processed in parallel processes (``--workers`` / ``records.workers``; by default one per CPU
when zones are big, in-process when they are so small that starting TensorFlow in a process would
take longer than building them), one zone in memory per process (int16: 230 months of 1200² = 660 MB);
within a process, window encoding runs in threads.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import itertools
import multiprocessing
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from skimage.measure import block_reduce
from tqdm import tqdm

from phenocast import import_tensorflow_quietly, records
from phenocast.config import Config, config_hash, describe_changes, dotted_values
from phenocast.errors import PhenocastError
from phenocast.io import atomic_path, remove_stale_temporaries
from phenocast.origins import check_trainable, shortened_notes
from phenocast.tiling import extract_window, window_grid
from phenocast.zones import Zone, discover_zones, input_fingerprint, inputs_unchanged, read_zone

# the config fields that change the records (anything else — model, training — does not)
RECORD_KEYS = ["data.fill_value", "data.valid_range", "tiling.centre", "tiling.margin",
               "records.compression", "records.compression_level", "records.windows_per_shard"]


def record_settings_hash(config: Config) -> str:
    """Hash of the record-relevant config fields, the schema version and the data folder."""
    return f"v{records.SCHEMA_VERSION}-" + config_hash(config, RECORD_KEYS) + "-" + hashlib.sha256(
        str(Path(config.data.dir).resolve()).encode()).hexdigest()[:8]


def record_settings(config: Config) -> dict[str, Any]:
    """What the records of a folder are built from, as the manifest keeps it: the schema version, the data
    folder and the ``RECORD_KEYS``; ``record_settings_hash`` is its fingerprint."""
    return {"records.schema": records.SCHEMA_VERSION, "data.dir": str(Path(config.data.dir).resolve()),
            **dotted_values(config, RECORD_KEYS)}


def settings_change(manifest: dict[str, Any], config: Config) -> str:
    """What differs between the records in a folder (its manifest) and the config, for the one line that
    says why every zone is rebuilt: ``data.dir "/a/data" → "/b/data"``. A manifest written before it kept
    ``record_settings`` is compared on the fields it kept; where none of them differs, the keys that may."""
    old = manifest.get("record_settings")
    if old is None:  # the fields every manifest has held
        kept = {"records.schema": "schema", "data.dir": "data_dir", "data.fill_value": "fill_value",
                "data.valid_range": "valid_range", "tiling.centre": "centre", "tiling.margin": "margin",
                "records.compression": "compression"}
        old = {key: manifest[field] for key, field in kept.items() if field in manifest}
    new = record_settings(config)
    changes = describe_changes(old, {key: new[key] for key in old})
    return "; ".join(changes) if changes else f"one of {', '.join(sorted(set(new) - set(old)) or RECORD_KEYS)}"


CONTEXT_CHUNK = 12  # months block-averaged at once (the integer temporaries stay small)


def context_stack(stack: np.ndarray, factor: int, fill_value: int,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Block means of the valid pixels, per month.

    Args:
      stack: int16 (months, height, width), nodata = ``fill_value``.
      factor: block side (``records.context_factor``).

    Returns:
      int16 (months, ceil(height/factor), ceil(width/factor)); ``fill_value`` where a block has no valid
      pixel.
    """
    months, height, width = stack.shape
    out = np.empty((months, -(-height // factor), -(-width // factor)), dtype=np.int16)
    pixels = _block_sum(np.ones((1, height, width), np.uint8), factor)  # per block; edge blocks are partial
    for start in range(0, months, CONTEXT_CHUNK):
        chunk = stack[start:start + CONTEXT_CHUNK]
        missing = _block_sum((chunk == fill_value).view(np.uint8), factor)
        total = _block_sum(chunk, factor) - fill_value * missing  # the sum of the valid values
        count = pixels - missing
        mean = np.floor(total / np.maximum(count, 1) + 0.5)
        out[start:start + CONTEXT_CHUNK] = np.where(count > 0, mean, fill_value)
        if progress is not None:
            progress(len(chunk))
    return out


def _block_sum(stack: np.ndarray, factor: int) -> np.ndarray:
    """int64 sums over ``factor × factor`` blocks of a (months, height, width) stack, zero-padded at the
    far edges: rows first, then columns (two passes over contiguous axes are ~4× faster than one)."""
    rows = block_reduce(stack, (1, factor, 1), np.sum, func_kwargs={"dtype": np.int64})
    return block_reduce(rows, (1, 1, factor), np.sum, func_kwargs={"dtype": np.int64})


def _zone_files_pattern(zone: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(zone)}-(\d{{5}}-of-\d{{5}}|context)\.tfrecord(\.gz)?$")


def remove_zone_files(folder: Path, zone: str) -> None:
    """Delete every shard and context file of ``zone`` in ``folder``."""
    pattern = _zone_files_pattern(zone)
    for path in folder.iterdir():
        if pattern.match(path.name):
            path.unlink()


def _write_records(path: Path, serialized: list[bytes] | Any, compression: str, level: int) -> int:
    """Write records to ``path`` atomically; returns the file's size in bytes."""
    import tensorflow as tf

    options = tf.io.TFRecordOptions(compression_type=records.file_compression(compression),
                                    compression_level=level)
    with atomic_path(path, suffix="") as temporary, tf.io.TFRecordWriter(str(temporary), options) as writer:
        for record in serialized:
            writer.write(record)
    return path.stat().st_size


def build_zone(zone: Zone, config: Config, folder: Path, progress: Callable[[str, int], None] | None = None,
               threads: int = 1) -> dict[str, Any]:
    """Write one zone's window shards and context record; return its manifest entry.

    Args:
      zone: the zone.
      config: uses data.fill_value/valid_range, tiling.*, records.*.
      folder: the records folder.
      progress: called with ("read", months), ("windows", count) as work completes.
      threads: threads encoding windows in parallel.
    """
    started = time.time()
    report = progress or (lambda kind, count: None)
    fill, compression = config.data.fill_value, config.records.compression
    level = config.records.compression_level
    stack = read_zone(zone, fill, config.data.valid_range, progress=lambda n: report("read", n), threads=threads)
    months, height, width = stack.shape  # (months, height, width), int16
    grid = window_grid(height, width, config.tiling.centre, config.tiling.margin)
    factor = records.context_factor(height, width, config.tiling.centre)
    context = context_stack(stack, factor, fill)
    context_file = records.context_name(zone.name, compression)
    context_bytes = _write_records(folder / context_file, [records.serialize_context(
        zone.name, factor, zone.first, records.encode_stack(context, compression, level), months,
        *context.shape[1:])], compression, level)

    windows = grid.windows
    per_shard = config.records.windows_per_shard
    count = -(-len(windows) // per_shard)

    def encode(window) -> bytes:
        payload = records.encode_stack(extract_window(stack, window), compression, level)
        return records.serialize_window(zone.name, window.row, window.col, window.top, window.left,
                                        height, width, zone.first, payload, months, grid.size)

    shards = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        # windows encode in parallel across shard boundaries, a bounded number ahead of the writer (memory
        # stays a few windows); results are consumed in grid order, so the files are deterministic
        remaining = iter(windows)
        pending = collections.deque(pool.submit(encode, window)
                                    for window in itertools.islice(remaining, 2 * max(1, threads)))

        def encoded(n: int):
            for _ in range(n):
                record = pending.popleft().result()
                following = next(remaining, None)
                if following is not None:
                    pending.append(pool.submit(encode, following))
                yield record
                report("windows", 1)

        for index in range(count):
            chunk = windows[index * per_shard:(index + 1) * per_shard]
            name = records.shard_name(zone.name, index, count, compression)
            size = _write_records(folder / name, encoded(len(chunk)), compression, level)
            shards.append({"file": name, "records": len(chunk), "bytes": size})
    total = context_bytes + sum(shard["bytes"] for shard in shards)
    return {
        "first": zone.first, "last": zone.last, "gaps": zone.gaps, "profile": zone.profile.to_dict(),
        "inputs": input_fingerprint(zone),
        "grid": {"rows": grid.rows, "cols": grid.cols, "centre": grid.centre, "margin": grid.margin,
                 "size": grid.size},
        "context": {"file": context_file, "factor": factor, "height": int(context.shape[1]),
                    "width": int(context.shape[2]), "bytes": context_bytes},
        "shards": shards, "records": len(windows), "bytes": total,
        "seconds": round(time.time() - started, 2),
    }


def _entry_is_complete(folder: Path, entry: dict[str, Any]) -> bool:
    files = [entry["context"]] + entry["shards"]
    return all((folder / item["file"]).is_file() and (folder / item["file"]).stat().st_size == item["bytes"]
               for item in files)


def _worker(zone: Zone, config: Config, folder: Path, messages, threads: int) -> dict[str, Any]:
    """Process-pool entry point: build one zone, reporting progress through a queue."""
    import_tensorflow_quietly()
    return build_zone(zone, config, folder, lambda kind, count: messages.put((kind, count)), threads)


PROCESS_WORTHY_PIXEL_MONTHS = 50_000_000  # below this a zone builds faster than a process starts TF


def _automatic_workers(zones: list[Zone]) -> int:
    """One process per CPU for big zones; in-process for small ones (TensorFlow start-up dominates)."""
    if not zones:
        return 1
    average = sum(len(z.months) * z.shape[0] * z.shape[1] for z in zones) / len(zones)
    return (os.cpu_count() or 1) if average >= PROCESS_WORTHY_PIXEL_MONTHS else 1


def plan(config: Config, zones: list[Zone], manifest: dict[str, Any] | None) -> tuple[list[Zone],
                                                                                     list[Zone], str]:
    """Split zones into (to build, to skip) against an existing manifest; returns also the settings hash."""
    settings = record_settings_hash(config)
    folder = config.records_dir
    same_settings = manifest is not None and manifest.get("settings") == settings
    build, skip = [], []
    for zone in zones:
        entry = (manifest or {}).get("zones", {}).get(zone.name) if same_settings else None
        if entry and inputs_unchanged(entry.get("inputs", ""), zone) and _entry_is_complete(folder, entry):
            skip.append(zone)
        else:
            build.append(zone)
    return build, skip, settings


def preprocess(config: Config, workers: int | None = None, progress: bool = True,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build (or bring up to date) the records of every selected zone.

    Args:
      config: the run's config.
      workers: parallel zone processes (default ``records.workers``, else the CPU count).
      progress: show tqdm bars.
      log: where one-line messages go.

    Returns:
      A summary: zones, built, skipped, records, bytes, seconds, folder.
    """
    started = time.time()
    zones = discover_zones(config.data.dir, config.data.zones, report=log)
    for check in (lambda: check_trainable(zones, config),
                  lambda: config.data.first_months([zone.name for zone in zones])):
        try:
            check()
        except PhenocastError as error:
            log(f"warning: {error} (records are written anyway; run.py will refuse the run)")
    for line in shortened_notes(zones, config):
        log(line)
    import_tensorflow_quietly()  # after the zones were checked: bad input is refused without waiting for it
    folder = config.records_dir
    folder.mkdir(parents=True, exist_ok=True)
    stale = remove_stale_temporaries(folder)
    if stale:
        log(f"removed {stale} unfinished file(s) left by an interrupted run in {folder}")
    manifest = records.load_manifest(folder)
    build, skip, settings = plan(config, zones, manifest)
    if manifest is None or manifest.get("settings") != settings:
        if manifest is not None:
            log(f"record settings changed ({settings_change(manifest, config)}): rebuilding every zone in {folder}")
        manifest = {"schema": records.SCHEMA_VERSION, "settings": settings, "zones": {}}
    manifest.update({"compression": config.records.compression,
                     "fill_value": config.data.fill_value, "valid_range": config.data.valid_range,
                     "centre": config.tiling.centre, "margin": config.tiling.margin,
                     "data_dir": str(Path(config.data.dir).resolve()), "record_settings": record_settings(config)})
    for zone in skip:
        log(f"zone {zone.name}: records up to date, skipped")
    for zone in build:  # forget the old entry first: a kill from here on leaves the zone incomplete
        manifest["zones"].pop(zone.name, None)
    records.write_manifest(folder, manifest)
    for zone in build:
        remove_zone_files(folder, zone.name)

    workers = max(1, min(workers or config.records.workers or _automatic_workers(build), len(build) or 1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    total_months = sum(len(zone.months) for zone in build)
    total_windows = sum(len(window_grid(*zone.shape, config.tiling.centre, config.tiling.margin))
                        for zone in build)
    bars = {
        "zones": tqdm(total=len(build), desc="zones", unit="zone", disable=not progress or not build),
        "read": tqdm(total=total_months, desc="months read", unit="month", disable=not progress or not build),
        "windows": tqdm(total=total_windows, desc="windows written", unit="window",
                        disable=not progress or not build),
    }

    def finished(zone: Zone, entry: dict[str, Any]) -> None:
        manifest["zones"][zone.name] = entry
        records.write_manifest(folder, manifest)
        bars["zones"].update(1)

    try:
        if workers == 1:
            for zone in build:
                finished(zone, build_zone(zone, config, folder, lambda kind, n: bars[kind].update(n),
                                          threads))
        else:
            _run_parallel(build, config, folder, workers, threads, bars, finished)
    finally:
        for bar in bars.values():
            bar.close()
    entries = [manifest["zones"][zone.name] for zone in zones]
    return {"zones": len(zones), "built": len(build), "skipped": len(skip),
            "records": sum(entry["records"] for entry in entries),
            "bytes": sum(entry["bytes"] for entry in entries),
            "seconds": time.time() - started, "folder": str(folder)}


def _run_parallel(build: list[Zone], config: Config, folder: Path, workers: int, threads: int,
                  bars: dict[str, tqdm], finished: Callable[[Zone, dict[str, Any]], None]) -> None:
    context = multiprocessing.get_context("spawn")  # TF is not fork-safe
    with context.Manager() as manager:
        messages = manager.Queue()
        stop = threading.Event()

        def pump() -> None:
            while not stop.is_set():
                try:
                    kind, count = messages.get(timeout=0.2)
                except queue.Empty:
                    continue
                bars[kind].update(count)

        listener = threading.Thread(target=pump, daemon=True)
        listener.start()
        try:
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {pool.submit(_worker, zone, config, folder, messages, threads): zone
                           for zone in build}
                try:
                    for future in concurrent.futures.as_completed(futures):
                        finished(futures[future], future.result())
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
        finally:
            stop.set()
            listener.join()


def load_zone_records(config: Config, names: list[str] | None = None, zones: list[Zone] | None = None
                      ) -> tuple[dict[str, Any], list[records.ZoneRecords]]:
    """The manifest and the complete records of the selected zones, checked against the config and,
    given ``zones``, against the zones' current files.

    Raises a one-line error telling the user to run ``preprocess.py`` when records are missing, stale or
    incomplete, or older than the zone's files (a month added or a file changed after preprocessing).
    """
    folder = config.records_dir
    manifest = records.load_manifest(folder)
    command = "python preprocess.py --config <your config>"
    if manifest is None:
        raise PhenocastError(f"expected preprocessed records in {folder}, found none; run {command}")
    if manifest.get("settings") != record_settings_hash(config):
        raise PhenocastError(
            f"the records in {folder} were written with other settings ({', '.join(RECORD_KEYS)} or "
            f"data.dir); run {command} to rebuild them")
    names = names if names is not None else sorted(manifest["zones"], key=_natural)
    result = []
    for name in names:
        entry = manifest["zones"].get(name)
        if entry is None or not _entry_is_complete(folder, entry):
            raise PhenocastError(f"expected complete records of zone {name} in {folder}, found "
                                 f"{'none' if entry is None else 'missing files'}; run {command}")
        result.append(records.ZoneRecords(name, entry, folder))
    for zone in zones or []:
        entry = manifest["zones"].get(zone.name)
        if entry is None:
            continue
        if (entry["first"], entry["last"]) != (zone.first, zone.last):
            raise PhenocastError(
                f"the records of zone {zone.name} in {folder} hold months {entry['first']}..{entry['last']}, "
                f"but {zone.folder} now holds months {zone.first}..{zone.last} (files added or removed after "
                f"preprocessing); rerun {command} to update them")
        if not inputs_unchanged(entry["inputs"], zone):
            raise PhenocastError(
                f"the records of zone {zone.name} in {folder} are older than its files in {zone.folder} (a file "
                f"changed after preprocessing); rerun {command} to update them")
    return manifest, result


def _natural(name: str):
    from phenocast.zones import natural_key

    return natural_key(name)
