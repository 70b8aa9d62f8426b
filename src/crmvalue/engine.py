"""Load transactions into netted customer-days with pandas or, for large files, with DuckDB.

``data.engine`` chooses:

- ``pandas``: :func:`crmvalue.data.load_transactions` reads and validates every row into a
  DataFrame, then :func:`crmvalue.customer_days.customer_days` nets it. Peak memory grows
  with the rows (about 1 GB per 5 million transactions with text ids).
- ``duckdb``: DuckDB scans the CSV or Parquet file, validates the same things, nets each
  customer-day in SQL and hands over only the netted days: int32 customer codes and days,
  float64 nets. The raw rows never reach pandas; DuckDB spills to disk past its memory limit.
- ``auto`` (the default): DuckDB for CSV/Parquet files of ``AUTO_DUCKDB_BYTES`` or more,
  pandas otherwise (and always for DataFrames and the bundled CDNOW data).

Both engines give the same customer-days to the last bit, so every later number is the same:
a day of one or two rows sums the same in any order, and a day of three or more is re-netted
from its rows in file order with ``numpy.add.reduceat``, as the pandas path does.

Both read a date column with one format decided from its distinct values by
:func:`crmvalue.data.resolve_date_format`; each candidate format is tried only on values of its
exact shape (``crmvalue.data.DATE_SHAPES``), where pandas' and DuckDB's parsers agree. Files in an
encoding other than UTF-8 are decoded by Python into a temporary UTF-8 copy, as pandas decodes
them. What differs: DuckDB reads plain or gzip-compressed CSV only (pandas also reads .bz2, .xz
and .zip), and a message about a file DuckDB cannot parse quotes DuckDB's reason.
"""

from __future__ import annotations

import contextlib
import logging
import lzma
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from crmvalue.customer_days import CustomerDays, check_modellable, customer_days
from crmvalue.data import (
    _EXAMPLES,
    _FLOAT_LIKE_ID,
    BUNDLED,
    DATE_FORMATS,
    DATE_SHAPES,
    ISO_8601,
    DateResolution,
    ReadOptions,
    _ambiguous_dates_error,
    _csv_line_locator,
    _date_error,
    _date_order_error,
    _day_text,
    _dropped_ids_note,
    _duplicates_note,
    _encoding_error,
    _first_line,
    _late_dates_error,
    _late_dates_note,
    _missing_columns_error,
    _missing_ids_error,
    _number_error,
    _open_text,
    _parquet_row,
    _shown,
    csv_encoding,
    existing_file,
    file_sha256,
    header_line,
    late_dates_cutoff,
    other_delimiter,
    read_transactions,
    resolve_date_format,
)
from crmvalue.errors import CrmvalueError

log = logging.getLogger("crmvalue")

Engine = Literal["auto", "pandas", "duckdb"]
ENGINES = ("auto", "pandas", "duckdb")
AUTO_DUCKDB_BYTES = 100 * 2**20  # ~2-4 million CSV rows: below it pandas is as fast and reads more date formats
DUCKDB_MEMORY_LIMIT = "4GB"  # DuckDB spills its hash tables to a temporary directory past this
_FETCH_ROWS = 1 << 20

# Python's str.strip() whitespace, as far as ids, dates and amounts in files go
_WHITESPACE = "' \t\n\x0b\x0c\r'"  # trimming by a set is slow (~1 s per 5M rows): only distinct ids are trimmed
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


