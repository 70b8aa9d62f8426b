"""CRM analyses from the source documents: RFM scores, CPM groups, deciles, the CRM value score,
retention and cohorts, and market segments (``../shared/docs/domain.md``, sections 1-4).

Every function takes pandas objects and returns a new one, indexed by ``customer_id`` where the
result is per customer; transactions may be canonical rows or their netted
:class:`~crmvalue.customer_days.CustomerDays`. Orders are *purchase days* (:mod:`crmvalue.customer_days`):
a customer's transactions on one day, returns netted, a day cancelled by a return dropped, as in
the rest of the package. Everything is vectorised: no per-customer Python loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crmvalue.customer_days import CustomerDays, customer_days, day_number

# the transactions' own validators, so an interactions file fails with the same messages
from crmvalue.data import existing_file, frame_row, parse_customer_ids, parse_timestamps, read_file
from crmvalue.errors import CrmvalueError

log = logging.getLogger("crmvalue")


class _Strict(BaseModel):
    # a misspelt key in a YAML file is an error, not a silently ignored setting
    model_config = ConfigDict(extra="forbid")


def _end_day(days: CustomerDays, observation_end) -> pd.Timestamp:
    if observation_end is None:
        return days.last_date
    return pd.Timestamp(observation_end).normalize()


def _up_to(frame: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    return frame[(frame["date"].dt.normalize() <= end).to_numpy()]


def _netted(transactions: pd.DataFrame | CustomerDays) -> CustomerDays:
    if not isinstance(transactions, CustomerDays):
        _require(transactions, ["customer_id", "date", "amount"], "transactions")
    return customer_days(transactions)


def _by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    """A per-customer frame indexed by id, whether the id is the index or a ``customer_id`` column."""
    return frame.set_index("customer_id") if "customer_id" in frame.columns else frame


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CrmvalueError(
            f"{what}: missing column {', '.join(map(repr, missing))}; the columns are {', '.join(map(str, frame.columns))}"
        )


# --------------------------------------------------------------------------------------------
# Customer measures (seed 004, CPM): orders, sales, unit price, span, inactivity
# --------------------------------------------------------------------------------------------

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


def _median_by_group(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
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
    days = _netted(transactions)
    end = _end_day(days, observation_end)
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
    median_gap = _median_by_group(np.diff(day)[same], position[1:][same], len(codes))

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


# --------------------------------------------------------------------------------------------
# RFM scores and named segments (seeds 003, 004)
# --------------------------------------------------------------------------------------------


class RfmSegmentRule(_Strict):
    """A named box of scores: every customer whose R, F and M fall in the closed ranges."""

    name: str
    r: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)

    @field_validator("r", "f", "m")
    @classmethod
    def _score_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high <= 5:
            raise ValueError(f"score range {list(value)} must be [low, high] with 1 <= low <= high <= 5")
        return value


# The classic R x F grid of RFM practice (M is left free; a rule may restrict it). Every one of
# the 125 score combinations is in exactly one box; :class:`RfmConfig` checks a custom mapping.
DEFAULT_RFM_SEGMENTS: tuple[RfmSegmentRule, ...] = (
    RfmSegmentRule(name="champions", r=(5, 5), f=(4, 5)),
    RfmSegmentRule(name="loyal", r=(3, 4), f=(4, 5)),
    RfmSegmentRule(name="potential loyalists", r=(4, 5), f=(2, 3)),
    RfmSegmentRule(name="new", r=(5, 5), f=(1, 1)),
    RfmSegmentRule(name="promising", r=(4, 4), f=(1, 1)),
    RfmSegmentRule(name="need attention", r=(3, 3), f=(3, 3)),
    RfmSegmentRule(name="about to sleep", r=(3, 3), f=(1, 2)),
    RfmSegmentRule(name="at risk", r=(1, 2), f=(3, 4)),
    RfmSegmentRule(name="can't lose", r=(1, 2), f=(5, 5)),
    RfmSegmentRule(name="hibernating", r=(2, 2), f=(1, 2)),
    RfmSegmentRule(name="lost", r=(1, 1), f=(1, 2)),
)


def rfm_segment_lookup(rules: Sequence[RfmSegmentRule | dict]) -> tuple[np.ndarray, list[str]]:
    """Segment number of each of the 125 score combinations, at ``25*(r-1) + 5*(f-1) + (m-1)``.

    Raises ``ValueError`` naming the first combination that no rule or two rules cover.
    """
    rules = [RfmSegmentRule.model_validate(rule) for rule in rules]
    r, f, m = (g.ravel() for g in np.meshgrid(np.arange(1, 6), np.arange(1, 6), np.arange(1, 6), indexing="ij"))
    hits = np.array(
        [(r >= x.r[0]) & (r <= x.r[1]) & (f >= x.f[0]) & (f <= x.f[1]) & (m >= x.m[0]) & (m <= x.m[1]) for x in rules]
    ).reshape(len(rules), 125)
    count = hits.sum(axis=0)
    if (count != 1).any():
        i = int(np.flatnonzero(count != 1)[0])
        combo = f"{r[i]}{f[i]}{m[i]}"
        if count[i] == 0:
            raise ValueError(f"RFM score {combo} is in no segment; every score combination needs exactly one")
        both = [rules[j].name for j in np.flatnonzero(hits[:, i])]
        raise ValueError(f"RFM score {combo} is in several segments ({', '.join(both)}); segments must not overlap")
    return hits.argmax(axis=0), [rule.name for rule in rules]


class RfmConfig(_Strict):
    """RFM scoring (seed 003): the basis of R, F and M, and the named segments."""

    basis: Literal["summary", "raw"] = Field(
        "summary",
        description="'summary': R = T - recency, F = frequency, M = monetary_value of the Backbone summary; "
        "'raw': days since the last purchase, number of orders, total spend",
    )
    segments: list[RfmSegmentRule] = Field(
        list(DEFAULT_RFM_SEGMENTS), description="named boxes of (R, F, M) scores; each combination in exactly one"
    )

    @model_validator(mode="after")
    def _segments_cover_every_score(self) -> RfmConfig:
        rfm_segment_lookup(self.segments)
        return self


def quintile_scores(values, higher_is_better: bool = True) -> np.ndarray:
    """Scores 1-5 by quintiles, equal for equal values: ``1 + floor(5 * share strictly worse)``.

    A score k means the customer beats at least (k-1)/5 of all customers. Without ties the
    five groups are equal (to one customer); a value shared by many customers is scored by
    the share below the whole tied block, so when most customers have frequency 0 they all
    get F = 1 and the scores stay meaningful instead of failing as quantile edges would.
    """
    x = np.asarray(values, dtype=float)
    if np.isnan(x).any():
        raise CrmvalueError(f"RFM scores: {int(np.isnan(x).sum())} missing values; score only complete rows")
    if len(x) == 0:
        return np.array([], dtype=np.int64)
    worse = pd.Series(x).rank(method="min", ascending=higher_is_better).to_numpy() - 1
    return (1 + np.floor(5 * worse / len(x))).astype(np.int64)


_RFM_CODES = np.array([f"{r}{f}{m}" for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)], dtype=object)


def rfm_scores(
    recency_days,
    frequency,
    monetary,
    segments: Sequence[RfmSegmentRule | dict] = DEFAULT_RFM_SEGMENTS,
) -> pd.DataFrame:
    """R, F and M scores 1-5, ``rfm_score`` (e.g. ``"545"``), ``rfm_total`` and ``rfm_segment``.

    ``recency_days`` is the time since the last purchase (less is better, so more recent means
    a higher R; any time unit ranks the same), ``frequency`` and ``monetary`` more is better.
    Scoring is :func:`quintile_scores` (seed 003: relative grades, R, F and M each in five).
    ``segments`` maps every score combination to exactly one name (:data:`DEFAULT_RFM_SEGMENTS`).
    The index is that of ``recency_days`` when it is a Series.
    """
    try:
        lookup, names = rfm_segment_lookup(segments)
    except ValueError as exc:
        raise CrmvalueError(str(exc).splitlines()[0]) from None
    lengths = {len(recency_days), len(frequency), len(monetary)}
    if len(lengths) > 1:
        raise CrmvalueError(f"RFM scores: recency, frequency and monetary have different lengths {sorted(lengths)}")
    index = recency_days.index if isinstance(recency_days, pd.Series) else pd.RangeIndex(len(recency_days))
    r = quintile_scores(recency_days, higher_is_better=False)
    f = quintile_scores(frequency)
    m = quintile_scores(monetary)
    cell = 25 * (r - 1) + 5 * (f - 1) + (m - 1)  # 0..124
    segment = np.asarray(names, dtype=object)[lookup[cell]]
    return pd.DataFrame(
        {
            "rfm_r": r,
            "rfm_f": f,
            "rfm_m": m,
            "rfm_score": _RFM_CODES[cell],  # a lookup of the 125 codes, not millions of int-to-text conversions
            "rfm_total": r + f + m,
            "rfm_segment": segment,
        },
        index=index,
    )


def customer_rfm(customers: pd.DataFrame, cfg: RfmConfig | None = None) -> pd.DataFrame:
    """:func:`rfm_scores` on the basis of ``cfg``.

    ``customers`` holds ``frequency, recency, T, monetary_value`` (the Backbone summary or the
    predictions) for the ``summary`` basis, and the :func:`customer_measures` columns
    ``inactivity_days, orders, total_sales`` for ``raw``.
    """
    cfg = cfg or RfmConfig()
    frame = _by_customer(customers)
    if cfg.basis == "summary":
        _require(frame, ["frequency", "recency", "T", "monetary_value"], "RFM scores on the summary basis")
        # T - recency in weeks carries float noise (1e-13) that would split customers who last
        # bought on the same day across a quintile cut
        recency = (frame["T"] - frame["recency"]).round(9)
        frequency, monetary = frame["frequency"], frame["monetary_value"]
    else:
        _require(frame, ["inactivity_days", "orders", "total_sales"], "RFM scores on the raw basis")
        recency, frequency, monetary = frame["inactivity_days"], frame["orders"], frame["total_sales"]
    return rfm_scores(recency, frequency, monetary, cfg.segments)


def rfm_segment_table(
    rfm: pd.DataFrame, segments: Sequence[RfmSegmentRule | dict] = DEFAULT_RFM_SEGMENTS
) -> pd.DataFrame:
    """Customers, share and mean R, F, M per segment, in the mapping's order (empty ones too)."""
    names = list(dict.fromkeys(RfmSegmentRule.model_validate(rule).name for rule in segments))  # a name may span rules
    grouped = rfm.groupby("rfm_segment")
    table = pd.DataFrame(
        {
            "customers": grouped.size(),
            "mean_r": grouped["rfm_r"].mean(),
            "mean_f": grouped["rfm_f"].mean(),
            "mean_m": grouped["rfm_m"].mean(),
        }
    ).reindex(names)
    table["customers"] = table["customers"].fillna(0).astype(int)
    table.insert(1, "share", table["customers"] / max(len(rfm), 1))
    table.index.name = "rfm_segment"
    return table


