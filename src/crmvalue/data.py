"""Load and validate transactions: files, DataFrames and the CDNOW data bundled with lifetimes.

Every loader returns a :class:`Transactions` whose ``frame`` has the canonical columns
``customer_id`` (str), ``date`` (datetime64, tz-naive) and ``amount`` (float64), plus
``quantity`` (float64) when a quantity column is named. Anything that cannot be made into
those columns raises :class:`~crmvalue.errors.CrmvalueError` with a one-line message naming
the source, the column and the first bad row. How a source is read is one
:class:`ReadOptions`, shared with the DuckDB engine (:mod:`crmvalue.engine`), which must
accept, reject and warn about the same files with the same messages.

Policies (also in the README, section "Your own data"):

- Customer ids are text. Files are read with every column as a string, so ``"00012"`` and
  ``"12"`` are two customers. A DataFrame column that mixes Python types (``12`` and
  ``"00012"``) is refused rather than merged or split by a guess. One rule for float-looking
  ids, whatever the source: an id written as digits, a point and only zeros (``17850.0``,
  what a spreadsheet or a float column makes of an integer id) is its digits (``17850``);
  a float column gives the same (``17850.0`` -> ``"17850"``). Leading zeros and every other
  text are kept as written (``"00012.0"`` -> ``"00012"``, ``"12.5"`` stays ``"12.5"``).
- Rows without a customer id are an error that names ``--drop-missing-ids``; with it they are
  dropped and counted in a warning.
- Dates are never guessed row by row: the whole column is read with one format, ISO 8601, the
  given ``date_format``, or the one format of :data:`DATE_FORMATS` that reads every non-empty
  value. A column that fits both a day-first and a month-first format (every day <= 12) and
  reads differently under them is refused unless ``dayfirst`` says which.
- Rows dated after today, or long after the rest of the data (:func:`late_dates_cutoff`), are
  refused unless ``allow_future_dates``; exact duplicate rows are kept (netting sums them)
  and counted in a warning.
- Timezone-aware timestamps are converted to UTC, then the zone is dropped.
- Numbers: ``decimal`` is the decimal mark; ``thousands``, if set, is removed first. With a
  decimal comma, a ``.`` in a number is an error unless it is the thousands separator.
- With ``price_col``, the amount of a row is quantity x price (invoice lines).
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import datetime as dt
import gzip
import hashlib
import io
import logging
import lzma
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError, first_line

log = logging.getLogger("crmvalue")

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

# ---- dates -------------------------------------------------------------------------------------

ISO_8601 = "ISO8601"
# The formats a non-ISO column may have; the one that reads every non-empty value is used.
# Day-first before month-first: the order only decides which one a message names first.
_DATE_PARTS = ("%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y")
DATE_FORMATS = tuple(d + t for d in _DATE_PARTS for t in ("", " %H:%M", " %H:%M:%S")) + ("%Y%m%d",)

# Each format is tried only on values of its exact shape, in both engines: pandas' and DuckDB's
# parsers disagree outside it ('20210104' as ISO, '2021-01-04T24:00', 2-digit years under %Y).
# Years are 1900-2099: a timestamp outside that is a typo, and pandas cannot hold most of them.
_YEAR = "(19|20)[0-9]{2}"
_FIELDS = {
    "%Y": _YEAR,
    "%m": "(0?[1-9]|1[0-2])",
    "%d": "(0?[1-9]|[12][0-9]|3[01])",
    "%H": "([01]?[0-9]|2[0-3])",
    "%M": "[0-5][0-9]",
    "%S": "[0-5][0-9]",
}
_ISO_SHAPE = (
    _YEAR + "-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    "([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{1,9})?)?(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?)?"
)


def _shape(fmt: str) -> str:
    if fmt == ISO_8601:
        return _ISO_SHAPE
    if fmt == "%Y%m%d":
        return _YEAR + "(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])"
    return "".join(_FIELDS.get(token, token if token == " " else f"[{token}]") for token in re.findall(r"%.|[^%]", fmt))


DATE_SHAPES = {fmt: _shape(fmt) for fmt in (ISO_8601, *DATE_FORMATS)}

FUTURE_LEEWAY_DAYS = 1  # "after today" is after today's UTC date plus a day: a shop east of UTC is ahead
LATE_GAP_DAYS = 365  # a gap before the last dates longer than this (and than the data before it) is a typo
LATE_TAIL_SHARE = 0.1  # ... when at most this share of the rows lies after it, more thinly spread than before it


def _order(fmt: str) -> str | None:
    """``"day"`` for day-first formats, ``"month"`` for month-first ones, None when the year leads."""
    if fmt.startswith("%Y") or fmt == ISO_8601:
        return None
    return "day" if fmt.index("%d") < fmt.index("%m") else "month"


def _twin(fmt: str) -> str:
    """The format with day and month swapped."""
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


@dataclass(frozen=True)
class DateResolution:
    """The one format a date column is read with, or why there is none."""

    format: str | None  # ISO_8601, one of DATE_FORMATS, the given format; None for timestamp columns
    given: bool = False
    problem: str | None = None  # "nofit": no format reads every value (format: the one that reads most);
    # "ambiguous": format and other both read every value, differently; "order": only format fits, not dayfirst
    other: str | None = None


def resolve_date_format(
    n_values: int,
    count: Callable[[str], int],
    differ: Callable[[str, str], bool],
    dayfirst: bool | None = None,
) -> DateResolution:
    """The format of a text column, from its ``n_values`` distinct non-empty values.

    ``count(fmt)`` is how many of those values ``fmt`` reads, ``differ(a, b)`` whether two
    formats that both read every value read any of them as different dates. Both engines
    answer these on the same distinct trimmed values, so they decide alike.
    """
    if n_values == 0 or count(ISO_8601) == n_values:
        return DateResolution(ISO_8601)
    whole = [fmt for fmt in DATE_FORMATS if count(fmt) == n_values]
    if dayfirst is not None:
        wanted = "day" if dayfirst else "month"
        allowed = [fmt for fmt in whole if _order(fmt) in (None, wanted)]
        if whole and not allowed:
            return DateResolution(whole[0], problem="order", other=_twin(whole[0]))
        whole = allowed
    if not whole:
        best = max((ISO_8601, *DATE_FORMATS), key=count)  # the first of the most
        return DateResolution(best, problem="nofit")
    for other in whole[1:]:
        if differ(whole[0], other):
            return DateResolution(whole[0], problem="ambiguous", other=other)
    return DateResolution(whole[0])


def _shown_value(value) -> str:
    return "is missing" if value is None or (not isinstance(value, str) and pd.isna(value)) else f"is {str(value)!r}"


def _date_error(source: str, name: str, count: int, at: str, value, resolution: DateResolution) -> CrmvalueError:
    what = _shown_value(value)
    hint = f" (expected format {resolution.format})" if resolution.given else " (set --date-format)"
    if resolution.problem == "nofit" and resolution.format != ISO_8601:
        return CrmvalueError(
            f"{source}: column '{name}' fits no single date format: {count} timestamps do not fit "
            f"{resolution.format}, the format that fits the most; first at {at}, which {what}{hint}"
        )
    return CrmvalueError(
        f"{source}: column '{name}' has {count} unparseable timestamps; first at {at}, which {what}{hint}"
    )


def _ambiguous_dates_error(source: str, name: str, resolution: DateResolution, examples) -> CrmvalueError:
    a, b = resolution.format, resolution.other
    shown = ", ".join(f"{at} {str(value)!r}" for at, value in examples)
    return CrmvalueError(
        f"{source}: column '{name}' is ambiguous: every date fits both {a} ({_order(a)} first) and {b} "
        f"({_order(b)} first), which read them differently, first at {shown}; "
        "set --dayfirst or --monthfirst (or --date-format)"
    )


def _date_order_error(source: str, name: str, resolution: DateResolution, dayfirst: bool, examples) -> CrmvalueError:
    shown = ", ".join(f"{at} {str(value)!r}" for at, value in examples)
    flag = "--dayfirst" if dayfirst else "--monthfirst"
    return CrmvalueError(
        f"{source}: column '{name}' is not {'day' if dayfirst else 'month'} first: only {resolution.format} "
        f"({_order(resolution.format)} first) reads every date, and {resolution.other} fails first at {shown}; "
        f"drop {flag}, or set --date-format"
    )


# ---- dates that cannot be right -------------------------------------------------------------------


@dataclass(frozen=True)
class LateDates:
    """Days after ``last_good`` are dated after today or long after the rest of the data."""

    last_good: int  # days since 1970-01-01
    reason: str  # "future" or "gap"
    detail: str  # for the message


def _day_text(day: int) -> str:
    return str(np.datetime64(int(day), "D"))


def today_utc() -> int:
    return int(np.datetime64(dt.datetime.now(dt.UTC).date(), "D").astype(np.int64))


def late_dates_cutoff(days: np.ndarray, rows: np.ndarray, today: int | None = None) -> LateDates | None:
    """Where implausible dates start, from the sorted distinct days and the rows on each.

    Two rules, the first day that breaks either starts the implausible tail:

    - *after today*: a day later than today's UTC date plus ``FUTURE_LEEWAY_DAYS``;
    - *long after the rest*: a gap between consecutive distinct days of more than
      ``LATE_GAP_DAYS`` days that is also longer than the span of the data before it, followed
      by at most ``LATE_TAIL_SHARE`` of the rows, spread more thinly (fewer rows per day of their
      span) than the rows before the gap: three rows in 2031-2032 after 2021-2023, not a shop
      that reopened after a long pause and went on selling.
    """
    today = today_utc() if today is None else today
    days = np.asarray(days, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    if len(days) == 0:
        return None
    found = None
    if len(days) > 1:
        gaps = np.diff(days)
        before = np.cumsum(rows)[:-1]
        after = rows.sum() - before
        span_before = days[:-1] - days[0] + 1
        span_after = days[-1] - days[1:] + 1
        tail = (
            (gaps > LATE_GAP_DAYS)
            & (gaps > days[:-1] - days[0])
            & (after <= LATE_TAIL_SHARE * (after + before))
            & (after * span_before < before * span_after)
        )  # thinner: after/span_after < before/span_before
        if tail.any():
            i = int(np.flatnonzero(tail)[0])
            found = LateDates(
                int(days[i]),
                "gap",
                f"long after the rest of the data: from {_day_text(days[i + 1])} on, {int(gaps[i])} days after the "
                f"previous date {_day_text(days[i])} (more than {LATE_GAP_DAYS} days and more than the "
                f"{int(days[i] - days[0])} days the data before it span)",
            )
    future = today + FUTURE_LEEWAY_DAYS
    if days[-1] > future and (found is None or future < found.last_good):
        found = LateDates(future, "future", f"after today ({_day_text(today)})")
    return found


def _rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def _late_dates_error(source: str, late: LateDates, count: int, at: str, value) -> CrmvalueError:
    return CrmvalueError(
        f"{source}: {_rows(count)} {'is' if count == 1 else 'are'} dated {late.detail}; "
        f"first at {at}, which {_shown_value(value)}. "
        "Fix the dates (a typo'd year?), or pass --allow-future-dates to keep them"
    )


def _late_dates_note(source: str, late: LateDates, count: int) -> str:
    return f"{source}: kept {_rows(count)} dated {late.detail} (--allow-future-dates)"


def _duplicates_note(source: str, count: int, with_quantity: bool) -> str:
    what = "customer, timestamp, amount and quantity" if with_quantity else "customer, timestamp and amount"
    return (
        f"{source}: {_rows(count)} {'repeats' if count == 1 else 'repeat'} an earlier row exactly (same {what}); "
        "they are kept and summed into their customer-day like any other rows: drop them first if they are a "
        "double export"
    )


def _dropped_ids_note(source: str, name: str, count: int) -> str:
    return f"{source}: dropped {_rows(count)} without a customer id in column '{name}' (--drop-missing-ids)"


def _missing_ids_error(source: str, name: str, count: int, at: str, kind: str, hint: bool) -> CrmvalueError:
    tail = " (--drop-missing-ids drops rows without a customer id)" if hint else ""
    return CrmvalueError(f"{source}: column '{name}' has {count} {kind} ids; first at {at}{tail}")


def _number_error(
    source: str, name: str, count: int, at: str, value, decimal: str = ".", thousands: str | None = None
) -> CrmvalueError:
    return CrmvalueError(
        f"{source}: column '{name}' has {count} missing or non-numeric values; first at {at}, which "
        f"{_shown_value(value)}{_number_hint(value, decimal, thousands)}"
    )


def _number_hint(value, decimal: str, thousands: str | None) -> str:
    """What to set when a number looks written in another convention."""
    text = str(value).strip() if isinstance(value, str) else ""
    if decimal == "." and thousands is None and re.fullmatch(r"[+-]?[0-9]+,[0-9]+", text):
        if re.fullmatch(r"[+-]?[0-9]{1,3}(,[0-9]{3})+", text):
            return " (set --decimal ',' if ',' is the decimal mark, or --thousands ',' if it separates thousands)"
        return " (set --decimal ',' if ',' is the decimal mark)"
    if decimal == "." and thousands is None and re.fullmatch(r"[+-]?[0-9]{1,3}(,[0-9]{3})+[.][0-9]+", text):
        return " (set --thousands ',' if ',' separates thousands)"
    if decimal != "." and "." in text and thousands != ".":
        return f" (with --decimal '{decimal}' a '.' is not a number; set --thousands '.' if it separates thousands)"
    return ""


# ---- how a source is read -----------------------------------------------------------------------

_SEPARATOR_NAMES = {"\\t": "\t", "tab": "\t", "TAB": "\t"}
_DELIMITERS = (",", ";", "\t", "|")  # what a header may turn out to be delimited by


@dataclass(frozen=True)
class ReadOptions:
    """How to read transactions: the columns, the CSV dialect and the input policies.

    ``sep`` None is ',' (a tab for .tsv); ``encoding`` None is UTF-8, or UTF-16 / UTF-8 when
    the file starts with that byte-order mark. ``price_col`` makes the amount quantity x price
    and needs ``quantity_col``. ``dayfirst`` settles a date column that fits both a day-first
    and a month-first format (True: day first, False: month first).
    """

    customer_col: str = "customer_id"
    date_col: str = "date"
    amount_col: str = "amount"
    quantity_col: str | None = None
    price_col: str | None = None
    date_format: str | None = None
    dayfirst: bool | None = None
    sep: str | None = None
    decimal: str = "."
    thousands: str | None = None
    encoding: str | None = None
    drop_missing_ids: bool = False
    allow_future_dates: bool = False

    def __post_init__(self) -> None:
        if self.sep is not None:
            sep = _SEPARATOR_NAMES.get(self.sep, self.sep)
            if len(sep) != 1 or sep in '"\r\n':
                raise CrmvalueError(f"--sep must be one character such as ';' or '\\t', not {self.sep!r}")
            object.__setattr__(self, "sep", sep)
        if self.decimal not in (".", ","):
            raise CrmvalueError(f"--decimal must be '.' or ',', not {self.decimal!r}")
        if self.thousands is not None and (
            len(self.thousands) != 1
            or self.thousands.isdigit()
            or self.thousands in "+-eE"
            or self.thousands == self.decimal
        ):
            raise CrmvalueError(
                f"--thousands must be one character other than the decimal mark {self.decimal!r}, "
                f"such as '.', ',', ' ' or \"'\", not {self.thousands!r}"
            )
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise CrmvalueError(
                    f"--encoding: unknown encoding {self.encoding!r}; try utf-8, latin-1, cp1252 or utf-16"
                ) from None
        if self.price_col is not None and self.quantity_col is None:
            raise CrmvalueError("--price-col needs --quantity-col: the amount of an invoice line is quantity x price")

    @property
    def value_col(self) -> str:
        """The column the amount is read from: the amount, or the unit price of invoice lines."""
        return self.price_col or self.amount_col

    @property
    def columns(self) -> list[str]:
        """The columns read, in the order they are checked."""
        return [self.customer_col, self.date_col, self.value_col] + ([self.quantity_col] if self.quantity_col else [])


def _column_flags(options: ReadOptions) -> str:
    if options.price_col:
        return "--customer-col/--date-col/--price-col/--quantity-col"
    return "--customer-col/--date-col/--amount-col"


def _missing_columns_error(
    source: str, missing: list[str], have, options: ReadOptions, header: str | None, sep: str | None
) -> CrmvalueError:
    """Missing columns: a header delimited by another character says so; otherwise the column flags."""
    other = other_delimiter(header, sep) if header is not None and sep is not None else None
    if other is not None:
        shown = "a tab" if other == "\t" else repr(other)
        flag = "'\\t'" if other == "\t" else repr(other)
        return CrmvalueError(
            f"{source}: the delimiter looks like {shown}, not {sep!r}: the header is {header!r}; set --sep {flag}"
            + (" (and --decimal ',' if the numbers have decimal commas)" if other == ";" else "")
        )
    names = ", ".join(repr(str(c)) for c in have)
    hint = _column_flags(options)
    if options.price_col is None and options.amount_col in missing:
        hint += "; invoice lines without an amount: --price-col with --quantity-col"
    return CrmvalueError(
        f"{source}: missing column {', '.join(repr(c) for c in missing)}; the columns are {names} (set {hint})"
    )


def other_delimiter(header: str, sep: str) -> str | None:
    """The delimiter a header line splits on best, if it is not ``sep`` and splits it better."""
    fields = {d: len(next(csv.reader([header], delimiter=d))) for d in _DELIMITERS}
    best = max(fields, key=fields.get)
    own = fields.get(sep, len(next(csv.reader([header], delimiter=sep))))
    return best if best != sep and fields[best] >= 2 and fields[best] > own else None


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
    dayfirst: bool | None = None,
    price_col: str | None = None,
    sep: str | None = None,
    decimal: str = ".",
    thousands: str | None = None,
    encoding: str | None = None,
    drop_missing_ids: bool = False,
    allow_future_dates: bool = False,
) -> Transactions:
    """Load transactions from a bundled dataset name, a CSV/Parquet path or a DataFrame.

    Parameters
    ----------
    source
        ``"cdnow"`` or ``"cdnow_sample"`` for the bundled CDNOW data (their own column names
        are used and the other arguments are ignored), a path to a ``.csv`` (any
        compression pandas reads) or ``.parquet`` file, or a pandas DataFrame.
    customer_col, date_col, amount_col, quantity_col
        Names of the columns in the source.
    price_col
        Unit price column of invoice lines: the amount is quantity x price (needs ``quantity_col``;
        ``amount_col`` is then not read).
    date_format
        A ``strftime`` format for the timestamps; ``None`` reads ISO 8601 or the one format of
        :data:`DATE_FORMATS` that reads every value (see :func:`resolve_date_format`).
    dayfirst
        For a date column that fits both a day-first and a month-first format: True reads it
        day first, False month first; None refuses it.
    sep, decimal, thousands, encoding
        The CSV dialect (see :class:`ReadOptions`).
    drop_missing_ids
        Drop rows without a customer id, with a warning, instead of refusing them.
    allow_future_dates
        Keep rows dated after today or long after the rest of the data (:func:`late_dates_cutoff`),
        with a warning, instead of refusing them.

    Warnings (dropped rows, exact duplicates, kept late dates) go to the ``crmvalue`` logger.
    """
    options = ReadOptions(
        customer_col=customer_col,
        date_col=date_col,
        amount_col=amount_col,
        quantity_col=quantity_col,
        price_col=price_col,
        date_format=date_format,
        dayfirst=dayfirst,
        sep=sep,
        decimal=decimal,
        thousands=thousands,
        encoding=encoding,
        drop_missing_ids=drop_missing_ids,
        allow_future_dates=allow_future_dates,
    )
    tx, notes = read_transactions(source, options)
    for note in notes:
        log.warning(note)
    return tx


def read_transactions(source: str | Path | pd.DataFrame, options: ReadOptions) -> tuple[Transactions, list[str]]:
    """:func:`load_transactions` with its options in one object, returning the warnings instead of logging them."""
    if isinstance(source, pd.DataFrame):
        digest = hashlib.sha256(pd.util.hash_pandas_object(source, index=False).to_numpy().tobytes()).hexdigest()
        frame, notes = _validate(source, "DataFrame", options, frame_row(source))
        return Transactions(frame, "DataFrame", digest), notes

    if isinstance(source, str) and source in BUNDLED:
        return _load_bundled(source, options)

    path = existing_file(source)
    raw, where = read_file(path, options)
    frame, notes = _validate(raw, str(path), options, where, path=path)
    return Transactions(frame, str(path), file_sha256(path)), notes


def existing_file(source: str | Path) -> Path:
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


def _load_bundled(name: str, options: ReadOptions) -> tuple[Transactions, list[str]]:
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
    frame, notes = _validate(
        raw,
        f"{name} ({path.name})",
        ReadOptions(quantity_col="quantity", date_format="%Y%m%d"),
        lambda i: f"line {i + 1 + header_lines}",
    )
    return Transactions(frame, name, file_sha256(path)), notes


def default_separator(path: Path) -> str:
    """',' , or a tab for .tsv (also .tsv.gz and the like)."""
    suffix = path.suffix.lower()
    inner = path.suffixes[-2].lower() if suffix in _COMPRESSION_SUFFIXES and len(path.suffixes) > 1 else suffix
    return "\t" if inner == ".tsv" else ","


def csv_encoding(path: Path, given: str | None = None) -> str:
    """The given encoding, else UTF-16 or UTF-8 from a byte-order mark, else UTF-8."""
    if given is not None:
        name = codecs.lookup(given).name
        return "utf-8-sig" if name == "utf-8" else name  # a UTF-8 BOM is never part of the header
    try:
        with _open_binary(path) as fh:
            head = fh.read(4)
    except Exception:  # unreadable: the reader says why
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8-sig"


def read_file(path: Path, options: ReadOptions | None = None) -> tuple[pd.DataFrame, Callable[[int], str]]:
    """The raw table (every CSV column as text) and how to name its data row ``i`` in a message."""
    options = options or ReadOptions()
    suffix = path.suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        try:
            raw = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise CrmvalueError(f"{path}: cannot be read as Parquet ({_first_line(exc)})") from None
        where = _parquet_row
    elif suffix in _CSV_SUFFIXES:
        sep = options.sep or default_separator(path)
        encoding = csv_encoding(path, options.encoding)
        try:
            raw = pd.read_csv(
                path,
                sep=sep,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                skipinitialspace=True,
                encoding=encoding,
            )
        except pd.errors.EmptyDataError:
            raise CrmvalueError(f"{path}: the file is empty") from None
        except UnicodeError as exc:
            raise _encoding_error(path, encoding, _first_line(exc)) from None
        except (
            pd.errors.ParserError,
            ValueError,
            OSError,
            EOFError,  # truncated .gz/.bz2/.xz
            zipfile.BadZipFile,
            lzma.LZMAError,
        ) as exc:
            header = header_line(path, encoding)
            if header is not None and other_delimiter(header, sep) is not None:
                raise _missing_columns_error(str(path), [], [], options, header, sep) from None
            raise CrmvalueError(f"{path}: cannot be read as CSV ({_first_line(exc)})") from None
        where = _csv_line_locator(path, sep, encoding)
    else:
        raise CrmvalueError(f"{path}: unsupported format '{suffix or path.name}'; use .csv or .parquet")
    if raw.empty:
        raise CrmvalueError(f"{path}: the file has no data rows")
    return raw, where


def _encoding_error(path: Path, encoding: str, reason: str) -> CrmvalueError:
    """Text that does not decode; for UTF-8 the first line that does not, the same for both engines."""
    utf8 = encoding in ("utf-8", "utf-8-sig")
    if utf8:
        reason = _first_undecodable_line(path) or reason
    return CrmvalueError(
        f"{path}: cannot be read as CSV ({reason}): it is not {'UTF-8' if utf8 else encoding} text; set its "
        "encoding with --encoding, e.g. --encoding latin-1 or --encoding cp1252"
    )


def _first_undecodable_line(path: Path) -> str | None:
    try:
        with _open_binary(path) as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return f"line {number} has the byte 0x{line[exc.start]:02x}"
    except Exception:  # only for the message
        return None
    return None


def header_line(path: Path, encoding: str = "utf-8-sig") -> str | None:
    """The first non-blank line of a text file, or None if it cannot be read."""
    try:
        with _open_text(path, encoding) as fh:
            for line in fh:
                if line.strip():
                    return line.rstrip("\r\n")
    except Exception:  # only for a hint in a message
        return None
    return None


def _first_line(exc: BaseException) -> str:
    return first_line(exc, limit=None)


def _parquet_row(i: int) -> str:
    return f"row {i} (counting from 0)"


def _csv_line_locator(path: Path, sep: str, encoding: str = "utf-8-sig") -> Callable[[int], str]:
    """Name data row ``i`` by the line of the file it starts on.

    Only called on the error path, so it rereads the file: blank lines (which pandas skips)
    and quoted fields holding line breaks make ``i + 2`` wrong.
    """

    def where(i: int) -> str:
        try:
            line = _csv_record_line(path, sep, i, encoding)
        except Exception:  # the line number is a courtesy; never hide the real error behind it
            line = None
        return f"line {line}" if line is not None else f"data row {i + 1}"

    return where


@contextlib.contextmanager
def _open_binary(path: Path) -> Iterator[BinaryIO]:
    """The decompressed bytes of a (possibly compressed) file."""
    suffix = path.suffix.lower()
    with contextlib.ExitStack() as stack:
        if suffix == ".gz":
            fh = stack.enter_context(gzip.open(path, "rb"))
        elif suffix == ".bz2":
            fh = stack.enter_context(bz2.open(path, "rb"))
        elif suffix == ".xz":
            fh = stack.enter_context(lzma.open(path, "rb"))
        elif suffix == ".zip":
            archive = stack.enter_context(zipfile.ZipFile(path))
            (member,) = archive.namelist()  # pandas reads a zip of exactly one file
            fh = stack.enter_context(archive.open(member))
        else:
            fh = stack.enter_context(open(path, "rb"))
        yield fh


@contextlib.contextmanager
def _open_text(path: Path, encoding: str = "utf-8-sig", errors: str = "replace") -> Iterator[io.TextIOBase]:
    with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding=encoding, errors=errors, newline="") as fh:
        yield fh


def _csv_record_line(path: Path, sep: str, i: int, encoding: str = "utf-8-sig") -> int | None:
    """The 1-based line on which data record ``i`` starts, counting records as pandas does."""
    with _open_text(path, encoding) as fh:
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


def frame_row(df: pd.DataFrame) -> Callable[[int], str]:
    index = df.index

    def where(i: int) -> str:
        return f"row {i} (index {_shown(index[i])})"

    return where


# ---- validation -----------------------------------------------------------------------------------


def _validate(
    raw: pd.DataFrame,
    source: str,
    options: ReadOptions,
    where: Callable[[int], str],
    path: Path | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Canonical columns of a raw table, and the warnings to give, in the order the DuckDB engine gives them."""
    if len(raw) == 0:
        raise CrmvalueError(f"{source}: no transactions (0 rows)")
    wanted = options.columns
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        is_csv = path is not None and path.suffix.lower() not in _PARQUET_SUFFIXES
        header = header_line(path, csv_encoding(path, options.encoding)) if is_csv else None
        sep = (options.sep or default_separator(path)) if is_csv else None
        raise _missing_columns_error(source, missing, raw.columns, options, header, sep)
    for c in wanted:
        count = int((raw.columns == c).sum())
        if count > 1:
            raise CrmvalueError(f"{source}: column {c!r} appears {count} times; rename or drop the duplicates")
    notes = []
    if options.drop_missing_ids:
        absent = _absent_ids(raw[options.customer_col])
        if absent.any():
            kept = np.flatnonzero(~absent)
            if len(kept) == 0:
                raise CrmvalueError(f"{source}: no row has a customer id in column '{options.customer_col}'")
            raw = raw.iloc[kept]
            where = _kept_rows(where, kept)
            notes.append(_dropped_ids_note(source, options.customer_col, int(absent.sum())))
    # checked in this order: ids, timestamps, amounts (or prices), quantities
    columns = {
        "customer_id": parse_customer_ids(
            raw[options.customer_col], source, options.customer_col, where, drop_hint=True
        ),
        "date": parse_timestamps(
            raw[options.date_col], source, options.date_col, options.date_format, where, options.dayfirst
        ),
        "amount": _numbers(
            raw[options.value_col], source, options.value_col, where, options.decimal, options.thousands
        ),
    }
    if options.quantity_col:
        columns["quantity"] = _numbers(
            raw[options.quantity_col], source, options.quantity_col, where, options.decimal, options.thousands
        )
    if options.price_col:  # invoice lines: quantity x unit price
        columns["amount"] = columns["amount"] * columns["quantity"]
    out = pd.DataFrame(columns).reset_index(drop=True)
    notes += _plausibility(out, raw[options.date_col], source, options, where)
    return out, notes


