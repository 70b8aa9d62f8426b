"""Gamma-Gamma spend model: lifetimes' objective with an analytic gradient and Hessian; predictions vectorised.

References
----------
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "RFM and CLV: Using Iso-Value Curves
for Customer Base Analysis", Journal of Marketing Research 42 (4), 415-430.
Fader and Hardie (2013), "The Gamma-Gamma Model of Monetary Value",
http://brucehardie.com/notes/025/.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError
from crmvalue.models.objective import (
    RIDGE_LADDER,
    FitAttempt,
    NewtonObjective,
    best_rung,
    describe_boundary,
    not_interior,
    solve,
)


@dataclass(frozen=True)
class GammaGammaParams:
    """Spend per transaction ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    p: float
    q: float
    v: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def population_mean(self) -> float:
        """E[M] = p v / (q - 1), the expected spend of a customer with no repeat purchases."""
        return self.p * self.v / (self.q - 1)


@dataclass(frozen=True)
class MeanSpendParams:
    """The degraded spend model of too few repeat buyers: every customer's expected spend is ``mean_spend``."""

    mean_spend: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def population_mean(self) -> float:
        return self.mean_spend


SpendParams = GammaGammaParams | MeanSpendParams


def spend_params_from_dict(values: dict) -> SpendParams:
    """The spend parameters saved by ``as_dict``: Gamma-Gamma's ``p, q, v`` or the fallback's ``mean_spend``."""
    if set(values) == {"mean_spend"}:
        return MeanSpendParams(**values)
    return GammaGammaParams(**values)


def expected_average_value(params: SpendParams, frequency, monetary_value) -> np.ndarray:
    """E[M | x, m_x], Fader-Hardie (2013) eq. (5): a weighted mean of m_x and the population mean.

    With ``x = 0`` it is the population mean, so one-time buyers get the population's spend.
    For :class:`MeanSpendParams` it is the mean spend for everyone.
    """
    x = np.asarray(frequency, float)
    if isinstance(params, MeanSpendParams):
        return np.asarray(params.mean_spend, float) * np.ones_like(x)
    p, q, v = params.p, params.q, params.v
    m = np.where(x > 0, np.asarray(monetary_value, float), 0.0)
    return (p * (v + x * m)) / (p * x + q - 1)


class GammaGammaObjective(NewtonObjective):
    """``lifetimes.GammaGammaFitter``'s objective, with its analytic gradient and Hessian.

    The weighted mean negative log-likelihood in ``theta = log(p, q, v)`` plus
    ``penalizer * sum(exp(theta) ** 2)`` (Fader and Hardie 2013, eq. 1a)::

        l = lgG(px+q) - lgG(px) - lgG(q) + q log v + (px-1) log m + px log x - (px+q) log(v + x m)

    with ``dl/dp = x (psi(px+q) - psi(px) + log(x m) - log(v + x m))``,
    ``dl/dq = psi(px+q) - psi(q) + log v - log(v + x m)`` and ``dl/dv = q/v - (px+q)/(v + x m)``;
    the second derivatives follow with trigamma. In log-parameters ``g_theta = phi * g_phi`` and
    ``H_theta = diag(phi) H_phi diag(phi) + diag(phi * g_phi)``.

    The special functions depend on ``x`` alone, so they are evaluated once per distinct ``x``
    (a few hundred) with the total weight of its rows; per row, each evaluation takes one
    logarithm and one division. No compression of (x, m) pairs is needed.
    """

    def __init__(self, frequency, monetary_value, weights, penalizer: float = 0.0):
        x, m, w = (np.asarray(a, float) for a in (frequency, monetary_value, weights))
        self.x, self.m, self.w, self.penalizer = x, m, w, penalizer
        self.W = w.sum()
        codes, self.ux = pd.factorize(x)
        self.ux = np.asarray(self.ux, float)
        self.w_x = np.bincount(codes, w, len(self.ux))  # total weight per distinct x
        self.wx = w * x
        self.s_log_m, self.s_x_log_m = w @ np.log(m), self.wx @ np.log(m)
        self.s_x_log_x = self.wx @ np.log(x)

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        from scipy.special import digamma, gammaln, polygamma

        phi = np.exp(theta)
        p, q, v = phi
        W, ux, w_x, w, wx = self.W, self.ux, self.w_x, self.w, self.wx
        px, a = p * ux, p * ux + q  # per distinct x
        vxm = v + self.x * self.m
        log_vxm, inv = np.log(vxm), 1.0 / vxm
        s_log, s_x_log = w @ log_vxm, wx @ log_vxm
        s_inv, s_x_inv = w @ inv, wx @ inv
        s_inv2, s_x_inv2 = w @ (inv * inv), wx @ (inv * inv)
        psi_a, tri_a, tri_px = digamma(a), polygamma(1, a), polygamma(1, px)
        ll = (
            w_x @ (gammaln(a) - gammaln(px))
            + p * self.s_x_log_m
            - self.s_log_m
            + p * self.s_x_log_x
            - p * s_x_log
            - q * s_log
            + W * (q * np.log(v) - gammaln(q))
        )
        grad = np.array(
            [
                (w_x * ux) @ (psi_a - digamma(px)) + self.s_x_log_m + self.s_x_log_x - s_x_log,
                w_x @ psi_a - s_log + W * (np.log(v) - digamma(q)),
                W * q / v - (p * s_x_inv + q * s_inv),
            ]
        )
        h_pq = (w_x * ux) @ tri_a
        hess = np.array(
            [
                [(w_x * ux * ux) @ (tri_a - tri_px), h_pq, -s_x_inv],
                [h_pq, w_x @ tri_a - W * polygamma(1, q), W / v - s_inv],
                [-s_x_inv, W / v - s_inv, -W * q / v**2 + p * s_x_inv2 + q * s_inv2],
            ]
        )
        # to the mean negative log-likelihood in log-parameters, with the penalty
        g_theta = phi * grad
        c = self.penalizer
        f = -ll / W + c * (phi**2).sum()
        g = -g_theta / W + 2 * c * phi**2
        H = -(np.outer(phi, phi) * hess + np.diag(g_theta)) / W + np.diag(4 * c * phi**2)
        return float(f), g, H


