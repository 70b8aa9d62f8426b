"""Value quadrants (seed 003) on hand-made customers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmvalue.errors import CrmvalueError
from crmvalue.segments import (
    QUADRANT_TREATMENT,
    quadrant_summary,
    top_share_threshold,
    value_quadrant,
    value_thresholds,
)


def _customers():
    return pd.DataFrame(
        {
            "current_value": [100.0, 0.0, 50.0, 0.0, 10.0, 0.0],
            "potential_value": [500.0, 400.0, 1.0, 2.0, 300.0, 3.0],
        },
        index=pd.Index(["a", "b", "c", "d", "e", "f"], name="customer_id"),
    )


def _base():
    """Ten customers: four without current value; the buyers' current values 10, 20, 40, 80, 160, 320."""
    return pd.DataFrame(
        {
            "current_value": [320.0, 10.0, 160.0, 20.0, 0.0, 0.0, 80.0, 0.0, 40.0, 0.0],
            "potential_value": [900.0, 800.0, 5.0, 4.0, 700.0, 3.0, 2.0, 1.0, 6.0, 7.0],
        },
        index=pd.Index(list("abcdefghij"), name="customer_id"),
    )


def test_quadrants_by_hand_under_the_quantile_rule():
    c = _customers()
    current, potential = value_thresholds(c["current_value"], c["potential_value"], rule="quantile")  # medians
    assert (current, potential) == (5.0, 151.5)
    quadrant = value_quadrant(c["current_value"], c["potential_value"], current, potential)
    assert quadrant.to_dict() == {"a": "A", "b": "B", "c": "C", "d": "D", "e": "A", "f": "D"}


def test_top_share_rule_by_hand():
    c = _base()
    # potential: the top 30% of 10 = the three highest, 900, 800, 700; the cut is the next value, 7
    # current: the median of the six buyers, (40 + 80) / 2 = 60; the four at 0 do not count
    cuts = value_thresholds(c["current_value"], c["potential_value"], rule="top_share", potential_top_share=0.3)
    assert cuts == (60.0, 7.0)
    quadrant = value_quadrant(c["current_value"], c["potential_value"], *cuts)
    assert "".join(quadrant) == "ABCDBDCDDD"
    table = quadrant_summary(c.assign(quadrant=quadrant))
    assert table["customers"].tolist() == [1, 2, 2, 5]
    # each quadrant's medians fit its label: B high potential, low current; C low potential, high current
    assert table["median_current_value"].tolist() == [320.0, 5.0, 120.0, 0.0]
    assert table["median_potential_value"].tolist() == [900.0, 750.0, 3.5, 4.0]


def test_the_default_rule_is_the_top_fifth_by_potential_value():
    values = pd.Series(np.arange(1.0, 11.0))  # 1..10: the top 20% are 9 and 10
    assert value_thresholds(pd.Series(np.zeros(10)), values) == (0.0, 8.0)


