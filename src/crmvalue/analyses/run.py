"""Running the CRM analyses for the scored customers of a run, and logging what they produce.

``crmvalue train`` and ``crmvalue predict`` both call :func:`run_analyses`, so they give the same
columns by construction; :func:`log_analyses` writes the tables and charts to the MLflow run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crmvalue.analyses.cpm import cpm_groups, cpm_table
from crmvalue.analyses.crm_score import crm_components, crm_value_score
from crmvalue.analyses.deciles import decile_table, pareto_share, value_deciles
from crmvalue.analyses.market_segments import segment_table
from crmvalue.analyses.measures import purchase_history
from crmvalue.analyses.retention import cohort_retention, customer_periods, retention_table
from crmvalue.analyses.revenue_cost import (
    PLOT_REVENUE_COST,
    SPEARMAN_METRIC,
    clv_comparison,
    revenue_cost_method,
    spearman,
)
from crmvalue.analyses.revenue_cost_chart import revenue_cost_chart
from crmvalue.analyses.rfm import customer_rfm, rfm_segment_table
from crmvalue.errors import CrmvalueError
from crmvalue.schema import (
    PLOT_COHORT_RETENTION,
    PLOT_CPM_GROUPS,
    PLOT_DECILES,
    PLOT_RETENTION,
    PLOT_RFM_SEGMENTS,
)

if TYPE_CHECKING:
    from crmvalue.config import ExperimentConfig

log = logging.getLogger("crmvalue")

MAX_SEGMENT_LEVELS = 20


@dataclass
class AnalysesResult:
    columns: pd.DataFrame  # the export's analysis columns, indexed by customer_id
    tables: dict[str, pd.DataFrame]  # artifact name (analyses/<name>.csv) -> table
    figures: dict[str, Callable[[], Any]]  # artifact path -> matplotlib figure maker (called when logging)
    pareto_top20_share: float
    cpm_thresholds: dict[str, float]
    metrics: dict[str, float] = field(default_factory=dict)  # run metrics, e.g. the revenue-cost Spearman with clv


def run_analyses(
    cfg: ExperimentConfig,
    frame: pd.DataFrame,
    obs_end,
    predictions: pd.DataFrame,
    attributes: pd.DataFrame | None,
    interactions: pd.DataFrame | None,
    measures: pd.DataFrame | None = None,
) -> AnalysesResult:
    """The CRM analyses of the source documents for every scored customer (:mod:`crmvalue.analyses`);
    ``measures``: their :func:`~crmvalue.analyses.purchase_history`, when the caller has it already.

    ``frame`` is the transactions or their :class:`~crmvalue.customer_days.CustomerDays`; the
    columns come in the order of :data:`~crmvalue.analyses.ANALYSIS_COLUMNS_DECLARED`.
    """
    from crmvalue import plots

    a = cfg.analyses
    scored = predictions.set_index("customer_id")
    if measures is None or not measures.index.equals(scored.index):
        measures = purchase_history(frame, obs_end, scored.index)
    rfm = customer_rfm(scored if a.rfm.basis == "summary" else measures, a.rfm)
    cpm = cpm_groups(measures, a.cpm)
    deciles = value_deciles(measures["total_sales"])
    satisfaction = None
    if a.crm_value.satisfaction_column is not None and attributes is not None:
        satisfaction = attributes[a.crm_value.satisfaction_column]
    components = crm_components(measures, interactions, satisfaction, a.crm_value, obs_end)
    crm = crm_value_score(components, a.crm_value.weights, (a.crm_value.high_from, a.crm_value.medium_from))
    method = revenue_cost_method(frame, obs_end, a.revenue_cost)
    value = method.value.reindex(scored.index, fill_value=0.0)
    columns = pd.concat(
        [
            rfm[["rfm_r", "rfm_f", "rfm_m", "rfm_score", "rfm_segment"]],
            cpm[["cpm_group", "cpm_label"]],
            deciles.rename("value_decile"),
            crm[["crm_value", "crm_grade"]],
            value,
        ],
        axis=1,
    )
    tables = {
        "rfm_segments": rfm_segment_table(rfm, a.rfm.segments),
        "cpm_groups": cpm_table(measures, cpm),
        "deciles": decile_table(measures["total_sales"], measures["orders"], deciles),
    }
    periods = customer_periods(frame, a.retention_period, obs_end)  # shared by the two tables
    tables |= {
        "retention": retention_table(periods, a.retention_period),
        "cohort_retention": cohort_retention(periods, a.retention_period),
        "crm_components": components.describe().T,
        "revenue_cost": method.table,
        "revenue_cost_vs_clv": clv_comparison(scored["clv"], value, method.active),
    }
    if attributes is not None:
        for column in segment_columns(a.segment_columns, attributes):
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(column))
            tables[f"segments_{safe}"] = segment_table(scored, attributes, column)
    figures = {
        PLOT_RFM_SEGMENTS: lambda: plots.rfm_segment_chart(tables["rfm_segments"]["customers"]),
        PLOT_CPM_GROUPS: lambda: plots.cpm_group_chart(tables["cpm_groups"]),
        PLOT_DECILES: lambda: plots.decile_chart(tables["deciles"]),
        PLOT_RETENTION: lambda: plots.retention_chart(tables["retention"]),
        PLOT_COHORT_RETENTION: lambda: plots.cohort_heatmap(tables["cohort_retention"]),
        PLOT_REVENUE_COST: lambda: revenue_cost_chart(tables["revenue_cost"]),
    }
    rho = spearman(scored["clv"], value)
    return AnalysesResult(
        columns,
        tables,
        figures,
        pareto_share(measures["total_sales"]),
        cpm.attrs.get("thresholds", {}),
        {SPEARMAN_METRIC: rho} if np.isfinite(rho) else {},
    )


def segment_columns(chosen: list[str] | None, attributes: pd.DataFrame) -> list[str]:
    """The customer-table columns to segment by: those named, or every non-numeric one with at
    most MAX_SEGMENT_LEVELS values (an id-like column such as an e-mail is not a segment)."""
    if chosen is not None:
        missing = [c for c in chosen if c not in attributes.columns]
        if missing:
            raise CrmvalueError(
                f"analyses.segment_columns: no column {', '.join(map(repr, missing))} in the customer table; "
                f"its columns are {', '.join(map(str, attributes.columns))}"
            )
        return list(chosen)
    columns = []
    for column in attributes.columns:
        if pd.api.types.is_numeric_dtype(attributes[column].dtype):
            continue
        levels = attributes[column].nunique()
        if levels > MAX_SEGMENT_LEVELS:
            log.warning(
                "customer table column %r has %d values: not used as a market segment "
                "(name it in analyses.segment_columns to force it)",
                column,
                levels,
            )
            continue
        columns.append(column)
    return columns


def log_analyses(result: AnalysesResult, tmp: Path) -> None:
    """The tables as ``analyses/<name>.csv`` (written under ``tmp`` first), the sales thresholds
    the CPM groups used as params, and the charts, to the active MLflow run."""
    import matplotlib.pyplot as plt
    import mlflow

    folder = tmp / "analyses"
    folder.mkdir(exist_ok=True)
    for name, table in result.tables.items():
        table.to_csv(folder / f"{name}.csv")
    mlflow.log_artifacts(str(folder), "analyses")
    mlflow.log_params({f"analyses.cpm.{k}_used": repr(v) for k, v in result.cpm_thresholds.items()})
    figures = {name: make() for name, make in result.figures.items()}  # all drawn, then logged
    for name, fig in figures.items():
        mlflow.log_figure(fig, name)
        plt.close(fig)
