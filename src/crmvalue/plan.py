"""A contact plan under a budget (issue 18, seed 003): whom to call, and what that should bring.

Seed 003 says to put the retention effort on customers who are both valuable and likely to be
lost, and to contact them first. ``crmvalue plan`` turns that into a list a CRM team can call.

The objective. A contact costs ``c`` (``--cost-per-contact``) and saves the customer with
probability ``s`` (``--success-rate``); a saved customer keeps their ``value_at_risk`` ``v``
(:mod:`crmvalue.decisions`: churn probability x CLV), of which the share ``m`` (``--margin``,
default 1: the value counts in full) is profit. The expected net gain of contacting customer i is

    g_i = s x m x v_i - c

and the plan chooses the set S of customers that maximises the sum of g_i over S subject to
|S| x c <= B (``--budget``). With one cost per contact the budget only limits how many are
contacted, k = the largest n with n x c <= B, so the optimum is the k customers with the highest
gain among those whose gain is strictly positive (fewer when fewer are positive): swapping a
chosen customer for one with a higher gain, or dropping one whose gain is not positive, never
lowers the total. Customers whose gain is zero are not contacted either: they add nothing and
would take a place in the budget and in the control group. Ties in gain go to the smaller
``retention_priority``, so the plan is the same on every run. tests/test_plan.py checks the
choice against brute force over every subset.

The control group. Of the chosen customers, floor(share x chosen) (``--control-share``, default
0.1) drawn uniformly at random with ``numpy.random.default_rng(seed)`` are held out: they are
not contacted, so that the campaign's real effect can be measured later by comparing the two
groups. The budget pays for the chosen customers; the control customers are not contacted and
cost nothing, so ``spend = contacted x c <= k x c <= B`` and the control's part of the budget is
left unspent, the price of measuring the effect. The seed (drawn fresh and recorded when
``--seed`` is not given) and each customer's group are written with the plan.

This module is plain pandas and numpy; :func:`plan_from_run` reads the source run from MLflow
and logs the plan as a run of its own (:mod:`crmvalue.tracking.plan_writer`).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError
from crmvalue.schema import Column

PLAN_KIND = "plan"  # the crmvalue.kind tag of a plan run
SOURCE_RUN_TAG = "crmvalue.source_run_id"  # the run whose scores the plan (or a predict run) used
PLAN_ARTIFACT_TAG = "crmvalue.plan_artifact"  # the plan file's name among the run's artifacts
SUMMARY_SUFFIX = ".summary.json"  # plan.csv -> plan.summary.json, beside it
METRIC_PREFIX = "plan."
CONTACT, CONTROL = "contact", "control"
DECISION_COLUMNS = ("value_at_risk", "retention_priority", "next_action")
SCORE_COLUMNS = ("churn_probability", "churn_risk", "clv", "quadrant")  # what the decision columns come from

# the plan file, in this order; the database table adds PLAN_METADATA
PLAN_COLUMNS = (
    Column("customer_id", "plan", "text", "TEXT", "the customer's id, as text"),
    Column("retention_priority", "plan", "integer", "INTEGER", "1 = contact first (the source run's rank)"),
    Column("value_at_risk", "plan", "money", "DOUBLE", "churn_probability x clv"),
    Column("expected_gain", "plan", "money", "DOUBLE", "success_rate x value_at_risk x margin - cost_per_contact"),
    Column("next_action", "plan", "text", "TEXT", "the action from the quadrant x churn-risk matrix"),
    Column("group", "plan", "text", "VARCHAR(7)", "'contact', or 'control': chosen but held out, not contacted"),
)
PLAN_METADATA = (
    Column("run_id", "export", "text", "VARCHAR(32)", "the plan's MLflow run"),
    Column("source_run_id", "export", "text", "VARCHAR(32)", "the train or predict run whose scores it used"),
    Column("as_of_date", "export", "date", "DATE", "the observation end of those scores"),
    Column("planned_at", "export", "timestamp", "TIMESTAMPTZ", "when the plan run finished (UTC)"),
)


@dataclass(frozen=True)
class PlanSettings:
    """The plan's arguments, checked on construction (one-line errors naming the flag)."""

    budget: float
    cost_per_contact: float
    success_rate: float
    margin: float = 1.0
    control_share: float = 0.1
    seed: int | None = None  # None: a fresh seed, drawn by :meth:`with_seed` and recorded

    def __post_init__(self) -> None:
        _check(self.budget, "--budget", "a positive amount", lambda x: x > 0)
        _check(self.cost_per_contact, "--cost-per-contact", "a positive amount", lambda x: x > 0)
        _check(self.success_rate, "--success-rate", "in (0, 1]", lambda x: 0 < x <= 1)
        _check(self.margin, "--margin", "in (0, 1]", lambda x: 0 < x <= 1)
        _check(self.control_share, "--control-share", "in [0, 1)", lambda x: 0 <= x < 1)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise CrmvalueError(f"--seed must be a whole number >= 0, got {self.seed!r}")

    def with_seed(self) -> PlanSettings:
        """These settings with a seed: the given one, else a fresh one (recorded with the plan)."""
        if self.seed is not None:
            return self
        return replace(self, seed=secrets.randbelow(2**32))


