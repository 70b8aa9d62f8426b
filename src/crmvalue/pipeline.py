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
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import yaml

from crmvalue import __version__
from crmvalue.config import ExperimentConfig
from crmvalue.customer_days import CustomerDays, observation_gap_warning
from crmvalue.diagnostics import fit_diagnostics, gamma_gamma_spend_fit
from crmvalue.engine import load_customer_days
from crmvalue.errors import CrmvalueError
from crmvalue.evaluation import Evaluation, evaluate_purchase_models, skipped_evaluation
from crmvalue.features import (
    calibration_holdout_summary,
    mean_purchase_amount,
    revenue_in_window,
    rfm_summary_with_report,
)
from crmvalue.io import write_table
from crmvalue.models import (
    PREDICTION_COLUMNS,
    PURCHASE_MODELS,
    GammaGammaModel,
    GammaGammaParams,
    PurchaseModel,
    ValueModel,
)
from crmvalue.models.uncertainty import bootstrap_intervals
from crmvalue.segments import quadrant_summary, value_quadrant, value_thresholds

if TYPE_CHECKING:
    from crmvalue.churn import ChurnClassifier, ChurnEvaluation, ChurnGate, ChurnNotEstimable
    from crmvalue.models.bgnbd import BetaGeoParams

log = logging.getLogger("crmvalue")

