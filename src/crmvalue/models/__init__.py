"""Probabilistic customer-value models: BG/NBD purchases, Gamma-Gamma spend, CLV."""

from crmvalue.models.bgnbd import BetaGeoModel, BetaGeoParams
from crmvalue.models.gamma_gamma import GammaGammaModel, GammaGammaParams
from crmvalue.models.value import PREDICTION_COLUMNS, ValueModel, customer_lifetime_value

__all__ = [
    "BetaGeoModel",
    "BetaGeoParams",
    "GammaGammaModel",
    "GammaGammaParams",
    "PREDICTION_COLUMNS",
    "ValueModel",
    "customer_lifetime_value",
]
