"""Customer value: BG/NBD purchases + Gamma-Gamma spend = discounted CLV.

:class:`ValueModel` is the fitted, serialisable unit that scores an RFM summary. It holds
only parameters and settings (plain JSON), so the MLflow pyfunc rebuilds it from an artifact
instead of unpickling live objects.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError
from crmvalue.features import DAYS_PER_UNIT, SUMMARY_COLUMNS, TimeUnit
from crmvalue.models.base import PurchaseParams
from crmvalue.models.gamma_gamma import SpendParams, expected_average_value, spend_params_from_dict

# lifetimes' month in each time unit (utils._customer_lifetime_value: 30 days, 4.345 weeks)
MONTH_LENGTH = {"days": 30.0, "weeks": 4.345}
PREDICTION_COLUMNS = ["p_alive", "expected_purchases", "expected_avg_value", "expected_revenue", "clv"]
_CHUNK = 1_000_000  # customers per block in the CLV grid, to bound memory at any scale


def discounted_purchases(
    purchase: PurchaseParams,
    frequency,
    recency,
    T,
    months: int = 12,
    discount_rate: float = 0.01,
    time_unit: TimeUnit = "days",
) -> np.ndarray:
    """``sum_{m=1..months} (E[Y(m)] - E[Y(m-1)]) / (1 + d)^m``: expected purchases per month, discounted.

    Evaluated on a months x customers grid (lifetimes loops over months); a month is 30 days
    or 4.345 weeks, as in lifetimes. Parameters may be arrays of draws of shape (draws, 1).
    """
    x = np.asarray(frequency, float)
    t_x = np.asarray(recency, float)
    T_ = np.asarray(T, float)
    leading = np.broadcast_shapes(np.shape(purchase.as_dict()[next(iter(purchase.as_dict()))]), x.shape)
    grid = MONTH_LENGTH[time_unit] * np.arange(months + 1, dtype=float).reshape((-1,) + (1,) * len(leading))
    discount = (1.0 + discount_rate) ** -np.arange(1, months + 1, dtype=float)
    out = np.empty(leading)
    for start in range(0, x.shape[-1], _CHUNK):
        block = slice(start, start + _CHUNK)
        cumulative = purchase.expected_purchases(grid, x[block], t_x[block], T_[block])
        out[..., block] = np.tensordot(discount, np.diff(cumulative, axis=0), axes=1)
    return out


def customer_lifetime_value(
    purchase: PurchaseParams,
    frequency,
    recency,
    T,
    expected_avg_value,
    months: int = 12,
    discount_rate: float = 0.01,
    time_unit: TimeUnit = "days",
) -> np.ndarray:
    """Discounted CLV as lifetimes defines it (``GammaGammaFitter.customer_lifetime_value``):
    ``E[M] * sum_{m=1..months} (E[Y(m)] - E[Y(m-1)]) / (1 + d)^m``."""
    return np.asarray(expected_avg_value, float) * discounted_purchases(
        purchase, frequency, recency, T, months, discount_rate, time_unit
    )


def unique_patterns(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (x, t_x, T) rows and, for each customer, the index of theirs.

    Purchase predictions depend on a customer only through (x, t_x, T), and daily data repeat
    those patterns a lot (CDNOW: 23,570 customers, 11,104 patterns), so scoring patterns once
    and expanding gives identical values for less work.
    """
    columns = [np.asarray(c, float).reshape(-1) for c in (frequency, recency, T)]
    # one int64 key from the three columns' hash codes, then one hash factorisation of the key:
    # several times faster than np.unique(axis=0), which sorts rows lexicographically
    key = np.zeros(len(columns[0]), dtype=np.int64)
    size = 1
    for column in columns:
        codes, uniques = pd.factorize(column, use_na_sentinel=False)
        if size * max(len(uniques), 1) >= 2**62:  # cannot happen with day-resolution data; stay exact anyway
            unique, inverse = np.unique(np.column_stack(columns), axis=0, return_inverse=True)
            return unique[:, 0], unique[:, 1], unique[:, 2], inverse.reshape(-1)
        key = key * max(len(uniques), 1) + codes
        size *= max(len(uniques), 1)
    inverse, first = _first_occurrences(key)
    return columns[0][first], columns[1][first], columns[2][first], inverse


