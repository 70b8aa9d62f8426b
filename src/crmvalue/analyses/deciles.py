"""Decile analysis and the Pareto 80/20 figure (seed 004): customers in ten equal groups by revenue."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmvalue.analyses.common import Analysis, require_columns
from crmvalue.errors import CrmvalueError
from crmvalue.schema import PLOT_DECILES, Column, analysis_table

COLUMNS: tuple[Column, ...] = (
    Column("value_decile", "deciles", "integer", "SMALLINT", "1 for the top tenth of customers by revenue, to 10"),
)
ANALYSIS = Analysis("deciles", COLUMNS, (analysis_table("deciles"),), (PLOT_DECILES,))


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
        require_columns(revenue, ["total_sales", "orders"], "decile table")
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
