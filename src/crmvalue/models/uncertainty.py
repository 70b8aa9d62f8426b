"""Per-customer intervals from a parametric bootstrap over the fitted parameters.

Parameter draws come from the asymptotic normal distribution of the maximum-likelihood
estimate in log-parameters (the parametrisation lifetimes optimises, which keeps every draw
positive): ``log theta* ~ N(log theta_hat, I^-1)``, with ``I`` the observed information.
Each draw re-scores every customer; the interval is the draws' central quantiles. Only
parameter uncertainty is covered, not the Poisson noise of the purchases themselves.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd

from crmvalue.features import SUMMARY_COLUMNS
from crmvalue.models.gamma_gamma import SpendParams, expected_average_value
from crmvalue.models.value import ValueModel, discounted_purchases, unique_patterns

log = logging.getLogger("crmvalue")

_CELLS = 20_000_000  # draws x customers x months evaluated at once, to bound memory


def draw_parameters(params, log_covariance: np.ndarray, draws: int, rng: np.random.Generator):
    """``draws`` parameter sets as one params object whose fields are (draws, 1) arrays."""
    names = list(params.as_dict())
    centre = np.log(np.array([params.as_dict()[n] for n in names]))
    sample = np.exp(rng.multivariate_normal(centre, log_covariance, size=draws, method="eigh"))
    return replace(params, **{n: sample[:, i : i + 1] for i, n in enumerate(names)})


def bootstrap_intervals(
    model: ValueModel,
    summary: pd.DataFrame,
    purchase_log_covariance: np.ndarray,
    spend_log_covariance: np.ndarray,
    draws: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> pd.DataFrame:
    """``expected_purchases`` and ``clv`` intervals at ``level``, vectorised over draws.

    Returns ``expected_purchases_lower/upper`` and ``clv_lower/upper`` indexed like ``summary``.
    """
    rng = np.random.default_rng(seed)
    purchase = draw_parameters(model.purchase, purchase_log_covariance, draws, rng)
    spend: SpendParams = draw_parameters(model.gamma_gamma, spend_log_covariance, draws, rng)
    x, t_x, T_, m = (summary[c].to_numpy(float) for c in SUMMARY_COLUMNS)
    ux, ut, uT, inverse = unique_patterns(x, t_x, T_)
    tails = [(1 - level) / 2, (1 + level) / 2]
    out = np.empty((len(x), 4))
    block = max(1, _CELLS // (draws * (model.clv_months + 1)))
    per_pattern = np.empty((2, draws, len(ux)))
    for start in range(0, len(ux), block):
        s = slice(start, start + block)
        per_pattern[0][:, s] = purchase.expected_purchases(model.horizon, ux[s], ut[s], uT[s])
        per_pattern[1][:, s] = discounted_purchases(
            purchase, ux[s], ut[s], uT[s], model.clv_months, model.discount_rate, model.time_unit
        )
    # a draw far out in a wide (near-boundary) covariance can leave the model's functions without a finite
    # value (2F1 at extreme a, b): such draws are left out of the quantiles, and a customer with no finite
    # draw at all gets the point estimate as both bounds
    bad = ~np.isfinite(per_pattern)
    if bad.any():
        per_pattern[bad] = np.nan
        log.warning(
            "intervals: %d of %d parameter draws give no finite forecast for some customers (a wide, near-boundary "
            "covariance); they are left out of those customers' bounds",
            int(bad.any(axis=(0, 2)).sum()),
            draws,
        )
    point = model.predict(summary)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: filled with the point estimate below
        out[:, 0:2] = np.nanquantile(per_pattern[0], tails, axis=0).T[inverse]
        customers_per_block = max(1, _CELLS // draws)
        for start in range(0, len(x), customers_per_block):
            s = slice(start, start + customers_per_block)
            clv = expected_average_value(spend, x[s], m[s]) * per_pattern[1][:, inverse[s]]  # (draws, n)
            clv[~np.isfinite(clv)] = np.nan
            out[s, 2:4] = np.nanquantile(clv, tails, axis=0).T
    for columns, estimate in (((0, 1), "expected_purchases"), ((2, 3), "clv")):
        for c in columns:
            missing = np.isnan(out[:, c])
            out[missing, c] = point[estimate].to_numpy(float)[missing]
    return pd.DataFrame(
        out,
        index=summary.index,
        columns=["expected_purchases_lower", "expected_purchases_upper", "clv_lower", "clv_upper"],
    )
