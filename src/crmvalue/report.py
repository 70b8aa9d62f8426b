"""The HTML report of one ``crmvalue train`` run, written for a CRM manager.

One self-contained file: tables rendered from the run's CSV artifacts, its PNG charts embedded
as base64 data URIs, inline CSS, no JavaScript and no network resources, so the file can be
mailed, archived and opened anywhere. A section whose artifacts the run does not hold (the CRM
analyses of an older run, the churn model of a ``--no-churn`` run) says "not in this run".

``latest`` is the most recent FINISHED top-level run that ``crmvalue train`` logged (it has the
``crmvalue.version`` tag; the nested child runs of ``--model auto`` are skipped), across every
experiment of the store, or within one experiment when it is named.
"""

from __future__ import annotations

import base64
import html
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from crmvalue.errors import CrmvalueError
from crmvalue.io import atomic_write
from crmvalue.store import get_run as _get_run
from crmvalue.store import latest_run_id
from crmvalue.store import open_store as _store
from crmvalue.tracking import resolve_tracking_uri

LATEST = "latest"
MISSING = "Not in this run"
# folders of a run whose files the report may use; others (logged models) are never listed
ARTIFACT_FOLDERS = ("plots", "analyses", "diagnostics", "churn")

PERCENT_WORDS = {"share", "rate", "probability", "pct", "percent"}
MONEY_WORDS = {"revenue", "sales", "value", "spend", "clv", "monetary", "amount", "price"}
LABELS = {
    "current_value_total": "Current value (total)",
    "potential_value_total": "Potential value (total)",
    "share": "Share of customers",
    "rfm_segment": "RFM segment",
    "mean_r": "Mean R",
    "mean_f": "Mean F",
    "mean_m": "Mean M",
    "cpm_group": "CPM group",
    "cpm_label": "Group",
    "sales_share": "Share of sales",
    "value_decile": "Decile",
    "average_frequency": "Orders per customer",
    "mean_clv": "Mean CLV",
}
MODEL_NAMES = {"bgnbd": "BG/NBD", "mbgnbd": "MBG/NBD", "paretonbd": "Pareto/NBD"}
QUADRANT_AXES = {"A": "high, high", "B": "high, low", "C": "low, high", "D": "low, low"}
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


# ------------------------------------------------------------------------------------------
# The store: which run, and its contents
# ------------------------------------------------------------------------------------------


class _Artifacts:
    """The files of one run: listed once, downloaded on demand into ``folder``."""

    def __init__(self, client, run_id: str, folder: Path):
        self.client, self.run_id, self.folder = client, run_id, folder
        self.paths: set[str] = set()
        for item in client.list_artifacts(run_id):
            if not item.is_dir:
                self.paths.add(item.path)
            elif item.path in ARTIFACT_FOLDERS:
                self.paths.update(a.path for a in client.list_artifacts(run_id, item.path) if not a.is_dir)

    def _local(self, path: str) -> Path | None:
        if path not in self.paths:
            return None
        return Path(self.client.download_artifacts(self.run_id, path, str(self.folder)))

    def table(self, path: str, **read_kw) -> pd.DataFrame | None:
        local = self._local(path)
        if local is None:
            return None
        if local.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(local, **read_kw)
        frame = pd.read_csv(local, **read_kw)
        return frame.rename(columns={c: "" for c in frame.columns if str(c).startswith("Unnamed: ")})

    def image(self, path: str) -> str | None:
        local = self._local(path)
        if local is None:
            return None
        return "data:image/png;base64," + base64.b64encode(local.read_bytes()).decode("ascii")

    def under(self, folder: str, prefix: str = "", suffix: str = "") -> list[str]:
        start = f"{folder}/{prefix}"
        return sorted(p for p in self.paths if p.startswith(start) and p.endswith(suffix))


# ------------------------------------------------------------------------------------------
# HTML pieces
# ------------------------------------------------------------------------------------------

_e = html.escape


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and pd.notna(value)


def _count(value) -> str:
    return f"{value:,.0f}" if _is_number(value) else "–"


def _money(value) -> str:
    if not _is_number(value):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}"


def _pct(value, digits: int = 1) -> str:
    return f"{value:.{digits}%}" if _is_number(value) else "–"


def _number(value, digits: int = 3) -> str:
    return f"{value:,.{digits}f}" if _is_number(value) else "–"


