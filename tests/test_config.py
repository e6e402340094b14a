"""Config loading, overrides, strict errors and cross-field checks."""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import pytest
import yaml

from phenocast.config import Config, Section, config_hash, load_config, parse_override, save_config
from phenocast.errors import PhenocastError

from conftest import ROOT

DEFAULT = ROOT / "configs" / "default.yaml"
SAMPLE = ROOT / "configs" / "sample.yaml"


def test_default_config_is_the_competition_setup():
    config = load_config(DEFAULT)
    assert config.tiling.centre == 240 and config.tiling.margin == 24 and config.window == 288
    assert config.data.fill_value == -3000 and config.data.valid_range == [-2000, 10000]
    assert config.data.val_months == 24 and config.predict.horizon == 3
    assert config.data.test_months == 24 and config.data.zones is None and not config.finetune.refit
    assert config.sequence.years == 10 and len(config.sequence.offsets) == 12
    assert config.sequence.context  # 12 month channels + 12 context channels


def test_sample_config_inherits_from_its_base_and_overrides_it():
    config = load_config(SAMPLE)
    assert config.data.sample is True and config.output.name == "sample"
    assert config.data.fill_value == -3000  # from default.yaml
    assert config.window == config.tiling.centre + 2 * config.tiling.margin


def test_overrides_are_parsed_as_yaml_and_typed():
    config = load_config(DEFAULT, ["train.lr=3e-4", "data.zones=[Z1, Z3]", "train.epochs=2",
                                   "postprocess.model_weight=fit", "train.lr=1e-3"])
    assert config.train.lr == pytest.approx(1e-3)  # the last override wins
    assert config.data.zones == ["Z1", "Z3"] and config.train.epochs == 2
    assert config.postprocess.model_weight == "fit"
    assert load_config(DEFAULT, ["postprocess.model_weight=1"]).postprocess.model_weight == 1.0
    assert parse_override("output.name=v1.2") == {"output": {"name": "v1.2"}}


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "unknown config key train.lrr (did you mean train.lr?); valid keys of train: epochs, "),
    ("model.los=mse", "unknown config key model.los (did you mean model.loss?); valid keys of model: filters"),
    ("trian.lr=1", "unknown config key trian (did you mean train?); valid keys of the top level: seed, data"),
    ("bogus.key=1", "unknown config key bogus; valid keys of the top level: seed, data"),
    ("train.lr=fast", "config key train.lr: expected float, got 'fast'"),
    ("train.epochs=2.5", "config key train.epochs: expected int, got 2.5"),
    ("train.augment=3", "config key train.augment: expected bool, got 3"),
    ("data.zones=Z1", "config key data.zones: expected list of str or null, got 'Z1'"),
    ("train.schedule=linear", "config key train.schedule: expected 'cosine' or 'step' or 'constant'"),
    ("train.lr", "expected an override like train.lr=3e-4"),
    ("train.mixed_precision=fp16", "config key train.mixed_precision: expected bool or 'auto' or 'float16' or "
                                   "'bfloat16', got 'fp16'"),
    ("train.profile_batches=3", "config key train.profile_batches: expected list of int or null, got 3"),
    ("train=3", "config section train: expected a mapping of keys, got 3"),
    # ranges
    ("tiling.margin=-1", "config key tiling.margin: expected int >= 0, got -1; fix the YAML file or the --set value"),
    ("train.lr=0", "config key train.lr: expected float > 0, got 0"),
    ("predict.horizon=13", "config key predict.horizon: expected int >= 1 and <= 12, got 13"),
    ("evaluate.confidence=1", "config key evaluate.confidence: expected float > 0 and < 1, got 1"),
])
def test_bad_overrides_name_the_key_and_the_expected_type(override, message):
    with pytest.raises(PhenocastError, match="^" + re.escape(message)) as error:
        load_config(DEFAULT, [override])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("override, message", [
    ("data.fill_value=0", "data.fill_value 0 lies inside data.valid_range"),
    ("data.valid_range=[10, 5]", "data.valid_range must be [low, high]"),
    ("sequence.offsets=[0, 1]", "sequence.offsets must be <= 0"),
    ("data.zones=[Z1, Z1]", "data.zones lists a zone twice"),
    ("tiling.centre=50", "must be divisible by 4"),
    ("model.lstm_filters=[8, 8]", "one entry per scale"),
    ("postprocess.model_weight=1.5", "postprocess.model_weight must be in [0, 1]"),
    ("train.profile_batches=[5, 2]", "train.profile_batches must be null or [start, stop]"),
    ("train.profile_batches=[0, 2]", "train.profile_batches must be null or [start, stop]"),
    ("data.first_month=13", "data.first_month must be a calendar month 1..12 (or {zone: month} with such months), "
                            "got 13"),
    ("data.first_month={Z1: 2, Z2: 0}", "data.first_month must be a calendar month 1..12 (or {zone: month} with "
                                        "such months), got {'Z2': 0}"),
    ("data.first_month={}", "data.first_month is an empty mapping"),
])
def test_cross_field_checks_run_at_load(override, message):
    with pytest.raises(PhenocastError, match="^invalid config: .*" + re.escape(message)) as error:
        load_config(DEFAULT, [override])
    assert "\n" not in str(error.value)


