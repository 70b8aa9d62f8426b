"""crmvalue.spark against the pandas path: the same summary, split, fit counts and scores.

One local[2] SparkSession for the whole run (starting Spark is most of the cost). The pandas
functions of crmvalue.features, tested against lifetimes and the published CDNOW figures in
test_features.py, are the oracle here.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import random_transactions

from crmvalue import features
from crmvalue.errors import CrmvalueError

pytest.importorskip("pyspark")
pytestmark = pytest.mark.spark

from crmvalue import spark as cs  # noqa: E402

OBS_END = "2020-10-31"
CAL_END = "2020-06-30"


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers run the interpreter of the tests
    session = (
        SparkSession.builder.master("local[2]")
        .appName("crmvalue-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")  # naive pandas timestamps are read as UTC
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def edge_case_transactions() -> pd.DataFrame:
    """Hand-made customers for each rule, on top of a random log with same-day repeats."""
    t = pd.Timestamp
    rows = [
        # same-day repeats: three rows on 2020-02-01 are one purchase of 30
        ("same", t("2020-01-10 09:00"), 10.0),
        ("same", t("2020-02-01 08:00"), 5.0),
        ("same", t("2020-02-01 12:00"), 10.0),
        ("same", t("2020-02-01 23:59"), 15.0),
        ("same", t("2020-03-01 00:00"), 50.0),
        # a return that cancels the day (net 0) and one that outweighs it (net -3): no purchase;
        # a partial return (net 15) is a purchase of 15
        ("ret", t("2020-01-05"), 20.0),
        ("ret", t("2020-02-05 10:00"), 12.5),
        ("ret", t("2020-02-05 18:00"), -12.5),
        ("ret", t("2020-03-05"), 5.0),
        ("ret", t("2020-03-05"), -8.0),
        ("ret", t("2020-04-05"), 25.0),
        ("ret", t("2020-04-05"), -10.0),
        # only cancelled days: not a customer
        ("void", t("2020-02-02"), 9.0),
        ("void", t("2020-02-02"), -9.0),
        # zero-amount days without a return are purchases (free items)
        ("free", t("2020-01-20"), 0.0),
        ("free", t("2020-05-20"), 0.0),
        ("free", t("2020-07-20"), 30.0),
        # rows after the observation end are ignored, even for the first purchase
        ("late", t("2020-09-01"), 40.0),
        ("late", t(OBS_END) + pd.Timedelta(hours=23), 7.0),
        ("late", t(OBS_END) + pd.Timedelta(days=1), 99.0),
        ("after", t(OBS_END) + pd.Timedelta(days=3), 10.0),
    ]
    edge = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    log = random_transactions(n_customers=300, seed=7, start="2020-01-01", days=330)
    rng = np.random.default_rng(7)
    # returns on random rows: full (-a: net 0), larger (-a-5: net < 0) or half (net a/2 > 0)
    picked = log.sample(60, random_state=7)
    factor = rng.choice([-1.0, -0.5], size=len(picked))
    returns = picked.assign(amount=picked["amount"] * factor - np.where(rng.random(len(picked)) < 0.3, 5.0, 0.0))
    zero_days = log.sample(20, random_state=8).assign(date=lambda f: f["date"] + pd.Timedelta(days=1), amount=0.0)
    return pd.concat([log, returns, zero_days, edge], ignore_index=True).sample(frac=1.0, random_state=9)


@pytest.fixture(scope="session")
def generated():
    return edge_case_transactions()


@pytest.fixture(scope="session")
def generated_sdf(spark, generated):
    return spark.createDataFrame(generated.rename(columns={"customer_id": "cust", "date": "ts", "amount": "net"}))


@pytest.fixture(scope="session")
def cdnow_sdf(spark, cdnow_sample):
    return spark.createDataFrame(cdnow_sample[["customer_id", "date", "amount"]])


def collected(frame) -> pd.DataFrame:
    """A Spark result as pandas, indexed and sorted by customer id like the pandas path."""
    return frame.toPandas().set_index("customer_id").sort_index()


def assert_same_summary(got: pd.DataFrame, expected: pd.DataFrame, exact: list[str]) -> None:
    assert list(got.index) == list(expected.index)
    assert list(got.columns) == list(expected.columns)
    for column in expected.columns:
        if column in exact:
            np.testing.assert_array_equal(got[column].to_numpy(), expected[column].to_numpy(), err_msg=column)
        else:
            np.testing.assert_allclose(
                got[column].to_numpy(), expected[column].to_numpy(), rtol=1e-12, atol=1e-12, err_msg=column
            )


def test_cdnow_summary_equals_pandas(cdnow_sdf, sample_summary):
    got = collected(cs.rfm_summary(cdnow_sdf, "1997-09-30", "weeks"))
    assert len(got) == 2357 and got["frequency"].gt(0).sum() == 946  # the papers' counts
    assert_same_summary(got, sample_summary, exact=["frequency", "recency", "T"])


@pytest.mark.parametrize("time_unit", ["days", "weeks"])
def test_generated_summary_equals_pandas(generated_sdf, generated, time_unit):
    expected = features.rfm_summary(generated, OBS_END, time_unit)
    got = collected(
        cs.rfm_summary(generated_sdf, OBS_END, time_unit, customer_col="cust", date_col="ts", amount_col="net")
    )
    assert_same_summary(got, expected, exact=["frequency", "recency", "T"])
    unit = features.DAYS_PER_UNIT[time_unit]
    # the rules, by hand: a same-day repeat is one purchase; cancelled days are none; free days count
    assert got.loc["same"].tolist() == [2.0, 51 / unit, 295 / unit, (30.0 + 50.0) / 2]
    assert got.loc["ret"].tolist() == [1.0, 91 / unit, 300 / unit, 15.0]
    assert got.loc["free"].tolist() == [2.0, 182 / unit, 285 / unit, 15.0]
    assert got.loc["late"].tolist() == [1.0, 60 / unit, 60 / unit, 7.0]
    assert "void" not in got.index and "after" not in got.index


def test_calibration_holdout_equals_pandas(cdnow_sdf, cdnow_sample, generated_sdf, generated):
    expected = features.calibration_holdout_summary(cdnow_sample, "1997-09-30", "1998-06-30", "weeks")
    got = collected(cs.calibration_holdout_summary(cdnow_sdf, "1997-09-30", "1998-06-30", "weeks"))
    assert expected["frequency_holdout"].sum() > 0
    assert_same_summary(
        got, expected, exact=["frequency_cal", "recency_cal", "T_cal", "frequency_holdout", "duration_holdout"]
    )

    expected = features.calibration_holdout_summary(generated, CAL_END, OBS_END, "days")
    got = collected(
        cs.calibration_holdout_summary(
            generated_sdf, CAL_END, OBS_END, "days", customer_col="cust", date_col="ts", amount_col="net"
        )
    )
    assert expected["frequency_holdout"].gt(0).sum() > 50 and expected["frequency_holdout"].eq(0).any()
    assert_same_summary(
        got, expected, exact=["frequency_cal", "recency_cal", "T_cal", "frequency_holdout", "duration_holdout"]
    )


@pytest.fixture(scope="session")
def cdnow_spark_summary(cdnow_sdf):
    return cs.rfm_summary(cdnow_sdf, "1997-09-30", "weeks").cache()


@pytest.fixture(scope="session")
def fit_counts(cdnow_spark_summary):
    return cs.collect_fit_counts(cdnow_spark_summary)


@pytest.fixture(scope="session")
def spark_value_model(fit_counts):
    return cs.fit_value_model(fit_counts, "weeks")


def test_compressed_counts_equal_pandas(fit_counts, sample_summary):
    counts = fit_counts
    expected = features.compress_rfm(sample_summary["frequency"], sample_summary["recency"], sample_summary["T"])
    assert len(counts.purchases) < len(sample_summary)
    pd.testing.assert_frame_equal(counts.purchases, expected, check_exact=False, rtol=1e-12)
    repeat = sample_summary[(sample_summary["frequency"] > 0) & (sample_summary["monetary_value"] > 0)]
    spend = repeat.groupby(["frequency", "monetary_value"]).size().rename("weights").reset_index()
    assert counts.spend["weights"].sum() == 946
    pd.testing.assert_frame_equal(counts.spend, spend, check_exact=False, rtol=1e-12)


def test_fit_on_the_driver_equals_the_pandas_fit(spark_value_model, sample_summary):
    from crmvalue.models import BetaGeoModel, GammaGammaModel

    local_purchase = BetaGeoModel().fit(sample_summary["frequency"], sample_summary["recency"], sample_summary["T"])
    local_spend = GammaGammaModel().fit(sample_summary["frequency"], sample_summary["monetary_value"])
    for got, expected in [
        (spark_value_model.purchase, local_purchase.params_),
        (spark_value_model.gamma_gamma, local_spend.params_),
    ]:
        np.testing.assert_allclose(list(got.as_dict().values()), list(expected.as_dict().values()), rtol=1e-6)
    # Fader, Hardie & Lee (2005): BG/NBD r, alpha, a, b and Gamma-Gamma p, q, gamma on CDNOW
    np.testing.assert_allclose(
        list(spark_value_model.purchase.as_dict().values()), [0.2426, 4.4136, 0.7929, 2.4259], rtol=1e-3
    )
    np.testing.assert_allclose(list(spark_value_model.gamma_gamma.as_dict().values()), [6.25, 3.74, 15.44], rtol=2e-3)


def test_spark_udf_scores_equal_local_predict(cdnow_spark_summary, spark_value_model, sample_summary, tmp_path):
    import mlflow

    from crmvalue.tracking import log_value_model, quiet_mlflow, use_experiment

    quiet_mlflow()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        use_experiment("spark-test", uri)
        with mlflow.start_run():
            model_uri = log_value_model(spark_value_model, sample_summary)
        # one partition: one Python worker imports MLflow, which is most of the test's time
        customers = cdnow_spark_summary.withColumn("segment", cdnow_spark_summary["frequency"] > 0).coalesce(1)
        scored = collected(cs.score_customers(customers, model_uri))
    finally:
        mlflow.set_tracking_uri(previous)
    expected = spark_value_model.predict(sample_summary)
    assert list(scored.columns) == ["frequency", "recency", "T", "monetary_value", "segment", *expected.columns]
    assert list(scored.index) == list(expected.index)
    assert expected["clv"].std() > 0
    for column in expected.columns:
        np.testing.assert_allclose(scored[column].to_numpy(), expected[column].to_numpy(), rtol=1e-10, err_msg=column)


def test_date_types_give_calendar_days(spark):
    """A date, a timestamp_ntz and a timestamp (its UTC day, whatever the session zone) give one summary."""
    from pyspark.sql.types import DateType, DoubleType, StringType, StructField, StructType, TimestampNTZType

    local = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b"],
            "date": pd.to_datetime(
                ["2021-01-01 23:30", "2021-01-02 00:10", "2021-01-09 12:00", "2021-01-03 00:00", "2021-01-05 23:59"]
            ),
            "amount": [10.0, 5.0, 20.0, 7.0, 3.0],
        }
    )
    expected = features.rfm_summary(local, "2021-01-10", "days")
    assert expected.loc["a", "frequency"] == 2  # 23:30 and 00:10 fall on two days

    def schema(kind):
        return StructType(
            [StructField("customer_id", StringType()), StructField("date", kind), StructField("amount", DoubleType())]
        )

    rows = list(local.itertuples(index=False, name=None))
    variants = {
        "timestamp": spark.createDataFrame(local),  # instants, read as UTC (the session zone here)
        "timestamp_ntz": spark.createDataFrame(
            [(c, d.to_pydatetime(), a) for c, d, a in rows], schema(TimestampNTZType())
        ),
        "date": spark.createDataFrame([(c, d.date(), a) for c, d, a in rows], schema(DateType())),
    }
    spark.conf.set("spark.sql.session.timeZone", "Asia/Tokyo")  # 9 hours ahead: 23:30 UTC is the next day there
    try:
        for _name, frame in variants.items():
            got = collected(cs.rfm_summary(frame, "2021-01-10", validate=False))
            assert_same_summary(got, expected, exact=list(expected.columns))
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")


def test_integer_ids_are_text(spark):
    local = pd.DataFrame(
        {
            "customer_id": ["12", "12", "7"],
            "date": pd.to_datetime(["2021-01-01", "2021-01-04", "2021-01-02"]),
            "amount": [1.0, 2.0, 3.0],
        }
    )
    frame = spark.createDataFrame(local.assign(customer_id=local["customer_id"].astype("int64")))
    got = collected(cs.rfm_summary(frame, "2021-01-05"))
    assert_same_summary(
        got, features.rfm_summary(local, "2021-01-05"), exact=["frequency", "recency", "T", "monetary_value"]
    )


def test_bad_input_is_one_line(spark, generated_sdf, cdnow_spark_summary):
    from pyspark.sql import functions as F

    names = {"customer_col": "cust", "date_col": "ts", "amount_col": "net"}
    bad = [
        (lambda: cs.rfm_summary(generated_sdf, OBS_END), "missing column 'customer_id'"),
        (
            lambda: cs.rfm_summary(generated_sdf.withColumn("ts", F.date_format("ts", "yyyy-MM-dd")), OBS_END, **names),
            "column 'ts' is string; expected date",
        ),
        (
            lambda: cs.rfm_summary(generated_sdf.withColumn("net", F.col("net") > 0), OBS_END, **names),
            "column 'net' is boolean",
        ),
        (
            lambda: cs.rfm_summary(generated_sdf.withColumn("cust", F.lit(1.5)), OBS_END, **names),
            "column 'cust' is double",
        ),
        (
            lambda: cs.rfm_summary(
                generated_sdf.withColumn("net", F.when(F.col("cust") == "ret", F.lit(None)).otherwise(F.col("net"))),
                OBS_END,
                **names,
            ),
            "column 'net' has 7 missing or non-finite values (e.g. customer 'ret')",
        ),
        (lambda: cs.rfm_summary(generated_sdf, OBS_END, "months", **names), "unknown time unit 'months'"),
        (
            lambda: cs.calibration_holdout_summary(generated_sdf, OBS_END, CAL_END, **names),
            "must be before observation end",
        ),
        (lambda: cs.score_customers(cdnow_spark_summary.drop("T"), "models:/unused"), "customers: missing column 'T'"),
        (
            lambda: cs.fit_value_model(cdnow_spark_summary, "weeks", purchase_model="pareto"),
            "unknown purchase model 'pareto'",
        ),
    ]
    for call, message in bad:
        with pytest.raises(CrmvalueError) as info:
            call()
        assert message in str(info.value)
        assert "\n" not in str(info.value)


def test_importing_crmvalue_spark_needs_no_pyspark():
    import subprocess

    code = "import sys; sys.modules['pyspark'] = None; import crmvalue.spark; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
