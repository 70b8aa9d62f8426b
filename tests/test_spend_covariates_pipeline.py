"""Spend covariates (``model.covariates.spend``, ``--spend-covariates``) through train, MLflow, the saved model and
predict, on simulated customers whose spend level depends on a segment and whose purchases do not.

The model's own tests are in tests/test_gamma_gamma_covariates.py; here: the coefficient comes back from the
simulated truth, the purchase model stays plain, the likelihood-ratio test is logged, each one-time buyer gets her
segment's population mean spend p v_i / (q - 1), and predict reproduces train from the saved model.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_config

from crmvalue.models import BetaGeoParams, GammaGammaParams, ValueModel
from crmvalue.pipeline import train
from crmvalue.simulate import simulate_transactions

N = 2000
SILVER_SPENDS = -0.7  # log of silver's spend level against gold's (the reference level)
SETTINGS = {
    "calibration_end": "2020-04-30",
    "observation_end": "2021-12-31",
    "churn": {"enabled": False},
    "analyses": {"enabled": False},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spend_covariates")
    rng = np.random.default_rng(2)
    silver = rng.uniform(size=N) < 0.5
    spend = GammaGammaParams(6.0, 4.0, 15.0 * np.exp(SILVER_SPENDS * silver))  # type: ignore[arg-type]
    tx = simulate_transactions(N, BetaGeoParams(2.0, 200.0, 0.8, 2.5), spend, acquisition_days=90, seed=2)
    tx.to_csv(tmp / "tx.csv", index=False)
    ids = [f"C{i:04d}" for i in range(N)]
    pd.DataFrame({"customer_id": ids, "segment": np.where(silver, "silver", "gold")}).to_csv(
        tmp / "customers.csv", index=False
    )
    data = {"source": str(tmp / "tx.csv"), "customers": str(tmp / "customers.csv")}
    cfg = synthetic_config(tmp, name="spend", data=data, model={"covariates": {"spend": ["segment"]}}, **SETTINGS)
    return tmp, cfg, train(cfg)


def test_the_spend_coefficient_is_logged_and_recovers_the_truth(run):
    tmp, cfg, result = run
    logged = mlflow.tracking.MlflowClient(cfg.tracking_uri).get_run(result.run_id).data
    kappa = float(logged.params["gamma_gamma.spend.segment.silver"])
    se = logged.metrics["gamma_gamma.se.spend.segment.silver"]
    assert abs(kappa - SILVER_SPENDS) < 3 * se < 0.3
    assert logged.metrics["gamma_gamma.ci95_lower.spend.segment.silver"] == pytest.approx(kappa - 1.96 * se)
    assert logged.metrics["final.gamma_gamma.lr_test.df"] == 1.0
    assert logged.metrics["final.gamma_gamma.lr_test.p_value"] < 1e-6
    # the purchase model has no covariates: no purchase or dropout coefficients, no test of them
    assert not [k for k in logged.params if k.startswith(("bgnbd.purchase.", "bgnbd.dropout."))]
    assert "final.bgnbd.lr_test.p_value" not in logged.metrics
    assert result.value_model.gamma_spend == (kappa,)
    assert result.value_model.gamma_purchase == () and result.value_model.gamma_dropout == ()


def test_one_time_buyers_get_their_segments_population_mean_spend(run):
    tmp, cfg, result = run
    predictions = pd.read_csv(cfg.output_path, dtype={"customer_id": str}).set_index("customer_id")
    segment = pd.read_csv(tmp / "customers.csv", index_col="customer_id")["segment"]
    gg, kappa = result.value_model.gamma_gamma, result.value_model.gamma_spend[0]
    once = predictions[predictions["frequency"] == 0]
    for level, shift in (("gold", 0.0), ("silver", kappa)):
        spend = once.loc[segment.reindex(once.index) == level, "expected_avg_value"]
        assert len(spend) > 20
        np.testing.assert_allclose(spend, gg.p * gg.v * np.exp(shift) / (gg.q - 1), atol=0.005)


def test_the_saved_model_round_trips_and_predict_reproduces_train(run, crmvalue_main):
    tmp, cfg, result = run
    saved = json.loads((tmp / "models" / "spend" / "value_model.json").read_text())
    assert saved["covariates"]["spend"] == ["segment"] and len(saved["covariates"]["gamma_spend"]) == 1
    assert ValueModel.from_dict(saved) == result.value_model
    out = tmp / "predicted.csv"
    common = ("predict", "--model", f"runs:/{result.run_id}/value_model", "--data", tmp / "tx.csv")
    common += ("--observation-end", "2021-12-31", "--tracking-uri", cfg.tracking_uri, "-q")
    done = crmvalue_main(*common, "--out", out, "--customers", tmp / "customers.csv")
    assert done.returncode == 0, done.stderr
    scored = pd.read_csv(out, dtype={"customer_id": str}).drop(columns=["history", "run_id"], errors="ignore")
    trained = pd.read_csv(cfg.output_path, dtype={"customer_id": str}).drop(columns="run_id")
    pd.testing.assert_frame_equal(scored, trained)
    # without the customer table the spend cannot be scored: one line, nothing written
    done = crmvalue_main(*common, "--out", tmp / "never.csv")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--customers" in done.stderr and not (tmp / "never.csv").exists()


def test_spend_covariates_are_refused_where_they_do_not_work_yet(tmp_path):
    from crmvalue.errors import CrmvalueError

    data = {"source": "unused.csv", "customers": "unused.csv"}
    for extra, words in (({"intervals": {"enabled": True}}, "intervals"), ({"period": "month"}, "BG/BB")):
        with pytest.raises((CrmvalueError, ValueError), match=words):
            settings = dict(SETTINGS, **extra)
            model = {"covariates": {"spend": ["segment"]}, **({"purchase_model": "bgbb"} if "period" in extra else {})}
            cfg = synthetic_config(tmp_path, data=data, model=model, **settings)
            train(cfg)


def test_crmvalue_train_takes_spend_covariates_and_prints_their_test(run, crmvalue_main):
    tmp, cfg, _ = run
    done = crmvalue_main(
        *("train", "--data", tmp / "tx.csv", "--customers", tmp / "customers.csv", "--spend-covariates", "segment"),
        *("--calibration-end", "2020-04-30", "--observation-end", "2021-12-31", "--time-unit", "days", "--no-churn"),
        *("--name", "spend_cli", "--out", tmp / "cli.csv", "--tracking-uri", cfg.tracking_uri),
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("covariates"))
    assert "spend: segment" in line and "Gamma-Gamma chi2" in line and "purchase model" not in line, line
