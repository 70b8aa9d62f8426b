"""One scoring path: customer-days and fitted scorers in, the per-customer output frame out.

``crmvalue train`` fits its scorers and ``crmvalue predict`` loads them from a run; both then call
:func:`customer_features` and :func:`score`, so a model scores new data exactly as it scored
its own. The stages, each timed by :class:`~crmvalue.progress.Progress`:

- ``score``: the value model's scores (P(alive), expected purchases, expected revenue, CLV), current
  and potential value (with a live boosted value model, its revenue and the CLV it corrects:
  :mod:`crmvalue.value_choice`), the value quadrant, optional intervals, the purchase-history columns;
- ``churn``: the churn probability and risk band (trained then scored, or scored), and the
  decisions drawn from them (:mod:`crmvalue.decisions`: value at risk, retention priority, next
  action from the run's action matrix);
- ``analyses``: the CRM analyses, which rank customers against each other, so they are run
  on the scored population.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from crmvalue import schema
from crmvalue.analyses import purchase_history, run_analyses
from crmvalue.customer_days import CustomerDays
from crmvalue.decisions import decision_columns
from crmvalue.errors import CrmvalueError
from crmvalue.features import TimeUnit, WindowReport, revenue_in_window, rfm_summary_with_report
from crmvalue.models import PREDICTION_COLUMNS
from crmvalue.progress import Progress
from crmvalue.segments import quadrant_summary, value_quadrant, value_thresholds

if TYPE_CHECKING:
    from crmvalue.analyses import AnalysesResult
    from crmvalue.config import ExperimentConfig, QuadrantConfig
    from crmvalue.models import ValueModel

log = logging.getLogger("crmvalue")
# what a CRM user reads first, right after the id: the customer's purchase history (crm_columns)
CRM_COLUMNS = schema.names(schema.HISTORY)
INTERVAL_COLUMNS = schema.names(schema.INTERVALS)


@dataclass(frozen=True)
class CustomerFeatures:
    """The RFM summary at the observation end and each customer's revenue in the current-value window."""

    summary: pd.DataFrame  # frequency, recency, T, monetary_value by customer_id
    current: pd.Series  # net revenue in quadrants.current_window_days, aligned with summary
    report: WindowReport  # rows after the observation end, customers without a purchase


def customer_features(
    days: CustomerDays, obs_end: pd.Timestamp, time_unit: TimeUnit, current_window_days: int
) -> CustomerFeatures:
    summary, report = rfm_summary_with_report(days, obs_end, time_unit)
    current = revenue_in_window(days, obs_end, current_window_days)
    return CustomerFeatures(summary, current.reindex(summary.index, fill_value=0.0).astype("float64"), report)


class ChurnStage(Protocol):
    """The churn scores at the observation end: ``train`` trains then scores, ``predict`` scores."""

    text: str  # the progress line

    def scores(self, days: CustomerDays, obs_end: pd.Timestamp) -> pd.DataFrame | None:
        """customer_id, churn_probability, churn_risk; None when the stage was skipped."""


@dataclass(frozen=True)
class AnalysesInputs:
    """What the CRM analyses read besides the scores: the settings and the optional side tables."""

    cfg: ExperimentConfig
    attributes: pd.DataFrame | None = None
    interactions: pd.DataFrame | None = None


@dataclass(frozen=True)
class Scorers:
    """Everything fitted that turns customer features into the output frame."""

    value: Callable[[pd.DataFrame], pd.DataFrame]  # RFM summary -> the value model's PREDICTION_COLUMNS
    thresholds: tuple[float, float] | QuadrantConfig  # a run's quadrant cut-offs, or the rule that places them
    text: str  # the score stage's progress line
    intervals: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # RFM summary -> INTERVAL_COLUMNS
    churn: ChurnStage | None = None
    analyses: AnalysesInputs | None = None
    # the run's next-action matrix (config decisions.actions), quadrant -> churn risk -> action;
    # None: the default matrix. Used when there are churn scores.
    actions: dict[str, dict[str, str]] | None = None
    # a live boosted value model (crmvalue.value_choice.BoostedRevenue): predictions with BTYD's scores, the
    # customer-days and the scoring date -> the same with its expected_revenue and potential_value; None: BTYD
    revenue: Callable[[pd.DataFrame, CustomerDays, pd.Timestamp], pd.DataFrame] | None = None


@dataclass
class Scored:
    predictions: pd.DataFrame  # one row per scored customer, customer_id a column
    quadrants: pd.DataFrame  # the quadrant summary
    thresholds: tuple[float, float]  # current and potential value cut-offs used
    analyses: AnalysesResult | None = None


