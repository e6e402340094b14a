"""run.py end to end on tiny data: a valid zip, skipping, refusing stale stages, a SIGKILL resumed to the
same bytes, two-device mirroring."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, in_process, synthetic_stack, write_zone

TINY = ["tiling.centre=8", "tiling.margin=4", "sequence.years=2", "data.val_months=12", "data.test_months=9",
        "sequence.origins=all", "data.sample=false", "train.ensemble=1",
        "model.filters=4", "model.growth_rate=4", "model.layers_per_block=[1,1,1]",
        "model.lstm_filters=[4,4,4]", "model.aspp_filters=4", "model.dilation_rates=[1,2]",
        "model.decoder_filters=4", "train.epochs=2", "train.steps_per_epoch=2", "train.batch_size=2",
        "train.warmup_steps=1", "finetune.enabled=false", "finetune.epochs=1", "finetune.steps_per_epoch=1",
        "finetune.batch_size=2", "predict.tta=false",  # TTA: tests/test_pipeline.py, test_dataset.py
        "finetune.refit=true",
        "model.linear_path=zero",  # a ridge start (tests/test_ridge.py) beats 2-step epochs: nothing to refit
        "records.workers=1", "train.validation_samples=16", "evaluate.bootstrap=300"]


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


@pytest.fixture(scope="module")
def uninterrupted(tiny_world: tuple[Path, Path], tmp_path_factory) -> Path:
    """One full run (pretrain, refit, predict, postprocess, report), for every test (fine-tuning
    and the refits of fine-tuned zones run in tests/test_pipeline.py)."""
    output = tmp_path_factory.mktemp("uninterrupted")
    first = script("run.py", *arguments(tiny_world, output, "postprocess.model_weight=fit"))
    assert first.returncode == 0, first.stderr
    return output


def test_end_to_end_run_gives_a_valid_submission_and_reruns_skip(tiny_world: tuple[Path, Path], uninterrupted: Path):
    output = uninterrupted
    run_dir = output / "sample"
    for name in ("config.resolved.yaml", "submission.zip", "scores.json", "report.md",
                 "checkpoints/pretrain/best.keras", "checkpoints/pretrain/stage.json",
                 "checkpoints/pretrain/config.resolved.yaml", "checkpoints/refit-pretrain/done.json",
                 "checkpoints/refit-pretrain/best.keras", "predictions/Z1-061.tif",
                 "predictions/Z2-063.tif", "predictions/test/Z1-test.tif", "predictions/validation/Z2-validation.tif",
                 "logs/pretrain.csv", "logs/refit-pretrain.csv"):
        assert (run_dir / name).exists(), name
    checked = in_process("postprocess.py", *arguments(tiny_world, output), "--check",
                         str(run_dir / "submission.zip"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    scores = json.loads((run_dir / "scores.json").read_text())
    for period in ("test", "validation"):
        assert {"model", "blend", "ema", "ema_pixel", "damped", "climatology", "persistence"} <= set(
            scores[period]["pooled"])
        assert set(scores[period]["zones"]) == {"Z1", "Z2"}
    assert list(scores)[:4] == ["name", "data", "headline", "test"]  # the test period leads
    assert not scores["periods"]["Z1"]["shortened"] and not scores["periods"]["Z2"]["shortened"]
    headline = scores["headline"]
    assert headline["period"] == "test" and headline["chose_nothing"] and headline["images"] == 2 * (9 + 8 + 7)
    assert scores["submission"]["Z1"] == {"method": "blend", "model": "checkpoints/refit-pretrain/best.keras",
                                          "trained_through": 60}
    refit = json.loads((run_dir / "checkpoints/refit-pretrain/stage.json").read_text())
    pretrain = json.loads((run_dir / "checkpoints/pretrain/done.json").read_text())
    assert refit["inputs"]["epochs"] == pretrain["best_epoch"]
    # the report leads with the test numbers of scores.json and its maps come from the scored files
    report = (run_dir / "report.md").read_text()
    assert headline["text"][1:] in report and "## Test RMSE" in report and "goal" not in report
    test = scores["test"]
    assert f"{test['pooled']['ema']:.4f}" in report and f"{test['zones']['Z2']['rmse']['model']:.4f}" in report
    assert report.index("## Test RMSE") < report.index("## Validation RMSE")
    assert "![Z1 month" in report and (run_dir / "report" / "calendar.png").is_file()
    assert "checkpoints/refit-pretrain/best.keras" in report
    assert "- damped forecast of Z1: the EMA (α 0.4) + φ₁·a_o" in report  # scores.json's fitted φ, named
    years = scores["years_after_training"]  # the report's table of years after training reads scores.json
    assert "## RMSE by year after training" in report and len(years) >= 2
    assert f"| blend ÷ {headline['best_baseline']} |" in report
    for row in years:
        line = next(line for line in report.splitlines()
                    if line.startswith(f"| {row['year']} | {row['period']} | {row['images']} |"))
        for key in ("blend_over_ema", "blend_over_best_baseline"):
            ratio, low, high = row[key]
            assert f"{ratio:.3f} [{low:.3f}–{high:.3f}]" in line
        assert line.endswith(f"{row['blend_over_best_baseline'][0]:.3f} [{row['blend_over_best_baseline'][1]:.3f}–"
                             f"{row['blend_over_best_baseline'][2]:.3f}] |")
    again = in_process("run.py", *arguments(tiny_world, output, "postprocess.model_weight=fit"))
    assert again.returncode == 0, again.stderr
    for line in ("pretrain: finished earlier", "refit-pretrain: finished earlier",
                 "predict Z1 (forecast): up to date, skipped", "predict Z2 (test): up to date, skipped"):
        assert line in again.stdout, again.stdout
    subset = in_process("run.py", *arguments(tiny_world, output), "--stage", "refit,predict", "--zones", "Z2")
    assert subset.returncode == 0 and "Z1" not in subset.stdout, subset.stdout
    assert "predict Z2 (forecast): up to date, skipped" in subset.stdout
    # a finished stage whose settings changed is refused, with the key named and the way out
    stale = in_process("run.py", *arguments(tiny_world, output, "train.weight_decay=0.5"))
    assert stale.returncode == 2 and len(stale.stderr.strip().splitlines()) == 1, stale.stderr
    assert "pretrain in" in stale.stderr and "train.weight_decay 0.01 → 0.5" in stale.stderr
    assert "--restart pretrain" in stale.stderr and "output.name" in stale.stderr


KILL_MID_EPOCH = textwrap.dedent("""
    import os, signal, sys
    import keras
    original = keras.callbacks.CSVLogger.on_train_batch_end
    def dying(self, batch, logs=None):
        if self.filename.endswith("pretrain.csv") and "refit" not in self.filename and len(self.keys or ()) \
                and batch == 0:
            os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of the second epoch
        return original(self, batch, logs)
    keras.callbacks.CSVLogger.on_train_batch_end = dying
    sys.argv[0] = "run.py"
    import run
    sys.exit(run.main())
