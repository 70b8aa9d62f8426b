"""BG/NBD with time-invariant covariates: each customer's purchase rate and dropout distributions depend on her ``z``.

Form (Fader and Hardie 2007, "Incorporating time-invariant covariates into the Pareto/NBD and
BG/NBD models", brucehardie.com note 019; the same parameterisation as CLVTools' BG/NBD with static
covariates). Customer ``i`` has purchase covariates ``z_p,i`` (``k_p`` of them) and dropout covariates
``z_d,i`` (``k_d``); her purchase rate is ``lambda_i ~ Gamma(r, alpha_i)`` and her dropout probability
``p_i ~ Beta(a_i, b_i)`` with::

    alpha_i = alpha * exp(-gamma_purchase . z_p,i)      (r is shared)
    a_i     = a     * exp( gamma_dropout  . z_d,i)
    b_i     = b     * exp( gamma_dropout  . z_d,i)      (the same coefficients on a and b)

so a positive ``gamma_purchase`` raises the mean purchase rate ``r / alpha_i`` by the factor
``exp(gamma_purchase . z)``; ``gamma_dropout`` scales ``a`` and ``b`` together, which keeps the mean
dropout probability ``a / (a + b)`` and changes its concentration. Given ``(r, alpha_i, a_i, b_i)``
everything is plain BG/NBD (:mod:`crmvalue.models.bgnbd`): likelihood, P(alive), expected purchases.

Estimation is maximum likelihood in ``beta = (log r, log alpha, log a, log b, gamma_purchase,
gamma_dropout)``, with alpha in scaled time (the longest ``T`` is 1) as in
:mod:`crmvalue.models.beta_geo_fit`. Each customer's local log-parameters
``eta_i = (log r, log alpha_i, log a_i, log b_i)`` are *linear* in ``beta`` (``eta_i = J_i beta``), so the
gradient is ``sum_i w_i J_i' g_i`` and the Hessian ``sum_i w_i J_i' H_i J_i`` exactly, where ``g_i``
and ``H_i`` are the analytic gradient and Hessian of the BG/NBD per-customer log-likelihood in
``eta_i`` (the formulas of :mod:`crmvalue.models.beta_geo_fit`, evaluated per row). The fit is
``trust-exact`` from the plain BG/NBD optimum (coefficients 0) and Newton-polished to a gradient below
1e-10; standard errors are the inverse observed information (delta method for ``r, alpha, a, b``).
Rows with the same ``(x, t_x, T, z_p, z_d)`` are fitted once with their count as weight, so
categorical covariates still compress. ``penalizer`` is lifetimes' L2 penalty on ``(r, alpha, a, b)``
in scaled time plus the same penalty on the coefficients (mean objective).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln, zeta

from crmvalue.errors import CrmvalueError
from crmvalue.features import checked_weights
from crmvalue.models.beta_geo_fit import fit_beta_geo
from crmvalue.models.bgnbd import BetaGeoParams, expected_purchases, p_alive, simulate_beta_geo_summary
from crmvalue.models.objective import NewtonObjective, solve

BASE_NAMES = ("r", "alpha", "a", "b")


def trigamma(values):
    """psi'(x) = zeta(2, x): the same numbers as ``polygamma(1, x)``, without its dispatch."""
    return zeta(2.0, values)


