"""Does a code change leave a finished run's postprocessing byte for byte the same?

For each code tree (e.g. an export of the starting commit and the working tree), a fresh copy of the run
folder is postprocessed with that tree's ``postprocess.py`` (``--repeat`` times in a row on the same copy),
counting the damped φ fits (calls of ``phenocast.features.fit_damped``) of each run; then the copies'
``scores.json`` and ``submission.zip`` are compared byte for byte. The original run folder is only read.

In: the run folder, the code trees and the run's postprocess arguments (after ``--``; ``output.dir`` is
set to each copy's parent). Out: printed per tree and repeat the φ fits and the files' sha256, then
``identical`` or ``DIFFERENT`` per file; exit code 1 when any file differs.

Measured for issue 19 (baselines as fitted forecasters, ``phenocast.forecasters``), starting commit against
the change, two postprocess runs per copy: benelux (``/work/exp/refit/benelux``, 1 zone, ``model.base:
damped``) and the sample (``rs2/recipes-0``, 2 zones, ema base; ``out/s-damped``, 2 zones, damped base):
``scores.json`` and ``submission.zip`` identical in all three; φ fits per postprocess run 1, 1 before and
1, 0 after on benelux (its saved φ predates the fitting counts now kept beside it, so it is refitted
once), 2, 2 before and 2, 0 after on the sample runs.

Usage::

    git archive HEAD | tar -x -C /tmp/base
    python bench/postprocess_identity.py --run /work/exp/refit/benelux --trees /tmp/base . \\
        --work /tmp/identity --repeat 2 -- --config configs/small.yaml \\
        --set data.dir=/work/shared/data/benelux-mod13a3 --set data.first_month=2 \\
        --set output.name=benelux --set finetune.refit=true --set finetune.refit_through=validation
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

COMPARED = ("scores.json", "submission.zip")
# run inside a code tree: postprocess.py with phenocast.features.fit_damped counted
DRIVER = """
import json, sys
from phenocast import features
calls = []
fit_damped = features.fit_damped
def counted(*arguments, **options):
    calls.append(1)
    return fit_damped(*arguments, **options)
features.fit_damped = counted
import postprocess
code = postprocess.main(sys.argv[1:])
print("FITS " + json.dumps(len(calls)))
sys.exit(code)
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"


def postprocess_copy(tree: Path, run: Path, copy: Path, arguments: list[str], repeat: int) -> list[int]:
    """Copy ``run`` to ``copy`` and postprocess it ``repeat`` times with the code of ``tree``.

    Returns:
      the φ fits of each repeat.
    """
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(run, copy)
    fits = []
    for index in range(repeat):
        started = time.time()
        done = subprocess.run([sys.executable, "-c", DRIVER, *arguments, "--set", f"output.dir={copy.parent}"],
                              cwd=tree, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
        if done.returncode != 0:
            raise SystemExit(f"postprocess with {tree} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        count = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("FITS "))
        fits.append(count)
        print(f"{tree} run {index + 1}: {count} φ fit(s), {time.time() - started:.0f} s, "
              + ", ".join(f"{name} {digest(copy / name)}" for name in COMPARED), flush=True)
    return fits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="the finished run folder (only read)")
    parser.add_argument("--trees", type=Path, nargs="+", required=True, help="code trees to compare")
    parser.add_argument("--work", type=Path, required=True, help="where the copies go")
    parser.add_argument("--repeat", type=int, default=1, help="postprocess runs per copy")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="-- then postprocess.py's arguments")
    options = parser.parse_args()
    arguments = [a for a in options.arguments if a != "--"]
    copies, fits = [], {}
    for index, tree in enumerate(options.trees):
        copy = options.work / f"tree{index}" / arguments_name(arguments, options.run)
        fits[str(tree)] = postprocess_copy(tree.resolve(), options.run, copy, arguments, options.repeat)
        copies.append(copy)
    different = 0
    for name in COMPARED:
        found = {digest(copy / name) for copy in copies}
        same = len(found) == 1 and "missing" not in found
        different += not same
        print(f"{name}: {'identical' if same else 'DIFFERENT'} ({', '.join(sorted(found))})")
    print("φ fits per postprocess run: " + json.dumps(fits))
    return 1 if different else 0


def arguments_name(arguments: list[str], run: Path) -> str:
    """The run's ``output.name`` from the arguments (default: the run folder's name)."""
    for argument in arguments:
        if argument.startswith("output.name="):
            return argument.split("=", 1)[1]
    return run.name


if __name__ == "__main__":
    sys.exit(main())
