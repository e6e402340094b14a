"""The stages of ``run.py``: pretrain → finetune → refit → predict → postprocess → report, each resumable.

Everything goes to ``<output.dir>/<output.name>/``:

- ``checkpoints/pretrain/`` (all zones pooled, training period, the epoch chosen on validation);
  ``checkpoints/finetune/<zone>/`` (each zone from the pre-trained weights with the ``finetune``
  schedule; the pre-trained weights stay the zone's model unless a fine-tuned epoch beats them on the
  zone's validation period); ``checkpoints/refit-pretrain/`` and ``checkpoints/refit/<zone>/``
  (``finetune.refit``: the same starts and schedules, trained on every month for the chosen epoch
  counts: the submission model);
- ``logs/`` (CSV and TensorBoard per stage);
- ``predictions/raw/<zone>-{validation,test,forecast}.npz`` (window predictions: validation and test by
  the chosen model, the forecast by the submission model), then what ``phenocast.postprocess`` writes.

With ``train.init_from: sample`` pre-training starts from ``configs/sample.yaml``'s network pre-trained on
the built-in sample, a run of its own built once into ``<output.dir>/sample-prior`` (``sample_prior``).

Each training stage folder holds ``stage.json``: the config values and inputs (records, start model,
chosen epochs) it depends on. A finished stage with the same ``stage.json`` is skipped; one whose
settings changed is refused with the keys named (``--restart STAGE`` rebuilds it and what follows, or
choose a new ``output.name``), so a run never mixes checkpoints of two configurations. A prediction is
redone when its model file or its settings changed. ``zones`` (``--zones``) restricts finetune, refit
and predict to a subset, so zones can be fanned out over processes, GPUs or machines once ``pretrain`` is
done; ``postprocess`` and ``report`` then gather every zone that has predictions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from phenocast import import_tensorflow_quietly
from phenocast.config import DEFAULTS_PATH, Config, describe_changes, flatten, save_config
from phenocast.errors import PhenocastError
from phenocast.forecast import REFIT_TEST
from phenocast.io import atomic_write_text
from phenocast.origins import check_trainable, shortened_notes
from phenocast.zones import Zone, discover_zones
from phenocast.zones import file_digest as content_digest

STAGES = ("pretrain", "finetune", "refit", "predict", "postprocess", "report")
STAGE_FILE = "stage.json"
PREDICTION_KINDS = ("validation", "test", "forecast")
HEALTH_SAMPLES = 8  # validation samples whose forecasts measure the departure from the base every epoch
SAMPLE_PRIOR = "sample"  # train.init_from: start from the built-in sample's pre-trained network
PRIOR_RUN = "sample-prior"  # that network's run, under output.dir
PRIOR_CONFIG = DEFAULTS_PATH.parent / "sample.yaml"  # beside configs/default.yaml
PRIOR_OVERRIDES: tuple[str, ...] = ()  # --set values for that run (the tests shrink its world and network)
MEMBER_SEED_STEP = 100_003  # ensemble member k trains with seed + k × this (a large prime: no overlap)

# The config values each stage depends on (dotted prefixes) beyond those its samples are computed from
# (``dataset.input_settings``, which follows the base); ``IGNORED`` never changes a result.
COMMON_KEYS = ("seed", "train.mixed_precision", "train.jit_compile", "train.cpu_devices", "train.augment",
               "train.validation_samples")
STAGE_KEYS = {
    "pretrain": (*COMMON_KEYS, "data.zones", "train"),
    "finetune": (*COMMON_KEYS, "finetune"),
    "refit-pretrain": (*COMMON_KEYS, "data.zones", "train", "finetune.refit_through"),
    "refit": (*COMMON_KEYS, "finetune"),
    "predict": (*COMMON_KEYS, "predict"),
}
# (device data gives the same batches as tf.data up to float32 rounding)
IGNORED_KEYS = ("train.memory_growth", "train.profile_batches", "train.keep_epochs", "finetune.refit",
                "finetune.enabled", "train.ensemble", "train.device_data", "train.device_memory_share")


def stage_settings(config: Config, stage: str) -> dict[str, Any]:
    """The config values stage ``stage`` depends on, flat (``train.lr`` → value): its own
    (``STAGE_KEYS``) and those its samples are computed from (``dataset.input_settings``)."""
    from phenocast.dataset import input_settings

    prefixes = (*STAGE_KEYS[stage], *input_settings(config))
    return {key: value for key, value in flatten(config.to_dict()).items()
            if any(key == p or key.startswith(p + ".") for p in prefixes)
            and not any(key == p or key.startswith(p + ".") for p in IGNORED_KEYS)}


def file_digest(path: Path) -> str:
    """sha256 of a file (16 hex digits of ``zones.file_digest``)."""
    return content_digest(Path(path))[:16]


def host_memory() -> int:
    """The machine's physical memory in bytes."""
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# Config keys added after runs were made, each with the value that gives what such a run gave: a stage
# record without the key (made before it existed) counts as holding this value, so finished runs and the
# sample's pre-trained networks (``train.init_from: sample``) stay usable.
ADDED_KEYS = {"model.ridge_samples": 96, "model.centre_layers": False, "sequence.fill_missing": 0,
              "evaluate.damped_fill": False, "evaluate.damped_reference": "ema"}


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose values differ, with their values (``train.weight_decay 0.01 → 0.1``); a key of
    ``ADDED_KEYS`` missing from ``old`` has its value there."""
    return describe_changes({**{key: value for key, value in ADDED_KEYS.items() if key in new}, **old}, new)


class Pipeline:
    """A run: its config, zones, folders and stages."""

    def __init__(self, config: Config, zones: list[str] | None = None, log: Callable[[str], None] = print):
        from phenocast.cluster import worker
        from phenocast.preprocess import load_zone_records

        self.config = config
        self.log = log
        self.worker = worker()  # TF_CONFIG: a non-chief worker writes only to its private folder
        self.run_dir = config.run_dir if self.worker.chief else config.run_dir / self.worker.private_folder
        self.zones: list[Zone] = discover_zones(config.data.dir, config.data.zones, report=None)
        names = [zone.name for zone in self.zones]
        if zones:
            unknown = [name for name in zones if name not in names]
            if unknown:
                raise PhenocastError(f"--zones asks for {', '.join(unknown)}, not among the run's zones "
                                     f"({', '.join(names)}); check --zones and data.zones")
        self.targets = [name for name in names if not zones or name in zones]
        config.data.first_months(names)  # a {zone: month} mapping names every zone
        self.manifest, records = load_zone_records(config, names, zones=self.zones)
        check_trainable(records, config)
        # TensorFlow starts only now: missing or stale records and zones too short are refused without it
        import_tensorflow_quietly()
        from phenocast.dataset import zone_samples

        self.samples = {sample.name: sample for sample in zone_samples(records, config)}
        # the target zones that train and predict; a zone too short to train (origins.trainable) has no
        # sample, and postprocess forecasts it by the EMA alone
        self.trained = [name for name in self.targets if name in self.samples]
        if self.worker.chief:
            for line in shortened_notes(self.zones, config):
                log(line)
        if config.model.base == "damped":
            self.samples = {name: dataclasses.replace(sample, damped=self._damped_fit(name))
                            for name, sample in self.samples.items()}
        self.zone_index = {name: index for index, name in enumerate(names)}  # seeds do not depend on --zones
        self._compiled: dict[int, tuple] = {}  # schedule → (compiled model, its optimizer's initial state)
        self.member = 0  # the ensemble member whose stages run (train.ensemble)
        self._start_files: dict[int, Path] = {}  # train.init_from per member, resolved (``_init_file``)

    def _damped_fit(self, name: str):
        """The zone's damped baseline (``forecasters.saved_damped``: fitted once per run on the training period,
        the same fit the damped baseline is scored with, in ``baselines/<zone>-damped.json``)."""
        from phenocast.forecasters import saved_damped

        zone = next(zone for zone in self.zones if zone.name == name)
        return saved_damped(zone, self.config, self.run_dir, log=self.log)

    # ---- folders ------------------------------------------------------------------------------------
    @property
    def members(self) -> int:
        return self.config.train.ensemble

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: the single network's and an ensemble's member 0's (the same seed: growing
        ``train.ensemble`` keeps it), or ``checkpoints/member<k>/`` of member k ≥ 1."""
        folder = self.run_dir / "checkpoints"
        return folder / f"member{self.member}" if self.member > 0 else folder

    def each_member(self) -> Iterator[int]:
        """Make each ensemble member the current one in turn (``member``), then member 0 again."""
        try:
            for member in range(self.members):
                self.member = member
                yield member
        finally:
            self.member = 0

    def _name(self, stage_name: str) -> str:
        """A stage's log name: ``pretrain`` (the single network, an ensemble's member 0), or
        ``m<k>-pretrain`` for member k ≥ 1."""
        return f"m{self.member}-{stage_name}" if self.member > 0 else stage_name

    @property
    def seed(self) -> int:
        """The current member's seed (members differ by a large prime)."""
        return self.config.seed + MEMBER_SEED_STEP * self.member

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    def stage_folder(self, stage: str, zone: str | None = None) -> Path:
        """``checkpoints/pretrain``, ``checkpoints/finetune/<zone>``, ``checkpoints/refit-pretrain``,
        ``checkpoints/refit/<zone>``."""
        return self.checkpoints / stage if zone is None else self.checkpoints / stage / zone

    def selection_model(self, zone: str) -> Path:
        """The model chosen on validation for a zone: it predicts the validation and test periods."""
        if self.config.finetune.enabled:
            return self.stage_folder("finetune", zone) / "best.keras"
        return self.stage_folder("pretrain") / "best.keras"

    def submission_model(self, zone: str) -> Path:
        """The model that writes a zone's forecast: trained on every month with ``finetune.refit``."""
        if not self.config.finetune.refit:
            return self.selection_model(zone)
        if self.config.finetune.enabled:
            return self.stage_folder("refit", zone) / "best.keras"
        return self.stage_folder("refit-pretrain") / "best.keras"

    def model_path(self, zone: str, kind: str) -> Path:
        """The model that makes a zone's ``validation``, ``test`` or ``forecast`` predictions."""
        return self.submission_model(zone) if kind in ("forecast", REFIT_TEST) else self.selection_model(zone)

    def prediction_kinds(self) -> tuple[str, ...]:
        """validation, test, forecast, and with a refit that stops before the test period
        (``origins.measured_refit``) the test origins by that refit (``REFIT_TEST``)."""
        from phenocast.origins import measured_refit

        return (*PREDICTION_KINDS, REFIT_TEST) if measured_refit(self.config) else PREDICTION_KINDS

    # ---- running ------------------------------------------------------------------------------------
    def run(self, stages: tuple[str, ...] = STAGES, restart: str | None = None) -> None:
        """Run ``stages`` in order; ``restart`` first deletes that stage's outputs and every later one's
        (for the selected zones where a stage is per zone). With ``train.ensemble`` N, the training
        stages run member by member (each resumable on its own), and predict averages the members."""
        if restart is not None:
            for _ in self.each_member():
                self.restart(restart)
        training = [stage for stage in stages if stage in ("pretrain", "finetune", "refit")]
        for member in self.each_member():
            for stage in training:
                started = time.time()
                getattr(self, stage)()
                which = f" (member {member + 1} of {self.members})" if self.members > 1 else ""
                self.log(f"stage {stage}{which}: {time.time() - started:.1f} s")
        for stage in stages:
            if stage in training:
                continue
            if not self.worker.chief and stage in ("predict", "postprocess", "report"):
                self.log(f"stage {stage}: the chief's job (worker {self.worker.index} only trains), skipped")
                continue
            started = time.time()
            getattr(self, stage)()
            self.log(f"stage {stage}: {time.time() - started:.1f} s")

    def restart(self, stage: str) -> None:
        """Delete the outputs of ``stage`` and of every stage after it (checkpoints, logs, predictions)."""
        if stage not in STAGES:
            raise PhenocastError(f"expected --restart one of {', '.join(STAGES)}, got {stage!r}")
        later = STAGES[STAGES.index(stage):]
        folders: list[Path] = []
        names: list[str] = []
        if "pretrain" in later:
            folders.append(self.stage_folder("pretrain"))
            names.append(self._name("pretrain"))
        if "refit" in later:
            folders.append(self.stage_folder("refit-pretrain"))
            names.append(self._name("refit-pretrain"))
        for zone in self.targets:
            if "finetune" in later:
                folders.append(self.stage_folder("finetune", zone))
                names.append(self._name(f"finetune-{zone}"))
            if "refit" in later:
                folders.append(self.stage_folder("refit", zone))
                names.append(self._name(f"refit-{zone}"))
        if "predict" in later and self.member == 0:
            from phenocast.forecast import raw_path

            for zone in self.targets:
                for kind in (*PREDICTION_KINDS, REFIT_TEST):
                    raw_path(self.run_dir, zone, kind).unlink(missing_ok=True)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        for name in names:
            (self.logs / f"{name}.csv").unlink(missing_ok=True)
            shutil.rmtree(self.logs / "tensorboard" / name, ignore_errors=True)
        member = f" of member {self.member}" if self.members > 1 else ""
        self.log(f"restart {stage}{member}: removed the outputs of {', '.join(later)}"
                 + (f" for zone(s) {', '.join(self.targets)}" if len(self.targets) < len(self.zones) else ""))

    def _strategy(self):
        from phenocast.devices import configure_devices

        return configure_devices(self.config, self.log)

    def _records_inputs(self, zones: list[str]) -> dict[str, Any]:
        """What a stage's records are: the record settings and each zone's months and input files."""
        entries = self.manifest["zones"]
        return {"records": self.manifest["settings"],
                **{f"zone {name}": [entries[name]["first"], entries[name]["last"], entries[name]["inputs"]]
                   for name in zones}}

    def _init_file(self) -> Path | None:
        """The file pre-training starts from (``train.init_from``): a path, or for ``sample`` the built-in
        sample's pre-trained network (``sample_prior``, built on first use; ensemble member k starts from
        the one pre-trained with member k's seed, so the members do not share one draw of it); None
        without one."""
        value = self.config.train.init_from
        if not value:
            return None
        if self.member not in self._start_files:
            self._start_files[self.member] = (sample_prior(self.config, self.log, PRIOR_OVERRIDES, self.member)
                                              if value == SAMPLE_PRIOR else Path(value))
        start = self._start_files[self.member]
        if not start.is_file():
            raise PhenocastError(f"train.init_from: expected a .keras file of another run or {SAMPLE_PRIOR!r}, "
                                 f"found no file {value}; give the path of e.g. "
                                 f"outputs/<run>/checkpoints/pretrain/best.keras")
        return start

    def _init_inputs(self) -> dict[str, Any]:
        """The start model of pre-training (``train.init_from``), as a stage input."""
        path = self._init_file()
        return {} if path is None else {"start model": file_digest(path)}

    def _check_stage(self, folder: Path, name: str, stage: str, record: dict[str, Any]):
        """Return the finished result of a stage whose record matches, None to run it; refuse a stage
        that was made with other settings or inputs."""
        from phenocast.training import StageResult

        path = folder / STAGE_FILE
        if path.is_file():
            old = json.loads(path.read_text())
            changes = changed_keys(old.get("settings", {}), record["settings"]) + changed_keys(
                {f"inputs: {k}": v for k, v in old.get("inputs", {}).items()},
                {f"inputs: {k}": v for k, v in record["inputs"].items()})
            if changes:
                more = f" (and {len(changes) - 2} more)" if len(changes) > 2 else ""
                raise PhenocastError(
                    f"{name} in {folder} was made with other settings: {'; '.join(changes[:2])}{more}; "
                    f"rerun with --restart {stage} to rebuild it and what follows, or set a new output.name")
        elif folder.exists() and any(folder.iterdir()):
            raise PhenocastError(
                f"{name} in {folder} has no {STAGE_FILE} (made by an older phenocast or copied); rerun with "
                f"--restart {stage} to rebuild it, or set a new output.name")
        done = StageResult.load(folder)
        if done is not None:
            self.log(f"{name}: finished earlier (best epoch {done.best_epoch}), skipped")
            return done
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
        return None

    def _fit(self, name: str, stage: str, folder: Path, samples: list, kind: str, schedule, epochs: int,
             start: Path | None, seed: int, inputs: dict[str, Any], score_start: bool = False):
        """Build (or load ``start``) under the strategy, compile with ``schedule`` (its learning-rate
        curve spans ``schedule.epochs``) and fit ``epochs`` epochs on the ``kind`` origins of ``samples``.
        Training stages (``kind`` train) validate on the samples' validation period."""
        import keras

        from model.health import base_rmse
        from phenocast.dataset import training_dataset
        from phenocast.device_data import training_source
        from phenocast.devices import replicas
        from phenocast.training import HealthProbes, fit_stage

        name = self._name(name)
        record = {"settings": stage_settings(self.config, stage), "inputs": inputs}
        done = self._check_stage(folder, name, stage, record)
        if done is not None:
            return done
        keras.utils.set_random_seed(seed)
        strategy = self._strategy()
        batch = schedule.batch_size * replicas(strategy)
        model = self._compiled_model(strategy, schedule, start)
        validation_data, image_batch, initial = None, None, None
        health = HealthProbes(train=self._first_batch(training_dataset(samples, self.config, batch, seed, kind)))
        if kind == "train" and any(sample.origins("select") for sample in samples):
            validation_data = self._validation_data(samples, batch, replicas(strategy))
            health.validation = self._first_batch(validation_data, HEALTH_SAMPLES)
            image_batch = (health.validation[0][:4], health.validation[1][:4])
            health.base_rmse = base_rmse(validation_data, self.config.channel_slice("base"))
            if score_start or self._informed_start(start):
                initial = float(model.evaluate(validation_data, verbose=0, return_dict=True)["masked_rmse"])
                self.log(f"{name}: the starting weights score {initial:.5f} on validation (the base "
                         f"{health.base_rmse:.5f})")
        train_data, device_data = training_source(samples, self.config, batch, seed, kind, strategy)
        self.log(f"{name}: training data: {device_data.description if device_data else 'tf.data'}")
        with device_data.training(model) if device_data else contextlib.nullcontext():
            result = fit_stage(name, folder, self.logs, model, train_data, validation_data, schedule, epochs,
                               self.config, image_batch, self.log, initial_score=initial, health=health)
        save_config(self.config, folder / "config.resolved.yaml")
        return result

    @staticmethod
    def _first_batch(data, limit: int | None = None):
        """(inputs, y) numpy arrays of the first batch of a dataset, or of its first ``limit`` samples."""
        import numpy as np

        inputs, targets = [], []
        for x, y in data:
            inputs.append(x.numpy())
            targets.append(y.numpy())
            if limit is None or sum(len(batch) for batch in inputs) >= limit:
                break
        return np.concatenate(inputs)[:limit], np.concatenate(targets)[:limit]

    def _compiled_model(self, strategy, schedule, start: Path | None):
        """A model compiled with ``schedule``'s optimizer holding ``start``'s weights (new ones if None).

        Stages that start from a checkpoint (fine-tuning, refits of zones) share one compiled model per
        schedule: loading the weights and putting the optimizer back to its initial state trains exactly
        as a fresh model would, without tracing the training step again (seconds per zone).
        """

        import model as network
        from phenocast.training import learning_rate

        key = id(schedule)
        if start is not None and key in self._compiled:
            model, initial_state = self._compiled[key]
            model.set_weights(network.load_model(start).get_weights())
            for variable, value in zip(model.optimizer.variables, initial_state):
                variable.assign(value)
            return model
        with strategy.scope():
            model = network.load_model(start) if start is not None else network.build_model(self.config)
            if start is None and self.config.train.init_from:
                try:
                    network.initialise_from(model, self._init_file())
                except ValueError as error:
                    raise PhenocastError(f"train.init_from: {error}") from None
            elif start is None:
                self._set_input_statistics(model)
            if self._ridge_start(start):
                self._set_linear_path(model)
            rate = learning_rate(schedule, schedule.epochs * schedule.steps_per_epoch)
            network.compile_model(model, self.config, network.make_optimizer(model, rate, schedule.weight_decay))
        if start is not None:
            self._compiled[key] = (model, [variable.numpy() for variable in model.optimizer.variables])
        return model

    def _set_input_statistics(self, model) -> None:
        """Standardise the absolute input channels of a new network (``network.input_scaling``) with their
        mean and standard deviation over training samples of every zone; saved with the model."""
        import numpy as np

        import model as network
        from phenocast.dataset import channel_statistics

        _, _, channels = network.input_scaling(self.config)
        if not channels:
            return
        mean, std = channel_statistics(list(self.samples.values()), self.config, channels, self.config.seed)
        network.set_input_statistics(model, channels, mean, std)
        self.log(f"input statistics of {len(channels)} standardised channel(s) from training origins: mean "
                 f"{np.round(mean, 3).tolist()}, sd {np.round(std, 3).tolist()}")

    def _ridge_start(self, start: Path | None) -> bool:
        """Whether the stage's network starts its linear path at the ridge regression: a new network
        (no ``start`` checkpoint, no ``train.init_from``) with ``model.linear_path: ridge``."""
        return start is None and not self.config.train.init_from and self.config.model.linear_path == "ridge"

    def _informed_start(self, start: Path | None) -> bool:
        """Whether a new network starts from weights that already forecast (another run's, ``train.init_from``,
        or the ridge start): pre-training then scores the start on validation first, and keeps it (epoch 0)
        unless an epoch beats it."""
        return start is None and (bool(self.config.train.init_from) or self._ridge_start(start))

    def starting_model(self):
        """The network the current member's pre-training starts from, built as pre-training builds it (its
        seed, the input statistics, ``train.init_from`` or the ridge start), compiled: epoch 0 of a learning
        curve (``bench/learnability.py``), the model pre-training keeps when no epoch beats it."""
        import keras

        keras.utils.set_random_seed(self.seed)
        return self._compiled_model(self._strategy(), self.config.train, None)

    def _set_linear_path(self, model) -> None:
        """Start the linear path of a new network (``model.linear_path: ridge``) at the ridge regression of
        the residual (targets − base) on its features at each pixel: training origins of every zone, the
        penalty chosen on the select half of validation (``phenocast.ridge``)."""
        import numpy as np

        import model as network
        from phenocast.ridge import fit_zones

        samples = list(self.samples.values())
        if not any(sample.origins("select") for sample in samples):
            self.log("linear path: no zone has a validation origin to choose the ridge penalty on (data.val_months), "
                     "so it starts at zero")
            return
        features = network.linear_path_features(model)
        fit = fit_zones(samples, self.config, features_of=lambda inputs: features(inputs, training=False))
        network.set_linear_path(model, fit.kernel, fit.bias, self.config.model.value_scale)
        self.log(f"linear path: ridge regression of the residual on {fit.kernel.shape[0]} channel(s) at "
                 f"{fit.rows} pixel(s) of {self.config.model.ridge_samples} (window, origin) pair(s) of training "
                 f"origins, penalty {fit.penalty:g} chosen on the select half (validation RMSE "
                 f"{np.sqrt(fit.validation_mse):.5f})")

    def _validation_data(self, samples: list, batch: int, replica_count: int):
        """The validation batches that choose checkpoints and epochs: a fixed subset of
        ``train.validation_samples`` (window, origin) pairs of the *select* part of the validation period
        (``origins.validation_part``; the check part is left to the blend), assembled once: cached in host
        memory when they take at most a quarter of it, else in a file under the stage's run folder (the
        default's 128 samples of 288² × 10 years × 28 channels are ≈ 12 GB)."""
        import tensorflow as tf

        from phenocast.dataset import origin_dataset, shard_by_data, steps_in

        limit = self.config.train.validation_samples

        def select(zone):
            return zone.origins("select")

        count = steps_in(samples, select, limit, self.config.seed)
        data = origin_dataset(samples, self.config, select, limit=limit, seed=self.config.seed,
                              target_end_of=lambda s: s.target_end("validation"))
        if replica_count > 1 and count % batch:
            # mirrored evaluation needs full batches: pad with fully masked samples, which the
            # pixel-weighted validation RMSE ignores
            padding = data.take(1).map(lambda x, y: (tf.zeros_like(x), tf.zeros_like(y)))
            data = data.concatenate(padding.repeat(batch - count % batch))
            count += batch - count % batch
        data = data.batch(batch).apply(tf.data.experimental.assert_cardinality(-(-count // batch)))
        channels = self.config.input_channels + 2 * self.config.predict.horizon  # inputs and y
        sample_bytes = 4 * self.config.sequence.years * self.config.window ** 2 * channels
        if count * sample_bytes <= host_memory() / 4:
            return shard_by_data(data.cache())
        folder = self.run_dir / "cache"
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.lockfile"):  # left by a killed run: tf.data would refuse the cache
            stale.unlink()
        key = hashlib.sha256(json.dumps([stage_settings(self.config, "pretrain"), sorted(
            s.name for s in samples)], sort_keys=True, default=str).encode()).hexdigest()[:12]
        return shard_by_data(data.cache(str(folder / f"validation-{key}")))

    # ---- stages -------------------------------------------------------------------------------------
    def pretrain(self):
        """Pre-train on the training period of all zones pooled; choose the epoch on validation."""
        samples = list(self.samples.values())
        self.log(f"pretrain: {len(samples)} zone(s), "
                 f"{sum(s.records.records * len(s.train) for s in samples)} (window, origin) samples")
        return self._fit("pretrain", "pretrain", self.stage_folder("pretrain"), samples, "train",
                         self.config.train, self.config.train.epochs, None, self.seed,
                         {**self._records_inputs(list(self.samples)), **self._init_inputs()})

    def _finished(self, stage: str, zone: str | None = None):
        from phenocast.training import StageResult

        folder = self.stage_folder(stage, zone)
        result = StageResult.load(folder)
        if result is None:
            raise PhenocastError(f"expected the finished stage {folder}, found none; run python run.py "
                                 f"--stage {stage.replace('refit-pretrain', 'refit')} first")
        return result

    def finetune(self):
        """Fine-tune each target zone from the pre-trained weights; keep them where fine-tuning loses."""
        config = self.config
        if not config.finetune.enabled:
            self.log("finetune: disabled (finetune.enabled: false), zones use the pre-trained model")
            return
        self._finished("pretrain")
        pretrained = self.stage_folder("pretrain") / "best.keras"
        for name in self.trained:
            inputs = {**self._records_inputs([name]), "start model": file_digest(pretrained)}
            self._fit(f"finetune-{name}", "finetune", self.stage_folder("finetune", name), [self.samples[name]],
                      "train", config.finetune, config.finetune.epochs, pretrained,
                      self.seed + 1000 + self.zone_index[name], inputs, score_start=True)

    def refit(self):
        """Train the submission models on every month: the pre-training's start and schedule for its
        chosen epoch count, then each zone's fine-tuning for its chosen count."""
        from phenocast.training import StageResult

        config = self.config
        if not config.finetune.refit:
            self.log("refit: disabled (finetune.refit: false), the chosen models write the submission")
            return
        chosen = self._finished("pretrain")
        inputs = {**self._records_inputs(list(self.samples)), **self._init_inputs(), "epochs": chosen.best_epoch}
        self._fit("refit-pretrain", "refit-pretrain", self.stage_folder("refit-pretrain"),
                  list(self.samples.values()), "refit", config.train, chosen.best_epoch, None, self.seed, inputs)
        if not config.finetune.enabled:
            return
        start = self.stage_folder("refit-pretrain") / "best.keras"
        for name in self.trained:
            if StageResult.load(self.stage_folder("finetune", name)) is None:  # fan-out: refit the pooled model first
                self.log(f"refit-{name}: the zone is not fine-tuned yet, skipped (run --stage finetune,refit)")
                continue
            epochs = self._finished("finetune", name).best_epoch
            inputs = {**self._records_inputs([name]), "start model": file_digest(start), "epochs": epochs}
            self._fit(f"refit-{name}", "refit", self.stage_folder("refit", name), [self.samples[name]], "refit",
                      config.finetune, epochs, start, self.seed + 1000 + self.zone_index[name], inputs)

    def member_models(self, zone: str, kind: str) -> list[Path]:
        """The model files of every ensemble member for a zone's ``kind`` predictions."""
        return [self.model_path(zone, kind) for _ in self.each_member()]

    def predict(self):
        """Predict the validation and test origins (chosen model) and the forecast (submission model; with
        ``finetune.refit_through: validation`` also the test origins, to score the refit); an ensemble's
        prediction is the mean of its members' (window differences, before stitching)."""
        import model as network
        from phenocast.forecast import Forecaster, load_meta, predict_windows, raw_path, save_windows

        self._strategy()
        settings = stage_settings(self.config, "predict")
        # one traced graph per ensemble member, the weights of each model file loaded into it; the members
        # predict from the same assembled inputs, batch by batch (``predict_windows``)
        forecasters: list[Forecaster] = []
        loaded: list[Path] = []  # the model file whose weights each forecaster holds
        digests: dict[Path, str] = {}  # every zone and period of a member often read the same file
        for name in self.targets:
            if name not in self.trained:
                self.log(f"predict {name}: too short to train on, forecast by the EMA alone (postprocess)")
        for name in self.trained:
            sample = self.samples[name]
            for kind in self.prediction_kinds():
                origins = sample.origins("test" if kind == REFIT_TEST else kind)
                if not origins:
                    continue
                path = raw_path(self.run_dir, name, kind)
                model_files = self.member_models(name, kind)
                for model_file in model_files:
                    if not model_file.is_file():
                        raise PhenocastError(f"expected the model {model_file} for zone {name}, found none; "
                                             f"run the pretrain, finetune and refit stages first")
                models = [str(file.relative_to(self.run_dir)) for file in model_files]
                for file in model_files:
                    if file not in digests:
                        digests[file] = file_digest(file)
                meta = {"model": models[0] if len(models) == 1 else models,
                        "model_digest": [digests[file] for file in model_files] if len(models) > 1
                        else digests[model_files[0]], "origins": origins, "settings": settings}
                if path.is_file() and load_meta(path) == meta:
                    self.log(f"predict {name} ({kind}): up to date, skipped")
                    continue
                for member, model_file in enumerate(model_files):
                    if member == len(forecasters):
                        forecasters.append(Forecaster(network.load_model(model_file)))
                        loaded.append(model_file)
                    elif loaded[member] != model_file:
                        forecasters[member].model.set_weights(network.load_model(model_file).get_weights())
                        loaded[member] = model_file
                predictions = predict_windows(forecasters[:len(model_files)], sample, origins, self.config,
                                              tta=self.config.predict.tta)
                save_windows(predictions, path, meta)
                by = meta["model"] if len(models) == 1 else f"the mean of {len(models)} members"
                self.log(f"predict {name} ({kind}): {len(predictions.rows)} windows × {len(origins)} "
                         f"origin(s) by {by} → {path}")
        save_config(self.config, self.run_dir / "predictions" / "raw" / "config.resolved.yaml")

    def postprocess(self):
        """GeoTIFFs, submission.zip, scores.json (see ``phenocast.postprocess``)."""
        from phenocast.postprocess import run_postprocess

        return run_postprocess(self.config, self.zones, self.log)

    def report(self):
        """report.md and its figures (see ``phenocast.report``)."""
        from phenocast.report import write_report

        return write_report(self.config, self.zones, self.log)


def prior_config(config: Config, overrides: tuple[str, ...] = (), member: int = 0) -> Config:
    """The config of the sample's network that ``config``'s ensemble member ``member`` starts from
    (``sample_prior``): configs/sample.yaml with ``overrides``, the run's output folder, advection edge and
    centred layers, and the member's seed and run name; always one member (each prior is one draw).

    The run name says how the prior was made: ``-edge-<value>`` when the edge differs from sample.yaml's,
    ``-centred`` whenever its layers are centred (whatever sample.yaml says, so that a folder's name keeps
    meaning the same network when a shipped default changes), ``-member<k>`` for member k ≥ 1. Other input
    settings are sample.yaml's, ``sequence.fill_missing`` among them: the sample misses 0.1 % of its pixels,
    so a run that fills its own gaps starts from the same networks as one that does not."""
    from phenocast.config import load_config

    edge, centred = config.model.advection_edge, config.model.centre_layers
    shipped = load_config(PRIOR_CONFIG, overrides)
    name = PRIOR_RUN if shipped.model.advection_edge == edge else f"{PRIOR_RUN}-edge-{edge}"
    name = f"{name}-centred" if centred else name
    name = name if member == 0 else f"{name}-member{member}"
    return load_config(PRIOR_CONFIG, [*overrides, f"output.dir={config.output.dir}", f"output.name={name}",
                                      "finetune.refit=false", "train.init_from=null", f"model.advection_edge={edge}",
                                      f"model.centre_layers={str(centred).lower()}", "train.ensemble=1",
                                      f"seed={shipped.seed + MEMBER_SEED_STEP * member}"])


def sample_prior(config: Config, log: Callable[[str], None], overrides: tuple[str, ...] = (),
                 member: int = 0) -> Path:
    """``train.init_from: sample``: the network ``configs/sample.yaml`` pre-trains on the built-in synthetic
    sample (generated into its ``data.dir`` if missing), run into ``<output.dir>/sample-prior`` on first use
    and reused after (its finished stage is skipped); ``overrides`` are ``--set`` values for that run.
    For ensemble member k ≥ 1 the same run with its seed + k × ``MEMBER_SEED_STEP``, into
    ``<output.dir>/sample-prior-member<k>``. Its advection channels are computed as the run's are: a run
    whose ``model.advection_edge`` differs from sample.yaml's gets that network trained with the run's
    value, into ``sample-prior-edge-<value>`` (``…-member<k>``); a run with ``model.centre_layers`` gets it
    trained with centred layers, into ``…-centred`` (``prior_config``).

    Returns:
      Its ``checkpoints/pretrain/best.keras``.
    """
    from phenocast.preprocess import preprocess
    from phenocast.sample import ensure_sample

    prior = prior_config(config, overrides, member)
    name = prior.output.name
    ensure_sample(prior)

    def prefixed(message: str) -> None:
        log(f"{name}: {message}")

    preprocess(prior, progress=False, log=prefixed)  # skips records that are up to date
    run = Pipeline(prior, log=prefixed)
    best = run.stage_folder("pretrain") / "best.keras"
    if not best.is_file():
        log(f"train.init_from: sample: pre-training configs/sample.yaml on the built-in sample first, into "
            f"{prior.run_dir} (once; later runs reuse it)")
    run.pretrain()  # skipped when finished
    return best
