"""The MLflow run of ``crmvalue backtest``: one parent run of kind ``backtest`` in the experiment of the
config's name, and one nested child run per cut-off x candidate with its metrics.

The parent holds ``backtest.<model>.<metric>.mean`` and ``.std`` over the cut-offs, the settings as
params, the per-cut-off table, the summary and the decile tables as CSV files under ``backtest/``, and
the figures of :mod:`crmvalue.backtest.charts`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crmvalue import __version__, schema
from crmvalue.backtest.charts import FOLDER, figures

if TYPE_CHECKING:
    from crmvalue.backtest.config import BacktestConfig
    from crmvalue.backtest.run import BacktestResult
    from crmvalue.config import ExperimentConfig
    from crmvalue.customer_days import CustomerDays

log = logging.getLogger("crmvalue")

BACKTEST_KIND = "backtest"
PER_CUTOFF_ARTIFACT = f"{FOLDER}/metrics_per_cutoff.csv"
SUMMARY_ARTIFACT = f"{FOLDER}/summary.csv"
DECILES_ARTIFACT = f"{FOLDER}/deciles.csv"
CANDIDATE_TAG = "crmvalue.candidate"
CUTOFF_TAG = "crmvalue.cutoff"
ERROR_TAG = "crmvalue.error"


def finite(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics MLflow can chart: NaN (undefined, e.g. a Gini without buyers) left out."""
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


def log_backtest_run(
    cfg: ExperimentConfig,
    days: CustomerDays,
    observation_end: pd.Timestamp,
    settings: BacktestConfig,
    result: BacktestResult,
    extra_metrics: dict[str, float] | None = None,
) -> str:
    """Log ``result`` as a parent run with a child per cut-off x candidate; the parent's run id.

    SIGINT and SIGTERM are held back meanwhile and taken only between logging steps, never inside
    MLflow's database work; the run ends FINISHED, FAILED or KILLED, never RUNNING."""
    from crmvalue.tracking import TrackingSession, interrupts_deferred

    with interrupts_deferred() as signals, TrackingSession(cfg.tracking_uri):
        run_id = _logged_steps(cfg, days, observation_end, settings, result, extra_metrics or {})
        if signals.received is not None:  # it came once the run was complete: the command completes too
            log.warning("a signal arrived after the backtest run was complete; it is ignored")
            signals.received = None
    return run_id


def _logged_steps(
    cfg: ExperimentConfig,
    days: CustomerDays,
    observation_end: pd.Timestamp,
    settings: BacktestConfig,
    result: BacktestResult,
    extra_metrics: dict[str, float],
) -> str:
    import mlflow

    from crmvalue.store import logging_errors, open_for_writing
    from crmvalue.tracking import checkpoint, flatten, git_commit, resolve_tracking_uri, tracked_run, use_experiment
    from crmvalue.tracking.artifacts import log_figures

    tracking_uri = resolve_tracking_uri(cfg.tracking_uri)
    open_for_writing(tracking_uri)
    with logging_errors(tracking_uri):
        use_experiment(cfg.name, tracking_uri)
    checkpoint()
    resolved = cfg.model_dump(mode="json")
    resolved.pop("tracking_uri", None)  # may hold credentials; the run knows its own store
    resolved["observation_end"] = str(observation_end.date())
    with (
        logging_errors(tracking_uri),
        tempfile.TemporaryDirectory() as tmp_dir,
        tracked_run(run_name=BACKTEST_KIND) as run,
    ):
        tmp = Path(tmp_dir)
        mlflow.set_tags(
            {
                schema.KIND_TAG: BACKTEST_KIND,
                schema.VERSION_TAG: __version__,
                schema.AS_OF_DATE_TAG: str(observation_end.date()),
                schema.DATA_FIRST_DATE_TAG: str(days.first_date.date()),
                "crmvalue.git_commit": git_commit(),
                "crmvalue.data_source": days.source,
                "crmvalue.data_sha256": days.sha256,
            }
        )
        params = flatten(resolved, "config.")
        params.update(
            {
                "backtest.cutoffs": str(len(result.cutoffs)),
                "backtest.cutoff_dates": ",".join(str(c.date()) for c in result.cutoffs),
                "backtest.step_days": str(settings.step_days or result.horizon_days),
                "backtest.min_history_days": str(settings.min_history_days),
                "backtest.models": ",".join(result.models),
                "backtest.horizon_days": str(result.horizon_days),
            }
        )
        mlflow.log_params(params)
        mlflow.log_metrics(finite(result.metric_items()) | finite(extra_metrics))
        checkpoint()
        folder = tmp / FOLDER
        folder.mkdir()
        per_cutoff = result.per_cutoff.assign(cutoff=[str(pd.Timestamp(c).date()) for c in result.per_cutoff["cutoff"]])
        per_cutoff.to_csv(tmp / PER_CUTOFF_ARTIFACT, index=False)
        result.summary().to_csv(tmp / SUMMARY_ARTIFACT, index=False)
        result.deciles.assign(cutoff=[str(pd.Timestamp(c).date()) for c in result.deciles["cutoff"]]).to_csv(
            tmp / DECILES_ARTIFACT, index=False
        )
        mlflow.log_artifacts(str(folder), FOLDER)
        log_figures(figures(result.per_cutoff, result.deciles))
        checkpoint()
        _log_children(result)
        run_id = run.info.run_id
    return run_id


def _log_children(result: BacktestResult) -> None:
    """One nested run per cut-off x candidate: its metrics at that cut-off, or why it failed there."""
    import mlflow

    from crmvalue.tracking import checkpoint

    measured = result.metric_names
    for row in result.per_cutoff.to_dict("records"):
        cutoff = str(pd.Timestamp(row["cutoff"]).date())
        model = str(row["model"])
        with mlflow.start_run(run_name=f"{model} {cutoff}", nested=True):
            tags = {CANDIDATE_TAG: model, CUTOFF_TAG: cutoff}
            error = result.errors.get((cutoff, model))
            if error is not None:
                tags[ERROR_TAG] = error[:5000]
            mlflow.set_tags(tags)
            mlflow.log_metrics(finite({"customers": row["customers"], **{m: row.get(m, np.nan) for m in measured}}))
        checkpoint()
