"""Commands: request-deletion, cancel-deletion, offboard-tenant, purge-offboarded."""

from typing import Annotated

import typer

from gateway.bootstrap import Container
from gateway.cli.runner import CliState, run, tenant_id_arg
from tenancy.lifecycle import TenantStatus
from tenancy.offboarding import (
    DeletionOutcome,
    OffboardReport,
    PurgeReport,
    cancel_deletion,
    offboard_tenant,
    purge_offboarded,
    request_deletion,
)
from tenancy.registry import TenantRecord

TenantIdArg = Annotated[str, typer.Argument(help="Tenant id.", callback=tenant_id_arg)]


def request_deletion_cmd(ctx: typer.Context, tenant_id: TenantIdArg) -> None:
    """Start a tenant's 30-day soft-delete window (MIGRATION_PLAN 5).

    Paused while the tenant has payments not yet settled; run it again once they are.
    During the window authorize and capture are refused; refunds and webhooks continue.
    """
    state: CliState = ctx.obj

    async def action(c: Container) -> DeletionOutcome:
        return await request_deletion(c.db, tenant_id, clock=c.clock)

    outcome = run(ctx, action)
    if outcome.status is TenantStatus.DELETION_PAUSED:
        state.out.print(
            f"[yellow]paused[/]: {tenant_id} has {outcome.open_payments} payment(s) not"
            " settled; request again once they are"
        )
    else:
        state.out.print(
            f"[green]✓[/] {tenant_id} soft-deleted; offboard-tenant allowed from"
            f" {outcome.offboard_after:%Y-%m-%d %H:%M} UTC"
        )


def cancel_deletion_cmd(ctx: typer.Context, tenant_id: TenantIdArg) -> None:
    """Return a paused or soft-deleted tenant to active."""
    state: CliState = ctx.obj

    async def action(c: Container) -> TenantRecord:
        return await cancel_deletion(c.db, tenant_id)

    record = run(ctx, action)
    state.out.print(f"[green]✓[/] {record.tenant_id} is {record.status} again")


def offboard_tenant_cmd(ctx: typer.Context, tenant_id: TenantIdArg) -> None:
    """Final offboarding, once the 30-day soft-delete window is over.

    Stops serving the tenant (status offboarding) and waits for its in-flight writes;
    refused (tenant back to soft_deleted) while payments are still open. Then snapshots
    the schema to the archive, drops schema and role, schedules the vendor secrets for
    destruction (24 h grace), sets archived_at, and anonymizes the tenant's webhook-inbox
    rows (kept 90 days). Re-running it resumes a tenant left offboarding by a crash.

    Example: payments-admin-cli offboard-tenant tnt_01HXYZ
    """
    state: CliState = ctx.obj

    async def action(c: Container) -> OffboardReport:
        return await offboard_tenant(c.db, tenant_id, archive=c.archive, dump=c.dump, clock=c.clock)

    report = run(ctx, action)
    state.out.print(f"[green]✓[/] {tenant_id} archived")
    state.out.print(f"  snapshot: {report.archive_uri}", markup=False)
    state.out.print(f"  secrets destroyed after {report.secrets_destroy_after:%Y-%m-%d %H:%M} UTC")
    state.out.print(f"  webhook-inbox rows anonymized: {report.inbox_rows_anonymized}")


def purge_offboarded_cmd(ctx: typer.Context) -> None:
    """Destroy secrets past their 24 h grace; delete anonymized inbox rows past 90 days.

    A secret another vendor attachment still uses is kept and listed.
    """
    state: CliState = ctx.obj

    async def action(c: Container) -> PurgeReport:
        return await purge_offboarded(c.db, c.secrets, clock=c.clock)

    report = run(ctx, action)
    state.out.print(
        f"[green]✓[/] secrets destroyed: {len(report.secrets_destroyed)};"
        f" inbox rows deleted: {report.inbox_rows_deleted}"
    )
    for ref in report.secrets_kept:
        state.out.print(f"  kept {ref}: still used by another vendor attachment", markup=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("request-deletion")(request_deletion_cmd)
    app.command("cancel-deletion")(cancel_deletion_cmd)
    app.command("offboard-tenant")(offboard_tenant_cmd)
    app.command("purge-offboarded")(purge_offboarded_cmd)
