"""The DuckDB engine's SQL: canonical typed values of a source's columns, the date probe and the first bad row."""

from __future__ import annotations

from crmvalue.data.dates import (
    DATE_FORMATS,
    DATE_SHAPES,
    ISO_8601,
    DateResolution,
    ambiguous_dates_error,
    date_error,
    date_order_error,
)
from crmvalue.data.options import ReadOptions
from crmvalue.data.parse import DATE_EXAMPLES, FLOAT_LIKE_ID, missing_ids_error, number_error, shown
from crmvalue.errors import CrmvalueError

# Python's str.strip() whitespace, as far as ids, dates and amounts in files go
WHITESPACE = "' \t\n\x0b\x0c\r'"  # trimming by a set is slow (~1 s per 5M rows): only distinct ids are trimmed
_TEMPORAL = ("DATE", "TIMESTAMP")  # prefixes of DuckDB's date and timestamp types
_FLOATS = ("FLOAT", "DOUBLE", "DECIMAL", "REAL")
_INTEGERS = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
)


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


ROW_NUMBER = "crmvalue_row_number"  # the file position of a row, beside the file's own columns


class DateProbe:
    """What :func:`crmvalue.data.resolve_date_format` asks, answered on the distinct trimmed non-empty dates."""

    def __init__(self, con, columns: SourceColumns):
        self.con, self.columns = con, columns
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE date_values AS SELECT t FROM (SELECT DISTINCT "
            f"{columns.date_text()} AS t FROM src) WHERE t IS NOT NULL AND t <> ''"
        )
        formats = (ISO_8601, *DATE_FORMATS)
        counts = con.execute(
            "SELECT count(*), "
            + ", ".join(f"count(*) FILTER (WHERE {columns.parse(f, 't')} IS NOT NULL)" for f in formats)
            + " FROM date_values"
        ).fetchall()[0]
        self.n_values = int(counts[0])
        self._counts = dict(zip(formats, map(int, counts[1:])))

    def count(self, fmt: str) -> int:
        return self._counts[fmt]

    def differ(self, a: str, b: str) -> bool:
        pa, pb = self.columns.parse(a, "t"), self.columns.parse(b, "t")
        return bool(self.con.execute(f"SELECT count(*) FILTER (WHERE {pa} <> {pb}) FROM date_values").fetchall()[0][0])

    def problem(self, resolution: DateResolution, source: str, where, dayfirst) -> CrmvalueError:
        assert resolution.format is not None and resolution.other is not None  # both read every value
        t = self.columns.date_text()
        pa, pb = self.columns.parse(resolution.format, "t"), self.columns.parse(resolution.other, "t")
        shows = f"{pa} <> {pb}" if resolution.problem == "ambiguous" else f"{pa} IS NOT NULL AND {pb} IS NULL"
        rows = self.con.execute(
            f"SELECT rn, t FROM (SELECT {ROW_NUMBER} AS rn, {t} AS t FROM src_rows) WHERE {shows} ORDER BY rn LIMIT {DATE_EXAMPLES}"
        ).fetchall()
        examples = [(where(int(rn) - 1), value) for rn, value in rows]
        name = self.columns.date_col
        if resolution.problem == "ambiguous":
            return ambiguous_dates_error(source, name, resolution, examples)
        return date_order_error(source, name, resolution, bool(dayfirst), examples[:1])


