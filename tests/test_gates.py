"""Churn when the data allow, and the quality gates: the churn model against its baselines on the
held-out cut-off, the value model's holdout total. Through the console script where the user
would see them: the warning lines, the run summary, the tags, the report and ``crmvalue predict``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import simulated_transactions

from crmvalue import churn
from crmvalue.config import ChurnConfig
from crmvalue.models import BetaGeoParams, GammaGammaParams
from crmvalue.predict import predict
from crmvalue.quality import value_gate
from crmvalue.report import build_report
from crmvalue.simulate import simulate_transactions

CLI = str(Path(sys.executable).with_name("crmvalue"))
DAILY = BetaGeoParams(r=0.25, alpha=28.0, a=0.8, b=2.5)  # CDNOW-like rates, per day
SPEND = GammaGammaParams(6.0, 4.0, 15.0)


def _train(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """``crmvalue train`` on ``tmp/tx.csv`` with a store, export and models/ of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [
        CLI,
        "train",
        "--data",
        "tx.csv",
        "--time-unit",
        "days",
        "--tracking-uri",
        f"sqlite:///{tmp}/mlflow.db",
        "--out",
        str(tmp / "predictions.csv"),
        "--quiet",
        *args,
    ]
    return subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)


def _warnings(stderr: str, about: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING") and about in line]


def _run(tmp: Path, stdout: str):
    run_id = stdout.split()[2]  # "run id          <id>  (experiment ...)"
    return mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db").get_run(run_id)


# --------------------------------------------------------------------------- churn: auto


@pytest.fixture(scope="module")
def short_log(tmp_path_factory) -> Path:
    """Nine months of purchases: the midpoint calibration end leaves 136 days of history, the churn
    protocol needs 2 x 90 + 60 = 240."""
    tmp = tmp_path_factory.mktemp("short")
    tx = simulated_transactions(n_customers=400, seed=3)
    tx[tx["date"] < "2020-10-01"].to_csv(tmp / "tx.csv", index=False)
    return tmp


def test_auto_skips_churn_on_short_data_through_the_console_script(short_log):
    tmp = short_log
    done = _train(tmp)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    skipped = _warnings(done.stderr, "churn")
    assert len(skipped) == 1, done.stderr
    assert skipped[0].startswith(
        "WARNING: churn: skipped, the data have 136 days from 2020-01-01 to the calibration end"
    )
    assert "needs 240" in skipped[0] and "--churn makes this an error" in skipped[0]
    summary = [line for line in done.stdout.splitlines() if line.startswith("churn")]
    assert summary == ["churn           skipped: " + skipped[0].split("skipped, ")[1].split("; the run goes on")[0]]
    export = pd.read_csv(tmp / "predictions.csv")
    assert len(export) > 300 and not {"churn_probability", "churn_risk"} & set(export.columns)

    run = _run(tmp, done.stdout)
    assert run.data.tags["crmvalue.churn"].startswith("skipped: the data have 136 days")
    assert "crmvalue.churn_scorer" not in run.data.tags and not any(k.startswith("churn.") for k in run.data.metrics)
    assert run.data.params["config.churn.enabled"] == "auto"
    assert not (tmp / "models" / "tx" / "churn_model.txt").exists()
    assert (tmp / "models" / "tx" / "value_model.json").is_file()
    page = build_report(run.info.run_id, f"sqlite:///{tmp}/mlflow.db")
    assert "The churn model was skipped in this run: the data have 136 days" in page

    # the run's model scores new data the same way: no churn columns, nothing asked for
    out = tmp / "scores.csv"
    predict(
        "models:/tx-value/1",
        tmp / "tx.csv",
        run.data.params["config.observation_end"],
        out,
        tracking_uri=f"sqlite:///{tmp}/mlflow.db",
    )
    scored = pd.read_csv(out)
    same = [c for c in export.columns if c != "run_id"]
    pd.testing.assert_frame_equal(scored[same], export[same], check_exact=True)


def test_churn_flag_stays_strict_on_short_data(short_log, tmp_path):
    (tmp_path / "tx.csv").write_bytes((short_log / "tx.csv").read_bytes())
    done = _train(tmp_path, "--churn")
    assert done.returncode == 2
    assert (
        done.stderr.startswith("error: churn: the model needs 240 days of data up to") and done.stderr.count("\n") == 1
    )
    assert "--no-churn" in done.stderr
    assert not (tmp_path / "predictions.csv").exists()


def _closed_for_a_quarter(n_customers: int = 600, seed: int = 5) -> pd.DataFrame:
    """A shop that sold nothing from October to December 2020: at the held-out cut-off of the
    churn test (the calibration end 2020-12-31 minus 90 days) every customer churns."""
    tx = simulated_transactions(n_customers=n_customers, seed=seed)
    day = tx["date"].dt.normalize()
    return tx[(day <= "2020-10-02") | (day > "2020-12-31")]


def test_auto_skips_a_churn_stage_it_cannot_estimate_and_churn_true_refuses(tmp_path, caplog):
    """Long enough, but labels of one class where the model is stopped and calibrated."""
    from crmvalue.config import load_config
    from crmvalue.errors import CrmvalueError
    from crmvalue.pipeline import train
    from crmvalue.tracking.writer import InMemoryRunWriter

    tx = _closed_for_a_quarter()
    base = {
        "name": "closed",
        "calibration_end": "2020-12-31",
        "observation_end": "2021-12-31",
        "time_unit": "days",
        "out": str(tmp_path / "predictions.csv"),
        "models_dir": str(tmp_path / "models"),
    }
    with caplog.at_level("WARNING", logger="crmvalue"):
        result = train(load_config(None, base), data=tx, writer=InMemoryRunWriter())
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("churn")]
    assert len(skipped) == 1
    assert skipped[0].startswith("churn: skipped, the early-stopping rows hold only one class (every customer churns, ")
    assert skipped[0].endswith(
        "; the run goes on without churn_probability and churn_risk (churn.enabled: auto; --churn makes this an error)"
    )
    assert result.churn.skipped.startswith("the early-stopping rows hold only one class (every customer churns")
    assert "churn_probability" not in result.predictions and len(result.predictions) == 600
    with pytest.raises(CrmvalueError, match=r"^churn: the early-stopping rows hold only one class .* --no-churn"):
        train(load_config(None, {**base, "churn.enabled": True}), data=tx, writer=InMemoryRunWriter())


