"""Fast maximum-likelihood fit of BG/NBD and MBG/NBD on compressed (x, t_x, T) rows.

The objective is the one ``lifetimes.BetaGeoFitter`` / ``ModifiedBetaGeoFitter`` minimise, so the
estimates are the same: the weighted mean negative log-likelihood in log-parameters
``theta = log(r, alpha, a, b)``, with time rescaled so that the largest ``T`` is 1, plus the L2
penalty ``penalizer * sum(exp(theta) ** 2)`` on the parameters in that rescaled time. Unlike
lifetimes, the gradient is analytic and the sums are arranged so that special functions are
evaluated once per distinct ``x`` and logarithms once per distinct ``T`` and ``t_x``.

Likelihood (Fader, Hardie and Lee 2005, eq. 6; Batislam et al. 2007 for MBG/NBD), with ``k = 0``
for BG/NBD and ``k = 1`` for MBG/NBD::

    l = lgG(r+x) - lgG(r) + r log(alpha)
        + lgG(a+b) + lgG(b+x+k) - lgG(b) - lgG(a+b+x+k)
        - (r+x) log(alpha+T) + [log(1 + exp(u))]
    u = (r+x) d + log(a) - log(b+x-1+k),    d = log(alpha+T) - log(alpha+t_x) >= 0

where the bracketed term is present for every customer in MBG/NBD and only when ``x > 0`` in
BG/NBD (it is ``log(A_3 + A_4) - A_3`` of the paper written with ``softplus`` so it never
overflows). With ``s(u) = expit(u)``, the derivatives are::

    dl/dr     = psi(r+x) - psi(r) + log(alpha) - log(alpha+T) + s(u) d
    dl/dalpha = r/alpha - (r+x)/(alpha+T) + s(u) (r+x) (1/(alpha+T) - 1/(alpha+t_x))
    dl/da     = psi(a+b) - psi(a+b+x+k) + s(u)/a
    dl/db     = psi(a+b) + psi(b+x+k) - psi(b) - psi(a+b+x+k) - s(u)/(b+x-1+k)

and in log-parameters ``dl/dtheta_i = p_i dl/dp_i`` (the penalty contributes ``2 c p_i^2``).
Terms that depend on ``x`` alone are summed once per distinct ``x`` with the total weight of
its rows, and ``-(r+x) log(alpha+T)`` once per distinct ``T``; only ``u`` and its two functions
are computed per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, polygamma

from crmvalue.models.base import PurchaseModel
from crmvalue.models.objective import FitAttempt, NewtonObjective, newton_polish

# lifetimes starts every log-parameter at 0.1; the start does not change the optimum it finds
LIFETIMES_START = np.full(4, 0.1)


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row index into the distinct values, and the distinct values."""
    codes, uniques = pd.factorize(values)
    return codes, np.asarray(uniques, float)


