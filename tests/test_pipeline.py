"""End to end: the MLflow run's contents, the pyfunc reloaded in a fresh process, the export, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import simulated_transactions, synthetic_config

from crmvalue import schema
from crmvalue.config import load_config
from crmvalue.pipeline import train
from crmvalue.tracking import DEFAULT_TRACKING_URI, resolve_tracking_uri

# the issues' exact order: the id and the purchase history a CRM user reads (issue 14), the backbone's
# columns with churn after quadrant, then the CRM analyses
EXPORT = [
    "customer_id",
    "orders",
    "revenue",
    "first_purchase",
    "last_purchase",
    "tenure_days",
    "frequency",
    "recency",
    "T",
    "monetary_value",
    "current_value",
    "p_alive",
    "expected_purchases",
    "expected_avg_value",
    "expected_revenue",
    "clv",
    "potential_value",
    "quadrant",
    "churn_probability",
    "churn_risk",
    "value_at_risk",
    "retention_priority",
    "next_action",
    "run_id",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_score",
    "rfm_segment",
    "cpm_group",
    "cpm_label",
    "value_decile",
    "crm_value",
    "crm_grade",
    "revenue_cost_value",
]

CLI = str(Path(sys.executable).with_name("crmvalue"))


def _config(tmp: Path, **overrides):
    return synthetic_config(tmp, **overrides)


@pytest.fixture(scope="module")
def trained(synthetic_run):
    """The session's shared run (conftest): 400 simulated customers, seed 3, the defaults; read only."""
    return synthetic_run.tmp, synthetic_run.cfg, synthetic_run.result


def _client(cfg):
    return mlflow.tracking.MlflowClient(tracking_uri=cfg.tracking_uri)


def test_run_has_named_params_metrics_and_tags(trained):
    tmp, cfg, result = trained
    run = _client(cfg).get_run(result.run_id)
    for name in ("bgnbd.r", "bgnbd.alpha", "bgnbd.a", "bgnbd.b", "gamma_gamma.p", "gamma_gamma.q", "gamma_gamma.v"):
        assert float(run.data.params[name]) > 0
    assert float(run.data.params["bgnbd.r"]) == pytest.approx(result.value_model.purchase.r)
    assert run.data.params["purchase_model"] == "bgnbd"
    assert run.data.params["config.data.customer_col"] == "customer_id"
    assert run.data.params["config.calibration_end"] == "2020-12-31"
    for name in (
        "bgnbd.log_likelihood",
        "holdout.mae",
        "holdout.rmse",
        "holdout.predicted_total",
        "holdout.actual_total",
        "baseline.naive_rate.holdout.mae",
    ):
        assert np.isfinite(run.data.metrics[name]), name
    assert run.data.metrics["bgnbd.log_likelihood"] < 0
    for name in ("bgnbd.r", "bgnbd.alpha", "bgnbd.a", "bgnbd.b", "gamma_gamma.p", "gamma_gamma.q", "gamma_gamma.v"):
        model, param = name.split(".")
        value = float(run.data.params[name])
        assert run.data.metrics[f"{model}.ci95_lower.{param}"] < value < run.data.metrics[f"{model}.ci95_upper.{param}"]
        assert run.data.metrics[f"{model}.se.{param}"] > 0
    assert run.data.metrics["holdout.actual_total"] == result.metrics["holdout.actual_total"] > 0
    tags = run.data.tags
    assert len(tags["crmvalue.data_sha256"]) == 64
    assert tags["crmvalue.version"]
    assert tags["crmvalue.git_commit"]
    assert _client(cfg).get_experiment(run.info.experiment_id).name == "synthetic"


