"""``crmvalue export --format salesforce|hubspot --out FILE``: a run's scores as a bulk-upsert CSV.

UTF-8, keyed on an external-id column, with field names from a mapping (built-in, or
``--mapping`` YAML) and numbers as those tools parse them: ``.`` decimals, no thousands
separators, no exponents, ISO dates. Each column's format follows its declared kind
(:mod:`crmvalue.schema`).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd

from crmvalue.errors import CrmvalueError
from crmvalue.export.scores import (
    COLUMNS,
    DATE_COLUMNS,
    INTEGER_COLUMNS,
    MONEY,
    TEXT_COLUMNS,
    ExportResult,
    RunScores,
    dates,
    is_missing,
    load_run_scores,
)
from crmvalue.io import atomic_write

# crmvalue column -> field; the first entry is the external id the tool upserts on
DEFAULT_MAPPINGS: dict[str, dict[str, str]] = {
    "salesforce": {
        "customer_id": "Crmvalue_Customer_Id__c",
        "as_of_date": "Crmvalue_Scores_As_Of__c",
        "quadrant": "Crmvalue_Quadrant__c",
        "p_alive": "Crmvalue_P_Alive__c",
        "expected_purchases": "Crmvalue_Expected_Purchases__c",
        "clv": "Crmvalue_CLV__c",
        "current_value": "Crmvalue_Current_Value__c",
        "churn_probability": "Crmvalue_Churn_Probability__c",
        "churn_risk": "Crmvalue_Churn_Risk__c",
        "rfm_segment": "Crmvalue_RFM_Segment__c",
        "cpm_label": "Crmvalue_CPM_Group__c",
        "value_decile": "Crmvalue_Value_Decile__c",
        "crm_grade": "Crmvalue_CRM_Grade__c",
        "model_version": "Crmvalue_Model_Version__c",
        "run_id": "Crmvalue_Run_Id__c",
    },
    "hubspot": {
        "customer_id": "crmvalue_customer_id",
        "as_of_date": "crmvalue_scores_as_of",
        "quadrant": "crmvalue_quadrant",
        "p_alive": "crmvalue_p_alive",
        "expected_purchases": "crmvalue_expected_purchases",
        "clv": "crmvalue_clv",
        "current_value": "crmvalue_current_value",
        "churn_probability": "crmvalue_churn_probability",
        "churn_risk": "crmvalue_churn_risk",
        "rfm_segment": "crmvalue_rfm_segment",
        "cpm_label": "crmvalue_cpm_group",
        "value_decile": "crmvalue_value_decile",
        "crm_grade": "crmvalue_crm_grade",
        "model_version": "crmvalue_model_version",
        "run_id": "crmvalue_run_id",
    },
}
FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def load_mapping(path: Path | None, fmt: str) -> tuple[dict[str, str], bool]:
    """The mapping to use and whether it was given (a given one must match the run's columns)."""
    import yaml

    if path is None:
        return dict(DEFAULT_MAPPINGS[fmt]), False
    path = Path(path)
    if not path.is_file():
        raise CrmvalueError(f"{path}: mapping file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CrmvalueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not raw:
        raise CrmvalueError(f"{path}: expected a mapping of crmvalue column: {fmt} field")
    mapping = {str(k): str(v) for k, v in raw.items()}
    if next(iter(mapping)) != "customer_id":
        raise CrmvalueError(f"{path}: the first entry must map customer_id to the external-id field")
    seen: dict[str, str] = {}
    for column, field in mapping.items():
        if column not in COLUMNS:
            raise CrmvalueError(f"{path}: {column!r} is not a crmvalue export column; they are {', '.join(COLUMNS)}")
        if not FIELD.match(field):
            raise CrmvalueError(f"{path}: field {field!r} (for {column}) is not a valid API field name")
        if field in seen:
            raise CrmvalueError(f"{path}: field {field!r} is mapped from both {seen[field]} and {column}")
        seen[field] = column
    return mapping, True


def bulk_file(scores: RunScores, fmt: str, mapping: dict[str, str], strict: bool) -> pd.DataFrame:
    """The upsert table: mapped columns renamed, every value a string in the tools' formats."""
    if fmt not in DEFAULT_MAPPINGS:
        raise CrmvalueError(f"--format {fmt!r}: expected salesforce or hubspot")
    rows = scores.rows()
    present = {c for c in rows.columns if c in scores.frame.columns} | {
        "run_id",
        "model_version",
        "as_of_date",
        "scored_at",
    }
    if scores.model_version is None:
        present.discard("model_version")
    absent = [c for c in mapping if c not in present]
    if absent and strict:
        raise CrmvalueError(
            f"--mapping: run {scores.run_id} has no {absent[0]!r} column (was that part of the run off?)"
        )
    columns = [c for c in mapping if c in present]
    out = pd.DataFrame({mapping[c]: _formatted(rows[c], c) for c in columns})
    return out


def _formatted(values: pd.Series, column: str) -> list[str]:
    if column == "as_of_date":
        return [v.isoformat() for v in values]
    if column in DATE_COLUMNS:
        return ["" if v is None else v.isoformat() for v in dates(values)]
    if column == "scored_at":
        return [v.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for v in values]
    if column in TEXT_COLUMNS:
        return ["" if is_missing(v) else str(v) for v in values.tolist()]
    if column in INTEGER_COLUMNS:
        return ["" if is_missing(v) else str(int(v)) for v in values.tolist()]
    digits = 2 if column in MONEY else 6
    return ["" if is_missing(v) or not np.isfinite(v) else _decimal(float(v), digits) for v in values.tolist()]


def _decimal(value: float, digits: int) -> str:
    """Fixed point, no exponent, no thousands separator, no trailing zeros: 0.000012, 1234.5."""
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def export_file(
    run: str,
    fmt: str,
    out: Path,
    mapping_path: Path | None = None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
) -> ExportResult:
    mapping, strict = load_mapping(mapping_path, fmt) if fmt in DEFAULT_MAPPINGS else ({}, False)
    scores = load_run_scores(run, experiment, tracking_uri)
    table = bulk_file(scores, fmt, mapping, strict)
    atomic_write(Path(out), lambda tmp: table.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n"))
    return ExportResult(scores.run_id, str(out), None, len(table), changed=True)
