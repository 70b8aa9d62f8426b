"""The retention revenue-cost method (seed 003, method 3): per acquisition cohort and overall, over
years 0..N since acquisition, the customers still buying, the retention rate, orders per customer per
year and average order value, hence revenue; its costs, profit, discounted profit and the cumulative
net present value per acquired customer. Each customer still buying gets the method's forward value.

**Years.** The data's years are counted back from the observation end: the year to the end, the year
before, and so on (calendar years when the end is 31 December). The last year always ends at the
observation end, so no year is only partly observed at the data's end: every year the data reach is
a full year, ``measured``. A customer's year 0 is the year of the first purchase (from that purchase to
the year's end: part of a year, as in any calendar-year cohort table), year k the k-th year after.

**Cohorts.** The customers whose first purchase falls in the same year of the data (on CDNOW, with
the end 1998-06-30, every customer is in the cohort 1996-07-01..1997-06-30). ``overall`` pools every
customer: the rates of year k come from the cohorts that reached year k, applied to all acquired
customers. Cohorts under ``min_cohort_customers`` are not listed (they are in ``overall``).

**Per year**, from the netted purchase days (an order is a purchase day):

- ``customers``: customers with a purchase day in the year; ``retention_rate``: customers / the
  previous year's customers (a customer back after a year away counts again);
- ``orders_per_customer_per_year`` = orders / customers; ``average_order_value`` = revenue / orders;
- ``revenue`` = customers x orders per customer x average order value (the net amount of the orders);
- ``cost_of_goods`` = revenue x (1 - margin); ``cost_to_serve`` = customers x cost to serve;
  ``acquisition_cost`` = acquired customers x acquisition cost, in year 0; ``costs`` their sum;
- ``profit`` = revenue - costs; ``discounted_profit`` = profit / (1 + discount rate)^year;
- ``cumulative_npv_per_acquired_customer``: the discounted profits of years 0..k / acquired customers.

**Projection.** A year beyond the data is ``projected``: customers = the previous year's x the
projected retention rate (``retention_projection``: ``last``, the last measured year's; ``mean``, the
mean of the measured years' 1..), with the last measured year's orders per customer and order value.
A cohort acquired in the last year of the data has no retention of its own: its later years take the
overall table's rates of those years. Without a second year in the data nothing is projected: the
table's later years are NaN and every customer's ``revenue_cost_value`` is 0.

**Per customer**, ``revenue_cost_value``: for a customer who bought in the last year of the data (at
age a, the years since acquisition), the discounted profit of the next N years, the years a+1..a+N of
the customer's cohort (of ``overall`` for a cohort not listed): the chance to be still buying in year
a+j is the product of the retention rates of years a+1..a+j, and each year brings orders per customer
x order value x margin - cost to serve, discounted by (1 + rate)^j. Every such customer of one cohort
gets the same value; a customer who did not buy in the last year gets 0. It is profit over N years,
where the BTYD ``clv`` is revenue over ``clv.months``: compare their rankings, not their levels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from crmvalue import schema
from crmvalue.analyses.common import Analysis, StrictModel, netted_days, observation_end_day
from crmvalue.analyses.deciles import value_deciles
from crmvalue.customer_days import CustomerDays, day_number
from crmvalue.errors import CrmvalueError
from crmvalue.schema import Column, analysis_table

log = logging.getLogger("crmvalue")

COLUMNS: tuple[Column, ...] = (
    Column(
        "revenue_cost_value",
        "revenue_cost",
        "money",
        "DOUBLE",
        "the revenue-cost method's discounted profit of the next N years (0 when no purchase in the last year)",
    ),
)
PLOT_REVENUE_COST = schema.PLOT_REVENUE_COST
ANALYSIS = Analysis(
    "revenue_cost",
    COLUMNS,
    (analysis_table("revenue_cost"), analysis_table("revenue_cost_vs_clv")),
    (PLOT_REVENUE_COST,),
)
SPEARMAN_METRIC = schema.REVENUE_COST_SPEARMAN
OVERALL = "overall"
MEASURED, PROJECTED = "measured", "projected"
TABLE_COLUMNS = (
    "status",
    "customers",
    "retention_rate",
    "orders_per_customer_per_year",
    "average_order_value",
    "revenue",
    "cost_of_goods",
    "cost_to_serve",
    "acquisition_cost",
    "costs",
    "profit",
    "discounted_profit",
    "cumulative_npv_per_acquired_customer",
)


class RevenueCostConfig(StrictModel):
    """The retention revenue-cost method (seed 003): horizon, costs and discounting."""

    years: int = Field(5, ge=1, le=50, description="years 0..N since acquisition in the table; the value's horizon")
    margin: float = Field(0.3, description="gross margin share of revenue: cost of goods = revenue x (1 - margin)")
    cost_to_serve: float = Field(0.0, ge=0, description="cost per customer still buying, per year")
    acquisition_cost: float = Field(0.0, ge=0, description="cost per acquired customer, in year 0")
    discount_rate: float = Field(0.1, description="annual discount rate of the profits (year k / (1 + rate)^k)")
    retention_projection: Literal["last", "mean"] = Field(
        "last", description="retention rate of projected years: the last measured year's, or the measured years' mean"
    )
    min_cohort_customers: int = Field(100, ge=1, description="smaller cohorts are only in the overall rows")

    @field_validator("margin")
    @classmethod
    def _margin_is_a_share(cls, value: float) -> float:
        if not 0 <= value <= 1:
            raise ValueError(f"margin is the gross margin share of revenue, from 0 to 1, not {value}")
        return value

    @field_validator("discount_rate")
    @classmethod
    def _rate_is_annual(cls, value: float) -> float:
        if not 0 <= value <= 1:
            raise ValueError(f"discount_rate is an annual rate from 0 to 1 (0.1 for 10%), not {value}")
        return value


@dataclass(frozen=True)
class RevenueCost:
    """What the method gives: ``table`` (index cohort, year; :data:`TABLE_COLUMNS`) and, per customer
    with a purchase day, ``value`` (``revenue_cost_value``) and ``active`` (bought in the last year)."""

    table: pd.DataFrame
    value: pd.Series
    active: pd.Series


def year_of_data(day: np.ndarray, observation_end) -> tuple[np.ndarray, np.ndarray]:
    """Each day's year of the data counted back from the observation end (0: the year to the end,
    1: the year before, ...), and the last days of years 1, 2, ... as day numbers, latest first.

    Year p covers the days after ``end - (p + 1) years`` up to ``end - p years`` (calendar years back)."""
    end = pd.Timestamp(observation_end).normalize()
    first = int(np.min(day)) if len(day) else day_number(end)
    ends: list[int] = []
    while not ends or ends[-1] >= first:  # a few dozen years at most: not a per-customer loop
        ends.append(day_number(end - pd.DateOffset(years=len(ends) + 1)))
    ascending = np.array(ends[::-1], dtype=np.int64)
    return len(ascending) - np.searchsorted(ascending, day, side="left"), np.array(ends, dtype=np.int64)


def _cohort_label(cohort: int, year_ends: np.ndarray, end_day: int) -> str:
    last = end_day if cohort == 0 else int(year_ends[cohort - 1])
    start = int(year_ends[cohort]) + 1
    return f"{pd.Timestamp(start, unit='D').date()}..{pd.Timestamp(last, unit='D').date()}"


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    return np.divide(top, bottom, out=np.full(np.shape(top), np.nan), where=np.asarray(bottom) > 0)


def _extended(
    rates: tuple[np.ndarray, np.ndarray, np.ndarray], last: int, horizon: int, rule: str, fallback=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Retention, orders per customer and order value for years 0..horizon: measured up to ``last``,
    then projected by ``rule``, or taken from ``fallback`` (the overall rates) when ``last`` is 0."""
    out = [np.full(horizon + 1, np.nan) for _ in range(3)]
    for target, source in zip(out, rates):
        target[: last + 1] = source[: last + 1]
    if last == 0 and fallback is not None:
        for target, source in zip(out, fallback):
            target[1:] = source[1 : horizon + 1]
        return out[0], out[1], out[2]
    measured = rates[0][1 : last + 1]
    if last >= 1 and not np.isnan(measured).all():
        out[0][last + 1 :] = measured[-1] if rule == "last" else np.nanmean(measured)
    out[1][last + 1 :], out[2][last + 1 :] = rates[1][last], rates[2][last]
    return out[0], out[1], out[2]


