"""Atomic file writes: a temporary file in the target's folder, then one rename.

Readers see the old file or the new one, never a half-written one, and a failure leaves
no temporary file behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd

PARQUET_SUFFIXES = {".parquet", ".pq"}


def atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``target``, then rename it over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        # mkstemp makes the file private (0600); give it the mode any new file would get
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write(target, lambda tmp: tmp.write_text(text))


def atomic_copy(source: Path, target: Path) -> None:
    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))


def write_table(frame: pd.DataFrame, path: Path, like: Path | None = None) -> None:
    """Write ``frame`` without its index: Parquet when ``like`` (default ``path``) ends in .parquet, else CSV."""
    if Path(like or path).suffix.lower() in PARQUET_SUFFIXES:
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def atomic_write_table(frame: pd.DataFrame, target: Path) -> None:
    atomic_write(Path(target), lambda tmp: write_table(frame, tmp, like=Path(target)))


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any thread writes
    os.umask(mask)
    return mask


_UMASK = _read_umask()
