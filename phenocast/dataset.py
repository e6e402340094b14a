"""tf.data input pipeline: samples assembled on the fly from the int16 window stacks of the records.

A sample is one window at one forecast origin o (0-based position ``p`` in the zone's months). It has
``sequence.years`` steps; step k uses the origin p_k = p - 12·(years-1-k) and holds, per channel offset
d of ``sequence.offsets``, the month p_k + d, as the difference from the climatology *as of p_k*:

    climatology_k(phase, pixel) = mean of the valid values at positions q <= p_k with q ≡ phase (mod 12)
    channel value = (value - climatology_k) / data.scale, 0 where the value or the climatology is missing

so no step — neither its inputs nor its targets — ever sees a month after its own origin through the
climatology (the cumulative sums over years make this cheap). With ``sequence.fill_missing`` a missing pixel
of a month channel (fill, a gap month) takes the mean of that channel's valid pixels inside the zone in a
box around it instead of 0. With ``sequence.context`` the differences are also taken
on the zone's block-averaged context stack, placed centred in a window-sized canvas; with
``sequence.zone_mean`` each of those context channels' mean over its valid pixels (the zone-wide anomaly of
each month) fills one channel at every pixel; with
``sequence.calendar`` two channels carry sin/cos of the calendar month of the first target month.
With ``sequence.climatology``, 12 channels give the seasonal curve as of each step: climatology_k of the
origin's month (NDVI), then its change to each of the 11 following months, so the network sees the
slopes that turn a timing anomaly (an early or late season) into a forecast.
With ``model.base`` ema or damped, ``horizon`` channels carry the base forecast of each target month (the
EMA, or the damped-anomaly forecast with the zone's φ; ``phenocast.features``) as the difference from
climatology_k, and the network adds them to its output (``model.network``); with ``model.masked_pooling``
one channel is 1 inside the zone and 0 in reflection padding.
Channel order: month channels, context channels, zone-mean channels, calendar channels, climatology
channels, base channels, the inside mask (``Config.channel_groups``).

Targets of step k are months p_k+1 .. p_k+horizon as differences from climatology_k, packed with their
mask into the last axis: ``y[..., :horizon]`` targets, ``y[..., horizon:]`` mask (1 = valid pixel inside
the zone with a climatology; padding, fill, gap months and months past the zone's end are 0). For
validation the mask also excludes the window margins, so metrics score window centres only.

Training samples draw their origin uniformly from the zone's training origins (``phenocast.origins``)
and, with ``train.augment``, one of the 8 flips/rotations; all randomness is stateless, seeded from
``seed``, so a run is reproducible. Windows of all zones are shuffled together (by shard file, one window
per file by default), so consecutive batches mix zones and windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from phenocast import features
from phenocast import origins as origin_rules
from phenocast.config import Config
from phenocast.records import ZoneRecords, file_compression, parse_context, parse_window

MONTHS_PER_YEAR = 12
TRANSFORMS = 8  # the dihedral group: 4 rotations × optional flip

# Every function here is plain TensorFlow ops (Python branches only on static config values, loops as
# tf.while_loop): AutoGraph's source rewriting would only cost start-up time (seconds per tf.data map).
static_graph = tf.autograph.experimental.do_not_convert


@dataclass(frozen=True)
class ZoneSamples:
    """A zone's records and the origins (month indices) it contributes to each stage."""

    records: ZoneRecords
    periods: origin_rules.ZonePeriods
    train: list[int]  # training origins: targets within the training period
    refit: list[int]  # every origin whose targets lie in the zone (the submission model's training)
    validation: list[int]
    test: list[int]
    forecast: int
    damped: features.DampedFit | None = None  # the zone's fitted damped baseline (model.base damped)

    @property
    def name(self) -> str:
        return self.records.name

    @property
    def first(self) -> int:
        return self.records.first

    def origins(self, kind: str) -> list[int]:
        """The origins of ``train``, ``refit``, ``validation``, its parts ``select`` and ``check``
        (``origins.validation_part``), ``test`` or ``forecast``."""
        if kind in origin_rules.VALIDATION_PARTS:
            return [origin for origin in self.validation
                    if origin_rules.validation_part(origin, self.periods.validation) == kind]
        return [self.forecast] if kind == "forecast" else list(getattr(self, kind))

    def target_end(self, kind: str) -> int | None:
        """The last month a target of ``kind`` may be (the end of its period; None = no limit)."""
        if kind in origin_rules.VALIDATION_PARTS:
            kind = "validation"
        if kind in origin_rules.PERIODS:
            return self.periods.get(kind).end
        return self.periods.training_end if kind == "train" else None


