"""Market segmentation (seed 004): the value of the customers per value of a customer attribute.

Not to be confused with :mod:`crmvalue.segments`, the value quadrants of the backbone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmvalue.analyses.common import Analysis, by_customer, require_columns
from crmvalue.errors import CrmvalueError
from crmvalue.schema import Column, analysis_table

COLUMNS: tuple[Column, ...] = ()  # per attribute value, not per customer: tables only
# one table per segment column of the customer table, ``<column>`` made file-safe
ANALYSIS = Analysis("segments", COLUMNS, (analysis_table("segments_<column>"),), ())

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
    frame = by_customer(predictions)
    require_columns(frame, ["frequency", "clv"], "segment table")
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
        require_columns(frame, [revenue], "segment table")
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
