"""Churn feature rows at a cut-off: behaviour up to it, BG/NBD features, the label after it."""

from __future__ import annotations

import logging
from typing import cast

import numpy as np
import pandas as pd

from crmvalue.churn.data import ChurnData, code_range
from crmvalue.customer_days import PurchaseDays
from crmvalue.errors import CrmvalueError
from crmvalue.features import (
    DAYS_PER_UNIT,
    SUMMARY_COLUMNS,
    TimeUnit,
    summarise_days,
)
from crmvalue.models.bgnbd import BetaGeoModel, BetaGeoParams

log = logging.getLogger("crmvalue")

WINDOWS = (30, 90, 180)
NO_BGNBD = "missing"  # feature_rows(bgnbd_params=NO_BGNBD): leave the BG/NBD features missing, fit nothing


# --------------------------------------------------------------------------- the baseline formula


def bgnbd_no_purchase_probability(params: BetaGeoParams, t, frequency, recency, T) -> np.ndarray:
    """BG/NBD probability of no purchase in ``(T, T + t]``: the model's own
    :meth:`~crmvalue.models.bgnbd.BetaGeoParams.no_purchase_probability` (time in the parameters' unit)."""
    return np.asarray(params.no_purchase_probability(t, frequency, recency, T), dtype=float)


# --------------------------------------------------------------------------- rows: features and labels


def bgnbd_params_at(
    data: ChurnData, cutoff, time_unit: TimeUnit = "weeks", penalizer: float = 0.0
) -> BetaGeoParams | str:
    """The BG/NBD fit :func:`feature_rows` makes at ``cutoff`` on every customer of ``data``, or ``NO_BGNBD``
    when it fails; for scoring in chunks with one fit."""
    c = _day(cutoff)
    customer, day, amount = data.customer, data.day, data.amount
    if day.max() > c:  # prepare() usually ends the days at the cut-off already: no copies then
        seen = day <= c
        customer, day, amount = customer[seen], day[seen], amount[seen]
    cutoff = pd.Timestamp(int(c), unit="D")
    rfm = summarise_days(PurchaseDays(data.ids, customer, day, amount, 0), cutoff, time_unit)
    return _fit_bgnbd(rfm["frequency"], rfm["recency"], rfm["T"], penalizer, cutoff)


