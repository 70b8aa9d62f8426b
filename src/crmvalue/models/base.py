"""What the BTYD purchase models share: a fit on compressed rows, clear failures,
standard errors, information criteria, and lifetimes' method names for predictions.

Each model module defines a frozen ``*Params`` dataclass that holds the fitted parameters and
computes the predictions (so a fitted model serialises as plain JSON), and a ``*Model``
estimator that fits them. Estimators follow the scikit-learn contract: ``__init__`` stores
its arguments, ``fit`` returns ``self``, learned state ends in ``_``.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict
from typing import ClassVar

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError
from crmvalue.features import compress_rfm


class PurchaseParams:
    """Mixin for the parameter dataclasses: name, serialisation and the shared interface.

    Subclasses implement ``p_alive(x, t_x, T)``, ``expected_purchases(t, x, t_x, T)``,
    ``expected_purchases_unconditional(t)`` and ``log_likelihood(x, t_x, T, weights)``.
    """

    name: ClassVar[str]
    label: ClassVar[str]

    def as_dict(self) -> dict[str, float]:
        return asdict(self)  # type: ignore[call-overload]

    def per_customer_log_likelihood(self, frequency, recency, T) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_likelihood(self, frequency, recency, T, weights=None) -> float:
        """Total log-likelihood in the data's time unit."""
        ll = self.per_customer_log_likelihood(frequency, recency, T)
        w = np.ones_like(ll) if weights is None else np.asarray(weights, float)
        return float(np.sum(w * ll))


