"""The MLflow store as the commands use it: which run is ``latest``, one-line errors, and the
checks and lock of a command that writes to it (:func:`check_store`, :func:`open_for_writing`).

``latest`` is the most recent FINISHED top-level run of a given kind (tag ``crmvalue.kind``:
``train`` for ``crmvalue train``, ``predict`` for ``crmvalue predict``; runs logged before the
tag existed count as ``train``), across every experiment of the store or within one. The nested
child runs of ``--model auto`` are skipped.
"""

from __future__ import annotations

import contextlib
import os
import re
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from crmvalue.errors import CrmvalueError, first_line
from crmvalue.schema import KIND_TAG, VERSION_TAG
from crmvalue.tracking import quiet_mlflow, resolve_tracking_uri

LATEST = "latest"


def display_uri(uri: str) -> str:
    """The tracking URI without a user name or password, for messages."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=host))
    return uri


@contextmanager
def open_store(tracking_uri: str):
    """An MLflow client whose failures become one-line :class:`CrmvalueError` messages."""
    import mlflow
    from mlflow.exceptions import MlflowException

    quiet_mlflow()
    shown = display_uri(tracking_uri)
    local = None
    if tracking_uri.startswith("sqlite:///"):
        local = tracking_uri[len("sqlite:///") :].split("?", 1)[0]
    elif tracking_uri.startswith("file:"):
        local = urlsplit(tracking_uri).path
    # MLflow would quietly create an empty store at a mistyped path
    if local and ":memory:" not in tracking_uri and not Path(local).exists():
        raise CrmvalueError(f"no MLflow store at {local}: run `crmvalue train` first, or pass --tracking-uri")
    # MLflow retries an unreachable server for about four minutes; a report is not worth that wait
    try:
        with _brief_http(retries=2, timeout=30):
            yield mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    except MlflowException as exc:
        reason = first_line(exc)
        raise CrmvalueError(f"cannot read the MLflow store at {shown}: {reason}") from None


@contextmanager
def _brief_http(retries: int, timeout: int):
    """MLflow's HTTP retries and timeout cut down for the block, unless the environment sets them."""
    brief = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout),
    }
    added = [key for key in brief if key not in os.environ]
    os.environ.update({key: brief[key] for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for any other store, or an in-memory one)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or ":memory:" in tracking_uri:
        return None
    return Path(tracking_uri[len(prefix) :].split("?", 1)[0])


def _reason(exc: BaseException) -> str:
    """The cause worth a user's line: "[Errno 111] Connection refused" rather than a URL's retry story."""
    text = first_line(exc, None)
    found = re.search(r"\[Errno -?\d+\] [^'\"\)]+", text)
    return found.group(0).strip() if found else text[:300]


def check_store(tracking_uri: str) -> None:
    """Pre-flight for a command that logs a run: the store can be written, or reached, now.

    A SQLite store (its file, its folder, and ``mlruns/`` beside it) or a local file store is
    checked on disk, creating nothing; a tracking server is asked for one experiment, with no
    retries and a 5 s timeout. Other stores are checked when the run starts. Raises a one-line
    :class:`CrmvalueError` naming the store.
    """
    from crmvalue.io import check_writable

    shown = display_uri(tracking_uri)
    hint = "pass --tracking-uri, or set MLFLOW_TRACKING_URI, to use another store"
    database = sqlite_path(tracking_uri)
    if database is not None:
        check_writable(database, "the MLflow store", hint)
        check_writable(database.parent, "the MLflow store's folder", hint, directory=True)
        check_writable(database.parent / "mlruns", "the MLflow artifact folder", hint, directory=True)
        return
    scheme = urlsplit(tracking_uri).scheme
    if scheme == "file" or (scheme == "" and tracking_uri not in ("databricks", "databricks-uc", "uc")):
        check_writable(
            Path(urlsplit(tracking_uri).path if scheme else tracking_uri), "the MLflow store", hint, directory=True
        )
    elif scheme in ("http", "https"):
        import mlflow

        quiet_mlflow()
        try:
            with _brief_http(retries=0, timeout=5):
                mlflow.tracking.MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - any failure to answer is the same news for the user
            raise CrmvalueError(f"cannot reach the MLflow server at {shown}: {_reason(exc)} ({hint})") from None


@contextmanager
def _creation_lock(database: Path):
    """An exclusive ``flock`` on ``<database>.lock``, beside the database: MLflow creates and
    migrates a new store's tables from whichever process opens it first, and two processes
    doing so at once collide ("duplicate column name")."""
    import fcntl

    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_for_writing(tracking_uri: str) -> None:
    """Open (on the first run: create) the tracking and registry stores of ``tracking_uri`` for this
    process, a SQLite store under :func:`_creation_lock`. MLflow keeps the opened stores for the
    process, so later calls find the tables made. Failures become one line."""
    import mlflow

    quiet_mlflow()
    database = sqlite_path(tracking_uri)
    try:
        with _creation_lock(database) if database is not None else contextlib.nullcontext():
            client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
    except Exception as exc:  # noqa: BLE001 - MLflow, SQLAlchemy and OS errors alike
        raise CrmvalueError(f"cannot open the MLflow store at {display_uri(tracking_uri)}: {_reason(exc)}") from None


@contextmanager
def logging_errors(tracking_uri: str):
    """MLflow, database and file errors while a run is logged or committed become one line."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise CrmvalueError(
            f"cannot log to the MLflow store at {display_uri(tracking_uri)}: {first_line(exc)}; "
            "the run is marked FAILED and nothing was exported or registered"
        ) from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise CrmvalueError(
            f"cannot write{where}: {exc.strerror or exc}; "
            "the run is marked FAILED and nothing was exported or registered"
        ) from None
    except Exception as exc:
        if type(exc).__module__.split(".", 1)[0] != "sqlalchemy":
            raise
        raise CrmvalueError(
            f"cannot log to the MLflow store at {display_uri(tracking_uri)}: {_reason(exc)}; "
            "the run is marked FAILED and nothing was exported or registered"
        ) from None


def get_run(client, run_id: str, tracking_uri: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
            raise CrmvalueError(
                f"no run {run_id!r} in the MLflow store at {display_uri(tracking_uri)}; "
                "leave out --run to report the latest run"
            ) from None
        raise


def experiment_ids(client, experiment: str | None, tracking_uri: str) -> list[str]:
    if experiment is None:
        return [e.experiment_id for e in client.search_experiments()]
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise CrmvalueError(
            f"no experiment {experiment!r} in the MLflow store at {display_uri(tracking_uri)}; "
            f"it has: {', '.join(names) or 'none'}"
        )
    return [found.experiment_id]


def _latest(client, experiment_ids: list[str], kinds: tuple[str, ...]) -> str | None:
    token = None
    while experiment_ids:
        page = client.search_runs(
            experiment_ids,
            "attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=200,
            page_token=token,
        )
        for run in page:
            tags = run.data.tags
            if "mlflow.parentRunId" not in tags and VERSION_TAG in tags and tags.get(KIND_TAG, "train") in kinds:
                return run.info.run_id
        token = page.token
        if not token:
            break
    return None


def latest_run_id(
    tracking_uri: str | None = None, experiment: str | None = None, kinds: tuple[str, ...] = ("train",)
) -> str:
    """The most recent FINISHED top-level run of one of ``kinds``, in ``experiment`` or in any."""
    tracking_uri = resolve_tracking_uri(tracking_uri)
    with open_store(tracking_uri) as client:
        run_id = _latest(client, experiment_ids(client, experiment, tracking_uri), kinds)
    if run_id is None:
        where = f"experiment {experiment!r}" if experiment else f"the MLflow store at {display_uri(tracking_uri)}"
        commands = " or ".join(f"`crmvalue {k}`" for k in kinds)
        raise CrmvalueError(f"no finished {commands} run in {where}: run `crmvalue train` first")
    return run_id
