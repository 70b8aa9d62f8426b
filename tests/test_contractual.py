"""The contractual setting (crmvalue.contractual): subscriptions -> renewals in whole periods -> sBG -> scores,
curves, MLflow, predict and export.

Pinned to the outside world: Fader and Hardie (2007)'s published fits, from subscription tables built from their
survival counts; recovery of known parameters from subscriptions simulated with staggered start dates; the period
rule and the scores hand-computed on a small table; DERL against a brute-force sum.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crmvalue.config import load_config
from crmvalue.contractual import (
    ContractualModel,
    SubscriptionColumns,
    anniversaries,
    anniversary,
    cohort_curves,
    durations_at,
    fit_at,
    geometric_churn_rate,
    load_subscriptions,
    period_discount,
    predict,
    train,
)
from crmvalue.errors import CrmvalueError
from crmvalue.models.sbg import ShiftedBetaGeometricParams

REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]
TRUTH = ShiftedBetaGeometricParams(alpha=0.9, beta=2.5)
OBS_END = pd.Timestamp("2022-12-31")
COLUMNS = SubscriptionColumns(fee_col="fee")


def simulated_subscriptions(n: int = 4000, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """Subscribers drawn from TRUTH, starting on any day of 2019-2020, each cancelling on a random day of the month
    she cancels in (after anniversary T - 1, on or before anniversary T); ends after OBS_END are left empty."""
    rng = np.random.default_rng(seed)
    periods = np.minimum(TRUTH.simulate(n, seed=seed + 1), 1000)
    start = np.datetime64("2019-01-01") + rng.integers(0, 730, n).astype("timedelta64[D]")
    before, last = anniversary(start, periods - 1, "month"), anniversary(start, periods, "month")
    end = before + (1 + rng.integers(0, (last - before).astype(int))).astype("timedelta64[D]")
    end = np.where(end <= np.datetime64(OBS_END, "D"), end, np.datetime64("NaT"))
    frame = pd.DataFrame(
        {
            "customer_id": [f"s{i:05d}" for i in range(n)],
            "start": pd.to_datetime(start).strftime("%Y-%m-%d"),
            "end": pd.Series(pd.to_datetime(end)).dt.strftime("%Y-%m-%d").fillna("").to_numpy(),
            "fee": rng.choice([9.99, 19.99, 49.0], n),
        }
    )
    return frame, periods


def counts_table(counts: list[int]) -> pd.DataFrame:
    """One yearly cohort from survival counts: n_{t-1} - n_t subscribers end in year t (mid-year), n_k active."""
    start = pd.Timestamp("2000-01-01")
    ends = np.repeat(np.arange(1, len(counts)), -np.diff(counts))
    end = [str((start + pd.DateOffset(years=int(t - 1), months=6)).date()) for t in ends] + [""] * counts[-1]
    return pd.DataFrame({"customer_id": np.arange(counts[0]), "start": str(start.date()), "end": end})


# ---- the period rule, by hand ------------------------------------------------------------------------------


def test_anniversaries_clip_to_the_month_end():
    start = np.array(["2021-01-31", "2020-02-29", "2021-03-01"], dtype="datetime64[D]")
    assert anniversary(start, 1, "month").astype(str).tolist() == ["2021-02-28", "2020-03-29", "2021-04-01"]
    assert anniversary(start, 1, "year").astype(str).tolist() == ["2022-01-31", "2021-02-28", "2022-03-01"]
    assert anniversary(start, 1, "quarter").astype(str).tolist() == ["2021-04-30", "2020-05-29", "2021-06-01"]
    cutoff = np.datetime64("2021-04-01")
    assert anniversaries(start, cutoff, "month").tolist() == [2, 13, 1]  # 28 Feb, 31 Mar; ...; 1 Apr itself
    assert anniversaries(start, cutoff, "month", strict=True).tolist() == [2, 13, 0]
    assert anniversaries(start, cutoff, "week").tolist() == [8, 56, 4]  # 60 days, 397 days, 31 days
    assert period_discount(0.01, "month") == pytest.approx(0.01)
    assert period_discount(0.01, "year") == pytest.approx(1.01**12 - 1)


def hand_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "start": ["2021-01-15", "2021-01-31", "2021-03-01", "2021-06-30", "2021-04-30"],
            "end": ["2021-03-10", "2021-02-28", "", "", "2021-06-30"],
            "fee": ["10", "10", "20", "30", "5"],
        }
    )


def test_durations_hand_checked():
    """Monthly: a renewed on 15 Feb and ended 10 Mar (T = 2); b ended on its first anniversary, 28 Feb (did not
    renew: T = 1); c is active with 3 renewals by 30 Jun (1 Apr, 1 May, 1 Jun); d started on the cut-off (tenure 0,
    not fitted); e renewed on 30 May and ended on 30 Jun, its second anniversary and the cut-off (T = 2)."""
    frame = load_subscriptions(hand_table(), COLUMNS).frame
    at_obs = durations_at(frame, pd.Timestamp("2021-06-30"), "month")
    assert at_obs["started"].tolist() == [True] * 5
    assert at_obs["churned"].tolist() == [True, True, False, False, True]
    assert at_obs["duration"].tolist() == [2, 1, 3, 0, 2]
    assert at_obs["fit"].tolist() == [True, True, True, False, True]
    at_cal = durations_at(frame, pd.Timestamp("2021-03-31"), "month")
    assert at_cal["started"].tolist() == [True, True, True, False, False]
    assert at_cal["churned"].tolist() == [True, True, False, False, False]
    assert at_cal["duration"].tolist() == [2, 1, 0, 0, 0]  # c: its first anniversary, 1 Apr, is after 31 Mar
    assert at_cal["fit"].tolist() == [True, True, False, False, False]


def test_scores_hand_checked():
    params = ShiftedBetaGeometricParams(alpha=0.704, beta=1.182)
    model = ContractualModel(params, "month", 0.01)
    frame = load_subscriptions(hand_table(), COLUMNS).frame
    scores = model.score(frame, pd.Timestamp("2021-06-30"))
    assert scores["customer_id"].tolist() == ["c", "d"]  # a, b, e ended by the cut-off
    assert scores["tenure"].tolist() == [3, 0]
    assert scores["cohort"].tolist() == ["2021-03", "2021-06"]
    assert scores["p_active_next"].to_numpy() == pytest.approx([4.182 / 4.886, 1.182 / 1.886], rel=1e-12)
    # DERL: the next renewal in full, the k-th after it discounted by 1.01 ** k; brute force over 20,000 periods
    k = np.arange(20_000)
    for n, derl in zip([3, 0], scores["derl"], strict=True):
        brute = np.sum(params.survival(n + 1 + k) / params.survival(n) / 1.01**k)
        assert derl == pytest.approx(brute, rel=1e-6)
    assert scores["discounted_residual_value"].to_numpy() == pytest.approx([20, 30] * scores["derl"].to_numpy())


def test_no_fee_no_value_and_infinite_lifetime_refused():
    frame = load_subscriptions(hand_table(), SubscriptionColumns()).frame
    scores = ContractualModel(ShiftedBetaGeometricParams(1.5, 2.0), "month", 0.0).score(
        frame, pd.Timestamp("2021-06-30")
    )
    assert "discounted_residual_value" not in scores.columns
    assert scores["derl"].tolist() == pytest.approx([(2.0 + 3) / 0.5, 2.0 / 0.5])  # (beta + n) / (alpha - 1)
    with pytest.raises(CrmvalueError, match="infinite"):
        ContractualModel(ShiftedBetaGeometricParams(0.7, 2.0), "month", 0.0).score(frame, pd.Timestamp("2021-06-30"))


# ---- published numbers and recovery ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "alpha", "beta", "ll"),
    [(REGULAR, 0.704, 1.182, -1680.3), (HIGH_END, 0.668, 3.806, -1611.2)],
    ids=["regular", "high-end"],
)
def test_fader_hardie_2007_from_a_subscriptions_table(tmp_path, counts, alpha, beta, ll):
    """Fader and Hardie (2007): a cohort of 1000 started 1 Jan 2000, yearly renewals, observed to 1 Jan 2007."""
    path = tmp_path / "subs.csv"
    counts_table(counts).to_csv(path, index=False)
    frame = load_subscriptions(path, SubscriptionColumns()).frame
    fit = fit_at(frame, pd.Timestamp("2007-01-01"), "year")
    assert fit.params_.alpha == pytest.approx(alpha, abs=5e-4)
    assert fit.params_.beta == pytest.approx(beta, abs=5e-4)
    assert fit.log_likelihood_ == pytest.approx(ll, abs=0.05)
    curves = cohort_curves(frame, pd.Timestamp("2007-01-01"), "year", fit.params_)
    assert curves["cohort"].unique().tolist() == ["2000"]
    assert curves["at_risk"].tolist() == counts[:-1]
    assert curves["renewed"].tolist() == counts[1:]
    assert (curves["observed_survival"] * 1000).to_numpy() == pytest.approx(counts[1:])


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> tuple[Path, pd.DataFrame, np.ndarray]:
    folder = tmp_path_factory.mktemp("contractual")
    table, periods = simulated_subscriptions()
    path = folder / "subscriptions.csv"
    table.to_csv(path, index=False)
    return path, table, periods


def test_recovery_with_staggered_starts(simulated):
    path, table, periods = simulated
    frame = load_subscriptions(path, COLUMNS).frame
    seen = durations_at(frame, OBS_END, "month")
    churned = seen["churned"].to_numpy()
    assert (seen["duration"].to_numpy()[churned] == periods[churned]).all()  # the period rule gives back T
    assert (seen["duration"].to_numpy()[~churned] < periods[~churned]).all()  # censored: T > tenure
    fit = fit_at(frame, OBS_END, "month")
    se = fit.standard_errors_
    assert abs(fit.params_.alpha - TRUTH.alpha) < 3 * se["alpha"]
    assert abs(fit.params_.beta - TRUTH.beta) < 3 * se["beta"]
    assert se["alpha"] < 0.05 and se["beta"] < 0.2  # the check has teeth


def test_geometric_churn_rate_by_hand():
    # churned in periods 1 and 2, one still active after 3: 2 churners over 1 + 2 + 3 periods
    assert geometric_churn_rate([1, 2, 3], [True, True, False]) == pytest.approx(2 / 6)


# ---- bad input ----------------------------------------------------------------------------------------------


def bad_file(tmp_path: Path, changes: dict) -> Path:
    table = hand_table()
    for (column, row), value in changes.items():
        table.loc[row, column] = value
    path = tmp_path / "subs.csv"
    table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({("start", 2): "someday"}, ["'start'", "line 4", "someday"]),
        (
            {("end", 1): "2021-01-01"},
            ["1 subscription ends before it starts", "line 3", "'end' is 2021-01-01", "'start' is 2021-01-31"],
        ),
        ({("fee", 3): "-4"}, ["'fee' has 1 negative fee;", "line 5", "-4"]),
        ({("fee", 4): "ten"}, ["'fee'", "non-numeric", "line 6", "ten"]),
        ({("customer_id", 3): "b"}, ["'customer_id'", "repeats 1 id;", "line 5", "'b'", "also at line 3"]),
    ],
    ids=["date", "end-before-start", "negative-fee", "text-fee", "repeated-id"],
)
def test_bad_input_one_line(tmp_path, change, needles):
    path = bad_file(tmp_path, change)
    with pytest.raises(CrmvalueError) as info:
        load_subscriptions(path, COLUMNS)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    for needle in needles:
        assert needle in message


def test_missing_column_and_no_rows(tmp_path):
    path = tmp_path / "subs.csv"
    hand_table().drop(columns="end").to_csv(path, index=False)
    with pytest.raises(CrmvalueError, match=r"subs.csv: missing column 'end'; the columns are 'customer_id', 'start'"):
        load_subscriptions(path, COLUMNS)
    path.write_text("customer_id,start,end,fee\n")
    with pytest.raises(CrmvalueError, match="subs.csv: the file has no data rows"):
        load_subscriptions(path, COLUMNS)
    with pytest.raises(CrmvalueError, match="DataFrame: no subscriptions"):
        load_subscriptions(hand_table().iloc[:0], COLUMNS)


# ---- train, MLflow, predict, export ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(simulated, tmp_path_factory):
    path, _, _ = simulated
    folder = tmp_path_factory.mktemp("contractual_run")
    cfg = load_config(
        None,
        {
            "data.source": str(path),
            "setting": "contractual",
            "subscriptions.fee_col": "fee",
            "observation_end": str(OBS_END.date()),
            "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
            "models_dir": str(folder / "models"),
            "out": str(folder / "exports" / "predictions.csv"),
            "name": "subs",
        },
    )
    return cfg, train(cfg), folder


def test_train_outputs_and_holdout(trained, simulated):
    cfg, result, _ = trained
    _, table, periods = simulated
    assert result.calibration_end == pd.Timestamp("2020-12-31")  # midway from 1 Jan 2019 to 31 Dec 2022
    active = table["end"].eq("").to_numpy()
    assert len(result.predictions) == active.sum()
    assert set(result.predictions["customer_id"]) == set(table.loc[active, "customer_id"])
    on_disk = pd.read_csv(cfg.output_path, dtype={"customer_id": str})
    pd.testing.assert_frame_equal(on_disk, result.predictions, check_dtype=False)
    m = result.metrics
    # the sBG knows subscribers differ; constant retention, with the churn rate of the early (high-churn)
    # periods, expects almost nobody to be left
    assert abs(m["holdout.total_error"]) < 0.15
    assert abs(m["baseline.geometric.holdout.total_error"]) > 0.5
    assert m["holdout.brier"] < m["baseline.geometric.holdout.brier"]
    assert m["holdout.actual_survivors"] == result.holdout.subscribers["survived"].sum()
    lines = result.summary_lines()
    assert lines[0].startswith("sBG per month: alpha 0.88") and result.run_id in lines[-1]


def test_curves_by_cohort_sum_up(trained, simulated):
    _, result, _ = trained
    _, table, _ = simulated
    curves = result.curves
    assert curves["cohort"].nunique() == 24  # monthly cohorts of 2019-2020
    sizes = curves.groupby("cohort")["cohort_size"].first()
    assert sizes.sum() == len(table)
    assert (sizes.to_numpy() == table["start"].str[:7].value_counts().sort_index().to_numpy()).all()
    churned = table["end"].ne("")
    # every cancellation is counted once, in its cohort
    per_cohort = curves.groupby("cohort")["churned"].sum()
    assert (per_cohort.to_numpy() == table[churned].groupby(table["start"].str[:7]).size().to_numpy()).all()
    first = curves[curves["period"] == 1].set_index("cohort")
    assert (first["at_risk"] == sizes).all()  # everyone has reached period 1
    assert (curves["renewed"] == curves["at_risk"] - curves["churned"]).all()
    one = curves[curves["cohort"] == "2019-01"]
    assert one["observed_survival"].iloc[-1] == pytest.approx(np.prod(1 - one["churned"] / one["at_risk"]))
    assert curves["model_survival"].to_numpy() == pytest.approx(result.fit.params_.survival(curves["period"]))


def test_mlflow_run_has_params_metrics_artifacts(trained):
    from mlflow.tracking import MlflowClient

    cfg, result, folder = trained
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["crmvalue.kind"] == "contractual"
    assert float(run.data.params["sbg.alpha"]) == result.fit.params_.alpha
    assert float(run.data.params["sbg.beta"]) == result.fit.params_.beta
    assert "evaluation.sbg.alpha" in run.data.params
    metrics = run.data.metrics
    assert metrics["sbg.se.alpha"] == pytest.approx(result.fit.standard_errors_["alpha"])
    assert metrics["final.sbg.log_likelihood"] == pytest.approx(result.fit.log_likelihood_)
    for key in ("holdout.brier", "holdout.log_loss", "baseline.geometric.holdout.brier", "holdout.cohort_mae"):
        assert metrics[key] == pytest.approx(result.metrics[key])
    names = {a.path for a in client.list_artifacts(result.run_id)}
    names |= {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert {"predictions.csv", "cohort_curves.csv", "holdout_cohorts.csv", "config.yaml", "sbg_model.json"} <= names
    assert "plots/survival_by_cohort.png" in names
    saved = json.loads((folder / "models" / "subs" / "sbg_model.json").read_text())
    assert saved["params"] == result.fit.params_.as_dict() and saved["period"] == "month"


def test_predict_reproduces_train(trained, simulated, tmp_path):
    cfg, result, _ = trained
    path, _, _ = simulated
    out = tmp_path / "scores.csv"
    scored = predict("latest", path, out, observation_end=OBS_END, experiment="subs", tracking_uri=cfg.tracking_uri)
    assert scored.source_run_id == result.run_id and scored.run_id != result.run_id
    columns = [c for c in result.predictions.columns if c != "run_id"]
    pd.testing.assert_frame_equal(scored.predictions[columns], result.predictions[columns])
    assert (pd.read_csv(out)["run_id"] == scored.run_id).all()
    # a year earlier: fewer renewals made, so each subscriber's numbers move with her tenure only
    earlier = predict(
        result.run_id, path, tmp_path / "early.csv", observation_end="2021-12-31", tracking_uri=cfg.tracking_uri
    )
    params = result.fit.params_
    assert earlier.predictions["p_active_next"].to_numpy() == pytest.approx(
        params.p_active_next(earlier.predictions["tenure"])
    )


def test_export_subscriber_scores(trained, tmp_path):
    import sqlalchemy

    from crmvalue.export.contractual import export_subscribers

    cfg, result, _ = trained
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    done = export_subscribers(result.run_id, to=url, tracking_uri=cfg.tracking_uri)
    assert done.rows == len(result.predictions) and done.changed
    table = pd.read_sql_table("subscriber_scores", sqlalchemy.create_engine(url))
    assert table["derl"].to_numpy() == pytest.approx(result.predictions["derl"].to_numpy())
    assert (table["as_of_date"].astype(str) == "2022-12-31").all()
    assert not export_subscribers(result.run_id, to=url, tracking_uri=cfg.tracking_uri).changed


def test_parquet_with_typed_columns_reads_as_the_csv(tmp_path):
    table = hand_table()
    typed = table.assign(
        start=pd.to_datetime(table["start"]),
        end=pd.to_datetime(table["end"].replace("", None)),
        fee=table["fee"].astype(float),
    )
    typed.to_parquet(tmp_path / "subs.parquet")
    table.to_csv(tmp_path / "subs.csv", index=False)
    from_parquet = load_subscriptions(tmp_path / "subs.parquet", COLUMNS).frame
    from_csv = load_subscriptions(tmp_path / "subs.csv", COLUMNS).frame
    pd.testing.assert_frame_equal(from_parquet, from_csv)
    assert from_csv["end"].isna().tolist() == [False, False, True, True, False]