def input_settings(config: Config) -> tuple[str, ...]:
    """The settings (dotted prefixes) the samples' input channels and targets are computed from: the
    records and the periods, the sequence, the network's inputs (``model``: base, advection, …), and with
    ``model.base`` damped the settings the damped forecast and its φ are fitted with
    (``features.DAMPED_SETTINGS``). A finished stage whose value of any of them changed is stale."""
    settings = ("data.fill_value", "data.valid_range", "data.scale", "data.val_months", "data.test_months",
                "data.first_month", "tiling", "records", "sequence", "model", "predict.horizon", "predict.months",
                "evaluate.ema_alpha")
    if config.model.base == "damped":
        settings += tuple(key for key in features.damped_settings(config.evaluate.damped_reference)
                          if key not in settings)
    return settings


def damped_table(zones: list[ZoneSamples]) -> dict[str, features.DampedFit]:
    """Zone name → fitted damped baseline of the zones that have one (``SampleAssembler``'s ``damped``)."""
    return {zone.name: zone.damped for zone in zones if zone.damped is not None}


def zone_samples(zone_records: list[ZoneRecords], config: Config) -> list[ZoneSamples]:
    """Origins per zone that can train (``origins.trainable``; the others are forecast by the EMA alone);
    raises the one-line error of ``origins.check_trainable`` when none can."""
    origin_rules.check_trainable(zone_records, config)
    result = []
    for records in zone_records:
        first, last = records.first, records.last
        if not origin_rules.trainable(first, last, config):
            continue
        result.append(ZoneSamples(
            records=records, periods=origin_rules.zone_periods(first, last, config),
            train=origin_rules.training_origins(first, last, config),
            refit=origin_rules.training_origins(first, last, config, refit=True),
            validation=origin_rules.period_origins(first, last, config, "validation"),
            test=origin_rules.period_origins(first, last, config, "test"),
            forecast=origin_rules.forecast_origin(last, config)))
    return result


