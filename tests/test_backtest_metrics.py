"""The backtest's metrics, each against numbers worked out by hand on small arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from crmvalue.backtest import metrics as m
from crmvalue.models.predictive_coverage import FREQUENCY_BUCKETS, frequency_bucket

ACTUAL = np.array([0.0, 10.0, 0.0, 30.0])


def test_errors_and_total_ratio_by_hand():
    actual, predicted = [0.0, 2.0, 4.0], [1.0, 1.0, 1.0]  # errors 1, -1, -3
    assert m.mae(actual, predicted) == pytest.approx(5 / 3)
    assert m.rmse(actual, predicted) == pytest.approx(np.sqrt(11 / 3))
    assert m.total_ratio(actual, predicted) == pytest.approx(3 / 6)
    assert np.isnan(m.total_ratio([0.0, 0.0], [1.0, 2.0]))  # no actual total to compare with
    assert np.isnan(m.mae([], []))


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [
        # gain curve L by prediction; Gini = 2 (mean(L) - 1/(2n)) - 1; perfect: L = .75, 1, 1, 1 -> 0.625
        ([0.1, 0.5, 0.2, 0.9], 1.0),  # 30, 10, 0, 0: the perfect order
        ([0.1, 0.9, 0.2, 0.5], 0.375 / 0.625),  # 10, 30, 0, 0: L = .25, 1, 1, 1 -> 0.375
        ([0.9, 0.5, 0.2, 0.1], -0.5 / 0.625),  # 0, 10, 0, 30: L = 0, .25, .25, 1 -> -0.5
        # ties share their actual values: (0, 10) -> 5, 5 first, then (0, 30) -> 15, 15: L = .125, .25, .625, 1
        ([1.0, 1.0, 0.0, 0.0], -0.25 / 0.625),
        ([2.0, 2.0, 2.0, 2.0], 0.0),  # a constant prediction ranks no one: 0
    ],
)
def test_normalized_gini_by_hand(predicted, expected):
    assert m.normalized_gini(ACTUAL, predicted) == pytest.approx(expected)


def test_gini_ties_do_not_depend_on_the_row_order():
    rng = np.random.default_rng(0)
    actual = rng.gamma(0.3, 50.0, 200) * (rng.random(200) < 0.3)
    predicted = np.round(rng.random(200), 1)  # many ties
    order = rng.permutation(200)
    assert m.normalized_gini(actual, predicted) == m.normalized_gini(actual[order], predicted[order])
    assert m.decile_mape(actual, predicted) == pytest.approx(m.decile_mape(actual[order], predicted[order]))


def test_gini_is_the_paper_code_formula_less_one_over_n():
    """google/lifetime_value's gini_from_gain: raw = 2 * mean(L) - 1, normalized by the ground truth's raw;
    ours takes the area by trapezoids, 1/n less in each Gini (without ties the orders agree)."""
    rng = np.random.default_rng(1)
    actual, predicted = rng.gamma(0.5, 20.0, 50), rng.random(50)

    def paper_raw(order_by):
        y = actual[np.argsort(-order_by, kind="stable")]
        return 2 * np.mean(np.cumsum(y) / y.sum()) - 1

    expected = (paper_raw(predicted) - 1 / 50) / (paper_raw(actual) - 1 / 50)
    assert m.normalized_gini(actual, predicted) == pytest.approx(expected)


def test_gini_without_a_positive_total_or_spread_is_undefined():
    assert np.isnan(m.normalized_gini([0.0, 0.0, 0.0], [1.0, 2.0, 3.0]))
    assert np.isnan(m.normalized_gini([5.0, 5.0], [1.0, 2.0]))  # every ordering is perfect: no Gini to divide by


def test_spearman_by_hand_and_against_scipy():
    # ranks differ by 0, 1, 1, 0: 1 - 6 * 2 / (4 * 15)
    assert m.spearman([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(0.8)
    rng = np.random.default_rng(2)
    a, p = np.round(rng.random(100), 1), np.round(rng.random(100), 1)  # ties: average ranks, as scipy
    assert m.spearman(a, p) == pytest.approx(spearmanr(a, p).statistic)
    assert np.isnan(m.spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))


def test_decile_mape_by_hand():
    predicted = np.arange(1.0, 21.0)  # 20 customers: decile k holds predictions 21 - 2k and 22 - 2k
    actual = 2 * predicted  # every decile's actual mean is twice its predicted mean: error 0.5 each
    assert m.decile_mape(actual, predicted) == pytest.approx(0.5)
    actual[[0, 1]] = 0.0  # the lowest decile bought nothing: no relative error, left out
    actual[[19, 18]] = [10.0, 0.0]  # the top decile: predicted 19.5, actual 5 -> 14.5 / 5 = 2.9
    assert m.decile_mape(actual, predicted) == pytest.approx((2.9 + 8 * 0.5) / 9)
    table = m.decile_table(actual, predicted)
    assert table.loc[1, "predicted"] == 19.5 and table.loc[1, "actual"] == 5.0
    assert table.loc[10, "actual"] == 0.0


def test_decile_groups_are_equal_and_ties_share_their_values():
    table = m.decile_table(np.arange(12.0), np.arange(12.0))  # 12 customers: two groups of 2, eight of 1
    assert table["customers"].tolist() == [2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    assert table.loc[1, "actual"] == pytest.approx(10.5)  # the two highest predictions, 11 and 10
    tied = m.decile_table([0.0] * 9 + [100.0], [3.0] * 10)  # one tie across every decile
    assert tied["actual"].tolist() == [10.0] * 10
    assert np.isnan(m.decile_mape(np.ones(9), np.ones(9)))  # fewer customers than deciles
    assert np.isnan(m.decile_mape(np.zeros(20), np.ones(20)))  # no group with an actual mean


FREQUENCY = [0, 0, 1, 2, 3, 5, 9]


def test_frequency_buckets_and_bias_by_hand():
    # one definition of the buckets, in the model layer: the backtest's bias and coverage use it
    assert frequency_bucket(FREQUENCY).tolist() == ["0", "0", "1", "2-3", "2-3", "4-7", "8plus"]
    assert FREQUENCY_BUCKETS == ("0", "1", "2-3", "4-7", "8plus")
    actual, predicted = [0.0, 1.0, 0.0, 2.0, 2.0, 1.0, 4.0], [1.0] * 7
    assert m.bucket_bias(actual, predicted, FREQUENCY) == pytest.approx(
        {"0": 0.5, "1": 1.0, "2-3": -1.0, "4-7": 0.0, "8plus": -3.0}
    )
    bias = m.bucket_bias([1.0], [2.0], [0])
    assert bias["0"] == 1.0 and np.isnan(bias["1"])  # an empty bucket has no bias


def test_coverage_by_hand():
    actual = [0.0, 1.0, 0.0, 2.0, 5.0, 1.0, 4.0]
    lower = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    upper = [0.0, 1.0, 2.0, 3.0, 4.0, 1.0, 3.0]
    probability = [0.9, 0.95, 0.92, 0.9, 0.94, 0.91, 0.97]
    frame = pd.DataFrame({"revenue_lower": lower, "revenue_upper": upper, "revenue_probability": probability})
    # inside: yes (bounds count), yes, no (below), yes, no (above), yes, no
    got = m.coverage_metrics("revenue", frame, np.array(actual), np.array(FREQUENCY, float))
    assert got == pytest.approx(
        {
            "revenue.coverage": 4 / 7,
            **{f"revenue.coverage.{b}": v for b, v in zip(FREQUENCY_BUCKETS, [1.0, 0.0, 0.5, 1.0, 0.0])},
            # the model's own expectation: the mean probability of the intervals, overall and per bucket
            "revenue.expected_coverage": 6.49 / 7,
            **{f"revenue.expected_coverage.{b}": v for b, v in zip(FREQUENCY_BUCKETS, [0.925, 0.92, 0.92, 0.91, 0.97])},
        }
    )
    # without the probability, the observed coverage only
    assert set(
        m.coverage_metrics(
            "revenue", frame.drop(columns="revenue_probability"), np.array(actual), np.array(FREQUENCY, float)
        )
    ) == {"revenue.coverage", *(f"revenue.coverage.{b}" for b in FREQUENCY_BUCKETS)}


def test_cutoff_metrics_names_and_a_revenue_only_model():
    frame = pd.DataFrame(
        {
            "frequency": [0, 1, 2, 9],
            "actual_purchases": [0.0, 1.0, 0.0, 3.0],
            "actual_revenue": ACTUAL,
            "expected_purchases": [np.nan] * 4,  # a revenue-only model
            "expected_revenue": [0.1, 0.9, 0.2, 0.5],
            "revenue_lower": [0.0, 0.0, 0.0, 0.0],
            "revenue_upper": [1.0, 20.0, 1.0, 20.0],
        }
    )
    got = m.cutoff_metrics(frame)
    assert not any(k.startswith("purchases.") for k in got)
    assert got["revenue.gini"] == pytest.approx(0.6)
    assert got["revenue.total_ratio"] == pytest.approx(1.7 / 40)
    assert got["revenue.coverage"] == pytest.approx(0.75) and got["revenue.coverage.8plus"] == 0.0
    assert got["revenue.bias.8plus"] == pytest.approx(0.5 - 30)
    assert {"revenue.mae", "revenue.rmse", "revenue.spearman", "revenue.decile_mape"} <= set(got)
    with pytest.raises(ValueError, match="expected_revenue is missing"):
        m.cutoff_metrics(frame.assign(expected_revenue=[1.0, np.nan, 1.0, 1.0]))
