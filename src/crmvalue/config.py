"""The experiment config: one typed object, loaded from ``experiments/*.yaml``, overridden by CLI flags."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crmvalue.analyses import CpmConfig, CrmValueConfig, RevenueCostConfig, RfmConfig
from crmvalue.backtest.config import BacktestConfig
from crmvalue.decisions import DecisionsConfig
from crmvalue.discrete import ModelUnit
from crmvalue.errors import CrmvalueError
from crmvalue.models import registry

DEFAULT_CONFIG = Path("experiments/cdnow.yaml")


class _Strict(BaseModel):
    # a misspelt key in a YAML file is an error, not a silently ignored setting
    model_config = ConfigDict(extra="forbid")


class SimulationConfig(_Strict):
    """Transactions drawn from known parameters (``data.source: simulated``)."""

    model: Literal["bgnbd", "paretonbd"] = "bgnbd"
    params: dict[str, float] | None = Field(
        None,
        description="purchase-model parameters, rates per time_unit (default: the published CDNOW fit of the model)",
    )
    spend: dict[str, float] = Field({"p": 6.25, "q": 3.74, "v": 15.44}, description="Gamma-Gamma p, q, v")
    customers: int = Field(10_000, gt=0)
    start: dt.date = dt.date(1997, 1, 1)
    end: dt.date = dt.date(1998, 6, 30)
    acquisition_days: int = Field(84, gt=0, description="first purchases fall in this many days from start")
    time_unit: Literal["days", "weeks"] = "weeks"
    seed: int = 0

    @model_validator(mode="after")
    def _defaults_and_dates(self) -> SimulationConfig:
        if self.params is None:
            self.params = dict(PUBLISHED_CDNOW[self.model])
        if (self.end - self.start).days <= self.acquisition_days:
            raise ValueError(
                f"end {self.end} must be more than acquisition_days ({self.acquisition_days}) after start {self.start}"
            )
        return self


# Fader, Hardie & Lee (2005), CDNOW sample, weeks
PUBLISHED_CDNOW = {
    "bgnbd": {"r": 0.2426, "alpha": 4.4136, "a": 0.7929, "b": 2.4259},
    "paretonbd": {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669},
}


class DataConfig(_Strict):
    source: str = Field("cdnow", description="'cdnow', 'cdnow_sample', 'simulated', or a .csv/.parquet path")
    simulation: SimulationConfig = SimulationConfig()
    customer_col: str = "customer_id"
    date_col: str = "date"
    amount_col: str = "amount"
    quantity_col: str | None = None
    date_format: str | None = Field(None, description="strftime format; default: ISO 8601, else inferred")
    customers: Path | None = Field(
        None,
        description="optional customer table (.csv/.parquet), one row per id: churn features, segments, satisfaction",
    )
    customers_id_col: str = "customer_id"
    engine: Literal["auto", "pandas", "duckdb"] = Field(
        "auto",
        description="who reads and nets the transactions: DuckDB for large files (auto: CSV/Parquet of 100 MB "
        "or more), pandas otherwise; both give the same numbers",
    )
    price_col: str | None = Field(
        None,
        description="unit price column of invoice lines: amount = quantity x price (needs quantity_col; "
        "amount_col is then not read)",
    )
    dayfirst: bool | None = Field(
        None,
        description="a date column that fits both day-first and month-first formats: true reads 03/02/2023 as "
        "3 February, false as 2 March; null refuses it",
    )
    sep: str | None = Field(None, description="CSV delimiter, e.g. ';' or '\\t' (default ',', a tab for .tsv)")
    decimal: str = Field(".", description="decimal mark of the numbers: '.' or ','")
    thousands: str | None = Field(None, description="thousands separator removed from numbers, e.g. '.' or ','")
    encoding: str | None = Field(
        None,
        description="text encoding, e.g. latin-1, cp1252, utf-16 (default UTF-8; a UTF-8/UTF-16 byte-order mark "
        "is detected)",
    )
    drop_missing_ids: bool = Field(
        False, description="drop rows without a customer id (with a warning) instead of refusing them"
    )
    allow_future_dates: bool = Field(
        False,
        description="keep rows dated after today or long after the rest of the data (with a warning) instead of "
        "refusing them",
    )


# the registered purchase models (crmvalue.models.registry): a new model is a config choice at once
if TYPE_CHECKING:
    PurchaseModelName: TypeAlias = str  # the names are known only at import time, from the registry
else:
    PurchaseModelName = Literal[registry.names()]  # built from the registry at import


class CovariatesConfig(_Strict):
    """Time-invariant covariates of the purchase model and of Gamma-Gamma's spend: columns of the customer table
    (``data.customers``). Numeric columns are used as they are; categorical ones are one-hot coded against their
    first level."""

    purchase: list[str] = Field([], description="customer-table columns that shift the purchase rate")
    dropout: list[str] = Field([], description="customer-table columns that shift the dropout process")
    spend: list[str] = Field([], description="customer-table columns that shift Gamma-Gamma's spend level (scale v)")

    @property
    def any(self) -> bool:
        return bool(self.purchase or self.dropout or self.spend)


class ModelConfig(_Strict):
    purchase_model: Literal[(*registry.names(), "auto")] = Field(  # type: ignore[valid-type]
        "bgnbd", description="'auto' fits every candidate and keeps the lowest holdout error (selection_metric)"
    )
    # auto compares models fitted on one kind of data: the continuous-time ones by default (bgbb is discrete)
    candidates: list[PurchaseModelName] = Field(list(registry.names("continuous")), min_length=1)
    selection_metric: Literal["rmse", "mae"] = Field(
        "rmse", description="holdout error that 'auto' minimises; MAE favours forecasts that are too low"
    )
    penalizer: float = Field(0.0, ge=0, description="L2 penalty for BG/NBD; raise it if the fit does not converge")
    gamma_gamma_penalizer: float = Field(0.0, ge=0)
    value_model: Literal["btyd", "gbm", "auto"] = Field(
        "btyd",
        description="the model behind expected_revenue and the quadrants' potential value: btyd (the purchase model "
        "x Gamma-Gamma), gbm (the boosted model of next-horizon revenue, crmvalue.valuegbm) or auto (gbm when a "
        "backtest up to the calibration end has it better on 2 of revenue RMSE, normalized Gini and decile MAPE)",
    )
    covariates: CovariatesConfig = CovariatesConfig()

    @property
    def data_kind(self) -> str:
        """The data the purchase model is fitted on: continuous, or discrete (BG/BB's periods); auto: the candidates'."""
        return registry.data_kind(self.candidates[0] if self.purchase_model == "auto" else self.purchase_model)

    @model_validator(mode="after")
    def _candidates_of_one_kind(self) -> ModelConfig:
        if self.purchase_model == "auto" and len({registry.data_kind(name) for name in self.candidates}) > 1:
            raise ValueError("model.candidates mix continuous-time models and bgbb (discrete): auto compares one kind")
        return self


class ClvConfig(_Strict):
    months: int = Field(12, gt=0, description="CLV horizon in months of 30 days (4.345 weeks), as lifetimes")
    discount_rate: float = Field(0.01, ge=0, description="monthly discount rate")


class QuadrantConfig(_Strict):
    current_window_days: int = Field(365, gt=0, description="current value = revenue in this trailing window")
    rule: Literal["top_share", "quantile"] = Field(
        "top_share",
        description="top_share: high potential = the top potential_top_share of customers by potential value, high "
        "current = above the median current value of the customers with any current value; quantile: the quantile "
        "on each axis (the rule before issue 18)",
    )
    potential_top_share: float = Field(
        0.2, gt=0, lt=1, description="rule top_share: the share of customers with the highest potential value"
    )
    quantile: float = Field(0.5, gt=0, lt=1, description="rule quantile: the high/low split quantile on each axis")
    current_threshold: float | None = Field(
        None, description="absolute split for current value; overrides the rule on this axis"
    )
    potential_threshold: float | None = Field(None, description="absolute split for potential value (CLV)")


class ChurnRiskThresholds(_Strict):
    high: float = Field(0.8, gt=0, le=1, description="churn_probability at or above this is 'high' risk")
    medium: float = Field(0.5, gt=0, le=1, description="at or above this (and below high) is 'medium'; below, 'low'")

    @model_validator(mode="after")
    def _ordered(self) -> ChurnRiskThresholds:
        if self.medium > self.high:
            raise ValueError(f"medium ({self.medium}) must not be above high ({self.high})")
        return self


class ChurnConfig(_Strict):
    """The LightGBM loss-risk model; its horizon is the experiment's horizon_days."""

    enabled: Literal["auto"] | bool = Field(
        "auto",
        description="fit the churn model and add churn_probability, churn_risk to the export. auto: when the data are "
        "long enough for its protocol and it can be estimated, else the run goes on without it (a warning says why); "
        "true (--churn): required, too-short data is an error; false (--no-churn): never",
    )
    step_days: int = Field(30, gt=0, description="days between rolling training cut-offs")
    min_history_days: int = Field(
        60, ge=0, description="the earliest cut-off is this many days after the first transaction"
    )
    seed: int = 0
    attribute_columns: list[str] | None = Field(
        None,
        description="customer-table columns to use as churn features; default every column except those "
        "unique per customer (an e-mail, a phone number), which would let the model memorise customers",
    )
    sample_customers: int | None = Field(
        25_000,
        gt=0,
        description="train and test on at most this many customers, drawn at random with the seed (null: all); "
        "every customer is still scored",
    )
    calibration: Literal["sigmoid", "isotonic"] = Field(
        "sigmoid", description="Platt scaling keeps LightGBM's ranking; isotonic adds ties (CDNOW AUC 0.777 -> 0.776)"
    )
    num_boost_round: int = Field(2000, gt=0)
    early_stopping_rounds: int = Field(100, gt=0)
    params: dict[str, Any] = Field({}, description="LightGBM parameters over crmvalue's defaults")
    risk: ChurnRiskThresholds = ChurnRiskThresholds()

    @field_validator("enabled", mode="before")
    @classmethod
    def _auto_or_bool(cls, value):
        if isinstance(value, bool) or value == "auto":
            return value
        raise ValueError(f"must be auto, true or false, got {value!r}")


class QualityConfig(_Strict):
    """Quality gates: red flags on a model whose own out-of-time check says it is off."""

    max_total_error: float = Field(
        0.25,
        gt=0,
        description="red flag when the holdout forecast of total purchases is off the actual total by more than this "
        "share (0.25: more than 25% too high or too low)",
    )


class AnalysesConfig(_Strict):
    """The CRM analyses of the source documents (crmvalue.analyses)."""

    enabled: bool = Field(
        True, description="RFM scores, CPM groups, deciles, CRM value, retention, revenue-cost method, segments"
    )
    rfm: RfmConfig = RfmConfig()
    cpm: CpmConfig = CpmConfig()
    crm_value: CrmValueConfig = CrmValueConfig()
    retention_period: Literal["M", "Q"] = Field("M", description="months or quarters for retention and cohorts")
    revenue_cost: RevenueCostConfig = RevenueCostConfig()
    interactions: Path | None = Field(None, description="optional interactions table: customer id, timestamp, channel")
    interactions_id_col: str = "customer_id"
    interactions_date_col: str = "date"
    interactions_channel_col: str | None = Field(None, description="optional channel column, checked if named")
    segment_columns: list[str] | None = Field(
        None, description="customer-table columns to segment by; default every non-numeric one"
    )


class IntervalConfig(_Strict):
    enabled: bool = Field(False, description="add 90% intervals for expected_purchases and clv to the export")
    draws: int = Field(200, ge=20, description="parametric bootstrap draws")
    level: float = Field(0.9, gt=0, lt=1)
    seed: int = 0


class RegistryConfig(_Strict):
    """MLflow Model Registry: every run registers its models as new versions of these names."""

    enabled: bool = True
    value_model: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$", description="registered value model; default <name>-value"
    )
    churn_model: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$", description="registered churn model; default <name>-churn"
    )


