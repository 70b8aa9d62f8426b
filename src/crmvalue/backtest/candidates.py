"""The candidates of the backtest: each fits on the data up to a cut-off and predicts the next horizon.

A candidate is anything with a ``name`` and ``fit_predict(days, cutoff, horizon_days)`` (:class:`Candidate`).
``days`` holds the customer-days on or before ``cutoff`` only (:func:`crmvalue.backtest.cutoffs.days_until`);
the answer is a frame indexed by ``customer_id`` with a row for every customer who has a purchase on or
before the cut-off, and the columns

- ``expected_revenue``: expected net revenue in ``(cutoff, cutoff + horizon_days]``, undiscounted;
- ``expected_purchases``: expected purchase days in that window (NaN for a revenue-only model);
- optionally ``purchases_lower``, ``purchases_upper``, ``revenue_lower``, ``revenue_upper``: a predictive
  interval of what the customer will do, whose coverage the backtest reports, and ``purchases_probability``,
  ``revenue_probability``: the model's own probability of each interval, whose mean is the coverage it expects.

Of the BTYD candidates, only the one ``crmvalue train`` would export (:func:`interval_model`) has intervals:
they cost about 2 s per cut-off for BG/NBD on CDNOW master and 7-10 s for Pareto/NBD at 200 draws, which for
every BTYD candidate would take half the backtest's time.

:data:`CANDIDATES` maps each name to a factory that builds the candidate from the experiment config. The
names are every registered purchase model with Gamma-Gamma (``bgnbd_gg``, ``mbgnbd_gg``,
``paretonbd_gg``) and two baselines, ``naive`` and ``last_horizon``. A new candidate is one entry there.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from crmvalue.customer_days import CustomerDays, day_number
from crmvalue.errors import CrmvalueError
from crmvalue.evaluation import naive_rate_forecast
from crmvalue.features import DAYS_PER_UNIT, TimeUnit, mean_purchase_amount, rfm_summary
from crmvalue.models import GammaGammaModel, PurchaseModel, ValueModel, predictive, registry

if TYPE_CHECKING:
    from crmvalue.config import ExperimentConfig

log = logging.getLogger("crmvalue")

# the predictive interval and the model's probability of it (crmvalue.models.predictive): what the backtest reads
INTERVAL_COLUMNS = (*predictive.INTERVAL_COLUMNS, *predictive.PROBABILITY_COLUMNS)


class Candidate(Protocol):
    """A value forecast the backtest can fit at a cut-off and score on the horizon after it."""

    name: str

    def fit_predict(self, days: CustomerDays, cutoff: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        """Fit on ``days`` (nothing after ``cutoff``), predict ``(cutoff, cutoff + horizon_days]``."""
        ...


CandidateFactory = Callable[["ExperimentConfig"], Candidate]


@dataclass(frozen=True)
class FittedBtyd:
    """A BTYD candidate's fits at one cut-off: what a predictive interval is computed from."""

    purchase: PurchaseModel
    gamma_gamma: GammaGammaModel
    value: ValueModel


# given the fits and the RFM summary at the cut-off, the INTERVAL_COLUMNS for the summary's customers
IntervalFunction = Callable[[FittedBtyd, pd.DataFrame], pd.DataFrame]


def interval_model(cfg: ExperimentConfig) -> str:
    """The purchase model whose BTYD candidate gets predictive intervals: the one ``crmvalue train`` exports,
    ``model.purchase_model``; for ``auto``, which chooses on the training data, BG/NBD (the first candidate
    when BG/NBD is not one)."""
    chosen = cfg.model.purchase_model
    if chosen != "auto":
        return chosen
    return "bgnbd" if "bgnbd" in cfg.model.candidates else cfg.model.candidates[0]


def btyd_intervals(cfg: ExperimentConfig) -> IntervalFunction:
    """The predictive intervals of a BTYD candidate (:func:`crmvalue.models.predictive.predictive_intervals`)
    with the settings of ``crmvalue train``'s (``cfg.intervals``: level, draws, seed), whether or not the
    export has them: a function of the fits at a cut-off and their RFM summary that returns the
    :data:`INTERVAL_COLUMNS`, over the horizon of the fits' value model, drawing parameters from the fits'
    log-parameter covariances."""
    settings = cfg.intervals

    def intervals(fitted: FittedBtyd, summary: pd.DataFrame) -> pd.DataFrame:
        return predictive.predictive_intervals(
            fitted.purchase.params_,
            fitted.purchase.log_param_covariance_,
            fitted.gamma_gamma.params_,
            fitted.gamma_gamma.log_param_covariance_,
            summary,
            fitted.value.horizon,
            settings.level,
            settings.draws,
            settings.seed,
            probabilities=True,
        )

    return intervals


def horizon_in_units(horizon_days: int, time_unit: TimeUnit) -> float:
    return horizon_days / DAYS_PER_UNIT[time_unit]


