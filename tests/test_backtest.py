"""``crmvalue backtest``: the cut-offs, what a cut-off may see (leakage), the baselines by hand, the
summary over cut-offs, the MLflow run and the report section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import simulated_transactions

from crmvalue.backtest import CANDIDATES, BacktestConfig, backtest, build_candidates, cutoff_actuals, days_until
from crmvalue.backtest.candidates import (
    INTERVAL_COLUMNS,
    BtydCandidate,
    LastHorizonCandidate,
    NaiveCandidate,
    candidate_names,
    interval_model,
)
from crmvalue.backtest.config import with_overrides
from crmvalue.backtest.cutoffs import rolling_cutoffs
from crmvalue.backtest.run import checked_predictions, predict_at
from crmvalue.config import load_config
from crmvalue.customer_days import customer_days, day_number
from crmvalue.errors import CrmvalueError
from crmvalue.features import mean_purchase_amount, rfm_summary
from crmvalue.models import BetaGeoModel, GammaGammaModel, ValueModel
from crmvalue.models.predictive import predictive_intervals

CUTOFF = pd.Timestamp("2021-03-31")


@pytest.fixture
def tiny_log() -> pd.DataFrame:
    rows = [
        ("A", "2021-01-01", 10.0),
        ("A", "2021-03-01", 20.0),  # the day before the last horizon's window (it starts after 03-01)
        ("A", "2021-03-31 18:00", 30.0),  # on the cut-off day: seen
        ("A", "2021-04-10", 40.0),
        ("A", "2021-04-10 12:00", 5.0),  # the same day: one purchase day of 45
        ("A", "2021-04-20", -15.0),  # a return on a day of its own: revenue, not a purchase
        ("A", "2021-05-15", 100.0),  # after the horizon (2021-04-30)
        ("B", "2021-02-01", 50.0),
        ("B", "2021-04-30", 25.0),  # on the horizon's last day: counted
        ("C", "2021-04-05", 70.0),  # first seen after the cut-off: not scored
        ("D", "2021-03-10", -5.0),  # only a return by the cut-off: no purchase, not scored
        ("D", "2021-04-02", 60.0),
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    return frame.assign(date=pd.to_datetime(frame["date"], format="ISO8601"))


def test_actuals_by_hand(tiny_log):
    actuals = cutoff_actuals(customer_days(tiny_log), CUTOFF, 30, "days")
    assert actuals.index.tolist() == ["A", "B"]
    assert actuals["frequency"].tolist() == [2.0, 0.0]
    assert actuals["actual_purchases"].tolist() == [1.0, 1.0]  # A: 04-10 (the return day is no purchase)
    assert actuals["actual_revenue"].tolist() == [45.0 - 15.0, 25.0]


def test_baselines_by_hand(tiny_log):
    seen = days_until(customer_days(tiny_log), CUTOFF)
    naive = NaiveCandidate("days").fit_predict(seen, CUTOFF, 30)
    # A: 2 repeat days in T = 89 days, at the mean repeat amount (20 + 30) / 2 = 25; B: no repeat, 0
    assert naive["expected_purchases"].tolist() == pytest.approx([2 / 89 * 30, 0.0])
    assert naive["expected_revenue"].tolist() == pytest.approx([2 / 89 * 30 * 25, 0.0])
    last = LastHorizonCandidate().fit_predict(seen, CUTOFF, 30)
    # the window (03-01, 03-31]: A bought once (30); B nothing; D's return there does not make D scored
    assert last.index.tolist() == ["A", "B"]
    assert last["expected_purchases"].tolist() == [1.0, 0.0]
    assert last["expected_revenue"].tolist() == [30.0, 0.0]


def test_days_until_keeps_nothing_after_the_cutoff(tiny_log):
    days = customer_days(tiny_log)
    seen = days_until(days, CUTOFF)
    assert seen.day.max() == day_number(CUTOFF)
    assert seen.ids.tolist() == ["A", "B", "D"]  # C's id is not known yet
    assert seen.amount.tolist() == [10.0, 20.0, 30.0, 50.0, -5.0]
    assert seen.ids[seen.customer].tolist() == ["A", "A", "A", "B", "D"]


def test_cutoffs_by_hand_and_refused():
    days = customer_days(simulated_transactions(n_customers=50, seed=1))  # 2020-01-01 .. 2021-12-31
    got = rolling_cutoffs(days, "2021-12-31", 60, 3, 60, 90)
    assert [str(c.date()) for c in got] == ["2021-07-04", "2021-09-02", "2021-11-01"]  # the last: 12-31 - 60 days
    with pytest.raises(
        CrmvalueError,
        match=r"is 2020-01-11 .*, before 2020-04-01, the first purchase 2020-01-02 \+ backtest.min_history_days 90: use fewer",
    ):
        rolling_cutoffs(days, "2021-12-31", 60, 12, 60, 90)
    with pytest.raises(CrmvalueError, match="the only cut-off is 2020-01-02"):
        rolling_cutoffs(days, "2020-04-01", 90, 1, 90, 1)  # the first purchase is on 2020-01-01 or later
    with pytest.raises(CrmvalueError, match=r"backtest.cutoffs: .*greater than or equal to 1 \(got 0\)"):
        with_overrides(BacktestConfig(), {"cutoffs": 0, "models": None})
    assert with_overrides(BacktestConfig(), {"step_days": 30}).step_days == 30


def test_candidate_names():
    assert candidate_names(None)[:5] == ["bgnbd_gg", "mbgnbd_gg", "paretonbd_gg", "naive", "last_horizon"]
    assert candidate_names(["naive", "bgnbd_gg"]) == ["naive", "bgnbd_gg"]
    with pytest.raises(CrmvalueError, match="unknown backtest candidate 'nope'; choose from bgnbd_gg, mbgnbd_gg"):
        candidate_names(["naive", "nope"])


@pytest.fixture(scope="module")
def simulated():
    return simulated_transactions(n_customers=400, seed=4)


@pytest.fixture(scope="module")
def config():
    return load_config(None, {"time_unit": "days", "horizon_days": 60})


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_no_candidate_sees_past_its_cutoff(simulated, config, name):
    """Every candidate's predictions at a cut-off are unchanged when everything after the cut-off is
    rewritten (half dropped, amounts tripled, dates moved, a new customer added); the actuals are not."""
    cutoff = pd.Timestamp("2021-06-30")
    later = simulated["date"].dt.normalize() > cutoff
    changed = pd.concat(
        [
            simulated[~later],
            simulated[later]
            .iloc[::2]
            .assign(amount=lambda d: d["amount"] * 3, date=lambda d: d["date"] + pd.Timedelta(days=9)),
            pd.DataFrame({"customer_id": ["NEW"], "date": [cutoff + pd.Timedelta(days=1)], "amount": [1.0]}),
        ]
    )
    candidate = CANDIDATES[name](config)
    before = predict_at(candidate, customer_days(simulated), cutoff, 60)
    after = predict_at(candidate, customer_days(changed), cutoff, 60)
    pd.testing.assert_frame_equal(before, after)
    actual = cutoff_actuals(customer_days(simulated), cutoff, 60, "days")
    assert not actual.equals(cutoff_actuals(customer_days(changed), cutoff, 60, "days"))


class Spy:
    """A candidate that records the last day it was shown at each cut-off, and predicts 1 for everyone."""

    name = "spy"

    def __init__(self, fail_on: pd.Timestamp | None = None):
        self.seen: dict[pd.Timestamp, int] = {}
        self.fail_on = fail_on

    def fit_predict(self, days, cutoff, horizon_days):
        self.seen[cutoff] = int(days.day.max())
        if cutoff == self.fail_on:
            raise CrmvalueError("did not converge")
        index = rfm_summary(days, cutoff).index
        return pd.DataFrame({"expected_purchases": 1.0, "expected_revenue": 1.0}, index=index)


@pytest.fixture(scope="module")
def run(simulated, config):
    spy = Spy()
    candidates = {**build_candidates(config, ["bgnbd_gg", "naive", "last_horizon"]), "spy": spy}
    return backtest(customer_days(simulated), "2021-12-31", 60, "days", candidates, cutoffs=3, step_days=60), spy


def test_the_backtest_shows_each_candidate_only_its_past(run, simulated):
    result, spy = run
    assert [str(c.date()) for c in result.cutoffs] == ["2021-07-04", "2021-09-02", "2021-11-01"]
    days = customer_days(simulated).day
    # every day up to its cut-off, and none after
    assert spy.seen == {c: days[days <= day_number(c)].max() for c in result.cutoffs}
    assert result.models == ["bgnbd_gg", "naive", "last_horizon", "spy"]
    assert len(result.per_cutoff) == 12 and not result.errors


def test_summary_is_the_mean_and_sample_std_over_cutoffs(run, simulated):
    result, _ = run
    rows = result.per_cutoff[result.per_cutoff["model"] == "naive"]
    items = result.metric_items()
    assert items["backtest.naive.revenue.rmse.mean"] == pytest.approx(rows["revenue.rmse"].mean())
    assert items["backtest.naive.revenue.rmse.std"] == pytest.approx(np.std(rows["revenue.rmse"], ddof=1))
    # the spy predicts 1 for everyone: its revenue MAE is the mean |1 - actual| of the customers at each cut-off
    spy = result.per_cutoff[result.per_cutoff["model"] == "spy"].set_index("cutoff")
    days = customer_days(simulated)
    for cutoff in result.cutoffs:
        actual = cutoff_actuals(days, cutoff, 60, "days")["actual_revenue"]
        assert spy.loc[cutoff, "revenue.mae"] == pytest.approx(np.mean(np.abs(1 - actual)))
        assert spy.loc[cutoff, "customers"] == len(actual)
    assert items["backtest.spy.revenue.gini.mean"] == pytest.approx(0.0, abs=1e-12)  # a constant ranks no one
    assert "backtest.spy.revenue.spearman.mean" not in items  # undefined (NaN) for a constant: not logged
    table = result.mean_table(["revenue.rmse", "revenue.gini"])
    assert table.index.tolist() == result.models and table.columns.tolist() == ["revenue.rmse", "revenue.gini"]
    assert table.loc["naive", "revenue.rmse"] == items["backtest.naive.revenue.rmse.mean"]


def test_last_horizon_predicts_the_previous_cutoffs_actuals(run, simulated):
    """With the step equal to the horizon, the last-horizon baseline at one cut-off is what the customers
    did after the cut-off before: the two windows are the same days."""
    days = customer_days(simulated)
    earlier, later = run[0].cutoffs[1], run[0].cutoffs[2]
    actual = cutoff_actuals(days, earlier, 60, "days")
    predicted = predict_at(LastHorizonCandidate(), days, later, 60).loc[actual.index]
    assert predicted["expected_revenue"].to_numpy() == pytest.approx(actual["actual_revenue"].to_numpy())
    assert predicted["expected_purchases"].tolist() == actual["actual_purchases"].tolist()


def test_btyd_candidate_is_the_train_fit_at_the_cutoff(simulated):
    cutoff = pd.Timestamp("2021-06-30")
    got = predict_at(BtydCandidate("bgnbd", "days"), customer_days(simulated), cutoff, 60)
    summary = rfm_summary(simulated, cutoff, "days")  # the whole log, summarised at the cut-off
    purchase = BetaGeoModel().fit(summary["frequency"], summary["recency"], summary["T"])
    gg = GammaGammaModel().fit(
        summary["frequency"], summary["monetary_value"], mean_spend=mean_purchase_amount(simulated, cutoff)
    )
    scores = ValueModel(purchase.params_, gg.params_, "days", 60, 12, 0.01).predict(summary)
    assert got.index.equals(summary.index)
    assert got["expected_purchases"].to_numpy() == pytest.approx(scores["expected_purchases"].to_numpy(), rel=1e-12)
    expected = scores["expected_purchases"] * scores["expected_avg_value"]
    assert got["expected_revenue"].to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-12)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({}, "bgnbd"),  # the default purchase model
        ({"model.purchase_model": "paretonbd"}, "paretonbd"),
        ({"model.purchase_model": "auto"}, "bgnbd"),  # auto chooses on the training data: BG/NBD stands in
        ({"model.purchase_model": "auto", "model.candidates": ["mbgnbd", "paretonbd"]}, "mbgnbd"),
    ],
)
def test_only_the_btyd_candidate_train_would_export_has_intervals(model, expected):
    cfg = load_config(None, {"time_unit": "days", **model})
    assert interval_model(cfg) == expected
    built = build_candidates(cfg, ["bgnbd_gg", "mbgnbd_gg", "paretonbd_gg"])
    assert {name for name, c in built.items() if c.intervals is not None} == {f"{expected}_gg"}


def test_btyd_intervals_are_the_predictive_intervals_of_the_cutoffs_fits(simulated, config):
    """At the run's settings (config intervals: level, draws, seed), over the horizon in the time unit, with
    the fits' own covariances; and the model's probability of each interval comes along."""
    cutoff = pd.Timestamp("2021-06-30")
    cfg = config.model_copy(update={"intervals": config.intervals.model_copy(update={"level": 0.8, "draws": 30})})
    candidate = CANDIDATES["bgnbd_gg"](cfg)
    got = predict_at(candidate, customer_days(simulated), cutoff, 60)
    fitted, summary = BtydCandidate("bgnbd", "days").fit(days_until(customer_days(simulated), cutoff), cutoff, 60)
    expected = predictive_intervals(
        fitted.purchase.params_,
        fitted.purchase.log_param_covariance_,
        fitted.gamma_gamma.params_,
        fitted.gamma_gamma.log_param_covariance_,
        summary,
        60.0,
        level=0.8,
        draws=30,
        seed=cfg.intervals.seed,
        probabilities=True,
    )
    pd.testing.assert_frame_equal(got[expected.columns], expected)
    assert list(got.columns) == ["expected_purchases", "expected_revenue", *INTERVAL_COLUMNS]
    assert (got["purchases_probability"] >= 0.8 - 1e-9).all()


def test_the_backtest_reports_coverage_of_the_interval_candidate(run, simulated, config):
    """Observed coverage by hand at each cut-off, overall and by bucket, beside the coverage the model expects
    (the mean probability of its intervals); the baselines have no intervals."""
    result, _ = run
    rows = result.per_cutoff.set_index(["model", "cutoff"])
    days = customer_days(simulated)
    for cutoff in result.cutoffs:
        actual = cutoff_actuals(days, cutoff, 60, "days")
        got = predict_at(CANDIDATES["bgnbd_gg"](config), days, cutoff, 60).loc[actual.index]
        row = rows.loc[("bgnbd_gg", cutoff)]
        for quantity in ("purchases", "revenue"):
            a = actual[f"actual_{quantity}"]
            inside = (got[f"{quantity}_lower"] <= a) & (a <= got[f"{quantity}_upper"])
            assert row[f"{quantity}.coverage"] == pytest.approx(inside.mean())
            repeat = actual["frequency"] == 1
            assert row[f"{quantity}.coverage.1"] == pytest.approx(inside[repeat].mean())
            assert row[f"{quantity}.expected_coverage"] == pytest.approx(got[f"{quantity}_probability"].mean())
            assert 0.9 <= row[f"{quantity}.expected_coverage"] < 1.0
    assert rows.loc["naive"].filter(like="coverage").isna().all().all()
    assert "backtest.bgnbd_gg.revenue.expected_coverage.mean" in result.metric_items()


def test_a_failed_fit_is_recorded_and_the_others_go_on(simulated, caplog):
    days = customer_days(simulated)
    spy = Spy(fail_on=pd.Timestamp("2021-09-02"))
    got = backtest(days, "2021-12-31", 60, "days", {"naive": NaiveCandidate("days"), "spy": spy}, 3, 60)
    assert {c: pd.Timestamp(d, unit="D") <= c for c, d in spy.seen.items()} == dict.fromkeys(got.cutoffs, True)
    assert got.errors == {("2021-09-02", "spy"): "did not converge"}
    assert "spy at cut-off 2021-09-02 failed: did not converge" in caplog.text
    summary = got.summary().set_index(["model", "metric"])
    assert summary.loc[("spy", "revenue.rmse"), "cutoffs"] == 2
    assert summary.loc[("naive", "revenue.rmse"), "cutoffs"] == 3
    from crmvalue.cli.backtest import summary_text

    text = summary_text(got, "RUN", "sim")
    assert "failed     spy at 2021-09-02 (its means are over the 2 cut-offs where it ran): did not converge" in text


def test_a_prediction_without_every_customer_is_refused():
    customers = pd.Index(["a", "b", "c"], name="customer_id")
    partial = pd.DataFrame({"expected_revenue": [1.0, 2.0]}, index=["a", "b"])
    with pytest.raises(CrmvalueError, match=r"candidate x at cut-off 2021-03-31: no prediction for 1 of the 3 .*'c'"):
        checked_predictions("x", partial, customers, CUTOFF)
    got = checked_predictions(
        "x", pd.DataFrame({"expected_revenue": [3.0, 1.0, 2.0, 9.0]}, index=list("cabz")), customers, CUTOFF
    )
    assert got["expected_revenue"].tolist() == [1.0, 2.0, 3.0] and got["expected_purchases"].isna().all()


# --------------------------------------------------------------------------- the command, its run, the report


@pytest.fixture(scope="module")
def logged(tmp_path_factory, simulated):
    """``crmvalue backtest`` (in process) on the simulated log into a store of its own: what it printed
    and the store's URI."""
    import contextlib
    import io

    from crmvalue.cli import app

    tmp = tmp_path_factory.mktemp("backtest")
    simulated.to_csv(tmp / "tx.csv", index=False)
    uri = f"sqlite:///{tmp}/mlflow.db"
    args = ["backtest", "--data", str(tmp / "tx.csv"), "--name", "sim", "--observation-end", "2021-12-31"]
    args += ["--horizon-days", "60", "--cutoffs", "2", "--step-days", "60", "--models", "bgnbd_gg,naive", "-q"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        app([*args, "--tracking-uri", uri], standalone_mode=False)
    return out.getvalue(), uri


def test_the_command_prints_the_table_and_logs_parent_and_children(logged):
    from mlflow.tracking import MlflowClient

    from crmvalue.backtest.tracking import PER_CUTOFF_ARTIFACT

    out, uri = logged
    assert "cut-offs   2021-09-02, 2021-11-01; each scored on the next 60 days" in out
    header = next(line for line in out.splitlines() if line.startswith("metric "))
    assert header.split() == ["metric", "bgnbd_gg", "naive"]
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("sim")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`crmvalue.kind` = 'backtest'")
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted((c.data.tags["crmvalue.candidate"], c.data.tags["crmvalue.cutoff"]) for c in children) == [
        ("bgnbd_gg", "2021-09-02"),
        ("bgnbd_gg", "2021-11-01"),
        ("naive", "2021-09-02"),
        ("naive", "2021-11-01"),
    ]
    local = client.download_artifacts(parent.info.run_id, PER_CUTOFF_ARTIFACT)
    table = pd.read_csv(local)
    bgnbd = table[table["model"] == "bgnbd_gg"]["revenue.rmse"]
    metrics = parent.data.metrics
    assert metrics["backtest.bgnbd_gg.revenue.rmse.mean"] == pytest.approx(bgnbd.mean())
    assert metrics["backtest.bgnbd_gg.revenue.rmse.std"] == pytest.approx(bgnbd.std(ddof=1))
    child = next(c for c in children if c.data.tags["crmvalue.candidate"] == "bgnbd_gg")
    row = table[(table["model"] == "bgnbd_gg") & (table["cutoff"] == child.data.tags["crmvalue.cutoff"])]
    assert child.data.metrics["revenue.gini"] == pytest.approx(row["revenue.gini"].item())
    # the printed mean ± std is the logged one
    rmse = next(line for line in out.splitlines() if line.startswith("revenue.rmse "))
    assert f"{bgnbd.mean():,.3f} ± {bgnbd.std(ddof=1):,.3f}" in rmse
    assert parent.data.params["backtest.cutoff_dates"] == "2021-09-02,2021-11-01"
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "backtest")}
    assert {"backtest/revenue_rmse_by_cutoff.png", "backtest/decile_calibration.png", "backtest/summary.csv"} <= names


