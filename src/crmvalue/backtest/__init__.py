"""Rolling-origin backtests of value forecasts (``crmvalue backtest``): cut-offs that see nothing after
their own date, candidates (BTYD x Gamma-Gamma, baselines, and any registered one), and revenue metrics
that judge both ranking and calibration.

:mod:`.metrics` the metrics, :mod:`.cutoffs` the cut-offs and what each may see, :mod:`.candidates` the
candidates and their registry, :mod:`.run` the backtest itself, :mod:`.tracking` its MLflow run and
:mod:`.charts` its figures.
"""

from crmvalue.backtest.candidates import CANDIDATES, Candidate, FittedBtyd, build_candidates
from crmvalue.backtest.config import BacktestConfig
from crmvalue.backtest.cutoffs import cutoff_actuals, days_until, rolling_cutoffs
from crmvalue.backtest.run import BacktestResult, backtest

__all__ = [
    "CANDIDATES",
    "BacktestConfig",
    "BacktestResult",
    "Candidate",
    "FittedBtyd",
    "backtest",
    "build_candidates",
    "cutoff_actuals",
    "days_until",
    "rolling_cutoffs",
]
