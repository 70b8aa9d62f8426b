"""The tables behind the BTYD model-fit figures of Fader, Hardie and Lee (2005a): weekly and
cumulative repeat-transaction tracking, the calibration-period frequency histogram, and the P(alive)
and expected-purchases matrices (see :mod:`crmvalue.diagnostics` for the models accepted)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmvalue.customer_days import customer_days, day_number
from crmvalue.diagnostics.models import expected_repeat_purchases, probability_of_n_purchases
from crmvalue.discrete import Period, period_tracking
from crmvalue.errors import CrmvalueError
from crmvalue.features import DAYS_PER_UNIT, TimeUnit

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
    # one value per purchase day (tens of millions on the largest inputs): int32 days, each array freed once used
    keep = netted.purchase & (netted.day <= day_number(obs_end))
    customer, day = netted.customer[keep], netted.day[keep].astype(np.int32, copy=False)
    del keep
    starts = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1]]) if len(customer) else np.array([], np.int64)
    first_days = day[starts]  # purchase days are sorted by customer, then day
    first_codes = customer[starts]
    del customer
    first = np.repeat(first_days, np.diff(np.r_[starts, len(day)]))
    tracked = first <= day_number(cal_end)
    if not tracked.any():
        raise CrmvalueError(f"no customer made a first purchase on or before the calibration end {cal_end.date()}")
    if not tracked.all():
        day, first = day[tracked], first[tracked]
    del tracked
    start_day = int(first.min())
    start = pd.Timestamp(start_day, unit="D")

    n_periods = -(-((obs_end - start).days + 1) // unit)  # ceiling division
    period_end = np.minimum(np.arange(1, n_periods + 1) * unit - 1, (obs_end - start).days)

    repeat_offset = day[day > first] - start_day
    del day, first
    actual = np.bincount(repeat_offset // unit, minlength=n_periods)[:n_periods]

    acquired = first_days <= day_number(cal_end)
    first_days, first_codes = first_days[acquired], first_codes[acquired]
    cohort_offset, cohort_size = np.unique(first_days - start_day, return_counts=True)
    if is_covariate_fit(model):  # each customer has parameters of her own

        def expected_by_group(params, offset: np.ndarray) -> np.ndarray:
            age = np.maximum(period_end[:, None] - offset[None, :], 0) / unit_days
            with np.errstate(divide="ignore", invalid="ignore"):
                values = params.expected_purchases_unconditional(age)
            return np.where(age > 0, values, 0.0)

        ids = netted.ids[first_codes]
        expected = covariate_sum(model, first_days - start_day, ids, expected_by_group, n_periods)
    else:
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


# --------------------------------------------------------------------------- covariate fits

# a covariate fit's groups of customers are evaluated this many values (groups x outputs) at a time
GROUP_CELLS = 4_000_000


def is_covariate_fit(model) -> bool:
    """A purchase model with time-invariant covariates (:class:`crmvalue.evaluation.CovariateFit`): each fitted
    customer has parameters of her own, so the population figures sum over customers, not over ages alone."""
    return hasattr(model, "covariates_of") and hasattr(model, "params_for")


def covariate_sum(model, keys, ids, evaluate, width: int) -> np.ndarray:
    """``sum_i evaluate(params_i, key_i)`` over the customers ``ids`` of a covariate fit, a vector of ``width``.

    ``keys`` holds one number per customer (her age, or her first day); customers with the same key and the same
    covariates form one group, evaluated once and counted by its size, so a categorical covariate costs a few
    groups per age. ``evaluate(params, keys)`` gets the parameters of a chunk of groups as arrays of shape (g,)
    and their keys (g,), and returns (width, g).
    """
    z = model.covariates_of(ids)
    groups, sizes = np.unique(np.column_stack([np.asarray(keys, float), z]), axis=0, return_counts=True)
    total = np.zeros(width)
    step = max(1, GROUP_CELLS // max(width, 1))
    for lo in range(0, len(groups), step):
        chunk = groups[lo : lo + step]
        total += np.asarray(evaluate(model.params_for(chunk[:, 1:]), chunk[:, 0]), float) @ sizes[lo : lo + step]
    return total


# --------------------------------------------------------------------------- calibration fit


def summary_columns(summary: pd.DataFrame, *names: str) -> list[np.ndarray]:
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
    frequency, T = summary_columns(summary, "frequency", "T")
    observed = np.bincount(np.minimum(frequency, max_frequency).astype(int), minlength=max_frequency + 1)
    n = np.arange(max_frequency)[:, None]
    if is_covariate_fit(model):  # each customer has parameters of her own

        def probabilities(params, ages: np.ndarray) -> np.ndarray:
            return params.probability_of_n_purchases(ages[None, :], n)

        expected = covariate_sum(model, T, summary.index, probabilities, max_frequency)
    else:
        ages, customers = np.unique(T, return_counts=True)
        expected = probability_of_n_purchases(model, ages[None, :], n) @ customers
    expected = np.append(expected, len(T) - expected.sum())
    return pd.DataFrame(
        {"observed": observed, "expected": expected},
        index=pd.RangeIndex(0, max_frequency + 1, name="frequency"),
    )


def history_grid(max_frequency: int, max_recency: int, T) -> tuple[np.ndarray, np.ndarray, float]:
    T = float(max_recency if T is None else T)
    if T < max_recency:
        raise CrmvalueError(f"T ({T}) must be at least max_recency ({max_recency}): recency cannot exceed age")
    recency, frequency = np.meshgrid(
        np.arange(max_recency + 1, dtype=float), np.arange(max_frequency + 1, dtype=float), indexing="ij"
    )
    return frequency, recency, T


def as_matrix(values, frequency: np.ndarray, recency: np.ndarray) -> pd.DataFrame:
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
    frequency, recency, T = history_grid(max_frequency, max_recency, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = model.conditional_probability_alive(frequency.ravel(), recency.ravel(), np.full(frequency.size, T))
    return as_matrix(values, frequency, recency)


def expected_purchases_matrix(model, t: float, max_frequency: int, max_recency: int, T=None) -> pd.DataFrame:
    """E[Y(t) | x, t_x, T], expected purchases in the next ``t`` units, on the same grid.

    FHL (2005a) eq. (10) for the BG/NBD. Layout, default ``T`` and NaN cells as
    :func:`p_alive_matrix`.
    """
    frequency, recency, T = history_grid(max_frequency, max_recency, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = model.conditional_expected_number_of_purchases_up_to_time(
            np.full(frequency.size, float(t)), frequency.ravel(), recency.ravel(), np.full(frequency.size, T)
        )
    return as_matrix(values, frequency, recency)


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
    period: Period | None = None,
) -> dict[str, pd.DataFrame]:
    """The tables behind the standard BTYD fit figures, for a model fitted on the calibration period.

    Returns ``period_transactions`` (calibration repeat counts 0..7+), ``tracking`` (weekly by
    default, over calibration and holdout), and the ``p_alive_matrix`` and
    ``expected_purchases_matrix`` (over the holdout's length) at the calibration end, on a grid
    from :func:`matrix_grid`. ``split`` is :func:`crmvalue.features.calibration_holdout_summary`; for BG/BB
    (``period`` given) :func:`crmvalue.discrete.period_calibration_holdout_summary`, tracked per period.
    The conditional expectations are :func:`crmvalue.evaluation.conditional_expectations`. A covariate fit
    (:func:`is_covariate_fit`; continuous time) gets the period transactions and the tracking, each customer with
    her own parameters, and no matrices.
    """
    tables = {
        "period_transactions": period_transactions(model, split),
        "tracking": repeat_transactions_tracking(
            transactions, model, calibration_end, observation_end, time_unit, period_days=tracking_period_days
        )
        if period is None
        else period_tracking(
            transactions, lambda age: expected_repeat_purchases(model, age), calibration_end, observation_end, period
        ),
    }
    if is_covariate_fit(model):  # the matrices are one customer's answers: a covariate fit has one per customer
        return tables
    duration = float(split["duration_holdout"].iloc[0])
    max_frequency, max_recency = matrix_grid(split["frequency_cal"], split["T_cal"])
    tables["p_alive_matrix"] = p_alive_matrix(model, max_frequency, max_recency)
    tables["expected_purchases_matrix"] = expected_purchases_matrix(model, duration, max_frequency, max_recency)
    return tables
