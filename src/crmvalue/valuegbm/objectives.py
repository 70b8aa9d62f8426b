"""The objectives of the boosted value model: how each is trained, stopped, refitted and turned into E[revenue].

Each objective is one or two LightGBM boosters (*parts*) and a few plain numbers:

- ``tweedie``: one booster with LightGBM's Tweedie loss (log link), whose prediction is the mean revenue. With
  ``btyd_offset`` (the default) it starts from the BG/NBD x Gamma-Gamma forecast of the row's cut-off: the
  log of ``btyd_revenue`` is each row's initial score (an offset), so the trees learn a multiplicative
  correction of the BTYD forecast, and the mean is ``exp(offset + trees)``;
- ``l2``: one booster with squared error on revenue, clipped at 0;
- ``log_l2``: squared error on ``log1p(revenue)``; the mean is ``s exp(f) - 1`` with Duan's (1983) smearing
  factor ``s = mean(exp(residual))``, estimated on the held-out cut-off;
- ``hurdle_lognormal``: a two-part zero-inflated lognormal model, after Wang, Liu and Miao (2019), "A Deep
  Probabilistic Model for Customer Lifetime Value Prediction" (ZILN), whose loss splits into a purchase
  classifier and a lognormal likelihood on the buyers: a binary booster for ``P(revenue > 0)`` and a
  squared-error booster for ``mu = E[log revenue | revenue > 0]``, with one variance ``sigma^2`` of the log
  residuals on the held-out buyers (ZILN learns a per-customer sigma); the mean is
  ``P(revenue > 0) exp(mu + sigma^2 / 2)``.

Every part is trained the same way: early stopping on the held-out cut-off with the training rows purged of
every label window that reaches past it, then refitted on every cut-off with the rounds it found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crmvalue.valuegbm.settings import GbmNotEstimable, GbmSettings

OFFSET_FLOOR = 0.01  # a BTYD forecast below this (a cent) counts as this, so that its log is finite


def log_offset(btyd_revenue, fallback: float) -> np.ndarray:
    """The Tweedie offset: ``log(btyd_revenue)``, ``fallback`` (the mean training label) where the BTYD fits
    failed, floored at ``OFFSET_FLOOR``."""
    revenue = np.asarray(btyd_revenue, float)
    return np.log(np.maximum(np.where(np.isfinite(revenue), revenue, fallback), OFFSET_FLOOR))


@dataclass
class Fitted:
    """The boosters of an objective, its numbers (smearing factor, log variance) and each part's rounds."""

    boosters: dict = field(default_factory=dict)  # part -> lightgbm.Booster
    constants: dict[str, float] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Split:
    """The rows of one fit: every row's features and label, and which rows train (purged) and which are held out."""

    X: pd.DataFrame
    y: np.ndarray
    train: np.ndarray  # bool per row: a training cut-off whose label window ends by the held-out cut-off
    valid: np.ndarray  # bool per row: the held-out cut-off

    def buyers(self) -> Split:
        """The rows with revenue."""
        keep = self.y > 0
        return Split(self.X[keep], self.y[keep], self.train[keep], self.valid[keep])


def fit_objective(settings: GbmSettings, split: Split) -> Fitted:
    """Train the boosters of ``settings.objective`` on ``split``."""
    fitted = Fitted()
    if settings.objective == "tweedie":
        params = settings.lightgbm_params("tweedie", "tweedie", tweedie_variance_power=settings.tweedie_variance_power)
        offset = None
        if settings.btyd_offset:
            fitted.constants["offset_fallback"] = float(np.mean(split.y))
            offset = log_offset(split.X["btyd_revenue"], fitted.constants["offset_fallback"])
        _part(fitted, "mean", params, settings, split, lambda y: y, offset)
    elif settings.objective == "l2":
        _part(fitted, "mean", settings.lightgbm_params("regression", "l2"), settings, split, lambda y: y)
    elif settings.objective == "log_l2":
        stopped = _part(fitted, "mean", settings.lightgbm_params("regression", "l2"), settings, split, np.log1p)
        residual = np.log1p(split.y[split.valid]) - stopped.predict(split.X[split.valid])
        fitted.constants["smearing"] = float(np.mean(np.exp(residual)))
    else:  # hurdle_lognormal
        _part(fitted, "buy", settings.lightgbm_params("binary", "binary_logloss"), settings, split, _bought)
        buyers = split.buyers()
        if not buyers.train.any() or not buyers.valid.any():
            raise GbmNotEstimable(
                "value gbm: no customer has revenue in a training or the held-out label window; "
                "the hurdle lognormal model has no spend to learn",
                "no revenue in a training or the held-out label window",
            )
        stopped = _part(fitted, "log_spend", settings.lightgbm_params("regression", "l2"), settings, buyers, np.log)
        residual = np.log(buyers.y[buyers.valid]) - stopped.predict(buyers.X[buyers.valid])
        fitted.constants["log_variance"] = float(np.mean(residual**2))
    return fitted


def _bought(y: np.ndarray) -> np.ndarray:
    return (y > 0).astype(float)


def _part(fitted: Fitted, name: str, params: dict, settings: GbmSettings, split: Split, target, offset=None):
    """Early stopping on the held-out rows, then a refit on every row with the rounds found; returns the
    early-stopping booster (for the held-out residuals) and keeps the refitted one in ``fitted``. ``offset``:
    each row's initial score."""
    import lightgbm as lgb

    # binned once: the training and held-out rows are subsets of every row's dataset (offsets included)
    every = lgb.Dataset(
        split.X, target(split.y), init_score=offset, params={"max_bin": settings.max_bin}, free_raw_data=False
    )
    train = every.subset(np.flatnonzero(split.train).tolist())
    valid = every.subset(np.flatnonzero(split.valid).tolist())
    stopped = lgb.train(
        params,
        train,
        num_boost_round=settings.num_boost_round,
        valid_sets=[valid],
        valid_names=["held_out"],
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )
    rounds = int(stopped.best_iteration or stopped.current_iteration())  # stopped.predict() uses these rounds
    fitted.boosters[name] = lgb.train(params, every, num_boost_round=rounds)
    fitted.rounds[name] = rounds
    return stopped


def expected_revenue(objective: str, boosters: dict, constants: dict[str, float], X: pd.DataFrame) -> np.ndarray:
    """E[revenue in the horizon] of each row of ``X`` (the model's feature columns), finite and >= 0."""
    if objective == "tweedie" and "offset_fallback" in constants:
        mean = np.exp(
            boosters["mean"].predict(X, raw_score=True) + log_offset(X["btyd_revenue"], constants["offset_fallback"])
        )
    elif objective == "tweedie":
        mean = boosters["mean"].predict(X)
    elif objective == "l2":
        mean = boosters["mean"].predict(X)
    elif objective == "log_l2":
        mean = constants["smearing"] * np.exp(boosters["mean"].predict(X)) - 1.0
    else:
        buy = boosters["buy"].predict(X)
        mean = buy * np.exp(boosters["log_spend"].predict(X) + constants["log_variance"] / 2)
    return np.maximum(np.asarray(mean, float), 0.0)
