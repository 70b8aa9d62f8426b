"""HTML pieces of the report: number formats, tables, figures and sections, all escaped."""

from __future__ import annotations

import html
import re

import pandas as pd

MISSING = "Not in this run"
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
    "customer_id": "Customer",
    "clv": "CLV",
    "retention_priority": "Priority",
}


escape = html.escape


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and pd.notna(value)


def fmt_count(value) -> str:
    return f"{value:,.0f}" if is_number(value) else "–"


def fmt_money(value) -> str:
    if not is_number(value):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}"


def fmt_pct(value, digits: int = 1) -> str:
    return f"{value:.{digits}%}" if is_number(value) else "–"


def fmt_number(value, digits: int = 3) -> str:
    return f"{value:,.{digits}f}" if is_number(value) else "–"


def column_label(name) -> str:
    name = str(name)
    if name in LABELS:
        return LABELS[name]
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def column_formatter(name, values: pd.Series, percent: bool = False):
    """How to show a CSV column: shares as %, money and counts with thousands separators."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return lambda v: "" if pd.isna(v) else str(v)
    finite = values.dropna().astype(float)
    words = set(re.split(r"[^a-z0-9]+", str(name).lower()))
    if percent or (words & PERCENT_WORDS and finite.between(0, 1 + 1e-9).all()):  # a cumulative sum may end at 1 + ε
        return lambda v: fmt_pct(float(v)) if pd.notna(v) else "–"
    if (finite == finite.round()).all():
        return lambda v: fmt_count(float(v)) if pd.notna(v) else "–"
    largest = finite.abs().max() if len(finite) else 0.0
    digits = (0 if largest >= 1000 else 2) if words & MONEY_WORDS else (2 if largest >= 1 else 3)
    return lambda v: f"{float(v):,.{digits}f}" if pd.notna(v) else "–"


NUM_CLASS = ' class="num"'
NOWRAP_CLASS = ' class="nowrap"'


def html_grid(
    header: list[str],
    rows: list[list[str]],
    numeric: list[bool],
    heat: list[list[float | None]] | None = None,
    short: list[bool] | None = None,
) -> str:
    """A table from cells that are already HTML; ``heat`` shades cells by a 0-1 value; ``short`` text never wraps."""
    short = short or [False] * len(header)
    head = "".join(f"<th{NUM_CLASS if n else ''}>{h}</th>" for h, n in zip(header, numeric))
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, (cell, n, nowrap) in enumerate(zip(row, numeric, short)):
            style = ""
            level = heat[i][j] if heat is not None else None
            if level is not None:
                style = f' style="background: rgba(68,119,170,{0.08 + 0.8 * level:.2f}); color: {"#fff" if level > 0.55 else "inherit"}"'
            cells.append(f"<td{NUM_CLASS if n else NOWRAP_CLASS if nowrap else ''}{style}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def html_table(frame: pd.DataFrame, percent: bool = False, heat: bool = False) -> str:
    """A CSV table with its columns formatted by :func:`column_formatter`."""
    formatters = [
        column_formatter(c, frame[c], percent and pd.api.types.is_numeric_dtype(frame[c])) for c in frame.columns
    ]
    numeric = [
        pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame.columns
    ]
    rows = [[escape(f(v)) for f, v in zip(formatters, record)] for record in frame.itertuples(index=False)]
    # labels such as a period (1997-01) or a segment name read badly when broken over two lines
    short = [not n and all(len(row[j]) <= 24 for row in rows) for j, n in enumerate(numeric)]
    shades = None
    if heat:
        shades = [
            [float(v) if n and pd.notna(v) else None for v, n in zip(record, numeric)]
            for record in frame.itertuples(index=False)
        ]
    return html_grid([escape(column_label(c)) for c in frame.columns], rows, numeric, shades, short)


def figure(uri: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'


def missing_note(paths: list[str]) -> str:
    return f'<p class="missing">{MISSING}: ' + ", ".join(f"<code>{escape(p)}</code>" for p in paths) + ".</p>"


def section(anchor: str, title: str, intro: str, body: str) -> tuple[str, str, str]:
    return anchor, title, f'<section id="{anchor}"><h2>{escape(title)}</h2><p class="intro">{intro}</p>{body}</section>'
