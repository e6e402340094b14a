"""The baselines as fitted forecasters: fitted once per run and zone, read back bit for bit, refitted when
their inputs or settings change, and the same numbers as the baseline functions they wrap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phenocast import baselines, features
from phenocast.config import load_config
from phenocast.forecasters import ZoneBaselines, baselines_path, fit_baselines, saved_baselines, saved_damped
from phenocast.origins import fit_end, period_images
from phenocast.zones import discover_zones, read_zone

from conftest import FILL, ROOT, VALID_RANGE, synthetic_stack, write_zone

SHORT = ["sequence.years=1", "sequence.origins=all", "data.val_months=12", "data.test_months=12"]


@pytest.fixture
def zone(tmp_path: Path):
    write_zone(tmp_path / "data", "Z1", synthetic_stack(60, 12, 10, seed=3))
    return discover_zones(tmp_path / "data", report=None)[0]


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the damped φ fits (``features.fit_damped`` calls)."""
    calls: list[int] = []
    fit_damped = features.fit_damped

    def counted(*arguments, **options):
        calls.append(1)
        return fit_damped(*arguments, **options)

    monkeypatch.setattr(features, "fit_damped", counted)
    return calls


def config_of(tmp_path: Path, *overrides: str):
    return load_config(ROOT / "configs" / "default.yaml",
                       [*SHORT, f"data.dir={tmp_path / 'data'}", f"output.dir={tmp_path / 'runs'}", *overrides])


@pytest.mark.parametrize("reference", ["ema", "fitted"])
def test_parameters_are_fitted_once_and_read_back_bit_for_bit(zone, tmp_path: Path, fits: list[int], reference: str):
    config = config_of(tmp_path, f"evaluate.damped_reference={reference}", "evaluate.alpha_grid=[0.2, 0.5]")
    per_fit = 1 if reference == "ema" else 2  # φ once per candidate β
    stack = read_zone(zone, FILL, VALID_RANGE)
    fresh = fit_baselines(stack, config, zone.first, fit_end(zone.first, zone.last, config))
    assert len(fits) == per_fit and (fresh.damped.beta is None) == (reference == "ema")
    written = saved_baselines(zone, config, config.run_dir, log=lambda _: None)
    assert len(fits) == 2 * per_fit and baselines_path(config.run_dir, "Z1", "damped").is_file()
    # the pipeline's base channels and every later reader get the saved φ and α: no fit
    read = saved_baselines(zone, config, config.run_dir, stack, log=lambda _: None)
    assert saved_damped(zone, config, config.run_dir, log=lambda _: None).phi.tobytes() == fresh.damped.phi.tobytes()
    assert len(fits) == 2 * per_fit
    for fitted in (written, read):
        assert fitted.end == fresh.end and fitted.to_dict() == fresh.to_dict()
        assert fitted.alpha_map.tobytes() == fresh.alpha_map.tobytes()
        assert fitted.damped.phi.tobytes() == fresh.damped.phi.tobytes() and fitted.damped.beta == fresh.damped.beta
        np.testing.assert_array_equal(fitted.damped.images, fresh.damped.images)
    images = period_images(zone.first, zone.last, config, "test")
    expected = ZoneBaselines(stack, config, zone.first, fresh).forecasts(images)
    got = ZoneBaselines(stack, config, zone.first, read).forecasts(images)
    for key in images:
        for method in baselines.BASELINES:
            assert got[key][method].tobytes() == expected[key][method].tobytes()


@pytest.mark.parametrize(("override", "refitted"), [
    ("evaluate.damped_smoothing=3", {"damped"}), ("evaluate.alpha_grid=[0.2,0.6]", {"ema_pixel"}),
    ("evaluate.damped_reference=fitted", {"damped"}),
    ("data.val_months=24", {"damped", "ema_pixel"}), ("train.lr=0.01", set())])
def test_a_stale_parameter_is_refitted_and_only_that_one(zone, tmp_path: Path, override: str, refitted: set):
    config = config_of(tmp_path)
    said: list[str] = []
    saved_baselines(zone, config, config.run_dir, log=said.append)
    assert len(said) == 2
    said.clear()
    saved_baselines(zone, config_of(tmp_path, override), config.run_dir, log=said.append)
    assert {method for method in ("damped", "ema_pixel") if any(f"{method}" in line for line in said)} == refitted


def test_changed_inputs_refit(zone, tmp_path: Path):
    config = config_of(tmp_path)
    saved_baselines(zone, config, config.run_dir, log=lambda _: None)
    write_zone(tmp_path / "data", "Z1", synthetic_stack(60, 12, 10, seed=4))  # new files, same names
    changed = discover_zones(tmp_path / "data", report=None)[0]
    said: list[str] = []
    fitted = saved_baselines(changed, config, config.run_dir, log=said.append)
    assert len(said) == 2
    stack = read_zone(changed, FILL, VALID_RANGE)
    fresh = fit_baselines(stack, config, changed.first, fit_end(changed.first, changed.last, config))
    assert fitted.damped.phi.tobytes() == fresh.damped.phi.tobytes()


def test_forecast_of_one_image_equals_the_baseline_functions(zone, tmp_path: Path):
    config = config_of(tmp_path)
    stack = read_zone(zone, FILL, VALID_RANGE)
    zone_baselines = ZoneBaselines.fit(stack, config, zone.first)
    origin, lead = 50, 2
    expected = baselines.baseline_forecasts(
        stack, origin - zone.first, [origin + lead - zone.first], FILL, config.evaluate.ema_alpha,
        zone_baselines.fitted.alpha_map, damped_fit=zone_baselines.fitted.damped,
        smoothing=config.evaluate.damped_smoothing, fill=config.evaluate.damped_fill)
    forecast = zone_baselines.forecast(origin, lead)
    assert sorted(forecast) == sorted(baselines.BASELINES)
    for method in baselines.BASELINES:
        target = expected[method][origin + lead - zone.first]
        assert forecast[method].tobytes() == target.tobytes()
        assert zone_baselines.forecaster(method).forecast(origin, lead).tobytes() == target.tobytes()
    with pytest.raises(ValueError, match="expected a baseline among"):
        zone_baselines.forecaster("oracle")