# --------------------------------------------------------------------------- the churn gate and the value gate


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """50 customers over 330 days, the issue's small case: 50 training rows for the churn test and
    fewer than LightGBM's 100 rows a leaf can split, so it learns a constant (best iteration 1).
    Every holdout purchase is repeated the next day (a promotion the value model cannot know of),
    so the holdout forecast of total purchases falls about half short."""
    tmp = tmp_path_factory.mktemp("gated")
    tx = simulate_transactions(50, DAILY, SPEND, end="2020-11-26", acquisition_days=30, seed=0)
    later = tx[tx["date"].dt.normalize() > "2020-08-28"]
    repeat = later.assign(date=later["date"] + pd.Timedelta(days=1))
    tx = pd.concat([tx, repeat[repeat["date"].dt.normalize() <= "2020-11-26"]], ignore_index=True)
    tx.to_csv(tmp / "tx.csv", index=False)
    done = _train(tmp, "--calibration-end", "2020-08-28", "--observation-end", "2020-11-26")
    assert done.returncode == 0, done.stderr
    return {"tmp": tmp, "done": done, "run": _run(tmp, done.stdout), "uri": f"sqlite:///{tmp}/mlflow.db"}


def test_the_gate_switches_to_a_baseline_when_lightgbm_cannot_learn(gated):
    run, done = gated["run"], gated["done"]
    m, tags = run.data.metrics, run.data.tags
    assert m["churn.best_iteration"] == 1 and m["churn.train_rows"] == 50
    # judged on the held-out cut-off of the final training (observation end - 90 days), never the test's
    assert m["churn.held_out.rows"] == 25
    assert m["baseline.bgnbd_no_purchase.held_out.brier"] == pytest.approx(0.0608, abs=5e-4)
    assert m["churn.held_out.brier"] == pytest.approx(0.1200, abs=5e-4)
    assert tags["crmvalue.churn"] == "ran" and tags["crmvalue.churn_scorer"] == "bgnbd_no_purchase"
    assert m["churn.held_out.lightgbm_live"] == 0
    assert tags["crmvalue.churn_gate"].startswith(
        "bgnbd_no_purchase: LightGBM's held-out Brier 0.1200 does not beat bgnbd_no_purchase's 0.0608"
    )
    assert "held-out cut-off 2020-08-28, 25 rows" in tags["crmvalue.churn_gate"]
    assert _warnings(done.stderr, "quality gate") == ["WARNING: churn: quality gate: " + tags["crmvalue.churn_gate"]]
    assert f"churn scorer    {tags['crmvalue.churn_gate']}" in done.stdout.splitlines()

    # the export is the baseline's calibrated probability, not LightGBM's constant
    export = pd.read_csv(gated["tmp"] / "predictions.csv", dtype={"customer_id": str})
    assert export["churn_probability"].nunique() > 10
    client = mlflow.tracking.MlflowClient(tracking_uri=gated["uri"])
    import json

    state = json.loads(
        Path(
            client.download_artifacts(run.info.run_id, "churn/churn_scoring.json", str(gated["tmp"] / "dl"))
        ).read_text()
    )
    assert state["scorer"] == "bgnbd_no_purchase" and state["baseline_calibration"]["baseline"] == "bgnbd_no_purchase"
    tx = pd.read_csv(gated["tmp"] / "tx.csv", parse_dates=["date"], dtype={"customer_id": str})
    data = churn.prepare(tx, "2020-11-26")
    rows = churn.feature_rows(
        data, "2020-11-26", 90, "days", label=False, bgnbd_params=BetaGeoParams(**state["bgnbd_params"])
    )
    by_hand = pd.Series(churn.baseline_probability(rows, state["baseline_calibration"]), index=rows["customer_id"])
    np.testing.assert_allclose(
        export.set_index("customer_id")["churn_probability"], by_hand.loc[export["customer_id"]], rtol=1e-12
    )
    # and the registered churn model is that run's
    assert client.get_model_version("tx-churn", "1").run_id == run.info.run_id


