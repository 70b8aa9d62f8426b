"""Coverage of predictive intervals, and a simulator of a customer's history *and* next horizon to measure it.

:func:`coverage` and :func:`coverage_by_frequency` score any intervals against what customers did, by the
frequency buckets defined here once (:data:`FREQUENCY_BUCKETS`, :func:`frequency_bucket`, :func:`bucket_means`),
which the backtest's metrics use too.
:func:`simulate_history_and_future` draws customers from a purchase model and Gamma-Gamma (or the mean-spend
fallback) and returns their RFM summary at ``T`` together with what the same latent customers buy and spend
in ``(T, T + horizon]``: data drawn from the model itself, on which intervals at level 0.9 must cover about
90% (more where counts are small; see :mod:`crmvalue.models.predictive`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError
from crmvalue.models.base import PurchaseParams
from crmvalue.models.bgnbd import BetaGeoParams
from crmvalue.models.gamma_gamma import MeanSpendParams, SpendParams
from crmvalue.models.mbgnbd import ModifiedBetaGeoParams
from crmvalue.models.paretonbd import ParetoNBDParams

# repeat purchases at the cut-off or observation end: the buckets of every table by frequency (the backtest's
# bias and coverage, the report); crmvalue.backtest.metrics reads them from here
FREQUENCY_BUCKETS = ("0", "1", "2-3", "4-7", "8plus")  # "8plus", not "8+": usable in MLflow metric names
BUCKET_EDGES = (1, 2, 4, 8)  # a frequency below edge i is in bucket i; 8 and more in the last


def bucket_codes(frequency) -> np.ndarray:
    """The position in :data:`FREQUENCY_BUCKETS` of each repeat-purchase count."""
    x = np.asarray(frequency, float).reshape(-1)
    if np.any(~np.isfinite(x) | (x < 0)):
        raise CrmvalueError("frequency must be finite and non-negative to be bucketed")
    return np.searchsorted(np.asarray(BUCKET_EDGES, float), x, side="right")


def frequency_bucket(frequency) -> np.ndarray:
    """The :data:`FREQUENCY_BUCKETS` label of each repeat-purchase count."""
    return np.asarray(FREQUENCY_BUCKETS, dtype=object)[bucket_codes(frequency)]


def bucket_means(values, frequency) -> dict[str, float]:
    """The mean of ``values`` over the customers of each frequency bucket, every bucket in order (NaN when empty)."""
    codes = bucket_codes(frequency)
    v = np.asarray(values, float).reshape(-1)
    if v.shape != codes.shape:
        raise CrmvalueError(f"values and frequency differ in length: {v.size} and {codes.size}")
    counts = np.bincount(codes, minlength=len(FREQUENCY_BUCKETS))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.bincount(codes, weights=v, minlength=len(FREQUENCY_BUCKETS)) / counts
    return dict(zip(FREQUENCY_BUCKETS, map(float, means)))


def coverage(actual, lower, upper) -> float:
    """The share of customers with ``lower <= actual <= upper``."""
    a, lo, hi = _aligned(actual, lower, upper)
    return float(np.mean((lo <= a) & (a <= hi)))


def coverage_by_frequency(actual, lower, upper, frequency) -> pd.DataFrame:
    """Coverage per frequency bucket: rows :data:`FREQUENCY_BUCKETS` (all five, in order), columns ``customers``
    and ``coverage`` (NaN for a bucket without customers)."""
    a, lo, hi = _aligned(actual, lower, upper)
    codes = bucket_codes(frequency)
    if len(codes) != len(a):
        raise CrmvalueError(f"frequency has {len(codes)} values for {len(a)} customers")
    shares = bucket_means((lo <= a) & (a <= hi), frequency)
    table = pd.DataFrame(
        {"customers": np.bincount(codes, minlength=len(FREQUENCY_BUCKETS)), "coverage": list(shares.values())},
        index=pd.Index(FREQUENCY_BUCKETS, name="frequency_bucket"),
    )
    return table


def _aligned(actual, lower, upper) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = [np.asarray(v, float).reshape(-1) for v in (actual, lower, upper)]
    if len({len(v) for v in arrays}) != 1:
        raise CrmvalueError(f"actual, lower and upper differ in length: {', '.join(str(len(v)) for v in arrays)}")
    if len(arrays[0]) == 0:
        raise CrmvalueError("no customers to measure coverage on")
    for name, values in zip(("actual", "lower", "upper"), arrays):
        if np.any(np.isnan(values)):
            raise CrmvalueError(f"{name} has missing values at position {int(np.argmax(np.isnan(values)))}")
    return arrays[0], arrays[1], arrays[2]


def simulate_history_and_future(
    purchase: PurchaseParams, spend: SpendParams, T, horizon: float, seed: int | None = None
) -> pd.DataFrame:
    """One customer per entry of ``T``, exactly and vectorised: ``frequency, recency, T, monetary_value`` at ``T``,
    ``alive`` (at ``T``), and ``future_purchases`` and ``future_revenue`` in ``(T, T + horizon]``.

    BG/NBD: with ``lambda ~ Gamma(r, alpha)`` and ``p ~ Beta(a, b)``, the customer would make
    ``N1 ~ Poisson(lambda T)`` repeat purchases by ``T`` and ``N2 ~ Poisson(lambda horizon)`` after it
    (independent: disjoint windows of one Poisson process) and drops out right after repeat purchase
    ``G ~ Geometric(p)`` (MBG/NBD: ``G - 1``, 0 being the first purchase). So ``x = min(N1, G)``, alive
    means ``G > N1``, the future purchases are ``min(N2, G - N1)`` if alive, and ``t_x`` is the ``x``-th of
    ``N1`` uniform times on ``(0, T]``: ``T * Beta(x, N1 - x + 1)``. Pareto/NBD: lifetime ``tau ~ Exp(mu)``,
    ``mu ~ Gamma(s, beta)``; ``x ~ Poisson(lambda min(tau, T))`` with ``t_x`` the largest of ``x`` uniform
    times on ``(0, min(tau, T))``, future ``Poisson(lambda clip(tau - T, 0, horizon))``. Spend: each
    purchase ``Gamma(p, nu)``, ``nu ~ Gamma(q, v)`` per customer (``monetary_value`` is the mean of the ``x``
    repeat purchases, 0 without one); with :class:`MeanSpendParams` every purchase is the mean.
    """
    rng = np.random.default_rng(seed)
    T = np.asarray(T, float).reshape(-1)
    if np.any(~np.isfinite(T) | (T < 0)) or not horizon > 0:
        raise CrmvalueError("T must be finite and non-negative and the horizon positive")
    values = purchase.as_dict()
    lam = rng.gamma(values["r"], 1.0 / values["alpha"], size=T.shape)
    if isinstance(purchase, BetaGeoParams | ModifiedBetaGeoParams):
        dropout = rng.beta(purchase.a, purchase.b, size=T.shape)
        n_before, n_after = rng.poisson(lam * T), rng.poisson(lam * horizon)
        last = rng.geometric(dropout) - (1 if isinstance(purchase, ModifiedBetaGeoParams) else 0)
        x = np.minimum(n_before, last)
        alive = last > n_before
        future = np.where(alive, np.minimum(n_after, last - n_before), 0)
        recency = np.zeros_like(T)
        buyers = x > 0
        recency[buyers] = T[buyers] * rng.beta(x[buyers], n_before[buyers] - x[buyers] + 1)
    elif isinstance(purchase, ParetoNBDParams):
        tau = rng.exponential(1.0 / rng.gamma(purchase.s, 1.0 / purchase.beta, size=T.shape))
        active = np.minimum(tau, T)
        x = rng.poisson(lam * active)
        recency = np.where(x > 0, active * rng.uniform(size=T.shape) ** (1.0 / np.maximum(x, 1)), 0.0)
        alive = tau > T
        future = rng.poisson(lam * np.clip(tau - T, 0.0, horizon))
    else:
        raise CrmvalueError(f"cannot simulate the future of a {type(purchase).__name__} customer")
    if isinstance(spend, MeanSpendParams):
        monetary = np.where(x > 0, spend.mean_spend, 0.0)
        revenue = future * spend.mean_spend
    else:
        nu = rng.gamma(spend.q, 1.0 / spend.v, size=T.shape)
        monetary = rng.gamma(x * spend.p) / (np.maximum(x, 1) * nu)
        revenue = rng.gamma(future * spend.p) / nu
    return pd.DataFrame(
        {
            "frequency": x.astype(float),
            "recency": recency,
            "T": T,
            "monetary_value": monetary,
            "alive": alive,
            "future_purchases": future.astype(float),
            "future_revenue": revenue,
        }
    )
