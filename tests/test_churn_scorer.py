"""The typed churn scoring state: its JSON format, older runs' states, and scoring as ``crmvalue predict`` does."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from conftest import simulated_transactions

from crmvalue import churn
from crmvalue.churn import LIGHTGBM, ChurnScorer, train_churn
from crmvalue.config import ExperimentConfig
from crmvalue.models import BetaGeoParams

CAL_END, OBS_END = pd.Timestamp("2021-06-30"), pd.Timestamp("2021-12-31")
# the artifact churn/churn_scoring.json has always had these keys, in this order
KEYS = [
    "feature_columns",
    "bgnbd_params",
    "horizon_days",
    "time_unit",
    "categories",
    "calibration",
    "risk",
    "scorer",
    "baseline_calibration",
    "gate",
]


def score_churn(booster, state: dict, frame: pd.DataFrame, obs_end: pd.Timestamp, attributes) -> pd.DataFrame:
    """``crmvalue.predict.score_churn`` as it was before ChurnScorer, on the untyped state: the oracle."""
    data = churn.prepare(frame, obs_end, attributes, categories=state["categories"])
    params = BetaGeoParams(**state["bgnbd_params"]) if state["bgnbd_params"] else churn.NO_BGNBD
    scorer = state.get("scorer", churn.LIGHTGBM)
    ids, probability, _ = churn.score_in_chunks(
        data,
        obs_end,
        state["horizon_days"],
        state["time_unit"],
        params,
        lambda rows: churn.live_probability(
            rows,
            scorer,
            state.get("baseline_calibration"),
            lambda now: churn.calibrate(booster.predict(now[state["feature_columns"]]), state["calibration"]),
        ),
    )
    return pd.DataFrame(
        {
            "customer_id": ids,
            "churn_probability": probability,
            "churn_risk": churn.churn_risk(probability, state["risk"]["high"], state["risk"]["medium"]),
        }
    )


@pytest.fixture(scope="module")
def trained():
    tx = simulated_transactions(n_customers=1500, seed=2)
    cfg = ExperimentConfig(horizon_days=90, time_unit="days")
    result = train_churn(cfg, tx, CAL_END, OBS_END, None)
    return tx, cfg, result, ChurnScorer.from_result(result, cfg)


def test_the_scorer_writes_the_artifact_format_of_every_run(trained):
    _, cfg, result, scorer = trained
    state = scorer.to_dict()
    assert list(state) == KEYS
    assert state == {
        "feature_columns": [str(c) for c in result.model.feature_names_in_],
        "bgnbd_params": result.bgnbd_params.as_dict(),
        "horizon_days": 90,
        "time_unit": "days",
        "categories": {},
        "calibration": result.model.calibration_state(),
        "risk": {"high": cfg.churn.risk.high, "medium": cfg.churn.risk.medium},
        "scorer": result.scorer,
        "baseline_calibration": result.gate.baseline_calibration,
        "gate": result.gate.reason,
    }


def test_the_scorer_round_trips_through_json(trained):
    scorer = trained[3]
    again = ChurnScorer.from_dict(json.loads(json.dumps(scorer.to_dict(), indent=2)))
    assert again == scorer
    assert again.to_dict() == scorer.to_dict()
    # a failed BG/NBD fit at the observation end is saved as null and read back as None
    failed = dataclasses.replace(scorer, bgnbd_params=None)
    assert ChurnScorer.from_dict(json.loads(json.dumps(failed.to_dict()))) == failed


def test_a_state_from_before_the_quality_gate_loads_and_scores_with_lightgbm(trained):
    tx, _, result, scorer = trained
    old = {k: v for k, v in scorer.to_dict().items() if k not in ("scorer", "baseline_calibration", "gate")}
    loaded = ChurnScorer.from_dict(old)
    assert (loaded.scorer, loaded.baseline_calibration, loaded.gate) == (LIGHTGBM, None, None)
    assert isinstance(loaded.bgnbd_params, BetaGeoParams) and loaded.feature_columns == scorer.feature_columns
    booster = result.model.booster_
    pd.testing.assert_frame_equal(
        loaded.score(booster, tx, OBS_END), score_churn(booster, old, tx, OBS_END, None), check_exact=True
    )


@pytest.mark.parametrize("live", [LIGHTGBM, "recency", "bgnbd_no_purchase"])
def test_the_scorer_scores_as_predict_does(trained, live):
    """Whichever scorer the gate made live, ChurnScorer.score gives predict's scores exactly."""
    tx, cfg, result, scorer = trained
    if live != LIGHTGBM:
        scorer = dataclasses.replace(scorer, scorer=live, baseline_calibration=result.gate.calibrations[live])
    booster = result.model.booster_
    scored = scorer.score(booster, tx, OBS_END)
    pd.testing.assert_frame_equal(scored, score_churn(booster, scorer.to_dict(), tx, OBS_END, None), check_exact=True)
    assert list(scored.columns) == ["customer_id", "churn_probability", "churn_risk"]
    assert scored["churn_risk"].isin(["high", "medium", "low"]).all()
    if live == result.scorer:  # the scores train exported
        train = result.scores.set_index("customer_id").loc[scored["customer_id"]]
        np.testing.assert_array_equal(scored["churn_probability"], train["churn_probability"])


def test_a_skipped_churn_stage_has_no_scorer():
    from crmvalue.churn import ChurnResult

    with pytest.raises(ValueError, match="skipped"):
        ChurnScorer.from_result(ChurnResult.skip("too short"), ExperimentConfig())
