"""Baselines on hand-computed examples, nodata handling."""

from __future__ import annotations

import numpy as np
import pytest

from phenocast import baselines
from phenocast.metrics import Scoreboard, image_mse

from conftest import FILL


def year_stack(images_by_year: list[list[int]], month: int = 0, years: int | None = None) -> np.ndarray:
    """A (12·years, 1, n) stack where only calendar month ``month`` holds the given values."""
    years = years or len(images_by_year) + 1
    stack = np.full((12 * years, 1, len(images_by_year[0])), 4000, dtype=np.int16)
    for year, values in enumerate(images_by_year):
        stack[12 * year + month, 0] = values
    return stack


def test_ema_on_a_hand_computed_three_image_example():
    # pixel 0: 1000, 2000, 4000 → 1000; 1000 (first again); 0.6·1000+0.4·2000 = 1400; 0.6·1400+0.4·4000 = 2440
    # pixel 1: masked first → starts at its first valid 3000, keeps it through, then 0.6·3000+0.4·1000 = 2200
    # pixel 2: masked in the middle image → keeps its running value: 5000 → 5000 → 0.6·5000+0.4·0 = 3000
    stack = year_stack([[1000, FILL, 5000], [2000, 3000, FILL], [4000, 1000, 0]])
    forecast = baselines.ema(stack, 36, FILL, 0.4)
    np.testing.assert_allclose(forecast[0], [2440, 2200, 3000], rtol=1e-6)
    # α = 1 is persistence of the same calendar month; per-pixel α broadcasts
    np.testing.assert_allclose(baselines.ema(stack, 36, FILL, 1.0)[0], [4000, 1000, 0])
    alphas = np.array([[0.4, 1.0, 0.5]], np.float32)
    np.testing.assert_allclose(baselines.ema(stack, 36, FILL, alphas)[0], [2440, 1000, 2500], rtol=1e-6)


def test_ema_of_a_never_valid_pixel_is_nan():
    stack = year_stack([[FILL, 10], [FILL, 20]])
    assert np.isnan(baselines.ema(stack, 24, FILL, 0.4)[0, 0])


def test_climatology_ignores_masked_pixels_and_other_months():
    stack = year_stack([[1000, FILL, FILL], [2000, 3000, FILL], [6000, 5000, FILL]])
    np.testing.assert_allclose(baselines.climatology(stack, 36, FILL)[0, :2], [3000, 4000])
    assert np.isnan(baselines.climatology(stack, 36, FILL)[0, 2])
    # another calendar month only sees the constant 4000
    np.testing.assert_allclose(baselines.climatology(stack, 37, FILL)[0], [4000] * 3)
    # a limited end uses only earlier years
    np.testing.assert_allclose(baselines.climatology(stack, 36, FILL, end=12)[0, :1], [1000])


def test_persistence_takes_the_most_recent_valid_value():
    stack = np.array([[[1, 2, FILL]], [[3, FILL, FILL]], [[FILL, FILL, FILL]]], dtype=np.int16)
    result = baselines.persistence(stack, 2, FILL)
    np.testing.assert_array_equal(result[0, :2], [3, 2])
    assert np.isnan(result[0, 2])
    np.testing.assert_array_equal(baselines.persistence(stack, 0, FILL)[0, :2], [1, 2])


def test_fit_alpha_picks_the_alpha_that_forecasts_best():
    rng = np.random.default_rng(0)
    years = 12
    stack = np.full((12 * years, 1, 2), 4000, dtype=np.int16)
    level = 3000.0
    for year in range(years):  # pixel 0: a random walk (α → 1); pixel 1: noise around a constant (α small)
        level += rng.normal(0, 500)
        stack[12 * year, 0, 0] = level
        stack[12 * year, 0, 1] = 3000 + rng.normal(0, 500)
    alphas = baselines.fit_alpha(stack, len(stack), FILL, [0.1, 0.5, 0.9], 0.4)
    assert alphas[0, 0] == pytest.approx(0.9) and alphas[0, 1] == pytest.approx(0.1)
    never = np.full((24, 1, 1), FILL, dtype=np.int16)
    assert baselines.fit_alpha(never, 24, FILL, [0.1, 0.9], 0.4)[0, 0] == pytest.approx(0.4)


def test_baseline_forecasts_fall_back_so_every_method_covers_the_same_pixels():
    stack = np.full((37, 1, 2), FILL, dtype=np.int16)
    stack[[0, 12], 0, 0] = [1000, 2000]
    stack[30, 0, 1] = 7000  # pixel 1 never seen in calendar month 0, but seen recently
    forecasts = baselines.baseline_forecasts(stack, 30, [36], FILL, 0.4, np.full((1, 2), 0.5, np.float32))
    for method, images in forecasts.items():
        assert np.isfinite(images[36]).all(), method
        assert images[36][0, 1] == 7000, method  # climatology and EMA fall back to persistence
    assert forecasts["persistence"][36][0, 0] == 2000 and forecasts["ema"][36][0, 0] == 1400
    with pytest.raises(ValueError, match="not 1..12 months after"):
        baselines.baseline_forecasts(stack, 10, [30], FILL, 0.4)


