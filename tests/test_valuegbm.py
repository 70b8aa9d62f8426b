"""The boosted value model: cut-offs and labels by hand, leakage, save/load, ranking, the too-short error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import simulated_transactions
from scipy.stats import spearmanr

from crmvalue.churn import prepare
from crmvalue.customer_days import customer_days
from crmvalue.errors import CrmvalueError
from crmvalue.features import rfm_summary
from crmvalue.models.gamma_gamma import GammaGammaModel, expected_average_value
from crmvalue.valuegbm import (
    LABEL,
    OFFSET_FLOOR,
    STATE_FILE,
    GbmForecaster,
    GbmNotEstimable,
    GbmSettings,
    GbmValueModel,
    add_revenue_label,
    cutoff_rows,
    expected_revenue,
    forecaster_from_config,
    gbm_feature_columns,
    log_offset,
    revenue_after,
    settings_from_config,
    training_cutoffs,
)

FIT_END = pd.Timestamp("2021-09-30")
H = 90
# small and quick: 60-day steps, small leaves, one thread
SETTINGS = GbmSettings(step_days=60, min_data_in_leaf=20, num_leaves=7, num_threads=1, num_boost_round=300)


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return simulated_transactions(n_customers=400, seed=3)


@pytest.fixture(scope="module")
def fitted(log) -> GbmValueModel:
    return GbmValueModel(SETTINGS).fit(log, FIT_END, H)


def _rewrite_after(tx: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """Every transaction after ``day`` rewritten: half dropped, the rest tripled, and a stranger added."""
    later = tx["date"].dt.normalize() > day
    stranger = pd.DataFrame({"customer_id": ["NEW"], "date": [day + pd.Timedelta(days=1)], "amount": [5.0]})
    return pd.concat([tx[~later], tx[later].iloc[::2].assign(amount=lambda d: d["amount"] * 3), stranger])


# --------------------------------------------------------------------------------------------- by hand


def test_training_cutoffs_by_hand():
    cutoffs = training_cutoffs("2020-01-01", "2020-12-31", 90, 60, 30)
    # 2020-12-31 - 90 days = 2020-10-02, then back 60 days at a time down to 2020-01-31 (first day + 30)
    assert [str(c.date()) for c in cutoffs] == ["2020-10-02", "2020-08-03", "2020-06-04", "2020-04-05", "2020-02-05"]


def test_data_too_short_is_not_estimable_in_one_line():
    # 2 x 90 + 60 = 240 days are needed; 2020-01-01 .. 2020-08-01 is 213
    with pytest.raises(GbmNotEstimable, match="needs 240 days .* the data have 213") as info:
        training_cutoffs("2020-01-01", "2020-08-01", 90, 30, 60)
    assert isinstance(info.value, CrmvalueError) and "\n" not in str(info.value)
    assert info.value.reason.startswith("the data have 213 days")


def test_a_step_that_leaves_no_purged_training_cutoff_is_not_estimable(log):
    # held out 2021-07-02; the next cut-off, 520 days earlier (2020-01-29), is before the first purchase + 60 days
    with pytest.raises(GbmNotEstimable, match="no training cut-off"):
        GbmValueModel(GbmSettings(step_days=520)).fit(log, FIT_END, H)


def test_revenue_label_by_hand():
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "b"],
            "date": pd.to_datetime(
                ["2020-01-01", "2020-01-10", "2020-01-11", "2020-01-11", "2020-01-05", "2020-01-12"]
            ),
            "amount": [10.0, 20.0, 30.0, -5.0, 7.0, -7.0],
        }
    )
    days = customer_days(tx)
    # window (2020-01-05, 2020-01-12]: a has 20 + (30 - 5); b only a return day of its own
    np.testing.assert_allclose(revenue_after(days, ["a", "b"], "2020-01-05", 7), [45.0, -7.0])
    rows = add_revenue_label(pd.DataFrame({"customer_id": ["b", "a"]}), days, "2020-01-05", 7)
    np.testing.assert_allclose(rows[LABEL], [0.0, 45.0])  # a net return is no revenue


def test_btyd_features_at_a_cutoff_are_fitted_on_that_cutoffs_past(log):
    cutoff = pd.Timestamp("2021-01-31")
    rows = cutoff_rows(prepare(log, FIT_END), cutoff, H, SETTINGS)
    rfm = rfm_summary(log, cutoff, "weeks")
    spend = GammaGammaModel().fit(rfm["frequency"], rfm["monetary_value"]).params_
    expected = expected_average_value(spend, rfm["frequency"], rfm["monetary_value"])
    np.testing.assert_allclose(rows["expected_spend"], expected, rtol=1e-12)
    np.testing.assert_allclose(rows["btyd_revenue"], rows["expected_purchases"] * rows["expected_spend"])
    assert {"p_alive", "expected_purchases", "bgnbd_no_purchase", "btyd_revenue", "T"} <= set(gbm_feature_columns(rows))
    assert not {"cutoff", "customer_id", LABEL} & set(gbm_feature_columns(rows))


class _Booster:
    def __init__(self, values):
        self.values = np.asarray(values, float)

    def predict(self, X, raw_score=False):
        return self.values


def test_back_transforms_by_hand():
    X = pd.DataFrame({"x": [0.0, 0.0]})
    # log_l2: s exp(f) - 1 with s = 1.2, clipped at 0: 1.2 e^1 - 1 = 2.2619..., 1.2 e^-1 - 1 < 0
    got = expected_revenue("log_l2", {"mean": _Booster([1.0, -1.0])}, {"smearing": 1.2}, X)
    np.testing.assert_allclose(got, [1.2 * np.e - 1, 0.0])
    # hurdle: P(buy) exp(mu + sigma^2 / 2) = 0.5 exp(2 + 0.5) and 0.1 exp(0 + 0.5)
    boosters = {"buy": _Booster([0.5, 0.1]), "log_spend": _Booster([2.0, 0.0])}
    got = expected_revenue("hurdle_lognormal", boosters, {"log_variance": 1.0}, X)
    np.testing.assert_allclose(got, [0.5 * np.exp(2.5), 0.1 * np.exp(0.5)])
    np.testing.assert_allclose(expected_revenue("l2", {"mean": _Booster([3.0, -2.0])}, {}, X), [3.0, 0.0])
    # tweedie from the BTYD forecast: exp(trees + log btyd_revenue); a failed BTYD fit takes the fallback
    X = pd.DataFrame({"btyd_revenue": [20.0, np.nan, 0.0]})
    got = expected_revenue("tweedie", {"mean": _Booster([0.5, 0.5, 0.0])}, {"offset_fallback": 8.0}, X)
    np.testing.assert_allclose(got, [20.0 * np.exp(0.5), 8.0 * np.exp(0.5), OFFSET_FLOOR])
    np.testing.assert_allclose(log_offset([1e-9, np.inf], 3.0), [np.log(OFFSET_FLOOR), np.log(3.0)])


def test_bad_settings_are_one_line_errors():
    with pytest.raises(CrmvalueError, match="objective must be one of"):
        GbmSettings(objective="mae")  # type: ignore[arg-type]
    with pytest.raises(CrmvalueError, match="tweedie_variance_power must be in"):
        GbmSettings(tweedie_variance_power=2.0)
    with pytest.raises(CrmvalueError, match="btyd_offset applies to the tweedie objective only"):
        GbmSettings(objective="l2")
    with pytest.raises(CrmvalueError, match="unknown setting 'leaves'"):
        GbmSettings.from_dict({"leaves": 3})


# --------------------------------------------------------------------------------------------- leakage


def test_features_at_a_cutoff_see_nothing_after_it(log):
    """Rewriting every transaction after the fit end, or inside one label window after its cut-off, leaves the
    features of that cut-off as they were; the label of the window does see it."""
    cutoff = pd.Timestamp("2021-03-03")
    data = prepare(log, FIT_END)
    rows = add_revenue_label(cutoff_rows(data, cutoff, H, SETTINGS), customer_days(log), cutoff, H)
    features = gbm_feature_columns(rows)
    for day in (FIT_END, cutoff):  # after the fit end; inside the label window (and after it)
        changed = _rewrite_after(log, day)
        again = cutoff_rows(prepare(changed, FIT_END), cutoff, H, SETTINGS)
        pd.testing.assert_frame_equal(rows[features], again[features])
    again = add_revenue_label(again, customer_days(changed), cutoff, H)
    assert not np.allclose(rows[LABEL], again[LABEL])


def test_the_fitted_model_scored_at_the_fit_end_ignores_what_came_after(log, fitted):
    changed = GbmValueModel(SETTINGS).fit(_rewrite_after(log, FIT_END), FIT_END, H)
    assert changed.cutoffs_ == fitted.cutoffs_ and changed.rounds_ == fitted.rounds_
    pd.testing.assert_frame_equal(fitted.predict(log), changed.predict(_rewrite_after(log, FIT_END)))
    # every label window ends by the fit end; the held-out cut-off is the last
    assert fitted.cutoffs_[0] == FIT_END - pd.Timedelta(days=H)
    assert all(c + pd.Timedelta(days=H) <= FIT_END for c in fitted.cutoffs_)


# --------------------------------------------------------------------------------------------- predictions and files


def test_predictions_are_finite_non_negative_and_cover_every_customer_seen(log, fitted):
    forecast = fitted.predict(log, FIT_END)
    seen = log.loc[log["date"].dt.normalize() <= FIT_END, "customer_id"].unique()
    assert set(forecast.index) == set(seen) and forecast.index.name == "customer_id"
    assert np.isfinite(forecast["expected_revenue"]).all() and (forecast["expected_revenue"] >= 0).all()
    # the total is of the order of the actual one (simulated data: no trend, no season)
    actual = revenue_after(customer_days(log), forecast.index, FIT_END, H).sum()
    assert 0.6 < forecast["expected_revenue"].sum() / actual < 1.6


def test_save_and_load_give_identical_predictions(log, fitted, tmp_path):
    fitted.save(tmp_path / "gbm")
    assert {p.name for p in (tmp_path / "gbm").iterdir()} == {STATE_FILE, "mean.txt"}
    loaded = GbmValueModel.load(tmp_path / "gbm")
    pd.testing.assert_frame_equal(fitted.predict(log), loaded.predict(log))
    earlier = FIT_END - pd.Timedelta(days=45)  # BTYD features refitted at that date, on both
    pd.testing.assert_frame_equal(fitted.predict(log, earlier), loaded.predict(log, earlier))
    assert loaded.state() == fitted.state()


def test_loading_a_folder_without_a_model_is_one_line(tmp_path):
    with pytest.raises(CrmvalueError, match="does not exist; is .* a saved boosted value model"):
        GbmValueModel.load(tmp_path)


def test_an_experiment_implies_the_churn_models_cutoffs_and_its_btyd_settings():
    from crmvalue.config import load_config

    cfg = load_config(overrides={"time_unit": "days", "churn.step_days": 45, "model.penalizer": 0.1})
    forecaster = forecaster_from_config(cfg)
    assert forecaster.name == "gbm"
    s = forecaster.settings
    assert (s.time_unit, s.step_days, s.penalizer, s.min_history_days, s.sample_customers) == (
        "days",
        45,
        0.1,
        60,
        25_000,
    )
    assert settings_from_config(cfg, objective="l2", btyd_offset=False).objective == "l2"


def test_the_forecaster_has_the_backtest_columns(log):
    forecast = GbmForecaster(SETTINGS).fit_predict(log, FIT_END, H)
    assert GbmForecaster.name == "gbm"
    assert list(forecast.columns) == ["expected_purchases", "expected_revenue"]
    assert forecast["expected_purchases"].isna().all() and (forecast["expected_revenue"] >= 0).all()


def _two_kinds_of_customer(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Customers who never leave, each with a rate (1 or 5 purchases in 100 days) and a mean amount (10 or 60):
    their expected revenue in the next ``H`` days is ``rate x H x mean amount``."""
    rng = np.random.default_rng(seed)
    rate = rng.choice([0.01, 0.05], size=n)
    mean = rng.choice([10.0, 60.0], size=n)
    first = rng.integers(0, 30, size=n)
    span = 730 - first
    count = rng.poisson(rate * span) + 1
    owner = np.repeat(np.arange(n), count)
    offset = np.where(np.r_[True, owner[1:] != owner[:-1]], 0, rng.integers(0, span[owner]))
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i:03d}" for i in owner],
            "date": pd.Timestamp("2020-01-01") + pd.to_timedelta(first[owner] + offset, unit="D"),
            "amount": mean[owner] * rng.gamma(20.0, 1 / 20.0, size=owner.size),
        }
    )
    truth = pd.Series(rate * H * mean, index=[f"c{i:03d}" for i in range(n)])
    return frame, truth


