"""``crmvalue plan``: the choice against brute force, the budget, the control group, the files,
the command's errors, the MLflow run and the database delivery.

The store is a copy of the session's `train` run (conftest ``synthetic_run``) whose experiment
keeps its new runs' artifacts in this module's own folder, so the shared run is only read. The
database tests run against SQLite and, when a server is available (``.ci/with-postgres``), a
real PostgreSQL, as tests/test_delivery.py does.
"""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from databases import fresh_postgres_database, read_table

from crmvalue import export as ex
from crmvalue.errors import CrmvalueError
from crmvalue.plan import (
    PLAN_COLUMNS,
    PlanSettings,
    affordable_contacts,
    build_plan,
    choose_contacts,
    control_size,
    decision_frame,
    plan_from_run,
)

PLAN_NAMES = [c.name for c in PLAN_COLUMNS]


def decisions(value_at_risk, priority=None) -> pd.DataFrame:
    """A decision frame: customers c0, c1, ... with these values at risk, priority 1..n unless given."""
    risk = np.asarray(value_at_risk, dtype=float)
    n = len(risk)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "value_at_risk": risk,
            "retention_priority": np.arange(1, n + 1) if priority is None else np.asarray(priority),
            "next_action": ["save now"] * n,
        }
    )


# ------------------------------------------------------------------------------------------
# The choice is optimal: brute force over every subset
# ------------------------------------------------------------------------------------------


def best_by_brute_force(gain: np.ndarray, cost: float, budget: float) -> float:
    n = len(gain)
    subsets = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
    feasible = subsets.sum(axis=1) * cost <= budget
    return float((subsets[feasible] @ gain).max())  # the empty set is feasible: the best is >= 0


