"""Seeded transaction logs of many odd shapes, for the robustness suite (issue 13, point 9).

Every shape is a plain function of its size, span and seed that returns a log in the canonical
columns ``customer_id`` (text), ``date`` (timestamp) and ``amount`` (float). Randomness comes
from ``numpy.random.default_rng(seed)`` only, and the rows are drawn with array operations
(no per-purchase Python loop), so a heavy buyer's thousands of purchases cost milliseconds.

:data:`CASES` names every generated case; :func:`make_case` builds one as a :class:`LogCase`
with its name and whether the pipeline must complete on it: a valid log with at least
:data:`MIN_CUSTOMERS` customers with a purchase and at least two distinct purchase days.
Purchases follow the package's definition (:mod:`crmvalue.features`), computed here
independently: a customer-day is netted, and a day that holds a return and nets to <= 0 is
not a purchase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

MIN_CUSTOMERS = 20  # with at least this many buyers and two purchase days, a valid log must train
START_DATES = ("2020-01-01", "2019-03-15", "1997-01-01", "2021-06-30", "2023-12-20", "2016-02-28")
COLUMNS = ["customer_id", "date", "amount"]


@dataclass(frozen=True)
class LogCase:
    name: str
    frame: pd.DataFrame
    must_complete: bool  # valid, >= MIN_CUSTOMERS customers with a purchase, >= 2 distinct purchase days


# ---------------------------------------------------------------------------------------------
# building blocks


def start_date(seed: int) -> str:
    """A first day that varies with the seed (a leap day, a year end, the CDNOW era)."""
    return START_DATES[seed % len(START_DATES)]


def as_log(customer, offset_days, amount, start: str = "2020-01-01", prefix: str = "c") -> pd.DataFrame:
    """Canonical rows from customer numbers, offsets in (fractional) days from ``start`` and amounts."""
    customer = np.asarray(customer, dtype=np.int64)
    offset_days = np.asarray(offset_days, dtype=float)
    amount = np.broadcast_to(np.asarray(amount, dtype=float), customer.shape)
    width = len(str(int(customer.max()))) if customer.size else 1
    ids = np.char.add(prefix, np.char.zfill(customer.astype(str), width)).astype(object)
    dates = pd.Timestamp(start) + pd.to_timedelta(offset_days, unit="D")
    frame = pd.DataFrame({"customer_id": ids, "date": dates.floor("s"), "amount": amount.copy()})
    return frame.sort_values(["date", "customer_id"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Purchases:
    """Rows as parallel arrays before they become a log: customer number, day offset, amount."""

    customer: np.ndarray
    offset: np.ndarray
    amount: np.ndarray

    def log(self, start: str, prefix: str = "c") -> pd.DataFrame:
        return as_log(self.customer, self.offset, self.amount, start, prefix)


def buyers(
    rng: np.random.Generator,
    n: int,
    days: float,
    *,
    mean_rate: float = 0.05,
    rate_shape: float = 0.8,
    mean_lifetime: float | None = 240.0,
    acquisition: float = 0.5,
    spend_mean: float = 40.0,
    spend_shape: float = 4.0,
    spend_p: float = 3.0,
) -> Purchases:
    """Customers who join in the first ``acquisition`` share of ``days``, buy at Gamma-distributed
    Poisson rates per day while alive (an exponential lifetime, or for ever when
    ``mean_lifetime`` is None) and spend Gamma amounts around a Gamma-distributed own mean."""
    first = rng.uniform(0.0, max(days * acquisition, 1e-6), n)
    rate = rng.gamma(rate_shape, mean_rate / rate_shape, n)
    end = np.full(n, float(days))
    if mean_lifetime is not None:
        end = np.minimum(end, first + rng.exponential(mean_lifetime, n))
    repeats = rng.poisson(rate * np.maximum(end - first, 0.0))
    owner = np.repeat(np.arange(n), repeats)
    times = first[owner] + rng.uniform(0.0, 1.0, owner.size) * (end - first)[owner]
    customer = np.concatenate([np.arange(n), owner])
    offset = np.concatenate([first, times])
    own_mean = rng.gamma(spend_shape, spend_mean / spend_shape, n)
    amount = np.round(rng.gamma(spend_p, own_mean[customer] / spend_p), 2)
    return Purchases(customer, offset, amount)


def gamma_amounts(rng: np.random.Generator, size: int, mean: float = 40.0, shape: float = 2.0) -> np.ndarray:
    return np.round(rng.gamma(shape, mean / shape, size), 2)


# ---------------------------------------------------------------------------------------------
# the shapes


def one_customer(purchases: int, days: int, seed: int) -> pd.DataFrame:
    """A single customer with ``purchases`` purchases over ``days`` days."""
    rng = np.random.default_rng(seed)
    offset = np.r_[rng.uniform(0, 0.9), rng.uniform(0, days, purchases - 1)]
    return as_log(np.zeros(purchases), offset, gamma_amounts(rng, purchases), start_date(seed))


def one_time_buyers(n: int, days: int, seed: int) -> pd.DataFrame:
    """Every customer buys exactly once, on a day drawn from the span."""
    rng = np.random.default_rng(seed)
    return as_log(np.arange(n), rng.uniform(0, days, n), gamma_amounts(rng, n), start_date(seed))


def one_day(n: int, seed: int, repeats: bool = False) -> pd.DataFrame:
    """Every purchase on one calendar day; with ``repeats``, some customers buy several times that day."""
    rng = np.random.default_rng(seed)
    extra = rng.poisson(1.5, n) * rng.integers(0, 2, n) if repeats else np.zeros(n, dtype=int)
    customer = np.concatenate([np.arange(n), np.repeat(np.arange(n), extra)])
    return as_log(customer, rng.uniform(0, 0.99, customer.size), gamma_amounts(rng, customer.size), start_date(seed))


def two_days(n: int, gap: int, seed: int) -> pd.DataFrame:
    """Every purchase on one of two days ``gap`` days apart: first day only, second day only, or both."""
    rng = np.random.default_rng(seed)
    pattern = rng.choice(3, size=n, p=[0.4, 0.2, 0.4])  # 0 first only, 1 second only, 2 both
    first = np.flatnonzero(pattern != 1)
    second = np.flatnonzero(pattern != 0)
    customer = np.concatenate([first, second])
    offset = np.concatenate([np.zeros(first.size), np.full(second.size, float(gap))]) + rng.uniform(
        0, 0.99, customer.size
    )
    return as_log(customer, offset, gamma_amounts(rng, customer.size), start_date(seed))


def heavy_buyers(n: int, heavy: int, purchases: int, days: int, seed: int) -> pd.DataFrame:
    """``heavy`` customers with about ``purchases`` purchases each (thousands: many a day), among
    ``n - heavy`` ordinary ones."""
    rng = np.random.default_rng(seed)
    base = buyers(rng, n - heavy, days) if n > heavy else Purchases(np.array([], int), np.array([]), np.array([]))
    counts = rng.poisson(purchases, heavy) + 1
    owner = np.repeat(np.arange(heavy), counts) + (n - heavy)
    customer = np.concatenate([base.customer, owner])
    offset = np.concatenate([base.offset, rng.uniform(0, days, owner.size)])
    amount = np.concatenate([base.amount, gamma_amounts(rng, owner.size, mean=15.0)])
    return as_log(customer, offset, amount, start_date(seed))


def tiny_amounts(n: int, days: int, seed: int, kind: str = "cent") -> pd.DataFrame:
    """Ordinary timing with amounts of a cent (``cent``), a few cents (``cents``) or far below
    (``micro``: unrounded amounts around 1e-4)."""
    rng = np.random.default_rng(seed)
    p = buyers(rng, n, days)
    amount = {
        "cent": np.full(p.customer.size, 0.01),
        "cents": rng.choice([0.01, 0.02, 0.03, 0.05], size=p.customer.size),
        "micro": rng.gamma(2.0, 5e-5, p.customer.size),
    }[kind]
    return as_log(p.customer, p.offset, amount, start_date(seed))


def huge_amounts(n: int, days: int, seed: int, kind: str = "billion") -> pd.DataFrame:
    """Ordinary timing with amounts around 1e9 (``billion``), exactly 1e9 times a small integer
    (``round``), or spread log-uniformly from a cent to 1e9 (``spread``)."""
    rng = np.random.default_rng(seed)
    p = buyers(rng, n, days)
    size = p.customer.size
    amount = {
        "billion": rng.gamma(2.0, 5e8, size),
        "round": 1e9 * rng.integers(1, 4, size),
        "spread": np.round(10.0 ** rng.uniform(-2, 9, size), 2),
    }[kind]
    return as_log(p.customer, p.offset, amount, start_date(seed))


def identical_amounts(n: int, days: int, seed: int, value: float = 25.0) -> pd.DataFrame:
    """Every purchase costs the same: no heterogeneity in spend (Gamma-Gamma q, v -> infinity)."""
    rng = np.random.default_rng(seed)
    p = buyers(rng, n, days)
    return as_log(p.customer, p.offset, value, start_date(seed))


def no_dropout(n: int, days: int, seed: int, mean_rate: float = 0.05, rate_shape: float = 1.0) -> pd.DataFrame:
    """Nobody drops out: every customer buys at a Poisson rate for the whole span (BG/NBD a, b -> infinity)."""
    rng = np.random.default_rng(seed)
    p = buyers(rng, n, days, mean_rate=mean_rate, rate_shape=rate_shape, mean_lifetime=None)
    return p.log(start_date(seed))


def long_gap(n: int, before: int, gap: int, after: int, seed: int) -> pd.DataFrame:
    """Purchases in ``before`` days, then ``gap`` days (a year) without any purchase, then ``after`` days."""
    rng = np.random.default_rng(seed)
    p = buyers(rng, n, before + after, mean_lifetime=None, acquisition=before / (before + after))
    offset = np.where(p.offset >= before, p.offset + gap, p.offset)
    return as_log(p.customer, offset, p.amount, start_date(seed))


def short_span(n: int, days: int, seed: int) -> pd.DataFrame:
    """A few days or weeks of data."""
    rng = np.random.default_rng(seed)
    p = buyers(rng, n, days, mean_rate=0.3, acquisition=0.7, mean_lifetime=None)
    return p.log(start_date(seed))


def returns(n: int, days: int, seed: int, kind: str = "mixed") -> pd.DataFrame:
    """Ordinary purchases with returns as negative rows.

    ``exact``: some purchases are returned in full the same day (the day nets to 0, no purchase);
    ``partial``: half the amount back the same day (still a purchase); ``over``: more than the
    purchase back the same day (the day nets below 0); ``later``: returned on a later day of its
    own; ``only``: besides, a fifth of the customers have nothing but returns; ``mixed``: all of these.
    """
    rng = np.random.default_rng(seed)
    p = buyers(rng, n, days, mean_rate=0.08)
    kinds = ["exact", "partial", "over", "later"] if kind in ("mixed", "only") else [kind]
    chosen = rng.random(p.customer.size) < 0.3
    which = rng.choice(len(kinds), size=p.customer.size)
    customer, offset, amount = [p.customer], [p.offset], [p.amount]
    for k, name in enumerate(kinds):
        rows = np.flatnonzero(chosen & (which == k))
        factor = {"exact": -1.0, "partial": -0.5, "over": -1.5, "later": -1.0}[name]
        shift = rng.uniform(1, 30, rows.size) if name == "later" else np.zeros(rows.size)
        customer.append(p.customer[rows])
        # same-day returns come a few minutes after the purchase, never past midnight
        later = np.minimum(p.offset[rows] + 0.002, np.floor(p.offset[rows]) + 0.999)
        offset.append(np.minimum(later + shift, float(days) - 1e-3))
        amount.append(np.round(factor * p.amount[rows], 2) if name != "exact" else -p.amount[rows])
    if kind in ("mixed", "only"):
        k = max(n // 5, 1)
        owner = np.repeat(np.arange(n, n + k), rng.integers(1, 4, k))
        customer.append(owner)
        offset.append(rng.uniform(0, days, owner.size))
        amount.append(-gamma_amounts(rng, owner.size) - 0.01)
    return as_log(np.concatenate(customer), np.concatenate(offset), np.concatenate(amount), start_date(seed))


def ties(n: int, days: int, seed: int, kind: str = "midnight") -> pd.DataFrame:
    """Many purchases at the same timestamp.

    ``midnight``: every purchase at 00:00:00, with exact duplicate rows; ``instant``: a customer's
    purchases come in bursts of identical timestamps; ``batch``: the whole log uses a handful of
    timestamps, as a nightly batch load would.
    """
    rng = np.random.default_rng(seed)
    p = buyers(rng, n, days, mean_rate=0.08)
    if kind == "midnight":
        dup = rng.random(p.customer.size) < 0.3
        customer = np.concatenate([p.customer, p.customer[dup]])
        offset = np.floor(np.concatenate([p.offset, p.offset[dup]]))
        amount = np.concatenate([p.amount, p.amount[dup]])
    elif kind == "instant":
        burst = rng.integers(1, 6, p.customer.size)
        customer = np.repeat(p.customer, burst)
        offset = np.repeat(p.offset, burst)
        amount = gamma_amounts(rng, customer.size)
    elif kind == "batch":
        stamps = np.sort(rng.uniform(0, days, 6))
        customer = p.customer
        offset = stamps[np.searchsorted(stamps, p.offset, side="left").clip(0, stamps.size - 1)]
        amount = p.amount
    else:
        raise ValueError(kind)
    return as_log(customer, offset, amount, start_date(seed))


def ordinary(n: int, days: int, seed: int) -> pd.DataFrame:
    """An unremarkable log: joins over the first half, heterogeneous rates, lifetimes and spend."""
    rng = np.random.default_rng(seed)
    return buyers(rng, n, days).log(start_date(seed))


def forty_customers(days: int, seed: int) -> pd.DataFrame:
    """An ordinary log of 40 customers."""
    return ordinary(40, days, seed)


def few_repeaters(n: int, repeaters: int, days: int, seed: int) -> pd.DataFrame:
    """One-time buyers but for ``repeaters`` customers (0 to a few) who buy several times."""
    rng = np.random.default_rng(seed)
    counts = np.ones(n, dtype=int)
    counts[:repeaters] = rng.integers(2, 6, repeaters)
    customer = np.repeat(np.arange(n), counts)
    offset = rng.uniform(0, days, customer.size)
    return as_log(customer, offset, gamma_amounts(rng, customer.size), start_date(seed))


def late_repeaters(n: int, days: int, seed: int) -> pd.DataFrame:
    """Repeat purchases only in the second half of the span: no repeat buyer in a midpoint calibration period."""
    rng = np.random.default_rng(seed)
    half = days / 2
    first = rng.uniform(0, half - 1, n)
    repeaters = rng.random(n) < 0.5
    counts = np.where(repeaters, rng.integers(1, 5, n), 0)
    owner = np.repeat(np.arange(n), counts)
    later = rng.uniform(half + 1, days, owner.size)
    customer = np.concatenate([np.arange(n), owner])
    offset = np.concatenate([first, later])
    return as_log(customer, offset, gamma_amounts(rng, customer.size), start_date(seed))


SHAPES: dict[str, Callable[..., pd.DataFrame]] = {
    "one_customer": one_customer,
    "one_time_buyers": one_time_buyers,
    "one_day": one_day,
    "two_days": two_days,
    "heavy_buyers": heavy_buyers,
    "tiny_amounts": tiny_amounts,
    "huge_amounts": huge_amounts,
    "identical_amounts": identical_amounts,
    "no_dropout": no_dropout,
    "long_gap": long_gap,
    "short_span": short_span,
    "returns": returns,
    "ties": ties,
    "ordinary": ordinary,
    "forty_customers": forty_customers,
    "few_repeaters": few_repeaters,
    "late_repeaters": late_repeaters,
}


def mixture(parts: list[tuple[str, dict]], seed: int) -> pd.DataFrame:
    """Several shapes in one log: each part's customers get their own id prefix, and every part
    starts on the same day."""
    frames = []
    start = pd.Timestamp(start_date(seed))
    for k, (shape, kwargs) in enumerate(parts):
        frame = SHAPES[shape](**kwargs, seed=seed + 101 * k)
        frame = frame.assign(
            customer_id=f"m{k}" + frame["customer_id"],
            date=frame["date"] - frame["date"].min().normalize() + start,
        )
        frames.append(frame)
    return (
        pd.concat(frames, ignore_index=True).sort_values(["date", "customer_id"], kind="stable").reset_index(drop=True)
    )


# Parameter sets for crmvalue.simulate.simulate_transactions: rates per day unless time_unit says weeks.
SIMULATION_PARAMS: dict[str, dict] = {
    "cdnow_weeks": dict(
        model="bgnbd", purchase=(0.2426, 4.4136, 0.7929, 2.4259), spend=(6.25, 3.74, 15.44), time_unit="weeks"
    ),
    "conftest": dict(model="bgnbd", purchase=(0.25, 28.0, 0.8, 2.5), spend=(6.0, 4.0, 15.0)),
    "rare_buyers": dict(model="bgnbd", purchase=(0.02, 2.0, 0.8, 2.5), spend=(6.0, 4.0, 15.0)),
    "homogeneous_rate": dict(model="bgnbd", purchase=(50.0, 1000.0, 0.8, 2.5), spend=(6.0, 4.0, 15.0)),
    "fast_dropout": dict(model="bgnbd", purchase=(0.5, 10.0, 5.0, 1.0), spend=(6.0, 4.0, 15.0)),
    "no_dropout": dict(model="bgnbd", purchase=(0.5, 10.0, 0.01, 1e4), spend=(6.0, 4.0, 15.0)),
    "bimodal_dropout": dict(model="bgnbd", purchase=(0.5, 10.0, 0.05, 0.05), spend=(6.0, 4.0, 15.0)),
    "homogeneous_dropout": dict(model="bgnbd", purchase=(0.5, 10.0, 1e3, 1e5), spend=(6.0, 4.0, 15.0)),
    "frequent": dict(model="bgnbd", purchase=(2.0, 8.0, 0.3, 6.0), spend=(6.0, 4.0, 15.0)),
    "spend_q_below_one": dict(model="bgnbd", purchase=(0.25, 28.0, 0.8, 2.5), spend=(1.0, 0.8, 10.0)),
    "spend_homogeneous": dict(model="bgnbd", purchase=(0.25, 28.0, 0.8, 2.5), spend=(6.0, 1e4, 5e4)),
    "spend_p_tiny": dict(model="bgnbd", purchase=(0.25, 28.0, 0.8, 2.5), spend=(0.05, 3.0, 10.0)),
    "spend_p_huge": dict(model="bgnbd", purchase=(0.25, 28.0, 0.8, 2.5), spend=(1e3, 3.0, 0.05)),
    "pareto_cdnow_weeks": dict(
        model="paretonbd", purchase=(0.553, 10.578, 0.606, 11.669), spend=(6.25, 3.74, 15.44), time_unit="weeks"
    ),
    "pareto_immortal": dict(model="paretonbd", purchase=(0.5, 10.0, 0.01, 1e4), spend=(6.0, 4.0, 15.0)),
    "pareto_short_lived": dict(model="paretonbd", purchase=(0.5, 5.0, 10.0, 100.0), spend=(6.0, 4.0, 15.0)),
}


def simulated(n: int, params: str, seed: int, days: int = 540, acquisition_days: int = 90) -> pd.DataFrame:
    """A log drawn from the models themselves (``crmvalue.simulate.simulate_transactions``)."""
    from crmvalue.models import BetaGeoParams, GammaGammaParams
    from crmvalue.models.paretonbd import ParetoNBDParams
    from crmvalue.simulate import simulate_transactions

    spec = SIMULATION_PARAMS[params]
    cls = BetaGeoParams if spec["model"] == "bgnbd" else ParetoNBDParams
    start = pd.Timestamp(start_date(seed))
    end = start + pd.Timedelta(days=days)
    with np.errstate(over="ignore", divide="ignore"):  # an immortal Pareto/NBD draw has 1/mu = inf, clipped to T
        log = simulate_transactions(
            n,
            cls(*spec["purchase"]),
            GammaGammaParams(*spec["spend"]),
            start=str(start.date()),
            end=str(end.date()),
            acquisition_days=min(acquisition_days, days - 1),
            time_unit=spec.get("time_unit", "days"),
            seed=seed,
        )
    return log[COLUMNS]


# ---------------------------------------------------------------------------------------------
# the cases


def _cases() -> dict[str, Callable[[], pd.DataFrame]]:
    """Every case by name: a shape with its size, span and seed. Sizes are mostly 20-400 customers,
    and most spans are shorter than the churn model's minimum, so that the suite stays fast."""
    cases: dict[str, Callable[[], pd.DataFrame]] = {}

    def add(name: str, shape: Callable[..., pd.DataFrame], **kwargs) -> None:
        assert name not in cases, name
        cases[name] = partial(shape, **kwargs)

    for purchases in (1, 2, 10, 300):
        for days, seed in ((30, 1), (400, 2)):
            add(f"one_customer-x{purchases}-d{days}-s{seed}", one_customer, purchases=purchases, days=days, seed=seed)
    for n, days in (
        (1, 30),
        (2, 30),
        (19, 200),
        (20, 60),
        (20, 365),
        (50, 30),
        (60, 700),
        (150, 90),
        (200, 365),
        (300, 180),
        (400, 14),
        (400, 365),
        (100, 300),
        (250, 2),
    ):
        add(f"one_time_buyers-n{n}-d{days}", one_time_buyers, n=n, days=days, seed=n + days)
    for n in (1, 20, 100, 400):
        for seed, repeats in ((1, False), (2, True), (3, True)):
            add(f"one_day-n{n}-s{seed}{'-repeats' if repeats else ''}", one_day, n=n, seed=seed, repeats=repeats)
    for gap in (1, 7, 90, 400):
        for n in (20, 60, 200, 400):
            add(f"two_days-g{gap}-n{n}", two_days, n=n, gap=gap, seed=gap + n)
    for n, heavy, purchases, days in (
        (20, 20, 1000, 365),
        (20, 3, 5000, 365),
        (50, 5, 2000, 180),
        (100, 2, 3000, 300),
        (200, 10, 1500, 365),
        (30, 30, 2000, 90),
        (400, 1, 8000, 365),
        (25, 5, 3000, 30),
        (25, 25, 1000, 600),
        (150, 20, 1000, 200),
        (21, 1, 4000, 365),
        (300, 3, 2500, 120),
    ):
        add(
            f"heavy_buyers-n{n}-h{heavy}-x{purchases}-d{days}",
            heavy_buyers,
            n=n,
            heavy=heavy,
            purchases=purchases,
            days=days,
            seed=n + heavy,
        )
    # a span of 480 days or more lets the churn model run, which costs seconds: one long case per family
    for kind in ("cent", "cents", "micro"):
        for n, days in ((20, 120), (80, 365), (200, 60), (400, 300), (50, 700 if kind == "cent" else 420)):
            add(f"tiny_amounts-{kind}-n{n}-d{days}", tiny_amounts, n=n, days=days, seed=n, kind=kind)
    for kind in ("billion", "round", "spread"):
        for n, days in ((20, 120), (80, 365), (200, 60), (400, 300), (50, 700 if kind == "billion" else 420)):
            add(f"huge_amounts-{kind}-n{n}-d{days}", huge_amounts, n=n, days=days, seed=n + 1, kind=kind)
    for value in (25.0, 0.01, 1e6):
        for n, days in ((20, 200), (100, 365), (300, 90), (60, 700 if value == 25.0 else 420), (400, 365)):
            add(
                f"identical_amounts-v{value:g}-n{n}-d{days}", identical_amounts, n=n, days=days, seed=n + 2, value=value
            )
    for mean_rate, rate_shape in ((0.05, 1.0), (0.02, 0.5), (0.2, 5.0), (0.01, 50.0)):
        for n, days in ((20, 365), (100, 180), (300, 365), (60, 700 if mean_rate == 0.05 else 420)):
            add(
                f"no_dropout-rate{mean_rate:g}-shape{rate_shape:g}-n{n}-d{days}",
                no_dropout,
                n=n,
                days=days,
                seed=n + int(100 * mean_rate),
                mean_rate=mean_rate,
                rate_shape=rate_shape,
            )
    for n, before, gap, after in (
        (20, 180, 365, 180),
        (60, 90, 365, 90),
        (40, 365, 365, 365),
        (200, 30, 365, 30),
        (40, 180, 400, 10),
        (30, 10, 365, 180),
        (30, 120, 365, 120),
        (25, 60, 730, 60),
    ):
        add(
            f"long_gap-n{n}-b{before}-g{gap}-a{after}", long_gap, n=n, before=before, gap=gap, after=after, seed=n + gap
        )
    for days in (3, 7, 14, 21, 28, 42):
        for n in (20, 150, 400):
            add(f"short_span-d{days}-n{n}", short_span, n=n, days=days, seed=days + n)
    for kind in ("exact", "partial", "over", "later", "only", "mixed"):
        for n, days in ((20, 120), (25, 365), (120, 200), (300, 365)):
            add(f"returns-{kind}-n{n}-d{days}", returns, n=n, days=days, seed=n + days, kind=kind)
    for kind in ("midnight", "instant", "batch"):
        for n, days in ((20, 90), (100, 365), (300, 180), (50, 700 if kind == "midnight" else 420)):
            add(f"ties-{kind}-n{n}-d{days}", ties, n=n, days=days, seed=n + 3, kind=kind)
    for days, seed in ((30, 1), (90, 2), (180, 3), (365, 4), (365, 5), (540, 6), (450, 7), (1095, 8)):
        add(f"forty_customers-d{days}-s{seed}", forty_customers, days=days, seed=seed)
    for n, repeaters, days in (
        (20, 0, 365),
        (100, 0, 200),
        (20, 1, 365),
        (100, 1, 365),
        (300, 1, 120),
        (50, 2, 180),
        (200, 3, 365),
        (400, 5, 90),
    ):
        add(
            f"few_repeaters-n{n}-r{repeaters}-d{days}",
            few_repeaters,
            n=n,
            repeaters=repeaters,
            days=days,
            seed=n + repeaters,
        )
    for n, days in ((20, 120), (100, 365), (300, 60), (60, 700), (40, 30), (200, 200), (25, 450), (400, 90)):
        add(f"late_repeaters-n{n}-d{days}", late_repeaters, n=n, days=days, seed=n + days)
    for n, days in ((20, 365), (200, 365), (400, 180), (40, 700), (20, 60), (60, 120), (300, 300), (150, 450)):
        add(f"ordinary-n{n}-d{days}", ordinary, n=n, days=days, seed=n)
    mixtures = {
        "one_day+ordinary": [("one_day", dict(n=30, repeats=True)), ("ordinary", dict(n=60, days=300))],
        "heavy+one_time": [
            ("heavy_buyers", dict(n=5, heavy=5, purchases=2000, days=200)),
            ("one_time_buyers", dict(n=100, days=200)),
        ],
        "returns+identical": [
            ("returns", dict(n=50, days=180, kind="only")),
            ("identical_amounts", dict(n=50, days=180)),
        ],
        "tiny+huge": [("tiny_amounts", dict(n=60, days=200, kind="cent")), ("huge_amounts", dict(n=60, days=200))],
        "no_dropout+ties": [("no_dropout", dict(n=80, days=365)), ("ties", dict(n=40, days=365, kind="batch"))],
        "short+long_gap": [("short_span", dict(n=50, days=14)), ("long_gap", dict(n=30, before=60, gap=365, after=60))],
        "two_days+one_customer": [("two_days", dict(n=40, gap=30)), ("one_customer", dict(purchases=200, days=30))],
        "few_repeaters+identical": [
            ("few_repeaters", dict(n=60, repeaters=1, days=200)),
            ("identical_amounts", dict(n=20, days=200, value=9.99)),
        ],
        "one_time+one_day": [("one_time_buyers", dict(n=30, days=90)), ("one_day", dict(n=30))],
        "everything": [
            ("heavy_buyers", dict(n=10, heavy=2, purchases=1500, days=300)),
            ("returns", dict(n=40, days=300, kind="mixed")),
            ("ties", dict(n=40, days=300, kind="midnight")),
            ("tiny_amounts", dict(n=20, days=300, kind="micro")),
            ("huge_amounts", dict(n=20, days=300, kind="spread")),
        ],
        "late_repeaters+no_dropout": [("late_repeaters", dict(n=60, days=240)), ("no_dropout", dict(n=20, days=240))],
        "one_time+heavy": [
            ("one_time_buyers", dict(n=200, days=365)),
            ("heavy_buyers", dict(n=1, heavy=1, purchases=3000, days=365)),
        ],
        "identical+tiny": [
            ("identical_amounts", dict(n=40, days=150, value=0.01)),
            ("tiny_amounts", dict(n=40, days=150, kind="micro")),
        ],
    }
    for label, parts in mixtures.items():
        for seed in (1, 2):
            add(f"mixture-{label}-s{seed}", mixture, parts=parts, seed=seed)
    sizes = ((40, 1, 300, 60), (150, 2, 365, 90), (400, 3, 365, 1))  # n, seed, span days, acquisition days
    for params in SIMULATION_PARAMS:
        for n, seed, days, acquisition in sizes:
            add(
                f"simulated-{params}-n{n}-d{days}-a{acquisition}",
                simulated,
                n=n,
                params=params,
                seed=seed,
                days=days,
                acquisition_days=acquisition,
            )
    for params in SIMULATION_PARAMS:  # another draw of each, short
        add(f"simulated-{params}-n80-d200-a30", simulated, n=80, params=params, seed=5, days=200, acquisition_days=30)
    for params in ("cdnow_weeks", "no_dropout", "spend_homogeneous", "pareto_cdnow_weeks"):  # long enough for churn
        add(f"simulated-{params}-n60-d800-a90", simulated, n=60, params=params, seed=4, days=800, acquisition_days=90)
    return cases


