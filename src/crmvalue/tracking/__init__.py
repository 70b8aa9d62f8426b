"""MLflow: the tracking URI and session, run metadata, the value model as a pyfunc, how a run
ends (:mod:`.signals`), the run writer (:mod:`.writer`) and the run reader (:mod:`.reader`).

A run started with :func:`tracked_run` ends FINISHED, FAILED (an error) or KILLED (SIGINT or
SIGTERM), never left RUNNING. The CLI makes both signals raise :class:`Interrupted`
(:func:`handle_interrupts`); :func:`interrupts_deferred` holds them back over work that must
not stop half-way, and :func:`checkpoint` takes them where it safely can.
"""

from __future__ import annotations

from crmvalue.tracking.session import (
    DEFAULT_TRACKING_URI,
    TrackingSession,
    artifact_root,
    flatten,
    git_commit,
    quiet_mlflow,
    resolve_tracking_uri,
    use_experiment,
)
from crmvalue.tracking.signals import (
    Deferred,
    Interrupted,
    checkpoint,
    handle_interrupts,
    interrupts_deferred,
    received_signal,
    tracked_run,
)
from crmvalue.tracking.value_model import VALUE_MODEL_ARTIFACT, log_value_model

__all__ = [
    "DEFAULT_TRACKING_URI",
    "VALUE_MODEL_ARTIFACT",
    "Deferred",
    "Interrupted",
    "TrackingSession",
    "artifact_root",
    "checkpoint",
    "flatten",
    "git_commit",
    "handle_interrupts",
    "interrupts_deferred",
    "log_value_model",
    "quiet_mlflow",
    "received_signal",
    "resolve_tracking_uri",
    "tracked_run",
    "use_experiment",
]


def __getattr__(name: str):
    # models logged before tracking became a package load ``from crmvalue.tracking import ValueModelPyfunc``
    if name == "ValueModelPyfunc":
        from crmvalue.tracking import value_model

        return value_model.ValueModelPyfunc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
