"""Planted worlds: small generated zones that each isolate one thing a forecasting network must be able to
learn, each with its oracle, the forecast that knows the physics.

    python -m phenocast.synthetic.planted --world moving --out DIR [--zones 2 --months 120 --size 64
        --seed 0 --first-month 7 --horizon 3 --set KNOB=VALUE … --overwrite --quiet --stats]

Out: the built-in sample's format (``phenocast.synthetic.writer``): ``DIR/Z1/Z1-001.tif`` … one int16
GeoTIFF per zone and month (NDVI × 10000, no fill pixel, no gap month) and ``DIR/_oracle/``
(``<zone>-backtest.npz`` of the origins max(1, M − 48) .. M, ``<zone>/<zone>-NNN.tif`` of the months after
the last, ``README.txt`` with the world's knobs), so ``preprocess.py``, ``run.py`` and ``postprocess.py``
score the oracle and the share of the EMA → oracle gap a model closes as on the sample. ``--stats`` prints
the test-period RMSE of the oracle and the baselines relative to the EMA (``planted_statistics``). Same
arguments → byte-identical files: zone i draws only from ``numpy`` generators seeded by (seed, i).

In every world: pixel x, month index m = 1..M, calendar month c(m) = (m + first_month − 2) mod 12
(0 = January). The stored value is round(10000·(S(x, c) + A_m(x) + σ_ε·ε_m(x))), clipped to
[−2000, 10000], ε white noise. The seasonal curve is

    S(x, c) = b(x) + a(x)·cos(2π(c − p(x))/12)

with the base b and the amplitude a uniform over their ranges (``base``, ``amplitude``: a smooth Gaussian
field of ``landscape_scale`` pixels through the normal CDF) and the peak p = ``peak_month`` + ``peak_sd``
× a smooth field. The oracle at origin o for the month o + h is

    S(x, c(o + h)) + E[A_{o+h}(x) | everything drawn up to o]

stored like the observations (rounded, clipped; the rare clipping of observations is not modelled). A is
the planted anomaly of the world; η_m below is a new unit-variance field every month, white noise or a
smooth Gaussian field of ``anomaly_scale`` pixels (``phenocast.synthetic.fields``):

- ``persistence``: per-pixel AR(1), A_1 = σ_A·η_1, A_m = φ·A_{m−1} + √(1 − φ²)·σ_A·η_m (η white).
  Oracle: φ^h·A_o. The damped baseline (EMA + φ₁·a + φ₂·smooth(a)) learns the same from the data; its gap
  to the oracle is the EMA's error on S.
- ``moving``: A = σ_F·F, F_1 = η_1, F_m(x) = φ·F_{m−1}(x − v) + √(1 − φ²)·η_m(x), η smooth, v a constant
  velocity per zone (speed uniform in ``speed`` pixels per month, direction uniform), exact on a periodic
  grid padded by ``pad`` pixels around the zone (a shift multiplies the spectrum by exp(−i k·v)).
  Oracle: φ^h·σ_F·F_o(x − h·v). Only a forecaster that looks at the neighbourhood follows it. Near the
  upwind edge the oracle moves in F_o from the padding, which no forecaster sees.
- ``regional``: A_m(x) = z_m + r_m(x): a zone-wide scalar AR(1) z_1 = σ_z·ξ_1,
  z_m = φ_z·z_{m−1} + √(1 − φ_z²)·σ_z·ξ_m (ξ standard normal), plus r_m = σ_r·(G_m − ⟨G_m⟩), G_m a new
  large-scale unit-variance field every month (``local_scale``) and ⟨·⟩ the mean over the zone.
  Oracle: φ_z^h·z_o. The mean anomaly of one window is a poor estimate of z_o, the mean over the zone (the
  pipeline's context channels) an exact one up to the noise and the EMA's error.
- ``landcover``: classes k(x) from a smooth field (``class_scale``) cut at its quantiles over the zone
  (each class covers its share), each class with its own seasonal curve (base, amplitude, peak month,
  varied by ``base_sd``, ``amplitude_sd``, ``peak_sd``) and its own persistence φ_k; per pixel
  A_1 = σ_A·η_1, A_m = φ_k·A_{m−1} + √(1 − φ_k²)·σ_A·η_m (η white). Oracle: φ_k^h·A_o. The seasonal curve
  shows which φ applies; one φ for the zone (the damped baseline) cannot fit both.
- ``control``: A_m = σ_A·η_m, new every month (η white). Oracle: S. Nothing to learn beyond the seasonal
  curve. The oracle's only edge over the EMA is knowing S exactly: the EMA's error adds Σ w·(A + σ_ε·ε) of
  earlier years (w its weights, α = 0.4), an MSE ratio oracle/EMA of 1/(1 + Σw²) ≈ 0.8 (RMSE ≈ 0.89); the
  climatology, the mean of all earlier years, gets closer to S (RMSE ≈ 0.95 of the EMA's after 8 years). A
  forecaster must not lose to the EMA here.

Each zone draws from three generators spawned from ``SeedSequence([seed, zone index, PLANTED_STREAM])``:
the landscape (S, the classes), the anomaly, and the observation noise. So S depends only on the seed, the
zone, the seasonal knobs and ``pad``, and ε only on the seed and the zone: ``control`` and ``persistence``
of the same seed have the same S and the same ε draws (scaled by their σ_ε).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml
from scipy.special import ndtr

from phenocast.errors import PhenocastError, cli_main
from phenocast.synthetic.fields import SpectralGrid
from phenocast.synthetic.landcover import MONTHS_PER_YEAR, calendar
from phenocast.synthetic.world import FILL_VALUE, VALID_RANGE, to_stored
from phenocast.synthetic.writer import (
    ORACLE_FOLDER,
    check_arguments,
    oracle_first_origin,
    save_oracle,
    write_zones,
    zone_names,
    zone_profile,
    zone_tiles,
)
from phenocast.zones import month_file_name, write_geotiff

PLANTED_WORLDS = {
    "persistence": "per-pixel AR(1) anomalies of known φ: the damped baseline's world",
    "moving": "a smooth anomaly field that drifts a few pixels a month: only a spatial forecaster follows it",
    "regional": "a persistent zone-wide anomaly under large-scale monthly noise: only the zone-wide context "
                "shows it",
    "landcover": "the anomaly's persistence depends on the land cover, which the seasonal curve shows",
    "control": "the seasonal curve and noise only: nothing to learn beyond the seasonal curve",
}
ORACLES = {  # the oracle's anomaly term, for the README
    "persistence": "phi^h * A_o",
    "moving": "phi^h * sigma_F * F_o(x - h*v)",
    "regional": "phi_z^h * z_o",
    "landcover": "phi_class^h * A_o",
    "control": "0 (the oracle is S)",
}
PLANTED_STREAM = 2  # zone i of seed s draws from SeedSequence([s, i, 2]) (the sample's gap months use 1)
STREAMS = ("landscape", "anomaly", "noise")  # one generator each
STATISTICS_METHODS = ("oracle", "damped", "climatology", "persistence")  # --stats: each one's RMSE / the EMA's


# ---- the knobs ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Planted:
    """Knobs every planted world has: the observation noise and the smooth fields.

    ``default_size`` is the zone side ``generate_planted`` uses when no size is given.
    """

    default_size: ClassVar[int] = 64
    noise_sd: float = 0.02  # σ_ε: NDVI, white observation noise
    smoothness: float = 1.5  # spectral exponent ν of the Matérn-like fields
    landscape_scale: float = 16.0  # pixels: the fields of the seasonal curve
    peak_sd: float = 0.5  # months: spatial variation of the peak month
    pad: int = 32  # pixels of periodic padding around the zone for every smooth field

    def check(self) -> None:
        """Raise ``PhenocastError`` for knobs outside their domain."""
        for name, value in self.values().items():
            if isinstance(value, float) and name.endswith(("_sd", "_scale")) and value < 0:
                raise PhenocastError(f"expected knob {name} >= 0, got {value}")
            if name.endswith("persistence") and isinstance(value, float) and not 0 <= value < 1:
                raise PhenocastError(f"expected knob {name} in [0, 1), got {value}")
            if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, float) for v in value) and (
                    value[0] > value[1]):
                raise PhenocastError(f"expected knob {name} as (low, high) with low <= high, got {value}")
        if self.pad < 0:
            raise PhenocastError(f"expected knob pad >= 0, got {self.pad}")

    def values(self) -> dict[str, Any]:
        """The knobs by name."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


