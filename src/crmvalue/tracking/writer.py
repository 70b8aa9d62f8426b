"""The run writer: ``train`` computes a :class:`~crmvalue.pipeline.TrainedRun`, a writer records it.

:class:`MlflowRunWriter` logs params, metrics, artifacts and models to MLflow, then commits all
or nothing: the predictions file, the registered model versions and ``models/<name>/``.
:class:`InMemoryRunWriter` keeps runs in memory for tests that train hundreds of times.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from crmvalue import __version__, schema
from crmvalue.analyses import log_analyses
from crmvalue.io import write_table
from crmvalue.progress import peak_rss_mb
from crmvalue.quality import quality_tags
from crmvalue.schema import output_columns
from crmvalue.tracking.artifacts import log_candidates, log_churn, log_figures, log_tables
from crmvalue.value_choice import GBM_FOLDER

if TYPE_CHECKING:
    from crmvalue.config import ExperimentConfig
    from crmvalue.pipeline import TrainedRun

log = logging.getLogger("crmvalue")


class MlflowRunWriter:
    """Records a trained run in MLflow (params, metrics, artifacts), then, all or nothing, moves the
    predictions file into place, registers the models and updates ``models/<name>/``."""

    def write(self, run: TrainedRun) -> tuple[str, str, dict[str, int]]:
        """Returns the run id, the value model's URI and the registered versions.

        SIGINT and SIGTERM are held back meanwhile and taken only between logging steps, never in
        the middle of MLflow's database work; one that arrives during the commit undoes it.
        """
        from crmvalue.tracking import TrackingSession, interrupts_deferred

        with interrupts_deferred() as signals, TrackingSession(run.cfg.tracking_uri):
            ids = log_run(run)
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
        atomic_write_table(run.predictions.assign(run_id=run_id)[output_columns(run.predictions)], run.cfg.output_path)
        return run_id, f"memory://{run_id}/{schema.VALUE_MODEL_NAME}", {}


def log_run(run: TrainedRun) -> tuple[str, str, dict[str, int]]:
    """Log ``run`` to MLflow, then commit the predictions file, the registry and ``models/<name>/``."""
    cfg, tx, evaluation, diagnostics = run.cfg, run.tx, run.evaluation, run.diagnostics
    predictions, quadrants, metrics, value_model = run.predictions, run.quadrants, run.metrics, run.value_model
    purchase, gg, thresholds = run.purchase, run.gamma_gamma, run.thresholds
    cal_end, obs_end, progress = run.calibration_end, run.observation_end, run.progress
    churn_result, analyses = run.churn, run.analyses
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
    with logging_errors(tracking_uri):
        use_experiment(cfg.name, tracking_uri)
    checkpoint()  # SIGINT/SIGTERM are taken at these points only (MlflowRunWriter holds them back)
    resolved = cfg.model_dump(mode="json")
    resolved["calibration_end"] = str(cal_end.date())
    resolved["observation_end"] = str(obs_end.date())
    resolved.pop("tracking_uri", None)  # may hold credentials; the run knows its own store
    out_path = cfg.output_path

    # the run ends FINISHED, FAILED or KILLED (SIGINT/SIGTERM); MLflow, database and file errors are one line
    with logging_errors(tracking_uri), tempfile.TemporaryDirectory() as tmp_dir, tracked_run() as active:
        tmp = Path(tmp_dir)
        run_id = active.info.run_id
        mlflow.set_tags(
            {
                "crmvalue.data_sha256": tx.sha256,
                "crmvalue.data_source": tx.source,
                "crmvalue.git_commit": git_commit(),
                schema.VERSION_TAG: __version__,
            }
        )
        mlflow.set_tag("crmvalue.selection", evaluation.reason)
        mlflow.set_tag("crmvalue.evaluation", "ran" if evaluation.skipped is None else f"skipped: {evaluation.skipped}")
        if run.value_choice is not None:  # value_model.live and value_model.reason
            mlflow.set_tags(run.value_choice.tags())
        mlflow.set_tags(
            quality_tags(cfg, metrics, churn_result)
        )  # the quality gates' verdicts: churn stage, value model
        mlflow.set_tags(
            {
                schema.KIND_TAG: "train",
                schema.AS_OF_DATE_TAG: str(obs_end.date()),
                schema.DATA_FIRST_DATE_TAG: str(tx.first_date.date()),
                schema.PREDICTIONS_ARTIFACT_TAG: out_path.name,
            }
        )
        params = flatten(resolved, "config.")
        params[schema.PURCHASE_MODEL_PARAM] = purchase.name
        params.update({schema.model_param(purchase.name, k): repr(v) for k, v in purchase.params_.as_dict().items()})
        # with covariates, their coefficients: <model>.purchase.<covariate>, <model>.dropout.<covariate>,
        # gamma_gamma.spend.<covariate>
        params.update({schema.model_param(purchase.name, k): repr(v) for k, v in coefficients(purchase).items()})
        params.update({schema.model_param("gamma_gamma", k): repr(v) for k, v in gg.params_.as_dict().items()})
        params.update({schema.model_param("gamma_gamma", k): repr(v) for k, v in coefficients(gg).items()})
        # the fallback ridge of a boundary fit (0.0: an interior optimum; see the README's "Boundary fits")
        params[schema.model_param(purchase.name, "penalizer_used")] = repr(purchase.penalizer_used_)
        params[schema.model_param("gamma_gamma", "penalizer_used")] = repr(gg.penalizer_used_)
        mlflow.set_tags(
            {
                f"crmvalue.boundary.{prefix}": model.boundary_
                for model, prefix in ((purchase, purchase.name), (gg, "gamma_gamma"))
                if model.boundary_
            }
        )
        if evaluation.best is not None:
            best_model = evaluation.best.model
            assert best_model is not None  # the winner is a candidate whose fit succeeded
            params.update({f"evaluation.{purchase.name}.{k}": repr(v) for k, v in best_model.params_.as_dict().items()})
            params.update({f"evaluation.{purchase.name}.{k}": repr(v) for k, v in coefficients(best_model).items()})
        params[schema.threshold_param("current")] = repr(thresholds[0])
        params[schema.threshold_param("potential")] = repr(thresholds[1])
        mlflow.log_params(params)
        metrics = dict(metrics)
        metrics.update(
            {schema.standard_error_metric(purchase.name, k): float(v) for k, v in purchase.standard_errors_.items()}
        )
        metrics.update(
            {schema.standard_error_metric("gamma_gamma", k): float(v) for k, v in gg.standard_errors_.items()}
        )
        for model, prefix in ((purchase, purchase.name), (gg, "gamma_gamma")):
            for bound in ("lower", "upper"):
                metrics.update(
                    {
                        schema.ci95_metric(prefix, bound, k): float(v)
                        for k, v in model.confidence_intervals_[bound].items()
                    }
                )
        metrics.update(
            {
                schema.DATA_TRANSACTIONS: float(tx.transactions),
                schema.DATA_CUSTOMERS: float(len(predictions)),
                **{schema.quadrant_customers_metric(q): float(n) for q, n in quadrants["customers"].items()},
            }
        )
        mlflow.log_metrics(metrics)
        checkpoint()

        export = predictions.assign(run_id=run_id)[output_columns(predictions)]
        staged = tmp / out_path.name
        write_table(export, staged)
        mlflow.log_artifact(str(staged))
        quadrants.to_csv(tmp / schema.QUADRANT_SUMMARY_ARTIFACT)
        mlflow.log_artifact(str(tmp / schema.QUADRANT_SUMMARY_ARTIFACT))
        if evaluation.best is not None:
            expectations = evaluation.best.conditional_expectations
            assert expectations is not None  # the winner was scored on the holdout
            expectations.to_csv(tmp / schema.HOLDOUT_EXPECTATIONS_ARTIFACT)
            mlflow.log_artifact(str(tmp / schema.HOLDOUT_EXPECTATIONS_ARTIFACT))
        (tmp / schema.CONFIG_ARTIFACT).write_text(yaml.safe_dump(resolved, sort_keys=False))
        mlflow.log_artifact(str(tmp / schema.CONFIG_ARTIFACT))
        checkpoint()

        figures = {
            schema.PLOT_QUADRANTS: plots.quadrant_scatter(predictions, *thresholds),
            schema.PLOT_P_ALIVE_DISTRIBUTION: plots.p_alive_distribution(predictions["p_alive"]),
        }
        if evaluation.best is not None:
            figures[schema.PLOT_CALIBRATION_VS_HOLDOUT] = plots.calibration_vs_holdout(
                evaluation.best.conditional_expectations
            )
        log_figures(figures)
        # the winner's fit diagnostics, from its calibration-period fit (out of time), and the final spend fit
        tables = diagnostics.get(evaluation.winner, {})
        log_tables(tables, tmp)
        log_figures(plots.diagnostic_figures(tables, cfg.time_unit, evaluation.duration))
        checkpoint()

        if len(evaluation.candidates) > 1:
            log_candidates(evaluation, diagnostics, cfg.time_unit, tmp)
            checkpoint()
        if analyses is not None:
            log_analyses(analyses, tmp)
            checkpoint()
        model_uri = log_value_model(value_model, predictions, None if run.covariates is None else run.covariates.table)
        gbm_files = log_value_gbm(run, tmp)
        checkpoint()
        churn_uri = log_churn(churn_result, tmp, cfg) if churn_result is not None else None
        mlflow.log_metrics(progress.metrics())
        log_final_metrics(started)
        checkpoint()

        # the run is complete. All or nothing, and not stopped half-way by a signal: the export, then
        # the registry, then models/<name>/; a failure on the way puts back what was there
        model_dir = Path(cfg.models_dir) / cfg.name
        files = StagedFiles()
        registered: dict[str, int] = {}
        with interrupts_deferred():
            try:
                files.copy(staged, out_path)
                if cfg.registry.enabled:
                    register_models(cfg, run_id, model_uri, churn_uri, registered)
                files.write_text(model_dir / schema.VALUE_MODEL_FILE, json.dumps(value_model.to_dict(), indent=2))
                for path in gbm_files:  # the live boosted value model, beside the BTYD one
                    files.copy(path, model_dir / GBM_FOLDER / path.name)
                if churn_result is not None and churn_result.skipped is None:
                    churn_model = churn_result.model
                    assert churn_model is not None  # a churn stage that ran has its model
                    files.write_text(
                        model_dir / schema.CHURN_BOOSTER_FILE,
                        churn_model.booster_.model_to_string(num_iteration=churn_model.best_iteration_),
                    )
                    files.write_text(
                        model_dir / schema.CHURN_CALIBRATION_FILE,
                        json.dumps(churn_model.calibration_state(), indent=2),
                    )
                    if churn_result.categories:
                        files.write_text(
                            model_dir / schema.ATTRIBUTE_CATEGORIES_FILE, json.dumps(churn_result.categories, indent=2)
                        )
                checkpoint()  # a signal held back during the commit stops the run here, and the commit is undone
            except BaseException:
                unregister_models(registered, run_id)
                files.rollback()
                raise
            files.commit()
    return run_id, model_uri, registered


def coefficients(model) -> dict[str, float]:
    """A covariate fit's coefficients by name (``purchase.<covariate>``, ``spend.<covariate>``, ...); a plain
    model has none."""
    return dict(getattr(model, "coefficients_", {}))


def log_value_gbm(run: TrainedRun, tmp: Path) -> list[Path]:
    """A live boosted value model saved as the run's ``value_gbm/`` artifacts (what ``crmvalue predict`` loads);
    returns its files, for ``models/<name>/value_gbm/``. None live: no files."""
    import mlflow

    gbm = None if run.value_choice is None else run.value_choice.gbm
    if gbm is None:
        return []
    folder = gbm.save(tmp / GBM_FOLDER)
    mlflow.log_artifacts(str(folder), GBM_FOLDER)
    return sorted(folder.iterdir())


def register_models(
    cfg: ExperimentConfig, run_id: str, model_uri: str, churn_uri: str | None, registered: dict[str, int]
) -> dict[str, int]:
    """New versions of the registered value (and churn) models, their numbers tagged on the run.
    Each goes into ``registered`` as soon as it exists, so that a failure half-way can be undone."""
    import mlflow

    from crmvalue import registry

    value_name = cfg.registry.value_model
    assert value_name is not None  # filled in by ExperimentConfig._registered_names
    registered[value_name] = registry.register(model_uri, value_name, run_id)
    mlflow.set_tag(registry.VERSION_TAG, str(registered[value_name]))
    if churn_uri is not None:
        churn_name = cfg.registry.churn_model
        assert churn_name is not None  # filled in by ExperimentConfig._registered_names
        registered[churn_name] = registry.register(churn_uri, churn_name, run_id)
        mlflow.set_tag(registry.CHURN_VERSION_TAG, str(registered[churn_name]))
    return registered


def unregister_models(registered: dict[str, int], run_id: str) -> None:
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


def log_final_metrics(started: float) -> None:
    """The track stage's own time and memory up to its commit (the stage's progress line times all of it)."""
    import mlflow

    peak = peak_rss_mb()
    mlflow.log_metrics(
        {
            schema.stage_time_metric("track"): time.perf_counter() - started,
            "memory.track_peak_mb": peak,
            "memory.peak_mb": peak,
        }
    )
