"""The run writer of ``crmvalue predict``: a run of kind ``predict`` in the model's experiment, and the scores file."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from crmvalue import __version__, schema
from crmvalue.io import write_table
from crmvalue.registry import VERSION_TAG, ModelRef
from crmvalue.schema import SCORED_ON as HISTORY_FLAG
from crmvalue.schema import output_columns

if TYPE_CHECKING:
    from crmvalue.customer_days import CustomerDays
    from crmvalue.progress import Progress

log = logging.getLogger("crmvalue")


class SourceRun(Protocol):
    """What the predict run needs of the train run it scores with (``crmvalue.predict``'s record of it)."""

    run_id: str
    experiment_id: str


def log_predict_run(
    tracking_uri,
    ref: ModelRef,
    trained: SourceRun,
    tx: CustomerDays,
    obs_end,
    predictions,
    quadrants,
    out: Path,
    progress: Progress,
) -> str:
    from crmvalue.tracking import interrupts_deferred

    # SIGINT/SIGTERM are held back and taken between the logging steps, never inside MLflow's database work
    with interrupts_deferred() as signals:
        run_id = _logged_steps(tracking_uri, ref, trained, tx, obs_end, predictions, quadrants, out, progress)
        if signals.received is not None:  # it came once the run was complete: the command completes too
            log.warning("a signal arrived after the predict run was complete; it is ignored")
            signals.received = None
    return run_id


def _logged_steps(
    tracking_uri,
    ref: ModelRef,
    trained: SourceRun,
    tx: CustomerDays,
    obs_end,
    predictions,
    quadrants,
    out: Path,
    progress: Progress,
) -> str:
    import mlflow

    from crmvalue.io import StagedFiles
    from crmvalue.store import logging_errors
    from crmvalue.tracking import checkpoint, git_commit, tracked_run

    # customers without a purchase, scored by the prospective expectation
    new = HISTORY_FLAG.name in predictions.columns
    # the run ends FINISHED, FAILED or KILLED (SIGINT/SIGTERM); MLflow, database and file errors are one line
    with (
        logging_errors(tracking_uri),
        tempfile.TemporaryDirectory() as tmp,
        tracked_run(experiment_id=trained.experiment_id, run_name="predict") as run,
    ):
        run_id = run.info.run_id
        tags = {
            schema.KIND_TAG: "predict",
            schema.VERSION_TAG: __version__,
            "crmvalue.git_commit": git_commit(),
            "crmvalue.model_uri": ref.uri,
            "crmvalue.source_run_id": trained.run_id,
            schema.AS_OF_DATE_TAG: str(obs_end.date()),
            "crmvalue.data_sha256": tx.sha256,
            "crmvalue.data_source": tx.source,
            schema.PREDICTIONS_ARTIFACT_TAG: Path(out).name,
        }
        if ref.version is not None:
            tags[VERSION_TAG] = str(ref.version)
        mlflow.set_tags(tags)
        mlflow.log_params({"model_uri": ref.uri, "observation_end": str(obs_end.date())})
        mlflow.log_metrics(
            {
                schema.DATA_TRANSACTIONS: float(tx.transactions),
                schema.DATA_CUSTOMERS: float(len(predictions)),
                **({schema.NEW_CUSTOMERS: float((predictions["history"] == "none").sum())} if new else {}),
                **{schema.quadrant_customers_metric(q): float(n) for q, n in quadrants["customers"].items()},
                **{schema.stage_time_metric(k): v for k, v in progress.timings.items()},
            }
        )
        checkpoint()
        export = predictions.assign(run_id=run_id)[output_columns(predictions)]
        staged = Path(tmp) / Path(out).name
        write_table(export, staged)
        mlflow.log_artifact(str(staged))
        checkpoint()
        files = StagedFiles()
        try:
            files.copy(staged, Path(out))
            checkpoint()  # a signal held back while the scores moved into place: stop, and put back the old file
        except BaseException:
            files.rollback()
            raise
        files.commit()
    return run_id
