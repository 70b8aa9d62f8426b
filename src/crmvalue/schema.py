"""The output contract: every column crmvalue writes, declared once.

Each :class:`Column` carries its name, the group it belongs to, how it is formatted in files
and which SQL type it has in the database. The export order, the database types and the
report all read these declarations, so a new column is added in one place and an undeclared
column is an error, never silently dropped.

Two orders come from the one declaration:

- the file order (:func:`output_columns`, the predictions file of ``crmvalue train`` and
  ``crmvalue predict``): id, purchase history, value columns, churn and the decisions drawn
  from it, ``run_id``, the CRM analyses, then the intervals;
- the table order (:func:`table_columns`, ``crmvalue export``'s database tables): the same
  columns with ``run_id`` moved after the intervals, then the export's own metadata.

The CRM analyses declare their columns beside their code (``crmvalue.analyses``); they are read
here when asked for, never at import (the analyses import this module).

The module also names the run's artifact paths, tags and metric keys, which the run writer,
the run reader, the report and the export share.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import pandas as pd

Kind = Literal["text", "integer", "number", "money", "date", "timestamp"]


@dataclass(frozen=True)
class Column:
    """One output column: ``kind`` decides the file format, ``sql`` the database type."""

    name: str
    group: str
    kind: Kind
    sql: str  # "TEXT", "INTEGER", "SMALLINT", "DOUBLE", "DATE", "VARCHAR(n)", "TIMESTAMPTZ"
    doc: str = ""


class UndeclaredColumnError(ValueError):
    """A predictions frame holds a column that no :class:`Column` declares."""


# ------------------------------------------------------------------------------------------
# The columns
# ------------------------------------------------------------------------------------------

ID = Column("customer_id", "id", "text", "TEXT", "the customer's id, as text")
# what a CRM user reads first, right after the id: the customer's purchase history
HISTORY = (
    Column("orders", "history", "integer", "INTEGER", "purchase days up to the observation end"),
    Column("revenue", "history", "money", "DOUBLE", "net revenue over the whole history"),
    Column("first_purchase", "history", "date", "DATE", "first purchase day"),
    Column("last_purchase", "history", "date", "DATE", "last purchase day"),
    Column("tenure_days", "history", "integer", "INTEGER", "days from the first purchase to the observation end"),
)
VALUE = (
    Column("frequency", "value", "integer", "INTEGER", "repeat purchases"),
    Column("recency", "value", "number", "DOUBLE", "age at the last purchase, in time units"),
    Column("T", "value", "number", "DOUBLE", "age at the observation end, in time units"),
    Column("monetary_value", "value", "money", "DOUBLE", "mean value of the repeat purchases"),
    Column("current_value", "value", "money", "DOUBLE", "revenue in the trailing window"),
    Column("p_alive", "value", "number", "DOUBLE", "probability the customer is still active"),
    Column("expected_purchases", "value", "number", "DOUBLE", "expected purchases over the horizon"),
    Column("expected_avg_value", "value", "money", "DOUBLE", "expected value per purchase (Gamma-Gamma)"),
    Column("expected_revenue", "value", "money", "DOUBLE", "expected revenue over the horizon, undiscounted"),
    Column("clv", "value", "money", "DOUBLE", "discounted customer lifetime value"),
    Column(
        "potential_value",
        "value",
        "money",
        "DOUBLE",
        "the quadrants' potential value (the CLV; with a live boosted value model, CLV x its revenue / BTYD's)",
    ),
    Column("quadrant", "value", "text", "VARCHAR(1)", "value quadrant A-D"),
)
# after quadrant, when the churn model ran
CHURN = (
    Column("churn_probability", "churn", "number", "DOUBLE", "probability of no purchase over the horizon"),
    Column("churn_risk", "churn", "text", "VARCHAR(8)", "'high', 'medium' or 'low'"),
)
# after churn, exactly when the churn columns are there: what to do about the risk (crmvalue.decisions)
NEXT_ACTION_LENGTH = 32  # the longest action label the matrix may hold
DECISIONS = (
    Column("value_at_risk", "decisions", "money", "DOUBLE", "churn_probability x clv: the forecast value at risk"),
    Column(
        "retention_priority", "decisions", "integer", "INTEGER", "1 = contact first: by value at risk, clv, customer_id"
    ),
    Column(
        "next_action",
        "decisions",
        "text",
        f"VARCHAR({NEXT_ACTION_LENGTH})",
        "the action for the customer's quadrant and churn risk",
    ),
)
# right after clv, when the purchase model is Pareto/NBD (crmvalue.models.value.ValueModel.has_dert)
DERT = Column(
    "dert",
    "dert",
    "number",
    "DOUBLE",
    "discounted expected residual transactions (Pareto/NBD), continuous discounting at clv.discount_rate",
)
# right after quadrant, when crmvalue predict scored customers of the customer table without purchases
SCORED_ON = Column(
    "history",
    "new_customers",
    "text",
    "VARCHAR(8)",
    "'observed': scored on the purchase history; 'none': no purchase yet, the prospective expectation",
)
RUN_ID = Column("run_id", "run", "text", "VARCHAR(32)", "the MLflow run that scored the customer")
# last, when the run computed intervals (config intervals.enabled), at intervals.level: first the bounds of
# the expectation (parameter uncertainty only), then the predictive bounds of what the customer will do over
# the horizon (the model's process noise too: crmvalue.models.predictive)
INTERVALS = (
    Column("expected_purchases_lower", "intervals", "number", "DOUBLE", "lower bound of expected purchases"),
    Column("expected_purchases_upper", "intervals", "number", "DOUBLE", "upper bound of expected purchases"),
    Column("clv_lower", "intervals", "money", "DOUBLE", "lower bound of the CLV"),
    Column("clv_upper", "intervals", "money", "DOUBLE", "upper bound of the CLV"),
    Column("purchases_lower", "intervals", "integer", "INTEGER", "lower bound of the purchases over the horizon"),
    Column("purchases_upper", "intervals", "integer", "INTEGER", "upper bound of the purchases over the horizon"),
    Column("revenue_lower", "intervals", "money", "DOUBLE", "lower bound of the revenue over the horizon"),
    Column("revenue_upper", "intervals", "money", "DOUBLE", "upper bound of the revenue over the horizon"),
)
# the database tables' own columns, after the scores (not in the predictions file)
EXPORT_METADATA = (
    Column("model_version", "export", "integer", "INTEGER", "the registered version of the value model"),
    Column("as_of_date", "export", "date", "DATE", "the observation end of the scores"),
    Column("scored_at", "export", "timestamp", "TIMESTAMPTZ", "when the run finished (UTC)"),
)


def analysis_columns() -> tuple[Column, ...]:
    """The CRM analyses' columns, in export order, as ``crmvalue.analyses`` declares them."""
    from crmvalue.analyses import ANALYSIS_COLUMNS_DECLARED  # the analyses import this module: not at import

    return tuple(ANALYSIS_COLUMNS_DECLARED)


