"""Tests of the benchmarks' shared cost model (model/flops.py) and of bench/scale.py end to end.

No timing is asserted: the machine is shared. The end-to-end test runs bench/scale.py on a tiny world
(one 64² zone, 72 months, 64-pixel windows, 2 years) and checks its JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import model as network  # noqa: E402
from model.flops import activation_bytes, conv_flops, training_flops  # noqa: E402
from phenocast.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the bench scripts import as modules; appended, so the top-level preprocess.py still comes before bench/preprocess.py
sys.path.append(str(ROOT / "bench"))
TINY = [  # 32-pixel windows, 3 years, a small network (as tests/test_model.py)
    "tiling.centre=16", "tiling.margin=8", "sequence.years=3", "model.filters=4", "model.growth_rate=4",
    "model.layers_per_block=[1, 1, 1]", "model.lstm_filters=[4, 6, 8]", "model.aspp_filters=8",
    "model.dilation_rates=[2, 3]", "model.decoder_filters=4",
]


def one_conv_model(name: str) -> keras.Model:
    """(8, 8, 2) → one 3×3 convolution to 4 channels ("same" padding): 8·8 output pixels."""
    inputs = keras.Input((8, 8, 2))
    return keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same", name=name)(inputs))


def plain_config(years: int = 1) -> SimpleNamespace:
    return SimpleNamespace(sequence=SimpleNamespace(years=years), model=SimpleNamespace(per_year_outputs=False))


@pytest.mark.parametrize("name, passes", [("conv", 3), ("stem_conv", 2)])
def test_training_flops_of_one_convolution_match_a_hand_count(name, passes):
    batch = 2
    forward = 2 * 3 * 3 * 2 * 4 * 8 * 8 * batch  # 2 FLOPs per multiply-add, per output pixel and channel
    assert conv_flops(3, 2, 4, 8 * 8 * batch) == forward
    # forward + input gradient + weight gradient; the stem needs no input gradient
    assert training_flops(one_conv_model(name), plain_config(), batch) == passes * forward


def test_activation_bytes_of_one_convolution_match_a_hand_count():
    batch = 3
    kept = (8 * 8 * 2 + 8 * 8 * 4) * batch * 4  # the input and the convolution's output, float32
    assert activation_bytes(one_conv_model("conv"), plain_config(), batch) == kept


@pytest.mark.parametrize("convlstm", ["fused", "keras"])
def test_activation_bytes_scale_linearly_with_batch(convlstm):
    config = load_config("configs/sample.yaml", [*TINY, f"model.convlstm={convlstm}"])
    network.set_precision(config)
    built = network.build_model(config)
    one = activation_bytes(built, config, 1)
    window, years = config.window, config.sequence.years
    assert one > 4 * years * window * window * config.input_channels  # more than the input alone
    assert activation_bytes(built, config, 4) == 4 * one
    assert training_flops(built, config, 4) == 4 * training_flops(built, config, 1)


def test_scale_bench_runs_end_to_end_on_a_tiny_world(tmp_path):
    path = tmp_path / "scale.json"
    command = [sys.executable, str(ROOT / "bench" / "scale.py"), "--zones", "1", "--size", "64", "--months", "72",
               "--batch-sizes", "1,1000000", "--input-samples", "2", "--workdir", str(tmp_path / "work"),
               "--json", str(path), "--set", "tiling.centre=48", "--set", "tiling.margin=8",
               "--set", "sequence.years=2", "--set", "data.val_months=12", "--set", "data.test_months=12",
               *(f"--set={override}" for override in TINY[3:])]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped (needs ~" in result.stdout and "projected" in result.stdout
    values = json.loads(path.read_text())
    for key in ("world", "device", "preprocess", "input", "train_steps", "flops_per_sample",
                "activation_bytes_per_sample", "projection"):
        assert key in values, key
    assert values["preprocess"]["seconds"] > 0 and values["preprocess"]["kind"] == "measured"
    assert values["input"]["tf.data"]["core_seconds_per_sample"] > 0
    measured, skipped = values["train_steps"]
    assert measured["status"] == "measured" and measured["seconds_per_step"] > 0 and measured["peak_bytes"] > 0
    assert skipped["status"] == "skipped" and skipped["batch"] == 1000000
    assert values["flops_per_sample"] > 0 and values["activation_bytes_per_sample"] > 0
    projection = values["projection"]
    assert projection["kind"] == "projected" and projection["zones"] == 24
    assert set(projection["stages"]) == {"pretrain", "finetune", "refit", "predict"}
    assert projection["total_this_device"] > projection["preprocess"] > 0
    assert projection["input_cores_needed"]["tf.data"] > 0
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary behind


def test_scale_bench_refuses_a_calendar_month_per_zone_in_one_line(tmp_path):
    """Its zones are generated on one calendar: a {zone: month} mapping is one error line, exit 2, nothing
    written."""
    command = [sys.executable, str(ROOT / "bench" / "scale.py"), "--workdir", str(tmp_path / "work"),
               "--set", "data.first_month={Z1: 2}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "data.first_month is a mapping" in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "work").exists()


def test_train_step_bench_times_the_network_under_jax_without_tensorflow(tmp_path):
    pytest.importorskip("jax", reason="jax is not installed: pip install 'jax[cpu]' (requirements-dev.txt)")
    path = tmp_path / "train_step.json"
    command = [sys.executable, str(ROOT / "bench" / "train_step.py"), "--backend", "jax", "--shapes", "sample",
               "--batch-sizes", "1", "--precisions", "float32", "--jit", "on", "--steps", "1",
               "--peak-tflops", "0.5", "--json", str(path), *(f"--set={override}" for override in TINY)]
    environment = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    table = json.loads(path.read_text())
    assert table["backend"] == "jax" and table["tensorflow_imported"] is False
    (shape,) = table["shapes"]
    assert shape["name"] == "sample" and shape["flops_per_sample"] > 0
    (row,) = table["rows"]  # one batch size: each new one compiles the step again
    assert (row["status"], row["batch"], row["precision"], row["jit"]) == ("measured", 1, "float32", True)
    assert row["seconds_per_step"] > 0 and row["flops"] == shape["flops_per_sample"]
    assert row["tflops_per_second"] == pytest.approx(row["flops"] / row["seconds_per_step"] / 1e12)
    assert row["peak_share"] == pytest.approx(row["tflops_per_second"] / 0.5)
    assert row["peak_bytes"] is None  # JAX keeps no memory statistics on a CPU


def test_variants_of_a_real_zone_keep_its_months_and_georeference(tiny_data, tmp_path):
    """bench/variants.py's zones: crops that stay georeferenced, the zone's gaps kept, the short zone
    shorter, the shifted one renumbered by 6 months, the cloudy one with more fill, the flat one flatter, the
    snowy one with fill in its winter months only, the noisy one lowered at a share of pixels, the tropical
    one with a weaker seasonal curve."""
    from variants import CLOUD_SHARE, NOISY_SHARE, SHIFT, SHORT_CUT, SNOW_MONTHS, SNOW_SHARE, VARIANTS, write_variants

    from phenocast.zones import discover_zones, read_zone

    config = load_config(ROOT / "configs" / "small.yaml")
    (zone,) = discover_zones(tiny_data, ["Z2"], report=None)  # 16 × 16, 40 months, gaps at 5 and 17
    out = tmp_path / "variants"
    write_variants(zone, out, config.data.fill_value, config.data.valid_range, config.data.scale, seed=3)
    variants = {found.name: found for found in discover_zones(out, report=None)}
    assert sorted(variants) == sorted(VARIANTS)
    assert variants["small"].shape == (8, 8) and variants["whole"].shape == (16, 16)
    assert variants["cloudy"].shape == (16, 16) and variants["short"].shape == (12, 16)  # clipped to the zone
    assert variants["whole"].gaps == [5, 17] and variants["whole"].last == 40
    assert variants["short"].last == 40 - SHORT_CUT
    assert variants["shifted"].first == 1 and variants["shifted"].gaps == [17 - SHIFT]

    original = read_zone(zone, config.data.fill_value, config.data.valid_range).astype(float)
    whole = read_zone(variants["whole"], config.data.fill_value, config.data.valid_range).astype(float)
    assert np.array_equal(whole, original)

    def corner(found):  # (column, row) of a crop's corner in the zone
        return tuple(round(value) for value in ~zone.profile.affine * found.profile.transform[2::3])

    small = variants["small"]
    a, _, c, _, e, f = small.profile.transform
    column, row = corner(small)
    assert zone.profile.affine * (column, row) == pytest.approx((c, f)) and (a, e) == zone.profile.transform[::4]
    cropped = read_zone(small, config.data.fill_value, config.data.valid_range)
    assert np.array_equal(cropped, original[:, row:row + 8, column:column + 8])

    fill = config.data.fill_value
    cloudy = read_zone(variants["cloudy"], fill, config.data.valid_range)
    present = [month - zone.first for month in zone.files]
    assert np.mean(cloudy[present] == fill) > np.mean(original[present] == fill) + CLOUD_SHARE / 2
    flat = read_zone(variants["flat"], fill, config.data.valid_range).astype(float)
    flat_valid = flat[present][flat[present] != fill]
    assert flat_valid.std() < 0.5 * original[present][original[present] != fill].std()

    def phase_means(stack, function):  # per calendar month (month number mod 12) over the present months
        return np.array([function(stack[[p for p in present if (p + zone.first) % 12 == phase]])
                         for phase in range(12)])

    snowy = read_zone(variants["snowy"], fill, config.data.valid_range)  # 16 × 16: the whole zone
    added_fill = phase_means(snowy == fill, np.mean) - phase_means(original == fill, np.mean)
    assert np.sum(added_fill > SNOW_SHARE / 2) == SNOW_MONTHS and np.sum(added_fill > 0) == SNOW_MONTHS
    snow_phases = added_fill > SNOW_SHARE / 2
    values = np.where(original == fill, np.nan, original)
    seasonal = phase_means(values, np.nanmean)
    assert seasonal[snow_phases].max() <= np.sort(seasonal)[SNOW_MONTHS - 1]  # the lowest months are hidden
    noisy = read_zone(variants["noisy"], fill, config.data.valid_range).astype(float)
    assert np.array_equal(noisy == fill, original == fill) and np.all(noisy <= original)
    assert NOISY_SHARE / 2 < np.mean(noisy[original != fill] < original[original != fill] - 1) < 2 * NOISY_SHARE
    tropical = variants["tropical"]
    column, row = corner(tropical)
    rows, columns = tropical.shape
    crop = np.where(original == fill, np.nan, original)[:, row:row + rows, column:column + columns]
    tropical_values = read_zone(tropical, fill, config.data.valid_range).astype(float)
    tropical_values[tropical_values == fill] = np.nan
    amplitude = np.ptp(phase_means(tropical_values, np.nanmean)), np.ptp(phase_means(crop, np.nanmean))
    assert amplitude[0] < 0.5 * amplitude[1]


def test_variants_of_a_short_record_keep_their_last_months_and_the_table_lists_every_zone(tiny_data, tmp_path):
    """``--last-months``: each variant keeps its last N months (gaps included, the shifted one's renumbered
    months too); the bench's table has a row for a zone without a test period, NaN where it has none."""
    from variants import SHIFT, SHORT_CUT, VARIANTS, table, write_variants

    from phenocast.zones import discover_zones

    config = load_config(ROOT / "configs" / "small.yaml")
    (zone,) = discover_zones(tiny_data, ["Z2"], report=None)  # 40 months, gaps at 5 and 17
    out = tmp_path / "short"
    write_variants(zone, out, config.data.fill_value, config.data.valid_range, config.data.scale, seed=3,
                   last_months=24)
    variants = {found.name: found for found in discover_zones(out, report=None)}
    assert sorted(variants) == sorted(VARIANTS)
    whole = variants["whole"]  # months 17..40, and 17 is a gap: the first file is month 18
    assert (whole.first, whole.last, whole.gaps) == (18, 40, [])
    assert variants["short"].last == 40 - SHORT_CUT and variants["short"].first == 40 - SHORT_CUT - 23
    assert (variants["shifted"].first, variants["shifted"].last) == (18 - SHIFT, 40 - SHIFT)
    scores = {"periods": {"A": {}, "B": {}},
              "test": {"zones": {"A": {"rmse": {"model": 0.9, "blend": 0.95, "ema": 1.0, "damped": 0.95}}}},
              "validation": {"zones": {"A": {"rmse": {"model": 0.8, "ema": 1.0, "damped": 0.9}},
                                       "B": {"rmse": {"model": 0.5, "ema": 1.0, "damped": 0.8}}}}}
    rows = {row["zone"]: row for row in table(scores, {"A": {"weight": 1.0}})}
    assert rows["A"]["test_blend_over_damped"] == pytest.approx(1.0) and rows["A"]["weight"] == 1.0
    assert rows["B"]["validation_model_over_damped"] == pytest.approx(0.625)
    assert np.isnan(rows["B"]["test_model_over_ema"]) and np.isnan(rows["B"]["weight"])


