"""``crmvalue train``: run an experiment and print its summary."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from crmvalue.cli.app import TimeUnitChoice, app

log = logging.getLogger("crmvalue")


def holdout_revenue_lines(m: dict[str, float]) -> list[str]:
    """The holdout revenue metrics of a live boosted value model beside BTYD's and the naive rate's."""
    from crmvalue.value_choice import HOLDOUT_WINDOW_METRIC, holdout_revenue_metric

    if holdout_revenue_metric("gbm", "rmse") not in m:
        return []
    names = {"rmse": "RMSE", "gini": "Gini", "decile_mape": "decile MAPE", "total_ratio": "total ratio"}
    days = int(m[HOLDOUT_WINDOW_METRIC])
    lines = [f"holdout revenue first {days} days of the holdout, every model fitted to the calibration end"]
    for model, label in (("gbm", "gbm"), ("btyd", "BTYD"), ("naive_rate", "naive rate")):
        figures = [
            f"{names[n]} {m[holdout_revenue_metric(model, n)]:.3f}"
            for n in names
            if holdout_revenue_metric(model, n) in m
        ]
        if figures:
            lines.append(f"  {label:<14}{', '.join(figures)}")
    return lines


def _columns(text: str | None) -> list[str] | None:
    """``"a, b"`` as ``["a", "b"]``; None stays None (the config's value is kept)."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


@app.command()
def train(
    config: Path | None = typer.Option(
        None, "--config", help="experiment YAML (default: experiments/cdnow.yaml if present)"
    ),
    name: str | None = typer.Option(
        None,
        "--name",
        help="experiment name: exports/<name>/, models/<name>/, registered <name>-value and <name>-churn "
        "(default: the config's name, else the data file's name)",
    ),
    data: str | None = typer.Option(
        None, "--data", help="transactions: a .csv/.parquet path, or 'cdnow' / 'cdnow_sample'"
    ),
    customer_col: str | None = typer.Option(None, "--customer-col", help="customer id column"),
    date_col: str | None = typer.Option(None, "--date-col", help="timestamp column"),
    amount_col: str | None = typer.Option(None, "--amount-col", help="amount (revenue) column"),
    quantity_col: str | None = typer.Option(None, "--quantity-col", help="optional quantity column (a churn feature)"),
    date_format: str | None = typer.Option(None, "--date-format", help="strftime format of the timestamps"),
    engine: str | None = typer.Option(
        None, "--engine", help="auto, pandas or duckdb: who reads and nets the transactions (default auto)"
    ),
    price_col: str | None = typer.Option(
        None, "--price-col", help="unit price column of invoice lines: amount = quantity x price (with --quantity-col)"
    ),
    dayfirst: bool | None = typer.Option(
        None, "--dayfirst/--monthfirst", help="read dates that fit both orders (03/02/2023) day first or month first"
    ),
    sep: str | None = typer.Option(
        None, "--sep", help="CSV delimiter, e.g. ';' or '\\t' (default ',', a tab for .tsv)"
    ),
    decimal: str | None = typer.Option(None, "--decimal", help="decimal mark of the numbers: '.' (default) or ','"),
    thousands: str | None = typer.Option(
        None, "--thousands", help="thousands separator to remove from numbers, e.g. '.'"
    ),
    encoding: str | None = typer.Option(
        None,
        "--encoding",
        help="text encoding, e.g. latin-1, cp1252, utf-16 (default UTF-8; a byte-order mark is detected)",
    ),
    drop_missing_ids: bool = typer.Option(
        False,
        "--drop-missing-ids",
        help="drop rows without a customer id (guest orders), with a warning that counts them",
    ),
    allow_future_dates: bool = typer.Option(
        False, "--allow-future-dates", help="keep rows dated after today or long after the rest of the data"
    ),
    calibration_end: str | None = typer.Option(None, "--calibration-end", help="last day of the calibration period"),
    observation_end: str | None = typer.Option(None, "--observation-end", help="last day of observation"),
    time_unit: TimeUnitChoice | None = typer.Option(None, "--time-unit", help="time unit of recency and T"),
    horizon_days: int | None = typer.Option(None, "--horizon-days", help="horizon of expected_purchases, in days"),
    model: str | None = typer.Option(
        None,
        "--model",
        help="a registered purchase model (bgnbd, mbgnbd, paretonbd, ...) or auto; an unknown name lists them",
    ),
    value_model: str | None = typer.Option(
        None,
        "--value-model",
        help="btyd, gbm or auto: the model behind expected_revenue and the potential value (model.value_model; "
        "auto: gbm when a backtest up to the calibration end has it better on 2 of revenue RMSE, Gini, decile MAPE)",
    ),
    covariates: str | None = typer.Option(
        None,
        "--covariates",
        help="COL[,COL...]: customer-table (--customers) columns as covariates of both the purchase and the dropout "
        "process (model.covariates sets them per process)",
    ),
    spend_covariates: str | None = typer.Option(
        None,
        "--spend-covariates",
        help="COL[,COL...]: customer-table (--customers) columns that shift Gamma-Gamma's spend level "
        "(model.covariates.spend)",
    ),
    period: str | None = typer.Option(
        None,
        "--period",
        help="week, month (default), quarter or year: BG/BB's purchase opportunity, the sBG's billing period",
    ),
    setting: str | None = typer.Option(
        None,
        "--setting",
        help="noncontractual (default: a transaction log) or contractual (subscriptions: --start-col, --end-col)",
    ),
    start_col: str | None = typer.Option(None, "--start-col", help="contractual: subscription start date column"),
    end_col: str | None = typer.Option(
        None, "--end-col", help="contractual: subscription end date column (empty while active)"
    ),
    fee_col: str | None = typer.Option(None, "--fee-col", help="contractual: optional fee per period column"),
    penalizer: float | None = typer.Option(None, "--penalizer", help="L2 penalty for the purchase model"),
    gamma_gamma_penalizer: float | None = typer.Option(
        None, "--gamma-gamma-penalizer", help="L2 penalty for the Gamma-Gamma spend model (model.gamma_gamma_penalizer)"
    ),
    intervals: bool = typer.Option(
        False, "--intervals", help="add bootstrap 90% intervals for expected_purchases and clv"
    ),
    churn: bool | None = typer.Option(
        None,
        "--churn/--no-churn",
        help="require (--churn) or skip (--no-churn) the LightGBM churn model (default: auto, fitted when the data are long enough)",
    ),
    customers: Path | None = typer.Option(
        None, "--customers", help="customer attributes table (.csv/.parquet) for the churn model"
    ),
    customers_id_col: str | None = typer.Option(
        None, "--customers-id-col", help="id column of --customers (default customer_id)"
    ),
    interactions: Path | None = typer.Option(
        None, "--interactions", help="interactions table (customer id, timestamp, channel) for the CRM value score"
    ),
    out: Path | None = typer.Option(None, "--out", help="predictions file (.csv or .parquet)"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Fit, evaluate and score; log an MLflow run; write per-customer predictions for the CRM.

    With neither --config nor --data, runs experiments/cdnow.yaml. With --data alone, starts
    from the built-in defaults. The experiment is --name, else the config's name:, else the data
    file's name (a config without name: and --data take --data's).
    """
    from crmvalue.config import DEFAULT_CONFIG, load_config
    from crmvalue.pipeline import train as run_train
    from crmvalue.progress import Progress

    if config is None and data is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG  # the default experiment; your own --data starts from clean defaults
    cfg = load_config(
        config,
        {
            "name": name,
            "data.source": data,
            "data.customer_col": customer_col,
            "data.date_col": date_col,
            "data.amount_col": amount_col,
            "data.quantity_col": quantity_col,
            "data.date_format": date_format,
            "data.engine": engine,
            "data.price_col": price_col,
            "data.dayfirst": dayfirst,
            "data.sep": sep,
            "data.decimal": decimal,
            "data.thousands": thousands,
            "data.encoding": encoding,
            "data.drop_missing_ids": True if drop_missing_ids else None,
            "data.allow_future_dates": True if allow_future_dates else None,
            "calibration_end": calibration_end,
            "observation_end": observation_end,
            "time_unit": time_unit.value if time_unit else None,
            "horizon_days": horizon_days,
            "model.purchase_model": model,
            "model.value_model": value_model,
            "model.penalizer": penalizer,
            "model.covariates.purchase": _columns(covariates),
            "model.covariates.dropout": _columns(covariates),
            "model.covariates.spend": _columns(spend_covariates),
            "period": period,
            "setting": setting,
            "subscriptions.start_col": start_col,
            "subscriptions.end_col": end_col,
            "subscriptions.fee_col": fee_col,
            "model.gamma_gamma_penalizer": gamma_gamma_penalizer,
            "intervals.enabled": True if intervals else None,
            "churn.enabled": churn,
            "data.customers": str(customers) if customers else None,
            "data.customers_id_col": customers_id_col,
            "analyses.interactions": str(interactions) if interactions else None,
            "out": str(out) if out else None,
            "tracking_uri": tracking_uri,
        },
    )
    if cfg.setting == "contractual":  # subscriptions: the sBG (crmvalue.contractual), not the BTYD pipeline
        from crmvalue import contractual

        done = contractual.train(cfg, progress=Progress(enabled=not quiet))
        typer.echo("\n".join(done.summary_lines()))
        return
    result = run_train(cfg, progress=Progress(enabled=not quiet))
    m = result.metrics
    q = result.quadrants["customers"]
    lines = [
        f"run id          {result.run_id}  (experiment '{cfg.name}')",
        f"customers       {len(result.predictions):,}",
        f"purchase model  {result.evaluation.reason}",
        f"holdout         {result.calibration_end.date()} -> {result.observation_end.date()}: "
        + (
            f"skipped ({result.evaluation.skipped})"
            if result.evaluation.skipped is not None
            else f"MAE {m['holdout.mae']:.3f} (naive rate {m['baseline.naive_rate.holdout.mae']:.3f}), "
            f"RMSE {m['holdout.rmse']:.3f}, purchases predicted {m['holdout.predicted_total']:,.0f} "
            f"vs actual {m['holdout.actual_total']:,.0f}"
        ),
        "quadrants       " + ", ".join(f"{k} {v:,}" for k, v in q.items()),
    ]
    tests = {
        label: f"final.{model}.lr_test."
        for model, label in ((result.value_model.purchase.name, "purchase model"), ("gamma_gamma", "Gamma-Gamma"))
        if f"final.{model}.lr_test.p_value" in m  # a fit with covariates, tested against the same fit without them
    }
    if tests:
        lines.insert(
            3,
            f"covariates      {result.value_model.covariates}: likelihood-ratio test against no covariates "
            + "; ".join(
                f"{label} chi2 {m[lr + 'statistic']:.1f} on {m[lr + 'df']:.0f} df, p = {m[lr + 'p_value']:.3g}"
                for label, lr in tests.items()
            ),
        )
    if result.value_choice is not None and cfg.model.value_model != "btyd":
        lines.insert(3, f"value model     {result.value_choice.live}: {result.value_choice.reason}")
        lines[4:4] = holdout_revenue_lines(m)
    if m.get("quality.value_red_flag"):
        from crmvalue.quality import value_gate_text

        lines.append(
            "RED FLAG        "
            + value_gate_text(m, m["holdout.predicted_total"], m["holdout.actual_total"], cfg.quality.max_total_error)
        )
    if result.churn is not None and result.churn.skipped is not None:
        lines.append(f"churn           skipped: {result.churn.skipped}")
    elif result.churn is not None:
        # a churn stage that ran has its scores and gate
        assert result.churn.scores is not None and result.churn.gate is not None
        risk = result.churn.scores["churn_risk"].value_counts()
        lines.append(
            f"churn           out-of-time ROC AUC {m['churn.roc_auc']:.3f}, Brier {m['churn.brier']:.4f} "
            f"(BG/NBD no-purchase {m.get('baseline.bgnbd_no_purchase.roc_auc', float('nan')):.3f}, "
            f"recency {m['baseline.recency.roc_auc']:.3f}); risk "
            + ", ".join(f"{k} {int(risk.get(k, 0)):,}" for k in ("high", "medium", "low"))
        )
        lines.append(f"churn scorer    {result.churn.gate.reason}")
    if result.registered:
        which = (
            f"--name {cfg.name}"
            if cfg.registry.value_model == f"{cfg.name}-value"
            else f"--model {cfg.registry.value_model}"
        )
        lines.append(
            "registered      "
            + ", ".join(f"{model} version {v}" for model, v in result.registered.items())
            + f"  (make it the champion: crmvalue promote {which} "
            f"--version {next(iter(result.registered.values()))})"
        )
    from crmvalue.store import display_uri

    store = f" --tracking-uri {display_uri(cfg.tracking_uri)}" if cfg.tracking_uri else ""
    lines += [
        f"predictions     {result.output_path}",
        "next            crmvalue report --run "
        + result.run_id
        + store
        + " --out report.html   (the run as one HTML page)",
        "                make mlflow-ui   (every run, metric and chart at http://127.0.0.1:5000)",
        f"                crmvalue export --run {result.run_id}{store}   (the scores to the CRM database)",
    ]
    typer.echo("\n".join(lines))
