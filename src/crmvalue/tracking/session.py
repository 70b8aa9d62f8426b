"""The tracking store a command writes to, and a session that scopes MLflow's global URI.

MLflow's fluent API (``mlflow.start_run``, ``mlflow.log_params``) keeps the tracking URI in
process-wide state. :class:`TrackingSession` sets it for one block and puts the previous one
back, so a library user's own MLflow setting survives ``train`` and ``predict``.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


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


class TrackingSession:
    """``with TrackingSession(uri):`` MLflow's fluent API writes to ``uri`` inside the block; the
    URI in place before (a user's ``mlflow.set_tracking_uri``) is restored on the way out."""

    def __init__(self, tracking_uri: str | None = None):
        self.uri = resolve_tracking_uri(tracking_uri)
        self._previous: str | None = None

    def __enter__(self) -> TrackingSession:
        import mlflow

        quiet_mlflow()
        self._previous = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
        mlflow.set_tracking_uri(self.uri)
        return self

    def __exit__(self, *exc) -> None:
        import mlflow

        mlflow.set_tracking_uri(self._previous)  # type: ignore[arg-type]  # None: unset again, as before the block (MLflow's hint omits None)
