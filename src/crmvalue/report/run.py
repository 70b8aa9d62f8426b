"""What the report's sections read of a run: a :class:`~crmvalue.tracking.reader.TrainedRunRecord`
and its artifacts, with the settings the sections quote."""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd

from crmvalue import schema
from crmvalue.report.format import figure, html_table, missing_note
from crmvalue.tracking.reader import RunArtifacts, TrainedRunRecord

# the predictions file's columns the report reads: the quadrants, churn and the call list
SCORE_COLUMNS = (
    "customer_id",
    "clv",
    "expected_revenue",
    "quadrant",
    "churn_probability",
    "churn_risk",
    *schema.names(schema.DECISIONS),
)


class ReportRun:
    """What the sections need of a run: its names, params, metrics and files."""

    def __init__(self, record: TrainedRunRecord, art: RunArtifacts):
        self.record, self.experiment, self.art = record, record.experiment, art
        self.params, self.metrics, self.tags = record.params, record.metrics, record.tags
        self.cal_end = self.params.get(schema.config_param("calibration_end"), "?")
        self.obs_end = self.params.get(schema.OBSERVATION_END_PARAM, "?")
        self.horizon = self.params.get(schema.config_param("horizon_days"), "90")
        self.months = self.params.get(schema.config_param("clv.months"), "12")
        self.quadrants = art.table(schema.QUADRANT_SUMMARY_ARTIFACT, index_col="quadrant")
        self.scores = self._scores()

    def _scores(self) -> pd.DataFrame | None:
        """The per-customer columns the report reads (:data:`SCORE_COLUMNS` the run has), from the
        predictions file the run logged."""
        name = Path(self.params.get(schema.config_param("out")) or schema.DEFAULT_PREDICTIONS_ARTIFACT).name
        if name not in self.art.paths:
            return None
        try:
            if name.endswith((".parquet", ".pq")):
                frame = self.art.table(name)
                return None if frame is None else frame[[c for c in SCORE_COLUMNS if c in frame]]
            return self.art.table(name, usecols=lambda c: c in SCORE_COLUMNS, dtype={"customer_id": str})
        except (ValueError, KeyError):
            return None

    def metric(self, name: str):
        return self.metrics.get(name)

    def image(self, path: str) -> str | None:
        """The PNG artifact ``path`` as a base64 data URI, so the report is one self-contained file."""
        data = self.art.read_bytes(path)
        return None if data is None else "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def churn_scorer(r: ReportRun) -> str | None:
    """The scorer the churn quality gate made live, when the run had a churn model."""
    return r.tags.get("crmvalue.churn_scorer")


def table_and_chart(r: ReportRun, table_path: str, plot_path: str, caption: str, **table_kw) -> str:
    frame = r.art.table(table_path)
    uri = r.image(plot_path)
    missing = [p for p, found in ((table_path, frame is not None), (plot_path, uri is not None)) if not found]
    parts = []
    if frame is not None:
        parts.append(html_table(frame, **table_kw))
    if uri is not None:
        parts.append(figure(uri, caption))
    if missing:
        parts.append(missing_note(missing))
    return "".join(parts)
