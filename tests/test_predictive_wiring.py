"""The predictive intervals in the export: what a run saves for them, and ``crmvalue predict`` reproducing them.

One training run with ``intervals.enabled`` (churn and the CRM analyses off, to keep it short), scored again by
``predict`` on the same data: every interval column comes back identical, because the run saves its fits'
log-parameter covariances with the value model and its ``intervals`` settings in its config.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import simulated_transactions, synthetic_config

from crmvalue import schema
from crmvalue.errors import CrmvalueError
from crmvalue.features import rfm_summary
from crmvalue.models import BetaGeoParams, GammaGammaParams, ValueModel
from crmvalue.models.predictive import export_intervals, predictive_intervals, saved_intervals
from crmvalue.models.uncertainty import bootstrap_intervals
from crmvalue.pipeline import train
from crmvalue.predict import predict

EXPECTATION = ["expected_purchases_lower", "expected_purchases_upper", "clv_lower", "clv_upper"]
OUTCOME = ["purchases_lower", "purchases_upper", "revenue_lower", "revenue_upper"]
LEVEL = 0.8  # not the default: the run's own settings must reach predict
DRAWS = 40


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulated_transactions(n_customers=300, seed=11)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("wiring")
    cfg = synthetic_config(
        tmp,
        name="wiring",
        **{
            "churn.enabled": False,
            "analyses.enabled": False,
            "intervals.enabled": True,
            "intervals.draws": DRAWS,
            "intervals.level": LEVEL,
            "intervals.seed": 5,
        },
    )
    return tmp, cfg, train(cfg, data=data)


def test_the_export_has_both_groups_of_intervals_with_their_types(trained):
    _, cfg, result = trained
    export = pd.read_csv(cfg.output_path, dtype={"customer_id": str})
    assert list(export.columns[-9:]) == ["run_id", *EXPECTATION, *OUTCOME]
    # whole purchases, written without a decimal point
    assert export["purchases_lower"].dtype == np.int64 and export["purchases_upper"].dtype == np.int64
    assert result.predictions["purchases_upper"].dtype == np.int64
    assert (export["purchases_lower"] <= export["purchases_upper"]).all()
    assert (export["revenue_lower"] <= export["revenue_upper"]).all() and (export["revenue_lower"] >= 0).all()
    # revenue is 0 exactly when there is no purchase: a lower bound of 0 purchases is a lower bound of 0 revenue
    assert (export.loc[export["purchases_lower"] == 0, "revenue_lower"] == 0).all()
    # no purchase in the interval (P(0) >= 0.8: [0, 0]) is no revenue in it; some customers have that
    assert ((export["purchases_upper"] == 0) == (export["revenue_upper"] == 0)).all()
    assert 0 < (export["purchases_upper"] == 0).sum() < len(export)


def test_the_saved_model_carries_the_covariances_the_run_logged(trained):
    """The covariances in models/<name>/value_model.json are the final fits': their diagonals give the
    standard errors the run logged (delta method: se = value x sqrt(var of the log))."""
    _, cfg, result = trained
    saved = json.loads((Path(cfg.models_dir) / cfg.name / schema.VALUE_MODEL_FILE).read_text())
    model = ValueModel.from_dict(saved)
    assert model.purchase == result.value_model.purchase
    metrics = mlflow.tracking.MlflowClient(tracking_uri=cfg.tracking_uri).get_run(result.run_id).data.metrics
    for name, (params, covariance) in {
        model.purchase.name: (saved["purchase_params"], saved["purchase_log_covariance"]),
        "gamma_gamma": (saved["gamma_gamma"], saved["spend_log_covariance"]),
    }.items():
        assert len(covariance) == len(params)
        for i, (key, value) in enumerate(params.items()):
            assert metrics[schema.standard_error_metric(name, key)] == pytest.approx(
                value * np.sqrt(covariance[i][i]), rel=1e-9
            )


def test_the_exported_intervals_are_the_models_at_the_runs_settings(trained, data):
    """Recomputed by hand from the saved model: the expectation's bounds by the bootstrap, the outcome's by
    predictive_intervals over the 90-day horizon in days, both at level 0.8 with 40 draws and seed 5."""
    _, cfg, result = trained
    model = ValueModel.from_dict(json.loads((Path(cfg.models_dir) / cfg.name / schema.VALUE_MODEL_FILE).read_text()))
    summary = rfm_summary(data, cfg.observation_end, "days")
    covariances = (np.asarray(model.purchase_log_covariance), np.asarray(model.spend_log_covariance))
    expectation = bootstrap_intervals(model, summary, *covariances, draws=DRAWS, level=LEVEL, seed=5)
    outcome = predictive_intervals(
        model.purchase, covariances[0], model.gamma_gamma, covariances[1], summary, 90.0, LEVEL, DRAWS, 5, True
    )
    exported = result.predictions.set_index("customer_id").loc[summary.index]
    pd.testing.assert_frame_equal(exported[EXPECTATION], expectation[EXPECTATION], check_names=False)
    pd.testing.assert_frame_equal(exported[OUTCOME], outcome[OUTCOME], check_names=False)
    assert (outcome["purchases_probability"] >= LEVEL - 1e-9).all()  # each interval holds at least the level


def test_predict_reproduces_every_interval_column(trained, data):
    tmp, cfg, result = trained
    out = tmp / "scores.csv"
    scored = predict("models:/wiring-value/1", data, cfg.observation_end, out, tracking_uri=cfg.tracking_uri)
    export = pd.read_csv(cfg.output_path, dtype={"customer_id": str})
    again = pd.read_csv(out, dtype={"customer_id": str})
    assert list(again.columns) == list(export.columns)
    same = [c for c in export.columns if c != "run_id"]
    pd.testing.assert_frame_equal(again[same], export[same], check_exact=True)
    # and unrounded, in memory
    columns = ["customer_id", *EXPECTATION, *OUTCOME]
    pd.testing.assert_frame_equal(
        scored.predictions[columns].reset_index(drop=True), result.predictions[columns].reset_index(drop=True)
    )


def test_a_model_saved_without_covariances_scores_without_intervals(trained, data, monkeypatch, caplog):
    """A value model saved before the covariances were (its JSON has no such keys) loads as before; predict
    scores it and leaves the interval columns out, with a one-line warning."""
    tmp, cfg, result = trained
    monkeypatch.setattr(ValueModel, "with_covariances", lambda self, purchase, spend: self)  # what old JSON gives
    with caplog.at_level(logging.WARNING, logger="crmvalue"):
        scored = predict(
            "models:/wiring-value/1", data, cfg.observation_end, tmp / "old.csv", tracking_uri=cfg.tracking_uri
        )
    assert not set(EXPECTATION + OUTCOME) & set(scored.predictions.columns)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"run {result.run_id} saved no parameter covariances with its value model: no intervals" in warnings
    pd.testing.assert_series_equal(scored.predictions["clv"], result.predictions["clv"])


def test_value_model_json_keeps_the_covariances_exactly():
    covariance = np.array([[0.02, 0.001, 0.0, 0.0], [0.001, 0.03, 0.0, 0.0], [0.0, 0.0, 0.1, 0.05], [0, 0, 0.05, 0.2]])
    covariance[0, 1] = covariance[1, 0] = 1 / 300  # a float that JSON must not round
    model = ValueModel(BetaGeoParams(0.24, 4.4, 0.79, 2.4), GammaGammaParams(6.25, 3.74, 15.44), "weeks", 90, 12, 0.01)
    with_cov = model.with_covariances(covariance, np.diag([0.01, 0.02, 0.03]))
    again = ValueModel.from_dict(json.loads(json.dumps(with_cov.to_dict())))
    assert again == with_cov and np.array_equal(np.asarray(again.purchase_log_covariance), covariance)
    assert "purchase_log_covariance" not in model.to_dict()  # unknown: not written, as before
    assert saved_intervals(model) is None
    summary = pd.DataFrame(
        {"frequency": [0.0, 2.0], "recency": [0.0, 10.0], "T": [5.0, 12.0], "monetary_value": [0, 30.0]}
    )
    pd.testing.assert_frame_equal(
        saved_intervals(again, draws=30, level=0.9, seed=1)(summary),
        export_intervals(model, summary, covariance, np.diag([0.01, 0.02, 0.03]), draws=30, level=0.9, seed=1),
    )
    with pytest.raises(CrmvalueError, match=r"spend_log_covariance has shape \(2, 2\); the spend parameters p, q, v"):
        model.with_covariances(covariance, np.eye(2))
