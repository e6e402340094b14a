"""The network corrects a base: an untrained model forecasts exactly the base, padding never enters a pooled
statistic, ``train.init_from`` checks shapes, an ensemble forecasts its members' mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_run import TINY

from phenocast.config import load_config
from phenocast.errors import PhenocastError
from phenocast.preprocess import preprocess

from conftest import FILL, ROOT, VALID_RANGE, synthetic_stack, write_zone


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("residual")
    write_zone(root / "data", "Z1", synthetic_stack(60, 20, 14, seed=1, fill_fraction=0.05))
    write_zone(root / "data", "Z2", synthetic_stack(60, 10, 10, seed=2))
    preprocess(make_config(root, root / "unused"), progress=False, log=lambda message: None)
    return root


def make_config(root: Path, output: Path, *overrides: str):
    return load_config(ROOT / "configs" / "sample.yaml", [
        *TINY, f"data.dir={root / 'data'}", f"records.dir={root / 'records'}", f"output.dir={output}",
        "finetune.refit=false", "predict.tta=false", "report.maps=false", "train.validation_samples=8",
        "evaluate.bootstrap=200", "train.ensemble=1", *overrides])


def pipeline(root: Path, output: Path, *overrides: str):
    from phenocast.pipeline import Pipeline

    return Pipeline(make_config(root, output, *overrides), log=lambda message: None)


@pytest.mark.parametrize("base", ["ema", "damped"])
def test_an_untrained_model_forecasts_exactly_the_base(world: Path, tmp_path: Path, base: str):
    from phenocast.forecast import raw_path
    from phenocast.forecasters import ZoneBaselines, fit_baselines
    from phenocast.origins import fit_end, period_images
    from phenocast.postprocess import model_images
    from phenocast.zones import read_zone

    run = pipeline(world, tmp_path, f"model.base={base}", "train.epochs=0",
                   "model.linear_path=zero")  # a ridge start departs from the base on purpose (test_ridge.py)
    run.run(("pretrain", "predict"))
    for zone in run.zones:
        stack = read_zone(zone, FILL, VALID_RANGE)
        config = run.config
        images = period_images(zone.first, zone.last, config, "test")
        predicted = model_images(raw_path(config.run_dir, zone.name, "test"), zone, stack, config, images)
        fitted = fit_baselines(stack, config, zone.first, fit_end(zone.first, zone.last, config))
        expected = ZoneBaselines(stack, config, zone.first, fitted).forecasts(images)
        for key, image in predicted.items():
            finite = np.isfinite(image)
            assert finite.mean() > 0.9
            # stored units: 1e-2 is 1e-6 in NDVI
            np.testing.assert_allclose(image[finite], expected[key][base][finite], rtol=0, atol=1e-2)
        if base == "damped":
            np.testing.assert_allclose(run.samples[zone.name].damped.phi, fitted.damped.phi, rtol=1e-6)


def test_padded_pixels_do_not_change_pooled_statistics():
    from model.blocks import MaskedGlobalAveragePooling, squeeze_excite

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 8, 6)).astype(np.float32)
    mask = np.zeros((2, 8, 8, 1), np.float32)
    mask[0, :5, :6] = 1  # a window at a zone's corner: the rest is reflection padding
    mask[1] = 1
    changed = x.copy()
    changed[0, 5:] += 100.0  # only padding changes
    changed[0, :, 6:] -= 50.0
    pool = MaskedGlobalAveragePooling()
    np.testing.assert_allclose(pool([x, mask]).numpy(), pool([changed, mask]).numpy(), rtol=1e-6)
    np.testing.assert_allclose(pool([x, mask]).numpy()[0, 0, 0], x[0, :5, :6].mean(axis=(0, 1)), rtol=1e-5)
    inputs, gate_mask = tf.keras.Input((8, 8, 6)), tf.keras.Input((8, 8, 1))
    block = tf.keras.Model([inputs, gate_mask], squeeze_excite(inputs, 2, "relu", "se", mask=gate_mask))
    inside = mask[0, ..., 0] > 0
    np.testing.assert_allclose(block([x, mask]).numpy()[0][inside], block([changed, mask]).numpy()[0][inside],
                               rtol=1e-5)
    unmasked = tf.keras.Model(inputs, squeeze_excite(inputs, 2, "relu", "plain"))
    assert not np.allclose(unmasked(x).numpy()[0][inside], unmasked(changed).numpy()[0][inside])  # the test can fail


def test_init_from_checks_shapes_and_starts_from_the_file(world: Path, tmp_path: Path):
    import model as network

    source = pipeline(world, tmp_path / "source", "train.epochs=1", "train.steps_per_epoch=1")
    source.pretrain()
    start = source.stage_folder("pretrain") / "best.keras"
    transferred = pipeline(world, tmp_path / "transfer", f"train.init_from={start}", "train.epochs=0")
    transferred.pretrain()
    for ours, theirs in zip(network.load_model(transferred.stage_folder("pretrain") / "best.keras").get_weights(),
                            network.load_model(start).get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    wider = pipeline(world, tmp_path / "wider", f"train.init_from={start}", "model.filters=6", "train.epochs=0")
    with pytest.raises(PhenocastError) as error:
        wider.pretrain()
    message = str(error.value)
    assert "does not fit this network" in message and "stem_conv" in message and "\n" not in message
    missing = pipeline(world, tmp_path / "missing", f"train.init_from={tmp_path / 'nothing.keras'}")
    with pytest.raises(PhenocastError, match="found no file"):
        missing.pretrain()


def test_init_from_sample_pretrains_the_built_in_sample_once_and_starts_there(world: Path, tmp_path: Path,
                                                                               monkeypatch):
    """``train.init_from: sample``: the first run generates the built-in sample and pre-trains
    configs/sample.yaml on it under output.dir (shrunk here, as the test's network), then starts from it;
    a second run reuses that network without training it again; an ensemble's members start from draws of
    it with their own seeds."""
    import model as network
    import phenocast.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "PRIOR_OVERRIDES", (
        *TINY, "data.sample=true", f"data.dir={tmp_path / 'sample'}", "sample.size=24", "sample.months=60",
        "sample.zones=1", "records.workers=1", "train.validation_samples=8"))
    lines = []
    first = pipeline_module.Pipeline(make_config(world, tmp_path / "out", "train.init_from=sample", "train.epochs=0"),
                                     log=lines.append)
    first.pretrain()
    prior = tmp_path / "out" / "sample-prior" / "checkpoints" / "pretrain" / "best.keras"
    assert prior.is_file() and (tmp_path / "sample" / "Z1").is_dir()
    assert sum("pre-training configs/sample.yaml on the built-in sample first" in line for line in lines) == 1
    for ours, theirs in zip(network.load_model(first.stage_folder("pretrain") / "best.keras").get_weights(),
                            network.load_model(prior).get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    written = prior.stat().st_mtime_ns
    lines.clear()
    second = pipeline_module.Pipeline(make_config(world, tmp_path / "out", "train.init_from=sample", "train.epochs=0",
                                                  "output.name=again"), log=lines.append)
    second.pretrain()
    assert prior.stat().st_mtime_ns == written
    assert not any("built-in sample first" in line for line in lines)
    assert any(line.startswith("sample-prior: pretrain: finished earlier") for line in lines), lines
    # an ensemble: member 0 starts from that network, member 1 from the sample's network pre-trained with
    # member 1's seed (its own run), so the members average two draws of the prior instead of sharing one
    third = pipeline_module.Pipeline(make_config(world, tmp_path / "out", "train.init_from=sample",
                                                 "train.epochs=0", "train.ensemble=2", "output.name=ensemble"),
                                     log=lambda message: None)
    for _ in third.each_member():
        third.pretrain()
    assert prior.stat().st_mtime_ns == written
    other = tmp_path / "out" / "sample-prior-member1" / "checkpoints" / "pretrain"
    seeds = [load_config(folder / "config.resolved.yaml").seed for folder in (prior.parent, other)]
    assert seeds[1] == seeds[0] + pipeline_module.MEMBER_SEED_STEP
    starts = [network.load_model(path) for path in (prior, other / "best.keras")]
    assert not np.array_equal(*(model.get_layer("stem_conv").kernel.numpy() for model in starts))
    for member, start in enumerate(starts):
        ours = network.load_model(third.run_dir / "checkpoints" / (f"member{member}" if member else "")
                                  / "pretrain" / "best.keras")
        for mine, theirs in zip(ours.get_weights(), start.get_weights()):
            np.testing.assert_array_equal(mine, theirs)


def test_the_prior_follows_the_runs_advection_edge_in_a_folder_of_its_own(tmp_path: Path):
    """The sample's network is trained with the advection edge of the run that starts from it (its channels
    are computed as they will be), apart from sample.yaml's own when the two differ; members get their seeds."""
    from phenocast.pipeline import MEMBER_SEED_STEP, prior_config

    small = ROOT / "configs" / "small.yaml"
    shipped = load_config(ROOT / "configs" / "sample.yaml")
    edge = shipped.model.advection_edge
    other = "zero" if edge == "nearest" else "nearest"
    same = prior_config(load_config(small, [f"output.dir={tmp_path}", f"model.advection_edge={edge}"]))
    assert (same.output.name, same.model.advection_edge, same.seed) == ("sample-prior", edge, shipped.seed)
    assert same.run_dir == tmp_path / "sample-prior" and same.train.init_from is None
    moved = prior_config(load_config(small, [f"output.dir={tmp_path}", f"model.advection_edge={other}"]), member=2)
    assert (moved.output.name, moved.model.advection_edge, moved.seed) == (
        f"sample-prior-edge-{other}-member2", other, shipped.seed + 2 * MEMBER_SEED_STEP)


