"""RFM features against lifetimes' summary (the reference implementation) and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import random_transactions
from lifetimes.utils import summary_data_from_transaction_data

from crmvalue.errors import CrmvalueError
from crmvalue.features import calibration_holdout_summary, compress_rfm, revenue_in_window, rfm_summary


@pytest.mark.parametrize("time_unit,multiplier", [("days", 1), ("weeks", 7)])
@pytest.mark.parametrize("seed", [0, 1])
def test_rfm_summary_equals_lifetimes(time_unit, multiplier, seed):
    tx = random_transactions(seed=seed)
    assert tx.duplicated(["customer_id"]).any()  # repeat buyers present
    end = "2020-11-30"  # some rows fall after it and must be ignored by both
    ours = rfm_summary(tx, end, time_unit)
    ref = summary_data_from_transaction_data(
        tx, "customer_id", "date", "amount", observation_period_end=end, freq="D", freq_multiplier=multiplier
    ).sort_index()
    assert (ours["frequency"] == 0).any() and (ours["frequency"] > 0).any()
    pd.testing.assert_frame_equal(ours, ref, check_names=False, rtol=1e-10)


def test_cdnow_sample_summary_matches_published_customer_1(cdnow_sample):
    summary = rfm_summary(cdnow_sample, "1997-09-30", "weeks")
    assert len(summary) == 2357
    first = summary.loc["00004"]  # customer 1 of the papers
    assert first["frequency"] == 2
    assert first["recency"] == pytest.approx(30.43, abs=0.005)
    assert first["T"] == pytest.approx(38.86, abs=0.005)
    assert int((summary["frequency"] > 0).sum()) == 946


def test_same_day_purchases_merge_and_amounts_sum():
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a"],
            "date": pd.to_datetime(["2021-01-01 09:00", "2021-01-01 18:00", "2021-01-11 00:00", "2021-01-21 00:00"]),
            "amount": [10.0, 5.0, 20.0, 40.0],
        }
    )
    row = rfm_summary(tx, "2021-01-31", "days").loc["a"]
    assert row.to_dict() == {"frequency": 2.0, "recency": 20.0, "T": 30.0, "monetary_value": 30.0}
    weeks = rfm_summary(tx, "2021-01-31", "weeks").loc["a"]
    assert weeks["recency"] == pytest.approx(20 / 7) and weeks["T"] == pytest.approx(30 / 7)


def test_calibration_holdout_split_by_hand():
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "c"],
            "date": pd.to_datetime(
                ["2021-01-01", "2021-01-05", "2021-02-10", "2021-02-10", "2021-01-20", "2021-02-15"]
            ),
            "amount": [10.0, 30.0, 7.0, 3.0, 5.0, 99.0],
        }
    )
    split = calibration_holdout_summary(tx, "2021-01-31", "2021-03-02", "days")
    assert list(split.index) == ["a", "b"]  # c first buys in the holdout: not a calibration customer
    a = split.loc["a"]
    assert (a["frequency_cal"], a["recency_cal"], a["T_cal"], a["monetary_value_cal"]) == (1.0, 4.0, 30.0, 30.0)
    assert a["frequency_holdout"] == 1.0  # two rows on one day are one purchase
    assert a["revenue_holdout"] == 10.0
    assert split.loc["b", "frequency_holdout"] == 0.0
    assert (split["duration_holdout"] == 30.0).all()


def test_calibration_end_must_precede_observation_end(small_transactions):
    with pytest.raises(CrmvalueError, match="must be before"):
        calibration_holdout_summary(small_transactions, "2020-06-30", "2020-06-30")


def test_revenue_in_window_is_trailing_and_inclusive():
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "date": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-12-31", "2019-06-01"]),
            "amount": [1.0, 2.0, 4.0, 8.0],
        }
    )
    revenue = revenue_in_window(tx, "2020-12-31", 365)  # (2020-01-01, 2020-12-31]
    assert revenue.to_dict() == {"a": 6.0}


def test_compress_rfm_counts_patterns():
    rows = compress_rfm([0, 0, 1, 1, 1], [0, 0, 2.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0, 5.0])
    assert rows["weights"].tolist() == [2, 2, 1]
    assert rows["weights"].sum() == 5
    assert np.array_equal(rows["frequency"], [0.0, 1.0, 1.0])