def score(
    days: CustomerDays, obs_end: pd.Timestamp, features: CustomerFeatures, scorers: Scorers, progress: Progress
) -> Scored:
    """The output frame of every customer in ``features``: value scores, quadrants, the purchase
    history, churn and the decisions drawn from it, the CRM analyses, in the stages ``score``,
    ``churn`` and ``analyses``."""
    with progress.stage("score", scorers.text):
        summary = features.summary
        predictions = pd.concat([summary, scorers.value(summary)], axis=1)
        predictions["current_value"] = features.current
        predictions["potential_value"] = predictions["clv"]
        if scorers.revenue is not None:  # the boosted model is live: its revenue, and the CLV it corrects
            predictions = scorers.revenue(predictions, days, obs_end)
        if isinstance(scorers.thresholds, tuple):
            thresholds = scorers.thresholds
        else:
            rule = scorers.thresholds
            thresholds = value_thresholds(
                predictions["current_value"],
                predictions["potential_value"],
                rule.quantile,
                rule.current_threshold,
                rule.potential_threshold,
                rule=rule.rule,
                potential_top_share=rule.potential_top_share,
            )
        predictions["quadrant"] = value_quadrant(
            predictions["current_value"], predictions["potential_value"], *thresholds
        )
        if scorers.intervals is not None:
            predictions = predictions.join(scorers.intervals(summary))
        check_finite(predictions)
        quadrants = quadrant_summary(predictions)
        predictions = predictions.reset_index()
        predictions, measures = with_crm_columns(predictions, days, obs_end)

    if scorers.churn is not None:
        with progress.stage("churn", scorers.churn.text):
            churn = scorers.churn.scores(days, obs_end)
        if churn is not None:
            scored = churn.set_index("customer_id")
            for column in ("churn_probability", "churn_risk"):
                predictions[column] = scored[column].reindex(predictions["customer_id"]).to_numpy()
            if predictions["churn_probability"].isna().any():
                raise CrmvalueError("churn: some scored customers have no churn probability; please report this")
            decisions = decision_columns(predictions, scorers.actions)
            predictions = predictions.assign(**{c: decisions[c] for c in schema.names(schema.DECISIONS)})

    analyses = None
    if scorers.analyses is not None:
        inputs = scorers.analyses
        with progress.stage("analyses", "running the CRM analyses: RFM, CPM groups, deciles, CRM value, retention"):
            analyses = run_analyses(
                inputs.cfg, days, obs_end, predictions, inputs.attributes, inputs.interactions, measures
            )
            predictions = predictions.join(analyses.columns, on="customer_id")
    return Scored(predictions, quadrants, thresholds, analyses)


def with_crm_columns(predictions: pd.DataFrame, frame: CustomerDays, obs_end) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``predictions`` (one row per customer, a ``customer_id`` column) with :data:`CRM_COLUMNS`, and
    the :func:`purchase_history` they come from. ``crmvalue train`` and ``crmvalue predict`` both
    call it, so they give the same columns by construction. Up to the observation end, from the
    netted customer-days:

    - ``orders``: purchase days (a day that holds a return and nets to <= 0 is not one);
    - ``revenue``: net revenue over the whole history, every day's net amount, returns on a day
      of their own included (``total_sales`` of the CRM analyses);
    - ``first_purchase``, ``last_purchase``: first and last purchase day (ISO dates in files);
    - ``tenure_days``: days from the first purchase day to the observation end.
    """
    measures = purchase_history(frame, obs_end, predictions["customer_id"])
    end = pd.Timestamp(obs_end).normalize()
    first = pd.DatetimeIndex(measures["first_purchase"])
    columns = {
        "orders": measures["orders"].to_numpy(dtype=np.int64),
        "revenue": measures["total_sales"].to_numpy(dtype=np.float64),
        "first_purchase": first,
        "last_purchase": pd.DatetimeIndex(measures["last_purchase"]),
        "tenure_days": np.asarray((end - first).days, dtype=np.int64),
    }
    return predictions.assign(**{c: columns[c] for c in CRM_COLUMNS}), measures


def with_new_customers(
    predictions: pd.DataFrame, table: pd.DataFrame, value: ValueModel, source: str, thresholds: tuple[float, float]
) -> tuple[pd.DataFrame, int]:
    """``predictions`` with a row for every customer of ``table`` (the customer table ``source``, by id) that has
    none, scored by ``value``'s prospective expectation (:meth:`~crmvalue.models.ValueModel.predict_new`), and a
    ``history`` column ('observed' or 'none'); and how many were added. None: ``predictions`` as they are."""
    ids = table.index[~table.index.isin(predictions["customer_id"])]
    if len(ids) == 0:
        return predictions, 0
    new = new_customer_rows(value.predict_new(ids, table, source), thresholds)
    log.info("scored %d customers of %s without a purchase by the prospective expectation", len(ids), source)
    return pd.concat([predictions.assign(history="observed"), new], ignore_index=True), len(ids)


def new_customer_rows(scores: pd.DataFrame, thresholds: tuple[float, float]) -> pd.DataFrame:
    """Output rows of customers without a purchase (ids of the customer table the transactions do not have) from
    their prospective scores (:meth:`crmvalue.models.value.ValueModel.predict_new`, indexed by customer id): no
    history (``orders`` 0, ``tenure_days`` 0: acquired at the scoring date, no first or last purchase), no current
    value, the CLV as potential value and the quadrant it gives at ``thresholds``, ``history`` 'none'. The churn
    model, the decisions and the CRM analyses need a history: their columns stay empty for them."""
    frame = scores.assign(frequency=0.0, recency=0.0, T=0.0, monetary_value=0.0, current_value=0.0)
    frame["potential_value"] = frame["clv"]
    frame["quadrant"] = value_quadrant(frame["current_value"], frame["potential_value"], *thresholds)
    check_finite(frame)
    frame = frame.rename_axis("customer_id").reset_index()
    none = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    return frame.assign(orders=0, revenue=0.0, first_purchase=none, last_purchase=none, tenure_days=0, history="none")


def check_finite(predictions: pd.DataFrame) -> None:
    numeric = predictions[[c for c in [*PREDICTION_COLUMNS, *INTERVAL_COLUMNS, "dert"] if c in predictions]].to_numpy()
    bad = ~np.isfinite(numeric)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise CrmvalueError(
            f"a prediction is not finite for customer {predictions.index[row]!r}; "
            "please report this with the customer's frequency, recency and T"
        )
