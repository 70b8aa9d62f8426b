"""``crmvalue train --setting contractual`` and the scoring of new subscriptions with a saved run's sBG.

:func:`train`, in the order of the non-contractual pipeline, so that bad input fails before anything is written:

1. read and validate the subscriptions (:mod:`.data`);
2. out of time: fit at the calibration end, predict the survivors at the observation end, beside the geometric
   baseline (:mod:`.evaluation`);
3. refit on everything known at the observation end; score the subscribers active then (:mod:`.scoring`);
   the retention and survival curves by start cohort (:mod:`.curves`);
   unless ``churn.enabled`` is false, the LightGBM churn model on rolling cut-offs beside the sBG, its quality
   gate and ``churn_probability``, ``churn_risk`` per subscriber (:mod:`.churn`);
4. log one MLflow run (kind ``contractual``), then commit the predictions file and ``models/<name>/sbg_model.json``.

:func:`predict` scores a new subscriptions table with the sBG a train run saved (``sbg_model.json``), without
refitting (and with the churn scorer it saved: the sBG's ``1 - p_active_next``, or LightGBM from its saved text and
the customer table the train run read), and logs a run of kind ``contractual_predict`` beside it.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from crmvalue import schema
from crmvalue.config import ExperimentConfig
from crmvalue.contractual.churn import CHURN_COLUMNS, ContractualChurn, encode_attributes, score_churn
from crmvalue.contractual.curves import cohort_curves, survival_chart
from crmvalue.contractual.data import SubscriptionColumns, Subscriptions, load_subscriptions
from crmvalue.contractual.evaluation import GEOMETRIC, Holdout, fit_at, holdout
from crmvalue.contractual.periods import active_at
from crmvalue.contractual.scoring import MODEL_FILE, MODEL_NAME, ContractualModel
from crmvalue.data.files import BUNDLED
from crmvalue.errors import CrmvalueError
from crmvalue.models.sbg import ShiftedBetaGeometricModel
from crmvalue.progress import Progress

log = logging.getLogger("crmvalue")


@dataclass
class ContractualResult:
    """What :func:`train` computed and wrote."""

    run_id: str
    output_path: Path
    predictions: pd.DataFrame
    curves: pd.DataFrame
    holdout: Holdout
    fit: ShiftedBetaGeometricModel
    model: ContractualModel
    metrics: dict[str, float]
    calibration_end: pd.Timestamp
    observation_end: pd.Timestamp
    subscribers: int
    timings: dict[str, float] = field(default_factory=dict)
    churn: ContractualChurn | None = None  # None with churn.enabled: false

    def summary_lines(self) -> list[str]:
        """What ``crmvalue train`` prints when it is done."""
        p, se = self.fit.params_, self.fit.standard_errors_
        lines = [
            f"sBG per {self.model.period}: alpha {p.alpha:.4g} (se {se['alpha']:.2g}), beta {p.beta:.4g} "
            f"(se {se['beta']:.2g}), log-likelihood {self.fit.log_likelihood_:,.1f}, {self.subscribers:,} subscribers",
        ]
        if self.fit.warning_:
            lines.append(f"warning: {self.fit.warning_}")
        h = self.holdout
        if h.skipped is not None:
            lines.append(f"holdout: skipped ({h.skipped})")
        else:
            m = h.metrics
            lines.append(
                f"holdout {self.calibration_end.date()} -> {self.observation_end.date()}: "
                f"{m['holdout.subscribers']:,.0f} active at the calibration end, {m['holdout.actual_survivors']:,.0f} "
                f"still subscribed; sBG predicted {m['holdout.predicted_survivors']:,.1f}"
                f"{relative(m, 'holdout')}, constant retention "
                f"{m[f'baseline.{GEOMETRIC}.holdout.predicted_survivors']:,.1f}"
                f"{relative(m, f'baseline.{GEOMETRIC}.holdout')}; Brier {m['holdout.brier']:.4f} vs "
                f"{m[f'baseline.{GEOMETRIC}.holdout.brier']:.4f}"
            )
        s = self.predictions
        line = (
            f"scored {len(s):,} active subscribers as of {self.observation_end.date()}: mean p_active_next "
            f"{s['p_active_next'].mean():.3f}, mean DERL {s['derl'].mean():.2f} {self.model.period}s"
        )
        if "discounted_residual_value" in s.columns:
            line += f", discounted residual value {s['discounted_residual_value'].sum():,.2f} in all"
        lines.append(line)
        if self.churn is not None:
            lines.append(self._churn_line(self.churn))
        lines.append(f"wrote {self.output_path} (MLflow run {self.run_id})")
        return lines

    @staticmethod
    def _churn_line(churn: ContractualChurn) -> str:
        if churn.skipped is not None:
            return f"churn: skipped ({churn.skipped})"
        m = churn.metrics
        assert churn.test_cutoff is not None
        return (
            f"churn at the test cut-off {churn.test_cutoff.date()}: LightGBM ROC AUC {m['churn.roc_auc']:.3f}, "
            f"Brier {m['churn.brier']:.4f}; sBG ROC AUC {m['churn.baseline.sbg.roc_auc']:.3f}, "
            f"Brier {m['churn.baseline.sbg.brier']:.4f}; churn_probability by {churn.scorer}"
        )


@dataclass
class ContractualPredictResult:
    run_id: str  # the predict run
    source_run_id: str  # the train run whose sBG scored
    output_path: Path
    predictions: pd.DataFrame
    observation_end: pd.Timestamp


def relative(metrics: dict[str, float], prefix: str) -> str:
    """`` (+4.2%)``: the relative error of the survivors predicted under ``prefix``, or nothing when nobody survived."""
    error = metrics.get(f"{prefix}.total_error")
    return "" if error is None else f" ({error:+.1%})"


def _ends(cfg: ExperimentConfig, subs: Subscriptions) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The observation end (config, else the latest date in the table) and the calibration end (config, else
    the midpoint of the first start and the observation end)."""
    obs_end = pd.Timestamp(cfg.observation_end) if cfg.observation_end else subs.last_date
    first = subs.first_date
    if first > obs_end:
        raise CrmvalueError(f"{subs.source}: every subscription starts after the observation end {obs_end.date()}")
    cal_end = pd.Timestamp(cfg.calibration_end) if cfg.calibration_end else (first + (obs_end - first) / 2).floor("D")
    if cal_end >= obs_end:
        raise CrmvalueError(
            f"calibration_end {cal_end.date()} must be before the observation end {obs_end.date()}"
            + ("" if cfg.observation_end else " (the latest date in the table)")
        )
    return cal_end, obs_end