def _money(acquired: float, counts: np.ndarray, retention, orders, value, cfg: RevenueCostConfig) -> dict:
    """The table's columns of one cohort from its rates; ``counts`` are the measured customers (NaN:
    carried from the previous year by the retention rate)."""
    customers = np.empty(len(retention))
    customers[0] = acquired
    for k in range(1, len(retention)):  # over years, not customers
        previous = customers[k - 1]
        customers[k] = counts[k] if not np.isnan(counts[k]) else (0.0 if previous == 0 else previous * retention[k])
    revenue = np.where(customers == 0, 0.0, customers * orders * value)  # NaN customers stay NaN
    cost_of_goods = revenue * (1 - cfg.margin)
    serve = customers * cfg.cost_to_serve
    acquisition = np.zeros(len(retention))
    acquisition[0] = acquired * cfg.acquisition_cost
    costs = cost_of_goods + serve + acquisition
    profit = revenue - costs
    discounted = profit / (1 + cfg.discount_rate) ** np.arange(len(retention))
    return {
        "customers": customers,
        "retention_rate": retention,
        "orders_per_customer_per_year": orders,
        "average_order_value": value,
        "revenue": revenue,
        "cost_of_goods": cost_of_goods,
        "cost_to_serve": serve,
        "acquisition_cost": acquisition,
        "costs": costs,
        "profit": profit,
        "discounted_profit": discounted,
        "cumulative_npv_per_acquired_customer": np.cumsum(discounted) / acquired,
    }


