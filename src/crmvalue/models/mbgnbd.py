"""MBG/NBD purchase model (Batislam, Denizel and Filiztekin 2007): BG/NBD where a customer can
also drop out right after the first purchase. Fitted as lifetimes does, only faster; predicted here.

References
----------
Batislam, E. P., Denizel, M. and Filiztekin, A. (2007), "Empirical validation and comparison
of models for customer base analysis", International Journal of Research in Marketing 24 (3).
Wagner, U. and Hoppe, D. (2008), "Erratum on the MBG/NBD model".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import expit, gammaln, hyp2f1

from crmvalue.models.base import PurchaseParams
from crmvalue.models.beta_geo_fit import BetaGeoFamilyModel
from crmvalue.models.bgnbd import smooth_at_a_equal_1


@dataclass(frozen=True)
class ModifiedBetaGeoParams(PurchaseParams):
    """MBG/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout p ~ Beta(a, b)."""

    name: ClassVar[str] = "mbgnbd"
    label: ClassVar[str] = "MBG/NBD"
    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x)), in log space. Unlike BG/NBD, < 1 at x = 0."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x = np.asarray(frequency, float)
        log_odds_dead = np.log(a / (b + x)) + (r + x) * np.log(
            (alpha + np.asarray(T, float)) / (alpha + np.asarray(recency, float))
        )
        return expit(-log_odds_dead)

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[Y(t) | x, t_x, T] = (a+b+x)/(a-1) (1 - G) P(alive).

        ``G = (1-z)^(r+x) 2F1(r+x, b+x+1; a+b+x; z)`` overflows for heavy buyers in lifetimes;
        after Euler's transformation it is ``(1-z)^(a-1) 2F1(a+b-r, a-1; a+b+x; z)``.
        """
        return smooth_at_a_equal_1(_expected_purchases, self, t, frequency, recency, T)

    def expected_purchases_unconditional(self, t) -> np.ndarray:
        return self.expected_purchases(t, 0.0, 0.0, 0.0)

    def per_customer_log_likelihood(self, frequency, recency, T) -> np.ndarray:
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x = np.asarray(frequency, float)
        t_x = np.asarray(recency, float)
        T_ = np.asarray(T, float)
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a2 = gammaln(a + b) + gammaln(b + x + 1) - gammaln(b) - gammaln(a + b + x + 1)
        a3 = -(r + x) * np.log(alpha + T_)
        a4 = np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T_) - np.log(alpha + t_x))
        return a1 + a2 + a3 + np.logaddexp(a4, 0.0)


def _expected_purchases(params: ModifiedBetaGeoParams, t, frequency, recency, T) -> np.ndarray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    t = np.asarray(t, float)
    x = np.asarray(frequency, float)
    T_ = np.asarray(T, float)
    z = t / (alpha + T_ + t)
    G = ((alpha + T_) / (alpha + T_ + t)) ** (a - 1) * hyp2f1(a + b - r, a - 1, a + b + x, z)
    return (a + b + x) / (a - 1) * (1 - G) * params.p_alive(x, recency, T_)


class ModifiedBetaGeoModel(BetaGeoFamilyModel):
    """MBG/NBD fitted on the compressed (x, t_x, T) matrix to the optimum of
    ``lifetimes.ModifiedBetaGeoFitter``'s objective (see ``crmvalue.models.beta_geo_fit``)."""

    modified = True

    params_class = ModifiedBetaGeoParams
    fitter_name = "ModifiedBetaGeoFitter"
