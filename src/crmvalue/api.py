"""The Python entry points that need no CLI: a run's predictions as a typed DataFrame.

``crmvalue.load_predictions`` is exported lazily from :mod:`crmvalue`, so ``import crmvalue``
stays light (no MLflow, no SQLAlchemy) until it is called.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# columns beyond the database schema's typed sets (crmvalue.export): CRM-facing counts and dates
_EXTRA_INTEGER_COLUMNS = {"orders", "tenure_days"}
_DATE_COLUMNS = {"first_purchase", "last_purchase", "as_of_date"}
_TEXT = pd.Series(["a"]).dtype  # the default string dtype: ``str`` in pandas 3, ``object`` in pandas 2


def load_predictions(
    run: str = "latest", experiment: str | None = None, tracking_uri: str | None = None
) -> pd.DataFrame:
    """A run's per-customer predictions, one row per customer, with typed columns.

    ``run`` is a run id, or ``"latest"``: the newest finished top-level ``crmvalue train`` or
    ``crmvalue predict`` run, in ``experiment`` if given, else in any experiment.
    ``tracking_uri`` defaults to ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.

    Types: ``customer_id`` and the labels (``quadrant``, ``churn_risk``, ``rfm_score``,
    ``rfm_segment``, ``cpm_label``, ``crm_grade``, ``run_id``) are strings (``"00012"`` stays
    ``"00012"``); counts (``frequency``, ``orders``, ``tenure_days``, ``rfm_r/f/m``,
    ``cpm_group``, ``value_decile``) are ``int64`` (nullable ``Int64`` if some are missing);
    ``first_purchase``/``last_purchase`` are datetimes; every other number is ``float64``.
    ``frame.attrs`` holds ``run_id``, ``model_version`` and ``as_of_date``.
    Raises :class:`crmvalue.CrmvalueError` when there is no such run or it has no predictions.
    """
    from crmvalue.export import INTEGER_COLUMNS, TEXT_COLUMNS, load_run_scores

    scores = load_run_scores(run, experiment, tracking_uri)
    frame = scores.frame.copy()
    integers = INTEGER_COLUMNS | _EXTRA_INTEGER_COLUMNS
    for column in frame.columns:
        values = frame[column]
        if column in TEXT_COLUMNS or (column not in _DATE_COLUMNS and not _is_numeric(values)):
            frame[column] = _text(values)
        elif column in _DATE_COLUMNS:
            frame[column] = pd.to_datetime(values, format="ISO8601")
        elif column in integers and _integral(values):
            frame[column] = values.astype(np.int64 if values.notna().all() else "Int64")
        elif pd.api.types.is_bool_dtype(values):
            continue
        else:
            frame[column] = values.astype(np.float64)
    frame.attrs.update(run_id=scores.run_id, model_version=scores.model_version, as_of_date=scores.as_of_date)
    return frame


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) or values.isna().all()


def _integral(values: pd.Series) -> bool:
    present = values.dropna()
    return pd.api.types.is_numeric_dtype(values) and bool(np.all(np.mod(present.to_numpy(dtype=float), 1) == 0))


def _text(values: pd.Series) -> pd.Series:
    """Strings, with missing values kept missing (not the text ``"nan"``)."""
    out = values.astype(object)
    present = out.notna()
    out[present] = out[present].map(str)
    return out.astype(_TEXT)