class BetaGeoCovariateObjective(NewtonObjective):
    """Mean negative log-likelihood (plus penalty) of BG/NBD with covariates, its gradient and Hessian in ``beta``.

    ``frequency, recency, T, weights`` are one value per row, ``z_purchase`` (n x k_p) and
    ``z_dropout`` (n x k_d) the rows' covariates; rows may stand for several customers (``weights``).
    """

    def __init__(self, frequency, recency, T, weights, z_purchase, z_dropout, penalizer: float = 0.0):
        self.x = np.asarray(frequency, float)
        self.scale = 1.0 / float(np.max(T))
        self.t_x = np.asarray(recency, float) * self.scale
        self.T = np.asarray(T, float) * self.scale
        self.w = np.asarray(weights, float)
        self.zp = np.asarray(z_purchase, float).reshape(len(self.x), -1)
        self.zd = np.asarray(z_dropout, float).reshape(len(self.x), -1)
        self.kp, self.kd = self.zp.shape[1], self.zd.shape[1]
        self.penalizer = float(penalizer)
        self.n = float(self.w.sum())
        self.sum_wx = float(self.w @ self.x)
        self.mixed = self.x > 0  # rows with the 'dropped out right after t_x' term
        # J_i as 4 matrices (n x P): row j of every customer's Jacobian d eta_i / d beta
        n, P = len(self.x), 4 + self.kp + self.kd
        J = np.zeros((n, 4, P))
        J[:, 0, 0] = J[:, 1, 1] = J[:, 2, 2] = J[:, 3, 3] = 1.0
        J[:, 1, 4 : 4 + self.kp] = -self.zp
        J[:, 2, 4 + self.kp :] = J[:, 3, 4 + self.kp :] = self.zd
        self.J = J

    def local(self, theta: np.ndarray) -> np.ndarray:
        """Each row's ``(r, alpha_i, a_i, b_i)`` (alpha in scaled time), n x 4."""
        return np.exp(self.J @ theta)

    def per_row(self, theta: np.ndarray, derivatives: bool = True):
        """Per-row log-likelihood (scaled time) and, with ``derivatives``, its gradient (n x 4) and Hessian
        (n x 4 x 4) in the local log-parameters ``eta_i``."""
        p = self.local(theta)
        r, alpha, a, b = p.T
        x, m = self.x, self.mixed
        log_T, log_t = np.log(alpha + self.T), np.log(alpha + self.t_x)
        d = log_T - log_t
        b_x = b + np.maximum(x, 1.0) - 1.0
        z = r + x
        u = z * d + np.log(a) - np.log(b_x)
        e = np.exp(-np.abs(u))
        inv_1e = 1.0 / (1.0 + e)
        s = np.where(m, np.where(u >= 0, inv_1e, e * inv_1e), 0.0)  # expit(u), 0 where there is no term
        ll = (
            gammaln(r + x)
            - gammaln(r)
            + r * np.log(alpha)
            + gammaln(a + b)
            + gammaln(b + x)
            - gammaln(b)
            - gammaln(a + b + x)
            - z * log_T
            + np.where(m, np.maximum(u, 0.0) + np.log1p(e), 0.0)
        )
        if not derivatives:
            return ll
        q = np.where(m, e * inv_1e * inv_1e, 0.0)  # s (1 - s)
        inv_T, inv_t = 1.0 / (alpha + self.T), 1.0 / (alpha + self.t_x)
        g, h = inv_T - inv_t, inv_t**2 - inv_T**2
        zg = z * g
        psi_ab, psi_abx = digamma(a + b), digamma(a + b + x)
        grad = np.column_stack(
            [
                digamma(r + x) - digamma(r) + np.log(alpha) - log_T + s * d,
                r / alpha - z * inv_T + s * zg,
                psi_ab - psi_abx + s / a,
                psi_ab + digamma(b + x) - digamma(b) - psi_abx - s / b_x,
            ]
        )
        tri_ab, tri_abx = trigamma(a + b), trigamma(a + b + x)
        H = np.empty((len(x), 4, 4))
        H[:, 0, 0] = trigamma(r + x) - trigamma(r) + q * d * d
        H[:, 0, 1] = 1.0 / alpha - inv_T + q * d * zg + s * g
        H[:, 1, 1] = -r / alpha**2 + z * inv_T**2 + q * zg * zg + s * z * h
        H[:, 0, 2] = q * d / a
        H[:, 0, 3] = -q * d / b_x
        H[:, 1, 2] = q * zg / a
        H[:, 1, 3] = -q * zg / b_x
        H[:, 2, 2] = tri_ab - tri_abx + (q - s) / a**2
        H[:, 2, 3] = tri_ab - tri_abx - q / (a * b_x)
        H[:, 3, 3] = tri_ab - trigamma(b) + trigamma(b + x) - tri_abx + (q + s) / b_x**2
        for j, k in ((1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2)):
            H[:, j, k] = H[:, k, j]
        # to log-parameters: d/deta_j = p_j d/dp_j
        H_eta = p[:, :, None] * H * p[:, None, :]
        H_eta[:, np.arange(4), np.arange(4)] += p * grad
        return ll, p * grad, H_eta

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        ll, g_eta, H_eta = self.per_row(theta)
        w, J = self.w, self.J
        total = float(w @ ll)
        flat = J.reshape(-1, J.shape[2])  # (n*4) x P
        gradient = (w[:, None] * g_eta).reshape(-1) @ flat
        hessian = flat.T @ ((w[:, None, None] * H_eta) @ J).reshape(flat.shape)
        # mean negative log-likelihood plus lifetimes' penalty on (r, alpha, a, b) and the same on the coefficients
        values = np.concatenate([np.exp(theta[:4]), theta[4:]])
        slope = np.concatenate([values[:4] ** 2, theta[4:]]) * 2  # d(values^2)/dtheta
        curve = np.concatenate([4 * values[:4] ** 2, np.full(len(theta) - 4, 2.0)])
        pen = self.penalizer
        value = -total / self.n + pen * float(values @ values)
        return value, -gradient / self.n + pen * slope, -hessian / self.n + pen * np.diag(curve)

    def log_likelihood(self, theta: np.ndarray) -> float:
        """Total log-likelihood in the data's own time unit (no penalty)."""
        with np.errstate(all="ignore"):
            ll = self.per_row(np.asarray(theta, float), derivatives=False)
        # in scaled time each customer's log-likelihood is lower by x log(scale)
        return float(self.w @ ll + self.sum_wx * np.log(self.scale))