def test_predict_reproduces_the_gated_scorer(gated):
    out = gated["tmp"] / "scores.csv"
    result = predict("models:/tx-value/1", gated["tmp"] / "tx.csv", "2020-11-26", out, tracking_uri=gated["uri"])
    trained = pd.read_csv(gated["tmp"] / "predictions.csv", dtype={"customer_id": str})
    scored = pd.read_csv(out, dtype={"customer_id": str})
    assert list(scored.columns) == list(trained.columns) and "churn_probability" in scored
    same = [c for c in trained.columns if c != "run_id"]
    pd.testing.assert_frame_equal(scored[same], trained[same], check_exact=True)
    assert (scored["run_id"] == result.run_id).all()


def test_value_gate_red_flag(gated):
    run, done = gated["run"], gated["done"]
    m, tags = run.data.metrics, run.data.tags
    error = m["holdout.predicted_total"] / m["holdout.actual_total"] - 1
    assert m["quality.holdout_total_error"] == pytest.approx(error) and error < -0.4
    assert m["quality.value_red_flag"] == 1
    text = (
        f"the holdout forecast of total purchases is {m['holdout.predicted_total']:,.0f} against "
        f"{m['holdout.actual_total']:,.0f} made ({error:+.0%}), beyond the ±25% of quality.max_total_error"
    )
    assert tags["crmvalue.value_gate"].startswith("red: " + text)
    flagged = _warnings(done.stderr, "red flag")
    assert len(flagged) == 1 and flagged[0].startswith("WARNING: value model: red flag, " + text)
    assert any(line.startswith("RED FLAG        " + text) for line in done.stdout.splitlines()), done.stdout
    page = build_report(run.info.run_id, gated["uri"])
    header = page[: page.index("</header>")]
    assert "<b>Red flag on the value model:</b> " + text in header.replace("&#x27;", "'")
    # and the churn section says which score the export uses
    assert "The LightGBM model does not beat the BG/NBD no-purchase probability on the held-out check" in page
    assert "scored by the BG/NBD no-purchase probability" in page  # the headline's risk card


