"""Realism statistics of any zone (int16 stack): how its NDVI anomalies vary, and how forecastable they are
beyond the EMA, to compare the synthetic zones with real MODIS and GIMMS zones.

- ``realism_statistics``: anomaly SD, lag-1 autocorrelation, spatial correlations at 5 and 20 pixels
  (anomaly = NDVI − the pixel's mean of that calendar month over all years).
- ``forecastability_statistics``: a backtest of the damped-anomaly baseline of ``phenocast.features``
  against the EMA on the zone's last ``scored_months`` months (φ fitted on the months before them), the
  fitted φ, and the best global EMA α.
"""

from __future__ import annotations

import math

import numpy as np

from phenocast import features
from phenocast.origins import fitting_images
from phenocast.synthetic.world import FILL_VALUE, SCALE, VALID_RANGE

MONTHS_PER_YEAR = 12
SPATIAL_OFFSETS = (5, 20)  # pixels: spatial correlations at these distances along rows and columns
MIN_YEARS = 2  # a pixel's calendar month needs this many valid values to have an anomaly
SCORED_MONTHS = 24  # the last two years score (the test period of configs/default.yaml)
HORIZON = 3  # leads 1..3
EMA_ALPHA = 0.4  # the competition's α (``evaluate.ema_alpha``)
SMOOTHING = 5  # pixels: the damped baseline's box (``evaluate.damped_smoothing``)
ALPHA_GRID = tuple(round(0.05 * step, 2) for step in range(1, 20))  # 0.05, 0.10, …, 0.95


def _valid(image: np.ndarray, fill_value: int, valid_range: tuple[int, int]) -> np.ndarray:
    low, high = valid_range
    return (image != fill_value) & (image >= low) & (image <= high)


def realism_statistics(stack: np.ndarray, fill_value: int = FILL_VALUE,
                       valid_range: tuple[int, int] = VALID_RANGE, scale: float = SCALE) -> dict[str, float]:
    """Statistics of a zone's NDVI anomalies, to compare a zone with real MODIS zones.

    The anomaly is NDVI minus the pixel's mean of the same calendar month (position mod 12) over all its
    years (pixels with fewer than ``MIN_YEARS`` valid values of that calendar month are left out).
    Correlations are Pearson correlations pooled over all valid pairs: of a pixel with itself a month
    later, and of pixels 5 and 20 pixels apart along rows and along columns in the same month.

    Args:
      stack: int16 (months, height, width); nodata = ``fill_value`` or outside ``valid_range`` (gap months
        all fill).

    Returns:
      {"anomaly_sd", "lag1_autocorrelation", "spatial_correlation_5", "spatial_correlation_20"}; NaN
      where there is no valid pair.
    """
    months, height, width = stack.shape
    total = np.zeros((MONTHS_PER_YEAR, height, width), dtype=np.float32)  # (calendar months, h, w)
    count = np.zeros((MONTHS_PER_YEAR, height, width), dtype=np.int32)
    for position in range(months):
        valid = _valid(stack[position], fill_value, valid_range)
        total[position % MONTHS_PER_YEAR] += np.where(valid, stack[position], 0).astype(np.float32)
        count[position % MONTHS_PER_YEAR] += valid
    mean = total / np.maximum(count, 1)
    keys = ("sd", "lag1", *(str(offset) for offset in SPATIAL_OFFSETS))
    sums = {key: np.zeros(6) for key in keys}  # n, Σx, Σy, Σx², Σy², Σxy

    def add(key: str, first: np.ndarray, second: np.ndarray) -> None:
        sums[key] += [first.size, first.sum(dtype=np.float64), second.sum(dtype=np.float64),
                      np.dot(first, first), np.dot(second, second), np.dot(first, second)]

    previous = previous_valid = None
    for position in range(months):
        calendar_month = position % MONTHS_PER_YEAR
        valid = _valid(stack[position], fill_value, valid_range) & (count[calendar_month] >= MIN_YEARS)
        anomaly = (stack[position].astype(np.float32) - mean[calendar_month]) / np.float32(scale)
        add("sd", anomaly[valid], anomaly[valid])
        if previous is not None:
            both = valid & previous_valid
            add("lag1", previous[both], anomaly[both])
        for offset in SPATIAL_OFFSETS:
            both = valid[offset:, :] & valid[:-offset, :]
            add(str(offset), anomaly[offset:, :][both], anomaly[:-offset, :][both])
            both = valid[:, offset:] & valid[:, :-offset]
            add(str(offset), anomaly[:, offset:][both], anomaly[:, :-offset][both])
        previous, previous_valid = anomaly, valid

    def correlation(key: str) -> float:
        n, sum_x, sum_y, sum_xx, sum_yy, sum_xy = sums[key]
        if n < 2:
            return float("nan")
        covariance = sum_xy / n - sum_x / n * sum_y / n
        variance = (sum_xx / n - (sum_x / n) ** 2) * (sum_yy / n - (sum_y / n) ** 2)
        return float(covariance / math.sqrt(variance)) if variance > 0 else float("nan")

    n, sum_x, _, sum_xx, _, _ = sums["sd"]
    sd = math.sqrt(max(sum_xx / n - (sum_x / n) ** 2, 0.0)) if n else float("nan")
    return {"anomaly_sd": sd, "lag1_autocorrelation": correlation("lag1"),
            **{f"spatial_correlation_{offset}": correlation(str(offset)) for offset in SPATIAL_OFFSETS}}


