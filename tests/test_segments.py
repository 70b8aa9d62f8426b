"""Value quadrants (seed 003) on hand-made customers."""

from __future__ import annotations

import pandas as pd
import pytest

from crmvalue.segments import QUADRANT_TREATMENT, quadrant_summary, value_quadrant, value_thresholds


def _customers():
    return pd.DataFrame(
        {
            "current_value": [100.0, 0.0, 50.0, 0.0, 10.0, 0.0],
            "potential_value": [500.0, 400.0, 1.0, 2.0, 300.0, 3.0],
        },
        index=pd.Index(["a", "b", "c", "d", "e", "f"], name="customer_id"),
    )


def test_quadrants_by_hand():
    c = _customers()
    current, potential = value_thresholds(c["current_value"], c["potential_value"])  # medians
    assert (current, potential) == (5.0, 151.5)
    quadrant = value_quadrant(c["current_value"], c["potential_value"], current, potential)
    assert quadrant.to_dict() == {"a": "A", "b": "B", "c": "C", "d": "D", "e": "A", "f": "D"}


def test_high_means_strictly_above_the_threshold():
    c = _customers()
    quadrant = value_quadrant(
        c["current_value"], c["potential_value"], current_threshold=0.0, potential_threshold=300.0
    )
    # e has potential exactly 300: low; b and d have current exactly 0: low
    assert quadrant.to_dict() == {"a": "A", "b": "B", "c": "C", "d": "D", "e": "C", "f": "D"}


def test_absolute_thresholds_override_the_quantile():
    c = _customers()
    assert value_thresholds(
        c["current_value"], c["potential_value"], 0.9, current_threshold=20, potential_threshold=2.5
    ) == (20.0, 2.5)
    assert value_thresholds(c["current_value"], c["potential_value"], 0.25)[1] == pytest.approx(
        c["potential_value"].quantile(0.25)
    )


def test_quadrant_summary():
    c = _customers()
    c["quadrant"] = value_quadrant(c["current_value"], c["potential_value"], 5.0, 151.5)
    table = quadrant_summary(c)
    assert list(table.index) == ["A", "B", "C", "D"]
    assert table["customers"].tolist() == [2, 1, 1, 2]
    assert table["share"].sum() == pytest.approx(1.0)
    assert table.loc["A", "current_value_total"] == 110.0
    assert table.loc["A", "potential_value_total"] == 800.0
    assert table.loc["D", "treatment"] == QUADRANT_TREATMENT["D"] == "least valuable: serve at low cost"


def test_empty_quadrants_are_listed_with_zero_customers():
    c = _customers().iloc[:1].assign(quadrant="A")
    table = quadrant_summary(c)
    assert table["customers"].tolist() == [1, 0, 0, 0]
