"""Per-pixel ridge regression of the forecast's residual on the network's features.

The linear path of the network (``model.linear_path: ridge``) starts at the least-squares map from each
pixel's features (the scaled input channels and the advection channels, ``model.linear_path_features``)
to the residual the network must add to its base (targets − base, one column per lead); the
learnability bench fits the same regression on the raw input channels as its reference. One definition
of both here:

- ``pixel_table``: features and residual targets at the valid pixels (every lead valid) of a fixed
  random subset of ``model.ridge_samples`` (window, origin) pairs, the last year-step, at most ``pixels``
  rows (each pair gives at most ``pixels // samples`` of its pixels);
- ``fit_ridge``: the features standardised, the intercept not shrunk, the penalty (× the mean diagonal of
  XᵀX) of ``PENALTIES`` that gives the smallest mean squared error on a second table (validation);
- ``fit_zones``: both tables as the project draws them, training origins to fit and the select half of
  validation to choose the penalty, then ``fit_ridge``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from phenocast.config import Config
from phenocast.dataset import ZoneSamples, origin_dataset

PIXELS = 200_000  # rows kept per table (a random subset of the valid pixels, fixed by the seed); model.ridge_samples
# is at most PIXELS // 2 (phenocast/config.py), so every pair keeps at least two of its pixels
PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # × the mean diagonal of XᵀX
BATCH = 16  # samples per call of ``features_of``


@dataclass(frozen=True)
class RidgeFit:
    """``targets ≈ features · kernel + bias``: kernel (channels, horizon), bias (horizon,)."""

    kernel: np.ndarray
    bias: np.ndarray
    penalty: float
    validation_mse: float
    rows: int


def pixel_table(zones: list[ZoneSamples], config: Config, origins_of: Callable[[ZoneSamples], list[int]],
                target_end: str, seed: int, features_of: Callable[[np.ndarray], np.ndarray] | None = None,
                residual: bool = True, pixels: int = PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Features (rows, channels) and targets (rows, horizon), float64, at the valid pixels of
    ``model.ridge_samples`` (window, origin) pairs of ``origins_of(zone)`` (targets up to
    ``zone.target_end(target_end)``).

    Args:
      features_of: a batch of inputs ``(batch, years, size, size, channels)`` → features whose last
        ``batch`` entries are the last year-step's ``(batch, size, size, C)`` (year-major folded years, or the
        last year alone); default: the raw input channels of the last year-step.
      residual: targets minus the base channels (the network's residual), else the targets.
    """
    horizon = config.predict.horizon
    base = config.channel_slice("base")
    samples = config.model.ridge_samples
    data = origin_dataset(zones, config, origins_of, limit=samples, seed=seed, centre_only=False,
                          target_end_of=lambda zone: zone.target_end(target_end))
    rng = np.random.default_rng(seed)
    features, targets = [], []
    for inputs, y in data.batch(BATCH):
        inputs, y = inputs.numpy(), y.numpy()
        count = len(inputs)
        values = inputs[:, -1] if features_of is None else np.asarray(features_of(inputs))[-count:]
        y = y[:, -1] if y.ndim == 5 else y  # (batch, size, size, 2·horizon): the last year-step
        wanted = y[..., :horizon] - (inputs[:, -1, ..., base[0]:base[1]] if residual and base else 0.0)
        for index in range(count):
            rows = np.flatnonzero((y[index, ..., horizon:] > 0.5).all(axis=-1).ravel())
            if len(rows) > pixels // samples:
                rows = np.sort(rng.choice(rows, pixels // samples, replace=False))
            features.append(values[index].reshape(-1, values.shape[-1])[rows])
            targets.append(wanted[index].reshape(-1, horizon)[rows])
    if not sum(len(part) for part in features):
        raise ValueError("no valid pixel to fit the ridge regression on")
    return np.concatenate(features).astype(np.float64), np.concatenate(targets).astype(np.float64)


def fit_ridge(train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray],
              penalties: tuple[float, ...] = PENALTIES) -> RidgeFit:
    """The ridge regression of ``train``'s targets on its features with the penalty that scores best on
    ``validation`` (mean squared error over rows and leads)."""
    train_x, train_y = train
    valid_x, valid_y = validation
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std[std < 1e-9] = 1.0  # a constant feature: only centred (its weight is shrunk to 0)
    design = np.hstack([(train_x - mean) / std, np.ones((len(train_x), 1))])
    check = np.hstack([(valid_x - mean) / std, np.ones((len(valid_x), 1))])
    gram, moment = design.T @ design, design.T @ train_y
    scale = np.trace(gram) / len(gram)
    best = None
    for penalty in penalties:
        regulariser = penalty * scale * np.eye(len(gram))
        regulariser[-1, -1] = 0.0  # the intercept is not shrunk
        weights = np.linalg.solve(gram + regulariser, moment)
        error = float(np.mean((check @ weights - valid_y) ** 2))
        if best is None or error < best[0]:
            best = (error, penalty, weights)
    error, penalty, weights = best
    kernel = weights[:-1] / std[:, None]  # on raw features: (x − mean)/std · w + b
    bias = weights[-1] - (mean / std) @ weights[:-1]
    return RidgeFit(kernel, bias, penalty, error, len(train_x))


def fit_zones(zones: list[ZoneSamples], config: Config, features_of: Callable[[np.ndarray], np.ndarray] | None = None,
              residual: bool = True) -> RidgeFit:
    """The ridge regression fitted on pixels of the zones' training origins (seed ``config.seed``), its
    penalty chosen on the select half of validation (``config.seed + 1``); arguments as ``pixel_table``'s."""

    def table(kind: str, target_end: str, seed: int):
        return pixel_table(zones, config, lambda zone: zone.origins(kind), target_end, seed, features_of, residual)

    return fit_ridge(table("train", "train", config.seed), table("select", "validation", config.seed + 1))
