"""Out-of-time evaluation: purchase models fitted before the calibration end, scored after it, beside a baseline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError
from crmvalue.models.base import PurchaseModel
from crmvalue.models.gamma_gamma import GammaGammaModel, expected_average_value


def holdout_metrics(actual_purchases, predicted_purchases, actual_revenue, predicted_revenue) -> dict[str, float]:
    """Per-customer MAE/RMSE of holdout purchases and the totals, predicted against actual."""
    actual = np.asarray(actual_purchases, float)
    predicted = np.asarray(predicted_purchases, float)
    error = predicted - actual
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "predicted_total": float(predicted.sum()),
        "actual_total": float(actual.sum()),
        "predicted_revenue": float(np.sum(predicted_revenue)),
        "actual_revenue": float(np.sum(actual_revenue)),
    }


def naive_rate_forecast(frequency, T, duration) -> np.ndarray:
    """Baseline: each customer keeps buying at their calibration repeat rate, x / T, forever.

    It ignores dropout, which is exactly what BG/NBD adds; a value model that cannot beat it
    is not earning its complexity.
    """
    T_ = np.asarray(T, float)
    rate = np.divide(np.asarray(frequency, float), T_, out=np.zeros_like(T_), where=T_ > 0)
    return rate * duration


def conditional_expectations(frequency, actual, predicted, max_frequency: int = 7) -> pd.DataFrame:
    """Mean holdout purchases, actual and predicted, by calibration frequency (``max_frequency``+ pooled)."""
    bucket = np.minimum(np.asarray(frequency, float), max_frequency).astype(int)
    frame = pd.DataFrame(
        {"frequency": bucket, "actual": np.asarray(actual, float), "predicted": np.asarray(predicted, float)}
    )
    table = frame.groupby("frequency").agg(
        customers=("actual", "size"), actual=("actual", "mean"), predicted=("predicted", "mean")
    )
    return table


@dataclass(frozen=True)
class CandidateResult:
    """One purchase model fitted on the calibration period and scored on the holdout."""

    name: str
    model: PurchaseModel | None  # None when the fit failed
    metrics: dict[str, float] = field(default_factory=dict)
    conditional_expectations: pd.DataFrame | None = None
    error: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """Every candidate's out-of-time result, the chosen one and why, and the baseline beside them."""

    candidates: dict[str, CandidateResult]
    winner: str
    reason: str
    gamma_gamma: GammaGammaModel | None
    baseline: dict[str, float]
    holdout_customers: int
    duration: float
    skipped: str | None = None  # why there is no out-of-time evaluation (see :func:`skipped_evaluation`)

    @property
    def best(self) -> CandidateResult | None:
        return self.candidates.get(self.winner)


def skipped_evaluation(candidates: list[str], why: str) -> Evaluation:
    """The evaluation of a run whose calibration period cannot be fitted (e.g. every customer's first purchase
    is on the calibration end, so no time is observed): no holdout metrics, and the first candidate is the
    model fitted on all data, since nothing out of time can choose among them."""
    return Evaluation(
        {}, candidates[0], f"{candidates[0]}: out-of-time evaluation skipped ({why})", None, {}, 0, 0.0, skipped=why
    )


SELECTION_CRITERIA = {
    "rmse": "lowest holdout per-customer RMSE of purchases",
    "mae": "lowest holdout per-customer MAE of purchases",
}


def evaluate_purchase_models(
    split: pd.DataFrame,
    candidates: list[str],
    penalizer: float = 0.0,
    gamma_gamma_penalizer: float = 0.0,
    selection_metric: str = "rmse",
    mean_spend: float | None = None,
) -> Evaluation:
    """Fit each candidate on the calibration period, score the holdout, and choose by holdout error.

    ``split`` is :func:`crmvalue.features.calibration_holdout_summary`. With one candidate its
    failure is raised; with several, a candidate that fails is recorded and the others compete
    (if all fail, the first failure is raised). ``mean_spend`` is the calibration period's mean
    purchase amount, Gamma-Gamma's fallback when no customer has a repeat purchase there.

    The default criterion is RMSE because the models forecast the *mean* number of purchases,
    and squared error is minimised by the mean; absolute error is minimised by the median,
    which is 0 for most customers, so MAE rewards forecasts that are too low (on data drawn
    from BG/NBD, forecasting zero for everyone has a lower MAE than the true parameters).
    The log-likelihood, AIC and BIC are reported beside it but do not choose: the models are
    not nested, and the holdout is what the exported forecasts will be judged on.
    """
    from crmvalue.models import PURCHASE_MODELS

    x, t_x, T_ = split["frequency_cal"], split["recency_cal"], split["T_cal"]
    duration = float(split["duration_holdout"].iloc[0])
    actual = split["frequency_holdout"].to_numpy()
    revenue = split["revenue_holdout"]
    gg = GammaGammaModel(gamma_gamma_penalizer).fit(x, split["monetary_value_cal"], mean_spend=mean_spend)
    spend = expected_average_value(gg.params_, x, split["monetary_value_cal"])

    results: dict[str, CandidateResult] = {}
    for name in candidates:
        try:
            model = PURCHASE_MODELS[name](penalizer).fit(x, t_x, T_)
        except CrmvalueError as exc:
            if len(candidates) == 1:
                raise
            results[name] = CandidateResult(name, None, error=str(exc))
            continue
        predicted = model.conditional_expected_number_of_purchases_up_to_time(duration, x, t_x, T_)
        metrics = {f"holdout.{k}": v for k, v in holdout_metrics(actual, predicted, revenue, predicted * spend).items()}
        metrics.update({"log_likelihood": model.log_likelihood_, "aic": model.aic_, "bic": model.bic_})
        results[name] = CandidateResult(name, model, metrics, conditional_expectations(x, actual, predicted))

    fitted = [r for r in results.values() if r.model is not None]
    if not fitted:
        raise CrmvalueError(f"no purchase model could be fitted: {next(iter(results.values())).error}")
    key = f"holdout.{selection_metric}"
    best = min(fitted, key=lambda r: r.metrics[key])
    others = ", ".join(f"{r.name} {r.metrics[key]:.4f}" for r in fitted if r is not best)
    failed = ", ".join(f"{r.name} failed" for r in results.values() if r.model is None)
    reason = f"{best.name}: {SELECTION_CRITERIA[selection_metric]} {best.metrics[key]:.4f}"
    if others or failed:
        reason += f" (against {', '.join(filter(None, [others, failed]))})"

    naive = naive_rate_forecast(x, T_, duration)
    naive_spend = split["monetary_value_cal"].where(x > 0, 0.0).to_numpy()
    baseline = {
        f"baseline.naive_rate.holdout.{k}": v
        for k, v in holdout_metrics(actual, naive, revenue, naive * naive_spend).items()
    }
    return Evaluation(results, best.name, reason, gg, baseline, len(split), duration)
