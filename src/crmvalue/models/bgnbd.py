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
import pandas as pd
from scipy.special import betainc, betaln, expit, gammaln, hyp2f1

from crmvalue.models.base import PurchaseDraws, PurchaseParams, negative_binomial_log_pmf
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

    def probability_of_n_purchases(self, t, n) -> np.ndarray:
        """P(X(t) = n), FHL (2005a) eq. (8), vectorised over ``t`` and ``n`` (broadcast).

        The finite sum ``1 - (alpha/(alpha+t))^r sum_{j<n} Gamma(r+j)/(Gamma(r) j!) (t/(alpha+t))^j``
        is the upper tail of a negative binomial, the regularised incomplete beta
        ``I_{t/(alpha+t)}(n, r)``; everything else is in log space, so large ``n`` cannot overflow.
        """
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        t, n = np.broadcast_arrays(np.asarray(t, float), np.asarray(n, float))
        with np.errstate(divide="ignore", invalid="ignore"):
            still_alive = np.exp(betaln(a, b + n) - betaln(a, b) + negative_binomial_log_pmf(n, r, alpha, t))
            dropped = np.exp(betaln(a + 1, b + np.maximum(n, 1) - 1) - betaln(a, b)) * betainc(
                np.maximum(n, 1), r, t / (alpha + t)
            )
        return still_alive + np.where(n > 0, dropped, 0.0)

    def no_purchase_probability(self, t, frequency, recency, T) -> np.ndarray:
        return no_purchase_probability(self, t, frequency, recency, T)

    def simulate_summary(self, T, seed: int | None = None) -> pd.DataFrame:
        """Exact and vectorised: with purchase rate ``lam ~ Gamma(r, 1/alpha)`` and dropout probability
        ``p ~ Beta(a, b)``, the number of repeat purchases the customer would make in ``(0, T]`` if
        alive throughout is ``N ~ Poisson(lam T)``; they drop out right after repeat purchase
        ``D ~ Geometric(p)``, so ``x = min(N, D)``. Given ``N = n``, the purchase times are ``n``
        uniform order statistics on ``(0, T]``, so ``t_x = T * Beta(x, n - x + 1)``.
        (lifetimes' ``beta_geometric_nbd_model`` truncates purchase times to whole periods, which
        merges purchases and biases ``r``.)
        """
        return simulate_beta_geo_summary(self, T, seed, dropout_at_first_purchase=False)

    def draw_purchases(self, rng: np.random.Generator, T: np.ndarray) -> PurchaseDraws:
        lam = rng.gamma(self.r, 1.0 / self.alpha, size=T.shape)
        n = rng.poisson(lam * T)
        limit = rng.geometric(rng.beta(self.a, self.b, size=T.shape))  # drops out after this repeat
        return PurchaseDraws(window=T, n=n, limit=limit)


def no_purchase_probability(params, t, frequency, recency, T) -> np.ndarray:
    """BG/NBD (and MBG/NBD) probability that a customer with history ``(x, t_x, T)`` makes no purchase
    in ``(T, T + t]``.

    A customer who is dead buys nothing; one who is alive at ``T`` cannot die before their next
    purchase (BG/NBD dropout happens only right after a purchase), so they buy nothing in the
    next ``t`` exactly when their Poisson process has no event, with probability
    ``E[exp(-lambda t)]`` over the posterior of the purchase rate of a customer alive at ``T``.
    That posterior is ``Gamma(r + x, alpha + T)`` (the likelihood of an alive customer is
    ``lambda^x exp(-lambda T)``; the dropout part does not involve lambda), whose Laplace
    transform at ``t`` is ``((alpha + T) / (alpha + T + t))^(r + x)``. Hence

    ``P(no purchase in t) = (1 - P(alive)) + P(alive) ((alpha + T) / (alpha + T + t))^(r + x)``.

    Time is in the unit of the parameters.
    """
    x = np.asarray(frequency, float)
    T_ = np.asarray(T, float)
    alive = params.p_alive(x, np.asarray(recency, float), T_)
    silent = np.exp((params.r + x) * (np.log(params.alpha + T_) - np.log(params.alpha + T_ + np.asarray(t, float))))
    return (1.0 - alive) + alive * silent


def simulate_beta_geo_summary(params, T, seed: int | None, dropout_at_first_purchase: bool) -> pd.DataFrame:
    """BG/NBD (or, ``dropout_at_first_purchase``, MBG/NBD) customers: one per entry of ``T``."""
    rng = np.random.default_rng(seed)
    T = np.asarray(T, float)
    lam = rng.gamma(params.r, 1.0 / params.alpha, size=T.shape)
    p = rng.beta(params.a, params.b, size=T.shape)
    n = rng.poisson(lam * T)
    dropout_after = rng.geometric(p) - (1 if dropout_at_first_purchase else 0)
    x = np.minimum(n, dropout_after)
    recency = np.zeros_like(T)
    buyers = x > 0
    recency[buyers] = T[buyers] * rng.beta(x[buyers], n[buyers] - x[buyers] + 1)
    return pd.DataFrame({"frequency": x.astype(float), "recency": recency, "T": T})


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

    name = BetaGeoParams.name
    label = BetaGeoParams.label
    params_class = BetaGeoParams
    family = "bg_nbd"

    def lifetimes_twin(self):
        from lifetimes import BetaGeoFitter

        return BetaGeoFitter(penalizer_coef=self.penalizer)