SCENARIOS = {
    # value at risk, cost and budget drawn for each case
    "random": lambda rng, n: (rng.gamma(1.5, 60.0, n), rng.uniform(1, 20), rng.uniform(0, 120)),
    "budget not binding": lambda rng, n: (rng.gamma(1.5, 60.0, n), rng.uniform(1, 20), 1e6),
    "most gains negative": lambda rng, n: (rng.gamma(1.0, 10.0, n), rng.uniform(8, 15), rng.uniform(10, 60)),
    # gains -7.5, 0, 7.5 and 22.5: ties, and customers whose gain is zero
    "ties": lambda rng, n: (rng.choice([0.0, 50.0, 100.0, 200.0], n), 7.5, rng.choice([0.0, 7.5, 20.0, 30.0, 1e3])),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_choice_is_optimal_against_brute_force(scenario):
    rng = np.random.default_rng(sorted(SCENARIOS).index(scenario))
    negative_cases = binding_cases = 0
    for _ in range(150):
        n = int(rng.integers(1, 11))
        risk, cost, budget = SCENARIOS[scenario](rng, n)
        settings = PlanSettings(budget or 1e-9, cost, success_rate=0.3, margin=0.5, control_share=0.0, seed=0)
        frame = decisions(risk, priority=rng.permutation(n) + 1)
        gain = 0.3 * 0.5 * risk - cost
        plan = build_plan(frame, settings)
        chosen = frame["customer_id"].isin(plan.frame["customer_id"]).to_numpy()
        assert gain[chosen].sum() == pytest.approx(best_by_brute_force(gain, cost, settings.budget), abs=1e-9)
        assert plan.summary["expected_gain"] == pytest.approx(gain[chosen].sum(), abs=0.005)  # in cents
        assert (gain[chosen] > 0).all()  # never a customer whose gain is negative or zero
        assert chosen.sum() * cost <= settings.budget
        # as many as the budget allows, of those with a positive gain; ties to the smaller priority
        assert chosen.sum() == min(math.floor(settings.budget / cost + 1e-12), int((gain > 0).sum()))
        left_out = ~chosen & (gain > 0)
        for i in np.flatnonzero(chosen):
            beaten = gain[left_out] > gain[i]
            tied_ahead = (gain[left_out] == gain[i]) & (
                frame["retention_priority"].to_numpy()[left_out] < frame.at[i, "retention_priority"]
            )
            assert not beaten.any() and not tied_ahead.any()
        negative_cases += int((gain <= 0).mean() > 0.5)
        binding_cases += int(chosen.sum() < (gain > 0).sum())
    if scenario == "most gains negative":
        assert negative_cases > 100
    if scenario == "budget not binding":
        assert binding_cases == 0


def test_the_budget_buys_whole_contacts_as_the_computer_multiplies():
    assert affordable_contacts(0.3, 0.1, 10) == 2  # 3 x 0.1 = 0.30000000000000004 > 0.3
    assert affordable_contacts(31.2, 0.4, 100) == 77  # 31.2 / 0.4 = 78.0, but 78 x 0.4 = 31.200000000000003
    assert affordable_contacts(81.49, 2.81, 100) == 29  # 81.49 / 2.81 = 28.999999999999996, and 29 x 2.81 = 81.49
    assert affordable_contacts(10.0, 0.1, 1000) == 100
    assert affordable_contacts(1e300, 1e-300, 7) == 7  # capped at the customers there are
    assert affordable_contacts(4.99, 5.0, 3) == 0
    rng = np.random.default_rng(0)
    for budget, cost in zip(rng.uniform(0.01, 100, 500).round(2), rng.uniform(0.01, 10, 500).round(2), strict=True):
        k = affordable_contacts(float(budget), float(cost), 10**6)
        assert k * cost <= budget < (k + 1) * cost


def test_choose_contacts_breaks_ties_by_priority():
    gain = np.array([5.0, 5.0, 5.0, -1.0, 0.0])
    chosen = choose_contacts(gain, np.array([3, 1, 2, 4, 5]), 2)
    assert chosen.tolist() == [False, True, True, False, False]
    assert choose_contacts(gain, np.arange(5), 10).tolist() == [True, True, True, False, False]  # never gain <= 0


# ------------------------------------------------------------------------------------------
# Budget, control share and seed
# ------------------------------------------------------------------------------------------


def test_spend_stays_within_the_budget_and_the_control_is_its_share():
    rng = np.random.default_rng(1)
    for _ in range(40):
        frame = decisions(rng.gamma(1.2, 80.0, 400))
        settings = PlanSettings(
            float(rng.uniform(10, 3000)), float(rng.uniform(1, 30)), float(rng.uniform(0.05, 1)),
            float(rng.uniform(0.2, 1)), float(rng.uniform(0, 0.5)), seed=int(rng.integers(0, 1000)),
        )  # fmt: skip
        plan = build_plan(frame, settings)
        s, groups = plan.summary, plan.frame["group"]
        assert s["spend"] <= settings.budget
        assert s["spend"] == pytest.approx(s["customers_contacted"] * settings.cost_per_contact)
        assert (
            s["control_customers"]
            == (groups == "control").sum()
            == math.floor(settings.control_share * len(groups) + 1e-9)
        )
        assert s["customers_contacted"] + s["control_customers"] == s["customers_chosen"] == len(groups)
        assert set(groups) <= {"contact", "control"}
    assert control_size(100, 0.29) == 29 and control_size(3, 0.1) == 0 and control_size(10, 0.0) == 0


def test_the_same_seed_holds_out_the_same_customers():
    frame = decisions(np.linspace(1000, 100, 300))
    settings = PlanSettings(10_000, 5, 0.2, control_share=0.2, seed=42)
    first, again = build_plan(frame, settings), build_plan(frame, settings)
    pd.testing.assert_frame_equal(first.frame, again.frame)
    other = build_plan(frame, PlanSettings(10_000, 5, 0.2, control_share=0.2, seed=43))
    assert (other.frame["group"] != first.frame["group"]).any()
    assert (other.frame["group"] == "control").sum() == (first.frame["group"] == "control").sum() == 60
    # no seed: a fresh one, recorded, that reproduces the groups
    drawn = build_plan(frame, PlanSettings(10_000, 5, 0.2, control_share=0.2))
    assert isinstance(drawn.summary["seed"], int)
    replay = build_plan(frame, PlanSettings(10_000, 5, 0.2, control_share=0.2, seed=drawn.summary["seed"]))
    pd.testing.assert_frame_equal(drawn.frame, replay.frame)


# ------------------------------------------------------------------------------------------
# The output by hand
# ------------------------------------------------------------------------------------------


def test_the_plan_and_its_summary_by_hand():
    # gains 0.2 x 0.5 x VaR - 10 = 40, 20, 10, 0, -6, -9: three positive, one zero (not contacted)
    frame = decisions([500, 300, 200, 100, 40, 10], priority=[2, 1, 3, 4, 5, 6])
    frame["next_action"] = ["save now", "win back", "retain", "develop", "let go", "let go"]
    plan = build_plan(frame, PlanSettings(35, 10, 0.2, margin=0.5, control_share=0.0, seed=1))
    assert list(plan.frame.columns) == PLAN_NAMES
    assert plan.frame["customer_id"].tolist() == ["c1", "c0", "c2"]  # in priority order
    assert plan.frame["retention_priority"].tolist() == [1, 2, 3]
    assert plan.frame["expected_gain"].tolist() == pytest.approx([20, 40, 10])
    assert plan.frame["next_action"].tolist() == ["win back", "save now", "retain"]
    assert (plan.frame["group"] == "contact").all()
    s = plan.summary
    assert (s["customers_scored"], s["customers_with_positive_gain"], s["affordable_contacts"]) == (6, 3, 3)
    assert (s["customers_chosen"], s["customers_contacted"], s["control_customers"]) == (3, 3, 0)
    assert s["budget_binding"] is False
    assert s["spend"] == 30
    assert s["expected_saved_value"] == pytest.approx(0.2 * 1000)
    assert s["expected_gain"] == pytest.approx(0.5 * 200 - 30)
    assert s["expected_roi"] == 2.3333  # 70 / 30, to 4 decimals
    # a budget of 25 pays for two contacts: the two highest gains
    tight = build_plan(frame, PlanSettings(25, 10, 0.2, margin=0.5, control_share=0.0, seed=1)).summary
    assert tight["budget_binding"] is True and tight["customers_contacted"] == 2
    assert (tight["spend"], tight["expected_saved_value"], tight["expected_gain"]) == pytest.approx((20, 160, 60))
    assert tight["expected_roi"] == pytest.approx(3.0)
    # half of the three held out: floor(1.5) = 1 control customer, who costs and saves nothing
    held = build_plan(frame, PlanSettings(35, 10, 0.2, margin=0.5, control_share=0.5, seed=1))
    control = held.frame.loc[held.frame["group"] == "control", "value_at_risk"]
    assert len(control) == 1
    h = held.summary
    assert (h["customers_contacted"], h["control_customers"], h["spend"]) == (2, 1, 20)
    assert h["expected_saved_value"] == pytest.approx(0.2 * (1000 - control.iloc[0]))
    assert h["expected_gain"] == pytest.approx(0.5 * 0.2 * (1000 - control.iloc[0]) - 20)
    assert h["control_value_at_risk"] == pytest.approx(control.iloc[0])
    # nobody worth a call: an empty plan, nothing spent, no ROI
    empty = build_plan(frame, PlanSettings(1000, 60, 0.2, margin=0.5, seed=1))
    assert empty.frame.empty and list(empty.frame.columns) == PLAN_NAMES
    assert (empty.summary["spend"], empty.summary["expected_gain"], empty.summary["expected_roi"]) == (0, 0, None)


def test_runs_without_the_decision_columns_get_them_computed():
    scores = pd.DataFrame(
        {
            "customer_id": ["x", "y", "z"],
            "clv": [1000.0, 100.0, 50.0],
            "quadrant": ["A", "D", "C"],
            "churn_probability": [0.5, 0.9, 0.2],
            "churn_risk": ["high", "high", "low"],
        }
    )
    frame = decision_frame(scores)
    assert frame["value_at_risk"].tolist() == pytest.approx([500, 90, 10])
    assert frame["retention_priority"].tolist() == [1, 2, 3]
    assert frame["next_action"].tolist() == ["save now", "let go", "maintain"]
    assert decision_frame(scores, {"A": {"high": "call today"}})["next_action"].tolist()[0] == "call today"
    with pytest.raises(CrmvalueError, match=r"^run r1 has no churn scores \(churn_probability\)"):
        decision_frame(scores.drop(columns=["churn_probability", "churn_risk"]), source="run r1")
    with pytest.raises(CrmvalueError, match="no churn scores"):
        decision_frame(scores.assign(churn_probability=np.nan))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("budget", 0, "--budget must be a positive amount, got 0"),
        ("budget", -5.0, "--budget must be a positive amount"),
        ("budget", math.inf, "--budget must be a positive amount"),
        ("cost_per_contact", 0.0, "--cost-per-contact must be a positive amount"),
        ("success_rate", 0.0, r"--success-rate must be in \(0, 1\]"),
        ("success_rate", 1.5, r"--success-rate must be in \(0, 1\]"),
        ("margin", 0.0, r"--margin must be in \(0, 1\]"),
        ("control_share", 1.0, r"--control-share must be in \[0, 1\)"),
        ("control_share", -0.1, r"--control-share must be in \[0, 1\)"),
        ("seed", -1, "--seed must be a whole number >= 0"),
    ],
)
def test_settings_are_checked(field, value, message):
    good = {"budget": 100.0, "cost_per_contact": 1.0, "success_rate": 0.5}
    with pytest.raises(CrmvalueError, match=message):
        PlanSettings(**{**good, field: value})


