"""From scores to decisions (issue 18, part 1): value at risk, retention priority and the next action,
by hand on constructed customers, through train and predict, and on the report's first screen."""

from __future__ import annotations

import html
import re
import sqlite3

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import simulated_transactions, synthetic_config

from crmvalue import decisions, schema
from crmvalue.churn import churn_risk
from crmvalue.config import load_config
from crmvalue.decisions import (
    DEFAULT_ACTIONS,
    RISK_LEVELS,
    decision_columns,
    next_action,
    retention_priority,
    value_at_risk,
)
from crmvalue.errors import CrmvalueError
from crmvalue.report import build_report

DECISIONS = ["value_at_risk", "retention_priority", "next_action"]

# ------------------------------------------------------------------------------------------
# By hand
# ------------------------------------------------------------------------------------------


def _customers() -> pd.DataFrame:
    """Seven customers whose value at risk, priority and action are worked out by hand below."""
    return pd.DataFrame(
        {
            "customer_id": ["g", "e", "a", "b", "c", "d", "f"],
            "clv": [0.0, 100.0, 200.0, 80.0, 40.0, 8.0, 0.0],
            "quadrant": ["D", "A", "A", "B", "C", "D", "D"],
            "churn_probability": [0.125, 1.0, 0.5, 0.75, 0.25, 0.875, 0.5],
            "churn_risk": ["low", "high", "medium", "medium", "low", "high", "medium"],
        }
    )


def test_value_at_risk_priority_and_action_of_constructed_customers():
    got = decision_columns(_customers()).set_index(_customers()["customer_id"])
    # value at risk = churn probability x clv
    assert got["value_at_risk"].to_dict() == {
        "g": 0.0,
        "e": 100.0,
        "a": 100.0,
        "b": 60.0,
        "c": 10.0,
        "d": 7.0,
        "f": 0.0,
    }
    # a and e both put 100 at risk: a's clv (200) is higher, so a first; f and g tie on both: by id
    assert got["retention_priority"].to_dict() == {"a": 1, "e": 2, "b": 3, "c": 4, "d": 5, "f": 6, "g": 7}
    assert got["retention_priority"].dtype == np.int64
    assert got["next_action"].to_dict() == {
        "g": "serve at low cost",
        "e": "save now",
        "a": "reward and watch",
        "b": "develop",
        "c": "maintain",
        "d": "let go",
        "f": "serve at low cost",
    }


def test_priority_ties_go_to_the_higher_clv_then_the_id_as_text():
    # every customer puts 10 at risk; x has the lowest clv, so it is last; the others by id as text:
    # "10" < "9" < "b", so customer 10 comes before customer 9
    priority = retention_priority([10.0, 10.0, 10.0, 10.0], [50.0, 20.0, 50.0, 50.0], ["9", "x", "10", "b"])
    assert priority.tolist() == [2, 4, 1, 3]
    assert sorted(retention_priority(np.zeros(5), np.zeros(5), list("edcba"))) == [1, 2, 3, 4, 5]


def test_the_default_matrix_follows_seed_003_and_the_risk_labels_of_churn_risk():
    assert DEFAULT_ACTIONS["A"]["high"] == "save now"
    assert DEFAULT_ACTIONS["B"]["low"] == "develop"
    assert DEFAULT_ACTIONS["D"]["high"] == "let go"
    assert all(set(row) == set(RISK_LEVELS) for row in DEFAULT_ACTIONS.values())
    # the matrix's risks are exactly the labels the churn stage writes
    assert churn_risk([0.95, 0.8, 0.5, 0.4, 0.1], high=0.8, medium=0.4).tolist() == [
        "high",
        "high",
        "medium",
        "medium",
        "low",
    ]
    assert set(churn_risk(np.linspace(0, 1, 101), 0.8, 0.4)) == set(RISK_LEVELS)


