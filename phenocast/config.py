"""One configuration tree for every stage, loaded from YAML with dotted ``--set`` overrides.

The tree is a strict pydantic model per section (``data``, ``sample``, ``tiling``, ``records``, ``sequence``,
``model``, ``train``, ``finetune``, ``predict``, ``evaluate``, ``postprocess``, ``report``, ``output``) plus a
top-level ``seed``. The repository's ``configs/default.yaml`` (the competition set-up; found relative to
this file, not the working directory) is the one source of defaults and sets every key: every config is
loaded on top of it, then its own ``base:`` chain, then the overrides, so keys a file does not set have
default.yaml's values. The models hold types, ranges and choices, no default values.

Loading is strict: an unknown key is an error that suggests the closest valid key and lists the valid keys
of its section, a value of the wrong type or out of range is an error naming the key, what was expected and
what was found; cross-field checks run at load, and assignments (``config.output.name = …``) are checked
too. Every error is one ``PhenocastError`` line. ``configs/sample.yaml`` is the built-in sample. Relative
paths in a config are relative to the working directory (``base:`` to its file).

Usage::

    config = load_config("configs/sample.yaml", ["train.lr=3e-4", "data.zones=[Z1]"])
    save_config(config, run_dir / "config.resolved.yaml")
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from phenocast.errors import PhenocastError

DEFAULT_CONFIG = "configs/default.yaml"
# The shipped defaults, found relative to the repository (not the working directory).
DEFAULTS_PATH = Path(__file__).resolve().parent.parent / DEFAULT_CONFIG
# Keys that were replaced: an old config naming one gets a one-line error pointing at the new key.
RENAMED_KEYS = {
    "model.l2": "train.weight_decay (and finetune.weight_decay): decoupled AdamW weight decay, e.g. 1.0e-2; "
                "the L2 penalty under Adam decayed every kernel to zero",
}
INT16 = {"ge": -32768, "le": 32767}


class Section(BaseModel):
    """A strict section: no unknown keys, no type coercion (ints are accepted for floats), assignments
    checked; a failed check raises ``PhenocastError`` with one line."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True, protected_namespaces=())

    def __setattr__(self, name: str, value: Any) -> None:
        previous = self.__dict__.get(name)
        try:
            super().__setattr__(name, value)
        except ValidationError as error:
            if name in self.__dict__:  # a failed cross-field check leaves the value assigned: undo it
                self.__dict__[name] = previous
            raise PhenocastError(_error_line(error, {name: value}, type(self))) from None


