"""Out-of-time evaluation: purchase models fitted before the calibration end, scored after it, beside a baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crmvalue import schema
from crmvalue.errors import CrmvalueError
from crmvalue.models.base import InformationCriteria, PurchaseModel
from crmvalue.models.coding import CovariateCoding, customer_rows
from crmvalue.models.gamma_gamma import GammaGammaModel, expected_average_value
from crmvalue.models.objective import MAX_LOG_SE, RIDGE_LADDER

if TYPE_CHECKING:
    from crmvalue.config import ExperimentConfig


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
class CovariateRows:
    """The customer table and the coding fixed at training: each fit's covariates, looked up by customer id."""

    coding: CovariateCoding
    table: pd.DataFrame  # indexed by customer id
    source: str  # the file, for errors

    @classmethod
    def learn(cls, table: pd.DataFrame, ids: pd.Index, purchase, dropout, source: str, spend=()) -> CovariateRows:
        """The coding learnt from the rows of the customers ``ids`` (the final fit's), every one of them checked."""
        rows = table.iloc[customer_rows(table, ids, source)]
        coding = CovariateCoding.learn(rows, purchase, dropout, source, spend)
        learnt = cls(coding, table, source)
        coding.all_matrices(table, ids, source)  # a missing or bad value fails now, before any fit
        return learnt

    def spend_of(self, ids: pd.Index) -> pd.DataFrame:
        """Gamma-Gamma's covariates of ``ids``, as a frame named by the coded columns."""
        zs = self.coding.all_matrices(self.table, ids, self.source)[2]
        return pd.DataFrame(zs, index=ids, columns=self.coding.names("spend"))

    def of(self, ids: pd.Index) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The purchase and dropout covariates of ``ids``, as frames named by the coded columns."""
        zp, zd = self.coding.matrices(self.table, ids, self.source)
        return (
            pd.DataFrame(zp, index=ids, columns=self.coding.names("purchase")),
            pd.DataFrame(zd, index=ids, columns=self.coding.names("dropout")),
        )


class CovariateFit(InformationCriteria):
    """A purchase model with time-invariant covariates (:mod:`crmvalue.models.covariate_models`), fitted, under the
    names the evaluation and the run writer read of a :class:`PurchaseModel`: ``params_`` (the reference customer,
    every covariate 0), ``coefficients_`` (``purchase.<covariate>``, ``dropout.<covariate>``: :func:`schema.covariate_key`),
    ``standard_errors_`` and ``confidence_intervals_`` over both (coefficients: estimate -/+ 1.96 se; parameters:
    log-normal, as the plain models), ``log_likelihood_``, ``aic_``, ``bic_``. Predictions are for the fitted rows."""

    penalizer_used_ = 0.0
    boundary_: str | None = None
    warning_: str | None = None

    def __init__(self, name: str, penalizer: float = 0.0):
        self.name, self.penalizer = name, penalizer

    def fit(self, frequency, recency, T, z_purchase: pd.DataFrame, z_dropout: pd.DataFrame) -> CovariateFit:
        """The covariate model at ``penalizer``; a boundary fit (:func:`boundary`: e.g. a covariate that separates
        repeat buyers from one-time buyers sends its coefficient to infinity) or a failed one is refitted with each
        ridge of :data:`RIDGE_LADDER` on top, and the first interior fit is kept (``penalizer_used_``, ``boundary_``,
        ``warning_``, as the plain models record theirs); none: a one-line error."""
        from crmvalue.models.covariate_models import covariate_model_class

        cls = covariate_model_class(self.name)
        why = ""
        for ridge in (0.0, *RIDGE_LADDER):
            try:
                model = cls(self.penalizer + ridge).fit(frequency, recency, T, z_purchase, z_dropout)
            except CrmvalueError as exc:
                why = why or str(exc)
                continue
            found = boundary(model, np.column_stack([z_purchase.to_numpy(float), z_dropout.to_numpy(float)]))
            if found is None:
                break
            why = why or f"{model.label}: boundary estimate ({found})"
        else:
            raise CrmvalueError(f"{why}; no ridge up to {RIDGE_LADDER[-1]:g} gives an interior optimum")
        if ridge:
            self.penalizer_used_, self.boundary_ = ridge, why
            self.warning_ = f"{why}; refitted with a ridge of {ridge:g} on top of the penalizer, the first interior fit"
        self.model_, self.label, self.z_ = model, model.label, (z_purchase.to_numpy(), z_dropout.to_numpy())
        self.customers_ = pd.Index(z_purchase.index)
        self.params_ = model.params_
        self.gamma_purchase_, self.gamma_dropout_ = model.gamma_purchase_, model.gamma_dropout_
        self.log_likelihood_ = model.log_likelihood_
        self.n_customers_ = len(z_purchase)
        base = list(model.params_.as_dict())
        keys = [schema.covariate_key("purchase", c) for c in z_purchase.columns]
        keys += [schema.covariate_key("dropout", c) for c in z_dropout.columns]
        self.coefficients_ = dict(zip(keys, map(float, np.concatenate([model.gamma_purchase_, model.gamma_dropout_]))))
        se = model.standard_errors_.to_numpy(float)
        self.standard_errors_ = pd.Series(se, index=base + keys)
        values = np.concatenate([list(model.params_.as_dict().values()), list(self.coefficients_.values())])
        k = len(base)
        self.confidence_intervals_ = intervals(values, self.standard_errors_, k)
        self.log_param_covariance_ = np.asarray(model.covariance_)[:k, :k]
        return self

    def conditional_expected_number_of_purchases_up_to_time(self, t, frequency, recency, T) -> np.ndarray:
        return self.model_.expected_purchases(t, frequency, recency, T, *self.z_)

    def covariates_of(self, ids) -> np.ndarray:
        """The fitted customers ``ids``' covariates, one row each: the purchase columns, then the dropout ones."""
        rows = self.customers_.get_indexer(pd.Index(ids))
        if (rows < 0).any():
            missing = pd.Index(ids)[int(np.argmax(rows < 0))]
            raise CrmvalueError(f"{self.label}: customer {missing!r} was not among the {len(self.customers_):,} fitted")
        return np.column_stack([self.z_[0][rows], self.z_[1][rows]]).astype(float)

    def params_for(self, z: np.ndarray):
        """The plain model's parameters of customers with covariates ``z`` (rows as :meth:`covariates_of`'s):
        arrays, one value per row, which the plain model's formulas broadcast over."""
        kp = len(self.gamma_purchase_)
        return self.model_.customer_params(len(z), z[:, :kp], z[:, kp:])

    @property
    def n_params(self) -> int:
        return int(self.model_.n_params)


