"""The report as one HTML file: the sections put together under one inline style sheet."""

from __future__ import annotations

from pathlib import Path

from crmvalue.errors import CrmvalueError
from crmvalue.io import atomic_write
from crmvalue.report.backtest import backtest_section
from crmvalue.report.call_list import actions_section, call_first
from crmvalue.report.format import escape
from crmvalue.report.models import models_section
from crmvalue.report.revenue_cost import revenue_cost_section
from crmvalue.report.run import ReportRun
from crmvalue.report.sections import (
    cpm_section,
    deciles_section,
    diagnostics_section,
    header,
    headline,
    quadrants_section,
    retention_section,
    rfm_section,
    segments_section,
)
from crmvalue.tracking.reader import LATEST, TrainedRunRecord, read_run

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
    return render_report(read_run(run_id, tracking_uri=tracking_uri))


def render_report(record: TrainedRunRecord) -> str:
    """The HTML report of a run already read: one string, with every image and style inside it."""
    with record.artifacts() as art:
        r = ReportRun(record, art)
        sections = [
            quadrants_section(r),
            actions_section(r),
            rfm_section(r),
            cpm_section(r),
            deciles_section(r),
            retention_section(r),
            revenue_cost_section(r),
            segments_section(r),
            models_section(r),
            backtest_section(r),
            diagnostics_section(r),
        ]
        head = header(r) + call_first(r) + headline(r)  # the first screen: whom to call first, and why
    nav = "<nav>" + "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t, _ in sections) + "</nav>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>crmvalue report: {escape(record.experiment)} {escape(record.run_id)}</title><style>{CSS}</style></head>"
        f"<body><main>{head}{nav}{''.join(s for _, _, s in sections)}</main></body></html>\n"
    )


def write_report(out: Path, run: str = LATEST, experiment: str | None = None, tracking_uri: str | None = None) -> str:
    """Write the report of ``run`` (an id, or ``latest``) to ``out`` in one rename; returns the run id."""
    record = read_run(run, experiment, tracking_uri)
    if run != LATEST and experiment is not None and record.experiment != experiment:
        raise CrmvalueError(f"run {record.run_id!r} is in experiment {record.experiment!r}, not {experiment!r}")
    text = render_report(record)

    try:
        atomic_write(Path(out), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise CrmvalueError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return record.run_id
