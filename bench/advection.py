"""How fast is the advection layer's shift with a batched gather, against ``keras.ops.take_along_axis``?

``model/advection.py`` moves images with a bilinear shift per sample; under TensorFlow its gathers are one
``tf.gather(…, batch_dims=1)`` each (``_take``), elsewhere ``keras.ops.take_along_axis`` on an index
broadcast to the whole image (``_take_along_axis``). This bench builds one ``Advection`` layer (two
months, the inside mask, the shipped smoothing, three leads) on smooth random anomalies with a strip of
padding, and times both gathers under TensorFlow side by side in one process: the trace of a
``tf.function`` (once per graph: each stage, validation pass and prediction traces the network) and the
best of ``--repeats`` runs after a warm-up. It prints the seconds of each and their ratio, and checks that
both give the same values (the bench fails when they differ).

Usage::

    python bench/advection.py [--size 288] [--batch 4] [--repeats 10] [--json results.json]

Measured on the 2-core CPU (the machine is shared: ratios, not seconds), the same values bit for bit:
at 32² × 4 the trace took 0.52 s against 1.02 s and a run 3.0 ms against 5.8 ms (1.97× and 1.94×); at
288² × 4, 0.49 s against 1.02 s and 165 ms against 198 ms (2.08× and 1.20×).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from phenocast.errors import PhenocastError, cli_main  # noqa: E402
from phenocast.io import atomic_write_text  # noqa: E402

GATHERS = ("batched gather", "take_along_axis")  # model.advection._take, model.advection._take_along_axis
HORIZON = 3
SMOOTHING = 2.0  # configs/default.yaml model.advection_smoothing


def inputs(size: int, batch: int, seed: int = 0) -> np.ndarray:
    """``(batch, size, size, 3)`` float32: the month before, the origin month (a smooth field moved by one
    pixel, with noise), and the inside mask (its first eighth of columns is padding)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(batch, size + 4, size + 4)), (0, 4, 4))
    field /= field.std()
    before, origin = field[:, 2:-2, 2:-2], field[:, 3:-1, 1:-3]
    inside = np.ones_like(origin)
    inside[:, :, : size // 8] = 0
    noisy = [image + 0.1 * rng.normal(size=image.shape) for image in (before, origin)]
    return np.stack([*noisy, inside], axis=-1).astype(np.float32)


def measure(gather: str, batch_inputs: np.ndarray, repeats: int) -> dict:
    """Trace and run time of the layer with ``gather``, and its output."""
    import tensorflow as tf

    import model.advection as advection

    shipped = advection._take
    advection._take = shipped if gather == GATHERS[0] else advection._take_along_axis
    try:
        layer = advection.Advection([0, 1], 2, HORIZON, SMOOTHING)
        function = tf.function(layer, input_signature=[tf.TensorSpec((None, *batch_inputs.shape[1:]), tf.float32)])
        start = time.perf_counter()
        function.get_concrete_function()
        trace = time.perf_counter() - start
        output = function(batch_inputs).numpy()  # warm-up
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            function(batch_inputs).numpy()
            runs.append(time.perf_counter() - start)
    finally:
        advection._take = shipped
    return {"trace_s": trace, "run_s": min(runs), "output": output}


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=288, help="window side in pixels (default 288)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs after a warm-up; the best counts")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.size < 8 or args.batch < 1 or args.repeats < 1:
        raise PhenocastError(f"bench/advection.py: expected --size ≥ 8, --batch ≥ 1 and --repeats ≥ 1, found "
                             f"{args.size}, {args.batch} and {args.repeats}")
    from phenocast import import_tensorflow_quietly

    import_tensorflow_quietly()
    batch_inputs = inputs(args.size, args.batch)
    results = {gather: measure(gather, batch_inputs, args.repeats) for gather in GATHERS}
    fast, portable = (results[gather] for gather in GATHERS)
    difference = float(np.max(np.abs(fast["output"] - portable["output"])))
    print(f"advection layer, {args.batch} × {args.size}², {HORIZON} leads, best of {args.repeats} runs")
    for gather in GATHERS:
        print(f"  {gather:16s} trace {results[gather]['trace_s']:.3f} s   run {results[gather]['run_s'] * 1e3:.2f} ms")
    print(f"  ratio (take_along_axis ÷ batched gather): trace {portable['trace_s'] / fast['trace_s']:.2f}×, "
          f"run {portable['run_s'] / fast['run_s']:.2f}×; largest difference of the outputs {difference:g}")
    if args.json:
        summary = {gather: {key: value for key, value in result.items() if key != "output"}
                   for gather, result in results.items()}
        atomic_write_text(args.json, json.dumps({"size": args.size, "batch": args.batch, "repeats": args.repeats,
                                                 "results": summary, "max_difference": difference}, indent=1))
    if difference != 0.0:
        print("DIFFERENT: the two gathers disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
