"""Land-cover classes and their seasonal curves: double logistics averaged exactly over each month, and
their expectation over a Gaussian timing anomaly (Gauss–Hermite quadrature).

A season is an onset edge (sign s = +1) and an offset edge (s = −1), each a logistic in the day of year
d with amplitude A, date e and width r. Over a month of days [d₀, d₁) its mean is exactly

    L = r/(d₁ − d₀)·[softplus((d₁ − e − δ)/r) − softplus((d₀ − e − δ)/r)]

for a timing anomaly δ (days); for δ ~ N(μ, s²), E[L] replaces softplus(u) by E[softplus(u − (s/r)·Z)],
Z ~ N(0, 1), tabulated per s/r (``ExpectedSoftplus``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MONTHS_PER_YEAR = 12
DAYS_PER_YEAR = 365.0
EDGE_TYPES = ("spring", "mid", "autumn")  # drawn in this order within a year


@dataclass(frozen=True)
class LandCover:
    """One land-cover class: its seasonal curve and how strongly each process moves it."""

    name: str
    fraction: float  # share of the zone
    base: float  # b: NDVI outside the growing season
    seasons: tuple[tuple[float, float, float, float, float], ...]  # per season (amplitude, onset date,
    #   onset width, offset date, offset width), dates and widths in days
    edge_types: tuple[str, ...]  # the type of each edge: onset₁, offset₁[, onset₂, offset₂]
    timing_sd: tuple[float, ...]  # σ_w (days) of each edge
    management_sd: float  # σ_m (days), all edges
    weather: float  # k_F
    trend: float  # k_β: weight of the trend field β and of the slow level G
    disturbance: float  # k_D; 0 = never disturbed


LAND_COVERS = (
    LandCover("water", 0.03, -0.05, ((0.02, 130, 15, 270, 15),), ("spring", "autumn"), (0.0, 0.0), 0.0,
              0.05, 0.1, 0.0),
    LandCover("barren", 0.07, 0.11, ((0.045, 125, 12, 255, 12),), ("spring", "autumn"), (3.0, 3.0), 8.7,
              0.35, 0.3, 0.0),
    LandCover("urban", 0.05, 0.18, ((0.10, 118, 12, 275, 12),), ("spring", "autumn"), (3.0, 3.0), 5.2,
              0.35, 0.6, 0.0),
    LandCover("grassland", 0.17, 0.22, ((0.265, 125, 10, 255, 12),), ("spring", "autumn"), (4.8, 4.8), 15.7,
              1.0, 1.0, 0.4),
    LandCover("cropland", 0.20, 0.20, ((0.39, 145, 6, 240, 7),), ("spring", "autumn"), (4.8, 4.8), 27.8,
              1.0, 1.0, 0.0),
    LandCover("double cropland", 0.15, 0.20, ((0.32, 100, 6, 168, 5), (0.29, 200, 6, 280, 7)),
              ("spring", "mid", "mid", "autumn"), (4.35, 3.0, 3.0, 4.35), 27.8, 0.9, 1.0, 0.0),
    LandCover("deciduous forest", 0.17, 0.32, ((0.345, 125, 8, 285, 10),), ("spring", "autumn"),
              (3.5, 3.5), 5.2, 0.7, 0.6, 0.6),
    LandCover("evergreen forest", 0.16, 0.57, ((0.14, 110, 14, 292, 16),), ("spring", "autumn"),
              (3.5, 3.5), 3.5, 0.5, 0.6, 1.0),
)


def calendar(month: int, first_month: int) -> tuple[int, int]:
    """Month index (1-based) → (calendar month 0..11, year 0..)."""
    offset = month - 1 + first_month - 1
    return offset % MONTHS_PER_YEAR, offset // MONTHS_PER_YEAR


def month_days(calendar_month: int) -> tuple[float, float]:
    """The [start, end) day of year of a calendar month (12 equal months of 365/12 days)."""
    return (DAYS_PER_YEAR * calendar_month / MONTHS_PER_YEAR,
            DAYS_PER_YEAR * (calendar_month + 1) / MONTHS_PER_YEAR)


def softplus(values: np.ndarray) -> np.ndarray:
    """log(1 + eˣ) in float32 (absolute error < 1e-6)."""
    out = np.abs(values)
    np.negative(out, out=out)
    np.exp(out, out=out)
    out += np.float32(1)
    np.log(out, out=out)
    out += np.maximum(values, np.float32(0))
    return out


def edge_mean(date: np.ndarray, width: float, start: float, end: float) -> np.ndarray:
    """The mean over days [start, end) of the logistic 1/(1 + exp(−(day − date)/width)), exactly.

    Args:
      date: float32 (pixels,) the edge's date e (+ δ), day of year.
      width: r, days.

    Returns:
      float32 (pixels,).
    """
    upper = softplus((np.float32(end) - date) * np.float32(1 / width))
    upper -= softplus((np.float32(start) - date) * np.float32(1 / width))
    upper *= np.float32(width / (end - start))
    return upper


class ExpectedSoftplus:
    """E[softplus(u − s·Z)], Z ~ N(0, 1), tabulated in u for one spread s (Gauss–Hermite quadrature).

    Stored as the residual E[…] − max(u, 0) on a uniform grid of step 1/``STEPS_PER_UNIT`` over
    [−``LIMIT``, ``LIMIT``] (zero beyond), read back by linear interpolation (error < 3e-6).
    """

    LIMIT, STEPS_PER_UNIT, NODES = 48.0, 200, 48

    def __init__(self, spread: float):
        grid = np.linspace(-self.LIMIT, self.LIMIT, int(2 * self.LIMIT * self.STEPS_PER_UNIT) + 1)
        nodes, weights = np.polynomial.hermite.hermgauss(self.NODES)
        values = np.zeros_like(grid)
        for node, weight in zip(nodes, weights):
            values += weight / math.sqrt(math.pi) * np.logaddexp(0, grid - spread * math.sqrt(2) * node)
        self.residual = np.append(values - np.maximum(grid, 0), 0.0).astype(np.float32)  # one spare zero

    def __call__(self, values: np.ndarray) -> np.ndarray:
        position = values + np.float32(self.LIMIT)
        position *= np.float32(self.STEPS_PER_UNIT)
        np.clip(position, 0, len(self.residual) - 2, out=position)
        index = position.astype(np.int32)
        position -= index  # the fraction of the way to the next grid point
        low = np.take(self.residual, index)
        index += 1
        out = np.take(self.residual, index)
        out -= low
        out *= position
        out += low
        out += np.maximum(values, np.float32(0))
        return out


_EXPECTED_SOFTPLUS: dict[float, ExpectedSoftplus] = {}


def expected_edge_mean(date: np.ndarray, width: float, spread: float, start: float, end: float
                       ) -> np.ndarray:
    """E[``edge_mean``(date + δ)] for δ ~ N(0, spread²) (days). float32 (pixels,)."""
    key = round(spread / width, 9)
    if key not in _EXPECTED_SOFTPLUS:
        _EXPECTED_SOFTPLUS[key] = ExpectedSoftplus(key)
    table = _EXPECTED_SOFTPLUS[key]
    upper = table((np.float32(end) - date) * np.float32(1 / width))
    upper -= table((np.float32(start) - date) * np.float32(1 / width))
    upper *= np.float32(width / (end - start))
    return upper
