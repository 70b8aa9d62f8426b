"""The ``crmvalue`` command: a thin Typer layer over the package (train, backtest, predict, simulate,
report, plan, export, promote), one module per group of commands."""

from __future__ import annotations

import logging
import sys

import typer

from crmvalue.cli import backtest, delivery, plan, predict, train  # noqa: F401  (each registers its commands on the app)
from crmvalue.cli.app import app
from crmvalue.errors import CrmvalueError

__all__ = ["app", "main"]


def _interrupted() -> None:
    """One line and exit 128 + the signal: 130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    import signal

    from crmvalue.tracking import received_signal

    signum = received_signal() or signal.SIGINT
    what = "interrupted by SIGINT (Ctrl-C)" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    print(f"error: {what}: a run in progress is marked KILLED, with nothing exported or registered", file=sys.stderr)
    sys.exit(128 + signum)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback;
    SIGINT and SIGTERM one line and exit 130 and 143."""
    import warnings

    from crmvalue.tracking import handle_interrupts

    handle_interrupts()
    import matplotlib

    matplotlib.use("Agg")  # the commands write figures to files; the library never switches the backend
    if not sys.warnoptions:  # a user's own -W or PYTHONWARNINGS wins
        # numpy's floating-point RuntimeWarnings ("divide by zero encountered in log") are noise on a
        # terminal: the fits guard their numerics and report what matters as one WARNING line. Only
        # the command filters them; in-process library use (and pytest) still sees them.
        warnings.filterwarnings("ignore", category=RuntimeWarning)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("crmvalue").setLevel(logging.INFO)
    try:
        code = app(standalone_mode=False)
    except CrmvalueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except Exception as exc:
        # usage errors (a bad flag or value) arrive here in non-standalone mode; typer vendors
        # its own copy of click, so match on the interface rather than on click's class
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()  # type: ignore[attr-defined]  # click's UsageError, matched by interface above
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]  # likewise
        raise
    if code == 130:  # typer turns a KeyboardInterrupt (Interrupted is one) into this return value
        _interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)
