"""The export of a training run and its MLflow params and metrics, pinned to a reference.

``tests/golden/cdnow_sample_run.json`` was written by the code before the package was
restructured (issue 15). A refactor must leave every export column, every param and every
metric name and value as they were. Refresh the reference only for an intended change in
behaviour: ``python tests/test_behaviour_pinned.py --update``, and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from crmvalue.config import load_config
from crmvalue.data import load_transactions
from crmvalue.pipeline import train

GOLDEN = Path(__file__).parent / "golden" / "cdnow_sample_run.json"
# differ on every run by nature: wall-clock time, memory, the run's own id and paths
# (their names are pinned, their values are not)
VOLATILE = ("time.", "memory.", "run_id", "git", "version", "seconds")


def _volatile(name: str) -> bool:
    return any(word in name.lower() for word in VOLATILE)


def _values(logged: dict, tmp: Path) -> dict:
    return {k: (None if _volatile(k) else str(v).replace(str(tmp), "<tmp>")) for k, v in sorted(logged.items())}


def _column_digest(values: pd.Series) -> dict:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        v = values.to_numpy(dtype=float)
        finite = v[np.isfinite(v)]
        return {
            "n_missing": int(np.isnan(v).sum()),
            "sum": float(finite.sum()),
            "sum_sq": float((finite**2).sum()),
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
        }
    text = values.astype("string").fillna("<NA>")
    return {"n_missing": int(values.isna().sum()), "sha256": hashlib.sha256("\n".join(text).encode()).hexdigest()}


def run_snapshot(tmp: Path) -> dict:
    cfg = load_config(
        None,
        {
            "name": "pinned",
            "tracking_uri": f"sqlite:///{tmp}/mlflow.db",
            "out": str(tmp / "exports" / "predictions.csv"),
            "models_dir": str(tmp / "models"),
            "calibration_end": "1997-09-30",
            "observation_end": "1998-06-30",
            "time_unit": "weeks",
        },
    )
    result = train(cfg, data=load_transactions("cdnow_sample").frame)
    exported = pd.read_csv(result.output_path, dtype={"customer_id": str})
    run = mlflow.tracking.MlflowClient(tracking_uri=cfg.tracking_uri).get_run(result.run_id)
    return {
        "columns": list(exported.columns),
        "rows": len(exported),
        "export": {c: _column_digest(exported[c]) for c in exported.columns if not _volatile(c)},
        "params": _values(run.data.params, tmp),
        "metrics": {k: (None if _volatile(k) else v) for k, v in sorted(run.data.metrics.items())},
    }


def _number(value: str | None) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


@pytest.mark.slow
def test_a_training_run_exports_and_logs_what_it_did_before_the_restructuring(tmp_path):
    reference = json.loads(GOLDEN.read_text())
    got = json.loads(json.dumps(run_snapshot(tmp_path)))
    assert got["columns"] == reference["columns"]
    assert got["rows"] == reference["rows"]
    assert sorted(got["params"]) == sorted(reference["params"])
    for name, value in reference["params"].items():
        number = _number(value)
        if number is None:
            assert got["params"][name] == value, name
        else:  # a fitted parameter: equal up to the last bits, which vary with the CPU's vector width
            assert _number(got["params"][name]) == pytest.approx(number, rel=1e-9, abs=1e-12), name
    assert sorted(got["metrics"]) == sorted(reference["metrics"])
    for name, value in reference["metrics"].items():
        if value is not None:
            assert got["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert sorted(got["export"]) == sorted(reference["export"])
    for column, digest in reference["export"].items():
        for key, value in digest.items():
            if isinstance(value, float):
                assert got["export"][column][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (column, key)
            else:
                assert got["export"][column][key] == value, (column, key)


if __name__ == "__main__" and "--update" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(run_snapshot(Path(tmp)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
