"""Which value model is live in a run (``model.value_model``), and what the live model changes in the export.

- ``btyd`` (default): BG/NBD (or the run's purchase model) x Gamma-Gamma, as before.
- ``gbm``: the boosted model (:mod:`crmvalue.valuegbm`), fitted on the data up to the observation end, the date
  of the final BTYD fit. Data too short for it stop the run with its one-line error.
- ``auto``: a backtest on the training period alone chooses (:func:`auto_backtest`, :func:`choose`).

**What the boosted model changes.** ``expected_revenue`` (the next ``horizon_days``, undiscounted) is the
boosted model's. ``p_alive``, ``expected_purchases``, ``expected_avg_value`` and ``clv`` stay BTYD's: the
boosted model forecasts the horizon's revenue only. The quadrants' potential axis is the CLV corrected by the
boosted model, as much as it corrects the horizon's revenue (:func:`corrected_potential`)::

    potential_value = clv x gbm_expected_revenue / btyd_expected_revenue      where btyd_expected_revenue > 0
    potential_value = gbm_expected_revenue x clv_days / horizon_days           where it is 0

BTYD's ratio of lifetime value to horizon revenue (its dropout and discounting over the CLV months) is kept and
only the level moves, so the two axes' meaning does not change. BTYD's horizon revenue is 0 only when its
expected purchases underflow; the ratio of the CLV horizon (``clv.months`` x lifetimes' month: 30 days, or
4.345 weeks) to the revenue horizon, the limit of that ratio without dropout and discounting, stands in there.

**The auto rule.** Cut-offs ``calibration_end - horizon_days``, then back ``backtest.step_days`` (default the
horizon) at a time, at most ``backtest.cutoffs`` of them and none within ``backtest.min_history_days`` of the
first purchase: every forecast window ends by the calibration end, and the candidates see the data up to the
calibration end only, so nothing of the test period enters the choice. At each cut-off the run's BTYD value
model (its purchase model x Gamma-Gamma) and the boosted model are fitted on the data up to it and scored on
the next ``horizon_days`` (:mod:`crmvalue.backtest`). The boosted model is live when its mean over the
cut-offs beats BTYD's on at least two of the three criteria: revenue RMSE (lower), normalized Gini (higher)
and decile MAPE (lower). They judge the level of each customer's forecast, the ranking and the calibration by
value group. MAE is not one: it is minimised by the median, 0 for most customers, so it rewards forecasts that
are too low. A cut-off counts when both models could be fitted there. When the data before the calibration end
are too short for any cut-off, or for the boosted model at every cut-off (:class:`GbmNotEstimable`), BTYD
stays live and the run says why.

With ``purchase_model: auto`` the BTYD candidate is the purchase model the run chose on its holdout, as the
live BTYD model is; the choice between BTYD and the boosted model reads no data after the calibration end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crmvalue.customer_days import CustomerDays
from crmvalue.errors import CrmvalueError
from crmvalue.features import DAYS_PER_UNIT
from crmvalue.models.value import MONTH_LENGTH, ValueModel
from crmvalue.progress import Progress

if TYPE_CHECKING:
    from crmvalue.config import ExperimentConfig
    from crmvalue.evaluation import Evaluation
    from crmvalue.valuegbm import GbmSettings, GbmValueModel

log = logging.getLogger("crmvalue")

VALUE_MODELS = ("btyd", "gbm", "auto")
LIVE_TAG = "value_model.live"  # btyd or gbm: the model behind expected_revenue and potential_value
REASON_TAG = "value_model.reason"  # one sentence: why that one
GBM_FOLDER = "value_gbm"  # the live boosted model: the run's artifact folder and models/<name>/value_gbm/
# the auto rule's criteria: backtest metric, which way is better, the name a reader sees
CRITERIA = (
    ("revenue.rmse", "lower", "revenue RMSE"),
    ("revenue.gini", "higher", "normalized Gini"),
    ("revenue.decile_mape", "lower", "decile MAPE"),
)
REPORTED = (*(c[0] for c in CRITERIA), "revenue.total_ratio")  # logged as value_choice.<model>.<metric>


def choice_metric(model: str, metric: str) -> str:
    """``value_choice.<model>.<metric>``: the auto backtest's mean over its cut-offs (model btyd or gbm)."""
    return f"value_choice.{model}.{metric}"


def holdout_revenue_metric(model: str, metric: str) -> str:
    """``holdout.<model>.revenue_<metric>``: revenue in the first horizon of the holdout, model gbm, btyd or
    naive_rate, fitted to the calibration end."""
    return f"holdout.{model}.revenue_{metric}"


HOLDOUT_WINDOW_METRIC = "holdout.revenue_window_days"


