"""Figures of a backtest: a metric per cut-off per candidate, and the revenue decile calibration.

As in :mod:`crmvalue.plots`, each takes ``ax=None`` and returns the figure; nothing here writes a file
or chooses a backend.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

FOLDER = "backtest"  # the backtest run's artifact folder
PLOT_BY_CUTOFF = {
    metric: f"{FOLDER}/{metric.replace('.', '_')}_by_cutoff.png" for metric in ("revenue.rmse", "revenue.gini")
}
PLOT_DECILE_CALIBRATION = f"{FOLDER}/decile_calibration.png"
METRIC_LABELS = {
    "revenue.rmse": "Revenue RMSE per customer (lower is better)",
    "revenue.gini": "Revenue normalized Gini (higher is better)",
    "revenue.decile_mape": "Revenue decile MAPE (lower is better)",
    "revenue.total_ratio": "Predicted / actual revenue (1 is unbiased)",
}


def _axes(ax, figsize: tuple[float, float]):
    if ax is not None:
        return ax.figure, ax, False
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax, True


def metric_by_cutoff(per_cutoff: pd.DataFrame, metric: str, ax=None):
    """``metric`` at each cut-off, one line per candidate (``per_cutoff``: cutoff, model, metric columns)."""
    fig, ax, own = _axes(ax, (8, 4.5))
    for model, rows in per_cutoff.groupby("model", sort=False):
        rows = rows.sort_values("cutoff")
        ax.plot(pd.to_datetime(rows["cutoff"]), rows[metric], marker="o", label=str(model))
    ax.set_xlabel("cut-off")
    ax.set_ylabel(metric)
    ax.set_title(METRIC_LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if own:
        fig.autofmt_xdate()
        fig.tight_layout()
    return fig


def decile_means(deciles: pd.DataFrame) -> pd.DataFrame:
    """Mean over cut-offs of each candidate's decile means (``deciles``: cutoff, model, decile, predicted,
    actual), one row per model and decile."""
    return deciles.groupby(["model", "decile"], sort=False)[["predicted", "actual"]].mean().reset_index()


def decile_calibration(deciles: pd.DataFrame, ax=None):
    """Mean predicted against mean actual revenue per decile of prediction (averaged over the cut-offs),
    one line per candidate, on log axes with the diagonal: a calibrated model lies on it at every decile."""
    fig, ax, own = _axes(ax, (6.5, 6))
    means = decile_means(deciles)
    positive = means[(means["predicted"] > 0) & (means["actual"] > 0)]
    for model, rows in positive.groupby("model", sort=False):
        ax.plot(rows["actual"], rows["predicted"], marker="o", markersize=4, label=str(model))
    if len(positive):
        lo = float(min(positive["actual"].min(), positive["predicted"].min()))
        hi = float(max(positive["actual"].max(), positive["predicted"].max()))
        ax.plot([lo, hi], [lo, hi], color="#888", linestyle="--", linewidth=1, label="predicted = actual")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("mean actual revenue in the decile")
    ax.set_ylabel("mean predicted revenue in the decile")
    ax.set_title("Revenue by decile of prediction, mean over cut-offs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if own:
        fig.tight_layout()
    return fig


def figures(per_cutoff: pd.DataFrame, deciles: pd.DataFrame) -> dict[str, object]:
    """The backtest's figures by artifact name."""
    out: dict[str, object] = {}
    for metric, name in PLOT_BY_CUTOFF.items():
        if metric in per_cutoff.columns and np.isfinite(per_cutoff[metric].to_numpy(float)).any():
            out[name] = metric_by_cutoff(per_cutoff, metric)
    if len(deciles):
        out[PLOT_DECILE_CALIBRATION] = decile_calibration(deciles)
    return out