def test_run_artifacts(trained, tmp_path):
    tmp, cfg, result = trained
    client = _client(cfg)
    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"predictions.csv", "quadrant_summary.csv", "config.yaml", "plots"} <= names
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert plots == {
        f"plots/{name}.png"
        for name in (
            "quadrants",
            "calibration_vs_holdout",
            "p_alive_distribution",  # the run's results
            "period_transactions",
            "tracking",
            "p_alive_matrix",
            "expected_purchases_matrix",
            "spend_fit",  # fit diagnostics
            "churn_feature_importance",
            "churn_roc",
            "churn_precision_recall",
            "churn_reliability",  # the churn model
            "rfm_segments",
            "cpm_groups",
            "deciles",
            "retention",
            "cohort_retention",
            "revenue_cost",  # the CRM analyses
        )
    }
    assert {a.path for a in client.list_artifacts(result.run_id, "analyses")} == {
        f"analyses/{name}.csv"
        for name in (
            "rfm_segments",
            "cpm_groups",
            "deciles",
            "retention",
            "cohort_retention",
            "revenue_cost",
            "revenue_cost_vs_clv",
            "crm_components",
        )
    }
    assert {a.path for a in client.list_artifacts(result.run_id, "churn")} == {
        "churn/churn_calibration.json",
        "churn/churn_scoring.json",
        "churn/feature_importance_gain.csv",
        "churn/test_scores.csv",
    }
    tables = {a.path for a in client.list_artifacts(result.run_id, "diagnostics")}
    assert tables == {
        f"diagnostics/{name}.csv"
        for name in ("period_transactions", "tracking", "p_alive_matrix", "expected_purchases_matrix", "spend_fit")
    }
    # the tracking table is the calibration fit's, out of time: it ends at the observation end
    tracking = pd.read_csv(client.download_artifacts(result.run_id, "diagnostics/tracking.csv", str(tmp_path / "dl")))
    assert tracking["actual_cumulative"].iloc[-1] == tracking["actual_incremental"].sum() > 0
    assert pd.Timestamp(tracking["period_end"].iloc[-1]) == pd.Timestamp("2021-12-31")
    period = pd.read_csv(
        client.download_artifacts(result.run_id, "diagnostics/period_transactions.csv", str(tmp_path / "dl"))
    )
    assert period["observed"].sum() == pytest.approx(period["expected"].sum()) == result.evaluation.holdout_customers
    local = client.download_artifacts(result.run_id, "predictions.csv", str(tmp_path / "dl"))
    pd.testing.assert_frame_equal(
        pd.read_csv(local, dtype={"customer_id": str}), pd.read_csv(cfg.output_path, dtype={"customer_id": str})
    )


def test_artifacts_live_beside_the_sqlite_store(trained):
    """Not in ./mlruns of whatever directory the run started in (a notebook's, a test's)."""
    tmp, cfg, result = trained
    client = _client(cfg)
    experiment = client.get_experiment(client.get_run(result.run_id).info.experiment_id)
    assert experiment.artifact_location == (tmp / "mlruns" / "synthetic").resolve().as_uri()
    assert list((tmp / "mlruns").rglob("predictions.csv"))


def test_artifact_root_of_tracking_uris(tmp_path, monkeypatch):
    from crmvalue.tracking import artifact_root

    monkeypatch.chdir(tmp_path)
    assert artifact_root("sqlite:///mlflow.db", "cdnow") == (tmp_path / "mlruns" / "cdnow").as_uri()
    assert artifact_root(f"sqlite:///{tmp_path}/store/mlflow.db", "x") == (tmp_path / "store" / "mlruns" / "x").as_uri()
    assert artifact_root("postgresql://user@host/db", "x") is None
    assert artifact_root("http://127.0.0.1:5000", "x") is None


