"""The one registry of purchase models: config names to model classes.

Every list of purchase models (the config's choices, the CLI's help, the diagnostics, the report's
labels) is derived from :data:`MODELS`. A new continuous-time model is one new module under
``crmvalue.models`` plus one line here.
"""

from __future__ import annotations

from crmvalue.errors import CrmvalueError
from crmvalue.models.base import PurchaseModel
from crmvalue.models.bgnbd import BetaGeoModel
from crmvalue.models.mbgnbd import ModifiedBetaGeoModel
from crmvalue.models.paretonbd import ParetoNBDModel

MODELS: dict[str, type[PurchaseModel]] = {
    model.name: model
    for model in (
        BetaGeoModel,
        ModifiedBetaGeoModel,
        ParetoNBDModel,
    )
}


def names() -> tuple[str, ...]:
    """The registered model names, in registry order: ``("bgnbd", "mbgnbd", "paretonbd")``."""
    return tuple(MODELS)


def model_class(name: str) -> type[PurchaseModel]:
    """The model class registered as ``name``; a :class:`CrmvalueError` naming the known ones otherwise."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise CrmvalueError(f"unknown purchase model '{name}'; choose one of {', '.join(MODELS)}") from None


def label(name: str) -> str:
    """The model's label for people: ``"BG/NBD"``, ``"MBG/NBD"``, ``"Pareto/NBD"``."""
    return model_class(name).label
