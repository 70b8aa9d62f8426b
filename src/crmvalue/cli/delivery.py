"""``crmvalue simulate``, ``report``, ``export`` and ``promote``: data in, results out."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path

import typer

from crmvalue.cli.app import TimeUnitChoice, app
from crmvalue.errors import CrmvalueError

log = logging.getLogger("crmvalue")


@app.command()
def simulate(
    customers: int = typer.Option(..., "--customers", min=1, help="number of customers"),
    out: Path = typer.Option(..., "--out", help="transactions file to write (.csv or .parquet)"),
    model: str = typer.Option("bgnbd", "--model", help="bgnbd or paretonbd"),
    params: str | None = typer.Option(
        None,
        "--params",
        help="purchase parameters, rates per --time-unit, e.g. r=0.24,alpha=4.4,a=0.79,b=2.43 (paretonbd: r,alpha,s,beta); "
        "default: the published CDNOW fit",
    ),
    spend: str = typer.Option("p=6.25,q=3.74,v=15.44", "--spend", help="Gamma-Gamma spend parameters"),
    time_unit: TimeUnitChoice = typer.Option(TimeUnitChoice.weeks, "--time-unit", help="unit of the rates in --params"),
    start: str = typer.Option("1997-01-01", "--start", help="first day"),
    end: str = typer.Option("1998-06-30", "--end", help="last day"),
    acquisition_days: int = typer.Option(
        84, "--acquisition-days", min=1, help="first purchases fall in this many days"
    ),
    seed: int = typer.Option(0, "--seed", help="random seed"),
) -> None:
    """Draw a transaction log (customer_id, date, amount) from BG/NBD or Pareto/NBD with Gamma-Gamma spend."""
    from pydantic import ValidationError

    from crmvalue.config import SimulationConfig
    from crmvalue.io import atomic_write_table
    from crmvalue.simulate import simulate_from_config

    try:
        sim = SimulationConfig(
            model=model,
            params=_key_values(params, "--params") if params else None,
            spend=_key_values(spend, "--spend"),
            customers=customers,
            start=start,
            end=end,
            acquisition_days=acquisition_days,
            time_unit=time_unit.value,
            seed=seed,
        )
    except ValidationError as exc:  # a bad model name or date
        first = exc.errors()[0]
        where = f"--{str(first['loc'][0]).replace('_', '-')}: " if first["loc"] else ""
        raise CrmvalueError(where + first["msg"].removeprefix("Value error, ")) from None
    log = simulate_from_config(sim)
    atomic_write_table(log, out)
    typer.echo(f"wrote {len(log):,} transactions for {customers:,} customers to {out}")


@app.command()
def report(
    out: Path = typer.Option(..., "--out", help="HTML file to write"),
    run: str = typer.Option(
        "latest",
        "--run",
        help="run id, or 'latest': the most recent finished top-level `crmvalue train` run (child runs of --model auto skipped)",
    ),
    experiment: str | None = typer.Option(
        None, "--experiment", help="take 'latest' from this experiment (default: any experiment)"
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI"),
) -> None:
    """Write one self-contained HTML report of a `crmvalue train` run: value quadrants, CRM analyses, model metrics, charts."""
    from crmvalue.report import write_report

    run_id = write_report(out, run, experiment, tracking_uri)
    typer.echo(f"wrote the report of run {run_id} to {out}")


class BulkFormat(str, Enum):
    salesforce = "salesforce"
    hubspot = "hubspot"


@app.command()
def export(
    run: str | None = typer.Option(
        None, "--run", help="run id, or 'latest': the newest finished train or predict run (default latest)"
    ),
    plan: str | None = typer.Option(
        None,
        "--plan",
        help="deliver a plan of `crmvalue plan` instead of scores: its run id, or 'latest' (table retention_plan)",
    ),
    to: str | None = typer.Option(
        None,
        "--to",
        help="database URL (SQLAlchemy), e.g. postgresql+psycopg://user@host:5432/crm; "
        "default $CRMVALUE_EXPORT_URL, else sqlite:///crm.db",
    ),
    table: str | None = typer.Option(
        None,
        "--table",
        help="table of current scores (default customer_scores; with --plan, retention_plan); "
        "history goes to <table>_history",
    ),
    fmt: BulkFormat | None = typer.Option(
        None, "--format", help="write a bulk-upsert CSV for this CRM instead of a table"
    ),
    out: Path | None = typer.Option(None, "--out", help="file to write with --format"),
    mapping: Path | None = typer.Option(
        None, "--mapping", help="YAML: crmvalue column -> CRM field (first: customer_id -> external id)"
    ),
    experiment: str | None = typer.Option(None, "--experiment", help="take 'latest' from this experiment"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI"),
    setting: str = typer.Option(
        "noncontractual",
        "--setting",
        help="contractual: a run of `train/predict --setting contractual` to table subscriber_scores",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Deliver a run's per-customer scores, or a plan, to the CRM: a database table (atomic swap + history) or a bulk-upsert CSV."""
    from crmvalue import export as ex

    echo = None if quiet else ex.stderr_echo
    if plan is not None:
        if run is not None:
            raise CrmvalueError("give --run (scores) or --plan (a plan of crmvalue plan), not both")
        if fmt is not None or out is not None or mapping is not None:
            raise CrmvalueError("a plan goes to a database table (--to); --format, --out and --mapping are for scores")
        result = ex.export_plan(plan, to, table or ex.PLAN_TABLE, experiment, tracking_uri, echo=echo)
        _report_export(result, "plan run")
        return
    run = run or "latest"
    if setting == "contractual":
        from crmvalue.export.contractual import SUBSCRIBER_TABLE, export_subscribers

        if plan is not None or fmt is not None or out is not None or mapping is not None:
            raise CrmvalueError("--setting contractual exports subscriber scores to a database table (--to) only")
        result = export_subscribers(run, to, table or SUBSCRIBER_TABLE, experiment, tracking_uri, echo=echo)
        _report_export(result, "run")
        return
    if fmt is not None:
        if out is None:
            raise CrmvalueError("--format needs --out, the CSV file to write")
        if to is not None:
            raise CrmvalueError("--format writes a file; leave out --to (or export twice)")
        result = ex.export_file(run, fmt.value, out, mapping, experiment, tracking_uri)
        typer.echo(f"wrote {result.rows:,} rows of run {result.run_id} for {fmt.value} bulk upsert to {out}")
        return
    if out is not None or mapping is not None:
        raise CrmvalueError("--out and --mapping go with --format salesforce|hubspot")
    result = ex.export_run(run, to, table or ex.DEFAULT_TABLE, experiment, tracking_uri, echo=echo)
    _report_export(result, "run")


