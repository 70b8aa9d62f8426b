"""``crmvalue predict``: score new transactions with a registered model, without refitting.

The model URI (``models:/<name>-value@champion``, which ``crmvalue predict --name <name>``
scores with, ``models:/<name>-value/3`` or ``runs:/<id>/value_model``) resolves to the
``crmvalue train`` run that logged it. From that run come everything the scores depend on, so
new data are scored exactly as the run scored its own:

- the run's config (``config.yaml``): column names and CSV dialect (the ``column_options`` of
  :func:`predict` map a file with other names onto them), time unit, horizon, CLV and churn settings;
- the value model itself, loaded as the registered MLflow pyfunc;
- the quadrant thresholds the run used (params ``quadrants.*_threshold_used``);
- the run's next-action matrix (``decisions.actions`` of its config), so ``next_action`` is the
  run's even after the default matrix changes;
- with ``intervals.enabled`` in its config, the interval columns at its ``intervals`` settings, from the
  parameter covariances saved with the value model (a model saved without them: no intervals, a warning);
- the run's churn model (LightGBM booster, calibration, the BG/NBD parameters of its
  features and the attribute categories, ``churn/churn_scoring.json``), when it has one;
- the run's boosted value model (``value_gbm/``) when it was live (tag ``value_model.live``: gbm), for
  ``expected_revenue`` and ``potential_value``; a run without the tag scores with BTYD, as before;
- with ``--customers``: the covariates of a model that has them, and the table's customers without a purchase
  up to the observation end, scored by the prospective expectation (``history`` 'none', :mod:`crmvalue.scoring`).

Features are built by the functions ``crmvalue train`` uses. The CRM analyses (RFM quintiles,
CPM groups, deciles, CRM value) rank customers against each other, so they are recomputed on
the scored population, with the run's settings. The scores are logged as an MLflow run of kind
``predict`` in the model's experiment (``crmvalue export --run`` takes it) and written to
``--out`` in the export schema of ``crmvalue train``, ``run_id`` naming the predict run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crmvalue.churn import ChurnScorer
from crmvalue.config import ExperimentConfig
from crmvalue.customer_days import CustomerDays, customer_days
from crmvalue.data import BUNDLED, Transactions, load_transactions
from crmvalue.discrete import in_unit
from crmvalue.engine import choose_engine, load_customer_days
from crmvalue.errors import CrmvalueError, deferred_warnings
from crmvalue.models.predictive import saved_intervals
from crmvalue.progress import Progress
from crmvalue.registry import ModelRef, resolve
from crmvalue.schema import CHURN_SCORING_ARTIFACT, output_columns
from crmvalue.scoring import AnalysesInputs, Scorers, customer_features, score, with_new_customers
from crmvalue.segments import quadrant_summary
from crmvalue.tracking.predict_writer import log_predict_run
from crmvalue.tracking.session import TrackingSession
from crmvalue.value_choice import live_revenue

if TYPE_CHECKING:
    from crmvalue.valuegbm import GbmValueModel

log = logging.getLogger("crmvalue")


@dataclass
class PredictResult:
    run_id: str  # the predict run
    model: ModelRef
    output_path: Path
    predictions: pd.DataFrame
    observation_end: pd.Timestamp


@dataclass
class _TrainedRun:
    """What a ``crmvalue train`` run holds for scoring."""

    run_id: str
    experiment_id: str
    config: ExperimentConfig
    thresholds: tuple[float, float]
    observation_end: pd.Timestamp
    data_first_date: pd.Timestamp | None
    churn_state: ChurnScorer | None
    churn_model_uri: str | None
    value_gbm: GbmValueModel | None = None  # the run's boosted value model, when it was live (value_model.live)


def predict(
    model_uri: str,
    data: str | Path | pd.DataFrame,
    observation_end,
    out: Path,
    customers: str | Path | None = None,
    interactions: str | Path | None = None,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
    quantity_col: str | None = None,
    **column_options,
) -> PredictResult:
    """Score ``data`` as of ``observation_end`` with the model at ``model_uri``; write ``out``.

    ``column_options`` (``customer_col``, ``date_col``, ``amount_col``, ``price_col``,
    ``date_format``, ``dayfirst``, ``sep``, ``decimal``, ``thousands``, ``encoding``,
    ``drop_missing_ids``, ``allow_future_dates``) override how the training run read its data:
    the new file's names for the columns the model was trained on. None keeps the run's value.
    A file without the model's columns is refused with one line that names them and these flags.
    """

    from crmvalue.io import check_writable
    from crmvalue.store import check_store
    from crmvalue.tracking import quiet_mlflow, resolve_tracking_uri

    progress = progress or Progress(enabled=False)
    quiet_mlflow()
    tracking_uri = resolve_tracking_uri(tracking_uri)
    # pre-flight: the scores file and the store, which gets a predict run, can be written
    check_writable(out, "the scores file", "set --out")
    check_store(tracking_uri)
    obs_end = _day(observation_end, "--observation-end")
    with TrackingSession(tracking_uri):  # MLflow's URI for this call only; the caller's is put back
        return _scored(
            model_uri, data, obs_end, out, customers, interactions, tracking_uri, progress, quantity_col, column_options
        )


def _scored(
    model_uri,
    data,
    obs_end: pd.Timestamp,
    out: Path,
    customers,
    interactions,
    tracking_uri: str,
    progress: Progress,
    quantity_col: str | None,
    column_options: dict,
) -> PredictResult:
    import mlflow

    from crmvalue.store import open_store

    # no progress line yet: a bad model URI or bad data should be the only line the user sees
    with open_store(tracking_uri) as client:
        ref = resolve(client, model_uri)
        trained = _trained_run(ref, tracking_uri)
        # the registered pyfunc's own ValueModel: new data are scored by the very object train scored with
        value_model = mlflow.pyfunc.load_model(ref.uri).unwrap_python_model().model_
        booster = None
        if trained.churn_state is not None:
            import mlflow.lightgbm

            booster = mlflow.lightgbm.load_model(trained.churn_model_uri)
    cfg = trained.config
    if obs_end < trained.observation_end:
        raise CrmvalueError(
            f"--observation-end {obs_end.date()} is before the model's training data end {trained.observation_end.date()}: "
            "the model has seen later purchases; score as of that date or later"
        )

    source = "a DataFrame" if isinstance(data, pd.DataFrame) else data
    with progress.stage("load", f"loaded {ref.uri} and checked the transactions from {source}", announce=False):
        d = cfg.data
        quantity_col = quantity_col or d.quantity_col
        needs_quantity = bool(trained.churn_state and "quantity_total" in trained.churn_state.feature_columns)
        if needs_quantity and quantity_col is None and not (isinstance(data, str) and data in BUNDLED):
            raise CrmvalueError(
                f"the churn model of run {trained.run_id} uses purchase quantities: name the column with --quantity-col"
            )
        options: dict[str, Any] = dict(
            customer_col=d.customer_col,
            date_col=d.date_col,
            amount_col=d.amount_col,
            quantity_col=quantity_col,
            date_format=d.date_format,
            dayfirst=d.dayfirst,
            price_col=d.price_col,
            sep=d.sep,
            decimal=d.decimal,
            thousands=d.thousands,
            encoding=d.encoding,
            drop_missing_ids=d.drop_missing_ids,
            allow_future_dates=d.allow_future_dates,
        )
        options = _mapped_options(options, column_options)
        _check_columns(data, options, trained, ref)
        with deferred_warnings():  # a file that drifted shows only its error line, not the load's warnings first
            if choose_engine(data, d.engine) == "pandas":  # the rows are at hand: name the first bad one
                rows = load_transactions(data, **options)
                _check_drift(rows, trained, options["date_col"], obs_end)
                tx = customer_days(rows.frame).with_source(rows.source, rows.sha256)
            else:  # out of core, as in training; the netted days name a customer instead of a row
                tx = load_customer_days(data, engine="duckdb", **options)
                _check_drift_days(tx, trained, obs_end)
        frame = tx
        attributes = None
        if customers is not None:
            from crmvalue.data import load_customer_attributes

            attributes = load_customer_attributes(customers, d.customers_id_col)
        table = attributes  # the whole customer table: covariates, and the customers without a purchase
        needs_attributes = bool(
            trained.churn_state and any(c.startswith("attr_") for c in trained.churn_state.feature_columns)
        )
        if needs_attributes and attributes is None:
            raise CrmvalueError(
                f"the churn model of run {trained.run_id} uses customer attributes: pass the customer table with --customers"
            )
        if needs_attributes:
            assert trained.churn_state is not None and attributes is not None  # needs_attributes, and refused above
            wanted = [c.removeprefix("attr_") for c in trained.churn_state.feature_columns if c.startswith("attr_")]
            missing = [c for c in wanted if c not in attributes.columns]
            if missing:
                raise CrmvalueError(
                    f"{customers}: column {missing[0]!r} is missing; the churn model was trained with {', '.join(wanted)}"
                )
            attributes = attributes[wanted]
        interaction_rows = None
        if interactions is not None and cfg.analyses.enabled:
            from crmvalue.analyses import load_interactions

            a = cfg.analyses
            interaction_rows = load_interactions(
                interactions, a.interactions_id_col, a.interactions_date_col, a.interactions_channel_col
            )
        elif cfg.analyses.enabled and cfg.analyses.interactions is not None:
            log.warning(
                "run %s used an interactions table for the CRM value score; pass --interactions to use one now",
                trained.run_id,
            )

    with progress.stage("features", "building RFM features"):
        features = customer_features(frame, obs_end, cfg.time_unit, cfg.quadrants.current_window_days)
        if features.report.rows_after_observation_end:
            log.warning(
                "ignored %d rows dated after the observation end %s",
                features.report.rows_after_observation_end,
                obs_end.date(),
            )
        if features.summary.empty:
            raise CrmvalueError(f"{tx.source}: no purchase on or before the observation end {obs_end.date()}")

    churn = None
    if booster is not None and cfg.churn.enabled:
        assert trained.churn_state is not None  # the booster is loaded only for a run with churn state
        churn = LoadedChurn(trained.churn_state, booster, attributes)
    intervals = None
    if cfg.intervals.enabled:  # as the run computed them, from the covariances saved with its value model
        i = cfg.intervals
        intervals = saved_intervals(value_model, i.draws, i.level, i.seed)
        if intervals is None:  # a model saved before they were
            log.warning("run %s saved no parameter covariances with its value model: no intervals", trained.run_id)
    scorers = Scorers(
        value=lambda s: value_model.predict(in_unit(s, frame, obs_end, value_model.time_unit), table, str(customers)),
        thresholds=trained.thresholds,
        text=f"scoring {len(features.summary):,} customers with {ref.uri}" + (" and intervals" if intervals else ""),
        intervals=intervals,
        churn=churn,
        analyses=AnalysesInputs(cfg, attributes, interaction_rows) if cfg.analyses.enabled else None,
        actions=cfg.decisions.actions,  # the run's matrix, as logged in its config.yaml
        revenue=live_revenue(trained.value_gbm, value_model),  # a live boosted model: its revenue, potential value
    )
    scored = score(frame, obs_end, features, scorers, progress)  # as train: the same function
    predictions, quadrants = scored.predictions, scored.quadrants
    if table is not None:  # the table's customers without a purchase: the prospective expectation
        predictions, new = with_new_customers(predictions, table, value_model, str(customers), trained.thresholds)
        quadrants = quadrant_summary(predictions) if new else quadrants

    with progress.stage("track", "logging the predict run and writing the scores"):
        run_id = log_predict_run(tracking_uri, ref, trained, tx, obs_end, predictions, quadrants, out, progress)
    predictions["run_id"] = run_id
    return PredictResult(run_id, ref, out, predictions[output_columns(predictions)], obs_end)


class LoadedChurn:
    """The churn stage of ``predict``: the run's booster and :class:`~crmvalue.churn.ChurnScorer`, no refit."""

    text = "scoring the churn model"

    def __init__(self, scorer: ChurnScorer, booster, attributes: pd.DataFrame | None):
        self.scorer, self.booster, self.attributes = scorer, booster, attributes

    def scores(self, days: CustomerDays, obs_end: pd.Timestamp) -> pd.DataFrame:
        return self.scorer.score(self.booster, days, obs_end, self.attributes)