class DataConfig(Section):
    """Where the zones are and how their values are read."""

    dir: str  # one sub-folder per zone: <dir>/<zone>/<zone>-<NNN>.tif
    zones: list[str] | None  # null = every zone found in dir
    fill_value: int = Field(**INT16)  # MODIS fill; the files carry no nodata tag
    valid_range: list[int]  # [low, high]: values outside are masked
    scale: float = Field(gt=0)  # stored value / scale = NDVI
    val_months: int = Field(ge=0)  # months before the test period that choose checkpoints, epochs, blend weights
    test_months: int = Field(ge=0)  # the last months of every zone: only scored, never used to choose anything
    sample: bool  # generate the built-in sample into dir when it holds no zone
    # calendar month (1..12) of month index 1, for the calendar channels and the report's months: one for
    # every zone, or {zone: month} naming every zone of the run (zones whose numbering starts elsewhere)
    first_month: int | dict[str, int]

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        low_high, fill = self.valid_range, self.fill_value
        if len(low_high) != 2 or low_high[0] >= low_high[1]:
            raise ValueError(f"data.valid_range must be [low, high] with low < high, got {low_high}")
        if low_high[0] <= fill <= low_high[1]:
            raise ValueError(f"data.fill_value {fill} lies inside data.valid_range {low_high}: "
                             f"fill pixels would count as data")
        if not all(INT16["ge"] <= value <= INT16["le"] for value in low_high):
            raise ValueError(f"data.valid_range must fit in int16, got {low_high}")
        if self.zones is not None and len(set(self.zones)) != len(self.zones):
            raise ValueError(f"data.zones lists a zone twice: {self.zones}")
        months = self.first_month if isinstance(self.first_month, dict) else {"": self.first_month}
        wrong = {zone: month for zone, month in months.items() if not 1 <= month <= 12}
        if wrong:
            found = self.first_month if "" in months else wrong
            raise ValueError(f"data.first_month must be a calendar month 1..12 (or {{zone: month}} with such "
                             f"months), got {found}")
        if isinstance(self.first_month, dict) and not self.first_month:
            raise ValueError("data.first_month is an empty mapping: give one month for every zone, or one "
                             "{zone: month} per zone")
        return self

    def first_months(self, zones: list[str]) -> dict[str, int]:
        """{zone: calendar month of its month index 1} for the run's ``zones``; a one-line error when
        ``first_month`` is a mapping that misses one of them."""
        if not isinstance(self.first_month, dict):
            return dict.fromkeys(zones, self.first_month)
        missing = [zone for zone in zones if zone not in self.first_month]
        if missing:
            raise PhenocastError(
                f"data.first_month gives the calendar month of month 001 for {', '.join(sorted(self.first_month))}"
                f", not for zone(s) {', '.join(missing)} of this run; add them to the mapping (e.g. --set "
                f"'data.first_month={{{', '.join(f'{zone}: 7' for zone in zones)}}}') or give one month for "
                f"every zone")
        return {zone: self.first_month[zone] for zone in zones}


class SampleConfig(Section):
    """The built-in synthetic sample (``python -m phenocast.sample``)."""

    zones: int = Field(ge=1)
    months: int = Field(ge=24)
    size: int = Field(ge=1)  # pixels per side
    seed: int  # the world's seed, separate from the training seed
    missing_months: int  # whole months left out of the numbering (gaps)


class TilingConfig(Section):
    """The window grid: centres of ``centre`` pixels tile the zone, each window adds ``margin`` around."""

    centre: int = Field(ge=1)
    margin: int = Field(ge=0)


class RecordsConfig(Section):
    """Where and how ``preprocess.py`` writes its TFRecords."""

    dir: str | None  # null = <output.dir>/records/<data folder name>-c<centre>-m<margin>
    compression: Literal["SPLIT_ZLIB", "SHUFFLE_ZLIB", "GZIP", "NONE"]  # see phenocast.records
    compression_level: int = Field(ge=0, le=9)  # zlib level (1 = fastest)
    windows_per_shard: int = Field(ge=1)  # records per shard; 1 lets run.py shuffle windows across zones cheaply
    workers: int | None  # zones processed in parallel; null = CPU count for big zones, else 1


class SequenceConfig(Section):
    """How a sample is assembled from a window's monthly stack (all offsets relative to the origin o).

    The origin is the last observed month; targets are months o+1 .. o+horizon. A sample has ``years``
    steps; step k (0 = oldest) uses origin o - 12·(years-1-k), so the last step's targets are the forecast.
    The default offsets are the original's channels: with m = o-11 the first month of a year's window,
    m, m+1, m+2 / m+11, m+10, m+9 / m-1, m-2, m-3 / m+3, m+4, m+5.
    """

    years: int = Field(ge=1)
    offsets: list[int]  # months relative to the origin, all <= 0
    context: bool  # add the zone-wide block-averaged ("global context") version of every channel
    zone_mean: bool  # add every channel's mean over the zone (from the context), the same at every pixel
    calendar: bool  # add sin/cos channels of the first target month's calendar month
    climatology: bool  # add the seasonal curve: climatology at the origin, its change over 11 months
    origins: Literal["fixed", "all"]  # fixed: only the forecast's calendar phase; all: any month
    # pixels: a missing pixel of a month channel (fill, cloud, snow) takes the mean of the channel's valid
    # pixels inside the zone in the box of this side around it (0 where there are none); 0 = off: it is 0,
    # the climatology, which the network cannot tell from a pixel observed at the climatology
    fill_missing: int = Field(ge=0)

    @field_validator("offsets")
    @classmethod
    def _check_offsets(cls, offsets: list[int]) -> list[int]:
        if not offsets:
            raise ValueError("sequence.offsets must list at least one month offset")
        if max(offsets) > 0:
            raise ValueError(f"sequence.offsets must be <= 0 (months at or before the origin), got {offsets}")
        return offsets