# ------------------------------------------------------------------------------------------
# The command: the MLflow run, the files, the errors
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory, synthetic_run):
    """A copy of the shared run's store whose experiment puts new artifacts here, plus a finished
    `train`-like run whose predictions have no churn scores."""
    tmp = tmp_path_factory.mktemp("plan")
    with sqlite3.connect(synthetic_run.tmp / "mlflow.db") as source, sqlite3.connect(tmp / "mlflow.db") as copy:
        source.backup(copy)  # the shared run's artifacts stay where they are, read only
    run_id = synthetic_run.result.run_id
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    with sqlite3.connect(tmp / "mlflow.db") as db:
        db.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
            ((tmp / "mlruns" / "synthetic").as_uri(), int(experiment_id)),
        )
    predictions = pd.read_csv(synthetic_run.result.output_path, dtype={"customer_id": str})
    no_churn = tmp / "files" / "predictions.csv"
    no_churn.parent.mkdir()
    drop = ["churn_probability", "churn_risk", "value_at_risk", "retention_priority", "next_action"]
    predictions.drop(columns=[c for c in drop if c in predictions.columns]).to_csv(no_churn, index=False)
    tags = {
        "crmvalue.kind": "train",
        "crmvalue.version": "0.0.test",
        "crmvalue.predictions_artifact": "predictions.csv",
        "crmvalue.as_of_date": "2021-12-31",
    }
    bare = client.create_run(experiment_id, tags=tags, start_time=client.get_run(run_id).info.start_time - 60_000)
    client.log_artifact(bare.info.run_id, str(no_churn))
    client.set_terminated(bare.info.run_id)
    return {
        "tmp": tmp,
        "uri": uri,
        "client": client,
        "run_id": run_id,
        "experiment_id": experiment_id,
        "no_churn": bare.info.run_id,
        "predictions": predictions,
    }