def forward_value(retention, orders, value, age: int, cfg: RevenueCostConfig) -> float:
    """The discounted profit of years age+1..age+N of a customer buying in year ``age``: the chance to
    be buying in year age+j is the product of the retention rates of years age+1..age+j."""
    j = np.arange(1, cfg.years + 1)
    years = age + j
    still = np.cumprod(retention[years])
    profit = orders[years] * value[years] * cfg.margin - cfg.cost_to_serve
    terms = np.where(still == 0, 0.0, still * profit) / (1 + cfg.discount_rate) ** j
    return float(terms.sum())


def revenue_cost_method(
    transactions: pd.DataFrame | CustomerDays, observation_end=None, cfg: RevenueCostConfig | None = None
) -> RevenueCost:
    """The revenue-cost table per cohort and overall, and each customer's value (see the module)."""
    cfg = cfg or RevenueCostConfig()
    days = netted_days(transactions)
    end = observation_end_day(days, observation_end)
    end_day = day_number(end)
    bought = days.purchase_days(end_day)
    customer, amount = bought.customer, bought.amount
    if len(customer) == 0:
        raise CrmvalueError("revenue-cost method: no purchase days up to the observation end")
    # one value per purchase day (50 M on the largest inputs): the narrowest integers that hold a year of the
    # data, and no per-day array more than the cell and its first-of-year flag need
    period, year_ends = year_of_data(bought.day, end)
    period = period.astype(np.int16)  # years back from the end: a few dozen
    starts = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1]])
    per_customer = np.diff(np.r_[starts, len(customer)])
    acquired_in = period[starts]  # each customer's cohort: the year of the data of the first purchase
    age = np.repeat(acquired_in, per_customer) - period  # years since acquisition of each purchase day
    width = int(acquired_in.max()) + 1  # the oldest cohort has years 0..width-1 measured
    cell = np.repeat(acquired_in.astype(np.int32) * width, per_customer) + age
    # days are sorted by customer, then day: a customer's first day in a year of age starts a new run
    first_of_year = np.r_[True, (customer[1:] != customer[:-1]) | (age[1:] != age[:-1])]
    del age
    count = np.bincount(cell[first_of_year], minlength=width * width).reshape(width, width).astype(float)
    orders = np.bincount(cell, minlength=width * width).reshape(width, width).astype(float)
    revenue = np.bincount(cell, weights=amount, minlength=width * width).reshape(width, width)
    horizon = width - 1 + cfg.years

    # overall: year k pools the cohorts that reached it (cohort c has years 0..c)
    reached = np.arange(width)[:, None] >= np.arange(width)[None, :]
    pooled = (count * reached).sum(axis=0)
    before = np.r_[np.nan, [(count[k:, k - 1]).sum() for k in range(1, width)]]
    overall_rates = (
        np.r_[np.nan, _ratio(pooled[1:], before[1:])],
        _ratio(orders.sum(axis=0), pooled),
        _ratio(revenue.sum(axis=0), orders.sum(axis=0)),
    )
    if width == 1:
        log.warning(
            "revenue-cost method: the data hold one year up to the observation end, so no retention is measured: "
            "the later years are left empty and every revenue_cost_value is 0 (nothing is projected)"
        )
    overall = _extended(overall_rates, width - 1, horizon, cfg.retention_projection)
    acquired = count[:, 0]
    frames = {}
    cohort_rates = {}
    status = np.where(np.arange(horizon + 1) < width, MEASURED, PROJECTED)
    money = _money(acquired.sum(), np.full(horizon + 1, np.nan), *overall, cfg)
    frames[OVERALL] = pd.DataFrame({"status": status, **money})
    for c in range(width):
        if acquired[c] < cfg.min_cohort_customers:
            continue
        rates = (
            np.r_[np.nan, _ratio(count[c, 1:], count[c, :-1])],
            _ratio(orders[c], count[c]),
            _ratio(revenue[c], orders[c]),
        )
        cohort_rates[c] = _extended(rates, c, horizon, cfg.retention_projection, fallback=overall)
        counts = np.r_[count[c, : c + 1], np.full(horizon - c, np.nan)]
        status = np.where(np.arange(horizon + 1) <= c, MEASURED, PROJECTED)
        money = _money(acquired[c], counts, *cohort_rates[c], cfg)
        frames[_cohort_label(c, year_ends, end_day)] = pd.DataFrame({"status": status, **money})
    table = pd.concat(frames, names=["cohort", "year"])
    table = table[table.index.get_level_values("year") <= cfg.years]

    # per customer: every customer of cohort c is at age c; only those buying in the last year have a value
    value_of = np.array([forward_value(*cohort_rates.get(c, overall), c, cfg) for c in range(width)])
    active = period[starts + per_customer - 1] == 0
    ids = pd.Index(bought.ids[customer[starts]], name="customer_id")
    # no projection (one year of data, or a cohort whose rates are undefined): nothing is forecast, 0,
    # so that the export stays finite
    value = np.where(active, np.nan_to_num(value_of[acquired_in], nan=0.0), 0.0)
    return RevenueCost(
        table,
        pd.Series(value, index=ids, name="revenue_cost_value"),
        pd.Series(active, index=ids, name="still_buying"),
    )