class ModelConfig(Section):
    """The ConvLSTM + FCN network (``model/``); every size of every block comes from here."""

    filters: int  # stem convolution filters
    kernel_size: int
    growth_rate: int  # DenseNet growth rate
    layers_per_block: list[int]  # one dense block per scale
    se_ratio: int  # squeeze-excitation reduction (channels // se_ratio units); 0 = no SE
    lstm_filters: list[int]  # one ConvLSTM per scale
    aspp_filters: int
    dilation_rates: list[int]
    image_pooling: bool  # ASPP image-pooling branch
    decoder_filters: int
    upsampling: Literal["bilinear", "depth_to_space"]
    activation: str  # every convolution outside the ConvLSTMs
    cell_activation: str  # ConvLSTM cell and state activation
    recurrent_activation: str  # ConvLSTM gates
    convlstm: Literal["fused", "keras"]  # model/convlstm.py, or stock keras ConvLSTM2D
    unroll: bool  # unroll the ConvLSTM over years (else a tf.while_loop; unrolled was 2–8 % faster)
    value_scale: float = Field(gt=0)  # typical NDVI difference: inputs are divided by it, outputs multiplied
    per_year_outputs: bool  # predict the next year's window at every year-step, as the original
    loss: Literal["sqrt_sqrt_mse", "rmse", "mse"]
    loss_epsilon: float
    # sample: each window's own mean over its valid pixels (a window of padding weighs as a full one);
    # pooled: the mean over the valid pixels of the whole batch, as the metric and the competition pool them
    loss_normalization: Literal["sample", "pooled"]
    year_weighting: Literal["uniform", "linear"]  # linear: later years weigh more
    aux_weight: float  # auxiliary heads on coarse decoder stages against pooled targets; 0 = off
    # The forecast the network corrects: its targets are truth - base, the base (as a difference from the
    # climatology) is an input channel per target month, and the zero-initialised head makes an untrained
    # network exactly the base. ema: the competition's EMA; damped: the damped-anomaly baseline (φ fitted
    # on the zone's training origins); climatology: no base channel, the network predicts the anomaly.
    base: Literal["ema", "damped", "climatology"]
    # SE and ASPP image pooling average over pixels inside the zone only (not the reflection padding of
    # windows at the zone's edge); adds one input channel: 1 inside the zone, 0 in padding.
    masked_pooling: bool
    # The origin month's anomaly moved by lead × the window's velocity (Lucas–Kanade between the anomalies of
    # the origin and the month before), one extra channel per lead for the first layer (model/advection.py);
    # needs offsets 0 and −1 in sequence.offsets.
    advection: bool
    advection_smoothing: float = Field(gt=0)  # pixels: σ of the Gaussian that smooths both anomalies first
    # What the moved field holds where it comes from outside the zone's pixels in a window (reflection
    # padding): nearest: the nearest pixel inside continues; zero: 0, the mean anomaly (model/advection.py).
    advection_edge: Literal["nearest", "zero"]
    # A 1×1 convolution from the network's inputs (scaled, with the advection channels) to the forecast,
    # beside the head: the per-pixel linear model every forecast can fall back on (the damped anomaly, the
    # advected field), so the layers only learn what it misses. none: no such path; zero: it starts at
    # zero and trains with the rest; ridge: it starts at the ridge regression of the residual on those
    # channels (training origins, penalty chosen on the select half; without validation months: zero), and
    # pre-training scores it first, so an epoch must beat it on validation to be chosen.
    linear_path: Literal["none", "zero", "ridge"]
    # (window, origin) pairs in each of the ridge regression's two tables (training origins to fit, the
    # select half of validation to choose the penalty; ``phenocast.ridge``): a zone-wide anomaly is one
    # value per zone and origin, so its coefficients rest on the number of distinct origins drawn, not pixels.
    # At most 100,000: a table keeps at most 200,000 rows, at least two of each pair.
    ridge_samples: int = Field(ge=1, le=100_000)
    # The layers' part of the forecast centred on each window: the head's output minus its mean over the
    # window's pixels inside the zone, so only the base and the linear path set a window's level (a
    # zone-wide anomaly) and the layers add spatial detail. Few zones give the layers few zone-months to
    # learn a level from; they fit its noise (README, "The regional world").
    centre_layers: bool

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if len(self.layers_per_block) != len(self.lstm_filters):
            raise ValueError(f"model.layers_per_block ({len(self.layers_per_block)} entries) and model.lstm_filters "
                             f"({len(self.lstm_filters)}) must have one entry per scale")
        if self.centre_layers and not self.masked_pooling:
            raise ValueError("model.centre_layers: true needs model.masked_pooling: true (its inside-the-zone "
                             "channel marks the pixels the layers' part is centred over); set both or neither")
        return self


