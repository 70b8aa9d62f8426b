"""Load transactions into netted customer-days with pandas or, for large files, with DuckDB.

``data.engine`` chooses:

- ``pandas``: :func:`crmvalue.data.load_transactions` reads and validates every row into a
  DataFrame, then :func:`crmvalue.customer_days.customer_days` nets it. Peak memory grows
  with the rows (about 1 GB per 5 million transactions with text ids).
- ``duckdb``: DuckDB scans the CSV or Parquet file, validates the same things, nets each
  customer-day in SQL and hands over only the netted days: int32 customer codes and days,
  float64 nets. The raw rows never reach pandas; DuckDB spills to disk past its memory limit.
- ``auto`` (the default): DuckDB for CSV/Parquet files of ``AUTO_DUCKDB_BYTES`` or more,
  pandas otherwise (and always for DataFrames and the bundled CDNOW data).

Both engines give the same customer-days to the last bit, so every later number is the same:
a day of one or two rows sums the same in any order, and a day of three or more is re-netted
from its rows in file order with ``numpy.add.reduceat``, as the pandas path does.

Both read a date column with one format decided from its distinct values by
:func:`crmvalue.data.resolve_date_format`; each candidate format is tried only on values of its
exact shape (``crmvalue.data.DATE_SHAPES``), where pandas' and DuckDB's parsers agree. Files in an
encoding other than UTF-8 are decoded by Python into a temporary UTF-8 copy, as pandas decodes
them. What differs: DuckDB reads plain or gzip-compressed CSV only (pandas also reads .bz2, .xz
and .zip), and a message about a file DuckDB cannot parse quotes DuckDB's reason.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import pandas as pd

from crmvalue.customer_days import CustomerDays, check_modellable, customer_days
from crmvalue.data.files import BUNDLED, existing_file
from crmvalue.data.options import ReadOptions
from crmvalue.data.transactions import read_transactions
from crmvalue.engine.duckdb_path import DUCKDB_MEMORY_LIMIT, duckdb_customer_days, duckdb_days, duckdb_format
from crmvalue.errors import CrmvalueError

__all__ = [
    "AUTO_DUCKDB_BYTES",
    "DUCKDB_MEMORY_LIMIT",
    "ENGINES",
    "Engine",
    "choose_engine",
    "duckdb_customer_days",
    "load_customer_days",
    "read_customer_days",
]


log = logging.getLogger("crmvalue")

Engine = Literal["auto", "pandas", "duckdb"]
ENGINES = ("auto", "pandas", "duckdb")
AUTO_DUCKDB_BYTES = 100 * 2**20  # ~2-4 million CSV rows: below it pandas is as fast and reads more date formats


def load_customer_days(
    source: str | Path | pd.DataFrame,
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str = "amount",
    quantity_col: str | None = None,
    date_format: str | None = None,
    engine: Engine = "auto",
    dayfirst: bool | None = None,
    price_col: str | None = None,
    sep: str | None = None,
    decimal: str = ".",
    thousands: str | None = None,
    encoding: str | None = None,
    drop_missing_ids: bool = False,
    allow_future_dates: bool = False,
) -> CustomerDays:
    """Netted customer-days of a source, with the engine ``engine`` picks (see the module docstring).

    Takes what :func:`crmvalue.data.load_transactions` takes and fails with its messages; then
    refuses data no model can learn from (:func:`crmvalue.customer_days.check_modellable`).
    Warnings go to the ``crmvalue`` logger once every check has passed.
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
    return read_customer_days(source, options, engine)


def read_customer_days(
    source: str | Path | pd.DataFrame, options: ReadOptions, engine: Engine = "auto"
) -> CustomerDays:
    """:func:`load_customer_days` with its reading options in one object."""
    if choose_engine(source, engine) == "duckdb":
        days, notes = duckdb_days(Path(source), options)
    else:
        tx, notes = read_transactions(source, options)
        days = customer_days(tx.frame).with_source(tx.source, tx.sha256)
    check_modellable(days)
    for note in notes:
        log.warning(note)
    return days


def choose_engine(source, engine: Engine = "auto") -> str:
    """``"pandas"`` or ``"duckdb"`` for a source and the configured ``data.engine``."""
    if engine not in ENGINES:
        raise CrmvalueError(f"data.engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if isinstance(source, pd.DataFrame) or (isinstance(source, str) and source in BUNDLED):
        return "pandas"  # already in memory, or small
    path = existing_file(source)
    readable = duckdb_format(path) is not None
    if engine == "duckdb":
        if not readable:
            raise CrmvalueError(
                f"{path}: the duckdb engine reads .csv, .tsv, .txt (plain or .gz) and .parquet files; "
                "set data.engine: pandas for other formats"
            )
        return "duckdb"
    if engine == "auto" and readable and path.stat().st_size >= AUTO_DUCKDB_BYTES:
        return "duckdb"
    return "pandas"
