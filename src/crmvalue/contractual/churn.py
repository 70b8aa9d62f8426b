"""Churn in the contractual setting: a LightGBM classifier on rolling cut-offs, beside the sBG as its baseline.

The label, at a cut-off ``c`` (a subscriber active at ``c`` with ``n`` renewals made): ``churn`` = she does not
make her next renewal, i.e. her subscription ends on or before her anniversary ``n + 1`` (``T = n + 1`` in the
convention of :mod:`.periods`). That is exactly the event of the sBG's ``1 - p_active_next(n)``, so the baseline
is the sBG fitted on what was known at ``c`` (:func:`~.evaluation.fit_at`), without any recalibration.

The cut-offs are one period apart, on a grid where every label window ends by the next cut-off: for months,
quarters and years the month ends (her next anniversary after a month end falls in the next 1, 3 or 12 months),
for weeks every 7 days back from the last label day. Latest first, for the observation end ``L``:

- the **test** cut-off: the latest whose labels all end by ``L``; nothing is trained, stopped or calibrated on it;
- the **held-out** cut-off, one period before: split by subscriber into LightGBM's early-stopping and calibration
  halves (:func:`crmvalue.churn.fit_churn_model`);
- the **training** cut-offs, each one period earlier, back to one period after the first start, at most
  :data:`MAX_CUTOFFS` in all; their labels end by the held-out cut-off (the purge).

Features at ``c`` read only the start, the fee and the customer table, never the end (an active subscriber's end
is after ``c``): ``renewals`` (made by ``c``), ``tenure_periods`` (days since the start over the mean days of a
period), ``start_cohort`` (the start's period as a number), ``fee`` when the table has one, and ``attr_<column>``
for the columns of ``data.customers`` (:func:`crmvalue.churn.feature_attributes` chooses them; categories by code).

The quality gate (as :func:`crmvalue.churn.gate_churn_model`, against one baseline): LightGBM scores the export
only when its Brier score on the test cut-off is strictly below the sBG's; else ``churn_probability`` is the final
sBG's ``1 - p_active_next``. The export is scored with the tested model, at the observation end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crmvalue.churn import (
    GATE_METRIC,
    LIGHTGBM,
    ChurnClassifier,
    ChurnNotEstimable,
    calibrate,
    check_two_classes,
    churn_metrics,
    churn_risk,
    feature_attributes,
    feature_columns,
    fit_churn_model,
    skip_reason,
)
from crmvalue.contractual.evaluation import fit_at
from crmvalue.contractual.periods import MONTHS_PER_PERIOD, active_at, anniversaries, anniversary
from crmvalue.errors import CrmvalueError

log = logging.getLogger("crmvalue")

SBG = "sbg"  # the baseline's name: metrics churn.baseline.sbg.<metric>
MAX_CUTOFFS = 24  # test + held-out + training cut-offs; older ones add little and cost one sBG fit each
MIN_CUTOFFS = 3  # the test, the held-out and at least one training cut-off
CHURN_COLUMNS = ["churn_probability", "churn_risk"]
_PERIOD_FREQ = {"week": "W", "month": "M", "quarter": "Q", "year": "Y"}


def churn_cutoffs(first_start, last_label_day, period: str) -> list[pd.Timestamp]:
    """The cut-offs for labels that end by ``last_label_day``, latest (the test cut-off) first; see the module."""
    last = pd.Timestamp(last_label_day).normalize()
    earliest = pd.Timestamp(first_start).normalize() + pd.Timedelta(days=round(_days_per_period(period)))
    if period == "week":
        grid = [last - pd.Timedelta(days=7 * k) for k in range(1, MAX_CUTOFFS + 1)]
    else:
        step = round(MONTHS_PER_PERIOD[period])
        month_end = last if last.is_month_end else last - pd.offsets.MonthEnd(1)
        grid = [month_end - pd.offsets.MonthEnd(step * k) for k in range(1, MAX_CUTOFFS + 1)]
    return [c for c in grid if c >= earliest]


def _days_per_period(period: str) -> float:
    return MONTHS_PER_PERIOD[period] * 365.25 / 12


def encode_attributes(
    attributes: pd.DataFrame | None, ids, categories: dict[str, list[str]] | None = None
) -> tuple[pd.DataFrame | None, dict[str, list[str]]]:
    """The customer-table columns for the subscribers ``ids`` (in that order) as ``attr_<column>``: numbers as
    they are, a category as its code (missing, or unseen in ``categories``, stays missing)."""
    if attributes is None:
        return None, {}
    coded = attributes.reindex(pd.Index(ids)).add_prefix("attr_").reset_index(drop=True)
    fixed, found = categories or {}, {}
    for column in coded.columns:
        if isinstance(coded[column].dtype, pd.CategoricalDtype) or column in fixed:
            known = fixed.get(column)
            values = pd.Categorical(coded[column].astype("string"), categories=known)
            found[column] = [str(c) for c in values.categories]
            codes = values.codes
            coded[column] = np.where(codes >= 0, codes, np.nan)
    return coded, found


def churn_features(
    frame: pd.DataFrame, cutoff, period: str, attributes: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature rows of the subscribers active at ``cutoff`` and their positions in ``frame``; see the module.
    ``attributes`` is :func:`encode_attributes`' frame, aligned with ``frame``'s rows."""
    c = pd.Timestamp(cutoff)
    where = np.flatnonzero(active_at(frame, c))
    start = frame["start"].to_numpy()[where]
    days = (c.to_datetime64() - start) / np.timedelta64(1, "D")
    rows = pd.DataFrame(
        {
            "cutoff": c,
            "customer_id": frame["customer_id"].to_numpy()[where],
            "renewals": anniversaries(start, c.to_datetime64(), period).astype(float),
            "tenure_periods": days / _days_per_period(period),
            "start_cohort": pd.DatetimeIndex(start).to_period(_PERIOD_FREQ[period]).asi8.astype(float),
        }
    )
    if "fee" in frame.columns:
        rows["fee"] = frame["fee"].to_numpy(float)[where]
    if attributes is not None:
        rows = pd.concat([rows, attributes.iloc[where].reset_index(drop=True)], axis=1)
    return rows, where