def _first_occurrences(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each element, the index of its distinct value; and the position of each distinct value's first element."""
    inverse, uniques = pd.factorize(key)
    first = np.empty(len(uniques), dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(key) - 1, -1, -1)  # the last write wins: the first occurrence
    return inverse, first


@dataclass(frozen=True)
class ValueModel:
    """Fitted purchase-model (BG/NBD, MBG/NBD or Pareto/NBD) and Gamma-Gamma parameters, with the horizons used to score.

    ``gamma_gamma`` is a ``GammaGammaParams``, or a ``MeanSpendParams`` when there were too few repeat
    buyers to fit it (saved as ``{"mean_spend": ...}``; files with ``p, q, v`` load as before).

    ``purchase_log_covariance`` and ``spend_log_covariance`` are the fits' asymptotic covariances of the
    log-parameters, in the order of ``as_dict()``: what the interval columns draw parameters from, so
    ``crmvalue predict`` computes them as the training run did. None when unknown (a model saved before
    they were saved loads with None: it scores as before, without intervals).
    """

    purchase: PurchaseParams
    gamma_gamma: SpendParams
    time_unit: TimeUnit
    horizon_days: int
    clv_months: int
    discount_rate: float
    purchase_log_covariance: tuple[tuple[float, ...], ...] | None = None
    spend_log_covariance: tuple[tuple[float, ...], ...] | None = None

    def with_covariances(self, purchase_log_covariance, spend_log_covariance) -> ValueModel:
        """This model carrying the fits' log-parameter covariances (square arrays; None leaves one unknown)."""
        return replace(
            self,
            purchase_log_covariance=_square(purchase_log_covariance, self.purchase.as_dict(), "purchase"),
            spend_log_covariance=_square(spend_log_covariance, self.gamma_gamma.as_dict(), "spend"),
        )

    @property
    def horizon(self) -> float:
        """The purchase horizon in the model's time unit."""
        return self.horizon_days / DAYS_PER_UNIT[self.time_unit]

    def predict(self, summary: pd.DataFrame) -> pd.DataFrame:
        """Score an RFM summary (``frequency, recency, T, monetary_value``), index kept."""
        missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
        if missing:
            raise ValueError(f"summary is missing columns {missing}")
        x = summary["frequency"].to_numpy(float)
        t_x = summary["recency"].to_numpy(float)
        T_ = summary["T"].to_numpy(float)
        spend = expected_average_value(self.gamma_gamma, x, summary["monetary_value"].to_numpy(float))
        ux, ut, uT, inverse = unique_patterns(x, t_x, T_)
        discounted = discounted_purchases(
            self.purchase, ux, ut, uT, self.clv_months, self.discount_rate, self.time_unit
        )
        purchases = self.purchase.expected_purchases(self.horizon, ux, ut, uT)[inverse]
        return pd.DataFrame(
            {
                "p_alive": self.purchase.p_alive(ux, ut, uT)[inverse],
                "expected_purchases": purchases,
                "expected_avg_value": spend,
                # undiscounted revenue over the horizon: E[purchases] x E[spend] (Gamma-Gamma is independent of them)
                "expected_revenue": purchases * spend,
                "clv": spend * discounted[inverse],
            },
            index=summary.index,
        )

    def to_dict(self) -> dict:
        data = {
            "purchase_model": self.purchase.name,
            "purchase_params": self.purchase.as_dict(),
            "gamma_gamma": self.gamma_gamma.as_dict(),
            "time_unit": self.time_unit,
            "horizon_days": self.horizon_days,
            "clv_months": self.clv_months,
            "discount_rate": self.discount_rate,
        }
        for key in ("purchase_log_covariance", "spend_log_covariance"):
            if getattr(self, key) is not None:  # JSON keeps every float exactly: predict draws what train drew
                data[key] = [list(row) for row in getattr(self, key)]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ValueModel:
        model = cls(
            purchase=_purchase_params(data["purchase_model"], data["purchase_params"]),
            gamma_gamma=spend_params_from_dict(data["gamma_gamma"]),
            time_unit=data["time_unit"],
            horizon_days=int(data["horizon_days"]),
            clv_months=int(data["clv_months"]),
            discount_rate=float(data["discount_rate"]),
        )
        return model.with_covariances(data.get("purchase_log_covariance"), data.get("spend_log_covariance"))


def _square(covariance, params: dict, what: str) -> tuple[tuple[float, ...], ...] | None:
    """``covariance`` as a tuple of rows of floats, checked to be ``len(params)`` square; None stays None."""
    if covariance is None:
        return None
    matrix = np.asarray(covariance, dtype=float)
    if matrix.shape != (len(params), len(params)):
        raise CrmvalueError(
            f"{what}_log_covariance has shape {matrix.shape}; the {what} parameters "
            f"{', '.join(params)} need ({len(params)}, {len(params)})"
        )
    return tuple(tuple(float(v) for v in row) for row in matrix)


def _purchase_params(name: str, values: dict) -> PurchaseParams:
    from crmvalue.models.registry import MODELS

    return MODELS[name].params_class(**values)
