"""Loss risk: a LightGBM churn classifier trained on rolling origins and validated out of time.

A customer *churns* at a cut-off ``t`` when they make no purchase (no purchase day, as in
:mod:`crmvalue.features`) in ``(t, t + horizon]``. Only customers whose first purchase is on or
before ``t`` have a row at ``t``.

Rows are built at several cut-offs (rolling origins): features from the transactions up to
``t``, the label from ``(t, t + horizon]``. For a *last label day* ``L`` the cut-offs are
``L - horizon, L - horizon - step, ...``, so every label window ends by ``L``:

- evaluation: ``L`` is the calibration end; the model is tested on the cut-off *at* the
  calibration end, labelled from the holdout. Nothing it was trained, stopped or calibrated on
  looks past the calibration end.
- export: ``L`` is the observation end; every customer is scored with features at the
  observation end.

Within the training cut-offs the latest one is held out, out of time, and split by customer
in two halves: one for LightGBM's early stopping, one to calibrate the probabilities. The
model trains on the cut-offs whose label windows end by the held-out cut-off (a purge: no
training label overlaps the held-out period).

Baselines, scored on the same test rows: BG/NBD ``1 - p_alive``; the BG/NBD probability of
no purchase in the horizon, :func:`bgnbd_no_purchase_probability`; and recency alone (days
since the last purchase, mapped to a probability on the calibration half).

The quality gate, :func:`gate_churn_model`: before the export is scored, the model is compared
with the baselines on its held-out cut-off (never a test cut-off), each calibrated on the
calibration half and judged by the Brier score on the early-stopping half. Where LightGBM does
not beat the best baseline there, the export uses that baseline's calibrated probability
(:func:`live_probability`, which ``crmvalue predict`` shares).

Valid data the protocol cannot use (too short for its cut-offs, labels of one class) raise
:class:`ChurnNotEstimable`; ``churn.enabled: auto`` skips the churn stage on it.

The package, one module per concept: :mod:`~crmvalue.churn.data` (the prepared purchase days),
:mod:`~crmvalue.churn.features` (feature rows and the BG/NBD baseline formula),
:mod:`~crmvalue.churn.windows` (rolling cut-offs), :mod:`~crmvalue.churn.classifier` (the
estimator), :mod:`~crmvalue.churn.evaluation` (the out-of-time test), :mod:`~crmvalue.churn.gate`
(the quality gate), :mod:`~crmvalue.churn.attributes` (customer-table columns),
:mod:`~crmvalue.churn.scorer` (the typed scoring state) and :mod:`~crmvalue.churn.train` (the stage
``crmvalue train`` runs).
"""

from crmvalue.churn.attributes import MAX_IDENTIFIER_CHECK_LEVELS, feature_attributes
from crmvalue.churn.classifier import DEFAULT_PARAMS, ChurnClassifier, calibrate, check_two_classes, logit
from crmvalue.churn.data import ChurnData, ChurnNotEstimable, code_range, prepare, sample_customers, subset
from crmvalue.churn.evaluation import (
    BASELINES,
    ChurnEvaluation,
    churn_metrics,
    churners_in_top,
    evaluate_churn,
    fit_churn_model,
    split_validation,
)
from crmvalue.churn.features import (
    NO_BGNBD,
    NOT_FEATURES,
    SCORE_CHUNK_CUSTOMERS,
    WINDOWS,
    bgnbd_no_purchase_probability,
    bgnbd_params_at,
    feature_columns,
    feature_rows,
    score_in_chunks,
)
from crmvalue.churn.gate import (
    BASELINE_INPUTS,
    GATE_METRIC,
    LIGHTGBM,
    ChurnGate,
    baseline_probability,
    churn_risk,
    fit_baseline_calibration,
    gate_churn_model,
    live_probability,
)
from crmvalue.churn.scorer import ChurnScorer
from crmvalue.churn.train import ChurnResult, skip_reason, train_churn
from crmvalue.churn.windows import check_history, check_test_window, rolling_cutoffs, training_rows
from crmvalue.models.bgnbd import BetaGeoModel, BetaGeoParams  # re-exported: crmvalue.churn has always named them

__all__ = [
    "BASELINES",
    "BASELINE_INPUTS",
    "DEFAULT_PARAMS",
    "GATE_METRIC",
    "LIGHTGBM",
    "MAX_IDENTIFIER_CHECK_LEVELS",
    "NOT_FEATURES",
    "NO_BGNBD",
    "SCORE_CHUNK_CUSTOMERS",
    "WINDOWS",
    "BetaGeoModel",
    "BetaGeoParams",
    "ChurnClassifier",
    "ChurnData",
    "ChurnEvaluation",
    "ChurnGate",
    "ChurnNotEstimable",
    "ChurnResult",
    "ChurnScorer",
    "baseline_probability",
    "bgnbd_no_purchase_probability",
    "bgnbd_params_at",
    "calibrate",
    "check_history",
    "check_test_window",
    "check_two_classes",
    "churn_metrics",
    "churn_risk",
    "churners_in_top",
    "code_range",
    "evaluate_churn",
    "feature_attributes",
    "feature_columns",
    "feature_rows",
    "fit_baseline_calibration",
    "fit_churn_model",
    "gate_churn_model",
    "live_probability",
    "logit",
    "prepare",
    "rolling_cutoffs",
    "sample_customers",
    "score_in_chunks",
    "skip_reason",
    "split_validation",
    "subset",
    "train_churn",
    "training_rows",
]