class SampleAssembler:
    """Builds (inputs, targets) tensors from a window stack, a context stack and an origin position.

    Args:
      config: the run's config.
      damped: zone name → its fitted damped baseline (``DampedFit``: φ, and β with
        ``evaluate.damped_reference: fitted``), needed when ``model.base`` is damped.
    """

    def __init__(self, config: Config, damped: dict[str, features.DampedFit] | None = None):
        self.config = config
        self.years = config.sequence.years
        self.offsets = tf.constant(config.sequence.offsets, tf.int32)  # (channels,)
        self.horizon = config.predict.horizon
        self.fill = config.data.fill_value
        self.scale = float(config.data.scale)
        self.size = config.window
        self.centre = config.tiling.centre
        self.margin = config.tiling.margin
        self.first_month = config.data.first_month  # one calendar month of month index 1, or {zone: month}
        if isinstance(self.first_month, dict):
            names = sorted(self.first_month)
            self.month_zones = tf.constant(names)
            self.zone_first_months = tf.constant([self.first_month[name] for name in names], tf.int32)
        self.base = None if config.model.base == "climatology" else config.model.base
        self.zone_names, self.phi, self.beta = None, None, None
        if self.base == "damped":
            if not damped:
                raise ValueError("model.base damped needs every zone's fitted φ (SampleAssembler(damped=…))")
            names = sorted(damped)
            self.zone_names = tf.constant(names)
            self.phi = tf.constant(np.stack([damped[name].phi for name in names]), tf.float32)  # (zones, H, 12, 2)
            if config.evaluate.damped_reference == "fitted":
                missing = [name for name in names if damped[name].beta is None]
                if missing:
                    raise ValueError(f"evaluate.damped_reference fitted needs every zone's β; {missing} have none")
                self.beta = tf.constant([damped[name].beta for name in names], tf.float32)  # (zones,)

    @staticmethod
    def _zone_row(names, zone, what: str):
        """The row that ``names`` (a string vector) gives the window's zone (a string scalar)."""
        found = tf.equal(names, zone)
        tf.debugging.assert_equal(tf.reduce_any(found), True, message=f"no {what} for this zone")
        return tf.argmax(tf.cast(found, tf.int32))

    def _zone_damped(self, zone):
        """(φ (horizon, 12, 2), β: a scalar, or None for the EMA) of the window's zone (a string scalar)."""
        row = self._zone_row(self.zone_names, zone, "damped φ")
        return tf.gather(self.phi, row), None if self.beta is None else tf.gather(self.beta, row)

    # ---- climatology-relative differences ---------------------------------------------------------
    def _step_origins(self, origin):
        steps = tf.range(self.years, dtype=tf.int32)
        return origin - MONTHS_PER_YEAR * (self.years - 1 - steps)  # (years,)

    def _differences(self, stack, positions, mean, exists):
        """(value - climatology) / scale at ``positions`` (years, n), with validity.

        Returns:
          values float32 and valid bool, both (years, n, height, width).
        """
        available = tf.shape(stack)[0]
        inside = (positions >= 0) & (positions < available)
        images = tf.gather(stack, tf.clip_by_value(positions, 0, available - 1))  # (years, n, h, w)
        phases = tf.math.floormod(positions, MONTHS_PER_YEAR)
        climatology = tf.gather(mean, phases, batch_dims=1)  # (years, n, h, w)
        has_climatology = tf.gather(exists, phases, batch_dims=1)
        valid = (images != self.fill) & inside[:, :, None, None] & has_climatology
        values = tf.where(valid, (tf.cast(images, tf.float32) - climatology) / self.scale, 0.0)
        return values, valid

    def _channels(self, stack, origin, with_targets: bool, seasonal: bool = False, base: str | None = None,
                  inside=None, damped=None):
        """Month channels (years, offsets, h, w) and their validity, targets and validity (or None), and
        extra channels (or None): with ``seasonal`` the climatology of the 12 months after each step's origin
        (years, 12, h, w), NDVI units; with ``base`` (ema or damped) then the base forecast of the target
        months as differences from the step's climatology (years, horizon, h, w); ``inside`` (h, w) bool
        marks pixels inside the zone and ``damped`` is the zone's (φ, β) (``_zone_damped``)."""
        step_origins = self._step_origins(origin)
        sums, counts = features.tf_cumulative_sums(stack, origin, self.fill)
        mean, exists = features.tf_climatology_per_step(sums, counts, step_origins)
        channels, channel_valid = self._differences(stack, step_origins[:, None] + self.offsets[None, :], mean,
                                                    exists)
        extra = []
        if seasonal:  # climatology at the origin's month, then its change over the next 11 months
            phases = tf.math.floormod(step_origins[:, None] + tf.range(MONTHS_PER_YEAR)[None, :],
                                      MONTHS_PER_YEAR)  # (years, 12): o, o+1, …, o+11
            values = tf.where(tf.gather(exists, phases, batch_dims=1),
                              tf.gather(mean, phases, batch_dims=1) / self.scale, 0.0)
            extra += [values[:, :1], values[:, 1:] - values[:, :1]]
        if base is not None:
            extra.append(self._base(stack, step_origins, mean, exists, base, inside, damped))
        extra = tf.concat(extra, axis=1) if extra else None
        if not with_targets:
            return channels, channel_valid, None, None, extra
        leads = tf.range(1, self.horizon + 1, dtype=tf.int32)
        targets, valid = self._differences(stack, step_origins[:, None] + leads[None, :], mean, exists)
        return channels, channel_valid, targets, valid, extra

    def _base(self, stack, step_origins, mean, exists, base: str, inside, damped):
        """The base forecast of each step's target months, as differences from that step's climatology.

        Exactly the numpy baseline of ``phenocast.features`` (``ema``, or ``damped`` with the zone's φ and
        reference):
        every position used is <= the step's origin. The smoothed anomaly averages pixels inside the
        zone only, so window centres (margin >= smoothing // 2) equal the zone-wide baseline.

        Returns:
          float32 (years, horizon, height, width); 0 (the climatology) where the base is undefined.
        """
        alpha = self.config.evaluate.ema_alpha
        leads = tf.range(1, self.horizon + 1, dtype=tf.int32)
        targets = step_origins[:, None] + leads[None, :]  # (years, horizon)
        if base == "damped":  # one pass of the reference over the origin month (lead 0) and the targets
            phi, beta = damped
            positions = tf.concat([step_origins[:, None], targets], axis=1)
            value, seen = (features.tf_ema(stack, positions, self.fill, alpha) if beta is None else
                           features.tf_weighted_mean(stack, positions, self.fill, beta))  # (years, 1 + horizon, h, w)
            value = features.tf_damped(value[:, 1:], stack, step_origins, value[:, 0], seen[:, 0], inside, phi,
                                       targets, self.fill, self.config.evaluate.damped_smoothing,
                                       self.config.evaluate.damped_fill)
            seen = seen[:, 1:]
        else:
            value, seen = features.tf_ema(stack, targets, self.fill, alpha)  # (years, horizon, h, w)
        phases = tf.math.floormod(targets, MONTHS_PER_YEAR)
        defined = seen & tf.gather(exists, phases, batch_dims=1)
        return tf.where(defined, (value - tf.gather(mean, phases, batch_dims=1)) / self.scale, 0.0)

    # ---- the sample --------------------------------------------------------------------------------
    def inside_mask(self, position, zone_size):
        """bool (size, size): window pixels inside the zone (not reflection padding)."""
        top, left = tf.cast(position[2], tf.int32), tf.cast(position[3], tf.int32)
        rows = tf.range(self.size) + top
        cols = tf.range(self.size) + left
        height, width = tf.cast(zone_size[0], tf.int32), tf.cast(zone_size[1], tf.int32)
        return ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]

    def centre_mask(self):
        """bool (size, size): the window's centre (what stitching keeps)."""
        line = (tf.range(self.size) >= self.margin) & (tf.range(self.size) < self.margin + self.centre)
        return line[:, None] & line[None, :]

    def _context(self, context, origin):
        """The channels computed on the zone's context stack, each (years, size, size, channels): with
        ``sequence.context`` the context centred in the window (0 around it), with ``sequence.zone_mean``
        every channel's mean over the valid context pixels (the zone-wide anomaly; 0 when none is valid)
        at every pixel of the window."""
        values, valid, _, _, _ = self._channels(context, origin, with_targets=False)  # (years, ch, h, w)
        parts = []
        if self.config.sequence.context:
            canvas = tf.transpose(values, [0, 2, 3, 1])
            height, width = tf.shape(canvas)[1], tf.shape(canvas)[2]
            top, left = (self.size - height) // 2, (self.size - width) // 2
            parts.append(tf.pad(canvas, [[0, 0], [top, self.size - height - top],
                                         [left, self.size - width - left], [0, 0]]))
        if self.config.sequence.zone_mean:  # invalid values are 0: the sum over valid pixels is the sum
            counts = tf.reduce_sum(tf.cast(valid, tf.float32), axis=[2, 3])  # (years, ch)
            means = tf.math.divide_no_nan(tf.reduce_sum(values, axis=[2, 3]), counts)
            parts.append(tf.broadcast_to(means[:, None, None, :], [self.years, self.size, self.size,
                                                                   tf.shape(means)[1]]))
        return parts

    def _fill_missing(self, channels, valid, inside):
        """Month channels (years, offsets, h, w) with every pixel that is not ``valid`` replaced by the mean
        of the channel's valid pixels inside the zone in the ``sequence.fill_missing`` box around it
        (``features.tf_smooth``; 0 where the box holds none); valid pixels keep their values."""
        shape = tf.shape(channels)
        images = tf.reshape(channels, [-1, self.size, self.size])
        usable = tf.reshape(valid & inside[None, None], [-1, self.size, self.size])
        neighbours = tf.reshape(features.tf_smooth(images, usable, self.config.sequence.fill_missing), shape)
        return tf.where(valid, channels, neighbours)

    def _calendar(self, window, origin):
        """sin/cos of the calendar month of the first target month, (years, size, size, 2)."""
        month_index = tf.cast(window["first_month"], tf.int32) + origin + 1  # the first target month's index
        first_month = (self.first_month if not isinstance(self.first_month, dict) else
                       tf.gather(self.zone_first_months,
                                 self._zone_row(self.month_zones, window["zone"], "data.first_month")))
        calendar = tf.math.floormod(month_index - 1 + first_month - 1, MONTHS_PER_YEAR)
        angle = 2.0 * math.pi * tf.cast(calendar, tf.float32) / MONTHS_PER_YEAR
        values = tf.stack([tf.sin(angle), tf.cos(angle)])
        return tf.broadcast_to(values, [self.years, self.size, self.size, 2])

    def __call__(self, window: dict, context: dict, origin, with_targets: bool = True,
                 centre_only: bool = False, target_end=None):
        """Assemble one sample.

        Args:
          window: ``parse_window`` output; context: ``parse_context`` output.
          origin: int32 scalar, 0-based position of the forecast origin in the zone's months.
          with_targets: also build targets and masks.
          centre_only: restrict the mask to the window centre (validation).
          target_end: 0-based position of the last month a target may be (the end of the sample's
            period): later targets are masked, so no validation sample scores a test month.

        Returns:
          inputs float32 (years, size, size, channels) and, with targets, y float32
          (years, size, size, 2·horizon) = targets then mask.
        """
        origin = tf.cast(origin, tf.int32)
        sequence = self.config.sequence
        inside = self.inside_mask(window["position"], window["zone_size"])  # (size, size)
        damped = self._zone_damped(window["zone"]) if self.base == "damped" else None
        channels, channel_valid, targets, valid, extra = self._channels(
            window["stack"], origin, with_targets, seasonal=sequence.climatology, base=self.base, inside=inside,
            damped=damped)
        if sequence.fill_missing:
            channels = self._fill_missing(channels, channel_valid, inside)
        parts = [tf.transpose(channels, [0, 2, 3, 1])]  # (years, size, size, offsets)
        if sequence.context or sequence.zone_mean:
            parts += self._context(context["stack"], origin)
        if sequence.calendar:
            parts.append(self._calendar(window, origin))
        if extra is not None:  # the seasonal curve (12) then the base forecast (horizon)
            parts.append(tf.transpose(extra, [0, 2, 3, 1]))
        if self.config.model.masked_pooling:
            parts.append(tf.broadcast_to(tf.cast(inside, tf.float32)[None, :, :, None],
                                         [self.years, self.size, self.size, 1]))
        inputs = tf.concat(parts, axis=-1)
        if not with_targets:
            return inputs
        mask = valid & inside[None, None]
        if target_end is not None:  # (years, horizon): targets after the period's end are masked
            positions = self._step_origins(origin)[:, None] + tf.range(1, self.horizon + 1)[None, :]
            mask &= (positions <= tf.cast(target_end, tf.int32))[:, :, None, None]
        if centre_only:
            mask &= self.centre_mask()[None, None]
        y = tf.concat([tf.transpose(targets, [0, 2, 3, 1]),
                       tf.transpose(tf.cast(mask, tf.float32), [0, 2, 3, 1])], axis=-1)
        return inputs, y


