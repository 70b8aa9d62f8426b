"""Rolling cut-offs of the backtest, and what a cut-off may see: the customer-days on or before it.

``K`` cut-offs end ``step_days`` apart; the last is ``observation_end - horizon_days``, so that the whole
horizon after every cut-off is observed. Candidates are fitted on :func:`days_until` of a cut-off, a copy
of the data that holds nothing after it, and scored on :func:`cutoff_actuals`: the purchase days and net
revenue in ``(cut-off, cut-off + horizon]`` of the customers with a purchase on or before the cut-off.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmvalue.customer_days import CustomerDays, day_number
from crmvalue.errors import CrmvalueError
from crmvalue.features import TimeUnit, calibration_holdout_summary


def rolling_cutoffs(
    days: CustomerDays,
    observation_end,
    horizon_days: int,
    count: int,
    step_days: int,
    min_history_days: int,
) -> list[pd.Timestamp]:
    """The ``count`` cut-offs, oldest first; a one-line :class:`CrmvalueError` when one of them would leave
    no calibration data or fall within ``min_history_days`` of the first purchase."""
    if count < 1 or step_days < 1 or horizon_days < 1:
        raise CrmvalueError(
            f"the backtest needs at least one cut-off, a positive step and a positive horizon "
            f"(got {count} cut-offs, step {step_days} days, horizon {horizon_days} days)"
        )
    end = pd.Timestamp(observation_end).normalize()
    last = end - pd.Timedelta(days=horizon_days)
    cutoffs = [last - pd.Timedelta(days=step_days * i) for i in range(count - 1, -1, -1)]
    purchases = days.purchase_days()
    if len(purchases.day) == 0:
        raise CrmvalueError("the backtest has no purchase to learn from: every customer-day is a return")
    first = pd.Timestamp(int(purchases.day.min()), unit="D")
    earliest = first + pd.Timedelta(days=min_history_days)
    if cutoffs[0] < earliest:
        where = "the only cut-off" if count == 1 else f"the first of {count} cut-offs {step_days} days apart"
        raise CrmvalueError(
            f"backtest: {where} is {cutoffs[0].date()} (observation end {end.date()} - {horizon_days}-day horizon"
            + (f" - {count - 1} x {step_days} days" if count > 1 else "")
            + f"), before {earliest.date()}, the first purchase {first.date()} + backtest.min_history_days "
            f"{min_history_days}: use fewer cut-offs (--cutoffs), a shorter step (--step-days) or a later observation end"
        )
    # the first purchase on or before the cut-off is then before it, so some customer has observed time (T > 0)
    return cutoffs


def days_until(days: CustomerDays, cutoff) -> CustomerDays:
    """The customer-days on or before ``cutoff``, and only the customers seen by then: what a model fitted
    at the cut-off may know. Nothing after it survives, not even the ids of customers who came later."""
    keep = days.day <= day_number(cutoff)
    present = np.bincount(days.customer[keep], minlength=len(days.ids)) > 0
    code = (np.cumsum(present) - 1).astype(np.int32)
    return CustomerDays(
        ids=days.ids[present],
        customer=code[days.customer[keep]],
        day=days.day[keep],
        amount=days.amount[keep],
        returned=days.returned[keep],
        rows=days.rows[keep],
        quantity=None if days.quantity is None else days.quantity[keep],
        source=days.source,
        sha256=days.sha256,
    )


def cutoff_actuals(days: CustomerDays, cutoff, horizon_days: int, time_unit: TimeUnit) -> pd.DataFrame:
    """What the customers with a purchase on or before ``cutoff`` did in ``(cutoff, cutoff + horizon_days]``:
    ``frequency`` (repeat purchase days at the cut-off, for the buckets), ``actual_purchases`` (purchase
    days in the window) and ``actual_revenue`` (net amount of every day in the window, returns included),
    indexed by customer id, as :func:`crmvalue.features.calibration_holdout_summary` defines them."""
    start = pd.Timestamp(cutoff).normalize()
    split = calibration_holdout_summary(days, start, start + pd.Timedelta(days=horizon_days), time_unit)
    return pd.DataFrame(
        {
            "frequency": split["frequency_cal"],
            "actual_purchases": split["frequency_holdout"],
            "actual_revenue": split["revenue_holdout"],
        }
    )