def test_a_partial_matrix_in_the_config_overrides_only_its_cells():
    cfg = load_config(None, {"decisions": {"actions": {"D": {"high": "archive"}, "A": {"low": " thank "}}}})
    actions = cfg.decisions.actions
    assert actions["D"] == {"high": "archive", "medium": "serve at low cost", "low": "serve at low cost"}
    assert actions["A"] == {"high": "save now", "medium": "reward and watch", "low": "thank"}
    assert actions["B"] == DEFAULT_ACTIONS["B"] and actions["C"] == DEFAULT_ACTIONS["C"]
    got = next_action(["D", "D", "A", "A"], ["high", "low", "low", "high"], actions)
    assert got.tolist() == ["archive", "serve at low cost", "thank", "save now"]
    # a dotted override, as on the command line, is a partial matrix too
    dotted = load_config(None, {"decisions.actions.B.high": "call today"}).decisions.actions
    assert dotted["B"] == {"high": "call today", "medium": "develop", "low": "develop"}


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: value_at_risk([0.5, 1.25], [10.0, 10.0], ["a", "b"]),
            "value at risk: churn_probability 1.25 of customer 'b' is not in [0, 1]",
        ),
        (lambda: value_at_risk([0.5, -0.1], [10.0, 10.0]), "value at risk: churn_probability -0.1 of row 1"),
        (
            lambda: value_at_risk([0.5, 0.5], [np.nan, 1.0], ["a", "b"]),
            "value at risk: clv nan of customer 'a' is not finite",
        ),
        (lambda: value_at_risk([0.5], [1.0, 2.0]), "value at risk: 1 churn probabilities for 2 CLVs"),
        (
            lambda: next_action(["A", "E"], ["high", "low"]),
            "next action: no action for quadrant 'E' with churn risk 'low' (row 1)",
        ),
        (
            lambda: next_action(["A"], ["severe"]),
            "next action: no action for quadrant 'A' with churn risk 'severe' (row 0)",
        ),
        (
            lambda: next_action(["A"], ["high"], {"E": {"high": "call"}}),
            "decisions.actions: unknown quadrant 'E'; the quadrants are A, B, C, D",
        ),
        (
            lambda: next_action(["A"], ["high"], {"A": {"high": "x" * 33}}),
            "decisions.actions: quadrant A, risk high: the action 'xxx",
        ),
        (
            lambda: decision_columns(_customers().drop(columns="churn_risk")),
            "decisions: the predictions have no column 'churn_risk'",
        ),
        (
            lambda: retention_priority([1.0, 2.0], [1.0], ["a", "b"]),
            "retention priority: 2 values at risk, 1 CLVs and 2 customer ids",
        ),
    ],
)
def test_bad_input_is_a_one_line_error(call, message):
    with pytest.raises(CrmvalueError) as raised:
        call()
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_bad_matrices_in_the_config_are_one_line_errors():
    with pytest.raises(CrmvalueError, match=r"quadrant A: unknown churn risk 'hi'; use high, medium, low") as raised:
        load_config(None, {"decisions": {"actions": {"A": {"hi": "call"}}}})
    assert "\n" not in str(raised.value)
    with pytest.raises(CrmvalueError, match="the action must be a non-empty text"):
        load_config(None, {"decisions.actions.C.low": "  "})


def test_the_columns_come_exactly_with_the_churn_columns():
    base = ["customer_id", "clv", "quadrant"]
    frame = pd.DataFrame({c: [1.0] for c in base + ["churn_probability", "churn_risk"]})
    with pytest.raises(schema.UndeclaredColumnError, match="have the churn columns but not the decisions columns"):
        schema.check_declared(frame)
    with pytest.raises(schema.UndeclaredColumnError, match="have the decisions columns but not the churn columns"):
        schema.check_declared(pd.DataFrame({c: [1.0] for c in base + DECISIONS}))
    assert {c.name: c.sql for c in schema.DECISIONS} == {
        "value_at_risk": "DOUBLE",
        "retention_priority": "INTEGER",
        "next_action": "VARCHAR(32)",
    }


# ------------------------------------------------------------------------------------------
# Through train, predict and the report (the session's synthetic run, conftest)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory, synthetic_run):
    """A copy of the session run's store whose experiment logs new runs here (the trained run's
    artifacts stay where it logged them, read only)."""
    tmp = tmp_path_factory.mktemp("decisions")
    with sqlite3.connect(synthetic_run.tmp / "mlflow.db") as source, sqlite3.connect(tmp / "mlflow.db") as copy:
        source.backup(copy)
        copy.execute("UPDATE experiments SET artifact_location = ?", ((tmp / "mlruns").resolve().as_uri(),))
    return tmp, f"sqlite:///{tmp}/mlflow.db"


