"""Per-customer predictive intervals: what a customer will buy and spend in the next horizon.

``expected_purchases_lower/upper`` (:mod:`crmvalue.models.uncertainty`) bound the *expectation*. These
bound the *outcome*: the process noise of the model given the customer's history, plus the uncertainty
of the fitted population parameters.

The count distribution, derived from each model's likelihood
---------------------------------------------------------------
Given the population parameters, a customer with history ``(x, t_x, T)`` is alive at ``T`` with
``P(alive)``; a dead customer buys nothing. Given alive, the likelihood of the history is

- BG/NBD: ``lambda^x exp(-lambda T) (1 - p)^x``, so ``lambda ~ Gamma(r + x, alpha + T)`` (shape, rate) and
  ``p ~ Beta(a, b + x)``, independent;
- MBG/NBD: ``lambda^x exp(-lambda T) (1 - p)^(x + 1)`` (the coin is also tossed at the first purchase), so
  ``p ~ Beta(a, b + x + 1)``;
- Pareto/NBD: ``lambda^x exp(-lambda T) exp(-mu T)``, so ``lambda ~ Gamma(r + x, alpha + T)`` and
  ``mu ~ Gamma(s, beta + T)``.

(The ratio of the dead to the alive term of each likelihood is the model's ``P(alive)`` odds, a check that
the posteriors are these.) An alive BG/NBD customer buys at the Poisson times of ``lambda`` and drops out
after each purchase with probability ``p``, so the purchases in ``(T, T + h]`` are ``Y = min(N, G)`` with
``N ~ Poisson(lambda h)`` and ``G ~ Geometric(p)`` on ``{1, 2, ...}``, independent given alive:
``P(Y >= k) = P(N >= k) P(G >= k)``, where ``N`` is negative binomial (Gamma-Poisson with ``r + x, alpha + T,
h``) and ``P(G >= k) = E[(1 - p)^(k - 1)] = B(a, b' + k - 1) / B(a, b')``. Both follow by recursion in
``k``, so the distribution is exact, not simulated. An alive Pareto/NBD customer lives on for
``tau ~ Exp(mu)`` (memoryless), marginally ``P(tau > w) = ((beta + T) / (beta + T + w))^s``, and buys
``Y ~ NB(r + x, alpha + T, min(tau, h))``; the integral over ``tau < h`` is a Gauss-Legendre rule (see
``_lifetime_windows``), so again a finite mixture of negative binomials.

Parameter uncertainty: the population parameters are drawn from the asymptotic normal of the
log-parameters (:func:`crmvalue.models.uncertainty.draw_parameters`) and the distribution is the mean of
the exact distributions over the draws. Without a covariance it is the exact distribution at the estimate.

Revenue
-------
Gamma-Gamma: each spend is ``Gamma(p, nu)`` (shape, rate), ``nu ~ Gamma(q, v)``; given ``x`` repeat purchases
of mean ``m``, ``nu ~ Gamma(p x + q, v + x m)``, and ``n`` future spends sum to ``Gamma(n p, nu)``. With the
mean-spend fallback (:class:`~crmvalue.models.gamma_gamma.MeanSpendParams`) every purchase is worth the fixed
mean, so revenue is ``n`` times it. A customer with no repeat purchase (or a non-positive mean) gets the prior.
Revenue is zero exactly when ``Y = 0``, with the probability from the exact count distribution; its positive
part is simulated: ``draws`` samples of ``Y | Y >= 1`` (from the exact distribution) and of the spend.

The interval rule
-----------------
With ``alpha_ = (1 - level) / 2``: ``lower`` is the largest value ``l`` with ``P(Y < l) <= alpha_``;
``upper`` is the smallest ``u`` with ``P(Y > u) <= 1 - level - P(Y < l)``. So ``P(l <= Y <= u) >= level``
always; where the lower tail is used up (``P(Y < l) = alpha_``) this is the equal-tailed interval, and
where ``P(Y = 0) > alpha_`` (``l = 0``, most customers) the unused lower allowance goes to the upper tail,
which keeps the interval as close to ``level`` as the integer counts allow. Revenue follows the same rule;
its positive part's quantiles are order statistics of the ``M = draws`` samples: ``X_(j)`` with
``j = floor(pi (M + 1))`` for a lower and ``X_(k)``, ``k = ceil(pi (M + 1))``, for an upper quantile ``pi``, so a
new draw from the same distribution lies below ``X_(k)`` with probability exactly ``k / (M + 1) >= pi``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from crmvalue.errors import CrmvalueError
from crmvalue.features import SUMMARY_COLUMNS
from crmvalue.models.base import PurchaseParams
from crmvalue.models.bgnbd import BetaGeoParams
from crmvalue.models.gamma_gamma import GammaGammaParams, MeanSpendParams, SpendParams
from crmvalue.models.mbgnbd import ModifiedBetaGeoParams
from crmvalue.models.paretonbd import ParetoNBDParams
from crmvalue.models.uncertainty import bootstrap_intervals, draw_parameters
from crmvalue.models.value import ValueModel, unique_patterns

INTERVAL_COLUMNS = ["purchases_lower", "purchases_upper", "revenue_lower", "revenue_upper"]
PROBABILITY_COLUMNS = ["purchases_probability", "revenue_probability"]
CELLS = 4_000_000  # draws x customers (x lifetime nodes for Pareto/NBD) held at once, to bound memory
TAIL = 1e-7  # counts are summed up to the first k with P(Y > k) below this for every customer
MAX_COUNT = 100_000  # past this, a horizon's purchases are not worth a distribution
LIFETIME_NODES = 16  # Gauss-Legendre nodes over the Pareto/NBD lifetime inside the horizon
_TOLERANCE = 1e-12  # rounding slack when a probability is compared with a tail allowance
_SUPPORTED = (BetaGeoParams, ModifiedBetaGeoParams, ParetoNBDParams)


def predictive_intervals(
    purchase_params: PurchaseParams,
    purchase_log_covariance: np.ndarray | None,
    spend_params: SpendParams,
    spend_log_covariance: np.ndarray | None,
    summary: pd.DataFrame,
    horizon: float,
    level: float = 0.9,
    draws: int = 200,
    seed: int = 0,
    probabilities: bool = False,
) -> pd.DataFrame:
    """Intervals at ``level`` for each customer's purchases and revenue in ``(T, T + horizon]``.

    ``summary`` has ``frequency, recency, T, monetary_value`` in the parameters' time unit, as does
    ``horizon``. A covariance of ``None`` leaves out that model's parameter uncertainty; otherwise
    ``draws`` parameter sets are drawn from it. ``draws`` is also the number of revenue samples per
    customer. The same ``seed`` and input give the same columns; customers with the same four
    summary values get the same intervals. Returns ``purchases_lower, purchases_upper,
    revenue_lower, revenue_upper`` indexed like ``summary`` (integers for purchases), and with
    ``probabilities`` also ``purchases_probability`` and ``revenue_probability``: the model's
    probability that the outcome falls in the interval (at least ``level``; its mean over customers
    is the coverage the model expects, above ``level`` where counts are small).
    """
    x, t_x, T_, m = _checked(purchase_params, spend_params, summary, horizon, level, draws)
    rng = np.random.default_rng(seed)
    purchase = _parameter_draws(purchase_params, purchase_log_covariance, draws, rng, "purchase")
    spend = _parameter_draws(spend_params, spend_log_covariance, draws, rng, "spend")
    informative = (x > 0) & (m > 0)  # the spend posterior needs repeat purchases with a positive mean
    x_spend, m = np.where(informative, x, 0.0), np.where(informative, m, 0.0)
    ux, ut, uT, pattern = unique_patterns(x, t_x, T_)
    # revenue depends on the purchase pattern and the spend history: one row per distinct pair
    m_codes, m_values = pd.factorize(m)
    row, first = _first_occurrences(pattern.astype(np.int64) * len(m_values) + m_codes)
    by_pattern = np.argsort(pattern[first], kind="stable")
    row_first, row_pattern = first[by_pattern], pattern[first][by_pattern]
    rank = np.empty(len(by_pattern), dtype=np.int64)
    rank[by_pattern] = np.arange(len(by_pattern))
    row = rank[row]

    counts = np.empty((len(ux), 3))  # lower, upper, probability per pattern
    revenue = np.empty((len(row_first), 3))
    nodes = LIFETIME_NODES + 1 if isinstance(purchase_params, ParetoNBDParams) else 1
    block = max(1, CELLS // (_size(purchase) * nodes))
    for start in range(0, len(ux), block):
        s = slice(start, start + block)
        cdf = count_distribution(purchase, horizon, ux[s], ut[s], uT[s])
        counts[s] = count_intervals(cdf, level)
        rows = slice(*np.searchsorted(row_pattern, [start, start + len(ux[s])]))
        per = max(1, CELLS // draws)
        for r0 in range(rows.start, rows.stop, per):
            r = slice(r0, min(r0 + per, rows.stop))
            c = row_first[r]
            revenue[r] = _revenue_intervals(cdf[row_pattern[r] - start], spend, x_spend[c], m[c], level, draws, rng)
    out = pd.DataFrame(
        {
            "purchases_lower": counts[pattern, 0].astype(np.int64),
            "purchases_upper": counts[pattern, 1].astype(np.int64),
            "revenue_lower": revenue[row, 0],
            "revenue_upper": revenue[row, 1],
            "purchases_probability": counts[pattern, 2],
            "revenue_probability": revenue[row, 2],
        },
        index=summary.index,
    )
    return out if probabilities else out[INTERVAL_COLUMNS]


def export_intervals(
    model: ValueModel,
    summary: pd.DataFrame,
    purchase_log_covariance: ArrayLike,
    spend_log_covariance: ArrayLike,
    draws: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> pd.DataFrame:
    """The export's interval columns for the customers of ``summary``, as ``crmvalue train`` and ``crmvalue
    predict`` both compute them (config ``intervals``): the expectation's bounds
    (:func:`~crmvalue.models.uncertainty.bootstrap_intervals`: ``expected_purchases_lower/upper``,
    ``clv_lower/upper``) then the outcome's (:func:`predictive_intervals` over the model's horizon in its time
    unit: ``purchases_lower/upper``, ``revenue_lower/upper``), each with the same ``draws``, ``level`` and
    ``seed``. The same model, covariances, settings and summary give the same columns."""
    purchase_cov, spend_cov = (np.asarray(c, dtype=float) for c in (purchase_log_covariance, spend_log_covariance))
    expectation = bootstrap_intervals(model, summary, purchase_cov, spend_cov, draws, level, seed)
    outcome = predictive_intervals(
        model.purchase,
        purchase_cov,
        model.gamma_gamma,
        spend_cov,
        summary,
        model.horizon,
        level,
        draws,
        seed,
    )
    return expectation.join(outcome)


def saved_intervals(
    model: ValueModel, draws: int = 200, level: float = 0.9, seed: int = 0
) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
    """:func:`export_intervals` of an RFM summary with the covariances saved with ``model``
    (:meth:`ValueModel.with_covariances`); None when it has none."""
    if model.purchase_log_covariance is None or model.spend_log_covariance is None:
        return None
    return partial(
        export_intervals,
        model,
        purchase_log_covariance=model.purchase_log_covariance,
        spend_log_covariance=model.spend_log_covariance,
        draws=draws,
        level=level,
        seed=seed,
    )


def count_distribution(purchase, horizon: float, frequency, recency, T) -> np.ndarray:
    """``P(Y <= k)`` for ``k = 0, 1, ..., K``: rows are customers, ``Y`` their purchases in ``(T, T + horizon]``.

    ``purchase`` holds the parameters as scalars or as (draws, 1) arrays; the distribution is the mean
    over the draws. ``K`` is the first count with ``P(Y > K) < TAIL`` for every row, and the last column
    is set to 1.
    """
    x, t_x, T_ = (np.asarray(c, float).reshape(-1) for c in (frequency, recency, T))
    alive = np.atleast_2d(purchase.p_alive(x, t_x, T_))  # (draws, n)
    shape_n = np.broadcast_to(purchase.r + x, alive.shape)  # the posterior Gamma shape of lambda
    rate = purchase.alpha + T_
    if isinstance(purchase, ParetoNBDParams):
        windows, log_weights = _lifetime_windows(purchase.s, purchase.beta + T_, rate, shape_n, horizon)
    else:
        windows, log_weights = np.full((1, 1, 1), float(horizon)), np.zeros((1, 1, 1))
    log_z = np.log(windows) - np.log(rate + windows)  # (nodes, draws, n): the Gamma-Poisson odds
    # log(weight x P(N = 0)) per window: the recursion below carries the weights along
    log_weighted = log_weights + shape_n * (np.log(rate) - np.log(rate + windows))
    # sum over windows of weight x P(N > k), k = 0: the lifetime-weighted tail of the count if alive and never leaving
    tail = np.sum(np.exp(log_weights), axis=0) * np.ones(alive.shape) - np.sum(np.exp(log_weighted), axis=0)
    dropout = not isinstance(purchase, ParetoNBDParams)  # BG/NBD and MBG/NBD drop out after a purchase
    b_alive = np.ones(alive.shape)  # the posterior Beta's b given alive: b + x (MBG/NBD: b + x + 1)
    if dropout:
        b_alive = b_alive * (purchase.b + x + (1.0 if isinstance(purchase, ModifiedBetaGeoParams) else 0.0))
    state = [alive, shape_n, log_z, log_weighted, tail, b_alive, np.ones(alive.shape)]
    columns = [1.0 - np.mean(alive * tail, axis=0)]
    active = np.arange(len(x))  # the rows whose tail is not yet below TAIL; the others are done
    k = 0
    while True:
        keep = 1.0 - columns[-1][active] >= TAIL
        if k > 0 and not keep.any():
            break
        if keep.sum() < 0.8 * len(keep):  # dropping finished rows costs a copy: worth it when many are done
            active, state = active[keep], [a[..., keep] for a in state]
        alive, shape_n, log_z, log_weighted, tail, b_alive, geometric = state
        k += 1
        if k > MAX_COUNT:
            raise CrmvalueError(f"more than {MAX_COUNT:,} purchases in the horizon are likely; shorten the horizon")
        log_weighted += log_z
        log_weighted += np.log((shape_n + k - 1) / k)  # P(N = k) = P(N = k - 1) z (r' + k - 1) / k
        tail -= np.sum(np.exp(log_weighted), axis=0)
        if dropout:  # P(G >= k + 1) = B(a, b' + k) / B(a, b')
            geometric *= (b_alive + k - 1) / (purchase.a + b_alive + k - 1)
        column = np.ones(len(x))
        column[active] = 1.0 - np.mean(alive * tail * geometric, axis=0)
        columns.append(column)
    cdf = np.maximum.accumulate(np.clip(np.column_stack(columns), 0.0, 1.0), axis=1)
    cdf[:, -1] = 1.0
    return cdf


def count_intervals(cdf: np.ndarray, level: float) -> np.ndarray:
    """Per row of ``cdf`` (``P(Y <= k)``, k = 0, 1, ...): lower, upper and ``P(lower <= Y <= upper)`` by the rule
    of the module docstring."""
    tail = (1.0 - level) / 2
    n = np.arange(len(cdf))
    lower = np.sum(cdf <= tail + _TOLERANCE, axis=1)  # P(Y < k) = cdf[k - 1] <= tail for k = 0 .. lower
    below = np.where(lower > 0, cdf[n, np.maximum(lower - 1, 0)], 0.0)
    upper = np.sum(cdf < (level + below)[:, None] - _TOLERANCE, axis=1)
    upper = np.minimum(upper, cdf.shape[1] - 1)
    return np.column_stack([lower, upper, cdf[n, upper] - below])


def _lifetime_windows(s, beta_T, alpha_T, shape_n, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Pareto/NBD buying windows ``min(tau, h)`` and the logs of their weights. ``tau`` is the remaining lifetime,
    Lomax with ``P(tau > w) = (beta' / (beta' + w))^s``, ``beta' = beta + T``.

    Gauss-Legendre nodes over ``tau < h`` in ``v = log(1 + tau / c)`` with ``c = min(beta', alpha' / r')``:
    the lifetime density is smooth in ``v`` on the scale ``beta'``, and the purchase count changes on the
    scale of the time to the next purchase, ``alpha' / r'``; plus the window ``h`` with weight ``P(tau >= h)``.
    Checked against :meth:`ParetoNBDParams.probability_of_n_purchases` (largest error 2e-6 in the probabilities
    over a grid of realistic parameters).
    """
    beta_T, alpha_T, shape_n = np.broadcast_arrays(*(np.atleast_2d(a) for a in (beta_T, alpha_T, shape_n)))
    u, w = np.polynomial.legendre.leggauss(LIFETIME_NODES)
    c = np.minimum(beta_T, alpha_T / shape_n)
    span = np.log1p(horizon / c)  # v at tau = h
    v = span * (u[:, None, None] + 1) / 2
    tau = np.minimum(c * np.expm1(v), horizon)
    log_beta_tau = np.log(beta_T + tau)
    # log of the density s beta'^s / (beta' + tau)^(s + 1) times dtau / dv = c + tau = c e^v
    log_density = np.log(s) + s * np.log(beta_T) - (s + 1) * log_beta_tau + np.log(c) + v
    log_survive = s * (np.log(beta_T) - np.log(beta_T + horizon))  # P(tau >= h)
    windows = np.concatenate([tau, np.broadcast_to(float(horizon), log_survive.shape)[None]])
    log_weights = np.concatenate([np.log(span * w[:, None, None] / 2) + log_density, log_survive[None]])
    return np.maximum(windows, 1e-300), log_weights


