"""Raw columns into canonical values: customer ids, timestamps and numbers, with the messages that refuse them."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from crmvalue.data.dates import (
    DATE_SHAPES,
    DateResolution,
    ambiguous_dates_error,
    date_error,
    date_order_error,
    resolve_date_format,
    shown_value,
)
from crmvalue.errors import CrmvalueError


def missing_ids_error(source: str, name: str, count: int, at: str, kind: str, hint: bool) -> CrmvalueError:
    tail = " (--drop-missing-ids drops rows without a customer id)" if hint else ""
    return CrmvalueError(f"{source}: column '{name}' has {count} {kind} ids; first at {at}{tail}")


def number_error(
    source: str, name: str, count: int, at: str, value, decimal: str = ".", thousands: str | None = None
) -> CrmvalueError:
    return CrmvalueError(
        f"{source}: column '{name}' has {count} missing or non-numeric values; first at {at}, which "
        f"{shown_value(value)}{_number_hint(value, decimal, thousands)}"
    )


def _number_hint(value, decimal: str, thousands: str | None) -> str:
    """What to set when a number looks written in another convention."""
    text = str(value).strip() if isinstance(value, str) else ""
    if decimal == "." and thousands is None and re.fullmatch(r"[+-]?[0-9]+,[0-9]+", text):
        if re.fullmatch(r"[+-]?[0-9]{1,3}(,[0-9]{3})+", text):
            return " (set --decimal ',' if ',' is the decimal mark, or --thousands ',' if it separates thousands)"
        return " (set --decimal ',' if ',' is the decimal mark)"
    if decimal == "." and thousands is None and re.fullmatch(r"[+-]?[0-9]{1,3}(,[0-9]{3})+[.][0-9]+", text):
        return " (set --thousands ',' if ',' separates thousands)"
    if decimal != "." and "." in text and thousands != ".":
        return f" (with --decimal '{decimal}' a '.' is not a number; set --thousands '.' if it separates thousands)"
    return ""


def shown(value) -> str:
    """``repr`` for a message: ``12``, not numpy 2's ``np.int64(12)``."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def frame_row(df: pd.DataFrame) -> Callable[[int], str]:
    index = df.index

    def where(i: int) -> str:
        return f"row {i} (index {shown(index[i])})"

    return where


def first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


FLOAT_LIKE_ID = r"^([0-9]+)\.0+$"  # "17850.0" -> "17850": the same rule in crmvalue.engine.sql (regexp_replace)


def parse_customer_ids(
    col: pd.Series, source: str, name: str, where: Callable[[int], str], *, drop_hint: bool = False
) -> pd.Series:
    missing = col.isna().to_numpy()
    if col.dtype == object:
        kind = pd.api.types.infer_dtype(col, skipna=True)
        if kind.startswith("mixed"):
            # only on the error path: name the first value whose type differs from the first id's
            types = col[~missing].map(type)
            odd = col[~missing].index[types != types.iloc[0]][0]
            i = col.index.get_loc(odd)
            raise CrmvalueError(
                f"{source}: column '{name}' mixes id types ({', '.join(sorted({t.__name__ for t in types.unique()}))}); "
                f"first {type(col.iloc[i]).__name__} at {where(i)}: {shown(col.iloc[i])}. "
                f"Convert the ids to one type so that e.g. '00012' and 12 are not merged or split by a guess"
            )
        if kind == "floating":
            # Python floats in an object column: the same rule as a float column, 12.0 -> "12"
            col = col.astype("float64")
    if pd.api.types.is_float_dtype(col.dtype):
        fractional = col.to_numpy(dtype=float, na_value=0.0) % 1 != 0
        if fractional.any():
            bad = first_bad(fractional)
            raise CrmvalueError(
                f"{source}: column '{name}' has a non-integer id at {where(bad)}: {shown(col.iloc[bad])}"
            )
        col = col.astype("Int64")
    if missing.any():
        bad = first_bad(missing)
        raise missing_ids_error(source, name, int(missing.sum()), where(bad), "missing", drop_hint)
    ids = col.astype(str).str.strip()
    empty = (ids == "").to_numpy()
    if empty.any():
        bad = first_bad(empty)
        raise missing_ids_error(source, name, int(empty.sum()), where(bad), "empty", drop_hint)
    dotted = ids.str.contains(".", regex=False).to_numpy(dtype=bool)
    if dotted.any():
        ids = ids.copy()
        ids[dotted] = ids[dotted].str.replace(FLOAT_LIKE_ID, r"\1", regex=True)
    return ids.astype(object)


