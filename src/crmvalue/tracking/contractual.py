"""The run writers of the contractual setting (:mod:`crmvalue.contractual`): a run of kind ``contractual`` for
``train`` and ``contractual_predict`` for ``predict``, each in the experiment's store with the session helpers of
:mod:`crmvalue.tracking`, and the predictions file (and ``models/<name>/sbg_model.json``) committed all or nothing.

Their own kinds, not ``train``/``predict``: ``crmvalue report``, ``plan`` and ``export --run latest`` look for the
newest ``train`` run and would find per-subscriber scores they cannot read.

A train run also logs its sBG as an MLflow pyfunc (``runs:/<id>/sbg_model``, logged from code,
``crmvalue/contractual/mlflow_model.py``, rebuilt from ``sbg_model.json``: no pickle) and, with ``registry.enabled``,
registers it as a new version of ``<name>-sbg`` once the predictions file is in place (taken back if the commit
fails), its number in the run's tag ``crmvalue.sbg_model_version``. The pyfunc scores a subscriptions frame with
the columns ``customer_id``, ``start``, ``end`` (empty while active) and optionally ``fee``, as of the parameter
``observation_end`` (default: the frame's latest date); it gives the sBG's columns, not ``churn_probability``.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import yaml

from crmvalue import __version__, schema
from crmvalue.io import write_table

log = logging.getLogger("crmvalue")

TRAIN_KIND = "contractual"
PREDICT_KIND = "contractual_predict"
SETTING_TAG = "crmvalue.setting"
SOURCE_RUN_TAG = "crmvalue.source_run_id"
CURVES_ARTIFACT = "cohort_curves.csv"
HOLDOUT_COHORTS_ARTIFACT = "holdout_cohorts.csv"
PLOT_SURVIVAL = "plots/survival_by_cohort.png"
SBG_SUFFIX = "-sbg"  # the registered model: <name>-sbg
SBG_MODEL_NAME = "sbg_model"  # the logged pyfunc: runs:/<id>/sbg_model
SBG_VERSION_TAG = "crmvalue.sbg_model_version"


def sbg_model_name(experiment: str) -> str:
    """The registered sBG model of an experiment."""
    return experiment + SBG_SUFFIX


def _sbg_pyfunc() -> type:
    from mlflow.pyfunc import PythonModel

    class SbgPyfunc(PythonModel):
        """Scores a subscriptions frame with a saved sBG; holds no state until ``load_context`` reads its JSON."""

        def load_context(self, context) -> None:
            from crmvalue.contractual.scoring import ContractualModel

            self.model_ = ContractualModel.from_dict(json.loads(Path(context.artifacts["sbg_model"]).read_text()))

        def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
            from crmvalue.contractual.data import SubscriptionColumns, load_subscriptions

            frame = pd.DataFrame(model_input).reset_index(drop=True)
            columns = SubscriptionColumns(fee_col="fee" if "fee" in frame.columns else None)
            subs = load_subscriptions(frame, columns)
            when = (params or {}).get("observation_end") or None
            obs_end = subs.last_date if when is None else pd.Timestamp(when).floor("D")
            return self.model_.score(subs.frame, obs_end)

    SbgPyfunc.__module__, SbgPyfunc.__qualname__ = __name__, "SbgPyfunc"
    return SbgPyfunc


def __getattr__(name: str):
    # made on first use, as ValueModelPyfunc: importing MLflow costs seconds a pre-flight check should not pay
    if name == "SbgPyfunc":
        globals()[name] = _sbg_pyfunc()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sbg_example(frame: pd.DataFrame) -> pd.DataFrame:
    """A few rows of a validated subscriptions frame as the pyfunc takes them: dates as text, empty while active."""
    head = frame.head(5)
    example = pd.DataFrame(
        {
            "customer_id": head["customer_id"].astype(str).to_numpy(),
            "start": head["start"].dt.strftime("%Y-%m-%d").to_numpy(),
            "end": head["end"].dt.strftime("%Y-%m-%d").fillna("").to_numpy(),
        }
    )
    if "fee" in head.columns:
        example["fee"] = head["fee"].to_numpy(float)
    return example


def log_sbg_model(state_text: str, example: pd.DataFrame) -> str:
    """Log the sBG as a pyfunc from code with a signature (parameter ``observation_end``); returns its URI."""
    import mlflow
    from mlflow.models import infer_signature

    from crmvalue.contractual.scoring import ContractualModel

    model = _sbg_pyfunc()()
    model.model_ = ContractualModel.from_dict(json.loads(state_text))
    scores = model.predict(None, example)
    with warnings.catch_warnings():  # its hint on integer columns concerns inputs; tenure is an output
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, scores, params={"observation_end": ""})
    code = Path(__file__).resolve().parents[1] / "contractual" / "mlflow_model.py"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sbg_model.json"
        path.write_text(state_text)
        info = mlflow.pyfunc.log_model(
            name=SBG_MODEL_NAME,
            python_model=str(code),
            artifacts={"sbg_model": str(path)},
            signature=signature,
            input_example=example,
            pip_requirements=sbg_requirements(),  # given, so MLflow does not infer them in a subprocess
        )
    return info.model_uri


def sbg_requirements() -> list[str]:
    """What the logged sBG pyfunc needs installed, pinned to the versions that logged it."""
    from importlib.metadata import version

    return [f"crmvalue=={version('crmvalue')}"] + [
        f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "numpy", "pandas", "scipy")
    ]


def log_contractual_run(
    tracking_uri: str | None,
    experiment: str,
    tags: dict[str, str],
    params: dict[str, str],
    metrics: dict[str, float],
    predictions: pd.DataFrame,
    out: Path,
    tables: dict[str, pd.DataFrame],
    texts: dict[str, str],
    figures: dict,
    model_files: dict[Path, str],
    sbg: tuple[str, pd.DataFrame] | None = None,
    registered_name: str | None = None,
) -> str:
    """Log a contractual train run, then commit ``out`` and ``model_files`` (path -> text); returns the run id.

    ``sbg`` (the model's JSON text, example input rows) logs the sBG as a pyfunc; ``registered_name`` registers it
    as a new version of that registered model when the files are in place.

    ``tables`` (artifact name -> frame) and ``texts`` (artifact name -> text) are logged as files, ``figures``
    (artifact path -> matplotlib figure) as images; SIGINT/SIGTERM are taken only between the steps."""
    from crmvalue.store import logging_errors, open_for_writing
    from crmvalue.tracking import (
        TrackingSession,
        interrupts_deferred,
        quiet_mlflow,
        resolve_tracking_uri,
        use_experiment,
    )

    with interrupts_deferred() as signals, TrackingSession(tracking_uri):
        quiet_mlflow()
        uri = resolve_tracking_uri(tracking_uri)
        open_for_writing(uri)
        with logging_errors(uri):
            experiment_id = use_experiment(experiment, uri).experiment_id
        run_id = _logged(
            uri,
            experiment_id,
            None,
            {**tags, schema.KIND_TAG: TRAIN_KIND},
            params,
            metrics,
            predictions,
            out,
            tables,
            texts,
            figures,
            model_files,
            sbg,
            registered_name,
        )
        if signals.received is not None:
            log.warning("a signal arrived after the run was complete and committed; it is ignored")
            signals.received = None
    return run_id


def log_contractual_predict_run(
    tracking_uri: str | None,
    experiment_id: str,
    source_run_id: str,
    tags: dict[str, str],
    params: dict[str, str],
    metrics: dict[str, float],
    predictions: pd.DataFrame,
    out: Path,
) -> str:
    """Log the scores of ``predict`` as a run of kind ``contractual_predict`` beside its source run; commit ``out``."""
    from crmvalue.tracking import TrackingSession, interrupts_deferred, quiet_mlflow, resolve_tracking_uri

    with interrupts_deferred() as signals, TrackingSession(tracking_uri):
        quiet_mlflow()
        tags = {**tags, schema.KIND_TAG: PREDICT_KIND, SOURCE_RUN_TAG: source_run_id}
        run_id = _logged(
            resolve_tracking_uri(tracking_uri),
            experiment_id,
            "predict",
            tags,
            params,
            metrics,
            predictions,
            out,
            {},
            {},
            {},
            {},
        )
        if signals.received is not None:
            log.warning("a signal arrived after the predict run was complete; it is ignored")
            signals.received = None
    return run_id


def _logged(
    uri: str,
    experiment_id: str,
    run_name: str | None,
    tags: dict[str, str],
    params: dict[str, str],
    metrics: dict[str, float],
    predictions: pd.DataFrame,
    out: Path,
    tables: dict[str, pd.DataFrame],
    texts: dict[str, str],
    figures: dict,
    model_files: dict[Path, str],
    sbg: tuple[str, pd.DataFrame] | None = None,
    registered_name: str | None = None,
) -> str:
    import mlflow

    from crmvalue import registry
    from crmvalue.io import StagedFiles
    from crmvalue.store import logging_errors
    from crmvalue.tracking import checkpoint, git_commit, tracked_run
    from crmvalue.tracking.artifacts import log_figures

    out = Path(out)
    # the run ends FINISHED, FAILED or KILLED (SIGINT/SIGTERM); MLflow, database and file errors are one line
    with (
        logging_errors(uri),
        tempfile.TemporaryDirectory() as tmp_dir,
        tracked_run(experiment_id=experiment_id, run_name=run_name) as active,
    ):
        tmp = Path(tmp_dir)
        run_id = active.info.run_id
        mlflow.set_tags(
            {
                **tags,
                SETTING_TAG: "contractual",
                schema.VERSION_TAG: __version__,
                "crmvalue.git_commit": git_commit(),
                schema.PREDICTIONS_ARTIFACT_TAG: out.name,
            }
        )
        mlflow.log_params(params)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(float(v))})
        checkpoint()
        staged = tmp / out.name
        write_table(predictions.assign(run_id=run_id), staged, like=out)
        mlflow.log_artifact(str(staged))
        for name, table in tables.items():
            table.to_csv(tmp / name, index=False)
            mlflow.log_artifact(str(tmp / name))
        for name, text in texts.items():
            (tmp / name).write_text(text)
            mlflow.log_artifact(str(tmp / name))
        log_figures(figures)
        model_uri = None if sbg is None else log_sbg_model(*sbg)
        checkpoint()
        files = StagedFiles()
        version = None
        try:
            files.copy(staged, out)
            for path, text in model_files.items():
                files.write_text(path, text)
            if registered_name is not None and model_uri is not None:
                version = registry.register(model_uri, registered_name, run_id)
                mlflow.set_tag(SBG_VERSION_TAG, str(version))
            checkpoint()  # a signal held back while the files moved into place: stop, and put the old ones back
        except BaseException:
            if version is not None and registered_name is not None:
                try:
                    registry.unregister(registered_name, version)
                except Exception as exc:  # noqa: BLE001 - the first error is the one to report
                    log.warning(
                        "could not remove version %s of %s from the model registry: %s", version, registered_name, exc
                    )
            files.rollback()
            raise
        files.commit()
    return run_id


def config_text(resolved: dict) -> str:
    """The resolved config as the run's ``config.yaml``."""
    return yaml.safe_dump(resolved, sort_keys=False)


def model_text(state: dict) -> str:
    return json.dumps(state, indent=2) + "\n"
