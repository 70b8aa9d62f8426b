"""The report's section on the retention revenue-cost method (seed 003, method 3): the method in plain
words with the run's own figures, the overall table, the chart, the cohorts, and the comparison of the
method's per-customer value with the BTYD CLV."""

from __future__ import annotations

import pandas as pd

from crmvalue import schema
from crmvalue.analyses.revenue_cost import OVERALL, PLOT_REVENUE_COST, SPEARMAN_METRIC, TABLE_COLUMNS
from crmvalue.report.format import figure, fmt_count, fmt_money, fmt_pct, html_table, missing_note, section
from crmvalue.report.run import ReportRun

TABLE = schema.analysis_table("revenue_cost")
COMPARISON = schema.analysis_table("revenue_cost_vs_clv")
# the method's table without its three cost parts (their sum, costs, is shown)
SHOWN = ["year", *(c for c in TABLE_COLUMNS if c not in ("cost_of_goods", "cost_to_serve", "acquisition_cost"))]


def _setting(r: ReportRun, key: str, default: str) -> str:
    return r.params.get(schema.config_param(f"analyses.revenue_cost.{key}"), default)


def _shown(rows: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader needs; projected customers (fractions of a customer) and large sums of money
    in whole units, as the report shows money elsewhere."""
    shown = rows[SHOWN].assign(customers=rows["customers"].round())
    for column in ("revenue", "costs", "profit", "discounted_profit"):
        if shown[column].abs().max() >= 1000:
            shown[column] = shown[column].round()
    return shown.rename(columns={"cumulative_npv_per_acquired_customer": "cumulative_NPV_per_acquired_customer"})


def _cohorts(table: pd.DataFrame) -> pd.DataFrame | None:
    """The cohorts' rows, or None when there are none or one that holds every customer (the overall again)."""
    cohorts = table[table["cohort"] != OVERALL]
    starts = cohorts[cohorts["year"] == 0]
    overall = table[(table["cohort"] == OVERALL) & (table["year"] == 0)]
    if starts.empty or (len(starts) == 1 and starts["customers"].iloc[0] == overall["customers"].iloc[0]):
        return None
    return cohorts


def _reading(overall: pd.DataFrame, r: ReportRun) -> str:
    """The overall table in one paragraph: who stays, what they buy, what an acquired customer is worth."""
    measured = overall[overall["status"] == "measured"]
    first, last = overall.iloc[0], overall.iloc[-1]
    text = (
        f"Of the {fmt_count(first['customers'])} customers acquired, year 0 brought {fmt_money(first['revenue'])} "
        f"of revenue ({first['orders_per_customer_per_year']:.2f} orders per customer at "
        f"{fmt_money(first['average_order_value'])} each)."
    )
    if len(measured) > 1:
        year1 = overall.iloc[1]
        text += (
            f" In year 1, <b>{fmt_pct(year1['retention_rate'])}</b> of them were still buying, "
            f"{year1['orders_per_customer_per_year']:.2f} orders each at {fmt_money(year1['average_order_value'])}."
        )
    rule = "the last measured year's" if _setting(r, "retention_projection", "last") == "last" else "the mean measured"
    if len(measured) < len(overall):
        text += (
            f" The data reach year {int(measured['year'].max())}; the later years are projected with {rule} "
            "retention rate and the last measured orders per customer and order value."
        )
    if pd.notna(last["cumulative_npv_per_acquired_customer"]):
        text += (
            f" Over years 0 to {int(last['year'])}, an acquired customer is worth "
            f"<b>{fmt_money(last['cumulative_npv_per_acquired_customer'])}</b> of profit in today's money."
        )
    else:
        text += " The data hold a single year, so no retention rate is measured and nothing is projected."
    return text


def revenue_cost_section(r: ReportRun):
    margin = float(_setting(r, "margin", "0.3"))
    rate = float(_setting(r, "discount_rate", "0.1"))
    serve = float(_setting(r, "cost_to_serve", "0"))
    acquire = float(_setting(r, "acquisition_cost", "0"))
    intro = (
        "Seed 003's <b>retention revenue-cost method</b> values customers by four figures: how many customers are "
        "still buying, the <b>retention rate</b> (the share of last year's customers still buying this year), "
        "the <b>orders per customer per year</b> and the <b>average order value</b>. Each year since acquisition, "
        "customers × orders × order value is the revenue. Less the costs, the cost of goods "
        f"(revenue × (1 − margin), margin {fmt_pct(margin, 0)}), the cost to serve "
        f"({fmt_money(serve)} per customer still buying per year) and the acquisition cost ({fmt_money(acquire)} "
        f"per customer acquired, in year 0), it is the profit. Discounted at {fmt_pct(rate, 0)} a year and added "
        "up, it gives the <b>net present value per acquired customer</b>. Years run back from the observation "
        "end, so every year the data reach is a full year (<i>measured</i>); the years after are <i>projected</i>."
    )
    table = r.art.table(TABLE)
    uri = r.image(PLOT_REVENUE_COST)
    parts, missing = [], []
    if table is not None:
        overall = table[table["cohort"] == OVERALL]
        parts.append(f"<p>{_reading(overall, r)}</p>")
        parts.append(html_table(_shown(overall)))
    else:
        missing.append(TABLE)
    if uri is not None:
        parts.append(
            figure(uri, "Cumulative net present value per acquired customer: measured years solid, projected dashed.")
        )
    else:
        missing.append(PLOT_REVENUE_COST)
    cohorts = None if table is None else _cohorts(table)
    if cohorts is not None:
        shown = _shown(cohorts)
        shown.insert(0, "cohort", cohorts["cohort"])
        parts.append(
            "<details><summary>Per cohort (customers by the year of their first purchase)</summary>"
            f"{html_table(shown)}</details>"
        )
    parts.append(_comparison(r, missing))
    if missing:
        parts.append(missing_note(missing))
    return section("revenue-cost", "Retention revenue-cost method", intro, "".join(parts))


def _comparison(r: ReportRun, missing: list[str]) -> str:
    comparison = r.art.table(COMPARISON)
    if comparison is None:
        missing.append(COMPARISON)
        return ""
    years = _setting(r, "years", "5")
    rho = r.metric(SPEARMAN_METRIC)
    agreement = f" Their rank correlation (Spearman) is <b>{rho:.2f}</b>." if rho is not None else ""
    text = (
        f"<h3>Against the CLV</h3><p>Each customer who bought in the last year gets the method's value: the "
        f"discounted profit of the next {years} years of the customer's cohort from the customer's age "
        f"(<code>revenue_cost_value</code>); a customer who did not buy in the last year gets 0. The CLV is the "
        f"BTYD model's discounted <i>revenue</i> over {r.months} months per customer, the method's value is "
        "<i>profit</i> over years, the same for every customer of a cohort still buying: compare how they rank "
        f"customers, not their levels.{agreement} Per CLV decile (1 the highest):</p>"
    )
    return text + html_table(comparison)
