"""The churn model: its baseline formula against simulation, leakage, features by hand, reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import simulated_transactions
from sklearn.base import clone

from crmvalue import churn
from crmvalue.config import ChurnConfig
from crmvalue.data import load_customer_attributes
from crmvalue.errors import CrmvalueError
from crmvalue.features import rfm_summary
from crmvalue.models import BetaGeoParams, GammaGammaParams
from crmvalue.simulate import simulate_transactions

DAILY = BetaGeoParams(r=0.25, alpha=28.0, a=0.8, b=2.5)  # CDNOW-like rates, per day


# --------------------------------------------------------------------------- the BG/NBD baseline


def test_no_purchase_probability_matches_simulation():
    """(1 - P(alive)) + P(alive) ((alpha+T)/(alpha+T+t))^(r+x), against customers drawn from BG/NBD.

    50,000 customers are simulated to the cut-off plus the horizon with the true parameters;
    the formula, evaluated with those parameters on each customer's history at the cut-off,
    must give the share who then buy nothing in the horizon, overall and by repeat count.
    """
    cutoff, horizon = pd.Timestamp("2020-12-31"), 90
    tx = simulate_transactions(
        50_000,
        DAILY,
        GammaGammaParams(6.0, 4.0, 15.0),
        start="2020-01-01",
        end=str((cutoff + pd.Timedelta(days=horizon)).date()),
        acquisition_days=90,
        seed=11,
    )
    summary = rfm_summary(tx, cutoff, "days")
    later = tx[tx["date"].dt.normalize() > cutoff]
    silent = ~summary.index.isin(later["customer_id"].unique())
    # a customer first seen at the start of a day has been observed to the *end* of the cut-off day
    predicted = churn.bgnbd_no_purchase_probability(
        DAILY, horizon, summary["frequency"], summary["recency"], summary["T"] + 1
    )
    assert predicted.mean() == pytest.approx(silent.mean(), abs=0.005)
    groups = np.minimum(summary["frequency"].to_numpy(), 4)
    for x in range(5):
        in_group = groups == x
        standard_error = np.sqrt(silent[in_group].mean() * (1 - silent[in_group].mean()) / in_group.sum())
        assert predicted[in_group].mean() == pytest.approx(silent[in_group].mean(), abs=4 * standard_error + 0.003), x


def test_no_purchase_probability_limits():
    x, t_x, T = np.array([0.0, 3.0, 3.0]), np.array([0.0, 10.0, 60.0]), np.array([60.0, 60.0, 60.0])
    assert np.all(churn.bgnbd_no_purchase_probability(DAILY, 0.0, x, t_x, T) == pytest.approx(1.0))
    # a one-time buyer is alive for sure, so only the Poisson term is left
    one_time = churn.bgnbd_no_purchase_probability(DAILY, 90.0, 0.0, 0.0, 60.0)
    assert one_time == pytest.approx(((28.0 + 60.0) / (28.0 + 150.0)) ** 0.25)
    longer = churn.bgnbd_no_purchase_probability(DAILY, 365.0, x, t_x, T)
    assert np.all(longer < churn.bgnbd_no_purchase_probability(DAILY, 90.0, x, t_x, T))
    # silent since day 10 after three purchases: more likely gone than one who just bought
    p = churn.bgnbd_no_purchase_probability(DAILY, 90.0, x, t_x, T)
    assert p[1] > p[2]


# --------------------------------------------------------------------------- rows


@pytest.fixture
def tiny_log():
    rows = [
        ("A", "2020-01-01", 10.0, 1),
        ("A", "2020-01-11", 20.0, 2),
        ("A", "2020-01-31", 30.0, 1),
        ("A", "2020-01-31", 5.0, 1),  # same day: one purchase day of 35
        ("A", "2020-03-15", 40.0, 4),  # after the cut-off: the label
        ("B", "2020-01-20", 50.0, 1),
        ("C", "2020-02-10", 7.0, 1),  # acquired after the cut-off: no row
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount", "quantity"])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def test_features_and_labels_by_hand(tiny_log):
    data = churn.prepare(tiny_log, "2020-06-30")
    rows = churn.feature_rows(data, "2020-02-01", 60, "days").set_index("customer_id")
    assert list(rows.index) == ["A", "B"]
    a, b = rows.loc["A"], rows.loc["B"]
    assert (a["frequency"], a["recency"], a["T"], a["monetary_value"]) == (2, 30, 31, 27.5)
    assert (a["tenure_days"], a["days_since_last"]) == (31, 1)
    assert (a["gap_mean"], a["gap_std"]) == (15.0, pytest.approx(np.sqrt(50.0)))
    assert a["gap_cv"] == pytest.approx(np.sqrt(50.0) / 15)
    assert (a["purchases_30d"], a["revenue_30d"], a["purchases_90d"], a["revenue_90d"]) == (2, 55.0, 3, 65.0)
    assert a["purchases_30_90"] == pytest.approx(2 / 3) and a["revenue_30_90"] == pytest.approx(55 / 65)
    assert (a["basket_mean"], a["basket_max"]) == (pytest.approx(65 / 3), 35.0)
    assert (a["quantity_total"], a["quantity_per_purchase"]) == (5.0, pytest.approx(5 / 3))
    assert a["churn"] == 0 and b["churn"] == 1  # A buys on 2020-03-15, within 60 days
    assert np.isnan(b["gap_mean"]) and np.isnan(b["gap_std"]) and b["frequency"] == 0
    assert (rows["label_end"] == pd.Timestamp("2020-04-01")).all()
    # a 30-day horizon ends on 2020-03-02, before A's next purchase
    assert churn.feature_rows(data, "2020-02-01", 30, "days").set_index("customer_id").loc["A", "churn"] == 1


def _with_quantity_and_attributes(n_customers=600, seed=5):
    tx = simulated_transactions(n_customers=n_customers, seed=seed)
    rng = np.random.default_rng(seed)
    tx["quantity"] = rng.integers(1, 5, len(tx)).astype(float)
    ids = sorted(tx["customer_id"].unique())
    table = pd.DataFrame(
        {
            "customer_id": ids,
            "region": rng.choice(["north", "south", "east"], len(ids)),
            "age": rng.integers(18, 80, len(ids)),
        }
    )
    return tx, load_customer_attributes(table)


def test_features_see_nothing_after_their_cutoff():
    """Every feature, quantity and attributes included, is unchanged when the transactions after
    the cut-off are rewritten; the labels are not."""
    tx, attributes = _with_quantity_and_attributes()
    cutoff = pd.Timestamp("2021-03-31")
    rows = churn.feature_rows(churn.prepare(tx, "2021-12-31", attributes), cutoff, 90, "days")
    features = churn.feature_columns(rows)
    assert {"quantity_total", "quantity_per_purchase", "attr_region", "attr_age", "p_alive"} <= set(features)
    # rewrite everything after the cut-off: drop half of it, multiply the rest, add a stranger
    later = tx["date"].dt.normalize() > cutoff
    changed = pd.concat(
        [
            tx[~later],
            tx[later].iloc[::2].assign(amount=lambda d: d["amount"] * 3, quantity=9.0),
            pd.DataFrame(
                {"customer_id": ["NEW"], "date": [cutoff + pd.Timedelta(days=1)], "amount": [1.0], "quantity": [1.0]}
            ),
        ]
    )
    again = churn.feature_rows(churn.prepare(changed, "2021-12-31", attributes), cutoff, 90, "days")
    pd.testing.assert_frame_equal(rows[features], again[features])
    assert not rows["churn"].equals(again["churn"])  # the labels did see the change


def test_labels_see_nothing_before_their_window():
    tx = simulated_transactions(n_customers=600, seed=5)
    cutoff = pd.Timestamp("2021-03-31")
    rows = churn.feature_rows(churn.prepare(tx, "2021-12-31"), cutoff, 90, "days")
    # purchases after the label window or on/before the cut-off do not make a label 0
    outside = tx["date"].dt.normalize() > cutoff + pd.Timedelta(days=90)
    without_later = churn.feature_rows(churn.prepare(tx[~outside], "2021-12-31"), cutoff, 90, "days")
    pd.testing.assert_series_equal(rows["churn"], without_later["churn"])
    bought = tx.loc[(tx["date"].dt.normalize() > cutoff) & ~outside, "customer_id"].unique()
    assert set(rows.loc[rows["churn"] == 0, "customer_id"]) == set(bought) & set(rows["customer_id"])


def test_rolling_cutoffs_are_purged_against_the_held_out_one():
    held_out, cutoffs = churn.rolling_cutoffs("2020-01-01", "2020-12-31", 90, 30, 60)
    assert held_out == pd.Timestamp("2020-10-02")  # its labels end on the last label day
    assert cutoffs[0] == pd.Timestamp("2020-07-04")  # the latest whose labels end by the held-out cut-off
    assert all(c + pd.Timedelta(days=90) <= held_out for c in cutoffs)
    assert np.all(np.diff(cutoffs) == pd.Timedelta(days=-30))
    assert cutoffs[-1] >= pd.Timestamp("2020-03-01") > cutoffs[-1] - pd.Timedelta(days=30)
    assert churn.rolling_cutoffs("2020-01-01", "2020-06-30", 90, 30, 60) == (pd.Timestamp("2020-04-01"), [])


# --------------------------------------------------------------------------- out of time


@pytest.fixture(scope="module")
def evaluated():
    tx = simulated_transactions(n_customers=3000, seed=2)
    data = churn.prepare(tx, "2021-12-31")
    return data, churn.evaluate_churn(data, "2021-06-30", "2021-12-31", ChurnConfig(), 90, "days", 0.0)


def test_no_label_reaches_into_the_test_feature_window(evaluated):
    """Every row the model learnt, stopped or was calibrated on has its label window end by the
    test cut-off, where the test rows' features end; training labels end by the held-out cut-off."""
    _, result = evaluated
    test_cutoff = pd.Timestamp("2021-06-30")
    assert (result.test["cutoff"] == test_cutoff).all()
    assert (result.test["label_end"] == test_cutoff + pd.Timedelta(days=90)).all()
    windows = result.windows
    assert set(windows["role"]) == {"train", "early_stopping", "calibration"}
    assert (windows["label_end"] <= test_cutoff).all()
    assert (windows["label_end"] == windows["cutoff"] + pd.Timedelta(days=90)).all()
    held_out = windows.loc[windows["role"] != "train", "cutoff"].unique()
    assert list(held_out) == [result.held_out_cutoff]
    assert (windows.loc[windows["role"] == "train", "label_end"] <= result.held_out_cutoff).all()  # purged
    # the two halves of the held-out cut-off do not share a customer
    halves = windows[windows["role"] != "train"].groupby("role")["customer_id"].apply(set)
    assert not halves["early_stopping"] & halves["calibration"]


