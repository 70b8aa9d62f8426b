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

Files (``--format salesforce|hubspot --out FILE``): a UTF-8 CSV for the tools' bulk upsert,
keyed on an external-id column, with field names from a mapping (built-in, or ``--mapping``
YAML) and numbers as those tools parse them: ``.`` decimals, no thousands separators, no
exponents, ISO dates.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Date, DateTime, Double, Integer, SmallInteger, String, Text

from crmvalue.errors import CrmvalueError, first_line
from crmvalue.io import atomic_write

DEFAULT_URL = "sqlite:///crm.db"
DEFAULT_TABLE = "customer_scores"
URL_ENV = "CRMVALUE_EXPORT_URL"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
CHUNK_ROWS = 10_000
MONEY = {
    "monetary_value",
    "current_value",
    "expected_avg_value",
    "clv",
    "potential_value",
    "revenue",
    "clv_lower",
    "clv_upper",
}


# column -> SQL type, in table order: the schema of both tables (README, "Database export")
COLUMN_TYPES = {
    "customer_id": Text(),
    "orders": Integer(),
    "revenue": Double(),
    "first_purchase": Date(),
    "last_purchase": Date(),
    "tenure_days": Integer(),
    "frequency": Integer(),
    "recency": Double(),
    "T": Double(),
    "monetary_value": Double(),
    "current_value": Double(),
    "p_alive": Double(),
    "expected_purchases": Double(),
    "expected_avg_value": Double(),
    "clv": Double(),
    "potential_value": Double(),
    "quadrant": String(1),
    "churn_probability": Double(),
    "churn_risk": String(8),
    "rfm_r": SmallInteger(),
    "rfm_f": SmallInteger(),
    "rfm_m": SmallInteger(),
    "rfm_score": String(3),
    "rfm_segment": Text(),
    "cpm_group": SmallInteger(),
    "cpm_label": Text(),
    "value_decile": SmallInteger(),
    "crm_value": Double(),
    "crm_grade": String(8),
    "expected_purchases_lower": Double(),
    "expected_purchases_upper": Double(),
    "clv_lower": Double(),
    "clv_upper": Double(),
    "run_id": String(32),
    "model_version": Integer(),
    "as_of_date": Date(),
    "scored_at": DateTime(timezone=True),
}
COLUMNS = list(COLUMN_TYPES)
INTEGER_COLUMNS = {
    "frequency",
    "orders",
    "tenure_days",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "cpm_group",
    "value_decile",
    "model_version",
}
DATE_COLUMNS = {"first_purchase", "last_purchase", "as_of_date"}  # DATE in the tables, YYYY-MM-DD in files
TEXT_COLUMNS = {"customer_id", "quadrant", "churn_risk", "rfm_score", "rfm_segment", "cpm_label", "crm_grade", "run_id"}


@dataclass(frozen=True)
class RunScores:
    """One run's exported predictions and the metadata every exported row carries."""

    run_id: str
    frame: pd.DataFrame  # the run's predictions file, customer_id as text
    model_version: int | None
    as_of_date: dt.date
    scored_at: dt.datetime  # UTC

    def rows(self) -> pd.DataFrame:
        """The scores in :data:`COLUMNS` order; columns the run does not have are missing."""
        frame = self.frame.reindex(columns=COLUMNS)
        frame["run_id"] = self.run_id
        frame["model_version"] = self.model_version
        frame["as_of_date"] = self.as_of_date
        frame["scored_at"] = self.scored_at
        return frame


@dataclass(frozen=True)
class ExportResult:
    run_id: str
    target: str  # the URL with its password masked, or the file
    table: str | None
    rows: int
    changed: bool  # False when the run was already the current one


# ------------------------------------------------------------------------------------------
# Reading a run
# ------------------------------------------------------------------------------------------


