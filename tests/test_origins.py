"""The three periods: consecutive, never overlapping, nothing of a later period in an earlier one's targets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from phenocast import origins
from phenocast.config import load_config
from phenocast.errors import PhenocastError

from conftest import ROOT


def config_with(*overrides: str):
    return load_config(ROOT / "configs" / "default.yaml", ["sequence.years=1", *overrides])


@pytest.mark.parametrize("first, last, validation, test, phase", [
    (1, 120, 24, 24, "all"), (1, 120, 24, 24, "fixed"), (7, 119, 12, 24, "all"), (1, 60, 12, 9, "all"),
    (1, 230, 24, 24, "fixed"), (1, 60, 12, 0, "all"), (1, 60, 0, 12, "all")])
def test_periods_are_consecutive_and_never_share_a_target(first, last, validation, test, phase):
    config = config_with(f"data.val_months={validation}", f"data.test_months={test}", f"sequence.origins={phase}")
    periods = origins.zone_periods(first, last, config)
    horizon = config.predict.horizon
    assert periods.training_end == last - validation - test
    training = origins.training_origins(first, last, config)
    assert training and max(training) + horizon <= periods.training_end  # the purge gap is the horizon
    assert min(training) - config.history_months + 1 >= first
    targets = {}
    for period in periods.scored:
        images = origins.period_images(first, last, config, period.name)
        assert images, period.name
        months = {origin + lead for origin, lead in images}
        assert all(period.contains(month) for month in months)
        assert all(origin < period.end for origin, _ in images)  # an origin has something to score
        targets[period.name] = months
    if periods.validation and periods.test:
        assert periods.validation.end + 1 == periods.test.start and periods.test.end == last
        assert not targets["validation"] & targets["test"]
        assert max(targets["validation"]) < min(targets["test"])
    if periods.validation:
        assert periods.validation.start == periods.training_end + 1
    if phase == "fixed":
        forecast = origins.forecast_origin(last, config)
        assert all((forecast - origin) % 12 == 0 for origin in training)
    refit = origins.training_origins(first, last, config, refit=True)
    assert max(refit) + horizon == last or phase == "fixed"  # the submission model trains on the last month
    measured = origins.training_origins(first, last, config_with(
        f"data.val_months={validation}", f"data.test_months={test}", f"sequence.origins={phase}",
        "finetune.refit_through=validation"), refit=True)
    if periods.test:  # a measured refit stops where the test period starts
        assert max(measured) + horizon <= periods.test.start - 1 and set(measured) <= set(refit)
        assert max(measured) + horizon == periods.test.start - 1 or phase == "fixed"
    else:
        assert measured == refit


def test_validation_origins_do_not_score_their_leads_in_the_test_period():
    config = config_with("data.val_months=12", "data.test_months=12", "sequence.origins=all")
    images = origins.period_images(1, 60, config, "validation")
    assert (47, 1) in images and (47, 2) not in images and (36, 1) in images and (35, 1) not in images
    test = origins.period_images(1, 60, config, "test")
    assert (48, 1) in test and (59, 1) in test and (59, 2) not in test and max(o for o, _ in test) == 59


def test_fitting_images_stay_in_the_training_period():
    config = config_with("data.val_months=12", "data.test_months=12")
    end = origins.fit_end(1, 60, config)
    assert end == 36 and origins.fit_end(1, 60, config, final=True) == 60
    images = origins.fitting_images(1, end, 3)
    assert min(o for o, _ in images) == 13 and max(o + lead for o, lead in images) == 36


@pytest.mark.parametrize("months, validation, test", [
    (66, 24, 24), (65, 24, 23), (60, 24, 18), (42, 24, 0), (40, 22, 0), (19, 1, 0), (18, 0, 0)])
def test_a_short_zone_shortens_its_test_period_first_then_validation(months, validation, test):
    config = config_with("data.val_months=24", "data.test_months=24", "sequence.origins=all")
    assert origins.minimum_training_months(config) == 18  # 15 months of history + 3 target months
    first = 7
    last = first + months - 1
    periods = origins.zone_periods(first, last, config)
    assert (periods.validation.months if periods.validation else 0, periods.test.months if periods.test else 0) \
        == (validation, test)
    assert periods.training_end - first + 1 == 18  # every zone here keeps the training minimum
    training = origins.training_origins(first, last, config)
    assert training and max(training) + config.predict.horizon <= periods.training_end
    if test:
        assert periods.test.end == last and periods.test.start == periods.validation.end + 1
    notice = origins.shortened_periods("Z1", first, last, config)
    if months >= 66:
        assert notice is None
    else:
        assert notice.endswith(f"a training period needs: it gets {validation} validation and {test} test months")
    origins.check_zone_length("Z1", first, last, config)


def test_a_zone_too_short_for_one_training_period_is_refused_with_the_months_it_needs():
    config = config_with("data.val_months=24", "data.test_months=24", "sequence.origins=all")
    with pytest.raises(PhenocastError, match="has 17 months .*needs at least 18 months"):
        origins.check_zone_length("Z1", 1, 17, config)
    fixed = config_with("data.val_months=24", "data.test_months=24", "sequence.origins=fixed")
    assert origins.minimum_training_months(fixed) == 29  # 11 more: one origin in the forecast's phase
    assert origins.period_lengths(40, fixed) == (11, 0)
    origins.check_zone_length("Z1", 1, 29, fixed)
    with pytest.raises(PhenocastError, match="11 more so that one origin falls in the forecast's calendar phase"):
        origins.check_zone_length("Z1", 1, 28, fixed)


def test_scored_periods_use_every_month_even_when_training_keeps_one_phase():
    config = config_with("data.val_months=24", "data.test_months=24", "sequence.origins=fixed")
    training = origins.training_origins(1, 230, config)
    assert len({origin % 12 for origin in training}) == 1  # the forecast's calendar phase only
    assert origins.period_origins(1, 230, config, "validation") == list(range(182, 206))
    assert origins.period_origins(1, 230, config, "test") == list(range(206, 230))
    origins.check_zone_length("Z1", 1, 120, config_with("data.val_months=2", "data.test_months=12",
                                                        "sequence.origins=fixed"))


def test_validation_origins_alternate_between_select_and_check_in_blocks():
    config = config_with("data.val_months=24", "data.test_months=24")
    validation = origins.zone_periods(1, 120, config).validation
    parts = [origins.validation_part(origin, validation)
             for origin in origins.period_origins(1, 120, config, "validation")]
    assert parts == (["select"] * 3 + ["check"] * 3) * 4
    with pytest.raises(ValueError, match="not an origin of the validation period"):
        origins.validation_part(validation.end, validation)


@pytest.mark.parametrize("months", [17, 12, 5, 1])
def test_a_zone_too_short_to_train_gets_no_period_and_only_a_run_of_such_zones_is_refused(months):
    config = config_with("data.val_months=24", "data.test_months=24", "sequence.origins=all")
    first = 7
    last = first + months - 1
    assert not origins.trainable(first, last, config) and origins.trainable(first, first + 17, config)
    assert origins.period_lengths(months, config) == (0, 0)
    periods = origins.zone_periods(first, last, config)
    assert periods.validation is None and periods.test is None and periods.training_end == last
    assert origins.training_origins(first, last, config) == []
    assert origins.period_images(first, last, config, "validation") == []
    assert origins.shortened_periods("S", first, last, config) == (
        f"zone S has {months} months ({first}..{last}), fewer than the 18 a training period needs: it is not "
        f"trained on, validated or scored, and its forecast is the EMA alone")

    @dataclass
    class Span:
        name: str
        first: int
        last: int

    short, long = Span("S", first, last), Span("L", 1, 18)
    origins.check_trainable([short, long], config)  # one zone can train: the run goes on
    origins.check_trainable([long], config)
    named = "T" if months < 17 else "S"  # the longest zone is named (the first of equals)
    with pytest.raises(PhenocastError, match=f"^no zone of the run is long enough to train on: zone {named} has 17 "
                                             f"months .*needs at least 18 months.*as configs/small.yaml does"):
        origins.check_trainable([short, Span("T", 1, 17)], config)
    with pytest.raises(PhenocastError, match=f"zone S has {months} months .*needs at least 18 months"):
        origins.check_trainable([short], config)
