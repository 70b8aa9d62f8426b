"""The HTML report of a run: its sections, its tables, self-contained, which run `latest` is, and its errors."""

from __future__ import annotations

import base64
import re
import sqlite3
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from crmvalue.errors import CrmvalueError  # noqa: E402
from crmvalue.report import build_report, latest_run_id, write_report  # noqa: E402

SECTIONS = [
    "Value quadrants",
    "RFM segments",
    "CPM groups",
    "Revenue deciles",
    "Retention and cohorts",
    "Market segments",
    "How good the models are",
    "Diagnostic charts",
]
ANALYSES = [
    "analyses/rfm_segments.csv",
    "plots/rfm_segments.png",
    "analyses/cpm_groups.csv",
    "plots/cpm_groups.png",
    "analyses/deciles.csv",
    "plots/deciles.png",
    "analyses/retention.csv",
    "plots/retention.png",
    "analyses/cohort_retention.csv",
    "plots/cohort_retention.png",
]


def _handmade_run(
    client, tmp: Path, experiment: str, files: dict[str, Path], metrics: dict | None = None, start_time=None
) -> str:
    """A finished top-level run with the crmvalue tags and only the given artifacts."""
    found = client.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id
        if found
        else client.create_experiment(experiment, artifact_location=(tmp / "mlruns" / experiment).resolve().as_uri())
    )
    run_id = client.create_run(experiment_id, start_time, tags={"crmvalue.version": "0.0.test"}).info.run_id
    for path, local in files.items():
        folder = str(Path(path).parent)
        client.log_artifact(run_id, str(local), None if folder == "." else folder)
    for name, value in (metrics or {}).items():
        client.log_metric(run_id, name, value)
    client.set_terminated(run_id)
    return run_id


def _png(path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.bar([1, 2], [3, 1])
    fig.savefig(path)
    plt.close(fig)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, synthetic_run):
    """A copy of the session's `train` run's store (conftest), with two hand-made runs older than the
    train run and a nested child and a failed run newer than it."""
    tmp = tmp_path_factory.mktemp("report")
    with sqlite3.connect(synthetic_run.tmp / "mlflow.db") as source, sqlite3.connect(tmp / "mlflow.db") as copy:
        source.backup(copy)  # the artifacts stay where the shared run logged them, read only
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    result = synthetic_run.result
    before = client.get_run(result.run_id).info.start_time - 60_000  # made a minute before the train run
    files = tmp / "files"
    (files / "analyses").mkdir(parents=True)
    pd.DataFrame(
        {
            "quadrant": ["A", "B", "C", "D"],
            "customers": [1, 2, 3, 4],
            "share": [0.1, 0.2, 0.3, 0.4],
            "current_value_total": [10.0, 0.0, 5.0, 0.0],
            "potential_value_total": [50.0, 20.0, 2.0, 1.0],
            "treatment": ["keep", "develop", "maintain", "serve"],
        }
    ).to_csv(files / "quadrant_summary.csv", index=False)
    bare = _handmade_run(
        client, tmp, "bare", {"quadrant_summary.csv": files / "quadrant_summary.csv"}, start_time=before
    )
    pd.DataFrame(
        {
            "value_decile": range(1, 11),
            "customers": [10] * 10,
            "revenue": [12345.6, 5000.0] + [1000.0] * 8,
            "revenue_share": [0.45] + [0.55 / 9] * 9,
            "cumulative_share": [0.45 + 0.55 / 9 * i for i in range(10)],
            "average_order_value": [61.5] * 10,
            "average_frequency": [2.25] * 10,
        }
    ).to_csv(files / "analyses" / "deciles.csv", index=False)
    pd.DataFrame({"cohort": ["2020-01", "2020-02"], "0": [1.0, 1.0], "1": [0.25, float("nan")]}).to_csv(
        files / "analyses" / "cohort_retention.csv", index=False
    )
    analysed = _handmade_run(
        client,
        tmp,
        "analysed",
        {
            "analyses/deciles.csv": files / "analyses" / "deciles.csv",
            "plots/deciles.png": _png(files / "deciles.png"),
            "analyses/cohort_retention.csv": files / "analyses" / "cohort_retention.csv",
        },
        {"analyses.pareto_top20_share": 0.6543},
        start_time=before + 1,
    )
    # newer than the train run, and neither may be `latest`: a nested child and a failed run
    experiment_id = client.get_run(result.run_id).info.experiment_id
    child = client.create_run(experiment_id, tags={"mlflow.parentRunId": result.run_id, "crmvalue.version": "0.0.test"})
    client.set_terminated(child.info.run_id)
    failed = client.create_run(experiment_id, tags={"crmvalue.version": "0.0.test"})
    client.set_terminated(failed.info.run_id, status="FAILED")
    return {"tmp": tmp, "uri": uri, "client": client, "result": result, "bare": bare, "analysed": analysed}


