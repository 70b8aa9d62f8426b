"""Time-invariant covariates through ``crmvalue train`` and ``crmvalue predict`` (issue 16, part 2).

The data are drawn from BG/NBD with a covariate that truly matters: the gold segment buys
exp(1.5) = 4.5 times as often as silver (dropout does not depend on it). A short calibration period
(four months, then twenty months of holdout) leaves the history weak, so knowing the segment helps.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_config
from scipy.special import hyp2f1

from crmvalue.models import BetaGeoModel, BetaGeoParams, GammaGammaParams, ValueModel
from crmvalue.models.bgnbd_covariates import per_customer_params
from crmvalue.pipeline import train
from crmvalue.simulate import simulate_transactions
from crmvalue.tracking.writer import InMemoryRunWriter

TRUE = BetaGeoParams(2.0, 200.0, 0.8, 2.5)  # per day; gold's rate is exp(1.5) times silver's
GOLD_EFFECT = 1.5
N = 2000
SETTINGS = {
    "calibration_end": "2020-04-30",
    "observation_end": "2021-12-31",
    "churn": {"enabled": False},
    "analyses": {"enabled": False},
}


def _data(folder):
    rng = np.random.default_rng(1)
    gold = (rng.uniform(size=N) < 0.5).astype(float)[:, None]
    own = per_customer_params(TRUE, [GOLD_EFFECT], [0.0], gold, gold)
    tx = simulate_transactions(N, own, GammaGammaParams(6.0, 4.0, 15.0), acquisition_days=90, seed=1)
    tx.to_csv(folder / "tx.csv", index=False)
    ids = [f"C{i:04d}" for i in range(N)]
    customers = pd.DataFrame({"customer_id": ids, "segment": np.where(gold[:, 0] > 0, "gold", "silver")})
    customers.to_csv(folder / "customers.csv", index=False)
    # two customers without a purchase: crmvalue predict scores them by the prospective expectation
    new = pd.DataFrame({"customer_id": ["N1", "N2"], "segment": ["gold", "silver"]})
    pd.concat([customers, new]).to_csv(folder / "customers_new.csv", index=False)
    return tx


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The run with ``segment`` as covariate (MLflow), and the same run without it (in memory)."""
    tmp = tmp_path_factory.mktemp("covariates")
    _data(tmp)
    data = {"source": str(tmp / "tx.csv"), "customers": str(tmp / "customers.csv")}
    cfg = synthetic_config(tmp, name="covariates", data=data, **SETTINGS)
    with_covariate = train(cfg.model_copy(update={"model": cfg.model.model_copy(update={"covariates": _segment()})}))
    plain = synthetic_config(tmp, name="plain", data=data, out=str(tmp / "plain.csv"), **SETTINGS)
    without = train(plain, writer=InMemoryRunWriter())
    return tmp, cfg, with_covariate, without


def _segment():
    from crmvalue.config import CovariatesConfig

    return CovariatesConfig(purchase=["segment"], dropout=["segment"])


def test_coefficients_are_logged_by_name_and_recover_the_truth(runs):
    tmp, cfg, result, _ = runs
    run = mlflow.tracking.MlflowClient(cfg.tracking_uri).get_run(result.run_id)
    params, metrics = run.data.params, run.data.metrics
    assert {"bgnbd.r", "bgnbd.alpha", "bgnbd.a", "bgnbd.b"} <= set(params)
    # gold is the reference level (first in sorted order): silver buys exp(-1.5) times as often
    purchase = float(params["bgnbd.purchase.segment.silver"])
    dropout = float(params["bgnbd.dropout.segment.silver"])
    se_purchase, se_dropout = metrics["bgnbd.se.purchase.segment.silver"], metrics["bgnbd.se.dropout.segment.silver"]
    assert abs(purchase + GOLD_EFFECT) < 3 * se_purchase < 0.5
    assert abs(dropout) < 3 * se_dropout
    lower, upper = (
        metrics["bgnbd.ci95_lower.purchase.segment.silver"],
        metrics["bgnbd.ci95_upper.purchase.segment.silver"],
    )
    assert lower == pytest.approx(purchase - 1.96 * se_purchase) and upper == pytest.approx(
        purchase + 1.96 * se_purchase
    )
    assert float(params["evaluation.bgnbd.purchase.segment.silver"]) < 0  # the calibration fit's, too
    assert result.value_model.gamma_purchase == (purchase,)