def train(
    cfg: ExperimentConfig, progress: Progress | None = None, data: pd.DataFrame | None = None
) -> ContractualResult:
    """Fit, evaluate, score and track the sBG on ``cfg.data.source`` (or ``data``); see the module."""
    from crmvalue.io import check_writable
    from crmvalue.store import check_store
    from crmvalue.tracking import resolve_tracking_uri

    progress = progress or Progress(enabled=False)
    model_dir = Path(cfg.models_dir) / cfg.name
    check_writable(cfg.output_path, "the predictions file", "set --out")
    check_writable(model_dir, "the models folder", "set models_dir in the config", directory=True)
    check_store(resolve_tracking_uri(cfg.tracking_uri))
    columns = SubscriptionColumns.from_config(cfg)
    if data is None and (cfg.data.source in BUNDLED or cfg.data.source == "simulated"):
        raise CrmvalueError(
            f"setting contractual reads a subscriptions table, not {cfg.data.source!r}: give --data subscriptions.csv "
            "(--start-col, --end-col, --fee-col name its columns)"
        )
    with progress.stage("load", "read the subscriptions", announce=False):
        subs = load_subscriptions(cfg.data.source if data is None else data, columns)
        attributes = _customer_attributes(cfg)
    cal_end, obs_end = _ends(cfg, subs)
    frame, period = subs.frame, cfg.period
    with progress.stage("evaluate", f"fitting the sBG at the calibration end {cal_end.date()}, scoring the holdout"):
        checked = holdout(frame, cal_end, obs_end, period)
    with progress.stage("fit", "fitting the sBG on everything up to the observation end and scoring"):
        fit = fit_at(frame, obs_end, period)
        model = ContractualModel.from_fit(fit, period, cfg.clv.discount_rate)
        predictions = model.score(frame, obs_end)
        calibration = None if checked.model is None else checked.model.params_
        curves = cohort_curves(frame, obs_end, period, fit.params_, calibration)
    if fit.warning_:
        log.warning(fit.warning_)
    churn = None
    if cfg.churn.enabled is not False:
        from crmvalue.contractual.churn import train_contractual_churn

        with progress.stage("churn", "training the LightGBM churn model on rolling cut-offs beside the sBG"):
            churn = train_contractual_churn(cfg, frame, obs_end, predictions, attributes)
        if churn is not None and churn.scores is not None:
            predictions = predictions.assign(**{k: churn.scores[k].to_numpy() for k in CHURN_COLUMNS})
    started = int((frame["start"] <= obs_end).sum())
    metrics = _train_metrics(fit, checked, started, len(predictions))
    if churn is not None:
        metrics.update(churn.metrics)
    with progress.stage("track", "logging the MLflow run and writing the predictions"):
        run_id = _log_train(
            cfg, subs, fit, model, checked, metrics, predictions, curves, cal_end, obs_end, progress, churn
        )
    return ContractualResult(
        run_id=run_id,
        output_path=cfg.output_path,
        predictions=predictions.assign(run_id=run_id),
        curves=curves,
        holdout=checked,
        fit=fit,
        model=model,
        metrics=metrics,
        calibration_end=cal_end,
        observation_end=obs_end,
        subscribers=started,
        timings=dict(progress.timings),
        churn=churn,
    )


