"""Rolling-origin backtests of value forecasts (``crmvalue backtest``): cut-offs that see nothing after
their own date, candidates (BTYD x Gamma-Gamma, baselines, and any registered one), and revenue metrics
that judge both ranking and calibration.

:mod:`.metrics` the metrics, :mod:`.cutoffs` the cut-offs and what each may see, :mod:`.candidates` the
candidates and their registry, :mod:`.run` the backtest itself, :mod:`.tracking` its MLflow run and
:mod:`.charts` its figures.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crmvalue.backtest.candidates import CANDIDATES, Candidate, FittedBtyd, build_candidates
    from crmvalue.backtest.config import BacktestConfig
    from crmvalue.backtest.cutoffs import cutoff_actuals, days_until, rolling_cutoffs
    from crmvalue.backtest.run import BacktestResult, backtest

# imported when first used: the config imports BacktestConfig, and every command's start-up would
# otherwise pay for pandas, scipy and the models (about 1.7 s)
_WHERE = {
    "CANDIDATES": "candidates",
    "Candidate": "candidates",
    "FittedBtyd": "candidates",
    "build_candidates": "candidates",
    "BacktestConfig": "config",
    "cutoff_actuals": "cutoffs",
    "days_until": "cutoffs",
    "rolling_cutoffs": "cutoffs",
    "BacktestResult": "run",
    "backtest": "run",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"crmvalue.backtest.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'crmvalue.backtest' has no attribute {name!r}")


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
