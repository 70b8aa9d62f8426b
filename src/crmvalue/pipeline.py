"""``crmvalue train``: transactions -> RFM -> evaluated value model -> quadrants -> MLflow run -> CRM file.

The order matters for honesty and for clean failures:

1. load and validate the data, build every feature, fit every model: any bad input or
   convergence problem stops here, before MLflow or the output path is touched;
2. evaluate out of time: fit on the calibration period only, score the holdout;
3. refit on the whole history up to the observation end; that fit is what gets exported, with the
   live value model of ``model.value_model`` (:mod:`crmvalue.value_choice`: btyd, gbm, or auto by a
   backtest up to the calibration end);
4. log the run, then move the predictions file into place in one rename.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from crmvalue import schema
from crmvalue.analyses import AnalysesResult
from crmvalue.config import ExperimentConfig
from crmvalue.customer_days import CustomerDays
from crmvalue.diagnostics import fit_diagnostics, gamma_gamma_spend_fit
from crmvalue.discrete import period_calibration_holdout_summary, period_summary
from crmvalue.errors import CrmvalueError
from crmvalue.evaluation import (
    CovariateFit,
    CovariateRows,
    Evaluation,
    SpendCovariateFit,
    check_covariate_settings,
    covariate_candidates,
    covariate_rows,
    covariate_tests,
    evaluate_purchase_models,
    fit_purchase_model,
    fit_spend,
    skipped_evaluation,
)
from crmvalue.features import calibration_holdout_summary, mean_purchase_amount
from crmvalue.inputs import load_stage
from crmvalue.models import (
    PURCHASE_MODELS,
    GammaGammaModel,
    GammaGammaParams,
    PurchaseModel,
    ValueModel,
)
from crmvalue.models.predictive import saved_intervals
from crmvalue.progress import Progress
from crmvalue.quality import value_gate
from crmvalue.schema import output_columns
from crmvalue.scoring import AnalysesInputs, Scorers, customer_features, score
from crmvalue.value_choice import ValueChoice, choose_value_model

if TYPE_CHECKING:
    from crmvalue.churn import ChurnResult

log = logging.getLogger("crmvalue")


class RunWriter(Protocol):
    """Records a trained run: :class:`crmvalue.tracking.writer.MlflowRunWriter` (MLflow, the predictions
    file, the registry, ``models/``) or ``InMemoryRunWriter`` (tests)."""

    def write(self, run: TrainedRun) -> tuple[str, str, dict[str, int]]:
        """Returns the run id, the value model's URI and the registered model versions."""


SPEND_CORRELATION_WARNING = 0.3
RFM = ("frequency", "recency", "T")


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
    value_choice: ValueChoice | None = None  # the live value model (model.value_model) and why


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
    purchase: PurchaseModel | CovariateFit
    gamma_gamma: GammaGammaModel | SpendCovariateFit
    thresholds: tuple[float, float]
    calibration_end: pd.Timestamp
    observation_end: pd.Timestamp
    progress: Progress
    churn: ChurnResult | None = None
    analyses: AnalysesResult | None = None
    value_choice: ValueChoice | None = None  # the live value model (model.value_model), why, its boosted model
    covariates: CovariateRows | None = None  # the customer table and the coding of model.covariates


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


