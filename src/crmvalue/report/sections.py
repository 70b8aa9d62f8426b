"""The report's sections, in the order a CRM manager reads them: the header and headline cards,
the value quadrants, the CRM analyses, and the diagnostic charts (the models' section is
:mod:`crmvalue.report.models`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from crmvalue import schema
from crmvalue.report.format import (
    column_label,
    escape,
    figure,
    fmt_count,
    fmt_money,
    fmt_pct,
    html_table,
    missing_note,
    section,
)
from crmvalue.report.models import CHURN_SCORERS
from crmvalue.report.run import ReportRun, churn_scorer, table_and_chart

QUADRANT_AXES = {"A": "high, high", "B": "high, low", "C": "low, high", "D": "low, low"}
# the quadrant table's leading columns; the medians (segments.quadrant_summary) are absent in older runs
QUADRANT_TABLE_ORDER = [
    "potential, current",
    "treatment",
    "customers",
    "share",
    "median_current_value",
    "median_potential_value",
]


def header(r: ReportRun) -> str:
    started = datetime.fromtimestamp(r.record.start_time / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    source = r.tags.get("crmvalue.data_source") or r.params.get(schema.config_param("data.source")) or "?"
    digest = r.tags.get("crmvalue.data_sha256", "")
    version = r.tags.get(schema.VERSION_TAG, "?")
    commit = r.tags.get("crmvalue.git_commit", "")
    rows = [
        ("Experiment", escape(r.experiment)),
        ("Run", f"<code>{escape(r.record.run_id)}</code> ({escape(r.record.run_name or '')})"),
        ("Date", escape(started)),
        ("Data", escape(source) + (f' <span class="quiet">sha256 {escape(digest[:12])}…</span>' if digest else "")),
        (
            "Customers",
            f"{fmt_count(r.metric(schema.DATA_CUSTOMERS))} customers, {fmt_count(r.metric(schema.DATA_TRANSACTIONS))} purchase rows",
        ),
        ("Periods", f"history to {escape(r.obs_end)}; models checked on {escape(r.cal_end)} → {escape(r.obs_end)}"),
        (
            "Software",
            f"crmvalue {escape(version)}"
            + (f' <span class="quiet">commit {escape(commit[:10])}</span>' if commit else ""),
        ),
    ]
    warning = ""
    if r.record.status != "FINISHED":
        warning = f'<p class="warning">This run is {escape(r.record.status)}, not finished: parts of the report may be missing.</p>'
    warning += red_flags(r)
    meta = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return (
        f'<header><h1>Customer value report: {escape(r.experiment)}</h1>{warning}<dl class="meta">{meta}</dl></header>'
    )


def red_flags(r: ReportRun) -> str:
    """The quality gates' red flags, first thing in the report."""
    flags = []
    gate = r.tags.get("crmvalue.value_gate", "")
    if gate.startswith("red: ") or (not gate and r.metric(schema.VALUE_RED_FLAG)):
        text = gate.removeprefix("red: ") or "the holdout forecast of total purchases is off by more than the limit"
        flags.append(
            f"<b>Red flag on the value model:</b> {escape(text)}. The per-customer ranking may still be useful; "
            "the totals, CLV and predicted value are not to be trusted as they are."
        )
    return "".join(f'<p class="warning">{flag}</p>' for flag in flags)