def load_run_scores(run: str, experiment: str | None = None, tracking_uri: str | None = None) -> RunScores:
    """The predictions of run ``run`` (an id, or ``latest``: the newest train or predict run)."""
    from crmvalue.registry import VERSION_TAG
    from crmvalue.store import LATEST, get_run, latest_run_id, open_store
    from crmvalue.tracking import resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(tracking_uri)
    run_id = latest_run_id(tracking_uri, experiment, kinds=("train", "predict")) if run == LATEST else run
    with open_store(tracking_uri) as client, tempfile.TemporaryDirectory() as tmp:
        info = get_run(client, run_id, tracking_uri)
        tags = info.data.tags
        name = tags.get("crmvalue.predictions_artifact")
        if name is None:  # runs logged before the tag: the one predictions table at the root
            found = [
                a.path
                for a in client.list_artifacts(run_id)
                if not a.is_dir
                and Path(a.path).suffix.lower() in (".csv", ".parquet", ".pq")
                and a.path not in ("quadrant_summary.csv", "holdout_conditional_expectations.csv")
            ]
            if len(found) != 1:
                raise CrmvalueError(
                    f"run {run_id} has no predictions file to export (is it a crmvalue train or predict run?)"
                )
            name = found[0]
        try:
            local = Path(client.download_artifacts(run_id, name, tmp))
        except Exception:  # noqa: BLE001 - a missing artifact, whatever the store says
            raise CrmvalueError(f"run {run_id} has no artifact {name!r} to export") from None
        frame = _read_predictions(local)
    as_of = tags.get("crmvalue.as_of_date") or info.data.params.get("config.observation_end")
    if not as_of:
        raise CrmvalueError(f"run {run_id} does not say its observation end; export a run of crmvalue train or predict")
    ended = info.info.end_time or info.info.start_time
    version = tags.get(VERSION_TAG)
    return RunScores(
        run_id,
        frame,
        int(version) if version else None,
        dt.date.fromisoformat(as_of),
        dt.datetime.fromtimestamp(ended / 1000, tz=dt.UTC),
    )


def _read_predictions(path: Path) -> pd.DataFrame:
    if path.suffix.lower() in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
        frame["customer_id"] = frame["customer_id"].astype(str)
        return frame
    header = pd.read_csv(path, nrows=0).columns
    # ids are text: "00012" stays "00012" and an id "NA" stays "NA"
    return pd.read_csv(
        path,
        dtype={"customer_id": str},
        keep_default_na=False,
        na_values={c: ["", "NaN", "nan"] for c in header if c != "customer_id"},
    )


# ------------------------------------------------------------------------------------------
# The database
# ------------------------------------------------------------------------------------------


