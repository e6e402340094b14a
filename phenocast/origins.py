"""Which forecast origins train, validate, test and forecast — the one place that decides.

Month indices are a zone's own 1-based numbering. An origin o is the last month a forecast may use; it
forecasts months o+1 .. o+horizon (the *images* (o, lead)). A sample of ``sequence.years`` steps reads
months back to o - (``Config.history_months`` - 1), which must not precede the zone's first month.

Every zone's months ``first .. last`` fall into three consecutive periods::

    training                      validation                        test
    first .. T                    T+1 .. T+val_months               last-test_months+1 .. last
                                  (T = last - test_months - val_months)

A zone too short for both scored periods after a training period's minimum (``minimum_training_months``)
gets shorter ones, the test period first (``period_lengths``); the notice says so (``shortened_periods``).
A zone shorter than that minimum has no training origin (``trainable``): it gets no scored period, is not
trained on, and its forecast is the EMA alone; only a run in which no zone can train is refused
(``check_trainable``).

- *Training* origins are those whose every target lies in the training period: o + horizon <= T (the
  purge gap is the horizon). A sample's climatology uses months <= its origin only, so neither a target
  nor a climatology of training reaches a later period.
- An image belongs to the period of its *target* month. A period's origins are o = start-1 .. end-1
  (with a full history), and it scores their leads that stay inside the period: a validation origin near
  the end of validation does not score its leads that fall into the test period. The *validation*
  period chooses (best checkpoint, early stopping, fitted blend weights, sweep winners); the *test*
  period, the last ``data.test_months`` months, only scores. ``data.test_months: 0`` drops the test
  period (then the validation numbers are all there is, and they chose the model); ``data.val_months:
  0`` drops validation (checkpoints are then chosen on the training loss).
- ``sequence.origins: fixed`` keeps only training origins in the calendar phase of the forecast origin
  (the competition's one window: o ≡ forecast origin mod 12); ``all`` trains on every month. The scored
  periods use every month either way: two origins a zone (the fixed phase of 24 months) cannot show
  anything, twenty-four can (a fixed-phase network is then checked on every phase, the harder test).
- The validation origins are cut into blocks of ``VALIDATION_BLOCK`` months, alternately *select* and
  *check* (``validation_part``): the select blocks choose checkpoints, epochs, fine-tuning and sweep
  members, the check blocks fit and check the blend, so what chose the network never checks it.
- A refit (``finetune.refit``) trains on every origin whose targets lie within the zone: o + horizon <=
  last. It writes the submission and is never scored; with ``finetune.refit_through: validation`` it
  stops where the test period starts, and the test period scores it beside the selected model.
- The final forecast's origin is the zone's last month, or, with ``predict.months``, the last month
  before the first requested month (leads = month - origin).
- Baselines with fitted parameters (the damped anomaly's φ, the per-pixel EMA's α) fit them on the
  training period only (``fit_end``), or on every month for the final forecast.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from phenocast.config import Config
from phenocast.errors import PhenocastError

MONTHS_PER_YEAR = 12
PERIODS = ("validation", "test")  # the scored periods, in time order
VALIDATION_BLOCK = 3  # months: the validation origins alternate between the select and check parts in blocks
VALIDATION_PARTS = ("select", "check")

Image = tuple[int, int]  # (origin month, lead)


@dataclass(frozen=True)
class Period:
    """A scored period: the images whose target month lies in ``start .. end`` (inclusive)."""

    name: str
    start: int
    end: int

    @property
    def months(self) -> int:
        return self.end - self.start + 1

    def contains(self, month: int) -> bool:
        return self.start <= month <= self.end


@dataclass(frozen=True)
class ZonePeriods:
    """The three periods of one zone."""

    first: int
    last: int
    training_end: int  # T: the last month a training target may be
    validation: Period | None
    test: Period | None

    @property
    def scored(self) -> list[Period]:
        """The validation and test periods that exist, in time order."""
        return [period for period in (self.validation, self.test) if period is not None]

    def get(self, name: str) -> Period | None:
        if name not in PERIODS:
            raise ValueError(f"expected a period name among {PERIODS}, got {name!r}")
        return self.validation if name == "validation" else self.test


def minimum_training_months(config: Config) -> int:
    """The months a training period needs for one training sample and a fitted baseline: a full history
    (``Config.history_months``, at least a year and a month, so the damped φ has an image to fit) and the
    horizon's targets; with ``sequence.origins: fixed`` 11 more, so one origin falls in the forecast's
    calendar phase."""
    history = max(config.history_months, MONTHS_PER_YEAR + 1)
    return history + config.predict.horizon + (MONTHS_PER_YEAR - 1 if config.sequence.origins == "fixed" else 0)


def period_lengths(months: int, config: Config) -> tuple[int, int]:
    """(validation, test) months of a zone of ``months`` months: ``data.val_months`` and
    ``data.test_months``, or, when the zone is too short for both after ``minimum_training_months``, the
    test period shortened first (it only scores, while validation chooses the zone's blend weight), then
    validation. A zone shorter than the training minimum gets neither (``trainable``)."""
    validation, test = config.data.val_months, config.data.test_months
    spare = months - minimum_training_months(config)
    if spare < 0:
        return 0, 0
    if spare >= validation + test:
        return validation, test
    test = max(0, spare - validation)
    return spare - test, test


def shortened_periods(name: str, first: int, last: int, config: Config) -> str | None:
    """A one-line notice when the zone's periods are shorter than configured (``period_lengths``), else
    None."""
    months = last - first + 1
    validation, test = period_lengths(months, config)
    data = config.data
    if not trainable(first, last, config):
        return (f"zone {name} has {months} months ({first}..{last}), fewer than the "
                f"{minimum_training_months(config)} a training period needs: it is not trained on, validated "
                f"or scored, and its forecast is the EMA alone")
    if (validation, test) == (data.val_months, data.test_months):
        return None
    return (f"zone {name} has {months} months ({first}..{last}), too few for {data.val_months} validation "
            f"(data.val_months) and {data.test_months} test months (data.test_months) after the "
            f"{minimum_training_months(config)} a training period needs: it gets {validation} validation and "
            f"{test} test months")


def shortened_notes(zones: Iterable, config: Config) -> list[str]:
    """The lines ``preprocess.py``, ``run.py`` and ``phenocast.evaluate`` print: ``note: <shortened_periods>`` for
    each zone (anything with ``name``, ``first`` and ``last``) whose periods are shortened, in order."""
    return [f"note: {notice}" for zone in zones
            if (notice := shortened_periods(zone.name, zone.first, zone.last, config))]


def zone_periods(first: int, last: int, config: Config) -> ZonePeriods:
    """Split a zone's months ``first .. last`` into training, validation and test (module docstring),
    with the lengths of ``period_lengths``."""
    validation, test = period_lengths(last - first + 1, config)
    training_end = last - test - validation
    return ZonePeriods(
        first=first, last=last, training_end=training_end,
        validation=Period("validation", training_end + 1, last - test) if validation else None,
        test=Period("test", last - test + 1, last) if test else None)


def forecast_origin(last: int, config: Config) -> int:
    """The origin of the final forecast for a zone whose last month is ``last``."""
    months = config.predict.months
    if not months:
        return last
    origin = min(last, min(months) - 1)
    if max(months) - origin > config.predict.horizon:
        raise PhenocastError(
            f"predict.months {months} reach {max(months) - origin} months past the last usable month "
            f"{origin}, expected at most predict.horizon = {config.predict.horizon}; raise "
            f"predict.horizon or ask for earlier months")
    return origin


def forecast_leads(last: int, config: Config) -> list[int]:
    """Leads (1-based) of the months the final forecast writes."""
    origin = forecast_origin(last, config)
    if config.predict.months:
        return sorted(month - origin for month in config.predict.months)
    return list(range(1, config.predict.horizon + 1))


def _in_phase(origin: int, last: int, config: Config) -> bool:
    if config.sequence.origins == "all":
        return True
    return (forecast_origin(last, config) - origin) % MONTHS_PER_YEAR == 0


def earliest_origin(first: int, config: Config) -> int:
    """The first origin with a full history."""
    return first + config.history_months - 1


def measured_refit(config: Config) -> bool:
    """Whether the refit stops where the test period starts (``finetune.refit_through: validation``), so
    the test period can score it beside the selected model."""
    finetune = config.finetune
    return finetune.refit and finetune.refit_through == "validation" and config.data.test_months > 0


def refit_end(first: int, last: int, config: Config) -> int:
    """The last month a refit's target may be: ``last``, or the month before the test period for a
    measured refit (``measured_refit``)."""
    test = zone_periods(first, last, config).test
    return test.start - 1 if config.finetune.refit_through == "validation" and test is not None else last


def training_origins(first: int, last: int, config: Config, refit: bool = False) -> list[int]:
    """Origins whose sample and targets lie in the training period (or, for a refit, in the zone).

    Args:
      first, last: the zone's first and last month index.
      refit: train on every month: targets may reach ``last`` (with ``finetune.refit_through:
        validation``, the month before the test period).
    """
    end = refit_end(first, last, config) if refit else zone_periods(first, last, config).training_end
    return [origin for origin in range(earliest_origin(first, config), end - config.predict.horizon + 1)
            if _in_phase(origin, last, config)]


def period_origins(first: int, last: int, config: Config, name: str) -> list[int]:
    """Origins of the ``validation`` or ``test`` period: o = start-1 .. end-1 with a full history, every
    month whatever ``sequence.origins`` ([] if the zone has no such period)."""
    period = zone_periods(first, last, config).get(name)
    if period is None:
        return []
    return list(range(max(period.start - 1, earliest_origin(first, config)), period.end))


def period_images(first: int, last: int, config: Config, name: str) -> list[Image]:
    """The (origin, lead) images a period scores: its origins' leads whose target lies in the period."""
    period = zone_periods(first, last, config).get(name)
    if period is None:
        return []
    return [(origin, lead) for origin in period_origins(first, last, config, name)
            for lead in range(1, config.predict.horizon + 1) if period.contains(origin + lead)]


def validation_origins(first: int, last: int, config: Config) -> list[int]:
    """``period_origins(..., "validation")``."""
    return period_origins(first, last, config, "validation")


def validation_part(origin: int, validation: Period) -> str:
    """``select`` or ``check``: the part of the validation period an origin belongs to.

    The validation origins o = start − 1 … end − 1 are cut into consecutive blocks of ``VALIDATION_BLOCK``
    months, alternately *select* (they choose checkpoints, epochs, fine-tuning, sweep members) and *check*
    (they fit and check the blend), so what chose the network never checks it.

    Args:
      validation: the zone's validation period (``zone_periods(...).validation``).
    """
    if not validation.start - 1 <= origin < validation.end:
        raise ValueError(f"origin {origin} is not an origin of the validation period {validation.start}.."
                         f"{validation.end}")
    return VALIDATION_PARTS[((origin - (validation.start - 1)) // VALIDATION_BLOCK) % 2]


def fit_end(first: int, last: int, config: Config, final: bool = False) -> int:
    """The last month a fitted baseline parameter may learn from: the training period's end, or
    ``last`` for the final forecast."""
    return last if final else zone_periods(first, last, config).training_end


def fitting_images(first: int, end: int, horizon: int) -> list[Image]:
    """Every image (o, lead) a baseline parameter is fitted on: origins with a year of history before
    them (o >= first + 12, so the same calendar month of an earlier year exists), targets <= ``end``."""
    return [(origin, lead) for origin in range(first + MONTHS_PER_YEAR, end)
            for lead in range(1, horizon + 1) if origin + lead <= end]


def trainable(first: int, last: int, config: Config) -> bool:
    """Whether a zone has the months a training period needs (``minimum_training_months``), so a training
    origin. One without is forecast by the EMA alone: it has no scored period (``period_lengths``), no
    sample trains or validates on it, and postprocess writes its EMA."""
    return last - first + 1 >= minimum_training_months(config)


def check_trainable(zones: Iterable, config: Config) -> None:
    """Raise ``check_zone_length``'s one-line error for the longest zone when no zone (anything with
    ``name``, ``first`` and ``last``) has a training origin: then nothing can train."""
    zones = list(zones)
    if zones and not any(trainable(zone.first, zone.last, config) for zone in zones):
        longest = max(zones, key=lambda zone: zone.last - zone.first)  # the first of equals
        try:
            check_zone_length(longest.name, longest.first, longest.last, config)
        except PhenocastError as error:
            raise PhenocastError(f"no zone of the run is long enough to train on: {error}") from None


def check_zone_length(name: str, first: int, last: int, config: Config) -> None:
    """Raise a one-line error when a zone is too short for one training sample (then the validation and test
    periods, which score every month after it, have origins too). A zone too short only for the configured
    validation and test periods is not refused: ``period_lengths`` shortens them."""
    months = last - first + 1
    if trainable(first, last, config):
        return
    phase = (f", {MONTHS_PER_YEAR - 1} more so that one origin falls in the forecast's calendar phase "
             f"(sequence.origins: fixed)" if config.sequence.origins == "fixed" else "")
    raise PhenocastError(
        f"zone {name} has {months} months ({first}..{last}), too short for the configured sequence: a training "
        f"period needs at least {minimum_training_months(config)} months ({config.history_months} months of "
        f"history for one sample, sequence.years = {config.sequence.years} and offsets down to "
        f"{min(config.sequence.offsets)}, at least {MONTHS_PER_YEAR + 1} for the fitted baselines; "
        f"{config.predict.horizon} target months (predict.horizon){phase}), and validation and test periods "
        f"follow it (shortened in short zones, down to none); lower sequence.years or the deepest of "
        f"sequence.offsets (as configs/small.yaml does, for zones of a few years)")
