"""The stages of ``run.py``: pretrain → finetune → predict → postprocess → report, each resumable.

Everything goes to ``<output.dir>/<output.name>/``:

- ``config.resolved.yaml``;
- ``checkpoints/pretrain/`` (all zones pooled), ``checkpoints/finetune/<zone>/`` (each zone from the
  pre-trained weights with the ``finetune`` schedule), ``checkpoints/refit/<zone>/`` (``finetune.refit``:
  from the pre-trained weights on all months, validation included, for the best fine-tuning epoch count);
- ``logs/`` (CSV and TensorBoard per stage);
- ``predictions/raw/<zone>-{validation,forecast}.npz`` (window predictions), ``predictions/<zone>-<NNN>.tif``,
  ``submission.zip``, ``scores.json``, ``report.md``.

A stage or zone already finished is skipped and reported. ``zones`` (``--zones``) restricts finetune and
predict to a subset, so zones can be fanned out over processes, GPUs or machines once ``pretrain`` is
done; ``postprocess`` and ``report`` then gather every zone that has predictions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from phenocast.config import Config, save_config
from phenocast.errors import PhenocastError
from phenocast.zones import Zone, discover_zones

STAGES = ("pretrain", "finetune", "predict", "postprocess", "report")


class Pipeline:
    """A run: its config, zones, folders and stages."""

    def __init__(self, config: Config, zones: list[str] | None = None, log: Callable[[str], None] = print):
        from phenocast.dataset import zone_samples
        from phenocast.preprocess import load_zone_records

        self.config = config
        self.log = log
        self.run_dir = config.run_dir
        self.zones: list[Zone] = discover_zones(config.data.dir, config.data.zones, report=None)
        names = [zone.name for zone in self.zones]
        if zones:
            unknown = [name for name in zones if name not in names]
            if unknown:
                raise PhenocastError(f"--zones asks for {', '.join(unknown)}, not among the run's zones "
                                     f"({', '.join(names)}); check --zones and data.zones")
        self.targets = [name for name in names if not zones or name in zones]
        _, records = load_zone_records(config, names)
        self.samples = {sample.name: sample for sample in zone_samples(records, config)}
        self.refit_samples = ({sample.name: sample for sample in zone_samples(records, config, refit=True)}
                              if config.finetune.refit else {})

    # ---- folders ------------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    def model_path(self, zone: str, purpose: str) -> Path:
        """The model that makes a zone's ``validation`` or ``forecast`` predictions."""
        if purpose == "forecast" and self.config.finetune.refit:
            return self.checkpoints / "refit" / zone / "best.keras"
        if self.config.finetune.enabled:
            return self.checkpoints / "finetune" / zone / "best.keras"
        return self.checkpoints / "pretrain" / "best.keras"

    # ---- stages -------------------------------------------------------------------------------------
    def run(self, stages: tuple[str, ...] = STAGES) -> None:
        save_config(self.config, self.run_dir / "config.resolved.yaml")
        for stage in stages:
            started = time.time()
            getattr(self, stage)()
            self.log(f"stage {stage}: {time.time() - started:.1f} s")

    def _strategy(self):
        from phenocast.devices import configure_devices

        return configure_devices(self.config, self.log)

    def _fit(self, name: str, folder: Path, samples: list, schedule, epochs: int, initial: Path | None,
             validation: bool, seed: int):
        """Build or load a model under the strategy, compile it with ``schedule`` and fit it."""
        import keras
        import tensorflow as tf

        import model as network
        from phenocast.dataset import origin_dataset, steps_in, training_dataset
        from phenocast.devices import replicas
        from phenocast.training import StageResult, fit_stage, learning_rate

        done = StageResult.load(folder)
        if done is not None:
            self.log(f"{name}: finished earlier (best epoch {done.best_epoch}), skipped")
            return done
        keras.utils.set_random_seed(seed)
        strategy = self._strategy()
        batch = schedule.batch_size * replicas(strategy)
        with strategy.scope():
            model = network.load_model(initial) if initial is not None else network.build_model(self.config)
            optimizer = keras.optimizers.Adam(learning_rate(schedule, epochs * schedule.steps_per_epoch))
            network.compile_model(model, self.config, optimizer)
        train_data = training_dataset(samples, self.config, batch, seed, cache=self.config.train.cache)
        validation_data, image_batch = None, None
        if validation and any(sample.validation for sample in samples):
            limit = self.config.train.validation_samples
            count = steps_in(samples, lambda s: s.validation, limit, self.config.seed)
            validation_data = origin_dataset(samples, self.config, lambda s: s.validation, limit=limit,
                                             seed=self.config.seed)
            if replicas(strategy) > 1 and count % batch:
                # mirrored evaluation needs full batches: pad with fully masked samples, which the
                # pixel-weighted validation RMSE ignores
                padding = validation_data.take(1).map(lambda x, y: (tf.zeros_like(x), tf.zeros_like(y)))
                validation_data = validation_data.concatenate(padding.repeat(batch - count % batch))
                count += batch - count % batch
            validation_data = validation_data.batch(batch).apply(
                tf.data.experimental.assert_cardinality(-(-count // batch)))  # Keras then knows its length
            sample_bytes = 4 * self.config.sequence.years * self.config.window ** 2 * self.config.input_channels
            if count * sample_bytes < 1e9:
                validation_data = validation_data.cache()
            inputs, y = next(iter(validation_data.take(1)))
            image_batch = (inputs.numpy()[:4], y.numpy()[:4])
        return fit_stage(name, folder, self.logs, model, train_data, validation_data, schedule, epochs,
                         self.config, image_batch, self.log)

    def pretrain(self):
        """Pre-train on all zones pooled."""
        samples = list(self.samples.values())
        self.log(f"pretrain: {len(samples)} zone(s), "
                 f"{sum(s.records.records * len(s.train) for s in samples)} (window, origin) samples")
        return self._fit("pretrain", self.checkpoints / "pretrain", samples, self.config.train,
                         self.config.train.epochs, None, True, self.config.seed)

    def _pretrained(self) -> Path:
        path = self.checkpoints / "pretrain" / "best.keras"
        if not path.is_file():
            raise PhenocastError(f"expected the pre-trained model {path}, found none; run "
                                 f"python run.py --stage pretrain first")
        return path

    def finetune(self):
        """Fine-tune each target zone from the pre-trained weights (and refit, if configured)."""
        config = self.config
        if not config.finetune.enabled:
            self.log("finetune: disabled (finetune.enabled: false), zones use the pre-trained model")
            return
        pretrained = self._pretrained()
        for index, name in enumerate(self.targets):
            sample = self.samples[name]
            result = self._fit(f"finetune-{name}", self.checkpoints / "finetune" / name, [sample],
                               config.finetune, config.finetune.epochs, pretrained, True,
                               config.seed + 1000 + index)
            if config.finetune.refit:
                epochs = max(1, result.best_epoch)
                self._fit(f"refit-{name}", self.checkpoints / "refit" / name, [self.refit_samples[name]],
                          config.finetune, epochs, pretrained, False, config.seed + 2000 + index)

    def predict(self):
        """Predict the validation origins and the forecast of each target zone (window level)."""
        import model as network
        from phenocast.forecast import predict_windows, raw_path, save_windows

        self._strategy()
        for name in self.targets:
            sample = self.samples[name]
            for kind, origins in (("validation", sample.validation), ("forecast", [sample.forecast])):
                if not origins:
                    continue
                path = raw_path(self.run_dir, name, kind)
                model_file = self.model_path(name, kind)
                if not model_file.is_file():
                    raise PhenocastError(f"expected the model {model_file} for zone {name}, found none; "
                                         f"run the pretrain and finetune stages first")
                if path.is_file() and path.stat().st_mtime >= model_file.stat().st_mtime:
                    self.log(f"predict {name} ({kind}): up to date, skipped")
                    continue
                predictions = predict_windows(network.load_model(model_file), sample, origins, self.config,
                                              tta=self.config.predict.tta)
                save_windows(predictions, path)
                self.log(f"predict {name} ({kind}): {len(predictions.rows)} windows × {len(origins)} "
                         f"origin(s) → {path}")

    def postprocess(self):
        """GeoTIFFs, submission.zip, scores.json (see ``phenocast.postprocess``)."""
        from phenocast.postprocess import run_postprocess

        return run_postprocess(self.config, self.zones, self.log)

    def report(self):
        """report.md and its figures (see ``phenocast.report``)."""
        from phenocast.report import write_report

        return write_report(self.config, self.zones, self.log)
