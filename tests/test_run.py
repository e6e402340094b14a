"""run.py end to end on tiny data: a valid zip, skipping, resuming after SIGKILL, two-device mirroring."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, synthetic_stack, write_zone

TINY = ["tiling.centre=8", "tiling.margin=4", "sequence.years=2", "data.val_months=14", "data.sample=false",
        "model.filters=4", "model.growth_rate=4", "model.layers_per_block=[1,1,1]",
        "model.lstm_filters=[4,4,4]", "model.aspp_filters=4", "model.dilation_rates=[1,2]",
        "model.decoder_filters=4", "train.epochs=2", "train.steps_per_epoch=2", "train.batch_size=2",
        "train.warmup_steps=1", "finetune.enabled=true", "finetune.epochs=1", "finetune.steps_per_epoch=1",
        "finetune.batch_size=2", "predict.tta=true",
        "records.workers=1"]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny zones and their records, preprocessed once for every test of this module."""
    root = tmp_path_factory.mktemp("world")
    data_dir = root / "data"
    write_zone(data_dir, "Z1", synthetic_stack(60, 20, 14, seed=1))
    write_zone(data_dir, "Z2", synthetic_stack(60, 10, 10, seed=2), gaps=(33,))
    world = (data_dir, root / "records")
    prepared = script("preprocess.py", *arguments(world, root / "unused"))
    assert prepared.returncode == 0, prepared.stderr
    return world


def arguments(world: tuple[Path, Path], output: Path, *extra: str) -> list[str]:
    data_dir, records = world
    values = [*TINY, f"data.dir={data_dir}", f"records.dir={records}", f"output.dir={output}", *extra]
    return ["--config", str(ROOT / "configs" / "sample.yaml"), *[part for value in values for part in ("--set", value)]]


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, name, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_end_to_end_run_gives_a_valid_submission_and_reruns_skip(tiny_world: tuple[Path, Path], tmp_path: Path):
    output = tmp_path / "outputs"
    first = script("run.py", *arguments(tiny_world, output, "finetune.refit=true", "postprocess.ema_weight=fit"))
    assert first.returncode == 0, first.stderr
    run_dir = output / "sample"
    for name in ("config.resolved.yaml", "submission.zip", "scores.json", "report.md",
                 "checkpoints/pretrain/best.keras", "checkpoints/finetune/Z2/done.json",
                 "checkpoints/refit/Z1/best.keras", "predictions/Z1-061.tif", "predictions/Z2-063.tif",
                 "logs/pretrain.csv"):
        assert (run_dir / name).exists(), name
    checked = script("postprocess.py", *arguments(tiny_world, output), "--check", str(run_dir / "submission.zip"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    scores = json.loads((run_dir / "scores.json").read_text())
    assert {"model", "blend", "ema", "ema_pixel", "climatology", "persistence"} <= set(scores["pooled"])
    assert set(scores["zones"]) == {"Z1", "Z2"}
    # the report's table shows exactly the numbers of scores.json
    report = (run_dir / "report.md").read_text()
    assert f"{scores['pooled']['ema']:.4f}" in report and f"{scores['zones']['Z2']['rmse']['model']:.4f}" in report
    assert "![Z1 month" in report and (run_dir / "report" / "calendar.png").is_file()
    again = script("run.py", *arguments(tiny_world, output, "finetune.refit=true", "postprocess.ema_weight=fit"))
    assert again.returncode == 0, again.stderr
    for line in ("pretrain: finished earlier", "finetune-Z1: finished earlier", "refit-Z2: finished earlier",
                 "predict Z1 (forecast): up to date, skipped"):
        assert line in again.stdout, again.stdout
    subset = script("run.py", *arguments(tiny_world, output, "finetune.refit=true"), "--stage", "finetune,predict",
                    "--zones", "Z2")
    assert subset.returncode == 0 and "Z1" not in subset.stdout, subset.stdout
    assert "finetune-Z2: finished earlier" in subset.stdout


KILL_AFTER_EPOCH = textwrap.dedent("""
    import os, signal, sys
    import phenocast.training as training
    original = training._BestCheckpoint.on_epoch_end
    def dying(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-training, before epoch 1's backup
    training._BestCheckpoint.on_epoch_end = dying
    sys.argv[0] = "run.py"
    import run
    sys.exit(run.main())
""")


def test_a_run_killed_mid_training_resumes_and_finishes(tiny_world: tuple[Path, Path], tmp_path: Path):
    output = tmp_path / "outputs"
    args = arguments(tiny_world, output, "train.epochs=3", "finetune.enabled=false")
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_EPOCH, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr
    stage = output / "sample" / "checkpoints" / "pretrain"
    assert (stage / "backup").is_dir() and not (stage / "done.json").exists()
    resumed = script("run.py", *args)
    assert resumed.returncode == 0, resumed.stderr
    done = json.loads((stage / "done.json").read_text())
    assert done["epochs"] == 3
    assert "Epoch 1/3" not in resumed.stdout and "Epoch 2/3" in resumed.stdout  # continued, not restarted
    assert (output / "sample" / "submission.zip").is_file() and not (stage / "backup").exists()


def test_pretraining_mirrors_over_two_logical_cpu_devices(tiny_world: tuple[Path, Path], tmp_path: Path):
    output = tmp_path / "outputs"
    result = script("run.py", *arguments(tiny_world, output, "train.cpu_devices=2", "train.epochs=1"),
                    "--stage", "pretrain")
    assert result.returncode == 0, result.stderr
    assert "mirrored strategy over 2 logical CPU devices" in result.stdout
    assert json.loads((output / "sample" / "checkpoints" / "pretrain" / "done.json").read_text())["epochs"] == 1


def test_run_refuses_missing_records_with_one_line(tiny_world: tuple[Path, Path], tmp_path: Path):
    result = script("run.py", *arguments((tiny_world[0], tmp_path / "no-records"), tmp_path / "nothing"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: expected preprocessed records in")
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_refuses_a_zone_too_short_for_the_sequence(tiny_world: tuple[Path, Path], tmp_path: Path):
    result = script("run.py", *arguments(tiny_world, tmp_path / "outputs", "sequence.years=5"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "too short for the configured sequence" in result.stderr