@pytest.fixture(scope="module")
def page(store) -> str:
    return build_report(store["result"].run_id, store["uri"])


def test_report_has_every_section_in_reading_order(page, store):
    positions = [page.index(f">{title}</h2>") for title in SECTIONS]
    assert positions == sorted(positions)
    assert "Customer value report: synthetic" in page
    assert store["result"].run_id in page
    assert "<b>Model choice:</b> bgnbd: lowest holdout per-customer RMSE" in page
    assert "LightGBM churn model" in page and "Naive rate baseline" in page


def test_quadrant_table_shows_the_runs_numbers(page, store):
    quadrants = store["result"].quadrants
    section = page[page.index('id="quadrants"') : page.index('id="rfm"')]
    for quadrant, row in quadrants.iterrows():
        assert f'<td class="nowrap">{quadrant}</td>' in section
        assert f'<td class="num">{row["customers"]:,}</td>' in section
        assert f'<td class="num">{row["share"]:.1%}</td>' in section
        assert row["treatment"] in section
    total = quadrants["potential_value_total"].sum()
    assert f'<td class="num">{quadrants.loc["A", "potential_value_total"] / total:.1%}</td>' in section


def test_headline_shows_the_horizon_revenue_of_the_live_value_model(page, store):
    from crmvalue.report.format import fmt_money

    # the report reads the logged predictions file, whose money columns are rounded to cents
    total = float(pd.read_csv(store["result"].output_path)["expected_revenue"].sum())
    assert total == pytest.approx(float(store["result"].predictions["expected_revenue"].sum()), abs=0.005 * 400)
    head = page[: page.index('id="quadrants"')]
    assert f'Expected revenue, next 90 days</div><div class="value">{fmt_money(total)}' in head.replace("\n", "")
    assert "undiscounted, from BTYD x Gamma-Gamma" in head


def test_report_is_self_contained(page, store):
    client, run_id = store["client"], store["result"].run_id
    plots = [a.path for a in client.list_artifacts(run_id, "plots")]
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(plots) >= 12
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert base64.b64decode(sources[0].split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    text = re.sub(r'src="data:image/png;base64,[^"]*"', "", page)
    assert not re.search(r"https?:|<script|<link|@import|url\(|//[a-z]", text, re.IGNORECASE)


def test_latest_is_the_newest_finished_top_level_train_run(store):
    assert latest_run_id(store["uri"]) == store["result"].run_id
    assert latest_run_id(store["uri"], "bare") == store["bare"]
    with pytest.raises(CrmvalueError, match=r"no experiment 'nope' .* it has: .*bare"):
        latest_run_id(store["uri"], "nope")


def test_cli_writes_the_latest_run(store, tmp_path, monkeypatch, crmvalue_main):
    monkeypatch.chdir(tmp_path)
    proc = crmvalue_main("report", "--tracking-uri", store["uri"], "--out", "out/report.html")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote the report of run {store['result'].run_id} to out/report.html"
    assert "Customer value report: synthetic" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["report.html"]


def test_a_run_without_the_analyses_says_so(store):
    page = build_report(store["bare"], store["uri"])
    notes = re.findall(r'<p class="missing">Not in this run: (.*?)</p>', page)
    for path in ANALYSES:
        assert sum(f"<code>{path}</code>" in note for note in notes) == 1, path
    assert "churn.* metrics" in page and "holdout.* metrics" in page
    for title in SECTIONS:  # the headings stay, so reports of old and new runs read alike
        assert f">{title}</h2>" in page


def test_analyses_tables_are_formatted(store):
    page = build_report(store["analysed"], store["uri"])
    deciles = page[page.index('id="deciles"') : page.index('id="retention"')]
    assert "the top 20% of customers bring <b>65.4%</b> of revenue" in deciles
    assert "Not in this run" not in deciles
    assert '<td class="num">12,346</td>' in deciles  # money over 1,000: thousands separators, no cents
    assert '<td class="num">45.0%</td>' in deciles and '<td class="num">100.0%</td>' in deciles  # shares as %
    assert '<td class="num">2.25</td>' in deciles
    retention = page[page.index('id="retention"') : page.index('id="segments"')]
    assert "25.0%" in retention and "–" in retention  # the cohort matrix as %, unobserved cells blank
    assert "<code>analyses/retention.csv</code>" in retention


def test_unknown_run_id_is_one_line_exit_2_and_no_file(store, tmp_path, monkeypatch, crmvalue_main):
    monkeypatch.chdir(tmp_path)
    proc = crmvalue_main("report", "--run", "0123abc", "--tracking-uri", store["uri"], "--out", "report.html")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: no run '0123abc' in the MLflow store at {store['uri']}; leave out --run to report the latest run"
    ]
    assert list(tmp_path.iterdir()) == []


