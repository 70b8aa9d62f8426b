"""The ``crmvalue`` command: a thin Typer layer over :mod:`crmvalue.pipeline`."""

from __future__ import annotations

import logging
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from crmvalue.errors import CrmvalueError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Customer value prediction for CRM teams: RFM, BG/NBD + Gamma-Gamma CLV, value quadrants, MLflow.",
)


class TimeUnitChoice(str, Enum):
    days = "days"
    weeks = "weeks"


@app.callback()
def _root() -> None:
    """crmvalue: customer value prediction for CRM teams."""


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", help="experiment YAML (default: experiments/cdnow.yaml if present)"),
    data: Optional[str] = typer.Option(None, "--data", help="transactions: a .csv/.parquet path, or 'cdnow' / 'cdnow_sample'"),
    customer_col: Optional[str] = typer.Option(None, "--customer-col", help="customer id column"),
    date_col: Optional[str] = typer.Option(None, "--date-col", help="timestamp column"),
    amount_col: Optional[str] = typer.Option(None, "--amount-col", help="amount (revenue) column"),
    quantity_col: Optional[str] = typer.Option(None, "--quantity-col", help="optional quantity column (a churn feature)"),
    date_format: Optional[str] = typer.Option(None, "--date-format", help="strftime format of the timestamps"),
    calibration_end: Optional[str] = typer.Option(None, "--calibration-end", help="last day of the calibration period"),
    observation_end: Optional[str] = typer.Option(None, "--observation-end", help="last day of observation"),
    time_unit: Optional[TimeUnitChoice] = typer.Option(None, "--time-unit", help="time unit of recency and T"),
    horizon_days: Optional[int] = typer.Option(None, "--horizon-days", help="horizon of expected_purchases, in days"),
    model: Optional[str] = typer.Option(None, "--model", help="purchase model: bgnbd, mbgnbd, paretonbd or auto"),
    penalizer: Optional[float] = typer.Option(None, "--penalizer", help="L2 penalty for the purchase model"),
    intervals: bool = typer.Option(False, "--intervals", help="add bootstrap 90% intervals for expected_purchases and clv"),
    churn: Optional[bool] = typer.Option(None, "--churn/--no-churn", help="fit the LightGBM churn model (default: on)"),
    customers: Optional[Path] = typer.Option(None, "--customers", help="customer attributes table (.csv/.parquet) for the churn model"),
    customers_id_col: Optional[str] = typer.Option(None, "--customers-id-col", help="id column of --customers (default customer_id)"),
    interactions: Optional[Path] = typer.Option(None, "--interactions", help="interactions table (customer id, timestamp, channel) for the CRM value score"),
    out: Optional[Path] = typer.Option(None, "--out", help="predictions file (.csv or .parquet)"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Fit, evaluate and score; log an MLflow run; write per-customer predictions for the CRM.

    With neither --config nor --data, runs experiments/cdnow.yaml. With --data alone, starts
    from the built-in defaults and names the experiment after the file.
    """
    from crmvalue.config import DEFAULT_CONFIG, load_config
    from crmvalue.pipeline import Progress, train as run_train

    name = None
    if config is None and data is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG  # the default experiment; your own --data starts from clean defaults
    elif config is None and data is not None:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(data).stem) or "crmvalue"
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
            "calibration_end": calibration_end,
            "observation_end": observation_end,
            "time_unit": time_unit.value if time_unit else None,
            "horizon_days": horizon_days,
            "model.purchase_model": model,
            "model.penalizer": penalizer,
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
        f"MAE {m['holdout.mae']:.3f} (naive rate {m['baseline.naive_rate.holdout.mae']:.3f}), "
        f"RMSE {m['holdout.rmse']:.3f}, purchases predicted {m['holdout.predicted_total']:,.0f} "
        f"vs actual {m['holdout.actual_total']:,.0f}",
        "quadrants       " + ", ".join(f"{k} {v:,}" for k, v in q.items()),
    ]
    if result.churn is not None:
        risk = result.churn.scores["churn_risk"].value_counts()
        lines.append(
            f"churn           out-of-time ROC AUC {m['churn.roc_auc']:.3f}, Brier {m['churn.brier']:.4f} "
            f"(BG/NBD no-purchase {m.get('baseline.bgnbd_no_purchase.roc_auc', float('nan')):.3f}, "
            f"recency {m['baseline.recency.roc_auc']:.3f}); risk "
            + ", ".join(f"{k} {int(risk.get(k, 0)):,}" for k in ("high", "medium", "low"))
        )
    lines += [
        f"predictions     {result.output_path}",
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
            raise CrmvalueError(f"{option}: expected name=value pairs separated by commas, e.g. r=0.24,alpha=4.4; got {part!r}")
    return values


@app.command()
def simulate(
    customers: int = typer.Option(..., "--customers", min=1, help="number of customers"),
    out: Path = typer.Option(..., "--out", help="transactions file to write (.csv or .parquet)"),
    model: str = typer.Option("bgnbd", "--model", help="bgnbd or paretonbd"),
    params: Optional[str] = typer.Option(
        None, "--params",
        help="purchase parameters, rates per --time-unit, e.g. r=0.24,alpha=4.4,a=0.79,b=2.43 (paretonbd: r,alpha,s,beta); "
        "default: the published CDNOW fit",
    ),
    spend: str = typer.Option("p=6.25,q=3.74,v=15.44", "--spend", help="Gamma-Gamma spend parameters"),
    time_unit: TimeUnitChoice = typer.Option(TimeUnitChoice.weeks, "--time-unit", help="unit of the rates in --params"),
    start: str = typer.Option("1997-01-01", "--start", help="first day"),
    end: str = typer.Option("1998-06-30", "--end", help="last day"),
    acquisition_days: int = typer.Option(84, "--acquisition-days", min=1, help="first purchases fall in this many days"),
    seed: int = typer.Option(0, "--seed", help="random seed"),
) -> None:
    """Draw a transaction log (customer_id, date, amount) from BG/NBD or Pareto/NBD with Gamma-Gamma spend."""
    from pydantic import ValidationError

    from crmvalue.config import SimulationConfig
    from crmvalue.io import atomic_write_table
    from crmvalue.simulate import simulate_from_config

    try:
        sim = SimulationConfig(
            model=model, params=_key_values(params, "--params") if params else None, spend=_key_values(spend, "--spend"),
            customers=customers, start=start, end=end, acquisition_days=acquisition_days,
            time_unit=time_unit.value, seed=seed,
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
        "latest", "--run",
        help="run id, or 'latest': the most recent finished top-level `crmvalue train` run (child runs of --model auto skipped)",
    ),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="take 'latest' from this experiment (default: any experiment)"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI"),
) -> None:
    """Write one self-contained HTML report of a `crmvalue train` run: value quadrants, CRM analyses, model metrics, charts."""
    from crmvalue.report import write_report

    run_id = write_report(out, run, experiment, tracking_uri)
    typer.echo(f"wrote the report of run {run_id} to {out}")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("crmvalue").setLevel(logging.INFO)
    try:
        app(standalone_mode=False)
    except CrmvalueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        # usage errors (a bad flag or value) arrive here in non-standalone mode; typer vendors
        # its own copy of click, so match on the interface rather than on click's class
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