def load_customer_days(
    source: str | Path | pd.DataFrame,
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str = "amount",
    quantity_col: str | None = None,
    date_format: str | None = None,
    engine: Engine = "auto",
    dayfirst: bool | None = None,
    price_col: str | None = None,
    sep: str | None = None,
    decimal: str = ".",
    thousands: str | None = None,
    encoding: str | None = None,
    drop_missing_ids: bool = False,
    allow_future_dates: bool = False,
) -> CustomerDays:
    """Netted customer-days of a source, with the engine ``engine`` picks (see the module docstring).

    Takes what :func:`crmvalue.data.load_transactions` takes and fails with its messages; then
    refuses data no model can learn from (:func:`crmvalue.customer_days.check_modellable`).
    Warnings go to the ``crmvalue`` logger once every check has passed.
    """
    options = ReadOptions(
        customer_col=customer_col,
        date_col=date_col,
        amount_col=amount_col,
        quantity_col=quantity_col,
        price_col=price_col,
        date_format=date_format,
        dayfirst=dayfirst,
        sep=sep,
        decimal=decimal,
        thousands=thousands,
        encoding=encoding,
        drop_missing_ids=drop_missing_ids,
        allow_future_dates=allow_future_dates,
    )
    return read_customer_days(source, options, engine)


def read_customer_days(
    source: str | Path | pd.DataFrame, options: ReadOptions, engine: Engine = "auto"
) -> CustomerDays:
    """:func:`load_customer_days` with its reading options in one object."""
    if choose_engine(source, engine) == "duckdb":
        days, notes = _duckdb_days(Path(source), options)
    else:
        tx, notes = read_transactions(source, options)
        days = customer_days(tx.frame).with_source(tx.source, tx.sha256)
    check_modellable(days)
    for note in notes:
        log.warning(note)
    return days