def _rot90(tensor, quarter_turns):
    """``tf.image.rot90`` for a (…, height, width, channels) tensor of any rank ≥ 3 (it takes 3 or 4)."""
    if tensor.shape.rank in (3, 4):
        return tf.image.rot90(tensor, k=quarter_turns)
    shape = tf.shape(tensor)
    turned = tf.image.rot90(tf.reshape(tensor, tf.concat([[-1], shape[-3:]], axis=0)), k=quarter_turns)
    result = tf.reshape(turned, tf.concat([shape[:-3], tf.shape(turned)[1:]], axis=0))
    if tensor.shape[-3] == tensor.shape[-2]:  # square windows keep their static shape
        result.set_shape(tensor.shape)
    return result


def dihedral(tensor, transform):
    """One of the 8 flips/rotations of the (height, width) axes of a (…, height, width, channels) tensor.

    transform = 4·flip + quarter turns; ``inverse_dihedral`` undoes it.
    """
    transform = tf.cast(transform, tf.int32)
    flipped = tf.cond(transform >= 4, lambda: tf.reverse(tensor, axis=[-2]), lambda: tensor)
    return _rot90(flipped, tf.math.floormod(transform, 4))


def inverse_dihedral(tensor, transform):
    """Undo ``dihedral(…, transform)``."""
    transform = tf.cast(transform, tf.int32)
    turned = _rot90(tensor, tf.math.floormod(-tf.math.floormod(transform, 4), 4))
    return tf.cond(transform >= 4, lambda: tf.reverse(turned, axis=[-2]), lambda: turned)


