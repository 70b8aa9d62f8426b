"""The command as a process: exit codes and signals, all-or-nothing runs, the store lock, stores
that cannot be written or reached (issue 13, points 5 and 6).

Signals go to a real ``crmvalue train`` subprocess at a moment its progress lines on stderr
name: during the fits (no MLflow run yet) and while its MLflow run is open. Failures inside the
commit (export, registry, ``models/<name>/``) are forced in process, on a run trained once.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from conftest import simulated_transactions

from crmvalue import registry
from crmvalue.config import load_config
from crmvalue.errors import CrmvalueError
from crmvalue.io import StagedFiles, check_writable
from crmvalue.pipeline import check_outputs, train
from crmvalue.tracking.writer import MlflowRunWriter

CLI = str(Path(sys.executable).with_name("crmvalue"))
NAME = "process"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}


def _error_lines(stderr: str) -> list[str]:
    """The lines that are not progress or warnings: what the user is told went wrong."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("… ", "  ", "WARNING: ", "INFO: "))
    ]


def _client(uri: str):
    return mlflow.tracking.MlflowClient(tracking_uri=uri)


def _snapshot(tmp: Path, uri: str) -> dict:
    """Everything a run may change for the CRM: the export folder, models/, the registry."""
    files = {
        str(p.relative_to(tmp)): p.read_bytes()
        for top in ("out", "models")
        if (tmp / top).exists()
        for p in sorted((tmp / top).rglob("*"))
        if p.is_file()
    }
    versions = sorted((v.name, int(v.version)) for v in _client(uri).search_model_versions())
    return {"files": files, "versions": versions}


