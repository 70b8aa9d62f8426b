"""What the CRM analyses share: the strict config base, the window and netting helpers, the
column check, and :class:`Analysis`, the declaration of what one analysis adds to a run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from pydantic import BaseModel, ConfigDict

from crmvalue.customer_days import CustomerDays, customer_days
from crmvalue.errors import CrmvalueError
from crmvalue.schema import Column


@dataclass(frozen=True)
class Analysis:
    """One CRM analysis: its ``name``, the per-customer ``columns`` it adds to the predictions (in
    export order), and the artifact paths of the ``tables`` and ``charts`` a training run logs.
    A path with ``<column>`` stands for one file per customer-table column."""

    name: str
    columns: tuple[Column, ...]
    tables: tuple[str, ...]
    charts: tuple[str, ...]


class StrictModel(BaseModel):
    # a misspelt key in a YAML file is an error, not a silently ignored setting
    model_config = ConfigDict(extra="forbid")


def observation_end_day(days: CustomerDays, observation_end) -> pd.Timestamp:
    """The observation end as a calendar day; the last transaction date when None."""
    if observation_end is None:
        return days.last_date
    return pd.Timestamp(observation_end).normalize()


def up_to(frame: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """The rows of ``frame`` dated on or before the calendar day ``end``."""
    return frame[(frame["date"].dt.normalize() <= end).to_numpy()]


def netted_days(transactions: pd.DataFrame | CustomerDays) -> CustomerDays:
    """The netted customer-days of canonical transactions (checked for their columns), or the days themselves."""
    if not isinstance(transactions, CustomerDays):
        require_columns(transactions, ["customer_id", "date", "amount"], "transactions")
    return customer_days(transactions)


def by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    """A per-customer frame indexed by id, whether the id is the index or a ``customer_id`` column."""
    return frame.set_index("customer_id") if "customer_id" in frame.columns else frame


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """A one-line :class:`CrmvalueError` naming the missing columns of ``frame`` and the ones it has."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CrmvalueError(
            f"{what}: missing column {', '.join(map(repr, missing))}; the columns are {', '.join(map(str, frame.columns))}"
        )
