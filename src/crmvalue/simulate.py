"""Draw customers from the BG/NBD model with known parameters, for recovery tests and benchmarks.

Exact and vectorised: with purchase rate ``lam ~ Gamma(r, 1/alpha)`` and dropout probability
``p ~ Beta(a, b)``, the number of repeat purchases the customer would make in ``(0, T]`` if
alive throughout is ``N ~ Poisson(lam T)``; they drop out right after repeat purchase
``D ~ Geometric(p)``, so ``x = min(N, D)``. Given ``N = n``, the purchase times are ``n``
uniform order statistics on ``(0, T]``, so ``t_x = T * Beta(x, n - x + 1)``.
(lifetimes' ``beta_geometric_nbd_model`` truncates purchase times to whole periods, which
merges purchases and biases ``r``.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmvalue.models.bgnbd import BetaGeoParams
from crmvalue.models.gamma_gamma import GammaGammaParams


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


def simulate_transactions(
    n_customers: int,
    bgnbd: BetaGeoParams,
    gamma_gamma: GammaGammaParams,
    start: str = "2020-01-01",
    end: str = "2021-12-31",
    acquisition_days: int = 90,
    seed: int | None = None,
) -> pd.DataFrame:
    """A transaction log (``customer_id, date, amount``) drawn from BG/NBD + Gamma-Gamma, in days.

    Each customer's first purchase falls uniformly in the first ``acquisition_days`` days; their
    repeat purchases follow the BG/NBD process up to ``end`` (rates per day), and every
    purchase's amount is ``Gamma(p, nu)`` with the customer's ``nu ~ Gamma(q, v)``.
    """
    rng = np.random.default_rng(seed)
    start_ts, end_ts = pd.Timestamp(start), pd.Timestamp(end)
    first_day = rng.integers(0, acquisition_days, size=n_customers)
    T = ((end_ts - start_ts).days - first_day).astype(float)
    lam = rng.gamma(bgnbd.r, 1.0 / bgnbd.alpha, size=n_customers)
    dropout_after = rng.geometric(rng.beta(bgnbd.a, bgnbd.b, size=n_customers))
    n = rng.poisson(lam * T)
    x = np.minimum(n, dropout_after)
    # the first x of n uniform purchase times on (0, T]: sort each customer's draws, keep ranks < x
    owner = np.repeat(np.arange(n_customers), n)
    times = rng.uniform(0.0, 1.0, size=owner.size) * T[owner]
    order = np.lexsort((times, owner))
    owner, times = owner[order], times[order]
    rank = np.arange(owner.size) - np.repeat(np.cumsum(n) - n, n)
    keep = rank < x[owner]
    customer = np.concatenate([np.arange(n_customers), owner[keep]])
    offset = np.concatenate([np.zeros(n_customers), times[keep]])
    nu = rng.gamma(gamma_gamma.q, 1.0 / gamma_gamma.v, size=n_customers)
    amount = rng.gamma(gamma_gamma.p, 1.0 / nu[customer])
    dates = start_ts + pd.to_timedelta(first_day[customer] + offset, unit="D")
    width = len(str(n_customers))
    log = pd.DataFrame(
        {
            "customer_id": _ids(customer, width),
            "date": dates.floor("s"),
            "amount": np.round(amount, 2),
        }
    )
    return log.sort_values(["date", "customer_id"], kind="stable").reset_index(drop=True)


def _ids(index: np.ndarray, width: int) -> np.ndarray:
    return np.char.add("C", np.char.zfill(index.astype(str), width)).astype(object)
