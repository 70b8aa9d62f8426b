"""``crmvalue train``: transactions -> RFM -> evaluated value model -> quadrants -> MLflow run -> CRM file.

The order matters for honesty and for clean failures:

1. load and validate the data, build every feature, fit every model: any bad input or
   convergence problem stops here, before MLflow or the output path is touched;
2. evaluate out of time: fit on the calibration period only, score the holdout;
3. refit on the whole history up to the observation end; that fit is what gets exported;
4. log the run, then move the predictions file into place in one rename.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from crmvalue import __version__
from crmvalue.config import ExperimentConfig
from crmvalue.data import Transactions, load_transactions
from crmvalue.errors import CrmvalueError
from crmvalue.evaluation import conditional_expectations, holdout_metrics, naive_rate_forecast
from crmvalue.features import calibration_holdout_summary, revenue_in_window, rfm_summary_with_report
from crmvalue.io import atomic_copy, atomic_write_text, write_table
from crmvalue.models import BetaGeoModel, GammaGammaModel, ValueModel
from crmvalue.models.bgnbd import expected_purchases
from crmvalue.models.gamma_gamma import expected_average_value
from crmvalue.segments import quadrant_summary, value_quadrant, value_thresholds

log = logging.getLogger("crmvalue")

EXPORT_COLUMNS = [
    "customer_id",
    "frequency",
    "recency",
    "T",
    "monetary_value",
    "current_value",
    "p_alive",
    "expected_purchases",
    "expected_avg_value",
    "clv",
    "potential_value",
    "quadrant",
    "run_id",
]
SPEND_CORRELATION_WARNING = 0.3


class Progress:
    """Prints one line per stage to stderr with its duration; silent when ``enabled`` is False."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, key: str, text: str, announce: bool = True):
        """Time a stage. ``announce=False`` prints its line only once it succeeds, so that an input
        error raised inside it is the only line the user sees."""
        start = time.perf_counter()
        if self.enabled and announce:
            print(f"… {text}", file=self.stream, flush=True)
        yield
        elapsed = time.perf_counter() - start
        self.timings[key] = elapsed
        if self.enabled:
            print(f"  {'done' if announce else text} in {elapsed:.1f}s", file=self.stream, flush=True)


@dataclass
class TrainResult:
    run_id: str
    output_path: Path
    predictions: pd.DataFrame
    quadrants: pd.DataFrame
    metrics: dict[str, float]
    value_model: ValueModel
    model_uri: str
    calibration_end: pd.Timestamp
    observation_end: pd.Timestamp
    timings: dict[str, float] = field(default_factory=dict)


