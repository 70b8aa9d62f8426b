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

import bz2
import contextlib
import csv
import gzip
import hashlib
import io
import lzma
import zipfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError, first_line

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

_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".zip", ".xz"}
_CSV_SUFFIXES = {".csv", ".txt", ".tsv"} | _COMPRESSION_SUFFIXES
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

    path = _existing_file(source)
    raw, where = _read_file(path)
    frame = _validate(raw, str(path), customer_col, date_col, amount_col, quantity_col, date_format, where)
    return Transactions(frame, str(path), file_sha256(path))


def _existing_file(source: str | Path) -> Path:
    path = Path(source)
    if not path.exists():
        raise CrmvalueError(f"{path}: no such file")
    if path.is_dir():
        raise CrmvalueError(f"{path}: is a directory, expected a .csv or .parquet file")
    return path


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
    header_lines = 0 if spec["header"] is None else 1
    frame = _validate(
        raw,
        f"{name} ({path.name})",
        "customer_id",
        "date",
        "amount",
        "quantity",
        "%Y%m%d",
        lambda i: f"line {i + 1 + header_lines}",
    )
    return Transactions(frame, name, file_sha256(path))


def _read_file(path: Path) -> tuple[pd.DataFrame, Callable[[int], str]]:
    """The raw table (every CSV column as text) and how to name its data row ``i`` in a message."""
    suffix = path.suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        try:
            raw = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise CrmvalueError(f"{path}: cannot be read as Parquet ({_first_line(exc)})") from None
        where = _parquet_row
    elif suffix in _CSV_SUFFIXES:
        # data.tsv.gz is tab-separated too
        inner = path.suffixes[-2].lower() if suffix in _COMPRESSION_SUFFIXES and len(path.suffixes) > 1 else suffix
        sep = "\t" if inner == ".tsv" else ","
        try:
            raw = pd.read_csv(
                path,
                sep=sep,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                skipinitialspace=True,
            )
        except pd.errors.EmptyDataError:
            raise CrmvalueError(f"{path}: the file is empty") from None
        except (
            UnicodeDecodeError,
            pd.errors.ParserError,
            ValueError,
            OSError,
            EOFError,  # truncated .gz/.bz2/.xz
            zipfile.BadZipFile,
            lzma.LZMAError,
        ) as exc:
            raise CrmvalueError(f"{path}: cannot be read as CSV ({_first_line(exc)})") from None
        where = _csv_line_locator(path, sep)
    else:
        raise CrmvalueError(f"{path}: unsupported format '{suffix or path.name}'; use .csv or .parquet")
    if raw.empty:
        raise CrmvalueError(f"{path}: the file has no data rows")
    return raw, where


def _first_line(exc: BaseException) -> str:
    return first_line(exc, limit=None)


def _parquet_row(i: int) -> str:
    return f"row {i} (counting from 0)"


def _csv_line_locator(path: Path, sep: str) -> Callable[[int], str]:
    """Name data row ``i`` by the line of the file it starts on.

    Only called on the error path, so it rereads the file: blank lines (which pandas skips)
    and quoted fields holding line breaks make ``i + 2`` wrong.
    """

    def where(i: int) -> str:
        try:
            line = _csv_record_line(path, sep, i)
        except Exception:  # the line number is a courtesy; never hide the real error behind it
            line = None
        return f"line {line}" if line is not None else f"data row {i + 1}"

    return where


@contextlib.contextmanager
def _open_text(path: Path) -> Iterator[io.TextIOBase]:
    suffix = path.suffix.lower()
    text = {"encoding": "utf-8-sig", "errors": "replace", "newline": ""}
    with contextlib.ExitStack() as stack:
        if suffix == ".gz":
            fh = stack.enter_context(gzip.open(path, "rt", **text))
        elif suffix == ".bz2":
            fh = stack.enter_context(bz2.open(path, "rt", **text))
        elif suffix == ".xz":
            fh = stack.enter_context(lzma.open(path, "rt", **text))
        elif suffix == ".zip":
            archive = stack.enter_context(zipfile.ZipFile(path))
            (member,) = archive.namelist()  # pandas reads a zip of exactly one file
            fh = stack.enter_context(io.TextIOWrapper(archive.open(member), **text))
        else:
            fh = stack.enter_context(open(path, **text))
        yield fh