def _kept_rows(where: Callable[[int], str], kept: np.ndarray) -> Callable[[int], str]:
    return lambda i: where(int(kept[i]))


def _absent_ids(col: pd.Series) -> np.ndarray:
    """No customer id: missing, or only whitespace."""
    text = col.astype("string").str.strip()
    return (col.isna() | (text == "").fillna(True)).to_numpy(dtype=bool)


def _plausibility(
    out: pd.DataFrame, dates: pd.Series, source: str, options: ReadOptions, where: Callable[[int], str]
) -> list[str]:
    """Refuse (or, if allowed, count) rows dated implausibly late; count exact duplicates."""
    notes = []
    day = out["date"].to_numpy().astype("datetime64[D]").astype(np.int64)
    distinct, per_day = np.unique(day, return_counts=True)
    late = late_dates_cutoff(distinct, per_day)
    if late is not None:
        is_late = day > late.last_good
        count = int(is_late.sum())
        if not options.allow_future_dates:
            i = _first_bad(is_late)
            raise _late_dates_error(source, late, count, where(i), _date_shown(dates.iloc[i], day[i]))
        notes.append(_late_dates_note(source, late, count))
    key = out.assign(date=out["date"].dt.floor("us"))  # DuckDB keeps microseconds
    duplicates = int(key.duplicated().sum())
    if duplicates:
        notes.append(_duplicates_note(source, duplicates, "quantity" in out.columns))
    return notes


