"""Subscriptions as whole billing periods: renewals at each period anniversary of the start, durations, cohorts.

The rule (one for the whole setting)::

    the k-th anniversary of a start s is s + k periods (k = 1, 2, ...): s + 7k days for weeks, else the same day
    of the month k, 3k or 12k months later, the month's last day when it has no such day (31 Jan -> 28 Feb);
    a subscriber renews at an anniversary when her subscription has not ended by that day.

So, at a cut-off day ``c`` (the calibration or the observation end):

- a subscription that ended on day ``e <= c`` churned in period ``T = 1 + #{k >= 1: anniversary k < e}``: one that
  ends on an anniversary did not renew there (start 1 Mar, end 1 Apr: ``T = 1``; end 2 Apr: ``T = 2``);
- one still active at ``c`` (no end, or an end after ``c``) has renewed ``tenure = #{k >= 1: anniversary k <= c}``
  times and is censored, ``T > tenure``; with tenure 0 she tells the sBG nothing yet (``S(0) = 1``) and is left
  out of the fit, though she is scored;
- one that starts after ``c`` does not exist yet at ``c``.

This is the convention of :mod:`crmvalue.models.sbg` (``T`` is the period of cancellation, ``tenure`` the
renewals made) with calendar dates. Days only: times of day are dropped when the table is read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# calendar months in one period; a week is 7 days of the average month of 365.25 / 12 days
MONTHS_PER_PERIOD = {"week": 7 * 12 / 365.25, "month": 1.0, "quarter": 3.0, "year": 12.0}
_STEP_MONTHS = {"month": 1, "quarter": 3, "year": 12}
_COHORT_FREQ = {"week": "W", "month": "M", "quarter": "Q", "year": "Y"}


def period_discount(monthly_rate: float, period: str) -> float:
    """The discount rate per period of a monthly rate (``clv.discount_rate``): ``(1 + d) ** months - 1``."""
    return float((1.0 + monthly_rate) ** MONTHS_PER_PERIOD[period] - 1.0)


def _days(values) -> np.ndarray:
    return np.asarray(values, dtype="datetime64[ns]").astype("datetime64[D]")


def anniversary(start, k, period: str) -> np.ndarray:
    """The ``k``-th anniversary of each start (``datetime64[D]``), by the rule of the module."""
    s, k = np.broadcast_arrays(_days(start), np.asarray(k, dtype=np.int64))
    if period == "week":
        return s + (7 * k).astype("timedelta64[D]")
    month = s.astype("datetime64[M]")
    day = (s - month.astype("datetime64[D]")).astype(np.int64)  # day of the month, from 0
    target = month + (_STEP_MONTHS[period] * k).astype("timedelta64[M]")
    first = target.astype("datetime64[D]")
    length = ((target + np.timedelta64(1, "M")).astype("datetime64[D]") - first).astype(np.int64)
    return first + np.minimum(day, length - 1).astype("timedelta64[D]")


def anniversaries(start, cutoff, period: str, strict: bool = False) -> np.ndarray:
    """How many anniversaries of each start fall on or before ``cutoff`` (before it, with ``strict``); 0 if none."""
    s, c = np.broadcast_arrays(_days(start), _days(cutoff))
    if period == "week":
        days = (c - s).astype(np.int64)
        k = (days - 1) // 7 if strict else days // 7
        return np.maximum(k, 0)
    step = _STEP_MONTHS[period]
    months = (c.astype("datetime64[M]") - s.astype("datetime64[M]")).astype(np.int64)
    k = months // step
    day = anniversary(s, k, period)
    k = k - ((day >= c) if strict else (day > c))
    return np.maximum(k, 0)


def cohort_labels(start, period: str) -> np.ndarray:
    """The start cohort of each subscription: ``2021-03`` (month), ``2021Q1``, ``2021``, or the Monday of the
    start's week (``2021-03-01``)."""
    periods = pd.DatetimeIndex(_days(start)).to_period(_COHORT_FREQ[period])
    if period == "week":
        return np.asarray(periods.start_time.strftime("%Y-%m-%d"), dtype=object)
    return np.asarray(periods.astype(str), dtype=object)


def durations_at(frame: pd.DataFrame, cutoff: pd.Timestamp, period: str) -> pd.DataFrame:
    """Each subscription as the sBG sees it at ``cutoff``, index as ``frame``.

    Columns: ``started`` (it exists at the cut-off), ``churned`` (it ended on or before it), ``duration``
    (``T`` for a churned one, the renewals made so far, ``tenure``, for an active one; 0 for one not started)
    and ``fit`` (the rows that enter the fit: started, and churned or with tenure >= 1).
    """
    start = _days(frame["start"])
    end = _days(frame["end"])
    c = _days(pd.Timestamp(cutoff))
    started = start <= c
    churned = started & ~np.isnat(end) & (end <= c)
    ended_in = 1 + anniversaries(start, np.where(churned, end, start), period, strict=True)
    tenure = anniversaries(start, np.broadcast_to(c, start.shape), period)
    duration = np.where(churned, ended_in, np.where(started, tenure, 0))
    return pd.DataFrame(
        {"started": started, "churned": churned, "duration": duration, "fit": started & (churned | (duration >= 1))},
        index=frame.index,
    )


def active_at(frame: pd.DataFrame, cutoff: pd.Timestamp) -> np.ndarray:
    """Started by ``cutoff`` and not ended on or before it."""
    start, end, c = _days(frame["start"]), _days(frame["end"]), _days(pd.Timestamp(cutoff))
    return (start <= c) & (np.isnat(end) | (end > c))
