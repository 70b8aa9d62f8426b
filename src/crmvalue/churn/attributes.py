"""The customer-table columns the churn model may use, identifiers left out."""

from __future__ import annotations

import logging

import pandas as pd

from crmvalue.errors import CrmvalueError

log = logging.getLogger("crmvalue")

MAX_IDENTIFIER_CHECK_LEVELS = 20  # a column with more distinct values than this, all different, is an identifier


def feature_attributes(attributes: pd.DataFrame | None, chosen: list[str] | None) -> pd.DataFrame | None:
    """The customer-table columns the churn model may use: those named in ``churn.attribute_columns``, or every
    column except identifiers. A text or integer column whose values are all different (an e-mail, a phone
    number) identifies the customer: as a feature it lets LightGBM memorise customers instead of learning
    behaviour, so it is left out with a warning unless named."""
    if attributes is None:
        return None
    if chosen is not None:
        missing = [c for c in chosen if c not in attributes.columns]
        if missing:
            raise CrmvalueError(
                f"churn.attribute_columns: no column {', '.join(map(repr, missing))} in the customer "
                f"table; its columns are {', '.join(map(str, attributes.columns))}"
            )
        return attributes[list(chosen)]
    keep = []
    for column in attributes.columns:
        values = attributes[column].dropna()
        identifier = (
            not pd.api.types.is_float_dtype(values.dtype)
            and len(values) > MAX_IDENTIFIER_CHECK_LEVELS
            and values.nunique() == len(values)
        )
        if identifier:
            log.warning(
                "churn: customer table column %r is unique per customer (an identifier): not a churn feature "
                "(name it in churn.attribute_columns to force it)",
                column,
            )
        else:
            keep.append(column)
    return attributes[keep]
