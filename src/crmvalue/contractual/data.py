"""A subscriptions table: one row per subscriber, its start, its end (empty while active) and an optional fee.

Read with the transaction reader's own pieces (:func:`crmvalue.data.files.read_file`, the parsers of
:mod:`crmvalue.data.parse`), so the CSV dialect, the date formats and the messages are the same: every bad
input is one :class:`~crmvalue.errors.CrmvalueError` line naming the file, the column and the first bad row.

One subscription per id: a subscriber who came back is a new id (or drop the older row); a repeated id is
refused, since the sBG counts each subscriber's renewals once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crmvalue.data.files import existing_file, file_sha256, read_file
from crmvalue.data.options import ReadOptions
from crmvalue.data.parse import first_bad, frame_row, parse_customer_ids, parse_numbers, parse_timestamps, shown
from crmvalue.errors import CrmvalueError


@dataclass(frozen=True)
class SubscriptionColumns:
    """Where the table's columns are and how its text is read (the run's config, or ``predict``'s overrides)."""

    customer_col: str = "customer_id"
    start_col: str = "start"
    end_col: str = "end"
    fee_col: str | None = None
    date_format: str | None = None
    dayfirst: bool | None = None
    sep: str | None = None
    decimal: str = "."
    thousands: str | None = None
    encoding: str | None = None

    @classmethod
    def from_config(cls, cfg) -> SubscriptionColumns:
        """From an :class:`~crmvalue.config.ExperimentConfig` (``data.*`` and ``subscriptions.*``)."""
        d, s = cfg.data, cfg.subscriptions
        return cls(
            customer_col=d.customer_col,
            start_col=s.start_col,
            end_col=s.end_col,
            fee_col=s.fee_col,
            date_format=d.date_format,
            dayfirst=d.dayfirst,
            sep=d.sep,
            decimal=d.decimal,
            thousands=d.thousands,
            encoding=d.encoding,
        )

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Subscriptions:
    """Validated subscriptions: ``frame`` has ``customer_id`` (text), ``start``, ``end`` (NaT while active), days
    as ``datetime64[ns]`` at midnight, and ``fee`` when the table has one."""

    frame: pd.DataFrame
    source: str
    sha256: str

    @property
    def has_fee(self) -> bool:
        return "fee" in self.frame.columns

    @property
    def last_date(self) -> pd.Timestamp:
        """The latest start or end in the table: the default observation end."""
        return pd.Timestamp(pd.concat([self.frame["start"], self.frame["end"]]).max())

    @property
    def first_date(self) -> pd.Timestamp:
        return pd.Timestamp(self.frame["start"].min())


def load_subscriptions(source: str | Path | pd.DataFrame, columns: SubscriptionColumns) -> Subscriptions:
    """Read and validate a subscriptions table from a ``.csv`` / ``.parquet`` path or a DataFrame."""
    if isinstance(source, pd.DataFrame):
        digest = hashlib.sha256(pd.util.hash_pandas_object(source, index=False).to_numpy().tobytes()).hexdigest()
        return Subscriptions(_validated(source, "DataFrame", columns, frame_row(source)), "DataFrame", digest)
    path = existing_file(source)
    options = ReadOptions(sep=columns.sep, encoding=columns.encoding, decimal=columns.decimal)
    raw, where = read_file(path, options)
    return Subscriptions(_validated(raw, str(path), columns, where), str(path), file_sha256(path))


def _validated(raw: pd.DataFrame, source: str, c: SubscriptionColumns, where: Callable[[int], str]) -> pd.DataFrame:
    if len(raw) == 0:
        raise CrmvalueError(f"{source}: no subscriptions (0 rows)")
    wanted = [c.customer_col, c.start_col, c.end_col] + ([c.fee_col] if c.fee_col else [])
    missing = [name for name in wanted if name not in raw.columns]
    if missing:
        have = ", ".join(repr(str(name)) for name in raw.columns)
        raise CrmvalueError(
            f"{source}: missing column {', '.join(repr(m) for m in missing)}; the columns are {have} "
            "(set --customer-col/--start-col/--end-col/--fee-col, or --sep if the delimiter is another)"
        )
    for name in wanted:
        count = int((raw.columns == name).sum())
        if count > 1:
            raise CrmvalueError(f"{source}: column {name!r} appears {count} times; rename or drop the duplicates")
    raw = raw.reset_index(drop=True)
    ids = parse_customer_ids(raw[c.customer_col], source, c.customer_col, where)
    _refuse_repeated_ids(ids, source, c.customer_col, where)
    start = parse_timestamps(raw[c.start_col], source, c.start_col, c.date_format, where, c.dayfirst).dt.floor("D")
    end = _optional_dates(raw[c.end_col], source, c.end_col, c, where)
    before = (end < start).to_numpy()
    if before.any():
        i = first_bad(before)
        raise CrmvalueError(
            f"{source}: {_count(int(before.sum()), 'subscription ends', 'subscriptions end')} before it starts; "
            f"first at {where(i)}, where "
            f"column '{c.end_col}' is {end.iloc[i].date()} and column '{c.start_col}' is {start.iloc[i].date()}"
        )
    frame = pd.DataFrame({"customer_id": ids, "start": start, "end": end})
    if c.fee_col:
        fee = parse_numbers(raw[c.fee_col], source, c.fee_col, where, c.decimal, c.thousands)
        negative = (fee < 0).to_numpy()
        if negative.any():
            i = first_bad(negative)
            raise CrmvalueError(
                f"{source}: column '{c.fee_col}' has {_count(int(negative.sum()), 'negative fee', 'negative fees')}; "
                f"first at {where(i)}: "
                f"{shown(raw[c.fee_col].iloc[i])}"
            )
        frame["fee"] = fee.to_numpy(dtype=float)
    return frame


def _refuse_repeated_ids(ids: pd.Series, source: str, name: str, where: Callable[[int], str]) -> None:
    repeated = ids.duplicated(keep="first").to_numpy()
    if repeated.any():
        i = first_bad(repeated)
        first = int(np.flatnonzero((ids == ids.iloc[i]).to_numpy())[0])
        raise CrmvalueError(
            f"{source}: column '{name}' repeats {_count(int(repeated.sum()), 'id', 'ids')}; first at {where(i)}: {ids.iloc[i]!r} "
            f"(also at {where(first)}); one row per subscriber: give a returning subscriber a new id"
        )


def _optional_dates(
    col: pd.Series, source: str, name: str, c: SubscriptionColumns, where: Callable[[int], str]
) -> pd.Series:
    """The end dates: empty (missing or blank) is NaT, an active subscription; the rest must parse."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        present = np.flatnonzero(col.notna().to_numpy(dtype=bool))
    else:
        text = col.astype("string").str.strip()
        present = np.flatnonzero((text.notna() & (text != "")).fillna(False).to_numpy(dtype=bool))
    out = pd.Series(pd.NaT, index=col.index, dtype="datetime64[ns]")
    if len(present):
        parsed = parse_timestamps(
            col.iloc[present].reset_index(drop=True),
            source,
            name,
            c.date_format,
            lambda i: where(int(present[i])),
            c.dayfirst,
        )
        out.iloc[present] = parsed.dt.floor("D").to_numpy()
    return out


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"