def test_the_prior_follows_the_runs_centred_layers_in_a_folder_named_by_them(tmp_path: Path):
    """A run with centred layers starts from a sample network trained with them, in ``…-centred``; a run
    without, from one trained without, in a folder without the suffix, whatever sample.yaml ships."""
    from phenocast.pipeline import prior_config

    small = ROOT / "configs" / "small.yaml"
    edge = load_config(ROOT / "configs" / "sample.yaml").model.advection_edge
    for centred in (False, True):
        for overrides in ((), (f"model.centre_layers={str(not centred).lower()}",)):  # sample.yaml either way
            run = load_config(small, [f"output.dir={tmp_path}", f"model.advection_edge={edge}",
                                      f"model.centre_layers={str(centred).lower()}"])
            prior = prior_config(run, overrides, member=1)
            assert prior.model.centre_layers is centred
            assert prior.output.name == ("sample-prior-centred-member1" if centred else "sample-prior-member1")


def test_an_ensemble_forecasts_the_mean_of_its_members(world: Path, tmp_path: Path):
    import model as network
    from phenocast.forecast import load_meta, load_windows, predict_windows, raw_path

    run = pipeline(world, tmp_path, "train.ensemble=2", "train.epochs=1", "train.steps_per_epoch=1",
                   "data.zones=[Z2]")
    run.run(("pretrain", "predict"))
    members = [run.run_dir / "checkpoints" / (f"member{k}" if k else "") / "pretrain" / "best.keras" for k in (0, 1)]
    first, second = (network.load_model(path) for path in members)
    kernels = [model.get_layer("stem_conv").kernel.numpy() for model in (first, second)]
    assert not np.array_equal(*kernels)  # different seeds
    sample = run.samples["Z2"]
    path = raw_path(run.run_dir, "Z2", "test")
    alone = [predict_windows(model, sample, sample.test, run.config).differences for model in (first, second)]
    # the mean of the members: their sum in member order over their count, in float32, as each alone forecasts
    np.testing.assert_array_equal(load_windows(path).differences, (alone[0] + alone[1]) / np.float32(2))
    assert len(load_meta(path)["model"]) == 2
    assert (run.run_dir / "logs" / "m1-pretrain.csv").is_file()