class SubscriptionsConfig(_Strict):
    """The columns of a subscriptions table (setting: contractual); the id column is data.customer_col."""

    start_col: str = Field("start", description="the date the subscription started")
    end_col: str = Field("end", description="the date it ended; empty while it is active")
    fee_col: str | None = Field(None, description="optional fee per period (for the discounted residual value)")


def experiment_name(source) -> str:
    """The experiment name a data source gives when none is set: the file's name without its last
    suffix, other characters than letters, digits, ``_ . -`` made ``_`` (``cdnow``, ``cdnow_sample``
    and ``simulated`` keep their names)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(str(source)).stem) or "crmvalue"


class ExperimentConfig(_Strict):
    name: str = Field(
        None,  # type: ignore[assignment]  # a placeholder: _default_name always fills it in before validation
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="experiment name: MLflow experiment, exports/<name>/, models/<name>/ and the registered models "
        "<name>-value, <name>-churn; default: the data file's name (cdnow for the bundled data)",
    )
    data: DataConfig = DataConfig()
    calibration_end: dt.date | None = Field(None, description="default: midpoint of the data's date span")
    observation_end: dt.date | None = Field(None, description="default: the last transaction date")
    time_unit: Literal["days", "weeks"] = "weeks"
    period: Literal["week", "month", "quarter", "year"] = Field(
        "month",
        description="the period of the discrete-time models: BG/BB's one purchase opportunity per customer per period, "
        "and the sBG's billing period in the contractual setting",
    )
    setting: Literal["noncontractual", "contractual"] = Field(
        "noncontractual",
        description="noncontractual: a transaction log (BTYD models); contractual: subscriptions with a start and "
        "an end (the shifted-beta-geometric model)",
    )
    subscriptions: SubscriptionsConfig = SubscriptionsConfig()
    horizon_days: int = Field(90, gt=0, description="horizon of expected_purchases")
    model: ModelConfig = ModelConfig()
    clv: ClvConfig = ClvConfig()
    quadrants: QuadrantConfig = QuadrantConfig()
    intervals: IntervalConfig = IntervalConfig()
    churn: ChurnConfig = ChurnConfig()
    analyses: AnalysesConfig = AnalysesConfig()
    decisions: DecisionsConfig = DecisionsConfig()
    backtest: BacktestConfig = BacktestConfig()
    registry: RegistryConfig = RegistryConfig()
    quality: QualityConfig = QualityConfig()
    out: Path | None = Field(None, description="predictions file; default exports/<name>/predictions.csv")
    models_dir: Path = Field(Path("models"), description="fitted models go to <models_dir>/<name>/")
    tracking_uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, raw):
        # no name: the data file's name, so every dataset has its own exports/, models/ and registered models
        if isinstance(raw, dict) and raw.get("name") is None:
            data = raw.get("data")
            source = data.get("source") if isinstance(data, dict) else getattr(data, "source", None)
            raw = {**raw, "name": experiment_name(source or DataConfig().source)}
        return raw

    @model_validator(mode="after")
    def _registered_names(self) -> ExperimentConfig:
        # unset registered names follow the experiment, so promoting one shop's model never moves another's
        if self.registry.value_model is None:
            self.registry.value_model = f"{self.name}-value"
        if self.registry.churn_model is None:
            self.registry.churn_model = f"{self.name}-churn"
        return self

    @model_validator(mode="after")
    def _dates_in_order(self) -> ExperimentConfig:
        if self.calibration_end and self.observation_end and self.calibration_end >= self.observation_end:
            raise ValueError(
                f"calibration_end {self.calibration_end} must be before observation_end {self.observation_end}"
            )
        return self

    @model_validator(mode="after")
    def _discrete_time_settings(self) -> ExperimentConfig:
        m = self.model
        refused = {"intervals.enabled": self.intervals.enabled, "model.covariates": m.covariates.any}
        refused[f"model.value_model {m.value_model}"] = m.value_model != "btyd"
        if m.data_kind == "discrete" and any(refused.values()):
            raise ValueError(f"BG/BB does not support {', '.join(k for k, on in refused.items() if on)} yet")
        return self

    @property
    def purchase_unit(self) -> ModelUnit:
        """The purchase model's time unit: time_unit, or the period of a discrete-time model (BG/BB)."""
        return self.period if self.model.data_kind == "discrete" else self.time_unit

    @model_validator(mode="after")
    def _covariates_have_a_table(self) -> ExperimentConfig:
        if self.model.covariates.any and self.data.customers is None:
            raise ValueError(
                "model.covariates are columns of the customer table: set data.customers (--customers) as well"
            )
        return self

    @property
    def output_path(self) -> Path:
        return self.out if self.out is not None else Path("exports") / self.name / "predictions.csv"


