"""The one exception type a user of crmvalue should ever see for bad input or bad settings."""

from __future__ import annotations

import contextlib
import logging


class CrmvalueError(Exception):
    """A problem with the user's input, config or environment.

    The message is one line that names the file, the column and the first bad row where
    those apply, and says what to do. The CLI prints it without a traceback and exits 2.
    """


def first_line(exc: BaseException, limit: int | None = 300) -> str:
    """The first line of an exception's message (MLflow's ``.message`` when it has one), for a
    one-line :class:`CrmvalueError`; cut at ``limit`` characters."""
    lines = str(getattr(exc, "message", exc)).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if limit is None else text[:limit]


@contextlib.contextmanager
def deferred_warnings(logger: str = "crmvalue"):
    """Hold back the warnings ``logger`` gives inside the block and give them once it ends without an error,
    so that input that fails a later check shows only its one error line."""
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    target = logging.getLogger(logger)
    target.addFilter(hold)
    try:
        yield
    finally:
        target.removeFilter(hold)
    for record in held:
        target.handle(record)