def _check(value: float, option: str, wanted: str, ok) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CrmvalueError(f"{option} must be a number {wanted}, got {value!r}") from None
    if not math.isfinite(number) or not ok(number):
        raise CrmvalueError(f"{option} must be {wanted}, got {value!r}")


@dataclass(frozen=True)
class Plan:
    """The chosen customers in priority order (:data:`PLAN_COLUMNS`) and the summary figures."""

    frame: pd.DataFrame
    summary: dict[str, Any] = field(repr=False)


# ------------------------------------------------------------------------------------------
# The decision columns of a run's predictions
# ------------------------------------------------------------------------------------------


def decision_frame(
    predictions: pd.DataFrame, actions: dict[str, dict[str, str]] | None = None, source: str = "the predictions"
) -> pd.DataFrame:
    """``customer_id`` and the decision columns (:data:`DECISION_COLUMNS`) of ``predictions``.

    Runs from before the decision columns existed have the churn and value scores they come
    from; the columns are then computed with :func:`crmvalue.decisions.decision_columns` and
    ``actions`` (the run's ``decisions.actions``; None: the default matrix). A run without churn
    scores is refused with one line naming ``source``.
    """
    from crmvalue.decisions import decision_columns

    if all(c in predictions.columns for c in DECISION_COLUMNS):
        frame = predictions[["customer_id", *DECISION_COLUMNS]].copy()
        risk = frame["value_at_risk"].to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isfinite(risk)
        if bad.any() and bad.all():
            raise _no_churn(source)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise CrmvalueError(
                f"{source}: customer {frame['customer_id'].iloc[row]!r} has no value_at_risk; a plan needs every customer's"
            )
        return frame.reset_index(drop=True)
    missing = [c for c in SCORE_COLUMNS if c not in predictions.columns]
    if missing or predictions["churn_probability"].isna().all():
        raise _no_churn(source)
    columns = decision_columns(predictions, actions)
    return pd.concat([predictions[["customer_id"]], columns], axis=1).reset_index(drop=True)


def _no_churn(source: str) -> CrmvalueError:
    return CrmvalueError(
        f"{source} has no churn scores (churn_probability), so no value at risk to plan with: "
        "plan from a run trained with churn on"
    )


# ------------------------------------------------------------------------------------------
# The choice and the control group
# ------------------------------------------------------------------------------------------


def expected_gain(value_at_risk, settings: PlanSettings) -> np.ndarray:
    """``success_rate x value_at_risk x margin - cost_per_contact``, per customer."""
    risk = np.asarray(value_at_risk, dtype=np.float64)
    return settings.success_rate * risk * settings.margin - settings.cost_per_contact


