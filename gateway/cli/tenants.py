"""Commands: provision-tenant, attach-vendor, list-tenants."""

import json
from typing import Annotated

import typer
from rich.table import Table

from gateway.bootstrap import Container
from gateway.cli.runner import CliState, fail, run, tenant_id_arg
from schemas.processors import Processor, VendorEnv
from tenancy.errors import InvalidSecretRefError
from tenancy.provisioning import ProvisionReport, ProvisionRequest, provision_tenant
from tenancy.registry import TenantRecord, list_tenants
from tenancy.secrets import SecretRef
from tenancy.vendors import AttachRequest, VendorAttachment, attach_vendor, list_attachments

TenantIdOption = Annotated[
    str, typer.Option("--tenant-id", help="Tenant id, e.g. tnt_01H...", callback=tenant_id_arg)
]


def provision_tenant_cmd(
    ctx: typer.Context,
    tenant_id: TenantIdOption,
    pci_profile: Annotated[str, typer.Option(help="PCI DSS profile; only saq_a.")] = "saq_a",
    cmek_key: Annotated[
        str | None,
        typer.Option(help="Cloud KMS key: projects/P/locations/L/keyRings/R/cryptoKeys/K."),
    ] = None,
) -> None:
    """Create a tenant's schema and role, migrate it, register it, prove its isolation.

    Safe to re-run: an active tenant is left as it is (and re-verified).

    Example: payments-admin-cli provision-tenant --tenant-id tnt_01HXYZ --pci-profile saq_a
    --cmek-key projects/gm-payments-prod/locations/us/keyRings/gm-payments/cryptoKeys/tnt_01HXYZ
    """
    state: CliState = ctx.obj

    async def action(c: Container) -> ProvisionReport:
        request = ProvisionRequest(tenant_id, pci_profile, cmek_key)
        grant_to = c.settings.app_db_roles
        return await provision_tenant(c.db, c.tenant_migrations, request, grant_to=grant_to)

    report = run(ctx, action)
    verb = "provisioned" if report.created else "already provisioned"
    state.out.print(f"[green]✓[/] {report.tenant_id} {verb}")
    state.out.print(f"  schema {report.schema_name}, role {report.role_name}")
    state.out.print(
        f"  migrations applied now: {_versions(report.migrations_applied)};"
        f" all applied: {_versions(report.applied_versions)}"
    )
    for probe in report.isolation:
        outcome = "denied" if probe.denied else "allowed"
        state.out.print(f"  isolation: SELECT on {probe.target} {outcome} [green]✓[/]")


def attach_vendor_cmd(
    ctx: typer.Context,
    tenant_id: TenantIdOption,
    processor: Annotated[Processor, typer.Option(help="The payment processor.")],
    env: Annotated[VendorEnv, typer.Option(help="The vendor's environment.")],
    account_ref: Annotated[str, typer.Option(help="Vendor account, e.g. acct_1NXz...")],
    api_key_from_secret: Annotated[
        str, typer.Option(help="Secret Manager reference of the API key.")
    ],
    webhook_secret_from_secret: Annotated[
        str | None, typer.Option(help="Secret Manager reference of the webhook secret.")
    ] = None,
    precedence: Annotated[int, typer.Option(help="Routing precedence; lower wins.")] = 100,
) -> None:
    """Attach a processor's credentials (as Secret Manager references) to a tenant.

    The references are resolved once to prove they exist; values are never printed.

    Example (S = projects/gm-payments-prod/secrets/tnt_01HXYZ/stripe/prod):
    payments-admin-cli attach-vendor --tenant-id tnt_01HXYZ --processor stripe
    --env production --account-ref acct_1NXz --precedence 100
    --api-key-from-secret S/api_key/versions/latest
    --webhook-secret-from-secret S/webhook_secret/versions/latest
    """
    state: CliState = ctx.obj
    try:
        api_key = SecretRef.parse(api_key_from_secret)
        webhook = (
            None
            if webhook_secret_from_secret is None
            else SecretRef.parse(webhook_secret_from_secret)
        )
    except InvalidSecretRefError as exc:
        fail(state, str(exc))

    async def action(c: Container) -> VendorAttachment:
        request = AttachRequest(
            tenant_id, processor, env, account_ref, api_key, webhook, precedence
        )
        return await attach_vendor(c.db, c.secrets, request, production=c.settings.production)

    attached = run(ctx, action)
    state.out.print(
        f"[green]✓[/] {attached.processor} ({attached.env}) attached to {attached.tenant_id}"
        f" as {attached.account_ref}, precedence {attached.precedence}"
    )


def list_tenants_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per tenant.")] = False,
) -> None:
    """List every tenant with its status, schema version and vendors."""
    state: CliState = ctx.obj

    async def action(c: Container) -> list[tuple[TenantRecord, list[VendorAttachment]]]:
        async with c.db.connection() as conn:
            records = await list_tenants(conn)
        attachments = await list_attachments(c.db)
        return [(r, [a for a in attachments if a.tenant_id == r.tenant_id]) for r in records]

    rows = run(ctx, action)
    if as_json:
        for record, vendors in rows:
            typer.echo(json.dumps(_as_json(record, vendors)))
        return
    table = Table()
    table.add_column("tenant", no_wrap=True)  # ids are never cut: operators copy them
    for header in ("status", "schema v", "vendors", "created", "note"):
        table.add_column(header)
    for record, vendors in rows:
        table.add_row(
            record.tenant_id,
            record.status,
            str(max(record.applied_versions, default=0)),
            ", ".join(f"{a.processor}:{a.precedence}" for a in vendors if a.enabled) or "-",
            f"{record.created_at:%Y-%m-%d}",
            record.migration_error or record.deletion_paused_reason or "",
        )
    state.out.print(table)
    state.out.print(f"{len(rows)} tenant(s)")


def _as_json(record: TenantRecord, vendors: list[VendorAttachment]) -> dict[str, object]:
    return {
        "tenant_id": record.tenant_id,
        "status": record.status,
        "schema": record.schema_name,
        "applied_versions": list(record.applied_versions),
        "payments_ready": record.payments_ready,
        "migration_error": record.migration_error,
        "vendors": [
            {"processor": a.processor, "env": a.env, "precedence": a.precedence}
            for a in vendors
            if a.enabled
        ],
        "soft_deleted_at": record.soft_deleted_at and record.soft_deleted_at.isoformat(),
        "archived_at": record.archived_at and record.archived_at.isoformat(),
    }


def _versions(versions: tuple[int, ...]) -> str:
    return ", ".join(f"{v:04d}" for v in versions) or "none"


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("provision-tenant")(provision_tenant_cmd)
    app.command("attach-vendor")(attach_vendor_cmd)
    app.command("list-tenants")(list_tenants_cmd)
