"""Multi-worker training: two ``run.py`` processes on 127.0.0.1 joined by ``TF_CONFIG`` train one model;
the chief alone writes the run, the other worker only its private folder; both end with the same
weights. Plus ``TF_CONFIG`` parsing and its one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import test_run
from test_run import arguments

from phenocast.cluster import Worker, worker
from phenocast.errors import PhenocastError

from conftest import ROOT

TIMEOUT = 300  # seconds for both workers together: about 95 s on an idle 2-core CPU, 130 s when shared
FAST = ["train.epochs=1", "train.steps_per_epoch=2", "train.validation_samples=8", "finetune.refit=false",
        "predict.tta=false"]


tiny_world = test_run.tiny_world  # the two tiny zones and their records, as in tests/test_run.py


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports free on 127.0.0.1 right now (held open together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for held in sockets:
            held.bind(("127.0.0.1", 0))
        return [held.getsockname()[1] for held in sockets]
    finally:
        for held in sockets:
            held.close()


def cluster_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})


def run_workers(args: list[str], folder: Path, count: int = 2) -> list[str]:
    """Start ``count`` ``run.py`` workers of one cluster, wait for all (kill all after ``TIMEOUT``);
    return their stdouts. Fails with every worker's stderr tail unless all exit 0."""
    ports = free_ports(count)
    processes = []
    with contextlib.ExitStack() as files:
        for index in range(count):
            out, err = (files.enter_context(open(folder / f"worker-{index}.{kind}", "w"))
                        for kind in ("out", "err"))
            env = {**os.environ, "TF_CONFIG": cluster_config(ports, index)}
            processes.append(subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, env=env,
                                              stdout=out, stderr=err, text=True))
        deadline = time.monotonic() + TIMEOUT
        try:
            while any(process.poll() is None for process in processes) and time.monotonic() < deadline:
                if any(process.poll() not in (None, 0) for process in processes):
                    time.sleep(5)  # one failed: give the others a moment to report, then kill them
                    break
                time.sleep(0.5)
        finally:
            timed_out = [index for index, process in enumerate(processes) if process.poll() is None]
            for process in processes:
                if process.poll() is None:
                    process.kill()
                process.wait()
    codes = [process.returncode for process in processes]
    if timed_out or any(codes):
        report = "\n".join(f"--- worker {index} (exit {code}) stderr:\n"
                           f"{(folder / f'worker-{index}.err').read_text()[-3000:]}"
                           for index, code in enumerate(codes))
        pytest.fail(f"workers {timed_out} still running after {TIMEOUT} s (killed)\n{report}" if timed_out
                    else f"worker exit codes {codes}\n{report}")
    return [(folder / f"worker-{index}.out").read_text() for index in range(count)]


def keras_weights(path: Path) -> dict[str, np.ndarray]:
    """Every weight array of a ``.keras`` file, by its path inside ``model.weights.h5``."""
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as weights:
        arrays: dict[str, np.ndarray] = {}
        weights.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                           if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_two_workers_train_one_model_and_only_the_chief_writes_the_run(tiny_world, tmp_path: Path):
    output = tmp_path / "outputs"
    started = time.monotonic()
    chief_out, worker_out = run_workers([*arguments(tiny_world, output, *FAST), "--stage", "pretrain,predict"],
                                        tmp_path)
    elapsed = time.monotonic() - started
    assert "multi-worker mirrored strategy over 2 worker(s) from TF_CONFIG, 2 replica(s)" in chief_out
    assert "this is worker 0 (chief)" in chief_out and "this is worker 1, writing to .workers/worker-1" in worker_out
    assert "stage predict: the chief's job (worker 1 only trains), skipped" in worker_out
    run_dir = output / "sample"
    private = run_dir / ".workers" / "worker-1"
    # the chief wrote the run, once
    stage = run_dir / "checkpoints" / "pretrain"
    for name in ("best.keras", "last.keras", "done.json", "stage.json", "config.resolved.yaml"):
        assert (stage / name).is_file(), name
    assert (run_dir / "logs" / "pretrain.csv").is_file() and (run_dir / "logs" / "tensorboard" / "pretrain").is_dir()
    assert (run_dir / "predictions" / "raw" / "config.resolved.yaml").is_file()
    assert sorted(path.name for path in (run_dir / "predictions" / "raw").glob("*.npz")) == [
        f"{zone}-{kind}.npz" for zone in ("Z1", "Z2") for kind in ("forecast", "test", "validation")]
    assert json.loads((stage / "done.json").read_text())["epochs"] == 1
    assert not (stage / "backup").exists()
    # the other worker wrote only its private folder: checkpoints and the CSV log it resumes from
    written = sorted(str(path.relative_to(run_dir)) for path in run_dir.rglob("*") if path.is_file())
    others = [name for name in written if name.startswith(".workers/") and not name.startswith(".workers/worker-1/")]
    assert not others, others
    private_files = sorted(str(path.relative_to(private)) for path in private.rglob("*") if path.is_file())
    assert private_files == ["checkpoints/pretrain/best.keras", "checkpoints/pretrain/config.resolved.yaml",
                             "checkpoints/pretrain/done.json", "checkpoints/pretrain/health.json",
                             "checkpoints/pretrain/last.keras", "checkpoints/pretrain/stage.json",
                             "logs/pretrain.csv"], private_files
    # one model: the same logged losses and the same final weights on both workers
    assert (private / "logs" / "pretrain.csv").read_text() == (run_dir / "logs" / "pretrain.csv").read_text()
    chief_weights, worker_weights = (keras_weights(folder / "checkpoints" / "pretrain" / "last.keras")
                                     for folder in (run_dir, private))
    assert chief_weights.keys() == worker_weights.keys() and len(chief_weights) > 10
    for name, values in chief_weights.items():
        np.testing.assert_array_equal(worker_weights[name], values, err_msg=name)
    assert elapsed < TIMEOUT


def test_a_malformed_tf_config_is_one_line(tiny_world, tmp_path: Path):
    env = {**os.environ, "TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker"}'}
    result = subprocess.run([sys.executable, "run.py", *arguments(tiny_world, tmp_path), "--stage", "pretrain"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: expected TF_CONFIG as JSON like") and "invalid JSON" in result.stderr


def test_tf_config_names_the_chief_and_this_worker():
    assert worker({}) == Worker(index=0, count=1, chief=True)
    assert worker({"TF_CONFIG": cluster_config([1, 2, 3], 2)}) == Worker(index=2, count=3, chief=False)
    assert worker({"TF_CONFIG": cluster_config([1, 2], 0)}).chief
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}
    assert worker({"TF_CONFIG": json.dumps(with_chief)}) == Worker(index=1, count=2, chief=False)
    assert Worker(index=1, count=2, chief=False).private_folder == ".workers/worker-1"


@pytest.mark.parametrize("text, message", [
    ("not json", "invalid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'no "cluster" and "task" objects'),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "not a list of"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "index in 0..1"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "ps", "index": 0}}', "chief and worker"),
])
def test_a_malformed_tf_config_says_what_was_expected(text: str, message: str):
    with pytest.raises(PhenocastError, match="expected TF_CONFIG as JSON like") as error:
        worker({"TF_CONFIG": text})
    assert message in str(error.value)