class Schedule(Section):
    """The checks that pre-training (``train``) and fine-tuning (``finetune``) share."""

    @model_validator(mode="after")
    def _check_schedule(self) -> Schedule:
        name, boundaries = _section_key(type(self)), self.step_boundaries
        if sorted(boundaries) != boundaries or not all(0 < boundary < 1 for boundary in boundaries):
            raise ValueError(f"{name}.step_boundaries must be increasing fractions in (0, 1), got {boundaries}")
        return self


class TrainConfig(Schedule):
    """Pre-training on all zones pooled, and the device settings of every stage."""

    epochs: int = Field(ge=0)
    steps_per_epoch: int = Field(ge=1)
    batch_size: int = Field(ge=1)  # per replica; global batch = batch_size × replicas
    lr: float = Field(gt=0)
    # Decoupled weight decay (AdamW: every step w ← w − lr·weight_decay·w) of the kernels below the output
    # heads; never the zero-initialised heads, biases or normalisation weights. Replaces the original's L2
    # penalty ("lamda", model.l2), which Adam turned into a pull of one learning rate per step towards zero.
    weight_decay: float = Field(ge=0)
    schedule: Literal["cosine", "step", "constant"]
    warmup_steps: int
    step_boundaries: list[float]  # fractions of all steps
    step_factor: float
    early_stopping: int  # patience in epochs; 0 = off
    augment: bool  # random flips and 90° rotations
    validation_samples: int | None  # (window, origin) pairs, a fixed random subset, scored after every
    # epoch to pick the best checkpoint; null = all. The final scores always use every validation origin.
    # auto/true: bfloat16 compute on GPUs of compute capability >= 8, float16 (loss-scaled) on older ones,
    # float32 on a CPU; float16/bfloat16 force that (also on a CPU); false: float32. Outputs, loss: float32.
    mixed_precision: bool | Literal["auto", "float16", "bfloat16"]
    jit_compile: bool  # XLA; about 10× slower for a ConvLSTM step on CPU
    memory_growth: bool  # GPU memory grows as needed
    cpu_devices: int = Field(ge=1)  # > 1: split the CPU into logical devices and mirror (tests the multi-GPU path)
    init_from: str | None  # a .keras file of another run (same network shapes): pre-training starts there;
    #   "sample": the network configs/sample.yaml pre-trains on the built-in sample (built once per output.dir)
    ensemble: int = Field(ge=1)  # members trained from different seeds, each through every stage; forecasts averaged
    profile_batches: list[int] | None  # [start, stop]: TensorBoard-profile these training batches
    keep_epochs: bool  # also keep every epoch's model (epoch-<k>.keras in the stage folder)
    # Training samples assembled inside the compiled step from int16 stacks held in device memory
    # (phenocast.device_data) instead of on the host by tf.data: auto = on when a GPU is present and the
    # stage's stacks fit in device_memory_share of its memory; on = always (also on a CPU), an error if they
    # do not fit; off = tf.data. The batches are the same either way up to float32 rounding (Grappler folds
    # the step's divisions by constants into multiplications). YAML 1.1 reads a bare on/off as true/false.
    device_data: Literal["auto", "on", "off"]
    device_memory_share: float = Field(gt=0, le=1)  # of each device's memory (a CPU's: the machine's RAM)

    @field_validator("device_data", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        """YAML 1.1 reads on/off as booleans: back to the words."""
        return ("on" if value else "off") if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        profile = self.profile_batches
        if profile is not None and (len(profile) != 2 or not 1 <= profile[0] <= profile[1]):
            raise ValueError(f"train.profile_batches must be null or [start, stop] with 1 <= start <= stop "
                             f"(training batches of each fit, counted from 1), got {profile}")
        if self.device_data == "on" and self.jit_compile:
            raise ValueError("train.device_data: on assembles samples of varying month counts inside the step, "
                             "which XLA cannot compile: set train.jit_compile: false or train.device_data: off")
        return self


class FinetuneConfig(Schedule):
    """Per-zone fine-tuning from the pre-trained weights: the same fit with its own schedule."""

    enabled: bool
    epochs: int = Field(ge=0)
    steps_per_epoch: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)  # as train.weight_decay
    schedule: Literal["cosine", "step", "constant"]
    warmup_steps: int
    step_boundaries: list[float]
    step_factor: float
    early_stopping: int
    refit: bool  # then refit on all months, validation included, for the best epoch count
    # all: the refit trains on every month (it writes the submission, nothing can score it); validation: it
    # stops where the test period starts, and the test period scores it beside the selected model
    refit_through: Literal["all", "validation"]


