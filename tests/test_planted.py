"""Planted worlds: the sample's file format, determinism, and an oracle that beats the EMA and the damped
baseline by the planted margins.

``python tests/test_planted.py`` prints the calibration table (test-period RMSE ratios to the EMA) of every
world at its default size, over a few seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phenocast.errors import PhenocastError
from phenocast.forecasters import load_oracle
from phenocast.synthetic import planted
from phenocast.synthetic.planted import (
    PLANTED_WORLDS,
    Landcover,
    LandcoverZone,
    Regional,
    RegionalZone,
    backtest_planted,
    generate_planted,
    planted_knobs,
    planted_stacks,
    planted_statistics,
    statistics_table,
)
from phenocast.zones import discover_zones, read_zone

from conftest import FILL, VALID_RANGE

TINY = dict(zones=1, months=24, size=16)  # the file-format checks
SCORED = dict(zones=2, months=72, size=32)  # the score checks: 24 training, 24 validation, 24 test months


def all_files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, Path]:
    """Every world written once: 1 zone × 24 months of 16² pixels."""
    folders = {}
    for world in PLANTED_WORLDS:
        folders[world] = tmp_path_factory.mktemp(world)
        assert generate_planted(folders[world], world, **TINY) == ["Z1"]
    return folders


def ratios(pooled: dict[str, float]) -> dict[str, float]:
    return {method: value / pooled["ema"] for method, value in pooled.items()}


@pytest.mark.parametrize("world", list(PLANTED_WORLDS))
def test_every_world_writes_what_the_pipeline_reads(worlds: dict[str, Path], world: str):
    folder = worlds[world]
    (zone,) = discover_zones(folder, report=None)
    assert (zone.name, zone.first, zone.last, zone.gaps, zone.shape) == ("Z1", 1, 24, [], (16, 16))
    stack = read_zone(zone, FILL, VALID_RANGE)
    assert stack.dtype == np.int16 and (stack != FILL).all()
    oracle = load_oracle(folder, "Z1")
    assert set(oracle) == {(origin, lead) for origin in range(1, 25) for lead in (1, 2, 3)}
    assert all(image.dtype == np.int16 and image.shape == (16, 16) for image in oracle.values())
    assert sorted(path.name for path in (folder / "_oracle" / "Z1").iterdir()) == [
        "Z1-025.tif", "Z1-026.tif", "Z1-027.tif"]
    readme = (folder / "_oracle" / "README.txt").read_text()
    assert f"planted world '{world}'" in readme and "knobs:" in readme
    expected, expected_oracle = planted_stacks(world, **TINY)["Z1"]  # the same values, in memory
    np.testing.assert_array_equal(stack, expected)
    assert all(np.array_equal(oracle[key], expected_oracle[key]) for key in oracle)
    seasonal = stack.reshape(2, 12, -1).mean(axis=(0, 2))  # a seasonal cycle in plausible NDVI
    assert 1500 < seasonal.min() < seasonal.max() - 1000 and seasonal.max() < 9000


def test_generation_is_deterministic(tmp_path: Path, worlds: dict[str, Path]):
    generate_planted(tmp_path / "again", "moving", **TINY)
    first, second = all_files(worlds["moving"]), all_files(tmp_path / "again")
    assert first.keys() == second.keys() and all(first[name] == second[name] for name in first)
    generate_planted(tmp_path / "other", "moving", **{**TINY, "seed": 1})
    assert (tmp_path / "other" / "Z1" / "Z1-001.tif").read_bytes() != first["Z1/Z1-001.tif"]
    two = planted_stacks("moving", zones=2, months=24, size=16)
    np.testing.assert_array_equal(two["Z1"][0], planted_stacks("moving", **TINY)["Z1"][0])  # zone i: (seed, i)
    assert not np.array_equal(two["Z1"][0], two["Z2"][0])
    changed = planted_stacks("moving", **TINY, anomaly_sd=0.1)["Z1"][0]
    assert not np.array_equal(changed, two["Z1"][0])


def test_an_existing_world_is_only_replaced_with_overwrite(worlds: dict[str, Path]):
    with pytest.raises(PhenocastError, match="without zone folders to write the planted world .control."):
        generate_planted(worlds["control"], "control", **TINY)
    generate_planted(worlds["control"], "control", **TINY, overwrite=True)
    assert [zone.name for zone in discover_zones(worlds["control"], report=None)] == ["Z1"]


def test_bad_arguments_are_one_line_errors(tmp_path: Path, capsys):
    assert planted.main(["--world", "wind", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and all(world in error for world in PLANTED_WORLDS)
    assert planted.main(["--world", "moving", "--out", str(tmp_path), "--set", "velocity=3"]) == 2
    assert "anomaly_sd" in capsys.readouterr().err  # the valid knobs are listed
    assert planted.main(["--world", "moving", "--out", str(tmp_path), "--set", "speed=fast"]) == 2
    assert "[3.0, 4.0]" in capsys.readouterr().err  # the YAML form --set takes, not Python's tuple
    assert planted.main(["--world", "moving", "--out", str(tmp_path), "--months", "12"]) == 2
    assert "at least 24 planted months" in capsys.readouterr().err
    with pytest.raises(PhenocastError, match=r"persistence in \[0, 1\)"):
        planted_knobs("persistence", persistence=1.0)
    assert planted.parse_knob("moving", "speed=[1, 2]") == ("speed", (1.0, 2.0))
    assert not any(tmp_path.iterdir())  # nothing written


def test_the_command_line_writes_a_world_and_its_statistics(tmp_path: Path, capsys):
    arguments = ["--world", "persistence", "--out", str(tmp_path), "--zones", "1", "--months", "72", "--size",
                 "16", "--quiet", "--stats", "--set", "persistence=0.7"]
    assert planted.main(arguments) == 0
    output = capsys.readouterr().out
    assert "wrote the planted world 'persistence'" in output and "oracle/ema" in output
    from_files = planted_statistics(tmp_path)
    in_memory = backtest_planted(planted_stacks("persistence", zones=1, months=72, size=16, persistence=0.7))
    assert from_files == pytest.approx(in_memory, rel=1e-12)
    assert f"{from_files['oracle'] / from_files['ema']:.3f}" in output


@pytest.mark.parametrize("world", ["persistence", "moving", "regional", "landcover"])
def test_the_oracle_is_the_conditional_mean(world: str):
    """Regressing the truth on the oracle (both minus S) gives slope 1: the anomaly's forecast is neither
    too strong, too weak nor misplaced (a wrong power of φ or a wrong direction of motion would fail)."""
    knobs = planted_knobs(world)
    predicted, observed = [], []
    for index, (stack, oracle) in enumerate(planted_stacks(world, zones=6, months=60, size=32).values()):
        seasonal = planted.ZONE_CLASSES[world](knobs, 32, 7, 0, index).seasonal * 10000  # S: same landscape
        for (origin, lead), image in oracle.items():
            if origin + lead <= len(stack):
                curve = seasonal[(origin + lead - 1 + 7 - 1) % 12]  # first_month 7
                predicted.append(image - curve)
                observed.append(stack[origin + lead - 1] - curve)
    predicted, observed = np.ravel(predicted), np.ravel(observed)
    assert np.dot(predicted, observed) / np.dot(predicted, predicted) == pytest.approx(1.0, abs=0.08)


def test_persistence_the_damped_baseline_gets_most_of_the_oracle_gain():
    pooled = ratios(backtest_planted(planted_stacks("persistence", **SCORED)))
    assert pooled["oracle"] < 0.75
    assert (1 - pooled["damped"]) / (1 - pooled["oracle"]) > 0.6  # the rest: the EMA's error on S


def test_moving_the_oracle_halves_the_ema_error_and_the_damped_baseline_does_not():
    pooled = ratios(backtest_planted(planted_stacks("moving", zones=2, months=120, size=64)))
    assert 0.4 < pooled["oracle"] < 0.65
    assert pooled["damped"] > pooled["oracle"] + 0.15


def test_regional_only_the_zone_mean_shows_the_regional_anomaly():
    zone = RegionalZone(Regional(), 128, 7, 0, 0)
    window_errors = []
    for _ in range(24):
        anomaly = zone.step()
        assert float(anomaly.mean(dtype=np.float64)) == pytest.approx(zone.level, abs=1e-6)
        window_errors.append(anomaly[:64, :64].mean(dtype=np.float64) - zone.level)  # one window: poor
    assert np.sqrt(np.mean(np.square(window_errors))) > 0.5 * Regional().anomaly_sd
    pooled = ratios(backtest_planted(planted_stacks("regional", zones=4, months=72, size=64)))
    assert pooled["oracle"] < 0.9 and pooled["damped"] > pooled["oracle"] + 0.05


def test_landcover_one_zone_wide_phi_loses_to_the_classes():
    zone = LandcoverZone(Landcover(), 32, 7, 0, 0)
    evergreen, cropland = (zone.classes == 0), (zone.classes == 1)
    assert abs(evergreen.mean() - 0.5) < 0.01  # each class covers its share
    amplitude = zone.seasonal.max(axis=0) - zone.seasonal.min(axis=0)  # the curve shows the class
    assert amplitude[evergreen].max() < amplitude[cropland].min()
    assert (zone.persistence[evergreen] == np.float32(0.9)).all() and (zone.persistence[cropland] == 0).all()
    pooled = ratios(backtest_planted(planted_stacks("landcover", **SCORED)))
    assert pooled["oracle"] < 0.85 and pooled["damped"] > pooled["oracle"] + 0.1
    assert (1 - pooled["damped"]) / (1 - pooled["oracle"]) < 0.4


def test_control_the_only_gap_is_the_ema_error_on_the_seasonal_curve():
    pooled = ratios(backtest_planted(planted_stacks("control", **SCORED)))
    # EMA error = the noise of the target month and Σ w·noise of earlier years: MSE ratio 1 / (1 + Σw²); the
    # test targets of month 49..72 have 4-6 same-month years before them (α = 0.4: Σw² ≈ 0.27-0.29)
    assert pooled["oracle"] == pytest.approx((1 / 1.28) ** 0.5, abs=0.02)
    assert pooled["damped"] == pytest.approx(1.0, abs=0.01)  # nothing to find in the anomaly
    assert pooled["oracle"] < pooled["climatology"] < 1.0  # the mean of all years is closer to S


if __name__ == "__main__":
    rows = {}
    for world in PLANTED_WORLDS:
        for seed in range(3):
            rows[f"{world} (seed {seed})"] = backtest_planted(planted_stacks(world, seed=seed))
    print("Test-period RMSE relative to the EMA: 2 zones × 120 months at each world's default size\n")
    print(statistics_table(rows))
