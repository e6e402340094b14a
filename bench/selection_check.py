"""How often does the blend's validation check pass a network that is no better than its fallback?

The blend (``phenocast.postprocess``) uses the network only where the paired-bootstrap interval of
RMSE(model) / RMSE(fallback) on validation images lies below 1. Before that, the same validation period
chose the network's checkpoint (the epoch with the lowest validation RMSE). When the check runs on the
images that chose, it is biased towards passing whatever they chose. This bench measures that bias with
simulated zones (numpy and ``phenocast.metrics.paired_bootstrap`` only, no network):

- every zone has ``--origins`` validation origins (leads 1..3, images of 16 × 16 pixels) and a fallback
  whose error images are smooth random fields shared in part by the leads of an origin;
- a training run leaves ``--epochs`` checkpoints; checkpoint k's error is the fallback's, scaled, plus a
  departure of its own (smooth fields, correlated between epochs): a *planted noise model*, scaled so its
  expected MSE equals the fallback's (the boundary of "no better": the hardest case for the check); a
  *skilled* model has an expected RMSE ratio of ``--skill`` (power);
- **same images**: the epoch with the lowest validation RMSE is chosen, and the check runs on all
  validation images; **split**: the validation origins are cut into interleaved blocks of 3
  (``phenocast.origins.validation_part``), the epoch is chosen on the *select* blocks and the check runs
  on the *check* blocks; **no choice**: a fixed checkpoint checked on the check blocks (the check's own
  error rate, with nothing chosen).

Printed: the share of zones that pass (a false pass for the noise model) with its 95 % Wilson interval,
per protocol and model, and the check's nominal one-sided level (2.5 %).

Usage::

    python bench/selection_check.py [--zones 400] [--origins 24] [--epochs 6] [--skill 0.95] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from phenocast.metrics import Scoreboard, paired_bootstrap  # noqa: E402
from phenocast.origins import VALIDATION_BLOCK  # noqa: E402

SIDE = 16  # pixels of a simulated image
LEADS = (1, 2, 3)
REPLICATES = 500
MIN_ORIGINS = 12  # as postprocess: fewer validation origins validate nothing
DEPARTURE = 0.5  # the checkpoints' own departure, relative to the fallback's error
EPOCH_CORRELATION = 0.6  # between the departures of two checkpoints of one run


def smooth_fields(rng: np.random.Generator, count: int, scale: float = 2.0) -> np.ndarray:
    """``count`` unit-variance smooth random fields, (count, SIDE, SIDE)."""
    fields = ndimage.gaussian_filter(rng.standard_normal((count, SIDE, SIDE)), (0, scale, scale), mode="wrap")
    return fields / fields.std(axis=(1, 2), keepdims=True)


def simulate_zone(rng: np.random.Generator, origins: int, epochs: int, ratio: float) -> dict[str, np.ndarray]:
    """Image MSEs (origins, leads) of the fallback and of every checkpoint for one zone.

    A checkpoint's error is c·e + d_k: e the fallback's error, d_k its departure (variance DEPARTURE²);
    c = sqrt(ratio² − DEPARTURE²) makes its expected MSE ratio² × the fallback's.
    """
    shared = smooth_fields(rng, origins)[:, None]  # an origin's leads share part of their error
    fallback = 0.7 * shared + 0.7 * smooth_fields(rng, origins * len(LEADS)).reshape(origins, len(LEADS), SIDE, SIDE)
    common = smooth_fields(rng, origins * len(LEADS)).reshape(origins, len(LEADS), SIDE, SIDE)
    scale = math.sqrt(max(ratio ** 2 - DEPARTURE ** 2, 0.0))
    mse = {"fallback": (fallback ** 2).mean(axis=(2, 3))}
    for epoch in range(epochs):
        own = smooth_fields(rng, origins * len(LEADS)).reshape(common.shape)
        departure = DEPARTURE * (math.sqrt(EPOCH_CORRELATION) * common + math.sqrt(1 - EPOCH_CORRELATION) * own)
        mse[f"epoch{epoch}"] = ((scale * fallback + departure) ** 2).mean(axis=(2, 3))
    return mse


def board_of(mse: dict[str, np.ndarray], origins: list[int]) -> Scoreboard:
    board = Scoreboard()
    for method, values in mse.items():
        for origin in origins:
            for index, lead in enumerate(LEADS):
                board.add("Z", origin, lead, method, (float(values[origin, index]), SIDE * SIDE))
    return board


def passes(mse: dict[str, np.ndarray], select: list[int] | None, check: list[int], epochs: int, seed: int) -> bool:
    """Choose the epoch on the ``select`` origins (None: the first epoch, no choice), then run the blend's
    check on the ``check`` origins."""
    chosen = 0 if select is None else min(range(epochs), key=lambda k: float(mse[f"epoch{k}"][select].mean()))
    board = board_of({"model": mse[f"epoch{chosen}"], "fallback": mse["fallback"]}, check)
    interval = paired_bootstrap(board, "model", "fallback", REPLICATES, 0.95, seed=seed)
    return interval["origins"] >= MIN_ORIGINS and interval["high"] < 1


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if trials == 0:
        return float("nan"), float("nan")
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zones", type=int, default=400)
    parser.add_argument("--origins", type=int, default=24, help="validation origins per zone (leads 1-3)")
    parser.add_argument("--epochs", type=int, default=6, help="checkpoints the selection chooses among")
    parser.add_argument("--skill", type=float, default=0.95, help="expected RMSE ratio of the skilled model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    everything = list(range(args.origins))
    select = [o for o in everything if (o // VALIDATION_BLOCK) % 2 == 0]
    check = [o for o in everything if (o // VALIDATION_BLOCK) % 2 == 1]
    print(f"{args.zones} simulated zones × {args.origins} validation origins (leads 1-3), {args.epochs} checkpoints; "
          f"split: {len(select)} select and {len(check)} check origins in blocks of {VALIDATION_BLOCK}")
    print(f"{'model':<34} {'protocol':<12} {'passes':>7} {'share':>7} {'95 % interval':>16}")
    rng = np.random.default_rng(args.seed)
    for label, ratio in (("planted noise (expected ratio 1)", 1.0), (f"skilled (expected ratio {args.skill})",
                                                                      args.skill)):
        counts = {"same images": 0, "split": 0, "no choice": 0}
        for zone in range(args.zones):
            mse = simulate_zone(rng, args.origins, args.epochs, ratio)
            counts["same images"] += passes(mse, everything, everything, args.epochs, zone)
            counts["split"] += passes(mse, select, check, args.epochs, zone)
            counts["no choice"] += passes(mse, None, check, args.epochs, zone)
        for protocol, count in counts.items():
            low, high = wilson(count, args.zones)
            print(f"{label:<34} {protocol:<12} {count:>7} {count / args.zones:>7.1%} "
                  f"{f'[{low:.1%}, {high:.1%}]':>16}")
    print("a false pass is a pass of the planted noise model; the check's nominal one-sided level is 2.5 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