def test_metrics_are_reported_for_the_model_and_every_baseline(evaluated):
    _, result = evaluated
    m = result.metrics
    for name in ("churn", "baseline.bgnbd_p_alive", "baseline.bgnbd_no_purchase", "baseline.recency"):
        for metric in ("roc_auc", "pr_auc", "brier", "log_loss", "lift_top_decile", "capture_top_decile"):
            assert np.isfinite(m[f"{name}.{metric}"]), (name, metric)
    # one-time buyers get P(alive) = 1 from BG/NBD, so 1 - P(alive) calls them the safest: worse than chance
    assert m["baseline.bgnbd_p_alive.roc_auc"] < 0.5
    assert m["churn.roc_auc"] > 0.6 and m["baseline.bgnbd_no_purchase.roc_auc"] > 0.6


def test_scores_are_reproducible(evaluated):
    data, first = evaluated
    second = churn.evaluate_churn(data, "2021-06-30", "2021-12-31", ChurnConfig(), 90, "days", 0.0)
    np.testing.assert_array_equal(first.scores["churn"], second.scores["churn"])
    assert first.metrics == second.metrics


def test_churn_metrics_by_hand():
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0] * 2)
    score = np.linspace(1, 0, 20)
    m = churn.churn_metrics(y, score)
    # the top decile is the two highest scores, both churners: lift 1 / 0.3, capture 2 / 6
    assert m["lift_top_decile"] == pytest.approx(1 / 0.3)
    assert m["capture_top_decile"] == pytest.approx(2 / 6)
    assert m["brier"] == pytest.approx(np.mean((score - y) ** 2))
    # a ranking other than the probability orders the ranking metrics only
    ranked = churn.churn_metrics(y, score, ranking=-score)
    assert ranked["brier"] == m["brier"] and ranked["roc_auc"] == pytest.approx(1 - m["roc_auc"])


