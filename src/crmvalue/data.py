"""Load and validate transactions: files, DataFrames and the CDNOW data bundled with lifetimes.

Every loader returns a :class:`Transactions` whose ``frame`` has the canonical columns
``customer_id`` (str), ``date`` (datetime64, tz-naive) and ``amount`` (float64), plus
``quantity`` (float64) when a quantity column is named. Anything that cannot be made into
those columns raises :class:`~crmvalue.errors.CrmvalueError` with a one-line message naming
the source, the column and the first bad row.

Policies (also in the README):

- Customer ids are text. Files are read with every column as a string, so ``"00012"`` and
  ``"12"`` are two customers. A DataFrame column that mixes Python types (``12`` and
  ``"00012"``) is refused rather than merged or split by a guess.
- Timezone-aware timestamps are converted to UTC, then the zone is dropped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError

CANONICAL = ("customer_id", "date", "amount")

# Bundled datasets shipped inside the lifetimes wheel. Read through importlib.resources:
# `import lifetimes.datasets` needs pkg_resources, which setuptools >= 82 removed.
BUNDLED = {
    "cdnow": {
        "file": "CDNOW_master.txt",
        "header": 0,
        "names": ["customer_id", "date", "quantity", "amount"],
    },
    "cdnow_sample": {
        "file": "CDNOW_sample.txt",
        "header": None,
        "names": ["customer_id", "sample_id", "date", "quantity", "amount"],
    },
}

_CSV_SUFFIXES = {".csv", ".txt", ".tsv", ".gz", ".bz2", ".zip", ".xz"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}


@dataclass(frozen=True)
class Transactions:
    """Validated transactions in canonical columns, with where they came from."""

    frame: pd.DataFrame
    source: str
    sha256: str


def bundled_path(name: str) -> Path:
    """Path of a bundled CDNOW file inside the installed lifetimes package."""
    if name not in BUNDLED:
        raise CrmvalueError(f"unknown bundled dataset '{name}'; choose one of {', '.join(BUNDLED)}")
    resource = files("lifetimes").joinpath("datasets", BUNDLED[name]["file"])
    path = Path(str(resource))
    if not path.is_file():
        raise CrmvalueError(f"bundled dataset '{name}' is missing from the lifetimes install at {path}")
    return path


def load_transactions(
    source: str | Path | pd.DataFrame,
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str = "amount",
    quantity_col: str | None = None,
    date_format: str | None = None,
) -> Transactions:
    """Load transactions from a bundled dataset name, a CSV/Parquet path or a DataFrame.

    Parameters
    ----------
    source
        ``"cdnow"`` or ``"cdnow_sample"`` for the bundled CDNOW data (their own column names
        are used and the ``*_col`` arguments are ignored), a path to a ``.csv`` (any
        compression pandas reads) or ``.parquet`` file, or a pandas DataFrame.
    customer_col, date_col, amount_col, quantity_col
        Names of the columns in the source.
    date_format
        A ``strftime`` format for the timestamps; ``None`` accepts ISO 8601 and, failing
        that, any format pandas can infer.
    """
    if isinstance(source, pd.DataFrame):
        digest = hashlib.sha256(pd.util.hash_pandas_object(source, index=False).to_numpy().tobytes()).hexdigest()
        frame = _validate(
            source, "DataFrame", customer_col, date_col, amount_col, quantity_col, date_format, _frame_row(source)
        )
        return Transactions(frame, "DataFrame", digest)

    if isinstance(source, str) and source in BUNDLED:
        return _load_bundled(source)

    path = Path(source)
    if not path.exists():
        raise CrmvalueError(f"{path}: no such file")
    if path.is_dir():
        raise CrmvalueError(f"{path}: is a directory, expected a .csv or .parquet file")
    raw = _read_file(path)
    frame = _validate(raw, str(path), customer_col, date_col, amount_col, quantity_col, date_format, _file_line)
    return Transactions(frame, str(path), file_sha256(path))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_bundled(name: str) -> Transactions:
    spec = BUNDLED[name]
    path = bundled_path(name)
    raw = pd.read_csv(
        path,
        sep=r"\s+",
        header=spec["header"],
        names=spec["names"],
        dtype=str,
        engine="c",
    )
    frame = _validate(raw, f"{name} ({path.name})", "customer_id", "date", "amount", "quantity", "%Y%m%d", _file_line)
    return Transactions(frame, name, file_sha256(path))


def _read_file(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        try:
            raw = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise CrmvalueError(f"{path}: cannot be read as Parquet ({_first_line(exc)})") from None
    elif suffix in _CSV_SUFFIXES:
        try:
            raw = pd.read_csv(
                path,
                sep="\t" if suffix == ".tsv" else ",",
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                skipinitialspace=True,
            )
        except pd.errors.EmptyDataError:
            raise CrmvalueError(f"{path}: the file is empty") from None
        except (UnicodeDecodeError, pd.errors.ParserError, ValueError, OSError) as exc:
            raise CrmvalueError(f"{path}: cannot be read as CSV ({_first_line(exc)})") from None
    else:
        raise CrmvalueError(f"{path}: unsupported format '{suffix or path.name}'; use .csv or .parquet")
    if raw.empty:
        raise CrmvalueError(f"{path}: the file has no data rows")
    return raw


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _file_line(i: int) -> str:
    # data row i (0-based) is line i + 2 of a file with a header row
    return f"line {i + 2}"


def _frame_row(df: pd.DataFrame) -> Callable[[int], str]:
    index = df.index

    def where(i: int) -> str:
        return f"row {i} (index {index[i]!r})"

    return where


def _validate(
    raw: pd.DataFrame,
    source: str,
    customer_col: str,
    date_col: str,
    amount_col: str,
    quantity_col: str | None,
    date_format: str | None,
    where: Callable[[int], str],
) -> pd.DataFrame:
    if len(raw) == 0:
        raise CrmvalueError(f"{source}: no transactions (0 rows)")
    wanted = [customer_col, date_col, amount_col] + ([quantity_col] if quantity_col else [])
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        have = ", ".join(repr(str(c)) for c in raw.columns)
        raise CrmvalueError(
            f"{source}: missing column {', '.join(repr(c) for c in missing)}; the columns are {have} "
            f"(set --customer-col/--date-col/--amount-col)"
        )
    out = pd.DataFrame(
        {
            "customer_id": _customer_ids(raw[customer_col], source, customer_col, where),
            "date": _timestamps(raw[date_col], source, date_col, date_format, where),
            "amount": _numbers(raw[amount_col], source, amount_col, where),
        }
    )
    if quantity_col:
        out["quantity"] = _numbers(raw[quantity_col], source, quantity_col, where)
    return out.reset_index(drop=True)


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _customer_ids(col: pd.Series, source: str, name: str, where: Callable[[int], str]) -> pd.Series:
    missing = col.isna().to_numpy()
    if col.dtype == object:
        kind = pd.api.types.infer_dtype(col, skipna=True)
        if kind.startswith("mixed"):
            # only on the error path: name the first value whose type differs from the first id's
            types = col[~missing].map(type)
            odd = col[~missing].index[types != types.iloc[0]][0]
            i = col.index.get_loc(odd)
            raise CrmvalueError(
                f"{source}: column '{name}' mixes id types ({', '.join(sorted({t.__name__ for t in types.unique()}))}); "
                f"first {type(col.iloc[i]).__name__} at {where(i)}: {col.iloc[i]!r}. "
                f"Convert the ids to one type so that e.g. '00012' and 12 are not merged or split by a guess"
            )
    elif pd.api.types.is_float_dtype(col.dtype):
        fractional = (col.to_numpy(dtype=float, na_value=0.0) % 1 != 0)
        if fractional.any():
            bad = _first_bad(fractional)
            raise CrmvalueError(f"{source}: column '{name}' has a non-integer id at {where(bad)}: {col.iloc[bad]!r}")
        col = col.astype("Int64")
    if missing.any():
        bad = _first_bad(missing)
        raise CrmvalueError(f"{source}: column '{name}' has {int(missing.sum())} missing ids; first at {where(bad)}")
    ids = col.astype(str).str.strip()
    empty = (ids == "").to_numpy()
    if empty.any():
        bad = _first_bad(empty)
        raise CrmvalueError(f"{source}: column '{name}' has {int(empty.sum())} empty ids; first at {where(bad)}")
    return ids.astype(object)


def _timestamps(
    col: pd.Series, source: str, name: str, date_format: str | None, where: Callable[[int], str]
) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        parsed = col
    else:
        text = col.astype("string").str.strip()
        if date_format:
            parsed = pd.to_datetime(text, format=date_format, errors="coerce")
        else:
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
            if parsed.isna().sum() > text.isna().sum():
                parsed = pd.to_datetime(text, format="mixed", errors="coerce", utc=True)
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = _first_bad(bad)
        value = col.iloc[i]
        what = "is missing" if pd.isna(value) else f"is {str(value)!r}"
        hint = f" (expected format {date_format})" if date_format else " (set --date-format)"
        raise CrmvalueError(
            f"{source}: column '{name}' has {int(bad.sum())} unparseable timestamps; "
            f"first at {where(i)}, which {what}{hint}"
        )
    return parsed.astype("datetime64[ns]")


def _numbers(col: pd.Series, source: str, name: str, where: Callable[[int], str]) -> pd.Series:
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        numbers = col.astype("float64")
    else:
        numbers = pd.to_numeric(col.astype("string").str.strip(), errors="coerce").astype("float64")
    bad = ~np.isfinite(numbers.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        i = _first_bad(bad)
        value = col.iloc[i]
        what = "is missing" if pd.isna(value) else f"is {str(value)!r}"
        raise CrmvalueError(
            f"{source}: column '{name}' has {int(bad.sum())} missing or non-numeric values; first at {where(i)}, which {what}"
        )
    return numbers
