"""Pareto/NBD purchase model (Schmittlein, Morrison and Colombo 1987). Fitted by crmvalue's own maximum-likelihood
optimiser (:mod:`crmvalue.models.paretonbd_objective`), predicted here with a hypergeometric term that stays
finite for heavy buyers; the discounted expected residual transactions (DERT) of Fader, Hardie and Lee (2005).

References
----------
Schmittlein, D. C., Morrison, D. G. and Colombo, R. (1987), "Counting Your Customers: Who Are
They and What Will They Do Next?", Management Science 33 (1), 1-24.
Fader, P. S. and Hardie, B. G. S. (2005), "A Note on Deriving the Pareto/NBD Model and Related
Expressions", http://brucehardie.com/notes/009/.
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base
Analysis", Journal of Marketing Research 42 (4), 415-430.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.special import betaln, expit, exprel, gammaln, hyp2f1, hyperu, logsumexp, xlogy

from crmvalue.models.base import PurchaseDraws, PurchaseModel, PurchaseParams, negative_binomial_log_pmf
from crmvalue.models.objective import FitAttempt
from crmvalue.models.paretonbd_objective import fit_pareto_nbd


@dataclass(frozen=True)
class ParetoNBDParams(PurchaseParams):
    """Pareto/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout rate ~ Gamma(s, beta)."""

    name: ClassVar[str] = "paretonbd"
    label: ClassVar[str] = "Pareto/NBD"
    time_scale_params: ClassVar[tuple[str, ...]] = ("alpha", "beta")
    r: float
    alpha: float
    s: float
    beta: float

    def _log_A0(self, x, t_x, T) -> np.ndarray:
        """log A_0, Fader-Hardie note 009 eqs. (19)-(20), each term via Euler's transformation.

        ``2F1(A, B; A+1; z) = (1-z)^(1-B) 2F1(1, A+1-B; A+1; z)`` with ``A = r+s+x``: the
        right-hand series has bounded coefficients, so heavy buyers do not overflow.
        """
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        # np.where, not if: parameters may be arrays of bootstrap draws
        alpha_high = np.asarray(alpha) >= np.asarray(beta)
        low = np.where(alpha_high, beta, alpha)
        high = np.where(alpha_high, alpha, beta)
        B = np.where(alpha_high, s + 1.0, r + x)
        A = r + s + x

        def log_term(t):
            z = (high - low) / (high + t)
            return (
                (1.0 - B) * np.log((low + t) / (high + t))
                + np.log(hyp2f1(1.0, A + 1.0 - B, A + 1.0, z))
                - A * np.log(high + t)
            )

        first, second = log_term(t_x), log_term(T)
        with np.errstate(divide="ignore"):
            return first + np.log1p(-np.exp(np.minimum(second - first, 0.0)))

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """1 / (1 + s/(r+s+x) (alpha+T)^(r+x) (beta+T)^s A_0), note 009 eq. (36), in log space."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        x = np.asarray(frequency, float)
        T_ = np.asarray(T, float)
        log_odds_dead = (
            np.log(s)
            - np.log(r + s + x)
            + (r + x) * np.log(alpha + T_)
            + s * np.log(beta + T_)
            + self._log_A0(x, np.asarray(recency, float), T_)
        )
        return expit(-log_odds_dead)

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[Y(t) | x, t_x, T] = (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T)/(beta+T+t))^(s-1)] P(alive)."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        t = np.asarray(t, float)
        x = np.asarray(frequency, float)
        T_ = np.asarray(T, float)
        # (1 - q^(s-1))/(s-1) = -log(q) exprel((s-1) log q): accurate when s is near 1, and finite at s = 1
        log_q = np.log((beta + T_) / (beta + T_ + t))
        horizon = -log_q * exprel((s - 1) * log_q)
        return (r + x) * (beta + T_) / (alpha + T_) * horizon * self.p_alive(x, recency, T_)

    def expected_purchases_unconditional(self, t) -> np.ndarray:
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        t = np.asarray(t, float)
        log_q = np.log(beta / (beta + t))
        return r * beta / alpha * (-log_q * exprel((s - 1) * log_q))

    def dert(self, discount, frequency, recency, T) -> np.ndarray:
        """Discounted expected residual transactions at continuous discount rate ``discount`` per time unit
        (Fader, Hardie and Lee 2005, eq. 2), in log space::

            DERT = alpha^r beta^s delta^(s-1) Gamma(r+x+1) U(s, s; delta (beta+T))
                   / (Gamma(r) (alpha+T)^(r+x+1) L(r, alpha, s, beta | x, t_x, T))

        with ``U`` Tricomi's confluent hypergeometric function. It equals ``P(alive) (r+x)/(alpha+T)
        int_0^inf exp(-delta t) ((beta+T)/(beta+T+t))^s dt``.
        """
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        delta = np.asarray(discount, float)
        x = np.asarray(frequency, float)
        T_ = np.asarray(T, float)
        log_dert = (
            r * np.log(alpha)
            + s * np.log(beta)
            + (s - 1) * np.log(delta)
            + gammaln(r + x + 1)
            + np.log(hyperu(s, s, delta * (beta + T_)))
            - gammaln(r)
            - (r + x + 1) * np.log(alpha + T_)
            - self.per_customer_log_likelihood(x, recency, T_)
        )
        return np.exp(log_dert)

    def per_customer_log_likelihood(self, frequency, recency, T) -> np.ndarray:
        """Note 009 eq. (18)."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        x = np.asarray(frequency, float)
        T_ = np.asarray(T, float)
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        a2 = np.logaddexp(
            -(r + x) * np.log(alpha + T_) - s * np.log(beta + T_),
            np.log(s) + self._log_A0(x, np.asarray(recency, float), T_) - np.log(r + s + x),
        )
        return a1 + a2

    def probability_of_n_purchases(self, t, n) -> np.ndarray:
        """P(X(t) = n), Fader-Hardie (2020), note 012, vectorised over ``t`` and ``n``.

        ``P = NB(n; r, alpha, t) (beta/(beta+t))^s
        + alpha^r beta^s B(r+n, s+1)/B(r, s) [B1 - sum_{i=0}^{n} Gamma(r+s+i)/(Gamma(r+s) i!) t^i B2_i]``
        with, for ``alpha >= beta``, ``B1 = 2F1(r+s, s+1; r+s+n+1; (alpha-beta)/alpha) / alpha^(r+s)``
        and ``B2_i = 2F1(r+s+i, s+1; r+s+n+1; (alpha-beta)/(alpha+t)) / (alpha+t)^(r+s+i)`` (for
        ``alpha < beta`` swap the roles of alpha and beta and use ``r+n`` as the second 2F1
        parameter). The sum over ``i`` runs on an extra leading axis, in log space, so the cost
        grows as ``max(n)**2``: cheap for the few classes of a period-transactions table. Checked
        against a numerical integral of the model's definition; the subtraction leaves an
        absolute error of about 1e-17.
        """
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        t, n = np.broadcast_arrays(np.asarray(t, float), np.asarray(n, float))
        if t.size == 0:
            return np.zeros(t.shape)
        # elementwise, so the parameters may be arrays too (a covariate fit's groups of customers)
        largest, gap = np.maximum(alpha, beta), np.abs(np.subtract(alpha, beta))
        second = np.where(np.greater_equal(alpha, beta), s + 1, r + n)
        c = r + s + n + 1
        i = np.arange(int(n.max()) + 1, dtype=float).reshape((-1,) + (1,) * n.ndim)
        with np.errstate(divide="ignore", invalid="ignore"):
            alive = np.exp(negative_binomial_log_pmf(n, r, alpha, t) + s * np.log(beta / (beta + t)))
            log_b1 = np.log(hyp2f1(r + s, second, c, gap / largest)) - (r + s) * np.log(largest)
            log_b2 = (
                gammaln(r + s + i)
                - gammaln(r + s)
                - gammaln(i + 1)
                + xlogy(i, t)
                - (r + s + i) * np.log(largest + t)
                + np.log(hyp2f1(r + s + i, second, c, gap / (largest + t)))
            )
            log_b2 = logsumexp(np.where(i <= n, log_b2, -np.inf), axis=0)
            scale = np.exp(r * np.log(alpha) + s * np.log(beta) + betaln(r + n, s + 1) - betaln(r, s) + log_b1)
            # B1 - sum B2 = B1 (1 - exp(log sum B2 - log B1)), without forming either large number
            dead = scale * -np.expm1(log_b2 - log_b1)
        # for n in the hundreds the subtraction leaves round-off of ~1e-19 around a 0 probability
        return np.clip(alive + dead, 0.0, 1.0)

    def simulate_summary(self, T, seed: int | None = None) -> pd.DataFrame:
        """Pareto/NBD customers, exactly: ``lam ~ Gamma(r, 1/alpha)``, ``mu ~ Gamma(s, 1/beta)``, lifetime
        ``tau ~ Exp(mu)``; ``x ~ Poisson(lam min(tau, T))`` and ``t_x`` is the largest of ``x``
        uniform times on ``(0, min(tau, T))``."""
        rng = np.random.default_rng(seed)
        T = np.asarray(T, float)
        lam = rng.gamma(self.r, 1.0 / self.alpha, size=T.shape)
        mu = rng.gamma(self.s, 1.0 / self.beta, size=T.shape)
        active = np.minimum(rng.exponential(1.0 / mu), T)
        x = rng.poisson(lam * active)
        recency = np.where(x > 0, active * rng.uniform(size=T.shape) ** (1.0 / np.maximum(x, 1)), 0.0)
        return pd.DataFrame({"frequency": x.astype(float), "recency": recency, "T": T})

    def draw_purchases(self, rng: np.random.Generator, T: np.ndarray) -> PurchaseDraws:
        lam = rng.gamma(self.r, 1.0 / self.alpha, size=T.shape)
        mu = rng.gamma(self.s, 1.0 / self.beta, size=T.shape)
        window = np.minimum(rng.exponential(1.0 / mu), T)
        n = rng.poisson(lam * window)
        return PurchaseDraws(window=window, n=n, limit=n)


# the start of every fit, in scaled time (the largest T is 1): 1 for every parameter, as lifetimes' Nelder-Mead was given
LIFETIMES_START = np.ones(4)


class ParetoNBDModel(PurchaseModel):
    """Pareto/NBD fitted by crmvalue itself (:func:`crmvalue.models.paretonbd_objective.fit_pareto_nbd`:
    trust-exact with the analytic gradient and Hessian, polished by Newton steps) on the compressed
    (x, t_x, T) matrix, to the maximum of the likelihood (lifetimes' objective, so a user's penalizer acts as in
    lifetimes). The estimate must be an interior maximum (the boundary rule of :class:`PurchaseModel`); a
    boundary fit is refitted with the ridge on the log-parameters, by the same optimiser from the same start.
    ``lifetimes.ParetoNBDFitter`` is only the twin that gets the fitted ``params_``.
    """

    name = ParetoNBDParams.name
    label = ParetoNBDParams.label
    params_class = ParetoNBDParams
    family = "pareto_nbd"
    boundary_pairs = {("s", "beta"): "dropout-rate", ("r", "alpha"): "purchase-rate"}

    def lifetimes_twin(self):
        from lifetimes import ParetoNBDFitter

        return ParetoNBDFitter(penalizer_coef=self.penalizer)

    def _fit_compressed(self, fitter, rows: pd.DataFrame, ridge: float = 0.0) -> FitAttempt:
        x, t_x, T_, w = (rows[c].to_numpy(float) for c in ("frequency", "recency", "T", "weights"))
        fit = fit_pareto_nbd(x, t_x, T_, w, self.penalizer, start=np.log(LIFETIMES_START), ridge=ridge)
        fitter.params_ = pd.Series(fit.params)
        with np.errstate(all="ignore"):
            covariance = np.linalg.inv(fit.hessian) / fit.n_customers
        return FitAttempt(
            names=("r", "alpha", "s", "beta"),
            values=fit.params,
            offsets=fit.log_params,
            converged=fit.converged,
            log_likelihood=fit.log_likelihood,
            covariance=covariance,
            ridge=ridge,
            failure="" if fit.converged else fit.message,
            penalty=self.penalizer * float(np.exp(2 * fit.log_params).sum()) * fit.n_customers / len(w),
        )
