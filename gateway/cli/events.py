"""Commands: events replay, events status."""

from datetime import datetime
from typing import Annotated

import typer

from gateway.bootstrap import Container
from gateway.cli.runner import CliState, fail, run, tenant_id_arg
from outbox.replay import OutboxStatus, ReplayReport, outbox_status, replay
from tenancy.registry import get_tenant


def _aware(value: datetime, state: CliState, name: str) -> datetime:
    if value.tzinfo is None:
        fail(state, f"--{name} needs a UTC offset, e.g. 2026-11-20T00:00:00+00:00")
    return value


def replay_cmd(
    ctx: typer.Context,
    tenant_id: Annotated[
        str, typer.Option("--tenant-id", help="Tenant id.", callback=tenant_id_arg)
    ],
    since: Annotated[
        datetime,
        typer.Option(help="Replay events created at or after this time (ISO 8601, with offset)."),
    ],
    until: Annotated[
        datetime | None, typer.Option(help="...and before this time (default: now).")
    ] = None,
) -> None:
    """Publish a tenant's events again, with their original ce-id, in order per payment.

    For recovery after a regional outage. Published events are kept 7 days.

    Example: payments-admin-cli events replay --tenant-id tnt_01HXYZ
    --since 2026-11-20T00:00:00+00:00
    """
    state: CliState = ctx.obj
    start = _aware(since, state, "since")
    end = None if until is None else _aware(until, state, "until")

    async def action(c: Container) -> ReplayReport:
        async with c.db.connection() as conn:
            await get_tenant(conn, tenant_id)
        return await replay(c.db.pool, tenant_id, start, end or c.clock())

    report = run(ctx, action)
    state.out.print(f"[green]✓[/] {report.rows} event(s) of {tenant_id} queued for re-publishing")
    if report.oldest_kept is not None and report.oldest_kept > start:
        state.out.print(
            f"  note: the outbox keeps events from {report.oldest_kept:%Y-%m-%d %H:%M} UTC on;"
            " older ones are past retention"
        )


def status_cmd(ctx: typer.Context) -> None:
    """Show the outbox backlog: unsent rows and the age of the oldest one."""
    state: CliState = ctx.obj

    async def action(c: Container) -> OutboxStatus:
        return await outbox_status(c.db.pool)

    status = run(ctx, action)
    age = (
        "none"
        if status.oldest_unsent_age is None
        else f"{status.oldest_unsent_age.total_seconds():.1f}s"
    )
    state.out.print(
        f"unsent: {status.unsent}; oldest unsent age: {age}; kept for replay: {status.kept}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``events`` command group to ``app``."""
    events = typer.Typer(help="Outbox events: replay after an outage, backlog status.")
    events.command("replay")(replay_cmd)
    events.command("status")(status_cmd)
    app.add_typer(events, name="events")