def _date_shown(value, day: int) -> str:
    """A date in a message: the text of a text column, the day of a timestamp column."""
    if isinstance(value, str):
        return value.strip()
    return _day_text(day)


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


_FLOAT_LIKE_ID = r"^([0-9]+)\.0+$"  # "17850.0" -> "17850": the same rule in engine.py (regexp_replace)


def parse_customer_ids(
    col: pd.Series, source: str, name: str, where: Callable[[int], str], *, drop_hint: bool = False
) -> pd.Series:
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
        fractional = col.to_numpy(dtype=float, na_value=0.0) % 1 != 0
        if fractional.any():
            bad = _first_bad(fractional)
            raise CrmvalueError(
                f"{source}: column '{name}' has a non-integer id at {where(bad)}: {_shown(col.iloc[bad])}"
            )
        col = col.astype("Int64")
    if missing.any():
        bad = _first_bad(missing)
        raise _missing_ids_error(source, name, int(missing.sum()), where(bad), "missing", drop_hint)
    ids = col.astype(str).str.strip()
    empty = (ids == "").to_numpy()
    if empty.any():
        bad = _first_bad(empty)
        raise _missing_ids_error(source, name, int(empty.sum()), where(bad), "empty", drop_hint)
    dotted = ids.str.contains(".", regex=False).to_numpy(dtype=bool)
    if dotted.any():
        ids = ids.copy()
        ids[dotted] = ids[dotted].str.replace(_FLOAT_LIKE_ID, r"\1", regex=True)
    return ids.astype(object)


