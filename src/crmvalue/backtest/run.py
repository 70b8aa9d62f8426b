"""The rolling-origin backtest: at each cut-off, fit every candidate on the data up to it, predict the
next horizon, and score the prediction against what the customers did (:mod:`.metrics`).

No MLflow and no files here (:mod:`.tracking` logs a result): the function is usable from a notebook, and
from a training run that chooses a value model on its own training period.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crmvalue.backtest.candidates import INTERVAL_COLUMNS, Candidate
from crmvalue.backtest.cutoffs import cutoff_actuals, days_until, rolling_cutoffs
from crmvalue.backtest.metrics import cutoff_metrics, decile_table
from crmvalue.customer_days import CustomerDays
from crmvalue.errors import CrmvalueError
from crmvalue.features import TimeUnit
from crmvalue.progress import Progress

log = logging.getLogger("crmvalue")

# the metrics a reader compares first, in the order the table shows them
HEADLINE_METRICS = (
    "revenue.rmse",
    "revenue.gini",
    "revenue.decile_mape",
    "revenue.total_ratio",
    "revenue.spearman",
    "revenue.mae",
    "purchases.rmse",
    "purchases.mae",
    "purchases.total_ratio",
)


@dataclass(frozen=True)
class BacktestResult:
    """Every candidate's metrics at every cut-off, and the revenue decile tables behind the calibration chart."""

    cutoffs: list[pd.Timestamp]
    horizon_days: int
    models: list[str]
    per_cutoff: pd.DataFrame  # one row per (cutoff, model): cutoff, model, customers, then the metrics
    deciles: pd.DataFrame  # cutoff, model, decile, customers, predicted, actual (revenue means)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)  # (cutoff date, model) -> why it failed

    @property
    def metric_names(self) -> list[str]:
        """The metrics measured, the headline ones first, then the others in the order measured."""
        measured = [c for c in self.per_cutoff.columns if c not in ("cutoff", "model", "customers")]
        return [m for m in HEADLINE_METRICS if m in measured] + [m for m in measured if m not in HEADLINE_METRICS]

    def summary(self) -> pd.DataFrame:
        """Per model and metric: the ``mean`` and ``std`` (sample, ddof=1: NaN with one cut-off) over the
        cut-offs where the model ran and the metric is defined, and ``cutoffs``, how many those are."""
        long = self.per_cutoff.melt(
            id_vars=["cutoff", "model"], value_vars=self.metric_names, var_name="metric"
        ).dropna(subset=["value"])
        table = long.groupby(["model", "metric"], sort=False)["value"].agg(["mean", "std", "count"])
        table = table.rename(columns={"count": "cutoffs"}).reset_index()
        order = {m: i for i, m in enumerate(self.models)}
        rank = {m: i for i, m in enumerate(self.metric_names)}
        table = table.sort_values(["model", "metric"], key=lambda s: s.map(order if s.name == "model" else rank))
        return table.reset_index(drop=True)

    def metric_items(self, prefix: str = "backtest") -> dict[str, float]:
        """``<prefix>.<model>.<metric>.mean`` and ``.std`` of :meth:`summary`, the NaN ones left out."""
        items: dict[str, float] = {}
        for row in self.summary().itertuples(index=False):
            for stat in ("mean", "std"):
                value = float(getattr(row, stat))
                if np.isfinite(value):
                    items[f"{prefix}.{row.model}.{row.metric}.{stat}"] = value
        return items

    def mean_table(self, metrics: tuple[str, ...] | list[str] | None = None) -> pd.DataFrame:
        """The mean over cut-offs, one row per model and one column per metric (default: every one)."""
        table = self.summary().pivot(index="model", columns="metric", values="mean")
        columns = [m for m in (metrics or self.metric_names) if m in table.columns]
        return table.reindex(index=[m for m in self.models if m in table.index], columns=columns)


