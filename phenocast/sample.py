"""The built-in sample: synthetic zones of monthly MODIS-like NDVI, in exactly the competition's format.

    python -m phenocast.sample --out DIR [--zones 2 --months 120 --size 240 --seed 0 --first-month 7
                                          --missing-months 0 --horizon 3 --overwrite --quiet]

Out: ``DIR/Z1/Z1-001.tif`` … one int16 GeoTIFF per zone and month (NDVI × 10000, fill −3000, no nodata
tag, deflate, the MODIS sinusoidal CRS; zone i lies at the upper-left corner of its own MODIS tile, Z1 at
h26v04 like the real Z1, pixels of 926.625433055833 m), and ``DIR/_oracle/``: the best achievable
forecast (see ``ORACLE_README``). Same arguments → byte-identical files: zone i draws only from
``numpy`` generators seeded by (seed, i).

The generative model. Pixel x, month index m = 1..M, calendar month c = (m + first_month − 2) mod 12
(0 = January) spanning days [d₀, d₁) = [365c/12, 365(c+1)/12), year y = (m + first_month − 2) div 12.
The latent (noise-free) NDVI is

    N(x, m) = b(x) + Σ_e s_e·A_e(x)·L_e(x, m) + w_c(x)·[β(x)·t_m + σ_F·k_F(x)·F_m(x)] + D_m(x)

- Land cover k(x) from thresholds of smooth random fields ("elevation", "moisture", patches): water
  (negative, flat), barren, urban, grassland, single- and double-season cropland, deciduous and evergreen
  forest (``LAND_COVERS``: base b, seasons, sensitivities). Base, amplitudes and dates vary smoothly.
- Seasons are double logistics: an onset edge (s = +1) and an offset edge (s = −1), each with amplitude A,
  date e(x) (day of year) and width r; averaged exactly over the month,
  L_e = r/(d₁ − d₀)·[softplus((d₁ − e − δ)/r) − softplus((d₀ − e − δ)/r)].
- Timing anomalies (early and late years): δ = σ_w·H_w + σ_m·H_m (days; σ per class and edge). Each edge
  has a type t (spring, mid-season, autumn) whose anomaly of year y is drawn in calendar month R_t
  (April, June, August); the months of year y before R_t use δ = 0. H_w (smooth, ``timing_scale``) is new
  each year for the spring; mid-season and autumn inherit: H_w,t = κ·H_w,spring + √(1 − κ²)·new. H_m
  (patchy, ``management_scale``: sowing dates, soil memory) is drawn with the spring and persists:
  H_m,y = ρ·H_m,y−1 + √(1 − ρ²)·new. All H are unit-variance Gaussian fields.
- w_c(x) = 0.3 + 0.7·(the pixel's nominal seasonal curve in calendar month c, scaled to [0, 1]).
- Trend: β(x) (NDVI over the whole series, smooth, class-weighted, zone RMS ``trend_sd``: greening and
  browning), t_m = (m − (M + 1)/2)/M.
- Weather: F a unit-variance Gaussian field (tens of pixels) that persists and drifts at a constant
  velocity v (pixels/month, per zone): F_m(x) = φ·F_{m−1}(x − v) + √(1 − φ²)·η_m(x), computed exactly
  in the Fourier domain of a periodic grid padded around the zone. k_F per class (water ≈ 0).
- Disturbances (fire, clearing) on forest and grassland: each month a Poisson number of elliptic
  patches with uniform centres (hazard p per eligible pixel and month); D_m = ρ_D·D_{m−1} − depth·k_D(x)
  on each new patch, ρ_D = exp(−1/τ) (recovery).

Observed: O = N + σ_ε·ε + σ_A·A_m + clouds, with ε white noise, A_m a smooth field new every month
(atmosphere, compositing), clouds = small blobs (more in winter) pulling the value towards 0.02 by a
uniform fraction; rounded to int16 × 10000 and clipped to [−2000, 10000]; fill −3000 on a few permanent
clusters and on about 0.1 % sporadic pixels and clusters per month; ``missing_months`` gap months (never the
first or the last) are not written.

The oracle at origin o for month τ = o + h is the conditional mean given everything drawn up to o:

    E[N(x, τ)] = b + Σ_e s_e·A_e·E[L_e] + w_c·[β·t_τ + σ_F·k_F·φ^h·F_o(x − h·v)]
                 + ρ_D^h·D_o − p·E[depth]·k_D·Σ_{j<h} ρ_D^j

where E[L_e] uses the drawn δ when the year's anomaly of the edge's type is drawn, δ = 0 when
c(τ) < R_t, and otherwise averages over δ ~ N(μ, s²) given the draws so far (this year's spring drawn:
μ = σ_w·κ·H_w,spring + σ_m·H_m, s² = σ_w²(1 − κ²); else μ = σ_m·ρ·H_m,last, s² = σ_w² + σ_m²(1 − ρ²)),
by Gauss–Hermite quadrature tabulated in (d − e − μ)/r. Anything drawn after o enters at its
expectation; the noise and the clouds are not part of N: no forecast can predict them.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
from scipy.special import ndtri
from tqdm import tqdm

from phenocast.config import Config
from phenocast.errors import PhenocastError, cli_main
from phenocast.io import atomic_path, atomic_write_text
from phenocast.zones import GeoProfile, month_file_name, write_geotiff

FILL_VALUE = -3000
VALID_RANGE = (-2000, 10000)
SCALE = 10000.0
ORACLE_FOLDER = "_oracle"
STAGING_FOLDER = ".sample-partial"  # where a sample is written before it is moved into place
SOFTWARE = "phenocast.sample synthetic MODIS-like NDVI"
MONTHS_PER_YEAR = 12
DAYS_PER_YEAR = 365.0
ORACLE_ORIGINS = 48  # the backtest archive holds origins max(1, months - 48) .. months

# The MODIS sinusoidal grid: 36 × 18 tiles of 1200 pixels of 926.625433055833 m, the grid's upper-left
# corner at (-20015109.354, 10007554.677) m. The CRS is the real files' (a sphere of radius 6371007.181 m);
# written from this WKT it reads back equal (rasterio ``CRS.__eq__``) to that of the competition files.
PIXEL_SIZE = 926.625433055833
TILE_SIZE = 1200 * PIXEL_SIZE
GRID_LEFT, GRID_TOP = -20015109.354, 10007554.677
SINUSOIDAL_WKT = (
    'PROJCS["Sinusoidal Modis Spheroid",GEOGCS["Unknown datum based upon the Authalic Sphere",'
    'DATUM["unknown",SPHEROID["Sphere",6371007.181,0]],PRIMEM["Greenwich",0],'
    'UNIT["degree",0.0174532925199433]],PROJECTION["Sinusoidal"],PARAMETER["longitude_of_center",0],'
    'PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1],AXIS["Easting",EAST],'
    'AXIS["Northing",NORTH]]')
FIRST_TILE = (26, 4)  # (h, v) of the real competition zone Z1

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
    trend: float  # weight of the trend field β
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


@dataclass(frozen=True)
class World:
    """The knobs of the generative model (symbols as in the module docstring).

    The defaults put zones of 240² or 1200² pixels and 120 or 230 months inside the ranges of real MODIS
    and GIMMS zones' anomaly statistics (SD, lag-1 and spatial correlations, EMA/climatology and
    EMA/persistence backtest ratios), near their middle, for every seed tried (0-5).
    """

    land_covers: tuple[LandCover, ...] = LAND_COVERS
    reveal_month: tuple[int, int, int] = (3, 5, 7)  # R_t (0 = January) of spring, mid-season, autumn
    landscape_scale: float = 40.0  # pixels: elevation and moisture fields
    patch_scale: float = 10.0  # pixels: land-cover patches
    date_sd: float = 6.0  # days: spatial variation of the edge dates
    amplitude_sd: float = 0.12  # relative spatial variation of the amplitudes
    base_sd: float = 0.03  # spatial variation of the base
    timing_scale: float = 80.0  # pixels: H_w
    timing_inheritance: float = 0.85  # κ
    management_scale: float = 16.0  # pixels: H_m
    management_persistence: float = 0.65  # ρ
    timing_factor: float = 1.0  # multiplies every class's σ_w
    management_factor: float = 1.0  # multiplies every class's σ_m
    amplitude_factor: float = 1.0  # multiplies every season's amplitude
    trend_sd: float = 0.11  # NDVI over the whole series (the same for any number of months)
    trend_scale: float = 30.0  # pixels
    weather_sd: float = 0.035  # σ_F
    weather_phi: float = 0.8  # φ per month
    weather_scale: float = 50.0  # pixels
    weather_speed: tuple[float, float] = (2.0, 4.0)  # pixels / month, drawn per zone
    smoothness: float = 1.5  # spectral exponent ν of the Matérn-like fields
    disturbance_rate: float = 0.0018  # fraction of eligible pixels disturbed per year
    disturbance_depth: tuple[float, float] = (0.15, 0.35)  # NDVI, uniform
    disturbance_radius: tuple[float, float] = (1.5, 6.0)  # pixels, semi-major axis, uniform
    recovery_months: float = 36.0  # τ
    noise_sd: float = 0.02  # σ_ε
    atmosphere_sd: float = 0.018  # σ_A
    atmosphere_scale: float = 40.0  # pixels
    cloud_fraction: float = 0.003  # mean share of cloudy pixels per month
    cloud_scale: float = 2.0  # pixels
    cloud_depth: tuple[float, float] = (0.2, 0.8)  # fraction of the way to 0.02, uniform
    sporadic_fill: float = 0.0004  # single fill pixels per pixel and month
    fill_clusters: float = 5e-5  # sporadic fill clusters per pixel and month
    permanent_clusters: float = 1e-5  # permanent fill clusters per pixel (at least one per zone)
    pad: int = 96  # pixels of periodic padding around the zone for the drifting weather


DEFAULT_WORLD = World()


# ---- geometry -----------------------------------------------------------------------------------------

def zone_names(zones: int) -> list[str]:
    """Z1 … Zn."""
    return [f"Z{index + 1}" for index in range(zones)]


def zone_tiles(zones: int) -> list[tuple[int, int]]:
    """A different MODIS tile (h, v) per zone: h26v04 first, then the nearest tiles, mid-latitudes first."""
    tiles = [(h, v) for v in range(18) for h in range(36)]
    tiles.sort(key=lambda tile: (2 * abs(tile[1] - FIRST_TILE[1] - 0.4) + abs(tile[0] - FIRST_TILE[0]), tile))
    if zones > len(tiles):
        raise PhenocastError(f"expected at most {len(tiles)} sample zones (one MODIS tile each), got {zones}")
    return tiles[:zones]


def zone_profile(tile: tuple[int, int], size: int) -> GeoProfile:
    """The georeference of a zone of ``size`` pixels at the upper-left corner of MODIS tile (h, v)."""
    h, v = tile
    return GeoProfile(height=size, width=size, crs=SINUSOIDAL_WKT,
                      transform=(PIXEL_SIZE, 0.0, GRID_LEFT + h * TILE_SIZE, 0.0, -PIXEL_SIZE,
                                 GRID_TOP - v * TILE_SIZE))


def calendar(month: int, first_month: int) -> tuple[int, int]:
    """Month index (1-based) → (calendar month 0..11, year 0..)."""
    offset = month - 1 + first_month - 1
    return offset % MONTHS_PER_YEAR, offset // MONTHS_PER_YEAR


def month_days(calendar_month: int) -> tuple[float, float]:
    """The [start, end) day of year of a calendar month (12 equal months of 365/12 days)."""
    return (DAYS_PER_YEAR * calendar_month / MONTHS_PER_YEAR,
            DAYS_PER_YEAR * (calendar_month + 1) / MONTHS_PER_YEAR)


# ---- random fields ------------------------------------------------------------------------------------

class SpectralGrid:
    """Stationary Gaussian fields on a periodic grid of side ``period`` ≥ size + 2·pad around the zone.

    Args:
      size: the zone's pixels per side (the fields returned are (size, size)).
      pad: pixels of padding on every side before the grid wraps around.
    """

    def __init__(self, size: int, pad: int):
        self.size = size
        self.period = scipy.fft.next_fast_len(size + 2 * pad, real=True)
        self.wavenumber_y = (2 * np.pi * np.fft.fftfreq(self.period))[:, None]  # (period, 1) rad/pixel
        self.wavenumber_x = (2 * np.pi * np.fft.rfftfreq(self.period))[None, :]  # (1, period//2 + 1)
        self._amplitudes: dict[tuple[float, float], np.ndarray] = {}
        self._shifts: dict[tuple[float, float], np.ndarray] = {}

    def amplitude(self, scale: float, smoothness: float) -> np.ndarray:
        """√(power spectrum) of a Matérn-like field of correlation length ``scale``, for unit variance."""
        key = (scale, smoothness)
        if key not in self._amplitudes:
            squared = self.wavenumber_y ** 2 + self.wavenumber_x ** 2  # (period, period//2 + 1)
            power = (1 + squared * scale ** 2) ** (-(smoothness + 1))
            columns = np.full(power.shape[1], 2.0)  # the half-plane stands for both halves, except
            columns[0] = 1.0  # the zero and (even period) Nyquist columns
            if self.period % 2 == 0:
                columns[-1] = 1.0
            variance = float((power * columns).sum()) / self.period ** 2  # Parseval, unit white noise
            self._amplitudes[key] = np.sqrt(power / variance).astype(np.float32)
        return self._amplitudes[key]

    def spectrum(self, rng: np.random.Generator, scale: float, smoothness: float) -> np.ndarray:
        """The rfft2 of a new unit-variance field: complex64 (period, period//2 + 1)."""
        white = rng.standard_normal((self.period, self.period), dtype=np.float32)
        return scipy.fft.rfft2(white) * self.amplitude(scale, smoothness)

    def to_field(self, spectrum: np.ndarray) -> np.ndarray:
        """The zone part of the field with this spectrum: float32 (size, size)."""
        full = scipy.fft.irfft2(spectrum, s=(self.period, self.period))
        return np.ascontiguousarray(full[: self.size, : self.size], dtype=np.float32)

    def field(self, rng: np.random.Generator, scale: float, smoothness: float = 1.5) -> np.ndarray:
        """A new unit-variance field on the zone: float32 (size, size)."""
        return self.to_field(self.spectrum(rng, scale, smoothness))

    def shift(self, velocity: tuple[float, float], months: int) -> np.ndarray:
        """The Fourier factor that moves a field by ``months`` × velocity (rows, columns) pixels."""
        key = (velocity, months)
        if key not in self._shifts:
            phase = self.wavenumber_y * (velocity[0] * months) + self.wavenumber_x * (velocity[1] * months)
            self._shifts[key] = np.exp(-1j * phase).astype(np.complex64)
        return self._shifts[key]


# ---- seasonal curves ----------------------------------------------------------------------------------

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
    """The mean over days [start, end) of the logistic 1/(1 + exp(−(day − date)/width)), exactly."""
    upper = softplus((np.float32(end) - date) * np.float32(1 / width))
    upper -= softplus((np.float32(start) - date) * np.float32(1 / width))
    upper *= np.float32(width / (end - start))
    return upper


class ExpectedSoftplus:
    """E[softplus(u − s·Z)], Z ~ N(0, 1), tabulated in u for one spread s (Gauss–Hermite, 48 nodes).

    Stored as the residual E[…] − max(u, 0) on a uniform grid of step 1/200 over [−48, 48] (zero
    beyond), read back by linear interpolation (error < 3e-6).
    """

    LIMIT, STEPS_PER_UNIT = 48.0, 200

    def __init__(self, spread: float):
        grid = np.linspace(-self.LIMIT, self.LIMIT, int(2 * self.LIMIT * self.STEPS_PER_UNIT) + 1)
        nodes, weights = np.polynomial.hermite.hermgauss(48)
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
    """E[``edge_mean``(date + δ)] for δ ~ N(0, spread²) (days)."""
    key = round(spread / width, 9)
    if key not in _EXPECTED_SOFTPLUS:
        _EXPECTED_SOFTPLUS[key] = ExpectedSoftplus(key)
    table = _EXPECTED_SOFTPLUS[key]
    upper = table((np.float32(end) - date) * np.float32(1 / width))
    upper -= table((np.float32(start) - date) * np.float32(1 / width))
    upper *= np.float32(width / (end - start))
    return upper


@dataclass
class _Edge:
    """One edge of one land-cover class, for the pixels of that class."""

    sign: float  # +1 onset, −1 offset
    kind: int  # index into EDGE_TYPES
    width: float  # r, days
    timing_sd: float  # σ_w, days
    management_sd: float  # σ_m, days
    amplitude: np.ndarray  # A, (class pixels,)
    date: np.ndarray  # e, (class pixels,) day of year


@dataclass(frozen=True)
class _Timing:
    """What is known of one edge type's anomaly δ = σ_w·H_w + σ_m·H_m for one month.

    δ ~ N(σ_w·``weather`` + σ_m·``management``, σ_w²·``weather_left`` + σ_m²·``management_left``),
    the fields (flat; None = 0) being the conditional means of H_w and H_m and the ``_left`` numbers their
    conditional variances (0 when drawn). ``zero``: the month precedes the draw, δ = 0.
    """

    zero: bool = False
    weather: np.ndarray | None = None
    management: np.ndarray | None = None
    weather_left: float = 0.0
    management_left: float = 0.0


ZERO_TIMING = _Timing(zero=True)


# ---- one zone -----------------------------------------------------------------------------------------

class ZoneWorld:
    """One zone's static landscape and its processes, stepped month by month.

    Args:
      size: pixels per side.
      months: M, the number of months (the trend is centred on the series).
      first_month: calendar month (1..12) of month index 1.
      seed, zone_index: seed the zone's generators (one per process, so each is drawn independently).
      world: the model's knobs.
    """

    def __init__(self, size: int, months: int, first_month: int, seed: int, zone_index: int,
                 world: World = DEFAULT_WORLD):
        self.size, self.months, self.first_month, self.world = size, months, first_month, world
        streams = np.random.SeedSequence([seed, zone_index]).spawn(6)
        (landscape_rng, self.timing_rng, self.weather_rng, self.disturbance_rng, self.noise_rng,
         fill_rng) = [np.random.default_rng(stream) for stream in streams]
        self.grid = SpectralGrid(size, world.pad)  # padded: landscape, timing and the drifting weather
        self.noise_grid = SpectralGrid(size, 0)  # unpadded: the month-by-month observation noise fields
        self._build_landscape(landscape_rng)
        permanent_clusters = max(1, fill_rng.poisson(world.permanent_clusters * size ** 2))
        self.permanent = _clusters(fill_rng, size, permanent_clusters, (1, 16))  # (size, size): never valid
        speed, angle = self.weather_rng.uniform(*world.weather_speed), self.weather_rng.uniform(0, 2 * np.pi)
        self.velocity = (speed * math.sin(angle), speed * math.cos(angle))  # v, (rows, columns) per month
        self.month = 0
        self.weather: np.ndarray | None = None  # F̂: the spectrum of F at the current month
        self.weather_field = np.zeros(size * size, dtype=np.float32)  # F, flat
        self.disturbed = np.zeros(size * size, dtype=np.float32)  # D, flat
        self.timing_weather: list[np.ndarray | None] = [None] * len(EDGE_TYPES)  # last H_w per edge type
        self.timing_management: np.ndarray | None = None  # last H_m, flat
        self.timing_year: list[int | None] = [None] * len(EDGE_TYPES)  # the year of each last draw

    # -- the static landscape -------------------------------------------------------------------------
    def _build_landscape(self, rng: np.random.Generator) -> None:
        world, grid, size = self.world, self.grid, self.size
        names = [cover.name for cover in world.land_covers]
        share = {cover.name: cover.fraction / sum(c.fraction for c in world.land_covers)
                 for cover in world.land_covers}
        elevation = grid.field(rng, world.landscape_scale)
        moisture = grid.field(rng, world.landscape_scale)
        patches = [grid.field(rng, world.patch_scale) for _ in range(4)]
        towns = grid.field(rng, world.patch_scale / 2)
        classes = np.full((size, size), -1, dtype=np.int8)

        def take(name: str, score: np.ndarray, fraction: float, among: np.ndarray) -> None:
            """Give class ``name`` to the top ``fraction`` of ``among`` by ``score``."""
            if fraction > 0 and among.any():
                threshold = np.quantile(score[among], 1 - min(1.0, fraction))
                classes[among & (score >= threshold)] = names.index(name)

        take("water", -elevation, share["water"], classes < 0)  # lakes in the lowest places
        left = 1 - share["water"]
        take("urban", towns, share["urban"] / left, classes < 0)
        left -= share["urban"]
        forest = share["deciduous forest"] + share["evergreen forest"]
        take("deciduous forest", elevation + 0.6 * patches[0], forest / left, classes < 0)  # uplands
        left -= forest
        take("evergreen forest", elevation + 0.8 * patches[1], share["evergreen forest"] / forest,
             classes == names.index("deciduous forest"))
        dryness = -moisture + 0.6 * patches[2]
        take("barren", dryness, share["barren"] / left, classes < 0)
        left -= share["barren"]
        take("grassland", dryness, share["grassland"] / left, classes < 0)
        cropland = share["cropland"] + share["double cropland"]
        take("double cropland", patches[3], share["double cropland"] / cropland, classes < 0)
        classes[classes < 0] = names.index("cropland")
        self.classes = classes  # (size, size) index into world.land_covers

        timing = grid.field(rng, 2 * world.landscape_scale).ravel()  # later springs uphill
        amplitude = grid.field(rng, 2 * world.patch_scale).ravel()
        base = grid.field(rng, 2 * world.patch_scale).ravel()
        trend = grid.field(rng, world.trend_scale) + 0.5 * grid.field(rng, world.trend_scale / 3)
        trend += 0.3 * rng.standard_normal()  # the zone greens or browns as a whole
        trend = (trend / np.sqrt(np.mean(trend ** 2))).ravel()  # zone RMS 1

        count = size * size
        self.class_pixels = [np.flatnonzero(classes.ravel() == k) for k in range(len(names))]
        self.base = np.zeros(count, dtype=np.float32)  # b
        self.trend = np.zeros(count, dtype=np.float32)  # β
        self.weather_coefficient = np.zeros(count, dtype=np.float32)  # σ_F·k_F
        self.disturbance_weight = np.zeros(count, dtype=np.float32)  # k_D
        self.edges: list[list[_Edge]] = []  # per class
        for cover, pixels in zip(world.land_covers, self.class_pixels):
            variation = 0.3 if cover.name == "water" else 1.0
            self.base[pixels] = cover.base + variation * world.base_sd * base[pixels]
            self.trend[pixels] = world.trend_sd * cover.trend * trend[pixels]
            self.weather_coefficient[pixels] = world.weather_sd * cover.weather
            self.disturbance_weight[pixels] = cover.disturbance
            shift = world.date_sd * timing[pixels]
            edges = []
            for season, (height, onset, onset_width, offset, offset_width) in enumerate(cover.seasons):
                scaled = (world.amplitude_factor * height * (1 + world.amplitude_sd * amplitude[pixels])
                          ).astype(np.float32)
                for position, (sign, date, width) in enumerate(
                        ((1.0, onset + shift, onset_width), (-1.0, offset - 0.5 * shift, offset_width))):
                    index = 2 * season + position
                    edges.append(_Edge(
                        sign=sign, kind=EDGE_TYPES.index(cover.edge_types[index]), width=width,
                        timing_sd=world.timing_factor * cover.timing_sd[index],
                        management_sd=world.management_factor * cover.management_sd,
                        amplitude=scaled, date=date.astype(np.float32)))
            self.edges.append(edges)
        # w_c = 0.3 + 0.7·(nominal seasonal curve scaled to [0, 1]), (12, pixels)
        curves = np.stack([self._seasonal(month, None) for month in range(MONTHS_PER_YEAR)])
        low, high = curves.min(axis=0), curves.max(axis=0)
        self.season_weight = (0.3 + 0.7 * (curves - low) / np.maximum(high - low, 1e-3)).astype(np.float32)

    # -- the latent NDVI ------------------------------------------------------------------------------
    def _seasonal(self, calendar_month: int, timing: list[_Timing] | None) -> np.ndarray:
        """Σ_e s·A·E[L_e] for one calendar month, given what is known of each edge type's anomaly (None:
        δ = 0). Flat float32 (pixels,)."""
        start, end = month_days(calendar_month)
        out = np.zeros(self.size * self.size, dtype=np.float32)
        for pixels, edges in zip(self.class_pixels, self.edges):
            if pixels.size == 0:
                continue
            total = np.zeros(pixels.size, dtype=np.float32)
            for edge in edges:
                known = ZERO_TIMING if timing is None else timing[edge.kind]
                date = edge.date
                spread = 0.0
                if not known.zero:
                    if known.weather is not None and edge.timing_sd:
                        date = date + np.float32(edge.timing_sd) * known.weather[pixels]
                    if known.management is not None and edge.management_sd:
                        date = date + np.float32(edge.management_sd) * known.management[pixels]
                    spread = math.sqrt(edge.timing_sd ** 2 * known.weather_left
                                       + edge.management_sd ** 2 * known.management_left)
                if spread > 0:
                    value = expected_edge_mean(date, edge.width, spread, start, end)
                else:
                    value = edge_mean(date, edge.width, start, end)
                value *= edge.amplitude
                if edge.sign > 0:
                    total += value
                else:
                    total -= value
            out[pixels] = total
        return out

    def latent(self, month: int, timing: list[_Timing], weather: np.ndarray, disturbed: np.ndarray
               ) -> np.ndarray:
        """(The expectation of) N(x, month): flat float32 NDVI, given what is known of each edge type's
        timing anomaly, the weather F (flat, unit variance) and the disturbance D (flat, NDVI)."""
        calendar_month, _ = calendar(month, self.first_month)
        progress = np.float32((month - (self.months + 1) / 2) / self.months)  # t_m
        out = self._seasonal(calendar_month, timing)
        out += self.base
        slow = self.trend * progress
        slow += self.weather_coefficient * weather
        slow *= self.season_weight[calendar_month]
        out += slow
        out += disturbed
        return out

    # -- stepping -------------------------------------------------------------------------------------
    def step(self) -> np.ndarray:
        """Advance one month: draw what this month draws; return its latent NDVI (flat float32)."""
        world, grid = self.world, self.grid
        self.month += 1
        calendar_month, year = calendar(self.month, self.first_month)
        for kind, reveal in enumerate(world.reveal_month):  # the year's timing anomalies, in their month
            if calendar_month == reveal or (self.month == 1 and calendar_month > reveal):
                self._draw_timing(kind, year)
        innovation = grid.spectrum(self.weather_rng, world.weather_scale, world.smoothness)
        if self.weather is None:
            self.weather = innovation  # the stationary distribution
        else:
            phi = world.weather_phi
            self.weather = (np.float32(phi) * grid.shift(self.velocity, 1) * self.weather
                            + np.float32(math.sqrt(1 - phi ** 2)) * innovation)
        self.weather_field = grid.to_field(self.weather).ravel()
        self._disturb()
        timing = [self._known_timing(kind, calendar_month, year) for kind in range(len(EDGE_TYPES))]
        return self.latent(self.month, timing, self.weather_field, self.disturbed)

    def _draw_timing(self, kind: int, year: int) -> None:
        """Draw edge type ``kind``'s anomaly of ``year`` (the spring also draws H_m)."""
        world, rng = self.world, self.timing_rng
        fresh = self.grid.field(rng, world.timing_scale).ravel()
        if kind == 0:
            self.timing_weather[0] = fresh
            rho = world.management_persistence
            new = self.grid.field(rng, world.management_scale).ravel()
            previous = self.timing_management
            self.timing_management = new if previous is None else (
                np.float32(rho) * previous + np.float32(math.sqrt(1 - rho ** 2)) * new)
        else:
            kappa = world.timing_inheritance
            self.timing_weather[kind] = (np.float32(kappa) * self.timing_weather[0]
                                         + np.float32(math.sqrt(1 - kappa ** 2)) * fresh)
        self.timing_year[kind] = year

    def _known_timing(self, kind: int, calendar_month: int, year: int) -> _Timing:
        """What the draws so far say about edge type ``kind``'s anomaly in (calendar month, year)."""
        world = self.world
        if calendar_month < world.reveal_month[kind]:
            return ZERO_TIMING
        if self.timing_year[kind] == year:
            return _Timing(weather=self.timing_weather[kind], management=self.timing_management)
        if self.timing_year[0] == year:  # this year's spring is drawn, this edge type not yet
            kappa = world.timing_inheritance
            return _Timing(weather=np.float32(kappa) * self.timing_weather[0],
                           management=self.timing_management, weather_left=1 - kappa ** 2)
        if self.timing_management is None:
            return _Timing(weather_left=1.0, management_left=1.0)
        rho = world.management_persistence
        return _Timing(management=np.float32(rho) * self.timing_management, weather_left=1.0,
                       management_left=1 - rho ** 2)

    def _disturbance_constants(self) -> tuple[float, float, float]:
        """(ρ_D per month, hazard p per eligible pixel and month, expected patches per month)."""
        world = self.world
        low, high = world.disturbance_radius
        mean_area = math.pi * (low * low + low * high + high * high) / 3 * 0.75  # E[major²]·E[minor/major]
        hazard = world.disturbance_rate / MONTHS_PER_YEAR
        centre_area = (self.size + 2 * high) ** 2  # centres anywhere a patch can reach the zone from
        return math.exp(-1 / world.recovery_months), hazard, hazard * centre_area / mean_area

    def _disturb(self) -> None:
        """D ← ρ_D·D, then subtract this month's new patches."""
        world, size, rng = self.world, self.size, self.disturbance_rng
        decay, _, patches = self._disturbance_constants()
        self.disturbed *= np.float32(decay)
        reach = world.disturbance_radius[1]
        image = self.disturbed.reshape(size, size)
        weight = self.disturbance_weight.reshape(size, size)
        for _ in range(rng.poisson(patches)):
            centre_y, centre_x = rng.uniform(-reach, size + reach, size=2)
            major = rng.uniform(*world.disturbance_radius)
            minor = major * rng.uniform(0.5, 1.0)
            angle = rng.uniform(0, np.pi)
            depth = rng.uniform(*world.disturbance_depth)
            top, bottom = max(0, math.floor(centre_y - reach)), min(size, math.ceil(centre_y + reach) + 1)
            left, right = max(0, math.floor(centre_x - reach)), min(size, math.ceil(centre_x + reach) + 1)
            if top >= bottom or left >= right:
                continue
            rows = np.arange(top, bottom)[:, None] + 0.5 - centre_y
            columns = np.arange(left, right)[None, :] + 0.5 - centre_x
            along = rows * math.sin(angle) + columns * math.cos(angle)
            across = -rows * math.cos(angle) + columns * math.sin(angle)
            inside = (along / major) ** 2 + (across / minor) ** 2 <= 1
            image[top:bottom, left:right] -= np.float32(depth) * weight[top:bottom, left:right] * inside

    def forecast(self, lead: int) -> np.ndarray:
        """The oracle: E[N(x, month + lead) | everything drawn up to the current month], flat float32."""
        world, grid = self.world, self.grid
        target = self.month + lead
        calendar_month, year = calendar(target, self.first_month)
        timing = [self._known_timing(kind, calendar_month, year) for kind in range(len(EDGE_TYPES))]
        weather = grid.to_field(np.float32(world.weather_phi ** lead) * grid.shift(self.velocity, lead)
                                * self.weather).ravel()
        decay, hazard, _ = self._disturbance_constants()
        future = hazard * sum(world.disturbance_depth) / 2 * sum(decay ** j for j in range(lead))
        disturbed = np.float32(decay ** lead) * self.disturbed - np.float32(future) * self.disturbance_weight
        return self.latent(target, timing, weather, disturbed)

    def stored_forecast(self, lead: int) -> np.ndarray:
        """The oracle in stored units: int16 (size, size), fill where the zone is permanently nodata."""
        stored = _to_stored(self.forecast(lead).reshape(self.size, self.size))
        stored[self.permanent] = FILL_VALUE
        return stored

    def observe(self, latent: np.ndarray) -> np.ndarray:
        """The observed image of the current month: int16 (size, size), stored units, with fill."""
        world, size, rng, grid = self.world, self.size, self.noise_rng, self.noise_grid
        calendar_month, _ = calendar(self.month, self.first_month)
        values = latent.reshape(size, size).copy()
        values += np.float32(world.noise_sd) * rng.standard_normal((size, size), dtype=np.float32)
        values += np.float32(world.atmosphere_sd) * grid.field(rng, world.atmosphere_scale)
        winter = math.cos(2 * np.pi * (calendar_month + 0.5) / MONTHS_PER_YEAR)  # +1 mid-January
        share = world.cloud_fraction * (1 + 0.6 * winter)
        clouds = grid.field(rng, world.cloud_scale) > np.float32(ndtri(1 - share))
        pull = rng.uniform(*world.cloud_depth, size=int(clouds.sum())).astype(np.float32)
        values[clouds] -= pull * (values[clouds] - np.float32(0.02))
        stored = _to_stored(values)
        stored[self.permanent] = FILL_VALUE
        stored[rng.random((size, size), dtype=np.float32) < np.float32(world.sporadic_fill)] = FILL_VALUE
        stored[_clusters(rng, size, rng.poisson(world.fill_clusters * size * size), (2, 40))] = FILL_VALUE
        return stored


def _to_stored(values: np.ndarray) -> np.ndarray:
    """NDVI (float32) → int16 × 10000, rounded half away from zero, clipped to the valid range."""
    scaled = values * np.float32(SCALE)
    rounded = np.copysign(np.floor(np.abs(scaled) + np.float32(0.5)), scaled)
    return np.clip(rounded, *VALID_RANGE).astype(np.int16)


def _clusters(rng: np.random.Generator, size: int, count: int, steps: tuple[int, int]) -> np.ndarray:
    """A (size, size) mask of ``count`` random connected blobs, each a random walk of ``steps`` steps."""
    mask = np.zeros((size, size), dtype=bool)
    moves = ((0, 1), (1, 0), (0, -1), (-1, 0))
    for _ in range(count):
        row, column = int(rng.integers(size)), int(rng.integers(size))
        for move in rng.integers(0, 4, size=int(rng.integers(*steps))):
            mask[row, column] = True
            row = min(size - 1, max(0, row + moves[move][0]))
            column = min(size - 1, max(0, column + moves[move][1]))
    return mask
# ---- writing ------------------------------------------------------------------------------------------

ORACLE_README = """\
The oracle of the built-in sample (phenocast.sample): the best achievable forecast of each zone.
<zone>/<zone>-<NNN>.tif holds, for the months after the zone's last month, the conditional mean of
the latent (noise-free, cloud-free) NDVI given everything the generator had drawn up to the last month:
its weather and its drift, its disturbances, the timing anomalies of the seasons already drawn, its
trends; anything drawn later enters at its expectation. <zone>-backtest.npz holds the same
forecast for every origin o from max(1, months - 48) to months: origins int64 (n,), leads int64
(horizon,), forecast int16 (n, horizon, height, width) of months o + lead in stored units (NDVI x 10000,
fill -3000 where the zone is permanently nodata). No method can beat it on average: its error is the
observation noise, the clouds and what the world draws after the origin.
"""


def zone_folders(data_dir: str | Path) -> list[Path]:
    """The zone folders of ``data_dir`` (names not starting with ``_`` or ``.``); [] if it is missing."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return []
    return sorted(path for path in data_dir.iterdir() if path.is_dir() and path.name[0] not in "._")


def _check_arguments(zones: int, months: int, size: int, seed: int, first_month: int, missing_months: int,
                     horizon: int) -> None:
    if zones < 1:
        raise PhenocastError(f"expected at least 1 sample zone, got zones = {zones}")
    if months < 24:
        raise PhenocastError(
            f"expected at least 24 sample months (two years for a climatology), got {months}")
    if months > 999:
        raise PhenocastError(f"expected at most 999 sample months (3-digit file names), got {months}")
    if size < 8:
        raise PhenocastError(f"expected a sample size of at least 8 pixels, got {size}")
    if seed < 0:
        raise PhenocastError(f"expected a seed >= 0, got {seed}")
    if not 1 <= first_month <= 12:
        raise PhenocastError(f"expected first_month to be a calendar month 1..12, got {first_month}")
    if not 0 <= missing_months <= months - 2:
        raise PhenocastError(
            f"expected 0..{months - 2} missing months (the first and last month are always written), got "
            f"{missing_months}")
    if not 1 <= horizon <= 12:
        raise PhenocastError(f"expected an oracle horizon of 1..12 months, got {horizon}")


def generate_sample(out_dir: str | Path, zones: int = 2, months: int = 120, size: int = 240, seed: int = 0,
                    first_month: int = 7, missing_months: int = 0, horizon: int = 3, progress: bool = True,
                    overwrite: bool = False) -> list[str]:
    """Write the sample zones and their oracle into ``out_dir``.

    Args:
      out_dir: the data folder; gets ``Z1/Z1-001.tif`` … and ``_oracle/``.
      zones, months, size: how many zones, months per zone, pixels per side.
      seed: the world's seed; zone i draws from generators seeded by (seed, i).
      first_month: calendar month (1..12) of month index 1.
      missing_months: whole months per zone left unwritten (gaps; never the first or last month).
      horizon: months after each origin the oracle forecasts.
      progress: show a progress bar over months.
      overwrite: replace the zone folders this call writes (and their oracle) if they exist; without
        it, a folder that already holds zone folders is an error. Everything is written under
        ``out_dir/.sample-partial/`` first and moved into place at the end, so an interrupted run leaves
        no zone folder behind (rerunning starts over).

    Returns:
      The zone names, Z1 … Zn.
    """
    _check_arguments(zones, months, size, seed, first_month, missing_months, horizon)
    out_dir = Path(out_dir)
    names = zone_names(zones)
    existing = zone_folders(out_dir)
    if existing and not overwrite:
        listed = ", ".join(path.name for path in existing[:5]) + (", …" if len(existing) > 5 else "")
        raise PhenocastError(
            f"expected a data folder without zone folders to write the sample into, found {len(existing)} "
            f"({listed}) in {out_dir}; choose another folder or pass --overwrite (overwrite=True)")
    staging = out_dir / STAGING_FOLDER  # ignored by zone discovery: an interrupted run leaves no zone
    if staging.exists():
        shutil.rmtree(staging)
    tiles = zone_tiles(zones)
    with tqdm(total=zones * months, desc="sample", unit="month", disable=not progress) as bar:
        for index, (name, tile) in enumerate(zip(names, tiles)):
            bar.set_postfix_str(name)
            _write_zone(staging, name, index, tile, months, size, seed, first_month, missing_months, horizon,
                        bar.update)
    atomic_write_text(staging / ORACLE_FOLDER / "README.txt", " ".join(ORACLE_README.split()) + "\n")
    # move into place: the oracle first, the zone folders last (a zone folder means a finished sample)
    moves = [Path(ORACLE_FOLDER) / item for name in names for item in (name, f"{name}-backtest.npz")]
    moves += [Path(ORACLE_FOLDER) / "README.txt", *(Path(name) for name in names)]
    (out_dir / ORACLE_FOLDER).mkdir(parents=True, exist_ok=True)
    for item in moves:
        target = out_dir / item
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staging / item, target)
    shutil.rmtree(staging)
    return names


def _write_zone(out_dir: Path, name: str, index: int, tile: tuple[int, int], months: int, size: int,
                seed: int, first_month: int, missing_months: int, horizon: int, advance) -> None:
    """Generate one zone month by month: its files, its oracle GeoTIFFs and its backtest archive."""
    world = ZoneWorld(size, months, first_month, seed, index)
    profile = zone_profile(tile, size)
    gap_rng = np.random.default_rng(np.random.SeedSequence([seed, index, 1]))
    gaps = set(gap_rng.choice(np.arange(2, months), size=missing_months, replace=False).tolist())
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    first_origin = max(1, months - ORACLE_ORIGINS)
    origins = np.arange(first_origin, months + 1, dtype=np.int64)
    forecast = np.empty((len(origins), horizon, size, size), dtype=np.int16)  # (origins, leads, h, w)
    for month in range(1, months + 1):
        stored = world.observe(world.step())
        if month not in gaps:
            write_geotiff(folder / month_file_name(name, month), stored, profile, FILL_VALUE, VALID_RANGE,
                          software=SOFTWARE)
        if month >= first_origin:
            for lead in range(1, horizon + 1):
                forecast[month - first_origin, lead - 1] = world.stored_forecast(lead)
        advance(1)
    oracle_dir = out_dir / ORACLE_FOLDER
    for lead in range(1, horizon + 1):
        write_geotiff(oracle_dir / name / month_file_name(name, months + lead), forecast[-1, lead - 1],
                      profile, FILL_VALUE, VALID_RANGE, software=SOFTWARE)
    save_npz(oracle_dir / f"{name}-backtest.npz", origins=origins,
             leads=np.arange(1, horizon + 1, dtype=np.int64), forecast=forecast)


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    """Write a compressed ``.npz`` (the format of ``np.savez_compressed``, zlib level 1), atomically."""
    with atomic_path(path) as temporary, zipfile.ZipFile(
            temporary, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    return Path(path)


def ensure_sample(config: Config) -> bool:
    """Generate the built-in sample into ``data.dir`` when ``data.sample`` is set and it holds no zone.

    Uses ``sample.*`` (zones, months, size, seed, missing_months), ``data.first_month`` and
    ``predict.horizon``; prints one line when it generates.

    Returns:
      True if the sample was generated now.
    """
    if not config.data.sample or zone_folders(config.data.dir):
        return False
    if config.data.fill_value != FILL_VALUE or config.data.scale != SCALE:
        raise PhenocastError(
            f"the built-in sample is written with fill {FILL_VALUE} and scale {SCALE:g}, but the config "
            f"has data.fill_value {config.data.fill_value} and data.scale {config.data.scale:g}; use those "
            f"values with data.sample: true")
    sample = config.sample
    started = time.time()
    generate_sample(config.data.dir, zones=sample.zones, months=sample.months, size=sample.size,
                    seed=sample.seed, first_month=config.data.first_month,
                    missing_months=sample.missing_months, horizon=config.predict.horizon)
    print(f"generated the built-in sample in {config.data.dir}: {sample.zones} zone(s) × {sample.months} "
          f"months of {sample.size}×{sample.size} pixels (seed {sample.seed}) in "
          f"{time.time() - started:.0f} s")
    return True


# ---- realism ------------------------------------------------------------------------------------------

def realism_statistics(stack: np.ndarray, fill_value: int = FILL_VALUE,
                       valid_range: tuple[int, int] = VALID_RANGE, scale: float = SCALE) -> dict[str, float]:
    """Statistics of a zone's NDVI anomalies, to compare a zone with real MODIS zones.

    The anomaly is NDVI minus the pixel's mean of the same calendar month (position mod 12) over all its
    years (pixels with fewer than 2 valid values of that calendar month are left out). Correlations are
    Pearson correlations pooled over all valid pairs: of a pixel with itself a month later, and of pixels
    5 and 20 pixels apart along rows and along columns in the same month.

    Args:
      stack: int16 (months, height, width); nodata = ``fill_value`` or outside ``valid_range`` (gap months
        all fill).

    Returns:
      {"anomaly_sd", "lag1_autocorrelation", "spatial_correlation_5", "spatial_correlation_20"}; NaN
      where there is no valid pair.
    """
    months, height, width = stack.shape
    low, high = valid_range

    def valid_of(image: np.ndarray) -> np.ndarray:
        return (image != fill_value) & (image >= low) & (image <= high)

    total = np.zeros((MONTHS_PER_YEAR, height, width), dtype=np.float32)  # (calendar months, h, w)
    count = np.zeros((MONTHS_PER_YEAR, height, width), dtype=np.int32)
    for position in range(months):
        valid = valid_of(stack[position])
        total[position % MONTHS_PER_YEAR] += np.where(valid, stack[position], 0).astype(np.float32)
        count[position % MONTHS_PER_YEAR] += valid
    mean = total / np.maximum(count, 1)
    sums = {key: np.zeros(6) for key in ("sd", "lag1", "5", "20")}  # n, Σx, Σy, Σx², Σy², Σxy

    def add(key: str, first: np.ndarray, second: np.ndarray) -> None:
        sums[key] += [first.size, first.sum(dtype=np.float64), second.sum(dtype=np.float64),
                      np.dot(first, first), np.dot(second, second), np.dot(first, second)]

    previous = previous_valid = None
    for position in range(months):
        calendar_month = position % MONTHS_PER_YEAR
        valid = valid_of(stack[position]) & (count[calendar_month] >= 2)
        anomaly = (stack[position].astype(np.float32) - mean[calendar_month]) / np.float32(scale)
        add("sd", anomaly[valid], anomaly[valid])
        if previous is not None:
            both = valid & previous_valid
            add("lag1", previous[both], anomaly[both])
        for offset in (5, 20):
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
            "spatial_correlation_5": correlation("5"), "spatial_correlation_20": correlation("20")}


# ---- command line ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m phenocast.sample``."""
    parser = argparse.ArgumentParser(prog="python -m phenocast.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="data folder to write the zones into")
    parser.add_argument("--zones", type=int, default=2, help="number of zones (default 2)")
    parser.add_argument("--months", type=int, default=120, help="months per zone (default 120)")
    parser.add_argument("--size", type=int, default=240, help="pixels per side (default 240)")
    parser.add_argument("--seed", type=int, default=0, help="the world's seed (default 0)")
    parser.add_argument("--first-month", type=int, default=7,
                        help="calendar month of month index 1 (default 7: month 001 is a summer month)")
    parser.add_argument("--missing-months", type=int, default=0, help="gap months per zone (default 0)")
    parser.add_argument("--horizon", type=int, default=3, help="months the oracle forecasts (default 3)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing sample zone folders")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Generate the sample as the command line says; print what was written. Returns the exit code."""
    arguments = build_parser().parse_args(argv)
    started = time.time()
    names = generate_sample(arguments.out, zones=arguments.zones, months=arguments.months,
                            size=arguments.size, seed=arguments.seed, first_month=arguments.first_month,
                            missing_months=arguments.missing_months, horizon=arguments.horizon,
                            progress=not arguments.quiet, overwrite=arguments.overwrite)
    written = [path for name in names for path in (arguments.out / name).glob(f"{name}-*.tif")]
    oracle = [path for path in (arguments.out / ORACLE_FOLDER).rglob("*") if path.is_file()]
    size = sum(path.stat().st_size for path in written + oracle)
    print(f"wrote {len(names)} zone(s) × {arguments.months} months of {arguments.size}×{arguments.size} "
          f"pixels to {arguments.out}: {len(written)} month files and {len(oracle)} oracle files, "
          f"{size / 1e6:.1f} MB in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