# ------------------------------------------------------------------------------------------------ scoring


def clv_horizon_ratio(value_model: ValueModel) -> float:
    """The CLV horizon over the revenue horizon, both in days (lifetimes' month: 30 days or 4.345 weeks)."""
    unit = value_model.time_unit
    return value_model.clv_months * MONTH_LENGTH[unit] * DAYS_PER_UNIT[unit] / value_model.horizon_days


def corrected_potential(clv, btyd_revenue, gbm_revenue, horizon_ratio: float) -> np.ndarray:
    """The potential value with a live boosted model: ``clv x gbm / btyd`` where BTYD's horizon revenue is
    positive, else ``gbm x horizon_ratio`` (:func:`clv_horizon_ratio`); see the module docstring."""
    clv, btyd, gbm = (np.asarray(a, dtype=float) for a in (clv, btyd_revenue, gbm_revenue))
    out = gbm * horizon_ratio
    positive = btyd > 0
    out[positive] = clv[positive] * (gbm[positive] / btyd[positive])
    return out


@dataclass(frozen=True)
class BoostedRevenue:
    """The live boosted model in :func:`crmvalue.scoring.score`: predictions with BTYD's scores in, the same
    with the boosted ``expected_revenue`` and the corrected ``potential_value`` out."""

    model: GbmValueModel
    horizon_ratio: float

    def __call__(self, predictions: pd.DataFrame, days: CustomerDays, at: pd.Timestamp) -> pd.DataFrame:
        boosted = self.model.predict(days, at)["expected_revenue"].reindex(predictions.index)
        if boosted.isna().any():
            raise CrmvalueError(
                f"value gbm: no boosted forecast for {int(boosted.isna().sum()):,} scored customers "
                f"(e.g. {boosted.index[boosted.isna().to_numpy()][0]!r}); please report this"
            )
        potential = corrected_potential(
            predictions["clv"], predictions["expected_revenue"], boosted, self.horizon_ratio
        )
        return predictions.assign(expected_revenue=boosted.to_numpy(), potential_value=potential)


def live_revenue(gbm: GbmValueModel | None, value_model: ValueModel) -> BoostedRevenue | None:
    """The ``revenue`` scorer of :class:`crmvalue.scoring.Scorers`: None when BTYD is live."""
    return None if gbm is None else BoostedRevenue(gbm, clv_horizon_ratio(value_model))


# ------------------------------------------------------------------------------------------------ the rule


def choose(means: pd.DataFrame) -> tuple[str, str]:
    """The auto rule on the backtest's means (index ``btyd`` and ``gbm``, a column per :data:`CRITERIA` metric):
    ``gbm`` when it is strictly better on at least two criteria (a missing figure is not better), else
    ``btyd``; and the figures, as text."""
    wins, figures = 0, []
    for metric, better, label in CRITERIA:
        gbm, btyd = float(means.loc["gbm", metric]), float(means.loc["btyd", metric])
        won = np.isfinite(gbm) and np.isfinite(btyd) and (gbm < btyd if better == "lower" else gbm > btyd)
        wins += bool(won)
        figures.append(f"{label} {gbm:.4g} vs {btyd:.4g}")
    live = "gbm" if wins >= 2 else "btyd"
    return live, f"gbm better on {wins} of {len(CRITERIA)} criteria (gbm vs BTYD: {', '.join(figures)})"


@dataclass(frozen=True)
class AutoBacktest:
    """The auto rule's backtest: the cut-offs both models were scored at, their metrics, and the others' reasons."""

    cutoffs: list[pd.Timestamp]
    per_cutoff: pd.DataFrame  # cutoff, model (btyd or gbm), then the REPORTED metrics
    skipped: dict[str, str] = field(default_factory=dict)  # cut-off date -> why it does not count

    def means(self) -> pd.DataFrame:
        """The mean over the cut-offs (index model, a column per metric); missing values are left out."""
        return self.per_cutoff.groupby("model")[list(REPORTED)].mean()

    def metric_items(self) -> dict[str, float]:
        items = {"value_choice.cutoffs": float(len(self.cutoffs))}
        for model, row in self.means().iterrows():
            items.update({choice_metric(str(model), m): float(v) for m, v in row.items() if np.isfinite(v)})
        return items


