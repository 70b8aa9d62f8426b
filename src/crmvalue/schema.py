"""The output contract: every column crmvalue writes, declared once.

Each :class:`Column` carries its name, the group it belongs to, how it is formatted in files
and which SQL type it has in the database. The export order, the database types and the
report all read these declarations, so a new column is added in one place and an undeclared
column is an error, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "integer", "number", "money", "date", "timestamp"]


@dataclass(frozen=True)
class Column:
    """One output column: ``kind`` decides the file format, ``sql`` the database type."""

    name: str
    group: str
    kind: Kind
    sql: str  # "TEXT", "INTEGER", "SMALLINT", "DOUBLE", "DATE", "VARCHAR(n)", "TIMESTAMPTZ"
    doc: str = ""