def _date_counts(values: pd.Series) -> Callable[[str], int]:
    """How many of ``values`` (distinct, non-empty text) each format reads; computed when asked."""
    cache: dict[str, int] = {}

    def count(fmt: str) -> int:
        if fmt not in cache:
            cache[fmt] = int((~np.isnat(_parse_dates(values, fmt))).sum())
        return cache[fmt]

    return count


def _parse_dates(values: pd.Series, fmt: str, given: bool = False) -> np.ndarray:
    """Naive UTC ``datetime64[ns]`` of text values under one format (NaT where it does not read)."""
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[ns]")
    mask = values.notna() if given else values.str.fullmatch(DATE_SHAPES[fmt])
    mask = mask.fillna(False).to_numpy(dtype=bool)
    if mask.any():
        # utc=True: a %z format over several offsets raises without it instead of coercing
        out[mask] = _naive_ns(pd.to_datetime(values[mask], format=fmt, errors="coerce", utc=True))
    return out


_NS_RANGE = (np.datetime64("1677-09-22"), np.datetime64("2262-04-11"))  # what datetime64[ns] holds, to the day


def _naive_ns(stamps: pd.Series) -> np.ndarray:
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    values = stamps.to_numpy()
    inside = (values >= _NS_RANGE[0]) & (values < _NS_RANGE[1])
    return np.where(inside, values, np.datetime64("NaT")).astype("datetime64[ns]")