def _day(value, option: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(value).normalize()
    except (ValueError, TypeError):
        raise CrmvalueError(f"{option}: {value!r} is not a date (use YYYY-MM-DD)") from None


def _trained_run(ref: ModelRef, tracking_uri: str) -> _TrainedRun:
    """What predict needs of the ``crmvalue train`` run behind ``ref``, read through the run reader."""
    from crmvalue.tracking.reader import read_run

    try:
        record = read_run(ref.run_id, tracking_uri=tracking_uri)
    except CrmvalueError:  # its hint is report's (--run); here the run comes from --model
        raise CrmvalueError(
            f"--model {ref.uri}: no run {ref.run_id!r} in the MLflow store; check the run id "
            "(or the store: --tracking-uri)"
        ) from None
    if record.kind != "train":
        raise CrmvalueError(f"--model {ref.uri}: run {ref.run_id} is not a `crmvalue train` run")
    raw = record.config()
    if raw is None:
        raise CrmvalueError(
            f"--model {ref.uri}: run {ref.run_id} has no config.yaml artifact; was it logged by crmvalue train?"
        )
    thresholds = record.quadrant_thresholds
    if thresholds is None:
        raise CrmvalueError(
            f"--model {ref.uri}: run {ref.run_id} has no quadrant thresholds; retrain with this version"
        )
    observation_end = pd.Timestamp(raw["observation_end"])
    churn_state = None
    # churn.enabled: auto may have skipped the churn stage (tag crmvalue.churn "skipped: ..."): then no churn model
    if raw.get("churn", {}).get("enabled") and not record.churn_skipped:
        state = record.churn_scoring()
        if state is None:
            raise CrmvalueError(
                f"--model {ref.uri}: run {ref.run_id} has a churn model but no {CHURN_SCORING_ARTIFACT}; "
                "retrain it with this version of crmvalue"
            )
        churn_state = ChurnScorer.from_dict(state)
    # the config as the run resolved it; its input and output settings are not this scoring's
    for key in ("calibration_end", "observation_end", "out", "tracking_uri"):
        raw.pop(key, None)
    return _TrainedRun(
        ref.run_id,
        record.experiment_id,
        ExperimentConfig.model_validate(raw),
        thresholds,
        observation_end,
        record.data_first_date,
        churn_state,
        record.churn_model_uri if churn_state is not None else None,
        record.value_gbm(),
    )


_OPTION_FLAGS = {
    "customer_col": "--customer-col",
    "date_col": "--date-col",
    "amount_col": "--amount-col",
    "price_col": "--price-col",
    "quantity_col": "--quantity-col",
}


def _mapped_options(options: dict, overrides: dict) -> dict:
    """The training run's read options with the caller's overrides (None keeps the run's)."""
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise TypeError(f"predict() got unexpected keyword arguments {', '.join(unknown)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("amount_col") and "price_col" not in given:
        given["price_col"] = None  # a new file's amount column: read amounts, not quantity x price
    return {**options, **given}


def _check_columns(data, options: dict, trained: _TrainedRun, ref: ModelRef) -> None:
    """Refuse, with one line, a file without the columns the model was trained on (mapped by the flags).

    Only the header is read. A header in another CSV dialect is left to the loader, which names --sep.
    """
    import csv

    from crmvalue.data import (
        CSV_SUFFIXES,
        PARQUET_SUFFIXES,
        ReadOptions,
        csv_encoding,
        default_separator,
        header_line,
        other_delimiter,
    )

    read = ReadOptions(**options)  # a bad --sep, --decimal or --encoding is named first
    if isinstance(data, pd.DataFrame):
        have, source = [str(c) for c in data.columns], "DataFrame"
    elif isinstance(data, str) and data in BUNDLED:
        return
    else:
        path = Path(data)
        suffix = path.suffix.lower()
        if not path.is_file():
            return  # the loader says why
        try:
            if suffix in PARQUET_SUFFIXES:
                import pyarrow.parquet as pq

                have = list(pq.read_schema(path).names)
            elif suffix in CSV_SUFFIXES:
                sep = read.sep or default_separator(path)
                header = header_line(path, csv_encoding(path, read.encoding))
                if header is None or other_delimiter(header, sep) is not None:
                    return
                have = next(csv.reader([header], delimiter=sep, skipinitialspace=True))
            else:
                return
        except Exception:  # noqa: BLE001 - unreadable: the loader says why
            return
        source = str(path)
    missing = [c for c in read.columns if c not in have]
    if not missing:
        return
    d = trained.config.data
    trained_cols: dict[str, str | None] = {"customer_col": d.customer_col, "date_col": d.date_col}
    if d.price_col:
        trained_cols.update(price_col=d.price_col, quantity_col=d.quantity_col)
    else:
        trained_cols["amount_col"] = d.amount_col
        if read.quantity_col:
            trained_cols["quantity_col"] = d.quantity_col or read.quantity_col
    model_cols = ", ".join(f"{name!r} ({_OPTION_FLAGS[key]})" for key, name in trained_cols.items())
    shown = ", ".join(repr(c) for c in have[:12]) + (", ..." if len(have) > 12 else "")
    raise CrmvalueError(
        f"{source}: missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)}: the model {ref.uri} (run {trained.run_id}) "
        f"was trained on columns {model_cols}; this file has {shown}: map its columns onto the model's with "
        f"{', '.join(_OPTION_FLAGS[k] for k in trained_cols)}"
    )


def _check_drift(tx: Transactions, trained: _TrainedRun, date_col: str, obs_end: pd.Timestamp) -> None:
    """New data the model cannot score honestly: timestamps before its training data, nothing to score."""
    dates = tx.frame["date"]
    if trained.data_first_date is not None:
        early = (dates < trained.data_first_date).to_numpy()
        if early.any():
            row = int(np.flatnonzero(early)[0])
            raise CrmvalueError(
                f"{tx.source}: column '{date_col}', row {row + 1}: {dates.iloc[row].date()} is before the model's "
                f"training data, which starts on {trained.data_first_date.date()} (run {trained.run_id}); "
                "score with a model trained on that period"
            )
    if not (dates <= obs_end + pd.Timedelta(days=1) - pd.Timedelta(1)).any():
        raise CrmvalueError(f"{tx.source}: no transaction on or before --observation-end {obs_end.date()}")


def _check_drift_days(days, trained: _TrainedRun, obs_end: pd.Timestamp) -> None:
    if trained.data_first_date is not None and days.first_date < trained.data_first_date:
        at = int(np.argmin(days.day))
        raise CrmvalueError(
            f"{days.source}: customer {days.ids[days.customer[at]]!r} has a transaction on {days.first_date.date()}, "
            f"before the model's training data, which starts on {trained.data_first_date.date()} (run {trained.run_id}); "
            "score with a model trained on that period"
        )
    if days.first_date > obs_end:
        raise CrmvalueError(f"{days.source}: no transaction on or before --observation-end {obs_end.date()}")
