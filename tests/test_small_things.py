"""Issue 14, points 9 and 10: load_predictions from Python, --version, bare flags in --help,
no RuntimeWarning lines on the terminal, every bad config key at once, YAML errors with their line.

Through the console script where a user meets them; one small shared train run (module scope).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import random_transactions

import crmvalue

CLI = shutil.which("crmvalue") or str(Path(sys.executable).with_name("crmvalue"))
COMMANDS = ["", "train", "backtest", "simulate", "report", "export", "promote", "predict", "plan"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small --no-churn train on ids with leading zeros ("00012"): (folder, finished process)."""
    tmp = tmp_path_factory.mktemp("small_things")
    frame = random_transactions(120, seed=3)
    frame["customer_id"] = frame["customer_id"].str[1:].str.zfill(5)  # c0012 -> 00012
    frame.to_csv(tmp / "tx.csv", index=False)
    done = run_cli(
        "train",
        "--data",
        "tx.csv",
        "--no-churn",
        "--out",
        "out.csv",
        "--tracking-uri",
        f"sqlite:///{tmp}/mlflow.db",
        cwd=tmp,
    )
    assert done.returncode == 0, done.stderr
    return tmp, done


def test_version():
    done = run_cli("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"crmvalue {crmvalue.__version__}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_without_a_bool_type(command):
    done = run_cli(*filter(None, [command]), "--help")
    assert done.returncode == 0, done.stderr
    assert "<bool>" not in done.stdout and "BOOLEAN" not in done.stdout.upper()
    assert "--help" in done.stdout
    if command == "train":
        for flag in ("--quiet", "--intervals", "--churn", "--no-churn", "--drop-missing-ids", "--dayfirst"):
            assert flag in done.stdout


def test_config_errors_list_every_bad_key_on_one_line(tmp_path):
    (tmp_path / "x.yaml").write_text("name: x\nmodel:\n  penalizer: lots\nchurn:\n  enabled: maybe\nfoo: 1\n")
    done = run_cli("train", "--config", "x.yaml", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: x.yaml: 3 bad settings: model.penalizer: ")
    for key in ("model.penalizer: ", "; churn.enabled: ", "; foo: Extra inputs are not permitted"):
        assert key in lines[0]
    assert "'lots'" in lines[0] and "'maybe'" in lines[0]
    assert "Traceback" not in done.stderr


def test_yaml_syntax_error_gives_the_line(tmp_path):
    (tmp_path / "x.yaml").write_text("name: x\nmodel:\n  penalizer: 0.1\n   purchase_model: [bgnbd\n")
    done = run_cli("train", "--config", "x.yaml", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: x.yaml: not valid YAML at line 4, column 18: ")
    assert "purchase_model: [bgnbd" in lines[0]


def test_no_runtime_warning_lines_during_train(trained):
    _, done = trained
    assert "RuntimeWarning" not in done.stderr
    assert "Warning:" not in done.stderr.replace("WARNING:", "")  # crmvalue's own lines are WARNING: ...


def test_runtime_warnings_are_filtered_by_the_command_only():
    """Library use sees numpy's RuntimeWarning; after the entry point runs, the process does not."""
    script = (
        "import sys, numpy as np\n"
        "import crmvalue.cli\n"
        "np.log(np.zeros(1))\n"
        "print('---', file=sys.stderr)\n"
        "sys.argv = ['crmvalue', '--version']\n"
        "crmvalue.cli.main()\n"
        "np.log(np.zeros(1))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    library, command = done.stderr.split("---")
    assert "RuntimeWarning: divide by zero" in library
    assert "RuntimeWarning" not in command


def test_import_crmvalue_does_not_import_mlflow():
    script = (
        "import sys, crmvalue; crmvalue.load_predictions; print('mlflow' in sys.modules, 'sqlalchemy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_load_predictions(trained):
    tmp, _ = trained
    uri = f"sqlite:///{tmp}/mlflow.db"
    frame = crmvalue.load_predictions(run="latest", tracking_uri=uri)
    written = pd.read_csv(tmp / "out.csv", dtype={"customer_id": str})
    assert len(frame) == len(written) == 120
    assert list(frame.columns) == list(written.columns)
    # ids stay text: "00012", never 12
    assert pd.api.types.is_string_dtype(frame["customer_id"])
    assert all(isinstance(v, str) for v in frame["customer_id"])
    assert "00012" in set(frame["customer_id"])
    for column in ("quadrant", "rfm_segment", "rfm_score", "cpm_label", "crm_grade", "run_id"):
        assert pd.api.types.is_string_dtype(frame[column]), column
    for column in ("frequency", "rfm_r", "rfm_f", "rfm_m", "cpm_group", "value_decile"):
        assert frame[column].dtype == np.int64, column
    for column in ("recency", "T", "monetary_value", "p_alive", "expected_purchases", "clv", "crm_value"):
        assert frame[column].dtype == np.float64, column
    for column in ("first_purchase", "last_purchase"):
        assert pd.api.types.is_datetime64_any_dtype(frame[column]), column
    for column in ("orders", "tenure_days"):
        assert frame[column].dtype == np.int64, column
    assert frame["revenue"].dtype == np.float64
    run_id = frame.attrs["run_id"]
    assert set(frame["run_id"]) == {run_id}
    # the same run by id and by experiment (named after the data file)
    by_id = crmvalue.load_predictions(run=run_id, tracking_uri=uri)
    pd.testing.assert_frame_equal(by_id, frame)
    assert crmvalue.load_predictions(experiment="tx", tracking_uri=uri).attrs["run_id"] == run_id
    with pytest.raises(crmvalue.CrmvalueError, match="no experiment 'no-such-experiment'"):
        crmvalue.load_predictions(experiment="no-such-experiment", tracking_uri=uri)


def test_the_summary_ends_with_the_next_commands_and_they_work(trained):
    tmp, done = trained
    lines = done.stdout.strip().splitlines()
    run_id = lines[0].split()[2]
    assert lines[-3].startswith(
        f"next            crmvalue report --run {run_id} --tracking-uri sqlite:///{tmp}/mlflow.db"
    )
    assert "make mlflow-ui" in lines[-2] and lines[-1].strip().startswith(f"crmvalue export --run {run_id}")
    report = lines[-3].removeprefix("next").split("(")[0].split()  # the command as printed, run as it is
    again = run_cli(*report[1:], cwd=tmp)
    assert again.returncode == 0 and (tmp / "report.html").is_file(), again.stderr
