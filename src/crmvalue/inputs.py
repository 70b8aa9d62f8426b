"""The load stage of ``crmvalue train``: the transactions, the two dates and the side tables, checked
before any fit, so that bad input fails in one line and not after minutes of work."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from crmvalue.analyses import segment_columns
from crmvalue.config import ExperimentConfig
from crmvalue.customer_days import CustomerDays, observation_gap_warning
from crmvalue.engine import load_customer_days
from crmvalue.errors import CrmvalueError
from crmvalue.progress import Progress

log = logging.getLogger("crmvalue")


@dataclass
class LoadedData:
    """The load stage's outcome: the netted customer-days, the two dates and the side tables."""

    tx: CustomerDays
    calibration_end: pd.Timestamp
    observation_end: pd.Timestamp
    simulated: bool  # generated from config.data.simulation: the true parameters are known
    attributes: pd.DataFrame | None = None
    interactions: pd.DataFrame | None = None
    churn_skipped: str | None = None  # why the churn stage will not run (churn.enabled: auto)


def resolve_dates(
    config: ExperimentConfig, transactions: pd.DataFrame | CustomerDays, source: str | None = None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Observation end defaults to the last transaction day; calibration end to the span's midpoint."""
    where = f"{source}: " if source else ""
    if isinstance(transactions, CustomerDays):
        first, last = transactions.first_date, transactions.last_date
    else:
        first, last = transactions["date"].min().normalize(), transactions["date"].max().normalize()
    obs_end = pd.Timestamp(config.observation_end) if config.observation_end else last
    if config.calibration_end:
        cal_end = pd.Timestamp(config.calibration_end)
    else:
        cal_end = first + (obs_end - first) / 2
        cal_end = cal_end.normalize()
    if cal_end >= obs_end:
        raise CrmvalueError(f"{where}calibration end {cal_end.date()} must be before observation end {obs_end.date()}")
    if first > cal_end:
        raise CrmvalueError(
            f"{where}no transactions on or before the calibration end {cal_end.date()}; "
            f"the data starts on {first.date()}"
        )
    if config.observation_end:
        gap = observation_gap_warning(last, obs_end)
        if gap:
            log.warning(f"{where}{gap}")
    return cal_end, obs_end


def load_stage(cfg: ExperimentConfig, data: pd.DataFrame | None, progress: Progress) -> LoadedData:
    """Read and check the transactions and the side tables; refuse now what would fail after the fits."""
    with progress.stage(
        "load",
        f"loaded and checked the transactions from {'a DataFrame' if data is not None else cfg.data.source}",
        announce=False,
    ):
        data_is_simulated = data is None and cfg.data.source == "simulated"
        if data_is_simulated:
            from crmvalue.simulate import simulate_from_config

            data = simulate_from_config(cfg.data.simulation)
        tx = load_customer_days(
            data if data is not None else cfg.data.source,
            customer_col=cfg.data.customer_col,
            date_col=cfg.data.date_col,
            amount_col=cfg.data.amount_col,
            quantity_col=cfg.data.quantity_col,
            date_format=cfg.data.date_format,
            engine=cfg.data.engine,
            dayfirst=cfg.data.dayfirst,
            price_col=cfg.data.price_col,
            sep=cfg.data.sep,
            decimal=cfg.data.decimal,
            thousands=cfg.data.thousands,
            encoding=cfg.data.encoding,
            drop_missing_ids=cfg.data.drop_missing_ids,
            allow_future_dates=cfg.data.allow_future_dates,
        )
        data = None  # the netted customer-days below are all the later steps need, not the rows
        frame = tx
        cal_end, obs_end = resolve_dates(cfg, frame, tx.source)
        attributes = interactions = None
        if cfg.data.customers is not None and (cfg.churn.enabled or cfg.analyses.enabled):
            from crmvalue.data import load_customer_attributes

            attributes = load_customer_attributes(cfg.data.customers, cfg.data.customers_id_col)
        if cfg.analyses.enabled and cfg.analyses.interactions is not None:
            from crmvalue.analyses import load_interactions

            a = cfg.analyses
            interactions = load_interactions(
                a.interactions, a.interactions_id_col, a.interactions_date_col, a.interactions_channel_col
            )
        if cfg.analyses.enabled and attributes is not None:
            segment_columns(cfg.analyses.segment_columns, attributes)  # a misnamed column fails now, not after the fits
        if cfg.analyses.enabled and cfg.analyses.crm_value.satisfaction_column is not None:
            column = cfg.analyses.crm_value.satisfaction_column
            if attributes is None or column not in attributes.columns:
                raise CrmvalueError(
                    f"analyses.crm_value.satisfaction_column '{column}' needs a customer table (--customers) "
                    f"with that column{'' if attributes is None else '; its columns are ' + ', '.join(attributes.columns)}"
                )
        churn_skipped = None  # why the churn stage does not run (churn.enabled: auto)
        if cfg.churn.enabled:
            from crmvalue.churn import ChurnNotEstimable, check_history, check_test_window, skip_reason

            # data too short for the churn protocol: refused (--churn) or skipped (auto) now, not after every fit
            try:
                check_test_window(cal_end, obs_end, cfg.horizon_days)
                check_history(frame.first_date, cal_end, cfg.horizon_days, cfg.churn.min_history_days)
            except ChurnNotEstimable as exc:
                if cfg.churn.enabled is True:
                    raise
                churn_skipped = skip_reason(exc)

    return LoadedData(tx, cal_end, obs_end, data_is_simulated, attributes, interactions, churn_skipped)
