"""The training pipeline on generated logs of many shapes (issue 13, point 9).

Every case ends either complete, with finite outputs and a row per customer with a purchase,
or with a :class:`~crmvalue.errors.CrmvalueError` of one line (exit 2 and one ``error:`` line
through the console script). Any other exception is a failure. A valid log with at least 20
customers with a purchase and two distinct purchase days must complete.

The 300-odd cases run in process, with MLflow swapped for :class:`InMemoryRunWriter` (everything
else is real); a selection of shapes runs through ``crmvalue train`` with a real MLflow store.
Deselect both with ``-m 'not robustness'``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from logshapes import CASES, LogCase, make_case, purchase_counts, purchasers

from crmvalue.config import load_config
from crmvalue.errors import CrmvalueError
from crmvalue.pipeline import train
from crmvalue.progress import Progress
from crmvalue.tracking.writer import InMemoryRunWriter

CLI = Path(sys.executable).with_name("crmvalue")
CASE_SECONDS = 120  # one small log that trains longer than this is a hang, not a slow case


class CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` in the pipeline hides it."""


@contextlib.contextmanager
def time_limit(seconds: int):
    def expire(signum, frame):
        raise CaseTimeout(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class StageRecorder(Progress):
    """A silent Progress that remembers the stage in flight, so a failure can say where it happened."""

    def __init__(self):
        super().__init__(enabled=False)
        self.current = "before load"

    @contextlib.contextmanager
    def stage(self, key: str, text: str, announce: bool = True):
        self.current = key
        with super().stage(key, text, announce):
            yield
        self.current = f"after {key}"


def raised_in(exc: BaseException) -> str:
    """The innermost crmvalue frame of a traceback (module:function:line), else the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [
        f for f in frames if f"{os.sep}crmvalue{os.sep}" in f.filename and f"{os.sep}tests{os.sep}" not in f.filename
    ]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return "?"
    module = Path(frame.filename).stem
    return f"{module}.{frame.name}:{frame.lineno}"


@dataclass
class Outcome:
    """How one case ended: ``complete``, ``error`` (a one-line CrmvalueError) or ``crash``."""

    status: str
    stage: str = ""
    error: str = ""  # "<type>: <first line>"
    where: str = ""
    problems: list[str] = field(default_factory=list)  # what is wrong with the outputs it left

    def describe(self) -> str:
        if self.status == "complete":
            return "complete, but " + "; ".join(self.problems)
        return f"{self.status} in stage {self.stage} at {self.where}: {self.error}" + "".join(
            f"; {p}" for p in self.problems
        )


def numeric_problems(frame: pd.DataFrame, what: str) -> list[str]:
    """Every numeric column must be finite in every row."""
    problems = []
    for column in frame.columns:
        if pd.api.types.is_bool_dtype(frame[column].dtype) or not pd.api.types.is_numeric_dtype(frame[column].dtype):
            continue
        bad = ~np.isfinite(frame[column].to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            problems.append(f"{what} column {column!r} is not finite in {int(bad.sum())} of {len(frame)} rows")
    return problems


def row_problems(frame: pd.DataFrame, expected: set[str], what: str) -> list[str]:
    """One row per customer with a purchase, no more, no fewer."""
    if "customer_id" not in frame.columns:
        return [f"{what} has no customer_id column"]
    ids = frame["customer_id"].astype(str)
    problems = []
    if ids.duplicated().any():
        problems.append(f"{what} repeats {int(ids.duplicated().sum())} customer ids")
    missing, extra = expected - set(ids), set(ids) - expected
    if missing:
        problems.append(
            f"{what} misses {len(missing)} of {len(expected)} customers with a purchase, e.g. {sorted(missing)[0]!r}"
        )
    if extra:
        problems.append(f"{what} has {len(extra)} customers without a purchase, e.g. {sorted(extra)[0]!r}")
    return problems


def read_predictions(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"customer_id": str}, keep_default_na=True)


def output_problems(predictions: pd.DataFrame, written: Path, expected: set[str]) -> list[str]:
    problems = numeric_problems(predictions, "result.predictions") + row_problems(
        predictions, expected, "result.predictions"
    )
    if not written.is_file():
        return problems + [f"the predictions file {written} was not written"]
    exported = read_predictions(written)
    return problems + numeric_problems(exported, "the file's") + row_problems(exported, expected, "the file")


def train_case(case: LogCase, tmp: Path, overrides: dict | None = None) -> Outcome:
    """Train on a case's log with churn and analyses at their defaults (and ``overrides``); classify how it ended."""
    out = tmp / "out" / "predictions.csv"
    cfg = load_config(
        None,
        {"name": case.name.replace("+", "_")[:100], "out": str(out), "models_dir": str(tmp / "models")}
        | (overrides or {}),
    )
    progress = StageRecorder()
    try:
        with time_limit(CASE_SECONDS):
            result = train(cfg, data=case.frame.copy(), progress=progress, writer=InMemoryRunWriter())
    except CrmvalueError as exc:
        message = str(exc)
        lines = message.strip().splitlines()
        outcome = Outcome("error", progress.current, f"CrmvalueError: {lines[0] if lines else ''}", raised_in(exc))
        if len(lines) != 1:
            outcome.status = "crash"
            outcome.error = f"CrmvalueError whose message is {len(lines)} lines: {message[:300]!r}"
        if out.exists():
            outcome.problems.append(f"the failed run left a predictions file at {out}")
        return outcome
    except (Exception, CaseTimeout) as exc:
        lines = str(exc).strip().splitlines()
        return Outcome("crash", progress.current, f"{type(exc).__name__}: {lines[0] if lines else ''}", raised_in(exc))
    return Outcome("complete", problems=output_problems(result.predictions, out, purchasers(case.frame)))


def check(outcome: Outcome, case: LogCase) -> None:
    if outcome.status == "crash":
        pytest.fail(outcome.describe(), pytrace=False)
    if outcome.status == "error" and case.must_complete:
        customers, days = purchase_counts(case.frame)
        pytest.fail(
            f"must complete ({customers} customers with a purchase, {days} purchase days) but stopped: "
            + outcome.describe(),
            pytrace=False,
        )
    if outcome.problems:
        pytest.fail(outcome.describe(), pytrace=False)


@pytest.mark.robustness
@pytest.mark.parametrize("name", list(CASES))
def test_training_on_a_generated_log_completes_or_stops_in_one_line(name, tmp_path):
    case = make_case(name)
    check(train_case(case, tmp_path), case)


# the options of the value and decision issues, on every tenth shape: the value model chosen by a
# backtest on the training period (auto), both kinds of intervals, the old quadrant rule and a
# partial action matrix; a shape must end the same way as with the defaults
NEW_OPTIONS = {
    "model.value_model": "auto",
    "intervals.enabled": True,
    "intervals.draws": 20,
    "quadrants.rule": "quantile",
    "decisions.actions": {"D": {"high": "archive"}},
}


@pytest.mark.robustness
@pytest.mark.parametrize("name", list(CASES)[::10])
def test_the_value_and_decision_options_on_a_generated_log_complete_or_stop_in_one_line(name, tmp_path):
    case = make_case(name)
    check(train_case(case, tmp_path, NEW_OPTIONS), case)


def test_the_check_tells_a_crash_from_a_one_line_error(monkeypatch, tmp_path):
    case = make_case("ordinary-n60-d120")

    def raw_error(*args, **kwargs):
        raise ValueError("array must not contain infs or NaNs")

    def two_lines(*args, **kwargs):
        raise CrmvalueError("first line\nsecond line")

    # injected where the pipeline degrades nothing: reading the data
    monkeypatch.setattr("crmvalue.inputs.load_customer_days", raw_error)
    crash = train_case(case, tmp_path / "raw")
    assert (crash.status, crash.stage) == ("crash", "load")
    assert crash.error == "ValueError: array must not contain infs or NaNs"
    monkeypatch.setattr("crmvalue.inputs.load_customer_days", two_lines)
    assert train_case(case, tmp_path / "two").status == "crash"

    scored = pd.DataFrame({"customer_id": ["a", "b"], "clv": [1.0, np.inf], "quadrant": ["A", "B"]})
    problems = output_problems(scored, tmp_path / "absent.csv", {"a", "b", "c"})
    assert len(problems) == 3  # clv not finite, customer c missing, no file


def test_the_generator_covers_the_issue_shapes_with_300_cases():
    shapes = {name.split("-")[0] for name in CASES}
    assert len(CASES) >= 300
    assert {
        "one_customer",
        "one_time_buyers",
        "one_day",
        "two_days",
        "heavy_buyers",
        "tiny_amounts",
        "huge_amounts",
        "identical_amounts",
        "no_dropout",
        "long_gap",
        "short_span",
        "returns",
        "ties",
        "forty_customers",
        "mixture",
        "simulated",
    } <= shapes


@pytest.mark.parametrize(
    "name",
    [
        "heavy_buyers-n20-h3-x5000-d365",
        "returns-only-n120-d200",
        "mixture-everything-s1",
        "simulated-no_dropout-n400-d365-a1",
    ],
)
def test_a_case_is_the_same_log_every_time(name):
    first, again = make_case(name), make_case(name)
    pd.testing.assert_frame_equal(first.frame, again.frame)
    assert list(first.frame.columns) == ["customer_id", "date", "amount"]
    assert first.frame["customer_id"].map(type).eq(str).all()


def test_the_shapes_are_what_their_names_say():
    heavy = make_case("heavy_buyers-n20-h20-x1000-d365").frame
    assert heavy.groupby("customer_id").size().min() >= 800  # thousands of purchases per customer
    assert make_case("one_day-n100-s2-repeats").frame["date"].dt.normalize().nunique() == 1
    assert make_case("two_days-g90-n200").frame["date"].dt.normalize().nunique() == 2
    assert make_case("identical_amounts-v25-n100-d365").frame["amount"].nunique() == 1
    assert make_case("tiny_amounts-cent-n80-d365").frame["amount"].eq(0.01).all()
    assert make_case("huge_amounts-round-n80-d365").frame["amount"].min() >= 1e9
    days = np.sort(make_case("long_gap-n40-b365-g365-a365").frame["date"].dt.normalize().unique())
    assert np.diff(days).max() >= pd.Timedelta(days=365)  # a year without a purchase in the middle
    short = make_case("short_span-d14-n400").frame["date"]
    assert (short.max() - short.min()).days < 14
    only_returns = make_case("returns-only-n120-d200").frame
    net = only_returns.groupby("customer_id")["amount"].max()
    assert (net < 0).sum() >= 20  # customers with nothing but returns
    assert len(purchasers(only_returns)) < only_returns["customer_id"].nunique()
    tied = make_case("ties-batch-n100-d365").frame
    assert tied["date"].nunique() <= 6
    assert make_case("forty_customers-d365-s4").frame["customer_id"].nunique() == 40
    assert make_case("one_customer-x300-d400-s2").frame["customer_id"].nunique() == 1
    assert make_case("one_time_buyers-n200-d365").frame["customer_id"].is_unique
    assert not make_case("one_day-n400-s1").must_complete and make_case("two_days-g1-n20").must_complete


# ------------------------------------------------------------------------------------------------
# through the console script, with a real MLflow store


# one case per shape; all but the simulated one are too short for the churn model, whose logging costs seconds
CLI_CASES = [
    "one_customer-x10-d400-s2",
    "one_time_buyers-n200-d365",
    "one_day-n100-s2-repeats",
    "two_days-g7-n60",
    "heavy_buyers-n20-h3-x5000-d365",
    "tiny_amounts-cent-n80-d365",
    "huge_amounts-billion-n80-d365",
    "identical_amounts-v25-n100-d365",
    "no_dropout-rate0.05-shape1-n100-d180",
    "long_gap-n200-b30-g365-a30",
    "short_span-d21-n150",
    "returns-mixed-n120-d200",
    "ties-midnight-n100-d365",
    "forty_customers-d365-s4",
    "mixture-everything-s1",
    "simulated-cdnow_weeks-n60-d800-a90",
]


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory) -> str:
    """One MLflow store for every console-script case: each run is its own experiment in it."""
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"


