"""The output contract (crmvalue.schema): one declaration gives the file order, the table order,
the SQL types and the formats, and an undeclared column is an error, never dropped."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd
import pytest

from crmvalue import export as ex
from crmvalue import io, schema

BASE = [
    "customer_id",
    "orders",
    "revenue",
    "first_purchase",
    "last_purchase",
    "tenure_days",
    "frequency",
    "recency",
    "T",
    "monetary_value",
    "current_value",
    "p_alive",
    "expected_purchases",
    "expected_avg_value",
    "expected_revenue",
    "clv",
    "potential_value",
    "quadrant",
]
# the decisions (value at risk, priority, next action) come exactly with the churn columns
CHURN = ["churn_probability", "churn_risk", "value_at_risk", "retention_priority", "next_action"]
ANALYSES = [
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_score",
    "rfm_segment",
    "cpm_group",
    "cpm_label",
    "value_decile",
    "crm_value",
    "crm_grade",
    "revenue_cost_value",
]
# the expectation's bounds, then the predictive bounds of the outcome (crmvalue.models.predictive)
INTERVALS = [
    "expected_purchases_lower",
    "expected_purchases_upper",
    "clv_lower",
    "clv_upper",
    "purchases_lower",
    "purchases_upper",
    "revenue_lower",
    "revenue_upper",
]
# the database tables as crmvalue 0.x created them (README, "Database export"): order and SQL types
TABLE = {
    **dict.fromkeys(BASE, "DOUBLE"),
    "customer_id": "TEXT",
    "orders": "INTEGER",
    "first_purchase": "DATE",
    "last_purchase": "DATE",
    "tenure_days": "INTEGER",
    "frequency": "INTEGER",
    "quadrant": "VARCHAR(1)",
    "churn_probability": "DOUBLE",
    "churn_risk": "VARCHAR(8)",
    "value_at_risk": "DOUBLE",
    "retention_priority": "INTEGER",
    "next_action": "VARCHAR(32)",
    "rfm_r": "SMALLINT",
    "rfm_f": "SMALLINT",
    "rfm_m": "SMALLINT",
    "rfm_score": "VARCHAR(3)",
    "rfm_segment": "TEXT",
    "cpm_group": "SMALLINT",
    "cpm_label": "TEXT",
    "value_decile": "SMALLINT",
    "crm_value": "DOUBLE",
    "crm_grade": "VARCHAR(8)",
    "revenue_cost_value": "DOUBLE",
    **dict.fromkeys(INTERVALS, "DOUBLE"),
    "purchases_lower": "INTEGER",  # whole purchases
    "purchases_upper": "INTEGER",
    "dert": "DOUBLE",  # issue 16: Pareto/NBD's discounted expected residual transactions
    "history": "VARCHAR(8)",  # issue 16: 'none' for the customers predict scored without a purchase
    "run_id": "VARCHAR(32)",
    "model_version": "INTEGER",
    "as_of_date": "DATE",
    "scored_at": "TIMESTAMPTZ",
}


def frame_with(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: [1.0] for c in columns})


@pytest.mark.parametrize(
    "churn, analyses, intervals",
    list(
        itertools.product(
            [False, True],
            [False, True],
            [(), ("clv_lower", "clv_upper"), ("revenue_upper", "purchases_lower"), tuple(INTERVALS)],
        )
    ),
)
@pytest.mark.parametrize("run_id", [False, True])
def test_file_order_is_the_pipelines(churn, analyses, intervals, run_id):
    columns = BASE + (CHURN if churn else []) + (ANALYSES if analyses else []) + list(intervals)
    frame = frame_with(columns + (["run_id"] if run_id else []))
    expected = BASE + (CHURN if churn else []) + ["run_id"] + (ANALYSES if analyses else [])
    expected += [c for c in INTERVALS if c in intervals]
    assert schema.output_columns(frame) == expected


def test_file_order_keeps_the_frames_order_out():
    shuffled = frame_with(BASE + CHURN + ANALYSES + INTERVALS).iloc[:, ::-1]
    assert schema.output_columns(shuffled) == BASE + CHURN + ["run_id"] + ANALYSES + INTERVALS


def test_optional_value_columns_sit_beside_their_kin():
    # dert (Pareto/NBD) right after clv, history (predict's new customers) right after quadrant, only when present
    frame = frame_with(BASE + CHURN + ["history", "dert"])
    expected = BASE[: BASE.index("clv") + 1] + ["dert"] + BASE[BASE.index("clv") + 1 :] + ["history"]
    assert schema.output_columns(frame) == expected + CHURN + ["run_id"]
    assert schema.output_columns(frame_with(BASE)) == BASE + ["run_id"]


def test_table_order_and_sql_types():
    assert schema.table_columns() == list(TABLE)
    assert schema.sql_types() == TABLE
    assert ex.COLUMNS == list(TABLE)
    for column, declared in TABLE.items():  # every table column has a SQL type the export can create
        assert ex.COLUMN_TYPES[column].compile() == ex.sql_type(declared).compile(), column
    assert ex.COLUMN_TYPES["quadrant"].length == 1 and ex.COLUMN_TYPES["run_id"].length == 32
    assert ex.COLUMN_TYPES["scored_at"].timezone


def test_each_column_is_declared_once():
    names = [c.name for c in schema.table_schema()]
    assert len(names) == len(set(names))
    assert [c.name for c in schema.analysis_columns()] == ANALYSES


def test_an_undeclared_column_is_an_error_naming_it():
    frame = frame_with(BASE + ["loyalty_points"])
    with pytest.raises(schema.UndeclaredColumnError, match="'loyalty_points' is not declared"):
        schema.output_columns(frame)


@pytest.mark.parametrize(
    "group, present, missing",
    [
        ("analyses", ANALYSES[:-1], "revenue_cost_value"),
        ("churn", CHURN[:1], "churn_risk"),
        ("decisions", CHURN[:4], "next_action"),
    ],
)
def test_part_of_a_group_is_an_error_not_a_silent_drop(group, present, missing):
    with pytest.raises(schema.UndeclaredColumnError, match=f"'{missing}' is missing: the {group} columns"):
        schema.output_columns(frame_with(BASE + present))


def test_kinds_give_the_export_sets():
    assert ex.INTEGER_COLUMNS == {
        "frequency",
        "orders",
        "tenure_days",
        "rfm_r",
        "rfm_f",
        "rfm_m",
        "cpm_group",
        "value_decile",
        "retention_priority",
        "purchases_lower",
        "purchases_upper",
        "model_version",
    }
    assert ex.DATE_COLUMNS == {"first_purchase", "last_purchase", "as_of_date"}
    assert ex.TEXT_COLUMNS == {
        "customer_id",
        "quadrant",
        "churn_risk",
        "next_action",
        "rfm_score",
        "rfm_segment",
        "cpm_label",
        "crm_grade",
        "history",
        "run_id",
    }
    money = {
        "monetary_value",
        "current_value",
        "expected_avg_value",
        "expected_revenue",
        "clv",
        "potential_value",
        "revenue",
        "value_at_risk",
        "revenue_cost_value",
    }
    assert ex.MONEY == money | {"clv_lower", "clv_upper", "revenue_lower", "revenue_upper"}
    # the predictions file has no export metadata
    assert set(io.INTEGER_COLUMNS) == ex.INTEGER_COLUMNS - {"model_version"}
    assert set(io.DATE_COLUMNS) == {"first_purchase", "last_purchase"}
    assert set(io.MONEY_COLUMNS) == ex.MONEY


def test_file_formats_follow_the_declared_kinds(tmp_path):
    frame = pd.DataFrame(
        {
            "customer_id": ["007"],
            "orders": [3.0],  # integer: written without ".0"
            "rfm_r": [5.0],  # an analysis' integer
            "revenue": [12.3456],  # money: cents in CSV
            "clv_upper": [1.005001],
            "p_alive": [0.123456789],  # number: full precision
            "first_purchase": pd.to_datetime(["1997-01-05"]),  # date: ISO day
            "purchases_upper": np.array([2], dtype=np.int64),  # a predictive bound: whole purchases
            "revenue_upper": [80.456],  # and money
        }
    )
    io.write_table(frame, tmp_path / "p.csv")
    text = (tmp_path / "p.csv").read_text().splitlines()[1]
    assert text == "007,3,5,12.35,1.01,0.123456789,1997-01-05,2,80.46"
    io.write_table(frame, tmp_path / "p.parquet")
    back = pd.read_parquet(tmp_path / "p.parquet")
    assert back["orders"].dtype == np.int64 and back["revenue"].iloc[0] == 12.3456


def test_bulk_file_formats_follow_the_declared_kinds():
    frame = frame_with(BASE).assign(
        customer_id="007", quadrant="A", clv=1234.5678, p_alive=0.1234567891, frequency=2.0, first_purchase="1997-01-05"
    )
    scores = ex.RunScores("abc", frame, 3, dt.date(1997, 9, 30), dt.datetime(1997, 10, 1, 12, tzinfo=dt.UTC))
    mapping = {"customer_id": "id", "clv": "clv", "p_alive": "p", "model_version": "v", "as_of_date": "asof"}
    out = ex.bulk_file(scores, "hubspot", mapping, strict=True)
    assert out.iloc[0].tolist() == ["007", "1234.57", "0.123457", "3", "1997-09-30"]
