"""The ``crmvalue`` command group: its Typer app, the shared option types and ``--version``."""

from __future__ import annotations

from enum import Enum

import typer
from typer.core import TyperGroup

COMMAND_ORDER = ("train", "backtest", "simulate", "report", "plan", "export", "promote", "predict")


class _Group(TyperGroup):
    """The command group; its --help and every command's show boolean flags bare (no ``<bool>``)."""

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _bare_flags(command, ctx)
        return command

    def list_commands(self, ctx) -> list[str]:
        # the help lists the commands in the order of a user's day, not of the module imports
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: COMMAND_ORDER.index(n) if n in COMMAND_ORDER else len(COMMAND_ORDER))

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