def test_likelihood_ratio_test_against_the_model_without_covariates(runs):
    tmp, cfg, result, _ = runs
    m = result.metrics
    summary = result.predictions.set_index("customer_id")
    plain = BetaGeoModel().fit(summary["frequency"], summary["recency"], summary["T"])
    statistic = 2 * (m["final.bgnbd.log_likelihood"] - plain.log_likelihood_)
    assert m["final.bgnbd.lr_test.statistic"] == pytest.approx(statistic, rel=1e-9)
    assert m["final.bgnbd.lr_test.df"] == 2.0
    assert statistic > 100 and m["final.bgnbd.lr_test.p_value"] < 1e-20


def test_holdout_is_better_with_the_covariate(runs):
    _, _, result, without = runs
    m, plain = result.metrics, without.metrics
    assert m["holdout.customers"] == plain["holdout.customers"] > 1000
    assert m["holdout.actual_total"] == plain["holdout.actual_total"]
    assert m["holdout.rmse"] < plain["holdout.rmse"]
    assert m["holdout.mae"] < plain["holdout.mae"]
    # the same baseline beside both
    assert m["baseline.naive_rate.holdout.rmse"] == plain["baseline.naive_rate.holdout.rmse"]


def test_the_saved_model_round_trips_with_its_coding(runs):
    tmp, cfg, result, _ = runs
    saved = json.loads((tmp / "models" / "covariates" / "value_model.json").read_text())
    assert saved["covariates"]["levels"] == {"segment": ["gold", "silver"]}
    model = ValueModel.from_dict(saved)
    assert model == result.value_model and model.covariates is not None
    assert model.covariates.names("purchase") == ["segment[silver]"]
    old = {k: v for k, v in saved.items() if k != "covariates"}  # a model saved before covariates
    assert ValueModel.from_dict(old).covariates is None


def test_predict_reproduces_train_and_scores_new_customers(runs, crmvalue_main):
    tmp, cfg, result, _ = runs
    out = tmp / "predicted.csv"
    done = crmvalue_main(
        "predict",
        "--model",
        f"runs:/{result.run_id}/value_model",
        "--data",
        tmp / "tx.csv",
        "--observation-end",
        "2021-12-31",
        "--out",
        out,
        "--customers",
        tmp / "customers_new.csv",
        "--tracking-uri",
        cfg.tracking_uri,
        "-q",
    )
    assert done.returncode == 0, done.stderr
    assert "new customers   2 without a purchase" in done.stdout
    scored = pd.read_csv(out, dtype={"customer_id": str})
    trained = pd.read_csv(cfg.output_path, dtype={"customer_id": str})
    observed = scored[scored["history"] == "observed"].drop(columns=["history", "run_id"])
    pd.testing.assert_frame_equal(observed.reset_index(drop=True), trained.drop(columns="run_id"))

    # the new customers by hand: BG/NBD's E[X(t)] (FHL 2005, eq. 9) with each segment's own alpha, a, b
    new = scored[scored["history"] == "none"].set_index("customer_id")
    model = result.value_model
    r, alpha, a, b = (model.purchase.as_dict()[k] for k in ("r", "alpha", "a", "b"))
    g_p, g_d = model.gamma_purchase[0], model.gamma_dropout[0]
    gg = model.gamma_gamma
    spend = gg.p * gg.v / (gg.q - 1)
    for customer, silver in (("N1", 0.0), ("N2", 1.0)):
        alpha_i, a_i, b_i = alpha * np.exp(-g_p * silver), a * np.exp(g_d * silver), b * np.exp(g_d * silver)

        def purchases(t, alpha_i=alpha_i, a_i=a_i, b_i=b_i):
            z = t / (alpha_i + t)
            return (a_i + b_i - 1) / (a_i - 1) * (1 - (alpha_i / (alpha_i + t)) ** r * hyp2f1(r, b_i, a_i + b_i - 1, z))

        row = new.loc[customer]
        assert row["p_alive"] == 1.0 and row["orders"] == 0 and row["frequency"] == 0
        assert row["expected_purchases"] == pytest.approx(purchases(90.0), rel=1e-9)
        assert row["expected_avg_value"] == pytest.approx(spend, abs=0.005)
        clv = spend * sum((purchases(30.0 * m) - purchases(30.0 * (m - 1))) / 1.01**m for m in range(1, 13))
        assert row["clv"] == pytest.approx(clv, abs=0.005)
    assert new.loc["N1", "expected_purchases"] > 2.5 * new.loc["N2", "expected_purchases"]  # gold buys more