def test_first_month_is_one_for_every_zone_or_one_per_zone():
    assert load_config(DEFAULT, ["data.first_month=2"]).data.first_months(["Z1", "Z2"]) == {"Z1": 2, "Z2": 2}
    data = load_config(DEFAULT, ["data.first_month={Z2: 11, Z1: 2, Z9: 5}"]).data
    assert data.first_months(["Z1", "Z2"]) == {"Z1": 2, "Z2": 11}  # a zone the run leaves out may stay
    with pytest.raises(PhenocastError) as error:
        data.first_months(["Z1", "Z3", "Z4"])
    assert str(error.value).startswith("data.first_month gives the calendar month of month 001 for Z1, Z2, Z9, not "
                                       "for zone(s) Z3, Z4 of this run; add them to the mapping")
    assert "\n" not in str(error.value)
    with pytest.raises(PhenocastError, match="^config key data.first_month: expected int or dict, got 'July'"):
        load_config(DEFAULT, ["data.first_month=July"])


@pytest.mark.parametrize("text, value", [
    ("auto", "auto"), ("float16", "float16"), ("bfloat16", "bfloat16"), ("true", True), ("false", False),
    ("on", True), ("off", False), ("yes", True), ("no", False),  # YAML 1.1 booleans: the same meaning
])
def test_mixed_precision_takes_a_bool_or_a_precision(text: str, value):
    assert load_config(DEFAULT, [f"train.mixed_precision={text}"]).train.mixed_precision == value
    assert load_config(DEFAULT).train.mixed_precision == "auto" and load_config(DEFAULT).train.profile_batches is None
    assert load_config(DEFAULT, ["train.profile_batches=[2, 3]"]).train.profile_batches == [2, 3]


