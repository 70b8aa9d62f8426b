"""One typed reader of a run that ``crmvalue train`` or ``crmvalue predict`` logged.

:func:`read_run` resolves ``latest`` (:func:`crmvalue.store.latest_run_id`), reads the run's
names, params, metrics and tags once into a :class:`TrainedRunRecord`, and the record downloads
its artifacts when asked: the predictions frame, a table, the churn scoring state, the config.
The report, the export and ``crmvalue predict`` read a run through it, so a run is read one way.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from crmvalue import schema
from crmvalue.errors import CrmvalueError

if TYPE_CHECKING:
    from crmvalue.valuegbm import GbmValueModel

LATEST = "latest"
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class TrainedRunRecord:
    """What the store holds of one run: its names, params, metrics and tags, read once."""

    run_id: str
    experiment_id: str
    experiment: str  # the experiment's name
    run_name: str
    status: str  # FINISHED, FAILED, KILLED, RUNNING
    start_time: int  # ms since the epoch, as MLflow keeps it
    end_time: int | None
    params: dict[str, str] = field(repr=False)
    metrics: dict[str, float] = field(repr=False)
    tags: dict[str, str] = field(repr=False)
    tracking_uri: str = ""

    @property
    def kind(self) -> str:
        """``train`` or ``predict`` (runs logged before the tag: ``train``)."""
        return self.tags.get(schema.KIND_TAG, "train")

    def metric(self, name: str) -> float | None:
        return self.metrics.get(name)

    @property
    def as_of_date(self) -> dt.date | None:
        """The observation end of the scores: the tag, or the config's param for older runs."""
        text = self.tags.get(schema.AS_OF_DATE_TAG) or self.params.get(schema.OBSERVATION_END_PARAM)
        return dt.date.fromisoformat(text) if text else None

    @property
    def finished_at(self) -> dt.datetime:
        """When the run ended (when it started, if it has no end), in UTC."""
        ended = self.end_time or self.start_time
        return dt.datetime.fromtimestamp(ended / 1000, tz=dt.UTC)

    @property
    def model_version(self) -> int | None:
        """The registered version of the run's value model (tag), None when it was not registered."""
        version = self.tags.get(schema.VALUE_MODEL_VERSION_TAG)
        return int(version) if version else None

    @property
    def quadrant_thresholds(self) -> tuple[float, float] | None:
        """The current and potential value thresholds the run used, None for runs without them."""
        try:
            return (
                float(self.params[schema.threshold_param("current")]),
                float(self.params[schema.threshold_param("potential")]),
            )
        except KeyError:
            return None

    @property
    def data_first_date(self) -> pd.Timestamp | None:
        first = self.tags.get(schema.DATA_FIRST_DATE_TAG)
        return pd.Timestamp(first) if first else None

    @property
    def churn_skipped(self) -> bool:
        """The churn stage was skipped (``churn.enabled: auto`` on data it could not use)."""
        return self.tags.get(schema.CHURN_TAG, "").startswith("skipped")

    @property
    def value_model_live(self) -> str:
        """The model behind the run's ``expected_revenue`` and ``potential_value``: ``btyd`` or ``gbm`` (the tag
        ``value_model.live``; runs logged before it: ``btyd``)."""
        from crmvalue.value_choice import LIVE_TAG

        return self.tags.get(LIVE_TAG, "btyd")

    @property
    def value_model_uri(self) -> str:
        return f"runs:/{self.run_id}/{schema.VALUE_MODEL_NAME}"

    @property
    def churn_model_uri(self) -> str:
        """The logged LightGBM model (the tag; ``runs:/<id>/churn_model`` for older runs)."""
        return self.tags.get(schema.CHURN_MODEL_URI_TAG, f"runs:/{self.run_id}/{schema.CHURN_MODEL_NAME}")

    # -- artifacts ----------------------------------------------------------------------------

    @contextmanager
    def artifacts(self, folder: Path | None = None) -> Iterator[RunArtifacts]:
        """The run's files, listed once and downloaded on demand into ``folder`` (default: a
        temporary folder removed on exit), while the store is open."""
        from crmvalue.store import open_store

        with open_store(self.tracking_uri) as client, _folder(folder) as into:
            yield RunArtifacts(client, self.run_id, into)

    def download(self, path: str, folder: Path) -> Path | None:
        """The artifact ``path`` downloaded into ``folder``; None when the run has no such file."""
        from crmvalue.store import open_store

        with open_store(self.tracking_uri) as client:
            try:
                return Path(client.download_artifacts(self.run_id, path, str(folder)))
            except Exception:  # noqa: BLE001 - a missing artifact, whatever the store says
                return None

    def config(self) -> dict[str, Any] | None:
        """The resolved config the run logged (``config.yaml``) as a plain dict; None without one."""
        import yaml

        with tempfile.TemporaryDirectory() as tmp:
            local = self.download(schema.CONFIG_ARTIFACT, Path(tmp))
            return None if local is None else yaml.safe_load(local.read_text())

    def churn_scoring(self) -> dict[str, Any] | None:
        """The churn model's scoring state (``churn/churn_scoring.json``); None without one."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self.download(schema.CHURN_SCORING_ARTIFACT, Path(tmp))
            return None if local is None else json.loads(local.read_text())

    def value_gbm(self) -> GbmValueModel | None:
        """The run's live boosted value model (``value_gbm/``), None when BTYD was live; a run that says the
        boosted model was live but has no folder is a one-line :class:`CrmvalueError`."""
        from crmvalue.value_choice import GBM_FOLDER
        from crmvalue.valuegbm import GbmValueModel

        if self.value_model_live != "gbm":
            return None
        with tempfile.TemporaryDirectory() as tmp:
            local = self.download(GBM_FOLDER, Path(tmp))
            if local is None:
                raise CrmvalueError(
                    f"run {self.run_id} scored with its boosted value model but has no {GBM_FOLDER}/ artifact "
                    "to load it from"
                )
            return GbmValueModel.load(local)

    def predictions_artifact(self) -> str:
        """The name of the run's predictions file: the tag, or for runs logged before the tag the
        one predictions table at the root."""
        name = self.tags.get(schema.PREDICTIONS_ARTIFACT_TAG)
        if name is not None:
            return name
        from crmvalue.store import open_store

        with open_store(self.tracking_uri) as client:
            found = [
                a.path
                for a in client.list_artifacts(self.run_id)
                if not a.is_dir
                and Path(a.path).suffix.lower() in (".csv", *PARQUET_SUFFIXES)
                and a.path not in (schema.QUADRANT_SUMMARY_ARTIFACT, schema.HOLDOUT_EXPECTATIONS_ARTIFACT)
            ]
        if len(found) != 1:
            raise CrmvalueError(
                f"run {self.run_id} has no predictions file to export (is it a crmvalue train or predict run?)"
            )
        return found[0]

    def predictions(self) -> pd.DataFrame:
        """The run's predictions file, ``customer_id`` as text (``"00012"`` stays ``"00012"``)."""
        name = self.predictions_artifact()
        with tempfile.TemporaryDirectory() as tmp:
            local = self.download(name, Path(tmp))
            if local is None:
                raise CrmvalueError(f"run {self.run_id} has no artifact {name!r} to export")
            return read_predictions(local)


