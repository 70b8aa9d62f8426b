"""A run's scores as the export writes them: the database tables' columns and types (from
:mod:`crmvalue.schema`), and :class:`RunScores`, one run's predictions with its metadata."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Date, DateTime, Double, Integer, SmallInteger, String, Text
from sqlalchemy.types import TypeEngine

from crmvalue import schema
from crmvalue.errors import CrmvalueError

_SQL_TYPES: dict[str, TypeEngine] = {
    "TEXT": Text(),
    "INTEGER": Integer(),
    "SMALLINT": SmallInteger(),
    "DOUBLE": Double(),
    "DATE": Date(),
    "TIMESTAMPTZ": DateTime(timezone=True),
}


def sql_type(declared: str) -> TypeEngine:
    """The SQLAlchemy type of a declared SQL type: ``TEXT``, ``INTEGER``, ``VARCHAR(8)``, ..."""
    if declared.startswith("VARCHAR(") and declared.endswith(")"):
        return String(int(declared[len("VARCHAR(") : -1]))
    try:
        return _SQL_TYPES[declared]
    except KeyError:
        raise ValueError(f"SQL type {declared!r} is not one crmvalue.export knows") from None


# column -> SQL type, in table order: the schema of both tables (README, "Database export")
COLUMN_TYPES: dict[str, TypeEngine] = {column: sql_type(declared) for column, declared in schema.sql_types().items()}
COLUMNS = list(COLUMN_TYPES)
MONEY = set(schema.table_kind_columns("money"))
INTEGER_COLUMNS = set(schema.table_kind_columns("integer"))
DATE_COLUMNS = set(schema.table_kind_columns("date"))  # DATE in the tables, YYYY-MM-DD in files
TEXT_COLUMNS = set(schema.table_kind_columns("text"))


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


def load_run_scores(run: str, experiment: str | None = None, tracking_uri: str | None = None) -> RunScores:
    """The predictions of run ``run`` (an id, or ``latest``: the newest train or predict run)."""
    from crmvalue.tracking.reader import read_run

    record = read_run(run, experiment, tracking_uri, kinds=("train", "predict"))
    if record.kind not in ("train", "predict"):  # a plan of crmvalue plan has its own table
        how = f"export it with --plan {record.run_id}" if record.kind == "plan" else "export a train or predict run"
        raise CrmvalueError(f"run {record.run_id} is a {record.kind} run, not scores: {how}")
    frame = record.predictions()
    as_of = record.as_of_date
    if as_of is None:
        raise CrmvalueError(
            f"run {record.run_id} does not say its observation end; export a run of crmvalue train or predict"
        )
    return RunScores(record.run_id, frame, record.model_version, as_of, record.finished_at)


def dates(values: pd.Series) -> list:
    """``datetime.date`` values, None where missing (runs from before a column was added)."""
    parsed = pd.to_datetime(values, format="ISO8601") if not pd.api.types.is_datetime64_any_dtype(values) else values
    return [None if pd.isna(v) else v.date() for v in parsed]


def is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
