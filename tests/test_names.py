"""Issue 14, points 6 and 7: named experiments, registered names per experiment, predict on renamed columns.

Through the console script on small files written here: two shops trained once (module scope) into
one MLflow store, with cwd in a temporary folder so models/ and exports/ land there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from conftest import random_transactions

CLI = shutil.which("crmvalue") or str(Path(sys.executable).with_name("crmvalue"))
REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(COLUMNS="200", NO_COLOR="1")
    return subprocess.run([CLI, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one line a refused command prints (warnings aside)."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("WARNING")]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def shops(tmp_path_factory):
    """shop_a.csv trained with --name north; shop_b.csv through a config without name: (both --no-churn)."""
    tmp = tmp_path_factory.mktemp("names")
    uri = f"sqlite:///{tmp}/mlflow.db"
    random_transactions(120, seed=5).to_csv(tmp / "shop_a.csv", index=False)
    random_transactions(100, seed=6).to_csv(tmp / "shop_b.csv", index=False)
    (tmp / "b.yaml").write_text(yaml.safe_dump({"data": {"source": "shop_b.csv"}, "time_unit": "days"}))
    north = run_cli("train", "--data", "shop_a.csv", "--name", "north", "--no-churn", "--tracking-uri", uri, cwd=tmp)
    assert north.returncode == 0, north.stderr
    shop_b = run_cli("train", "--config", "b.yaml", "--no-churn", "--tracking-uri", uri, cwd=tmp)
    assert shop_b.returncode == 0, shop_b.stderr
    return {
        "tmp": tmp,
        "uri": uri,
        "north": north,
        "shop_b": shop_b,
        "client": mlflow.tracking.MlflowClient(tracking_uri=uri),
    }


def _experiment(done: subprocess.CompletedProcess) -> str:
    return re.search(r"\(experiment '([^']+)'\)", done.stdout)[1]


def test_name_sets_the_experiment_its_folders_and_registered_models(shops):
    tmp, done = shops["tmp"], shops["north"]
    assert _experiment(done) == "north"
    assert (tmp / "exports" / "north" / "predictions.csv").is_file()
    assert (tmp / "models" / "north").is_dir()
    assert "registered      north-value version 1" in done.stdout
    assert "crmvalue promote --name north --version 1" in done.stdout  # the hint names this experiment
    assert shops["client"].get_experiment_by_name("north") is not None


def test_a_config_without_name_takes_the_data_files_name(shops):
    tmp, done = shops["tmp"], shops["shop_b"]
    assert _experiment(done) == "shop_b"
    assert (tmp / "exports" / "shop_b" / "predictions.csv").is_file() and (tmp / "models" / "shop_b").is_dir()
    assert not (tmp / "exports" / "crmvalue").exists() and not (tmp / "models" / "crmvalue").exists()
    assert "registered      shop_b-value version 1" in done.stdout


def test_default_names():
    from crmvalue.config import load_config

    # the bundled experiments keep their names, and `make train` (experiments/cdnow.yaml) registers cdnow-value
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.name == yaml.safe_load(path.read_text())["name"] == path.stem
        assert (cfg.registry.value_model, cfg.registry.churn_model) == (f"{cfg.name}-value", f"{cfg.name}-churn")
    assert load_config(None).name == "cdnow"
    assert load_config(None, {"data.source": "cdnow_sample"}).name == "cdnow_sample"
    assert load_config(None, {"data.source": "/data/My Shop (2023).csv"}).name == "My_Shop__2023_"
    explicit = load_config(None, {"name": "eu", "registry.value_model": "eu-clv"})
    assert (explicit.registry.value_model, explicit.registry.churn_model) == ("eu-clv", "eu-churn")


def test_two_shops_register_apart_and_promoting_one_leaves_the_others_alias(shops):
    tmp, uri, client = shops["tmp"], shops["uri"], shops["client"]
    assert {m.name for m in client.search_registered_models()} == {"north-value", "shop_b-value"}
    done = run_cli("promote", "--name", "shop_b", "--version", "1", "--tracking-uri", uri, cwd=tmp)
    assert done.returncode == 0 and "shop_b-value@champion -> version 1" in done.stdout, done.stderr
    done = run_cli("promote", "--experiment", "north", "--version", "1", "--tracking-uri", uri, cwd=tmp)
    assert done.returncode == 0 and done.stdout.strip() == "north-value@champion -> version 1", done.stderr
    assert str(client.get_model_version_by_alias("shop_b-value", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("north-value", "champion").version) == "1"
    # no experiment named: one line that lists the registered models, nothing moved
    line = error_line(run_cli("promote", "--version", "1", "--tracking-uri", uri, cwd=tmp))
    assert "--name" in line and "north-value, shop_b-value" in line
    line = error_line(run_cli("promote", "--name", "south", "--version", "1", "--tracking-uri", uri, cwd=tmp))
    assert "south-value" in line and "north-value, shop_b-value" in line


def _observation_end(tmp: Path) -> str:
    return str(pd.read_csv(tmp / "shop_a.csv", parse_dates=["date"])["date"].max().date())


def test_predict_maps_renamed_columns_and_reproduces_the_export(shops):
    tmp, uri = shops["tmp"], shops["uri"]
    frame = pd.read_csv(tmp / "shop_a.csv")
    frame.rename(columns={"customer_id": "Kunde", "date": "Datum", "amount": "Umsatz"}).to_csv(
        tmp / "renamed.csv", sep=";", index=False
    )
    done = run_cli(
        "predict",
        "--name",
        "north",
        "--data",
        "renamed.csv",
        "--observation-end",
        _observation_end(tmp),
        "--out",
        "scores.csv",
        "--customer-col",
        "Kunde",
        "--date-col",
        "Datum",
        "--amount-col",
        "Umsatz",
        "--sep",
        ";",
        "--tracking-uri",
        uri,
        "--quiet",
        cwd=tmp,
    )
    assert done.returncode == 0, done.stderr
    assert "model north-value version 1" in done.stdout
    trained = pd.read_csv(tmp / "exports" / "north" / "predictions.csv", dtype={"customer_id": str})
    scored = pd.read_csv(tmp / "scores.csv", dtype={"customer_id": str})
    assert list(scored.columns) == list(trained.columns)
    columns = [c for c in trained.columns if c != "run_id"]
    pd.testing.assert_frame_equal(scored[columns], trained[columns], check_exact=False, rtol=1e-9)


def test_predict_refuses_a_file_with_other_columns_in_one_line_naming_the_flags(shops):
    tmp, uri = shops["tmp"], shops["uri"]
    pd.read_csv(tmp / "shop_a.csv").rename(columns={"customer_id": "client", "amount": "total"}).to_csv(
        tmp / "other.csv", index=False
    )
    line = error_line(
        run_cli(
            "predict",
            "--name",
            "north",
            "--data",
            "other.csv",
            "--observation-end",
            _observation_end(tmp),
            "--out",
            "x.csv",
            "--tracking-uri",
            uri,
            cwd=tmp,
        )
    )
    for word in (
        "other.csv",
        "'customer_id'",
        "'amount'",
        "'client'",
        "'total'",
        "--customer-col",
        "--date-col",
        "--amount-col",
        "north-value",
    ):
        assert word in line, line
    assert not (tmp / "x.csv").exists()


def _predict_flags() -> set[str]:
    import typer

    from crmvalue.cli import app

    command = typer.main.get_command(app).commands["predict"]
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")}


def test_every_predict_error_suggests_only_predicts_flags(shops, capsys, monkeypatch):
    """Each way a user's file or call can be refused, through the command's entry point (in process)."""
    from crmvalue.cli import main

    tmp, uri = shops["tmp"], shops["uri"]
    monkeypatch.chdir(tmp)
    end = _observation_end(tmp)
    base = pd.read_csv(tmp / "shop_a.csv")
    files = {}

    def write(name: str, frame: pd.DataFrame, **kwargs) -> str:
        frame.to_csv(tmp / name, index=False, **kwargs)
        return name

    files["semicolon"] = write("semicolon.csv", base, sep=";")
    files["comma"] = write(
        "comma.csv", base.assign(amount=base["amount"].map(lambda v: f"{v:.2f}".replace(".", ","))), sep=";"
    )
    days = pd.to_datetime(base["date"])
    files["ambiguous"] = write(
        "ambiguous.csv",
        base.assign(date=days.dt.strftime("%m/%d/%Y").where(days.dt.day <= 12, days.dt.strftime("%m/12/%Y"))),
    )
    files["guests"] = write("guests.csv", base.assign(customer_id=base["customer_id"].mask(base.index == 3)))
    late = base.copy()
    late.loc[4, "date"] = "2031-05-01"
    files["late"] = write("late.csv", late)
    latin = base.copy()
    latin.loc[0, "customer_id"] = "Müller"
    files["latin"] = write("latin.csv", latin, encoding="latin-1")
    files["renamed"] = write("renamed2.csv", base.rename(columns={"amount": "Umsatz"}))
    flags = _predict_flags()
    assert {
        "--customer-col",
        "--date-col",
        "--amount-col",
        "--quantity-col",
        "--price-col",
        "--date-format",
        "--dayfirst",
        "--monthfirst",
        "--sep",
        "--decimal",
        "--thousands",
        "--encoding",
        "--drop-missing-ids",
        "--allow-future-dates",
        "--name",
    } <= flags

    common = ["--observation-end", end, "--out", "never.csv", "--tracking-uri", uri]
    cases = {
        "no model named": ["--data", "shop_a.csv", *common],
        "unknown experiment": ["--name", "south", "--data", "shop_a.csv", *common],
        "no such run": ["--model", f"runs:/{'0' * 32}/value_model", "--data", "shop_a.csv", *common],
        "renamed column": ["--name", "north", "--data", files["renamed"], *common],
        "other delimiter": ["--name", "north", "--data", files["semicolon"], *common],
        "decimal comma": ["--name", "north", "--data", files["comma"], "--sep", ";", *common],
        "ambiguous dates": ["--name", "north", "--data", files["ambiguous"], *common],
        "missing ids": ["--name", "north", "--data", files["guests"], *common],
        "a 2031 typo": ["--name", "north", "--data", files["late"], *common],
        "latin-1": ["--name", "north", "--data", files["latin"], *common],
        "bad --sep": ["--name", "north", "--data", "shop_a.csv", "--sep", "ab", *common],
        "earlier observation end": [
            "--name",
            "north",
            "--data",
            "shop_a.csv",
            "--observation-end",
            "2020-01-05",
            "--out",
            "never.csv",
            "--tracking-uri",
            uri,
        ],
        "two models": ["--name", "north", "--model", "models:/north-value/1", "--data", "shop_a.csv", *common],
    }
    expected = {
        "no model named": "--name",
        "renamed column": "--amount-col",
        "other delimiter": "--sep",
        "decimal comma": "--decimal",
        "ambiguous dates": "--dayfirst",
        "missing ids": "--drop-missing-ids",
        "a 2031 typo": "--allow-future-dates",
        "latin-1": "--encoding",
        "bad --sep": "--sep",
    }
    for case, args in cases.items():
        monkeypatch.setattr(sys, "argv", ["crmvalue", "predict", *args])
        with pytest.raises(SystemExit) as stopped:
            main()
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert stopped.value.code == 2 and len(lines) == 1, (case, err)
        said = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", re.sub(r"`[^`]*`", "", lines[0])))
        assert said <= flags, (case, lines[0], said - flags)
        if case in expected:
            assert expected[case] in said, (case, lines[0])
    assert not (tmp / "never.csv").exists()


def test_the_suggested_flags_work_in_predict(shops):
    tmp, uri = shops["tmp"], shops["uri"]
    base = pd.read_csv(tmp / "shop_a.csv")
    base.assign(customer_id=base["customer_id"].mask(base.index == 3)).to_csv(tmp / "guests2.csv", index=False)
    done = run_cli(
        "predict",
        "--name",
        "north",
        "--data",
        "guests2.csv",
        "--observation-end",
        _observation_end(tmp),
        "--out",
        "guests_scores.csv",
        "--drop-missing-ids",
        "--tracking-uri",
        uri,
        "--quiet",
        cwd=tmp,
    )
    assert done.returncode == 0, done.stderr
    assert "dropped 1 row without a customer id" in done.stderr
