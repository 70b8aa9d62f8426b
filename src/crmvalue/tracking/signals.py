"""How a run ends: SIGINT and SIGTERM become :class:`Interrupted`, held back over work that must
not stop half-way, and an MLflow run ends FINISHED, FAILED or KILLED, never left RUNNING."""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM arrived: the MLflow run ends KILLED; the CLI exits 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: int | None = None  # the last signal raised as Interrupted, for the CLI's exit code


def _raise_interrupted(signum, frame) -> None:
    global _received
    _received = signum
    raise Interrupted(signum)


def handle_interrupts() -> None:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` in the main thread. SIGTERM's default
    ends the process on the spot, which would leave the MLflow run RUNNING for ever. A signal the
    process was started ignoring (SIGINT of a job started with ``&`` or ``nohup``) stays ignored."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _raise_interrupted)


def received_signal() -> int | None:
    """The signal behind the last :class:`Interrupted`, or None."""
    return _received


class Deferred:
    """What :func:`interrupts_deferred` held back: the first signal received, or None."""

    received: int | None = None
    previous: dict | None = None  # the handlers in place before the block


_deferral: Deferred | None = None
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupts_deferred():
    """Within the block, SIGINT and SIGTERM are only recorded (``.received`` of the value yielded)
    and taken at :func:`checkpoint`; leaving the block delivers one still held back to the handlers
    in place before. For code that must not stop half-way: an exception raised in the middle of
    SQLAlchemy's work can leave a connection holding the SQLite store's lock, and a commit must
    finish or be undone. Nested blocks share the outer one. Outside the main thread (where Python
    runs no signal handler) it does nothing."""
    global _deferral
    if _deferral is not None or threading.current_thread() is not threading.main_thread():
        yield _deferral or Deferred()
        return
    state = _deferral = Deferred()

    def record(signum, frame):
        if state.received is None:
            state.received = signum

    state.previous = {
        signum: signal.signal(signum, record) for signum in _SIGNALS if signal.getsignal(signum) is not signal.SIG_IGN
    }
    try:
        yield state
    finally:
        _restore(state.previous)
        _deferral = None
        if state.received is not None:
            signal.raise_signal(state.received)


def checkpoint() -> None:
    """A safe point inside :func:`interrupts_deferred`: deliver a signal held back so far, now, to
    the handlers in place before the block (the CLI's raise :class:`Interrupted`)."""
    state = _deferral
    if state is None or state.received is None or threading.current_thread() is not threading.main_thread():
        return
    signum, state.received = state.received, None
    assert state.previous is not None  # set together with received, inside the block
    recording = {s: signal.getsignal(s) for s in state.previous}
    _restore(state.previous)
    try:
        signal.raise_signal(signum)
    finally:
        _restore(recording)


def _restore(handlers: dict) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@contextmanager
def tracked_run(**kwargs):
    """``mlflow.start_run(**kwargs)`` whose end status says how the block ended: FINISHED; KILLED on
    SIGINT, SIGTERM or KeyboardInterrupt; FAILED on any other exception. Starting and ending the
    run are not interrupted half-way, so the run is never left RUNNING."""
    import mlflow

    run = None
    try:
        with interrupts_deferred():
            run = mlflow.start_run(**kwargs)
        yield run
    except BaseException as exc:
        if run is not None:
            with interrupts_deferred():
                _end_run(run.info.run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    with interrupts_deferred():
        _end_run(run.info.run_id, "FINISHED")


def _end_run(run_id: str, status: str) -> None:
    import mlflow

    try:
        while (active := mlflow.active_run()) is not None and active.info.run_id != run_id:
            mlflow.end_run(status)  # a nested run left open by the failure
        mlflow.end_run(status)
    except Exception as exc:  # noqa: BLE001 - the store itself may be what failed; keep the first error
        logging.getLogger("crmvalue").warning(
            "could not mark MLflow run %s %s: %s",
            run_id,
            status,
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        )