def test_churn_metrics_and_the_lightgbm_model(trained, tmp_path):
    tmp, cfg, result = trained
    run = _client(cfg).get_run(result.run_id)
    for metric in ("roc_auc", "pr_auc", "brier", "log_loss", "lift_top_decile", "capture_top_decile"):
        assert np.isfinite(run.data.metrics[f"churn.{metric}"]), metric
        for baseline in ("bgnbd_p_alive", "bgnbd_no_purchase", "recency"):
            assert np.isfinite(run.data.metrics[f"baseline.{baseline}.{metric}"]), (baseline, metric)
    assert run.data.metrics["churn.brier_uncalibrated"] > 0
    # the lightgbm flavour, with a signature and an input example, reloads and scores
    import mlflow.lightgbm

    mlflow.set_tracking_uri(cfg.tracking_uri)
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    churn_model = next(m for m in models if m.name == "churn_model" and m.source_run_id == result.run_id)
    info = mlflow.models.get_model_info(churn_model.model_uri)
    assert info.signature is not None and info.saved_input_example_info is not None
    assert "lightgbm" in info.flavors
    booster = mlflow.lightgbm.load_model(churn_model.model_uri)
    example = result.churn.example
    np.testing.assert_allclose(booster.predict(example), result.churn.model.raw_proba(example), rtol=1e-12)
    # and the saved copy under models/<experiment>/ with its calibration
    assert (Path(cfg.models_dir) / cfg.name / "churn_model.txt").is_file()
    assert (Path(cfg.models_dir) / cfg.name / "churn_calibration.json").is_file()


def test_two_runs_give_identical_churn_scores(trained, tmp_path):
    tmp, cfg, result = trained
    again = train(_config(tmp_path), data=simulated_transactions(n_customers=400, seed=3))
    np.testing.assert_array_equal(again.predictions["churn_probability"], result.predictions["churn_probability"])
    assert {k: v for k, v in again.metrics.items() if k.startswith(("churn.", "baseline."))} == {
        k: v for k, v in result.metrics.items() if k.startswith(("churn.", "baseline."))
    }


def test_churn_on_a_sample_of_customers_still_scores_everyone(trained, tmp_path):
    """Above churn.sample_customers the model learns and is tested on a sample; every customer is scored."""
    _, _, result = trained
    sampled = train(
        _config(tmp_path, **{"churn": {"sample_customers": 250}, "analyses": {"enabled": False}}),
        data=simulated_transactions(n_customers=400, seed=3),
    )
    assert sampled.metrics["churn.sampled_customers"] == 250
    assert result.metrics["churn.sampled_customers"] == len(result.predictions) == len(sampled.predictions)
    assert sampled.predictions["churn_probability"].notna().all()
    assert sampled.metrics["churn.test_rows"] < result.metrics["churn.test_rows"]


def test_export_schema(trained):
    tmp, cfg, result = trained
    export = pd.read_csv(cfg.output_path, dtype={"customer_id": str})
    assert list(export.columns) == EXPORT
    assert export["customer_id"].is_unique
    assert export["churn_probability"].between(0, 1).all()
    assert set(export["churn_risk"]) <= {"high", "medium", "low"}
    assert export["rfm_score"].astype(str).str.fullmatch(r"[1-5]{3}").all()
    assert export["cpm_group"].between(1, 10).all() and export["value_decile"].between(1, 10).all()
    assert export["crm_value"].between(0, 100).all() and set(export["crm_grade"]) <= {"high", "medium", "low"}
    assert len(export) == 400
    assert (export["run_id"] == result.run_id).all()
    assert set(export["quadrant"]) <= {"A", "B", "C", "D"}
    numeric = export[["p_alive", "expected_purchases", "expected_avg_value", "clv"]].to_numpy()
    assert np.isfinite(numeric).all()
    assert ((export["p_alive"] >= 0) & (export["p_alive"] <= 1)).all()
    assert (export["potential_value"] == export["clv"]).all()
    # the horizon's revenue, undiscounted: the expected purchases times the expected spend (the file rounds money to cents)
    raw = result.predictions
    np.testing.assert_allclose(
        raw["expected_revenue"], raw["expected_purchases"] * raw["expected_avg_value"], rtol=1e-12
    )
    rounding = 0.005 * (1 + export["expected_purchases"])  # both money columns are rounded to cents in the file
    assert (
        (export["expected_revenue"] - export["expected_purchases"] * export["expected_avg_value"])
        .abs()
        .le(rounding)
        .all()
    )
    assert not list(cfg.output_path.parent.glob("*.tmp"))
    assert (Path(cfg.models_dir) / cfg.name / "value_model.json").is_file()


