"""The runs issue 13 saw crash on a fresh clone, through the console script, each as the issue says
it must end now: the documented CDNOW runs, a 40-customer log, a log without a repeat buyer in the
calibration period and a boundary fit (no dropout heterogeneity) all complete with finite
predictions for every customer with a purchase; a boundary fit says so in one warning line.

Every output (MLflow store, models/, predictions) goes to a temporary folder: the runs start
there, and the CDNOW config is named by its absolute path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from logshapes import forty_customers, late_repeaters, no_dropout, purchase_days, purchasers

REPO = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("crmvalue")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow store for the module's runs: each run is its own experiment in it."""
    return f"sqlite:///{tmp_path_factory.mktemp('seen-store')}/mlflow.db"


@pytest.fixture(scope="module")
def cdnow_sample_purchasers() -> set[str]:
    from crmvalue.data import load_transactions

    return purchasers(load_transactions("cdnow_sample").frame)


def train_cli(cwd: Path, store: str, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    """``crmvalue train ARGS --out <cwd>/out/predictions.csv --tracking-uri STORE``, run in ``cwd``."""
    out = cwd / "out" / "predictions.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run(
        [str(CLI), "train", *args, "--out", str(out), "--tracking-uri", store],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return proc, out


def assert_completed(proc: subprocess.CompletedProcess, out: Path, expected: set[str]) -> pd.DataFrame:
    """Exit 0, no traceback, and a predictions file with one finite row per customer with a purchase."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 0, f"exit {proc.returncode}: {errors[-1] if errors else ''}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    predictions = pd.read_csv(out, dtype={"customer_id": str})
    assert predictions["customer_id"].is_unique
    assert set(predictions["customer_id"]) == expected
    numeric = predictions.select_dtypes("number")
    assert {"p_alive", "expected_purchases", "clv"} <= set(numeric.columns)
    not_finite = {c: int((~np.isfinite(numeric[c].to_numpy(float))).sum()) for c in numeric.columns}
    assert not any(not_finite.values()), (
        f"columns with non-finite values: { {c: n for c, n in not_finite.items() if n} }"
    )
    return predictions


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING:")]


def run_params(store: str, stdout: str) -> dict[str, str]:
    """The logged params of the run whose id the summary printed."""
    from mlflow.tracking import MlflowClient

    run_id = re.search(r"^run id\s+(\w+)", stdout, re.MULTILINE).group(1)
    return MlflowClient(tracking_uri=store).get_run(run_id).data.params


def write_log(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------------------------
# the documented CDNOW runs


def test_train_on_the_cdnow_sample(tmp_path, store, cdnow_sample_purchasers):
    proc, out = train_cli(tmp_path, store, "--data", "cdnow_sample")
    assert_completed(proc, out, cdnow_sample_purchasers)
    assert (tmp_path / "models" / "cdnow_sample" / "value_model.json").is_file()


def test_train_with_the_paper_config(tmp_path, store, cdnow_sample_purchasers):
    """``make experiments`` runs this config: BG/NBD against Pareto/NBD on the CDNOW sample."""
    proc, out = train_cli(tmp_path, store, "--config", str(REPO / "experiments" / "cdnow_paper.yaml"))
    assert_completed(proc, out, cdnow_sample_purchasers)
    assert (tmp_path / "models" / "cdnow_paper" / "value_model.json").is_file()


def test_train_on_the_cdnow_sample_with_the_papers_periods(tmp_path, store, cdnow_sample_purchasers):
    proc, out = train_cli(
        tmp_path, store, "--data", "cdnow_sample", "--calibration-end", "1997-09-30", "--observation-end", "1998-06-30"
    )
    assert_completed(proc, out, cdnow_sample_purchasers)


# ------------------------------------------------------------------------------------------------
# odd but valid logs


def test_train_on_40_customers(tmp_path, store):
    frame = forty_customers(days=365, seed=4)
    assert frame["customer_id"].nunique() == 40
    data = write_log(frame, tmp_path / "forty.csv")
    proc, out = train_cli(tmp_path, store, "--data", str(data))
    assert_completed(proc, out, purchasers(frame))


def test_train_without_a_repeat_buyer_in_the_calibration_period(tmp_path, store):
    frame = late_repeaters(n=200, days=540, seed=7)
    # the log is what it claims: at the default calibration end (the midpoint of the span) nobody
    # has bought twice, while half the customers buy again afterwards
    days = purchase_days(frame).to_frame(index=False, name=["customer_id", "day"])
    first, last = days["day"].min(), days["day"].max()
    calibration_end = (first + (last - first) / 2).normalize()
    in_calibration = days[days["day"] <= calibration_end].groupby("customer_id").size()
    assert in_calibration.max() == 1
    assert (days.groupby("customer_id").size() > 1).sum() >= 50
    data = write_log(frame, tmp_path / "late_repeaters.csv")

    proc, out = train_cli(tmp_path, store, "--data", str(data))

    assert_completed(proc, out, purchasers(frame))
    # a stage that cannot be estimated on valid data degrades with a warning line that says why
    said = [line for line in warning_lines(proc.stderr) if re.search(r"repeat|out.of.time|evaluat|holdout", line, re.I)]
    assert said, "no warning line about the calibration period's missing repeat buyers:\n" + proc.stderr[-3000:]


def test_a_boundary_fit_completes_with_a_warning(tmp_path, store):
    """Nobody drops out, everyone buys at their own Poisson rate: BG/NBD's dropout parameters run
    to a boundary. The run completes, says so in a warning line and logs the penalizer it used."""
    frame = no_dropout(n=400, days=365, seed=1)
    data = write_log(frame, tmp_path / "no_dropout.csv")

    proc, out = train_cli(tmp_path, store, "--data", str(data))

    assert_completed(proc, out, purchasers(frame))
    said = [line for line in warning_lines(proc.stderr) if re.search(r"boundary|penaliz|ridge|limiting", line, re.I)]
    assert said, "no warning line about the boundary fit:\n" + proc.stderr[-3000:]
    params = run_params(store, proc.stdout)
    assert any(key.endswith("penalizer_used") for key in params), sorted(params)[:50]
