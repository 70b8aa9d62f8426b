"""Delivery to the CRM: registry, promote, predict (no refit), database export and bulk files.

The database tests run against SQLite and against a real PostgreSQL server. ``make test`` starts
a throwaway server when PostgreSQL is installed (``.ci/with-postgres``) and hands its superuser
URL over in ``CRMVALUE_TEST_POSTGRES_URL``; each test module creates and drops its own database.
Without a server those tests skip, except in CI (``CRMVALUE_REQUIRE_POSTGRES=1``), where a skip
is a failure.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from databases import fresh_postgres_database, read_table

from crmvalue import export as ex
from crmvalue.config import load_config
from crmvalue.errors import CrmvalueError
from crmvalue.pipeline import train
from crmvalue.predict import predict

CLI = str(Path(sys.executable).with_name("crmvalue"))
pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------
# Fixtures: one store with two train runs and a predict run; the two databases
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("delivery")
    uri = f"sqlite:///{tmp}/mlflow.db"
    common = {"tracking_uri": uri, "models_dir": str(tmp / "models"), "data.source": "cdnow_sample"}
    first = train(load_config(None, {**common, "name": "delivery", "out": str(tmp / "first.csv")}))
    # a second version without churn, in a Parquet file, to check what a run without churn exports
    second = train(
        load_config(None, {**common, "name": "delivery", "out": str(tmp / "second.parquet"), "churn.enabled": False})
    )
    return {
        "tmp": tmp,
        "uri": uri,
        "first": first,
        "second": second,
        "client": mlflow.tracking.MlflowClient(tracking_uri=uri),
    }


@pytest.fixture(scope="module")
def predicted(store):
    out = store["tmp"] / "scores.csv"
    result = predict("models:/delivery-value/1", "cdnow_sample", "1998-06-30", out, tracking_uri=store["uri"])
    return result, out


@pytest.fixture(scope="module")
def postgres_database():
    """A database of our own on the test server, dropped at the end."""
    yield from fresh_postgres_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request, tmp_path):
    """A database URL with no crmvalue tables yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/crm.db"
        return
    url = request.getfixturevalue("postgres_database")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a clean slate in the module's database for each test
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    yield url


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _cli(*args, env=None, check=False):
    return subprocess.run([CLI, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, check=check)


# ------------------------------------------------------------------------------------------
# Registry and predict
# ------------------------------------------------------------------------------------------


def test_each_train_registers_new_versions(store):
    client = store["client"]
    assert store["first"].registered == {"delivery-value": 1, "delivery-churn": 1}
    assert store["second"].registered == {"delivery-value": 2}  # no churn model in that run
    v1 = client.get_model_version("delivery-value", "1")
    assert v1.run_id == store["first"].run_id
    assert client.get_model_version("delivery-churn", "1").run_id == store["first"].run_id
    assert client.get_run(store["first"].run_id).data.tags["crmvalue.value_model_version"] == "1"


def test_promote_moves_the_champion_of_both_models_of_one_run(store):
    from crmvalue.registry import promote

    client = store["client"]
    done = _cli("promote", "--name", "delivery", "--version", "1", env={"MLFLOW_TRACKING_URI": store["uri"]})
    assert done.returncode == 0, done.stderr
    assert "delivery-churn@champion -> version 1" in done.stdout
    assert str(client.get_model_version_by_alias("delivery-value", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("delivery-churn", "champion").version) == "1"
    # version 2 has no churn model: the churn alias must not stay on run 1's model
    assert promote(client, 2, experiment="delivery") == {"delivery-value": 2}
    assert str(client.get_model_version_by_alias("delivery-value", "champion").version) == "2"
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("delivery-churn", "champion")
    with pytest.raises(CrmvalueError, match="--version 99"):
        promote(client, 99, experiment="delivery")
    with pytest.raises(CrmvalueError, match="--name NAME.*registered models: delivery-churn, delivery-value"):
        promote(client, 1)  # which experiment's? never a guess
    assert promote(client, 1, value_model="delivery-value") == {"delivery-value": 1, "delivery-churn": 1}


def test_predict_on_the_training_data_reproduces_the_training_export_exactly(store, predicted):
    result, out = predicted
    trained = pd.read_csv(store["first"].output_path, dtype={"customer_id": str})
    scored = pd.read_csv(out, dtype={"customer_id": str})
    assert list(scored.columns) == list(trained.columns)  # the same export schema, churn and analyses included
    assert "churn_probability" in scored and "crm_value" in scored
    same = [c for c in trained.columns if c != "run_id"]
    pd.testing.assert_frame_equal(scored[same], trained[same], check_exact=True)
    assert (scored["run_id"] == result.run_id).all() and result.run_id != store["first"].run_id
    run = store["client"].get_run(result.run_id)
    assert run.data.tags["crmvalue.kind"] == "predict"
    assert run.data.tags["crmvalue.source_run_id"] == store["first"].run_id
    assert run.data.tags["crmvalue.value_model_version"] == "1"


def test_predict_on_new_data_scores_without_refitting(store, tmp_path, cdnow_sample):
    """Later data: more purchases, a later observation end; the model's parameters do not move."""
    later = cdnow_sample.copy()
    extra = later.groupby("customer_id").head(1).head(50).copy()
    extra["date"] = pd.Timestamp("1998-09-15")
    data = pd.concat([later, extra], ignore_index=True)
    out = tmp_path / "later.parquet"
    with pytest.raises(CrmvalueError, match="--quantity-col"):  # the churn model uses CDNOW's CD counts
        predict("models:/delivery-value/1", data, "1998-09-30", out, tracking_uri=store["uri"])
    result = predict(
        "models:/delivery-value/1", data, "1998-09-30", out, tracking_uri=store["uri"], quantity_col="quantity"
    )
    scored = pd.read_parquet(out)
    assert len(scored) == 2357
    bought = scored.set_index("customer_id").loc[extra["customer_id"], "frequency"]
    before = pd.read_csv(store["first"].output_path, dtype={"customer_id": str}).set_index("customer_id")
    assert (bought.to_numpy() == before.loc[extra["customer_id"], "frequency"].to_numpy() + 1).all()
    assert store["client"].get_run(result.run_id).data.params["observation_end"] == "1998-09-30"
    # the registry still holds two versions: nothing was trained
    assert len(store["client"].search_model_versions("name = 'delivery-value'")) == 2


def test_predict_refuses_drifted_data(store, tmp_path, cdnow_sample, crmvalue_main):
    renamed = tmp_path / "renamed.csv"
    cdnow_sample.rename(columns={"amount": "revenue"}).to_csv(renamed, index=False)
    early = tmp_path / "early.csv"
    old = cdnow_sample.copy()
    old.loc[5, "date"] = pd.Timestamp("1996-12-01")
    old.to_csv(early, index=False)
    v1 = "models:/delivery-value/1"
    cases = {
        "missing column": ((v1, renamed, "1998-06-30"), {"quantity_col": "quantity"}, ["renamed.csv", "amount"]),
        "no quantity": ((v1, early, "1998-06-30"), {}, ["--quantity-col"]),
        "before training data": (
            (v1, early, "1998-06-30"),
            {"quantity_col": "quantity"},
            ["early.csv", "'date'", "row 6", "1996-12-01", "1997-01-01"],
        ),
        "earlier observation end": ((v1, "cdnow_sample", "1998-01-01"), {}, ["1998-06-30"]),
        "unknown alias": (("models:/delivery-value@nobody", "cdnow_sample", "1998-06-30"), {}, ["nobody"]),
        "not a model uri": (("delivery-value", "cdnow_sample", "1998-06-30"), {}, ["models:/"]),
        "bad date": ((v1, "cdnow_sample", "someday"), {}, ["--observation-end"]),
    }
    for name, (args, kwargs, words) in cases.items():
        out = tmp_path / f"{name}.csv"
        with pytest.raises(CrmvalueError) as caught:
            predict(*args, out, tracking_uri=store["uri"], **kwargs)
        message = str(caught.value)
        assert "\n" not in message, (name, message)
        for word in words:
            assert word in message, (name, message)
        assert not out.exists()
    # through the command's entry point (in process): one line, exit 2, no traceback, nothing written
    out = tmp_path / "cli.csv"
    done = crmvalue_main(
        "predict",
        "--model",
        v1,
        "--data",
        str(early),
        "--quantity-col",
        "quantity",
        "--observation-end",
        "1998-06-30",
        "--out",
        str(out),
        env={"MLFLOW_TRACKING_URI": store["uri"]},
    )
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert not out.exists()


# ------------------------------------------------------------------------------------------
# Database export: schema, idempotence, atomicity, credentials
# ------------------------------------------------------------------------------------------


def test_export_writes_the_documented_schema(store, database):
    first = store["first"]
    result = ex.export_run(first.run_id, database, tracking_uri=store["uri"])
    assert result.changed and result.rows == 2357
    table = read_table(database, "customer_scores")
    assert list(table.columns) == ex.COLUMNS
    engine = sa.create_engine(database)
    inspector = sa.inspect(engine)
    assert inspector.get_pk_constraint("customer_scores")["constrained_columns"] == ["customer_id"]
    assert inspector.get_pk_constraint("customer_scores_history")["constrained_columns"] == ["run_id", "customer_id"]
    types = {c["name"]: c["type"] for c in inspector.get_columns("customer_scores")}
    engine.dispose()
    assert isinstance(types["as_of_date"], sa.Date) and isinstance(types["scored_at"], sa.DateTime)
    assert isinstance(types["frequency"], sa.Integer) and isinstance(types["clv"], (sa.Float, sa.Double))
    exported = pd.read_csv(first.output_path, dtype={"customer_id": str}).set_index("customer_id").sort_index()
    table = table.set_index("customer_id").sort_index()
    assert (table.index == exported.index).all()
    np.testing.assert_array_equal(table["clv"].to_numpy(), exported["clv"].to_numpy())
    np.testing.assert_array_equal(table["churn_probability"].to_numpy(), exported["churn_probability"].to_numpy())
    assert (table["rfm_segment"] == exported["rfm_segment"]).all() and (table["quadrant"] == exported["quadrant"]).all()
    assert (table["run_id"] == first.run_id).all() and (table["model_version"] == 1).all()
    assert (pd.to_datetime(table["as_of_date"]).dt.date == dt.date(1998, 6, 30)).all()
    run = store["client"].get_run(first.run_id)
    scored_at = pd.Timestamp(table["scored_at"].iloc[0])
    expected = pd.Timestamp(run.info.end_time, unit="ms", tz="UTC")
    assert abs((scored_at.tz_localize("UTC") if scored_at.tzinfo is None else scored_at) - expected) < pd.Timedelta(
        seconds=1
    )


def test_a_run_without_churn_leaves_those_columns_empty(store, database):
    ex.export_run(store["second"].run_id, database, tracking_uri=store["uri"])
    table = read_table(database, "customer_scores")
    assert table["churn_probability"].isna().all() and table["churn_risk"].isna().all()
    assert (table["model_version"] == 2).all()
    # ids keep their leading zeros through the Parquet artifact
    assert table["customer_id"].str.len().eq(5).all()


def test_export_is_idempotent_and_keeps_every_run_in_the_history(store, predicted, database):
    first, predict_run = store["first"].run_id, predicted[0].run_id
    assert ex.export_run(first, database, tracking_uri=store["uri"]).changed
    snapshot = read_table(database, "customer_scores"), read_table(database, "customer_scores_history")
    again = ex.export_run(first, database, tracking_uri=store["uri"])
    assert not again.changed
    pd.testing.assert_frame_equal(read_table(database, "customer_scores"), snapshot[0])
    pd.testing.assert_frame_equal(read_table(database, "customer_scores_history"), snapshot[1])

    assert ex.export_run(predict_run, database, tracking_uri=store["uri"]).changed
    assert (read_table(database, "customer_scores")["run_id"] == predict_run).all()
    history = read_table(database, "customer_scores_history")
    assert history.groupby("run_id").size().to_dict() == {first: 2357, predict_run: 2357}
    # last month's scores beside this month's, per customer
    pair = history.pivot(index="customer_id", columns="run_id", values="clv")
    assert pair.notna().all().all()

    # going back to an older run makes it current again; the history does not grow
    assert ex.export_run(first, database, tracking_uri=store["uri"]).changed
    assert (read_table(database, "customer_scores")["run_id"] == first).all()
    assert len(read_table(database, "customer_scores_history")) == 2 * 2357
    assert "customer_scores__staging" not in _tables(database)


BIG = 120_000


@pytest.fixture(scope="module")
def big_run(store):
    """A run whose predictions are large enough to kill the exporter part-way (120,000 customers)."""
    base = pd.read_csv(store["first"].output_path, dtype={"customer_id": str})
    n = BIG
    big = base.iloc[np.arange(n) % len(base)].reset_index(drop=True)
    big["customer_id"] = [f"B{i:07d}" for i in range(n)]
    client = store["client"]
    experiment = client.get_experiment_by_name("delivery").experiment_id
    run = client.create_run(
        experiment,
        tags={
            "crmvalue.version": "test",
            "crmvalue.kind": "train",
            "crmvalue.as_of_date": "1998-06-30",
            "crmvalue.predictions_artifact": "big.csv",
        },
    )
    path = store["tmp"] / "big.csv"
    big.assign(run_id=run.info.run_id).to_csv(path, index=False)
    client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_killed_exporter_leaves_the_old_table_intact(store, big_run, database):
    first = store["first"].run_id
    ex.export_run(first, database, tracking_uri=store["uri"])
    before = read_table(database, "customer_scores")
    child = subprocess.Popen(
        [CLI, "export", "--run", big_run],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": store["uri"], ex.URL_ENV: database},
    )
    staged = []
    for line in child.stderr:  # progress lines: kill it once rows are being written
        if "staged" in line:
            staged.append(line)
            if len(staged) == 2:
                child.send_signal(signal.SIGKILL)
                break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, "the exporter finished before it could be killed"
    assert staged and f"of {BIG:,} rows" in staged[-1]
    after = read_table(database, "customer_scores")
    pd.testing.assert_frame_equal(after, before)
    assert set(read_table(database, "customer_scores_history")["run_id"]) == {first}
    assert "customer_scores__staging" not in _tables(database)
    # and the next export goes through
    assert ex.export_run(big_run, database, tracking_uri=store["uri"]).rows == BIG


def test_readers_see_the_old_table_or_the_new_one_never_a_mix(store, big_run, database):
    first = store["first"].run_id
    ex.export_run(first, database, tracking_uri=store["uri"])
    seen, errors, stop = [], [], threading.Event()
    engine = sa.create_engine(database)

    def read():
        while not stop.is_set():
            try:
                with engine.connect() as conn:
                    seen.append(
                        tuple(
                            conn.execute(
                                sa.text("SELECT count(*), count(DISTINCT run_id), min(run_id) FROM customer_scores")
                            ).one()
                        )
                    )
            except sa.exc.OperationalError as exc:  # SQLite: the writer holds the lock at commit
                if "locked" not in str(exc):
                    errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        ex.export_run(big_run, database, tracking_uri=store["uri"])
    finally:
        stop.set()
        reader.join()
        engine.dispose()
    assert not errors
    assert set(seen) <= {(2357, 1, first), (BIG, 1, big_run)}, set(seen)
    assert (2357, 1, first) in seen


PASSWORD = "s3cret-Pa55word-7f1c"


def test_credentials_never_leak(store, database, tmp_path):
    """A password in --to appears in no output, no MLflow param or tag, and no exported row."""
    env = {"MLFLOW_TRACKING_URI": store["uri"]}
    if database.startswith("postgresql"):
        url = sa.engine.make_url(database)
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP ROLE IF EXISTS crm_writer")
            conn.exec_driver_sql(f"CREATE ROLE crm_writer LOGIN PASSWORD '{PASSWORD}'")
            conn.exec_driver_sql("GRANT ALL ON SCHEMA public TO crm_writer")
        engine.dispose()
        target = url.set(username="crm_writer", password=PASSWORD).render_as_string(hide_password=False)
        wrong = url.set(username="crm_writer", password=PASSWORD + "x").render_as_string(hide_password=False)
        done = _cli("export", "--run", store["first"].run_id, "--to", target, env=env)
        assert done.returncode == 0, done.stderr
        assert "***" in done.stdout
        history = read_table(database, "customer_scores_history")
        assert not history.astype(str).apply(lambda c: c.str.contains(PASSWORD)).any().any()
    else:  # SQLite has no credentials: a URL carrying one is refused, without echoing it
        target = wrong = f"sqlite://crm_writer:{PASSWORD}@/{tmp_path}/crm.db"
        done = _cli("export", "--run", store["first"].run_id, "--to", target, env=env)
        assert done.returncode == 2 and done.stderr.startswith("error: ")
    failed = _cli("export", "--run", store["first"].run_id, "--to", wrong, env=env)
    assert failed.returncode == 2 and failed.stderr.strip().startswith("error: ")
    assert "Traceback" not in failed.stderr
    for output in (done.stdout, done.stderr, failed.stdout, failed.stderr):
        assert PASSWORD not in output
    client = store["client"]
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            assert PASSWORD not in repr(run.data.params) and PASSWORD not in repr(run.data.tags)


def test_table_names_are_identifiers(store, database, crmvalue_main):
    for bad in ("scores; DROP TABLE x", "1scores", "scores-2", "a" * 49, "public.scores"):
        with pytest.raises(CrmvalueError, match="--table"):
            ex.export_run(store["first"].run_id, database, bad, tracking_uri=store["uri"])
    done = crmvalue_main("export", "--to", database, "--table", "x;--", env={"MLFLOW_TRACKING_URI": store["uri"]})
    assert done.returncode == 2 and done.stderr.count("\n") == 1


# ------------------------------------------------------------------------------------------
# Bulk-upsert files
# ------------------------------------------------------------------------------------------


def test_salesforce_and_hubspot_files(store, tmp_path):
    run = store["first"].run_id
    env = {"MLFLOW_TRACKING_URI": store["uri"]}
    done = _cli("export", "--run", run, "--format", "salesforce", "--out", str(tmp_path / "salesforce.csv"), env=env)
    assert done.returncode == 0, done.stderr
    ex.export_file(run, "hubspot", tmp_path / "hubspot.csv", tracking_uri=store["uri"])
    for fmt, external in (("salesforce", "Crmvalue_Customer_Id__c"), ("hubspot", "crmvalue_customer_id")):
        out = tmp_path / f"{fmt}.csv"
        text = out.read_text(encoding="utf-8")
        header = text.splitlines()[0].split(",")
        assert header[0] == external and len(header) == len(set(header))
        frame = pd.read_csv(out, dtype=str, keep_default_na=False)
        assert len(frame) == 2357 and frame[external].str.len().eq(5).all()  # "00004" kept
        numbers = frame.drop(columns=[c for c in frame if frame[c].str.contains("[A-Za-z]").any()] + [header[1]])
        assert len(numbers.columns) >= 6
        for column in numbers:
            # plain decimals: no exponent, no thousands separator
            assert numbers[column].str.fullmatch(r"-?\d+(\.\d+)?").all(), column
        assert (frame[header[1]] == "1998-06-30").all()
    sf = pd.read_csv(tmp_path / "salesforce.csv", dtype={"Crmvalue_Customer_Id__c": str})
    original = pd.read_csv(store["first"].output_path, dtype={"customer_id": str})
    np.testing.assert_allclose(sf["Crmvalue_CLV__c"], original["clv"].round(2), atol=5e-3)
    np.testing.assert_allclose(sf["Crmvalue_P_Alive__c"], original["p_alive"], atol=5e-7)


def test_bulk_mapping_file(store, tmp_path):
    env = {"MLFLOW_TRACKING_URI": store["uri"]}
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("customer_id: External_Id__c\nclv: Lifetime_Value__c\nquadrant: Segment__c\n")
    out = tmp_path / "mapped.csv"
    done = _cli(
        "export",
        "--run",
        store["first"].run_id,
        "--format",
        "salesforce",
        "--out",
        str(out),
        "--mapping",
        str(mapping),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines()[0] == "External_Id__c,Lifetime_Value__c,Segment__c"
    bad = {
        "first: clv\n": "customer_id",
        "customer_id: Id__c\nnot_a_column: X__c\n": "not_a_column",
        "customer_id: Id__c\nclv: Id__c\n": "Id__c",
        "customer_id: Id__c\nchurn_probability: Churn__c\n": "churn_probability",  # the second run has no churn
    }
    for text, word in bad.items():
        mapping.write_text(text)
        with pytest.raises(CrmvalueError, match=word):
            ex.export_file(store["second"].run_id, "salesforce", tmp_path / "x.csv", mapping, tracking_uri=store["uri"])
        assert not (tmp_path / "x.csv").exists()
