"""Diagnostic figures (matplotlib, Agg backend): functions return a Figure and never write files."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

QUADRANT_COLOURS = {"A": "#1b9e77", "B": "#7570b3", "C": "#d95f02", "D": "#999999"}


def quadrant_scatter(scores: pd.DataFrame, current_threshold: float, potential_threshold: float):
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for quadrant, colour in QUADRANT_COLOURS.items():
        part = scores[scores["quadrant"] == quadrant]
        ax.scatter(part["current_value"], part["potential_value"], s=4, alpha=0.4, color=colour,
                   label=f"{quadrant} ({len(part):,})")
    ax.axvline(current_threshold, color="black", lw=0.8, ls="--")
    ax.axhline(potential_threshold, color="black", lw=0.8, ls="--")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("current value (revenue in trailing window)")
    ax.set_ylabel("potential value (CLV)")
    ax.set_title("Value quadrants")
    ax.legend(title="quadrant", markerscale=4)
    fig.tight_layout()
    return fig


def calibration_vs_holdout(table: pd.DataFrame):
    """Mean holdout purchases, actual against predicted, by calibration-period frequency."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = [f"{int(f)}+" if i == len(table) - 1 else str(int(f)) for i, f in enumerate(table.index)]
    positions = np.arange(len(table))
    ax.plot(positions, table["actual"], marker="o", label="actual")
    ax.plot(positions, table["predicted"], marker="s", ls="--", label="model")
    ax.set_xticks(positions, labels)
    ax.set_xlabel("purchases in calibration period (repeat periods)")
    ax.set_ylabel("mean purchases in holdout period")
    ax.set_title("Conditional expectations: calibration vs holdout")
    ax.legend()
    fig.tight_layout()
    return fig


def p_alive_distribution(p_alive):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.hist(np.asarray(p_alive, float), bins=50, range=(0, 1), color="#4477aa")
    ax.set_xlabel("P(alive)")
    ax.set_ylabel("customers")
    ax.set_title("P(alive) at the observation end")
    fig.tight_layout()
    return fig