def auto_cutoffs(days: CustomerDays, calibration_end, horizon_days: int, count: int, step_days: int, min_history: int):
    """The auto backtest's cut-offs, oldest first: :func:`crmvalue.backtest.cutoffs.rolling_cutoffs` to the
    calibration end, as many of ``count`` as fall ``min_history`` days or more after the first purchase; and
    None, or why there is none."""
    from crmvalue.backtest import rolling_cutoffs

    end = pd.Timestamp(calibration_end).normalize()
    purchases = days.purchase_days()
    if len(purchases.day) == 0:
        return [], f"no purchase on or before the calibration end {end.date()}"
    first = pd.Timestamp(int(purchases.day.min()), unit="D")
    earliest = first + pd.Timedelta(days=min_history)
    last = end - pd.Timedelta(days=horizon_days)
    fitting = sum(last - pd.Timedelta(days=step_days * k) >= earliest for k in range(count))
    if fitting == 0:
        return [], (
            f"the data before the calibration end {end.date()} are too short for a backtest cut-off: the last one, "
            f"{last.date()} (the calibration end - the {horizon_days}-day horizon), is before {earliest.date()} "
            f"(the first purchase + backtest.min_history_days {min_history})"
        )
    return rolling_cutoffs(days, end, horizon_days, fitting, step_days, min_history), None


def auto_backtest(
    cfg: ExperimentConfig, days: CustomerDays, calibration_end, purchase_model: str, settings: GbmSettings
) -> AutoBacktest | str:
    """The boosted model against the run's BTYD value model on the data up to ``calibration_end`` only; the
    backtest, or why there is none (no cut-off, or the boosted model cannot be fitted at any)."""
    from crmvalue.backtest.candidates import BtydCandidate, Candidate
    from crmvalue.backtest.cutoffs import cutoff_actuals, days_until
    from crmvalue.backtest.metrics import cutoff_metrics
    from crmvalue.backtest.run import checked_predictions, predict_at
    from crmvalue.valuegbm import GbmForecaster, GbmNotEstimable

    end = pd.Timestamp(calibration_end).normalize()
    days = days_until(days, end)  # the test period does not exist for the choice
    h, b = cfg.horizon_days, cfg.backtest
    cutoffs, why = auto_cutoffs(days, end, h, b.cutoffs, b.step_days or h, b.min_history_days)
    if why is not None:
        return why
    candidates: dict[str, Candidate] = {
        "gbm": GbmForecaster(settings),  # first: where it cannot be fitted, BTYD is not fitted either
        "btyd": BtydCandidate(purchase_model, cfg.time_unit, cfg.model.penalizer, cfg.model.gamma_gamma_penalizer),
    }
    rows, used, skipped = [], [], {}
    for cutoff in cutoffs:
        actuals = cutoff_actuals(days, cutoff, h, cfg.time_unit)
        try:
            scored = {
                name: cutoff_metrics(
                    actuals.join(checked_predictions(name, predict_at(c, days, cutoff, h), actuals.index, cutoff))
                )
                for name, c in candidates.items()
            }
        except GbmNotEstimable as exc:
            skipped[str(cutoff.date())] = f"gbm: {exc.reason}"
            continue
        except CrmvalueError as exc:  # a BTYD fit that fails there: the cut-off cannot compare the two
            skipped[str(cutoff.date())] = str(exc)
            continue
        used.append(cutoff)
        rows += [
            {"cutoff": cutoff, "model": name, **{m: metrics.get(m, np.nan) for m in REPORTED}}
            for name, metrics in scored.items()
        ]
    if not used:  # the latest cut-off's reason: it had the most data
        latest = str(cutoffs[-1].date())
        return (
            f"none of the {len(cutoffs)} backtest cut-offs up to the calibration end {end.date()} could fit both "
            f"models; at the latest, {latest}, {skipped[latest]}"
        )
    return AutoBacktest(used, pd.DataFrame(rows), skipped)


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class ValueChoice:
    """The live value model of a run, why, the figures behind it, and the boosted model when it is live."""

    live: str  # btyd or gbm
    reason: str  # one sentence
    metrics: dict[str, float] = field(default_factory=dict)  # value_choice.* and holdout.<model>.revenue_*
    gbm: GbmValueModel | None = None  # fitted to the observation end, when live

    def tags(self) -> dict[str, str]:
        return {LIVE_TAG: self.live, REASON_TAG: self.reason}

    def revenue(self, value_model: ValueModel) -> BoostedRevenue | None:
        return live_revenue(self.gbm, value_model)