def _report_export(result, what: str) -> None:
    if result.changed:
        typer.echo(
            f"exported {result.rows:,} customers of {what} {result.run_id} to {result.table} at {result.target} "
            f"(history: {result.table}_history)"
        )
    else:
        typer.echo(f"{what} {result.run_id} is already the current {result.table} at {result.target}: nothing changed")


@app.command()
def promote(
    version: int = typer.Option(..., "--version", min=1, help="version of the registered value model"),
    name: str | None = typer.Option(
        None, "--name", "--experiment", help="experiment whose models to promote: <name>-value and <name>-churn"
    ),
    alias: str = typer.Option("champion", "--alias", help="alias to set"),
    model: str | None = typer.Option(None, "--model", help="registered value model name (default <name>-value)"),
    churn_model: str | None = typer.Option(
        None,
        "--churn-model",
        help="registered churn model name (default <name>-churn, or the --model name with -value made -churn)",
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI"),
) -> None:
    """Point an alias (default champion) at a value-model version and at the churn model of the same run.

    Give the experiment (--name NAME: NAME-value, NAME-churn) or the registered model (--model);
    only that experiment's aliases move.
    """
    from crmvalue.registry import promote as run_promote
    from crmvalue.store import open_store
    from crmvalue.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    with open_store(uri) as client:
        moved = run_promote(client, version, alias, model, churn_model, experiment=name)
    typer.echo("\n".join(f"{registered}@{alias} -> version {v}" for registered, v in moved.items()))


def _key_values(text: str, option: str) -> dict[str, float]:
    values = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise CrmvalueError(
                f"{option}: expected name=value pairs separated by commas, e.g. r=0.24,alpha=4.4; got {part!r}"
            )
    return values
