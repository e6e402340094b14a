"""Atomic file output: everything is written to a temporary name beside its target, then renamed."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    A killed process leaves at most a ``.tmp-*`` file, never a half-written ``path``.

    Args:
      path: the final file.
      suffix: suffix of the temporary name (default: the target's suffix, so drivers that guess the
        format from the extension still work).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".tmp-{path.name}-", suffix=path.suffix if suffix is None else suffix, dir=path.parent)
    os.close(descriptor)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        if temporary_path.exists():
            os.chmod(temporary_path, 0o666 & ~_umask())  # mkstemp creates 0600; use normal permissions
        os.replace(temporary_path, path)
    finally:
        temporary_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically. Returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically. Returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def read_epoch_log(path: str | os.PathLike) -> list[dict]:
    """Rows of a Keras CSV log, one per epoch in epoch order (the last row of an epoch repeated after an
    interruption wins); empty if the file does not exist."""
    import csv

    path = Path(path)
    if not path.is_file():
        return []
    with open(path) as handle:
        by_epoch = {int(row["epoch"]): row for row in csv.DictReader(handle)}
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete ``.tmp-*`` files a killed run left in ``folder``. Returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = sorted(folder.glob(".tmp-*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
