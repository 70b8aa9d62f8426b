"""Probabilistic customer-value models: BG/NBD, MBG/NBD and Pareto/NBD purchases, Gamma-Gamma spend, CLV."""

from crmvalue.models.base import PurchaseModel, PurchaseParams
from crmvalue.models.bgnbd import BetaGeoModel, BetaGeoParams
from crmvalue.models.gamma_gamma import GammaGammaModel, GammaGammaParams, MeanSpendParams
from crmvalue.models.mbgnbd import ModifiedBetaGeoModel, ModifiedBetaGeoParams
from crmvalue.models.paretonbd import ParetoNBDModel, ParetoNBDParams
from crmvalue.models.registry import MODELS as PURCHASE_MODELS
from crmvalue.models.value import PREDICTION_COLUMNS, ValueModel, customer_lifetime_value

PURCHASE_PARAMS: dict[str, type] = {m.params_class.name: m.params_class for m in PURCHASE_MODELS.values()}

__all__ = [
    "BetaGeoModel",
    "BetaGeoParams",
    "GammaGammaModel",
    "GammaGammaParams",
    "MeanSpendParams",
    "ModifiedBetaGeoModel",
    "ModifiedBetaGeoParams",
    "PREDICTION_COLUMNS",
    "PURCHASE_MODELS",
    "PURCHASE_PARAMS",
    "ParetoNBDModel",
    "ParetoNBDParams",
    "PurchaseModel",
    "PurchaseParams",
    "ValueModel",
    "customer_lifetime_value",
]