def export_run(
    run: str,
    to: str | None = None,
    table: str = DEFAULT_TABLE,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export a run's scores to ``<table>`` (swapped in atomically) and ``<table>_history``."""
    import os

    to = to or os.environ.get(URL_ENV) or DEFAULT_URL
    check_identifier(table, "--table")
    shown = display_url(to)
    scores = load_run_scores(run, experiment, tracking_uri)
    result = write_scores(scores, to, table, echo)
    _tag_run(scores.run_id, f"crmvalue.export.{table}", shown, tracking_uri)
    return result


def check_identifier(name: str, option: str) -> str:
    if not IDENTIFIER.match(name):
        raise CrmvalueError(
            f"{option} {name!r}: a table name is a letter or _ followed by letters, digits or _, at most 48 characters"
        )
    return name


def display_url(url: str) -> str:
    """The URL with its password masked, for messages (never the password itself)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        raise CrmvalueError(
            "--to: not a database URL (expected e.g. sqlite:///crm.db or postgresql+psycopg://user@host:5432/crm)"
        ) from None


def write_scores(
    scores: RunScores, url: str, table: str = DEFAULT_TABLE, echo: Callable[[str], None] | None = None
) -> ExportResult:
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    check_identifier(table, "--table")
    shown = display_url(url)
    echo = echo or (lambda line: None)
    rows = scores.rows()
    _check_rows(rows, scores.run_id)
    engine = _engine(url, shown)
    try:
        with engine.connect() as conn, conn.begin():
            dialect = conn.dialect.name
            if dialect == "postgresql":  # one export at a time per table; readers are not blocked
                conn.execute(select(func.pg_advisory_xact_lock(_lock_key(table))))
            current, history, staging = _tables(table)
            history.create(conn, checkfirst=True)
            _add_missing_columns(conn, history)
            n = len(rows)
            if _is_current(conn, current, scores.run_id, n) and _in_history(conn, history, scores.run_id):
                return ExportResult(scores.run_id, shown, table, n, changed=False)
            staging.drop(conn, checkfirst=True)
            staging.create(conn)
            _insert(conn, staging, rows, echo)
            _swap(conn, current, staging, table)
            if not _in_history(conn, history, scores.run_id):
                names = [c.name for c in current.columns]
                conn.execute(history.insert().from_select(names, select(*[current.c[c] for c in names])))
    except SQLAlchemyError as exc:
        raise CrmvalueError(f"export to {shown} failed: {_db_reason(exc, url)}") from None
    finally:
        engine.dispose()
    return ExportResult(scores.run_id, shown, table, len(rows), changed=True)


def _engine(url: str, shown: str):
    from sqlalchemy import create_engine, event
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise CrmvalueError(f"--to {shown}: {first_line(exc)}") from None
    except ImportError as exc:
        raise CrmvalueError(f"--to {shown}: the database driver is not installed ({exc.name})") from None
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:" and not Path(database).resolve().parent.is_dir():
            raise CrmvalueError(f"--to {shown}: folder {Path(database).resolve().parent} does not exist")

        # Python's sqlite3 runs DDL outside its implicit transactions; take over so that the
        # staging table, the swap and the history are one transaction, begun with the write lock
        @event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_connection, record):
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif engine.dialect.name != "postgresql":
        raise CrmvalueError(f"--to {shown}: {engine.dialect.name} is not supported; use SQLite or PostgreSQL")
    return engine


def _tables(table: str):
    from sqlalchemy import Column, Index, MetaData, PrimaryKeyConstraint, Table

    types = COLUMN_TYPES
    metadata = MetaData()

    def make(name: str, key: list[str]):
        columns = [Column(c, types[c], nullable=c not in key) for c in COLUMNS]
        return Table(name, metadata, *columns, PrimaryKeyConstraint(*key, name=f"{name}_pkey"))

    current = make(table, ["customer_id"])
    staging = make(f"{table}__staging", ["customer_id"])
    history = make(f"{table}_history", ["run_id", "customer_id"])
    Index(f"{table}_history_customer", history.c.customer_id)
    return current, history, staging


def _add_missing_columns(conn, table) -> None:
    """A history table made by an older crmvalue gains the columns added since (NULL for its rows)."""
    from sqlalchemy import inspect
    from sqlalchemy.schema import CreateColumn

    have = {c["name"] for c in inspect(conn).get_columns(table.name)}
    quote = conn.dialect.identifier_preparer.quote
    for column in table.columns:
        if column.name not in have:
            conn.exec_driver_sql(
                f"ALTER TABLE {quote(table.name)} ADD COLUMN {CreateColumn(column).compile(dialect=conn.dialect)}"
            )


def _is_current(conn, current, run_id: str, n: int) -> bool:
    from sqlalchemy import func, inspect, select

    if not inspect(conn).has_table(current.name):
        return False
    count, low, high = conn.execute(select(func.count(), func.min(current.c.run_id), func.max(current.c.run_id))).one()
    return count == n and low == run_id and high == run_id


def _in_history(conn, history, run_id: str) -> bool:
    from sqlalchemy import exists, select

    return bool(conn.execute(select(exists().where(history.c.run_id == run_id))).scalar())


def _swap(conn, current, staging, table: str) -> None:
    quote = conn.dialect.identifier_preparer.quote
    current.drop(conn, checkfirst=True)
    conn.exec_driver_sql(f"ALTER TABLE {quote(staging.name)} RENAME TO {quote(table)}")
    if conn.dialect.name == "postgresql":  # index names are schema-wide: free the staging name for next time
        conn.exec_driver_sql(
            f"ALTER TABLE {quote(table)} RENAME CONSTRAINT {quote(staging.name + '_pkey')} TO {quote(table + '_pkey')}"
        )


def _lock_key(table: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(f"crmvalue:{table}".encode()).digest()[:8], "big", signed=True)


def _check_rows(rows: pd.DataFrame, run_id: str) -> None:
    ids = rows["customer_id"]
    if ids.isna().any() or (ids.astype(str) == "").any():
        raise CrmvalueError(f"run {run_id}: a predictions row has no customer_id; nothing exported")
    duplicated = ids.duplicated()
    if duplicated.any():
        raise CrmvalueError(f"run {run_id}: customer_id {ids[duplicated].iloc[0]!r} appears twice; nothing exported")


def _insert(conn, staging, rows: pd.DataFrame, echo: Callable[[str], None]) -> None:
    """Bulk-load the staging table in chunks, inside the caller's transaction.

    PostgreSQL: ``COPY ... FROM STDIN`` through psycopg (values sent as data, never as SQL);
    SQLite: one prepared ``INSERT`` executed many times. Both are far faster than row-by-row
    ORM inserts: a few seconds for a million customers.
    """
    n = len(rows)
    lists = _column_lists(rows)
    if conn.dialect.name == "sqlite":
        # SQLite keeps dates and times as text: SQLAlchemy's own format, so they read back as dates
        for i, column in enumerate(rows.columns):
            convert = COLUMN_TYPES[column].dialect_impl(conn.dialect).bind_processor(conn.dialect)
            if (column in DATE_COLUMNS or column == "scored_at") and convert is not None:
                lists[i] = [None if v is None else convert(v) for v in lists[i]]
    values = list(zip(*lists))
    if conn.dialect.name == "postgresql":
        from psycopg import sql

        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(staging.name), sql.SQL(", ").join(sql.Identifier(c) for c in rows.columns)
        )
        with conn.connection.driver_connection.cursor() as cursor:
            for start in range(0, n, CHUNK_ROWS):
                with cursor.copy(copy_sql) as copy:
                    for row in values[start : start + CHUNK_ROWS]:
                        copy.write_row(row)
                echo(f"staged {min(start + CHUNK_ROWS, n):,} of {n:,} rows")
        return
    insert = str(staging.insert().compile(dialect=conn.dialect))  # INSERT INTO ... VALUES (?, ?, ...)
    for start in range(0, n, CHUNK_ROWS):
        conn.exec_driver_sql(insert, values[start : start + CHUNK_ROWS])
        echo(f"staged {min(start + CHUNK_ROWS, n):,} of {n:,} rows")


def _column_lists(rows: pd.DataFrame) -> list[list]:
    """Each column as a list of plain Python values, None where missing."""
    lists = []
    for column in rows.columns:
        values = rows[column]
        if column in ("as_of_date", "scored_at"):
            lists.append(values.tolist())
            continue
        if column in DATE_COLUMNS:  # the run's purchase dates: text in a CSV, datetimes in a Parquet file
            lists.append(_dates(values))
            continue
        missing = values.isna().to_numpy()
        if column in INTEGER_COLUMNS:
            out = values.fillna(0).to_numpy(dtype=np.int64).tolist()
        elif column in TEXT_COLUMNS:
            out = values.astype(object).where(~missing, None).map(lambda v: v if v is None else str(v)).tolist()
        else:
            out = values.to_numpy(dtype=float, na_value=np.nan).tolist()
        if missing.any():
            for i in np.flatnonzero(missing):
                out[i] = None
        lists.append(out)
    return lists


def _dates(values: pd.Series) -> list:
    """``datetime.date`` values, None where missing (runs from before a column was added)."""
    parsed = pd.to_datetime(values, format="ISO8601") if not pd.api.types.is_datetime64_any_dtype(values) else values
    return [None if pd.isna(v) else v.date() for v in parsed]


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _db_reason(exc, url: str) -> str:
    """The driver's first line, with the password scrubbed should a driver ever echo it."""
    from sqlalchemy.engine import make_url

    reason = first_line(getattr(exc, "orig", None) or exc)
    password = make_url(url).password
    if password:
        reason = reason.replace(str(password), "***")
    return reason


def _tag_run(run_id: str, key: str, value: str, tracking_uri: str | None) -> None:
    from crmvalue.store import open_store
    from crmvalue.tracking import resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(tracking_uri)
    with open_store(tracking_uri) as client:
        client.set_tag(run_id, key, value)


# ------------------------------------------------------------------------------------------
# Bulk-upsert files
# ------------------------------------------------------------------------------------------

# crmvalue column -> field; the first entry is the external id the tool upserts on
DEFAULT_MAPPINGS: dict[str, dict[str, str]] = {
    "salesforce": {
        "customer_id": "Crmvalue_Customer_Id__c",
        "as_of_date": "Crmvalue_Scores_As_Of__c",
        "quadrant": "Crmvalue_Quadrant__c",
        "p_alive": "Crmvalue_P_Alive__c",
        "expected_purchases": "Crmvalue_Expected_Purchases__c",
        "clv": "Crmvalue_CLV__c",
        "current_value": "Crmvalue_Current_Value__c",
        "churn_probability": "Crmvalue_Churn_Probability__c",
        "churn_risk": "Crmvalue_Churn_Risk__c",
        "rfm_segment": "Crmvalue_RFM_Segment__c",
        "cpm_label": "Crmvalue_CPM_Group__c",
        "value_decile": "Crmvalue_Value_Decile__c",
        "crm_grade": "Crmvalue_CRM_Grade__c",
        "model_version": "Crmvalue_Model_Version__c",
        "run_id": "Crmvalue_Run_Id__c",
    },
    "hubspot": {
        "customer_id": "crmvalue_customer_id",
        "as_of_date": "crmvalue_scores_as_of",
        "quadrant": "crmvalue_quadrant",
        "p_alive": "crmvalue_p_alive",
        "expected_purchases": "crmvalue_expected_purchases",
        "clv": "crmvalue_clv",
        "current_value": "crmvalue_current_value",
        "churn_probability": "crmvalue_churn_probability",
        "churn_risk": "crmvalue_churn_risk",
        "rfm_segment": "crmvalue_rfm_segment",
        "cpm_label": "crmvalue_cpm_group",
        "value_decile": "crmvalue_value_decile",
        "crm_grade": "crmvalue_crm_grade",
        "model_version": "crmvalue_model_version",
        "run_id": "crmvalue_run_id",
    },
}
FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def load_mapping(path: Path | None, fmt: str) -> tuple[dict[str, str], bool]:
    """The mapping to use and whether it was given (a given one must match the run's columns)."""
    import yaml

    if path is None:
        return dict(DEFAULT_MAPPINGS[fmt]), False
    path = Path(path)
    if not path.is_file():
        raise CrmvalueError(f"{path}: mapping file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CrmvalueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not raw:
        raise CrmvalueError(f"{path}: expected a mapping of crmvalue column: {fmt} field")
    mapping = {str(k): str(v) for k, v in raw.items()}
    if next(iter(mapping)) != "customer_id":
        raise CrmvalueError(f"{path}: the first entry must map customer_id to the external-id field")
    seen: dict[str, str] = {}
    for column, field in mapping.items():
        if column not in COLUMNS:
            raise CrmvalueError(f"{path}: {column!r} is not a crmvalue export column; they are {', '.join(COLUMNS)}")
        if not FIELD.match(field):
            raise CrmvalueError(f"{path}: field {field!r} (for {column}) is not a valid API field name")
        if field in seen:
            raise CrmvalueError(f"{path}: field {field!r} is mapped from both {seen[field]} and {column}")
        seen[field] = column
    return mapping, True


def bulk_file(scores: RunScores, fmt: str, mapping: dict[str, str], strict: bool) -> pd.DataFrame:
    """The upsert table: mapped columns renamed, every value a string in the tools' formats."""
    if fmt not in DEFAULT_MAPPINGS:
        raise CrmvalueError(f"--format {fmt!r}: expected salesforce or hubspot")
    rows = scores.rows()
    present = {c for c in rows.columns if c in scores.frame.columns} | {
        "run_id",
        "model_version",
        "as_of_date",
        "scored_at",
    }
    if scores.model_version is None:
        present.discard("model_version")
    absent = [c for c in mapping if c not in present]
    if absent and strict:
        raise CrmvalueError(
            f"--mapping: run {scores.run_id} has no {absent[0]!r} column (was that part of the run off?)"
        )
    columns = [c for c in mapping if c in present]
    out = pd.DataFrame({mapping[c]: _formatted(rows[c], c) for c in columns})
    return out


def _formatted(values: pd.Series, column: str) -> list[str]:
    if column == "as_of_date":
        return [v.isoformat() for v in values]
    if column in DATE_COLUMNS:
        return ["" if v is None else v.isoformat() for v in _dates(values)]
    if column == "scored_at":
        return [v.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for v in values]
    if column in TEXT_COLUMNS:
        return ["" if _missing(v) else str(v) for v in values.tolist()]
    if column in INTEGER_COLUMNS:
        return ["" if _missing(v) else str(int(v)) for v in values.tolist()]
    digits = 2 if column in MONEY else 6
    return ["" if _missing(v) or not np.isfinite(v) else _decimal(float(v), digits) for v in values.tolist()]


def _decimal(value: float, digits: int) -> str:
    """Fixed point, no exponent, no thousands separator, no trailing zeros: 0.000012, 1234.5."""
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def export_file(
    run: str,
    fmt: str,
    out: Path,
    mapping_path: Path | None = None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
) -> ExportResult:
    mapping, strict = load_mapping(mapping_path, fmt) if fmt in DEFAULT_MAPPINGS else ({}, False)
    scores = load_run_scores(run, experiment, tracking_uri)
    table = bulk_file(scores, fmt, mapping, strict)
    atomic_write(Path(out), lambda tmp: table.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n"))
    return ExportResult(scores.run_id, str(out), None, len(table), changed=True)


def stderr_echo(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)
