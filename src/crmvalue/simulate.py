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