def test_missing_and_broken_config_files(tmp_path: Path):
    with pytest.raises(PhenocastError, match="expected a YAML config file at"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(PhenocastError, match="is not valid YAML"):
        load_config(broken)
    section = tmp_path / "section.yaml"
    section.write_text("train: 3\n")
    with pytest.raises(PhenocastError, match="config section train: expected a mapping"):
        load_config(section)


def test_a_replaced_key_names_its_successor():
    with pytest.raises(PhenocastError, match=r"^config key model\.l2 was replaced by train\.weight_decay") as error:
        load_config(SAMPLE, ["model.l2=1e-4"])
    assert "\n" not in str(error.value)
    assert str(error.value).endswith("decayed every kernel to zero; rename it in the YAML file or the --set value")


def test_a_config_without_base_starts_from_default_yaml(tmp_path: Path, monkeypatch):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    partial = tmp_path / "partial.yaml"
    partial.write_text("train:\n  lr: 3.0e-4\nfinetune:\n")  # an empty section changes nothing
    monkeypatch.chdir(tmp_path)  # the defaults are found next to the package, not in the working directory
    default = load_config(DEFAULT)
    assert load_config(empty) == default and load_config() == default
    config = load_config(partial)
    assert config.train.lr == 3e-4 and config.train.batch_size == default.train.batch_size == 8
    assert config.finetune == default.finetune and config.finetune.refit is False


def test_default_yaml_sets_every_key():
    def fields(model, prefix=""):
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, Section):
                yield from fields(field.annotation, f"{prefix}{name}.")
            else:
                yield prefix + name

    def keys(values, prefix=""):
        for name, value in values.items():
            yield from keys(value, f"{prefix}{name}.") if isinstance(value, dict) else [prefix + name]

    assert sorted(keys(yaml.safe_load(DEFAULT.read_text()))) == sorted(fields(Config))
    assert list(load_config(DEFAULT).to_dict()) == ["seed", "data", "sample", "tiling", "records", "sequence",
                                                     "model", "train", "finetune", "predict", "evaluate",
                                                     "postprocess", "report", "output"]


def test_assignments_are_checked_and_a_refused_one_changes_nothing():
    config = load_config(DEFAULT)
    config.output.name, config.train.device_data = "run-2", False  # YAML 1.1's off
    assert config.output.name == "run-2" and config.train.device_data == "off"
    with pytest.raises(PhenocastError, match=r"^config key train\.lr: expected float, got 'fast' \(str\)"):
        config.train.lr = "fast"
    with pytest.raises(PhenocastError, match=r"^invalid config: output\.name must be a plain folder name"):
        config.output.name = "a/b"
    config.train.jit_compile = True
    with pytest.raises(PhenocastError, match="XLA cannot compile"):
        config.train.device_data = "on"
    assert config.train.device_data == "off" and config.output.name == "run-2" and config.train.lr == 1.1e-3


def test_configs_pickle_copy_and_compare_by_value():
    config = load_config(SAMPLE, ["train.lr=2e-4"])
    assert pickle.loads(pickle.dumps(config)) == config and copy.deepcopy(config) == config
    assert config != load_config(SAMPLE) and load_config(SAMPLE, ["train.lr=2.0e-4"]) == config
    assert load_config(DEFAULT, ["data.scale=10000"]).data.scale == 10000.0  # ints are read as floats


def test_resolved_config_round_trips(tmp_path: Path):
    config = load_config(SAMPLE, ["train.lr=2e-4", "train.weight_decay=1e-5"])
    path = save_config(config, tmp_path / "run" / "config.resolved.yaml")
    assert load_config(path) == config
    assert not list(path.parent.glob(".tmp-*"))
    assert yaml.safe_load(path.read_text())["train"]["lr"] == pytest.approx(2e-4)


def test_config_hash_tracks_only_the_named_fields():
    keys = ["tiling", "data.fill_value"]
    changed = load_config(DEFAULT, ["tiling.margin=48"])
    same = load_config(DEFAULT, ["train.lr=1e-3"])
    reference = load_config(DEFAULT)
    assert config_hash(reference, keys) == config_hash(same, keys)
    assert config_hash(reference, keys) != config_hash(changed, keys)


def test_no_project_config_points_outside_the_project():
    """Paths in configs (data, records, init_from; ``base`` relative to its file) stay inside the project."""
    def strings(value, key=""):
        if isinstance(value, dict):
            for name, item in value.items():
                yield from strings(item, name)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item, key)
        elif isinstance(value, str):
            yield key, value

    paths = sorted((ROOT / "configs").rglob("*.yaml"))
    assert len(paths) >= 4
    for path in paths:
        for key, value in strings(yaml.safe_load(path.read_text())):
            if "/" in value or value.startswith(".."):
                target = ((path.parent if key == "base" else ROOT) / value).resolve()
                assert target.is_relative_to(ROOT.resolve()), (path, key, value)
