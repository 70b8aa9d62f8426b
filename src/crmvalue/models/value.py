"""Customer value: BG/NBD purchases + Gamma-Gamma spend = discounted CLV.

:class:`ValueModel` is the fitted, serialisable unit that scores an RFM summary. It holds
only parameters and settings (plain JSON), so the MLflow pyfunc rebuilds it from an artifact
instead of unpickling live objects. A model fitted with time-invariant covariates also holds their
coefficients and their coding (:class:`CovariateCoding`), and scores each customer with her own
parameters, from her row of the customer table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from crmvalue.discrete import DAYS_PER_PERIOD, ModelUnit
from crmvalue.errors import CrmvalueError
from crmvalue.features import DAYS_PER_UNIT, SUMMARY_COLUMNS
from crmvalue.models.base import PurchaseParams
from crmvalue.models.coding import CovariateCoding
from crmvalue.models.gamma_gamma import GammaGammaParams, SpendParams, expected_average_value, spend_params_from_dict

# lifetimes' month in each time unit (utils._customer_lifetime_value: 30 days, 4.345 weeks)
MONTH_LENGTH = {"days": 30.0, "weeks": 4.345} | {p: DAYS_PER_PERIOD["month"] / d for p, d in DAYS_PER_PERIOD.items()}
PREDICTION_COLUMNS = ["p_alive", "expected_purchases", "expected_avg_value", "expected_revenue", "clv"]
_CHUNK = 1_000_000  # customers per block in the CLV grid, to bound memory at any scale


def discounted_purchases(
    purchase: PurchaseParams,
    frequency,
    recency,
    T,
    months: int = 12,
    discount_rate: float = 0.01,
    time_unit: ModelUnit = "days",
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
        params = purchase if x.shape[-1] <= _CHUNK else params_block(purchase, block, x.shape[-1])
        cumulative = params.expected_purchases(grid, x[block], t_x[block], T_[block])
        out[..., block] = np.tensordot(discount, np.diff(cumulative, axis=0), axes=1)
    return out


def params_block(purchase: PurchaseParams, block: slice, n: int) -> PurchaseParams:
    """``purchase`` with its per-customer parameters (arrays of ``n`` values, covariates) cut to ``block``."""
    values: dict = purchase.as_dict()
    cut = {k: np.asarray(v)[..., block] for k, v in values.items() if np.ndim(v) and np.shape(v)[-1] == n}
    return replace(purchase, **cut) if cut else purchase  # type: ignore[type-var]


def discounted_unconditional_purchases(
    purchase: PurchaseParams, n: int, months: int = 12, discount_rate: float = 0.01, time_unit: ModelUnit = "days"
) -> np.ndarray:
    """:func:`discounted_purchases` of ``n`` customers acquired now: ``sum_m (E[X(m)] - E[X(m-1)]) / (1 + d)^m``
    with the unconditional (prospective) expectation ``E[X(t)]`` of each customer's parameters."""
    grid = MONTH_LENGTH[time_unit] * np.arange(months + 1, dtype=float).reshape(-1, 1)
    discount = (1.0 + discount_rate) ** -np.arange(1, months + 1, dtype=float)
    cumulative = np.broadcast_to(purchase.expected_purchases_unconditional(grid), (months + 1, n))
    return np.tensordot(discount, np.diff(cumulative, axis=0), axes=1)


def continuous_discount_rate(discount_rate: float, time_unit: ModelUnit) -> float:
    """The continuous rate per time unit equal to ``discount_rate`` per month (clv.discount_rate): ``delta =
    log(1 + d) / month`` (a month is 30 days or 4.345 weeks), so ``exp(-delta month) = 1 / (1 + d)``, as the CLV
    discounts; weeks at d = 0.01: delta = 0.00229. In a period (BG/BB, whose DERT discounts opportunity k by
    (1 + d_period)^-k, FHS eq. 14) the same discounting as the discrete rate per period, exp(delta) - 1."""
    delta = float(np.log1p(discount_rate) / MONTH_LENGTH[time_unit])
    return float(np.expm1(delta)) if time_unit in DAYS_PER_PERIOD else delta


def customer_lifetime_value(
    purchase: PurchaseParams,
    frequency,
    recency,
    T,
    expected_avg_value,
    months: int = 12,
    discount_rate: float = 0.01,
    time_unit: ModelUnit = "days",
) -> np.ndarray:
    """Discounted CLV as lifetimes defines it (``GammaGammaFitter.customer_lifetime_value``):
    ``E[M] * sum_{m=1..months} (E[Y(m)] - E[Y(m-1)]) / (1 + d)^m``."""
    return np.asarray(expected_avg_value, float) * discounted_purchases(
        purchase, frequency, recency, T, months, discount_rate, time_unit
    )


