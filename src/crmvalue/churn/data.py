"""Churn data: the purchase days of every customer, prepared once for rows at many cut-offs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crmvalue.customer_days import CustomerDays, customer_days, day_number
from crmvalue.errors import CrmvalueError
from crmvalue.features import purchase_day_arrays

log = logging.getLogger("crmvalue")


class ChurnNotEstimable(CrmvalueError):
    """Valid data on which the churn protocol cannot be run: too short for its cut-offs, or labels
    of one class only. ``churn.enabled: auto`` skips the churn stage on it (``reason`` says why);
    ``true`` stops the run with the message."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ChurnData:
    """Transactions prepared once for building rows at many cut-offs."""

    ids: pd.Index  # customer ids by code
    customer: np.ndarray  # code of each purchase day, sorted by code then day
    day: np.ndarray  # int64 days since 1970-01-01
    amount: np.ndarray  # net amount of the purchase day
    quantity: np.ndarray | None  # quantity of the purchase day (sum of its rows), if given
    attributes: pd.DataFrame | None = None  # per-customer attributes, indexed by code; categories as codes
    categories: dict[str, list[str]] = field(default_factory=dict)  # attr_<column> -> its categories, by code

    @property
    def first_day(self) -> pd.Timestamp:
        return pd.Timestamp(int(self.day.min()), unit="D")


def prepare(
    transactions: pd.DataFrame | CustomerDays,
    last_day,
    attributes: pd.DataFrame | None = None,
    categories: dict[str, list[str]] | None = None,
) -> ChurnData:
    """Purchase days of every customer up to ``last_day``, and their attributes by the same codes.

    ``attributes`` is indexed by customer id (see :func:`crmvalue.data.load_customer_attributes`);
    customers without a row get missing values, which LightGBM handles natively. A categorical
    attribute enters as its category code (missing stays missing) and is declared categorical
    to LightGBM, which splits on it natively; numeric codes keep the logged model's input
    schema numeric, and ``categories`` holds the code of each category.

    ``categories`` (``attr_<column>`` -> categories by code) fixes the codes, when scoring new
    data with a model trained on others: a category the model never saw becomes missing.
    """
    last_day = pd.Timestamp(last_day).normalize()
    netted = customer_days(transactions)
    days = purchase_day_arrays(netted, last_day)
    quantity = None
    if netted.quantity is not None:
        # quantity per purchase day (the sum of its rows), in the order of the purchase days
        quantity = netted.quantity[netted.purchase & (netted.day <= day_number(last_day))]
    coded, categories = None, {}
    if attributes is not None:
        matched = days.ids.isin(attributes.index)
        if not matched.any():
            raise CrmvalueError(
                f"churn: no id of the customer table matches a customer of the transactions (first table id "
                f"{attributes.index[0]!r}, first transaction id {days.ids[0]!r}); check the id column and its format"
            )
        if not matched.all():
            log.warning(
                "churn: %d of %d customers have no row in the customer table; their attributes are missing",
                int((~matched).sum()),
                len(matched),
            )
        coded = attributes.reindex(days.ids).add_prefix("attr_")
        coded.index = pd.RangeIndex(len(days.ids))
        fixed = categories or {}
        categories = {}
        for column in coded.columns:
            if isinstance(coded[column].dtype, pd.CategoricalDtype):
                values = coded[column]
                if column in fixed:
                    known = pd.Categorical(values.astype("string"), categories=fixed[column])
                    unseen = values.notna().to_numpy() & (known.codes < 0)
                    if unseen.any():
                        log.warning(
                            "churn: %d customers have a %s value the model never saw (first: %r); scored as missing",
                            int(unseen.sum()),
                            column.removeprefix("attr_"),
                            str(values[unseen].iloc[0]),
                        )
                    values = pd.Series(known, index=coded.index)
                categories[column] = [str(c) for c in values.cat.categories]
                codes = values.cat.codes.to_numpy()
                coded[column] = np.where(codes >= 0, codes, np.nan)
    return ChurnData(days.ids, days.customer, days.day, days.amount, quantity, coded, categories)


def subset(data: ChurnData, codes) -> ChurnData:
    """The customers with codes ``codes`` (sorted, unique) of ``data``, renumbered ``0 .. len(codes) - 1``."""
    codes = np.asarray(codes, dtype=np.int64)
    renumber = np.full(len(data.ids), -1, dtype=np.int64)
    renumber[codes] = np.arange(len(codes))
    mapped = renumber[data.customer]
    keep = mapped >= 0
    attributes = None if data.attributes is None else data.attributes.iloc[codes].reset_index(drop=True)
    return ChurnData(
        data.ids[codes],
        mapped[keep].astype(data.customer.dtype),
        data.day[keep],
        data.amount[keep],
        None if data.quantity is None else data.quantity[keep],
        attributes,
        data.categories,
    )


def code_range(data: ChurnData, start: int, stop: int) -> ChurnData:
    """The customers with codes ``start .. stop - 1``, renumbered from 0: slices, since the days are sorted by code."""
    lo, hi = np.searchsorted(data.customer, [start, stop])
    attributes = None if data.attributes is None else data.attributes.iloc[start:stop].reset_index(drop=True)
    return ChurnData(
        data.ids[start:stop],
        data.customer[lo:hi] - data.customer.dtype.type(start),
        data.day[lo:hi],
        data.amount[lo:hi],
        None if data.quantity is None else data.quantity[lo:hi],
        attributes,
        data.categories,
    )


def sample_customers(data: ChurnData, n: int | None, seed: int) -> ChurnData:
    """At most ``n`` customers of ``data``, drawn at random without replacement (all of them when ``n`` is None
    or not smaller)."""
    if n is None or len(data.ids) <= n:
        return data
    return subset(data, np.sort(np.random.default_rng(seed).choice(len(data.ids), size=n, replace=False)))
