"""The RFM summary, the fit counts and the scoring of :mod:`crmvalue.features` on Spark.

Beyond one machine the transactions stay in Spark: the summary, the calibration/holdout
split and the compressed fit tables are computed there, only the small count tables are
collected to fit the value model on the driver, and customers are scored with the logged
MLflow pyfunc through ``mlflow.pyfunc.spark_udf``. PySpark is imported inside the functions,
so ``import crmvalue.spark`` works without it.

The definitions are those of :func:`crmvalue.features.rfm_summary`: a purchase period is one
customer-day; a customer-day's amounts are netted; a day that holds a return and nets to
<= 0 is not a purchase, a zero-amount day without a return is; transactions after the
observation end (by calendar day) are ignored; time is in days or weeks = days / 7.

Spark-specific conventions:

- Transactions: a customer column of string or integer type (integers become text, ids are
  stripped of surrounding whitespace, as in :mod:`crmvalue.data`), a date column of type
  ``date``, ``timestamp_ntz`` (its calendar day) or ``timestamp`` (its day in UTC, whatever
  the session time zone: the pandas loader converts zoned timestamps to UTC too), and a
  numeric amount column. A string date column is refused: parse it with ``F.to_timestamp``.
- Output frames have a ``customer_id`` string column where the pandas functions have the
  index; rows are in no particular order.
- Amounts are summed in double precision in whatever order Spark sums them, so a value can
  differ from the pandas one in the last bits, and a day whose amounts cancel only up to
  rounding (0.1 + 0.2 - 0.3) may count as a purchase on one side and not on the other.
- An empty calibration period gives an empty frame here (the pandas split raises): checking
  would cost a Spark job; the fit then says there are no customers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import pandas as pd

from crmvalue.errors import CrmvalueError
from crmvalue.features import DAYS_PER_UNIT, SUMMARY_COLUMNS, TimeUnit
from crmvalue.models.value import PREDICTION_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_MICROS_PER_DAY = 86_400_000_000


def rfm_summary(
    transactions: DataFrame,
    observation_end,
    time_unit: TimeUnit = "days",
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str = "amount",
    validate: bool = True,
) -> DataFrame:
    """Per-customer ``customer_id, frequency, recency, T, monetary_value`` at ``observation_end``.

    The Spark twin of :func:`crmvalue.features.rfm_summary` (same definitions, same values).
    ``validate`` runs one Spark job over the transactions that refuses missing ids, dates or
    amounts and non-finite amounts, as the pandas loader does; without it they are not checked.
    """
    _check_time_unit(time_unit)
    tx = _canonical(transactions, customer_col, date_col, amount_col, validate)
    end_day = _epoch_day(observation_end)
    return _summary(tx.where(tx["day"] <= end_day), end_day, time_unit)


def calibration_holdout_summary(
    transactions: DataFrame,
    calibration_end,
    observation_end,
    time_unit: TimeUnit = "days",
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str = "amount",
    validate: bool = True,
) -> DataFrame:
    """The Spark twin of :func:`crmvalue.features.calibration_holdout_summary`.

    Columns: ``customer_id``, ``frequency_cal, recency_cal, T_cal, monetary_value_cal``,
    ``frequency_holdout`` (purchase days in (calibration end, observation end]),
    ``revenue_holdout`` (net amount of that window, returns included) and
    ``duration_holdout``. Only customers with a purchase on or before the calibration end.
    """
    from pyspark.sql import functions as F

    _check_time_unit(time_unit)
    cal_day, obs_day = _epoch_day(calibration_end), _epoch_day(observation_end)
    if cal_day >= obs_day:
        raise CrmvalueError(f"calibration end {_day_text(cal_day)} must be before observation end {_day_text(obs_day)}")
    tx = _canonical(transactions, customer_col, date_col, amount_col, validate)
    cal = _summary(tx.where(tx["day"] <= cal_day), cal_day, time_unit)
    cal = cal.select("customer_id", *[F.col(c).alias(f"{c}_cal") for c in SUMMARY_COLUMNS])

    holdout_rows = tx.where((tx["day"] > cal_day) & (tx["day"] <= obs_day))
    purchases = (
        _purchase_days(holdout_rows)
        .groupBy("customer_id")
        .agg(F.count(F.lit(1)).cast("double").alias("frequency_holdout"))
    )
    revenue = holdout_rows.groupBy("customer_id").agg(F.sum("amount").alias("revenue_holdout"))
    return (
        cal.join(purchases, "customer_id", "left")
        .join(revenue, "customer_id", "left")
        .fillna(0.0, subset=["frequency_holdout", "revenue_holdout"])
        .withColumn("duration_holdout", F.lit((obs_day - cal_day) / DAYS_PER_UNIT[time_unit]))
    )


def compress_rfm(summary: DataFrame) -> DataFrame:
    """Unique ``(frequency, recency, T)`` rows of a summary with their customer count ``weights``.

    The Spark twin of :func:`crmvalue.features.compress_rfm`; its size is bounded by the
    number of distinct patterns (days squared at most), not by the number of customers.
    """
    from pyspark.sql import functions as F

    _require_numeric(summary, ["frequency", "recency", "T"], "summary")
    return summary.groupBy(*[F.col(c).cast("double").alias(c) for c in ("frequency", "recency", "T")]).agg(
        F.count(F.lit(1)).alias("weights")
    )


def compress_spend(summary: DataFrame) -> DataFrame:
    """Unique ``(frequency, monetary_value)`` rows of the repeat buyers with positive spend, with ``weights``.

    What Gamma-Gamma is fitted on (:class:`crmvalue.models.GammaGammaModel` keeps the same
    customers). ``monetary_value`` is a mean of amounts, so it rarely repeats: expect about one
    row per repeat buyer, unlike :func:`compress_rfm`.
    """
    from pyspark.sql import functions as F

    _require_numeric(summary, ["frequency", "monetary_value"], "summary")
    frequency, spend = F.col("frequency").cast("double"), F.col("monetary_value").cast("double")
    return (
        summary.where((frequency > 0) & (spend > 0))
        .groupBy(frequency.alias("frequency"), spend.alias("monetary_value"))
        .agg(F.count(F.lit(1)).alias("weights"))
    )


@dataclass(frozen=True)
class FitCounts:
    """The compressed tables collected to the driver: all that the value model's fit needs."""

    purchases: pd.DataFrame  # frequency, recency, T, weights; sorted
    spend: pd.DataFrame  # frequency, monetary_value, weights of repeat buyers; sorted


