"""Pareto/NBD with time-invariant covariates, in CLVTools' convention (Fader and Hardie 2007,
"Incorporating time-invariant covariates into the Pareto/NBD and BG/NBD models", brucehardie.com note 019;
CLVTools' ``pnbd`` with static covariates).

Customer ``i``'s purchase rate is ``lambda_i ~ Gamma(r, alpha_i)`` and her dropout rate
``mu_i ~ Gamma(s, beta_i)`` with::

    alpha_i = alpha * exp(-gamma_purchase . z_p,i)      (r is shared)
    beta_i  = beta  * exp(-gamma_dropout  . z_d,i)      (s is shared)

so a positive ``gamma_purchase`` raises the mean purchase rate ``r / alpha_i`` and a positive
``gamma_dropout`` the mean dropout rate ``s / beta_i``, each by the factor ``exp(gamma . z)``. Given
``(r, alpha_i, s, beta_i)`` everything is plain Pareto/NBD (:mod:`crmvalue.models.paretonbd`): likelihood,
P(alive), expected purchases, DERT.

Estimation is maximum likelihood in ``beta = (log r, log alpha, log s, log beta, gamma_purchase,
gamma_dropout)``, alpha and beta in scaled time (the longest ``T`` is 1), by the chain rule and the estimator
of :mod:`crmvalue.models.covariates` (``trust-exact`` with the exact Hessian from the plain Pareto/NBD optimum,
coefficients 0, Newton-polished to a gradient below 1e-10; above 40,000 distinct rows from the same fit on a
systematic subsample of 10,000, then Newton steps on every row). The per-row likelihood is
:mod:`crmvalue.models.paretonbd_objective`'s: ``L = Gamma(r+x) alpha^r beta^s / Gamma(r) [E + s I]``, the
dead-before-``T`` integral ``I`` and the moments that give its derivatives by the tanh-sinh rule of
:mod:`crmvalue.models.paretonbd_integral` in the variable that absorbs a heavy buyer's steep power, here with
each row's own ``alpha_i, beta_i`` (so nothing overflows for ``x`` in the thousands). ``penalizer`` is the
penalty of :class:`crmvalue.models.covariates.CovariateObjective` (mean objective), not lifetimes'
Pareto/NBD one.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, gammaln

from crmvalue.models.bgnbd_covariates import trigamma
from crmvalue.models.covariates import CovariateModel, CovariateObjective
from crmvalue.models.paretonbd import ParetoNBDParams
from crmvalue.models.paretonbd_integral import CHUNK, node_chunk
from crmvalue.models.paretonbd_objective import fit_pareto_nbd


class ParetoNBDCovariateObjective(CovariateObjective):
    """Mean negative log-likelihood (plus penalty) of Pareto/NBD with covariates, its gradient and Hessian in
    ``beta`` (see the module docstring); local parameters ``(r, alpha_i, s, beta_i)``."""

    dropout_signs = {3: -1.0}
    time_scaled = (1, 3)
    chunk = CHUNK  # rows x 161 nodes per array
    warm_start_rows, subsample = 40_000, 10_000  # a row costs ten BG/NBD rows: start from a smaller subsample

    def row_terms(self, p: np.ndarray, rows: slice, derivatives: bool):
        r, s = float(p[0, 0]), float(p[0, 2])  # shared by every row
        alpha, beta = p[:, 1], p[:, 3]
        x, t_x, T = self.x[rows], self.t_x[rows], self.T[rows]
        codes, ux = self.x_codes[rows], self.distinct_x
        log_I, mean, second = node_chunk(r, alpha, s, beta, x, t_x, T)  # one alpha_i, beta_i per row
        pp, q = r + x, s + 1.0
        log_E = -pp * np.log(alpha + T) - s * np.log(beta + T)
        log_D = np.log(s) + log_I
        log_L = np.logaddexp(log_E, log_D)
        ll = (gammaln(r + ux) - gammaln(r))[codes] + r * np.log(alpha) + s * np.log(beta) + log_L
        if not derivatives:
            return ll
        rho = np.exp(log_D - log_L)  # the share of "dropped out before T"
        dead = rho > 0  # rows with t_x = T have no moments
        mean = np.where(dead[:, None], mean, 0.0)
        second = np.where(dead[:, None, None], second, 0.0)
        g_const = np.column_stack(
            [(digamma(r + ux) - digamma(r))[codes] + np.log(alpha), r / alpha, np.log(beta), s / beta]
        )
        g_E = np.column_stack([-np.log(alpha + T), -pp / (alpha + T), -np.log(beta + T), -s / (beta + T)])
        g_D = mean + np.array([0.0, 0.0, 1.0 / s, 0.0])
        g_mix = (1 - rho)[:, None] * g_E + rho[:, None] * g_D
        # Hessian: the terms without the mixture, each part's own curvature, and the mixture's spread
        H = np.zeros((len(x), 4, 4))
        H[:, 0, 0] = (trigamma(r + ux) - trigamma(r))[codes]
        H[:, 0, 1] = 1.0 / alpha - (1 - rho) / (alpha + T) + rho * mean[:, 1] / pp
        H[:, 1, 1] = -r / alpha**2 + (1 - rho) * pp / (alpha + T) ** 2 + rho * second[:, 1, 1] / pp
        H[:, 2, 3] = 1.0 / beta - (1 - rho) / (beta + T) + rho * mean[:, 3] / q
        H[:, 3, 3] = -s / beta**2 + (1 - rho) * s / (beta + T) ** 2 + rho * second[:, 3, 3] / q
        H[:, 2, 2] = -rho / s**2
        H[:, 1, 0], H[:, 3, 2] = H[:, 0, 1], H[:, 2, 3]
        H += rho[:, None, None] * (second - mean[:, :, None] * mean[:, None, :])  # covariance of grad log f
        H += (1 - rho)[:, None, None] * g_E[:, :, None] * g_E[:, None, :]
        H += rho[:, None, None] * g_D[:, :, None] * g_D[:, None, :]
        H -= g_mix[:, :, None] * g_mix[:, None, :]
        return ll, g_const + g_mix, H


class ParetoNBDCovariateModel(CovariateModel):
    """Pareto/NBD with time-invariant covariates (see the module docstring); the interface of
    :class:`crmvalue.models.bgnbd_covariates.BetaGeoCovariateModel`, with ``ParetoNBDParams`` (whose
    ``customer_params`` has arrays for ``alpha`` and ``beta``; the paretonbd formulas, DERT included,
    broadcast over them)."""

    name = "paretonbd"
    label = "Pareto/NBD with covariates"
    params_class = ParetoNBDParams
    objective_class = ParetoNBDCovariateObjective

    def plain_start(self, x, t_x, T, w) -> np.ndarray:
        return fit_pareto_nbd(x, t_x, T, w, self.penalizer).log_params


def simulate_with_covariates(
    params: ParetoNBDParams, gamma_purchase, gamma_dropout, z_purchase, z_dropout, T, seed: int | None = None
):
    """One customer per entry of ``T``, each drawn exactly from Pareto/NBD with her own ``alpha_i, beta_i``
    (``ParetoNBDParams.simulate_summary`` broadcasts over arrays of parameters): columns
    ``frequency, recency, T``."""
    return ParetoNBDCovariateModel.simulate(params, gamma_purchase, gamma_dropout, z_purchase, z_dropout, T, seed)