@pytest.fixture(scope="module")
def predicted(store, synthetic_run):
    """``predict`` on the training data, with the default matrix changed since the run was trained:
    the run's own matrix (its config.yaml) must still be the one used."""
    from crmvalue.predict import predict

    tmp, uri = store
    changed = {q: {risk: f"new {q} {risk}" for risk in RISK_LEVELS} for q in DEFAULT_ACTIONS}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decisions, "DEFAULT_ACTIONS", changed)
        assert decisions.DecisionsConfig().actions["A"]["high"] == "new A high"  # the patch takes
        result = predict(
            f"runs:/{synthetic_run.result.run_id}/value_model",
            simulated_transactions(n_customers=400, seed=3),
            "2021-12-31",
            tmp / "scores.csv",
            tracking_uri=uri,
        )
    return result


def test_train_writes_the_columns_after_churn(synthetic_run):
    export = pd.read_csv(synthetic_run.cfg.output_path, dtype={"customer_id": str})
    columns = list(export.columns)
    assert columns[columns.index("churn_risk") + 1 : columns.index("run_id")] == DECISIONS
    memory = synthetic_run.result.predictions  # full precision; the CSV has money in cents
    np.testing.assert_array_equal(memory["value_at_risk"], memory["churn_probability"] * memory["clv"])
    assert export["value_at_risk"].tolist() == memory["value_at_risk"].round(2).tolist()
    assert sorted(export["retention_priority"]) == list(range(1, len(export) + 1))
    assert export["retention_priority"].dtype == np.int64
    expected = [DEFAULT_ACTIONS[q][r] for q, r in zip(export["quadrant"], export["churn_risk"])]
    assert export["next_action"].tolist() == expected


def test_predict_reproduces_the_columns_with_the_runs_matrix(synthetic_run, predicted, store):
    tmp, _ = store
    trained = pd.read_csv(synthetic_run.cfg.output_path, dtype={"customer_id": str}).set_index("customer_id")
    scored = pd.read_csv(tmp / "scores.csv", dtype={"customer_id": str}).set_index("customer_id")
    assert list(scored.columns) == list(trained.columns)
    pd.testing.assert_frame_equal(scored[DECISIONS], trained.loc[scored.index, DECISIONS], check_exact=True)
    in_memory = predicted.predictions.set_index("customer_id")
    train_memory = synthetic_run.result.predictions.set_index("customer_id")
    pd.testing.assert_frame_equal(in_memory[DECISIONS], train_memory.loc[in_memory.index, DECISIONS], check_exact=True)
    assert not scored["next_action"].str.startswith("new ").any()


def test_the_predict_command_names_whom_to_call_first(store, synthetic_run, tmp_path, crmvalue_main):
    _, uri = store
    simulated_transactions(n_customers=400, seed=3).to_csv(tmp_path / "tx.csv", index=False)
    model = f"runs:/{synthetic_run.result.run_id}/value_model"
    args = ["--data", tmp_path / "tx.csv", "--observation-end", "2021-12-31", "--tracking-uri", uri, "--quiet"]
    done = crmvalue_main("predict", "--model", model, *args, "--out", tmp_path / "scores.csv")
    assert done.returncode == 0, done.stderr
    trained = synthetic_run.result.predictions
    first = trained.loc[trained["retention_priority"] == 1].iloc[0]
    line = next(s for s in done.stdout.splitlines() if s.startswith("call first"))
    assert line == (
        f"call first      customer {first['customer_id']}: value at risk {first['value_at_risk']:,.2f} of "
        f"{trained['value_at_risk'].sum():,.2f} in all, next action {first['next_action']!r} (retention_priority 1)"
    )
    scored = pd.read_csv(tmp_path / "scores.csv", dtype={"customer_id": str}).set_index("customer_id")
    exported = pd.read_csv(synthetic_run.cfg.output_path, dtype={"customer_id": str}).set_index("customer_id")
    pd.testing.assert_frame_equal(scored[DECISIONS], exported.loc[scored.index, DECISIONS], check_exact=True)


def test_the_database_export_carries_the_columns_with_their_types(store, synthetic_run, tmp_path):
    import sqlalchemy as sa

    from crmvalue import export as ex

    _, uri = store
    database = f"sqlite:///{tmp_path}/crm.db"
    ex.export_run(synthetic_run.result.run_id, database, tracking_uri=uri)
    engine = sa.create_engine(database)
    try:
        types = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("customer_scores")}
        with engine.connect() as conn:
            table = pd.read_sql_table("customer_scores", conn).set_index("customer_id").sort_index()
    finally:
        engine.dispose()
    assert list(types)[list(types).index("churn_risk") + 1 :][:3] == DECISIONS
    assert isinstance(types["value_at_risk"], (sa.Float, sa.Double))
    assert isinstance(types["retention_priority"], sa.Integer)
    assert isinstance(types["next_action"], sa.String) and types["next_action"].length == 32
    exported = pd.read_csv(synthetic_run.cfg.output_path, dtype={"customer_id": str}).set_index("customer_id")
    exported = exported.sort_index()
    np.testing.assert_array_equal(table["value_at_risk"], exported["value_at_risk"])
    assert table["retention_priority"].tolist() == exported["retention_priority"].tolist()
    assert table["next_action"].tolist() == exported["next_action"].tolist()