def unique_rows(columns: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of ``columns`` (equal-length 1-D arrays) as columns, and each row's index among them:
    :func:`unique_patterns` over any columns (covariates too)."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    size = 1
    for column in columns:
        codes, uniques = pd.factorize(column, use_na_sentinel=False)
        if size * max(len(uniques), 1) >= 2**62:  # many distinct values: exact, by sorting
            unique, inverse = np.unique(np.column_stack(columns), axis=0, return_inverse=True)
            return list(unique.T), inverse.reshape(-1)
        key = key * max(len(uniques), 1) + codes
        size *= max(len(uniques), 1)
    inverse, first = _first_occurrences(key)
    return [c[first] for c in columns], inverse


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

    With covariates, ``purchase`` holds the reference customer's parameters (every covariate 0), ``covariates``
    the coding and ``gamma_purchase``, ``gamma_dropout`` the coefficients in the order of ``covariates.names``;
    each customer is scored with her own parameters (the covariate model's ``customer_params``). Saved models
    without them load as before. A Pareto/NBD or BG/BB model adds ``dert`` (their ``dert``).
    """

    purchase: PurchaseParams
    gamma_gamma: SpendParams
    time_unit: ModelUnit
    horizon_days: int
    clv_months: int
    discount_rate: float
    purchase_log_covariance: tuple[tuple[float, ...], ...] | None = None
    spend_log_covariance: tuple[tuple[float, ...], ...] | None = None
    covariates: CovariateCoding | None = None
    gamma_purchase: tuple[float, ...] = ()
    gamma_dropout: tuple[float, ...] = ()
    gamma_spend: tuple[float, ...] = ()  # Gamma-Gamma's, on log v (crmvalue.models.gamma_gamma_covariates)

    def with_covariances(self, purchase_log_covariance, spend_log_covariance) -> ValueModel:
        """This model carrying the fits' log-parameter covariances (square arrays; None leaves one unknown)."""
        return replace(
            self,
            purchase_log_covariance=_square(purchase_log_covariance, self.purchase.as_dict(), "purchase"),
            spend_log_covariance=_square(spend_log_covariance, self.gamma_gamma.as_dict(), "spend"),
        )

    def with_covariates(self, coding: CovariateCoding, gamma_purchase, gamma_dropout, gamma_spend=()) -> ValueModel:
        """This model scoring with covariates coded by ``coding`` and these coefficients."""
        gp, gd, gs = (tuple(float(v) for v in np.ravel(g)) for g in (gamma_purchase, gamma_dropout, gamma_spend))
        if (len(gp), len(gd), len(gs)) != tuple(len(coding.names(r)) for r in ("purchase", "dropout", "spend")):
            raise CrmvalueError(f"{len(gp)} + {len(gd)} + {len(gs)} coefficients do not fit the covariates of {coding}")
        if gs and not isinstance(self.gamma_gamma, GammaGammaParams):
            raise CrmvalueError("spend covariates need a fitted Gamma-Gamma, not the mean-spend fallback")
        return replace(self, covariates=coding, gamma_purchase=gp, gamma_dropout=gd, gamma_spend=gs)

    def spend_params(self, zs: np.ndarray) -> SpendParams:
        """Gamma-Gamma's parameters of customers with coded spend covariates ``zs`` (n x k_s): ``v`` per customer;
        without spend covariates, the one fit's."""
        if not self.gamma_spend:
            return self.gamma_gamma
        from crmvalue.models.gamma_gamma_covariates import own_params

        assert isinstance(self.gamma_gamma, GammaGammaParams)  # with_covariates refuses the fallback
        return own_params(self.gamma_gamma, np.array(self.gamma_spend), zs)

    @property
    def horizon(self) -> float:
        """The purchase horizon in the model's time unit."""
        return self.horizon_days / {**DAYS_PER_UNIT, **DAYS_PER_PERIOD}[self.time_unit]

    @property
    def has_dert(self) -> bool:
        """Whether predictions carry ``dert``: Pareto/NBD, at a positive discount rate (undiscounted it may be infinite)."""
        return self.purchase.name in ("paretonbd", "bgbb") and self.discount_rate > 0

    def customer_params(self, zp: np.ndarray, zd: np.ndarray) -> PurchaseParams:
        """Each customer's parameters from her coded covariates (n x k_p, n x k_d)."""
        from crmvalue.models.covariate_models import covariate_model_class

        model = covariate_model_class(self.purchase.name)  # the covariate model's own parameterisation
        return model.own_params(self.purchase, np.array(self.gamma_purchase), np.array(self.gamma_dropout), zp, zd)

    def predict(
        self, summary: pd.DataFrame, customers: pd.DataFrame | None = None, source: str = "the customer table"
    ) -> pd.DataFrame:
        """Score an RFM summary (``frequency, recency, T, monetary_value``), index kept. With covariates,
        ``customers`` is the customer table (indexed by customer id, ``source`` names it in errors)."""
        missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
        if missing:
            raise ValueError(f"summary is missing columns {missing}")
        x = summary["frequency"].to_numpy(float)
        t_x = summary["recency"].to_numpy(float)
        T_ = summary["T"].to_numpy(float)
        zs = np.zeros((len(x), 0))
        params = self.purchase
        if self.covariates is None or not self.covariates.purchase_process:
            ux, ut, uT, inverse = unique_patterns(x, t_x, T_)
            if self.covariates is not None:
                zs = self.covariates.all_matrices(customers, summary.index, source)[2]
        else:  # patterns of history and covariates: categorical covariates still compress
            zp, zd, zs = self.covariates.all_matrices(customers, summary.index, source)
            columns, inverse = unique_rows([x, t_x, T_, *zp.T, *zd.T])
            ux, ut, uT = columns[:3]
            k = zp.shape[1]
            rows = np.column_stack(columns[3:]) if len(columns) > 3 else np.zeros((len(ux), 0))
            params = self.customer_params(rows[:, :k], rows[:, k:])
        spend = expected_average_value(self.spend_params(zs), x, summary["monetary_value"].to_numpy(float))
        discounted = discounted_purchases(params, ux, ut, uT, self.clv_months, self.discount_rate, self.time_unit)
        purchases = params.expected_purchases(self.horizon, ux, ut, uT)[inverse]
        frame = pd.DataFrame(
            {
                "p_alive": params.p_alive(ux, ut, uT)[inverse],
                "expected_purchases": purchases,
                "expected_avg_value": spend,
                # undiscounted revenue over the horizon: E[purchases] x E[spend] (Gamma-Gamma is independent of them)
                "expected_revenue": purchases * spend,
                "clv": spend * discounted[inverse],
            },
            index=summary.index,
        )
        if self.has_dert:
            delta = continuous_discount_rate(self.discount_rate, self.time_unit)
            frame["dert"] = params.dert(delta, ux, ut, uT)[inverse]  # type: ignore[attr-defined]
        return frame

    def predict_new(
        self, ids: pd.Index, customers: pd.DataFrame | None = None, source: str = "the customer table"
    ) -> pd.DataFrame:
        """The prospective expectation for customers acquired today (no history), indexed by ``ids``: P(alive) 1,
        the unconditional expected purchases over the horizon (``expected_purchases_unconditional``) and their
        discounted monthly sum for the CLV, at the population mean spend (Gamma-Gamma's ``p v / (q - 1)``, or
        the mean-spend fallback). With covariates, each customer's own parameters from ``customers``."""
        n = len(ids)
        params, zs = self.purchase, np.zeros((n, 0))
        if self.covariates is not None:
            zp, zd, zs = self.covariates.all_matrices(customers, ids, source)
            if self.covariates.purchase_process:
                params = self.customer_params(zp, zd)
        # x = 0: the population mean spend (with spend covariates, of the customer's own v)
        spend = np.broadcast_to(expected_average_value(self.spend_params(zs), np.zeros(n), np.zeros(n)), (n,))
        purchases = np.broadcast_to(params.expected_purchases_unconditional(self.horizon), (n,)).astype(float)
        discounted = discounted_unconditional_purchases(params, n, self.clv_months, self.discount_rate, self.time_unit)
        frame = pd.DataFrame(
            {
                "p_alive": np.ones(n),
                "expected_purchases": purchases,
                "expected_avg_value": spend,
                "expected_revenue": purchases * spend,
                "clv": spend * discounted,
            },
            index=ids,
        )
        if self.has_dert:
            zero, delta = np.zeros(n), continuous_discount_rate(self.discount_rate, self.time_unit)
            with np.errstate(divide="ignore"):  # at T = 0 the likelihood's second term is exp(-inf)
                frame["dert"] = params.dert(delta, zero, zero, zero)  # type: ignore[attr-defined]
        return frame

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
        if self.covariates is not None:
            saved: dict = {
                **self.covariates.to_dict(),
                "gamma_purchase": list(self.gamma_purchase),
                "gamma_dropout": list(self.gamma_dropout),
            }
            if self.gamma_spend:  # a model without spend covariates keeps its file as before
                saved["gamma_spend"] = list(self.gamma_spend)
            data["covariates"] = saved
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
        model = model.with_covariances(data.get("purchase_log_covariance"), data.get("spend_log_covariance"))
        if "covariates" in data:
            saved = data["covariates"]
            model = model.with_covariates(
                CovariateCoding.from_dict(saved),
                saved["gamma_purchase"],
                saved["gamma_dropout"],
                saved.get("gamma_spend", ()),
            )
        return model


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
