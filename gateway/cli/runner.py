"""Runs one CLI action inside a bootstrapped container and maps errors to exit codes.

Exit codes: 0 done; 1 the action ran but did not fully succeed (a tenant failed to
migrate, an isolation probe failed); 2 the request was refused and nothing changed.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

import asyncpg
import typer
from pydantic import ValidationError
from rich.console import Console

from gateway.bootstrap import Container, Overrides, bootstrap
from gateway.logging import configure_logging
from gateway.settings import Settings
from schemas.ids import InvalidTenantIdError, validate_tenant_id
from tenancy.errors import IsolationBreachError, MigrationFailedError, TenancyError

T = TypeVar("T")
EXIT_FAILED = 1
EXIT_REFUSED = 2


@dataclass(slots=True)
class CliState:
    """Per-invocation state handed to every command through ``typer.Context.obj``."""

    overrides: Overrides | None = None
    out: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))


def fail(state: CliState, message: str, code: int = EXIT_REFUSED) -> NoReturn:
    """Print a one-line error and exit."""
    state.err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


def tenant_id_arg(value: str) -> str:
    """Typer callback: refuse a malformed tenant id before anything else runs."""
    try:
        return validate_tenant_id(value)
    except InvalidTenantIdError as exc:
        raise typer.BadParameter(str(exc)) from exc


def load_settings(state: CliState) -> Settings:
    """Read settings from the environment, or exit 2 naming what is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        fail(state, f"invalid configuration: {problems}")


def run(
    ctx: typer.Context,
    action: Callable[[Container], Awaitable[T]],
    *,
    pool_max: int | None = None,
) -> T:
    """Bootstrap, run ``action``, tear down; translate known errors to exit codes."""
    state: CliState = ctx.obj
    settings = load_settings(state)
    configure_logging(settings.log_level, stream="stderr")

    async def go() -> T:
        async with bootstrap(settings, state.overrides, pool_max=pool_max) as container:
            return await action(container)

    try:
        return asyncio.run(go())
    except (MigrationFailedError, IsolationBreachError) as exc:
        fail(state, str(exc), EXIT_FAILED)
    except (TenancyError, InvalidTenantIdError) as exc:
        fail(state, str(exc))
    except asyncpg.UndefinedTableError as exc:
        fail(state, f"{exc}; has `payments-admin-cli migrate-central` been run?")
    except (OSError, asyncpg.PostgresConnectionError) as exc:
        fail(state, f"cannot reach the database: {exc}", EXIT_FAILED)