def _train_metrics(fit: ShiftedBetaGeometricModel, checked: Holdout, started: int, active: int) -> dict[str, float]:
    metrics = {schema.standard_error_metric(MODEL_NAME, k): float(v) for k, v in fit.standard_errors_.items()}
    metrics[f"final.{MODEL_NAME}.log_likelihood"] = fit.log_likelihood_
    metrics["data.subscribers"] = float(started)
    metrics["data.active_subscribers"] = float(active)
    metrics.update(checked.metrics)
    if checked.geometric_churn is not None:
        metrics[f"baseline.{GEOMETRIC}.churn_per_period"] = checked.geometric_churn
    return metrics


def _customer_attributes(cfg: ExperimentConfig) -> pd.DataFrame | None:
    """The customer table (``data.customers``) for the churn model's features, or None."""
    if cfg.churn.enabled is False or cfg.data.customers is None:
        return None
    from crmvalue.data import load_customer_attributes

    return load_customer_attributes(cfg.data.customers, cfg.data.customers_id_col)


def saved_state(
    model: ContractualModel, columns: SubscriptionColumns, cal_end, obs_end, churn: dict | None = None
) -> dict:
    """``sbg_model.json``: the model, the columns it was trained on and its dates; ``churn``: the live churn
    scorer (:func:`~crmvalue.contractual.churn.score_churn`), when the churn stage ran."""
    state = {
        **model.to_dict(),
        "calibration_end": str(cal_end.date()),
        "observation_end": str(obs_end.date()),
        "columns": columns.as_dict(),
    }
    if churn is not None:
        state["churn"] = churn
    return state


