"""The one registry of purchase models: config names to model classes.

Every list of purchase models (the config's choices, the CLI's help, the diagnostics, the report's
labels) is derived from :data:`MODELS`. A new model is one new module under ``crmvalue.models`` plus one
line here. Each model declares its ``data_kind``: ``"continuous"`` (BG/NBD, MBG/NBD, Pareto/NBD: one
``frequency, recency, T`` row per customer in continuous time) or ``"discrete"`` (BG/BB: the same columns in
whole periods of purchase opportunities, :mod:`crmvalue.discrete`). Models compete (``auto``) only within
one data kind.
"""

from __future__ import annotations

from crmvalue.errors import CrmvalueError
from crmvalue.models.base import PurchaseModel
from crmvalue.models.bgbb import BetaGeoBetaBinomModel
from crmvalue.models.bgnbd import BetaGeoModel
from crmvalue.models.mbgnbd import ModifiedBetaGeoModel
from crmvalue.models.paretonbd import ParetoNBDModel

MODELS: dict[str, type[PurchaseModel]] = {
    model.name: model
    for model in (
        BetaGeoModel,
        ModifiedBetaGeoModel,
        ParetoNBDModel,
        BetaGeoBetaBinomModel,
    )
}
DATA_KINDS = ("continuous", "discrete")


def names(data_kind: str | None = None) -> tuple[str, ...]:
    """The registered model names, in registry order: ``("bgnbd", "mbgnbd", "paretonbd", "bgbb")``; with
    ``data_kind``, only the models fitted on that kind of data (``names("continuous")`` leaves out ``bgbb``)."""
    if data_kind is not None and data_kind not in DATA_KINDS:
        raise CrmvalueError(f"unknown data kind '{data_kind}'; choose one of {', '.join(DATA_KINDS)}")
    return tuple(name for name, model in MODELS.items() if data_kind in (None, model.data_kind))


def data_kind(name: str) -> str:
    """The kind of data the model ``name`` is fitted on: ``"continuous"`` or ``"discrete"``."""
    return model_class(name).data_kind


def model_class(name: str) -> type[PurchaseModel]:
    """The model class registered as ``name``; a :class:`CrmvalueError` naming the known ones otherwise."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise CrmvalueError(f"unknown purchase model '{name}'; choose one of {', '.join(MODELS)}") from None


def label(name: str) -> str:
    """The model's label for people: ``"BG/NBD"``, ``"MBG/NBD"``, ``"Pareto/NBD"``, ``"BG/BB"``."""
    return model_class(name).label
