"""The analyses' declarations against what they produce: every declared column comes out of
run_analyses, in the declared order, with a dtype of its kind; every table and chart a run logs
is declared, and every declared one is logged."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from crmvalue import analyses
from crmvalue.analyses import ANALYSES, ANALYSIS_COLUMNS_DECLARED, AnalysesResult, log_analyses, run_analyses
from crmvalue.config import ExperimentConfig
from crmvalue.customer_days import customer_days
from crmvalue.features import rfm_summary

OBS_END = "1998-03-31"
ANALYSIS_MODULES = ("rfm", "cpm", "deciles", "crm_score", "retention", "revenue_cost", "market_segments")
# what a column of each kind may hold in the frame run_analyses returns
KIND_CHECKS = {
    "integer": pd.api.types.is_integer_dtype,
    "number": pd.api.types.is_float_dtype,
    "money": pd.api.types.is_float_dtype,
    "text": pd.api.types.is_string_dtype,
}


def _predictions(transactions: pd.DataFrame) -> pd.DataFrame:
    """The columns run_analyses reads from the predictions: the summary, a CLV and a current value."""
    summary = rfm_summary(transactions, OBS_END, "weeks")
    summary["clv"] = summary["frequency"] * summary["monetary_value"] + 1.0
    summary["current_value"] = summary["monetary_value"]
    return summary.reset_index()


def _attributes(predictions: pd.DataFrame) -> pd.DataFrame:
    ids = predictions["customer_id"].to_numpy()
    return pd.DataFrame(
        {"region": np.where(np.arange(len(ids)) % 3 == 0, "north", "south"), "plan tier": "basic"},
        index=pd.Index(ids, name="customer_id"),
    )


@pytest.fixture(scope="module")
def result(cdnow_sample) -> tuple[AnalysesResult, pd.DataFrame]:
    predictions = _predictions(cdnow_sample)
    days = customer_days(cdnow_sample)
    return run_analyses(ExperimentConfig(), days, OBS_END, predictions, _attributes(predictions), None), predictions


def test_declared_names_are_unique_and_grouped_by_their_analysis():
    names = [analysis.name for analysis in ANALYSES]
    columns = [column.name for column in ANALYSIS_COLUMNS_DECLARED]
    assert len(set(names)) == len(names)
    assert len(set(columns)) == len(columns)
    assert columns == [
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
    for analysis in ANALYSES:
        assert {column.group for column in analysis.columns} <= {analysis.name}
    paths = [path for analysis in ANALYSES for path in analysis.tables + analysis.charts]
    assert len(set(paths)) == len(paths)
    # each module declares its own columns, and the registry is made of exactly those
    modules = [getattr(analyses, name) for name in ANALYSIS_MODULES]
    assert tuple(column for module in modules for column in module.COLUMNS) == ANALYSIS_COLUMNS_DECLARED
    assert tuple(module.ANALYSIS for module in modules) == ANALYSES


def test_every_declared_column_is_produced_in_the_declared_order(result):
    produced, predictions = result
    columns = produced.columns
    assert list(columns.columns) == [column.name for column in ANALYSIS_COLUMNS_DECLARED]
    assert columns.index.equals(pd.Index(predictions["customer_id"], name="customer_id"))
    for column in ANALYSIS_COLUMNS_DECLARED:
        assert KIND_CHECKS[column.kind](columns[column.name].dtype), (column.name, columns[column.name].dtype)
        assert columns[column.name].notna().all(), column.name
    assert columns["rfm_score"].str.len().max() <= 3  # VARCHAR(3)
    assert columns["crm_grade"].str.len().max() <= 8  # VARCHAR(8)


def _declared(paths: list[str], produced: set[str]) -> set[str]:
    """The declared paths, a ``<column>`` placeholder matched against the produced ones."""
    out = set()
    for path in paths:
        if "<column>" in path:
            pattern = re.compile(re.escape(path).replace(re.escape("<column>"), "[A-Za-z0-9_.-]+"))
            matches = {p for p in produced if pattern.fullmatch(p)}
            assert matches, f"no table for {path}"
            out |= matches
        else:
            out.add(path)
    return out


def test_every_table_and_chart_is_declared_and_every_declared_one_is_produced(result):
    produced, _ = result
    tables = {f"analyses/{name}.csv" for name in produced.tables}
    assert tables == _declared([p for a in ANALYSES for p in a.tables], tables)
    assert {"analyses/segments_region.csv", "analyses/segments_plan_tier.csv"} <= tables  # made file-safe
    assert set(produced.figures) == {p for a in ANALYSES for p in a.charts}


def test_log_analyses_writes_the_declared_files(result, tmp_path, monkeypatch):
    import mlflow

    produced, _ = result
    logged: dict[str, object] = {"figures": []}
    open_before = set(plt.get_fignums())
    monkeypatch.setattr(mlflow, "log_artifacts", lambda local, path: logged.update(artifacts=(local, path)))
    monkeypatch.setattr(mlflow, "log_params", lambda params: logged.update(params=params))
    monkeypatch.setattr(mlflow, "log_figure", lambda fig, name: logged["figures"].append(name))
    log_analyses(produced, tmp_path)
    assert logged["artifacts"] == (str(tmp_path / "analyses"), "analyses")
    assert {f"analyses/{p.name}" for p in (tmp_path / "analyses").iterdir()} == {
        f"analyses/{name}.csv" for name in produced.tables
    }
    assert set(logged["params"]) == {"analyses.cpm.stable_sales_used", "analyses.cpm.loyal_sales_used"}
    assert logged["figures"] == list(produced.figures)
    assert set(plt.get_fignums()) == open_before  # every figure closed once logged
