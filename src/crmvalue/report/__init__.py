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

from crmvalue.report.format import LABELS, MISSING, MONEY_WORDS, PERCENT_WORDS
from crmvalue.report.html import CSS, build_report, render_report, write_report
from crmvalue.report.models import (
    CHURN_BASELINES,
    CHURN_METRICS,
    CHURN_SCORERS,
    HELD_OUT_METRICS,
    MODEL_NAMES,
)
from crmvalue.report.run import ReportRun
from crmvalue.report.sections import DIAGNOSTIC_PLOTS, QUADRANT_AXES, SECTION_PLOTS
from crmvalue.schema import ARTIFACT_FOLDERS
from crmvalue.store import latest_run_id
from crmvalue.tracking.reader import LATEST

__all__ = [
    "ARTIFACT_FOLDERS",
    "CHURN_BASELINES",
    "CHURN_METRICS",
    "CHURN_SCORERS",
    "CSS",
    "DIAGNOSTIC_PLOTS",
    "HELD_OUT_METRICS",
    "LABELS",
    "LATEST",
    "MISSING",
    "MODEL_NAMES",
    "MONEY_WORDS",
    "PERCENT_WORDS",
    "QUADRANT_AXES",
    "SECTION_PLOTS",
    "ReportRun",
    "build_report",
    "latest_run_id",
    "render_report",
    "write_report",
]
