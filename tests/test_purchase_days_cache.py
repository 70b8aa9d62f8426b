"""CustomerDays.purchase_days: filtered once per end, shared read-only, equal to filtering afresh."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmvalue.customer_days import customer_days, day_number

ROWS = pd.DataFrame(
    {
        "customer_id": ["a", "a", "a", "b", "b", "c", "c"],
        "date": pd.to_datetime(
            ["2021-01-01", "2021-01-05", "2021-03-01", "2021-01-02", "2021-01-02", "2021-02-01", "2021-04-01"]
        ),
        "amount": [10.0, -10.0, 5.0, 7.0, -3.0, 4.0, 6.0],
        "quantity": [1.0, -1.0, 1.0, 2.0, -1.0, 1.0, 2.0],
    }
)


@pytest.mark.parametrize("end", [None, "2021-01-31", "2021-03-01", "2021-12-31"])
def test_purchase_days_equal_a_fresh_filter(end):
    days = customer_days(ROWS)
    keep = days.purchase if end is None else days.purchase & (days.day <= day_number(end))
    found = days.purchase_days(None if end is None else day_number(end))
    np.testing.assert_array_equal(found.customer, days.customer[keep])
    np.testing.assert_array_equal(found.day, days.day[keep])
    np.testing.assert_array_equal(found.amount, days.amount[keep])
    np.testing.assert_array_equal(found.quantity, days.quantity[keep])
    after = 0 if end is None else int(days.rows[days.day > day_number(end)].sum())
    assert found.rows_after_end == after


def test_purchase_days_are_kept_per_end_and_read_only():
    days = customer_days(ROWS)
    end = day_number("2021-01-31")
    first = days.purchase_days(end)
    assert days.purchase_days(end) is first
    assert days.purchase_days(end + 1) is not first
    with pytest.raises(ValueError, match="read-only"):
        first.amount[0] = 0.0
    # a copy with another source starts without the kept days, and finds the same ones
    again = days.with_source("x.csv", "0" * 64).purchase_days(end)
    assert again is not first
    np.testing.assert_array_equal(again.amount, first.amount)
