"""The DuckDB path: scan a CSV or Parquet file, check it as the pandas path does, and net its customer-days."""

from __future__ import annotations

import contextlib
import logging
import lzma
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from crmvalue.customer_days import CustomerDays
from crmvalue.data.dates import (
    day_text,
    late_dates_cutoff,
    late_dates_error,
    late_dates_note,
    resolve_date_format,
)
from crmvalue.data.files import (
    csv_encoding,
    csv_line_locator,
    encoding_error,
    existing_file,
    file_sha256,
    header_line,
    open_text,
    parquet_row,
)
from crmvalue.data.options import ReadOptions, missing_columns_error, other_delimiter
from crmvalue.data.transactions import dropped_ids_note, duplicates_note
from crmvalue.engine.sql import ROW_NUMBER, WHITESPACE, DateProbe, SourceColumns, literal, raise_first_bad
from crmvalue.errors import CrmvalueError, first_line

log = logging.getLogger("crmvalue")

DUCKDB_MEMORY_LIMIT = "4GB"  # DuckDB spills its hash tables to a temporary directory past this
_FETCH_ROWS = 1 << 20


def duckdb_format(path: Path) -> tuple[str, str] | None:
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
    days, notes = duckdb_days(Path(path), options, memory_limit)
    for note in notes:
        log.warning(note)
    return days


def _transcoded(path: Path, encoding: str, directory: str) -> Path:
    """A UTF-8 copy of a text file in another encoding, decoded by Python's codec as pandas decodes it."""
    target = Path(directory) / "utf8.csv"
    try:
        with (
            open_text(path, encoding, errors="strict") as text,
            open(target, "w", encoding="utf-8", newline="") as out,
        ):
            shutil.copyfileobj(text, out, 1 << 20)
    except UnicodeError as exc:
        raise encoding_error(path, encoding, first_line(exc, limit=None)) from None
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        raise CrmvalueError(f"{path}: cannot be read as CSV ({first_line(exc, limit=None)})") from None
    return target


def duckdb_days(
    path: Path, options: ReadOptions, memory_limit: str = DUCKDB_MEMORY_LIMIT
) -> tuple[CustomerDays, list[str]]:
    """The netted days and the warnings to give, checked as :func:`crmvalue.data.read_transactions` checks."""
    import duckdb

    path = existing_file(path)
    found = duckdb_format(path)
    if found is None:
        raise CrmvalueError(f"{path}: unsupported format '{path.suffix or path.name}'; use .csv or .parquet")
    kind, sep = found
    sep = options.sep or sep
    if path.stat().st_size == 0:
        raise CrmvalueError(f"{path}: the file is empty")
    source = str(path)
    encoding = csv_encoding(path, options.encoding) if kind == "csv" else ""  # Parquet is not text
    with _connection(memory_limit) as con, tempfile.TemporaryDirectory(prefix="crmvalue-text-") as scratch:
        if kind == "parquet":
            scan = f"read_parquet({literal(str(path))})"
        else:
            # DuckDB reads UTF-8 (and skips its byte-order mark); anything else is decoded by Python first
            text = path if encoding in ("utf-8", "utf-8-sig") else _transcoded(path, encoding, scratch)
            scan = (
                f"read_csv({literal(str(text))}, header = true, all_varchar = true, delim = {literal(sep)}, "
                "quote = '\"', escape = '\"')"
            )
        what = "Parquet" if kind == "parquet" else "CSV"
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
        except duckdb.Error as exc:
            if kind == "csv":
                header = header_line(path, encoding)
                if header is not None and other_delimiter(header, sep) is not None:
                    raise missing_columns_error(source, [], [], options, header, sep) from None
                if "unicode" in str(exc).lower():
                    raise encoding_error(path, encoding, first_line(exc, limit=None)) from None
            raise CrmvalueError(f"{path}: cannot be read as {what} ({first_line(exc, limit=None)})") from None
        types = {row[0]: str(row[1]).upper() for row in described}
        missing = [c for c in options.columns if c not in types]
        if missing:
            header = header_line(path, encoding) if kind == "csv" else None
            raise missing_columns_error(source, missing, list(types), options, header, sep if kind == "csv" else None)
        columns = SourceColumns(types, options)
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
            f"CREATE TEMP VIEW src_rows AS SELECT * FROM (SELECT ordinality AS {ROW_NUMBER}, * FROM {scan} "
            f"WITH ORDINALITY){keep}"
        )
        where = _row_locator(path, kind, sep, encoding)
        _net_raw_days(con, columns, path, what)
        if columns.infers_dates():
            n_undated = con.execute("SELECT count(*) FROM raw_days WHERE day IS NULL").fetchall()[0][0]
            if n_undated:  # not ISO 8601 throughout: one format for the whole column, as on the pandas path
                probe = DateProbe(con, columns)
                resolution = resolve_date_format(probe.n_values, probe.count, probe.differ, options.dayfirst)
                if resolution.problem in ("ambiguous", "order"):
                    raise_first_bad(con, columns, source, where, ids_only=True)  # ids are checked first
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
            raise_first_bad(con, columns, source, where)
        notes = [dropped_ids_note(source, options.customer_col, int(n_absent))] if keep else []
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
            notes.append(duplicates_note(source, int(duplicates), options.quantity_col is not None))
    return CustomerDays(ids=ids, **days, source=source, sha256=file_sha256(path)), notes


def _net_raw_days(con, columns: SourceColumns, path: Path, what: str) -> None:
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
        raise CrmvalueError(f"{path}: cannot be read as {what} ({first_line(exc, limit=None)})") from None


def _late_dates(con, columns: SourceColumns, source: str, options: ReadOptions, where) -> list[str]:
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
        return [late_dates_note(source, late, count)]
    text = columns.date_is_text()
    rn, day, value = con.execute(
        f"SELECT rn, day, {f'trim(CAST(raw_1 AS VARCHAR), {WHITESPACE})' if text else 'NULL'} FROM tx_rows "
        f"WHERE day > {int(late.last_good)} ORDER BY rn LIMIT 1"
    ).fetchall()[0]
    raise late_dates_error(source, late, count, where(int(rn) - 1), value if text else day_text(day))


def _row_locator(path: Path, kind: str, sep: str, encoding: str | None = None):
    return parquet_row if kind == "parquet" else csv_line_locator(path, sep, encoding or "utf-8-sig")


def _fetch_days(con, n: int, with_quantity: bool) -> dict[str, np.ndarray]:
    """The netted days in (code, day) order, copied batch by batch into preallocated arrays."""
    out: dict[str, np.ndarray] = {
        "customer": np.empty(n, np.int32),
        "day": np.empty(n, np.int32),
        "amount": np.empty(n, np.float64),
        "returned": np.empty(n, bool),
        "rows": np.empty(n, np.int32),
    }
    if with_quantity:  # without it, CustomerDays.quantity keeps its default None
        out["quantity"] = np.empty(n, np.float64)
    wanted = list(out)
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
