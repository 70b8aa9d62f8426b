"""Rows of the boosted value model: features at a cut-off from the purchases up to it, the revenue label after it.

Every feature of a row at cut-off ``c`` uses only purchase days on or before ``c``, and so do the BTYD
parameters behind its BTYD features: BG/NBD and Gamma-Gamma are fitted at each cut-off on that cut-off's
RFM summary alone (two small fits per cut-off, on compressed rows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crmvalue.churn import NO_BGNBD, NOT_FEATURES, ChurnData, bgnbd_params_at, feature_rows
from crmvalue.customer_days import CustomerDays, PurchaseDays, day_number
from crmvalue.errors import CrmvalueError
from crmvalue.features import summarise_days
from crmvalue.models.bgnbd import BetaGeoParams
from crmvalue.models.gamma_gamma import GammaGammaModel, SpendParams, expected_average_value, spend_params_from_dict
from crmvalue.valuegbm.settings import GbmNotEstimable, GbmSettings

log = logging.getLogger("crmvalue")

LABEL = "revenue"  # net revenue in (cutoff, cutoff + horizon_days]
NOT_GBM_FEATURES = frozenset({*NOT_FEATURES, LABEL}) - {"bgnbd_no_purchase"}
SPEND_FEATURES = ("expected_spend", "btyd_revenue")


@dataclass(frozen=True)
class BtydAt:
    """The BTYD fits behind the BTYD features at one cut-off; None where a fit failed (its features are missing)."""

    cutoff: pd.Timestamp
    bgnbd: BetaGeoParams | None
    spend: SpendParams | None

    def to_dict(self) -> dict:
        return {
            "cutoff": str(self.cutoff.date()),
            "bgnbd": None if self.bgnbd is None else self.bgnbd.as_dict(),
            "spend": None if self.spend is None else self.spend.as_dict(),
        }

    @classmethod
    def from_dict(cls, state: dict) -> BtydAt:
        return cls(
            pd.Timestamp(state["cutoff"]),
            BetaGeoParams(**state["bgnbd"]) if state["bgnbd"] else None,
            spend_params_from_dict(state["spend"]) if state["spend"] else None,
        )


def training_cutoffs(
    first_day, fit_end, horizon_days: int, step_days: int, min_history_days: int
) -> list[pd.Timestamp]:
    """Every training cut-off for a fit at ``fit_end``, latest first: ``fit_end - horizon - k * step`` back to
    ``first_day + min_history_days``, so that every label window ends by ``fit_end``.

    Refuses (:class:`GbmNotEstimable`) data too short for the held-out cut-off ``fit_end - horizon`` and one
    cut-off whose label window ends by it (``2 * horizon + min_history_days`` days from the first purchase).
    """
    first_day, fit_end = pd.Timestamp(first_day).normalize(), pd.Timestamp(fit_end).normalize()
    earliest = first_day + pd.Timedelta(days=min_history_days)
    needed = 2 * horizon_days + min_history_days
    have = (fit_end - first_day).days
    if have < needed:
        raise GbmNotEstimable(
            f"value gbm: the model needs {needed} days of data up to {fit_end.date()} (2 x {horizon_days}-day "
            f"horizon + min_history_days {min_history_days}); the data have {have} from {first_day.date()}. "
            "Use the BTYD value model (model.value_model: btyd), or shorten the horizon",
            f"the data have {have} days from {first_day.date()} to {fit_end.date()}, the boosted value model "
            f"needs {needed} (2 x {horizon_days}-day horizon + min_history_days {min_history_days})",
        )
    cutoffs = []
    cutoff = fit_end - pd.Timedelta(days=horizon_days)
    while cutoff >= earliest:
        cutoffs.append(cutoff)
        cutoff -= pd.Timedelta(days=step_days)
    return cutoffs


def btyd_at(data: ChurnData, cutoff, settings: GbmSettings) -> BtydAt:
    """BG/NBD and Gamma-Gamma fitted on the RFM summary of ``data`` at ``cutoff``: purchase days on or before it."""
    cutoff = pd.Timestamp(cutoff).normalize()
    bgnbd = bgnbd_params_at(data, cutoff, settings.time_unit, settings.penalizer)
    return BtydAt(cutoff, None if isinstance(bgnbd, str) else bgnbd, spend_params_at(data, cutoff, settings))


def spend_params_at(data: ChurnData, cutoff: pd.Timestamp, settings: GbmSettings) -> SpendParams | None:
    """Gamma-Gamma at ``cutoff``, or None (with a warning) when it fails: its features are then missing."""
    seen = data.day <= day_number(cutoff)
    if not seen.any():
        return None
    days = PurchaseDays(data.ids, data.customer[seen], data.day[seen], data.amount[seen], 0)
    rfm = summarise_days(days, cutoff, settings.time_unit)
    positive = days.amount[days.amount > 0]
    mean_spend = float(positive.mean()) if len(positive) else None
    try:
        model = GammaGammaModel(settings.gamma_gamma_penalizer)
        return model.fit(rfm["frequency"], rfm["monetary_value"], mean_spend=mean_spend).params_
    except (CrmvalueError, ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("cut-off %s: Gamma-Gamma features left missing (%s)", cutoff.date(), message)
        return None


def cutoff_rows(
    data: ChurnData, cutoff, horizon_days: int, settings: GbmSettings, btyd: BtydAt | None = None
) -> pd.DataFrame:
    """One row per customer with a purchase on or before ``cutoff``: the churn model's features
    (:func:`crmvalue.churn.feature_rows`: RFM, tenure, gaps, windowed purchases and revenue, basket, BG/NBD
    ``p_alive``, ``expected_purchases`` over the horizon and ``bgnbd_no_purchase``) and the Gamma-Gamma
    ``expected_spend`` and ``btyd_revenue`` = ``expected_purchases x expected_spend``.

    ``btyd`` gives the BTYD fits (e.g. a trained model's at its fit end); by default they are fitted at the
    cut-off. No label: :func:`add_revenue_label` adds it.
    """
    cutoff = pd.Timestamp(cutoff).normalize()
    btyd = btyd or btyd_at(data, cutoff, settings)
    bgnbd = NO_BGNBD if btyd.bgnbd is None else btyd.bgnbd
    rows = feature_rows(data, cutoff, horizon_days, settings.time_unit, label=False, bgnbd_params=bgnbd)
    return add_spend_features(rows, btyd.spend)


def add_spend_features(rows: pd.DataFrame, spend: SpendParams | None) -> pd.DataFrame:
    """Gamma-Gamma's expected spend per purchase and the BTYD revenue forecast, missing without a spend fit."""
    if spend is None:
        rows["expected_spend"] = np.nan
    else:
        rows["expected_spend"] = expected_average_value(spend, rows["frequency"], rows["monetary_value"])
    rows["btyd_revenue"] = rows["expected_purchases"] * rows["expected_spend"]
    return rows


def revenue_after(days: CustomerDays, customer_ids, cutoff, horizon_days: int) -> np.ndarray:
    """Net revenue of each customer in ``(cutoff, cutoff + horizon_days]``: every customer-day's net amount,
    returns included, as :func:`crmvalue.features.calibration_holdout_summary`'s ``revenue_holdout``."""
    codes = days.ids.get_indexer(pd.Index(customer_ids))
    if (codes < 0).any():
        raise CrmvalueError("value gbm: a customer of the feature rows is not in the transactions")
    c = day_number(cutoff)
    window = (days.day > c) & (days.day <= c + horizon_days)
    total = np.bincount(days.customer[window], weights=days.amount[window], minlength=len(days.ids))
    return total[codes]


def add_revenue_label(rows: pd.DataFrame, days: CustomerDays, cutoff, horizon_days: int) -> pd.DataFrame:
    """The label: revenue in ``(cutoff, cutoff + horizon_days]``, a net return counted as 0 (the model forecasts
    revenue, which is never negative)."""
    rows[LABEL] = np.maximum(revenue_after(days, rows["customer_id"], cutoff, horizon_days), 0.0)
    return rows


def training_rows(
    data: ChurnData, days: CustomerDays, cutoffs: list[pd.Timestamp], horizon_days: int, settings: GbmSettings
) -> pd.DataFrame:
    """Labelled rows at every cut-off (features and BTYD fits from each cut-off's own past)."""
    frames = [add_revenue_label(cutoff_rows(data, c, horizon_days, settings), days, c, horizon_days) for c in cutoffs]
    return pd.concat(frames, ignore_index=True)


def gbm_feature_columns(rows: pd.DataFrame) -> list[str]:
    """The model's input columns: every column of the rows but the cut-off, the id and the label."""
    return [c for c in rows.columns if c not in NOT_GBM_FEATURES]
