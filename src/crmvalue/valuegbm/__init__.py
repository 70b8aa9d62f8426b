"""A boosted value model: LightGBM regression of each customer's revenue in the next horizon.

Beside BG/NBD x Gamma-Gamma (:mod:`crmvalue.models.value`) as ``model.value_model: gbm``. Its features at a
cut-off are those of the churn model (:func:`crmvalue.churn.feature_rows`: RFM, tenure, purchase gaps,
windowed purchases and revenue, basket size, BG/NBD P(alive), expected purchases and no-purchase probability
over the horizon) and the Gamma-Gamma expected spend and BTYD revenue forecast, every one from the purchases
up to the cut-off, with the BTYD models fitted at that cut-off. It is trained on rolling cut-offs with purged
label windows, like the churn model (:class:`GbmValueModel`), with a Tweedie objective boosted from the
BG/NBD x Gamma-Gamma forecast, both chosen by a backtest on CDNOW (:mod:`crmvalue.valuegbm.objectives`).

Data too short for its protocol raise :class:`GbmNotEstimable`, so ``auto`` can fall back to BTYD.

Modules: :mod:`~crmvalue.valuegbm.settings` (settings and the error), :mod:`~crmvalue.valuegbm.rows` (cut-offs,
feature rows, labels), :mod:`~crmvalue.valuegbm.objectives` (the boosters of each objective) and
:mod:`~crmvalue.valuegbm.model` (fit, predict, save, load and the backtest adapter).
"""

from crmvalue.valuegbm.model import STATE_FILE, GbmForecaster, GbmValueModel, forecaster_from_config
from crmvalue.valuegbm.objectives import OFFSET_FLOOR, Fitted, Split, expected_revenue, fit_objective, log_offset
from crmvalue.valuegbm.rows import (
    LABEL,
    SPEND_FEATURES,
    BtydAt,
    add_revenue_label,
    add_spend_features,
    btyd_at,
    cutoff_rows,
    gbm_feature_columns,
    revenue_after,
    spend_params_at,
    training_cutoffs,
    training_rows,
)
from crmvalue.valuegbm.settings import OBJECTIVES, GbmNotEstimable, GbmSettings, Objective, settings_from_config

__all__ = [
    "LABEL",
    "OBJECTIVES",
    "OFFSET_FLOOR",
    "SPEND_FEATURES",
    "STATE_FILE",
    "BtydAt",
    "Fitted",
    "GbmForecaster",
    "GbmNotEstimable",
    "GbmSettings",
    "GbmValueModel",
    "Objective",
    "Split",
    "add_revenue_label",
    "add_spend_features",
    "btyd_at",
    "cutoff_rows",
    "expected_revenue",
    "fit_objective",
    "forecaster_from_config",
    "gbm_feature_columns",
    "log_offset",
    "revenue_after",
    "settings_from_config",
    "spend_params_at",
    "training_cutoffs",
    "training_rows",
]