class PurchaseModel:
    """Fits on the unique (frequency, recency, T) rows, weighted by their counts: with a lifetimes
    fitter by default, or with the model's own optimiser of the same objective (BG/NBD, MBG/NBD).

    Parameters
    ----------
    penalizer : float
        L2 penalty on the parameters, passed to lifetimes as ``penalizer_coef``. Raise it
        (e.g. 0.001) when the fit does not converge.
    """

    params_class: ClassVar[type]
    fitter_name: ClassVar[str]

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    @property
    def name(self) -> str:
        return self.params_class.name

    def _fit_lifetimes(self, fitter, rows: pd.DataFrame) -> None:
        fitter.fit(rows["frequency"], rows["recency"], rows["T"], weights=rows["weights"])

    def fit(self, frequency, recency, T, weights=None) -> "PurchaseModel":
        """Fit on one row per customer, or on rows that each stand for ``weights`` customers."""
        import lifetimes
        from lifetimes.utils import ConvergenceError

        label = self.params_class.label
        rows = compress_rfm(frequency, recency, T, weights)
        if len(rows) == 0:
            raise CrmvalueError(f"{label}: no customers to fit")
        if rows["frequency"].max() == 0:
            raise CrmvalueError(f"{label}: no customer has a repeat purchase, so the model cannot be fitted")
        fitter = getattr(lifetimes, self.fitter_name)(penalizer_coef=self.penalizer)
        try:
            # lifetimes prints the optimiser state on failure; the error below says it better
            with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
                values, log_likelihood, hessian = self._fit_compressed(fitter, rows)
        except ConvergenceError:
            raise self._not_converged() from None
        params = self.params_class(**{k: float(v) for k, v in values.items()})
        if not all(np.isfinite(v) and v > 0 for v in params.as_dict().values()):
            raise CrmvalueError(f"{label} gave invalid parameters {params}; set a larger penalizer")
        self.fitter_ = fitter
        self.params_ = params
        self.n_customers_ = int(rows["weights"].sum())
        self.n_patterns_ = len(rows)
        if log_likelihood is None:
            log_likelihood = params.log_likelihood(rows["frequency"], rows["recency"], rows["T"], rows["weights"])
        self.log_likelihood_ = log_likelihood
        cov = self._log_param_covariance(rows, hessian)
        if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) <= 0):
            raise self._not_converged("the likelihood is flat or not at a maximum")
        self.log_param_covariance_ = cov
        values = np.array(list(params.as_dict().values()))
        se = values * np.sqrt(np.diag(cov))  # delta method from log-parameters
        names = list(params.as_dict())
        self.standard_errors_ = pd.Series(se, index=names)
        self.confidence_intervals_ = pd.DataFrame(
            {"lower": values * np.exp(-1.96 * np.sqrt(np.diag(cov))), "upper": values * np.exp(1.96 * np.sqrt(np.diag(cov)))},
            index=names,
        )
        return self

    def _not_converged(self, why: str = "") -> CrmvalueError:
        detail = f": {why}" if why else ""
        return CrmvalueError(
            f"{self.params_class.label} did not converge (penalizer={self.penalizer}){detail}; "
            "set a larger penalizer, e.g. --penalizer 0.001 or model.penalizer in the config"
        )

    def _fit_compressed(self, fitter, rows: pd.DataFrame) -> tuple[dict[str, float], float | None, np.ndarray | None]:
        """Parameters, total log-likelihood (None: compute it from them) and lifetimes' Hessian (None: numerical).

        This default fits ``fitter`` itself; a subclass with its own optimiser leaves ``fitter``
        unfitted apart from ``params_``, raises ``self._not_converged()`` when it fails, and
        returns the Hessian of lifetimes' objective (mean negative log-likelihood plus penalty,
        in log-parameters).
        """
        self._fit_lifetimes(fitter, rows)
        return dict(fitter.params_), None, getattr(fitter, "_hessian_", None)

    def _log_param_covariance(self, rows: pd.DataFrame, hessian: np.ndarray | None = None) -> np.ndarray:
        """Asymptotic covariance of the log-parameters: the inverse observed information."""
        if hessian is not None:
            # the Hessian of lifetimes' mean negative log-likelihood in log-parameters;
            # rescaling time only shifts log(alpha), so the Hessian is the same in our units
            with np.errstate(all="ignore"):
                return np.linalg.inv(np.asarray(hessian, float)) / rows["weights"].sum()
        return _numerical_log_param_covariance(self.params_, rows)

    # predictions under lifetimes' names, so code written for lifetimes works unchanged
    def conditional_probability_alive(self, frequency, recency, T) -> np.ndarray:
        return self.params_.p_alive(frequency, recency, T)

    def conditional_expected_number_of_purchases_up_to_time(self, t, frequency, recency, T) -> np.ndarray:
        return self.params_.expected_purchases(t, frequency, recency, T)

    def expected_number_of_purchases_up_to_time(self, t) -> np.ndarray:
        return self.params_.expected_purchases_unconditional(t)

    def probability_of_n_purchases_up_to_time(self, t, n):
        return self.fitter_.probability_of_n_purchases_up_to_time(t, n)

    @property
    def n_params(self) -> int:
        return len(self.params_.as_dict())

    @property
    def aic_(self) -> float:
        return 2 * self.n_params - 2 * self.log_likelihood_

    @property
    def bic_(self) -> float:
        return self.n_params * np.log(self.n_customers_) - 2 * self.log_likelihood_


def _numerical_log_param_covariance(params: PurchaseParams, rows: pd.DataFrame, step: float = 1e-4) -> np.ndarray:
    """Inverse of the negative Hessian of the total log-likelihood in log-parameters, by central differences."""
    names = list(params.as_dict())
    theta = np.log(np.array(list(params.as_dict().values())))
    args = (rows["frequency"].to_numpy(), rows["recency"].to_numpy(), rows["T"].to_numpy(), rows["weights"].to_numpy())

    def ll(log_theta):
        return type(params)(**dict(zip(names, np.exp(log_theta)))).log_likelihood(*args)

    k = len(theta)
    hessian = np.empty((k, k))
    eye = np.eye(k) * step
    for i in range(k):
        for j in range(i, k):
            value = (
                ll(theta + eye[i] + eye[j]) - ll(theta + eye[i] - eye[j]) - ll(theta - eye[i] + eye[j]) + ll(theta - eye[i] - eye[j])
            ) / (4 * step * step)
            hessian[i, j] = hessian[j, i] = value
    with np.errstate(all="ignore"):
        return np.linalg.inv(-hessian)