class PredictConfig(Section):
    """What to forecast."""

    horizon: int = Field(ge=1, le=12)  # months after the origin; at most one year-step ahead
    months: list[int] | None  # explicit forecast month indices; null = the horizon after each zone
    tta: bool  # average the 8 flips/rotations
    batch_size: int


class EvaluateConfig(Section):
    """Backtest scoring of baselines and models."""

    ema_alpha: float = Field(gt=0, le=1)
    alpha_grid: list[float]  # the per-pixel EMA's candidate α, each in (0, 1]
    damped_smoothing: int = Field(ge=1)  # pixels: the box of the damped baseline's smoothed anomaly
    damped_by_month: bool  # the damped baseline's φ per lead and calendar month (else per lead)
    damped_fill: bool  # a missing origin pixel's anomaly is its smoothed anomaly (else the pixel gets the EMA)
    damped_reference: Literal["ema", "fitted"]  # the damped forecast's reference: the EMA at ema_alpha, or a
    #   weighted mean of the earlier years with β per zone from alpha_grid fitted with φ (phenocast.features)
    bootstrap: int = Field(ge=0)  # replicates of the paired bootstrap over forecast origins; 0 = no interval
    confidence: float = Field(gt=0, lt=1)  # of the bootstrap interval

    @field_validator("alpha_grid")
    @classmethod
    def _check_grid(cls, grid: list[float]) -> list[float]:
        if not grid or not all(0 < alpha <= 1 for alpha in grid):
            raise ValueError(f"evaluate.alpha_grid must list values in (0, 1], got {grid}")
        return grid