def _label(name) -> str:
    name = str(name)
    if name in LABELS:
        return LABELS[name]
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _column_formatter(name, values: pd.Series, percent: bool = False):
    """How to show a CSV column: shares as %, money and counts with thousands separators."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return lambda v: "" if pd.isna(v) else str(v)
    finite = values.dropna().astype(float)
    words = set(re.split(r"[^a-z0-9]+", str(name).lower()))
    if percent or (words & PERCENT_WORDS and finite.between(0, 1 + 1e-9).all()):  # a cumulative sum may end at 1 + ε
        return lambda v: _pct(float(v)) if pd.notna(v) else "–"
    if (finite == finite.round()).all():
        return lambda v: _count(float(v)) if pd.notna(v) else "–"
    largest = finite.abs().max() if len(finite) else 0.0
    digits = (0 if largest >= 1000 else 2) if words & MONEY_WORDS else (2 if largest >= 1 else 3)
    return lambda v: f"{float(v):,.{digits}f}" if pd.notna(v) else "–"


_NUM = ' class="num"'
_NOWRAP = ' class="nowrap"'


def _grid(
    header: list[str],
    rows: list[list[str]],
    numeric: list[bool],
    heat: list[list[float | None]] | None = None,
    short: list[bool] | None = None,
) -> str:
    """A table from cells that are already HTML; ``heat`` shades cells by a 0-1 value; ``short`` text never wraps."""
    short = short or [False] * len(header)
    head = "".join(f"<th{_NUM if n else ''}>{h}</th>" for h, n in zip(header, numeric))
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, (cell, n, nowrap) in enumerate(zip(row, numeric, short)):
            style = ""
            if heat is not None and heat[i][j] is not None:
                level = heat[i][j]
                style = f' style="background: rgba(68,119,170,{0.08 + 0.8 * level:.2f}); color: {"#fff" if level > 0.55 else "inherit"}"'
            cells.append(f"<td{_NUM if n else _NOWRAP if nowrap else ''}{style}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _table(frame: pd.DataFrame, percent: bool = False, heat: bool = False) -> str:
    """A CSV table with its columns formatted by :func:`_column_formatter`."""
    formatters = [
        _column_formatter(c, frame[c], percent and pd.api.types.is_numeric_dtype(frame[c])) for c in frame.columns
    ]
    numeric = [
        pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame.columns
    ]
    rows = [[_e(f(v)) for f, v in zip(formatters, record)] for record in frame.itertuples(index=False)]
    # labels such as a period (1997-01) or a segment name read badly when broken over two lines
    short = [not n and all(len(row[j]) <= 24 for row in rows) for j, n in enumerate(numeric)]
    shades = None
    if heat:
        shades = [
            [float(v) if n and pd.notna(v) else None for v, n in zip(record, numeric)]
            for record in frame.itertuples(index=False)
        ]
    return _grid([_e(_label(c)) for c in frame.columns], rows, numeric, shades, short)


def _figure(uri: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _missing(paths: list[str]) -> str:
    return f'<p class="missing">{MISSING}: ' + ", ".join(f"<code>{_e(p)}</code>" for p in paths) + ".</p>"


def _section(anchor: str, title: str, intro: str, body: str) -> tuple[str, str, str]:
    return anchor, title, f'<section id="{anchor}"><h2>{_e(title)}</h2><p class="intro">{intro}</p>{body}</section>'


def _table_and_chart(art: _Artifacts, table_path: str, plot_path: str, caption: str, **table_kw) -> str:
    frame = art.table(table_path)
    uri = art.image(plot_path)
    missing = [p for p, found in ((table_path, frame is not None), (plot_path, uri is not None)) if not found]
    parts = []
    if frame is not None:
        parts.append(_table(frame, **table_kw))
    if uri is not None:
        parts.append(_figure(uri, caption))
    if missing:
        parts.append(_missing(missing))
    return "".join(parts)


# ------------------------------------------------------------------------------------------
# The sections, in the order a CRM manager reads them
# ------------------------------------------------------------------------------------------


class _Run:
    """What the sections need of a run: its names, params, metrics and files."""

    def __init__(self, run, experiment: str, art: _Artifacts):
        self.info, self.experiment, self.art = run.info, experiment, art
        self.params, self.metrics, self.tags = run.data.params, run.data.metrics, run.data.tags
        self.cal_end = self.params.get("config.calibration_end", "?")
        self.obs_end = self.params.get("config.observation_end", "?")
        self.horizon = self.params.get("config.horizon_days", "90")
        self.months = self.params.get("config.clv.months", "12")
        self.quadrants = art.table("quadrant_summary.csv", index_col="quadrant")
        self.scores = self._scores()

    def _scores(self) -> pd.DataFrame | None:
        """Quadrant and churn risk per customer, from the predictions file the run logged."""
        name = Path(self.params.get("config.out") or "predictions.csv").name
        if name not in self.art.paths:
            return None
        try:
            return (
                self.art.table(name, columns=["quadrant", "churn_risk"])
                if name.endswith((".parquet", ".pq"))
                else self.art.table(name, usecols=lambda c: c in ("quadrant", "churn_risk"))
            )
        except (ValueError, KeyError):
            return None

    def metric(self, name: str):
        return self.metrics.get(name)


def _header(r: _Run) -> str:
    started = datetime.fromtimestamp(r.info.start_time / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    source = r.tags.get("crmvalue.data_source") or r.params.get("config.data.source") or "?"
    digest = r.tags.get("crmvalue.data_sha256", "")
    version = r.tags.get("crmvalue.version", "?")
    commit = r.tags.get("crmvalue.git_commit", "")
    rows = [
        ("Experiment", _e(r.experiment)),
        ("Run", f"<code>{_e(r.info.run_id)}</code> ({_e(r.info.run_name or '')})"),
        ("Date", _e(started)),
        ("Data", _e(source) + (f' <span class="quiet">sha256 {_e(digest[:12])}…</span>' if digest else "")),
        (
            "Customers",
            f"{_count(r.metric('data.customers'))} customers, {_count(r.metric('data.transactions'))} purchase rows",
        ),
        ("Periods", f"history to {_e(r.obs_end)}; models checked on {_e(r.cal_end)} → {_e(r.obs_end)}"),
        (
            "Software",
            f"crmvalue {_e(version)}" + (f' <span class="quiet">commit {_e(commit[:10])}</span>' if commit else ""),
        ),
    ]
    warning = ""
    if r.info.status != "FINISHED":
        warning = (
            f'<p class="warning">This run is {_e(r.info.status)}, not finished: parts of the report may be missing.</p>'
        )
    warning += _flags(r)
    meta = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<header><h1>Customer value report: {_e(r.experiment)}</h1>{warning}<dl class="meta">{meta}</dl></header>'


def _flags(r: _Run) -> str:
    """The quality gates' red flags, first thing in the report."""
    flags = []
    gate = r.tags.get("crmvalue.value_gate", "")
    if gate.startswith("red: ") or (not gate and r.metric("quality.value_red_flag")):
        text = gate.removeprefix("red: ") or "the holdout forecast of total purchases is off by more than the limit"
        flags.append(
            f"<b>Red flag on the value model:</b> {_e(text)}. The per-customer ranking may still be useful; "
            "the totals, CLV and predicted value are not to be trusted as they are."
        )
    return "".join(f'<p class="warning">{flag}</p>' for flag in flags)


