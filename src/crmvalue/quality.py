"""The quality gates' verdicts: the value model's holdout total, the churn stage's scorer, as tags."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crmvalue import schema

if TYPE_CHECKING:
    from crmvalue.churn import ChurnResult
    from crmvalue.config import ExperimentConfig

log = logging.getLogger("crmvalue")


def value_gate(metrics: dict[str, float], max_total_error: float, cal_end, obs_end) -> dict[str, float]:
    """The value model's quality gate: ``quality.holdout_total_error`` (predicted / actual total purchases
    in the holdout, minus 1) and ``quality.value_red_flag`` (1 when that is off by more than
    ``max_total_error``, with one warning line). Nothing when the run has no holdout totals."""
    predicted, actual = (
        metrics.get(schema.holdout_metric("predicted_total")),
        metrics.get(schema.holdout_metric("actual_total")),
    )
    if predicted is None or actual is None or not (np.isfinite(predicted) and np.isfinite(actual)):
        return {}
    gate = {}
    if actual > 0:
        gate[schema.HOLDOUT_TOTAL_ERROR] = predicted / actual - 1
        red = abs(predicted / actual - 1) > max_total_error
    else:
        red = predicted > 0
    gate[schema.VALUE_RED_FLAG] = float(red)
    if red:
        log.warning(
            "value model: red flag, %s (holdout %s to %s)",
            value_gate_text(gate, predicted, actual, max_total_error),
            pd.Timestamp(cal_end).date(),
            pd.Timestamp(obs_end).date(),
        )
    return gate


def value_gate_text(gate: dict[str, float], predicted: float, actual: float, max_total_error: float) -> str:
    """The value gate's verdict in words, for the warning, the tag, the run summary and the report."""
    error = gate.get(schema.HOLDOUT_TOTAL_ERROR)
    off = f"{error:+.0%}" if error is not None else "no purchase was made"
    if not gate.get(schema.VALUE_RED_FLAG):
        return f"holdout purchases predicted {predicted:,.0f} against {actual:,.0f} made ({off}), within ±{max_total_error:.0%}"
    return (
        f"the holdout forecast of total purchases is {predicted:,.0f} against {actual:,.0f} made ({off}), "
        f"beyond the ±{max_total_error:.0%} of quality.max_total_error: treat its totals and CLV with care"
    )


def quality_tags(cfg: ExperimentConfig, metrics: dict[str, float], churn_result: ChurnResult | None) -> dict[str, str]:
    """The quality gates as run tags: ``crmvalue.churn`` (ran, skipped: why, or off), ``crmvalue.churn_scorer``
    and ``crmvalue.churn_gate`` (which scorer is live and why), ``crmvalue.value_gate`` (ok or red: why)."""
    tags = {}
    if churn_result is None:
        tags[schema.CHURN_TAG] = "off"
    elif churn_result.skipped is not None:
        tags[schema.CHURN_TAG] = f"skipped: {churn_result.skipped}"
    else:
        gate = churn_result.gate
        assert gate is not None  # a churn stage that ran has its gate
        tags[schema.CHURN_TAG] = "ran"
        tags["crmvalue.churn_scorer"] = gate.scorer  # churn_result.scorer
        tags["crmvalue.churn_gate"] = gate.reason
    flag = metrics.get(schema.VALUE_RED_FLAG)
    if flag is None:
        tags["crmvalue.value_gate"] = "not checked: the run has no holdout totals of purchases"
    else:
        text = value_gate_text(
            metrics,
            metrics[schema.holdout_metric("predicted_total")],
            metrics[schema.holdout_metric("actual_total")],
            cfg.quality.max_total_error,
        )
        tags["crmvalue.value_gate"] = ("red: " if flag else "ok: ") + text
    return tags