def parse_timestamps(
    col: pd.Series,
    source: str,
    name: str,
    date_format: str | None,
    where: Callable[[int], str],
    dayfirst: bool | None = None,
) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        stamps = _naive_ns(col)
        resolution = DateResolution(None)
    else:
        text = col.astype("string").str.strip()
        codes, uniques = pd.factorize(text)  # each distinct text is parsed once
        values = pd.Series(uniques, dtype="string")
        if date_format:
            resolution = DateResolution(date_format, given=True)
        else:
            present = values[values != ""].reset_index(drop=True)
            resolution = resolve_date_format(
                len(present),
                _date_counts(present),
                lambda a, b: bool((_parse_dates(present, a) != _parse_dates(present, b)).any()),
                dayfirst,
            )
            if resolution.problem in ("ambiguous", "order"):
                raise _date_problem(resolution, values, codes, col, source, name, where, dayfirst)
        parsed = _parse_dates(values, resolution.format, resolution.given)
        stamps = np.append(parsed, np.datetime64("NaT"))[codes]  # code -1 (missing) is the NaT at the end
    bad = np.isnat(stamps)
    if bad.any():
        i = _first_bad(bad)
        raise _date_error(source, name, int(bad.sum()), where(i), col.iloc[i], resolution)
    return pd.Series(stamps, index=col.index, dtype="datetime64[ns]")


