"""Training data resident on the device: a stage's int16 window stacks and zone contexts loaded once from
the records into device memory, and every training sample assembled inside the compiled training step.

The tf.data path (``dataset.training_dataset``) decodes a window's whole stack and builds its sample on the
host for every sample; here the host only feeds sample indices. Layout (one set per training stage, created
under the distribution strategy's scope so every replica holds a copy; ``tf.Variable(trainable=False)``,
never attributes of the model):

- ``windows[z]``: int16 (windows of zone z, months of z, size, size): every window's whole monthly stack as
  its record holds it (fill and gap months = ``data.fill_value``), windows in the order of
  ``dataset._window_table`` (zone, shard, record), which ``sample_plan``'s window indices refer to;
- ``contexts[z]``: int16 (months of z, context height, context width): the zone's context stack, once;
- index tables (constants, a few numbers per window or zone): window → zone and → its row in
  ``windows[zone]``; every other field of its record (``position``, ``zone_size``, ``first_month``, …,
  as ``parse_window`` gives them) stacked over windows; every other field of the context records stacked
  over zones; the zones' first months; their origins as ``training_dataset``'s ragged table.

Zones keep tensors of their own month count (no padding): a sample picks its zone's with a
``tf.switch_case``.

The training input is a tiny stream of sample indices: batch b holds samples b·B … (b+1)·B - 1 from
``start_batch`` on, exactly as ``training_dataset``. Inside the step each index goes through
``dataset.sample_plan`` (window, origin, transform); the window's and its zone's tensors are gathered into
the dicts ``parse_window``/``parse_context`` would give, and ``dataset.training_sample`` (``SampleAssembler``
then ``dihedral``) assembles the sample: the same ops on the same values as tf.data, so the batches are
equal bit for bit, and channels added to the assembler appear here too. ``DeviceData.training(model)``
overrides the model's ``train_step`` for one ``fit`` (indices → (inputs, y), then the model's own step) and
puts it back after: the model is unchanged, so ``model.save`` (``best.keras``, ``last.keras``) and
``BackupAndRestore`` write exactly what they write with tf.data, none of the data, and a resumed stage
stays bit-identical.

``train.device_data``: ``auto`` = on when a GPU is present and the stacks fit within
``train.device_memory_share`` of the smallest GPU's memory, else off (always off on a CPU-only machine, and
with ``train.jit_compile``: XLA cannot compile the varying month counts); ``on`` = always (on a CPU the
"device memory" is the machine's RAM), with a one-line error naming the sizes when they do not fit;
``off`` = tf.data. A GPU's memory is the ``memory_limit`` TensorFlow's allocator reports for it
(``device_lib.list_local_devices``: what was free when TensorFlow initialised it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf

from phenocast.config import Config
from phenocast.dataset import (
    SampleAssembler,
    ZoneSamples,
    _window_table,
    damped_table,
    sample_plan,
    static_graph,
    training_sample,
    training_zones,
)
from phenocast.errors import PhenocastError
from phenocast.records import iterate_windows, read_context

BYTES_PER_VALUE = 2  # int16


def stage_bytes(zones: list[ZoneSamples], kind: str) -> tuple[int, int]:
    """Bytes of the int16 window stacks and of the contexts of the zones with a ``kind`` origin, from their
    manifest entries (nothing is read)."""
    windows = contexts = 0
    for zone in zones:
        if not zone.origins(kind):
            continue
        entry = zone.records.entry
        months = zone.records.last - zone.records.first + 1
        windows += entry["records"] * months * entry["grid"]["size"] ** 2 * BYTES_PER_VALUE
        contexts += months * entry["context"]["height"] * entry["context"]["width"] * BYTES_PER_VALUE
    return windows, contexts


def device_memory() -> tuple[int, str, bool]:
    """(bytes, device name, is a GPU) of the memory one replica's copy may use: the smallest GPU's
    allocator ``memory_limit``, or the machine's RAM without a GPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        from tensorflow.python.client import device_lib

        limits = [(int(device.memory_limit), device.name) for device in device_lib.list_local_devices()
                  if device.device_type == "GPU"]
        if limits:
            size, name = min(limits)
            return size, name, True
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "host RAM (no GPU)", False