def _log_train(cfg, subs, fit, model, checked, metrics, predictions, curves, cal_end, obs_end, progress, churn) -> str:
    from crmvalue.tracking import flatten
    from crmvalue.tracking.contractual import (
        CURVES_ARTIFACT,
        HOLDOUT_COHORTS_ARTIFACT,
        PLOT_SURVIVAL,
        config_text,
        log_contractual_run,
        model_text,
        sbg_example,
        sbg_model_name,
    )

    resolved = cfg.model_dump(mode="json")
    resolved["calibration_end"] = str(cal_end.date())
    resolved["observation_end"] = str(obs_end.date())
    resolved.pop("tracking_uri", None)  # may hold credentials; the run knows its own store
    params = flatten(resolved, "config.")
    params.update({schema.model_param(MODEL_NAME, k): repr(v) for k, v in fit.params_.as_dict().items()})
    params[schema.model_param(MODEL_NAME, "penalizer_used")] = repr(fit.penalizer_used_)
    params[schema.model_param(MODEL_NAME, "period_discount_rate")] = repr(model.discount)
    if checked.model is not None:
        params.update({f"evaluation.{MODEL_NAME}.{k}": repr(v) for k, v in checked.model.params_.as_dict().items()})
    tags = {
        "crmvalue.data_sha256": subs.sha256,
        "crmvalue.data_source": subs.source,
        schema.AS_OF_DATE_TAG: str(obs_end.date()),
        schema.DATA_FIRST_DATE_TAG: str(subs.first_date.date()),
        "crmvalue.evaluation": "ran" if checked.skipped is None else f"skipped: {checked.skipped}",
    }
    if fit.boundary_:
        tags[f"crmvalue.boundary.{MODEL_NAME}"] = fit.boundary_
    churn_state = None
    if churn is not None:
        tags["crmvalue.churn"] = churn.tag
        if churn.state is not None:
            churn_state = dict(churn.state)
            if cfg.data.customers is not None:  # predict reads the same table for the attr_ features
                churn_state["customers"] = {"path": str(cfg.data.customers), "id_col": cfg.data.customers_id_col}
    tables = {CURVES_ARTIFACT: curves}
    if checked.cohorts is not None:
        tables[HOLDOUT_COHORTS_ARTIFACT] = checked.cohorts
    state = model_text(saved_state(model, SubscriptionColumns.from_config(cfg), cal_end, obs_end, churn_state))
    calibration = None if checked.model is None else checked.model.params_
    figure = survival_chart(curves, fit.params_, calibration, cfg.period)
    metrics = {**metrics, **progress.metrics()}
    return log_contractual_run(
        cfg.tracking_uri,
        cfg.name,
        tags,
        params,
        metrics,
        predictions,
        cfg.output_path,
        tables,
        {schema.CONFIG_ARTIFACT: config_text(resolved), MODEL_FILE: state},
        {PLOT_SURVIVAL: figure},
        {Path(cfg.models_dir) / cfg.name / MODEL_FILE: state},
        (state, sbg_example(subs.frame)),
        sbg_model_name(cfg.name) if cfg.registry.enabled else None,
    )


