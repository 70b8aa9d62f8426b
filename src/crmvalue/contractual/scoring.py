"""The fitted contractual model as plain numbers, and the one scoring function that ``train`` and ``predict`` share.

Per subscriber active at the observation end (started by then, no end or an end after it):

- ``tenure``: renewals made so far (:mod:`~crmvalue.contractual.periods`); she is in period ``tenure + 1``;
- ``p_active_next``: P(she renews at her next anniversary) = ``(beta + tenure) / (alpha + beta + tenure)``;
- ``derl``: discounted expected residual lifetime, the expected number of further renewals (payments) counting
  the next in full, each later one discounted by the period rate (Fader and Hardie 2010, :meth:`derl
  <crmvalue.models.sbg.ShiftedBetaGeometricParams.derl>`);
- ``discounted_residual_value``: ``fee x derl`` (with a fee column): the value of her future payments at her next
  renewal; the period she is in has been paid and is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crmvalue.contractual.periods import active_at, cohort_labels, durations_at, period_discount
from crmvalue.errors import CrmvalueError
from crmvalue.models.sbg import ShiftedBetaGeometricModel, ShiftedBetaGeometricParams

MODEL_NAME = "sbg"
MODEL_FILE = "sbg_model.json"  # the run's artifact and models/<name>/sbg_model.json
SCORE_COLUMNS = ["customer_id", "cohort", "start_date", "tenure", "p_active_next", "derl", "discounted_residual_value"]


@dataclass(frozen=True)
class ContractualModel:
    """What scoring needs, serialisable to JSON: the sBG's parameters, the period, the discount rates."""

    params: ShiftedBetaGeometricParams
    period: str
    monthly_discount_rate: float
    log_param_covariance: tuple[tuple[float, float], tuple[float, float]] | None = None

    @classmethod
    def from_fit(cls, model: ShiftedBetaGeometricModel, period: str, monthly_discount_rate: float):
        cov = np.asarray(model.log_param_covariance_, float)
        return cls(model.params_, period, float(monthly_discount_rate), (tuple(cov[0]), tuple(cov[1])))

    @property
    def discount(self) -> float:
        """The discount rate per period."""
        return period_discount(self.monthly_discount_rate, self.period)

    def to_dict(self) -> dict:
        return {
            "model": MODEL_NAME,
            "params": self.params.as_dict(),
            "period": self.period,
            "monthly_discount_rate": self.monthly_discount_rate,
            "period_discount_rate": self.discount,
            "log_param_covariance": None
            if self.log_param_covariance is None
            else list(map(list, self.log_param_covariance)),
        }

    @classmethod
    def from_dict(cls, state: dict) -> ContractualModel:
        if state.get("model") != MODEL_NAME:
            raise CrmvalueError(f"not a saved sBG model (model: {state.get('model')!r})")
        cov = state.get("log_param_covariance")
        return cls(
            ShiftedBetaGeometricParams(**{k: float(v) for k, v in state["params"].items()}),
            state["period"],
            float(state["monthly_discount_rate"]),
            None if cov is None else (tuple(cov[0]), tuple(cov[1])),
        )

    def score(self, frame: pd.DataFrame, obs_end: pd.Timestamp) -> pd.DataFrame:
        """:data:`SCORE_COLUMNS` for the subscribers active at ``obs_end`` (``discounted_residual_value`` only
        when ``frame`` has a ``fee``), in the order of ``frame``."""
        d = self.discount
        if d == 0 and self.params.alpha <= 1:
            raise CrmvalueError(
                f"sBG alpha {self.params.alpha:.3f} <= 1 and clv.discount_rate 0: the expected residual lifetime is "
                "infinite; set a positive clv.discount_rate"
            )
        subs = frame[active_at(frame, obs_end)]
        tenure = durations_at(subs, obs_end, self.period)["duration"].to_numpy()
        derl = self.params.derl(tenure, d)
        out = pd.DataFrame(
            {
                "customer_id": subs["customer_id"].to_numpy(),
                "cohort": cohort_labels(subs["start"], self.period),
                "start_date": subs["start"].dt.strftime("%Y-%m-%d").to_numpy(),
                "tenure": tenure.astype(np.int64),
                "p_active_next": self.params.p_active_next(tenure),
                "derl": derl,
            }
        )
        if "fee" in subs.columns:
            out["discounted_residual_value"] = subs["fee"].to_numpy(float) * derl
        return out.reset_index(drop=True)