def _churn_scorer(r: _Run) -> str | None:
    """The scorer the churn quality gate made live, when the run had a churn model."""
    return r.tags.get("crmvalue.churn_scorer")


def _headline(r: _Run) -> str:
    cards: list[tuple[str, str, str]] = []
    customers = r.metric("data.customers")
    cards.append(("Customers", _count(customers), f"bought up to {r.obs_end}"))
    q = r.quadrants
    if q is not None and len(q):
        potential = float(q["potential_value_total"].sum())
        cards.append(
            (
                f"Predicted value, next {r.months} months",
                _money(potential),
                "all customers' discounted lifetime value (CLV)",
            )
        )
        if "A" in q.index:
            a = q.loc["A"]
            held = f", {float(a['potential_value_total']) / potential:.0%} of predicted value" if potential else ""
            cards.append(
                (
                    "Most valuable customers (A)",
                    _count(float(a["customers"])),
                    f"{float(a['share']):.0%} of customers{held}",
                )
            )
    pareto = r.metric("analyses.pareto_top20_share")
    if pareto is not None:
        cards.append(("Revenue from the top 20%", _pct(pareto, 0), "of revenue comes from a fifth of the customers"))
    predicted, actual = r.metric("holdout.predicted_total"), r.metric("holdout.actual_total")
    if predicted is not None and actual is not None:
        gap = f" ({predicted / actual - 1:+.0%})" if actual else ""
        cards.append(
            (
                "Forecast check: purchases predicted",
                _count(predicted),
                f"against {_count(actual)} made{gap}, {r.cal_end} to {r.obs_end}",
            )
        )
    if r.scores is not None and "churn_risk" in r.scores:
        high = int((r.scores["churn_risk"] == "high").sum())
        threshold = r.params.get("config.churn.risk.high")
        at = f" (probability ≥ {float(threshold):.0%})" if threshold else ""
        scorer = _churn_scorer(r)
        by = "" if scorer in (None, "lightgbm") else f"; scored by the {CHURN_SCORERS.get(scorer, scorer)}"
        cards.append(("High churn risk", _count(high), f"may buy nothing in the next {r.horizon} days{at}{by}"))
    body = "".join(
        f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
        f'<div class="note">{_e(note)}</div></div>'
        for label, value, note in cards
    )
    return f'<div class="cards">{body}</div>'