def spearman(first: pd.Series, second: pd.Series) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either is constant."""
    both = pd.concat([first, second], axis=1).dropna()
    ranks = both.rank().to_numpy()
    if len(both) < 2 or (ranks.std(axis=0) == 0).any():
        return float("nan")
    return float(np.corrcoef(ranks[:, 0], ranks[:, 1])[0, 1])


def clv_comparison(clv: pd.Series, value: pd.Series, active: pd.Series) -> pd.DataFrame:
    """Per CLV decile (1: the highest BTYD ``clv``): customers, the share still buying in the last
    year, mean ``clv`` (revenue over the CLV horizon), mean ``revenue_cost_value`` (profit over N
    years) and their ratio. Where the ratio is steady the two methods rank alike."""
    deciles = value_deciles(clv.rename("clv"))
    frame = pd.DataFrame(
        {
            "clv": clv,
            "revenue_cost_value": value.reindex(clv.index),
            "still_buying": active.reindex(clv.index, fill_value=False),
        }
    )
    grouped = frame.groupby(deciles.to_numpy())
    table = pd.DataFrame(
        {
            "customers": grouped.size(),
            "still_buying_share": grouped["still_buying"].mean(),
            "mean_clv": grouped["clv"].mean(),
            "mean_revenue_cost_value": grouped["revenue_cost_value"].mean(),
        }
    )
    table["value_per_clv"] = _ratio(table["mean_revenue_cost_value"].to_numpy(), table["mean_clv"].to_numpy())
    table.index.name = "clv_decile"
    return table
