"""Retention and cohorts: per calendar month or quarter, active, new and retained customers, and the
cohort matrix (the retention part of seed 003; its revenue-cost method is :mod:`.revenue_cost`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from crmvalue.analyses.common import Analysis, netted_days
from crmvalue.customer_days import CustomerDays, day_number
from crmvalue.errors import CrmvalueError
from crmvalue.schema import PLOT_COHORT_RETENTION, PLOT_RETENTION, Column, analysis_table

COLUMNS: tuple[Column, ...] = ()  # per period, not per customer: tables only
ANALYSIS = Analysis(
    "retention",
    COLUMNS,
    (analysis_table("retention"), analysis_table("cohort_retention")),
    (PLOT_RETENTION, PLOT_COHORT_RETENTION),
)

PERIODS_PER_YEAR = {"M": 12, "Q": 4}


def _period_ordinals(days, period: str) -> np.ndarray:
    """Months or quarters since 1970-01, the ordinals of pandas' monthly and quarterly periods.

    ``days`` are datetimes, or integer days since 1970-01-01."""
    if period not in PERIODS_PER_YEAR:
        raise CrmvalueError(f"period must be 'M' (month) or 'Q' (quarter), not {period!r}")
    values = np.asarray(days)
    if values.dtype.kind in "iu" and len(values):
        # a lookup over the few distinct days instead of a calendar conversion of every row
        low = int(values.min())
        span = np.arange(low, int(values.max()) + 1, dtype=np.int64).astype("datetime64[D]")
        months = span.astype("datetime64[M]").astype(np.int64)[values - low]
    else:
        if values.dtype.kind in "iu":
            values = values.astype(np.int64).astype("datetime64[D]")
        months = values.astype("datetime64[M]").astype(np.int64)
    return months if period == "M" else months // 3


@dataclass(frozen=True)
class CustomerPeriods:
    """What the retention table and the cohort matrix are built from, for one period length and end:
    per period with a purchase day (``period`` ordinal), its purchase days ``orders`` and their ``amount``,
    and the sorted distinct (``customer`` code, ``ordinal``) pairs as int32. Build it once with
    :func:`customer_periods` and pass it to both instead of the transactions. Nothing in it is per purchase
    day, so it stays small beside tens of millions of transactions."""

    days: pd.DataFrame
    customer: np.ndarray
    ordinal: np.ndarray
    period: str


def customer_periods(
    transactions: pd.DataFrame | CustomerDays, period: Literal["M", "Q"] = "M", observation_end=None
) -> CustomerPeriods:
    """The purchase days by calendar month or quarter (see :class:`CustomerPeriods`)."""
    return CustomerPeriods(*_customer_periods(transactions, period, observation_end), period)


def _periods_of(
    transactions: pd.DataFrame | CustomerDays | CustomerPeriods, period: str, observation_end
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    if isinstance(transactions, CustomerPeriods):
        if transactions.period != period:
            raise CrmvalueError(f"customer periods are by {transactions.period!r}, not {period!r}")
        return transactions.days, transactions.customer, transactions.ordinal
    return _customer_periods(transactions, period, observation_end)


def _customer_periods(
    transactions: pd.DataFrame | CustomerDays, period: str, observation_end
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Per period (``period``, ``orders``, ``amount``) and the sorted distinct (customer code, period) pairs."""
    netted = netted_days(transactions)
    keep = netted.purchase
    if observation_end is not None:
        keep &= netted.day <= day_number(pd.Timestamp(observation_end).normalize())
    ordinal = _period_ordinals(netted.day[keep], period)
    if len(ordinal) == 0:
        empty = np.zeros(0, np.int32)
        return pd.DataFrame({"period": empty, "orders": empty, "amount": np.zeros(0)}), empty, empty
    low = int(ordinal.min())
    position = ordinal - low
    width = int(position.max()) + 1
    days = pd.DataFrame(
        {
            "period": np.arange(low, low + width),
            "orders": np.bincount(position, minlength=width),
            "amount": np.bincount(position, weights=netted.amount[keep], minlength=width),
        }
    )
    # one int64 key per (customer, period); the days are sorted by customer, then day, so the keys are
    # sorted already and the distinct pairs are where the key changes (no sort of tens of millions of rows)
    key = netted.customer[keep].astype(np.int64) * width + position
    del position, ordinal
    pairs = key[np.r_[True, key[1:] != key[:-1]]]
    del key
    return days, (pairs // width).astype(np.int32), (pairs % width + low).astype(np.int32)


def retention_table(
    transactions: pd.DataFrame | CustomerDays | CustomerPeriods, period: Literal["M", "Q"] = "M", observation_end=None
) -> pd.DataFrame:
    """Per calendar month or quarter, the retention revenue-cost measures of seed 003.

    - ``active_customers``: customers with a purchase day in the period; ``new_customers``:
      those whose first purchase day it is;
    - ``retention_rate``: share of the previous period's buyers who buy again in this one
      (NaN for the first period, or after a period without buyers);
    - ``orders_per_customer_per_year``: purchase days per active customer, times 12 (months)
      or 4 (quarters);
    - ``average_order_value``: net amount of the purchase days / their number.

    Every period from the first to the last purchase is listed, empty ones with zero buyers.
    The index is a pandas ``PeriodIndex`` named ``period``; the last period may be partial.
    """
    days, customer, ordinal = _periods_of(transactions, period, observation_end)
    if len(days) == 0:
        raise CrmvalueError("retention table: no purchase days")
    periods = np.arange(ordinal.min(), ordinal.max() + 1)
    position = ordinal - periods[0]
    size = len(periods)
    active = np.bincount(position, minlength=size)
    # pairs are sorted by customer, then period: a buyer of p-1 again in p is the next pair
    again = (customer[1:] == customer[:-1]) & (ordinal[1:] == ordinal[:-1] + 1)
    retained = np.bincount(position[1:][again], minlength=size)
    first_pair = np.r_[True, customer[1:] != customer[:-1]]
    new = np.bincount(position[first_pair], minlength=size)
    previous = np.r_[0, active[:-1]]
    at = days["period"].to_numpy() - periods[0]
    orders = np.bincount(at, weights=days["orders"].to_numpy(), minlength=size).astype(np.int64)
    revenue = np.bincount(at, weights=days["amount"].to_numpy(), minlength=size)
    table = pd.DataFrame(
        {
            "active_customers": active,
            "new_customers": new,
            "retained_customers": retained,
            "retention_rate": np.divide(retained, previous, out=np.full(size, np.nan), where=previous > 0),
            "orders": orders,
            "revenue": revenue,
            "orders_per_customer_per_year": np.divide(
                orders * PERIODS_PER_YEAR[period], active, out=np.full(size, np.nan), where=active > 0
            ),
            "average_order_value": np.divide(revenue, orders, out=np.full(size, np.nan), where=orders > 0),
        },
        index=pd.PeriodIndex.from_ordinals(periods, freq=period, name="period"),
    )
    return table


def cohort_retention(
    transactions: pd.DataFrame | CustomerDays | CustomerPeriods,
    period: Literal["M", "Q"] = "M",
    observation_end=None,
    counts: bool = False,
) -> pd.DataFrame:
    """Cohort matrix: rows the acquisition period (of the first purchase day), columns the
    periods since acquisition 0, 1, ..., values the share of the cohort with a purchase day
    in that period (column 0 is 1). Cells after the last period of the data are NaN, not 0.
    ``counts=True`` gives the number of customers instead (column 0 is the cohort size)."""
    days, customer, ordinal = _periods_of(transactions, period, observation_end)
    if len(days) == 0:
        raise CrmvalueError("cohort retention: no purchase days")
    first_pair = np.r_[True, customer[1:] != customer[:-1]]
    start = ordinal[first_pair][np.cumsum(first_pair) - 1]  # each pair's acquisition period
    first, last = ordinal.min(), ordinal.max()
    rows, cols = last - first + 1, last - first + 1
    cell = (start - first) * cols + (ordinal - start)
    matrix = np.bincount(cell, minlength=rows * cols).reshape(rows, cols).astype(float)
    observed = np.arange(cols)[None, :] <= (last - np.arange(first, last + 1))[:, None]
    size = matrix[:, 0]
    keep = size > 0  # periods in which nobody was acquired are not cohorts
    values = matrix if counts else np.divide(matrix, size[:, None], out=np.zeros_like(matrix), where=size[:, None] > 0)
    values = np.where(observed, values, np.nan)[keep]
    return pd.DataFrame(
        values,
        index=pd.PeriodIndex.from_ordinals(np.arange(first, last + 1)[keep], freq=period, name="cohort"),
        columns=pd.RangeIndex(cols, name="periods_since_acquisition"),
    )
