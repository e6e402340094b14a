"""Scale benchmark: what the competition run costs, measured on this device and projected from FLOPs.

    python bench/scale.py [--zones 1] [--size 1200] [--months 230] [--workdir DIR] [--batch-sizes 1,4,8,16]
                          [--device-tflops 790] [--utilisation 0.10] [--json PATH]
                          [--config configs/default.yaml] [--set key=value ...]

In: nothing but the arguments. A competition-shaped synthetic world (``phenocast.synthetic``: ``--zones``
folders of ``--size``² int16 GeoTIFFs × ``--months``) is generated under ``--workdir`` (reused when one with
the same zones, size, months and seed is there), then its records are rebuilt by the real preprocess.
Out: one table (every number labelled *measured* or *projected*) and the same numbers as JSON
(``--json``, default ``<workdir>/scale.json``, written atomically):

- preprocess wall time, per zone (measured);
- the tf.data input path (``phenocast.dataset.training_dataset``): host core-seconds per training sample
  (process CPU time, user + sys of every thread, while only the dataset is iterated, ÷ samples) and
  samples/s with all cores (measured);
- the training step at each ``--batch-sizes`` (random inputs of the model's shape): seconds per step and
  per sample, and the peak memory (TensorFlow's allocator peak where it keeps statistics, else the
  process's peak RSS so far), in float32 and, on a GPU, in mixed precision (bfloat16 on compute
  capability >= 8, else float16); a batch whose estimated activations (``model/flops.py``), times the
  largest measured peak ÷ estimate of the smaller batches, exceed 90 % of the memory free at that moment
  is skipped (a 2-core run was OOM-killed at batch 4, 17.5 GB, while other jobs held memory).
  On a CPU mixed precision is skipped (no fast half-precision kernels);
- input throughput ÷ step throughput (>= 1: the input keeps up);
- FLOPs and activation bytes per training sample (``model/flops.py``, analytic);
- the wall time of the whole run on 24 zones of 1200² × 230 months with the ``--config`` settings:
  preprocess (the measured per-zone time scaled by pixels × months), pretrain, finetune and refit
  (epochs × steps_per_epoch × batch size, per zone where the stage is per zone; upper bounds: early
  stopping and the refits' chosen epoch counts can only shorten them) plus their per-epoch validation,
  predict (windows × validation, test and forecast origins), postprocess (rough). Training and
  prediction are given twice: from the step time measured on this device, and from the FLOPs at
  ``--device-tflops`` × ``--utilisation``. A forward pass (validation, prediction) is taken as 1/3 of a
  training step.

Steps at the default 288² × 10-year window cost ≈ 8 s per sample on 2 CPU cores, so by default each batch
size gets one warm-up step (tracing) and ``--steps`` = 1 timed step, and batches 8 and 16 (≈ 25 and 51 GB
of activations) are skipped on a 23 GB machine. The defaults took 15 minutes on 2 shared cores (load
average ~6): 4.4 min generating the world (once; reused after), 1 min preprocessing, 1.5 min on the input
path, 8 min on steps (most of it batch 4: a warm-up and a timed step of ~140 s each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # before TensorFlow starts: allocator statistics
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import phenocast  # noqa: E402  (sets the TensorFlow environment first)

TARGET_ZONES, TARGET_SIZE, TARGET_MONTHS = 24, 1200, 230  # the competition run that is projected
FORWARD_SHARE = 1 / 3  # a forward pass ≈ 1/3 of a training step (forward + input and weight gradients)
POSTPROCESS_SHARE = 0.1  # postprocess ≈ 10 % of preprocess per zone (stitch, score, write): a rough guess
MEMORY_HEADROOM = 0.9  # a batch runs only if its estimated activations fit in 90 % of the free memory
WORLD_SEED = 0
TRANSFORMS = 8  # test-time augmentation: the 8 flips/rotations


def log(message: str) -> None:
    """A progress line, flushed at once (runs take minutes)."""
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- the machine --------------------------------------------------------------------------------------

def available_ram() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no /proc)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def gpu_memory_total() -> int | None:
    """Total memory of the first GPU from nvidia-smi, in bytes (None without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        output = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, check=True, timeout=30).stdout
        return int(output.split()[0]) * 2 ** 20
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def device_summary(tf) -> dict:
    """The device the steps run on: GPU 0 if visible (with its compute capability), else the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return dict(kind="CPU", name=f"{os.cpu_count()} CPU cores", device="CPU:0", memory=available_ram(),
                    mixed_precision=None)
    details = tf.config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability") or (0, 0)
    mixed = "mixed_bfloat16" if capability[0] >= 8 else "mixed_float16"
    return dict(kind="GPU", name=details.get("device_name", "GPU"), device="GPU:0", memory=gpu_memory_total(),
                compute_capability=list(capability), mixed_precision=mixed, count=len(gpus))


def reset_peak_memory(tf, device: str) -> None:
    """Start a new allocator peak (only allocators with statistics: BFC on CPU, the GPU's)."""
    try:
        tf.config.experimental.reset_memory_stats(device)
    except (ValueError, RuntimeError):
        pass


def peak_memory(tf, device: str) -> tuple[int, str]:
    """(bytes, source): the allocator peak since the last reset, else the process's peak RSS so far."""
    try:
        return int(tf.config.experimental.get_memory_info(device)["peak"]), "allocator peak"
    except (ValueError, RuntimeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS"


# ---- the measurements ---------------------------------------------------------------------------------

def ensure_world(workdir: Path, zones: int, size: int, months: int, config) -> tuple[Path, float | None]:
    """The synthetic world's data folder, generated unless one of the same key exists; (folder, seconds
    spent generating or None when reused)."""
    from phenocast.synthetic import generate_sample, zone_folders

    data_dir = workdir / f"world-z{zones}-s{size}-m{months}-seed{WORLD_SEED}"
    if len(zone_folders(data_dir)) == zones:
        log(f"reusing the synthetic world in {data_dir}")
        return data_dir, None
    log(f"generating {zones} zone(s) of {size}² × {months} months into {data_dir}")
    started = time.perf_counter()
    generate_sample(data_dir, zones=zones, months=months, size=size, seed=WORLD_SEED,
                    first_month=config.data.first_month, horizon=config.predict.horizon, progress=True,
                    overwrite=True)
    return data_dir, time.perf_counter() - started


def measure_preprocess(config, zones: int) -> dict:
    """Rebuild the records from scratch with the real preprocess; wall time in total and per zone."""
    from phenocast.preprocess import preprocess

    shutil.rmtree(config.records_dir, ignore_errors=True)  # a rerun would skip finished zones
    log(f"preprocessing into {config.records_dir}")
    started = time.perf_counter()
    summary = preprocess(config, progress=True, log=log)
    seconds = time.perf_counter() - started
    return dict(seconds=seconds, per_zone=seconds / zones, records=summary.get("records"),
                bytes=summary.get("bytes"), kind="measured")


def measure_input(source: Callable[[], Iterable], batch_size: int, samples: int) -> dict:
    """Host cost of a sample source: process CPU seconds per sample and samples/s with every core.

    Args:
      source: a callable returning an iterable of batches ``(inputs, y)`` with ``batch_size`` samples
        each; iteration is the only work the process does while it is timed.
      batch_size: samples per batch of ``source``.
      samples: at least this many samples are timed, after one warm-up batch (tracing, opening files).

    Returns:
      core_seconds_per_sample (user + sys of every thread of the process ÷ samples), samples_per_second
      (wall clock), samples, seconds.
    """
    from tqdm import tqdm

    iterator = iter(source())
    next(iterator)
    batches = max(1, math.ceil(samples / batch_size))
    cpu_started, started = time.process_time(), time.perf_counter()
    for _ in tqdm(range(batches), desc="input batches", unit="batch", leave=False):
        next(iterator)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    count = batches * batch_size
    return dict(core_seconds_per_sample=cpu / count, samples_per_second=count / seconds, samples=count,
                seconds=seconds, kind="measured")


def sample_sources(config) -> dict[str, Callable[[], Iterable]]:
    """The sample sources to measure, by name: each a callable returning an iterable of training batches.

    ``tf.data``: samples assembled on the host from the records (``phenocast.dataset``). ``device data``:
    the int16 stacks resident on the device (``phenocast.device_data``); what the host does per batch is
    only the index stream, so that is what its row measures; the assembly itself runs inside the compiled
    step and is timed on its own (``device assembly``), on this device.
    """
    import tensorflow as tf

    from phenocast.dataset import training_dataset
    from phenocast.device_data import DeviceData
    from phenocast.pipeline import Pipeline

    zones = list(Pipeline(config, log=lambda message: None).samples.values())  # with the damped φ if needed
    batch = config.train.batch_size
    resident = DeviceData(zones, config, config.seed)
    assemble = tf.function(resident.batch)

    def assembled():
        for indices in resident.index_dataset(batch):
            yield assemble(indices)

    return {"tf.data": lambda: training_dataset(zones, config, batch, config.seed),
            "device data": lambda: resident.index_dataset(batch),
            "device assembly (inside the step, on this device)": assembled}


def measure_steps(config, device: dict, batch_sizes: list[int], steps: int, tf) -> tuple[list[dict], dict]:
    """Time ``steps`` training steps (after one warm-up) at every batch size and precision.

    Returns:
      One row per (precision, batch): status ``measured`` or ``skipped`` (with the reason), seconds per
      step and per sample, peak memory and its source, the estimated activation bytes; and the analytic
      cost per sample (flops, activation_bytes) of the float32 model.
    """
    import gc

    import keras

    import model as network
    from model.flops import activation_bytes, random_batch, training_flops

    precisions = ["float32"] + ([device["mixed_precision"]] if device["mixed_precision"] else [])
    rows, cost = [], {}
    for precision in precisions:
        keras.mixed_precision.set_global_policy(precision)
        keras.utils.set_random_seed(config.seed)
        model = network.build_model(config)
        network.compile_model(model, config, network.make_optimizer(model, config.train.lr, config.train.weight_decay))
        if precision == "float32":
            cost = dict(flops=training_flops(model, config, 1), activation_bytes=activation_bytes(model, config, 1))
        overshoot = 1.0  # measured peak ÷ estimated activations so far (the peak holds more than activations)
        for batch in batch_sizes:
            estimate = activation_bytes(model, config, batch)
            row = dict(precision=precision, batch=batch, activation_bytes=estimate)
            # free memory now (other jobs share the machine): a GPU's total, else the host's available RAM
            free = device["memory"] if device["kind"] == "GPU" else available_ram()
            needed = estimate * overshoot
            if free is not None and needed > MEMORY_HEADROOM * free:
                rows.append(dict(row, status="skipped", needed_bytes=needed,
                                 reason=f"needs ~{needed / 1e9:.1f} GB ({estimate / 1e9:.1f} GB of activations × "
                                        f"{overshoot:.2f} measured overshoot), {free / 1e9:.1f} GB free"))
                log(f"{precision} batch {batch}: skipped (needs ~{needed / 1e9:.1f} GB)")
                continue
            x, y = random_batch(config, batch)
            log(f"{precision} batch {batch}: warm-up step (tracing), then {steps} timed")
            reset_peak_memory(tf, device["device"])
            model.train_on_batch(x, y)
            times = []
            for _ in range(steps):
                started = time.perf_counter()
                model.train_on_batch(x, y)
                times.append(time.perf_counter() - started)
            peak, source = peak_memory(tf, device["device"])
            if source == "allocator peak":
                overshoot = max(overshoot, peak / estimate)
            best = min(times)
            rows.append(dict(row, status="measured", seconds_per_step=best, seconds_per_sample=best / batch,
                             times=times, peak_bytes=peak, peak_source=source))
            log(f"{precision} batch {batch}: {best:.2f} s/step, {best / batch:.2f} s/sample, "
                f"{source} {peak / 1e9:.2f} GB")
        del model
        keras.backend.clear_session()
        gc.collect()
    keras.mixed_precision.set_global_policy("float32")
    return rows, cost


# ---- the projection -----------------------------------------------------------------------------------

def run_counts(config, zones: int = TARGET_ZONES, size: int = TARGET_SIZE, months: int = TARGET_MONTHS
               ) -> dict:
    """Training samples and forward passes of the whole run (``run.py``) on ``zones`` zones of ``size``²
    × ``months`` months, from the config (upper bounds where early stopping could stop sooner)."""
    from phenocast import origins as origin_rules
    from phenocast.tiling import window_grid

    windows = len(window_grid(size, size, config.tiling.centre, config.tiling.margin).windows)
    first, last = 1, months
    validation = origin_rules.period_origins(first, last, config, "validation")
    test = origin_rules.period_origins(first, last, config, "test")
    validation_pairs = windows * len(validation)
    limit = config.train.validation_samples
    per_epoch_pretrain = min(limit, zones * validation_pairs) if limit is not None else zones * validation_pairs
    per_epoch_zone = min(limit, validation_pairs) if limit is not None else validation_pairs
    train, finetune = config.train, config.finetune
    pretrain_samples = train.epochs * train.steps_per_epoch * train.batch_size
    finetune_samples = (zones * finetune.epochs * finetune.steps_per_epoch * finetune.batch_size
                        if finetune.enabled else 0)
    refit_samples = (pretrain_samples + finetune_samples) if finetune.refit else 0
    forecast_origins = 1
    training_pairs = zones * windows * len(origin_rules.training_origins(first, last, config))
    predictions = zones * windows * (len(validation) + len(test) + forecast_origins)
    if config.predict.tta:
        predictions *= TRANSFORMS
    return dict(
        windows_per_zone=windows, validation_origins=len(validation), test_origins=len(test),
        training_pairs=training_pairs, pretrain_passes=pretrain_samples / max(training_pairs, 1),
        train_samples=dict(pretrain=pretrain_samples, finetune=finetune_samples, refit=refit_samples),
        validation_forwards=dict(pretrain=train.epochs * per_epoch_pretrain,
                                 finetune=(zones * (finetune.epochs + 1) * per_epoch_zone
                                           if finetune.enabled else 0), refit=0),
        prediction_forwards=predictions)


def project(config, measured: dict, counts: dict, seconds_per_sample: float | None, flops: int,
            device_flops: float) -> dict:
    """Seconds of every stage of the run: measured-rate-based and FLOP-based (see the module docstring)."""
    scale = (TARGET_SIZE ** 2 * TARGET_MONTHS) / (measured["size"] ** 2 * measured["months"])
    preprocess_seconds = measured["preprocess_per_zone"] * scale * TARGET_ZONES
    flop_seconds = flops / device_flops  # one training sample at the assumed device rate
    stages = {}
    for stage in ("pretrain", "finetune", "refit"):
        work = counts["train_samples"][stage] + FORWARD_SHARE * counts["validation_forwards"][stage]
        stages[stage] = dict(samples=counts["train_samples"][stage],
                             validation_forwards=counts["validation_forwards"][stage],
                             this_device=None if seconds_per_sample is None else work * seconds_per_sample,
                             flops_based=work * flop_seconds)
    work = FORWARD_SHARE * counts["prediction_forwards"]
    stages["predict"] = dict(forwards=counts["prediction_forwards"],
                             this_device=None if seconds_per_sample is None else work * seconds_per_sample,
                             flops_based=work * flop_seconds)
    postprocess = POSTPROCESS_SHARE * preprocess_seconds
    total_device = (preprocess_seconds + postprocess + sum(s["this_device"] or 0 for s in stages.values())
                    if seconds_per_sample is not None else None)
    total_flops = preprocess_seconds + postprocess + sum(s["flops_based"] for s in stages.values())
    return dict(zones=TARGET_ZONES, size=TARGET_SIZE, months=TARGET_MONTHS, kind="projected",
                preprocess=preprocess_seconds, postprocess=postprocess, stages=stages,
                total_this_device=total_device, total_flops_based=total_flops, counts=counts)


# ---- output -------------------------------------------------------------------------------------------

def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def table_rows(result: dict) -> list[tuple[str, str, str]]:
    """(quantity, value, measured/projected) rows of the printed table."""
    rows = []
    world = result["world"]
    if world["generate_seconds"] is not None:
        rows.append((f"generate world ({world['zones']} × {world['size']}² × {world['months']})",
                     duration(world["generate_seconds"]), "measured"))
    pre = result["preprocess"]
    rows.append(("preprocess wall time", duration(pre["seconds"]), "measured"))
    rows.append(("preprocess per zone", duration(pre["per_zone"]), "measured"))
    for name, source in result["input"].items():
        rows.append((f"input {name}: host core-seconds per sample", f"{source['core_seconds_per_sample']:.3f}",
                     "measured"))
        rows.append((f"input {name}: samples/s with all {os.cpu_count()} cores",
                     f"{source['samples_per_second']:.2f}", "measured"))
    for step in result["train_steps"]:
        label = f"train step {step['precision']} batch {step['batch']}"
        if step["status"] == "skipped":
            rows.append((label, f"skipped (needs ~{step['needed_bytes'] / 1e9:.1f} GB)", "measured"))
            continue
        rows.append((label, f"{step['seconds_per_step']:.2f} s/step, {step['seconds_per_sample']:.2f} s/sample, "
                            f"{step['peak_source']} {step['peak_bytes'] / 1e9:.2f} GB", "measured"))
        for name, source in result["input"].items():
            ratio = source["samples_per_second"] * step["seconds_per_sample"]
            rows.append((f"  input {name} ÷ step throughput", f"{ratio:.1f}×", "measured"))
    for name, cores in result["projection"]["input_cores_needed"].items():
        rows.append((f"input {name}: host cores to feed steps at {result['device_flops'] / 1e12:.0f} TFLOP/s",
                     f"{cores:.0f}", "projected (measured core-s/sample ÷ FLOP-based s/sample)"))
    if result["mixed_precision_note"]:
        rows.append(("mixed precision", result["mixed_precision_note"], "measured"))
    rows.append(("training FLOPs per sample", f"{result['flops_per_sample'] / 1e9:.1f} GFLOP",
                 "projected (analytic)"))
    rows.append(("activation bytes per sample", f"{result['activation_bytes_per_sample'] / 1e9:.2f} GB",
                 "projected (analytic)"))
    projection = result["projection"]
    rate = result["device_flops"]
    where = f"{projection['zones']} zones × {projection['size']}² × {projection['months']} months"
    counts = projection["counts"]
    rows.append((f"run on {where}: pre-training passes over the {counts['training_pairs']:,} (window, "
                 f"origin) pairs", f"{counts['pretrain_passes']:.1f}", "from the config"))
    rows.append((f"run on {where}: preprocess", duration(projection["preprocess"]),
                 "projected (measured wall per zone × size scale × 24)"))
    for stage in ("pretrain", "finetune", "refit", "predict"):
        values = projection["stages"][stage]
        work = (f"{values['samples']:,} samples + {values['validation_forwards']:,} validation forwards"
                if "samples" in values else f"{values['forwards']:,} forwards")
        bound = "; upper bound" if stage != "predict" else ""
        rows.append((f"  {stage} ({work}): this device", duration(values["this_device"]),
                     f"projected (measured s/sample{bound})"))
        rows.append((f"  {stage}: at {rate / 1e12:.0f} TFLOP/s", duration(values["flops_based"]),
                     f"projected (FLOPs{bound})"))
    rows.append(("  postprocess (rough)", duration(projection["postprocess"]),
                 f"projected ({POSTPROCESS_SHARE:.0%} of preprocess)"))
    rows.append(("  total: this device", duration(projection["total_this_device"]), "projected"))
    rows.append((f"  total: at {rate / 1e12:.0f} TFLOP/s", duration(projection["total_flops_based"]), "projected"))
    return rows


def print_table(result: dict) -> None:
    rows = table_rows(result)
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    header = ("quantity", "value", "kind")
    widths = [max(width, len(name)) for width, name in zip(widths, header)]
    line = "  ".join(f"{{:<{width}}}" for width in widths)
    print(line.format(*header).rstrip())
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(line.format(*row).rstrip())


def write_json(path: Path, values: dict) -> None:
    """Write ``values`` as JSON atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(values, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zones", type=int, default=1)
    parser.add_argument("--size", type=int, default=1200)
    parser.add_argument("--months", type=int, default=230)
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "bench-scale",
                        help="generated worlds, records and the JSON (default outputs/bench-scale)")
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    parser.add_argument("--steps", type=int, default=1, help="timed training steps per batch size")
    parser.add_argument("--input-samples", type=int, default=16, help="samples timed on the input path")
    parser.add_argument("--device-tflops", type=float, default=790.0,
                        help="peak TFLOP/s of the device the projection assumes")
    parser.add_argument("--utilisation", type=float, default=0.10,
                        help="share of that peak a training step achieves")
    parser.add_argument("--json", type=Path, help="default <workdir>/scale.json")
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    arguments = parser.parse_args(argv)
    batch_sizes = [int(value) for value in arguments.batch_sizes.split(",") if value]
    if arguments.zones < 1 or not batch_sizes or min(batch_sizes) < 1 or arguments.steps < 1:
        parser.error("--zones, --steps and every --batch-sizes entry must be >= 1")
    tf = phenocast.import_tensorflow_quietly()
    import keras

    from phenocast.config import load_config

    started = time.perf_counter()
    workdir = arguments.workdir.resolve()
    base = load_config(arguments.config, arguments.set)
    if isinstance(base.data.first_month, dict):  # the generated zones Z1..Zn share one calendar
        print(f"error: data.first_month is a mapping ({base.data.first_month}); this bench generates its own "
              f"zones on one calendar: give one month (--set data.first_month=7)", file=sys.stderr)
        return 2
    data_dir, generate_seconds = ensure_world(workdir, arguments.zones, arguments.size, arguments.months, base)
    config = load_config(arguments.config, [*arguments.set, f"data.dir={data_dir}", "data.sample=false",
                                            f"output.dir={workdir / 'out'}", "records.dir=null"])
    device = device_summary(tf)
    log(f"device: {device['name']} ({device['kind']}); TensorFlow {tf.__version__}, Keras {keras.__version__}")
    preprocess_result = measure_preprocess(config, arguments.zones)
    log(f"preprocess: {preprocess_result['seconds']:.1f} s")
    inputs = {}
    for name, source in sample_sources(config).items():
        log(f"input path {name}: timing {arguments.input_samples} samples")
        inputs[name] = measure_input(source, config.train.batch_size, arguments.input_samples)
    steps, cost = measure_steps(config, device, batch_sizes, arguments.steps, tf)
    measured_steps = [s for s in steps if s["status"] == "measured" and s["precision"] == "float32"]
    # the run's batch size if measured, else the nearest measured one
    chosen = min(measured_steps, key=lambda s: abs(s["batch"] - config.train.batch_size), default=None)
    device_flops = arguments.device_tflops * 1e12 * arguments.utilisation
    projection = project(config, dict(size=arguments.size, months=arguments.months,
                                      preprocess_per_zone=preprocess_result["per_zone"]), run_counts(config),
                         chosen["seconds_per_sample"] if chosen else None, cost["flops"], device_flops)
    projection["step_batch"] = chosen["batch"] if chosen else None
    flop_seconds = cost["flops"] / device_flops  # per training sample
    projection["input_cores_needed"] = {name: source["core_seconds_per_sample"] / flop_seconds
                                        for name, source in inputs.items()}
    note = None if device["mixed_precision"] else "skipped: CPU (no fast half-precision kernels)"
    result = dict(
        world=dict(zones=arguments.zones, size=arguments.size, months=arguments.months, seed=WORLD_SEED,
                   data_dir=str(data_dir), generate_seconds=generate_seconds),
        device=device, config=arguments.config, overrides=arguments.set, tensorflow=tf.__version__,
        keras=keras.__version__, cpu_count=os.cpu_count(), load_average=list(os.getloadavg()),
        preprocess=preprocess_result, input=inputs, train_steps=steps, mixed_precision_note=note,
        flops_per_sample=cost["flops"], activation_bytes_per_sample=cost["activation_bytes"],
        device_tflops=arguments.device_tflops, utilisation=arguments.utilisation, device_flops=device_flops,
        projection=projection, seconds=time.perf_counter() - started,
        process_peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(f"\n{device['name']} ({device['kind']}), TensorFlow {tf.__version__}, Keras {keras.__version__}; load "
          f"average (1, 5, 15 min) at the end {' '.join(f'{value:.2f}' for value in os.getloadavg())}; "
          f"{arguments.config} {' '.join(arguments.set)}; projection step time from batch "
          f"{projection['step_batch']}, device rate {arguments.device_tflops:g} TFLOP/s × {arguments.utilisation:g}")
    print_table(result)
    path = arguments.json or workdir / "scale.json"
    write_json(path, result)
    print(f"\nwrote {path}; {time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
