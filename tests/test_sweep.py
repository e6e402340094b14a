"""Sweeps over config members, and the leaderboard of runs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_run import TINY

from phenocast.errors import PhenocastError
from phenocast.evaluate import leaderboard
from phenocast.sweep import load_sweep

from conftest import ROOT, in_process, synthetic_stack, write_zone


def write_sweep(path: Path, data_dir: Path, output: Path, members: str) -> Path:
    common = [*TINY, "finetune.enabled=false", "finetune.refit=false", "train.epochs=1", f"data.dir={data_dir}",
              f"output.dir={output}", "report.maps=false", "predict.tta=false", "train.ensemble=1"]
    path.write_text(f"name: tiny\nbase: {ROOT / 'configs' / 'sample.yaml'}\nset: {json.dumps(common)}\n{members}")
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    """run.py in this process (TensorFlow starts once for the module), with its exit code and output."""
    return in_process("run.py", *args)


def test_a_two_member_sweep_finishes_skips_and_tabulates(tmp_path: Path):
    data_dir = tmp_path / "data"
    write_zone(data_dir, "Z1", synthetic_stack(60, 16, 16, seed=1))
    write_zone(data_dir, "Z2", synthetic_stack(60, 8, 8, seed=2))
    output = tmp_path / "outputs"
    # the overlap differs between members: each gets its own records, built on first use
    sweep_file = write_sweep(tmp_path / "sweep.yaml", data_dir, output,
                             "members:\n  - {tiling.margin: 4}\n  - {tiling.margin: 2, train.weight_decay: 1.0e-5}\n")
    only_second = run("--sweep", str(sweep_file), "--member", "1")
    assert only_second.returncode == 0, only_second.stderr
    assert (output / "tiny-1" / "scores.json").is_file() and not (output / "tiny-0").exists()
    everything = run("--sweep", str(sweep_file))
    assert everything.returncode == 0, everything.stderr
    assert "member 1 (tiling.margin=2, train.weight_decay=1e-05): finished earlier, skipped" in everything.stdout
    assert {p.name for p in (output / "records").iterdir()} == {"data-c8-m4", "data-c8-m2"}
    with open(output / "sweeps" / "tiny" / "sweep.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["member"] for row in rows] == ["0", "1"]
    assert rows[1]["tiling.margin"] == "2" and rows[1]["train.weight_decay"] == "1e-05"
    assert rows[0]["train.weight_decay"] == ""
    for row, member in zip(rows, ("tiny-0", "tiny-1")):
        scores = json.loads((output / member / "scores.json").read_text())
        for method in ("model", "ema", "climatology"):
            # the select half of validation chose (the check half checked the blend)
            for period, expected in (("validation", scores["validation_parts"]["select"][method]),
                                     ("test", scores["test"]["pooled"][method])):
                assert float(row[f"{period} {method}"]) == pytest.approx(expected, rel=1e-12)
        headline = scores["headline"]
        assert row["headline period"] == "test" and int(row["images"]) == headline["images"]
        blend = headline["methods"]["blend"]
        assert float(row["blend ÷ EMA"]) == pytest.approx(blend["over_ema"], rel=1e-12)
        assert [float(row["blend ÷ EMA low"]), float(row["blend ÷ EMA high"])] == blend["over_ema_interval"]
    chosen = min(rows, key=lambda row: float(row["validation blend"]))  # chosen on validation, never on test
    assert [row["chosen"] for row in rows] == ["yes" if row is chosen else "" for row in rows]
    assert (output / "sweeps" / "tiny" / "sweep.png").is_file()
    again = run("--sweep", str(sweep_file))
    assert again.returncode == 0 and again.stdout.count("finished earlier, skipped") == 2
    # the leaderboard collects both runs, best first, with the ratio to each run's EMA
    rows, table = leaderboard(sorted(output.glob("tiny-*")))
    assert [row["rmse"] for row in rows] == sorted(row["rmse"] for row in rows)
    assert {row["run"] for row in rows} == {str(output / "tiny-0"), str(output / "tiny-1")}
    assert all(row["over_ema"] == pytest.approx(1.0) for row in rows if row["method"] == "ema")
    assert all(row["period"] == "test" and row["validation_rmse"] is not None for row in rows)
    printed = subprocess.run([sys.executable, "-m", "phenocast.evaluate", "--runs", *map(str, output.glob("tiny-*"))],
                             cwd=ROOT, capture_output=True, text=True)  # no TensorFlow: quick
    assert printed.returncode == 0
    assert printed.stdout.splitlines()[0].split()[:5] == ["rank", "run", "period", "method", "rmse"]
    # the README's results are regenerated from the runs' scores.json, between its markers
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\nafter\n")
    written = subprocess.run([sys.executable, "-m", "phenocast.evaluate", "--runs", str(output / "tiny-0"),
                              "--markdown", str(readme)], cwd=ROOT, capture_output=True, text=True)
    assert written.returncode == 0, written.stderr
    text = readme.read_text()
    scores = json.loads((output / "tiny-0" / "scores.json").read_text())
    assert "old" not in text and text.endswith("after\n") and scores["headline"]["text"] in text
    assert f"| blend | {scores['test']['pooled']['blend']:.4f} |" in text


def test_sweep_files_are_checked_before_any_training(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {ROOT / 'configs' / 'sample.yaml'}\nmembers:\n  - {{model.l3: 1}}\n")
    with pytest.raises(PhenocastError, match="unknown config key model.l3"):
        load_sweep(bad)
    bad.write_text(f"base: {ROOT / 'configs' / 'sample.yaml'}\n")
    with pytest.raises(PhenocastError, match="expected members or a grid"):
        load_sweep(bad)
    bad.write_text(f"base: {ROOT / 'configs' / 'sample.yaml'}\ngrid: {{train.weight_decay: [1.0e-7, 1.0e-5]}}\n"
                   f"extra: 1\n")
    with pytest.raises(PhenocastError, match="unknown sweep key extra"):
        load_sweep(bad)
    # a member that changes nothing (the base already holds the value) would only repeat a run
    bad.write_text(f"base: {ROOT / 'configs' / 'sample.yaml'}\nmembers:\n  - {{}}\n  - {{model.loss: mse}}\n")
    with pytest.raises(PhenocastError, match=r"member 1 \(model.loss=mse\) gives the same config as member 0"):
        load_sweep(bad)
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"name: g\nbase: {ROOT / 'configs' / 'sample.yaml'}\n"
                    f"grid: {{train.weight_decay: [1.0e-7, 1.0e-5], tiling.margin: [0, 8]}}\n")
    sweep = load_sweep(grid)
    assert len(sweep.members) == 4 and sweep.member_config(sweep.members[3]).output.name == "g-3"
    assert sweep.member_config(sweep.members[3]).tiling.margin == 8


@pytest.mark.parametrize("name", ["lambda.yaml", "overlap.yaml", "recipes.yaml", "recipes-small.yaml"])
def test_shipped_sweeps_load(name: str):
    sweep = load_sweep(ROOT / "configs" / "sweeps" / name)
    assert len(sweep.members) >= 3
    result = run("--sweep", str(ROOT / "configs" / "sweeps" / name), "--member", "99")
    assert result.returncode == 2 and "has members 0.." in result.stderr
