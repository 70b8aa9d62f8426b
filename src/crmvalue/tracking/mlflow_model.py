"""MLflow "models from code" entry point for the value model.

MLflow copies this file into the logged model and runs it on load, so no Python object is
pickled: the model is rebuilt from the ``value_model.json`` artifact in ``load_context``.
Never import this module from package code; it registers the model on import.
"""

import mlflow

from crmvalue.tracking.value_model import ValueModelPyfunc

mlflow.models.set_model(ValueModelPyfunc())
