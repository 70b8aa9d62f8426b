"""Customer segments: value quadrants (seed 003) from current and potential value.

The split rule (config ``quadrants``), as :func:`value_thresholds` places the cuts:

- ``top_share`` (the default): high potential value means the top ``potential_top_share`` of the
  customers by potential value (CLV), ties kept together (:func:`top_share_threshold`); high current
  value means above the median current value of the customers with any current value (> 0).
- ``quantile``: high means above the ``quantile`` of each axis over all customers (the rule before
  issue 18; with most customers at zero current value, its current cut is 0).

An absolute ``current_threshold`` or ``potential_threshold`` replaces the rule on its axis. Under
every rule a customer with no current value (0, or net returns) is never high current.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError

QUADRANTS = ("A", "B", "C", "D")
# ../shared/docs/domain.md, section 2
QUADRANT_TREATMENT = {
    "A": "most valuable: keep and reward",
    "B": "valuable in the long run: develop",
    "C": "valuable now: maintain, watch for loss",
    "D": "least valuable: serve at low cost",
}
QuadrantRule = Literal["top_share", "quantile"]


def top_share_threshold(values: pd.Series, share: float) -> float:
    """The cut above which lie the top ``share`` of ``values``, as near as ties allow.

    Customers with equal values stay on the same side. The candidates are the groups "every value
    >= v" for each distinct value v but the lowest; the one whose size is nearest to ``share`` x n
    wins (the smaller when two are equally near), and the cut is the highest value left out, so
    that "high" means strictly above it. When every value is equal, nobody is above the cut.
    Non-finite values are left out of the ranking.
    """
    if not 0 < share < 1:
        raise CrmvalueError(f"quadrants: potential_top_share must be between 0 and 1, not {share}")
    v = values.to_numpy(dtype=float)
    v = v[np.isfinite(v)]  # left out: the scoring's finiteness check names their customer
    if v.size == 0:
        raise CrmvalueError("quadrants: no customer has a finite potential value to rank")
    ranked = np.sort(v)[::-1]
    group_ends = np.flatnonzero(ranked[1:] != ranked[:-1]) + 1  # sizes of "every value >= v", v not the lowest
    sizes = np.concatenate([[0], group_ends])
    chosen = sizes[np.argmin(np.abs(sizes - share * v.size))]  # argmin: the first, so the smaller group
    return float(ranked[chosen])


def value_thresholds(
    current_value: pd.Series,
    potential_value: pd.Series,
    quantile: float = 0.5,
    current_threshold: float | None = None,
    potential_threshold: float | None = None,
    *,
    rule: QuadrantRule = "top_share",
    potential_top_share: float = 0.2,
) -> tuple[float, float]:
    """The high/low cut on each axis under ``rule`` (see the module docstring); an absolute threshold
    where given. With no customer of current value above 0, the current cut is 0 (all are low)."""
    if rule not in ("top_share", "quantile"):
        raise CrmvalueError(f"quadrants: unknown rule {rule!r}; use top_share or quantile")
    if current_threshold is not None:
        current = float(current_threshold)
    elif rule == "top_share":
        buying = current_value[current_value > 0]
        current = float(buying.median()) if len(buying) else 0.0
    else:
        current = float(current_value.quantile(quantile))
    if potential_threshold is not None:
        potential = float(potential_threshold)
    elif rule == "top_share":
        potential = top_share_threshold(potential_value, potential_top_share)
    else:
        potential = float(potential_value.quantile(quantile))
    return current, potential


def value_quadrant(
    current_value: pd.Series,
    potential_value: pd.Series,
    current_threshold: float,
    potential_threshold: float,
) -> pd.Series:
    """A = high potential & high current, B = high potential & low current, C = low & high, D = low & low.

    "High" means strictly above the threshold; high current also needs a current value above 0, so
    a customer who brought nothing in the window is low current whatever the threshold.
    """
    current = current_value.to_numpy()
    high_current = (current > current_threshold) & (current > 0)
    high_potential = potential_value.to_numpy() > potential_threshold
    labels = np.select(
        [high_potential & high_current, high_potential & ~high_current, ~high_potential & high_current],
        ["A", "B", "C"],
        default="D",
    )
    return pd.Series(labels, index=current_value.index, name="quadrant")


def quadrant_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Customers, share, current and potential value totals and medians, and the treatment, per quadrant.

    The medians say whether a quadrant's label fits its customers; an empty quadrant has none (NaN)."""
    grouped = scores.groupby("quadrant")
    order = list(QUADRANTS)
    table = pd.DataFrame(
        {
            "customers": grouped.size(),
            "current_value_total": grouped["current_value"].sum(),
            "potential_value_total": grouped["potential_value"].sum(),
        }
    ).reindex(order, fill_value=0)
    table["customers"] = table["customers"].astype(int)
    table["share"] = table["customers"] / max(len(scores), 1)
    table["median_current_value"] = grouped["current_value"].median().reindex(order)
    table["median_potential_value"] = grouped["potential_value"].median().reindex(order)
    table["treatment"] = [QUADRANT_TREATMENT[q] for q in table.index]
    table.index.name = "quadrant"
    return table[
        [
            "customers",
            "share",
            "current_value_total",
            "potential_value_total",
            "median_current_value",
            "median_potential_value",
            "treatment",
        ]
    ]
