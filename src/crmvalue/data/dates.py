"""Date columns: the formats a column may have, how one is chosen, and dates that cannot be right."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError

ISO_8601 = "ISO8601"
# The formats a non-ISO column may have; the one that reads every non-empty value is used.
# Day-first before month-first: the order only decides which one a message names first.
_DATE_PARTS = ("%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y")
DATE_FORMATS = tuple(d + t for d in _DATE_PARTS for t in ("", " %H:%M", " %H:%M:%S")) + ("%Y%m%d",)

# Each format is tried only on values of its exact shape, in both engines: pandas' and DuckDB's
# parsers disagree outside it ('20210104' as ISO, '2021-01-04T24:00', 2-digit years under %Y).
# Years are 1900-2099: a timestamp outside that is a typo, and pandas cannot hold most of them.
_YEAR = "(19|20)[0-9]{2}"
_FIELDS = {
    "%Y": _YEAR,
    "%m": "(0?[1-9]|1[0-2])",
    "%d": "(0?[1-9]|[12][0-9]|3[01])",
    "%H": "([01]?[0-9]|2[0-3])",
    "%M": "[0-5][0-9]",
    "%S": "[0-5][0-9]",
}
_ISO_SHAPE = (
    _YEAR + "-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    "([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{1,9})?)?(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?)?"
)


def _shape(fmt: str) -> str:
    if fmt == ISO_8601:
        return _ISO_SHAPE
    if fmt == "%Y%m%d":
        return _YEAR + "(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])"
    return "".join(_FIELDS.get(token, token if token == " " else f"[{token}]") for token in re.findall(r"%.|[^%]", fmt))


DATE_SHAPES = {fmt: _shape(fmt) for fmt in (ISO_8601, *DATE_FORMATS)}

FUTURE_LEEWAY_DAYS = 1  # "after today" is after today's UTC date plus a day: a shop east of UTC is ahead
LATE_GAP_DAYS = 365  # a gap before the last dates longer than this (and than the data before it) is a typo
LATE_TAIL_SHARE = 0.1  # ... when at most this share of the rows lies after it, more thinly spread than before it


def _order(fmt: str | None) -> str | None:
    """``"day"`` for day-first formats, ``"month"`` for month-first ones, None when the year leads."""
    if fmt is None or fmt.startswith("%Y") or fmt == ISO_8601:
        return None
    return "day" if fmt.index("%d") < fmt.index("%m") else "month"


def _twin(fmt: str) -> str:
    """The format with day and month swapped."""
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


@dataclass(frozen=True)
class DateResolution:
    """The one format a date column is read with, or why there is none."""

    format: str | None  # ISO_8601, one of DATE_FORMATS, the given format; None for timestamp columns
    given: bool = False
    problem: str | None = None  # "nofit": no format reads every value (format: the one that reads most);
    # "ambiguous": format and other both read every value, differently; "order": only format fits, not dayfirst
    other: str | None = None


def resolve_date_format(
    n_values: int,
    count: Callable[[str], int],
    differ: Callable[[str, str], bool],
    dayfirst: bool | None = None,
) -> DateResolution:
    """The format of a text column, from its ``n_values`` distinct non-empty values.

    ``count(fmt)`` is how many of those values ``fmt`` reads, ``differ(a, b)`` whether two
    formats that both read every value read any of them as different dates. Both engines
    answer these on the same distinct trimmed values, so they decide alike.
    """
    if n_values == 0 or count(ISO_8601) == n_values:
        return DateResolution(ISO_8601)
    whole = [fmt for fmt in DATE_FORMATS if count(fmt) == n_values]
    if dayfirst is not None:
        wanted = "day" if dayfirst else "month"
        allowed = [fmt for fmt in whole if _order(fmt) in (None, wanted)]
        if whole and not allowed:
            return DateResolution(whole[0], problem="order", other=_twin(whole[0]))
        whole = allowed
    if not whole:
        best = max((ISO_8601, *DATE_FORMATS), key=count)  # the first of the most
        return DateResolution(best, problem="nofit")
    for other in whole[1:]:
        if differ(whole[0], other):
            return DateResolution(whole[0], problem="ambiguous", other=other)
    return DateResolution(whole[0])


def shown_value(value) -> str:
    return "is missing" if value is None or (not isinstance(value, str) and pd.isna(value)) else f"is {str(value)!r}"


def date_error(source: str, name: str, count: int, at: str, value, resolution: DateResolution) -> CrmvalueError:
    what = shown_value(value)
    hint = f" (expected format {resolution.format})" if resolution.given else " (set --date-format)"
    if resolution.problem == "nofit" and resolution.format != ISO_8601:
        return CrmvalueError(
            f"{source}: column '{name}' fits no single date format: {count} timestamps do not fit "
            f"{resolution.format}, the format that fits the most; first at {at}, which {what}{hint}"
        )
    return CrmvalueError(
        f"{source}: column '{name}' has {count} unparseable timestamps; first at {at}, which {what}{hint}"
    )


def ambiguous_dates_error(source: str, name: str, resolution: DateResolution, examples) -> CrmvalueError:
    a, b = resolution.format, resolution.other
    shown = ", ".join(f"{at} {str(value)!r}" for at, value in examples)
    return CrmvalueError(
        f"{source}: column '{name}' is ambiguous: every date fits both {a} ({_order(a)} first) and {b} "
        f"({_order(b)} first), which read them differently, first at {shown}; "
        "set --dayfirst or --monthfirst (or --date-format)"
    )


def date_order_error(source: str, name: str, resolution: DateResolution, dayfirst: bool, examples) -> CrmvalueError:
    shown = ", ".join(f"{at} {str(value)!r}" for at, value in examples)
    flag = "--dayfirst" if dayfirst else "--monthfirst"
    return CrmvalueError(
        f"{source}: column '{name}' is not {'day' if dayfirst else 'month'} first: only {resolution.format} "
        f"({_order(resolution.format)} first) reads every date, and {resolution.other} fails first at {shown}; "
        f"drop {flag}, or set --date-format"
    )


# ---- dates that cannot be right -------------------------------------------------------------------


@dataclass(frozen=True)
class LateDates:
    """Days after ``last_good`` are dated after today or long after the rest of the data."""

    last_good: int  # days since 1970-01-01
    reason: str  # "future" or "gap"
    detail: str  # for the message


def day_text(day: int) -> str:
    return str(np.datetime64(int(day), "D"))


def today_utc() -> int:
    return int(np.datetime64(dt.datetime.now(dt.UTC).date(), "D").astype(np.int64))


def late_dates_cutoff(days: np.ndarray, rows: np.ndarray, today: int | None = None) -> LateDates | None:
    """Where implausible dates start, from the sorted distinct days and the rows on each.

    Two rules, the first day that breaks either starts the implausible tail:

    - *after today*: a day later than today's UTC date plus ``FUTURE_LEEWAY_DAYS``;
    - *long after the rest*: a gap between consecutive distinct days of more than
      ``LATE_GAP_DAYS`` days that is also longer than the span of the data before it, followed
      by at most ``LATE_TAIL_SHARE`` of the rows, spread more thinly (fewer rows per day of their
      span) than the rows before the gap: three rows in 2031-2032 after 2021-2023, not a shop
      that reopened after a long pause and went on selling.
    """
    today = today_utc() if today is None else today
    days = np.asarray(days, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    if len(days) == 0:
        return None
    found = None
    if len(days) > 1:
        gaps = np.diff(days)
        before = np.cumsum(rows)[:-1]
        after = rows.sum() - before
        span_before = days[:-1] - days[0] + 1
        span_after = days[-1] - days[1:] + 1
        tail = (
            (gaps > LATE_GAP_DAYS)
            & (gaps > days[:-1] - days[0])
            & (after <= LATE_TAIL_SHARE * (after + before))
            & (after * span_before < before * span_after)
        )  # thinner: after/span_after < before/span_before
        if tail.any():
            i = int(np.flatnonzero(tail)[0])
            found = LateDates(
                int(days[i]),
                "gap",
                f"long after the rest of the data: from {day_text(days[i + 1])} on, {int(gaps[i])} days after the "
                f"previous date {day_text(days[i])} (more than {LATE_GAP_DAYS} days and more than the "
                f"{int(days[i] - days[0])} days the data before it span)",
            )
    future = today + FUTURE_LEEWAY_DAYS
    if days[-1] > future and (found is None or future < found.last_good):
        found = LateDates(future, "future", f"after today ({day_text(today)})")
    return found


def rows_text(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def late_dates_error(source: str, late: LateDates, count: int, at: str, value) -> CrmvalueError:
    return CrmvalueError(
        f"{source}: {rows_text(count)} {'is' if count == 1 else 'are'} dated {late.detail}; "
        f"first at {at}, which {shown_value(value)}. "
        "Fix the dates (a typo'd year?), or pass --allow-future-dates to keep them"
    )


def late_dates_note(source: str, late: LateDates, count: int) -> str:
    return f"{source}: kept {rows_text(count)} dated {late.detail} (--allow-future-dates)"
