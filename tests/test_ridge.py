"""The per-pixel ridge regression (phenocast/ridge.py) and the network's linear path started at it."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from phenocast.config import load_config  # noqa: E402
from phenocast.preprocess import preprocess  # noqa: E402
from phenocast.ridge import fit_ridge  # noqa: E402
from phenocast.synthetic.planted import generate_planted  # noqa: E402

from conftest import ROOT, TINY_NETWORK, held_out_rmse  # noqa: E402


def planted_table(rng, rows: int, kernel: np.ndarray, bias: np.ndarray, noise: float):
    features = rng.normal(0, 1, (rows, kernel.shape[0])) * np.arange(1, kernel.shape[0] + 1)  # unequal scales
    features[:, -1] = 3.0  # a constant feature: centred away, weight 0
    return features, features @ kernel + bias + rng.normal(0, noise, (rows, kernel.shape[1]))


def test_the_ridge_recovers_a_planted_linear_map_and_shrinks_noise_away():
    rng = np.random.default_rng(0)
    kernel = np.array([[0.5, -1.0], [0.0, 2.0], [1.5, 0.0], [0.0, 0.0]])
    bias = np.array([0.1, -0.2])
    fit = fit_ridge(planted_table(rng, 5000, kernel, bias, 0.01), planted_table(rng, 2000, kernel, bias, 0.01))
    np.testing.assert_allclose(fit.kernel[:-1], kernel[:-1], atol=2e-3)
    assert fit.kernel[-1].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(fit.bias, bias, atol=2e-3)
    assert fit.penalty == 1e-4 and fit.rows == 5000
    # targets unrelated to the features: validation chooses the strongest penalty, the map shrinks to ~0
    def pure_noise(features, targets):
        return features, rng.normal(0, 1, targets.shape)

    fit = fit_ridge(pure_noise(*planted_table(rng, 200, kernel, bias, 0)),
                    pure_noise(*planted_table(rng, 200, kernel, bias, 0)))
    assert fit.penalty == 10.0
    assert np.abs(fit.kernel[:-1] * np.arange(1, 4)[:, None]).max() < 0.2


@pytest.fixture(scope="module")
def persistence_world(tmp_path_factory):
    """A 2-zone 32² persistence world (φ = 0.8) of 72 months and its records."""
    root = tmp_path_factory.mktemp("ridge")
    generate_planted(root / "data", "persistence", zones=2, months=72, size=32, seed=3)
    preprocess(ridge_config(root, root / "unused"), progress=False, log=lambda message: None)
    return root


def ridge_config(root, output, *overrides: str):
    return load_config(ROOT / "configs" / "sample.yaml", [
        *TINY_NETWORK, f"data.dir={root / 'data'}", "data.sample=false", f"records.dir={root / 'records'}",
        f"output.dir={output}", "data.val_months=12", "data.test_months=12", "train.epochs=0",
        "train.validation_samples=32", "finetune.enabled=false", "records.workers=1", "train.ensemble=1",
        "finetune.refit=true", "model.linear_path=ridge", *overrides])


def test_a_ridge_started_network_forecasts_the_ridge_before_training(persistence_world, tmp_path):
    """``model.linear_path: ridge`` with no training epoch: the pre-trained model is base + the ridge
    fitted on training origins; on a persistence world it already beats its base on held-out months, and
    pre-training scored it first (epoch 0 is the stage's model)."""
    import model as network
    from phenocast.pipeline import Pipeline
    from phenocast.training import StageResult

    config = ridge_config(persistence_world, tmp_path)
    lines = []
    run = Pipeline(config, log=lines.append)
    result = run.pretrain()
    assert result.best_epoch == 0
    run.refit()  # as many epochs as pre-training chose: none, the refit is base + its own ridge start
    refit = StageResult.load(run.stage_folder("refit-pretrain"))
    assert (refit.epochs, refit.best_epoch) == (0, 0)
    assert any(line.startswith("linear path: ridge regression") for line in lines), lines
    model = network.load_model(run.stage_folder("pretrain") / "best.keras")
    assert np.any(model.get_layer("forecast_linear_head").kernel.numpy())
    assert not np.any(model.get_layer("forecast_head").kernel.numpy())
    ridge, base = held_out_rmse(run, model)
    assert ridge < 0.9 * base, (ridge, base)


def test_the_starting_model_is_the_network_pretraining_started_from(persistence_world, tmp_path):
    """``Pipeline.starting_model`` (epoch 0 of the learnability bench's curves) rebuilds the network
    pre-training starts from: with no training epoch that is the stage's saved model, weight for weight
    (the input statistics and the ridge start included)."""
    import model as network
    from phenocast.pipeline import Pipeline

    run = Pipeline(ridge_config(persistence_world, tmp_path), log=lambda message: None)
    run.pretrain()
    saved = network.load_model(run.stage_folder("pretrain") / "best.keras")
    start = run.starting_model()
    assert np.any(start.get_layer("forecast_linear_head").kernel.numpy())
    assert len(saved.weights) == len(start.weights)
    for kept, rebuilt in zip(saved.weights, start.weights):
        np.testing.assert_array_equal(kept.numpy(), rebuilt.numpy(), err_msg=kept.path)


def test_without_validation_the_linear_path_starts_at_zero_and_says_so(persistence_world, tmp_path):
    """The ridge's penalty is chosen on the select half of validation; a run without validation months
    (a short record) starts the path at zero, with a log line, rather than fail or guess a penalty."""
    import model as network
    from phenocast.pipeline import Pipeline

    lines = []
    run = Pipeline(ridge_config(persistence_world, tmp_path, "data.val_months=0"), log=lines.append)
    run.pretrain()
    assert any("no zone has a validation origin to choose the ridge penalty on" in line for line in lines), lines
    model = network.load_model(run.stage_folder("pretrain") / "best.keras")
    assert not np.any(model.get_layer("forecast_linear_head").kernel.numpy())


def test_ridge_samples_sets_the_pairs_each_table_draws(persistence_world, tmp_path):
    """``model.ridge_samples``: each table holds the valid pixels of that many (window, origin) pairs (the
    32² windows stay far under the row cap), so four times the pairs give about four times the rows, and
    the pipeline's ridge fits on the training table of the configured size."""
    from phenocast.pipeline import Pipeline
    from phenocast.ridge import fit_zones, pixel_table

    rows = {}
    for samples in (4, 16):
        config = ridge_config(persistence_world, tmp_path / str(samples), f"model.ridge_samples={samples}")
        zones = list(Pipeline(config, log=lambda message: None).samples.values())
        features, targets = pixel_table(zones, config, lambda zone: zone.origins("train"), "train", config.seed)
        assert len(features) == len(targets) > 0
        assert fit_zones(zones, config).rows == len(features)  # the same draw of the same seed
        rows[samples] = len(features)
    assert 3 * rows[4] < rows[16] < 5 * rows[4]