# --------------------------------------------------------------------------------------------
# CPM, customer portfolio management: ten groups (seed 004)
# --------------------------------------------------------------------------------------------

CPM_LABELS = {
    1: "new",
    2: "somewhat active",
    3: "active",
    4: "stable",
    5: "loyal",
    6: "lapsed after first purchase",
    7: "lapsed",
    8: "needs retention",
    9: "ordinary retention",
    10: "important retention",
}


class CpmConfig(_Strict):
    """Thresholds of the CPM groups. Sales thresholds default to a quantile of the customers'
    total sales, so they follow the business's currency and basket size; an absolute value
    overrides the quantile."""

    lapse_factor: float = Field(2.0, gt=0, description="lapsed when inactivity > factor x the customer's median gap")
    lapse_floor_days: int = Field(
        180, ge=0, description="...and > this many days; one-order customers lapse after the floor alone"
    )
    active_min_orders: int = Field(4, ge=2, description="'active' (steady repeats) from this many orders")
    stable_sales: float | None = Field(None, description="'stable': total sales at or above this within a short span")
    stable_sales_quantile: float = Field(
        0.75, gt=0, lt=1, description="default stable_sales: this quantile of total sales"
    )
    loyal_sales: float | None = Field(None, description="'loyal': total sales at or above this over a long span")
    loyal_sales_quantile: float = Field(
        0.75, gt=0, lt=1, description="default loyal_sales: this quantile of total sales"
    )
    loyal_min_span_days: int = Field(
        365, gt=0, description="a span (first to last purchase) this long is 'long'; shorter is 'short'"
    )