@dataclass(frozen=True)
class Seasonal(Planted):
    """Knobs of the one seasonal curve of every world but ``landcover``."""

    base: tuple[float, float] = (0.3, 0.6)  # b: NDVI, uniform over the zone
    amplitude: tuple[float, float] = (0.1, 0.3)  # a: NDVI, uniform over the zone
    peak_month: float = 6.0  # p: calendar month of the peak (0 = January, 6 = July)


@dataclass(frozen=True)
class Persistence(Seasonal):
    """``persistence``: per-pixel AR(1) anomalies. The defaults give oracle/EMA ≈ 0.69 and damped/EMA ≈ 0.78
    (RMSE on the last 24 of 120 months): the damped baseline gets about 70 % of the oracle's gain, the
    rest is the EMA's error on S, which the oracle does not have."""

    anomaly_sd: float = 0.05  # σ_A: NDVI, stationary SD of A
    persistence: float = 0.8  # φ per month
    anomaly_scale: float = 0.0  # pixels: correlation length of η (0 = white)
    noise_sd: float = 0.01  # σ_ε: less noise, a cleaner anomaly at the origin


@dataclass(frozen=True)
class Moving(Seasonal):
    """``moving``: a smooth field drifting at a constant velocity. The defaults give oracle/EMA ≈ 0.5 (RMSE on
    the last 24 of 120 months of 2 zones; 0.43-0.60 over seeds 0-15) and damped/EMA ≈ 0.76."""

    anomaly_sd: float = 0.06  # σ_F: NDVI, stationary SD of A
    persistence: float = 0.95  # φ per month (at 0.9 even a noise-free oracle only reaches ≈ 0.52 of the
    #   EMA's RMSE: 1 − mean φ^2h over leads 1-3 is 0.33 of A's variance, the EMA's error 1.25 of it)
    anomaly_scale: float = 8.0  # pixels: correlation length of η (the field moves 3-4 px a month)
    speed: tuple[float, float] = (3.0, 4.0)  # pixels per month, uniform per zone (direction uniform)
    noise_sd: float = 0.024  # σ_ε: calibrates oracle/EMA
    pad: int = 64  # pixels: what leaves the zone comes back upwind only after 2·pad pixels (≈ 3 years)


