"""``payment-gateway``: runs the service's processes."""

import asyncio

import typer
from pydantic import ValidationError

from gateway.dev import run_dev
from gateway.logging import configure_logging
from gateway.settings import Settings

app = typer.Typer(
    name="payment-gateway",
    help="Run the payment gateway's processes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Run the payment gateway's processes."""


@app.command()
def dev() -> None:
    """Run everything locally on embedded defaults until Ctrl-C (what `make run` starts)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        typer.echo(f"error: invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level)
    asyncio.run(run_dev(settings))


def main() -> None:
    """Console-script entry point."""
    app()
