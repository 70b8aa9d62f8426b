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
``eta_i`` (the formulas of :mod:`crmvalue.models.beta_geo_fit`, evaluated per row; the chain rule and the
estimator are :mod:`crmvalue.models.covariates`', shared with MBG/NBD and Pareto/NBD). The fit is
``trust-exact`` from the plain BG/NBD optimum (coefficients 0) and Newton-polished to a gradient below
1e-10; standard errors are the inverse observed information (delta method for ``r, alpha, a, b``).
Rows with the same ``(x, t_x, T, z_p, z_d)`` are fitted once with their count as weight, so
categorical covariates still compress. ``penalizer`` is lifetimes' L2 penalty on ``(r, alpha, a, b)``
in scaled time plus the same penalty on the coefficients (mean objective). A fit on more than 200,000
distinct rows starts where the same fit on a systematic subsample of 50,000 ends.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.special import digamma, gammaln, zeta

from crmvalue.models.beta_geo_fit import fit_beta_geo
from crmvalue.models.bgnbd import BetaGeoParams
from crmvalue.models.covariates import CovariateModel, CovariateObjective

BASE_NAMES = ("r", "alpha", "a", "b")


def trigamma(values):
    """psi'(x) = zeta(2, x): the same numbers as ``polygamma(1, x)``, without its dispatch."""
    return zeta(2.0, values)


# below this many terms, the differences of log-gamma, digamma and trigamma over n steps are summed directly
SHORT_SUM = 8


def rising_sums(c: np.ndarray, n: np.ndarray, derivatives: bool = True):
    """``sum_{j<n} log(c+j)``, ``sum 1/(c+j)`` and ``sum 1/(c+j)^2`` per row: ``lgG(c+n) - lgG(c)``, ``psi(c+n) -
    psi(c)`` and ``psi'(c) - psi'(c+n)``. Most customers make few purchases, so the short sums replace most
    evaluations of the special functions (the slowest part of the per-row terms); long rows use them."""
    logs, first, second = np.zeros(len(c)), np.zeros(len(c)), np.zeros(len(c))
    rows = np.flatnonzero(n > 0)
    for j in range(SHORT_SUM):
        rows = rows[n[rows] > j]  # the rows with a j-th term: fewer at every step
        term = c[rows] + j
        logs[rows] += np.log(term)
        if derivatives:
            inv = 1.0 / term
            first[rows] += inv
            second[rows] += inv * inv
    long = np.flatnonzero(n > SHORT_SUM)
    if len(long):
        cl, nl = c[long], n[long]
        logs[long] = gammaln(cl + nl) - gammaln(cl)
        if derivatives:
            first[long] = digamma(cl + nl) - digamma(cl)
            second[long] = trigamma(cl) - trigamma(cl + nl)
    return logs, first, second


class BetaGeoCovariateObjective(CovariateObjective):
    """Mean negative log-likelihood (plus penalty) of BG/NBD with covariates, its gradient and Hessian in ``beta``.

    ``frequency, recency, T, weights`` are one value per row, ``z_purchase`` (n x k_p) and
    ``z_dropout`` (n x k_d) the rows' covariates; rows may stand for several customers (``weights``).
    With ``modified`` (a class attribute), MBG/NBD: ``k = 1`` in the likelihood of
    :mod:`crmvalue.models.beta_geo_fit`, so every row has the 'dropped out right after t_x' term.
    """

    modified: ClassVar[bool] = False

    def row_terms(self, p: np.ndarray, rows: slice, derivatives: bool):
        _, alpha, a, b = p.T
        r = float(p[0, 0])  # shared by every row
        k = 1.0 if self.modified else 0.0
        x, t_x, T = self.x[rows], self.t_x[rows], self.T[rows]
        codes, ux = self.x_codes[rows], self.distinct_x
        m = np.ones(len(x), bool) if self.modified else x > 0  # rows with the 'dropped out right after t_x' term
        log_T, log_t = np.log(alpha + T), np.log(alpha + t_x)
        d = log_T - log_t
        b_x = b + np.maximum(x, 1.0 - k) - 1.0 + k
        z = r + x
        u = z * d + np.log(a) - np.log(b_x)
        e = np.exp(-np.abs(u))
        inv_1e = 1.0 / (1.0 + e)
        s = np.where(m, np.where(u >= 0, inv_1e, e * inv_1e), 0.0)  # expit(u), 0 where there is no term
        # the Beta function terms, B(a, b + x + k) / B(a, b), as sums over the x + k steps from b and from a + b
        log_b, psi_b, tri_b = rising_sums(b, x + k, derivatives)
        log_ab, psi_ab, tri_ab = rising_sums(a + b, x + k, derivatives)
        ll = (
            (gammaln(r + ux) - gammaln(r))[codes]
            + r * np.log(alpha)
            + log_b
            - log_ab
            - z * log_T
            + np.where(m, np.maximum(u, 0.0) + np.log1p(e), 0.0)
        )
        if not derivatives:
            return ll
        q = np.where(m, e * inv_1e * inv_1e, 0.0)  # s (1 - s)
        inv_T, inv_t = 1.0 / (alpha + T), 1.0 / (alpha + t_x)
        g, h = inv_T - inv_t, inv_t**2 - inv_T**2
        zg = z * g
        grad = np.column_stack(
            [
                (digamma(r + ux) - digamma(r))[codes] + np.log(alpha) - log_T + s * d,
                r / alpha - z * inv_T + s * zg,
                -psi_ab + s / a,
                psi_b - psi_ab - s / b_x,
            ]
        )
        H = np.empty((len(x), 4, 4))
        H[:, 0, 0] = (trigamma(r + ux) - trigamma(r))[codes] + q * d * d
        H[:, 0, 1] = 1.0 / alpha - inv_T + q * d * zg + s * g
        H[:, 1, 1] = -r / alpha**2 + z * inv_T**2 + q * zg * zg + s * z * h
        H[:, 0, 2] = q * d / a
        H[:, 0, 3] = -q * d / b_x
        H[:, 1, 2] = q * zg / a
        H[:, 1, 3] = -q * zg / b_x
        H[:, 2, 2] = tri_ab + (q - s) / a**2
        H[:, 2, 3] = tri_ab - q / (a * b_x)
        H[:, 3, 3] = tri_ab - tri_b + (q + s) / b_x**2
        for j, i in ((1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2)):
            H[:, j, i] = H[:, i, j]
        return ll, grad, H


class BetaGeoCovariateModel(CovariateModel):
    """BG/NBD with time-invariant covariates on the purchase rate and the dropout (see the module docstring).

    After ``fit``: ``params_`` (``BetaGeoParams`` of the reference customer, z = 0, in the data's time
    unit), ``gamma_purchase_``, ``gamma_dropout_``, ``coefficient_names_`` (``{"purchase": [...],
    "dropout": [...]}``, a DataFrame's columns or ``purchase_1, ...``), ``log_likelihood_``,
    ``standard_errors_`` (a Series over ``r, alpha, a, b, purchase:<name>..., dropout:<name>...``),
    ``covariance_`` (of ``beta``), ``n_customers_``, ``n_patterns_``. ``customer_params(n, z_p, z_d)`` is a
    ``BetaGeoParams`` with arrays for ``alpha, a, b`` (the bgnbd formulas broadcast over them).
    """

    name = "bgnbd"
    label = "BG/NBD with covariates"
    params_class: ClassVar[Any] = BetaGeoParams
    objective_class: ClassVar[type[BetaGeoCovariateObjective]] = BetaGeoCovariateObjective

    def plain_start(self, x, t_x, T, w) -> np.ndarray:
        return fit_beta_geo(x, t_x, T, w, self.penalizer, modified=self.objective_class.modified).log_params


def per_customer_params(params: BetaGeoParams, gamma_purchase, gamma_dropout, z_purchase, z_dropout) -> BetaGeoParams:
    """``BetaGeoParams(r, alpha_i, a_i, b_i)`` with arrays for ``alpha, a, b`` (see the module docstring);
    ``z_purchase`` and ``z_dropout`` are n x k matrices."""
    return BetaGeoCovariateModel.own_params(params, gamma_purchase, gamma_dropout, z_purchase, z_dropout)


def simulate_with_covariates(
    params: BetaGeoParams, gamma_purchase, gamma_dropout, z_purchase, z_dropout, T, seed: int | None = None
):
    """One customer per entry of ``T``, each drawn exactly from BG/NBD with her own ``alpha_i, a_i, b_i``
    (:func:`crmvalue.models.bgnbd.simulate_beta_geo_summary`, whose draws broadcast over arrays of parameters):
    columns ``frequency, recency, T``."""
    return BetaGeoCovariateModel.simulate(params, gamma_purchase, gamma_dropout, z_purchase, z_dropout, T, seed)
