"""Bad input gets a one-line error, a non-zero exit, no traceback and no output files.

Two levels:

- the ``crmvalue`` console script, once per kind of bad input (each process costs a second
  or more of imports, so the finer message details are checked one level down);
- :func:`crmvalue.data.load_transactions` (and the date checks of the pipeline), which must
  raise :class:`CrmvalueError` with a one-line message naming the file, the column and the
  first bad row.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crmvalue.config import load_config
from crmvalue.data import load_transactions
from crmvalue.errors import CrmvalueError
from crmvalue.inputs import resolve_dates

CLI = Path(sys.executable).parent / "crmvalue"
CAL_END, OBS_END = "2021-06-30", "2021-12-31"

# A valid log: 6 customers, most with repeat purchases, over 2021. Each bad case changes one thing.
GOOD_ROWS = [
    ("A01", "2021-01-04", "25.00"),
    ("A01", "2021-03-15", "40.50"),
    ("A01", "2021-08-02", "12.99"),
    ("B02", "2021-02-11", "9.90"),
    ("B02", "2021-02-28", "19.90"),
    ("B02", "2021-11-30", "29.90"),
    ("C03", "2021-04-01", "100.00"),
    ("C03", "2021-09-09", "80.00"),
    ("D04", "2021-01-20", "5.00"),
    ("D04", "2021-05-05", "7.50"),
    ("D04", "2021-06-30", "7.50"),
    ("D04", "2021-12-24", "60.00"),
    ("E05", "2021-03-03", "33.33"),
    ("F06", "2021-07-07", "15.00"),
    ("F06", "2021-10-10", "15.00"),
]
HEADER = "customer_id,date,amount"


def csv_text(rows=GOOD_ROWS, header: str = HEADER, sep: str = ",") -> str:
    return "\n".join([header.replace(",", sep), *(sep.join(r) for r in rows)]) + "\n"


def replace_rows(changes: dict[int, tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """GOOD_ROWS with data row i (0-based; line i + 2 of the file) replaced."""
    rows = list(GOOD_ROWS)
    for i, row in changes.items():
        rows[i] = row
    return rows


def error_of(source, **kwargs) -> str:
    """The message of the CrmvalueError that loading ``source`` raises; it must be one line."""
    with pytest.raises(CrmvalueError) as info:
        load_transactions(source, **kwargs)
    message = str(info.value)
    assert message.strip() and "\n" not in message, f"not one line: {message!r}"
    return message


def test_the_good_rows_load(tmp_path):
    # the baseline every bad case departs from: without this, a "bad" case could fail for another reason
    path = tmp_path / "tx.csv"
    path.write_text(csv_text())
    frame = load_transactions(path).frame
    assert len(frame) == len(GOOD_ROWS)
    assert frame["customer_id"].nunique() == 6
    assert (frame["date"] <= pd.Timestamp(CAL_END)).any()
    resolve_dates(load_config(None, {"calibration_end": CAL_END, "observation_end": OBS_END}), frame)


# --------------------------------------------------------------------------------------------
# through the console script
# --------------------------------------------------------------------------------------------


@dataclass
class CliCase:
    """One kind of bad input: ``setup(tmp)`` writes the inputs and returns the CLI arguments."""

    setup: Callable[[Path], list[str]]
    expect: list[str] = field(default_factory=list)  # substrings of the error line
    file: str | None = None  # the data file the error must name
    quiet: bool = False


def _data(name: str, content: bytes | str | None, cal_end: str = CAL_END, obs_end: str = OBS_END):
    def setup(tmp: Path) -> list[str]:
        if isinstance(content, str):
            (tmp / name).write_text(content)
        elif content is not None:
            (tmp / name).write_bytes(content)
        return ["--data", name, "--calibration-end", cal_end, "--observation-end", obs_end]

    return setup


def _customers(table: str):
    """Good transactions, and a customer attributes table for the churn model."""

    def setup(tmp: Path) -> list[str]:
        (tmp / "customers.csv").write_text(table)
        return _data("tx.csv", csv_text())(tmp) + ["--customers", "customers.csv"]

    return setup


def _misnamed_column_via_config(tmp: Path) -> list[str]:
    (tmp / "tx.csv").write_text(csv_text(header="customer,date,amount"))
    (tmp / "experiment.yaml").write_text(
        f"name: bad_input\ndata:\n  source: tx.csv\ncalibration_end: {CAL_END}\nobservation_end: {OBS_END}\n"
    )
    return ["--config", "experiment.yaml"]


def _garbage() -> bytes:
    # a PNG signature (never valid UTF-8) followed by seeded random bytes
    return b"\x89PNG\r\n\x1a\n" + np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()


def _corrupt_parquet() -> bytes:
    # Parquet's magic bytes at both ends, nothing valid in between
    return b"PAR1" + b"\x00\x01garbage" * 50 + b"PAR1"


CLI_CASES = {
    "missing-file": CliCase(_data("nope.csv", None), ["no such file"], file="nope.csv"),
    "xlsx-suffix": CliCase(
        _data("tx.xlsx", b"PK\x03\x04" + b"\x00" * 64), ["unsupported format", "'.xlsx'"], file="tx.xlsx"
    ),
    "binary-garbage-named-csv": CliCase(_data("tx.csv", _garbage()), ["cannot be read as CSV"], file="tx.csv"),
    "corrupt-parquet": CliCase(
        _data("tx.parquet", _corrupt_parquet()), ["cannot be read as Parquet"], file="tx.parquet"
    ),
    "misnamed-column": CliCase(
        _misnamed_column_via_config,
        ["missing column 'customer_id'", "the columns are 'customer', 'date', 'amount'"],
        file="tx.csv",
        quiet=True,
    ),
    "unparseable-timestamps": CliCase(
        _data("tx.csv", csv_text(replace_rows({4: ("B02", "31/02/2021", "19.90"), 9: ("D04", "soon", "7.50")}))),
        ["column 'date'", "2 unparseable timestamps", "first at line 6", "'31/02/2021'"],
        file="tx.csv",
    ),
    "bad-amounts": CliCase(
        _data("tx.csv", csv_text(replace_rows({3: ("B02", "2021-02-11", "n/a"), 7: ("C03", "2021-09-09", "")}))),
        ["column 'amount'", "2 missing or non-numeric values", "first at line 5", "'n/a'"],
        file="tx.csv",
    ),
    "empty-file": CliCase(_data("tx.csv", b""), ["empty"], file="tx.csv"),
    "header-only": CliCase(_data("tx.csv", HEADER + "\n"), ["no data rows"], file="tx.csv"),
    "nothing-before-calibration-end": CliCase(
        _data("tx.csv", csv_text(), cal_end="2020-06-30"),
        ["no transactions on or before the calibration end 2020-06-30", "starts on 2021-01-04"],
        quiet=True,
    ),
    "customer-table-with-a-repeated-id": CliCase(
        _customers("customer_id,segment\nA01,gold\nB02,silver\nA01,gold\n"),
        ["customers.csv", "column 'customer_id' repeats the id 'A01' at line 4"],
        file="customers.csv",
    ),
    "too-short-for-the-churn-model": CliCase(  # --churn: the strict mode (auto would skip the churn stage)
        lambda tmp: _data("tx.csv", csv_text())(tmp) + ["--churn"],
        ["churn: the model needs 240 days of data up to 2021-06-30", "the data have 177", "--no-churn"],
        quiet=True,
    ),
    "calibration-end-not-before-observation-end": CliCase(
        _data("tx.csv", csv_text(), cal_end=OBS_END, obs_end=OBS_END),
        [f"calibration_end {OBS_END} must be before observation_end {OBS_END}"],
    ),
}


def run_cli(tmp: Path, args: list[str], quiet: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [
        str(CLI),
        "train",
        *args,
        "--tracking-uri",
        f"sqlite:///{tmp}/mlflow.db",
        "--out",
        str(tmp / "out" / "predictions.csv"),
        *(["--quiet"] if quiet else []),
    ]
    return subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", list(CLI_CASES.values()), ids=list(CLI_CASES))
def test_cli_bad_input_fails_cleanly(tmp_path, case: CliCase):
    args = case.setup(tmp_path)
    inputs = sorted(os.listdir(tmp_path))

    proc = run_cli(tmp_path, args, case.quiet)

    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # one line, with or without --quiet: the load stage reports only once it has succeeded
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    errors = lines
    for text in case.expect:
        assert text in errors[0]
    if case.file:
        assert case.file in errors[0]

    # validation happens before MLflow or the output path is touched
    assert not (tmp_path / "out" / "predictions.csv").exists()
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "mlruns").exists()
    assert sorted(os.listdir(tmp_path)) == inputs, "nothing else was written either (models/, exports/)"


def test_cli_bad_flag_value_fails_cleanly(tmp_path):
    (tmp_path / "tx.csv").write_text(csv_text())
    proc = run_cli(tmp_path, ["--data", "tx.csv", "--time-unit", "months"], quiet=True)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2
    assert "months" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["tx.csv"]


# --------------------------------------------------------------------------------------------
# load_transactions: files that cannot be read
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    assert error_of(path) == f"{path}: no such file"
    assert error_of(str(path)) == f"{path}: no such file"


def test_directory_is_not_a_file(tmp_path):
    message = error_of(tmp_path)
    assert message.startswith(f"{tmp_path}: ") and "directory" in message


@pytest.mark.parametrize("name", ["tx.xlsx", "tx.json", "transactions"])
def test_unsupported_format(tmp_path, name):
    path = tmp_path / name
    path.write_text(csv_text())  # readable content: it is the name that is refused
    message = error_of(path)
    assert message.startswith(f"{path}: unsupported format")
    assert repr(Path(name).suffix or name) in message
    assert ".csv or .parquet" in message


def test_binary_garbage_named_csv(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_bytes(_garbage())
    assert error_of(path).startswith(f"{path}: cannot be read as CSV (")


@pytest.mark.parametrize("content", [_corrupt_parquet(), b"", csv_text().encode()], ids=["garbage", "empty", "csv"])
def test_corrupt_parquet(tmp_path, content):
    path = tmp_path / "tx.parquet"
    path.write_bytes(content)
    assert error_of(path).startswith(f"{path}: cannot be read as Parquet (")


def test_truncated_parquet(tmp_path):
    good = tmp_path / "good.parquet"
    pd.DataFrame({"customer_id": ["a"] * 50, "date": ["2021-01-01"] * 50, "amount": np.arange(50.0)}).to_parquet(good)
    path = tmp_path / "tx.parquet"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert error_of(path).startswith(f"{path}: cannot be read as Parquet (")


COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zip"])
def test_csv_that_is_not_compressed_as_named(tmp_path, suffix):
    path = tmp_path / f"tx.csv{suffix}"
    path.write_text(csv_text())
    assert error_of(path).startswith(f"{path}: cannot be read as CSV (")


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_truncated_compressed_csv(tmp_path, suffix):
    # a truncated download: the decompressor raises EOFError, neither an OSError nor a ValueError
    data = COMPRESSORS[suffix](csv_text(GOOD_ROWS * 400).encode())
    whole = tmp_path / f"whole.csv{suffix}"
    whole.write_bytes(data)
    assert len(load_transactions(whole).frame) == len(GOOD_ROWS) * 400
    path = tmp_path / f"tx.csv{suffix}"
    path.write_bytes(data[: len(data) // 2])
    assert error_of(path).startswith(f"{path}: cannot be read as CSV (")


def test_empty_file(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_bytes(b"")
    assert error_of(path) == f"{path}: the file is empty"


@pytest.mark.parametrize(
    "content", [HEADER, HEADER + "\n", HEADER + "\n\n\n"], ids=["no-newline", "newline", "blank-lines"]
)
def test_header_only_file(tmp_path, content):
    path = tmp_path / "tx.csv"
    path.write_text(content)
    assert error_of(path) == f"{path}: the file has no data rows"


def test_header_only_parquet(tmp_path):
    path = tmp_path / "tx.parquet"
    pd.DataFrame({"customer_id": pd.Series([], dtype=str), "date": pd.Series([], dtype=str), "amount": []}).to_parquet(
        path
    )
    assert error_of(path) == f"{path}: the file has no data rows"


def test_empty_dataframe():
    assert "no transactions (0 rows)" in error_of(pd.DataFrame({"customer_id": [], "date": [], "amount": []}))


# --------------------------------------------------------------------------------------------
# load_transactions: columns
# --------------------------------------------------------------------------------------------


def test_missing_column_lists_the_columns_that_exist(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(csv_text(header="Customer ID,date,amount"))
    message = error_of(path)
    assert message.startswith(f"{path}: missing column 'customer_id'; ")
    assert "the columns are 'Customer ID', 'date', 'amount'" in message
    assert "--customer-col" in message


def test_every_missing_column_is_named(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(csv_text(header="client,when,amount"))
    message = error_of(path)
    assert "missing column 'customer_id', 'date';" in message
    assert "'client', 'when', 'amount'" in message


def test_misnamed_column_option(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(csv_text())
    message = error_of(path, amount_col="revenue")
    assert "missing column 'revenue'" in message and "'customer_id', 'date', 'amount'" in message
    # and the right name loads
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(csv_text(header="customer_id,date,revenue"))
    assert load_transactions(renamed, amount_col="revenue").frame["amount"].sum() == pytest.approx(
        sum(float(r[2]) for r in GOOD_ROWS)
    )


def test_missing_quantity_column(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(csv_text())
    assert "missing column 'qty'" in error_of(path, quantity_col="qty")


def test_missing_column_in_parquet_and_dataframe(tmp_path):
    frame = pd.DataFrame({"cust": ["a"], "date": ["2021-01-01"], "amount": [1.0]})
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    assert "missing column 'customer_id'; the columns are 'cust', 'date', 'amount'" in error_of(path)
    assert error_of(frame).startswith(
        "DataFrame: missing column 'customer_id'; the columns are 'cust', 'date', 'amount'"
    )


def test_duplicated_column_in_dataframe():
    frame = pd.DataFrame([["a", "2021-01-01", 1.0, 2.0]], columns=["customer_id", "date", "amount", "amount"])
    assert error_of(frame) == "DataFrame: column 'amount' appears 2 times; rename or drop the duplicates"


# --------------------------------------------------------------------------------------------
# load_transactions: values, with the count and the first bad row
# --------------------------------------------------------------------------------------------


def test_unparseable_timestamps_count_and_first_line(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(
        csv_text(
            replace_rows(
                {6: ("C03", "2021-04-31", "100.00"), 8: ("D04", "yesterday", "5.00"), 13: ("F06", "", "15.00")}
            )
        )
    )
    message = error_of(path)
    assert message == (
        f"{path}: column 'date' has 3 unparseable timestamps; first at line 8, which is '2021-04-31' (set --date-format)"
    )


def test_missing_timestamp_says_missing(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(csv_text(replace_rows({1: ("A01", "", "40.50")})))
    assert error_of(path).endswith(
        "has 1 unparseable timestamps; first at line 3, which is missing (set --date-format)"
    )


def test_timestamps_against_a_format(tmp_path):
    path = tmp_path / "tx.csv"
    rows = [(c, pd.Timestamp(d).strftime("%d/%m/%Y"), a) for c, d, a in GOOD_ROWS]
    rows[10] = ("D04", "2021-06-30", "7.50")  # ISO, but not the format given
    path.write_text(csv_text(rows))
    message = error_of(path, date_format="%d/%m/%Y")
    assert "column 'date' has 1 unparseable timestamps; first at line 12, which is '2021-06-30'" in message
    assert message.endswith("(expected format %d/%m/%Y)")


def test_a_renamed_column_is_named_in_value_errors(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(csv_text(replace_rows({0: ("A01", "never", "25.00")}), header="customer_id,ordered_at,amount"))
    assert "column 'ordered_at' has 1 unparseable timestamps; first at line 2" in error_of(path, date_col="ordered_at")


def test_non_numeric_and_missing_amounts_count_and_first_line(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(
        csv_text(
            replace_rows(
                {5: ("B02", "2021-11-30", "29,90"), 9: ("D04", "2021-05-05", ""), 12: ("E05", "2021-03-03", "$33")}
            )
        )
    )
    # "29,90" splits into an extra field, so quote it the way a spreadsheet would
    path.write_text(path.read_text().replace("29,90", '"29,90"'))
    assert error_of(path) == (
        f"{path}: column 'amount' has 3 missing or non-numeric values; first at line 7, which is '29,90' "
        "(set --decimal ',' if ',' is the decimal mark)"
    )


@pytest.mark.parametrize(
    "value, shown", [("", "is missing"), ("nan", "is 'nan'"), ("inf", "is 'inf'"), ("-Infinity", "is '-Infinity'")]
)
def test_amounts_that_are_not_finite_numbers(tmp_path, value, shown):
    path = tmp_path / "tx.csv"
    path.write_text(csv_text(replace_rows({2: ("A01", "2021-08-02", value)})))
    assert error_of(path).endswith(
        f"column 'amount' has 1 missing or non-numeric values; first at line 4, which {shown}"
    )


def test_missing_customer_ids(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(csv_text(replace_rows({3: ("", "2021-02-11", "9.90"), 4: ("  ", "2021-02-28", "19.90")})))
    assert error_of(path) == (
        f"{path}: column 'customer_id' has 2 missing ids; first at line 5 (--drop-missing-ids drops rows without a customer id)"
    )


def test_line_numbers_count_blank_lines_and_quoted_line_breaks(tmp_path):
    # pandas skips blank lines and a quoted field may span lines: data row i is then not line i + 2
    path = tmp_path / "tx.csv"
    path.write_text(
        "\n".join(
            [
                "customer_id,date,amount,note",  # line 1
                "",  # 2
                'A01,2021-01-04,25.00,"first line',  # 3
                'second line"',  # 4
                "",  # 5
                "A01,2021-03-15,40.50,",  # 6
                "   ",  # 7
                "A01,2021-08-02,lots,",  # 8: the bad amount
                "",
            ]
        )
    )
    assert (
        error_of(path)
        == f"{path}: column 'amount' has 1 missing or non-numeric values; first at line 8, which is 'lots'"
    )


def test_line_numbers_in_a_compressed_tsv(tmp_path):
    path = tmp_path / "tx.tsv.gz"
    path.write_bytes(gzip.compress(("\n" + csv_text(replace_rows({3: ("B02", "2021-02-11", "x")}), sep="\t")).encode()))
    # one leading blank line, then the header: data row 3 is on line 6
    assert (
        error_of(path) == f"{path}: column 'amount' has 1 missing or non-numeric values; first at line 6, which is 'x'"
    )


def test_line_numbers_in_a_zipped_csv(tmp_path):
    path = tmp_path / "tx.csv.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("tx.csv", csv_text(replace_rows({14: ("F06", "2021-13-10", "15.00")})))
    assert "first at line 16, which is '2021-13-10'" in error_of(path)


def test_parquet_rows_are_counted_not_called_lines(tmp_path):
    path = tmp_path / "tx.parquet"
    pd.DataFrame(replace_rows({4: ("B02", "2021-02-28", "?")}), columns=["customer_id", "date", "amount"]).to_parquet(
        path
    )
    message = error_of(path)
    assert (
        "column 'amount' has 1 missing or non-numeric values; first at row 4 (counting from 0), which is '?'" in message
    )
    assert "line" not in message


def test_dataframe_rows_name_the_position_and_the_index():
    frame = pd.DataFrame(
        GOOD_ROWS, columns=["customer_id", "date", "amount"], index=[f"r{i}" for i in range(len(GOOD_ROWS))]
    )
    frame.loc["r5", "date"] = "not a date"
    assert error_of(frame) == (
        "DataFrame: column 'date' has 1 unparseable timestamps; first at row 5 (index 'r5'), "
        "which is 'not a date' (set --date-format)"
    )


# --------------------------------------------------------------------------------------------
# the calibration and observation ends
# --------------------------------------------------------------------------------------------


def _good_frame() -> pd.DataFrame:
    return load_transactions(pd.DataFrame(GOOD_ROWS, columns=["customer_id", "date", "amount"])).frame


def test_no_transactions_on_or_before_the_calibration_end():
    cfg = load_config(None, {"calibration_end": "2021-01-03", "observation_end": OBS_END})
    with pytest.raises(CrmvalueError) as info:
        resolve_dates(cfg, _good_frame(), "tx.csv")
    assert str(info.value) == (
        "tx.csv: no transactions on or before the calibration end 2021-01-03; the data starts on 2021-01-04"
    )
    # the first day counts as "on or before"
    cfg = load_config(None, {"calibration_end": "2021-01-04", "observation_end": OBS_END})
    assert resolve_dates(cfg, _good_frame()) == (pd.Timestamp("2021-01-04"), pd.Timestamp(OBS_END))


@pytest.mark.parametrize("cal_end", [OBS_END, "2022-03-01"])
def test_calibration_end_not_before_observation_end_in_settings(tmp_path, cal_end):
    with pytest.raises(CrmvalueError) as info:
        load_config(None, {"calibration_end": cal_end, "observation_end": OBS_END})
    assert f"calibration_end {cal_end} must be before observation_end {OBS_END}" in str(info.value)
    assert "\n" not in str(info.value)
    path = tmp_path / "experiment.yaml"
    path.write_text(f"calibration_end: {cal_end}\nobservation_end: {OBS_END}\n")
    with pytest.raises(CrmvalueError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


def test_calibration_end_not_before_the_default_observation_end():
    # the observation end defaults to the last transaction day, 2021-12-24
    cfg = load_config(None, {"calibration_end": "2021-12-24"})
    with pytest.raises(CrmvalueError) as info:
        resolve_dates(cfg, _good_frame())
    assert str(info.value) == "calibration end 2021-12-24 must be before observation end 2021-12-24"
    cfg = load_config(None, {"calibration_end": "2021-12-23"})
    assert resolve_dates(cfg, _good_frame())[1] == pd.Timestamp("2021-12-24")
