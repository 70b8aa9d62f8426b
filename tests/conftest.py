"""Shared fixtures: the bundled CDNOW data (read once per session) and small synthetic logs."""

from __future__ import annotations

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