class SpendCovariateFit:
    """Gamma-Gamma with spend covariates (:mod:`crmvalue.models.gamma_gamma_covariates`), fitted, under the names
    the pipeline and the run writer read of a :class:`GammaGammaModel`: ``params_`` (the reference customer's),
    ``coefficients_`` (``spend.<covariate>``), ``standard_errors_`` and ``confidence_intervals_`` over both,
    ``log_param_covariance_`` (of log p, q, v), ``penalizer_used_``, ``boundary_``, ``warning_``,
    ``frequency_spend_correlation_``, and ``log_likelihood_`` beside ``plain_log_likelihood_`` (the same buyers
    without covariates) for the likelihood-ratio test."""

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    def fit(self, frequency, monetary_value, z: pd.DataFrame) -> SpendCovariateFit:
        from crmvalue.models.gamma_gamma_covariates import GammaGammaCovariateModel

        model = GammaGammaCovariateModel(self.penalizer).fit(frequency, monetary_value, z)
        self.model_, self.params_, self.z_ = model, model.params_, z
        self.penalizer_used_, self.warning_ = model.penalizer_used_, model.warning_
        self.boundary_ = model.warning_
        self.frequency_spend_correlation_ = model.frequency_spend_correlation_
        self.log_likelihood_, self.plain_log_likelihood_ = model.log_likelihood_, model.plain_log_likelihood_
        keys = [schema.covariate_key("spend", c) for c in z.columns]
        self.coefficients_ = dict(zip(keys, map(float, model.gamma_)))
        self.standard_errors_ = pd.Series(model.standard_errors_.to_numpy(float), index=["p", "q", "v", *keys])
        values = np.concatenate([list(model.params_.as_dict().values()), model.gamma_])
        self.confidence_intervals_ = intervals(values, self.standard_errors_, 3)
        self.log_param_covariance_ = np.asarray(model.covariance_)[:3, :3]
        return self

    def expected_average_value(self, frequency, monetary_value) -> np.ndarray:
        """E[M | x, m_x, z] of the fitted customers, in the order of ``z``."""
        return self.model_.expected_average_value(frequency, monetary_value, self.z_.to_numpy(float))


