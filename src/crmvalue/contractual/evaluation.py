"""Out-of-time evaluation of the sBG: fit on what was known at the calibration end, predict who of the subscribers
active then still renews every period due up to the observation end, and compare with what happened, beside the
constant-retention (geometric) baseline.

The target is the model's own: subscriber ``i``, active at the calibration end with ``n_i`` renewals made, survives
when she makes every renewal due by the observation end, ``a_i`` in all (:func:`~.periods.anniversaries`), i.e.
``T_i > a_i``. The sBG's probability is her posterior ``S(a_i) / S(n_i)``; the baseline's ``(1 - theta) ** (a_i -
n_i)``, with ``theta`` the one churn probability per period that fits the calibration data best (maximum likelihood
of the shifted geometric: churned subscribers over periods observed). A subscriber who cancels after her last
renewal due is a survivor here: she is still subscribed in the period running at the observation end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crmvalue.contractual.periods import active_at, anniversaries, cohort_labels, durations_at
from crmvalue.errors import CrmvalueError
from crmvalue.models.sbg import ShiftedBetaGeometricModel

GEOMETRIC = "geometric"  # the baseline's name in metrics: baseline.geometric.holdout.<key>


def geometric_churn_rate(durations, churned, weights=None) -> float:
    """Maximum-likelihood churn probability per period of the shifted geometric (every subscriber alike):
    churned subscribers over all periods observed, ``C / sum(T)`` (a censored ``T`` counts the periods survived)."""
    t = np.asarray(durations, float)
    c = np.asarray(churned, bool)
    w = np.ones(len(t)) if weights is None else np.asarray(weights, float)
    return float((w * c).sum() / (w * t).sum())


@dataclass
class Holdout:
    """The out-of-time check: ``metrics`` (``holdout.*`` and ``baseline.geometric.holdout.*``), the scored
    subscribers, the survivors by start cohort, the calibration fit; ``skipped`` says why there is none."""

    metrics: dict[str, float] = field(default_factory=dict)
    subscribers: pd.DataFrame | None = None
    cohorts: pd.DataFrame | None = None
    model: ShiftedBetaGeometricModel | None = None
    geometric_churn: float | None = None
    skipped: str | None = None


def fit_at(frame: pd.DataFrame, cutoff: pd.Timestamp, period: str) -> ShiftedBetaGeometricModel:
    """The sBG on what was known at ``cutoff``."""
    seen = durations_at(frame, cutoff, period)
    rows = seen[seen["fit"].to_numpy()]
    if len(rows) == 0:
        raise CrmvalueError(f"no subscription has renewed or ended by {cutoff.date()}, so there is nothing to fit")
    return ShiftedBetaGeometricModel().fit(rows["duration"].to_numpy(), rows["churned"].to_numpy())


def holdout(frame: pd.DataFrame, cal_end: pd.Timestamp, obs_end: pd.Timestamp, period: str) -> Holdout:
    """Fit at ``cal_end``, score the subscribers active then at ``obs_end`` (see the module)."""
    active = active_at(frame, cal_end)
    if not active.any():
        return Holdout(skipped=f"no subscription is active at the calibration end {cal_end.date()}")
    try:
        model = fit_at(frame, cal_end, period)
    except CrmvalueError as exc:
        return Holdout(skipped=f"no sBG fit at the calibration end {cal_end.date()}: {exc}")
    seen = durations_at(frame, cal_end, period)
    rows = seen[seen["fit"].to_numpy()]
    theta = geometric_churn_rate(rows["duration"], rows["churned"])
    subs = frame[active]
    made = seen["duration"].to_numpy()[active]
    due = anniversaries(subs["start"], pd.Timestamp(obs_end).to_datetime64(), period)
    later = durations_at(subs, obs_end, period)
    survived = ~(later["churned"].to_numpy() & (later["duration"].to_numpy() <= due))
    params = model.params_
    table = pd.DataFrame(
        {
            "customer_id": subs["customer_id"].to_numpy(),
            "cohort": cohort_labels(subs["start"], period),
            "renewals_made": made,
            "renewals_due": due,
            "p_survive": params.survival(due) / params.survival(made),
            "p_survive_geometric": (1.0 - theta) ** (due - made),
            "survived": survived,
        }
    )
    metrics = survival_metrics(table["p_survive"], survived, "holdout")
    metrics.update(survival_metrics(table["p_survive_geometric"], survived, f"baseline.{GEOMETRIC}.holdout"))
    metrics["holdout.calibration_log_likelihood"] = model.log_likelihood_
    cohorts = (
        table.groupby("cohort", sort=True)
        .agg(
            active_at_calibration=("survived", "size"),
            actual_survivors=("survived", "sum"),
            predicted_survivors=("p_survive", "sum"),
            geometric_survivors=("p_survive_geometric", "sum"),
        )
        .reset_index()
    )
    actual = cohorts["actual_survivors"].to_numpy(float)
    metrics["holdout.cohort_mae"] = float(np.mean(np.abs(cohorts["predicted_survivors"] - actual)))
    metrics[f"baseline.{GEOMETRIC}.holdout.cohort_mae"] = float(
        np.mean(np.abs(cohorts["geometric_survivors"] - actual))
    )
    return Holdout(metrics, table, cohorts, model, theta)


def survival_metrics(p, survived, prefix: str) -> dict[str, float]:
    """Predicted against actual survivors, the total's relative error (left out when nobody survived: it has no
    size then, and MLflow metrics must be finite), the Brier score and the log loss."""
    p = np.asarray(p, float)
    y = np.asarray(survived, bool)
    q = np.clip(p, 1e-12, 1 - 1e-12)
    actual = float(y.sum())
    predicted = float(p.sum())
    metrics = {
        f"{prefix}.subscribers": float(len(p)),
        f"{prefix}.actual_survivors": actual,
        f"{prefix}.predicted_survivors": predicted,
        f"{prefix}.brier": float(np.mean((p - y) ** 2)),
        f"{prefix}.log_loss": float(-np.mean(np.where(y, np.log(q), np.log1p(-q)))),
    }
    if actual > 0:
        metrics[f"{prefix}.total_error"] = (predicted - actual) / actual
    return metrics
