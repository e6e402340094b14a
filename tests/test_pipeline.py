"""The stages in process: fine-tuning that only hurts keeps the pre-trained weights, stale stages are refused
and ``--restart`` rebuilds them, predictions are redone only when their model or settings change, records
older than the zone's months are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_run import TINY

from phenocast.config import load_config
from phenocast.errors import PhenocastError
from phenocast.preprocess import preprocess

from conftest import ROOT, synthetic_stack, tiny_profile, write_zone


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Two tiny zones, their records and a finished pre-training of zone Z2 (``pretrained``)."""
    root = tmp_path_factory.mktemp("pipeline")
    write_zone(root / "data", "Z1", synthetic_stack(60, 20, 14, seed=1))
    write_zone(root / "data", "Z2", synthetic_stack(60, 10, 10, seed=2))
    preprocess(make_config(root, root / "unused"), progress=False, log=lambda message: None)
    pipeline(root, root / "pretrained").pretrain()
    return root


def copy_pretrained(world: Path, output: Path) -> Path:
    """A copy of the world's finished pre-training in ``output`` (every test here starts from it)."""
    shutil.copytree(world / "pretrained", output, dirs_exist_ok=True)
    return output


def make_config(root: Path, output: Path, *overrides: str):
    return load_config(ROOT / "configs" / "sample.yaml", [
        *TINY, f"data.dir={root / 'data'}", f"records.dir={root / 'records'}", f"output.dir={output}",
        "train.epochs=1", "train.steps_per_epoch=1", "finetune.refit=false", "predict.tta=false",
        "report.maps=false", "data.zones=[Z2]", "train.ensemble=1", *overrides])


def pipeline(root: Path, output: Path, *overrides: str):
    from phenocast.pipeline import Pipeline

    return Pipeline(make_config(root, output, *overrides), log=lambda message: None)


def weights_of(path: Path) -> list[np.ndarray]:
    import model as network

    return network.load_model(path).get_weights()


def test_fine_tuning_that_only_hurts_keeps_the_pretrained_weights(world: Path, tmp_path: Path):
    # a learning rate of 3 with a constant schedule wrecks the weights in one step
    run = pipeline(world, tmp_path, "finetune.lr=3.0", "finetune.schedule=constant", "finetune.epochs=2",
                   "finetune.early_stopping=0", "finetune.enabled=true")
    copy_pretrained(world, tmp_path)
    run.pretrain()  # finished earlier: fine-tuning settings are not pre-training's
    run.finetune()
    pretrained = weights_of(run.stage_folder("pretrain") / "best.keras")
    for zone in ("Z2",):
        folder = run.stage_folder("finetune", zone)
        done = json.loads((folder / "done.json").read_text())
        assert done["best_epoch"] == 0 and done["epochs"] == 2, done
        assert all(np.array_equal(a, b) for a, b in zip(weights_of(folder / "best.keras"), pretrained))
        assert not all(np.array_equal(a, b) for a, b in zip(weights_of(folder / "last.keras"), pretrained))
    # a refit then trains the zone for its chosen 0 epochs: the refit pre-training is its model
    refit = pipeline(world, tmp_path, "finetune.lr=3.0", "finetune.schedule=constant", "finetune.epochs=2",
                     "finetune.early_stopping=0", "finetune.enabled=true", "finetune.refit=true")
    refit.refit()
    start = weights_of(refit.stage_folder("refit-pretrain") / "best.keras")
    assert all(np.array_equal(a, b) for a, b in zip(weights_of(refit.submission_model("Z2")), start))


def test_a_changed_setting_is_refused_until_restart(world: Path, tmp_path: Path):
    copy_pretrained(world, tmp_path)
    pipeline(world, tmp_path).pretrain()
    first = json.loads((tmp_path / "sample" / "checkpoints" / "pretrain" / "stage.json").read_text())
    changed = pipeline(world, tmp_path, "train.weight_decay=0.5")
    with pytest.raises(PhenocastError, match=r"train\.weight_decay 0\.01 → 0\.5.*--restart pretrain.*output\.name"):
        changed.pretrain()
    # settings that cannot change a result do not count
    pipeline(world, tmp_path, "train.memory_growth=false", "report.maps=true").pretrain()
    changed.run(("pretrain",), restart="pretrain")
    second = json.loads((tmp_path / "sample" / "checkpoints" / "pretrain" / "stage.json").read_text())
    assert first["settings"]["train.weight_decay"] == 1e-2 and second["settings"]["train.weight_decay"] == 0.5
    assert (tmp_path / "sample" / "checkpoints" / "pretrain" / "done.json").is_file()
    assert len((tmp_path / "sample" / "logs" / "pretrain.csv").read_text().splitlines()) == 2  # a new log


