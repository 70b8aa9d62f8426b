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
import pandas as pd
from scipy.special import betainc, betaln, expit, gammaln, hyp2f1

from crmvalue.models.base import PurchaseDraws, PurchaseParams, negative_binomial_log_pmf
from crmvalue.models.beta_geo_fit import BetaGeoFamilyModel
from crmvalue.models.bgnbd import no_purchase_probability, simulate_beta_geo_summary, smooth_at_a_equal_1


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

    def probability_of_n_purchases(self, t, n) -> np.ndarray:
        """P(X(t) = n) (Batislam et al. 2007; lifetimes' formula), vectorised over ``t`` and ``n``.

        As the BG/NBD, except that a customer may drop out right after the first purchase, so the
        dropout term has ``B(a+1, b+n)`` and is present at ``n = 0``.
        """
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        t, n = np.broadcast_arrays(np.asarray(t, float), np.asarray(n, float))
        with np.errstate(divide="ignore", invalid="ignore"):
            still_alive = np.exp(betaln(a, b + n + 1) - betaln(a, b) + negative_binomial_log_pmf(n, r, alpha, t))
            tail = np.where(n > 0, betainc(np.maximum(n, 1), r, t / (alpha + t)), 1.0)
        return still_alive + np.exp(betaln(a + 1, b + n) - betaln(a, b)) * tail

    def no_purchase_probability(self, t, frequency, recency, T) -> np.ndarray:
        """As the BG/NBD's: a customer alive at ``T`` can only drop out right after a purchase."""
        return no_purchase_probability(self, t, frequency, recency, T)

    def simulate_summary(self, T, seed: int | None = None) -> pd.DataFrame:
        """As the BG/NBD's, with the first dropout chance right after the first purchase:
        ``x = min(N, D - 1)``, ``D ~ Geometric(p)``."""
        return simulate_beta_geo_summary(self, T, seed, dropout_at_first_purchase=True)

    def draw_purchases(self, rng: np.random.Generator, T: np.ndarray) -> PurchaseDraws:
        lam = rng.gamma(self.r, 1.0 / self.alpha, size=T.shape)
        n = rng.poisson(lam * T)
        limit = rng.geometric(rng.beta(self.a, self.b, size=T.shape)) - 1  # drops out after this repeat
        return PurchaseDraws(window=T, n=n, limit=limit)


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

    name = ModifiedBetaGeoParams.name
    label = ModifiedBetaGeoParams.label
    params_class = ModifiedBetaGeoParams
    family = "mbg_nbd"

    def lifetimes_twin(self):
        from lifetimes import ModifiedBetaGeoFitter

        return ModifiedBetaGeoFitter(penalizer_coef=self.penalizer)