@dataclass(frozen=True)
class Regional(Seasonal):
    """``regional``: a zone-wide AR(1) under large-scale monthly noise with zero zone mean. Default zone
    192 pixels: three 64-pixel windows a side."""

    default_size: ClassVar[int] = 192
    anomaly_sd: float = 0.04  # σ_z: NDVI, stationary SD of the zone-wide anomaly z
    persistence: float = 0.9  # φ_z per month
    local_sd: float = 0.05  # σ_r: NDVI, SD of the monthly large-scale noise r (before removing its zone mean)
    local_scale: float = 48.0  # pixels: correlation length of r


@dataclass(frozen=True)
class LandClass:
    """One land-cover class of the ``landcover`` world: its seasonal curve and its anomaly's persistence."""

    name: str
    share: float  # of the zone (the shares are normalised)
    base: float  # b: NDVI
    amplitude: float  # a: NDVI
    peak_month: float  # p: calendar month of the peak (0 = January)
    persistence: float  # φ_k per month


LAND_CLASSES = (
    LandClass("evergreen", 0.5, 0.62, 0.06, 6.0, 0.9),
    LandClass("cropland", 0.5, 0.28, 0.28, 7.0, 0.0),
)


@dataclass(frozen=True)
class Landcover(Planted):
    """``landcover``: per-pixel AR(1) anomalies whose φ depends on the class."""

    classes: tuple[LandClass, ...] = LAND_CLASSES
    class_scale: float = 8.0  # pixels: the field cut into classes
    base_sd: float = 0.03  # NDVI: variation of the base within a class
    amplitude_sd: float = 0.1  # relative variation of the amplitude within a class
    anomaly_sd: float = 0.05  # σ_A: NDVI, stationary SD of A (every class)

    def check(self) -> None:
        super().check()
        if not self.classes or any(land.share <= 0 for land in self.classes):
            raise PhenocastError(f"expected at least one land class, each with a share > 0, got {self.classes}")
        if any(not 0 <= land.persistence < 1 for land in self.classes):
            raise PhenocastError(f"expected every land class's persistence in [0, 1), got {self.classes}")


@dataclass(frozen=True)
class Control(Seasonal):
    """``control``: white anomalies new every month (more noise), nothing persistent."""

    anomaly_sd: float = 0.04  # σ_A: NDVI
    anomaly_scale: float = 0.0  # pixels: correlation length of η (0 = white)


DEFAULT_KNOBS: dict[str, Planted] = {
    "persistence": Persistence(), "moving": Moving(), "regional": Regional(), "landcover": Landcover(),
    "control": Control(),
}


def planted_knobs(world: str, **knobs: Any) -> Planted:
    """The knobs of ``world``: its defaults with ``knobs`` replaced, checked.

    Raises:
      PhenocastError: an unknown world or knob, or a knob outside its domain.
    """
    defaults = _defaults(world)
    _check_names(world, defaults, knobs)
    result = dataclasses.replace(defaults, **knobs)
    result.check()
    return result


def _defaults(world: str) -> Planted:
    if world not in DEFAULT_KNOBS:
        raise PhenocastError(f"expected a planted world among {', '.join(PLANTED_WORLDS)}, got {world!r}")
    return DEFAULT_KNOBS[world]


