"""``crmvalue predict``: score new data with a registered model."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from crmvalue.cli.app import app
from crmvalue.errors import CrmvalueError

log = logging.getLogger("crmvalue")


@app.command()
def predict(
    data: str = typer.Option(..., "--data", help="new transactions (.csv/.parquet, or cdnow / cdnow_sample)"),
    observation_end: str = typer.Option(..., "--observation-end", help="score as of this day (YYYY-MM-DD)"),
    out: Path = typer.Option(..., "--out", help="scores file (.csv or .parquet), in the export schema"),
    name: str | None = typer.Option(
        None, "--name", "--experiment", help="experiment whose champion scores: models:/<name>-value@champion"
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="models:/<name>@<alias>, models:/<name>/<version> or runs:/<id>/value_model (instead of --name)",
    ),
    customer_col: str | None = typer.Option(
        None, "--customer-col", help="customer id column (default: as in training)"
    ),
    date_col: str | None = typer.Option(None, "--date-col", help="timestamp column (default: as in training)"),
    amount_col: str | None = typer.Option(
        None, "--amount-col", help="amount (revenue) column (default: as in training)"
    ),
    quantity_col: str | None = typer.Option(
        None, "--quantity-col", help="quantity column, if the churn model uses quantities (default: as in training)"
    ),
    price_col: str | None = typer.Option(
        None,
        "--price-col",
        help="unit price column of invoice lines: amount = quantity x price (default: as in training)",
    ),
    date_format: str | None = typer.Option(
        None, "--date-format", help="strftime format of the timestamps (default: as in training)"
    ),
    dayfirst: bool | None = typer.Option(
        None,
        "--dayfirst/--monthfirst",
        help="read dates that fit both orders (03/02/2023) day first or month first (default: as in training)",
    ),
    sep: str | None = typer.Option(None, "--sep", help="CSV delimiter, e.g. ';' or '\\t' (default: as in training)"),
    decimal: str | None = typer.Option(
        None, "--decimal", help="decimal mark of the numbers: '.' or ',' (default: as in training)"
    ),
    thousands: str | None = typer.Option(
        None, "--thousands", help="thousands separator to remove from numbers (default: as in training)"
    ),
    encoding: str | None = typer.Option(
        None, "--encoding", help="text encoding, e.g. latin-1, cp1252, utf-16 (default: as in training)"
    ),
    drop_missing_ids: bool = typer.Option(
        False,
        "--drop-missing-ids",
        help="drop rows without a customer id (guest orders), with a warning that counts them",
    ),
    allow_future_dates: bool = typer.Option(
        False, "--allow-future-dates", help="keep rows dated after today or long after the rest of the data"
    ),
    customers: Path | None = typer.Option(
        None,
        "--customers",
        help="customer table: the churn model's attributes and the value model's covariates, if it was trained "
        "with them; its customers without a purchase are scored by the prospective expectation (history: none)",
    ),
    interactions: Path | None = typer.Option(None, "--interactions", help="interactions table for the CRM value score"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI"),
    setting: str = typer.Option(
        "noncontractual",
        "--setting",
        help="contractual: score a subscriptions table with the sBG of a `train --setting contractual` run (--run)",
    ),
    run: str = typer.Option(
        "latest",
        "--run",
        help="contractual: the train run whose sBG scores (an id, latest, or models:/<name>-sbg/<version>|@<alias>)",
    ),
    start_col: str | None = typer.Option(None, "--start-col", help="contractual: start column (default: as trained)"),
    end_col: str | None = typer.Option(None, "--end-col", help="contractual: end column (default: as trained)"),
    fee_col: str | None = typer.Option(None, "--fee-col", help="contractual: fee column (default: as trained)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Score new transactions with a registered model (no refit); log a predict run; write the export schema.

    The columns and CSV dialect are the training run's; the column and dialect flags map a file
    with other names or another dialect onto them.
    """
    from crmvalue.predict import predict as run_predict
    from crmvalue.progress import Progress

    if setting == "contractual":
        from crmvalue import contractual

        done = contractual.predict(
            run,
            data,
            out,
            observation_end,
            experiment=name,
            tracking_uri=tracking_uri,
            progress=Progress(enabled=not quiet),
            customer_col=customer_col,
            start_col=start_col,
            end_col=end_col,
            fee_col=fee_col,
            date_format=date_format,
            dayfirst=dayfirst,
            sep=sep,
            decimal=decimal,
            thousands=thousands,
            encoding=encoding,
        )
        typer.echo(
            f"run id          {done.run_id}  (contractual predict, sBG of run {done.source_run_id})\n"
            f"subscribers     {len(done.predictions):,} active as of {done.observation_end.date()}\n"
            f"scores          {done.output_path}"
        )
        return
    if setting != "noncontractual":
        raise CrmvalueError(f"--setting {setting!r}: noncontractual or contractual")
    if model is not None and name is not None:
        raise CrmvalueError("give --name or --model, not both")
    if model is None:
        from crmvalue.registry import CHAMPION, no_model_error, value_model_name

        if name is None:
            from crmvalue.store import open_store
            from crmvalue.tracking import resolve_tracking_uri

            with open_store(resolve_tracking_uri(tracking_uri)) as client:
                raise no_model_error(client, "predict")
        model = f"models:/{value_model_name(name)}@{CHAMPION}"
    result = run_predict(
        model,
        data,
        observation_end,
        out,
        customers,
        interactions,
        tracking_uri,
        Progress(enabled=not quiet),
        quantity_col,
        customer_col=customer_col,
        date_col=date_col,
        amount_col=amount_col,
        price_col=price_col,
        date_format=date_format,
        dayfirst=dayfirst,
        sep=sep,
        decimal=decimal,
        thousands=thousands,
        encoding=encoding,
        drop_missing_ids=True if drop_missing_ids else None,
        allow_future_dates=True if allow_future_dates else None,
    )
    version = f" version {result.model.version}" if result.model.version is not None else ""
    p = result.predictions
    q = p["quadrant"].value_counts().sort_index()
    lines = [
        f"run id          {result.run_id}  (predict, model {result.model.name or result.model.uri}{version}, "
        f"trained in run {result.model.run_id})",
        f"customers       {len(p):,} as of {result.observation_end.date()}",
    ]
    if "history" in p:  # customers of the customer table without a purchase
        new = int((p["history"] == "none").sum())
        lines.append(
            f"new customers   {new:,} without a purchase, scored by the prospective expectation (history: none)"
        )
    lines += [
        "quadrants       " + ", ".join(f"{k} {v:,}" for k, v in q.items()),
    ]
    if "retention_priority" in p:  # the run has churn scores, so a call list
        first = p.loc[p["retention_priority"].idxmin()]
        lines.append(
            f"call first      customer {first['customer_id']}: value at risk {first['value_at_risk']:,.2f} "
            f"of {p['value_at_risk'].sum():,.2f} in all, next action {first['next_action']!r} (retention_priority 1)"
        )
    lines.append(f"scores          {result.output_path}")
    typer.echo("\n".join(lines))
