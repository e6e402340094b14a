"""Which forecast origins train, validate, backtest and forecast — the one place that decides.

Month indices are a zone's own 1-based numbering. An origin o is the last month a forecast may use; it
forecasts months o+1 .. o+horizon. A sample of ``sequence.years`` steps reads months back to
o - (``Config.history_months`` - 1), which must not precede the zone's first month.

- Validation: the last ``data.val_months`` months are held out. Training origins satisfy
  o + horizon <= last - val_months, so no training target (and, since the climatology of a sample is
  computed from months <= o, no climatology) reaches into them. Validation origins are those whose
  held-out months themselves: last - val_months < o <= last - 1.
- ``sequence.origins: fixed`` keeps only origins in the calendar phase of the forecast origin (the
  competition's one window: o ≡ forecast origin mod 12); ``all`` keeps every month.
- Backtests (``phenocast.evaluate``) use the origins among the last ``evaluate.origins`` months,
  o = last-origins+1 .. last-1, leads that stay within the zone; validation uses the same rule with
  ``data.val_months``, so model and baselines are scored on the same images.
- The forecast origin is the zone's last month, or, with ``predict.months``, the last month before the
  first requested month (leads = month - origin).
"""

from __future__ import annotations

from phenocast.config import Config
from phenocast.errors import PhenocastError

MONTHS_PER_YEAR = 12


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


def training_origins(first: int, last: int, config: Config, include_validation: bool = False
                     ) -> list[int]:
    """Origins whose whole sample and targets lie before the held-out months.

    Args:
      first, last: the zone's first and last month index.
      include_validation: for a refit on all months: targets may reach ``last``.
    """
    end = last if include_validation else last - config.data.val_months
    return [origin for origin in range(earliest_origin(first, config), end - config.predict.horizon + 1)
            if _in_phase(origin, last, config)]


def validation_origins(first: int, last: int, config: Config) -> list[int]:
    """Origins among the held-out months, o in [last-val_months+1, last-1], as ``evaluation_origins``."""
    start = max(last - config.data.val_months + 1, earliest_origin(first, config))
    return [origin for origin in range(start, last) if _in_phase(origin, last, config)]


def evaluation_origins(first: int, last: int, count: int) -> list[int]:
    """Backtest origins: those among the last ``count`` months with a month after them.

    o in [last-count+1, last-1] (the last month itself has nothing to score).
    """
    return list(range(max(first, last - count + 1), last))


def check_zone_length(name: str, first: int, last: int, config: Config) -> None:
    """Raise a one-line error when a zone is too short for the configured sequence."""
    months = last - first + 1
    needed = config.history_months + config.predict.horizon + config.data.val_months
    if not training_origins(first, last, config):
        phase = " in the forecast's calendar phase" if config.sequence.origins == "fixed" else ""
        raise PhenocastError(
            f"zone {name} has {months} months ({first}..{last}), too short for the configured sequence: "
            f"one training sample{phase} needs {config.history_months} months of history "
            f"(sequence.years = {config.sequence.years}, offsets down to {min(config.sequence.offsets)}) "
            f"+ {config.predict.horizon} target months + {config.data.val_months} held-out months "
            f"(at least {needed}); lower sequence.years or data.val_months, or drop the zone from "
            f"data.zones")
    if config.data.val_months and not validation_origins(first, last, config):
        raise PhenocastError(
            f"zone {name} has {months} months ({first}..{last}): no validation origin with "
            f"{config.history_months} months of history lies in its last {config.data.val_months} "
            f"months; lower sequence.years or raise data.val_months")