class _FixedQObjective(NewtonObjective):
    """``GammaGammaObjective`` in ``log(p, v)`` with ``q`` held at ``exp(log_q)``."""

    def __init__(self, full: GammaGammaObjective, log_q: float):
        self.full, self.log_q = full, log_q

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        value, gradient, hessian = self.full._evaluate(np.array([theta[0], self.log_q, theta[1]]))
        return value, gradient[[0, 2]], hessian[np.ix_([0, 2], [0, 2])]


# the start, relative to the centre (p = 1, q = Q_FLOOR, v = mean spend): lifetimes starts every log-parameter at 0.1
START_OFFSET = np.full(3, 0.1)
# q below this is fitted at it: the constrained maximum-likelihood estimate on q >= Q_FLOOR. Below q = 1 the
# mean spend p v / (q - 1) is undefined; between 1 and 2 it exists but customers' mean spend has infinite variance
Q_FLOOR = 2.0
# with fewer repeat buyers with positive spend, every customer's expected spend is the observed mean spend
MIN_REPEAT_BUYERS = 10
_NAMES = ("p", "q", "v")


class GammaGammaModel:
    """Gamma-Gamma on repeat buyers: lifetimes' ``GammaGammaFitter`` objective, fitted with its analytic
    gradient and Hessian (:class:`GammaGammaObjective`) instead of autograd, so the same estimates in a
    fraction of the time.

    Only customers with ``frequency > 0`` and a positive ``monetary_value`` enter the fit, as
    in the paper. Three rules keep every valid input fitted (each recorded in ``boundary_`` and
    ``warning_``; ``penalizer_used_`` is the fallback ridge, 0.0 when none was needed):

    - fewer than ``MIN_REPEAT_BUYERS`` repeat buyers: no fit, every customer's expected spend is
      the observed mean spend per repeat purchase (``params_`` is a :class:`MeanSpendParams`);
    - an optimum with ``q < Q_FLOOR`` (heavy-tailed customer means; the mean spend is undefined
      for q <= 1): q is held at ``Q_FLOOR``, the constrained maximum-likelihood estimate, and p, v
      are fitted; q's standard error is 0;
    - a boundary fit (the rule of :class:`crmvalue.models.PurchaseModel`, e.g. q and v diverging
      together when customers do not differ in spend): refitted with each ridge of ``RIDGE_LADDER``
      on the log-parameters, keeping the interior fit with the highest evidence. The ridge is
      centred at p = 1, q = Q_FLOOR and v = the mean spend, so it is currency-free and its centre
      has the observed mean spend as population mean.

    Parameters
    ----------
    penalizer : float
        lifetimes' L2 penalty on the parameters (``penalizer_coef``), applied as lifetimes does.
    """

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    def fit(self, frequency, monetary_value, weights=None, mean_spend: float | None = None) -> GammaGammaModel:
        """Fit on one row per customer, or on rows that each stand for ``weights`` customers.

        ``mean_spend`` is the expected spend to fall back on when no customer has a repeat
        purchase with positive spend (e.g. the mean amount of all purchases); without it, that case
        is a one-line error.
        """
        from crmvalue.features import checked_weights

        x = np.asarray(frequency, float)
        m = np.asarray(monetary_value, float)
        w = np.ones_like(x) if weights is None else checked_weights(weights, len(x)).astype(float)
        keep = (x > 0) & (m > 0) & (w > 0) & np.isfinite(m)
        x, m, w = x[keep], m[keep], w[keep]
        self.n_customers_ = int(round(w.sum()))
        self.frequency_spend_correlation_ = _weighted_correlation(x, m, w)
        self.penalizer_used_ = 0.0
        self.boundary_ = None
        self.warning_ = None
        if w.sum() < MIN_REPEAT_BUYERS:
            return self._fit_mean_spend(x, m, w, mean_spend)
        mean = float((w * x) @ m / (w @ x))
        objective = GammaGammaObjective(x, m, w, self.penalizer)
        objective.centre = np.array([0.0, np.log(Q_FLOOR), np.log(mean)])
        fixed = _FixedQObjective(objective, np.log(Q_FLOOR))
        fixed.centre = objective.centre[[0, 2]]

        n = float(w.sum())
        attempts = [self._attempt(objective, 0.0)]
        path, accepted = "free", None
        if self._not_interior(attempts[0], x, m) is None and attempts[0].values["q"] >= Q_FLOOR:
            accepted = attempts[0]
        elif attempts[0].values.get("q", np.inf) < Q_FLOOR:
            path = "fixed"
        else:
            attempts += [self._attempt(objective, ridge) for ridge in RIDGE_LADDER]
            interior = [a for a in attempts[1:] if self._not_interior(a, x, m) is None]
            accepted = best_rung([a for a in interior if a.values["q"] >= Q_FLOOR], n)
            if accepted is None and interior:  # the ridge fits end below the floor: hold q there
                path = "fixed"
        attempts_free = attempts
        free_q = attempts[0].values.get("q", np.nan)
        if path == "fixed":
            attempts = [self._attempt(fixed, 0.0)]
            if self._not_interior(attempts[0], x, m) is None:
                accepted = attempts[0]
            else:
                attempts += [self._attempt(fixed, ridge) for ridge in RIDGE_LADDER]
                accepted = best_rung([a for a in attempts[1:] if self._not_interior(a, x, m) is None], n)
        reasons = []
        if path == "fixed":
            free_interior = self._not_interior(attempts_free[0], x, m) is None
            where = f"has q = {free_q:.3g}" if free_interior else "runs to q"
            reasons.append(
                f"the unconstrained optimum {where} < {Q_FLOOR:g} (heavy-tailed customer spend; for q <= 1 "
                f"the mean spend is undefined), so q is held at {Q_FLOOR:g}"
            )
        if accepted is None or accepted.ridge > 0:
            reasons.append(describe_boundary(attempts, {("q", "v"): "spend"}))
        if accepted is None:
            raise CrmvalueError(
                f"Gamma-Gamma did not converge (penalizer={self.penalizer}): {'; '.join(reasons)}, and no ridge up to "
                f"{RIDGE_LADDER[-1]:g} on the log-parameters gives an interior optimum; "
                "set a larger penalizer, e.g. model.gamma_gamma_penalizer: 0.001 in the config"
            )
        if reasons:
            self.boundary_ = "; ".join(reasons)
            done = [f"q held at {Q_FLOOR:g}"] if path == "fixed" else []
            if accepted.ridge > 0:
                done.append(
                    f"refitted with a ridge of {accepted.ridge:g} on the log-parameters "
                    "(of the ridges that give an interior optimum, the one the data support most)"
                )
            self.warning_ = f"Gamma-Gamma: boundary estimate ({self.boundary_}); {' and '.join(done)}"
        self.penalizer_used_ = accepted.ridge
        self._record(accepted)
        return self

    def _attempt(self, objective: GammaGammaObjective | _FixedQObjective, ridge: float) -> FitAttempt:
        """One trust-exact fit; any failure of the optimiser is an attempt that did not converge."""
        fixed = isinstance(objective, _FixedQObjective)
        full: GammaGammaObjective = objective.full if isinstance(objective, _FixedQObjective) else objective
        keep = [0, 2] if fixed else [0, 1, 2]
        objective.ridge = ridge
        objective._cache = None
        start = (full.centre + START_OFFSET)[keep]
        try:
            solution = solve(objective, start)
        except Exception as exc:  # noqa: BLE001 - a failure inside the optimiser is a fit that did not converge
            return FitAttempt(_NAMES, {}, np.full(3, np.nan), False, np.nan, None, ridge, type(exc).__name__)
        theta, converged, message = solution.theta, solution.converged, solution.message
        covariance = np.zeros((3, 3))  # q held fixed: no variance
        block = solution.covariance(full.W)
        covariance[np.ix_(keep, keep)] = np.nan if block is None else block
        full_theta = (
            np.array([theta[0], objective.log_q, theta[1]]) if isinstance(objective, _FixedQObjective) else theta
        )
        values = dict(zip(_NAMES, map(float, np.exp(full_theta))))
        with np.errstate(all="ignore"):
            penalty = full.penalizer * float(np.exp(2 * full_theta).sum())
            finite = np.all(np.isfinite(full_theta))
            log_likelihood = -(full._evaluate(full_theta)[0] - penalty) * full.W if finite else np.nan
        return FitAttempt(
            names=_NAMES,
            values=values,
            offsets=full_theta - full.centre,
            converged=converged,
            log_likelihood=float(log_likelihood),
            covariance=covariance,
            ridge=ridge,
            failure="" if converged else message,
            free=(True, not fixed, True),
            penalty=penalty * full.W,
        )

    @staticmethod
    def _not_interior(attempt: FitAttempt, x: np.ndarray, m: np.ndarray) -> str | None:
        why = not_interior(attempt)
        if why is not None:
            return why
        params = GammaGammaParams(**attempt.values)
        with np.errstate(all="ignore"):
            finite = (
                params.q > 1
                and np.isfinite(params.population_mean)
                and np.all(np.isfinite(expected_average_value(params, x, m)))
            )
        return not_interior(attempt, predictions_finite=bool(finite))

    def _record(self, attempt: FitAttempt) -> None:
        self.params_: SpendParams = GammaGammaParams(**attempt.values)
        # asymptotic covariance of the log-parameters (the inverse Hessian of the mean penalised objective)
        self.log_param_covariance_ = attempt.covariance
        log_se = attempt.log_standard_errors()
        values = np.array([attempt.values[n] for n in _NAMES])
        # lifetimes' standard errors: the delta method on the log-parameters' covariance
        self.standard_errors_ = pd.Series(values * log_se, index=list(_NAMES), dtype=float)
        self.confidence_intervals_ = pd.DataFrame(  # 95%, in log-parameters as for the purchase models
            {"lower": values * np.exp(-1.96 * log_se), "upper": values * np.exp(1.96 * log_se)},
            index=list(_NAMES),
        )

    def _fit_mean_spend(self, x: np.ndarray, m: np.ndarray, w: np.ndarray, mean_spend: float | None) -> GammaGammaModel:
        """Too few repeat buyers: every customer's expected spend is the observed mean spend per repeat purchase."""
        purchases = w @ x
        if purchases > 0:
            mean = float((w * x) @ m / purchases)
            # standard error of that mean, from the spread of the buyers' own means
            spread = float((w * x) @ (m - mean) ** 2 / purchases)
            log_se = float(np.sqrt(spread / purchases) / mean)
            source = f"the mean of their repeat purchases, {mean:.4g}"
        elif mean_spend is not None and np.isfinite(mean_spend) and mean_spend > 0:
            mean, log_se, source = float(mean_spend), 0.0, f"the mean spend given, {float(mean_spend):.4g}"
        else:
            raise CrmvalueError("Gamma-Gamma: no repeat buyer with a positive spend, so the expected spend is unknown")
        self.params_ = MeanSpendParams(mean)
        self.log_param_covariance_ = np.array([[log_se**2]])
        self.standard_errors_ = pd.Series([mean * log_se], index=["mean_spend"], dtype=float)
        self.confidence_intervals_ = pd.DataFrame(
            {"lower": [mean * np.exp(-1.96 * log_se)], "upper": [mean * np.exp(1.96 * log_se)]}, index=["mean_spend"]
        )
        self.boundary_ = f"{self.n_customers_} repeat buyers with positive spend, fewer than {MIN_REPEAT_BUYERS}"
        self.warning_ = (
            f"Gamma-Gamma: only {self.n_customers_} repeat buyers with positive spend (fewer than "
            f"{MIN_REPEAT_BUYERS}), so every customer's expected spend is {source}"
        )
        return self

    def conditional_expected_average_profit(self, frequency, monetary_value) -> np.ndarray:
        return expected_average_value(self.params_, frequency, monetary_value)


def _weighted_correlation(x: np.ndarray, m: np.ndarray, w: np.ndarray) -> float:
    """Weighted Pearson correlation (the plain one when every weight is 1); NaN when it is undefined."""
    if w.sum() <= 0 or len(x) < 2:
        return float("nan")
    mx, mm = (w @ x) / w.sum(), (w @ m) / w.sum()
    cxm, cxx, cmm = w @ ((x - mx) * (m - mm)), w @ (x - mx) ** 2, w @ (m - mm) ** 2
    if not (cxx > 0 and cmm > 0):
        return float("nan")
    return float(cxm / np.sqrt(cxx * cmm))
