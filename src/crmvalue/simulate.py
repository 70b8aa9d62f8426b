"""Draw customers from a purchase model (with Gamma-Gamma spend) with known parameters,
for recovery tests, benchmarks and `crmvalue simulate`.

Each model's parameters own its exact, vectorised simulators (``simulate_summary`` for
``frequency, recency, T`` rows, ``draw_purchases`` for a transaction log); this module turns
them into a transaction log and reads the simulation config.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmvalue.features import DAYS_PER_UNIT, TimeUnit
from crmvalue.models import registry
from crmvalue.models.base import PurchaseParams
from crmvalue.models.bgnbd import BetaGeoParams
from crmvalue.models.gamma_gamma import GammaGammaParams
from crmvalue.models.paretonbd import ParetoNBDParams


def simulate_bgnbd_summary(params: BetaGeoParams, T, seed: int | None = None) -> pd.DataFrame:
    """One customer per entry of ``T``: columns ``frequency, recency, T`` (see :meth:`BetaGeoParams.simulate_summary`)."""
    return params.simulate_summary(T, seed)


def simulate_paretonbd_summary(params: ParetoNBDParams, T, seed: int | None = None) -> pd.DataFrame:
    """Pareto/NBD customers, exactly (see :meth:`ParetoNBDParams.simulate_summary`)."""
    return params.simulate_summary(T, seed)


def in_days(params: PurchaseParams, time_unit: TimeUnit) -> PurchaseParams:
    """The same process with rates per day: the Gamma scale parameters alpha (and beta) grow by days/unit."""
    return params.in_days(DAYS_PER_UNIT[time_unit])


def simulate_transactions(
    n_customers: int,
    purchase: PurchaseParams,
    gamma_gamma: GammaGammaParams,
    start: str = "2020-01-01",
    end: str = "2021-12-31",
    acquisition_days: int = 90,
    time_unit: TimeUnit = "days",
    seed: int | None = None,
) -> pd.DataFrame:
    """A transaction log (``customer_id, date, amount``) drawn from a purchase model and Gamma-Gamma.

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
    draws = daily.draw_purchases(rng, T)
    window, n, limit = draws.window, draws.n, draws.limit
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


def purchase_params(model: str, values: dict[str, float]) -> PurchaseParams:
    """Build the parameters of ``model`` from a mapping, naming what is missing or unknown."""
    from crmvalue.errors import CrmvalueError

    if model not in registry.names("continuous"):  # a transaction log in continuous time
        known = registry.names("continuous")
        choices = f"{', '.join(known[:-1])} or {known[-1]}" if len(known) > 1 else known[0]
        raise CrmvalueError(f"cannot simulate model '{model}'; choose {choices}")
    cls = registry.model_class(model).params_class
    expected = set(cls.parameter_names())
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
