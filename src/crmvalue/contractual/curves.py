"""Retention and survival curves by start cohort, observed against the sBG, and their chart.

Observed, per cohort and period ``t`` (the life-table / Kaplan-Meier estimate on the data the sBG is fitted on)::

    at_risk(t)  = subscribers known to have reached period t: churned with T >= t, or active with tenure >= t
    churned(t)  = subscribers who cancelled in period t (T = t)
    renewed(t)  = at_risk(t) - churned(t)
    observed_retention(t) = renewed(t) / at_risk(t),   observed_survival(t) = prod_{u <= t} observed_retention(u)

An active subscriber still in period ``tenure + 1`` is not yet at risk there (her renewal is not due), so a cohort
that started on one day gives the plain counts ``n_t / n_0`` of Fader and Hardie (2007). The model columns are the
sBG's ``r(t)`` and ``S(t)`` (the same for every cohort: the sBG has no cohort effect) from the final fit, and
``S(t)`` from the calibration fit, whose periods after the calibration end are a projection.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmvalue.contractual.periods import cohort_labels, durations_at
from crmvalue.models.sbg import ShiftedBetaGeometricParams

COHORTS_DRAWN = 8  # cohorts with a line of their own in the chart, evenly spread over the start dates


def cohort_curves(
    frame: pd.DataFrame,
    obs_end: pd.Timestamp,
    period: str,
    params: ShiftedBetaGeometricParams,
    calibration: ShiftedBetaGeometricParams | None = None,
) -> pd.DataFrame:
    """One row per (cohort, period t >= 1) while any of the cohort is at risk; see the module for the columns."""
    seen = durations_at(frame, obs_end, period)
    started = seen["started"].to_numpy()
    cohort = cohort_labels(frame["start"].to_numpy()[started], period)
    duration = seen["duration"].to_numpy()[started]
    churned = seen["churned"].to_numpy()[started]
    names, codes = np.unique(cohort.astype(str), return_inverse=True)
    width = int(duration.max()) + 2
    ends = np.zeros((len(names), width))  # churned with T = t
    censored = np.zeros((len(names), width))  # active with tenure = t
    np.add.at(ends, (codes[churned], duration[churned]), 1)
    np.add.at(censored, (codes[~churned], duration[~churned]), 1)
    # at risk in t: churned with T >= t plus active with tenure >= t (reverse cumulative sums)
    at_risk = np.cumsum(ends[:, ::-1], axis=1)[:, ::-1] + np.cumsum(censored[:, ::-1], axis=1)[:, ::-1]
    size = np.bincount(codes, minlength=len(names)).astype(float)
    t = np.arange(width)
    c_idx, t_idx = np.nonzero((at_risk > 0) & (t >= 1))
    out = pd.DataFrame(
        {
            "cohort": names[c_idx],
            "period": t_idx,
            "cohort_size": size[c_idx].astype(np.int64),
            "at_risk": at_risk[c_idx, t_idx].astype(np.int64),
            "churned": ends[c_idx, t_idx].astype(np.int64),
        }
    )
    out["renewed"] = out["at_risk"] - out["churned"]
    out["observed_retention"] = out["renewed"] / out["at_risk"]
    out["observed_survival"] = out.groupby("cohort")["observed_retention"].cumprod()
    out["model_retention"] = params.retention_rate(out["period"])
    out["model_survival"] = params.survival(out["period"])
    if calibration is not None:
        out["calibration_model_survival"] = calibration.survival(out["period"])
    out["expected_survivors"] = out["cohort_size"] * out["model_survival"]
    return out


def pooled_curve(curves: pd.DataFrame) -> pd.DataFrame:
    """All cohorts together, by period: at risk, churned, observed retention and survival (the same estimate)."""
    pooled = curves.groupby("period")[["at_risk", "churned"]].sum()
    pooled["observed_retention"] = 1 - pooled["churned"] / pooled["at_risk"]
    pooled["observed_survival"] = pooled["observed_retention"].cumprod()
    return pooled


def survival_chart(curves: pd.DataFrame, params: ShiftedBetaGeometricParams, calibration=None, period="month", ax=None):
    """Observed survival of up to :data:`COHORTS_DRAWN` cohorts and of all of them pooled, against the sBG's
    ``S(t)`` (final fit, and calibration fit when given); the retention rates beside. Returns the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, (ax, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    else:
        fig, right = ax.figure, None
    names = curves["cohort"].unique()
    chosen = names[np.unique(np.linspace(0, len(names) - 1, min(COHORTS_DRAWN, len(names))).astype(int))]
    for name in chosen:
        one = curves[curves["cohort"] == name]
        ax.plot(np.r_[0, one["period"]], np.r_[1, one["observed_survival"]], lw=0.9, alpha=0.7, label=f"cohort {name}")
    pooled = pooled_curve(curves)
    t = np.arange(int(pooled.index.max()) + 1)
    ax.plot(np.r_[0, pooled.index], np.r_[1, pooled["observed_survival"]], color="black", lw=2, label="all, observed")
    ax.plot(t, params.survival(t), color="#d62728", ls="--", lw=2, label="sBG")
    if calibration is not None:
        ax.plot(t, calibration.survival(t), color="#7f7f7f", ls=":", lw=2, label="sBG, calibration fit")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"{period}s since the start")
    ax.set_ylabel("share still subscribed")
    ax.set_title("Survival by start cohort")
    ax.legend(fontsize=7)
    if right is not None:
        right.plot(pooled.index, pooled["observed_retention"], color="black", marker="o", ms=3, label="observed")
        right.plot(pooled.index, params.retention_rate(pooled.index), color="#d62728", ls="--", label="sBG r(t)")
        right.set_ylim(0, 1.02)
        right.set_xlabel(f"{period} t")
        right.set_ylabel("renewed at the end of period t / at risk")
        right.set_title("Retention rate, all cohorts")
        right.legend(fontsize=7)
        fig.tight_layout()
    return fig
