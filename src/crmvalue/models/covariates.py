"""Customer covariates as a numeric design matrix for the models with time-invariant covariates.

Numeric columns are used as they are. Categorical columns (object, string, category or bool)
are coded with one 0/1 indicator per level except the reference level, the first in sorted
order, so each coefficient is the effect of a level relative to the reference; an indicator is
named ``column[level]``. There is no intercept column: the model's own parameters play that part,
which is why a column that does not vary (a category with one level included) is refused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError


def design_matrix(table: pd.DataFrame, columns: list[str], source: str) -> tuple[np.ndarray, list[str]]:
    """The covariates ``columns`` of ``table`` (one row per customer, customer id as index) as an
    ``n x k`` float matrix and its column names.

    Raises a one-line :class:`CrmvalueError` naming ``source`` (where the table came from), the
    column and, for a missing value, the first customer with one; for an absent column (listing the
    columns there are); for a column that does not vary; and for columns that are linearly
    dependent together with the intercept (e.g. indicators of every level of one variable given
    as separate numeric columns).
    """
    missing = [c for c in columns if c not in table.columns]
    if missing:
        available = ", ".join(map(str, table.columns)) or "none"
        raise CrmvalueError(f"{source}: no covariate column {missing[0]!r}; the columns are: {available}")
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for column in columns:
        values = table[column]
        if isinstance(values, pd.DataFrame):
            raise CrmvalueError(f"{source}: the covariate column {column!r} appears more than once")
        block, labels = _code_column(values, column, source)
        blocks.append(block)
        names += labels
    matrix = np.column_stack(blocks) if blocks else np.zeros((len(table), 0))
    if matrix.shape[1] and len(matrix) > matrix.shape[1]:
        centred = matrix - matrix.mean(axis=0)
        if np.linalg.matrix_rank(centred) < matrix.shape[1]:
            raise CrmvalueError(
                f"{source}: the covariates {', '.join(names)} are linearly dependent (with the intercept), "
                "so their effects are not identified; drop one of them"
            )
    return matrix, names


def _code_column(values: pd.Series, column: str, source: str) -> tuple[np.ndarray, list[str]]:
    """One column as its numeric block and names, after the checks every column gets."""
    bad = values.isna().to_numpy()
    if bad.any():
        first = values.index[int(np.argmax(bad))]
        raise CrmvalueError(
            f"{source}: covariate {column!r} is missing for customer {first!r} ({int(bad.sum())} rows in all); "
            "fill it in or drop those customers"
        )
    dtype = values.dtype
    categorical = (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )
    if categorical:
        observed = pd.unique(values.to_numpy(object))
        try:
            levels = sorted(observed)
        except TypeError:  # mixed types: compare as text
            levels = sorted(observed, key=str)
        if len(levels) < 2:
            only = repr(levels[0]) if levels else "none"
            raise CrmvalueError(
                f"{source}: covariate {column!r} has a single level ({only}), so its effect is not "
                "identified beside the model's own parameters; drop it"
            )
        data = values.to_numpy(object)
        block = np.column_stack([data == level for level in levels[1:]]).astype(float)
        return block, [f"{column}[{level}]" for level in levels[1:]]
    if not pd.api.types.is_numeric_dtype(dtype):
        raise CrmvalueError(f"{source}: covariate {column!r} is of type {dtype}, neither numeric nor categorical")
    numbers = values.to_numpy(float)
    infinite = ~np.isfinite(numbers)
    if infinite.any():
        first = values.index[int(np.argmax(infinite))]
        raise CrmvalueError(f"{source}: covariate {column!r} is not finite for customer {first!r}")
    if len(numbers) == 0 or numbers.min() == numbers.max():
        raise CrmvalueError(
            f"{source}: covariate {column!r} does not vary, so its effect is not identified beside the "
            "model's own parameters; drop it"
        )
    return numbers[:, None], [column]