# what a CRM user reads first, right after the id: the customer's purchase history (crm_columns)
CRM_COLUMNS = ["orders", "revenue", "first_purchase", "last_purchase", "tenure_days"]
EXPORT_COLUMNS = [
    "customer_id",
    *CRM_COLUMNS,
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
INTERVAL_COLUMNS = ["expected_purchases_lower", "expected_purchases_upper", "clv_lower", "clv_upper"]
CHURN_COLUMNS = ["churn_probability", "churn_risk"]  # after quadrant, when the churn model is enabled
# after the Backbone's columns (run_id), when the CRM analyses are enabled
ANALYSIS_COLUMNS = [
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_score",
    "rfm_segment",
    "cpm_group",
    "cpm_label",
    "value_decile",
    "crm_value",
    "crm_grade",
]
SPEND_CORRELATION_WARNING = 0.3
CHURN_SCORING_ARTIFACT = "churn/churn_scoring.json"
CHURN_MODEL_URI_TAG = "crmvalue.churn_model_uri"


def export_columns(predictions: pd.DataFrame) -> list[str]:
    """The id and the purchase history (:data:`CRM_COLUMNS`), the backbone columns in their fixed order,
    churn after quadrant, then the analyses and the interval columns."""
    columns = list(EXPORT_COLUMNS)
    if all(c in predictions.columns for c in CHURN_COLUMNS):
        at = columns.index("quadrant") + 1
        columns[at:at] = CHURN_COLUMNS
    if all(c in predictions.columns for c in ANALYSIS_COLUMNS):
        columns += ANALYSIS_COLUMNS
    return columns + [c for c in INTERVAL_COLUMNS if c in predictions.columns]


def purchase_history(frame: CustomerDays, obs_end, customer_ids) -> pd.DataFrame:
    """:func:`crmvalue.analyses.customer_measures` of the scored customers, in their order.

    Computed once per run: it gives the export's :data:`CRM_COLUMNS` (:func:`with_crm_columns`)
    and the CRM analyses' measures (:func:`_analyses`).
    """
    from crmvalue.analyses import customer_measures

    measures = customer_measures(frame, obs_end).reindex(pd.Index(customer_ids, name="customer_id"))
    if measures["orders"].isna().any():
        raise CrmvalueError("a scored customer has no purchase day; please report this")
    return measures


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


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (``getrusage`` max RSS; KB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class Progress:
    """Prints one line per stage to stderr with its duration and the peak memory so far; silent
    when ``enabled`` is False. ``timings`` and ``peaks_mb`` hold both per stage."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.timings: dict[str, float] = {}
        self.peaks_mb: dict[str, float] = {}  # the process's peak RSS when the stage ended

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
        self.peaks_mb[key] = peak_rss_mb()
        if self.enabled:
            print(
                f"  {'done' if announce else text} in {elapsed:.1f}s (peak memory {self.peaks_mb[key]:,.0f} MB)",
                file=self.stream,
                flush=True,
            )

    def metrics(self) -> dict[str, float]:
        """``time.<stage>_s`` for every stage, ``memory.<stage>_peak_mb`` and the overall ``memory.peak_mb``."""
        metrics = {f"time.{k}_s": v for k, v in self.timings.items()}
        metrics.update({f"memory.{k}_peak_mb": v for k, v in self.peaks_mb.items()})
        metrics["memory.peak_mb"] = peak_rss_mb()
        return metrics


@dataclass
class TrainResult:
    run_id: str
    output_path: Path
    predictions: pd.DataFrame
    quadrants: pd.DataFrame
    metrics: dict[str, float]
    value_model: ValueModel
    model_uri: str
    evaluation: Evaluation
    calibration_end: pd.Timestamp
    observation_end: pd.Timestamp
    timings: dict[str, float] = field(default_factory=dict)
    churn: ChurnResult | None = None
    registered: dict[str, int] = field(default_factory=dict)  # registered model name -> new version


def resolve_dates(
    config: ExperimentConfig, transactions: pd.DataFrame | CustomerDays, source: str | None = None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Observation end defaults to the last transaction day; calibration end to the span's midpoint."""
    where = f"{source}: " if source else ""
    if isinstance(transactions, CustomerDays):
        first, last = transactions.first_date, transactions.last_date
    else:
        first, last = transactions["date"].min().normalize(), transactions["date"].max().normalize()
    obs_end = pd.Timestamp(config.observation_end) if config.observation_end else last
    if config.calibration_end:
        cal_end = pd.Timestamp(config.calibration_end)
    else:
        cal_end = first + (obs_end - first) / 2
        cal_end = cal_end.normalize()
    if cal_end >= obs_end:
        raise CrmvalueError(f"{where}calibration end {cal_end.date()} must be before observation end {obs_end.date()}")
    if first > cal_end:
        raise CrmvalueError(
            f"{where}no transactions on or before the calibration end {cal_end.date()}; "
            f"the data starts on {first.date()}"
        )
    if config.observation_end:
        gap = observation_gap_warning(last, obs_end)
        if gap:
            log.warning(f"{where}{gap}")
    return cal_end, obs_end


@dataclass
class TrainedRun:
    """Everything a finished training computed, before anything is written: what a run writer records."""

    cfg: ExperimentConfig
    tx: CustomerDays
    evaluation: Evaluation
    diagnostics: dict[str, dict[str, pd.DataFrame]]
    predictions: pd.DataFrame
    quadrants: pd.DataFrame
    metrics: dict[str, float]
    value_model: ValueModel
    purchase: PurchaseModel
    gamma_gamma: GammaGammaModel
    thresholds: tuple[float, float]
    calibration_end: pd.Timestamp
    observation_end: pd.Timestamp
    progress: Progress
    churn: ChurnResult | None = None
    analyses: AnalysesResult | None = None


def check_outputs(cfg: ExperimentConfig, store: bool = True) -> None:
    """Pre-flight, before any data is read: the predictions file and its folder, ``models/<name>/``
    and (with ``store``) the tracking store can be written. Creates nothing; a one-line
    :class:`CrmvalueError` names the path."""
    from crmvalue.io import check_writable
    from crmvalue.store import check_store
    from crmvalue.tracking import resolve_tracking_uri

    check_writable(cfg.output_path, "the predictions file", "set --out")
    check_writable(Path(cfg.models_dir) / cfg.name, "the models folder", "set models_dir in the config", directory=True)
    if store:
        check_store(resolve_tracking_uri(cfg.tracking_uri))


class MlflowRunWriter:
    """Records a trained run in MLflow (params, metrics, artifacts), then, all or nothing, moves the
    predictions file into place, registers the models and updates ``models/<name>/``."""

    def write(self, run: TrainedRun) -> tuple[str, str, dict[str, int]]:
        """Returns the run id, the value model's URI and the registered versions.

        SIGINT and SIGTERM are held back meanwhile and taken only between logging steps, never in
        the middle of MLflow's database work; one that arrives during the commit undoes it.
        """
        from crmvalue.tracking import interrupts_deferred

        with interrupts_deferred() as signals:
            ids = _log_run(
                run.cfg,
                run.tx,
                run.evaluation,
                run.diagnostics,
                run.predictions,
                run.quadrants,
                run.metrics,
                run.value_model,
                run.purchase,
                run.gamma_gamma,
                run.thresholds,
                run.calibration_end,
                run.observation_end,
                run.progress,
                run.churn,
                run.analyses,
            )
            if signals.received is not None:  # it came once the run was complete: the command completes too
                log.warning("a signal arrived after the run was complete and committed; it is ignored")
                signals.received = None
        return ids


class InMemoryRunWriter:
    """Keeps each run in memory and writes only the predictions file (atomically): for tests that
    train hundreds of times, where MLflow's own cost would dominate. Everything else is real."""

    def __init__(self):
        self.runs: dict[str, TrainedRun] = {}

    def write(self, run: TrainedRun) -> tuple[str, str, dict[str, int]]:
        import uuid

        from crmvalue.io import atomic_write_table

        run_id = uuid.uuid4().hex
        self.runs[run_id] = run
        atomic_write_table(run.predictions.assign(run_id=run_id)[export_columns(run.predictions)], run.cfg.output_path)
        return run_id, f"memory://{run_id}/value_model", {}


def train(
    config: ExperimentConfig,
    data: pd.DataFrame | None = None,
    progress: Progress | None = None,
    writer: MlflowRunWriter | InMemoryRunWriter | None = None,
) -> TrainResult:
    """Run the whole experiment; ``data`` replaces ``config.data.source`` when given. ``writer``
    records the result (default: an MLflow run, the predictions file and ``models/``)."""
    progress = progress or Progress(enabled=False)
    writer = writer or MlflowRunWriter()
    cfg = config
    # an output or store the run cannot write fails now, in one line, not after the fits
    check_outputs(cfg, store=isinstance(writer, MlflowRunWriter))

    with progress.stage(
        "load",
        f"loaded and checked the transactions from {'a DataFrame' if data is not None else cfg.data.source}",
        announce=False,
    ):
        data_is_simulated = data is None and cfg.data.source == "simulated"
        if data_is_simulated:
            from crmvalue.simulate import simulate_from_config

            data = simulate_from_config(cfg.data.simulation)
        tx = load_customer_days(
            data if data is not None else cfg.data.source,
            customer_col=cfg.data.customer_col,
            date_col=cfg.data.date_col,
            amount_col=cfg.data.amount_col,
            quantity_col=cfg.data.quantity_col,
            date_format=cfg.data.date_format,
            engine=cfg.data.engine,
            dayfirst=cfg.data.dayfirst,
            price_col=cfg.data.price_col,
            sep=cfg.data.sep,
            decimal=cfg.data.decimal,
            thousands=cfg.data.thousands,
            encoding=cfg.data.encoding,
            drop_missing_ids=cfg.data.drop_missing_ids,
            allow_future_dates=cfg.data.allow_future_dates,
        )
        data = None  # the netted customer-days below are all the later steps need, not the rows
        frame = tx
        cal_end, obs_end = resolve_dates(cfg, frame, tx.source)
        attributes = interactions = None
        if cfg.data.customers is not None and (cfg.churn.enabled or cfg.analyses.enabled):
            from crmvalue.data import load_customer_attributes

            attributes = load_customer_attributes(cfg.data.customers, cfg.data.customers_id_col)
        if cfg.analyses.enabled and cfg.analyses.interactions is not None:
            from crmvalue.analyses import load_interactions

            a = cfg.analyses
            interactions = load_interactions(
                a.interactions, a.interactions_id_col, a.interactions_date_col, a.interactions_channel_col
            )
        if cfg.analyses.enabled and attributes is not None:
            _segment_columns(
                cfg.analyses.segment_columns, attributes
            )  # a misnamed column fails now, not after the fits
        if cfg.analyses.enabled and cfg.analyses.crm_value.satisfaction_column is not None:
            column = cfg.analyses.crm_value.satisfaction_column
            if attributes is None or column not in attributes.columns:
                raise CrmvalueError(
                    f"analyses.crm_value.satisfaction_column '{column}' needs a customer table (--customers) "
                    f"with that column{'' if attributes is None else '; its columns are ' + ', '.join(attributes.columns)}"
                )
        churn_skipped = None  # why the churn stage does not run (churn.enabled: auto)
        if cfg.churn.enabled:
            from crmvalue.churn import ChurnNotEstimable, check_history, check_test_window

            # data too short for the churn protocol: refused (--churn) or skipped (auto) now, not after every fit
            try:
                check_test_window(cal_end, obs_end, cfg.horizon_days)
                check_history(frame.first_date, cal_end, cfg.horizon_days, cfg.churn.min_history_days)
            except ChurnNotEstimable as exc:
                if cfg.churn.enabled is True:
                    raise
                churn_skipped = _skip_churn(exc)

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

    candidates = list(cfg.model.candidates) if cfg.model.purchase_model == "auto" else [cfg.model.purchase_model]
    with progress.stage(
        "evaluate",
        f"evaluating {', '.join(candidates)} out of time: fit to {cal_end.date()}, score to {obs_end.date()}",
    ):
        try:
            if not (split["T_cal"] > 0).any():
                raise CrmvalueError(
                    f"every customer's first purchase is on the calibration end {cal_end.date()}, "
                    "so the calibration period observes no time"
                )
            evaluation = evaluate_purchase_models(
                split,
                candidates,
                cfg.model.penalizer,
                cfg.model.gamma_gamma_penalizer,
                cfg.model.selection_metric,
                mean_purchase_amount(frame, cal_end),
            )
        except CrmvalueError as exc:  # the calibration period cannot be fitted: degrade, the final fit may still work
            evaluation = skipped_evaluation(candidates, str(exc))
            log.warning("out-of-time evaluation skipped: %s; the run has no holdout metrics", exc)
        fitted_models = [r.model for r in evaluation.candidates.values() if r.model is not None]
        for fitted in ([evaluation.gamma_gamma] if evaluation.gamma_gamma is not None else []) + fitted_models:
            if fitted.warning_:
                log.warning("calibration fit: %s", fitted.warning_)
        best = evaluation.best
        metrics = (
            {}
            if best is None
            else {
                f"holdout.{k.removeprefix('holdout.')}": v for k, v in best.metrics.items() if k.startswith("holdout.")
            }
        )
        metrics.update(evaluation.baseline)
        for result in evaluation.candidates.values():
            if result.model is not None:
                metrics[f"{result.name}.log_likelihood"] = result.metrics["log_likelihood"]
        metrics.update(
            {"holdout.customers": float(evaluation.holdout_customers), "holdout.duration": evaluation.duration}
        )
        metrics.update(value_gate(metrics, cfg.quality.max_total_error, cal_end, obs_end))
        if len(candidates) > 1:
            log.info("model selection: %s", evaluation.reason)

    with progress.stage(
        "fit",
        f"fitting {PURCHASE_MODELS[evaluation.winner].params_class.label} and Gamma-Gamma "
        f"on all data to {obs_end.date()}",
    ):
        purchase = PURCHASE_MODELS[evaluation.winner](cfg.model.penalizer).fit(
            summary["frequency"], summary["recency"], summary["T"]
        )
        gg = GammaGammaModel(cfg.model.gamma_gamma_penalizer).fit(
            summary["frequency"], summary["monetary_value"], mean_spend=mean_purchase_amount(frame, obs_end)
        )
        for fitted in (purchase, gg):
            if fitted.warning_:
                log.warning("final fit: %s", fitted.warning_)
        if (
            np.isfinite(gg.frequency_spend_correlation_)
            and abs(gg.frequency_spend_correlation_) > SPEND_CORRELATION_WARNING
        ):
            log.warning(
                "frequency and spend are correlated (r=%.2f > %.1f): the Gamma-Gamma independence assumption is doubtful",
                gg.frequency_spend_correlation_,
                SPEND_CORRELATION_WARNING,
            )
        value_model = ValueModel(
            purchase.params_, gg.params_, cfg.time_unit, cfg.horizon_days, cfg.clv.months, cfg.clv.discount_rate
        )
        metrics.update(
            {
                "gamma_gamma.frequency_spend_correlation": gg.frequency_spend_correlation_,
                f"final.{purchase.name}.log_likelihood": purchase.log_likelihood_,
            }
        )
        if (
            data_is_simulated
            and cfg.data.simulation.model == purchase.name
            and cfg.time_unit == cfg.data.simulation.time_unit
        ):
            # the truth is known: how far the final fit landed from it
            for name, value in purchase.params_.as_dict().items():
                metrics[f"recovery.{name}.relative_error"] = value / cfg.data.simulation.params[name] - 1

    scoring = f"scoring {len(summary):,} customers" + (
        f" with {cfg.intervals.draws} bootstrap draws" if cfg.intervals.enabled else ""
    )
    with progress.stage("score", f"{scoring} and placing them in value quadrants"):
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
        predictions["quadrant"] = value_quadrant(
            predictions["current_value"], predictions["potential_value"], *thresholds
        )
        if cfg.intervals.enabled:
            predictions = predictions.join(
                bootstrap_intervals(
                    value_model,
                    summary,
                    purchase.log_param_covariance_,
                    gg.log_param_covariance_,
                    cfg.intervals.draws,
                    cfg.intervals.level,
                    cfg.intervals.seed,
                )
            )
        _check_finite(predictions)
        quadrants = quadrant_summary(predictions)
        predictions = predictions.reset_index()
        predictions, measures = with_crm_columns(predictions, frame, obs_end)

    churn_result = None
    if cfg.churn.enabled and churn_skipped is None:
        from crmvalue.churn import ChurnNotEstimable

        with progress.stage(
            "churn", "training the LightGBM churn model on rolling cut-offs and testing it out of time"
        ):
            try:
                churn_result = _churn(cfg, frame, cal_end, obs_end, attributes)
            except ChurnNotEstimable as exc:  # valid data the protocol cannot use: labels of one class, ...
                if cfg.churn.enabled is True:
                    raise
                churn_skipped = _skip_churn(exc)
        if churn_result is not None:
            scored = churn_result.scores.set_index("customer_id")
            predictions["churn_probability"] = (
                scored["churn_probability"].reindex(predictions["customer_id"]).to_numpy()
            )
            predictions["churn_risk"] = scored["churn_risk"].reindex(predictions["customer_id"]).to_numpy()
            if predictions["churn_probability"].isna().any():
                raise CrmvalueError("churn: some scored customers have no churn probability; please report this")
            metrics.update(churn_result.evaluation.metrics)
            metrics.update(churn_result.gate.metric_items())
    if cfg.churn.enabled and churn_skipped is not None:
        churn_result = ChurnResult.skip(churn_skipped)

    analyses = None
    if cfg.analyses.enabled:
        with progress.stage("analyses", "running the CRM analyses: RFM, CPM groups, deciles, CRM value, retention"):
            analyses = _analyses(cfg, frame, obs_end, predictions, attributes, interactions, measures)
            predictions = predictions.join(analyses.columns, on="customer_id")
            metrics["analyses.pareto_top20_share"] = analyses.pareto_top20_share

    with progress.stage("diagnose", "computing the fit diagnostics"):
        # before MLflow is touched, so a failure here leaves no half-logged run
        diagnostics = {
            name: fit_diagnostics(result.model, frame, split, cal_end, obs_end, cfg.time_unit)
            for name, result in evaluation.candidates.items()
            if result.model is not None
        }
        if isinstance(gg.params_, GammaGammaParams):  # no spend distribution to draw for the mean-spend fallback
            diagnostics.setdefault(evaluation.winner, {})["spend_fit"] = gamma_gamma_spend_fit(
                gg.params_, predictions["frequency"], predictions["monetary_value"], bins=40, upper_quantile=0.995
            )

    with progress.stage("track", "logging the MLflow run and writing the predictions"):
        run_id, model_uri, registered = writer.write(
            TrainedRun(
                cfg,
                tx,
                evaluation,
                diagnostics,
                predictions,
                quadrants,
                metrics,
                value_model,
                purchase,
                gg,
                thresholds,
                cal_end,
                obs_end,
                progress,
                churn_result,
                analyses,
            )
        )

    predictions["run_id"] = run_id
    return TrainResult(
        run_id=run_id,
        output_path=cfg.output_path,
        predictions=predictions[export_columns(predictions)],
        quadrants=quadrants,
        metrics=metrics,
        value_model=value_model,
        model_uri=model_uri,
        evaluation=evaluation,
        calibration_end=cal_end,
        observation_end=obs_end,
        timings=dict(progress.timings),
        churn=churn_result,
        registered=registered,
    )


def _check_finite(predictions: pd.DataFrame) -> None:
    numeric = predictions[[c for c in PREDICTION_COLUMNS + INTERVAL_COLUMNS if c in predictions]].to_numpy()
    bad = ~np.isfinite(numeric)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise CrmvalueError(
            f"a prediction is not finite for customer {predictions.index[row]!r}; "
            "please report this with the customer's frequency, recency and T"
        )


def _log_run(
    cfg,
    tx: CustomerDays,
    evaluation: Evaluation,
    diagnostics: dict[str, dict[str, pd.DataFrame]],
    predictions,
    quadrants,
    metrics,
    value_model,
    purchase: PurchaseModel,
    gg: GammaGammaModel,
    thresholds,
    cal_end,
    obs_end,
    progress,
    churn_result: ChurnResult | None = None,
    analyses: AnalysesResult | None = None,
) -> tuple[str, str, dict[str, int]]:
    import mlflow

    from crmvalue import plots
    from crmvalue.io import StagedFiles
    from crmvalue.store import logging_errors, open_for_writing
    from crmvalue.tracking import (
        checkpoint,
        flatten,
        git_commit,
        interrupts_deferred,
        log_value_model,
        quiet_mlflow,
        resolve_tracking_uri,
        tracked_run,
        use_experiment,
    )

    started = time.perf_counter()
    quiet_mlflow()
    tracking_uri = resolve_tracking_uri(cfg.tracking_uri)
    open_for_writing(tracking_uri)  # a new store is created under a lock: concurrent first runs both succeed
    mlflow.set_tracking_uri(tracking_uri)
    with logging_errors(tracking_uri):
        use_experiment(cfg.name, tracking_uri)
    checkpoint()  # SIGINT/SIGTERM are taken at these points only (MlflowRunWriter holds them back)
    resolved = cfg.model_dump(mode="json")
    resolved["calibration_end"] = str(cal_end.date())
    resolved["observation_end"] = str(obs_end.date())
    resolved.pop("tracking_uri", None)  # may hold credentials; the run knows its own store
    out_path = cfg.output_path

    # the run ends FINISHED, FAILED or KILLED (SIGINT/SIGTERM); MLflow, database and file errors are one line
    with logging_errors(tracking_uri), tempfile.TemporaryDirectory() as tmp_dir, tracked_run() as run:
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
        mlflow.set_tag("crmvalue.selection", evaluation.reason)
        mlflow.set_tag("crmvalue.evaluation", "ran" if evaluation.skipped is None else f"skipped: {evaluation.skipped}")
        mlflow.set_tags(
            quality_tags(cfg, metrics, churn_result)
        )  # the quality gates' verdicts: churn stage, value model
        mlflow.set_tags(
            {
                "crmvalue.kind": "train",
                "crmvalue.as_of_date": str(obs_end.date()),
                "crmvalue.data_first_date": str(tx.first_date.date()),
                "crmvalue.predictions_artifact": out_path.name,
            }
        )
        params = flatten(resolved, "config.")
        params["purchase_model"] = purchase.name
        params.update({f"{purchase.name}.{k}": repr(v) for k, v in purchase.params_.as_dict().items()})
        params.update({f"gamma_gamma.{k}": repr(v) for k, v in gg.params_.as_dict().items()})
        # the fallback ridge of a boundary fit (0.0: an interior optimum; see the README's "Boundary fits")
        params[f"{purchase.name}.penalizer_used"] = repr(purchase.penalizer_used_)
        params["gamma_gamma.penalizer_used"] = repr(gg.penalizer_used_)
        mlflow.set_tags(
            {
                f"crmvalue.boundary.{prefix}": model.boundary_
                for model, prefix in ((purchase, purchase.name), (gg, "gamma_gamma"))
                if model.boundary_
            }
        )
        if evaluation.best is not None:
            params.update(
                {f"evaluation.{purchase.name}.{k}": repr(v) for k, v in evaluation.best.model.params_.as_dict().items()}
            )
        params["quadrants.current_threshold_used"] = repr(thresholds[0])
        params["quadrants.potential_threshold_used"] = repr(thresholds[1])
        mlflow.log_params(params)
        metrics = dict(metrics)
        metrics.update({f"{purchase.name}.se.{k}": float(v) for k, v in purchase.standard_errors_.items()})
        metrics.update({f"gamma_gamma.se.{k}": float(v) for k, v in gg.standard_errors_.items()})
        for model, prefix in ((purchase, purchase.name), (gg, "gamma_gamma")):
            for bound in ("lower", "upper"):
                metrics.update(
                    {f"{prefix}.ci95_{bound}.{k}": float(v) for k, v in model.confidence_intervals_[bound].items()}
                )
        metrics.update(
            {
                "data.transactions": float(tx.transactions),
                "data.customers": float(len(predictions)),
                **{f"quadrant.{q}.customers": float(n) for q, n in quadrants["customers"].items()},
            }
        )
        mlflow.log_metrics(metrics)
        checkpoint()

        export = predictions.assign(run_id=run_id)[export_columns(predictions)]
        staged = tmp / out_path.name
        write_table(export, staged)
        mlflow.log_artifact(str(staged))
        quadrants.to_csv(tmp / "quadrant_summary.csv")
        mlflow.log_artifact(str(tmp / "quadrant_summary.csv"))
        if evaluation.best is not None:
            evaluation.best.conditional_expectations.to_csv(tmp / "holdout_conditional_expectations.csv")
            mlflow.log_artifact(str(tmp / "holdout_conditional_expectations.csv"))
        (tmp / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        mlflow.log_artifact(str(tmp / "config.yaml"))
        checkpoint()

        figures = {
            "plots/quadrants.png": plots.quadrant_scatter(predictions, *thresholds),
            "plots/p_alive_distribution.png": plots.p_alive_distribution(predictions["p_alive"]),
        }
        if evaluation.best is not None:
            figures["plots/calibration_vs_holdout.png"] = plots.calibration_vs_holdout(
                evaluation.best.conditional_expectations
            )
        _log_figures(figures)
        # the winner's fit diagnostics, from its calibration-period fit (out of time), and the final spend fit
        tables = diagnostics.get(evaluation.winner, {})
        _log_tables(tables, tmp)
        _log_figures(plots.diagnostic_figures(tables, cfg.time_unit, evaluation.duration))
        checkpoint()

        if len(evaluation.candidates) > 1:
            _log_candidates(evaluation, diagnostics, cfg.time_unit, tmp)
            checkpoint()
        if analyses is not None:
            _log_analyses(analyses, tmp)
            checkpoint()
        model_uri = log_value_model(value_model, predictions)
        checkpoint()
        churn_uri = _log_churn(churn_result, tmp, cfg) if churn_result is not None else None
        mlflow.log_metrics(progress.metrics())
        _log_final_metrics(started)
        checkpoint()

        # the run is complete. All or nothing, and not stopped half-way by a signal: the export, then
        # the registry, then models/<name>/; a failure on the way puts back what was there
        model_dir = Path(cfg.models_dir) / cfg.name
        files, registered = StagedFiles(), {}
        with interrupts_deferred():
            try:
                files.copy(staged, out_path)
                if cfg.registry.enabled:
                    _register(cfg, run_id, model_uri, churn_uri, registered)
                files.write_text(model_dir / "value_model.json", json.dumps(value_model.to_dict(), indent=2))
                if churn_result is not None and churn_result.skipped is None:
                    files.write_text(
                        model_dir / "churn_model.txt",
                        churn_result.model.booster_.model_to_string(num_iteration=churn_result.model.best_iteration_),
                    )
                    files.write_text(
                        model_dir / "churn_calibration.json",
                        json.dumps(churn_result.model.calibration_state(), indent=2),
                    )
                    if churn_result.categories:
                        files.write_text(
                            model_dir / "attribute_categories.json", json.dumps(churn_result.categories, indent=2)
                        )
                checkpoint()  # a signal held back during the commit stops the run here, and the commit is undone
            except BaseException:
                _unregister(registered, run_id)
                files.rollback()
                raise
            files.commit()
    return run_id, model_uri, registered


def _register(
    cfg: ExperimentConfig, run_id: str, model_uri: str, churn_uri: str | None, registered: dict[str, int]
) -> dict[str, int]:
    """New versions of the registered value (and churn) models, their numbers tagged on the run.
    Each goes into ``registered`` as soon as it exists, so that a failure half-way can be undone."""
    import mlflow

    from crmvalue import registry

    registered[cfg.registry.value_model] = registry.register(model_uri, cfg.registry.value_model, run_id)
    mlflow.set_tag(registry.VERSION_TAG, str(registered[cfg.registry.value_model]))
    if churn_uri is not None:
        registered[cfg.registry.churn_model] = registry.register(churn_uri, cfg.registry.churn_model, run_id)
        mlflow.set_tag(registry.CHURN_VERSION_TAG, str(registered[cfg.registry.churn_model]))
    return registered


def _unregister(registered: dict[str, int], run_id: str) -> None:
    """Take back the versions :func:`_register` made (newest first) and their tags on the run; what
    cannot be undone is said in a warning, as the first error is the one to report."""
    from mlflow.tracking import MlflowClient

    from crmvalue import registry

    for name, version in reversed(list(registered.items())):
        try:
            registry.unregister(name, version)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not remove version %s of %s from the model registry: %s", version, name, exc)
    for tag in (registry.VERSION_TAG, registry.CHURN_VERSION_TAG):
        with contextlib.suppress(Exception):
            MlflowClient().delete_tag(run_id, tag)
    registered.clear()


def _log_final_metrics(started: float) -> None:
    """The track stage's own time and memory up to its commit (the stage's progress line times all of it)."""
    import mlflow

    peak = peak_rss_mb()
    mlflow.log_metrics(
        {"time.track_s": time.perf_counter() - started, "memory.track_peak_mb": peak, "memory.peak_mb": peak}
    )


def _log_figures(figures: dict) -> None:
    import mlflow

    from crmvalue import plots

    for name, fig in figures.items():
        mlflow.log_figure(fig, name)
        plots.plt.close(fig)


def _log_tables(tables: dict[str, pd.DataFrame], tmp: Path) -> None:
    """Each diagnostic table as diagnostics/<name>.csv, so a figure's numbers can be read back."""
    import mlflow

    folder = tmp / "diagnostics"
    folder.mkdir(exist_ok=True)
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv")
    mlflow.log_artifacts(str(folder), "diagnostics")


def _log_candidates(
    evaluation: Evaluation, diagnostics: dict[str, dict[str, pd.DataFrame]], time_unit: str, tmp: Path
) -> None:
    """One nested child run per candidate: its calibration fit, uncertainty, fit criteria, holdout metrics and figures."""
    import mlflow

    from crmvalue import plots

    for name, result in evaluation.candidates.items():
        with mlflow.start_run(run_name=name, nested=True):
            mlflow.set_tags({"crmvalue.candidate": name, "crmvalue.winner": str(name == evaluation.winner).lower()})
            if result.model is None:
                mlflow.set_tag("crmvalue.error", result.error or "")
                continue
            model = result.model
            mlflow.log_params({f"{name}.{k}": repr(v) for k, v in model.params_.as_dict().items()})
            child = {f"{name}.{k}": v for k, v in result.metrics.items() if not k.startswith("holdout.")}
            child.update({k: v for k, v in result.metrics.items() if k.startswith("holdout.")})
            child.update({f"{name}.se.{k}": float(v) for k, v in model.standard_errors_.items()})
            child.update({f"{name}.ci95_lower.{k}": float(v) for k, v in model.confidence_intervals_["lower"].items()})
            child.update({f"{name}.ci95_upper.{k}": float(v) for k, v in model.confidence_intervals_["upper"].items()})
            mlflow.log_metrics(child)
            tables = {k: v for k, v in diagnostics[name].items() if k != "spend_fit"}
            tables["conditional_expectations"] = result.conditional_expectations
            with tempfile.TemporaryDirectory(dir=tmp) as child_tmp:
                _log_tables(tables, Path(child_tmp))
            figures = plots.diagnostic_figures(tables, time_unit, evaluation.duration)
            figures["plots/calibration_vs_holdout.png"] = plots.calibration_vs_holdout(result.conditional_expectations)
            _log_figures(figures)


@dataclass
class ChurnResult:
    """The churn stage's outcome; with ``skipped`` set (churn.enabled: auto on data it cannot use)
    it says only why, and every other field is empty."""

    evaluation: ChurnEvaluation | None  # the out-of-time test, with its baselines
    model: ChurnClassifier | None  # trained on every cut-off whose labels end by the observation end
    scores: pd.DataFrame | None  # customer_id, churn_probability, churn_risk at the observation end
    example: pd.DataFrame | None  # a few feature rows, for the logged model's signature
    categories: dict[str, list[str]] = field(default_factory=dict)  # attr_<column> -> categories by code
    bgnbd_params: BetaGeoParams | None = None  # the BG/NBD features' fit at the observation end
    gate: ChurnGate | None = None  # the model against its baselines on the held-out cut-off: who scores the export
    skipped: str | None = None  # why the churn stage did not run

    @classmethod
    def skip(cls, reason: str) -> ChurnResult:
        return cls(None, None, None, None, skipped=reason)

    @property
    def scorer(self) -> str | None:
        """``lightgbm``, or the baseline whose calibrated probability the export uses; None when skipped."""
        return None if self.gate is None else self.gate.scorer


def _skip_churn(exc: ChurnNotEstimable) -> str:
    """churn.enabled: auto on data the churn protocol cannot use: one warning line; the reason, for the tags and report."""
    log.warning(
        "churn: skipped, %s; the run goes on without churn_probability and churn_risk "
        "(churn.enabled: auto; --churn makes this an error)",
        exc.reason,
    )
    return exc.reason


def _churn(
    cfg: ExperimentConfig, frame: pd.DataFrame, cal_end, obs_end, attributes: pd.DataFrame | None
) -> ChurnResult:
    """Test the churn model out of time at the calibration end, then refit to score at the observation end."""
    from crmvalue import churn

    c = cfg.churn
    data = churn.prepare(frame, obs_end, churn.feature_attributes(attributes, c.attribute_columns))
    # trained and tested on a random sample of customers (all of them up to churn.sample_customers); all are scored
    sample = churn.sample_customers(data, c.sample_customers, c.seed)
    if len(sample.ids) < len(data.ids):
        log.info(
            "churn: training and testing on %s of %s customers (churn.sample_customers)",
            f"{len(sample.ids):,}",
            f"{len(data.ids):,}",
        )
    evaluation = churn.evaluate_churn(sample, cal_end, obs_end, c, cfg.horizon_days, cfg.time_unit, cfg.model.penalizer)
    evaluation.metrics["churn.sampled_customers"] = float(len(sample.ids))
    rows = churn.training_rows(sample, obs_end, c, cfg.horizon_days, cfg.time_unit, cfg.model.penalizer)
    model, _ = churn.fit_churn_model(rows, c, list(data.categories))
    columns = churn.feature_columns(rows)
    params = churn.bgnbd_params_at(data, obs_end, cfg.time_unit, cfg.model.penalizer)
    # the quality gate, on the held-out cut-off: a BG/NBD baseline can be live only if it can score everyone now
    candidates = tuple(b for b in churn.BASELINE_INPUTS if b == "recency" or not isinstance(params, str))
    gate = churn.gate_churn_model(model, rows, c.seed, candidates)
    del rows
    if gate.scorer != churn.LIGHTGBM:
        log.warning("churn: quality gate: %s", gate.reason)
    ids, probability, example = churn.score_in_chunks(
        data,
        obs_end,
        cfg.horizon_days,
        cfg.time_unit,
        params,
        lambda now: churn.live_probability(
            now, gate.scorer, gate.baseline_calibration, lambda rows: model.predict_proba(rows[columns])[:, 1]
        ),
    )
    scores = pd.DataFrame(
        {
            "customer_id": ids,
            "churn_probability": probability,
            "churn_risk": churn.churn_risk(probability, c.risk.high, c.risk.medium),
        }
    )
    return ChurnResult(
        evaluation, model, scores, example[columns], data.categories, None if isinstance(params, str) else params, gate
    )


def churn_scoring_state(result: ChurnResult, cfg: ExperimentConfig) -> dict:
    """What ``crmvalue predict`` needs besides the booster to score new data exactly as the run did."""
    params = result.bgnbd_params
    return {
        "feature_columns": [str(c) for c in result.model.feature_names_in_],
        "bgnbd_params": None if params is None else params.as_dict(),
        "horizon_days": cfg.horizon_days,
        "time_unit": cfg.time_unit,
        "categories": result.categories,
        "calibration": result.model.calibration_state(),
        "risk": {"high": cfg.churn.risk.high, "medium": cfg.churn.risk.medium},
        # the quality gate's choice: "lightgbm" (booster + calibration), or a baseline and its calibration
        "scorer": result.scorer,
        "baseline_calibration": result.gate.baseline_calibration,
        "gate": result.gate.reason,
    }


def _log_churn(result: ChurnResult, tmp: Path, cfg: ExperimentConfig) -> str | None:
    """The LightGBM model (lightgbm flavour), its calibration, and the evaluation's figures and tables;
    returns the model's URI (None when the stage was skipped: nothing to log but the tags)."""
    import mlflow
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    from crmvalue import plots

    if result.skipped is not None:
        return None
    model = result.model
    raw = model.raw_proba(result.example)
    info = mlflow.lightgbm.log_model(
        model.booster_,
        name="churn_model",
        signature=infer_signature(result.example, raw),
        input_example=result.example,
        # the booster needs lightgbm and nothing else: naming it skips MLflow's requirement
        # inference, which reloads the model in a subprocess (6 s of every run)
        pip_requirements=mlflow.lightgbm.get_default_pip_requirements(),
    )
    evaluation = result.evaluation
    test = evaluation.test
    folder = tmp / "churn_tables"
    folder.mkdir(exist_ok=True)
    (folder / "churn_calibration.json").write_text(json.dumps(model.calibration_state(), indent=2))
    (folder / CHURN_SCORING_ARTIFACT.removeprefix("churn/")).write_text(
        json.dumps(churn_scoring_state(result, cfg), indent=2)
    )
    if result.categories:  # categorical attributes enter the logged model as these codes
        (folder / "attribute_categories.json").write_text(json.dumps(result.categories, indent=2))
    model.feature_importance().rename_axis("feature").to_csv(folder / "feature_importance_gain.csv")
    test[["cutoff", "customer_id", "label_end", "churn"] + [c for c in test.columns if c.startswith("score_")]].to_csv(
        folder / "test_scores.csv", index=False
    )
    mlflow.log_artifacts(str(folder), "churn")
    y = test["churn"].to_numpy()
    scores = {
        "LightGBM (calibrated)": evaluation.scores["churn"],
        "BG/NBD no purchase": evaluation.scores["bgnbd_no_purchase"],
        "recency": evaluation.scores["recency"],
        "BG/NBD 1 - P(alive)": evaluation.scores["bgnbd_p_alive"],
    }
    scores = {k: v for k, v in scores.items() if np.isfinite(v).all()}
    figures = {
        "plots/churn_feature_importance.png": plots.feature_importance_plot(model.feature_importance()),
        "plots/churn_roc.png": plots.roc_plot(y, scores),
        "plots/churn_precision_recall.png": plots.precision_recall_plot(y, scores),
        "plots/churn_reliability.png": plots.reliability_plot(y, scores),
    }
    _log_figures(figures)
    mlflow.set_tag(CHURN_MODEL_URI_TAG, info.model_uri)
    return info.model_uri


def value_gate(metrics: dict[str, float], max_total_error: float, cal_end, obs_end) -> dict[str, float]:
    """The value model's quality gate: ``quality.holdout_total_error`` (predicted / actual total purchases
    in the holdout, minus 1) and ``quality.value_red_flag`` (1 when that is off by more than
    ``max_total_error``, with one warning line). Nothing when the run has no holdout totals."""
    predicted, actual = metrics.get("holdout.predicted_total"), metrics.get("holdout.actual_total")
    if predicted is None or actual is None or not (np.isfinite(predicted) and np.isfinite(actual)):
        return {}
    gate = {}
    if actual > 0:
        gate["quality.holdout_total_error"] = predicted / actual - 1
        red = abs(predicted / actual - 1) > max_total_error
    else:
        red = predicted > 0
    gate["quality.value_red_flag"] = float(red)
    if red:
        log.warning(
            "value model: red flag, %s (holdout %s to %s)",
            value_gate_text(gate, predicted, actual, max_total_error),
            pd.Timestamp(cal_end).date(),
            pd.Timestamp(obs_end).date(),
        )
    return gate


def value_gate_text(gate: dict[str, float], predicted: float, actual: float, max_total_error: float) -> str:
    """The value gate's verdict in words, for the warning, the tag, the run summary and the report."""
    error = gate.get("quality.holdout_total_error")
    off = f"{error:+.0%}" if error is not None else "no purchase was made"
    if not gate.get("quality.value_red_flag"):
        return f"holdout purchases predicted {predicted:,.0f} against {actual:,.0f} made ({off}), within ±{max_total_error:.0%}"
    return (
        f"the holdout forecast of total purchases is {predicted:,.0f} against {actual:,.0f} made ({off}), "
        f"beyond the ±{max_total_error:.0%} of quality.max_total_error: treat its totals and CLV with care"
    )


def quality_tags(cfg: ExperimentConfig, metrics: dict[str, float], churn_result: ChurnResult | None) -> dict[str, str]:
    """The quality gates as run tags: ``crmvalue.churn`` (ran, skipped: why, or off), ``crmvalue.churn_scorer``
    and ``crmvalue.churn_gate`` (which scorer is live and why), ``crmvalue.value_gate`` (ok or red: why)."""
    tags = {}
    if churn_result is None:
        tags["crmvalue.churn"] = "off"
    elif churn_result.skipped is not None:
        tags["crmvalue.churn"] = f"skipped: {churn_result.skipped}"
    else:
        tags["crmvalue.churn"] = "ran"
        tags["crmvalue.churn_scorer"] = churn_result.scorer
        tags["crmvalue.churn_gate"] = churn_result.gate.reason
    flag = metrics.get("quality.value_red_flag")
    if flag is None:
        tags["crmvalue.value_gate"] = "not checked: the run has no holdout totals of purchases"
    else:
        text = value_gate_text(
            metrics, metrics["holdout.predicted_total"], metrics["holdout.actual_total"], cfg.quality.max_total_error
        )
        tags["crmvalue.value_gate"] = ("red: " if flag else "ok: ") + text
    return tags


@dataclass
class AnalysesResult:
    columns: pd.DataFrame  # the export's analysis columns, indexed by customer_id
    tables: dict[str, pd.DataFrame]  # artifact name (analyses/<name>.csv) -> table
    figures: dict  # artifact path -> matplotlib figure maker (called when logging)
    pareto_top20_share: float
    cpm_thresholds: dict[str, float]


def _analyses(
    cfg: ExperimentConfig,
    frame: pd.DataFrame,
    obs_end,
    predictions: pd.DataFrame,
    attributes: pd.DataFrame | None,
    interactions: pd.DataFrame | None,
    measures: pd.DataFrame | None = None,
) -> AnalysesResult:
    """The CRM analyses of the source documents for every scored customer (crmvalue.analyses);
    ``measures``: their :func:`purchase_history`, when the caller has it already."""
    from crmvalue import analyses as an
    from crmvalue import plots

    a = cfg.analyses
    scored = predictions.set_index("customer_id")
    if measures is None or not measures.index.equals(scored.index):
        measures = purchase_history(frame, obs_end, scored.index)
    rfm = an.customer_rfm(scored if a.rfm.basis == "summary" else measures, a.rfm)
    cpm = an.cpm_groups(measures, a.cpm)
    deciles = an.value_deciles(measures["total_sales"])
    satisfaction = None
    if a.crm_value.satisfaction_column is not None and attributes is not None:
        satisfaction = attributes[a.crm_value.satisfaction_column]
    components = an.crm_components(measures, interactions, satisfaction, a.crm_value, obs_end)
    crm = an.crm_value_score(components, a.crm_value.weights, (a.crm_value.high_from, a.crm_value.medium_from))
    columns = pd.concat(
        [
            rfm[["rfm_r", "rfm_f", "rfm_m", "rfm_score", "rfm_segment"]],
            cpm[["cpm_group", "cpm_label"]],
            deciles.rename("value_decile"),
            crm[["crm_value", "crm_grade"]],
        ],
        axis=1,
    )
    tables = {
        "rfm_segments": an.rfm_segment_table(rfm, a.rfm.segments),
        "cpm_groups": an.cpm_table(measures, cpm),
        "deciles": an.decile_table(measures["total_sales"], measures["orders"], deciles),
    }
    periods = an.customer_periods(frame, a.retention_period, obs_end)  # shared by the two tables
    tables |= {
        "retention": an.retention_table(periods, a.retention_period),
        "cohort_retention": an.cohort_retention(periods, a.retention_period),
        "crm_components": components.describe().T,
    }
    if attributes is not None:
        for column in _segment_columns(a.segment_columns, attributes):
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(column))
            tables[f"segments_{safe}"] = an.segment_table(scored, attributes, column)
    figures = {
        "plots/rfm_segments.png": lambda: plots.rfm_segment_chart(tables["rfm_segments"]["customers"]),
        "plots/cpm_groups.png": lambda: plots.cpm_group_chart(tables["cpm_groups"]),
        "plots/deciles.png": lambda: plots.decile_chart(tables["deciles"]),
        "plots/retention.png": lambda: plots.retention_chart(tables["retention"]),
        "plots/cohort_retention.png": lambda: plots.cohort_heatmap(tables["cohort_retention"]),
    }
    return AnalysesResult(
        columns, tables, figures, an.pareto_share(measures["total_sales"]), cpm.attrs.get("thresholds", {})
    )


MAX_SEGMENT_LEVELS = 20


def _segment_columns(chosen: list[str] | None, attributes: pd.DataFrame) -> list[str]:
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


def _log_analyses(result: AnalysesResult, tmp: Path) -> None:
    import mlflow

    folder = tmp / "analyses"
    folder.mkdir(exist_ok=True)
    for name, table in result.tables.items():
        table.to_csv(folder / f"{name}.csv")
    mlflow.log_artifacts(str(folder), "analyses")
    mlflow.log_params({f"analyses.cpm.{k}_used": repr(v) for k, v in result.cpm_thresholds.items()})
    _log_figures({name: make() for name, make in result.figures.items()})
