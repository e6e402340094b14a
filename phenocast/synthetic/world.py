"""The synthetic world: its knobs (``World``) and one zone stepped month by month (``ZoneWorld``).

The generative model and the observation model are described, formula by formula, in the docstring of
``phenocast.synthetic``; the symbols in the comments here are those. ``ZoneWorld.step`` draws month m and
returns its latent NDVI N(·, m); ``ZoneWorld.observe`` turns it into the stored image; ``ZoneWorld.forecast``
is the oracle (``phenocast.synthetic.oracle``): the conditional mean of N at a later month given
everything drawn so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from phenocast.synthetic import oracle
from phenocast.synthetic.fields import SpectralGrid, clusters
from phenocast.synthetic.landcover import (
    EDGE_TYPES,
    LAND_COVERS,
    MONTHS_PER_YEAR,
    LandCover,
    calendar,
    edge_mean,
    expected_edge_mean,
    month_days,
)

FILL_VALUE = -3000
VALID_RANGE = (-2000, 10000)
SCALE = 10000.0
STREAMS = ("landscape", "timing", "weather", "disturbance", "noise", "fill", "level")  # one generator each


@dataclass(frozen=True)
class World:
    """The knobs of the generative model (symbols as in the ``phenocast.synthetic`` docstring).

    The defaults put a zone of 240² pixels and 120 months (seeds 0-3; 230 months checked for seed 0) inside
    the ranges of real MODIS and GIMMS zones: anomaly SD, lag-1 and spatial correlations, EMA/climatology
    and EMA/persistence backtest ratios, and their forecastability (``realism.forecastability_statistics``:
    the damped anomaly gains 1-3 % over the EMA at lead 1 and nothing later, and the best global EMA α is
    0.4-0.45). The month-to-month weather persists weakly; the anomalies' persistence comes mostly from
    slow, field-by-field changes (trend, slow level, management habits) that the EMA of past years tracks.
    """

    land_covers: tuple[LandCover, ...] = LAND_COVERS
    reveal_month: tuple[int, int, int] = (3, 5, 7)  # R_t (0 = January) of spring, mid-season, autumn
    smoothness: float = 1.5  # spectral exponent ν of the Matérn-like fields
    # -- the static landscape
    landscape_scale: float = 40.0  # pixels: elevation and moisture fields
    patch_scale: float = 10.0  # pixels: land-cover patches (towns at half of it)
    forest_patchiness: tuple[float, float] = (0.6, 0.8)  # weight of patches in the (deciduous, evergreen)
    #   forest score, against elevation
    dryness_patchiness: float = 0.6  # weight of patches in the dryness score (barren, grassland)
    date_sd: float = 6.0  # days: spatial variation of the edge dates (onsets; offsets move ...)
    offset_date_share: float = 0.5  # ... by −this share of it: a late spring shortens the season
    amplitude_sd: float = 0.12  # relative spatial variation of the amplitudes
    base_sd: float = 0.03  # spatial variation of the base
    water_base_share: float = 0.3  # water's base varies by this share of ``base_sd``
    season_weight_floor: float = 0.3  # w_c = floor + (1 − floor)·(nominal curve scaled to [0, 1])
    # -- timing anomalies
    timing_scale: float = 80.0  # pixels: H_w
    timing_inheritance: float = 0.85  # κ
    management_scale: float = 4.0  # pixels: H_m (field by field)
    management_persistence: float = 0.9  # ρ: farming habits persist for years (the EMA tracks them)
    timing_factor: float = 1.0  # multiplies every class's σ_w
    management_factor: float = 0.6  # multiplies every class's σ_m
    amplitude_factor: float = 1.0  # multiplies every season's amplitude
    # -- slow changes: the trend β·t_m and the slow level G
    trend_sd: float = 0.115  # NDVI over the whole series (the same for any number of months)
    trend_scale: float = 30.0  # pixels
    trend_detail: float = 0.8  # weight of a second, finer trend field ...
    trend_detail_scale: float = 1.5  # ... of this scale (pixels): field-by-field intensification, abandonment
    trend_zone_sd: float = 0.3  # SD of the zone-wide part of the trend (greening or browning as a whole)
    level_sd: float = 0.004  # σ_G: NDVI, SD of the slow level's step in one month
    level_persistence: float = 0.4  # ψ_G: month-to-month correlation of the level's steps
    level_scale: float = 1.5  # pixels: field by field
    # -- weather
    weather_sd: float = 0.03  # σ_F
    weather_phi: float = 0.25  # φ per month: monthly weather anomalies persist weakly
    weather_scale: float = 50.0  # pixels
    weather_speed: tuple[float, float] = (2.0, 4.0)  # |v̄|: pixels / month, drawn per zone (direction uniform)
    weather_velocity_sd: float = 3.0  # σ_v: pixels / month, stationary SD of each component of v − v̄
    weather_velocity_persistence: float = 0.5  # ψ_v: month-to-month correlation of v − v̄
    pad: int = 96  # pixels of periodic padding around the zone for the moving weather
    # -- disturbances
    disturbance_rate: float = 0.0018  # fraction of eligible pixels disturbed per year
    disturbance_depth: tuple[float, float] = (0.15, 0.35)  # NDVI, uniform
    disturbance_radius: tuple[float, float] = (1.5, 6.0)  # pixels, semi-major axis, uniform
    disturbance_elongation: tuple[float, float] = (0.5, 1.0)  # minor / major axis, uniform
    recovery_months: float = 36.0  # τ
    # -- observation
    noise_sd: float = 0.02  # σ_ε
    atmosphere_sd: float = 0.032  # σ_A: atmosphere and compositing, spatially coherent, new every month
    atmosphere_scale: float = 40.0  # pixels
    cloud_fraction: float = 0.003  # mean share of cloudy pixels per month
    cloud_winter_amplitude: float = 0.6  # the share is cloud_fraction·(1 + this·cos(season)), most in January
    cloud_scale: float = 2.0  # pixels
    cloud_depth: tuple[float, float] = (0.2, 0.8)  # fraction of the way to ``cloud_ndvi``, uniform
    cloud_ndvi: float = 0.02  # NDVI of a thick cloud
    sporadic_fill: float = 0.0004  # single fill pixels per pixel and month
    fill_clusters: float = 5e-5  # sporadic fill clusters per pixel and month
    fill_cluster_steps: tuple[int, int] = (2, 40)  # random-walk steps of a sporadic cluster
    permanent_clusters: float = 1e-5  # permanent fill clusters per pixel (at least one per zone)
    permanent_cluster_steps: tuple[int, int] = (1, 16)  # random-walk steps of a permanent cluster


DEFAULT_WORLD = World()


@dataclass
class Edge:
    """One edge of one land-cover class, for the pixels of that class."""

    sign: float  # +1 onset, −1 offset
    kind: int  # index into EDGE_TYPES
    width: float  # r, days
    timing_sd: float  # σ_w, days
    management_sd: float  # σ_m, days
    amplitude: np.ndarray  # A, (class pixels,)
    date: np.ndarray  # e, (class pixels,) day of year


@dataclass(frozen=True)
class Timing:
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


ZERO_TIMING = Timing(zero=True)


def to_stored(values: np.ndarray) -> np.ndarray:
    """NDVI (float32) → int16 × SCALE, rounded half away from zero, clipped to the valid range."""
    scaled = values * np.float32(SCALE)
    rounded = np.copysign(np.floor(np.abs(scaled) + np.float32(0.5)), scaled)
    return np.clip(rounded, *VALID_RANGE).astype(np.int16)


class ZoneWorld:
    """One zone's static landscape and its processes, stepped month by month.

    Args:
      size: pixels per side.
      months: M, the number of months (the trend is centred on the series).
      first_month: calendar month (1..12) of month index 1.
      seed, zone_index: seed the zone's generators (one per process in ``STREAMS``, so each is drawn
        independently: ``<name>_rng``).
      world: the model's knobs.
    """

    def __init__(self, size: int, months: int, first_month: int, seed: int, zone_index: int,
                 world: World = DEFAULT_WORLD):
        self.size, self.months, self.first_month, self.world = size, months, first_month, world
        streams = np.random.SeedSequence([seed, zone_index]).spawn(len(STREAMS))
        generators = {name: np.random.default_rng(stream) for name, stream in zip(STREAMS, streams)}
        (landscape_rng, self.timing_rng, self.weather_rng, self.disturbance_rng, self.noise_rng, fill_rng,
         self.level_rng) = (generators[name] for name in STREAMS)
        self.grid = SpectralGrid(size, world.pad)  # padded: the landscape, timing and the moving weather
        self.noise_grid = SpectralGrid(size, 0)  # unpadded: fields new every month (level steps, noise)
        self._build_landscape(landscape_rng)
        permanent_clusters = max(1, fill_rng.poisson(world.permanent_clusters * size ** 2))
        self.permanent = clusters(fill_rng, size, permanent_clusters, world.permanent_cluster_steps)  # never
        #   valid, (size, size)
        speed, angle = self.weather_rng.uniform(*world.weather_speed), self.weather_rng.uniform(0, 2 * np.pi)
        self.mean_velocity = (speed * math.sin(angle), speed * math.cos(angle))  # v̄, (rows, columns)
        self.velocity = self.mean_velocity  # v_m: the last month's velocity (drawn from month 1 on)
        self.month = 0
        self.weather: np.ndarray | None = None  # F̂: the spectrum of F at the current month
        self.weather_field = np.zeros(size * size, dtype=np.float32)  # F, flat
        self.level = np.zeros(size * size, dtype=np.float32)  # G, flat, NDVI before the class weight
        self.level_step: np.ndarray | None = None  # S (unit variance), flat
        self.disturbed = np.zeros(size * size, dtype=np.float32)  # D, flat
        self.timing_weather: list[np.ndarray | None] = [None] * len(EDGE_TYPES)  # last H_w per edge type
        self.timing_management: np.ndarray | None = None  # last H_m, flat
        self.timing_year: list[int | None] = [None] * len(EDGE_TYPES)  # the year of each last draw

    # -- the static landscape -------------------------------------------------------------------------
    def _build_landscape(self, rng: np.random.Generator) -> None:
        world, grid, size, smoothness = self.world, self.grid, self.size, self.world.smoothness
        names = [cover.name for cover in world.land_covers]
        share = {cover.name: cover.fraction / sum(c.fraction for c in world.land_covers)
                 for cover in world.land_covers}
        elevation = grid.field(rng, world.landscape_scale, smoothness)
        moisture = grid.field(rng, world.landscape_scale, smoothness)
        patches = [grid.field(rng, world.patch_scale, smoothness) for _ in range(4)]
        towns = grid.field(rng, world.patch_scale / 2, smoothness)
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
        deciduous_patches, evergreen_patches = world.forest_patchiness
        take("deciduous forest", elevation + deciduous_patches * patches[0], forest / left, classes < 0)  # uplands
        left -= forest
        take("evergreen forest", elevation + evergreen_patches * patches[1], share["evergreen forest"] / forest,
             classes == names.index("deciduous forest"))
        dryness = -moisture + world.dryness_patchiness * patches[2]
        take("barren", dryness, share["barren"] / left, classes < 0)
        left -= share["barren"]
        take("grassland", dryness, share["grassland"] / left, classes < 0)
        cropland = share["cropland"] + share["double cropland"]
        take("double cropland", patches[3], share["double cropland"] / cropland, classes < 0)
        classes[classes < 0] = names.index("cropland")
        self.classes = classes  # (size, size) index into world.land_covers

        timing = grid.field(rng, 2 * world.landscape_scale, smoothness).ravel()  # later springs uphill
        amplitude = grid.field(rng, 2 * world.patch_scale, smoothness).ravel()
        base = grid.field(rng, 2 * world.patch_scale, smoothness).ravel()
        trend = (grid.field(rng, world.trend_scale, smoothness)
                 + world.trend_detail * grid.field(rng, world.trend_detail_scale, smoothness))
        trend += world.trend_zone_sd * rng.standard_normal()  # the zone greens or browns as a whole
        trend = (trend / np.sqrt(np.mean(trend ** 2))).ravel()  # zone RMS 1

        count = size * size
        self.class_pixels = [np.flatnonzero(classes.ravel() == k) for k in range(len(names))]
        self.base = np.zeros(count, dtype=np.float32)  # b
        self.trend = np.zeros(count, dtype=np.float32)  # β
        self.slow_weight = np.zeros(count, dtype=np.float32)  # k_β
        self.weather_coefficient = np.zeros(count, dtype=np.float32)  # σ_F·k_F
        self.disturbance_weight = np.zeros(count, dtype=np.float32)  # k_D
        self.edges: list[list[Edge]] = []  # per class
        for cover, pixels in zip(world.land_covers, self.class_pixels):
            variation = world.water_base_share if cover.name == "water" else 1.0
            self.base[pixels] = cover.base + variation * world.base_sd * base[pixels]
            self.trend[pixels] = world.trend_sd * cover.trend * trend[pixels]
            self.slow_weight[pixels] = cover.trend
            self.weather_coefficient[pixels] = world.weather_sd * cover.weather
            self.disturbance_weight[pixels] = cover.disturbance
            shift = world.date_sd * timing[pixels]
            edges = []
            for season, (height, onset, onset_width, offset, offset_width) in enumerate(cover.seasons):
                scaled = (world.amplitude_factor * height * (1 + world.amplitude_sd * amplitude[pixels])
                          ).astype(np.float32)
                for position, (sign, date, width) in enumerate(
                        ((1.0, onset + shift, onset_width),
                         (-1.0, offset - world.offset_date_share * shift, offset_width))):
                    index = 2 * season + position
                    edges.append(Edge(
                        sign=sign, kind=EDGE_TYPES.index(cover.edge_types[index]), width=width,
                        timing_sd=world.timing_factor * cover.timing_sd[index],
                        management_sd=world.management_factor * cover.management_sd,
                        amplitude=scaled, date=date.astype(np.float32)))
            self.edges.append(edges)
        curves = np.stack([self.seasonal(month, None) for month in range(MONTHS_PER_YEAR)])  # (12, pixels)
        low, high = curves.min(axis=0), curves.max(axis=0)
        floor = world.season_weight_floor
        self.season_weight = (floor + (1 - floor) * (curves - low) / np.maximum(high - low, 1e-3)
                              ).astype(np.float32)  # w_c, (12, pixels)

    # -- the latent NDVI ------------------------------------------------------------------------------
    def seasonal(self, calendar_month: int, timing: list[Timing] | None) -> np.ndarray:
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

    def latent(self, month: int, timing: list[Timing], weather: np.ndarray, level: np.ndarray,
               disturbed: np.ndarray) -> np.ndarray:
        """(The expectation of) N(x, month): flat float32 NDVI, given what is known of each edge type's
        timing anomaly, the weather F (flat, unit variance), the slow level G (flat, NDVI before the class
        weight) and the disturbance D (flat, NDVI)."""
        calendar_month, _ = calendar(month, self.first_month)
        progress = np.float32((month - (self.months + 1) / 2) / self.months)  # t_m
        out = self.seasonal(calendar_month, timing)
        out += self.base
        slow = self.trend * progress
        slow += self.slow_weight * level
        slow += self.weather_coefficient * weather
        slow *= self.season_weight[calendar_month]
        out += slow
        out += disturbed
        return out

    # -- stepping -------------------------------------------------------------------------------------
    def step(self) -> np.ndarray:
        """Advance one month: draw what this month draws; return its latent NDVI (flat float32)."""
        self.month += 1
        calendar_month, year = calendar(self.month, self.first_month)
        for kind, reveal in enumerate(self.world.reveal_month):  # the year's timing anomalies, in their month
            if calendar_month == reveal or (self.month == 1 and calendar_month > reveal):
                self._draw_timing(kind, year)
        self._move_weather()
        self._move_level()
        self._disturb()
        timing = [self.known_timing(kind, calendar_month, year) for kind in range(len(EDGE_TYPES))]
        return self.latent(self.month, timing, self.weather_field, self.level, self.disturbed)

    def _move_weather(self) -> None:
        """v_m ← v̄ + ψ_v·(v_{m−1} − v̄) + σ_v·√(1 − ψ_v²)·ξ; F_m ← φ·F_{m−1}(x − v_m) + √(1 − φ²)·η_m."""
        world, grid, rng = self.world, self.grid, self.weather_rng
        deviation = rng.standard_normal(2)
        if self.weather is None:  # month 1: the stationary distributions
            persistence, innovation_sd = 0.0, world.weather_velocity_sd
        else:
            persistence = world.weather_velocity_persistence
            innovation_sd = world.weather_velocity_sd * math.sqrt(1 - persistence ** 2)
        self.velocity = tuple(float(mean + persistence * (last - mean) + innovation_sd * noise) for
                              mean, last, noise in zip(self.mean_velocity, self.velocity, deviation))
        innovation = grid.spectrum(rng, world.weather_scale, world.smoothness)
        if self.weather is None:
            self.weather = innovation
        else:
            phi = world.weather_phi
            self.weather = (np.float32(phi) * grid.shift(self.velocity) * self.weather
                            + np.float32(math.sqrt(1 - phi ** 2)) * innovation)
        self.weather_field = grid.to_field(self.weather).ravel()

    def _move_level(self) -> None:
        """S_m ← ψ_G·S_{m−1} + √(1 − ψ_G²)·ζ_m (S_1 = ζ_1); G_m ← G_{m−1} + σ_G·S_m."""
        world = self.world
        fresh = self.noise_grid.field(self.level_rng, world.level_scale, world.smoothness).ravel()
        if self.level_step is None:
            self.level_step = fresh
        else:
            psi = world.level_persistence
            self.level_step = np.float32(psi) * self.level_step + np.float32(math.sqrt(1 - psi ** 2)) * fresh
        self.level = self.level + np.float32(world.level_sd) * self.level_step

    def _draw_timing(self, kind: int, year: int) -> None:
        """Draw edge type ``kind``'s anomaly of ``year`` (the spring also draws H_m)."""
        world, rng, smoothness = self.world, self.timing_rng, self.world.smoothness
        fresh = self.grid.field(rng, world.timing_scale, smoothness).ravel()
        if kind == 0:
            self.timing_weather[0] = fresh
            rho = world.management_persistence
            new = self.grid.field(rng, world.management_scale, smoothness).ravel()
            previous = self.timing_management
            self.timing_management = new if previous is None else (
                np.float32(rho) * previous + np.float32(math.sqrt(1 - rho ** 2)) * new)
        else:
            kappa = world.timing_inheritance
            self.timing_weather[kind] = (np.float32(kappa) * self.timing_weather[0]
                                         + np.float32(math.sqrt(1 - kappa ** 2)) * fresh)
        self.timing_year[kind] = year

    def known_timing(self, kind: int, calendar_month: int, year: int) -> Timing:
        """What the draws so far say about edge type ``kind``'s anomaly in (calendar month, year)."""
        world = self.world
        if calendar_month < world.reveal_month[kind]:
            return ZERO_TIMING
        if self.timing_year[kind] == year:
            return Timing(weather=self.timing_weather[kind], management=self.timing_management)
        if self.timing_year[0] == year:  # this year's spring is drawn, this edge type not yet
            kappa = world.timing_inheritance
            return Timing(weather=np.float32(kappa) * self.timing_weather[0],
                          management=self.timing_management, weather_left=1 - kappa ** 2)
        if self.timing_management is None:
            return Timing(weather_left=1.0, management_left=1.0)
        rho = world.management_persistence
        return Timing(management=np.float32(rho) * self.timing_management, weather_left=1.0,
                      management_left=1 - rho ** 2)

    def disturbance_constants(self) -> tuple[float, float, float]:
        """(ρ_D per month, hazard p per eligible pixel and month, expected patches per month)."""
        world = self.world
        low, high = world.disturbance_radius
        short, long = world.disturbance_elongation
        mean_area = math.pi * (low * low + low * high + high * high) / 3 * (short + long) / 2  # E[major²]·E[ratio]
        hazard = world.disturbance_rate / MONTHS_PER_YEAR
        centre_area = (self.size + 2 * high) ** 2  # centres anywhere a patch can reach the zone from
        return math.exp(-1 / world.recovery_months), hazard, hazard * centre_area / mean_area

    def _disturb(self) -> None:
        """D ← ρ_D·D, then subtract this month's new patches."""
        world, size, rng = self.world, self.size, self.disturbance_rng
        decay, _, patches = self.disturbance_constants()
        self.disturbed *= np.float32(decay)
        reach = world.disturbance_radius[1]
        image = self.disturbed.reshape(size, size)
        weight = self.disturbance_weight.reshape(size, size)
        for _ in range(rng.poisson(patches)):
            centre_y, centre_x = rng.uniform(-reach, size + reach, size=2)
            major = rng.uniform(*world.disturbance_radius)
            minor = major * rng.uniform(*world.disturbance_elongation)
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

    # -- the oracle and the observation ---------------------------------------------------------------
    def forecast(self, lead: int) -> np.ndarray:
        """The oracle: E[N(x, month + lead) | everything drawn up to the current month], flat float32."""
        return oracle.forecast(self, lead)

    def stored_forecast(self, lead: int) -> np.ndarray:
        """The oracle in stored units: int16 (size, size), fill where the zone is permanently nodata."""
        stored = to_stored(self.forecast(lead).reshape(self.size, self.size))
        stored[self.permanent] = FILL_VALUE
        return stored

    def observe(self, latent: np.ndarray) -> np.ndarray:
        """The observed image of the current month: int16 (size, size), stored units, with fill."""
        world, size, rng, grid = self.world, self.size, self.noise_rng, self.noise_grid
        calendar_month, _ = calendar(self.month, self.first_month)
        values = latent.reshape(size, size).copy()
        values += np.float32(world.noise_sd) * rng.standard_normal((size, size), dtype=np.float32)
        values += np.float32(world.atmosphere_sd) * grid.field(rng, world.atmosphere_scale, world.smoothness)
        winter = math.cos(2 * np.pi * (calendar_month + 0.5) / MONTHS_PER_YEAR)  # +1 mid-January
        share = world.cloud_fraction * (1 + world.cloud_winter_amplitude * winter)
        cloudy = grid.field(rng, world.cloud_scale, world.smoothness) > np.float32(ndtri(1 - share))
        pull = rng.uniform(*world.cloud_depth, size=int(cloudy.sum())).astype(np.float32)
        values[cloudy] -= pull * (values[cloudy] - np.float32(world.cloud_ndvi))
        stored = to_stored(values)
        stored[self.permanent] = FILL_VALUE
        stored[rng.random((size, size), dtype=np.float32) < np.float32(world.sporadic_fill)] = FILL_VALUE
        sporadic = rng.poisson(world.fill_clusters * size * size)
        stored[clusters(rng, size, sporadic, world.fill_cluster_steps)] = FILL_VALUE
        return stored