def test_missing_and_unreachable_stores(tmp_path):
    with pytest.raises(CrmvalueError, match="no MLflow store at .*absent.db: run `crmvalue train` first"):
        write_report(tmp_path / "r.html", tracking_uri=f"sqlite:///{tmp_path}/absent.db")
    assert list(tmp_path.iterdir()) == []  # no empty store was created either
    with pytest.raises(CrmvalueError, match=r"^cannot read the MLflow store at http://127\.0\.0\.1:9: [^\n]*$"):
        write_report(tmp_path / "r.html", tracking_uri="http://user:secret@127.0.0.1:9")
    assert list(tmp_path.iterdir()) == []


def test_empty_store_and_wrong_experiment(store, tmp_path):
    uri = f"sqlite:///{tmp_path}/empty.db"
    mlflow.tracking.MlflowClient(tracking_uri=uri).search_experiments()  # creates the store, with no runs
    with pytest.raises(CrmvalueError, match="no finished `crmvalue train` run in the MLflow store"):
        write_report(tmp_path / "r.html", tracking_uri=uri)
    with pytest.raises(CrmvalueError, match="is in experiment 'bare', not 'synthetic'"):
        write_report(tmp_path / "r.html", run=store["bare"], experiment="synthetic", tracking_uri=store["uri"])
    assert not (tmp_path / "r.html").exists()


def test_the_churn_section_says_which_score_the_export_uses(page, store):
    import html

    from crmvalue.report import CHURN_SCORERS

    run = store["client"].get_run(store["result"].run_id)
    tags, metrics = run.data.tags, run.data.metrics
    scorer = tags["crmvalue.churn_scorer"]
    assert scorer == store["result"].churn.scorer
    section = html.unescape(
        page[page.index("<h3>Which churn score the export uses</h3>") : page.index('id="diagnostics"')]
    )
    if scorer == "lightgbm":
        assert "The LightGBM model beats every simpler score on the held-out check" in section
    else:
        assert f"The LightGBM model does not beat the {CHURN_SCORERS[scorer]} on the held-out check" in section
    assert tags["crmvalue.churn_gate"] in section
    assert f"Held-out check ({metrics['churn.held_out.rows']:,.0f} customers; best in bold)" in section
    for key in ("churn.held_out.brier", "baseline.bgnbd_no_purchase.held_out.brier", "baseline.recency.held_out.brier"):
        assert f"{metrics[key]:.4f}" in section, key


