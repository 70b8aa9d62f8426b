"""The contractual setting: subscriptions with a start and an end, the shifted-beta-geometric model (sBG).

``crmvalue train --setting contractual`` is :func:`train`; scoring a new table with a saved run is :func:`predict`.
The pieces: :mod:`.data` (read and validate), :mod:`.periods` (renewals in whole billing periods),
:mod:`.evaluation` (out of time, against the constant-retention baseline), :mod:`.scoring` (per subscriber),
:mod:`.curves` (retention and survival by start cohort), :mod:`.churn` (LightGBM on rolling cut-offs beside the sBG),
:mod:`.run` (the entry points).
"""

from __future__ import annotations

from crmvalue.contractual.churn import (
    CHURN_COLUMNS,
    ContractualChurn,
    churn_cutoffs,
    churn_features,
    labelled_rows,
    score_churn,
    train_contractual_churn,
)
from crmvalue.contractual.curves import cohort_curves, pooled_curve, survival_chart
from crmvalue.contractual.data import SubscriptionColumns, Subscriptions, load_subscriptions
from crmvalue.contractual.evaluation import Holdout, fit_at, geometric_churn_rate, holdout
from crmvalue.contractual.periods import anniversaries, anniversary, cohort_labels, durations_at, period_discount
from crmvalue.contractual.run import ContractualPredictResult, ContractualResult, predict, train
from crmvalue.contractual.scoring import MODEL_FILE, SCORE_COLUMNS, ContractualModel

__all__ = [
    "CHURN_COLUMNS",
    "ContractualChurn",
    "churn_cutoffs",
    "churn_features",
    "labelled_rows",
    "score_churn",
    "train_contractual_churn",
    "MODEL_FILE",
    "SCORE_COLUMNS",
    "ContractualModel",
    "ContractualPredictResult",
    "ContractualResult",
    "Holdout",
    "SubscriptionColumns",
    "Subscriptions",
    "anniversaries",
    "anniversary",
    "cohort_curves",
    "cohort_labels",
    "durations_at",
    "fit_at",
    "geometric_churn_rate",
    "holdout",
    "load_subscriptions",
    "period_discount",
    "pooled_curve",
    "predict",
    "survival_chart",
    "train",
]