def _read_pair(window_file, context_file, compression: str) -> tf.data.Dataset:
    """(serialized window, serialized context) for every window record of one shard."""
    kind = file_compression(compression)
    windows = tf.data.TFRecordDataset(window_file, compression_type=kind)
    context = tf.data.TFRecordDataset(context_file, compression_type=kind).repeat()
    return tf.data.Dataset.zip((windows, context))


def _parse_pair(compression: str):
    @static_graph
    def parse(serialized_window, serialized_context):
        return parse_window(serialized_window, compression), parse_context(serialized_context, compression)
    return parse


def _shard_table(zones: list[ZoneSamples], origins_of) -> tuple[list[str], list[str], list[int], list]:
    """Parallel lists over shards: window file, context file, zone first month, the zone's origins."""
    window_files, context_files, firsts, origin_lists = [], [], [], []
    for zone in zones:
        for shard in zone.records.shards:
            window_files.append(str(shard))
            context_files.append(str(zone.records.context))
            firsts.append(zone.first)
            origin_lists.append(origins_of(zone))
    return window_files, context_files, firsts, origin_lists


def _ragged(origin_lists: list[list[int]]) -> tf.RaggedTensor:
    return tf.ragged.constant(origin_lists, dtype=tf.int32, row_splits_dtype=tf.int32)