def headline(r: ReportRun) -> str:
    cards: list[tuple[str, str, str]] = []
    customers = r.metric(schema.DATA_CUSTOMERS)
    cards.append(("Customers", fmt_count(customers), f"bought up to {r.obs_end}"))
    q = r.quadrants
    if q is not None and len(q):
        potential = float(q["potential_value_total"].sum())
        cards.append(
            (
                f"Predicted value, next {r.months} months",
                fmt_money(potential),
                "all customers' discounted lifetime value (CLV)",
            )
        )
        if "A" in q.index:
            a = q.loc["A"]
            held = f", {float(a['potential_value_total']) / potential:.0%} of predicted value" if potential else ""
            cards.append(
                (
                    "Most valuable customers (A)",
                    fmt_count(float(a["customers"])),
                    f"{float(a['share']):.0%} of customers{held}",
                )
            )
    if r.scores is not None and "expected_revenue" in r.scores:
        live = "the boosted value model" if r.record.value_model_live == "gbm" else "BTYD x Gamma-Gamma"
        cards.append(
            (
                f"Expected revenue, next {r.horizon} days",
                fmt_money(float(r.scores["expected_revenue"].sum())),
                f"undiscounted, from {live}",
            )
        )
    pareto = r.metric(schema.PARETO_TOP20_SHARE)
    if pareto is not None:
        cards.append(("Revenue from the top 20%", fmt_pct(pareto, 0), "of revenue comes from a fifth of the customers"))
    predicted, actual = (
        r.metric(schema.holdout_metric("predicted_total")),
        r.metric(schema.holdout_metric("actual_total")),
    )
    if predicted is not None and actual is not None:
        gap = f" ({predicted / actual - 1:+.0%})" if actual else ""
        cards.append(
            (
                "Forecast check: purchases predicted",
                fmt_count(predicted),
                f"against {fmt_count(actual)} made{gap}, {r.cal_end} to {r.obs_end}",
            )
        )
    if r.scores is not None and "churn_risk" in r.scores:
        high = int((r.scores["churn_risk"] == "high").sum())
        threshold = r.params.get(schema.config_param("churn.risk.high"))
        at = f" (probability ≥ {float(threshold):.0%})" if threshold else ""
        scorer = churn_scorer(r)
        by = "" if scorer in (None, "lightgbm") else f"; scored by the {CHURN_SCORERS.get(scorer, scorer)}"
        cards.append(("High churn risk", fmt_count(high), f"may buy nothing in the next {r.horizon} days{at}{by}"))
    if r.scores is not None and "value_at_risk" in r.scores:
        cards.append(
            (
                "Value at risk",
                fmt_money(float(r.scores["value_at_risk"].sum())),
                "churn probability × CLV, summed over all customers",
            )
        )
    body = "".join(
        f'<div class="card"><div class="label">{escape(label)}</div><div class="value">{escape(value)}</div>'
        f'<div class="note">{escape(note)}</div></div>'
        for label, value, note in cards
    )
    return f'<div class="cards">{body}</div>'


def quadrants_section(r: ReportRun) -> tuple[str, str, str]:
    window = r.params.get(schema.config_param("quadrants.current_window_days"), "365")
    intro = (
        f"Every customer is placed on two axes: <b>current value</b>, the revenue of the last {escape(window)} days, and "
        f"<b>potential value</b>, the discounted value they are predicted to bring in the next {escape(r.months)} months."
        f"{escape(quadrant_cuts(r))} Each quadrant gets its own treatment."
    )
    parts = []
    q = r.quadrants
    if q is not None:
        table = q.copy()
        total = float(table["potential_value_total"].sum())
        table["potential_value_share"] = table["potential_value_total"] / total if total else float("nan")
        table.insert(0, "potential, current", [QUADRANT_AXES.get(str(k), "") for k in table.index])
        # the treatment beside the quadrant (it is what the manager acts on), then the typical customer's values
        first = [c for c in QUADRANT_TABLE_ORDER if c in table.columns]
        table = table[first + [c for c in table.columns if c not in first]]
        parts.append(
            html_table(table.reset_index().rename(columns={"potential_value_share": "share of potential value"}))
        )
    uri = r.image(schema.PLOT_QUADRANTS)
    if uri:
        parts.append(figure(uri, "Each dot is a customer; the dashed lines are the cuts between high and low."))
    missing = [
        p
        for p, ok in ((schema.QUADRANT_SUMMARY_ARTIFACT, q is not None), (schema.PLOT_QUADRANTS, uri is not None))
        if not ok
    ]
    if missing:
        parts.append(missing_note(missing))
    return section("quadrants", "Value quadrants", intro, "".join(parts))


