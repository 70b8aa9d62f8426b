"""How customer-table columns become covariate matrices: the coding learnt at training and saved with the value
model, so that ``crmvalue predict`` codes a new customer table exactly as the fit saw it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError
from crmvalue.models.covariates import design_matrix


def customer_rows(table: pd.DataFrame, ids: pd.Index, source: str) -> np.ndarray:
    """The row positions of the customers ``ids`` in ``table``; one missing: a one-line error naming the first."""
    where = table.index.get_indexer(ids)
    if (where < 0).any():
        first = ids[int(np.argmax(where < 0))]
        raise CrmvalueError(
            f"{source}: customer {first!r} of the transactions is not in the customer table "
            f"({int((where < 0).sum())} in all), which holds the covariates; add them"
        )
    return where


@dataclass(frozen=True)
class CovariateCoding:
    """How customer-table columns become the covariate matrices, fixed at training so that ``predict`` codes a new
    table identically (:func:`crmvalue.models.covariates.design_matrix`'s coding): a numeric column as it is, a
    categorical one as a 0/1 indicator per level but the first of ``levels[column]`` (the reference). Saved with
    the model; a level the training data did not have is an error at scoring."""

    purchase: tuple[str, ...]
    dropout: tuple[str, ...]
    levels: dict[str, tuple] = field(default_factory=dict)  # categorical column -> its levels, the reference first
    spend: tuple[str, ...] = ()  # Gamma-Gamma's

    @classmethod
    def learn(cls, table: pd.DataFrame, purchase, dropout, source: str, spend=()) -> CovariateCoding:
        """The coding of ``table`` (the fitted customers' rows), after ``design_matrix``'s checks (missing values,
        a column that does not vary, dependent columns): a one-line :class:`CrmvalueError` naming ``source``."""
        for columns in (purchase, dropout, spend):
            if columns:
                design_matrix(table, list(columns), source)
        levels = {}
        for column in dict.fromkeys([*purchase, *dropout, *spend]):
            values = table[column]
            if not pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
                observed = [v.item() if isinstance(v, np.generic) else v for v in pd.unique(values.to_numpy(object))]
                try:
                    levels[column] = tuple(sorted(observed))
                except TypeError:  # mixed types: compare as text, as design_matrix does
                    levels[column] = tuple(sorted(observed, key=str))
        return cls(tuple(purchase), tuple(dropout), levels, tuple(spend))

    def __str__(self) -> str:
        text = f"purchase: {', '.join(self.purchase) or 'none'}; dropout: {', '.join(self.dropout) or 'none'}"
        return text + (f"; spend: {', '.join(self.spend)}" if self.spend else "")

    @property
    def columns(self) -> list[str]:
        """Every customer-table column the coding reads, once."""
        return list(dict.fromkeys([*self.purchase, *self.dropout, *self.spend]))

    @property
    def purchase_process(self) -> bool:
        """Whether the purchase model has covariates (else only Gamma-Gamma's spend has)."""
        return bool(self.purchase or self.dropout)

    def names(self, role: str) -> list[str]:
        """The coded columns of ``role`` (purchase, dropout or spend): ``age``, ``channel[web]``, ..."""
        columns = {"purchase": self.purchase, "dropout": self.dropout, "spend": self.spend}[role]
        return [n for c in columns for n in ([f"{c}[{v}]" for v in self.levels[c][1:]] if c in self.levels else [c])]

    def matrices(self, table: pd.DataFrame | None, ids: pd.Index, source: str) -> tuple[np.ndarray, np.ndarray]:
        """The purchase and dropout covariates of the customers ``ids`` from ``table`` (indexed by customer id).
        A customer not in the table, a missing value, an unseen level: a one-line error naming ``source``,
        the column and the first customer."""
        zp, zd, _ = self.all_matrices(table, ids, source)
        return zp, zd

    def all_matrices(
        self, table: pd.DataFrame | None, ids: pd.Index, source: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The purchase, dropout and spend covariates of the customers ``ids``, as :meth:`matrices`."""
        if table is None:
            raise CrmvalueError(f"the model uses covariates of the customer table ({self}): pass it (--customers)")
        absent = [c for c in self.columns if c not in table.columns]
        if absent:
            raise CrmvalueError(
                f"{source}: no covariate column {absent[0]!r}; the model was trained with the covariates "
                f"{', '.join(self.columns)}"
            )
        where = customer_rows(table, ids, source)
        coded = {c: self._code(table[c].iloc[where], c, source) for c in self.columns}

        def stack(columns: tuple[str, ...]) -> np.ndarray:
            return np.column_stack([coded[c] for c in columns]) if columns else np.zeros((len(ids), 0))

        return stack(self.purchase), stack(self.dropout), stack(self.spend)

    def _code(self, values: pd.Series, column: str, source: str) -> np.ndarray:
        bad = values.isna().to_numpy()
        if bad.any():
            raise CrmvalueError(
                f"{source}: covariate {column!r} is missing for customer {values.index[int(np.argmax(bad))]!r} "
                f"({int(bad.sum())} rows in all); fill it in"
            )
        if column not in self.levels:
            if not pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
                raise CrmvalueError(f"{source}: covariate {column!r} is not numeric, as it was in training")
            numbers = values.to_numpy(float)
            if not np.isfinite(numbers).all():
                first = values.index[int(np.argmax(~np.isfinite(numbers)))]
                raise CrmvalueError(f"{source}: covariate {column!r} is not finite for customer {first!r}")
            return numbers[:, None]
        levels = self.levels[column]
        codes = pd.Index(levels, dtype=object).get_indexer(values.to_numpy(object))
        if (codes < 0).any():
            at = int(np.argmax(codes < 0))
            raise CrmvalueError(
                f"{source}: covariate {column!r} has the level {values.iloc[at]!r} (customer {values.index[at]!r}) "
                f"that the model was not trained with; it knows {', '.join(map(repr, levels))}"
            )
        return (codes[:, None] == np.arange(1, len(levels))).astype(float)

    def to_dict(self) -> dict:
        data = {
            "purchase": list(self.purchase),
            "dropout": list(self.dropout),
            "levels": {k: list(v) for k, v in self.levels.items()},
        }
        if self.spend:  # a model saved without spend covariates keeps its file as before
            data["spend"] = list(self.spend)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CovariateCoding:
        levels = {k: tuple(v) for k, v in data["levels"].items()}
        return cls(tuple(data["purchase"]), tuple(data["dropout"]), levels, tuple(data.get("spend", ())))