def test_rmse_ignores_fill_and_pools_images_by_mean_mse():
    truth = np.array([[10000, FILL], [0, 5000]], dtype=np.int16)
    prediction = np.array([[9000.0, -999999.0], [1000.0, 5000.0]])
    mse, count = image_mse(prediction, truth, FILL, 10000.0)
    assert count == 3 and mse == pytest.approx((0.01 + 0.01 + 0) / 3)
    assert image_mse(prediction, np.full((2, 2), FILL, np.int16), FILL, 10000.0) is None
    board = Scoreboard()
    board.add("Z1", 10, 1, "m", (0.04, 5))
    board.add("Z1", 11, 1, "m", (0.0, 5))
    board.add("Z2", 10, 2, "m", (0.01, 5))
    board.add("Z2", 10, 3, "m", None)  # not scored
    summary = board.summary()
    assert summary["pooled"]["m"] == pytest.approx(np.sqrt(0.05 / 3))
    assert summary["zones"]["Z1"]["rmse"]["m"] == pytest.approx(np.sqrt(0.02))
    assert summary["pooled_by_lead"]["2"]["m"] == pytest.approx(0.1)
    assert summary["images"] == 3


def test_damped_equals_a_hand_computation_on_three_pixels():
    # origin 12 (one year of history): EMA(12) = image 0; a = x_12 - EMA(12) = [500, -200, missing];
    # smooth(a) over the 5-pixel box = the mean of the valid anomalies, 150, everywhere; target 13: EMA = 4000
    stack = np.full((14, 1, 3), 4000, dtype=np.int16)
    stack[0, 0] = [1000, 2000, 3000]
    stack[12, 0] = [1500, 1800, FILL]
    phi = np.zeros((1, 12, 2))
    phi[0, :] = [0.5, 0.2]
    fit = baselines.DampedFit(phi, np.zeros((1, 12), np.int64), by_month=False)
    forecasts = baselines.baseline_forecasts(stack, 12, [13], FILL, 0.4, damped_fit=fit, smoothing=5)
    # 4000 + 0.5·500 + 0.2·150, 4000 + 0.5·(-200) + 0.2·150, and the EMA where x_o is missing
    np.testing.assert_allclose(forecasts["damped"][13][0], [4280, 3930, 4000], rtol=1e-6)
    anomaly, smoothed = baselines.anomaly_features(stack, 12, FILL, 0.4, 5)
    np.testing.assert_allclose(anomaly[0, :2], [500, -200])
    assert np.isnan(anomaly[0, 2]) and np.allclose(smoothed, 150)
    # evaluate.damped_fill: the missing pixel's anomaly is its smoothed one, 4000 + 0.5·150 + 0.2·150
    filled = baselines.baseline_forecasts(stack, 12, [13], FILL, 0.4, damped_fit=fit, smoothing=5, fill=True)
    np.testing.assert_allclose(filled["damped"][13][0], [4280, 3930, 4105], rtol=1e-6)
    np.testing.assert_allclose(baselines.anomaly_features(stack, 12, FILL, 0.4, 5, fill=True)[0][0], [500, -200, 150])


def test_fit_damped_recovers_the_damping_of_a_world_that_has_it():
    rng = np.random.default_rng(0)
    months, phi = 120, (0.5, 0.2)
    stack = np.zeros((months, 16, 16), dtype=np.int16)
    stack[:13] = rng.integers(2000, 6000, size=(13, 16, 16))
    for position in range(13, months):  # lead-1 truth = EMA + φ₁·a + φ₂·smooth(a) + noise
        anomaly, smoothed = baselines.anomaly_features(stack, position - 1, FILL, 0.4, 5)
        expected = baselines.ema(stack, position, FILL, 0.4) + phi[0] * anomaly + phi[1] * smoothed
        stack[position] = np.round(expected + rng.normal(0, 100, expected.shape))
    images = [(origin, 1) for origin in range(12, months - 1)]
    fit = baselines.fit_damped(stack, images, FILL, 0.4, 5, horizon=1)
    np.testing.assert_allclose(fit.weights(1, 50), phi, atol=0.05)
    assert fit.to_dict() == {"by_month": False, "phi": [list(np.round(fit.phi[0, 0], 4))]}
    by_month = baselines.fit_damped(stack, images, FILL, 0.4, 5, horizon=1, by_month=True)
    assert by_month.images[0].sum() == len(images) and not np.allclose(by_month.phi[0, 0], by_month.phi[0, 1])
    # a fill pixel at the origin month never enters the fit, and the fit ignores images without targets
    with pytest.raises(ValueError, match="past the stack"):
        baselines.fit_damped(stack, [(months - 1, 1)], FILL, 0.4, 5, horizon=1)