def _quadrants(r: _Run) -> tuple[str, str, str]:
    window = r.params.get("config.quadrants.current_window_days", "365")
    intro = (
        f"Every customer is placed on two axes: <b>current value</b>, the revenue of the last {_e(window)} days, and "
        f"<b>potential value</b>, the discounted value they are predicted to bring in the next {_e(r.months)} months."
        f"{_e(_quadrant_cuts(r))} Each quadrant gets its own treatment."
    )
    parts = []
    q = r.quadrants
    if q is not None:
        table = q.copy()
        total = float(table["potential_value_total"].sum())
        table["potential_value_share"] = table["potential_value_total"] / total if total else float("nan")
        table.insert(0, "potential, current", [QUADRANT_AXES.get(str(k), "") for k in table.index])
        # the treatment beside the quadrant: it is what the manager acts on
        first = ["potential, current", "treatment"]
        table = table[first + [c for c in table.columns if c not in first]]
        parts.append(_table(table.reset_index().rename(columns={"potential_value_share": "share of potential value"})))
    uri = r.art.image("plots/quadrants.png")
    if uri:
        parts.append(_figure(uri, "Each dot is a customer; the dashed lines are the cuts between high and low."))
    missing = [
        p for p, ok in (("quadrant_summary.csv", q is not None), ("plots/quadrants.png", uri is not None)) if not ok
    ]
    if missing:
        parts.append(_missing(missing))
    return _section("quadrants", "Value quadrants", intro, "".join(parts))


def _quadrant_cuts(r: _Run) -> str:
    """Where high turns to low on each axis, in words."""
    used = [r.params.get(f"quadrants.{axis}_threshold_used") for axis in ("current", "potential")]
    if None in used:
        return ""
    quantile = float(r.params.get("config.quadrants.quantile") or 0.5)
    rule = "the median" if quantile == 0.5 else f"the {quantile:.0%} quantile"
    how = [
        "set in the config" if r.params.get(f"config.quadrants.{axis}_threshold") else rule
        for axis in ("current", "potential")
    ]
    current = (
        f"any revenue in that window ({how[0]} is 0)"
        if float(used[0]) == 0
        else f"above {_money(float(used[0]))} ({how[0]})"
    )
    return f" High current value means {current}; high potential value means above {_money(float(used[1]))} ({how[1]})."


def _rfm(r: _Run):
    intro = (
        "Each customer gets a grade of 1 to 5 for <b>recency</b> (R, 5 = bought most recently), <b>frequency</b> (F) "
        "and <b>monetary value</b> (M), and a named segment from those grades. The table shows how many customers "
        "each segment holds and their average grades."
    )
    body = _table_and_chart(r.art, "analyses/rfm_segments.csv", "plots/rfm_segments.png", "Customers per RFM segment.")
    return _section("rfm", "RFM segments", intro, body)


