"""Gamma-Gamma with time-invariant covariates on its scale: each customer's spend level moves with her attributes.

Spend per transaction ~ Gamma(p, nu_i), nu_i ~ Gamma(q, v_i) with ``v_i = v exp(kappa . z_i)``, so a customer's
expected mean spend ``p v_i / (q - 1)`` is the reference customer's (every covariate 0) times ``exp(kappa . z_i)``;
``p`` (the spread of a customer's own transactions) and ``q`` (how much customers differ around their level) are
shared. With ``kappa = 0`` it is the plain model (:mod:`crmvalue.models.gamma_gamma`, lifetimes' objective). Every
prediction is the plain model's with the customer's own ``v_i``.

In the log-parameters ``eta_i = (log p, log q, log v_i)`` of a row, ``log v_i = log v + kappa . z_i`` is linear in
``theta = (log p, log q, log v, kappa)``, so the gradient is ``sum_i w_i J_i' g_i`` and the Hessian
``sum_i w_i J_i' H_i J_i`` with ``J_i = [I_3 | e_3 z_i']``, from the per-row derivatives (Fader and Hardie 2013, eq. 1a)::

    l   = lgG(px+q) - lgG(px) - lgG(q) + q u + (px-1) log m + px log x - (px+q) log(e^u + x m),  u = log v_i
    l_u = q - (px+q) r,   r = v_i / (v_i + x m)
    l_uu = -(px+q) r (1 - r),   l_pu = -x r,   l_qu = 1 - r

(the derivatives in p and q are the plain model's).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln, polygamma

from crmvalue.errors import CrmvalueError
from crmvalue.features import checked_weights
from crmvalue.models.covariates import covariate_matrix, magnitudes
from crmvalue.models.gamma_gamma import MIN_REPEAT_BUYERS, GammaGammaModel, GammaGammaParams, expected_average_value
from crmvalue.models.objective import MAX_LOG_SE, RIDGE_LADDER, NewtonObjective, solve

NAMES = ("p", "q", "v")


class GammaGammaCovariateObjective(NewtonObjective):
    """Mean negative log-likelihood of the repeat buyers' mean spends, plus lifetimes' penalty on ``p, q, v`` and
    the same on the coefficients, with its gradient and Hessian in ``theta = (log p, log q, log v, kappa)``."""

    def __init__(self, frequency, monetary_value, weights, z, penalizer: float = 0.0):
        self.x, self.m, self.w = (np.asarray(a, float) for a in (frequency, monetary_value, weights))
        self.z = np.asarray(z, float).reshape(len(self.x), -1)
        self.k = self.z.shape[1]
        self.penalizer, self.W = float(penalizer), float(self.w.sum())
        self.xm = self.x * self.m
        self.log_m, self.log_x = np.log(self.m), np.log(self.x)
        codes, distinct = pd.factorize(self.x)  # the special functions of p x: once per distinct x
        self.codes, self.ux = codes, np.asarray(distinct, float)

    def rows(self, theta: np.ndarray, derivatives: bool = True):
        """Per-row log-likelihood and, with ``derivatives``, its gradient (n x 3) and Hessian (n x 3 x 3) in
        ``eta_i = (log p, log q, log v_i)``."""
        p, q, v = np.exp(theta[:3])
        u = np.log(v) + self.z @ theta[3:]
        vi = np.exp(u)
        px, a = p * self.ux, p * self.ux + q
        log_vxm = np.logaddexp(u, np.log(self.xm))
        ll = (
            (gammaln(a) - gammaln(px))[self.codes]
            - gammaln(q)
            + q * u
            + (p * self.x - 1) * self.log_m
            + p * self.x * self.log_x
            - a[self.codes] * log_vxm
        )
        if not derivatives:
            return ll
        x, c = self.x, self.codes
        r = vi / (vi + self.xm)
        psi_a, tri_a = digamma(a)[c], polygamma(1, a)[c]
        l_p = x * ((digamma(a) - digamma(px))[c] + np.log(self.xm) - log_vxm)
        l_q = psi_a - digamma(q) + u - log_vxm
        l_u = q - a[c] * r
        grad = np.column_stack([p * l_p, q * l_q, l_u])
        H = np.empty((len(x), 3, 3))
        H[:, 0, 0] = p * p * x * x * (tri_a - polygamma(1, px)[c]) + p * l_p
        H[:, 0, 1] = H[:, 1, 0] = p * q * x * tri_a
        H[:, 1, 1] = q * q * (tri_a - polygamma(1, q)) + q * l_q
        H[:, 0, 2] = H[:, 2, 0] = -p * x * r
        H[:, 1, 2] = H[:, 2, 1] = q * (1 - r)
        H[:, 2, 2] = -a[c] * r * (1 - r)
        return ll, grad, H

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        ll, g, H = self.rows(theta)
        w, z, K = self.w, self.z, 3 + self.k
        gradient, hessian = np.zeros(K), np.zeros((K, K))
        gradient[:3] = w @ g
        gradient[3:] = z.T @ (w * g[:, 2])
        hessian[:3, :3] = (w @ H.reshape(-1, 9)).reshape(3, 3)
        hessian[:3, 3:] = (w[:, None] * H[:, :, 2]).T @ z
        hessian[3:, :3] = hessian[:3, 3:].T
        hessian[3:, 3:] = z.T @ (z * (w * H[:, 2, 2])[:, None])
        values = np.concatenate([np.exp(theta[:3]), theta[3:]])
        slope = 2 * np.concatenate([values[:3] ** 2, theta[3:]])
        curve = np.concatenate([4 * values[:3] ** 2, np.full(self.k, 2.0)])
        c = self.penalizer
        return (
            float(-(w @ ll) / self.W + self.penalty(theta)),
            -gradient / self.W + c * slope,
            -hessian / self.W + c * np.diag(curve),
        )

    def penalty(self, theta: np.ndarray) -> float:
        values = np.concatenate([np.exp(theta[:3]), theta[3:]])
        return self.penalizer * float(values @ values)


class GammaGammaCovariateModel:
    """Gamma-Gamma with covariates on its scale ``v`` (see the module docstring), fitted by Newton steps with the
    analytic gradient and Hessian, from the plain fit with every coefficient at 0.

    Attributes after :meth:`fit`: ``params_`` (the reference customer's ``p, q, v``), ``gamma_`` (the coefficients),
    ``coefficient_names_``, ``log_likelihood_``, ``standard_errors_`` (``p, q, v``, then ``spend:<name>``),
    ``covariance_`` (of ``theta``), ``n_customers_``, ``penalizer_used_`` (the ridge a boundary fit needed, else 0),
    ``warning_``, ``plain_log_likelihood_`` (the plain fit on the same buyers, where the fit starts) and
    ``frequency_spend_correlation_``. A covariate column of extreme magnitude is fitted divided by a power of two near its largest
    value, as in :class:`crmvalue.models.covariates.CovariateModel`.
    """

    label = "Gamma-Gamma"

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    def fit(self, frequency, monetary_value, z, weights=None) -> GammaGammaCovariateModel:
        """Fit on the repeat buyers (``frequency > 0``, positive ``monetary_value``) of one row per customer, with
        ``z`` one covariate row per customer (a DataFrame names the coefficients)."""
        x, m = np.asarray(frequency, float).reshape(-1), np.asarray(monetary_value, float).reshape(-1)
        zz, names = covariate_matrix(z, len(x), "spend")
        w = np.ones_like(x) if weights is None else checked_weights(weights, len(x)).astype(float)
        keep = (x > 0) & (m > 0) & (w > 0) & np.isfinite(m)
        x, m, w, zz = x[keep], m[keep], w[keep], zz[keep]
        if w.sum() < MIN_REPEAT_BUYERS:
            raise CrmvalueError(
                f"Gamma-Gamma with covariates: {int(w.sum())} repeat buyers with positive spend, fewer than "
                f"{MIN_REPEAT_BUYERS}; fit it without spend covariates"
            )
        flat = [name for name, column in zip(names, zz.T) if column.min() == column.max()]
        if flat:
            raise CrmvalueError(
                f"Gamma-Gamma with covariates: spend covariate {flat[0]} does not vary among the repeat buyers, "
                "so its effect is not identified"
            )
        plain = GammaGammaModel(self.penalizer).fit(x, m, w)
        sizes = magnitudes(zz)
        objective = GammaGammaCovariateObjective(x, m, w, zz / sizes, self.penalizer)
        objective.centre = np.concatenate([np.log(list(plain.params_.as_dict().values())), np.zeros(zz.shape[1])])
        why = ""
        for ridge in (0.0, *RIDGE_LADDER):
            objective.ridge, objective._cache = ridge, None
            solution = solve(objective, objective.centre)
            found = self._not_interior(solution, objective)
            if found is None:
                break
            why = why or found
        else:
            raise CrmvalueError(f"Gamma-Gamma with covariates: {why}; no ridge up to {RIDGE_LADDER[-1]:g} helps")
        self.penalizer_used_ = ridge
        self.warning_ = (
            f"Gamma-Gamma with covariates: {why}; refitted with a ridge of {ridge:g}, the first interior fit"
            if ridge
            else None
        )
        theta = solution.theta
        covariance = np.linalg.inv(solution.hessian) / objective.W
        self.log_likelihood_ = float(objective.rows(theta, derivatives=False) @ w)
        # the same buyers without covariates (the start), for the likelihood-ratio test
        self.plain_log_likelihood_ = float(objective.rows(objective.centre, derivatives=False) @ w)
        self.frequency_spend_correlation_ = plain.frequency_spend_correlation_
        scale = np.concatenate([np.ones(3), sizes])
        theta, covariance = theta / scale, covariance / np.outer(scale, scale)  # kappa in the covariates' own units
        self.params_ = GammaGammaParams(*map(float, np.exp(theta[:3])))
        self.gamma_ = theta[3:].copy()
        self.coefficient_names_ = names
        self.covariance_ = covariance
        se = np.sqrt(np.maximum(np.diag(covariance), 0.0))
        se[:3] *= np.exp(theta[:3])  # delta method
        self.standard_errors_ = pd.Series(se, index=[*NAMES, *(f"spend:{n}" for n in names)])
        self.n_customers_ = int(round(w.sum()))
        return self

    @staticmethod
    def _not_interior(solution, objective: GammaGammaCovariateObjective) -> str | None:
        """Why a fit is not usable, or None: it must converge, have q > 1 (a finite mean spend), a positive
        definite Hessian, and no log-scale standard error above :data:`MAX_LOG_SE`."""
        if not solution.converged:
            return f"the optimiser did not converge ({solution.message})"
        if np.exp(solution.theta[1]) <= 1:
            return f"q = {np.exp(solution.theta[1]):.3g} <= 1, so the mean spend is undefined"
        try:
            eigenvalues = np.linalg.eigvalsh(solution.hessian)
        except np.linalg.LinAlgError:
            return "the Hessian cannot be factorised"
        if not np.all(eigenvalues > 0):
            return "the Hessian is not positive definite at the estimate"
        log_se = np.sqrt(np.diag(np.linalg.inv(solution.hessian)) / objective.W)
        spread = np.concatenate([np.ones(3), objective.z.std(axis=0)])  # a coefficient: per deviation
        bad = ~(np.isfinite(log_se * spread) & (log_se * spread <= MAX_LOG_SE))
        if bad.any():
            first = int(np.argmax(bad))
            return f"parameter {first + 1} has a log-scale standard error of {(log_se * spread)[first]:.3g}"
        return None

    @property
    def n_params(self) -> int:
        return 3 + len(self.gamma_)

    def customer_params(self, z) -> GammaGammaParams:
        """The plain parameters of customers with covariates ``z`` (one row each): ``v`` is an array."""
        zz, _ = covariate_matrix(z, len(z), "spend")
        if zz.shape[1] != len(self.gamma_):
            raise CrmvalueError(f"Gamma-Gamma: fitted with {len(self.gamma_)} spend covariates, given {zz.shape[1]}")
        return own_params(self.params_, self.gamma_, zz)

    def expected_average_value(self, frequency, monetary_value, z) -> np.ndarray:
        """E[M | x, m_x, z]: the plain formula with each customer's own ``v_i``."""
        return np.asarray(expected_average_value(self.customer_params(z), frequency, monetary_value))


def own_params(params: GammaGammaParams, gamma, z) -> GammaGammaParams:
    """``params`` with ``v`` replaced by the customers' own ``v exp(gamma . z_i)`` (an array, one per row of ``z``)."""
    effect = np.asarray(z, float).reshape(np.shape(z)[0], -1) @ np.asarray(gamma, float).reshape(-1)
    return GammaGammaParams(params.p, params.q, params.v * np.exp(effect))


def simulate_spend(params: GammaGammaParams, gamma, z, frequency, seed=None) -> np.ndarray:
    """Each customer's mean spend over her ``frequency`` repeat transactions, drawn exactly from the model:
    ``nu_i ~ Gamma(q, rate v_i)``, and the sum of ``x`` spends ~ Gamma(p x, rate nu_i). 0 where ``frequency`` is 0."""
    rng = np.random.default_rng(seed)
    x = np.asarray(frequency, float)
    v = own_params(params, gamma, z).v
    nu = rng.gamma(params.q, 1.0 / np.asarray(v, float), size=x.shape)
    total = rng.gamma(np.maximum(params.p * x, 1e-300), 1.0 / nu)
    return np.where(x > 0, total / np.maximum(x, 1), 0.0)