class PostprocessConfig(Section):
    """Stitching, blending with a fallback baseline and the submission zip."""

    blend: Literal["centre", "weighted"]
    # The submitted forecast = fallback + w·(model - fallback), the fallback = the baseline of model.base
    # unless ``fallback`` names another. fit: w per zone by least squares on the check half of validation,
    # clipped to [0, 1]; with shrink it falls to 0 (the fallback) unless the bootstrap interval of
    # RMSE(model) / RMSE(fallback) there lies below 1. A number: that w.
    model_weight: float | Literal["fit"]
    shrink: bool
    # What the model is blended with and falls back to: base (model.base) or a named baseline. With shrink
    # a fallback other than the EMA must beat the EMA on the check images, else the EMA is the fallback.
    fallback: Literal["base", "ema", "damped", "climatology"]
    decision: Literal["pooled", "zone"]  # the check (and the fitted weight) over all zones, or per zone
    layout: Literal["flat", "zones"]  # Z1-213.tif, or Z1/Z1-213.tif inside the zip
    zip_name: str

    @field_validator("model_weight")
    @classmethod
    def _check_weight(cls, weight: float | str) -> float | str:
        if isinstance(weight, float) and not 0 <= weight <= 1:
            raise ValueError(f"postprocess.model_weight must be in [0, 1] or 'fit', got {weight}")
        return weight


class ReportConfig(Section):
    """The run report."""

    maps: bool  # maps of truth, model, EMA and errors per zone and validation month
    max_map_months: int | None  # the last N validation months per zone; null = all


class OutputConfig(Section):
    """Where a run writes: ``<dir>/<name>/``."""

    dir: str
    name: str

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not name or "/" in name:
            raise ValueError(f"output.name must be a plain folder name, got {name!r}")
        return name


