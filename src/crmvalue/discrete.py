"""Discrete-time features for BG/BB: one binary purchase opportunity per customer per calendar period.

A customer's purchase days (:mod:`crmvalue.customer_days`: netted, returns-only days are not purchases)
collapse to one *active period* per calendar period (pandas ``Period``: weeks run Monday to Sunday,
months, quarters and years are calendar ones) with a purchase day in it; its amount is the sum of
those days. Only whole periods are opportunities: an end date rounds down to the end of the last
period that is complete on it (:func:`last_whole_period`), so a partial last period neither counts
as an opportunity nor as a purchase.

The customer's *first period* (the one of their first purchase day) is the acquisition, not an
opportunity, as the first purchase is not a repeat in the continuous models. Then, in periods:

- ``frequency`` (BG/BB's ``x``): active periods after the first period, up to the last whole period;
- ``recency`` (``t_x``): the last of them, counted from the first period (0 if none);
- ``T`` (``n``): the whole periods after the first period;
- ``monetary_value``: the mean amount of the repeat active periods (0 without), what Gamma-Gamma models.

Everything is vectorised array arithmetic, no per-customer Python loop.

Reference: Fader, Hardie and Shang (2010), "Customer-Base Analysis in a Discrete-Time Noncontractual
Setting", Marketing Science 29 (6), where an opportunity is a year of donations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd

from crmvalue.customer_days import CustomerDays, customer_days, day_number
from crmvalue.errors import CrmvalueError
from crmvalue.features import SUMMARY_COLUMNS

Period = Literal["week", "month", "quarter", "year"]
ModelUnit = Literal["days", "weeks", "week", "month", "quarter", "year"]  # a purchase model's: TimeUnit or Period
PERIODS: tuple[Period, ...] = ("week", "month", "quarter", "year")
FREQUENCIES = {"week": "W-SUN", "month": "M", "quarter": "Q-DEC", "year": "Y-DEC"}
# a period's mean length in days (a month is 365.25 / 12): how a horizon in days becomes periods
DAYS_PER_PERIOD = {"week": 7.0, "month": 365.25 / 12, "quarter": 365.25 / 4, "year": 365.25}


def _frequency(period: str) -> str:
    try:
        return FREQUENCIES[period]
    except KeyError:
        raise CrmvalueError(f"unknown period '{period}'; choose one of {', '.join(PERIODS)}") from None


def last_whole_period(end, period: Period) -> pd.Period:
    """The last calendar period complete on the day ``end``: ``end``'s own if it is its last day, else the one before."""
    day = pd.Timestamp(end).normalize()
    own = pd.Period(day, freq=_frequency(period))
    return own if own.end_time.normalize() == day else own - 1


def period_numbers(day: np.ndarray, period: Period) -> np.ndarray:
    """The pandas ``Period`` ordinal of each day number (days since 1970-01-01); each distinct day converted once."""
    unique, inverse = np.unique(np.asarray(day, dtype=np.int64), return_inverse=True)
    ordinals = pd.DatetimeIndex(unique.astype("datetime64[D]")).to_period(_frequency(period)).asi8
    return np.asarray(ordinals, dtype=np.int64)[inverse.reshape(-1)]


def _active_periods(days: CustomerDays, last_day: int, period: Period):
    """Per purchase day up to ``last_day`` collapsed to customer-periods: customer code, period ordinal, amount,
    the positions of each customer's first row, and each row's customer's first period."""
    purchases = days.purchase_days(last_day)
    ordinal = period_numbers(purchases.day, period)
    customer = purchases.customer
    if len(customer) == 0:
        return customer, ordinal, purchases.amount, np.array([], np.int64), ordinal
    # purchase days are sorted by customer, then day: periods are sorted within each customer
    starts = np.flatnonzero(np.r_[True, (customer[1:] != customer[:-1]) | (ordinal[1:] != ordinal[:-1])])
    customer, ordinal = customer[starts], ordinal[starts]
    amount = np.add.reduceat(purchases.amount, starts)
    firsts = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1]])
    first = np.repeat(ordinal[firsts], np.diff(np.r_[firsts, len(customer)]))
    return customer, ordinal, amount, firsts, first