def declared_columns() -> tuple[Column, ...]:
    """Every column a predictions file may hold, in table order."""
    return (ID, *HISTORY, *VALUE, *CHURN, *DECISIONS, *analysis_columns(), *INTERVALS, DERT, SCORED_ON, RUN_ID)


def table_schema() -> tuple[Column, ...]:
    """The columns of the export's database tables, in their order."""
    return (*declared_columns(), *EXPORT_METADATA)


def table_columns() -> list[str]:
    """The names of :func:`table_schema`, in table order."""
    return [c.name for c in table_schema()]


def sql_types() -> dict[str, str]:
    """Table column -> its SQL type (as declared, e.g. ``VARCHAR(8)``), in table order."""
    return {c.name: c.sql for c in table_schema()}


def names(columns: Iterable[Column]) -> list[str]:
    return [c.name for c in columns]


def file_kind_columns(kind: Kind) -> tuple[str, ...]:
    """The predictions file's columns of one kind (the export's metadata is not in the file)."""
    return tuple(c.name for c in declared_columns() if c.kind == kind)


def table_kind_columns(kind: Kind) -> frozenset[str]:
    """The database tables' columns of one kind."""
    return frozenset(c.name for c in table_schema() if c.kind == kind)


def check_declared(predictions: pd.DataFrame) -> None:
    """Raise :class:`UndeclaredColumnError` naming the first column of ``predictions`` that no
    :class:`Column` declares, or the missing part of a group that is there only in part: a column
    is written, or it is an error, never silently dropped."""
    declared = {c.name for c in declared_columns()}
    for name in predictions.columns:
        if name not in declared:
            raise UndeclaredColumnError(
                f"predictions column {name!r} is not declared in crmvalue.schema (nor by an analysis); "
                "declare it with its group, kind and SQL type to export it"
            )
    for group, columns in (("churn", CHURN), ("decisions", DECISIONS), ("analyses", analysis_columns())):
        present = [c.name for c in columns if c.name in predictions.columns]
        if present and len(present) < len(columns):
            missing = next(c.name for c in columns if c.name not in predictions.columns)
            raise UndeclaredColumnError(
                f"predictions column {missing!r} is missing: the {group} columns are written all together "
                f"({', '.join(names(columns))}) and the frame has only {', '.join(present)}"
            )
    churn, decisions = (CHURN[0].name in predictions.columns), (DECISIONS[0].name in predictions.columns)
    if churn != decisions:
        have, lack = ("churn", "decisions") if churn else ("decisions", "churn")
        raise UndeclaredColumnError(
            f"the predictions have the {have} columns but not the {lack} columns: the decisions "
            f"({', '.join(names(DECISIONS))}) are written exactly when the churn columns are"
        )