def collect_fit_counts(summary: DataFrame) -> FitCounts:
    """Collect :func:`compress_rfm` and :func:`compress_spend` of a Spark summary as pandas frames."""
    purchases = _collect_sorted(compress_rfm(summary), ["frequency", "recency", "T"])
    spend = _collect_sorted(compress_spend(summary), ["frequency", "monetary_value"])
    return FitCounts(purchases, spend)


def fit_value_model(
    counts: FitCounts | DataFrame,
    time_unit: TimeUnit,
    *,
    purchase_model: str = "bgnbd",
    penalizer: float = 0.0,
    gamma_gamma_penalizer: float = 0.0,
    horizon_days: int = 90,
    clv_months: int = 12,
    discount_rate: float = 0.01,
):
    """Fit the purchase model and Gamma-Gamma on the driver; returns a :class:`~crmvalue.models.ValueModel`.

    ``counts`` is a :class:`FitCounts` or a Spark summary (collected with
    :func:`collect_fit_counts`). The fits are the pipeline's final fit
    (``registry.model_class(purchase_model)`` and ``GammaGammaModel`` with the penalizers), on
    exactly the rows the pandas path would use, so the parameters are the same. ``time_unit``
    must be the summary's. The defaults of the horizons are the experiment config's.

    The estimators take the counts as weights: the driver holds one row per distinct pattern,
    never one per customer.
    """
    from crmvalue.models import GammaGammaModel, ValueModel, registry

    _check_time_unit(time_unit)
    model_class = registry.model_class(purchase_model)
    if not isinstance(counts, FitCounts):
        counts = collect_fit_counts(counts)
    rows, spend = counts.purchases, counts.spend
    purchase = model_class(penalizer).fit(rows["frequency"], rows["recency"], rows["T"], weights=rows["weights"])
    gamma_gamma = GammaGammaModel(gamma_gamma_penalizer).fit(
        spend["frequency"], spend["monetary_value"], weights=spend["weights"]
    )
    return ValueModel(purchase.params_, gamma_gamma.params_, time_unit, horizon_days, clv_months, discount_rate)