def _statuses(uri: str) -> dict[str, str]:
    client = _client(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {r.info.run_id: r.info.status for r in runs}


# ------------------------------------------------------------------------------------------
# One store with one finished run: the state that interrupted and failed runs must leave alone
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("process")
    uri = f"sqlite:///{tmp}/mlflow.db"
    config = tmp / "process.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": NAME,
                "models_dir": str(tmp / "models"),
                "out": str(tmp / "out" / "predictions.csv"),
                "tracking_uri": uri,
                "analyses": {"enabled": False},  # fewer figures to log: a faster suite
            }
        )
    )
    simulated_transactions(n_customers=300, seed=4).to_csv(tmp / "tx.csv", index=False)
    proc = subprocess.run(
        [
            CLI,
            "train",
            "--config",
            str(config),
            "--data",
            str(tmp / "tx.csv"),
            "--no-churn",
            "--gamma-gamma-penalizer",
            "0.001",
            "--quiet",
        ],
        cwd=tmp,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return {"tmp": tmp, "uri": uri, "config": config, "before": _snapshot(tmp, uri), "runs": _statuses(uri)}


def test_the_first_run_registered_and_wrote_its_files(store):
    assert store["before"]["versions"] == [(f"{NAME}-value", 1)]
    assert set(store["before"]["files"]) == {"out/predictions.csv", f"models/{NAME}/value_model.json"}
    assert list(store["runs"].values()) == ["FINISHED"]


def test_gamma_gamma_penalizer_flag_reaches_the_config(store):
    run = _client(store["uri"]).get_run(next(iter(store["runs"])))
    assert float(run.data.params["config.model.gamma_gamma_penalizer"]) == 0.001
    assert float(run.data.params["config.model.penalizer"]) == 0.0


def _default_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def _signalled(
    store, args: list[str], stage: str, signum: int | None, run_open: bool = False, act=None
) -> subprocess.CompletedProcess:
    """Start `crmvalue train`, wait for the progress line of ``stage`` (and, with ``run_open``, for its
    MLflow run to be RUNNING), then send ``signum`` or call ``act()``. ``.runs`` of the result: the runs before."""
    runs = _statuses(store["uri"])
    proc = subprocess.Popen(
        [CLI, "train", "--config", str(store["config"]), *args],
        cwd=store["tmp"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a runner started in the background (``cmd &`` in a script) passes SIGINT on as ignored, and the
        # command rightly keeps an ignored signal ignored (as under nohup): the test wants a terminal's defaults
        preexec_fn=_default_signals,
    )
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if stage in line:
                break
        else:
            pytest.fail(f"no progress line {stage!r}: {''.join(seen)}")
        if run_open:
            deadline = time.monotonic() + 120
            while not set(_statuses(store["uri"]).values()) & {"RUNNING"}:
                assert time.monotonic() < deadline and proc.poll() is None, "the run never opened"
                time.sleep(0.1)
        if signum is not None:
            proc.send_signal(signum)
        if act is not None:
            act()
        stdout, rest = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, "".join(seen) + rest)
    result.runs = runs
    return result


def _assert_stopped_cleanly(store, proc: subprocess.CompletedProcess, signum: int) -> dict[str, str]:
    """Exit 128 + signal, one line, nothing changed; returns the new runs and their statuses."""
    assert proc.returncode == 128 + signum, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and errors[0].startswith("error: ") and signal.Signals(signum).name in errors[0], (
        proc.stderr
    )
    assert proc.stdout == ""
    # no partial file, no new version, models/ untouched
    assert _snapshot(store["tmp"], store["uri"]) == store["before"]
    new = {k: v for k, v in _statuses(store["uri"]).items() if k not in proc.runs}
    assert set(new.values()) <= {"KILLED"}, new
    return new


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_fits_exits_128_plus_the_signal_and_writes_nothing(store, signum):
    proc = _signalled(store, ["--data", "cdnow_sample", "--churn"], "training the LightGBM churn model", signum)
    assert _assert_stopped_cleanly(store, proc, signum) == {}  # no MLflow run had started


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_run_is_open_marks_it_killed(store, signum):
    proc = _signalled(
        store, ["--data", str(store["tmp"] / "tx.csv"), "--no-churn"], "logging the MLflow run", signum, run_open=True
    )
    new = _assert_stopped_cleanly(store, proc, signum)
    assert list(new.values()) == ["KILLED"]


@pytest.mark.slow
def test_a_run_that_cannot_write_its_export_at_the_end_changes_nothing(store):
    """--out passed the pre-flight, then its folder became a file while the run was logged: the run
    fails at its first commit step, in one line; no version is registered, models/ is untouched."""
    out, moved = store["tmp"] / "out", store["tmp"] / "out.moved"

    def block_the_export():
        out.rename(moved)
        out.write_text("not a folder")

    try:
        proc = _signalled(
            store,
            ["--data", str(store["tmp"] / "tx.csv"), "--no-churn"],
            "logging the MLflow run",
            None,
            run_open=True,
            act=block_the_export,
        )
        assert out.read_text() == "not a folder"
    finally:
        if moved.exists():
            out.unlink(missing_ok=True)
            moved.rename(out)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _error_lines(proc.stderr) == [
        f"error: cannot write {out}: File exists; the run is marked FAILED and nothing was exported or registered"
    ]
    assert _snapshot(store["tmp"], store["uri"]) == store["before"]
    new = {k: v for k, v in _statuses(store["uri"]).items() if k not in proc.runs}
    assert list(new.values()) == ["FAILED"]


# ------------------------------------------------------------------------------------------
# All or nothing: failures and signals inside the commit, forced in process
# ------------------------------------------------------------------------------------------


class _Keep:
    """A run writer that keeps the trained run instead of writing it."""

    def write(self, run):
        self.run = run
        return "kept", "kept", {}


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """A run trained once and written once (version 1, the export, models/); each test writes it again."""
    tmp = tmp_path_factory.mktemp("commit")
    uri = f"sqlite:///{tmp}/mlflow.db"
    cfg = load_config(
        None,
        {
            "name": NAME,
            "tracking_uri": uri,
            "out": str(tmp / "out" / "predictions.csv"),
            "models_dir": str(tmp / "models"),
            "churn.enabled": False,
            "analyses.enabled": False,
        },
    )
    keep = _Keep()
    train(cfg, data=simulated_transactions(n_customers=200, seed=6), writer=keep)
    MlflowRunWriter().write(keep.run)
    return {"tmp": tmp, "uri": uri, "run": keep.run}


def _fail(*args, **kwargs):
    raise OSError(28, "No space left on device", "/fake/disk")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["export", "registry", "models"])