_EXAMPLES = 3  # rows a date message shows


def _date_problem(
    resolution: DateResolution,
    values: pd.Series,
    codes: np.ndarray,
    col: pd.Series,
    source: str,
    name: str,
    where: Callable[[int], str],
    dayfirst: bool | None,
) -> CrmvalueError:
    """The ambiguity (or wrong --dayfirst) with the first rows that show it."""
    nat = np.datetime64("NaT")
    a = np.append(_parse_dates(values, resolution.format), nat)[codes]
    b = np.append(_parse_dates(values, resolution.other), nat)[codes]
    if resolution.problem == "ambiguous":
        shows = ~np.isnat(a) & (a != b)
    else:
        shows = ~np.isnat(a) & np.isnat(b)
    examples = [(where(int(i)), str(col.iloc[int(i)]).strip()) for i in np.flatnonzero(shows)[:_EXAMPLES]]
    if resolution.problem == "ambiguous":
        return _ambiguous_dates_error(source, name, resolution, examples)
    return _date_order_error(source, name, resolution, bool(dayfirst), examples[:1])


def _numbers(
    col: pd.Series,
    source: str,
    name: str,
    where: Callable[[int], str],
    decimal: str = ".",
    thousands: str | None = None,
) -> pd.Series:
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        numbers = col.astype("float64")
    else:
        text = col.astype("string").str.strip()
        if thousands is not None:
            text = text.str.replace(thousands, "", regex=False)
        if decimal != ".":
            # with a decimal comma a '.' is neither mark: refuse '1.234' rather than read 1.234
            text = text.mask(text.str.contains(".", regex=False).fillna(False)).str.replace(decimal, ".", regex=False)
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = ~np.isfinite(numbers.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        i = _first_bad(bad)
        raise _number_error(source, name, int(bad.sum()), where(i), col.iloc[i], decimal, thousands)
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
        raw, name, where = source, "customer table (DataFrame)", frame_row(source)
    else:
        path = existing_file(source)
        raw, where = read_file(path)
        name = str(path)
    if id_col not in raw.columns:
        raise CrmvalueError(
            f"{name}: no customer id column '{id_col}'; the columns are {', '.join(map(str, raw.columns))}"
        )
    ids = parse_customer_ids(raw[id_col].reset_index(drop=True), name, id_col, where)
    duplicated = ids.duplicated().to_numpy()
    if duplicated.any():
        bad = _first_bad(duplicated)
        raise CrmvalueError(
            f"{name}: column '{id_col}' repeats the id {_shown(ids.iloc[bad])} at {where(bad)}; one row per customer"
        )
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