def _check_names(world: str, defaults: Planted, names: Iterable[str]) -> None:
    unknown = sorted(set(names) - set(defaults.values()))
    if unknown:
        raise PhenocastError(
            f"unknown knob(s) {', '.join(unknown)} of the planted world {world!r}; its knobs are "
            f"{', '.join(defaults.values())}")


def parse_knob(world: str, text: str) -> tuple[str, Any]:
    """``KNOB=VALUE`` (VALUE in YAML: 0.9, [3, 4]) → (knob, value of the knob's type) for ``world``."""
    name, separator, raw = text.partition("=")
    name = name.strip()
    if not separator or not name:
        raise PhenocastError(f"expected --set KNOB=VALUE, got {text!r}")
    defaults = _defaults(world)
    _check_names(world, defaults, [name])
    default = getattr(defaults, name)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise PhenocastError(f"expected a YAML value for knob {name} in {text!r}: {error}") from None

    def number(item: Any) -> bool:
        return isinstance(item, int | float) and not isinstance(item, bool)

    if isinstance(default, float) and number(value):
        return name, float(value)
    if isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return name, value
    if (isinstance(default, tuple) and all(isinstance(item, float) for item in default)
            and isinstance(value, list) and len(value) == len(default) and all(number(item) for item in value)):
        return name, tuple(float(item) for item in value)
    shown = list(default) if isinstance(default, tuple) else default  # as YAML writes it: [3.0, 4.0]
    raise PhenocastError(
        f"expected knob {name} of the planted world {world!r} to be like {shown!r}, got {raw.strip()!r}; "
        f"set it from Python (generate_planted(..., {name}=...)) if it is not a number or a pair")


# ---- one zone, month by month -------------------------------------------------------------------------

def uniform_field(grid: SpectralGrid, rng: np.random.Generator, scale: float, smoothness: float,
                  bounds: tuple[float, float]) -> np.ndarray:
    """A smooth field uniform over [low, high] (a Gaussian field through the normal CDF): float32 (size, size)."""
    low, high = bounds
    return (low + (high - low) * ndtr(grid.field(rng, scale, smoothness))).astype(np.float32)