def score_customers(customers: DataFrame, model_uri: str, *, env_manager: str = "local") -> DataFrame:
    """``customers`` with ``p_alive, expected_purchases, expected_avg_value, expected_revenue, clv`` from the logged value model.

    ``model_uri`` is the pyfunc logged by :func:`crmvalue.tracking.log_value_model` (e.g. the
    ``model_uri`` of a training run or ``models:/<name>@<alias>``); it is applied with
    ``mlflow.pyfunc.spark_udf`` to ``frequency, recency, T, monetary_value``, all other columns
    are kept. The UDF is the BTYD value model: for a run whose live value model was the boosted
    one (``model.value_model: gbm``), its ``expected_revenue`` is BTYD's, not the run's export.
    The executors must be able to import ``crmvalue``: install it on the cluster
    with ``env_manager="local"`` (the default), or let MLflow build the logged environment
    with ``"virtualenv"`` or ``"uv"``.
    """
    import mlflow.pyfunc
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StructField, StructType

    _require_numeric(customers, SUMMARY_COLUMNS, "customers")
    clash = [c for c in PREDICTION_COLUMNS if c in customers.columns]
    if clash:
        raise CrmvalueError(
            f"customers: already has the prediction column(s) {', '.join(map(repr, clash))}; drop them first"
        )
    result_type = StructType([StructField(c, DoubleType()) for c in PREDICTION_COLUMNS])
    predict = mlflow.pyfunc.spark_udf(
        customers.sparkSession, model_uri, result_type=result_type, env_manager=env_manager
    )
    # a struct hands the model a frame with the signature's column names, in order
    inputs = F.struct(*[F.col(c).cast("double").alias(c) for c in SUMMARY_COLUMNS])
    prediction = "__crmvalue_prediction"
    scored = customers.withColumn(prediction, predict(inputs))
    return scored.select(*customers.columns, *[F.col(prediction)[c].alias(c) for c in PREDICTION_COLUMNS])


# --- internals ---------------------------------------------------------------------------


def _check_time_unit(time_unit: str) -> None:
    if time_unit not in DAYS_PER_UNIT:
        raise CrmvalueError(f"unknown time unit '{time_unit}'; choose one of {', '.join(DAYS_PER_UNIT)}")


def _epoch_day(value) -> int:
    """The calendar day of ``value`` as days since 1970-01-01."""
    day = pd.Timestamp(value)
    if day.tzinfo is not None:
        day = day.tz_convert("UTC").tz_localize(None)
    return (day.normalize() - pd.Timestamp("1970-01-01")).days


def _day_text(day: int) -> str:
    return str((pd.Timestamp("1970-01-01") + pd.Timedelta(days=day)).date())


def _column_type(frame: DataFrame, name: str, what: str):
    names = frame.columns
    if name not in names:
        have = ", ".join(repr(c) for c in names)
        raise CrmvalueError(f"{what}: missing column {name!r}; the columns are {have}")
    if names.count(name) > 1:
        raise CrmvalueError(f"{what}: column {name!r} appears {names.count(name)} times; rename or drop the duplicates")
    return next(f.dataType for f in frame.schema.fields if f.name == name)


def _require_numeric(frame: DataFrame, columns: list[str], what: str) -> None:
    from pyspark.sql.types import NumericType

    for name in columns:
        kind = _column_type(frame, name, what)
        if not isinstance(kind, NumericType):
            raise CrmvalueError(f"{what}: column {name!r} is {kind.simpleString()}, expected a number")


