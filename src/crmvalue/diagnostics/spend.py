"""The fit of the Gamma-Gamma model to the observed average spend (Fader, Hardie and Lee 2005b;
Fader and Hardie 2013, note 025)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import betainc, gammaln, xlogy

from crmvalue.diagnostics.models import model_params
from crmvalue.errors import CrmvalueError


def _spend_params(gg_params) -> tuple[float, float, float]:
    p = model_params(gg_params)
    try:
        return p["p"], p["q"], p["v"]
    except KeyError:
        raise CrmvalueError(f"Gamma-Gamma parameters need p, q and v; got {sorted(p)}") from None


def _repeat_buyers(frequency, monetary_value) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(frequency, float)
    m = np.asarray(monetary_value, float)
    keep = (x > 0) & (m > 0)
    return x[keep], m[keep]


def spend_density(gg_params, spend, frequency) -> np.ndarray:
    """Model-implied density of the average spend ``m_x``, mixed over the customers' ``x``.

    Fader-Hardie (2013) note 025: given ``x`` transactions, ``z_bar | nu ~ Gamma(p x, nu x)``
    and ``nu ~ Gamma(q, gamma)``, so
    ``f(z_bar | x) = Gamma(px+q) / (Gamma(px) Gamma(q)) gamma^q z_bar^(px-1) x^(px) / (gamma + x z_bar)^(px+q)``
    (``x z_bar / gamma`` is beta-prime(px, q)). Across customers the density is the average of
    ``f(. | x_i)``; customers are grouped by ``x``.

    Parameters
    ----------
    gg_params
        ``GammaGammaParams``, lifetimes' ``params_`` (``p, q, v``), or a fitted model.
    spend : array_like
        Values of ``m_x`` at which to evaluate the density (any shape).
    frequency : array_like
        Repeat transactions of the customers to mix over (those with ``x > 0`` are used).
    """
    p, q, v = _spend_params(gg_params)
    x = np.asarray(frequency, float)
    counts, weights = np.unique(x[x > 0], return_counts=True)
    if counts.size == 0:
        raise CrmvalueError("spend density needs at least one customer with a repeat purchase")
    z = np.asarray(spend, float)
    zz = z.reshape(-1, 1)
    px = p * counts[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_f = (
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(v)
            + xlogy(px - 1, zz)
            + px * np.log(counts)
            - (px + q) * np.log(v + counts * zz)
        )
    density = np.where(zz > 0, np.exp(log_f), 0.0) @ (weights / weights.sum())
    return density.reshape(z.shape)


def _spend_cdf(p, q, v, spend, counts, weights) -> np.ndarray:
    zz = np.asarray(spend, float).reshape(-1, 1)
    with np.errstate(invalid="ignore"):
        u = np.where(np.isinf(zz), 1.0, counts * zz / (v + counts * zz))  # an open last edge
    return betainc(p * counts, q, u) @ (weights / weights.sum())


def gamma_gamma_spend_fit(gg_params, frequency, monetary_value, bins=30, upper_quantile: float = 1.0) -> pd.DataFrame:
    """Observed distribution of repeat buyers' average spend against the Gamma-Gamma model.

    As in FHL (2005b). Only repeat buyers with positive ``m_x`` enter, as in the fit. The
    model's share of a bin is exact, the integral of :func:`spend_density` over it (via
    ``P(z_bar <= m | x) = I_u(px, q)``, ``u = x m / (gamma + x m)``), mixed over the buyers' ``x``.

    Parameters
    ----------
    gg_params
        ``GammaGammaParams``, lifetimes' ``params_`` (``p, q, v``), or a fitted model.
    frequency, monetary_value : array_like
        Per-customer ``x`` and ``m_x``.
    bins : int or sequence of float
        Number of equal-width bins from 0 to the largest ``m_x``, or the bin edges.
    upper_quantile : float
        With a number of bins, they end at this quantile of ``m_x`` instead of its maximum, so
        a long right tail does not squash the rest into a few bins; buyers beyond it are outside
        every bin (the densities are still per buyer, of all of them).

    Returns
    -------
    DataFrame
        One row per bin: ``left``, ``right``, ``observed`` and ``expected`` (customers),
        ``observed_density`` (observed / (customers * width)) and ``model_density`` (the
        implied density at the bin's midpoint).
    """
    p, q, v = _spend_params(gg_params)
    x, m = _repeat_buyers(frequency, monetary_value)
    if x.size == 0:
        raise CrmvalueError("no repeat buyer with positive spend: nothing to compare the spend model with")
    if np.ndim(bins) == 0:
        if not 0 < upper_quantile <= 1:
            raise CrmvalueError(f"upper_quantile must be in (0, 1], got {upper_quantile}")
        upper = m.max() if upper_quantile == 1 else np.quantile(m, upper_quantile)
        edges = np.linspace(0.0, upper * (1 + 1e-9), int(bins) + 1)
    else:
        edges = np.asarray(bins, float)
    counts, weights = np.unique(x, return_counts=True)
    observed, _ = np.histogram(m, bins=edges)
    expected = np.diff(_spend_cdf(p, q, v, edges, counts, weights)) * x.size
    width = np.diff(edges)
    mid = edges[:-1] + width / 2
    return pd.DataFrame(
        {
            "left": edges[:-1],
            "right": edges[1:],
            "observed": observed,
            "expected": expected,
            "observed_density": observed / (x.size * width),
            "model_density": spend_density({"p": p, "q": q, "v": v}, mid, x),
        },
        index=pd.RangeIndex(len(observed), name="bin"),
    )
