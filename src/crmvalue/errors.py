"""The one exception type a user of crmvalue should ever see for bad input or bad settings."""

from __future__ import annotations


class CrmvalueError(Exception):
    """A problem with the user's input, config or environment.

    The message is one line that names the file, the column and the first bad row where
    those apply, and says what to do. The CLI prints it without a traceback and exits 2.
    """
