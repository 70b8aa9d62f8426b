"""How a source is read: the columns, the CSV dialect and the input policies, in one :class:`ReadOptions`."""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass

from crmvalue.errors import CrmvalueError

_SEPARATOR_NAMES = {"\\t": "\t", "tab": "\t", "TAB": "\t"}
_DELIMITERS = (",", ";", "\t", "|")  # what a header may turn out to be delimited by


@dataclass(frozen=True)
class ReadOptions:
    """How to read transactions: the columns, the CSV dialect and the input policies.

    ``sep`` None is ',' (a tab for .tsv); ``encoding`` None is UTF-8, or UTF-16 / UTF-8 when
    the file starts with that byte-order mark. ``price_col`` makes the amount quantity x price
    and needs ``quantity_col``. ``dayfirst`` settles a date column that fits both a day-first
    and a month-first format (True: day first, False: month first).
    """

    customer_col: str = "customer_id"
    date_col: str = "date"
    amount_col: str = "amount"
    quantity_col: str | None = None
    price_col: str | None = None
    date_format: str | None = None
    dayfirst: bool | None = None
    sep: str | None = None
    decimal: str = "."
    thousands: str | None = None
    encoding: str | None = None
    drop_missing_ids: bool = False
    allow_future_dates: bool = False

    def __post_init__(self) -> None:
        if self.sep is not None:
            sep = _SEPARATOR_NAMES.get(self.sep, self.sep)
            if len(sep) != 1 or sep in '"\r\n':
                raise CrmvalueError(f"--sep must be one character such as ';' or '\\t', not {self.sep!r}")
            object.__setattr__(self, "sep", sep)
        if self.decimal not in (".", ","):
            raise CrmvalueError(f"--decimal must be '.' or ',', not {self.decimal!r}")
        if self.thousands is not None and (
            len(self.thousands) != 1
            or self.thousands.isdigit()
            or self.thousands in "+-eE"
            or self.thousands == self.decimal
        ):
            raise CrmvalueError(
                f"--thousands must be one character other than the decimal mark {self.decimal!r}, "
                f"such as '.', ',', ' ' or \"'\", not {self.thousands!r}"
            )
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise CrmvalueError(
                    f"--encoding: unknown encoding {self.encoding!r}; try utf-8, latin-1, cp1252 or utf-16"
                ) from None
        if self.price_col is not None and self.quantity_col is None:
            raise CrmvalueError("--price-col needs --quantity-col: the amount of an invoice line is quantity x price")

    @property
    def value_col(self) -> str:
        """The column the amount is read from: the amount, or the unit price of invoice lines."""
        return self.price_col or self.amount_col

    @property
    def columns(self) -> list[str]:
        """The columns read, in the order they are checked."""
        return [self.customer_col, self.date_col, self.value_col] + ([self.quantity_col] if self.quantity_col else [])


def _column_flags(options: ReadOptions) -> str:
    if options.price_col:
        return "--customer-col/--date-col/--price-col/--quantity-col"
    return "--customer-col/--date-col/--amount-col"


def missing_columns_error(
    source: str, missing: list[str], have, options: ReadOptions, header: str | None, sep: str | None
) -> CrmvalueError:
    """Missing columns: a header delimited by another character says so; otherwise the column flags."""
    other = other_delimiter(header, sep) if header is not None and sep is not None else None
    if other is not None:
        shown = "a tab" if other == "\t" else repr(other)
        flag = "'\\t'" if other == "\t" else repr(other)
        return CrmvalueError(
            f"{source}: the delimiter looks like {shown}, not {sep!r}: the header is {header!r}; set --sep {flag}"
            + (" (and --decimal ',' if the numbers have decimal commas)" if other == ";" else "")
        )
    names = ", ".join(repr(str(c)) for c in have)
    hint = _column_flags(options)
    if options.price_col is None and options.amount_col in missing:
        hint += "; invoice lines without an amount: --price-col with --quantity-col"
    return CrmvalueError(
        f"{source}: missing column {', '.join(repr(c) for c in missing)}; the columns are {names} (set {hint})"
    )


def other_delimiter(header: str, sep: str) -> str | None:
    """The delimiter a header line splits on best, if it is not ``sep`` and splits it better."""
    fields = {d: len(next(csv.reader([header], delimiter=d))) for d in _DELIMITERS}
    best = max(fields, key=lambda d: fields[d])
    own = fields.get(sep, len(next(csv.reader([header], delimiter=sep))))
    return best if best != sep and fields[best] >= 2 and fields[best] > own else None
