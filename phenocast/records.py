"""The TFRecord schema, defined once: writer (``serialize_*``) and parser (``parse_*``) share it.

Two record kinds, both ``tf.train.Example`` with schema version ``SCHEMA_VERSION``:

- window records, one per (zone, window) of the grid (``phenocast.tiling``), in shards
  ``<zone>-<k>-of-<n>.tfrecord[.gz]``: the window's whole monthly stack, every month stored once, int16
  ``(months, size, size)``, nodata and gap months = ``data.fill_value`` (so the valid mask is
  ``stack != fill``), reflection padding outside the zone (``inside_mask`` recovers it from the
  position and the zone size), plus the zone name, grid row/column, window top/left, zone height/width,
  first month index and month count.
- one context record per zone, ``<zone>-context.tfrecord[.gz]``: the zone block-averaged (mean of the
  valid pixels of each ``factor × factor`` block, ``skimage.measure.block_reduce``) down to at most
  ``tiling.centre`` pixels a side, per month — the original's "global context" channels, stored once
  per zone instead of once per window.

Stacks are stored as int16 little-endian bytes, either raw (``NONE``), raw inside a GZIP-compressed file
(``GZIP``), byte-shuffled (all low bytes, then all high bytes) and zlib-compressed per record
(``SHUFFLE_ZLIB``), or split (``SPLIT_ZLIB``, the default): the low bytes raw, then the high bytes
zlib-compressed. NDVI's low bytes are close to random (zlib saves ~5 % on them at a third of the speed)
while the slowly varying high bytes compress well, so splitting keeps most of the saving at about 2.4×
the speed of compressing both; per-record compression runs in parallel threads. ``records.compression``
chooses; ``bench/preprocess.py`` measures all four.

The climatology is never stored: ``run.py`` computes it in tf.data from the months at or before each
sample's origin, so it can never include later months.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
ENCODINGS = {"NONE": "int16le", "GZIP": "int16le", "SHUFFLE_ZLIB": "int16le-shuffle-zlib",
             "SPLIT_ZLIB": "int16le-low-raw-high-zlib"}


def file_compression(compression: str) -> str:
    """The TFRecord file-level compression type of a ``records.compression`` value."""
    return "GZIP" if compression == "GZIP" else ""


def record_suffix(compression: str) -> str:
    return ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"


def shard_name(zone: str, index: int, count: int, compression: str) -> str:
    """``Z1-00000-of-00002.tfrecord.gz``."""
    return f"{zone}-{index:05d}-of-{count:05d}{record_suffix(compression)}"


def context_name(zone: str, compression: str) -> str:
    """``Z1-context.tfrecord.gz``."""
    return f"{zone}-context{record_suffix(compression)}"


def context_factor(height: int, width: int, centre: int) -> int:
    """Block size that brings the zone down to at most ``centre`` pixels a side."""
    return max(1, math.ceil(max(height, width) / centre))


def encode_stack(stack: np.ndarray, compression: str, level: int = 1) -> bytes:
    """int16 (months, …) → the bytes stored in a record."""
    data = np.ascontiguousarray(stack, dtype="<i2")
    if compression not in ("SHUFFLE_ZLIB", "SPLIT_ZLIB"):
        return data.tobytes()
    pairs = data.view(np.uint8).reshape(-1, 2)  # (pixels, 2): low byte, high byte
    if compression == "SHUFFLE_ZLIB":
        return zlib.compress(np.ascontiguousarray(pairs.T).tobytes(), level)
    return np.ascontiguousarray(pairs[:, 0]).tobytes() + zlib.compress(np.ascontiguousarray(pairs[:, 1]), level)


def decode_stack(data: bytes, shape: tuple[int, ...], compression: str) -> np.ndarray:
    """Inverse of ``encode_stack`` in numpy (the tf.data path is ``parse_window``)."""
    if compression == "SHUFFLE_ZLIB":
        shuffled = np.frombuffer(zlib.decompress(data), dtype=np.uint8).reshape(2, -1)
        data = np.ascontiguousarray(shuffled.T).tobytes()
    elif compression == "SPLIT_ZLIB":
        pixels = math.prod(shape)
        low = np.frombuffer(data[:pixels], dtype=np.uint8)
        high = np.frombuffer(zlib.decompress(data[pixels:]), dtype=np.uint8)
        data = np.stack([low, high], axis=1).tobytes()
    return np.frombuffer(data, dtype="<i2").reshape(shape).astype(np.int16)


def _int_feature(values: list[int]):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _bytes_feature(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def serialize_window(zone: str, row: int, col: int, top: int, left: int, height: int, width: int,
                     first_month: int, payload: bytes, months: int, size: int) -> bytes:
    """One window record. ``payload`` is ``encode_stack`` of the int16 (months, size, size) stack."""
    import tensorflow as tf

    features = {
        "schema": _int_feature([SCHEMA_VERSION]),
        "zone": _bytes_feature(zone.encode()),
        "position": _int_feature([row, col, top, left]),
        "zone_size": _int_feature([height, width]),
        "months": _int_feature([first_month, months]),
        "size": _int_feature([size]),
        "stack": _bytes_feature(payload),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(deterministic=True)


def serialize_context(zone: str, factor: int, first_month: int, payload: bytes, months: int,
                      height: int, width: int) -> bytes:
    """The zone's context record: ``encode_stack`` of int16 (months, height, width)."""
    import tensorflow as tf

    features = {
        "schema": _int_feature([SCHEMA_VERSION]),
        "zone": _bytes_feature(zone.encode()),
        "factor": _int_feature([factor]),
        "months": _int_feature([first_month, months]),
        "context_size": _int_feature([height, width]),
        "stack": _bytes_feature(payload),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(deterministic=True)


def _window_spec():
    import tensorflow as tf

    return {
        "schema": tf.io.FixedLenFeature([1], tf.int64),
        "zone": tf.io.FixedLenFeature([], tf.string),
        "position": tf.io.FixedLenFeature([4], tf.int64),
        "zone_size": tf.io.FixedLenFeature([2], tf.int64),
        "months": tf.io.FixedLenFeature([2], tf.int64),
        "size": tf.io.FixedLenFeature([1], tf.int64),
        "stack": tf.io.FixedLenFeature([], tf.string),
    }


def _context_spec():
    import tensorflow as tf

    return {
        "schema": tf.io.FixedLenFeature([1], tf.int64),
        "zone": tf.io.FixedLenFeature([], tf.string),
        "factor": tf.io.FixedLenFeature([1], tf.int64),
        "months": tf.io.FixedLenFeature([2], tf.int64),
        "context_size": tf.io.FixedLenFeature([2], tf.int64),
        "stack": tf.io.FixedLenFeature([], tf.string),
    }


def _decode_tensor(payload, shape, compression: str):
    """tf.string payload → int16 tensor of ``shape`` (graph mode, for tf.data)."""
    import tensorflow as tf

    if compression == "SHUFFLE_ZLIB":
        raw = tf.io.decode_raw(tf.io.decode_compressed(payload, compression_type="ZLIB"), tf.uint8)
        pairs = tf.transpose(tf.reshape(raw, [2, -1]))  # (pixels, 2): low byte, high byte
        values = tf.bitcast(pairs, tf.int16)  # host byte order: little-endian on x86 and ARM
    elif compression == "SPLIT_ZLIB":
        pixels = tf.cast(tf.reduce_prod(shape), tf.int32)
        low = tf.io.decode_raw(tf.strings.substr(payload, 0, pixels), tf.uint8)
        rest = tf.strings.substr(payload, pixels, tf.strings.length(payload) - pixels)
        high = tf.io.decode_raw(tf.io.decode_compressed(rest, compression_type="ZLIB"), tf.uint8)
        values = tf.bitcast(tf.stack([low, high], axis=1), tf.int16)  # little-endian, as above
    else:
        values = tf.io.decode_raw(payload, tf.int16, little_endian=True)
    return tf.reshape(values, shape)


def parse_window(serialized, compression: str) -> dict:
    """tf.data map function: a serialized window record → dict of tensors.

    Returns:
      ``stack`` int16 (months, size, size); ``zone`` string; ``position`` int64 [row, col, top, left];
      ``zone_size`` int64 [height, width]; ``first_month`` int64; ``months`` int64; ``size`` int64.
    """
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, _window_spec())
    tf.debugging.assert_equal(parsed["schema"][0], tf.constant(SCHEMA_VERSION, tf.int64),
                              message="record schema version differs: rerun preprocess.py")
    size = parsed["size"][0]
    months = parsed["months"][1]
    stack = _decode_tensor(parsed["stack"], tf.stack([months, size, size]), compression)
    return {"stack": stack, "zone": parsed["zone"], "position": parsed["position"],
            "zone_size": parsed["zone_size"], "first_month": parsed["months"][0], "months": months,
            "size": size}