def _fit_bgnbd(frequency, recency, T, penalizer: float, cutoff: pd.Timestamp) -> BetaGeoParams | str:
    """The BG/NBD features' fit at a cut-off, or ``NO_BGNBD`` (with a warning) when it fails.

    Any failure leaves the features missing, which LightGBM handles: besides the one-line
    ``CrmvalueError`` of a fit that does not converge, a fit that walks to a boundary (an early
    cut-off with few repeat buyers sends a, b -> 0) can end in a raw scipy/numpy error, whose
    kind depends on the CPU's BLAS kernel.
    """
    try:
        # BetaGeoModel's params_ are BetaGeoParams; its base class types them as any purchase model's
        return cast(BetaGeoParams, BetaGeoModel(penalizer).fit(frequency, recency, T).params_)
    except (CrmvalueError, ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("cut-off %s: BG/NBD features left missing (%s)", cutoff.date(), message)
        return NO_BGNBD


SCORE_CHUNK_CUSTOMERS = 500_000  # feature rows of ~30 float columns: ~120 MB per chunk


def score_in_chunks(
    data: ChurnData,
    cutoff,
    horizon_days: int,
    time_unit: TimeUnit,
    bgnbd_params: BetaGeoParams | str,
    predict,
    chunk_customers: int = SCORE_CHUNK_CUSTOMERS,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """``predict(feature_rows)`` for every customer with a purchase by ``cutoff``, ``chunk_customers`` at a time.

    Every chunk uses the same BG/NBD parameters, so the result does not depend on the chunk size.
    Returns the customer ids, the predictions in their order, and the first few feature rows.
    """
    ids, scores, example = [], [], None
    for start in range(0, len(data.ids), chunk_customers):
        part = code_range(data, start, min(start + chunk_customers, len(data.ids)))
        if not (part.day <= _day(cutoff)).any():
            continue
        rows = feature_rows(part, cutoff, horizon_days, time_unit, label=False, bgnbd_params=bgnbd_params)
        ids.append(rows["customer_id"].to_numpy())
        scores.append(np.asarray(predict(rows), dtype=float))
        if example is None:
            example = rows.head(5)
    if example is None:
        raise CrmvalueError(f"no customer has a purchase on or before the cut-off {pd.Timestamp(cutoff).date()}")
    return np.concatenate(ids), np.concatenate(scores), example


def _day(value) -> int:
    return int(np.datetime64(pd.Timestamp(value).date(), "D").astype(np.int64))


def feature_rows(
    data: ChurnData,
    cutoff,
    horizon_days: int,
    time_unit: TimeUnit = "weeks",
    penalizer: float = 0.0,
    label: bool = True,
    bgnbd_params: BetaGeoParams | str | None = None,
) -> pd.DataFrame:
    """One row per customer acquired by ``cutoff``: features from purchases up to it, and the label.

    Features (every one uses only purchase days on or before the cut-off):

    - ``frequency``, ``recency``, ``T``, ``monetary_value``: the RFM summary at the cut-off, in
      ``time_unit``;
    - ``tenure_days``: days from the first purchase to the cut-off;
    - ``days_since_last``: days from the last purchase to the cut-off;
    - ``gap_mean``, ``gap_std``, ``gap_cv``: mean, standard deviation and coefficient of
      variation of the days between consecutive purchases (missing below 1, 2 and 2 gaps);
    - ``purchases_<w>d``, ``revenue_<w>d``: purchase days and net revenue in the last ``w`` =
      30, 90, 180 days; ``purchases_30_90`` and ``purchases_90_180`` (and the same for revenue)
      are their ratios, the trend (missing when the longer window is empty);
    - ``basket_mean``, ``basket_max``: mean and largest net amount of a purchase day;
    - ``quantity_total``, ``quantity_per_purchase``: when the data have a quantity;
    - ``p_alive``, ``expected_purchases``: BG/NBD fitted on this cut-off's summary alone, the
      latter over ``horizon_days`` (missing if that fit fails); ``bgnbd_params`` gives the
      parameters instead, for scoring with a trained model without refitting. The parameters
      used are in ``frame.attrs["bgnbd_params"]`` (None when the fit failed);
    - the customer attributes, if any.

    The label ``churn`` is 1 when the customer has no purchase day in ``(cutoff, cutoff +
    horizon_days]`` (``label=False`` leaves it out, for scoring). ``label_end`` is the last day
    the label looked at.
    """
    c = _day(cutoff)
    seen = data.day <= c
    customer, day, amount = data.customer[seen], data.day[seen], data.amount[seen]
    n_codes = len(data.ids)
    count = np.bincount(customer, minlength=n_codes)
    codes = np.flatnonzero(count)
    if codes.size == 0:
        raise CrmvalueError(f"no customer has a purchase on or before the cut-off {pd.Timestamp(cutoff).date()}")
    starts = np.searchsorted(customer, codes)  # purchase days are sorted by customer, then day
    ends = np.r_[starts[1:], customer.size]
    n = count[codes].astype(float)
    first = day[starts].astype(float)
    last = day[ends - 1].astype(float)
    total = np.add.reduceat(amount, starts)

    # the RFM summary, exactly as the value model sees it (rows in code order, as ``codes``)
    rfm = summarise_days(PurchaseDays(data.ids, customer, day, amount, 0), pd.Timestamp(int(c), unit="D"), time_unit)
    features = {name: rfm[name].to_numpy() for name in SUMMARY_COLUMNS}
    features.update({"tenure_days": c - first, "days_since_last": c - last})

    # gaps between consecutive purchase days of the same customer
    same = customer[1:] == customer[:-1]
    gap = np.diff(day).astype(float)[same]
    gap_owner = customer[1:][same]
    gaps_n = np.bincount(gap_owner, minlength=n_codes)[codes].astype(float)
    gaps_sum = np.bincount(gap_owner, weights=gap, minlength=n_codes)[codes]
    gaps_sq = np.bincount(gap_owner, weights=gap**2, minlength=n_codes)[codes]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(gaps_n >= 1, gaps_sum / gaps_n, np.nan)
        var = np.where(gaps_n >= 2, (gaps_sq - gaps_n * mean**2) / (gaps_n - 1), np.nan)
        std = np.sqrt(np.maximum(var, 0.0))
        features.update({"gap_mean": mean, "gap_std": std, "gap_cv": std / mean})

        for w in WINDOWS:
            recent = day > c - w
            features[f"purchases_{w}d"] = np.bincount(customer[recent], minlength=n_codes)[codes].astype(float)
            features[f"revenue_{w}d"] = np.bincount(customer[recent], weights=amount[recent], minlength=n_codes)[codes]
        for kind in ("purchases", "revenue"):
            for short, long in ((30, 90), (90, 180)):
                denominator = features[f"{kind}_{long}d"]
                features[f"{kind}_{short}_{long}"] = np.where(
                    denominator != 0, features[f"{kind}_{short}d"] / denominator, np.nan
                )
    features["basket_mean"] = total / n
    features["basket_max"] = np.maximum.reduceat(amount, starts)

    if data.quantity is not None:
        quantity = np.add.reduceat(data.quantity[seen], starts)
        features["quantity_total"] = quantity
        features["quantity_per_purchase"] = quantity / n

    frame = pd.DataFrame(features)
    frame.insert(0, "customer_id", data.ids[codes].to_numpy())
    frame.insert(0, "cutoff", pd.Timestamp(int(c), unit="D"))
    used = _add_bgnbd(frame, horizon_days, time_unit, penalizer, bgnbd_params)
    if data.attributes is not None:
        frame = pd.concat([frame, data.attributes.iloc[codes].reset_index(drop=True)], axis=1)
    if label:
        later = (data.day > c) & (data.day <= c + horizon_days)
        bought = np.bincount(data.customer[later], minlength=n_codes)[codes] > 0
        frame["label_end"] = pd.Timestamp(int(c + horizon_days), unit="D")
        frame["churn"] = (~bought).astype(np.int8)
    frame.attrs["bgnbd_params"] = used
    return frame


def _add_bgnbd(
    frame: pd.DataFrame,
    horizon_days: int,
    time_unit: TimeUnit,
    penalizer: float,
    params: BetaGeoParams | str | None = None,
) -> BetaGeoParams | None:
    """BG/NBD P(alive) and expected purchases from a fit on this cut-off's rows alone (or ``params``);
    returns the parameters used."""
    x, t_x, T_ = frame["frequency"], frame["recency"], frame["T"]
    if params is None:
        params = _fit_bgnbd(x, t_x, T_, penalizer, frame["cutoff"].iloc[0])
    if isinstance(params, str):  # NO_BGNBD, the only string a caller passes
        frame["p_alive"] = np.nan
        frame["expected_purchases"] = np.nan
        frame["bgnbd_no_purchase"] = np.nan
        return None
    horizon = horizon_days / DAYS_PER_UNIT[time_unit]
    frame["p_alive"] = params.p_alive(x, t_x, T_)
    frame["expected_purchases"] = params.expected_purchases(horizon, x, t_x, T_)
    # a baseline, not a feature: the model sees p_alive and expected_purchases already
    frame["bgnbd_no_purchase"] = bgnbd_no_purchase_probability(params, horizon, x, t_x, T_)
    return params


NOT_FEATURES = {"cutoff", "customer_id", "label_end", "churn", "bgnbd_no_purchase"}


def feature_columns(rows: pd.DataFrame) -> list[str]:
    return [c for c in rows.columns if c not in NOT_FEATURES]
