"""CPM, customer portfolio management (seed 004): ten groups, five profiles each active or lapsed,
from the :func:`~crmvalue.analyses.customer_measures`."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from crmvalue.analyses.common import Analysis, StrictModel, require_columns
from crmvalue.errors import CrmvalueError
from crmvalue.schema import PLOT_CPM_GROUPS, Column, analysis_table

COLUMNS: tuple[Column, ...] = (
    Column("cpm_group", "cpm", "integer", "SMALLINT", "CPM group 1-10: 1-5 active, 6-10 the same profiles lapsed"),
    Column("cpm_label", "cpm", "text", "TEXT", "the name of the CPM group"),
)
ANALYSIS = Analysis("cpm", COLUMNS, (analysis_table("cpm_groups"),), (PLOT_CPM_GROUPS,))


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


class CpmConfig(StrictModel):
    """Thresholds of the CPM groups. Sales thresholds default to a quantile of the customers'
    total sales, so they follow the business's currency and basket size; an absolute value
    overrides the quantile."""

    lapse_factor: float = Field(
        default=2.0, gt=0, description="lapsed when inactivity > factor x the customer's median gap"
    )
    lapse_floor_days: int = Field(
        default=180, ge=0, description="...and > this many days; one-order customers lapse after the floor alone"
    )
    active_min_orders: int = Field(default=4, ge=2, description="'active' (steady repeats) from this many orders")
    stable_sales: float | None = Field(
        default=None, description="'stable': total sales at or above this within a short span"
    )
    stable_sales_quantile: float = Field(
        default=0.75, gt=0, lt=1, description="default stable_sales: this quantile of total sales"
    )
    loyal_sales: float | None = Field(
        default=None, description="'loyal': total sales at or above this over a long span"
    )
    loyal_sales_quantile: float = Field(
        default=0.75, gt=0, lt=1, description="default loyal_sales: this quantile of total sales"
    )
    loyal_min_span_days: int = Field(
        default=365, gt=0, description="a span (first to last purchase) this long is 'long'; shorter is 'short'"
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
    require_columns(
        measures, ["orders", "total_sales", "span_days", "inactivity_days", "median_gap_days"], "CPM groups"
    )
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
    if groups.index.equals(measures.index):  # the usual case: no join, so no hash table of millions of ids is built
        frame = measures.assign(cpm_group=groups["cpm_group"].to_numpy())
    else:
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