class RunArtifacts:
    """The files of one run: listed once (the root and :data:`crmvalue.schema.ARTIFACT_FOLDERS`),
    downloaded on demand into ``folder``."""

    def __init__(self, client, run_id: str, folder: Path, folders: tuple[str, ...] = schema.ARTIFACT_FOLDERS):
        self.client, self.run_id, self.folder = client, run_id, folder
        self.paths: set[str] = set()
        for item in client.list_artifacts(run_id):
            if not item.is_dir:
                self.paths.add(item.path)
            elif item.path in folders:
                self.paths.update(a.path for a in client.list_artifacts(run_id, item.path) if not a.is_dir)

    def local(self, path: str) -> Path | None:
        """``path`` downloaded, None when the run does not have it."""
        if path not in self.paths:
            return None
        return Path(self.client.download_artifacts(self.run_id, path, str(self.folder)))

    def table(self, path: str, **read_kw) -> pd.DataFrame | None:
        """A CSV or Parquet artifact as a frame (an unnamed CSV index column gets the name "")."""
        local = self.local(path)
        if local is None:
            return None
        if local.suffix.lower() in PARQUET_SUFFIXES:
            return pd.read_parquet(local, **read_kw)
        frame = pd.read_csv(local, **read_kw)
        return frame.rename(columns={c: "" for c in frame.columns if str(c).startswith("Unnamed: ")})

    def read_bytes(self, path: str) -> bytes | None:
        local = self.local(path)
        return None if local is None else local.read_bytes()

    def under(self, folder: str, prefix: str = "", suffix: str = "") -> list[str]:
        """The listed paths in ``folder`` whose names start with ``prefix`` and end with ``suffix``."""
        start = f"{folder}/{prefix}"
        return sorted(p for p in self.paths if p.startswith(start) and p.endswith(suffix))


@contextmanager
def _folder(folder: Path | None) -> Iterator[Path]:
    if folder is not None:
        yield Path(folder)
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def read_predictions(path: Path) -> pd.DataFrame:
    """A predictions file (CSV or Parquet) with ``customer_id`` as text and an id ``NA`` kept as ``"NA"``."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        frame = pd.read_parquet(path)
        frame["customer_id"] = frame["customer_id"].astype(str)
        return frame
    header = pd.read_csv(path, nrows=0).columns
    # ids are text: "00012" stays "00012" and an id "NA" stays "NA"
    return pd.read_csv(
        path,
        dtype={"customer_id": str},
        keep_default_na=False,
        na_values={c: ["", "NaN", "nan"] for c in header if c != "customer_id"},
    )


def read_run(
    run: str,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    kinds: tuple[str, ...] = ("train",),
) -> TrainedRunRecord:
    """The run ``run``: an id, or ``latest``, the newest finished top-level run of one of ``kinds``
    in ``experiment`` (else in any experiment). An id is read whatever its experiment; a missing
    one is a one-line :class:`CrmvalueError` (:func:`crmvalue.store.get_run`)."""
    from crmvalue.store import get_run, latest_run_id, open_store
    from crmvalue.tracking import resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(tracking_uri)
    run_id = latest_run_id(tracking_uri, experiment, kinds=kinds) if run == LATEST else run
    with open_store(tracking_uri) as client:
        found = get_run(client, run_id, tracking_uri)
        name = client.get_experiment(found.info.experiment_id).name
    info, data = found.info, found.data
    return TrainedRunRecord(
        run_id=info.run_id,
        experiment_id=info.experiment_id,
        experiment=name,
        run_name=info.run_name or "",
        status=info.status,
        start_time=info.start_time,
        end_time=info.end_time,
        params=dict(data.params),
        metrics=dict(data.metrics),
        tags=dict(data.tags),
        tracking_uri=tracking_uri,
    )
