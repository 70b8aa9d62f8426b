"""Validated transactions: the loaders of files, DataFrames and the bundled CDNOW data."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crmvalue.data.dates import day_text, late_dates_cutoff, late_dates_error, late_dates_note, rows_text
from crmvalue.data.files import (
    BUNDLED,
    PARQUET_SUFFIXES,
    bundled_path,
    csv_encoding,
    default_separator,
    existing_file,
    file_sha256,
    header_line,
    read_file,
)
from crmvalue.data.options import ReadOptions, missing_columns_error
from crmvalue.data.parse import first_bad, frame_row, parse_customer_ids, parse_numbers, parse_timestamps
from crmvalue.errors import CrmvalueError

log = logging.getLogger("crmvalue")


CANONICAL = ("customer_id", "date", "amount")


def duplicates_note(source: str, count: int, with_quantity: bool) -> str:
    what = "customer, timestamp, amount and quantity" if with_quantity else "customer, timestamp and amount"
    return (
        f"{source}: {rows_text(count)} {'repeats' if count == 1 else 'repeat'} an earlier row exactly (same {what}); "
        "they are kept and summed into their customer-day like any other rows: drop them first if they are a "
        "double export"
    )


def dropped_ids_note(source: str, name: str, count: int) -> str:
    return f"{source}: dropped {rows_text(count)} without a customer id in column '{name}' (--drop-missing-ids)"


@dataclass(frozen=True)
class Transactions:
    """Validated transactions in canonical columns, with where they came from."""

    frame: pd.DataFrame
    source: str
    sha256: str


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
        header, sep = None, None
        if path is not None and path.suffix.lower() not in PARQUET_SUFFIXES:
            header = header_line(path, csv_encoding(path, options.encoding))
            sep = options.sep or default_separator(path)
        raise missing_columns_error(source, missing, raw.columns, options, header, sep)
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
            notes.append(dropped_ids_note(source, options.customer_col, int(absent.sum())))
    # checked in this order: ids, timestamps, amounts (or prices), quantities
    columns = {
        "customer_id": parse_customer_ids(
            raw[options.customer_col], source, options.customer_col, where, drop_hint=True
        ),
        "date": parse_timestamps(
            raw[options.date_col], source, options.date_col, options.date_format, where, options.dayfirst
        ),
        "amount": parse_numbers(
            raw[options.value_col], source, options.value_col, where, options.decimal, options.thousands
        ),
    }
    if options.quantity_col:
        columns["quantity"] = parse_numbers(
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
            i = first_bad(is_late)
            raise late_dates_error(source, late, count, where(i), _date_shown(dates.iloc[i], day[i]))
        notes.append(late_dates_note(source, late, count))
    key = out.assign(date=out["date"].dt.floor("us"))  # DuckDB keeps microseconds
    duplicates = int(key.duplicated().sum())
    if duplicates:
        notes.append(duplicates_note(source, duplicates, "quantity" in out.columns))
    return notes


def _date_shown(value, day: int) -> str:
    """A date in a message: the text of a text column, the day of a timestamp column."""
    if isinstance(value, str):
        return value.strip()
    return day_text(day)
