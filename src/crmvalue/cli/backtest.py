"""``crmvalue backtest``: rolling-origin evaluation of the value forecasts, logged as one MLflow run."""

from __future__ import annotations

from pathlib import Path

import typer

from crmvalue.cli.app import app


@app.command()
def backtest(
    config: Path | None = typer.Option(
        None, "--config", help="experiment YAML (default: experiments/cdnow.yaml if present)"
    ),
    name: str | None = typer.Option(None, "--name", help="experiment name (default: the config's name)"),
    data: str | None = typer.Option(
        None, "--data", help="transactions: a .csv/.parquet path, or 'cdnow' / 'cdnow_sample'"
    ),
    observation_end: str | None = typer.Option(
        None, "--observation-end", help="last day of observation (default: the last transaction day)"
    ),
    horizon_days: int | None = typer.Option(
        None, "--horizon-days", help="forecast horizon after each cut-off, in days"
    ),
    cutoffs: int | None = typer.Option(
        None, "--cutoffs", help="number of cut-offs; the last is the observation end - the horizon (default 4)"
    ),
    step_days: int | None = typer.Option(
        None, "--step-days", help="days between cut-offs (default: the horizon, so the windows do not overlap)"
    ),
    min_history_days: int | None = typer.Option(
        None, "--min-history-days", help="the first cut-off is at least this many days after the first purchase"
    ),
    models: str | None = typer.Option(
        None,
        "--models",
        help="candidates, comma-separated: bgnbd_gg, mbgnbd_gg, paretonbd_gg, naive, last_horizon, ... "
        "(default: all; an unknown name lists them)",
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Measure the value forecasts out of time over rolling cut-offs; print and log mean ± std per candidate.

    At each cut-off every candidate is fitted on the data up to it and forecasts the next horizon.

    Candidates: every purchase model x Gamma-Gamma, naive (own rate x average spend), last_horizon.

    Choose by revenue RMSE, normalized Gini and decile MAPE, not MAE, which rewards forecasts near 0.
    """
    from crmvalue.backtest import backtest as run_backtest
    from crmvalue.backtest import build_candidates
    from crmvalue.backtest.candidates import candidate_names
    from crmvalue.backtest.config import BacktestConfig, with_overrides
    from crmvalue.backtest.tracking import log_backtest_run
    from crmvalue.config import DEFAULT_CONFIG, load_config
    from crmvalue.inputs import load_stage
    from crmvalue.progress import Progress
    from crmvalue.store import check_store
    from crmvalue.tracking import resolve_tracking_uri

    if config is None and data is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    cfg = load_config(
        config,
        {
            "name": name,
            "data.source": data,
            "observation_end": observation_end,
            "horizon_days": horizon_days,
            "tracking_uri": tracking_uri,
        },
    )
    settings = with_overrides(
        getattr(cfg, "backtest", None) or BacktestConfig(),
        {
            "cutoffs": cutoffs,
            "step_days": step_days,
            "min_history_days": min_history_days,
            "models": None if models is None else [m.strip() for m in models.split(",") if m.strip()],
        },
    )
    candidates = build_candidates(cfg, candidate_names(settings.models))
    check_store(resolve_tracking_uri(cfg.tracking_uri))  # a store the run cannot write fails now, not after the fits
    progress = Progress(enabled=not quiet)
    # the backtest reads only the transactions: no churn stage, no side tables
    loading = cfg.model_copy(
        update={
            "churn": cfg.churn.model_copy(update={"enabled": False}),
            "analyses": cfg.analyses.model_copy(update={"enabled": False}),
        }
    )
    loaded = load_stage(loading, None, progress)
    result = run_backtest(
        loaded.tx,
        loaded.observation_end,
        cfg.horizon_days,
        cfg.time_unit,
        candidates,
        settings.cutoffs,
        settings.step_days,
        settings.min_history_days,
        progress,
    )
    with progress.stage("track", "logging the MLflow run"):
        run_id = log_backtest_run(cfg, loaded.tx, loaded.observation_end, settings, result, progress.metrics())
    typer.echo(summary_text(result, run_id, cfg.name))


def summary_text(result, run_id: str, experiment: str) -> str:
    """The table the command prints: mean ± std over the cut-offs, a row per metric, a column per model."""
    from crmvalue.backtest.run import HEADLINE_METRICS

    summary = result.summary()
    shown = [m for m in HEADLINE_METRICS if m in set(summary["metric"])]
    extra = [m for m in result.metric_names if m not in HEADLINE_METRICS]
    cells = {
        (row.model, row.metric): f"{row.mean:,.3f}" + ("" if row.std != row.std else f" ± {row.std:,.3f}")
        for row in summary.itertuples(index=False)
    }
    width = max([len(m) for m in result.models] + [len(c) for c in cells.values()] + [6]) + 2
    label = max(len(m) for m in [*shown, *extra, "metric"]) + 2
    dates = ", ".join(str(c.date()) for c in result.cutoffs)
    lines = [
        f"run id     {run_id}  (experiment '{experiment}', kind backtest)",
        f"cut-offs   {dates}; each scored on the next {result.horizon_days} days",
        "",
        "metric".ljust(label) + "".join(m.rjust(width) for m in result.models),
    ]
    for i, metric in enumerate([*shown, *extra]):
        if i == len(shown) and extra:
            lines.append("")
        lines.append(metric.ljust(label) + "".join(cells.get((m, metric), "–").rjust(width) for m in result.models))
    for (cutoff, model), why in result.errors.items():
        ran = len(result.cutoffs) - sum(1 for _, m in result.errors if m == model)
        lines.append(f"failed     {model} at {cutoff} (its means are over the {ran} cut-offs where it ran): {why}")
    lines += [
        "",
        "mean ± std over the cut-offs. Choose by revenue RMSE, Gini and decile MAPE: MAE rewards forecasts near 0.",
    ]
    return "\n".join(lines)
