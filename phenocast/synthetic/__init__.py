"""The synthetic world behind the built-in sample: a generative model of monthly MODIS-like NDVI zones,
its exact oracle, the writer of the competition's file format, and realism statistics.

Modules: ``world`` (the knobs ``World`` and ``ZoneWorld``, one zone stepped month by month), ``fields``
(Gaussian random fields on a periodic grid, their shifts), ``landcover`` (``LandCover``, ``LAND_COVERS``,
the double-logistic month means and their Gauss–Hermite expectation), ``oracle`` (the conditional-mean
forecast), ``writer`` (``generate_sample``, ``ensure_sample``, ``write_zones`` and ``save_oracle`` for
any generator of zones and oracles, ``save_npz``, zone geometry) and ``realism`` (``realism_statistics``,
``forecastability_statistics``). ``phenocast.sample`` is the command line and re-exports the public names.

``phenocast.synthetic.planted`` (``PLANTED_WORLDS``, ``generate_planted``, ``planted_stacks``; a command
line, so it is imported on its own, not re-exported here) writes much simpler worlds in the same format:
each isolates one thing a forecasting network must be able to learn (per-pixel persistence, a moving
anomaly, a zone-wide anomaly only the context shows, a persistence that depends on the land cover, and a
control with nothing to learn), with its exact oracle; its docstring states each world's formula.

The generative model. Pixel x, month index m = 1..M, calendar month c = (m + first_month − 2) mod 12
(0 = January) spanning days [d₀, d₁) = [365c/12, 365(c+1)/12), year y = (m + first_month − 2) div 12.
The latent (noise-free) NDVI is

    N(x, m) = b(x) + Σ_e s_e·A_e(x)·L_e(x, m) + w_c(x)·[β(x)·t_m + k_β(x)·G_m(x) + σ_F·k_F(x)·F_m(x)]
              + D_m(x)

- Land cover k(x) from thresholds of smooth random fields ("elevation", "moisture", patches): water
  (negative, flat), barren, urban, grassland, single- and double-season cropland, deciduous and evergreen
  forest (``LAND_COVERS``: base b, seasons, sensitivities k_F, k_β, k_D). Base, amplitudes and dates vary
  smoothly.
- Seasons are double logistics: an onset edge (s = +1) and an offset edge (s = −1), each with amplitude A,
  date e(x) (day of year) and width r; averaged exactly over the month,
  L_e = r/(d₁ − d₀)·[softplus((d₁ − e − δ)/r) − softplus((d₀ − e − δ)/r)].
- Timing anomalies (early and late years): δ = σ_w·H_w + σ_m·H_m (days; σ per class and edge). Each edge
  has a type t (spring, mid-season, autumn) whose anomaly of year y is drawn in calendar month R_t
  (April, June, August); the months of year y before R_t use δ = 0. H_w (smooth, ``timing_scale``) is new
  each year for the spring; mid-season and autumn inherit: H_w,t = κ·H_w,spring + √(1 − κ²)·new. H_m
  (patchy, ``management_scale``: sowing dates, soil memory) is drawn with the spring and persists:
  H_m,y = ρ·H_m,y−1 + √(1 − ρ²)·new. All H are unit-variance Gaussian fields.
- w_c(x) = w₀ + (1 − w₀)·(the pixel's nominal seasonal curve in calendar month c, scaled to [0, 1]),
  w₀ = ``season_weight_floor``: the slow changes and the weather act most in the growing season.
- Trend: β(x) (NDVI over the whole series: a regional field of ``trend_scale`` plus ``trend_detail`` × a
  field-by-field one of ``trend_detail_scale`` plus a zone-wide part, scaled to zone RMS ``trend_sd`` and
  weighted by the class's k_β: greening and browning, intensification, abandonment),
  t_m = (m − (M + 1)/2)/M.
- Slow level (multi-year changes of a pixel's condition that the EMA of past years tracks: degradation,
  recovery, management): G_m = G_{m−1} + σ_G·S_m with G_0 = 0, its steps S_m = ψ_G·S_{m−1} + √(1 − ψ_G²)·ζ_m,
  S_1 = ζ_1, ζ_m a new unit-variance field every month (``level_scale``, on the zone's own periodic grid
  like the atmosphere); k_β per class.
- Weather: F a unit-variance Gaussian field (tens of pixels) that persists weakly and moves with a
  velocity that changes from month to month: F_1 = η_1, F_m(x) = φ·F_{m−1}(x − v_m) + √(1 − φ²)·η_m(x),
  computed exactly in the Fourier domain of a periodic grid padded around the zone. The velocity (pixels
  per month, rows and columns) is an Ornstein–Uhlenbeck process around the zone's prevailing drift v̄
  (speed uniform in ``weather_speed``, direction uniform): v_m = v̄ + ψ_v·(v_{m−1} − v̄) + σ_v·√(1 − ψ_v²)·ξ_m,
  ξ_m ~ N(0, I₂), v_1 ~ N(v̄, σ_v²·I₂). k_F per class (water ≈ 0).
- Disturbances (fire, clearing) on forest and grassland: each month a Poisson number of elliptic
  patches with uniform centres (hazard p per eligible pixel and month); D_m = ρ_D·D_{m−1} − depth·k_D(x)
  on each new patch, ρ_D = exp(−1/τ) (recovery).

All η, ζ, H and the landscape fields are stationary Gaussian fields with a Matérn-like spectrum
(``fields``). Each process draws from its own generator seeded by (seed, zone index).

Observed: O = N + σ_ε·ε + σ_A·A_m + clouds, with ε white noise, A_m a smooth field new every month
(atmosphere, compositing), clouds = small blobs (more in winter) pulling the value towards
``cloud_ndvi`` by a uniform fraction; rounded to int16 × 10000 and clipped to [−2000, 10000]; fill −3000
on a few permanent clusters and on about 0.1 % sporadic pixels and clusters per month;
``missing_months`` gap months (never the first or the last) are not written.

The oracle at origin o for month τ = o + h is the conditional mean given everything drawn up to o:

    E[N(x, τ)] = b + Σ_e s_e·A_e·E[L_e] + w_c·[β·t_τ + k_β·(G_o + σ_G·S_o·Σ_{j=1..h} ψ_G^j)
                 + σ_F·k_F·φ^h·E[F_o(x − Δ)]] + ρ_D^h·D_o − p·E[depth]·k_D·Σ_{j<h} ρ_D^j

where Δ = v_{o+1} + … + v_{o+h} is Gaussian given v_o (mean h·v̄ + (v_o − v̄)·Σ_{j=1..h} ψ_v^j, variance
σ_v²(1 − ψ_v²)·Σ_{k=1..h} (Σ_{i<k} ψ_v^i)² per axis), so that E[F_o(x − Δ)] is F_o's spectrum times
exp(−i k·E[Δ])·exp(−½ Var[Δ]·|k|²); E[L_e] uses the drawn δ when the year's anomaly of the edge's type is
drawn, δ = 0 when c(τ) < R_t, and otherwise averages over δ ~ N(μ, s²) given the draws so far (this
year's spring drawn: μ = σ_w·κ·H_w,spring + σ_m·H_m, s² = σ_w²(1 − κ²); else μ = σ_m·ρ·H_m,last,
s² = σ_w² + σ_m²(1 − ρ²)), by Gauss–Hermite quadrature tabulated in (d − e − μ)/r (``oracle``). Anything
drawn after o enters at its expectation; the noise, the atmosphere and the clouds are not part of N: no
forecast can predict them.
"""

from phenocast.synthetic.fields import SpectralGrid, clusters
from phenocast.synthetic.landcover import LAND_COVERS, LandCover, calendar, month_days
from phenocast.synthetic.realism import forecastability_statistics, realism_statistics
from phenocast.synthetic.world import DEFAULT_WORLD, FILL_VALUE, SCALE, VALID_RANGE, World, ZoneWorld
from phenocast.synthetic.writer import (
    ORACLE_FOLDER,
    ORACLE_README,
    ensure_sample,
    generate_sample,
    save_npz,
    save_oracle,
    write_zones,
    zone_folders,
    zone_names,
    zone_profile,
    zone_tiles,
)

__all__ = [
    "DEFAULT_WORLD", "FILL_VALUE", "LAND_COVERS", "ORACLE_FOLDER", "ORACLE_README", "SCALE", "VALID_RANGE",
    "LandCover", "SpectralGrid", "World", "ZoneWorld", "calendar", "clusters", "ensure_sample",
    "forecastability_statistics", "generate_sample", "month_days", "realism_statistics", "save_npz",
    "save_oracle", "write_zones", "zone_folders", "zone_names", "zone_profile", "zone_tiles",
]
