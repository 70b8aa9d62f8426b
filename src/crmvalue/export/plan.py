"""A plan run of ``crmvalue plan`` as ``crmvalue export --plan`` writes it to the database.

``<table>`` (default ``retention_plan``) holds the contact list of one plan, primary key
``customer_id``: the plan file's columns (:data:`crmvalue.plan.PLAN_COLUMNS`) followed by
``run_id`` (the plan run), ``source_run_id`` (the run whose scores it used), ``as_of_date`` and
``planned_at`` (UTC, when the plan run finished). ``<table>_history`` keeps every exported plan,
primary key ``(run_id, customer_id)``. The swap and its guarantees are the scores' own
(:func:`crmvalue.export.database.write_rows`).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy.types import TypeEngine

from crmvalue import plan as planning
from crmvalue.errors import CrmvalueError
from crmvalue.export.scores import sql_type

PLAN_TABLE = "retention_plan"
# column -> SQL type, in table order
PLAN_TYPES: dict[str, TypeEngine] = {c.name: sql_type(c.sql) for c in (*planning.PLAN_COLUMNS, *planning.PLAN_METADATA)}


@dataclass(frozen=True)
class RunPlan:
    """One plan run's contact list and the metadata every exported row carries."""

    run_id: str
    source_run_id: str
    frame: pd.DataFrame  # the plan file, customer_id as text
    as_of_date: dt.date | None
    planned_at: dt.datetime  # UTC

    def rows(self) -> pd.DataFrame:
        """The plan in :data:`PLAN_TYPES` order."""
        frame = self.frame.reindex(columns=list(PLAN_TYPES))
        frame["run_id"] = self.run_id
        frame["source_run_id"] = self.source_run_id
        frame["as_of_date"] = self.as_of_date
        frame["planned_at"] = self.planned_at
        return frame


def load_run_plan(run: str, experiment: str | None = None, tracking_uri: str | None = None) -> RunPlan:
    """The contact list of plan run ``run`` (an id, or ``latest``: the newest finished plan run)."""
    from crmvalue.tracking.reader import read_predictions, read_run

    record = read_run(run, experiment, tracking_uri, kinds=(planning.PLAN_KIND,))
    if record.kind != planning.PLAN_KIND:
        raise CrmvalueError(
            f"run {record.run_id} is a {record.kind} run, not a plan: export its scores with --run {record.run_id}"
        )
    name = record.tags.get(planning.PLAN_ARTIFACT_TAG)
    with tempfile.TemporaryDirectory() as tmp:
        local = record.download(name, Path(tmp)) if name else None
        if local is None:
            raise CrmvalueError(f"plan run {record.run_id} has no plan file to export")
        frame = read_predictions(local)
    return RunPlan(
        record.run_id, record.tags.get(planning.SOURCE_RUN_TAG, ""), frame, record.as_of_date, record.finished_at
    )