def test_pyfunc_reloads_in_a_fresh_process(trained, tmp_path):
    tmp, cfg, result = trained
    # the run's own full-precision inputs (the CSV rounds money to cents and writes counts as integers,
    # which the pyfunc's double schema refuses unless cast)
    export = result.predictions
    export[["frequency", "recency", "T", "monetary_value"]].to_parquet(tmp_path / "input.parquet", index=False)
    script = (
        "import sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({cfg.tracking_uri!r})\n"
        f"model = mlflow.pyfunc.load_model({result.model_uri!r})\n"
        f"out = model.predict(pd.read_parquet({str(tmp_path / 'input.parquet')!r}))\n"
        f"out.to_csv({str(tmp_path / 'output.csv')!r}, index=False)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    reloaded = pd.read_csv(tmp_path / "output.csv")
    assert list(reloaded.columns) == ["p_alive", "expected_purchases", "expected_avg_value", "expected_revenue", "clv"]
    np.testing.assert_allclose(reloaded.to_numpy(), export[list(reloaded.columns)].to_numpy(), rtol=1e-12)
    written = pd.read_csv(cfg.output_path, dtype={"customer_id": str})
    np.testing.assert_allclose(written["clv"], reloaded["clv"].round(2), rtol=0, atol=1e-9)  # the file: cents
    np.testing.assert_allclose(written["p_alive"], reloaded["p_alive"], rtol=1e-12)  # probabilities in full


def test_a_failed_run_leaves_the_previous_file_and_no_partial_one(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    cfg.output_path.parent.mkdir(parents=True)
    cfg.output_path.write_text("previous complete export\n")

    from crmvalue import plots

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while plotting")

    monkeypatch.setattr(plots, "p_alive_distribution", broken)
    with pytest.raises(RuntimeError):
        train(cfg, data=simulated_transactions(n_customers=200, seed=5))
    assert cfg.output_path.read_text() == "previous complete export\n"
    assert sorted(p.name for p in cfg.output_path.parent.iterdir()) == ["predictions.csv"]
    assert not (Path(cfg.models_dir) / cfg.name).exists()
    runs = _client(cfg).search_runs([_client(cfg).get_experiment_by_name("synthetic").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_parquet_export_and_churn_turned_off(tmp_path):
    cfg = _config(tmp_path, out=str(tmp_path / "scores.parquet"), **{"churn.enabled": False})
    result = train(cfg, data=simulated_transactions(n_customers=200, seed=7))
    frame = pd.read_parquet(tmp_path / "scores.parquet")
    assert (
        list(frame.columns) == schema.names((schema.ID, *schema.HISTORY, *schema.VALUE, schema.RUN_ID)) + EXPORT[-11:]
    )  # no churn columns
    assert (frame["run_id"] == result.run_id).all()
    assert result.churn is None and not any(k.startswith("churn.") for k in result.metrics)


def test_spend_that_grows_with_frequency_is_warned_about(tmp_path, caplog):
    tx = simulated_transactions(n_customers=300, seed=7)
    purchases = tx.groupby("customer_id")["date"].transform("size")
    tx["amount"] = tx["amount"] * purchases**1.5  # heavy buyers spend more: Gamma-Gamma's assumption fails
    with caplog.at_level("WARNING", logger="crmvalue"):
        result = train(_config(tmp_path), data=tx)
    assert result.metrics["gamma_gamma.frequency_spend_correlation"] > 0.3
    assert any("independence assumption" in r.message for r in caplog.records)


def test_auto_compares_the_models_in_nested_child_runs(tmp_path):
    cfg = _config(tmp_path, **{"model.purchase_model": "auto", "model.penalizer": 0.001})
    result = train(cfg, data=simulated_transactions(n_customers=400, seed=3))
    client = _client(cfg)
    parent = client.get_run(result.run_id)
    experiment = parent.info.experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert sorted(c.data.tags["crmvalue.candidate"] for c in children) == ["bgnbd", "mbgnbd", "paretonbd"]
    rmses = {c.data.tags["crmvalue.candidate"]: c.data.metrics["holdout.rmse"] for c in children}
    winner = min(rmses, key=rmses.get)
    assert parent.data.params["purchase_model"] == winner == result.evaluation.winner
    assert "lowest holdout per-customer RMSE" in parent.data.tags["crmvalue.selection"]
    assert [c.data.tags["crmvalue.winner"] for c in children if c.data.tags["crmvalue.candidate"] == winner] == ["true"]
    for child in children:
        name = child.data.tags["crmvalue.candidate"]
        m = child.data.metrics
        for key in (f"{name}.log_likelihood", f"{name}.aic", f"{name}.bic", "holdout.rmse"):
            assert key in m, (name, key)
        first = next(k for k in m if k.startswith(f"{name}.se."))
        param = first.rsplit(".", 1)[1]
        assert (
            m[f"{name}.ci95_lower.{param}"]
            < float(child.data.params[f"{name}.{param}"])
            < m[f"{name}.ci95_upper.{param}"]
        )
        assert {a.path for a in client.list_artifacts(child.info.run_id, "plots")} == {
            f"plots/{name}.png"
            for name in (
                "calibration_vs_holdout",
                "period_transactions",
                "tracking",
                "p_alive_matrix",
                "expected_purchases_matrix",
            )
        }
        assert "diagnostics/conditional_expectations.csv" in {
            a.path for a in client.list_artifacts(child.info.run_id, "diagnostics")
        }
    assert parent.data.metrics["holdout.rmse"] == pytest.approx(rmses[winner])


def test_intervals_are_appended_to_the_export(tmp_path):
    cfg = _config(tmp_path, **{"intervals.enabled": True, "intervals.draws": 50})
    train(cfg, data=simulated_transactions(n_customers=300, seed=3))
    export = pd.read_csv(cfg.output_path, dtype={"customer_id": str})
    assert list(export.columns) == EXPORT + [
        "expected_purchases_lower",
        "expected_purchases_upper",
        "clv_lower",
        "clv_upper",
        "purchases_lower",
        "purchases_upper",
        "revenue_lower",
        "revenue_upper",
    ]
    assert (export["expected_purchases_lower"] <= export["expected_purchases"] + 1e-12).all()
    assert (export["clv"] <= export["clv_upper"] + 1e-12).all()
    # then what the customer will do, not the expectation: whole purchases, and revenue
    assert export["purchases_upper"].dtype == np.int64
    assert (export["purchases_lower"] <= export["purchases_upper"]).all()
    assert (export["revenue_lower"] <= export["revenue_upper"]).all()


def test_tracking_uri_precedence(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert resolve_tracking_uri(None) == "sqlite:///from-env.db"
    assert resolve_tracking_uri("sqlite:///from-flag.db") == "sqlite:///from-flag.db"


def test_cli_end_to_end_on_a_small_file(tmp_path):
    """No --tracking-uri: the run lands in ./mlflow.db, MLflow's local SQLite store."""
    tx = simulated_transactions(n_customers=250, seed=8).rename(
        columns={"customer_id": "cust", "date": "ts", "amount": "revenue"}
    )
    tx.to_csv(tmp_path / "tx.csv", index=False)
    ids = sorted(tx["cust"].unique())
    pd.DataFrame({"id": ids, "segment": np.where(np.arange(len(ids)) % 3 == 0, "gold", "basic")}).to_csv(
        tmp_path / "customers.csv", index=False
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        [
            CLI,
            "train",
            "--data",
            "tx.csv",
            "--customer-col",
            "cust",
            "--date-col",
            "ts",
            "--amount-col",
            "revenue",
            "--calibration-end",
            "2020-12-31",
            "--observation-end",
            "2021-12-31",
            "--time-unit",
            "days",
            "--customers",
            "customers.csv",
            "--customers-id-col",
            "id",
            "--out",
            "out/scores.csv",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "run id" in proc.stdout and "quadrants" in proc.stdout and "out/scores.csv" in proc.stdout
    assert "building RFM features" in proc.stderr  # progress is shown
    assert "Traceback" not in proc.stderr
    scores = pd.read_csv(tmp_path / "out" / "scores.csv", dtype={"customer_id": str})
    assert list(scores.columns) == EXPORT and len(scores) == 250
    assert "churn           out-of-time ROC AUC" in proc.stdout
    assert (tmp_path / "mlflow.db").is_file()
    run = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(scores["run_id"][0])
    assert run.data.params["config.data.source"] == "tx.csv"
    assert run.info.status == "FINISHED"
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_experiment(run.info.experiment_id).name == "tx"  # --data alone: named after the file
    # the customer table's category reached the churn model as codes, and its logged model scores
    # through the generic pyfunc interface, schema enforcement included
    assert "analyses/segments_segment.csv" in {a.path for a in client.list_artifacts(run.info.run_id, "analyses")}
    categories = client.download_artifacts(run.info.run_id, "churn/attribute_categories.json", str(tmp_path / "dl"))
    assert json.loads(Path(categories).read_text()) == {"attr_segment": ["basic", "gold"]}
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    uri = next(m.model_uri for m in models if m.name == "churn_model")
    example = mlflow.models.Model.load(uri).load_input_example(mlflow.artifacts.download_artifacts(uri))
    assert "attr_segment" in example.columns
    assert np.all(mlflow.pyfunc.load_model(uri).predict(example) >= 0)


@pytest.mark.slow
def test_default_experiment_on_cdnow_master(tmp_path):
    cfg = load_config(
        Path(__file__).parents[1] / "experiments" / "cdnow.yaml",
        {
            "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
            "out": str(tmp_path / "p.csv"),
            "models_dir": str(tmp_path / "m"),
        },
    )
    result = train(cfg)
    p = result.predictions
    assert len(p) == 23_570 and p["customer_id"].is_unique
    assert np.isfinite(p[["p_alive", "expected_purchases", "expected_avg_value", "clv"]].to_numpy()).all()
    assert result.quadrants["customers"].sum() == 23_570
    # honest evaluation: the model must beat the naive-rate baseline out of time
    assert result.metrics["holdout.mae"] < result.metrics["baseline.naive_rate.holdout.mae"]
    # 0.11 is the published figure for the sample at 1997-09-30 (test_models); master to 1998-06-30 is lower
    assert 0 < result.metrics["gamma_gamma.frequency_spend_correlation"] < 0.3


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """mkstemp makes private files; an export is for other people and programs to read."""
    import os

    from crmvalue.io import atomic_write_text

    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "out.csv", "a\n")
    finally:
        os.umask(mask)
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o644


def test_default_segment_columns_skip_id_like_columns_and_named_ones_must_exist(caplog):
    from crmvalue.analyses import segment_columns as _segment_columns
    from crmvalue.errors import CrmvalueError

    attributes = pd.DataFrame(
        {"region": ["n", "s"] * 50, "email": [f"{i}@x" for i in range(100)], "age": np.arange(100.0)}
    )
    assert _segment_columns(None, attributes) == ["region"]
    assert "'email' has 100 values" in caplog.text
    assert _segment_columns(["email"], attributes) == ["email"]
    with pytest.raises(
        CrmvalueError, match="no column 'plan' in the customer table; its columns are region, email, age"
    ):
        _segment_columns(["plan"], attributes)