def affordable_contacts(budget: float, cost: float, customers: int) -> int:
    """The most contacts the budget pays for, at most ``customers``: the largest n with
    n x cost <= budget as the computer multiplies (0.3 / 0.1 buys 2 contacts, since
    3 x 0.1 = 0.30000000000000004), so that ``spend <= budget`` holds exactly."""
    ratio = budget / cost
    k = customers if ratio >= customers else math.floor(ratio)
    while k > 0 and k * cost > budget:
        k -= 1
    while k < customers and (k + 1) * cost <= budget:
        k += 1
    return k


def choose_contacts(gain, priority, max_contacts: int) -> np.ndarray:
    """Which customers to choose (a boolean mask): the ``max_contacts`` highest gains among the
    strictly positive ones, ties to the smaller ``priority``. Optimal for the sum of gains under
    ``|chosen| <= max_contacts`` (see the module docstring)."""
    gain = np.asarray(gain, dtype=np.float64)
    order = np.lexsort((np.asarray(priority), -gain))  # the last key first: gain high to low, then priority
    positive = int(np.count_nonzero(gain > 0))  # the positive gains lead the order
    chosen = np.zeros(len(gain), dtype=bool)
    chosen[order[: min(max_contacts, positive)]] = True
    return chosen


def control_size(chosen: int, share: float) -> int:
    """floor(share x chosen), with the product rounded to 9 decimals first (0.29 x 100 is 29)."""
    return math.floor(round(share * chosen, 9))


def hold_out_control(chosen: int, share: float, seed: int) -> np.ndarray:
    """A boolean mask over the chosen customers (in priority order): True for the
    :func:`control_size` of them drawn uniformly at random with ``default_rng(seed)``."""
    control = np.zeros(chosen, dtype=bool)
    control[np.random.default_rng(seed).permutation(chosen)[: control_size(chosen, share)]] = True
    return control


def build_plan(decisions: pd.DataFrame, settings: PlanSettings) -> Plan:
    """The plan for a frame with ``customer_id`` and :data:`DECISION_COLUMNS` (:func:`decision_frame`)."""
    settings = settings.with_seed()
    assert settings.seed is not None  # with_seed draws one
    gain = expected_gain(decisions["value_at_risk"], settings)
    priority = decisions["retention_priority"].to_numpy(dtype=np.int64)
    k = affordable_contacts(settings.budget, settings.cost_per_contact, len(decisions))
    chosen = choose_contacts(gain, priority, k)
    frame = decisions.loc[chosen, ["customer_id", "retention_priority", "value_at_risk", "next_action"]]
    frame = frame.assign(expected_gain=gain[chosen]).sort_values("retention_priority", kind="stable")
    control = hold_out_control(len(frame), settings.control_share, settings.seed)
    frame["group"] = np.where(control, CONTROL, CONTACT)
    frame = frame[[c.name for c in PLAN_COLUMNS]].reset_index(drop=True)
    positive = int(np.count_nonzero(gain > 0))
    return Plan(frame, summarise(frame, settings, len(decisions), positive, k))


def summarise(frame: pd.DataFrame, settings: PlanSettings, scored: int, positive: int, affordable: int) -> dict:
    """The summary figures of a plan frame: the expected values rounded to cents and the ROI (None
    when nothing is spent) to 4 decimals, all computed before rounding."""
    contact = frame["group"].to_numpy() == CONTACT
    contacted = int(np.count_nonzero(contact))
    risk = frame["value_at_risk"].to_numpy(dtype=np.float64)
    spend = contacted * settings.cost_per_contact
    saved = settings.success_rate * float(risk[contact].sum())
    gain = float(frame["expected_gain"].to_numpy(dtype=np.float64)[contact].sum())
    return {
        "customers_scored": scored,
        "customers_with_positive_gain": positive,
        "affordable_contacts": affordable,
        "budget_binding": affordable < positive,
        "customers_chosen": len(frame),
        "customers_contacted": contacted,
        "control_customers": len(frame) - contacted,
        "budget": settings.budget,
        "cost_per_contact": settings.cost_per_contact,
        "success_rate": settings.success_rate,
        "margin": settings.margin,
        "control_share": settings.control_share,
        "seed": settings.seed,
        "spend": spend,  # unrounded: rounded up, it could pass the budget
        "expected_saved_value": round(saved, 2),
        "expected_gain": round(gain, 2),
        "expected_roi": round(gain / spend, 4) if spend > 0 else None,
        "control_value_at_risk": round(float(risk[~contact].sum()), 2),
    }


