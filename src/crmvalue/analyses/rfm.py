"""RFM scores and named segments (seeds 003, 004): R, F and M in quintiles, and a mapping of the
125 score combinations to segment names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from crmvalue.analyses.common import Analysis, StrictModel, by_customer, require_columns
from crmvalue.errors import CrmvalueError
from crmvalue.schema import PLOT_RFM_SEGMENTS, Column, analysis_table

COLUMNS: tuple[Column, ...] = (
    Column("rfm_r", "rfm", "integer", "SMALLINT", "recency score 1-5, 5 the most recent"),
    Column("rfm_f", "rfm", "integer", "SMALLINT", "frequency score 1-5, 5 the most frequent"),
    Column("rfm_m", "rfm", "integer", "SMALLINT", "monetary score 1-5, 5 the highest spend"),
    Column("rfm_score", "rfm", "text", "VARCHAR(3)", "the three scores as text, e.g. '545'"),
    Column("rfm_segment", "rfm", "text", "TEXT", "the named segment of the scores"),
)
ANALYSIS = Analysis("rfm", COLUMNS, (analysis_table("rfm_segments"),), (PLOT_RFM_SEGMENTS,))


class RfmSegmentRule(StrictModel):
    """A named box of scores: every customer whose R, F and M fall in the closed ranges."""

    name: str
    r: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)

    @field_validator("r", "f", "m")
    @classmethod
    def _score_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high <= 5:
            raise ValueError(f"score range {list(value)} must be [low, high] with 1 <= low <= high <= 5")
        return value


# The classic R x F grid of RFM practice (M is left free; a rule may restrict it). Every one of
# the 125 score combinations is in exactly one box; :class:`RfmConfig` checks a custom mapping.
DEFAULT_RFM_SEGMENTS: tuple[RfmSegmentRule, ...] = (
    RfmSegmentRule(name="champions", r=(5, 5), f=(4, 5)),
    RfmSegmentRule(name="loyal", r=(3, 4), f=(4, 5)),
    RfmSegmentRule(name="potential loyalists", r=(4, 5), f=(2, 3)),
    RfmSegmentRule(name="new", r=(5, 5), f=(1, 1)),
    RfmSegmentRule(name="promising", r=(4, 4), f=(1, 1)),
    RfmSegmentRule(name="need attention", r=(3, 3), f=(3, 3)),
    RfmSegmentRule(name="about to sleep", r=(3, 3), f=(1, 2)),
    RfmSegmentRule(name="at risk", r=(1, 2), f=(3, 4)),
    RfmSegmentRule(name="can't lose", r=(1, 2), f=(5, 5)),
    RfmSegmentRule(name="hibernating", r=(2, 2), f=(1, 2)),
    RfmSegmentRule(name="lost", r=(1, 1), f=(1, 2)),
)


def rfm_segment_lookup(rules: Sequence[RfmSegmentRule | dict]) -> tuple[np.ndarray, list[str]]:
    """Segment number of each of the 125 score combinations, at ``25*(r-1) + 5*(f-1) + (m-1)``.

    Raises ``ValueError`` naming the first combination that no rule or two rules cover.
    """
    checked = [RfmSegmentRule.model_validate(rule) for rule in rules]
    r, f, m = (g.ravel() for g in np.meshgrid(np.arange(1, 6), np.arange(1, 6), np.arange(1, 6), indexing="ij"))
    hits = np.array(
        [(r >= x.r[0]) & (r <= x.r[1]) & (f >= x.f[0]) & (f <= x.f[1]) & (m >= x.m[0]) & (m <= x.m[1]) for x in checked]
    ).reshape(len(checked), 125)
    count = hits.sum(axis=0)
    if (count != 1).any():
        i = int(np.flatnonzero(count != 1)[0])
        combo = f"{r[i]}{f[i]}{m[i]}"
        if count[i] == 0:
            raise ValueError(f"RFM score {combo} is in no segment; every score combination needs exactly one")
        both = [checked[j].name for j in np.flatnonzero(hits[:, i])]
        raise ValueError(f"RFM score {combo} is in several segments ({', '.join(both)}); segments must not overlap")
    return hits.argmax(axis=0), [rule.name for rule in checked]


class RfmConfig(StrictModel):
    """RFM scoring (seed 003): the basis of R, F and M, and the named segments."""

    basis: Literal["summary", "raw"] = Field(
        default="summary",
        description="'summary': R = T - recency, F = frequency, M = monetary_value of the Backbone summary; "
        "'raw': days since the last purchase, number of orders, total spend",
    )
    segments: list[RfmSegmentRule] = Field(
        default=list(DEFAULT_RFM_SEGMENTS),
        description="named boxes of (R, F, M) scores; each combination in exactly one",
    )

    @model_validator(mode="after")
    def _segments_cover_every_score(self) -> RfmConfig:
        rfm_segment_lookup(self.segments)
        return self


def quintile_scores(values, higher_is_better: bool = True) -> np.ndarray:
    """Scores 1-5 by quintiles, equal for equal values: ``1 + floor(5 * share strictly worse)``.

    A score k means the customer beats at least (k-1)/5 of all customers. Without ties the
    five groups are equal (to one customer); a value shared by many customers is scored by
    the share below the whole tied block, so when most customers have frequency 0 they all
    get F = 1 and the scores stay meaningful instead of failing as quantile edges would.
    """
    x = np.asarray(values, dtype=float)
    if np.isnan(x).any():
        raise CrmvalueError(f"RFM scores: {int(np.isnan(x).sum())} missing values; score only complete rows")
    if len(x) == 0:
        return np.array([], dtype=np.int64)
    worse = pd.Series(x).rank(method="min", ascending=higher_is_better).to_numpy() - 1
    return (1 + np.floor(5 * worse / len(x))).astype(np.int64)


_RFM_CODES = np.array([f"{r}{f}{m}" for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)], dtype=object)


def rfm_scores(
    recency_days,
    frequency,
    monetary,
    segments: Sequence[RfmSegmentRule | dict] = DEFAULT_RFM_SEGMENTS,
) -> pd.DataFrame:
    """R, F and M scores 1-5, ``rfm_score`` (e.g. ``"545"``), ``rfm_total`` and ``rfm_segment``.

    ``recency_days`` is the time since the last purchase (less is better, so more recent means
    a higher R; any time unit ranks the same), ``frequency`` and ``monetary`` more is better.
    Scoring is :func:`quintile_scores` (seed 003: relative grades, R, F and M each in five).
    ``segments`` maps every score combination to exactly one name (:data:`DEFAULT_RFM_SEGMENTS`).
    The index is that of ``recency_days`` when it is a Series.
    """
    try:
        lookup, names = rfm_segment_lookup(segments)
    except ValueError as exc:
        raise CrmvalueError(str(exc).splitlines()[0]) from None
    lengths = {len(recency_days), len(frequency), len(monetary)}
    if len(lengths) > 1:
        raise CrmvalueError(f"RFM scores: recency, frequency and monetary have different lengths {sorted(lengths)}")
    index = recency_days.index if isinstance(recency_days, pd.Series) else pd.RangeIndex(len(recency_days))
    r = quintile_scores(recency_days, higher_is_better=False)
    f = quintile_scores(frequency)
    m = quintile_scores(monetary)
    cell = 25 * (r - 1) + 5 * (f - 1) + (m - 1)  # 0..124
    segment = np.asarray(names, dtype=object)[lookup[cell]]
    return pd.DataFrame(
        {
            "rfm_r": r,
            "rfm_f": f,
            "rfm_m": m,
            "rfm_score": _RFM_CODES[cell],  # a lookup of the 125 codes, not millions of int-to-text conversions
            "rfm_total": r + f + m,
            "rfm_segment": segment,
        },
        index=index,
    )


def customer_rfm(customers: pd.DataFrame, cfg: RfmConfig | None = None) -> pd.DataFrame:
    """:func:`rfm_scores` on the basis of ``cfg``.

    ``customers`` holds ``frequency, recency, T, monetary_value`` (the Backbone summary or the
    predictions) for the ``summary`` basis, and the :func:`customer_measures` columns
    ``inactivity_days, orders, total_sales`` for ``raw``.
    """
    cfg = cfg or RfmConfig()
    frame = by_customer(customers)
    if cfg.basis == "summary":
        require_columns(frame, ["frequency", "recency", "T", "monetary_value"], "RFM scores on the summary basis")
        # T - recency in weeks carries float noise (1e-13) that would split customers who last
        # bought on the same day across a quintile cut
        recency = (frame["T"] - frame["recency"]).round(9)
        frequency, monetary = frame["frequency"], frame["monetary_value"]
    else:
        require_columns(frame, ["inactivity_days", "orders", "total_sales"], "RFM scores on the raw basis")
        recency, frequency, monetary = frame["inactivity_days"], frame["orders"], frame["total_sales"]
    return rfm_scores(recency, frequency, monetary, cfg.segments)


def rfm_segment_table(
    rfm: pd.DataFrame, segments: Sequence[RfmSegmentRule | dict] = DEFAULT_RFM_SEGMENTS
) -> pd.DataFrame:
    """Customers, share and mean R, F, M per segment, in the mapping's order (empty ones too)."""
    names = list(dict.fromkeys(RfmSegmentRule.model_validate(rule).name for rule in segments))  # a name may span rules
    grouped = rfm.groupby("rfm_segment")
    table = pd.DataFrame(
        {
            "customers": grouped.size(),
            "mean_r": grouped["rfm_r"].mean(),
            "mean_f": grouped["rfm_f"].mean(),
            "mean_m": grouped["rfm_m"].mean(),
        }
    ).reindex(names)
    table["customers"] = table["customers"].fillna(0).astype(int)
    table.insert(1, "share", table["customers"] / max(len(rfm), 1))
    table.index.name = "rfm_segment"
    return table
