"""The MLflow store as the commands read it: which run is ``latest``, and one-line errors.

``latest`` is the most recent FINISHED top-level run of a given kind (tag ``crmvalue.kind``:
``train`` for ``crmvalue train``, ``predict`` for ``crmvalue predict``; runs logged before the
tag existed count as ``train``), across every experiment of the store or within one. The nested
child runs of ``--model auto`` are skipped.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from crmvalue.errors import CrmvalueError, first_line
from crmvalue.tracking import quiet_mlflow, resolve_tracking_uri

LATEST = "latest"
KIND_TAG = "crmvalue.kind"


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
        local = tracking_uri[len("sqlite:///"):].split("?", 1)[0]
    elif tracking_uri.startswith("file:"):
        local = urlsplit(tracking_uri).path
    # MLflow would quietly create an empty store at a mistyped path
    if local and ":memory:" not in tracking_uri and not Path(local).exists():
        raise CrmvalueError(f"no MLflow store at {local}: run `crmvalue train` first, or pass --tracking-uri")
    # MLflow retries an unreachable server for about four minutes; a report is not worth that wait
    brief = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
             "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    added = [key for key in brief if key not in os.environ]
    os.environ.update({key: brief[key] for key in added})
    try:
        yield mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    except MlflowException as exc:
        reason = first_line(exc)
        raise CrmvalueError(f"cannot read the MLflow store at {shown}: {reason}") from None
    finally:
        for key in added:
            os.environ.pop(key, None)


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
            experiment_ids, "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
            max_results=200, page_token=token,
        )
        for run in page:
            tags = run.data.tags
            if ("mlflow.parentRunId" not in tags and "crmvalue.version" in tags
                    and tags.get(KIND_TAG, "train") in kinds):
                return run.info.run_id
        token = page.token
        if not token:
            break
    return None


def latest_run_id(tracking_uri: str | None = None, experiment: str | None = None,
                  kinds: tuple[str, ...] = ("train",)) -> str:
    """The most recent FINISHED top-level run of one of ``kinds``, in ``experiment`` or in any."""
    tracking_uri = resolve_tracking_uri(tracking_uri)
    with open_store(tracking_uri) as client:
        run_id = _latest(client, experiment_ids(client, experiment, tracking_uri), kinds)
    if run_id is None:
        where = f"experiment {experiment!r}" if experiment else f"the MLflow store at {display_uri(tracking_uri)}"
        commands = " or ".join(f"`crmvalue {k}`" for k in kinds)
        raise CrmvalueError(f"no finished {commands} run in {where}: run `crmvalue train` first")
    return run_id