def quadrant_cuts(r: ReportRun) -> str:
    """Where high turns to low on each axis, in words, by the rule the run's config params name
    (``quadrants.rule``: ``top_share``, or ``quantile`` for runs from before the rule existed);
    an absolute threshold set in the config is said as such."""
    used = r.record.quadrant_thresholds
    if used is None:
        return ""

    def param(key: str) -> str | None:
        return r.params.get(schema.config_param(f"quadrants.{key}")) or None

    rule = param("rule") or "quantile"
    quantile = float(param("quantile") or 0.5)
    at_quantile = "the median" if quantile == 0.5 else f"the {quantile:.0%} quantile"
    if param("current_threshold"):
        current = f"above {fmt_money(used[0])} (set in the config)"
    elif rule == "top_share" and used[0] == 0:
        current = "any revenue in that window (and no customer has any)"
    elif rule == "top_share":
        current = f"above {fmt_money(used[0])}, the median current value of the customers with any"
    elif used[0] == 0:
        current = f"any revenue in that window ({at_quantile} is 0)"
    else:
        current = f"above {fmt_money(used[0])} ({at_quantile})"
    if param("potential_threshold"):
        potential = f"above {fmt_money(used[1])} (set in the config)"
    elif rule == "top_share":
        share = float(param("potential_top_share") or 0.2)
        potential = f"above {fmt_money(used[1])}: the top {share:.0%} of customers by potential value"
    else:
        potential = f"above {fmt_money(used[1])} ({at_quantile})"
    return f" High current value means {current}; high potential value means {potential}."


def rfm_section(r: ReportRun):
    intro = (
        "Each customer gets a grade of 1 to 5 for <b>recency</b> (R, 5 = bought most recently), <b>frequency</b> (F) "
        "and <b>monetary value</b> (M), and a named segment from those grades. The table shows how many customers "
        "each segment holds and their average grades."
    )
    body = table_and_chart(
        r, schema.analysis_table("rfm_segments"), schema.PLOT_RFM_SEGMENTS, "Customers per RFM segment."
    )
    return section("rfm", "RFM segments", intro, body)


def cpm_section(r: ReportRun):
    intro = (
        "Customer portfolio management puts every customer in one of ten groups: five active profiles, from new "
        "to loyal, and the same five profiles once the customer has lapsed (stopped buying for longer than usual). "
        "Groups 6 to 10 are the customers to win back, the important ones first."
    )
    body = table_and_chart(
        r,
        schema.analysis_table("cpm_groups"),
        schema.PLOT_CPM_GROUPS,
        "Customers per CPM group: green active, grey lapsed.",
    )
    return section("cpm", "CPM groups", intro, body)


def deciles_section(r: ReportRun):
    pareto = r.metric(schema.PARETO_TOP20_SHARE)
    reading = f" Here the top 20% of customers bring <b>{fmt_pct(pareto)}</b> of revenue." if pareto is not None else ""
    intro = (
        "Customers are ranked by revenue and cut into ten groups of equal size, decile 1 being the top spenders. "
        "The cumulative share shows how concentrated revenue is (the 80/20 rule)." + reading
    )
    body = table_and_chart(
        r,
        schema.analysis_table("deciles"),
        schema.PLOT_DECILES,
        "Share of revenue per decile (bars) and cumulative share (line).",
    )
    return section("deciles", "Revenue deciles", intro, body)