""")


def test_a_run_killed_mid_epoch_resumes_to_the_same_bytes(tiny_world: tuple[Path, Path], uninterrupted: Path,
                                                          tmp_path: Path):
    output = tmp_path / "outputs"
    args = arguments(tiny_world, output, "postprocess.model_weight=fit")
    killed = subprocess.run([sys.executable, "-c", KILL_MID_EPOCH, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr
    stage = output / "sample" / "checkpoints" / "pretrain"
    assert (stage / "backup").is_dir() and not (stage / "done.json").exists()
    resumed = script("run.py", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "Epoch 1/2" not in resumed.stdout.split("pretrain")[1].split("stage pretrain")[0]  # continued
    assert json.loads((stage / "done.json").read_text())["epochs"] == 2 and not (stage / "backup").exists()
    reference, run_dir = uninterrupted / "sample", output / "sample"
    assert (run_dir / "submission.zip").read_bytes() == (reference / "submission.zip").read_bytes()
    for raw in sorted((reference / "predictions" / "raw").glob("*.npz")):
        with np.load(raw) as expected, np.load(run_dir / "predictions" / "raw" / raw.name) as actual:
            np.testing.assert_array_equal(actual["differences"], expected["differences"], err_msg=raw.name)
    for period in ("validation", "test"):
        for zone in ("Z1", "Z2"):
            name = f"predictions/{period}/{zone}-{period}.tif"
            assert (run_dir / name).read_bytes() == (reference / name).read_bytes(), name
    scores = [json.loads((folder / "scores.json").read_text()) for folder in (reference, run_dir)]
    assert scores[0]["test"] == scores[1]["test"] and scores[0]["headline"] == scores[1]["headline"]


def test_pretraining_mirrors_over_two_logical_cpu_devices(tiny_world: tuple[Path, Path], tmp_path: Path):
    output = tmp_path / "outputs"
    result = script("run.py", *arguments(tiny_world, output, "train.cpu_devices=2", "train.epochs=1"),
                    "--stage", "pretrain")
    assert result.returncode == 0, result.stderr
    assert "mirrored strategy over 2 logical CPU devices" in result.stdout
    assert json.loads((output / "sample" / "checkpoints" / "pretrain" / "done.json").read_text())["epochs"] == 1


REFUSALS = """
import json, sys
sys.path.insert(0, "tests")
from conftest import in_process
results = [in_process("run.py", *argv) for argv in json.loads(sys.argv[1])]
print(json.dumps({"results": [[result.returncode, result.stderr] for result in results],
                  "tensorflow": "tensorflow" in sys.modules}))
