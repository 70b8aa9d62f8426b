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

from crmvalue.customer_days import CustomerDays, PurchaseDays, customer_days, day_number
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


def purchase_day_arrays(transactions: pd.DataFrame | CustomerDays, last_day=None) -> PurchaseDays:
    """The purchase days of :func:`crmvalue.customer_days.customer_days`, up to ``last_day`` if given
    (see :meth:`crmvalue.customer_days.CustomerDays.purchase_days`, which keeps them per end)."""
    return customer_days(transactions).purchase_days(None if last_day is None else day_number(last_day))


def _first_of_each(customer: np.ndarray) -> np.ndarray:
    """Positions of each customer's first row in arrays sorted by customer."""
    return np.flatnonzero(np.r_[True, customer[1:] != customer[:-1]]) if len(customer) else np.array([], dtype=np.int64)


def purchase_days(transactions: pd.DataFrame | CustomerDays) -> pd.DataFrame:
    """Net amount per customer-day, without the days cancelled by returns.

    Returns a frame with ``customer_id``, ``day`` and ``amount``, sorted by customer and day.
    """
    days = purchase_day_arrays(transactions)
    return pd.DataFrame(
        {
            "customer_id": days.ids[days.customer].to_numpy(),
            "day": days.day.astype(np.int64).astype("datetime64[D]").astype("datetime64[ns]"),
            "amount": days.amount,
        }
    )


def rfm_summary(
    transactions: pd.DataFrame | CustomerDays,
    observation_end,
    time_unit: TimeUnit = "days",
) -> pd.DataFrame:
    """Per-customer ``frequency, recency, T, monetary_value`` at ``observation_end``.

    Transactions dated after the observation end (by calendar day) are ignored. Customers
    with no purchase day on or before it are absent from the result. Equal, on positive
    amounts, to ``lifetimes.utils.summary_data_from_transaction_data(..., freq="D",
    freq_multiplier=1 or 7)``. The index is the customer id, sorted. ``transactions`` may be
    canonical rows or their :class:`~crmvalue.customer_days.CustomerDays`.
    """
    summary, _ = rfm_summary_with_report(transactions, observation_end, time_unit)
    return summary


def rfm_summary_with_report(
    transactions: pd.DataFrame | CustomerDays, observation_end, time_unit: TimeUnit = "days"
) -> tuple[pd.DataFrame, WindowReport]:
    end = _as_day(observation_end)
    days = purchase_day_arrays(transactions, last_day=end)
    summary = summarise_days(days, end, time_unit)
    report = WindowReport(
        rows_after_observation_end=days.rows_after_end,
        customers_without_purchase=(days.customers_seen or 0) - len(summary),  # always counted here
    )
    return summary, report


def summarise_days(days: PurchaseDays, end: pd.Timestamp, time_unit: TimeUnit) -> pd.DataFrame:
    """The RFM summary (``SUMMARY_COLUMNS``) of purchase days at ``end``, one row per customer with a purchase."""
    unit = DAYS_PER_UNIT[time_unit]
    customer, day, amount = days.customer, days.day, days.amount
    n = len(customer)
    starts = _first_of_each(customer)
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
    transactions: pd.DataFrame | CustomerDays,
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
        raise CrmvalueError(f"calibration end {cal_end.date()} must be before observation end {obs_end.date()}")
    days = customer_days(transactions)
    calibration = purchase_day_arrays(days, cal_end)
    cal = summarise_days(calibration, cal_end, time_unit)
    if cal.empty:
        raise CrmvalueError(f"no purchases on or before the calibration end {cal_end.date()}")
    cal.columns = [f"{c}_cal" for c in cal.columns]
    codes = calibration.customer[_first_of_each(calibration.customer)]  # the summary's rows, in order

    window = (days.day > day_number(cal_end)) & (days.day <= day_number(obs_end))
    n = len(days.ids)
    bought = window & days.purchase
    cal["frequency_holdout"] = np.bincount(days.customer[bought], minlength=n)[codes].astype("float64")
    # every day of the window, returns on days of their own included: the sum of the rows
    cal["revenue_holdout"] = np.bincount(days.customer[window], weights=days.amount[window], minlength=n)[codes]
    cal["duration_holdout"] = (obs_end - cal_end).days / DAYS_PER_UNIT[time_unit]
    return cal