def parse_context(serialized, compression: str) -> dict:
    """A serialized context record → ``stack`` int16 (months, height, width), ``factor``, ``zone``…"""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, _context_spec())
    months = parsed["months"][1]
    shape = tf.concat([[months], parsed["context_size"]], axis=0)
    return {"stack": _decode_tensor(parsed["stack"], shape, compression), "zone": parsed["zone"],
            "factor": parsed["factor"][0], "first_month": parsed["months"][0], "months": months}


# ---- manifest ------------------------------------------------------------------------------------

@dataclass
class ZoneRecords:
    """What the manifest knows about one zone's records."""

    name: str
    entry: dict[str, Any]
    folder: Path

    @property
    def shards(self) -> list[Path]:
        return [self.folder / shard["file"] for shard in self.entry["shards"]]

    @property
    def context(self) -> Path:
        return self.folder / self.entry["context"]["file"]

    @property
    def first(self) -> int:
        return int(self.entry["first"])

    @property
    def last(self) -> int:
        return int(self.entry["last"])

    @property
    def records(self) -> int:
        return int(self.entry["records"])


def load_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of a records folder, or None if there is none (or it is unreadable)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return manifest if manifest.get("schema") == SCHEMA_VERSION else None


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> None:
    from phenocast.io import atomic_write_text

    atomic_write_text(Path(folder) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def iterate_windows(records: ZoneRecords, compression: str) -> Iterator[dict[str, Any]]:
    """Every window record of a zone as numpy values (for tests and small tools)."""
    import tensorflow as tf

    dataset = tf.data.TFRecordDataset([str(p) for p in records.shards],
                                      compression_type=file_compression(compression))
    for serialized in dataset.map(lambda s: parse_window(s, compression)):
        yield {key: value.numpy() for key, value in serialized.items()}


def read_context(records: ZoneRecords, compression: str) -> dict[str, Any]:
    """A zone's context record as numpy values."""
    import tensorflow as tf

    dataset = tf.data.TFRecordDataset([str(records.context)],
                                      compression_type=file_compression(compression))
    (parsed,) = list(dataset.map(lambda s: parse_context(s, compression)).take(1))
    return {key: value.numpy() for key, value in parsed.items()}
