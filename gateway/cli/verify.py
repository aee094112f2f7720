"""Command: ``verify-tenant``, MIGRATION_PLAN 2.3 before a tenant takes payments."""

import json
from dataclasses import asdict
from typing import Annotated

import typer

from gateway.bootstrap import Container
from gateway.cli.runner import EXIT_FAILED, CliState, fail, run, tenant_id_arg
from gateway.payments import services_for
from handlers.verification import StepResult, TenantVerifier, VerificationReport, VerifyConfig
from tenancy.lifecycle import TenantStatus
from tenancy.registry import find_tenant

_MARKS = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}


def verify_tenant_cmd(
    ctx: typer.Context,
    tenant_id: Annotated[str, typer.Argument(help="Tenant id.", callback=tenant_id_arg)],
    webhook_timeout: Annotated[
        float,
        typer.Option(min=1, max=3600, help="Seconds to wait for each processor's webhook."),
    ] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Verify every enabled processor of a tenant, then mark it payments-ready.

    Per processor: a 1.00 test authorization, its void, and the vendor's webhook about it
    (received by payment-api, applied from the inbox). Each step is printed as it passes
    or fails, with the reason. Only when all pass is payments_ready set in the registry and
    tenant.payments_ready announced for tenant-service. Exit 1 if any step failed.

    Example: payments-admin-cli verify-tenant tnt_01HXYZ --webhook-timeout 120
    """
    state: CliState = ctx.obj

    def show(step: StepResult) -> None:
        if as_json:
            typer.echo(json.dumps(asdict(step)))
            return
        where = f"{step.processor or 'tenant'} {step.step}"
        state.out.print(f"[{_MARKS[step.status]}] {where}: {step.detail}", markup=False)

    async def action(c: Container) -> VerificationReport | str:
        async with c.db.connection() as conn:
            tenant = await find_tenant(conn, tenant_id)
        if tenant is None:
            return f"unknown tenant {tenant_id}"
        if tenant.status not in {TenantStatus.ACTIVE, TenantStatus.DELETION_PAUSED}:
            return f"tenant {tenant_id} is {tenant.status}: only an active tenant is verified"
        services = services_for(c)
        try:
            verifier = TenantVerifier(
                c.db,
                services.commands,
                services.inbox,
                services.ports,
                c.clock,
                config=VerifyConfig(webhook_timeout_s=webhook_timeout),
            )
            return await verifier.verify(tenant_id, show)
        finally:
            await services.aclose()

    outcome = run(ctx, action)
    if isinstance(outcome, str):
        fail(state, outcome)
    if not outcome.ready:
        fail(state, f"{tenant_id} is not payments-ready", EXIT_FAILED)
    if not as_json:
        state.out.print(f"{tenant_id} is payments-ready", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``verify-tenant``."""
    app.command("verify-tenant")(verify_tenant_cmd)
