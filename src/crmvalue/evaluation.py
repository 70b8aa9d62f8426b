"""Out-of-time evaluation of the value model on the holdout period, with a baseline beside it."""

from __future__ import annotations

import numpy as np
import pandas as pd


def holdout_metrics(actual_purchases, predicted_purchases, actual_revenue, predicted_revenue) -> dict[str, float]:
    """Per-customer MAE/RMSE of holdout purchases and the totals, predicted against actual."""
    actual = np.asarray(actual_purchases, float)
    predicted = np.asarray(predicted_purchases, float)
    error = predicted - actual
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "predicted_total": float(predicted.sum()),
        "actual_total": float(actual.sum()),
        "predicted_revenue": float(np.sum(predicted_revenue)),
        "actual_revenue": float(np.sum(actual_revenue)),
    }


def naive_rate_forecast(frequency, T, duration) -> np.ndarray:
    """Baseline: each customer keeps buying at their calibration repeat rate, x / T, forever.

    It ignores dropout, which is exactly what BG/NBD adds; a value model that cannot beat it
    is not earning its complexity.
    """
    T_ = np.asarray(T, float)
    rate = np.divide(np.asarray(frequency, float), T_, out=np.zeros_like(T_), where=T_ > 0)
    return rate * duration


def conditional_expectations(frequency, actual, predicted, max_frequency: int = 7) -> pd.DataFrame:
    """Mean holdout purchases, actual and predicted, by calibration frequency (``max_frequency``+ pooled)."""
    bucket = np.minimum(np.asarray(frequency, float), max_frequency).astype(int)
    frame = pd.DataFrame({"frequency": bucket, "actual": np.asarray(actual, float), "predicted": np.asarray(predicted, float)})
    table = frame.groupby("frequency").agg(customers=("actual", "size"), actual=("actual", "mean"), predicted=("predicted", "mean"))
    return table
