"""MLflow: the tracking URI, run metadata, the value model as a pyfunc, and how a run ends.

A run started with :func:`tracked_run` ends FINISHED, FAILED (an error) or KILLED (SIGINT or
SIGTERM), never left RUNNING. The CLI makes both signals raise :class:`Interrupted`
(:func:`handle_interrupts`); :func:`interrupts_deferred` holds them back over work that must
not stop half-way, and :func:`checkpoint` takes them where it safely can.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from crmvalue.features import SUMMARY_COLUMNS
from crmvalue.models.value import ValueModel

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
VALUE_MODEL_ARTIFACT = "value_model.json"


def resolve_tracking_uri(flag: str | None = None) -> str:
    """``--tracking-uri`` beats ``MLFLOW_TRACKING_URI``, which beats the local SQLite store."""
    return flag or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def artifact_root(tracking_uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: beside a SQLite file store, else the server's choice.

    MLflow puts the artifacts of a SQLite store in ``./mlruns`` of whatever directory the
    process runs in, so a store at ``/tmp/x/mlflow.db`` used from a notebook would scatter
    ``mlruns/`` folders into the repository. Keeping them next to the database, in
    ``mlruns/<experiment>/``, makes the store one self-contained folder; for the default
    ``sqlite:///mlflow.db`` that is ``./mlruns`` as with MLflow's own default.
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or ":memory:" in tracking_uri:
        return None
    database = Path(tracking_uri[len(prefix) :].split("?", 1)[0])
    return (database.parent.resolve() / "mlruns" / experiment).as_uri()


def use_experiment(name: str, tracking_uri: str):
    """Make ``name`` the active experiment, creating it with :func:`artifact_root` if it is new."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    if client.get_experiment_by_name(name) is None:
        try:
            client.create_experiment(name, artifact_location=artifact_root(tracking_uri, name))
        except mlflow.exceptions.MlflowException:
            if client.get_experiment_by_name(name) is None:  # not a race with another run: a real failure
                raise
    return mlflow.set_experiment(name)


def quiet_mlflow() -> None:
    """MLflow logs database migrations and hints at INFO level; keep the terminal for our progress."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def git_commit() -> str:
    """The commit of the crmvalue source tree, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(mapping: dict, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``, for MLflow params."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = "" if value is None else str(value)
    return flat


def _value_model_pyfunc() -> type:
    import mlflow

    class ValueModelPyfunc(mlflow.pyfunc.PythonModel):
        """Scores an RFM summary (frequency, recency, T, monetary_value) with a fitted :class:`ValueModel`.

        Holds no state until ``load_context`` rebuilds the model from its JSON parameters.
        """

        def load_context(self, context) -> None:
            data = json.loads(Path(context.artifacts["value_model"]).read_text())
            self.model_ = ValueModel.from_dict(data)

        def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
            frame = pd.DataFrame(model_input)
            return self.model_.predict(frame[SUMMARY_COLUMNS].astype("float64")).reset_index(drop=True)

    ValueModelPyfunc.__module__, ValueModelPyfunc.__qualname__ = __name__, "ValueModelPyfunc"
    return ValueModelPyfunc


def __getattr__(name: str):
    # ValueModelPyfunc is made on first use: importing MLflow costs two seconds, which a command
    # that stops at its pre-flight checks (crmvalue.store.check_store) should not pay
    if name == "ValueModelPyfunc":
        globals()[name] = _value_model_pyfunc()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def log_value_model(model: ValueModel, example: pd.DataFrame, name: str = "value_model") -> str:
    """Log the value model as a pyfunc with a signature; returns its model URI."""
    import mlflow
    from mlflow.models import infer_signature

    # a signature needs a few rows, not every customer (5 million of them cost seconds here)
    example = example[SUMMARY_COLUMNS].head(100).astype("float64").reset_index(drop=True)
    signature = infer_signature(example, model.predict(example).reset_index(drop=True))
    code = Path(__file__).with_name("mlflow_model.py")
    with tempfile.TemporaryDirectory() as tmp:
        params_path = Path(tmp) / VALUE_MODEL_ARTIFACT
        params_path.write_text(json.dumps(model.to_dict(), indent=2))
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(code),
            artifacts={"value_model": str(params_path)},
            signature=signature,
            input_example=example.head(5),
            pip_requirements=_requirements(),
        )
    return info.model_uri


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"crmvalue=={version('crmvalue')}"] + [
        f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "lifetimes", "numpy", "pandas", "scipy")
    ]


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