def test_the_weighted_mean_weighs_each_earlier_year_by_one_minus_beta_and_skips_masked_ones():
    from phenocast.features import weighted_mean

    stack = np.full((40, 1, 2), 0, dtype=np.int16)
    stack[[3, 15, 27], 0, 0] = [1000, 2000, 4000]  # phase 3, three years; target 39 is the fourth
    stack[[3, 15, 27], 0, 1] = [1000, FILL, 4000]  # the middle year masked
    beta = 0.25
    weights = np.array([0.75**2, 0.75, 1.0])  # oldest first: the newest weighs 1
    expected_full = (weights @ [1000, 2000, 4000]) / weights.sum()
    expected_masked = (0.75 * 1000 + 4000) / 1.75  # the masked year counts for nothing, not as a year
    np.testing.assert_allclose(weighted_mean(stack, 39, FILL, beta)[0], [expected_full, expected_masked], rtol=1e-6)
    # a long record with a small β is the climatology (no first year keeps a large weight); β = 1 the last year
    np.testing.assert_allclose(weighted_mean(stack, 39, FILL, 1e-6)[0, 0], 7000 / 3, rtol=1e-4)
    assert weighted_mean(stack, 39, FILL, 1.0)[0, 0] == 4000
    assert np.isnan(weighted_mean(stack, 3, FILL, beta)).all()  # no earlier year


def test_a_fitted_reference_takes_the_beta_that_leaves_the_least_error_a_long_mean_without_a_trend():
    """``evaluate.damped_reference: fitted``: the weighted mean's β is the grid's β whose least-squares φ leaves
    the smallest squared error on the fitting images; the error it reports is that of its φ. A stationary
    seasonal curve under noise takes the longest mean of the grid; a curve that drifts year by year a shorter one."""
    rng = np.random.default_rng(0)
    months, size = 120, 12
    season = 3000 + 1500 * np.sin(2 * np.pi * np.arange(months) / 12)[:, None, None]
    images = [(origin, lead) for origin in range(12, months - 3) for lead in (1, 2)]
    grid = (0.1, 0.4, 0.9)
    fits = {}
    for world, drift in (("stationary", 0.0), ("drifting", 400.0)):
        # each calendar month's level walks from year to year on its own: the origin month's anomaly does not
        # show the target month's, only recent years of that month do
        trend = (drift * rng.normal(size=(months // 12, 12)).cumsum(axis=0)).reshape(months, 1, 1)
        stack = np.round(season + trend + rng.normal(0, 300, (months, size, size))).astype(np.int16)
        fit = baselines.fit_damped_reference(stack, images, FILL, 0.4, 5, 2, "fitted", grid)
        each = [baselines.fit_damped(stack, images, FILL, 0.4, 5, 2, beta=beta) for beta in grid]
        assert fit.beta == grid[int(np.argmin([one.squared_error for one in each]))]
        fits[world] = fit
        # the reported error is the sum of the squared residuals its φ leaves
        total = 0.0
        for origin, lead in images:
            anomaly, smoothed = baselines.anomaly_features(
                stack, origin, FILL, 0.4, 5, fit.reference(stack, origin, FILL, 0.4))
            first, second = fit.weights(lead, origin + lead)
            residual = (stack[origin + lead] - fit.reference(stack, origin + lead, FILL, 0.4)
                        - first * anomaly - second * smoothed)
            total += float(np.sum(residual.astype(np.float64) ** 2))
        assert fit.squared_error == pytest.approx(total, rel=1e-4)
    assert fits["stationary"].beta == 0.1 and fits["drifting"].beta > 0.1
    # the EMA reference is the fit as before: no β, the same φ
    ema = baselines.fit_damped_reference(stack, images, FILL, 0.4, 5, 2, "ema", grid)
    assert ema.beta is None and ema.phi.tobytes() == baselines.fit_damped(stack, images, FILL, 0.4, 5, 2).phi.tobytes()


def test_the_report_names_the_damped_forecasts_reference_and_phi():
    from phenocast.report import damped_line

    fitted = {"fit_end": 71, "damped": {"by_month": False, "phi": [[0.2861, 0.1168], [0.1358, -0.0394]]}}
    assert damped_line("Z1", fitted, 0.4) == (
        "- damped forecast of Z1: the EMA (α 0.4) + φ₁·a_o + φ₂·smooth(a_o), (φ₁, φ₂) per lead (0.286, 0.117), "
        "(0.136, -0.039), fitted on months through 71")
    fitted["damped"]["beta"] = 0.1
    assert "the weighted mean of the earlier years (β 0.1, fitted) + φ₁" in damped_line("Z1", fitted, 0.4)