def run_train_cli(cwd: Path, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run([str(CLI), "train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def cli_problems(proc: subprocess.CompletedProcess, must_complete: bool) -> list[str]:
    """Exit 0, or exit 2 with exactly one stderr line starting with 'error:' and no traceback."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    problems = []
    if "Traceback" in proc.stderr:
        problems.append("a traceback on stderr: " + proc.stderr.strip().splitlines()[-1][:300])
    if proc.returncode == 0:
        return problems
    if proc.returncode != 2:
        problems.append(f"exit {proc.returncode}")
    if len(errors) != 1:
        problems.append(f"{len(errors)} 'error:' lines on stderr")
    if must_complete:
        problems.append(
            f"must complete but stopped while {stage_in_flight(proc.stderr)!r}: "
            + (errors[0] if errors else proc.stderr.strip()[-300:])
        )
    return problems


def stage_in_flight(stderr: str) -> str:
    """The last stage the progress lines announced ("… fitting ..."), where a failed run stopped."""
    announced = [line.removeprefix("… ") for line in stderr.splitlines() if line.startswith("… ")]
    return announced[-1] if announced else "loading"


@pytest.mark.robustness
@pytest.mark.slow
@pytest.mark.parametrize("name", CLI_CASES)
def test_crmvalue_train_on_a_generated_log_completes_or_prints_one_error_line(name, tmp_path, shared_store):
    case = make_case(name)
    data = tmp_path / f"{name.replace('+', '_')}.csv"
    case.frame.to_csv(data, index=False)
    out = tmp_path / "out" / "predictions.csv"

    proc = run_train_cli(tmp_path, ["--data", str(data), "--out", str(out), "--tracking-uri", shared_store])

    problems = cli_problems(proc, case.must_complete)
    assert not problems, "; ".join(problems) + "\n--- stderr ---\n" + proc.stderr[-3000:]
    if proc.returncode == 0:
        problems = output_problems(read_predictions(out), out, purchasers(case.frame))
        assert not problems, "; ".join(problems)
        assert (tmp_path / "models" / data.stem / "value_model.json").is_file()
    else:
        assert not out.exists(), "a failed run left a predictions file"


def test_the_console_script_cases_cover_15_shapes():
    assert len({name.split("-")[0] for name in CLI_CASES}) >= 15
    assert set(CLI_CASES) <= set(CASES)