def cpm_thresholds(measures: pd.DataFrame, cfg: CpmConfig | None = None) -> dict[str, float]:
    """The sales thresholds in force: the absolute ones of ``cfg`` or its quantiles of total sales."""
    cfg = cfg or CpmConfig()
    sales = measures["total_sales"]

    def resolve(absolute: float | None, quantile: float) -> float:
        if absolute is not None:
            return float(absolute)
        return float(sales.quantile(quantile)) if len(sales) else np.inf

    return {
        "stable_sales": resolve(cfg.stable_sales, cfg.stable_sales_quantile),
        "loyal_sales": resolve(cfg.loyal_sales, cfg.loyal_sales_quantile),
    }


def cpm_groups(measures: pd.DataFrame, cfg: CpmConfig | None = None) -> pd.DataFrame:
    """CPM group 1-10 and its label for each customer of :func:`customer_measures` (seed 004).

    A customer is **lapsed** when ``inactivity_days > max(lapse_factor * median_gap_days,
    lapse_floor_days)`` (the floor alone for one-order customers): gone for twice their own
    rhythm, and at least half a year by default. The profile is the first rule that holds:

    1. **new**: one order;
    2. **loyal**: ``total_sales >= loyal_sales`` over a span of ``>= loyal_min_span_days``;
    3. **stable**: ``total_sales >= stable_sales`` over a shorter span;
    4. **active** (steady repeats): ``orders >= active_min_orders``;
    5. **somewhat active**: the remaining customers, who have two or more orders.

    Groups 1-5 are new, somewhat active, active, stable, loyal while active, 6-10 the same
    profiles lapsed; so every customer is in exactly one group. Defaults: sales thresholds the
    0.75 quantile of total sales (the top quarter is "high" whatever the currency; on the CDNOW
    sample about 105 dollars), four orders for steady repeats (three repeats are a habit rather
    than a coincidence), a year for a long span (a full seasonal cycle). The resolved sales
    thresholds are in ``result.attrs["thresholds"]``.
    """
    cfg = cfg or CpmConfig()
    _require(measures, ["orders", "total_sales", "span_days", "inactivity_days", "median_gap_days"], "CPM groups")
    thresholds = cpm_thresholds(measures, cfg)
    orders = measures["orders"].to_numpy(dtype=float)
    if (orders < 1).any() or np.isnan(orders).any():
        raise CrmvalueError("CPM groups: every customer needs at least one order; pass customer_measures(...) output")
    sales = measures["total_sales"].to_numpy(dtype=float)
    span = measures["span_days"].to_numpy(dtype=float)
    gap = measures["median_gap_days"].to_numpy(dtype=float)
    limit = np.fmax(cfg.lapse_factor * gap, cfg.lapse_floor_days)  # fmax: a NaN gap leaves the floor
    lapsed = measures["inactivity_days"].to_numpy(dtype=float) > limit
    long_span = span >= cfg.loyal_min_span_days
    profile = np.select(
        [
            orders == 1,
            (sales >= thresholds["loyal_sales"]) & long_span,
            (sales >= thresholds["stable_sales"]) & ~long_span,
            orders >= cfg.active_min_orders,
        ],
        [1, 5, 4, 3],
        default=2,
    )
    group = profile + 5 * lapsed
    result = pd.DataFrame(
        {"cpm_group": group.astype(np.int64), "cpm_label": pd.Series(group).map(CPM_LABELS).to_numpy(dtype=object)},
        index=measures.index,
    )
    result.attrs["thresholds"] = thresholds
    return result


