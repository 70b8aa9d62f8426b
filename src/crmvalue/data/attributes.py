"""The customer table of the churn model: one row per customer id, every other column an attribute."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from crmvalue.data.files import existing_file, read_file
from crmvalue.data.parse import first_bad, frame_row, parse_customer_ids, shown
from crmvalue.errors import CrmvalueError


def load_customer_attributes(source: str | Path | pd.DataFrame, id_col: str = "customer_id") -> pd.DataFrame:
    """A customer table for the churn model: one row per id, every other column an attribute.

    Ids follow the transactions' rules (text; ``"00012"`` and ``12`` stay distinct). A column
    whose every value parses as a number becomes numeric; any other becomes a pandas
    ``category``, which LightGBM splits on natively. Attributes are taken as known at every
    cut-off, so they must not be recorded after the fact (a "churned on" date would leak the
    label).

    Returns a frame indexed by customer id.
    """
    if isinstance(source, pd.DataFrame):
        raw, name, where = source, "customer table (DataFrame)", frame_row(source)
    else:
        path = existing_file(source)
        raw, where = read_file(path)
        name = str(path)
    if id_col not in raw.columns:
        raise CrmvalueError(
            f"{name}: no customer id column '{id_col}'; the columns are {', '.join(map(str, raw.columns))}"
        )
    ids = parse_customer_ids(raw[id_col].reset_index(drop=True), name, id_col, where)
    duplicated = ids.duplicated().to_numpy()
    if duplicated.any():
        bad = first_bad(duplicated)
        raise CrmvalueError(
            f"{name}: column '{id_col}' repeats the id {shown(ids.iloc[bad])} at {where(bad)}; one row per customer"
        )
    attributes = {}
    for column in raw.columns:
        if column == id_col:
            continue
        values = raw[column].reset_index(drop=True)
        if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
            attributes[str(column)] = values.astype(float)
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().sum() == values.notna().sum():
            attributes[str(column)] = numbers.astype(float)
        else:
            attributes[str(column)] = values.astype(str).where(values.notna()).astype("category")
    if not attributes:
        raise CrmvalueError(f"{name}: no attribute columns besides '{id_col}'")
    table = pd.DataFrame(attributes)  # every column on the table's row positions
    table.index = pd.Index(ids.to_numpy(), name="customer_id")
    return table
