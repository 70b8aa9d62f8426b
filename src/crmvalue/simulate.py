"""Draw customers from BG/NBD or Pareto/NBD (with Gamma-Gamma spend) with known parameters,
for recovery tests, benchmarks and `crmvalue simulate`.

Exact and vectorised: with purchase rate ``lam ~ Gamma(r, 1/alpha)`` and dropout probability
``p ~ Beta(a, b)``, the number of repeat purchases the customer would make in ``(0, T]`` if
alive throughout is ``N ~ Poisson(lam T)``; they drop out right after repeat purchase
``D ~ Geometric(p)``, so ``x = min(N, D)``. Given ``N = n``, the purchase times are ``n``
uniform order statistics on ``(0, T]``, so ``t_x = T * Beta(x, n - x + 1)``.
(lifetimes' ``beta_geometric_nbd_model`` truncates purchase times to whole periods, which
merges purchases and biases ``r``.)
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pandas as pd

from crmvalue.features import DAYS_PER_UNIT, TimeUnit
from crmvalue.models.bgnbd import BetaGeoParams
from crmvalue.models.gamma_gamma import GammaGammaParams
from crmvalue.models.paretonbd import ParetoNBDParams


def simulate_bgnbd_summary(params: BetaGeoParams, T, seed: int | None = None) -> pd.DataFrame:
    """One customer per entry of ``T``: columns ``frequency, recency, T``."""
    rng = np.random.default_rng(seed)
    T = np.asarray(T, float)
    lam = rng.gamma(params.r, 1.0 / params.alpha, size=T.shape)
    p = rng.beta(params.a, params.b, size=T.shape)
    n = rng.poisson(lam * T)
    dropout_after = rng.geometric(p)
    x = np.minimum(n, dropout_after)
    recency = np.zeros_like(T)
    buyers = x > 0
    recency[buyers] = T[buyers] * rng.beta(x[buyers], n[buyers] - x[buyers] + 1)
    return pd.DataFrame({"frequency": x.astype(float), "recency": recency, "T": T})


def simulate_paretonbd_summary(params: ParetoNBDParams, T, seed: int | None = None) -> pd.DataFrame:
    """Pareto/NBD customers, exactly: ``lam ~ Gamma(r, 1/alpha)``, ``mu ~ Gamma(s, 1/beta)``, lifetime
    ``tau ~ Exp(mu)``; ``x ~ Poisson(lam min(tau, T))`` and ``t_x`` is the largest of ``x``
    uniform times on ``(0, min(tau, T))``."""
    rng = np.random.default_rng(seed)
    T = np.asarray(T, float)
    lam = rng.gamma(params.r, 1.0 / params.alpha, size=T.shape)
    mu = rng.gamma(params.s, 1.0 / params.beta, size=T.shape)
    active = np.minimum(rng.exponential(1.0 / mu), T)
    x = rng.poisson(lam * active)
    recency = np.where(x > 0, active * rng.uniform(size=T.shape) ** (1.0 / np.maximum(x, 1)), 0.0)
    return pd.DataFrame({"frequency": x.astype(float), "recency": recency, "T": T})


def in_days(params: BetaGeoParams | ParetoNBDParams, time_unit: TimeUnit) -> BetaGeoParams | ParetoNBDParams:
    """The same process with rates per day: the Gamma scale parameters alpha (and beta) grow by days/unit."""
    k = DAYS_PER_UNIT[time_unit]
    if isinstance(params, ParetoNBDParams):
        return replace(params, alpha=params.alpha * k, beta=params.beta * k)
    return replace(params, alpha=params.alpha * k)


def simulate_transactions(
    n_customers: int,
    purchase: BetaGeoParams | ParetoNBDParams,
    gamma_gamma: GammaGammaParams,
    start: str = "2020-01-01",
    end: str = "2021-12-31",
    acquisition_days: int = 90,
    time_unit: TimeUnit = "days",
    seed: int | None = None,
) -> pd.DataFrame:
    """A transaction log (``customer_id, date, amount``) drawn from BG/NBD or Pareto/NBD and Gamma-Gamma.

    ``purchase`` holds rates per ``time_unit``. Each customer's first purchase falls at the
    start of a day drawn uniformly from the first ``acquisition_days``; repeat purchases follow
    the model in continuous time up to the end of ``end``'s day; each purchase's amount is
    ``Gamma(p, nu)`` with the customer's ``nu ~ Gamma(q, v)``. Purchases that fall on one
    calendar day are merged by the RFM features, as real same-day purchases are.
    """
    if n_customers < 1:
        raise ValueError("n_customers must be positive")
    rng = np.random.default_rng(seed)
    daily = in_days(purchase, time_unit)
    start_ts, end_ts = pd.Timestamp(start), pd.Timestamp(end)
    first_day = rng.integers(0, acquisition_days, size=n_customers)
    T = ((end_ts - start_ts).days - first_day).astype(float)
    lam = rng.gamma(daily.r, 1.0 / daily.alpha, size=n_customers)
    if isinstance(daily, ParetoNBDParams):
        mu = rng.gamma(daily.s, 1.0 / daily.beta, size=n_customers)
        window = np.minimum(rng.exponential(1.0 / mu), T)
        n = rng.poisson(lam * window)
        limit = n
    else:
        window = T
        n = rng.poisson(lam * window)
        limit = rng.geometric(rng.beta(daily.a, daily.b, size=n_customers))  # drops out after this repeat
    # the first min(n, limit) of n uniform purchase times: sort each customer's draws, keep ranks < limit
    owner = np.repeat(np.arange(n_customers), n)
    times = rng.uniform(0.0, 1.0, size=owner.size) * window[owner]
    order = np.lexsort((times, owner))
    owner, times = owner[order], times[order]
    rank = np.arange(owner.size) - np.repeat(np.cumsum(n) - n, n)
    keep = rank < limit[owner]
    customer = np.concatenate([np.arange(n_customers), owner[keep]])
    offset = np.concatenate([np.zeros(n_customers), times[keep]])
    nu = rng.gamma(gamma_gamma.q, 1.0 / gamma_gamma.v, size=n_customers)
    amount = rng.gamma(gamma_gamma.p, 1.0 / nu[customer])
    dates = start_ts + pd.to_timedelta(first_day[customer] + offset, unit="D")
    log = pd.DataFrame(
        {
            "customer_id": _ids(customer, len(str(n_customers))),
            "date": dates.floor("s"),
            "amount": np.round(amount, 2),
        }
    )
    return log.sort_values(["date", "customer_id"], kind="stable").reset_index(drop=True)


def _ids(index: np.ndarray, width: int) -> np.ndarray:
    return np.char.add("C", np.char.zfill(index.astype(str), width)).astype(object)


def purchase_params(model: str, values: dict[str, float]) -> BetaGeoParams | ParetoNBDParams:
    """Build the parameters of ``model`` from a mapping, naming what is missing or unknown."""
    from crmvalue.errors import CrmvalueError

    cls = {"bgnbd": BetaGeoParams, "paretonbd": ParetoNBDParams}.get(model)
    if cls is None:
        raise CrmvalueError(f"cannot simulate model '{model}'; choose bgnbd or paretonbd")
    expected = {f.name for f in fields(cls)}
    if set(values) != expected:
        raise CrmvalueError(
            f"{model} needs parameters {', '.join(sorted(expected))}; got {', '.join(sorted(values)) or 'none'}"
        )
    if any(not v > 0 for v in values.values()):
        raise CrmvalueError(f"{model} parameters must be positive; got {values}")
    return cls(**{k: float(v) for k, v in values.items()})


def simulate_from_config(sim) -> pd.DataFrame:
    """The transactions a :class:`crmvalue.config.SimulationConfig` describes."""
    from crmvalue.errors import CrmvalueError

    if set(sim.spend) != {"p", "q", "v"} or any(not v > 0 for v in sim.spend.values()):
        raise CrmvalueError(f"spend needs positive p, q and v; got {sim.spend}")
    return simulate_transactions(
        sim.customers,
        purchase_params(sim.model, sim.params),
        GammaGammaParams(**sim.spend),
        start=str(sim.start),
        end=str(sim.end),
        acquisition_days=sim.acquisition_days,
        time_unit=sim.time_unit,
        seed=sim.seed,
    )
