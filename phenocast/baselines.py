"""Baseline forecasts, vectorised numpy over whole zones, nodata-aware.

Every function takes a zone's int16 stack ``(months, height, width)`` (nodata already set to the fill
value, as ``phenocast.zones.read_zone`` returns it) and works in stored units (NDVI × scale) in float32,
one image at a time: no floating-point copy of the whole stack is made. Positions are 0-based indices
into the stack; same calendar month = same position modulo 12. A prediction is float32
``(height, width)`` with NaN where the method has no value.

- persistence: the most recent valid value of each pixel.
- climatology: the mean of the valid values of the same calendar month in past years.
- EMA (the original's): over the same calendar month of past years, in order,
  ``out = first image; out = (1 - α)·out + α·image`` for every image (the first included again). A
  masked pixel keeps its running value; a pixel with no value yet starts at its first valid observation.
- per-pixel EMA: the same with α chosen per pixel from a grid, minimising the squared error of the
  EMA's one-year-ahead forecasts over the training months.

For a target month t and an origin o with t - 12 <= o < t (leads 1..12), the same-calendar-month images
at or before o are exactly those before t, so climatology and EMA forecasts depend on t only.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MONTHS_PER_YEAR = 12


def as_float(image: np.ndarray, fill_value: int) -> np.ndarray:
    """int16 image → float32 with NaN where it equals ``fill_value``."""
    values = image.astype(np.float32)
    values[image == fill_value] = np.nan
    return values


def same_month_positions(target: int, end: int | None = None) -> list[int]:
    """Positions before ``end`` (default ``target``) with the calendar month of ``target``, in order."""
    end = target if end is None else end
    return list(range(target % MONTHS_PER_YEAR, end, MONTHS_PER_YEAR))


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


def climatology(stack: np.ndarray, target: int, fill_value: int, end: int | None = None) -> np.ndarray:
    """Per-pixel mean of the valid values of ``target``'s calendar month at positions before ``end``.

    Returns:
      float32 (height, width); NaN where no value was valid.
    """
    total = np.zeros(stack.shape[1:], dtype=np.float32)
    count = np.zeros(stack.shape[1:], dtype=np.int32)
    for position in same_month_positions(target, end):
        image = stack[position]
        valid = image != fill_value
        total += np.where(valid, image, 0).astype(np.float32)
        count += valid
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def ema(stack: np.ndarray, target: int, fill_value: int, alpha: float | np.ndarray,
        end: int | None = None) -> np.ndarray:
    """The original's EMA over ``target``'s calendar month at positions before ``end``.

    Args:
      stack: int16 (months, height, width).
      target: position whose calendar month is averaged.
      alpha: a number, or float32 (height, width) per-pixel weights of the newest image.
      end: positions before it are used (default ``target``).

    Returns:
      float32 (height, width); NaN where no value was valid.
    """
    out = np.full(stack.shape[1:], np.nan, dtype=np.float32)
    alpha = np.asarray(alpha, dtype=np.float32)
    for position in same_month_positions(target, end):
        image = as_float(stack[position], fill_value)
        out = np.where(np.isnan(out), image, out)  # a pixel starts at its first valid observation
        out = np.where(np.isnan(image), out, (1 - alpha) * out + alpha * image)
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
            running = np.where(np.isnan(running), image, running)
            running = np.where(np.isnan(image), running, (1 - grid) * running + grid * image)
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


BASELINES = ("persistence", "climatology", "ema", "ema_pixel")


def baseline_forecasts(stack: np.ndarray, origin: int, targets: list[int], fill_value: int,
                       ema_alpha: float, alpha_map: np.ndarray | None = None,
                       cache: dict | None = None) -> dict[str, dict[int, np.ndarray]]:
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
        depend on the origin (see the module docstring), so backtests compute them once per target.

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
    return forecasts
