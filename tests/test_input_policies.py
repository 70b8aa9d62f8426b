"""The documented input policies, checked on hand-computed examples.

- rows dated after the observation end are ignored, and counted (and the pipeline says so);
- returns are netted within the customer-day; a day with a return that nets to <= 0 is not a
  purchase; a zero-amount day without a return is;
- customer ids are text: "00012" and "12" are two customers, a DataFrame mixing Python id
  types is refused, int ids and whole-number float ids become their decimal text;
- timezone-aware timestamps are converted to UTC and made naive.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from crmvalue.data import load_transactions
from crmvalue.errors import CrmvalueError
from crmvalue.features import calibration_holdout_summary, purchase_days, rfm_summary, rfm_summary_with_report

COLUMNS = ["customer_id", "date", "amount"]


def frame(rows) -> pd.DataFrame:
    """Canonical transactions from (customer, timestamp text, amount) rows, through the loader."""
    return load_transactions(pd.DataFrame(rows, columns=COLUMNS)).frame


# --------------------------------------------------------------------------------------------
# returns and zero amounts, netted by customer-day
# --------------------------------------------------------------------------------------------

NETTING_ROWS = [
    # A: a purchase, a day cancelled by its return, a part return, a lone return, a free item
    ("A", "2021-01-01 09:00", 50.0),
    ("A", "2021-01-10 10:00", 30.0),
    ("A", "2021-01-10 15:00", -30.0),  # nets to 0 with a return: not a purchase
    ("A", "2021-01-20 11:00", 40.0),
    ("A", "2021-01-20 18:00", -10.0),  # nets to 30: a purchase of 30
    ("A", "2021-02-01 12:00", -20.0),  # a return alone: not a purchase
    ("A", "2021-02-10 12:00", 0.0),  # zero, no return: a purchase of 0
    # B: the first day is cancelled, so the first purchase is the second day (two rows netted)
    ("B", "2021-01-05 10:00", 20.0),
    ("B", "2021-01-05 11:00", -25.0),
    ("B", "2021-01-15 08:00", 10.0),
    ("B", "2021-01-15 20:00", 5.0),
    ("B", "2021-02-14 13:00", 20.5),
    # C: only a cancelled day: no purchase at all
    ("C", "2021-01-12 10:00", 15.0),
    ("C", "2021-01-12 16:00", -15.0),
    # D: a return that leaves the day positive
    ("D", "2021-01-25 10:00", 100.0),
    ("D", "2021-01-25 17:00", -40.0),
    # E: free items on one day (a purchase), a free item with a return on another (not)
    ("E", "2021-01-02 10:00", 0.0),
    ("E", "2021-01-02 11:00", 0.0),
    ("E", "2021-02-20 10:00", 0.0),
    ("E", "2021-02-20 10:30", -5.0),
    ("E", "2021-02-25 10:00", 12.0),
    # F: nothing but a free item, like the 80 $0 rows of CDNOW
    ("F", "2021-01-03 10:00", 0.0),
]
END = "2021-03-01"


@pytest.fixture
def netting() -> pd.DataFrame:
    return frame(NETTING_ROWS)


def test_purchase_days_net_within_the_day(netting):
    days = purchase_days(netting)
    got = {(c, str(d.date())): a for c, d, a in days.itertuples(index=False)}
    assert got == {
        ("A", "2021-01-01"): 50.0,
        ("A", "2021-01-20"): 30.0,
        ("A", "2021-02-10"): 0.0,
        ("B", "2021-01-15"): 15.0,
        ("B", "2021-02-14"): 20.5,
        ("D", "2021-01-25"): 60.0,
        ("E", "2021-01-02"): 0.0,
        ("E", "2021-02-25"): 12.0,
        ("F", "2021-01-03"): 0.0,
    }


def test_rfm_with_returns_and_zero_amounts_in_days(netting):
    summary, report = rfm_summary_with_report(netting, END, "days")
    expected = pd.DataFrame(
        {
            # A: purchase days Jan 1 (50), Jan 20 (30), Feb 10 (0): 2 repeats, Jan 1 -> Feb 10 = 40 days,
            #    Jan 1 -> Mar 1 = 59 days, mean of the repeats (30 + 0) / 2
            "A": [2.0, 40.0, 59.0, 15.0],
            # B: Jan 15 (10 + 5), Feb 14 (20.5); the cancelled Jan 5 does not start the clock
            "B": [1.0, 30.0, 45.0, 20.5],
            # D: one day of 100 - 40
            "D": [0.0, 0.0, 35.0, 0.0],
            # E: Jan 2 (0 + 0), Feb 25 (12); Feb 20 (0 - 5) is not a purchase
            "E": [1.0, 54.0, 58.0, 12.0],
            # F: one free item is one purchase day
            "F": [0.0, 0.0, 57.0, 0.0],
        },
        index=["frequency", "recency", "T", "monetary_value"],
    ).T
    expected.index.name = "customer_id"
    # the index dtype (object or str) is not a policy; the ids and the numbers are
    pd.testing.assert_frame_equal(summary, expected, check_exact=True, check_index_type=False)
    assert summary.index.tolist() == ["A", "B", "D", "E", "F"]
    assert report.customers_without_purchase == 1  # C
    assert report.rows_after_observation_end == 0


def test_rfm_in_weeks_divides_days_by_seven(netting):
    weeks = rfm_summary(netting, END, "weeks")
    assert weeks.loc["A", "recency"] == pytest.approx(40 / 7, abs=0, rel=1e-15)
    assert weeks.loc["A", "T"] == pytest.approx(59 / 7, abs=0, rel=1e-15)
    assert weeks.loc["A", "frequency"] == 2.0
    assert weeks.loc["A", "monetary_value"] == 15.0


def test_calibration_holdout_with_returns(netting):
    split = calibration_holdout_summary(netting, "2021-01-31", END, "days")
    expected = pd.DataFrame(
        {
            # cal: Jan 1 (50), Jan 20 (30); holdout: Feb 1 (-20, not a purchase), Feb 10 (0, a purchase)
            "A": [1.0, 19.0, 30.0, 30.0, 1.0, -20.0],
            # cal: Jan 15 only; holdout: Feb 14
            "B": [0.0, 0.0, 16.0, 0.0, 1.0, 20.5],
            "D": [0.0, 0.0, 6.0, 0.0, 0.0, 0.0],
            # holdout: Feb 20 (0 - 5) is not a purchase but its return counts in revenue, Feb 25 (12) is
            "E": [0.0, 0.0, 29.0, 0.0, 1.0, 7.0],
            "F": [0.0, 0.0, 28.0, 0.0, 0.0, 0.0],
        },
        index=["frequency_cal", "recency_cal", "T_cal", "monetary_value_cal", "frequency_holdout", "revenue_holdout"],
    ).T
    expected["duration_holdout"] = 29.0  # Jan 31 -> Mar 1
    expected.index.name = "customer_id"
    pd.testing.assert_frame_equal(split, expected, check_exact=True, check_index_type=False)
    assert split.index.tolist() == ["A", "B", "D", "E", "F"]


def test_a_day_is_a_calendar_day_not_24_hours():
    # 23:00 and 01:00 the next day are two purchase days; 00:01 and 23:59 of one day are one
    tx = frame(
        [
            ("A", "2021-01-01 23:00", 5.0),
            ("A", "2021-01-02 01:00", 5.0),
            ("A", "2021-01-05 00:01", 3.0),
            ("A", "2021-01-05 23:59", 4.0),
        ]
    )
    row = rfm_summary(tx, "2021-01-10").loc["A"]
    assert row.to_dict() == {"frequency": 2.0, "recency": 4.0, "T": 9.0, "monetary_value": 6.0}


# --------------------------------------------------------------------------------------------
# rows after the observation end
# --------------------------------------------------------------------------------------------

LATE_ROWS = [
    ("A", "2021-03-02 00:00", 99.0),  # the day after the end: ignored
    ("G", "2021-03-05 12:00", 10.0),  # a customer who only buys after the end: absent
    ("B", "2021-03-01 23:59", 7.0),  # on the end day, late in it: kept
]


def test_rows_after_the_observation_end_are_ignored_and_counted():
    tx = frame(NETTING_ROWS + LATE_ROWS)
    summary, report = rfm_summary_with_report(tx, END, "days")
    assert report.rows_after_observation_end == 2
    assert report.customers_without_purchase == 1  # still only C: G has no row in the window
    assert "G" not in summary.index
    assert summary.loc["A"].to_dict() == {"frequency": 2.0, "recency": 40.0, "T": 59.0, "monetary_value": 15.0}
    # B's purchase late on the end day is in: Jan 15, Feb 14, Mar 1
    assert summary.loc["B"].to_dict() == {"frequency": 2.0, "recency": 45.0, "T": 45.0, "monetary_value": 13.75}
    # the same as leaving those rows out, and as an end given with a time of day
    in_window = frame(NETTING_ROWS + LATE_ROWS[2:])
    pd.testing.assert_frame_equal(summary, rfm_summary(in_window, END, "days"))
    pd.testing.assert_frame_equal(summary, rfm_summary(tx, pd.Timestamp(END) + pd.Timedelta(hours=6), "days"))
    # a later end takes them in
    later, later_report = rfm_summary_with_report(tx, "2021-03-05", "days")
    assert later_report.rows_after_observation_end == 0
    assert {"A", "G"} <= set(later.index) and later.loc["A", "frequency"] == 3.0


def test_calibration_holdout_ignores_rows_after_the_observation_end():
    split = calibration_holdout_summary(frame(NETTING_ROWS + LATE_ROWS), "2021-01-31", END, "days")
    assert "G" not in split.index
    assert split.loc["A", ["frequency_holdout", "revenue_holdout"]].tolist() == [1.0, -20.0]
    assert split.loc["B", ["frequency_holdout", "revenue_holdout"]].tolist() == [2.0, 27.5]


def _simulated_log(n_customers: int = 60, seed: int = 42) -> pd.DataFrame:
    """Repeat buyers who drop out (BG/NBD-like) over 2021, so both models can fit."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2021-01-01")
    rows = []
    for c in range(n_customers):
        rate, p_drop = rng.gamma(2.0, 1 / 60), rng.beta(2, 6)  # purchases per day; dropout after a purchase
        t = float(rng.integers(0, 150))
        days = [int(t)]
        while rng.random() >= p_drop:
            t += rng.exponential(1 / rate)
            if t >= 365:
                break
            days.append(int(t))
        for d in sorted(set(days)):
            when = start + pd.Timedelta(days=d, hours=int(rng.integers(8, 20)))
            rows.append((f"C{c:03d}", when, round(float(rng.gamma(4, 10)), 2)))
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.mark.slow
def test_train_warns_about_rows_after_the_observation_end(tmp_path, monkeypatch, caplog):
    from crmvalue.config import load_config
    from crmvalue.pipeline import train

    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts under the working directory
    log = _simulated_log()
    late = pd.DataFrame(
        {
            "customer_id": ["C000", "C001", "LATE"],
            "date": pd.to_datetime(["2022-01-01 00:00", "2022-02-01 09:00", "2022-03-01 10:00"]),
            "amount": [10.0, 20.0, 30.0],
        }
    )
    returned = pd.DataFrame(  # a customer whose only day nets to 0: not scored, and said so
        {
            "customer_id": ["RETURNED"] * 2,
            "date": pd.to_datetime(["2021-03-03 10:00", "2021-03-03 12:00"]),
            "amount": [25.0, -25.0],
        }
    )
    data = pd.concat([log, late, returned], ignore_index=True)
    cfg = load_config(
        None,
        {
            "name": "input_policies",
            "calibration_end": "2021-06-30",
            "observation_end": "2021-12-31",
            "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
            "out": str(tmp_path / "p.csv"),
            "models_dir": str(tmp_path / "models"),
            # 60 customers: a little L2 keeps both fits off the boundary of the parameter space
            "model.penalizer": 0.001,
            "model.gamma_gamma_penalizer": 0.001,
            # six months of calibration cannot hold a purged 90-day churn set-up (tested in test_churn)
            "churn.enabled": False,
        },
    )
    caplog.set_level(logging.WARNING, logger="crmvalue")

    result = train(cfg, data=data)

    warnings = [r.getMessage() for r in caplog.records if r.name == "crmvalue" and r.levelno == logging.WARNING]
    assert "ignored 3 rows dated after the observation end 2021-12-31" in warnings
    assert "1 customers have no purchase (their days net to <= 0 after returns) and are not scored" in warnings
    scored = set(result.predictions["customer_id"])
    assert scored == set(log["customer_id"])
    assert len(scored) == 60
    # the late purchases of C000 and C001 changed nothing
    expected = rfm_summary(load_transactions(log).frame, "2021-12-31", cfg.time_unit)
    got = result.predictions.set_index("customer_id").loc[expected.index, list(expected.columns)]
    pd.testing.assert_frame_equal(got, expected, check_names=False, check_index_type=False)
    assert (tmp_path / "p.csv").is_file()