"""


def test_run_refuses_missing_records_zones_too_short_and_a_first_month_short_of_zones_before_tensorflow(
        tiny_world: tuple[Path, Path], tmp_path: Path):
    """Each refusal is one line and comes before TensorFlow is imported (8-9 s on a small CPU)."""
    commands = [arguments((tiny_world[0], tmp_path / "no-records"), tmp_path / "nothing"),
                arguments(tiny_world, tmp_path / "outputs", "sequence.years=5"),
                arguments(tiny_world, tmp_path / "outputs", "data.first_month={Z1: 2}")]
    result = subprocess.run([sys.executable, "-c", REFUSALS, json.dumps(commands)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    (missing_code, missing), (short_code, short), (months_code, months) = report["results"]
    assert missing_code == short_code == months_code == 2
    assert missing.strip().startswith("error: expected preprocessed records in")
    assert short.strip().startswith("error: no zone of the run is long enough to train on: zone Z1 has 60 months")
    assert "too short for the configured sequence" in short
    assert months.strip().startswith("error: data.first_month gives the calendar month of month 001 for Z1, not "
                                     "for zone(s) Z2 of this run")
    assert all(len(message.strip().splitlines()) == 1 for message in (missing, short, months))
    assert report["tensorflow"] is False
    assert not (tmp_path / "nothing").exists() and not (tmp_path / "outputs").exists()


def test_short_zones_run_shortened_and_a_zone_too_short_to_train_on_submits_its_ema(tmp_path: Path):
    # with sequence.years 2 a training period needs 30 months (27 of history, 3 targets). Z1 has 60, too few
    # for 12 validation and 20 test months: its test period keeps 18 months, validation all 12. Z2 has 20,
    # too few to train on: the run goes on with Z1, and Z2's forecast is the EMA of its own months. With the
    # code before either change the run stopped with exit 2.
    import rasterio

    from phenocast.features import ema
    from phenocast.zones import discover_zones, read_zone, to_int16

    data_dir = tmp_path / "data"
    write_zone(data_dir, "Z1", synthetic_stack(60, 20, 14, seed=1))
    write_zone(data_dir, "Z2", synthetic_stack(20, 10, 10, seed=2))
    world, output = (data_dir, tmp_path / "records"), tmp_path / "outputs"
    untrained = ("note: zone Z2 has 20 months (1..20), fewer than the 30 a training period needs: it is not "
                 "trained on, validated or scored, and its forecast is the EMA alone")
    shortened = ("note: zone Z1 has 60 months (1..60), too few for 12 validation (data.val_months) and 20 test "
                 "months (data.test_months) after the 30 a training period needs: it gets 12 validation and 18 "
                 "test months")
    prepared = in_process("preprocess.py", *arguments(world, output, "data.test_months=20"))
    assert prepared.returncode == 0, prepared.stderr
    assert untrained in prepared.stdout and shortened in prepared.stdout
    result = in_process("run.py", *arguments(world, output, "data.test_months=20", "train.epochs=0",
                                         "finetune.refit=false"))
    assert result.returncode == 0, result.stderr
    assert untrained in result.stdout and shortened in result.stdout
    assert "predict Z2: too short to train on" in result.stdout
    run_dir = output / "sample"
    scores = json.loads((run_dir / "scores.json").read_text())
    assert scores["periods"]["Z1"]["test"] == [43, 60] and scores["periods"]["Z1"]["validation"] == [31, 42]
    assert scores["periods"]["Z1"]["training_end"] == 30 and scores["periods"]["Z1"]["shortened"]
    assert scores["headline"]["images"] == 18 + 17 + 16  # Z1's test origins' leads inside the period
    assert scores["periods"]["Z2"]["trained"] is False and scores["periods"]["Z1"]["trained"] is True
    assert "validation" not in scores["periods"]["Z2"] and "test" not in scores["periods"]["Z2"]
    assert scores["model_weight"]["Z2"]["fallback"] == "ema" and scores["model_weight"]["Z2"]["weight"] == 0
    assert scores["submission"]["Z2"]["model"] is None and scores["submission"]["Z1"]["model"]
    assert not list((run_dir / "predictions" / "raw").glob("Z2-*"))
    stack = read_zone(next(zone for zone in discover_zones(data_dir, report=None) if zone.name == "Z2"), -3000,
                      [-2000, 10000])
    for month in (21, 22, 23):
        with rasterio.open(run_dir / "predictions" / f"Z2-{month:03d}.tif") as dataset:
            written = dataset.read(1)
        expected = to_int16(ema(stack, month - 1, -3000, 0.4), -3000, [-2000, 10000])
        defined = expected != -3000  # elsewhere the EMA's gaps are filled (climatology, persistence)
        assert defined.mean() > 0.9
        np.testing.assert_array_equal(written[defined], expected[defined])
    assert in_process("postprocess.py", *arguments(world, output, "data.test_months=20"), "--check",
                  str(run_dir / "submission.zip")).returncode == 0
    report = (run_dir / "report.md").read_text()
    assert "test 43..60 (shortened: the zone is too short for 12 validation and 20 test months)" in report
    assert ("which chose nothing), shorter in 1 zone(s) too short for them (below), none in 1 zone(s) too "
            "short to train on, forecast by the EMA alone (below); origins") in report
    assert "- zone Z2: months 1..20, too short to train on" in report
    assert "- the submission of Z2 is the EMA alone" in report
