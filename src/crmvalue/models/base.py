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
import warnings
from dataclasses import asdict, dataclass, fields, replace
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.special import gammaln, xlogy

from crmvalue.errors import CrmvalueError
from crmvalue.features import compress_rfm
from crmvalue.models.objective import RIDGE_LADDER, FitAttempt, best_rung, describe_boundary, not_interior


class PurchaseParams:
    """Mixin for the parameter dataclasses: name, serialisation and the shared interface.

    Subclasses implement the model's maths on a customer's continuous-time history ``(x, t_x, T)``:
    ``p_alive(x, t_x, T)``, ``expected_purchases(t, x, t_x, T)``,
    ``expected_purchases_unconditional(t)``, ``per_customer_log_likelihood(x, t_x, T)``,
    ``probability_of_n_purchases(t, n)`` (P(X(t) = n) for a new customer), and the simulators
    ``simulate_summary(T, seed)`` and ``draw_purchases(rng, T)``. ``time_scale_params`` names the
    parameters that are Gamma scales of a rate, which scale with the time unit.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    time_scale_params: ClassVar[tuple[str, ...]] = ("alpha",)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        """The parameters, in order (the dataclass fields, not the class variables)."""
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    def per_customer_log_likelihood(self, frequency, recency, T) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def p_alive(self, frequency, recency, T) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def expected_purchases_unconditional(self, t) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def probability_of_n_purchases(self, t, n) -> np.ndarray:  # pragma: no cover - abstract
        """P(X(t) = n): ``n`` repeat purchases by a new customer in ``(0, t]``; ``t`` and ``n`` broadcast."""
        raise NotImplementedError

    def simulate_summary(self, T, seed: int | None = None) -> pd.DataFrame:  # pragma: no cover - abstract
        """One customer drawn from the model per entry of ``T``: columns ``frequency, recency, T``."""
        raise NotImplementedError

    def draw_purchases(self, rng: np.random.Generator, T: np.ndarray) -> PurchaseDraws:  # pragma: no cover
        """Each customer's purchase window in ``(0, T]``, their purchases in it if they never dropped out,
        and how many of those they make before dropping out (for a transaction log)."""
        raise NotImplementedError

    def log_likelihood(self, frequency, recency, T, weights=None) -> float:
        """Total log-likelihood in the data's time unit."""
        ll = self.per_customer_log_likelihood(frequency, recency, T)
        w = np.ones_like(ll) if weights is None else np.asarray(weights, float)
        return float(np.sum(w * ll))

    def no_purchase_probability(self, t, frequency, recency, T) -> np.ndarray:
        """P(no purchase in ``(T, T + t]`` | x, t_x, T).

        A history ``(x, t_x, T)`` followed by no purchase in the next ``t`` is the history
        ``(x, t_x, T + t)``, so the probability is the ratio of their likelihoods. Time is in
        the unit of the parameters.
        """
        T_ = np.asarray(T, float)
        later = self.per_customer_log_likelihood(frequency, recency, T_ + np.asarray(t, float))
        return np.exp(later - self.per_customer_log_likelihood(frequency, recency, T_))

    def in_days(self, days_per_unit: float):
        """The same process with rates per day: the Gamma scales of the rates grow by ``days_per_unit``."""
        values = self.as_dict()
        return replace(self, **{k: values[k] * days_per_unit for k in self.time_scale_params})  # type: ignore[type-var]


@dataclass(frozen=True)
class PurchaseDraws:
    """What :meth:`PurchaseParams.draw_purchases` draws: per customer, the ``window`` (the purchases are
    uniform on ``(0, window]``), the number ``n`` of purchases in it, and the ``limit``: only the first
    ``min(n, limit)`` are made (the customer drops out right after purchase ``limit``)."""

    window: np.ndarray
    n: np.ndarray
    limit: np.ndarray


def negative_binomial_log_pmf(n, r, alpha, t):
    """log of Gamma(r+n) / (Gamma(r) n!) (alpha/(alpha+t))^r (t/(alpha+t))^n: Poisson-gamma counts."""
    return gammaln(r + n) - gammaln(r) - gammaln(n + 1) + r * np.log(alpha / (alpha + t)) + xlogy(n, t / (alpha + t))


