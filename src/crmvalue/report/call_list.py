"""The report's decisions (issue 18): whom to call first and why, on the first screen, and the
next-action matrix of value quadrant x churn risk with the customers in each cell.

Both read the run's predictions file (``value_at_risk``, ``retention_priority``,
``next_action``; :mod:`crmvalue.decisions`) and its config params (the action matrix,
``config.decisions.actions.<quadrant>.<risk>``). A run without churn scores has no value at risk:
it gets one line that says why.
"""

from __future__ import annotations

import pandas as pd

from crmvalue import schema
from crmvalue.decisions import QUADRANT_LABELS, RISK_LEVELS
from crmvalue.report.format import escape, fmt_count, fmt_money, fmt_pct, html_grid, html_table, missing_note, section
from crmvalue.report.run import ReportRun

TOP = 10  # the customers listed on the first screen
WIDE = 100  # the wider call list whose value at risk the first screen quotes
# the first screen's table: the order a caller reads it
CALL_COLUMNS = [
    "retention_priority",
    "customer_id",
    "value_at_risk",
    "clv",
    "churn_probability",
    "churn_risk",
    "quadrant",
    "next_action",
]
QUADRANT_ROWS = {
    "A": "A: high potential, high current",
    "B": "B: high potential, low current",
    "C": "C: low potential, high current",
    "D": "D: low potential, low current",
}


def has_decisions(r: ReportRun) -> bool:
    return r.scores is not None and all(c in r.scores for c in schema.names(schema.DECISIONS))


def no_decisions(r: ReportRun) -> str:
    """One line: why the run has no value at risk, or the file it lacks."""
    churn = r.tags.get(schema.CHURN_TAG, "")
    if churn == "off":
        why = "this run was trained without the churn model (churn.enabled: false or --no-churn)"
    elif churn.startswith("skipped: "):
        why = f"the churn model was skipped in this run: {churn.removeprefix('skipped: ')}"
    elif r.scores is None:
        return missing_note([schema.DEFAULT_PREDICTIONS_ARTIFACT + " (the run's predictions file)"])
    elif "churn_probability" in r.scores:
        why = "this run was scored by a crmvalue from before value at risk; train again to get the call list"
    else:
        why = "this run has no churn scores"
    return f'<p class="missing">No call list: value at risk needs each customer\'s churn probability, and {escape(why)}.</p>'


def value_at_risk_sentence(r: ReportRun, scores: pd.DataFrame) -> str:
    """How value at risk is defined, and how much of it the first customers of the list carry."""
    ranked = scores.sort_values("retention_priority")["value_at_risk"].astype(float)
    total = float(ranked.sum())
    share = (lambda part: f" ({fmt_pct(part / total, 0)} of the total)") if total > 0 else (lambda part: "")
    top = float(ranked.head(TOP).sum())
    carried = f"The top {TOP} carry {fmt_money(top)} of value at risk{share(top)}"
    if len(ranked) > TOP:
        wide = min(WIDE, len(ranked))
        part = float(ranked.head(wide).sum())
        carried += f", the top {wide} {fmt_money(part)}{share(part)}"
    carried += f", of {fmt_money(total)} across all {fmt_count(len(ranked))} customers."
    return (
        f"<b>Value at risk</b> = churn probability (the chance of no purchase in the next {escape(r.horizon)} days) "
        f"× CLV (the discounted value predicted for the next {escape(r.months)} months): the value expected to be "
        "lost if nothing is done. Customers are called in that order, the largest value at risk first (ties: the higher CLV, "
        f"then the customer id); the next action follows from their value quadrant and churn risk. {escape(carried)}"
    )


def call_first(r: ReportRun) -> str:
    """The first screen, under the header: the top customers to call, why, and what they carry."""
    title = "<h2>Whom to call first</h2>"
    if not has_decisions(r):
        return f'<section id="call-first">{title}{no_decisions(r)}</section>'
    assert r.scores is not None  # has_decisions
    scores = r.scores
    top = scores.nsmallest(TOP, "retention_priority")[[c for c in CALL_COLUMNS if c in scores]]
    return (
        f'<section id="call-first">{title}<p class="intro">{value_at_risk_sentence(r, scores)}</p>'
        f"{html_table(top)}</section>"
    )


def action_labels(r: ReportRun) -> dict[tuple[str, str], str]:
    """(quadrant, risk) -> action: the run's logged matrix, else the labels its scores show."""
    labels = {}
    for quadrant in QUADRANT_LABELS:
        for risk in RISK_LEVELS:
            logged = r.params.get(schema.config_param(f"decisions.actions.{quadrant}.{risk}"))
            if logged:
                labels[quadrant, risk] = logged
    if r.scores is not None and "next_action" in r.scores:
        seen = r.scores.groupby(["quadrant", "churn_risk"])["next_action"].first()
        for key, label in seen.items():
            labels.setdefault((str(key[0]), str(key[1])), str(label))
    return labels


def actions_section(r: ReportRun) -> tuple[str, str, str]:
    intro = (
        "The next action of each customer follows from their value quadrant and churn risk (seed 003's treatment of "
        "each quadrant, split by risk: a valuable customer at high risk is saved first, a low-value one let go). "
        "Each cell shows the action, how many customers get it and the value at risk they carry. The matrix is set "
        "in the config (<code>decisions: actions:</code>)."
    )
    if not has_decisions(r):
        return section("actions", "Next actions", intro, no_decisions(r))
    assert r.scores is not None  # has_decisions
    scores = r.scores
    labels = action_labels(r)
    grouped = scores.groupby(["quadrant", "churn_risk"])
    counts, at_risk = grouped.size(), grouped["value_at_risk"].sum()
    rows = []
    for quadrant in QUADRANT_LABELS:
        row = [escape(QUADRANT_ROWS[quadrant])]
        for risk in RISK_LEVELS:
            n = int(counts.get((quadrant, risk), 0))
            value = float(at_risk.get((quadrant, risk), 0.0))
            detail = f"{fmt_count(n)} customer{'' if n == 1 else 's'}" + (f", {fmt_money(value)} at risk" if n else "")
            row.append(
                f'<b>{escape(labels.get((quadrant, risk), "–"))}</b><br><span class="quiet">{escape(detail)}</span>'
            )
        rows.append(row)
    header = ["Value quadrant", *(f"{risk.capitalize()} churn risk" for risk in RISK_LEVELS)]
    return section("actions", "Next actions", intro, html_grid(header, rows, [False] * len(header)))
