"""Which worker of a ``TF_CONFIG`` cluster this process is, read without importing TensorFlow.

``TF_CONFIG`` is the JSON that ``tf.distribute.MultiWorkerMirroredStrategy`` reads (see
``phenocast.devices`` and the README): ``{"cluster": {"worker": ["host0:port", "host1:port"]}, "task":
{"type": "worker", "index": 0}}``. Unset or empty, the process is the only worker and the chief.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from phenocast.errors import PhenocastError


@dataclass(frozen=True)
class Worker:
    """This process's place in a ``TF_CONFIG`` cluster (a single process is the chief of one)."""

    index: int = 0  # among the training tasks (chief first, then workers)
    count: int = 1
    chief: bool = True

    @property
    def private_folder(self) -> str:
        """Where a non-chief worker writes, relative to the run folder."""
        return f".workers/worker-{self.index}"


def worker(environ=os.environ) -> Worker:
    """This process's ``Worker`` from ``TF_CONFIG`` (unset or empty: the only worker, the chief).

    ``TF_CONFIG`` is JSON: ``{"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type":
    "worker", "index": 0}}``; worker 0 is the chief unless the cluster names a ``chief`` task.

    Raises:
      PhenocastError: ``TF_CONFIG`` is not such a JSON object.
    """
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return Worker()
    example = ('{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", '
               '"index": 0}}')

    def fail(problem: str) -> PhenocastError:
        return PhenocastError(f"expected TF_CONFIG as JSON like {example}, got {problem}; fix or unset "
                              f"TF_CONFIG")

    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise fail(f"invalid JSON ({error.msg} at character {error.pos}): {text[:80]!r}") from None
    if not isinstance(values, dict) or not isinstance(values.get("cluster"), dict) or not isinstance(
            values.get("task"), dict):
        raise fail(f"no \"cluster\" and \"task\" objects in {text[:80]!r}")
    cluster, task = values["cluster"], values["task"]
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(
                isinstance(address, str) and address.rpartition(":")[2].isdigit() for address in addresses):
            raise fail(f"cluster.{role} = {addresses!r}, not a list of \"host:port\" strings")
    role, index = task.get("type"), task.get("index")
    if role not in cluster or not isinstance(index, int) or isinstance(index, bool) or not (
            0 <= index < len(cluster[role])):
        raise fail(f"task {task!r}, not a type of the cluster ({', '.join(cluster)}) with an index in "
                   f"0..{len(cluster.get(role, [None])) - 1}")
    if role not in ("chief", "worker"):
        raise fail(f"task type {role!r}; phenocast trains with chief and worker tasks only")
    chiefs = len(cluster.get("chief", []))
    position = index if role == "chief" else chiefs + index
    return Worker(index=position, count=chiefs + len(cluster.get("worker", [])),
                  chief=role == "chief" or (not chiefs and index == 0))
