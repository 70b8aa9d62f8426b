"""The run writer of ``crmvalue plan``: a run of kind ``plan`` in its source run's experiment,
linked to it, and the plan file with its summary beside it."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from crmvalue import __version__, schema
from crmvalue.io import write_table

if TYPE_CHECKING:
    from crmvalue.plan import Plan
    from crmvalue.tracking.reader import TrainedRunRecord

log = logging.getLogger("crmvalue")


def log_plan_run(tracking_uri: str, source: TrainedRunRecord, plan: Plan, out: Path) -> str:
    """Log ``plan`` as a run and write ``out`` and its summary; the id of the plan run."""
    from crmvalue.tracking import interrupts_deferred

    # SIGINT/SIGTERM are held back and taken between the logging steps, never inside MLflow's database work
    with interrupts_deferred() as signals:
        run_id = _logged_steps(tracking_uri, source, plan, Path(out))
        if signals.received is not None:  # it came once the run was complete: the command completes too
            log.warning("a signal arrived after the plan run was complete; it is ignored")
            signals.received = None
    return run_id


def _logged_steps(tracking_uri: str, source: TrainedRunRecord, plan: Plan, out: Path) -> str:
    import mlflow

    from crmvalue import plan as planning
    from crmvalue.io import StagedFiles
    from crmvalue.store import logging_errors
    from crmvalue.tracking import checkpoint, git_commit, tracked_run

    summary_out = planning.summary_path(out)
    as_of = source.as_of_date
    # the run ends FINISHED, FAILED or KILLED (SIGINT/SIGTERM); MLflow, database and file errors are one line
    with (
        logging_errors(tracking_uri),
        tempfile.TemporaryDirectory() as tmp,
        tracked_run(experiment_id=source.experiment_id, run_name="plan") as run,
    ):
        run_id = run.info.run_id
        tags = {
            schema.KIND_TAG: planning.PLAN_KIND,
            schema.VERSION_TAG: __version__,
            "crmvalue.git_commit": git_commit(),
            planning.SOURCE_RUN_TAG: source.run_id,
            planning.PLAN_ARTIFACT_TAG: out.name,
        }
        if as_of is not None:
            tags[schema.AS_OF_DATE_TAG] = str(as_of)
        mlflow.set_tags(tags)
        summary = plan.summary
        mlflow.log_params(
            {
                key: str(summary[key])
                for key in ("budget", "cost_per_contact", "success_rate", "margin", "control_share", "seed")
            }
            | {"source_run_id": source.run_id}
        )
        mlflow.log_metrics(planning.summary_metrics(summary))
        checkpoint()
        record = {
            "plan_run_id": run_id,
            "source_run_id": source.run_id,
            "as_of_date": None if as_of is None else str(as_of),
            **summary,
        }
        staged, staged_summary = Path(tmp) / out.name, Path(tmp) / summary_out.name
        write_table(planning.file_frame(plan.frame), staged, like=out)
        staged_summary.write_text(json.dumps(record, indent=2) + "\n")
        mlflow.log_artifact(str(staged))
        mlflow.log_artifact(str(staged_summary))
        checkpoint()
        files = StagedFiles()
        try:
            files.copy(staged, out)
            files.copy(staged_summary, summary_out)
            checkpoint()  # a signal held back while the files moved into place: stop, and put back the old ones
        except BaseException:
            files.rollback()
            raise
        files.commit()
    return run_id
