"""The value-quadrant chart: its properties, read from the axes, not its pixels."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from crmvalue import plots
from crmvalue.segments import value_quadrant


def _scores():
    """22 customers without current value, at potential 0, 5, .., 105 (11 above $50: B, 11 D), and 20 buyers
    from $1 to $1,000 at potential 0, 5, .., 95: 7 spent $10 or less (D), of the rest 9 have potential above $50
    (A) and 4 not (C)."""
    current = np.concatenate([np.zeros(22), np.geomspace(1.0, 1000.0, 20)])
    potential = np.concatenate([np.linspace(0.0, 105.0, 22), np.linspace(0.0, 95.0, 20)])
    frame = pd.DataFrame({"current_value": current, "potential_value": potential})
    frame["quadrant"] = value_quadrant(frame["current_value"], frame["potential_value"], 10.0, 50.0)
    return frame


def _points(ax):
    """Quadrant -> the (x, y) of its dots, by the quadrant letter that starts each scatter's label."""
    return {c.get_label()[0]: np.asarray(c.get_offsets()) for c in ax.collections if c.get_label()[:1] in "ABCD"}


def test_every_quadrant_is_drawn_with_its_count():
    scores = _scores()
    fig = plots.quadrant_scatter(scores, 10.0, 50.0)
    ax = fig.axes[0]
    points = _points(ax)
    counts = scores["quadrant"].value_counts()
    assert {q: len(p) for q, p in points.items()} == counts.to_dict() == {"A": 9, "B": 11, "C": 4, "D": 18}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["A (9)", "B (11)", "C (4)", "D (18)", r"cuts: current \$10, potential \$50"]
    plt.close(fig)


def test_no_empty_negative_half_and_the_cuts_drawn():
    fig = plots.quadrant_scatter(_scores(), 10.0, 50.0)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0.0  # no potential value below 0: the axis starts there
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] > 0
    lines = [(tuple(line.get_xdata()), tuple(line.get_ydata())) for line in ax.get_lines()]
    assert ((10.0, 10.0), (0, 1)) in lines  # the current cut, a vertical line at $10
    assert ((0, 1), (50.0, 50.0)) in lines  # the potential cut
    plt.close(fig)


def test_a_negative_potential_value_keeps_the_negative_half():
    scores = _scores()
    scores.loc[0, "potential_value"] = -30.0
    fig = plots.quadrant_scatter(scores, 10.0, 50.0)
    assert fig.axes[0].get_ylim()[0] < -30.0
    plt.close(fig)


def test_customers_without_current_value_spread_over_a_strip_left_of_the_buyers():
    scores = _scores()
    scores.loc[3, "current_value"] = -12.0  # net returns: drawn with the zeros
    fig = plots.quadrant_scatter(scores, 10.0, 50.0)
    ax = fig.axes[0]
    xy = np.concatenate(list(_points(ax).values()))
    strip = xy[xy[:, 0] < 1.0, 0]  # the lowest buyer spent $1
    assert len(strip) == 22 and len(np.unique(strip)) == 22  # 22 distinct x positions, none on one line
    # the strip spans log10 x from 1 - 0.25 * 3 to 1 - 0.08 * 3 decades, the axis runs from $1 to $1,000
    assert strip.min() >= 10**-0.75 and strip.max() <= 10**-0.24
    assert ax.get_xlim()[0] < strip.min()
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "none"
    plt.close(fig)


def test_the_smaller_quadrant_is_drawn_over_the_larger():
    fig = plots.quadrant_scatter(_scores(), 10.0, 50.0)
    z = {c.get_label()[0]: c.get_zorder() for c in fig.axes[0].collections if c.get_label()[:1] in "ABCD"}
    assert z["D"] < z["B"] < z["A"] < z["C"]  # 18, 11, 9, 4 customers
    plt.close(fig)


def test_a_cut_of_zero_falls_between_the_strip_and_the_scale():
    scores = _scores()
    scores["quadrant"] = value_quadrant(scores["current_value"], scores["potential_value"], 0.0, 50.0)
    fig = plots.quadrant_scatter(scores, 0.0, 50.0)
    ax = fig.axes[0]
    x = [line.get_xdata()[0] for line in ax.get_lines() if line.get_xdata()[0] == line.get_xdata()[1]]
    assert len(x) == 1 and 10**-0.24 < x[0] < 1.0
    plt.close(fig)


def test_each_quadrant_is_capped_and_the_draw_is_repeatable(monkeypatch):
    monkeypatch.setattr(plots, "SCATTER_POINTS", 5)
    scores = _scores()
    first = _points(plots.quadrant_scatter(scores, 10.0, 50.0).axes[0])
    second = _points(plots.quadrant_scatter(scores, 10.0, 50.0).axes[0])
    assert {q: len(p) for q, p in first.items()} == {"A": 5, "B": 5, "C": 4, "D": 5}
    legend = [t.get_text() for t in plt.gcf().axes[0].get_legend().get_texts()]
    assert legend[:4] == ["A (9)", "B (11)", "C (4)", "D (18)"]  # the counts are the customers, not the dots
    for q in first:
        np.testing.assert_array_equal(first[q], second[q])
    plt.close("all")


@pytest.mark.parametrize("value", [1.0, 10.0, 1000.0, 12.5, 63.19])
def test_money_ticks(value):
    expected = {1.0: r"\$1", 10.0: r"\$10", 1000.0: r"\$1k", 12.5: r"\$12.50", 63.19: r"\$63.19"}
    fig = plots.quadrant_scatter(_scores(), value, 50.0)
    label = fig.axes[0].get_legend().get_texts()[-1].get_text()
    assert label == f"cuts: current {expected[value]}, potential \\$50"
    plt.close(fig)