# --------------------------------------------------------------------------------------------
# customer ids
# --------------------------------------------------------------------------------------------


def test_csv_ids_are_text_so_leading_zeros_make_another_customer(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(
        "customer_id,date,amount\n00012,2021-01-01,10\n12,2021-01-02,20\n00012,2021-01-05,5\n012,2021-01-06,1\n"
    )
    tx = load_transactions(path).frame
    assert tx["customer_id"].tolist() == ["00012", "12", "00012", "012"]
    summary = rfm_summary(tx, "2021-01-10")
    assert sorted(summary.index) == ["00012", "012", "12"]
    assert summary.loc["00012", "frequency"] == 1.0
    assert summary.loc["12", "frequency"] == 0.0


def test_parquet_ids_keep_their_text_and_int_ids_become_text(tmp_path):
    text_ids, int_ids = tmp_path / "text.parquet", tmp_path / "int.parquet"
    base = {"date": ["2021-01-01", "2021-01-02"], "amount": [1.0, 2.0]}
    pd.DataFrame({"customer_id": ["00012", "12"], **base}).to_parquet(text_ids)
    pd.DataFrame({"customer_id": [12, 7], **base}).to_parquet(int_ids)
    assert load_transactions(text_ids).frame["customer_id"].tolist() == ["00012", "12"]
    assert load_transactions(int_ids).frame["customer_id"].tolist() == ["12", "7"]


def test_dataframe_mixing_int_and_str_ids_is_refused():
    df = pd.DataFrame(
        {"customer_id": [12, 13, "00012", 14], "date": ["2021-01-01"] * 4, "amount": [1.0] * 4}, index=[10, 11, 12, 13]
    )
    with pytest.raises(CrmvalueError) as info:
        load_transactions(df)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("DataFrame: column 'customer_id' mixes id types (int, str); ")
    assert "first str at row 2 (index 12): '00012'" in message


def test_mixed_ids_name_the_first_row_of_the_odd_type_whichever_comes_first():
    df = pd.DataFrame({"client": ["00012", "7", 12, 3], "date": ["2021-01-01"] * 4, "amount": [1.0] * 4})
    with pytest.raises(
        CrmvalueError, match=r"column 'client' mixes id types \(int, str\); first int at row 2 \(index 2\): 12"
    ):
        load_transactions(df, customer_col="client")


def test_dataframe_int_ids_become_strings():
    df = pd.DataFrame(
        {"customer_id": [12, 7, 12], "date": ["2021-01-01", "2021-01-02", "2021-01-03"], "amount": [1.0, 2.0, 3.0]}
    )
    ids = load_transactions(df).frame["customer_id"]
    assert ids.tolist() == ["12", "7", "12"]
    assert all(type(v) is str for v in ids)
    summary = rfm_summary(load_transactions(df).frame, "2021-01-03")
    assert sorted(summary.index) == ["12", "7"] and summary.loc["12", "frequency"] == 1.0


@pytest.mark.parametrize(
    "ids",
    [
        pd.Series([12, 7], dtype="int32"),
        pd.Series([12, 7], dtype="Int64"),
        pd.Series([12, 7], dtype="uint64"),
        pd.Series([np.int64(12), 7], dtype=object),  # numpy and Python ints are both ints
        pd.Series(["12", "7"], dtype="string"),
    ],
    ids=["int32", "Int64", "uint64", "object-ints", "string"],
)
def test_other_integer_and_text_id_dtypes(ids):
    df = pd.DataFrame({"customer_id": ids, "date": ["2021-01-01", "2021-01-02"], "amount": [1.0, 2.0]})
    assert load_transactions(df).frame["customer_id"].tolist() == ["12", "7"]


@pytest.mark.parametrize("dtype", ["float64", "float32", object], ids=["float64", "float32", "object-floats"])
def test_whole_number_float_ids_become_integer_text(dtype):
    df = pd.DataFrame(
        {"customer_id": pd.Series([12.0, 7.0, 1e6], dtype=dtype), "date": ["2021-01-01"] * 3, "amount": [1.0] * 3}
    )
    assert load_transactions(df).frame["customer_id"].tolist() == ["12", "7", "1000000"]


def test_non_integer_float_ids_are_refused():
    df = pd.DataFrame(
        {"cid": [12.0, 7.0, 7.5, 8.25], "date": ["2021-01-01"] * 4, "amount": [1.0] * 4}, index=list("wxyz")
    )
    with pytest.raises(CrmvalueError) as info:
        load_transactions(df, customer_col="cid")
    message = str(info.value)
    assert message.startswith("DataFrame: column 'cid' has a non-integer id at row 2 (index 'y'): ")
    assert message.endswith(": 7.5")


def test_missing_float_ids_are_refused():
    df = pd.DataFrame({"customer_id": [12.0, np.nan], "date": ["2021-01-01"] * 2, "amount": [1.0] * 2})
    with pytest.raises(
        CrmvalueError,
        match=r"^DataFrame: column 'customer_id' has 1 missing ids; first at row 1 \(index 1\) \(--drop-missing-ids",
    ):
        load_transactions(df)


# --------------------------------------------------------------------------------------------
# time zones
# --------------------------------------------------------------------------------------------


def test_aware_dataframe_timestamps_become_naive_utc():
    when = pd.to_datetime(["2021-01-01 23:30", "2021-07-01 12:00"]).tz_localize("America/New_York")
    df = pd.DataFrame({"customer_id": ["a", "b"], "date": when, "amount": [1.0, 2.0]})
    dates = load_transactions(df).frame["date"]
    assert dates.dt.tz is None
    assert dates.dtype == "datetime64[ns]"
    # EST is UTC-5 in January, EDT UTC-4 in July
    assert dates.tolist() == [pd.Timestamp("2021-01-02 04:30"), pd.Timestamp("2021-07-01 16:00")]


def test_naive_timestamps_are_left_alone():
    df = pd.DataFrame({"customer_id": ["a"], "date": pd.to_datetime(["2021-01-01 23:30"]), "amount": [1.0]})
    assert load_transactions(df).frame["date"].tolist() == [pd.Timestamp("2021-01-01 23:30")]


def test_offsets_in_a_csv_become_naive_utc(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(
        "customer_id,date,amount\n"
        "a,2021-01-01T23:30:00-05:00,1\n"
        "b,2021-01-02 01:00:00+02:00,2\n"
        "c,2021-01-02T01:00:00Z,3\n"
    )
    dates = load_transactions(path).frame["date"]
    assert dates.dt.tz is None
    assert dates.tolist() == [
        pd.Timestamp("2021-01-02 04:30"),
        pd.Timestamp("2021-01-01 23:00"),
        pd.Timestamp("2021-01-02 01:00"),
    ]


def test_offsets_with_an_explicit_format_become_naive_utc():
    # several offsets under one %z format: pandas raises unless asked for UTC
    df = pd.DataFrame(
        {"customer_id": ["a", "b"], "date": ["2021-01-01 00:00 -0500", "2021-01-01 00:00 +0100"], "amount": [1.0, 2.0]}
    )
    dates = load_transactions(df, date_format="%Y-%m-%d %H:%M %z").frame["date"]
    assert dates.tolist() == [pd.Timestamp("2021-01-01 05:00"), pd.Timestamp("2020-12-31 23:00")]


def test_the_purchase_day_is_the_utc_day():
    # 20:00 in New York on the last day is 01:00 UTC the next day: after the observation end
    when = pd.to_datetime(["2021-12-01 12:00", "2021-12-31 20:00"]).tz_localize("America/New_York")
    tx = load_transactions(pd.DataFrame({"customer_id": ["a", "a"], "date": when, "amount": [5.0, 6.0]})).frame
    summary, report = rfm_summary_with_report(tx, "2021-12-31")
    assert report.rows_after_observation_end == 1
    assert summary.loc["a", "frequency"] == 0.0