class Config(Section):
    """The whole tree."""

    seed: int
    data: DataConfig
    sample: SampleConfig
    tiling: TilingConfig
    records: RecordsConfig
    sequence: SequenceConfig
    model: ModelConfig
    train: TrainConfig
    finetune: FinetuneConfig
    predict: PredictConfig
    evaluate: EvaluateConfig
    postprocess: PostprocessConfig
    report: ReportConfig
    output: OutputConfig

    @model_validator(mode="after")
    def _check(self) -> Config:
        scales = len(self.model.lstm_filters)
        if self.window % 2 ** (scales - 1):
            raise ValueError(f"the window ({self.window} = tiling.centre + 2·tiling.margin) must be divisible by "
                             f"{2 ** (scales - 1)} for {scales} model scales")
        if self.model.advection and not {0, -1} <= set(self.sequence.offsets):
            raise ValueError(f"model.advection moves the origin month's anomaly at its velocity from the month "
                             f"before: sequence.offsets must hold 0 and -1, got {self.sequence.offsets}")
        return self

    # ---- derived values -------------------------------------------------------------------------
    @property
    def window(self) -> int:
        """Window side in pixels: centre + 2 × margin."""
        return self.tiling.centre + 2 * self.tiling.margin

    @property
    def input_channels(self) -> int:
        """Channels of one year-step: the offsets' months, their context versions (``sequence.context``),
        their zone-wide means (``sequence.zone_mean``),
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
        if sequence.zone_mean:
            groups.append(("zone", len(sequence.offsets)))
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
        """The tree as nested plain dicts, in field order."""
        return self.model_dump()


# ---- errors as one line ---------------------------------------------------------------------------

def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Section)


def _section_key(section: type[Section]) -> str:
    """The key of a section class in the tree (``""`` for ``Config``)."""
    return next((name for name, field in Config.model_fields.items() if field.annotation is section), "")


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


def _error_line(error: ValidationError, values: dict[str, Any], section: type[Section] | None = None) -> str:
    """One line for pydantic's first error (a replaced key first): the dotted key, what was expected, what
    was found, what to do.

    Args:
      error: raised validating ``values`` as ``section`` (default: the whole tree) or assigning them to it.
    """
    section = section or Config
    prefix, located = _section_key(section), []
    for detail in error.errors(include_url=False):
        model, keys, field, found = section, [prefix] if prefix else [], None, values
        for part in detail["loc"]:  # down the sections to the field (the rest: union members, list indices)
            field = model.model_fields.get(part) if isinstance(part, str) else None
            keys.append(str(part))
            found = found.get(part) if isinstance(found, dict) else None
            if field is None or not _is_section(field.annotation):
                break
            model, field = field.annotation, None
        located.append((detail, ".".join(keys), model, field, found))
    detail, key, model, field, found = next(
        (entry for entry in located if entry[0]["type"] == "extra_forbidden" and entry[1] in RENAMED_KEYS),
        located[0])
    kind, fix = detail["type"], "fix the YAML file or the --set value"
    if kind == "extra_forbidden":
        if key in RENAMED_KEYS:
            return (f"config key {key} was replaced by {RENAMED_KEYS[key]}; "
                    f"rename it in the YAML file or the --set value")
        section, name = key.rpartition(".")[::2]
        valid = list(model.model_fields)
        guess = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean {section + '.' if section else ''}{guess[0]}?)" if guess else ""
        return f"unknown config key {key}{hint}; valid keys of {section or 'the top level'}: {', '.join(valid)}"
    if kind in ("value_error", "assertion_error"):
        return f"invalid config: {detail['ctx']['error']}"
    if kind == "missing":
        return f"config key {key} has no value: {DEFAULTS_PATH} must set every key; add it there"
    if field is None:
        return f"config section {key}: expected a mapping of keys, got {found!r}; fix the YAML file"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
        bounds = " and ".join(f"{symbol} {getattr(item, name)}" for item in field.metadata
                              for name, symbol in symbols.items() if hasattr(item, name))
        return f"config key {key}: expected {_type_name(field.annotation)} {bounds}, got {found!r}; {fix}"
    return f"config key {key}: expected {_type_name(field.annotation)}, got {found!r} ({type(found).__name__}); {fix}"


# ---- loading --------------------------------------------------------------------------------------

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


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``, section by section; an empty section (``train:``) changes nothing."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(merged.get(key), dict) and (value is None or isinstance(value, dict)):
            merged[key] = _merge(merged[key], value or {})
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
    """Load a config file over ``configs/default.yaml``, apply dotted overrides, check types and rules.

    The layers, later over earlier: ``configs/default.yaml`` (next to this package), the file's ``base:``
    chain (each ``base`` relative to the file naming it), the file, the overrides.

    Args:
      path: YAML file (default ``configs/default.yaml``).
      overrides: strings ``section.key=value``; values are parsed as YAML.

    Returns:
      The checked ``Config``.
    """
    values = _merge(load_config_values(DEFAULTS_PATH), load_config_values(path))
    for text in overrides:
        values = _merge(values, parse_override(text))
    try:
        return Config.model_validate(values)
    except ValidationError as error:
        raise PhenocastError(_error_line(error, values)) from None


def load_config_values(path: str | os.PathLike | None) -> dict[str, Any]:
    """The raw mapping of a config file with its ``base:`` chain resolved (no defaults, no checks)."""
    path = Path(path or DEFAULTS_PATH)
    values = _read_yaml(path)
    base = values.pop("base", None)
    if base is not None:
        values = _merge(load_config_values(path.parent / base), values)
    return values


def save_config(config: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically. Returns the path."""
    from phenocast.io import atomic_write_text

    text = "# resolved configuration: every value this run used\n" + yaml.safe_dump(
        config.to_dict(), sort_keys=False, default_flow_style=None)
    return atomic_write_text(Path(path), text)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} → {"a.b": 1}."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def dotted_values(config: Config, keys: list[str]) -> dict[str, Any]:
    """{dotted key: its value} (a section as a plain dict), e.g. ``{"tiling.margin": 24}``."""
    values = {}
    for dotted in keys:
        value: Any = config
        for part in dotted.split("."):
            value = getattr(value, part)
        values[dotted] = value.model_dump() if isinstance(value, BaseModel) else value
    return values


def config_hash(config: Config, keys: list[str]) -> str:
    """A short stable hash of the given dotted keys' values (e.g. the fields that change records)."""
    blob = json.dumps(dotted_values(config, keys), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose values differ, with their values (``train.weight_decay 0.01 → 0.1``)."""
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key, "<unset>") != new.get(key, "<unset>"):
            changes.append(f"{key} {json.dumps(old.get(key, '<unset>'))} → {json.dumps(new.get(key, '<unset>'))}")
    return changes
