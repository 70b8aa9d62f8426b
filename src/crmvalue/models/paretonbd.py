"""Pareto/NBD purchase model (Schmittlein, Morrison and Colombo 1987). Fitted by lifetimes,
predicted here with a hypergeometric term that stays finite for heavy buyers.

References
----------
Schmittlein, D. C., Morrison, D. G. and Colombo, R. (1987), "Counting Your Customers: Who Are
They and What Will They Do Next?", Management Science 33 (1), 1-24.
Fader, P. S. and Hardie, B. G. S. (2005), "A Note on Deriving the Pareto/NBD Model and Related
Expressions", http://brucehardie.com/notes/009/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.special import expit, gammaln, hyp2f1

from crmvalue.models.base import PurchaseModel, PurchaseParams


@dataclass(frozen=True)
class ParetoNBDParams(PurchaseParams):
    """Pareto/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout rate ~ Gamma(s, beta)."""

    name: ClassVar[str] = "paretonbd"
    label: ClassVar[str] = "Pareto/NBD"
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
            return (1.0 - B) * np.log((low + t) / (high + t)) + np.log(hyp2f1(1.0, A + 1.0 - B, A + 1.0, z)) - A * np.log(high + t)

        first, second = log_term(t_x), log_term(T)
        with np.errstate(divide="ignore"):
            return first + np.log1p(-np.exp(np.minimum(second - first, 0.0)))

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """1 / (1 + s/(r+s+x) (alpha+T)^(r+x) (beta+T)^s A_0), note 009 eq. (36), in log space."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        x = np.asarray(frequency, float)
        T_ = np.asarray(T, float)
        log_odds_dead = (
            np.log(s) - np.log(r + s + x) + (r + x) * np.log(alpha + T_) + s * np.log(beta + T_)
            + self._log_A0(x, np.asarray(recency, float), T_)
        )
        return expit(-log_odds_dead)

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[Y(t) | x, t_x, T] = (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T)/(beta+T+t))^(s-1)] P(alive)."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        t = np.asarray(t, float)
        x = np.asarray(frequency, float)
        T_ = np.asarray(T, float)
        # -expm1((s-1) log q)/(s-1) is 1 - q^(s-1) over s-1, accurate when s is near 1
        horizon = -np.expm1((s - 1) * np.log((beta + T_) / (beta + T_ + t))) / (s - 1)
        return (r + x) * (beta + T_) / (alpha + T_) * horizon * self.p_alive(x, recency, T_)

    def expected_purchases_unconditional(self, t) -> np.ndarray:
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        t = np.asarray(t, float)
        return r * beta / alpha * (-np.expm1((s - 1) * np.log(beta / (beta + t))) / (s - 1))

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


class ParetoNBDModel(PurchaseModel):
    """Pareto/NBD fitted by ``lifetimes.ParetoNBDFitter`` on the compressed (x, t_x, T) matrix.

    lifetimes starts its Nelder-Mead search from random values and returns without checking
    convergence; here it starts from fixed values (reproducible fits), and the result must be a
    maximum of the likelihood (a positive-definite observed information) or the fit fails.
    """

    params_class = ParetoNBDParams
    fitter_name = "ParetoNBDFitter"

    def _fit_lifetimes(self, fitter, rows: pd.DataFrame) -> None:
        fitter.fit(
            rows["frequency"], rows["recency"], rows["T"], weights=rows["weights"],
            initial_params=np.ones(4), maxiter=10_000, tol=1e-8,
        )