def choose_value_model(
    cfg: ExperimentConfig,
    days: CustomerDays,
    evaluation: Evaluation,
    calibration_end,
    observation_end,
    progress: Progress,
) -> ValueChoice:
    """The live value model of ``model.value_model``; with a live boosted model, it is fitted to the observation
    end and its revenue on the holdout's first horizon is measured beside BTYD's and the naive baseline's."""
    from crmvalue.valuegbm import GbmNotEstimable, GbmValueModel, settings_from_config

    chosen = cfg.model.value_model
    if chosen == "btyd":
        return ValueChoice("btyd", "chosen in config (model.value_model: btyd)")
    settings = settings_from_config(cfg)
    cal_end, obs_end = pd.Timestamp(calibration_end), pd.Timestamp(observation_end)
    metrics: dict[str, float] = {}
    reason = "chosen in config (model.value_model: gbm)"
    if chosen == "auto":
        with progress.stage(
            "value_choice", f"choosing the value model by a backtest of BTYD and gbm up to {cal_end.date()}"
        ):
            outcome = auto_backtest(cfg, days, cal_end, evaluation.winner, settings)
        if isinstance(outcome, str):
            log.warning("model.value_model auto keeps BTYD: %s", outcome)
            return ValueChoice("btyd", f"auto kept BTYD: {outcome}")
        metrics.update(outcome.metric_items())
        live, figures = choose(outcome.means())
        n = len(outcome.cutoffs)
        where = f"mean over {n} cut-off{'s' if n > 1 else ''} up to {cal_end.date()}"
        log.info("value model: %s (%s, %s)", live, figures, where)
        if live == "btyd":
            return ValueChoice("btyd", f"auto kept BTYD: {figures}, {where}", metrics)
        reason = f"auto chose gbm: {figures}, {where}"
    with progress.stage("value_gbm", f"fitting the boosted value model on all data to {obs_end.date()}"):
        try:
            gbm = GbmValueModel(settings).fit(days, obs_end, cfg.horizon_days)
        except GbmNotEstimable as exc:
            if chosen == "gbm":
                raise
            log.warning("model.value_model auto keeps BTYD: the boosted model cannot be fitted: %s", exc.reason)
            return ValueChoice(
                "btyd", f"auto kept BTYD: the chosen gbm cannot be fitted to {obs_end.date()} ({exc.reason})", metrics
            )
        metrics.update(holdout_revenue_metrics(cfg, days, evaluation, cal_end, obs_end, settings))
    return ValueChoice("gbm", reason, metrics, gbm)


def holdout_revenue_metrics(
    cfg: ExperimentConfig,
    days: CustomerDays,
    evaluation: Evaluation,
    calibration_end,
    observation_end,
    settings: GbmSettings,
) -> dict[str, float]:
    """Revenue in ``(calibration_end, calibration_end + h]``, ``h`` the horizon or the holdout if shorter, of the
    customers seen by the calibration end: the boosted model, BTYD's calibration fit (the run's holdout model)
    and the naive rate, each fitted to the calibration end, as ``holdout.<model>.revenue_<metric>`` (rmse,
    gini, decile_mape, total_ratio). A boosted model that cannot be fitted there: a warning, no metrics."""
    from crmvalue.backtest.candidates import NaiveCandidate
    from crmvalue.backtest.cutoffs import cutoff_actuals, days_until
    from crmvalue.backtest.metrics import decile_mape, normalized_gini, rmse, total_ratio
    from crmvalue.backtest.run import checked_predictions
    from crmvalue.features import rfm_summary
    from crmvalue.valuegbm import GbmNotEstimable, GbmValueModel

    cal_end = pd.Timestamp(calibration_end).normalize()
    h = min(cfg.horizon_days, (pd.Timestamp(observation_end).normalize() - cal_end).days)
    known = days_until(days, cal_end)
    try:
        gbm = GbmValueModel(settings).fit(known, cal_end, h).predict(known, cal_end)
    except GbmNotEstimable as exc:
        log.warning(
            "the boosted value model cannot be fitted to the calibration end %s (%s): no holdout gbm metrics",
            cal_end.date(),
            exc.reason,
        )
        return {}
    actuals = cutoff_actuals(days, cal_end, h, cfg.time_unit)
    forecasts = {"gbm": gbm, "naive_rate": NaiveCandidate(cfg.time_unit).fit_predict(known, cal_end, h)}
    best = evaluation.best
    if best is not None and best.model is not None and evaluation.gamma_gamma is not None:
        fitted = ValueModel(best.model.params_, evaluation.gamma_gamma.params_, cfg.time_unit, h, 1, 0.0)
        forecasts["btyd"] = fitted.predict(rfm_summary(known, cal_end, cfg.time_unit))
    measures: dict[str, Callable] = {
        "rmse": rmse,
        "gini": normalized_gini,
        "decile_mape": decile_mape,
        "total_ratio": total_ratio,
    }
    metrics = {HOLDOUT_WINDOW_METRIC: float(h)}
    for model, forecast in forecasts.items():
        predicted = checked_predictions(model, forecast, actuals.index, cal_end)["expected_revenue"].to_numpy()
        actual = actuals["actual_revenue"].to_numpy(dtype=float)
        for name, measure in measures.items():
            value = measure(actual, predicted)
            if np.isfinite(value):
                metrics[holdout_revenue_metric(model, name)] = value
    return metrics
