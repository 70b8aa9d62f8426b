"""MLflow: the tracking URI, run metadata and the value model as a pyfunc."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import infer_signature

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
    database = Path(tracking_uri[len(prefix):].split("?", 1)[0])
    return (database.parent.resolve() / "mlruns" / experiment).as_uri()


def use_experiment(name: str, tracking_uri: str):
    """Make ``name`` the active experiment, creating it with :func:`artifact_root` if it is new."""
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


def log_value_model(model: ValueModel, example: pd.DataFrame, name: str = "value_model") -> str:
    """Log the value model as a pyfunc with a signature; returns its model URI."""
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
