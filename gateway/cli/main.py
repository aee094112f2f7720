"""The ``payments-admin-cli`` application."""

import typer

from gateway.bootstrap import Overrides
from gateway.cli import (
    events,
    lifecycle,
    migrate,
    payments,
    pubsub,
    stripe_connect,
    tenants,
    verify,
    webhooks,
)
from gateway.cli.runner import CliState

_HELP = """Operate the payment gateway's tenants: provisioning, vendor credentials, schema
rollouts and offboarding.

Configuration comes from the environment (DATABASE_URL, PAYMENTS_*); see README.md.

Exit codes: 0 done; 1 ran but not fully successful; 2 refused, nothing changed.
"""


def build_app(overrides: Overrides | None = None) -> typer.Typer:
    """A fresh CLI app; tests pass ``overrides`` (a fixed clock, say)."""
    app = typer.Typer(
        name="payments-admin-cli",
        help=_HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _state(ctx: typer.Context) -> None:
        ctx.obj = CliState(overrides=overrides)

    tenants.register(app)
    migrate.register(app)
    lifecycle.register(app)
    pubsub.register(app)
    events.register(app)
    payments.register(app)
    stripe_connect.register(app)
    webhooks.register(app)
    verify.register(app)
    return app


def main() -> None:
    """Console-script entry point."""
    build_app()()
