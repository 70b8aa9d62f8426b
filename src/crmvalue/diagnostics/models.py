"""Which purchase model a fitted object holds, its parameters, and its predictions for a new customer.

Purchase models are duck-typed with the method names of ``lifetimes`` (see :mod:`crmvalue.diagnostics`);
the model's maths, P(X(t) = n) included, lives with the model in :mod:`crmvalue.models`, found
through :mod:`crmvalue.models.registry`.
"""

from __future__ import annotations

import numpy as np

from crmvalue.errors import CrmvalueError
from crmvalue.models import registry
from crmvalue.models.base import PurchaseModel, PurchaseParams
from crmvalue.models.bgnbd import BetaGeoParams
from crmvalue.models.mbgnbd import ModifiedBetaGeoParams
from crmvalue.models.paretonbd import ParetoNBDParams

# what model_family gives: each registered model's ``family``, e.g. "bg_nbd", "mbg_nbd", "pareto_nbd"
ModelFamily = str


def model_params(model) -> dict[str, float]:
    """The fitted parameters of a model as a plain dict.

    Accepts a model with ``params_`` as a pandas Series (lifetimes), a dataclass with
    ``as_dict()`` (crmvalue), or a mapping; or such a parameter object itself.
    """
    params = getattr(model, "params_", model)
    if params is None:
        raise CrmvalueError(f"{type(model).__name__} has no fitted parameters; fit it first")
    if hasattr(params, "as_dict"):
        params = params.as_dict()
    try:
        return {str(k): float(v) for k, v in dict(params).items()}
    except (TypeError, ValueError):
        raise CrmvalueError(f"cannot read parameters from {type(model).__name__}") from None


def purchase_model_class(model) -> type[PurchaseModel]:
    """The registered model class of a fitted model, a lifetimes fitter, or a parameter object.

    crmvalue's models and parameter dataclasses name their model. A lifetimes fitter is matched to the
    registered model whose lifetimes twin it is (the most specific one: ``ModifiedBetaGeoFitter`` is a
    ``BetaGeoFitter``). Anything else is matched by its parameter names, in registry order.
    """
    params = getattr(model, "params_", model)
    own = getattr(params, "name", None)
    if isinstance(own, str) and own in registry.MODELS:  # crmvalue's parameter dataclasses carry their model's name
        return registry.MODELS[own]
    twins = {}
    for cls in registry.MODELS.values():
        try:
            twins[type(cls().lifetimes_twin())] = cls
        except NotImplementedError:
            continue
    for base in type(model).__mro__:
        if base in twins:
            return twins[base]
    names = set(model_params(model))
    for cls in registry.MODELS.values():
        if set(cls.params_class.parameter_names()) <= names:
            return cls
    raise CrmvalueError(f"unsupported purchase model {type(model).__name__} with parameters {sorted(names)}")


def model_family(model) -> ModelFamily:
    """Which purchase model the parameters belong to: the registered model's ``family``,
    ``bg_nbd``, ``mbg_nbd`` or ``pareto_nbd`` (see :func:`purchase_model_class`)."""
    return purchase_model_class(model).family


def as_params(model, params_class: type[PurchaseParams] | None = None) -> PurchaseParams:
    """The parameter object of ``model`` (of ``params_class``, default the model's own), from any of the
    forms :func:`model_params` reads."""
    cls = params_class or purchase_model_class(model).params_class
    params = getattr(model, "params_", model)
    if isinstance(params, cls):
        return params
    values = model_params(model)
    return cls(**{name: values[name] for name in cls.parameter_names()})


def expected_repeat_purchases(model, t) -> np.ndarray:
    """Unconditional E[X(t)]: expected repeat purchases of a customer ``t`` units after the first.

    FHL (2005a) eq. (9) for the BG/NBD; Fader-Hardie (2005), note 009, eq. (27) for the Pareto/NBD.
    The model's ``expected_number_of_purchases_up_to_time``, for ``t`` of any shape; ``t = 0``
    gives 0.
    """
    t = np.asarray(t, float)
    flat = t.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        values = model.expected_number_of_purchases_up_to_time(flat)
    values = np.where(flat > 0, np.asarray(values, float), 0.0)
    return values.reshape(t.shape)


# --------------------------------------------------------------------------- P(X(t) = n)


def probability_of_n_purchases(model, t, n) -> np.ndarray:
    """P(X(t) = n) for a new customer observed for ``t`` units, for the model's family.

    ``t`` and ``n`` broadcast together. The formulas are the models' ``probability_of_n_purchases``.
    """
    return as_params(model).probability_of_n_purchases(t, n)


def bgnbd_probability_of_n_purchases(params, t, n) -> np.ndarray:
    """BG/NBD P(X(t) = n): :meth:`crmvalue.models.BetaGeoParams.probability_of_n_purchases`."""
    return as_params(params, BetaGeoParams).probability_of_n_purchases(t, n)


def mbgnbd_probability_of_n_purchases(params, t, n) -> np.ndarray:
    """MBG/NBD P(X(t) = n): :meth:`crmvalue.models.ModifiedBetaGeoParams.probability_of_n_purchases`."""
    return as_params(params, ModifiedBetaGeoParams).probability_of_n_purchases(t, n)


def pareto_nbd_probability_of_n_purchases(params, t, n) -> np.ndarray:
    """Pareto/NBD P(X(t) = n): :meth:`crmvalue.models.ParetoNBDParams.probability_of_n_purchases`."""
    return as_params(params, ParetoNBDParams).probability_of_n_purchases(t, n)
