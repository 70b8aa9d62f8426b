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

What differs: DuckDB parses timestamps without a ``date_format`` as ISO 8601 only (pandas
falls back to guessing other formats), and reads plain or gzip-compressed CSV only (pandas
also reads .bz2, .xz and .zip).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pandas as pd

from crmvalue.customer_days import CustomerDays, customer_days
from crmvalue.data import (
    BUNDLED,
    _csv_line_locator,
    _existing_file,
    _first_line,
    _parquet_row,
    _shown,
    file_sha256,
    load_transactions,
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
_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
             "UHUGEINT")


def load_customer_days(
    source: str | Path | pd.DataFrame,
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str = "amount",
    quantity_col: str | None = None,
    date_format: str | None = None,
    engine: Engine = "auto",
) -> CustomerDays:
    """Netted customer-days of a source, with the engine ``engine`` picks (see the module docstring).

    Takes what :func:`crmvalue.data.load_transactions` takes and fails with its messages.
    """
    options = dict(customer_col=customer_col, date_col=date_col, amount_col=amount_col,
                   quantity_col=quantity_col, date_format=date_format)
    if choose_engine(source, engine) == "duckdb":
        return duckdb_customer_days(Path(source), **options)
    tx = load_transactions(source, **options)
    return customer_days(tx.frame).with_source(tx.source, tx.sha256)


def choose_engine(source, engine: Engine = "auto") -> str:
    """``"pandas"`` or ``"duckdb"`` for a source and the configured ``data.engine``."""
    if engine not in ENGINES:
        raise CrmvalueError(f"data.engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if isinstance(source, pd.DataFrame) or (isinstance(source, str) and source in BUNDLED):
        return "pandas"  # already in memory, or small
    path = _existing_file(source)
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
        con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": spill,
                                     "preserve_insertion_order": False})
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
) -> CustomerDays:
    """Net a CSV or Parquet file per customer-day in DuckDB; the raw rows never reach pandas."""
    import duckdb

    path = _existing_file(path)
    kind = _duckdb_format(path)
    if kind is None:
        raise CrmvalueError(f"{path}: unsupported format '{path.suffix or path.name}'; use .csv or .parquet")
    kind, sep = kind
    if path.stat().st_size == 0:
        raise CrmvalueError(f"{path}: the file is empty")
    if kind == "parquet":
        scan = f"read_parquet({_literal(str(path))})"
    else:
        scan = (f"read_csv({_literal(str(path))}, header = true, all_varchar = true, delim = {_literal(sep)}, "
                "quote = '\"', escape = '\"')")
    with _connection(memory_limit) as con:
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
        except duckdb.Error as exc:
            raise CrmvalueError(f"{path}: cannot be read as {'Parquet' if kind == 'parquet' else 'CSV'} "
                                f"({_first_line(exc)})") from None
        types = {row[0]: str(row[1]).upper() for row in described}
        source = str(path)
        wanted = [customer_col, date_col, amount_col] + ([quantity_col] if quantity_col else [])
        missing = [c for c in wanted if c not in types]
        if missing:
            have = ", ".join(repr(str(c)) for c in types)
            raise CrmvalueError(
                f"{source}: missing column {', '.join(repr(c) for c in missing)}; the columns are {have} "
                f"(set --customer-col/--date-col/--amount-col)"
            )
        columns = _Columns(types, customer_col, date_col, amount_col, quantity_col, date_format)
        con.execute(f"CREATE TEMP VIEW tx AS SELECT {columns.typed()} FROM {scan}")
        con.execute(f"CREATE TEMP VIEW tx_rows AS SELECT ordinality AS rn, {columns.typed()}, {columns.raw()} "
                    f"FROM {scan} WITH ORDINALITY")
        quantity = ", sum(quantity) AS quantity" if quantity_col else ""
        try:
            # grouped by the untrimmed id: trimming 5 million distinct ids is cheaper than 50 million rows;
            # a bad amount is NaN, so the day's sum is not finite and the check below finds it
            con.execute(
                "CREATE TEMP TABLE raw_days AS SELECT rid, day, count(*)::INTEGER AS rows, sum(amount) AS amount, "
                f"min(amount) < 0 AS returned{quantity} FROM tx GROUP BY rid, day"
            )
        except duckdb.Error as exc:
            raise CrmvalueError(f"{path}: cannot be read as {'Parquet' if kind == 'parquet' else 'CSV'} "
                                f"({_first_line(exc)})") from None
        con.execute(f"CREATE TEMP TABLE ids AS SELECT rid, cid, (dense_rank() OVER (ORDER BY cid) - 1)::INTEGER AS code "
                    f"FROM (SELECT rid, {columns.trimmed('rid')} AS cid FROM (SELECT DISTINCT rid FROM raw_days))")
        n_rows, n_raw_days, n_bad = con.execute(
            "SELECT coalesce(sum(rows), 0), count(*), count(*) FILTER (WHERE rid IS NULL OR day IS NULL "
            f"OR NOT isfinite(amount){' OR NOT isfinite(quantity)' if quantity_col else ''}) FROM raw_days"
        ).fetchall()[0]
        if n_rows == 0:
            raise CrmvalueError(f"{source}: the file has no data rows")
        n_empty, n_merged = con.execute("SELECT count(*) FILTER (WHERE cid = ''), count(*) FILTER (WHERE rid <> cid) "
                                        "FROM ids").fetchall()[0]
        if n_bad or n_empty:
            _raise_first_bad(con, columns, source, _row_locator(path, kind, sep))
        if n_merged:  # ' 12' and '12' are one customer: net their days again
            con.execute(
                "CREATE TEMP VIEW days AS SELECT code, day, sum(rows)::INTEGER AS rows, sum(amount) AS amount, "
                f"bool_or(returned) AS returned{quantity} FROM raw_days JOIN ids USING (rid) GROUP BY code, day"
            )
        else:
            con.execute("CREATE TEMP VIEW days AS SELECT * FROM raw_days JOIN ids USING (rid)")
        # every raw day is one day unless ids merged on trimming; counting the joined view costs a join
        n_days = con.execute("SELECT count(*) FROM days").fetchall()[0][0] if n_merged else n_raw_days
        ids = pd.Index(
            con.sql("SELECT DISTINCT cid, code FROM ids ORDER BY code").to_arrow_table().column(0)
            .to_numpy(zero_copy_only=False),
            dtype=object,  # as load_transactions gives them
        )
        days = _fetch_days(con, int(n_days), quantity_col is not None)
        _renet_long_days(con, days, quantity_col is not None)
    return CustomerDays(ids=ids, **days, source=source, sha256=file_sha256(path))