def test_top_decile_does_not_depend_on_row_order_under_ties():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    tied = np.full(10, 0.5)  # a score that cannot tell anyone apart: lift exactly 1
    for order in (np.arange(10), np.arange(10)[::-1]):
        m = churn.churn_metrics(y[order], tied)
        assert m["lift_top_decile"] == pytest.approx(1.0) and m["capture_top_decile"] == pytest.approx(0.1)


def test_estimator_is_scikit_learn_style(evaluated):
    _, result = evaluated
    model = result.model
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "booster_")
    assert model.best_iteration_ > 0 and list(model.classes_) == [0, 1]
    proba = model.predict_proba(result.test[list(model.feature_names_in_)])
    assert proba.shape == (len(result.test), 2) and np.allclose(proba.sum(axis=1), 1)
    assert model.calibration_state()["method"] == "sigmoid"


def test_isotonic_calibration_and_its_state():
    tx = simulated_transactions(n_customers=1500, seed=4)
    data = churn.prepare(tx, "2021-12-31")
    result = churn.evaluate_churn(
        data, "2021-06-30", "2021-12-31", ChurnConfig(calibration="isotonic"), 90, "days", 0.0
    )
    state = result.model.calibration_state()
    raw = result.test["score_churn_uncalibrated"].to_numpy()
    np.testing.assert_allclose(np.interp(raw, state["x"], state["y"]), result.scores["churn"], atol=1e-12)


