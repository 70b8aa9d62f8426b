"""model.value_model: the auto rule, the potential-value rule, the leakage of the choice, a live boosted model
in the run and in crmvalue predict, and a bad setting."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import random_transactions, simulated_transactions, synthetic_config

from crmvalue.config import load_config
from crmvalue.customer_days import customer_days
from crmvalue.errors import CrmvalueError
from crmvalue.models import BetaGeoParams, GammaGammaParams, ValueModel
from crmvalue.progress import Progress
from crmvalue.value_choice import (
    GBM_FOLDER,
    LIVE_TAG,
    REASON_TAG,
    BoostedRevenue,
    auto_backtest,
    choose,
    choose_value_model,
    clv_horizon_ratio,
    corrected_potential,
)
from crmvalue.valuegbm import STATE_FILE, settings_from_config

# ------------------------------------------------------------------------------------------------ the rule


def _means(gbm: tuple[float, float, float], btyd: tuple[float, float, float]) -> pd.DataFrame:
    columns = ["revenue.rmse", "revenue.gini", "revenue.decile_mape"]
    return pd.DataFrame([gbm, btyd], index=["gbm", "btyd"], columns=columns)


@pytest.mark.parametrize(
    ("gbm", "live", "wins"),
    [
        ((36.1, 0.73, 0.30), "gbm", 2),  # lower RMSE, higher Gini, worse decile MAPE
        ((36.1, 0.73, 0.20), "gbm", 3),
        ((36.3, 0.73, 0.30), "btyd", 1),  # the Gini alone
        ((36.2, 0.70, 0.25), "btyd", 0),  # a tie is not a win
        ((np.nan, 0.73, 0.20), "gbm", 2),  # a missing figure is not a win
        ((np.nan, 0.73, np.nan), "btyd", 1),
    ],
)
def test_gbm_is_live_when_it_wins_two_of_the_three_criteria(gbm, live, wins):
    chosen, figures = choose(_means(gbm, (36.2, 0.70, 0.25)))
    assert chosen == live
    assert figures.startswith(f"gbm better on {wins} of 3 criteria (gbm vs BTYD: revenue RMSE ")


def test_a_model_that_forecasts_zero_does_not_win():
    from crmvalue.backtest.metrics import decile_mape, mae, normalized_gini, rmse

    # ten customers, two of whom spend 50 next horizon; "gbm" forecasts 0 for everyone, "btyd" the mean, 10
    actual = np.array([0.0] * 8 + [50.0, 50.0])
    zero, mean = np.zeros(10), np.full(10, 10.0)
    assert (mae(actual, zero), mae(actual, mean)) == (10.0, 16.0)  # MAE prefers the zero forecast
    figures = [[rmse(actual, p), normalized_gini(actual, p), decile_mape(actual, p)] for p in (zero, mean)]
    # RMSE sqrt(2 x 50^2 / 10) against sqrt((8 x 10^2 + 2 x 40^2) / 10); no ranking in either; every decile
    # holds the tie's mean actual, 10, so the zero forecast misses each by 100%
    np.testing.assert_allclose(figures, [[np.sqrt(500.0), 0.0, 1.0], [20.0, 0.0, 0.0]], atol=1e-12)
    assert choose(_means(tuple(figures[0]), tuple(figures[1])))[0] == "btyd"


# ------------------------------------------------------------------------------------------------ potential value


def test_the_potential_value_by_hand():
    clv = [120.0, 30.0, 0.0, 0.0]
    btyd = [12.0, 10.0, 0.0, 0.0]
    gbm = [18.0, 5.0, 2.5, 0.0]
    # clv x gbm / btyd: 120 x 1.5, 30 x 0.5; BTYD at 0: gbm x the horizon ratio 4
    assert corrected_potential(clv, btyd, gbm, 4.0).tolist() == [180.0, 15.0, 10.0, 0.0]


def test_the_horizon_ratio_uses_lifetimes_month():
    purchase, spend = BetaGeoParams(0.24, 4.4, 0.79, 2.4), GammaGammaParams(6.25, 3.74, 15.44)
    assert clv_horizon_ratio(ValueModel(purchase, spend, "days", 90, 12, 0.01)) == 12 * 30 / 90
    assert clv_horizon_ratio(ValueModel(purchase, spend, "weeks", 91, 6, 0.01)) == pytest.approx(6 * 4.345 * 7 / 91)


def test_the_boosted_revenue_replaces_btyds_and_corrects_the_clv():
    scores = pd.DataFrame(
        {"expected_revenue": [10.0, 0.0], "clv": [50.0, 0.0], "potential_value": [50.0, 0.0]},
        index=pd.Index(["a", "b"], name="customer_id"),
    )
    boosted = pd.DataFrame({"expected_revenue": [3.0, 15.0]}, index=pd.Index(["b", "a"], name="customer_id"))
    model = SimpleNamespace(predict=lambda days, at: boosted)
    out = BoostedRevenue(model, 4.0)(scores, None, pd.Timestamp("2021-01-01"))  # type: ignore[arg-type]
    assert out["expected_revenue"].tolist() == [15.0, 3.0]
    assert out["potential_value"].tolist() == [75.0, 12.0]  # 50 x 15 / 10; 3 x 4
    assert out["clv"].tolist() == [50.0, 0.0]
    partial = SimpleNamespace(predict=lambda days, at: boosted.head(1))
    with pytest.raises(CrmvalueError, match="no boosted forecast for 1 scored customers"):
        BoostedRevenue(partial, 4.0)(scores, None, None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ auto on data


def _auto_config(**overrides):
    return load_config(overrides={"model.value_model": "auto", "time_unit": "days", **overrides})


def test_data_too_short_for_a_cutoff_keep_btyd_and_say_why():
    days = customer_days(random_transactions(seed=1))  # 2020, first purchase 2020-01-02
    cfg = _auto_config()
    choice = choose_value_model(cfg, days, SimpleNamespace(winner="bgnbd"), "2020-05-01", "2020-12-31", Progress(False))
    assert (choice.live, choice.gbm, choice.metrics) == ("btyd", None, {})
    assert choice.reason == (
        "auto kept BTYD: the data before the calibration end 2020-05-01 are too short for a backtest cut-off: the "
        "last one, 2020-02-01 (the calibration end - the 90-day horizon), is before 2020-04-01 (the first purchase "
        "+ backtest.min_history_days 90)"
    )


def test_data_too_short_for_the_boosted_model_keep_btyd_and_say_why():
    days = customer_days(random_transactions(seed=1))
    cfg = _auto_config()
    # cut-offs 2020-04-03 and 2020-07-02; the boosted model needs 2 x 90 + 60 days before each
    choice = choose_value_model(cfg, days, SimpleNamespace(winner="bgnbd"), "2020-09-30", "2020-12-31", Progress(False))
    assert (choice.live, choice.gbm) == ("btyd", None)
    assert choice.reason.startswith(
        "auto kept BTYD: none of the 2 backtest cut-offs up to the calibration end 2020-09-30 could fit both models; "
        "at the latest, 2020-07-02, gbm: "
    )


def _rewrite_after(tx: pd.DataFrame, day: str) -> pd.DataFrame:
    """Every transaction after ``day`` rewritten: half dropped, the rest tripled, and a stranger added."""
    later = tx["date"].dt.normalize() > pd.Timestamp(day)
    stranger = pd.DataFrame(
        {"customer_id": ["NEW"], "date": [pd.Timestamp(day) + pd.Timedelta(days=1)], "amount": [5.0]}
    )
    return pd.concat([tx[~later], tx[later].iloc[::2].assign(amount=lambda d: d["amount"] * 3), stranger])


def test_the_auto_choice_reads_nothing_after_the_calibration_end():
    cfg = _auto_config(**{"backtest.cutoffs": 4})
    settings = settings_from_config(cfg, num_leaves=7, min_data_in_leaf=20, num_threads=1)
    tx, cal_end = simulated_transactions(n_customers=400, seed=3), "2021-06-30"
    first = auto_backtest(cfg, customer_days(tx), cal_end, "bgnbd", settings)
    again = auto_backtest(cfg, customer_days(_rewrite_after(tx, cal_end)), cal_end, "bgnbd", settings)
    assert not isinstance(first, str) and not isinstance(again, str)
    # 2020-07-05, 2020-10-03, 2021-01-01, 2021-04-01 are asked for; at the first, 186 days after the first
    # purchase, the boosted model cannot be fitted yet (it needs 2 x 90 + 60 days)
    assert [str(c.date()) for c in first.cutoffs] == ["2020-10-03", "2021-01-01", "2021-04-01"]
    assert list(first.skipped) == ["2020-07-05"] and first.skipped["2020-07-05"].startswith("gbm: ")
    pd.testing.assert_frame_equal(first.per_cutoff, again.per_cutoff, check_exact=True)
    assert choose(first.means()) == choose(again.means())
    items = first.metric_items()
    assert items["value_choice.cutoffs"] == 3.0
    assert items["value_choice.gbm.revenue.rmse"] == pytest.approx(
        first.per_cutoff.query("model == 'gbm'")["revenue.rmse"].mean()
    )


def test_a_bad_value_model_is_one_line():
    with pytest.raises(
        CrmvalueError, match=r"^model.value_model: Input should be 'btyd', 'gbm' or 'auto' \(got 'xgb'\)$"
    ):
        load_config(overrides={"model.value_model": "xgb"})


def test_the_train_flag_is_checked_before_anything_is_read(crmvalue_main, tmp_path):
    ran = crmvalue_main("train", "--data", tmp_path / "missing.csv", "--value-model", "boosted", "--quiet")
    assert ran.returncode != 0
    assert "model.value_model: Input should be 'btyd', 'gbm' or 'auto' (got 'boosted')" in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------ the run, predict


@pytest.fixture(scope="module")
def gbm_run(tmp_path_factory):
    from crmvalue.pipeline import train

    tmp = tmp_path_factory.mktemp("gbm_run")
    # churn off, and the boosted model's cut-offs 60 days apart (churn.step_days), to keep the fixture quick
    overrides = {"model.value_model": "gbm", "analyses.enabled": False, "churn.enabled": False, "churn.step_days": 60}
    cfg = synthetic_config(tmp, name="boosted", **overrides)
    data = simulated_transactions(n_customers=400, seed=3)
    return tmp, cfg, data, train(cfg, data=data)


def test_a_live_boosted_model_is_recorded_with_the_run(gbm_run):
    from crmvalue.tracking.reader import read_run

    tmp, cfg, _, result = gbm_run
    record = read_run(result.run_id, tracking_uri=cfg.tracking_uri)
    assert record.tags[LIVE_TAG] == "gbm" and record.value_model_live == "gbm"
    assert record.tags[REASON_TAG] == "chosen in config (model.value_model: gbm)"
    assert record.params["config.model.value_model"] == "gbm"
    # the holdout's first 90 days, the boosted model beside BTYD and the naive rate, each fitted to 2020-12-31
    assert record.metrics["holdout.revenue_window_days"] == 90.0
    for model in ("gbm", "btyd", "naive_rate"):
        assert {f"holdout.{model}.revenue_{m}" for m in ("rmse", "gini", "decile_mape", "total_ratio")} <= set(
            record.metrics
        )
    assert {p.name for p in (tmp / "models" / "boosted" / GBM_FOLDER).iterdir()} == {STATE_FILE, "mean.txt"}
    p = result.predictions
    btyd_revenue = p["expected_purchases"] * p["expected_avg_value"]
    assert not np.allclose(p["expected_revenue"], btyd_revenue)
    np.testing.assert_allclose(p["potential_value"], p["clv"] * p["expected_revenue"] / btyd_revenue, rtol=1e-12)


def test_predict_reproduces_the_boosted_revenue_and_the_quadrants(gbm_run):
    from crmvalue.predict import predict

    tmp, cfg, data, result = gbm_run
    out = tmp / "scores.csv"
    scored = predict("models:/boosted-value/1", data, cfg.observation_end, out, tracking_uri=cfg.tracking_uri)
    export = pd.read_csv(cfg.output_path, dtype={"customer_id": str})
    again = pd.read_csv(out, dtype={"customer_id": str})
    same = [c for c in export.columns if c != "run_id"]
    assert list(again.columns) == list(export.columns)
    pd.testing.assert_frame_equal(again[same], export[same], check_exact=True)
    # and unrounded, in memory
    columns = ["customer_id", "expected_revenue", "potential_value", "quadrant"]
    pd.testing.assert_frame_equal(
        scored.predictions[columns].reset_index(drop=True),
        result.predictions[columns].reset_index(drop=True),
        check_exact=True,
    )


def test_a_run_without_the_tag_predicts_with_btyd(gbm_run, monkeypatch):
    from crmvalue.predict import predict
    from crmvalue.tracking.reader import TrainedRunRecord

    tmp, cfg, data, result = gbm_run
    # what a run logged before value_model.live existed reads as
    monkeypatch.setattr(TrainedRunRecord, "value_model_live", property(lambda self: "btyd"))
    scored = predict(
        "models:/boosted-value/1", data, cfg.observation_end, tmp / "old.csv", tracking_uri=cfg.tracking_uri
    )
    p = scored.predictions
    np.testing.assert_array_equal(p["expected_revenue"], p["expected_purchases"] * p["expected_avg_value"])
    np.testing.assert_array_equal(p["potential_value"], p["clv"])


def test_a_run_that_lost_its_boosted_model_is_one_line(gbm_run, monkeypatch):
    from crmvalue.tracking.reader import TrainedRunRecord, read_run

    _, cfg, _, result = gbm_run
    record = read_run(result.run_id, tracking_uri=cfg.tracking_uri)
    monkeypatch.setattr(TrainedRunRecord, "download", lambda self, path, folder: None)
    with pytest.raises(CrmvalueError, match=f"run {result.run_id} scored with its boosted value model but has no"):
        record.value_gbm()


def test_the_default_run_records_btyd(synthetic_run):
    from crmvalue.tracking.reader import read_run

    record = read_run(synthetic_run.result.run_id, tracking_uri=synthetic_run.cfg.tracking_uri)
    assert (record.tags[LIVE_TAG], record.tags[REASON_TAG]) == ("btyd", "chosen in config (model.value_model: btyd)")
    assert record.value_gbm() is None
    assert not any(k.startswith(("value_choice.", "holdout.gbm.")) for k in record.metrics)


def test_the_train_summary_shows_the_holdout_revenue_of_each_model():
    from crmvalue.cli.train import holdout_revenue_lines

    metrics = {
        "holdout.revenue_window_days": 90.0,
        "holdout.gbm.revenue_rmse": 43.19,
        "holdout.gbm.revenue_gini": 0.6761,
        "holdout.btyd.revenue_rmse": 43.2084,
        "holdout.naive_rate.revenue_total_ratio": 1.2433,
    }
    assert holdout_revenue_lines(metrics) == [
        "holdout revenue first 90 days of the holdout, every model fitted to the calibration end",
        "  gbm           RMSE 43.190, Gini 0.676",
        "  BTYD          RMSE 43.208",
        "  naive rate    total ratio 1.243",
    ]
    assert holdout_revenue_lines({"holdout.btyd.revenue_rmse": 43.2}) == []  # no live boosted model
