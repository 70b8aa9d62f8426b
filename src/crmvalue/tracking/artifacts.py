"""What a training run logs besides params and metrics: figures, tables, candidates' child runs, the churn model."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crmvalue import schema
from crmvalue.schema import CHURN_MODEL_URI_TAG, CHURN_SCORING_ARTIFACT

if TYPE_CHECKING:
    from crmvalue.churn import ChurnResult
    from crmvalue.config import ExperimentConfig
    from crmvalue.evaluation import Evaluation


def log_figures(figures: dict) -> None:
    import mlflow

    from crmvalue import plots

    for name, fig in figures.items():
        mlflow.log_figure(fig, name)
        plots.plt.close(fig)


def log_tables(tables: dict[str, pd.DataFrame], tmp: Path) -> None:
    """Each diagnostic table as diagnostics/<name>.csv, so a figure's numbers can be read back."""
    import mlflow

    folder = tmp / "diagnostics"
    folder.mkdir(exist_ok=True)
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv")
    mlflow.log_artifacts(str(folder), "diagnostics")


def log_candidates(
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
            mlflow.log_params({schema.model_param(name, k): repr(v) for k, v in model.params_.as_dict().items()})
            covariates = dict(getattr(model, "coefficients_", {}))  # a covariate fit's purchase.<c>, dropout.<c>
            mlflow.log_params({schema.model_param(name, k): repr(v) for k, v in covariates.items()})
            child = {f"{name}.{k}": v for k, v in result.metrics.items() if not k.startswith("holdout.")}
            child.update({k: v for k, v in result.metrics.items() if k.startswith("holdout.")})
            child.update({schema.standard_error_metric(name, k): float(v) for k, v in model.standard_errors_.items()})
            child.update(
                {
                    schema.ci95_metric(name, "lower", k): float(v)
                    for k, v in model.confidence_intervals_["lower"].items()
                }
            )
            child.update(
                {
                    schema.ci95_metric(name, "upper", k): float(v)
                    for k, v in model.confidence_intervals_["upper"].items()
                }
            )
            mlflow.log_metrics(child)
            tables = {k: v for k, v in diagnostics.get(name, {}).items() if k != "spend_fit"}
            tables["conditional_expectations"] = result.conditional_expectations
            with tempfile.TemporaryDirectory(dir=tmp) as child_tmp:
                log_tables(tables, Path(child_tmp))
            figures = plots.diagnostic_figures(tables, time_unit, evaluation.duration)
            figures[schema.PLOT_CALIBRATION_VS_HOLDOUT] = plots.calibration_vs_holdout(result.conditional_expectations)
            log_figures(figures)


def log_churn(result: ChurnResult, tmp: Path, cfg: ExperimentConfig) -> str | None:
    """The LightGBM model (lightgbm flavour), its calibration, and the evaluation's figures and tables;
    returns the model's URI (None when the stage was skipped: nothing to log but the tags)."""
    import mlflow
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    from crmvalue import plots
    from crmvalue.churn import ChurnScorer

    if result.skipped is not None:
        return None
    model = result.model
    assert model is not None  # a churn stage that ran has its model and evaluation
    raw = model.raw_proba(result.example)
    info = mlflow.lightgbm.log_model(
        model.booster_,
        name=schema.CHURN_MODEL_NAME,
        signature=infer_signature(result.example, raw),
        input_example=result.example,
        # the booster needs lightgbm and nothing else: naming it skips MLflow's requirement
        # inference, which reloads the model in a subprocess (6 s of every run)
        pip_requirements=mlflow.lightgbm.get_default_pip_requirements(),
    )
    evaluation = result.evaluation
    assert evaluation is not None
    test = evaluation.test
    folder = tmp / "churn_tables"
    folder.mkdir(exist_ok=True)
    (folder / schema.CHURN_CALIBRATION_FILE).write_text(json.dumps(model.calibration_state(), indent=2))
    (folder / CHURN_SCORING_ARTIFACT.removeprefix(f"{schema.CHURN_FOLDER}/")).write_text(
        json.dumps(ChurnScorer.from_result(result, cfg).to_dict(), indent=2)
    )
    if result.categories:  # categorical attributes enter the logged model as these codes
        (folder / schema.ATTRIBUTE_CATEGORIES_FILE).write_text(json.dumps(result.categories, indent=2))
    model.feature_importance().rename_axis("feature").to_csv(folder / schema.FEATURE_IMPORTANCE_FILE)
    test[["cutoff", "customer_id", "label_end", "churn"] + [c for c in test.columns if c.startswith("score_")]].to_csv(
        folder / schema.CHURN_TEST_SCORES_FILE, index=False
    )
    mlflow.log_artifacts(str(folder), schema.CHURN_FOLDER)
    y = test["churn"].to_numpy()
    scores = {
        "LightGBM (calibrated)": evaluation.scores["churn"],
        "BG/NBD no purchase": evaluation.scores["bgnbd_no_purchase"],
        "recency": evaluation.scores["recency"],
        "BG/NBD 1 - P(alive)": evaluation.scores["bgnbd_p_alive"],
    }
    scores = {k: v for k, v in scores.items() if np.isfinite(v).all()}
    figures = {
        schema.PLOT_CHURN_FEATURE_IMPORTANCE: plots.feature_importance_plot(model.feature_importance()),
        schema.PLOT_CHURN_ROC: plots.roc_plot(y, scores),
        schema.PLOT_CHURN_PRECISION_RECALL: plots.precision_recall_plot(y, scores),
        schema.PLOT_CHURN_RELIABILITY: plots.reliability_plot(y, scores),
    }
    log_figures(figures)
    mlflow.set_tag(CHURN_MODEL_URI_TAG, info.model_uri)
    return info.model_uri
