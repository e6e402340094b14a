"""Scoring: RMSE in NDVI units over valid truth pixels, per image, aggregated the same way everywhere.

An image is one (zone, origin, lead) forecast of one month. Its score is the mean squared error, in NDVI
units (stored value / scale), over the pixels where the truth is valid. Images with no valid truth
pixel (gap months) are not scored. Any aggregate — per zone, per lead, per calendar month, pooled over
zones — is the root of the mean, over the images it covers, of the image MSEs. The baselines
(``phenocast.evaluate``) and the model (``run.py``) are scored by this one module, so their numbers are
comparable.
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

    def add(self, zone: str, origin: int, lead: int, method: str, result: tuple[float, int] | None
            ) -> None:
        """Record the ``image_mse`` result of one forecast image (None = not scored)."""
        if result is not None:
            self.scores.append(Score(zone, origin, lead, method, result[0], result[1]))

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

        def by_method(**selection) -> dict[str, float]:
            return {method: _round(rmse(self.select(method, **selection))) for method in methods}

        zones = {}
        for zone in self.zones:
            zones[zone] = {
                "rmse": by_method(zone=zone),
                "by_lead": {str(lead): by_method(zone=zone, lead=lead) for lead in self.leads
                            if self.select(zone=zone, lead=lead)},
                "images": len({(s.origin, s.lead) for s in self.select(zone=zone)}),
            }
        return {
            "pooled": by_method(),
            "pooled_by_lead": {str(lead): by_method(lead=lead) for lead in self.leads},
            "zones": zones,
            "images": len({(s.zone, s.origin, s.lead) for s in self.scores}),
        }

    def by_calendar_month(self, first_month: int) -> dict[int, dict[str, float]]:
        """{calendar month 1..12: {method: rmse}} of the forecast months (month index 1 = first_month)."""
        groups: dict[int, list[Score]] = defaultdict(list)
        for score in self.scores:
            groups[(score.month - 1 + first_month - 1) % 12 + 1].append(score)
        return {month: {method: _round(rmse(s for s in groups[month] if s.method == method))
                        for method in self.methods} for month in sorted(groups)}

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


def _round(value: float) -> float | None:
    return None if math.isnan(value) else value


def _format(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
