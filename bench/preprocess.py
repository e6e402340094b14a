"""Benchmark preprocess against merely reading the zone, for every record compression, side by side.

    python bench/preprocess.py [--size 1200] [--months 120 230] [--compressions SPLIT_ZLIB SHUFFLE_ZLIB GZIP NONE]

For each generated zone (the built-in sample's world, competition format), prints per compression:
time / time to read and decode its TIFFs with rasterio (goal <= 3), record bytes / TIFF bytes
(goal <= 1.8; the original's float32 layout is about 8× per month stored) and the peak resident memory
of the process that built the zone (goal <= 2.5 GB per worker). Each preprocess runs in its own
process (one worker), measured from inside, after TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import json, resource, sys, time
import tensorflow  # imported before timing: start-up is not preprocessing
from phenocast.config import load_config
from phenocast.preprocess import preprocess
config = load_config(sys.argv[1], sys.argv[2:])
started = time.perf_counter()
summary = preprocess(config, workers=1, progress=False, log=lambda message: None)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "bytes": summary["bytes"],
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def read_seconds(data_dir: Path) -> float:
    """Time to open, read and decode every month of the zone with rasterio (the floor for preprocess)."""
    from phenocast.zones import discover_zones, read_zone

    (zone,) = discover_zones(data_dir, report=None)
    started = time.perf_counter()
    read_zone(zone, -3000, (-2000, 10000))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1200)
    parser.add_argument("--months", type=int, nargs="+", default=[120])
    parser.add_argument("--compressions", nargs="+", default=["SPLIT_ZLIB", "SHUFFLE_ZLIB", "GZIP", "NONE"])
    parser.add_argument("--workdir", type=Path, help="keep generated data and records here")
    arguments = parser.parse_args()
    from phenocast.sample import generate_sample

    with tempfile.TemporaryDirectory() as temporary:
        workdir = arguments.workdir or Path(temporary)
        rows = []
        for months in arguments.months:
            data_dir = workdir / f"zone-{arguments.size}-{months}"
            if not data_dir.is_dir():
                generate_sample(data_dir, zones=1, months=months, size=arguments.size, seed=0, progress=False)
            tiff_bytes = sum(path.stat().st_size for path in (data_dir / "Z1").glob("*.tif"))
            read_zone_seconds = min(read_seconds(data_dir) for _ in range(2))
            for compression in arguments.compressions:
                output = workdir / f"out-{months}-{compression}"
                shutil.rmtree(output, ignore_errors=True)  # build from scratch: never a skipped rerun
                overrides = [f"data.dir={data_dir}", f"output.dir={output}",
                             f"records.compression={compression}", "tiling.centre=240", "tiling.margin=24"]
                result = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / "configs" / "default.yaml"),
                                         *overrides], capture_output=True, text=True, cwd=ROOT, check=True)
                measured = json.loads(result.stdout.strip().splitlines()[-1])
                rows.append((f"{arguments.size}²×{months}", compression, measured["seconds"], read_zone_seconds,
                             measured["bytes"], tiff_bytes, measured["peak_rss"]))
    print(f"{'zone':<12} {'compression':<13} {'seconds':>8} {'read s':>7} {'time/read':>9} "
          f"{'bytes/tiff':>10} {'peak RSS GB':>11}")
    for zone, compression, seconds, read_s, size, tiff, rss in rows:
        print(f"{zone:<12} {compression:<13} {seconds:8.2f} {read_s:7.2f} {seconds / read_s:9.2f} "
              f"{size / tiff:10.3f} {rss / 1e9:11.2f}")
    print("goals: time/read <= 3, bytes/tiff <= 1.8, peak RSS <= 2.5 GB per worker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