def resolve_dates(
    config: ExperimentConfig, transactions: pd.DataFrame, source: str | None = None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Observation end defaults to the last transaction day; calibration end to the span's midpoint."""
    where = f"{source}: " if source else ""
    first = transactions["date"].min().normalize()
    obs_end = pd.Timestamp(config.observation_end) if config.observation_end else transactions["date"].max().normalize()
    if config.calibration_end:
        cal_end = pd.Timestamp(config.calibration_end)
    else:
        cal_end = first + (obs_end - first) / 2
        cal_end = cal_end.normalize()
    if cal_end >= obs_end:
        raise CrmvalueError(
            f"{where}calibration end {cal_end.date()} must be before observation end {obs_end.date()}"
        )
    if first > cal_end:
        raise CrmvalueError(
            f"{where}no transactions on or before the calibration end {cal_end.date()}; "
            f"the data starts on {first.date()}"
        )
    return cal_end, obs_end


def train(
    config: ExperimentConfig,
    data: pd.DataFrame | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Run the whole experiment; ``data`` replaces ``config.data.source`` when given."""
    progress = progress or Progress(enabled=False)
    cfg = config

    with progress.stage("load", f"loaded and checked the transactions from {'a DataFrame' if data is not None else cfg.data.source}", announce=False):
        tx = load_transactions(
            data if data is not None else cfg.data.source,
            customer_col=cfg.data.customer_col,
            date_col=cfg.data.date_col,
            amount_col=cfg.data.amount_col,
            quantity_col=cfg.data.quantity_col,
            date_format=cfg.data.date_format,
        )
        frame = tx.frame
        cal_end, obs_end = resolve_dates(cfg, frame, tx.source)

    with progress.stage("features", "building RFM features and the calibration/holdout split"):
        split = calibration_holdout_summary(frame, cal_end, obs_end, cfg.time_unit)
        summary, report = rfm_summary_with_report(frame, obs_end, cfg.time_unit)
        if report.rows_after_observation_end:
            log.warning(
                "ignored %d rows dated after the observation end %s",
                report.rows_after_observation_end,
                obs_end.date(),
            )
        if report.customers_without_purchase:
            log.warning(
                "%d customers have no purchase (their days net to <= 0 after returns) and are not scored",
                report.customers_without_purchase,
            )
        current = revenue_in_window(frame, obs_end, cfg.quadrants.current_window_days)
        current = current.reindex(summary.index, fill_value=0.0).astype("float64")

    with progress.stage("evaluate", f"evaluating out of time: fit to {cal_end.date()}, score to {obs_end.date()}"):
        evaluation = _evaluate(cfg, split)
        metrics = dict(evaluation.metrics)

    with progress.stage("fit", f"fitting BG/NBD and Gamma-Gamma on all data to {obs_end.date()}"):
        bg = BetaGeoModel(cfg.model.penalizer).fit(summary["frequency"], summary["recency"], summary["T"])
        gg = GammaGammaModel(cfg.model.gamma_gamma_penalizer).fit(summary["frequency"], summary["monetary_value"])
        if abs(gg.frequency_spend_correlation_) > SPEND_CORRELATION_WARNING:
            log.warning(
                "frequency and spend are correlated (r=%.2f > %.1f): the Gamma-Gamma independence assumption is doubtful",
                gg.frequency_spend_correlation_,
                SPEND_CORRELATION_WARNING,
            )
        value_model = ValueModel(bg.params_, gg.params_, cfg.time_unit, cfg.horizon_days, cfg.clv.months, cfg.clv.discount_rate)
        metrics.update(
            {
                "gamma_gamma.frequency_spend_correlation": gg.frequency_spend_correlation_,
                "final.bgnbd.log_likelihood": bg.log_likelihood_,
            }
        )

    with progress.stage("score", f"scoring {len(summary):,} customers and placing them in value quadrants"):
        scores = value_model.predict(summary)
        predictions = pd.concat([summary, scores], axis=1)
        predictions["current_value"] = current
        predictions["potential_value"] = predictions["clv"]
        thresholds = value_thresholds(
            predictions["current_value"],
            predictions["potential_value"],
            cfg.quadrants.quantile,
            cfg.quadrants.current_threshold,
            cfg.quadrants.potential_threshold,
        )
        predictions["quadrant"] = value_quadrant(predictions["current_value"], predictions["potential_value"], *thresholds)
        _check_finite(predictions)
        quadrants = quadrant_summary(predictions)
        predictions = predictions.reset_index()

    with progress.stage("track", "logging the MLflow run and writing the predictions"):
        run_id, model_uri = _log_run(cfg, tx, evaluation, predictions, quadrants, metrics, value_model, bg, gg, thresholds,
                                     cal_end, obs_end, progress)

    predictions["run_id"] = run_id
    return TrainResult(
        run_id=run_id,
        output_path=cfg.output_path,
        predictions=predictions[EXPORT_COLUMNS],
        quadrants=quadrants,
        metrics=metrics,
        value_model=value_model,
        model_uri=model_uri,
        calibration_end=cal_end,
        observation_end=obs_end,
        timings=dict(progress.timings),
    )


@dataclass(frozen=True)
class Evaluation:
    """The calibration-period fit scored on the holdout."""

    metrics: dict[str, float]
    conditional_expectations: pd.DataFrame
    bgnbd: BetaGeoModel
    gamma_gamma: GammaGammaModel


def _evaluate(cfg: ExperimentConfig, split: pd.DataFrame) -> Evaluation:
    """Fit on the calibration period only and score the holdout, with the naive-rate baseline beside it."""
    x, t_x, T_ = split["frequency_cal"], split["recency_cal"], split["T_cal"]
    duration = float(split["duration_holdout"].iloc[0])
    bg = BetaGeoModel(cfg.model.penalizer).fit(x, t_x, T_)
    gg = GammaGammaModel(cfg.model.gamma_gamma_penalizer).fit(x, split["monetary_value_cal"])
    predicted = expected_purchases(bg.params_, duration, x, t_x, T_)
    spend = expected_average_value(gg.params_, x, split["monetary_value_cal"])
    actual = split["frequency_holdout"].to_numpy()
    metrics = {f"holdout.{k}": v for k, v in holdout_metrics(actual, predicted, split["revenue_holdout"], predicted * spend).items()}
    naive = naive_rate_forecast(x, T_, duration)
    naive_spend = split["monetary_value_cal"].where(x > 0, 0.0).to_numpy()
    for k, v in holdout_metrics(actual, naive, split["revenue_holdout"], naive * naive_spend).items():
        metrics[f"baseline.naive_rate.holdout.{k}"] = v
    metrics["bgnbd.log_likelihood"] = bg.log_likelihood_
    metrics["holdout.customers"] = float(len(split))
    metrics["holdout.duration"] = duration
    return Evaluation(metrics, conditional_expectations(x, actual, predicted), bg, gg)


def _check_finite(predictions: pd.DataFrame) -> None:
    numeric = predictions[["p_alive", "expected_purchases", "expected_avg_value", "clv"]].to_numpy()
    bad = ~np.isfinite(numeric)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise CrmvalueError(
            f"a prediction is not finite for customer {predictions.index[row]!r}; "
            "please report this with the customer's frequency, recency and T"
        )


def _log_run(cfg, tx: Transactions, evaluation: Evaluation, predictions, quadrants, metrics, value_model, bg, gg, thresholds,
             cal_end, obs_end, progress) -> tuple[str, str]:
    import mlflow

    from crmvalue import plots
    from crmvalue.tracking import flatten, git_commit, log_value_model, quiet_mlflow, resolve_tracking_uri

    quiet_mlflow()
    mlflow.set_tracking_uri(resolve_tracking_uri(cfg.tracking_uri))
    mlflow.set_experiment(cfg.name)
    resolved = cfg.model_dump(mode="json")
    resolved["calibration_end"] = str(cal_end.date())
    resolved["observation_end"] = str(obs_end.date())
    resolved.pop("tracking_uri", None)  # may hold credentials; the run knows its own store
    out_path = cfg.output_path

    with tempfile.TemporaryDirectory() as tmp_dir, mlflow.start_run() as run:
        tmp = Path(tmp_dir)
        run_id = run.info.run_id
        mlflow.set_tags(
            {
                "crmvalue.data_sha256": tx.sha256,
                "crmvalue.data_source": tx.source,
                "crmvalue.git_commit": git_commit(),
                "crmvalue.version": __version__,
            }
        )
        params = flatten(resolved, "config.")
        params.update({f"bgnbd.{k}": repr(v) for k, v in value_model.bgnbd.as_dict().items()})
        params.update({f"gamma_gamma.{k}": repr(v) for k, v in value_model.gamma_gamma.as_dict().items()})
        params.update({f"evaluation.bgnbd.{k}": repr(v) for k, v in evaluation.bgnbd.params_.as_dict().items()})
        params["quadrants.current_threshold_used"] = repr(thresholds[0])
        params["quadrants.potential_threshold_used"] = repr(thresholds[1])
        mlflow.log_params(params)
        metrics = dict(metrics)
        metrics.update({f"bgnbd.se.{k}": float(v) for k, v in bg.standard_errors_.items()})
        metrics.update({f"gamma_gamma.se.{k}": float(v) for k, v in gg.standard_errors_.items()})
        metrics.update(
            {
                "data.transactions": float(len(tx.frame)),
                "data.customers": float(len(predictions)),
                **{f"quadrant.{q}.customers": float(n) for q, n in quadrants["customers"].items()},
            }
        )
        mlflow.log_metrics(metrics)

        export = predictions.assign(run_id=run_id)[EXPORT_COLUMNS]
        staged = tmp / out_path.name
        write_table(export, staged)
        mlflow.log_artifact(str(staged))
        quadrants.to_csv(tmp / "quadrant_summary.csv")
        mlflow.log_artifact(str(tmp / "quadrant_summary.csv"))
        evaluation.conditional_expectations.to_csv(tmp / "holdout_conditional_expectations.csv")
        mlflow.log_artifact(str(tmp / "holdout_conditional_expectations.csv"))
        (tmp / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        mlflow.log_artifact(str(tmp / "config.yaml"))

        figures = {
            "plots/quadrants.png": plots.quadrant_scatter(predictions, *thresholds),
            "plots/calibration_vs_holdout.png": plots.calibration_vs_holdout(evaluation.conditional_expectations),
            "plots/p_alive_distribution.png": plots.p_alive_distribution(predictions["p_alive"]),
        }
        for name, fig in figures.items():
            mlflow.log_figure(fig, name)
            plots.plt.close(fig)

        model_uri = log_value_model(value_model, predictions)
        mlflow.log_metrics({f"time.{k}_s": v for k, v in progress.timings.items()})

        # the run is complete: only now do the files a CRM or a later run reads appear, each in one rename
        model_dir = Path(cfg.models_dir) / cfg.name
        atomic_write_text(model_dir / "value_model.json", json.dumps(value_model.to_dict(), indent=2))
        atomic_copy(staged, out_path)
    return run_id, model_uri