def _cpm(r: _Run):
    intro = (
        "Customer portfolio management puts every customer in one of ten groups: five active profiles, from new "
        "to loyal, and the same five profiles once the customer has lapsed (stopped buying for longer than usual). "
        "Groups 6 to 10 are the customers to win back, the important ones first."
    )
    body = _table_and_chart(
        r.art, "analyses/cpm_groups.csv", "plots/cpm_groups.png", "Customers per CPM group: green active, grey lapsed."
    )
    return _section("cpm", "CPM groups", intro, body)


def _deciles(r: _Run):
    pareto = r.metric("analyses.pareto_top20_share")
    reading = f" Here the top 20% of customers bring <b>{_pct(pareto)}</b> of revenue." if pareto is not None else ""
    intro = (
        "Customers are ranked by revenue and cut into ten groups of equal size, decile 1 being the top spenders. "
        "The cumulative share shows how concentrated revenue is (the 80/20 rule)." + reading
    )
    body = _table_and_chart(
        r.art,
        "analyses/deciles.csv",
        "plots/deciles.png",
        "Share of revenue per decile (bars) and cumulative share (line).",
    )
    return _section("deciles", "Revenue deciles", intro, body)


def _retention(r: _Run):
    intro = (
        "Per period: how many customers bought, and the <b>retention rate</b>, the share of the previous period's "
        "buyers who bought again, with orders per customer and average order value. The heatmap follows each "
        "cohort (customers by period of first purchase) through the periods after: a row that fades fast is a "
        "cohort that does not come back."
    )
    parts = [
        _table_and_chart(
            r.art,
            "analyses/retention.csv",
            "plots/retention.png",
            "Active customers per period (bars) and retention rate (line).",
        )
    ]
    cohort = r.art.table("analyses/cohort_retention.csv")
    uri = r.art.image("plots/cohort_retention.png")
    if uri:
        parts.append(_figure(uri, "Share of each cohort buying in each period after its first purchase."))
    if cohort is not None:
        parts.append(f"<details><summary>The cohort table</summary>{_table(cohort, percent=True, heat=True)}</details>")
    missing = [
        p
        for p, ok in (
            ("analyses/cohort_retention.csv", cohort is not None),
            ("plots/cohort_retention.png", uri is not None),
        )
        if not ok
    ]
    if missing:
        parts.append(_missing(missing))
    return _section("retention", "Retention and cohorts", intro, "".join(parts))


def _segments(r: _Run):
    intro = (
        "Customers compared by each attribute of the customer table (<code>--customers</code>): how many, how "
        "many buy again, their mean CLV, churn probability and share of revenue."
    )
    paths = r.art.under("analyses", "segments_", ".csv")
    parts = []
    for path in paths:
        column = Path(path).stem.removeprefix("segments_")
        parts.append(f"<h3>By {_e(column)}</h3>{_table(r.art.table(path))}")
    if not paths:
        parts.append(_missing(["analyses/segments_<column>.csv"]))
    return _section("segments", "Market segments", intro, "".join(parts))


def _best(values: list, higher: bool) -> int | None:
    finite = [(v, i) for i, v in enumerate(values) if _is_number(v)]
    if not finite:
        return None
    return (max if higher else min)(finite)[1]