def plan_args(store, out, *extra) -> list[str]:
    return [
        "plan", "--run", store["run_id"], "--budget", "200", "--cost-per-contact", "2", "--success-rate", "0.3",
        "--margin", "0.5", "--control-share", "0.25", "--seed", "11", "--out", str(out),
        "--tracking-uri", store["uri"], *extra,
    ]  # fmt: skip


def plan_runs(store) -> list:
    return store["client"].search_runs([store["experiment_id"]], "tags.`crmvalue.kind` = 'plan'")


@pytest.fixture(scope="module")
def planned(store):
    """One plan of the shared run, made by the console script."""
    out = store["tmp"] / "out" / "plan.csv"
    cli = str(Path(sys.executable).with_name("crmvalue"))
    done = subprocess.run([cli, *plan_args(store, out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out.parent / "plan.summary.json").read_text())
    return {"out": out, "stdout": done.stdout, "summary": summary, "run_id": summary["plan_run_id"]}


def test_the_plan_file_follows_the_source_run(store, planned):
    plan = pd.read_csv(planned["out"], dtype={"customer_id": str}, keep_default_na=False)
    assert list(plan.columns) == PLAN_NAMES
    scores = store["predictions"].set_index("customer_id")
    risk = (scores["churn_probability"] * scores["clv"]).round(2)
    if "value_at_risk" in scores.columns:  # runs from before the decision columns lack it
        np.testing.assert_allclose(scores["value_at_risk"], risk, atol=0.011)
        risk = scores["value_at_risk"]
    # 100 contacts affordable; the plan is the start of the priority order among positive gains
    gain = 0.3 * 0.5 * risk - 2
    assert len(plan) == min(100, int((gain > 0).sum())) > 0
    np.testing.assert_allclose(plan["value_at_risk"], risk[plan["customer_id"]].to_numpy(), atol=0.011)
    np.testing.assert_allclose(plan["expected_gain"], 0.15 * plan["value_at_risk"] - 2, atol=0.011)
    assert plan["retention_priority"].is_monotonic_increasing
    s = planned["summary"]
    contact = plan["group"] == "contact"
    assert s["control_customers"] == (~contact).sum() == math.floor(0.25 * len(plan))
    assert s["spend"] == 2 * contact.sum() <= 200
    assert s["expected_saved_value"] == pytest.approx(0.3 * plan.loc[contact, "value_at_risk"].sum(), abs=0.05)
    assert s["expected_roi"] == pytest.approx(s["expected_gain"] / s["spend"], abs=1e-4)
    assert (s["seed"], s["source_run_id"], s["as_of_date"]) == (11, store["run_id"], "2021-12-31")
    stdout = planned["stdout"]
    assert f"plan run        {planned['run_id']}  (from run {store['run_id']}" in stdout
    assert f"spend           {s['spend']:,.2f} of 200.00" in stdout
    assert f"expected ROI    {s['expected_roi']:.2f}" in stdout


def test_the_plan_is_an_mlflow_run_linked_to_its_source(store, planned):
    client = store["client"]
    run = client.get_run(planned["run_id"])
    assert run.info.experiment_id == store["experiment_id"] and run.info.status == "FINISHED"
    assert run.data.tags["crmvalue.kind"] == "plan"
    assert run.data.tags["crmvalue.source_run_id"] == store["run_id"]
    params = run.data.params
    assert (params["budget"], params["cost_per_contact"], params["success_rate"]) == ("200.0", "2.0", "0.3")
    assert (params["margin"], params["control_share"], params["seed"]) == ("0.5", "0.25", "11")
    assert params["source_run_id"] == store["run_id"]
    s = planned["summary"]
    for key in ("customers_contacted", "control_customers", "spend", "expected_saved_value", "expected_gain"):
        assert run.data.metrics[f"plan.{key}"] == pytest.approx(s[key])
    assert {a.path for a in client.list_artifacts(planned["run_id"])} == {"plan.csv", "plan.summary.json"}
    logged = client.download_artifacts(planned["run_id"], "plan.csv", str(store["tmp"] / "download"))
    assert open(logged).read() == planned["out"].read_text()
    # a plan run is never `latest` scores: planning from latest again uses the train run
    again = store["tmp"] / "again" / "plan.csv"
    result = plan_from_run("latest", PlanSettings(200, 2, 0.3, 0.5, 0.25, 11), again, tracking_uri=store["uri"])
    assert result.source_run_id == store["run_id"]
    pd.testing.assert_frame_equal(pd.read_csv(again), pd.read_csv(planned["out"]))  # same seed, same groups


BAD_ARGUMENTS = {
    "zero budget": (["--budget", "0"], "--budget must be a positive amount, got 0.0"),
    "negative budget": (["--budget", "-100"], "--budget must be a positive amount, got -100.0"),
    "zero cost": (["--cost-per-contact", "0"], "--cost-per-contact must be a positive amount"),
    "negative cost": (["--cost-per-contact", "-1"], "--cost-per-contact must be a positive amount"),
    "success rate 0": (["--success-rate", "0"], "--success-rate must be in (0, 1], got 0.0"),
    "success rate above 1": (["--success-rate", "1.2"], "--success-rate must be in (0, 1], got 1.2"),
    "margin 0": (["--margin", "0"], "--margin must be in (0, 1]"),
    "margin above 1": (["--margin", "1.5"], "--margin must be in (0, 1]"),
    "control share 1": (["--control-share", "1"], "--control-share must be in [0, 1), got 1.0"),
    "negative control share": (["--control-share", "-0.1"], "--control-share must be in [0, 1)"),
    "unknown run": (["--run", "0" * 32], f"no run '{'0' * 32}' in the MLflow store"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_get_one_line_and_write_nothing(store, tmp_path, crmvalue_main, case):
    extra, message = BAD_ARGUMENTS[case]
    before = len(plan_runs(store))
    out = tmp_path / "plan.csv"
    done = crmvalue_main(*plan_args(store, out), *extra)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {message}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == [] and len(plan_runs(store)) == before


def test_a_run_without_churn_scores_is_refused(store, tmp_path, crmvalue_main):
    done = crmvalue_main(*plan_args(store, tmp_path / "plan.csv"), "--run", store["no_churn"])
    assert done.returncode == 2
    assert done.stderr == (
        f"error: run {store['no_churn']} has no churn scores (churn_probability), so no value at risk to plan "
        "with: plan from a run trained with churn on\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_that_cannot_be_written_is_refused(store, tmp_path, crmvalue_main):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        done = crmvalue_main(*plan_args(store, folder / "plan.csv"))
    finally:
        folder.chmod(0o755)
    assert done.returncode == 2
    assert (
        done.stderr
        == f"error: cannot write the plan file {folder / 'plan.csv'}: the folder {folder} is read-only (set --out)\n"
    )
    assert list(folder.iterdir()) == []


# ------------------------------------------------------------------------------------------
# Delivery to a database table
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_database():
    """A database of our own on the test server, dropped at the end."""
    yield from fresh_postgres_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/crm.db"
        return
    yield request.getfixturevalue("postgres_database")


def test_export_delivers_the_plan_to_a_table(store, planned, database):
    table = f"plan_{uuid.uuid4().hex[:8]}"  # PostgreSQL's database is the module's: a table of this test's own
    result = ex.export_plan(planned["run_id"], database, table, tracking_uri=store["uri"])
    assert result.changed and result.rows == planned["summary"]["customers_chosen"]
    rows = read_table(database, table)
    assert list(rows.columns) == list(ex.PLAN_TYPES)
    plan = pd.read_csv(planned["out"], dtype={"customer_id": str})
    rows = rows.sort_values("retention_priority").reset_index(drop=True)
    pd.testing.assert_frame_equal(rows[PLAN_NAMES], plan, check_dtype=False)
    assert (rows["run_id"] == planned["run_id"]).all() and (rows["source_run_id"] == store["run_id"]).all()
    assert (pd.to_datetime(rows["as_of_date"]).dt.date.astype(str) == "2021-12-31").all()
    engine = sa.create_engine(database)
    try:
        inspector = sa.inspect(engine)
        assert inspector.get_pk_constraint(table)["constrained_columns"] == ["customer_id"]
        assert inspector.get_pk_constraint(f"{table}_history")["constrained_columns"] == ["run_id", "customer_id"]
    finally:
        engine.dispose()
    again = ex.export_plan(planned["run_id"], database, table, tracking_uri=store["uri"])
    assert not again.changed and len(read_table(database, f"{table}_history")) == len(plan)
    # a plan is not scores, nor scores a plan
    with pytest.raises(CrmvalueError, match=f"is a plan run, not scores: export it with --plan {planned['run_id']}"):
        ex.export_run(planned["run_id"], database, tracking_uri=store["uri"])
    with pytest.raises(CrmvalueError, match=f"run {store['run_id']} is a train run, not a plan"):
        ex.export_plan(store["run_id"], database, table, tracking_uri=store["uri"])


def test_the_export_command_takes_a_plan(store, planned, tmp_path, crmvalue_main):
    url = f"sqlite:///{tmp_path}/crm.db"
    done = crmvalue_main("export", "--plan", "latest", "--to", url, "--tracking-uri", store["uri"], "-q")
    assert done.returncode == 0, done.stderr
    latest = plan_runs(store)[0].info.run_id  # newest first
    assert done.stdout.startswith(
        f"exported {len(read_table(url, 'retention_plan')):,} customers of plan run {latest} "
    )
    both = crmvalue_main("export", "--plan", "latest", "--run", "latest", "--to", url, "--tracking-uri", store["uri"])
    assert (
        both.returncode == 2
        and both.stderr == "error: give --run (scores) or --plan (a plan of crmvalue plan), not both\n"
    )
