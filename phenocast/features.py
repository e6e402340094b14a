"""The features every forecast is built from, defined once: climatology, EMA, the anomaly, its smoothing,
and the damped-anomaly forecast.

A zone is an int16 stack ``(months, height, width)`` with nodata = the fill value (as
``phenocast.zones.read_zone`` returns it). Positions are 0-based indices into the stack; the *calendar
phase* of a position is ``position mod 12`` (same phase = same calendar month). Values are in stored units
(NDVI × scale), float32, NaN where undefined. For a target t and an origin o with t - 12 <= o < t
(leads 1..12), the same-phase positions at or before o are exactly those before t, so the climatology
and the EMA of t depend on t only, never on months after the origin.

- **climatology(t)**: the mean of the valid values at same-phase positions before t (or before ``end``).
- **EMA(t)** (the competition's strong baseline, α = ``evaluate.ema_alpha``): over the same-phase
  positions before t, oldest first, ``out = first image; out = (1 - α)·out + α·image`` for every image
  (the first included again). A masked pixel keeps its running value; a pixel with no value yet starts
  at its first valid observation. This step is written once per framework, ``ema_update`` (numpy: the
  baselines, the per-pixel α fit, the damped fit) and ``tf_ema_update`` (TensorFlow: ``tf_ema``, which the
  sample assembly of ``phenocast.dataset`` and ``phenocast.device_data`` runs for the EMA and damped bases).
- **anomaly a_o** at origin o: x_o - EMA(o), the origin month's value minus the EMA forecast of that same
  month from earlier years; NaN where x_o or EMA(o) is missing.
- **smooth(a)**: the nodata-aware mean of a over the ``size × size`` box around each pixel (the box is
  cut at the image's edges; NaN where the box holds no valid anomaly).
- **damped(o, t = o + h)** = EMA(t) + φ₁(h)·a_o + φ₂(h)·smooth(a_o): the anomaly of the origin month, damped
  per lead h (optionally per lead and calendar phase of t). φ is fitted by least squares of
  truth(t) - EMA(t) on (a_o, smooth(a_o)) over fitting images (``phenocast.origins.fitting_images``:
  every origin of the training period with a year of history). A pixel without a_o gets EMA(t); with
  ``evaluate.damped_fill`` its a_o is smooth(a_o) instead, where the box holds an anomaly (in the fit too).
- **reference** of the damped forecast (``evaluate.damped_reference``): ``ema``, the EMA above in EMA(t) and
  a_o; or ``fitted``, the *weighted mean* W_β(t) of the same-phase values before t with weights (1 - β)^k
  for the value k years back (normalised over the valid ones: a long record's β → 0 is the climatology,
  and no first year keeps a large weight), β per zone from ``evaluate.alpha_grid`` fitted with φ: the β
  whose least-squares φ leaves the smallest squared error on the fitting images.

The TF sample assembly (``phenocast.dataset``) uses the ``tf_*`` functions at the end of this module: the
same climatology (as of each step's origin, from cumulative per-year sums), EMA and damped forecast,
computed on a window's int16 stack inside the input pipeline or the compiled training step. Inside a
window, smooth(a) averages pixels inside the zone only (not reflection padding), so window centres with a
margin of at least ``size // 2`` equal the zone-wide values; ``tests/test_features.py`` checks the TF
functions against the numpy ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MONTHS_PER_YEAR = 12
MIN_FIT_IMAGES = 3  # a (lead, calendar phase) cell of a per-month damped fit needs this many images
# the settings the damped forecast and its fitted φ are computed from (beyond the zone's months and periods)
DAMPED_SETTINGS = ("evaluate.ema_alpha", "evaluate.damped_smoothing", "evaluate.damped_by_month",
                   "evaluate.damped_fill", "evaluate.damped_reference", "predict.horizon")
FITTED_REFERENCE_SETTINGS = ("evaluate.alpha_grid",)  # and, with a fitted reference, its candidate β


def damped_settings(reference: str) -> tuple[str, ...]:
    """The settings the damped forecast is computed from under ``evaluate.damped_reference``."""
    return DAMPED_SETTINGS + (FITTED_REFERENCE_SETTINGS if reference == "fitted" else ())


def as_float(image: np.ndarray, fill_value: int) -> np.ndarray:
    """int16 image → float32 with NaN where it equals ``fill_value``."""
    values = image.astype(np.float32)
    values[image == fill_value] = np.nan
    return values


def same_month_positions(target: int, end: int | None = None) -> list[int]:
    """Positions before ``end`` (default ``target``) with the calendar phase of ``target``, in order."""
    end = target if end is None else end
    return list(range(target % MONTHS_PER_YEAR, end, MONTHS_PER_YEAR))


def climatology(stack: np.ndarray, target: int, fill_value: int, end: int | None = None) -> np.ndarray:
    """Per-pixel mean of the valid values of ``target``'s calendar phase at positions before ``end``.

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