class BtydCandidate:
    """A registered purchase model x Gamma-Gamma, fitted as ``crmvalue train`` fits the final model
    (:func:`crmvalue.pipeline.fit_stage`): the purchase model on the RFM summary at the cut-off, then
    Gamma-Gamma with the cut-off's mean purchase amount as its fallback, scored by
    :class:`crmvalue.models.ValueModel`. ``expected_revenue = expected_purchases x expected_avg_value``."""

    def __init__(
        self,
        purchase_model: str,
        time_unit: TimeUnit = "weeks",
        penalizer: float = 0.0,
        gamma_gamma_penalizer: float = 0.0,
        intervals: IntervalFunction | None = None,
    ):
        self.purchase_model = purchase_model
        self.name = f"{purchase_model}_gg"
        self.time_unit = time_unit
        self.penalizer = penalizer
        self.gamma_gamma_penalizer = gamma_gamma_penalizer
        self.intervals = intervals

    def fit(self, days: CustomerDays, cutoff: pd.Timestamp, horizon_days: int) -> tuple[FittedBtyd, pd.DataFrame]:
        """The fits at ``cutoff`` and the RFM summary they were fitted on."""
        summary = rfm_summary(days, cutoff, self.time_unit)
        purchase = registry.model_class(self.purchase_model)(self.penalizer).fit(
            summary["frequency"], summary["recency"], summary["T"]
        )
        gg = GammaGammaModel(self.gamma_gamma_penalizer).fit(
            summary["frequency"], summary["monetary_value"], mean_spend=mean_purchase_amount(days, cutoff)
        )
        for fitted in (purchase, gg):
            if fitted.warning_:
                log.warning("backtest: %s at cut-off %s: %s", self.name, cutoff.date(), fitted.warning_)
        # the CLV settings do not enter the horizon's forecast: one month undiscounted keeps its grid small
        value = ValueModel(purchase.params_, gg.params_, self.time_unit, horizon_days, 1, 0.0)
        return FittedBtyd(purchase, gg, value), summary

    def fit_predict(self, days: CustomerDays, cutoff: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        fitted, summary = self.fit(days, cutoff, horizon_days)
        scores = fitted.value.predict(summary)
        out = scores[["expected_purchases", "expected_revenue"]].copy()
        if self.intervals is not None:
            intervals = self.intervals(fitted, summary)
            out = out.join(intervals[[c for c in INTERVAL_COLUMNS if c in intervals.columns]])
        return out


class NaiveCandidate:
    """Baseline: each customer keeps buying at their own repeat rate so far, at their own average spend.

    ``expected_purchases = x / T x h`` (0 when ``T = 0``) and ``expected_revenue = expected_purchases x m``,
    with ``x`` the repeat purchase days, ``T`` the time since the first purchase and ``h`` the horizon, in
    the experiment's time unit, and ``m`` the mean net amount of the repeat purchase days (0 without
    repeats, where the forecast is 0 purchases anyway): the naive-rate baseline of ``crmvalue train``
    (:func:`crmvalue.evaluation.naive_rate_forecast`)."""

    name = "naive"

    def __init__(self, time_unit: TimeUnit = "weeks"):
        self.time_unit = time_unit

    def fit_predict(self, days: CustomerDays, cutoff: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        summary = rfm_summary(days, cutoff, self.time_unit)
        purchases = naive_rate_forecast(
            summary["frequency"], summary["T"], horizon_in_units(horizon_days, self.time_unit)
        )
        return pd.DataFrame(
            {"expected_purchases": purchases, "expected_revenue": purchases * summary["monetary_value"].to_numpy()},
            index=summary.index,
        )


class LastHorizonCandidate:
    """Baseline: each customer does again what they did in the last horizon before the cut-off.

    ``expected_purchases`` = the purchase days in ``(cutoff - horizon_days, cutoff]`` (a first purchase
    there counts) and ``expected_revenue`` = the net amount of every day in that window, returns included:
    the definitions of the actuals, one horizon earlier. Customers silent in the window get 0."""

    name = "last_horizon"

    def fit_predict(self, days: CustomerDays, cutoff: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        end = day_number(cutoff)
        window = (days.day > end - horizon_days) & (days.day <= end)
        n = len(days.ids)
        purchases = np.bincount(days.customer[window & days.purchase], minlength=n).astype(float)
        revenue = np.bincount(days.customer[window], weights=days.amount[window], minlength=n)
        seen = rfm_summary(days, cutoff).index  # the customers with a purchase on or before the cut-off
        frame = pd.DataFrame({"expected_purchases": purchases, "expected_revenue": revenue}, index=days.ids)
        return frame.reindex(seen)


def lazy_factory(module: str, name: str) -> CandidateFactory:
    """A factory that imports ``module.name`` (a callable of the config) only when the candidate is built,
    so a candidate's package may import this module without a cycle."""

    def build(cfg: ExperimentConfig) -> Candidate:
        return getattr(importlib.import_module(module), name)(cfg)

    return build


def btyd_factory(purchase_model: str) -> CandidateFactory:
    def build(cfg: ExperimentConfig) -> Candidate:
        intervals = btyd_intervals(cfg) if purchase_model == interval_model(cfg) else None
        return BtydCandidate(
            purchase_model, cfg.time_unit, cfg.model.penalizer, cfg.model.gamma_gamma_penalizer, intervals
        )

    return build


CANDIDATES: dict[str, CandidateFactory] = {
    **{f"{name}_gg": btyd_factory(name) for name in registry.names("continuous")},
    "naive": lambda cfg: NaiveCandidate(cfg.time_unit),
    "last_horizon": lambda cfg: LastHorizonCandidate(),
    # the boosted value model (crmvalue.valuegbm), imported only when it is built
    "gbm": lazy_factory("crmvalue.valuegbm", "forecaster_from_config"),
}


def candidate_names(models: list[str] | None = None) -> list[str]:
    """``models`` checked against :data:`CANDIDATES` (every registered name when None), in the order given."""
    if models is None:
        return list(CANDIDATES)
    unknown = [m for m in models if m not in CANDIDATES]
    if unknown:
        raise CrmvalueError(
            f"unknown backtest candidate{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(CANDIDATES)}"
        )
    if len(set(models)) < len(models):
        raise CrmvalueError(f"a backtest candidate is named twice: {', '.join(models)}")
    return list(models)


def build_candidates(cfg: ExperimentConfig, models: list[str] | None = None) -> dict[str, Candidate]:
    """The candidates named in ``models`` (default: every one), built for the experiment ``cfg``."""
    return {name: CANDIDATES[name](cfg) for name in candidate_names(models)}