def _model_metrics(r: _Run):
    model = MODEL_NAMES.get(r.params.get("purchase_model", ""), r.params.get("purchase_model", "the purchase model"))
    intro = (
        f"Before its forecasts are trusted, the purchase model ({_e(model)}) is fitted on purchases up to "
        f"{_e(r.cal_end)} and asked to predict each customer's purchases from then to {_e(r.obs_end)}, which it "
        "has not seen. The naive baseline assumes every customer keeps buying at their past rate and never "
        "leaves; the model should have the smaller errors."
    )
    m = r.metric
    parts = []
    selection = r.tags.get("crmvalue.selection")
    if selection:
        parts.append(f"<p><b>Model choice:</b> {_e(selection)}.</p>")
    base = "baseline.naive_rate.holdout."
    rows = [
        ("Mean absolute error per customer (purchases)", "mae", _number),
        ("Root mean squared error per customer (purchases)", "rmse", _number),
        ("Total purchases in the holdout", "predicted_total", _count),
        ("Total revenue in the holdout", "predicted_revenue", _money),
    ]
    grid = []
    for label, key, fmt in rows:
        ours, naive = m(f"holdout.{key}"), m(base + key)
        if ours is None and naive is None:
            continue
        actual_key = key.replace("predicted_", "actual_")
        actual = fmt(m(f"holdout.{actual_key}")) if actual_key != key else ""
        cells = [fmt(ours), fmt(naive)]
        target = m(f"holdout.{actual_key}") if actual_key != key else 0.0  # totals: the closer to the actual wins
        if _is_number(ours) and _is_number(naive) and _is_number(target):
            best = 0 if abs(ours - target) <= abs(naive - target) else 1
            cells[best] = f"<b>{cells[best]}</b>"
        grid.append([_e(label)] + cells + [actual])
    if grid:
        parts.append(
            _grid(
                ["Holdout check (best in bold)", f"{_e(model)} model", "Naive rate baseline", "Actual"],
                grid,
                [False, True, True, True],
            )
        )
    else:
        parts.append(_missing(["holdout.* metrics"]))
    parts.append(_parameters(r))

    churn_intro = (
        f"The churn model estimates the probability that a customer buys nothing in the next {_e(r.horizon)} "
        f"days. It was tested out of time: trained on data before {_e(r.cal_end)}, then scored on who "
        f"bought in the {_e(r.horizon)} days after. Beside it are three simpler scores; the best in each "
        "row is in bold; the model earns its place only where it beats them."
    )
    parts.append(f'<h3>Churn model</h3><p class="intro">{churn_intro}</p>')
    skipped = r.tags.get("crmvalue.churn", "")
    if skipped.startswith("skipped: "):
        parts.append(
            f'<p class="missing">The churn model was skipped in this run: {_e(skipped.removeprefix("skipped: "))}. '
            "The export has no churn probability or risk; train on a longer history (or a later calibration "
            "end) to get them.</p>"
        )
    elif m("churn.roc_auc") is None:
        parts.append(_missing(["churn.* metrics (trained with --no-churn?)"]))
    else:
        grid = []
        for key, label, higher in CHURN_METRICS:
            values = [m(f"churn.{key}")] + [m(f"baseline.{b}.{key}") for b, _ in CHURN_BASELINES]
            fmt = _pct if key == "capture_top_decile" else _number
            cells = [fmt(v) for v in values]
            best = _best(values, higher)
            if best is not None:
                cells[best] = f"<b>{cells[best]}</b>"
            grid.append([_e(label)] + cells)
        parts.append(
            _grid(
                ["Out-of-time test", "LightGBM churn model"] + [_e(n) for _, n in CHURN_BASELINES],
                grid,
                [False] + [True] * (1 + len(CHURN_BASELINES)),
            )
        )
        rate, rows_ = m("churn.test_churn_rate"), m("churn.test_rows")
        if rate is not None and rows_ is not None:
            parts.append(
                f'<p class="quiet">Test: {_count(rows_)} customers, of whom {_pct(rate)} bought nothing in the '
                f"{_e(r.horizon)} days.</p>"
            )
        parts.append(_churn_gate(r))
        parts.append(_risk_by_quadrant(r))
    return _section("models", "How good the models are", intro, "".join(parts))


def _churn_gate(r: _Run) -> str:
    """Which score the export's churn probability is, and the held-out comparison that chose it."""
    scorer = _churn_scorer(r)
    if scorer is None:
        return ""
    m = r.metric
    names = ["lightgbm"] + [b for b, _ in CHURN_BASELINES if m(f"baseline.{b}.held_out.brier") is not None]
    grid = []
    for key, label, higher in HELD_OUT_METRICS:
        values = [m(f"churn.held_out.{key}")] + [m(f"baseline.{b}.held_out.{key}") for b in names[1:]]
        cells = [_number(v, 4 if key == "brier" else 3) for v in values]
        best = _best(values, higher)
        if best is not None:
            cells[best] = f"<b>{cells[best]}</b>"
        grid.append([_e(label)] + cells)
    if scorer == "lightgbm":
        verdict = (
            "The LightGBM model beats every simpler score on the held-out check, so the export's churn "
            "probability and risk are the model's."
        )
    else:
        verdict = (
            f"<b>The LightGBM model does not beat the {_e(CHURN_SCORERS.get(scorer, scorer))} on the held-out "
            "check, so the export's churn probability and risk are that simpler score's</b>, calibrated on the "
            "held-out cut-off."
        )
    intro = (
        f"{verdict} Which score the export uses is decided before the test above, on the latest cut-off of the "
        "final training (held out from it): each score is calibrated on one half of its customers and judged on "
        "the other by the Brier score."
    )
    header = f"Held-out check ({_count(m('churn.held_out.rows'))} customers; best in bold)"
    table = _grid([_e(header)] + [_e(CHURN_SCORERS.get(n, n)) for n in names], grid, [False] + [True] * len(names))
    reason = r.tags.get("crmvalue.churn_gate")
    note = f'<p class="quiet">{_e(reason)}</p>' if reason else ""
    return f'<h3>Which churn score the export uses</h3><p class="intro">{intro}</p>{table}{note}'