def _csv_record_line(path: Path, sep: str, i: int) -> int | None:
    """The 1-based line on which data record ``i`` starts, counting records as pandas does."""
    with _open_text(path) as fh:
        reader = csv.reader(fh, delimiter=sep, skipinitialspace=True)
        end = 0  # the line the previous record ended on
        record_no = -1  # -1 is the header
        for record in reader:
            start, end = end + 1, reader.line_num
            if len(record) <= 1 and not "".join(record).strip():
                continue  # a blank line: pandas skips it
            if record_no == i:
                return start
            record_no += 1
    return None


def _shown(value) -> str:
    """``repr`` for a message: ``12``, not numpy 2's ``np.int64(12)``."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _frame_row(df: pd.DataFrame) -> Callable[[int], str]:
    index = df.index

    def where(i: int) -> str:
        return f"row {i} (index {_shown(index[i])})"

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
    for c in wanted:
        count = int((raw.columns == c).sum())
        if count > 1:
            raise CrmvalueError(f"{source}: column {c!r} appears {count} times; rename or drop the duplicates")
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
                f"first {type(col.iloc[i]).__name__} at {where(i)}: {_shown(col.iloc[i])}. "
                f"Convert the ids to one type so that e.g. '00012' and 12 are not merged or split by a guess"
            )
        if kind == "floating":
            # Python floats in an object column: the same rule as a float column, 12.0 -> "12"
            col = col.astype("float64")
    if pd.api.types.is_float_dtype(col.dtype):
        fractional = (col.to_numpy(dtype=float, na_value=0.0) % 1 != 0)
        if fractional.any():
            bad = _first_bad(fractional)
            raise CrmvalueError(f"{source}: column '{name}' has a non-integer id at {where(bad)}: {_shown(col.iloc[bad])}")
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
            # utc=True: a %z format over several offsets raises without it instead of coercing
            parsed = pd.to_datetime(text, format=date_format, errors="coerce", utc=True)
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


def load_customer_attributes(source: str | Path | pd.DataFrame, id_col: str = "customer_id") -> pd.DataFrame:
    """A customer table for the churn model: one row per id, every other column an attribute.

    Ids follow the transactions' rules (text; ``"00012"`` and ``12`` stay distinct). A column
    whose every value parses as a number becomes numeric; any other becomes a pandas
    ``category``, which LightGBM splits on natively. Attributes are taken as known at every
    cut-off, so they must not be recorded after the fact (a "churned on" date would leak the
    label).

    Returns a frame indexed by customer id.
    """
    if isinstance(source, pd.DataFrame):
        raw, name, where = source, "customer table (DataFrame)", _frame_row(source)
    else:
        path = _existing_file(source)
        raw, where = _read_file(path)
        name = str(path)
    if id_col not in raw.columns:
        raise CrmvalueError(
            f"{name}: no customer id column '{id_col}'; the columns are {', '.join(map(str, raw.columns))}"
        )
    ids = _customer_ids(raw[id_col].reset_index(drop=True), name, id_col, where)
    duplicated = ids.duplicated().to_numpy()
    if duplicated.any():
        bad = _first_bad(duplicated)
        raise CrmvalueError(f"{name}: column '{id_col}' repeats the id {_shown(ids.iloc[bad])} at {where(bad)}; one row per customer")
    attributes = {}
    for column in raw.columns:
        if column == id_col:
            continue
        values = raw[column].reset_index(drop=True)
        if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
            attributes[str(column)] = values.astype(float)
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().sum() == values.notna().sum():
            attributes[str(column)] = numbers.astype(float)
        else:
            attributes[str(column)] = values.astype(str).where(values.notna()).astype("category")
    if not attributes:
        raise CrmvalueError(f"{name}: no attribute columns besides '{id_col}'")
    table = pd.DataFrame(attributes)  # every column on the table's row positions
    table.index = pd.Index(ids.to_numpy(), name="customer_id")
    return table
