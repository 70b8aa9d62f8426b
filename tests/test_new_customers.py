"""Pareto/NBD's DERT column, and ``crmvalue predict`` scoring customers without a purchase (issue 16, parts 1 and 5).

A customer of the customer table with no purchase is scored by the prospective expectation for a customer
acquired at the scoring date; the numbers are checked by hand against the Pareto/NBD formulas (Fader, Hardie
and Lee 2005) and a numerical integral for DERT.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import simulated_transactions, synthetic_config
from scipy.integrate import quad

from crmvalue.models import GammaGammaParams, ParetoNBDParams, ValueModel
from crmvalue.models.value import continuous_discount_rate
from crmvalue.pipeline import train

SETTINGS = {"churn": {"enabled": False}, "analyses": {"enabled": False}, "model": {"purchase_model": "paretonbd"}}


@pytest.fixture(scope="module")
def pareto_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pareto")
    tx = simulated_transactions(n_customers=400, seed=4)
    tx.to_csv(tmp / "tx.csv", index=False)
    ids = sorted(tx["customer_id"].unique())
    table = pd.DataFrame({"customer_id": [*ids, "N1", "N2"], "region": ["north", "south"] * (len(ids) // 2 + 1)})
    table.to_csv(tmp / "customers.csv", index=False)
    cfg = synthetic_config(tmp, name="pareto", data={"source": str(tmp / "tx.csv")}, **SETTINGS)
    return tmp, cfg, train(cfg)


def test_the_dert_column_is_paretonbds_dert_at_the_monthly_rate(pareto_run):
    _, cfg, result = pareto_run
    p = result.predictions
    params = result.value_model.purchase
    assert isinstance(params, ParetoNBDParams)
    # 1% a month of 30 days, continuously: delta = log(1.01) / 30 per day
    delta = continuous_discount_rate(0.01, "days")
    assert delta == pytest.approx(np.log(1.01) / 30, rel=1e-15)
    expected = params.dert(delta, p["frequency"], p["recency"], p["T"])
    np.testing.assert_allclose(p["dert"], expected, rtol=1e-12)
    columns = list(pd.read_csv(cfg.output_path, nrows=1).columns)
    assert columns[columns.index("clv") + 1] == "dert"
    assert "history" not in columns  # train scores the transactions' customers only


def test_new_customers_get_the_prospective_expectation(pareto_run, crmvalue_main):
    tmp, cfg, result = pareto_run
    out = tmp / "scored.csv"
    done = crmvalue_main(
        *("predict", "--model", f"runs:/{result.run_id}/value_model", "--data", tmp / "tx.csv"),
        *("--observation-end", "2021-12-31", "--out", out, "--customers", tmp / "customers.csv"),
        *("--tracking-uri", cfg.tracking_uri, "-q"),
    )
    assert done.returncode == 0, done.stderr
    assert "new customers   2 without a purchase" in done.stdout
    scored = pd.read_csv(out, dtype={"customer_id": str}).set_index("customer_id")
    assert (scored["history"] == "none").sum() == 2 and len(scored) == len(result.predictions) + 2
    columns = list(scored.columns)
    assert columns[columns.index("quadrant") + 1] == "history"

    model = result.value_model
    r, alpha, s, beta = (model.purchase.as_dict()[k] for k in ("r", "alpha", "s", "beta"))
    gg = model.gamma_gamma

    def purchases(t):  # E[X(t)] of a new customer, Fader-Hardie-Lee (2005), per day
        return r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1))

    delta = np.log(1.01) / 30
    dert = r / alpha * quad(lambda t: np.exp(-delta * t) * (beta / (beta + t)) ** s, 0, np.inf)[0]
    spend = gg.p * gg.v / (gg.q - 1)
    clv = spend * sum((purchases(30.0 * m) - purchases(30.0 * (m - 1))) / 1.01**m for m in range(1, 13))
    for customer in ("N1", "N2"):
        row = scored.loc[customer]
        assert row["p_alive"] == 1.0 and row["orders"] == 0 and row["current_value"] == 0
        assert pd.isna(row["first_purchase"]) and row["tenure_days"] == 0
        assert row["expected_purchases"] == pytest.approx(purchases(90.0), rel=1e-9)
        assert row["expected_avg_value"] == pytest.approx(spend, abs=0.005)
        assert row["expected_revenue"] == pytest.approx(purchases(90.0) * spend, abs=0.005)
        assert row["clv"] == pytest.approx(clv, abs=0.005) and row["potential_value"] == row["clv"]
        assert row["dert"] == pytest.approx(dert, rel=1e-7)
    # the customers with a history are scored exactly as train scored them
    observed = scored[scored["history"] == "observed"].drop(columns=["history", "run_id"])
    trained = pd.read_csv(cfg.output_path, dtype={"customer_id": str}).set_index("customer_id")
    pd.testing.assert_frame_equal(observed, trained.drop(columns="run_id"))


def test_without_a_customer_table_predict_scores_as_before(pareto_run):
    from crmvalue.predict import predict

    tmp, cfg, result = pareto_run
    scored = predict(
        f"runs:/{result.run_id}/value_model",
        tmp / "tx.csv",
        "2021-12-31",
        tmp / "plain.csv",
        tracking_uri=cfg.tracking_uri,
    ).predictions
    assert "history" not in scored and len(scored) == len(result.predictions)


def test_prospective_scores_of_a_saved_model_need_no_history():
    model = ValueModel.from_dict(
        {
            "purchase_model": "paretonbd",
            "purchase_params": {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669},  # FHL 2005, CDNOW, weeks
            "gamma_gamma": {"p": 6.25, "q": 3.74, "v": 15.44},
            "time_unit": "weeks",
            "horizon_days": 364,
            "clv_months": 12,
            "discount_rate": 0.01,
        }
    )
    new = model.predict_new(pd.Index(["a"]))
    # E[X(52)] = r beta / (alpha (s - 1)) [1 - (beta / (beta + 52))^(s - 1)] with the published parameters
    r, alpha, s, beta = 0.553, 10.578, 0.606, 11.669
    assert new.loc["a", "expected_purchases"] == pytest.approx(
        r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + 52)) ** (s - 1)), rel=1e-12
    )
    assert new.loc["a", "expected_avg_value"] == pytest.approx(6.25 * 15.44 / 2.74, rel=1e-12)


def test_pareto_nbd_with_covariates_scores_each_customer_with_her_own_parameters():
    from crmvalue.models.coding import CovariateCoding
    from crmvalue.models.paretonbd_covariates import ParetoNBDCovariateModel

    rng = np.random.default_rng(2)
    gold = (rng.uniform(size=1500) < 0.5).astype(float)[:, None]
    own = ParetoNBDCovariateModel.own_params(ParetoNBDParams(0.55, 10.6, 0.6, 11.7), [1.0], [0.5], gold, gold)
    summary = own.simulate_summary(rng.uniform(30, 78, len(gold)), seed=3)
    x, t_x, T = summary["frequency"], summary["recency"], summary["T"]
    fit = ParetoNBDCovariateModel().fit(x, t_x, T, gold, gold)
    table = pd.DataFrame({"segment": np.where(gold[:, 0] > 0, "gold", "basic")}, index=[f"c{i}" for i in range(1500)])
    coding = CovariateCoding.learn(table, ["segment"], ["segment"], "customers.csv")  # basic is the reference
    model = ValueModel(fit.params_, GammaGammaParams(6.25, 3.74, 15.44), "weeks", 90, 12, 0.01)
    model = model.with_covariates(coding, fit.gamma_purchase_, fit.gamma_dropout_)
    scored = model.predict(summary.assign(monetary_value=20.0).set_index(table.index), table)
    params = fit.customer_params(len(gold), gold, gold)
    delta = np.log(1.01) / 4.345
    np.testing.assert_allclose(scored["dert"], params.dert(delta, x, t_x, T), rtol=1e-9)
    np.testing.assert_allclose(scored["p_alive"], fit.p_alive(x, t_x, T, gold, gold), rtol=1e-9)
    new = model.predict_new(pd.Index(["c0", "c1"]), table)
    for customer in ("c0", "c1"):
        z = [[1.0 if table.loc[customer, "segment"] == "gold" else 0.0]]
        mine = fit.customer_params(1, z, z)
        assert new.loc[customer, "expected_purchases"] == pytest.approx(
            float(mine.expected_purchases_unconditional(90 / 7)[0]), rel=1e-9
        )
