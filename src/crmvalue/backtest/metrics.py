"""Backtest metrics of one cut-off: what each candidate predicted for the next horizon against what
customers then did, in purchases and in revenue.

Every function takes arrays (one value per customer) and is vectorised. Ties in the prediction are
resolved the same way everywhere a ranking matters (:func:`tie_averaged`): tied customers share their
actual values evenly, which is the expectation over every order of the tie, so a metric never depends
on the row order of its input.

- ``mae``, ``rmse``: per-customer mean absolute and root mean squared error;
- ``total_ratio``: sum predicted / sum actual (1 is an unbiased total);
- ``normalized_gini``: the ZILN paper's ranking measure (Wang, Liu & Miao 2019, "A Deep Probabilistic
  Model for Customer Lifetime Value Prediction", section 4): the Gini of the actual values ordered by
  prediction over the Gini of the perfect ordering;
- ``spearman``: the rank correlation of prediction and actual (average ranks for ties);
- ``decile_mape``: customers sorted by prediction into ten equal groups, the mean over groups of
  ``|mean predicted - mean actual| / |mean actual|``;
- ``bucket_bias``: mean predicted - mean actual by frequency (repeat purchases) at the cut-off;
- ``coverage_metrics``: the share of customers with ``lower <= actual <= upper``, overall and by bucket, and
  the coverage the model expects.

The frequency buckets (0, 1, 2-3, 4-7, 8+ repeat purchases) and the coverage shares are defined once, in
:mod:`crmvalue.models.predictive_coverage`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from crmvalue.models.predictive_coverage import bucket_means, coverage, coverage_by_frequency

DECILES = 10
QUANTITIES = ("purchases", "revenue")


def _pair(actual, predicted) -> tuple[np.ndarray, np.ndarray]:
    a, p = np.asarray(actual, float).reshape(-1), np.asarray(predicted, float).reshape(-1)
    if a.shape != p.shape:
        raise ValueError(f"actual and predicted differ in length: {a.size} and {p.size}")
    return a, p


def mae(actual, predicted) -> float:
    """Mean absolute error per customer (NaN for no customers)."""
    a, p = _pair(actual, predicted)
    return float(np.mean(np.abs(p - a))) if a.size else float("nan")


def rmse(actual, predicted) -> float:
    """Root mean squared error per customer (NaN for no customers)."""
    a, p = _pair(actual, predicted)
    return float(np.sqrt(np.mean((p - a) ** 2))) if a.size else float("nan")


def total_ratio(actual, predicted) -> float:
    """``sum(predicted) / sum(actual)``; NaN when the actual total is not positive."""
    a, p = _pair(actual, predicted)
    total = a.sum()
    return float(p.sum() / total) if total > 0 else float("nan")


def tie_averaged(actual, predicted) -> tuple[np.ndarray, np.ndarray]:
    """The customers sorted by prediction, highest first: ``(actual, predicted)`` in that order, each
    actual value replaced by the mean actual of the customers with the same prediction.

    Any order of a tie is as good as another, and the ranking metrics below are linear in the actual
    values' positions within a tie, so giving every tied customer the tie's mean is their expectation
    over every order of the tie: deterministic, and independent of the input's row order.
    """
    a, p = _pair(actual, predicted)
    order = np.argsort(-p, kind="stable")
    a, p = a[order], p[order]
    _, group, counts = np.unique(p, return_inverse=True, return_counts=True)
    if counts.max(initial=1) > 1:
        a = (np.bincount(group, weights=a) / counts)[group]
    return a, p


def _gini_of_order(actual_sorted: np.ndarray) -> float:
    """``2 * area under the gain curve - 1`` of actual values already in the ranking's order, the area by
    trapezoids from (0, 0): customers' cumulative share of the total against their share of customers."""
    n = actual_sorted.size
    gain = np.cumsum(actual_sorted) / actual_sorted.sum()
    return float(2.0 * (gain.mean() - 0.5 / n) - 1.0)


def normalized_gini(actual, predicted) -> float:
    """The Gini of the actual values ranked by prediction over the Gini of the perfect ranking.

    As in the ZILN paper (Wang, Liu & Miao 2019, and its code ``google/lifetime_value``): customers are
    sorted by prediction, highest first; ``L_i`` is the share of the total actual value held by the first
    ``i``; the Gini of the ranking is twice the area between that gain curve and the diagonal, and the
    normalized Gini divides it by the Gini of the ranking by the actual values themselves. 1 is a perfect
    ranking, 0 a random one (or a constant prediction), negative worse than random. The area is by
    trapezoids, ``mean(L) - 1/(2n)``: the paper's code uses ``mean(L)``, which differs from this by
    ``1/n`` in each Gini and gives a constant prediction ``1/n`` instead of 0. Ties in the prediction:
    :func:`tie_averaged`. NaN when the actual total is not positive or every actual value is the same.
    """
    a, p = _pair(actual, predicted)
    if a.size == 0 or a.sum() <= 0:
        return float("nan")
    perfect = _gini_of_order(np.sort(a)[::-1])
    if perfect <= 0:
        return float("nan")
    ranked, _ = tie_averaged(a, p)
    return _gini_of_order(ranked) / perfect