def cpm_table(measures: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Per CPM group 1-10 (empty ones too): customers, share, sales and its share, mean orders
    and mean inactivity."""
    frame = measures.join(groups[["cpm_group"]], how="inner")
    grouped = frame.groupby("cpm_group")
    table = pd.DataFrame(
        {
            "customers": grouped.size(),
            "total_sales": grouped["total_sales"].sum(),
            "mean_orders": grouped["orders"].mean(),
            "mean_inactivity_days": grouped["inactivity_days"].mean(),
        }
    ).reindex(list(CPM_LABELS))
    table["customers"] = table["customers"].fillna(0).astype(int)
    table["total_sales"] = table["total_sales"].fillna(0.0)
    total = frame["total_sales"].sum()
    table.insert(0, "cpm_label", [CPM_LABELS[g] for g in table.index])
    table.insert(2, "share", table["customers"] / max(len(frame), 1))
    table.insert(4, "sales_share", table["total_sales"] / total if total else np.nan)
    table.index.name = "cpm_group"
    return table


# --------------------------------------------------------------------------------------------
# Decile analysis, Pareto 80/20 (seed 004)
# --------------------------------------------------------------------------------------------


def value_deciles(revenue: pd.Series) -> pd.Series:
    """``value_decile`` 1 (top spenders) to 10, in ten equal groups (sizes differ by at most one).

    Customers are sorted by revenue, highest first, ties by customer id; the one at position
    ``p`` of ``n`` is in decile ``floor(10 p / n) + 1``. So with fewer than ten customers the
    deciles stay positions in the ranking (3 customers: deciles 1, 4 and 7) and some are empty.
    """
    values = revenue.to_numpy(dtype=float)
    if np.isnan(values).any():
        raise CrmvalueError(f"value deciles: {int(np.isnan(values).sum())} customers have no revenue; fill them with 0")
    n = len(values)
    order = np.lexsort((np.asarray(revenue.index.astype(str)), -values))
    decile = np.empty(n, dtype=np.int64)
    decile[order] = np.arange(n) * 10 // max(n, 1) + 1
    return pd.Series(decile, index=revenue.index, name="value_decile")


def decile_table(
    revenue: pd.Series | pd.DataFrame, orders: pd.Series | None = None, deciles: pd.Series | None = None
) -> pd.DataFrame:
    """Per value decile 1-10: customers, revenue, revenue share, cumulative share, average
    order value (revenue / orders) and average frequency (orders per customer).

    ``revenue`` is a Series per customer, with ``orders`` beside it, or a
    :func:`customer_measures` frame, whose ``total_sales`` and ``orders`` are used. ``deciles``
    defaults to :func:`value_deciles` of the revenue.
    """
    if isinstance(revenue, pd.DataFrame):
        _require(revenue, ["total_sales", "orders"], "decile table")
        orders = revenue["orders"] if orders is None else orders
        revenue = revenue["total_sales"]
    if orders is None:
        raise CrmvalueError("decile table: pass the orders per customer, or a customer_measures frame")
    deciles = value_deciles(revenue) if deciles is None else deciles
    frame = pd.DataFrame(
        {"revenue": revenue, "orders": orders.reindex(revenue.index), "decile": deciles.reindex(revenue.index)}
    )
    grouped = frame.groupby("decile")
    table = pd.DataFrame(
        {"customers": grouped.size(), "revenue": grouped["revenue"].sum(), "orders": grouped["orders"].sum()}
    ).reindex(range(1, 11), fill_value=0)
    total = frame["revenue"].sum()
    table["revenue_share"] = table["revenue"] / total if total else np.nan
    table["cumulative_share"] = table["revenue_share"].cumsum()
    table["average_order_value"] = table["revenue"] / table["orders"].where(table["orders"] > 0)
    table["average_frequency"] = table["orders"] / table["customers"].where(table["customers"] > 0)
    table.index.name = "value_decile"
    return table[
        ["customers", "revenue", "revenue_share", "cumulative_share", "average_order_value", "average_frequency"]
    ]


def pareto_share(revenue: pd.Series, top: float = 0.2) -> float:
    """Share of all revenue from the top ``top`` fraction of customers (the 80/20 figure).

    Read off the cumulative revenue curve with the customers sorted highest first, linearly
    between customers when ``top * n`` is not whole. NaN when the total revenue is not positive.
    """
    if not 0 <= top <= 1:
        raise CrmvalueError(f"pareto share: top must be a fraction between 0 and 1, not {top}")
    values = np.sort(revenue.to_numpy(dtype=float))[::-1]
    total = values.sum()
    if len(values) == 0 or not total > 0:
        return float("nan")
    cumulative = np.r_[0.0, np.cumsum(values)]
    return float(np.interp(top * len(values), np.arange(len(values) + 1), cumulative) / total)


# --------------------------------------------------------------------------------------------
# The CRM value score (seed 000)
# --------------------------------------------------------------------------------------------

CRM_COMPONENTS = ("interaction", "purchase", "satisfaction", "loyalty")
DEFAULT_CRM_WEIGHTS = {"interaction": 0.2, "purchase": 0.4, "satisfaction": 0.2, "loyalty": 0.2}


class CrmValueConfig(_Strict):
    """Weights of the CRM value components (seed 000) and the grade boundaries."""

    weights: dict[Literal["interaction", "purchase", "satisfaction", "loyalty"], float] = Field(
        dict(DEFAULT_CRM_WEIGHTS),
        description="alpha, beta, gamma, delta of seed 000; renormalised over present components",
    )
    high_from: float = Field(70.0, ge=0, le=100, description="crm_value at or above this is 'high'")
    medium_from: float = Field(
        40.0, ge=0, le=100, description="at or above this (and below high_from) 'medium'; below, 'low'"
    )
    loyalty_tenure_weight: float = Field(
        0.5, ge=0, le=1, description="loyalty = (1 - w) x repeat-order percentile + w x span percentile"
    )
    satisfaction_column: str | None = Field(None, description="numeric column of the customer table, rescaled to 0-100")
    satisfaction_scale: tuple[float, float] | None = Field(
        None, description="the survey's own [min, max], e.g. [1, 5]; default: the observed min and max"
    )

    @model_validator(mode="after")
    def _check(self) -> CrmValueConfig:
        _check_weights(self.weights, ValueError)
        if self.medium_from > self.high_from:
            raise ValueError(f"medium_from ({self.medium_from}) must not be above high_from ({self.high_from})")
        return self


def _check_weights(weights: dict, error: type[Exception]) -> None:
    unknown = set(weights) - set(CRM_COMPONENTS)
    if unknown:
        raise error(f"unknown CRM value component {', '.join(sorted(unknown))}; use {', '.join(CRM_COMPONENTS)}")
    if any(not np.isfinite(w) or w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
        raise error(f"CRM value weights must be >= 0 with a positive sum, not {weights}")


def percentile_score(values: pd.Series) -> pd.Series:
    """Percentile rank x 100 (mid-rank: share below plus half the share equal), ties equal.

    0 to 100; all customers equal score 50. Missing values stay missing.
    """
    ranks = values.rank(method="average")
    return (ranks - 0.5) / values.notna().sum() * 100.0


def purchase_score(revenue: pd.Series) -> pd.Series:
    """Purchase component: the revenue percentile x 100 (seed 000, 'purchase amount')."""
    return percentile_score(revenue.astype(float)).rename("purchase")


def loyalty_score(measures: pd.DataFrame, tenure_weight: float = 0.5) -> pd.Series:
    """Loyalty component from repeat behaviour (seeds 000, 001: loyalty is repeat purchase):
    ``(1 - tenure_weight)`` x percentile of repeat orders + ``tenure_weight`` x percentile of
    the purchase span, so two customers with equal repeats rank by how long they kept buying."""
    repeats = percentile_score((measures["orders"] - 1).astype(float))
    tenure = percentile_score(measures["span_days"].astype(float))
    return ((1 - tenure_weight) * repeats + tenure_weight * tenure).rename("loyalty")


def load_interactions(
    source: str | Path | pd.DataFrame,
    id_col: str = "customer_id",
    date_col: str = "date",
    channel_col: str | None = "channel",
    date_format: str | None = None,
) -> pd.DataFrame:
    """An interactions table (customer id, timestamp, optional channel), validated like the
    transactions: columns ``customer_id`` (text), ``date`` and ``channel`` when named.
    One-line :class:`CrmvalueError` naming the file, column and first bad row otherwise."""
    if isinstance(source, pd.DataFrame):
        raw, name, where = source.reset_index(drop=True), "interactions (DataFrame)", frame_row(source)
    else:
        path = existing_file(source)
        raw, where = read_file(path)
        name = str(path)
    if len(raw) == 0:
        raise CrmvalueError(f"{name}: no interactions (0 rows)")
    wanted = [id_col, date_col] + ([channel_col] if channel_col else [])
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise CrmvalueError(
            f"{name}: missing column {', '.join(map(repr, missing))}; the columns are {', '.join(map(str, raw.columns))}"
        )
    frame = pd.DataFrame(
        {
            "customer_id": parse_customer_ids(raw[id_col], name, id_col, where),
            "date": parse_timestamps(raw[date_col], name, date_col, date_format, where),
        }
    )
    if channel_col:
        frame["channel"] = raw[channel_col].astype("string").fillna("unknown").astype(object).to_numpy()
    return frame.reset_index(drop=True)


def interaction_score(
    customers: pd.Index,
    interactions: pd.DataFrame | None = None,
    orders: pd.Series | None = None,
    observation_end=None,
) -> pd.Series:
    """Interaction component: percentile of each customer's number of interactions (0 for a
    customer without any), those after ``observation_end`` ignored; without an interactions
    table, the percentile of purchase frequency (``orders``), with a warning."""
    if interactions is None:
        if orders is None:
            raise CrmvalueError("interaction score: pass an interactions table or the orders per customer")
        log.warning("CRM value: no interactions table; the interaction component is purchase frequency")
        return percentile_score(orders.reindex(customers).astype(float)).rename("interaction")
    if observation_end is not None:
        interactions = _up_to(interactions, pd.Timestamp(observation_end).normalize())
    counts = interactions.groupby("customer_id").size().reindex(customers, fill_value=0)
    return percentile_score(counts.astype(float)).rename("interaction")


def satisfaction_score(
    values: pd.Series, customers: pd.Index | None = None, scale: tuple[float, float] | None = None
) -> pd.Series:
    """Satisfaction component: a numeric survey column min-max rescaled to 0-100, on the
    survey's own ``scale`` when given (e.g. ``(1, 5)``), else the observed min and max.
    Customers without an answer are missing; observed values all equal without a ``scale``
    carry no information and the component is missing for everybody."""
    if customers is not None:
        values = values.reindex(customers)
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    if numbers.notna().sum() < values.notna().sum():
        raise CrmvalueError(f"satisfaction column '{values.name}': values must be numeric")
    low, high = scale if scale is not None else (numbers.min(), numbers.max())
    if not high > low:
        return pd.Series(np.nan, index=numbers.index, name="satisfaction")
    return ((numbers.clip(low, high) - low) / (high - low) * 100.0).rename("satisfaction")


def crm_components(
    measures: pd.DataFrame,
    interactions: pd.DataFrame | None = None,
    satisfaction: pd.Series | None = None,
    cfg: CrmValueConfig | None = None,
    observation_end=None,
) -> pd.DataFrame:
    """The four components of the CRM value score for the customers of :func:`customer_measures`:
    purchase from ``total_sales``, loyalty from repeats and span, interaction from the
    interactions table (else from orders), satisfaction from ``satisfaction`` (a Series by
    customer id; absent when None)."""
    cfg = cfg or CrmValueConfig()
    index = measures.index
    components = pd.DataFrame(
        {
            "interaction": interaction_score(index, interactions, measures["orders"], observation_end),
            "purchase": purchase_score(measures["total_sales"]),
            "loyalty": loyalty_score(measures, cfg.loyalty_tenure_weight),
        },
        index=index,
    )
    if satisfaction is not None:
        components["satisfaction"] = satisfaction_score(satisfaction, index, cfg.satisfaction_scale)
    return components[[c for c in CRM_COMPONENTS if c in components.columns]]


def crm_value_score(
    components: pd.DataFrame,
    weights: dict[str, float] | None = None,
    grades: tuple[float, float] = (70.0, 40.0),
) -> pd.DataFrame:
    """``crm_value = α·interaction + β·purchase + γ·satisfaction + δ·loyalty`` (seed 000) and its grade.

    Each component is a 0-100 score. A component whose column is absent or all missing is
    dropped and the weights of the others are renormalised to sum to one, with a warning; a
    customer missing a component gets the same renormalisation over what they have. The
    weights default to the seed's 0.2, 0.4, 0.2, 0.2. Note: with the seed's scores 80, 90, 85,
    75 the formula gives 16 + 36 + 17 + 15 = 84; the seed prints 83, an arithmetic slip.

    ``grades`` is ``(high_from, medium_from)``: ``crm_grade`` is "high" at or above the first,
    "medium" at or above the second, else "low".
    """
    weights = dict(DEFAULT_CRM_WEIGHTS if weights is None else weights)
    _check_weights(weights, CrmvalueError)
    high_from, medium_from = grades
    if medium_from > high_from:
        raise CrmvalueError(f"CRM grades: medium_from ({medium_from}) must not be above high_from ({high_from})")
    present = [c for c in weights if c in components.columns and components[c].notna().any() and weights[c] > 0]
    dropped = [c for c in weights if c not in present and weights[c] > 0]
    if not present:
        raise CrmvalueError(f"CRM value: none of the components {', '.join(weights)} has any score")
    if dropped:
        total = sum(weights[c] for c in present)
        log.warning(
            "CRM value: no %s score; weights renormalised over %s",
            ", ".join(dropped),
            ", ".join(f"{c} {weights[c] / total:.3g}" for c in present),
        )
    scores = components[present].to_numpy(dtype=float)
    if np.nanmin(scores) < 0 or np.nanmax(scores) > 100:
        raise CrmvalueError("CRM value: component scores must be between 0 and 100")
    w = np.array([weights[c] for c in present])
    known = ~np.isnan(scores)
    partial = (~known).any(axis=1) & known.any(axis=1)
    if partial.any():
        log.warning(
            "CRM value: %d of %d customers miss a component; their weights are renormalised",
            int(partial.sum()),
            len(scores),
        )
    weight_sum = known @ w
    value = np.divide(
        np.where(known, scores, 0.0) @ w, weight_sum, out=np.full(len(scores), np.nan), where=weight_sum > 0
    )
    grade = np.select(
        [value >= high_from, value >= medium_from, ~np.isnan(value)], ["high", "medium", "low"], default=None
    )
    return pd.DataFrame({"crm_value": value, "crm_grade": grade.astype(object)}, index=components.index)


# --------------------------------------------------------------------------------------------
# Retention and cohorts (seed 003, retention revenue-cost method)
# --------------------------------------------------------------------------------------------

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
    each purchase day's ``period`` and ``amount``, and the sorted distinct (``customer`` code, ``ordinal``)
    pairs. Build it once with :func:`customer_periods` and pass it to both instead of the transactions."""

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
    """Purchase days (``period``, ``amount``), and the sorted distinct (customer code, period) pairs."""
    netted = _netted(transactions)
    keep = netted.purchase
    if observation_end is not None:
        keep &= netted.day <= day_number(pd.Timestamp(observation_end).normalize())
    code = netted.customer[keep].astype(np.int64)
    ordinal = _period_ordinals(netted.day[keep], period)
    days = pd.DataFrame({"period": ordinal, "amount": netted.amount[keep]})
    if len(days) == 0:
        return days, code, ordinal
    # one int64 key per (customer, period); the days are sorted by customer, then day, so the keys are
    # sorted already and the distinct pairs are where the key changes (no sort of tens of millions of rows)
    low = ordinal.min()
    width = np.int64(ordinal.max() - low + 1)
    key = code * width + (ordinal - low)
    pairs = key[np.r_[True, key[1:] != key[:-1]]]
    return days, pairs // width, pairs % width + low


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
    orders = np.bincount(days["period"].to_numpy() - periods[0], minlength=size)
    revenue = np.bincount(days["period"].to_numpy() - periods[0], weights=days["amount"].to_numpy(), minlength=size)
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


