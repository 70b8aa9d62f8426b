"""Customer value: BG/NBD purchases + Gamma-Gamma spend = discounted CLV.

:class:`ValueModel` is the fitted, serialisable unit that scores an RFM summary. It holds
only parameters and settings (plain JSON), so the MLflow pyfunc rebuilds it from an artifact
instead of unpickling live objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crmvalue.features import DAYS_PER_UNIT, SUMMARY_COLUMNS, TimeUnit
from crmvalue.models.base import PurchaseParams
from crmvalue.models.gamma_gamma import GammaGammaParams, expected_average_value

# lifetimes' month in each time unit (utils._customer_lifetime_value: 30 days, 4.345 weeks)
MONTH_LENGTH = {"days": 30.0, "weeks": 4.345}
PREDICTION_COLUMNS = ["p_alive", "expected_purchases", "expected_avg_value", "clv"]
_CHUNK = 1_000_000  # customers per block in the CLV grid, to bound memory at any scale


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
    """Discounted CLV as lifetimes defines it (``GammaGammaFitter.customer_lifetime_value``).

    ``sum_{m=1..months} E[M] * (E[Y(m)] - E[Y(m-1)]) / (1 + d)^m``, with a month of 30 days
    (or 4.345 weeks), evaluated on a months x customers grid instead of lifetimes' loop.
    """
    x = np.asarray(frequency, float)
    t_x = np.asarray(recency, float)
    T_ = np.asarray(T, float)
    value = np.asarray(expected_avg_value, float)
    grid = MONTH_LENGTH[time_unit] * np.arange(months + 1, dtype=float)[:, None]
    discount = (1.0 + discount_rate) ** -np.arange(1, months + 1, dtype=float)
    out = np.empty_like(x)
    for start in range(0, len(x), _CHUNK):
        block = slice(start, start + _CHUNK)
        cumulative = purchase.expected_purchases(grid, x[block], t_x[block], T_[block])
        out[block] = value[block] * (discount @ np.diff(cumulative, axis=0))
    return out


@dataclass(frozen=True)
class ValueModel:
    """Fitted purchase-model (BG/NBD, MBG/NBD or Pareto/NBD) and Gamma-Gamma parameters, with the horizons used to score."""

    purchase: PurchaseParams
    gamma_gamma: GammaGammaParams
    time_unit: TimeUnit
    horizon_days: int
    clv_months: int
    discount_rate: float

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
        out = pd.DataFrame(
            {
                "p_alive": self.purchase.p_alive(x, t_x, T_),
                "expected_purchases": self.purchase.expected_purchases(self.horizon, x, t_x, T_),
                "expected_avg_value": spend,
                "clv": customer_lifetime_value(
                    self.purchase, x, t_x, T_, spend, self.clv_months, self.discount_rate, self.time_unit
                ),
            },
            index=summary.index,
        )
        return out

    def to_dict(self) -> dict:
        return {
            "purchase_model": self.purchase.name,
            "purchase_params": self.purchase.as_dict(),
            "gamma_gamma": self.gamma_gamma.as_dict(),
            "time_unit": self.time_unit,
            "horizon_days": self.horizon_days,
            "clv_months": self.clv_months,
            "discount_rate": self.discount_rate,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ValueModel":
        return cls(
            purchase=_purchase_params(data["purchase_model"], data["purchase_params"]),
            gamma_gamma=GammaGammaParams(**data["gamma_gamma"]),
            time_unit=data["time_unit"],
            horizon_days=int(data["horizon_days"]),
            clv_months=int(data["clv_months"]),
            discount_rate=float(data["discount_rate"]),
        )


def _purchase_params(name: str, values: dict) -> PurchaseParams:
    from crmvalue.models import PURCHASE_PARAMS

    return PURCHASE_PARAMS[name](**values)