def _covariates(z, n: int, role: str, fitting: bool = False) -> tuple[np.ndarray, list[str]]:
    """``z`` (None, a 1-D array, an n x k array or a DataFrame) as an n x k float matrix and names; for
    ``fitting``, a column that does not vary is refused (it is not identified beside the intercept)."""
    if z is None:
        return np.zeros((n, 0)), []
    names = [str(c) for c in z.columns] if isinstance(z, pd.DataFrame) else None
    try:
        matrix = np.asarray(z, float)
    except (TypeError, ValueError):
        raise CrmvalueError(f"z_{role}: covariates must be numbers (code categories with design_matrix)") from None
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[0] != n:
        raise CrmvalueError(f"z_{role}: expected {n} rows of covariates (n x k), got shape {matrix.shape}")
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise CrmvalueError(f"z_{role}: covariates missing or not finite in row {first} ({int(bad.sum())} rows in all)")
    names = names or [f"{role}_{j + 1}" for j in range(matrix.shape[1])]
    flat = [name for name, column in zip(names, matrix.T) if fitting and n and column.min() == column.max()]
    if flat:
        raise CrmvalueError(f"z_{role}: covariate {flat[0]} does not vary, so its effect is not identified")
    return matrix, names


def _history(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, t_x, T_ = (np.asarray(v, float).reshape(-1) for v in (frequency, recency, T))
    if not len(x) == len(t_x) == len(T_):
        raise CrmvalueError(f"frequency, recency and T have {len(x)}, {len(t_x)} and {len(T_)} values")
    if not (np.isfinite(x).all() and np.isfinite(t_x).all() and np.isfinite(T_).all()):
        raise CrmvalueError("frequency, recency and T must be finite numbers")
    if (x < 0).any() or (t_x < 0).any() or (t_x > T_).any() or (T_ <= 0).any():
        raise CrmvalueError("need frequency >= 0, 0 <= recency <= T and T > 0 for every customer")
    return x, t_x, T_


def compress_rows(x, t_x, T, zp, zd, weights) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``[x, t_x, T, z_p, z_d]`` and the total weight of each."""
    table = np.column_stack([x, t_x, T, zp, zd])
    rows, inverse = np.unique(table, axis=0, return_inverse=True)
    return rows, np.bincount(inverse.reshape(-1), weights=weights, minlength=len(rows))


class BetaGeoCovariateModel:
    """BG/NBD with time-invariant covariates on the purchase rate and the dropout (see the module docstring).

    After ``fit``: ``params_`` (``BetaGeoParams`` of the reference customer, z = 0, in the data's time
    unit), ``gamma_purchase_``, ``gamma_dropout_``, ``coefficient_names_`` (``{"purchase": [...],
    "dropout": [...]}``, a DataFrame's columns or ``purchase_1, ...``), ``log_likelihood_``,
    ``standard_errors_`` (a Series over ``r, alpha, a, b, purchase:<name>..., dropout:<name>...``),
    ``covariance_`` (of ``beta``), ``n_customers_``, ``n_patterns_``.
    """

    label = "BG/NBD with covariates"

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    def fit(
        self, frequency, recency, T, z_purchase=None, z_dropout=None, weights=None, compress: bool = True
    ) -> BetaGeoCovariateModel:
        x, t_x, T_ = _history(frequency, recency, T)
        n = len(x)
        if n == 0:
            raise CrmvalueError(f"{self.label}: no customers to fit")
        zp, names_p = _covariates(z_purchase, n, "purchase", fitting=True)
        zd, names_d = _covariates(z_dropout, n, "dropout", fitting=True)
        w = np.ones(n) if weights is None else checked_weights(np.asarray(weights).reshape(-1), n).astype(float)
        if compress:
            rows, w = compress_rows(x, t_x, T_, zp, zd, w)
        else:
            rows = np.column_stack([x, t_x, T_, zp, zd])
        rows, w = rows[w > 0], w[w > 0]
        if len(w) == 0:
            raise CrmvalueError(f"{self.label}: no customers to fit (every weight is 0)")
        kp = zp.shape[1]
        objective = BetaGeoCovariateObjective(
            rows[:, 0], rows[:, 1], rows[:, 2], w, rows[:, 3 : 3 + kp], rows[:, 3 + kp :], self.penalizer
        )
        with np.errstate(all="ignore"):
            start = fit_beta_geo(rows[:, 0], rows[:, 1], rows[:, 2], w, self.penalizer).log_params
            x0 = np.concatenate([start, np.zeros(kp + zd.shape[1])])
        solution = solve(objective, x0)
        theta, value, gradient, hessian = solution.theta, solution.value, solution.gradient, solution.hessian
        if not (np.isfinite(value) and np.max(np.abs(gradient)) < 1e-7):
            raise CrmvalueError(
                f"{self.label} did not converge (penalizer={self.penalizer}): {solution.message}; "
                "set a larger penalizer or drop covariates"
            )
        try:
            covariance = np.linalg.inv(hessian) / objective.n
        except np.linalg.LinAlgError:
            covariance = np.full(hessian.shape, np.nan)
        if not np.all(np.linalg.eigvalsh(hessian) > 0):
            raise CrmvalueError(f"{self.label}: the Hessian is not positive definite at the estimate")
        base = np.exp(theta[:4])
        base[1] /= objective.scale
        self.params_ = BetaGeoParams(*map(float, base))
        self.gamma_purchase_ = theta[4 : 4 + kp].copy()
        self.gamma_dropout_ = theta[4 + kp :].copy()
        self.coefficient_names_ = {"purchase": names_p, "dropout": names_d}
        self.log_likelihood_ = objective.log_likelihood(theta)
        self.covariance_ = covariance
        se = np.sqrt(np.maximum(np.diag(covariance), 0.0))
        se[:4] *= base  # delta method: se(p) = p se(log p)
        index = [*BASE_NAMES, *(f"purchase:{c}" for c in names_p), *(f"dropout:{c}" for c in names_d)]
        self.standard_errors_ = pd.Series(se, index=index)
        self.n_customers_ = float(w.sum())
        self.n_patterns_ = len(w)
        self.n_evaluations_ = solution.n_evaluations
        return self

    @property
    def n_params(self) -> int:
        return 4 + len(self.gamma_purchase_) + len(self.gamma_dropout_)

    def customer_params(self, n: int, z_purchase=None, z_dropout=None) -> BetaGeoParams:
        """BetaGeoParams of ``n`` customers: ``alpha, a, b`` are arrays, one per customer (the bgnbd formulas
        broadcast over them)."""
        zp, _ = _covariates(z_purchase, n, "purchase")
        zd, _ = _covariates(z_dropout, n, "dropout")
        if zp.shape[1] != len(self.gamma_purchase_) or zd.shape[1] != len(self.gamma_dropout_):
            raise CrmvalueError(
                f"{self.label}: fitted with {len(self.gamma_purchase_)} purchase and {len(self.gamma_dropout_)} "
                f"dropout covariates, given {zp.shape[1]} and {zd.shape[1]}"
            )
        return per_customer_params(self.params_, self.gamma_purchase_, self.gamma_dropout_, zp, zd)

    def p_alive(self, frequency, recency, T, z_purchase=None, z_dropout=None) -> np.ndarray:
        x, t_x, T_ = _history(frequency, recency, T)
        return p_alive(self.customer_params(len(x), z_purchase, z_dropout), x, t_x, T_)

    def expected_purchases(self, t, frequency, recency, T, z_purchase=None, z_dropout=None) -> np.ndarray:
        """E[Y(t) | x, t_x, T, z]: expected repeat purchases in the next ``t`` per customer."""
        x, t_x, T_ = _history(frequency, recency, T)
        return expected_purchases(self.customer_params(len(x), z_purchase, z_dropout), t, x, t_x, T_)


def per_customer_params(params: BetaGeoParams, gamma_purchase, gamma_dropout, z_purchase, z_dropout) -> BetaGeoParams:
    """``BetaGeoParams(r, alpha_i, a_i, b_i)`` with arrays for ``alpha, a, b`` (see the module docstring);
    ``z_purchase`` and ``z_dropout`` are n x k matrices."""
    purchase = np.exp(-np.asarray(z_purchase, float) @ np.asarray(gamma_purchase, float).reshape(-1))
    dropout = np.exp(np.asarray(z_dropout, float) @ np.asarray(gamma_dropout, float).reshape(-1))
    values: dict[str, Any] = {
        "r": params.r,
        "alpha": params.alpha * purchase,
        "a": params.a * dropout,
        "b": params.b * dropout,
    }
    return BetaGeoParams(**values)


def simulate_with_covariates(
    params: BetaGeoParams, gamma_purchase, gamma_dropout, z_purchase, z_dropout, T, seed: int | None = None
) -> pd.DataFrame:
    """One customer per entry of ``T``, each drawn exactly from BG/NBD with her own ``alpha_i, a_i, b_i``
    (:func:`crmvalue.models.bgnbd.simulate_beta_geo_summary`, whose draws broadcast over arrays of parameters):
    columns ``frequency, recency, T``."""
    T_ = np.asarray(T, float).reshape(-1)
    zp, _ = _covariates(z_purchase, len(T_), "purchase")
    zd, _ = _covariates(z_dropout, len(T_), "dropout")
    if zp.shape[1] != len(np.atleast_1d(gamma_purchase)) or zd.shape[1] != len(np.atleast_1d(gamma_dropout)):
        raise CrmvalueError("simulate_with_covariates: one coefficient per covariate column is needed")
    own = per_customer_params(params, gamma_purchase, gamma_dropout, zp, zd)
    return simulate_beta_geo_summary(own, T_, seed, dropout_at_first_purchase=False)
