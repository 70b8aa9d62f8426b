"""Transactions netted per customer-day: the compact table every step after loading works from.

Every feature of the package is defined on *customer-days* (see :mod:`crmvalue.features`):
the transactions of one customer on one calendar day are netted, and a day that holds a
return and nets to <= 0 is not a purchase. So the raw rows are needed only once, to build
one row per customer-day with its net amount, whether it held a return, how many rows it
had and (optionally) its quantity. Revenue windows sum the net amounts of *every* day,
purchase or not, which is the sum of the rows: returns on a day of their own still count.

The table is built either from a validated pandas frame (:func:`customer_days`, here) or
by DuckDB straight from a file (:mod:`crmvalue.engine`), with the same arrays either way:
customer codes into a sorted index of text ids, int32 days since 1970-01-01, float64 nets.
A day of three or more rows is netted by ``numpy.add.reduceat`` over its rows in file order
on both paths, so both give the same floats to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PurchaseDays:
    """Purchase days as parallel arrays, sorted by customer code, then day."""

    ids: pd.Index  # customer ids, indexed by code, sorted; the input's dtype
    customer: np.ndarray  # code of each purchase day
    day: np.ndarray  # days since 1970-01-01
    amount: np.ndarray  # net amount of the day
    rows_after_end: int
    customers_seen: int | None = None  # customers with a row on or before the end (default: every id)
    quantity: np.ndarray | None = None  # quantity of each purchase day, when the data name one


@dataclass(frozen=True)
class CustomerDays:
    """One row per customer-day with at least one transaction, sorted by customer code, then day."""

    ids: pd.Index  # customer ids (text) by code, sorted
    customer: np.ndarray  # int32 code of each customer-day
    day: np.ndarray  # int32 days since 1970-01-01
    amount: np.ndarray  # float64 net amount of the day, returns included
    returned: np.ndarray  # bool: the day holds a negative amount
    rows: np.ndarray  # int32 transactions on the day
    quantity: np.ndarray | None = None  # float64 quantity of the day, when the data name one
    source: str = "DataFrame"
    sha256: str = ""
    # the purchase days up to an end, by end day: the arrays never change, so each end is filtered once
    _purchases: dict[int | None, PurchaseDays] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.customer)

    @property
    def transactions(self) -> int:
        """Rows of the source, before netting."""
        return int(self.rows.sum(dtype=np.int64))

    @property
    def purchase(self) -> np.ndarray:
        """A day is a purchase unless it holds a return and nets to <= 0."""
        return ~(self.returned & (self.amount <= 0))

    @property
    def first_date(self) -> pd.Timestamp:
        return pd.Timestamp(int(self.day.min()), unit="D")

    @property
    def last_date(self) -> pd.Timestamp:
        return pd.Timestamp(int(self.day.max()), unit="D")

    def with_source(self, source: str, sha256: str) -> CustomerDays:
        return replace(self, source=source, sha256=sha256)

    def purchase_days(self, last_day: int | None = None) -> PurchaseDays:
        """The purchase days on or before day number ``last_day`` (every one if None), with what the end left out.

        Computed once per end and kept: the pipeline asks for the same end several times. The arrays are
        read-only, as they are shared between the callers.
        """
        cached = self._purchases.get(last_day)
        if cached is not None:
            return cached
        keep = self.purchase
        rows_after_end, seen = 0, len(self.ids)
        if last_day is not None:
            in_window = self.day <= last_day
            rows_after_end = int(self.rows[~in_window].sum(dtype=np.int64))
            if rows_after_end:
                seen = int(np.count_nonzero(np.bincount(self.customer[in_window], minlength=len(self.ids))))
                keep &= in_window
        customer, day, amount = self.customer[keep], self.day[keep], self.amount[keep]
        quantity = None if self.quantity is None else self.quantity[keep]
        for array in (customer, day, amount, quantity):
            if array is not None:
                array.flags.writeable = False
        days = PurchaseDays(self.ids, customer, day, amount, rows_after_end, seen, quantity)
        self._purchases[last_day] = days
        return days


def day_number(value) -> int:
    """Days since 1970-01-01 of a date or timestamp's calendar day."""
    return int(np.datetime64(pd.Timestamp(value).date(), "D").astype(np.int64))


def customer_days(transactions: pd.DataFrame | CustomerDays) -> CustomerDays:
    """Net canonical transactions (``customer_id, date, amount[, quantity]``) per customer-day.

    A :class:`CustomerDays` is returned as it is. One stable sort of an int64 (customer, day)
    key and ``reduceat``: grouping by a composite integer key instead of by (string id,
    timestamp) is several times faster than a pandas groupby at tens of millions of rows.
    """
    if isinstance(transactions, CustomerDays):
        return transactions
    day = transactions["date"].to_numpy().astype("datetime64[D]").astype(np.int64)
    amount = transactions["amount"].to_numpy(dtype=float)
    codes, ids = pd.factorize(transactions["customer_id"], sort=True)
    quantity = transactions["quantity"].to_numpy(dtype=float) if "quantity" in transactions.columns else None
    if len(day) == 0:
        empty = np.array([], dtype=np.int32)
        return CustomerDays(
            pd.Index(ids),
            empty,
            empty,
            np.array([], float),
            np.array([], bool),
            empty,
            None if quantity is None else np.array([], float),
        )
    first_day = day.min()
    span = np.int64(day.max() - first_day + 1)
    key = codes.astype(np.int64) * span + (day - first_day)
    order = np.argsort(key, kind="stable")
    key, amount = key[order], amount[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    rows = np.diff(np.r_[starts, len(key)]).astype(np.int32)
    net = np.add.reduceat(amount, starts)
    returned = np.minimum.reduceat(amount, starts) < 0
    if quantity is not None:
        quantity = np.add.reduceat(quantity[order], starts)
    key = key[starts]
    return CustomerDays(
        ids=pd.Index(ids),
        customer=(key // span).astype(np.int32),
        day=(key % span + first_day).astype(np.int32),
        amount=net,
        returned=returned,
        rows=rows,
        quantity=quantity,
    )


OBSERVATION_GAP_WARN_DAYS = 90  # an observation end this far past the last transaction reads as everyone's silence


def check_modellable(days: CustomerDays) -> None:
    """Refuse data no purchase model can learn from, with a message that says what they are.

    - every transaction on one calendar day: there is no repeat behaviour over time to see;
    - all returns: no customer-day is a purchase (each holds a negative amount and nets to <= 0).
    """
    from crmvalue.errors import CrmvalueError

    if len(days) == 0:
        return
    if days.first_date == days.last_date:
        raise CrmvalueError(
            f"{days.source}: single-day data: all {days.transactions:,} transactions are on {days.first_date.date()}; "
            "the models learn from purchases spread over time and need data from more than one day"
        )
    if not days.purchase.any():
        raise CrmvalueError(
            f"{days.source}: the data are all returns: every customer-day holds a negative amount and nets to <= 0, "
            "so no customer has a purchase to model (if your export writes sales as negative amounts, flip their sign)"
        )


def observation_gap_warning(last_date, observation_end) -> str | None:
    """A warning when the observation end is more than ``OBSERVATION_GAP_WARN_DAYS`` after the last transaction."""
    gap = (pd.Timestamp(observation_end).normalize() - pd.Timestamp(last_date).normalize()).days
    if gap <= OBSERVATION_GAP_WARN_DAYS:
        return None
    return (
        f"the observation end {pd.Timestamp(observation_end).date()} is {gap} days after the last transaction "
        f"{pd.Timestamp(last_date).date()}: the models read those days as every customer's silence; "
        "set --observation-end to the date the export was taken"
    )
