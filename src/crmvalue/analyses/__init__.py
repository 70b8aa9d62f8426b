"""CRM analyses from the source documents: RFM scores, CPM groups, deciles, the CRM value score,
retention and cohorts, the retention revenue-cost method, and market segments
(``../shared/docs/domain.md``, sections 1-4).

Every function takes pandas objects and returns a new one, indexed by ``customer_id`` where the
result is per customer; transactions may be canonical rows or their netted
:class:`~crmvalue.customer_days.CustomerDays`. Orders are *purchase days* (:mod:`crmvalue.customer_days`):
a customer's transactions on one day, returns netted, a day cancelled by a return dropped, as in
the rest of the package. Everything is vectorised: no per-customer Python loop.

One module per analysis, its config beside it. Each declares the per-customer columns it adds to
the predictions (``COLUMNS``) and the tables and charts a run logs (``ANALYSIS``); :data:`ANALYSES`
lists them in export order. A new analysis is a module here, a line in :data:`ANALYSES` and its
call in :func:`run_analyses`.
"""

from __future__ import annotations

from crmvalue.analyses import cpm, crm_score, deciles, market_segments, retention, revenue_cost, rfm
from crmvalue.analyses.common import Analysis
from crmvalue.analyses.cpm import CPM_LABELS, CpmConfig, cpm_groups, cpm_table, cpm_thresholds
from crmvalue.analyses.crm_score import (
    CRM_COMPONENTS,
    DEFAULT_CRM_WEIGHTS,
    CrmComponent,
    CrmValueConfig,
    crm_components,
    crm_value_score,
    interaction_score,
    load_interactions,
    loyalty_score,
    percentile_score,
    purchase_score,
    satisfaction_score,
)
from crmvalue.analyses.deciles import decile_table, pareto_share, value_deciles
from crmvalue.analyses.market_segments import MISSING_SEGMENT, segment_table
from crmvalue.analyses.measures import MEASURE_COLUMNS, customer_measures, median_by_group, purchase_history
from crmvalue.analyses.retention import (
    PERIODS_PER_YEAR,
    CustomerPeriods,
    cohort_retention,
    customer_periods,
    retention_table,
)
from crmvalue.analyses.revenue_cost import (
    PLOT_REVENUE_COST,
    SPEARMAN_METRIC,
    RevenueCost,
    RevenueCostConfig,
    clv_comparison,
    forward_value,
    revenue_cost_method,
    spearman,
    year_of_data,
)
from crmvalue.analyses.revenue_cost_chart import revenue_cost_chart
from crmvalue.analyses.rfm import (
    DEFAULT_RFM_SEGMENTS,
    RfmConfig,
    RfmSegmentRule,
    customer_rfm,
    quintile_scores,
    rfm_scores,
    rfm_segment_lookup,
    rfm_segment_table,
)
from crmvalue.analyses.run import (
    MAX_SEGMENT_LEVELS,
    AnalysesResult,
    log_analyses,
    run_analyses,
    segment_columns,
)
from crmvalue.schema import Column

# in export order: the per-customer columns follow the backbone's in this order
ANALYSES: tuple[Analysis, ...] = (
    rfm.ANALYSIS,
    cpm.ANALYSIS,
    deciles.ANALYSIS,
    crm_score.ANALYSIS,
    retention.ANALYSIS,
    revenue_cost.ANALYSIS,
    market_segments.ANALYSIS,
)
ANALYSIS_COLUMNS_DECLARED: tuple[Column, ...] = tuple(column for analysis in ANALYSES for column in analysis.columns)

__all__ = [
    "ANALYSES",
    "ANALYSIS_COLUMNS_DECLARED",
    "CPM_LABELS",
    "CRM_COMPONENTS",
    "DEFAULT_CRM_WEIGHTS",
    "DEFAULT_RFM_SEGMENTS",
    "MAX_SEGMENT_LEVELS",
    "MEASURE_COLUMNS",
    "MISSING_SEGMENT",
    "PERIODS_PER_YEAR",
    "PLOT_REVENUE_COST",
    "SPEARMAN_METRIC",
    "AnalysesResult",
    "Analysis",
    "CpmConfig",
    "CrmComponent",
    "CrmValueConfig",
    "CustomerPeriods",
    "RevenueCost",
    "RevenueCostConfig",
    "RfmConfig",
    "RfmSegmentRule",
    "clv_comparison",
    "cohort_retention",
    "cpm_groups",
    "cpm_table",
    "cpm_thresholds",
    "crm_components",
    "crm_value_score",
    "customer_measures",
    "customer_periods",
    "customer_rfm",
    "decile_table",
    "forward_value",
    "interaction_score",
    "load_interactions",
    "log_analyses",
    "loyalty_score",
    "median_by_group",
    "pareto_share",
    "percentile_score",
    "purchase_history",
    "purchase_score",
    "quintile_scores",
    "retention_table",
    "revenue_cost_chart",
    "revenue_cost_method",
    "rfm_scores",
    "rfm_segment_lookup",
    "rfm_segment_table",
    "run_analyses",
    "satisfaction_score",
    "segment_columns",
    "segment_table",
    "spearman",
    "value_deciles",
    "year_of_data",
]