def test_risk_bands():
    assert list(churn.churn_risk([0.95, 0.8, 0.79, 0.5, 0.1], high=0.8, medium=0.5)) == [
        "high",
        "high",
        "medium",
        "medium",
        "low",
    ]


# --------------------------------------------------------------------------- input problems


def test_too_little_history_names_the_remedy():
    tx = simulated_transactions(n_customers=300, seed=1)
    tx = tx[tx["date"] < "2020-06-01"]
    data = churn.prepare(tx, "2020-05-31")
    with pytest.raises(
        CrmvalueError, match=r"needs 180 days of data up to 2020-03-31 .* the data have 90 .* --no-churn"
    ) as caught:
        churn.evaluate_churn(data, "2020-03-31", "2020-05-31", ChurnConfig(), 60, "days", 0.0)
    # valid data the protocol cannot use: churn.enabled auto skips the stage with this reason
    assert isinstance(caught.value, churn.ChurnNotEstimable)
    assert caught.value.reason == (
        "the data have 90 days from 2020-01-01 to the calibration end 2020-03-31, the churn "
        "protocol needs 180 (2 x 60-day horizon + min_history_days 60)"
    )
    churn.check_history("2020-01-01", "2020-06-29", 60, 60)  # exactly enough
    with pytest.raises(CrmvalueError, match="needs 180 days"):
        churn.check_history("2020-01-01", "2020-06-28", 60, 60)


