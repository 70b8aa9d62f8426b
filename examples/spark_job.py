"""Score every customer of a Parquet or Delta transaction table on Spark; see docs/cluster.md.

    spark-submit examples/spark_job.py --input s3://bucket/transactions --format delta \\
        --observation-end 2024-12-31 --output-table crm.customer_value \\
        --tracking-uri databricks

1. read the transactions; 2. build the RFM summary in Spark; 3. collect the compressed
(frequency, recency, T) and (frequency, monetary_value) counts and fit BG/NBD + Gamma-Gamma
on the driver; 4. log the value model to MLflow; 5. score every customer with the logged
model through ``mlflow.pyfunc.spark_udf``; 6. write the scores as a table.
"""

from __future__ import annotations

import argparse

import mlflow
from pyspark.sql import SparkSession

from crmvalue import spark as crm_spark
from crmvalue.features import SUMMARY_COLUMNS
from crmvalue.tracking import log_value_model, resolve_tracking_uri, use_experiment


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="path or URI of the transactions (a Parquet or Delta directory)")
    parser.add_argument("--format", choices=["parquet", "delta"], default="parquet")
    parser.add_argument("--customer-col", default="customer_id")
    parser.add_argument("--date-col", default="date", help="a date, timestamp or timestamp_ntz column")
    parser.add_argument("--amount-col", default="amount")
    parser.add_argument("--observation-end", required=True, help="last day of the history, YYYY-MM-DD (inclusive)")
    parser.add_argument("--time-unit", choices=["days", "weeks"], default="weeks")
    parser.add_argument("--purchase-model", choices=["bgnbd", "mbgnbd", "paretonbd"], default="bgnbd")
    parser.add_argument("--horizon-days", type=int, default=90)
    parser.add_argument("--output-table", required=True, help="table to (over)write with one row of scores per customer")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    parser.add_argument("--experiment", default="crmvalue-spark", help="on Databricks a workspace path: /Users/<you>/crmvalue-spark")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    spark = SparkSession.builder.appName("crmvalue").getOrCreate()

    transactions = spark.read.format(args.format).load(args.input)
    summary = crm_spark.rfm_summary(
        transactions,
        args.observation_end,
        args.time_unit,
        customer_col=args.customer_col,
        date_col=args.date_col,
        amount_col=args.amount_col,
    ).persist()  # read three times: the fit counts, the input example and the scoring

    counts = crm_spark.collect_fit_counts(summary)  # small: one row per distinct pattern
    model = crm_spark.fit_value_model(
        counts, args.time_unit, purchase_model=args.purchase_model, horizon_days=args.horizon_days
    )

    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    use_experiment(args.experiment, tracking_uri)
    with mlflow.start_run():
        mlflow.log_params(
            {
                "input": args.input,
                "observation_end": args.observation_end,
                "time_unit": args.time_unit,
                "purchase_model": args.purchase_model,
                "horizon_days": args.horizon_days,
                "customers": int(counts.purchases["weights"].sum()),
                "patterns": len(counts.purchases),
            }
        )
        mlflow.log_params({f"{model.purchase.name}.{k}": v for k, v in model.purchase.as_dict().items()})
        mlflow.log_params({f"gamma_gamma.{k}": v for k, v in model.gamma_gamma.as_dict().items()})
        model_uri = log_value_model(model, summary.select(*SUMMARY_COLUMNS).limit(100).toPandas())

    scores = crm_spark.score_customers(summary, model_uri)
    scores.write.mode("overwrite").saveAsTable(args.output_table)
    print(f"model {model_uri}; scores written to table {args.output_table}")


if __name__ == "__main__":
    main()
