"""The retention revenue-cost method (seed 003, method 3): the table checked by hand on small cohorts,
the year and projection rules, the per-customer value, the config, the chart and the report section,
and the method on the CDNOW sample against an independent count."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from crmvalue.analyses import (
    PLOT_REVENUE_COST,
    SPEARMAN_METRIC,
    RevenueCostConfig,
    clv_comparison,
    revenue_cost_chart,
    revenue_cost_method,
    run_analyses,
    spearman,
    year_of_data,
)
from crmvalue.config import ExperimentConfig, load_config
from crmvalue.customer_days import day_number
from crmvalue.errors import CrmvalueError
from crmvalue.features import rfm_summary

END = "2022-12-31"
C2020, C2021, C2022 = "2020-01-01..2020-12-31", "2021-01-01..2021-12-31", "2022-01-01..2022-12-31"
CFG = RevenueCostConfig(
    years=3, margin=0.4, cost_to_serve=5, acquisition_cost=20, discount_rate=0.1, min_cohort_customers=1
)


def _log() -> pd.DataFrame:
    """Three cohorts (calendar years, as the end is 31 December).

    2020: A, B, C, D, H; 2021: E, F; 2022: G. Two rows of A on one day are one order; B's lone return
    in 2022 is not an order; D skips 2021 and comes back in 2022."""
    rows = [
        ("A", "2020-03-01", 100),
        ("A", "2020-06-01", 50),
        ("A", "2021-02-01", 80),
        ("A", "2022-05-01", 120),
        ("A", "2022-05-01", 30),
        ("B", "2020-05-01", 60),
        ("B", "2021-07-01", 40),
        ("B", "2021-08-01", 20),
        ("B", "2022-03-01", -20),
        ("C", "2020-11-01", 200),
        ("D", "2020-12-31", 40),
        ("D", "2022-01-01", 60),
        ("H", "2020-08-01", 30),
        ("H", "2021-09-01", 30),
        ("E", "2021-04-01", 100),
        ("E", "2022-04-01", 100),
        ("F", "2021-12-01", 50),
        ("G", "2022-06-01", 70),
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    return frame.assign(date=pd.to_datetime(frame["date"]), amount=frame["amount"].astype(float))


def _discount(k) -> np.ndarray:
    return 1.1 ** np.asarray(k, dtype=float)


def test_the_table_of_a_cohort_by_hand():
    table = revenue_cost_method(_log(), END, CFG).table
    rows = table.loc[C2020]
    # 2020: A 2 orders, B, C, D, H 1 each: 5 customers, 6 orders, 480; 2021: A 80, B 40 + 20, H 30; 2022: A 150, D 60
    assert rows["status"].tolist() == ["measured", "measured", "measured", "projected"]
    customers = [5, 3, 2, 2 * 2 / 3]
    np.testing.assert_allclose(rows["customers"], customers)
    np.testing.assert_allclose(rows["retention_rate"], [np.nan, 3 / 5, 2 / 3, 2 / 3])
    np.testing.assert_allclose(rows["orders_per_customer_per_year"], [6 / 5, 4 / 3, 1, 1])
    np.testing.assert_allclose(rows["average_order_value"], [80, 42.5, 105, 105])
    revenue = np.array([480, 170, 210, 4 / 3 * 105])
    np.testing.assert_allclose(rows["revenue"], revenue)
    np.testing.assert_allclose(rows["cost_of_goods"], revenue * 0.6)
    np.testing.assert_allclose(rows["cost_to_serve"], np.array(customers) * 5)
    np.testing.assert_allclose(rows["acquisition_cost"], [100, 0, 0, 0])
    costs = revenue * 0.6 + np.array(customers) * 5 + [100, 0, 0, 0]
    np.testing.assert_allclose(rows["costs"], costs)
    profit = revenue - costs  # 67, 53, 74, 49.33
    np.testing.assert_allclose(rows["profit"], [67, 53, 74, 140 * 0.4 - 20 / 3])
    np.testing.assert_allclose(rows["discounted_profit"], profit / _discount([0, 1, 2, 3]))
    np.testing.assert_allclose(
        rows["cumulative_npv_per_acquired_customer"], np.cumsum(profit / _discount([0, 1, 2, 3])) / 5
    )
    assert rows["cumulative_npv_per_acquired_customer"].iloc[0] == pytest.approx(13.4)  # 67 / 5


def test_overall_pools_the_cohorts_that_reached_each_year():
    rows = revenue_cost_method(_log(), END, CFG).table.loc["overall"]
    assert rows["status"].tolist() == ["measured", "measured", "measured", "projected"]
    # year 1: cohorts 2020 and 2021, 3 + 1 of 5 + 2; year 2: cohort 2020 alone, 2 of 3
    np.testing.assert_allclose(rows["retention_rate"], [np.nan, 4 / 7, 2 / 3, 2 / 3])
    np.testing.assert_allclose(rows["orders_per_customer_per_year"], [9 / 8, 5 / 4, 1, 1])
    np.testing.assert_allclose(rows["average_order_value"], [700 / 9, 54, 105, 105])
    customers = np.array([8, 8 * 4 / 7, 8 * 4 / 7 * 2 / 3, 8 * 4 / 7 * 4 / 9])  # all acquired, carried by the rates
    np.testing.assert_allclose(rows["customers"], customers)
    np.testing.assert_allclose(rows["revenue"], [700, customers[1] * 67.5, customers[2] * 105, customers[3] * 105])
    np.testing.assert_allclose(rows["acquisition_cost"], [160, 0, 0, 0])


def test_a_cohort_of_the_last_year_follows_the_overall_rates():
    rows = revenue_cost_method(_log(), END, CFG).table.loc[C2022]
    assert rows["status"].tolist() == ["measured", "projected", "projected", "projected"]
    np.testing.assert_allclose(rows["retention_rate"], [np.nan, 4 / 7, 2 / 3, 2 / 3])
    np.testing.assert_allclose(rows["customers"], [1, 4 / 7, 8 / 21, 16 / 63])
    np.testing.assert_allclose(rows["revenue"], [70, 4 / 7 * 5 / 4 * 54, 8 / 21 * 105, 16 / 63 * 105])


def test_projection_uses_the_last_or_the_mean_measured_retention():
    last = revenue_cost_method(_log(), END, CFG).table
    mean = revenue_cost_method(_log(), END, CFG.model_copy(update={"retention_projection": "mean"})).table
    assert last.loc[(C2020, 3), "retention_rate"] == pytest.approx(2 / 3)
    assert mean.loc[(C2020, 3), "retention_rate"] == pytest.approx((3 / 5 + 2 / 3) / 2)
    assert mean.loc[(C2020, 3), "customers"] == pytest.approx(2 * (3 / 5 + 2 / 3) / 2)
    assert mean.loc[("overall", 3), "retention_rate"] == pytest.approx((4 / 7 + 2 / 3) / 2)
    # cohort 2021 measured year 1 only: both rules give its one retention rate, 1 of 2
    for table in (last, mean):
        assert table.loc[(C2021, 2), "retention_rate"] == 0.5
        assert table.loc[(C2021, 2), "orders_per_customer_per_year"] == 1
        assert table.loc[(C2021, 2), "average_order_value"] == 100
    # the measured years are the same under both rules
    pd.testing.assert_frame_equal(last.loc[(C2020, slice(0, 2)), :], mean.loc[(C2020, slice(0, 2)), :])


def test_the_years_run_back_from_the_observation_end():
    end = pd.Timestamp("2022-06-30")
    days = np.array([day_number(d) for d in ("2020-07-01", "2021-06-30", "2021-07-01", "2022-06-30")])
    period, ends = year_of_data(days, end)
    assert period.tolist() == [1, 1, 0, 0]
    assert ends.tolist() == [day_number("2021-06-30"), day_number("2020-06-30")]
    # a leap day at the end: the year before ends on 28 February
    _, ends = year_of_data(np.array([day_number("2023-03-01")]), "2024-02-29")
    assert ends[0] == day_number("2023-02-28")


def test_no_year_is_partly_observed_at_the_data_end():
    rows = [("X", "2021-01-15", 10), ("X", "2021-09-01", 10), ("X", "2022-03-01", 10), ("X", "2022-08-01", 10)]
    log = pd.DataFrame(rows, columns=["customer_id", "date", "amount"]).assign(
        date=lambda f: pd.to_datetime(f["date"]), amount=lambda f: f["amount"].astype(float)
    )
    cfg = RevenueCostConfig(years=2, margin=1.0, discount_rate=0.0, min_cohort_customers=1)
    # to 2022-06-30: year 0 is 2020-07-01..2021-06-30, year 1 the full year to the end; 2022-08-01 is after it
    table = revenue_cost_method(log, "2022-06-30", cfg).table
    assert set(table.index.get_level_values("cohort")) == {"overall", "2020-07-01..2021-06-30"}
    rows = table.loc["overall"]
    assert rows["status"].tolist() == ["measured", "measured", "projected"]
    np.testing.assert_allclose(rows["orders_per_customer_per_year"], [1, 2, 2])
    np.testing.assert_allclose(rows["revenue"], [10, 20, 20])
    # without an end, the last transaction day ends the data: the August purchase is in year 1
    rows = revenue_cost_method(log, None, cfg).table.loc["overall"]
    np.testing.assert_allclose(rows["orders_per_customer_per_year"][:2], [1, 3])


def test_one_year_of_data_measures_no_retention(caplog):
    log = _log()
    log = log[log["date"] >= "2022-01-01"]
    method = revenue_cost_method(log, END, CFG)
    rows = method.table.loc["overall"]
    assert rows["status"].tolist() == ["measured", "projected", "projected", "projected"]
    assert rows["revenue"].iloc[1:].isna().all()
    # everyone bought in the last year, but without a retention rate nothing is projected: 0, finite in the export
    assert (method.value == 0).all()
    assert "no retention is measured" in caplog.text


def test_the_value_of_constructed_customers():
    method = revenue_cost_method(_log(), END, CFG)
    j = np.arange(1, 4)
    v2020 = ((2 / 3) ** j * (105 * 0.4 - 5) / 1.1**j).sum()  # age 2, cohort 2020 projected: r 2/3, 1 order of 105
    v2021 = (0.5**j * (100 * 0.4 - 5) / 1.1**j).sum()  # age 1, cohort 2021: r 1/2, 1 order of 100
    v2022 = (4 / 7) * (5 / 4 * 54 * 0.4 - 5) / 1.1 + (8 / 21) * 37 / 1.21 + (16 / 63) * 37 / 1.331  # overall rates
    expected = {"A": v2020, "B": 0, "C": 0, "D": v2020, "E": v2021, "F": 0, "G": v2022, "H": 0}
    assert method.value.to_dict() == pytest.approx(expected)
    assert method.active.to_dict() == {c: c in ("A", "D", "E", "G") for c in expected}  # B's return is no order


def test_customers_of_a_cohort_too_small_to_list_take_the_overall_rates():
    method = revenue_cost_method(_log(), END, CFG.model_copy(update={"min_cohort_customers": 3}))
    assert set(method.table.index.get_level_values("cohort")) == {"overall", C2020}
    j = np.arange(1, 4)
    # E, age 1: the overall years 2..4, retention 2/3 and 1 order of 105 each
    assert method.value["E"] == pytest.approx(((2 / 3) ** j * 37 / 1.1**j).sum())


def test_the_comparison_with_the_clv_and_spearman():
    clv = pd.Series([10.0, 5, 1, 8, 2, 7, 0.5, 3, 4, 6], index=list("abcdefghij"))
    value = pd.Series([20.0, 0, 0, 12, 0, 12, 0, 0, 0, 12], index=clv.index)
    active = value > 0
    table = clv_comparison(clv, value, active)
    assert table.index.tolist() == list(range(1, 11))  # one customer per decile, the highest clv first
    assert table["mean_clv"].tolist() == [10, 8, 7, 6, 5, 4, 3, 2, 1, 0.5]
    assert table["mean_revenue_cost_value"].tolist() == [20, 12, 12, 12, 0, 0, 0, 0, 0, 0]
    assert table["still_buying_share"].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert table["value_per_clv"].iloc[0] == 2.0
    # Spearman = Pearson of the ranks, ties averaged: the six 0s share rank 3.5, the three 12s rank 8
    clv_ranks = [10, 6, 2, 9, 3, 8, 1, 4, 5, 7]
    value_ranks = [10, 3.5, 3.5, 8, 3.5, 8, 3.5, 3.5, 3.5, 8]
    assert spearman(clv, value) == pytest.approx(np.corrcoef(clv_ranks, value_ranks)[0, 1])
    assert spearman(clv, value) == pytest.approx(0.8739, abs=1e-4)
    assert np.isnan(spearman(clv, value * 0))  # a constant value ranks nothing


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("margin", 1.5, "analyses.revenue_cost.margin: margin is the gross margin share of revenue, from 0 to 1"),
        ("discount_rate", -0.1, "analyses.revenue_cost.discount_rate: discount_rate is an annual rate from 0 to 1"),
        ("years", 0, "analyses.revenue_cost.years: Input should be greater than or equal to 1"),
        ("cost_to_serve", -1, "analyses.revenue_cost.cost_to_serve: Input should be greater than or equal to 0"),
        ("retention_projection", "median", "analyses.revenue_cost.retention_projection: Input should be 'last'"),
        ("margn", 0.2, "analyses.revenue_cost.margn: Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_one_line_errors(key, value, message):
    with pytest.raises(CrmvalueError) as caught:
        load_config(None, {f"analyses.revenue_cost.{key}": value})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_chart_draws_measured_solid_and_projected_dashed():
    table = revenue_cost_method(_log(), END, CFG).table
    fig = revenue_cost_chart(table)
    ax = fig.axes[0]
    solid = [line for line in ax.lines if line.get_linestyle() == "-" and line.get_label() in ("overall", C2020)]
    assert [line.get_label() for line in solid] == ["overall", C2020]
    assert list(solid[0].get_xdata()) == [0, 1, 2]  # the overall's measured years
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 4  # overall and the three cohorts each have projected years
    assert list(dashed[0].get_xdata()) == [2, 3]  # from the last measured point on
    np.testing.assert_allclose(
        dashed[0].get_ydata(), table.loc["overall", "cumulative_npv_per_acquired_customer"].iloc[2:]
    )
    plt.close(fig)


@pytest.fixture(scope="module")
def sample_analyses(cdnow_sample):
    summary = rfm_summary(cdnow_sample, "1998-06-30", "weeks")
    summary["clv"] = summary["frequency"] * summary["monetary_value"] + 1.0
    summary["current_value"] = summary["monetary_value"]
    return run_analyses(ExperimentConfig(), cdnow_sample, "1998-06-30", summary.reset_index(), None, None)


def test_the_method_on_the_cdnow_sample_against_an_independent_count(cdnow_sample, sample_analyses):
    table = sample_analyses.tables["revenue_cost"]
    # every customer was acquired in the first quarter of 1997: one cohort, the year to 1997-06-30
    assert set(table.index.get_level_values("cohort")) == {"overall", "1996-07-01..1997-06-30"}
    rows = table.loc["overall"]
    assert rows["status"].tolist() == ["measured", "measured"] + ["projected"] * 4
    days = cdnow_sample.assign(day=cdnow_sample["date"].dt.normalize()).groupby(["customer_id", "day"])["amount"]
    days = days.sum().reset_index()  # CDNOW has no returns: every customer-day is an order
    year1 = days[(days["day"] >= "1997-07-01") & (days["day"] <= "1998-06-30")]
    acquired = days["customer_id"].nunique()
    assert acquired == 2357
    assert rows["customers"].iloc[1] == year1["customer_id"].nunique()
    assert rows["retention_rate"].iloc[1] == pytest.approx(year1["customer_id"].nunique() / acquired)
    assert rows["orders_per_customer_per_year"].iloc[1] == pytest.approx(len(year1) / year1["customer_id"].nunique())
    assert rows["revenue"].iloc[1] == pytest.approx(year1["amount"].sum())
    assert rows["revenue"].iloc[0] == pytest.approx(days["amount"].sum() - year1["amount"].sum())
    np.testing.assert_allclose(rows["retention_rate"].iloc[2:], rows["retention_rate"].iloc[1])
    # the per-customer column, the comparison and the metric
    value = sample_analyses.columns["revenue_cost_value"]
    assert (value > 0).sum() == year1["customer_id"].nunique()
    comparison = sample_analyses.tables["revenue_cost_vs_clv"]
    assert comparison["customers"].sum() == 2357
    assert -1 <= sample_analyses.metrics[SPEARMAN_METRIC] <= 1
    assert PLOT_REVENUE_COST in sample_analyses.figures


def test_the_report_section_reads_the_method(sample_analyses, tmp_path):
    from crmvalue.report.revenue_cost import revenue_cost_section

    tables = {
        "analyses/revenue_cost.csv": sample_analyses.tables["revenue_cost"],
        "analyses/revenue_cost_vs_clv.csv": sample_analyses.tables["revenue_cost_vs_clv"],
    }
    for name, frame in tables.items():
        frame.to_csv(tmp_path / name.replace("/", "_"))
    art = SimpleNamespace(table=lambda path: pd.read_csv(tmp_path / path.replace("/", "_")) if path in tables else None)
    run = SimpleNamespace(
        art=art,
        image=lambda path: None,
        params={"config.analyses.revenue_cost.margin": "0.3", "config.analyses.revenue_cost.years": "5"},
        metric=lambda name: sample_analyses.metrics.get(name),
        months="12",
    )
    anchor, title, html = revenue_cost_section(run)
    rows = sample_analyses.tables["revenue_cost"].loc["overall"]
    assert anchor == "revenue-cost"
    assert f"<b>{rows['retention_rate'].iloc[1]:.1%}</b> of them were still buying" in html
    assert f"<b>{rows['cumulative_npv_per_acquired_customer'].iloc[5]:,.2f}</b> of profit" in html
    assert "margin 30%" in html and "projected" in html
    assert f"<b>{sample_analyses.metrics[SPEARMAN_METRIC]:.2f}</b>" in html
    assert "plots/revenue_cost.png" in html  # the missing chart is named
    assert "Per cohort" not in html  # the one CDNOW cohort is the overall again