class BetaGeoObjective(NewtonObjective):
    """lifetimes' BG/NBD (``k=0``) or MBG/NBD (``k=1``) objective, gradient and Hessian in log-parameters
    ``log(r, alpha, a, b)``, alpha in scaled time.

    Parameters
    ----------
    frequency, recency, T, weights : array_like
        Compressed rows (``crmvalue.features.compress_rfm``) and their customer counts.
    penalizer : float
        lifetimes' ``penalizer_coef``.
    modified : bool
        MBG/NBD instead of BG/NBD.
    """

    def __init__(self, frequency, recency, T, weights, penalizer: float = 0.0, modified: bool = False):
        x = np.asarray(frequency, float)
        t_x = np.asarray(recency, float)
        T_ = np.asarray(T, float)
        w = np.asarray(weights, float)
        self.k = 1.0 if modified else 0.0
        self.penalizer = float(penalizer)
        self.scale = 1.0 / T_.max()  # lifetimes' time scale: the penalty acts on alpha in these units
        self.n = w.sum()
        self.sum_wx = float(w @ x)

        x_codes, self.ux = _codes(x)
        self.w_x = np.bincount(x_codes, w, len(self.ux))
        T_codes, self.uT = _codes(T_ * self.scale)
        self.w_T = np.bincount(T_codes, w, len(self.uT))
        self.wx_T = np.bincount(T_codes, w * x, len(self.uT))

        mixed = np.ones(len(x), bool) if modified else x > 0  # rows with the 'dropped out after t_x' term
        self.m_x_codes, self.m_ux = _codes(x[mixed])
        t_codes, self.ut = _codes(t_x[mixed] * self.scale)
        # d, g and h below depend on (T, t_x) only: compute them once per distinct pair
        pair_codes, pairs = pd.factorize(T_codes[mixed] * len(self.ut) + t_codes)
        self.pair_codes = pair_codes
        self.pair_T, self.pair_t = np.divmod(np.asarray(pairs), len(self.ut))
        self.m_x = x[mixed]
        self.m_w = w[mixed]
        self.m_wx = w[mixed] * x[mixed]

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        p = np.exp(theta)
        r, alpha, a, b = p
        k, ux, w_x, n, es = self.k, self.ux, self.w_x, self.n, np.einsum

        log_T, inv_T = np.log(alpha + self.uT), 1.0 / (alpha + self.uT)
        log_t, inv_t = np.log(alpha + self.ut), 1.0 / (alpha + self.ut)
        d = (log_T[self.pair_T] - log_t[self.pair_t])[self.pair_codes]
        g = (inv_T[self.pair_T] - inv_t[self.pair_t])[self.pair_codes]
        h = (inv_t[self.pair_t] ** 2 - inv_T[self.pair_T] ** 2)[self.pair_codes]
        b_x = b + self.m_ux - 1 + k
        z = r + self.m_x
        u = z * d + (np.log(a) - np.log(b_x))[self.m_x_codes]
        e = np.exp(-np.abs(u))
        inv_1e = 1.0 / (1.0 + e)
        s = np.where(u >= 0, inv_1e, e * inv_1e)  # expit(u)
        softplus = np.maximum(u, 0.0) + np.log1p(e)
        ws = self.m_w * s
        q = self.m_w * e * inv_1e * inv_1e  # w s(u) (1 - s(u))
        zg = z * g

        # log-likelihood and its derivatives in p = (r, alpha, a, b)
        ll = (
            w_x @ (gammaln(r + ux) + gammaln(b + ux + k) - gammaln(a + b + ux + k))
            + n * (-gammaln(r) + r * np.log(alpha) + gammaln(a + b) - gammaln(b))
            - (r * self.w_T + self.wx_T) @ log_T
            + es("i,i->", self.m_w, softplus)
        )
        psi_ab, psi_ab_x = digamma(a + b), digamma(a + b + ux + k)
        ws_x = np.bincount(self.m_x_codes, ws, len(self.m_ux))
        sum_ws = ws_x.sum()
        grad = np.array(
            [
                w_x @ digamma(r + ux) - n * digamma(r) + n * np.log(alpha) - self.w_T @ log_T + es("i,i->", ws, d),
                n * r / alpha - (r * self.w_T + self.wx_T) @ inv_T + es("i,i->", ws, zg),
                n * psi_ab - w_x @ psi_ab_x + sum_ws / a,
                n * (psi_ab - digamma(b)) + w_x @ (digamma(b + ux + k) - psi_ab_x) - ws_x @ (1.0 / b_x),
            ]
        )

        # Hessian: sum of w [s(1-s) du_i du_j + s d2u_ij] plus the terms without u
        tri_ab, tri_ab_x = polygamma(1, a + b), polygamma(1, a + b + ux + k)
        qd, qzg = q * d, q * zg
        q_x = np.bincount(self.m_x_codes, q, len(self.m_ux))
        qd_x = np.bincount(self.m_x_codes, qd, len(self.m_ux))
        qzg_x = np.bincount(self.m_x_codes, qzg, len(self.m_ux))
        hess = np.empty((4, 4))
        hess[0, 0] = w_x @ polygamma(1, r + ux) - n * polygamma(1, r) + es("i,i->", qd, d)
        hess[0, 1] = n / alpha - self.w_T @ inv_T + es("i,i->", qd, zg) + es("i,i->", ws, g)
        hess[1, 1] = (
            -n * r / alpha**2 + (r * self.w_T + self.wx_T) @ inv_T**2 + es("i,i->", qzg, zg) + es("i,i,i->", ws, z, h)
        )
        hess[0, 2] = qd_x.sum() / a
        hess[0, 3] = -qd_x @ (1.0 / b_x)
        hess[1, 2] = qzg_x.sum() / a
        hess[1, 3] = -qzg_x @ (1.0 / b_x)
        hess[2, 2] = n * tri_ab - w_x @ tri_ab_x + (q_x.sum() - sum_ws) / a**2
        hess[2, 3] = n * tri_ab - w_x @ tri_ab_x - q_x @ (1.0 / b_x) / a
        hess[3, 3] = (
            n * (tri_ab - polygamma(1, b)) + w_x @ (polygamma(1, b + ux + k) - tri_ab_x) + (q_x + ws_x) @ (1.0 / b_x**2)
        )
        hess = np.triu(hess) + np.triu(hess, 1).T

        # to log-parameters (d/dtheta_i = p_i d/dp_i), mean over customers, plus lifetimes' penalty
        pen = self.penalizer
        value = -ll / n + pen * (p @ p)
        gradient = -p * grad / n + 2 * pen * p * p
        hess_theta = -(np.outer(p, p) * hess + np.diag(p * grad)) / n + np.diag(4 * pen * p * p)
        return float(value), gradient, hess_theta

    def log_likelihood(self, log_params: np.ndarray) -> float:
        """Total log-likelihood in the data's own time unit (undoes the time scaling); no penalty, no ridge."""
        theta = np.asarray(log_params, float)
        p = np.exp(theta)
        with np.errstate(all="ignore"):
            value = self._evaluate(theta)[0] if np.all(np.isfinite(theta)) else np.nan
        # in scaled time each customer's log-likelihood is lower by x log(scale)
        return float(-(value - self.penalizer * (p @ p)) * self.n + self.sum_wx * np.log(self.scale))