def _revenue_intervals(cdf, spend, x, m, level: float, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Revenue lower, upper and probability for rows with count distribution ``cdf`` and spend history ``x, m``."""
    n = len(x)
    zero = cdf[:, 0]
    buys = 1.0 - zero
    # Y | Y >= 1 by inverse transform, all rows at once: row i's CDF is shifted into [i, i + 1]
    conditional = np.divide(
        cdf[:, 1:] - zero[:, None], buys[:, None], out=np.ones_like(cdf[:, 1:]), where=buys[:, None] > 0
    )
    conditional[:, -1] = 1.0
    k = conditional.shape[1]
    offset = np.arange(n, dtype=float)
    u = rng.random((draws, n))
    position = np.searchsorted((conditional + offset[:, None]).ravel(), (u + offset).ravel()).reshape(draws, n)
    count = np.minimum(position - np.arange(n) * k, k - 1) + 1
    j = np.arange(draws) % _size(spend)
    if isinstance(spend, MeanSpendParams):
        sample = count * np.broadcast_to(spend.mean_spend, (_size(spend), 1))[j]
    else:
        p, q, v = (np.broadcast_to(getattr(spend, name), (_size(spend), 1))[j] for name in ("p", "q", "v"))
        nu = rng.gamma(p * x + q) / (v + x * m)
        sample = rng.gamma(count * p) / nu
    sample = np.sort(sample, axis=0)
    tail = (1.0 - level) / 2
    zero_lower = zero > tail + _TOLERANCE
    with np.errstate(divide="ignore", invalid="ignore"):
        low_pi = np.where(zero_lower, 0.0, (tail - zero) / buys)
        high_pi = np.where(zero_lower, (level - zero) / buys, (1.0 - tail - zero) / buys)
    j_low = np.clip(np.floor(low_pi * (draws + 1)), 0, draws).astype(np.int64)
    k_high = np.clip(np.ceil(high_pi * (draws + 1) - _TOLERANCE), 1, draws).astype(np.int64)
    columns = np.arange(n)
    lower = np.where(j_low > 0, sample[np.maximum(j_low - 1, 0), columns], 0.0)
    upper_zero = zero_lower & (zero >= level - _TOLERANCE)
    upper = np.where(upper_zero, 0.0, sample[k_high - 1, columns])
    at_most_upper = np.where(upper_zero, zero, zero + buys * k_high / (draws + 1))
    below_lower = np.where(j_low > 0, zero + buys * j_low / (draws + 1), 0.0)
    return np.column_stack([lower, upper, at_most_upper - below_lower])


def _parameter_draws(params, covariance, draws: int, rng: np.random.Generator, what: str):
    """``draws`` parameter sets as (draws, 1) arrays, or the estimate as (1, 1) arrays without a covariance."""
    values = params.as_dict()
    if covariance is None:
        return replace(params, **{name: np.full((1, 1), float(v)) for name, v in values.items()})
    covariance = np.asarray(covariance, float)
    if covariance.shape != (len(values), len(values)):
        raise CrmvalueError(
            f"{what}_log_covariance has shape {covariance.shape}; the {what} parameters "
            f"{', '.join(values)} need ({len(values)}, {len(values)})"
        )
    if not np.all(np.isfinite(covariance)):
        raise CrmvalueError(f"{what}_log_covariance has non-finite entries; pass None to leave out its uncertainty")
    return draw_parameters(params, covariance, draws, rng)


def _size(params) -> int:
    return int(np.size(next(iter(params.as_dict().values()))))


def _first_occurrences(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each element, the index of its distinct value, and the position of each distinct value's first element."""
    inverse, uniques = pd.factorize(key)
    first = np.empty(len(uniques), dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(key) - 1, -1, -1)
    return inverse, first


def _checked(purchase_params, spend_params, summary, horizon, level, draws):
    if not isinstance(purchase_params, _SUPPORTED):
        raise CrmvalueError(
            f"predictive intervals need a BG/NBD, MBG/NBD or Pareto/NBD model; got {type(purchase_params).__name__}"
        )
    if not isinstance(spend_params, GammaGammaParams | MeanSpendParams):
        raise CrmvalueError(
            f"predictive intervals need Gamma-Gamma or mean-spend parameters; got {type(spend_params).__name__}"
        )
    if not 0 < level < 1:
        raise CrmvalueError(f"interval level must be between 0 and 1; got {level}")
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
        raise CrmvalueError(f"draws must be a positive integer; got {draws!r}")
    if not (np.isfinite(horizon) and horizon > 0):
        raise CrmvalueError(f"horizon must be positive; got {horizon}")
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise CrmvalueError(f"summary is missing column {missing[0]}")
    columns = [summary[c].to_numpy(float) for c in SUMMARY_COLUMNS]
    for name, values in zip(SUMMARY_COLUMNS, columns):
        bad = ~np.isfinite(values) | ((values < 0) if name != "monetary_value" else False)
        if np.any(bad):
            at = summary.index[int(np.argmax(bad))]
            raise CrmvalueError(
                f"summary column {name} must be finite and non-negative; customer {at} has {values[bad][0]}"
            )
    x, t_x, T_, m = columns
    if np.any(t_x > T_):
        at = summary.index[int(np.argmax(t_x > T_))]
        raise CrmvalueError(f"summary has recency after T for customer {at}")
    return x, t_x, T_, m
