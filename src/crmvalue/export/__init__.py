"""``crmvalue export``: a run's per-customer scores into a CRM database table, or a bulk-upsert file.

Database (``--to URL``, SQLAlchemy; default ``sqlite:///crm.db``, PostgreSQL through psycopg):

- ``<table>`` (default ``customer_scores``) holds the scores of one run, primary key
  ``customer_id``, with ``run_id``, ``model_version``, ``as_of_date`` (the observation end) and
  ``scored_at`` (UTC, when the run finished). Its columns are always :data:`COLUMNS`, whichever
  parts the run had (a ``--no-churn`` run leaves the churn columns NULL), so readers never
  meet a changed schema.
- ``<table>_history`` keeps every exported run, primary key ``(run_id, customer_id)``.

One transaction does everything: the scores go to a staging table, the old table is dropped,
the staging table is renamed into its place and the run is appended to the history. Readers
see the old table or the new one, never a mix, and a process killed part-way leaves the old
table as it was (the server, or SQLite's journal, rolls the transaction back). Exporting a run
that is already the current one changes nothing; a run already in the history is not added
twice. Table names are checked as identifiers; every value is a bound parameter.

Credentials come only from the URL or the environment (``PGPASSWORD``, ``~/.pgpass``); the
URL is shown with its password masked and is never logged to MLflow.

A plan of ``crmvalue plan`` (``--plan ID|latest``) goes the same way to ``<table>`` (default
``retention_plan``) and ``<table>_history``: its contact list, with ``run_id`` (the plan run),
``source_run_id``, ``as_of_date`` and ``planned_at`` (:mod:`crmvalue.export.plan`).

Files (``--format salesforce|hubspot --out FILE``): a UTF-8 CSV for the tools' bulk upsert,
keyed on an external-id column, with field names from a mapping (built-in, or ``--mapping``
YAML) and numbers as those tools parse them: ``.`` decimals, no thousands separators, no
exponents, ISO dates.
"""

from __future__ import annotations

from crmvalue.export.database import (
    CHUNK_ROWS,
    DEFAULT_TABLE,
    DEFAULT_URL,
    IDENTIFIER,
    URL_ENV,
    check_identifier,
    column_lists,
    display_url,
    export_plan,
    export_run,
    stderr_echo,
    write_rows,
    write_scores,
)
from crmvalue.export.files import DEFAULT_MAPPINGS, FIELD, bulk_file, export_file, load_mapping
from crmvalue.export.plan import PLAN_TABLE, PLAN_TYPES, RunPlan, load_run_plan
from crmvalue.export.scores import (
    COLUMN_TYPES,
    COLUMNS,
    DATE_COLUMNS,
    INTEGER_COLUMNS,
    MONEY,
    TEXT_COLUMNS,
    ExportResult,
    RunScores,
    load_run_scores,
    sql_type,
)

__all__ = [
    "CHUNK_ROWS",
    "COLUMNS",
    "COLUMN_TYPES",
    "DATE_COLUMNS",
    "DEFAULT_MAPPINGS",
    "DEFAULT_TABLE",
    "DEFAULT_URL",
    "FIELD",
    "IDENTIFIER",
    "INTEGER_COLUMNS",
    "MONEY",
    "PLAN_TABLE",
    "PLAN_TYPES",
    "TEXT_COLUMNS",
    "URL_ENV",
    "ExportResult",
    "RunPlan",
    "RunScores",
    "bulk_file",
    "check_identifier",
    "column_lists",
    "display_url",
    "export_file",
    "export_plan",
    "export_run",
    "load_mapping",
    "load_run_plan",
    "load_run_scores",
    "sql_type",
    "stderr_echo",
    "write_rows",
    "write_scores",
]
