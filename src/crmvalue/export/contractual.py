"""A contractual run's per-subscriber scores into ``subscriber_scores`` and ``subscriber_scores_history``.

The table holds one run's subscribers active at its observation end, primary key ``customer_id``:
:data:`SUBSCRIBER_TYPES` (a run without a fee column leaves ``discounted_residual_value`` NULL, one without the churn stage
``churn_probability`` and ``churn_risk``). The swap, the
history and their guarantees are the customer scores' own (:func:`crmvalue.export.database.write_rows`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from sqlalchemy.types import TypeEngine

from crmvalue import schema
from crmvalue.errors import CrmvalueError
from crmvalue.export.database import DEFAULT_URL, URL_ENV, check_identifier, display_url, write_rows
from crmvalue.export.scores import ExportResult, sql_type

SUBSCRIBER_TABLE = "subscriber_scores"
# column -> SQL type, in table order
SUBSCRIBER_TYPES: dict[str, TypeEngine] = {
    name: sql_type(declared)
    for name, declared in (
        ("customer_id", "TEXT"),
        ("cohort", "TEXT"),
        ("start_date", "DATE"),
        ("tenure", "INTEGER"),
        ("p_active_next", "DOUBLE"),
        ("derl", "DOUBLE"),
        ("discounted_residual_value", "DOUBLE"),
        ("churn_probability", "DOUBLE"),
        ("churn_risk", "TEXT"),
        ("run_id", "VARCHAR(32)"),
        ("as_of_date", "DATE"),
        ("scored_at", "TIMESTAMPTZ"),
    )
}


def export_subscribers(
    run: str,
    to: str | None = None,
    table: str = SUBSCRIBER_TABLE,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export contractual run ``run`` (an id, or ``latest``: the newest contractual train or predict run) to
    ``<table>`` (swapped in atomically) and ``<table>_history``; the run is tagged with where it went."""
    from crmvalue.store import open_store
    from crmvalue.tracking import resolve_tracking_uri
    from crmvalue.tracking.contractual import PREDICT_KIND, TRAIN_KIND
    from crmvalue.tracking.reader import read_run

    to = to or os.environ.get(URL_ENV) or DEFAULT_URL
    check_identifier(table, "--table")
    shown = display_url(to)
    record = read_run(run, experiment, tracking_uri, kinds=(TRAIN_KIND, PREDICT_KIND))
    if record.kind not in (TRAIN_KIND, PREDICT_KIND):
        raise CrmvalueError(
            f"run {record.run_id} is a {record.kind} run, not subscriber scores: export it with --run {record.run_id}"
        )
    as_of = record.as_of_date
    if as_of is None:
        raise CrmvalueError(f"run {record.run_id} does not say its observation end")
    rows = record.predictions().reindex(columns=list(SUBSCRIBER_TYPES))
    rows["run_id"] = record.run_id
    rows["as_of_date"] = as_of
    rows["scored_at"] = record.finished_at
    result = write_rows(rows, record.run_id, to, table, SUBSCRIBER_TYPES, echo)
    uri = resolve_tracking_uri(tracking_uri)
    with open_store(uri) as client:
        client.set_tag(record.run_id, schema.export_tag(table), shown)
    return result