def test_a_failure_in_the_commit_leaves_everything_as_it_was(committed, monkeypatch, where):
    tmp, uri = committed["tmp"], committed["uri"]
    before, runs = _snapshot(tmp, uri), _statuses(uri)
    assert (f"{NAME}-value", 1) in before["versions"] and "out/predictions.csv" in before["files"]
    if where == "export":
        monkeypatch.setattr(StagedFiles, "copy", _fail)
    elif where == "registry":
        monkeypatch.setattr(registry, "register", _fail)
    else:  # after the export is in place and the version registered
        monkeypatch.setattr(StagedFiles, "write_text", _fail)
    with pytest.raises(
        CrmvalueError, match="cannot write /fake/disk: No space left on device; the run is marked FAILED"
    ):
        MlflowRunWriter().write(committed["run"])
    assert _snapshot(tmp, uri) == before
    new = {k: v for k, v in _statuses(uri).items() if k not in runs}
    assert list(new.values()) == ["FAILED"]
    run = _client(uri).get_run(next(iter(new)))
    assert registry.VERSION_TAG not in run.data.tags
    leftovers = [p.name for p in tmp.rglob(".*") if p.suffix in (".previous", ".tmp")]
    assert leftovers == []


@pytest.mark.slow
def test_a_failed_first_version_takes_its_registered_model_back(committed, monkeypatch):
    _tmp, uri = committed["tmp"], committed["uri"]
    run = committed["run"]
    fresh = run.cfg.model_copy(update={"registry": run.cfg.registry.model_copy(update={"value_model": "fresh-model"})})
    monkeypatch.setattr(StagedFiles, "write_text", _fail)
    with pytest.raises(CrmvalueError):
        MlflowRunWriter().write(dataclasses.replace(run, cfg=fresh))
    assert [m.name for m in _client(uri).search_registered_models()] == [f"{NAME}-value"]