def output_columns(predictions: pd.DataFrame) -> list[str]:
    """The predictions file's columns, in order, for ``predictions``: the id and the purchase
    history, the value columns (``dert`` after ``clv`` with Pareto/NBD, ``history`` after ``quadrant`` when
    predict scored new customers), churn after quadrant and the decisions after churn (when the run
    has churn), ``run_id``, the CRM analyses (when the run has them) and the intervals it has.
    ``predictions`` is checked by :func:`check_declared` first."""
    check_declared(predictions)
    present = set(predictions.columns)
    columns = [ID, *HISTORY, *VALUE]
    for extra, after in ((DERT, "clv"), (SCORED_ON, "quadrant")):  # optional value columns, beside their kin
        if extra.name in present:
            columns.insert(names(columns).index(after) + 1, extra)
    if all(c.name in present for c in CHURN):
        columns += [*CHURN, *DECISIONS]  # check_declared: the decisions come with churn
    columns.append(RUN_ID)
    analyses = analysis_columns()
    if all(c.name in present for c in analyses):
        columns += analyses
    columns += [c for c in INTERVALS if c.name in present]
    return names(columns)


# ------------------------------------------------------------------------------------------
# The artifacts of a run
# ------------------------------------------------------------------------------------------

CONFIG_ARTIFACT = "config.yaml"
QUADRANT_SUMMARY_ARTIFACT = "quadrant_summary.csv"
HOLDOUT_EXPECTATIONS_ARTIFACT = "holdout_conditional_expectations.csv"
DEFAULT_PREDICTIONS_ARTIFACT = "predictions.csv"
VALUE_MODEL_NAME = "value_model"  # the logged pyfunc model: runs:/<id>/value_model
CHURN_MODEL_NAME = "churn_model"  # the logged LightGBM model: runs:/<id>/churn_model
# folders of a run whose files the report may use; others (logged models) are never listed
ARTIFACT_FOLDERS = ("plots", "analyses", "diagnostics", "churn")
CHURN_FOLDER = "churn"
CHURN_SCORING_ARTIFACT = "churn/churn_scoring.json"
CHURN_CALIBRATION_FILE = "churn_calibration.json"
ATTRIBUTE_CATEGORIES_FILE = "attribute_categories.json"
FEATURE_IMPORTANCE_FILE = "feature_importance_gain.csv"
CHURN_TEST_SCORES_FILE = "test_scores.csv"
VALUE_MODEL_FILE = "value_model.json"  # models/<name>/ and inside the pyfunc
CHURN_BOOSTER_FILE = "churn_model.txt"  # models/<name>/

PLOT_QUADRANTS = "plots/quadrants.png"
PLOT_P_ALIVE_DISTRIBUTION = "plots/p_alive_distribution.png"
PLOT_CALIBRATION_VS_HOLDOUT = "plots/calibration_vs_holdout.png"
PLOT_PERIOD_TRANSACTIONS = "plots/period_transactions.png"
PLOT_TRACKING = "plots/tracking.png"
PLOT_P_ALIVE_MATRIX = "plots/p_alive_matrix.png"
PLOT_EXPECTED_PURCHASES_MATRIX = "plots/expected_purchases_matrix.png"
PLOT_SPEND_FIT = "plots/spend_fit.png"
PLOT_CHURN_FEATURE_IMPORTANCE = "plots/churn_feature_importance.png"
PLOT_CHURN_ROC = "plots/churn_roc.png"
PLOT_CHURN_PRECISION_RECALL = "plots/churn_precision_recall.png"
PLOT_CHURN_RELIABILITY = "plots/churn_reliability.png"
PLOT_RFM_SEGMENTS = "plots/rfm_segments.png"
PLOT_CPM_GROUPS = "plots/cpm_groups.png"
PLOT_DECILES = "plots/deciles.png"
PLOT_RETENTION = "plots/retention.png"
PLOT_COHORT_RETENTION = "plots/cohort_retention.png"
PLOT_REVENUE_COST = "plots/revenue_cost.png"


def analysis_table(name: str) -> str:
    """``analyses/<name>.csv``: a CRM analysis table (``rfm_segments``, ``segments_<column>``, ...)."""
    return f"analyses/{name}.csv"


