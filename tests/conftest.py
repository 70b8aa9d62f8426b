"""Shared fixtures: the bundled CDNOW data (read once per session), small synthetic logs, one
finished `train` run that the tests which only read a run share, and the command in process."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from crmvalue.data import load_transactions

matplotlib.use("Agg")  # as the CLI does: the library itself never switches the backend


@pytest.fixture(scope="session")
def cdnow_sample() -> pd.DataFrame:
    """CDNOW 1/10 sample: 2,357 customers, raw transactions (not the published summary CSV)."""
    return load_transactions("cdnow_sample").frame


@pytest.fixture(scope="session")
def sample_summary(cdnow_sample) -> pd.DataFrame:
    """The CDNOW sample's RFM summary at the papers' calibration end, in weeks."""
    from crmvalue.features import rfm_summary

    return rfm_summary(cdnow_sample, "1997-09-30", "weeks")


@pytest.fixture(scope="session")
def cdnow_master() -> pd.DataFrame:
    return load_transactions("cdnow").frame


@pytest.fixture(scope="session")
def cdnow_master_summary(cdnow_master) -> pd.DataFrame:
    """CDNOW master (23,570 customers) summarised at the papers' calibration end, in weeks."""
    from crmvalue.features import rfm_summary

    return rfm_summary(cdnow_master, "1997-09-30", "weeks")


def random_transactions(
    n_customers: int = 300, seed: int = 0, start: str = "2020-01-01", days: int = 365
) -> pd.DataFrame:
    """A log with same-day repeats, one-purchase customers and varied amounts, in canonical columns."""
    rng = np.random.default_rng(seed)
    rows = []
    for cid in range(n_customers):
        n = rng.choice([1, 1, 2, 3, 5, 8])
        first = rng.integers(0, days // 2)
        offsets = np.sort(np.concatenate([[first], rng.integers(first, days, size=n - 1)]))
        if n > 2:  # a same-day repeat for some customers
            offsets = np.append(offsets, offsets[-1])
        for off in offsets:
            rows.append(
                (
                    f"c{cid:04d}",
                    pd.Timestamp(start) + pd.Timedelta(days=int(off), hours=int(rng.integers(0, 23))),
                    float(np.round(rng.gamma(2.0, 20.0), 2)),
                )
            )
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount"])


@pytest.fixture
def small_transactions() -> pd.DataFrame:
    return random_transactions()


def simulated_transactions(n_customers: int = 400, seed: int = 0) -> pd.DataFrame:
    """Transactions drawn from BG/NBD (CDNOW-like rates, per day) and Gamma-Gamma, 2020-01-01..2021-12-31."""
    from crmvalue.models import BetaGeoParams, GammaGammaParams
    from crmvalue.simulate import simulate_transactions

    return simulate_transactions(
        n_customers, BetaGeoParams(0.25, 28.0, 0.8, 2.5), GammaGammaParams(6.0, 4.0, 15.0), seed=seed
    )


# ------------------------------------------------------------------------------------------
# One finished run, trained once per session, for the tests that only read a run
# ------------------------------------------------------------------------------------------


def synthetic_config(tmp: Path, **overrides):
    """The synthetic experiment's config, with its store, export and models/ under ``tmp``."""
    from crmvalue.config import load_config

    base = {
        "name": "synthetic",
        "tracking_uri": f"sqlite:///{tmp}/mlflow.db",
        "out": str(tmp / "exports" / "predictions.csv"),
        "models_dir": str(tmp / "models"),
        "calibration_end": "2020-12-31",
        "observation_end": "2021-12-31",
        "time_unit": "days",
    }
    base.update(overrides)
    return load_config(None, base)


@dataclass(frozen=True)
class SharedRun:
    tmp: Path
    cfg: object
    result: object


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory) -> SharedRun:
    """400 simulated customers (seed 3) trained in process with the defaults (churn and analyses on)
    into a SQLite store of its own. Shared by every module: a test may read its store, export and
    models/, never write to them (copy the store first, as test_report does)."""
    from crmvalue.pipeline import train

    tmp = tmp_path_factory.mktemp("synthetic_run")
    cfg = synthetic_config(tmp)
    return SharedRun(tmp, cfg, train(cfg, data=simulated_transactions(n_customers=400, seed=3)))


# ------------------------------------------------------------------------------------------
# The command in process: the same entry point and error handling as the console script
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def crmvalue_main(monkeypatch, capsys):
    """Run ``crmvalue.cli.main()`` with the given arguments in this process: its exit code (0 when it
    returns), stdout and stderr. For one-line errors and small commands where a fresh interpreter
    adds nothing; the signal handlers it installs are put back afterwards."""
    from crmvalue.cli import main

    def run(*args, env: dict[str, str] | None = None) -> Command:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "argv", ["crmvalue", *map(str, args)])
        capsys.readouterr()
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            main()
            code = 0
        except SystemExit as stopped:
            code = stopped.code if isinstance(stopped.code, int) else (0 if stopped.code is None else 1)
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        out, err = capsys.readouterr()
        return Command(code, out, err)

    return run