def _summarise(days: CustomerDays, last_day: int, last_ordinal: int, period: Period) -> pd.DataFrame:
    """The summary (``SUMMARY_COLUMNS``, in periods) of every customer with a purchase day on or before
    ``last_day``, opportunities counted up to the period ``last_ordinal``; a first period after it gives ``n = 0``."""
    customer, ordinal, amount, firsts, first = _active_periods(days, last_day, period)
    row_owner = np.repeat(np.arange(len(firsts)), np.diff(np.r_[firsts, len(customer)]))
    repeat = (ordinal > first) & (ordinal <= last_ordinal)
    x = np.bincount(row_owner, weights=repeat, minlength=len(firsts))
    since_first = np.where(repeat, ordinal - first, 0)
    t_x = np.maximum.reduceat(since_first, firsts) if len(firsts) else np.array([], np.int64)
    total = np.bincount(row_owner, weights=np.where(repeat, amount, 0.0), minlength=len(firsts))
    return pd.DataFrame(
        {
            "frequency": x,
            "recency": t_x.astype("float64"),
            "T": np.maximum(last_ordinal - first[firsts], 0).astype("float64"),
            "monetary_value": np.divide(total, x, out=np.zeros(len(x)), where=x > 0),
        },
        index=days.ids[customer[firsts]].rename("customer_id"),
    )[SUMMARY_COLUMNS]


def period_summary(transactions: pd.DataFrame | CustomerDays, observation_end, period: Period) -> pd.DataFrame:
    """Per-customer ``frequency, recency, T, monetary_value`` in whole periods at ``observation_end``.

    Opportunities are counted up to :func:`last_whole_period` of the observation end. The customers are
    those of :func:`crmvalue.features.rfm_summary` (a purchase day on or before the observation end), so
    every one is scored: a customer whose first purchase is in the partial last period has ``x = t_x =
    n = 0`` (acquired, no opportunity observed yet), which adds nothing to a BG/BB likelihood. The
    index is the customer id, sorted.
    """
    days = customer_days(transactions)
    end = pd.Timestamp(observation_end).normalize()
    last = last_whole_period(end, period)
    summary = _summarise(days, day_number(end), last.ordinal, period)
    if not (summary["T"] > 0).any():
        raise CrmvalueError(
            f"observation end {end.date()}: no customer has a whole {period} after the {period} of their first "
            f"purchase (the last whole {period} is {last}); choose a shorter period"
        )
    return summary


def period_calibration_holdout_summary(
    transactions: pd.DataFrame | CustomerDays, calibration_end, observation_end, period: Period
) -> pd.DataFrame:
    """:func:`period_summary` up to the calibration end plus what each customer did in the holdout, in periods.

    Both ends round down to the last whole period: calibration periods up to ``C``, holdout periods
    ``C + 1 .. O``. Columns as :func:`crmvalue.features.calibration_holdout_summary`:
    ``frequency_cal, recency_cal, T_cal, monetary_value_cal``, ``frequency_holdout`` (active periods in
    the holdout), ``revenue_holdout`` (net amount of every day of those periods, returns included) and
    ``duration_holdout`` (``O - C``). Only customers whose first period is ``C`` or earlier appear: the
    holdout cannot introduce new customers.
    """
    cal_end, obs_end = (pd.Timestamp(v).normalize() for v in (calibration_end, observation_end))
    cal, obs = last_whole_period(cal_end, period), last_whole_period(obs_end, period)
    if cal >= obs:
        raise CrmvalueError(
            f"calibration end {cal_end.date()} and observation end {obs_end.date()} round down to the whole "
            f"{period}s {cal} and {obs}: the holdout holds no whole {period}; move the calibration end earlier"
        )
    days = customer_days(transactions)
    cal_last, obs_last = (day_number(p.end_time) for p in (cal, obs))
    summary = _summarise(days, cal_last, cal.ordinal, period)
    if summary.empty:
        raise CrmvalueError(
            f"no purchases on or before {cal.end_time.date()}, the end of the last whole {period} {cal}"
        )
    summary.columns = [f"{c}_cal" for c in summary.columns]
    codes = days.ids.get_indexer(summary.index)

    n = len(days.ids)
    window = (days.day > cal_last) & (days.day <= obs_last)
    bought = window & days.purchase
    customer, day = days.customer[bought], days.day[bought]
    ordinal = period_numbers(day, period)
    # customer-days are sorted by customer, then day: one active period where customer or period changes
    new = np.r_[True, (customer[1:] != customer[:-1]) | (ordinal[1:] != ordinal[:-1])][: len(customer)]
    summary["frequency_holdout"] = np.bincount(customer[new], minlength=n)[codes].astype("float64")
    summary["revenue_holdout"] = np.bincount(days.customer[window], weights=days.amount[window], minlength=n)[codes]
    summary["duration_holdout"] = float(obs.ordinal - cal.ordinal)
    return summary


