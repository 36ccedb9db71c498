"""The ``vitabench`` command line: one module per command group, heavy imports inside commands."""

from __future__ import annotations

import sys

import click
import typer

from vitabench.api.errors import VitabenchError
from vitabench.cli import collect as collect_command
from vitabench.cli import convert as convert_commands
from vitabench.cli import distill as distill_command
from vitabench.cli import doctor, listing
from vitabench.cli import pva as pva_commands
from vitabench.cli import run as run_command
from vitabench.cli import report as report_commands
from vitabench.cli import serve as serve_command
from vitabench.cli import train as train_commands

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Benchmark vision-language-action policies on LIBERO and real robots.",
)
app.add_typer(listing.app, name="list")
app.command("doctor")(doctor.doctor)
app.command("run")(run_command.run)
report_commands.register(app)
app.command("serve")(serve_command.serve)
pva_commands.register(app)
app.command("collect")(collect_command.collect)
app.add_typer(train_commands.app, name="train")
app.command("distill")(distill_command.distill)
app.add_typer(convert_commands.app, name="convert")


def main() -> None:
    """Console entry point: a :class:`VitabenchError` prints one line and exits 2."""
    try:
        result = app(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except VitabenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(result if isinstance(result, int) else 0)
