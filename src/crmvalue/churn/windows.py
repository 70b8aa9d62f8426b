"""Rolling cut-offs: the held-out and the purged training cut-offs, and the checks that the data are long enough."""

from __future__ import annotations

import pandas as pd

from crmvalue.churn.data import ChurnData, ChurnNotEstimable
from crmvalue.churn.features import feature_rows
from crmvalue.features import TimeUnit


def rolling_cutoffs(
    first_day, last_label_day, horizon_days: int, step_days: int, min_history_days: int
) -> tuple[pd.Timestamp | None, list[pd.Timestamp]]:
    """The held-out cut-off and the training cut-offs for labels that end by ``last_label_day``.

    The held-out cut-off is ``last_label_day - horizon``; the training cut-offs are
    ``held_out - horizon - k * step`` (latest first), so their label windows end by the held-out
    cut-off (the purge), back to ``first_day + min_history_days``. Either may be missing (None,
    []) when the data are too short.
    """
    first_day, last_label_day = pd.Timestamp(first_day).normalize(), pd.Timestamp(last_label_day).normalize()
    earliest = first_day + pd.Timedelta(days=min_history_days)
    held_out = last_label_day - pd.Timedelta(days=horizon_days)
    if held_out < earliest:
        return None, []
    cutoffs = []
    cutoff = held_out - pd.Timedelta(days=horizon_days)
    while cutoff >= earliest:
        cutoffs.append(cutoff)
        cutoff -= pd.Timedelta(days=step_days)
    return held_out, cutoffs


def check_history(first_day, last_label_day, horizon_days: int, min_history_days: int) -> None:
    """Refuse data too short for one training cut-off and the held-out one before ``last_label_day``.

    That takes ``2 * horizon_days + min_history_days`` days from the first transaction: the
    pipeline checks it against the calibration end before fitting anything.
    """
    first_day, last_label_day = pd.Timestamp(first_day).normalize(), pd.Timestamp(last_label_day).normalize()
    needed = 2 * horizon_days + min_history_days
    have = (last_label_day - first_day).days
    if have < needed:
        raise ChurnNotEstimable(
            f"churn: the model needs {needed} days of data up to {last_label_day.date()} (2 x {horizon_days}-day "
            f"horizon + churn.min_history_days {min_history_days}); the data have {have} from {first_day.date()}. "
            "Move the calibration end later, shorten --horizon-days, or pass --no-churn (churn.enabled: false)",
            f"the data have {have} days from {first_day.date()} to the calibration end {last_label_day.date()}, "
            f"the churn protocol needs {needed} (2 x {horizon_days}-day horizon + min_history_days {min_history_days})",
        )


def check_test_window(calibration_end, observation_end, horizon_days: int) -> None:
    """The test labels need the whole horizon after the calibration end within the observation."""
    calibration_end, observation_end = (
        pd.Timestamp(calibration_end).normalize(),
        pd.Timestamp(observation_end).normalize(),
    )
    if calibration_end + pd.Timedelta(days=horizon_days) > observation_end:
        raise ChurnNotEstimable(
            f"churn: the test label window ({horizon_days} days after the calibration end {calibration_end.date()}) "
            f"runs past the observation end {observation_end.date()}; move the calibration end earlier, "
            "shorten --horizon-days, or pass --no-churn (churn.enabled: false)",
            f"the holdout ({calibration_end.date()} to {observation_end.date()}, "
            f"{(observation_end - calibration_end).days} days) is shorter than the {horizon_days}-day horizon "
            "the churn test labels need",
        )


def training_rows(
    data: ChurnData, last_label_day, cfg, horizon_days: int, time_unit: TimeUnit, penalizer: float
) -> pd.DataFrame:
    """Rows at the held-out cut-off and at every training cut-off, for labels that end by ``last_label_day``."""
    check_history(data.first_day, last_label_day, horizon_days, cfg.min_history_days)
    held_out, cutoffs = rolling_cutoffs(
        data.first_day, last_label_day, horizon_days, cfg.step_days, cfg.min_history_days
    )
    return pd.concat(
        [feature_rows(data, c, horizon_days, time_unit, penalizer) for c in [held_out, *cutoffs]], ignore_index=True
    )