def _size(count: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count:.0f} B"


def use_device_data(config: Config, zones: list[ZoneSamples], kind: str) -> bool:
    """Whether a stage trains from device-resident data (``train.device_data``, see the module docstring).

    Raises:
      PhenocastError: ``on`` and the stacks exceed ``train.device_memory_share`` of the device's memory.
    """
    mode = config.train.device_data
    if mode == "off" or (mode == "auto" and config.train.jit_compile):
        return False
    memory, device, is_gpu = device_memory()
    if mode == "auto" and not is_gpu:
        return False
    windows, contexts = stage_bytes(zones, kind)
    allowed = config.train.device_memory_share * memory
    if windows + contexts <= allowed:
        return True
    if mode == "on":
        raise PhenocastError(
            f"train.device_data: on needs {_size(windows + contexts)} of device memory (int16 windows "
            f"{_size(windows)}, contexts {_size(contexts)}), more than train.device_memory_share "
            f"{config.train.device_memory_share:g} × {_size(memory)} of {device} = {_size(allowed)}; "
            f"raise train.device_memory_share, train on fewer zones, or set train.device_data: auto or off")
    return False


class DeviceData:
    """The int16 stacks and index tables of a stage's zones in device memory (layout: module docstring),
    and the training samples assembled from them inside the step.

    Args:
      zones: the stage's zones; those without a ``kind`` origin are left out, as ``training_dataset`` does.
      config: the run's config.
      seed: seeds the window order, origins and augmentations (``sample_plan``), as for tf.data.
      kind: ``train`` or ``refit``.
      strategy: the distribution strategy the model is trained under (its scope holds the variables).
    """

    def __init__(self, zones: list[ZoneSamples], config: Config, seed: int, kind: str = "train",
                 strategy: tf.distribute.Strategy | None = None):
        self.config, self.seed = config, seed
        self.zones, self.zone_origins = training_zones(zones, kind)
        *_, zone_indices = _window_table(self.zones)
        self.assembler = SampleAssembler(config, damped_table(self.zones))
        self.window_count = len(zone_indices)
        self.window_zone = tf.constant(zone_indices, tf.int32)  # (windows,)
        starts = {zone: zone_indices.index(zone) for zone in set(zone_indices)}  # windows come zone by zone
        rows = [index - starts[zone] for index, zone in enumerate(zone_indices)]
        self.window_row = tf.constant(rows, tf.int64)  # (windows,) row in windows[zone]
        self.firsts = tf.constant([zone.first for zone in self.zones], tf.int32)  # (zones,)
        compression = config.records.compression
        strategy = strategy or tf.distribute.get_strategy()
        self.windows: list[tf.Variable] = []
        self.contexts: list[tf.Variable] = []
        window_fields: dict[str, list] = {}
        context_fields: dict[str, list] = {}
        self.bytes = 0
        for zone in self.zones:
            stacks = []
            for record in iterate_windows(zone.records, compression):
                stacks.append(record.pop("stack"))
                for key, value in record.items():
                    window_fields.setdefault(key, []).append(value)
            context = read_context(zone.records, compression)
            context_stack = context.pop("stack")
            for key, value in context.items():
                context_fields.setdefault(key, []).append(value)
            stacked = np.stack(stacks)  # (windows of the zone, months, size, size) int16
            with strategy.scope():
                self.windows.append(tf.Variable(stacked, trainable=False, name=f"{zone.name}_windows"))
                self.contexts.append(tf.Variable(context_stack, trainable=False, name=f"{zone.name}_context"))
            self.bytes += stacked.nbytes + context_stack.nbytes
        self.window_fields = {key: tf.constant(np.stack(values)) for key, values in window_fields.items()}
        self.context_fields = {key: tf.constant(np.stack(values)) for key, values in context_fields.items()}

    @property
    def device(self) -> str:
        """Where the first zone's stacks live (the first replica's copy), e.g. ``GPU:0``."""
        variable = self.windows[0]
        values = getattr(variable, "values", None)  # a mirrored variable: one copy per replica
        spec = tf.DeviceSpec.from_string((values[0] if values else variable).device)
        return f"{spec.device_type}:{spec.device_index}"

    @property
    def description(self) -> str:
        """``device-resident (1.23 GB on GPU:0)``."""
        copies = len(getattr(self.windows[0], "values", None) or [None])
        return f"device-resident ({_size(self.bytes)} on {self.device}" + (
            f", one copy on each of {copies} replicas)" if copies > 1 else ")")

    def index_dataset(self, batch_size: int, start_batch: int = 0) -> tf.data.Dataset:
        """Endless batches of sample indices: batch b = samples b·batch_size … (b+1)·batch_size - 1, from
        ``start_batch`` (as ``training_dataset``). Elements int64 (batch_size,)."""
        start = start_batch * batch_size
        return tf.data.Dataset.range(start, 2 ** 62).batch(batch_size, drop_remainder=True).prefetch(2)

    def _select(self, tensors: list[tf.Variable], zone, row=None):
        """Zone ``zone``'s tensor (its row ``row``), picked with a switch over the zones."""
        def pick(variable):
            return (lambda: tf.gather(variable, row)) if row is not None else (lambda: tf.identity(variable))
        if len(tensors) == 1:
            return pick(tensors[0])()
        return tf.switch_case(zone, [pick(variable) for variable in tensors])

    def sample(self, index):
        """Training sample ``index``: (inputs float32 (years, size, size, channels), y), as tf.data's."""
        window, origin, transform = sample_plan(index, self.seed, self.window_count, self.window_zone,
                                                self.zone_origins, self.config.train.augment)
        zone = tf.gather(self.window_zone, window)
        stack = self._select(self.windows, zone, tf.gather(self.window_row, window))  # (months, size, size)
        parsed_window = {key: tf.gather(table, window) for key, table in self.window_fields.items()}
        parsed_context = {key: tf.gather(table, zone) for key, table in self.context_fields.items()}
        parsed_window["stack"] = stack
        parsed_context["stack"] = self._select(self.contexts, zone)  # (months, height, width)
        position = origin - tf.gather(self.firsts, zone)
        return training_sample(self.assembler, parsed_window, parsed_context, position, transform, self.config)

    def batch(self, indices):
        """(inputs, y) of a batch of sample indices int64 (batch,)."""
        if indices.shape[0] is None:  # no static batch size: one sample after the other
            return tf.map_fn(self.sample, indices, fn_output_signature=(
                tf.TensorSpec(None, tf.float32), tf.TensorSpec(None, tf.float32)))
        samples = [self.sample(indices[k]) for k in range(indices.shape[0])]
        return tf.stack([inputs for inputs, _ in samples]), tf.stack([y for _, y in samples])

    @contextlib.contextmanager
    def training(self, model) -> Iterator:
        """Within the block, ``model.fit`` takes ``index_dataset`` batches: its training step assembles
        them (``batch``) and then runs the model's own step. The model is restored afterwards."""
        import keras

        own_step, previous_function = model.train_step, model.train_function

        @static_graph
        def train_step(indices):
            return own_step(self.batch(indices))

        if getattr(model, "_distribute_strategy", None) is not None:
            # a distributed fit builds the loss and metrics from its first batch's shapes, which here are
            # indices: build them from a sample's shapes instead
            inputs, y = self.sample(tf.constant(0, tf.int64))
            with model.distribute_strategy.scope():
                model._symbolic_build(data_batch=(keras.KerasTensor((None, *inputs.shape), "float32"),
                                                  keras.KerasTensor((None, *y.shape), "float32")))
        model.train_step, model.train_function = train_step, None
        try:
            yield model
        finally:
            del model.train_step  # the class's own again
            model.train_function = previous_function


def training_source(samples: list[ZoneSamples], config: Config, batch: int, seed: int, kind: str,
                    strategy) -> tuple[Callable[[int], tf.data.Dataset], DeviceData | None]:
    """The training input of a stage: (start batch → dataset, device data or None for tf.data)."""
    from phenocast.dataset import training_dataset

    if use_device_data(config, samples, kind):
        data = DeviceData(samples, config, seed, kind, strategy)
        return (lambda start_batch: data.index_dataset(batch, start_batch)), data
    return (lambda start_batch: training_dataset(samples, config, batch, seed, kind=kind,
                                                 start_batch=start_batch)), None
