"""MLflow "models from code" entry point for the sBG of a contractual train run.

MLflow copies this file into the logged model and runs it on load, so no Python object is pickled: the model is
rebuilt from the ``sbg_model.json`` artifact in ``load_context`` (:mod:`crmvalue.tracking.contractual`).
Never import this module from package code; it registers the model on import.
"""

import mlflow

from crmvalue.tracking.contractual import SbgPyfunc

mlflow.models.set_model(SbgPyfunc())