@pytest.fixture(scope="module")
def page(store, synthetic_run) -> str:
    return build_report(synthetic_run.result.run_id, store[1])


def test_the_first_screen_says_whom_to_call_first_and_why(page, synthetic_run):
    export = pd.read_csv(synthetic_run.cfg.output_path, dtype={"customer_id": str}).sort_values("retention_priority")
    first_screen = page[page.index("<header>") : page.index('<div class="cards">')]
    assert "<h2>Whom to call first</h2>" in first_screen
    rows = re.findall(r"<tr>(.*?)</tr>", first_screen)[1:]  # the header row first
    assert len(rows) == 10
    top = export.iloc[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rows[0])
    assert cells[:2] == ["1", html.escape(top["customer_id"])]
    assert cells[-2:] == [top["quadrant"], html.escape(top["next_action"])]
    assert f"{top['churn_probability']:.1%}" in cells
    ids = [re.findall(r"<td[^>]*>(.*?)</td>", row)[1] for row in rows]
    assert ids == [html.escape(i) for i in export["customer_id"].head(10)]
    text = html.unescape(re.sub(r"<[^>]+>", "", first_screen))
    assert "Value at risk = churn probability" in text and "× CLV" in text
    total = export["value_at_risk"].sum()
    top10, top100 = export["value_at_risk"].head(10).sum(), export["value_at_risk"].head(100).sum()
    assert f"The top 10 carry {_money(top10)} of value at risk ({top10 / total:.0%} of the total)" in text
    assert f"the top 100 {_money(top100)} ({top100 / total:.0%} of the total)" in text
    assert f"of {_money(total)} across all 400 customers." in text


def _money(value: float) -> str:
    """The report's money: cents below 1,000, whole units with thousands separators above."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}"


def test_the_action_matrix_counts_the_customers_of_each_cell(page, synthetic_run):
    export = pd.read_csv(synthetic_run.cfg.output_path, dtype={"customer_id": str})
    section = html.unescape(page[page.index('id="actions"') : page.index('id="rfm"')])
    assert page.index('id="quadrants"') < page.index('id="actions"')
    counts = export.groupby(["quadrant", "churn_risk"]).size()
    for quadrant, row in DEFAULT_ACTIONS.items():
        for risk, action in row.items():
            n = int(counts.get((quadrant, risk), 0))
            cell = f'<b>{action}</b><br><span class="quiet">{n:,} customer{"" if n == 1 else "s"}'
            assert re.search(re.escape(cell) + "[,<]", section), (quadrant, risk)


def test_a_run_without_churn_says_why_in_one_line(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("nochurn", artifact_location=(tmp_path / "mlruns").resolve().as_uri())
    run_id = client.create_run(experiment, tags={"crmvalue.version": "0.0.test", "crmvalue.churn": "off"}).info.run_id
    client.set_terminated(run_id)
    page = build_report(run_id, uri)
    first_screen = page[page.index("<header>") : page.index('<div class="cards">')]
    notes = re.findall(r'<p class="missing">(.*?)</p>', first_screen)
    assert notes == [
        "No call list: value at risk needs each customer's churn probability, and this run was trained "
        "without the churn model (churn.enabled: false or --no-churn)."
    ]


def test_a_partial_matrix_reaches_the_export_of_train(tmp_path):
    """The run's config matrix is the one train scores with (a D customer at high risk is archived)."""
    from crmvalue.pipeline import train

    cfg = synthetic_config(
        tmp_path,
        **{"decisions": {"actions": {"D": {"high": "archive"}}}, "analyses": {"enabled": False}},
    )
    result = train(cfg, data=simulated_transactions(n_customers=400, seed=3))
    p = result.predictions
    d_high = (p["quadrant"] == "D") & (p["churn_risk"] == "high")
    assert d_high.any()
    assert (p.loc[d_high, "next_action"] == "archive").all()
    assert (p.loc[~d_high, "next_action"] != "archive").all()