@dataclass(frozen=True)
class BetaGeoFit:
    """Result of ``fit_beta_geo``: parameters in the data's time unit and lifetimes' diagnostics."""

    params: dict[str, float]
    converged: bool
    message: str
    log_likelihood: float
    hessian: np.ndarray  # of lifetimes' objective (mean, penalised, ridge included) in log-parameters
    n_evaluations: int
    log_params: np.ndarray  # in scaled time (the largest T is 1), where the ridge is centred


def fit_beta_geo(
    frequency,
    recency,
    T,
    weights,
    penalizer: float = 0.0,
    modified: bool = False,
    start: np.ndarray | None = None,
    method: str = "trust-exact",
    ridge: float = 0.0,
) -> BetaGeoFit:
    """Minimise lifetimes' BG/NBD (or MBG/NBD) objective from lifetimes' start.

    ``trust-exact`` (Newton steps in a trust region, with the analytic Hessian) needs a handful
    of evaluations; ``BFGS`` (lifetimes' method, with the analytic gradient only) is kept for
    comparison. The gradient tolerance is 1e-10 on the mean objective (lifetimes stops at 1e-7),
    so the estimates are those of the optimum rather than of wherever a looser stop lands.
    ``ridge`` adds ``ridge * sum(theta ** 2)`` on the log-parameters in scaled time (the
    boundary fallback, see :mod:`crmvalue.models.objective`).
    """
    objective = BetaGeoObjective(frequency, recency, T, weights, penalizer, modified)
    objective.ridge = float(ridge)
    x0 = LIFETIMES_START if start is None else np.asarray(start, float)
    hess = objective.hessian if method == "trust-exact" else None
    with np.errstate(all="ignore"):
        result = minimize(objective, x0, jac=True, hess=hess, method=method, options={"gtol": 1e-10, "maxiter": 500})
        theta = newton_polish(objective, result.x) if method == "trust-exact" else np.asarray(result.x, float)
        value, gradient, hessian = objective.evaluate(theta)
        # a stop on precision loss right at the optimum is still lifetimes' success (gradient < 1e-7)
        converged = bool(result.success or np.max(np.abs(gradient)) < 1e-7)
        converged = converged and bool(np.all(np.isfinite(theta)) and np.isfinite(value))
        log_likelihood = objective.log_likelihood(theta)
    values = np.exp(theta)
    values[1] /= objective.scale
    return BetaGeoFit(
        params=dict(zip(("r", "alpha", "a", "b"), map(float, values))),
        converged=converged,
        message=str(result.message),
        log_likelihood=log_likelihood,
        hessian=hessian,
        n_evaluations=int(result.nfev),
        log_params=theta,
    )


class BetaGeoFamilyModel(PurchaseModel):
    """BG/NBD or MBG/NBD fitted by ``fit_beta_geo``; the lifetimes fitter only serves as a twin for
    ``probability_of_n_purchases_up_to_time`` and gets the fitted ``params_``."""

    modified: ClassVar[bool] = False
    boundary_pairs: ClassVar[dict] = {("a", "b"): "dropout", ("r", "alpha"): "purchase-rate"}

    def _fit_compressed(self, fitter, rows: pd.DataFrame, ridge: float = 0.0) -> FitAttempt:
        fit = fit_beta_geo(
            rows["frequency"],
            rows["recency"],
            rows["T"],
            rows["weights"],
            self.penalizer,
            self.modified,
            start=LIFETIMES_START,
            ridge=ridge,
        )
        fitter.params_ = pd.Series(fit.params)
        return FitAttempt(
            names=("r", "alpha", "a", "b"),
            values=fit.params,
            offsets=fit.log_params,
            converged=fit.converged,
            log_likelihood=fit.log_likelihood,
            covariance=_inverse(fit.hessian) / rows["weights"].sum(),
            ridge=ridge,
            failure="" if fit.converged else fit.message,
            penalty=self.penalizer * float(np.exp(2 * fit.log_params).sum()) * float(rows["weights"].sum()),
        )


def _inverse(matrix: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        try:
            return np.linalg.inv(np.asarray(matrix, float))
        except np.linalg.LinAlgError:
            return np.full(np.shape(matrix), np.nan)