def checked_predictions(name: str, predicted: pd.DataFrame, customers: pd.Index, cutoff: pd.Timestamp) -> pd.DataFrame:
    """A candidate's answer on the cut-off's customers, in their order; a one-line error when it is not usable."""
    where = f"backtest candidate {name} at cut-off {cutoff.date()}"
    if "expected_revenue" not in predicted.columns:
        raise CrmvalueError(f"{where}: its predictions have no expected_revenue column")
    if not predicted.index.is_unique:
        raise CrmvalueError(f"{where}: its predictions name a customer more than once")
    missing = customers.difference(predicted.index)
    if len(missing):
        raise CrmvalueError(
            f"{where}: no prediction for {len(missing):,} of the {len(customers):,} customers seen by the cut-off "
            f"(e.g. {missing[0]!r})"
        )
    columns = ["expected_purchases", "expected_revenue", *(c for c in INTERVAL_COLUMNS if c in predicted.columns)]
    out = predicted.reindex(index=customers, columns=columns)
    if out["expected_revenue"].isna().any():
        raise CrmvalueError(
            f"{where}: expected_revenue is missing for {int(out['expected_revenue'].isna().sum()):,} customers"
        )
    return out


def predict_at(candidate: Candidate, days: CustomerDays, cutoff: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """``candidate`` fitted at ``cutoff`` on :func:`~crmvalue.backtest.cutoffs.days_until` of ``days``, and its
    prediction of the next ``horizon_days``: the only way the backtest calls a candidate, so none sees past
    its cut-off."""
    return candidate.fit_predict(days_until(days, cutoff), cutoff, horizon_days)


def backtest(
    days: CustomerDays,
    observation_end,
    horizon_days: int,
    time_unit: TimeUnit,
    candidates: Mapping[str, Candidate],
    cutoffs: int = 4,
    step_days: int | None = None,
    min_history_days: int = 90,
    progress: Progress | None = None,
) -> BacktestResult:
    """Fit each candidate at each cut-off (:func:`crmvalue.backtest.cutoffs.rolling_cutoffs`) on the data up
    to it and score the next ``horizon_days``; ``step_days`` defaults to the horizon.

    A candidate whose fit fails at a cut-off (a :class:`CrmvalueError`, e.g. a fit that does not converge)
    is recorded in ``errors`` with a warning, and its metrics there are missing; the others go on.
    """
    progress = progress or Progress(enabled=False)
    if not candidates:
        raise CrmvalueError("the backtest has no candidate to compare")
    dates = rolling_cutoffs(days, observation_end, horizon_days, cutoffs, step_days or horizon_days, min_history_days)
    rows, decile_rows, errors = [], [], {}
    for i, cutoff in enumerate(dates, 1):
        actuals = cutoff_actuals(days, cutoff, horizon_days, time_unit)
        end = (cutoff + pd.Timedelta(days=horizon_days)).date()
        with progress.stage(
            f"backtest_cutoff_{i}",
            f"cut-off {i}/{len(dates)} {cutoff.date()}: fitting {', '.join(candidates)} on {len(actuals):,} "
            f"customers, scoring to {end}",
        ):
            for name, candidate in candidates.items():
                try:
                    predicted = predict_at(candidate, days, cutoff, horizon_days)
                except CrmvalueError as exc:
                    errors[(str(cutoff.date()), name)] = str(exc)
                    log.warning("backtest: %s at cut-off %s failed: %s", name, cutoff.date(), exc)
                    rows.append({"cutoff": cutoff, "model": name, "customers": len(actuals)})
                    continue
                frame = actuals.join(checked_predictions(name, predicted, actuals.index, cutoff))
                rows.append({"cutoff": cutoff, "model": name, "customers": len(actuals), **cutoff_metrics(frame)})
                deciles = decile_table(frame["actual_revenue"], frame["expected_revenue"]).reset_index()
                decile_rows.append(deciles.assign(cutoff=cutoff, model=name))
    per_cutoff = pd.DataFrame(rows)
    deciles = (
        pd.concat(decile_rows, ignore_index=True)[["cutoff", "model", "decile", "customers", "predicted", "actual"]]
        if decile_rows
        else pd.DataFrame(columns=["cutoff", "model", "decile", "customers", "predicted", "actual"])
    )
    return BacktestResult(dates, horizon_days, list(candidates), per_cutoff, deciles, errors)