def _one_line_error(done, *words):
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_an_unseen_level_at_predict_is_a_one_line_error(runs, crmvalue_main):
    tmp, cfg, result, _ = runs
    table = pd.read_csv(tmp / "customers.csv")
    table.loc[3, "segment"] = "platinum"
    table.to_csv(tmp / "customers_platinum.csv", index=False)
    done = crmvalue_main(
        *("predict", "--model", f"runs:/{result.run_id}/value_model", "--data", tmp / "tx.csv"),
        *("--observation-end", "2021-12-31", "--out", tmp / "never.csv", "-q"),
        *("--customers", tmp / "customers_platinum.csv", "--tracking-uri", cfg.tracking_uri),
    )
    _one_line_error(done, "customers_platinum.csv", "'segment'", "'platinum'", "'C0003'", "'gold', 'silver'")
    assert not (tmp / "never.csv").exists()


@pytest.mark.parametrize(
    "change, words",
    [
        ("drop", ["customers_bad.csv", "'C0005'", "not in the customer table"]),
        ("blank", ["customers_bad.csv", "'segment'", "missing for customer 'C0005'"]),
        ("intervals", ["intervals are not available with covariates yet"]),
    ],
)
def test_bad_covariate_input_is_a_one_line_error_at_train(runs, crmvalue_main, change, words):
    tmp, cfg, _, _ = runs
    table = pd.read_csv(tmp / "customers.csv")
    if change == "drop":
        table = table.drop(index=5)
    elif change == "blank":
        table.loc[5, "segment"] = None
    table.to_csv(tmp / "customers_bad.csv", index=False)
    done = crmvalue_main(
        *("train", "--data", tmp / "tx.csv", "--customers", tmp / "customers_bad.csv", "--covariates", "segment"),
        *("--calibration-end", "2020-04-30", "--no-churn", "--out", tmp / "never.csv", "-q"),
        *("--tracking-uri", f"sqlite:///{tmp}/errors.db", *(["--intervals"] if change == "intervals" else [])),
    )
    _one_line_error(done, *words)
    assert not (tmp / "never.csv").exists()


def test_the_saved_coding_is_design_matrix_coding_and_refuses_unseen_levels():
    from crmvalue.errors import CrmvalueError
    from crmvalue.models.coding import CovariateCoding
    from crmvalue.models.covariates import design_matrix

    table = pd.DataFrame(
        {"age": [30.0, 41.5, 52.0, 29.0], "channel": pd.Categorical(["web", "shop", "app", "web"])},
        index=pd.Index(["a", "b", "c", "d"], name="customer_id"),
    )
    coding = CovariateCoding.from_dict(
        json.loads(json.dumps(CovariateCoding.learn(table, ["age", "channel"], ["channel"], "t.csv").to_dict()))
    )
    assert coding.levels == {"channel": ("app", "shop", "web")}  # app, first in sorted order, is the reference
    zp, zd = coding.matrices(table, pd.Index(["d", "a", "c"]), "t.csv")
    expected, names = design_matrix(table, ["age", "channel"], "t.csv")
    np.testing.assert_array_equal(zp, expected[[3, 0, 2]])
    assert names == coding.names("purchase") == ["age", "channel[shop]", "channel[web]"]
    np.testing.assert_array_equal(zd, [[0.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    # a new table with a single level still codes against the training levels
    one = pd.DataFrame({"age": [60.0], "channel": ["shop"]}, index=pd.Index(["e"]))
    np.testing.assert_array_equal(coding.matrices(one, pd.Index(["e"]), "new.csv")[0], [[60.0, 1.0, 0.0]])
    with pytest.raises(CrmvalueError, match=r"new.csv: covariate 'channel' has the level 'mail' \(customer 'e'\)"):
        coding.matrices(one.assign(channel=["mail"]), pd.Index(["e"]), "new.csv")


def test_the_run_logs_the_covariate_fits_diagnostics(runs):
    tmp, cfg, result, _ = runs
    client = mlflow.tracking.MlflowClient(cfg.tracking_uri)
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    tables = {a.path for a in client.list_artifacts(result.run_id, "diagnostics")}
    assert {"plots/period_transactions.png", "plots/tracking.png"} <= plots
    assert not {"plots/p_alive_matrix.png", "plots/expected_purchases_matrix.png"} & plots  # one per customer
    assert {"diagnostics/period_transactions.csv", "diagnostics/tracking.csv"} <= tables
    tracking = pd.read_csv(client.download_artifacts(result.run_id, "diagnostics/tracking.csv", str(tmp)))
    last = tracking.iloc[-1]  # the covariate fit tracks the simulated customers' repeat purchases to the end
    assert last["expected_cumulative"] == pytest.approx(last["actual_cumulative"], rel=0.1)