def ema_update(running: np.ndarray, image: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    """One EMA step, the recursion every numpy EMA runs (its TensorFlow twin: ``tf_ema_update``): a pixel
    without a value takes the image's, a masked image pixel keeps its value.

    Args:
      running: float32 (..., height, width), NaN where no value yet (e.g. one image per α of a grid).
      image: float32 (height, width), NaN where masked.
      alpha: a number, or float32 weights of the newest image broadcasting against ``running``.
    """
    running = np.where(np.isnan(running), image, running)  # a pixel starts at its first valid value
    return np.where(np.isnan(image), running, (1 - alpha) * running + alpha * image).astype(np.float32)


def tf_ema_update(value, seen, image, valid, alpha):
    """``ema_update`` in TensorFlow, the recursion every TF EMA runs: where ``valid``, a pixel not yet
    ``seen`` takes the image's value and a seen one ``(1 - α)·value + α·image``; elsewhere it keeps its value.

    Args:
      value: float32 running EMA (0 where not seen); seen: bool, same shape.
      image: float32; valid: bool; both broadcasting against ``value``.

    Returns:
      (value, seen) after the step.
    """
    import tensorflow as tf

    return tf.where(valid, tf.where(seen, (1 - alpha) * value + alpha * image, image), value), seen | valid


def ema(stack: np.ndarray, target: int, fill_value: int, alpha: float | np.ndarray,
        end: int | None = None) -> np.ndarray:
    """The competition's EMA over ``target``'s calendar phase at positions before ``end``.

    Args:
      stack: int16 (months, height, width).
      target: position whose calendar phase is averaged.
      alpha: a number, or float32 (height, width) per-pixel weights of the newest image.
      end: positions before it are used (default ``target``).

    Returns:
      float32 (height, width); NaN where no value was valid.
    """
    out = np.full(stack.shape[1:], np.nan, dtype=np.float32)
    alpha = np.asarray(alpha, dtype=np.float32)
    for position in same_month_positions(target, end):
        out = ema_update(out, as_float(stack[position], fill_value), alpha)
    return out


class RunningEMA:
    """The EMA as a running reference, ``update(image)`` then ``value`` (``ema_update``'s recursion), the
    interface ``WeightedMean`` shares: NaN where nothing was valid yet."""

    def __init__(self, shape: tuple[int, ...], alpha: float):
        self.alpha = alpha
        self.value = np.full(shape, np.nan, np.float32)

    def update(self, image: np.ndarray) -> None:
        self.value = ema_update(self.value, image, self.alpha)


class WeightedMean:
    """The running weighted mean of images, the newest weighing 1 and each older one (1 - β) times the next:
    ``total = (1 - β)·total + β·image``, ``weight = (1 - β)·weight + β`` where the image is valid (a masked
    pixel keeps both); ``value`` = total / weight, NaN where nothing was valid yet. Its TensorFlow twin is
    ``tf_weighted_mean``."""

    def __init__(self, shape: tuple[int, ...], beta: float):
        self.beta = np.float32(beta)
        self.total = np.zeros(shape, np.float32)
        self.weight = np.zeros(shape, np.float32)

    def update(self, image: np.ndarray) -> None:
        valid = np.isfinite(image)
        keep = 1 - self.beta
        self.total = np.where(valid, keep * self.total + self.beta * np.nan_to_num(image), self.total).astype(
            np.float32)
        self.weight = np.where(valid, keep * self.weight + self.beta, self.weight).astype(np.float32)

    @property
    def value(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.weight > 0, self.total / np.maximum(self.weight, np.float32(1e-12)),
                            np.nan).astype(np.float32)


def weighted_mean(stack: np.ndarray, target: int, fill_value: int, beta: float) -> np.ndarray:
    """W_β(target): the ``WeightedMean`` of the same-phase positions before ``target``, oldest first.
    float32 (height, width); NaN where no value was valid."""
    mean = WeightedMean(stack.shape[1:], beta)
    for position in same_month_positions(target):
        mean.update(as_float(stack[position], fill_value))
    return mean.value


def smooth(values: np.ndarray, size: int) -> np.ndarray:
    """Nodata-aware box mean: the mean of the finite values in the ``size × size`` box around each pixel
    (cut at the edges); NaN where the box holds none. float32 (height, width)."""
    valid = np.isfinite(values)
    total = ndimage.uniform_filter(np.where(valid, values, 0).astype(np.float64), size, mode="constant")
    count = ndimage.uniform_filter(valid.astype(np.float64), size, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 1e-9, total / np.maximum(count, 1e-12), np.nan).astype(np.float32)


def anomaly_features(stack: np.ndarray, origin: int, fill_value: int, alpha: float, size: int,
                     origin_ema: np.ndarray | None = None, fill: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(a_o, smooth(a_o)) at ``origin``: float32 (height, width) each, NaN where undefined.

    Args:
      origin_ema: EMA(origin) if already computed (default: computed here).
      fill: a_o := smooth(a_o) where a_o is missing (``filled_anomaly``).
    """
    reference = ema(stack, origin, fill_value, alpha) if origin_ema is None else origin_ema
    anomaly = as_float(stack[origin], fill_value) - reference
    smoothed = smooth(anomaly, size)
    return (filled_anomaly(anomaly, smoothed) if fill else anomaly), smoothed


def filled_anomaly(anomaly: np.ndarray, smoothed: np.ndarray) -> np.ndarray:
    """a_o where it exists, else smooth(a_o) (NaN where neither does): ``evaluate.damped_fill``."""
    return np.where(np.isfinite(anomaly), anomaly, smoothed).astype(np.float32)


@dataclass(frozen=True)
class DampedFit:
    """Fitted damping of the anomaly: φ ``(horizon, 12, 2)`` per lead (row ``lead - 1``) and calendar
    phase of the target; without ``by_month`` every phase holds the lead's pooled φ."""

    phi: np.ndarray  # float64 (horizon, 12, 2): weights of a_o and smooth(a_o)
    images: np.ndarray  # int (horizon, 12): fitting images per cell
    by_month: bool
    beta: float | None = None  # the weighted mean's β (reference ``fitted``); None: the EMA
    squared_error: float = float("nan")  # what φ leaves on the fitting images (stored units²)

    def reference(self, stack: np.ndarray, target: int, fill_value: int, alpha: float) -> np.ndarray:
        """The forecast's reference at ``target``: W_β(target), or EMA(target) at ``alpha``."""
        if self.beta is None:
            return ema(stack, target, fill_value, alpha)
        return weighted_mean(stack, target, fill_value, self.beta)

    def weights(self, lead: int, target: int) -> np.ndarray:
        """(φ₁, φ₂) for a lead and target position."""
        return self.phi[lead - 1, target % MONTHS_PER_YEAR]

    def to_dict(self) -> dict:
        """JSON form: φ per lead (pooled over phases unless ``by_month``)."""
        reference = {} if self.beta is None else {"beta": self.beta}
        if self.by_month:
            return {"by_month": True, "phi": self.phi.round(4).tolist(), **reference}
        return {"by_month": False, "phi": self.phi[:, 0].round(4).tolist(), **reference}


def _solve(xtx: np.ndarray, xty: np.ndarray) -> np.ndarray:
    """Least squares from the normal equations (a tiny ridge keeps a flat anomaly from exploding)."""
    ridge = 1e-9 * max(float(np.trace(xtx)), 1e-12)
    try:
        return np.linalg.solve(xtx + ridge * np.eye(2), xty)
    except np.linalg.LinAlgError:
        return np.zeros(2)


def fit_damped(stack: np.ndarray, images: Iterable[tuple[int, int]], fill_value: int, alpha: float,
               size: int, horizon: int, by_month: bool = False, fill: bool = False,
               beta: float | None = None) -> DampedFit:
    """Least-squares φ of the damped forecast on the given images (0-based (origin, lead) positions).

    One pass over the origins in order with a running reference (the EMA, or the weighted mean) per
    calendar phase, so the cost is one update per month however many images there are.

    Args:
      stack: int16 (months, height, width).
      images: (origin position, lead) pairs; targets must lie in the stack.
      alpha, size: the EMA's α and the smoothing box.
      horizon: leads 1..horizon get a φ (a lead without images gets 0: the EMA).
      by_month: a φ per lead and calendar phase of the target, falling back to the lead's pooled φ where
        a phase has fewer than ``MIN_FIT_IMAGES`` images.
      fill: a missing a_o is smooth(a_o) (``filled_anomaly``), in the fit as in the forecast.
      beta: the reference is the weighted mean W_β (``WeightedMean``) instead of the EMA at ``alpha``.

    Returns:
      The ``DampedFit``, with the squared error its φ leaves on the images.
    """
    leads_of: dict[int, list[int]] = {}
    for origin, lead in images:
        if not 1 <= lead <= horizon:
            raise ValueError(f"expected leads 1..{horizon}, got {lead}")
        if origin + lead >= len(stack):
            raise ValueError(f"target position {origin + lead} lies past the stack ({len(stack)} months)")
        leads_of.setdefault(origin, []).append(lead)
    xtx = np.zeros((horizon, MONTHS_PER_YEAR, 2, 2))
    xty = np.zeros((horizon, MONTHS_PER_YEAR, 2))
    yty = np.zeros((horizon, MONTHS_PER_YEAR))
    counts = np.zeros((horizon, MONTHS_PER_YEAR), dtype=np.int64)
    running = [RunningEMA(stack.shape[1:], alpha) if beta is None else WeightedMean(stack.shape[1:], beta)
               for _ in range(MONTHS_PER_YEAR)]  # the reference per calendar phase
    last_origin = max(leads_of, default=-1)
    for position in range(last_origin + 1):
        phase = position % MONTHS_PER_YEAR
        image = as_float(stack[position], fill_value)
        if position in leads_of:  # the reference before this image: the same phase's earlier images only
            anomaly = image - running[phase].value
            smoothed = smooth(anomaly, size)
            anomaly = filled_anomaly(anomaly, smoothed) if fill else anomaly
        running[phase].update(image)
        for lead in leads_of.get(position, ()):
            target = position + lead
            residual = as_float(stack[target], fill_value) - running[target % MONTHS_PER_YEAR].value
            valid = np.isfinite(anomaly) & np.isfinite(smoothed) & np.isfinite(residual)
            if not valid.any():
                continue
            features = np.stack([anomaly[valid], smoothed[valid]], axis=1).astype(np.float64)
            cell = (lead - 1, target % MONTHS_PER_YEAR)
            xtx[cell] += features.T @ features
            truth = residual[valid].astype(np.float64)
            xty[cell] += features.T @ truth
            yty[cell] += float(truth @ truth)
            counts[cell] += 1
    phi = np.zeros((horizon, MONTHS_PER_YEAR, 2))
    for lead_index in range(horizon):
        pooled = _solve(xtx[lead_index].sum(axis=0), xty[lead_index].sum(axis=0)) if counts[
            lead_index].sum() else np.zeros(2)
        for phase in range(MONTHS_PER_YEAR):
            if by_month and counts[lead_index, phase] >= MIN_FIT_IMAGES:
                phi[lead_index, phase] = _solve(xtx[lead_index, phase], xty[lead_index, phase])
            else:
                phi[lead_index, phase] = pooled
    # Σ (r - φ·x)² over the images = r·r - 2 φ·(x·r) + φ·(x·x)·φ, per cell with its φ
    squared_error = float(np.sum(yty - 2 * np.einsum("lpi,lpi->lp", phi, xty)
                                 + np.einsum("lpi,lpij,lpj->lp", phi, xtx, phi)))
    return DampedFit(phi, counts, by_month, beta, squared_error)


def fit_damped_reference(stack: np.ndarray, images: Iterable[tuple[int, int]], fill_value: int, alpha: float,
                         size: int, horizon: int, reference: str = "ema", betas: Iterable[float] = (),
                         by_month: bool = False, fill: bool = False) -> DampedFit:
    """``fit_damped`` with the reference ``evaluate.damped_reference`` asks for: the EMA at ``alpha``
    (``ema``), or (``fitted``) the weighted mean whose β of ``betas`` leaves the smallest squared error on
    the images (the first such β on a tie)."""
    images = list(images)
    if reference == "ema":
        return fit_damped(stack, images, fill_value, alpha, size, horizon, by_month, fill)
    fits = [fit_damped(stack, images, fill_value, alpha, size, horizon, by_month, fill, beta=float(beta))
            for beta in betas]
    if not fits:
        raise ValueError("a fitted reference needs at least one β (evaluate.alpha_grid)")
    return min(fits, key=lambda fit: fit.squared_error)


def damped(target_ema: np.ndarray, anomaly: np.ndarray, smoothed: np.ndarray, weights: np.ndarray
           ) -> np.ndarray:
    """EMA(t) + φ₁·a_o + φ₂·smooth(a_o); EMA(t) where a_o is missing. float32 (height, width)."""
    correction = weights[0] * anomaly + weights[1] * np.nan_to_num(smoothed)
    return np.where(np.isfinite(anomaly), target_ema + correction, target_ema).astype(np.float32)


# ---- the same features in TensorFlow, for the sample assembly ----------------------------------------

def tf_cumulative_sums(stack, origin, fill_value: int):
    """Cumulative per-year sums and counts of the valid values at positions <= ``origin``.

    Args:
      stack: int16 tensor (months, height, width); origin: int32 scalar position.

    Returns:
      sums, counts: float32 (years_of_history, 12, height, width); row y holds positions < 12·(y+1).
    """
    import tensorflow as tf

    history_years = origin // MONTHS_PER_YEAR + 1
    length = history_years * MONTHS_PER_YEAR
    available = tf.shape(stack)[0]
    history = stack[:tf.minimum(length, available)]
    history = tf.pad(history, [[0, tf.maximum(length - available, 0)], [0, 0], [0, 0]],
                     constant_values=fill_value)
    positions = tf.range(length)[:, None, None]
    valid = (history != fill_value) & (positions <= origin)
    values = tf.where(valid, tf.cast(history, tf.float32), 0.0)
    shape = tf.concat([[history_years, MONTHS_PER_YEAR], tf.shape(stack)[1:]], axis=0)
    sums = tf.cumsum(tf.reshape(values, shape), axis=0)
    counts = tf.cumsum(tf.reshape(tf.cast(valid, tf.float32), shape), axis=0)
    return sums, counts


def tf_climatology_per_step(sums, counts, step_origins):
    """``climatology`` of every calendar phase as of each step's origin (positions <= that origin).

    Args:
      sums, counts: from ``tf_cumulative_sums``; step_origins: int32 (years,).

    Returns:
      mean, exists: (years, 12, height, width) float32 and bool.
    """
    import tensorflow as tf

    phases = tf.range(MONTHS_PER_YEAR, dtype=tf.int32)[None, :]  # (1, 12)
    last_year = tf.math.floordiv(step_origins[:, None] - phases, MONTHS_PER_YEAR)  # (years, 12)
    usable = last_year >= 0
    index = tf.stack([tf.maximum(last_year, 0), tf.broadcast_to(phases, tf.shape(last_year))], -1)
    total = tf.gather_nd(sums, index)  # (years, 12, height, width)
    count = tf.gather_nd(counts, index) * tf.cast(usable, tf.float32)[:, :, None, None]
    return total / tf.maximum(count, 1.0), count > 0


def _tf_same_month_scan(stack, targets, fill_value: int, update, state):
    """Run ``update(state, images, valid) → state`` over the same-phase positions before every target position,
    oldest first (the loop ``tf_ema`` and ``tf_weighted_mean`` share).

    Args:
      stack: int16 (months, height, width); targets: int32 (years, n) positions.
      update: the recursion's step; images float32 and valid bool, both (years, n, height, width).
      state: a function of the (years, n, height, width) shape giving the initial state (a tuple of tensors).
    """
    import tensorflow as tf

    available = tf.shape(stack)[0]
    back = tf.reduce_max(targets) // MONTHS_PER_YEAR + 1  # years to look back, oldest first
    shape = tf.concat([tf.shape(targets), tf.shape(stack)[1:]], axis=0)

    def step(k, *values):
        positions = targets - MONTHS_PER_YEAR * (back - k)
        usable = (positions >= 0) & (positions < available)
        images = tf.gather(stack, tf.clip_by_value(positions, 0, available - 1))  # (years, n, h, w)
        valid = (images != fill_value) & usable[:, :, None, None]
        return (k + 1, *update(values, tf.cast(images, tf.float32), valid))

    return tf.while_loop(lambda k, *_: k < back, step, (tf.constant(0), *state(shape)))[1:]


def tf_ema(stack, targets, fill_value: int, alpha: float):
    """``ema`` of every target position: the same-phase positions before it, oldest first.

    Args:
      stack: int16 (months, height, width); targets: int32 (years, n) positions.

    Returns:
      value float32 and seen bool, both (years, n, height, width); value is 0 where not seen.
    """
    import tensorflow as tf

    def update(values, images, valid):
        return tf_ema_update(*values, images, valid, alpha)

    value, seen = _tf_same_month_scan(stack, targets, fill_value, update,
                                      lambda shape: (tf.zeros(shape, tf.float32), tf.zeros(shape, tf.bool)))
    return value, seen


def tf_weighted_mean(stack, targets, fill_value: int, beta):
    """``weighted_mean`` (W_β) of every target position, as ``tf_ema`` runs the EMA.

    Args:
      stack: int16 (months, height, width); targets: int32 (years, n) positions.
      beta: float32 scalar (a tensor: the window's zone's β).

    Returns:
      value float32 and seen bool, both (years, n, height, width); value is 0 where not seen.
    """
    import tensorflow as tf

    beta = tf.cast(beta, tf.float32)

    def update(values, images, valid):
        total, weight = values
        return (tf.where(valid, (1 - beta) * total + beta * images, total),
                tf.where(valid, (1 - beta) * weight + beta, weight))

    total, weight = _tf_same_month_scan(stack, targets, fill_value, update,
                                        lambda shape: (tf.zeros(shape, tf.float32), tf.zeros(shape, tf.float32)))
    seen = weight > 0
    return tf.where(seen, total / tf.maximum(weight, 1e-12), 0.0), seen


def tf_smooth(values, valid, size: int):
    """``smooth`` of (images, height, width) values where ``valid``; 0 where the box holds none."""
    return tf_smooth_covered(values, valid, size)[0]


def tf_smooth_covered(values, valid, size: int):
    """``tf_smooth`` and where it is defined: (smoothed float32, covered bool), both (images, height, width);
    covered is where the box holds a valid value (where numpy's ``smooth`` is not NaN)."""
    import tensorflow as tf

    weights = tf.cast(valid, tf.float32)[..., None]
    # average pooling with SAME padding divides both by the same in-image count: the ratio is
    # Σ valid values / Σ valid pixels over the box cut at the image's edges
    total = tf.nn.avg_pool2d(tf.where(valid, values, 0.0)[..., None], size, 1, "SAME")[..., 0]
    count = tf.nn.avg_pool2d(weights, size, 1, "SAME")[..., 0]
    covered = count > 0
    return tf.where(covered, total / tf.maximum(count, 1e-12), 0.0), covered


def tf_damped(target_ema, stack, step_origins, origin_ema, origin_seen, inside, phi, targets,
              fill_value: int, size: int, fill: bool = False):
    """``damped`` of every step's targets: EMA(t) + φ₁·a_o + φ₂·smooth(a_o), EMA(t) where a_o is missing.

    Args:
      target_ema: float32 (years, horizon, h, w), EMA(t) (``tf_ema``).
      stack: int16 (months, h, w); step_origins: int32 (years,).
      origin_ema, origin_seen: EMA(o) of each step origin and where it exists, (years, h, w).
      inside: bool (h, w), pixels inside the zone (the smoothing ignores the rest).
      phi: float32 (horizon, 12, 2), ``DampedFit.phi``; targets: int32 (years, horizon).
      fill: a missing a_o is smooth(a_o) where the box holds an anomaly (``filled_anomaly``).

    Returns:
      float32 (years, horizon, h, w).
    """
    import tensorflow as tf

    origin_images = tf.gather(stack, step_origins)  # (years, h, w)
    present = (origin_images != fill_value) & origin_seen
    anomaly = tf.where(present, tf.cast(origin_images, tf.float32) - origin_ema, 0.0)
    smoothed, covered = tf_smooth_covered(anomaly, present & inside[None], size)  # (years, h, w) each
    if fill:  # where the box holds an anomaly inside the zone, a missing a_o is its mean
        anomaly = tf.where(present, anomaly, smoothed)
        present |= covered
    weights = tf.gather_nd(tf.cast(phi, tf.float32), tf.stack(
        [tf.broadcast_to(tf.range(tf.shape(targets)[1])[None, :], tf.shape(targets)),
         tf.math.floormod(targets, MONTHS_PER_YEAR)], axis=-1))  # (years, horizon, 2)
    correction = (weights[..., 0, None, None] * anomaly[:, None]
                  + weights[..., 1, None, None] * smoothed[:, None])
    return tf.where(present[:, None], target_ema + correction, target_ema)
