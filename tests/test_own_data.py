"""Your own data: the files companies really export, through the ``crmvalue`` console script.

Each test writes a small file: invoice lines (Online-Retail style), a European ``;`` +
decimal-comma + dd.mm.yyyy export, Latin-1 and UTF-16 files, a file with a 2031 typo,
ambiguous day/month dates. Rejections are checked through the console script (one line,
exit code 2, nothing written); the rules themselves one level down, on
:func:`crmvalue.engine.load_customer_days`. That both engines accept, reject and read these
files alike is checked in ``test_engine.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import simulated_transactions

from crmvalue.customer_days import check_modellable, customer_days, observation_gap_warning
from crmvalue.data import (
    DATE_FORMATS,
    ISO_8601,
    LATE_GAP_DAYS,
    late_dates_cutoff,
    load_transactions,
    resolve_date_format,
)
from crmvalue.engine import load_customer_days
from crmvalue.errors import CrmvalueError
from crmvalue.features import revenue_in_window, rfm_summary

CLI = Path(sys.executable).parent / "crmvalue"
LOADED = "loaded and checked the transactions"


# --------------------------------------------------------------------------------------------
# the files, as exports write them
# --------------------------------------------------------------------------------------------


def _euro(amount: float) -> str:
    """1234.5 -> '1.234,50'."""
    return f"{amount:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")


def european_text(log: pd.DataFrame) -> str:
    """A German ERP export: ';', dd.mm.yyyy, decimal comma, '.' between thousands."""
    lines = ["Kundennummer;Belegdatum;Umsatz"]
    lines += [
        f"{c};{d:%d.%m.%Y};{_euro(a)}" for c, d, a in log[["customer_id", "date", "amount"]].itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"


EUROPEAN_FLAGS = [
    "--customer-col",
    "Kundennummer",
    "--date-col",
    "Belegdatum",
    "--amount-col",
    "Umsatz",
    "--sep",
    ";",
    "--decimal",
    ",",
    "--thousands",
    ".",
]
EUROPEAN_OPTIONS = dict(
    customer_col="Kundennummer", date_col="Belegdatum", amount_col="Umsatz", sep=";", decimal=",", thousands="."
)


def european_log(n_customers: int = 150, seed: int = 3) -> pd.DataFrame:
    log = simulated_transactions(n_customers=n_customers, seed=seed)
    log["amount"] = log["amount"].round(2)
    log.loc[log.index[::40], "amount"] += 1000.0  # some amounts with a thousands separator
    return log


INVOICE_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
INVOICE_FLAGS = [
    "--customer-col",
    "CustomerID",
    "--date-col",
    "InvoiceDate",
    "--quantity-col",
    "Quantity",
    "--price-col",
    "UnitPrice",
]
INVOICE_OPTIONS = dict(
    customer_col="CustomerID", date_col="InvoiceDate", quantity_col="Quantity", price_col="UnitPrice"
)


def invoice_lines(log: pd.DataFrame, seed: int = 0) -> list[str]:
    """Online-Retail-style lines: 1-3 lines an order, m/d/yyyy h:mm, float-looking ids ("17850.0")."""
    rng = np.random.default_rng(seed)
    lines = []
    for k, (c, d, _a) in enumerate(log[["customer_id", "date", "amount"]].itertuples(index=False)):
        customer = f"{17000 + int(str(c).lstrip('C') or 0)}.0"
        when = f"{d.month}/{d.day}/{d.year} {d.hour}:{d.minute:02d}"
        for line in range(int(rng.integers(1, 4))):
            quantity = int(rng.integers(1, 7))
            price = round(float(rng.gamma(2.0, 2.0)) + 0.5, 2)
            lines.append(
                f"{536365 + k},{85123 + line}A,ITEM {line},{quantity},{when},{price},{customer},United Kingdom"
            )
    return lines


def invoice_text(log: pd.DataFrame) -> str:
    """Invoice lines plus what such exports hold: 3 guest lines (no CustomerID), a cancellation
    of an earlier purchase on a later day, and a line exported twice."""
    lines = invoice_lines(log)
    lines += [
        "581001,22423,GUEST ITEM,2,12/1/2021 9:00,12.75,,United Kingdom",
        "581002,22423,GUEST ITEM,1,12/2/2021 9:00,12.75,,United Kingdom",
        "581003,22424,GUEST ITEM,4,12/3/2021 9:00,1.25,,France",
        "C581004,85123A,ITEM 0,-1,12/20/2021 10:00,2.55,17001.0,United Kingdom",
    ]
    lines.append(lines[5])  # exported twice
    return "\n".join([INVOICE_HEADER, *lines]) + "\n"


def iso_text(rows) -> str:
    return "customer_id,date,amount\n" + "".join(f"{c},{d},{a}\n" for c, d, a in rows)


def two_year_rows(n: int = 30, start: str = "2021-01-04", span_days: int = 700, seed: int = 1):
    rng = np.random.default_rng(seed)
    days = np.sort(rng.integers(0, span_days, size=n))
    return [
        (
            f"K{i % 9:02d}",
            (pd.Timestamp(start) + pd.Timedelta(days=int(d))).date().isoformat(),
            f"{rng.gamma(2, 20):.2f}",
        )
        for i, d in enumerate(days)
    ]


TYPO_ROWS = two_year_rows() + [
    ("K01", "2031-03-04", "25.00"),
    ("K02", "2031-06-30", "9.90"),
    ("K03", "2032-01-15", "5.00"),
]


# --------------------------------------------------------------------------------------------
# through the console script
# --------------------------------------------------------------------------------------------


def run_train(tmp: Path, args: list[str], quiet: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [
        str(CLI),
        "train",
        *args,
        "--no-churn",
        "--tracking-uri",
        f"sqlite:///{tmp}/mlflow.db",
        "--out",
        str(tmp / "out" / "predictions.csv"),
        *(["--quiet"] if quiet else []),
    ]
    return subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)


def _warnings(proc: subprocess.CompletedProcess) -> list[str]:
    return [line.removeprefix("WARNING: ") for line in proc.stderr.splitlines() if line.startswith("WARNING: ")]


@pytest.mark.slow
def test_cli_european_file_through_the_config_keys(tmp_path):
    """A ';' + decimal-comma + dd.mm.yyyy export, read with the data: keys of a config, DuckDB engine."""
    log = european_log()
    (tmp_path / "umsatz.csv").write_text(european_text(log))
    (tmp_path / "shop.yaml").write_text(
        "name: shop\n"
        "data:\n  source: umsatz.csv\n  engine: duckdb\n  customer_col: Kundennummer\n  date_col: Belegdatum\n"
        "  amount_col: Umsatz\n  sep: ';'\n  decimal: ','\n  thousands: '.'\n  dayfirst: true\n"
    )
    proc = run_train(tmp_path, ["--config", "shop.yaml"])
    assert LOADED in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype={"customer_id": str})
    assert set(predictions["customer_id"]) == set(log["customer_id"])
    # the same customers and numbers as the log the file was written from
    expected = rfm_summary(
        load_transactions(log.assign(date=log["date"].dt.normalize())).frame, log["date"].max().normalize(), "weeks"
    )
    got = predictions.set_index("customer_id").loc[expected.index, ["frequency", "recency", "T"]]
    np.testing.assert_allclose(got.to_numpy(), expected[["frequency", "recency", "T"]].to_numpy(), rtol=1e-6)


@pytest.mark.slow
def test_cli_invoice_lines(tmp_path):
    """Online-Retail style: amount = Quantity x UnitPrice, guest lines dropped and counted, a duplicate counted."""
    log = simulated_transactions(n_customers=150, seed=5)
    (tmp_path / "invoices.csv").write_text(invoice_text(log))
    proc = run_train(tmp_path, ["--data", "invoices.csv", *INVOICE_FLAGS, "--drop-missing-ids", "--engine", "pandas"])
    assert LOADED in proc.stderr, proc.stderr
    warnings = _warnings(proc)
    assert "invoices.csv: dropped 3 rows without a customer id in column 'CustomerID' (--drop-missing-ids)" in warnings
    assert any(
        w.startswith(
            "invoices.csv: 1 row repeats an earlier row exactly (same customer, timestamp, amount and "
            "quantity); they are kept"
        )
        for w in warnings
    ), warnings
    assert proc.returncode == 0, proc.stderr
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype={"customer_id": str})
    # "17001.0" is the customer "17001"
    assert predictions["customer_id"].str.fullmatch(r"17[0-9]{3}").all()
    assert predictions["customer_id"].nunique() == log["customer_id"].nunique()


# (setup -> CLI arguments, substrings of the one error line)
def _write(name: str, content: str | bytes):
    def setup(tmp: Path) -> None:
        if isinstance(content, bytes):
            (tmp / name).write_bytes(content)
        else:
            (tmp / name).write_text(content)

    return setup


# day first: 5 Feb, 4 Jun, 7 Jul, 12 Nov; month first: 2 May, 6 Apr, 7 Jul, 11 Dec
_AMBIGUOUS = iso_text(
    [("a", "05/02/2023", "5"), ("b", "04/06/2023", "6"), ("c", "07/07/2023", "7"), ("a", "12/11/2023", "8")]
)
_MONTH_FIRST = iso_text([("a", "3/2/2023", "5"), ("b", "2/15/2023", "6"), ("c", "12/31/2023", "7")])
_MIXED_ORDER = iso_text(
    [("a", "03/02/2023", "5"), ("b", "15/02/2023", "6"), ("c", "02/15/2023", "7"), ("d", "20/01/2023", "8")]
)
_FUTURE = dt.date.today() + dt.timedelta(days=40)
_FUTURE_ROWS = [
    (c, (dt.date.today() - dt.timedelta(days=700 - 20 * i)).isoformat(), a)
    for i, (c, _, a) in enumerate(two_year_rows(n=30))
] + [("K05", _FUTURE.isoformat(), "12.00")]

CLI_REJECTIONS = {
    "semicolon-header-read-with-commas": (
        _write("umsatz.csv", "Kundennummer;Belegdatum;Umsatz\n1001;03.02.2023;19,90\n1002;04.02.2023;5,00\n"),
        [
            "--data",
            "umsatz.csv",
            "--customer-col",
            "Kundennummer",
            "--date-col",
            "Belegdatum",
            "--amount-col",
            "Umsatz",
        ],
        ["umsatz.csv: the delimiter looks like ';', not ','", "'Kundennummer;Belegdatum;Umsatz'", "set --sep ';'"],
    ),
    "decimal-comma-without-decimal": (
        _write("umsatz.csv", "Kundennummer;Belegdatum;Umsatz\n1001;03.02.2023;19,90\n1002;04.03.2023;5,00\n"),
        [
            "--data",
            "umsatz.csv",
            "--customer-col",
            "Kundennummer",
            "--date-col",
            "Belegdatum",
            "--amount-col",
            "Umsatz",
            "--sep",
            ";",
        ],
        ["column 'Umsatz' has 2 missing or non-numeric values; first at line 2, which is '19,90'", "--decimal ','"],
    ),
    "ambiguous-day-and-month": (
        _write("tx.csv", _AMBIGUOUS),
        ["--data", "tx.csv"],
        [
            "column 'date' is ambiguous",
            "%d/%m/%Y (day first) and %m/%d/%Y (month first)",
            "first at line 2 '05/02/2023', line 3 '04/06/2023', line 5 '12/11/2023'",
            "--dayfirst or --monthfirst",
        ],
    ),
    "dayfirst-on-month-first-dates": (
        _write("tx.csv", _MONTH_FIRST),
        ["--data", "tx.csv", "--dayfirst"],
        [
            "column 'date' is not day first: only %m/%d/%Y (month first) reads every date",
            "line 3 '2/15/2023'",
            "drop --dayfirst",
        ],
    ),
    "no-single-date-format": (
        _write("tx.csv", _MIXED_ORDER),
        ["--data", "tx.csv"],
        [
            "column 'date' fits no single date format: 1 timestamps do not fit %d/%m/%Y",
            "first at line 4",
            "'02/15/2023'",
            "--date-format",
        ],
    ),
    "a-2031-typo": (
        _write("tx.csv", iso_text(TYPO_ROWS)),
        ["--data", "tx.csv"],
        [
            "tx.csv: 3 rows are dated long after the rest of the data: from 2031-03-04 on",
            f"more than {LATE_GAP_DAYS} days",
            "first at line 32, which is '2031-03-04'",
            "--allow-future-dates",
        ],
    ),
    "a-date-after-today": (
        _write("tx.csv", iso_text(_FUTURE_ROWS)),
        ["--data", "tx.csv"],
        [
            f"tx.csv: 1 row is dated after today ({dt.datetime.now(dt.UTC).date()})",
            f"first at line 32, which is '{_FUTURE.isoformat()}'",
            "--allow-future-dates",
        ],
    ),
    "single-day-data": (
        _write(
            "tx.csv",
            iso_text([("a", "2023-03-01 09:00", "5"), ("b", "2023-03-01 17:30", "6"), ("a", "2023-03-01", "1")]),
        ),
        ["--data", "tx.csv"],
        ["tx.csv: single-day data: all 3 transactions are on 2023-03-01"],
    ),
    "all-returns": (
        _write("tx.csv", iso_text([("a", "2023-03-01", "-5"), ("b", "2023-03-02", "-6"), ("a", "2023-04-01", "-1")])),
        ["--data", "tx.csv"],
        ["tx.csv: the data are all returns", "no customer has a purchase"],
    ),
    "latin-1-without-encoding": (
        _write(
            "kunden.csv", "customer_id;date;amount\nMüller;2023-02-03;19.90\nJürgen;2023-03-04;5\n".encode("latin-1")
        ),
        ["--data", "kunden.csv", "--sep", ";"],
        ["kunden.csv: cannot be read as CSV (line 2 has the byte 0xfc): it is not UTF-8 text", "--encoding latin-1"],
    ),
    "guest-rows-without-the-flag": (
        _write(
            "invoices.csv", INVOICE_HEADER + "\n1,A,x,2,12/1/2021 9:00,1.5,17850.0,UK\n2,A,x,1,12/2/2021 9:00,2.5,,UK\n"
        ),
        ["--data", "invoices.csv", *INVOICE_FLAGS],
        ["column 'CustomerID' has 1 missing ids; first at line 3", "--drop-missing-ids"],
    ),
    "price-without-quantity": (
        _write("invoices.csv", INVOICE_HEADER + "\n1,A,x,2,12/1/2021 9:00,1.5,17850.0,UK\n"),
        ["--data", "invoices.csv", "--price-col", "UnitPrice"],
        ["--price-col needs --quantity-col"],
    ),
    "a-separator-of-two-characters": (
        _write("tx.csv", iso_text(TYPO_ROWS)),
        ["--data", "tx.csv", "--sep", ";;"],
        ["--sep must be one character"],
    ),
}


@pytest.mark.parametrize("case", list(CLI_REJECTIONS), ids=list(CLI_REJECTIONS))
def test_cli_rejects_with_one_line(tmp_path, case):
    setup, args, expect = CLI_REJECTIONS[case]
    setup(tmp_path)
    inputs = sorted(os.listdir(tmp_path))
    proc = run_train(tmp_path, args)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for text in expect:
        assert text in lines[0], lines[0]
    assert "--customer-col" not in lines[0]  # never the column flags for a dialect problem
    assert sorted(os.listdir(tmp_path)) == inputs, "nothing was written"


def test_cli_flags_that_let_the_user_go_on(tmp_path):
    """--allow-future-dates keeps the 2031 rows (with a warning), --dayfirst settles the ambiguous dates.

    The calibration end before the data stops each run right after the load stage, which is what is checked here.
    """
    (tmp_path / "typo.csv").write_text(iso_text(TYPO_ROWS))
    proc = run_train(tmp_path, ["--data", "typo.csv", "--allow-future-dates", "--calibration-end", "2000-01-01"])
    dates = sorted(pd.Timestamp(d) for _, d, _ in TYPO_ROWS[:-3])
    gap, span = (pd.Timestamp("2031-03-04") - dates[-1]).days, (dates[-1] - dates[0]).days
    assert _warnings(proc) == [
        f"typo.csv: kept 3 rows dated long after the rest of the data: from 2031-03-04 on, {gap} days after the previous "
        f"date {dates[-1].date()} (more than 365 days and more than the {span} days the data before it span) "
        "(--allow-future-dates)"
    ], proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("error: typo.csv: no transactions on or before the calibration end")
    (tmp_path / "ambiguous.csv").write_text(_AMBIGUOUS)
    for flag, first in [("--dayfirst", "2023-02-05"), ("--monthfirst", "2023-04-06")]:
        proc = run_train(tmp_path, ["--data", "ambiguous.csv", flag, "--calibration-end", "2000-01-01"])
        assert proc.stderr.splitlines()[-1] == (
            f"error: ambiguous.csv: no transactions on or before the calibration end 2000-01-01; the data starts on {first}"
        ), proc.stderr


# --------------------------------------------------------------------------------------------
# the rules, one level down
# --------------------------------------------------------------------------------------------


def _error(path, **kwargs) -> str:
    with pytest.raises(CrmvalueError) as info:
        load_customer_days(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_european_file_reads_the_numbers_and_dates_the_log_holds(tmp_path):
    log = european_log(n_customers=40)
    path = tmp_path / "umsatz.csv"
    path.write_text(european_text(log))
    frame = load_transactions(path, **EUROPEAN_OPTIONS).frame
    assert frame["amount"].tolist() == log["amount"].round(2).tolist()
    assert (frame["amount"] > 1000).any()
    assert (frame["date"] == log["date"].dt.normalize()).all()


@pytest.mark.parametrize(
    "value, options, expected",
    [
        ("1.234,56", dict(decimal=",", thousands="."), 1234.56),
        ("-19,90", dict(decimal=","), -19.9),
        ("1,234.56", dict(thousands=","), 1234.56),
        ("1 234,5", dict(decimal=",", thousands=" "), 1234.5),
        ("12", dict(decimal=","), 12.0),
    ],
)
def test_decimal_and_thousands(tmp_path, value, options, expected):
    path = tmp_path / "tx.csv"
    path.write_text(f'customer_id;date;amount\na;2023-01-02;"{value}"\na;2023-02-03;1\n')
    assert load_transactions(path, sep=";", **options).frame["amount"].iloc[0] == expected


def test_a_point_under_a_decimal_comma_is_refused_not_read_as_a_fraction(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text("customer_id;date;amount\na;2023-01-02;1.234\na;2023-02-03;1\n")
    assert _error(path, sep=";", decimal=",").endswith(
        "first at line 2, which is '1.234' (with --decimal ',' a '.' is not a number; set --thousands '.' if it "
        "separates thousands)"
    )
    assert load_transactions(path, sep=";", decimal=",", thousands=".").frame["amount"].iloc[0] == 1234.0


def test_encodings_by_flag_and_by_byte_order_mark(tmp_path):
    text = "customer_id;date;amount\nMüller;2023-02-03;19.90\nJürgen;2023-03-04;5\nMüller;2023-04-05;7\n"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(text.encode("latin-1"))
    for name, content in [("utf16.csv", text.encode("utf-16")), ("utf8bom.csv", codecs_bom() + text.encode("utf-8"))]:
        (tmp_path / name).write_bytes(content)
        assert load_transactions(tmp_path / name, sep=";").frame["customer_id"].tolist() == [
            "Müller",
            "Jürgen",
            "Müller",
        ]
    assert load_transactions(latin, sep=";", encoding="latin-1").frame["customer_id"].tolist() == [
        "Müller",
        "Jürgen",
        "Müller",
    ]
    tab = tmp_path / "tab.csv"
    tab.write_text(text.replace(";", "\t"))
    assert len(load_transactions(tab, sep="\\t").frame) == 3  # '\t' as a shell passes it
    assert "unknown encoding 'klingon'" in _error(latin, encoding="klingon")


def codecs_bom() -> bytes:
    import codecs

    return codecs.BOM_UTF8


def test_float_looking_ids_are_one_rule_for_csv_parquet_and_dataframes(tmp_path):
    ids = ["17850.0", "17850", "00012.0", "00012", "12.5", "A.0", "017850.00"]
    rows = {"customer_id": ids, "date": [f"2023-01-{i + 1:02d}" for i in range(len(ids))], "amount": [1.0] * len(ids)}
    expected = ["17850", "17850", "00012", "00012", "12.5", "A.0", "017850"]
    csv_path, parquet_path = tmp_path / "tx.csv", tmp_path / "tx.parquet"
    pd.DataFrame(rows).to_csv(csv_path, index=False)
    pd.DataFrame(rows).to_parquet(parquet_path)
    for source in (csv_path, parquet_path, pd.DataFrame(rows)):
        assert load_transactions(source).frame["customer_id"].tolist() == expected
    # a float column is the same rule: 17850.0 is "17850"
    floats = pd.DataFrame({"customer_id": [17850.0, 12.0], "date": ["2023-01-01", "2023-01-02"], "amount": [1.0, 2.0]})
    floats.to_parquet(parquet_path)
    assert load_transactions(parquet_path).frame["customer_id"].tolist() == ["17850", "12"]
    assert load_transactions(floats).frame["customer_id"].tolist() == ["17850", "12"]


def test_drop_missing_ids_counts_what_it_drops(tmp_path, caplog):
    path = tmp_path / "tx.csv"
    path.write_text('customer_id,date,amount\na,2023-01-02,5\n,2023-01-03,6\n"  ",2023-01-04,7\nb,2023-02-03,8\n')
    assert "--drop-missing-ids" in _error(path)
    with caplog.at_level(logging.WARNING, logger="crmvalue"):
        days = load_customer_days(path, drop_missing_ids=True)
    assert days.transactions == 2 and list(days.ids) == ["a", "b"]
    assert (
        f"{path}: dropped 2 rows without a customer id in column 'customer_id' (--drop-missing-ids)" in caplog.messages
    )
    path.write_text(iso_text([("", "2023-01-03", "6")]))
    assert _error(path, drop_missing_ids=True) == f"{path}: no row has a customer id in column 'customer_id'"


def test_invoice_amount_is_quantity_times_price_and_a_later_cancellation_is_its_own_day(tmp_path):
    path = tmp_path / "invoices.csv"
    path.write_text(
        "\n".join(
            [
                INVOICE_HEADER,
                "536365,85123A,HEART,6,12/1/2021 8:26,2.55,17850.0,UK",  # 15.30
                "536365,71053,LANTERN,6,12/1/2021 8:26,3.39,17850.0,UK",  # 20.34
                "536366,22633,WARMER,2,12/5/2021 8:28,1.85,17850.0,UK",  # 3.70
                "C536379,85123A,HEART,-6,12/9/2021 9:41,2.55,17850.0,UK",  # cancels the 15.30 of Dec 1, eight days later
                "536367,84879,BIRD,32,12/2/2021 8:34,1.69,13047.0,UK",
                "536368,22960,JAR,6,12/20/2021 8:34,4.25,13047.0,UK",
            ]
        )
        + "\n"
    )
    tx = load_transactions(path, **INVOICE_OPTIONS).frame
    assert tx["amount"].tolist() == [6 * 2.55, 6 * 3.39, 2 * 1.85, -6 * 2.55, 32 * 1.69, 6 * 4.25]
    days = customer_days(tx)
    # the cancellation does not reach back: Dec 1 stays a purchase of 35.64, Dec 9 is a day of its own,
    # a return and no purchase, whose -15.30 counts against revenue
    assert days.purchase.tolist() == [True, True, True, True, False]
    summary = rfm_summary(tx, "2021-12-31", "days")
    assert summary.loc["17850"].tolist() == [1.0, 4.0, 30.0, 2 * 1.85]
    assert revenue_in_window(tx, "2021-12-31", 60)["17850"] == pytest.approx(6 * 3.39 + 2 * 1.85, abs=1e-12)


def test_exact_duplicates_are_counted_and_kept(tmp_path, caplog):
    path = tmp_path / "tx.csv"
    rows = [
        ("a", "2023-01-02 10:00", "5"),
        ("a", "2023-01-02 10:00", "5"),
        ("a", "2023-01-02 10:00", "5.0"),
        ("a", "2023-01-02 11:00", "5"),
        ("b", "2023-02-03", "8"),
        ("b", "2023-02-03", "8"),
    ]
    path.write_text(iso_text(rows))
    with caplog.at_level(logging.WARNING, logger="crmvalue"):
        days = load_customer_days(path)
    assert days.amount.tolist() == [20.0, 16.0]  # kept: the day sums them
    assert caplog.messages == [
        f"{path}: 3 rows repeat an earlier row exactly (same customer, timestamp and amount); they are kept and summed "
        "into their customer-day like any other rows: drop them first if they are a double export"
    ]


def test_single_day_and_all_returns_say_so():
    single = customer_days(
        pd.DataFrame(
            {
                "customer_id": ["a", "b"],
                "date": pd.to_datetime(["2023-01-01 09:00", "2023-01-01 18:00"]),
                "amount": [1.0, 2.0],
            }
        )
    )
    with pytest.raises(CrmvalueError, match="single-day data: all 2 transactions are on 2023-01-01"):
        check_modellable(single)
    # a day that nets to <= 0 with a return is no purchase: a file of cancelled orders is all returns
    cancelled = customer_days(
        pd.DataFrame(
            {
                "customer_id": ["a", "a", "b"],
                "date": pd.to_datetime(["2023-01-01", "2023-01-01", "2023-01-05"]),
                "amount": [10.0, -10.0, -3.0],
            }
        )
    )
    with pytest.raises(CrmvalueError, match="the data are all returns"):
        check_modellable(cancelled)
    check_modellable(
        customer_days(
            pd.DataFrame(
                {
                    "customer_id": ["a", "a"],
                    "date": pd.to_datetime(["2023-01-01", "2023-01-05"]),
                    "amount": [10.0, -3.0],
                }
            )
        )
    )


# --------------------------------------------------------------------------------------------
# dates: one format for the column, and dates that cannot be right
# --------------------------------------------------------------------------------------------


def _resolve(values: list[str], dayfirst=None):
    from crmvalue.data.parse import date_counts as _date_counts
    from crmvalue.data.parse import parse_dates as _parse_dates

    values = pd.Series(values, dtype="string")
    return resolve_date_format(
        len(values),
        _date_counts(values),
        lambda a, b: bool((_parse_dates(values, a) != _parse_dates(values, b)).any()),
        dayfirst,
    )


@pytest.mark.parametrize(
    "values, dayfirst, expected",
    [
        (["2023-02-03", "2023-02-03T10:00:00+02:00", "2023-12-31 23:59"], None, (ISO_8601, None)),
        (["03.02.2023", "15.02.2023"], None, ("%d.%m.%Y", None)),
        (["03/02/2023", "15/02/2023"], None, ("%d/%m/%Y", None)),
        (["12/1/2010 8:26", "12/13/2010 17:05"], None, ("%m/%d/%Y %H:%M", None)),
        (["20230203", "20231231"], None, ("%Y%m%d", None)),
        (["2023-2-3", "2023-12-31"], None, ("%Y-%m-%d", None)),
        (["01/01/2023", "02/02/2023"], None, ("%d/%m/%Y", None)),  # both orders read the same dates: no ambiguity
        (["03/02/2023", "04/05/2023"], None, ("%d/%m/%Y", "ambiguous")),
        (["03/02/2023", "04/05/2023"], True, ("%d/%m/%Y", None)),
        (["03/02/2023", "04/05/2023"], False, ("%m/%d/%Y", None)),
        (["03/02/2023", "02/15/2023"], True, ("%m/%d/%Y", "order")),
        (["03/02/2023", "15/02/2023", "02/15/2023"], None, ("%d/%m/%Y", "nofit")),
        (["2023-02-03", "03.02.2023"], None, (ISO_8601, "nofit")),
        (["2023-02-03", "2023-02-03 10:00"], None, (ISO_8601, None)),
        (
            ["3/2/2023", "3/2/2023 10:00"],
            None,
            ("%d/%m/%Y", "nofit"),
        ),  # one format for the column: not with and without time
    ],
)
def test_one_date_format_for_the_whole_column(values, dayfirst, expected):
    resolution = _resolve(values, dayfirst)
    assert (resolution.format, resolution.problem) == expected


def test_the_candidate_formats_are_the_documented_ones():
    assert DATE_FORMATS[:3] == ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")
    assert {
        "%d/%m/%Y",
        "%m/%d/%Y",
        "%d.%m.%Y",
        "%d-%m-%Y",
        "%m-%d-%Y",
        "%Y/%m/%d",
        "%Y%m%d",
        "%d.%m.%Y %H:%M:%S",
        "%m/%d/%Y %H:%M",
    } <= set(DATE_FORMATS)


def _days(*dates) -> np.ndarray:
    return np.array([np.datetime64(d, "D").astype(np.int64) for d in dates])


TODAY = int(np.datetime64("2025-06-01", "D").astype(np.int64))


def test_late_dates_rule():
    data = list(pd.date_range("2021-01-01", "2023-12-31", freq="7D").strftime("%Y-%m-%d"))
    # three rows in 2031-2032 after 2021-2023: a gap of 7 years, longer than the 3 years before it
    late = late_dates_cutoff(_days(*data, "2031-03-04", "2032-01-15"), np.r_[np.ones(len(data)), 2, 1], TODAY)
    assert late.reason == "gap" and late.last_good == _days(data[-1])[0]
    # a shop that paused 14 months after 2 years: not longer than the data before the gap
    assert late_dates_cutoff(_days("2019-01-01", "2020-12-31", "2022-03-01", "2022-06-01"), np.ones(4), TODAY) is None
    # a long gap before most of the data: the many rows after it are the data, not a typo
    assert (
        late_dates_cutoff(
            _days("2015-05-05", "2021-01-01", "2022-01-01", "2023-01-01"), np.array([1, 50, 50, 50]), TODAY
        )
        is None
    )
    # after today (plus a day's leeway for time zones)
    assert late_dates_cutoff(_days("2024-06-01", "2025-06-02"), np.ones(2), TODAY) is None
    future = late_dates_cutoff(_days("2024-06-01", "2025-05-30", "2025-06-03"), np.ones(3), TODAY)
    assert future.reason == "future" and future.detail == "after today (2025-06-01)"


def test_observation_end_far_after_the_last_transaction_warns():
    assert observation_gap_warning("2023-12-30", "2024-01-31") is None
    assert observation_gap_warning("2023-12-30", "2025-12-31") == (
        "the observation end 2025-12-31 is 732 days after the last transaction 2023-12-30: the models read those days "
        "as every customer's silence; set --observation-end to the date the export was taken"
    )


@pytest.mark.slow
def test_cli_latin1_file_gives_the_same_scores_with_both_engines(tmp_path):
    """A Latin-1 export with umlauts in the ids, read with --encoding latin-1: pandas and DuckDB score it alike."""
    log = european_log(n_customers=80, seed=4)
    names = {c: f"Kunde-Müß{c}" for c in log["customer_id"].unique()}
    log["customer_id"] = log["customer_id"].map(names)
    (tmp_path / "umsatz.csv").write_bytes(european_text(log).encode("latin-1"))
    flags = [
        "--data",
        "umsatz.csv",
        "--customer-col",
        "Kundennummer",
        "--date-col",
        "Belegdatum",
        "--amount-col",
        "Umsatz",
        "--sep",
        ";",
        "--decimal",
        ",",
        "--thousands",
        ".",
        "--dayfirst",
        "--encoding",
        "latin-1",
    ]
    frames = {}
    for engine in ("pandas", "duckdb"):
        proc = run_train(tmp_path, flags + ["--engine", engine], quiet=True)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        frames[engine] = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype={"customer_id": str}).drop(
            columns="run_id"
        )
    assert set(frames["pandas"]["customer_id"]) == set(names.values())
    pd.testing.assert_frame_equal(frames["pandas"], frames["duckdb"])
