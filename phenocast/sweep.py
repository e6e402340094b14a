"""Config sweeps: a base config plus a list (or grid) of override sets, one run per member.

A sweep file (``configs/sweeps/*.yaml``)::

    name: lambda                 # member runs are <output.dir>/<name>-<k>; results in <output.dir>/sweeps/<name>/
    base: ../sample.yaml         # the base config, relative to the sweep file
    set: [train.epochs=6]        # optional overrides for every member
    members:                     # a list of override mappings …
      - {train.weight_decay: 1.0e-7}
      - {train.weight_decay: 1.0e-5}
    grid:                        # … and/or a grid: every combination of these values
      train.weight_decay: [1.0e-7, 1.0e-5]

``python run.py --sweep FILE`` runs every member (preprocessing first where its record-relevant settings
need records that do not exist yet — an overlap sweep builds one records folder per margin, a λ sweep
shares one), skips members that finished earlier, and writes ``sweep.csv`` (one row per member: its
overrides, the headline — the test-period ratios of the model and the blend to the EMA and to the best
baseline with their bootstrap intervals and the number of images —, then the pooled validation RMSE of the
model, the blend and every baseline and the same on the test period; the member with the lowest
validation RMSE of the blend is marked ``chosen``: test numbers never choose) and ``sweep.png``.
``--member K`` runs only member K (0-based), so members can be fanned out over processes, GPUs or
machines; the CSV then lists the members finished so far.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from phenocast.config import Config, load_config
from phenocast.errors import PhenocastError
from phenocast.io import atomic_path, atomic_write_text

SWEEP_KEYS = {"name", "base", "set", "members", "grid"}


@dataclass(frozen=True)
class Member:
    """One member of a sweep."""

    index: int
    overrides: dict[str, Any]  # dotted key → value

    def override_strings(self) -> list[str]:
        return [f"{key}={json.dumps(value)}" for key, value in self.overrides.items()]

    def label(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.overrides.items()) or "base"


@dataclass(frozen=True)
class Sweep:
    name: str
    base: Path
    common: list[str]
    members: list[Member]

    def member_config(self, member: Member, extra: list[str] = ()) -> Config:
        """The member's config: base, the sweep's ``set``, the member's overrides, then ``extra``."""
        config = load_config(self.base, [*self.common, *member.override_strings(), *extra])
        config.output.name = f"{self.name}-{member.index}"
        return config


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file."""
    path = Path(path)
    if not path.is_file():
        raise PhenocastError(f"expected a sweep file at {path}, found nothing; see configs/sweeps/")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise PhenocastError(f"sweep {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(values, dict):
        raise PhenocastError(f"sweep {path}: expected a mapping with keys {sorted(SWEEP_KEYS)}")
    unknown = sorted(set(values) - SWEEP_KEYS)
    if unknown:
        raise PhenocastError(f"unknown sweep key {unknown[0]} in {path}; valid keys: {', '.join(sorted(SWEEP_KEYS))}")
    name = values.get("name") or path.stem
    if "/" in str(name) or not str(name):
        raise PhenocastError(f"sweep {path}: name must be a plain folder name, got {name!r}")
    if "base" not in values:
        raise PhenocastError(f"sweep {path}: expected a base config (base: ../sample.yaml), found none")
    overrides: list[dict[str, Any]] = []
    for index, member in enumerate(values.get("members") or []):
        if not isinstance(member, dict):
            raise PhenocastError(f"sweep {path}: member {index} must be a mapping of dotted keys, got {member!r}")
        overrides.append(dict(member))
    grid = values.get("grid") or {}
    if grid:
        if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
            raise PhenocastError(f"sweep {path}: grid must map dotted keys to non-empty lists of values")
        keys = list(grid)
        overrides += [dict(zip(keys, combination)) for combination in itertools.product(*grid.values())]
    if not overrides:
        raise PhenocastError(f"sweep {path}: expected members or a grid, found neither")
    sweep = Sweep(str(name), (path.parent / values["base"]).resolve(), [str(s) for s in values.get("set") or []],
                  [Member(index, member) for index, member in enumerate(overrides)])
    seen: dict[str, Member] = {}
    for member in sweep.members:  # every member's config must load and differ: fail before any training
        settings = sweep.member_config(member).model_dump(mode="json")
        settings["output"].pop("name")
        key = json.dumps(settings, sort_keys=True)
        if key in seen:
            raise PhenocastError(f"sweep {path}: member {member.index} ({member.label()}) gives the same config as "
                                 f"member {seen[key].index} ({seen[key].label()}); drop it or change a value")
        seen[key] = member
    return sweep


def sweep_folder(sweep: Sweep, config: Config) -> Path:
    return Path(config.output.dir) / "sweeps" / sweep.name


def run_sweep(sweep: Sweep, extra: list[str] = (), member: int | None = None,
              log: Callable[[str], None] = print) -> Path:
    """Run the sweep's members (or only ``member``) and write ``sweep.csv`` / ``sweep.png``.

    Returns:
      The path of ``sweep.csv``.
    """
    from phenocast.pipeline import Pipeline
    from phenocast.preprocess import preprocess

    if member is not None and not 0 <= member < len(sweep.members):
        raise PhenocastError(f"--member {member}: the sweep {sweep.name} has members 0..{len(sweep.members) - 1}")
    selected = sweep.members if member is None else [sweep.members[member]]
    for item in selected:
        config = sweep.member_config(item, extra)
        if (config.run_dir / "scores.json").is_file() and (config.run_dir / "report.md").is_file():
            log(f"sweep {sweep.name} member {item.index} ({item.label()}): finished earlier, skipped")
            continue
        log(f"sweep {sweep.name} member {item.index} ({item.label()}) → {config.run_dir}")
        preprocess(config, progress=False, log=log)
        Pipeline(config, log=log).run()
    return write_summary(sweep, extra, log)


def write_summary(sweep: Sweep, extra: list[str] = (), log: Callable[[str], None] = print) -> Path:
    """``sweep.csv`` and ``sweep.png`` over the members finished so far."""
    rows = []
    methods: list[str] = []
    for item in sweep.members:
        config = sweep.member_config(item, extra)
        scores_path = config.run_dir / "scores.json"
        if not scores_path.is_file():
            continue
        scores = json.loads(scores_path.read_text())
        # the select half of validation chooses members (the check half checked each member's blend)
        pooled = scores.get("validation_parts", {}).get("select") or scores.get("validation", {}).get("pooled", {})
        test = scores.get("test", {}).get("pooled", {})
        methods += [m for m in [*pooled, *test] if m not in methods]
        rows.append((item, config.run_dir, pooled, test, headline_cells(scores.get("headline", {}))))
    folder = sweep_folder(sweep, sweep.member_config(sweep.members[0], extra))
    keys = list(dict.fromkeys(key for item in sweep.members for key in item.overrides))
    chosen = min((row for row in rows if row[2].get("blend") is not None), key=lambda row: row[2]["blend"],
                 default=None)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["member", *keys, "run", "chosen", *HEADLINE_COLUMNS, *[f"validation {m}" for m in methods],
                     *[f"test {m}" for m in methods]])
    for row in rows:
        item, run_dir, pooled, test, cells = row
        writer.writerow([item.index, *[item.overrides.get(key, "") for key in keys], str(run_dir),
                         "yes" if row is chosen else "", *cells, *[pooled.get(method, "") for method in methods],
                         *[test.get(method, "") for method in methods]])
    path = atomic_write_text(folder / "sweep.csv", buffer.getvalue())
    if rows:
        _plot(sweep, rows, folder / "sweep.png")
    log(f"sweep {sweep.name}: {len(rows)} of {len(sweep.members)} member(s) finished → {path}")
    return path


HEADLINE_COLUMNS = ("headline period", "images", "best baseline",
                    *[f"{method} ÷ {reference}{part}" for method in ("model", "blend")
                      for reference in ("EMA", "best baseline") for part in ("", " low", " high")])


def headline_cells(headline: dict) -> list:
    """The ``HEADLINE_COLUMNS`` of a run's ``scores.json`` headline: its period (test when there is one),
    images, best baseline, and the ratios of the model and the blend to the EMA and to the best baseline
    with their bootstrap intervals ("" where missing)."""
    cells = [headline.get("period", ""), headline.get("images", ""), headline.get("best_baseline", "")]
    for method in ("model", "blend"):
        entry = headline.get("methods", {}).get(method, {})
        for key in ("over_ema", "over_best_baseline"):
            interval = entry.get(f"{key}_interval") or ["", ""]
            cells += [entry.get(key, ""), *interval]
    return cells


def _plot(sweep: Sweep, rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(max(5, 1.2 * len(rows)), 3.8))
    positions = list(range(len(rows)))
    for method, style in (("model", "o-"), ("blend", "s--")):
        values = [pooled.get(method) for _, _, pooled, *_ in rows]
        if any(value is not None for value in values):
            axis.plot(positions, [v if v is not None else float("nan") for v in values], style, label=method)
    emas = [pooled.get("ema") for _, _, pooled, *_ in rows]
    if any(value is not None for value in emas):
        axis.plot(positions, emas, "k:", label="EMA (α=0.4)")
    axis.set_xticks(positions, [item.label() for item, *_ in rows], rotation=20, ha="right", fontsize=8)
    axis.set_ylabel("validation RMSE (NDVI)")
    axis.set_title(f"sweep {sweep.name}")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, bbox_inches="tight", format="png")
    plt.close(figure)