def test_value_gate_by_hand():
    def gate(predicted, actual, limit=0.25):
        return value_gate(
            {"holdout.predicted_total": predicted, "holdout.actual_total": actual}, limit, "2020-01-01", "2020-06-30"
        )

    assert gate(130.0, 100.0) == {"quality.holdout_total_error": pytest.approx(0.3), "quality.value_red_flag": 1.0}
    assert gate(80.0, 100.0) == {"quality.holdout_total_error": pytest.approx(-0.2), "quality.value_red_flag": 0.0}
    assert gate(80.0, 100.0, limit=0.1)["quality.value_red_flag"] == 1.0
    assert gate(5.0, 0.0) == {"quality.value_red_flag": 1.0}  # something predicted, nothing made
    assert value_gate({}, 0.25, "2020-01-01", "2020-06-30") == {}  # no holdout evaluation: nothing to judge


@pytest.mark.slow
def test_the_gate_keeps_lightgbm_on_cdnow_master(cdnow_master):
    """The export's model at the default observation end, against the calibrated baselines on its
    held-out cut-off 1998-04-01: measured Brier 0.0879 against 0.0886 for BG/NBD's no-purchase probability."""
    data = churn.prepare(cdnow_master, "1998-06-30")
    cfg = ChurnConfig()
    rows = churn.training_rows(data, "1998-06-30", cfg, 90, "weeks", 0.0)
    model, _ = churn.fit_churn_model(rows, cfg)
    gate = churn.gate_churn_model(model, rows, cfg.seed)
    assert gate.cutoff == pd.Timestamp("1998-04-01") and gate.rows == 11785
    assert gate.scorer == "lightgbm", gate.reason
    for name in ("bgnbd_no_purchase", "bgnbd_p_alive", "recency"):
        assert gate.metrics["lightgbm"]["brier"] < gate.metrics[name]["brier"], name
    assert gate.metrics["lightgbm"]["brier"] == pytest.approx(0.0879, abs=5e-4)


# --------------------------------------------------------------------------- identifiers are not features


def test_a_column_unique_per_customer_is_never_a_churn_feature_unless_named(tmp_path):
    """An e-mail column lets LightGBM memorise customers: it is left out (one warning), and named in
    churn.attribute_columns it is used."""
    tx = simulated_transactions(n_customers=300, seed=5)
    tx.to_csv(tmp_path / "tx.csv", index=False)
    ids = sorted(tx["customer_id"].unique())
    pd.DataFrame(
        {
            "customer_id": ids,
            "email": [f"{c}@shop.example" for c in ids],
            "region": ["north", "south", "east"] * (len(ids) // 3) + ["west"] * (len(ids) % 3),
        }
    ).to_csv(tmp_path / "customers.csv", index=False)
    done = _train(tmp_path, "--churn", "--customers", "customers.csv")
    assert done.returncode == 0, done.stderr
    assert len(_warnings(done.stderr, "'email' is unique per customer")) == 1, done.stderr
    run = _run(tmp_path, done.stdout)
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    importance = pd.read_csv(
        client.download_artifacts(run.info.run_id, "churn/feature_importance_gain.csv", str(tmp_path))
    )
    assert "attr_region" in set(importance["feature"]) and "attr_email" not in set(importance["feature"])

    chosen = churn.feature_attributes(pd.read_csv(tmp_path / "customers.csv", index_col="customer_id"), ["email"])
    assert list(chosen.columns) == ["email"]
    plain = churn.feature_attributes(
        pd.DataFrame({"phone": np.arange(100, dtype=np.int64) + 4915100000, "spend": np.linspace(1, 2, 100)}), None
    )
    assert list(plain.columns) == ["spend"]  # an integer identifier goes, a continuous measure stays
