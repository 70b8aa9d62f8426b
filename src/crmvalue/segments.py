"""Customer segments: value quadrants (seed 003) from current and potential value."""

from __future__ import annotations

import numpy as np
import pandas as pd

QUADRANTS = ("A", "B", "C", "D")
# ../shared/docs/domain.md, section 2
QUADRANT_TREATMENT = {
    "A": "most valuable: keep and reward",
    "B": "valuable in the long run: develop",
    "C": "valuable now: maintain, watch for loss",
    "D": "least valuable: serve at low cost",
}


def value_thresholds(
    current_value: pd.Series,
    potential_value: pd.Series,
    quantile: float = 0.5,
    current_threshold: float | None = None,
    potential_threshold: float | None = None,
) -> tuple[float, float]:
    """The high/low cut on each axis: an absolute threshold where given, else the quantile."""
    current = float(current_threshold) if current_threshold is not None else float(current_value.quantile(quantile))
    potential = (
        float(potential_threshold) if potential_threshold is not None else float(potential_value.quantile(quantile))
    )
    return current, potential


def value_quadrant(
    current_value: pd.Series,
    potential_value: pd.Series,
    current_threshold: float,
    potential_threshold: float,
) -> pd.Series:
    """A = high potential & high current, B = high potential & low current, C = low & high, D = low & low.

    "High" means strictly above the threshold, so with the median as threshold and most
    customers at zero current value (lapsed buyers), every customer with any recent revenue
    counts as high-current.
    """
    high_current = current_value.to_numpy() > current_threshold
    high_potential = potential_value.to_numpy() > potential_threshold
    labels = np.select(
        [high_potential & high_current, high_potential & ~high_current, ~high_potential & high_current],
        ["A", "B", "C"],
        default="D",
    )
    return pd.Series(labels, index=current_value.index, name="quadrant")


def quadrant_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Customers, share, current and potential value totals and the treatment, per quadrant."""
    grouped = scores.groupby("quadrant")
    table = pd.DataFrame(
        {
            "customers": grouped.size(),
            "current_value_total": grouped["current_value"].sum(),
            "potential_value_total": grouped["potential_value"].sum(),
        }
    ).reindex(list(QUADRANTS), fill_value=0)
    table["customers"] = table["customers"].astype(int)
    table["share"] = table["customers"] / max(len(scores), 1)
    table["treatment"] = [QUADRANT_TREATMENT[q] for q in table.index]
    table.index.name = "quadrant"
    return table[["customers", "share", "current_value_total", "potential_value_total", "treatment"]]
