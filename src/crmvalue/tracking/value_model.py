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
            """With covariates, ``model_input`` also holds the customer-table columns they come from."""
            frame = pd.DataFrame(model_input).reset_index(drop=True)
            customers = frame[covariate_columns(self.model_)] if self.model_.covariates is not None else None
            return self.model_.predict(frame[SUMMARY_COLUMNS].astype("float64"), customers, "the model input")

    ValueModelPyfunc.__module__, ValueModelPyfunc.__qualname__ = __name__, "ValueModelPyfunc"
    return ValueModelPyfunc


def __getattr__(name: str):
    # ValueModelPyfunc is made on first use: importing MLflow costs two seconds, which a command
    # that stops at its pre-flight checks (crmvalue.store.check_store) should not pay
    if name == "ValueModelPyfunc":
        globals()[name] = _value_model_pyfunc()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def covariate_columns(model: ValueModel) -> list[str]:
    """The customer-table columns a model with covariates scores from (none without)."""
    return [] if model.covariates is None else model.covariates.columns


def log_value_model(
    model: ValueModel,
    example: pd.DataFrame,
    customers: pd.DataFrame | None = None,
    name: str = schema.VALUE_MODEL_NAME,
) -> str:
    """Log the value model as a pyfunc with a signature; returns its model URI. With covariates, ``customers``
    (the customer table, by customer id) gives the example rows their covariate columns."""
    import mlflow
    from mlflow.models import infer_signature

    # a signature needs a few rows, not every customer (5 million of them cost seconds here)
    head = example.head(100)
    example = head[SUMMARY_COLUMNS].astype("float64").reset_index(drop=True)
    if model.covariates is not None:
        assert customers is not None  # a model fitted with covariates was fitted from the customer table
        ids = head["customer_id"] if "customer_id" in head else head.index
        table = customers[covariate_columns(model)].reindex(pd.Index(ids))
        # categories as text: MLflow's signatures have no category type, and predict reads the levels as text
        table = table.astype({c: object for c in table.columns if isinstance(table[c].dtype, pd.CategoricalDtype)})
        example = pd.concat([example, table.reset_index(drop=True)], axis=1)
    scores = model.predict(example[SUMMARY_COLUMNS], example if model.covariates is not None else None)
    signature = infer_signature(example, scores.reset_index(drop=True))
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
