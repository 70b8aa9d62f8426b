"""Atomic file writes: a temporary file in the target's folder, then one rename.

Readers see the old file or the new one, never a half-written one, and a failure leaves
no temporary file behind. :class:`StagedFiles` replaces several files all or nothing, and
:func:`check_writable` checks, before any work, that a path can be written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from crmvalue.errors import CrmvalueError

if TYPE_CHECKING:
    from crmvalue.schema import Kind

PARQUET_SUFFIXES = {".parquet", ".pq"}


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
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


# The predictions export's typed columns (README, "The export"), by their declared kind (crmvalue.schema):
# counts are written as integers (no ``3.0``), money is rounded to cents in CSV files (Parquet keeps full
# precision), dates are ISO. Read at call time: the analyses, which declare some of them, may import this module.
KIND_COLUMNS: dict[str, Kind] = {"INTEGER_COLUMNS": "integer", "MONEY_COLUMNS": "money", "DATE_COLUMNS": "date"}
CENTS = 2


def write_table(frame: pd.DataFrame, path: Path, like: Path | None = None) -> None:
    """Write ``frame`` without its index: Parquet when ``like`` (default ``path``) ends in .parquet, else CSV.

    Columns declared ``integer`` (:data:`INTEGER_COLUMNS`) whose values are whole numbers are written as
    integers (nullable where some are missing); in CSV files ``money`` columns (:data:`MONEY_COLUMNS`) are
    rounded to cents and ``date`` columns (:data:`DATE_COLUMNS`) written as ``YYYY-MM-DD``. Other columns
    are written as they are.
    """
    parquet = Path(like or path).suffix.lower() in PARQUET_SUFFIXES
    frame = _typed(frame, csv=not parquet)
    if parquet:
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def _typed(frame: pd.DataFrame, csv: bool) -> pd.DataFrame:
    import numpy as np

    from crmvalue.schema import file_kind_columns

    changed = {}
    for column in file_kind_columns("integer"):
        if column not in frame.columns or not pd.api.types.is_numeric_dtype(frame[column].dtype):
            continue
        values = frame[column]
        if pd.api.types.is_integer_dtype(values.dtype):
            continue
        present = values.dropna().to_numpy(dtype=float)
        if np.all(np.isfinite(present)) and np.all(present == np.round(present)):
            changed[column] = values.astype("int64" if len(present) == len(values) else "Int64")
    if csv:
        for column in file_kind_columns("money"):
            if column in frame.columns and pd.api.types.is_float_dtype(frame[column].dtype):
                changed[column] = frame[column].round(CENTS)
        for column in file_kind_columns("date"):
            if column in frame.columns and pd.api.types.is_datetime64_any_dtype(frame[column].dtype):
                changed[column] = frame[column].dt.strftime("%Y-%m-%d")
    return frame.assign(**changed) if changed else frame


def __getattr__(name: str) -> tuple[str, ...]:
    """``INTEGER_COLUMNS``, ``MONEY_COLUMNS`` and ``DATE_COLUMNS``: the file columns of that kind."""
    if name in KIND_COLUMNS:
        from crmvalue.schema import file_kind_columns

        return file_kind_columns(KIND_COLUMNS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def atomic_write_table(frame: pd.DataFrame, target: Path) -> None:
    atomic_write(Path(target), lambda tmp: write_table(frame, tmp, like=Path(target)))


def may_write(path: Path) -> bool:
    """Whether this process may create or replace entries in ``path`` (a folder) or write ``path`` (a file).

    ``access(2)`` answers for root as if every mode allowed writing; a file or folder that nobody
    may write (``chmod a-w``) is treated as read-only for root too, as ``rm`` and ``git`` do.
    """
    if not os.access(path, os.W_OK):
        return False
    return os.geteuid() != 0 or bool(os.stat(path).st_mode & 0o222)


def check_writable(target: Path, what: str, hint: str = "", directory: bool = False) -> None:
    """Pre-flight: raise a one-line :class:`CrmvalueError` unless ``target`` can be written.

    ``target`` is a file (or, with ``directory``, a folder) that may not exist yet: then the
    nearest folder that does exist must take new entries. Nothing is created.
    """
    target = Path(os.path.abspath(target))
    shown = f"{what} {target}"
    hint = f" ({hint})" if hint else ""
    if target.exists():
        if directory and not target.is_dir():
            raise CrmvalueError(f"cannot write {shown}: it is a file, not a folder{hint}")
        if not directory and target.is_dir():
            raise CrmvalueError(f"cannot write {shown}: it is a folder, not a file{hint}")
        if not may_write(target):
            raise CrmvalueError(f"cannot write {shown}: it is read-only{hint}")
    folder = target if directory else target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise CrmvalueError(f"cannot write {shown}: {folder} is a file, not a folder{hint}")
    if not (may_write(folder) and os.access(folder, os.X_OK)):
        raise CrmvalueError(f"cannot write {shown}: the folder {folder} is read-only{hint}")


class StagedFiles:
    """Files replaced together, all or nothing.

    Each new file is written beside its target and renamed over it (as :func:`atomic_write`),
    while the previous version is kept aside under a hidden name. :meth:`rollback` puts every
    previous version back, removes files and folders that did not exist before, in reverse
    order; :meth:`commit` drops the kept versions.
    """

    def __init__(self):
        self._replaced: list[tuple[Path, Path | None]] = []  # target, its previous version (None: new file)
        self._created: list[Path] = []  # folders made for the targets, outermost first

    def write(self, target: Path, write: Callable[[Path], object]) -> None:
        target = Path(target)
        missing = []
        folder = target.parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:  # another process made it meanwhile: not ours to remove
                continue
            self._created.append(folder)
        previous = None
        if target.exists():
            previous = target.with_name(f".{target.name}.{os.getpid()}.{len(self._replaced)}.previous")
            previous.unlink(missing_ok=True)
            try:
                os.link(target, previous)
            except OSError:  # a file system without hard links
                shutil.copy2(target, previous)
        try:
            atomic_write(target, write)
        except BaseException:
            if previous is not None:
                previous.unlink(missing_ok=True)
            raise
        self._replaced.append((target, previous))

    def write_text(self, target: Path, text: str) -> None:
        self.write(target, lambda tmp: tmp.write_text(text))

    def copy(self, source: Path, target: Path) -> None:
        self.write(target, lambda tmp: shutil.copyfile(source, tmp))

    def rollback(self) -> None:
        while self._replaced:
            target, previous = self._replaced.pop()
            try:
                if previous is None:
                    target.unlink(missing_ok=True)
                else:
                    os.replace(previous, target)
            except OSError as exc:  # put back what can be; say what could not
                logging.getLogger("crmvalue").warning("could not restore %s: %s", target, exc)
        while self._created:
            folder = self._created.pop()
            with contextlib.suppress(OSError):  # not empty: something else was put there meanwhile
                folder.rmdir()

    def commit(self) -> None:
        for _, previous in self._replaced:
            if previous is not None:
                previous.unlink(missing_ok=True)
        self._replaced.clear()
        self._created.clear()


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any thread writes
    os.umask(mask)
    return mask


_UMASK = _read_umask()