def test_a_test_window_past_the_observation_end_is_refused():
    data = churn.prepare(simulated_transactions(n_customers=300, seed=1), "2021-12-31")
    with pytest.raises(CrmvalueError, match="runs past the observation end"):
        churn.evaluate_churn(data, "2021-11-30", "2021-12-31", ChurnConfig(), 90, "days", 0.0)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("array must not contain infs or NaNs"),  # trust-exact on SkylakeX, as the issue saw it
        np.linalg.LinAlgError("Singular matrix"),
        FloatingPointError("overflow encountered in exp"),
        CrmvalueError("BG/NBD did not converge"),
    ],
)
def test_a_failed_bgnbd_feature_fit_leaves_the_features_missing(monkeypatch, caplog, error):
    """Whatever the BG/NBD fit at a cut-off raises, the churn features it gives are left missing, as designed."""
    data = churn.prepare(simulated_transactions(n_customers=300, seed=1), "2021-12-31")

    def fail(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(churn.BetaGeoModel, "fit", fail)
    with caplog.at_level("WARNING", logger="crmvalue"):
        rows = churn.feature_rows(data, "2021-06-30", 90, "days")
        assert churn.bgnbd_params_at(data, "2021-06-30", "days") == churn.NO_BGNBD
    assert rows[["p_alive", "expected_purchases", "bgnbd_no_purchase"]].isna().all().all()
    assert rows.attrs["bgnbd_params"] is None and rows["frequency"].notna().all()
    assert [r.getMessage() for r in caplog.records] == [
        f"cut-off 2021-06-30: BG/NBD features left missing ({error})"
    ] * 2


def test_the_early_cdnow_sample_cutoff_of_the_issue_does_not_raise(cdnow_sample):
    """The churn features' fit at 1997-03-04 (1,757 customers, 283 repeaters, T at most 8.9 weeks)
    walked to a, b -> 0 and raised scipy's ValueError; now it is fitted or left missing, never raised."""
    data = churn.prepare(cdnow_sample, "1998-06-30")
    rows = churn.feature_rows(data, "1997-03-04", 90, "weeks")
    assert len(rows) == 1757 and (rows["frequency"] > 0).sum() == 283
    params = rows.attrs["bgnbd_params"]
    assert params is None or np.isfinite(rows["p_alive"]).all()


def test_customer_attributes_join_by_id_and_stay_categorical(tmp_path):
    tx = simulated_transactions(n_customers=800, seed=6)
    ids = sorted(tx["customer_id"].unique())
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "customer_id": ids,
            "region": rng.choice(["north", "south", "east"], len(ids)),
            "age": rng.integers(18, 80, len(ids)).astype(str),
        }
    )
    table.iloc[:5, 1] = None
    table.to_csv(tmp_path / "customers.csv", index=False)
    attributes = load_customer_attributes(tmp_path / "customers.csv")
    assert attributes["region"].dtype == "category" and attributes["age"].dtype == float
    assert attributes.loc[ids[7], "region"] == table.loc[7, "region"] and attributes.loc[ids[7], "age"] == float(
        table.loc[7, "age"]
    )
    assert attributes["region"].isna().sum() == 5 and attributes["age"].notna().all()
    data = churn.prepare(tx, "2021-12-31", attributes)
    assert data.categories == {"attr_region": ["east", "north", "south"]}
    rows = churn.feature_rows(data, "2021-06-30", 90, "days")
    assert "attr_age" in churn.feature_columns(rows)
    # categories enter as their codes, missing stays missing
    expected = attributes.reindex(rows["customer_id"])["region"].to_numpy()
    decoded = [None if np.isnan(c) else data.categories["attr_region"][int(c)] for c in rows["attr_region"]]
    assert decoded == [None if pd.isna(e) else e for e in expected]
    assert rows["attr_region"].notna().sum() > 0.9 * len(rows)
    result = churn.evaluate_churn(data, "2021-06-30", "2021-12-31", ChurnConfig(), 90, "days", 0.0)
    # and LightGBM splits on them as categories, natively
    infos = result.model.booster_.dump_model()["feature_infos"]
    assert sorted(v for v in infos["attr_region"]["values"] if v >= 0) == [0, 1, 2]  # category values
    assert infos["attr_age"]["values"] == []  # a numeric feature has a range, not values


@pytest.mark.parametrize(
    "table, message",
    [
        (pd.DataFrame({"id": ["1", "2"], "x": [1, 2]}), "no customer id column 'customer_id'; the columns are id, x"),
        (pd.DataFrame({"customer_id": ["1", "2", "1"], "x": [1, 2, 3]}), "repeats the id '1' at row 2"),
        (pd.DataFrame({"customer_id": ["1", "2"]}), "no attribute columns"),
    ],
)
def test_bad_customer_tables(table, message):
    with pytest.raises(CrmvalueError, match=message):
        load_customer_attributes(table)


def test_a_customer_table_that_matches_no_customer_is_refused():
    tx = simulated_transactions(n_customers=50, seed=1)
    table = load_customer_attributes(pd.DataFrame({"customer_id": ["x1", "x2"], "segment": ["a", "b"]}))
    with pytest.raises(CrmvalueError, match="no id of the customer table matches"):
        churn.prepare(tx, "2021-12-31", table)


def test_missing_customer_table_file(tmp_path):
    with pytest.raises(CrmvalueError, match="no such file"):
        load_customer_attributes(tmp_path / "nope.csv")


