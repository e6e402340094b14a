"""The synthetic world's pieces: the moving weather's law, the Fourier mean over random shifts, and the
forecastability statistics on stacks whose answer is known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from phenocast import sample, synthetic
from phenocast.synthetic import oracle
from phenocast.synthetic.fields import SpectralGrid
from phenocast.synthetic.world import DEFAULT_WORLD, ZoneWorld


def test_the_sample_module_re_exports_the_package():
    assert sample.generate_sample is synthetic.generate_sample
    assert sample.ensure_sample is synthetic.ensure_sample
    assert sample.ZoneWorld is synthetic.ZoneWorld
    assert sample.forecastability_statistics is synthetic.forecastability_statistics


def test_the_weather_velocity_wanders_around_the_prevailing_drift():
    world = dataclasses.replace(DEFAULT_WORLD, disturbance_rate=0.0)
    zone = ZoneWorld(size=16, months=240, first_month=7, seed=2, zone_index=0, world=world)
    velocities = []
    for _ in range(240):
        zone.step()
        velocities.append(zone.velocity)
    deviations = np.array(velocities) - np.array(zone.mean_velocity)  # (months, 2)
    assert len(set(velocities)) == len(velocities)  # not a constant drift
    assert deviations.std() == pytest.approx(world.weather_velocity_sd, rel=0.2)
    lag1 = np.corrcoef(deviations[:-1].ravel(), deviations[1:].ravel())[0, 1]
    assert lag1 == pytest.approx(world.weather_velocity_persistence, abs=0.15)


@pytest.mark.parametrize("persistence", [0.0, 0.5, 0.9])
def test_the_displacement_law_matches_simulated_velocities(persistence: float):
    world = dataclasses.replace(DEFAULT_WORLD, weather_velocity_persistence=persistence)
    rng = np.random.default_rng(0)
    mean_velocity, velocity, lead, paths = (1.0, -2.0), (4.0, 0.5), 3, 200_000
    innovation = world.weather_velocity_sd * np.sqrt(1 - persistence ** 2)
    current = np.tile(np.array(velocity), (paths, 1))  # (paths, 2)
    total = np.zeros((paths, 2))
    for _ in range(lead):
        current = mean_velocity + persistence * (current - mean_velocity) + innovation * rng.standard_normal(
            (paths, 2))
        total += current
    mean, spread = oracle.displacement(world, mean_velocity, velocity, lead)
    np.testing.assert_allclose(total.mean(axis=0), mean, atol=0.05)
    np.testing.assert_allclose(total.std(axis=0), [spread, spread], rtol=0.01)


def test_the_blurred_shift_is_the_mean_of_random_shifts():
    grid = SpectralGrid(size=16, pad=8)
    rng = np.random.default_rng(1)
    spectrum = grid.spectrum(rng, scale=4.0, smoothness=1.5)
    mean, spread, draws = (1.3, -2.6), 1.5, 4000
    shifted = np.mean([grid.to_field(grid.shift(tuple(mean + spread * rng.standard_normal(2))) * spectrum)
                       for _ in range(draws)], axis=0)
    expected = grid.to_field(grid.shift(mean, spread) * spectrum)
    assert np.abs(shifted - expected).max() < 4 / np.sqrt(draws)  # unit-variance field: SE ≤ 1/√draws


def seasonal_stack(anomalies: np.ndarray) -> np.ndarray:
    """int16 stack of a fixed seasonal cycle plus the given anomalies (stored units)."""
    months = len(anomalies)
    seasonal = 3000 + 2000 * np.sin(2 * np.pi * np.arange(months) / 12)[:, None, None]
    return np.round(seasonal + anomalies).astype(np.int16)


def test_forecastability_of_white_anomalies():
    rng = np.random.default_rng(0)
    stack = seasonal_stack(rng.normal(0, 300, (72, 20, 20)))
    statistics = synthetic.forecastability_statistics(stack)
    for lead in (1, 2, 3):
        assert statistics[f"damped_ratio_{lead}"] == pytest.approx(1, abs=0.01)
        assert abs(statistics[f"anomaly_weight_{lead}"]) < 0.05
    assert statistics["best_alpha"] <= 0.35  # a fixed climate: weigh the few earlier years about equally
    assert statistics["ema_rmse"] == pytest.approx(0.03 * np.sqrt(1 + 0.4 / 1.6), rel=0.1)


def test_forecastability_of_persistent_anomalies_and_of_a_wandering_level():
    rng = np.random.default_rng(0)
    months, size = 72, 20
    persistent = np.zeros((months, size, size))
    for month in range(1, months):
        persistent[month] = 0.8 * persistent[month - 1] + 0.6 * rng.normal(0, 300, (size, size))
    statistics = synthetic.forecastability_statistics(seasonal_stack(persistent))
    assert statistics["damped_ratio_1"] < statistics["damped_ratio_2"] < statistics["damped_ratio_3"] < 0.95
    assert statistics["anomaly_weight_1"] > 0.5
    level = np.cumsum(rng.normal(0, 300, (months, size, size)), axis=0)
    statistics = synthetic.forecastability_statistics(seasonal_stack(level + rng.normal(0, 100, level.shape)))
    assert statistics["best_alpha"] >= 0.8  # a random walk: the latest year says the most


def test_forecastability_ignores_nodata_and_rejects_short_stacks():
    rng = np.random.default_rng(0)
    stack = seasonal_stack(rng.normal(0, 300, (72, 12, 12)))
    stack[30] = sample.FILL_VALUE  # a gap month among the fitted months
    stack[60] = sample.FILL_VALUE  # and one among the scored ones
    stack[:, 0, 0] = 20000  # outside the valid range: nodata
    statistics = synthetic.forecastability_statistics(stack)
    assert all(np.isfinite(value) for value in statistics.values())
    with pytest.raises(ValueError, match="more than 24 scored months"):
        synthetic.forecastability_statistics(stack[:36])