def seasonal_curves(base: np.ndarray, amplitude: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """S(x, c) = b + a·cos(2π(c − p)/12) for c = 0..11: float32 (12, size, size)."""
    months = np.arange(MONTHS_PER_YEAR, dtype=np.float32)[:, None, None]
    return (base + amplitude * np.cos(2 * np.pi * (months - peak) / MONTHS_PER_YEAR)).astype(np.float32)


class PlantedZone:
    """One zone of a planted world, stepped month by month. Subclasses draw the anomaly A (``draw``) and
    know its conditional mean (``expected``).

    Args:
      knobs: the world's knobs.
      size: pixels per side.
      first_month: calendar month (1..12) of month index 1.
      seed, zone_index: seed the zone's generators (``STREAMS``).
    """

    def __init__(self, knobs: Planted, size: int, first_month: int, seed: int, zone_index: int):
        self.knobs, self.size, self.first_month = knobs, size, first_month
        streams = np.random.SeedSequence([seed, zone_index, PLANTED_STREAM]).spawn(len(STREAMS))
        landscape_rng, self.anomaly_rng, self.noise_rng = (np.random.default_rng(stream) for stream in streams)
        self.grid = SpectralGrid(size, knobs.pad)
        self.month = 0
        self.anomaly = np.zeros((size, size), dtype=np.float32)  # A of the current month
        self.seasonal = self.build_seasonal(landscape_rng)  # S, float32 (12, size, size)

    def build_seasonal(self, rng: np.random.Generator) -> np.ndarray:
        """S of every calendar month from the ``Seasonal`` knobs: float32 (12, size, size)."""
        knobs, grid = self.knobs, self.grid
        base = uniform_field(grid, rng, knobs.landscape_scale, knobs.smoothness, knobs.base)
        amplitude = uniform_field(grid, rng, knobs.landscape_scale, knobs.smoothness, knobs.amplitude)
        peak = knobs.peak_month + knobs.peak_sd * grid.field(rng, knobs.landscape_scale, knobs.smoothness)
        return seasonal_curves(base, amplitude, peak)

    def innovation(self, scale: float) -> np.ndarray:
        """η: a new unit-variance field, white (scale 0) or smooth. float32 (size, size)."""
        if scale == 0:
            return self.anomaly_rng.standard_normal((self.size, self.size), dtype=np.float32)
        return self.grid.field(self.anomaly_rng, scale, self.knobs.smoothness)

    def step(self) -> np.ndarray:
        """Advance one month: draw A_m; return it (float32 (size, size), NDVI)."""
        self.month += 1
        self.anomaly = self.draw()
        return self.anomaly

    def draw(self) -> np.ndarray:
        """A of the new month ``self.month``."""
        raise NotImplementedError

    def expected(self, lead: int) -> np.ndarray:
        """E[A_{month + lead} | everything drawn so far]: float32 (size, size)."""
        raise NotImplementedError

    def curve(self, month: int) -> np.ndarray:
        """S of a month index: float32 (size, size)."""
        return self.seasonal[calendar(month, self.first_month)[0]]

    def observe(self) -> np.ndarray:
        """The stored image of the current month: int16 (size, size), round(10000·(S + A + σ_ε·ε))."""
        values = self.curve(self.month) + self.anomaly
        values += np.float32(self.knobs.noise_sd) * self.noise_rng.standard_normal(
            (self.size, self.size), dtype=np.float32)
        return to_stored(values)

    def stored_forecast(self, lead: int) -> np.ndarray:
        """The oracle in stored units: int16 (size, size) of S + E[A] at month + lead."""
        return to_stored(self.curve(self.month + lead) + self.expected(lead))


class PersistenceZone(PlantedZone):
    """A_m = φ·A_{m−1} + √(1 − φ²)·σ_A·η_m; E[A_{o+h}] = φ^h·A_o."""

    def draw(self) -> np.ndarray:
        knobs = self.knobs
        fresh = np.float32(knobs.anomaly_sd) * self.innovation(knobs.anomaly_scale)
        if self.month == 1:
            return fresh
        phi = knobs.persistence
        return np.float32(phi) * self.anomaly + np.float32(math.sqrt(1 - phi ** 2)) * fresh

    def expected(self, lead: int) -> np.ndarray:
        return np.float32(self.knobs.persistence ** lead) * self.anomaly


class MovingZone(PlantedZone):
    """F_m(x) = φ·F_{m−1}(x − v) + √(1 − φ²)·η_m(x), A = σ_F·F; E[A_{o+h}] = φ^h·σ_F·F_o(x − h·v)."""

    def __init__(self, knobs: Moving, size: int, first_month: int, seed: int, zone_index: int):
        super().__init__(knobs, size, first_month, seed, zone_index)
        speed, angle = self.anomaly_rng.uniform(*knobs.speed), self.anomaly_rng.uniform(0, 2 * np.pi)
        self.velocity = (speed * math.sin(angle), speed * math.cos(angle))  # v: (rows, columns) per month
        self.spectrum: np.ndarray | None = None  # F̂ of the current month

    def draw(self) -> np.ndarray:
        knobs, grid = self.knobs, self.grid
        fresh = grid.spectrum(self.anomaly_rng, knobs.anomaly_scale, knobs.smoothness)
        if self.spectrum is None:
            self.spectrum = fresh
        else:
            phi = knobs.persistence
            self.spectrum = (np.float32(phi) * grid.shift(self.velocity) * self.spectrum
                             + np.float32(math.sqrt(1 - phi ** 2)) * fresh)
        return np.float32(knobs.anomaly_sd) * grid.to_field(self.spectrum)

    def expected(self, lead: int) -> np.ndarray:
        knobs, grid = self.knobs, self.grid
        moved = grid.shift((lead * self.velocity[0], lead * self.velocity[1])) * self.spectrum
        return np.float32(knobs.anomaly_sd * knobs.persistence ** lead) * grid.to_field(moved)


class RegionalZone(PlantedZone):
    """A_m = z_m + σ_r·(G_m − ⟨G_m⟩), z a zone-wide AR(1); E[A_{o+h}] = φ_z^h·z_o."""

    def __init__(self, knobs: Regional, size: int, first_month: int, seed: int, zone_index: int):
        super().__init__(knobs, size, first_month, seed, zone_index)
        self.level = 0.0  # z of the current month

    def draw(self) -> np.ndarray:
        knobs, rng = self.knobs, self.anomaly_rng
        fresh = knobs.anomaly_sd * float(rng.standard_normal())
        phi = knobs.persistence
        self.level = fresh if self.month == 1 else phi * self.level + math.sqrt(1 - phi ** 2) * fresh
        local = self.grid.field(rng, knobs.local_scale, knobs.smoothness)
        local -= np.float32(local.mean(dtype=np.float64))  # zero zone mean: the zone's mean shows z exactly
        return np.float32(self.level) + np.float32(knobs.local_sd) * local

    def expected(self, lead: int) -> np.ndarray:
        return np.full((self.size, self.size), self.knobs.persistence ** lead * self.level, dtype=np.float32)


class LandcoverZone(PlantedZone):
    """Classes with their own seasonal curve and φ_k; A_m = φ_k·A_{m−1} + √(1 − φ_k²)·σ_A·η_m;
    E[A_{o+h}] = φ_k^h·A_o."""

    def build_seasonal(self, rng: np.random.Generator) -> np.ndarray:
        knobs, grid = self.knobs, self.grid
        shares = np.array([land.share for land in knobs.classes], dtype=np.float64)
        score = grid.field(rng, knobs.class_scale, knobs.smoothness)
        bounds = np.quantile(score, np.cumsum(shares / shares.sum())[:-1])  # each class covers its share
        self.classes = np.searchsorted(bounds, score, side="right")  # (size, size) index into knobs.classes
        table = {name: np.array([getattr(land, name) for land in knobs.classes], dtype=np.float32)
                 for name in ("base", "amplitude", "peak_month", "persistence")}
        base = table["base"][self.classes] + knobs.base_sd * grid.field(rng, knobs.landscape_scale,
                                                                        knobs.smoothness)
        amplitude = table["amplitude"][self.classes] * (
            1 + knobs.amplitude_sd * grid.field(rng, knobs.landscape_scale, knobs.smoothness))
        peak = table["peak_month"][self.classes] + knobs.peak_sd * grid.field(rng, knobs.landscape_scale,
                                                                              knobs.smoothness)
        self.persistence = table["persistence"][self.classes]  # φ_k(x), float32 (size, size)
        self.innovation_weight = np.sqrt(1 - self.persistence ** 2).astype(np.float32)
        return seasonal_curves(base, amplitude, peak)

    def draw(self) -> np.ndarray:
        fresh = np.float32(self.knobs.anomaly_sd) * self.innovation(0.0)
        if self.month == 1:
            return fresh
        return self.persistence * self.anomaly + self.innovation_weight * fresh

    def expected(self, lead: int) -> np.ndarray:
        return (self.persistence ** lead * self.anomaly).astype(np.float32)


class ControlZone(PlantedZone):
    """A_m = σ_A·η_m, new every month; E[A_{o+h}] = 0."""

    def draw(self) -> np.ndarray:
        return np.float32(self.knobs.anomaly_sd) * self.innovation(self.knobs.anomaly_scale)

    def expected(self, lead: int) -> np.ndarray:
        return np.zeros((self.size, self.size), dtype=np.float32)


ZONE_CLASSES: dict[str, type[PlantedZone]] = {
    "persistence": PersistenceZone, "moving": MovingZone, "regional": RegionalZone,
    "landcover": LandcoverZone, "control": ControlZone,
}


# ---- writing ------------------------------------------------------------------------------------------

def oracle_readme(world: str, knobs: Planted, size: int, seed: int, first_month: int) -> str:
    """The text of ``_oracle/README.txt`` of a planted world."""
    return (
        f"The oracle of the planted world '{world}' (phenocast.synthetic.planted): {PLANTED_WORLDS[world]}. "
        f"<zone>/<zone>-<NNN>.tif holds, for the months after the zone's last month, the seasonal curve S "
        f"plus the conditional mean of the anomaly given everything drawn up to the last month, "
        f"{ORACLES[world]}; <zone>-backtest.npz holds the same forecast for every origin o from max(1, "
        f"months - 48) to months: origins int64 (n,), leads int64 (horizon,), forecast int16 (n, horizon, "
        f"height, width) of months o + lead in stored units (NDVI x 10000, no fill). No method can beat it "
        f"on average: its error is the observation noise and what the world draws after the origin. "
        f"Zones of {size}x{size} pixels, seed {seed}, month 1 = calendar month {first_month}; knobs: {knobs}")


def _resolve(world: str, size: int | None, zones: int, months: int, seed: int, first_month: int, horizon: int,
             knobs: dict[str, Any]) -> tuple[Planted, int]:
    """The checked knobs and the zone size (the world's default when None)."""
    planted = planted_knobs(world, **knobs)
    size = type(planted).default_size if size is None else size
    check_arguments(zones, months, size, seed, first_month, 0, horizon, label="planted")
    return planted, size


def simulate_zone(world: str, knobs: Planted, index: int, months: int, size: int, seed: int, first_month: int,
                  horizon: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Zone ``index`` of a planted world, month by month.

    Yields:
      For months 1..M: the stored image, int16 (size, size), and from the oracle's first origin
      (``oracle_first_origin``) on the oracle's forecast of the next ``horizon`` months from it, int16
      (horizon, size, size), else None.
    """
    zone = ZONE_CLASSES[world](knobs, size, first_month, seed, index)
    first_origin = oracle_first_origin(months)
    for month in range(1, months + 1):
        zone.step()
        observed = zone.observe()
        oracle = None
        if month >= first_origin:
            oracle = np.stack([zone.stored_forecast(lead) for lead in range(1, horizon + 1)])
        yield observed, oracle


def generate_planted(out_dir: str | Path, world: str, zones: int = 2, months: int = 120, size: int | None = None,
                     seed: int = 0, first_month: int = 7, horizon: int = 3, progress: bool = False,
                     overwrite: bool = False, **knobs: Any) -> list[str]:
    """Write the zones of a planted world and their oracle into ``out_dir`` (the sample's format).

    Args:
      out_dir: the data folder; gets ``Z1/Z1-001.tif`` … and ``_oracle/``.
      world: a name of ``PLANTED_WORLDS``.
      zones, months: how many zones, months per zone.
      size: pixels per side (default: the world's ``default_size``, 64; 192 for ``regional``).
      seed: zone i draws from generators seeded by (seed, i, ``PLANTED_STREAM``).
      first_month: calendar month (1..12) of month index 1.
      horizon: months after each origin the oracle forecasts.
      progress: show a progress bar over months.
      overwrite: replace the zone folders this call writes (and their oracle) if they exist; without it,
        a folder that already holds zone folders is an error.
      **knobs: replace the world's default knobs (``DEFAULT_KNOBS[world]``).

    Returns:
      The zone names, Z1 … Zn.
    """
    planted, size = _resolve(world, size, zones, months, seed, first_month, horizon, knobs)
    software = f"phenocast.synthetic.planted {world}"

    def write_zone(folder: Path, name: str, index: int, tile: tuple[int, int],
                   advance: Callable[[int], object]) -> None:
        profile = zone_profile(tile, size)
        (folder / name).mkdir(parents=True, exist_ok=True)
        first_origin = oracle_first_origin(months)
        forecast = np.empty((months - first_origin + 1, horizon, size, size), dtype=np.int16)  # (origins,
        #   leads, h, w)
        months_drawn = simulate_zone(world, planted, index, months, size, seed, first_month, horizon)
        for month, (observed, oracle) in enumerate(months_drawn, start=1):
            write_geotiff(folder / name / month_file_name(name, month), observed, profile, FILL_VALUE,
                          VALID_RANGE, software=software)
            if oracle is not None:
                forecast[month - first_origin] = oracle
            advance(1)
        save_oracle(folder, name, profile, months, forecast, software)

    return write_zones(out_dir, zone_names(zones), zone_tiles(zones), write_zone,
                       oracle_readme(world, planted, size, seed, first_month), months, f"planted world {world!r}",
                       progress, overwrite)


Oracle = dict[tuple[int, int], np.ndarray]  # {(origin month, lead): int16 (height, width)}, as ``load_oracle``


def planted_stacks(world: str, zones: int = 2, months: int = 120, size: int | None = None, seed: int = 0,
                   first_month: int = 7, horizon: int = 3, **knobs: Any) -> dict[str, tuple[np.ndarray, Oracle]]:
    """The values ``generate_planted`` writes with the same arguments, in memory (no files).

    Returns:
      {zone name: (int16 (months, size, size) stack of month 1.., the oracle {(origin, lead): int16 image}
      as ``phenocast.forecasters.load_oracle`` reads it)}.
    """
    planted, size = _resolve(world, size, zones, months, seed, first_month, horizon, knobs)
    result = {}
    for index, name in enumerate(zone_names(zones)):
        stack = np.empty((months, size, size), dtype=np.int16)  # (months, height, width)
        oracle: Oracle = {}
        months_drawn = simulate_zone(world, planted, index, months, size, seed, first_month, horizon)
        for month, (observed, forecast) in enumerate(months_drawn, start=1):
            stack[month - 1] = observed
            if forecast is not None:
                oracle.update({(month, lead): forecast[lead - 1] for lead in range(1, horizon + 1)})
        result[name] = (stack, oracle)
    return result


# ---- calibration --------------------------------------------------------------------------------------

def backtest_planted(zones: dict[str, tuple[np.ndarray, Oracle | None]], test_months: int = 24,
                     val_months: int = 24, horizon: int = 3) -> dict[str, float]:
    """Test-period RMSE (NDVI) of the EMA, the oracle and the other baselines, pooled over zones and leads.

    Scored like ``python -m phenocast.evaluate`` (``forecasters.backtest_stack``): every origin of the last
    ``test_months`` months, the EMA of α 0.4, the damped φ and the per-pixel α fitted on the months before
    the validation and test periods.

    Args:
      zones: {zone name: (int16 stack (months, height, width) of month 1.., its oracle or None)}.

    Returns:
      {method: RMSE} for ``ema``, ``oracle`` and every baseline.
    """
    from phenocast.config import load_config
    from phenocast.forecasters import backtest_stack
    from phenocast.metrics import Scoreboard

    config = load_config()  # configs/default.yaml
    config.data.test_months, config.data.val_months, config.predict.horizon = test_months, val_months, horizon
    config.sequence.years, config.sequence.origins = 1, "all"  # every origin with a year of history
    needed = test_months + val_months + 2 * MONTHS_PER_YEAR
    board = Scoreboard()
    for name, (stack, oracle) in zones.items():
        if len(stack) < needed:
            raise PhenocastError(
                f"expected at least {needed} months in zone {name} to fit the baselines on two years before "
                f"its {val_months} validation and {test_months} test months, got {len(stack)}")
        backtest_stack(stack, config, name, 1, periods=("test",), scoreboard=board, oracle=oracle)
    return board.summary()["pooled"]


def planted_statistics(data_dir: str | Path, test_months: int = 24, val_months: int = 24, horizon: int = 3
                       ) -> dict[str, float]:
    """``backtest_planted`` of the zones of a data folder (month 1 first, no gaps) and their oracle."""
    from phenocast.forecasters import load_oracle
    from phenocast.zones import discover_zones, read_zone

    zones = {}
    for zone in discover_zones(data_dir, report=None):
        if zone.first != 1 or zone.gaps:
            raise PhenocastError(
                f"expected zone {zone.name} of a planted world to run from month 1 without gaps, found months "
                f"{zone.first}..{zone.last} with {len(zone.gaps)} gap(s) in {zone.folder}")
        zones[zone.name] = (read_zone(zone, FILL_VALUE, VALID_RANGE), load_oracle(data_dir, zone.name))
    return backtest_planted(zones, test_months, val_months, horizon)


def statistics_table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table: per world the EMA's RMSE and each method's RMSE relative to it."""
    header = ["world", "ema_rmse", *(f"{method}/ema" for method in STATISTICS_METHODS)]
    lines = [header]
    for world, pooled in rows.items():
        ema = pooled["ema"]
        lines.append([world, f"{ema:.4f}", *(f"{pooled[method] / ema:.3f}" if pooled.get(method) else "-"
                                             for method in STATISTICS_METHODS)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


# ---- command line -------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m phenocast.synthetic.planted``."""
    parser = argparse.ArgumentParser(prog="python -m phenocast.synthetic.planted",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", required=True, help=f"one of {', '.join(PLANTED_WORLDS)}")
    parser.add_argument("--out", required=True, type=Path, help="data folder to write the zones into")
    parser.add_argument("--zones", type=int, default=2, help="number of zones (default 2)")
    parser.add_argument("--months", type=int, default=120, help="months per zone (default 120)")
    parser.add_argument("--size", type=int, help="pixels per side (default 64; 192 for regional)")
    parser.add_argument("--seed", type=int, default=0, help="the world's seed (default 0)")
    parser.add_argument("--first-month", type=int, default=7, help="calendar month of month index 1 (default 7)")
    parser.add_argument("--horizon", type=int, default=3, help="months the oracle forecasts (default 3)")
    parser.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                        help="replace a knob of the world (repeatable), e.g. --set persistence=0.9")
    parser.add_argument("--overwrite", action="store_true", help="replace existing zone folders")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--stats", action="store_true",
                        help="then print the test-period RMSE of the oracle and the baselines relative to the EMA")
    return parser


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Generate a planted world as the command line says; print what was written. Returns the exit code."""
    arguments = build_parser().parse_args(argv)
    knobs = dict(parse_knob(arguments.world, text) for text in arguments.set)
    started = time.time()
    names = generate_planted(arguments.out, arguments.world, zones=arguments.zones, months=arguments.months,
                             size=arguments.size, seed=arguments.seed, first_month=arguments.first_month,
                             horizon=arguments.horizon, progress=not arguments.quiet,
                             overwrite=arguments.overwrite, **knobs)
    written = [path for name in names for path in (arguments.out / name).glob(f"{name}-*.tif")]
    oracle = [path for path in (arguments.out / ORACLE_FOLDER).rglob("*") if path.is_file()]
    size = type(planted_knobs(arguments.world)).default_size if arguments.size is None else arguments.size
    print(f"wrote the planted world {arguments.world!r}: {len(names)} zone(s) × {arguments.months} months of "
          f"{size}×{size} pixels (seed {arguments.seed}) to {arguments.out}, {len(written)} month files and "
          f"{len(oracle)} oracle files in {time.time() - started:.1f} s")
    if arguments.stats:
        print(statistics_table({arguments.world: planted_statistics(arguments.out, horizon=arguments.horizon)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
