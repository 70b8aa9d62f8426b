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


def purchase_days(transactions: pd.DataFrame) -> pd.DataFrame:
    """Net amount per customer-day, without the days cancelled by returns.

    Returns a frame with ``customer_id``, ``day`` and ``amount``, sorted by customer and day.
    """
    day = transactions["date"].dt.normalize()
    net = (
        transactions.assign(day=day)
        .groupby(["customer_id", "day"], sort=True, observed=True)["amount"]
        .agg(["sum", "min"])
        .reset_index()
    )
    cancelled = (net["min"] < 0) & (net["sum"] <= 0)
    return net.loc[~cancelled, ["customer_id", "day", "sum"]].rename(columns={"sum": "amount"}).reset_index(drop=True)


def rfm_summary(
    transactions: pd.DataFrame,
    observation_end,
    time_unit: TimeUnit = "days",
) -> pd.DataFrame:
    """Per-customer ``frequency, recency, T, monetary_value`` at ``observation_end``.

    Transactions dated after the observation end (by calendar day) are ignored. Customers
    with no purchase day on or before it are absent from the result. Equal, on positive
    amounts, to ``lifetimes.utils.summary_data_from_transaction_data(..., freq="D",
    freq_multiplier=1 or 7)``.
    """
    summary, _ = rfm_summary_with_report(transactions, observation_end, time_unit)
    return summary


def rfm_summary_with_report(
    transactions: pd.DataFrame, observation_end, time_unit: TimeUnit = "days"
) -> tuple[pd.DataFrame, WindowReport]:
    end = _as_day(observation_end)
    in_window = transactions["date"].dt.normalize() <= end
    kept = transactions[in_window.to_numpy()]
    days = purchase_days(kept)
    summary = _summarise_days(days, end, time_unit)
    report = WindowReport(
        rows_after_observation_end=int((~in_window).sum()),
        customers_without_purchase=int(kept["customer_id"].nunique() - len(summary)),
    )
    return summary, report


def _summarise_days(days: pd.DataFrame, end: pd.Timestamp, time_unit: TimeUnit) -> pd.DataFrame:
    unit = DAYS_PER_UNIT[time_unit]
    grouped = days.groupby("customer_id", sort=True)
    first = grouped["day"].min()
    last = grouped["day"].max()
    count = grouped["day"].size()
    total = grouped["amount"].sum()
    # days are sorted within each customer, so the first row is the first purchase day
    first_amount = grouped["amount"].first()
    repeats = count - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(repeats > 0, (total - first_amount) / repeats.where(repeats > 0, 1), 0.0)
    summary = pd.DataFrame(
        {
            "frequency": repeats.astype("float64"),
            "recency": (last - first).dt.days / unit,
            "T": (end - first).dt.days / unit,
            "monetary_value": monetary,
        }
    )
    summary.index.name = "customer_id"
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
    day = transactions["date"].dt.normalize()
    cal = rfm_summary(transactions[(day <= cal_end).to_numpy()], cal_end, time_unit)
    if cal.empty:
        raise CrmvalueError(f"no purchases on or before the calibration end {cal_end.date()}")
    cal.columns = [f"{c}_cal" for c in cal.columns]

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
    """
    frame = pd.DataFrame(
        {"frequency": np.asarray(frequency, float), "recency": np.asarray(recency, float), "T": np.asarray(T, float)}
    )
    counts = frame.groupby(["frequency", "recency", "T"], sort=True).size()
    return counts.rename("weights").reset_index()
