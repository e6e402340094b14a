"""The run report: ``report.md`` with tables, maps and plots (matplotlib PNGs in ``report/``).

Drawn from what postprocessing left on disk — ``scores.json`` (every number) and the scored images
``predictions/<period>/<zone>-<period>.tif`` (every map) — plus the logs and the zones' truth, so it
recomputes nothing and can be re-created alone with ``python run.py --stage report``:

- the headline: the submitted forecast's and the model's ratios to the EMA and to the best baseline on
  the test period, with their bootstrap intervals and image counts; which model wrote the submission;
- a table per zone and lead of test RMSE for the model, the blend, the EMA, the per-pixel EMA, the
  damped anomaly, climatology, persistence (and the oracle on the built-in sample); then the same for
  the validation period, which chose the checkpoints and the blend weights;
- for each zone and test month (the last ``report.max_map_months``, null = all), maps side by side of
  truth, model (its shortest-lead forecast of that month), EMA and the two error maps, with shared
  colour scales;
- RMSE by calendar month; learning curves from the CSV logs (validation RMSE against the base's, and the
  network's health: kernel sizes against their start, its departure from the base), a line per stage on
  that health and a warning where the network collapsed; a quick look at every submitted GeoTIFF.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from phenocast.config import Config  # noqa: E402
from phenocast.errors import PhenocastError  # noqa: E402
from phenocast.io import atomic_path, atomic_write_text, read_epoch_log  # noqa: E402
from phenocast.metrics import Scoreboard  # noqa: E402
from phenocast.zones import Zone  # noqa: E402

METHOD_ORDER = ("model", "blend", "refit", "ema", "ema_pixel", "damped", "climatology", "persistence", "oracle")
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, bbox_inches="tight", format="png")
    plt.close(figure)
    return path


def ordered_methods(methods: list[str]) -> list[str]:
    return [m for m in METHOD_ORDER if m in methods] + [m for m in methods if m not in METHOD_ORDER]


def score_table(summary: dict, methods: list[str]) -> list[str]:
    """Markdown rows: zone × lead, then zone, then pooled."""
    lines = ["| zone | lead | images | " + " | ".join(methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]

    def cells(values: dict) -> str:
        best = min((values[m] for m in methods if values.get(m) is not None), default=None)
        out = []
        for method in methods:
            value = values.get(method)
            text = "–" if value is None else f"{value:.4f}"
            out.append(f"**{text}**" if value is not None and value == best else text)
        return " | ".join(out)

    for zone, values in summary["zones"].items():
        for lead, by_method in values["by_lead"].items():
            lines.append(f"| {zone} | {lead} | | {cells(by_method)} |")
        lines.append(f"| {zone} | all | {values['images']} | {cells(values['rmse'])} |")
    for lead, by_method in summary["pooled_by_lead"].items():
        lines.append(f"| pooled | {lead} | | {cells(by_method)} |")
    lines.append(f"| **pooled** | all | {summary['images']} | {cells(summary['pooled'])} |")
    return lines


def year_table(rows: list[dict], confidence: float) -> list[str]:
    """Markdown lines: every method's RMSE ÷ the EMA's in each year after training (``scores.json``'s
    ``years_after_training``), the submitted blend's with its interval, and the blend ÷ the best baseline
    with its interval; empty without rows."""
    if not rows:
        return []
    methods = [m for m in ordered_methods(list(dict.fromkeys(m for row in rows for m in row["rmse"]))) if m != "ema"]
    best = rows[0].get("best_baseline")
    extra = [f"blend ÷ {best}"] if best and any(row.get("blend_over_best_baseline") for row in rows) else []
    lines = [f"## RMSE by year after training (÷ the EMA's; in brackets the blend's {confidence:.0%} interval)", "",
             "Year 1 holds the forecast months of the first 12 months after each zone's training period. The "
             "validation years chose the model and the blend, the test years nothing: where a gain fades from the "
             "first to the second, validation promised more than the model holds."
             + (f" The last column is the blend ÷ the best baseline of the headline ({best})." if extra else ""), "",
             "| year | period | images | " + " | ".join(methods + extra) + " |",
             "|---|---|---|" + "---|" * len(methods + extra)]

    def ratio(value: float, interval: list | None) -> str:
        bounds = f" [{interval[1]:.3f}–{interval[2]:.3f}]" if interval and interval[1] is not None else ""
        return f"{value:.3f}{bounds}"

    for row in rows:
        ema = row["rmse"].get("ema")
        cells = []
        for method in methods:
            value = row["rmse"].get(method)
            cells.append("–" if value is None or not ema else
                         ratio(value / ema, row.get("blend_over_ema") if method == "blend" else None))
        if extra:
            over_best = row.get("blend_over_best_baseline")
            cells.append(ratio(over_best[0], over_best) if over_best else "–")
        lines.append(f"| {row['year']} | {row['period']} | {row['images']} | " + " | ".join(cells) + " |")
    return lines + [""]


def map_figure(zone: str, origin: int, lead: int, images: dict, config: Config, path: Path) -> Path:
    """Truth, model, EMA (shared NDVI scale) and model/EMA errors (shared diverging scale)."""
    fill, scale = config.data.fill_value, config.data.scale
    truth = images["truth"].astype(np.float32)
    valid = images["truth"] != fill
    ndvi = {name: np.where(valid, images[name] / scale, np.nan) for name in ("model", "ema")}
    ndvi["truth"] = np.where(valid, truth / scale, np.nan)
    errors = {name: ndvi[name] - ndvi["truth"] for name in ("model", "ema")}
    finite = ndvi["truth"][np.isfinite(ndvi["truth"])]
    low, high = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    spread = max(float(np.nanpercentile(np.abs(np.concatenate([e[np.isfinite(e)] for e in errors.values()]))
                                        , 99)) if finite.size else 0.1, 1e-3)
    figure, axes = plt.subplots(1, 5, figsize=(17, 3.6))
    for axis, (title, image) in zip(axes[:3], (("truth", ndvi["truth"]), ("model", ndvi["model"]),
                                               ("EMA", ndvi["ema"]))):
        shown = axis.imshow(image, cmap="YlGn", vmin=low, vmax=high)
        axis.set_title(title)
    figure.colorbar(shown, ax=axes[:3], shrink=0.8, label="NDVI")
    for axis, (title, image) in zip(axes[3:], (("model − truth", errors["model"]), ("EMA − truth",
                                                                                   errors["ema"]))):
        finite_error = image[np.isfinite(image)]
        rmse = f"{float(np.sqrt(np.mean(finite_error ** 2))):.4f}" if finite_error.size else "-"
        shown = axis.imshow(image, cmap="RdBu_r", vmin=-spread, vmax=spread)
        axis.set_title(f"{title}\nRMSE {rmse}")
    figure.colorbar(shown, ax=axes[3:], shrink=0.8, label="NDVI error")
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"{zone}: month {origin + lead} (origin {origin}, lead {lead})")
    return _save(figure, path)


def calendar_figure(board: Scoreboard, config: Config, methods: list[str], path: Path, period: str = "test"
                    ) -> Path:
    by_month = board.by_calendar_month(config.data.first_month)
    figure, axis = plt.subplots(figsize=(7, 3.5))
    months = list(by_month)
    for method in methods:
        axis.plot(months, [by_month[m].get(method) or np.nan for m in months], marker="o", label=method)
    axis.set_xticks(months, [MONTH_NAMES[m - 1] for m in months])
    axis.set_ylabel(f"{period} RMSE (NDVI)")
    axis.set_title("RMSE by calendar month of the forecast month")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _save(figure, path)


def learning_curves(logs: Path, path: Path) -> Path | None:
    """Per stage log: the training loss; the validation RMSE with the base's (dashed, same colour), the
    reference a network that never left its base would score; and the network's health (the smallest
    kernel RMS ratio of a layer group to its start, the departure from the base over pixels)."""
    files = sorted(logs.glob("*.csv"))
    if not files:
        return None
    figure, axes = plt.subplots(1, 3, figsize=(16, 3.6))
    for file in files:
        rows = read_epoch_log(file)
        if not rows:
            continue
        epochs = [int(row["epoch"]) + 1 for row in rows]
        line, = axes[0].plot(epochs, [_number(row.get("loss")) for row in rows], marker=".", label=file.stem)
        colour = line.get_color()
        axes[1].plot(epochs, [_number(row.get("val_masked_rmse")) for row in rows], marker=".", color=colour,
                     label=file.stem)
        base = [_number(row.get("val_base_rmse")) for row in rows]
        if np.isfinite(base).any():
            axes[1].plot(epochs, base, linestyle="--", color=colour, label=f"{file.stem}: base")
        ratios = [min((_number(value) for key, value in row.items() if key.startswith("kernel_ratio_")),
                      default=float("nan")) for row in rows]
        axes[2].plot(epochs, ratios, marker=".", color=colour, label=f"{file.stem}: min kernel ratio")
        axes[2].plot(epochs, [_number(row.get("departure_spatial_rms")) / 0.01 for row in rows], marker="x",
                     linestyle=":", color=colour, label=f"{file.stem}: departure over pixels ÷ 0.01")
    axes[0].set_title("training loss")
    axes[1].set_title("validation RMSE (difference units, centres); dashed: the base")
    axes[2].set_title("health: kernel RMS ÷ initial (collapse below 1e-3)")
    axes[2].set_yscale("log")
    axes[2].axhline(1e-3, color="red", linewidth=0.8)
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    return _save(figure, path)


def health_lines(logs: Path) -> list[str]:
    """One line per stage log: its last epoch's health, and a warning line for every stage whose network
    collapsed (``collapsed`` logged as 1 in some epoch)."""
    lines = []
    for file in sorted(logs.glob("*.csv")):
        rows = read_epoch_log(file)
        if not rows or "collapsed" not in rows[-1]:
            continue
        last = rows[-1]
        ratios = {key[len("kernel_ratio_"):]: _number(value) for key, value in last.items()
                  if key.startswith("kernel_ratio_")}
        weakest = min(ratios, key=ratios.get) if ratios else None
        text = (f"- {file.stem}, epoch {len(rows)}: kernels at {min(ratios.values()):.3g}–{max(ratios.values()):.3g}"
                f" × their initial RMS (lowest: {weakest}); head RMS {_number(last.get('head_rms')):.3g}; "
                f"departure from the base {_number(last.get('departure_rms')):.4f} NDVI RMS, of which "
                f"{_number(last.get('departure_spatial_rms')):.4f} varies over pixels") if ratios else f"- {file.stem}"
        if "val_base_rmse" in last:
            text += (f"; validation RMSE {_number(last.get('val_masked_rmse')):.5f} against the base's "
                     f"{_number(last['val_base_rmse']):.5f}")
        lines.append(text)
        collapsed = [int(row["epoch"]) + 1 for row in rows if _number(row.get("collapsed")) > 0]
        if collapsed:
            lines.append(f"- **{file.stem}: the network collapsed** (epoch(s) {', '.join(map(str, collapsed))}): "
                         f"its kernels fell below 1e-3 of their initial RMS or its departure from the base "
                         f"became constant over pixels; its forecasts are the base plus a constant")
    return lines


def damped_line(zone: str, fitted: dict, alpha: float) -> str:
    """The report's line on a zone's damped forecast, from ``scores.json``'s fitted baselines: its reference
    (the EMA, or the fitted weighted mean's β), its φ and the months it was fitted on."""
    damped = fitted["damped"]
    reference = (f"the weighted mean of the earlier years (β {damped['beta']:g}, fitted)" if "beta" in damped
                 else f"the EMA (α {alpha:g})")
    phi = ("per lead and calendar month (scores.json)" if damped["by_month"] else
           "(φ₁, φ₂) per lead " + ", ".join(f"({first:.3f}, {second:.3f})" for first, second in damped["phi"]))
    return (f"- damped forecast of {zone}: {reference} + φ₁·a_o + φ₂·smooth(a_o), {phi}, fitted on months "
            f"through {fitted['fit_end']}")


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):  # missing, or "NA" where Keras logged no value
        return float("nan")


