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
from scipy.special import digamma, expit, gammaln

from crmvalue.models.base import PurchaseModel

# lifetimes starts every log-parameter at 0.1; the start does not change the optimum it finds
LIFETIMES_START = np.full(4, 0.1)


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row index into the distinct values, and the distinct values."""
    codes, uniques = pd.factorize(values)
    return codes, np.asarray(uniques, float)


class BetaGeoObjective:
    """lifetimes' BG/NBD (``k=0``) or MBG/NBD (``k=1``) objective and its gradient in log-parameters.

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
        self.m_T_codes = T_codes[mixed]
        self.m_t_codes, self.m_ut = _codes(t_x[mixed] * self.scale)
        self.m_x = x[mixed]
        self.m_w = w[mixed]
        self.m_wx = w[mixed] * x[mixed]

    def __call__(self, log_params: np.ndarray) -> tuple[float, np.ndarray]:
        """Objective and gradient at ``log_params`` = log(r, alpha, a, b), alpha in scaled time."""
        p = np.exp(np.asarray(log_params, float))
        r, alpha, a, b = p
        k, ux, w_x = self.k, self.ux, self.w_x

        log_T = np.log(alpha + self.uT)
        log_t = np.log(alpha + self.m_ut)
        d = log_T[self.m_T_codes] - log_t[self.m_t_codes]
        b_x = b + self.m_ux - 1 + k
        u = (r + self.m_x) * d + (np.log(a) - np.log(b_x))[self.m_x_codes]
        s = expit(u)
        ws = self.m_w * s
        ws_rx = s * (r * self.m_w + self.m_wx)  # w s(u) (r+x)

        ll = (
            w_x @ (gammaln(r + ux) + gammaln(b + ux + k) - gammaln(a + b + ux + k))
            + self.n * (-gammaln(r) + r * np.log(alpha) + gammaln(a + b) - gammaln(b))
            - (r * self.w_T + self.wx_T) @ log_T
            + self.m_w @ np.logaddexp(0.0, u)
        )
        psi_ab_x = digamma(a + b + ux + k)
        psi_ab = digamma(a + b)
        d_r = w_x @ digamma(r + ux) - self.n * digamma(r) + self.n * np.log(alpha) - self.w_T @ log_T + ws @ d
        d_alpha = (
            self.n * r / alpha
            - (r * self.w_T + self.wx_T) @ (1.0 / (alpha + self.uT))
            + np.bincount(self.m_T_codes, ws_rx, len(self.uT)) @ (1.0 / (alpha + self.uT))
            - np.bincount(self.m_t_codes, ws_rx, len(self.m_ut)) @ (1.0 / (alpha + self.m_ut))
        )
        sum_ws = ws.sum()
        d_a = self.n * psi_ab - w_x @ psi_ab_x + sum_ws / a
        d_b = (
            self.n * (psi_ab - digamma(b))
            + w_x @ (digamma(b + ux + k) - psi_ab_x)
            - np.bincount(self.m_x_codes, ws, len(self.m_ux)) @ (1.0 / b_x)
        )
        grad_ll = np.array([d_r, d_alpha, d_a, d_b])
        value = -ll / self.n + self.penalizer * (p @ p)
        gradient = -p * grad_ll / self.n + 2 * self.penalizer * p * p
        return float(value), gradient

    def log_likelihood(self, log_params: np.ndarray) -> float:
        """Total log-likelihood in the data's own time unit (undoes the time scaling)."""
        p = np.exp(np.asarray(log_params, float))
        value, _ = self(log_params)
        # in scaled time each customer's log-likelihood is lower by x log(scale)
        return float(-(value - self.penalizer * (p @ p)) * self.n + self.sum_wx * np.log(self.scale))

    def hessian(self, log_params: np.ndarray, step: float = 1e-5) -> np.ndarray:
        """Hessian of the objective in log-parameters, by central differences of the analytic gradient."""
        theta = np.asarray(log_params, float)
        columns = []
        for i in range(len(theta)):
            e = np.zeros_like(theta)
            e[i] = step
            columns.append((self(theta + e)[1] - self(theta - e)[1]) / (2 * step))
        hessian = np.array(columns)
        return (hessian + hessian.T) / 2


@dataclass(frozen=True)
class BetaGeoFit:
    """Result of ``fit_beta_geo``: parameters in the data's time unit and lifetimes' diagnostics."""

    params: dict[str, float]
    converged: bool
    message: str
    log_likelihood: float
    hessian: np.ndarray  # of lifetimes' objective (mean, penalised) in log-parameters
    n_evaluations: int


def fit_beta_geo(frequency, recency, T, weights, penalizer: float = 0.0, modified: bool = False,
                 start: np.ndarray | None = None) -> BetaGeoFit:
    """Minimise lifetimes' BG/NBD (or MBG/NBD) objective with BFGS and the analytic gradient.

    The gradient tolerance is 1e-10 on the mean objective (lifetimes uses 1e-7), so the estimates
    are those of the exact optimum rather than of wherever lifetimes' looser stop lands.
    """
    objective = BetaGeoObjective(frequency, recency, T, weights, penalizer, modified)
    with np.errstate(all="ignore"):
        result = minimize(objective, LIFETIMES_START if start is None else start, jac=True, method="BFGS",
                          options={"gtol": 1e-10, "maxiter": 1000})
        theta = result.x
        # BFGS may stop on precision loss at the optimum already reached: accept a small gradient
        converged = bool(result.success or np.max(np.abs(result.jac)) < 1e-7)
        hessian = objective.hessian(theta)
        log_likelihood = objective.log_likelihood(theta)
    values = np.exp(theta)
    values[1] /= objective.scale
    return BetaGeoFit(
        params=dict(zip(("r", "alpha", "a", "b"), map(float, values))),
        converged=converged and bool(np.all(np.isfinite(theta))),
        message=str(result.message),
        log_likelihood=log_likelihood,
        hessian=hessian,
        n_evaluations=int(result.nfev),
    )


class BetaGeoFamilyModel(PurchaseModel):
    """BG/NBD or MBG/NBD fitted by ``fit_beta_geo``; the lifetimes fitter only serves as a twin for
    ``probability_of_n_purchases_up_to_time`` and gets the fitted ``params_``."""

    modified: ClassVar[bool] = False

    def _fit_compressed(self, fitter, rows: pd.DataFrame):
        fit = fit_beta_geo(rows["frequency"], rows["recency"], rows["T"], rows["weights"], self.penalizer, self.modified)
        if not fit.converged:
            raise self._not_converged()
        fitter.params_ = pd.Series(fit.params)
        return fit.params, fit.log_likelihood, fit.hessian
