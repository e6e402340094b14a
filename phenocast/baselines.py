"""Baseline forecasts, vectorised numpy over whole zones, nodata-aware.

Every function takes a zone's int16 stack ``(months, height, width)`` (nodata already set to the fill
value, as ``phenocast.zones.read_zone`` returns it) and works in stored units (NDVI × scale) in float32,
one image at a time: no floating-point copy of the whole stack is made. Positions are 0-based indices
into the stack. A prediction is float32 ``(height, width)`` with NaN where the method has no value.

- persistence: the most recent valid value of each pixel.
- climatology, EMA (the original's), damped (the EMA, or a fitted weighted mean of earlier years, plus the
  origin month's anomaly, damped per lead):
  defined in ``phenocast.features``, where the model's features are defined too.
- per-pixel EMA: the EMA with α chosen per pixel from a grid, minimising the squared error of the
  EMA's one-year-ahead forecasts over the training months.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from phenocast.features import (  # noqa: F401 (re-exported: the baselines' own definitions)
    MONTHS_PER_YEAR,
    DampedFit,
    anomaly_features,
    as_float,
    climatology,
    damped,
    ema,
    ema_update,
    fit_damped,
    fit_damped_reference,
    same_month_positions,
)


def persistence(stack: np.ndarray, origin: int, fill_value: int) -> np.ndarray:
    """The most recent valid value at or before position ``origin``.

    Args:
      stack: int16 (months, height, width).
      origin: 0-based position of the forecast origin.

    Returns:
      float32 (height, width); NaN where the pixel was never valid.
    """
    out = np.full(stack.shape[1:], np.nan, dtype=np.float32)
    missing = np.ones(stack.shape[1:], dtype=bool)
    for position in range(origin, -1, -1):
        image = stack[position]
        found = missing & (image != fill_value)
        out[found] = image[found]
        missing &= ~found
        if not missing.any():
            break
    return out


def fit_alpha(stack: np.ndarray, end: int, fill_value: int, alpha_grid: Iterable[float],
              default_alpha: float) -> np.ndarray:
    """Per-pixel α of the EMA chosen by grid search on positions before ``end``.

    For every calendar month, the EMA of the earlier same-month images forecasts each image; the α with
    the smallest mean squared error of those forecasts wins. Pixels with no scored forecast keep
    ``default_alpha``.

    Returns:
      float32 (height, width).
    """
    grid = np.asarray(list(alpha_grid), dtype=np.float32)[:, None, None]  # (alphas, 1, 1)
    shape = (len(grid), *stack.shape[1:])
    squared_error = np.zeros(shape, dtype=np.float32)
    count = np.zeros(stack.shape[1:], dtype=np.int32)
    for calendar_month in range(min(MONTHS_PER_YEAR, end)):
        running = np.full(shape, np.nan, dtype=np.float32)  # (alphas, height, width)
        for position in range(calendar_month, end, MONTHS_PER_YEAR):
            image = as_float(stack[position], fill_value)
            scored = ~np.isnan(running[0]) & ~np.isnan(image)
            squared_error += np.where(scored, (running - image) ** 2, 0)
            count += scored
            running = ema_update(running, image, grid)
    best = grid[np.argmin(squared_error, axis=0), 0, 0]
    return np.where(count > 0, best, np.float32(default_alpha)).astype(np.float32)


def fill_gaps(prediction: np.ndarray, *fallbacks: np.ndarray) -> np.ndarray:
    """Fill NaN pixels of ``prediction`` from each fallback in turn (e.g. climatology, persistence)."""
    out = prediction.copy()
    for fallback in fallbacks:
        missing = np.isnan(out)
        if not missing.any():
            break
        out[missing] = fallback[missing]
    return out


BASELINES = ("persistence", "climatology", "ema", "ema_pixel", "damped")


def baseline_forecasts(stack: np.ndarray, origin: int, targets: list[int], fill_value: int,
                       ema_alpha: float, alpha_map: np.ndarray | None = None,
                       cache: dict | None = None, damped_fit: DampedFit | None = None,
                       smoothing: int = 5, fill: bool = False) -> dict[str, dict[int, np.ndarray]]:
    """Every baseline's forecast of the target positions from the history up to ``origin``.

    Each method's missing pixels fall back to climatology, then persistence, then the mean of the
    origin's persistence image, so that every method has a value wherever any history exists and all
    methods are scored on the same pixels.

    Args:
      stack: int16 (months, height, width).
      origin: 0-based position of the last month used.
      targets: positions to forecast, each with origin < target <= origin + 12.
      ema_alpha: α of the original EMA.
      alpha_map: per-pixel α (``fit_alpha``) for ``ema_pixel``; None skips that method.
      cache: a dict kept across calls on the same stack: the climatology and EMA of a target do not
        depend on the origin (see ``phenocast.features``), so backtests compute them once per target.
      damped_fit: φ of the ``damped`` baseline (``features.fit_damped``); None skips that method.
      smoothing: the box of the damped baseline's smoothed anomaly (``evaluate.damped_smoothing``).
      fill: a missing origin pixel's anomaly is its smoothed one (``evaluate.damped_fill``).

    Returns:
      {method: {target position: float32 (height, width)}}, stored units.
    """
    cache = {} if cache is None else cache

    def cached(name: str, target: int, compute) -> np.ndarray:
        if (name, target) not in cache:
            cache[name, target] = compute()
        return cache[name, target]

    last = persistence(stack, origin, fill_value)
    finite = last[np.isfinite(last)]
    constant = np.full_like(last, finite.mean() if finite.size else np.nan)
    forecasts: dict[str, dict[int, np.ndarray]] = {name: {} for name in BASELINES}
    if alpha_map is None:
        del forecasts["ema_pixel"]
    if damped_fit is None:
        del forecasts["damped"]
    else:  # the damped forecast's reference: the EMA, or the zone's weighted mean (damped_fit.beta)
        name = "ema" if damped_fit.beta is None else f"weighted_mean {damped_fit.beta}"

        def reference(position: int) -> np.ndarray:
            return cached(name, position, lambda: damped_fit.reference(stack, position, fill_value, ema_alpha))

        anomaly, smoothed = anomaly_features(stack, origin, fill_value, ema_alpha, smoothing, reference(origin), fill)
    for target in targets:
        if not origin < target <= origin + MONTHS_PER_YEAR:
            raise ValueError(f"target position {target} is not 1..12 months after origin {origin}")
        clim = fill_gaps(cached("climatology", target, lambda: climatology(stack, target, fill_value)),  # noqa: B023 (called at once)
                         last, constant)
        forecasts["persistence"][target] = fill_gaps(last, clim, constant)
        forecasts["climatology"][target] = clim
        raw_ema = cached("ema", target, lambda: ema(stack, target, fill_value, ema_alpha))  # noqa: B023
        forecasts["ema"][target] = fill_gaps(raw_ema, clim)
        if alpha_map is not None:
            raw_pixel = cached("ema_pixel", target, lambda: ema(stack, target, fill_value, alpha_map))  # noqa: B023
            forecasts["ema_pixel"][target] = fill_gaps(raw_pixel, clim)
        if damped_fit is not None:
            weights = damped_fit.weights(target - origin, target)
            forecasts["damped"][target] = fill_gaps(damped(reference(target), anomaly, smoothed, weights), clim)
    return forecasts