class SourceColumns:
    """The SQL expressions that turn a source's columns into canonical, typed values.

    ``rid`` (the id as text, untrimmed) is NULL for a missing or non-integer numeric id, ``day`` NULL for an unparseable
    timestamp, ``amount`` and ``quantity`` NaN for a missing or non-numeric value.
    """

    def __init__(self, types: dict[str, str], options: ReadOptions):
        self.types = types
        self.options = options
        self.customer_col, self.date_col, self.quantity_col = (
            options.customer_col,
            options.date_col,
            options.quantity_col,
        )
        self.value_col = options.value_col
        if not self.date_is_text():
            self.resolution = DateResolution(None)
        elif options.date_format:
            self.resolution = DateResolution(options.date_format, given=True)
        else:
            self.resolution = DateResolution(ISO_8601)  # until a value says otherwise

    def _type(self, column: str) -> str:
        return self.types[column]

    def id_is_float(self) -> bool:
        return self._type(self.customer_col).startswith(_FLOATS)

    def date_is_text(self) -> bool:
        return not self._type(self.date_col).startswith(_TEMPORAL)

    def infers_dates(self) -> bool:
        return self.date_is_text() and not self.options.date_format

    def rid(self) -> str:
        """The id as text, before trimming."""
        x = identifier(self.customer_col)
        kind = self._type(self.customer_col)
        if kind.startswith(_FLOATS):  # 12.0 is the id "12", as on the pandas path
            return f"CASE WHEN isfinite({x}) AND {x} = floor({x}) THEN CAST(CAST({x} AS HUGEINT) AS VARCHAR) END"
        return f"CAST({x} AS VARCHAR)"

    def present_id(self) -> str:
        """The row has a customer id: not missing, not only whitespace."""
        x = identifier(self.customer_col)
        if self.id_is_float():
            return f"({x} IS NOT NULL AND NOT isnan({x}))"
        return f"({x} IS NOT NULL AND {self.trimmed(f'CAST({x} AS VARCHAR)')} <> '')"

    @staticmethod
    def trimmed(text: str) -> str:
        return f"trim({text}, {WHITESPACE})"

    @classmethod
    def canonical_id(cls, text: str) -> str:
        """Trimmed, and a float-looking id ("17850.0") made its digits, as ``crmvalue.data.parse_customer_ids`` does."""
        return f"regexp_replace({cls.trimmed(text)}, {literal(FLOAT_LIKE_ID)}, '\\1')"

    def date_text(self) -> str:
        return self.trimmed(f"CAST({identifier(self.date_col)} AS VARCHAR)")

    @staticmethod
    def parse(fmt: str, text: str, given: bool = False) -> str:
        """A timestamp of ``text`` under one format, NULL where it does not read: only values of the format's exact
        shape are parsed (see ``crmvalue.data.DATE_SHAPES``), so that DuckDB and pandas read the same values."""
        if given:
            return f"try_strptime({text}, {literal(fmt)})"
        if fmt == ISO_8601:
            stamp = f"try_cast({text} AS TIMESTAMPTZ)"
        else:
            stamp = f"try_strptime({text}, {literal(fmt)})"
        return f"CASE WHEN regexp_full_match({text}, {literal(DATE_SHAPES[fmt])}) THEN {stamp} END"

    def stamp(self) -> str:
        if self.resolution.format is None:
            return identifier(self.date_col)
        return self.parse(self.resolution.format, self.date_text(), self.resolution.given)

    def day(self) -> str:
        return self.day_of(self.stamp())

    @staticmethod
    def day_of(stamp: str) -> str:
        return f"CAST(CAST({stamp} AS DATE) - DATE '1970-01-01' AS INTEGER)"

    def number(self, column: str) -> str:
        x = identifier(column)
        kind = self._type(column)
        if kind.startswith(_FLOATS + _INTEGERS):
            value = f"CAST({x} AS DOUBLE)"
        elif kind == "BOOLEAN":  # pandas refuses True/False as amounts too
            value = "NULL::DOUBLE"
        else:
            text = self.trimmed(f"CAST({x} AS VARCHAR)")
            if self.options.thousands is not None:
                text = f"replace({text}, {literal(self.options.thousands)}, '')"
            if self.options.decimal != ".":  # with a decimal comma a '.' is neither mark, as on the pandas path
                text = f"CASE WHEN NOT contains({text}, '.') THEN replace({text}, {literal(self.options.decimal)}, '.') END"
            value = f"try_cast({text} AS DOUBLE)"
        return f"coalesce({value}, 'NaN'::DOUBLE)"

    def amount(self) -> str:
        if self.options.price_col and self.quantity_col:  # invoice lines: quantity x unit price (ReadOptions)
            return f"({self.number(self.value_col)} * {self.number(self.quantity_col)})"
        return self.number(self.value_col)

    def typed(self, rows: str, row_number: bool = False) -> str:
        """A query of the typed rows of view ``rows``: ``rid, ts, amount[, quantity], day``; with ``row_number`` also
        ``rn``, the number read from the amount or price column (``value``) and the raw columns (``raw_0``...)."""
        parts = [f"{self.rid()} AS rid", f"{self.stamp()} AS ts", f"{self.amount()} AS amount"]
        if self.quantity_col:
            parts.append(f"{self.number(self.quantity_col)} AS quantity")
        if row_number:
            parts += [f"{ROW_NUMBER} AS rn", f"{self.number(self.value_col)} AS value", self.raw()]
        return f"SELECT *, {self.day_of('ts')} AS day FROM (SELECT {', '.join(parts)} FROM {rows})"

    def raw(self) -> str:
        names = [self.customer_col, self.date_col, self.value_col] + ([self.quantity_col] if self.quantity_col else [])
        return ", ".join(f"{identifier(c)} AS raw_{i}" for i, c in enumerate(names))


def raise_first_bad(con, columns: SourceColumns, source: str, where, ids_only: bool = False) -> None:
    """The pandas path's message for the first failing check, in its order: ids, timestamps, amounts, quantities."""
    checks = []  # (name, condition)
    missing_id = "raw_0 IS NULL"
    if columns.id_is_float():
        checks.append(("fractional", "isfinite(raw_0) AND raw_0 <> floor(raw_0)"))
        missing_id = "raw_0 IS NULL OR isnan(raw_0)"
    checks += [("missing_id", missing_id), ("empty_id", f"{SourceColumns.trimmed('rid')} = ''")]
    if not ids_only:
        checks += [("date", "day IS NULL"), ("amount", "NOT isfinite(value)")]
        if columns.quantity_col:
            checks.append(("quantity", "NOT isfinite(quantity)"))
    select = ", ".join(
        f"count(*) FILTER (WHERE {cond}), min(rn) FILTER (WHERE {cond}), "
        f"CAST(arg_min({'raw_1' if name == 'date' else 'raw_3' if name == 'quantity' else 'raw_2' if name == 'amount' else 'raw_0'}, rn) "
        f"FILTER (WHERE {cond}) AS VARCHAR)"
        for name, cond in checks
    )
    found = con.execute(f"SELECT {select} FROM tx_rows").fetchall()[0]
    options = columns.options
    for k, (name, _) in enumerate(checks):
        count, rn, value = found[3 * k : 3 * k + 3]
        if not count:
            continue
        at = where(int(rn) - 1)
        if name == "fractional":
            raise CrmvalueError(
                f"{source}: column '{columns.customer_col}' has a non-integer id at {at}: {shown(float(value))}"
            )
        if name in ("missing_id", "empty_id"):
            raise missing_ids_error(source, columns.customer_col, count, at, name.removesuffix("_id"), True)
        if name == "date":
            raise date_error(source, columns.date_col, count, at, value, columns.resolution)
        column = columns.value_col if name == "amount" else columns.quantity_col
        assert column is not None  # the quantity is checked only when there is a quantity column
        raise number_error(source, column, count, at, value, options.decimal, options.thousands)
    if ids_only:
        return
    raise CrmvalueError(f"{source}: a netted amount is not finite (the sum of a day overflows)")