def test_the_model_ranks_customers_by_their_value():
    tx, truth = _two_kinds_of_customer()
    # no dropout sends BG/NBD to its boundary (ridge refits): fewer cut-offs keep the test quick
    settings = GbmSettings.from_dict({**SETTINGS.as_dict(), "step_days": 120})
    forecast = GbmValueModel(settings).fit(tx, FIT_END, H).predict(tx)["expected_revenue"]
    assert spearmanr(forecast, truth[forecast.index]).statistic > 0.8
    actual = revenue_after(customer_days(tx), forecast.index, FIT_END, H)
    constant = np.sqrt(np.mean((actual - actual.mean()) ** 2))  # the best constant, with hindsight
    assert np.sqrt(np.mean((forecast.to_numpy() - actual) ** 2)) < 0.8 * constant


@pytest.mark.parametrize("objective", ["log_l2", "hurdle_lognormal"])
def test_the_other_objectives_save_their_boosters_and_numbers(log, objective, tmp_path):
    settings = GbmSettings.from_dict(
        {**SETTINGS.as_dict(), "objective": objective, "btyd_offset": False, "step_days": 120}
    )
    model = GbmValueModel(settings).fit(log, FIT_END, H)
    parts = {"log_l2": {"mean"}, "hurdle_lognormal": {"buy", "log_spend"}}[objective]
    constant = {"log_l2": "smearing", "hurdle_lognormal": "log_variance"}[objective]
    assert set(model.boosters_) == parts and set(model.constants_) == {constant}
    # Duan's smearing factor is E[exp(residual)] >= exp(E[residual]) > 0; a log variance is > 0
    assert model.constants_[constant] > 0
    forecast = model.predict(log)
    assert np.isfinite(forecast["expected_revenue"]).all() and (forecast["expected_revenue"] >= 0).all()
    model.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {STATE_FILE, *(f"{p}.txt" for p in parts)}
    pd.testing.assert_frame_equal(forecast, GbmValueModel.load(tmp_path).predict(log))