def date_counts(values: pd.Series) -> Callable[[str], int]:
    """How many of ``values`` (distinct, non-empty text) each format reads; computed when asked."""
    cache: dict[str, int] = {}

    def count(fmt: str) -> int:
        if fmt not in cache:
            cache[fmt] = int((~np.isnat(parse_dates(values, fmt))).sum())
        return cache[fmt]

    return count


def parse_dates(values: pd.Series, fmt: str, given: bool = False) -> np.ndarray:
    """Naive UTC ``datetime64[ns]`` of text values under one format (NaT where it does not read)."""
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[ns]")
    mask = values.notna() if given else values.str.fullmatch(DATE_SHAPES[fmt])
    mask = mask.fillna(False).to_numpy(dtype=bool)
    if mask.any():
        # utc=True: a %z format over several offsets raises without it instead of coercing
        out[mask] = _naive_ns(pd.to_datetime(values[mask], format=fmt, errors="coerce", utc=True))
    return out


_NS_RANGE = (np.datetime64("1677-09-22"), np.datetime64("2262-04-11"))  # what datetime64[ns] holds, to the day


def _naive_ns(stamps: pd.Series) -> np.ndarray:
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    values = stamps.to_numpy()
    inside = (values >= _NS_RANGE[0]) & (values < _NS_RANGE[1])
    return np.where(inside, values, np.datetime64("NaT")).astype("datetime64[ns]")


def parse_timestamps(
    col: pd.Series,
    source: str,
    name: str,
    date_format: str | None,
    where: Callable[[int], str],
    dayfirst: bool | None = None,
) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        stamps = _naive_ns(col)
        resolution = DateResolution(None)
    else:
        text = col.astype("string").str.strip()
        codes, uniques = pd.factorize(text)  # each distinct text is parsed once
        values = pd.Series(uniques, dtype="string")
        if date_format:
            resolution = DateResolution(date_format, given=True)
        else:
            present = values[values != ""].reset_index(drop=True)
            resolution = resolve_date_format(
                len(present),
                date_counts(present),
                lambda a, b: bool((parse_dates(present, a) != parse_dates(present, b)).any()),
                dayfirst,
            )
            if resolution.problem in ("ambiguous", "order"):
                raise _date_problem(resolution, values, codes, col, source, name, where, dayfirst)
        assert resolution.format is not None  # a text column is always read with one format
        parsed = parse_dates(values, resolution.format, resolution.given)
        stamps = np.append(parsed, np.datetime64("NaT"))[codes]  # code -1 (missing) is the NaT at the end
    bad = np.isnat(stamps)
    if bad.any():
        i = first_bad(bad)
        raise date_error(source, name, int(bad.sum()), where(i), col.iloc[i], resolution)
    return pd.Series(stamps, index=col.index, dtype="datetime64[ns]")


DATE_EXAMPLES = 3  # rows a date message shows


def _date_problem(
    resolution: DateResolution,
    values: pd.Series,
    codes: np.ndarray,
    col: pd.Series,
    source: str,
    name: str,
    where: Callable[[int], str],
    dayfirst: bool | None,
) -> CrmvalueError:
    """The ambiguity (or wrong --dayfirst) with the first rows that show it."""
    assert resolution.format is not None and resolution.other is not None  # both read every value
    nat = np.datetime64("NaT")
    a = np.append(parse_dates(values, resolution.format), nat)[codes]
    b = np.append(parse_dates(values, resolution.other), nat)[codes]
    if resolution.problem == "ambiguous":
        shows = ~np.isnat(a) & (a != b)
    else:
        shows = ~np.isnat(a) & np.isnat(b)
    examples = [(where(int(i)), str(col.iloc[int(i)]).strip()) for i in np.flatnonzero(shows)[:DATE_EXAMPLES]]
    if resolution.problem == "ambiguous":
        return ambiguous_dates_error(source, name, resolution, examples)
    return date_order_error(source, name, resolution, bool(dayfirst), examples[:1])


def parse_numbers(
    col: pd.Series,
    source: str,
    name: str,
    where: Callable[[int], str],
    decimal: str = ".",
    thousands: str | None = None,
) -> pd.Series:
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        numbers = col.astype("float64")
    else:
        text = col.astype("string").str.strip()
        if thousands is not None:
            text = text.str.replace(thousands, "", regex=False)
        if decimal != ".":
            # with a decimal comma a '.' is neither mark: refuse '1.234' rather than read 1.234
            text = text.mask(text.str.contains(".", regex=False).fillna(False)).str.replace(decimal, ".", regex=False)
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = ~np.isfinite(numbers.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        i = first_bad(bad)
        raise number_error(source, name, int(bad.sum()), where(i), col.iloc[i], decimal, thousands)
    return numbers
