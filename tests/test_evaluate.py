"""Backtest scoring: the CLI's JSON equals an independent, straightforward computation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phenocast import baselines
from phenocast.config import load_config
from phenocast.forecasters import backtest_stack, score_predictions
from phenocast.metrics import image_mse
from phenocast.zones import discover_zones, month_file_name, read_zone, write_geotiff

from conftest import FILL, ROOT, VALID_RANGE, synthetic_stack


def reference_backtest(stack: np.ndarray, start: int, end: int, horizon: int = 3, alpha: float = 0.4
                       ) -> dict[str, float]:
    """Persistence, climatology and EMA RMSE written the plain way (float64 with NaN, loops) over the
    images whose target lies at positions start..end."""
    values = np.where(stack == FILL, np.nan, stack.astype(np.float64)) / 10000
    errors = {"persistence": [], "climatology": [], "ema": []}
    for origin in range(start - 1, end):  # 0-based position of the origin
        for lead in range(1, horizon + 1):
            target = origin + lead
            if target > end or np.isnan(values[target]).all():
                continue
            history = values[: origin + 1]
            same = [history[p] for p in range(target % 12, origin + 1, 12)]
            persistence = np.full(values.shape[1:], np.nan)
            for image in history:
                persistence = np.where(np.isnan(image), persistence, image)
            climatology = np.nanmean(same, axis=0)
            ema = same[0].copy()
            for image in same:
                ema = np.where(np.isnan(ema), image, ema)
                ema = np.where(np.isnan(image), ema, 0.6 * ema + 0.4 * image)
            truth = values[target]
            for name, forecast in (("persistence", persistence), ("climatology", climatology),
                                   ("ema", ema)):
                valid = ~np.isnan(truth)
                assert not np.isnan(forecast[valid]).any()
                errors[name].append(np.mean((forecast[valid] - truth[valid]) ** 2))
    return {name: float(np.sqrt(np.mean(values))) for name, values in errors.items()}


# a 3-month history: a 40-month zone keeps a 16-month training period before 12 validation and 12 test months
# (with the default 15 months its periods would be shortened, origins.period_lengths)
SHORT = ["sequence.years=1", "sequence.offsets=[0,-1,-2]", "sequence.origins=all", "data.val_months=12",
         "data.test_months=12"]


@pytest.mark.parametrize("seed", [0, 1])
def test_backtest_matches_the_reference_computation(seed: int):
    config = load_config(ROOT / "configs" / "default.yaml", SHORT)
    # 6 years with 3% fill: every pixel has same-month history (the reference has no fallbacks)
    stack = synthetic_stack(72, 12, 10, seed=seed, fill_fraction=0.03, permanent=False)
    stack[-7] = FILL  # a gap month inside the test period
    board = backtest_stack(stack, config, "Z1")
    for period, (start, end) in (("validation", (48, 59)), ("test", (60, 71))):  # 0-based target positions
        expected = reference_backtest(stack, start, end)
        pooled = board.restrict_period(period).summary()["pooled"]
        for name, value in expected.items():
            assert pooled[name] == pytest.approx(value, abs=1e-6), (period, name)  # float32 arithmetic
        assert pooled["ema_pixel"] <= pooled["climatology"] * 1.5
    # every test image's target lies in the test period, every validation image's in validation
    assert {s.month for s in board.scores if s.period == "test"} == set(range(61, 73)) - {66}
    assert {s.month for s in board.scores if s.period == "validation"} == set(range(49, 61))


def test_evaluate_cli_writes_json_per_zone_and_pooled(tiny_data: Path, tmp_path: Path):
    json_path = tmp_path / "scores.json"
    result = subprocess.run(
        [sys.executable, "-m", "phenocast.evaluate", "--config", str(ROOT / "configs" / "default.yaml"),
         "--set", f"data.dir={tiny_data}", "--set", f"output.dir={tmp_path / 'out'}",
         *[part for value in SHORT for part in ("--set", value)], "--json", str(json_path), "--quiet"],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    scores = json.loads(json_path.read_text())
    assert set(scores) == {"validation", "test"}
    test = scores["test"]
    assert set(test["pooled"]) == {"persistence", "climatology", "ema", "ema_pixel", "damped"}
    assert set(test["zones"]) == {"Z1", "Z2"}
    assert set(test["zones"]["Z1"]["by_lead"]) == {"1", "2", "3"}
    # test months 29..40: origins 28..39, leads within the period: 12 + 11 + 10 images per zone
    assert test["zones"]["Z2"]["images"] == 33
    # validation months 17..28 from origins 16..27; Z2's gap month 17 is lead 1 of origin 16: not scored
    assert scores["validation"]["zones"]["Z2"]["images"] == 33 - 1
    board_lines = [line for line in result.stdout.splitlines() if line.startswith("pooled  all")]
    assert len(board_lines) == 2 and f"{test['pooled']['ema']:.4f}" in board_lines[1]
    assert (json_path.parent / "scores.config.yaml").is_file()
    # nothing else was written into the data
    assert sorted(p.name for p in tiny_data.iterdir()) == ["Z1", "Z2"]


def test_gap_months_are_not_scored(tmp_path: Path):
    config = load_config(ROOT / "configs" / "default.yaml", SHORT)
    stack = synthetic_stack(40, 6, 6, seed=3)
    stack[-2] = FILL  # month 39 is a gap
    board = backtest_stack(stack, config, "Z1")
    assert all(score.month != 39 for score in board.scores)
    assert {score.month for score in board.scores} == set(range(17, 41)) - {39}


def test_score_predictions_against_truth(tiny_data: Path, tmp_path: Path):
    config = load_config(ROOT / "configs" / "default.yaml", [f"data.dir={tiny_data}"])
    zones = discover_zones(tiny_data, report=None)
    zone = zones[0]
    truth = read_zone(zone, FILL, VALID_RANGE)
    predicted = tmp_path / "predictions"
    for month in (39, 40):
        image = truth[month - 1].astype(np.float64) + 100  # 0.01 NDVI off everywhere
        image[truth[month - 1] == FILL] = np.nan
        write_geotiff(predicted / month_file_name("Z1", month), image, zone.profile, FILL, VALID_RANGE)
    board = score_predictions(predicted, zones, config)
    assert board.summary()["zones"]["Z1"]["rmse"]["predictions"] == pytest.approx(0.01)
    assert sorted(score.lead for score in board.scores) == [1, 2]


def test_a_prediction_with_fill_where_truth_is_valid_scores_as_ndvi_zero(tiny_data: Path, tmp_path: Path):
    config = load_config(ROOT / "configs" / "default.yaml", [f"data.dir={tiny_data}"])
    zones = discover_zones(tiny_data, report=None)
    zone = zones[0]
    truth = read_zone(zone, FILL, VALID_RANGE)
    month = 40
    climatology = baselines.climatology(truth, month - 1, FILL)
    predicted = tmp_path / "predictions"
    holes = truth[month - 1].astype(np.float64)  # perfect, except for a block left as fill
    holes[:8] = np.nan
    write_geotiff(predicted / month_file_name("Z1", month), holes, zone.profile, FILL, VALID_RANGE)
    score = score_predictions(predicted, zones, config).scores[0]
    valid = truth[month - 1] != FILL
    hole = truth[month - 1][:8][valid[:8]] / 10000  # the error where the prediction is fill: NDVI 0 - truth
    expected = np.sum(hole ** 2) / valid.sum()
    assert score.pixels == valid.sum() and score.mse == pytest.approx(expected, rel=1e-6)
    # leaving pixels out scores worse than the climatology would have there
    climatology_mse = image_mse(climatology, truth[month - 1], FILL, 10000.0)[0]
    assert score.mse > climatology_mse


def test_a_zone_too_short_for_the_periods_is_scored_on_shortened_ones_with_a_note(tiny_data: Path, tmp_path: Path):
    # a 15-month history: the 40-month zones keep an 18-month training period, 12 validation and 10 test months
    json_path = tmp_path / "scores.json"
    result = subprocess.run(
        [sys.executable, "-m", "phenocast.evaluate", "--config", str(ROOT / "configs" / "default.yaml"),
         "--set", f"data.dir={tiny_data}", "--set", f"output.dir={tmp_path / 'out'}", "--set", "sequence.years=1",
         "--set", "sequence.origins=all", "--set", "data.val_months=12", "--set", "data.test_months=12",
         "--json", str(json_path), "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "note: zone Z1 has 40 months (1..40), too few for 12 validation" in result.stdout
    assert "it gets 12 validation and 10 test months" in result.stdout
    scores = json.loads(json_path.read_text())
    assert scores["test"]["zones"]["Z1"]["images"] == 10 + 9 + 8  # test months 31..40
