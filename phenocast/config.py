"""One configuration tree for every stage, loaded from YAML with dotted ``--set`` overrides.

The tree is a dataclass per section (``data``, ``sample``, ``tiling``, ``records``, ``sequence``, ``model``,
``train``, ``finetune``, ``predict``, ``evaluate``, ``postprocess``, ``report``, ``output``) plus a top-level
``seed``. Loading is strict: an unknown key is an error that lists the valid keys of its section, a value
of the wrong type is an error naming the key, the expected type and the value, and cross-field checks run
once, at load. ``configs/default.yaml`` is the competition set-up; ``configs/sample.yaml`` the built-in
sample. Relative paths are relative to the working directory.

Usage::

    config = load_config("configs/sample.yaml", ["train.lr=3e-4", "data.zones=[Z1]"])
    save_config(config, run_dir / "config.resolved.yaml")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from phenocast.errors import PhenocastError

DEFAULT_CONFIG = "configs/default.yaml"
# Keys that were replaced: an old config naming one gets a one-line error pointing at the new key.
RENAMED_KEYS = {
    "model.l2": "train.weight_decay (and finetune.weight_decay): decoupled AdamW weight decay, e.g. 1.0e-2; "
                "the L2 penalty under Adam decayed every kernel to zero",
}


@dataclass
class DataConfig:
    """Where the zones are and how their values are read."""

    dir: str = "data"  # one sub-folder per zone: <dir>/<zone>/<zone>-<NNN>.tif
    zones: list[str] | None = None  # null = every zone found in dir
    fill_value: int = -3000  # MODIS fill; the files carry no nodata tag
    valid_range: list[int] = field(default_factory=lambda: [-2000, 10000])  # values outside are masked
    scale: float = 10000.0  # stored value / scale = NDVI
    val_months: int = 24  # months before the test period that choose checkpoints, epochs, blend weights
    test_months: int = 24  # the last months of every zone: only scored, never used to choose anything
    sample: bool = False  # generate the built-in sample into dir when it holds no zone
    first_month: int = 1  # calendar month (1..12) of month index 1; for calendar encoding and reports


@dataclass
class SampleConfig:
    """The built-in synthetic sample (``python -m phenocast.sample``)."""

    zones: int = 2
    months: int = 120
    size: int = 240  # pixels per side
    seed: int = 0  # the world's seed, separate from the training seed
    missing_months: int = 0  # whole months left out of the numbering (gaps)


@dataclass
class TilingConfig:
    """The window grid: centres of ``centre`` pixels tile the zone, each window adds ``margin`` around."""

    centre: int = 240
    margin: int = 24


@dataclass
class RecordsConfig:
    """Where and how ``preprocess.py`` writes its TFRecords."""

    dir: str | None = None  # null = <output.dir>/records/<data folder name>-c<centre>-m<margin>
    compression: Literal["SPLIT_ZLIB", "SHUFFLE_ZLIB", "GZIP", "NONE"] = "SPLIT_ZLIB"  # see phenocast.records
    compression_level: int = 1  # zlib level (1 = fastest)
    windows_per_shard: int = 1  # records per shard; 1 lets run.py shuffle windows across zones cheaply
    workers: int | None = None  # zones processed in parallel; null = CPU count for big zones, else 1


@dataclass
class SequenceConfig:
    """How a sample is assembled from a window's monthly stack (all offsets relative to the origin o).

    The origin is the last observed month; targets are months o+1 .. o+horizon. A sample has ``years``
    steps; step k (0 = oldest) uses origin o - 12·(years-1-k), so the last step's targets are the forecast.
    The default offsets are the original's channels: with m = o-11 the first month of a year's window,
    m, m+1, m+2 / m+11, m+10, m+9 / m-1, m-2, m-3 / m+3, m+4, m+5.
    """

    years: int = 10
    offsets: list[int] = field(
        default_factory=lambda: [-11, -10, -9, 0, -1, -2, -12, -13, -14, -8, -7, -6])
    context: bool = True  # add the zone-wide block-averaged ("global context") version of every channel
    calendar: bool = False  # add sin/cos channels of the first target month's calendar month
    climatology: bool = False  # add the seasonal curve: climatology at the origin, its change over 11 months
    origins: Literal["fixed", "all"] = "fixed"  # fixed: only the forecast's calendar phase; all: any month


@dataclass
class ModelConfig:
    """The ConvLSTM + FCN network (``model/``); every size of every block comes from here."""

    filters: int = 32  # stem convolution filters
    kernel_size: int = 3
    growth_rate: int = 16  # DenseNet growth rate
    layers_per_block: list[int] = field(default_factory=lambda: [2, 2, 2])  # one dense block per scale
    se_ratio: int = 4  # squeeze-excitation reduction (channels // se_ratio units); 0 = no SE
    lstm_filters: list[int] = field(default_factory=lambda: [32, 48, 64])  # one ConvLSTM per scale
    aspp_filters: int = 64
    dilation_rates: list[int] = field(default_factory=lambda: [5, 9, 13])
    image_pooling: bool = True  # ASPP image-pooling branch
    decoder_filters: int = 32
    upsampling: Literal["bilinear", "depth_to_space"] = "bilinear"
    activation: str = "relu"  # every convolution outside the ConvLSTMs
    cell_activation: str = "tanh"  # ConvLSTM cell and state activation
    recurrent_activation: str = "sigmoid"  # ConvLSTM gates
    convlstm: Literal["fused", "keras"] = "fused"  # model/convlstm.py, or stock keras ConvLSTM2D (slower)
    unroll: bool = True  # unroll the ConvLSTM over years (else a tf.while_loop; unrolled was 2–8 % faster)
    value_scale: float = 0.05  # typical NDVI difference: inputs are divided by it, outputs multiplied
    per_year_outputs: bool = True  # predict the next year's window at every year-step, as the original
    loss: Literal["sqrt_sqrt_mse", "rmse", "mse"] = "sqrt_sqrt_mse"
    loss_epsilon: float = 1e-8
    # sample: each window's own mean over its valid pixels (a window of padding weighs as a full one);
    # pooled: the mean over the valid pixels of the whole batch, as the metric and the competition pool them
    loss_normalization: Literal["sample", "pooled"] = "sample"
    year_weighting: Literal["uniform", "linear"] = "linear"  # later years weigh more
    aux_weight: float = 0.0  # auxiliary heads on coarse decoder stages against pooled targets; 0 = off
    # The forecast the network corrects: its targets are truth - base, the base (as a difference from the
    # climatology) is an input channel per target month, and the zero-initialised head makes an untrained
    # network exactly the base. ema: the competition's EMA; damped: the damped-anomaly baseline (φ fitted
    # on the zone's training origins); climatology: no base channel, the network predicts the anomaly.
    base: Literal["ema", "damped", "climatology"] = "ema"
    # SE and ASPP image pooling average over pixels inside the zone only (not the reflection padding of
    # windows at the zone's edge); adds one input channel: 1 inside the zone, 0 in padding.
    masked_pooling: bool = True
    # The origin month's anomaly moved by lead × the window's velocity (Lucas–Kanade between the anomalies of
    # the origin and the month before), one extra channel per lead for the first layer (model/advection.py);
    # needs offsets 0 and −1 in sequence.offsets.
    advection: bool = False
    advection_smoothing: float = 2.0  # pixels: σ of the Gaussian that smooths both anomalies first


@dataclass
class TrainConfig:
    """Pre-training on all zones pooled, and the device settings of every stage."""

    epochs: int = 30
    steps_per_epoch: int = 100
    batch_size: int = 1  # per replica; global batch = batch_size × replicas
    lr: float = 4e-4
    # Decoupled weight decay (AdamW: every step w ← w − lr·weight_decay·w) of the kernels below the output
    # heads; never the zero-initialised heads, biases or normalisation weights. Replaces the original's L2
    # penalty ("lamda", model.l2), which Adam turned into a pull of one learning rate per step towards zero.
    weight_decay: float = 0.0
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_steps: int = 100
    step_boundaries: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of all steps
    step_factor: float = 0.3
    early_stopping: int = 0  # patience in epochs; 0 = off
    augment: bool = True  # random flips and 90° rotations
    validation_samples: int | None = 128  # (window, origin) pairs, a fixed random subset, scored after every
    # epoch to pick the best checkpoint; null = all. The final scores always use every validation origin.
    # auto/true: bfloat16 compute on GPUs of compute capability >= 8, float16 (loss-scaled) on older ones,
    # float32 on a CPU; float16/bfloat16 force that (also on a CPU); false: float32. Outputs, loss: float32.
    mixed_precision: bool | Literal["auto", "float16", "bfloat16"] = False
    jit_compile: bool = False  # XLA; about 10× slower for a ConvLSTM step on CPU
    memory_growth: bool = True  # GPU memory grows as needed
    cpu_devices: int = 1  # > 1: split the CPU into logical devices and mirror (tests the multi-GPU path)
    init_from: str | None = None  # a .keras file of another run (same network shapes): pre-training starts there
    ensemble: int = 1  # members trained from different seeds, each through every stage; forecasts averaged
    profile_batches: list[int] | None = None  # [start, stop]: TensorBoard-profile these training batches
    keep_epochs: bool = False  # also keep every epoch's model (epoch-<k>.keras in the stage folder)
    # Training samples assembled inside the compiled step from int16 stacks held in device memory
    # (phenocast.device_data) instead of on the host by tf.data: auto = on when a GPU is present and the
    # stage's stacks fit in device_memory_share of its memory; on = always (also on a CPU), an error if they
    # do not fit; off = tf.data. The batches are the same either way up to float32 rounding (Grappler folds
    # the step's divisions by constants into multiplications). YAML reads a bare on/off as true/false.
    device_data: Literal["auto", "on", "off"] | bool = "auto"
    device_memory_share: float = 0.5  # of each device's memory (a CPU's: the machine's RAM) the stacks may use


@dataclass
class FinetuneConfig:
    """Per-zone fine-tuning from the pre-trained weights: the same fit with its own schedule."""

    enabled: bool = True
    epochs: int = 20
    steps_per_epoch: int = 50
    batch_size: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0  # as train.weight_decay
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_steps: int = 0
    step_boundaries: list[float] = field(default_factory=lambda: [0.5, 0.75])
    step_factor: float = 0.3
    early_stopping: int = 5
    refit: bool = False  # then refit on all months, validation included, for the best epoch count


@dataclass
class PredictConfig:
    """What to forecast."""

    horizon: int = 3  # months after the origin
    months: list[int] | None = None  # explicit forecast month indices; null = the horizon after each zone
    tta: bool = False  # average the 8 flips/rotations
    batch_size: int = 8


@dataclass
class EvaluateConfig:
    """Backtest scoring of baselines and models."""

    ema_alpha: float = 0.4
    alpha_grid: list[float] = field(
        default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    damped_smoothing: int = 5  # pixels: the box of the damped baseline's smoothed anomaly
    damped_by_month: bool = False  # the damped baseline's φ per lead and calendar month (else per lead)
    bootstrap: int = 2000  # replicates of the paired bootstrap over forecast origins; 0 = no interval
    confidence: float = 0.95  # of the bootstrap interval


@dataclass
class PostprocessConfig:
    """Stitching, blending with the EMA and the submission zip."""

    blend: Literal["centre", "weighted"] = "centre"
    # The submitted forecast = base + w·(model - base), base = the baseline of model.base. fit: w per zone by
    # least squares on the validation period, clipped to [0, 1]; with shrink it falls to 0 (the base) unless
    # the validation bootstrap interval of RMSE(model) / RMSE(base) lies below 1. A number: that w.
    model_weight: float | Literal["fit"] = "fit"
    shrink: bool = True
    layout: Literal["flat", "zones"] = "flat"  # Z1-213.tif, or Z1/Z1-213.tif inside the zip
    zip_name: str = "submission.zip"


@dataclass
class ReportConfig:
    """The run report."""

    maps: bool = True  # maps of truth, model, EMA and errors per zone and validation month
    max_map_months: int | None = None  # the last N validation months per zone; null = all


@dataclass
class OutputConfig:
    """Where a run writes: ``<dir>/<name>/``."""

    dir: str = "outputs"
    name: str = "default"


@dataclass
class Config:
    """The whole tree."""

    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    records: RecordsConfig = field(default_factory=RecordsConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    # ---- derived values -------------------------------------------------------------------------
    @property
    def window(self) -> int:
        """Window side in pixels: centre + 2 × margin."""
        return self.tiling.centre + 2 * self.tiling.margin

    @property
    def input_channels(self) -> int:
        """Channels of one year-step: the offsets' months, their context versions (``sequence.context``),
        sin/cos of the calendar month (``sequence.calendar``), the 12-month climatology
        (``sequence.climatology``), the base forecast of the ``predict.horizon`` target months (``model.base``
        other than climatology), the inside-the-zone mask (``model.masked_pooling``), in that order."""
        return sum(width for _, width in self.channel_groups)

    @property
    def channel_groups(self) -> list[tuple[str, int]]:
        """(name, width) of every group of input channels, in order (see ``input_channels``)."""
        sequence = self.sequence
        groups = [("months", len(sequence.offsets))]
        if sequence.context:
            groups.append(("context", len(sequence.offsets)))
        if sequence.calendar:
            groups.append(("calendar", 2))
        if sequence.climatology:
            groups.append(("climatology", 12))
        if self.model.base != "climatology":
            groups.append(("base", self.predict.horizon))
        if self.model.masked_pooling:
            groups.append(("inside", 1))
        return groups

    def channel_slice(self, name: str) -> tuple[int, int] | None:
        """[start, stop) of a channel group in the inputs, None when the config has no such group."""
        start = 0
        for group, width in self.channel_groups:
            if group == name:
                return start, start + width
            start += width
        return None

    @property
    def run_dir(self) -> Path:
        """``<output.dir>/<output.name>``."""
        return Path(self.output.dir) / self.output.name

    @property
    def records_dir(self) -> Path:
        """``records.dir``, or ``<output.dir>/records/<data folder name>-c<centre>-m<margin>``.

        Grids of different centre/margin get their own folders, so sweeps over the overlap keep each
        member's records; any other record-relevant change rebuilds in place (see phenocast.preprocess).
        """
        if self.records.dir:
            return Path(self.records.dir)
        name = Path(self.data.dir).resolve().name or "data"
        return Path(self.output.dir) / "records" / f"{name}-c{self.tiling.centre}-m{self.tiling.margin}"

    @property
    def history_months(self) -> int:
        """Months before and including the origin that one sample reads: 12·(years-1) - min(offset)."""
        return 12 * (self.sequence.years - 1) - min(self.sequence.offsets) + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Loader(yaml.SafeLoader):
    """YAML loader that also reads ``3e-4`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


# ---- type checking --------------------------------------------------------------------------------

def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " or ".join(repr(choice) for choice in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation)
        return f"list of {_type_name(item)}"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Return ``value`` checked against ``annotation`` (ints are accepted for floats)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option, key)
            except PhenocastError:
                continue
    elif origin is Literal:
        if value in typing.get_args(annotation) and not isinstance(value, bool):
            return value
    elif origin is list:
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(annotation)
            return [_coerce(element, item, f"{key}[{index}]") for index, element in enumerate(value)]
    elif annotation is type(None):
        if value is None:
            return None
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported config annotation {annotation!r} for {key}")
    raise PhenocastError(
        f"config key {key}: expected {_type_name(annotation)}, got {value!r} ({type(value).__name__}); "
        f"fix the YAML file or the --set value")


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a (possibly partial) mapping, strictly."""
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(values, dict):
        raise PhenocastError(
            f"config section {where}: expected a mapping of keys, got {values!r}; fix the YAML file")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    for key in unknown:
        if f"{prefix}{key}" in RENAMED_KEYS:
            raise PhenocastError(f"config key {prefix}{key} was replaced by {RENAMED_KEYS[prefix + key]}; "
                                 f"rename it in the YAML file or the --set value")
    if unknown:
        raise PhenocastError(
            f"unknown config key {prefix}{unknown[0]}; valid keys of {where}: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name not in values:
            continue
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = _build(annotation, values[name] or {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(values[name], annotation, f"{prefix}{name}")
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``section.key=value`` (value parsed as YAML) into a nested mapping."""
    if "=" not in text:
        raise PhenocastError(
            f"expected an override like train.lr=3e-4, got {text!r}; write --set section.key=value")
    dotted, raw = text.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise PhenocastError(f"expected a dotted key like train.lr, got {dotted!r} in --set {text}")
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else None
    except yaml.YAMLError as error:
        raise PhenocastError(f"--set {text}: the value is not valid YAML ({error.problem})") from None
    nested: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return nested


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PhenocastError(
            f"expected a YAML config file at {path}, found nothing; pass --config with an existing file "
            f"(see configs/)")
    try:
        values = yaml.load(path.read_text(), Loader=_Loader) or {}
    except yaml.YAMLError as error:
        raise PhenocastError(f"config {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(values, dict):
        raise PhenocastError(f"config {path}: expected a mapping of sections, got {type(values).__name__}")
    return values


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()
                ) -> Config:
    """Load a config file, apply dotted overrides, check types and cross-field rules.

    A config file may name a parent with ``base: other.yaml`` (relative to itself); its values are
    applied on top of the parent's.

    Args:
      path: YAML file (default ``configs/default.yaml``).
      overrides: strings ``section.key=value``; values are parsed as YAML.

    Returns:
      The checked ``Config``.
    """
    values = load_config_values(path)
    for text in overrides:
        values = _merge(values, parse_override(text))
    config = _build(Config, values, "")
    check_config(config)
    return config


def load_config_values(path: str | os.PathLike | None) -> dict[str, Any]:
    """The raw mapping of a config file with its ``base:`` chain resolved (no checks)."""
    path = Path(path or DEFAULT_CONFIG)
    values = _read_yaml(path)
    base = values.pop("base", None)
    if base is not None:
        values = _merge(load_config_values(path.parent / base), values)
    return values


def check_config(config: Config) -> None:
    """Cross-field checks, run once at load. Raises ``PhenocastError`` naming the keys involved."""

    def fail(message: str) -> None:
        raise PhenocastError(f"invalid config: {message}")

    data, tiling, sequence = config.data, config.tiling, config.sequence
    if len(data.valid_range) != 2 or data.valid_range[0] >= data.valid_range[1]:
        fail(f"data.valid_range must be [low, high] with low < high, got {data.valid_range}")
    if data.valid_range[0] <= data.fill_value <= data.valid_range[1]:
        fail(f"data.fill_value {data.fill_value} lies inside data.valid_range {data.valid_range}: "
             f"fill pixels would count as data")
    if not all(-32768 <= v <= 32767 for v in [*data.valid_range, data.fill_value]):
        fail("data.valid_range and data.fill_value must fit in int16")
    if not 1 <= data.first_month <= 12:
        fail(f"data.first_month must be a calendar month 1..12, got {data.first_month}")
    if data.val_months < 0 or data.test_months < 0:
        fail(f"data.val_months and data.test_months must be >= 0, got {data.val_months} and "
             f"{data.test_months}")
    if data.zones is not None and len(set(data.zones)) != len(data.zones):
        fail(f"data.zones lists a zone twice: {data.zones}")
    if data.scale <= 0:
        fail(f"data.scale must be positive, got {data.scale}")
    if tiling.centre < 1 or tiling.margin < 0:
        fail(f"tiling.centre must be >= 1 and tiling.margin >= 0, got {tiling.centre} and {tiling.margin}")
    if config.sample.zones < 1 or config.sample.size < 1 or config.sample.months < 24:
        fail("sample.zones and sample.size must be >= 1 and sample.months >= 24")
    if sequence.years < 1:
        fail(f"sequence.years must be >= 1, got {sequence.years}")
    if not sequence.offsets:
        fail("sequence.offsets must list at least one month offset")
    if max(sequence.offsets) > 0:
        fail(f"sequence.offsets must be <= 0 (months at or before the origin), got {sequence.offsets}")
    if config.predict.horizon < 1:
        fail(f"predict.horizon must be >= 1, got {config.predict.horizon}")
    if config.predict.horizon > 12:
        fail(f"predict.horizon must be <= 12 (one year-step ahead), got {config.predict.horizon}")
    if config.evaluate.damped_smoothing < 1:
        fail(f"evaluate.damped_smoothing must be >= 1 pixel, got {config.evaluate.damped_smoothing}")
    if config.evaluate.bootstrap < 0 or not 0 < config.evaluate.confidence < 1:
        fail(f"evaluate.bootstrap must be >= 0 and evaluate.confidence in (0, 1), got "
             f"{config.evaluate.bootstrap} and {config.evaluate.confidence}")
    if not 0 < config.evaluate.ema_alpha <= 1:
        fail(f"evaluate.ema_alpha must be in (0, 1], got {config.evaluate.ema_alpha}")
    if not config.evaluate.alpha_grid or not all(0 < a <= 1 for a in config.evaluate.alpha_grid):
        fail(f"evaluate.alpha_grid must list values in (0, 1], got {config.evaluate.alpha_grid}")
    weight = config.postprocess.model_weight
    if isinstance(weight, float) and not 0 <= weight <= 1:
        fail(f"postprocess.model_weight must be in [0, 1] or 'fit', got {weight}")
    if config.train.ensemble < 1:
        fail(f"train.ensemble must be >= 1 member, got {config.train.ensemble}")
    model = config.model
    if len(model.layers_per_block) != len(model.lstm_filters):
        fail(f"model.layers_per_block ({len(model.layers_per_block)} entries) and model.lstm_filters "
             f"({len(model.lstm_filters)}) must have one entry per scale")
    scales = len(model.lstm_filters)
    if config.window % 2 ** (scales - 1):
        fail(f"the window ({config.window} = tiling.centre + 2·tiling.margin) must be divisible by "
             f"{2 ** (scales - 1)} for {scales} model scales")
    if config.records.windows_per_shard < 1:
        fail(f"records.windows_per_shard must be >= 1, got {config.records.windows_per_shard}")
    if not 0 <= config.records.compression_level <= 9:
        fail(f"records.compression_level must be 0..9, got {config.records.compression_level}")
    for section in (config.train, config.finetune):
        name = "train" if section is config.train else "finetune"
        if section.batch_size < 1 or section.epochs < 0 or section.steps_per_epoch < 1:
            fail(f"{name}.batch_size and {name}.steps_per_epoch must be >= 1 and {name}.epochs >= 0")
        if section.lr <= 0:
            fail(f"{name}.lr must be positive, got {section.lr}")
        if section.weight_decay < 0:
            fail(f"{name}.weight_decay must be >= 0, got {section.weight_decay}")
        if sorted(section.step_boundaries) != section.step_boundaries or not all(
                0 < b < 1 for b in section.step_boundaries):
            fail(f"{name}.step_boundaries must be increasing fractions in (0, 1), "
                 f"got {section.step_boundaries}")
    if config.model.advection and not {0, -1} <= set(sequence.offsets):
        fail(f"model.advection moves the origin month's anomaly at its velocity from the month before: "
             f"sequence.offsets must hold 0 and -1, got {sequence.offsets}")
    if config.model.advection_smoothing <= 0:
        fail(f"model.advection_smoothing must be > 0 pixels, got {config.model.advection_smoothing}")
    if config.model.value_scale <= 0:
        fail(f"model.value_scale must be positive, got {config.model.value_scale}")
    profile = config.train.profile_batches
    if profile is not None and (len(profile) != 2 or not 1 <= profile[0] <= profile[1]):
        fail(f"train.profile_batches must be null or [start, stop] with 1 <= start <= stop (training batches "
             f"of each fit, counted from 1), got {profile}")
    if config.train.cpu_devices < 1:
        fail(f"train.cpu_devices must be >= 1, got {config.train.cpu_devices}")
    if isinstance(config.train.device_data, bool):  # YAML 1.1 reads on/off as booleans
        config.train.device_data = "on" if config.train.device_data else "off"
    if not 0 < config.train.device_memory_share <= 1:
        fail(f"train.device_memory_share must be in (0, 1], got {config.train.device_memory_share}")
    if config.train.device_data == "on" and config.train.jit_compile:
        fail("train.device_data: on assembles samples of varying month counts inside the step, which XLA "
             "cannot compile: set train.jit_compile: false or train.device_data: off")
    if not config.output.name or "/" in config.output.name:
        fail(f"output.name must be a plain folder name, got {config.output.name!r}")


def save_config(config: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically. Returns the path."""
    from phenocast.io import atomic_write_text

    text = "# resolved configuration: every value this run used\n" + yaml.safe_dump(
        config.to_dict(), sort_keys=False, default_flow_style=None)
    return atomic_write_text(Path(path), text)


def config_hash(config: Config, keys: list[str]) -> str:
    """A short stable hash of the given dotted keys' values (e.g. the fields that change records)."""
    values = {}
    for dotted in keys:
        value: Any = config
        for part in dotted.split("."):
            value = getattr(value, part)
        values[dotted] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    blob = json.dumps(values, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
