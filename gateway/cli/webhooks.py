"""Commands: ``webhooks status|pause|resume|list|retry`` for the webhook inbox."""

import json
from dataclasses import asdict
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final

import typer
from rich.table import Table

from gateway.bootstrap import Container
from gateway.cli.runner import CliState, fail, run, tenant_id_arg
from handlers.inbox import InboxEntry, list_inbox, requeue
from handlers.webhooks import ingestion_pause, pause_ingestion, resume_ingestion

MAX_REASON: Final = 500


class InboxStatus(StrEnum):
    """Inbox row statuses an operator may list."""

    PARKED = "parked"
    PENDING = "pending"
    APPLIED = "applied"
    IGNORED = "ignored"


def _reason(value: str) -> str:
    text = value.strip()
    if not text or len(text) > MAX_REASON:
        raise typer.BadParameter(f"give a reason of 1-{MAX_REASON} characters")
    return text


def _optional_tenant(value: str | None) -> str | None:
    return None if value is None else tenant_id_arg(value)


By = Annotated[str, typer.Option("--by", help="Who does it (for the record).", callback=_reason)]


def status_cmd(ctx: typer.Context) -> None:
    """Say whether webhook ingestion is paused, and why.

    Example: payments-admin-cli webhooks status
    """
    state: CliState = ctx.obj

    async def action(c: Container) -> str | None:
        return await ingestion_pause(c.db)

    reason = run(ctx, action)
    if reason is None:
        state.out.print("webhook ingestion: running")
    else:
        state.out.print(f"webhook ingestion: PAUSED ({reason})", markup=False)


def pause_cmd(
    ctx: typer.Context,
    reason: Annotated[
        str,
        typer.Option(
            "--reason", help="Why (shown to vendors as the 503 detail).", callback=_reason
        ),
    ],
    by: By,
) -> None:
    """Pause webhook ingestion: payment-api answers 503 and vendors retry later.

    DEPLOYMENT_TOPOLOGY 8 (region restore). Every payment-api pod sees it within a
    second; nothing is lost, since vendors retry with backoff (Stripe for three days).

    Example: payments-admin-cli webhooks pause --reason "PITR restore" --by sre-oncall
    """
    state: CliState = ctx.obj

    async def action(c: Container) -> bool:
        return await pause_ingestion(c.db, reason, by)

    changed = run(ctx, action)
    state.out.print(
        "webhook ingestion paused" if changed else "webhook ingestion was already paused"
    )


def resume_cmd(ctx: typer.Context, by: By) -> None:
    """Resume webhook ingestion.

    Example: payments-admin-cli webhooks resume --by sre-oncall
    """
    state: CliState = ctx.obj

    async def action(c: Container) -> bool:
        return await resume_ingestion(c.db, by)

    changed = run(ctx, action)
    state.out.print("webhook ingestion resumed" if changed else "webhook ingestion was not paused")


def list_cmd(
    ctx: typer.Context,
    status: Annotated[
        InboxStatus, typer.Option("--status", help="Which rows.")
    ] = InboxStatus.PARKED,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant.", callback=_optional_tenant)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List inbox rows: by default the parked ones an operator must look at.

    A parked row contradicts its payment (amount, currency, an authorization recorded as
    failed) or never matched one within a day. Check the vendor's dashboard, settle the
    payment with `payments resolve` if needed, or `webhooks retry` the row.

    Example: payments-admin-cli webhooks list --status parked --tenant tnt_01HXYZ
    """
    state: CliState = ctx.obj

    async def action(c: Container) -> list[InboxEntry]:
        return await list_inbox(c.db, status.value, tenant, limit)

    entries = run(ctx, action)
    if as_json:
        for entry in entries:
            typer.echo(json.dumps(asdict(entry), default=_iso))
        return
    table = Table(
        "id", "tenant", "processor", "event", "type", "payment", "tries", "received", "why"
    )
    for e in entries:
        table.add_row(
            str(e.inbox_id),
            e.tenant_id or "(offboarded)",
            e.processor,
            e.vendor_event_id,
            e.event_type,
            e.payment_id or "",
            str(e.attempts),
            _iso(e.received_at),
            e.last_error or "",
        )
    state.out.print(table)
    state.out.print(f"{len(entries)} {status.value} row(s)")


def retry_cmd(
    ctx: typer.Context,
    inbox_id: Annotated[int, typer.Argument(min=1, help="The inbox row (from webhooks list).")],
) -> None:
    """Put a parked row back in the queue: the appliers try it once more, now.

    Use it after fixing what kept it from applying (the payment was resolved, the
    tenant's attachment restored). If it still cannot apply it is parked again.

    Example: payments-admin-cli webhooks retry 4711
    """
    state: CliState = ctx.obj

    async def action(c: Container) -> bool:
        return await requeue(c.db, inbox_id, c.clock())

    if not run(ctx, action):
        fail(state, f"no parked inbox row {inbox_id}")
    state.out.print(f"inbox row {inbox_id} queued again")


def _iso(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def register(app: typer.Typer) -> None:
    """Add the ``webhooks`` command group."""
    group = typer.Typer(help="The webhook inbox: pause, resume, parked rows.", no_args_is_help=True)
    group.command("status")(status_cmd)
    group.command("pause")(pause_cmd)
    group.command("resume")(resume_cmd)
    group.command("list")(list_cmd)
    group.command("retry")(retry_cmd)
    app.add_typer(group, name="webhooks")