def _parameters(r: _Run) -> str:
    rows = []
    for prefix in (r.params.get("purchase_model", ""), "gamma_gamma"):
        for name, value in sorted(r.params.items()):
            if not name.startswith(prefix + ".") or name.count(".") != 1:
                continue
            key = name.split(".", 1)[1]
            if key == "penalizer_used":  # not a parameter: the fallback ridge of a boundary fit, shown below
                continue
            low, high = r.metric(f"{prefix}.ci95_lower.{key}"), r.metric(f"{prefix}.ci95_upper.{key}")
            interval = f"{_number(low, 4)} – {_number(high, 4)}" if low is not None and high is not None else ""
            try:
                shown = _number(float(value), 4)
            except ValueError:
                shown = value
            rows.append([_e(MODEL_NAMES.get(prefix, "Gamma-Gamma")), _e(key), _e(shown), _e(interval)])
    if not rows:
        return ""
    table = _grid(["Model", "Parameter", "Estimate", "95% interval"], rows, [False, False, True, True])
    notes = "".join(
        f'<p class="intro">{_e(MODEL_NAMES.get(name.removeprefix("crmvalue.boundary."), "Gamma-Gamma"))}: boundary '
        f"estimate ({_e(why)}); refitted with a ridge of {_e(r.params.get(name.removeprefix('crmvalue.boundary.') + '.penalizer_used', '?'))} "
        "on the log-parameters.</p>"
        for name, why in sorted(r.tags.items())
        if name.startswith("crmvalue.boundary.")
    )
    return f"<details><summary>Fitted parameters</summary>{table}{notes}</details>"


def _risk_by_quadrant(r: _Run) -> str:
    s = r.scores
    if s is None or not {"quadrant", "churn_risk"} <= set(s.columns):
        return ""
    table = pd.crosstab(s["quadrant"], s["churn_risk"]).reindex(columns=["high", "medium", "low"], fill_value=0)
    table.columns = [f"{c} risk" for c in table.columns]
    table["customers"] = table.sum(axis=1)
    return (
        '<h3>Churn risk by value quadrant</h3><p class="intro">Customers of quadrant A at high risk are the '
        "first to act on.</p>" + _table(table.reset_index())
    )


DIAGNOSTIC_PLOTS = [
    (
        "plots/calibration_vs_holdout.png",
        "Mean purchases in the holdout, actual against predicted, by how often "
        "customers bought before: the lines should lie close.",
    ),
    ("plots/tracking.png", "Purchases over time, actual against the model, through calibration and holdout."),
    ("plots/period_transactions.png", "How many customers made 0, 1, 2, … repeat purchases, actual against the model."),
    ("plots/p_alive_distribution.png", "How likely each customer is to still be a customer at the observation end."),
    (
        "plots/p_alive_matrix.png",
        "P(alive) by frequency and recency: frequent buyers who stopped buying are the likeliest to be gone.",
    ),
    ("plots/expected_purchases_matrix.png", "Expected purchases by frequency and recency."),
    ("plots/spend_fit.png", "Average spend per customer, actual against the Gamma-Gamma spend model."),
    ("plots/churn_roc.png", "Churn, out of time: ROC curves of the model and the simpler scores."),
    ("plots/churn_precision_recall.png", "Churn, out of time: precision against recall."),
    ("plots/churn_reliability.png", "Churn, out of time: predicted probability against the share that churned."),
    ("plots/churn_feature_importance.png", "What the churn model relies on most (total gain per feature)."),
]
# charts shown in the sections above, not again among the diagnostics
SECTION_PLOTS = {
    "plots/quadrants.png",
    "plots/rfm_segments.png",
    "plots/cpm_groups.png",
    "plots/deciles.png",
    "plots/retention.png",
    "plots/cohort_retention.png",
}


