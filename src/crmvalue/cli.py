"""The ``crmvalue`` command: a thin Typer layer over :mod:`crmvalue.pipeline`."""

from __future__ import annotations

import logging
import sys
from enum import Enum
from pathlib import Path

import typer
from typer.core import TyperGroup

from crmvalue.errors import CrmvalueError


class _Group(TyperGroup):
    """The command group; its --help and every command's show boolean flags bare (no ``<bool>``)."""

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _bare_flags(command, ctx)
        return command

    def format_help(self, ctx, formatter) -> None:
        _bare_flags(self, ctx)
        super().format_help(ctx, formatter)


def _bare_flags(command, ctx) -> None:
    # a flag takes no value, so its help row shows no type; flags added later are covered too
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Customer value prediction for CRM teams: RFM, BG/NBD + Gamma-Gamma CLV, value quadrants, MLflow.",
)


class TimeUnitChoice(str, Enum):
    days = "days"
    weeks = "weeks"


def _print_version(value: bool) -> None:
    if value:
        from crmvalue import __version__

        typer.echo(f"crmvalue {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="print the version (crmvalue X.Y.Z) and exit"
    ),
) -> None:
    """crmvalue: customer value prediction for CRM teams."""


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
            "model.penalizer": penalizer,
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
    if m.get("quality.value_red_flag"):
        from crmvalue.quality import value_gate_text

        lines.append(
            "RED FLAG        "
            + value_gate_text(m, m["holdout.predicted_total"], m["holdout.actual_total"], cfg.quality.max_total_error)
        )
    if result.churn is not None and result.churn.skipped is not None:
        lines.append(f"churn           skipped: {result.churn.skipped}")
    elif result.churn is not None:
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
    run: str = typer.Option("latest", "--run", help="run id, or 'latest': the newest finished train or predict run"),
    to: str | None = typer.Option(
        None,
        "--to",
        help="database URL (SQLAlchemy), e.g. postgresql+psycopg://user@host:5432/crm; "
        "default $CRMVALUE_EXPORT_URL, else sqlite:///crm.db",
    ),
    table: str = typer.Option(
        "customer_scores", "--table", help="table of current scores; history goes to <table>_history"
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Deliver a run's per-customer scores to the CRM: a database table (atomic swap + history) or a bulk-upsert CSV."""
    from crmvalue import export as ex

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
    result = ex.export_run(run, to, table, experiment, tracking_uri, echo=None if quiet else ex.stderr_echo)
    if result.changed:
        typer.echo(
            f"exported {result.rows:,} customers of run {result.run_id} to {result.table} at {result.target} "
            f"(history: {result.table}_history)"
        )
    else:
        typer.echo(f"run {result.run_id} is already the current {result.table} at {result.target}: nothing changed")


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
        None, "--customers", help="customer attributes, if the churn model was trained with them"
    ),
    interactions: Path | None = typer.Option(None, "--interactions", help="interactions table for the CRM value score"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Score new transactions with a registered model (no refit); log a predict run; write the export schema.

    The columns and CSV dialect are the training run's; the column and dialect flags map a file
    with other names or another dialect onto them.
    """
    from crmvalue.predict import predict as run_predict
    from crmvalue.progress import Progress

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
    q = result.predictions["quadrant"].value_counts().sort_index()
    typer.echo(
        "\n".join(
            [
                f"run id          {result.run_id}  (predict, model {result.model.name or result.model.uri}{version}, "
                f"trained in run {result.model.run_id})",
                f"customers       {len(result.predictions):,} as of {result.observation_end.date()}",
                "quadrants       " + ", ".join(f"{k} {v:,}" for k, v in q.items()),
                f"scores          {result.output_path}",
            ]
        )
    )


def _interrupted() -> None:
    """One line and exit 128 + the signal: 130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    import signal

    from crmvalue.tracking import received_signal

    signum = received_signal() or signal.SIGINT
    what = "interrupted by SIGINT (Ctrl-C)" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    print(f"error: {what}: a run in progress is marked KILLED, with nothing exported or registered", file=sys.stderr)
    sys.exit(128 + signum)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback;
    SIGINT and SIGTERM one line and exit 130 and 143."""
    import warnings

    from crmvalue.tracking import handle_interrupts

    handle_interrupts()
    import matplotlib

    matplotlib.use("Agg")  # the commands write figures to files; the library never switches the backend
    if not sys.warnoptions:  # a user's own -W or PYTHONWARNINGS wins
        # numpy's floating-point RuntimeWarnings ("divide by zero encountered in log") are noise on a
        # terminal: the fits guard their numerics and report what matters as one WARNING line. Only
        # the command filters them; in-process library use (and pytest) still sees them.
        warnings.filterwarnings("ignore", category=RuntimeWarning)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("crmvalue").setLevel(logging.INFO)
    try:
        code = app(standalone_mode=False)
    except CrmvalueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except Exception as exc:
        # usage errors (a bad flag or value) arrive here in non-standalone mode; typer vendors
        # its own copy of click, so match on the interface rather than on click's class
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if code == 130:  # typer turns a KeyboardInterrupt (Interrupted is one) into this return value
        _interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