class _Columns:
    """The SQL expressions that turn a source's columns into canonical, typed values.

    ``rid`` (the id as text, untrimmed) is NULL for a missing or non-integer numeric id, ``day`` NULL for an unparseable
    timestamp, ``amount`` and ``quantity`` NaN for a missing or non-numeric value.
    """

    def __init__(self, types: dict[str, str], customer_col, date_col, amount_col, quantity_col, date_format):
        self.types = types
        self.customer_col, self.date_col, self.amount_col, self.quantity_col = customer_col, date_col, amount_col, quantity_col
        self.date_format = date_format

    def _type(self, column: str) -> str:
        return self.types[column]

    def id_is_float(self) -> bool:
        return self._type(self.customer_col).startswith(_FLOATS)

    def rid(self) -> str:
        """The id as text, before trimming."""
        x = _identifier(self.customer_col)
        kind = self._type(self.customer_col)
        if kind.startswith(_FLOATS):  # 12.0 is the id "12", as on the pandas path
            return f"CASE WHEN isfinite({x}) AND {x} = floor({x}) THEN CAST(CAST({x} AS HUGEINT) AS VARCHAR) END"
        return f"CAST({x} AS VARCHAR)"

    @staticmethod
    def trimmed(text: str) -> str:
        return f"trim({text}, {_WHITESPACE})"

    def day(self) -> str:
        x = _identifier(self.date_col)
        if self._type(self.date_col).startswith(_TEMPORAL):
            stamp = x
        else:
            text = f"trim(CAST({x} AS VARCHAR), {_WHITESPACE})"
            stamp = (f"try_strptime({text}, {_literal(self.date_format)})" if self.date_format
                     else f"try_cast({text} AS TIMESTAMPTZ)")
        return f"CAST(CAST({stamp} AS DATE) - DATE '1970-01-01' AS INTEGER)"

    def number(self, column: str) -> str:
        x = _identifier(column)
        kind = self._type(column)
        if kind.startswith(_FLOATS + _INTEGERS):
            value = f"CAST({x} AS DOUBLE)"
        elif kind == "BOOLEAN":  # pandas refuses True/False as amounts too
            value = "NULL::DOUBLE"
        else:
            value = f"try_cast(trim(CAST({x} AS VARCHAR), {_WHITESPACE}) AS DOUBLE)"
        return f"coalesce({value}, 'NaN'::DOUBLE)"

    def typed(self) -> str:
        parts = [f"{self.rid()} AS rid", f"{self.day()} AS day", f"{self.number(self.amount_col)} AS amount"]
        if self.quantity_col:
            parts.append(f"{self.number(self.quantity_col)} AS quantity")
        return ", ".join(parts)

    def raw(self) -> str:
        names = [self.customer_col, self.date_col, self.amount_col] + ([self.quantity_col] if self.quantity_col else [])
        return ", ".join(f"{_identifier(c)} AS raw_{i}" for i, c in enumerate(names))