def predict(
    run: str,
    data: str | Path | pd.DataFrame,
    out: Path,
    observation_end=None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
    **column_options,
) -> ContractualPredictResult:
    """Score ``data`` (a subscriptions table) as of ``observation_end`` (default: its latest date) with the sBG of
    train run ``run`` (an id; ``latest``, the newest contractual train run, in ``experiment`` if given; or a
    registered version, ``models:/<name>-sbg/<version>`` or ``models:/<name>-sbg@<alias>``); write ``out`` and log
    a ``contractual_predict`` run beside the train run.

    ``column_options`` (``customer_col``, ``start_col``, ``end_col``, ``fee_col``, ``date_format``, ``dayfirst``,
    ``sep``, ``decimal``, ``thousands``, ``encoding``) override how the train run read its table; None keeps it.
    """
    import json

    from crmvalue.io import check_writable
    from crmvalue.store import check_store
    from crmvalue.tracking import resolve_tracking_uri
    from crmvalue.tracking.contractual import TRAIN_KIND, log_contractual_predict_run
    from crmvalue.tracking.reader import read_run

    progress = progress or Progress(enabled=False)
    tracking_uri = resolve_tracking_uri(tracking_uri)
    out = Path(out)
    check_writable(out, "the scores file", "set --out")
    check_store(tracking_uri)
    known = {f.name for f in fields(SubscriptionColumns)}
    unknown = sorted(set(column_options) - known)
    if unknown:
        raise CrmvalueError(f"predict: unknown option {', '.join(unknown)}; the options are {', '.join(sorted(known))}")
    if run.startswith("models:/"):
        from crmvalue import registry
        from crmvalue.store import open_store

        with open_store(tracking_uri) as client:
            try:
                run = registry.resolve(client, run).run_id
            except CrmvalueError as exc:  # its messages name the value model's option
                raise CrmvalueError(str(exc).replace("--model ", "--run ", 1)) from None
    record = read_run(run, experiment, tracking_uri, kinds=(TRAIN_KIND,))
    if record.kind != TRAIN_KIND:
        raise CrmvalueError(
            f"run {record.run_id} is a {record.kind} run, not a contractual train run (no sBG to score)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        local = record.download(MODEL_FILE, Path(tmp))
        if local is None:
            raise CrmvalueError(f"run {record.run_id} has no {MODEL_FILE} artifact to score with")
        state = json.loads(local.read_text())
    model = ContractualModel.from_dict(state)
    overrides = {k: v for k, v in column_options.items() if v is not None}
    columns = SubscriptionColumns(**{**state.get("columns", {}), **overrides})
    with progress.stage("load", "read the subscriptions", announce=False):
        subs = load_subscriptions(data, columns)
    obs_end = _day(observation_end) if observation_end is not None else subs.last_date
    with progress.stage("score", "scoring the active subscribers"):
        predictions = model.score(subs.frame, obs_end)
        if "churn" in state:
            predictions = _with_churn(state["churn"], subs.frame, obs_end, predictions)
    tags = {
        "crmvalue.data_sha256": subs.sha256,
        "crmvalue.data_source": subs.source,
        schema.AS_OF_DATE_TAG: str(obs_end.date()),
    }
    params = {"source_run_id": record.run_id, "observation_end": str(obs_end.date())}
    metrics = {
        "data.subscribers": float((subs.frame["start"] <= obs_end).sum()),
        "data.active_subscribers": float(active_at(subs.frame, obs_end).sum()),
    }
    with progress.stage("track", "logging the predict run and writing the scores"):
        run_id = log_contractual_predict_run(
            tracking_uri, record.experiment_id, record.run_id, tags, params, metrics, predictions, out
        )
    return ContractualPredictResult(run_id, record.run_id, out, predictions.assign(run_id=run_id), obs_end)


def _with_churn(churn: dict, frame: pd.DataFrame, obs_end, predictions: pd.DataFrame) -> pd.DataFrame:
    """The saved churn scorer's columns (the customer table the train run read, for its ``attr_`` features)."""
    coded = None
    if churn.get("customers") is not None and churn["scorer"] != "sbg":
        from crmvalue.data import load_customer_attributes

        table = load_customer_attributes(churn["customers"]["path"], churn["customers"]["id_col"])
        names = [f.removeprefix("attr_") for f in churn["features"] if f.startswith("attr_")]
        missing = [n for n in names if n not in table.columns]
        if missing:
            raise CrmvalueError(
                f"{churn['customers']['path']}: no column {', '.join(map(repr, missing))}, which the churn model of "
                "this run was trained on"
            )
        coded, _ = encode_attributes(table[names], frame["customer_id"], churn["categories"])
    scores = score_churn(churn, frame, obs_end, predictions, coded)
    return predictions.assign(**{k: scores[k].to_numpy() for k in CHURN_COLUMNS})


def _day(value) -> pd.Timestamp:
    try:
        return pd.Timestamp(value).floor("D")
    except (TypeError, ValueError):
        raise CrmvalueError(f"--observation-end {value!r}: not a date (YYYY-MM-DD)") from None
