"""The report's section on the models: the holdout check against the naive baseline, the fitted
parameters, the churn model against its baselines and the churn quality gate."""

from __future__ import annotations

import pandas as pd

from crmvalue import schema
from crmvalue.models import registry
from crmvalue.report.format import (
    escape,
    fmt_count,
    fmt_money,
    fmt_number,
    fmt_pct,
    html_grid,
    html_table,
    is_number,
    missing_note,
    section,
)
from crmvalue.report.run import ReportRun, churn_scorer

MODEL_NAMES = {name: registry.label(name) for name in registry.names()}  # the registered purchase models
# metric key, label, True when higher is better
CHURN_METRICS = [
    ("roc_auc", "ROC AUC: ranks churners above buyers (0.5 = chance)", True),
    ("pr_auc", "PR AUC: precision across recall", True),
    ("brier", "Brier score: error of the probabilities", False),
    ("log_loss", "Log loss", False),
    ("lift_top_decile", "Lift in the riskiest 10%", True),
    ("capture_top_decile", "Share of all churners found in the riskiest 10%", True),
]
CHURN_BASELINES = [
    ("bgnbd_no_purchase", "BG/NBD no-purchase probability"),
    ("bgnbd_p_alive", "BG/NBD 1 − P(alive)"),
    ("recency", "Recency alone"),
]
CHURN_SCORERS = dict([("lightgbm", "LightGBM churn model"), *CHURN_BASELINES])
# the quality gate's comparison on the held-out cut-off: metric key, label, True when higher is better
HELD_OUT_METRICS = [
    ("brier", "Brier score: error of the probabilities (decides)", False),
    ("log_loss", "Log loss", False),
    ("roc_auc", "ROC AUC", True),
]


def best_index(values: list, higher: bool) -> int | None:
    finite = [(v, i) for i, v in enumerate(values) if is_number(v)]
    if not finite:
        return None
    return (max if higher else min)(finite)[1]


def models_section(r: ReportRun):
    model = MODEL_NAMES.get(
        r.params.get(schema.PURCHASE_MODEL_PARAM, ""), r.params.get(schema.PURCHASE_MODEL_PARAM, "the purchase model")
    )
    intro = (
        f"Before its forecasts are trusted, the purchase model ({escape(model)}) is fitted on purchases up to "
        f"{escape(r.cal_end)} and asked to predict each customer's purchases from then to {escape(r.obs_end)}, which it "
        "has not seen. The naive baseline assumes every customer keeps buying at their past rate and never "
        "leaves; the model should have the smaller errors."
    )
    m = r.metric
    parts = []
    selection = r.tags.get("crmvalue.selection")
    if selection:
        parts.append(f"<p><b>Model choice:</b> {escape(selection)}.</p>")
    rows = [
        ("Mean absolute error per customer (purchases)", "mae", fmt_number),
        ("Root mean squared error per customer (purchases)", "rmse", fmt_number),
        ("Total purchases in the holdout", "predicted_total", fmt_count),
        ("Total revenue in the holdout", "predicted_revenue", fmt_money),
    ]
    grid = []
    for label, key, fmt in rows:
        ours, naive = m(schema.holdout_metric(key)), m(schema.baseline_metric(schema.NAIVE_BASELINE, f"holdout.{key}"))
        if ours is None and naive is None:
            continue
        actual_key = key.replace("predicted_", "actual_")
        actual = fmt(m(schema.holdout_metric(actual_key))) if actual_key != key else ""
        cells = [fmt(ours), fmt(naive)]
        target = (
            m(schema.holdout_metric(actual_key)) if actual_key != key else 0.0
        )  # totals: the closer to the actual wins
        if is_number(ours) and is_number(naive) and is_number(target):
            closer = 0 if abs(ours - target) <= abs(naive - target) else 1
            cells[closer] = f"<b>{cells[closer]}</b>"
        grid.append([escape(label)] + cells + [actual])
    if grid:
        parts.append(
            html_grid(
                ["Holdout check (best in bold)", f"{escape(model)} model", "Naive rate baseline", "Actual"],
                grid,
                [False, True, True, True],
            )
        )
    else:
        parts.append(missing_note(["holdout.* metrics"]))
    parts.append(parameters(r))

    churn_intro = (
        f"The churn model estimates the probability that a customer buys nothing in the next {escape(r.horizon)} "
        f"days. It was tested out of time: trained on data before {escape(r.cal_end)}, then scored on who "
        f"bought in the {escape(r.horizon)} days after. Beside it are three simpler scores; the best in each "
        "row is in bold; the model earns its place only where it beats them."
    )
    parts.append(f'<h3>Churn model</h3><p class="intro">{churn_intro}</p>')
    skipped = r.tags.get(schema.CHURN_TAG, "")
    if skipped.startswith("skipped: "):
        parts.append(
            f'<p class="missing">The churn model was skipped in this run: {escape(skipped.removeprefix("skipped: "))}. '
            "The export has no churn probability or risk; train on a longer history (or a later calibration "
            "end) to get them.</p>"
        )
    elif m(schema.churn_metric("roc_auc")) is None:
        parts.append(missing_note(["churn.* metrics (trained with --no-churn?)"]))
    else:
        grid = []
        for key, label, higher in CHURN_METRICS:
            values = [m(schema.churn_metric(key))] + [m(schema.baseline_metric(b, key)) for b, _ in CHURN_BASELINES]
            fmt = fmt_pct if key == "capture_top_decile" else fmt_number
            cells = [fmt(v) for v in values]
            best = best_index(values, higher)
            if best is not None:
                cells[best] = f"<b>{cells[best]}</b>"
            grid.append([escape(label)] + cells)
        parts.append(
            html_grid(
                ["Out-of-time test", "LightGBM churn model"] + [escape(n) for _, n in CHURN_BASELINES],
                grid,
                [False] + [True] * (1 + len(CHURN_BASELINES)),
            )
        )
        rate, rows_ = m(schema.churn_metric("test_churn_rate")), m(schema.churn_metric("test_rows"))
        if rate is not None and rows_ is not None:
            parts.append(
                f'<p class="quiet">Test: {fmt_count(rows_)} customers, of whom {fmt_pct(rate)} bought nothing in the '
                f"{escape(r.horizon)} days.</p>"
            )
        parts.append(churn_gate(r))
        parts.append(risk_by_quadrant(r))
    return section("models", "How good the models are", intro, "".join(parts))


