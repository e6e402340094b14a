"""Scoring: RMSE in NDVI units over valid truth pixels, per image, aggregated the same way everywhere.

An image is one (zone, origin, lead) forecast of one month. Its score is the mean squared error, in NDVI
units (stored value / scale), over the pixels where the truth is valid. Images with no valid truth
pixel (gap months) are not scored. Any aggregate — per zone, per lead, per calendar month, pooled over
zones — is the root of the mean, over the images it covers, of the image MSEs. The baselines
(``phenocast.forecasters``) and the model (``run.py``) are scored by this one module, so their numbers are
comparable.

``paired_bootstrap`` puts a confidence interval on the ratio RMSE(method) / RMSE(reference) over the images
both methods scored. The resampling unit is a forecast origin: all images (every zone, every lead) of one
origin move together, since zones share a calendar and an origin's leads are correlated. Consecutive
origins share target months (lead 2 of origin o is lead 1 of origin o + 1), so origins are resampled in
circular moving blocks of ceil(largest lead / origin spacing) consecutive origins.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


def image_mse(prediction: np.ndarray, truth: np.ndarray, fill_value: int, scale: float,
              region: tuple[slice, slice] | None = None) -> tuple[float, int] | None:
    """Mean squared error in NDVI units over the valid truth pixels of one image.

    Args:
      prediction: (height, width) in stored units (NDVI × scale), float or int. A NaN prediction at a
        valid truth pixel is an error (a method must predict every pixel it is scored on).
      truth: int16 (height, width), ``fill_value`` where invalid.
      region: optional (rows, cols) slices to score only part of the image.

    Returns:
      (mse, valid pixel count), or None when no truth pixel is valid.
    """
    if region is not None:
        prediction, truth = prediction[region], truth[region]
    valid = truth != fill_value
    count = int(valid.sum())
    if count == 0:
        return None
    difference = (prediction[valid].astype(np.float64) - truth[valid]) / scale
    if np.isnan(difference).any():
        raise ValueError(f"prediction has NaN at {int(np.isnan(difference).sum())} valid truth pixels")
    return float(np.mean(difference ** 2)), count


@dataclass(frozen=True)
class Score:
    """One scored image."""

    zone: str
    origin: int  # month index of the forecast origin
    lead: int  # months after the origin
    method: str
    mse: float
    pixels: int
    period: str = ""  # validation or test (phenocast.origins); "" when unknown

    @property
    def month(self) -> int:
        return self.origin + self.lead


def rmse(scores: Iterable[Score]) -> float:
    """Root of the mean image MSE (NaN when empty)."""
    values = [score.mse for score in scores]
    return math.sqrt(sum(values) / len(values)) if values else float("nan")


class Scoreboard:
    """Collects image scores of any number of methods and zones and aggregates them."""

    def __init__(self, scores: Iterable[Score] = ()):
        self.scores: list[Score] = list(scores)

    @classmethod
    def from_summary(cls, summary: dict) -> Scoreboard:
        """Rebuild a scoreboard from a summary written with its ``image_scores`` (``scores.json``)."""
        return cls(Score(**row) for row in summary.get("image_scores", []))

    def add(self, zone: str, origin: int, lead: int, method: str, result: tuple[float, int] | None,
            period: str = "") -> None:
        """Record the ``image_mse`` result of one forecast image (None = not scored)."""
        if result is not None:
            self.scores.append(Score(zone, origin, lead, method, result[0], result[1], period))

    @property
    def periods(self) -> list[str]:
        """The periods on the board, validation before test."""
        found = set(score.period for score in self.scores)
        return [p for p in ("validation", "test") if p in found] + sorted(found - {"validation", "test"})

    def restrict_period(self, period: str) -> Scoreboard:
        """A scoreboard with only the images of ``period``."""
        return Scoreboard(s for s in self.scores if s.period == period)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(score.method for score in self.scores))

    @property
    def zones(self) -> list[str]:
        return list(dict.fromkeys(score.zone for score in self.scores))

    @property
    def leads(self) -> list[int]:
        return sorted({score.lead for score in self.scores})

    def select(self, method: str | None = None, zone: str | None = None, lead: int | None = None,
               images: set[tuple[str, int, int]] | None = None) -> list[Score]:
        return [s for s in self.scores
                if (method is None or s.method == method) and (zone is None or s.zone == zone)
                and (lead is None or s.lead == lead)
                and (images is None or (s.zone, s.origin, s.lead) in images)]

    def common_images(self, methods: Iterable[str]) -> set[tuple[str, int, int]]:
        """The (zone, origin, lead) images every one of ``methods`` scored."""
        sets = [{(s.zone, s.origin, s.lead) for s in self.select(method)} for method in methods]
        return set.intersection(*sets) if sets else set()

    def restrict(self, images: set[tuple[str, int, int]]) -> Scoreboard:
        """A scoreboard with only the given images."""
        return Scoreboard(s for s in self.scores if (s.zone, s.origin, s.lead) in images)

    def summary(self) -> dict:
        """``{"pooled": {method: rmse}, "pooled_by_lead": {lead: {method: rmse}},
        "zones": {zone: {"rmse": {method: rmse}, "by_lead": {lead: {method: rmse}}, "images": n}},
        "images": n}``."""
        methods = self.methods
        groups: dict[tuple, list[float]] = defaultdict(list)  # (zone or None, lead or None, method) → MSEs
        for score in self.scores:
            for zone in (score.zone, None):
                for lead in (score.lead, None):
                    groups[zone, lead, score.method].append(score.mse)

        def by_method(zone: str | None = None, lead: int | None = None) -> dict[str, float | None]:
            return {method: _root_mean(groups.get((zone, lead, method), [])) for method in methods}

        zones = {}
        for zone in self.zones:
            zones[zone] = {
                "rmse": by_method(zone),
                "by_lead": {str(lead): by_method(zone, lead) for lead in self.leads
                            if any((zone, lead, method) in groups for method in methods)},
                "images": len({(s.origin, s.lead) for s in self.scores if s.zone == zone}),
            }
        return {
            "pooled": by_method(),
            "pooled_by_lead": {str(lead): by_method(lead=lead) for lead in self.leads},
            "zones": zones,
            "images": len({(s.zone, s.origin, s.lead) for s in self.scores}),
            "origins": len({s.origin for s in self.scores}),
        }

    def by_calendar_month(self, first_month: int | dict[str, int]) -> dict[int, dict[str, float]]:
        """{calendar month 1..12: {method: rmse}} of the forecast months (month index 1 = first_month, or
        first_month[zone])."""
        groups: dict[int, list[Score]] = defaultdict(list)
        for score in self.scores:
            first = first_month[score.zone] if isinstance(first_month, dict) else first_month
            groups[(score.month - 1 + first - 1) % 12 + 1].append(score)
        return {month: {method: _round(rmse(s for s in groups[month] if s.method == method))
                        for method in self.methods} for month in sorted(groups)}

    def by_year_after(self, training_ends: dict[str, int]) -> dict[tuple[str, int], Scoreboard]:
        """{(period, year): the scores of that year}, year k holding the images whose forecast month lies
        in months training_end + 12·(k − 1) + 1 … training_end + 12·k of their zone (year 1 = the first
        year after the training period), in time order."""
        groups: dict[tuple[str, int], list[Score]] = defaultdict(list)
        for score in self.scores:
            year = (score.month - training_ends[score.zone] - 1) // 12 + 1
            groups[score.period, year].append(score)
        order = sorted(groups, key=lambda key: (key[1], key[0] != "validation"))  # a year's validation part first
        return {key: Scoreboard(groups[key]) for key in order}

    def table(self, title: str | None = None) -> str:
        """A plain-text table: one row per zone and lead, then per zone, then pooled."""
        methods = self.methods
        summary = self.summary()
        header = ["zone", "lead", "images", *methods]
        rows = []
        for zone, values in summary["zones"].items():
            for lead, by_method in values["by_lead"].items():
                images = len({s.origin for s in self.select(zone=zone, lead=int(lead))})
                rows.append([zone, lead, str(images), *(_format(by_method[m]) for m in methods)])
            rows.append([zone, "all", str(values["images"]), *(_format(values["rmse"][m]) for m in methods)])
        for lead, by_method in summary["pooled_by_lead"].items():
            images = len({(s.zone, s.origin) for s in self.select(lead=int(lead))})
            rows.append(["pooled", lead, str(images), *(_format(by_method[m]) for m in methods)])
        rows.append(["pooled", "all", str(summary["images"]),
                     *(_format(summary["pooled"][m]) for m in methods)])
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                 for row in [header, *rows]]
        if title:
            lines.insert(0, title)
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(self.summary(), indent=2)


def paired_bootstrap(board: Scoreboard, method: str, reference: str, replicates: int = 2000,
                     confidence: float = 0.95, seed: int = 0, block: int | None = None) -> dict:
    """Ratio RMSE(method) / RMSE(reference) on their common images, with a paired block-bootstrap interval.

    Units are the sorted distinct forecast origins of the common images; each unit carries the sums of
    both methods' image MSEs over its images (every zone and lead). A replicate draws
    ceil(units / block) block starts uniformly with replacement, takes ``block`` consecutive units from
    each start (circularly: after the last origin comes the first) and keeps the first ``units`` of them;
    its ratio is sqrt(sum of method MSEs / sum of reference MSEs) over those units, i.e. the ratio of
    the two RMSEs on the same resampled images (the image count cancels). The interval is the
    (1 - confidence) / 2 and (1 + confidence) / 2 percentiles of the replicate ratios.

    The default block length is max(1, ceil(horizon / spacing)), horizon = the largest lead and spacing
    = the smallest difference between consecutive distinct origins: origins 1, 2, 3, … with leads 1-3
    give blocks of 3, origins 12 apart give 1 (a plain bootstrap of origins). It is capped at the number
    of origins. A reference with zero error on every resampled image gives an infinite or NaN ratio.

    Args:
      board: scores of at least ``method`` and ``reference``.
      method, reference: method names on the board; only images both scored are used.
      replicates: number of bootstrap replicates.
      confidence: coverage of the percentile interval, in (0, 1).
      seed: seed of ``numpy.random.default_rng``; the same seed gives the same result.
      block: block length in origins; None = the rule above.

    Returns:
      ``{"ratio", "low", "high", "images", "origins", "wins", "replicates", "block"}``: the point ratio,
      the interval, the number of common images and of origins (resampling units), the number of
      common images where ``method`` has a lower MSE than ``reference``, the replicates and the block
      length used.
    """
    if replicates < 1:
        raise ValueError(f"expected replicates >= 1, got {replicates}")
    if not 0 < confidence < 1:
        raise ValueError(f"expected a confidence between 0 and 1 (like 0.95), got {confidence}")
    if block is not None and block < 1:
        raise ValueError(f"expected a block length >= 1 origin (or None for the default), got {block}")
    images = board.common_images([method, reference])
    if not images:
        raise ValueError(
            f"expected images scored by both {method!r} and {reference!r}, found none in common (methods on "
            f"the board: {', '.join(board.methods) or 'none'}); score both methods on the same images")
    errors: dict[str, dict[tuple[str, int, int], float]] = {method: {}, reference: {}}
    for score in board.select(images=images):
        if score.method in errors:
            image = (score.zone, score.origin, score.lead)
            if image in errors[score.method]:
                raise ValueError(f"expected one score per image and method, got two for {score.method!r} on "
                                 f"zone {score.zone} origin {score.origin} lead {score.lead}; drop the duplicate")
            errors[score.method][image] = score.mse
    ordered = sorted(images)
    method_mse = np.array([errors[method][image] for image in ordered])  # (images,)
    reference_mse = np.array([errors[reference][image] for image in ordered])  # (images,)
    image_origins = np.array([image[1] for image in ordered])  # (images,)
    origins, unit_of_image = np.unique(image_origins, return_inverse=True)  # sorted distinct origins
    units = len(origins)
    method_sums = np.bincount(unit_of_image, weights=method_mse, minlength=units)  # (units,)
    reference_sums = np.bincount(unit_of_image, weights=reference_mse, minlength=units)  # (units,)
    if block is None:
        horizon = max(image[2] for image in ordered)
        spacing = int(np.diff(origins).min()) if units > 1 else 1
        block = max(1, math.ceil(horizon / spacing))
    block = min(block, units)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.sqrt(method_sums.sum() / reference_sums.sum()))
        rng = np.random.default_rng(seed)
        starts = rng.integers(0, units, size=(replicates, math.ceil(units / block)))  # (replicates, blocks)
        picks = (starts[:, :, None] + np.arange(block)) % units  # (replicates, blocks, block)
        picks = picks.reshape(replicates, -1)[:, :units]  # (replicates, units): unit indices
        ratios = np.sqrt(method_sums[picks].sum(axis=1) / reference_sums[picks].sum(axis=1))  # (replicates,)
    low, high = np.quantile(ratios, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"ratio": ratio, "low": float(low), "high": float(high), "images": len(ordered),
            "origins": units, "wins": int((method_mse < reference_mse).sum()), "replicates": replicates,
            "block": block}


def _root_mean(values: list[float]) -> float | None:
    return math.sqrt(sum(values) / len(values)) if values else None


def _round(value: float) -> float | None:
    return None if math.isnan(value) else value


def _format(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
