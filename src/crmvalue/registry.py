"""The MLflow Model Registry: versions from ``crmvalue train``, the ``champion`` alias, model URIs.

Every ``crmvalue train`` of experiment ``<name>`` registers its value model as a new version of
``<name>-value`` and, when the churn model is on, its churn model as a new version of
``<name>-churn`` (other names in ``registry:`` of the config), once its export file is in place;
a run that fails after that takes its versions back (:func:`unregister`). Each experiment (each
shop's data) has its own registered models, so promoting one never moves another's alias.
``crmvalue promote --name <name> --version N`` points the ``champion`` alias at version N of the
value model and at the churn version trained in the same run, so the pair that
``crmvalue predict --name <name>`` (``--model models:/<name>-value@champion``) scores with always
comes from one run. Aliases, not the deprecated stages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crmvalue.errors import CrmvalueError, first_line

VALUE_SUFFIX = "-value"
CHURN_SUFFIX = "-churn"
CHAMPION = "champion"
VERSION_TAG = "crmvalue.value_model_version"  # on the run: the registered version of its value model
CHURN_VERSION_TAG = "crmvalue.churn_model_version"

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run>[0-9a-f]{32})/(?P<path>[A-Za-z0-9_./-]+)$")


@dataclass(frozen=True)
class ModelRef:
    """A value model resolved to its run: what ``predict`` scores with."""

    uri: str
    name: str | None  # registered model name, None for a runs:/ URI
    version: int | None
    run_id: str


def value_model_name(experiment: str) -> str:
    """The registered value model of an experiment, unless its config names another."""
    return experiment + VALUE_SUFFIX


def churn_model_name(experiment: str) -> str:
    return experiment + CHURN_SUFFIX


def registered_models(client) -> list[str] | None:
    """Names of the registered models in the store, sorted (None if the store cannot list them)."""
    try:
        return sorted(m.name for m in client.search_registered_models(max_results=1000))
    except Exception:  # noqa: BLE001 - only for a message
        return None


def no_model_error(client, command: str) -> CrmvalueError:
    """Which model? One line that lists the registered ones."""
    names = registered_models(client)
    have = (
        "registered models: " + ", ".join(names)
        if names
        else "no model is registered yet: run `crmvalue train` first"
        if names is not None
        else "the store cannot list its registered models"
    )
    if command == "promote":
        ask = "name the experiment with --name NAME (its value model NAME-value) or the model with --model"
    else:
        ask = "name the experiment with --name NAME (scores with models:/NAME-value@champion) or the model with --model URI"
    return CrmvalueError(f"{command}: {ask}; {have}")


def register(model_uri: str, name: str, run_id: str) -> int:
    """Register ``model_uri`` as a new version of ``name``; returns the version number."""
    import contextlib
    import io

    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        # MLflow prints "Successfully registered..." straight to stderr; the caller reports the version
        with contextlib.redirect_stderr(io.StringIO()):
            version = mlflow.register_model(model_uri, name, tags={"crmvalue.run_id": run_id})
    except MlflowException as exc:
        raise CrmvalueError(f"cannot register {name} in the MLflow model registry: {first_line(exc)}") from None
    return int(version.version)


def unregister(name: str, version: int) -> None:
    """Undo :func:`register` for a run that did not complete: delete the version, and the registered
    model too when that was its first version and none is left (the registration created it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    client.delete_model_version(name, str(version))
    if version == 1 and not client.search_model_versions(f"name = '{name}'", max_results=1):
        client.delete_registered_model(name)


def resolve(client, uri: str) -> ModelRef:
    """``models:/name@alias``, ``models:/name/N`` or ``runs:/<run id>/value_model`` -> :class:`ModelRef`."""
    from mlflow.exceptions import MlflowException

    found = _MODELS_URI.match(uri)
    if found:
        name = found["name"]
        try:
            if found["alias"]:
                mv = client.get_model_version_by_alias(name, found["alias"])
            else:
                mv = client.get_model_version(name, found["version"])
        except MlflowException as exc:
            names = registered_models(client)
            if names is not None and name not in names:
                have = ("registered models: " + ", ".join(names)) if names else "no model is registered yet"
                raise CrmvalueError(f"--model {uri}: no registered model {name!r} in the store; {have}") from None
            what = f"alias {found['alias']!r}" if found["alias"] else f"version {found['version']}"
            hint = f"; set it with `crmvalue promote --model {name} --version N`" if found["alias"] else ""
            raise CrmvalueError(
                f"--model {uri}: registered model {name!r} has no {what} ({first_line(exc)}){hint}"
            ) from None
        if not mv.run_id:
            raise CrmvalueError(f"--model {uri}: version {mv.version} of {name!r} has no source run")
        return ModelRef(uri, name, int(mv.version), mv.run_id)
    found = _RUNS_URI.match(uri)
    if found:
        return ModelRef(uri, None, None, found["run"])
    raise CrmvalueError(
        f"--model {uri!r}: expected models:/<name>@<alias>, models:/<name>/<version> or runs:/<run id>/value_model"
    )


def promote(
    client,
    version: int,
    alias: str = CHAMPION,
    value_model: str | None = None,
    churn_model: str | None = None,
    experiment: str | None = None,
) -> dict[str, int]:
    """Point ``alias`` at ``version`` of the value model and at the churn version from the same run.

    The value model is ``value_model``, else ``<experiment>-value``; the churn model is
    ``churn_model``, else ``<experiment>-churn``, else the value model's name with ``-value``
    made ``-churn``. Only that experiment's aliases move.
    """
    from mlflow.exceptions import MlflowException

    if value_model is None and experiment is None:
        raise no_model_error(client, "promote")
    if not value_model:
        assert (
            experiment is not None
        )  # checked above, but for an empty value_model (which the config's pattern refuses)
        value_model = value_model_name(experiment)
    if churn_model is None:
        if experiment is not None:
            churn_model = churn_model_name(experiment)
        elif value_model.endswith(VALUE_SUFFIX):
            churn_model = value_model.removesuffix(VALUE_SUFFIX) + CHURN_SUFFIX
    try:
        mv = client.get_model_version(value_model, str(version))
    except MlflowException as exc:
        names = registered_models(client)
        if names is not None and value_model not in names:
            have = ("registered models: " + ", ".join(names)) if names else "no model is registered yet"
            raise CrmvalueError(f"no registered model {value_model!r} in the store; {have}") from None
        raise CrmvalueError(f"--version {version}: no such version of {value_model!r} ({first_line(exc)})") from None
    client.set_registered_model_alias(value_model, alias, str(version))
    moved = {value_model: int(version)}
    if churn_model is None:  # a value model of another name: the churn model registered from the same run
        try:
            churn_model = next(
                (v.name for v in client.search_model_versions(f"run_id = '{mv.run_id}'") if v.name != value_model), None
            )
        except MlflowException:
            pass
        if churn_model is None:
            return moved
    try:
        churn_versions = client.search_model_versions(f"name = '{churn_model}' and run_id = '{mv.run_id}'")
    except MlflowException:
        churn_versions = []
    if churn_versions:
        churn_version = max(int(v.version) for v in churn_versions)
        client.set_registered_model_alias(churn_model, alias, str(churn_version))
        moved[churn_model] = churn_version
    else:
        try:  # a run without churn: do not leave the alias on another run's churn model
            client.delete_registered_model_alias(churn_model, alias)
        except MlflowException:
            pass
    return moved
