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

from crmvalue.data.attributes import load_customer_attributes
from crmvalue.data.dates import (
    DATE_FORMATS,
    DATE_SHAPES,
    FUTURE_LEEWAY_DAYS,
    ISO_8601,
    LATE_GAP_DAYS,
    LATE_TAIL_SHARE,
    DateResolution,
    LateDates,
    late_dates_cutoff,
    resolve_date_format,
    today_utc,
)
from crmvalue.data.files import (
    BUNDLED,
    CSV_SUFFIXES,
    PARQUET_SUFFIXES,
    bundled_path,
    csv_encoding,
    default_separator,
    existing_file,
    file_sha256,
    header_line,
    read_file,
)
from crmvalue.data.options import ReadOptions, other_delimiter
from crmvalue.data.parse import frame_row, parse_customer_ids, parse_timestamps
from crmvalue.data.transactions import CANONICAL, Transactions, load_transactions, log, read_transactions

__all__ = [
    "BUNDLED",
    "CANONICAL",
    "CSV_SUFFIXES",
    "DATE_FORMATS",
    "DATE_SHAPES",
    "FUTURE_LEEWAY_DAYS",
    "ISO_8601",
    "LATE_GAP_DAYS",
    "LATE_TAIL_SHARE",
    "PARQUET_SUFFIXES",
    "DateResolution",
    "LateDates",
    "ReadOptions",
    "Transactions",
    "bundled_path",
    "csv_encoding",
    "default_separator",
    "existing_file",
    "file_sha256",
    "frame_row",
    "header_line",
    "late_dates_cutoff",
    "load_customer_attributes",
    "load_transactions",
    "log",
    "other_delimiter",
    "parse_customer_ids",
    "parse_timestamps",
    "read_file",
    "read_transactions",
    "resolve_date_format",
    "today_utc",
]