def test_a_stage_made_before_a_key_existed_counts_as_holding_its_old_value(world: Path, tmp_path: Path):
    """A finished stage whose record predates a config key (``pipeline.ADDED_KEYS``) is reused while the key
    holds the value that reproduces it, and refused, naming that value, once it holds another."""
    copy_pretrained(world, tmp_path)
    pipeline(world, tmp_path).pretrain()
    path = tmp_path / "sample" / "checkpoints" / "pretrain" / "stage.json"
    record = json.loads(path.read_text())
    for key in ("model.ridge_samples", "model.centre_layers", "sequence.fill_missing"):
        del record["settings"][key]  # as an older phenocast wrote it
    path.write_text(json.dumps(record))
    assert pipeline(world, tmp_path).pretrain().best_epoch is not None  # skipped, not refused
    with pytest.raises(PhenocastError, match=r"model\.ridge_samples 96 → 97"):
        pipeline(world, tmp_path, "model.ridge_samples=97").pretrain()
    with pytest.raises(PhenocastError, match=r"sequence\.fill_missing 0 → 5"):
        pipeline(world, tmp_path, "sequence.fill_missing=5").pretrain()


def test_the_damped_base_settings_make_a_stage_stale_only_under_that_base(world: Path, tmp_path: Path):
    """The stale keys follow what the samples read: with ``model.base: damped`` the damped smoothing
    changes the base channel and φ, so a changed value after pre-training is refused with the key named;
    under the EMA base it changes nothing the network sees, and is accepted."""
    pipeline(world, tmp_path / "damped", "model.base=damped").pretrain()
    with pytest.raises(PhenocastError, match=r"evaluate\.damped_smoothing 5 → 3.*--restart pretrain"):
        pipeline(world, tmp_path / "damped", "model.base=damped", "evaluate.damped_smoothing=3").pretrain()
    with pytest.raises(PhenocastError, match=r"evaluate\.damped_by_month false → true"):
        pipeline(world, tmp_path / "damped", "model.base=damped", "evaluate.damped_by_month=true").pretrain()
    copy_pretrained(world, tmp_path / "ema")
    pipeline(world, tmp_path / "ema", "model.base=ema", "evaluate.damped_smoothing=3").pretrain()  # not stale


def test_a_refit_that_stops_before_the_test_period_is_scored_there(world: Path, tmp_path: Path):
    """``finetune.refit_through: validation``: the refit trains on targets up to the test period, predicts
    its origins, and the test period (only) scores it beside the selected model, with an interval."""
    from phenocast.forecast import REFIT_TEST, raw_path

    run = pipeline(world, tmp_path, "finetune.refit=true", "finetune.refit_through=validation",
                   "finetune.enabled=false", "evaluate.bootstrap=100")
    copy_pretrained(world, tmp_path)
    run.refit()
    run.predict()
    assert raw_path(run.run_dir, "Z2", REFIT_TEST).is_file()
    scores = run.postprocess()["scores"]
    assert "refit" in scores["test"]["pooled"] and "refit" not in scores["validation"]["pooled"]
    refit = scores["headline"]["refit"]
    assert refit["over_model_interval"][0] <= refit["over_model"] <= refit["over_model_interval"][1]
    assert refit["images"] == scores["test"]["images"] and "the refit" in scores["headline"]["text"]
    periods = scores["periods"]["Z2"]
    assert scores["submission"]["Z2"]["trained_through"] == periods["test"][0] - 1, periods


def test_predictions_are_redone_only_when_their_model_or_settings_change(world: Path, tmp_path: Path):
    messages: list[str] = []
    run = pipeline(world, tmp_path, "finetune.enabled=false")
    run.log = messages.append
    copy_pretrained(world, tmp_path)
    run.predict()
    assert sum("→" in message for message in messages) == 3  # validation, test, forecast
    messages.clear()
    run.predict()
    assert sum("up to date, skipped" in message for message in messages) == 3
    again = pipeline(world, tmp_path, "finetune.enabled=false", "predict.tta=true")
    again.log = messages.append
    messages.clear()
    again.predict()
    assert sum("→" in message for message in messages) == 3
    again.restart("pretrain")
    assert not list((tmp_path / "sample" / "predictions" / "raw").glob("*.npz"))


def test_a_month_added_after_preprocessing_is_refused_with_one_line(world: Path, tmp_path: Path):
    copy = tmp_path / "world"
    shutil.copytree(world / "data", copy / "data")
    preprocess(make_config(copy, tmp_path), progress=False, log=lambda message: None)
    write_zone(copy / "data", "Z2", synthetic_stack(1, 10, 10, seed=9), first=61, profile=tiny_profile(10, 10))
    with pytest.raises(PhenocastError, match=r"^the records of zone Z2 in .* hold months 1\.\.60, but .* now holds "
                                             r"months 1\.\.61 .*rerun python preprocess\.py"):
        pipeline(copy, tmp_path)
