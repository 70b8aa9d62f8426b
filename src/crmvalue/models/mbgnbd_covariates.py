"""MBG/NBD with time-invariant covariates: BG/NBD's form (:mod:`crmvalue.models.bgnbd_covariates`) on MBG/NBD.

Customer ``i``'s purchase rate is ``lambda_i ~ Gamma(r, alpha_i)`` and her dropout probability
``p_i ~ Beta(a_i, b_i)`` (Batislam, Denizel and Filiztekin 2007: she may also drop out right after her
first purchase), with::

    alpha_i = alpha * exp(-gamma_purchase . z_p,i)      (r is shared)
    a_i     = a     * exp( gamma_dropout  . z_d,i)
    b_i     = b     * exp( gamma_dropout  . z_d,i)

exactly as for BG/NBD (Fader and Hardie 2007, brucehardie.com note 019, applied to MBG/NBD). The
likelihood is :mod:`crmvalue.models.beta_geo_fit`'s with ``k = 1``; its per-row gradient and Hessian are
BG/NBD's covariate objective with ``modified`` set, and the chain rule, the compression of rows, the fit
(``trust-exact`` from the plain MBG/NBD optimum, coefficients 0) and the standard errors are shared
(:mod:`crmvalue.models.covariates`). Given ``(r, alpha_i, a_i, b_i)`` everything is plain MBG/NBD
(:mod:`crmvalue.models.mbgnbd`).
"""

from __future__ import annotations

from crmvalue.models.bgnbd_covariates import BetaGeoCovariateModel, BetaGeoCovariateObjective
from crmvalue.models.mbgnbd import ModifiedBetaGeoParams


class ModifiedBetaGeoCovariateObjective(BetaGeoCovariateObjective):
    """The MBG/NBD covariate objective: BG/NBD's with ``k = 1`` (see :mod:`crmvalue.models.beta_geo_fit`)."""

    modified = True


class ModifiedBetaGeoCovariateModel(BetaGeoCovariateModel):
    """MBG/NBD with time-invariant covariates (see the module docstring); the interface of
    :class:`crmvalue.models.bgnbd_covariates.BetaGeoCovariateModel`, with ``ModifiedBetaGeoParams``."""

    name = "mbgnbd"
    label = "MBG/NBD with covariates"
    params_class = ModifiedBetaGeoParams
    objective_class = ModifiedBetaGeoCovariateObjective


def simulate_with_covariates(
    params: ModifiedBetaGeoParams, gamma_purchase, gamma_dropout, z_purchase, z_dropout, T, seed: int | None = None
):
    """One customer per entry of ``T``, each drawn exactly from MBG/NBD with her own ``alpha_i, a_i, b_i``
    (``ModifiedBetaGeoParams.simulate_summary`` broadcasts over arrays of parameters): columns
    ``frequency, recency, T``."""
    return ModifiedBetaGeoCovariateModel.simulate(params, gamma_purchase, gamma_dropout, z_purchase, z_dropout, T, seed)