def retention_section(r: ReportRun):
    intro = (
        "Per period: how many customers bought, and the <b>retention rate</b>, the share of the previous period's "
        "buyers who bought again, with orders per customer and average order value. The heatmap follows each "
        "cohort (customers by period of first purchase) through the periods after: a row that fades fast is a "
        "cohort that does not come back."
    )
    parts = [
        table_and_chart(
            r,
            schema.analysis_table("retention"),
            schema.PLOT_RETENTION,
            "Active customers per period (bars) and retention rate (line).",
        )
    ]
    cohort = r.art.table(schema.analysis_table("cohort_retention"))
    uri = r.image(schema.PLOT_COHORT_RETENTION)
    if uri:
        parts.append(figure(uri, "Share of each cohort buying in each period after its first purchase."))
    if cohort is not None:
        parts.append(
            f"<details><summary>The cohort table</summary>{html_table(cohort, percent=True, heat=True)}</details>"
        )
    missing = [
        p
        for p, ok in (
            (schema.analysis_table("cohort_retention"), cohort is not None),
            (schema.PLOT_COHORT_RETENTION, uri is not None),
        )
        if not ok
    ]
    if missing:
        parts.append(missing_note(missing))
    return section("retention", "Retention and cohorts", intro, "".join(parts))


def segments_section(r: ReportRun):
    intro = (
        "Customers compared by each attribute of the customer table (<code>--customers</code>): how many, how "
        "many buy again, their mean CLV, churn probability and share of revenue."
    )
    paths = r.art.under("analyses", "segments_", ".csv")
    parts = []
    for path in paths:
        column = Path(path).stem.removeprefix("segments_")
        parts.append(f"<h3>By {escape(column)}</h3>{html_table(r.art.table(path))}")
    if not paths:
        parts.append(missing_note(["analyses/segments_<column>.csv"]))
    return section("segments", "Market segments", intro, "".join(parts))


DIAGNOSTIC_PLOTS = [
    (
        schema.PLOT_CALIBRATION_VS_HOLDOUT,
        "Mean purchases in the holdout, actual against predicted, by how often "
        "customers bought before: the lines should lie close.",
    ),
    (schema.PLOT_TRACKING, "Purchases over time, actual against the model, through calibration and holdout."),
    (schema.PLOT_PERIOD_TRANSACTIONS, "How many customers made 0, 1, 2, … repeat purchases, actual against the model."),
    (schema.PLOT_P_ALIVE_DISTRIBUTION, "How likely each customer is to still be a customer at the observation end."),
    (
        schema.PLOT_P_ALIVE_MATRIX,
        "P(alive) by frequency and recency: frequent buyers who stopped buying are the likeliest to be gone.",
    ),
    (schema.PLOT_EXPECTED_PURCHASES_MATRIX, "Expected purchases by frequency and recency."),
    (schema.PLOT_SPEND_FIT, "Average spend per customer, actual against the Gamma-Gamma spend model."),
    (schema.PLOT_CHURN_ROC, "Churn, out of time: ROC curves of the model and the simpler scores."),
    (schema.PLOT_CHURN_PRECISION_RECALL, "Churn, out of time: precision against recall."),
    (schema.PLOT_CHURN_RELIABILITY, "Churn, out of time: predicted probability against the share that churned."),
    (schema.PLOT_CHURN_FEATURE_IMPORTANCE, "What the churn model relies on most (total gain per feature)."),
]
# charts shown in the sections above, not again among the diagnostics
SECTION_PLOTS = {
    schema.PLOT_QUADRANTS,
    schema.PLOT_RFM_SEGMENTS,
    schema.PLOT_CPM_GROUPS,
    schema.PLOT_DECILES,
    schema.PLOT_RETENTION,
    schema.PLOT_COHORT_RETENTION,
    schema.PLOT_REVENUE_COST,
}


def diagnostics_section(r: ReportRun):
    intro = "How well the models fit the data, for the analyst; the sections above do not depend on reading them."
    known = {p for p, _ in DIAGNOSTIC_PLOTS}
    shown = [(p, c) for p, c in DIAGNOSTIC_PLOTS if p in r.art.paths]
    shown += [
        (p, column_label(Path(p).stem)) for p in r.art.under("plots", suffix=".png") if p not in known | SECTION_PLOTS
    ]
    figures = "".join(figure(uri, c) for p, c in shown if (uri := r.image(p)) is not None)
    body = f'<div class="figures">{figures}</div>' if figures else missing_note(["plots/*.png"])
    return section("diagnostics", "Diagnostic charts", intro, body)
