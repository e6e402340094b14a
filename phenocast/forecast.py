"""From a trained model to zone-sized forecasts: window predictions, their files, stitching, climatology.

``predict_windows`` runs a model over every window of a zone at given origins (optionally the 8
flips/rotations, test-time augmentation) and returns the predicted *differences* from the climatology
as of each origin. ``save_windows`` / ``load_windows`` keep them in ``predictions/raw/<zone>-<kind>.npz``
so that postprocessing (stitching mode, blending with a fallback) can be redone without the model.
``zone_forecast`` stitches a zone's windows (``phenocast.tiling.stitch``), averages augmentations and adds
the climatology as of the origin, computed from the zone's months with ``phenocast.baselines``: the
same definition the tf.data pipeline used to build the targets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phenocast import baselines
from phenocast.config import Config
from phenocast.io import atomic_path
from phenocast.tiling import Window, stitch, window_grid


@dataclass
class WindowPredictions:
    """A zone's predicted differences for some origins: (windows, origins, transforms, horizon, size, size)."""

    zone: str
    rows: np.ndarray  # (windows,) grid rows
    cols: np.ndarray  # (windows,) grid columns
    origins: np.ndarray  # (origins,) month indices
    differences: np.ndarray  # float32 (windows, origins, transforms, horizon, size, size)

    def mean(self) -> np.ndarray:
        """Average over transforms: (windows, origins, horizon, size, size)."""
        return self.differences.mean(axis=2)


class Forecaster:
    """A model's forecast of a batch under one flip/rotation, traced once for every batch size and transform
    (eager calls would run op by op; one graph per transform would trace eight times)."""

    def __init__(self, model):
        import tensorflow as tf

        from phenocast.dataset import dihedral, inverse_dihedral

        self.model = model

        # any batch size (the last batch of a zone is smaller): one trace, not one per batch shape
        signature = (tf.TensorSpec((None, *model.inputs[0].shape[1:]), model.inputs[0].dtype),
                     tf.TensorSpec((), tf.int32))

        @tf.function(input_signature=signature)
        def forecast(inputs, transform):
            output = model(dihedral(inputs, transform), training=False)  # the forecast alone
            if len(output.shape) == 5:  # per-year outputs: the last step is the forecast
                output = output[:, -1]
            return inverse_dihedral(tf.cast(output, tf.float32), transform)  # (batch, size, size, horizon)

        self.function = forecast

    def __call__(self, inputs, transform: int):
        import tensorflow as tf

        return self.function(inputs, tf.constant(transform, tf.int32))


def predict_windows(model, zone, origins: list[int], config: Config, tta: bool = False,
                    batch_size: int | None = None) -> WindowPredictions:
    """Predict every window of ``zone`` (a ``dataset.ZoneSamples``) at each origin.

    Args:
      model: a Keras model built by ``model.build_model``, or its ``Forecaster`` (reused across calls), or a
        list of them (an ensemble: the mean of their predictions, each batch's inputs assembled once for all).
      origins: origin month indices.
      tta: also predict the 7 other flips/rotations (undone before saving).

    Returns:
      The zone's ``WindowPredictions``.
    """
    import tensorflow as tf

    from phenocast.dataset import TRANSFORMS, origin_dataset

    members = model if isinstance(model, (list, tuple)) else [model]
    forecasters = [member if isinstance(member, Forecaster) else Forecaster(member) for member in members]
    batch_size = batch_size or config.predict.batch_size
    transforms = list(range(TRANSFORMS)) if tta else [0]
    dataset = origin_dataset([zone], config, lambda _: origins, with_targets=False)
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    horizon, size = config.predict.horizon, config.window
    predictions: dict[tuple[int, int], dict[int, np.ndarray]] = {}
    for inputs, (_, rows, cols, batch_origins) in dataset:
        stacked = None  # the members' sum, in member order: (batch, transforms, size, size, horizon)
        for forecaster in forecasters:
            member = np.stack([forecaster(inputs, transform).numpy() for transform in transforms], axis=1)
            stacked = member if stacked is None else stacked + member
        for index in range(stacked.shape[0]):
            key = (int(rows[index]), int(cols[index]))
            predictions.setdefault(key, {})[int(batch_origins[index])] = stacked[index]
    keys = sorted(predictions)
    differences = np.zeros((len(keys), len(origins), len(transforms), horizon, size, size), np.float32)
    for w, key in enumerate(keys):
        for o, origin in enumerate(origins):
            differences[w, o] = np.moveaxis(predictions[key][origin], -1, 1)  # (transforms, horizon, h, w)
    differences /= len(forecasters)
    return WindowPredictions(zone.name, np.array([k[0] for k in keys]), np.array([k[1] for k in keys]),
                             np.asarray(origins, dtype=np.int64), differences)