def quick_look(tif: Path, config: Config, path: Path) -> Path:
    import rasterio

    with rasterio.open(tif) as dataset:
        values = dataset.read(1).astype(np.float32)
    values[values == config.data.fill_value] = np.nan
    figure, axis = plt.subplots(figsize=(4, 4))
    shown = axis.imshow(values / config.data.scale, cmap="YlGn", vmin=-0.2, vmax=1.0)
    figure.colorbar(shown, ax=axis, shrink=0.8, label="NDVI")
    axis.set_title(tif.name)
    axis.set_xticks([])
    axis.set_yticks([])
    return _save(figure, path)


def write_report(config: Config, zones: list[Zone], log: Callable[[str], None] = print) -> Path:
    """Write ``report.md`` and its figures for a run that has been postprocessed."""
    from phenocast.postprocess import read_scored
    from phenocast.zones import read_month

    run_dir = config.run_dir
    scores_path = run_dir / "scores.json"
    if not scores_path.is_file():
        raise PhenocastError(f"expected {scores_path}, found none; run python run.py --stage postprocess "
                             f"first")
    summary = json.loads(scores_path.read_text())
    board = Scoreboard.from_summary(summary)
    headline = summary["headline"]
    period = headline["period"]
    figures = run_dir / "report"
    figures.mkdir(parents=True, exist_ok=True)
    data = config.data
    untrained = [zone for zone, values in summary["periods"].items() if values.get("trained") is False]
    shortened = [zone for zone, values in summary["periods"].items() if values.get("shortened")
                 and zone not in untrained]
    lines = [f"# phenocast report: {config.output.name}", "",
             f"Data `{data.dir}`, {len(summary['periods'])} zone(s). Each zone's months split into training, "
             f"validation (the {data.val_months} months that chose checkpoints, epochs and blend weights) and "
             f"test (the last {data.test_months} months, which chose nothing)"
             f"{f', shorter in {len(shortened)} zone(s) too short for them (below)' if shortened else ''}"
             f"{f', none in {len(untrained)} zone(s) too short to train on' if untrained else ''}"
             f"{', forecast by the EMA alone (below)' if untrained else ''}; origins "
             f"{'in the forecast calendar phase' if config.sequence.origins == 'fixed' else 'every month'}, "
             f"leads 1..{config.predict.horizon}; RMSE in NDVI units over valid pixels of the int16 images as "
             f"written (lower is better; best per row in bold).", "",
             f"**Headline**: {headline['text'][0].upper()}{headline['text'][1:]}", ""]
    model = headline["methods"].get("model")
    if model is not None and "blend" in headline["methods"]:
        lines += [f"- the model alone: {model['over_ema']:.3f} × the EMA"
                  + (f" (interval {model['over_ema_interval'][0]:.3f}–{model['over_ema_interval'][1]:.3f})"
                     if model.get("over_ema_interval") else "")
                  + f", {model['over_best_baseline']:.3f} × {headline['best_baseline']}"]
    for zone, values in summary["periods"].items():
        spans = ", ".join(f"{name} {values[name][0]}..{values[name][1]}" for name in ("validation", "test")
                          if name in values)
        if zone in untrained:
            lines.append(f"- zone {zone}: months {values['months'][0]}..{values['months'][1]}, too short to train "
                         f"on: nothing trained, validated or scored here; its forecast is the EMA alone")
            continue
        lines.append(f"- zone {zone}: months {values['months'][0]}..{values['months'][1]}, training targets "
                     f"through {values['training_end']}; {spans}"
                     + (f" (shortened: the zone is too short for {data.val_months} validation and "
                        f"{data.test_months} test months)" if zone in shortened else ""))
    for zone, submission in summary.get("submission", {}).items():
        written = submission["model"]
        if written is None:
            lines.append(f"- the submission of {zone} is the EMA alone (the zone is too short to train on)")
            continue
        written = (f"the mean of {len(written)} ensemble members (`{written[0]}`, …)" if isinstance(written, list)
                   else f"`{written}`")
        refit = "refit" in str(submission["model"])
        checked = (" (a refit: the blend's check saw the model chosen on validation, not this one; "
                   "`finetune.refit_through: validation` measures a refit on the test period)" if refit else
                   " (the model chosen on validation, whose blend the check half of validation checked)")
        lines.append(f"- the submission of {zone} was written by {written} ({submission['method']}), "
                     f"trained on targets through month {submission['trained_through']}{checked}")
    for zone, weight in summary.get("model_weight", {}).items():
        fallback = weight.get("fallback", weight["base"])
        lines.append(f"- blend of {zone} = {fallback} + w·(model − {fallback}) (model.base {weight['base']}), "
                     f"w = {weight['weight']:.2f}: {weight['reason']}")
    for zone, fitted in summary.get("fitted_baselines", {}).items():
        if fitted and "damped" in fitted:
            lines.append(damped_line(zone, fitted, config.evaluate.ema_alpha))
    for name in ("test", "validation"):
        if name in summary:
            methods = ordered_methods(list(summary[name]["pooled"]))
            title = "Test RMSE" if name == "test" else "Validation RMSE (these months chose the model)"
            lines += ["", f"## {title}", "", *score_table(summary[name], methods), ""]
            parts = summary.get("validation_parts") or {}
            if name == "validation" and parts.get("select") and parts.get("check"):
                lines += ["Its halves (interleaved 3-month blocks of origins): the *select* half chose checkpoints, "
                          "epochs and fine-tuning; the *check* half fitted and checked the blend.", "",
                          "| half | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods),
                          *(f"| {part} | " + " | ".join(f"{parts[part][m]:.4f}" if parts[part].get(m) is not None
                                                         else "-" for m in methods) + " |"
                            for part in ("select", "check")), ""]
    lines += year_table(summary.get("years_after_training") or [], config.evaluate.confidence)
    scored = board.restrict_period(period)
    if scored.scores:
        methods = ordered_methods(scored.methods)
        calendar = calendar_figure(scored, config, methods, figures / "calendar.png", period).relative_to(run_dir)
        lines += [f"## {period.capitalize()} RMSE by calendar month", "", f"![RMSE by calendar month]({calendar})", ""]
    curves = learning_curves(run_dir / "logs", figures / "learning_curves.png")
    if curves is not None:
        lines += ["## Learning curves", "", f"![learning curves]({curves.relative_to(run_dir)})", ""]
    health = health_lines(run_dir / "logs")
    if health:
        lines += ["## Training health", "", *health, ""]
    if config.report.maps:
        lines += [f"## {period.capitalize()} maps", ""]
        for zone in zones:
            file = summary.get("scored_files", {}).get(zone.name, {}).get(period)
            if file is None:
                continue
            images = read_scored(run_dir / file)
            shortest: dict[int, tuple[int, int]] = {}  # month → its shortest-lead forecast
            for origin, lead in sorted(images, key=lambda key: key[1]):
                shortest.setdefault(origin + lead, (origin, lead))
            months = sorted(shortest)
            if config.report.max_map_months is not None:
                months = months[-config.report.max_map_months:]
            for month in months:
                origin, lead = shortest[month]
                truth = read_month(zone, month, data.fill_value, data.valid_range)
                path = map_figure(zone.name, origin, lead, {**images[origin, lead], "truth": truth}, config,
                                  figures / f"map-{zone.name}-{month:03d}.png")
                lines += [f"![{zone.name} month {month}]({path.relative_to(run_dir)})", ""]
    tifs = sorted((run_dir / "predictions").glob("*.tif"))
    if tifs:
        lines += ["## Submitted forecasts", ""]
        for tif in tifs:
            path = quick_look(tif, config, figures / f"quicklook-{tif.stem}.png")
            lines.append(f"![{tif.name}]({path.relative_to(run_dir)})")
        lines.append("")
    report = atomic_write_text(run_dir / "report.md", "\n".join(lines) + "\n")
    log(f"report: {report} ({len(list(figures.glob('*.png')))} figures)")
    return report
