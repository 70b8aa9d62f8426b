"""The quality gate: the model against its baselines on the held-out cut-off, and the live churn probability."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from crmvalue.churn.classifier import ChurnClassifier, logit
from crmvalue.churn.evaluation import churn_metrics, split_validation
from crmvalue.errors import CrmvalueError

LIGHTGBM = "lightgbm"
GATE_METRIC = "brier"  # the held-out score the gate compares; lower is better
# what each baseline's logistic calibration takes as its input, from the feature rows
BASELINE_INPUTS = {
    "bgnbd_no_purchase": "logit(bgnbd_no_purchase)",
    "bgnbd_p_alive": "logit(1 - p_alive)",
    "recency": "days_since_last",
}


def _baseline_input(rows: pd.DataFrame, name: str) -> np.ndarray:
    if name == "bgnbd_no_purchase":
        return logit(rows["bgnbd_no_purchase"].to_numpy(float))
    if name == "bgnbd_p_alive":
        return logit(1.0 - rows["p_alive"].to_numpy(float))
    if name == "recency":
        return rows["days_since_last"].to_numpy(float)
    raise CrmvalueError(f"churn: unknown baseline {name!r}; expected one of {', '.join(BASELINE_INPUTS)}")


def fit_baseline_calibration(rows: pd.DataFrame, y, name: str) -> dict:
    """A logistic curve that maps baseline ``name``'s score on ``rows`` to a churn probability, as plain numbers.

    Fitted on the standardised input (so the solver sees numbers near 1 whatever the scale of
    days since the last purchase), then stated on the raw input, which is what is saved and applied.
    """
    x = _baseline_input(rows, name)
    centre, scale = float(x.mean()), float(x.std()) or 1.0
    fit = LogisticRegression(C=1e6).fit(((x - centre) / scale)[:, None], np.asarray(y))
    coef = float(fit.coef_[0, 0]) / scale
    return {
        "baseline": name,
        "input": BASELINE_INPUTS[name],
        "coef": coef,
        "intercept": float(fit.intercept_[0]) - coef * centre,
        "apply": "1 / (1 + exp(-(coef * input + intercept)))",
    }


def baseline_probability(rows: pd.DataFrame, state: dict) -> np.ndarray:
    """Apply a baseline calibration saved by :func:`fit_baseline_calibration` to feature rows."""
    from scipy.special import expit

    return expit(state["coef"] * _baseline_input(rows, state["baseline"]) + state["intercept"])


def live_probability(rows: pd.DataFrame, scorer: str, baseline_calibration: dict | None, lightgbm) -> np.ndarray:
    """The exported churn probability: ``lightgbm(rows)`` (the calibrated model), or where the gate
    chose a baseline, that baseline's calibrated probability. ``crmvalue train`` and
    ``crmvalue predict`` both score through here."""
    if scorer == LIGHTGBM:
        return np.asarray(lightgbm(rows), dtype=float)
    if baseline_calibration is None or baseline_calibration.get("baseline") != scorer:
        raise CrmvalueError(f"churn: the scorer {scorer!r} has no calibration in the scoring state; please report this")
    return baseline_probability(rows, baseline_calibration)


@dataclass(frozen=True)
class ChurnGate:
    """The churn model against its baselines on the held-out cut-off, and which of them scores the export."""

    scorer: str  # LIGHTGBM, or the baseline whose probability the export uses
    cutoff: pd.Timestamp  # the held-out cut-off
    rows: int  # rows compared on: the held-out cut-off's early-stopping half
    metrics: dict[str, dict[str, float]]  # scorer -> churn_metrics on those rows
    calibrations: dict[str, dict]  # baseline -> its logistic calibration, fitted on the calibration half

    @property
    def baseline_calibration(self) -> dict | None:
        return self.calibrations.get(self.scorer)

    @property
    def best_baseline(self) -> str | None:
        baselines = [b for b in self.metrics if b != LIGHTGBM]
        return min(baselines, key=lambda b: self.metrics[b][GATE_METRIC]) if baselines else None

    @property
    def reason(self) -> str:
        """One line: which scorer is live and why, with the held-out Brier scores."""
        model = self.metrics[LIGHTGBM][GATE_METRIC]
        best = self.best_baseline
        where = f"held-out cut-off {self.cutoff.date()}, {self.rows:,} rows"
        if best is None:
            return f"lightgbm: no baseline could be scored; {where}"
        other = self.metrics[best][GATE_METRIC]
        if self.scorer == LIGHTGBM:
            return f"lightgbm: held-out Brier {model:.4f}, below the best baseline's ({best}, {other:.4f}); {where}"
        return (
            f"{self.scorer}: LightGBM's held-out Brier {model:.4f} does not beat {self.scorer}'s {other:.4f}, "
            f"so the export uses that baseline's calibrated probability; {where}"
        )

    def metric_items(self) -> dict[str, float]:
        """``churn.held_out.<metric>`` for the model, ``baseline.<name>.held_out.<metric>`` for each baseline."""
        items = {
            "churn.held_out.rows": float(self.rows),
            "churn.held_out.lightgbm_live": float(self.scorer == LIGHTGBM),
        }
        for name, values in self.metrics.items():
            prefix = "churn.held_out" if name == LIGHTGBM else f"baseline.{name}.held_out"
            items.update({f"{prefix}.{k}": v for k, v in values.items()})
        return items


def gate_churn_model(
    model: ChurnClassifier,
    rows: pd.DataFrame,
    seed: int,
    baselines: tuple[str, ...] = ("bgnbd_no_purchase", "bgnbd_p_alive", "recency"),
) -> ChurnGate:
    """Compare the fitted model with ``baselines`` on the held-out cut-off of ``rows`` (never a test cut-off).

    Every scorer is calibrated on the held-out cut-off's calibration half (LightGBM by its own
    calibration; each baseline by a logistic curve, :func:`fit_baseline_calibration`) and
    judged on its early-stopping half, rows no calibration saw, by the Brier score: the mean
    squared error of the probability that gets exported, a proper score that rewards ranking
    and calibration together and, unlike log loss, is not dominated by a few confident misses.
    LightGBM stays live only when its Brier score is strictly below the best baseline's; a
    baseline whose input is missing there (the BG/NBD fit failed) is not a candidate.
    """
    _, valid, calib = split_validation(rows, seed)
    y = valid["churn"].to_numpy()
    scores = {LIGHTGBM: model.predict_proba(valid[list(model.feature_names_in_)])[:, 1]}
    calibrations = {}
    for name in baselines:
        needed = {"bgnbd_no_purchase": "bgnbd_no_purchase", "bgnbd_p_alive": "p_alive", "recency": "days_since_last"}[
            name
        ]
        if valid[needed].isna().any() or calib[needed].isna().any():
            continue
        calibrations[name] = fit_baseline_calibration(calib, calib["churn"], name)
        scores[name] = baseline_probability(valid, calibrations[name])
    metrics = {name: churn_metrics(y, score) for name, score in scores.items()}
    baseline_scores = {name: m[GATE_METRIC] for name, m in metrics.items() if name != LIGHTGBM}
    scorer = LIGHTGBM
    if baseline_scores:
        best = min(baseline_scores, key=lambda b: baseline_scores[b])
        if not metrics[LIGHTGBM][GATE_METRIC] < baseline_scores[best]:
            scorer = best
    return ChurnGate(scorer, pd.Timestamp(valid["cutoff"].iloc[0]), len(valid), metrics, calibrations)


def churn_risk(probability, high: float, medium: float) -> np.ndarray:
    """``high`` at or above ``high``, ``medium`` at or above ``medium``, else ``low``."""
    p = np.asarray(probability, float)
    return np.select([p >= high, p >= medium], ["high", "medium"], default="low")