REFIT_TEST = "refit-test"  # the test origins predicted by a refit that stopped before them (origins.measured_refit)


def raw_path(run_dir: Path, zone: str, kind: str) -> Path:
    """``<run>/predictions/raw/<zone>-<kind>.npz`` (kind: validation, test or forecast)."""
    return Path(run_dir) / "predictions" / "raw" / f"{zone}-{kind}.npz"


def save_windows(predictions: WindowPredictions, path: Path, meta: dict | None = None) -> Path:
    """Write window predictions atomically (npz, the same bytes for the same values), with ``meta``
    (what made them: model file and digest, origins, settings) as JSON."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, zone=np.array(predictions.zone), rows=predictions.rows, cols=predictions.cols,
                 origins=predictions.origins, differences=predictions.differences,
                 meta=np.array(json.dumps(meta or {}, sort_keys=True)))
    return path


def load_windows(path: Path) -> WindowPredictions:
    with np.load(path) as archive:
        return WindowPredictions(str(archive["zone"]), archive["rows"], archive["cols"], archive["origins"],
                                 archive["differences"])


def load_meta(path: Path) -> dict:
    """The ``meta`` a prediction file was saved with ({} for files without)."""
    with np.load(path) as archive:
        return json.loads(str(archive["meta"])) if "meta" in archive.files else {}


def stitch_differences(predictions: WindowPredictions, shape: tuple[int, int], config: Config,
                       mode: str = "centre") -> np.ndarray:
    """Stitch the windows into zone-sized differences.

    Returns:
      float32 (origins, horizon, height, width), averaged over transforms.
    """
    grid = window_grid(*shape, config.tiling.centre, config.tiling.margin)
    means = predictions.mean()  # (windows, origins, horizon, size, size)
    by_position = {(int(r), int(c)): means[i] for i, (r, c) in enumerate(zip(predictions.rows,
                                                                               predictions.cols))}
    windows: list[tuple[Window, np.ndarray]] = []
    for window in grid.windows:
        if (window.row, window.col) not in by_position:
            raise ValueError(f"window ({window.row}, {window.col}) of zone {predictions.zone} has no "
                             f"prediction: rerun run.py --stage predict")
        windows.append((window, by_position[window.row, window.col]))
    return stitch(grid, windows, mode=mode)


def add_climatology(differences: np.ndarray, stack: np.ndarray, origin_position: int, config: Config
                    ) -> np.ndarray:
    """Differences of the months after an origin → stored units (NDVI × scale).

    Args:
      differences: (horizon, height, width) in NDVI units.
      stack: int16 (months, height, width), the zone's history; only positions <= origin_position are used.
      origin_position: 0-based position of the origin.

    Returns:
      float32 (horizon, height, width); NaN where the climatology of that calendar month is undefined.
    """
    out = np.empty(differences.shape, dtype=np.float32)
    for lead_index in range(differences.shape[0]):
        target = origin_position + 1 + lead_index
        climatology = baselines.climatology(stack, target, config.data.fill_value, end=origin_position + 1)
        out[lead_index] = climatology + differences[lead_index] * config.data.scale
    return out