def test_ties_stay_together_on_the_side_nearest_the_share():
    values = pd.Series([5.0, 5.0, 5.0, 4.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    # top 20% = 2 customers; the candidates have 0, 3 (the 5s), 4, 5 or 6: 3 is nearest, so the 5s are high
    assert top_share_threshold(values, 0.2) == 4.0
    # top 10% = 1 customer: 0 is nearer than 3, so nobody is high
    assert top_share_threshold(values, 0.1) == 5.0
    # top 25% = 2.5: 3 and 2 are not candidates, 3 is nearest
    assert top_share_threshold(values, 0.25) == 4.0
    # equally near (0 and 2 for a target of 1): the smaller group
    assert top_share_threshold(pd.Series([2.0, 2.0] + [1.0] * 8), 0.1) == 2.0
    # the customers at the lowest value are never high, even when that leaves the group far from the share
    assert top_share_threshold(pd.Series([9.0] + [1.0] * 9), 0.9) == 1.0


def test_missing_potential_values_are_left_out_of_the_ranking():
    values = pd.Series([np.nan, 10.0, 9.0, 8.0, 7.0, 6.0])  # top 20% of the 5 finite values: 10
    assert top_share_threshold(values, 0.2) == 9.0


def test_all_equal_potential_values_make_nobody_high():
    values = pd.Series([4.0] * 5)
    cut = top_share_threshold(values, 0.2)
    assert cut == 4.0
    assert not (values > cut).any()


def test_customers_without_current_value_are_never_high_current():
    c = _base()
    current = c["current_value"].copy()
    current.iloc[1] = -25.0  # net returns in the window
    quadrant = value_quadrant(current, c["potential_value"], current_threshold=-100.0, potential_threshold=7.0)
    # b (returns) and e (0) have high potential but no current value: B, never A
    assert quadrant[["b", "e"]].tolist() == ["B", "B"]
    assert quadrant[["f", "h", "j"]].tolist() == ["D", "D", "D"]
    assert quadrant["g"] == "C"


def test_without_any_buyer_in_the_window_everyone_is_low_current():
    c = _base().assign(current_value=0.0)
    current, _ = value_thresholds(c["current_value"], c["potential_value"], rule="top_share")
    assert current == 0.0
    quadrant = value_quadrant(c["current_value"], c["potential_value"], current, 7.0)
    assert set(quadrant) == {"B", "D"}


def test_high_means_strictly_above_the_threshold():
    c = _customers()
    quadrant = value_quadrant(
        c["current_value"], c["potential_value"], current_threshold=0.0, potential_threshold=300.0
    )
    # e has potential exactly 300: low; b and d have current exactly 0: low
    assert quadrant.to_dict() == {"a": "A", "b": "B", "c": "C", "d": "D", "e": "C", "f": "D"}


@pytest.mark.parametrize("rule", ["top_share", "quantile"])
def test_absolute_thresholds_override_the_rule(rule):
    c = _base()
    cv, pv = c["current_value"], c["potential_value"]
    assert value_thresholds(cv, pv, 0.9, current_threshold=20, potential_threshold=2.5, rule=rule) == (20.0, 2.5)
    # one axis only: the other keeps its rule
    rule_cuts = value_thresholds(cv, pv, 0.9, rule=rule, potential_top_share=0.3)
    assert value_thresholds(cv, pv, 0.9, current_threshold=20, rule=rule, potential_top_share=0.3) == (
        20.0,
        rule_cuts[1],
    )
    assert value_thresholds(cv, pv, 0.9, potential_threshold=2.5, rule=rule, potential_top_share=0.3) == (
        rule_cuts[0],
        2.5,
    )
    # an absolute potential cut needs no finite potential values to rank
    assert value_thresholds(cv, pv * np.nan, potential_threshold=1.0, rule=rule)[1] == 1.0


def test_quantile_rule_takes_the_quantile():
    c = _customers()
    assert value_thresholds(c["current_value"], c["potential_value"], 0.25, rule="quantile")[1] == pytest.approx(
        c["potential_value"].quantile(0.25)
    )


@pytest.mark.parametrize(
    ("potential", "kwargs", "message"),
    [
        ([], {}, "no customer has a finite potential value"),
        ([np.nan, np.inf], {}, "no customer has a finite potential value"),
        ([1.0, 2.0], {"potential_top_share": 1.0}, "potential_top_share must be between 0 and 1"),
        ([1.0, 2.0], {"rule": "median"}, "unknown rule 'median'"),
    ],
)
def test_bad_rules_and_values_get_one_line_errors(potential, kwargs, message):
    values = pd.Series(potential, dtype=float)
    with pytest.raises(CrmvalueError, match=message) as caught:
        value_thresholds(pd.Series(np.ones(len(values))), values, **kwargs)
    assert "\n" not in str(caught.value)


def test_quadrant_summary():
    c = _customers()
    c["quadrant"] = value_quadrant(c["current_value"], c["potential_value"], 5.0, 151.5)
    table = quadrant_summary(c)
    assert list(table.index) == ["A", "B", "C", "D"]
    assert table["customers"].tolist() == [2, 1, 1, 2]
    assert table["share"].sum() == pytest.approx(1.0)
    assert table.loc["A", "current_value_total"] == 110.0
    assert table.loc["A", "potential_value_total"] == 800.0
    assert table.loc["A", "median_current_value"] == 55.0
    assert table.loc["D", "median_potential_value"] == 2.5
    assert table.loc["D", "treatment"] == QUADRANT_TREATMENT["D"] == "least valuable: serve at low cost"
    assert list(table.columns) == [
        "customers",
        "share",
        "current_value_total",
        "potential_value_total",
        "median_current_value",
        "median_potential_value",
        "treatment",
    ]


def test_empty_quadrants_are_listed_with_zero_customers_and_no_medians():
    c = _customers().iloc[:1].assign(quadrant="A")
    table = quadrant_summary(c)
    assert table["customers"].tolist() == [1, 0, 0, 0]
    assert table["current_value_total"].tolist() == [100.0, 0.0, 0.0, 0.0]
    assert table.loc["A", "median_potential_value"] == 500.0
    assert table.loc[["B", "C", "D"], ["median_current_value", "median_potential_value"]].isna().all().all()
