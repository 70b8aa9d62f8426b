"""The churn stage of ``crmvalue train``: test the model out of time, refit, gate it and score every customer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from crmvalue.churn.attributes import feature_attributes
from crmvalue.churn.classifier import ChurnClassifier
from crmvalue.churn.data import ChurnNotEstimable, prepare, sample_customers
from crmvalue.churn.evaluation import ChurnEvaluation, evaluate_churn, fit_churn_model
from crmvalue.churn.features import bgnbd_params_at, feature_columns, score_in_chunks
from crmvalue.churn.gate import BASELINE_INPUTS, LIGHTGBM, ChurnGate, churn_risk, gate_churn_model, live_probability
from crmvalue.churn.windows import training_rows

if TYPE_CHECKING:
    from crmvalue.config import ExperimentConfig
    from crmvalue.models.bgnbd import BetaGeoParams

log = logging.getLogger("crmvalue")


@dataclass
class ChurnResult:
    """The churn stage's outcome; with ``skipped`` set (churn.enabled: auto on data it cannot use)
    it says only why, and every other field is empty."""

    evaluation: ChurnEvaluation | None  # the out-of-time test, with its baselines
    model: ChurnClassifier | None  # trained on every cut-off whose labels end by the observation end
    scores: pd.DataFrame | None  # customer_id, churn_probability, churn_risk at the observation end
    example: pd.DataFrame | None  # a few feature rows, for the logged model's signature
    categories: dict[str, list[str]] = field(default_factory=dict)  # attr_<column> -> categories by code
    bgnbd_params: BetaGeoParams | None = None  # the BG/NBD features' fit at the observation end
    gate: ChurnGate | None = None  # the model against its baselines on the held-out cut-off: who scores the export
    skipped: str | None = None  # why the churn stage did not run

    @classmethod
    def skip(cls, reason: str) -> ChurnResult:
        return cls(None, None, None, None, skipped=reason)

    @property
    def scorer(self) -> str | None:
        """``lightgbm``, or the baseline whose calibrated probability the export uses; None when skipped."""
        return None if self.gate is None else self.gate.scorer


def skip_reason(exc: ChurnNotEstimable) -> str:
    """churn.enabled: auto on data the churn protocol cannot use: one warning line; the reason, for the tags and report."""
    log.warning(
        "churn: skipped, %s; the run goes on without churn_probability and churn_risk "
        "(churn.enabled: auto; --churn makes this an error)",
        exc.reason,
    )
    return exc.reason


def train_churn(
    cfg: ExperimentConfig, frame: pd.DataFrame, cal_end, obs_end, attributes: pd.DataFrame | None
) -> ChurnResult:
    """Test the churn model out of time at the calibration end, then refit to score at the observation end."""
    c = cfg.churn
    data = prepare(frame, obs_end, feature_attributes(attributes, c.attribute_columns))
    # trained and tested on a random sample of customers (all of them up to churn.sample_customers); all are scored
    sample = sample_customers(data, c.sample_customers, c.seed)
    if len(sample.ids) < len(data.ids):
        log.info(
            "churn: training and testing on %s of %s customers (churn.sample_customers)",
            f"{len(sample.ids):,}",
            f"{len(data.ids):,}",
        )
    evaluation = evaluate_churn(sample, cal_end, obs_end, c, cfg.horizon_days, cfg.time_unit, cfg.model.penalizer)
    evaluation.metrics["churn.sampled_customers"] = float(len(sample.ids))
    rows = training_rows(sample, obs_end, c, cfg.horizon_days, cfg.time_unit, cfg.model.penalizer)
    model, _ = fit_churn_model(rows, c, list(data.categories))
    columns = feature_columns(rows)
    params = bgnbd_params_at(data, obs_end, cfg.time_unit, cfg.model.penalizer)
    # the quality gate, on the held-out cut-off: a BG/NBD baseline can be live only if it can score everyone now
    candidates = tuple(b for b in BASELINE_INPUTS if b == "recency" or not isinstance(params, str))
    gate = gate_churn_model(model, rows, c.seed, candidates)
    del rows
    if gate.scorer != LIGHTGBM:
        log.warning("churn: quality gate: %s", gate.reason)
    ids, probability, example = score_in_chunks(
        data,
        obs_end,
        cfg.horizon_days,
        cfg.time_unit,
        params,
        lambda now: live_probability(
            now, gate.scorer, gate.baseline_calibration, lambda rows: model.predict_proba(rows[columns])[:, 1]
        ),
    )
    scores = pd.DataFrame(
        {
            "customer_id": ids,
            "churn_probability": probability,
            "churn_risk": churn_risk(probability, c.risk.high, c.risk.medium),
        }
    )
    return ChurnResult(
        evaluation, model, scores, example[columns], data.categories, None if isinstance(params, str) else params, gate
    )
