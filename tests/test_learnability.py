"""The network learns what a planted world holds: a tiny persistence world (``phenocast.synthetic.planted``),
a few hundred training steps through the real pipeline, then held-out months.

A dead network (every kernel at zero: the base plus a constant) or a network that cannot reach its inputs
fails here; the untrained-model-is-its-base test (tests/test_residual.py) cannot tell them apart.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from phenocast.config import load_config  # noqa: E402
from phenocast.io import read_epoch_log  # noqa: E402
from phenocast.preprocess import preprocess  # noqa: E402
from phenocast.synthetic.planted import generate_planted  # noqa: E402

from conftest import ROOT, TINY_NETWORK, held_out_rmse  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-zone 32² persistence world (φ = 0.8) of 72 months and the sample network trained on it for 300
    steps (12 validation and 12 test months held out), its linear path starting at zero."""
    root = tmp_path_factory.mktemp("learnability")
    generate_planted(root / "data", "persistence", zones=2, months=72, size=32, seed=3)
    config = load_config(ROOT / "configs" / "sample.yaml", [
        *TINY_NETWORK, f"data.dir={root / 'data'}", "data.sample=false", f"records.dir={root / 'records'}",
        f"output.dir={root / 'out'}", "data.val_months=12", "data.test_months=12", "train.epochs=3",
        "train.steps_per_epoch=100", "train.warmup_steps=20", "train.validation_samples=32",
        "finetune.enabled=false", "finetune.refit=false", "records.workers=1", "train.ensemble=1",
        "model.linear_path=zero"])  # the layers learn it from zero: a ridge start (tests/test_ridge.py) would
    preprocess(config, progress=False, log=lambda message: None)  # beat the base without them
    from phenocast.pipeline import Pipeline

    run = Pipeline(config, log=lambda message: None)
    run.pretrain()
    return config, run


def test_the_trained_network_beats_its_base_on_held_out_months(trained):
    import model as network

    _, run = trained
    learned, base = held_out_rmse(run, network.load_model(run.stage_folder("pretrain") / "best.keras"))
    # the optimum is about 0.7 × the EMA here (the damped baseline gets most of that): a clear margin
    assert learned < 0.9 * base, (learned, base)


def test_its_kernels_stay_alive_and_depart_from_the_base_over_pixels(trained):
    config, run = trained
    rows = read_epoch_log(run.logs / "pretrain.csv")
    assert len(rows) == 3
    last = rows[-1]
    ratios = {key: float(value) for key, value in last.items() if key.startswith("kernel_ratio_")}
    assert ratios and min(ratios.values()) > 0.5, ratios
    assert all(float(row["collapsed"]) == 0 for row in rows)
    assert float(last["departure_spatial_rms"]) > 0.2 * float(last["departure_rms"]) > 0
    assert float(last["val_masked_rmse"]) < float(last["val_base_rmse"])
    assert Path(run.stage_folder("pretrain") / "health.json").is_file()
