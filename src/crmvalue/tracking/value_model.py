"""The value model as an MLflow pyfunc: logged from code (``mlflow_model.py``), rebuilt from JSON."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd

from crmvalue import schema
from crmvalue.features import SUMMARY_COLUMNS
from crmvalue.models.value import ValueModel

VALUE_MODEL_ARTIFACT = schema.VALUE_MODEL_FILE


def _value_model_pyfunc() -> type:
    from mlflow.pyfunc import PythonModel

    class ValueModelPyfunc(PythonModel):
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


def log_value_model(model: ValueModel, example: pd.DataFrame, name: str = schema.VALUE_MODEL_NAME) -> str:
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