def churn_gate(r: ReportRun) -> str:
    """Which score the export's churn probability is, and the held-out comparison that chose it."""
    scorer = churn_scorer(r)
    if scorer is None:
        return ""
    m = r.metric
    names = ["lightgbm"] + [b for b, _ in CHURN_BASELINES if m(schema.held_out_metric(b, "brier")) is not None]
    grid = []
    for key, label, higher in HELD_OUT_METRICS:
        values = [m(schema.held_out_metric(n, key)) for n in names]
        cells = [fmt_number(v, 4 if key == "brier" else 3) for v in values]
        best = best_index(values, higher)
        if best is not None:
            cells[best] = f"<b>{cells[best]}</b>"
        grid.append([escape(label)] + cells)
    if scorer == "lightgbm":
        verdict = (
            "The LightGBM model beats every simpler score on the held-out check, so the export's churn "
            "probability and risk are the model's."
        )
    else:
        verdict = (
            f"<b>The LightGBM model does not beat the {escape(CHURN_SCORERS.get(scorer, scorer))} on the held-out "
            "check, so the export's churn probability and risk are that simpler score's</b>, calibrated on the "
            "held-out cut-off."
        )
    intro = (
        f"{verdict} Which score the export uses is decided before the test above, on the latest cut-off of the "
        "final training (held out from it): each score is calibrated on one half of its customers and judged on "
        "the other by the Brier score."
    )
    header = f"Held-out check ({fmt_count(m(schema.held_out_metric('lightgbm', 'rows')))} customers; best in bold)"
    table = html_grid(
        [escape(header)] + [escape(CHURN_SCORERS.get(n, n)) for n in names], grid, [False] + [True] * len(names)
    )
    reason = r.tags.get("crmvalue.churn_gate")
    note = f'<p class="quiet">{escape(reason)}</p>' if reason else ""
    return f'<h3>Which churn score the export uses</h3><p class="intro">{intro}</p>{table}{note}'


def parameters(r: ReportRun) -> str:
    rows = []
    for prefix in (r.params.get(schema.PURCHASE_MODEL_PARAM, ""), "gamma_gamma"):
        for name, value in sorted(r.params.items()):
            if not name.startswith(prefix + ".") or name.count(".") != 1:
                continue
            key = name.split(".", 1)[1]
            if key == "penalizer_used":  # not a parameter: the fallback ridge of a boundary fit, shown below
                continue
            low, high = (
                r.metric(schema.ci95_metric(prefix, "lower", key)),
                r.metric(schema.ci95_metric(prefix, "upper", key)),
            )
            interval = f"{fmt_number(low, 4)} – {fmt_number(high, 4)}" if low is not None and high is not None else ""
            try:
                shown = fmt_number(float(value), 4)
            except ValueError:
                shown = value
            rows.append([escape(MODEL_NAMES.get(prefix, "Gamma-Gamma")), escape(key), escape(shown), escape(interval)])
    if not rows:
        return ""
    table = html_grid(["Model", "Parameter", "Estimate", "95% interval"], rows, [False, False, True, True])
    notes = "".join(
        f'<p class="intro">{escape(MODEL_NAMES.get(name.removeprefix("crmvalue.boundary."), "Gamma-Gamma"))}: boundary '
        f"estimate ({escape(why)}); refitted with a ridge of {escape(r.params.get(name.removeprefix('crmvalue.boundary.') + '.penalizer_used', '?'))} "
        "on the log-parameters.</p>"
        for name, why in sorted(r.tags.items())
        if name.startswith("crmvalue.boundary.")
    )
    return f"<details><summary>Fitted parameters</summary>{table}{notes}</details>"


def risk_by_quadrant(r: ReportRun) -> str:
    s = r.scores
    if s is None or not {"quadrant", "churn_risk"} <= set(s.columns):
        return ""
    table = pd.crosstab(s["quadrant"], s["churn_risk"]).reindex(columns=["high", "medium", "low"], fill_value=0)
    table.columns = [f"{c} risk" for c in table.columns]
    table["customers"] = table.sum(axis=1)
    return (
        '<h3>Churn risk by value quadrant</h3><p class="intro">Customers of quadrant A at high risk are the '
        "first to act on.</p>" + html_table(table.reset_index())
    )