def summary_metrics(summary: dict) -> dict[str, float]:
    """The summary's figures as MLflow metrics (``plan.<name>``); ROI left out when undefined."""
    keys = (
        "customers_scored",
        "customers_with_positive_gain",
        "affordable_contacts",
        "customers_chosen",
        "customers_contacted",
        "control_customers",
        "spend",
        "expected_saved_value",
        "expected_gain",
        "expected_roi",
        "control_value_at_risk",
    )
    return {METRIC_PREFIX + k: float(summary[k]) for k in keys if summary[k] is not None}


def summary_path(out: Path) -> Path:
    """``plan.csv`` -> ``plan.summary.json``, beside it."""
    out = Path(out)
    return out.with_name(out.stem + SUMMARY_SUFFIX) if out.suffix else out.with_name(out.name + SUMMARY_SUFFIX)


def file_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The plan as written to its file: money rounded to cents, as in the predictions file."""
    money = [c.name for c in PLAN_COLUMNS if c.kind == "money"]
    return frame.assign(**{c: frame[c].round(2) for c in money})


# ------------------------------------------------------------------------------------------
# From a logged run to a logged plan
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanResult:
    run_id: str  # the plan run
    source_run_id: str
    experiment: str
    as_of_date: str | None
    plan: Plan
    output_path: Path
    summary_path: Path


def plan_from_run(
    run: str,
    settings: PlanSettings,
    out: Path,
    experiment: str | None = None,
    tracking_uri: str | None = None,
) -> PlanResult:
    """Plan from the scores of run ``run`` (an id, or ``latest``: the newest finished train or
    predict run, in ``experiment`` if given); log the plan as a run of kind ``plan`` in the
    source run's experiment, tagged with the source run's id; write ``out`` and its summary."""
    from crmvalue.io import check_writable
    from crmvalue.store import check_store
    from crmvalue.tracking import TrackingSession, resolve_tracking_uri
    from crmvalue.tracking.plan_writer import log_plan_run
    from crmvalue.tracking.reader import read_run

    out = Path(out)
    tracking_uri = resolve_tracking_uri(tracking_uri)
    # pre-flight: nothing is read or logged unless the files and the store can be written
    check_writable(out, "the plan file", "set --out")
    check_writable(summary_path(out), "the plan summary", "set --out")
    check_store(tracking_uri)
    record = read_run(run, experiment, tracking_uri, kinds=("train", "predict"))
    if record.kind not in ("train", "predict"):
        raise CrmvalueError(
            f"run {record.run_id} is a {record.kind} run, not scores: plan from a crmvalue train or predict run"
        )
    predictions = record.predictions()
    needs_actions = not all(c in predictions.columns for c in DECISION_COLUMNS)
    actions = _logged_actions(record) if needs_actions else None
    decisions = decision_frame(predictions, actions, f"run {record.run_id}")
    plan = build_plan(decisions, settings)
    as_of = record.as_of_date
    with TrackingSession(tracking_uri):
        run_id = log_plan_run(tracking_uri, record, plan, out)
    return PlanResult(
        run_id, record.run_id, record.experiment, None if as_of is None else str(as_of), plan, out, summary_path(out)
    )


def _logged_actions(record) -> dict[str, dict[str, str]] | None:
    """The ``decisions.actions`` of the run's config (a predict run: of the train run it scored
    with); None, the default matrix, when there is none."""
    from crmvalue.tracking.reader import read_run

    config = record.config()
    if config is None and record.kind == "predict" and SOURCE_RUN_TAG in record.tags:
        config = read_run(record.tags[SOURCE_RUN_TAG], None, record.tracking_uri).config()
    actions = ((config or {}).get("decisions") or {}).get("actions")
    return actions or None