@pytest.mark.slow
def test_a_signal_during_the_commit_undoes_it_and_the_run_is_killed(committed, monkeypatch):
    from crmvalue import tracking

    tmp, uri = committed["tmp"], committed["uri"]
    before, runs = _snapshot(tmp, uri), _statuses(uri)
    register = registry.register

    def register_then_terminate(*args, **kwargs):
        version = register(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # held back until the commit is undone
        return version

    monkeypatch.setattr(registry, "register", register_then_terminate)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    tracking.handle_interrupts()
    try:
        with pytest.raises(tracking.Interrupted) as raised:
            MlflowRunWriter().write(committed["run"])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert raised.value.signum == signal.SIGTERM and tracking.received_signal() == signal.SIGTERM
    assert _snapshot(tmp, uri) == before
    new = {k: v for k, v in _statuses(uri).items() if k not in runs}
    assert list(new.values()) == ["KILLED"]


def test_staged_files_roll_back_new_and_replaced_files_and_new_folders(tmp_path):
    (tmp_path / "old.txt").write_text("old")
    files = StagedFiles()
    files.write_text(tmp_path / "old.txt", "new")
    files.write_text(tmp_path / "a" / "b" / "new.txt", "new")
    assert (tmp_path / "old.txt").read_text() == "new" and (tmp_path / "a" / "b" / "new.txt").read_text() == "new"
    files.rollback()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"] and (tmp_path / "old.txt").read_text() == "old"
    files.write_text(tmp_path / "old.txt", "new")
    files.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"] and (tmp_path / "old.txt").read_text() == "new"


# ------------------------------------------------------------------------------------------
# Pre-flight: what cannot be written fails before the work starts, in one line
# ------------------------------------------------------------------------------------------


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody may write (root too: crmvalue treats a-w as read-only even for root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    yield folder
    for path in (folder, *folder.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _refused(tmp: Path, *args: str) -> str:
    """`crmvalue train` with ``args`` must stop at once: exit 2, one line, nothing written; returns the line."""
    listing = sorted(p.relative_to(tmp) for p in tmp.rglob("*"))
    proc = subprocess.run(
        [CLI, "train", "--data", "cdnow_sample", *args], cwd=tmp, env=_env(), capture_output=True, text=True, timeout=30
    )  # a hang guard: MLflow used to retry for 107 s
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert sorted(p.relative_to(tmp) for p in tmp.rglob("*")) == listing, "something was written"
    return lines[0]


@pytest.mark.slow
def test_an_unwritable_out_fails_before_the_work(tmp_path, read_only):
    read_only.chmod(0o555)
    line = _refused(tmp_path, "--out", str(read_only / "scores.csv"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db")
    assert f"cannot write the predictions file {read_only / 'scores.csv'}: the folder {read_only} is read-only" in line


@pytest.mark.slow
@pytest.mark.parametrize("what", ["folder", "file"])
def test_a_read_only_sqlite_store_fails_in_seconds_with_one_line(store, tmp_path, read_only, what):
    database = read_only / "mlflow.db"
    database.write_bytes((store["tmp"] / "mlflow.db").read_bytes())
    (database if what == "file" else read_only).chmod(0o444 if what == "file" else 0o555)
    line = _refused(tmp_path, "--out", str(tmp_path / "scores.csv"), "--tracking-uri", f"sqlite:///{database}")
    expected = "it is read-only" if what == "file" else f"the folder {read_only} is read-only"
    assert f"cannot write the MLflow store {database}: {expected}" in line


@pytest.mark.slow
def test_an_unreachable_tracking_server_fails_in_seconds_with_one_line(tmp_path):
    import socket

    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    line = _refused(tmp_path, "--out", str(tmp_path / "scores.csv"), "--tracking-uri", f"http://127.0.0.1:{port}")
    assert f"cannot reach the MLflow server at http://127.0.0.1:{port}: [Errno 111] Connection refused" in line


@pytest.mark.slow
def test_predict_checks_its_out_before_scoring(store, tmp_path, read_only):
    read_only.chmod(0o555)
    proc = subprocess.run(
        [
            CLI,
            "predict",
            "--model",
            f"models:/{NAME}-value/1",
            "--data",
            str(store["tmp"] / "tx.csv"),
            "--observation-end",
            "2021-12-31",
            "--out",
            str(read_only / "scores.csv"),
            "--tracking-uri",
            store["uri"],
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert _error_lines(proc.stderr) == [
        f"error: cannot write the scores file {read_only / 'scores.csv'}: the folder {read_only} is read-only (set --out)"
    ]


def test_check_outputs_names_the_path_that_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("")
    base = {"tracking_uri": f"sqlite:///{tmp_path}/new/mlflow.db", "name": NAME}
    check_outputs(load_config(None, {**base, "out": str(tmp_path / "a" / "b.csv"), "models_dir": str(tmp_path / "m")}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # checked, nothing created
    with pytest.raises(
        CrmvalueError,
        match=re.escape(
            f"cannot write the predictions file {tmp_path}/file/b.csv: {tmp_path}/file is a file, not a folder (set --out)"
        ),
    ):
        check_outputs(load_config(None, {**base, "out": str(tmp_path / "file" / "b.csv")}))
    with pytest.raises(
        CrmvalueError,
        match=re.escape(
            f"cannot write the models folder {tmp_path}/file/{NAME}: {tmp_path}/file is a file, not a folder"
        ),
    ):
        check_outputs(load_config(None, {**base, "models_dir": str(tmp_path / "file"), "out": str(tmp_path / "o.csv")}))
    with pytest.raises(CrmvalueError, match="it is a folder, not a file"):
        check_writable(tmp_path, "the predictions file")


# ------------------------------------------------------------------------------------------
# The store lock: concurrent first runs on a new store both succeed
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_first_trains_on_a_new_store_both_succeed(store, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    config = tmp_path / "fast.yaml"
    config.write_text(yaml.safe_dump({"name": NAME, "analyses": {"enabled": False}, "churn": {"enabled": False}}))
    # the same work in both: they reach the new store together, where MLflow creates its tables
    procs = [
        subprocess.Popen(
            [
                CLI,
                "train",
                "--config",
                str(config),
                "--data",
                str(store["tmp"] / "tx.csv"),
                "--quiet",
                "--tracking-uri",
                uri,
                "--out",
                str(tmp_path / f"out{i}.csv"),
            ],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [(p.returncode, err) for p in procs for _, err in [p.communicate(timeout=300)]]
    assert [code for code, _ in results] == [0, 0], results
    assert sorted(_statuses(uri).values()) == ["FINISHED", "FINISHED"]
    assert sorted(int(v.version) for v in _client(uri).search_model_versions()) == [1, 2]
    assert (tmp_path / "mlflow.db.lock").is_file()
