"""The DuckDB engine against the pandas path: the same customer-days, features, errors and predictions."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from conftest import simulated_transactions

from crmvalue import analyses, engine
from crmvalue.config import load_config
from crmvalue.customer_days import customer_days
from crmvalue.data import bundled_path, load_transactions
from crmvalue.engine import choose_engine, load_customer_days
from crmvalue.errors import CrmvalueError
from crmvalue.features import calibration_holdout_summary, revenue_in_window, rfm_summary_with_report
from crmvalue.pipeline import train

ARRAYS = ["customer", "day", "amount", "returned", "rows", "quantity"]


def _same_days(a, b) -> None:
    assert a.ids.equals(b.ids) and a.ids.dtype == b.ids.dtype
    for name in ARRAYS:
        left, right = getattr(a, name), getattr(b, name)
        if left is None or right is None:
            assert left is None and right is None, name
            continue
        assert left.dtype == right.dtype, name
        # exact, to the last bit (-0.0 == 0.0 aside)
        np.testing.assert_array_equal(left, right, err_msg=name, strict=True)


@pytest.fixture(scope="module")
def cdnow_files(tmp_path_factory):
    """The bundled CDNOW master as CSV and Parquet, every field kept as the text of the original file."""
    tmp = tmp_path_factory.mktemp("cdnow")
    raw = pd.read_csv(
        bundled_path("cdnow"), sep=r"\s+", header=0, names=["customer_id", "date", "quantity", "amount"], dtype=str
    )
    raw.to_csv(tmp / "cdnow.csv", index=False)
    raw.to_parquet(tmp / "cdnow.parquet")
    return [tmp / "cdnow.csv", tmp / "cdnow.parquet"]


@pytest.mark.parametrize("which", [0, 1], ids=["csv", "parquet"])
def test_cdnow_master_through_duckdb_equals_the_pandas_path(cdnow_files, which):
    rows = load_transactions("cdnow").frame
    days = load_customer_days(cdnow_files[which], quantity_col="quantity", date_format="%Y%m%d", engine="duckdb")
    _same_days(days, customer_days(rows))
    assert days.transactions == len(rows) == 69_659
    assert (days.rows >= 3).sum() > 100  # days re-netted in file order are exercised

    summary, report = rfm_summary_with_report(days, "1998-06-30", "weeks")
    expected, expected_report = rfm_summary_with_report(rows, "1998-06-30", "weeks")
    pd.testing.assert_frame_equal(summary, expected, check_exact=True)
    assert report == expected_report
    assert len(summary) == 23_570
    pd.testing.assert_frame_equal(
        calibration_holdout_summary(days, "1997-09-30", "1998-06-30", "weeks"),
        calibration_holdout_summary(rows, "1997-09-30", "1998-06-30", "weeks"),
        check_exact=True,
    )


def _awkward_log(seed: int = 0) -> pd.DataFrame:
    """Same-day repeats of 3+ rows whose float sum depends on the order, returns that cancel a day or
    fall on a day of their own, zero amounts, text ids with leading zeros, rows after the end."""
    rng = np.random.default_rng(seed)
    n = 6000
    customer = rng.integers(0, 500, size=n)
    day = rng.integers(0, 400, size=n)
    amount = np.round(rng.gamma(2.0, 20.0, size=n), 2)
    amount[rng.random(n) < 0.05] = 0.0
    returns = rng.random(n) < 0.06
    amount[returns] = -np.round(rng.gamma(2.0, 30.0, size=returns.sum()), 2)
    # three rows on one day whose sum depends on the order: 0.1 + 0.2 + 0.3 != 0.1 + (0.2 + 0.3)
    extra = pd.DataFrame(
        {
            "customer": [7, 7, 7, 8, 8, 8, 8],
            "day": [10, 10, 10, 20, 20, 20, 20],
            "amount": [0.1, 0.2, 0.3, 0.7, 0.1, 0.2, 1e-3],
        }
    )
    frame = pd.concat([pd.DataFrame({"customer": customer, "day": day, "amount": amount}), extra], ignore_index=True)
    # repeat a tenth of the rows on the same day, in shuffled order
    frame = pd.concat([frame, frame.sample(frac=0.1, random_state=seed)]).sample(frac=1.0, random_state=seed + 1)
    stamps = (
        pd.Timestamp("2021-01-01")
        + pd.to_timedelta(frame["day"], unit="D")
        + pd.to_timedelta(rng.integers(0, 86_400, size=len(frame)), unit="s")
    )
    return pd.DataFrame(
        {
            "customer_id": [f"{c:05d}" for c in frame["customer"]],
            "date": stamps.dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(),
            "amount": [f"{a:.2f}" if a not in (0.1, 0.2, 0.3, 0.7, 1e-3) else repr(a) for a in frame["amount"]],
            "quantity": rng.integers(1, 4, size=len(frame)).astype(str),
        }
    )


@pytest.fixture(scope="module", params=["csv", "parquet"])
def awkward_file(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("awkward") / f"log.{request.param}"
    log = _awkward_log()
    if request.param == "csv":
        log.to_csv(path, index=False)
    else:
        log.to_parquet(path)
    return path


def test_generated_log_gives_the_same_features_and_analyses(awkward_file):
    days = load_customer_days(awkward_file, quantity_col="quantity", engine="duckdb")
    rows = load_transactions(awkward_file, quantity_col="quantity").frame
    _same_days(days, customer_days(rows))
    assert not days.purchase.all() and (days.rows >= 3).any() and (days.amount == 0).any()

    obs_end, cal_end = "2021-12-31", "2021-07-31"  # 35 days of rows after the observation end
    summary, report = rfm_summary_with_report(days, obs_end, "days")
    expected, expected_report = rfm_summary_with_report(rows, obs_end, "days")
    pd.testing.assert_frame_equal(summary, expected, check_exact=True)
    assert report == expected_report and report.rows_after_observation_end > 0
    pd.testing.assert_frame_equal(
        calibration_holdout_summary(days, cal_end, obs_end, "weeks"),
        calibration_holdout_summary(rows, cal_end, obs_end, "weeks"),
        check_exact=True,
    )
    pd.testing.assert_series_equal(
        revenue_in_window(days, obs_end, 90), revenue_in_window(rows, obs_end, 90), check_exact=True
    )
    pd.testing.assert_frame_equal(
        analyses.customer_measures(days, obs_end), analyses.customer_measures(rows, obs_end), check_exact=True
    )
    pd.testing.assert_frame_equal(
        analyses.retention_table(days, "M", obs_end), analyses.retention_table(rows, "M", obs_end), check_exact=True
    )
    pd.testing.assert_frame_equal(
        analyses.cohort_retention(days, "Q", obs_end), analyses.cohort_retention(rows, "Q", obs_end), check_exact=True
    )


def test_revenue_of_netted_days_is_the_sum_of_the_rows():
    """A return on a day of its own is no purchase, but still counts against revenue."""
    rows = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b"],
            "date": pd.to_datetime(["2021-01-01", "2021-01-05", "2021-01-05", "2021-01-09", "2021-01-09"]),
            "amount": [50.0, 20.0, -20.0, -15.0, 10.0],
        }
    )
    days = customer_days(rows)
    assert days.purchase.tolist() == [True, False, False, True]
    assert revenue_in_window(days, "2021-01-09", 30).to_dict() == {"a": 35.0, "b": 10.0}
    assert analyses.customer_measures(days, "2021-01-09")["total_sales"].to_dict() == {"a": 35.0, "b": 10.0}


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


BAD_CSV = {
    "missing column": "customer_id,when,amount\n1,2021-01-01,5\n",
    "unparseable date": "customer_id,date,amount\n1,2021-01-01,5\n2,2021-01-02,6\n3,not a date,7\n",
    "missing date": "customer_id,date,amount\n1,2021-01-01,5\n2,,6\n",
    "non-numeric amount": "customer_id,date,amount\n1,2021-01-01,5\n2,2021-01-02,12 EUR\n3,2021-01-02,oops\n",
    "missing id": "customer_id,date,amount\n1,2021-01-01,5\n,2021-01-02,6\n",
    "empty id": 'customer_id,date,amount\n1,2021-01-01,5\n"  ",2021-01-02,6\n',
    "blank line before the bad row": "customer_id,date,amount\n1,2021-01-01,5\n\n2,2021-01-02,x\n",
}


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_bad_csv_fails_with_the_pandas_message(tmp_path, case):
    path = _write(tmp_path, "bad.csv", BAD_CSV[case])
    with pytest.raises(CrmvalueError) as pandas_error:
        load_transactions(path)
    with pytest.raises(CrmvalueError) as duckdb_error:
        load_customer_days(path, engine="duckdb")
    message = str(duckdb_error.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert message == str(pandas_error.value)


def test_bad_parquet_names_the_row(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame(
        {"customer_id": ["1", "2", "3"], "date": ["2021-01-01", "2021-01-02", "2021-13-01"], "amount": [1.0, 2.0, 3.0]}
    ).to_parquet(path)
    with pytest.raises(CrmvalueError) as pandas_error:
        load_transactions(path)
    with pytest.raises(
        CrmvalueError, match=r"column 'date' has 1 unparseable timestamps; first at row 2 \(counting from 0\)"
    ):
        load_customer_days(path, engine="duckdb")
    with pytest.raises(CrmvalueError) as duckdb_error:
        load_customer_days(path, engine="duckdb")
    assert str(duckdb_error.value) == str(pandas_error.value)


def test_float_ids_in_parquet(tmp_path):
    path = tmp_path / "ids.parquet"
    pd.DataFrame(
        {
            "customer_id": [12.0, 7.0, 12.0],
            "date": pd.to_datetime(["2021-01-01", "2021-01-02", "2021-01-03"]),
            "amount": [1.0, 2.0, 3.0],
        }
    ).to_parquet(path)
    _same_days(load_customer_days(path, engine="duckdb"), customer_days(load_transactions(path).frame))
    pd.DataFrame(
        {"customer_id": [12.0, 7.5], "date": pd.to_datetime(["2021-01-01", "2021-01-02"]), "amount": [1.0, 2.0]}
    ).to_parquet(path)
    with pytest.raises(CrmvalueError) as pandas_error:
        load_transactions(path)
    with pytest.raises(CrmvalueError) as duckdb_error:
        load_customer_days(path, engine="duckdb")
    assert str(duckdb_error.value) == str(pandas_error.value)


def test_engine_choice(tmp_path, monkeypatch):
    path = _write(tmp_path, "small.csv", "customer_id,date,amount\n1,2021-01-01,5\n")
    assert choose_engine(path, "auto") == "pandas"
    assert choose_engine(path, "duckdb") == "duckdb"
    assert choose_engine("cdnow", "duckdb") == "pandas"  # bundled and DataFrame sources are already small
    monkeypatch.setattr(engine, "AUTO_DUCKDB_BYTES", 10)
    assert choose_engine(path, "auto") == "duckdb"
    assert choose_engine(_write(tmp_path, "log.csv.bz2", "x"), "auto") == "pandas"
    with pytest.raises(CrmvalueError, match=r"log\.csv\.bz2: the duckdb engine reads"):
        choose_engine(tmp_path / "log.csv.bz2", "duckdb")
    with pytest.raises(CrmvalueError, match="data.engine: Input should be"):
        load_config(None, {"data.engine": "polars"})


def test_train_with_duckdb_exports_the_same_predictions(tmp_path):
    source = tmp_path / "log.parquet"
    log = simulated_transactions(n_customers=300, seed=11)
    log["quantity"] = (np.arange(len(log)) % 3 + 1).astype(float)
    log.to_parquet(source)
    results = {}
    for name in ("pandas", "duckdb"):
        cfg = load_config(
            None,
            {
                "name": f"engine_{name}",
                "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                "out": str(tmp_path / name / "predictions.csv"),
                "models_dir": str(tmp_path / name / "models"),
                "calibration_end": "2020-12-31",
                "observation_end": "2021-12-31",
                "time_unit": "days",
                "data.source": str(source),
                "data.quantity_col": "quantity",
                "data.engine": name,
            },
        )
        results[name] = train(cfg)
    pandas_run, duckdb_run = results["pandas"], results["duckdb"]
    pd.testing.assert_frame_equal(
        pandas_run.predictions.drop(columns="run_id"), duckdb_run.predictions.drop(columns="run_id"), check_exact=True
    )
    exported = [pd.read_csv(tmp_path / name / "predictions.csv").drop(columns="run_id") for name in results]
    pd.testing.assert_frame_equal(*exported, check_exact=True)
    assert "churn_probability" in exported[0] and "rfm_segment" in exported[0]
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    metrics = client.get_run(duckdb_run.run_id).data.metrics
    assert (
        metrics["data.transactions"] == client.get_run(pandas_run.run_id).data.metrics["data.transactions"] == len(log)
    )
    stages = ["load", "features", "evaluate", "fit", "score", "churn", "analyses", "diagnose", "track"]
    assert all(f"time.{stage}_s" in metrics for stage in stages)
    assert metrics["memory.peak_mb"] >= metrics["memory.load_peak_mb"] > 0


# --------------------------------------------------------------------------------------------
# your own data (tests/test_own_data.py): both engines read, warn about and refuse the same files
# --------------------------------------------------------------------------------------------


def _own_files():
    from test_own_data import (
        EUROPEAN_OPTIONS,
        INVOICE_OPTIONS,
        TYPO_ROWS,
        european_log,
        european_text,
        invoice_text,
        iso_text,
    )

    text = "customer_id;date;amount\nMüller;03.02.2023;19,90\nJürgen;04.03.2023;5,00\nMüller;15.04.2023;1.234,50\n"
    iso_shapes = [  # every shape the ISO 8601 gate lets through, offsets converted to UTC
        ("a", "2023-01-04", "1"),
        ("a", "2023-01-04T23:30", "2"),
        ("b", "2023-01-04 10:00:00", "3"),
        ("b", "2023-01-05T01:00:00Z", "4"),
        ("c", "2023-01-05T01:00:00+02:00", "5"),
        ("c", "2023-01-05T23:00:00-0130", "6"),
        ("d", "2023-01-06T10:00:00.123456789+02", "7"),
        ("d", "2023-01-07 00:30+05", "8"),
        ("e", "2023-02-28T23:59:59", "9"),
    ]
    return {
        "european": (european_text(european_log(n_customers=40)), EUROPEAN_OPTIONS),
        "invoice-lines": (
            invoice_text(simulated_transactions(n_customers=30, seed=2)),
            dict(INVOICE_OPTIONS, drop_missing_ids=True),
        ),
        "latin-1": (text.encode("latin-1"), dict(sep=";", decimal=",", thousands=".", encoding="latin-1")),
        "utf-16-bom": (text.encode("utf-16"), dict(sep=";", decimal=",", thousands=".")),
        "cp1252-gzip": (
            text.replace("Jürgen", "Jürgen €").encode("cp1252"),
            dict(sep=";", decimal=",", thousands=".", encoding="cp1252"),
        ),
        "ambiguous-dayfirst": (
            iso_text([("a", "05/02/2023", "5"), ("b", "04/06/2023", "6"), ("a", "12/11/2023", "8")]),
            dict(dayfirst=True),
        ),
        "ambiguous-monthfirst": (
            iso_text([("a", "05/02/2023", "5"), ("b", "04/06/2023", "6"), ("a", "12/11/2023", "8")]),
            dict(dayfirst=False),
        ),
        "month-first-with-times": (
            iso_text(
                [
                    ("a", "12/1/2010 8:26", "5"),
                    ("a", "12/1/2010 17:26", "1"),
                    ("b", "1/13/2011 10:05", "6"),
                    ("a", "2/3/2011 0:00", "2"),
                ]
            ),
            {},
        ),
        "yyyymmdd": (iso_text([("a", "20230104", "5"), ("b", "20230215", "6"), ("a", "20231231", "7")]), {}),
        "float-like-ids": (
            iso_text(
                [
                    ("17850.0", "2023-01-02", "5"),
                    ("17850", "2023-01-02", "2"),
                    (" 17850 ", "2023-01-02", "1"),
                    ("00012.0", "2023-02-03", "6"),
                    ("00012", "2023-03-03", "1"),
                    ("12", "2023-03-03", "1"),
                    ("12.5", "2023-04-05", "7"),
                ]
            ),
            {},
        ),
        "iso-shapes": (iso_text(iso_shapes), {}),
        "a-2031-typo-allowed": (iso_text(TYPO_ROWS), dict(allow_future_dates=True)),
        "exact-duplicates": (
            iso_text(
                [
                    ("a", "2023-01-02 10:00", "5"),
                    ("a", "2023-01-02 10:00", "5.0"),
                    ("a", "2023-01-02 10:00", "5"),
                    ("a", "2023-01-02 11:00", "5"),
                    ("b", "2023-02-03", "8"),
                    ("b", "2023-02-03", "8"),
                    ("c", "2023-02-03", "8"),
                    ("c", "2023-02-03", "-8"),
                    ("c", "2023-02-03", "8.5"),
                    (" b", "2023-02-03", "8"),
                ]
            ),
            {},
        ),
    }


def _write_own(tmp_path, case: str):
    content, options = _own_files()[case]
    suffix = ".csv.gz" if case.endswith("gzip") else ".csv"
    path = tmp_path / f"{case}{suffix}"
    data = content if isinstance(content, bytes) else content.encode()
    path.write_bytes(gzip.compress(data) if suffix == ".csv.gz" else data)
    return path, options


def _read_both(path, options, caplog):
    import logging

    days, warnings = {}, {}
    for name in ("pandas", "duckdb"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="crmvalue"):
            days[name] = load_customer_days(path, engine=name, **options)
        warnings[name] = list(caplog.messages)
    return days, warnings


OWN_CASES = [
    "european",
    "invoice-lines",
    "latin-1",
    "utf-16-bom",
    "cp1252-gzip",
    "ambiguous-dayfirst",
    "ambiguous-monthfirst",
    "month-first-with-times",
    "yyyymmdd",
    "float-like-ids",
    "iso-shapes",
    "a-2031-typo-allowed",
    "exact-duplicates",
]


@pytest.mark.parametrize("case", OWN_CASES)
def test_own_data_files_give_the_same_days_and_warnings(tmp_path, case, caplog):
    path, options = _write_own(tmp_path, case)
    days, warnings = _read_both(path, options, caplog)
    _same_days(days["duckdb"], days["pandas"])
    assert warnings["duckdb"] == warnings["pandas"]
    # and what the pandas path reads is right
    if case == "float-like-ids":
        assert list(days["pandas"].ids) == ["00012", "12", "12.5", "17850"]
        assert days["pandas"].amount.tolist() == [6.0, 1.0, 1.0, 7.0, 8.0]
    if case == "iso-shapes":
        stamps = load_transactions(path).frame["date"].tolist()
        assert stamps[4:8] == [
            pd.Timestamp("2023-01-04 23:00"),
            pd.Timestamp("2023-01-06 00:30"),
            pd.Timestamp("2023-01-06 08:00:00.123456789"),
            pd.Timestamp("2023-01-06 19:30"),
        ]
    if case == "exact-duplicates":
        assert warnings["pandas"] == [
            f"{path}: 4 rows repeat an earlier row exactly (same customer, timestamp and amount); "
            "they are kept and summed into their customer-day like any other rows: drop them "
            "first if they are a double export"
        ]
    if case in ("ambiguous-dayfirst", "ambiguous-monthfirst"):
        first = {"ambiguous-dayfirst": "2023-02-05", "ambiguous-monthfirst": "2023-04-06"}[case]
        assert days["pandas"].first_date == pd.Timestamp(first)
    if case in ("latin-1", "utf-16-bom", "cp1252-gzip"):
        assert days["pandas"].ids[0] in ("Jürgen", "Jürgen €") and days["pandas"].amount.max() == 1234.5


def _own_rejections():
    from test_own_data import INVOICE_HEADER, TYPO_ROWS, iso_text

    return {
        "semicolon-header": (
            "Kundennummer;Belegdatum;Umsatz\n1001;03.02.2023;19,90\n1002;04.02.2023;5,00\n",
            dict(customer_col="Kundennummer", date_col="Belegdatum", amount_col="Umsatz"),
        ),
        "tab-header": ("customer_id\tdate\tamount\n1\t2023-01-01\t5\n", {}),
        "decimal-comma": ("a;b;c\n1;2023-01-01;19,90\n", dict(customer_col="a", date_col="b", amount_col="c", sep=";")),
        "point-under-decimal-comma": (
            "a;b;c\n1;2023-01-01;1.234\n",
            dict(customer_col="a", date_col="b", amount_col="c", sep=";", decimal=","),
        ),
        "ambiguous": (iso_text([("a", "05/02/2023", "5"), ("b", "04/06/2023", "6"), ("a", "12/11/2023", "8")]), {}),
        "dayfirst-on-month-first": (iso_text([("a", "3/2/2023", "5"), ("b", "2/15/2023", "6")]), dict(dayfirst=True)),
        "no-single-format": (
            iso_text([("a", "03/02/2023", "5"), ("b", "15/02/2023", "6"), ("c", "02/15/2023", "7")]),
            {},
        ),
        "date-and-datetime-mixed": (iso_text([("a", "3/2/2023", "5"), ("b", "3/2/2023 10:00", "6")]), {}),
        "iso-and-a-typo": (iso_text([("a", "2023-01-02", "5"), ("b", "2023-02-30", "6"), ("c", "", "7")]), {}),
        "a-2031-typo": (iso_text(TYPO_ROWS), {}),
        "single-day": (iso_text([("a", "2023-03-01 09:00", "5"), ("b", "2023-03-01 17:30", "6")]), {}),
        "all-returns": (iso_text([("a", "2023-03-01", "-5"), ("b", "2023-03-02", "-6")]), {}),
        "latin-1-as-utf-8": ("customer_id,date,amount\nMüller,2023-02-03,19.90\n".encode("latin-1"), {}),
        "guest-rows": (
            INVOICE_HEADER + "\n1,A,x,2,12/1/2021 9:00,1.5,17850.0,UK\n2,A,x,1,12/2/2021 9:00,2.5,,UK\n",
            dict(customer_col="CustomerID", date_col="InvoiceDate", quantity_col="Quantity", price_col="UnitPrice"),
        ),
        "bad-price": (
            INVOICE_HEADER + "\n1,A,x,2,12/13/2021 9:00,1.5,17850.0,UK\n2,A,x,1,12/14/2021 9:00,n/a,17850.0,UK\n",
            dict(customer_col="CustomerID", date_col="InvoiceDate", quantity_col="Quantity", price_col="UnitPrice"),
        ),
        "only-guests": (
            INVOICE_HEADER + "\n2,A,x,1,12/2/2021 9:00,2.5,,UK\n",
            dict(
                customer_col="CustomerID",
                date_col="InvoiceDate",
                quantity_col="Quantity",
                price_col="UnitPrice",
                drop_missing_ids=True,
            ),
        ),
        "bad-id-before-ambiguous-dates": ('customer_id,date,amount\n"  ",05/02/2023,5\nb,04/06/2023,6\n', {}),
    }


@pytest.mark.parametrize("case", list(_own_rejections()))
def test_own_data_rejections_have_the_same_message(tmp_path, case):
    content, options = _own_rejections()[case]
    path = tmp_path / "tx.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    messages = {}
    for name in ("pandas", "duckdb"):
        with pytest.raises(CrmvalueError) as info:
            load_customer_days(path, engine=name, **options)
        messages[name] = str(info.value)
    assert messages["duckdb"] == messages["pandas"]
    assert "\n" not in messages["pandas"] and messages["pandas"].startswith(f"{path}: ")
