"""``payment-gateway``: runs the service's processes."""

import asyncio

import typer
from pydantic import ValidationError

from gateway.bootstrap import bootstrap
from gateway.dev import run_dev
from gateway.logging import configure_logging
from gateway.runtime import stop_on_signals, worker_for
from gateway.settings import Settings
from gateway.telemetry import configure_telemetry

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


def _settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        typer.echo(f"error: invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level)
    return settings


@app.command()
def dev() -> None:
    """Run everything locally on embedded defaults until Ctrl-C (what `make run` starts)."""
    settings = _settings()
    telemetry = configure_telemetry("dev")
    try:
        asyncio.run(run_dev(settings))
    finally:
        telemetry.shutdown()


@app.command()
def worker() -> None:
    """Run payment-worker: the command consumer and the outbox relay, until SIGTERM.

    Expects the database migrated and the Pub/Sub topology in place (see deploy/).
    """
    settings = _settings()
    telemetry = configure_telemetry("worker")

    async def main() -> None:
        stop = stop_on_signals()
        async with bootstrap(settings) as container, worker_for(container, settings) as running:
            await running.run(stop)

    try:
        asyncio.run(main())
    finally:
        telemetry.shutdown()


def main() -> None:
    """Console-script entry point."""
    app()
