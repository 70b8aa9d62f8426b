"""The report's section on the rolling backtest: the latest finished ``crmvalue backtest`` run of the
report's experiment, its table of mean ± std over the cut-offs per candidate, and its figures."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import pandas as pd

from crmvalue import schema
from crmvalue.backtest.charts import FOLDER, PLOT_BY_CUTOFF, PLOT_DECILE_CALIBRATION
from crmvalue.backtest.tracking import BACKTEST_KIND, SUMMARY_ARTIFACT
from crmvalue.models.predictive_coverage import FREQUENCY_BUCKETS
from crmvalue.report.format import escape, figure, html_grid, missing_note, section
from crmvalue.report.run import ReportRun
from crmvalue.tracking.reader import RunArtifacts

COLUMNS = {
    "revenue.rmse": "Revenue RMSE",
    "revenue.gini": "Normalized Gini",
    "revenue.decile_mape": "Decile MAPE",
    "revenue.total_ratio": "Predicted / actual revenue",
    "revenue.spearman": "Spearman",
    "revenue.mae": "Revenue MAE",
    "purchases.rmse": "Purchases RMSE",
}
BUCKETS = FREQUENCY_BUCKETS
INTRO = (
    "How well each value forecast did out of time, at several <b>cut-offs</b>: every candidate is fitted on the "
    "data up to a cut-off only, forecasts each customer's purchases and revenue over the next horizon, and is "
    "compared with what the customers then did. The candidates are each purchase model × Gamma-Gamma and two "
    "baselines: <code>naive</code> (each customer's own repeat rate × their average spend) and "
    "<code>last_horizon</code> (what the customer did in the horizon before the cut-off). The criteria are "
    "<b>revenue RMSE</b> (error per customer), the <b>normalized Gini</b> (how well the forecast ranks customers "
    "by revenue, 1 perfect, 0 random) and the <b>decile MAPE</b> (customers in ten groups by forecast: the mean "
    "relative error of each group's revenue). MAE is shown but does not choose: it is minimised by the median, "
    "which is 0 for most customers, so it rewards forecasts that are too low."
)


def latest_backtest_run(client, experiment_id: str):
    """The most recent FINISHED ``crmvalue backtest`` run of the experiment, None when there is none."""
    runs = client.search_runs(
        [experiment_id],
        f"tags.`{schema.KIND_TAG}` = '{BACKTEST_KIND}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def _cell(mean: float, std: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:,.{digits}f}" + (f" ± {std:,.{digits}f}" if math.isfinite(std) else "")


def _grid(summary: pd.DataFrame, metrics: dict[str, str], models: list[str]) -> str:
    cells = {(r.model, r.metric): (float(r.mean), float(r.std)) for r in summary.itertuples(index=False)}
    shown = {m: label for m, label in metrics.items() if any((model, m) in cells for model in models)}
    rows = []
    for model in models:
        row = [f"<code>{escape(model)}</code>"]
        for metric in shown:
            mean, std = cells.get((model, metric), (math.nan, math.nan))
            money = metric.startswith("revenue.") and metric.split(".")[1] in ("rmse", "mae", "bias")
            digits = 2 if money else 3
            row.append(escape(_cell(mean, std, digits)))
        rows.append(row)
    return html_grid(["Candidate", *map(escape, shown.values())], rows, [False] + [True] * len(shown))


def _image(art: RunArtifacts, path: str) -> str | None:
    data = art.read_bytes(path)
    return None if data is None else "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def backtest_section(r: ReportRun):
    """The section, from the latest backtest run of the report's experiment (a note when there is none)."""
    run = latest_backtest_run(r.art.client, r.record.experiment_id)
    if run is None:
        body = (
            f'<p class="missing">No finished backtest in experiment <code>{escape(r.experiment)}</code>: run '
            "<code>crmvalue backtest</code> with the same config to measure the forecasts over several cut-offs.</p>"
        )
        return section("backtest", "Backtest of the value forecasts", INTRO, body)
    params, tags = run.data.params, run.data.tags
    folder = Path(r.art.folder) / f"backtest-{run.info.run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    art = RunArtifacts(r.art.client, run.info.run_id, folder, folders=(FOLDER,))
    dates = params.get("backtest.cutoff_dates", "?").replace(",", ", ")
    horizon = params.get("backtest.horizon_days", r.horizon)
    as_of = tags.get(schema.AS_OF_DATE_TAG, "?")
    parts = [
        f"<p>Backtest run <code>{escape(run.info.run_id)}</code> (observation end {escape(as_of)}): cut-offs "
        f"{escape(dates)}, each scored on the next {escape(str(horizon))} days. Mean ± standard deviation over "
        "the cut-offs:</p>"
    ]
    missing = []
    summary = art.table(SUMMARY_ARTIFACT)
    if summary is not None:
        models = list(dict.fromkeys(summary["model"]))
        parts.append(_grid(summary, COLUMNS, models))
        bias = {f"revenue.bias.{b}": f"{b.replace('plus', '+')} repeat purchases" for b in BUCKETS}
        parts.append(
            "<details><summary>Revenue bias (mean predicted − mean actual) by repeat purchases at the cut-off"
            f"</summary>{_grid(summary, bias, models)}</details>"
        )
        coverage = {
            "purchases.coverage": "Purchases",
            "purchases.expected_coverage": "Purchases, as the model expects",
            "revenue.coverage": "Revenue",
            "revenue.expected_coverage": "Revenue, as the model expects",
        }
        for quantity in ("purchases", "revenue"):
            coverage |= {
                f"{quantity}.coverage.{b}": f"{quantity.capitalize()}, {b.replace('plus', '+')} repeat" for b in BUCKETS
            }
        if summary["metric"].isin(list(coverage)).any():
            parts.append(
                "<details><summary>Interval coverage: the share of customers whose actual value fell inside "
                f"their predictive interval</summary>{_grid(summary, coverage, models)}</details>"
            )
    else:
        missing.append(SUMMARY_ARTIFACT)
    captions = {
        PLOT_BY_CUTOFF["revenue.rmse"]: "Revenue RMSE per customer at each cut-off (lower is better).",
        PLOT_BY_CUTOFF["revenue.gini"]: "Normalized Gini of revenue at each cut-off (higher is better).",
        PLOT_DECILE_CALIBRATION: "Mean predicted against mean actual revenue by decile of the forecast, "
        "averaged over the cut-offs: a calibrated forecast lies on the diagonal.",
    }
    shown = []
    for path, caption in captions.items():
        uri = _image(art, path)
        if uri is None:
            missing.append(path)
        else:
            shown.append(figure(uri, caption))
    if shown:
        parts.append(f'<div class="figures">{"".join(shown)}</div>')
    if missing:
        parts.append(missing_note(missing))
    return section("backtest", "Backtest of the value forecasts", INTRO, "".join(parts))