class InformationCriteria:
    """AIC and BIC of a fitted model with ``n_params``, ``log_likelihood_`` and ``n_customers_``."""

    log_likelihood_: float
    n_customers_: int

    @property
    def n_params(self) -> int:  # pragma: no cover - every model says
        raise NotImplementedError

    @property
    def aic_(self) -> float:
        return 2 * self.n_params - 2 * self.log_likelihood_

    @property
    def bic_(self) -> float:
        return self.n_params * np.log(self.n_customers_) - 2 * self.log_likelihood_


class PurchaseModel(InformationCriteria):
    """Fits on the unique (frequency, recency, T) rows, weighted by their counts: with a lifetimes
    fitter by default, or with the model's own optimiser of the same objective (BG/NBD, MBG/NBD).

    A fit that does not end at an interior optimum (see :func:`crmvalue.models.objective.not_interior`:
    converged, every parameter in [1e-6, 1e6] in scaled time, a positive-definite Hessian, no
    log-parameter standard error above 4.5, finite predictions) is a boundary fit. It is refitted
    with each ridge ``lambda * sum(log-parameter ** 2)`` of ``RIDGE_LADDER``; of those that give an
    interior optimum, the one with the highest Laplace-approximated marginal likelihood is kept
    (the ridge is a Gaussian prior; see :func:`crmvalue.models.objective.log_evidence`). The ridge is
    centred at 1 in scaled time (the largest T is 1), so it stops parameters running off towards 0
    as well as towards infinity. The outcome is recorded in
    ``penalizer_used_`` (0.0 when no ridge was needed), ``boundary_`` (None, or why) and
    ``warning_`` (one line for the log). Only when no rung gives an interior optimum does the fit fail,
    with a one-line :class:`CrmvalueError`.

    Parameters
    ----------
    penalizer : float
        L2 penalty on the parameters, passed to lifetimes as ``penalizer_coef`` (the user's own
        choice, applied as lifetimes does; the fallback ridge comes on top of it, only when needed).
    """

    name: ClassVar[str]  # the registry and config name, e.g. "bgnbd"
    label: ClassVar[str]  # for people, e.g. "BG/NBD"
    family: ClassVar[str]  # the name :func:`crmvalue.diagnostics.model_family` gives, e.g. "bg_nbd"
    # the data the model is fitted on: "continuous" is one (frequency, recency, T) row per customer in
    # continuous time; discrete-time ("discrete": repeat transactions in n opportunities) and
    # contractual models declare their own kind and columns
    data_kind: ClassVar[str] = "continuous"
    data_columns: ClassVar[tuple[str, ...]] = ("frequency", "recency", "T")
    params_class: ClassVar[type[PurchaseParams]]
    boundary_pairs: ClassVar[dict] = {}

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    def lifetimes_twin(self):
        """The ``lifetimes`` fitter of the same model (with this penalizer): what the fit starts from or
        checks against, and what gets the fitted ``params_``."""
        raise NotImplementedError(f"{type(self).__name__} has no lifetimes twin")

    def _fit_lifetimes(self, fitter, rows: pd.DataFrame) -> None:
        fitter.fit(rows["frequency"], rows["recency"], rows["T"], weights=rows["weights"])

    def fit(self, frequency, recency, T, weights=None) -> PurchaseModel:
        """Fit on one row per customer, or on rows that each stand for ``weights`` customers."""
        label = self.label
        rows = compress_rfm(frequency, recency, T, weights)
        rows = rows[rows["weights"] > 0].reset_index(drop=True)
        if len(rows) == 0:
            raise CrmvalueError(f"{label}: no customers to fit")
        fitter = self.lifetimes_twin()
        attempts = [self._attempt(fitter, rows, 0.0)]
        why = self._not_interior(attempts[0], rows)
        if rows["frequency"].max() == 0:
            why = why or "no customer has a repeat purchase"
        attempt = attempts[0]
        if why is not None:
            attempts += [self._attempt(fitter, rows, ridge) for ridge in RIDGE_LADDER]
            interior = [a for a in attempts[1:] if self._not_interior(a, rows) is None]
            best = best_rung(interior, rows["weights"].sum())
            if best is None:
                raise self._not_converged(
                    f"{describe_boundary(attempts, self.boundary_pairs)}, and no ridge up to {RIDGE_LADDER[-1]:g} "
                    "on the log-parameters gives an interior optimum"
                )
            attempt = best
        self.penalizer_used_ = attempt.ridge
        if attempt.ridge == 0.0:
            self.boundary_ = None
            self.warning_ = None
        else:
            self.boundary_ = (
                "no customer has a repeat purchase, so the purchase rate goes to 0 and dropout is not identified"
                if rows["frequency"].max() == 0
                else describe_boundary(attempts, self.boundary_pairs)
            )
            self.warning_ = (
                f"{label}: boundary estimate ({self.boundary_}); refitted with a ridge of {attempt.ridge:g} on the "
                "log-parameters (of the ridges that give an interior optimum, the one the data support most)"
            )
        params = self.params_class(**attempt.values)
        fitter.params_ = pd.Series(attempt.values)
        self.fitter_ = fitter
        self.params_ = params
        self.n_customers_ = int(round(rows["weights"].sum()))
        self.n_patterns_ = len(rows)
        self.log_likelihood_ = attempt.log_likelihood
        cov = attempt.covariance
        assert cov is not None, "an interior optimum has a covariance"  # for the type checker: not_interior checks it
        self.log_param_covariance_ = cov
        values = np.array([attempt.values[n] for n in attempt.names])
        log_se = np.sqrt(np.diag(cov))
        self.standard_errors_ = pd.Series(values * log_se, index=list(attempt.names))  # delta method
        self.confidence_intervals_ = pd.DataFrame(
            {"lower": values * np.exp(-1.96 * log_se), "upper": values * np.exp(1.96 * log_se)},
            index=list(attempt.names),
        )
        return self

    def _attempt(self, fitter, rows: pd.DataFrame, ridge: float) -> FitAttempt:
        """One fit, with every failure of the optimiser (lifetimes' included) turned into a non-converged attempt."""
        from lifetimes.utils import ConvergenceError

        names = self.params_class.parameter_names()
        try:
            # lifetimes prints the optimiser state on failure; the boundary rule says it better
            with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                attempt = self._fit_compressed(fitter, rows, ridge)
                if attempt.converged and attempt.covariance is None:
                    attempt = replace(attempt, covariance=self._log_param_covariance(rows, attempt))
        except Exception as exc:  # noqa: BLE001 - any failure inside an optimiser is a fit that did not converge
            failure = "lifetimes did not converge" if isinstance(exc, ConvergenceError) else type(exc).__name__
            return FitAttempt(names, {}, np.full(len(names), np.nan), False, np.nan, None, ridge, failure)
        return attempt

    def _not_interior(self, attempt: FitAttempt, rows: pd.DataFrame) -> str | None:
        """The boundary rule, with the predictions on the fitted rows as its last check."""
        why = not_interior(attempt)
        if why is not None:
            return why
        params = self.params_class(**attempt.values)
        x, t_x, T_ = (rows[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        with np.errstate(all="ignore"):
            finite = (
                np.all(np.isfinite(params.p_alive(x, t_x, T_)))
                and np.all(np.isfinite(params.expected_purchases(T_.max(), x, t_x, T_)))
                and np.isfinite(attempt.log_likelihood)
            )
        return not_interior(attempt, predictions_finite=bool(finite))

    def _not_converged(self, why: str = "") -> CrmvalueError:
        detail = f": {why}" if why else ""
        return CrmvalueError(
            f"{self.label} did not converge (penalizer={self.penalizer}){detail}; "
            "set a larger penalizer, e.g. --penalizer 0.001 or model.penalizer in the config"
        )

    def _fit_compressed(self, fitter, rows: pd.DataFrame, ridge: float = 0.0) -> FitAttempt:
        """One optimisation of the model's objective (plus ``ridge`` on the log-parameters in scaled time).

        This default fits ``fitter`` itself (no ridge: a subclass that needs the ridge overrides
        this); the covariance is then left ``None`` and computed numerically by the caller.
        """
        self._fit_lifetimes(fitter, rows)
        values = {k: float(v) for k, v in fitter.params_.items()}
        names = tuple(values)
        theta = np.log(np.array(list(values.values())))
        scale = 1.0 / rows["T"].max()
        scaled = self.params_class.time_scale_params
        theta = theta + np.array([np.log(scale) if n in scaled else 0.0 for n in names])
        params = self.params_class(**values)
        ll = params.log_likelihood(rows["frequency"], rows["recency"], rows["T"], rows["weights"])
        return FitAttempt(names, values, theta, bool(np.all(np.isfinite(theta))), ll, None, ridge)

    def _log_param_covariance(self, rows: pd.DataFrame, attempt: FitAttempt) -> np.ndarray:
        """Asymptotic covariance of the log-parameters: the inverse observed information, plus the ridge's."""
        params = self.params_class(**attempt.values)
        information = -_numerical_log_likelihood_hessian(params, rows)
        information = information + 2 * attempt.ridge * rows["weights"].sum() * np.eye(len(information))
        with np.errstate(all="ignore"):
            try:
                return np.linalg.inv(information)
            except np.linalg.LinAlgError:
                return np.full(information.shape, np.nan)

    # predictions under lifetimes' names, so code written for lifetimes works unchanged
    def conditional_probability_alive(self, frequency, recency, T) -> np.ndarray:
        return self.params_.p_alive(frequency, recency, T)

    def conditional_expected_number_of_purchases_up_to_time(self, t, frequency, recency, T) -> np.ndarray:
        return self.params_.expected_purchases(t, frequency, recency, T)

    def expected_number_of_purchases_up_to_time(self, t) -> np.ndarray:
        return self.params_.expected_purchases_unconditional(t)

    def probability_of_n_purchases_up_to_time(self, t, n) -> np.ndarray:
        return self.params_.probability_of_n_purchases(t, n)

    def conditional_probability_of_no_purchase(self, t, frequency, recency, T) -> np.ndarray:
        """P(no purchase in the next ``t`` | x, t_x, T)."""
        return self.params_.no_purchase_probability(t, frequency, recency, T)

    @property
    def n_params(self) -> int:
        return len(self.params_.as_dict())


def _numerical_log_likelihood_hessian(params: PurchaseParams, rows: pd.DataFrame, step: float = 1e-4) -> np.ndarray:
    """Hessian of the total log-likelihood in log-parameters, by central differences."""
    names = list(params.as_dict())
    theta = np.log(np.array(list(params.as_dict().values())))
    args = (rows["frequency"].to_numpy(), rows["recency"].to_numpy(), rows["T"].to_numpy(), rows["weights"].to_numpy())

    def ll(log_theta):
        return type(params)(**dict(zip(names, np.exp(log_theta)))).log_likelihood(*args)

    k = len(theta)
    hessian = np.empty((k, k))
    eye = np.eye(k) * step
    with np.errstate(all="ignore"):
        for i in range(k):
            for j in range(i, k):
                value = (
                    ll(theta + eye[i] + eye[j])
                    - ll(theta + eye[i] - eye[j])
                    - ll(theta - eye[i] + eye[j])
                    + ll(theta - eye[i] - eye[j])
                ) / (4 * step * step)
                hessian[i, j] = hessian[j, i] = value
    return hessian


def _numerical_log_param_covariance(params: PurchaseParams, rows: pd.DataFrame, step: float = 1e-4) -> np.ndarray:
    """Inverse of the negative Hessian of the total log-likelihood in log-parameters, by central differences."""
    with np.errstate(all="ignore"):
        return np.linalg.inv(-_numerical_log_likelihood_hessian(params, rows, step))
