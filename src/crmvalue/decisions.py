"""From scores to decisions (seed 003): value at risk, retention priority and the next action.

Seed 003 says to put the effort on customers who are both valuable and likely to be lost, and to
treat each value quadrant in its own way. Three per-customer columns say that in numbers:

- ``value_at_risk = churn_probability x clv``: the part of the customer's forecast value that
  their churn risk puts in doubt (the expected loss if nothing is done). ``clv`` is the discounted
  value the live value model forecasts; ``churn_probability`` is the live churn score's
  probability of no purchase over the horizon (the LightGBM model, or the baseline the churn
  quality gate chose).
- ``retention_priority``: 1 for the customer to contact first. Customers are ranked by value at
  risk, highest first; ties go to the higher ``clv``, then to the smaller ``customer_id`` (as
  text), so the order is total and the same on every run.
- ``next_action``: a short label from a matrix of value quadrant x churn risk
  (:data:`DEFAULT_ACTIONS`, set in the config's ``decisions.actions``). The risks are the labels
  of ``churn_risk`` (:func:`crmvalue.churn.churn_risk`): high, medium, low.

The three columns are written exactly when the churn columns are (``crmvalue.schema.DECISIONS``).
Everything is vectorised; nothing here loops over customers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crmvalue.errors import CrmvalueError
from crmvalue.schema import NEXT_ACTION_LENGTH
from crmvalue.segments import QUADRANTS

RISK_LEVELS = ("high", "medium", "low")
QUADRANT_LABELS = QUADRANTS

# seed 003's treatment of each quadrant (../shared/docs/domain.md, section 2), split by churn risk:
# a valuable customer at high risk is saved first, a low-value one at high risk is let go
DEFAULT_ACTIONS: dict[str, dict[str, str]] = {
    "A": {"high": "save now", "medium": "reward and watch", "low": "keep and reward"},
    "B": {"high": "win back", "medium": "develop", "low": "develop"},
    "C": {"high": "retain", "medium": "maintain and watch", "low": "maintain"},
    "D": {"high": "let go", "medium": "serve at low cost", "low": "serve at low cost"},
}


class DecisionsConfig(BaseModel):
    """The next-action matrix: for each value quadrant, the label for each churn risk."""

    model_config = ConfigDict(extra="forbid")

    actions: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {q: dict(row) for q, row in DEFAULT_ACTIONS.items()},
        description="next_action by quadrant (A-D) and churn risk (high, medium, low); a partial matrix "
        "overrides the default cells it names",
    )

    @field_validator("actions", mode="before")
    @classmethod
    def _complete(cls, value):
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of quadrant -> {risk: action}")
        merged = {q: dict(row) for q, row in DEFAULT_ACTIONS.items()}
        for quadrant, row in value.items():
            if quadrant not in QUADRANT_LABELS:
                raise ValueError(f"unknown quadrant {quadrant!r}; the quadrants are {', '.join(QUADRANT_LABELS)}")
            if not isinstance(row, dict):
                raise ValueError(f"quadrant {quadrant}: expected a mapping of risk -> action")
            for risk, action in row.items():
                if risk not in RISK_LEVELS:
                    raise ValueError(f"quadrant {quadrant}: unknown churn risk {risk!r}; use {', '.join(RISK_LEVELS)}")
                if not isinstance(action, str) or not action.strip():
                    raise ValueError(f"quadrant {quadrant}, risk {risk}: the action must be a non-empty text")
                if len(action.strip()) > NEXT_ACTION_LENGTH:
                    raise ValueError(
                        f"quadrant {quadrant}, risk {risk}: the action {action.strip()!r} is longer than "
                        f"{NEXT_ACTION_LENGTH} characters (the next_action column's width)"
                    )
                merged[quadrant][risk] = action.strip()
        return merged


def value_at_risk(churn_probability, clv, customer_id=None) -> np.ndarray:
    """``churn_probability x clv``, per customer; a one-line error for a probability outside [0, 1]
    or a value that is not finite, naming the customer when ``customer_id`` is given (else the row)."""
    p = np.asarray(churn_probability, dtype=np.float64)
    value = np.asarray(clv, dtype=np.float64)
    if p.shape != value.shape:
        raise CrmvalueError(f"value at risk: {p.size} churn probabilities for {value.size} CLVs")
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise CrmvalueError(
            f"value at risk: churn_probability {float(p[row])!r} of {_who(customer_id, row)} is not in [0, 1]"
        )
    bad = ~np.isfinite(value)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise CrmvalueError(f"value at risk: clv {float(value[row])!r} of {_who(customer_id, row)} is not finite")
    return p * value


def _who(customer_id, row: int) -> str:
    if customer_id is None:
        return f"row {row}"
    return f"customer {str(np.asarray(customer_id, dtype=object)[row])!r}"


def retention_priority(value_at_risk, clv, customer_id) -> np.ndarray:
    """1 = contact first: by value at risk (highest first), then clv (highest first), then
    customer_id as text (smallest first). Ranks 1..n, each used once."""
    risk = np.asarray(value_at_risk, dtype=np.float64)
    value = np.asarray(clv, dtype=np.float64)
    ids = np.asarray(pd.Series(customer_id).astype(str).to_numpy(), dtype=str)
    if not risk.shape == value.shape == ids.shape:
        raise CrmvalueError(
            f"retention priority: {risk.size} values at risk, {value.size} CLVs and {ids.size} customer ids"
        )
    if np.isnan(risk).any() or np.isnan(value).any():
        raise CrmvalueError("retention priority: a value at risk or CLV is missing (NaN)")
    # np.lexsort sorts by the last key first
    order = np.lexsort((ids, -value, -risk))
    priority = np.empty(len(order), dtype=np.int64)
    priority[order] = np.arange(1, len(order) + 1)
    return priority


def next_action(quadrant, churn_risk, actions: dict[str, dict[str, str]] | None = None) -> np.ndarray:
    """The matrix's label for each (quadrant, churn risk) pair; a one-line error names the first
    pair the matrix does not know. ``actions`` may be partial: it overrides the default cells it names."""
    try:
        matrix = DecisionsConfig(actions=actions or {}).actions
    except ValidationError as exc:
        raise CrmvalueError(f"decisions.actions: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    q = pd.Series(quadrant).astype(str).to_numpy()
    r = pd.Series(churn_risk).astype(str).to_numpy()
    keys = pd.Series(q, dtype=object) + "|" + pd.Series(r, dtype=object)
    lookup = {f"{quad}|{risk}": label for quad, row in matrix.items() for risk, label in row.items()}
    labels = keys.map(lookup)
    missing = labels.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise CrmvalueError(
            f"next action: no action for quadrant {q[row]!r} with churn risk {r[row]!r} (row {row}); "
            f"quadrants are {', '.join(QUADRANT_LABELS)} and risks {', '.join(RISK_LEVELS)}"
        )
    return labels.to_numpy(dtype=object)


def decision_columns(predictions: pd.DataFrame, actions: dict[str, dict[str, str]] | None = None) -> pd.DataFrame:
    """``value_at_risk``, ``retention_priority`` and ``next_action`` for a predictions frame with
    ``customer_id``, ``clv``, ``quadrant``, ``churn_probability`` and ``churn_risk``; same index."""
    missing = [c for c in ("customer_id", "clv", "quadrant", "churn_probability", "churn_risk") if c not in predictions]
    if missing:
        raise CrmvalueError(f"decisions: the predictions have no column {missing[0]!r}")
    risk = value_at_risk(predictions["churn_probability"], predictions["clv"], predictions["customer_id"])
    return pd.DataFrame(
        {
            "value_at_risk": risk,
            "retention_priority": retention_priority(risk, predictions["clv"], predictions["customer_id"]),
            "next_action": next_action(predictions["quadrant"], predictions["churn_risk"], actions),
        },
        index=predictions.index,
    )
