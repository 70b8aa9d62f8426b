"""``crmvalue train --model bgbb --period month`` end to end: a log simulated from BG/BB with known parameters,
trained, tracked in MLflow and scored back by ``crmvalue predict``.

For the lead: add as ``tests/test_bgbb_e2e.py`` once the integration edits of helper D's report are applied
(it imports the simulator from ``tests/test_bgbb_pipeline.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_config
from test_bgbb_pipeline import TRUTH, bgbb_transaction_log

from crmvalue.discrete import DAYS_PER_PERIOD, period_summary
from crmvalue.features import rfm_summary
from crmvalue.models.value import ValueModel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bgbb_run(tmp_path_factory):
    from crmvalue.pipeline import train

    tmp = tmp_path_factory.mktemp("bgbb_run")
    # 3,000 customers acquired January to June 2019, 30 months to June 2021; the ends fall mid-month
    log = bgbb_transaction_log(TRUTH, 3000, "2019-01-01", 30, "month", acquisition_periods=6, seed=16)
    cfg = synthetic_config(
        tmp,
        name="bgbb",
        calibration_end="2021-01-15",
        observation_end="2021-06-30",
        model={"purchase_model": "bgbb"},
        period="month",
        churn={"enabled": False},
    )
    return tmp, cfg, log, train(cfg, data=log)


def test_train_fits_bgbb_on_whole_months_and_recovers_the_parameters(bgbb_run):
    _, cfg, log, result = bgbb_run
    assert result.evaluation.winner == "bgbb" and result.value_model.time_unit == "month"
    fitted = result.value_model.purchase.as_dict()
    for name, true in TRUTH.as_dict().items():
        assert fitted[name] == pytest.approx(true, rel=0.3), name
    # the out-of-time evaluation is in months: December 2020 ends the calibration, January..June 2021 the holdout
    assert result.metrics["holdout.duration"] == 6.0
    assert result.metrics["holdout.predicted_total"] == pytest.approx(result.metrics["holdout.actual_total"], rel=0.08)


def test_scores_are_bgbb_in_months_and_the_export_keeps_purchase_days(bgbb_run):
    _, cfg, log, result = bgbb_run
    scores = result.predictions.set_index("customer_id")
    periods = period_summary(log, "2021-06-30", "month").loc[scores.index]
    params = result.value_model.purchase
    x, t_x, n = (periods[c].to_numpy() for c in ("frequency", "recency", "T"))
    np.testing.assert_allclose(scores["p_alive"], params.p_alive(x, t_x, n), rtol=1e-12)
    horizon = cfg.horizon_days / DAYS_PER_PERIOD["month"]  # 90 days: 2.957 months
    np.testing.assert_allclose(scores["expected_purchases"], params.expected_purchases(horizon, x, t_x, n), rtol=1e-12)
    # FHS (2010) eq. (14): DERT at (1 + d) per month
    np.testing.assert_allclose(scores["dert"], params.dert(cfg.clv.discount_rate, x, t_x, n), rtol=1e-12)
    # the history columns of the export stay the continuous summary (purchase days, weeks by default)
    continuous = rfm_summary(log, "2021-06-30", cfg.time_unit).loc[scores.index]
    np.testing.assert_array_equal(scores["frequency"], continuous["frequency"])
    # the saved value model scores as the run did
    saved = ValueModel.from_dict(result.value_model.to_dict())
    np.testing.assert_allclose(saved.predict(periods)["clv"], scores["clv"], rtol=1e-12)


def test_predict_scores_bgbb_as_train_did(bgbb_run):
    from crmvalue.predict import predict

    tmp, cfg, log, result = bgbb_run
    scored = predict(
        f"runs:/{result.run_id}/value_model", log, "2021-06-30", tmp / "scores.csv", tracking_uri=cfg.tracking_uri
    )
    again = scored.predictions.set_index("customer_id")
    trained = result.predictions.set_index("customer_id")
    for column in ("p_alive", "expected_purchases", "clv", "dert"):
        np.testing.assert_allclose(again[column], trained.loc[again.index, column], rtol=1e-12, err_msg=column)


def test_the_diagnostics_track_months(bgbb_run):
    from crmvalue.diagnostics import fit_diagnostics

    _, cfg, log, result = bgbb_run
    model = result.evaluation.best.model
    from crmvalue.discrete import period_calibration_holdout_summary

    split = period_calibration_holdout_summary(log, "2021-01-15", "2021-06-30", "month")
    tables = fit_diagnostics(model, log, split, "2021-01-15", "2021-06-30", cfg.time_unit, period="month")
    tracking = tables["tracking"]
    assert tracking.attrs["period"] == "month" and len(tracking) == 30
    assert tracking["actual_incremental"].iloc[24:].sum() == split["frequency_holdout"].sum()
    assert tracking["expected_cumulative"].iloc[-1] == pytest.approx(tracking["actual_cumulative"].iloc[-1], rel=0.05)
    assert isinstance(tables["period_transactions"], pd.DataFrame)