def train(
    config: ExperimentConfig,
    data: pd.DataFrame | None = None,
    progress: Progress | None = None,
    writer: RunWriter | None = None,
) -> TrainResult:
    """Run the whole experiment; ``data`` replaces ``config.data.source`` when given. ``writer``
    records the result (default: an MLflow run, the predictions file and ``models/``)."""
    from crmvalue.tracking.writer import MlflowRunWriter

    if config.setting == "contractual":  # subscriptions: the sBG's own run, with its own result
        raise CrmvalueError("setting: contractual is trained by crmvalue.contractual.train(config, progress)")
    progress = progress or Progress(enabled=False)
    writer = writer or MlflowRunWriter()
    # an output or store the run cannot write fails now, in one line, not after the fits
    check_outputs(config, store=isinstance(writer, MlflowRunWriter))
    run = fit_run(config, data, progress)
    with progress.stage("track", "logging the MLflow run and writing the predictions"):
        run_id, model_uri, registered = writer.write(run)

    predictions = run.predictions
    predictions["run_id"] = run_id
    return TrainResult(
        run_id=run_id,
        output_path=config.output_path,
        predictions=predictions[output_columns(predictions)],
        quadrants=run.quadrants,
        metrics=run.metrics,
        value_model=run.value_model,
        model_uri=model_uri,
        evaluation=run.evaluation,
        calibration_end=run.calibration_end,
        observation_end=run.observation_end,
        timings=dict(progress.timings),
        churn=run.churn,
        registered=registered,
        value_choice=run.value_choice,
    )