def labelled_rows(frame: pd.DataFrame, cutoff, period: str, attributes: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`churn_features` at ``cutoff`` with ``label_end`` (the next anniversary), ``churn`` (ended on or
    before it) and ``sbg`` (the sBG baseline fitted at ``cutoff``: ``1 - p_active_next(renewals)``)."""
    rows, where = churn_features(frame, cutoff, period, attributes)
    start = frame["start"].to_numpy()[where]
    end = frame["end"].to_numpy()[where]
    label_end = anniversary(start, rows["renewals"].to_numpy(np.int64) + 1, period).astype("datetime64[ns]")
    rows["label_end"] = label_end
    rows["churn"] = (~np.isnat(end) & (end <= label_end)).astype(int)
    try:
        params = fit_at(frame, pd.Timestamp(cutoff), period).params_
    except CrmvalueError:  # nothing renewed or ended yet: no baseline, no row
        return rows.iloc[:0].assign(sbg=np.nan)
    rows["sbg"] = 1.0 - params.p_active_next(rows["renewals"].to_numpy())
    return rows


@dataclass
class ContractualChurn:
    """The churn stage's outcome: ``scores`` (customer_id, churn_probability, churn_risk at the observation end),
    ``metrics`` (``churn.*``, ``churn.baseline.sbg.*``), ``scorer`` (``lightgbm`` or ``sbg``), ``state`` (what
    :func:`score_churn` needs); with ``skipped`` set only the reason."""

    scores: pd.DataFrame | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    scorer: str | None = None
    test_cutoff: pd.Timestamp | None = None
    state: dict | None = None
    model: ChurnClassifier | None = None
    skipped: str | None = None

    @property
    def tag(self) -> str:
        """The run's ``crmvalue.churn`` tag: the live scorer, or why there is none."""
        return f"skipped: {self.skipped}" if self.skipped is not None else str(self.scorer)


def train_contractual_churn(
    cfg, frame: pd.DataFrame, obs_end, predictions: pd.DataFrame, attributes: pd.DataFrame | None = None
) -> ContractualChurn | None:
    """The churn stage of ``train --setting contractual``: None with ``churn.enabled: false``; with ``auto``,
    data the protocol cannot use give a skipped outcome and one warning; with ``true`` they are an error.

    ``predictions`` are the final sBG's scores at ``obs_end`` (``customer_id``, ``tenure``, ``p_active_next``);
    ``attributes`` the customer table (:func:`crmvalue.data.load_customer_attributes`) or None."""
    c = cfg.churn
    if c.enabled is False:
        return None
    try:
        return _train(cfg, frame, obs_end, predictions, attributes)
    except ChurnNotEstimable as exc:
        if c.enabled is True:
            raise
        return ContractualChurn(skipped=skip_reason(exc))


def _train(cfg, frame, obs_end, predictions, attributes) -> ContractualChurn:
    c, period = cfg.churn, cfg.period
    chosen = feature_attributes(attributes, c.attribute_columns)
    coded, categories = encode_attributes(chosen, frame["customer_id"])
    cutoffs = churn_cutoffs(frame["start"].min(), obs_end, period)
    parts = [labelled_rows(frame, cutoff, period, coded) for cutoff in cutoffs]
    cutoffs = [cutoff for cutoff, part in zip(cutoffs, parts, strict=True) if len(part)]
    parts = [part for part in parts if len(part)]
    if len(parts) < MIN_CUTOFFS:
        reason = (
            f"the subscriptions give {len(parts)} usable {period}ly cut-offs up to {pd.Timestamp(obs_end).date()}, "
            f"the contractual churn model needs {MIN_CUTOFFS} (test, held-out, training)"
        )
        raise ChurnNotEstimable(
            f"churn: {reason}; pass --no-churn (churn.enabled: false) or give a longer span", reason
        )
    test, rows = parts[0], pd.concat(parts[1:], ignore_index=True)
    check_two_classes(test["churn"], f"the test rows at {cutoffs[0].date()}")
    categorical = list(categories)
    model, windows = fit_churn_model(rows.drop(columns="sbg"), c, categorical)
    columns = feature_columns(rows.drop(columns="sbg"))
    y = test["churn"].to_numpy()
    p_model = model.predict_proba(test[columns])[:, 1]
    p_sbg = test["sbg"].to_numpy()
    model_metrics, sbg_metrics = churn_metrics(y, p_model), churn_metrics(y, p_sbg)
    scorer = LIGHTGBM if model_metrics[GATE_METRIC] < sbg_metrics[GATE_METRIC] else SBG
    metrics = {f"churn.{k}": v for k, v in model_metrics.items()}
    metrics.update({f"churn.baseline.{SBG}.{k}": v for k, v in sbg_metrics.items()})
    metrics.update(
        {
            "churn.test_rows": float(len(test)),
            "churn.test_churn_rate": float(y.mean()),
            "churn.train_rows": float((windows["role"] == "train").sum()),
            "churn.cutoffs": float(len(parts)),
            "churn.best_iteration": float(model.best_iteration_),
            "churn.lightgbm_live": float(scorer == LIGHTGBM),
        }
    )
    line = (
        f"LightGBM's Brier {model_metrics[GATE_METRIC]:.4f} against the sBG's {sbg_metrics[GATE_METRIC]:.4f} on the "
        f"test cut-off {cutoffs[0].date()} ({len(test):,} subscribers)"
    )
    if scorer == SBG:
        log.warning("churn: quality gate: %s; the export uses the sBG's 1 - p_active_next", line)
    else:
        log.info("churn: quality gate: %s; the export uses LightGBM", line)
    state = {
        "scorer": scorer,
        "period": period,
        "features": columns,
        "categories": categories,
        "risk": {"high": c.risk.high, "medium": c.risk.medium},
        "test_cutoff": str(cutoffs[0].date()),
    }
    if scorer == LIGHTGBM:
        state["calibration"] = model.calibration_state()
        state["booster"] = model.booster_.model_to_string(num_iteration=model.best_iteration_)
    scores = score_churn(state, frame, obs_end, predictions, coded)
    return ContractualChurn(scores, metrics, scorer, cutoffs[0], state, model)


def score_churn(
    state: dict, frame: pd.DataFrame, obs_end, predictions: pd.DataFrame, coded: pd.DataFrame | None
) -> pd.DataFrame:
    """``customer_id``, ``churn_probability``, ``churn_risk`` for ``predictions``' subscribers (in their order),
    by the scorer ``state`` names: the saved LightGBM on the features at ``obs_end``, or the sBG's
    ``1 - p_active_next`` of ``predictions``. ``train`` and ``predict`` both score through here."""
    if state["scorer"] == SBG:
        probability = 1.0 - predictions["p_active_next"].to_numpy(float)
    elif state["scorer"] == LIGHTGBM:
        import lightgbm as lgb

        rows, _ = churn_features(frame, obs_end, state["period"], coded)
        rows = rows.set_index("customer_id").reindex(predictions["customer_id"].to_numpy())
        booster = lgb.Booster(model_str=state["booster"])
        probability = calibrate(booster.predict(rows[state["features"]]), state["calibration"])
    else:
        raise CrmvalueError(f"churn: unknown scorer {state['scorer']!r} in the saved model")
    risk = state["risk"]
    return pd.DataFrame(
        {
            "customer_id": predictions["customer_id"].to_numpy(),
            "churn_probability": probability,
            "churn_risk": churn_risk(probability, risk["high"], risk["medium"]),
        }
    )