def choose_engine(source, engine: Engine = "auto") -> str:
    """``"pandas"`` or ``"duckdb"`` for a source and the configured ``data.engine``."""
    if engine not in ENGINES:
        raise CrmvalueError(f"data.engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if isinstance(source, pd.DataFrame) or (isinstance(source, str) and source in BUNDLED):
        return "pandas"  # already in memory, or small
    path = existing_file(source)
    readable = _duckdb_format(path) is not None
    if engine == "duckdb":
        if not readable:
            raise CrmvalueError(
                f"{path}: the duckdb engine reads .csv, .tsv, .txt (plain or .gz) and .parquet files; "
                "set data.engine: pandas for other formats"
            )
        return "duckdb"
    if engine == "auto" and readable and path.stat().st_size >= AUTO_DUCKDB_BYTES:
        return "duckdb"
    return "pandas"


def _duckdb_format(path: Path) -> tuple[str, str] | None:
    """``("parquet", "")`` or ``("csv", separator)`` when DuckDB reads the file, else None."""
    suffixes = [s.lower() for s in path.suffixes]
    if not suffixes:
        return None
    if suffixes[-1] in (".parquet", ".pq"):
        return "parquet", ""
    inner = suffixes[-2] if suffixes[-1] == ".gz" and len(suffixes) > 1 else suffixes[-1]
    if inner in (".csv", ".txt"):
        return "csv", ","
    if inner == ".tsv":
        return "csv", "\t"
    return None


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextlib.contextmanager
def _connection(memory_limit: str) -> Iterator:
    import duckdb

    with tempfile.TemporaryDirectory(prefix="crmvalue-duckdb-") as spill:
        con = duckdb.connect(
            config={"memory_limit": memory_limit, "temp_directory": spill, "preserve_insertion_order": False}
        )
        try:
            con.execute("SET TimeZone = 'UTC'")  # naive timestamps are UTC, aware ones are converted, as in pandas
            con.execute("SET enable_progress_bar = false")  # the pipeline prints one line per stage
            yield con
        finally:
            con.close()


def duckdb_customer_days(
    path: Path,
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str = "amount",
    quantity_col: str | None = None,
    date_format: str | None = None,
    memory_limit: str = DUCKDB_MEMORY_LIMIT,
    **reading,
) -> CustomerDays:
    """Net a CSV or Parquet file per customer-day in DuckDB; the raw rows never reach pandas.

    ``reading`` takes the other options of :func:`crmvalue.data.load_transactions`.
    """
    options = ReadOptions(
        customer_col=customer_col,
        date_col=date_col,
        amount_col=amount_col,
        quantity_col=quantity_col,
        date_format=date_format,
        **reading,
    )
    days, notes = _duckdb_days(Path(path), options, memory_limit)
    for note in notes:
        log.warning(note)
    return days


def _transcoded(path: Path, encoding: str, directory: str) -> Path:
    """A UTF-8 copy of a text file in another encoding, decoded by Python's codec as pandas decodes it."""
    target = Path(directory) / "utf8.csv"
    try:
        with (
            _open_text(path, encoding, errors="strict") as text,
            open(target, "w", encoding="utf-8", newline="") as out,
        ):
            shutil.copyfileobj(text, out, 1 << 20)
    except UnicodeError as exc:
        raise _encoding_error(path, encoding, _first_line(exc)) from None
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        raise CrmvalueError(f"{path}: cannot be read as CSV ({_first_line(exc)})") from None
    return target


def _duckdb_days(
    path: Path, options: ReadOptions, memory_limit: str = DUCKDB_MEMORY_LIMIT
) -> tuple[CustomerDays, list[str]]:
    """The netted days and the warnings to give, checked as :func:`crmvalue.data.read_transactions` checks."""
    import duckdb

    path = existing_file(path)
    kind = _duckdb_format(path)
    if kind is None:
        raise CrmvalueError(f"{path}: unsupported format '{path.suffix or path.name}'; use .csv or .parquet")
    kind, sep = kind
    sep = options.sep or sep
    if path.stat().st_size == 0:
        raise CrmvalueError(f"{path}: the file is empty")
    source = str(path)
    encoding = csv_encoding(path, options.encoding) if kind == "csv" else None
    with _connection(memory_limit) as con, tempfile.TemporaryDirectory(prefix="crmvalue-text-") as scratch:
        if kind == "parquet":
            scan = f"read_parquet({_literal(str(path))})"
        else:
            # DuckDB reads UTF-8 (and skips its byte-order mark); anything else is decoded by Python first
            text = path if encoding in ("utf-8", "utf-8-sig") else _transcoded(path, encoding, scratch)
            scan = (
                f"read_csv({_literal(str(text))}, header = true, all_varchar = true, delim = {_literal(sep)}, "
                "quote = '\"', escape = '\"')"
            )
        what = "Parquet" if kind == "parquet" else "CSV"
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
        except duckdb.Error as exc:
            if kind == "csv":
                header = header_line(path, encoding)
                if header is not None and other_delimiter(header, sep) is not None:
                    raise _missing_columns_error(source, [], [], options, header, sep) from None
                if "unicode" in str(exc).lower():
                    raise _encoding_error(path, encoding, _first_line(exc)) from None
            raise CrmvalueError(f"{path}: cannot be read as {what} ({_first_line(exc)})") from None
        types = {row[0]: str(row[1]).upper() for row in described}
        missing = [c for c in options.columns if c not in types]
        if missing:
            header = header_line(path, encoding) if kind == "csv" else None
            raise _missing_columns_error(source, missing, list(types), options, header, sep if kind == "csv" else None)
        columns = _Columns(types, options)
        keep = ""
        if options.drop_missing_ids:
            n_all, n_absent = con.execute(
                f"SELECT count(*), count(*) FILTER (WHERE NOT ({columns.present_id()})) FROM {scan}"
            ).fetchall()[0]
            if n_absent and n_absent == n_all:
                raise CrmvalueError(f"{source}: no row has a customer id in column '{options.customer_col}'")
            keep = f" WHERE {columns.present_id()}" if n_absent else ""
        con.execute(f"CREATE TEMP VIEW src AS SELECT * FROM {scan}{keep}")
        con.execute(
            f"CREATE TEMP VIEW src_rows AS SELECT * FROM (SELECT ordinality AS {_RN}, * FROM {scan} "
            f"WITH ORDINALITY){keep}"
        )
        where = _row_locator(path, kind, sep, encoding)
        _net_raw_days(con, columns, path, what)
        if columns.infers_dates():
            n_undated = con.execute("SELECT count(*) FROM raw_days WHERE day IS NULL").fetchall()[0][0]
            if n_undated:  # not ISO 8601 throughout: one format for the whole column, as on the pandas path
                probe = _DateProbe(con, columns)
                resolution = resolve_date_format(probe.n_values, probe.count, probe.differ, options.dayfirst)
                if resolution.problem in ("ambiguous", "order"):
                    _raise_first_bad(con, columns, source, where, ids_only=True)  # ids are checked first
                    raise probe.problem(resolution, source, where, options.dayfirst)
                if resolution != columns.resolution:
                    columns.resolution = resolution
                    _net_raw_days(con, columns, path, what)
        quantity = ", sum(quantity) AS quantity" if options.quantity_col else ""
        con.execute(
            f"CREATE TEMP TABLE ids AS SELECT rid, cid, (dense_rank() OVER (ORDER BY cid) - 1)::INTEGER AS code "
            f"FROM (SELECT rid, {columns.canonical_id('rid')} AS cid FROM (SELECT DISTINCT rid FROM raw_days))"
        )
        n_rows, n_raw_days, n_bad = con.execute(
            "SELECT coalesce(sum(rows), 0), count(*), count(*) FILTER (WHERE rid IS NULL OR day IS NULL "
            f"OR NOT isfinite(amount){' OR NOT isfinite(quantity)' if options.quantity_col else ''}) FROM raw_days"
        ).fetchall()[0]
        if n_rows == 0:
            raise CrmvalueError(f"{source}: the file has no data rows")
        n_empty, n_merged = con.execute(
            "SELECT count(*) FILTER (WHERE cid = ''), count(*) FILTER (WHERE rid <> cid) FROM ids"
        ).fetchall()[0]
        if n_bad or n_empty:
            _raise_first_bad(con, columns, source, where)
        notes = [_dropped_ids_note(source, options.customer_col, int(n_absent))] if keep else []
        notes += _late_dates(con, columns, source, options, where)
        if n_merged:  # ' 12', '12' and '12.0' are one customer: net their days again
            q_range = ", min(q_low) AS q_low, max(q_high) AS q_high" if options.quantity_col else ""
            con.execute(
                "CREATE TEMP VIEW days AS SELECT code, day, sum(rows)::INTEGER AS rows, sum(amount) AS amount, "
                "bool_or(returned) AS returned, min(low) AS low, max(high) AS high, min(first_ts) AS first_ts, "
                f"max(last_ts) AS last_ts{quantity}{q_range} FROM raw_days JOIN ids USING (rid) GROUP BY code, day"
            )
        else:
            con.execute("CREATE TEMP VIEW days AS SELECT * FROM raw_days JOIN ids USING (rid)")
        # every raw day is one day unless ids merged on trimming; counting the joined view costs a join
        n_days = con.execute("SELECT count(*) FROM days").fetchall()[0][0] if n_merged else n_raw_days
        ids = pd.Index(
            con.sql("SELECT DISTINCT cid, code FROM ids ORDER BY code")
            .to_arrow_table()
            .column(0)
            .to_numpy(zero_copy_only=False),
            dtype=object,  # as load_transactions gives them
        )
        days = _fetch_days(con, int(n_days), options.quantity_col is not None)
        # exact duplicates share a customer-day: a day of two rows holds one if its rows' extremes agree,
        # the rows of longer days are fetched for re-netting anyway
        same = " AND q_low = q_high" if options.quantity_col else ""
        duplicates = con.execute(
            f"SELECT count(*) FILTER (WHERE rows = 2 AND low = high AND first_ts = last_ts{same}) FROM days"
        ).fetchall()[0][0]
        duplicates += _renet_long_days(con, days, options.quantity_col is not None)
        if duplicates:
            notes.append(_duplicates_note(source, int(duplicates), options.quantity_col is not None))
    return CustomerDays(ids=ids, **days, source=source, sha256=file_sha256(path)), notes


_RN = "crmvalue_row_number"  # the file position of a row, beside the file's own columns


def _net_raw_days(con, columns: _Columns, path: Path, what: str) -> None:
    """The typed rows (``tx``, ``tx_rows``) and their sums per untrimmed id and day (``raw_days``)."""
    import duckdb

    quantity = ", sum(quantity) AS quantity" if columns.quantity_col else ""
    con.execute(f"CREATE OR REPLACE TEMP VIEW tx AS {columns.typed('src')}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW tx_rows AS {columns.typed('src_rows', row_number=True)}")
    try:
        # grouped by the untrimmed id: trimming 5 million distinct ids is cheaper than 50 million rows;
        # a bad amount is NaN, so the day's sum is not finite and the check below finds it
        q_range = ", min(quantity) AS q_low, max(quantity) AS q_high" if columns.quantity_col else ""
        con.execute(
            "CREATE OR REPLACE TEMP TABLE raw_days AS SELECT rid, day, count(*)::INTEGER AS rows, "
            "sum(amount) AS amount, min(amount) < 0 AS returned, min(amount) AS low, max(amount) AS high, "
            f"min(ts) AS first_ts, max(ts) AS last_ts{quantity}{q_range} FROM tx GROUP BY rid, day"
        )
    except duckdb.Error as exc:
        raise CrmvalueError(f"{path}: cannot be read as {what} ({_first_line(exc)})") from None


class _DateProbe:
    """What :func:`crmvalue.data.resolve_date_format` asks, answered on the distinct trimmed non-empty dates."""

    def __init__(self, con, columns: _Columns):
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
        t = self.columns.date_text()
        pa, pb = self.columns.parse(resolution.format, "t"), self.columns.parse(resolution.other, "t")
        shows = f"{pa} <> {pb}" if resolution.problem == "ambiguous" else f"{pa} IS NOT NULL AND {pb} IS NULL"
        rows = self.con.execute(
            f"SELECT rn, t FROM (SELECT {_RN} AS rn, {t} AS t FROM src_rows) WHERE {shows} ORDER BY rn LIMIT {_EXAMPLES}"
        ).fetchall()
        examples = [(where(int(rn) - 1), value) for rn, value in rows]
        name = self.columns.date_col
        if resolution.problem == "ambiguous":
            return _ambiguous_dates_error(source, name, resolution, examples)
        return _date_order_error(source, name, resolution, bool(dayfirst), examples[:1])


def _late_dates(con, columns: _Columns, source: str, options: ReadOptions, where) -> list[str]:
    """Refuse (or, if allowed, count) rows dated implausibly late, as the pandas path does."""
    per_day = con.execute("SELECT day, sum(rows) FROM raw_days GROUP BY day ORDER BY day").fetchall()
    if not per_day:
        return []
    days, rows = (np.array(v, dtype=np.int64) for v in zip(*per_day))
    late = late_dates_cutoff(days, rows)
    if late is None:
        return []
    count = int(rows[days > late.last_good].sum())
    if options.allow_future_dates:
        return [_late_dates_note(source, late, count)]
    text = columns.date_is_text()
    rn, day, value = con.execute(
        f"SELECT rn, day, {f'trim(CAST(raw_1 AS VARCHAR), {_WHITESPACE})' if text else 'NULL'} FROM tx_rows "
        f"WHERE day > {int(late.last_good)} ORDER BY rn LIMIT 1"
    ).fetchall()[0]
    raise _late_dates_error(source, late, count, where(int(rn) - 1), value if text else _day_text(day))


class _Columns:
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
        x = _identifier(self.customer_col)
        kind = self._type(self.customer_col)
        if kind.startswith(_FLOATS):  # 12.0 is the id "12", as on the pandas path
            return f"CASE WHEN isfinite({x}) AND {x} = floor({x}) THEN CAST(CAST({x} AS HUGEINT) AS VARCHAR) END"
        return f"CAST({x} AS VARCHAR)"

    def present_id(self) -> str:
        """The row has a customer id: not missing, not only whitespace."""
        x = _identifier(self.customer_col)
        if self.id_is_float():
            return f"({x} IS NOT NULL AND NOT isnan({x}))"
        return f"({x} IS NOT NULL AND {self.trimmed(f'CAST({x} AS VARCHAR)')} <> '')"

    @staticmethod
    def trimmed(text: str) -> str:
        return f"trim({text}, {_WHITESPACE})"

    @classmethod
    def canonical_id(cls, text: str) -> str:
        """Trimmed, and a float-looking id ("17850.0") made its digits, as ``crmvalue.data.parse_customer_ids`` does."""
        return f"regexp_replace({cls.trimmed(text)}, {_literal(_FLOAT_LIKE_ID)}, '\\1')"

    def date_text(self) -> str:
        return self.trimmed(f"CAST({_identifier(self.date_col)} AS VARCHAR)")

    @staticmethod
    def parse(fmt: str, text: str, given: bool = False) -> str:
        """A timestamp of ``text`` under one format, NULL where it does not read: only values of the format's exact
        shape are parsed (see ``crmvalue.data.DATE_SHAPES``), so that DuckDB and pandas read the same values."""
        if given:
            return f"try_strptime({text}, {_literal(fmt)})"
        if fmt == ISO_8601:
            stamp = f"try_cast({text} AS TIMESTAMPTZ)"
        else:
            stamp = f"try_strptime({text}, {_literal(fmt)})"
        return f"CASE WHEN regexp_full_match({text}, {_literal(DATE_SHAPES[fmt])}) THEN {stamp} END"

    def stamp(self) -> str:
        if self.resolution.format is None:
            return _identifier(self.date_col)
        return self.parse(self.resolution.format, self.date_text(), self.resolution.given)

    def day(self) -> str:
        return self.day_of(self.stamp())

    @staticmethod
    def day_of(stamp: str) -> str:
        return f"CAST(CAST({stamp} AS DATE) - DATE '1970-01-01' AS INTEGER)"

    def number(self, column: str) -> str:
        x = _identifier(column)
        kind = self._type(column)
        if kind.startswith(_FLOATS + _INTEGERS):
            value = f"CAST({x} AS DOUBLE)"
        elif kind == "BOOLEAN":  # pandas refuses True/False as amounts too
            value = "NULL::DOUBLE"
        else:
            text = self.trimmed(f"CAST({x} AS VARCHAR)")
            if self.options.thousands is not None:
                text = f"replace({text}, {_literal(self.options.thousands)}, '')"
            if self.options.decimal != ".":  # with a decimal comma a '.' is neither mark, as on the pandas path
                text = f"CASE WHEN NOT contains({text}, '.') THEN replace({text}, {_literal(self.options.decimal)}, '.') END"
            value = f"try_cast({text} AS DOUBLE)"
        return f"coalesce({value}, 'NaN'::DOUBLE)"

    def amount(self) -> str:
        if self.options.price_col:  # invoice lines: quantity x unit price
            return f"({self.number(self.value_col)} * {self.number(self.quantity_col)})"
        return self.number(self.value_col)

    def typed(self, rows: str, row_number: bool = False) -> str:
        """A query of the typed rows of view ``rows``: ``rid, ts, amount[, quantity], day``; with ``row_number`` also
        ``rn``, the number read from the amount or price column (``value``) and the raw columns (``raw_0``...)."""
        parts = [f"{self.rid()} AS rid", f"{self.stamp()} AS ts", f"{self.amount()} AS amount"]
        if self.quantity_col:
            parts.append(f"{self.number(self.quantity_col)} AS quantity")
        if row_number:
            parts += [f"{_RN} AS rn", f"{self.number(self.value_col)} AS value", self.raw()]
        return f"SELECT *, {self.day_of('ts')} AS day FROM (SELECT {', '.join(parts)} FROM {rows})"

    def raw(self) -> str:
        names = [self.customer_col, self.date_col, self.value_col] + ([self.quantity_col] if self.quantity_col else [])
        return ", ".join(f"{_identifier(c)} AS raw_{i}" for i, c in enumerate(names))


def _row_locator(path: Path, kind: str, sep: str, encoding: str | None = None):
    return _parquet_row if kind == "parquet" else _csv_line_locator(path, sep, encoding or "utf-8-sig")


def _raise_first_bad(con, columns: _Columns, source: str, where, ids_only: bool = False) -> None:
    """The pandas path's message for the first failing check, in its order: ids, timestamps, amounts, quantities."""
    checks = []  # (name, condition)
    missing_id = "raw_0 IS NULL"
    if columns.id_is_float():
        checks.append(("fractional", "isfinite(raw_0) AND raw_0 <> floor(raw_0)"))
        missing_id = "raw_0 IS NULL OR isnan(raw_0)"
    checks += [("missing_id", missing_id), ("empty_id", f"{_Columns.trimmed('rid')} = ''")]
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
                f"{source}: column '{columns.customer_col}' has a non-integer id at {at}: {_shown(float(value))}"
            )
        if name in ("missing_id", "empty_id"):
            raise _missing_ids_error(source, columns.customer_col, count, at, name.removesuffix("_id"), True)
        if name == "date":
            raise _date_error(source, columns.date_col, count, at, value, columns.resolution)
        column = columns.value_col if name == "amount" else columns.quantity_col
        raise _number_error(source, column, count, at, value, options.decimal, options.thousands)
    if ids_only:
        return
    raise CrmvalueError(f"{source}: a netted amount is not finite (the sum of a day overflows)")