def test_on_cdnow_master_the_model_beats_every_baseline(cdnow_master):
    """The issue's target with the default experiment's dates, out of time: above every baseline
    on ROC AUC and Brier. (Its other target, AUC >= 0.78, is not met: 0.777; see the README.)"""
    data = churn.prepare(cdnow_master, "1998-06-30")
    result = churn.evaluate_churn(data, "1997-09-30", "1998-06-30", ChurnConfig(), 90, "weeks", 0.0)
    m = result.metrics
    assert m["churn.test_rows"] == 23570
    for baseline in ("bgnbd_p_alive", "bgnbd_no_purchase", "recency"):
        assert m["churn.roc_auc"] > m[f"baseline.{baseline}.roc_auc"], baseline
        assert m["churn.brier"] < m[f"baseline.{baseline}.brier"], baseline
    assert m["churn.roc_auc"] == pytest.approx(0.777, abs=0.003)
    assert m["baseline.bgnbd_p_alive.roc_auc"] == pytest.approx(0.333, abs=0.002)  # worse than chance, as explained
    # the quality gate, on this model's held-out cut-off (not the test's), keeps LightGBM too
    rows = churn.training_rows(data, "1997-09-30", ChurnConfig(), 90, "weeks", 0.0)
    gate = churn.gate_churn_model(result.model, rows, ChurnConfig().seed)
    assert gate.cutoff == result.held_out_cutoff == pd.Timestamp("1997-07-02")
    assert gate.scorer == "lightgbm", gate.reason
    assert gate.metrics["lightgbm"]["brier"] == pytest.approx(0.1207, abs=5e-4)
    assert gate.metrics["bgnbd_no_purchase"]["brier"] == pytest.approx(0.1220, abs=5e-4)


# --------------------------------------------------------------------------- the quality gate


@pytest.fixture(scope="module")
def evaluated_rows(evaluated):
    data, _ = evaluated
    return churn.training_rows(data, "2021-06-30", ChurnConfig(), 90, "days", 0.0)


def test_the_gate_judges_every_scorer_on_held_out_rows_no_calibration_saw(evaluated, evaluated_rows):
    _, result = evaluated
    rows = evaluated_rows
    gate = churn.gate_churn_model(result.model, rows, ChurnConfig().seed)
    windows = result.windows
    assert gate.cutoff == result.held_out_cutoff and gate.rows == (windows["role"] == "early_stopping").sum()
    assert set(gate.metrics) == {"lightgbm", "bgnbd_no_purchase", "bgnbd_p_alive", "recency"}
    # each baseline's calibration is a logistic curve fitted on the calibration half only
    calib = rows.merge(windows.loc[windows["role"] == "calibration", ["cutoff", "customer_id"]])
    valid = rows.merge(windows.loc[windows["role"] == "early_stopping", ["cutoff", "customer_id"]])
    for name, state in gate.calibrations.items():
        assert state == churn.fit_baseline_calibration(calib, calib["churn"], name)
        brier = np.mean((churn.baseline_probability(valid, state) - valid["churn"]) ** 2)
        assert gate.metrics[name]["brier"] == pytest.approx(brier, rel=1e-12)
    lightgbm = result.model.predict_proba(valid[list(result.model.feature_names_in_)])[:, 1]
    assert gate.metrics["lightgbm"]["brier"] == pytest.approx(np.mean((lightgbm - valid["churn"]) ** 2), rel=1e-12)
    # recency's curve is stated on raw days: older last purchases, likelier churn
    assert gate.calibrations["recency"]["coef"] > 0
    # the metrics logged: the model's and each baseline's, held out
    items = gate.metric_items()
    assert items["churn.held_out.brier"] == gate.metrics["lightgbm"]["brier"]
    assert items["baseline.recency.held_out.roc_auc"] == gate.metrics["recency"]["roc_auc"]
    # the live scorer scores through one function, whichever it is
    live = churn.live_probability(
        valid,
        gate.scorer,
        gate.baseline_calibration,
        lambda r: result.model.predict_proba(r[list(result.model.feature_names_in_)])[:, 1],
    )
    expected = lightgbm if gate.scorer == "lightgbm" else churn.baseline_probability(valid, gate.baseline_calibration)
    np.testing.assert_array_equal(live, expected)


