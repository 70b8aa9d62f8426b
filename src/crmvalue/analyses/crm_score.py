"""The CRM value score (seed 000): ``crm_value = α·interaction + β·purchase + γ·satisfaction +
δ·loyalty`` over 0-100 component scores, its grade, and the interactions table it can read."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from crmvalue.analyses.common import Analysis, StrictModel, up_to

# the transactions' own validators, so an interactions file fails with the same messages
from crmvalue.data import existing_file, frame_row, parse_customer_ids, parse_timestamps, read_file
from crmvalue.errors import CrmvalueError
from crmvalue.schema import Column, analysis_table

log = logging.getLogger("crmvalue")

COLUMNS: tuple[Column, ...] = (
    Column("crm_value", "crm_value", "number", "DOUBLE", "weighted CRM value score 0-100"),
    Column("crm_grade", "crm_value", "text", "VARCHAR(8)", "'high', 'medium' or 'low' by the grade boundaries"),
)
ANALYSIS = Analysis("crm_value", COLUMNS, (analysis_table("crm_components"),), ())

CrmComponent = Literal["interaction", "purchase", "satisfaction", "loyalty"]
CRM_COMPONENTS: tuple[CrmComponent, ...] = ("interaction", "purchase", "satisfaction", "loyalty")
DEFAULT_CRM_WEIGHTS: dict[CrmComponent, float] = {
    "interaction": 0.2,
    "purchase": 0.4,
    "satisfaction": 0.2,
    "loyalty": 0.2,
}


class CrmValueConfig(StrictModel):
    """Weights of the CRM value components (seed 000) and the grade boundaries."""

    weights: dict[CrmComponent, float] = Field(
        default=dict(DEFAULT_CRM_WEIGHTS),
        description="alpha, beta, gamma, delta of seed 000; renormalised over present components",
    )
    high_from: float = Field(default=70.0, ge=0, le=100, description="crm_value at or above this is 'high'")
    medium_from: float = Field(
        default=40.0, ge=0, le=100, description="at or above this (and below high_from) 'medium'; below, 'low'"
    )
    loyalty_tenure_weight: float = Field(
        default=0.5, ge=0, le=1, description="loyalty = (1 - w) x repeat-order percentile + w x span percentile"
    )
    satisfaction_column: str | None = Field(
        default=None, description="numeric column of the customer table, rescaled to 0-100"
    )
    satisfaction_scale: tuple[float, float] | None = Field(
        default=None, description="the survey's own [min, max], e.g. [1, 5]; default: the observed min and max"
    )

    @model_validator(mode="after")
    def _check(self) -> CrmValueConfig:
        _check_weights(self.weights, ValueError)
        if self.medium_from > self.high_from:
            raise ValueError(f"medium_from ({self.medium_from}) must not be above high_from ({self.high_from})")
        return self


def _check_weights(weights: dict, error: type[Exception]) -> None:
    unknown = set(weights) - set(CRM_COMPONENTS)
    if unknown:
        raise error(f"unknown CRM value component {', '.join(sorted(unknown))}; use {', '.join(CRM_COMPONENTS)}")
    if any(not np.isfinite(w) or w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
        raise error(f"CRM value weights must be >= 0 with a positive sum, not {weights}")


def percentile_score(values: pd.Series) -> pd.Series:
    """Percentile rank x 100 (mid-rank: share below plus half the share equal), ties equal.

    0 to 100; all customers equal score 50. Missing values stay missing.
    """
    ranks = values.rank(method="average")
    return (ranks - 0.5) / values.notna().sum() * 100.0


def purchase_score(revenue: pd.Series) -> pd.Series:
    """Purchase component: the revenue percentile x 100 (seed 000, 'purchase amount')."""
    return percentile_score(revenue.astype(float)).rename("purchase")


def loyalty_score(measures: pd.DataFrame, tenure_weight: float = 0.5) -> pd.Series:
    """Loyalty component from repeat behaviour (seeds 000, 001: loyalty is repeat purchase):
    ``(1 - tenure_weight)`` x percentile of repeat orders + ``tenure_weight`` x percentile of
    the purchase span, so two customers with equal repeats rank by how long they kept buying."""
    repeats = percentile_score((measures["orders"] - 1).astype(float))
    tenure = percentile_score(measures["span_days"].astype(float))
    return ((1 - tenure_weight) * repeats + tenure_weight * tenure).rename("loyalty")


def load_interactions(
    source: str | Path | pd.DataFrame,
    id_col: str = "customer_id",
    date_col: str = "date",
    channel_col: str | None = "channel",
    date_format: str | None = None,
) -> pd.DataFrame:
    """An interactions table (customer id, timestamp, optional channel), validated like the
    transactions: columns ``customer_id`` (text), ``date`` and ``channel`` when named.
    One-line :class:`CrmvalueError` naming the file, column and first bad row otherwise."""
    if isinstance(source, pd.DataFrame):
        raw, name, where = source.reset_index(drop=True), "interactions (DataFrame)", frame_row(source)
    else:
        path = existing_file(source)
        raw, where = read_file(path)
        name = str(path)
    if len(raw) == 0:
        raise CrmvalueError(f"{name}: no interactions (0 rows)")
    wanted = [id_col, date_col] + ([channel_col] if channel_col else [])
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise CrmvalueError(
            f"{name}: missing column {', '.join(map(repr, missing))}; the columns are {', '.join(map(str, raw.columns))}"
        )
    frame = pd.DataFrame(
        {
            "customer_id": parse_customer_ids(raw[id_col], name, id_col, where),
            "date": parse_timestamps(raw[date_col], name, date_col, date_format, where),
        }
    )
    if channel_col:
        frame["channel"] = raw[channel_col].astype("string").fillna("unknown").astype(object).to_numpy()
    return frame.reset_index(drop=True)


def interaction_score(
    customers: pd.Index,
    interactions: pd.DataFrame | None = None,
    orders: pd.Series | None = None,
    observation_end=None,
) -> pd.Series:
    """Interaction component: percentile of each customer's number of interactions (0 for a
    customer without any), those after ``observation_end`` ignored; without an interactions
    table, the percentile of purchase frequency (``orders``), with a warning."""
    if interactions is None:
        if orders is None:
            raise CrmvalueError("interaction score: pass an interactions table or the orders per customer")
        log.warning("CRM value: no interactions table; the interaction component is purchase frequency")
        return percentile_score(orders.reindex(customers).astype(float)).rename("interaction")
    if observation_end is not None:
        interactions = up_to(interactions, pd.Timestamp(observation_end).normalize())
    counts = interactions.groupby("customer_id").size().reindex(customers, fill_value=0)
    return percentile_score(counts.astype(float)).rename("interaction")


def satisfaction_score(
    values: pd.Series, customers: pd.Index | None = None, scale: tuple[float, float] | None = None
) -> pd.Series:
    """Satisfaction component: a numeric survey column min-max rescaled to 0-100, on the
    survey's own ``scale`` when given (e.g. ``(1, 5)``), else the observed min and max.
    Customers without an answer are missing; observed values all equal without a ``scale``
    carry no information and the component is missing for everybody."""
    if customers is not None:
        values = values.reindex(customers)
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    if numbers.notna().sum() < values.notna().sum():
        raise CrmvalueError(f"satisfaction column '{values.name}': values must be numeric")
    low, high = scale if scale is not None else (numbers.min(), numbers.max())
    if not high > low:
        return pd.Series(np.nan, index=numbers.index, name="satisfaction")
    return ((numbers.clip(low, high) - low) / (high - low) * 100.0).rename("satisfaction")


def crm_components(
    measures: pd.DataFrame,
    interactions: pd.DataFrame | None = None,
    satisfaction: pd.Series | None = None,
    cfg: CrmValueConfig | None = None,
    observation_end=None,
) -> pd.DataFrame:
    """The four components of the CRM value score for the customers of :func:`customer_measures`:
    purchase from ``total_sales``, loyalty from repeats and span, interaction from the
    interactions table (else from orders), satisfaction from ``satisfaction`` (a Series by
    customer id; absent when None)."""
    cfg = cfg or CrmValueConfig()
    index = measures.index
    components = pd.DataFrame(
        {
            "interaction": interaction_score(index, interactions, measures["orders"], observation_end),
            "purchase": purchase_score(measures["total_sales"]),
            "loyalty": loyalty_score(measures, cfg.loyalty_tenure_weight),
        },
        index=index,
    )
    if satisfaction is not None:
        components["satisfaction"] = satisfaction_score(satisfaction, index, cfg.satisfaction_scale)
    return components[[c for c in CRM_COMPONENTS if c in components.columns]]


def crm_value_score(
    components: pd.DataFrame,
    weights: dict[CrmComponent, float] | None = None,
    grades: tuple[float, float] = (70.0, 40.0),
) -> pd.DataFrame:
    """``crm_value = α·interaction + β·purchase + γ·satisfaction + δ·loyalty`` (seed 000) and its grade.

    Each component is a 0-100 score. A component whose column is absent or all missing is
    dropped and the weights of the others are renormalised to sum to one, with a warning; a
    customer missing a component gets the same renormalisation over what they have. The
    weights default to the seed's 0.2, 0.4, 0.2, 0.2. Note: with the seed's scores 80, 90, 85,
    75 the formula gives 16 + 36 + 17 + 15 = 84; the seed prints 83, an arithmetic slip.

    ``grades`` is ``(high_from, medium_from)``: ``crm_grade`` is "high" at or above the first,
    "medium" at or above the second, else "low".
    """
    weights = dict(DEFAULT_CRM_WEIGHTS if weights is None else weights)
    _check_weights(weights, CrmvalueError)
    high_from, medium_from = grades
    if medium_from > high_from:
        raise CrmvalueError(f"CRM grades: medium_from ({medium_from}) must not be above high_from ({high_from})")
    present = [c for c in weights if c in components.columns and components[c].notna().any() and weights[c] > 0]
    dropped = [c for c in weights if c not in present and weights[c] > 0]
    if not present:
        raise CrmvalueError(f"CRM value: none of the components {', '.join(weights)} has any score")
    if dropped:
        total = sum(weights[c] for c in present)
        log.warning(
            "CRM value: no %s score; weights renormalised over %s",
            ", ".join(dropped),
            ", ".join(f"{c} {weights[c] / total:.3g}" for c in present),
        )
    scores = components[present].to_numpy(dtype=float)
    if np.nanmin(scores) < 0 or np.nanmax(scores) > 100:
        raise CrmvalueError("CRM value: component scores must be between 0 and 100")
    w = np.array([weights[c] for c in present])
    known = ~np.isnan(scores)
    partial = (~known).any(axis=1) & known.any(axis=1)
    if partial.any():
        log.warning(
            "CRM value: %d of %d customers miss a component; their weights are renormalised",
            int(partial.sum()),
            len(scores),
        )
    weight_sum = known @ w
    value = np.divide(
        np.where(known, scores, 0.0) @ w, weight_sum, out=np.full(len(scores), np.nan), where=weight_sum > 0
    )
    grade = np.select(  # type: ignore[call-overload]  # default None: an object array, None where no value
        [value >= high_from, value >= medium_from, ~np.isnan(value)], ["high", "medium", "low"], default=None
    )
    return pd.DataFrame({"crm_value": value, "crm_grade": grade.astype(object)}, index=components.index)
