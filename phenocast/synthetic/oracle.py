"""The oracle: the exact conditional mean of the latent NDVI at a later month given everything drawn up to
the origin o (the zone's state after ``ZoneWorld.step`` of month o).

For the target τ = o + h (lead h ≥ 1), with the symbols of the ``phenocast.synthetic`` docstring:

    E[N(x, τ)] = b + Σ_e s_e·A_e·E[L_e] + w_c·[β·t_τ + k_β·E[G_τ] + σ_F·k_F·E[F_τ]]
                 + ρ_D^h·D_o − p·E[depth]·k_D·Σ_{j<h} ρ_D^j

- Timing: E[L_e] uses the drawn δ when the year's anomaly of the edge's type is drawn, δ = 0 when
  c(τ) < R_t, and otherwise averages over δ ~ N(μ, s²) given the draws so far (this year's spring drawn:
  μ = σ_w·κ·H_w,spring + σ_m·H_m, s² = σ_w²(1 − κ²); else μ = σ_m·ρ·H_m,last, s² = σ_w² + σ_m²(1 − ρ²)),
  by Gauss–Hermite quadrature (``landcover.expected_edge_mean``).
- Slow level: E[G_τ] = G_o + σ_G·S_o·Σ_{j=1..h} ψ_G^j.
- Weather: F_τ = φ^h·F_o(x − Δ) + (innovations of mean 0), the displacement Δ = v_{o+1} + … + v_{o+h}
  being Gaussian given v_o, per axis independently: mean μ_h = h·v̄ + (v_o − v̄)·Σ_{j=1..h} ψ_v^j and
  variance s_h² = σ_v²·(1 − ψ_v²)·Σ_{k=1..h} (Σ_{i<k} ψ_v^i)². So E[F_τ] is the field whose spectrum is
  φ^h·F̂_o(k)·exp(−i k·μ_h)·exp(−½ s_h²|k|²) on the periodic grid where F is moved
  (``fields.SpectralGrid.shift``), exactly.
- Disturbances: the patches of the months after o enter at their expected depth per pixel and month.

Anything drawn after o enters at its expectation; the observation noise, the atmosphere and the clouds are
not part of N: no forecast can predict them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from phenocast.synthetic.landcover import EDGE_TYPES, calendar

if TYPE_CHECKING:
    from phenocast.synthetic.world import World, ZoneWorld


def displacement(world: World, mean_velocity: tuple[float, float], velocity: tuple[float, float],
                 lead: int) -> tuple[tuple[float, float], float]:
    """The Gaussian law of the weather's displacement over the ``lead`` months after the origin.

    Args:
      mean_velocity: v̄ (rows, columns) pixels per month.
      velocity: v_o, the origin month's velocity.

    Returns:
      (μ_h (rows, columns) pixels, s_h: the SD of each component in pixels).
    """
    psi = world.weather_velocity_persistence
    decay = sum(psi ** j for j in range(1, lead + 1))
    mean = tuple(lead * average + (current - average) * decay
                 for average, current in zip(mean_velocity, velocity))
    innovation_variance = world.weather_velocity_sd ** 2 * (1 - psi ** 2)
    variance = innovation_variance * sum(sum(psi ** i for i in range(k)) ** 2 for k in range(1, lead + 1))
    return mean, math.sqrt(variance)


def expected_weather(zone: ZoneWorld, lead: int) -> np.ndarray:
    """E[F_{o+h}]: flat float32 (pixels,), unit-variance units."""
    world, grid = zone.world, zone.grid
    mean, spread = displacement(world, zone.mean_velocity, zone.velocity, lead)
    spectrum = np.float32(world.weather_phi ** lead) * grid.shift(mean, spread) * zone.weather
    return grid.to_field(spectrum).ravel()


def expected_level(zone: ZoneWorld, lead: int) -> np.ndarray:
    """E[G_{o+h}]: flat float32 (pixels,), NDVI before the class weight."""
    world = zone.world
    if zone.level_step is None:
        return zone.level
    drift = world.level_sd * sum(world.level_persistence ** j for j in range(1, lead + 1))
    return zone.level + np.float32(drift) * zone.level_step


def expected_disturbance(zone: ZoneWorld, lead: int) -> np.ndarray:
    """E[D_{o+h}]: flat float32 (pixels,), NDVI."""
    world = zone.world
    decay, hazard, _ = zone.disturbance_constants()
    future = hazard * sum(world.disturbance_depth) / 2 * sum(decay ** j for j in range(lead))
    return np.float32(decay ** lead) * zone.disturbed - np.float32(future) * zone.disturbance_weight


def forecast(zone: ZoneWorld, lead: int) -> np.ndarray:
    """E[N(x, o + lead) | everything drawn up to the zone's current month o]: flat float32 NDVI.

    Args:
      zone: a zone stepped at least once.
      lead: months after the origin, ≥ 1.
    """
    if zone.month < 1 or lead < 1:
        raise ValueError(f"expected a zone stepped at least once and a lead >= 1, got month {zone.month} "
                         f"and lead {lead}; call ZoneWorld.step() first")
    target = zone.month + lead
    calendar_month, year = calendar(target, zone.first_month)
    timing = [zone.known_timing(kind, calendar_month, year) for kind in range(len(EDGE_TYPES))]
    return zone.latent(target, timing, expected_weather(zone, lead), expected_level(zone, lead),
                       expected_disturbance(zone, lead))