def test_the_report_section_shows_the_latest_backtest(logged):
    from crmvalue.report.backtest import backtest_section
    from crmvalue.report.run import ReportRun
    from crmvalue.tracking.reader import read_run

    _, uri = logged
    record = read_run("latest", "sim", uri, kinds=("backtest",))
    with record.artifacts() as art:
        anchor, title, html = backtest_section(ReportRun(record, art))
    assert anchor == "backtest" and record.run_id in html
    assert html.count("<img") == 3 and "<code>bgnbd_gg</code>" in html and "Normalized Gini" in html
    rmse = record.metrics["backtest.naive.revenue.rmse.mean"]
    std = record.metrics["backtest.naive.revenue.rmse.std"]
    assert f"{rmse:,.2f} ± {std:,.2f}" in html


def test_the_report_section_without_a_backtest(logged, tmp_path):
    import mlflow

    from crmvalue.report.backtest import backtest_section
    from crmvalue.report.run import ReportRun
    from crmvalue.tracking.reader import read_run

    _, uri = logged  # its store, in an experiment of its own
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("bare", artifact_location=(tmp_path / "art").as_uri()))
    client.set_terminated(run.info.run_id)
    record = read_run(run.info.run_id, tracking_uri=uri)
    with record.artifacts() as art:
        _, _, html = backtest_section(ReportRun(record, art))
    assert "No finished backtest in experiment <code>bare</code>" in html


def test_bad_flags_are_one_line(crmvalue_main, tmp_path, simulated):
    simulated.to_csv(tmp_path / "tx.csv", index=False)
    base = ["backtest", "--data", tmp_path / "tx.csv", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    done = crmvalue_main(*base, "--models", "bgnbd_gg,nope")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: unknown backtest candidate 'nope'; choose from")
    done = crmvalue_main(*base, "--cutoffs", "30", "-q")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: backtest: the first of 30 cut-offs") and "min_history_days" in last
    done = crmvalue_main(*base, "--step-days", "0")
    assert done.returncode == 2 and "backtest.step_days: Input should be greater than 0 (got 0)" in done.stderr