def _diagnostics(r: _Run):
    intro = "How well the models fit the data, for the analyst; the sections above do not depend on reading them."
    known = {p for p, _ in DIAGNOSTIC_PLOTS}
    shown = [(p, c) for p, c in DIAGNOSTIC_PLOTS if p in r.art.paths]
    shown += [(p, _label(Path(p).stem)) for p in r.art.under("plots", suffix=".png") if p not in known | SECTION_PLOTS]
    figures = "".join(_figure(r.art.image(p), c) for p, c in shown)
    body = f'<div class="figures">{figures}</div>' if figures else _missing(["plots/*.png"])
    return _section("diagnostics", "Diagnostic charts", intro, body)


CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 12px; }
h2 { font-size: 20px; margin: 36px 0 6px; padding-top: 12px; border-top: 2px solid #e3e6ea; }
h3 { font-size: 16px; margin: 24px 0 4px; }
p.intro { margin: 4px 0 12px; max-width: 60em; }
.quiet { color: #777; font-size: 13px; }
p.missing { color: #8a6d00; background: #fff8db; border-left: 3px solid #e0b000; padding: 6px 10px; font-size: 14px; }
p.warning { color: #8a1c1c; background: #fdecec; border-left: 3px solid #c62828; padding: 6px 10px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; font-size: 14px; }
dl.meta dt { color: #666; } dl.meta dd { margin: 0; }
nav { margin: 16px 0 0; font-size: 14px; } nav a { margin-right: 14px; color: #2a5d9f; text-decoration: none; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 12px; margin: 20px 0 8px; }
.card { border: 1px solid #e3e6ea; border-radius: 8px; padding: 12px 14px; background: #fafbfc; }
.card .label { font-size: 13px; color: #555; } .card .value { font-size: 24px; font-weight: 600; margin: 2px 0; }
.card .note { font-size: 12px; color: #777; }
.table { overflow-x: auto; margin: 8px 0 16px; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 5px 12px; border-bottom: 1px solid #e3e6ea; text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td.nowrap { white-space: nowrap; }
tbody tr:nth-child(even) td { background-color: #fafbfc; }
figure { margin: 8px 0 16px; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; max-width: 640px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 16px; }
details { margin: 8px 0 16px; } summary { cursor: pointer; color: #2a5d9f; }
code { font-size: 13px; }
"""


def build_report(run_id: str, tracking_uri: str | None = None) -> str:
    """The HTML report of run ``run_id``: one string, with every image and style inside it."""
    tracking_uri = resolve_tracking_uri(tracking_uri)
    with _store(tracking_uri) as client, tempfile.TemporaryDirectory() as tmp:
        run = _get_run(client, run_id, tracking_uri)
        experiment = client.get_experiment(run.info.experiment_id).name
        r = _Run(run, experiment, _Artifacts(client, run_id, Path(tmp)))
        sections = [
            _quadrants(r),
            _rfm(r),
            _cpm(r),
            _deciles(r),
            _retention(r),
            _segments(r),
            _model_metrics(r),
            _diagnostics(r),
        ]
        head = _header(r) + _headline(r)
    nav = "<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t, _ in sections) + "</nav>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>crmvalue report: {_e(experiment)} {_e(run_id)}</title><style>{CSS}</style></head>"
        f"<body><main>{head}{nav}{''.join(s for _, _, s in sections)}</main></body></html>\n"
    )


def write_report(out: Path, run: str = LATEST, experiment: str | None = None, tracking_uri: str | None = None) -> str:
    """Write the report of ``run`` (an id, or ``latest``) to ``out`` in one rename; returns the run id."""
    tracking_uri = resolve_tracking_uri(tracking_uri)
    if run == LATEST:
        run_id = latest_run_id(tracking_uri, experiment)
    else:
        run_id = run
        if experiment is not None:
            with _store(tracking_uri) as client:
                found = _get_run(client, run_id, tracking_uri)
                name = client.get_experiment(found.info.experiment_id).name
            if name != experiment:
                raise CrmvalueError(f"run {run_id!r} is in experiment {name!r}, not {experiment!r}")
    text = build_report(run_id, tracking_uri)

    try:
        atomic_write(Path(out), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise CrmvalueError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return run_id