def intervals(values: np.ndarray, se: pd.Series, k: int) -> pd.DataFrame:
    """95% intervals: log-normal for the first ``k`` (positive parameters, as the plain models), estimate
    -/+ 1.96 se for the coefficients after them."""
    s = se.to_numpy(float)
    log_se = s[:k] / values[:k]
    return pd.DataFrame(
        {
            "lower": np.concatenate([values[:k] * np.exp(-1.96 * log_se), values[k:] - 1.96 * s[k:]]),
            "upper": np.concatenate([values[:k] * np.exp(1.96 * log_se), values[k:] + 1.96 * s[k:]]),
        },
        index=se.index,
    )


def boundary(model, z: np.ndarray) -> str | None:
    """Why a fitted covariate model is a boundary estimate, or None: a log-parameter's standard error, or a
    coefficient's times its covariate's standard deviation (the log-effect of one deviation), above
    :data:`MAX_LOG_SE` or not finite, the plain models' test (:mod:`crmvalue.models.base`)."""
    names = list(model.standard_errors_.index)
    base = np.asarray(list(model.params_.as_dict().values()), float)
    se = model.standard_errors_.to_numpy(float)
    spread = np.concatenate([1.0 / base, z.std(axis=0)]) if len(z) else 1.0 / base
    log_se = se * spread
    bad = ~(np.isfinite(log_se) & (log_se <= MAX_LOG_SE))
    if not bad.any():
        return None
    first = int(np.argmax(bad))
    return f"{names[first]} has a log-scale standard error of {log_se[first]:.3g}, above {MAX_LOG_SE}"


def fit_purchase_model(
    name: str, penalizer: float, frequency, recency, T, covariates: CovariateRows | None = None
) -> PurchaseModel | CovariateFit:
    """Model ``name`` fitted on one row per customer (``frequency`` indexed by customer id); with ``covariates``,
    its covariate version on the customers' rows of the customer table."""
    from crmvalue.models import PURCHASE_MODELS

    if covariates is None or not covariates.coding.purchase_process:
        return PURCHASE_MODELS[name](penalizer).fit(frequency, recency, T)
    z_purchase, z_dropout = covariates.of(pd.Index(frequency.index))
    return CovariateFit(name, penalizer).fit(frequency, recency, T, z_purchase, z_dropout)


def fit_spend(
    penalizer: float, frequency, monetary_value, mean_spend: float | None, covariates: CovariateRows | None = None
) -> tuple[GammaGammaModel | SpendCovariateFit, np.ndarray]:
    """Gamma-Gamma on one row per customer (``frequency`` indexed by customer id), with the spend covariates of
    ``covariates`` when it has any, and each customer's expected spend per purchase."""
    if covariates is None or not covariates.coding.spend:
        gg = GammaGammaModel(penalizer).fit(frequency, monetary_value, mean_spend=mean_spend)
        return gg, expected_average_value(gg.params_, frequency, monetary_value)
    fit = SpendCovariateFit(penalizer).fit(frequency, monetary_value, covariates.spend_of(pd.Index(frequency.index)))
    return fit, fit.expected_average_value(frequency, monetary_value)


def check_covariate_settings(cfg: ExperimentConfig) -> None:
    """What covariates do not work with yet, refused before any data is read."""
    if not cfg.model.covariates.any:
        return
    if cfg.intervals.enabled:
        raise CrmvalueError("intervals are not available with covariates yet: turn off intervals.enabled (--intervals)")
    if cfg.model.value_model != "btyd":
        raise CrmvalueError(f"model.value_model {cfg.model.value_model} is not available with covariates yet: use btyd")


def covariate_rows(cfg: ExperimentConfig, attributes: pd.DataFrame | None, ids: pd.Index) -> CovariateRows | None:
    """model.covariates coded from the customer table (data.customers), learnt on the customers ``ids``."""
    covariates = cfg.model.covariates
    if not covariates.any:
        return None
    assert cfg.data.customers is not None  # the config refuses covariates without a customer table
    if attributes is None:
        from crmvalue.data import load_customer_attributes

        attributes = load_customer_attributes(cfg.data.customers, cfg.data.customers_id_col)
    return CovariateRows.learn(
        attributes, ids, covariates.purchase, covariates.dropout, str(cfg.data.customers), covariates.spend
    )