def spearman(actual, predicted) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    a, p = _pair(actual, predicted)
    if a.size < 2:
        return float("nan")
    ra, rp = rankdata(a), rankdata(p)
    if ra.std() == 0 or rp.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rp)[0, 1])


def decile_table(actual, predicted, groups: int = DECILES) -> pd.DataFrame:
    """Customers sorted by prediction (highest first, ties by :func:`tie_averaged`) into ``groups`` equal
    groups (sizes differ by at most one, the larger first, as ``numpy.array_split``): per group, its
    customers and the mean predicted and actual value. Group 1 holds the highest predictions."""
    a, p = tie_averaged(actual, predicted)
    sizes = np.full(groups, a.size // groups) + (np.arange(groups) < a.size % groups)
    group = np.repeat(np.arange(groups), sizes)
    customers = np.bincount(group, minlength=groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = pd.DataFrame(
            {
                "customers": customers,
                "predicted": np.bincount(group, weights=p, minlength=groups) / customers,
                "actual": np.bincount(group, weights=a, minlength=groups) / customers,
            },
            index=pd.RangeIndex(1, groups + 1, name="decile"),
        )
    return table[table["customers"] > 0]


def decile_mape(actual, predicted, groups: int = DECILES) -> float:
    """The mean over the :func:`decile_table` groups of ``|mean predicted - mean actual| / |mean actual|``.

    A group whose actual mean is 0 has no relative error (nobody in it bought, or its returns cancel its
    purchases) and is left out of the mean; NaN if every group is, or with fewer customers than groups.
    """
    a, _ = _pair(actual, predicted)
    if a.size < groups:
        return float("nan")
    table = decile_table(actual, predicted, groups)
    scored = table[table["actual"] != 0]
    if scored.empty:
        return float("nan")
    return float(np.mean(np.abs(scored["predicted"] - scored["actual"]) / np.abs(scored["actual"])))


def bucket_bias(actual, predicted, frequency) -> dict[str, float]:
    """``mean(predicted) - mean(actual)`` of the customers in each frequency bucket (NaN when empty)."""
    a, p = _pair(actual, predicted)
    return bucket_means(p - a, frequency)


def cutoff_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """Every metric of one candidate at one cut-off, named ``<quantity>.<metric>[.<bucket>]``.

    ``frame`` has one row per customer: ``frequency`` (repeat purchases at the cut-off),
    ``actual_purchases``, ``actual_revenue``, ``expected_purchases`` (NaN for a revenue-only model: its
    purchase metrics are left out), ``expected_revenue`` and optionally ``purchases_lower/upper`` and
    ``revenue_lower/upper``, with ``purchases_probability`` and ``revenue_probability`` (:func:`coverage_metrics`).
    Ranking and decile metrics are of revenue only.
    """
    metrics: dict[str, float] = {}
    frequency = frame["frequency"].to_numpy(float)
    for quantity in QUANTITIES:
        actual = frame[f"actual_{quantity}"].to_numpy(float)
        predicted = frame[f"expected_{quantity}"].to_numpy(float)
        if np.isnan(predicted).all():
            continue
        if np.isnan(predicted).any():
            raise ValueError(f"expected_{quantity} is missing for some customers")
        metrics[f"{quantity}.mae"] = mae(actual, predicted)
        metrics[f"{quantity}.rmse"] = rmse(actual, predicted)
        metrics[f"{quantity}.total_ratio"] = total_ratio(actual, predicted)
        if quantity == "revenue":
            metrics["revenue.gini"] = normalized_gini(actual, predicted)
            metrics["revenue.spearman"] = spearman(actual, predicted)
            metrics["revenue.decile_mape"] = decile_mape(actual, predicted)
        for bucket, value in bucket_bias(actual, predicted, frequency).items():
            metrics[f"{quantity}.bias.{bucket}"] = value
        if {f"{quantity}_lower", f"{quantity}_upper"} <= set(frame.columns):
            metrics.update(coverage_metrics(quantity, frame, actual, frequency))
    return metrics


def coverage_metrics(quantity: str, frame: pd.DataFrame, actual: np.ndarray, frequency: np.ndarray) -> dict[str, float]:
    """``<quantity>.coverage`` and ``<quantity>.coverage.<bucket>``: the share of customers whose actual value
    is inside their interval (:func:`crmvalue.models.predictive_coverage.coverage`), overall and by frequency
    bucket; and given ``<quantity>_probability``, the model's probability of each interval,
    ``<quantity>.expected_coverage`` and ``<quantity>.expected_coverage.<bucket>``: the mean of that probability,
    the coverage the model itself expects (above the level where counts are small)."""
    lower, upper = frame[f"{quantity}_lower"].to_numpy(float), frame[f"{quantity}_upper"].to_numpy(float)
    metrics = {f"{quantity}.coverage": coverage(actual, lower, upper)}
    by_bucket = coverage_by_frequency(actual, lower, upper, frequency)["coverage"]
    metrics.update({f"{quantity}.coverage.{bucket}": float(share) for bucket, share in by_bucket.items()})
    if f"{quantity}_probability" in frame.columns:
        probability = frame[f"{quantity}_probability"].to_numpy(float)
        metrics[f"{quantity}.expected_coverage"] = float(np.mean(probability))
        for bucket, mean in bucket_means(probability, frequency).items():
            metrics[f"{quantity}.expected_coverage.{bucket}"] = mean
    return metrics