# --------------------------------------------------------------------------------------------
# Market segmentation (seed 004)
# --------------------------------------------------------------------------------------------

MISSING_SEGMENT = "(missing)"


def segment_table(
    predictions: pd.DataFrame,
    attributes: pd.DataFrame,
    column: str,
    revenue: str | pd.Series = "current_value",
    max_levels: int = 10,
) -> pd.DataFrame:
    """Per value of a customer attribute (seed 004, market segmentation): customers, repeat
    purchase rate (share with ``frequency > 0``), mean CLV, mean churn probability (when the
    predictions have ``churn_probability``) and revenue share.

    ``revenue`` is a column of the predictions (default ``current_value``, the revenue in the
    current-value window) or a Series by customer id, e.g. ``customer_measures(...).total_sales``.
    Customers without a row or a value in ``attributes`` form the segment ``"(missing)"``, listed
    last. A numeric attribute with more than ``max_levels`` values is cut into quartiles.
    """
    frame = _by_customer(predictions)
    _require(frame, ["frequency", "clv"], "segment table")
    if column not in attributes.columns:
        raise CrmvalueError(
            f"segment table: no attribute column '{column}'; the columns are {', '.join(map(str, attributes.columns))}"
        )
    values = attributes[column].reindex(frame.index)
    if pd.api.types.is_numeric_dtype(values.dtype) and values.nunique() > max_levels:
        values = pd.qcut(values, 4, duplicates="drop")
    segment = values.astype(object).where(values.notna(), MISSING_SEGMENT).astype(str)
    # categories (and quartiles) keep their own order; other values sort; "(missing)" comes last
    levels = (
        [str(c) for c in values.cat.categories]
        if isinstance(values.dtype, pd.CategoricalDtype)
        else sorted(segment[segment != MISSING_SEGMENT].unique())
    )
    if isinstance(revenue, str):
        _require(frame, [revenue], "segment table")
        money = frame[revenue]
    else:
        money = revenue.reindex(frame.index).fillna(0.0)
    data = pd.DataFrame(
        {
            "segment": segment.to_numpy(),
            "repeat": (frame["frequency"] > 0).to_numpy(),
            "clv": frame["clv"].to_numpy(),
            "revenue": money.to_numpy(dtype=float),
        },
        index=frame.index,
    )
    if "churn_probability" in frame.columns:
        data["churn_probability"] = frame["churn_probability"].to_numpy(dtype=float)
    grouped = data.groupby("segment", sort=True)
    table = pd.DataFrame(
        {
            "customers": grouped.size(),
            "repeat_purchase_rate": grouped["repeat"].mean(),
            "mean_clv": grouped["clv"].mean(),
        }
    )
    if "churn_probability" in data.columns:
        table["mean_churn_probability"] = grouped["churn_probability"].mean()
    total = data["revenue"].sum()
    table["revenue_share"] = grouped["revenue"].sum() / total if total else np.nan
    table = table.reindex([level for level in levels + [MISSING_SEGMENT] if level in table.index])
    table.index.name = column
    return table