def test_the_small_config_runs_on_a_zone_of_a_few_dozen_pixels(tmp_path: Path):
    """configs/small.yaml on an 8×8 zone (one 32-px window, 94 % padding) runs to a checked submission."""
    from phenocast.pipeline import Pipeline

    data_dir = tmp_path / "data"
    write_zone(data_dir, "Tiny", synthetic_stack(84, 8, 8, seed=7))
    config = load_config(ROOT / "configs" / "small.yaml", [
        f"data.dir={data_dir}", f"output.dir={tmp_path / 'outputs'}", "records.workers=1", "train.epochs=1",
        "train.steps_per_epoch=2", "report.maps=false", "evaluate.bootstrap=200", "train.validation_samples=8",
        "finetune.refit=false", "train.init_from=null", "train.ensemble=1"])  # the prior and members: above
    assert config.window == 32 and config.model.base == "damped" and config.model.masked_pooling
    preprocess(config, progress=False, log=lambda message: None)
    run = Pipeline(config, log=lambda message: None)
    run.run(("pretrain", "predict", "postprocess"))
    import json

    scores = json.loads((config.run_dir / "scores.json").read_text())
    from phenocast.origins import period_images

    (zone,) = run.zones
    assert scores["test"]["images"] == len(period_images(zone.first, zone.last, config, "test")) > 60
    assert (config.run_dir / "submission.zip").is_file()
    weight = scores["model_weight"]["Tiny"]
    assert weight["base"] == "damped" and 0 <= weight["weight"] <= 1 and weight["reason"]
