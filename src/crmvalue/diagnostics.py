"""Model-fit diagnostics for the BTYD purchase models and the Gamma-Gamma spend model.

The tables behind the model-fit figures of Fader, Hardie and Lee (2005a): weekly and
cumulative repeat-transaction tracking, the calibration-period frequency histogram, P(alive)
and expected-purchases matrices; and the fit of the Gamma-Gamma model to the observed average
spend (Fader, Hardie and Lee 2005b). Conditional expectations, the remaining figure, are
:func:`crmvalue.evaluation.conditional_expectations`.

Purchase models are duck-typed with the method names of ``lifetimes``:
``lifetimes.BetaGeoFitter``, ``ParetoNBDFitter``, ``ModifiedBetaGeoFitter`` (fitted or with
``params_`` set) and :class:`crmvalue.models.BetaGeoModel` all work. What is used:

- ``conditional_probability_alive(frequency, recency, T)`` and
  ``conditional_expected_number_of_purchases_up_to_time(t, frequency, recency, T)``, called on
  1-D arrays (lifetimes' Pareto/NBD versions do not broadcast beyond 1-D);
- ``expected_number_of_purchases_up_to_time(t)``;
- ``params_`` for P(X(t) = n): lifetimes' ``probability_of_n_purchases_up_to_time`` takes one
  scalar ``n`` and ``t``, overflows through ``gamma(r + n)`` for n > 170, and is missing from
  the Pareto/NBD fitter, so P(X(t) = n) is computed here, vectorised, for the three models.

Time is in the unit the model was fitted in (days, or weeks = days / 7).

References
----------
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005a), "Counting Your Customers the Easy Way:
An Alternative to the Pareto/NBD Model", Marketing Science 24 (2), 275-284.
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005b), "RFM and CLV: Using Iso-Value Curves
for Customer Base Analysis", Journal of Marketing Research 42 (4), 415-430.
Fader, P. S. and Hardie, B. G. S. (2005), "A Note on Deriving the Pareto/NBD Model and Related
Expressions", http://brucehardie.com/notes/009/.
Fader, P. S. and Hardie, B. G. S. (2020), "Deriving an Expression for P(X(t) = x) Under the
Pareto/NBD Model", http://brucehardie.com/notes/012/.
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2008), "Computing P(alive) Using the BG/NBD
Model", http://brucehardie.com/notes/021/.
Fader, P. S. and Hardie, B. G. S. (2013), "The Gamma-Gamma Model of Monetary Value",
http://brucehardie.com/notes/025/.
Batislam, E. P., Denizel, M. and Filiztekin, A. (2007), "Empirical validation and comparison
of models for customer base analysis", International Journal of Research in Marketing 24 (3).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import betainc, betaln, gammaln, hyp2f1, logsumexp, xlogy

from crmvalue.customer_days import customer_days, day_number
from crmvalue.errors import CrmvalueError
from crmvalue.features import DAYS_PER_UNIT, TimeUnit

ModelFamily = Literal["bg_nbd", "mbg_nbd", "pareto_nbd"]


# --------------------------------------------------------------------------- model access


def model_params(model) -> dict[str, float]:
    """The fitted parameters of a model as a plain dict.

    Accepts a model with ``params_`` as a pandas Series (lifetimes), a dataclass with
    ``as_dict()`` (crmvalue), or a mapping; or such a parameter object itself.
    """
    params = getattr(model, "params_", model)
    if params is None:
        raise CrmvalueError(f"{type(model).__name__} has no fitted parameters; fit it first")
    if hasattr(params, "as_dict"):
        params = params.as_dict()
    try:
        return {str(k): float(v) for k, v in dict(params).items()}
    except (TypeError, ValueError):
        raise CrmvalueError(f"cannot read parameters from {type(model).__name__}") from None


def model_family(model) -> ModelFamily:
    """Which purchase model the parameters belong to: ``bg_nbd``, ``mbg_nbd`` or ``pareto_nbd``.

    crmvalue's models and parameter dataclasses name their family. For lifetimes' fitters the
    Pareto/NBD is recognised by its ``s, beta``; the MBG/NBD has the BG/NBD's parameter names,
    so it is recognised by class (``ModifiedBetaGeoFitter`` or a subclass).
    """
    from lifetimes import ModifiedBetaGeoFitter

    params = getattr(model, "params_", model)
    own = {"bgnbd": "bg_nbd", "mbgnbd": "mbg_nbd", "paretonbd": "pareto_nbd"}.get(getattr(params, "name", None))
    if own is not None:  # crmvalue's parameter dataclasses carry their model's name
        return own  # type: ignore[return-value]
    names = set(model_params(model))
    if {"r", "alpha", "s", "beta"} <= names:
        return "pareto_nbd"
    if {"r", "alpha", "a", "b"} <= names:
        return "mbg_nbd" if isinstance(model, ModifiedBetaGeoFitter) else "bg_nbd"
    raise CrmvalueError(f"unsupported purchase model {type(model).__name__} with parameters {sorted(names)}")


def expected_repeat_purchases(model, t) -> np.ndarray:
    """Unconditional E[X(t)]: expected repeat purchases of a customer ``t`` units after the first.

    FHL (2005a) eq. (9) for the BG/NBD; Fader-Hardie (2005), note 009, eq. (27) for the Pareto/NBD.
    The model's ``expected_number_of_purchases_up_to_time``, for ``t`` of any shape; ``t = 0``
    gives 0.
    """
    t = np.asarray(t, float)
    flat = t.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        values = model.expected_number_of_purchases_up_to_time(flat)
    values = np.where(flat > 0, np.asarray(values, float), 0.0)
    return values.reshape(t.shape)


# --------------------------------------------------------------------------- P(X(t) = n)


def _negative_binomial_log_pmf(n, r, alpha, t):
    """log of Gamma(r+n) / (Gamma(r) n!) (alpha/(alpha+t))^r (t/(alpha+t))^n: Poisson-gamma counts."""
    return gammaln(r + n) - gammaln(r) - gammaln(n + 1) + r * np.log(alpha / (alpha + t)) + xlogy(n, t / (alpha + t))


def bgnbd_probability_of_n_purchases(params, t, n) -> np.ndarray:
    """BG/NBD P(X(t) = n), FHL (2005a) eq. (8), vectorised over ``t`` and ``n`` (broadcast).

    The finite sum ``1 - (alpha/(alpha+t))^r sum_{j<n} Gamma(r+j)/(Gamma(r) j!) (t/(alpha+t))^j``
    is the upper tail of a negative binomial, the regularised incomplete beta
    ``I_{t/(alpha+t)}(n, r)``; everything else is in log space, so large ``n`` cannot overflow.
    """
    p = model_params(params)
    r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
    t, n = np.broadcast_arrays(np.asarray(t, float), np.asarray(n, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        still_alive = np.exp(betaln(a, b + n) - betaln(a, b) + _negative_binomial_log_pmf(n, r, alpha, t))
        dropped = np.exp(betaln(a + 1, b + np.maximum(n, 1) - 1) - betaln(a, b)) * betainc(
            np.maximum(n, 1), r, t / (alpha + t)
        )
    return still_alive + np.where(n > 0, dropped, 0.0)


def mbgnbd_probability_of_n_purchases(params, t, n) -> np.ndarray:
    """MBG/NBD P(X(t) = n) (Batislam et al. 2007; lifetimes' formula), vectorised.

    As the BG/NBD, except that a customer may drop out right after the first purchase, so the
    dropout term has ``B(a+1, b+n)`` and is present at ``n = 0``.
    """
    p = model_params(params)
    r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
    t, n = np.broadcast_arrays(np.asarray(t, float), np.asarray(n, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        still_alive = np.exp(betaln(a, b + n + 1) - betaln(a, b) + _negative_binomial_log_pmf(n, r, alpha, t))
        tail = np.where(n > 0, betainc(np.maximum(n, 1), r, t / (alpha + t)), 1.0)
    return still_alive + np.exp(betaln(a + 1, b + n) - betaln(a, b)) * tail


def pareto_nbd_probability_of_n_purchases(params, t, n) -> np.ndarray:
    """Pareto/NBD P(X(t) = n), Fader-Hardie (2020), note 012, vectorised over ``t`` and ``n``.

    ``P = NB(n; r, alpha, t) (beta/(beta+t))^s
    + alpha^r beta^s B(r+n, s+1)/B(r, s) [B1 - sum_{i=0}^{n} Gamma(r+s+i)/(Gamma(r+s) i!) t^i B2_i]``
    with, for ``alpha >= beta``, ``B1 = 2F1(r+s, s+1; r+s+n+1; (alpha-beta)/alpha) / alpha^(r+s)``
    and ``B2_i = 2F1(r+s+i, s+1; r+s+n+1; (alpha-beta)/(alpha+t)) / (alpha+t)^(r+s+i)`` (for
    ``alpha < beta`` swap the roles of alpha and beta and use ``r+n`` as the second 2F1
    parameter). The sum over ``i`` runs on an extra leading axis, in log space, so the cost
    grows as ``max(n)**2``: cheap for the few classes of :func:`period_transactions`. Checked
    against a numerical integral of the model's definition; the subtraction leaves an
    absolute error of about 1e-17.
    """
    p = model_params(params)
    r, alpha, s, beta = p["r"], p["alpha"], p["s"], p["beta"]
    t, n = np.broadcast_arrays(np.asarray(t, float), np.asarray(n, float))
    if t.size == 0:
        return np.zeros(t.shape)
    largest, gap = max(alpha, beta), abs(alpha - beta)
    second = s + 1 if alpha >= beta else r + n
    c = r + s + n + 1
    i = np.arange(int(n.max()) + 1, dtype=float).reshape((-1,) + (1,) * n.ndim)
    with np.errstate(divide="ignore", invalid="ignore"):
        alive = np.exp(_negative_binomial_log_pmf(n, r, alpha, t) + s * np.log(beta / (beta + t)))
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


_PMF = {
    "bg_nbd": bgnbd_probability_of_n_purchases,
    "mbg_nbd": mbgnbd_probability_of_n_purchases,
    "pareto_nbd": pareto_nbd_probability_of_n_purchases,
}


def probability_of_n_purchases(model, t, n) -> np.ndarray:
    """P(X(t) = n) for a new customer observed for ``t`` units, for the model's family.

    ``t`` and ``n`` broadcast together. See the family-specific functions for the formulas.
    """
    return _PMF[model_family(model)](model, t, n)


# --------------------------------------------------------------------------- tracking


def repeat_transactions_tracking(
    transactions: pd.DataFrame,
    model,
    calibration_end,
    observation_end,
    time_unit: TimeUnit = "weeks",
    period_days: int | None = None,
) -> pd.DataFrame:
    """Actual against expected repeat transactions per period, as tracked in FHL (2005a).

    Customers are those whose first purchase day is on or before ``calibration_end``. Periods
    (weeks or days) are counted from the earliest first purchase: period ``k`` holds the days
    ``[start + (k-1) u, start + k u - 1]`` with ``u`` the period length in days; the last one
    ends at ``observation_end`` (it is shorter if the span is not a whole number of periods).

    - actual: repeat purchase days (a purchase period is a customer-day; each customer's first
      purchase day is not a repeat), counted in the period they fall in;
    - expected: the sum over customers of E[X(t_k - t0_i)], the model's unconditional
      expectation (FHL 2005a eq. 9) at the customer's age at the end of period ``k``, where age
      is measured as ``T`` is in :func:`crmvalue.features.rfm_summary` (days from the first
      purchase day to the period's last day, over ``u``). Customers are grouped by first
      purchase day, so the model is evaluated once per (period, cohort).

    This is how the published CDNOW tracking numbers are built: with the sample's BG/NBD fit it
    gives 4,160.6 cumulative repeat transactions at week 78 against 4,339 actual.

    Parameters
    ----------
    transactions : DataFrame or CustomerDays
        Canonical ``customer_id, date, amount`` rows, or their netted customer-days.
    model
        A fitted purchase model in the same time unit (see the module docstring).
    calibration_end, observation_end
        Dates; only customers acquired by the calibration end are tracked, and transactions
        after the observation end are ignored.
    time_unit : {"weeks", "days"}
        The unit of the model's time.
    period_days : int, optional
        Length of a tracking period in days; default one ``time_unit`` (a day or a week). A
        model fitted in days is tracked weekly with ``period_days=7``.

    Returns
    -------
    DataFrame
        Indexed by ``period`` (1, 2, ...), with ``period_end`` (last day of the period),
        ``actual_incremental``, ``expected_incremental``, ``actual_cumulative`` and
        ``expected_cumulative``. ``attrs["calibration_period"]`` is the calibration end on the
        period axis (39.0 for CDNOW in weeks), ``attrs["customers"]`` the number tracked and
        ``attrs["period_days"]`` the period length.
    """
    cal_end, obs_end = pd.Timestamp(calibration_end).normalize(), pd.Timestamp(observation_end).normalize()
    if cal_end >= obs_end:
        raise CrmvalueError(f"calibration end {cal_end.date()} must be before observation end {obs_end.date()}")
    unit_days = float(DAYS_PER_UNIT[time_unit])
    unit = int(period_days) if period_days is not None else int(unit_days)
    if unit < 1:
        raise CrmvalueError(f"a tracking period must be at least one day, got {period_days}")
    netted = customer_days(transactions)
    keep = netted.purchase & (netted.day <= day_number(obs_end))
    customer, day = netted.customer[keep], netted.day[keep].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1]]) if len(customer) else np.array([], np.int64)
    first_days = day[starts]  # purchase days are sorted by customer, then day
    first = np.repeat(first_days, np.diff(np.r_[starts, len(day)]))
    tracked = first <= day_number(cal_end)
    if not tracked.any():
        raise CrmvalueError(f"no customer made a first purchase on or before the calibration end {cal_end.date()}")
    day, first = day[tracked], first[tracked]
    start_day = int(first.min())
    start = pd.Timestamp(start_day, unit="D")

    n_periods = -(-((obs_end - start).days + 1) // unit)  # ceiling division
    period_end = np.minimum(np.arange(1, n_periods + 1) * unit - 1, (obs_end - start).days)

    repeat_offset = (day - start_day)[day > first]
    actual = np.bincount(repeat_offset // unit, minlength=n_periods)[:n_periods]

    first_days = first_days[first_days <= day_number(cal_end)]
    cohort_offset, cohort_size = np.unique(first_days - start_day, return_counts=True)
    age = np.maximum(period_end[:, None] - cohort_offset[None, :], 0) / unit_days
    expected = expected_repeat_purchases(model, age) @ cohort_size

    table = pd.DataFrame(
        {
            "period_end": start + pd.to_timedelta(period_end, unit="D"),
            "actual_incremental": actual,
            "expected_incremental": np.diff(expected, prepend=0.0),
            "actual_cumulative": np.cumsum(actual),
            "expected_cumulative": expected,
        },
        index=pd.RangeIndex(1, n_periods + 1, name="period"),
    )
    table.attrs["calibration_period"] = ((cal_end - start).days + 1) / unit
    table.attrs["customers"] = int(cohort_size.sum())
    table.attrs["period_days"] = unit
    return table


# --------------------------------------------------------------------------- calibration fit


def _summary_columns(summary: pd.DataFrame, *names: str) -> list[np.ndarray]:
    """Columns of an rfm_summary, or the ``_cal`` columns of a calibration_holdout_summary."""
    out = []
    for name in names:
        column = name if name in summary.columns else f"{name}_cal"
        if column not in summary.columns:
            raise CrmvalueError(f"summary has no '{name}' (or '{name}_cal') column")
        out.append(summary[column].to_numpy(dtype=float))
    return out


def period_transactions(model, summary: pd.DataFrame, max_frequency: int = 7) -> pd.DataFrame:
    """Customers by number of calibration-period repeat transactions, observed and expected.

    As in FHL (2005a). The expected number of customers with ``n`` repeat transactions is
    ``sum_i P(X(T_i) = n)`` over the customers' own ages ``T_i`` (customers are grouped by
    ``T``, so each age is evaluated once); the last class, ``max_frequency`` or more, gets the
    rest, so the expected column sums to the number of customers by construction.

    Parameters
    ----------
    model
        A fitted BG/NBD, MBG/NBD or Pareto/NBD (see :func:`model_family`).
    summary : DataFrame
        ``frequency`` and ``T`` per customer (an rfm_summary), or ``frequency_cal`` and
        ``T_cal`` (a calibration_holdout_summary).
    max_frequency : int
        Classes are ``0, 1, ..., max_frequency - 1`` and ``max_frequency`` or more.

    Returns
    -------
    DataFrame
        Indexed by ``frequency`` ``0..max_frequency`` (the last is "max_frequency+"), with
        ``observed`` and ``expected`` customers.
    """
    if max_frequency < 1:
        raise CrmvalueError(f"max_frequency must be at least 1, got {max_frequency}")
    frequency, T = _summary_columns(summary, "frequency", "T")
    observed = np.bincount(np.minimum(frequency, max_frequency).astype(int), minlength=max_frequency + 1)
    ages, customers = np.unique(T, return_counts=True)
    n = np.arange(max_frequency)[:, None]
    expected = probability_of_n_purchases(model, ages[None, :], n) @ customers
    expected = np.append(expected, customers.sum() - expected.sum())
    return pd.DataFrame(
        {"observed": observed, "expected": expected},
        index=pd.RangeIndex(0, max_frequency + 1, name="frequency"),
    )


def _history_grid(max_frequency: int, max_recency: int, T) -> tuple[np.ndarray, np.ndarray, float]:
    T = float(max_recency if T is None else T)
    if T < max_recency:
        raise CrmvalueError(f"T ({T}) must be at least max_recency ({max_recency}): recency cannot exceed age")
    recency, frequency = np.meshgrid(
        np.arange(max_recency + 1, dtype=float), np.arange(max_frequency + 1, dtype=float), indexing="ij"
    )
    return frequency, recency, T


def _as_matrix(values, frequency: np.ndarray, recency: np.ndarray) -> pd.DataFrame:
    values = np.asarray(values, float).reshape(frequency.shape)
    values = np.where((frequency == 0) & (recency > 0), np.nan, values)  # x = 0 implies t_x = 0
    return pd.DataFrame(
        values,
        index=pd.Index(recency[:, 0], name="recency"),
        columns=pd.Index(frequency[0].astype(int), name="frequency"),
    )


def p_alive_matrix(model, max_frequency: int, max_recency: int, T=None) -> pd.DataFrame:
    """P(alive | x, t_x, T) over frequency ``0..max_frequency`` and recency ``0..max_recency``.

    For the BG/NBD, Fader, Hardie and Lee (2008), "Computing P(alive) using the BG/NBD model",
    http://brucehardie.com/notes/021/; for the Pareto/NBD, note 009, eq. (36)-(37). All cells
    share the age ``T`` (default ``max_recency``). Cells with ``x = 0`` and ``t_x > 0`` are
    impossible histories and are NaN.

    Returns
    -------
    DataFrame
        Rows ``recency`` (integers, in the model's time unit), columns ``frequency``.
    """
    frequency, recency, T = _history_grid(max_frequency, max_recency, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = model.conditional_probability_alive(frequency.ravel(), recency.ravel(), np.full(frequency.size, T))
    return _as_matrix(values, frequency, recency)


def expected_purchases_matrix(model, t: float, max_frequency: int, max_recency: int, T=None) -> pd.DataFrame:
    """E[Y(t) | x, t_x, T], expected purchases in the next ``t`` units, on the same grid.

    FHL (2005a) eq. (10) for the BG/NBD. Layout, default ``T`` and NaN cells as
    :func:`p_alive_matrix`.
    """
    frequency, recency, T = _history_grid(max_frequency, max_recency, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = model.conditional_expected_number_of_purchases_up_to_time(
            np.full(frequency.size, float(t)), frequency.ravel(), recency.ravel(), np.full(frequency.size, T)
        )
    return _as_matrix(values, frequency, recency)


# --------------------------------------------------------------------------- spend


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


# --------------------------------------------------------------------------- all of them


def matrix_grid(frequency, T, max_frequency_cap: int = 60) -> tuple[int, int]:
    """A frequency x recency grid that covers the customers: frequency to its 99th percentile
    (at least 5, at most ``max_frequency_cap``), recency to the largest age ``T``."""
    frequency = np.asarray(frequency, float)
    max_frequency = int(np.clip(np.ceil(np.quantile(frequency, 0.99)) if frequency.size else 0, 5, max_frequency_cap))
    max_recency = int(np.ceil(np.max(T))) if np.size(T) else 1
    return max_frequency, max(max_recency, 1)


def fit_diagnostics(
    model,
    transactions: pd.DataFrame,
    split: pd.DataFrame,
    calibration_end,
    observation_end,
    time_unit: TimeUnit,
    tracking_period_days: int = 7,
) -> dict[str, pd.DataFrame]:
    """The tables behind the standard BTYD fit figures, for a model fitted on the calibration period.

    Returns ``period_transactions`` (calibration repeat counts 0..7+), ``tracking`` (weekly by
    default, over calibration and holdout), and the ``p_alive_matrix`` and
    ``expected_purchases_matrix`` (over the holdout's length) at the calibration end, on a grid
    from :func:`matrix_grid`. ``split`` is :func:`crmvalue.features.calibration_holdout_summary`.
    The conditional expectations are :func:`crmvalue.evaluation.conditional_expectations`.
    """
    duration = float(split["duration_holdout"].iloc[0])
    max_frequency, max_recency = matrix_grid(split["frequency_cal"], split["T_cal"])
    return {
        "period_transactions": period_transactions(model, split),
        "tracking": repeat_transactions_tracking(
            transactions, model, calibration_end, observation_end, time_unit, period_days=tracking_period_days
        ),
        "p_alive_matrix": p_alive_matrix(model, max_frequency, max_recency),
        "expected_purchases_matrix": expected_purchases_matrix(model, duration, max_frequency, max_recency),
    }