def test_quality_flags_and_a_skipped_churn_stage_are_said_first(tmp_path):
    """A red flag on the value model heads the report; a churn stage that auto skipped says why in its section."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("flags", artifact_location=(tmp_path / "mlruns").resolve().as_uri())
    red = "red: the holdout forecast of total purchases is 21 against 39 made (-46%), beyond the ±25% of quality.max_total_error"
    run_id = client.create_run(
        experiment,
        tags={
            "crmvalue.version": "0.0.test",
            "crmvalue.value_gate": red,
            "crmvalue.churn": "skipped: the data have 136 days from 2020-01-01 to the calibration end 2020-05-16",
        },
    ).info.run_id
    for name, value in {
        "holdout.predicted_total": 21.0,
        "holdout.actual_total": 39.0,
        "quality.value_red_flag": 1.0,
    }.items():
        client.log_metric(run_id, name, value)
    client.set_terminated(run_id)
    page = build_report(run_id, uri)
    header = page[: page.index("</header>")]
    assert (
        '<p class="warning"><b>Red flag on the value model:</b> the holdout forecast of total purchases is 21 against 39'
        in header
    )
    assert (
        "The churn model was skipped in this run: the data have 136 days from 2020-01-01 to the calibration end "
        "2020-05-16."
    ) in page
    assert "churn.* metrics (trained with --no-churn?)" not in page and "Which churn score" not in page
    # an ok verdict raises no flag
    client.set_tag(
        run_id, "crmvalue.value_gate", "ok: holdout purchases predicted 38 against 39 made (-3%), within ±25%"
    )
    client.log_metric(run_id, "quality.value_red_flag", 0.0)
    assert "Red flag" not in build_report(run_id, uri)


@pytest.mark.parametrize(
    "params, sentence",
    [
        (
            {"config.quadrants.rule": "top_share", "config.quadrants.potential_top_share": "0.2"},
            "High current value means above 45.50, the median current value of the customers with any; "
            "high potential value means above 120.25: the top 20% of customers by potential value.",
        ),
        (  # a run from before quadrants.rule: the quantile on each axis
            {"config.quadrants.quantile": "0.5"},
            "High current value means above 45.50 (the median); high potential value means above 120.25 (the median).",
        ),
        (
            {
                "config.quadrants.rule": "top_share",
                "config.quadrants.current_threshold": "45.5",
                "config.quadrants.potential_threshold": "",
            },
            "High current value means above 45.50 (set in the config); high potential value means above 120.25: "
            "the top 20% of customers by potential value.",
        ),
    ],
)
def test_quadrant_table_shows_the_medians_and_the_rule_of_the_run(tmp_path, params, sentence):
    """Each quadrant's median current and potential value in the table; the cuts said by the run's rule."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    pd.DataFrame(
        {
            "quadrant": ["A", "B", "C", "D"],
            "customers": [10, 20, 30, 40],
            "share": [0.1, 0.2, 0.3, 0.4],
            "median_current_value": [150.0, 0.0, 80.25, 0.0],
            "median_potential_value": [400.5, 210.0, 35.0, 6.07],
            "current_value_total": [1500.0, 0.0, 2400.0, 10.0],
            "potential_value_total": [4000.0, 4200.0, 1050.0, 250.0],
            "treatment": ["keep", "develop", "maintain", "serve"],
        }
    ).to_csv(tmp_path / "quadrant_summary.csv", index=False)
    run_id = _handmade_run(client, tmp_path, "rules", {"quadrant_summary.csv": tmp_path / "quadrant_summary.csv"})
    for key, value in {
        **params,
        "quadrants.current_threshold_used": "45.5",
        "quadrants.potential_threshold_used": "120.25",
    }.items():
        client.log_param(run_id, key, value)
    page = build_report(run_id, uri)
    section = page[page.index('id="quadrants"') : page.index('id="actions"')]
    assert sentence in section
    headers = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", section)
    assert headers[:7] == [
        "Quadrant",
        "Potential, current",
        "Treatment",
        "Customers",
        "Share of customers",
        "Median current value",
        "Median potential value",
    ]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", section)[1:]]
    assert [row[5:7] for row in rows] == [
        ["150.00", "400.50"],
        ["0.00", "210.00"],
        ["80.25", "35.00"],
        ["0.00", "6.07"],
    ]