def _canonical(frame: DataFrame, customer_col: str, date_col: str, amount_col: str, validate: bool) -> DataFrame:
    """``customer_id`` (string), ``day`` (days since 1970-01-01) and ``amount`` (double), type-checked."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, IntegralType, NumericType, StringType, TimestampNTZType, TimestampType

    what = "Spark transactions"
    id_type = _column_type(frame, customer_col, what)
    date_type = _column_type(frame, date_col, what)
    amount_type = _column_type(frame, amount_col, what)
    if not isinstance(id_type, (StringType, IntegralType)):
        raise CrmvalueError(
            f"{what}: column {customer_col!r} is {id_type.simpleString()}; customer ids must be strings or integers"
        )
    if isinstance(date_type, DateType):
        day = F.unix_date(F.col(date_col))
    elif isinstance(date_type, TimestampNTZType):
        day = F.unix_date(F.to_date(F.col(date_col)))
    elif isinstance(date_type, TimestampType):
        micros = F.unix_micros(F.col(date_col))  # the UTC day, independent of the session time zone
        day = (micros - F.pmod(micros, F.lit(_MICROS_PER_DAY))) / F.lit(_MICROS_PER_DAY)
    else:
        raise CrmvalueError(
            f"{what}: column {date_col!r} is {date_type.simpleString()}; expected date, timestamp or timestamp_ntz "
            f"(parse text with pyspark.sql.functions.to_timestamp(col, format))"
        )
    if not isinstance(amount_type, NumericType):
        raise CrmvalueError(f"{what}: column {amount_col!r} is {amount_type.simpleString()}, expected a number")
    tx = frame.select(
        F.regexp_replace(F.col(customer_col).cast("string"), r"^\s+|\s+$", "").alias("customer_id"),
        day.cast("long").alias("day"),
        F.col(amount_col).cast("double").alias("amount"),
    )
    if validate:
        _validate(tx, customer_col, date_col, amount_col, what)
    return tx


def _validate(tx: DataFrame, customer_col: str, date_col: str, amount_col: str, what: str) -> None:
    """One Spark job: count the rows the pandas loader would refuse, with an example customer."""
    from pyspark.sql import functions as F

    customer, day, amount = F.col("customer_id"), F.col("day"), F.col("amount")
    checks = {
        (customer_col, "missing or empty ids"): customer.isNull() | (customer == ""),
        (date_col, "missing timestamps"): day.isNull(),
        (amount_col, "missing or non-finite values"): amount.isNull()
        | F.isnan(amount)
        | (F.abs(amount) == float("inf")),
    }
    aggregates = []
    for i, bad in enumerate(checks.values()):
        aggregates += [F.count_if(bad).alias(f"n{i}"), F.first(F.when(bad, customer), ignorenulls=True).alias(f"id{i}")]
    found = tx.agg(*aggregates).first()
    assert found is not None  # a global aggregate always returns one row
    for i, (column, problem) in enumerate(checks):
        if found[f"n{i}"]:
            example = f" (e.g. customer {found[f'id{i}']!r})" if found[f"id{i}"] else ""
            raise CrmvalueError(
                f"{what}: column {column!r} has {found[f'n{i}']} {problem}{example}; fix or drop those rows"
            )


def _purchase_days(tx: DataFrame) -> DataFrame:
    """Net amount per customer-day, without the days that hold a return and net to <= 0."""
    from pyspark.sql import functions as F

    days = tx.groupBy("customer_id", "day").agg(F.sum("amount").alias("amount"), F.min("amount").alias("lowest"))
    return days.where(~((F.col("lowest") < 0) & (F.col("amount") <= 0))).drop("lowest")


def _summary(tx: DataFrame, end_day: int, time_unit: TimeUnit) -> DataFrame:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    unit = F.lit(DAYS_PER_UNIT[time_unit])
    days = _purchase_days(tx).withColumn("first_day", F.min("day").over(Window.partitionBy("customer_id")))
    # the repeat total sums the repeat days themselves, not total minus first day, as the pandas path
    per_customer = days.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("days"),
        F.min("day").alias("first"),
        F.max("day").alias("last"),
        F.sum(F.when(F.col("day") > F.col("first_day"), F.col("amount"))).alias("repeat_total"),
    )
    repeats = F.col("days") - 1
    return per_customer.select(
        "customer_id",
        repeats.cast("double").alias("frequency"),
        ((F.col("last") - F.col("first")).cast("double") / unit).alias("recency"),
        ((F.lit(end_day) - F.col("first")).cast("double") / unit).alias("T"),
        F.when(repeats > 0, F.col("repeat_total") / repeats.cast("double"))
        .otherwise(F.lit(0.0))
        .alias("monetary_value"),
    )


def _collect_sorted(frame: DataFrame, keys: list[str]) -> pd.DataFrame:
    rows = cast(pd.DataFrame, frame.toPandas())
    rows["weights"] = rows["weights"].astype("int64")
    return rows.sort_values(keys, kind="stable").reset_index(drop=True)