def _fetch_days(con, n: int, with_quantity: bool) -> dict[str, np.ndarray]:
    """The netted days in (code, day) order, copied batch by batch into preallocated arrays."""
    out = {
        "customer": np.empty(n, np.int32),
        "day": np.empty(n, np.int32),
        "amount": np.empty(n, np.float64),
        "returned": np.empty(n, bool),
        "rows": np.empty(n, np.int32),
        "quantity": np.empty(n, np.float64) if with_quantity else None,
    }
    wanted = ["customer", "day", "amount", "returned", "rows"] + (["quantity"] if with_quantity else [])
    reader = con.sql(
        f"SELECT code AS customer, day, amount, returned, rows{', quantity' if with_quantity else ''} "
        "FROM days ORDER BY code, day"
    ).to_arrow_reader(_FETCH_ROWS)
    at = 0
    for batch in reader:
        size = batch.num_rows
        for name in wanted:
            out[name][at : at + size] = batch.column(name).to_numpy(zero_copy_only=False)
        at += size
    if at != n:
        raise CrmvalueError(f"DuckDB returned {at} customer-days instead of {n}; please report this")
    return out


def _renet_long_days(con, days: dict[str, np.ndarray], with_quantity: bool) -> int:
    """Re-net the days of three or more rows from their rows in file order, as the pandas path sums them;
    return how many of those rows repeat an earlier row exactly.

    Two numbers sum the same in any order; three need not, and DuckDB's parallel sum has no order.
    """
    long = np.flatnonzero(days["rows"] >= 3)
    if long.size == 0:
        return 0
    # by untrimmed id: the rows are probed against the few long days before any join to the codes
    con.execute(
        "CREATE TEMP TABLE long_days AS SELECT rid, raw_days.day FROM raw_days JOIN ids USING (rid) "
        "JOIN (SELECT code, day FROM days WHERE rows >= 3) USING (code, day)"
    )
    table = con.sql(
        f"SELECT code, day, ts, amount{', quantity' if with_quantity else ''} FROM tx_rows "
        "JOIN long_days USING (rid, day) JOIN ids USING (rid) ORDER BY code, day, rn"
    ).to_arrow_table()
    code = table.column("code").to_numpy().astype(np.int64)
    day = table.column("day").to_numpy().astype(np.int64)
    first_day = int(days["day"].min())
    span = np.int64(int(days["day"].max()) - first_day + 1)
    key = code * span + (day - first_day)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    target = long[
        np.searchsorted(
            days["customer"][long].astype(np.int64) * span + (days["day"][long].astype(np.int64) - first_day),
            key[starts],
        )
    ]
    days["amount"][target] = np.add.reduceat(table.column("amount").to_numpy(), starts)
    if with_quantity:
        days["quantity"][target] = np.add.reduceat(table.column("quantity").to_numpy(), starts)
    rows = table.select(["code", "ts", "amount"] + (["quantity"] if with_quantity else [])).to_pandas()
    return int(rows.duplicated().sum())
