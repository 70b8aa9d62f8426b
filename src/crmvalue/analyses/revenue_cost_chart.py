"""The revenue-cost method's chart: cumulative net present value per acquired customer by year since
acquisition, overall and per cohort, measured years drawn solid and projected years dashed.

Like :mod:`crmvalue.plots`: it takes ``ax=None`` and returns the figure; the backend is the caller's.
"""

from __future__ import annotations

import pandas as pd

from crmvalue.analyses.revenue_cost import MEASURED, OVERALL

MAX_COHORT_LINES = 8  # the largest cohorts; more lines would hide one another
COHORT_COLOURS = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#ee8866")


def cohorts_to_draw(table: pd.DataFrame) -> list[str]:
    """Overall first, then the largest cohorts (at most :data:`MAX_COHORT_LINES`); a single cohort that
    holds every customer is the overall line again and is left out."""
    sizes = table.xs(0, level="year")["customers"]
    cohorts = sizes.drop(OVERALL, errors="ignore").sort_values(ascending=False, kind="stable")
    if len(cohorts) == 1 and cohorts.iloc[0] == sizes.get(OVERALL):
        cohorts = cohorts.iloc[:0]
    return [OVERALL, *cohorts.index[:MAX_COHORT_LINES]]


def revenue_cost_chart(table: pd.DataFrame, ax=None):
    """``table`` is :attr:`crmvalue.analyses.RevenueCost.table` (index cohort, year)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(8, 4.5))
    else:
        fig = ax.figure
    for i, cohort in enumerate(cohorts_to_draw(table)):
        rows = table.xs(cohort, level="cohort")
        years = rows.index.to_numpy()
        npv = rows["cumulative_npv_per_acquired_customer"].to_numpy()
        measured = (rows["status"] == MEASURED).to_numpy()
        colour = "#222222" if cohort == OVERALL else COHORT_COLOURS[(i - 1) % len(COHORT_COLOURS)]
        width = 2.4 if cohort == OVERALL else 1.4
        last = int(measured.sum())  # measured years come first
        ax.plot(years[:last], npv[:last], color=colour, lw=width, marker="o", ms=5, label=cohort)
        if last < len(years):
            start = max(last - 1, 0)  # the dashed line continues from the last measured point
            ax.plot(years[start:], npv[start:], color=colour, lw=width, ls="--")
            ax.plot(years[last:], npv[last:], color=colour, ls="none", marker="o", ms=5, mfc="white")
    ax.axhline(0, color="#999999", lw=0.8)
    ax.set_xlabel("years since acquisition")
    ax.set_ylabel("cumulative NPV per acquired customer")
    ax.set_title("Retention revenue-cost method: cumulative net present value")
    style = [
        Line2D([], [], color="#555555", marker="o", label="measured"),
        Line2D([], [], color="#555555", ls="--", marker="o", mfc="white", label="projected"),
    ]
    first = ax.legend(handles=style, loc="lower right", fontsize=8)
    ax.add_artist(first)
    ax.legend(loc="upper left", fontsize=8, title="cohort")
    if own:
        fig.tight_layout()
    return fig