def fit_run(cfg: ExperimentConfig, data: pd.DataFrame | None, progress: Progress) -> TrainedRun:
    """Everything ``train`` computes, before anything is written: load, features, the out-of-time
    evaluation, the final fits, the scores (:func:`crmvalue.scoring.score`) and the diagnostics."""
    check_covariate_settings(cfg)
    loaded = load_stage(cfg, data, progress)
    frame, cal_end, obs_end = loaded.tx, loaded.calibration_end, loaded.observation_end

    with progress.stage("features", "building RFM features and the calibration/holdout split"):
        discrete = cfg.model.data_kind == "discrete"  # BG/BB: one purchase opportunity per period (crmvalue.discrete)
        split = (
            period_calibration_holdout_summary(frame, cal_end, obs_end, cfg.period)
            if discrete
            else calibration_holdout_summary(frame, cal_end, obs_end, cfg.time_unit)
        )
        features = customer_features(frame, obs_end, cfg.time_unit, cfg.quadrants.current_window_days)
        # what the purchase model and Gamma-Gamma see; the export, churn and analyses keep the continuous summary
        purchase_summary = period_summary(frame, obs_end, cfg.period) if discrete else features.summary
        if features.report.rows_after_observation_end:
            log.warning(
                "ignored %d rows dated after the observation end %s",
                features.report.rows_after_observation_end,
                obs_end.date(),
            )
        if features.report.customers_without_purchase:
            log.warning(
                "%d customers have no purchase (their days net to <= 0 after returns) and are not scored",
                features.report.customers_without_purchase,
            )
        covariates = covariate_rows(cfg, loaded.attributes, features.summary.index)

    evaluation, metrics = evaluate_stage(cfg, frame, split, cal_end, obs_end, progress, covariates)
    purchase, gg, value_model = fit_stage(cfg, frame, purchase_summary, evaluation, obs_end, progress, covariates)
    metrics.update(
        {
            "gamma_gamma.frequency_spend_correlation": gg.frequency_spend_correlation_,
            f"final.{purchase.name}.log_likelihood": purchase.log_likelihood_,
        }
    )
    # btyd, gbm or auto: the model behind expected_revenue and the potential value (crmvalue.value_choice)
    choice = choose_value_model(cfg, frame, evaluation, cal_end, obs_end, progress)
    metrics.update(choice.metrics)
    simulation = cfg.data.simulation
    metrics.update(covariate_tests(purchase, gg, features.summary, cfg.model.penalizer))  # with covariates only
    if (
        not isinstance(purchase, CovariateFit)
        and loaded.simulated
        and simulation.model == purchase.name
        and cfg.time_unit == simulation.time_unit
    ):
        # the truth is known: how far the final fit landed from it
        truth = simulation.params
        assert truth is not None  # filled in by SimulationConfig's validator
        for name, value in purchase.params_.as_dict().items():
            metrics[f"recovery.{name}.relative_error"] = value / truth[name] - 1

    churn = None
    if cfg.churn.enabled and loaded.churn_skipped is None:
        churn = TrainingChurn(cfg, cal_end, loaded.attributes)

    def intervals(summary: pd.DataFrame) -> pd.DataFrame:
        # the expectation's and the outcome's bounds, as crmvalue predict recomputes them from the saved model
        i = cfg.intervals
        scorer = saved_intervals(value_model, i.draws, i.level, i.seed)
        assert scorer is not None  # a successful spend fit is interior: it has a covariance
        return scorer(summary)

    scoring = f"scoring {len(features.summary):,} customers" + (
        f" with {cfg.intervals.draws} parameter draws for the expectation and predictive intervals"
        if cfg.intervals.enabled
        else ""
    )
    scorers = Scorers(
        value=lambda summary: value_model.predict(
            purchase_summary.loc[summary.index] if discrete else summary,
            *(() if covariates is None else (covariates.table, covariates.source)),
        ),
        thresholds=cfg.quadrants,
        text=f"{scoring} and placing them in value quadrants",
        intervals=intervals if cfg.intervals.enabled else None,
        churn=churn,
        analyses=AnalysesInputs(cfg, loaded.attributes, loaded.interactions) if cfg.analyses.enabled else None,
        actions=cfg.decisions.actions,
        revenue=choice.revenue(value_model),
    )
    scored = score(frame, obs_end, features, scorers, progress)

    churn_result = None
    if churn is not None and churn.result is not None:
        churn_result = churn.result
        if churn_result.skipped is None:
            # a churn stage that ran has its evaluation and gate
            assert churn_result.evaluation is not None and churn_result.gate is not None
            metrics.update(churn_result.evaluation.metrics)
            metrics.update(churn_result.gate.metric_items())
    if cfg.churn.enabled and loaded.churn_skipped is not None:
        from crmvalue.churn import ChurnResult

        churn_result = ChurnResult.skip(loaded.churn_skipped)
    if scored.analyses is not None:
        metrics[schema.PARETO_TOP20_SHARE] = scored.analyses.pareto_top20_share
        metrics.update(scored.analyses.metrics)

    with progress.stage("diagnose", "computing the fit diagnostics"):
        # before MLflow is touched, so a failure here leaves no half-logged run
        diagnostics = {
            name: fit_diagnostics(
                result.model, frame, split, cal_end, obs_end, cfg.time_unit, period=cfg.period if discrete else None
            )
            for name, result in evaluation.candidates.items()
            if result.model is not None
        }
        # no spend distribution to draw for the mean-spend fallback, nor one population's for spend covariates
        if isinstance(gg, GammaGammaModel) and isinstance(gg.params_, GammaGammaParams):
            diagnostics.setdefault(evaluation.winner, {})["spend_fit"] = gamma_gamma_spend_fit(
                gg.params_,
                purchase_summary["frequency"],
                purchase_summary["monetary_value"],
                bins=40,
                upper_quantile=0.995,
            )

    return TrainedRun(
        cfg,
        frame,
        evaluation,
        diagnostics,
        scored.predictions,
        scored.quadrants,
        metrics,
        value_model,
        purchase,
        gg,
        scored.thresholds,
        cal_end,
        obs_end,
        progress,
        churn_result,
        scored.analyses,
        choice,
        covariates,
    )


class TrainingChurn:
    """The churn stage of a training run: train and test the churn model, then score every customer.
    ``result`` holds the outcome, or why the stage was skipped (churn.enabled: auto)."""

    text = "training the LightGBM churn model on rolling cut-offs and testing it out of time"

    def __init__(self, cfg: ExperimentConfig, cal_end: pd.Timestamp, attributes: pd.DataFrame | None):
        self.cfg, self.cal_end, self.attributes = cfg, cal_end, attributes
        self.result: ChurnResult | None = None

    def scores(self, days: CustomerDays, obs_end: pd.Timestamp) -> pd.DataFrame | None:
        from crmvalue.churn import ChurnNotEstimable, ChurnResult, skip_reason, train_churn

        try:
            self.result = train_churn(self.cfg, days, self.cal_end, obs_end, self.attributes)
        except ChurnNotEstimable as exc:  # valid data the protocol cannot use: labels of one class, ...
            if self.cfg.churn.enabled is True:
                raise
            self.result = ChurnResult.skip(skip_reason(exc))
            return None
        return self.result.scores