def forecastability_statistics(stack: np.ndarray, fill_value: int = FILL_VALUE,
                               valid_range: tuple[int, int] = VALID_RANGE, scale: float = SCALE,
                               scored_months: int = SCORED_MONTHS, horizon: int = HORIZON,
                               alpha: float = EMA_ALPHA, smoothing: int = SMOOTHING,
                               alpha_grid: tuple[float, ...] = ALPHA_GRID) -> dict[str, float]:
    """How much a zone's anomalies forecast beyond the EMA: a backtest on its last ``scored_months``.

    With M months (position p = month p + 1) and E = M − ``scored_months``: φ of the damped anomaly
    (``features.fit_damped``, pooled over calendar months) is fitted on ``origins.fitting_images(1, E,
    horizon)`` (targets ≤ E, a year of history); the scored images are origins E .. M − 1, leads 1 ..
    ``horizon`` with targets ≤ M. An image scores the pixels with valid truth and an EMA (every method
    the same pixels); an aggregate is the root of the mean image MSE (``phenocast.metrics``).

    Args:
      stack: int16 (months, height, width); nodata = ``fill_value`` or outside ``valid_range`` (gap
        months all fill).
      alpha, smoothing: the EMA's α and the damped baseline's box.
      alpha_grid: the global α tried for ``best_alpha``.

    Returns:
      {"damped_ratio_<h>": damped RMSE / EMA RMSE at lead h, "anomaly_weight_<h>", "smoothed_weight_<h>":
      the fitted φ₁ (of a_o) and φ₂ (of smooth(a_o)) at lead h, "ema_rmse": the EMA's RMSE (NDVI) over
      all scored images, "best_alpha": the α of ``alpha_grid`` with the lowest RMSE over them}; NaN where
      a lead has no scored image.
    """
    months = len(stack)
    end = months - scored_months  # E: the last month a fitted target may be
    fitted = [(origin - 1, lead) for origin, lead in fitting_images(1, end, horizon)]  # 0-based origins
    if scored_months < 1 or not fitted:
        raise ValueError(
            f"expected a stack with more than {scored_months} scored months plus {MONTHS_PER_YEAR + 1} months "
            f"to fit on, got {months} months; lower scored_months or pass a longer stack")
    valid_all = (stack >= valid_range[0]) & (stack <= valid_range[1])
    if not np.array_equal(valid_all, stack != fill_value):
        stack = np.where(valid_all, stack, fill_value).astype(stack.dtype)  # out of range → nodata
    fit = features.fit_damped(stack, fitted, fill_value, alpha, smoothing, horizon)
    leads_of = {target: [target - origin for origin in range(max(end - 1, target - horizon), target)]
                for target in range(end, months)}  # scored target position → its leads

    def mse(prediction: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
        difference = (prediction[valid].astype(np.float64) - truth[valid]) / scale
        return float(np.mean(difference ** 2))

    errors: dict[tuple[str, int], list[float]] = {(method, lead): [] for method in ("ema", "damped")
                                                  for lead in range(1, horizon + 1)}
    features_of: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # origin position → (a_o, smooth(a_o))
    running = [np.full(stack.shape[1:], np.nan, np.float32) for _ in range(MONTHS_PER_YEAR)]
    for position in range(months):  # one pass with the running EMA of each calendar phase at α
        phase = position % MONTHS_PER_YEAR
        image = features.as_float(stack[position], fill_value)
        target_ema = running[phase]  # EMA(position): earlier years of the same phase only
        for lead in leads_of.get(position, ()):
            valid = np.isfinite(image) & np.isfinite(target_ema)
            if valid.any():
                anomaly, smoothed = features_of[position - lead]
                forecast = features.damped(target_ema, anomaly, smoothed, fit.weights(lead, position))
                errors["ema", lead].append(mse(target_ema, stack[position], valid))
                errors["damped", lead].append(mse(forecast, stack[position], valid))
        if end - 1 <= position < months - 1:
            anomaly = image - target_ema
            features_of[position] = (anomaly, features.smooth(anomaly, smoothing))
        features_of.pop(position - horizon, None)
        running[phase] = features.ema_update(running[phase], image, alpha)

    def root_mean(values: list[float]) -> float:
        return math.sqrt(sum(values) / len(values)) if values else float("nan")

    statistics: dict[str, float] = {}
    for lead in range(1, horizon + 1):
        statistics[f"damped_ratio_{lead}"] = root_mean(errors["damped", lead]) / root_mean(errors["ema", lead])
        statistics[f"anomaly_weight_{lead}"], statistics[f"smoothed_weight_{lead}"] = (
            float(weight) for weight in fit.weights(lead, 0))
    statistics["ema_rmse"] = root_mean([error for lead in range(1, horizon + 1) for error in errors["ema", lead]])
    statistics["best_alpha"] = min(alpha_grid, key=lambda grid_alpha: _ema_rmse(
        stack, leads_of, fill_value, grid_alpha, scale))
    return statistics


def _ema_rmse(stack: np.ndarray, leads_of: dict[int, list[int]], fill_value: int, alpha: float,
              scale: float) -> float:
    """RMSE (NDVI) of the EMA at ``alpha`` over the scored images: each target position counts once per
    lead that scores it; pixels with valid truth and an EMA."""
    running = [np.full(stack.shape[1:], np.nan, np.float32) for _ in range(MONTHS_PER_YEAR)]
    total, images = 0.0, 0
    for position in range(len(stack)):
        phase = position % MONTHS_PER_YEAR
        image = features.as_float(stack[position], fill_value)
        valid = np.isfinite(image) & np.isfinite(running[phase])
        if position in leads_of and valid.any():
            difference = (running[phase][valid].astype(np.float64) - image[valid]) / scale
            total += len(leads_of[position]) * float(np.mean(difference ** 2))
            images += len(leads_of[position])
        running[phase] = features.ema_update(running[phase], image, alpha)
    return math.sqrt(total / images) if images else float("nan")