def test_advection_bench_times_both_gathers_and_finds_them_equal(tmp_path: Path):
    """bench/advection.py on a tiny batch: both gathers timed, their outputs equal (no timing asserted)."""
    out = tmp_path / "advection.json"
    result = subprocess.run([sys.executable, "bench/advection.py", "--size", "16", "--batch", "2", "--repeats", "1",
                             "--json", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "ratio (take_along_axis ÷ batched gather)" in result.stdout
    written = json.loads(out.read_text())
    assert written["max_difference"] == 0.0 and set(written["results"]) == {"batched gather", "take_along_axis"}
    assert all(entry["trace_s"] > 0 and entry["run_s"] > 0 for entry in written["results"].values())


def test_damped_fit_bench_tiles_a_zone_and_fits_both_references(tiny_data, tmp_path: Path, capsys):
    """bench/damped_fit.py on a tiny zone tiled to 18² and 60 months: both references fitted, the fitted one
    with a β of the grid; the tiling repeats the zone in time and space; too few months is one line."""
    import damped_fit

    stack = np.arange(3 * 2 * 4, dtype=np.int16).reshape(3, 2, 4)
    tiled = damped_fit.tiled(stack, 5, 7)
    assert tiled.shape == (7, 5, 5)
    np.testing.assert_array_equal(tiled[3:6, 2:4, 4:5], stack[:, :, :1])  # the next copy in time and space
    np.testing.assert_array_equal(tiled[6, 4], stack[0, 0, [0, 1, 2, 3, 0]])

    out = tmp_path / "fit.json"
    periods = ["--set", "data.val_months=12", "--set", "data.test_months=12"]
    code = damped_fit.main(["--data", str(tiny_data), "--zone", "Z2", "--size", "18", "--months", "60",
                            "--config", str(ROOT / "configs" / "default.yaml"), *periods, "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "zone Z2 tiled to 60 months of 18² pixels" in printed and "ratio (fitted ÷ ema)" in printed
    written = json.loads(out.read_text())
    assert set(written["results"]) == {"ema", "fitted"} and written["results"]["ema"]["beta"] is None
    grid = load_config(ROOT / "configs" / "default.yaml").evaluate.alpha_grid
    assert written["results"]["fitted"]["beta"] in grid
    assert all(entry["seconds"] > 0 and entry["peak_mb"] > 0 for entry in written["results"].values())

    assert damped_fit.main(["--data", str(tiny_data), "--months", "40", "--config",
                            str(ROOT / "configs" / "default.yaml"), *periods]) == 2
    printed = capsys.readouterr()
    assert not printed.out and printed.err.strip() == (
        "error: expected --months of at least 48 (validation, test and two training years) and a positive "
        "--size, got 40 and 1200")


def learnability_row(seed: int, images: int, **rmse: float) -> dict:
    """A row of bench/learnability.py's ``bench_world`` for one seed (only what pooling reads)."""
    row = {"world": "regional", "seed": seed, "images": images, "base_method": "ema", "seconds": 1.0,
           "ema": 1.0, "base": 1.0, "oracle": 0.5, "damped": 0.9, "model": 0.8, "ridge": 0.9, **rmse}
    row["gap"] = (row["base"] - row["model"]) / (row["base"] - row["oracle"])
    return row


def test_learnability_pools_seeds_by_their_mean_squares_and_bootstraps_over_seeds():
    """bench/learnability.py --seeds: each RMSE pooled as the root of the image-weighted mean square, the
    gap share of the pooled RMSEs (not the mean of the seeds' shares), and an interval over seeds that
    spans the seeds' own values."""
    from learnability import pool_seeds

    rows = [learnability_row(0, 100, model=1.1), learnability_row(1, 100, model=0.6),
            learnability_row(2, 200, model=0.7, oracle=0.6)]
    pooled = pool_seeds(rows, replicates=500)
    model = np.sqrt((100 * 1.1**2 + 100 * 0.6**2 + 200 * 0.7**2) / 400)
    oracle = np.sqrt((200 * 0.5**2 + 200 * 0.6**2) / 400)
    assert pooled["model"] == pytest.approx(model)
    assert pooled["oracle"] == pytest.approx(oracle)
    assert pooled["ema"] == pytest.approx(1.0)
    assert pooled["gap"] == pytest.approx((1.0 - model) / (1.0 - oracle))
    assert pooled["seeds"] == [0, 1, 2] and pooled["images"] == 400
    assert pooled["seed_gaps"] == pytest.approx([-0.2, 0.8, 0.75])
    low, high = pooled["model_over_ema_interval"]
    assert 0.6 <= low < model < high <= 1.1
    low, high = pooled["gap_interval"]
    assert low < pooled["gap"] < high
    assert pooled["met"] == (pooled["gap"] >= 0.7 and pooled["model"] < pooled["ridge"])
    alone = pool_seeds(rows[:1], replicates=50)  # one seed: its own numbers, an interval of one point
    assert alone["model"] == pytest.approx(1.1) and alone["gap_interval"] == pytest.approx([-0.2, -0.2])
    with pytest.raises(ValueError, match="one world"):
        pool_seeds([rows[0], {**rows[1], "world": "moving"}])
    with pytest.raises(ValueError, match="at least one seed"):
        pool_seeds([])


def test_learnability_knobs_reach_the_generated_world_and_a_wrong_one_is_refused_first(tmp_path, monkeypatch,
                                                                                      capsys):
    """bench/learnability.py --knob: the world is generated with the knob, in a folder named after it; a
    knob the world lacks is one error line and exit 2 before anything is written."""
    import learnability

    out = tmp_path / "bench"
    assert learnability.main(["--worlds", "moving", "--knob", "bogus=1", "--out", str(out)]) == 2
    assert "unknown knob(s) bogus" in capsys.readouterr().err and not out.exists()

    class Generated(Exception):
        pass

    def generate(data_dir, world, **arguments):
        raise Generated(data_dir, world, arguments)

    monkeypatch.setattr(learnability, "generate_planted", generate)
    args = learnability.build_parser().parse_args(["--knob", "speed=[5, 6]", "--knob", "anomaly_scale=4",
                                                   "--out", str(out)])
    with pytest.raises(Generated) as generated:
        learnability.bench_world(args, "moving", 3)
    data_dir, world, arguments = generated.value.args
    assert world == "moving" and arguments["seed"] == 3
    assert arguments["speed"] == (5.0, 6.0) and arguments["anomaly_scale"] == 4.0
    assert data_dir == out / "moving-seed3-z2-m120-anomaly_scale4-speed5_6" / "data"


def test_sample_worlds_pool_the_images_of_every_world_per_validation_half():
    """bench/sample_worlds.py's columns: each image of ``scores.json`` goes to the select or check half by
    its origin (blocks of 3 origins, select first) or to the test period, and the worlds' images are pooled
    as one run pools its zones (the root of the mean image MSE): hand-computed numbers."""
    from sample_worlds import ratios, world_row

    def scores(entries, weight):
        images = [{"zone": "Z1", "origin": origin, "lead": 1, "method": method, "mse": mse, "pixels": 4,
                   "period": period} for origin, period, methods in entries for method, mse in methods.items()]
        return {"image_scores": images, "periods": {"Z1": {"validation": [10, 15], "test": [16, 30]}},
                "headline": {"methods": {"blend": {"over_ema_interval": [0.5, 0.9]}}},
                "model_weight": {"Z1": {"weight": weight}}}

    first = scores([(9, "validation", {"model": 1.0, "ema": 4.0, "damped": 2.0}),  # origins 9–11: select
                    (12, "validation", {"model": 1.0, "ema": 1.0, "damped": 1.0}),  # origins 12–14: check
                    (20, "test", {"model": 2.0, "ema": 8.0, "damped": 8.0, "blend": 2.0})], 0.75)
    second = scores([(10, "validation", {"model": 3.0, "ema": 4.0, "damped": 6.0}),
                     (13, "validation", {"model": 4.0, "ema": 1.0, "damped": 1.0}),
                     (21, "test", {"model": 4.0, "ema": 2.0, "damped": 2.0, "blend": 4.0})], 0.0)
    row = world_row(0, first)
    assert row["select_model_over_ema"] == pytest.approx(0.5)
    assert row["select_model_over_damped"] == pytest.approx(0.5 ** 0.5)
    assert row["check_model_over_ema"] == pytest.approx(1.0)
    assert row["test_model_over_damped"] == pytest.approx(0.5) and row["test_blend_over_ema"] == pytest.approx(0.5)
    assert row["test_images"] == 1 and row["weights"] == {"Z1": 0.75} and row["seed"] == 0
    pooled = ratios([first, second])
    assert pooled["select_model_over_ema"] == pytest.approx((2 / 4) ** 0.5)  # means 2 and 4, not a mean of ratios
    assert pooled["select_model_over_damped"] == pytest.approx((2 / 4) ** 0.5)
    assert pooled["check_model_over_ema"] == pytest.approx(2.5 ** 0.5)
    assert pooled["check_model_over_damped"] == pytest.approx(2.5 ** 0.5)
    assert pooled["test_model_over_damped"] == pytest.approx((3 / 5) ** 0.5)
    assert pooled["test_blend_over_ema"] == pytest.approx((3 / 5) ** 0.5)
    assert pooled["test_images"] == 2