def test_the_gate_drops_a_model_that_learnt_noise(evaluated_rows):
    """Training labels shuffled (the held-out cut-off's left as they are): the features say nothing
    about them, LightGBM cannot beat BG/NBD on the held-out rows, and the export falls back to the best baseline."""
    rows = evaluated_rows.copy()
    train = rows["cutoff"] < rows["cutoff"].max()
    rows.loc[train, "churn"] = np.random.default_rng(0).permutation(rows.loc[train, "churn"].to_numpy())
    model, _ = churn.fit_churn_model(rows, ChurnConfig())
    gate = churn.gate_churn_model(model, rows, ChurnConfig().seed)
    assert gate.scorer == gate.best_baseline != "lightgbm"
    assert gate.metrics["lightgbm"]["brier"] > gate.metrics[gate.scorer]["brier"]
    assert gate.reason.startswith(f"{gate.scorer}: LightGBM's held-out Brier")
    # a BG/NBD baseline whose scores are missing is no candidate
    without = churn.gate_churn_model(model, rows.assign(bgnbd_no_purchase=np.nan, p_alive=np.nan), ChurnConfig().seed)
    assert set(without.metrics) == {"lightgbm", "recency"}


# --------------------------------------------------------------------------- many customers: a sample to train, chunks to score


def test_a_subset_has_the_same_feature_rows_as_the_whole(evaluated):
    """With the BG/NBD parameters fixed, the rows of a subset of customers are those customers' rows of the whole."""
    data, _ = evaluated
    params = churn.bgnbd_params_at(data, "2021-06-30", "days")
    whole = churn.feature_rows(data, "2021-06-30", 90, "days", bgnbd_params=params).set_index("customer_id")
    part = churn.sample_customers(data, 700, seed=3)
    assert len(part.ids) == 700 and part.ids.is_monotonic_increasing and set(part.ids) <= set(data.ids)
    rows = churn.feature_rows(part, "2021-06-30", 90, "days", bgnbd_params=params).set_index("customer_id")
    pd.testing.assert_frame_equal(rows, whole.loc[rows.index])
    # the fit feature_rows makes itself is the one bgnbd_params_at makes for chunked scoring
    assert churn.feature_rows(data, "2021-06-30", 90, "days").attrs["bgnbd_params"] == params
    assert churn.sample_customers(data, None, 0) is data and churn.sample_customers(data, 10**9, 0) is data


def test_scoring_in_chunks_does_not_depend_on_the_chunk_size(evaluated):
    data, result = evaluated
    params = churn.bgnbd_params_at(data, "2021-12-31", "days")
    columns = list(result.model.feature_names_in_)

    def predict(rows):
        return result.model.predict_proba(rows[columns])[:, 1]

    whole = churn.feature_rows(data, "2021-12-31", 90, "days", label=False, bgnbd_params=params)
    ids, scores, example = churn.score_in_chunks(data, "2021-12-31", 90, "days", params, predict, chunk_customers=10**9)
    np.testing.assert_array_equal(ids, whole["customer_id"].to_numpy())
    np.testing.assert_array_equal(scores, predict(whole))
    chunked_ids, chunked, _ = churn.score_in_chunks(
        data, "2021-12-31", 90, "days", params, predict, chunk_customers=451
    )
    np.testing.assert_array_equal(chunked_ids, ids)
    np.testing.assert_array_equal(chunked, scores)
    assert len(example) == 5


def test_the_model_trains_and_tests_on_a_sample_of_customers(evaluated):
    data, _ = evaluated
    sample = churn.sample_customers(data, 1000, seed=0)
    result = churn.evaluate_churn(sample, "2021-06-30", "2021-12-31", ChurnConfig(), 90, "days", 0.0)
    assert set(result.windows["customer_id"]) <= set(sample.ids)
    assert set(result.test["customer_id"]) <= set(sample.ids)
    assert result.metrics["churn.test_rows"] <= 1000


def test_a_range_of_codes_is_the_subset_of_those_codes(evaluated):
    data, _ = evaluated
    for start, stop in ((0, 1), (17, 951), (2990, len(data.ids))):
        by_range, by_codes = churn.code_range(data, start, stop), churn.subset(data, np.arange(start, stop))
        assert by_range.ids.equals(by_codes.ids)
        for name in ("customer", "day", "amount"):
            np.testing.assert_array_equal(getattr(by_range, name), getattr(by_codes, name))
