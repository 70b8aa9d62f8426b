"""BG/NBD purchase model: fitted by lifetimes on compressed rows, predicted with stable formulas.

References
----------
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "Counting Your Customers the Easy Way:
An Alternative to the Pareto/NBD Model", Marketing Science 24 (2), 275-284.
Fader, Hardie and Lee (2008), "Computing P(alive) using the BG/NBD model",
http://brucehardie.com/notes/021/.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, gammaln, hyp2f1

from crmvalue.errors import CrmvalueError
from crmvalue.features import compress_rfm


@dataclass(frozen=True)
class BetaGeoParams:
    """BG/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


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
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    t = np.asarray(t, float)
    x = np.asarray(frequency, float)
    T_ = np.asarray(T, float)
    one_minus_z = (alpha + T_) / (alpha + T_ + t)
    z = t / (alpha + T_ + t)
    G = one_minus_z ** (a - 1) * hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
    A = (a + b + x - 1) / (a - 1)
    return A * (1 - G) * p_alive(params, x, recency, T_)


def log_likelihood(params: BetaGeoParams, frequency, recency, T, weights=None) -> float:
    """Total BG/NBD log-likelihood, Fader-Hardie-Lee (2005) eq. (6), in the data's time unit."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = np.asarray(frequency, float)
    t_x = np.asarray(recency, float)
    T_ = np.asarray(T, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T_)
    a4 = np.where(x > 0, np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    return float(np.sum(w * (a1 + a2 + np.logaddexp(a3, a4))))


class BetaGeoModel:
    """BG/NBD fitted by ``lifetimes.BetaGeoFitter`` on the compressed (x, t_x, T) matrix.

    Follows the scikit-learn estimator contract: ``__init__`` stores its arguments, ``fit``
    returns ``self``, learned state ends in ``_``.

    Parameters
    ----------
    penalizer : float
        L2 penalty on the parameters, passed to lifetimes as ``penalizer_coef``. Raise it
        (e.g. 0.001) when the fit does not converge.
    """

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    def fit(self, frequency, recency, T) -> "BetaGeoModel":
        from lifetimes import BetaGeoFitter
        from lifetimes.utils import ConvergenceError

        rows = compress_rfm(frequency, recency, T)
        if len(rows) == 0:
            raise CrmvalueError("BG/NBD: no customers to fit")
        if rows["frequency"].max() == 0:
            raise CrmvalueError("BG/NBD: no customer has a repeat purchase, so the model cannot be fitted")
        fitter = BetaGeoFitter(penalizer_coef=self.penalizer)
        try:
            # lifetimes prints the optimiser state on failure; the error below says it better
            with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
                fitter.fit(rows["frequency"], rows["recency"], rows["T"], weights=rows["weights"])
        except ConvergenceError:
            raise CrmvalueError(
                f"BG/NBD did not converge (penalizer={self.penalizer}); "
                "set a larger penalizer, e.g. --penalizer 0.001 or model.penalizer in the config"
            ) from None
        p = fitter.params_
        self.params_ = BetaGeoParams(float(p["r"]), float(p["alpha"]), float(p["a"]), float(p["b"]))
        if not all(np.isfinite(v) and v > 0 for v in self.params_.as_dict().values()):
            raise CrmvalueError(f"BG/NBD gave invalid parameters {self.params_}; set a larger penalizer")
        self.standard_errors_ = pd.Series(fitter.standard_errors_, dtype=float)
        self.n_customers_ = int(rows["weights"].sum())
        self.n_patterns_ = len(rows)
        self.log_likelihood_ = log_likelihood(
            self.params_, rows["frequency"], rows["recency"], rows["T"], rows["weights"]
        )
        return self

    def conditional_probability_alive(self, frequency, recency, T) -> np.ndarray:
        return p_alive(self.params_, frequency, recency, T)

    def conditional_expected_number_of_purchases_up_to_time(self, t, frequency, recency, T) -> np.ndarray:
        return expected_purchases(self.params_, t, frequency, recency, T)
