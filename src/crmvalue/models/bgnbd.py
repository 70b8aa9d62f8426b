"""BG/NBD purchase model: fitted on compressed rows with an analytic gradient, predicted with stable formulas.

References
----------
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "Counting Your Customers the Easy Way:
An Alternative to the Pareto/NBD Model", Marketing Science 24 (2), 275-284.
Fader, Hardie and Lee (2008), "Computing P(alive) using the BG/NBD model",
http://brucehardie.com/notes/021/.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
from scipy.special import expit, gammaln, hyp2f1

from crmvalue.models.base import PurchaseParams
from crmvalue.models.beta_geo_fit import BetaGeoFamilyModel


@dataclass(frozen=True)
class BetaGeoParams(PurchaseParams):
    """BG/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout p ~ Beta(a, b)."""

    name: ClassVar[str] = "bgnbd"
    label: ClassVar[str] = "BG/NBD"
    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        return p_alive(self, frequency, recency, T)

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        return expected_purchases(self, t, frequency, recency, T)

    def expected_purchases_unconditional(self, t) -> np.ndarray:
        """E[X(t)] for a new customer: the conditional expectation at x = t_x = T = 0."""
        return expected_purchases(self, t, 0.0, 0.0, 0.0)

    def per_customer_log_likelihood(self, frequency, recency, T) -> np.ndarray:
        return _log_likelihood_terms(self, frequency, recency, T)


def p_alive(params: BetaGeoParams, frequency, recency, T) -> np.ndarray:
    """P(alive | x, t_x, T), Fader-Hardie-Lee (2008) eq. (2), in log space so it never overflows."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = np.asarray(frequency, float)
    log_odds_dead = (r + x) * np.log((alpha + np.asarray(T, float)) / (alpha + np.asarray(recency, float))) + np.log(
        a / (b + np.maximum(x, 1) - 1)
    )
    return np.where(x == 0, 1.0, expit(-log_odds_dead))


def expected_purchases(params: BetaGeoParams, t, frequency, recency, T) -> np.ndarray:
    """E[Y(t) | x, t_x, T]: expected repeat purchases in the next ``t`` time units.

    Fader-Hardie-Lee (2005) eq. (10) is ``A * (1 - G) * P(alive)`` with
    ``A = (a+b+x-1)/(a-1)`` and ``G = (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z)``,
    ``z = t/(alpha+T+t)``. For large ``x`` both factors of ``G`` overflow or underflow, so
    ``G`` is computed after Euler's transformation,
    ``2F1(a', b'; c; z) = (1-z)^(c-a'-b') 2F1(c-a', c-b'; c; z)``, which gives
    ``G = (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)``: its parameters no longer grow with
    ``x`` except ``c``, and the series converges faster as ``x`` grows. Accepts arrays that
    broadcast together (e.g. ``t`` of shape ``(k, 1)`` against customers of shape ``(n,)``).
    """
    return smooth_at_a_equal_1(_expected_purchases, params, t, frequency, recency, T)


def _expected_purchases(params: BetaGeoParams, t, frequency, recency, T) -> np.ndarray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    t = np.asarray(t, float)
    x = np.asarray(frequency, float)
    T_ = np.asarray(T, float)
    one_minus_z = (alpha + T_) / (alpha + T_ + t)
    z = t / (alpha + T_ + t)
    G = one_minus_z ** (a - 1) * hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
    A = (a + b + x - 1) / (a - 1)
    return A * (1 - G) * p_alive(params, x, recency, T_)


# within this distance of a = 1, E[Y(t)] is interpolated (its (1 - G)/(a - 1) is 0/0 at a = 1)
A_NEAR_ONE = 1e-4


def smooth_at_a_equal_1(expected, params, t, frequency, recency, T) -> np.ndarray:
    """``expected(params, ...)``, linearly interpolated between a = 1 -/+ ``A_NEAR_ONE`` where a is closer to 1.

    BG/NBD's and MBG/NBD's E[Y(t)] have a removable singularity at a = 1 (``(1 - G)/(a - 1)``),
    where they would give NaN, and lose digits near it; a ridge fit with no information about
    dropout lands there. The interpolation error is O(A_NEAR_ONE^2) ~ 1e-8 relative, the
    rounding error at the nodes ~ 1e-12.
    """
    a = np.asarray(params.a, float)
    near = np.abs(a - 1.0) < A_NEAR_ONE
    if not np.any(near):
        return expected(params, t, frequency, recency, T)
    low = expected(replace(params, a=np.where(near, 1.0 - A_NEAR_ONE, a)), t, frequency, recency, T)
    high = expected(replace(params, a=np.where(near, 1.0 + A_NEAR_ONE, a)), t, frequency, recency, T)
    weight = np.where(near, (a - (1.0 - A_NEAR_ONE)) / (2 * A_NEAR_ONE), 0.0)
    return low + weight * (high - low)


def log_likelihood(params: BetaGeoParams, frequency, recency, T, weights=None) -> float:
    """Total BG/NBD log-likelihood, Fader-Hardie-Lee (2005) eq. (6), in the data's time unit."""
    return params.log_likelihood(frequency, recency, T, weights)


def _log_likelihood_terms(params: BetaGeoParams, frequency, recency, T) -> np.ndarray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = np.asarray(frequency, float)
    t_x = np.asarray(recency, float)
    T_ = np.asarray(T, float)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T_)
    a4 = np.where(x > 0, np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


class BetaGeoModel(BetaGeoFamilyModel):
    """BG/NBD fitted on the compressed (x, t_x, T) matrix to the optimum of ``lifetimes.BetaGeoFitter``'s
    objective (see ``crmvalue.models.beta_geo_fit``)."""

    params_class = BetaGeoParams
    fitter_name = "BetaGeoFitter"