CASES = _cases()


def purchase_days(frame: pd.DataFrame) -> pd.MultiIndex:
    """(customer, day) of every purchase, by the package's definition: a customer-day's rows are
    netted, and a day holding a return that nets to <= 0 is no purchase."""
    day = frame["date"].dt.normalize()
    daily = frame.groupby([frame["customer_id"], day], sort=False)["amount"].agg(["sum", "min"])
    purchase = ~((daily["min"] < 0) & (daily["sum"] <= 0))
    return daily.index[purchase.to_numpy()]


def purchasers(frame: pd.DataFrame) -> set[str]:
    """Ids of the customers with at least one purchase day: the rows a completed run must score."""
    return set(purchase_days(frame).get_level_values(0).astype(str))


def purchase_counts(frame: pd.DataFrame) -> tuple[int, int]:
    """Customers with a purchase, and distinct purchase days."""
    kept = purchase_days(frame)
    return kept.get_level_values(0).nunique(), kept.get_level_values(1).nunique()


def is_valid(frame: pd.DataFrame) -> bool:
    """Rows the loader accepts: canonical columns, non-empty text ids, timestamps, finite amounts."""
    return (
        len(frame) > 0
        and list(frame.columns[:3]) == COLUMNS
        and frame["customer_id"].map(lambda v: isinstance(v, str) and v.strip() != "").all()
        and pd.api.types.is_datetime64_any_dtype(frame["date"])
        and not frame["date"].isna().any()
        and bool(np.isfinite(frame["amount"].to_numpy(dtype=float)).all())
    )


def must_complete(frame: pd.DataFrame) -> bool:
    """A valid log with at least MIN_CUSTOMERS customers with a purchase and two distinct purchase days."""
    if not is_valid(frame):
        return False
    customers, days = purchase_counts(frame)
    return customers >= MIN_CUSTOMERS and days >= 2


def make_case(name: str) -> LogCase:
    frame = CASES[name]()
    return LogCase(name, frame, must_complete(frame))


def case_names(prefix: str = "") -> list[str]:
    return [name for name in CASES if name.startswith(prefix)]