def covariate_candidates(candidates: list[str]) -> list[str]:
    """The candidates that have a covariate version (purchase_model auto with covariates); none: a one-line error."""
    from crmvalue.models.covariate_models import COVARIATE_MODELS

    kept = [c for c in candidates if c in COVARIATE_MODELS]
    if not kept:
        raise CrmvalueError(
            f"model.covariates: none of the candidates {', '.join(candidates)} has a covariate version "
            f"({', '.join(COVARIATE_MODELS)} do)"
        )
    return kept


def likelihood_ratio_test(with_covariates: CovariateFit | SpendCovariateFit, without: float) -> dict[str, float]:
    """The likelihood-ratio test of the covariates: ``2 (LL_with - LL_without)`` (``without``: the same fit's
    log-likelihood without covariates, on the same customers) against chi-square with as many degrees of freedom
    as coefficients (the models are nested: all coefficients 0 is the plain model). Keys ``statistic``, ``df``,
    ``p_value``."""
    from scipy.stats import chi2

    df = len(with_covariates.coefficients_)
    statistic = max(2.0 * (with_covariates.log_likelihood_ - without), 0.0)  # optimiser slack
    return {"statistic": statistic, "df": float(df), "p_value": float(chi2.sf(statistic, df))}


def covariate_tests(purchase, gg, summary: pd.DataFrame, penalizer: float) -> dict[str, float]:
    """The final fits' covariates tested against the same fits without them (``summary``: the final RFM rows):
    ``final.<model>.lr_test.*`` and ``final.gamma_gamma.lr_test.*``; nothing for a fit without covariates."""
    from crmvalue.models import PURCHASE_MODELS

    metrics = {}
    if isinstance(purchase, CovariateFit):
        plain = PURCHASE_MODELS[purchase.name](penalizer).fit(summary["frequency"], summary["recency"], summary["T"])
        test = likelihood_ratio_test(purchase, plain.log_likelihood_)
        metrics.update({schema.lr_test_metric(purchase.name, k): v for k, v in test.items()})
    if isinstance(gg, SpendCovariateFit):
        test = likelihood_ratio_test(gg, gg.plain_log_likelihood_)
        metrics.update({schema.lr_test_metric("gamma_gamma", k): v for k, v in test.items()})
    return metrics


@dataclass(frozen=True)
class CandidateResult:
    """One purchase model fitted on the calibration period and scored on the holdout."""

    name: str
    model: PurchaseModel | CovariateFit | None  # None when the fit failed
    metrics: dict[str, float] = field(default_factory=dict)
    conditional_expectations: pd.DataFrame | None = None
    error: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """Every candidate's out-of-time result, the chosen one and why, and the baseline beside them."""

    candidates: dict[str, CandidateResult]
    winner: str
    reason: str
    gamma_gamma: GammaGammaModel | SpendCovariateFit | None
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
    covariates: CovariateRows | None = None,
) -> Evaluation:
    """Fit each candidate on the calibration period, score the holdout, and choose by holdout error.

    ``split`` is :func:`crmvalue.features.calibration_holdout_summary`. With one candidate its
    failure is raised; with several, a candidate that fails is recorded and the others compete
    (if all fail, the first failure is raised). ``mean_spend`` is the calibration period's mean
    purchase amount, Gamma-Gamma's fallback when no customer has a repeat purchase there. With
    ``covariates`` every candidate is its covariate version, fitted on the calibration period with each
    customer's covariates (:func:`fit_purchase_model`).

    The default criterion is RMSE because the models forecast the *mean* number of purchases,
    and squared error is minimised by the mean; absolute error is minimised by the median,
    which is 0 for most customers, so MAE rewards forecasts that are too low (on data drawn
    from BG/NBD, forecasting zero for everyone has a lower MAE than the true parameters).
    The log-likelihood, AIC and BIC are reported beside it but do not choose: the models are
    not nested, and the holdout is what the exported forecasts will be judged on.
    """
    x, t_x, T_ = split["frequency_cal"], split["recency_cal"], split["T_cal"]
    duration = float(split["duration_holdout"].iloc[0])
    actual = split["frequency_holdout"].to_numpy()
    revenue = split["revenue_holdout"]
    gg, spend = fit_spend(gamma_gamma_penalizer, x, split["monetary_value_cal"], mean_spend, covariates)

    results: dict[str, CandidateResult] = {}
    for name in candidates:
        try:
            model = fit_purchase_model(name, penalizer, x, t_x, T_, covariates)
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
