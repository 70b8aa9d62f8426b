"""The churn scorer: what ``crmvalue predict`` needs besides the booster to score new data as the run did.

Saved with every run that trained a churn model as ``churn/churn_scoring.json`` (:meth:`ChurnScorer.to_dict`);
its format is the one runs have always written, so older runs still load (:meth:`ChurnScorer.from_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from crmvalue.churn.classifier import calibrate
from crmvalue.churn.data import prepare
from crmvalue.churn.features import NO_BGNBD, score_in_chunks
from crmvalue.churn.gate import LIGHTGBM, churn_risk, live_probability
from crmvalue.features import TimeUnit
from crmvalue.models.bgnbd import BetaGeoParams

if TYPE_CHECKING:
    from crmvalue.churn.train import ChurnResult
    from crmvalue.config import ExperimentConfig


@dataclass(frozen=True)
class ChurnScorer:
    """The churn scoring state of a trained run, as plain numbers: features, calibration and the live scorer."""

    feature_columns: tuple[str, ...]  # the booster's input columns, in its order
    bgnbd_params: BetaGeoParams | None  # the BG/NBD features' fit at the observation end; None: the fit failed
    horizon_days: int
    time_unit: TimeUnit
    calibration: dict[str, Any]  # ChurnClassifier.calibration_state(): the booster's raw output -> probability
    risk_high: float  # churn_risk is "high" at or above this probability
    risk_medium: float  # and "medium" at or above this one
    categories: dict[str, list[str]] = field(default_factory=dict)  # attr_<column> -> categories by code
    # the quality gate's choice: "lightgbm" (booster + calibration), or a baseline and its calibration;
    # runs from before the gate have neither key and score with LightGBM
    scorer: str = LIGHTGBM
    baseline_calibration: dict[str, Any] | None = None
    gate: str | None = None  # the gate's reason, one line

    @classmethod
    def from_result(cls, result: ChurnResult, cfg: ExperimentConfig) -> ChurnScorer:
        """The scoring state of a churn stage that ran (:func:`crmvalue.churn.train_churn`) with ``cfg``."""
        if result.model is None or result.gate is None:
            raise ValueError(f"churn: the churn stage was skipped ({result.skipped}); it has no scoring state")
        return cls(
            feature_columns=tuple(str(c) for c in result.model.feature_names_in_),
            bgnbd_params=result.bgnbd_params,
            horizon_days=cfg.horizon_days,
            time_unit=cfg.time_unit,
            calibration=result.model.calibration_state(),
            risk_high=cfg.churn.risk.high,
            risk_medium=cfg.churn.risk.medium,
            categories=result.categories,
            scorer=result.gate.scorer,
            baseline_calibration=result.gate.baseline_calibration,
            gate=result.gate.reason,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able state, in the format of ``churn/churn_scoring.json``."""
        return {
            "feature_columns": list(self.feature_columns),
            "bgnbd_params": None if self.bgnbd_params is None else self.bgnbd_params.as_dict(),
            "horizon_days": self.horizon_days,
            "time_unit": self.time_unit,
            "categories": self.categories,
            "calibration": self.calibration,
            "risk": {"high": self.risk_high, "medium": self.risk_medium},
            "scorer": self.scorer,
            "baseline_calibration": self.baseline_calibration,
            "gate": self.gate,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> ChurnScorer:
        """Read :meth:`to_dict`'s format; runs from before the quality gate lack ``scorer``,
        ``baseline_calibration`` and ``gate``."""
        params = state.get("bgnbd_params")
        return cls(
            feature_columns=tuple(state["feature_columns"]),
            bgnbd_params=BetaGeoParams(**params) if params else None,
            horizon_days=state["horizon_days"],
            time_unit=state["time_unit"],
            calibration=state["calibration"],
            risk_high=state["risk"]["high"],
            risk_medium=state["risk"]["medium"],
            categories=state.get("categories") or {},
            scorer=state.get("scorer", LIGHTGBM),
            baseline_calibration=state.get("baseline_calibration"),
            gate=state.get("gate"),
        )

    def score(
        self, booster, frame: pd.DataFrame, obs_end: pd.Timestamp, attributes: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Churn probability and risk at ``obs_end`` with the run's trained LightGBM ``booster``, no refit:
        ``customer_id``, ``churn_probability``, ``churn_risk``."""
        data = prepare(frame, obs_end, attributes, categories=self.categories)
        # None: the run's own fit failed, so the model learned these features as missing
        params = NO_BGNBD if self.bgnbd_params is None else self.bgnbd_params
        columns = list(self.feature_columns)
        ids, probability, _ = score_in_chunks(
            data,
            obs_end,
            self.horizon_days,
            self.time_unit,
            params,
            lambda rows: live_probability(
                rows,
                self.scorer,
                self.baseline_calibration,
                lambda now: calibrate(booster.predict(now[columns]), self.calibration),
            ),
        )
        return pd.DataFrame(
            {
                "customer_id": ids,
                "churn_probability": probability,
                "churn_risk": churn_risk(probability, self.risk_high, self.risk_medium),
            }
        )