def diagnostic_table(name: str) -> str:
    """``diagnostics/<name>.csv``: a fit-diagnostic table of the winning purchase model."""
    return f"diagnostics/{name}.csv"


# ------------------------------------------------------------------------------------------
# Tags, params and metric keys
# ------------------------------------------------------------------------------------------

KIND_TAG = "crmvalue.kind"  # train or predict (runs without it: train)
VERSION_TAG = "crmvalue.version"  # the crmvalue version; every crmvalue top-level run has it
PREDICTIONS_ARTIFACT_TAG = "crmvalue.predictions_artifact"
AS_OF_DATE_TAG = "crmvalue.as_of_date"
DATA_FIRST_DATE_TAG = "crmvalue.data_first_date"
CHURN_TAG = "crmvalue.churn"  # ran, off, or "skipped: <why>"
CHURN_MODEL_URI_TAG = "crmvalue.churn_model_uri"
VALUE_MODEL_VERSION_TAG = "crmvalue.value_model_version"  # crmvalue.registry.VERSION_TAG
OBSERVATION_END_PARAM = "config.observation_end"
PURCHASE_MODEL_PARAM = "purchase_model"

DATA_TRANSACTIONS = "data.transactions"
DATA_CUSTOMERS = "data.customers"
NEW_CUSTOMERS = "data.new_customers"  # predict: customers of the customer table scored without a purchase
PARETO_TOP20_SHARE = "analyses.pareto_top20_share"
REVENUE_COST_SPEARMAN = "analyses.revenue_cost.spearman_clv"  # rank correlation of revenue_cost_value with clv
HOLDOUT_TOTAL_ERROR = "quality.holdout_total_error"
VALUE_RED_FLAG = "quality.value_red_flag"
NAIVE_BASELINE = "naive_rate"


def export_tag(table: str) -> str:
    """``crmvalue.export.<table>``: set on a run exported to ``<table>``, the URL with its password masked."""
    return f"crmvalue.export.{table}"


def config_param(key: str) -> str:
    """``config.<key>``: one setting of the resolved config, flattened (``config.churn.risk.high``)."""
    return f"config.{key}"


def threshold_param(axis: str) -> str:
    """``quadrants.<axis>_threshold_used``, ``axis`` current or potential."""
    return f"quadrants.{axis}_threshold_used"


def model_param(model: str, name: str) -> str:
    """``<model>.<name>``: a fitted parameter (``bgnbd.r``, ``gamma_gamma.p``) or ``penalizer_used``."""
    return f"{model}.{name}"


def quadrant_customers_metric(quadrant: str) -> str:
    return f"quadrant.{quadrant}.customers"


def standard_error_metric(model: str, param: str) -> str:
    return f"{model}.se.{param}"


def covariate_key(role: str, name: str) -> str:
    """``<role>.<covariate>``, ``role`` purchase or dropout: a coefficient's name after ``<model>.`` in params,
    ``<model>.se.`` and ``<model>.ci95_<bound>.`` in metrics. A categorical level ``channel[web]`` is written
    ``channel.web``; other characters MLflow refuses in names become ``_``."""
    plain = name.replace("[", ".").removesuffix("]") if name.endswith("]") else name
    return f"{role}." + re.sub(r"[^\w.\- ]", "_", plain)


def lr_test_metric(model: str, key: str) -> str:
    """``final.<model>.lr_test.<key>`` (statistic, df, p_value): the covariates' likelihood-ratio test."""
    return f"final.{model}.lr_test.{key}"


def ci95_metric(model: str, bound: str, param: str) -> str:
    """``<model>.ci95_<bound>.<param>``, ``bound`` lower or upper."""
    return f"{model}.ci95_{bound}.{param}"


def holdout_metric(key: str) -> str:
    """``holdout.<key>``: the purchase model on the holdout (mae, rmse, predicted_total, actual_total, ...)."""
    return f"holdout.{key}"


def baseline_metric(baseline: str, key: str) -> str:
    """``baseline.<baseline>.<key>`` (``baseline.naive_rate.holdout.mae``, ``baseline.recency.roc_auc``)."""
    return f"baseline.{baseline}.{key}"


def churn_metric(key: str) -> str:
    return f"churn.{key}"


def held_out_metric(scorer: str, key: str) -> str:
    """The churn quality gate's ``key`` for ``scorer`` on the held-out cut-off: the LightGBM model's
    ``churn.held_out.<key>``, a baseline's ``baseline.<scorer>.held_out.<key>``."""
    return churn_metric(f"held_out.{key}") if scorer == "lightgbm" else baseline_metric(scorer, f"held_out.{key}")


def stage_time_metric(stage: str) -> str:
    return f"time.{stage}_s"
