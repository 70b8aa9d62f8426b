"""Customer measures (seed 004, CPM): orders, sales, unit price, span, inactivity per customer.

Orders are *purchase days* (:mod:`crmvalue.customer_days`): a customer's transactions on one day,
returns netted, a day cancelled by a return dropped, as in the rest of the package.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmvalue.analyses.common import netted_days, observation_end_day
from crmvalue.customer_days import CustomerDays, day_number
from crmvalue.errors import CrmvalueError

MEASURE_COLUMNS = [
    "orders",
    "total_sales",
    "avg_unit_price",
    "first_purchase",
    "last_purchase",
    "span_days",
    "inactivity_days",
    "median_gap_days",
]


def median_by_group(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of non-negative integer ``values`` per group ``0 .. n_groups - 1`` (NaN for an empty group).

    ``group`` is sorted, so one sort of ``group * 2**k + value`` orders the values within each
    group (a stable sort runs through the already ordered groups quickly); the median is the
    middle value, or the mean of the two middle values, as pandas computes it.
    """
    out = np.full(n_groups, np.nan)
    if len(values) == 0:
        return out
    values = values.astype(np.int64)
    shift = max(int(values.max()).bit_length(), 1)
    ordered = np.sort((group.astype(np.int64) << shift) | values, kind="stable") & ((1 << shift) - 1)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    count = np.diff(np.r_[starts, len(group)])
    low, high = ordered[starts + (count - 1) // 2], ordered[starts + count // 2]
    out[group[starts]] = (low.astype(float) + high.astype(float)) / 2
    return out


def customer_measures(transactions: pd.DataFrame | CustomerDays, observation_end=None) -> pd.DataFrame:
    """The five CPM measures of seed 004, and what they are built from, per customer.

    Only transactions on or before ``observation_end`` (by calendar day; default the last
    transaction date) count.

    - ``orders``: purchase days;
    - ``total_sales``: net amount of all the customer's transactions, returns included (as
      ``revenue_holdout`` in :mod:`crmvalue.features`), so it can be below the sum of the
      purchase days when a return falls on a day of its own;
    - ``avg_unit_price``: ``total_sales`` / total quantity when the transactions have a
      ``quantity`` column (NaN where the quantity totals <= 0), else the average order value
      ``total_sales / orders``;
    - ``first_purchase``, ``last_purchase``: first and last purchase day;
    - ``span_days``: first to last purchase day; ``inactivity_days``: last purchase day to the
      observation end;
    - ``median_gap_days``: median days between consecutive purchase days (NaN for one order).

    Customers without a purchase day (only returns, or only transactions after the end) are
    absent, as in :func:`crmvalue.features.rfm_summary`. The index is the customer id, sorted.
    """
    days = netted_days(transactions)
    end = observation_end_day(days, observation_end)
    in_window = days.day <= day_number(end)
    bought = in_window & days.purchase
    customer, day = days.customer[bought], days.day[bought].astype(np.int64)
    n = len(customer)
    starts = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1]]) if n else np.array([], dtype=np.int64)
    codes = customer[starts]
    index = pd.Index(days.ids[codes], name="customer_id")
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in MEASURE_COLUMNS}, index=index)
    stops = np.r_[starts[1:], n]
    orders = stops - starts
    first, last = day[starts], day[stops - 1]
    # gaps between consecutive purchase days of the same customer (sorted by customer, day)
    same = customer[1:] == customer[:-1]
    position = np.cumsum(np.r_[True, ~same]) - 1  # each purchase day's customer, 0.. in index order
    median_gap = median_by_group(np.diff(day)[same], position[1:][same], len(codes))

    # every day up to the end, returns on days of their own included: the sum of the rows
    owner, size = days.customer[in_window], len(days.ids)
    total_sales = np.bincount(owner, weights=days.amount[in_window], minlength=size)[codes]
    if days.quantity is not None:
        quantity = np.bincount(owner, weights=days.quantity[in_window], minlength=size)[codes]
        unit_price = np.divide(total_sales, quantity, out=np.full(len(codes), np.nan), where=quantity > 0)
    else:
        unit_price = total_sales / orders
    end_day = np.datetime64(end.date(), "D").astype(np.int64)
    return pd.DataFrame(
        {
            "orders": orders.astype(np.int64),
            "total_sales": total_sales,
            "avg_unit_price": unit_price,
            "first_purchase": first.astype("datetime64[D]").astype("datetime64[ns]"),
            "last_purchase": last.astype("datetime64[D]").astype("datetime64[ns]"),
            "span_days": (last - first).astype(np.int64),
            "inactivity_days": (end_day - last).astype(np.int64),
            "median_gap_days": median_gap,
        },
        index=index,
    )


def purchase_history(frame: CustomerDays, obs_end, customer_ids) -> pd.DataFrame:
    """:func:`customer_measures` of the scored customers, in their order.

    Computed once per run: it gives the export's purchase-history columns and the CRM analyses'
    measures (:func:`crmvalue.analyses.run_analyses`).
    """
    measures = customer_measures(frame, obs_end).reindex(pd.Index(customer_ids, name="customer_id"))
    if measures["orders"].isna().any():
        raise CrmvalueError("a scored customer has no purchase day; please report this")
    return measures
