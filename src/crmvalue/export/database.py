"""``crmvalue export --to URL``: a run's scores into ``<table>`` and ``<table>_history``, in one transaction.

See :mod:`crmvalue.export` for the tables and the guarantees; the columns and their SQL types
come from :mod:`crmvalue.schema`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Date, DateTime, Integer, String
from sqlalchemy.types import TypeEngine

from crmvalue import schema
from crmvalue.errors import CrmvalueError, first_line
from crmvalue.export.plan import PLAN_TABLE, PLAN_TYPES, load_run_plan
from crmvalue.export.scores import (
    COLUMN_TYPES,
    ExportResult,
    RunScores,
    dates,
    load_run_scores,
)

DEFAULT_URL = "sqlite:///crm.db"
DEFAULT_TABLE = "customer_scores"
URL_ENV = "CRMVALUE_EXPORT_URL"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
CHUNK_ROWS = 10_000


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
    _tag_run(scores.run_id, schema.export_tag(table), shown, tracking_uri)
    return result


def export_plan(
    run: str,
    to: str | None = None,
    table: str = PLAN_TABLE,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export a plan run of ``crmvalue plan`` (an id, or ``latest``) to ``<table>`` (default
    ``retention_plan``, swapped in atomically) and ``<table>_history``, as :func:`export_run` does scores."""
    import os

    to = to or os.environ.get(URL_ENV) or DEFAULT_URL
    check_identifier(table, "--table")
    shown = display_url(to)
    plan = load_run_plan(run, experiment, tracking_uri)
    result = write_rows(plan.rows(), plan.run_id, to, table, PLAN_TYPES, echo)
    _tag_run(plan.run_id, schema.export_tag(table), shown, tracking_uri)
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
    """Swap a run's scores into ``<table>`` and append them to ``<table>_history`` (:data:`COLUMNS`)."""
    return write_rows(scores.rows(), scores.run_id, url, table, COLUMN_TYPES, echo)


def write_rows(
    rows: pd.DataFrame,
    run_id: str,
    url: str,
    table: str,
    types: dict[str, TypeEngine],
    echo: Callable[[str], None] | None = None,
) -> ExportResult:
    """The one transaction of every export: ``rows`` (columns ``types``, in order, keyed on
    ``customer_id``, each with ``run_id``) staged, swapped in as ``<table>`` and appended to
    ``<table>_history``. Nothing changes when run ``run_id`` is already current and in the history."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    check_identifier(table, "--table")
    shown = display_url(url)
    echo = echo or (lambda line: None)
    _check_rows(rows, run_id)
    engine = _engine(url, shown)
    try:
        with engine.connect() as conn, conn.begin():
            dialect = conn.dialect.name
            if dialect == "postgresql":  # one export at a time per table; readers are not blocked
                conn.execute(select(func.pg_advisory_xact_lock(_lock_key(table))))
            current, history, staging = _tables(table, types)
            history.create(conn, checkfirst=True)
            _add_missing_columns(conn, history)
            n = len(rows)
            if _is_current(conn, current, run_id, n) and _in_history(conn, history, run_id):
                return ExportResult(run_id, shown, table, n, changed=False)
            staging.drop(conn, checkfirst=True)
            staging.create(conn)
            _insert(conn, staging, rows, types, echo)
            _swap(conn, current, staging, table)
            if not _in_history(conn, history, run_id):
                names = [c.name for c in current.columns]
                conn.execute(history.insert().from_select(names, select(*[current.c[c] for c in names])))
    except SQLAlchemyError as exc:
        raise CrmvalueError(f"export to {shown} failed: {_db_reason(exc, url)}") from None
    finally:
        engine.dispose()
    return ExportResult(run_id, shown, table, len(rows), changed=True)


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


def _tables(table: str, types: dict[str, TypeEngine]):
    from sqlalchemy import Column, Index, MetaData, PrimaryKeyConstraint, Table

    metadata = MetaData()

    def make(name: str, key: list[str]):
        columns = [Column(c, t, nullable=c not in key) for c, t in types.items()]
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
        raise CrmvalueError(f"run {run_id}: a row has no customer_id; nothing exported")
    duplicated = ids.duplicated()
    if duplicated.any():
        raise CrmvalueError(f"run {run_id}: customer_id {ids[duplicated].iloc[0]!r} appears twice; nothing exported")


def _insert(conn, staging, rows: pd.DataFrame, types: dict[str, TypeEngine], echo: Callable[[str], None]) -> None:
    """Bulk-load the staging table in chunks, inside the caller's transaction.

    PostgreSQL: ``COPY ... FROM STDIN`` through psycopg (values sent as data, never as SQL);
    SQLite: one prepared ``INSERT`` executed many times. Both are far faster than row-by-row
    ORM inserts: a few seconds for a million customers.
    """
    n = len(rows)
    lists = column_lists(rows, types)
    if conn.dialect.name == "sqlite":
        # SQLite keeps dates and times as text: SQLAlchemy's own format, so they read back as dates
        for i, column in enumerate(rows.columns):
            convert = types[column].dialect_impl(conn.dialect).bind_processor(conn.dialect)
            if isinstance(types[column], Date | DateTime) and convert is not None:
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


def column_lists(rows: pd.DataFrame, types: dict[str, TypeEngine] = COLUMN_TYPES) -> list[list]:
    """Each column as a list of plain Python values, None where missing; ``types`` (default the
    scores tables') say which columns are dates, whole numbers and text."""
    lists = []
    for column in rows.columns:
        values, kind = rows[column], types[column]
        if column == "as_of_date" or isinstance(kind, DateTime):  # the export's own metadata: Python values
            lists.append(values.tolist())
            continue
        if isinstance(kind, Date):  # the run's purchase dates: text in a CSV, datetimes in a Parquet file
            lists.append(dates(values))
            continue
        missing = values.isna().to_numpy()
        if isinstance(kind, Integer):
            out = values.fillna(0).to_numpy(dtype=np.int64).tolist()
        elif isinstance(kind, String):
            out = values.astype(object).where(~missing, None).map(lambda v: v if v is None else str(v)).tolist()
        else:
            out = values.to_numpy(dtype=float, na_value=np.nan).tolist()
        if missing.any():
            for i in np.flatnonzero(missing):
                out[i] = None
        lists.append(out)
    return lists


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


def stderr_echo(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)
