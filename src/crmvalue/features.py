"""RFM features for the BTYD models, with the Fader-Hardie-Lee (2005) / lifetimes definitions.

A *purchase period* is one customer-day. All transactions of a customer on one calendar day
are netted (returns are negative amounts); a day that holds a return and nets to <= 0 is not a
purchase. A day of zero-amount transactions without a return (free items: CDNOW has 80) is a
purchase, as in the published CDNOW figures.
Days are counted in the time unit of the experiment: ``days``, or ``weeks`` = days / 7
(fractional), which is how the CDNOW tables in the papers are built.

- ``frequency``: number of repeat purchase periods (all purchase days minus the first);
- ``recency``: time from the first to the last purchase day;
- ``T``: time from the first purchase day to the observation end;
- ``monetary_value``: mean net amount of the repeat purchase days (0 without repeats).

Everything is vectorised groupby arithmetic: no per-customer Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError

TimeUnit = Literal["days", "weeks"]
DAYS_PER_UNIT = {"days": 1.0, "weeks": 7.0}
SUMMARY_COLUMNS = ["frequency", "recency", "T", "monetary_value"]


@dataclass(frozen=True)
class WindowReport:
    """What a summary left out, so the pipeline can say so."""

    rows_after_observation_end: int
    customers_without_purchase: int


def _as_day(value) -> pd.Timestamp:
    return pd.Timestamp(value).normalize()


@dataclass(frozen=True)
class _PurchaseDays:
    """Purchase days as parallel arrays, sorted by customer code, then day."""

    ids: pd.Index  # customer ids, indexed by code, sorted; the input's dtype
    customer: np.ndarray  # code of each purchase day
    day: np.ndarray  # days since 1970-01-01, int64
    amount: np.ndarray  # net amount of the day
    rows_after_end: int


def _purchase_day_arrays(transactions: pd.DataFrame, last_day: pd.Timestamp | None = None) -> _PurchaseDays:
    """Net each customer-day with one sort of an int64 (customer, day) key and ``reduceat``.

    Grouping by a composite integer key instead of by (string id, timestamp) is what makes
    this several times faster than a pandas groupby at tens of millions of rows.
    """
    day = transactions["date"].to_numpy().astype("datetime64[D]").astype(np.int64)
    amount = transactions["amount"].to_numpy(dtype=float)
    ids = transactions["customer_id"]
    rows_after_end = 0
    if last_day is not None:
        in_window = day <= np.datetime64(last_day.date(), "D").astype(np.int64)
        rows_after_end = int(len(day) - in_window.sum())
        if rows_after_end:
            day, amount, ids = day[in_window], amount[in_window], ids[in_window]
    codes, uniques = pd.factorize(ids, sort=True)
    if len(day) == 0:
        empty = np.array([], dtype=np.int64)
        return _PurchaseDays(uniques, empty, empty, np.array([], dtype=float), rows_after_end)
    first_day = day.min()
    span = np.int64(day.max() - first_day + 1)
    key = codes.astype(np.int64) * span + (day - first_day)
    order = np.argsort(key, kind="stable")
    key, amount = key[order], amount[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    net = np.add.reduceat(amount, starts)
    lowest = np.minimum.reduceat(amount, starts)
    key = key[starts]
    # a day that holds a return and nets to <= 0 is not a purchase
    keep = ~((lowest < 0) & (net <= 0))
    key = key[keep]
    return _PurchaseDays(uniques, key // span, key % span + first_day, net[keep], rows_after_end)


def purchase_days(transactions: pd.DataFrame) -> pd.DataFrame:
    """Net amount per customer-day, without the days cancelled by returns.

    Returns a frame with ``customer_id``, ``day`` and ``amount``, sorted by customer and day.
    """
    days = _purchase_day_arrays(transactions)
    return pd.DataFrame(
        {
            "customer_id": days.ids[days.customer].to_numpy(),
            "day": days.day.astype("datetime64[D]").astype("datetime64[ns]"),
            "amount": days.amount,
        }
    )


def rfm_summary(
    transactions: pd.DataFrame,
    observation_end,
    time_unit: TimeUnit = "days",
) -> pd.DataFrame:
    """Per-customer ``frequency, recency, T, monetary_value`` at ``observation_end``.

    Transactions dated after the observation end (by calendar day) are ignored. Customers
    with no purchase day on or before it are absent from the result. Equal, on positive
    amounts, to ``lifetimes.utils.summary_data_from_transaction_data(..., freq="D",
    freq_multiplier=1 or 7)``. The index is the customer id, sorted.
    """
    summary, _ = rfm_summary_with_report(transactions, observation_end, time_unit)
    return summary


def rfm_summary_with_report(
    transactions: pd.DataFrame, observation_end, time_unit: TimeUnit = "days"
) -> tuple[pd.DataFrame, WindowReport]:
    end = _as_day(observation_end)
    days = _purchase_day_arrays(transactions, last_day=end)
    summary = _summarise_days(days, end, time_unit)
    report = WindowReport(
        rows_after_observation_end=days.rows_after_end,
        customers_without_purchase=len(days.ids) - len(summary),
    )
    return summary, report


def _summarise_days(days: _PurchaseDays, end: pd.Timestamp, time_unit: TimeUnit) -> pd.DataFrame:
    unit = DAYS_PER_UNIT[time_unit]
    customer, day, amount = days.customer, days.day, days.amount
    n = len(customer)
    starts = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1]]) if n else np.array([], dtype=np.int64)
    count = np.diff(np.r_[starts, n])
    first = day[starts]
    last = day[np.r_[starts[1:], n] - 1] if n else first
    repeat_amount = amount.copy()
    repeat_amount[starts] = 0.0  # the first purchase day is not a repeat
    repeat_total = np.add.reduceat(repeat_amount, starts) if n else np.array([], dtype=float)
    repeats = count - 1
    monetary = np.divide(repeat_total, repeats, out=np.zeros(len(starts)), where=repeats > 0)
    end_day = np.datetime64(end.date(), "D").astype(np.int64)
    summary = pd.DataFrame(
        {
            "frequency": repeats.astype("float64"),
            "recency": (last - first) / unit,
            "T": (end_day - first) / unit,
            "monetary_value": monetary,
        },
        index=days.ids[customer[starts]].rename("customer_id"),
    )
    return summary


def calibration_holdout_summary(
    transactions: pd.DataFrame,
    calibration_end,
    observation_end,
    time_unit: TimeUnit = "days",
) -> pd.DataFrame:
    """RFM features up to ``calibration_end`` plus what each customer did in the holdout.

    Columns: ``frequency_cal, recency_cal, T_cal, monetary_value_cal`` (the RFM summary at the
    calibration end), ``frequency_holdout`` (purchase days in (calibration end, observation
    end]), ``revenue_holdout`` (net amount in that window, returns included) and
    ``duration_holdout`` (its length in the time unit). Only customers with a purchase on or
    before the calibration end appear: the holdout cannot introduce new customers.

    Replaces ``lifetimes.utils.calibration_and_holdout_data``, which fails on pandas 3.
    """
    cal_end, obs_end = _as_day(calibration_end), _as_day(observation_end)
    if cal_end >= obs_end:
        raise CrmvalueError(
            f"calibration end {cal_end.date()} must be before observation end {obs_end.date()}"
        )
    cal = rfm_summary(transactions, cal_end, time_unit)
    if cal.empty:
        raise CrmvalueError(f"no purchases on or before the calibration end {cal_end.date()}")
    cal.columns = [f"{c}_cal" for c in cal.columns]

    day = transactions["date"].dt.normalize()
    holdout_rows = transactions[((day > cal_end) & (day <= obs_end)).to_numpy()]
    holdout_days = purchase_days(holdout_rows)
    cal["frequency_holdout"] = (
        holdout_days.groupby("customer_id").size().reindex(cal.index, fill_value=0).astype("float64")
    )
    cal["revenue_holdout"] = (
        holdout_rows.groupby("customer_id")["amount"].sum().reindex(cal.index, fill_value=0.0).astype("float64")
    )
    cal["duration_holdout"] = (obs_end - cal_end).days / DAYS_PER_UNIT[time_unit]
    return cal


def revenue_in_window(transactions: pd.DataFrame, observation_end, window_days: int) -> pd.Series:
    """Net revenue per customer in the ``window_days`` days ending on ``observation_end``.

    The window is (observation end - window_days, observation end], by calendar day.
    """
    end = _as_day(observation_end)
    day = transactions["date"].dt.normalize()
    mask = ((day > end - pd.Timedelta(days=window_days)) & (day <= end)).to_numpy()
    return transactions[mask].groupby("customer_id")["amount"].sum()


def compress_rfm(frequency, recency, T) -> pd.DataFrame:
    """Unique ``(frequency, recency, T)`` rows with the number of customers in each.

    Fader and Hardie fit the BTYD models on this compressed matrix: the likelihood of a
    pattern times its count equals the sum over its customers, at a fraction of the cost.
    Rows are sorted by ``(frequency, recency, T)``; rows with a missing value are dropped.
    """
    columns = {"frequency": frequency, "recency": recency, "T": T}
    codes, uniques = zip(*(pd.factorize(np.asarray(c, float), sort=True) for c in columns.values()))
    n_recency, n_T = len(uniques[1]), len(uniques[2])
    if len(uniques[0]) * n_recency * n_T >= 2**62:  # one int64 key per pattern would overflow
        frame = pd.DataFrame({k: np.asarray(v, float) for k, v in columns.items()})
        return frame.groupby(list(columns), sort=True).size().rename("weights").reset_index()
    # one sortable integer key per pattern: about twice as fast as a groupby on three float columns
    keep = (codes[0] >= 0) & (codes[1] >= 0) & (codes[2] >= 0)
    key = (codes[0][keep].astype(np.int64) * n_recency + codes[1][keep]) * n_T + codes[2][keep]
    patterns, counts = np.unique(key, return_counts=True)
    i_frequency, rest = np.divmod(patterns, n_recency * n_T)
    i_recency, i_T = np.divmod(rest, n_T)
    return pd.DataFrame({"frequency": uniques[0][i_frequency], "recency": uniques[1][i_recency], "T": uniques[2][i_T],
                         "weights": counts.astype(np.int64)})