def _row_locator(path: Path, kind: str, sep: str):
    return _parquet_row if kind == "parquet" else _csv_line_locator(path, sep)


def _raise_first_bad(con, columns: _Columns, source: str, where) -> None:
    """The pandas path's message for the first failing check, in its order: ids, timestamps, amounts, quantities."""
    checks = []  # (name, condition)
    missing_id = "raw_0 IS NULL"
    if columns.id_is_float():
        checks.append(("fractional", "isfinite(raw_0) AND raw_0 <> floor(raw_0)"))
        missing_id = "raw_0 IS NULL OR isnan(raw_0)"
    checks += [("missing_id", missing_id), ("empty_id", f"{_Columns.trimmed('rid')} = ''"), ("date", "day IS NULL"),
               ("amount", "NOT isfinite(amount)")]
    if columns.quantity_col:
        checks.append(("quantity", "NOT isfinite(quantity)"))
    select = ", ".join(
        f"count(*) FILTER (WHERE {cond}), min(rn) FILTER (WHERE {cond}), "
        f"CAST(arg_min({'raw_1' if name == 'date' else 'raw_3' if name == 'quantity' else 'raw_2' if name == 'amount' else 'raw_0'}, rn) "
        f"FILTER (WHERE {cond}) AS VARCHAR)"
        for name, cond in checks
    )
    found = con.execute(f"SELECT {select} FROM tx_rows").fetchall()[0]
    for k, (name, _) in enumerate(checks):
        count, rn, value = found[3 * k: 3 * k + 3]
        if not count:
            continue
        at = where(int(rn) - 1)
        if name == "fractional":
            raise CrmvalueError(f"{source}: column '{columns.customer_col}' has a non-integer id at {at}: "
                                f"{_shown(float(value))}")
        if name == "missing_id":
            raise CrmvalueError(f"{source}: column '{columns.customer_col}' has {count} missing ids; first at {at}")
        if name == "empty_id":
            raise CrmvalueError(f"{source}: column '{columns.customer_col}' has {count} empty ids; first at {at}")
        what = "is missing" if value is None else f"is {str(value)!r}"
        if name == "date":
            hint = f" (expected format {columns.date_format})" if columns.date_format else " (set --date-format)"
            raise CrmvalueError(f"{source}: column '{columns.date_col}' has {count} unparseable timestamps; "
                                f"first at {at}, which {what}{hint}")
        column = columns.amount_col if name == "amount" else columns.quantity_col
        raise CrmvalueError(f"{source}: column '{column}' has {count} missing or non-numeric values; "
                            f"first at {at}, which {what}")
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
            out[name][at: at + size] = batch.column(name).to_numpy(zero_copy_only=False)
        at += size
    if at != n:
        raise CrmvalueError(f"DuckDB returned {at} customer-days instead of {n}; please report this")
    return out


def _renet_long_days(con, days: dict[str, np.ndarray], with_quantity: bool) -> None:
    """Re-net the days of three or more rows from their rows in file order, as the pandas path sums them.

    Two numbers sum the same in any order; three need not, and DuckDB's parallel sum has no order.
    """
    long = np.flatnonzero(days["rows"] >= 3)
    if long.size == 0:
        return
    # by untrimmed id: the rows are probed against the few long days before any join to the codes
    con.execute("CREATE TEMP TABLE long_days AS SELECT rid, raw_days.day FROM raw_days JOIN ids USING (rid) "
                "JOIN (SELECT code, day FROM days WHERE rows >= 3) USING (code, day)")
    table = con.sql(
        f"SELECT code, day, amount{', quantity' if with_quantity else ''} FROM tx_rows "
        "JOIN long_days USING (rid, day) JOIN ids USING (rid) ORDER BY code, day, rn"
    ).to_arrow_table()
    code = table.column("code").to_numpy().astype(np.int64)
    day = table.column("day").to_numpy().astype(np.int64)
    first_day = int(days["day"].min())
    span = np.int64(int(days["day"].max()) - first_day + 1)
    key = code * span + (day - first_day)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    target = long[np.searchsorted(
        days["customer"][long].astype(np.int64) * span + (days["day"][long].astype(np.int64) - first_day), key[starts]
    )]
    days["amount"][target] = np.add.reduceat(table.column("amount").to_numpy(), starts)
    if with_quantity:
        days["quantity"][target] = np.add.reduceat(table.column("quantity").to_numpy(), starts)
