"""Columns a CRM user reads (issue 14, point 8): ``orders``, ``revenue``, ``first_purchase``,
``last_purchase``, ``tenure_days`` after ``customer_id``; counts as integers, money in cents in CSV
files (full precision in Parquet), ISO dates; the database export's types for them."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import simulated_transactions

from crmvalue import export as ex
from crmvalue import schema
from crmvalue.customer_days import customer_days
from crmvalue.io import DATE_COLUMNS, INTEGER_COLUMNS, MONEY_COLUMNS, write_table
from crmvalue.scoring import CRM_COLUMNS, with_crm_columns

EXPORT_COLUMNS = schema.names((schema.ID, *schema.HISTORY, *schema.VALUE, schema.RUN_ID))

CLI = str(Path(sys.executable).with_name("crmvalue"))


def test_the_columns_follow_customer_id():
    assert CRM_COLUMNS == ["orders", "revenue", "first_purchase", "last_purchase", "tenure_days"]
    assert EXPORT_COLUMNS[:7] == ["customer_id", *CRM_COLUMNS, "frequency"]
    assert list(ex.COLUMN_TYPES)[:6] == ["customer_id", *CRM_COLUMNS]


def _log() -> pd.DataFrame:
    rows = [
        # a: two rows on one day (one purchase day), a return on a day of its own, a later purchase
        ("a", "2021-01-01", 10.0),
        ("a", "2021-01-01", 5.0),
        ("a", "2021-01-05", -4.0),
        ("a", "2021-01-10", 20.0),
        # b: a purchase, then a day that holds a return and still nets above 0 (a purchase day)
        ("b", "2021-01-03", 30.0),
        ("b", "2021-01-08", 12.0),
        ("b", "2021-01-08", -2.0),
        # c: a day cancelled by a return (nets to 0, not a purchase), then one purchase
        ("c", "2021-01-02", 7.0),
        ("c", "2021-01-02", -7.0),
        ("c", "2021-01-06", 3.333),
        # d: its only day nets to <= 0: no purchase day, not exported
        ("d", "2021-01-04", 5.0),
        ("d", "2021-01-04", -6.0),
        # e: a purchase after the observation end does not count
        ("e", "2021-01-02", 1.0),
        ("e", "2021-02-01", 100.0),
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def test_the_columns_by_hand():
    days = customer_days(_log())
    end = pd.Timestamp("2021-01-20")
    scored = pd.DataFrame({"customer_id": ["a", "b", "c", "e"]})
    got, measures = with_crm_columns(scored, days, end)
    got = got.set_index("customer_id")
    assert got["orders"].to_dict() == {"a": 2, "b": 2, "c": 1, "e": 1}
    assert got["orders"].dtype == np.int64 and got["tenure_days"].dtype == np.int64
    # the whole history's net revenue to the end, returns on a day of their own included
    assert got["revenue"].to_dict() == pytest.approx({"a": 31.0, "b": 40.0, "c": 3.333, "e": 1.0})
    assert got["first_purchase"].dt.strftime("%Y-%m-%d").to_dict() == {
        "a": "2021-01-01",
        "b": "2021-01-03",
        "c": "2021-01-06",
        "e": "2021-01-02",
    }
    assert got["last_purchase"].dt.strftime("%Y-%m-%d").to_dict() == {
        "a": "2021-01-10",
        "b": "2021-01-08",
        "c": "2021-01-06",
        "e": "2021-01-02",
    }
    assert got["tenure_days"].to_dict() == {"a": 19, "b": 17, "c": 14, "e": 18}
    # one computation: the analyses' measures are the ones the columns come from
    assert (measures["orders"].to_numpy() == got["orders"].to_numpy()).all()
    assert list(measures.index) == ["a", "b", "c", "e"]


def test_a_customer_without_a_purchase_day_is_refused():
    with pytest.raises(Exception, match="no purchase day"):
        with_crm_columns(pd.DataFrame({"customer_id": ["a", "d"]}), customer_days(_log()), "2021-01-20")


def test_write_table_types(tmp_path):
    frame = pd.DataFrame(
        {
            "customer_id": ["x", "y"],
            "orders": [3.0, 1.0],
            "frequency": [2.0, 0.0],
            "revenue": [10.123456, 2 / 3],
            "first_purchase": pd.to_datetime(["2021-01-01", "2021-02-03"]),
            "p_alive": [1 / 3, 0.5],
            "value_decile": [1.0, np.nan],
            "recency": [1.5, 0.0],
        }
    )
    write_table(frame, tmp_path / "x.csv")
    assert (tmp_path / "x.csv").read_text().splitlines() == [
        "customer_id,orders,frequency,revenue,first_purchase,p_alive,value_decile,recency",
        f"x,3,2,10.12,2021-01-01,{1 / 3!r},1,1.5",
        "y,1,0,0.67,2021-02-03,0.5,,0.0",
    ]
    write_table(frame, tmp_path / "x.parquet")
    back = pd.read_parquet(tmp_path / "x.parquet")
    assert back["orders"].dtype == np.int64 and str(back["value_decile"].dtype) == "Int64"
    assert back["revenue"].tolist() == frame["revenue"].tolist()  # full precision
    assert frame["orders"].dtype == np.float64  # the caller's frame is left as it was


def _train(tmp_path: Path, out: str, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [
            CLI,
            "train",
            "--data",
            "tx.csv",
            "--no-churn",
            "--out",
            out,
            "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
            "--calibration-end",
            "2020-12-31",
            "--observation-end",
            "2021-12-31",
            *extra,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crm_columns")
    tx = simulated_transactions(n_customers=150, seed=11)
    tx["amount"] = tx["amount"] * 1.000123  # amounts with more than two decimals
    # a return on a day of its own, and a customer whose only day nets to <= 0
    first = tx.iloc[0]
    extra = pd.DataFrame(
        {
            "customer_id": [first["customer_id"], "ZZZ", "ZZZ"],
            "date": [first["date"] + pd.Timedelta(days=1), pd.Timestamp("2020-06-01"), pd.Timestamp("2020-06-01")],
            "amount": [-1.5, 4.0, -4.0],
        }
    )
    pd.concat([tx, extra], ignore_index=True).to_csv(tmp / "tx.csv", index=False)
    done = {
        name: _train(tmp, out, *flags)
        for name, out, flags in (
            ("csv", "x.csv", ("--engine", "pandas")),
            ("parquet", "x.parquet", ("--engine", "pandas")),
            ("duckdb", "d.csv", ("--engine", "duckdb")),
        )
    }
    for name, proc in done.items():
        assert proc.returncode == 0, (name, proc.stderr)
    return tmp, tx


def test_csv_through_the_console_script(runs):
    tmp, tx = runs
    frame = pd.read_csv(tmp / "x.csv", dtype=str, keep_default_na=False)
    assert list(frame.columns[:7]) == ["customer_id", *CRM_COLUMNS, "frequency"]
    assert "ZZZ" not in set(frame["customer_id"])
    assert len(frame) == tx["customer_id"].nunique()
    for column in INTEGER_COLUMNS:
        if column in frame:
            assert frame[column].str.fullmatch(r"-?\d+").all(), column
    for column in MONEY_COLUMNS:
        if column in frame:
            assert frame[column].str.fullmatch(r"-?\d+(\.\d{1,2})?").all(), column
    for column in DATE_COLUMNS:
        assert frame[column].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all(), column
    # probabilities and expected purchases keep full precision
    assert frame["p_alive"].str.contains(r"\.\d{6,}").any()
    assert frame["expected_purchases"].str.contains(r"\.\d{6,}").any()
    # the columns agree with the other columns and the log
    numbers = pd.read_csv(tmp / "x.csv", dtype={"customer_id": str}).set_index("customer_id")
    assert (numbers["orders"] == numbers["frequency"] + 1).all()
    assert (pd.to_datetime(numbers["first_purchase"]) <= pd.to_datetime(numbers["last_purchase"])).all()
    assert (
        numbers["tenure_days"] == (pd.Timestamp("2021-12-31") - pd.to_datetime(numbers["first_purchase"])).dt.days
    ).all()
    revenue = tx.groupby("customer_id")["amount"].sum()
    revenue[tx["customer_id"].iloc[0]] -= 1.5
    np.testing.assert_allclose(numbers["revenue"], revenue.reindex(numbers.index), atol=0.005 + 1e-9)


def test_parquet_keeps_full_precision(runs):
    tmp, _ = runs
    csv = pd.read_csv(tmp / "x.csv", dtype={"customer_id": str}).set_index("customer_id")
    parquet = pd.read_parquet(tmp / "x.parquet").set_index("customer_id")
    assert list(parquet.columns) == list(csv.columns)
    for column in ("orders", "tenure_days", "frequency", "rfm_r", "cpm_group", "value_decile"):
        assert parquet[column].dtype == np.int64, column
        assert (parquet[column] == csv[column]).all(), column
    assert pd.api.types.is_datetime64_any_dtype(parquet["first_purchase"])
    assert (parquet["first_purchase"].dt.strftime("%Y-%m-%d") == csv["first_purchase"]).all()
    for column in ("revenue", "clv", "monetary_value"):
        assert (parquet[column].round(2) == csv[column]).all(), column
        assert (parquet[column] != parquet[column].round(2)).any(), column  # more than cents
    # the MLflow artifact is the file itself
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    for name in ("x.csv", "x.parquet"):
        run_id = pd.read_csv(tmp / name)["run_id"][0] if name.endswith("csv") else parquet["run_id"].iloc[0]
        local = client.download_artifacts(run_id, name, str(tmp / f"dl_{name}"))
        assert Path(local).read_bytes() == (tmp / name).read_bytes()


def test_both_engines_write_the_same_file(runs):
    tmp, _ = runs
    pandas_engine = pd.read_csv(tmp / "x.csv", dtype=str, keep_default_na=False).drop(columns="run_id")
    duckdb_engine = pd.read_csv(tmp / "d.csv", dtype=str, keep_default_na=False).drop(columns="run_id")
    pd.testing.assert_frame_equal(pandas_engine, duckdb_engine)


def test_database_types_and_an_older_history_table(runs):
    tmp, _ = runs
    database = f"sqlite:///{tmp}/crm.db"
    engine = sa.create_engine(database)
    # a history table as an earlier crmvalue made it: without the new columns, one old row
    old = [c for c in ex.COLUMNS if c not in CRM_COLUMNS]
    with engine.begin() as conn:
        columns = ", ".join(f'"{c}" TEXT' for c in old)
        conn.exec_driver_sql(f"CREATE TABLE customer_scores_history ({columns}, PRIMARY KEY (run_id, customer_id))")
        conn.exec_driver_sql("INSERT INTO customer_scores_history (customer_id, run_id) VALUES ('x', 'old')")
    run_id = pd.read_csv(tmp / "x.csv")["run_id"][0]
    result = ex.export_run(run_id, database, tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    assert result.changed
    inspector = sa.inspect(engine)
    types = {c["name"]: c["type"] for c in inspector.get_columns("customer_scores")}
    assert isinstance(types["first_purchase"], sa.Date) and isinstance(types["last_purchase"], sa.Date)
    assert isinstance(types["orders"], sa.Integer) and isinstance(types["tenure_days"], sa.Integer)
    assert isinstance(types["revenue"], type(types["clv"]))
    history = {c["name"] for c in inspector.get_columns("customer_scores_history")}
    assert set(CRM_COLUMNS) <= history
    with engine.connect() as conn:
        table = pd.read_sql_table("customer_scores", conn)
        old_row = conn.exec_driver_sql(
            "SELECT orders, first_purchase FROM customer_scores_history WHERE run_id = 'old'"
        ).one()
        added = conn.exec_driver_sql(
            "SELECT count(*) FROM customer_scores_history WHERE run_id = ?", (run_id,)
        ).scalar()
    engine.dispose()
    assert tuple(old_row) == (None, None) and added == len(table)
    csv = pd.read_csv(tmp / "x.csv", dtype={"customer_id": str}).set_index("customer_id").sort_index()
    table = table.set_index("customer_id").sort_index()
    assert (table["orders"] == csv["orders"]).all() and (table["tenure_days"] == csv["tenure_days"]).all()
    assert [d.isoformat() for d in pd.to_datetime(table["first_purchase"]).dt.date] == csv["first_purchase"].tolist()
    np.testing.assert_array_equal(table["revenue"].to_numpy(), csv["revenue"].to_numpy())


def test_a_run_from_before_the_columns_exports_them_empty():
    scores = ex.RunScores(
        "r",
        pd.DataFrame({"customer_id": ["a"], "clv": [1.0]}),
        None,
        dt.date(2021, 1, 1),
        dt.datetime(2021, 1, 2, tzinfo=dt.UTC),
    )
    rows = scores.rows()
    lists = dict(zip(rows.columns, ex.column_lists(rows)))
    assert lists["first_purchase"] == [None] and lists["orders"] == [None]
    with_dates = ex.RunScores(
        "r",
        pd.DataFrame({"customer_id": ["a"], "first_purchase": ["2020-05-06"]}),
        None,
        dt.date(2021, 1, 1),
        dt.datetime(2021, 1, 2, tzinfo=dt.UTC),
    )
    mapping = {"customer_id": "Id__c", "first_purchase": "First__c"}
    assert ex.bulk_file(with_dates, "salesforce", mapping, True)["First__c"].tolist() == ["2020-05-06"]