def load_config(path: Path | None = None, overrides: dict | None = None) -> ExperimentConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply dotted-key overrides.

    ``overrides`` maps keys such as ``"data.source"`` or ``"horizon_days"`` to values; ``None``
    values are skipped, so unset CLI flags leave the file's values alone.
    """
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CrmvalueError(f"{path}: config file not found")
        text = path.read_text()
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            if mark is None:  # not tied to a place in the file
                raise CrmvalueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
            if context and context_mark is not None and context_mark.line != mark.line:
                problem += f" ({context} that starts on line {context_mark.line + 1})"
            lines = text.splitlines()
            line = lines[mark.line].strip() if mark.line < len(lines) else ""
            shown = f"; line {mark.line + 1} reads {line!r}" if line else ""
            raise CrmvalueError(
                f"{path}: not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}{shown}"
            ) from None
        if not isinstance(raw, dict):
            raise CrmvalueError(f"{path}: expected a mapping of settings at the top level")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        # every bad setting at once, on one line: fix the file in one go, not one run per key
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "config"
            message = error["msg"].removeprefix("Value error, ")
            value = error.get("input")
            if (
                error["loc"]
                and error["type"] not in ("extra_forbidden", "value_error", "assertion_error")
                and isinstance(value, (str, int, float, bool))
                and repr(value) not in message
            ):
                message += f" (got {value!r})"  # pydantic's own messages do not say what they read
            problems.append(f"{where}: {message}")
        source = f"{path}: " if path else ""
        if len(problems) == 1:
            raise CrmvalueError(f"{source}{problems[0]}") from None
        raise CrmvalueError(f"{source}{len(problems)} bad settings: " + "; ".join(problems)) from None
