"""The churn model of the contractual setting (crmvalue.contractual.churn): LightGBM on rolling cut-offs beside the
sBG fitted at the same cut-off, the quality gate, and churn_probability in the scores, MLflow, predict and export.

Pinned to the outside world: subscriptions simulated with a plan that truly changes churn (LightGBM, told the plan
through the customer table, must beat the sBG) and without one (the sBG is then the true model); the cut-off grid
and the labels by hand; the labels and the sBG's Brier score recomputed by the period rule; a leakage test that
rewrites everything after a cut-off.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crmvalue.churn import ChurnNotEstimable, churn_metrics
from crmvalue.config import load_config
from crmvalue.contractual import (
    ContractualModel,
    SubscriptionColumns,
    anniversary,
    durations_at,
    fit_at,
    load_subscriptions,
    predict,
    train,
)
from crmvalue.contractual.churn import (
    churn_cutoffs,
    churn_features,
    labelled_rows,
    train_contractual_churn,
)

OBS_END = pd.Timestamp("2022-12-31")
COLUMNS = SubscriptionColumns()


def plan_subscriptions(n: int, seed: int, plan_matters: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Subscribers starting on any day of 2019-2022; each draws her churn probability per month from a beta and
    cancels on an anniversary (so the day within the month says nothing). With ``plan_matters`` the beta depends
    on the plan (annual: mean 0.03, monthly: mean 0.25), else it is one beta, an sBG (alpha 1, beta 6).
    Returns the subscriptions and the customer table (customer_id, plan)."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["annual", "monthly"], n)
    if plan_matters:
        theta = rng.beta(3.0, np.where(plan == "annual", 97.0, 9.0))
    else:
        theta = rng.beta(1.0, 6.0, n)
    periods = np.minimum(rng.geometric(theta), 1000)
    start = np.datetime64("2019-01-01") + rng.integers(0, 1430, n).astype("timedelta64[D]")
    end = anniversary(start, periods, "month")
    end = np.where(end <= np.datetime64(OBS_END, "D"), end, np.datetime64("NaT"))
    ids = [f"p{i:05d}" for i in range(n)]
    subs = pd.DataFrame(
        {
            "customer_id": ids,
            "start": pd.to_datetime(start).strftime("%Y-%m-%d"),
            "end": pd.Series(pd.to_datetime(end)).dt.strftime("%Y-%m-%d").fillna("").to_numpy(),
        }
    )
    return subs, pd.DataFrame({"customer_id": ids, "plan": plan})


def config(**overrides):
    return load_config(None, {"setting": "contractual", "data.source": "subscriptions.csv", **overrides})


def final_scores(frame: pd.DataFrame) -> pd.DataFrame:
    return ContractualModel.from_fit(fit_at(frame, OBS_END, "month"), "month", 0.01).score(frame, OBS_END)


# ---- cut-offs and labels, by hand ---------------------------------------------------------------------------


def test_cutoffs_month_ends_and_weeks():
    months = churn_cutoffs("2020-01-10", "2022-12-31", "month")
    assert [str(c.date()) for c in months[:3]] == ["2022-11-30", "2022-10-31", "2022-09-30"]
    assert len(months) == 24  # MAX_CUTOFFS
    # an observation end inside a month: the last month end before it closes the last label window
    assert str(churn_cutoffs("2020-01-10", "2022-12-15", "month")[0].date()) == "2022-10-31"
    assert str(churn_cutoffs("2022-01-10", "2022-12-31", "quarter")[0].date()) == "2022-09-30"
    weeks = churn_cutoffs("2022-10-01", "2022-12-31", "week")
    assert [str(c.date()) for c in weeks[:2]] == ["2022-12-24", "2022-12-17"]
    assert str(weeks[-1].date()) >= "2022-10-08"  # one period after the first start


def test_labels_hand_checked():
    """Cut-off 28 Feb 2021. a (start 31 Jan) renewed on 28 Feb, her next anniversary is 31 Mar: ending on it she
    did not renew (churn); b ends the day after it (no churn); c ends before the cut-off (no row); d renews on
    15 Jan and 15 Feb and ends on 12 Mar, before her third (churn); e has no end (no churn), f starts after the cut-off (no row)."""
    table = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e", "f"],
            "start": ["2021-01-31", "2021-01-31", "2021-01-05", "2020-12-15", "2021-02-10", "2021-03-05"],
            "end": ["2021-03-31", "2021-04-01", "2021-02-20", "2021-03-12", "", ""],
        }
    )
    frame = load_subscriptions(table, COLUMNS).frame
    rows = labelled_rows(frame, pd.Timestamp("2021-02-28"), "month")
    assert rows["customer_id"].tolist() == ["a", "b", "d", "e"]
    assert rows["renewals"].tolist() == [1, 1, 2, 0]
    assert rows["label_end"].dt.strftime("%Y-%m-%d").tolist() == [
        "2021-03-31",
        "2021-03-31",
        "2021-03-15",
        "2021-03-10",
    ]
    assert rows["churn"].tolist() == [1, 0, 1, 0]
    assert rows["tenure_periods"].to_numpy() == pytest.approx(np.array([28, 28, 75, 18]) / (365.25 / 12))
    assert rows["start_cohort"].tolist() == [612, 612, 611, 613]  # months since Jan 1970


# ---- simulated: a plan that changes churn, and none ------------------------------------------------------------


@pytest.fixture(scope="module")
def plan_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("contractual_churn")
    subs, customers = plan_subscriptions(5000, seed=3, plan_matters=True)
    subs.to_csv(folder / "subscriptions.csv", index=False)
    customers.to_csv(folder / "customers.csv", index=False)
    cfg = config(
        **{
            "data.source": str(folder / "subscriptions.csv"),
            "data.customers": str(folder / "customers.csv"),
            "observation_end": str(OBS_END.date()),
            "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
            "models_dir": str(folder / "models"),
            "out": str(folder / "predictions.csv"),
            "name": "plans",
        }
    )
    return cfg, train(cfg), folder


def test_a_plan_that_matters_lightgbm_beats_the_sbg(plan_run):
    _, result, _ = plan_run
    churn = result.churn
    m = churn.metrics
    assert churn.scorer == "lightgbm" and m["churn.lightgbm_live"] == 1.0
    assert "attr_plan" in churn.state["features"]
    # measured 0.0449 against 0.0482, AUC 0.740 against 0.691: the plan is worth it
    assert m["churn.brier"] < 0.96 * m["churn.baseline.sbg.brier"]
    assert m["churn.roc_auc"] > m["churn.baseline.sbg.roc_auc"] + 0.02
    assert m["churn.log_loss"] < m["churn.baseline.sbg.log_loss"]
    # the export is the tested model, scored at the observation end
    p = result.predictions
    assert p["churn_probability"].to_numpy() == pytest.approx(churn.scores["churn_probability"].to_numpy())
    assert not np.allclose(p["churn_probability"], 1 - p["p_active_next"])
    monthly = p["customer_id"].isin(pd.read_csv(plan_run[2] / "customers.csv").query("plan == 'monthly'").customer_id)
    assert p.loc[monthly, "churn_probability"].mean() > 3 * p.loc[~monthly, "churn_probability"].mean()
    bands = np.select([p["churn_probability"] >= 0.8, p["churn_probability"] >= 0.5], ["high", "medium"], "low")
    assert (p["churn_risk"].to_numpy() == bands).all()
    assert result.summary_lines()[-2].startswith("churn at the test cut-off 2022-11-30: LightGBM ROC AUC 0.7")


def test_plan_run_in_mlflow_predict_and_export(plan_run, tmp_path):
    import sqlalchemy
    from mlflow.tracking import MlflowClient

    from crmvalue.export.contractual import export_subscribers

    cfg, result, folder = plan_run
    run = MlflowClient(tracking_uri=cfg.tracking_uri).get_run(result.run_id)
    assert run.data.tags["crmvalue.churn"] == "lightgbm"
    for key in ("churn.brier", "churn.roc_auc", "churn.baseline.sbg.brier", "churn.baseline.sbg.log_loss"):
        assert run.data.metrics[key] == pytest.approx(result.metrics[key])
    saved = json.loads((folder / "models" / "plans" / "sbg_model.json").read_text())
    assert saved["churn"]["scorer"] == "lightgbm" and saved["churn"]["customers"]["id_col"] == "customer_id"
    # predict rebuilds LightGBM from the saved text and the customer table: the same probabilities
    scored = predict(result.run_id, cfg.data.source, tmp_path / "s.csv", OBS_END, tracking_uri=cfg.tracking_uri)
    assert scored.predictions["churn_probability"].to_numpy() == pytest.approx(
        result.predictions["churn_probability"].to_numpy(), rel=1e-9
    )
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    export_subscribers(result.run_id, to=url, tracking_uri=cfg.tracking_uri)
    table = pd.read_sql_table("subscriber_scores", sqlalchemy.create_engine(url))
    assert table["churn_probability"].to_numpy() == pytest.approx(result.predictions["churn_probability"].to_numpy())
    assert table["churn_risk"].tolist() == result.predictions["churn_risk"].tolist()


def test_sbg_registered_and_predict_from_the_registry(plan_run, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    cfg, result, _ = plan_run
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    version = client.get_model_version("plans-sbg", "1")
    assert version.run_id == result.run_id
    assert client.get_run(result.run_id).data.tags["crmvalue.sbg_model_version"] == "1"
    client.set_registered_model_alias("plans-sbg", "champion", "1")
    for uri in ("models:/plans-sbg/1", "models:/plans-sbg@champion"):
        scored = predict(uri, cfg.data.source, tmp_path / "s.csv", OBS_END, tracking_uri=cfg.tracking_uri)
        assert scored.source_run_id == result.run_id
    # the registered pyfunc, rebuilt from sbg_model.json, scores the sBG's columns as train did
    mlflow.set_tracking_uri(cfg.tracking_uri)
    try:
        model = mlflow.pyfunc.load_model("models:/plans-sbg/1")
    finally:
        mlflow.set_tracking_uri(None)
    table = pd.read_csv(cfg.data.source, dtype=str, keep_default_na=False)
    scores = model.predict(table, params={"observation_end": str(OBS_END.date())})
    assert scores["p_active_next"].to_numpy() == pytest.approx(result.predictions["p_active_next"].to_numpy())
    assert scores["derl"].to_numpy() == pytest.approx(result.predictions["derl"].to_numpy())


def test_without_a_covariate_the_export_is_the_gates_choice():
    subs, _ = plan_subscriptions(5000, seed=4, plan_matters=False)
    frame = load_subscriptions(subs, COLUMNS).frame
    scores = final_scores(frame)
    churn = train_contractual_churn(config(), frame, OBS_END, scores)
    m = churn.metrics
    cutoff = churn.test_cutoff
    assert cutoff == pd.Timestamp("2022-11-30")
    # the test labels and the sBG's Brier score, recomputed: active at the cut-off with n renewals, she churns when
    # the observation end sees her cancel in period n + 1; the baseline is the sBG fitted at the cut-off
    seen, later = durations_at(frame, cutoff, "month"), durations_at(frame, OBS_END, "month")
    active = seen["started"].to_numpy() & ~seen["churned"].to_numpy()
    made = seen["duration"].to_numpy()[active]
    y = (later["churned"].to_numpy()[active] & (later["duration"].to_numpy()[active] == made + 1)).astype(int)
    baseline = 1 - fit_at(frame, cutoff, "month").params_.p_active_next(made)
    assert m["churn.test_rows"] == len(y) and m["churn.test_churn_rate"] == pytest.approx(y.mean())
    assert m["churn.baseline.sbg.brier"] == pytest.approx(np.mean((baseline - y) ** 2))
    assert m["churn.baseline.sbg.roc_auc"] == pytest.approx(churn_metrics(y, baseline)["roc_auc"])
    # the sBG is the true model here: LightGBM cannot do much better (measured 0.0612 against 0.0612)
    assert m["churn.brier"] > 0.98 * m["churn.baseline.sbg.brier"]
    if churn.scorer == "sbg":
        expected = 1 - scores["p_active_next"].to_numpy()
    else:
        rows, _ = churn_features(frame, OBS_END, "month")
        expected = churn.model.predict_proba(rows[churn.state["features"]])[:, 1]
    assert churn.scores["churn_probability"].to_numpy() == pytest.approx(expected)
    assert (m["churn.brier"] < m["churn.baseline.sbg.brier"]) == (churn.scorer == "lightgbm")


def test_no_feature_sees_past_the_cutoff():
    """Rewrite every end after the cut-off (other days, or none) and add subscribers who start after it: the
    features and the sBG baseline at the cut-off do not move; the labels do."""
    subs, customers = plan_subscriptions(1500, seed=5, plan_matters=True)
    frame = load_subscriptions(subs, COLUMNS).frame
    cutoff = pd.Timestamp("2021-06-30")
    rng = np.random.default_rng(0)
    later = frame["end"].isna() | (frame["end"] > cutoff)
    moved = frame.copy()
    new_end = cutoff + pd.to_timedelta(rng.integers(1, 400, len(frame)), unit="D")
    moved["end"] = frame["end"].where(~later, new_end.where(rng.random(len(frame)) < 0.7))
    extra = pd.DataFrame(
        {
            "customer_id": [f"new{i}" for i in range(200)],
            "start": cutoff + pd.to_timedelta(rng.integers(1, 300, 200), unit="D"),
            "end": pd.NaT,
        }
    )
    moved = pd.concat([moved, extra], ignore_index=True)
    before = labelled_rows(frame, cutoff, "month")
    after = labelled_rows(moved, cutoff, "month")
    features = ["cutoff", "customer_id", "renewals", "tenure_periods", "start_cohort", "sbg"]
    pd.testing.assert_frame_equal(before[features], after[features])
    assert (before["churn"] != after["churn"]).sum() > 20  # the rewrite did change what happens next
    assert (before["label_end"] <= cutoff + pd.offsets.MonthEnd(1)).all()  # every label ends by the next cut-off


# ---- churn.enabled -------------------------------------------------------------------------------------------


def test_enabled_auto_skips_true_refuses_false_never_runs(caplog):
    short = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "start": ["2022-10-03", "2022-11-01", "2022-11-10"],
            "end": ["2022-12-03", "", ""],
        }
    )
    frame = load_subscriptions(short, COLUMNS).frame
    scores = ContractualModel.from_fit(fit_at(frame, OBS_END, "month"), "month", 0.01).score(frame, OBS_END)
    skipped = train_contractual_churn(config(), frame, OBS_END, scores)
    assert skipped.scores is None and "usable monthly cut-offs" in skipped.skipped
    assert skipped.tag.startswith("skipped: the subscriptions give")
    assert "churn: skipped" in caplog.text
    with pytest.raises(ChurnNotEstimable, match="needs 3"):
        train_contractual_churn(config(**{"churn.enabled": True}), frame, OBS_END, scores)
    assert train_contractual_churn(config(**{"churn.enabled": False}), frame, OBS_END, scores) is None
    # nobody ever cancels: labels of one class
    loyal = pd.DataFrame({"customer_id": [f"x{i}" for i in range(60)], "start": "2020-01-15", "end": ""})
    loyal.loc[:4, "end"] = "2020-03-15"
    frame = load_subscriptions(loyal, COLUMNS).frame
    one_class = train_contractual_churn(config(), frame, OBS_END, final_scores(frame))
    assert "only one class" in one_class.skipped