def _window_table(zones: list[ZoneSamples]) -> tuple[list[str], list[int], list[str], list[int]]:
    """Parallel lists over every window of ``zones``: shard file, record index inside it, context file,
    zone index (in ``zones``)."""
    shard_files, record_indices, context_files, zone_indices = [], [], [], []
    for index, zone in enumerate(zones):
        for shard in zone.records.entry["shards"]:
            for record in range(shard["records"]):
                shard_files.append(str(zone.records.folder / shard["file"]))
                record_indices.append(record)
                context_files.append(str(zone.records.context))
                zone_indices.append(index)
    return shard_files, record_indices, context_files, zone_indices


def sample_plan(index, seed: int, windows: int, window_zone, zone_origins, augment: bool):
    """The (window, origin month, transform) of training sample ``index``: a pure function of (seed,
    index), so a resumed run draws exactly the samples an uninterrupted one would.

    Samples come in passes over the windows: pass p = index // windows visits every window once, in a
    stateless random permutation of its own (windows of all zones mixed); the origin is drawn uniformly
    from the window's zone's origins and the flip/rotation from the 8, both from stateless seeds folded
    from (seed, index).

    Args:
      index: int64 scalar, the sample's position in the training stream (batch · batch_size + k).
      windows: the number of windows.
      window_zone: int32 (windows,) zone index of every window.
      zone_origins: int32 ragged (zones, None) origin months.

    Returns:
      (window index int64, origin month int32, transform int32) scalars.
    """
    index = tf.cast(index, tf.int64)
    count = tf.constant(windows, tf.int64)
    window = tf.random.experimental.index_shuffle(
        index % count, tf.stack([tf.constant(seed, tf.int64), index // count]), count - 1)
    sample_seed = tf.random.experimental.stateless_fold_in(tf.constant([seed, 1], tf.int64), index)
    origins = tf.gather(zone_origins, tf.gather(window_zone, window))
    choice = tf.random.stateless_uniform([], sample_seed, 0, tf.shape(origins)[0], dtype=tf.int32)
    transform = tf.constant(0, tf.int32)
    if augment:
        transform = tf.random.stateless_uniform(
            [], tf.random.experimental.stateless_fold_in(sample_seed, 1), 0, TRANSFORMS, dtype=tf.int32)
    return window, origins[choice], transform


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Have a multi-worker strategy split every global batch between the workers (each worker builds the
    same batches and keeps its slice) instead of guessing a split by input file, which would give the
    workers different batches and counts; no effect on a single process."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def training_zones(zones: list[ZoneSamples], kind: str) -> tuple[list[ZoneSamples], tf.RaggedTensor]:
    """The zones with a ``kind`` origin, and their origins as the ragged (zones, None) int32 table of
    ``sample_plan``; raises if there is none."""
    zones = [zone for zone in zones if zone.origins(kind)]
    if not zones:
        raise ValueError(f"no zone has a {kind} origin")
    return zones, _ragged([zone.origins(kind) for zone in zones])


def training_sample(assembler: SampleAssembler, window: dict, context: dict, position, transform,
                    config: Config):
    """One training sample from a window and its zone's context (``parse_window``/``parse_context`` dicts,
    parsed from records or gathered from device memory): the assembler at 0-based origin ``position``, then
    the flip/rotation ``transform``; y of every year-step or the last (``model.per_year_outputs``)."""
    inputs, y = assembler(window, context, position)
    inputs, y = dihedral(inputs, transform), dihedral(y, transform)
    return inputs, _select_outputs(y, config)


def training_dataset(zones: list[ZoneSamples], config: Config, batch_size: int, seed: int,
                     kind: str = "train", start_batch: int = 0, with_origins: bool = False) -> tf.data.Dataset:
    """Endless training batches (inputs, y) over all windows of ``zones`` and their ``kind`` origins.

    Batch b holds samples b·batch_size .. (b+1)·batch_size - 1 of ``sample_plan``: every batch is a pure
    function of (seed, b), and ``start_batch`` starts the stream there (a resumed run continues where
    the interrupted one stopped). Each sample reads its window's record (and its zone's context); files
    are read a few at a time in parallel, in a deterministic order.

    Args:
      zones: the zones.
      batch_size: global batch size.
      seed: seeds the window order, the origins and the augmentations.
      kind: ``train`` (the training period) or ``refit`` (every month).
      start_batch: the first batch to yield.
      with_origins: add (zone, origin month) of every sample to each element, for checks.
    """
    compression = config.records.compression
    assembler = SampleAssembler(config, damped_table(zones))
    zones, zone_origins = training_zones(zones, kind)
    shard_files, record_indices, context_files, zone_indices = _window_table(zones)
    shard_files_tensor, context_files_tensor = tf.constant(shard_files), tf.constant(context_files)
    record_tensor = tf.constant(record_indices, tf.int64)
    window_zone = tf.constant(zone_indices, tf.int32)
    firsts = tf.constant([zone.first for zone in zones], tf.int32)
    windows, augment = len(shard_files), config.train.augment
    kind_compression = file_compression(compression)
    parse = _parse_pair(compression)

    @static_graph
    def plan(index):
        window, origin, transform = sample_plan(index, seed, windows, window_zone, zone_origins, augment)
        return window, origin, transform

    @static_graph
    def read(window, origin, transform):
        records = tf.data.TFRecordDataset(tf.gather(shard_files_tensor, window),
                                          compression_type=kind_compression)
        context = tf.data.TFRecordDataset(tf.gather(context_files_tensor, window),
                                          compression_type=kind_compression)
        pair = tf.data.Dataset.zip((records.skip(tf.gather(record_tensor, window)).take(1), context.take(1)))
        return pair.map(lambda w, c: (w, c, window, origin, transform))

    @static_graph
    def assemble(serialized_window, serialized_context, window, origin, transform):
        parsed_window, parsed_context = parse(serialized_window, serialized_context)
        first = tf.gather(firsts, tf.gather(window_zone, window))
        inputs, y = training_sample(assembler, parsed_window, parsed_context, origin - first, transform, config)
        if with_origins:
            return inputs, y, (parsed_window["zone"], origin)
        return inputs, y

    start = start_batch * batch_size
    dataset = tf.data.Dataset.range(start, 2 ** 62).map(plan)
    dataset = dataset.interleave(read, cycle_length=8, block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                                 deterministic=True)  # one record per element: the order is kept
    dataset = dataset.map(assemble, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return shard_by_data(dataset)


def _select_outputs(y, config: Config):
    """All year-steps' targets, or only the last one's."""
    return y if config.model.per_year_outputs else y[-1]


def origin_dataset(zones: list[ZoneSamples], config: Config, origins_of, with_targets: bool = True,
                   centre_only: bool = True, limit: int | None = None, seed: int = 0,
                   target_end_of=None) -> tf.data.Dataset:
    """Every (window, origin) of ``zones`` in a fixed order: zone, shard, window, origin.

    Args:
      origins_of: zone → list of origin month indices (e.g. ``lambda z: z.validation``).
      with_targets: yield (inputs, y) (for evaluation) instead of (inputs, key).
      centre_only: masks cover window centres only (validation scores what stitching keeps).
      limit: keep only a fixed random subset (by ``seed``) of this many (shard, origin) pairs.
      target_end_of: zone → the last month a target may be (e.g. ``lambda z: z.target_end("validation")``),
        or None: later targets are masked.

    Elements are (inputs, y) with targets, else (inputs, key) where key = (zone, row, col, origin month).
    """
    compression = config.records.compression
    assembler = SampleAssembler(config, damped_table(zones))
    window_files, context_files, firsts, origin_lists, _ = _selected_shards(zones, origins_of, limit, seed)
    by_file = {str(shard): zone for zone in zones for shard in zone.records.shards}
    no_limit = 2 ** 30
    ends = [no_limit if target_end_of is None or target_end_of(by_file[file]) is None
            else target_end_of(by_file[file]) for file in window_files]
    table = tf.data.Dataset.from_tensor_slices((window_files, context_files, firsts, ends,
                                                _ragged(origin_lists)))
    parse = _parse_pair(compression)

    @static_graph
    def expand(window_file, context_file, first, end, origin_list):
        pairs = _read_pair(window_file, context_file, compression).map(parse)
        return pairs.flat_map(lambda window, context: tf.data.Dataset.from_tensor_slices(
            origin_list).map(lambda origin: (window, context, first, end, origin)))

    dataset = table.flat_map(expand)

    @static_graph
    def assemble(window, context, first, end, origin):
        position = origin - tf.cast(first, tf.int32)
        if with_targets:
            inputs, y = assembler(window, context, position, centre_only=centre_only,
                                  target_end=end - tf.cast(first, tf.int32))
            return inputs, _select_outputs(y, config)
        inputs = assembler(window, context, position, with_targets=False)
        key = (window["zone"], tf.cast(window["position"][0], tf.int32),
               tf.cast(window["position"][1], tf.int32), origin)
        return inputs, key

    return dataset.map(assemble, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _selected_shards(zones: list[ZoneSamples], origins_of, limit: int | None, seed: int):
    """The shard table of ``origin_dataset``, cut to a fixed random subset of ``limit`` (shard, origin)
    pairs when there are more. Returns window files, context files, first months, origin lists, and
    records per shard."""
    zones = [zone for zone in zones if origins_of(zone)]
    window_files, context_files, firsts, origin_lists = _shard_table(zones, origins_of)
    counts = [shard["records"] for zone in zones for shard in zone.records.entry["shards"]]
    pairs = [(shard, origin) for shard, origins in enumerate(origin_lists) for origin in origins]
    if limit is not None and limit < len(pairs):
        chosen = sorted(np.random.default_rng(seed).choice(len(pairs), size=limit, replace=False))
        kept: dict[int, list[int]] = {}
        for index in chosen:
            kept.setdefault(pairs[index][0], []).append(pairs[index][1])
        shards = sorted(kept)
        window_files = [window_files[i] for i in shards]
        context_files = [context_files[i] for i in shards]
        firsts = [firsts[i] for i in shards]
        counts = [counts[i] for i in shards]
        origin_lists = [kept[i] for i in shards]
    return window_files, context_files, firsts, origin_lists, counts


def steps_in(zones: list[ZoneSamples], origins_of, limit: int | None = None, seed: int = 0) -> int:
    """Number of (window, origin) elements ``origin_dataset`` yields with the same arguments."""
    *_, origin_lists, counts = _selected_shards(zones, origins_of, limit, seed)
    return sum(len(origins) * count for origins, count in zip(origin_lists, counts))


STATISTICS_SAMPLES = 64  # (window, origin) pairs whose inputs give the standardised channels' statistics


def channel_statistics(zones: list[ZoneSamples], config: Config, channels: list[int], seed: int,
                       limit: int = STATISTICS_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of some input channels over training samples: a fixed random subset
    of ``limit`` (window, origin) pairs of the zones' *training* origins (no later month enters), every
    year-step, the pixels inside the zone (all pixels without ``model.masked_pooling``).

    Returns:
      float64 (len(channels),) means and standard deviations.
    """
    data = origin_dataset(zones, config, lambda zone: zone.train, with_targets=False, limit=limit, seed=seed)
    inside = config.channel_slice("inside")
    total = np.zeros(len(channels))
    squares = np.zeros(len(channels))
    count = 0.0
    for inputs, _ in data.prefetch(tf.data.AUTOTUNE):
        inputs = inputs.numpy()  # (years, size, size, all channels)
        values = inputs[..., channels].astype(np.float64)
        weight = np.ones_like(values[..., :1]) if inside is None else inputs[..., inside[0]:inside[1]]
        total += (values * weight).sum(axis=(0, 1, 2))
        squares += (values ** 2 * weight).sum(axis=(0, 1, 2))
        count += float(weight.sum())
    if count == 0:
        raise ValueError("no training sample to measure the input statistics on")
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
