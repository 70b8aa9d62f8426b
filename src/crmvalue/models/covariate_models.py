"""One registry of the models that have a time-invariant covariate version.

Every class in :data:`COVARIATE_MODELS` offers the interface of
:class:`crmvalue.models.bgnbd_covariates.BetaGeoCovariateModel`: ``__init__(penalizer=0.0)``,
``fit(frequency, recency, T, z_purchase=None, z_dropout=None, weights=None, compress=True)``,
``params_`` (the plain model's parameters at z = 0), ``gamma_purchase_``, ``gamma_dropout_``,
``coefficient_names_``, ``log_likelihood_``, ``standard_errors_``, ``covariance_``, ``n_params``,
``customer_params(n, z_purchase, z_dropout)``, ``p_alive(...)``, ``expected_purchases(t, ...)``, a
``name`` class attribute (the key it is registered under), and the class methods
``own_params(params, gamma_purchase, gamma_dropout, z_purchase, z_dropout)`` (the plain parameters with
per-customer arrays) and ``simulate(params, gamma_purchase, gamma_dropout, z_purchase, z_dropout, T, seed)``.
The shared machinery is :mod:`crmvalue.models.covariates`.
"""

from __future__ import annotations

from crmvalue.errors import CrmvalueError
from crmvalue.models.bgnbd_covariates import BetaGeoCovariateModel
from crmvalue.models.covariates import CovariateModel
from crmvalue.models.mbgnbd_covariates import ModifiedBetaGeoCovariateModel
from crmvalue.models.paretonbd_covariates import ParetoNBDCovariateModel
from crmvalue.models.registry import MODELS

COVARIATE_MODELS: dict[str, type[CovariateModel]] = {
    model.name: model for model in (BetaGeoCovariateModel, ModifiedBetaGeoCovariateModel, ParetoNBDCovariateModel)
}


def covariate_model_class(name: str) -> type[CovariateModel]:
    """The covariate version of model ``name`` (a key of :data:`COVARIATE_MODELS`)."""
    if name in COVARIATE_MODELS:
        return COVARIATE_MODELS[name]
    label = MODELS[name].label if name in MODELS else f"unknown purchase model '{name}'"
    raise CrmvalueError(f"{label} has no covariate version; covariates work with: {', '.join(COVARIATE_MODELS)}")
