"""One Keras ``fit`` for every training stage (pre-training, fine-tuning, refit), resumable.

A stage lives in its own folder ``checkpoints/<stage>/``:

- ``backup/``: ``keras.callbacks.BackupAndRestore`` state (weights, optimizer, epoch) saved after every
  epoch, after every other callback; a killed run restarted with the same command continues from the
  last finished epoch;
- ``best.keras``: the best model by validation RMSE (``val_masked_rmse``; without validation data, e.g.
  a refit, the last epoch's), its threshold and the early-stopping count rebuilt from the CSV log after
  a restart; when fine-tuning, the starting weights stay the best model (epoch 0) unless an epoch beats
  their validation score;
- ``last.keras``: the model after the last epoch;
- ``epoch-<k>.keras``: the model after every epoch k, with ``train.keep_epochs``;
- ``done.json``: written last — epochs run, best epoch and score; a stage with it is done.

Training batches are a pure function of (seed, batch index) (``phenocast.dataset.training_dataset``),
and the backup holds weights, optimizer state and epoch, so a resumed stage is bit-identical to an
uninterrupted one.

Logs: ``logs/<stage>.csv`` (Keras ``CSVLogger``, appended across restarts) and TensorBoard scalars plus a
few prediction-vs-truth images under ``logs/tensorboard/<stage>/`` (and a profile of the training batches
``train.profile_batches``, if set). Under multi-worker training only the chief writes TensorBoard.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from model.health import collapse_reasons, departure, gradient_norm, head_groups, kernel_rms
from phenocast.config import Config, FinetuneConfig, TrainConfig
from phenocast.devices import worker
from phenocast.io import atomic_path, atomic_write_text, read_epoch_log

DONE = "done.json"


@dataclass
class StageResult:
    """What a finished stage reports (``done.json``)."""

    name: str
    epochs: int
    best_epoch: int
    best_score: float | None
    monitor: str | None  # None: no validation, the last epoch is the model
    skipped: bool = False

    @classmethod
    def load(cls, folder: Path) -> StageResult | None:
        path = folder / DONE
        if not path.is_file():
            return None
        values = json.loads(path.read_text())
        return cls(**{key: values[key] for key in ("name", "epochs", "best_epoch", "best_score", "monitor")},
                   skipped=True)


def learning_rate(schedule: TrainConfig | FinetuneConfig, total_steps: int):
    """The stage's learning-rate schedule: cosine with linear warm-up, stepped decay, or constant."""
    lr = schedule.lr
    if schedule.schedule == "constant":
        return lr
    if schedule.schedule == "step":
        boundaries = [max(1, int(fraction * total_steps)) for fraction in schedule.step_boundaries]
        values = [lr * schedule.step_factor ** index for index in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    warmup = min(schedule.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(lr * 0.01, decay_steps, alpha=0.01,
                                                      warmup_target=lr, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(lr, decay_steps, alpha=0.01)


class PredictionImages(keras.callbacks.Callback):
    """Logs truth, prediction and error of a few validation windows to TensorBoard after every epoch."""

    def __init__(self, folder: Path, inputs: np.ndarray, y: np.ndarray, horizon: int):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(folder))
        self.inputs, self.horizon = inputs, horizon
        target = y[..., :horizon] if y.ndim == 4 else y[:, -1, ..., :horizon]
        self.mask = (y[..., horizon:] if y.ndim == 4 else y[:, -1, ..., horizon:])[..., :1]
        self.truth = target[..., :1]

    @staticmethod
    def _scale(image: np.ndarray, limit: float) -> np.ndarray:
        return np.clip(0.5 + image / (2 * limit), 0, 1)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        output = self.model(self.inputs, training=False)
        if isinstance(output, dict):
            output = output["forecast"]
        output = np.asarray(tf.cast(output, tf.float32))
        prediction = (output[:, -1] if output.ndim == 5 else output)[..., :1]
        limit = max(float(np.abs(self.truth).max()), 1e-3)
        with self.writer.as_default():
            tf.summary.image("truth (lead 1, difference from climatology)",
                             self._scale(self.truth * self.mask, limit), step=epoch, max_outputs=4)
            tf.summary.image("prediction (lead 1)", self._scale(prediction, limit), step=epoch, max_outputs=4)
            tf.summary.image("error (lead 1)", self._scale((prediction - self.truth) * self.mask, limit),
                             step=epoch, max_outputs=4)
        self.writer.flush()


HEALTH_FILE = "health.json"  # a stage's kernel RMS per layer group at its start (kept across a resume)


@dataclass
class HealthProbes:
    """Fixed batches the training-health measurements use every epoch (``TrainingHealth``).

    Attributes:
      train: (inputs, y) of the stage's first training batch: the gradient norm (and the departure when
        there is no validation).
      validation: (inputs, y) of the first validation samples: the departure from the base.
      base_rmse: the base forecast's validation RMSE (``val_masked_rmse``'s units and pixels), or None.
    """

    train: tuple[np.ndarray, np.ndarray] | None
    validation: tuple[np.ndarray, np.ndarray] | None = None
    base_rmse: float | None = None


class TrainingHealth(keras.callbacks.Callback):
    """Adds the network's health to every epoch's logs (so to the CSV log and TensorBoard), and warns in one
    line when it has collapsed (``model.health``):

    - ``kernel_ratio_<group>``: the RMS of a layer group's kernels ÷ its RMS at the start of the stage;
    - ``head_rms``: the RMS of the forecast head's kernel (zero at initialisation);
    - ``gradient_norm``: the global gradient norm of the loss on the stage's first training batch;
    - ``departure_rms``, ``departure_spatial_rms``: forecast − base on the validation probe (the training
      probe without validation): its RMS and the RMS of its variation over pixels, NDVI units;
    - ``val_base_rmse``: the base's validation RMSE, the reference the learning curves draw;
    - ``collapsed``: 1 when ``collapse_reasons`` finds the network dead, else 0.

    The initial kernel RMS is written to ``<stage folder>/health.json`` when the stage starts, so a resumed
    stage compares with the same values.
    """

    def __init__(self, name: str, folder: Path, probes: HealthProbes, base_slice: tuple[int, int] | None,
                 fresh: bool, log: Callable[[str], None] = print):
        super().__init__()
        self.name, self.path, self.probes, self.base_slice = name, folder / HEALTH_FILE, probes, base_slice
        self.fresh, self.log = fresh, log
        self.initial: dict[str, float] = {}
        self.heads: list[str] = []

    def on_train_begin(self, logs=None) -> None:
        self.heads = head_groups(self.model)
        if self.fresh or not self.path.is_file():
            atomic_write_text(self.path, json.dumps({"initial_kernel_rms": kernel_rms(self.model)}, indent=1) + "\n")
        self.initial = {group: value for group, value in json.loads(self.path.read_text())["initial_kernel_rms"].items()
                        if group not in self.heads}

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs if logs is not None else {}
        rms = kernel_rms(self.model)
        ratios = {group: rms[group] / initial for group, initial in self.initial.items() if initial > 0}
        for group, ratio in ratios.items():
            logs[f"kernel_ratio_{group}"] = ratio
        heads = {group: rms[group] for group in self.heads}
        logs["head_rms"] = heads.get("forecast", 0.0)
        if self.probes.train is not None:
            logs["gradient_norm"] = gradient_norm(self.model, *self.probes.train)
        probe = self.probes.validation if self.probes.validation is not None else self.probes.train
        spread = spatial = None
        if probe is not None:
            spread, spatial = departure(self.model, *probe, self.base_slice)
            logs["departure_rms"], logs["departure_spatial_rms"] = spread, spatial
        if self.probes.base_rmse is not None:
            logs["val_base_rmse"] = self.probes.base_rmse
        reasons = collapse_reasons(ratios, heads, spread, spatial)
        logs["collapsed"] = float(bool(reasons))
        if reasons:
            self.log(f"WARNING {self.name} epoch {epoch + 1}: the network has collapsed: {'; '.join(reasons)}")


def tensorboard(folder: Path, train: TrainConfig) -> keras.callbacks.TensorBoard:
    """The stage's TensorBoard callback: scalars per epoch; with ``train.profile_batches`` [start, stop],
    a profile of those training batches (counted from 1 in each ``fit``; see TensorBoard's Profile tab)."""
    profile = tuple(train.profile_batches) if train.profile_batches else 0
    return keras.callbacks.TensorBoard(str(folder), write_graph=False, update_freq="epoch", profile_batch=profile)


def _epochs_logged(log_path: Path, monitor: str) -> list[tuple[int, float]]:
    """(epoch 1-based, monitored value) of every finished epoch in a CSV log (NaN where missing)."""
    rows = []
    for row in read_epoch_log(log_path):
        try:
            value = float(row[monitor])
        except (KeyError, TypeError, ValueError):
            value = float("nan")
        rows.append((int(row["epoch"]) + 1, value))
    return rows


def backup_epoch(folder: Path) -> int:
    """The number of epochs an interrupted stage finished (``BackupAndRestore``'s metadata), else 0."""
    path = folder / "backup" / "training_metadata.json"
    if not path.is_file():
        return 0
    return int(json.loads(path.read_text()).get("epoch", 0))


def fit_stage(name: str, folder: Path, logs: Path, model: keras.Model, train_data: Callable[[int], tf.data.Dataset],
              validation_data: tf.data.Dataset | None, schedule: TrainConfig | FinetuneConfig,
              epochs: int, config: Config, image_batch: tuple[np.ndarray, np.ndarray] | None = None,
              log: Callable[[str], None] = print, initial_score: float | None = None,
              health: HealthProbes | None = None) -> StageResult:
    """Train ``model`` (already compiled) for a stage, resumably; returns the stage's result.

    A killed stage restarted with the same command continues from its last finished epoch with the
    same weights, optimizer state and batches (``train_data`` starts at the first batch of that epoch),
    so its result is bit-identical to an uninterrupted run's.

    Args:
      name: stage name for logs (``pretrain``, ``finetune-Z1``, …).
      folder: the stage folder (``checkpoints/<stage>``).
      logs: the run's log folder.
      train_data: start batch → endless batches; ``schedule.steps_per_epoch`` are taken per epoch.
      validation_data: finite batches, or None: then the last epoch is the stage's model.
      epochs: epochs to run (early stopping on validation may end sooner); 0 saves the model as is.
      image_batch: (inputs, y) of a few validation windows for TensorBoard images.
      initial_score: the validation RMSE of the starting weights (fine-tuning): they stay the stage's
        best model (epoch 0) unless an epoch beats them.
      health: the probes of the per-epoch health measurements (``TrainingHealth``), or None for none.
    """
    folder.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    monitor = "val_masked_rmse"
    log_path = logs / f"{name}.csv"
    tracked = validation_data is not None
    start_epoch = backup_epoch(folder)
    if start_epoch == 0:  # a fresh start: an old log of this stage belongs to nobody
        log_path.unlink(missing_ok=True)
        if initial_score is not None:
            with atomic_path(folder / "best.keras") as temporary:
                model.save(temporary)
    tracker = _BestCheckpoint(monitor, folder / "best.keras", initial_score if tracked else None,
                              getattr(schedule, "early_stopping", 0) if tracked else 0,
                              _epochs_logged(log_path, monitor)[:start_epoch])
    chief = worker().chief  # other workers of a cluster keep a CSV log (to resume in step), no TensorBoard
    callbacks = [] if health is None else [  # first: it adds its measurements to the logs the others write
        TrainingHealth(name, folder, health, config.channel_slice("base"), start_epoch == 0, log)]
    callbacks += [
        tracker,
        keras.callbacks.CSVLogger(str(log_path), append=True),
        keras.callbacks.TerminateOnNaN(),
    ]
    if chief:
        callbacks.append(tensorboard(logs / "tensorboard" / name, config.train))
    if image_batch is not None and chief:
        callbacks.append(PredictionImages(logs / "tensorboard" / name / "images", *image_batch,
                                          config.predict.horizon))
    if config.train.keep_epochs:
        callbacks.append(EpochModels(folder))
    # last: an epoch counts as done only once everything above has seen it (a kill before the backup
    # repeats that epoch, so the CSV log may hold a row twice; readers keep the last)
    callbacks.append(keras.callbacks.BackupAndRestore(str(folder / "backup"), delete_checkpoint=False))
    tf.get_logger().setLevel("ERROR")  # retracing notices when each zone compiles its own model
    if epochs > 0 and not tracker.stopped:
        history = model.fit(train_data(start_epoch * schedule.steps_per_epoch), epochs=epochs,
                            steps_per_epoch=schedule.steps_per_epoch, validation_data=validation_data,
                            callbacks=callbacks, shuffle=False, verbose=1 if sys.stdout.isatty() else 2)
        if any(not np.isfinite(value) for value in history.history.get("loss", [])):
            raise FloatingPointError(f"{name}: the loss became NaN; lower the learning rate")
    with atomic_path(folder / "last.keras") as temporary:
        model.save(temporary)
    epochs_run = len(read_epoch_log(log_path))
    if not tracked or not (folder / "best.keras").is_file():  # no validation: the last epoch is the model
        shutil.copyfile(folder / "last.keras", folder / "best.keras")
    best_epoch = tracker.best_epoch if tracked and tracker.best is not None else epochs_run
    result = StageResult(name, epochs_run, best_epoch, tracker.best if tracked else None,
                         monitor if tracked else None)
    atomic_write_text(folder / DONE, json.dumps(result.__dict__ | {"skipped": False}, indent=1) + "\n")
    shutil.rmtree(folder / "backup", ignore_errors=True)
    return result


class EpochModels(keras.callbacks.Callback):
    """Saves the model after every epoch as ``epoch-<k>.keras`` (k from 1), atomically (``train.keep_epochs``:
    learning curves on other periods, e.g. ``bench/learnability.py``)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        with atomic_path(epoch_model(self.folder, epoch + 1)) as temporary:
            self.model.save(temporary)


def epoch_model(folder: Path, epoch: int) -> Path:
    """The model a stage kept after ``epoch`` (1-based) with ``train.keep_epochs``."""
    return folder / f"epoch-{epoch:03d}.keras"


class _BestCheckpoint(keras.callbacks.Callback):
    """Saves the model, atomically, whenever the monitored value improves; stops early after
    ``patience`` epochs without improvement (0 = never).

    Its state (best value and epoch, epochs since) is rebuilt from the epochs an interrupted run
    logged, so a resumed stage keeps the same checkpoint and stops at the same epoch as an uninterrupted
    one.
    """

    def __init__(self, monitor: str, path: Path, initial: float | None, patience: int,
                 logged: list[tuple[int, float]]):
        super().__init__()
        self.monitor, self.path, self.patience = monitor, path, patience
        self.best, self.best_epoch = initial, 0
        self.last_epoch = 0
        for epoch, value in logged:
            self._record(epoch, value)
        self.stopped = self._should_stop()

    def _record(self, epoch: int, value: float | None) -> bool:
        self.last_epoch = epoch
        if value is not None and math.isfinite(value) and (self.best is None or value < self.best):
            self.best, self.best_epoch = float(value), epoch
            return True
        return False

    def _should_stop(self) -> bool:
        return bool(self.patience) and self.last_epoch - self.best_epoch >= self.patience

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if self._record(epoch + 1, (logs or {}).get(self.monitor)):
            with atomic_path(self.path) as temporary:
                self.model.save(temporary)
        if self._should_stop():
            self.model.stop_training = True