def revenue_in_window(transactions: pd.DataFrame | CustomerDays, observation_end, window_days: int) -> pd.Series:
    """Net revenue per customer in the ``window_days`` days ending on ``observation_end``.

    The window is (observation end - window_days, observation end], by calendar day. Every
    customer with a transaction in the window appears, returns included.
    """
    days = customer_days(transactions)
    end = day_number(observation_end)
    window = (days.day > end - window_days) & (days.day <= end)
    n = len(days.ids)
    present = np.bincount(days.customer[window], minlength=n) > 0
    revenue = np.bincount(days.customer[window], weights=days.amount[window], minlength=n)[present]
    return pd.Series(revenue, index=days.ids[present].rename("customer_id"), name="amount")


def compress_rfm(frequency, recency, T, weights=None) -> pd.DataFrame:
    """Unique ``(frequency, recency, T)`` rows with the number of customers in each.

    Fader and Hardie fit the BTYD models on this compressed matrix: the likelihood of a
    pattern times its count equals the sum over its customers, at a fraction of the cost.
    Rows are sorted by ``(frequency, recency, T)``; rows with a missing value are dropped.
    ``weights`` (customers per row, e.g. rows compressed already, as Spark collects them) are
    summed per pattern instead of counting rows.
    """
    columns = {"frequency": frequency, "recency": recency, "T": T}
    w = None if weights is None else checked_weights(weights, len(np.asarray(frequency)))
    codes, uniques = zip(*(pd.factorize(np.asarray(c, float), sort=True) for c in columns.values()))
    n_recency, n_T = len(uniques[1]), len(uniques[2])
    if len(uniques[0]) * n_recency * n_T >= 2**62:  # one int64 key per pattern would overflow
        frame = pd.DataFrame({k: np.asarray(v, float) for k, v in columns.items()}).assign(
            weights=1 if w is None else w
        )
        return frame.dropna().groupby(list(columns), sort=True)["weights"].sum().reset_index()
    # one sortable integer key per pattern: about twice as fast as a groupby on three float columns
    keep = (codes[0] >= 0) & (codes[1] >= 0) & (codes[2] >= 0)
    key = (codes[0][keep].astype(np.int64) * n_recency + codes[1][keep]) * n_T + codes[2][keep]
    if w is None:
        patterns, counts = np.unique(key, return_counts=True)
    else:
        patterns, inverse = np.unique(key, return_inverse=True)
        counts = np.bincount(inverse.reshape(-1), weights=w[keep], minlength=len(patterns))
    i_frequency, rest = np.divmod(patterns, n_recency * n_T)
    i_recency, i_T = np.divmod(rest, n_T)
    return pd.DataFrame(
        {
            "frequency": uniques[0][i_frequency],
            "recency": uniques[1][i_recency],
            "T": uniques[2][i_T],
            "weights": counts.astype(np.int64) if w is None or w.dtype.kind == "i" else counts,
        }
    )


def checked_weights(weights, n: int) -> np.ndarray:
    """Customer counts per row: finite, non-negative, one per row; integer counts stay integers."""
    w = np.asarray(weights)
    if w.shape != (n,):
        raise CrmvalueError(f"weights: {w.size} values for {n} rows")
    if w.dtype.kind in "iub":
        w = w.astype(np.int64)
    else:
        w = w.astype(float)
        if (w == np.round(w)).all():
            w = w.astype(np.int64)
    if not np.isfinite(w.astype(float)).all() or (w < 0).any():
        raise CrmvalueError("weights: every weight must be a finite count >= 0")
    return w


def mean_purchase_amount(transactions: pd.DataFrame | CustomerDays, end) -> float | None:
    """Mean net amount of the purchase days with a positive amount on or before ``end`` (None if there are none):
    the expected spend Gamma-Gamma falls back on when no customer has a repeat purchase."""
    amount = purchase_day_arrays(transactions, end).amount
    positive = amount[amount > 0]
    return float(positive.mean()) if len(positive) else None