def evaluate_stage(
    cfg: ExperimentConfig,
    frame: CustomerDays,
    split: pd.DataFrame,
    cal_end,
    obs_end,
    progress: Progress,
    covariates: CovariateRows | None = None,
) -> tuple[Evaluation, dict[str, float]]:
    """Fit every candidate on the calibration period and score the holdout: the run's honest metrics."""
    candidates = list(cfg.model.candidates) if cfg.model.purchase_model == "auto" else [cfg.model.purchase_model]
    if covariates is not None and covariates.coding.purchase_process:
        candidates = covariate_candidates(candidates)
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
                covariates,
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
                schema.holdout_metric(k.removeprefix("holdout.")): v
                for k, v in best.metrics.items()
                if k.startswith("holdout.")
            }
        )
        metrics.update(evaluation.baseline)
        for result in evaluation.candidates.values():
            if result.model is not None:
                metrics[f"{result.name}.log_likelihood"] = result.metrics["log_likelihood"]
        metrics.update(
            {
                schema.holdout_metric("customers"): float(evaluation.holdout_customers),
                schema.holdout_metric("duration"): evaluation.duration,
            }
        )
        metrics.update(value_gate(metrics, cfg.quality.max_total_error, cal_end, obs_end))
        if len(candidates) > 1:
            log.info("model selection: %s", evaluation.reason)

    return evaluation, metrics


def fit_stage(
    cfg: ExperimentConfig,
    frame: CustomerDays,
    summary: pd.DataFrame,
    evaluation: Evaluation,
    obs_end,
    progress: Progress,
    covariates: CovariateRows | None = None,
) -> tuple[PurchaseModel | CovariateFit, GammaGammaModel | SpendCovariateFit, ValueModel]:
    """Refit the winner and Gamma-Gamma on the whole history to the observation end: what is exported."""
    with progress.stage(
        "fit",
        f"fitting {PURCHASE_MODELS[evaluation.winner].params_class.label} and Gamma-Gamma "
        f"on all data to {obs_end.date()}",
    ):
        x, t_x, T_ = (summary[c] for c in RFM)
        purchase = fit_purchase_model(evaluation.winner, cfg.model.penalizer, x, t_x, T_, covariates)
        mean_spend = mean_purchase_amount(frame, obs_end)
        gg, _ = fit_spend(
            cfg.model.gamma_gamma_penalizer, summary["frequency"], summary["monetary_value"], mean_spend, covariates
        )
        for fitted in (purchase, gg):
            if fitted.warning_:
                log.warning("final fit: %s", fitted.warning_)
        if abs(r := gg.frequency_spend_correlation_) > SPEND_CORRELATION_WARNING:  # NaN: undefined, no warning
            log.warning(
                "frequency and spend are correlated (r=%.2f > %.1f): the Gamma-Gamma independence assumption is "
                "doubtful",
                r,
                SPEND_CORRELATION_WARNING,
            )
        # with the fits' covariances: the export's intervals come from them, and crmvalue predict
        # recomputes the same intervals from the saved model
        value_model = ValueModel(
            purchase.params_, gg.params_, cfg.purchase_unit, cfg.horizon_days, cfg.clv.months, cfg.clv.discount_rate
        ).with_covariances(purchase.log_param_covariance_, gg.log_param_covariance_)
        if covariates is not None:
            value_model = value_model.with_covariates(
                covariates.coding,
                purchase.gamma_purchase_ if isinstance(purchase, CovariateFit) else (),
                purchase.gamma_dropout_ if isinstance(purchase, CovariateFit) else (),
                gg.model_.gamma_ if isinstance(gg, SpendCovariateFit) else (),
            )
    return purchase, gg, value_model
