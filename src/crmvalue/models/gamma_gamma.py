"""Gamma-Gamma spend model, fitted by lifetimes; predictions vectorised here.

References
----------
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "RFM and CLV: Using Iso-Value Curves
for Customer Base Analysis", Journal of Marketing Research 42 (4), 415-430.
Fader and Hardie (2013), "The Gamma-Gamma Model of Monetary Value",
http://brucehardie.com/notes/025/.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError


@dataclass(frozen=True)
class GammaGammaParams:
    """Spend per transaction ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    p: float
    q: float
    v: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def population_mean(self) -> float:
        """E[M] = p v / (q - 1), the expected spend of a customer with no repeat purchases."""
        return self.p * self.v / (self.q - 1)


def expected_average_value(params: GammaGammaParams, frequency, monetary_value) -> np.ndarray:
    """E[M | x, m_x], Fader-Hardie (2013) eq. (5): a weighted mean of m_x and the population mean.

    With ``x = 0`` it is the population mean, so one-time buyers get the population's spend.
    """
    p, q, v = params.p, params.q, params.v
    x = np.asarray(frequency, float)
    m = np.where(x > 0, np.asarray(monetary_value, float), 0.0)
    return (p * (v + x * m)) / (p * x + q - 1)


class GammaGammaModel:
    """Gamma-Gamma fitted by ``lifetimes.GammaGammaFitter`` on repeat buyers.

    Only customers with ``frequency > 0`` and a positive ``monetary_value`` enter the fit, as
    in the paper. Identical (x, m_x) pairs are compressed into weights.
    """

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    def fit(self, frequency, monetary_value) -> "GammaGammaModel":
        from lifetimes import GammaGammaFitter
        from lifetimes.utils import ConvergenceError

        frame = pd.DataFrame({"frequency": np.asarray(frequency, float), "monetary_value": np.asarray(monetary_value, float)})
        frame = frame[(frame["frequency"] > 0) & (frame["monetary_value"] > 0)]
        if len(frame) < 2:
            raise CrmvalueError("Gamma-Gamma: fewer than two repeat buyers with positive spend; cannot fit spend")
        rows = frame.groupby(["frequency", "monetary_value"], sort=True).size().rename("weights").reset_index()
        fitter = GammaGammaFitter(penalizer_coef=self.penalizer)
        try:
            with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
                fitter.fit(rows["frequency"], rows["monetary_value"], weights=rows["weights"])
        except ConvergenceError:
            raise CrmvalueError(
                f"Gamma-Gamma did not converge (penalizer={self.penalizer}); "
                "set a larger penalizer, e.g. model.gamma_gamma_penalizer: 0.001 in the config"
            ) from None
        p = fitter.params_
        self.params_ = GammaGammaParams(float(p["p"]), float(p["q"]), float(p["v"]))
        if not self.params_.q > 1:
            raise CrmvalueError(
                f"Gamma-Gamma gave q={self.params_.q:.4g} <= 1, so mean spend is undefined; set a penalizer"
            )
        self.standard_errors_ = pd.Series(fitter.standard_errors_, dtype=float)
        # asymptotic covariance of the log-parameters (lifetimes' autograd Hessian of the mean NLL)
        self.log_param_covariance_ = np.linalg.inv(np.asarray(fitter._hessian_, float)) / rows["weights"].sum()
        values = np.array(list(self.params_.as_dict().values()))
        log_se = np.sqrt(np.diag(self.log_param_covariance_))
        self.confidence_intervals_ = pd.DataFrame(  # 95%, in log-parameters as for the purchase models
            {"lower": values * np.exp(-1.96 * log_se), "upper": values * np.exp(1.96 * log_se)},
            index=list(self.params_.as_dict()),
        )
        self.n_customers_ = len(frame)
        self.frequency_spend_correlation_ = float(np.corrcoef(frame["frequency"], frame["monetary_value"])[0, 1])
        return self

    def conditional_expected_average_profit(self, frequency, monetary_value) -> np.ndarray:
        return expected_average_value(self.params_, frequency, monetary_value)
