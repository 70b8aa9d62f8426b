"""``crmvalue plan``: whom to contact within a budget, with a control group held out."""

from __future__ import annotations

from pathlib import Path

import typer

from crmvalue.cli.app import app


@app.command()
def plan(
    budget: float = typer.Option(..., "--budget", help="campaign budget B, in the currency of the amounts"),
    cost_per_contact: float = typer.Option(..., "--cost-per-contact", help="cost C of contacting one customer"),
    success_rate: float = typer.Option(
        ..., "--success-rate", help="S in (0, 1]: the share of contacted customers whose value at risk is saved"
    ),
    out: Path = typer.Option(
        ..., "--out", help="plan file to write (.csv or .parquet); the summary goes beside it (.summary.json)"
    ),
    margin: float = typer.Option(
        1.0, "--margin", help="M in (0, 1]: the share of a saved value that is profit (1: count it in full)"
    ),
    control_share: float = typer.Option(
        0.1,
        "--control-share",
        help="share in [0, 1) of the chosen customers held out, not contacted, as a control group",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="random seed of the control group (default: a fresh one, recorded in the summary)"
    ),
    run: str = typer.Option(
        "latest",
        "--run",
        help="run id, or 'latest': the newest finished train or predict run, whose scores to plan with",
    ),
    experiment: str | None = typer.Option(None, "--experiment", help="take 'latest' from this experiment"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI"),
) -> None:
    """Choose whom to contact within a budget, hold out a control group, log the plan as an MLflow run.

    The plan takes the highest expected net gains S x value_at_risk x M - C, never one that is not
    positive, as many as the budget pays for. It writes the contact list (customer_id,
    retention_priority, value_at_risk, expected_gain, next_action, group) and its summary.
    """
    from crmvalue.plan import PlanSettings, plan_from_run

    settings = PlanSettings(budget, cost_per_contact, success_rate, margin, control_share, seed)
    result = plan_from_run(run, settings, out, experiment, tracking_uri)
    typer.echo("\n".join(summary_lines(result)))


def summary_lines(result) -> list[str]:
    """The summary as the command prints it."""
    s = result.plan.summary
    as_of = f", scores as of {result.as_of_date}" if result.as_of_date else ""
    roi = "n/a (nothing spent)" if s["expected_roi"] is None else f"{s['expected_roi']:.2f}"
    if s["customers_chosen"] == 0:
        chosen = "none: no customer has a positive expected gain at this cost and success rate"
    else:
        chosen = (
            f"{s['customers_chosen']:,}: {s['customers_contacted']:,} to contact, {s['control_customers']:,} held out "
            f"as the control group (share {s['control_share']:g}, seed {s['seed']})"
        )
    affordable = s["affordable_contacts"]
    which = (
        f"so the {affordable:,} with the highest gain are chosen"
        if s["budget_binding"]
        else "so all of them are chosen"
    )
    return [
        f"plan run        {result.run_id}  (from run {result.source_run_id} in experiment {result.experiment}{as_of})",
        f"customers       {s['customers_scored']:,} scored, {s['customers_with_positive_gain']:,} with a positive "
        f"expected gain; the budget pays for {affordable:,} contacts, {which}",
        f"chosen          {chosen}",
        f"spend           {s['spend']:,.2f} of {s['budget']:,.2f} ({s['customers_contacted']:,} x "
        f"{s['cost_per_contact']:,.2f})",
        f"expected saved  {s['expected_saved_value']:,.2f}  (success rate {s['success_rate']:g} x value at risk "
        "of the contact group)",
        f"expected gain   {s['expected_gain']:,.2f}  (saved x margin {s['margin']:g} - spend)",
        f"expected ROI    {roi}  (expected gain / spend)",
        f"plan            {result.output_path}  (summary: {result.summary_path})",
        f"next            crmvalue export --plan {result.run_id}   (the plan to the CRM database; --to URL)",
    ]