def period_tracking(
    transactions: pd.DataFrame | CustomerDays,
    expected_repeat: Callable[[np.ndarray], np.ndarray],
    calibration_end,
    observation_end,
    period: Period,
) -> pd.DataFrame:
    """Actual against expected repeat transactions per calendar period, the discrete twin of
    :func:`crmvalue.diagnostics.repeat_transactions_tracking` (FHS 2010, fig. 3).

    Customers are those whose first period is the calibration's last whole period or earlier. Tracking
    period ``k`` is the ``k``-th calendar period from the earliest first period, up to the observation's last
    whole period. Actual: customers active in the period after their first; expected: the sum over cohorts
    (first period ``f``, size ``m``) of ``m E[X(q - f)]``, with ``expected_repeat(t)`` the model's E[X(t)] for
    whole periods ``t`` (0 at ``t = 0``; any shape). Columns and ``attrs`` (``calibration_period``,
    ``customers``, ``period``) as the continuous table; ``attrs["period_days"]`` is None.
    """
    cal_end, obs_end = (pd.Timestamp(v).normalize() for v in (calibration_end, observation_end))
    cal, obs = last_whole_period(cal_end, period), last_whole_period(obs_end, period)
    if cal >= obs:
        raise CrmvalueError(
            f"calibration end {cal_end.date()} and observation end {obs_end.date()}: no whole {period} between"
        )
    days = customer_days(transactions)
    customer, ordinal, _, firsts, first = _active_periods(days, day_number(obs.end_time), period)
    tracked = first <= cal.ordinal
    if not tracked.any():
        raise CrmvalueError(f"no customer's first purchase is in a whole {period} up to {cal}")
    start = int(first[tracked].min())
    n_periods = int(obs.ordinal) - start + 1
    repeat = tracked & (ordinal > first)
    actual = np.bincount(ordinal[repeat] - start, minlength=n_periods)[:n_periods]
    cohort, size = np.unique(first[firsts][first[firsts] <= cal.ordinal] - start, return_counts=True)
    age = np.maximum(np.arange(n_periods)[:, None] - cohort[None, :], 0).astype(float)
    expected = np.asarray(expected_repeat(age), float) @ size
    ends = pd.PeriodIndex.from_ordinals(np.arange(start, start + n_periods), freq=_frequency(period))
    table = pd.DataFrame(
        {
            "period_end": ends.end_time.normalize(),
            "actual_incremental": actual,
            "expected_incremental": np.diff(expected, prepend=0.0),
            "actual_cumulative": np.cumsum(actual),
            "expected_cumulative": expected,
        },
        index=pd.RangeIndex(1, n_periods + 1, name="period"),
    )
    table.attrs.update(
        calibration_period=float(cal.ordinal - start + 1), customers=int(size.sum()), period=period, period_days=None
    )
    return table


def in_unit(summary: pd.DataFrame, transactions: pd.DataFrame | CustomerDays, observation_end, unit: str):
    """An RFM summary in the purchase model's time ``unit``: ``summary`` itself for a continuous unit (days, weeks);
    for a period (BG/BB's), the :func:`period_summary` of the same customers, in ``summary``'s order."""
    if unit not in PERIODS:
        return summary
    return period_summary(transactions, observation_end, unit).loc[summary.index]
